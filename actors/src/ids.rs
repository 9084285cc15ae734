//! Identifiers: a short type prefix and a ULID (`ten_01JD…`).
//!
//! ULIDs sort by creation time, so "after this id" is a stable cursor for paging, and
//! the prefix tells a reader (and the API's validation) what kind of thing an id names.

/// Prefix of tenant ids.
pub const TENANT: &str = "ten";
/// Prefix of API key ids.
pub const API_KEY: &str = "key";
/// Prefix of message ids.
pub const MESSAGE: &str = "msg";

/// A new id with the given prefix.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

/// Whether `id` is well formed for `prefix` (cheap check before touching storage).
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|u| ulid::Ulid::from_string(u).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = new_id(TENANT);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(TENANT);
        assert!(is_valid(TENANT, &a));
        assert!(a < b);
        assert!(!is_valid(API_KEY, &a));
        assert!(!is_valid(TENANT, "ten_nope"));
        assert!(!is_valid(TENANT, "tenx01JD0000000000000000000"));
    }
}

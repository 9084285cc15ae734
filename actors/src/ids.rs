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
/// Prefix of RAG reply drafts.
pub const DRAFT: &str = "dft";
/// Prefix of suppression list entries.
pub const SUPPRESSION: &str = "sup";

/// Ids made in the same millisecond take the previous one's random part plus one,
/// so ids from this process sort in the order they were made, not only by millisecond.
static IDS: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());

/// A new id with the given prefix.
pub fn new_id(prefix: &str) -> String {
    let ulid = IDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .generate()
        // 2^80 ids in one millisecond: fall back to a fresh random part.
        .unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{ulid}")
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
    fn ids_made_in_the_same_millisecond_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| new_id(TENANT)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

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

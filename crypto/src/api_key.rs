//! API keys: generated here, shown to the tenant once, stored only as a hash.
//!
//! Keys carry 256 random bits, so a single SHA-256 is a sound one-way function for
//! them (no password-style stretching is needed) and lets the gateway look a key up
//! by its hash through an index in one query. The stored `prefix` (the first
//! characters) lets people tell keys apart in listings without revealing them.

use crate::{Error, Secret, constant_time_eq, token};
use sha2::{Digest, Sha256};
use std::fmt;

/// The prefix of every tenant API key.
pub const API_KEY_PREFIX: &str = "sbk_";
/// How many leading characters of a key are kept in clear for display.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// SHA-256 of an API key; what the database stores and indexes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(pub [u8; 32]);

impl ApiKeyHash {
    /// Hashes a presented key.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Compares in constant time (for callers that hold a hash rather than query by it).
    pub fn matches(&self, key: &str) -> bool {
        constant_time_eq(&self.0, &Self::of(key).0)
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not the key, but there is no reason to print it either.
        f.write_str("ApiKeyHash(..)")
    }
}

/// A freshly generated key: the clear value (returned to the caller once) and what to store.
#[derive(Debug)]
pub struct GeneratedApiKey {
    pub key: Secret<String>,
    pub hash: ApiKeyHash,
    pub prefix: String,
}

impl GeneratedApiKey {
    pub fn generate() -> Result<Self, Error> {
        let key = token::random_token(API_KEY_PREFIX)?;
        let hash = ApiKeyHash::of(key.expose());
        let prefix = key.expose()[..DISPLAY_PREFIX_LEN].to_owned();
        Ok(Self { key, hash, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_key_hashes_to_its_stored_hash() {
        let g = GeneratedApiKey::generate().unwrap();
        assert!(g.hash.matches(g.key.expose()));
        assert_eq!(ApiKeyHash::of(g.key.expose()), g.hash);
        assert!(g.key.expose().starts_with(&g.prefix));
        assert!(!format!("{g:?}").contains(g.key.expose()));
    }

    #[test]
    fn known_hash() {
        // sha256("abc")
        assert_eq!(
            hex::encode(ApiKeyHash::of("abc").0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest! {
        #[test]
        fn any_changed_key_fails_to_match(key in "[A-Za-z0-9_-]{10,60}", idx in 0usize..60, c in "[A-Za-z0-9]") {
            let hash = ApiKeyHash::of(&key);
            let mut other: Vec<char> = key.chars().collect();
            let i = idx % other.len();
            let c = c.chars().next().unwrap();
            prop_assume!(other[i] != c);
            other[i] = c;
            let other: String = other.into_iter().collect();
            prop_assert!(!hash.matches(&other));
        }
    }
}

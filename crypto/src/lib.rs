//! Switchboard's cryptography, with no async runtime: secrets that never print,
//! random tokens, API-key hashing and the master key.
//!
//! # Layout
//! - [`secret`]: [`Secret`], a wrapper that zeroizes on drop and redacts itself in
//!   `Debug`/`Display`, used for every key and token the process holds.
//! - [`token`]: random bytes and prefixed bearer tokens (API keys, the admin token).
//! - [`api_key`]: API-key generation and the hash that is stored instead of the key.
//! - [`master_key`]: the 256-bit master key that encrypts data at rest, and its key id.
//! - [`envelope`]: AES-256-GCM envelope encryption bound to a row, with a keyring for rotation.
//! - [`stream`]: the same for large blobs (media), a 64 KiB segment at a time, with
//!   random access for range reads.
//! - [`webhook`]: Standard Webhooks signatures (`whsec_` secrets, `v1,` HMAC-SHA256).
//!
//! Everything here is synchronous and cheap except where a doc comment says otherwise;
//! callers may use it from async code directly.

pub mod api_key;
pub mod envelope;
pub mod master_key;
pub mod secret;
pub mod stream;
pub mod token;
pub mod webhook;

pub use api_key::{ApiKeyHash, GeneratedApiKey};
pub use envelope::{Binding, Keyring, OpenError, Sealed};
pub use master_key::MasterKey;
pub use secret::Secret;
pub use webhook::WebhookSecret;

/// Errors from this crate. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that should be base64 was not.
    #[error("not valid base64")]
    Base64,
    /// A key had the wrong length.
    #[error("key must be {expected} bytes, got {actual}")]
    KeyLength { expected: usize, actual: usize },
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
}

/// Compares two byte strings in time independent of where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}

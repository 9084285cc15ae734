//! The master key: 256 bits that encrypt every secret and message body at rest.
//!
//! It is given as standard base64 (`SWITCHBOARD_MASTER_KEY`) or generated on first
//! start into the data directory. It zeroizes on drop and never prints. Its key id
//! (the first 8 bytes of SHA-256 over a fixed label and the key, in hex) is stored
//! beside every ciphertext so that rotation can tell old from new, and is safe to log.

use crate::{Error, token};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; MASTER_KEY_LEN],
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<Self, Error> {
        let mut v = token::random_bytes(MASTER_KEY_LEN)?;
        let key = Self::from_bytes(&v);
        v.zeroize();
        key
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; MASTER_KEY_LEN] = bytes.try_into().map_err(|_| Error::KeyLength {
            expected: MASTER_KEY_LEN,
            actual: bytes.len(),
        })?;
        Ok(Self { bytes })
    }

    /// Parses standard base64 (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, Error> {
        let mut v = STANDARD.decode(text.trim()).map_err(|_| Error::Base64)?;
        let key = Self::from_bytes(&v);
        v.zeroize();
        key
    }

    /// The key as standard base64, for writing the key file. Handle the result as a secret.
    pub fn to_base64(&self) -> crate::Secret<String> {
        crate::Secret::new(STANDARD.encode(self.bytes))
    }

    pub fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }

    /// A short public identifier of this key, safe to store and log.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"switchboard master key id v1\0");
        h.update(self.bytes);
        hex::encode(&h.finalize()[..8])
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_stable_id() {
        let k = MasterKey::generate().unwrap();
        let text = k.to_base64();
        let back = MasterKey::from_base64(text.expose()).unwrap();
        assert_eq!(k.bytes(), back.bytes());
        assert_eq!(k.key_id(), back.key_id());
        assert_eq!(k.key_id().len(), 16);
    }

    #[test]
    fn wrong_length_and_bad_base64_are_rejected() {
        assert!(matches!(
            MasterKey::from_base64("AAAA"),
            Err(Error::KeyLength {
                expected: 32,
                actual: 3
            })
        ));
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(Error::Base64)
        ));
    }

    #[test]
    fn debug_shows_only_the_key_id() {
        let k = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&k.key_id()));
        assert!(!dbg.contains(k.to_base64().expose().as_str()));
        assert!(!dbg.contains("7, 7"));
    }
}

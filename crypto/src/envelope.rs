//! AES-256-GCM envelope encryption of data at rest under the master key.
//!
//! Ciphertexts are sealed under data keys derived from the master key with
//! HKDF-SHA256 and a random 16-byte salt, each with a random 96-bit nonce. A data key
//! seals at most [`DATA_KEY_USES`] values (2^20) before a new salt is drawn: one key
//! derivation per that many values rather than per value, and still far too few
//! values per key for random nonces to risk colliding (≤ 2^40 / 2^97 per key). The
//! stored form is `version (1) ‖ salt (16) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`,
//! kept beside the id of the master key that sealed it; opening re-derives the data
//! key from the salt, and keeps the last few it derived.
//!
//! Associated data binds a ciphertext to its row (tenant, record id, purpose): a
//! ciphertext copied into another row fails to open. A [`Keyring`] holds the current
//! master key (which seals) and retired ones (which still open), so rotation can
//! re-encrypt at its own pace while everything stays readable.

use crate::{Error, MasterKey};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + SALT_LEN + NONCE_LEN;
const HKDF_INFO: &[u8] = b"switchboard envelope v1 aes-256-gcm";
/// Values one data key seals before a fresh salt (and key) is drawn.
pub const DATA_KEY_USES: u32 = 1 << 20;
/// Data keys kept for opening (values sealed together open without a derivation each).
const OPEN_CACHE: usize = 64;

/// AES-256-GCM under a data key derived from `key` with HKDF-SHA256, `salt` and
/// `info` (which names the construction, so no two share a key).
pub(crate) fn data_key_cipher(key: &MasterKey, salt: &[u8], info: &[u8]) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(salt), key.bytes());
    let mut dek = Zeroizing::new([0u8; 32]);
    hk.expand(info, dek.as_mut())
        .expect("32 bytes is a valid HKDF length");
    Aes256Gcm::new_from_slice(dek.as_ref()).expect("32-byte key")
}

/// What a ciphertext belongs to; becomes its associated data.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub tenant_id: &'a str,
    pub record_id: &'a str,
    /// Which field (`event.body`, `webhook.secret`, …).
    pub purpose: &'a str,
}

impl Binding<'_> {
    pub(crate) fn aad(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(
            self.tenant_id.len() + self.record_id.len() + self.purpose.len() + 3,
        );
        for part in [self.purpose, self.tenant_id, self.record_id] {
            v.extend_from_slice(part.as_bytes());
            v.push(0);
        }
        v
    }
}

/// A sealed value and the id of the master key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub data: Vec<u8>,
}

/// Why a ciphertext did not open. Deliberately vague: no oracle for attackers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("ciphertext sealed with unknown master key {0}")]
    UnknownKey(String),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext failed authentication (wrong key, row or tampering)")]
    Authentication,
}

/// The master keys in force: one that seals, any number that still open.
#[derive(Clone)]
pub struct Keyring {
    current: MasterKey,
    current_id: String,
    by_id: HashMap<String, MasterKey>,
    /// The data key sealing now (shared by clones).
    sealing: Arc<Mutex<Option<DataKey>>>,
    /// Data keys derived for opening, by master key id and salt (shared by clones).
    opening: Arc<Mutex<OpenCache>>,
}

/// Data keys derived for opening, by master key id and salt.
type OpenCache = HashMap<(String, [u8; SALT_LEN]), Aes256Gcm>;

/// A data key in use for sealing: its salt, its cipher and how many values it may
/// still seal.
struct DataKey {
    salt: [u8; SALT_LEN],
    cipher: Aes256Gcm,
    left: u32,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.by_id.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("current", &self.current_id)
            .field("known", &ids)
            .finish()
    }
}

impl Keyring {
    pub fn new(current: MasterKey, retired: impl IntoIterator<Item = MasterKey>) -> Self {
        let current_id = current.key_id();
        let mut by_id: HashMap<String, MasterKey> =
            retired.into_iter().map(|k| (k.key_id(), k)).collect();
        by_id.insert(current_id.clone(), current.clone());
        Self {
            current,
            current_id,
            by_id,
            sealing: Arc::default(),
            opening: Arc::default(),
        }
    }

    /// The id of the key that seals.
    pub(crate) fn current_key(&self) -> &MasterKey {
        &self.current
    }

    pub(crate) fn key(&self, key_id: &str) -> Option<&MasterKey> {
        self.by_id.get(key_id)
    }

    pub fn current_id(&self) -> &str {
        &self.current_id
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.by_id.contains_key(key_id)
    }

    /// A 32-byte key for `label`, derived from the current master key (HKDF-SHA256
    /// with its own info string, so it never equals a data-encryption key). Every
    /// process holding the same master key derives the same key: used to sign
    /// internal events between actors.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(None, self.current.bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        let info = [b"switchboard derived key v1: ".as_slice(), label.as_bytes()].concat();
        hk.expand(&info, out.as_mut())
            .expect("32 bytes is a valid HKDF length");
        out
    }

    /// An HMAC-SHA256 tag over `data` under the key derived for `label` from the
    /// current master key: for tokens this gateway hands out and reads back.
    pub fn tag(&self, label: &str, data: &[u8]) -> [u8; 32] {
        tag_with(&self.current, label, data)
    }

    /// Whether `tag` is [`Self::tag`] of `data` under the current master key or a
    /// retired one (tokens outlive a rotation), cut to 16–32 bytes. Compared in
    /// constant time.
    pub fn verify_tag(&self, label: &str, data: &[u8], tag: &[u8]) -> bool {
        if !(16..=32).contains(&tag.len()) {
            return false;
        }
        self.by_id
            .values()
            .any(|k| crate::constant_time_eq(&tag_with(k, label, data)[..tag.len()], tag))
    }

    fn cipher(key: &MasterKey, salt: &[u8]) -> Aes256Gcm {
        data_key_cipher(key, salt, HKDF_INFO)
    }

    /// Encrypts `plaintext` for `binding` under the current key.
    pub fn seal(&self, plaintext: &[u8], binding: Binding<'_>) -> Result<Sealed, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Random(e.to_string()))?;
        let aad = binding.aad();
        let (salt, ct) = {
            let mut sealing = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
            if sealing.as_ref().is_none_or(|k| k.left == 0) {
                let mut salt = [0u8; SALT_LEN];
                getrandom::fill(&mut salt).map_err(|e| Error::Random(e.to_string()))?;
                *sealing = Some(DataKey {
                    salt,
                    cipher: Self::cipher(&self.current, &salt),
                    left: DATA_KEY_USES,
                });
            }
            let key = sealing.as_mut().expect("set above");
            key.left -= 1;
            let ct = key
                .cipher
                .encrypt(
                    (&nonce).into(),
                    Payload {
                        msg: plaintext,
                        aad: &aad,
                    },
                )
                .map_err(|_| Error::Random("encryption failed".into()))?;
            (key.salt, ct)
        };
        let mut data = Vec::with_capacity(HEADER_LEN + ct.len());
        data.push(VERSION);
        data.extend_from_slice(&salt);
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&ct);
        Ok(Sealed {
            key_id: self.current_id.clone(),
            data,
        })
    }

    /// Decrypts a value sealed by any key in the ring for the same `binding`.
    pub fn open(
        &self,
        key_id: &str,
        data: &[u8],
        binding: Binding<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let key = self
            .by_id
            .get(key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        if data.len() < HEADER_LEN + TAG_LEN || data[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let (salt, rest) = data[1..].split_at(SALT_LEN);
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let salt: [u8; SALT_LEN] = salt.try_into().expect("16-byte salt");
        let aad = binding.aad();
        let cache_key = (key_id.to_owned(), salt);
        let cached = self
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
            .cloned();
        let cipher = match cached {
            Some(c) => c,
            None => {
                let c = Self::cipher(key, &salt);
                let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
                if opening.len() >= OPEN_CACHE {
                    opening.clear();
                }
                opening.insert(cache_key, c.clone());
                c
            }
        };
        cipher
            .decrypt(
                nonce.try_into().expect("12-byte nonce"),
                Payload { msg: ct, aad: &aad },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Authentication)
    }
}

fn tag_with(key: &MasterKey, label: &str, data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let hk = Hkdf::<Sha256>::new(None, key.bytes());
    let mut derived = Zeroizing::new([0u8; 32]);
    let info = [b"switchboard tag key v1: ".as_slice(), label.as_bytes()].concat();
    hk.expand(&info, derived.as_mut())
        .expect("32 bytes is a valid HKDF length");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(derived.as_ref())
        .expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding() -> Binding<'static> {
        Binding {
            tenant_id: "ten_1",
            record_id: "evt_1",
            purpose: "event.body",
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let ring = Keyring::new(MasterKey::generate().unwrap(), []);
        let sealed = ring.seal(b"hello", binding()).unwrap();
        assert_eq!(sealed.key_id, ring.current_id());
        assert_eq!(
            &*ring.open(&sealed.key_id, &sealed.data, binding()).unwrap(),
            b"hello"
        );
        let other_row = Binding {
            record_id: "evt_2",
            ..binding()
        };
        assert_eq!(
            ring.open(&sealed.key_id, &sealed.data, other_row),
            Err(OpenError::Authentication)
        );
        let other_tenant = Binding {
            tenant_id: "ten_2",
            ..binding()
        };
        assert!(
            ring.open(&sealed.key_id, &sealed.data, other_tenant)
                .is_err()
        );
        // Two seals of the same value differ (a fresh nonce).
        assert_ne!(ring.seal(b"hello", binding()).unwrap().data, sealed.data);
    }

    #[test]
    fn values_sharing_a_data_key_stay_bound_to_their_own_row_and_tenant() {
        let ring = Keyring::new(MasterKey::generate().unwrap(), []);
        let row = |tenant_id, record_id| Binding {
            tenant_id,
            record_id,
            purpose: "event.body",
        };
        let a = ring.seal(b"for a", row("ten_1", "evt_a")).unwrap();
        let b = ring.seal(b"for b", row("ten_1", "evt_b")).unwrap();
        let c = ring.seal(b"for c", row("ten_2", "evt_c")).unwrap();
        // One derivation for all three: the same salt, different nonces.
        assert_eq!(a.data[1..17], b.data[1..17]);
        assert_eq!(a.data[1..17], c.data[1..17]);
        assert_ne!(a.data[17..29], b.data[17..29]);
        // Each opens only for its own row, tenant and purpose, also from a clone
        // of the ring (which shares its keys) and from a fresh ring (which derives).
        let fresh = Keyring::new(ring.current_key().clone(), []);
        for r in [&ring, &ring.clone(), &fresh] {
            assert_eq!(
                &*r.open(&a.key_id, &a.data, row("ten_1", "evt_a")).unwrap(),
                b"for a"
            );
            assert_eq!(
                &*r.open(&c.key_id, &c.data, row("ten_2", "evt_c")).unwrap(),
                b"for c"
            );
            for wrong in [
                row("ten_1", "evt_b"),
                row("ten_2", "evt_a"),
                row("ten_2", "evt_c"),
            ] {
                assert_eq!(
                    r.open(&a.key_id, &a.data, wrong),
                    Err(OpenError::Authentication)
                );
            }
            let other_purpose = Binding {
                purpose: "message.body",
                ..row("ten_1", "evt_a")
            };
            assert_eq!(
                r.open(&a.key_id, &a.data, other_purpose),
                Err(OpenError::Authentication)
            );
        }
        // A used-up data key is replaced by one with a fresh salt.
        ring.sealing.lock().unwrap().as_mut().unwrap().left = 0;
        let d = ring.seal(b"for d", row("ten_1", "evt_d")).unwrap();
        assert_ne!(a.data[1..17], d.data[1..17]);
        assert_eq!(
            &*ring
                .open(&d.key_id, &d.data, row("ten_1", "evt_d"))
                .unwrap(),
            b"for d"
        );
        assert_eq!(
            &*ring
                .open(&a.key_id, &a.data, row("ten_1", "evt_a"))
                .unwrap(),
            b"for a"
        );
    }

    #[test]
    fn retired_keys_open_but_do_not_seal() {
        let old = MasterKey::generate().unwrap();
        let old_ring = Keyring::new(old.clone(), []);
        let sealed = old_ring.seal(b"secret", binding()).unwrap();
        let new_ring = Keyring::new(MasterKey::generate().unwrap(), [old]);
        assert_eq!(
            &*new_ring
                .open(&sealed.key_id, &sealed.data, binding())
                .unwrap(),
            b"secret"
        );
        assert_ne!(
            new_ring.seal(b"x", binding()).unwrap().key_id,
            sealed.key_id
        );
        let fresh = Keyring::new(MasterKey::generate().unwrap(), []);
        assert!(matches!(
            fresh.open(&sealed.key_id, &sealed.data, binding()),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn truncated_or_unknown_version_is_malformed() {
        let ring = Keyring::new(MasterKey::generate().unwrap(), []);
        let sealed = ring.seal(b"x", binding()).unwrap();
        assert_eq!(
            ring.open(&sealed.key_id, &sealed.data[..20], binding()),
            Err(OpenError::Malformed)
        );
        let mut v2 = sealed.data.clone();
        v2[0] = 2;
        assert_eq!(
            ring.open(&sealed.key_id, &v2, binding()),
            Err(OpenError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn round_trips_and_any_flipped_byte_fails(msg in proptest::collection::vec(any::<u8>(), 0..512), idx in any::<usize>(), bit in 0u8..8) {
            let ring = Keyring::new(MasterKey::from_bytes(&[9u8; 32]).unwrap(), []);
            let sealed = ring.seal(&msg, binding()).unwrap();
            prop_assert_eq!(&*ring.open(&sealed.key_id, &sealed.data, binding()).unwrap(), &msg[..]);
            let mut tampered = sealed.data.clone();
            let i = idx % tampered.len();
            tampered[i] ^= 1 << bit;
            prop_assert!(ring.open(&sealed.key_id, &tampered, binding()).is_err());
        }
    }

    #[test]
    fn tags_verify_under_current_and_retired_keys_only() {
        let old = MasterKey::generate().unwrap();
        let ring = Keyring::new(old.clone(), []);
        let t = ring.tag("unsubscribe", b"ten_1\nada@example.com");
        let rotated = Keyring::new(MasterKey::generate().unwrap(), [old]);
        assert!(rotated.verify_tag("unsubscribe", b"ten_1\nada@example.com", &t[..16]));
        assert!(!rotated.verify_tag("unsubscribe", b"ten_1\nbob@example.com", &t[..16]));
        assert!(!rotated.verify_tag("other", b"ten_1\nada@example.com", &t[..16]));
        assert!(!rotated.verify_tag("unsubscribe", b"ten_1\nada@example.com", &t[..8]));
        let stranger = Keyring::new(MasterKey::generate().unwrap(), []);
        assert!(!stranger.verify_tag("unsubscribe", b"ten_1\nada@example.com", &t[..16]));
    }
}

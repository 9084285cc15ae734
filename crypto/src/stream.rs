//! Segmented AES-256-GCM for large blobs (media files): sealed and opened a segment
//! at a time, so a file of any size goes through in constant memory and a range of
//! it is read without opening the rest.
//!
//! The construction is the STREAM one (Hoang, Reyhanitabar, Rogaway, Vizár; as in
//! age and Tink's streaming AEAD): one data key per blob, derived from the master
//! key with HKDF-SHA256 and a random 16-byte salt; each segment's nonce is a random
//! 7-byte prefix, the segment's index (32-bit big endian) and a last-segment flag.
//! Reordering, dropping, duplicating or truncating segments fails to open, and so
//! does a blob moved to another row (the [`Binding`] is every segment's associated
//! data).
//!
//! Stored form: `version (1) ‖ salt (16) ‖ prefix (7)` then each segment's
//! ciphertext and tag. Every segment holds [`SEGMENT`] plaintext bytes except the
//! last, which holds 0 to [`SEGMENT`] (an empty blob is one empty last segment).

use crate::envelope::{Binding, Keyring, OpenError};
use crate::{Error, MasterKey, token};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Payload};

const VERSION: u8 = 2;
const SALT_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
/// The authentication tag each segment adds.
pub const TAG: usize = 16;
/// The header before the first segment.
pub const HEADER: usize = 1 + SALT_LEN + PREFIX_LEN;
const HKDF_INFO: &[u8] = b"switchboard stream v1 aes-256-gcm";

/// Where the ciphertext of plaintext segment `index` starts in the stored form.
pub fn segment_offset(index: u64) -> u64 {
    HEADER as u64 + index * (SEGMENT + TAG) as u64
}

/// How long the stored form of `plaintext_len` bytes is.
pub fn sealed_len(plaintext_len: u64) -> u64 {
    let segments = plaintext_len.div_ceil(SEGMENT as u64).max(1);
    HEADER as u64 + plaintext_len + segments * TAG as u64
}

/// How many plaintext bytes a stored form of `sealed_len` bytes holds, if the
/// length is one a sealer can produce.
pub fn plaintext_len(sealed_len: u64) -> Option<u64> {
    let body = sealed_len.checked_sub(HEADER as u64)?;
    let full = (SEGMENT + TAG) as u64;
    let (whole, rest) = (body / full, body % full);
    match rest {
        0 if whole > 0 => Some(whole * SEGMENT as u64),
        r if r >= TAG as u64 => Some(whole * SEGMENT as u64 + r - TAG as u64),
        _ => None,
    }
}

fn cipher(key: &MasterKey, salt: &[u8]) -> Aes256Gcm {
    crate::envelope::data_key_cipher(key, salt, HKDF_INFO)
}

fn nonce(prefix: &[u8; PREFIX_LEN], index: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..PREFIX_LEN].copy_from_slice(prefix);
    n[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Seals one blob, segment by segment, under the keyring's current key.
pub struct Sealer {
    cipher: Aes256Gcm,
    prefix: [u8; PREFIX_LEN],
    aad: Vec<u8>,
    next: u32,
    done: bool,
    key_id: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for `binding`, and the header to store before its segments.
    pub fn new(ring: &Keyring, binding: Binding<'_>) -> Result<(Self, Vec<u8>), Error> {
        let random = token::random_bytes(SALT_LEN + PREFIX_LEN)?;
        let (salt, prefix) = random.split_at(SALT_LEN);
        let mut header = Vec::with_capacity(HEADER);
        header.push(VERSION);
        header.extend_from_slice(&random);
        let sealer = Self {
            cipher: cipher(ring.current_key(), salt),
            prefix: prefix.try_into().expect("7-byte prefix"),
            aad: binding.aad(),
            next: 0,
            done: false,
            key_id: ring.current_id().to_owned(),
        };
        Ok((sealer, header))
    }

    /// The id of the master key sealing (stored beside the blob).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals the next segment: exactly [`SEGMENT`] bytes, or up to that many when
    /// `last`. After the last one the sealer takes no more.
    pub fn seal(&mut self, plaintext: &[u8], last: bool) -> Result<Vec<u8>, Error> {
        if self.done {
            return Err(Error::Random("the blob is already complete".into()));
        }
        if plaintext.len() > SEGMENT || (!last && plaintext.len() != SEGMENT) {
            return Err(Error::Random(format!(
                "a segment holds {SEGMENT} bytes (the last one up to that)"
            )));
        }
        let n = nonce(&self.prefix, self.next, last);
        let ct = self
            .cipher
            .encrypt(
                (&n).into(),
                Payload {
                    msg: plaintext,
                    aad: &self.aad,
                },
            )
            .map_err(|_| Error::Random("encryption failed".into()))?;
        self.next = self
            .next
            .checked_add(1)
            .ok_or_else(|| Error::Random("the blob is too large".into()))?;
        self.done = last;
        Ok(ct)
    }
}

/// Opens the segments of one sealed blob, in any order.
pub struct Opener {
    cipher: Aes256Gcm,
    prefix: [u8; PREFIX_LEN],
    aad: Vec<u8>,
    segments: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for a blob of `plaintext_len` bytes sealed by key `key_id` for
    /// `binding`, from its header.
    pub fn new(
        ring: &Keyring,
        key_id: &str,
        header: &[u8],
        plaintext_len: u64,
        binding: Binding<'_>,
    ) -> Result<Self, OpenError> {
        let key = ring
            .key(key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        if header.len() != HEADER || header[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let (salt, prefix) = header[1..].split_at(SALT_LEN);
        Ok(Self {
            cipher: cipher(key, salt),
            prefix: prefix.try_into().expect("7-byte prefix"),
            aad: binding.aad(),
            segments: plaintext_len.div_ceil(SEGMENT as u64).max(1),
        })
    }

    /// How many segments the blob has.
    pub fn segments(&self) -> u64 {
        self.segments
    }

    /// Opens segment `index` from its ciphertext (as stored, tag included).
    pub fn open(&self, index: u64, ciphertext: &[u8]) -> Result<Vec<u8>, OpenError> {
        if index >= self.segments {
            return Err(OpenError::Malformed);
        }
        let last = index + 1 == self.segments;
        let i = u32::try_from(index).map_err(|_| OpenError::Malformed)?;
        let n = nonce(&self.prefix, i, last);
        let plain = self
            .cipher
            .decrypt(
                (&n).into(),
                Payload {
                    msg: ciphertext,
                    aad: &self.aad,
                },
            )
            .map_err(|_| OpenError::Authentication)?;
        if !last && plain.len() != SEGMENT {
            return Err(OpenError::Malformed);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding<'static> {
        Binding {
            tenant_id: "ten_1",
            record_id: "med_1",
            purpose: "media.blob",
        }
    }

    /// Seals `data` whole; returns (key id, stored form).
    fn seal_all(ring: &Keyring, data: &[u8], b: Binding<'_>) -> (String, Vec<u8>) {
        let (mut s, mut out) = Sealer::new(ring, b).unwrap();
        // A blob ending on a segment boundary ends with that full segment.
        let mut chunks: Vec<&[u8]> = data.chunks(SEGMENT).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            out.extend(s.seal(c, i + 1 == n).unwrap());
        }
        (s.key_id().to_owned(), out)
    }

    fn open_all(
        ring: &Keyring,
        key_id: &str,
        stored: &[u8],
        len: u64,
        b: Binding<'_>,
    ) -> Result<Vec<u8>, OpenError> {
        let o = Opener::new(ring, key_id, &stored[..HEADER], len, b)?;
        let mut out = Vec::new();
        for i in 0..o.segments() {
            let start = segment_offset(i) as usize;
            let end = (start + SEGMENT + TAG).min(stored.len());
            out.extend(o.open(i, stored.get(start..end).ok_or(OpenError::Malformed)?)?);
        }
        Ok(out)
    }

    #[test]
    fn blobs_of_every_shape_round_trip_and_their_lengths_agree() {
        let ring = Keyring::new(MasterKey::generate().unwrap(), []);
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (key_id, stored) = seal_all(&ring, &data, binding());
            assert_eq!(stored.len() as u64, sealed_len(len as u64), "{len}");
            assert_eq!(
                plaintext_len(stored.len() as u64),
                Some(len as u64),
                "{len}"
            );
            assert_eq!(
                open_all(&ring, &key_id, &stored, len as u64, binding()).unwrap(),
                data
            );
        }
        assert_eq!(plaintext_len(HEADER as u64 + 3), None);
    }

    #[test]
    fn one_segment_opens_alone() {
        let ring = Keyring::new(MasterKey::generate().unwrap(), []);
        let data: Vec<u8> = (0..3 * SEGMENT + 5).map(|i| (i % 256) as u8).collect();
        let (key_id, stored) = seal_all(&ring, &data, binding());
        let o = Opener::new(
            &ring,
            &key_id,
            &stored[..HEADER],
            data.len() as u64,
            binding(),
        )
        .unwrap();
        let start = segment_offset(2) as usize;
        let seg = o.open(2, &stored[start..start + SEGMENT + TAG]).unwrap();
        assert_eq!(seg, &data[2 * SEGMENT..3 * SEGMENT]);
    }

    #[test]
    fn reordered_truncated_or_moved_blobs_do_not_open() {
        let ring = Keyring::new(MasterKey::generate().unwrap(), []);
        let data: Vec<u8> = (0..2 * SEGMENT + 9).map(|i| (i % 13) as u8).collect();
        let len = data.len() as u64;
        let (key_id, stored) = seal_all(&ring, &data, binding());
        let full = SEGMENT + TAG;
        // Segments 0 and 1 swapped.
        let mut swapped = stored[..HEADER].to_vec();
        swapped.extend_from_slice(&stored[HEADER + full..HEADER + 2 * full]);
        swapped.extend_from_slice(&stored[HEADER..HEADER + full]);
        swapped.extend_from_slice(&stored[HEADER + 2 * full..]);
        assert_eq!(
            open_all(&ring, &key_id, &swapped, len, binding()),
            Err(OpenError::Authentication)
        );
        // Cut after two full segments, claimed to be two segments long: the second
        // was not sealed as the last one.
        let cut = &stored[..HEADER + 2 * full];
        assert_eq!(
            open_all(&ring, &key_id, cut, 2 * SEGMENT as u64, binding()),
            Err(OpenError::Authentication)
        );
        // Another row.
        let other = Binding {
            record_id: "med_2",
            ..binding()
        };
        assert_eq!(
            open_all(&ring, &key_id, &stored, len, other),
            Err(OpenError::Authentication)
        );
        // A flipped bit.
        let mut flipped = stored.clone();
        flipped[HEADER + 5] ^= 1;
        assert_eq!(
            open_all(&ring, &key_id, &flipped, len, binding()),
            Err(OpenError::Authentication)
        );
        assert!(matches!(
            Opener::new(&ring, "nope", &stored[..HEADER], len, binding()),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_sealer_refuses_odd_segments_and_anything_after_the_last() {
        let ring = Keyring::new(MasterKey::generate().unwrap(), []);
        let (mut s, _) = Sealer::new(&ring, binding()).unwrap();
        assert!(
            s.seal(&[1, 2, 3], false).is_err(),
            "a short segment that is not the last"
        );
        assert!(s.seal(&vec![0; SEGMENT + 1], true).is_err());
        s.seal(&[1, 2, 3], true).unwrap();
        assert!(s.seal(&[4], true).is_err());
    }

    #[test]
    fn retired_keys_still_open() {
        let old = MasterKey::generate().unwrap();
        let (key_id, stored) = seal_all(&Keyring::new(old.clone(), []), b"voice note", binding());
        let ring = Keyring::new(MasterKey::generate().unwrap(), [old]);
        assert_eq!(
            open_all(&ring, &key_id, &stored, 10, binding()).unwrap(),
            b"voice note"
        );
    }
}

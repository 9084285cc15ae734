//! Standard Webhooks (spec v1) signing and verification.
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature`: a space-separated list of `v1,<base64 HMAC-SHA256>` over
//! `{id}.{timestamp}.{body}`, one per secret in force (several while a secret is
//! being rotated). Secrets are `whsec_` + base64 of 24–64 random bytes. Verification
//! rejects timestamps more than five minutes away from now and compares in constant
//! time. Any stock Standard Webhooks verifier accepts what [`sign`] produces.

use crate::{Error, Secret, constant_time_eq, token};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// Prefix of webhook secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Allowed secret lengths in bytes.
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Length of generated secrets.
pub const GENERATED_SECRET_BYTES: usize = 32;
/// How far a timestamp may be from now, either way, in seconds.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// An HMAC key for signing webhooks.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(Zeroizing::new(token::random_bytes(
            GENERATED_SECRET_BYTES,
        )?)))
    }

    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .unwrap_or(text.trim());
        let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(|_| Error::Base64)?);
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(Error::KeyLength {
                expected: GENERATED_SECRET_BYTES,
                actual: bytes.len(),
            });
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `whsec_…` text, to hand to the endpoint's owner once.
    pub fn to_text(&self) -> Secret<String> {
        Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(&*self.0)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac(id, timestamp, body);
    let out = format!("v1,{}", STANDARD.encode(mac));
    mac.zeroize();
    out
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a WebhookSecret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A signature from a header: its version tag and decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSignature<'a> {
    pub version: &'a str,
    pub bytes: Vec<u8>,
}

/// Parses a `webhook-signature` header; malformed entries are skipped, never fatal.
pub fn parse_signature_header(header: &str) -> Vec<HeaderSignature<'_>> {
    header
        .split_ascii_whitespace()
        .filter_map(|entry| {
            let (version, b64) = entry.split_once(',')?;
            if version.is_empty() || b64.is_empty() {
                return None;
            }
            let bytes = STANDARD.decode(b64).ok()?;
            Some(HeaderSignature { version, bytes })
        })
        .collect()
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not a unix time in seconds")]
    InvalidTimestamp,
    #[error("webhook-timestamp is too old")]
    TooOld,
    #[error("webhook-timestamp is in the future")]
    TooNew,
    #[error("no matching v1 signature")]
    NoMatch,
}

/// Verifies a delivery against any of `secrets` at time `now` (unix seconds).
pub fn verify<'a>(
    secrets: impl IntoIterator<Item = &'a WebhookSecret>,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    if ts < now - TOLERANCE_SECS {
        return Err(VerifyError::TooOld);
    }
    if ts > now + TOLERANCE_SECS {
        return Err(VerifyError::TooNew);
    }
    let presented = parse_signature_header(signature);
    for secret in secrets {
        let expected = secret.mac(id, ts, body);
        if presented
            .iter()
            .any(|s| s.version == "v1" && constant_time_eq(&s.bytes, &expected))
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn spec_test_vector() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(sign(&secret, ID, TS, BODY), EXPECTED);
        assert_eq!(
            verify([&secret], ID, "1649367553", EXPECTED, BODY, TS),
            Ok(())
        );
        assert_eq!(secret.to_text().expose(), SECRET);
    }

    #[test]
    fn timestamp_tolerance_is_five_minutes_both_ways() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let ok = |now| verify([&secret], ID, "1649367553", EXPECTED, BODY, now);
        assert_eq!(ok(TS + 300), Ok(()));
        assert_eq!(ok(TS - 300), Ok(()));
        assert_eq!(ok(TS + 301), Err(VerifyError::TooOld));
        assert_eq!(ok(TS - 301), Err(VerifyError::TooNew));
        assert_eq!(
            verify([&secret], ID, "soon", EXPECTED, BODY, TS),
            Err(VerifyError::InvalidTimestamp)
        );
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let old = WebhookSecret::generate().unwrap();
        let new = WebhookSecret::generate().unwrap();
        let header = signature_header([&new, &old], ID, TS, BODY);
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify([&old], ID, &TS.to_string(), &header, BODY, TS).is_ok());
        assert!(verify([&new], ID, &TS.to_string(), &header, BODY, TS).is_ok());
        let other = WebhookSecret::generate().unwrap();
        assert_eq!(
            verify([&other], ID, &TS.to_string(), &header, BODY, TS),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert!(WebhookSecret::parse("whsec_AAAA").is_err());
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
        let s = WebhookSecret::generate().unwrap();
        assert_eq!(s.bytes().len(), 32);
        assert!(!format!("{s:?}").contains(&s.to_text().expose()[6..]));
        assert_eq!(WebhookSecret::parse(s.to_text().expose()).unwrap(), s);
    }

    #[test]
    fn header_parser_skips_garbage() {
        let parsed = parse_signature_header("v1,AAAA  junk v1, ,x v1a,AAAA v1,@@@");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].version, "v1a");
    }

    proptest! {
        #[test]
        fn any_flipped_body_byte_fails(body in proptest::collection::vec(any::<u8>(), 1..256), idx in any::<usize>(), bit in 0u8..8) {
            let secret = WebhookSecret::generate().unwrap();
            let header = signature_header([&secret], ID, TS, &body);
            prop_assert!(verify([&secret], ID, &TS.to_string(), &header, &body, TS).is_ok());
            let mut tampered = body.clone();
            let i = idx % tampered.len();
            tampered[i] ^= 1 << bit;
            prop_assert_eq!(verify([&secret], ID, &TS.to_string(), &header, &tampered, TS), Err(VerifyError::NoMatch));
        }

        #[test]
        fn any_flipped_signature_byte_fails(idx in 0usize..32, bit in 0u8..8) {
            let secret = WebhookSecret::parse(SECRET).unwrap();
            let mut mac = STANDARD.decode(&EXPECTED[3..]).unwrap();
            mac[idx] ^= 1 << bit;
            let header = format!("v1,{}", STANDARD.encode(&mac));
            prop_assert_eq!(verify([&secret], ID, "1649367553", &header, BODY, TS), Err(VerifyError::NoMatch));
        }

        #[test]
        fn parser_never_panics(header in ".{0,300}") {
            let _ = parse_signature_header(&header);
        }
    }
}

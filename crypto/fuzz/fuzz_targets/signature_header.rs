//! Fuzzes the `webhook-signature` header parser and the verifier with untrusted
//! headers: neither may panic, and nothing but the right MAC may verify.
//!
//! Run: `cd crypto && cargo fuzz run signature_header` (see crypto/fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_crypto::webhook::{self, WebhookSecret};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = webhook::parse_signature_header(text);
    let secret = WebhookSecret::from_bytes(&[7u8; 32]).unwrap();
    let (id, ts, body) = ("msg_fuzz", 1_700_000_000i64, b"{}".as_slice());
    let genuine = webhook::sign(&secret, id, ts, body);
    let verdict = webhook::verify([&secret], id, &ts.to_string(), text, body, ts);
    // Only a header carrying the genuine MAC under `v1` may verify.
    let genuine = webhook::parse_signature_header(&genuine).remove(0).bytes;
    let carries_genuine = webhook::parse_signature_header(text)
        .iter()
        .any(|s| s.version == "v1" && s.bytes == genuine);
    assert_eq!(verdict.is_ok(), carries_genuine);
});

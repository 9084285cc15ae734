//! Fuzzes the e-mail parser's entry point with arbitrary bytes off the network:
//! `parse` must return a message or a reason, never panic, and what it returns
//! must hold its promises (bounded text, a well-formed thread id, attachments that
//! can be fetched by their index).
//!
//! Run: `cd actors && cargo fuzz run email_parse -- -max_total_time=60`
//! (see actors/fuzz/README.md).

#![no_main]

#[path = "../../src/channels/email/parse.rs"]
#[allow(dead_code)]
mod parse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = parse::parse(data) else { return };
    assert!(m.text.len() <= parse::MAX_TEXT_BYTES);
    assert!(m.thread_id.starts_with("thr_") && m.thread_id.len() == 28);
    assert!(!m.message_id.is_empty());
    for (i, a) in m.attachments.iter().enumerate() {
        assert_eq!(a.index, i);
        let (info, bytes) = parse::attachment(data, i).expect("a listed attachment can be fetched");
        assert_eq!(info.size, bytes.len());
    }
});

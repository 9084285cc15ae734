//! Reading a fetched message (RFC 5322 + MIME) with `mail-parser`: who, subject, a
//! readable text (HTML converted with `html2text` when there is no text part),
//! attachments as metadata, and a stable thread id from Message-ID / In-Reply-To /
//! References.
//!
//! [`parse`] is the one entry point for bytes off the network (fuzzed in
//! `fuzz/`): whatever it is given, it returns a [`ParsedMail`] or a [`ParseError`]
//! saying why not, never panics. The file names nothing else of the crate, so the
//! fuzz target (`actors/fuzz`) builds it on its own. Broken MIME, 8-bit headers in unknown charsets
//! and missing headers all still give a message: what can be read is kept.

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest text kept for a message (the rest is cut, and `text_truncated` says so).
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Width HTML is wrapped at when converted to text.
const HTML_WIDTH: usize = 100;

/// A mailbox as a header names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An attachment of a received message, described: its bytes are in the media store
/// (`media_id`, `GET /v1/media/{id}`) where they could be kept, and can be fetched
/// from the mailbox again (`GET /v1/messages/{id}/attachments/{index}`). The channels
/// call it [`ReceivedAttachment`](crate::channels::ReceivedAttachment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AttachmentInfo {
    /// Its position among the message's attachments (what the download route takes).
    pub index: usize,
    pub filename: Option<String>,
    pub mime_type: String,
    pub size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    /// Its id in the media store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    /// Hex SHA-256 of its bytes (once stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it is not in the store (`too_large`, `tenant_full`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_error: Option<String>,
}

/// What a message says, as far as it can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMail {
    /// Its Message-ID without the angle brackets (made up from its bytes when it has
    /// none: see `message_id_missing`).
    pub message_id: String,
    pub message_id_missing: bool,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The same for every message of a conversation: the thread's first Message-ID,
    /// hashed.
    pub thread_id: String,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: Option<String>,
    pub text: String,
    pub text_truncated: bool,
    /// The text came from the HTML part (there was no text part).
    pub text_from_html: bool,
    /// The Date header (unix ms), if it could be read.
    pub date: Option<i64>,
    pub attachments: Vec<AttachmentInfo>,
    /// A delivery status notification (RFC 3464): the recipients whose delivery
    /// failed for good (`Action: failed`, a `5.x.x` status).
    pub bounced: Vec<Bounce>,
}

/// A recipient a delivery status notification says is gone for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounce {
    pub address: String,
    /// Its status code (`5.1.1`).
    pub status: String,
    /// What the receiving server said (`Diagnostic-Code`), if given.
    pub diagnostic: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the message is empty")]
    Empty,
    #[error("not an e-mail message: no header could be read")]
    NoHeaders,
}

/// Reads a raw message.
pub fn parse(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NoHeaders)?;
    if message.headers().is_empty() {
        return Err(ParseError::NoHeaders);
    }
    let (message_id, message_id_missing) = match message.message_id().map(clean_id) {
        Some(id) if !id.is_empty() => (id, false),
        _ => (made_up_id(raw), true),
    };
    let in_reply_to = ids(message.in_reply_to()).into_iter().next();
    let references = ids(message.references());
    let root = references
        .first()
        .or(in_reply_to.as_ref())
        .unwrap_or(&message_id);
    let (text, text_from_html) = text_of(&message);
    let (text, text_truncated) = truncate(text, MAX_TEXT_BYTES);
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(index, part)| AttachmentInfo {
            index,
            filename: part.attachment_name().map(str::to_owned),
            mime_type: mime_of(part),
            size: part.len(),
            content_id: part.content_id().map(clean_id),
            media_id: None,
            sha256: None,
            media_error: None,
        })
        .collect();
    Ok(ParsedMail {
        thread_id: thread_id(root),
        message_id,
        message_id_missing,
        in_reply_to,
        references,
        from: mailboxes(message.from()).into_iter().next(),
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        reply_to: mailboxes(message.reply_to()),
        subject: message.subject().map(|s| s.trim().to_owned()),
        text,
        text_truncated,
        text_from_html,
        date: message.date().map(|d| d.to_timestamp() * 1000),
        attachments,
        bounced: bounces(&message),
    })
}

/// The hard bounces a delivery status notification reports: its
/// `message/delivery-status` part read as RFC 3464 field groups (one per recipient
/// after the per-message group), each with `Final-Recipient: rfc822; <address>`,
/// `Action: failed` and a permanent (`5.x.x`) `Status`.
fn bounces(message: &mail_parser::Message<'_>) -> Vec<Bounce> {
    let Some(part) = message.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("message")
                && c.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status"))
        })
    }) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(part.contents());
    let mut out = Vec::new();
    for group in text.replace("\r\n", "\n").split("\n\n") {
        let fields = dsn_fields(group);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        let (Some(recipient), Some(action), Some(status)) = (
            field("Final-Recipient").or_else(|| field("Original-Recipient")),
            field("Action"),
            field("Status"),
        ) else {
            continue;
        };
        let address = recipient
            .split_once(';')
            .map_or(recipient, |(_, a)| a)
            .trim()
            .trim_matches(['<', '>']);
        if action.eq_ignore_ascii_case("failed")
            && status.starts_with("5.")
            && address.contains('@')
        {
            out.push(Bounce {
                address: address.to_owned(),
                status: status
                    .split_whitespace()
                    .next()
                    .unwrap_or(status)
                    .to_owned(),
                diagnostic: field("Diagnostic-Code").map(str::to_owned),
            });
        }
    }
    out
}

/// `Name: value` fields of one group, continuation lines unfolded.
fn dsn_fields(group: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in group.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// The bytes of the `index`th attachment of a raw message, with what it is.
pub fn attachment(raw: &[u8], index: usize) -> Option<(AttachmentInfo, Vec<u8>)> {
    let message = MessageParser::default().parse(raw)?;
    let part = message.attachments().nth(index)?;
    let info = AttachmentInfo {
        index,
        filename: part.attachment_name().map(str::to_owned),
        mime_type: mime_of(part),
        size: part.len(),
        content_id: part.content_id().map(clean_id),
        media_id: None,
        sha256: None,
        media_error: None,
    };
    Some((info, part.contents().to_vec()))
}

/// The thread id of a conversation whose first message has `root_message_id`.
pub fn thread_id(root_message_id: &str) -> String {
    let digest = Sha256::digest(clean_id(root_message_id).as_bytes());
    format!("thr_{}", hex::encode(&digest[..12]))
}

/// A Message-ID without its angle brackets and surrounding space.
pub fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_owned()
}

/// An id for a message that has none: the same for the same bytes, so fetching it
/// again gives the same id.
fn made_up_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    format!("{}@no-message-id.invalid", hex::encode(&digest[..16]))
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<String> = match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    };
    list.iter()
        .map(|s| clean_id(s))
        .filter(|s| !s.is_empty())
        .collect()
}

fn mailboxes(address: Option<&Address<'_>>) -> Vec<Mailbox> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|a| {
            let addr = a.address.as_deref()?.trim();
            (!addr.is_empty()).then(|| Mailbox {
                address: addr.to_owned(),
                name: a
                    .name
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            })
        })
        .collect()
}

fn mime_of(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "application/octet-stream".into(),
    }
}

/// The message's text: its first text part, or its HTML converted to text.
fn text_of(message: &mail_parser::Message<'_>) -> (String, bool) {
    if let Some(part) = message.text_part(0)
        && !part.is_text_html()
        && let Some(text) = part.text_contents()
    {
        return (text.to_owned(), false);
    }
    if let Some(part) = message.html_part(0)
        && let Some(html) = part.text_contents()
    {
        let text = html2text::config::plain_no_decorate()
            .string_from_read(html.as_bytes(), HTML_WIDTH)
            .unwrap_or_default();
        return (text.trim_end().to_owned(), true);
    }
    // Broken MIME (a boundary that never closes) leaves the text as an unnamed
    // text "attachment": read it rather than lose it.
    let stray = message
        .attachments()
        .find(|p| p.is_text() && !p.is_text_html() && p.attachment_name().is_none());
    match stray.and_then(|p| p.text_contents()) {
        Some(text) => (text.to_owned(), false),
        None => (String::new(), false),
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn truncate(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_message_is_read_with_its_threading_headers() {
        let raw = b"From: Ann <ann@example.com>\r\nTo: bob@example.com, Cy <cy@example.com>\r\n\
Cc: dee@example.com\r\nSubject:  Re: Plans \r\nMessage-ID: <b2@example.com>\r\n\
In-Reply-To: <b1@example.com>\r\nReferences: <b0@example.com> <b1@example.com>\r\n\
Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nSee you at 10.\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.message_id, "b2@example.com");
        assert!(!m.message_id_missing);
        assert_eq!(m.in_reply_to.as_deref(), Some("b1@example.com"));
        assert_eq!(m.references, ["b0@example.com", "b1@example.com"]);
        assert_eq!(m.thread_id, thread_id("<b0@example.com>"));
        assert_eq!(m.from.as_ref().unwrap().address, "ann@example.com");
        assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("Ann"));
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.cc[0].address, "dee@example.com");
        assert_eq!(m.subject.as_deref(), Some("Re: Plans"));
        assert_eq!(m.text.trim(), "See you at 10.");
        assert_eq!(m.date, Some(1_796_119_200_000));
    }

    #[test]
    fn the_first_message_of_a_thread_and_its_replies_share_a_thread_id() {
        let first = parse(b"Message-ID: <r@x>\r\nSubject: a\r\n\r\nhi").unwrap();
        let reply = parse(b"Message-ID: <s@x>\r\nIn-Reply-To: <r@x>\r\n\r\nho").unwrap();
        let later =
            parse(b"Message-ID: <t@x>\r\nIn-Reply-To: <s@x>\r\nReferences: <r@x> <s@x>\r\n\r\n.")
                .unwrap();
        assert_eq!(first.thread_id, reply.thread_id);
        assert_eq!(first.thread_id, later.thread_id);
        assert!(first.thread_id.starts_with("thr_") && first.thread_id.len() == 28);
    }

    #[test]
    fn html_only_mail_gets_readable_text() {
        let raw =
            b"From: a@x\r\nMessage-ID: <h@x>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><h1>Invoice</h1><p>Total: <b>42 EUR</b></p><script>x()</script></body></html>";
        let m = parse(raw).unwrap();
        assert!(m.text_from_html);
        assert!(
            m.text.contains("Invoice") && m.text.contains("Total: 42 EUR"),
            "{}",
            m.text
        );
        assert!(!m.text.contains('<'), "{}", m.text);
    }

    #[test]
    fn attachments_are_listed_without_their_bytes_and_fetched_by_index() {
        let raw = b"From: a@x\r\nMessage-ID: <m@x>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: application/pdf; name=\"q.pdf\"\r\nContent-Disposition: attachment; filename=\"q.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.text.trim(), "see attached");
        assert_eq!(
            m.attachments,
            [AttachmentInfo {
                index: 0,
                filename: Some("q.pdf".into()),
                mime_type: "application/pdf".into(),
                size: 9,
                content_id: None,
                media_id: None,
                sha256: None,
                media_error: None,
            }]
        );
        let (info, bytes) = attachment(raw, 0).unwrap();
        assert_eq!(info.filename.as_deref(), Some("q.pdf"));
        assert_eq!(bytes, b"%PDF-1.4\n");
        assert!(attachment(raw, 1).is_none());
    }

    #[test]
    fn a_message_without_message_id_gets_a_stable_made_up_one() {
        let raw = b"From: a@x\r\nSubject: no id\r\n\r\nbody";
        let a = parse(raw).unwrap();
        assert!(a.message_id_missing);
        assert!(a.message_id.ends_with("@no-message-id.invalid"));
        assert_eq!(parse(raw).unwrap().message_id, a.message_id);
        assert_eq!(a.thread_id, thread_id(&a.message_id));
    }

    #[test]
    fn broken_input_is_refused_or_read_as_far_as_it_goes() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b" \r\n\r\n"), Err(ParseError::Empty));
        // 8-bit bytes in a header, in a charset nobody declared.
        let m = parse(b"Subject: caf\xe9 \xff\xfe\r\nFrom: \xc0@x\r\n\r\nbody\xff").unwrap();
        assert!(m.subject.unwrap().starts_with("caf"));
        // An unknown declared charset, and a boundary that never comes.
        let m = parse(
            b"Subject: =?x-unknown?B?aGk=?=\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain; charset=x-nope\r\n\r\nhello",
        )
        .unwrap();
        assert!(m.text.contains("hello"), "{}", m.text);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let (t, cut) = truncate("ééé".into(), 3);
        assert_eq!((t.as_str(), cut), ("é", true));
        let (t, cut) = truncate("ab".into(), 3);
        assert_eq!((t.as_str(), cut), ("ab", false));
    }

    #[test]
    fn a_delivery_status_notification_names_its_hard_bounces() {
        let raw = "From: MAILER-DAEMON@mx.example\r\nTo: me@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.example\r\nArrival-Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n\
Final-Recipient: rfc822; Gone@Example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1\r\n <gone@example.org>: user unknown\r\n\r\n\
Final-Recipient: rfc822; later@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n\
--b\r\nContent-Type: message/rfc822-headers\r\n\r\nSubject: hello\r\n\r\n--b--\r\n";
        let p = parse(raw.as_bytes()).unwrap();
        assert_eq!(p.bounced.len(), 1, "{:?}", p.bounced);
        assert_eq!(p.bounced[0].address, "Gone@Example.org");
        assert_eq!(p.bounced[0].status, "5.1.1");
        assert!(
            p.bounced[0]
                .diagnostic
                .as_deref()
                .unwrap()
                .contains("user unknown")
        );
        let plain =
            parse(b"From: a@b.c\r\nSubject: Status: 5.1.1\r\n\r\nAction: failed\r\n").unwrap();
        assert!(plain.bounced.is_empty());
    }
}

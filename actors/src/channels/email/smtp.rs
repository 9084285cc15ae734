//! Sending: composing a message with `lettre` (text, attachments, threading headers)
//! and handing it to the SMTP server over a small pool of connections.
//!
//! The Message-ID is made from our message id, so a send retried after a crash has
//! the same id and the receiving side can tell it is one message. A 5xx answer is a
//! refusal for good ([`ChannelError::Rejected`], with the code and the server's
//! text); a 4xx or a broken connection can succeed later ([`ChannelError::Busy`]: the
//! outbound queue retries with backoff).

use super::config::{Security, Server};
use super::imap::Credentials;
use super::parse::clean_id;
use crate::channels::{AttachmentContent, ChannelError, OutboundMessage};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials as SmtpCredentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// What is answered: the headers a reply takes from the message it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    pub message_id: String,
    pub references: Vec<String>,
    pub subject: Option<String>,
}

/// A composed message: what goes over SMTP, and the bytes filed in Sent.
#[derive(Debug)]
pub struct Composed {
    pub message: Message,
    /// Its Message-ID, without angle brackets (the network id of the send).
    pub message_id: String,
}

/// A pooled SMTP client for one account.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").finish_non_exhaustive()
    }
}

impl Smtp {
    pub fn new(server: &Server, credentials: &Credentials) -> Result<Self, ChannelError> {
        let tls = |host: &str| {
            TlsParameters::new_rustls(host.to_owned())
                .map_err(|e| ChannelError::Config(format!("smtp TLS: {e}")))
        };
        let tls = match server.security {
            Security::Tls => Tls::Wrapper(tls(&server.host)?),
            Security::Starttls => Tls::Required(tls(&server.host)?),
            Security::None => Tls::None,
        };
        let (secret, mechanisms) = match credentials {
            Credentials::Password(p) => (p.clone(), vec![Mechanism::Plain, Mechanism::Login]),
            Credentials::Bearer(t) => (t.clone(), vec![Mechanism::Xoauth2]),
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
            .port(server.port)
            .tls(tls)
            .credentials(SmtpCredentials::new(server.username.clone(), secret))
            .authentication(mechanisms)
            .timeout(Some(Duration::from_secs(60)))
            .pool_config(
                PoolConfig::new()
                    .max_size(2)
                    .idle_timeout(Duration::from_secs(60)),
            )
            .build();
        Ok(Self { transport })
    }

    /// Connects and logs in without sending anything.
    pub async fn test(&self) -> Result<(), ChannelError> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ChannelError::Busy("the server did not answer NOOP".into())),
            Err(e) => Err(refusal(e)),
        }
    }

    /// Hands the message to the server.
    pub async fn send(&self, message: &Message) -> Result<(), ChannelError> {
        self.transport
            .send(message.clone())
            .await
            .map(|_| ())
            .map_err(refusal)
    }
}

/// What an SMTP error means for the send.
fn refusal(e: lettre::transport::smtp::Error) -> ChannelError {
    let text = e.to_string();
    match e.status() {
        Some(code) if e.is_permanent() => {
            ChannelError::Rejected(format!("SMTP {code}: {}", strip_code(&text)))
        }
        Some(code) => ChannelError::Busy(format!("SMTP {code}: {}", strip_code(&text))),
        None => ChannelError::Busy(format!("SMTP: {text}")),
    }
}

/// The recipient a permanent SMTP refusal (`SMTP 550: 5.1.1 …`, as [`refusal`]
/// writes it) says does not exist or takes no mail, when the send had one: a hard
/// bounce. Refusals about the sender, the message or a policy (530s, 552, 554,
/// 5.7.x) are not: they say nothing about the mailbox.
pub fn bounced_recipient(refusal: &str, to: &str) -> Option<String> {
    let rest = refusal.strip_prefix("SMTP ")?;
    let (code, text) = rest.split_once(": ").unwrap_or((rest, ""));
    let enhanced = text.split_whitespace().next().filter(|w| {
        w.split('.').count() == 3 && w.split('.').all(|p| p.chars().all(|c| c.is_ascii_digit()))
    });
    let mailbox = match enhanced {
        // 5.1.x: bad destination mailbox or system; 5.2.1: mailbox disabled.
        Some(e) => e.starts_with("5.1.") || e == "5.2.1",
        None => matches!(code, "550" | "551" | "553"),
    };
    let recipients: Vec<&str> = to
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    (mailbox && recipients.len() == 1).then(|| recipients[0].to_owned())
}

/// lettre writes "permanent error (550): text": keep the text.
fn strip_code(text: &str) -> &str {
    text.split_once("): ").map_or(text, |(_, t)| t)
}

/// The subject of a reply to `subject`: `Re: ` once.
pub fn reply_subject(subject: Option<&str>) -> String {
    let s = subject.unwrap_or_default().trim();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("re:") || lower.starts_with("aw:") || lower.starts_with("sv:") {
        s.to_owned()
    } else if s.is_empty() {
        "Re:".into()
    } else {
        format!("Re: {s}")
    }
}

/// A message's text: plain, or plain with an HTML alternative.
enum Body {
    Plain(SinglePart),
    Alternative(MultiPart),
}

/// How a recipient unsubscribes (RFC 2369 / RFC 8058): a one-click HTTPS URL that
/// takes a POST, and a mailbox to write to; either may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unsubscribe {
    pub url: Option<String>,
    pub mailto: Option<String>,
}

impl Unsubscribe {
    /// `List-Unsubscribe`'s value (the URL first, as Gmail and Yahoo read it), and
    /// whether it takes a one-click POST (`List-Unsubscribe-Post`).
    fn header(&self) -> Option<(String, bool)> {
        let mut links = Vec::new();
        if let Some(u) = &self.url {
            links.push(format!("<{u}>"));
        }
        if let Some(m) = &self.mailto {
            links.push(format!("<mailto:{m}?subject=unsubscribe>"));
        }
        (!links.is_empty()).then(|| (links.join(", "), self.url.is_some()))
    }
}

/// Composes `m` from `from`, threaded under `answered` when it is a reply, with
/// `List-Unsubscribe` headers when `unsubscribe` is given.
pub fn compose(
    m: &OutboundMessage,
    from: &super::config::From,
    answered: Option<&Answered>,
    unsubscribe: Option<&Unsubscribe>,
) -> Result<Composed, ChannelError> {
    let bad = |field: &str, e: &dyn std::fmt::Display| {
        ChannelError::Rejected(format!("`{field}` is not usable: {e}"))
    };
    let sender = Mailbox::new(
        from.name.clone(),
        from.address.parse().map_err(|e| bad("from.address", &e))?,
    );
    let domain = from
        .address
        .rsplit_once('@')
        .map_or("switchboard.invalid", |(_, d)| d);
    let message_id = format!("{}@{domain}", m.id);
    let mut b = Message::builder()
        .from(sender)
        .message_id(Some(format!("<{message_id}>")));
    let recipients: Vec<&str> =
        m.to.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
    if recipients.is_empty() {
        return Err(ChannelError::Rejected("`to` names no address".into()));
    }
    for r in recipients {
        let mailbox: Mailbox = r.parse().map_err(|e| bad("to", &e))?;
        b = b.to(mailbox);
    }
    let subject = match (&m.subject, answered) {
        (Some(s), _) => s.clone(),
        (None, Some(a)) => reply_subject(a.subject.as_deref()),
        (None, None) => String::new(),
    };
    b = b.subject(subject);
    if let Some(a) = answered {
        let parent = format!("<{}>", clean_id(&a.message_id));
        let mut refs: Vec<String> = a
            .references
            .iter()
            .map(|r| format!("<{}>", clean_id(r)))
            .collect();
        if !refs.contains(&parent) {
            refs.push(parent.clone());
        }
        b = b.in_reply_to(parent).references(refs.join(" "));
    }
    if let Some((links, one_click)) = unsubscribe.and_then(Unsubscribe::header) {
        use lettre::message::header::{HeaderName, HeaderValue};
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            links,
        ));
        if one_click {
            b = b.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
        }
    }
    let body = match &m.html {
        Some(html) => Body::Alternative(MultiPart::alternative_plain_html(
            m.text.clone(),
            html.clone(),
        )),
        None => Body::Plain(SinglePart::plain(m.text.clone())),
    };
    let message = if m.attachments.is_empty() {
        match body {
            Body::Plain(p) => b.singlepart(p),
            Body::Alternative(a) => b.multipart(a),
        }
    } else {
        let mut parts = match body {
            Body::Plain(p) => MultiPart::mixed().singlepart(p),
            Body::Alternative(a) => MultiPart::mixed().multipart(a),
        };
        for a in &m.attachments {
            let bytes = match &a.content {
                AttachmentContent::Bytes(b) => b.clone(),
                AttachmentContent::Media(id) => {
                    return Err(ChannelError::Failed(format!(
                        "attachment `{id}` was not read from the media store before composing"
                    )));
                }
            };
            let kind =
                ContentType::parse(&a.mime_type).map_err(|e| bad("attachments.mime_type", &e))?;
            parts = parts.singlepart(Attachment::new(a.filename.clone()).body(bytes, kind));
        }
        b.multipart(parts)
    };
    let message = message.map_err(|e| ChannelError::Rejected(format!("cannot compose: {e}")))?;
    Ok(Composed {
        message,
        message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Attachment as Outgoing;

    fn from() -> super::super::config::From {
        super::super::config::From {
            address: "me@example.com".into(),
            name: Some("Me".into()),
        }
    }

    #[test]
    fn a_reply_is_threaded_under_the_message_it_answers() {
        let m = OutboundMessage {
            id: "msg_01".into(),
            to: "ann@example.com".into(),
            text: "Yes.".into(),
            ..Default::default()
        };
        let answered = Answered {
            message_id: "<b2@example.com>".into(),
            references: vec!["b0@example.com".into(), "b1@example.com".into()],
            subject: Some("Plans".into()),
        };
        let c = compose(&m, &from(), Some(&answered), None).unwrap();
        assert_eq!(c.message_id, "msg_01@example.com");
        let raw = String::from_utf8(c.message.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <msg_01@example.com>"), "{raw}");
        assert!(raw.contains("In-Reply-To: <b2@example.com>"), "{raw}");
        assert!(
            raw.contains("References: <b0@example.com> <b1@example.com> <b2@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("Subject: Re: Plans"), "{raw}");
        let parsed = super::super::parse::parse(raw.as_bytes()).unwrap();
        assert_eq!(
            parsed.thread_id,
            super::super::parse::thread_id("b0@example.com")
        );
    }

    #[test]
    fn an_html_alternative_goes_with_the_text() {
        let m = OutboundMessage {
            id: "msg_03".into(),
            to: "a@example.com".into(),
            text: "Plain words".into(),
            html: Some("<p>Rich <b>words</b></p>".into()),
            subject: Some("H".into()),
            ..Default::default()
        };
        let raw = String::from_utf8(
            compose(&m, &from(), None, None)
                .unwrap()
                .message
                .formatted(),
        )
        .unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        let parsed = super::super::parse::parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.text.trim(), "Plain words");
        assert!(!parsed.text_from_html);
    }

    #[test]
    fn unsubscribe_headers_offer_one_click_only_with_a_url() {
        let m = OutboundMessage {
            id: "msg_04".into(),
            to: "a@example.com".into(),
            text: "News".into(),
            ..Default::default()
        };
        let both = Unsubscribe {
            url: Some("https://gw.example.com/v1/unsubscribe/t.k".into()),
            mailto: Some("unsub@example.com".into()),
        };
        let raw = String::from_utf8(
            compose(&m, &from(), None, Some(&both))
                .unwrap()
                .message
                .formatted(),
        )
        .unwrap()
        .replace("\r\n ", " ");
        assert!(
            raw.contains("List-Unsubscribe: <https://gw.example.com/v1/unsubscribe/t.k>, <mailto:unsub@example.com?subject=unsubscribe>"),
            "{raw}"
        );
        assert!(
            raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{raw}"
        );
        let mailto = Unsubscribe { url: None, ..both };
        let raw = String::from_utf8(
            compose(&m, &from(), None, Some(&mailto))
                .unwrap()
                .message
                .formatted(),
        )
        .unwrap();
        assert!(raw.contains("List-Unsubscribe: <mailto:"), "{raw}");
        assert!(!raw.contains("List-Unsubscribe-Post"), "{raw}");
    }

    #[test]
    fn only_refusals_of_the_mailbox_are_bounces() {
        let to = "gone@example.org";
        assert_eq!(
            bounced_recipient("SMTP 550: 5.1.1 no such user here", to).as_deref(),
            Some(to)
        );
        assert_eq!(
            bounced_recipient("SMTP 550: mailbox unavailable", to).as_deref(),
            Some(to)
        );
        assert_eq!(bounced_recipient("SMTP 554: 5.7.1 spam", to), None);
        assert_eq!(
            bounced_recipient("SMTP 535: 5.7.8 bad credentials", to),
            None
        );
        assert_eq!(bounced_recipient("SMTP 552: 5.3.4 too big", to), None);
        assert_eq!(
            bounced_recipient("SMTP 550: 5.1.1 no such user", "a@x.org, b@y.org"),
            None,
            "which of two is not said"
        );
    }

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(reply_subject(Some("Plans")), "Re: Plans");
        assert_eq!(reply_subject(Some("RE: Plans")), "RE: Plans");
        assert_eq!(reply_subject(None), "Re:");
    }

    #[test]
    fn attachments_go_in_a_mixed_multipart_and_bad_addresses_are_refused() {
        let m = OutboundMessage {
            id: "msg_02".into(),
            to: "a@example.com, b@example.com".into(),
            text: "see".into(),
            subject: Some("Q".into()),
            attachments: vec![Outgoing {
                filename: "q.txt".into(),
                mime_type: "text/plain".into(),
                content: AttachmentContent::Bytes(b"quote".to_vec()),
                as_voice: false,
            }],
            ..Default::default()
        };
        let raw = String::from_utf8(
            compose(&m, &from(), None, None)
                .unwrap()
                .message
                .formatted(),
        )
        .unwrap();
        let parsed = super::super::parse::parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.to.len(), 2);
        assert_eq!(parsed.attachments[0].filename.as_deref(), Some("q.txt"));
        assert_eq!(parsed.text.trim(), "see");
        let bad = OutboundMessage {
            to: "not an address".into(),
            ..m
        };
        assert!(matches!(
            compose(&bad, &from(), None, None),
            Err(ChannelError::Rejected(_))
        ));
    }
}

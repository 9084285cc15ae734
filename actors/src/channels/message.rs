//! What crosses the channel seam: messages both ways, login challenges, acks, and
//! the events a channel reports to its session actor.
//!
//! The shapes are the same for every channel; a channel that cannot carry a field
//! (a subject on WhatsApp, attachments on the sim's text-only mode…) refuses the
//! send with `not_supported` (see [`super::Capabilities`]), never drops it.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// An inbound message as a channel reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InboundMessage {
    /// The network's id for the message (dedupe key).
    pub external_id: String,
    /// Who sent it (phone number, address, profile id).
    pub from: String,
    pub text: String,
    /// Group or thread, when the network has them.
    pub chat: Option<String>,
    /// When the network says it was sent (unix ms).
    pub sent_at: i64,
    /// The sender's phone number (digits), where the network addresses people by
    /// another id (WhatsApp's LIDs) and can resolve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_phone: Option<String>,
    /// The chat's phone number (digits), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_phone: Option<String>,
    /// Its subject line (e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The conversation it belongs to, the same for every message of it (e-mail:
    /// from Message-ID / In-Reply-To / References).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Files it carries (e-mail attachments), described, each in the media store
    /// where it could be kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ReceivedAttachment>,
    /// The file it carries (WhatsApp media), in the media store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<ReceivedMedia>,
    /// The network's id of the message it quotes or answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// What else the network says about it (type, media, group author…), or null.
    #[serde(default)]
    pub meta: serde_json::Value,
    /// Addresses it says cannot be reached, for good (an e-mail delivery status
    /// notification's hard bounces): they go on the suppression list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounced: Vec<String>,
}

/// A received file, as `message.received` describes it (`media`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceivedMedia {
    /// Its id in the media store (`GET /v1/media/{id}`); null when it could not be
    /// fetched (see `error`).
    pub id: Option<String>,
    pub mimetype: String,
    pub size: u64,
    pub filename: Option<String>,
    /// Hex SHA-256 of the file.
    pub sha256: Option<String>,
    /// Why the file is not in the store (`media_unavailable`: gone from the network;
    /// `too_large`, `tenant_full`; or what went wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub use super::email::parse::AttachmentInfo as ReceivedAttachment;

/// A message to send.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OutboundMessage {
    /// Our id (`msg_…`): the same on every retry, so networks that deduplicate can.
    pub id: String,
    pub to: String,
    pub text: String,
    /// A subject line (e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// An HTML alternative to `text` (e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The network's id of the message this one answers (a quote, or a reply in
    /// the same thread). The API takes our `msg_…` id; the send path resolves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// What the send asks for: a message, or (LinkedIn) an invitation to connect
    /// (`text` is its note) or accepting a received one (`to` is the invitation).
    #[serde(default, skip_serializing_if = "SendKind::is_message")]
    pub kind: SendKind,
    /// Mark the recipient's chat read just before sending (channels with read
    /// receipts; elsewhere nothing is done).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mark_read: bool,
}

/// What a send asks the network to do.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SendKind {
    #[default]
    Message,
    /// An invitation to connect (LinkedIn), with `text` as its note.
    Invitation,
    /// Accepting an invitation the account received (LinkedIn).
    Accept,
}

impl SendKind {
    pub fn is_message(&self) -> bool {
        *self == Self::Message
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Invitation => "invitation",
            Self::Accept => "accept",
        }
    }
}

/// A file sent with a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub mime_type: String,
    pub content: AttachmentContent,
    /// Send an audio file as a voice note (WhatsApp).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub as_voice: bool,
}

/// Where an attachment's bytes are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentContent {
    /// The bytes themselves (base64 when serialized).
    Bytes(#[serde(with = "base64_bytes")] Vec<u8>),
    /// A file already in the media store, by id.
    Media(String),
}

mod base64_bytes {
    use super::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// What a network asks for before it lets a login through.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeKind {
    /// A code from an authenticator app.
    TwoFactor,
    /// A code sent by SMS.
    Sms,
    /// A code sent by e-mail.
    Email,
    /// Approval in the network's own app on another device (nothing to type; the
    /// channel waits for it).
    AppApproval,
    /// A captcha a person must solve.
    Captcha,
}

/// A login challenge, as a channel reports it (`session.challenge`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Challenge {
    pub kind: ChallengeKind,
    /// What the network says about it ("code sent to +33 •• •• 12"), if anything.
    pub hint: Option<String>,
    /// When the challenge lapses (unix ms).
    pub expires_at: i64,
}

/// How far a sent message got, beyond the network taking it (`message.sent`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AckLevel {
    /// It reached the recipient's device (`message.delivered`).
    Delivered,
    /// The recipient read it (`message.read`).
    Read,
}

/// What a channel reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEvent {
    /// A pairing QR code to show (raw value).
    Qr(String),
    /// A pairing code to type on the phone.
    PairingCode(String),
    /// The network wants a code or an approval before the login goes through.
    Challenge(Challenge),
    /// Logged in and ready.
    Ready,
    /// What the network says about the login (e.g. its web client's version, the
    /// account's own ids): recorded on the session, shown by `GET /v1/sessions/{id}`.
    About(serde_json::Value),
    /// A message the account sent from elsewhere (the phone itself): `chat` is who it
    /// went to, `from` the account. Reported as `message.sent` with `origin: device`.
    SentElsewhere(InboundMessage),
    Inbound(InboundMessage),
    /// A sent message got further (`id`: the network's id of the outbound message).
    Ack {
        id: String,
        level: AckLevel,
    },
    /// The network is getting its connection back by itself (the session shows
    /// `STARTING` with this reason until `Ready`).
    Reconnecting(String),
    /// The connection dropped; the session will reconnect.
    Disconnected(String),
    /// The network refuses this session until a person acts (another client took the
    /// account over, the account is blocked, the site changed): `FAILED`, no reconnect.
    Failed(String),
    /// The account logged this session out; it needs pairing again.
    LoggedOut(String),
    /// A received message changed on the network (e-mail: its flags, e.g. seen):
    /// `message.updated` with `change` merged into the event's data.
    Updated {
        external_id: String,
        change: serde_json::Value,
    },
    /// A received message was deleted on the network (`message.deleted`).
    Deleted {
        external_id: String,
    },
    /// Something happened to a stored message, either way (`message.edited`,
    /// `message.revoked`, `message.reaction`): published as `event` with the
    /// message's id and `change` merged in; nothing when no such message is stored.
    Changed {
        event: &'static str,
        external_id: String,
        change: serde_json::Value,
    },
    /// The mailbox's numbering was reset (a new IMAP UIDVALIDITY): what it held was
    /// not reported again (`mailbox.reset`, with this data).
    MailboxReset(serde_json::Value),
    /// The network pushed back (LinkedIn's 999 or 429): the session stays `WORKING`
    /// with reason `throttled_by_network: …` and sends wait out the cool-down.
    Throttled(String),
    /// Back from a cool-down.
    Resumed,
    /// Something the network reported that is not a message (`invitation.received`,
    /// `invitation.accepted`): published as an event of that type with `data`.
    Notice {
        event: &'static str,
        data: serde_json::Value,
    },
}

/// A group or contact as a network lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Party {
    /// The network's id (what `to` takes when sending).
    pub id: String,
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip_through_json() {
        let m = OutboundMessage {
            id: "msg_1".into(),
            to: "a@example.com".into(),
            text: "hi".into(),
            subject: Some("Re: hello".into()),
            html: None,
            reply_to: Some("<x@example.com>".into()),
            attachments: vec![
                Attachment {
                    filename: "a.bin".into(),
                    mime_type: "application/octet-stream".into(),
                    content: AttachmentContent::Bytes(vec![0, 1, 2, 255]),
                    as_voice: false,
                },
                Attachment {
                    filename: "b.png".into(),
                    mime_type: "image/png".into(),
                    content: AttachmentContent::Media("med_1".into()),
                    as_voice: false,
                },
            ],
            kind: SendKind::Message,
            mark_read: false,
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["attachments"][0]["content"]["bytes"], "AAEC/w==");
        assert_eq!(json["attachments"][1]["content"]["media"], "med_1");
        let back: OutboundMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        let plain = serde_json::to_value(OutboundMessage::default()).unwrap();
        assert!(plain.get("subject").is_none() && plain.get("attachments").is_none());
    }

    #[test]
    fn challenge_kinds_and_ack_levels_have_stable_names() {
        let c = Challenge {
            kind: ChallengeKind::AppApproval,
            hint: None,
            expires_at: 1,
        };
        assert_eq!(serde_json::to_value(&c).unwrap()["kind"], "app_approval");
        assert_eq!(
            serde_json::to_value(ChallengeKind::TwoFactor).unwrap(),
            "two_factor"
        );
        assert!(AckLevel::Read > AckLevel::Delivered);
    }
}

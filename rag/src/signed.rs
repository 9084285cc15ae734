//! Signed internal events: how inbound messages reach the [`crate::actor::RagActor`].
//!
//! The producer (the gateway's feed of stored `message.received` events) signs each
//! event body with an internal key, Standard Webhooks style (`v1,` HMAC-SHA256 over
//! `id.timestamp.body`); the actor verifies before it parses anything. An unsigned,
//! tampered, replayed-too-late or otherwise unverifiable event is rejected and counted
//! (`switchboard_rag_rejected_events_total{reason}`), never acted on.

use serde::Deserialize;
use switchboard_crypto::WebhookSecret;
use switchboard_crypto::webhook::{self, VerifyError};

/// Label the internal key is derived under (from the master key).
pub const KEY_LABEL: &str = "rag.internal-events";

/// The key internal events are signed with.
#[derive(Debug)]
pub struct InternalKey(WebhookSecret);

impl InternalKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, switchboard_crypto::Error> {
        WebhookSecret::from_bytes(bytes).map(Self)
    }

    /// The same key in every process holding the same master key.
    pub fn derive(keyring: &switchboard_crypto::Keyring) -> Self {
        let bytes = keyring.derive(KEY_LABEL);
        Self(WebhookSecret::from_bytes(bytes.as_ref()).expect("32 bytes is a valid secret"))
    }

    /// A random key (tests).
    pub fn generate() -> Result<Self, switchboard_crypto::Error> {
        WebhookSecret::generate().map(Self)
    }
}

/// An event as it travels to the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEvent {
    pub id: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// The event envelope JSON, exactly as signed.
    pub body: Vec<u8>,
    /// `v1,<base64>`; empty when unsigned.
    pub signature: String,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the event is not signed")]
    Unsigned,
    #[error("the signature does not match (tampered or wrong key)")]
    BadSignature,
    #[error("the event timestamp is outside the tolerance")]
    Stale,
    #[error("the event body is not an inbound message: {0}")]
    Malformed(String),
}

impl Rejection {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::Stale => "stale",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// The fields of a `message.received` envelope the actor uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InboundEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub tenant_id: String,
    pub session_id: String,
    pub channel: Option<String>,
    pub data: InboundData,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InboundData {
    pub from: String,
    /// The group (or other chat) the message was posted in; `None` for a direct chat.
    #[serde(default)]
    pub chat: Option<String>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub meta: serde_json::Value,
}

impl InboundData {
    /// Whether the message came from a group chat: as the channel says (`meta.group`,
    /// e.g. LinkedIn, whose 1:1 conversations have ids of their own), else guessed
    /// from a chat that is not the sender.
    pub fn is_group(&self) -> bool {
        if let Some(group) = self.meta.get("group").and_then(serde_json::Value::as_bool) {
            return group;
        }
        self.chat.as_deref().is_some_and(|c| c != self.from)
            || self.from.ends_with("@g.us")
            || self
                .meta
                .get("group")
                .is_some_and(|g| g.as_bool() == Some(true))
    }

    /// Where a reply goes: the group for group messages, else the sender.
    pub fn reply_to(&self) -> &str {
        match &self.chat {
            Some(c) if self.is_group() => c,
            _ => &self.from,
        }
    }
}

impl SignedEvent {
    /// Signs `body` (an event envelope) as event `id` at `now` (unix seconds).
    pub fn sign(key: &InternalKey, id: &str, body: Vec<u8>, now: i64) -> Self {
        let signature = webhook::sign(&key.0, id, now, &body);
        Self {
            id: id.to_owned(),
            timestamp: now,
            body,
            signature,
        }
    }

    /// Verifies the signature, then parses the body; the body's id must be the signed id.
    pub fn verify(&self, key: &InternalKey, now: i64) -> Result<InboundEvent, Rejection> {
        if self.signature.trim().is_empty() {
            return Err(Rejection::Unsigned);
        }
        webhook::verify(
            [&key.0],
            &self.id,
            &self.timestamp.to_string(),
            &self.signature,
            &self.body,
            now,
        )
        .map_err(|e| match e {
            VerifyError::TooOld | VerifyError::TooNew | VerifyError::InvalidTimestamp => {
                Rejection::Stale
            }
            VerifyError::NoMatch => Rejection::BadSignature,
        })?;
        let event: InboundEvent =
            serde_json::from_slice(&self.body).map_err(|e| Rejection::Malformed(e.to_string()))?;
        if event.id != self.id {
            return Err(Rejection::Malformed(
                "the body's id is not the signed id".into(),
            ));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "type": "message.received", "tenant_id": "ten_1", "session_id": "ses_1",
            "channel": "sim", "created_at": "2026-11-23T00:00:00Z",
            "data": { "from": "a@c.us", "chat": null, "text": "hello" }
        }))
        .unwrap()
    }

    #[test]
    fn a_signed_event_verifies_and_parses() {
        let key = InternalKey::generate().unwrap();
        let e = SignedEvent::sign(&key, "evt_1", body("evt_1"), 1_000);
        let parsed = e.verify(&key, 1_010).unwrap();
        assert_eq!(parsed.tenant_id, "ten_1");
        assert_eq!(parsed.data.text, "hello");
        assert_eq!(parsed.data.reply_to(), "a@c.us");
    }

    #[test]
    fn tampering_unsigned_wrong_key_stale_and_swapped_ids_are_rejected() {
        let key = InternalKey::generate().unwrap();
        let other = InternalKey::generate().unwrap();
        let good = SignedEvent::sign(&key, "evt_1", body("evt_1"), 1_000);

        let mut tampered = good.clone();
        tampered.body = String::from_utf8(tampered.body)
            .unwrap()
            .replace("ten_1", "ten_2")
            .into_bytes();
        assert_eq!(tampered.verify(&key, 1_000), Err(Rejection::BadSignature));

        let mut unsigned = good.clone();
        unsigned.signature.clear();
        assert_eq!(unsigned.verify(&key, 1_000), Err(Rejection::Unsigned));

        assert_eq!(good.verify(&other, 1_000), Err(Rejection::BadSignature));
        assert_eq!(good.verify(&key, 1_000 + 3_600), Err(Rejection::Stale));

        let swapped = SignedEvent::sign(&key, "evt_2", body("evt_1"), 1_000);
        assert!(matches!(
            swapped.verify(&key, 1_000),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn group_messages_are_answered_in_the_group() {
        let d = InboundData {
            from: "15550100@c.us".into(),
            chat: Some("1203@g.us".into()),
            text: "hi".into(),
            meta: serde_json::Value::Null,
        };
        assert!(d.is_group());
        assert_eq!(d.reply_to(), "1203@g.us");
    }

    #[test]
    fn a_channel_that_names_one_to_one_conversations_is_answered_to_the_sender() {
        // LinkedIn: every conversation has its own URN, a 1:1 one too.
        let mut d = InboundData {
            from: "urn:li:fsd_profile:ACoAAB1".into(),
            chat: Some("urn:li:msg_conversation:(urn:li:fsd_profile:ACoAAA,2-abc)".into()),
            text: "hi".into(),
            meta: serde_json::json!({ "group": false, "sender": { "public_id": "grace" } }),
        };
        assert!(!d.is_group());
        assert_eq!(d.reply_to(), "urn:li:fsd_profile:ACoAAB1");
        d.meta["group"] = true.into();
        assert!(d.is_group());
        assert_eq!(d.reply_to(), d.chat.as_deref().unwrap());
    }
}

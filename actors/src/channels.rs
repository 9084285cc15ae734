//! The channel trait: what a session actor needs from a network (WhatsApp, LinkedIn,
//! email, or the synthetic `sim`), and the events a channel reports.
//!
//! A channel connects (or restores a saved login), then reports what happens as
//! [`ChannelEvent`]s on the sender it was given; it sends messages, lists groups and
//! contacts where the network has them, and logs out on request. Everything network-specific stays behind this trait.

pub mod sim;
pub mod whatsapp;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Channels this gateway can run.
pub const KNOWN: &[&str] = &["sim", "whatsapp"];

/// An inbound message as a channel reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// What else the network says about it (type, media, group author…), or null.
    #[serde(default)]
    pub meta: serde_json::Value,
}

/// A message to send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboundMessage {
    pub id: String,
    pub to: String,
    pub text: String,
}

/// What a channel reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEvent {
    /// A pairing QR code to show (raw value).
    Qr(String),
    /// A pairing code to type on the phone.
    PairingCode(String),
    /// Logged in and ready.
    Ready,
    Inbound(InboundMessage),
    /// A sent message reached the recipient (`id` of the outbound message).
    Ack {
        id: String,
    },
    /// The connection dropped; the session will reconnect.
    Disconnected(String),
    /// The account logged this session out; it needs pairing again.
    LoggedOut(String),
}

/// A group or contact as a network lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Party {
    /// The network's id (what `to` takes when sending).
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("invalid channel configuration: {0}")]
    Config(String),
    #[error("not connected")]
    NotConnected,
    /// The network refused this request for good (bad recipient, bad number).
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Momentarily unable to take the request; retrying later can succeed.
    #[error("busy: {0}")]
    Busy(String),
    #[error("{0}")]
    Failed(String),
}

/// The network side of a session.
pub trait Channel: Send + 'static {
    /// Connects (restoring a saved login where possible); events go to `events`.
    fn connect(
        &mut self,
        events: mpsc::Sender<ChannelEvent>,
    ) -> BoxFuture<'_, Result<(), ChannelError>>;
    /// Sends a message; returns the network's id for it.
    fn send(&mut self, message: OutboundMessage) -> BoxFuture<'_, Result<String, ChannelError>>;
    /// Ends the login on the network side (a new pairing will be needed).
    fn logout(&mut self) -> BoxFuture<'_, Result<(), ChannelError>>;
    /// Drops the connection (the login stays).
    fn disconnect(&mut self) -> BoxFuture<'_, ()>;
    /// Groups the account is in, where the network has them (none by default).
    fn groups(&mut self) -> BoxFuture<'_, Result<Vec<Party>, ChannelError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// The account's contacts, where the network has them (none by default).
    fn contacts(&mut self) -> BoxFuture<'_, Result<Vec<Party>, ChannelError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Asks for a code to type on the phone instead of scanning a QR code.
    fn pairing_code(&mut self, _phone: String) -> BoxFuture<'_, Result<String, ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "this channel has no pairing codes".into(),
            ))
        })
    }
    /// What the session costs in memory, where the channel can tell.
    fn memory(&mut self) -> BoxFuture<'_, Option<serde_json::Value>> {
        Box::pin(async { None })
    }
    /// Makes the channel report `message` as received (the `sim` channel: scripted
    /// conversations for tests and demos).
    fn inject(&mut self, _message: InboundMessage) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "only sim sessions take injected messages".into(),
            ))
        })
    }
}

/// Checks a channel name and its JSON configuration without building anything.
pub fn validate(channel: &str, config: &serde_json::Value) -> Result<(), ChannelError> {
    match channel {
        "sim" => sim::SimConfig::parse(config).map(|_| ()),
        "whatsapp" => whatsapp::WhatsAppConfig::parse(config).map(|_| ()),
        other => Err(ChannelError::Config(format!("unknown channel `{other}`"))),
    }
}

/// Builds the channel of a session from its row.
pub fn build(
    row: &crate::storage::SessionRow,
    deps: &crate::sessions::Deps,
) -> Result<Box<dyn Channel>, ChannelError> {
    let config: serde_json::Value =
        serde_json::from_str(&row.config).unwrap_or(serde_json::Value::Null);
    validate(&row.channel, &config)?;
    match row.channel.as_str() {
        "sim" => Ok(Box::new(sim::Sim::new(
            &row.id,
            sim::SimConfig::parse(&config)?,
        ))),
        "whatsapp" => Ok(Box::new(whatsapp::WhatsApp::new(
            &row.tenant_id,
            &row.id,
            deps.clone(),
        ))),
        other => Err(ChannelError::Config(format!("unknown channel `{other}`"))),
    }
}

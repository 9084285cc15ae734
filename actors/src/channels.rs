//! The channel trait: what a session actor needs from a network (WhatsApp, LinkedIn,
//! email, or the synthetic `sim`), and the events a channel reports.
//!
//! A channel connects (or restores a saved login), then reports what happens as
//! [`ChannelEvent`]s on the sender it was given; it sends messages, lists groups and
//! contacts where the network has them, and logs out on request. Everything network-specific stays behind this trait.

pub mod sim;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Channels this gateway can run.
pub const KNOWN: &[&str] = &["sim"];

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
}

/// Builds the channel named `channel` from its JSON configuration.
pub fn build(
    channel: &str,
    session_id: &str,
    config: &serde_json::Value,
) -> Result<Box<dyn Channel>, ChannelError> {
    match channel {
        "sim" => Ok(Box::new(sim::Sim::new(
            session_id,
            sim::SimConfig::parse(config)?,
        ))),
        other => Err(ChannelError::Config(format!("unknown channel `{other}`"))),
    }
}

//! The channel trait: what a session actor needs from a network (WhatsApp, LinkedIn,
//! email, or the synthetic `sim`), and the events a channel reports.
//!
//! A channel connects (or restores a saved login), then reports what happens as
//! [`ChannelEvent`]s on the sender it was given; it sends messages, lists groups and
//! contacts where the network has them, answers login challenges, and logs out on
//! request. Everything network-specific stays behind this trait, in one folder per
//! channel; the session actors name no channel.
//!
//! # Layout
//! - [`kind`]: [`ChannelKind`], the one list of channels: parsing a name, validating
//!   a session's config, what each can carry, and building one.
//! - [`message`]: the messages a channel carries both ways and the events it reports.
//! - [`sim`]: synthetic traffic for tests and the bench.
//! - [`whatsapp`]: WhatsApp Web in the shared Chromium (its page contract inside).
//! - [`email`]: an IMAP mailbox on IDLE, sending over SMTP.
//! - [`linkedin`]: LinkedIn's web app in the shared Chromium, under safety caps.
//!
//! # Adding a channel
//! A folder `channels/<name>.rs` + `channels/<name>/` implementing [`Channel`] (with
//! its config parser and its gateway-wide settings type), a variant in
//! [`ChannelKind`], and a field in [`Settings`] that the gateway's config fills.

pub mod email;
pub mod kind;
pub mod linkedin;
pub mod message;
pub mod sim;
pub mod whatsapp;

pub use kind::{Capabilities, ChannelKind, UnknownChannel};
pub use message::{
    AckLevel, Attachment, AttachmentContent, Challenge, ChallengeKind, ChannelEvent,
    InboundMessage, OutboundMessage, Party, ReceivedAttachment, ReceivedMedia, SendKind,
};

use crate::browser::BrowserPool;
use crate::storage::{SessionRow, Store};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use switchboard_crypto::Keyring;
use tokio::sync::mpsc;

/// Every channel's gateway-wide settings: one field per channel, each that channel's
/// own type (parsed by the gateway's config).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub whatsapp: whatsapp::Settings,
    pub email: email::Settings,
    pub linkedin: linkedin::Settings,
}

/// What a channel may use: storage (its saved login), the keyring (to seal it), the
/// shared browser (browser-driven channels) and the channels' settings.
#[derive(Debug, Clone)]
pub struct Context {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    /// The shared Chromium (started on first use); `None` where no browser runs.
    pub browser: Option<BrowserPool>,
    pub settings: Arc<Settings>,
    /// The media store (files sent as attachments); `None` where none is kept.
    pub media: Option<crate::media::MediaStore>,
    /// This replica's leases, which fence the channel's writes (`None`: one process).
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Context {
    /// What a write of session `id`'s state is fenced by (see [`crate::storage::Fence`]).
    pub fn fence(&self, id: &str) -> Option<crate::storage::Fence> {
        self.cluster.as_ref().map(|c| c.fence(id))
    }
}

/// A session's whole configuration: its sealed secrets opened where it has them
/// (see [`ChannelKind::prepare`]), else its stored `config`.
pub async fn session_config(
    row: &SessionRow,
    store: &Store,
    keyring: &Keyring,
) -> Result<serde_json::Value, ChannelError> {
    let sealed = store
        .session_secrets(&row.id)
        .await
        .map_err(|e| ChannelError::Failed(format!("session secrets unreadable: {e}")))?;
    let Some(sealed) = sealed else {
        return Ok(serde_json::from_str(&row.config).unwrap_or(serde_json::Value::Null));
    };
    let binding = switchboard_crypto::Binding {
        tenant_id: &row.tenant_id,
        record_id: &row.id,
        purpose: crate::storage::SESSION_SECRETS_PURPOSE,
    };
    let plain = keyring
        .open(&sealed.key_id, &sealed.data, binding)
        .map_err(|e| ChannelError::Failed(format!("session secrets do not open: {e}")))?;
    serde_json::from_slice(&plain)
        .map_err(|e| ChannelError::Failed(format!("session secrets unreadable: {e}")))
}

/// How a channel's pairing QR codes behave: how long one is valid, and how many
/// refreshes go unscanned before pairing is given up (`FAILED`, `qr_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrPolicy {
    pub lifetime: Duration,
    pub max_refreshes: u32,
}

impl Default for QrPolicy {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(60),
            max_refreshes: 5,
        }
    }
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
    /// The recipient's server refused `address` for good (an SMTP 5xx for the
    /// mailbox): a hard bounce, which puts it on the suppression list.
    #[error("bounced: {why}")]
    Bounced { address: String, why: String },
    /// The channel cannot carry this (a field, a kind of message, a request).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Momentarily unable to take the request; retrying later can succeed.
    #[error("busy: {0}")]
    Busy(String),
    #[error("{0}")]
    Failed(String),
    /// Not now: the account's safety caps (or a cool-down) let this go at that time
    /// (unix ms). The send waits in the queue; it is not an attempt that failed.
    #[error("waits until {}", crate::clock::rfc3339(*.0))]
    Later(i64),
}

/// The network side of a session.
pub trait Channel: Send + 'static {
    /// Connects (restoring a saved login where possible); events go to `events`.
    fn connect(
        &mut self,
        events: mpsc::Sender<ChannelEvent>,
    ) -> BoxFuture<'_, Result<(), ChannelError>>;
    /// Sends a message; returns the network's id for it. A field the channel cannot
    /// carry is refused with [`ChannelError::Unsupported`], never dropped.
    fn send(&mut self, message: OutboundMessage) -> BoxFuture<'_, Result<String, ChannelError>>;
    /// Ends the login on the network side (a new pairing will be needed).
    fn logout(&mut self) -> BoxFuture<'_, Result<(), ChannelError>>;
    /// Drops the connection (the login stays).
    fn disconnect(&mut self) -> BoxFuture<'_, ()>;
    /// How this channel's QR codes behave (channels without QR codes keep the default).
    fn qr_policy(&self) -> QrPolicy {
        QrPolicy::default()
    }
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
    /// Answers the login challenge the channel reported ([`ChannelEvent::Challenge`]):
    /// a 2FA, SMS or e-mail code. The channel reports `Ready` (or a new challenge)
    /// when the network accepts it; a wrong code is [`ChannelError::Rejected`].
    fn submit_code(&mut self, _code: String) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "this channel asks for no login codes".into(),
            ))
        })
    }
    /// The bytes of attachment `index` of the received message `external_id`, fetched
    /// from the network (e-mail: over the command connection).
    fn attachment(
        &mut self,
        _external_id: String,
        _index: usize,
    ) -> BoxFuture<'_, Result<(ReceivedAttachment, Vec<u8>), ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "this channel keeps no attachments to fetch".into(),
            ))
        })
    }
    /// A member's profile, by URN, profile URL or public id (LinkedIn).
    fn profile(&mut self, _who: String) -> BoxFuture<'_, Result<serde_json::Value, ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "this channel has no profiles to look up".into(),
            ))
        })
    }
    /// Reacts to a message (the network's id: received or sent) with `emoji`; an
    /// empty emoji takes the reaction back.
    fn react(
        &mut self,
        _external_id: String,
        _emoji: String,
    ) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "this channel has no reactions".into(),
            ))
        })
    }
    /// Marks a chat read on the network (its sender sees the read receipts).
    fn mark_read(&mut self, _chat: String) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "this channel has no read receipts to send".into(),
            ))
        })
    }
    /// Fetches the file of received message `external_id` (described by `described`)
    /// into the media store: a file recorded pending (`media.download = "lazy"`) on
    /// its first read. The future runs beside the session actor.
    fn fetch_media(
        &mut self,
        _external_id: String,
        _described: ReceivedMedia,
    ) -> BoxFuture<'static, Result<ReceivedMedia, ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Unsupported(
                "this channel has no files to fetch later".into(),
            ))
        })
    }
    /// A send that would hold the session actor too long (a large file): the future
    /// runs beside the actor. `Err` gives the message back for [`Channel::send`].
    #[allow(clippy::type_complexity)]
    fn send_beside(
        &mut self,
        message: Box<OutboundMessage>,
    ) -> Result<BoxFuture<'static, Result<String, ChannelError>>, Box<OutboundMessage>> {
        Err(message)
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

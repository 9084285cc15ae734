//! Session actors and their supervision: the heart of the gateway.
//!
//! ```text
//! Root ── TenantSupervisor (one per tenant with running sessions)
//!            └── SessionActor (one per session: its channel, e.g. sim)
//! ```
//!
//! - [`root`]: routes commands (start, stop, restart, logout, fault) to the tenant's
//!   supervisor, creating it on demand; restores every session whose row says it
//!   should run when the gateway starts.
//! - [`tenant`]: supervises its sessions with the one [`crate::supervision`]
//!   strategy: restart with exponential backoff and jitter, give up after too many
//!   restarts in a window (`FAILED`); a watchdog kills a session that stops answering;
//!   every status change is stored and published as a `session.status` event, with
//!   repeats coalesced so reconnect loops cannot flood webhooks.
//! - [`session`]: one session: connects its channel after start, turns inbound
//!   messages into `message.received` events, relays QR codes, pairing codes and
//!   login challenges, reports readiness, acks and disconnections. It names no
//!   channel: what differs per network is behind [`crate::channels::Channel`].
//!
//! [`Sessions`] is the handle the HTTP API uses.

pub mod root;
pub mod session;
pub mod tenant;

pub use root::Sessions;

use crate::events::{Events, Publish};
use crate::storage::Store;
use crate::supervision::RestartPolicy;
use std::time::Duration;

/// Session statuses (stable API strings).
pub mod status {
    pub const STOPPED: &str = "STOPPED";
    pub const STARTING: &str = "STARTING";
    pub const SCAN_QR: &str = "SCAN_QR";
    /// The network asked for a code or an approval (`session.challenge`).
    pub const CHALLENGE: &str = "CHALLENGE";
    pub const WORKING: &str = "WORKING";
    pub const FAILED: &str = "FAILED";
    pub const LOGGED_OUT: &str = "LOGGED_OUT";
}

/// Event type of status changes.
pub const STATUS_EVENT: &str = "session.status";
/// Event type of inbound messages.
pub const MESSAGE_RECEIVED: &str = "message.received";
/// Event type of a send accepted into the queue.
pub const MESSAGE_QUEUED: &str = "message.queued";
/// Event type of a send the network took.
pub const MESSAGE_SENT: &str = "message.sent";
/// Event type of a send the recipient got.
pub const MESSAGE_DELIVERED: &str = "message.delivered";
/// Event type of a send the recipient read.
pub const MESSAGE_READ: &str = "message.read";
/// Event type of a send that cannot be made.
pub const MESSAGE_FAILED: &str = "message.failed";
/// Event type of a received message that changed on the network (e-mail flags).
pub const MESSAGE_UPDATED: &str = "message.updated";
/// Event type of a received message deleted on the network (an IMAP expunge).
pub const MESSAGE_DELETED: &str = "message.deleted";
/// Event type of a message its sender edited.
pub const MESSAGE_EDITED: &str = "message.edited";
/// Event type of a message its sender deleted for everyone.
pub const MESSAGE_REVOKED: &str = "message.revoked";
/// Event type of a reaction to a message (either way), or one taken back.
pub const MESSAGE_REACTION: &str = "message.reaction";
/// Event type of a mailbox whose numbering was reset (a new IMAP UIDVALIDITY).
pub const MAILBOX_RESET: &str = "mailbox.reset";
/// Event type of a new pairing QR code.
pub const SESSION_QR: &str = "session.qr";
/// Event type of a pairing code to type on the phone.
pub const SESSION_PAIRING_CODE: &str = "session.pairing_code";
/// Event type of a login challenge (a code to submit, an approval to give).
pub const SESSION_CHALLENGE: &str = "session.challenge";

/// A fault a test or the bench can inject into a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    Panic,
    Error,
    Hang,
    Disconnect,
}

/// A question for a running session's channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Groups,
    Contacts,
    /// A pairing code for this phone number.
    PairingCode(String),
    /// What the session costs in memory.
    Memory,
    /// Report this message as received (sim sessions).
    Inject(Box<crate::channels::InboundMessage>),
    /// The answer to the login challenge the session reported.
    SubmitCode(String),
    /// The bytes of a received message's attachment: the message's network id and
    /// the attachment's index (`{filename, mime_type, size, bytes_base64}`).
    Attachment(String, usize),
    /// A member's profile (LinkedIn), by URN, profile URL or public id.
    Profile(String),
    /// React to a message (its network id) with an emoji (empty: take it back).
    React(String, String),
    /// Mark a chat read.
    MarkRead(String),
    /// Fetch a received message's file (its network id, and what the message said of
    /// the file) into the media store; answers the stored file's `ReceivedMedia`.
    FetchMedia(String, crate::channels::ReceivedMedia),
}

impl Query {
    /// How long the caller waits for the answer (a file takes longer).
    pub fn timeout_ms(&self) -> u64 {
        match self {
            Self::FetchMedia(..) => 300_000,
            _ => 45_000,
        }
    }
}

/// Settings for session supervision.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub restart: RestartPolicy,
    /// How often the watchdog pings each session.
    pub watchdog_interval: Duration,
    /// A session that does not answer a ping within this is killed and restarted.
    pub watchdog_timeout: Duration,
    /// Identical status changes within this window are published once.
    pub coalesce_window: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            restart: RestartPolicy::default(),
            watchdog_interval: Duration::from_secs(10),
            watchdog_timeout: Duration::from_secs(5),
            coalesce_window: Duration::from_secs(60),
        }
    }
}

/// What every actor in the tree needs.
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: Store,
    pub events: Events,
    /// Seals message bodies stored by sessions.
    pub keyring: std::sync::Arc<switchboard_crypto::Keyring>,
    pub settings: SessionSettings,
    /// The shared Chromium for browser-driven channels (started on first use).
    pub browser: Option<crate::browser::BrowserPool>,
    /// Every channel's gateway-wide settings.
    pub channels: std::sync::Arc<crate::channels::Settings>,
    /// The media store channels read attachments from.
    pub media: Option<crate::media::MediaStore>,
    /// This replica, when sessions are shared by lease ([`crate::cluster`]): only
    /// the sessions it holds are restored, and the tree's writes are fenced by
    /// its leases. `None`: every session that should run, unfenced.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Deps {
    /// What a channel gets to work with.
    pub fn channel_context(&self) -> crate::channels::Context {
        crate::channels::Context {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            browser: self.browser.clone(),
            settings: self.channels.clone(),
            media: self.media.clone(),
            cluster: self.cluster.clone(),
        }
    }

    /// What a write of session `id`'s state is fenced by (`None`: one process).
    pub fn fence(&self, id: &str) -> Option<crate::storage::Fence> {
        self.cluster.as_ref().map(|c| c.fence(id))
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionError {
    #[error("session is not running")]
    NotRunning,
    #[error("the session actor did not answer in time")]
    Timeout,
    /// The network refused the request for good.
    #[error("{0}")]
    Rejected(String),
    /// A hard bounce of `address` (see [`crate::channels::ChannelError::Bounced`]).
    #[error("{why}")]
    Bounced { address: String, why: String },
    #[error("{0}")]
    Unsupported(String),
    /// Momentarily unable to take the request; retrying later can succeed.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Failed(String),
    /// Not before this time (unix ms): the account's caps or a cool-down.
    #[error("waits until {}", crate::clock::rfc3339(*.0))]
    Later(i64),
}

impl From<crate::channels::ChannelError> for SessionError {
    fn from(e: crate::channels::ChannelError) -> Self {
        use crate::channels::ChannelError as C;
        match e {
            C::Rejected(m) => Self::Rejected(m),
            C::Bounced { address, why } => Self::Bounced { address, why },
            C::Unsupported(m) => Self::Unsupported(m),
            C::Busy(m) => Self::Busy(m),
            C::Later(at) => Self::Later(at),
            C::NotConnected => Self::Failed("not connected".into()),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// Publishes an event, logging (not failing) when the pipeline refuses it: status
/// changes are also stored on the session row, so nothing is lost for the API.
pub(crate) async fn publish(events: &Events, event: Publish) {
    if let Err(e) = events.publish(event).await {
        tracing::error!(error = %e, "could not publish a session event");
    }
}

//! Switchboard's actor system and everything it owns: storage, supervision, channels,
//! the outbound queue and webhook dispatch. The `gateway` crate puts HTTP in front of
//! it; nothing here knows about HTTP.
//!
//! # Layout
//! - [`storage`]: the one repository layer (sqlx, SQLite or Postgres, migrations run at
//!   start-up). Every other component reads and writes through it.
//! - [`ids`]: prefixed ULID identifiers (`ten_…`, `key_…`).
//! - [`clock`]: wall-clock milliseconds, the unit every timestamp is stored in.
//! - [`media`]: the media store (files sealed at rest, content-addressed per tenant,
//!   streamed in and out).
//! - [`events`]: publishing events durably (group commit of event + outbox rows).
//! - [`webhooks`]: SSRF rules, retry schedule and the webhook dispatcher.
//! - [`rotation`]: re-sealing every encrypted column after a master-key rotation.
//! - [`supervision`]: the restart strategy every supervisor uses.
//! - [`channels`]: the channel trait and [`channels::ChannelKind`], the one list of
//!   channels (`sim`, `whatsapp`), one folder each.
//! - [`browser`]: the shared Chromium (`BrowserPool`) browser-driven channels lease contexts from.
//! - `testkit` (feature): stand-ins for remote services (WhatsApp Web) for tests and the bench.
//! - [`sessions`]: the supervised session actors (Root → TenantSupervisor → SessionActor).
//! - [`outbound`]: the whole send path: limits, the durable queue every send goes
//!   through ([`outbound::SendQueue`]) and the per-tenant senders draining it.
//! - [`rag_feed`]: hands stored inbound messages, signed, to the RAG actor (spawned by the root).
//! - [`rag_host`]: what the RAG actor acts through (settings, replies via the send
//!   queue, drafts, events).
//! - [`qr`]: QR codes rendered as PNG and SVG for `session.qr` events.

pub mod browser;
pub mod channels;
pub mod clock;
pub mod cluster;
pub mod consent;
pub mod contacts;
pub mod events;
pub mod ids;
pub mod media;
pub mod outbound;
pub mod qr;
pub mod rag_feed;
pub mod rag_host;
pub mod retention;
pub mod rotation;
pub mod scopes;
pub mod sessions;
pub mod storage;
pub mod supervision;
pub mod suppression;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod webhooks;

pub use storage::{Store, StoreError};

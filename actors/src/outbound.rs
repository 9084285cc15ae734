//! The send path, whole: every send (the API's `POST /v1/sessions/{id}/messages`,
//! RAG auto-replies, approved drafts) is queued by [`SendQueue::queue`] and sent by
//! the tenant's sender.
//!
//! # Layout
//! - [`limits`]: the limits in force for a tenant (its overrides over the defaults)
//!   and the send quota they give.
//! - [`queue`]: checks a send (session running, fields the channel can carry, the
//!   message answered), seals it and stores it with its `message.queued` event in one
//!   transaction, bounded by the tenant's queue limit; then wakes the sender.
//! - [`sender`]: one task per tenant with queued sends, draining them under the
//!   tenant's governor limit and each session's pacing, committing every outcome with
//!   its `message.sent` / `message.failed` event.

pub mod limits;
pub mod queue;
pub mod sender;

pub use limits::{DefaultLimits, EffectiveLimits, SendQuota};
pub use queue::{Idempotency, KeyScope, NewSend, QueueError, Queued, SendQueue};
pub use sender::Outbound;

//! Queueing a text send: the one path every send takes (the API's
//! `POST /v1/sessions/{id}/messages`, RAG auto-replies, approved drafts), so every
//! send is sealed, stored with its `message.queued` event in one transaction, bounded
//! by the tenant's queue limit and drained under the tenant's rate limit.

use crate::api::messages::quota;
use crate::config::DefaultLimits;
use crate::views::EffectiveLimits;
use switchboard_actors::clock;
use switchboard_actors::events::{Events, Publish};
use switchboard_actors::ids;
use switchboard_actors::outbound::Outbound;
use switchboard_actors::sessions::MESSAGE_QUEUED;
use switchboard_actors::storage::{
    Enqueued, MESSAGE_BODY_PURPOSE, MessageRow, MessageWrite, SessionRow, Tenant,
};
use switchboard_crypto::{ApiKeyHash, Binding, Keyring};

/// What queueing needs from the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Sends<'a> {
    pub events: &'a Events,
    pub keyring: &'a Keyring,
    pub outbound: &'a Outbound,
    pub defaults: &'a DefaultLimits,
}

/// One text send.
#[derive(Debug)]
pub struct Text<'a> {
    pub to: &'a str,
    pub text: &'a str,
    pub idempotency_key: Option<String>,
    /// Identifies the request behind an idempotency key (a reused key with another
    /// hash is refused).
    pub request_hash: ApiKeyHash,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    #[error("{queued} sends are already queued")]
    QueueFull { queued: i64, retry_after_secs: u64 },
    #[error("{0}")]
    Internal(String),
}

/// Queues `send` on `session`; returns the message and whether it already existed
/// (same idempotency key and request).
pub async fn queue_text(
    sends: &Sends<'_>,
    tenant: &Tenant,
    session: &SessionRow,
    send: Text<'_>,
) -> Result<(MessageRow, bool), SendError> {
    let id = ids::new_id(ids::MESSAGE);
    let binding = Binding {
        tenant_id: &tenant.id,
        record_id: &id,
        purpose: MESSAGE_BODY_PURPOSE,
    };
    let sealed = sends
        .keyring
        .seal(send.text.as_bytes(), binding)
        .map_err(|e| SendError::Internal(e.to_string()))?;
    let now = clock::now_ms();
    let row = MessageRow {
        id,
        tenant_id: tenant.id.clone(),
        session_id: session.id.clone(),
        direction: "outbound".into(),
        peer: send.to.to_owned(),
        status: "queued".into(),
        idempotency_key: send.idempotency_key,
        request_hash: Some(hex_of(send.request_hash.as_bytes())),
        external_id: None,
        attempts: 0,
        body_key_id: Some(sealed.key_id),
        body: Some(sealed.data),
        error: None,
        created_at: now,
        updated_at: now,
    };
    let limits = EffectiveLimits::of(&tenant.limits, sends.defaults);
    // The send and its `message.queued` event are stored together, or neither is.
    let data = serde_json::json!({ "message_id": row.id, "status": "queued", "to": row.peer });
    let mut event = Publish::new(&tenant.id, MESSAGE_QUEUED, data);
    event.session_id = Some(session.id.clone());
    event.channel = Some(session.channel.clone());
    event.message = Some(MessageWrite::Enqueue {
        row: Box::new(row),
        max_queued: i64::from(limits.max_queued_sends),
    });
    let published = sends
        .events
        .publish(event)
        .await
        .map_err(|e| SendError::Internal(e.to_string()))?;
    let outcome = published
        .enqueued
        .ok_or_else(|| SendError::Internal("send stored without an enqueue outcome".into()))?;
    let queued = match outcome {
        Enqueued::New(r) => (*r, false),
        Enqueued::Existing(r) => (*r, true),
        Enqueued::KeyReused => return Err(SendError::KeyReused),
        Enqueued::QueueFull { queued } => {
            let secs = (queued as u64).div_ceil(u64::from(limits.sends_per_second.max(1)));
            return Err(SendError::QueueFull {
                queued,
                retry_after_secs: secs.max(1),
            });
        }
    };
    sends.outbound.wake(&tenant.id, quota(&limits));
    Ok(queued)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

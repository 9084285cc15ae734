//! [`RagHost`]: what the RAG actor acts through — reply settings from the database,
//! replies queued through the one send path ([`SendQueue`], so auto-replies wait
//! their turn under the tenant's rate limit), drafts sealed at rest, `rag.*` events
//! through the event pipeline.
//!
//! Replies and drafts are keyed by the event they answer, so a job retried after a
//! crash never sends twice.

use crate::clock;
use crate::events::{Events, Publish};
use crate::ids;
use crate::outbound::{Idempotency, KeyScope, NewSend, QueueError, SendQueue};
use crate::storage::{DRAFT_PURPOSE, DraftRow, Store};
use futures::future::BoxFuture;
use std::sync::Arc;
use switchboard_crypto::{Binding, Keyring};
use switchboard_rag::actor::{Host, HostError, Reply, ReplySettings};

/// What the RAG actor acts through.
#[derive(Debug, Clone)]
pub struct RagHost {
    pub store: Store,
    pub events: Events,
    pub keyring: Arc<Keyring>,
    pub sends: SendQueue,
}

fn host_err(e: impl std::fmt::Display) -> HostError {
    HostError(e.to_string())
}

/// Seals a draft's question and text (bound to the tenant and draft id).
pub fn seal_draft(
    keyring: &Keyring,
    tenant_id: &str,
    draft_id: &str,
    question: &str,
    text: &str,
) -> Result<switchboard_crypto::Sealed, switchboard_crypto::Error> {
    let body = serde_json::json!({ "question": question, "text": text }).to_string();
    keyring.seal(body.as_bytes(), draft_binding(tenant_id, draft_id))
}

/// The binding of a draft's sealed body.
pub fn draft_binding<'a>(tenant_id: &'a str, draft_id: &'a str) -> Binding<'a> {
    Binding {
        tenant_id,
        record_id: draft_id,
        purpose: DRAFT_PURPOSE,
    }
}

impl RagHost {
    /// Our id of the message an inbound event reported (`data.external_id` of its
    /// `message.received`), for answering it in its thread.
    async fn answered(&self, tenant_id: &str, session_id: &str, event_id: &str) -> Option<String> {
        let event = self.store.get_event(tenant_id, event_id).await.ok()??;
        let body = self
            .keyring
            .open(
                &event.body_key_id,
                &event.body,
                crate::events::body_binding(&event.tenant_id, &event.id),
            )
            .ok()?;
        let envelope: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let external = envelope["data"]["external_id"].as_str()?;
        let message = self
            .store
            .message_by_external_id(session_id, external)
            .await
            .ok()??;
        Some(message.id)
    }

    /// Queues `text` to `to` on the session, idempotent on `key`; on channels whose
    /// conversations are threads (e-mail), as a reply to the message answered (the
    /// channel keeps its subject: `Re: …`).
    async fn queue(
        &self,
        tenant_id: &str,
        session_id: &str,
        to: &str,
        text: &str,
        key: String,
        event_id: &str,
    ) -> Result<String, HostError> {
        let tenant = self
            .store
            .get_tenant(tenant_id)
            .await
            .map_err(host_err)?
            .ok_or_else(|| host_err("the tenant is gone"))?;
        let session = self
            .store
            .get_session(tenant_id, session_id)
            .await
            .map_err(host_err)?
            .ok_or_else(|| host_err("the session is gone"))?;
        let threads = session
            .channel
            .parse::<crate::channels::ChannelKind>()
            .is_ok_and(|k| k.capabilities().threads);
        let reply_to = if threads {
            self.answered(tenant_id, session_id, event_id).await
        } else {
            None
        };
        // The key names the reply, whatever its text: a retried answer that came out
        // different is still the same reply, never a second one.
        let mark_read = self
            .store
            .reply_settings(tenant_id, session_id)
            .await
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<ReplySettings>(&t).ok())
            .is_some_and(|s| s.mark_read);
        let send = NewSend {
            to: to.to_owned(),
            text: text.to_owned(),
            reply_to,
            mark_read,
            idempotency: Some(Idempotency {
                key,
                scope: KeyScope::Recipient,
            }),
            ..NewSend::default()
        };
        match self.sends.queue(&tenant, &session, send).await {
            Ok(q) => Ok(q.message.id),
            Err(e @ QueueError::QueueFull { .. }) => Err(host_err(format!("{e}; retrying"))),
            Err(e) => Err(host_err(e)),
        }
    }
}

impl Host for RagHost {
    fn settings<'a>(
        &'a self,
        tenant_id: &'a str,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReplySettings>, HostError>> {
        Box::pin(async move {
            let Some(text) = self
                .store
                .reply_settings(tenant_id, session_id)
                .await
                .map_err(host_err)?
            else {
                return Ok(None);
            };
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| host_err(format!("stored reply settings: {e}")))
        })
    }

    fn send(&self, reply: &Reply) -> BoxFuture<'_, Result<String, HostError>> {
        let reply = reply.clone();
        Box::pin(async move {
            let key = format!("rag:{}", reply.event_id);
            self.queue(
                &reply.tenant_id,
                &reply.session_id,
                &reply.to,
                &reply.text,
                key,
                &reply.event_id,
            )
            .await
        })
    }

    fn draft(&self, reply: &Reply, reason: &str) -> BoxFuture<'_, Result<String, HostError>> {
        let (reply, reason) = (reply.clone(), reason.to_owned());
        Box::pin(async move {
            let id = ids::new_id(ids::DRAFT);
            let sealed = seal_draft(
                &self.keyring,
                &reply.tenant_id,
                &id,
                &reply.question,
                &reply.text,
            )
            .map_err(host_err)?;
            let now = clock::now_ms();
            let to_str = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            let row = DraftRow {
                id,
                tenant_id: reply.tenant_id.clone(),
                session_id: reply.session_id.clone(),
                event_id: reply.event_id.clone(),
                peer: reply.to.clone(),
                status: "pending".into(),
                reason,
                intent: to_str(serde_json::json!(reply.answer.intent)),
                source: to_str(serde_json::json!(reply.answer.source)),
                body_key_id: sealed.key_id,
                body: sealed.data,
                message_id: None,
                created_at: now,
                updated_at: now,
            };
            self.store.insert_draft(&row).await.map_err(host_err)
        })
    }

    fn publish(
        &self,
        tenant_id: &str,
        session_id: &str,
        channel: Option<&str>,
        event_type: &str,
        data: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        let mut event = Publish::new(tenant_id, event_type, data);
        event.session_id = Some(session_id.to_owned());
        event.channel = channel.map(str::to_owned);
        Box::pin(async move {
            self.events.publish(event).await.map_err(host_err)?;
            Ok(())
        })
    }
}

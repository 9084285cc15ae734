//! The gateway's side of RAG: the knowledge base built from config, and the
//! [`Host`] the RAG actor acts through — reply settings from the database, sends
//! through the one send path ([`crate::sends`], so auto-replies wait their turn under
//! the tenant's rate limit), drafts sealed at rest, `rag.*` events through the event
//! pipeline.

use crate::config::{Config, DefaultLimits};
use crate::sends::{self, SendError, Sends, Text};
use std::sync::Arc;
use switchboard_actors::clock;
use switchboard_actors::events::{Events, Publish};
use switchboard_actors::ids;
use switchboard_actors::outbound::Outbound;
use switchboard_actors::storage::{DRAFT_PURPOSE, DraftRow, Store};
use switchboard_crypto::{ApiKeyHash, Binding, Keyring};
use switchboard_rag::actor::{Host, HostError, Reply, ReplySettings};
use switchboard_rag::chunk::ChunkConfig;
use switchboard_rag::embed::BoxFuture;
use switchboard_rag::kb::{EmbedderConfig, KbConfig, Knowledge, StoreConfig};
use switchboard_rag::openai::{Endpoint, LlmClient};

/// Prefix of knowledge-base document ids.
pub const DOCUMENT_PREFIX: &str = "doc";
/// Prefix of draft ids.
pub const DRAFT_PREFIX: &str = "dft";

/// The knowledge base `config` describes (opened on first use).
pub fn knowledge(config: &Config) -> Knowledge {
    let rag = &config.rag;
    let embedder = match &rag.embeddings_url {
        Some(url) => EmbedderConfig::OpenAi {
            endpoint: Endpoint {
                api_key: rag.embeddings_api_key.clone(),
                ..Endpoint::new(url.clone())
            },
            model: rag.embeddings_model.clone(),
            dimensions: None,
        },
        None => EmbedderConfig::Local {
            model_dir: rag.model_dir.clone(),
        },
    };
    let store = match &rag.qdrant_url {
        Some(url) => StoreConfig::Qdrant {
            url: url.clone(),
            api_key: rag.qdrant_api_key.clone(),
            collection_prefix: "switchboard".into(),
        },
        None => StoreConfig::Edge {
            dir: config.data_dir.join("qdrant"),
        },
    };
    Knowledge::new(KbConfig {
        embedder,
        store,
        chunking: ChunkConfig::default(),
    })
}

/// The LLM client, when one is configured.
pub fn llm(config: &Config) -> anyhow::Result<Option<LlmClient>> {
    let rag = &config.rag;
    let Some(url) = &rag.llm_url else {
        return Ok(None);
    };
    let endpoint = Endpoint {
        api_key: rag.llm_api_key.clone(),
        timeout: rag.llm_timeout,
        ..Endpoint::new(url.clone())
    };
    Ok(Some(LlmClient::new(endpoint, rag.llm_model.clone())?))
}

/// Removes documents a crash left half-indexed (their rows and any vectors stored).
pub async fn clean_unfinished(store: &Store, knowledge: &Knowledge) -> anyhow::Result<()> {
    let rows = store.unfinished_kb_documents().await?;
    if rows.is_empty() {
        return Ok(());
    }
    let kb = knowledge.get().await?;
    for d in rows {
        kb.delete(&d.tenant_id, &d.id).await?;
        store.delete_kb_document(&d.tenant_id, &d.id).await?;
        tracing::warn!(tenant_id = %d.tenant_id, document_id = %d.id, "removed a document left half-indexed by a crash");
    }
    Ok(())
}

/// What the RAG actor acts through.
#[derive(Debug, Clone)]
pub struct RagHost {
    pub store: Store,
    pub events: Events,
    pub keyring: Arc<Keyring>,
    pub outbound: Outbound,
    pub defaults: DefaultLimits,
}

fn host_err(e: impl std::fmt::Display) -> HostError {
    HostError(e.to_string())
}

/// Seals a draft's question and text.
pub fn seal_draft(
    keyring: &Keyring,
    tenant_id: &str,
    draft_id: &str,
    question: &str,
    text: &str,
) -> Result<switchboard_crypto::Sealed, switchboard_crypto::Error> {
    let body = serde_json::json!({ "question": question, "text": text }).to_string();
    keyring.seal(
        body.as_bytes(),
        Binding {
            tenant_id,
            record_id: draft_id,
            purpose: DRAFT_PURPOSE,
        },
    )
}

impl RagHost {
    pub fn sends(&self) -> Sends<'_> {
        Sends {
            events: &self.events,
            keyring: &self.keyring,
            outbound: &self.outbound,
            defaults: &self.defaults,
        }
    }

    /// Queues `text` to `to` on the session, idempotent on `key`.
    pub async fn queue(
        &self,
        tenant_id: &str,
        session_id: &str,
        to: &str,
        text: &str,
        key: String,
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
        // The key names the reply, whatever its text: a retried answer that came out
        // different is still the same reply, never a second one.
        let hash = ApiKeyHash::of(&format!("{session_id}\0{to}\0{key}"));
        let send = Text {
            to,
            text,
            idempotency_key: Some(key),
            request_hash: hash,
        };
        match sends::queue_text(&self.sends(), &tenant, &session, send).await {
            Ok((row, _)) => Ok(row.id),
            Err(e @ SendError::QueueFull { .. }) => Err(host_err(format!("{e}; retrying"))),
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
            )
            .await
        })
    }

    fn draft(&self, reply: &Reply, reason: &str) -> BoxFuture<'_, Result<String, HostError>> {
        let (reply, reason) = (reply.clone(), reason.to_owned());
        Box::pin(async move {
            let id = ids::new_id(DRAFT_PREFIX);
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

//! `RagActor`: answers inbound messages from the tenant's knowledge base.
//!
//! It receives [`SignedEvent`]s, verifies each before reading it (tampered or unsigned
//! → rejected and counted, nothing else happens), looks up the session's reply
//! settings through its [`Host`], answers ([`crate::answer`]) and acts by the mode:
//!
//! | mode | response / task | human_handoff |
//! | --- | --- | --- |
//! | `off` | nothing | nothing |
//! | `draft` | a draft waits for a person, `rag.draft` | `rag.handoff` |
//! | `auto` | sent through the outbound queue, `rag.reply` (a contact or group that is not allowed gets a draft instead) | `rag.handoff` |
//!
//! Answers run in tasks beside the actor (at most `concurrency` at once), so a slow
//! model never blocks its mailbox; the caller's reply port gets the outcome, and a
//! failure (store, LLM, host) is an error the caller retries. Acting is idempotent per
//! event (the host keys sends and drafts by the event id), so a retry never doubles a
//! reply.

use crate::answer::{self, Answer, AnswerSettings, Intent};
use crate::kb::Knowledge;
use crate::openai::LlmClient;
use crate::signed::{InboundEvent, InternalKey, Rejection, SignedEvent};
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;

/// Event types the actor emits.
pub const RAG_REPLY: &str = "rag.reply";
pub const RAG_DRAFT: &str = "rag.draft";
pub const RAG_HANDOFF: &str = "rag.handoff";

/// The inbound event type the actor answers.
pub const MESSAGE_RECEIVED: &str = "message.received";

/// What the actor does with a session's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Off,
    Draft,
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Draft => "draft",
            Self::Auto => "auto",
        }
    }
}

/// A session's reply settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySettings {
    pub mode: Mode,
    /// Contacts (or groups) auto-replies may go to; empty = everyone.
    #[serde(default)]
    pub allowed_contacts: Vec<String>,
    /// Whether group messages are answered at all.
    #[serde(default)]
    pub groups: bool,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Mark the asker's chat read when an answer goes out (WhatsApp read receipts).
    #[serde(default)]
    pub mark_read: bool,
}

fn default_temperature() -> f32 {
    0.2
}

impl Default for ReplySettings {
    fn default() -> Self {
        Self {
            mode: Mode::Off,
            allowed_contacts: Vec::new(),
            groups: false,
            system_prompt: None,
            model: None,
            temperature: default_temperature(),
            mark_read: false,
        }
    }
}

impl ReplySettings {
    /// Whether an auto-reply may go to `to`.
    pub fn allows(&self, to: &str) -> bool {
        self.allowed_contacts.is_empty() || self.allowed_contacts.iter().any(|c| c == to)
    }
}

/// A reply the host sends or keeps as a draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    pub tenant_id: String,
    pub session_id: String,
    pub channel: Option<String>,
    /// The inbound event answered (sends and drafts are idempotent on it).
    pub event_id: String,
    pub to: String,
    pub text: String,
    /// The inbound text (kept with a draft so a reviewer sees the question).
    pub question: String,
    pub answer: Answer,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct HostError(pub String);

/// What the actor needs from the gateway.
pub trait Host: Send + Sync + std::fmt::Debug + 'static {
    /// The session's reply settings (`None`: the session is gone, or has none).
    fn settings<'a>(
        &'a self,
        tenant_id: &'a str,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReplySettings>, HostError>>;
    /// Queues the reply as a send (under the tenant's limits); returns the message id.
    fn send(&self, reply: &Reply) -> BoxFuture<'_, Result<String, HostError>>;
    /// Keeps the reply as a draft; returns the draft id.
    fn draft(&self, reply: &Reply, reason: &str) -> BoxFuture<'_, Result<String, HostError>>;
    /// Publishes a `rag.*` event about the session.
    fn publish(
        &self,
        tenant_id: &str,
        session_id: &str,
        channel: Option<&str>,
        event_type: &str,
        data: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), HostError>>;
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Rejected {
        reason: String,
    },
    /// Not answered (mode off, not a message, empty text, a group while groups are off).
    Skipped {
        reason: String,
    },
    Replied {
        message_id: String,
    },
    Drafted {
        draft_id: String,
    },
    HandedOff,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RagError {
    #[error("knowledge base: {0}")]
    Knowledge(String),
    #[error("host: {0}")]
    Host(String),
}

/// Counters (also exported as metrics).
#[derive(Debug, Default)]
pub struct RagStats {
    pub received: AtomicU64,
    pub rejected: AtomicU64,
    pub replied: AtomicU64,
    pub drafted: AtomicU64,
    pub handed_off: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
}

/// Everything the actor is started with (cheap to clone: restarts reuse it).
#[derive(Debug, Clone)]
pub struct RagArgs {
    pub knowledge: Arc<Knowledge>,
    pub llm: Option<Arc<LlmClient>>,
    pub host: Arc<dyn Host>,
    pub key: Arc<InternalKey>,
    /// Answers in progress at once.
    pub concurrency: usize,
    pub stats: Arc<RagStats>,
}

pub type OutcomePort = RpcReplyPort<Result<Outcome, RagError>>;

#[derive(Debug)]
pub enum RagMsg {
    /// An event to verify and answer; the outcome goes to the port, if any.
    Event(Box<SignedEvent>, Option<OutcomePort>),
}

#[derive(Debug)]
pub struct RagActor;

#[derive(Debug)]
pub struct RagState {
    args: RagArgs,
    permits: Arc<Semaphore>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Actor for RagActor {
    type Msg = RagMsg;
    type State = RagState;
    type Arguments = RagArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RagMsg>,
        args: RagArgs,
    ) -> Result<RagState, ActorProcessingErr> {
        let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
        Ok(RagState { args, permits })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RagMsg>,
        msg: RagMsg,
        state: &mut RagState,
    ) -> Result<(), ActorProcessingErr> {
        let RagMsg::Event(signed, port) = msg;
        let args = &state.args;
        args.stats.received.fetch_add(1, Ordering::Relaxed);
        // Verify before anything is read from the body.
        let event = match signed.verify(&args.key, now_secs()) {
            Ok(e) => e,
            Err(rejection) => {
                reject(args, &signed, &rejection);
                if let Some(port) = port {
                    let _ = port.send(Ok(Outcome::Rejected {
                        reason: rejection.reason().to_owned(),
                    }));
                }
                return Ok(());
            }
        };
        let args = args.clone();
        let permits = state.permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = process(&args, &event).await;
            let stat = match &result {
                Ok(Outcome::Replied { .. }) => &args.stats.replied,
                Ok(Outcome::Drafted { .. }) => &args.stats.drafted,
                Ok(Outcome::HandedOff) => &args.stats.handed_off,
                Ok(Outcome::Skipped { .. }) => &args.stats.skipped,
                Ok(Outcome::Rejected { .. }) => &args.stats.rejected,
                Err(e) => {
                    tracing::warn!(event_id = %event.id, tenant_id = %event.tenant_id, error = %e, "answer failed; will be retried");
                    &args.stats.failed
                }
            };
            stat.fetch_add(1, Ordering::Relaxed);
            if let Some(port) = port {
                let _ = port.send(result);
            }
        });
        Ok(())
    }
}

fn reject(args: &RagArgs, signed: &SignedEvent, rejection: &Rejection) {
    args.stats.rejected.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("switchboard_rag_rejected_events_total", "reason" => rejection.reason())
        .increment(1);
    tracing::warn!(event_id = %signed.id, reason = rejection.reason(), error = %rejection, "internal event rejected");
}

fn skipped(reason: &str) -> Result<Outcome, RagError> {
    Ok(Outcome::Skipped {
        reason: reason.to_owned(),
    })
}

async fn process(args: &RagArgs, event: &InboundEvent) -> Result<Outcome, RagError> {
    if event.event_type != MESSAGE_RECEIVED {
        return skipped("not_a_message");
    }
    let (tenant, session) = (event.tenant_id.as_str(), event.session_id.as_str());
    let settings = args
        .host
        .settings(tenant, session)
        .await
        .map_err(|e| RagError::Host(e.0))?
        .unwrap_or_default();
    if settings.mode == Mode::Off {
        return skipped("mode_off");
    }
    let question = event.data.text.trim();
    if question.is_empty() {
        return skipped("no_text");
    }
    if event.data.is_group() && !settings.groups {
        return skipped("group");
    }
    let kb = args
        .knowledge
        .get()
        .await
        .map_err(|e| RagError::Knowledge(e.to_string()))?;
    let answer_settings = AnswerSettings {
        system_prompt: settings.system_prompt.clone(),
        model: settings.model.clone(),
        temperature: settings.temperature,
    };
    let started = std::time::Instant::now();
    let answer = answer::answer(kb, args.llm.as_deref(), tenant, question, &answer_settings)
        .await
        .map_err(|e| RagError::Knowledge(e.to_string()))?;
    metrics::histogram!("switchboard_rag_answer_seconds").record(started.elapsed().as_secs_f64());
    let to = event.data.reply_to().to_owned();
    let mut data = serde_json::json!({
        "event_id": event.id,
        "to": to,
        "question": question,
        "intent": answer.intent,
        "source": answer.source,
        "passages": answer.passages.iter().map(|h| serde_json::json!({
            "document_id": h.document_id, "title": h.title, "score": h.score,
        })).collect::<Vec<_>>(),
    });
    if let Some(f) = &answer.fallback {
        data["llm_error"] = serde_json::Value::from(f.as_str());
    }
    let publish = |event_type: &'static str, data: serde_json::Value| async move {
        args.host
            .publish(tenant, session, event.channel.as_deref(), event_type, data)
            .await
            .map_err(|e| RagError::Host(e.0))
    };
    let Some(text) = answer
        .text
        .clone()
        .filter(|_| answer.intent != Intent::HumanHandoff)
    else {
        publish(RAG_HANDOFF, data).await?;
        return Ok(Outcome::HandedOff);
    };
    data["text"] = serde_json::Value::from(text.as_str());
    let reply = Reply {
        tenant_id: tenant.to_owned(),
        session_id: session.to_owned(),
        channel: event.channel.clone(),
        event_id: event.id.clone(),
        to: to.clone(),
        text,
        question: question.to_owned(),
        answer,
    };
    let draft_reason = match settings.mode {
        Mode::Auto if settings.allows(&to) => None,
        Mode::Auto => Some("contact_not_allowed"),
        _ => Some("draft_mode"),
    };
    match draft_reason {
        None => {
            let message_id = args
                .host
                .send(&reply)
                .await
                .map_err(|e| RagError::Host(e.0))?;
            data["message_id"] = serde_json::Value::from(message_id.as_str());
            publish(RAG_REPLY, data).await?;
            Ok(Outcome::Replied { message_id })
        }
        Some(reason) => {
            let draft_id = args
                .host
                .draft(&reply, reason)
                .await
                .map_err(|e| RagError::Host(e.0))?;
            data["draft_id"] = serde_json::Value::from(draft_id.as_str());
            data["reason"] = serde_json::Value::from(reason);
            publish(RAG_DRAFT, data).await?;
            Ok(Outcome::Drafted { draft_id })
        }
    }
}

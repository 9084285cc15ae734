//! `SessionActor`: one running session and its channel.
//!
//! Messages: `Connect` (sent to itself after start: connecting is never done in
//! `pre_start`, so a failure is a supervised failure, not a spawn error),
//! `Pumped(event)` from the channel's event pump, `Channel(event)` for events it
//! raises itself, `Ping` (watchdog), `Fault` (injected failures), `Logout`.
//!
//! It reports status changes to its `TenantSupervisor` (which stores and publishes
//! them) and publishes each inbound message as a `message.received` event, awaiting
//! the commit before taking the next one. The pump hands over one event at a time
//! and waits until it is handled, so a slow database fills the channel's bounded
//! buffer and slows the channel, rather than piling events up in the mailbox (where
//! the watchdog's ping would queue behind them, and a kill would drop them). A disconnection ends the actor with an error: the
//! supervisor restarts it with backoff (that is the reconnect).

use super::tenant::TenantMsg;
use super::{
    Deps, Fault, MESSAGE_RECEIVED, Query, SESSION_PAIRING_CODE, SESSION_QR, publish, status,
};
use crate::channels::{self, Channel, ChannelError, ChannelEvent};
use crate::events::Publish;
use crate::storage::{MESSAGE_BODY_PURPOSE, MessageRow, MessageWrite, SessionRow};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_crypto::Binding;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Why a session actor ended with an error (the supervisor reads the kind).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionFailure {
    #[error("error: {0}")]
    Error(String),
    #[error("disconnected: {0}")]
    Disconnected(String),
}

impl SessionFailure {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Error(_) => "error",
            Self::Disconnected(_) => "disconnect",
        }
    }
}

#[derive(Debug)]
pub enum SessionMsg {
    Connect,
    /// An event the actor raises itself.
    Channel(ChannelEvent),
    /// An event from the channel's pump, which waits for the reply before the next.
    Pumped(ChannelEvent, RpcReplyPort<()>),
    Ping(RpcReplyPort<()>),
    Fault(Fault),
    Logout(RpcReplyPort<Result<(), String>>),
    /// Sends a message; replies with the network's id for it.
    Send(
        channels::OutboundMessage,
        RpcReplyPort<Result<String, ChannelError>>,
    ),
    Query(Query, RpcReplyPort<Result<serde_json::Value, ChannelError>>),
}

#[derive(Debug)]
pub struct SessionArgs {
    pub row: SessionRow,
    pub deps: Deps,
    pub supervisor: ActorRef<TenantMsg>,
}

pub struct SessionState {
    row: SessionRow,
    deps: Deps,
    supervisor: ActorRef<TenantMsg>,
    channel: Box<dyn Channel>,
    pump: Option<tokio::task::JoinHandle<()>>,
    /// QR codes shown since the last connect (pairing gives up past the limit).
    qr_shown: u32,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("session_id", &self.row.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct SessionActor;

impl SessionState {
    fn report(&self, status: &'static str, reason: &str) {
        let _ = self.supervisor.cast(TenantMsg::Status {
            session_id: self.row.id.clone(),
            status,
            reason: reason.to_owned(),
        });
    }
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let channel = channels::build(&args.row, &args.deps)?;
        Ok(SessionState {
            row: args.row,
            deps: args.deps,
            supervisor: args.supervisor,
            channel,
            pump: None,
            qr_shown: 0,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SessionMsg>,
        _state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        myself.cast(SessionMsg::Connect)?;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(p) = state.pump.take() {
            p.abort();
        }
        state.channel.disconnect().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!(
            "session",
            tenant_id = %state.row.tenant_id,
            session_id = %state.row.id,
            channel = %state.row.channel,
        );
        process(myself, msg, state).instrument(span).await
    }
}

/// One message, inside the session's span.
async fn process(
    myself: ActorRef<SessionMsg>,
    msg: SessionMsg,
    state: &mut SessionState,
) -> Result<(), ActorProcessingErr> {
    match msg {
        SessionMsg::Pumped(event, handled) => {
            let result = Box::pin(process(myself, SessionMsg::Channel(event), state)).await;
            let _ = handled.send(());
            return result;
        }
        SessionMsg::Connect => {
            let (tx, mut rx) = mpsc::channel(256);
            state
                .channel
                .connect(tx)
                .await
                .map_err(|e| SessionFailure::Error(format!("connect failed: {e}")))?;
            let me = myself.clone();
            state.pump = Some(tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    // Stops when the actor does (the reply port is dropped unanswered).
                    if ractor::call!(me, SessionMsg::Pumped, ev).is_err() {
                        return;
                    }
                }
            }));
        }
        SessionMsg::Channel(ev) => match ev {
            ChannelEvent::Ready => {
                state.row.status = status::WORKING.into();
                state.report(status::WORKING, "connected");
            }
            ChannelEvent::Qr(value) => {
                state.qr_shown += 1;
                let limit = state.deps.settings.whatsapp.max_qr_refreshes;
                // The first code plus `limit` refreshes, then give up: never a zombie.
                if state.qr_shown > limit + 1 {
                    tracing::warn!(shown = state.qr_shown - 1, "no scan; pairing given up");
                    state.report(status::FAILED, "qr_timeout");
                    myself.stop(Some("qr_timeout".into()));
                    return Ok(());
                }
                let mut event = Publish::new(&state.row.tenant_id, SESSION_QR, qr_event(&value)?);
                event.session_id = Some(state.row.id.clone());
                event.channel = Some(state.row.channel.clone());
                publish(&state.deps.events, event).await;
                if state.row.status != status::SCAN_QR {
                    state.row.status = status::SCAN_QR.into();
                    state.report(status::SCAN_QR, "waiting for a scan");
                }
            }
            ChannelEvent::PairingCode(code) => {
                let data = serde_json::json!({ "code": code });
                let mut event = Publish::new(&state.row.tenant_id, SESSION_PAIRING_CODE, data);
                event.session_id = Some(state.row.id.clone());
                event.channel = Some(state.row.channel.clone());
                publish(&state.deps.events, event).await;
            }
            ChannelEvent::Inbound(m) => {
                let mut data = serde_json::json!({
                    "external_id": m.external_id,
                    "from": m.from,
                    "chat": m.chat,
                    "text": m.text,
                    "sent_at": crate::clock::rfc3339(m.sent_at),
                });
                if !m.meta.is_null() {
                    data["meta"] = m.meta.clone();
                }
                let mut event = Publish::new(&state.row.tenant_id, MESSAGE_RECEIVED, data);
                event.session_id = Some(state.row.id.clone());
                event.channel = Some(state.row.channel.clone());
                event.message = Some(MessageWrite::Insert(Box::new(inbound_row(state, &m)?)));
                // Retry until stored: the channel waits meanwhile, nothing is dropped.
                let mut wait = std::time::Duration::from_millis(50);
                while let Err(e) = state.deps.events.publish(event.clone()).await {
                    tracing::warn!(error = %e, "inbound message not stored yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
                metrics::counter!("switchboard_inbound_messages_total", "channel" => state.row.channel.clone()).increment(1);
            }
            ChannelEvent::Ack { id } => acknowledge(&state.deps, &state.row, &id).await,
            ChannelEvent::Disconnected(why) => {
                return Err(SessionFailure::Disconnected(why).into());
            }
            ChannelEvent::LoggedOut(why) => {
                state.report(status::LOGGED_OUT, &why);
                myself.stop(Some("logged out".into()));
            }
        },
        SessionMsg::Ping(reply) => {
            let _ = reply.send(());
        }
        SessionMsg::Fault(f) => match f {
            Fault::Panic => panic!("injected panic"),
            Fault::Error => return Err(SessionFailure::Error("injected error".into()).into()),
            Fault::Hang => std::future::pending::<()>().await,
            Fault::Disconnect => {
                state.channel.disconnect().await;
                myself.cast(SessionMsg::Channel(ChannelEvent::Disconnected(
                    "injected disconnect".into(),
                )))?;
            }
        },
        SessionMsg::Send(message, reply) => {
            let result = state.channel.send(message).await;
            let _ = reply.send(result);
        }
        SessionMsg::Query(q, reply) => {
            let result = match q {
                Query::Groups => state.channel.groups().await.map(|g| serde_json::json!(g)),
                Query::Contacts => state.channel.contacts().await.map(|c| serde_json::json!(c)),
                Query::PairingCode(phone) => {
                    let code = state.channel.pairing_code(phone).await;
                    if let Ok(c) = &code {
                        myself.cast(SessionMsg::Channel(ChannelEvent::PairingCode(c.clone())))?;
                    }
                    code.map(serde_json::Value::from)
                }
                Query::Inject(m) => {
                    let id = m.external_id.clone();
                    state
                        .channel
                        .inject(*m)
                        .await
                        .map(|()| serde_json::json!({ "external_id": id }))
                }
                Query::Memory => Ok(state
                    .channel
                    .memory()
                    .await
                    .unwrap_or(serde_json::Value::Null)),
            };
            let _ = reply.send(result);
        }
        SessionMsg::Logout(reply) => {
            let result = state.channel.logout().await.map_err(|e| e.to_string());
            let _ = reply.send(result);
        }
    }
    Ok(())
}

/// The data of a `session.qr` event: the raw value and its renderings.
pub fn qr_event(value: &str) -> Result<serde_json::Value, ActorProcessingErr> {
    let code = crate::qr::Qr::render(value)?;
    let expires =
        crate::clock::now_ms() + channels::whatsapp::contract::QR_LIFETIME.as_millis() as i64;
    Ok(serde_json::json!({
        "value": value,
        "png_base64": code.png_base64(),
        "svg": code.svg,
        "expires_at": crate::clock::rfc3339(expires),
    }))
}

/// Publishes a `session.status` event for a session row.
pub(crate) async fn publish_status(deps: &Deps, row: &SessionRow, status: &str, reason: &str) {
    let data = serde_json::json!({ "status": status, "reason": reason });
    let mut event = Publish::new(&row.tenant_id, super::STATUS_EVENT, data);
    event.session_id = Some(row.id.clone());
    event.channel = Some(row.channel.clone());
    publish(&deps.events, event).await;
}

/// The stored row of an inbound message (body sealed).
fn inbound_row(
    state: &SessionState,
    m: &channels::InboundMessage,
) -> Result<MessageRow, ActorProcessingErr> {
    let id = crate::ids::new_id(crate::ids::MESSAGE);
    let binding = Binding {
        tenant_id: &state.row.tenant_id,
        record_id: &id,
        purpose: MESSAGE_BODY_PURPOSE,
    };
    let sealed = state.deps.keyring.seal(m.text.as_bytes(), binding)?;
    let now = crate::clock::now_ms();
    Ok(MessageRow {
        id,
        tenant_id: state.row.tenant_id.clone(),
        session_id: state.row.id.clone(),
        direction: "inbound".into(),
        peer: m.from.clone(),
        status: "received".into(),
        idempotency_key: None,
        request_hash: None,
        external_id: Some(m.external_id.clone()),
        attempts: 0,
        body_key_id: Some(sealed.key_id),
        body: Some(sealed.data),
        error: None,
        created_at: now,
        updated_at: now,
    })
}

/// The network confirmed delivery of a message we sent (`external_id`). The ack
/// can overtake the commit of `sent`, so it waits (off the actor) for that first:
/// `message.delivered` always follows `message.sent`.
async fn acknowledge(deps: &Deps, session: &SessionRow, external_id: &str) {
    let (deps, session, external_id) = (deps.clone(), session.clone(), external_id.to_owned());
    tokio::spawn(async move {
        for _ in 0..100 {
            let row = match deps
                .store
                .message_by_external_id(&session.id, &external_id)
                .await
            {
                Ok(Some(r)) if r.direction == "outbound" => r,
                Ok(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not look up an acknowledged message");
                    return;
                }
            };
            if row.status != "sent" {
                if row.status == "delivered" || row.status == "failed" {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            let data =
                serde_json::json!({ "message_id": row.id, "status": "delivered", "to": row.peer });
            let mut event = Publish::new(&row.tenant_id, super::MESSAGE_DELIVERED, data);
            event.session_id = Some(row.session_id.clone());
            event.channel = Some(session.channel.clone());
            event.message = Some(MessageWrite::Status {
                id: row.id.clone(),
                status: "delivered",
                external_id: None,
                error: None,
            });
            publish(&deps.events, event).await;
            return;
        }
        tracing::warn!(external_id = %external_id, "acknowledged message never recorded as sent");
    });
}

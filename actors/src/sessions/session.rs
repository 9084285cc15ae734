//! `SessionActor`: one running session and its channel.
//!
//! Messages: `Connect` (sent to itself after start: connecting is never done in
//! `pre_start`, so a failure is a supervised failure, not a spawn error),
//! `Pumped(event)` from the channel's event pump, `Channel(event)` for events it
//! raises itself, `Ping` (watchdog), `Fault` (injected failures), `Logout`.
//!
//! It reports status changes to its `TenantSupervisor` (which stores and publishes
//! them) and publishes each inbound message as a `message.received` event (marked
//! for the RAG actor) through the session's [`Sequence`]: several in flight, committed
//! in the order received, so the session's rate is not bounded by the commit latency.
//! Every other event of the session goes through the same sequence and waits for its
//! commit, and lookups of what the session stored first wait for the sequence to be
//! committed (a change to a message follows the message). A message already stored
//! (caught up again after a reconnect) is dropped by the writer. QR codes
//! (`session.qr`, given up after the channel's refresh limit), pairing codes and
//! login challenges (`session.challenge`, status `CHALLENGE`) are relayed as events;
//! acks become `message.delivered` / `message.read`. The pump hands over one event at a time
//! and waits until it is handled, so a slow database fills the channel's bounded
//! buffer and slows the channel, rather than piling events up in the mailbox (where
//! the watchdog's ping would queue behind them, and a kill would drop them). A disconnection ends the actor with an error: the
//! supervisor restarts it with backoff (that is the reconnect).

use super::tenant::TenantMsg;
use super::{
    Deps, Fault, MAILBOX_RESET, MESSAGE_DELETED, MESSAGE_DELIVERED, MESSAGE_READ, MESSAGE_RECEIVED,
    MESSAGE_SENT, MESSAGE_UPDATED, Query, SESSION_CHALLENGE, SESSION_PAIRING_CODE, SESSION_QR,
    publish, status,
};
use crate::channels::{
    self, AckLevel, Channel, ChannelError, ChannelEvent, ChannelKind, InboundMessage,
};
use crate::events::{Publish, Sequence};
use crate::storage::{MessageRow, MessageWrite, SessionRow};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
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
    /// The session's events, in order; taken when the actor stops.
    sequence: Option<(Sequence, tokio::task::JoinHandle<()>)>,
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

/// Waits until a session's events so far are committed.
async fn flush(sequence: Sequence) {
    if let Err(e) = sequence.flush().await {
        tracing::warn!(error = %e, "the session's events are not all stored");
    }
}

/// How long a stopping session waits for its events to be committed.
const SEQUENCE_DRAIN: Duration = Duration::from_secs(10);

impl SessionState {
    /// The session's sequence (a handle: the state itself is not `Sync`).
    fn sequence(&self) -> Sequence {
        self.sequence
            .as_ref()
            .expect("the sequence is taken only when the actor stops")
            .0
            .clone()
    }

    /// Stores an event after the session's earlier ones and waits for the commit.
    fn publish(&self, event: Publish) -> impl Future<Output = ()> + Send + 'static {
        let sequence = self.sequence();
        async move {
            if let Err(e) = sequence.publish(event).await {
                tracing::error!(error = %e, "could not publish a session event");
            }
        }
    }

    /// Waits until the session's events so far are committed.
    fn flush(&self) -> impl Future<Output = ()> + Send + 'static {
        flush(self.sequence())
    }

    /// An event about this session.
    fn event(&self, event_type: &str, data: serde_json::Value) -> Publish {
        let mut event = Publish::new(&self.row.tenant_id, event_type, data);
        event.session_id = Some(self.row.id.clone());
        event.channel = Some(self.row.channel.clone());
        event
    }

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
        let kind: ChannelKind = args.row.channel.parse()?;
        let config =
            channels::session_config(&args.row, &args.deps.store, &args.deps.keyring).await?;
        let channel = kind.build(&args.row, &config, &args.deps.channel_context())?;
        let sequence = Sequence::spawn(args.deps.events.clone());
        Ok(SessionState {
            row: args.row,
            deps: args.deps,
            supervisor: args.supervisor,
            channel,
            pump: None,
            sequence: Some(sequence),
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
        if let Some((sequence, task)) = state.sequence.take() {
            // What the session gave is committed before a successor starts (so its
            // events follow); past the wait the task goes on by itself.
            drop(sequence);
            if tokio::time::timeout(SEQUENCE_DRAIN, task).await.is_err() {
                tracing::warn!("the session's last events are still being stored");
            }
        }
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
                let policy = state.channel.qr_policy();
                // The first code plus `max_refreshes`, then give up: never a zombie.
                if state.qr_shown > policy.max_refreshes + 1 {
                    tracing::warn!(shown = state.qr_shown - 1, "no scan; pairing given up");
                    state.report(status::FAILED, "qr_timeout");
                    myself.stop(Some("qr_timeout".into()));
                    return Ok(());
                }
                let data = qr_event(&value, policy.lifetime)?;
                state.publish(state.event(SESSION_QR, data)).await;
                if state.row.status != status::SCAN_QR {
                    state.row.status = status::SCAN_QR.into();
                    state.report(status::SCAN_QR, "waiting for a scan");
                }
            }
            ChannelEvent::PairingCode(code) => {
                let data = serde_json::json!({ "code": code });
                state.publish(state.event(SESSION_PAIRING_CODE, data)).await;
            }
            ChannelEvent::Challenge(c) => {
                let data = serde_json::json!({
                    "kind": c.kind,
                    "hint": c.hint,
                    "expires_at": crate::clock::rfc3339(c.expires_at),
                });
                state.publish(state.event(SESSION_CHALLENGE, data)).await;
                state.row.status = status::CHALLENGE.into();
                state.report(status::CHALLENGE, "waiting for a login code");
            }
            ChannelEvent::Inbound(m) => {
                // Caught up again after a reconnect, a message is stored and
                // reported once: the writer drops one it already has.
                opt_out(&state.deps, &state.row, state.sequence(), &m).await;
                for address in &m.bounced {
                    bounced(&state.row, state.sequence(), address, &m.external_id).await;
                }
                let mut data = serde_json::json!({
                    "external_id": m.external_id,
                    "from": m.from,
                    "chat": m.chat,
                    "text": m.text,
                    "sent_at": crate::clock::rfc3339(m.sent_at),
                });
                if let Some(p) = &m.from_phone {
                    data["from_phone"] = p.as_str().into();
                }
                if let Some(p) = &m.chat_phone {
                    data["chat_phone"] = p.as_str().into();
                }
                if let Some(subject) = &m.subject {
                    data["subject"] = subject.as_str().into();
                }
                if let Some(thread) = &m.thread_id {
                    data["thread_id"] = thread.as_str().into();
                }
                if !m.attachments.is_empty() {
                    data["attachments"] = serde_json::json!(m.attachments);
                }
                if let Some(media) = &m.media {
                    data["media"] = serde_json::json!(media);
                }
                if let Some(quoted) = &m.reply_to {
                    // Our id for the message it answers, where we have it.
                    state.flush().await;
                    let ours = state
                        .deps
                        .store
                        .message_by_external_id(&state.row.id, quoted)
                        .await
                        .ok()
                        .flatten();
                    data["reply_to"] = ours.map(|r| r.id).into();
                    data["reply_to_external_id"] = quoted.as_str().into();
                }
                if !m.meta.is_null() {
                    data["meta"] = m.meta.clone();
                }
                let mut row = MessageRow::inbound(
                    &state.deps.keyring,
                    &state.row,
                    &m.from,
                    &m.external_id,
                    &m.text,
                )?;
                if m.subject.is_some() {
                    let extras = crate::storage::MessageExtras {
                        subject: m.subject.clone(),
                        ..Default::default()
                    };
                    row.seal_extras(&state.deps.keyring, &extras)?;
                }
                let mut event = state.event(MESSAGE_RECEIVED, data);
                event.message = Some(MessageWrite::Insert(Box::new(row)));
                event.feeds_rag = true;
                // Retried until stored, in order; the channel waits while the
                // session's window is full, so nothing piles up or is dropped.
                state.sequence().push(event).await?;
                metrics::counter!("switchboard_inbound_messages_total", "channel" => state.row.channel.clone()).increment(1);
            }
            ChannelEvent::Ack { id, level } => {
                let (deps, row) = (state.deps.clone(), state.row.clone());
                // Off the actor: an ack may have to wait for the commit of `sent`.
                tokio::spawn(async move { acknowledge(&deps, &row, &id, level).await });
            }
            ChannelEvent::About(about) => {
                let fence = state.deps.fence(&state.row.id);
                match state
                    .deps
                    .store
                    .set_session_network(&state.row.id, &about, fence.as_ref())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => fenced(&state.row.id, "network details"),
                    Err(e) => {
                        tracing::warn!(error = %e, "what the network said about the login not recorded");
                    }
                }
            }
            ChannelEvent::SentElsewhere(m) => sent_elsewhere(state, m).await?,
            ChannelEvent::Reconnecting(why) => {
                state.row.status = status::STARTING.into();
                state.report(status::STARTING, &why);
            }
            ChannelEvent::Disconnected(why) => {
                return Err(SessionFailure::Disconnected(why).into());
            }
            ChannelEvent::Failed(why) => {
                tracing::warn!(reason = %why, "the network refuses this session; stopped");
                state.report(status::FAILED, &why);
                myself.stop(Some("failed".into()));
            }
            ChannelEvent::LoggedOut(why) => {
                state.report(status::LOGGED_OUT, &why);
                myself.stop(Some("logged out".into()));
            }
            ChannelEvent::Updated {
                external_id,
                change,
            } => {
                about_received(
                    &state.deps,
                    &state.row,
                    state.sequence(),
                    MESSAGE_UPDATED,
                    &external_id,
                    change,
                )
                .await
            }
            ChannelEvent::Changed {
                event,
                external_id,
                change,
            } => {
                about_received(
                    &state.deps,
                    &state.row,
                    state.sequence(),
                    event,
                    &external_id,
                    change,
                )
                .await
            }
            ChannelEvent::Deleted { external_id } => {
                let data = serde_json::json!({});
                about_received(
                    &state.deps,
                    &state.row,
                    state.sequence(),
                    MESSAGE_DELETED,
                    &external_id,
                    data,
                )
                .await;
            }
            ChannelEvent::MailboxReset(data) => {
                state.publish(state.event(MAILBOX_RESET, data)).await;
            }
            ChannelEvent::Throttled(why) => {
                tracing::warn!(reason = %why, "the network pushed back; cooling down");
                state.row.status = status::WORKING.into();
                state.report(status::WORKING, &format!("throttled_by_network: {why}"));
            }
            ChannelEvent::Resumed => {
                state.row.status = status::WORKING.into();
                state.report(status::WORKING, "connected");
            }
            ChannelEvent::Notice { event, data } => {
                state.publish(state.event(event, data)).await;
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
        SessionMsg::Send(message, reply) => match state.channel.send_beside(Box::new(message)) {
            Ok(sending) => {
                tokio::spawn(async move {
                    let _ = reply.send(sending.await);
                });
            }
            Err(message) => {
                let result = state.channel.send(*message).await;
                let _ = reply.send(result);
            }
        },
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
                Query::Attachment(external_id, index) => state
                    .channel
                    .attachment(external_id, index)
                    .await
                    .map(|(info, bytes)| {
                        use base64::Engine;
                        serde_json::json!({
                            "filename": info.filename,
                            "mime_type": info.mime_type,
                            "size": bytes.len(),
                            "bytes_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
                        })
                    }),
                Query::Profile(who) => state.channel.profile(who).await,
                Query::React(external_id, emoji) => state
                    .channel
                    .react(external_id, emoji.clone())
                    .await
                    .map(|()| serde_json::json!({ "emoji": emoji })),
                Query::MarkRead(chat) => state
                    .channel
                    .mark_read(chat.clone())
                    .await
                    .map(|()| serde_json::json!({ "chat": chat, "read": true })),
                Query::SubmitCode(code) => state
                    .channel
                    .submit_code(code)
                    .await
                    .map(|()| serde_json::json!({ "accepted": true })),
                Query::FetchMedia(external_id, described) => {
                    // A file can take a while: fetched beside the actor.
                    let fetching = state.channel.fetch_media(external_id, described);
                    tokio::spawn(async move {
                        let got = fetching.await;
                        let _ = reply.send(got.map(|m| serde_json::json!(m)));
                    });
                    return Ok(());
                }
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

/// The data of a `session.qr` event: the raw value, its renderings and when it lapses.
pub fn qr_event(value: &str, lifetime: Duration) -> Result<serde_json::Value, ActorProcessingErr> {
    let code = crate::qr::Qr::render(value)?;
    let expires = crate::clock::now_ms() + lifetime.as_millis() as i64;
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

/// Something happened to a received message on the network (`message.updated`,
/// `message.deleted`): reported with our id for it, `change` merged in. Messages we
/// never stored (older than the session) are not reported.
async fn about_received(
    deps: &Deps,
    session: &SessionRow,
    sequence: Sequence,
    event_type: &str,
    external_id: &str,
    change: serde_json::Value,
) {
    // The message may still be on its way to the database.
    flush(sequence.clone()).await;
    let row = match deps
        .store
        .message_by_external_id(&session.id, external_id)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::debug!(
                external_id,
                event_type,
                "not a message we stored; not reported"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, external_id, "could not look up a changed message");
            return;
        }
    };
    let mut data = serde_json::json!({ "message_id": row.id, "external_id": external_id });
    if let serde_json::Value::Object(fields) = change {
        for (k, v) in fields {
            data[k] = v;
        }
    }
    let mut event = Publish::new(&session.tenant_id, event_type, data);
    event.session_id = Some(session.id.clone());
    event.channel = Some(session.channel.clone());
    if let Err(e) = sequence.publish(event).await {
        tracing::error!(error = %e, "could not publish a session event");
    }
}

/// A message the account sent from elsewhere (written on the phone): stored once as a
/// sent outbound message and reported as `message.sent` with `origin: device`.
async fn sent_elsewhere(
    state: &mut SessionState,
    m: InboundMessage,
) -> Result<(), ActorProcessingErr> {
    state.flush().await;
    if let Ok(Some(_)) = state
        .deps
        .store
        .message_by_external_id(&state.row.id, &m.external_id)
        .await
    {
        return Ok(());
    }
    let to = m.chat.clone().unwrap_or_else(|| m.from.clone());
    let mut row = MessageRow::outbound(
        &state.deps.keyring,
        &state.row,
        &to,
        &m.text,
        &Default::default(),
    )?;
    row.status = "sent".into();
    row.external_id = Some(m.external_id.clone());
    let mut data = serde_json::json!({
        "message_id": row.id,
        "status": "sent",
        "to": to,
        "external_id": m.external_id,
        "text": m.text,
        "origin": "device",
        "sent_at": crate::clock::rfc3339(m.sent_at),
    });
    if let Some(p) = &m.chat_phone {
        data["to_phone"] = p.as_str().into();
    }
    let mut event = state.event(MESSAGE_SENT, data);
    event.message = Some(MessageWrite::Insert(Box::new(row)));
    // Retried until stored.
    state.sequence().publish(event).await?;
    Ok(())
}

/// A message we sent (by its network id) got delivered, or read. The ack can
/// overtake the commit of `sent`, so it waits for that first. Each step is an
/// [`MessageWrite::Advance`] from the status before it, committed with its event, so
/// events follow the levels in order (`message.delivered` always follows
/// `message.sent`; a read ack for a message not yet delivered reports both), and an
/// ack that is repeated or overtaken by another reports nothing twice.
async fn acknowledge(deps: &Deps, session: &SessionRow, external_id: &str, level: AckLevel) {
    for _ in 0..100 {
        let row = match deps
            .store
            .message_by_external_id(&session.id, external_id)
            .await
        {
            Ok(Some(r)) if r.direction == "outbound" => r,
            // Not recorded as sent yet (that commit is on its way): wait for it.
            Ok(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not look up an acknowledged message");
                return;
            }
        };
        let delivered = ("sent", "delivered", MESSAGE_DELIVERED);
        let read = ("delivered", "read", MESSAGE_READ);
        let steps: &[(&'static str, &'static str, &'static str)] =
            match (row.status.as_str(), level) {
                ("sent", AckLevel::Delivered) => &[delivered],
                ("sent", AckLevel::Read) => &[delivered, read],
                ("delivered", AckLevel::Read) => &[read],
                // Already there or past it, or failed: nothing to report.
                _ => return,
            };
        for (from, to, event_type) in steps {
            let data = serde_json::json!({ "message_id": row.id, "status": to, "to": row.peer });
            let mut event = Publish::new(&row.tenant_id, *event_type, data);
            event.session_id = Some(row.session_id.clone());
            event.channel = Some(session.channel.clone());
            event.message = Some(MessageWrite::Advance {
                id: row.id.clone(),
                from,
                to,
            });
            publish(&deps.events, event).await;
        }
        return;
    }
    tracing::warn!(external_id = %external_id, "acknowledged message never recorded as sent");
}

/// Logs a write refused because another replica holds the session now.
pub(crate) fn fenced(session_id: &str, what: &str) {
    tracing::warn!(
        session_id,
        what,
        "write refused: another replica holds this session's lease now"
    );
}

/// Puts the sender of an opt-out message (one of the tenant's keywords) on the
/// suppression list with a `contact.opted_out` event, before the message itself is
/// stored: a crash in between reports the message again, and the opt-out is not
/// lost (nor reported twice: an address already listed adds no event).
async fn opt_out(deps: &Deps, row: &SessionRow, sequence: Sequence, m: &InboundMessage) {
    let Ok(kind) = row.channel.parse::<ChannelKind>() else {
        return;
    };
    let settings = match deps.store.consent(&row.tenant_id).await {
        Ok(s) => s,
        Err(e) => {
            // The defaults are the common keywords: better than none.
            tracing::warn!(error = %e, "consent settings not read; using the defaults");
            std::sync::Arc::new(crate::consent::ConsentSettings::default())
        }
    };
    let Some(keyword) = settings.opt_out_keyword(kind, &m.text, m.subject.as_deref()) else {
        return;
    };
    let who = m.from_phone.as_deref().unwrap_or(&m.from);
    let address = crate::suppression::recipient(kind, who);
    let entry = crate::storage::SuppressionRow {
        id: crate::ids::new_id(crate::ids::SUPPRESSION),
        tenant_id: row.tenant_id.clone(),
        channel: kind.as_str().to_owned(),
        address: address.clone(),
        reason: Some(format!("sent `{keyword}`")),
        source: "opt_out".into(),
        created_at: crate::clock::now_ms(),
    };
    let data = serde_json::json!({
        "channel": kind.as_str(),
        "address": address,
        "from": m.from,
        "keyword": keyword,
        "external_id": m.external_id,
        "suppression_id": entry.id,
    });
    let mut event = Publish::new(&row.tenant_id, crate::consent::CONTACT_OPTED_OUT, data);
    event.session_id = Some(row.id.clone());
    event.channel = Some(row.channel.clone());
    event.suppress = vec![entry];
    // Committed before the message (the sequence keeps the order), retried until stored.
    if let Err(e) = sequence.push(event).await {
        tracing::error!(error = %e, "opt-out not stored");
        return;
    }
    metrics::counter!("switchboard_opt_outs_total", "channel" => kind.as_str()).increment(1);
}

/// Puts `address`, which a delivery status notification says is gone for good, on
/// the suppression list (reason `bounced`) with a `contact.bounced` event, before
/// the notification itself is stored (as [`opt_out`] does).
async fn bounced(row: &SessionRow, sequence: Sequence, address: &str, external_id: &str) {
    let address = crate::suppression::recipient(ChannelKind::Email, address);
    let event = crate::consent::bounce_event(
        &row.tenant_id,
        &row.id,
        &address,
        serde_json::json!({ "external_id": external_id, "via": "dsn" }),
    );
    // Committed before the notification, retried until stored.
    if let Err(e) = sequence.push(event).await {
        tracing::error!(error = %e, "bounce not stored");
    }
}

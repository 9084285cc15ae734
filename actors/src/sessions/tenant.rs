//! `TenantSupervisor`: supervises one tenant's session actors.
//!
//! Messages: `Start`, `Stop`, `Logout`, `Fault` (commands, with replies), `Status`
//! (from its sessions), `Respawn` (a scheduled restart), `Watchdog` (periodic) and
//! `Unresponsive` (a ping timed out).
//!
//! Restart policy: a session that panics, returns an error, disconnects or is
//! killed by the watchdog is restarted after a backoff from
//! [`crate::supervision::RestartTracker`]; past the cap it goes to `FAILED` (and
//! stops wanting to run) until started again. Every status change is written to the
//! session row and published as `session.status`; a change identical to the last
//! one published within the coalescing window is stored but not published again.

use super::session::{SessionActor, SessionArgs, SessionFailure, SessionMsg, publish_status};
use super::{Deps, Fault, SessionError, status};
use crate::storage::SessionRow;
use crate::supervision::{Decision, RestartTracker};
use crate::webhooks::schedule::unit_random;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::time::Instant;

type Reply = RpcReplyPort<Result<(), SessionError>>;

#[derive(Debug)]
pub enum TenantMsg {
    Start(Box<SessionRow>, Reply),
    Stop(String, Reply),
    /// Stops the session here without changing what its row wants (its lease went
    /// to another replica, or this one is handing it over).
    Release(String, Reply),
    Logout(String, Reply),
    Fault(String, Fault, Reply),
    Send(
        String,
        crate::channels::OutboundMessage,
        RpcReplyPort<Result<String, SessionError>>,
    ),
    Status {
        session_id: String,
        status: &'static str,
        reason: String,
    },
    Query(
        String,
        super::Query,
        RpcReplyPort<Result<serde_json::Value, SessionError>>,
    ),
    Respawn(String),
    Watchdog,
    Unresponsive(String, ActorId),
}

#[derive(Debug)]
struct Child {
    row: SessionRow,
    actor: Option<ActorRef<SessionMsg>>,
    tracker: RestartTracker,
    /// Set when the watchdog killed the actor (so the termination is a failure).
    killed: bool,
    last_published: Option<(&'static str, String, Instant)>,
    /// When each restart reason was last published (to coalesce reconnect loops).
    restarts_published: HashMap<String, Instant>,
}

/// How long a release waits for the session to close its channel.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug)]
pub struct TenantState {
    deps: Deps,
    children: HashMap<String, Child>,
    by_actor: HashMap<ActorId, String>,
}

#[derive(Debug)]
pub struct TenantSupervisor;

impl TenantState {
    /// Stores a status and publishes it unless it repeats the last one recently.
    async fn set_status(
        &mut self,
        session_id: &str,
        status: &'static str,
        reason: &str,
        desired: Option<&str>,
    ) {
        let window = self.deps.settings.coalesce_window;
        if let Err(e) = self
            .deps
            .store
            .set_session_status(
                session_id,
                status,
                Some(reason),
                desired,
                self.deps.fence(session_id).as_ref(),
            )
            .await
        {
            tracing::error!(error = %e, session_id, "could not store session status");
        }
        let Some(child) = self.children.get_mut(session_id) else {
            // The actor already ended (e.g. it stopped itself right after reporting).
            publish_status_by_id(&self.deps, session_id, status, reason).await;
            return;
        };
        child.row.status = status.to_owned();
        child.row.status_reason = Some(reason.to_owned());
        let repeat = child
            .last_published
            .as_ref()
            .is_some_and(|(s, r, at)| *s == status && r == reason && at.elapsed() < window);
        // A restart cycle identical to one published recently, starting from WORKING,
        // is left out entirely (its STARTING here, its WORKING by the rule above): the
        // consumer keeps seeing WORKING, which is where the session ends up.
        let repeated_cycle = status == status::STARTING
            && reason.starts_with("restarting after")
            && child
                .last_published
                .as_ref()
                .is_some_and(|(s, _, _)| *s == status::WORKING)
            && child
                .restarts_published
                .get(reason)
                .is_some_and(|at| at.elapsed() < window);
        let repeat = repeat || repeated_cycle;
        if repeat {
            metrics::counter!("switchboard_session_status_coalesced_total").increment(1);
            return;
        }
        child.last_published = Some((status, reason.to_owned(), Instant::now()));
        if status == status::STARTING {
            child
                .restarts_published
                .insert(reason.to_owned(), Instant::now());
        }
        let row = child.row.clone();
        publish_status(&self.deps, &row, status, reason).await;
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<TenantMsg>,
        session_id: &str,
    ) -> Result<(), SessionError> {
        let Some(child) = self.children.get(session_id) else {
            return Err(SessionError::NotRunning);
        };
        let args = SessionArgs {
            row: child.row.clone(),
            deps: self.deps.clone(),
            supervisor: myself.clone(),
        };
        match Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_actor.insert(actor.get_id(), session_id.to_owned());
                if let Some(c) = self.children.get_mut(session_id) {
                    c.actor = Some(actor);
                    c.killed = false;
                }
                Ok(())
            }
            Err(e) => {
                let reason = format!("could not start: {e}");
                self.set_status(session_id, status::FAILED, &reason, Some("stopped"))
                    .await;
                self.children.remove(session_id);
                Err(SessionError::Failed(reason))
            }
        }
    }

    /// Stops a session's actor without treating it as a failure.
    fn stop_actor(&mut self, session_id: &str) -> Option<Child> {
        let child = self.children.remove(session_id)?;
        if let Some(actor) = &child.actor {
            self.by_actor.remove(&actor.get_id());
            actor.stop(Some("stopped".into()));
        }
        Some(child)
    }

    async fn on_failure(
        &mut self,
        myself: &ActorRef<TenantMsg>,
        session_id: String,
        kind: &'static str,
        detail: String,
    ) {
        metrics::counter!("switchboard_session_failures_total", "kind" => kind).increment(1);
        let policy = self.deps.settings.restart.clone();
        let Some(child) = self.children.get_mut(&session_id) else {
            return;
        };
        child.actor = None;
        let decision = child
            .tracker
            .on_failure(&policy, Instant::now(), unit_random());
        match decision {
            Decision::Restart { after, attempt } => {
                tracing::warn!(session_id = %session_id, kind, %detail, attempt, after_ms = after.as_millis() as u64, "session failed; restarting");
                metrics::counter!("switchboard_session_restarts_total", "kind" => kind)
                    .increment(1);
                self.set_status(
                    &session_id,
                    status::STARTING,
                    &format!("restarting after {kind}"),
                    None,
                )
                .await;
                let id = session_id.clone();
                myself.send_after(after, move || TenantMsg::Respawn(id));
            }
            Decision::GiveUp { restarts } => {
                tracing::error!(session_id = %session_id, kind, %detail, restarts, "session failed too often; giving up");
                metrics::counter!("switchboard_sessions_given_up_total").increment(1);
                let reason = format!(
                    "restart limit reached ({restarts} restarts within {}s); last failure: {kind}",
                    policy.window.as_secs()
                );
                self.set_status(&session_id, status::FAILED, &reason, Some("stopped"))
                    .await;
                self.children.remove(&session_id);
            }
        }
    }
}

impl Actor for TenantSupervisor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = Deps;

    async fn pre_start(
        &self,
        _myself: ActorRef<TenantMsg>,
        deps: Deps,
    ) -> Result<TenantState, ActorProcessingErr> {
        Ok(TenantState {
            deps,
            children: HashMap::new(),
            by_actor: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<TenantMsg>,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_interval(state.deps.settings.watchdog_interval, || {
            TenantMsg::Watchdog
        });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        msg: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::Start(row, reply) => {
                let id = row.id.clone();
                if state.children.get(&id).is_some_and(|c| c.actor.is_some()) {
                    let _ = reply.send(Ok(()));
                    return Ok(());
                }
                let last = state
                    .children
                    .get(&id)
                    .and_then(|c| c.last_published.clone());
                state.children.insert(
                    id.clone(),
                    Child {
                        row: *row,
                        actor: None,
                        tracker: RestartTracker::default(),
                        killed: false,
                        last_published: last,
                        restarts_published: HashMap::new(),
                    },
                );
                state
                    .set_status(&id, status::STARTING, "starting", Some("running"))
                    .await;
                let result = state.spawn(&myself, &id).await;
                let _ = reply.send(result);
            }
            TenantMsg::Stop(id, reply) => {
                let existed = state.stop_actor(&id).is_some();
                if let Err(e) = state
                    .deps
                    .store
                    .set_session_status(
                        &id,
                        status::STOPPED,
                        Some("stopped"),
                        Some("stopped"),
                        state.deps.fence(&id).as_ref(),
                    )
                    .await
                {
                    tracing::error!(error = %e, "could not store session status");
                }
                if existed {
                    publish_status_by_id(&state.deps, &id, status::STOPPED, "stopped").await;
                }
                let _ = reply.send(Ok(()));
            }
            TenantMsg::Release(id, reply) => {
                let actor = state.children.get(&id).and_then(|c| c.actor.clone());
                state.stop_actor(&id);
                state.children.remove(&id);
                // Answered once the session has closed its channel (a browser
                // session saves its profile on the way out), off this actor.
                tokio::spawn(async move {
                    if let Some(a) = actor
                        && a.wait(Some(RELEASE_WAIT)).await.is_err()
                    {
                        tracing::warn!(session_id = %id, "a released session took long to close");
                    }
                    let _ = reply.send(Ok(()));
                });
            }
            TenantMsg::Logout(id, reply) => {
                let actor = state.children.get(&id).and_then(|c| c.actor.clone());
                if let Some(actor) = actor {
                    match ractor::call_t!(actor, SessionMsg::Logout, 10_000) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "channel logout failed; logging out locally")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "session did not answer logout; logging out locally")
                        }
                    }
                }
                state.stop_actor(&id);
                if let Err(e) = state
                    .deps
                    .store
                    .set_session_status(
                        &id,
                        status::LOGGED_OUT,
                        Some("logged out by request"),
                        Some("stopped"),
                        state.deps.fence(&id).as_ref(),
                    )
                    .await
                {
                    tracing::error!(error = %e, "could not store session status");
                }
                publish_status_by_id(
                    &state.deps,
                    &id,
                    status::LOGGED_OUT,
                    "logged out by request",
                )
                .await;
                let _ = reply.send(Ok(()));
            }
            TenantMsg::Fault(id, fault, reply) => {
                let actor = state.children.get(&id).and_then(|c| c.actor.clone());
                let result = match actor {
                    Some(a) => a
                        .cast(SessionMsg::Fault(fault))
                        .map_err(|e| SessionError::Failed(e.to_string())),
                    None => Err(SessionError::NotRunning),
                };
                let _ = reply.send(result);
            }
            TenantMsg::Send(id, message, reply) => {
                let actor = state.children.get(&id).and_then(|c| c.actor.clone());
                let Some(actor) = actor else {
                    let _ = reply.send(Err(SessionError::NotRunning));
                    return Ok(());
                };
                // The session answers the caller directly; the supervisor never waits.
                tokio::spawn(async move {
                    let result = match ractor::call_t!(actor, SessionMsg::Send, 30_000, message) {
                        Ok(r) => r.map_err(SessionError::from),
                        Err(ractor::RactorErr::Timeout) => Err(SessionError::Timeout),
                        Err(_) => Err(SessionError::NotRunning),
                    };
                    let _ = reply.send(result);
                });
            }
            TenantMsg::Query(id, query, reply) => {
                let actor = state.children.get(&id).and_then(|c| c.actor.clone());
                let Some(actor) = actor else {
                    let _ = reply.send(Err(SessionError::NotRunning));
                    return Ok(());
                };
                tokio::spawn(async move {
                    let result = match ractor::call_t!(actor, SessionMsg::Query, 30_000, query) {
                        Ok(r) => r.map_err(SessionError::from),
                        Err(ractor::RactorErr::Timeout) => Err(SessionError::Timeout),
                        Err(_) => Err(SessionError::NotRunning),
                    };
                    let _ = reply.send(result);
                });
            }
            TenantMsg::Status {
                session_id,
                status,
                reason,
            } => {
                if status == status::LOGGED_OUT || status == status::FAILED {
                    state
                        .set_status(&session_id, status, &reason, Some("stopped"))
                        .await;
                    state.stop_actor(&session_id);
                } else {
                    state.set_status(&session_id, status, &reason, None).await;
                }
            }
            TenantMsg::Respawn(id) => {
                if state.children.get(&id).is_some_and(|c| c.actor.is_none()) {
                    let _ = state.spawn(&myself, &id).await;
                }
            }
            TenantMsg::Watchdog => {
                let timeout = state.deps.settings.watchdog_timeout;
                for (id, child) in &state.children {
                    let Some(actor) = child.actor.clone() else {
                        continue;
                    };
                    let (me, id) = (myself.clone(), id.clone());
                    tokio::spawn(async move {
                        let ms = timeout.as_millis() as u64;
                        // Only a timeout means "hung"; a dead actor is reported by supervision.
                        if let Err(ractor::RactorErr::Timeout) =
                            ractor::call_t!(actor, SessionMsg::Ping, ms)
                        {
                            let _ = me.cast(TenantMsg::Unresponsive(id, actor.get_id()));
                        }
                    });
                }
            }
            TenantMsg::Unresponsive(id, actor_id) => {
                if let Some(child) = state.children.get_mut(&id)
                    && let Some(actor) = child.actor.as_ref().filter(|a| a.get_id() == actor_id)
                {
                    tracing::warn!(session_id = %id, "session stopped answering; killing it");
                    metrics::counter!("switchboard_session_kills_total").increment(1);
                    child.killed = true;
                    actor.kill();
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<TenantMsg>,
        event: SupervisionEvent,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(id) = state.by_actor.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let (kind, detail) = match err.downcast_ref::<SessionFailure>() {
                    Some(f) => (f.kind(), f.to_string()),
                    None => ("panic", err.to_string()),
                };
                state.on_failure(&myself, id, kind, detail).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let Some(id) = state.by_actor.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let killed = state.children.get(&id).is_some_and(|c| c.killed);
                if killed {
                    state
                        .on_failure(&myself, id, "hang", "killed by the watchdog".into())
                        .await;
                } else if let Some(child) = state.children.get_mut(&id) {
                    // It stopped by itself (e.g. logged out): nothing to restart.
                    tracing::info!(session_id = %id, reason = ?reason, "session actor ended");
                    child.actor = None;
                    state.children.remove(&id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

async fn publish_status_by_id(deps: &Deps, session_id: &str, status: &str, reason: &str) {
    match deps.store.session_by_id(session_id).await {
        Ok(Some(row)) => publish_status(deps, &row, status, reason).await,
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "could not load session for its status event"),
    }
}

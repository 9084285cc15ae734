//! `Root`: the top of the session tree, and [`Sessions`], the handle to it.
//!
//! Messages: `Command` (routed to the tenant's supervisor, which is spawned on first
//! use) and `Restore` (start every session whose row says it should run; sent once
//! at start-up). If a tenant supervisor dies its sessions die with it (linked); the
//! root forgets it and restores that tenant's sessions from the database.

use super::tenant::{TenantMsg, TenantSupervisor};
use super::{Deps, Fault, SessionError};
use crate::rag_feed::{self, RagSlot};
use crate::storage::SessionRow;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use switchboard_rag::actor::{RagActor, RagArgs};
use tokio_util::sync::CancellationToken;

/// How long API calls wait for the tree.
const CALL_TIMEOUT_MS: u64 = 15_000;

#[derive(Debug, Clone)]
pub enum Command {
    Start(Box<SessionRow>),
    Stop(String),
    Release(String),
    Logout(String),
    Fault(String, Fault),
}

#[derive(Debug)]
pub enum RootMsg {
    Command {
        tenant_id: String,
        command: Command,
        reply: RpcReplyPort<Result<(), SessionError>>,
    },
    Restore,
    Query {
        tenant_id: String,
        session_id: String,
        query: super::Query,
        reply: RpcReplyPort<Result<serde_json::Value, SessionError>>,
    },
    Send {
        tenant_id: String,
        session_id: String,
        message: crate::channels::OutboundMessage,
        reply: RpcReplyPort<Result<String, SessionError>>,
    },
    /// Spawns the RAG actor (supervised: restarted if it dies) and its feed.
    StartRag(Box<RagArgs>),
}

#[derive(Debug)]
pub struct RootState {
    deps: Deps,
    /// The RAG actor's arguments (kept to restart it) and where the feed finds it.
    rag: Option<(RagArgs, RagSlot, CancellationToken)>,
    tenants: HashMap<String, ActorRef<TenantMsg>>,
    by_actor: HashMap<ActorId, String>,
}

#[derive(Debug)]
pub struct Root;

impl RootState {
    async fn spawn_rag(&mut self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        let Some((args, slot, _)) = &self.rag else {
            return Ok(());
        };
        let (actor, _) =
            Actor::spawn_linked(None, RagActor, args.clone(), myself.get_cell()).await?;
        if let Ok(mut s) = slot.write() {
            *s = Some(actor);
        }
        Ok(())
    }

    fn is_rag(&self, id: ActorId) -> bool {
        self.rag.as_ref().is_some_and(|(_, slot, _)| {
            slot.read()
                .ok()
                .and_then(|s| s.as_ref().map(|a| a.get_id() == id))
                .unwrap_or(false)
        })
    }

    async fn tenant(
        &mut self,
        myself: &ActorRef<RootMsg>,
        tenant_id: &str,
    ) -> Result<ActorRef<TenantMsg>, ActorProcessingErr> {
        if let Some(t) = self.tenants.get(tenant_id) {
            return Ok(t.clone());
        }
        let (actor, _) =
            Actor::spawn_linked(None, TenantSupervisor, self.deps.clone(), myself.get_cell())
                .await?;
        self.by_actor.insert(actor.get_id(), tenant_id.to_owned());
        self.tenants.insert(tenant_id.to_owned(), actor.clone());
        Ok(actor)
    }

    async fn restore(&mut self, myself: &ActorRef<RootMsg>, only_tenant: Option<&str>) {
        // On a cluster, only the sessions this replica holds the lease of.
        let rows = match &self.deps.cluster {
            Some(cluster) => self
                .deps
                .store
                .held_sessions(cluster.id())
                .await
                .map(|held| held.into_iter().map(|(row, _)| row).collect()),
            None => self.deps.store.sessions_to_run().await,
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not load sessions to restore");
                return;
            }
        };
        let mut restored = 0;
        for row in rows
            .into_iter()
            .filter(|r| only_tenant.is_none_or(|t| t == r.tenant_id))
        {
            let Ok(tenant) = self.tenant(myself, &row.tenant_id).await else {
                continue;
            };
            let id = row.id.clone();
            match ractor::call_t!(tenant, TenantMsg::Start, CALL_TIMEOUT_MS, Box::new(row)) {
                Ok(Ok(())) => restored += 1,
                Ok(Err(e)) => tracing::warn!(session_id = %id, error = %e, "session not restored"),
                Err(e) => tracing::warn!(session_id = %id, error = %e, "session not restored"),
            }
        }
        if restored > 0 {
            tracing::info!(sessions = restored, "sessions restored");
        }
    }
}

impl Actor for Root {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = Deps;

    async fn pre_start(
        &self,
        _myself: ActorRef<RootMsg>,
        deps: Deps,
    ) -> Result<RootState, ActorProcessingErr> {
        Ok(RootState {
            deps,
            rag: None,
            tenants: HashMap::new(),
            by_actor: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<RootMsg>,
        _state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        myself.cast(RootMsg::Restore)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Restore => state.restore(&myself, None).await,
            RootMsg::StartRag(args) => {
                if state.rag.is_some() {
                    tracing::warn!("the RAG actor is already running");
                    return Ok(());
                }
                let slot: RagSlot = Default::default();
                let cancel = CancellationToken::new();
                let key = args.key.clone();
                state.rag = Some((*args, slot.clone(), cancel.clone()));
                state.spawn_rag(&myself).await?;
                tokio::spawn(rag_feed::run(
                    state.deps.store.clone(),
                    state.deps.keyring.clone(),
                    key,
                    slot,
                    state.deps.events.rag_commits(),
                    cancel,
                ));
            }
            RootMsg::Query {
                tenant_id,
                session_id,
                query,
                reply,
            } => match state.tenants.get(&tenant_id) {
                Some(t) => {
                    let _ = t.cast(TenantMsg::Query(session_id, query, reply));
                }
                None => {
                    let _ = reply.send(Err(SessionError::NotRunning));
                }
            },
            RootMsg::Send {
                tenant_id,
                session_id,
                message,
                reply,
            } => match state.tenants.get(&tenant_id) {
                Some(t) => {
                    let _ = t.cast(TenantMsg::Send(session_id, message, reply));
                }
                None => {
                    let _ = reply.send(Err(SessionError::NotRunning));
                }
            },
            RootMsg::Command {
                tenant_id,
                command,
                reply,
            } => {
                let tenant = state.tenant(&myself, &tenant_id).await?;
                // The tenant supervisor answers the caller directly; the root never waits.
                let msg = match command {
                    Command::Start(row) => TenantMsg::Start(row, reply),
                    Command::Stop(id) => TenantMsg::Stop(id, reply),
                    Command::Release(id) => TenantMsg::Release(id, reply),
                    Command::Logout(id) => TenantMsg::Logout(id, reply),
                    Command::Fault(id, f) => TenantMsg::Fault(id, f, reply),
                };
                if let Err(e) = tenant.cast(msg) {
                    tracing::error!(tenant_id = %tenant_id, error = %e, "tenant supervisor unreachable");
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RootMsg>,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, _, cancel)) = &state.rag {
            cancel.cancel();
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, _)
        | SupervisionEvent::ActorTerminated(cell, _, _) = &event
            && state.is_rag(cell.get_id())
        {
            tracing::error!("the RAG actor ended; restarting it");
            metrics::counter!("switchboard_rag_actor_restarts_total").increment(1);
            state.spawn_rag(&myself).await?;
            return Ok(());
        }
        if let SupervisionEvent::ActorFailed(cell, _)
        | SupervisionEvent::ActorTerminated(cell, _, _) = &event
            && let Some(tenant_id) = state.by_actor.remove(&cell.get_id())
        {
            tracing::error!(tenant_id = %tenant_id, "tenant supervisor ended; restoring its sessions");
            state.tenants.remove(&tenant_id);
            state.restore(&myself, Some(&tenant_id)).await;
        }
        Ok(())
    }
}

/// The API's handle to the session tree.
#[derive(Debug, Clone)]
pub struct Sessions {
    root: ActorRef<RootMsg>,
}

impl Sessions {
    /// Spawns the root (which restores running sessions).
    pub async fn spawn(
        deps: Deps,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), ractor::SpawnErr> {
        let (root, handle) = Actor::spawn(None, Root, deps).await?;
        Ok((Self { root }, handle))
    }

    async fn command(&self, tenant_id: &str, command: Command) -> Result<(), SessionError> {
        let tenant_id = tenant_id.to_owned();
        match ractor::call_t!(
            self.root,
            |reply| RootMsg::Command {
                tenant_id,
                command,
                reply
            },
            CALL_TIMEOUT_MS
        ) {
            Ok(r) => r,
            Err(ractor::RactorErr::Timeout) => Err(SessionError::Timeout),
            Err(e) => Err(SessionError::Failed(e.to_string())),
        }
    }

    pub async fn start(&self, row: SessionRow) -> Result<(), SessionError> {
        let tenant = row.tenant_id.clone();
        self.command(&tenant, Command::Start(Box::new(row))).await
    }

    pub async fn stop(&self, tenant_id: &str, session_id: &str) -> Result<(), SessionError> {
        self.command(tenant_id, Command::Stop(session_id.to_owned()))
            .await
    }

    /// Stops a session here, leaving its row wanting what it wanted (a lease lost
    /// or handed over: another replica runs it next).
    pub async fn release(&self, tenant_id: &str, session_id: &str) -> Result<(), SessionError> {
        self.command(tenant_id, Command::Release(session_id.to_owned()))
            .await
    }

    pub async fn logout(&self, tenant_id: &str, session_id: &str) -> Result<(), SessionError> {
        self.command(tenant_id, Command::Logout(session_id.to_owned()))
            .await
    }

    pub async fn fault(
        &self,
        tenant_id: &str,
        session_id: &str,
        fault: Fault,
    ) -> Result<(), SessionError> {
        self.command(tenant_id, Command::Fault(session_id.to_owned(), fault))
            .await
    }

    /// Sends a message through a running session; returns the network's id for it.
    pub async fn send(
        &self,
        tenant_id: &str,
        session_id: &str,
        message: crate::channels::OutboundMessage,
    ) -> Result<String, SessionError> {
        let (tenant_id, session_id) = (tenant_id.to_owned(), session_id.to_owned());
        let call = ractor::call_t!(
            self.root,
            |reply| RootMsg::Send {
                tenant_id,
                session_id,
                message,
                reply
            },
            45_000
        );
        match call {
            Ok(r) => r,
            Err(ractor::RactorErr::Timeout) => Err(SessionError::Timeout),
            Err(e) => Err(SessionError::Failed(e.to_string())),
        }
    }

    /// Asks a running session's channel (groups, contacts, pairing code, memory).
    pub async fn query(
        &self,
        tenant_id: &str,
        session_id: &str,
        query: super::Query,
    ) -> Result<serde_json::Value, SessionError> {
        let (tenant_id, session_id) = (tenant_id.to_owned(), session_id.to_owned());
        let timeout = query.timeout_ms();
        let call = ractor::call_t!(
            self.root,
            |reply| RootMsg::Query {
                tenant_id,
                session_id,
                query,
                reply
            },
            timeout
        );
        match call {
            Ok(r) => r,
            Err(ractor::RactorErr::Timeout) => Err(SessionError::Timeout),
            Err(e) => Err(SessionError::Failed(e.to_string())),
        }
    }

    /// Starts the RAG actor (as a supervised child of the root) and the feed of
    /// inbound messages to it.
    pub fn start_rag(&self, args: RagArgs) -> Result<(), SessionError> {
        self.root
            .cast(RootMsg::StartRag(Box::new(args)))
            .map_err(|e| SessionError::Failed(e.to_string()))
    }

    /// Stops every session actor (not their rows' desired state: they come back on restart).
    pub fn shutdown(&self) {
        self.root.stop(Some("gateway shutting down".into()));
    }
}

//! Commands for a session from any replica: start, stop, restart, logout, faults
//! and every [`Query`] (pairing codes, challenge answers, contacts, media fetches,
//! reactions…), run by the replica holding the session's lease, with the answer
//! it would give on one node.
//!
//! Routing is a row-based queue (`session_commands`) woken by `LISTEN/NOTIFY`
//! ([`super::bus`]), not `NOTIFY` alone: a notification is lost when nobody is
//! listening at that moment (a listener reconnecting, a replica restarting), has no
//! way back for the answer, and cannot be taken by exactly one replica. The row is
//! taken once (`FOR UPDATE SKIP LOCKED`), answered in place, and both ends poll
//! when a signal goes missing, so a lost signal costs a poll interval, never a
//! command. An asker that gives up before the owner took the command deletes it,
//! so it never runs late; a command the owner no longer holds the session for is
//! sent back and asked again of the new owner.

use super::bus::{Bus, Signal};
use super::{Cluster, Placement};
use crate::clock;
use crate::sessions::{Fault, Query, SessionError, Sessions, status};
use crate::storage::{CommandRow, SessionRow, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// What to do with a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Stop,
    Restart,
    Logout,
    Fault(Fault),
    Query(Query),
}

impl Request {
    /// How long an asker waits for the answer.
    fn timeout(&self) -> Duration {
        match self {
            Self::Query(q) => Duration::from_millis(q.timeout_ms()),
            _ => Duration::from_secs(45),
        }
    }
}

/// The owner's answer to a routed command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Done(Result<serde_json::Value, SessionError>),
    /// The session is not held here (any more): ask its owner again.
    NotHere,
}

/// Prefix of command ids.
const COMMAND_PREFIX: &str = "cmd";
/// How often each end looks at the table when no signal came.
const POLL: Duration = Duration::from_millis(1000);
/// How often an asker checks that the owner still holds the session.
const OWNER_CHECK: Duration = Duration::from_secs(2);
/// Commands older than this are swept.
const KEEP_MS: i64 = 15 * 60 * 1000;
/// How many times a command follows a session that moved.
const HOPS: usize = 3;

#[derive(Debug)]
struct Inner {
    cluster: Cluster,
    sessions: Sessions,
    store: Store,
}

/// Runs session commands wherever the session is (cheap to clone).
#[derive(Debug, Clone)]
pub struct Commands {
    inner: Arc<Inner>,
}

impl Commands {
    pub fn new(cluster: Cluster, sessions: Sessions, store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster,
                sessions,
                store,
            }),
        }
    }

    fn bus(&self) -> &Bus {
        self.inner.cluster.bus()
    }

    /// Runs a session: here when this replica takes it (the least loaded, or holding
    /// it already), else left wanting to run for a less loaded replica, which is
    /// woken to take it. Running elsewhere already: nothing to do.
    pub async fn start(&self, row: SessionRow) -> Result<(), SessionError> {
        match self.inner.cluster.place(&row.id).await.map_err(failed)? {
            Placement::Here => self.inner.sessions.start(row).await,
            Placement::Left => {
                self.inner
                    .store
                    .set_session_status(
                        &row.id,
                        status::STARTING,
                        Some("waiting for a replica to take it"),
                        Some("running"),
                        None,
                    )
                    .await
                    .map_err(failed)?;
                self.bus().publish(Signal::Leases).await;
                Ok(())
            }
            Placement::Elsewhere(_) => Ok(()),
        }
    }

    pub async fn stop(&self, tenant_id: &str, session_id: &str) -> Result<(), SessionError> {
        match self.run(tenant_id, session_id, Request::Stop).await {
            // The owner did not answer: its row stops wanting to run, and whoever
            // holds it stops it on the next tick.
            Err(SessionError::Timeout) => self
                .inner
                .store
                .want_stopped(session_id)
                .await
                .map_err(failed),
            other => other.map(drop),
        }
    }

    pub async fn restart(&self, tenant_id: &str, session_id: &str) -> Result<(), SessionError> {
        self.run(tenant_id, session_id, Request::Restart)
            .await
            .map(drop)
    }

    pub async fn logout(&self, tenant_id: &str, session_id: &str) -> Result<(), SessionError> {
        self.run(tenant_id, session_id, Request::Logout)
            .await
            .map(drop)
    }

    pub async fn fault(
        &self,
        tenant_id: &str,
        session_id: &str,
        fault: Fault,
    ) -> Result<(), SessionError> {
        self.run(tenant_id, session_id, Request::Fault(fault))
            .await
            .map(drop)
    }

    /// Asks a running session's channel, wherever it runs.
    pub async fn query(
        &self,
        tenant_id: &str,
        session_id: &str,
        query: Query,
    ) -> Result<serde_json::Value, SessionError> {
        self.run(tenant_id, session_id, Request::Query(query)).await
    }

    /// Runs `request` here when this replica holds the session (or nobody does),
    /// else on the replica that does.
    async fn run(
        &self,
        tenant_id: &str,
        session_id: &str,
        request: Request,
    ) -> Result<serde_json::Value, SessionError> {
        for _ in 0..HOPS {
            match self.owner_elsewhere(session_id).await? {
                None => return self.here(tenant_id, session_id, request).await,
                Some(owner) => match self.ask(&owner, session_id, &request).await? {
                    Answer::Done(r) => return r,
                    Answer::NotHere => continue,
                },
            }
        }
        Err(SessionError::Busy(
            "the session is moving between replicas; retry".into(),
        ))
    }

    /// The other replica holding session `id`'s live lease, if one does.
    async fn owner_elsewhere(&self, id: &str) -> Result<Option<String>, SessionError> {
        let cluster = &self.inner.cluster;
        if cluster.holds(id).is_some() {
            return Ok(None);
        }
        Ok(self
            .inner
            .store
            .session_owner(id, clock::now_ms())
            .await
            .map_err(failed)?
            .map(|(owner, _)| owner)
            .filter(|o| o != cluster.id()))
    }

    /// Runs `request` on this replica's session tree.
    async fn here(
        &self,
        tenant_id: &str,
        session_id: &str,
        request: Request,
    ) -> Result<serde_json::Value, SessionError> {
        let Inner {
            cluster,
            sessions,
            store,
        } = &*self.inner;
        match request {
            Request::Stop => {
                sessions.stop(tenant_id, session_id).await?;
                cluster.forget(session_id).await.map_err(failed)?;
            }
            Request::Restart => {
                sessions.stop(tenant_id, session_id).await?;
                cluster.forget(session_id).await.map_err(failed)?;
                let row = store
                    .session_by_id(session_id)
                    .await
                    .map_err(failed)?
                    .ok_or(SessionError::NotRunning)?;
                self.start(row).await?;
            }
            Request::Logout => sessions.logout(tenant_id, session_id).await?,
            Request::Fault(f) => sessions.fault(tenant_id, session_id, f).await?,
            Request::Query(q) => return sessions.query(tenant_id, session_id, q).await,
        }
        Ok(serde_json::Value::Null)
    }

    /// Has replica `owner` run `request` and waits for its answer.
    async fn ask(
        &self,
        owner: &str,
        session_id: &str,
        request: &Request,
    ) -> Result<Answer, SessionError> {
        let store = &self.inner.store;
        let id = crate::ids::new_id(COMMAND_PREFIX);
        let body = serde_json::to_string(request).map_err(failed)?;
        // Subscribed before the command exists: its answer's signal cannot be missed.
        let mut signals = self.bus().subscribe();
        store
            .push_command(&id, session_id, owner, &body, clock::now_ms())
            .await
            .map_err(failed)?;
        self.bus().publish(Signal::Commands(owner.to_owned())).await;
        let deadline = tokio::time::Instant::now() + request.timeout();
        let mut owner_checked = tokio::time::Instant::now();
        loop {
            match store.command_answer(&id).await.map_err(failed)? {
                Some(Some(answer)) => {
                    let _ = store.drop_command(&id, false).await;
                    return serde_json::from_str(&answer).map_err(failed);
                }
                Some(None) => {
                    let now = tokio::time::Instant::now();
                    let moved = now >= owner_checked + OWNER_CHECK && {
                        owner_checked = now;
                        self.owner_elsewhere(session_id).await?.as_deref() != Some(owner)
                    };
                    if now >= deadline || moved {
                        // Not taken yet: deleted, it never runs. Taken: it may
                        // still finish there, but the answer is not waited for.
                        let untaken = store.drop_command(&id, true).await.map_err(failed)?;
                        return Ok(match (untaken, moved) {
                            (true, true) => Answer::NotHere,
                            (false, true) => Answer::Done(Err(SessionError::Busy(
                                "the replica running the session went away while running \
                                 the request; retry"
                                    .into(),
                            ))),
                            (_, false) => Answer::Done(Err(SessionError::Timeout)),
                        });
                    }
                }
                None => {
                    return Err(SessionError::Failed(
                        "the command was swept before it was answered".into(),
                    ));
                }
            }
            let wait = POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let woken = tokio::time::timeout(wait, async {
                loop {
                    match signals.recv().await {
                        Ok(Signal::Answered(c)) if c == id => return,
                        Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => return,
                        Ok(_) => {}
                        Err(RecvError::Closed) => std::future::pending::<()>().await,
                    }
                }
            });
            let _ = woken.await;
        }
    }

    /// Runs the commands other replicas route here until `cancel`.
    pub fn spawn(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut signals = me.bus().subscribe();
            let mut swept = tokio::time::Instant::now();
            loop {
                let now = clock::now_ms();
                match me
                    .inner
                    .store
                    .take_commands(me.inner.cluster.id(), now, 64)
                    .await
                {
                    Ok(rows) => {
                        for row in rows {
                            let me = me.clone();
                            tokio::spawn(async move { me.answer(row).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "routed commands not read"),
                }
                if swept.elapsed() > Duration::from_secs(60) {
                    swept = tokio::time::Instant::now();
                    if let Err(e) = me.inner.store.sweep_commands(now - KEEP_MS).await {
                        tracing::debug!(error = %e, "old routed commands not swept");
                    }
                }
                let mine = me.inner.cluster.id().to_owned();
                let woken = async {
                    loop {
                        match signals.recv().await {
                            Ok(Signal::Commands(r)) if r == mine => return,
                            Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => return,
                            Ok(_) => {}
                            Err(RecvError::Closed) => std::future::pending::<()>().await,
                        }
                    }
                };
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = woken => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        })
    }

    /// Runs one routed command and writes its answer.
    async fn answer(&self, row: CommandRow) {
        let store = &self.inner.store;
        let answer = match serde_json::from_str::<Request>(&row.request) {
            Err(e) => Answer::Done(Err(SessionError::Failed(format!(
                "a command this replica cannot read: {e}"
            )))),
            Ok(_) if self.inner.cluster.holds(&row.session_id).is_none() => Answer::NotHere,
            Ok(request) => {
                let tenant = match store.session_by_id(&row.session_id).await {
                    Ok(Some(s)) => Some(s.tenant_id),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "routed command: session not read");
                        None
                    }
                };
                match tenant {
                    Some(t) => Answer::Done(self.here(&t, &row.session_id, request).await),
                    None => Answer::Done(Err(SessionError::NotRunning)),
                }
            }
        };
        let body = match serde_json::to_string(&answer) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "routed command answer not encoded");
                return;
            }
        };
        if let Err(e) = store.answer_command(&row.id, &body, clock::now_ms()).await {
            tracing::warn!(command = %row.id, error = %e, "routed command answer not stored");
            return;
        }
        self.bus().publish(Signal::Answered(row.id)).await;
    }
}

fn failed(e: impl std::fmt::Display) -> SessionError {
    SessionError::Failed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_survive_the_table() {
        let requests = [
            Request::Stop,
            Request::Restart,
            Request::Logout,
            Request::Fault(Fault::Disconnect),
            Request::Query(Query::PairingCode("4915112345678".into())),
            Request::Query(Query::React("wamid.1".into(), "👍".into())),
        ];
        for r in requests {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        }
        let answers = [
            Answer::Done(Ok(serde_json::json!({"code": "ABCD-EFGH"}))),
            Answer::Done(Err(SessionError::Later(1_700_000_000_000))),
            Answer::Done(Err(SessionError::Rejected("no such chat".into()))),
            Answer::NotHere,
        ];
        for a in answers {
            let text = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), a);
        }
    }
}

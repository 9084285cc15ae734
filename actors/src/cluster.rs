//! Replicas sharing one database: which process runs which session.
//!
//! Each gateway process is a replica with a row in `replicas` that it heartbeats
//! every third of the lease TTL. A session runs only on the replica holding its
//! lease (`sessions.owner`, until `lease_expires_at`), which that replica renews with
//! its heartbeat. On every tick a replica:
//!
//! 1. heartbeats and renews its leases; a session it runs but no longer holds (its
//!    lease expired and was taken) is stopped here at once;
//! 2. gives up the leases of sessions that no longer want to run;
//! 3. takes free sessions (never held, released, or whose owner stopped
//!    heartbeating past the TTL) up to its fair share: the sessions that want to run
//!    over the live replicas, rounded up, and never past `max_sessions`, so new and
//!    orphaned sessions spread over the least loaded replicas;
//! 4. starts what it took (the saved login and mailbox positions come from the
//!    database, as after a restart).
//!
//! A replica that cannot renew for two thirds of the TTL stops all its sessions
//! before any other may take them (the TTL). A graceful stop hands every session
//! over at once (stopped here, leases released, peers woken). Nothing here is
//! consensus of our own: the database's row locks decide every take.
//!
//! The replica id is stable per data directory (`data_dir/replica.id`), so a
//! restarted process takes its own sessions back at once instead of waiting for
//! their leases to run out. On SQLite there is one process by construction: it
//! takes every session at start.

pub mod bus;
pub mod commands;

use crate::clock;
use crate::sessions::{SessionError, Sessions};
use crate::storage::{Lease, Store, StoreError};
use bus::{Bus, Signal};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How sessions are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSettings {
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Most sessions one replica runs.
    pub max_sessions: usize,
}

#[derive(Debug)]
struct Inner {
    id: String,
    store: Store,
    settings: ClusterSettings,
    /// Leases this replica holds and runs: session id → (tenant id, epoch).
    held: Mutex<HashMap<String, (String, i64)>>,
    wake: Notify,
    bus: Bus,
    /// Told tenants whose sends wait here (see [`Cluster::on_sends_waiting`]).
    on_sends: Mutex<Option<Hook>>,
}

struct Hook(SendsHook);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// What runs for a tenant whose sends wait here (see [`Cluster::on_sends_waiting`]).
pub type SendsHook = Box<dyn Fn(String) + Send + Sync>;

/// This replica's membership (cheap to clone).
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// Where a session was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This replica runs it.
    Here,
    /// Left for a less loaded replica to take on its next tick.
    Left,
    /// Another replica holds it.
    Elsewhere(String),
}

impl Cluster {
    /// Joins as replica `id`: records it, takes back the leases it held before a
    /// restart (bumping their epochs), and on SQLite takes every session.
    pub async fn join(
        store: Store,
        id: String,
        settings: ClusterSettings,
    ) -> Result<Self, StoreError> {
        let now = clock::now_ms();
        store.register_replica(&id, now).await?;
        let bus = Bus::new(store.clone(), id.clone());
        let me = Self {
            inner: Arc::new(Inner {
                id,
                store,
                settings,
                held: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                bus,
                on_sends: Mutex::new(None),
            }),
        };
        let expires = me.expires_at(now);
        let inner = &me.inner;
        let mut taken = inner.store.retake_leases(&inner.id, expires).await?;
        if inner.store.backend() == crate::storage::Backend::Sqlite {
            taken.extend(
                inner
                    .store
                    .claim_sessions(&inner.id, i64::MAX, expires, i64::MAX)
                    .await?,
            );
        } else {
            // Free sessions up to the fair share now, so they are restored with the
            // tree (before the API answers), as on one node.
            let live = inner
                .store
                .live_replicas(now - me.ttl_ms())
                .await?
                .len()
                .max(1);
            let wanting =
                usize::try_from(inner.store.sessions_wanting_to_run().await?).unwrap_or(0);
            let share = wanting.div_ceil(live).min(settings.max_sessions);
            let room = share.saturating_sub(taken.len());
            if room > 0 {
                taken.extend(
                    inner
                        .store
                        .claim_sessions(&inner.id, now, expires, room as i64)
                        .await?,
                );
            }
        }
        for lease in taken {
            if let Some(row) = inner.store.session_by_id(&lease.session_id).await? {
                me.held()
                    .insert(lease.session_id, (row.tenant_id, lease.epoch));
            }
        }
        Ok(me)
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn settings(&self) -> ClusterSettings {
        self.inner.settings
    }

    /// The signals between replicas.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, i64)>> {
        self.inner.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The epoch this replica runs session `id` under, if it does.
    pub fn holds(&self, id: &str) -> Option<i64> {
        self.held().get(id).map(|(_, e)| *e)
    }

    /// What a write for session `id` from this replica's session tree is fenced by.
    pub fn fence(&self, id: &str) -> crate::storage::Fence {
        crate::storage::Fence {
            replica: self.inner.id.clone(),
            epoch: self.holds(id).unwrap_or(-1),
            now: clock::now_ms(),
        }
    }

    /// How many sessions this replica holds.
    pub fn load(&self) -> usize {
        self.held().len()
    }

    fn expires_at(&self, now: i64) -> i64 {
        now + i64::try_from(self.inner.settings.lease_ttl.as_millis()).unwrap_or(i64::MAX / 2)
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.inner.settings.lease_ttl.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// Calls `hook` with the tenant of every session taken over from another replica,
    /// and of sends queued (through any replica) on sessions held here, every tick.
    pub fn on_sends_waiting(&self, hook: SendsHook) {
        *self
            .inner
            .on_sends
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Hook(hook));
    }

    fn sends_waiting(&self, tenant: String) {
        let hook = self
            .inner
            .on_sends
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(hook) = hook.as_ref() {
            (hook.0)(tenant);
        }
    }

    /// Runs the next tick now (a session was started or stopped).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Places a session that is to run (its row wants to): here when this replica
    /// is among the least loaded (or holds it already), else left for the others.
    pub async fn place(&self, session_id: &str) -> Result<Placement, StoreError> {
        let store = &self.inner.store;
        let now = clock::now_ms();
        if self.holds(session_id).is_some() {
            return Ok(Placement::Here);
        }
        if let Some((owner, _)) = store.session_owner(session_id, now).await?
            && owner != self.inner.id
        {
            return Ok(Placement::Elsewhere(owner));
        }
        let mine = self.load();
        if mine >= self.inner.settings.max_sessions || !self.least_loaded(now, mine).await? {
            self.wake();
            return Ok(Placement::Left);
        }
        match store
            .take_session(session_id, &self.inner.id, now, self.expires_at(now))
            .await?
        {
            Some(lease) => {
                let tenant = store
                    .session_by_id(session_id)
                    .await?
                    .map(|r| r.tenant_id)
                    .unwrap_or_default();
                self.held().insert(lease.session_id, (tenant, lease.epoch));
                Ok(Placement::Here)
            }
            None => Ok(store
                .session_owner(session_id, now)
                .await?
                .map_or(Placement::Left, |(o, _)| Placement::Elsewhere(o))),
        }
    }

    /// Whether no live replica holds fewer sessions than `mine`.
    async fn least_loaded(&self, now: i64, mine: usize) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let live = store.live_replicas(now - self.ttl_ms()).await?;
        let mut counts: HashMap<String, usize> = live.iter().map(|r| (r.id.clone(), 0)).collect();
        for (owner, _) in store.live_leases(now).await? {
            if let Some(n) = counts.get_mut(&owner) {
                *n += 1;
            }
        }
        counts.remove(&self.inner.id);
        Ok(counts.values().all(|n| *n >= mine))
    }

    /// Forgets session `id` here (stopped by the API: its lease is released).
    pub async fn forget(&self, id: &str) -> Result<(), StoreError> {
        let held = self.held().remove(id);
        if let Some((_, epoch)) = held {
            self.inner
                .store
                .release_lease(id, &self.inner.id, epoch)
                .await?;
        }
        Ok(())
    }

    /// Heartbeats, renews, hands back and takes leases every third of the TTL (or
    /// when woken) until `cancel`; then hands every session over.
    pub fn spawn(
        &self,
        sessions: Sessions,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let listening = self.inner.bus.spawn(cancel.clone());
        let mut signals = self.inner.bus.subscribe();
        tokio::spawn(async move {
            let every = me.inner.settings.lease_ttl / 3;
            let mut last_renewed = clock::now_ms();
            loop {
                match me.tick(&sessions).await {
                    Ok(()) => last_renewed = clock::now_ms(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster tick failed");
                        // Not renewed for two thirds of the TTL: others may take our
                        // sessions soon; stop them first.
                        if clock::now_ms() - last_renewed > me.ttl_ms() * 2 / 3 {
                            me.fence_all(&sessions).await;
                        }
                    }
                }
                let deadline = tokio::time::Instant::now() + every;
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => {
                            if let Some(l) = listening {
                                l.abort();
                            }
                            return;
                        }
                        () = me.inner.wake.notified() => break,
                        () = tokio::time::sleep_until(deadline) => break,
                        signal = signals.recv() => match signal {
                            // Sessions freed somewhere (or signals missed): look now.
                            Ok(Signal::Leases | Signal::Resync)
                            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            Ok(Signal::Sends(replica, tenant)) if replica == me.inner.id => {
                                me.sends_waiting(tenant);
                            }
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                tokio::time::sleep_until(deadline).await;
                                break;
                            }
                        },
                    }
                }
            }
        })
    }

    async fn tick(&self, sessions: &Sessions) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let me = &self.inner.id;
        let now = clock::now_ms();
        if !store.heartbeat_replica(me, now).await? {
            // Declared dead while alive (a long pause): join again.
            store.register_replica(me, now).await?;
        }
        // Stopped through another replica (or given up): stop here, keeping a final
        // status (FAILED, LOGGED_OUT) as it is.
        for (id, status) in store.release_unwanted_leases(me).await? {
            let Some((tenant, _)) = self.held().remove(&id) else {
                continue;
            };
            let done = matches!(
                status.as_str(),
                crate::sessions::status::FAILED | crate::sessions::status::LOGGED_OUT
            );
            let stopped = if done {
                sessions.release(&tenant, &id).await
            } else {
                sessions.stop(&tenant, &id).await
            };
            if let Err(e) = stopped {
                tracing::warn!(session_id = %id, error = %e, "could not stop a session no longer wanted");
            }
        }
        // What was held before renewing: a session taken meanwhile (an API start)
        // is not in the renewal's answer, and is not lost.
        let before: HashMap<String, (String, i64)> = self.held().clone();
        let renewed: HashMap<String, i64> = store
            .renew_leases(me, self.expires_at(now))
            .await?
            .into_iter()
            .map(|l| (l.session_id, l.epoch))
            .collect();
        // Run here but held no more (expired and taken, or deleted): stop here.
        let lost: Vec<(String, String, i64)> = before
            .into_iter()
            .filter(|(id, (_, epoch))| renewed.get(id) != Some(epoch))
            .map(|(id, (tenant, epoch))| (id, tenant, epoch))
            .collect();
        let mut stopping = Vec::new();
        for (id, tenant, epoch) in lost {
            let mut held = self.held();
            // Taken again meanwhile (a new epoch): that one stands.
            if held.get(&id).is_some_and(|(_, e)| *e != epoch) {
                continue;
            }
            held.remove(&id);
            stopping.push((id, tenant));
        }
        // All at once: a slow browser session must not hold up the next renewal.
        let stopped = futures::future::join_all(
            stopping
                .iter()
                .map(|(id, tenant)| sessions.release(tenant, id)),
        )
        .await;
        for ((id, _), r) in stopping.iter().zip(stopped) {
            if let Err(e) = r {
                tracing::warn!(session_id = %id, error = %e, "could not stop a session whose lease went");
            }
        }
        // Sends queued through other replicas for sessions here: wake their senders.
        for tenant in store.tenants_with_sends_held_by(me).await? {
            self.sends_waiting(tenant);
        }
        // Take free sessions up to the fair share.
        let live = store.live_replicas(now - self.ttl_ms()).await?.len().max(1);
        let wanting = usize::try_from(store.sessions_wanting_to_run().await?).unwrap_or(0);
        let share = wanting.div_ceil(live).min(self.inner.settings.max_sessions);
        let room = share.saturating_sub(self.load());
        if room == 0 {
            return Ok(());
        }
        let taken = store
            .claim_sessions(me, now, self.expires_at(now), room as i64)
            .await?;
        for lease in taken {
            self.start_taken(sessions, lease).await?;
        }
        Ok(())
    }

    async fn start_taken(&self, sessions: &Sessions, lease: Lease) -> Result<(), StoreError> {
        let Some(row) = self.inner.store.session_by_id(&lease.session_id).await? else {
            return Ok(());
        };
        tracing::info!(session_id = %row.id, epoch = lease.epoch, "session taken over");
        let requeued = self.inner.store.requeue_sending_of_session(&row.id).await?;
        if requeued > 0 {
            tracing::info!(session_id = %row.id, messages = requeued, "sends in flight on the previous owner queued again");
        }
        self.held()
            .insert(row.id.clone(), (row.tenant_id.clone(), lease.epoch));
        let (id, tenant) = (row.id.clone(), row.tenant_id.clone());
        self.sends_waiting(tenant);
        if let Err(e) = sessions.start(row).await {
            tracing::warn!(session_id = %id, error = %e, "a session taken over did not start");
        }
        Ok(())
    }

    /// Stops every session here (its leases may be gone).
    async fn fence_all(&self, sessions: &Sessions) {
        let all: Vec<(String, String)> = self
            .held()
            .drain()
            .map(|(id, (tenant, _))| (id, tenant))
            .collect();
        if !all.is_empty() {
            tracing::error!(
                sessions = all.len(),
                "leases not renewed in time; stopping this replica's sessions"
            );
        }
        futures::future::join_all(all.iter().map(|(id, tenant)| sessions.release(tenant, id)))
            .await;
    }

    /// A graceful stop: every session stopped here, its lease released and the
    /// replica forgotten, so the others take them on their next tick.
    pub async fn leave(&self, sessions: &Sessions) -> Result<(), SessionError> {
        let all: Vec<(String, (String, i64))> = self.held().drain().collect();
        // No longer held, so each session saves its login on the way out (a browser
        // profile) for the next owner; all close at once, then their leases go.
        futures::future::join_all(
            all.iter()
                .map(|(id, (tenant, _))| sessions.release(tenant, id)),
        )
        .await;
        for (id, (_, epoch)) in all {
            if let Err(e) = self
                .inner
                .store
                .release_lease(&id, &self.inner.id, epoch)
                .await
            {
                tracing::warn!(session_id = %id, error = %e, "lease not released; it runs out instead");
            }
        }
        let now = clock::now_ms();
        let left = self
            .inner
            .store
            .remove_replicas(&self.inner.id, now - 10 * self.ttl_ms())
            .await
            .map_err(|e| SessionError::Failed(e.to_string()));
        self.inner.bus.publish(Signal::Leases).await;
        left
    }
}

//! The event pipeline's front door: [`Events::publish`] is what channels (and the
//! gateway, for test and operational events) call to turn something that happened
//! into a durable event.
//!
//! `publish` builds the envelope `{"id","type","tenant_id","session_id","channel",
//! "created_at","data"}`, seals it under the master key (bound to the tenant and
//! event id), and hands it to a writer task that commits whatever has queued up in
//! one transaction (group commit): the event rows and one outbox row per matching
//! endpoint. `publish` returns only after that commit, so an acknowledged event is
//! never lost; then the dispatcher is handed the new outbox rows with their events
//! when it keeps its claims in memory ([`crate::webhooks::handoff`]), else woken to
//! claim them.
//!
//! Under load the writer lingers: when the last round held at least [`LOADED`]
//! events and the next finds fewer than [`FULL_ENOUGH`] waiting, it waits up to
//! [`LINGER`] for more before committing (as Postgres' `commit_delay` does). Fewer,
//! larger commits cost less CPU per event and keep the latency tail short; a
//! lone event on a quiet gateway never waits.
//!
//! Failure: if the commit fails, every producer in that batch gets the error and
//! may retry; nothing was written.
//!
//! A producer that must keep its events in order without waiting for each commit
//! (a session's inbound messages) uses a [`Sequence`]: several of its events in
//! flight, committed in the order given. The writer keeps that order because it
//! takes requests in order and, once a batch holding one of a sequence's events
//! fails, refuses the sequence's later events until the sequence has seen the
//! failure and submits again from the failed one: what is committed is always a
//! prefix of what was given.

use crate::clock;
use crate::storage::{EventRow, NewEvent, Store, Targets};
use crate::webhooks::handoff::Handoff;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard_crypto::{Binding, Keyring};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

mod sequence;
pub use sequence::Sequence;

/// Prefix of event ids.
pub const EVENT_ID_PREFIX: &str = "evt";
/// Purpose bound into sealed event bodies.
pub const BODY_PURPOSE: &str = "event.body";
/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;
/// A round at least this big means the gateway is under load.
pub(crate) const LOADED: usize = 8;
/// A round that finds this many waiting commits at once.
pub(crate) const FULL_ENOUGH: usize = 64;
/// How long a round under load waits for more events. Measured with the bench's
/// `pipeline --rate 8000 --sessions 4` on SQLite, alternating builds: 3 ms took
/// gateway CPU per event from 133-136 to 114-133 µs and p99.9 from 33-344 to 28-43
/// ms; 6 and 10 ms were no better on CPU and raised p50.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(3);
/// Why a sequence's event was refused.
const OUT_OF_TURN: &str = "an earlier event of its sequence was not stored";

/// What a producer reports.
#[derive(Debug, Clone)]
pub struct Publish {
    pub tenant_id: String,
    pub session_id: Option<String>,
    pub channel: Option<String>,
    pub event_type: String,
    pub data: serde_json::Value,
    pub targets: Targets,
    /// A message row change to commit with the event.
    pub message: Option<crate::storage::MessageWrite>,
    /// The RAG actor answers this event (an inbound message): a job for it is
    /// committed with the event when its session's replies are on.
    pub feeds_rag: bool,
    /// Suppression entries committed with the event; when none of them is new (the
    /// contact was on the list already) the event is not stored.
    pub suppress: Vec<crate::storage::SuppressionRow>,
}

impl Publish {
    /// An event for every subscribed endpoint of the tenant.
    pub fn new(
        tenant_id: impl Into<String>,
        event_type: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            session_id: None,
            channel: None,
            event_type: event_type.into(),
            data,
            targets: Targets::Subscribers,
            message: None,
            feeds_rag: false,
            suppress: Vec::new(),
        }
    }
}

/// The committed event. An event whose message write did not apply (a send not
/// queued, an ack the message was already past) is not stored: its `deliveries` is
/// 0 and, for a send, `enqueued` says why.
#[derive(Debug, Clone)]
pub struct Published {
    pub id: String,
    pub created_at: i64,
    /// Deliveries queued for it.
    pub deliveries: usize,
    /// For an event carrying a send: whether the send was queued. If it was not,
    /// the event was not stored either.
    pub enqueued: Option<crate::storage::Enqueued>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("could not encrypt the event: {0}")]
    Seal(#[from] switchboard_crypto::Error),
    #[error("could not store the event: {0}")]
    Store(String),
    #[error("the event writer has stopped")]
    Closed,
    /// Its [`Targets::Only`] endpoint is not one of the tenant's (nothing was
    /// stored).
    #[error("no such webhook endpoint")]
    UnknownTarget,
}

/// What the writer's result for event `id` means to its publisher.
pub(crate) fn published(
    id: String,
    created_at: i64,
    result: Result<crate::storage::EventResult, String>,
) -> Result<Published, PublishError> {
    let result = result.map_err(PublishError::Store)?;
    if result.unknown_target {
        return Err(PublishError::UnknownTarget);
    }
    Ok(Published {
        id,
        created_at,
        deliveries: result.deliveries,
        enqueued: result.enqueued,
    })
}

/// The envelope every webhook receives (and the bytes that are signed).
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub tenant_id: &'a str,
    pub session_id: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub created_at: String,
    pub data: &'a serde_json::Value,
}

/// The binding of an event body's ciphertext.
pub fn body_binding<'a>(tenant_id: &'a str, event_id: &'a str) -> Binding<'a> {
    Binding {
        tenant_id,
        record_id: event_id,
        purpose: BODY_PURPOSE,
    }
}

struct Request {
    event: NewEvent,
    ack: oneshot::Sender<Result<crate::storage::EventResult, String>>,
    /// The sequence this event belongs to: set when one of its events failed, and
    /// until then its later events are refused (see [`Sequence`]).
    broken: Option<Arc<AtomicBool>>,
}

/// An event handed to the writer, resolved when its batch commits.
pub(crate) struct Pending {
    id: String,
    created_at: i64,
    done: oneshot::Receiver<Result<crate::storage::EventResult, String>>,
}

impl Pending {
    /// Waits for the commit.
    pub(crate) async fn committed(self) -> Result<Published, PublishError> {
        let result = self.done.await.map_err(|_| PublishError::Closed)?;
        published(self.id, self.created_at, result)
    }
}

/// Handle for publishing events; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Request>,
    keyring: Arc<Keyring>,
    /// Counts commits; readers that follow events live (SSE) wait on it.
    commits: watch::Receiver<u64>,
    /// Counts commits that queued RAG jobs (the RAG feed waits on it).
    rag_commits: watch::Receiver<u64>,
    /// Committed outbox rows, for a dispatcher that takes them directly.
    handoff: Arc<Handoff>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Starts the writer task. `committed` is notified after every commit that
    /// queued deliveries (the dispatcher waits on it). The task ends when `cancel` fires or every handle is
    /// dropped, after committing what it already received.
    pub fn spawn(
        store: Store,
        keyring: Arc<Keyring>,
        committed: Arc<Notify>,
        cancel: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(8 * MAX_BATCH);
        let (commits_tx, commits) = watch::channel(0);
        let (rag_tx, rag_commits) = watch::channel(0);
        let handoff = Arc::new(Handoff::default());
        let signals = Signals {
            deliveries: committed,
            handoff: handoff.clone(),
            commits: commits_tx,
            rag_jobs: rag_tx,
        };
        let task = tokio::spawn(writer(store, rx, signals, cancel));
        (
            Self {
                tx,
                keyring,
                commits,
                rag_commits,
                handoff,
            },
            task,
        )
    }

    /// A receiver that changes after every commit.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Where the writer offers the outbox rows it commits (see [`Handoff`]).
    pub fn handoff(&self) -> Arc<Handoff> {
        self.handoff.clone()
    }

    /// A receiver that changes after every commit that queued RAG jobs.
    pub fn rag_commits(&self) -> watch::Receiver<u64> {
        self.rag_commits.clone()
    }

    /// Stores the event durably, then returns its id.
    pub async fn publish(&self, p: Publish) -> Result<Published, PublishError> {
        self.submit(p, None).await?.committed().await
    }

    /// Seals the event and hands it to the writer (waiting only for room in its
    /// queue); the result resolves at the commit.
    pub(crate) async fn submit(
        &self,
        p: Publish,
        broken: Option<Arc<AtomicBool>>,
    ) -> Result<Pending, PublishError> {
        let id = crate::ids::new_id(EVENT_ID_PREFIX);
        let created_at = clock::now_ms();
        let envelope = Envelope {
            id: &id,
            event_type: &p.event_type,
            tenant_id: &p.tenant_id,
            session_id: p.session_id.as_deref(),
            channel: p.channel.as_deref(),
            created_at: clock::rfc3339(created_at),
            data: &p.data,
        };
        let json = serde_json::to_vec(&envelope).map_err(|e| PublishError::Store(e.to_string()))?;
        let body = self.keyring.seal(&json, body_binding(&p.tenant_id, &id))?;
        let event = NewEvent {
            id: id.clone(),
            tenant_id: p.tenant_id,
            session_id: p.session_id,
            channel: p.channel,
            event_type: p.event_type,
            body,
            created_at,
            targets: p.targets,
            message: p.message,
            feeds_rag: p.feeds_rag,
            suppress: p.suppress,
        };
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Request { event, ack, broken })
            .await
            .map_err(|_| PublishError::Closed)?;
        Ok(Pending {
            id,
            created_at,
            done,
        })
    }
}

/// Who the writer tells about a commit.
struct Signals {
    /// The dispatcher, when the commit queued deliveries it did not hand off.
    deliveries: Arc<Notify>,
    /// The dispatcher, with the rows themselves, when it takes them.
    handoff: Arc<Handoff>,
    /// Every commit.
    commits: watch::Sender<u64>,
    /// The RAG feed, when the commit queued RAG jobs.
    rag_jobs: watch::Sender<u64>,
}

/// Hands a commit's outbox rows, held before it, with their events to the
/// dispatcher.
fn hand_off(handoff: &Handoff, queued: Vec<crate::storage::Claimed>, events: &[NewEvent]) {
    let by_id: HashMap<&str, &NewEvent> = events.iter().map(|e| (e.id.as_str(), e)).collect();
    handoff.offer(queued, |id| {
        by_id.get(id).map(|e| EventRow {
            id: e.id.clone(),
            tenant_id: e.tenant_id.clone(),
            session_id: e.session_id.clone(),
            channel: e.channel.clone(),
            event_type: e.event_type.clone(),
            body_key_id: e.body.key_id.clone(),
            body: e.body.data.clone(),
            created_at: e.created_at,
        })
    })
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Request>,
    signals: Signals,
    cancel: CancellationToken,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut last_round = 0;
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => n,
            () = cancel.cancelled() => {
                rx.close();
                rx.recv_many(&mut batch, MAX_BATCH).await
            }
        };
        if n == 0 {
            break;
        }
        if last_round >= LOADED && n < FULL_ENOUGH && !cancel.is_cancelled() {
            tokio::time::sleep(LINGER).await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }
        last_round = batch.len();
        let mut events = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        let mut sequences = Vec::new();
        for r in batch.drain(..) {
            if let Some(broken) = r.broken {
                if broken.load(Ordering::Acquire) {
                    // An earlier event of its sequence failed: this one must not
                    // overtake it.
                    let _ = r.ack.send(Err(OUT_OF_TURN.into()));
                    continue;
                }
                sequences.push(broken);
            }
            events.push(r.event);
            acks.push(r.ack);
        }
        if events.is_empty() {
            continue;
        }
        // Rows held for the dispatcher before their commit (see `Handoff::hold`).
        let mut held: Vec<i64> = Vec::new();
        let stored = store
            .insert_events(&events, |queued| {
                if signals.handoff.hold(queued) {
                    held = queued.iter().map(|r| r.id).collect();
                }
            })
            .await;
        match stored {
            Ok(inserted) => {
                metrics::counter!("switchboard_events_committed_total")
                    .increment(events.len() as u64);
                let counts = inserted.results;
                let rag_jobs = counts.iter().any(|c| c.rag_job);
                for (ack, count) in acks.into_iter().zip(counts) {
                    let _ = ack.send(Ok(count));
                }
                if !held.is_empty() {
                    hand_off(&signals.handoff, inserted.queued, &events);
                } else if !inserted.queued.is_empty() {
                    signals.deliveries.notify_one();
                }
                if rag_jobs {
                    signals.rag_jobs.send_modify(|n| *n += 1);
                }
                signals.commits.send_modify(|n| *n += 1);
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "event batch not stored; producers will retry");
                signals.handoff.release(held);
                // Before the next batch is taken: later events of these sequences
                // are refused until each has submitted again.
                for broken in sequences {
                    broken.store(true, Ordering::Release);
                }
                for ack in acks {
                    let _ = ack.send(Err(e.to_string()));
                }
            }
        }
    }
    tracing::debug!("event writer stopped");
}

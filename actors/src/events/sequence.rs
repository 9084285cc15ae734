//! [`Sequence`]: one producer's events, committed in the order given with several
//! in flight, so a producer's rate is not bounded by the commit latency.
//!
//! A task owns the sequence: it seals and submits each event to the writer as soon
//! as it is given (up to [`WINDOW`] uncommitted), and watches the commits in order.
//! When one fails, the writer has refused every later event of the sequence (see
//! the module docs of [`crate::events`]), so the task waits for the answers of what
//! is in flight, then submits the whole tail again from the failed event, after a
//! backoff: events are retried until stored, never dropped, never reordered.
//!
//! The task ends once every handle is dropped and what was given is committed (or
//! the writer has stopped).

use super::{Events, Pending, Publish, PublishError, Published};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most events of one sequence handed to the writer and not yet committed.
pub const WINDOW: usize = 64;

enum Item {
    Event {
        event: Box<Publish>,
        /// Told the result once the event is committed.
        reply: Option<oneshot::Sender<Published>>,
    },
    /// Answered once everything given before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Handle to a sequence; cheap to clone. Dropping the last one lets the task
/// finish what it was given and end.
#[derive(Clone)]
pub struct Sequence {
    tx: mpsc::Sender<Item>,
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence").finish_non_exhaustive()
    }
}

impl Sequence {
    /// Starts a sequence's task on `events`.
    pub fn spawn(events: Events) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(WINDOW);
        let task = tokio::spawn(run(events, rx));
        (Self { tx }, task)
    }

    /// Queues an event after the ones given before it; returns once it is taken
    /// (waits while the sequence has a full window), not when it is committed.
    pub async fn push(&self, event: Publish) -> Result<(), PublishError> {
        self.tx
            .send(Item::Event {
                event: Box::new(event),
                reply: None,
            })
            .await
            .map_err(|_| PublishError::Closed)
    }

    /// Queues an event and waits until it (and so everything before it) is committed.
    pub async fn publish(&self, event: Publish) -> Result<Published, PublishError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Item::Event {
                event: Box::new(event),
                reply: Some(reply),
            })
            .await
            .map_err(|_| PublishError::Closed)?;
        done.await.map_err(|_| PublishError::Closed)
    }

    /// Waits until everything given so far is committed (before reading what it wrote).
    pub async fn flush(&self) -> Result<(), PublishError> {
        let (tx, done) = oneshot::channel();
        self.tx
            .send(Item::Flush(tx))
            .await
            .map_err(|_| PublishError::Closed)?;
        done.await.map_err(|_| PublishError::Closed)
    }
}

/// An item given to the writer (events) or waiting its turn (flushes).
struct InFlight {
    item: Item,
    pending: Option<Pending>,
}

async fn run(events: Events, mut rx: mpsc::Receiver<Item>) {
    let broken = Arc::new(AtomicBool::new(false));
    let mut flight: VecDeque<InFlight> = VecDeque::with_capacity(WINDOW);
    let mut open = true;
    let mut backoff = Duration::from_millis(50);
    loop {
        // Flushes at the front have everything before them committed.
        while flight.front().is_some_and(|f| f.pending.is_none()) {
            if let Some(InFlight {
                item: Item::Flush(tx),
                ..
            }) = flight.pop_front()
            {
                let _ = tx.send(());
            }
        }
        if flight.is_empty() && !open {
            return;
        }
        let room = open && flight.len() < WINDOW;
        tokio::select! {
            biased;
            item = rx.recv(), if room => match item {
                Some(item) => match submit(&events, item, &broken).await {
                    Ok(f) => flight.push_back(f),
                    Err(()) => return,
                },
                None => open = false,
            },
            result = committed(&mut flight) => match result {
                Ok(published) => {
                    backoff = Duration::from_millis(50);
                    if let Some(InFlight { item: Item::Event { reply: Some(reply), .. }, .. }) = flight.pop_front() {
                        let _ = reply.send(published);
                    }
                }
                Err(PublishError::Closed) => {
                    tracing::warn!(left = flight.len(), "the event writer stopped; a sequence's last events are not stored");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, in_flight = flight.len(), "a sequence's event not stored yet; retrying it and the ones after it");
                    // Everything after it was refused or failed with it: collect it all.
                    let mut tail = Vec::with_capacity(flight.len());
                    if let Some(failed) = flight.pop_front() {
                        tail.push(failed.item);
                    }
                    while let Some(f) = flight.pop_front() {
                        if let Some(p) = f.pending
                            && p.committed().await.is_ok()
                        {
                            // Cannot happen (the writer refuses what follows a
                            // failure), but an event that did commit is done.
                            tracing::error!("a sequence's event committed after one before it failed");
                            continue;
                        }
                        tail.push(f.item);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    broken.store(false, Ordering::Release);
                    for item in tail {
                        match submit(&events, item, &broken).await {
                            Ok(f) => flight.push_back(f),
                            Err(()) => return,
                        }
                    }
                }
            },
        }
    }
}

/// Waits for the front event's commit (never resolves with nothing in flight).
async fn committed(flight: &mut VecDeque<InFlight>) -> Result<Published, PublishError> {
    match flight.front_mut().and_then(|f| f.pending.as_mut()) {
        Some(p) => (&mut p.done)
            .await
            .map_err(|_| PublishError::Closed)
            .and_then(|r| super::published(p.id.clone(), p.created_at, r)),
        None => std::future::pending().await,
    }
}

/// Hands an item's event to the writer. `Err` only when the writer has stopped.
async fn submit(events: &Events, item: Item, broken: &Arc<AtomicBool>) -> Result<InFlight, ()> {
    let event = match &item {
        Item::Event { event, .. } => (**event).clone(),
        Item::Flush(_) => {
            return Ok(InFlight {
                item,
                pending: None,
            });
        }
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        match events.submit(event.clone(), Some(broken.clone())).await {
            Ok(pending) => {
                return Ok(InFlight {
                    item,
                    pending: Some(pending),
                });
            }
            Err(PublishError::Closed) => return Err(()),
            Err(e) => {
                // Sealing failed: nothing was handed over; try again later.
                tracing::warn!(error = %e, "a sequence's event could not be prepared; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

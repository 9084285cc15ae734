//! Rows a commit queued, handed by the event writer straight to the dispatcher.
//!
//! Where the dispatcher keeps its claims in memory (one process owns the database),
//! the writer knows everything a claim would read back a moment after its commit:
//! the new outbox rows and their sealed events. It hands them over here instead,
//! and the dispatcher starts their deliveries without a claim or a read of the
//! events.
//!
//! Exactly one of the two paths takes a row: the writer [`Handoff::hold`]s the rows
//! after inserting them and before the commit makes them visible, so a claim,
//! which only sees committed rows and keeps only rows it newly holds, passes over
//! them. A row the dispatcher cannot start (a FIFO endpoint, one at its cap, no
//! room in flight) is let go and left to the next claim, which finds it as it
//! would have without the handoff.
//!
//! The handoff is bounded ([`MAX_ROWS`]); past that the writer holds nothing and
//! wakes the claim instead, so a stalled dispatcher never has more in memory.

use crate::storage::{Claimed, EventRow};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Most rows waiting in the handoff.
pub const MAX_ROWS: usize = 4096;

/// Outbox rows held in memory: taken by a claim or the writer, let go once their
/// result is committed (or they are given back).
#[derive(Debug, Default)]
pub struct Held(Mutex<HashSet<i64>>);

impl Held {
    pub fn ids(&self) -> Vec<i64> {
        self.lock().iter().copied().collect()
    }

    /// Holds the rows no one holds yet, and returns those.
    pub fn take_new(&self, rows: Vec<Claimed>) -> Vec<Claimed> {
        let mut held = self.lock();
        rows.into_iter().filter(|r| held.insert(r.id)).collect()
    }

    pub fn let_go(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.lock();
        for id in ids {
            held.remove(&id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Committed rows with their events, in commit order.
#[derive(Debug, Default)]
pub struct Fresh {
    pub rows: Vec<Claimed>,
    pub events: HashMap<String, Arc<EventRow>>,
}

/// Shared by the event writer (holds and offers) and the dispatcher (takes).
/// Closed until a dispatcher that keeps its claims in memory opens it.
#[derive(Debug, Default)]
pub struct Handoff {
    open: AtomicBool,
    held: Arc<Held>,
    waiting: Mutex<Fresh>,
    ready: Notify,
    /// Rows taken by the dispatcher so far.
    taken: AtomicU64,
}

impl Handoff {
    /// Called by a dispatcher that holds its claims in memory.
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// The rows held in memory, by claims and by the handoff.
    pub fn held(&self) -> Arc<Held> {
        self.held.clone()
    }

    /// Before the commit of new rows: holds them for the handoff so no claim takes
    /// them. `false` (nothing held) when closed or full; the caller then wakes the
    /// claim after the commit instead.
    pub fn hold(&self, rows: &[Claimed]) -> bool {
        if rows.is_empty() || !self.open.load(Ordering::Acquire) {
            return false;
        }
        if self.lock().rows.len() + rows.len() > MAX_ROWS {
            return false;
        }
        let mut held = self.held.lock();
        held.extend(rows.iter().map(|r| r.id));
        true
    }

    /// The commit of rows it held failed: they do not exist (and their ids may be
    /// used again).
    pub fn release(&self, ids: impl IntoIterator<Item = i64>) {
        self.held.let_go(ids);
    }

    /// After the commit: hands over the rows [`Handoff::hold`] took. `event` gives
    /// the event of a row's `event_id`.
    pub fn offer(&self, rows: Vec<Claimed>, mut event: impl FnMut(&str) -> Option<EventRow>) {
        {
            let mut waiting = self.lock();
            for row in &rows {
                if !waiting.events.contains_key(&row.event_id)
                    && let Some(e) = event(&row.event_id)
                {
                    waiting.events.insert(row.event_id.clone(), Arc::new(e));
                }
            }
            waiting.rows.extend(rows);
        }
        self.ready.notify_one();
    }

    /// Everything offered so far (empty if nothing). The rows stay held.
    pub fn take(&self) -> Fresh {
        let fresh = std::mem::take(&mut *self.lock());
        self.taken
            .fetch_add(fresh.rows.len() as u64, Ordering::Relaxed);
        fresh
    }

    /// How many rows the dispatcher has taken from the handoff.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Resolves when an offer may be waiting.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fresh> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, event: &str) -> Claimed {
        Claimed {
            id,
            tenant_id: "ten_1".into(),
            event_id: event.into(),
            endpoint_id: "whk_1".into(),
            attempts: 0,
        }
    }

    fn event(id: &str) -> Option<EventRow> {
        Some(EventRow {
            id: id.into(),
            tenant_id: "ten_1".into(),
            session_id: None,
            channel: None,
            event_type: "message.received".into(),
            body_key_id: "k".into(),
            body: vec![1, 2, 3],
            created_at: 0,
        })
    }

    #[test]
    fn closed_until_a_dispatcher_opens_it() {
        let h = Handoff::default();
        assert!(!h.hold(&[row(1, "evt_1")]));
        assert!(h.held().ids().is_empty());
        h.open();
        let first = vec![row(1, "evt_1"), row(2, "evt_1")];
        assert!(h.hold(&first));
        h.offer(first, event);
        let second = vec![row(3, "evt_2")];
        assert!(h.hold(&second));
        h.offer(second, event);
        let fresh = h.take();
        let ids: Vec<i64> = fresh.rows.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2, 3], "in commit order");
        assert_eq!(fresh.events.len(), 2, "one copy of each event");
        assert!(h.take().rows.is_empty(), "taken once");
        let mut held = h.held().ids();
        held.sort_unstable();
        assert_eq!(held, [1, 2, 3], "still held until their results commit");
    }

    #[test]
    fn a_claim_passes_over_rows_held_for_the_handoff() {
        let h = Handoff::default();
        h.open();
        assert!(h.hold(&[row(1, "evt_1"), row(2, "evt_2")]));
        // A claim that read rows 1-3 after the commit keeps only row 3.
        let claimed = h
            .held()
            .take_new(vec![row(1, "evt_1"), row(2, "evt_2"), row(3, "evt_3")]);
        let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
        assert_eq!(ids, [3]);
        // And a failed commit's rows are free again (their ids may come back).
        h.release([1, 2]);
        assert_eq!(h.held().take_new(vec![row(1, "evt_9")]).len(), 1);
    }

    #[test]
    fn holds_nothing_past_its_bound() {
        let h = Handoff::default();
        h.open();
        let many: Vec<Claimed> = (0..MAX_ROWS as i64).map(|i| row(i, "evt_1")).collect();
        assert!(h.hold(&many));
        h.offer(many, event);
        assert!(!h.hold(&[row(-1, "evt_2")]), "full: left to the claim");
        assert!(!h.held().ids().contains(&-1));
        assert_eq!(h.take().rows.len(), MAX_ROWS);
        assert!(h.hold(&[row(-1, "evt_2")]), "room again once taken");
    }
}

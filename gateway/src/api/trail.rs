//! The record of API calls: one audit entry per authenticated call (tenant keys and
//! the admin token), refused ones included, read back through `GET /v1/audit`.
//!
//! An entry says who (`actor`: the key id, or `admin`), what (`action`: the method
//! and route template, e.g. `POST /v1/sessions/{id}/messages`), which `target` (the
//! route's first path parameter; a contact's address only as its hash), how it
//! ended (`details.status`, and `details.error` with the error code) and the request
//! id. Changes also write their own entry inside their transaction (`session.create`,
//! `suppression.delete`, …); this one is about the call.
//!
//! Calls are queued to one writer task that appends them in batches (one
//! transaction per batch), so a request waits for no commit of its own; the queue is
//! bounded, and a full queue holds requests back rather than dropping entries. On
//! shutdown the writer drains the queue after HTTP has stopped. A process killed
//! outright loses at most the batch being collected (tens of milliseconds); the
//! entries of changes are transactional and never lost.

use super::routes::{Access, Route};
use std::time::Duration;
use switchboard_actors::Store;
use switchboard_actors::contacts;
use switchboard_actors::storage::AuditEntry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Most entries appended in one transaction.
const BATCH: usize = 256;
/// Entries waiting for the writer before requests wait for it.
const QUEUE: usize = 16_384;

/// Where handlers hand their call's entry.
#[derive(Debug, Clone)]
pub struct Trail {
    queue: mpsc::Sender<AuditEntry>,
}

/// How a call ended, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: u16,
    pub error: Option<&'static str>,
}

/// Who made a call.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    Admin,
    Key { key_id: &'a str, tenant_id: &'a str },
}

impl Trail {
    /// Starts the writer; it stops, having written everything queued, once `stop`
    /// fires (after HTTP has drained).
    pub fn spawn(store: Store, stop: CancellationToken) -> (Trail, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write(store, rx, stop));
        (Trail { queue: tx }, task)
    }

    /// Records one call of `route` with path `params`.
    pub async fn record(
        &self,
        route: &Route,
        params: &[String],
        who: Who<'_>,
        request_id: &str,
        outcome: Outcome,
    ) {
        let (actor, tenant_id) = match who {
            Who::Admin => ("admin", None),
            Who::Key { key_id, tenant_id } => (key_id, Some(tenant_id.to_owned())),
        };
        let mut entry = AuditEntry::new(actor, format!("{} {}", route.method, route.path))
            .request_id(Some(request_id.to_owned()));
        entry.tenant_id = tenant_id;
        entry.target = target(route, params);
        entry.details = match outcome.error {
            Some(code) => serde_json::json!({ "status": outcome.status, "error": code }),
            None => serde_json::json!({ "status": outcome.status }),
        };
        if self.queue.send(entry).await.is_err() {
            tracing::error!(
                route = route.path,
                "the audit writer has stopped; a call went unrecorded"
            );
        }
    }
}

/// What a call was about: the route's first path parameter, a contact's address
/// hashed (the log must not keep what an erasure removes).
fn target(route: &Route, params: &[String]) -> Option<String> {
    let first = params.first()?;
    if route.path.starts_with("/v1/contacts/") {
        let raw = super::body::decode_path(first);
        let address = contacts::normal(&raw).unwrap_or(raw);
        return Some(contacts::address_hash(&address));
    }
    // Only tenant and admin routes are recorded; their first parameters are ids.
    debug_assert!(route.access != Access::Public);
    Some(first.clone())
}

async fn write(store: Store, mut rx: mpsc::Receiver<AuditEntry>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            () = stop.cancelled() => {
                // HTTP has stopped: nothing more comes; write what is queued.
                rx.close();
                while rx.recv_many(&mut batch, BATCH).await > 0 {
                    flush(&store, &mut batch, LAST_ATTEMPTS).await;
                }
                return;
            }
        };
        if n == 0 {
            return;
        }
        flush(&store, &mut batch, u32::MAX).await;
    }
}

/// Tries when stopping before giving a batch up (the database is gone).
const LAST_ATTEMPTS: u32 = 3;

async fn flush(store: &Store, batch: &mut Vec<AuditEntry>, attempts: u32) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1.. {
        match store.append_audit(batch).await {
            Ok(()) => {
                metrics::counter!("switchboard_audit_calls_recorded_total")
                    .increment(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(e) if attempt >= attempts => {
                tracing::error!(error = %e, entries = batch.len(), "could not append API calls to the audit log; giving them up");
                batch.clear();
                return;
            }
            Err(e) => {
                // The database is away: keep the batch and retry (the queue fills
                // and holds requests back meanwhile).
                tracing::warn!(error = %e, entries = batch.len(), "could not append API calls to the audit log; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

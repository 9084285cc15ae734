//! The retention sweeper: deletes each tenant's messages, events and media older
//! than its `retention` settings say (`PUT /v1/consent`; off by default), in small
//! batches with a pause between them so writers are never held up for long. Rows
//! still needed stay whatever their age (see [`crate::storage::Store::sweep_events`]):
//! undelivered webhook deliveries, pending RAG jobs, queued sends.
//!
//! Every replica sweeps; two deleting the same rows just find fewer to delete.

use crate::media::MediaStore;
use crate::storage::{SWEEP_BATCH, Store, StoreError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Pause between two batches of one sweep.
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub messages: u64,
    pub events: u64,
    pub media: u64,
}

/// Sweeps every tenant with a retention as of `now` (unix ms).
pub async fn sweep(
    store: &Store,
    media: Option<&MediaStore>,
    now: i64,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for tenant in store.tenants_with_retention().await? {
        let settings = store.consent(&tenant).await?;
        let r = &settings.retention;
        let cutoff = |d: Duration| now.saturating_sub(d.as_millis() as i64);
        if let Some(d) = r.events() {
            swept.events += batches(|| store.sweep_events(&tenant, cutoff(d), SWEEP_BATCH)).await?;
        }
        if let Some(d) = r.messages() {
            swept.messages +=
                batches(|| store.sweep_messages(&tenant, cutoff(d), SWEEP_BATCH)).await?;
        }
        if let (Some(d), Some(m)) = (r.media(), media) {
            loop {
                let rows = store
                    .tenant_media_older_than(&tenant, cutoff(d), SWEEP_BATCH)
                    .await?;
                let n = rows.len();
                for row in rows {
                    match m.remove(&row).await {
                        Ok(()) => swept.media += 1,
                        Err(e) => {
                            tracing::warn!(media_id = %row.id, error = %e, "old file not removed; next sweep")
                        }
                    }
                }
                if (n as i64) < SWEEP_BATCH {
                    break;
                }
                tokio::time::sleep(BATCH_PAUSE).await;
            }
        }
    }
    for (kind, n) in [
        ("messages", swept.messages),
        ("events", swept.events),
        ("media", swept.media),
    ] {
        metrics::counter!("switchboard_retention_deleted_total", "kind" => kind).increment(n);
    }
    Ok(swept)
}

/// Runs `batch` until it deletes less than a full batch; the total.
async fn batches<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if (n as i64) < SWEEP_BATCH {
            return Ok(total);
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
}

/// Sweeps every `interval` until `cancel`.
pub fn spawn(
    store: Store,
    media: Option<MediaStore>,
    interval: Duration,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            match sweep(&store, media.as_ref(), crate::clock::now_ms()).await {
                Ok(s) if s != Swept::default() => tracing::info!(
                    messages = s.messages,
                    events = s.events,
                    media = s.media,
                    "retention sweep"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention sweep failed; trying again later"),
            }
        }
    })
}

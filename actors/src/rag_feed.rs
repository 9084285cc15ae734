//! The feed from stored inbound messages to the RAG actor.
//!
//! A `message.received` event of a session whose replies are on is written together
//! with a `rag_jobs` row (see `Store::insert_events`). The feed claims due jobs (each
//! hidden for a lease while it runs), opens the stored event, signs it with the
//! internal key and hands it to the [`RagActor`](switchboard_rag::actor::RagActor);
//! the job is deleted only once the actor reports an outcome. A failure (the actor
//! gone, the model or the LLM down) puts the job back with backoff; a crash leaves it
//! to be claimed again when its lease ends. So every inbound message is answered at
//! least once, and the host keys sends and drafts by event id, so at most one reply
//! goes out.

use crate::events::body_binding;
use crate::storage::{RagJob, Store};
use ractor::ActorRef;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use switchboard_crypto::Keyring;
use switchboard_rag::actor::{RagError, RagMsg};
use switchboard_rag::signed::{InternalKey, SignedEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Jobs claimed at once.
const BATCH: i64 = 16;
/// A claimed job is taken again after this if nobody finished it.
const LEASE_MS: i64 = 5 * 60 * 1000;
/// How long one answer may take before it counts as failed.
const ANSWER_TIMEOUT_MS: u64 = 3 * 60 * 1000;
/// Longest wait between retries of a failing job.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;

/// The actor the feed talks to; replaced when the actor is restarted.
pub type RagSlot = Arc<RwLock<Option<ActorRef<RagMsg>>>>;

/// Runs until `cancel` fires. `commits` changes when a commit queued jobs here;
/// jobs queued by another replica, retries and expired leases are found by the
/// poll, once a second.
pub async fn run(
    store: Store,
    keyring: Arc<Keyring>,
    key: Arc<InternalKey>,
    slot: RagSlot,
    mut commits: watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    loop {
        let jobs = match store.claim_rag_jobs(BATCH, LEASE_MS).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "could not claim RAG jobs");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = commits.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let mut running = tokio::task::JoinSet::new();
        for job in jobs {
            let (store, keyring, key, slot) =
                (store.clone(), keyring.clone(), key.clone(), slot.clone());
            running.spawn(async move { run_job(&store, &keyring, &key, &slot, job).await });
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = async { while running.join_next().await.is_some() {} } => {}
        }
    }
}

async fn run_job(store: &Store, keyring: &Keyring, key: &InternalKey, slot: &RagSlot, job: RagJob) {
    let result = answer(store, keyring, key, slot, &job).await;
    let done = match result {
        Ok(()) => store.finish_rag_job(&job.event_id).await,
        Err(e) => {
            let wait = (1000i64 << job.attempts.clamp(0, 20)).min(MAX_BACKOFF_MS);
            tracing::warn!(event_id = %job.event_id, tenant_id = %job.tenant_id, attempts = job.attempts, retry_in_ms = wait, error = %e, "RAG job failed; retrying later");
            metrics::counter!("switchboard_rag_job_retries_total").increment(1);
            store
                .retry_rag_job(&job.event_id, crate::clock::now_ms() + wait, &e)
                .await
        }
    };
    if let Err(e) = done {
        tracing::error!(event_id = %job.event_id, error = %e, "could not update a RAG job; its lease will expire");
    }
}

async fn answer(
    store: &Store,
    keyring: &Keyring,
    key: &InternalKey,
    slot: &RagSlot,
    job: &RagJob,
) -> Result<(), String> {
    let Some(event) = store
        .get_event(&job.tenant_id, &job.event_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        // The event (or its tenant) was deleted: nothing to answer.
        return Ok(());
    };
    let body = keyring
        .open(
            &event.body_key_id,
            &event.body,
            body_binding(&event.tenant_id, &event.id),
        )
        .map_err(|e| format!("could not open the event: {e}"))?;
    let now = crate::clock::now_ms() / 1000;
    let signed = SignedEvent::sign(key, &event.id, body.to_vec(), now);
    let actor = slot
        .read()
        .map_err(|_| "the RAG actor slot is poisoned".to_owned())?
        .clone()
        .ok_or_else(|| "the RAG actor is not running".to_owned())?;
    let outcome = ractor::call_t!(
        actor,
        |port| RagMsg::Event(Box::new(signed), Some(port)),
        ANSWER_TIMEOUT_MS
    )
    .map_err(|e| format!("the RAG actor did not answer: {e}"))?;
    match outcome {
        Ok(o) => {
            tracing::debug!(event_id = %event.id, outcome = ?o, "inbound message answered");
            Ok(())
        }
        Err(RagError::Knowledge(e) | RagError::Host(e)) => Err(e),
    }
}

//! The webhook dispatcher: turns outbox rows into signed HTTP deliveries.
//!
//! Loop: claim due rows under a lease (batch), load their events and endpoints,
//! and start one delivery task per row within a global cap; each endpoint has at
//! most its in-flight cap of deliveries running (one for FIFO endpoints) and at most
//! twice that claimed, so a slow endpoint neither hogs the batch nor holds rows past
//! their lease. A delivery opens the sealed envelope,
//! signs it per Standard Webhooks with the endpoint's secret(s), POSTs it with a
//! timeout and no redirects, and reports the attempt. A result writer commits
//! attempts in batches (group commit) and moves each row on: delivered, retried
//! later per [`super::schedule`], dead-lettered when attempts run out, or parked when
//! the endpoint was disabled (410 Gone, or failing longer than `disable_after`, which
//! also emits `webhook.endpoint_disabled`).
//!
//! After a round that took every due row, the next claim waits to be woken: by a
//! commit of new rows, or of a result that can make another row due (a FIFO
//! endpoint's, one not delivered, or one of an endpoint that was at its claim
//! depth), else by the poll. A claim after plain deliveries would find nothing.
//!
//! Where the leases are kept in memory (below), the event writer also hands over
//! the rows it commits with their events ([`super::handoff`]): those start without
//! a claim or a read, and the claim takes only what the handoff leaves (a FIFO
//! endpoint's rows, one at its claim depth, retries).
//!
//! Crash safety: a row is only marked delivered after the receiver answered 2xx and
//! the result is committed; if the process dies in between, the lease runs out and
//! the row is delivered again with the same `webhook-id` (at-least-once).
//!
//! Where no other process shares the database (SQLite, `single_process`), the
//! leases are kept in memory instead: a claim is a read, and a claimed row stays
//! held until its result is committed. A crash forgets them with the process, which
//! is what an expired lease would come to; at start every row is free.
//!
//! Runs until `cancel` fires; in-flight deliveries are then abandoned to their
//! leases. It is spawned by the gateway and supervised with the shared restart
//! strategy ([`crate::supervision::supervise_task`]): a panicking loop is restarted
//! with backoff, and the leases of what it had claimed let the new one take over.

use super::handoff::{Fresh, Handoff, Held};
use super::schedule;
use super::ssrf::{self, FilteringResolver};
use crate::events::{Events, Publish, body_binding};
use crate::storage::{AttemptResult, Claimed, Endpoint, EndpointStatus, EventRow, Outcome, Store};
use crate::{clock, webhooks};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_crypto::{Keyring, webhook};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Dispatcher settings (from the gateway's `webhooks.*` configuration).
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Waits between attempts; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    /// An endpoint failing for this long is disabled.
    pub disable_after: Duration,
    /// Deliveries in flight across all endpoints.
    pub max_in_flight: usize,
    /// Rows claimed per round trip.
    pub batch: u32,
    /// How often to look for due rows when nothing woke us.
    pub poll: Duration,
    /// Allow loopback/private targets (tests, on-premise receivers).
    pub allow_private: bool,
    /// Clear stale leases at start (only when no other process shares the database).
    pub single_process: bool,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            schedule: schedule::DEFAULT.to_vec(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            max_in_flight: 256,
            batch: 256,
            poll: Duration::from_millis(250),
            allow_private: false,
            single_process: true,
        }
    }
}

/// Most bytes of a response body kept with an attempt.
const SNIPPET_BYTES: usize = 256;

/// Shared state of the deliveries in flight.
struct Shared {
    store: Store,
    keyring: Arc<Keyring>,
    events: Events,
    config: DispatcherConfig,
    client: reqwest::Client,
    results: mpsc::Sender<Finished>,
    /// Per endpoint: claimed rows not yet finished, and the semaphore that lets at
    /// most its cap of them be in flight.
    assigned: Mutex<HashMap<String, Slot>>,
    /// The rows this process holds when leases are kept in memory (`single_process`).
    held: Option<Arc<Held>>,
    /// Then also: the rows the event writer hands over as it commits them.
    handoff: Option<Arc<Handoff>>,
}

/// An attempt's result, and whether committing it can make another row due at
/// once (the next row of a FIFO endpoint, a row parked or retried): then the
/// dispatcher is woken after the commit. A delivered row of any other endpoint
/// frees nothing that is not already claimable.
struct Finished {
    result: AttemptResult,
    frees_another: bool,
}

struct Slot {
    claimed: usize,
    cap: usize,
    permits: Arc<Semaphore>,
}

/// Rows an endpoint may hold claimed (in flight plus waiting), in multiples of its
/// cap: enough to keep it busy without claiming rows that would outlive the lease.
const CLAIM_DEPTH: usize = 2;

#[derive(Debug)]
pub struct Dispatcher;

impl Dispatcher {
    /// Starts the dispatcher; `wake` is notified when new rows are committed.
    pub fn spawn(
        store: Store,
        keyring: Arc<Keyring>,
        events: Events,
        config: DispatcherConfig,
        wake: Arc<Notify>,
        cancel: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(config.max_in_flight)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(FilteringResolver {
                allow_private: config.allow_private,
            }))
            .build()?;
        let (results, results_rx) = mpsc::channel(4 * config.max_in_flight.max(16));
        let handoff = config.single_process.then(|| {
            let handoff = events.handoff();
            handoff.open();
            handoff
        });
        let held = handoff.as_ref().map(|h| h.held());
        let shared = Arc::new(Shared {
            store: store.clone(),
            keyring,
            events,
            config,
            client,
            results,
            assigned: Mutex::new(HashMap::new()),
            held: held.clone(),
            handoff,
        });
        let writer = tokio::spawn(result_writer(store, results_rx, wake.clone(), held));
        Ok(tokio::spawn(async move {
            // Supervised: a panic in the loop restarts it (rows keep their leases).
            let policy = crate::supervision::RestartPolicy::default();
            let (s, w, c) = (shared.clone(), wake.clone(), cancel.clone());
            crate::supervision::supervise_task("webhook_dispatcher", policy, cancel, move || {
                run(s.clone(), w.clone(), c.clone())
            })
            .await;
            drop(shared);
            // The writer ends when the last delivery task drops its sender.
            let _ = writer.await;
        }))
    }
}

async fn run(shared: Arc<Shared>, wake: Arc<Notify>, cancel: CancellationToken) {
    if shared.config.single_process {
        match shared.store.release_all_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "released leases left by a previous run"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release stale leases; they expire on their own")
            }
        }
    }
    let global = Arc::new(Semaphore::new(shared.config.max_in_flight));
    let lease = shared.config.timeout * 2 + Duration::from_secs(5);
    tracing::info!(
        max_in_flight = shared.config.max_in_flight,
        "webhook dispatcher started"
    );
    // Set after a round that took every due row: the next claim waits for a wake
    // (a commit of new rows or results, a freed permit's round) or the poll.
    let mut drained = false;
    while !cancel.is_cancelled() {
        if let Some(handoff) = &shared.handoff
            && global.available_permits() > 0
        {
            let fresh = handoff.take();
            if !fresh.rows.is_empty() && start_fresh(&shared, &global, fresh).await {
                // Some were left to the claim.
                drained = false;
            }
        }
        if drained {
            tokio::select! {
                () = wake.notified() => {}
                // Stays drained: only handed-over rows to start.
                () = handed_over(&shared) => continue,
                () = tokio::time::sleep(shared.config.poll) => {}
                () = cancel.cancelled() => break,
            }
            drained = false;
        }
        let free = global.available_permits();
        if free == 0 {
            tokio::select! {
                p = global.clone().acquire_owned() => drop(p),
                () = cancel.cancelled() => break,
            }
            continue;
        }
        let saturated: Vec<String> = {
            let map = shared.assigned.lock().unwrap_or_else(|p| p.into_inner());
            map.iter()
                .filter(|(_, s)| s.claimed >= s.cap * CLAIM_DEPTH)
                .map(|(k, _)| k.clone())
                .collect()
        };
        let limit = (free as u32).min(shared.config.batch);
        let lease_until = clock::now_ms() + lease.as_millis() as i64;
        let claimed = match &shared.held {
            Some(held) => {
                shared
                    .store
                    .due_deliveries(limit, &saturated, &held.ids())
                    .await
            }
            None => {
                shared
                    .store
                    .claim_deliveries(lease_until, limit, &saturated)
                    .await
            }
        };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming deliveries failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = cancel.cancelled() => break,
                }
                continue;
            }
        };
        // Fewer than asked for: nothing else is due until something commits.
        drained = claimed.len() < limit as usize;
        let claimed = match &shared.held {
            // Rows held since the claim began (by the handoff, before their commit)
            // are passed over.
            Some(held) => held.take_new(claimed),
            None => claimed,
        };
        if claimed.is_empty() {
            continue;
        }
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        if let Err(e) = start_deliveries(&shared, &global, claimed).await {
            tracing::warn!(error = %e, "loading claimed deliveries failed; their leases will expire");
            if let Some(held) = &shared.held {
                // Nothing of the batch started: free again (memory leases do not expire).
                held.let_go(ids);
            }
        }
    }
    tracing::info!("webhook dispatcher stopped");
}

/// Loads events and endpoints for a claimed batch and spawns the deliveries.
async fn start_deliveries(
    shared: &Arc<Shared>,
    global: &Arc<Semaphore>,
    claimed: Vec<Claimed>,
) -> Result<(), crate::StoreError> {
    let mut endpoint_ids: Vec<String> = claimed.iter().map(|c| c.endpoint_id.clone()).collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
    let mut event_ids: Vec<String> = claimed.iter().map(|c| c.event_id.clone()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let endpoints: HashMap<String, Arc<Endpoint>> = shared
        .store
        .endpoints_by_ids(&endpoint_ids)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();
    let events: HashMap<String, Arc<EventRow>> = shared
        .store
        .events_by_ids(&event_ids)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();
    let give_back = spawn_deliveries(shared, global, claimed, &endpoints, &events);
    if !give_back.is_empty() {
        match &shared.held {
            Some(held) => held.let_go(give_back),
            None => shared.store.release_claims(&give_back).await?,
        }
    }
    Ok(())
}

/// Starts handed-over rows (held already; see [`Handoff`]): their events came with
/// them, their endpoints are read here. Returns whether some were let go for the
/// claim to take: a FIFO endpoint's (the claim keeps their order), one not
/// enabled, one at its claim depth, or past the room in flight.
async fn start_fresh(shared: &Arc<Shared>, global: &Arc<Semaphore>, fresh: Fresh) -> bool {
    let Some(held) = &shared.held else {
        return true;
    };
    let mut endpoint_ids: Vec<String> = fresh.rows.iter().map(|r| r.endpoint_id.clone()).collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
    let endpoints: HashMap<String, Arc<Endpoint>> = match shared
        .store
        .endpoints_by_ids(&endpoint_ids)
        .await
    {
        Ok(found) => found
            .into_iter()
            .filter(|e| e.status == EndpointStatus::Enabled && !e.fifo)
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "loading endpoints of handed-over rows failed; leaving them to the claim");
            held.let_go(fresh.rows.iter().map(|r| r.id));
            return true;
        }
    };
    let (startable, left): (Vec<Claimed>, Vec<Claimed>) = fresh.rows.into_iter().partition(|r| {
        endpoints.contains_key(&r.endpoint_id) && fresh.events.contains_key(&r.event_id)
    });
    let mut give_back: Vec<i64> = left.iter().map(|r| r.id).collect();
    give_back.extend(spawn_deliveries(
        shared,
        global,
        startable,
        &endpoints,
        &fresh.events,
    ));
    let some_left = !give_back.is_empty();
    held.let_go(give_back);
    some_left
}

/// Resolves when the writer may have handed rows over (never without a handoff).
async fn handed_over(shared: &Shared) {
    match &shared.handoff {
        Some(handoff) => handoff.ready().await,
        None => std::future::pending().await,
    }
}

/// Spawns one delivery per row within its endpoint's claim depth and the room in
/// flight; returns the ids of the rows it did not start.
fn spawn_deliveries(
    shared: &Arc<Shared>,
    global: &Arc<Semaphore>,
    claimed: Vec<Claimed>,
    endpoints: &HashMap<String, Arc<Endpoint>>,
    events: &HashMap<String, Arc<EventRow>>,
) -> Vec<i64> {
    let mut give_back = Vec::new();
    for row in claimed {
        let (Some(endpoint), Some(event)) =
            (endpoints.get(&row.endpoint_id), events.get(&row.event_id))
        else {
            // Deleted meanwhile: the cascade removes the row too.
            if let Some(held) = &shared.held {
                held.let_go([row.id]);
            }
            continue;
        };
        let cap = if endpoint.fifo {
            1
        } else {
            endpoint.max_in_flight.max(1) as usize
        };
        let permits = {
            let mut map = shared.assigned.lock().unwrap_or_else(|p| p.into_inner());
            let slot = map.entry(endpoint.id.clone()).or_insert_with(|| Slot {
                claimed: 0,
                cap,
                permits: Arc::new(Semaphore::new(cap)),
            });
            if slot.cap != cap {
                // The endpoint's cap changed: new deliveries use a fresh semaphore.
                slot.cap = cap;
                slot.permits = Arc::new(Semaphore::new(cap));
            }
            if slot.claimed >= cap * CLAIM_DEPTH {
                give_back.push(row.id);
                continue;
            }
            slot.claimed += 1;
            slot.permits.clone()
        };
        let Ok(global_permit) = global.clone().try_acquire_owned() else {
            release_slot(shared, &endpoint.id);
            give_back.push(row.id);
            continue;
        };
        let shared = shared.clone();
        let (endpoint, event) = (endpoint.clone(), event.clone());
        let span = tracing::info_span!(
            "delivery",
            tenant_id = %row.tenant_id,
            event_id = %row.event_id,
            endpoint_id = %row.endpoint_id,
            attempt = row.attempts + 1,
        );
        tokio::spawn(async move {
            // Waits here while the endpoint has its cap of deliveries in flight.
            let endpoint_permit = permits.acquire_owned().await;
            let result = deliver(&shared, &row, &endpoint, &event)
                .instrument(span)
                .await;
            drop(endpoint_permit);
            // Before the result is sent, so the claim its commit wakes sees the
            // endpoint's room (the row itself stays held or leased until then).
            let was_full = release_slot(&shared, &endpoint.id);
            let frees_another = endpoint.fifo || was_full || result.outcome != Outcome::Delivered;
            let finished = Finished {
                result,
                frees_another,
            };
            if shared.results.send(finished).await.is_err() {
                tracing::error!(event_id = %row.event_id, "result writer gone; the lease will expire and retry");
            }
            drop(global_permit);
        });
    }
    give_back
}

/// One claimed row of the endpoint finished; returns whether the endpoint was at
/// its claim depth (so claims were passing over its due rows).
fn release_slot(shared: &Shared, endpoint_id: &str) -> bool {
    let mut map = shared.assigned.lock().unwrap_or_else(|p| p.into_inner());
    let Some(slot) = map.get_mut(endpoint_id) else {
        return false;
    };
    let was_full = slot.claimed >= slot.cap * CLAIM_DEPTH;
    slot.claimed = slot.claimed.saturating_sub(1);
    if slot.claimed == 0 {
        map.remove(endpoint_id);
    }
    was_full
}

/// One attempt: sign, POST, classify.
async fn deliver(
    shared: &Shared,
    row: &Claimed,
    endpoint: &Endpoint,
    event: &EventRow,
) -> AttemptResult {
    let attempted_at = clock::now_ms();
    let started = Instant::now();
    let mut result = AttemptResult {
        outbox_id: row.id,
        tenant_id: row.tenant_id.clone(),
        event_id: row.event_id.clone(),
        endpoint_id: row.endpoint_id.clone(),
        attempted_at,
        status_code: None,
        latency_ms: 0,
        error: None,
        response_snippet: None,
        outcome: Outcome::Parked,
    };
    if endpoint.status != EndpointStatus::Enabled {
        result.error = Some("endpoint disabled".into());
        return result;
    }
    let prepared = prepare(shared, endpoint, event);
    let (body, signature, timestamp) = match prepared {
        Ok(p) => p,
        Err(e) => {
            // Undecryptable data cannot get better by retrying soon, but keep it
            // retrying on the schedule so an operator can fix the keyring.
            tracing::error!(error = %e, "cannot prepare delivery");
            result.error = Some(e);
            result.outcome = retry_or_dead(shared, row, None);
            return result;
        }
    };
    let response = shared
        .client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    result.latency_ms = started.elapsed().as_millis() as i64;
    metrics::histogram!("switchboard_webhook_delivery_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match response {
        Ok(res) => {
            let status = res.status();
            result.status_code = Some(i32::from(status.as_u16()));
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            result.response_snippet = snippet(res).await;
            if status.is_success() {
                result.outcome = Outcome::Delivered;
                metrics::counter!("switchboard_webhook_deliveries_total", "result" => "delivered")
                    .increment(1);
                tracing::debug!(
                    status = status.as_u16(),
                    latency_ms = result.latency_ms,
                    "delivered"
                );
            } else if status == reqwest::StatusCode::GONE {
                metrics::counter!("switchboard_webhook_deliveries_total", "result" => "gone")
                    .increment(1);
                disable(shared, endpoint, "the endpoint answered 410 Gone").await;
                result.outcome = Outcome::Parked;
            } else {
                metrics::counter!("switchboard_webhook_deliveries_total", "result" => "failed")
                    .increment(1);
                result.error = Some(format!("HTTP {}", status.as_u16()));
                result.outcome = after_failure(shared, row, endpoint, retry_after).await;
            }
        }
        Err(e) => {
            metrics::counter!("switchboard_webhook_deliveries_total", "result" => "error")
                .increment(1);
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            result.error = Some(format!("{kind}: {}", error_chain(&e)));
            result.outcome = after_failure(shared, row, endpoint, None).await;
        }
    }
    if let Some(err) = &result.error {
        tracing::info!(error = %err, outcome = ?result.outcome, "delivery failed");
    }
    result
}

/// Body, signature header and timestamp for a delivery.
fn prepare(
    shared: &Shared,
    endpoint: &Endpoint,
    event: &EventRow,
) -> Result<(Vec<u8>, String, i64), String> {
    ssrf::check_static(&endpoint.url, shared.config.allow_private).map_err(|e| e.to_string())?;
    let body = shared
        .keyring
        .open(
            &event.body_key_id,
            &event.body,
            body_binding(&event.tenant_id, &event.id),
        )
        .map_err(|e| format!("event body: {e}"))?;
    let secrets = webhooks::signing_secrets(&shared.keyring, endpoint)
        .map_err(|e| format!("endpoint secret: {e}"))?;
    let timestamp = clock::now_ms() / 1000;
    let signature = webhook::signature_header(&secrets, &event.id, timestamp, &body);
    // The opened buffer itself goes out as the body: no copy.
    let mut body = body;
    Ok((std::mem::take(&mut *body), signature, timestamp))
}

async fn snippet(res: reqwest::Response) -> Option<String> {
    let mut res = res;
    let mut buf = Vec::new();
    while buf.len() < SNIPPET_BYTES {
        match res.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(SNIPPET_BYTES);
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

fn retry_or_dead(shared: &Shared, row: &Claimed, retry_after: Option<Duration>) -> Outcome {
    let made = usize::try_from(row.attempts + 1).unwrap_or(usize::MAX);
    match schedule::next_delay(
        &shared.config.schedule,
        made,
        retry_after,
        schedule::unit_random(),
    ) {
        Some(wait) => Outcome::Retry {
            at: clock::now_ms() + wait.as_millis() as i64,
        },
        None => {
            metrics::counter!("switchboard_webhook_dead_letters_total").increment(1);
            Outcome::Dead
        }
    }
}

/// After a failed attempt: disable the endpoint if it has failed for too long,
/// otherwise schedule the next attempt (or dead-letter the row).
async fn after_failure(
    shared: &Shared,
    row: &Claimed,
    endpoint: &Endpoint,
    retry_after: Option<Duration>,
) -> Outcome {
    let failing_for = endpoint
        .failing_since
        .map(|since| Duration::from_millis((clock::now_ms() - since).max(0) as u64));
    if failing_for.is_some_and(|d| d >= shared.config.disable_after) {
        disable(
            shared,
            endpoint,
            "every delivery failed for longer than the disable period",
        )
        .await;
        return Outcome::Parked;
    }
    retry_or_dead(shared, row, retry_after)
}

async fn disable(shared: &Shared, endpoint: &Endpoint, reason: &str) {
    match shared.store.disable_endpoint(&endpoint.id, reason).await {
        Ok(true) => {
            tracing::warn!(endpoint_id = %endpoint.id, reason, "webhook endpoint disabled");
            let data = serde_json::json!({ "endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason });
            let event = Publish::new(&endpoint.tenant_id, webhooks::ENDPOINT_DISABLED, data);
            if let Err(e) = shared.events.publish(event).await {
                tracing::error!(error = %e, "could not emit webhook.endpoint_disabled");
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, endpoint_id = %endpoint.id, "could not disable endpoint")
        }
    }
}

/// Most results committed in one transaction.
const RESULTS_BATCH: usize = 512;

/// Commits attempt results in batches; wakes the dispatcher so FIFO successors and
/// immediate retries go out without waiting for the next poll (only then: a
/// claim after plain deliveries would find nothing new). Under load it lingers as
/// the event writer does ([`crate::events::LINGER`]): results only move rows on, so
/// the wait delays no delivery, and a row stays held or leased until then.
async fn result_writer(
    store: Store,
    mut rx: mpsc::Receiver<Finished>,
    wake: Arc<Notify>,
    held: Option<Arc<Held>>,
) {
    let mut finished = Vec::with_capacity(RESULTS_BATCH);
    let mut batch = Vec::with_capacity(RESULTS_BATCH);
    let mut last_round = 0;
    while rx.recv_many(&mut finished, RESULTS_BATCH).await > 0 {
        if last_round >= crate::events::LOADED && finished.len() < crate::events::FULL_ENOUGH {
            // Under load: a moment's wait makes one commit of what would be several.
            tokio::time::sleep(crate::events::LINGER).await;
            while finished.len() < RESULTS_BATCH {
                match rx.try_recv() {
                    Ok(f) => finished.push(f),
                    Err(_) => break,
                }
            }
        }
        last_round = finished.len();
        let frees_another = finished.iter().any(|f| f.frees_another);
        batch.extend(finished.drain(..).map(|f| f.result));
        let mut tries = 0;
        loop {
            match store.record_attempts(&batch).await {
                Ok(()) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %e, attempts = batch.len(), "recording attempts failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    // The rows keep their leases and are delivered again when those
                    // expire (held in memory: at once).
                    tracing::error!(error = %e, attempts = batch.len(), "attempts not recorded; deliveries will repeat");
                    break;
                }
            }
        }
        if let Some(held) = &held {
            // Committed (or given up): a claim may take them again only now.
            held.let_go(batch.iter().map(|r| r.outbox_id));
        }
        batch.clear();
        if frees_another {
            wake.notify_one();
        }
    }
}

//! Load scenarios.
//!
//! - `webhooks`: N events produced through the API (`POST /v1/webhooks/{id}/test`,
//!   each acknowledged only after its event and outbox row are committed) at a given
//!   concurrency; the receiver verifies every signature. Reports ingest rate, signed
//!   deliveries per second, end-to-end latency percentiles, losses and duplicates.

use crate::receiver::Receiver;
use crate::target::Gateway;
use anyhow::{Context, bail};
use http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard_crypto::webhook::WebhookSecret;

#[derive(Debug, Clone)]
pub struct WebhooksParams {
    pub events: u64,
    pub concurrency: usize,
    /// Give up waiting for deliveries after this long.
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct WebhooksReport {
    pub events: u64,
    pub ingest_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub invalid_signatures: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub gateway_rss_mib: Option<f64>,
}

impl WebhooksReport {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "scenario": "webhooks",
            "events": self.events,
            "ingest_per_sec": self.ingest_per_sec,
            "deliveries_per_sec": self.deliveries_per_sec,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "invalid_signatures": self.invalid_signatures,
            "latency_ms": { "p50": self.latency_ms_p50, "p90": self.latency_ms_p90, "p99": self.latency_ms_p99, "max": self.latency_ms_max },
            "gateway_rss_mib": self.gateway_rss_mib,
        })
    }
}

/// An HDR histogram of milliseconds (1 ms to 1 h, 3 significant digits): fixed
/// memory however long a run is.
pub type Histogram = hdrhistogram::Histogram<u64>;

pub fn histogram() -> Histogram {
    Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds")
}

pub async fn webhooks(gw: &Gateway, p: &WebhooksParams) -> anyhow::Result<WebhooksReport> {
    let secret = WebhookSecret::generate()?;
    let receiver = Receiver::start(secret.clone()).await?;
    let (_, key) = gw.unthrottled_tenant("bench-webhooks").await?;
    let body =
        json!({ "url": receiver.url, "secret": secret.to_text().expose(), "max_in_flight": 100 });
    let (status, ep) = gw
        .call(Method::POST, "/v1/webhooks", &key, Some(&body))
        .await?;
    if status != StatusCode::CREATED {
        bail!("creating the endpoint: {status} {ep}");
    }
    let path = format!(
        "/v1/webhooks/{}/test",
        ep["id"].as_str().context("endpoint id")?
    );

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..p.concurrency.max(1) {
        let (next, path, key, total) = (next.clone(), path.clone(), key.clone(), p.events);
        let gw_base = gw.base.clone();
        let client = GatewayClient::new(gw_base);
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                client.post(&path, &key).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let ingest = started.elapsed();
    let deadline = Instant::now() + p.timeout;
    while (receiver.distinct() as u64) < p.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let tally = receiver.tally.lock().unwrap_or_else(|e| e.into_inner());
    let delivered = tally.seen.len() as u64;
    let duplicates = tally
        .seen
        .values()
        .map(|n| u64::from(n.saturating_sub(1)))
        .sum();
    let lat = Latency::from_histogram(&tally.latency);
    Ok(WebhooksReport {
        events: p.events,
        ingest_per_sec: p.events as f64 / ingest.as_secs_f64(),
        deliveries_per_sec: delivered as f64 / elapsed.as_secs_f64(),
        delivered,
        lost: p.events.saturating_sub(delivered),
        duplicates,
        invalid_signatures: tally.invalid_signatures,
        latency_ms_p50: lat.p50,
        latency_ms_p90: lat.p90,
        latency_ms_p99: lat.p99,
        latency_ms_max: lat.max,
        gateway_rss_mib: gw.rss_kib().map(|k| k as f64 / 1024.0),
    })
}

/// A keep-alive client for one worker.
struct GatewayClient {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<hyper::body::Bytes>,
    >,
}

impl GatewayClient {
    fn new(base: String) -> Self {
        Self {
            base,
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }

    /// POSTs `body`; expects 202 and returns the JSON answer.
    async fn post_json(
        &self,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        use http_body_util::BodyExt;
        let req = http::Request::post(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                body.to_string(),
            )))?;
        let res = tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await??;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        if status != StatusCode::ACCEPTED {
            bail!("{path}: {status} {}", String::from_utf8_lossy(&bytes));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn post(&self, path: &str, key: &str) -> anyhow::Result<()> {
        let req = http::Request::post(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .body(http_body_util::Full::new(hyper::body::Bytes::new()))?;
        let res = tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await??;
        if res.status() != StatusCode::ACCEPTED {
            bail!("producing an event: {}", res.status());
        }
        use http_body_util::BodyExt;
        res.into_body().collect().await?;
        Ok(())
    }
}

/// The `pipeline` scenario's knobs.
#[derive(Debug, Clone)]
pub struct PipelineParams {
    pub tenants: usize,
    /// Sim sessions per tenant.
    pub sessions: usize,
    /// Inbound messages per second, all sessions together.
    pub rate: f64,
    pub duration: Duration,
    pub payload_bytes: usize,
    /// Give up waiting for deliveries this long after the traffic stops.
    pub drain_timeout: Duration,
}

#[derive(Debug, serde::Serialize)]
pub struct PipelineReport {
    pub scenario: &'static str,
    pub tenants: usize,
    pub sessions: usize,
    pub target_rate: f64,
    pub duration_secs: f64,
    /// Inbound messages the gateway stored (its own counter).
    pub produced: u64,
    pub produced_per_sec: f64,
    pub delivered: u64,
    pub delivered_per_sec: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub invalid_signatures: u64,
    pub latency_ms: Latency,
    pub gateway_rss_mib: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// From a histogram of milliseconds.
    pub fn from_histogram(h: &Histogram) -> Self {
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(p) as f64
            }
        };
        Self {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() { 0.0 } else { h.max() as f64 },
        }
    }

    /// From samples in (fractional) milliseconds, exactly.
    pub fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if ms.is_empty() {
                return 0.0;
            }
            ms[(((ms.len() - 1) as f64) * p).round() as usize]
        };
        Self {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// The gateway's count of stored inbound messages of `channel`, from `/metrics`.
async fn inbound_total(gw: &Gateway, channel: &str) -> anyhow::Result<u64> {
    let text = gw.metrics().await?;
    let label = format!("channel=\"{channel}\"");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("switchboard_inbound_messages_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// T tenants × S sim sessions generating inbound messages at a total rate for a
/// duration; every `message.received` goes to a verifying receiver. Lost = stored by
/// the gateway but never delivered.
pub async fn pipeline(gw: &Gateway, p: &PipelineParams) -> anyhow::Result<PipelineReport> {
    let secret = WebhookSecret::generate()?;
    let receiver = Receiver::start(secret.clone()).await?;
    let before = inbound_total(gw, "sim").await?;
    let per_session = p.rate / (p.tenants * p.sessions) as f64;
    anyhow::ensure!(
        per_session > 0.0 && per_session <= 10_000.0,
        "rate per session must be above 0 and at most 10000/s (got {per_session:.1})"
    );
    let mut sessions = Vec::new();
    for t in 0..p.tenants {
        let (_, key) = gw
            .unthrottled_tenant(&format!("bench-pipeline-{t}"))
            .await?;
        let body = json!({ "url": receiver.url, "secret": secret.to_text().expose(),
            "events": ["message.received"], "max_in_flight": 100 });
        let (status, ep) = gw
            .call(Method::POST, "/v1/webhooks", &key, Some(&body))
            .await?;
        if status != StatusCode::CREATED {
            bail!("creating an endpoint: {status} {ep}");
        }
        for _ in 0..p.sessions {
            let body = json!({ "channel": "sim", "config": {
                "inbound_per_second": per_session, "payload_bytes": p.payload_bytes } });
            let (status, s) = gw
                .call(Method::POST, "/v1/sessions", &key, Some(&body))
                .await?;
            if status != StatusCode::CREATED {
                bail!("creating a session: {status} {s}");
            }
            sessions.push((
                key.clone(),
                s["id"].as_str().context("session id")?.to_owned(),
            ));
        }
    }
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < p.duration {
        tokio::time::sleep(
            Duration::from_secs(1).min(p.duration.saturating_sub(started.elapsed())),
        )
        .await;
        let now = receiver.distinct();
        eprint!(
            "\r  {:>5.1}s  delivered {now:>8}  ({:>7.0}/s)   ",
            started.elapsed().as_secs_f64(),
            (now - last) as f64
        );
        last = now;
    }
    for (key, id) in &sessions {
        let (status, v) = gw
            .call(Method::POST, &format!("/v1/sessions/{id}/stop"), key, None)
            .await?;
        if !status.is_success() {
            bail!("stopping {id}: {status} {v}");
        }
    }
    let ran = started.elapsed();
    // Let the last commits land, then read what the gateway stored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let produced = inbound_total(gw, "sim").await? - before;
    let deadline = Instant::now() + p.drain_timeout;
    while (receiver.distinct() as u64) < produced && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = started.elapsed();
    eprintln!();
    let tally = receiver.tally.lock().unwrap_or_else(|e| e.into_inner());
    let delivered = tally.seen.len() as u64;
    Ok(PipelineReport {
        scenario: "pipeline",
        tenants: p.tenants,
        sessions: p.tenants * p.sessions,
        target_rate: p.rate,
        duration_secs: ran.as_secs_f64(),
        produced,
        produced_per_sec: produced as f64 / ran.as_secs_f64(),
        delivered,
        delivered_per_sec: delivered as f64 / all.as_secs_f64(),
        lost: produced.saturating_sub(delivered),
        duplicates: tally
            .seen
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum(),
        invalid_signatures: tally.invalid_signatures,
        latency_ms: Latency::from_histogram(&tally.latency),
        gateway_rss_mib: gw.rss_kib().map(|k| k as f64 / 1024.0),
    })
}

/// Concurrent API requests per tenant while queueing.
const QUEUE_WORKERS: u64 = 8;

/// The `outbound` scenario's knobs.
#[derive(Debug, Clone)]
pub struct OutboundParams {
    /// One tenant per limit (sends per second), each with one sim session.
    pub limits: Vec<u32>,
    pub burst: u32,
    /// Sends queued per tenant: `limit × seconds` (at least `burst + 10`).
    pub seconds: f64,
    pub drain_timeout: Duration,
}

#[derive(Debug, serde::Serialize)]
pub struct TenantOutbound {
    pub configured_per_sec: u32,
    pub queued: u64,
    pub sent: u64,
    /// Rate after the burst, from the `message.sent` events' times.
    pub measured_per_sec: f64,
    /// measured / configured.
    pub accuracy: f64,
    /// Queued → sent.
    pub queue_latency_ms: Latency,
}

#[derive(Debug, serde::Serialize)]
pub struct OutboundReport {
    pub scenario: &'static str,
    pub burst: u32,
    pub tenants: Vec<TenantOutbound>,
    /// Jain's index over measured/configured (1 = every tenant got its share).
    pub fairness: f64,
    pub lost: u64,
    pub gateway_rss_mib: Option<f64>,
}

/// Every event of `event_type` the tenant has, oldest first.
async fn all_events(
    gw: &Gateway,
    key: &str,
    event_type: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut path = format!("/v1/events?type={event_type}&limit=200");
    loop {
        let (status, page) = gw.call(Method::GET, &path, key, None).await?;
        if status != StatusCode::OK {
            bail!("listing events: {status} {page}");
        }
        out.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?type={event_type}&limit=200&after={c}"),
            None => return Ok(out),
        }
    }
}

/// Tenants with different send limits queue sends at once; each tenant's sends must go
/// out at its own configured rate, independently of the others.
pub async fn outbound(gw: &Gateway, p: &OutboundParams) -> anyhow::Result<OutboundReport> {
    let mut tenants = Vec::new();
    for (i, limit) in p.limits.iter().enumerate() {
        let (id, key) = gw
            .unthrottled_tenant(&format!("bench-outbound-{i}"))
            .await?;
        let n = ((f64::from(*limit) * p.seconds) as u64).max(u64::from(p.burst) + 10);
        let limits = json!({ "limits": { "sends_per_second": limit, "send_burst": p.burst,
            "max_queued_sends": n + 100 } });
        gw.admin(Method::PATCH, &format!("/v1/tenants/{id}"), Some(&limits))
            .await?;
        let (status, s) = gw
            .call(
                Method::POST,
                "/v1/sessions",
                &key,
                Some(&json!({ "channel": "sim" })),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("creating a session: {status} {s}");
        }
        let session = s["id"].as_str().context("session id")?.to_owned();
        // Wait for WORKING so the first sends are not held by a connecting session.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = gw
                .call(Method::GET, &format!("/v1/sessions/{session}"), &key, None)
                .await?;
            if v["status"] == "WORKING" {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "session never WORKING: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tenants.push((key, session, *limit, n));
    }
    // Queue every tenant's sends at once (8 concurrent requests per tenant, so the
    // queue fills faster than any limit drains it).
    let mut queueing = Vec::new();
    for (t, (key, session, _, n)) in tenants.iter().cloned().enumerate() {
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..QUEUE_WORKERS {
            let (key, session, next) = (key.clone(), session.clone(), next.clone());
            let client = GatewayClient::new(gw.base.clone());
            queueing.push(tokio::spawn(async move {
                let mut queued_at = std::collections::HashMap::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let body = json!({ "to": "+15550001", "text": format!("bench {i}") });
                    let v = client
                        .post_json(&format!("/v1/sessions/{session}/messages"), &key, &body)
                        .await?;
                    let id = v["id"].as_str().context("message id")?.to_owned();
                    queued_at.insert(id, crate::clock_ms(&v["created_at"])?);
                }
                anyhow::Ok((t, queued_at))
            }));
        }
    }
    let mut queued_at = vec![std::collections::HashMap::new(); tenants.len()];
    for q in queueing {
        let (t, map) = q.await??;
        queued_at[t].extend(map);
    }
    let mut report = Vec::new();
    let mut lost = 0;
    for ((key, _, limit, n), queued) in tenants.iter().zip(&queued_at) {
        let expected = *n as f64 / f64::from((*limit).max(1));
        let deadline = Instant::now() + Duration::from_secs_f64(expected) + p.drain_timeout;
        let sent = loop {
            let sent = all_events(gw, key, "message.sent").await?;
            if sent.len() as u64 >= *n || Instant::now() > deadline {
                break sent;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let mut times = Vec::new();
        let mut latency = histogram();
        for e in &sent {
            let at = crate::clock_ms(&e["created_at"])?;
            times.push(at);
            if let Some(q) = e["data"]["message_id"].as_str().and_then(|m| queued.get(m)) {
                latency.saturating_record((at - q).max(0) as u64);
            }
        }
        times.sort_unstable();
        let after_burst = &times[(p.burst as usize).min(times.len())..];
        let measured = match (after_burst.first(), after_burst.last()) {
            (Some(a), Some(b)) if b > a => {
                (after_burst.len() - 1) as f64 / ((b - a) as f64 / 1000.0)
            }
            _ => 0.0,
        };
        lost += n.saturating_sub(sent.len() as u64);
        report.push(TenantOutbound {
            configured_per_sec: *limit,
            queued: *n,
            sent: sent.len() as u64,
            measured_per_sec: measured,
            accuracy: measured / f64::from((*limit).max(1)),
            queue_latency_ms: Latency::from_histogram(&latency),
        });
    }
    let shares: Vec<f64> = report.iter().map(|t| t.accuracy).collect();
    let sum: f64 = shares.iter().sum();
    let squares: f64 = shares.iter().map(|x| x * x).sum();
    let fairness = if squares > 0.0 {
        sum * sum / (shares.len() as f64 * squares)
    } else {
        0.0
    };
    Ok(OutboundReport {
        scenario: "outbound",
        burst: p.burst,
        tenants: report,
        fairness,
        lost,
        gateway_rss_mib: gw.rss_kib().map(|k| k as f64 / 1024.0),
    })
}

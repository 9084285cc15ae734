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

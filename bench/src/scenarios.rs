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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
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
    let mut lat = tally.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    Ok(WebhooksReport {
        events: p.events,
        ingest_per_sec: p.events as f64 / ingest.as_secs_f64(),
        deliveries_per_sec: delivered as f64 / elapsed.as_secs_f64(),
        delivered,
        lost: p.events.saturating_sub(delivered),
        duplicates,
        invalid_signatures: tally.invalid_signatures,
        latency_ms_p50: percentile(&lat, 50.0),
        latency_ms_p90: percentile(&lat, 90.0),
        latency_ms_p99: percentile(&lat, 99.0),
        latency_ms_max: lat.last().copied().unwrap_or(0.0),
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

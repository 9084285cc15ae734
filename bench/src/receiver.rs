//! A webhook receiver on loopback: verifies every delivery's Standard Webhooks
//! signature, and records ids (to count losses and duplicates) and end-to-end
//! latency (event `created_at` → received).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use switchboard_actors::clock;
use switchboard_crypto::webhook::{self, WebhookSecret};
use tokio::net::TcpListener;

#[derive(Debug)]
pub struct Tally {
    /// Deliveries per webhook-id.
    pub seen: HashMap<String, u32>,
    pub invalid_signatures: u64,
    /// End-to-end latencies (event `created_at` → received), in milliseconds.
    pub latency: crate::scenarios::Histogram,
    /// The same latencies by the second they arrived in.
    pub series: crate::report::TimeSeries,
    /// Latencies by phase of the run (e.g. the steps of a ramp): each event counts in
    /// the last phase that began at or before its `created_at` (unix ms).
    pub phases: Vec<(i64, crate::scenarios::Histogram)>,
}

impl Tally {
    /// Starts a phase at unix time `start_ms`.
    pub fn begin_phase(&mut self, start_ms: i64) {
        self.phases.push((start_ms, crate::scenarios::histogram()));
    }

    fn record(&mut self, created_ms: i64, received_ms: i64) {
        let ms = (received_ms - created_ms).max(0) as u64;
        self.latency.saturating_record(ms);
        self.series.record(received_ms, ms);
        if let Some((_, h)) = self.phases.iter_mut().rev().find(|(s, _)| *s <= created_ms) {
            h.saturating_record(ms);
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            seen: HashMap::new(),
            invalid_signatures: 0,
            latency: crate::scenarios::histogram(),
            series: crate::report::TimeSeries::new(),
            phases: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    pub tally: Arc<Mutex<Tally>>,
}

impl Receiver {
    pub async fn start(secret: WebhookSecret) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (t, secret) = (tally.clone(), Arc::new(secret));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (t, secret) = (t.clone(), secret.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(t.clone(), secret.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { url, tally })
    }

    pub fn begin_phase(&self, start_ms: i64) {
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .begin_phase(start_ms);
    }

    pub fn distinct(&self) -> usize {
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }
}

async fn handle(
    tally: Arc<Mutex<Tally>>,
    secret: Arc<WebhookSecret>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now_ms = clock::now_ms();
    let valid = webhook::verify([secret.as_ref()], &id, &ts, &sig, &body, now_ms / 1000).is_ok();
    let created = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["created_at"].as_str().and_then(clock::parse_rfc3339));
    {
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        if !valid {
            t.invalid_signatures += 1;
        }
        *t.seen.entry(id).or_default() += 1;
        if let Some(c) = created {
            t.record(c, now_ms);
        }
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

//! Load scenarios.
//!
//! - `webhooks`: N events produced through the API (`POST /v1/webhooks/{id}/test`,
//!   each acknowledged only after its event and outbox row are committed) at a given
//!   concurrency; the receiver verifies every signature. Reports ingest rate, signed
//!   deliveries per second, end-to-end latency percentiles, losses and duplicates.

use crate::monitor::CpuMeter;
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

#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhooksReport {
    pub scenario: &'static str,
    pub events: u64,
    pub concurrency: usize,
    pub ingest_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub invalid_signatures: u64,
    /// Deliveries the gateway counted as successful (`switchboard_webhook_deliveries_total`).
    pub gateway_delivered: u64,
    pub latency_ms: Latency,
    pub gateway_rss_mib: Option<f64>,
    /// Gateway CPU per delivered event (ingest, sealing, signing, delivery), µs.
    pub gateway_cpu_us_per_event: Option<f64>,
    #[serde(skip)]
    pub over_time: Vec<crate::report::SeriesPoint>,
    #[serde(skip)]
    pub distribution: Vec<crate::report::Quantile>,
}

impl WebhooksReport {
    pub fn summary(&self) -> Vec<String> {
        vec![
            format!(
                "webhooks: {} events, concurrency {}",
                self.events, self.concurrency
            ),
            format!(
                "  ingest            {:>10.0} events/s (each acknowledged after commit)",
                self.ingest_per_sec
            ),
            format!("  signed deliveries {:>10.0} /s", self.deliveries_per_sec),
            format!(
                "  delivered {}  lost {}  duplicates {}  invalid signatures {}  (the gateway counted {})",
                self.delivered,
                self.lost,
                self.duplicates,
                self.invalid_signatures,
                self.gateway_delivered
            ),
            format!("  end-to-end latency ms: {}", self.latency_ms.line()),
            crate::monitor::cpu_line(self.gateway_cpu_us_per_event, "delivered event"),
        ]
    }
}

/// An HDR histogram of milliseconds (1 ms to 1 h, 3 significant digits): fixed
/// memory however long a run is.
pub type Histogram = hdrhistogram::Histogram<u64>;

pub fn histogram() -> Histogram {
    Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds")
}

/// An HDR histogram of microseconds (1 µs to 10 min, 3 significant digits), for
/// requests that take well under a millisecond.
pub fn micros_histogram() -> Histogram {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub async fn webhooks(gw: &Gateway, p: &WebhooksParams) -> anyhow::Result<WebhooksReport> {
    let delivered_before = gw
        .counter(
            "switchboard_webhook_deliveries_total",
            &[("result", "delivered")],
        )
        .await?;
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
    let r = receiver.clone();
    let progress = crate::progress::Progress::start(
        "webhooks",
        crate::progress::Plan::Count(p.events),
        Box::new(move || {
            let t = r.tally.lock().unwrap_or_else(|e| e.into_inner());
            (t.seen.len() as u64, t.invalid_signatures)
        }),
    );
    let start_ms = switchboard_actors::clock::now_ms();
    let started = Instant::now();
    let cpu = CpuMeter::start([gw.pid()]);
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
    let cpu_per_event = cpu.per([gw.pid()], receiver.distinct() as u64);
    progress.finish().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gateway_delivered = (gw
        .counter(
            "switchboard_webhook_deliveries_total",
            &[("result", "delivered")],
        )
        .await?
        - delivered_before) as u64;
    let tally = receiver.tally.lock().unwrap_or_else(|e| e.into_inner());
    let delivered = tally.seen.len() as u64;
    let duplicates = tally
        .seen
        .values()
        .map(|n| u64::from(n.saturating_sub(1)))
        .sum();
    Ok(WebhooksReport {
        scenario: "webhooks",
        events: p.events,
        concurrency: p.concurrency,
        ingest_per_sec: p.events as f64 / ingest.as_secs_f64(),
        deliveries_per_sec: delivered as f64 / elapsed.as_secs_f64(),
        delivered,
        lost: p.events.saturating_sub(delivered),
        duplicates,
        invalid_signatures: tally.invalid_signatures,
        gateway_delivered,
        latency_ms: Latency::from_histogram(&tally.latency),
        gateway_rss_mib: gw.rss_kib().map(|k| k as f64 / 1024.0),
        gateway_cpu_us_per_event: cpu_per_event,
        over_time: tally.series.points(start_ms),
        distribution: crate::report::distribution(&tally.latency, 1.0),
    })
}

/// A keep-alive client for one worker.
pub(crate) struct GatewayClient {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<hyper::body::Bytes>,
    >,
}

impl GatewayClient {
    pub(crate) fn new(base: String) -> Self {
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

    /// Any request; returns the status once the whole answer has been read.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<&'static [u8]>,
    ) -> anyhow::Result<StatusCode> {
        use http_body_util::BodyExt;
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("x-api-key", key);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(http_body_util::Full::new(hyper::body::Bytes::from_static(
            body.unwrap_or_default(),
        )))?;
        let res = tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await??;
        let status = res.status();
        res.into_body().collect().await?;
        Ok(status)
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
    /// Inbound messages per second, all sessions together: one rate, or a rising ramp
    /// of steps, each for `duration` (each step adds T × S sessions for the extra rate).
    pub rates: Vec<f64>,
    /// How long each step runs.
    pub duration: Duration,
    pub payload_bytes: usize,
    /// Give up waiting for deliveries this long after the traffic stops.
    pub drain_timeout: Duration,
    /// Each tenant's retention of events and messages (`1m`): the sweeper runs
    /// while the traffic does.
    pub retention: Option<String>,
}

/// One step of the ramp.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineStep {
    pub target_rate: f64,
    pub duration_secs: f64,
    /// Inbound messages the gateway stored during the step (its own counter).
    pub produced: u64,
    pub produced_per_sec: f64,
    /// Of the events created during the step, how many were delivered.
    pub delivered: u64,
    /// End-to-end latency of the events created during the step.
    pub latency_ms: Latency,
    /// Gateway CPU during the step per message stored in it, µs.
    pub gateway_cpu_us_per_event: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineReport {
    pub scenario: &'static str,
    pub tenants: usize,
    pub sessions: usize,
    /// The highest step rate (the only one, unless ramped).
    pub target_rate: f64,
    /// Traffic time, all steps.
    pub duration_secs: f64,
    /// Inbound messages the gateway stored (its own counter).
    pub produced: u64,
    pub produced_per_sec: f64,
    pub delivered: u64,
    pub delivered_per_sec: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub invalid_signatures: u64,
    /// Deliveries the gateway counted as successful (`switchboard_webhook_deliveries_total`).
    pub gateway_delivered: u64,
    pub latency_ms: Latency,
    pub steps: Vec<PipelineStep>,
    /// Gateway CPU (every replica) from the first step to the last delivery, per
    /// delivered event, µs.
    pub gateway_cpu_us_per_event: Option<f64>,
    /// The highest stored rate of a step whose p99 stayed under 100 ms.
    pub sustained_rate_p99_under_100ms: Option<f64>,
    pub gateway_rss_mib: Option<f64>,
    /// End-to-end latency by the second events arrived.
    #[serde(skip)]
    pub over_time: Vec<crate::report::SeriesPoint>,
    #[serde(skip)]
    pub distribution: Vec<crate::report::Quantile>,
}

impl PipelineReport {
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "pipeline: {} tenants × {} sim sessions, {} for {:.1}s",
                self.tenants,
                self.sessions / self.tenants.max(1),
                if self.steps.len() > 1 {
                    format!(
                        "ramp {}/s",
                        self.steps
                            .iter()
                            .map(|s| format!("{:.0}", s.target_rate))
                            .collect::<Vec<_>>()
                            .join(" → ")
                    )
                } else {
                    format!("target {:.0} inbound/s", self.target_rate)
                },
                self.duration_secs
            ),
            format!(
                "  produced  {:>8}  ({:.0}/s, stored by the gateway)",
                self.produced, self.produced_per_sec
            ),
            format!(
                "  delivered {:>8}  ({:.0}/s, signed webhooks verified; the gateway counted {})",
                self.delivered, self.delivered_per_sec, self.gateway_delivered
            ),
            format!(
                "  lost {}  duplicates {}  invalid signatures {}",
                self.lost, self.duplicates, self.invalid_signatures
            ),
            format!(
                "  end-to-end latency ms (event created → received): {}",
                self.latency_ms.line()
            ),
            crate::monitor::cpu_line(self.gateway_cpu_us_per_event, "delivered event"),
        ];
        if self.steps.len() > 1 {
            out.push(
                "  step  target/s  stored/s  delivered   p50 ms  p90 ms  p99 ms  max ms  CPU µs/event"
                    .into(),
            );
            for (i, s) in self.steps.iter().enumerate() {
                let l = &s.latency_ms;
                out.push(format!(
                    "  {:>4}  {:>8.0}  {:>8.0}  {:>9}  {:>7.0}  {:>6.0}  {:>6.0}  {:>6.0}  {:>12}",
                    i + 1,
                    s.target_rate,
                    s.produced_per_sec,
                    s.delivered,
                    l.p50,
                    l.p90,
                    l.p99,
                    l.max,
                    s.gateway_cpu_us_per_event
                        .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"))
                ));
            }
        }
        out.push(match self.sustained_rate_p99_under_100ms {
            Some(r) => format!("  sustained with p99 < 100 ms: {r:.0} inbound/s"),
            None => "  no step kept p99 under 100 ms".into(),
        });
        out
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// `p50 … p90 … p99 … p99.9 … max …`, whole milliseconds when above 10 ms.
    pub fn line(&self) -> String {
        let f = |v: f64| {
            if v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        };
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            f(self.p50),
            f(self.p90),
            f(self.p99),
            f(self.p999),
            f(self.max)
        )
    }

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

    /// From a histogram of microseconds, in fractional milliseconds.
    pub fn from_micros(h: &Histogram) -> Self {
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(p) as f64 / 1000.0
            }
        };
        Self {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1000.0
            },
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

/// A counter summed over gateways (replicas of one deployment).
async fn counter_sum(gws: &[Gateway], name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for gw in gws {
        sum += gw.counter(name, labels).await?;
    }
    Ok(sum)
}

/// The gateways' count of stored inbound messages of `channel`, from `/metrics`.
async fn inbound_total(gws: &[Gateway], channel: &str) -> anyhow::Result<u64> {
    Ok(counter_sum(
        gws,
        "switchboard_inbound_messages_total",
        &[("channel", channel)],
    )
    .await? as u64)
}

/// The gateways' stored count once it stops moving: after the sessions stop, messages
/// they produced may still be queued for the event writer (seconds of them when the
/// run saturated it). Gives up waiting after 30 s and returns the last reading.
async fn settled_inbound_total(gws: &[Gateway], channel: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = inbound_total(gws, channel).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = inbound_total(gws, channel).await?;
        if now == last || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Creates a webhook endpoint for `message.received` at the receiver.
pub(crate) async fn receiving_endpoint(
    gw: &Gateway,
    key: &str,
    receiver: &Receiver,
    secret: &WebhookSecret,
) -> anyhow::Result<()> {
    let body = json!({ "url": receiver.url, "secret": secret.to_text().expose(),
        "events": ["message.received"], "max_in_flight": 100 });
    let (status, ep) = gw
        .call(Method::POST, "/v1/webhooks", key, Some(&body))
        .await?;
    if status == StatusCode::CREATED {
        return Ok(());
    }
    if !gw.spawned() && status.is_client_error() {
        bail!(
            "creating an endpoint at the bench's receiver ({}): {status} {ep}; an attached gateway must accept loopback webhook URLs (SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS=true)",
            receiver.url
        );
    }
    bail!("creating an endpoint: {status} {ep}")
}

/// T tenants × S sim sessions generating inbound messages at a total rate (or a ramp
/// of rates) for a duration each; every `message.received` goes to a verifying
/// receiver. Lost = stored by the gateway but never delivered.
///
/// `gws` are replicas of one deployment (one shared Postgres): sessions are created
/// through each in turn (each lands on the least loaded), counters are summed over
/// all of them. One gateway is the usual case.
pub async fn pipeline(gws: &[Gateway], p: &PipelineParams) -> anyhow::Result<PipelineReport> {
    let gw = gws.first().context("no gateway")?;
    anyhow::ensure!(!p.rates.is_empty(), "no rate given");
    anyhow::ensure!(
        p.rates.windows(2).all(|w| w[0] < w[1]),
        "a ramp's rates must rise step by step (got {:?})",
        p.rates
    );
    let session_count = (p.tenants * p.sessions) as f64;
    let mut previous = 0.0;
    for rate in &p.rates {
        let per_session = (rate - previous) / session_count;
        previous = *rate;
        anyhow::ensure!(
            per_session > 0.0 && per_session <= 10_000.0,
            "rate per session must be above 0 and at most 10000/s (got {per_session:.1})"
        );
    }
    let secret = WebhookSecret::generate()?;
    let receiver = Receiver::start(secret.clone()).await?;
    let before = inbound_total(gws, "sim").await?;
    let delivered_before = counter_sum(
        gws,
        "switchboard_webhook_deliveries_total",
        &[("result", "delivered")],
    )
    .await?;
    let mut keys = Vec::new();
    for t in 0..p.tenants {
        let (_, key) = gw
            .unthrottled_tenant(&format!("bench-pipeline-{t}"))
            .await?;
        receiving_endpoint(gw, &key, &receiver, &secret).await?;
        if let Some(r) = &p.retention {
            let body = json!({ "retention": { "events": r, "messages": r } });
            let (status, v) = gw
                .call(Method::PUT, "/v1/consent", &key, Some(&body))
                .await?;
            anyhow::ensure!(status.is_success(), "setting the retention: {status} {v}");
        }
        keys.push(key);
    }
    let r = receiver.clone();
    let progress = crate::progress::Progress::start(
        "pipeline",
        crate::progress::Plan::For(p.duration * p.rates.len() as u32),
        Box::new(move || {
            let t = r.tally.lock().unwrap_or_else(|e| e.into_inner());
            (t.seen.len() as u64, t.invalid_signatures)
        }),
    );
    let start_ms = switchboard_actors::clock::now_ms();
    let started = Instant::now();
    let pids = || gws.iter().map(Gateway::pid);
    let cpu = CpuMeter::start(pids());
    let mut steps = Vec::new();
    let mut last_total = before;
    let (mut sessions, mut running) = (Vec::new(), 0.0);
    for (i, &rate) in p.rates.iter().enumerate() {
        let step_started = Instant::now();
        let step_cpu = CpuMeter::start(pids());
        receiver.begin_phase(switchboard_actors::clock::now_ms());
        // A ramp adds sessions for the extra rate; the earlier ones keep running, so
        // no step pays for stopping and starting the whole load.
        let added = (rate - running) / session_count;
        running = rate;
        for key in &keys {
            for _ in 0..p.sessions {
                let body = json!({ "channel": "sim", "config": {
                    "inbound_per_second": added, "payload_bytes": p.payload_bytes } });
                let through = &gws[sessions.len() % gws.len()];
                let (status, s) = through
                    .call(Method::POST, "/v1/sessions", key, Some(&body))
                    .await?;
                if status != StatusCode::CREATED {
                    bail!("creating a session: {status} {s}");
                }
                sessions.push((key, s["id"].as_str().context("session id")?.to_owned()));
            }
        }
        tokio::time::sleep(p.duration.saturating_sub(step_started.elapsed())).await;
        let last = i + 1 == p.rates.len();
        if last {
            for (n, (key, id)) in sessions.iter().enumerate() {
                let (status, v) = gws[n % gws.len()]
                    .call(Method::POST, &format!("/v1/sessions/{id}/stop"), key, None)
                    .await?;
                if !status.is_success() {
                    bail!("stopping {id}: {status} {v}");
                }
            }
        }
        let ran = step_started.elapsed();
        let total = if last {
            settled_inbound_total(gws, "sim").await?
        } else {
            inbound_total(gws, "sim").await?
        };
        let produced = total - last_total;
        last_total = total;
        steps.push(PipelineStep {
            target_rate: rate,
            duration_secs: ran.as_secs_f64(),
            produced,
            produced_per_sec: produced as f64 / ran.as_secs_f64(),
            delivered: 0,
            latency_ms: Latency::from_histogram(&histogram()),
            gateway_cpu_us_per_event: step_cpu.per(pids(), produced),
        });
    }
    let ran: f64 = steps.iter().map(|s| s.duration_secs).sum();
    progress.finish().await;
    let produced = last_total - before;
    let r = receiver.clone();
    let drain = crate::progress::Progress::start(
        "draining",
        crate::progress::Plan::Count(produced),
        Box::new(move || {
            let t = r.tally.lock().unwrap_or_else(|e| e.into_inner());
            (t.seen.len() as u64, t.invalid_signatures)
        }),
    );
    let deadline = Instant::now() + p.drain_timeout;
    while (receiver.distinct() as u64) < produced && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain.finish().await;
    let all = started.elapsed();
    let cpu_per_event = cpu.per(pids(), receiver.distinct() as u64);
    // The dispatcher counts a delivery after the receiver answered it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gateway_delivered = (counter_sum(
        gws,
        "switchboard_webhook_deliveries_total",
        &[("result", "delivered")],
    )
    .await?
        - delivered_before) as u64;
    let tally = receiver.tally.lock().unwrap_or_else(|e| e.into_inner());
    for (step, (_, h)) in steps.iter_mut().zip(&tally.phases) {
        step.delivered = h.len();
        step.latency_ms = Latency::from_histogram(h);
    }
    let delivered = tally.seen.len() as u64;
    Ok(PipelineReport {
        scenario: "pipeline",
        tenants: p.tenants,
        sessions: p.tenants * p.sessions,
        target_rate: p.rates.iter().copied().fold(0.0, f64::max),
        duration_secs: ran,
        produced,
        produced_per_sec: produced as f64 / ran,
        delivered,
        delivered_per_sec: delivered as f64 / all.as_secs_f64(),
        lost: produced.saturating_sub(delivered),
        duplicates: tally
            .seen
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum(),
        invalid_signatures: tally.invalid_signatures,
        gateway_delivered,
        latency_ms: Latency::from_histogram(&tally.latency),
        gateway_cpu_us_per_event: cpu_per_event,
        sustained_rate_p99_under_100ms: steps
            .iter()
            .filter(|s| s.delivered > 0 && s.latency_ms.p99 < 100.0)
            .map(|s| s.produced_per_sec)
            .fold(None, |best: Option<f64>, r| {
                Some(best.map_or(r, |b| b.max(r)))
            }),
        steps,
        gateway_rss_mib: gws
            .iter()
            .map(Gateway::rss_kib)
            .sum::<Option<u64>>()
            .map(|k| k as f64 / 1024.0),
        over_time: tally.series.points(start_ms),
        distribution: crate::report::distribution(&tally.latency, 1.0),
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

#[derive(Debug, Clone, serde::Serialize)]
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

#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboundReport {
    pub scenario: &'static str,
    pub burst: u32,
    pub tenants: Vec<TenantOutbound>,
    /// Jain's index over measured/configured (1 = every tenant got its share).
    pub fairness: f64,
    pub lost: u64,
    /// Sends the gateway counted (`switchboard_messages_sent_total`) during the run.
    pub gateway_sent: u64,
    pub gateway_rss_mib: Option<f64>,
    /// Queue latency of every send, by the second it went out.
    #[serde(skip)]
    pub over_time: Vec<crate::report::SeriesPoint>,
    #[serde(skip)]
    pub distribution: Vec<crate::report::Quantile>,
}

impl OutboundReport {
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "outbound: {} tenants queue at once (burst {}); one sim session each",
                self.tenants.len(),
                self.burst
            ),
            "  limit/s  queued  sent  measured/s  accuracy  queue latency ms p50  p99  max".into(),
        ];
        for t in &self.tenants {
            let l = &t.queue_latency_ms;
            out.push(format!(
                "  {:>7}  {:>6}  {:>4}  {:>10.2}  {:>7.1}%  {:>20.0}  {:>4.0}  {:>4.0}",
                t.configured_per_sec,
                t.queued,
                t.sent,
                t.measured_per_sec,
                t.accuracy * 100.0,
                l.p50,
                l.p99,
                l.max
            ));
        }
        out.push(format!(
            "  fairness (Jain, over measured/configured) {:.3}   lost {}   the gateway counted {} sent",
            self.fairness, self.lost, self.gateway_sent
        ));
        out
    }
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
    let sent_before = gw.counter("switchboard_messages_sent_total", &[]).await?;
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
    let total: u64 = tenants.iter().map(|t| t.3).sum();
    let (done, d) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let probe = done.clone();
    let progress = crate::progress::Progress::start(
        "queueing",
        crate::progress::Plan::Count(total),
        Box::new(move || (probe.load(Ordering::Relaxed), 0)),
    );
    let start_ms = switchboard_actors::clock::now_ms();
    let mut queueing = Vec::new();
    for (t, (key, session, _, n)) in tenants.iter().cloned().enumerate() {
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..QUEUE_WORKERS {
            let (key, session, next) = (key.clone(), session.clone(), next.clone());
            let done = done.clone();
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
                    done.fetch_add(1, Ordering::Relaxed);
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
    progress.finish().await;
    let probe = d.clone();
    let progress = crate::progress::Progress::start(
        "sending",
        crate::progress::Plan::Count(total),
        Box::new(move || (probe.load(Ordering::Relaxed), 0)),
    );
    let mut report = Vec::new();
    let mut lost = 0;
    let mut series = crate::report::TimeSeries::new();
    let mut all = histogram();
    let mut sent_so_far = 0;
    for ((key, _, limit, n), queued) in tenants.iter().zip(&queued_at) {
        let expected = *n as f64 / f64::from((*limit).max(1));
        let deadline = Instant::now() + Duration::from_secs_f64(expected) + p.drain_timeout;
        let sent = loop {
            let sent = all_events(gw, key, "message.sent").await?;
            d.store(sent_so_far + sent.len() as u64, Ordering::Relaxed);
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
                let ms = (at - q).max(0) as u64;
                latency.saturating_record(ms);
                all.saturating_record(ms);
                series.record(at, ms);
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
        sent_so_far += sent.len() as u64;
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
    progress.finish().await;
    let gateway_sent =
        (gw.counter("switchboard_messages_sent_total", &[]).await? - sent_before) as u64;
    Ok(OutboundReport {
        scenario: "outbound",
        burst: p.burst,
        tenants: report,
        fairness,
        lost,
        gateway_sent,
        gateway_rss_mib: gw.rss_kib().map(|k| k as f64 / 1024.0),
        over_time: series.points(start_ms),
        distribution: crate::report::distribution(&all, 1.0),
    })
}

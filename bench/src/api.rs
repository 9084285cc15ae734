//! The `api` scenario: authenticated HTTP API throughput and latency at a given
//! concurrency, each worker a keep-alive connection sending requests back to back
//! with the tenant's API key. Every answer's status is counted; the gateway's own
//! request counter (`switchboard_http_requests_total`) must agree with ours.

use crate::monitor::CpuMeter;
use crate::report::{Quantile, SeriesPoint, TimeSeries};
use crate::scenarios::{GatewayClient, Histogram, Latency, micros_histogram};
use crate::target::Gateway;
use anyhow::{Context, bail};
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which requests the workers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// `GET /v1/sessions/{id}`: authentication, routing, one indexed read.
    Read,
    /// `POST /v1/sessions/{id}/messages`: a durable, queued send (202).
    Write,
    /// 8 reads : 1 `GET /v1/events?limit=10` : 1 send.
    Mixed,
}

#[derive(Debug, Clone)]
pub struct ApiParams {
    pub concurrency: usize,
    pub duration: Duration,
    pub mix: Mix,
}

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Call {
    Session,
    Events,
    Send,
}

impl Call {
    /// The gateway's route label and method for it.
    fn route(self) -> (&'static str, &'static str) {
        match self {
            Call::Session => ("/v1/sessions/{id}", "GET"),
            Call::Events => ("/v1/events", "GET"),
            Call::Send => ("/v1/sessions/{id}/messages", "POST"),
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Call::Send => StatusCode::ACCEPTED,
            _ => StatusCode::OK,
        }
    }

    /// The `i`-th request of a worker.
    fn nth(mix: Mix, i: u64) -> Self {
        match (mix, i % 10) {
            (Mix::Read, _) | (Mix::Mixed, 0..=7) => Call::Session,
            (Mix::Mixed, 8) => Call::Events,
            _ => Call::Send,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStats {
    pub method: &'static str,
    pub requests: u64,
    pub errors: u64,
    /// What the gateway counted for this route while the load ran.
    pub gateway_counted: u64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiReport {
    pub scenario: &'static str,
    pub mix: Mix,
    pub concurrency: usize,
    pub duration_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Answers other than the expected status (200, or 202 for sends), and transport
    /// failures.
    pub errors: u64,
    /// Answers by status code ("transport" for requests that got none).
    pub statuses: BTreeMap<String, u64>,
    /// Requests the gateway counted on these routes (`switchboard_http_requests_total`).
    pub gateway_counted: u64,
    pub latency_ms: Latency,
    /// Gateway CPU during the run per answered request, µs (with `--mix write`, the
    /// queued sends going out meanwhile are part of it).
    pub gateway_cpu_us_per_request: Option<f64>,
    pub routes: BTreeMap<&'static str, RouteStats>,
    #[serde(skip)]
    pub over_time: Vec<SeriesPoint>,
    #[serde(skip)]
    pub distribution: Vec<Quantile>,
}

impl ApiReport {
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "api: {:?} mix, concurrency {}, {:.1}s, one tenant API key",
                self.mix, self.concurrency, self.duration_secs
            )
            .to_lowercase(),
            format!(
                "  {} requests  {:.0}/s  errors {}  (the gateway counted {})",
                self.requests, self.requests_per_sec, self.errors, self.gateway_counted
            ),
            format!("  latency ms: {}", self.latency_ms.line()),
            crate::monitor::cpu_line(self.gateway_cpu_us_per_request, "answered request"),
            "  route                              requests  errors  p50 ms  p99 ms  max ms".into(),
        ];
        for (route, r) in &self.routes {
            out.push(format!(
                "  {:<34} {:>8}  {:>6}  {:>6.2}  {:>6.2}  {:>6.1}",
                format!("{} {route}", r.method),
                r.requests,
                r.errors,
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.latency_ms.max
            ));
        }
        out
    }
}

/// What one worker saw.
struct Seen {
    latency: BTreeMap<Call, (u64, u64, Histogram)>,
    statuses: BTreeMap<String, u64>,
    series: TimeSeries,
}

/// What the gateway counted on the routes of `calls`.
async fn counted(gw: &Gateway, calls: &[Call]) -> anyhow::Result<BTreeMap<Call, u64>> {
    let mut per = BTreeMap::new();
    for &c in calls {
        let (route, method) = c.route();
        let n = gw
            .counter(
                "switchboard_http_requests_total",
                &[("route", route), ("method", method)],
            )
            .await?;
        per.insert(c, n as u64);
    }
    Ok(per)
}

pub async fn api(gw: &Gateway, p: &ApiParams) -> anyhow::Result<ApiReport> {
    anyhow::ensure!(
        (1..=1_000).contains(&p.concurrency),
        "concurrency: 1 to 1000"
    );
    let (_, key) = gw.unthrottled_tenant("bench-api").await?;
    let (status, s) = gw
        .call(
            Method::POST,
            "/v1/sessions",
            &key,
            Some(&json!({ "channel": "sim", "name": "bench api" })),
        )
        .await?;
    if status != StatusCode::CREATED {
        bail!("creating a session: {status} {s}");
    }
    let session = s["id"].as_str().context("session id")?.to_owned();
    let calls: Vec<Call> = match p.mix {
        Mix::Read => vec![Call::Session],
        Mix::Write => vec![Call::Send],
        Mix::Mixed => vec![Call::Session, Call::Events, Call::Send],
    };
    let before = counted(gw, &calls).await?;

    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (d, e) = (done.clone(), errors.clone());
    let progress = crate::progress::Progress::start(
        "api",
        crate::progress::Plan::For(p.duration),
        Box::new(move || (d.load(Ordering::Relaxed), e.load(Ordering::Relaxed))),
    );
    let start_ms = switchboard_actors::clock::now_ms();
    let started = Instant::now();
    let cpu = CpuMeter::start([gw.pid()]);
    let mut workers = Vec::new();
    for w in 0..p.concurrency {
        let client = GatewayClient::new(gw.base.clone());
        let (key, mix, duration) = (key.clone(), p.mix, p.duration);
        let session_path = format!("/v1/sessions/{session}");
        let send_path = format!("/v1/sessions/{session}/messages");
        let (done, errors) = (done.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Seen {
                latency: BTreeMap::new(),
                statuses: BTreeMap::new(),
                series: TimeSeries::micros(),
            };
            // Workers start at different points of the mix.
            let mut i = w as u64;
            while started.elapsed() < duration {
                let call = Call::nth(mix, i);
                i += 1;
                let t = Instant::now();
                let result = match call {
                    Call::Session => client.request(Method::GET, &session_path, &key, None).await,
                    Call::Events => {
                        client
                            .request(Method::GET, "/v1/events?limit=10", &key, None)
                            .await
                    }
                    Call::Send => {
                        client
                            .request(
                                Method::POST,
                                &send_path,
                                &key,
                                Some(br#"{"to":"+15550001","text":"bench api"}"#),
                            )
                            .await
                    }
                };
                let micros = t.elapsed().as_micros() as u64;
                let ok = matches!(&result, Ok(s) if *s == call.expected());
                let status =
                    result.map_or_else(|_| "transport".to_owned(), |s| s.as_u16().to_string());
                *seen.statuses.entry(status).or_default() += 1;
                let entry = seen
                    .latency
                    .entry(call)
                    .or_insert_with(|| (0, 0, micros_histogram()));
                entry.0 += 1;
                entry.2.saturating_record(micros);
                seen.series
                    .record(switchboard_actors::clock::now_ms(), micros);
                done.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    entry.1 += 1;
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen
        }));
    }
    let mut all = micros_histogram();
    let mut per: BTreeMap<Call, (u64, u64, Histogram)> = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    let mut series = TimeSeries::micros();
    for w in workers {
        let seen = w.await?;
        for (call, (n, errs, h)) in seen.latency {
            all.add(&h)?;
            let e = per
                .entry(call)
                .or_insert_with(|| (0, 0, micros_histogram()));
            e.0 += n;
            e.1 += errs;
            e.2.add(&h)?;
        }
        for (s, n) in seen.statuses {
            *statuses.entry(s).or_default() += n;
        }
        series.merge(&seen.series)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let answered = all.len() - statuses.get("transport").copied().unwrap_or(0);
    let cpu_per_request = cpu.per([gw.pid()], answered);
    progress.finish().await;
    let after = counted(gw, &calls).await?;
    let mut routes = BTreeMap::new();
    for (call, (n, errs, h)) in &per {
        let (route, method) = call.route();
        routes.insert(
            route,
            RouteStats {
                method,
                requests: *n,
                errors: *errs,
                gateway_counted: after[call].saturating_sub(before[call]),
                latency_ms: Latency::from_micros(h),
            },
        );
    }
    let requests = all.len();
    // Stop the session so an attached gateway is not left sending the queued messages.
    let _ = gw
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/stop"),
            &key,
            None,
        )
        .await;
    Ok(ApiReport {
        scenario: "api",
        mix: p.mix,
        concurrency: p.concurrency,
        duration_secs: elapsed,
        requests,
        requests_per_sec: requests as f64 / elapsed,
        errors: errors.load(Ordering::Relaxed),
        statuses,
        gateway_counted: routes.values().map(|r| r.gateway_counted).sum(),
        latency_ms: Latency::from_micros(&all),
        gateway_cpu_us_per_request: cpu_per_request,
        routes,
        over_time: series.points(start_ms),
        distribution: crate::report::distribution(&all, 1000.0),
    })
}

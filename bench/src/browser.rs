//! The `browser` scenario: N WhatsApp sessions paired through the real flow against
//! the stand-in WhatsApp Web (the gateway drives real Chromium; the bench plays the
//! phone), measuring time to QR, time to `WORKING`, and memory: the sum of PSS over
//! the Chromium process tree (what the sessions really cost; RSS counts shared pages
//! once per process) and the gateway's own PSS, at each checkpoint.

use crate::target::Gateway;
use anyhow::{Context, bail};
use http::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard_actors::browser::trees_pss;
use switchboard_actors::testkit::whatsapp::WhatsAppStandin;

#[derive(Debug, Clone)]
pub struct BrowserParams {
    /// Measure after this many sessions are paired (ascending).
    pub checkpoints: Vec<usize>,
    /// Settle time before each measurement.
    pub settle: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Checkpoint {
    pub sessions: usize,
    pub chromium_pss_bytes: u64,
    pub chromium_processes: usize,
    /// (PSS now − PSS at the previous checkpoint) / sessions added.
    pub pss_per_added_session_bytes: Option<u64>,
    pub gateway_pss_bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BrowserReport {
    pub scenario: &'static str,
    pub checkpoints: Vec<Checkpoint>,
    pub time_to_qr_ms: Vec<u64>,
    pub time_to_working_ms: Vec<u64>,
    /// Sessions the gateway reported `WORKING` at the end.
    pub gateway_working: u64,
    /// Time to `WORKING` of each session, by when it got there.
    #[serde(skip)]
    pub over_time: Vec<crate::report::SeriesPoint>,
    #[serde(skip)]
    pub distribution: Vec<crate::report::Quantile>,
}

impl BrowserReport {
    pub fn summary(&self, browser_args: &str) -> Vec<String> {
        let pct = |v: &[u64], q: f64| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let mut out = vec![
            format!(
                "browser: {} WhatsApp sessions paired against the stand-in ({} WORKING at the end); Chromium flags: {}",
                self.time_to_working_ms.len(),
                self.gateway_working,
                if browser_args.is_empty() {
                    "(defaults)"
                } else {
                    browser_args
                }
            ),
            format!(
                "  time to QR ms: p50 {}  p90 {}  max {}   time to WORKING ms: p50 {}  p90 {}  max {}",
                pct(&self.time_to_qr_ms, 0.5),
                pct(&self.time_to_qr_ms, 0.9),
                pct(&self.time_to_qr_ms, 1.0),
                pct(&self.time_to_working_ms, 0.5),
                pct(&self.time_to_working_ms, 0.9),
                pct(&self.time_to_working_ms, 1.0)
            ),
            "  sessions  chromium PSS MiB  processes  MiB per added session  gateway PSS MiB"
                .into(),
        ];
        for c in &self.checkpoints {
            out.push(format!(
                "  {:>8}  {:>16.1}  {:>9}  {:>21}  {:>15.1}",
                c.sessions,
                mib(c.chromium_pss_bytes),
                c.chromium_processes,
                c.pss_per_added_session_bytes
                    .map_or("-".to_owned(), |b| format!("{:.1}", mib(b))),
                mib(c.gateway_pss_bytes)
            ));
        }
        out
    }
}

fn pss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn tenant_get(gw: &Gateway, key: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let (status, v) = gw.call(Method::GET, path, key, None).await?;
    Ok((status.as_u16(), v))
}

/// Pairs one session; returns (time to first QR, time to WORKING).
pub(crate) async fn pair_one(
    gw: &Gateway,
    key: &str,
    standin: &WhatsAppStandin,
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let (status, created) = gw
        .call(
            Method::POST,
            "/v1/sessions",
            key,
            Some(&json!({ "channel": "whatsapp", "name": format!("bench {n}") })),
        )
        .await?;
    if !status.is_success() {
        bail!("creating a session: {status} {created}");
    }
    let id = created["id"].as_str().context("session id")?.to_owned();
    let deadline = started + Duration::from_secs(60);
    let phone = format!("1555{n:07}");
    let mut to_qr = None;
    loop {
        if Instant::now() > deadline {
            bail!("session {id} was not paired within 60 s");
        }
        let (status, qr) =
            tenant_get(gw, key, &format!("/v1/sessions/{id}/qr?format=json")).await?;
        if status == 200 {
            to_qr.get_or_insert_with(|| started.elapsed());
            if standin
                .scan(qr["value"].as_str().unwrap_or_default(), &phone)
                .is_ok()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        if Instant::now() > deadline {
            bail!("session {id} did not reach WORKING within 60 s");
        }
        let (_, s) = tenant_get(gw, key, &format!("/v1/sessions/{id}")).await?;
        if s["status"] == "WORKING" {
            return Ok((to_qr.unwrap_or_default(), started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PSS over every Chromium the gateway runs: the shared one (`chromium.pid`) and
/// one per session (`profiles/<session>.pid`).
fn chromium_pss(dir: &std::path::Path) -> (u64, usize) {
    let mut pid_files = vec![dir.join("chromium.pid")];
    if let Ok(entries) = std::fs::read_dir(dir.join("profiles")) {
        pid_files.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pid")),
        );
    }
    let roots: Vec<u32> = pid_files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse::<u32>().ok())
        .collect();
    trees_pss(&roots)
}

pub async fn browser(
    gw: &Gateway,
    standin: &WhatsAppStandin,
    p: &BrowserParams,
) -> anyhow::Result<BrowserReport> {
    let (_, key) = gw.unthrottled_tenant("bench-browser").await?;
    let data_dir = gw.data_dir().context("the bench needs a spawned gateway")?;
    let mut report = BrowserReport {
        scenario: "browser",
        checkpoints: Vec::new(),
        time_to_qr_ms: Vec::new(),
        time_to_working_ms: Vec::new(),
        gateway_working: 0,
        over_time: Vec::new(),
        distribution: Vec::new(),
    };
    let started = Instant::now();
    let mut paired = 0;
    let mut previous: Option<(usize, u64)> = None;
    for &target in &p.checkpoints {
        while paired < target {
            paired += 1;
            let (qr, working) = pair_one(gw, &key, standin, paired).await?;
            report.time_to_qr_ms.push(qr.as_millis() as u64);
            report.time_to_working_ms.push(working.as_millis() as u64);
            let ms = working.as_secs_f64() * 1000.0;
            report.over_time.push(crate::report::SeriesPoint {
                t_secs: started.elapsed().as_secs_f64(),
                count: 1,
                p50_ms: ms,
                p99_ms: ms,
                max_ms: ms,
            });
            eprintln!("  paired {paired}/{target} in {ms:.0} ms");
        }
        tokio::time::sleep(p.settle).await;
        let (pss, processes) = chromium_pss(&data_dir.join("browser"));
        let per = previous.map(|(n, prev)| pss.saturating_sub(prev) / (target - n).max(1) as u64);
        report.checkpoints.push(Checkpoint {
            sessions: target,
            chromium_pss_bytes: pss,
            chromium_processes: processes,
            pss_per_added_session_bytes: per,
            gateway_pss_bytes: gw.pid().map_or(0, pss_of),
        });
        previous = Some((target, pss));
    }
    let ms: Vec<f64> = report
        .time_to_working_ms
        .iter()
        .map(|&m| m as f64)
        .collect();
    report.distribution = crate::report::distribution_of(&ms);
    let (status, listed) = gw.call(Method::GET, "/v1/sessions", &key, None).await?;
    if !status.is_success() {
        bail!("listing sessions: {status} {listed}");
    }
    report.gateway_working = listed["data"].as_array().map_or(0, |a| {
        a.iter().filter(|s| s["status"] == "WORKING").count() as u64
    });
    Ok(report)
}

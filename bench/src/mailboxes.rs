//! The `mailboxes` scenario: N e-mail sessions on one real Dovecot (with
//! `imap-hibernate`, so Dovecot itself holds thousands of IDLE connections in one
//! process), each idle after its first sync. Measured at each checkpoint: the time
//! until every added mailbox is `WORKING` (synced, on IDLE), the gateway's PSS and
//! Dovecot's (its whole process tree), and at the end the latency from an IMAP
//! APPEND to the verified `message.received` webhook while all of them idle.
//!
//! The memory per mailbox is the slope of a least-squares fit of the gateway's PSS
//! over the mailbox count (0 included), not total / N: what one more mailbox costs,
//! without the gateway's fixed cost.

use crate::target::Gateway;
use anyhow::{Context, bail};
use http::Method;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_actors::browser::trees_pss;
use switchboard_actors::clock;
use switchboard_actors::testkit::mail::MailServers;
use switchboard_crypto::webhook::{self, WebhookSecret};

const PASSWORD: &str = "bench-mailbox-pw";
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[derive(Debug, Clone)]
pub struct MailboxParams {
    /// Measure after this many mailboxes are idle (ascending).
    pub checkpoints: Vec<usize>,
    /// APPENDs whose webhook latency is measured at the end.
    pub probes: usize,
    /// Settle time before each memory measurement.
    pub settle: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MailboxCheckpoint {
    pub mailboxes: usize,
    /// From creating the first of this step's mailboxes to all of them `WORKING`.
    pub seconds_until_idle: f64,
    pub gateway_pss_bytes: u64,
    pub dovecot_pss_bytes: u64,
    pub dovecot_processes: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MailboxReport {
    pub scenario: &'static str,
    /// Gateway PSS with no mailbox.
    pub gateway_pss_empty_bytes: u64,
    pub checkpoints: Vec<MailboxCheckpoint>,
    /// Slope of the fit of gateway PSS over mailboxes.
    pub gateway_bytes_per_mailbox: f64,
    pub probes_sent: usize,
    pub probes_received: usize,
    pub append_to_webhook_p50_ms: f64,
    pub append_to_webhook_p99_ms: f64,
    pub append_to_webhook_max_ms: f64,
    pub invalid_signatures: u64,
    #[serde(skip)]
    pub distribution: Vec<crate::report::Quantile>,
}

impl MailboxReport {
    pub fn summary(&self) -> Vec<String> {
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let mut out = vec![
            format!(
                "mailboxes: {} e-mail sessions on one Dovecot (imap-hibernate), each on IDLE",
                self.checkpoints.last().map_or(0, |c| c.mailboxes)
            ),
            format!(
                "  gateway: {:.1} KiB per idle mailbox (slope of PSS over count; {:.1} MiB with none)",
                self.gateway_bytes_per_mailbox / 1024.0,
                mib(self.gateway_pss_empty_bytes)
            ),
            "  mailboxes  s until all idle  gateway PSS MiB  dovecot PSS MiB  dovecot processes"
                .into(),
        ];
        for c in &self.checkpoints {
            out.push(format!(
                "  {:>9}  {:>16.1}  {:>15.1}  {:>15.1}  {:>17}",
                c.mailboxes,
                c.seconds_until_idle,
                mib(c.gateway_pss_bytes),
                mib(c.dovecot_pss_bytes),
                c.dovecot_processes
            ));
        }
        out.push(format!(
            "  APPEND → verified webhook while all idle: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} of {} probes)",
            self.append_to_webhook_p50_ms,
            self.append_to_webhook_p99_ms,
            self.append_to_webhook_max_ms,
            self.probes_received,
            self.probes_sent
        ));
        out
    }
}

/// Least-squares slope of y over x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
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

/// Probe subjects carry when they were appended: `bench-probe <n> t=<unix ms>`.
#[derive(Debug, Default)]
struct Probes {
    latencies_ms: Vec<f64>,
    invalid: u64,
}

/// A verifying receiver that records each probe's APPEND → webhook latency.
async fn receiver(probes: Arc<Mutex<Probes>>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let secret = Arc::new(WebhookSecret::parse(SECRET)?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (probes, secret) = (probes.clone(), secret.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (probes, secret) = (probes.clone(), secret.clone());
                    async move {
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
                        let now = clock::now_ms();
                        let valid =
                            webhook::verify([secret.as_ref()], &id, &ts, &sig, &body, now / 1000)
                                .is_ok();
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let sent = v["data"]["subject"]
                            .as_str()
                            .and_then(|s| s.split_once(" t="))
                            .and_then(|(_, t)| t.parse::<i64>().ok());
                        let mut p = probes.lock().unwrap_or_else(|e| e.into_inner());
                        if !valid {
                            p.invalid += 1;
                        } else if let Some(t) = sent {
                            p.latencies_ms.push((now - t) as f64);
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"ok")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(url)
}

/// How many of the tenant's sessions are `WORKING`.
async fn working(gw: &Gateway, key: &str) -> anyhow::Result<usize> {
    let (status, listed) = gw.call(Method::GET, "/v1/sessions", key, None).await?;
    if !status.is_success() {
        bail!("listing sessions: {status} {listed}");
    }
    Ok(listed["data"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|s| s["status"] == "WORKING").count()))
}

pub async fn mailboxes(
    gw: &Gateway,
    servers: &MailServers,
    p: &MailboxParams,
) -> anyhow::Result<MailboxReport> {
    let (_, key) = gw.unthrottled_tenant("bench-mailboxes").await?;
    let probes = Arc::new(Mutex::new(Probes::default()));
    let url = receiver(probes.clone()).await?;
    let (status, hook) = gw
        .call(
            Method::POST,
            "/v1/webhooks",
            &key,
            Some(&json!({ "url": url, "secret": SECRET, "events": ["message.received"] })),
        )
        .await?;
    if !status.is_success() {
        bail!("creating the webhook: {status} {hook}");
    }
    let total = *p.checkpoints.last().context("no checkpoint")?;
    let names: Vec<String> = (1..=total).map(|i| format!("mb{i}")).collect();
    let users: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), PASSWORD)).collect();
    servers.add_users(&users)?;
    tokio::time::sleep(p.settle).await;
    let gateway_pid = gw.pid().context("the bench needs the gateway's pid")?;
    let mut report = MailboxReport {
        scenario: "mailboxes",
        gateway_pss_empty_bytes: pss_of(gateway_pid),
        checkpoints: Vec::new(),
        gateway_bytes_per_mailbox: 0.0,
        probes_sent: 0,
        probes_received: 0,
        append_to_webhook_p50_ms: 0.0,
        append_to_webhook_p99_ms: 0.0,
        append_to_webhook_max_ms: 0.0,
        invalid_signatures: 0,
        distribution: Vec::new(),
    };
    let imap = servers.imap_addr();
    let smtp = servers.smtp_addr();
    let mut created = 0;
    for &target in &p.checkpoints {
        let started = Instant::now();
        while created < target {
            let user = &names[created];
            created += 1;
            let config = json!({
                "imap": { "host": "127.0.0.1", "port": imap.port(), "security": "none",
                          "username": user, "password": PASSWORD },
                "smtp": { "host": "127.0.0.1", "port": smtp.port(), "security": "none",
                          "username": user, "password": PASSWORD },
                "from": { "address": format!("{user}@example.test") },
                "sent_folder": null,
            });
            let (status, body) = gw
                .call(
                    Method::POST,
                    "/v1/sessions",
                    &key,
                    Some(&json!({ "channel": "email", "name": user, "config": config })),
                )
                .await?;
            if !status.is_success() {
                bail!("creating mailbox {user}: {status} {body}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let n = working(gw, &key).await?;
            if n >= target {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {n} of {target} mailboxes WORKING after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let seconds_until_idle = started.elapsed().as_secs_f64();
        eprintln!("  {target} mailboxes idle ({seconds_until_idle:.1} s for this step)");
        tokio::time::sleep(p.settle).await;
        let (dovecot_pss_bytes, dovecot_processes) = servers
            .dovecot_pid()
            .map_or((0, 0), |pid| trees_pss(&[pid]));
        report.checkpoints.push(MailboxCheckpoint {
            mailboxes: target,
            seconds_until_idle,
            gateway_pss_bytes: pss_of(gateway_pid),
            dovecot_pss_bytes,
            dovecot_processes,
        });
    }
    let mut points = vec![(0.0, report.gateway_pss_empty_bytes as f64)];
    points.extend(
        report
            .checkpoints
            .iter()
            .map(|c| (c.mailboxes as f64, c.gateway_pss_bytes as f64)),
    );
    report.gateway_bytes_per_mailbox = slope(&points);

    // Probes: APPENDs to mailboxes spread over the whole set, one at a time, while
    // every other mailbox idles.
    for i in 0..p.probes {
        let user = &names[(i * 7919) % total];
        // Logged in first: the clock starts at the APPEND, not at the client's login.
        let mut client = servers.client(user).await?;
        let raw = format!(
            "From: probe@example.test\r\nTo: {user}@example.test\r\nSubject: bench-probe {i} t={}\r\n\
Message-ID: <probe-{i}-{}@example.test>\r\n\r\nprobe\r\n",
            clock::now_ms(),
            clock::now_ms()
        );
        client
            .append("INBOX", None, None, raw.as_bytes())
            .await
            .map_err(|e| anyhow::anyhow!("APPEND to {user}: {e}"))?;
        let _ = client.logout().await;
        report.probes_sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while probes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .latencies_ms
        .len()
        < p.probes
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = probes.lock().unwrap_or_else(|e| e.into_inner());
    let mut ms = got.latencies_ms.clone();
    ms.sort_by(f64::total_cmp);
    let q = |f: f64| {
        ms.get(((ms.len() as f64 - 1.0) * f).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    report.probes_received = ms.len();
    report.append_to_webhook_p50_ms = q(0.5);
    report.append_to_webhook_p99_ms = q(0.99);
    report.append_to_webhook_max_ms = q(1.0);
    report.invalid_signatures = got.invalid;
    report.distribution = crate::report::distribution_of(&ms);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_the_cost_of_one_more_mailbox() {
        let pts = [(0.0, 100.0), (10.0, 300.0), (20.0, 500.0)];
        assert!((slope(&pts) - 20.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }
}

//! The `media` scenario: files through one WhatsApp session (real Chromium, the
//! stand-in WhatsApp Web) and back, end to end. Each round: upload a file
//! (`POST /v1/media`), send it (`POST /v1/sessions/{id}/messages`), wait until the
//! stand-in's recipient has decrypted it (sha256 checked), have that contact send it
//! back (the page downloads and decrypts it, the gateway stores it), wait for its
//! `message.received` webhook at the verifying receiver, and download it
//! (`GET /v1/media/{id}`, sha256 checked). Per file size: rounds per second, MB/s
//! of file moved (each round carries the file four times: up, out, in, down), the
//! round-trip latency, and the gateway's RSS after each round: it must not grow with
//! the file's size (the gateway streams files a chunk at a time).

use crate::receiver::Receiver;
use crate::scenarios::Latency;
use crate::target::Gateway;
use anyhow::{Context, bail};
use http::{Method, StatusCode};
use hyper::body::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use switchboard_actors::testkit::whatsapp::{Inbound, WhatsAppStandin};
use switchboard_crypto::webhook::WebhookSecret;

/// The contact the files go to and come back from.
const CONTACT: &str = "15550100";

#[derive(Debug, Clone)]
pub struct MediaParams {
    /// File sizes in MiB.
    pub sizes_mib: Vec<usize>,
    pub rounds: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MediaStep {
    pub size_bytes: usize,
    pub rounds: usize,
    pub rounds_per_sec: f64,
    /// File bytes moved per second (4 × size per round).
    pub mb_per_sec: f64,
    pub round_trip_ms: Latency,
    /// Gateway RSS after each round, MiB.
    pub rss_mib: Vec<f64>,
    /// RSS after the last round − after the first (the first warms buffers up).
    pub rss_growth_mib: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MediaReport {
    pub scenario: &'static str,
    pub steps: Vec<MediaStep>,
    /// Bytes that came back different (must be 0).
    pub mismatches: u64,
}

impl MediaReport {
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![
            "media: upload → WhatsApp send → recipient decrypts → sent back → page decrypts → stored → webhook → download, one session".to_owned(),
            "  size MiB  rounds  rounds/s    MB/s  round trip ms                               RSS MiB first → last (growth)".to_owned(),
        ];
        for s in &self.steps {
            out.push(format!(
                "  {:>8.1}  {:>6}  {:>8.2}  {:>6.1}  {:<42}  {:.1} → {:.1} ({:+.1})",
                s.size_bytes as f64 / 1_048_576.0,
                s.rounds,
                s.rounds_per_sec,
                s.mb_per_sec,
                s.round_trip_ms.line(),
                s.rss_mib.first().copied().unwrap_or(0.0),
                s.rss_mib.last().copied().unwrap_or(0.0),
                s.rss_growth_mib
            ));
        }
        out.push(format!("  mismatched files: {}", self.mismatches));
        out
    }
}

/// A file of `len` bytes (an MP4 header, then noise that differs per `seed`, so the
/// store keeps every round's file).
fn file(len: usize, seed: u64) -> Vec<u8> {
    let mut out = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn hex_sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn until<F, Fut>(what: &str, within: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    while !f().await? {
        if Instant::now() > deadline {
            bail!("{what} did not happen within {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

pub async fn media(
    gw: &Gateway,
    standin: &WhatsAppStandin,
    p: &MediaParams,
) -> anyhow::Result<MediaReport> {
    anyhow::ensure!(p.rounds > 0, "--rounds must be at least 1");
    let (_, key) = gw.unthrottled_tenant("bench-media").await?;
    let secret = WebhookSecret::generate()?;
    let receiver = Receiver::start(secret.clone()).await?;
    crate::scenarios::receiving_endpoint(gw, &key, &receiver, &secret).await?;
    crate::browser::pair_one(gw, &key, standin, 1).await?;
    let phone = format!("1555{:07}", 1);
    let (_, sessions) = gw.call(Method::GET, "/v1/sessions", &key, None).await?;
    let session = sessions["data"][0]["id"]
        .as_str()
        .context("the paired session")?
        .to_owned();
    let mut report = MediaReport {
        scenario: "media",
        steps: Vec::new(),
        mismatches: 0,
    };
    let mut seed = 0u64;
    for &mib in &p.sizes_mib {
        let size = mib << 20;
        let mut times = Vec::with_capacity(p.rounds);
        let mut rss = Vec::with_capacity(p.rounds);
        let started = Instant::now();
        for round in 0..p.rounds {
            seed += 1;
            let bytes = file(size, seed);
            let digest = hex_sha(&bytes);
            let t0 = Instant::now();
            let (status, up) = gw
                .raw(
                    Method::POST,
                    &format!("/v1/media?filename=clip{seed}.mp4"),
                    &key,
                    "video/mp4",
                    Bytes::from(bytes.clone()),
                )
                .await?;
            if status != StatusCode::CREATED {
                bail!("upload: {status} {}", String::from_utf8_lossy(&up));
            }
            let up: serde_json::Value = serde_json::from_slice(&up)?;
            let media_id = up["id"].as_str().context("media id")?.to_owned();
            let (status, sent) = gw
                .call(
                    Method::POST,
                    &format!("/v1/sessions/{session}/messages"),
                    &key,
                    Some(&json!({ "to": CONTACT, "media": { "id": media_id } })),
                )
                .await?;
            if status != StatusCode::ACCEPTED {
                bail!("send: {status} {sent}");
            }
            until(
                "the recipient decrypting the file",
                Duration::from_secs(120),
                || {
                    let got = standin
                        .sent(&phone)
                        .iter()
                        .any(|s| s.media.as_ref().is_some_and(|m| m.sha256 == digest));
                    async move { Ok(got) }
                },
            )
            .await?;
            let delivered_before = receiver.distinct();
            standin
                .deliver(
                    &phone,
                    Inbound {
                        from: CONTACT.into(),
                        msg_type: Some("video".into()),
                        mimetype: Some("video/mp4".into()),
                        caption: Some(format!("round {seed}")),
                        media: Some(bytes),
                        ..Inbound::default()
                    },
                )
                .context("the stand-in has no linked page")?;
            until(
                "the webhook of the file sent back",
                Duration::from_secs(120),
                || {
                    let n = receiver.distinct();
                    async move { Ok(n > delivered_before) }
                },
            )
            .await?;
            // The stored event that carries this file (at most 2 × rounds of them).
            let (_, events) = gw
                .call(
                    Method::GET,
                    "/v1/events?type=message.received&limit=200",
                    &key,
                    None,
                )
                .await?;
            let found = events["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["data"]["media"]["sha256"] == digest.as_str())
                .cloned()
                .context("no stored message.received carries the file sent back")?;
            let back = &found["data"]["media"];
            let back_id = back["id"].as_str().context("received media id")?;
            let (status, down) = gw
                .raw(
                    Method::GET,
                    &format!("/v1/media/{back_id}"),
                    &key,
                    "application/json",
                    Bytes::new(),
                )
                .await?;
            if status != StatusCode::OK || hex_sha(&down) != digest {
                report.mismatches += 1;
            }
            drop(down);
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            rss.push(gw.rss_kib().unwrap_or(0) as f64 / 1024.0);
            eprintln!(
                "  {mib} MiB round {}/{}: {:.0} ms, gateway RSS {:.1} MiB",
                round + 1,
                p.rounds,
                times.last().unwrap_or(&0.0),
                rss.last().unwrap_or(&0.0)
            );
        }
        let secs = started.elapsed().as_secs_f64();
        report.steps.push(MediaStep {
            size_bytes: size,
            rounds: p.rounds,
            rounds_per_sec: p.rounds as f64 / secs,
            mb_per_sec: (4 * size * p.rounds) as f64 / 1e6 / secs,
            rss_growth_mib: rss.last().copied().unwrap_or(0.0)
                - rss.first().copied().unwrap_or(0.0),
            rss_mib: rss,
            round_trip_ms: Latency::of(times),
        });
    }
    Ok(report)
}

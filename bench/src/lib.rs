//! `switchboard-bench`: the load harness for the Switchboard gateway.
//!
//! # Layout
//! - [`target`]: spawns the `switchboard` binary on a fresh data directory (or
//!   attaches to a running gateway) and talks to its API.
//! - [`receiver`]: a webhook receiver on loopback that verifies every signature and
//!   measures end-to-end latency, losses and duplicates.
//! - [`scenarios`]: the load scenarios (pipeline, outbound, webhooks).
//! - [`api`]: authenticated API throughput and latency at a concurrency.
//! - [`browser`]: WhatsApp sessions paired against the stand-in; Chromium memory.
//! - [`media`]: files through a WhatsApp session and back: throughput and the
//!   gateway's memory per file size.
//! - [`baseline`]: the loopback HTTP ceiling of this machine (minimal hyper server).
//! - [`rag`]: the knowledge-base engine in-process: embedding, ingest, search latency.
//! - [`progress`]: the live progress line.
//! - [`monitor`]: CPU and memory of the gateway process during a run.
//! - [`report`]: what a run produces: JSON, terminal summary, HTML with SVG plots.
//!
//! Everything stays on loopback and every loop is bounded in count and time.

pub mod api;
pub mod baseline;
pub mod browser;
pub mod mailboxes;
pub mod media;
pub mod monitor;
pub mod progress;
pub mod rag;
pub mod receiver;
pub mod report;
pub mod scenarios;
pub mod target;

/// A timestamp field (RFC 3339) as unix milliseconds.
pub fn clock_ms(v: &serde_json::Value) -> anyhow::Result<i64> {
    v.as_str()
        .and_then(switchboard_actors::clock::parse_rfc3339)
        .ok_or_else(|| anyhow::anyhow!("not a timestamp: {v}"))
}

//! `switchboard-bench`: load-tests a Switchboard gateway it spawns on a fresh data
//! directory (SQLite by default, Postgres with `--database-url`) on loopback.
//!
//! Build both binaries first: `cargo build --release -p switchboard-gateway -p switchboard-bench`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use switchboard_actors::testkit::whatsapp::{StandinConfig, WhatsAppStandin};
use switchboard_bench::browser::BrowserParams;
use switchboard_bench::scenarios::{self, WebhooksParams};
use switchboard_bench::target::{Gateway, default_binary};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard-bench",
    version,
    about = "Load harness for the Switchboard gateway"
)]
struct Cli {
    /// The `switchboard` binary to spawn (default: next to this one).
    #[arg(long, global = true)]
    gateway: Option<PathBuf>,
    /// Use this Postgres database instead of SQLite in a fresh data directory.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Signed webhook deliveries to a local verifying receiver.
    Webhooks {
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to wait for every delivery.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// T tenants × S sim sessions at a total inbound rate for a duration; every
    /// `message.received` is delivered as a signed webhook to a verifying receiver:
    /// throughput, end-to-end latency, lost and duplicated events (lost must be 0).
    Pipeline {
        #[arg(long, default_value_t = 2)]
        tenants: usize,
        /// Sim sessions per tenant.
        #[arg(long, default_value_t = 2)]
        sessions: usize,
        /// Inbound messages per second, all sessions together.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// How long traffic runs (e.g. 10s, 1m).
        #[arg(long, default_value = "10s")]
        duration: String,
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
        /// Seconds to wait for the last deliveries after traffic stops.
        #[arg(long, default_value_t = 60)]
        drain_timeout: u64,
    },
    /// Tenants with different send limits queue sends at once: measured rate against
    /// the configured one, fairness across tenants, queue latency.
    Outbound {
        /// One tenant per limit, in sends per second (comma-separated).
        #[arg(long, default_value = "10,50,100", value_delimiter = ',')]
        limits: Vec<u32>,
        #[arg(long, default_value_t = 5)]
        burst: u32,
        /// Sends queued per tenant: its limit × this many seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 60)]
        drain_timeout: u64,
    },
    /// WhatsApp sessions paired through the real flow (real Chromium, stand-in
    /// WhatsApp Web): time to QR, time to WORKING, PSS of the Chromium tree.
    Browser {
        /// Measure after this many sessions are paired (comma-separated, ascending).
        #[arg(long, default_value = "1,10,50", value_delimiter = ',')]
        sessions: Vec<usize>,
        /// Extra Chromium flags for the gateway (process-sharing experiments).
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        browser_args: String,
        /// Seconds to let memory settle before each measurement.
        #[arg(long, default_value_t = 5)]
        settle: u64,
    },
    /// The knowledge-base engine in-process: sentences embedded per second (local
    /// MiniLM), documents ingested per second, search latency at each store size.
    Rag {
        /// all-MiniLM-L6-v2's files.
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
        #[arg(long, default_value_t = 1_000)]
        sentences: usize,
        #[arg(long, default_value_t = 200)]
        documents: usize,
        /// Store sizes to measure search at (comma-separated).
        #[arg(long, default_value = "10000,100000", value_delimiter = ',')]
        chunks: Vec<usize>,
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
    },
    /// The machine's loopback HTTP ceiling: a minimal hyper server under the same
    /// client (no gateway), so other results read as a fraction of it.
    Baseline {
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value = "5s")]
        duration: String,
    },
    /// Runs a stand-in for a remote service (no gateway is started).
    Standin {
        #[command(subcommand)]
        service: Standin,
    },
}

#[derive(Debug, Subcommand)]
enum Standin {
    /// Stand-in WhatsApp Web: point the gateway at it with
    /// `SWITCHBOARD_WHATSAPP_URL=http://ADDR/`.
    Whatsapp {
        #[arg(long, default_value = "127.0.0.1:9871")]
        listen: std::net::SocketAddr,
        /// How often an unscanned page shows a new QR code (e.g. 20s, 500ms).
        #[arg(long, default_value = "20s")]
        qr_interval: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::Standin {
        service: Standin::Whatsapp {
            listen,
            qr_interval,
        },
    } = &cli.scenario
    {
        let qr_interval = switchboard_actors::webhooks::schedule::parse_duration(qr_interval)
            .map_err(|e| anyhow::anyhow!("--qr-interval: {e}"))?;
        let config = StandinConfig {
            qr_interval,
            ..StandinConfig::default()
        };
        let standin = WhatsAppStandin::start(*listen, config).await?;
        println!("stand-in WhatsApp Web on {}", standin.url());
        println!("  SWITCHBOARD_WHATSAPP_URL={}", standin.url());
        println!(
            "  scan: curl -X POST {}_standin/scan -d '{{\"qr\":\"<value>\",\"phone\":\"15550001\"}}'",
            standin.url()
        );
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }
    if let Scenario::Rag {
        model_dir,
        sentences,
        documents,
        chunks,
        queries,
    } = &cli.scenario
    {
        anyhow::ensure!(
            chunks.iter().all(|c| (1..=2_000_000).contains(c)),
            "--chunks: 1 to 2000000 each"
        );
        let params = switchboard_bench::rag::RagParams {
            sentences: (*sentences).max(1),
            documents: (*documents).max(1),
            chunks: chunks.clone(),
            queries: (*queries).max(1),
        };
        let r = switchboard_bench::rag::rag(model_dir, &params).await?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "rag: model {} (CPU, in-process), embedded qdrant-edge",
                r.model
            );
            println!(
                "  sentences embedded: {:.1}/s ({} sentences of 9-20 words)",
                r.sentences_per_second, r.sentences
            );
            println!(
                "  documents ingested: {:.1}/s ({} documents, {} KiB, {} chunks; chunk + embed + upsert)",
                r.documents_per_second,
                r.documents,
                r.document_bytes / 1024,
                r.chunks_ingested
            );
            println!(
                "  chunks    search p50 ms  p99 ms  max ms  embed+search p50 ms  fill s  | before optimize: p50 ms  p99 ms  optimize s"
            );
            for p in &r.search {
                println!(
                    "  {:>7}  {:>13.2}  {:>6.2}  {:>6.2}  {:>19.2}  {:>6.1}  | {:>22.2}  {:>6.2}  {:>10.1}",
                    p.chunks,
                    p.p50_ms,
                    p.p99_ms,
                    p.max_ms,
                    p.with_embedding_p50_ms,
                    p.fill_seconds,
                    p.unoptimized_p50_ms,
                    p.unoptimized_p99_ms,
                    p.optimize_seconds
                );
            }
        }
        return Ok(());
    }
    if let Scenario::Baseline {
        concurrency,
        duration,
    } = &cli.scenario
    {
        let duration = switchboard_actors::webhooks::schedule::parse_duration(duration)
            .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
        anyhow::ensure!(
            (1..=1_000).contains(concurrency) && duration <= Duration::from_secs(600),
            "--concurrency 1 to 1000, --duration at most 10m"
        );
        let r = switchboard_bench::baseline::baseline(*concurrency, duration).await?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            let l = &r.latency_ms;
            println!(
                "baseline: minimal hyper server on loopback, concurrency {}, {:.1}s",
                r.concurrency, r.duration_secs
            );
            println!(
                "  {:.0} requests/s ({} requests); latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                r.requests_per_sec, r.requests, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        return Ok(());
    }
    let binary = cli.gateway.clone().unwrap_or_else(default_binary);
    if let Scenario::Browser {
        sessions,
        browser_args,
        settle,
    } = &cli.scenario
    {
        let mut checkpoints = sessions.clone();
        checkpoints.sort_unstable();
        checkpoints.dedup();
        checkpoints.retain(|n| *n > 0);
        anyhow::ensure!(
            checkpoints.last().is_some_and(|n| *n <= 500),
            "--sessions: 1 to 500"
        );
        let standin = WhatsAppStandin::start(
            "127.0.0.1:0".parse()?,
            StandinConfig {
                qr_interval: Duration::from_secs(20),
                ..StandinConfig::default()
            },
        )
        .await?;
        let url = standin.url();
        let gw = Gateway::spawn(
            &binary,
            cli.database_url.as_deref(),
            &[
                ("SWITCHBOARD_WHATSAPP_URL", url.as_str()),
                ("SWITCHBOARD_BROWSER_ARGS", browser_args.as_str()),
                ("SWITCHBOARD_WHATSAPP_MAX_QR_REFRESHES", "100"),
            ],
        )?;
        let params = BrowserParams {
            checkpoints,
            settle: Duration::from_secs(*settle),
        };
        let r = switchboard_bench::browser::browser(&gw, &standin, &params).await?;
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            let pct = |v: &[u64], q: f64| {
                let mut v = v.to_vec();
                v.sort_unstable();
                v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or(0)
            };
            println!(
                "browser: {} WhatsApp sessions paired against the stand-in; Chromium flags: {}",
                r.time_to_working_ms.len(),
                if browser_args.is_empty() {
                    "(defaults)"
                } else {
                    browser_args
                }
            );
            println!(
                "  time to QR ms: p50 {}  p90 {}  max {}   time to WORKING ms: p50 {}  p90 {}  max {}",
                pct(&r.time_to_qr_ms, 0.5),
                pct(&r.time_to_qr_ms, 0.9),
                pct(&r.time_to_qr_ms, 1.0),
                pct(&r.time_to_working_ms, 0.5),
                pct(&r.time_to_working_ms, 0.9),
                pct(&r.time_to_working_ms, 1.0)
            );
            println!(
                "  sessions  chromium PSS MiB  processes  MiB per added session  gateway PSS MiB"
            );
            let mib = |b: u64| b as f64 / 1_048_576.0;
            for c in &r.checkpoints {
                println!(
                    "  {:>8}  {:>16.1}  {:>9}  {:>21}  {:>15.1}",
                    c.sessions,
                    mib(c.chromium_pss_bytes),
                    c.chromium_processes,
                    c.pss_per_added_session_bytes
                        .map_or("-".to_owned(), |b| format!("{:.1}", mib(b))),
                    mib(c.gateway_pss_bytes)
                );
            }
        }
        return Ok(());
    }
    let gw = Gateway::spawn(
        &binary,
        cli.database_url.as_deref(),
        &[
            ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS", "true"),
            ("SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT", "512"),
        ],
    )?;
    match cli.scenario {
        Scenario::Standin { .. }
        | Scenario::Browser { .. }
        | Scenario::Rag { .. }
        | Scenario::Baseline { .. } => {
            unreachable!("handled above")
        }
        Scenario::Outbound {
            limits,
            burst,
            seconds,
            drain_timeout,
        } => {
            anyhow::ensure!(
                !limits.is_empty()
                    && limits.len() <= 20
                    && limits.iter().all(|l| (1..=10_000).contains(l)),
                "--limits: 1 to 20 tenants, each 1 to 10000/s"
            );
            anyhow::ensure!(
                seconds > 0.0 && seconds <= 600.0,
                "--seconds: above 0, at most 600"
            );
            let params = scenarios::OutboundParams {
                limits,
                burst: burst.max(1),
                seconds,
                drain_timeout: Duration::from_secs(drain_timeout),
            };
            let r = scenarios::outbound(&gw, &params).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "outbound: {} tenants queue at once (burst {}); one sim session each",
                    r.tenants.len(),
                    r.burst
                );
                println!(
                    "  limit/s  queued  sent  measured/s  accuracy  queue latency ms p50  p99  max"
                );
                for t in &r.tenants {
                    let l = &t.queue_latency_ms;
                    println!(
                        "  {:>7}  {:>6}  {:>4}  {:>10.2}  {:>7.1}%  {:>20.0}  {:>4.0}  {:>4.0}",
                        t.configured_per_sec,
                        t.queued,
                        t.sent,
                        t.measured_per_sec,
                        t.accuracy * 100.0,
                        l.p50,
                        l.p99,
                        l.max
                    );
                }
                println!(
                    "  fairness (Jain, over measured/configured) {:.3}   lost {}",
                    r.fairness, r.lost
                );
            }
            if r.lost > 0 {
                anyhow::bail!("{} sends never went out", r.lost);
            }
        }
        Scenario::Pipeline {
            tenants,
            sessions,
            rate,
            duration,
            payload_bytes,
            drain_timeout,
        } => {
            let duration = switchboard_actors::webhooks::schedule::parse_duration(&duration)
                .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
            anyhow::ensure!(
                (1..=3_600).contains(&duration.as_secs()),
                "--duration: 1s to 1h"
            );
            anyhow::ensure!(
                (1..=100).contains(&tenants) && (1..=100).contains(&sessions),
                "--tenants and --sessions: 1 to 100"
            );
            let params = scenarios::PipelineParams {
                tenants,
                sessions,
                rate,
                duration,
                payload_bytes,
                drain_timeout: Duration::from_secs(drain_timeout),
            };
            let r = scenarios::pipeline(&gw, &params).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "pipeline: {} tenants × {} sim sessions, target {:.0} inbound/s for {:.1}s",
                    r.tenants,
                    r.sessions / r.tenants.max(1),
                    r.target_rate,
                    r.duration_secs
                );
                println!(
                    "  produced  {:>8}  ({:.0}/s, stored by the gateway)",
                    r.produced, r.produced_per_sec
                );
                println!(
                    "  delivered {:>8}  ({:.0}/s, signed webhooks verified)",
                    r.delivered, r.delivered_per_sec
                );
                println!(
                    "  lost {}  duplicates {}  invalid signatures {}",
                    r.lost, r.duplicates, r.invalid_signatures
                );
                let l = &r.latency_ms;
                println!(
                    "  end-to-end latency ms (event created → received): p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
                    l.p50, l.p90, l.p99, l.p999, l.max
                );
                if let Some(m) = r.gateway_rss_mib {
                    println!("  gateway RSS {m:.0} MiB");
                }
            }
            if r.lost > 0 || r.invalid_signatures > 0 {
                anyhow::bail!(
                    "{} events lost, {} invalid signatures",
                    r.lost,
                    r.invalid_signatures
                );
            }
        }
        Scenario::Webhooks {
            events,
            concurrency,
            timeout,
        } => {
            let params = WebhooksParams {
                events,
                concurrency,
                timeout: Duration::from_secs(timeout),
            };
            let r = scenarios::webhooks(&gw, &params).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r.to_json())?);
            } else {
                println!("webhooks: {} events, concurrency {}", r.events, concurrency);
                println!(
                    "  ingest            {:>10.0} events/s (each acknowledged after commit)",
                    r.ingest_per_sec
                );
                println!("  signed deliveries {:>10.0} /s", r.deliveries_per_sec);
                println!(
                    "  delivered {}  lost {}  duplicates {}  invalid signatures {}",
                    r.delivered, r.lost, r.duplicates, r.invalid_signatures
                );
                println!(
                    "  end-to-end latency ms: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
                    r.latency_ms_p50, r.latency_ms_p90, r.latency_ms_p99, r.latency_ms_max
                );
                if let Some(m) = r.gateway_rss_mib {
                    println!("  gateway RSS {m:.0} MiB");
                }
            }
            if r.lost > 0 || r.invalid_signatures > 0 {
                anyhow::bail!(
                    "{} events lost, {} invalid signatures",
                    r.lost,
                    r.invalid_signatures
                );
            }
        }
    }
    Ok(())
}

//! `switchboard-bench`: load-tests a Switchboard gateway it spawns on a fresh data
//! directory (SQLite by default, Postgres with `--database-url`) on loopback, or one
//! already running (`--url`, `--admin-token`).
//!
//! Build both binaries first: `cargo build --release -p switchboard-gateway -p switchboard-bench`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use switchboard_actors::clock;
use switchboard_actors::testkit::linkedin::{self as linkedin_standin, LinkedInStandin};
use switchboard_actors::testkit::whatsapp::{StandinConfig, WhatsAppStandin};
use switchboard_bench::api::{ApiParams, Mix};
use switchboard_bench::browser::BrowserParams;
use switchboard_bench::monitor::Monitor;
use switchboard_bench::report::{Quantile, Report, SeriesPoint};
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
    /// Print the report as JSON (progress still goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Also write a self-contained HTML report (SVG plots) to this file.
    #[arg(long, global = true, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Attach to a running gateway at this URL instead of spawning one.
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// The attached gateway's admin token.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// The attached gateway's process id, to report its CPU and memory.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Allow `--url` to point off this machine.
    #[arg(long, global = true)]
    allow_remote: bool,
    /// Skip the loopback baseline measured before gateway scenarios.
    #[arg(long, global = true)]
    no_baseline: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand, Serialize)]
#[serde(tag = "scenario", rename_all = "lowercase")]
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
        /// Sim sessions per tenant (added at each step of a ramp).
        #[arg(long, default_value_t = 2)]
        sessions: usize,
        /// Inbound messages per second, all sessions together; a rising comma-separated
        /// list ramps through the rates, each for --duration (e.g. 200,400,800).
        #[arg(long, default_value = "500", value_delimiter = ',')]
        rate: Vec<f64>,
        /// How long traffic runs at each rate (e.g. 10s, 1m).
        #[arg(long, default_value = "10s")]
        duration: String,
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
        /// Seconds to wait for the last deliveries after traffic stops.
        #[arg(long, default_value_t = 60)]
        drain_timeout: u64,
        /// Run the pipeline once per replica count (comma-separated, e.g. 1,2,3):
        /// that many gateways on one fresh Postgres database each time (needs
        /// --database-url, which must be allowed to create databases).
        #[arg(long, value_delimiter = ',')]
        replicas: Vec<usize>,
        /// Give each bench tenant this retention of events and messages (e.g. 1m):
        /// the gateway's sweeper (every 5 s here) deletes while traffic runs.
        #[arg(long)]
        retention: Option<String>,
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
    /// Authenticated API requests back to back from keep-alive connections:
    /// throughput and latency at a concurrency.
    Api {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value = "10s")]
        duration: String,
        #[arg(long, value_enum, default_value_t = Mix::Read)]
        mix: Mix,
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
        /// How the gateway keeps sessions apart: `process` (a Chromium each, the
        /// default) or `context` (contexts of one shared Chromium).
        #[arg(long, default_value = "process")]
        isolation: String,
    },
    /// Files through one WhatsApp session and back (real Chromium, stand-in WhatsApp
    /// Web): upload → send → the recipient decrypts → sent back → stored → webhook →
    /// download, with throughput and the gateway's RSS after every round.
    Media {
        /// File sizes in MiB (comma-separated).
        #[arg(long, default_value = "1,16", value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Round trips per size.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// N e-mail sessions on one real Dovecot (imap-hibernate), each idle after its
    /// first sync: gateway PSS per added mailbox (slope of a fit), time until all are
    /// idle, Dovecot's own memory, and APPEND → verified webhook latency while they idle.
    Mailboxes {
        /// Measure after this many mailboxes are idle (comma-separated, ascending).
        #[arg(long, default_value = "100,1000", value_delimiter = ',')]
        count: Vec<usize>,
        /// APPENDs whose latency is measured once all are idle.
        #[arg(long, default_value_t = 200)]
        probes: usize,
        /// Seconds to let memory settle before each measurement.
        #[arg(long, default_value_t = 10)]
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

#[derive(Debug, Subcommand, Serialize)]
enum Standin {
    /// Stand-in WhatsApp Web: point the gateway at it with
    /// `SWITCHBOARD_WHATSAPP_URL=http://ADDR/`.
    Whatsapp {
        #[arg(long, default_value = "127.0.0.1:9871")]
        listen: std::net::SocketAddr,
        /// How often an unscanned page shows a new QR code (e.g. 20s, 500ms).
        #[arg(long, default_value = "20s")]
        qr_interval: String,
        /// Serve headless browsers too (WhatsApp Web refuses them): to try drivers
        /// that do not hide automation.
        #[arg(long)]
        allow_robots: bool,
    },
    /// Stand-in LinkedIn (Voyager API, realtime stream, login checkpoints): point
    /// the gateway at it with `SWITCHBOARD_LINKEDIN_URL=http://ADDR/`.
    Linkedin {
        #[arg(long, default_value = "127.0.0.1:9872")]
        listen: std::net::SocketAddr,
        /// How often a realtime stream says `Heartbeat` (e.g. 5s).
        #[arg(long, default_value = "5s")]
        heartbeat: String,
        /// API requests per minute past which an account gets 429.
        #[arg(long, default_value_t = 300)]
        requests_per_minute: u32,
        /// Invitations per day past which an account gets 999.
        #[arg(long, default_value_t = 25)]
        invitations_per_day: u32,
        /// Serve headless browsers too (LinkedIn answers them 999).
        #[arg(long)]
        allow_robots: bool,
    },
}

/// What a scenario produced, ready for the report.
struct Ran {
    summary: Vec<String>,
    result: serde_json::Value,
    latency_label: &'static str,
    over_time: Vec<SeriesPoint>,
    distribution: Vec<Quantile>,
    /// Why the run must exit non-zero (lost events, bad signatures).
    failure: Option<String>,
}

impl Ran {
    fn new(summary: Vec<String>, result: impl Serialize, latency_label: &'static str) -> Self {
        Self {
            summary,
            result: serde_json::to_value(result).unwrap_or_default(),
            latency_label,
            over_time: Vec::new(),
            distribution: Vec::new(),
            failure: None,
        }
    }

    fn latency(mut self, over_time: Vec<SeriesPoint>, distribution: Vec<Quantile>) -> Self {
        self.over_time = over_time;
        self.distribution = distribution;
        self
    }

    fn fail_if(mut self, bad: bool, why: impl FnOnce() -> String) -> Self {
        if bad {
            self.failure = Some(why());
        }
        self
    }
}

fn duration_arg(name: &str, text: &str, max: Duration) -> anyhow::Result<Duration> {
    let d = switchboard_actors::webhooks::schedule::parse_duration(text)
        .map_err(|e| anyhow::anyhow!("--{name}: {e}"))?;
    anyhow::ensure!(
        d >= Duration::from_millis(100) && d <= max,
        "--{name}: 100ms to {}s",
        max.as_secs()
    );
    Ok(d)
}

async fn standin(
    listen: std::net::SocketAddr,
    qr_interval: &str,
    allow_robots: bool,
) -> anyhow::Result<()> {
    let qr_interval = duration_arg("qr-interval", qr_interval, Duration::from_secs(3_600))?;
    let config = StandinConfig {
        qr_interval,
        refuse_robots: !allow_robots,
        ..StandinConfig::default()
    };
    let standin = WhatsAppStandin::start(listen, config).await?;
    println!("stand-in WhatsApp Web on {}", standin.url());
    println!("  SWITCHBOARD_WHATSAPP_URL={}", standin.url());
    println!(
        "  scan: curl -X POST {}_standin/scan -d '{{\"qr\":\"<value>\",\"phone\":\"15550001\"}}'",
        standin.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn linkedin(service: &Standin) -> anyhow::Result<()> {
    let Standin::Linkedin {
        listen,
        heartbeat,
        requests_per_minute,
        invitations_per_day,
        allow_robots,
    } = service
    else {
        unreachable!("called for the LinkedIn stand-in only")
    };
    anyhow::ensure!(
        *requests_per_minute > 0 && *invitations_per_day > 0,
        "--requests-per-minute and --invitations-per-day must be at least 1"
    );
    let config = linkedin_standin::StandinConfig {
        heartbeat: duration_arg("heartbeat", heartbeat, Duration::from_secs(3_600))?,
        requests_per_minute: *requests_per_minute,
        invitations_per_day: *invitations_per_day,
        refuse_robots: !allow_robots,
        ..linkedin_standin::StandinConfig::default()
    };
    let standin = LinkedInStandin::start(*listen, config).await?;
    let url = standin.url();
    println!("stand-in LinkedIn on {url}");
    println!("  SWITCHBOARD_LINKEDIN_URL={url}");
    println!(
        "  account: curl -X POST {url}_standin/accounts -d '{{\"username\":\"ada@example.com\",\"password\":\"pw\",\"first\":\"Ada\",\"last\":\"Lovelace\"}}'"
    );
    println!(
        "  cookies: curl -X POST {url}_standin/cookies -d '{{\"username\":\"ada@example.com\",\"user_agent\":\"<your browser's>\"}}'"
    );
    println!(
        "  inbound: curl -X POST {url}_standin/inbound -d '{{\"username\":\"ada@example.com\",\"from\":\"grace-hopper\",\"text\":\"Hello\"}}'"
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// The gateway under test: attached (`--url`) or spawned with `env`.
async fn target(cli: &Cli, env: &[(&str, &str)]) -> anyhow::Result<(Gateway, String)> {
    if let Some(url) = &cli.url {
        let token = cli
            .admin_token
            .as_deref()
            .context("--url needs --admin-token (or SWITCHBOARD_ADMIN_TOKEN)")?;
        let gw = Gateway::attach(url, token, cli.pid, cli.allow_remote).await?;
        return Ok((gw, format!("attached to {url}")));
    }
    let binary = cli.gateway.clone().unwrap_or_else(default_binary);
    let gw = Gateway::spawn(&binary, cli.database_url.as_deref(), env)?;
    let db = if cli.database_url.is_some() {
        "Postgres"
    } else {
        "SQLite"
    };
    Ok((
        gw,
        format!(
            "spawned {} on a fresh data directory ({db})",
            binary.display()
        ),
    ))
}

/// The pipeline at each replica count, on one fresh Postgres database per count.
#[derive(Debug, Serialize)]
struct ReplicasReport {
    scenario: &'static str,
    #[serde(skip)]
    target: String,
    runs: Vec<ReplicaRun>,
}

#[derive(Debug, Serialize)]
struct ReplicaRun {
    replicas: usize,
    report: scenarios::PipelineReport,
}

impl ReplicasReport {
    fn summary(&self) -> Vec<String> {
        let mut out = vec![format!(
            "pipeline over replicas on one Postgres ({})",
            self.target
        )];
        for run in &self.runs {
            let r = &run.report;
            out.push(format!(
                "  {} replica{}: produced {:.0}/s, delivered {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, lost {}, duplicates {}, CPU {} µs/event (all replicas)",
                run.replicas,
                if run.replicas == 1 { "" } else { "s" },
                r.produced_per_sec,
                r.delivered_per_sec,
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.lost,
                r.duplicates,
                r.gateway_cpu_us_per_event
                    .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"))
            ));
        }
        out
    }
}

/// Runs the pipeline with 1, 2, … gateways sharing a fresh database made from
/// `--database-url` (one per replica count), each with the same master key.
async fn pipeline_replicas(
    cli: &Cli,
    counts: &[usize],
    params: &scenarios::PipelineParams,
) -> anyhow::Result<ReplicasReport> {
    let admin_url = cli
        .database_url
        .as_deref()
        .filter(|u| u.starts_with("postgres"))
        .context("--replicas needs --database-url postgres://… (replicas share Postgres)")?;
    anyhow::ensure!(
        cli.url.is_none(),
        "--replicas spawns its gateways; drop --url"
    );
    anyhow::ensure!(
        counts.iter().all(|n| (1..=8).contains(n)),
        "--replicas: 1 to 8 gateways each"
    );
    let binary = cli.gateway.clone().unwrap_or_else(default_binary);
    let master = switchboard_crypto::MasterKey::generate()?.to_base64();
    let mut runs = Vec::new();
    for &n in counts {
        let name = format!(
            "sbbench_{}",
            switchboard_actors::ids::new_id("db")
                .to_lowercase()
                .replace('_', "")
        );
        let admin = sqlx::PgPool::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .context("--database-url needs a /database path")?;
        let url = format!("{base}/{name}");
        let mut env: Vec<(&str, &str)> = GATEWAY_ENV.to_vec();
        env.push(("SWITCHBOARD_MASTER_KEY", master.expose()));
        let mut gws = Vec::new();
        for _ in 0..n {
            gws.push(Gateway::spawn(&binary, Some(&url), &env)?);
        }
        eprintln!("  {n} replica(s) up on database {name}");
        let report = scenarios::pipeline(&gws, params).await?;
        runs.push(ReplicaRun {
            replicas: n,
            report,
        });
        drop(gws);
    }
    Ok(ReplicasReport {
        scenario: "pipeline",
        target: format!("spawned {} on Postgres", binary.display()),
        runs,
    })
}

const GATEWAY_ENV: &[(&str, &str)] = &[
    ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS", "true"),
    ("SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT", "512"),
    // Tenants without a retention cost a sweep one query.
    ("SWITCHBOARD_RETENTION_SWEEP_INTERVAL", "5s"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::Standin {
        service:
            Standin::Whatsapp {
                listen,
                qr_interval,
                allow_robots,
            },
    } = &cli.scenario
    {
        return standin(*listen, qr_interval, *allow_robots).await;
    }
    if let Scenario::Standin {
        service: service @ Standin::Linkedin { .. },
    } = &cli.scenario
    {
        return linkedin(service).await;
    }
    let started_at = clock::rfc3339(clock::now_ms());
    // The machine's loopback ceiling, measured once the gateway is up and idle (not
    // for the in-process scenarios, which have no HTTP in them).
    let baseline_concurrency = match &cli.scenario {
        Scenario::Api { concurrency, .. } => (*concurrency).clamp(1, 1_000),
        _ => 64,
    };
    // Declared before the gateway so they are dropped after it (the gateway's IMAP
    // connections must not see their server vanish first).
    let mut mail_servers = None;
    let mut baseline = None;
    let mut monitor = None;
    let mut target_label = "in-process (no gateway)".to_owned();
    let mut gateway = None;
    let mut replicas_label = None;
    let mut start_gateway = async |env: &[(&str, &str)]| -> anyhow::Result<()> {
        let (gw, label) = target(&cli, env).await?;
        if !cli.no_baseline {
            eprintln!("  baseline: loopback HTTP ceiling, concurrency {baseline_concurrency}, 2s");
            baseline = Some(
                switchboard_bench::baseline::baseline(baseline_concurrency, Duration::from_secs(2))
                    .await?,
            );
        }
        monitor = gw.pid().and_then(Monitor::start);
        target_label = label;
        gateway = Some(gw);
        Ok(())
    };
    let ran = match &cli.scenario {
        Scenario::Standin { .. } => unreachable!("handled above"),
        Scenario::Rag {
            model_dir,
            sentences,
            documents,
            chunks,
            queries,
        } => {
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
            Ran::new(r.summary(), &r, "search, top 5 within one tenant")
                .latency(Vec::new(), r.distribution.clone())
        }
        Scenario::Baseline {
            concurrency,
            duration,
        } => {
            let duration = duration_arg("duration", duration, Duration::from_secs(600))?;
            anyhow::ensure!(
                (1..=1_000).contains(concurrency),
                "--concurrency: 1 to 1000"
            );
            let r = switchboard_bench::baseline::baseline(*concurrency, duration).await?;
            let summary = vec![
                format!(
                    "baseline: minimal hyper server on loopback, concurrency {}, {:.1}s",
                    r.concurrency, r.duration_secs
                ),
                format!(
                    "  {:.0} requests/s ({} requests); latency ms {}",
                    r.requests_per_sec,
                    r.requests,
                    r.latency_ms.line()
                ),
            ];
            Ran::new(summary, &r, "request → answer")
        }
        Scenario::Browser {
            sessions,
            browser_args,
            settle,
            isolation,
        } => {
            anyhow::ensure!(
                cli.url.is_none(),
                "the browser scenario spawns its own gateway (it points it at a stand-in WhatsApp Web); drop --url"
            );
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
            start_gateway(&[
                ("SWITCHBOARD_WHATSAPP_URL", url.as_str()),
                ("SWITCHBOARD_BROWSER_ARGS", browser_args.as_str()),
                ("SWITCHBOARD_BROWSER_ISOLATION", isolation.as_str()),
                ("SWITCHBOARD_WHATSAPP_MAX_QR_REFRESHES", "100"),
            ])
            .await?;
            let gw = gateway.as_ref().context("gateway")?;
            let params = BrowserParams {
                checkpoints,
                settle: Duration::from_secs(*settle),
            };
            let r = switchboard_bench::browser::browser(gw, &standin, &params).await?;
            let paired = r.time_to_working_ms.len() as u64;
            Ran::new(
                r.summary(&format!("{browser_args} (isolation {isolation})")),
                &r,
                "session created → WORKING",
            )
            .latency(r.over_time.clone(), r.distribution.clone())
            .fail_if(r.gateway_working < paired, || {
                format!(
                    "{paired} sessions paired, but only {} WORKING at the end",
                    r.gateway_working
                )
            })
        }
        Scenario::Media { sizes, rounds } => {
            anyhow::ensure!(
                cli.url.is_none(),
                "the media scenario spawns its own gateway (it points it at a stand-in WhatsApp Web); drop --url"
            );
            anyhow::ensure!(
                !sizes.is_empty() && sizes.iter().all(|s| (1..=100).contains(s)),
                "--sizes: 1 to 100 MiB each"
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
            start_gateway(&[
                ("SWITCHBOARD_WHATSAPP_URL", url.as_str()),
                // A load test, not a person: no typing pauses or per-contact caps.
                ("SWITCHBOARD_WHATSAPP_HUMANISE", "false"),
                ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS", "true"),
            ])
            .await?;
            let gw = gateway.as_ref().context("gateway")?;
            let params = switchboard_bench::media::MediaParams {
                sizes_mib: sizes.clone(),
                rounds: *rounds,
            };
            let r = switchboard_bench::media::media(gw, &standin, &params).await?;
            Ran::new(r.summary(), &r, "upload → … → download").fail_if(r.mismatches > 0, || {
                format!("{} files came back different", r.mismatches)
            })
        }
        Scenario::Mailboxes {
            count,
            probes,
            settle,
        } => {
            anyhow::ensure!(
                cli.url.is_none(),
                "the mailboxes scenario spawns its own gateway and Dovecot; drop --url"
            );
            let mut checkpoints = count.clone();
            checkpoints.sort_unstable();
            checkpoints.dedup();
            checkpoints.retain(|n| *n > 0);
            anyhow::ensure!(
                checkpoints.last().is_some_and(|n| *n <= 20_000),
                "--count: 1 to 20000"
            );
            // One socket per mailbox in the gateway and in Dovecot: the open-files
            // limit (`ulimit -n`, inherited by both) must be above --count. Dovecot
            // watches each hibernated mailbox with inotify: past the per-user instance
            // limit it polls every 30 s instead, and the latency shows that, not us.
            let last = checkpoints.last().copied().unwrap_or(0);
            if let Some(limit) = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|l| *l < last + 16)
            {
                eprintln!(
                    "  warning: fs.inotify.max_user_instances is {limit}: Dovecot will poll instead of \
                     being told of new mail (sysctl -w fs.inotify.max_user_instances={})",
                    (last + 100).next_power_of_two()
                );
            }
            let servers = mail_servers.insert(switchboard_actors::testkit::mail::MailServers::start_with(
                switchboard_actors::testkit::mail::MailOptions {
                    hibernate: true,
                    ..Default::default()
                },
            )
            .context("starting Dovecot and the SMTP server (apt-get install dovecot-imapd python3-aiosmtpd)")?);
            start_gateway(&[
                ("SWITCHBOARD_ALLOW_PRIVATE_WEBHOOKS", "true"),
                ("SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT", "512"),
                // Faster than Dovecot's logins on 2 cores only times connections out.
                ("SWITCHBOARD_EMAIL_CONNECTS_PER_SECOND_PER_HOST", "100"),
            ])
            .await?;
            let gw = gateway.as_ref().context("gateway")?;
            let params = switchboard_bench::mailboxes::MailboxParams {
                checkpoints,
                probes: (*probes).max(1),
                settle: Duration::from_secs(*settle),
            };
            let r = switchboard_bench::mailboxes::mailboxes(gw, servers, &params).await?;
            Ran::new(r.summary(), &r, "IMAP APPEND → verified webhook")
                .latency(Vec::new(), r.distribution.clone())
                .fail_if(
                    r.probes_received < r.probes_sent || r.invalid_signatures > 0,
                    || {
                        format!(
                            "{} of {} probes arrived, {} with invalid signatures",
                            r.probes_received, r.probes_sent, r.invalid_signatures
                        )
                    },
                )
        }
        Scenario::Api {
            concurrency,
            duration,
            mix,
        } => {
            let duration = duration_arg("duration", duration, Duration::from_secs(3_600))?;
            start_gateway(GATEWAY_ENV).await?;
            let gw = gateway.as_ref().context("gateway")?;
            let params = ApiParams {
                concurrency: *concurrency,
                duration,
                mix: *mix,
            };
            let r = switchboard_bench::api::api(gw, &params).await?;
            // Requests that got an answer must all have been counted by the gateway
            // (an attached one may count other clients' requests too).
            let answered = r.requests - r.statuses.get("transport").copied().unwrap_or(0);
            let disagree = if gw.spawned() {
                r.gateway_counted != answered
            } else {
                r.gateway_counted < answered
            };
            Ran::new(r.summary(), &r, "request sent → answer read")
                .latency(r.over_time.clone(), r.distribution.clone())
                .fail_if(disagree, || {
                    format!(
                        "{answered} requests were answered, the gateway counted {}",
                        r.gateway_counted
                    )
                })
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
                *seconds > 0.0 && *seconds <= 600.0,
                "--seconds: above 0, at most 600"
            );
            start_gateway(GATEWAY_ENV).await?;
            let gw = gateway.as_ref().context("gateway")?;
            let params = scenarios::OutboundParams {
                limits: limits.clone(),
                burst: (*burst).max(1),
                seconds: *seconds,
                drain_timeout: Duration::from_secs(*drain_timeout),
            };
            let r = scenarios::outbound(gw, &params).await?;
            Ran::new(r.summary(), &r, "send queued → sent")
                .latency(r.over_time.clone(), r.distribution.clone())
                .fail_if(r.lost > 0, || format!("{} sends never went out", r.lost))
        }
        Scenario::Pipeline {
            tenants,
            sessions,
            rate,
            duration,
            payload_bytes,
            drain_timeout,
            replicas,
            retention,
        } => {
            let duration = duration_arg("duration", duration, Duration::from_secs(3_600))?;
            anyhow::ensure!(
                (1..=100).contains(tenants) && (1..=100).contains(sessions),
                "--tenants and --sessions: 1 to 100"
            );
            anyhow::ensure!((1..=20).contains(&rate.len()), "--rate: 1 to 20 steps");
            let params = scenarios::PipelineParams {
                tenants: *tenants,
                sessions: *sessions,
                rates: rate.clone(),
                duration,
                payload_bytes: *payload_bytes,
                drain_timeout: Duration::from_secs(*drain_timeout),
                retention: retention.clone(),
            };
            if !replicas.is_empty() {
                let r = pipeline_replicas(&cli, replicas, &params).await?;
                replicas_label = Some(r.target.clone());
                let lost: u64 = r.runs.iter().map(|x| x.report.lost).sum();
                let last = r.runs.last().map(|x| &x.report);
                Ran::new(r.summary(), &r, "event created → webhook received")
                    .latency(
                        last.map(|l| l.over_time.clone()).unwrap_or_default(),
                        last.map(|l| l.distribution.clone()).unwrap_or_default(),
                    )
                    .fail_if(lost > 0, || format!("{lost} events lost"))
            } else {
                start_gateway(GATEWAY_ENV).await?;
                let gw = gateway.as_ref().context("gateway")?;
                let r = scenarios::pipeline(std::slice::from_ref(gw), &params).await?;
                Ran::new(r.summary(), &r, "event created → webhook received")
                    .latency(r.over_time.clone(), r.distribution.clone())
                    .fail_if(r.lost > 0 || r.invalid_signatures > 0, || {
                        format!(
                            "{} events lost, {} invalid signatures",
                            r.lost, r.invalid_signatures
                        )
                    })
            }
        }
        Scenario::Webhooks {
            events,
            concurrency,
            timeout,
        } => {
            anyhow::ensure!(
                (1..=10_000_000).contains(events) && (1..=1_000).contains(concurrency),
                "--events 1 to 10000000, --concurrency 1 to 1000"
            );
            start_gateway(GATEWAY_ENV).await?;
            let gw = gateway.as_ref().context("gateway")?;
            let params = WebhooksParams {
                events: *events,
                concurrency: *concurrency,
                timeout: Duration::from_secs(*timeout),
            };
            let r = scenarios::webhooks(gw, &params).await?;
            Ran::new(r.summary(), &r, "event created → webhook received")
                .latency(r.over_time.clone(), r.distribution.clone())
                .fail_if(r.lost > 0 || r.invalid_signatures > 0, || {
                    format!(
                        "{} events lost, {} invalid signatures",
                        r.lost, r.invalid_signatures
                    )
                })
        }
    };
    if let Some(label) = replicas_label {
        target_label = label;
    }
    let report = Report {
        scenario: serde_json::to_value(&cli.scenario)?["scenario"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        started_at,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        target: target_label,
        params: serde_json::to_value(&cli.scenario)?,
        summary: ran.summary,
        result: ran.result,
        latency_label: ran.latency_label.to_owned(),
        latency_over_time: ran.over_time,
        latency_distribution: ran.distribution,
        gateway: monitor.map(Monitor::finish),
        baseline,
    };
    drop(gateway);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.text());
    }
    if let Some(path) = &cli.report {
        std::fs::write(path, report.to_html())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("  report: {}", path.display());
    }
    match ran.failure {
        Some(why) => anyhow::bail!(why),
        None => Ok(()),
    }
}

//! Logs and metrics set-up for the process.
//!
//! Logs go to standard error, human-readable by default or one JSON object per line
//! (`log.format = "json"`), filtered by `RUST_LOG` (default `info`, with
//! chromiumoxide's protocol-mismatch warnings left out). Metrics are
//! recorded through the `metrics` facade by every crate and rendered in Prometheus
//! text format by the installed recorder.

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

pub fn init_logging(format: LogFormat) {
    // chromiumoxide warns about every CDP event newer than its protocol types
    // ("WS Invalid message"); those are noise, its errors are not.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,chromiumoxide=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Latency buckets (seconds) for request histograms: 0.5 ms … 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's one Prometheus recorder (a second gateway started in the same
/// process, as tests do, shares it).
static RECORDER: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Installs the Prometheus recorder (once per process) and publishes
/// `switchboard_build_info`. Every series carries this process's `replica` label,
/// so replicas scraped into one Prometheus stay apart.
pub fn init_metrics(backend: &'static str, replica: &str) -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .add_global_label("replica", replica)
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    let handle = RECORDER.get_or_init(|| handle).clone();
    metrics::describe_counter!(
        "switchboard_http_requests_total",
        "HTTP requests by route, method and status."
    );
    metrics::describe_histogram!(
        "switchboard_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route."
    );
    metrics::describe_gauge!(
        "switchboard_build_info",
        "Always 1; labels describe the build."
    );
    metrics::gauge!(
        "switchboard_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "storage" => backend,
    )
    .set(1.0);
    // Histograms are kept as buckets; upkeep bounds the recorder's internal buffers.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

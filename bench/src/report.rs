//! What every scenario run produces: the scenario's own result plus what the harness
//! measured around it — latency over time and its distribution (from HDR
//! histograms), CPU and memory of the gateway process, and the machine's loopback
//! baseline — as JSON (`--json`), a terminal summary, and a self-contained HTML report
//! with SVG plots (`--report out.html`).

use crate::baseline::BaselineReport;
use crate::monitor::ProcessStats;
use crate::scenarios::Histogram;
use serde::Serialize;

mod html;
mod xml;

pub use xml::well_formed;

/// Latency of the requests (or events) that completed within one second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    /// Seconds since the run started (start of this one-second bucket).
    pub t_secs: f64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One point of the latency distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Quantile {
    /// 0.5, 0.9, 0.99 …
    pub quantile: f64,
    pub ms: f64,
}

/// Per-second latency buckets keyed by wall-clock time (unix ms), so events can be
/// recorded as they arrive and turned into a series relative to the run's start.
#[derive(Debug)]
pub struct TimeSeries {
    buckets: std::collections::BTreeMap<i64, Histogram>,
    /// Recorded units per millisecond (1 for milliseconds, 1000 for microseconds).
    per_ms: f64,
}

impl Default for TimeSeries {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeSeries {
    /// Latencies in milliseconds.
    pub fn new() -> Self {
        Self {
            buckets: std::collections::BTreeMap::new(),
            per_ms: 1.0,
        }
    }

    /// Latencies in microseconds (sub-millisecond requests).
    pub fn micros() -> Self {
        Self {
            buckets: std::collections::BTreeMap::new(),
            per_ms: 1000.0,
        }
    }

    /// Records a latency (in this series' unit) for something that completed at unix
    /// time `at_ms`.
    pub fn record(&mut self, at_ms: i64, value: u64) {
        let micros = self.per_ms > 1.0;
        self.buckets
            .entry(at_ms.div_euclid(1000))
            .or_insert_with(|| {
                if micros {
                    crate::scenarios::micros_histogram()
                } else {
                    crate::scenarios::histogram()
                }
            })
            .saturating_record(value);
    }

    /// Adds another series' buckets (same unit).
    pub fn merge(&mut self, other: &TimeSeries) -> anyhow::Result<()> {
        for (s, h) in &other.buckets {
            match self.buckets.get_mut(s) {
                Some(mine) => mine.add(h)?,
                None => {
                    self.buckets.insert(*s, h.clone());
                }
            }
        }
        Ok(())
    }

    /// The series relative to `start_ms` (buckets before it are dropped).
    pub fn points(&self, start_ms: i64) -> Vec<SeriesPoint> {
        self.buckets
            .iter()
            .filter(|(s, _)| **s * 1000 >= start_ms - 999)
            .map(|(s, h)| SeriesPoint {
                t_secs: ((s * 1000 - start_ms) as f64 / 1000.0).max(0.0),
                count: h.len(),
                p50_ms: h.value_at_quantile(0.5) as f64 / self.per_ms,
                p99_ms: h.value_at_quantile(0.99) as f64 / self.per_ms,
                max_ms: h.max() as f64 / self.per_ms,
            })
            .collect()
    }
}

/// The quantiles the distribution plot shows (out to 99.99 %).
pub const QUANTILES: &[f64] = &[
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// The latency distribution of a histogram holding `per_ms` units per millisecond.
pub fn distribution(h: &Histogram, per_ms: f64) -> Vec<Quantile> {
    if h.is_empty() {
        return Vec::new();
    }
    QUANTILES
        .iter()
        .map(|&q| Quantile {
            quantile: q,
            ms: h.value_at_quantile(q) as f64 / per_ms,
        })
        .collect()
}

/// The latency distribution of exact samples in milliseconds.
pub fn distribution_of(samples: &[f64]) -> Vec<Quantile> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Vec::new();
    }
    QUANTILES
        .iter()
        .map(|&q| Quantile {
            quantile: q,
            ms: v[(((v.len() - 1) as f64) * q).round() as usize],
        })
        .collect()
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// RFC 3339, when the run started.
    pub started_at: String,
    /// The command line, for rerunning.
    pub command: String,
    /// `spawned` (fresh data directory; SQLite or Postgres), or the attached URL.
    pub target: String,
    pub params: serde_json::Value,
    /// The terminal summary, line by line.
    pub summary: Vec<String>,
    /// The scenario's own report.
    pub result: serde_json::Value,
    /// What the latency figures measure (e.g. "event created → webhook received").
    pub latency_label: String,
    pub latency_over_time: Vec<SeriesPoint>,
    pub latency_distribution: Vec<Quantile>,
    /// CPU and memory of the gateway process, when it could be read.
    pub gateway: Option<ProcessStats>,
    /// The machine's loopback HTTP ceiling, measured just before the run.
    pub baseline: Option<BaselineReport>,
}

impl Report {
    /// The self-contained HTML report (inline CSS and SVG, no scripts, no fetches).
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// The summary lines plus the gateway's resources and the baseline.
    pub fn text(&self) -> String {
        let mut out = self.summary.join("\n");
        if let Some(g) = &self.gateway {
            out.push_str(&format!(
                "\n  gateway process: CPU {:.1} s ({:.0}% of a core on average, peak {:.0}%), RSS peak {:.0} MiB, at the end {:.0} MiB",
                g.cpu_seconds, g.cpu_percent_avg, g.cpu_percent_peak, g.rss_mib_peak, g.rss_mib_end
            ));
        }
        if let Some(b) = &self.baseline {
            out.push_str(&format!(
                "\n  baseline (this machine's loopback HTTP ceiling, minimal hyper server, concurrency {}): {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
                b.concurrency, b.requests_per_sec, b.latency_ms.p50, b.latency_ms.p99
            ));
        }
        out
    }
}

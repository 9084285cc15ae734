//! CPU and memory of a process (the gateway under test), sampled from `/proc` twice
//! a second while a scenario runs.

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`): 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;
const EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the monitor started.
    pub t_secs: f64,
    /// CPU over the last interval, in percent of one core.
    pub cpu_percent: f64,
    pub rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessStats {
    pub pid: u32,
    /// CPU time used while monitored (user + system).
    pub cpu_seconds: f64,
    /// Average over the run, in percent of one core.
    pub cpu_percent_avg: f64,
    pub cpu_percent_peak: f64,
    pub rss_mib_peak: f64,
    pub rss_mib_end: f64,
    pub samples: Vec<Sample>,
}

/// (user + system ticks, RSS in KiB) of `pid`.
fn read(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces: fields start after the last ')'. utime and
    // stime are fields 14 and 15, i.e. the 12th and 13th after the state.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some((utime + stime, rss))
}

/// CPU time (user + system) `pid` has used so far, in seconds (10 ms resolution).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    read(pid).map(|(ticks, _)| ticks as f64 / TICKS_PER_SECOND)
}

/// The gateway CPU one unit of work (a delivered event, an answered request) costs,
/// measured from [`CpuMeter::start`] to [`CpuMeter::per`] over every process given.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    started: Option<f64>,
}

impl CpuMeter {
    pub fn start(pids: impl IntoIterator<Item = Option<u32>>) -> Self {
        Self {
            started: total(pids),
        }
    }

    /// CPU microseconds per unit since the start; `None` when a process could not be
    /// read or nothing was done.
    pub fn per(&self, pids: impl IntoIterator<Item = Option<u32>>, units: u64) -> Option<f64> {
        let spent = total(pids)? - self.started?;
        (units > 0).then(|| spent * 1e6 / units as f64)
    }
}

/// The summary line of a CPU-per-unit figure.
pub fn cpu_line(micros: Option<f64>, unit: &str) -> String {
    match micros {
        Some(us) => format!("  gateway CPU per {unit}: {us:.0} µs"),
        None => format!("  gateway CPU per {unit}: not measured (the process could not be read)"),
    }
}

fn total(pids: impl IntoIterator<Item = Option<u32>>) -> Option<f64> {
    pids.into_iter().map(|p| p.and_then(cpu_seconds)).sum()
}

/// Samples a process until [`Monitor::finish`].
#[derive(Debug)]
pub struct Monitor {
    pid: u32,
    started: Instant,
    first_ticks: u64,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// `None` if the process cannot be read (not running, or not on Linux).
    pub fn start(pid: u32) -> Option<Self> {
        let (first_ticks, _) = read(pid)?;
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let (mut last_ticks, mut last_at) = (first_ticks, Instant::now());
            loop {
                tokio::time::sleep(EVERY).await;
                let Some((ticks, rss_kib)) = read(pid) else {
                    return;
                };
                let now = Instant::now();
                let cpu = (ticks.saturating_sub(last_ticks)) as f64
                    / TICKS_PER_SECOND
                    / now.duration_since(last_at).as_secs_f64().max(1e-3);
                (last_ticks, last_at) = (ticks, now);
                out.lock().unwrap_or_else(|p| p.into_inner()).push(Sample {
                    t_secs: started.elapsed().as_secs_f64(),
                    cpu_percent: cpu * 100.0,
                    rss_mib: rss_kib as f64 / 1024.0,
                });
            }
        });
        Some(Self {
            pid,
            started,
            first_ticks,
            samples,
            task,
        })
    }

    pub fn finish(self) -> ProcessStats {
        self.task.abort();
        let end = read(self.pid);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        let cpu_seconds =
            end.map_or(0, |(t, _)| t.saturating_sub(self.first_ticks)) as f64 / TICKS_PER_SECOND;
        let rss_mib_end = end.map_or(0.0, |(_, kib)| kib as f64 / 1024.0);
        ProcessStats {
            pid: self.pid,
            cpu_seconds,
            cpu_percent_avg: cpu_seconds / elapsed * 100.0,
            cpu_percent_peak: samples.iter().map(|s| s.cpu_percent).fold(0.0, f64::max),
            rss_mib_peak: samples
                .iter()
                .map(|s| s.rss_mib)
                .fold(rss_mib_end, f64::max),
            rss_mib_end,
            samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn measures_this_process_burning_cpu() {
        // This process's own CPU time (user + system), in clock ticks.
        let cpu_ticks = || -> u64 {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            let rest = stat.rsplit_once(')').unwrap().1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        };
        let m = Monitor::start(std::process::id()).expect("readable /proc");
        // Spin until this process has really burnt 0.6 s of CPU (however busy the
        // machine is), not for a wall-clock time.
        let (start, spin) = (cpu_ticks(), Instant::now());
        let mut x = 0u64;
        while cpu_ticks() - start < 60 && spin.elapsed() < Duration::from_secs(60) {
            for _ in 0..200_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            tokio::task::yield_now().await;
        }
        let s = m.finish();
        assert!(s.cpu_seconds > 0.3, "{s:?}");
        assert!(
            s.rss_mib_end > 1.0 && s.rss_mib_peak >= s.rss_mib_end,
            "{s:?}"
        );
    }
}

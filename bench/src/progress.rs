//! The live progress line on stderr: a bar (time or count), what is done, the current
//! rate and the errors so far. Redrawn in place on a terminal; one line every five
//! seconds otherwise (CI logs, pipes).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What the bar measures.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Traffic for this long.
    For(Duration),
    /// Until this many are done.
    Count(u64),
}

/// Counts the progress line reads each tick: (done, errors).
pub type Probe = Box<dyn Fn() -> (u64, u64) + Send + Sync>;

/// A progress line drawn until [`Progress::finish`] (or drop).
#[derive(Debug)]
pub struct Progress {
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

const BAR: usize = 24;

fn line(label: &str, plan: Plan, elapsed: Duration, done: u64, rate: f64, errors: u64) -> String {
    let (fraction, of) = match plan {
        Plan::For(d) => (
            elapsed.as_secs_f64() / d.as_secs_f64().max(1e-3),
            format!("{:>5.1}s/{:.0}s", elapsed.as_secs_f64(), d.as_secs_f64()),
        ),
        Plan::Count(n) => (done as f64 / n.max(1) as f64, format!("{done}/{n}")),
    };
    let filled = ((fraction.clamp(0.0, 1.0)) * BAR as f64).round() as usize;
    format!(
        "  {label:<10} [{}{}] {of}  done {done}  {rate:>7.0}/s  errors {errors}",
        "#".repeat(filled),
        "-".repeat(BAR - filled)
    )
}

impl Progress {
    pub fn start(label: &str, plan: Plan, probe: Probe) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let (label, flag, woken) = (label.to_owned(), stop.clone(), wake.clone());
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let task = tokio::spawn(async move {
            let started = Instant::now();
            // The rate is over the last second (or the last line, off a terminal).
            let mut window = std::collections::VecDeque::from([(started, probe().0)]);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = woken.notified() => {}
                }
                let finished = flag.load(Ordering::Relaxed);
                let (done, errors) = probe();
                let now = Instant::now();
                window.push_back((now, done));
                while window.len() > 2 && now.duration_since(window[1].0) >= Duration::from_secs(1)
                {
                    window.pop_front();
                }
                let (t0, d0) = window[0];
                // Not a rate over less than a quarter of a second.
                let rate =
                    done.saturating_sub(d0) as f64 / now.duration_since(t0).as_secs_f64().max(0.25);
                let text = line(&label, plan, started.elapsed(), done, rate, errors);
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r{text}\x1b[K")
                } else {
                    writeln!(err, "{text}")
                };
                if finished {
                    if tty {
                        let _ = writeln!(err);
                    }
                    return;
                }
            }
        });
        Self {
            stop,
            wake,
            task: Some(task),
        }
    }

    /// Draws the last line and ends it.
    pub async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_follows_time_or_count() {
        let l = line(
            "pipeline",
            Plan::For(Duration::from_secs(10)),
            Duration::from_secs(5),
            100,
            20.0,
            1,
        );
        assert!(
            l.contains(&format!("[{}{}]", "#".repeat(12), "-".repeat(12))),
            "{l}"
        );
        assert!(l.contains("5.0s/10s") && l.contains("errors 1"), "{l}");
        let l = line("drain", Plan::Count(4), Duration::ZERO, 4, 0.0, 0);
        assert!(l.contains(&"#".repeat(BAR)) && l.contains("4/4"), "{l}");
        // Past the end, the bar stays full.
        let l = line("x", Plan::Count(1), Duration::ZERO, 9, 0.0, 0);
        assert!(l.contains(&"#".repeat(BAR)), "{l}");
    }
}

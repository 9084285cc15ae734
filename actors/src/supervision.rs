//! The restart strategy, written once and used by every supervisor: exponential
//! backoff with jitter between restarts, and a cap of restarts per sliding window
//! after which the child is given up on (the session goes to `FAILED`).
//!
//! Session actors are supervised by their `TenantSupervisor` (ractor); long-running
//! background tasks that must never silently stop (the webhook dispatcher) run under
//! [`supervise_task`], which applies the same strategy to a tokio task.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a supervisor restarts a failing child.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubles with each further restart in the window.
    pub base: Duration,
    /// Longest wait between restarts.
    pub max: Duration,
    /// Restarts allowed within `window` before giving up.
    pub max_restarts: usize,
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
            max_restarts: 5,
            window: Duration::from_secs(300),
        }
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this long; `attempt` counts restarts in the current window.
    Restart { after: Duration, attempt: usize },
    /// Too many restarts in the window.
    GiveUp { restarts: usize },
}

/// Restart history of one child.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// Records a failure at `now` and decides. `unit` in [0, 1) supplies jitter (±25 %).
    pub fn on_failure(&mut self, policy: &RestartPolicy, now: Instant, unit: f64) -> Decision {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= policy.max_restarts {
            return Decision::GiveUp {
                restarts: self.recent.len(),
            };
        }
        let n = self.recent.len();
        self.recent.push_back(now);
        let exp = policy.base.saturating_mul(1u32 << n.min(20));
        let after = exp
            .min(policy.max)
            .mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0));
        Decision::Restart {
            after,
            attempt: n + 1,
        }
    }

    /// Forgets the history (an operator started the child again).
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

/// Runs the task `make` builds until `cancel` fires, restarting it with `policy`
/// whenever it panics or ends on its own. A task that exhausts the restart budget
/// keeps being restarted at the longest delay (a background service has no
/// `FAILED` state to fall back to), with an error logged each time.
pub async fn supervise_task<F, Fut>(
    name: &'static str,
    policy: RestartPolicy,
    cancel: tokio_util::sync::CancellationToken,
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tracker = RestartTracker::default();
    loop {
        let outcome = tokio::spawn(make()).await;
        if cancel.is_cancelled() {
            return;
        }
        let kind = match outcome {
            Ok(()) => "ended",
            Err(e) if e.is_panic() => "panic",
            Err(_) => "aborted",
        };
        metrics::counter!("switchboard_task_restarts_total", "task" => name, "kind" => kind)
            .increment(1);
        let wait = match tracker.on_failure(
            &policy,
            Instant::now(),
            crate::webhooks::schedule::unit_random(),
        ) {
            Decision::Restart { after, attempt } => {
                tracing::error!(
                    task = name,
                    kind,
                    attempt,
                    after_ms = after.as_millis() as u64,
                    "background task stopped; restarting"
                );
                after
            }
            Decision::GiveUp { restarts } => {
                tracing::error!(
                    task = name,
                    kind,
                    restarts,
                    "background task keeps failing; restarting at the longest delay"
                );
                policy.max
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn supervised_tasks_are_restarted_after_a_panic() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let runs = Arc::new(AtomicU32::new(0));
        let cancel = tokio_util::sync::CancellationToken::new();
        let policy = RestartPolicy {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_restarts: 10,
            window: Duration::from_secs(10),
        };
        let (r, c) = (runs.clone(), cancel.clone());
        let supervisor = tokio::spawn(supervise_task("test", policy, cancel.clone(), move || {
            let (r, c) = (r.clone(), c.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
                c.cancelled().await;
            }
        }));
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        supervisor.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn backs_off_exponentially_then_gives_up() {
        let policy = RestartPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
            max_restarts: 3,
            window: Duration::from_secs(10),
        };
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let waits: Vec<Decision> = (0..4).map(|_| t.on_failure(&policy, now, 0.5)).collect();
        assert_eq!(
            waits,
            [
                Decision::Restart {
                    after: Duration::from_millis(100),
                    attempt: 1
                },
                Decision::Restart {
                    after: Duration::from_millis(200),
                    attempt: 2
                },
                Decision::Restart {
                    after: Duration::from_millis(350),
                    attempt: 3
                },
                Decision::GiveUp { restarts: 3 },
            ]
        );
        // Outside the window the history no longer counts.
        let later = now + Duration::from_secs(11);
        assert!(matches!(
            t.on_failure(&policy, later, 0.5),
            Decision::Restart { attempt: 1, .. }
        ));
        t.reset();
        assert!(
            matches!(t.on_failure(&policy, later, 0.0), Decision::Restart { attempt: 1, after } if after == Duration::from_millis(75))
        );
    }
}

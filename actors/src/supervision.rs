//! The restart strategy, written once and used by every supervisor: exponential
//! backoff with jitter between restarts, and a cap of restarts per sliding window
//! after which the child is given up on (the session goes to `FAILED`).

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

#[cfg(test)]
mod tests {
    use super::*;

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

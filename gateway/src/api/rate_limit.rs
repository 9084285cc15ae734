//! Per-API-key ingress limits (governor), each key with its tenant's quota.
//!
//! A limiter is created on a key's first request and replaced when its tenant's
//! quota changes; revoking a key forgets it. The same map throttles the
//! "last used" timestamp so a busy key writes it once a minute, not per request.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a key's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    quota: (u32, u32),
    limiter: DefaultDirectRateLimiter,
    last_touch: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct KeyLimiters {
    keys: Mutex<HashMap<String, Entry>>,
}

/// Whole seconds to wait, rounded up, never 0.
fn ceil_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

impl KeyLimiters {
    /// Admits one request for `key_id` under `rps`/`burst`, or says how many seconds
    /// to wait. Also returns whether the caller should record the key as used now.
    pub fn check(&self, key_id: &str, rps: u32, burst: u32) -> Result<bool, u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let quota = (rps, burst);
        let entry = keys
            .entry(key_id.to_owned())
            .or_insert_with(|| new_entry(quota));
        if entry.quota != quota {
            *entry = new_entry(quota);
        }
        match entry.limiter.check() {
            Ok(()) => {
                let now = Instant::now();
                let touch = entry
                    .last_touch
                    .is_none_or(|t| now.duration_since(t) >= TOUCH_EVERY);
                if touch {
                    entry.last_touch = Some(now);
                }
                Ok(touch)
            }
            Err(not_until) => Err(ceil_secs(
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
        }
    }

    pub fn forget(&self, key_id: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_id);
    }
}

fn new_entry(quota: (u32, u32)) -> Entry {
    let rate = NonZeroU32::new(quota.0).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(quota.1).unwrap_or(NonZeroU32::MIN);
    Entry {
        quota,
        limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        last_touch: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_with_rounded_up_retry_after() {
        let l = KeyLimiters::default();
        assert_eq!(l.check("k", 1, 3), Ok(true));
        assert_eq!(l.check("k", 1, 3), Ok(false));
        assert_eq!(l.check("k", 1, 3), Ok(false));
        let wait = l.check("k", 1, 3).unwrap_err();
        assert_eq!(wait, 1);
        // Another key has its own budget.
        assert!(l.check("other", 1, 3).is_ok());
        // A changed quota takes effect at once.
        assert!(l.check("k", 1000, 1000).is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
    }
}

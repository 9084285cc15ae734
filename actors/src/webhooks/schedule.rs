//! When a failed delivery is tried again.
//!
//! The default follows Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
//! (eight attempts over about 27.6 hours). Each wait gets ±20 % jitter so endpoints
//! that fail together do not retry together, and a `Retry-After` longer than the
//! scheduled wait is honoured (capped at a day).

use std::time::Duration;

/// The Svix schedule: the wait before attempt n+1 is `DEFAULT[n]`.
pub const DEFAULT: &[Duration] = &[
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The wait before the next attempt after `attempts_made` attempts, or `None` when
/// the schedule is exhausted. `unit` in [0, 1) supplies the jitter.
pub fn next_delay(
    schedule: &[Duration],
    attempts_made: usize,
    retry_after: Option<Duration>,
    unit: f64,
) -> Option<Duration> {
    let base = *schedule.get(attempts_made)?;
    let jittered = base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0));
    Some(match retry_after {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
        None => jittered,
    })
}

/// Parses a duration list like `0,5s,5m,30m,2h` (a bare number is seconds; `ms`,
/// `s`, `m`, `h` units).
pub fn parse(text: &str) -> Result<Vec<Duration>, String> {
    let items: Vec<Duration> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration)
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err("at least one attempt is needed".into());
    }
    Ok(items)
}

/// Parses one duration: `humantime`'s forms (`500ms`, `5s`, `5m`, `2h`, `5d`,
/// `1h 30m`), or a bare number of seconds (`0`, `1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        let secs: f64 = s
            .parse()
            .map_err(|_| format!("`{s}` is not a number of seconds"))?;
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 5s, 5m, 2h or 5d ({e})"))
}

/// A uniform number in [0, 1) from the OS random source (jitter needs no more).
pub fn unit_random() -> f64 {
    let mut b = [0u8; 4];
    if getrandom_fill(&mut b) {
        f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
    } else {
        0.5
    }
}

fn getrandom_fill(b: &mut [u8]) -> bool {
    switchboard_crypto::token::random_bytes(b.len())
        .map(|v| b.copy_from_slice(&v))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_with_jitter_and_retry_after() {
        assert_eq!(next_delay(DEFAULT, 0, None, 0.5), Some(Duration::ZERO));
        assert_eq!(
            next_delay(DEFAULT, 1, None, 0.5),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            next_delay(DEFAULT, 1, None, 0.0),
            Some(Duration::from_secs(4))
        );
        assert_eq!(next_delay(DEFAULT, 8, None, 0.5), None);
        assert_eq!(
            next_delay(DEFAULT, 1, Some(Duration::from_secs(60)), 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            next_delay(DEFAULT, 1, Some(Duration::from_secs(1)), 0.5),
            Some(Duration::from_secs(5))
        );
        let total: Duration = DEFAULT.iter().sum();
        assert!((total.as_secs_f64() / 3600.0 - 27.6).abs() < 0.1);
    }

    #[test]
    fn parses_schedules() {
        assert_eq!(
            parse("0, 200ms,1s,2m,1h").unwrap(),
            vec![
                Duration::ZERO,
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("-1").is_err());
        let u = unit_random();
        assert!((0.0..1.0).contains(&u));
    }
}

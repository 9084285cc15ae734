//! Wall-clock time as unix milliseconds: the unit of every stored timestamp, chosen so
//! that SQLite and Postgres store and compare it identically; and RFC 3339, the form
//! people and APIs see (formatted and parsed by `jiff`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Microseconds since the unix epoch (rate limits shared between replicas).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Formats unix milliseconds as RFC 3339 UTC with millisecond precision
/// (`2026-11-29T00:00:00.000Z`). Times outside jiff's range (years −9999…9999)
/// are clamped to it.
pub fn rfc3339(ms: i64) -> String {
    let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    format!("{t:.3}")
}

/// Parses RFC 3339 (`2026-11-23T12:00:00Z`, fractional seconds and `±HH:MM` offsets
/// allowed; an offset is required) into unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_910_400_000), "2026-11-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_rfc3339() {
        for ms in [0, 951_782_400_123, 1_795_910_400_000, -1, 1_234_567_890_987] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-11-29T01:00:00+01:00"),
            Some(1_795_910_400_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-29T00:00:00.5Z"),
            Some(1_795_910_400_500)
        );
        for bad in [
            "",
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "2026-11-29T00:00:00",
            "2026-11-29T00:00:00+1",
            "x026-11-29T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}

//! Wall-clock time as unix milliseconds: the unit of every stored timestamp, chosen so
//! that SQLite and Postgres store and compare it identically.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

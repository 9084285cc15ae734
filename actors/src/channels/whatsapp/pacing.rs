//! Humanised sending for one WhatsApp account: what keeps an automated number from
//! looking like one (WAHA's anti-ban advice, REFERENCES.md). On by default, set per
//! session (`config.pacing`):
//!
//! - **Typing**: the chat shows "typing…" (or "recording audio…" before a voice note)
//!   for a time proportional to the text, capped, before the message goes.
//! - **Spacing**: a random gap between two sends of the account (`gap`, jitter on top
//!   of the gateway's `sessions.send_interval`).
//! - **Per contact**: at most `per_contact_per_hour` messages in an hour to a contact
//!   who has not answered since (their answer resets the count).
//! - **Warm-up**: a new number sends at most `warm_up_start_per_day` messages in a
//!   rolling day on its first day, rising linearly until `warm_up_days` have passed
//!   (counted from `warm_up_from`, else from the session's creation).
//!
//! Everything here is pure: the driver reads the account's recorded sends
//! (`account_actions`, written before each send so a crash never under-counts) and
//! the chat as the page holds it, and [`Pacing::next_slot`] says whether a send may
//! go now or when.

use crate::channels::linkedin::caps::Spacing;
use serde::Deserialize;
use std::time::Duration;

const HOUR_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What a session's `config.pacing` may say (every field optional).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PacingConfig {
    /// Off: sends go as fast as the queue lets them (for numbers that are not
    /// people's, or tests).
    pub enabled: Option<bool>,
    pub typing: Option<bool>,
    /// Typing time per character of text (`"50ms"`).
    pub typing_per_char: Option<String>,
    /// The longest typing time (`"6s"`).
    pub typing_max: Option<String>,
    /// Random gap between two sends (`"2s-8s"`, or one duration).
    pub gap: Option<String>,
    /// 0: no per-contact cap.
    pub per_contact_per_hour: Option<u32>,
    /// 0: no warm-up.
    pub warm_up_days: Option<u32>,
    pub warm_up_start_per_day: Option<u32>,
    /// Since when the number is in use (RFC 3339), if before this session.
    pub warm_up_from: Option<String>,
}

/// Pacing in force for a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    pub enabled: bool,
    pub typing: bool,
    pub typing_per_char: Duration,
    pub typing_max: Duration,
    pub gap: Spacing,
    pub per_contact_per_hour: u32,
    pub warm_up_days: u32,
    pub warm_up_start_per_day: u32,
    /// When the warm-up started (unix ms).
    pub warm_up_from: i64,
}

/// Whether a send may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Now,
    /// Not before this time (unix ms), and why.
    Later(i64, &'static str),
}

impl Pacing {
    /// The defaults, with `c` applied; `enabled` is the gateway's default
    /// (`whatsapp.humanise`) unless the session says otherwise.
    pub fn from_config(c: &PacingConfig, enabled: bool, created_at: i64) -> Result<Self, String> {
        let dur = |field: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s.trim())
                .map_err(|e| format!("pacing.{field}: `{s}` is not a duration ({e})")),
        };
        let gap = match &c.gap {
            None => Spacing {
                min: Duration::from_secs(2),
                max: Duration::from_secs(8),
            },
            Some(s) => Spacing::parse(s).map_err(|e| format!("pacing.gap: {e}"))?,
        };
        let warm_up_from = match &c.warm_up_from {
            None => created_at,
            Some(s) => s
                .trim()
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| format!("pacing.warm_up_from: `{s}` is not an RFC 3339 time ({e})"))?,
        };
        let p = Self {
            enabled: c.enabled.unwrap_or(enabled),
            typing: c.typing.unwrap_or(true),
            typing_per_char: dur(
                "typing_per_char",
                &c.typing_per_char,
                Duration::from_millis(50),
            )?,
            typing_max: dur("typing_max", &c.typing_max, Duration::from_secs(6))?,
            gap,
            per_contact_per_hour: c.per_contact_per_hour.unwrap_or(4),
            warm_up_days: c.warm_up_days.unwrap_or(14),
            warm_up_start_per_day: c.warm_up_start_per_day.unwrap_or(20),
            warm_up_from,
        };
        if p.typing_max > Duration::from_secs(30) {
            return Err("pacing.typing_max: at most 30s (a send waits for it)".into());
        }
        if p.gap.max > Duration::from_secs(3600) {
            return Err("pacing.gap: at most 1h".into());
        }
        if p.warm_up_days > 0 && p.warm_up_start_per_day == 0 {
            return Err("pacing.warm_up_start_per_day: at least 1 during a warm-up".into());
        }
        Ok(p)
    }

    /// How long the chat shows typing before a text of `chars` characters.
    pub fn typing_time(&self, chars: usize) -> Duration {
        if !self.enabled || !self.typing {
            return Duration::ZERO;
        }
        let per = self.typing_per_char.as_millis() as u64;
        Duration::from_millis(per.saturating_mul(chars as u64)).min(self.typing_max)
    }

    /// The most messages a rolling day allows at `now` (`None`: no warm-up cap).
    pub fn daily_cap(&self, now: i64) -> Option<u32> {
        if !self.enabled || self.warm_up_days == 0 {
            return None;
        }
        let span = i64::from(self.warm_up_days) * DAY_MS;
        let age = (now - self.warm_up_from).max(0);
        if age >= span {
            return None;
        }
        // Doubling about every few days would be steeper than people: linear, from
        // the start figure to ten times it at the end.
        let start = f64::from(self.warm_up_start_per_day);
        let share = age as f64 / span as f64;
        Some((start + share * 9.0 * start).floor() as u32)
    }

    /// Whether a send may go at `now`: `sends` are the account's recorded sends of
    /// the last day (unix ms, oldest first); `unanswered` the times of our messages
    /// to this contact since their last message (oldest first). The gap after a
    /// send is drawn from `seed` (the session) and that send's time: random from one
    /// send to the next, but the same slot for every message waiting, so none
    /// overtakes an older one.
    pub fn next_slot(&self, now: i64, sends: &[i64], unanswered: &[i64], seed: &str) -> Slot {
        if !self.enabled {
            return Slot::Now;
        }
        let day: Vec<i64> = sends
            .iter()
            .copied()
            .filter(|t| *t > now - DAY_MS)
            .collect();
        if let Some(cap) = self.daily_cap(now)
            && day.len() >= cap as usize
        {
            let frees = day[day.len() - cap as usize] + DAY_MS;
            return Slot::Later(frees.max(now + 1), "warm_up");
        }
        if self.per_contact_per_hour > 0 {
            let hour: Vec<i64> = unanswered
                .iter()
                .copied()
                .filter(|t| *t > now - HOUR_MS)
                .collect();
            let cap = self.per_contact_per_hour as usize;
            if hour.len() >= cap {
                return Slot::Later(hour[hour.len() - cap] + HOUR_MS, "per_contact");
            }
        }
        if let Some(last) = day.last() {
            let gap = self.gap.draw(unit(&format!("{seed}:{last}"))).as_millis() as i64;
            if now < last + gap {
                return Slot::Later(last + gap, "gap");
            }
        }
        Slot::Now
    }

    /// What the limits view shows.
    pub fn view(&self, now: i64, sends: &[i64]) -> serde_json::Value {
        let day = sends.iter().filter(|t| **t > now - DAY_MS).count();
        let warm_up_day = ((now - self.warm_up_from).max(0) / DAY_MS) + 1;
        serde_json::json!({
            "enabled": self.enabled,
            "typing": {
                "enabled": self.enabled && self.typing,
                "per_char_ms": self.typing_per_char.as_millis() as u64,
                "max_ms": self.typing_max.as_millis() as u64,
            },
            "gap": { "min_ms": self.gap.min.as_millis() as u64, "max_ms": self.gap.max.as_millis() as u64 },
            "per_contact_per_hour": self.per_contact_per_hour,
            "warm_up": {
                "days": self.warm_up_days,
                "from": crate::clock::rfc3339(self.warm_up_from),
                "day": warm_up_day,
                "cap_per_day": self.daily_cap(now),
                "active": self.daily_cap(now).is_some(),
            },
            "sent_last_24h": day,
        })
    }
}

/// A number in [0, 1) from `seed` (stable per message).
fn unit(seed: &str) -> f64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(seed.as_bytes());
    let n = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(c: PacingConfig) -> Pacing {
        Pacing::from_config(&c, true, 0).unwrap()
    }

    #[test]
    fn defaults_type_space_cap_per_contact_and_warm_up() {
        let p = pacing(PacingConfig::default());
        assert_eq!(p.typing_time(20), Duration::from_millis(1000));
        assert_eq!(p.typing_time(10_000), Duration::from_secs(6), "capped");
        // The first hours of a new number: 20 in a rolling day.
        let now = 10 * 60_000;
        assert_eq!(p.daily_cap(now), Some(20));
        let sends: Vec<i64> = (0..20).map(|i| i * 30_000).collect();
        assert_eq!(
            p.next_slot(now, &sends, &[], "m"),
            Slot::Later(DAY_MS, "warm_up")
        );
        assert_eq!(p.daily_cap(7 * DAY_MS), Some(110), "halfway: 20 + 4.5 × 20");
        // Past the warm-up: no daily cap.
        assert_eq!(p.daily_cap(15 * DAY_MS), None);
        // The fifth unanswered message in an hour waits for the first to age out.
        let t = 20 * DAY_MS;
        let unanswered = [
            t - 50 * 60_000,
            t - 40 * 60_000,
            t - 30 * 60_000,
            t - 20 * 60_000,
        ];
        assert_eq!(
            p.next_slot(t, &unanswered, &unanswered, "m"),
            Slot::Later(t - 50 * 60_000 + HOUR_MS, "per_contact")
        );
        // Right after a send: a gap of 2–8 s, the same slot for every message
        // waiting, drawn afresh after the next send.
        let Slot::Later(at, "gap") = p.next_slot(t, &[t - 500], &[], "ses_1") else {
            panic!("a gap");
        };
        assert!((t - 500 + 2_000..=t - 500 + 8_000).contains(&at));
        assert_eq!(
            p.next_slot(t + 100, &[t - 500], &[], "ses_1"),
            Slot::Later(at, "gap")
        );
        let gaps: std::collections::HashSet<i64> = (0..20)
            .filter_map(|i| match p.next_slot(t, &[t - i], &[], "ses_1") {
                Slot::Later(at, _) => Some(at - (t - i)),
                Slot::Now => None,
            })
            .collect();
        assert!(
            gaps.len() > 10,
            "random from one send to the next: {gaps:?}"
        );
        assert_eq!(p.next_slot(t, &[t - 9_000], &[], "ses_1"), Slot::Now);
    }

    #[test]
    fn off_means_off_and_bad_settings_name_their_field() {
        let off = pacing(PacingConfig {
            enabled: Some(false),
            ..Default::default()
        });
        assert_eq!(off.typing_time(100), Duration::ZERO);
        let many: Vec<i64> = (0..100).collect();
        assert_eq!(off.next_slot(200, &many, &many, "m"), Slot::Now);
        let bad = |c: PacingConfig| Pacing::from_config(&c, true, 0).unwrap_err();
        assert!(
            bad(PacingConfig {
                gap: Some("soon".into()),
                ..Default::default()
            })
            .starts_with("pacing.gap")
        );
        assert!(
            bad(PacingConfig {
                typing_max: Some("2m".into()),
                ..Default::default()
            })
            .starts_with("pacing.typing_max")
        );
        assert!(
            bad(PacingConfig {
                warm_up_from: Some("yesterday".into()),
                ..Default::default()
            })
            .starts_with("pacing.warm_up_from")
        );
        let old_number = pacing(PacingConfig {
            warm_up_from: Some("2020-01-01T00:00:00Z".into()),
            ..Default::default()
        });
        assert_eq!(old_number.daily_cap(crate::clock::now_ms()), None);
    }
}

//! Safety caps for one LinkedIn account: how much it may do per day and per week,
//! how far apart its actions are, in which hours, and how slowly a new account warms
//! up. LinkedIn restricts accounts that act like robots, so these are on by default;
//! a session may adjust them within [`Ceilings`], never past them.
//!
//! Everything here is pure: [`Caps::next_slot`] reads the account's recorded actions
//! (kept in `account_actions`, written before each network call so a crash never
//! under-counts) and says whether an action may go now or when its next slot is.
//! Windows are rolling (the last 24 hours, the last 7 days), so a slot freed by an
//! action a day old is never a surprise at midnight.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const DAY_MS: i64 = 24 * 3600 * 1000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// How long the ramp-up of a new account lasts.
pub const RAMP_UP_DAYS: i64 = 21;
/// The share of each cap a new account has on its first day.
const RAMP_UP_START: f64 = 0.2;

/// What an account does that LinkedIn counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Message,
    Invitation,
    /// Accepting an invitation someone sent.
    Accept,
    ProfileView,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Message,
        Action::Invitation,
        Action::Accept,
        Action::ProfileView,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Invitation => "invitation",
            Self::Accept => "accept",
            Self::ProfileView => "profile_view",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Messages are paced on their own; everything else shares one pace.
    fn pace(self) -> Pace {
        match self {
            Self::Message => Pace::Messages,
            _ => Pace::Actions,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    Messages,
    Actions,
}

/// A range of random spacing between two actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spacing {
    pub min: Duration,
    pub max: Duration,
}

impl Spacing {
    /// `"10s-60s"` (humantime durations), or one duration for a fixed spacing.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let d = |t: &str| {
            humantime::parse_duration(t.trim()).map_err(|e| format!("`{t}` is not a duration: {e}"))
        };
        let (min, max) = (d(a)?, d(b)?);
        if max < min {
            return Err(format!("`{s}`: the upper bound is below the lower"));
        }
        Ok(Self { min, max })
    }

    fn render(&self) -> String {
        format!("{}s-{}s", self.min.as_secs(), self.max.as_secs())
    }

    /// A spacing drawn from the range with `unit` in `[0, 1)`.
    pub fn draw(&self, unit: f64) -> Duration {
        let span = self.max.saturating_sub(self.min);
        self.min + span.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Hours of the day the account acts in, in its own time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    pub start: Time,
    /// Exclusive; `24:00` is the end of the day.
    pub end: Option<Time>,
}

impl WorkingHours {
    /// `"08:00-19:00"`; `"00:00-24:00"` is every hour.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not a range like 08:00-19:00"))?;
        let t = |v: &str| -> Result<Option<Time>, String> {
            let v = v.trim();
            if v == "24:00" {
                return Ok(None);
            }
            v.parse::<Time>()
                .map(Some)
                .map_err(|_| format!("`{v}` is not a time like 08:00"))
        };
        let start = t(a)?.ok_or_else(|| format!("`{s}` cannot start at 24:00"))?;
        let end = t(b)?;
        if end.is_some_and(|e| e <= start) {
            return Err(format!("`{s}`: the end is not after the start"));
        }
        Ok(Self { start, end })
    }

    fn render(&self) -> String {
        let end = self
            .end
            .map_or("24:00".to_owned(), |e| e.strftime("%H:%M").to_string());
        format!("{}-{end}", self.start.strftime("%H:%M"))
    }

    fn all_day(&self) -> bool {
        self.start == Time::midnight() && self.end.is_none()
    }

    /// `at` if it is inside the hours, else the next start of them (unix ms).
    fn next_open(&self, tz: &TimeZone, at: i64) -> i64 {
        if self.all_day() {
            return at;
        }
        let Ok(ts) = jiff::Timestamp::from_millisecond(at) else {
            return at;
        };
        let local = ts.to_zoned(tz.clone());
        let time = local.time();
        let inside = time >= self.start && self.end.is_none_or(|e| time < e);
        if inside {
            return at;
        }
        let day = if time < self.start {
            local.date()
        } else {
            local.date().tomorrow().unwrap_or(local.date())
        };
        day.to_datetime(self.start)
            .to_zoned(tz.clone())
            .map_or(at, |z| z.timestamp().as_millisecond())
    }
}

/// The most a session may set its caps to (and the least spacing).
#[derive(Debug, Clone, Copy)]
pub struct Ceilings;

impl Ceilings {
    pub const INVITATIONS_PER_DAY: u32 = 100;
    pub const INVITATIONS_PER_WEEK: u32 = 200;
    pub const MESSAGES_PER_DAY: u32 = 150;
    pub const PROFILE_VIEWS_PER_DAY: u32 = 100;
    pub const ACCEPTS_PER_DAY: u32 = 100;
    /// Two messages are never closer than this.
    pub const MESSAGE_SPACING: Duration = Duration::from_secs(10);
    /// Two other actions are never closer than this (the default is about a minute).
    pub const ACTION_SPACING: Duration = Duration::from_secs(2);
}

/// An account's caps, as a session configures them (`config.caps`); every field has
/// a default, so `{}` is the safe setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitations_per_day: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitations_per_week: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_day: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_views_per_day: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepts_per_day: Option<u32>,
    /// `"10s-60s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_spacing: Option<String>,
    /// `"45s-90s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_spacing: Option<String>,
    /// `"08:00-20:00"` in `time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<String>,
    /// An IANA time zone (`Europe/Paris`); UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The account is new: caps start at a fifth and grow over three weeks from
    /// `warm_up_from` (RFC 3339 date or time; the session's creation by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_account: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_up_from: Option<String>,
}

/// Caps in force for one account.
#[derive(Debug, Clone, PartialEq)]
pub struct Caps {
    pub invitations_per_day: u32,
    pub invitations_per_week: u32,
    pub messages_per_day: u32,
    pub profile_views_per_day: u32,
    pub accepts_per_day: u32,
    pub message_spacing: Spacing,
    pub action_spacing: Spacing,
    pub working_hours: WorkingHours,
    pub time_zone: TimeZone,
    pub time_zone_name: String,
    /// When the account's warm-up began (unix ms), for new accounts.
    pub warm_up_from: Option<i64>,
}

impl Caps {
    /// The caps of `config` over the defaults, refused (naming the field) when a value
    /// is past its ceiling or unreadable. `created_at`: when the session was made
    /// (the start of a new account's warm-up unless it says otherwise).
    pub fn from_config(c: &CapsConfig, created_at: i64) -> Result<Self, String> {
        fn capped(field: &str, v: Option<u32>, default: u32, ceiling: u32) -> Result<u32, String> {
            match v {
                Some(v) if v > ceiling => Err(format!(
                    "caps.{field}: {v} is over the ceiling of {ceiling}"
                )),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        }
        let spacing = |field: &str, v: &Option<String>, default: &str, floor: Duration| {
            let s = Spacing::parse(v.as_deref().unwrap_or(default))
                .map_err(|e| format!("caps.{field}: {e}"))?;
            if s.min < floor {
                return Err(format!(
                    "caps.{field}: actions are never closer than {} s",
                    floor.as_secs()
                ));
            }
            Ok(s)
        };
        let time_zone_name = c.time_zone.clone().unwrap_or_else(|| "UTC".into());
        let time_zone = TimeZone::get(&time_zone_name)
            .map_err(|_| format!("caps.time_zone: `{time_zone_name}` is not a known time zone"))?;
        let working_hours =
            WorkingHours::parse(c.working_hours.as_deref().unwrap_or("08:00-20:00"))
                .map_err(|e| format!("caps.working_hours: {e}"))?;
        let warm_up_from = match (&c.warm_up_from, c.new_account.unwrap_or(false)) {
            (Some(s), _) => Some(parse_day_or_time(s).ok_or_else(|| {
                format!("caps.warm_up_from: `{s}` is not a date (2026-11-30) or an RFC 3339 time")
            })?),
            (None, true) => Some(created_at),
            (None, false) => None,
        };
        Ok(Self {
            invitations_per_day: capped(
                "invitations_per_day",
                c.invitations_per_day,
                15,
                Ceilings::INVITATIONS_PER_DAY,
            )?,
            invitations_per_week: capped(
                "invitations_per_week",
                c.invitations_per_week,
                80,
                Ceilings::INVITATIONS_PER_WEEK,
            )?,
            messages_per_day: capped(
                "messages_per_day",
                c.messages_per_day,
                50,
                Ceilings::MESSAGES_PER_DAY,
            )?,
            profile_views_per_day: capped(
                "profile_views_per_day",
                c.profile_views_per_day,
                80,
                Ceilings::PROFILE_VIEWS_PER_DAY,
            )?,
            accepts_per_day: capped(
                "accepts_per_day",
                c.accepts_per_day,
                50,
                Ceilings::ACCEPTS_PER_DAY,
            )?,
            message_spacing: spacing(
                "message_spacing",
                &c.message_spacing,
                "10s-60s",
                Ceilings::MESSAGE_SPACING,
            )?,
            action_spacing: spacing(
                "action_spacing",
                &c.action_spacing,
                "45s-90s",
                Ceilings::ACTION_SPACING,
            )?,
            working_hours,
            time_zone,
            time_zone_name,
            warm_up_from,
        })
    }

    /// The share of every cap the account has at `now` (1 once warmed up).
    pub fn ramp(&self, now: i64) -> f64 {
        let Some(from) = self.warm_up_from else {
            return 1.0;
        };
        let day = ((now - from).max(0) / DAY_MS) as f64;
        (RAMP_UP_START + (1.0 - RAMP_UP_START) * day / RAMP_UP_DAYS as f64).min(1.0)
    }

    /// The windows that count `action`: (name, length, limit at `now`).
    fn windows(&self, action: Action, now: i64) -> Vec<(&'static str, i64, u32)> {
        let ramp = self.ramp(now);
        let scaled = |limit: u32| -> u32 {
            if limit == 0 {
                0
            } else {
                ((f64::from(limit) * ramp).ceil() as u32).clamp(1, limit)
            }
        };
        match action {
            Action::Message => vec![("day", DAY_MS, scaled(self.messages_per_day))],
            Action::Invitation => vec![
                ("day", DAY_MS, scaled(self.invitations_per_day)),
                ("week", WEEK_MS, scaled(self.invitations_per_week)),
            ],
            Action::Accept => vec![("day", DAY_MS, scaled(self.accepts_per_day))],
            Action::ProfileView => vec![("day", DAY_MS, scaled(self.profile_views_per_day))],
        }
    }

    /// When `action` may go: `now` if it may go now, else its next slot, with why.
    /// `history`: the account's actions (kind, unix ms), any order; `gap`: the spacing
    /// drawn after the last action of the same pace (see [`Spacing::draw`]).
    pub fn next_slot(
        &self,
        action: Action,
        history: &[(Action, i64)],
        now: i64,
        gap: Duration,
    ) -> Slot {
        let mut at = now;
        let mut why = None;
        for (name, len, limit) in self.windows(action, now) {
            let mut inside: Vec<i64> = history
                .iter()
                .filter(|(a, t)| *a == action && *t > now - len)
                .map(|(_, t)| *t)
                .collect();
            if limit == 0 {
                return Slot::Never(format!("the {} cap per {name} is 0", action.as_str()));
            }
            if inside.len() < limit as usize {
                continue;
            }
            inside.sort_unstable();
            // The newest of those that must age out for one more to fit.
            let freed = inside[inside.len() - limit as usize] + len;
            if freed > at {
                at = freed;
                why = Some(format!(
                    "{} cap reached: {limit} per {name}",
                    action.as_str()
                ));
            }
        }
        let pace = action.pace();
        if let Some(last) = history
            .iter()
            .filter(|(a, _)| a.pace() == pace)
            .map(|(_, t)| *t)
            .max()
        {
            let spaced = last + gap.as_millis() as i64;
            if spaced > at {
                at = spaced;
                why.get_or_insert_with(|| "spacing since the last action".into());
            }
        }
        let open = self.working_hours.next_open(&self.time_zone, at);
        if open > at {
            at = open;
            why = Some(format!(
                "outside working hours ({} {})",
                self.working_hours.render(),
                self.time_zone_name
            ));
        }
        match why {
            None => Slot::Now,
            Some(why) => Slot::At(at, why),
        }
    }

    /// The spacing after the last action of `action`'s pace: drawn at random between
    /// the configured bounds, but from that action's own time and `seed` (the
    /// session), so the channel and the limits view agree, across restarts too.
    pub fn gap(&self, action: Action, history: &[(Action, i64)], seed: &str) -> Duration {
        let pace = action.pace();
        let last = history
            .iter()
            .filter(|(a, _)| a.pace() == pace)
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(0);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes().chain(last.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
        match pace {
            Pace::Messages => self.message_spacing.draw(unit),
            Pace::Actions => self.action_spacing.draw(unit),
        }
    }

    /// What the limits view shows: per cap, its limit, use and what remains, and for
    /// each action its next slot.
    pub fn usage(
        &self,
        history: &[(Action, i64)],
        now: i64,
        gaps: impl Fn(Action) -> Duration,
    ) -> serde_json::Value {
        let mut caps = serde_json::Map::new();
        for action in Action::ALL {
            for (name, len, limit) in self.windows(action, now) {
                let used = history
                    .iter()
                    .filter(|(a, t)| *a == action && *t > now - len)
                    .count() as u32;
                caps.insert(
                    format!("{}s_per_{name}", action.as_str()),
                    serde_json::json!({
                        "limit": limit,
                        "used": used,
                        "remaining": limit.saturating_sub(used),
                    }),
                );
            }
        }
        let mut next = serde_json::Map::new();
        for action in Action::ALL {
            let slot = match self.next_slot(action, history, now, gaps(action)) {
                Slot::Now => {
                    serde_json::json!({ "at": crate::clock::rfc3339(now), "reason": null })
                }
                Slot::At(at, why) => {
                    serde_json::json!({ "at": crate::clock::rfc3339(at), "reason": why })
                }
                Slot::Never(why) => serde_json::json!({ "at": null, "reason": why }),
            };
            next.insert(action.as_str().into(), slot);
        }
        serde_json::json!({
            "caps": caps,
            "next_slot": next,
            "message_spacing": self.message_spacing.render(),
            "action_spacing": self.action_spacing.render(),
            "working_hours": self.working_hours.render(),
            "time_zone": self.time_zone_name,
            "ramp_up": self.warm_up_from.map(|from| serde_json::json!({
                "from": crate::clock::rfc3339(from),
                "days": RAMP_UP_DAYS,
                "share": (self.ramp(now) * 100.0).round() / 100.0,
            })),
        })
    }
}

/// When an action may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Now,
    /// Not before this time (unix ms), and why.
    At(i64, String),
    /// Not at all (a cap set to 0).
    Never(String),
}

fn parse_day_or_time(s: &str) -> Option<i64> {
    if let Some(ms) = crate::clock::parse_rfc3339(s) {
        return Some(ms);
    }
    let date: jiff::civil::Date = s.parse().ok()?;
    date.to_zoned(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1000;
    /// 2026-12-02T10:00:00Z, a Wednesday.
    const NOW: i64 = 1_796_205_600_000;

    fn all_day() -> CapsConfig {
        CapsConfig {
            working_hours: Some("00:00-24:00".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let c = Caps::from_config(&CapsConfig::default(), 0).unwrap();
        assert_eq!(
            (
                c.invitations_per_day,
                c.invitations_per_week,
                c.messages_per_day,
                c.profile_views_per_day
            ),
            (15, 80, 50, 80)
        );
        assert_eq!(c.message_spacing.min, Duration::from_secs(10));
        assert_eq!(c.message_spacing.max, Duration::from_secs(60));
        assert_eq!(c.working_hours.render(), "08:00-20:00");
        assert_eq!(c.warm_up_from, None);
    }

    #[test]
    fn values_past_a_ceiling_are_refused_by_name() {
        let over = CapsConfig {
            invitations_per_day: Some(101),
            ..Default::default()
        };
        let e = Caps::from_config(&over, 0).unwrap_err();
        assert_eq!(
            e,
            "caps.invitations_per_day: 101 is over the ceiling of 100"
        );
        let close = CapsConfig {
            message_spacing: Some("5s-20s".into()),
            ..Default::default()
        };
        let e = Caps::from_config(&close, 0).unwrap_err();
        assert!(e.starts_with("caps.message_spacing: "), "{e}");
        let tz = CapsConfig {
            time_zone: Some("Mars/Olympus".into()),
            ..Default::default()
        };
        assert!(
            Caps::from_config(&tz, 0)
                .unwrap_err()
                .starts_with("caps.time_zone")
        );
        let hours = CapsConfig {
            working_hours: Some("19:00-08:00".into()),
            ..Default::default()
        };
        assert!(Caps::from_config(&hours, 0).is_err());
    }

    #[test]
    fn the_sixteenth_invitation_of_a_day_waits_for_the_oldest_to_age_out() {
        let caps = Caps::from_config(&all_day(), 0).unwrap();
        let history: Vec<(Action, i64)> = (0..15)
            .map(|i| (Action::Invitation, NOW - 10 * HOUR + i * 60_000))
            .collect();
        let slot = caps.next_slot(Action::Invitation, &history, NOW, Duration::ZERO);
        assert_eq!(
            slot,
            Slot::At(NOW + 14 * HOUR, "invitation cap reached: 15 per day".into())
        );
        // Messages are counted apart.
        assert_eq!(
            caps.next_slot(Action::Message, &history, NOW, Duration::ZERO),
            Slot::Now
        );
    }

    #[test]
    fn the_weekly_cap_holds_even_when_days_are_free() {
        let caps = Caps::from_config(&all_day(), 0).unwrap();
        let history: Vec<(Action, i64)> = (0..80)
            .map(|i| (Action::Invitation, NOW - 6 * 24 * HOUR - HOUR + i * 1000))
            .collect();
        match caps.next_slot(Action::Invitation, &history, NOW, Duration::ZERO) {
            Slot::At(at, why) => {
                assert_eq!(why, "invitation cap reached: 80 per week");
                assert_eq!(at, NOW + 23 * HOUR);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spacing_is_counted_from_the_last_action_of_the_same_pace() {
        let caps = Caps::from_config(&all_day(), 0).unwrap();
        let history = [
            (Action::Message, NOW - 4_000),
            (Action::Invitation, NOW - 1_000),
        ];
        let gap = Duration::from_secs(12);
        assert_eq!(
            caps.next_slot(Action::Message, &history, NOW, gap),
            Slot::At(NOW + 8_000, "spacing since the last action".into())
        );
        assert_eq!(
            caps.next_slot(Action::ProfileView, &history, NOW, gap),
            Slot::At(NOW + 11_000, "spacing since the last action".into())
        );
        let d = caps.message_spacing.draw(0.5);
        assert_eq!(d, Duration::from_secs(35));
    }

    #[test]
    fn outside_working_hours_waits_for_the_next_morning_in_the_accounts_zone() {
        let paris = CapsConfig {
            time_zone: Some("Europe/Paris".into()),
            working_hours: Some("08:00-19:00".into()),
            ..Default::default()
        };
        let caps = Caps::from_config(&paris, 0).unwrap();
        // 10:00Z is 11:00 in Paris: open.
        assert_eq!(
            caps.next_slot(Action::Message, &[], NOW, Duration::ZERO),
            Slot::Now
        );
        // 19:30Z is 20:30 in Paris: next 08:00 Paris = 07:00Z the next day.
        let evening = NOW + 9 * HOUR + HOUR / 2;
        match caps.next_slot(Action::Message, &[], evening, Duration::ZERO) {
            Slot::At(at, why) => {
                assert_eq!(at, NOW + 21 * HOUR);
                assert_eq!(why, "outside working hours (08:00-19:00 Europe/Paris)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_account_starts_at_a_fifth_and_is_warmed_up_after_three_weeks() {
        let new = CapsConfig {
            new_account: Some(true),
            ..all_day()
        };
        let caps = Caps::from_config(&new, NOW).unwrap();
        assert_eq!(caps.windows(Action::Invitation, NOW)[0].2, 3);
        assert_eq!(caps.windows(Action::Message, NOW)[0].2, 10);
        let later = NOW + RAMP_UP_DAYS * DAY_MS;
        assert_eq!(caps.windows(Action::Invitation, later)[0].2, 15);
        let history: Vec<(Action, i64)> = (0..3).map(|i| (Action::Invitation, NOW - i)).collect();
        assert!(matches!(
            caps.next_slot(Action::Invitation, &history, NOW, Duration::ZERO),
            Slot::At(_, _)
        ));
        let from = CapsConfig {
            warm_up_from: Some("2026-11-01".into()),
            ..all_day()
        };
        assert_eq!(Caps::from_config(&from, NOW).unwrap().ramp(NOW), 1.0);
    }

    #[test]
    fn the_usage_view_counts_what_remains() {
        let caps = Caps::from_config(&all_day(), 0).unwrap();
        let history: Vec<(Action, i64)> = (0..15).map(|i| (Action::Invitation, NOW - i)).collect();
        let v = caps.usage(&history, NOW, |_| Duration::ZERO);
        assert_eq!(v["caps"]["invitations_per_day"]["used"], 15);
        assert_eq!(v["caps"]["invitations_per_day"]["remaining"], 0);
        assert_eq!(v["caps"]["invitations_per_week"]["remaining"], 65);
        assert_eq!(v["caps"]["messages_per_day"]["remaining"], 50);
        assert_eq!(
            v["next_slot"]["invitation"]["reason"],
            "invitation cap reached: 15 per day"
        );
        assert!(v["next_slot"]["message"]["reason"].is_null());
    }
}

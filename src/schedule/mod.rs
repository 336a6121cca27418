//! Cron schedules read in a time zone, with stable jitter and load-spreading `@*-random`
//! macros: which slot is due now, which was missed, and when to look again. Pure: the
//! clock is always an argument, so every rule here is a table test.
//!
//! A *slot* is an instant the cron expression names. A run for slot `s` may start from
//! `s + jitter(s)` until `starting_deadline` later; after that the slot counts as missed
//! and is skipped rather than caught up (STYLE §6: no surprise bursts after an outage).

pub mod duration;

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::crd::common::ScheduleSpec;

/// How late a slot may still start when nothing else is configured: long enough to
/// ride out a controller restart or a short outage, short enough that a daily backup
/// does not fire in the middle of the working day after a long one.
pub const DEFAULT_STARTING_DEADLINE: Duration = Duration::from_secs(3600);

/// A schedule that cannot be used. Every variant is the user's to fix; the controller
/// reports it as `Ready=False`, reason `InvalidSchedule`, and does not retry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron { expr: String, reason: String },
    #[error("cron expression {expr:?} never fires")]
    NeverFires { expr: String },
    #[error("unknown time zone {0:?} (expected an IANA name such as Europe/Berlin)")]
    UnknownTimeZone(String),
    #[error("jitter: {0}")]
    InvalidJitter(duration::DurationError),
}

impl ScheduleError {
    /// The condition reason and metric label for every schedule error.
    pub fn category(&self) -> &'static str {
        "InvalidSchedule"
    }
}

/// A parsed, validated schedule of one object.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
    jitter: Duration,
    starting_deadline: Duration,
    identity: String,
    expression: String,
}

/// What the schedule says at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// A slot whose run should be started now.
    pub due: Option<Timestamp>,
    /// The newest slot that passed its starting deadline without a run; it is skipped.
    pub missed: Option<Timestamp>,
    /// The next slot strictly after now, for status.
    pub next_slot: Option<Timestamp>,
    /// When the schedule next needs attention (the start time of the next slot not yet
    /// handled, jitter included).
    pub wake_at: Option<Timestamp>,
}

impl Schedule {
    /// Parses `spec` for the object identified by `identity` (e.g. `namespace/name`),
    /// which seeds jitter and the `@*-random` macros so they are stable per object.
    pub fn new(spec: &ScheduleSpec, identity: &str) -> Result<Self, ScheduleError> {
        let ScheduleSpec {
            cron,
            time_zone,
            jitter,
            suspend: _,
        } = spec;
        let expression = expand_random_macro(cron.trim(), identity);
        let parsed = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&expression)
            .map_err(|e| ScheduleError::InvalidCron {
                expr: cron.clone(),
                reason: e.to_string(),
            })?;
        let tz_name = time_zone.as_deref().unwrap_or("UTC");
        let tz = TimeZone::get(tz_name)
            .map_err(|_| ScheduleError::UnknownTimeZone(tz_name.to_string()))?;
        let jitter = match jitter {
            Some(j) => duration::parse(j).map_err(ScheduleError::InvalidJitter)?,
            None => Duration::ZERO,
        };
        let schedule = Schedule {
            cron: parsed,
            tz,
            jitter,
            starting_deadline: DEFAULT_STARTING_DEADLINE,
            identity: identity.to_string(),
            expression,
        };
        // A pattern like `0 0 30 2 *` parses but names no instant; say so now rather
        // than never running. Leap-day patterns still fire within the search window.
        if schedule.next_slot_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(ScheduleError::NeverFires { expr: cron.clone() });
        }
        Ok(schedule)
    }

    /// Overrides how late a slot may still start.
    pub fn with_starting_deadline(mut self, deadline: Duration) -> Self {
        self.starting_deadline = deadline;
        self
    }

    /// The cron expression in effect (after `@*-random` expansion).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first slot strictly after `t`.
    pub fn next_slot_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&t.to_zoned(self.tz.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The newest slot at or before `t`.
    pub fn slot_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&t.to_zoned(self.tz.clone()), true)
            .ok()
            .map(|z| z.timestamp())
    }

    fn slot_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&t.to_zoned(self.tz.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The stable delay of `slot`'s run, below the configured jitter.
    pub fn jitter_for(&self, slot: Timestamp) -> Duration {
        let millis = self.jitter.as_millis() as u64;
        if millis == 0 {
            return Duration::ZERO;
        }
        let h = stable_hash(&format!("{}@{}", self.identity, slot.as_second()));
        Duration::from_millis(h % millis)
    }

    fn start_of(&self, slot: Timestamp) -> Timestamp {
        add(slot, self.jitter_for(slot))
    }

    /// Decides at `now` which slot is due or missed. `last_handled` is the newest slot a
    /// run was already created (or skipped) for; `not_before` excludes slots at or before
    /// it (the object's creation time: a new policy does not run for a slot that passed
    /// before it existed).
    pub fn plan(
        &self,
        now: Timestamp,
        last_handled: Option<Timestamp>,
        not_before: Timestamp,
    ) -> Plan {
        let floor = last_handled.map_or(not_before, |h| h.max(not_before));
        let mut due = None;
        let mut missed = None;
        // The newest slot may still be inside its jitter, so look at the one before it too.
        let newest = self.slot_at_or_before(now);
        let candidates = newest
            .into_iter()
            .chain(newest.and_then(|s| self.slot_before(s)));
        for slot in candidates {
            if slot <= floor {
                break;
            }
            let start = self.start_of(slot);
            if start > now {
                continue;
            }
            if now.duration_since(start) <= signed(self.starting_deadline) {
                due = Some(slot);
            } else {
                missed = Some(slot);
            }
            break;
        }
        let handled = [Some(floor), due, missed].into_iter().flatten().max();
        let wake_at = self.wake_after(now, handled.unwrap_or(floor));
        Plan {
            due,
            missed,
            next_slot: self.next_slot_after(now),
            wake_at,
        }
    }

    /// Start time of the earliest slot after `handled` that starts after `now`.
    fn wake_after(&self, now: Timestamp, handled: Timestamp) -> Option<Timestamp> {
        // A slot can only start after `now` if it lies after `now - jitter`; starting the
        // walk there (instead of at `handled`, possibly long ago) keeps it short.
        let earliest = now
            .checked_sub(signed(self.jitter))
            .unwrap_or(Timestamp::MIN);
        let mut slot = self.next_slot_after(handled.max(earliest))?;
        loop {
            let start = self.start_of(slot);
            if start > now {
                return Some(start);
            }
            slot = self.next_slot_after(slot)?;
        }
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(signed(d)).unwrap_or(Timestamp::MAX)
}

fn stable_hash(s: &str) -> u64 {
    let digest = Sha256::digest(s.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Turns `@hourly-random` and friends into a concrete expression whose fields derive
/// from `identity`, spreading many objects over the period. Day of month stays within
/// 1..=27 so a monthly run never skips a short month.
fn expand_random_macro(expr: &str, identity: &str) -> String {
    let h = stable_hash(identity);
    let minute = h % 60;
    let hour = (h >> 8) % 24;
    let weekday = (h >> 16) % 7;
    let day = (h >> 24) % 27 + 1;
    match expr.to_ascii_lowercase().as_str() {
        "@hourly-random" => format!("{minute} * * * *"),
        "@daily-random" => format!("{minute} {hour} * * *"),
        "@weekly-random" => format!("{minute} {hour} * * {weekday}"),
        "@monthly-random" => format!("{minute} {hour} {day} * *"),
        _ => expr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cron: &str, tz: Option<&str>, jitter: Option<&str>) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.into(),
            time_zone: tz.map(Into::into),
            jitter: jitter.map(Into::into),
            suspend: false,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sched(cron: &str, tz: Option<&str>) -> Schedule {
        Schedule::new(&spec(cron, tz, None), "ns/name").unwrap()
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let cases: [(ScheduleSpec, &str); 6] = [
            (spec("not cron", None, None), "invalid cron"),
            (spec("* * * *", None, None), "invalid cron"),
            (spec("0 0 * * * *", None, None), "invalid cron"),
            (spec("0 0 30 2 *", None, None), "never fires"),
            (
                spec("0 * * * *", Some("Mars/Olympus"), None),
                "unknown time zone",
            ),
            (spec("0 * * * *", None, Some("5 minutes")), "jitter"),
        ];
        for (s, want) in cases {
            let err = Schedule::new(&s, "ns/x").unwrap_err();
            assert!(err.to_string().contains(want), "{s:?}: {err}");
            assert_eq!(err.category(), "InvalidSchedule");
        }
    }

    #[test]
    fn next_slot_honours_the_time_zone() {
        let s = sched("30 2 * * *", Some("Europe/Berlin"));
        // 02:30 in Berlin (CEST, +02:00) is 00:30 UTC.
        assert_eq!(
            s.next_slot_after(ts("2026-07-01T12:00:00Z")),
            Some(ts("2026-07-02T00:30:00Z"))
        );
        // In winter (CET, +01:00) the same wall time is 01:30 UTC.
        assert_eq!(
            s.next_slot_after(ts("2026-01-10T12:00:00Z")),
            Some(ts("2026-01-11T01:30:00Z"))
        );
    }

    #[test]
    fn dst_gap_runs_once_after_the_gap_and_fold_runs_once() {
        let s = sched("30 2 * * *", Some("Europe/Berlin"));
        // 2026-03-29: clocks jump 02:00 -> 03:00 CEST; 02:30 does not exist.
        let spring = s.next_slot_after(ts("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            spring
                .to_zoned(TimeZone::get("Europe/Berlin").unwrap())
                .date(),
            jiff::civil::date(2026, 3, 29),
            "the skipped local time still runs that day"
        );
        // 2026-10-25: 02:30 happens twice (CEST then CET); exactly one slot that day.
        let first = s.next_slot_after(ts("2026-10-24T12:00:00Z")).unwrap();
        let second = s.next_slot_after(first).unwrap();
        assert!(
            second.duration_since(first) > SignedDuration::from_hours(20),
            "{first} then {second}"
        );
    }

    #[test]
    fn due_slot_is_run_once_then_waits_for_the_next() {
        let s = sched("*/5 * * * *", None);
        let created = ts("2026-01-01T00:00:00Z");
        let now = ts("2026-01-01T00:10:30Z");
        let p = s.plan(now, None, created);
        assert_eq!(p.due, Some(ts("2026-01-01T00:10:00Z")));
        assert_eq!(p.missed, None);
        assert_eq!(p.next_slot, Some(ts("2026-01-01T00:15:00Z")));
        assert_eq!(p.wake_at, Some(ts("2026-01-01T00:15:00Z")));
        // Once handled, the same instant plans nothing.
        let p = s.plan(now, p.due, created);
        assert_eq!(p.due, None);
        assert_eq!(p.wake_at, Some(ts("2026-01-01T00:15:00Z")));
    }

    #[test]
    fn slots_before_creation_never_run() {
        let s = sched("0 * * * *", None);
        let created = ts("2026-01-01T10:20:00Z");
        let p = s.plan(ts("2026-01-01T10:21:00Z"), None, created);
        assert_eq!(p.due, None);
        assert_eq!(p.missed, None);
        assert_eq!(p.wake_at, Some(ts("2026-01-01T11:00:00Z")));
    }

    #[test]
    fn late_slots_run_within_the_deadline_and_are_skipped_after_it() {
        let s = sched("0 * * * *", None).with_starting_deadline(Duration::from_secs(600));
        let created = ts("2026-01-01T00:00:00Z");
        let last = Some(ts("2026-01-01T08:00:00Z"));
        // Controller back 5 minutes after the 10:00 slot (09:00 was missed during the outage).
        let p = s.plan(ts("2026-01-01T10:05:00Z"), last, created);
        assert_eq!(p.due, Some(ts("2026-01-01T10:00:00Z")));
        // Back 30 minutes late: 10:00 is missed, not caught up; wait for 11:00.
        let p = s.plan(ts("2026-01-01T10:30:00Z"), last, created);
        assert_eq!(p.due, None);
        assert_eq!(p.missed, Some(ts("2026-01-01T10:00:00Z")));
        assert_eq!(p.wake_at, Some(ts("2026-01-01T11:00:00Z")));
    }

    #[test]
    fn jitter_is_stable_bounded_and_delays_the_start() {
        let s = Schedule::new(&spec("0 * * * *", None, Some("10m")), "ns/a").unwrap();
        let slot = ts("2026-01-01T10:00:00Z");
        let j = s.jitter_for(slot);
        assert!(j < Duration::from_secs(600));
        assert_eq!(j, s.jitter_for(slot), "stable");
        let other = Schedule::new(&spec("0 * * * *", None, Some("10m")), "ns/b").unwrap();
        let spread: std::collections::HashSet<_> = (0..20)
            .map(|h| other.jitter_for(add(slot, Duration::from_secs(3600 * h))))
            .collect();
        assert!(spread.len() > 10, "jitter varies between slots");
        // Before slot+jitter nothing is due, the wake-up is exactly slot+jitter.
        let start = add(slot, j);
        let just_before = start.checked_sub(SignedDuration::from_millis(1)).unwrap();
        let created = ts("2026-01-01T00:00:00Z");
        let p = s.plan(just_before, Some(ts("2026-01-01T09:00:00Z")), created);
        assert_eq!(p.due, None);
        assert_eq!(p.wake_at, Some(start));
        let p = s.plan(start, Some(ts("2026-01-01T09:00:00Z")), created);
        assert_eq!(p.due, Some(slot));
    }

    #[test]
    fn random_macros_are_stable_per_identity_and_valid() {
        for m in [
            "@hourly-random",
            "@daily-random",
            "@weekly-random",
            "@monthly-random",
        ] {
            let a = Schedule::new(&spec(m, None, None), "team-a/orders").unwrap();
            let a2 = Schedule::new(&spec(m, None, None), "team-a/orders").unwrap();
            assert_eq!(a.expression(), a2.expression());
            assert!(!a.expression().starts_with('@'));
        }
        let days: std::collections::HashSet<String> = (0..200)
            .map(|i| {
                let s =
                    Schedule::new(&spec("@monthly-random", None, None), &format!("n/{i}")).unwrap();
                s.expression().split(' ').nth(2).unwrap().to_string()
            })
            .collect();
        assert!(
            days.iter()
                .all(|d| (1..=27).contains(&d.parse::<u32>().unwrap()))
        );
        assert!(days.len() > 20, "spread over the month");
    }

    #[test]
    fn standard_macros_and_names_work() {
        let s = sched("@daily", None);
        assert_eq!(
            s.next_slot_after(ts("2026-05-05T10:00:00Z")),
            Some(ts("2026-05-06T00:00:00Z"))
        );
        let s = sched("0 9 * * MON-FRI", None);
        // 2026-05-09 is a Saturday: next is Monday the 11th.
        assert_eq!(
            s.next_slot_after(ts("2026-05-08T10:00:00Z")),
            Some(ts("2026-05-11T09:00:00Z"))
        );
    }
}

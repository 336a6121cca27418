//! RTO and RPO of a drill run, measured from what happened (phase and check times), never
//! assumed. Pure.
//!
//! - RTO: from the start of Restoring to the end of the last passing check (or the end of
//!   the restore when there are no checks). Only a run whose restore succeeded and whose
//!   checks all passed demonstrates an RTO; otherwise there is none. Breakdown: `restore`
//!   (Restoring) and `verify` (restore end to last check end), in seconds.
//! - RPO: the run's start minus the restore point's time (`restorePoint`), and, when a
//!   freshness check ran, the run's start minus the newest business timestamp found in the
//!   restored data (`data`). The measured RPO is the data one when present: it is how much
//!   work would really be lost.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::crd::dr_drill::{CheckVerdict, Measurement};
use crate::schedule::duration;

/// Non-negative seconds from `from` to `to`.
pub fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()).max(0) as f64 / 1000.0
}

/// A measurement for people: tenths of a second below a minute (drills of small data
/// restore in seconds, and the difference matters), two units above (`4m12s`, `3h2m`).
pub fn format_seconds(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        let t = format!("{s:.1}");
        format!("{}s", t.strip_suffix(".0").unwrap_or(&t))
    } else {
        duration::format(Duration::from_secs_f64(s))
    }
}

fn measurement(
    seconds: f64,
    objective: Option<&str>,
    breakdown: BTreeMap<String, f64>,
) -> Measurement {
    let limit = objective.and_then(|o| duration::parse(o).ok());
    Measurement {
        measured: Some(format_seconds(seconds)),
        measured_seconds: Some(seconds),
        objective: objective.map(str::to_string),
        met: limit.map(|l| seconds <= l.as_secs_f64()),
        breakdown,
    }
}

/// The RTO of a run: `None` unless every check passed (an RTO is only demonstrated by a
/// successful recovery). `checks` holds each check's verdict and end time.
pub fn rto(
    restoring_start: Timestamp,
    restored_at: Timestamp,
    checks: &[(CheckVerdict, Option<Timestamp>)],
    objective: Option<&str>,
) -> Option<Measurement> {
    if checks.iter().any(|(v, _)| *v != CheckVerdict::Passed) {
        return None;
    }
    let last_check = checks.iter().filter_map(|(_, end)| *end).max();
    let end = last_check.map_or(restored_at, |c| c.max(restored_at));
    let breakdown = BTreeMap::from([
        (
            "restore".to_string(),
            seconds_between(restoring_start, restored_at),
        ),
        ("verify".to_string(), seconds_between(restored_at, end)),
    ]);
    Some(measurement(
        seconds_between(restoring_start, end),
        objective,
        breakdown,
    ))
}

/// The RPO of a run started at `run_start` that restored the point taken at
/// `restore_point`; `newest_data` is the newest business timestamp a freshness check found.
pub fn rpo(
    run_start: Timestamp,
    restore_point: Timestamp,
    newest_data: Option<Timestamp>,
    objective: Option<&str>,
) -> Measurement {
    let point = seconds_between(restore_point, run_start);
    let mut breakdown = BTreeMap::from([("restorePoint".to_string(), point)]);
    let data = newest_data.map(|t| seconds_between(t, run_start));
    if let Some(d) = data {
        breakdown.insert("data".to_string(), d);
    }
    measurement(data.unwrap_or(point), objective, breakdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn short_measurements_keep_tenths() {
        assert_eq!(format_seconds(9.49), "9.5s");
        assert_eq!(format_seconds(0.04), "0s");
        assert_eq!(format_seconds(12.0), "12s");
        assert_eq!(format_seconds(59.96), "60s");
        assert_eq!(format_seconds(61.0), "1m1s");
        assert_eq!(format_seconds(-3.0), "0s");
    }

    #[test]
    fn rto_runs_from_restore_start_to_the_last_passing_check() {
        let m = rto(
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:03:30Z"),
            &[
                (CheckVerdict::Passed, Some(t("2026-01-01T00:03:40Z"))),
                (CheckVerdict::Passed, Some(t("2026-01-01T00:04:12Z"))),
            ],
            Some("5m"),
        )
        .unwrap();
        assert_eq!(m.measured_seconds, Some(192.0));
        assert_eq!(m.measured.as_deref(), Some("3m12s"));
        assert_eq!(m.met, Some(true));
        assert_eq!(m.breakdown["restore"], 150.0);
        assert_eq!(m.breakdown["verify"], 42.0);
    }

    #[test]
    fn a_bigger_restore_measures_a_longer_rto() {
        let start = t("2026-01-01T00:00:00Z");
        let checks = [(CheckVerdict::Passed, Some(t("2026-01-01T00:00:20Z")))];
        let small = rto(start, t("2026-01-01T00:00:10Z"), &checks, None).unwrap();
        let big_checks = [(CheckVerdict::Passed, Some(t("2026-01-01T00:05:20Z")))];
        let big = rto(start, t("2026-01-01T00:05:10Z"), &big_checks, None).unwrap();
        assert!(big.measured_seconds > small.measured_seconds);
        assert_eq!(small.met, None, "no objective, no verdict");
    }

    #[test]
    fn no_rto_without_a_successful_recovery() {
        let start = t("2026-01-01T00:00:00Z");
        let end = t("2026-01-01T00:01:00Z");
        assert!(rto(start, end, &[(CheckVerdict::Failed, Some(end))], None).is_none());
        assert!(rto(start, end, &[(CheckVerdict::Error, None)], None).is_none());
        let none = rto(start, end, &[], Some("30s")).unwrap();
        assert_eq!(none.measured_seconds, Some(60.0));
        assert_eq!(none.met, Some(false), "60s is over a 30s objective");
    }

    #[test]
    fn rpo_prefers_the_data_timestamp() {
        let start = t("2026-01-01T01:00:00Z");
        let point = rpo(start, t("2026-01-01T00:30:00Z"), None, Some("1h"));
        assert_eq!(point.measured_seconds, Some(1800.0));
        assert_eq!(point.met, Some(true));
        assert!(!point.breakdown.contains_key("data"));
        let data = rpo(
            start,
            t("2026-01-01T00:30:00Z"),
            Some(t("2025-12-31T23:00:00Z")),
            Some("1h"),
        );
        assert_eq!(data.measured_seconds, Some(7200.0));
        assert_eq!(data.breakdown["restorePoint"], 1800.0);
        assert_eq!(data.met, Some(false));
        assert_eq!(data.measured.as_deref(), Some("2h"));
    }
}

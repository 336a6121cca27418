//! Key figures of drills over a window of days (30 and 90): runs passed and failed, the
//! pass rate, RTO p50/p95 and whether the RTO is rising, RPO p95, and the share of
//! retained restore points a drill has verified. Pure: the caller hands in the runs it
//! knows (a report's history, the DrillRuns in the cluster) and the clock.
//!
//! Choices, so that figures mean the same everywhere:
//! - percentiles are nearest-rank (the smallest value with at least p % of the values at
//!   or below it: an observed RTO, never an interpolation); only passed runs have an RTO;
//! - the RTO trend compares the median of the older half of the window's passed runs with
//!   the newer half (at least 4 runs); a change beyond ±10 % is Rising or Falling;
//! - a restore point counts as verified when a passed run restored it (at any time);
//!   which points are retained comes from the caller ([`Retained`]): the repository's
//!   catalog where the store's snapshots are listed, otherwise the Backup objects in the
//!   cluster, which undercount what retention keeps.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::crd::dr_drill::DrillOutcome;

/// The windows every KPI set has, in days.
pub const WINDOWS: [u32; 2] = [30, 90];
/// Relative change of the median RTO beyond which the trend is Rising or Falling.
pub const TREND_THRESHOLD: f64 = 0.10;

/// One finished run, as KPIs see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub start: Timestamp,
    pub outcome: Option<DrillOutcome>,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    /// The Backup whose restore point the run restored.
    pub restore_point: Option<String>,
}

/// Where the list of retained restore points comes from (also the DRDrill status's).
pub use crate::crd::dr_drill::RetainedSource;

/// The retained restore points, when known.
#[derive(Clone, Debug, PartialEq)]
pub enum Retained {
    /// Not known (a report's own figures: the report does not list the repository).
    Unknown,
    /// These restore points (Backup names), from this source.
    Known {
        points: Vec<String>,
        source: RetainedSource,
    },
}

/// Direction of the RTO over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Rising,
    Falling,
    Steady,
}

/// The RTO of the newer half of a window's passed runs against the older half.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtoTrend {
    pub earlier_p50_seconds: f64,
    pub later_p50_seconds: f64,
    /// later / earlier - 1.
    pub change: f64,
    pub direction: Direction,
}

/// KPIs over one window.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowKpis {
    pub days: u32,
    pub runs: u32,
    pub passed: u32,
    pub failed: u32,
    /// passed / runs; absent without runs.
    pub pass_rate: Option<f64>,
    pub rto_p50_seconds: Option<f64>,
    pub rto_p95_seconds: Option<f64>,
    pub rto_trend: Option<RtoTrend>,
    pub rpo_p95_seconds: Option<f64>,
}

/// The share of retained restore points that a passed run restored (the DRDrill
/// status's `coverage`).
pub use crate::crd::dr_drill::RestorePointCoverage as Coverage;

/// KPIs of a drill (or of all drills of a namespace).
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillKpis {
    /// One per [`WINDOWS`] entry, shortest first.
    pub windows: Vec<WindowKpis>,
    /// Absent when the retained restore points are not known.
    pub restore_points: Option<Coverage>,
}

/// The nearest-rank percentile `p` (0..=100) of `values` (any order).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

fn trend(passed_rtos: &[f64]) -> Option<RtoTrend> {
    if passed_rtos.len() < 4 {
        return None;
    }
    let (earlier, later) = passed_rtos.split_at(passed_rtos.len() / 2);
    let e = percentile(earlier, 50.0)?;
    let l = percentile(later, 50.0)?;
    if e <= 0.0 {
        return None;
    }
    let change = l / e - 1.0;
    let direction = if change > TREND_THRESHOLD {
        Direction::Rising
    } else if change < -TREND_THRESHOLD {
        Direction::Falling
    } else {
        Direction::Steady
    };
    Some(RtoTrend {
        earlier_p50_seconds: e,
        later_p50_seconds: l,
        change,
        direction,
    })
}

/// KPIs of the runs started in the `days` before `now` (and not after it).
pub fn window(samples: &[Sample], now: Timestamp, days: u32) -> WindowKpis {
    let from = now - SignedDuration::from_hours(24 * i64::from(days));
    let mut inside: Vec<&Sample> = samples
        .iter()
        // A cancelled run proves nothing either way: it is in no count or rate.
        .filter(|s| s.start > from && s.start <= now)
        .filter(|s| s.outcome.is_some_and(|o| o != DrillOutcome::Cancelled))
        .collect();
    inside.sort_by_key(|s| s.start);
    let passed: Vec<&&Sample> = inside
        .iter()
        .filter(|s| s.outcome == Some(DrillOutcome::Passed))
        .collect();
    let rtos: Vec<f64> = passed.iter().filter_map(|s| s.rto_seconds).collect();
    let rpos: Vec<f64> = inside.iter().filter_map(|s| s.rpo_seconds).collect();
    let runs = inside.len() as u32;
    WindowKpis {
        days,
        runs,
        passed: passed.len() as u32,
        failed: runs - passed.len() as u32,
        pass_rate: (runs > 0).then(|| passed.len() as f64 / f64::from(runs)),
        rto_p50_seconds: percentile(&rtos, 50.0),
        rto_p95_seconds: percentile(&rtos, 95.0),
        rto_trend: trend(&rtos),
        rpo_p95_seconds: percentile(&rpos, 95.0),
    }
}

/// The share of `retained` that a passed run among `samples` restored.
pub fn coverage(samples: &[Sample], retained: &Retained) -> Option<Coverage> {
    let verified_points: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.outcome == Some(DrillOutcome::Passed))
        .filter_map(|s| s.restore_point.as_deref())
        .collect();
    share(&verified_points, retained)
}

/// The share of `retained` among `verified` restore points (Backup names).
pub fn share(verified: &BTreeSet<&str>, retained: &Retained) -> Option<Coverage> {
    let Retained::Known { points, source } = retained else {
        return None;
    };
    let retained: BTreeSet<&str> = points.iter().map(String::as_str).collect();
    let verified = retained.intersection(verified).count() as u32;
    let n = retained.len() as u32;
    Some(Coverage {
        retained: n,
        verified,
        share: (n > 0).then(|| f64::from(verified) / f64::from(n)),
        source: *source,
    })
}

/// The finished runs of `runs` as KPI samples.
pub fn samples(runs: &[&crate::crd::dr_drill::DrillRun]) -> Vec<Sample> {
    runs.iter()
        .filter_map(|r| {
            let s = r.status.as_ref()?;
            if s.phase != Some(crate::crd::dr_drill::DrillPhase::Completed) {
                return None;
            }
            Some(Sample {
                start: s
                    .start_time
                    .as_ref()
                    .or(r.metadata.creation_timestamp.as_ref())?
                    .0,
                outcome: s.outcome,
                rto_seconds: s.rto.as_ref().and_then(|m| m.measured_seconds),
                rpo_seconds: s.rpo.as_ref().and_then(|m| m.measured_seconds),
                restore_point: s.restore_point.as_ref().map(|p| p.backup.clone()),
            })
        })
        .collect()
}

/// Every window's KPIs and the restore point coverage.
pub fn compute(samples: &[Sample], now: Timestamp, retained: &Retained) -> DrillKpis {
    DrillKpis {
        windows: WINDOWS.iter().map(|d| window(samples, now, *d)).collect(),
        restore_points: coverage(samples, retained),
    }
}

/// The KPIs a report carries: its history and its own run, as of its run's start.
pub fn of_report(r: &super::report::Report) -> DrillKpis {
    let mut points = r.trend.clone();
    points.push(super::report::point_of(r));
    let samples: Vec<Sample> = points
        .iter()
        .filter_map(|p| {
            Some(Sample {
                start: p.start_time.as_ref()?.0,
                outcome: p.outcome,
                rto_seconds: p.rto_seconds,
                rpo_seconds: p.rpo_seconds,
                restore_point: p.restore_point.clone(),
            })
        })
        .collect();
    let now = r
        .start_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| r.generated_at.parse().ok())
        .unwrap_or_else(Timestamp::now);
    compute(&samples, now, &Retained::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(day: i64) -> Timestamp {
        "2026-11-30T12:00:00Z".parse::<Timestamp>().unwrap() - SignedDuration::from_hours(24 * day)
    }

    fn s(day: i64, passed: bool, rto: f64) -> Sample {
        Sample {
            start: t(day),
            outcome: Some(if passed {
                DrillOutcome::Passed
            } else {
                DrillOutcome::Failed
            }),
            rto_seconds: passed.then_some(rto),
            rpo_seconds: Some(rto * 10.0),
            restore_point: Some(format!("b{day}")),
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        for (values, p, want) in [
            (vec![], 50.0, None),
            (vec![7.0], 95.0, Some(7.0)),
            (vec![4.0, 1.0, 3.0, 2.0], 50.0, Some(2.0)),
            (vec![4.0, 1.0, 3.0, 2.0], 95.0, Some(4.0)),
            ((1..=100).map(f64::from).collect(), 95.0, Some(95.0)),
            ((1..=100).map(f64::from).collect(), 50.0, Some(50.0)),
            (vec![5.0, 1.0], 0.0, Some(1.0)),
        ] {
            assert_eq!(percentile(&values, p), want, "{values:?} p{p}");
        }
    }

    #[test]
    fn windows_count_runs_and_rtos_of_their_days_only() {
        let samples = vec![
            s(100, true, 1000.0), // outside both windows
            s(80, true, 60.0),
            s(60, false, 0.0),
            s(40, true, 70.0),
            s(20, true, 100.0),
            s(10, false, 0.0),
            s(5, true, 120.0),
            s(0, true, 110.0),
            s(-1, true, 5.0), // after now: not counted
        ];
        let k = compute(&samples, t(0), &Retained::Unknown);
        let w30 = &k.windows[0];
        assert_eq!((w30.days, w30.runs, w30.passed, w30.failed), (30, 4, 3, 1));
        assert_eq!(w30.pass_rate, Some(0.75));
        assert_eq!(w30.rto_p50_seconds, Some(110.0));
        assert_eq!(w30.rto_p95_seconds, Some(120.0));
        assert_eq!(w30.rto_trend, None, "3 passed runs: too few for a trend");
        let w90 = &k.windows[1];
        assert_eq!((w90.runs, w90.passed, w90.failed), (7, 5, 2));
        let tr = w90.rto_trend.clone().unwrap();
        // Older half 60, 70 -> 60; newer half 100, 120, 110 -> 110.
        assert_eq!(
            (tr.earlier_p50_seconds, tr.later_p50_seconds),
            (60.0, 110.0)
        );
        assert_eq!(tr.direction, Direction::Rising);
        assert!(k.restore_points.is_none());
    }

    #[test]
    fn cancelled_runs_count_in_no_window() {
        let mut cancelled = s(2, false, 0.0);
        cancelled.outcome = Some(DrillOutcome::Cancelled);
        let w = window(&[s(3, true, 60.0), cancelled, s(1, false, 0.0)], t(0), 30);
        assert_eq!((w.runs, w.passed, w.failed), (2, 1, 1));
        assert_eq!(w.pass_rate, Some(0.5));
    }

    #[test]
    fn trend_directions_and_an_empty_window() {
        let steady: Vec<Sample> = (0..6).map(|d| s(d, true, 100.0 + d as f64)).collect();
        assert_eq!(
            window(&steady, t(0), 30).rto_trend.unwrap().direction,
            Direction::Steady
        );
        // Days count back from now: the oldest runs had the highest RTO.
        let falling: Vec<Sample> = (0..6)
            .map(|d| s(d, true, 100.0 + 50.0 * d as f64))
            .collect();
        assert_eq!(
            window(&falling, t(0), 30).rto_trend.unwrap().direction,
            Direction::Falling
        );
        let none = window(&[], t(0), 30);
        assert_eq!(
            (none.runs, none.pass_rate, none.rto_p50_seconds),
            (0, None, None)
        );
    }

    #[test]
    fn coverage_counts_retained_points_a_passed_run_restored() {
        let samples = vec![s(3, true, 1.0), s(2, false, 0.0), s(1, true, 1.0)];
        let retained = Retained::Known {
            points: ["b1", "b2", "b3", "b4", "b9"].map(String::from).to_vec(),
            source: RetainedSource::BackupObjects,
        };
        let c = coverage(&samples, &retained).unwrap();
        // b1 and b3 passed; b2's run failed; b4, b9 were never drilled.
        assert_eq!((c.retained, c.verified, c.share), (5, 2, Some(0.4)));
        let empty = Retained::Known {
            points: vec![],
            source: RetainedSource::Catalog,
        };
        assert_eq!(coverage(&samples, &empty).unwrap().share, None);
        assert_eq!(coverage(&samples, &Retained::Unknown), None);
    }
}

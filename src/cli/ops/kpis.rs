//! The key figures `lifeboat status` shows per drill (`crate::drill::kpi` over the
//! DrillRuns in the cluster): runs passed and failed over 30 and 90 days, RTO p50/p95 and
//! its trend, and the share of the policy's restore points a passed run verified, and the
//! text tables `status` prints (the shared table layout lives here too).
//!
//! Retained restore points come from the repository's catalog when the DRDrill controller
//! computed the drill's coverage from it (`status.coverage`, `source: Catalog`; the CLI
//! cannot list a repository itself), otherwise from the policy's succeeded Backup
//! objects: the history limit removes records of points the repository still keeps, so
//! that share is of the points the cluster lists, and says so (`source: BackupObjects`).

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::backup::{Backup, BackupPhase};
use crate::crd::dr_drill::DrillRun;
use crate::drill::kpi::{self, Coverage, Direction, DrillKpis, Retained, RetainedSource};
use crate::schedule::duration;

pub use crate::drill::kpi::samples;

/// A drill's KPIs from its runs and its policy's Backups; `None` without finished runs.
/// The coverage is the drill's own (`status.coverage`) when the controller computed it
/// from the store's catalog, else the share of the policy's succeeded Backup objects.
pub fn of_drill(
    runs: &[&DrillRun],
    policy_backups: &[&Backup],
    drill_coverage: Option<&Coverage>,
    now: Timestamp,
) -> Option<DrillKpis> {
    let samples = samples(runs);
    if samples.is_empty() {
        return None;
    }
    let points = policy_backups
        .iter()
        .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Succeeded))
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    let mut k = kpi::compute(
        &samples,
        now,
        &Retained::Known {
            points,
            source: RetainedSource::BackupObjects,
        },
    );
    if let Some(c) = drill_coverage.filter(|c| c.source == RetainedSource::Catalog) {
        k.restore_points = Some(c.clone());
    }
    Some(k)
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| {
        duration::format(Duration::from_secs_f64(s.max(0.0)))
    })
}

/// The rows of one drill's KPIs: one per window.
pub fn rows(drill: &str, k: &DrillKpis) -> Vec<Vec<String>> {
    k.windows
        .iter()
        .map(|w| {
            vec![
                drill.to_string(),
                format!("{}d", w.days),
                w.runs.to_string(),
                w.passed.to_string(),
                w.failed.to_string(),
                w.pass_rate
                    .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
                secs(w.rto_p50_seconds),
                secs(w.rto_p95_seconds),
                w.rto_trend.as_ref().map_or("-".into(), |t| {
                    let d = match t.direction {
                        Direction::Rising => "rising",
                        Direction::Falling => "falling",
                        Direction::Steady => "steady",
                    };
                    format!("{d} ({:+.0}%)", t.change * 100.0)
                }),
                k.restore_points.as_ref().map_or("-".into(), |c| {
                    let of = match c.source {
                        RetainedSource::Catalog => "retained",
                        RetainedSource::BackupObjects => "listed",
                    };
                    format!("{}/{} {of}", c.verified, c.retained)
                }),
            ]
        })
        .collect()
}

/// The KPI table's header.
pub const HEADER: [&str; 10] = [
    "DRILL",
    "WINDOW",
    "RUNS",
    "PASSED",
    "FAILED",
    "PASS RATE",
    "RTO P50",
    "RTO P95",
    "RTO TREND",
    "POINTS VERIFIED",
];

/// An age: `5m ago`, or `in 5m` for a time ahead.
pub fn rel(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s >= 0 => format!("{} ago", duration::format(Duration::from_secs(s as u64))),
        Some(s) => format!("in {}", duration::format(Duration::from_secs((-s) as u64))),
    }
}

/// Time until: `in 5m`, or `due now`.
pub fn until(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s <= 0 => "due now".into(),
        Some(s) => format!("in {}", duration::format(Duration::from_secs(s as u64))),
    }
}

/// A left-aligned text table with two spaces between columns, indented by two.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let line = |cells: Vec<&str>, s: &mut String| {
        let mut l = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(header.to_vec(), &mut s);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::crd::dr_drill::DrillPhase;
    use jiff::SignedDuration;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::crd::backup::{BackupSpec, BackupStatus, PolicyRef};
    use crate::crd::dr_drill::{DrillOutcome, DrillRestorePoint};

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    /// Run `i` started `days` before now.
    fn run(i: usize, days: i64, outcome: DrillOutcome, rto: f64, point: &str) -> DrillRun {
        let mut r = crate::drill::report::tests::run(&format!("orders-{i}"), outcome, Some(rto));
        let s = r.status.as_mut().unwrap();
        s.phase = Some(DrillPhase::Completed);
        s.start_time = Some(Time(now() - SignedDuration::from_hours(24 * days)));
        s.restore_point = Some(DrillRestorePoint {
            backup: point.into(),
            time: Time(now() - SignedDuration::from_hours(24 * days + 1)),
            snapshots: Default::default(),
            candidates: None,
            from_store: None,
        });
        r
    }

    fn backup(name: &str, phase: BackupPhase) -> Backup {
        let mut b = Backup::new(
            name,
            BackupSpec {
                policy_ref: PolicyRef {
                    name: "shop".into(),
                },
                ..BackupSpec::default()
            },
        );
        b.status = Some(BackupStatus {
            phase: Some(phase),
            ..BackupStatus::default()
        });
        b
    }

    #[test]
    fn figures_over_30_and_90_days_from_the_runs_in_the_cluster() {
        let runs = [
            run(1, 80, DrillOutcome::Passed, 100.0, "b1"),
            run(2, 60, DrillOutcome::Failed, 0.0, "b2"),
            run(3, 20, DrillOutcome::Passed, 120.0, "b3"),
            run(4, 10, DrillOutcome::Passed, 130.0, "b3"),
            run(5, 1, DrillOutcome::Failed, 0.0, "b4"),
            // Outside both windows.
            run(6, 120, DrillOutcome::Passed, 10.0, "b0"),
        ];
        let mut running = run(7, 0, DrillOutcome::Passed, 1.0, "b4");
        running.status.as_mut().unwrap().phase = Some(DrillPhase::Verifying);
        let mut all: Vec<&DrillRun> = runs.iter().collect();
        all.push(&running);
        let backups = [
            backup("b3", BackupPhase::Succeeded),
            backup("b4", BackupPhase::Succeeded),
            backup("b5", BackupPhase::Failed),
        ];
        let b: Vec<&Backup> = backups.iter().collect();
        let k = of_drill(&all, &b, None, now()).unwrap();
        let (w30, w90) = (&k.windows[0], &k.windows[1]);
        assert_eq!((w30.runs, w30.passed, w30.failed), (3, 2, 1));
        assert_eq!((w90.runs, w90.passed, w90.failed), (5, 3, 2));
        // Nearest rank over passed runs: 100, 120, 130 (30 days: 120, 130).
        assert_eq!(w90.rto_p50_seconds, Some(120.0));
        assert_eq!(w90.rto_p95_seconds, Some(130.0));
        // b3 verified by a passed run, b4 only by a failed one, b5 not a restore point.
        let c = k.restore_points.as_ref().unwrap();
        assert_eq!((c.verified, c.retained), (1, 2));
        let r = rows("orders", &k);
        assert_eq!(
            r[0],
            [
                "orders",
                "30d",
                "3",
                "2",
                "1",
                "67%",
                "2m",
                "2m10s",
                "-",
                "1/2 listed"
            ]
        );
        assert_eq!(r[1][5], "60%");
        assert!(of_drill(&[&running], &b, None, now()).is_none());
        // The drill's coverage from the repository's catalog wins over the Backup objects.
        let catalog = Coverage {
            retained: 5,
            verified: 3,
            share: Some(0.6),
            source: RetainedSource::Catalog,
        };
        let k = of_drill(&all, &b, Some(&catalog), now()).unwrap();
        assert_eq!(k.restore_points.as_ref(), Some(&catalog));
        assert_eq!(rows("orders", &k)[0][9], "3/5 retained");
        let objects = Coverage {
            source: RetainedSource::BackupObjects,
            ..catalog
        };
        let k = of_drill(&all, &b, Some(&objects), now()).unwrap();
        assert_eq!(k.restore_points.unwrap().retained, 2, "the CLI's own count");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "  A          LONGER\n  wide cell  x\n");
    }
}

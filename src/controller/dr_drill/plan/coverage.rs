//! The drill's record of the restore points its passed runs verified
//! (`status.verifiedRestorePoints`) and its coverage of the retained ones
//! (`status.coverage`, the `lifeboat_drill_restore_points_*` gauges).
//!
//! The record outlives the runs: the drill's `historyLimit` deletes finished DrillRuns,
//! and `Unverified` and the coverage must still know what those runs verified. Only the
//! controller writes a DRDrill's status (tenants have no `drdrills/status` write), so the
//! record is as trustworthy as the runs were. It is pruned to the retained points when the
//! retained points are the repository's (the catalog), so it never outgrows retention;
//! Backup objects undercount what the repository keeps, so against them nothing is
//! pruned, and the record is capped at [`MAX_VERIFIED`] names (the newest kept).

use std::collections::BTreeSet;

use crate::crd::dr_drill::{DrillOutcome, DrillPhase, DrillRun, RetainedSource};
use crate::drill::kpi::{self, Coverage, Retained};

/// Most names in `status.verifiedRestorePoints` (the CRD's bound too).
pub const MAX_VERIFIED: usize = 1000;

/// The record after `runs` (finished runs, oldest first): the previous record and the
/// restore point of every passed run, pruned as described in the module.
pub fn record(previous: &[String], runs: &[&DrillRun], retained: &Retained) -> Vec<String> {
    let mut out: Vec<String> = previous.to_vec();
    for r in runs {
        let Some(s) = r.status.as_ref() else { continue };
        if s.phase != Some(DrillPhase::Completed) || s.outcome != Some(DrillOutcome::Passed) {
            continue;
        }
        if let Some(rp) = &s.restore_point
            && !out.contains(&rp.backup)
        {
            out.push(rp.backup.clone());
        }
    }
    if let Retained::Known {
        points,
        source: RetainedSource::Catalog,
    } = retained
    {
        let kept: BTreeSet<&str> = points.iter().map(String::as_str).collect();
        out.retain(|n| kept.contains(n.as_str()));
    }
    if out.len() > MAX_VERIFIED {
        out.drain(..out.len() - MAX_VERIFIED);
    }
    out
}

/// The coverage the record gives of the retained points; `None` when those are unknown.
pub fn coverage(record: &[String], retained: &Retained) -> Option<Coverage> {
    kpi::share(&record.iter().map(String::as_str).collect(), retained)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::dr_drill::{DrillRestorePoint, DrillRunStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn run(point: &str, outcome: DrillOutcome) -> DrillRun {
        let mut r = DrillRun::new(&format!("r-{point}"), Default::default());
        r.status = Some(DrillRunStatus {
            phase: Some(DrillPhase::Completed),
            outcome: Some(outcome),
            restore_point: Some(DrillRestorePoint {
                backup: point.into(),
                time: Time(jiff::Timestamp::UNIX_EPOCH),
                snapshots: Default::default(),
                candidates: None,
                from_store: None,
            }),
            ..Default::default()
        });
        r
    }

    fn known(points: &[&str], source: RetainedSource) -> Retained {
        Retained::Known {
            points: points.iter().map(|p| p.to_string()).collect(),
            source,
        }
    }

    #[test]
    fn the_record_keeps_what_pruned_runs_verified_and_forgets_what_retention_forgot() {
        let catalog = known(&["b1", "b2", "b3"], RetainedSource::Catalog);
        // b0's run was pruned long ago; b0 itself is forgotten by retention.
        let previous = vec!["b0".to_string(), "b1".to_string()];
        let passed = run("b2", DrillOutcome::Passed);
        let failed = run("b3", DrillOutcome::Failed);
        let rec = record(&previous, &[&passed, &failed], &catalog);
        assert_eq!(rec, vec!["b1", "b2"], "a failed run verifies nothing");
        let c = coverage(&rec, &catalog).unwrap();
        assert_eq!((c.retained, c.verified), (3, 2));
        assert_eq!(c.share, Some(2.0 / 3.0));
        assert_eq!(c.source, RetainedSource::Catalog);
        // Against Backup objects (the history limit removed some) nothing is pruned.
        let objects = known(&["b3"], RetainedSource::BackupObjects);
        let rec = record(&previous, &[&passed], &objects);
        assert_eq!(rec, vec!["b0", "b1", "b2"]);
        let c = coverage(&rec, &objects).unwrap();
        assert_eq!((c.retained, c.verified, c.share), (1, 0, Some(0.0)));
        // Nothing retained: no share; unknown: no coverage.
        assert_eq!(
            coverage(&rec, &known(&[], RetainedSource::Catalog))
                .unwrap()
                .share,
            None
        );
        assert_eq!(coverage(&rec, &Retained::Unknown), None);
    }

    #[test]
    fn the_record_is_bounded_keeping_the_newest() {
        let previous: Vec<String> = (0..MAX_VERIFIED).map(|i| format!("p{i:05}")).collect();
        let passed = run("new", DrillOutcome::Passed);
        let rec = record(&previous, &[&passed], &Retained::Unknown);
        assert_eq!(rec.len(), MAX_VERIFIED);
        assert_eq!(rec.first().map(String::as_str), Some("p00001"));
        assert_eq!(rec.last().map(String::as_str), Some("new"));
    }
}

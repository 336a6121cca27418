//! Which restore point a drill run restores: the candidates and the strategies
//! (`restorePoint.strategy`), as a pure function of what the controller observed.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::failure;
use crate::crd::backup::{Backup, BackupPhase, SourcePhase};
use crate::crd::common::Failure;
use crate::crd::dr_drill::{DRDrillSpec, DrillRestorePoint, RestorePointStrategy};
use crate::jobs;

/// Chooses the restore point among the policy's successful Backups.
pub fn choose_restore_point(
    spec: &DRDrillSpec,
    policy: &str,
    backups: &[Backup],
    seed: &str,
) -> Result<DrillRestorePoint, Failure> {
    let mut candidates: Vec<(Timestamp, &Backup)> = backups
        .iter()
        .filter(|b| b.spec.policy_ref.name == policy && b.metadata.deletion_timestamp.is_none())
        // A Backup whose snapshots retention forgot is no restore point any more.
        .filter(|b| !crate::controller::store::forgotten::all_forgotten(b))
        .filter_map(|b| {
            let s = b.status.as_ref()?;
            (s.phase == Some(BackupPhase::Succeeded))
                .then_some(())
                .and(s.restore_point_time.as_ref())
                .map(|t| (t.0, b))
        })
        .collect();
    candidates.sort_by_key(|(t, b)| (*t, b.name_any()));
    let sel = &spec.restore_point;
    let chosen = match sel.strategy {
        RestorePointStrategy::Latest => candidates.last(),
        RestorePointStrategy::Oldest => candidates.first(),
        RestorePointStrategy::Random => {
            // Stable per run: a retry before the choice was recorded picks the same one.
            let n = candidates.len() as u64;
            (n > 0).then(|| {
                let h = u64::from_str_radix(&jobs::short_hash(seed), 16).unwrap_or(0);
                &candidates[(h % n) as usize]
            })
        }
        RestorePointStrategy::PointInTime => {
            let at = sel
                .time
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok());
            match at {
                None => {
                    return Err(failure(
                        "InvalidRestorePoint",
                        "restorePoint.time must be an RFC 3339 time for PointInTime",
                    ));
                }
                Some(at) => candidates.iter().rfind(|(t, _)| *t <= at),
            }
        }
    };
    let Some((time, b)) = chosen else {
        let when = match sel.strategy {
            RestorePointStrategy::PointInTime => {
                format!(" at or before {}", sel.time.as_deref().unwrap_or_default())
            }
            _ => String::new(),
        };
        return Err(failure(
            "NoRestorePoint",
            format!(
                "BackupPolicy {policy:?} has no successful Backup{when} to restore ({} successful in all)",
                candidates.len()
            ),
        ));
    };
    let snapshots = b
        .status
        .iter()
        .flat_map(|s| &s.sources)
        .filter(|s| s.phase == SourcePhase::Succeeded)
        .filter_map(|s| s.snapshot_id.clone().map(|id| (s.name.clone(), id)))
        .collect();
    Ok(DrillRestorePoint {
        backup: b.name_any(),
        time: Time(*time),
        snapshots,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::controller::drill_run::plan::tests::{backup, drill_spec};
    use crate::crd::dr_drill::RestorePointSelector;

    fn backups() -> Vec<Backup> {
        vec![
            backup(
                "orders-202611221300",
                "2026-11-22T13:00:00Z",
                BackupPhase::Succeeded,
            ),
            backup(
                "orders-202611221400",
                "2026-11-22T14:00:00Z",
                BackupPhase::Succeeded,
            ),
            backup(
                "orders-202611221430",
                "2026-11-22T14:30:00Z",
                BackupPhase::Failed,
            ),
        ]
    }

    #[test]
    fn restore_point_strategies() {
        let backups = backups();
        let pick = |strategy, time: Option<&str>, seed: &str| {
            let mut spec = drill_spec();
            spec.restore_point = RestorePointSelector {
                strategy,
                time: time.map(str::to_string),
            };
            choose_restore_point(&spec, "orders", &backups, seed).map(|rp| rp.backup)
        };
        use RestorePointStrategy::*;
        assert_eq!(pick(Oldest, None, "x").unwrap(), "orders-202611221300");
        assert_eq!(pick(Latest, None, "x").unwrap(), "orders-202611221400");
        assert_eq!(
            pick(PointInTime, Some("2026-11-22T13:59:59Z"), "x").unwrap(),
            "orders-202611221300"
        );
        assert_eq!(
            pick(PointInTime, Some("2026-11-22T14:00:00Z"), "x").unwrap(),
            "orders-202611221400"
        );
        let e = pick(PointInTime, Some("2026-11-22T12:00:00Z"), "x").unwrap_err();
        assert_eq!(e.reason, "NoRestorePoint");
        assert!(
            e.message.contains("at or before 2026-11-22T12:00:00Z"),
            "{}",
            e.message
        );
        // Random: stable for a run, spread over runs.
        assert_eq!(pick(Random, None, "uid-1"), pick(Random, None, "uid-1"));
        let seen: BTreeSet<String> = (0..40)
            .map(|i| pick(Random, None, &format!("uid-{i}")).unwrap())
            .collect();
        assert_eq!(seen.len(), 2, "both retained points get drilled");
        let none = choose_restore_point(&drill_spec(), "orders", &[], "x").unwrap_err();
        assert!(none.message.contains("has no successful Backup"));
    }
}

//! Which restore point a drill run restores: the candidates and the strategies
//! (`restorePoint.strategy`), as a pure function of what the controller observed.
//!
//! Candidates are the restore points the repository keeps (the store's catalog, issue 13)
//! once the store's snapshots are listed: a point whose run still has a Backup object is
//! restored through it as before, a point whose Backup object the policy's history limit
//! removed is restored from the store (`source.storeRef`). Before the first listing the
//! candidates are the policy's Backup objects, and the run records which source it used
//! (`status.restorePoint.candidates`): waiting for the listing would hold every drill of
//! a freshly started controller for no gain, as the Backup objects are a subset of the
//! catalog's points and each of them is still restorable.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::failure;
use crate::controller::store::catalog::RestorePoint;
use crate::controller::store::forgotten::all_forgotten;
use crate::crd::backup::{Backup, BackupPhase, SourceKind, SourcePhase};
use crate::crd::common::Failure;
use crate::crd::dr_drill::{DRDrillSpec, DrillRestorePoint, RestorePointStrategy, RetainedSource};
use crate::jobs;
use crate::schedule::duration;

/// How a candidate is restored.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// Through its Backup object (`source.backupRef`).
    Backup(&'a Backup),
    /// From the store alone: no Backup object records it.
    Store(&'a RestorePoint),
}

/// One restore point a run may restore.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    /// The Backup's name (the run that wrote the snapshots).
    pub name: String,
    pub time: Timestamp,
    pub via: Via<'a>,
}

/// Whether a Backup object is a restore point as far as its own record says: succeeded,
/// not being deleted, its snapshots not forgotten by retention.
fn restorable(b: &Backup) -> Option<Timestamp> {
    if b.metadata.deletion_timestamp.is_some() || all_forgotten(b) {
        return None;
    }
    let s = b.status.as_ref()?;
    (s.phase == Some(BackupPhase::Succeeded))
        .then_some(())
        .and(s.restore_point_time.as_ref())
        .map(|t| t.0)
}

/// The policy's retained restore points, oldest first (then by name), and where they
/// come from. `catalog` is the catalog's points of `<namespace>/<policy>` when the
/// store's snapshots have been listed.
///
/// With a catalog: each of its points, through the Backup object of its run when that is
/// restorable, from the store when there is none (a Backup object that exists but did
/// not succeed is no restore point: a partial run's snapshots lack sources). A restorable
/// Backup the listing does not hold yet (it finished after the listing) is a candidate
/// too; one whose snapshots retention forgot is not ([`all_forgotten`] is the catalog's
/// own verdict).
pub fn candidates<'a>(
    policy: &str,
    backups: &'a [Backup],
    catalog: Option<&'a [RestorePoint]>,
) -> (Vec<Candidate<'a>>, RetainedSource) {
    let ours = |b: &&Backup| b.spec.policy_ref.name == policy;
    let by_backup = |b: &'a Backup| {
        restorable(b).map(|time| Candidate {
            name: b.name_any(),
            time,
            via: Via::Backup(b),
        })
    };
    let (mut out, source) = match catalog {
        None => (
            backups
                .iter()
                .filter(ours)
                .filter_map(by_backup)
                .collect::<Vec<_>>(),
            RetainedSource::BackupObjects,
        ),
        Some(points) => {
            let mut out: Vec<Candidate<'a>> = Vec::new();
            for p in points {
                match backups.iter().filter(ours).find(|b| b.name_any() == p.run) {
                    Some(b) => out.extend(by_backup(b)),
                    None => out.push(Candidate {
                        name: p.run.clone(),
                        time: p.time,
                        via: Via::Store(p),
                    }),
                }
            }
            let listed: BTreeSet<&str> = points.iter().map(|p| p.run.as_str()).collect();
            out.extend(
                backups
                    .iter()
                    .filter(ours)
                    .filter(|b| !listed.contains(b.name_any().as_str()))
                    .filter_map(by_backup),
            );
            (out, RetainedSource::Catalog)
        }
    };
    out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
    (out, source)
}

/// What the controller knows when it chooses.
pub struct Choice<'a> {
    pub policy: &'a str,
    pub backups: &'a [Backup],
    /// The catalog's points of the policy's identity, `None` before the first listing.
    pub catalog: Option<&'a [RestorePoint]>,
    /// Restore points (Backup names) a passed run of this drill restored.
    pub verified: &'a BTreeSet<String>,
    /// Stable per run (its UID): a retry before the choice was recorded picks the same.
    pub seed: &'a str,
    pub now: Timestamp,
}

/// The chosen point and what the `RestorePointChosen` Event says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Chosen {
    pub point: DrillRestorePoint,
    /// Why this one, beyond the strategy (e.g. that every point is verified already).
    pub why: Option<String>,
}

fn uniform<'c, 'a>(cands: &[&'c Candidate<'a>], seed: &str) -> Option<&'c Candidate<'a>> {
    let n = cands.len() as u64;
    (n > 0).then(|| {
        let h = u64::from_str_radix(&jobs::short_hash(seed), 16).unwrap_or(0);
        cands[(h % n) as usize]
    })
}

/// Chooses the restore point of a run (see docs/drills.md, "How the restore point is
/// chosen").
pub fn choose_restore_point(spec: &DRDrillSpec, c: &Choice<'_>) -> Result<Chosen, Failure> {
    let (cands, source) = candidates(c.policy, c.backups, c.catalog);
    let all: Vec<&Candidate<'_>> = cands.iter().collect();
    let sel = &spec.restore_point;
    let mut why = None;
    let mut when = String::new();
    let chosen = match sel.strategy {
        RestorePointStrategy::Latest => all.last().copied(),
        RestorePointStrategy::Oldest => all.first().copied(),
        RestorePointStrategy::Random => uniform(&all, c.seed),
        RestorePointStrategy::RandomWithin => {
            let Some(within) = sel.within.as_deref().and_then(|w| duration::parse(w).ok()) else {
                return Err(failure(
                    "InvalidRestorePoint",
                    "restorePoint.within must be a duration such as 30d for RandomWithin",
                ));
            };
            let since = c
                .now
                .checked_sub(jiff::SignedDuration::try_from(within).unwrap_or_default())
                .unwrap_or(Timestamp::MIN);
            when = format!(
                " within {} (since {since})",
                sel.within.as_deref().unwrap_or_default()
            );
            let inside: Vec<&Candidate<'_>> =
                all.iter().copied().filter(|x| x.time >= since).collect();
            uniform(&inside, c.seed)
        }
        RestorePointStrategy::Unverified => {
            match all.iter().copied().find(|x| !c.verified.contains(&x.name)) {
                Some(x) => Some(x),
                None => {
                    why = (!all.is_empty()).then(|| {
                        format!(
                            "all {} retained restore points are verified already; restoring the oldest",
                            all.len()
                        )
                    });
                    all.first().copied()
                }
            }
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
                Some(at) => {
                    when = format!(" at or before {at}");
                    all.iter().copied().rfind(|x| x.time <= at)
                }
            }
        }
    };
    let Some(x) = chosen else {
        let policy = c.policy;
        let msg = match source {
            RetainedSource::BackupObjects => format!(
                "BackupPolicy {policy:?} has no successful Backup{when} to restore ({} successful in all)",
                all.len()
            ),
            RetainedSource::Catalog => format!(
                "BackupPolicy {policy:?} has no restore point{when} in its repository to restore ({} retained in all)",
                all.len()
            ),
        };
        return Err(failure("NoRestorePoint", msg));
    };
    Ok(Chosen {
        point: point_of(x, source),
        why,
    })
}

fn point_of(x: &Candidate<'_>, source: RetainedSource) -> DrillRestorePoint {
    let (snapshots, from_store) = match x.via {
        Via::Backup(b) => (
            b.status
                .iter()
                .flat_map(|s| &s.sources)
                .filter(|s| s.phase == SourcePhase::Succeeded)
                .filter_map(|s| s.snapshot_id.clone().map(|id| (s.name.clone(), id)))
                .collect(),
            None,
        ),
        // Named as the Restore controller records a store point's sources
        // (`restore::from_store::as_backup`): a manifests source is `manifests`.
        Via::Store(p) => (
            p.sources
                .iter()
                .map(|e| {
                    let name = match e.kind {
                        SourceKind::Manifests => "manifests".to_string(),
                        _ => e.source.clone(),
                    };
                    (name, e.id.clone())
                })
                .collect(),
            Some(true),
        ),
    };
    DrillRestorePoint {
        backup: x.name.clone(),
        time: Time(x.time),
        snapshots,
        candidates: Some(source),
        from_store,
    }
}

/// The retained restore points' names, for coverage.
pub fn retained_names(cands: &[Candidate<'_>]) -> Vec<String> {
    cands.iter().map(|c| c.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::controller::drill_run::plan::tests::{backup, drill_spec, ts};
    use crate::controller::store::catalog::Entry;
    use crate::crd::dr_drill::RestorePointSelector;

    const NOW: &str = "2026-11-30T00:00:00Z";

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

    /// A catalog point of `shop/orders` with a volume and a manifests snapshot.
    fn point(run: &str, at: &str) -> RestorePoint {
        let entry = |kind, source: &str| Entry {
            id: format!("{source}-{run}"),
            time: ts(at),
            identity: "shop/orders".into(),
            run: run.into(),
            kind,
            source: source.into(),
            db_engine: None,
            db_name: None,
            bytes: None,
        };
        RestorePoint {
            identity: "shop/orders".into(),
            run: run.into(),
            time: ts(at),
            sources: vec![
                entry(SourceKind::Volume, "data"),
                entry(SourceKind::Manifests, "shop"),
            ],
        }
    }

    /// The repository keeps five points; the history limit left Backup objects of the
    /// two newest (and of a failed run, which wrote a partial point).
    fn catalog() -> Vec<RestorePoint> {
        vec![
            point("orders-202611010000", "2026-11-01T00:00:00Z"),
            point("orders-202611150000", "2026-11-15T00:00:00Z"),
            point("orders-202611221300", "2026-11-22T13:00:00Z"),
            point("orders-202611221400", "2026-11-22T14:00:00Z"),
            point("orders-202611221430", "2026-11-22T14:30:00Z"),
        ]
    }

    fn spec(
        strategy: RestorePointStrategy,
        time: Option<&str>,
        within: Option<&str>,
    ) -> DRDrillSpec {
        let mut spec = drill_spec();
        spec.restore_point = RestorePointSelector {
            strategy,
            time: time.map(str::to_string),
            within: within.map(str::to_string),
        };
        spec
    }

    fn choose(
        spec: &DRDrillSpec,
        catalog: Option<&[RestorePoint]>,
        verified: &[&str],
        seed: &str,
    ) -> Result<Chosen, Failure> {
        choose_among(&backups(), spec, catalog, verified, seed)
    }

    /// With only the catalog's points (no Backup objects at all: a new cluster).
    fn choose_catalog(
        spec: &DRDrillSpec,
        catalog: &[RestorePoint],
        verified: &[&str],
    ) -> Result<Chosen, Failure> {
        choose_among(&[], spec, Some(catalog), verified, "x")
    }

    fn choose_among(
        backups: &[Backup],
        spec: &DRDrillSpec,
        catalog: Option<&[RestorePoint]>,
        verified: &[&str],
        seed: &str,
    ) -> Result<Chosen, Failure> {
        let verified: BTreeSet<String> = verified.iter().map(|v| v.to_string()).collect();
        choose_restore_point(
            spec,
            &Choice {
                policy: "orders",
                backups,
                catalog,
                verified: &verified,
                seed,
                now: ts(NOW),
            },
        )
    }

    #[test]
    fn restore_point_strategies_over_backup_objects() {
        let pick = |strategy, time: Option<&str>, seed: &str| {
            choose(&spec(strategy, time, None), None, &[], seed).map(|c| c.point.backup)
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
        let rp = choose(&spec(Latest, None, None), None, &[], "x")
            .unwrap()
            .point;
        assert_eq!(rp.candidates, Some(RetainedSource::BackupObjects));
        assert_eq!(rp.from_store, None);
        assert_eq!(rp.snapshots["data"], "vol-orders-202611221400");
        let spec0 = drill_spec();
        let none = choose_restore_point(
            &spec0,
            &Choice {
                policy: "orders",
                backups: &[],
                catalog: None,
                verified: &BTreeSet::new(),
                seed: "x",
                now: ts(NOW),
            },
        )
        .unwrap_err();
        assert!(none.message.contains("has no successful Backup"));
    }

    #[test]
    fn with_a_catalog_the_candidates_are_what_the_repository_keeps() {
        let cat = catalog();
        let objects = backups();
        let (cands, source) = candidates("orders", &objects, Some(&cat));
        assert_eq!(source, RetainedSource::Catalog);
        let names: Vec<(&str, bool)> = cands
            .iter()
            .map(|c| (c.name.as_str(), matches!(c.via, Via::Store(_))))
            .collect();
        assert_eq!(
            names,
            vec![
                ("orders-202611010000", true),
                ("orders-202611150000", true),
                ("orders-202611221300", false),
                ("orders-202611221400", false),
            ],
            "a point whose Backup failed is no candidate; those without a Backup are read from the store"
        );
        use RestorePointStrategy::*;
        // Oldest: the oldest the repository keeps, read from the store.
        let rp = choose(&spec(Oldest, None, None), Some(&cat), &[], "x")
            .unwrap()
            .point;
        assert_eq!(rp.backup, "orders-202611010000");
        assert_eq!(
            (rp.from_store, rp.candidates),
            (Some(true), Some(RetainedSource::Catalog))
        );
        assert_eq!(rp.time, Time(ts("2026-11-01T00:00:00Z")));
        assert_eq!(rp.snapshots["data"], "data-orders-202611010000");
        assert_eq!(
            rp.snapshots["manifests"], "shop-orders-202611010000",
            "named as the Restore controller names a store point's manifests"
        );
        // Latest: through its Backup object as before.
        let rp = choose(&spec(Latest, None, None), Some(&cat), &[], "x")
            .unwrap()
            .point;
        assert_eq!(
            (rp.backup.as_str(), rp.from_store),
            ("orders-202611221400", None)
        );
        assert_eq!(rp.snapshots["data"], "vol-orders-202611221400");
        // Random covers all four.
        let seen: BTreeSet<String> = (0..80)
            .map(|i| {
                choose(&spec(Random, None, None), Some(&cat), &[], &format!("u{i}"))
                    .unwrap()
                    .point
                    .backup
            })
            .collect();
        assert_eq!(seen.len(), 4);
        // A Backup the listing does not hold yet (newer than the listing) is a candidate;
        // one whose snapshots retention forgot is not.
        let older = &cat[..2];
        let (cands, _) = candidates("orders", &objects, Some(older));
        assert_eq!(cands.len(), 4);
        let mut forgotten = backups();
        forgotten[1].status.as_mut().unwrap().conditions.push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: crate::controller::store::forgotten::SNAPSHOTS_FORGOTTEN.into(),
                status: "True".into(),
                reason: "SnapshotsForgotten".into(),
                message: String::new(),
                last_transition_time: Time(ts(NOW)),
                observed_generation: None,
            },
        );
        let (cands, _) = candidates("orders", &forgotten, Some(older));
        assert_eq!(cands.len(), 3);
        // An empty repository names the catalog in the failure.
        let e = choose_catalog(&spec(Latest, None, None), &[], &[]).unwrap_err();
        assert_eq!(e.reason, "NoRestorePoint");
        assert!(e.message.contains("in its repository"), "{}", e.message);
    }

    #[test]
    fn random_within_draws_only_inside_the_window_edges_included() {
        let cat = catalog();
        use RestorePointStrategy::*;
        // NOW - 8d = 2026-11-22T00:00:00Z: the two Backup-backed points are inside.
        let seen: BTreeSet<String> = (0..60)
            .map(|i| {
                choose(
                    &spec(RandomWithin, None, Some("8d")),
                    Some(&cat),
                    &[],
                    &format!("u{i}"),
                )
                .unwrap()
                .point
                .backup
            })
            .collect();
        assert_eq!(
            seen,
            BTreeSet::from(["orders-202611221300".into(), "orders-202611221400".into()])
        );
        // A point exactly at the window's start is inside.
        let edge = vec![point("orders-202611150000", "2026-11-15T00:00:00Z")];
        let rp = choose_catalog(&spec(RandomWithin, None, Some("15d")), &edge, &[]).unwrap();
        assert_eq!(rp.point.backup, "orders-202611150000");
        // One second later it is not; the failure names the window.
        let e = choose_catalog(&spec(RandomWithin, None, Some("14d23h59m59s")), &edge, &[])
            .unwrap_err();
        assert_eq!(e.reason, "NoRestorePoint");
        assert!(
            e.message
                .contains("within 14d23h59m59s (since 2026-11-15T00:00:01Z)"),
            "{}",
            e.message
        );
        assert!(e.message.contains("(1 retained in all)"), "{}", e.message);
        // Same seed, same point.
        let a = choose(&spec(RandomWithin, None, Some("30d")), Some(&cat), &[], "s");
        assert_eq!(
            a,
            choose(&spec(RandomWithin, None, Some("30d")), Some(&cat), &[], "s")
        );
    }

    #[test]
    fn unverified_takes_the_oldest_not_yet_verified_then_the_oldest() {
        let cat = catalog();
        let s = spec(RestorePointStrategy::Unverified, None, None);
        let c = choose(&s, Some(&cat), &[], "x").unwrap();
        assert_eq!(
            (c.point.backup.as_str(), c.why),
            ("orders-202611010000", None)
        );
        let c = choose(
            &s,
            Some(&cat),
            &["orders-202611010000", "orders-202611221300"],
            "x",
        )
        .unwrap();
        assert_eq!(c.point.backup, "orders-202611150000");
        let all = [
            "orders-202611010000",
            "orders-202611150000",
            "orders-202611221300",
            "orders-202611221400",
        ];
        let c = choose(&s, Some(&cat), &all, "x").unwrap();
        assert_eq!(c.point.backup, "orders-202611010000");
        assert_eq!(
            c.why.as_deref(),
            Some("all 4 retained restore points are verified already; restoring the oldest")
        );
        let e = choose_catalog(&s, &[], &[]).unwrap_err();
        assert_eq!(e.reason, "NoRestorePoint");
    }
}

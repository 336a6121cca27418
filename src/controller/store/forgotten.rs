//! Backup objects follow the repository: after each listing of a store, a finished
//! Backup of a policy that writes to it, whose recorded snapshots the repository no
//! longer holds (retention forgot them), gets the condition `SnapshotsForgotten`, so
//! that Restores and drills of it fail with that reason instead of a mover's
//! `SnapshotMissing`, and choosing "the newest" or "the oldest" Backup skips it.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::catalog::{StoreCatalog, StoreKey};
use crate::controller::conditions::{self, Desired};
use crate::controller::{Context, Error, PlannedEvent, Result, apply_status_at};
use crate::crd::backup::{Backup, BackupPhase};
use crate::crd::backup_policy::{BackupPolicy, StoreKind};

/// Condition type on Backups.
pub const SNAPSHOTS_FORGOTTEN: &str = "SnapshotsForgotten";

fn uses(policy: &BackupPolicy, key: &StoreKey) -> bool {
    let r = &policy.spec.store_ref;
    r.name == key.name
        && match &key.namespace {
            Some(ns) => {
                r.kind == StoreKind::BackupStore && policy.namespace().as_deref() == Some(ns)
            }
            None => r.kind == StoreKind::ClusterBackupStore,
        }
}

/// The Backups (from the watch cache) of the policies that write to the store.
fn backups_of(ctx: &Context, key: &StoreKey) -> Vec<Arc<Backup>> {
    let policies: HashSet<(String, String)> = ctx
        .caches
        .policies
        .state()
        .iter()
        .filter(|p| uses(p, key))
        .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    if policies.is_empty() {
        return Vec::new();
    }
    ctx.caches
        .backups
        .state()
        .into_iter()
        .filter(|b| {
            policies.contains(&(
                b.namespace().unwrap_or_default(),
                b.spec.policy_ref.name.clone(),
            ))
        })
        .collect()
}

fn completed(b: &Backup) -> Option<Timestamp> {
    let st = b.status.as_ref()?;
    matches!(
        st.phase,
        Some(BackupPhase::Succeeded | BackupPhase::PartiallyFailed)
    )
    .then_some(())?;
    st.completion_time.as_ref().map(|t| t.0)
}

/// Whether a Backup of the store finished after its last listing (or it was never
/// listed): the catalog is then listed at once rather than at the next interval.
pub fn finished_since(ctx: &Context, key: &StoreKey, listed_at: Option<Timestamp>) -> bool {
    let Some(at) = listed_at else { return true };
    backups_of(ctx, key)
        .iter()
        .any(|b| completed(b).is_some_and(|t| t > at))
}

/// The condition a Backup should carry after `catalog`'s listing, or `None` to leave it
/// as it is (a run that finished after the listing began, a run with no snapshot, or a
/// Backup whose snapshots are all there and that was never marked).
pub fn verdict(b: &Backup, catalog: &StoreCatalog) -> Option<Desired<'static>> {
    let listed_at = catalog.listed_at?;
    if completed(b)? >= listed_at {
        return None;
    }
    let st = b.status.as_ref()?;
    let recorded: Vec<_> = st
        .sources
        .iter()
        .filter_map(|s| s.snapshot_id.as_deref().map(|id| (s, id)))
        .collect();
    if recorded.is_empty() {
        return None;
    }
    let gone: Vec<String> = recorded
        .iter()
        .filter(|(_, id)| !catalog.holds(id))
        .map(|(s, id)| {
            format!(
                "{} {} ({})",
                super::catalog::kind_tag(s.kind),
                s.name,
                &id[..id.len().min(8)]
            )
        })
        .collect();
    let marked = conditions::get(&st.conditions, SNAPSHOTS_FORGOTTEN).is_some();
    if gone.is_empty() {
        return marked.then(|| {
            Desired::new(
                SNAPSHOTS_FORGOTTEN,
                false,
                "SnapshotsPresent",
                "the repository holds every snapshot of this Backup",
            )
        });
    }
    let (reason, what) = if gone.len() == recorded.len() {
        ("SnapshotsForgotten", "every snapshot")
    } else {
        ("SomeSnapshotsForgotten", "some snapshots")
    };
    Some(Desired::new(
        SNAPSHOTS_FORGOTTEN,
        true,
        reason,
        format!(
            "the repository no longer holds {what} of this Backup (forgotten by retention, or removed): {}",
            gone.join(", ")
        ),
    ))
}

/// Whether every snapshot of the Backup is gone from its repository (a restore of it
/// cannot succeed).
pub fn all_forgotten(b: &Backup) -> bool {
    b.status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, SNAPSHOTS_FORGOTTEN))
        .is_some_and(|c| c.status == "True" && c.reason == "SnapshotsForgotten")
}

/// The condition's message when [`all_forgotten`].
pub fn forgotten_message(b: &Backup) -> String {
    b.status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, SNAPSHOTS_FORGOTTEN))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Marks (or unmarks) the store's Backups after a listing. A write that races a newer
/// version of the Backup is left to the next listing.
pub async fn mark(ctx: &Context, key: &StoreKey, catalog: &StoreCatalog) -> Result<()> {
    let now = Timestamp::now();
    for b in backups_of(ctx, key) {
        let Some(want) = verdict(&b, catalog) else {
            continue;
        };
        let mut status = b.status.clone().unwrap_or_default();
        let newly = conditions::is_true(&status.conditions, SNAPSHOTS_FORGOTTEN) != Some(true)
            && want.status;
        if !conditions::set(&mut status.conditions, &want, b.meta().generation, now) {
            continue;
        }
        let api = Api::<Backup>::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default());
        match apply_status_at(
            &api,
            &b.name_any(),
            b.resource_version().as_deref(),
            &status,
        )
        .await
        {
            Ok(()) => {}
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 || e.code == 404 => continue,
            Err(e) => return Err(e),
        }
        if newly {
            let ev = PlannedEvent {
                warning: true,
                reason: "SnapshotsForgotten",
                note: want.message.clone(),
            };
            ctx.publish(b.as_ref(), &ev, "Catalog").await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::backup::{BackupSpec, BackupStatus, SourceKind, SourcePhase, SourceResult};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn backup(done: &str, ids: &[&str]) -> Backup {
        let mut b = Backup::new("b", BackupSpec::default());
        b.status = Some(BackupStatus {
            phase: Some(BackupPhase::Succeeded),
            completion_time: Some(Time(done.parse().unwrap())),
            sources: ids
                .iter()
                .enumerate()
                .map(|(i, id)| SourceResult {
                    name: format!("v{i}"),
                    kind: SourceKind::Volume,
                    phase: SourcePhase::Succeeded,
                    snapshot_id: Some(id.to_string()),
                    ..SourceResult::default()
                })
                .collect(),
            ..BackupStatus::default()
        });
        b
    }

    fn listed(ids: &[&str], at: &str) -> StoreCatalog {
        let mut c = StoreCatalog::default();
        let infos: Vec<_> = ids
            .iter()
            .map(|id| super::super::catalog::tests::snap(id, "2026-01-01T00:00:00Z", &[]))
            .collect();
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        c.update("r", &ids, &infos, at.parse().unwrap());
        c
    }

    #[test]
    fn a_backup_whose_snapshots_are_gone_is_marked_and_unmarked() {
        let c = listed(&["aaaaaaaa11"], "2026-01-02T00:00:00Z");
        let mut b = backup("2026-01-01T00:00:00Z", &["bbbbbbbb22"]);
        let v = verdict(&b, &c).unwrap();
        assert!(v.status);
        assert_eq!(v.reason, "SnapshotsForgotten");
        assert!(v.message.contains("volume v0 (bbbbbbbb)"), "{}", v.message);
        conditions::set(
            &mut b.status.as_mut().unwrap().conditions,
            &v,
            None,
            Timestamp::UNIX_EPOCH,
        );
        assert!(all_forgotten(&b));
        // Partly gone: marked, but not "all".
        let b2 = backup("2026-01-01T00:00:00Z", &["aaaaaaaa11", "bbbbbbbb22"]);
        assert_eq!(verdict(&b2, &c).unwrap().reason, "SomeSnapshotsForgotten");
        // All there: nothing to say about a Backup never marked; a marked one is cleared.
        let c2 = listed(&["bbbbbbbb22"], "2026-01-02T00:00:00Z");
        assert_eq!(
            verdict(&backup("2026-01-01T00:00:00Z", &["bbbbbbbb22"]), &c2),
            None
        );
        let cleared = verdict(&b, &c2).unwrap();
        assert!(!cleared.status);
    }

    #[test]
    fn a_backup_that_finished_after_the_listing_began_is_not_judged() {
        let c = listed(&[], "2026-01-02T00:00:00Z");
        assert_eq!(
            verdict(&backup("2026-01-02T00:00:01Z", &["bbbbbbbb22"]), &c),
            None
        );
        assert_eq!(verdict(&backup("2026-01-01T00:00:00Z", &[]), &c), None);
    }
}

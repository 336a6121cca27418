//! Restores from a store alone (`source.storeRef` + `fromPolicy`): the store's catalog
//! stands in for the Backup objects and the BackupPolicy, which may not exist (a new
//! cluster, a deleted namespace). Each restore point of the identity becomes a Backup as
//! its run would have recorded it, built from the snapshots' tags, and the policy one
//! with the identity's name and default mover settings; the rest of the Restore
//! controller then works as for a restore from a Backup.
//!
//! What the tags do not carry, a Backup object would have: a volume's size, class and
//! access modes (the restored PVC is sized from the bytes the backup read, at least the
//! fallback size, in the default class unless `spec.volumes.storageClassName` says
//! otherwise), and the dumped server's version (an ephemeral database server needs
//! `ephemeral.image`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use crate::controller::conditions::{self, Desired};
use crate::controller::store::catalog::{RestorePoint, StoreKey};
use crate::crd::backup::{
    BackedUpDatabase, BackedUpVolume, Backup, BackupPhase, BackupSpec, BackupStatus, PolicyRef,
    SourceKind, SourcePhase, SourceResult,
};
use crate::crd::backup_policy::{BackupPolicy, BackupPolicySpec, DatabaseEngine, StoreKind};
use crate::crd::common::condition;
use crate::crd::restore::{Restore, RestoreStatus};

/// The identity a Restore reads from a store: (namespace, policy).
pub fn identity(r: &Restore) -> Option<(&str, &str)> {
    let src = &r.spec.source;
    src.store_ref.as_ref()?;
    src.from_policy.as_deref()?.split_once('/')
}

/// The catalog key of the Restore's store.
pub fn store_key(r: &Restore) -> Option<StoreKey> {
    let s = r.spec.source.store_ref.as_ref()?;
    Some(StoreKey {
        namespace: match s.kind {
            StoreKind::BackupStore => r.metadata.namespace.clone(),
            StoreKind::ClusterBackupStore => None,
        },
        name: s.name.clone(),
    })
}

/// A restored volume's size when no Backup recorded it: what the backup read, with a
/// quarter more for the file system, rounded up to whole GiB (at least 1Gi).
fn size_for(bytes: Option<u64>) -> Option<Quantity> {
    const GIB: u64 = 1 << 30;
    let b = bytes?;
    let gib = (b + b / 4).div_ceil(GIB).max(1);
    Some(Quantity(format!("{gib}Gi")))
}

fn engine(tag: Option<&str>) -> Option<DatabaseEngine> {
    match tag? {
        "postgres" | "postgresql" => Some(DatabaseEngine::Postgres),
        "mysql" | "mariadb" => Some(DatabaseEngine::Mysql),
        _ => None,
    }
}

/// A restore point of the catalog as the Backup its run would have recorded, in the
/// Restore's namespace, named after the run.
pub fn as_backup(p: &RestorePoint, namespace: &str, policy: &str) -> Backup {
    let sources = p
        .sources
        .iter()
        .map(|e| SourceResult {
            // A manifests source is recorded as `manifests` (its tag names the namespace).
            name: match e.kind {
                SourceKind::Manifests => "manifests".into(),
                _ => e.source.clone(),
            },
            kind: e.kind,
            phase: SourcePhase::Succeeded,
            snapshot_id: Some(e.id.clone()),
            volume: (e.kind == SourceKind::Volume).then(|| BackedUpVolume {
                storage: size_for(e.bytes),
                ..BackedUpVolume::default()
            }),
            database: engine(e.db_engine.as_deref()).map(|engine| BackedUpDatabase {
                engine,
                database: e.db_name.clone(),
                server_version: None,
            }),
            ..SourceResult::default()
        })
        .collect();
    Backup {
        metadata: ObjectMeta {
            name: Some(p.run.clone()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        spec: BackupSpec {
            policy_ref: PolicyRef {
                name: policy.into(),
            },
            ..BackupSpec::default()
        },
        status: Some(BackupStatus {
            phase: Some(BackupPhase::Succeeded),
            restore_point_time: Some(Time(p.time)),
            completion_time: Some(Time(p.time)),
            sources,
            ..BackupStatus::default()
        }),
    }
}

/// The policy of a restore from a store: the identity's name, the Restore's store, and
/// default mover settings (the original policy's, if any, are not in the repository).
pub fn as_policy(r: &Restore, policy: &str) -> BackupPolicy {
    let mut p = BackupPolicy::new(policy, BackupPolicySpec::default());
    p.metadata.namespace = r.metadata.namespace.clone();
    if let Some(s) = &r.spec.source.store_ref {
        p.spec.store_ref = s.clone();
    }
    p
}

/// The status of a from-store Restore that waits for its store's first probe or listing,
/// so `kubectl get` says what it waits for instead of an empty status.
pub fn waiting_for_catalog(r: &Restore, unprobed: bool, now: jiff::Timestamp) -> RestoreStatus {
    let mut st = r.status.clone().unwrap_or_default();
    let store = r
        .spec
        .source
        .store_ref
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or_default();
    let msg = if unprobed {
        format!(
            "store {store:?} has not been probed yet; the restore starts once its snapshots are listed"
        )
    } else {
        format!(
            "the snapshots of store {store:?} have not been listed yet; the controller lists them when it probes the store"
        )
    };
    conditions::set(
        &mut st.conditions,
        &Desired::new(condition::COMPLETE, false, WAITING_FOR_CATALOG, msg),
        r.metadata.generation,
        now,
    );
    st
}

/// Reason of `Complete=False` while a from-store Restore waits for the catalog.
pub const WAITING_FOR_CATALOG: &str = "WaitingForCatalog";

/// How long a from-store Restore waits, from its creation, for its store's first probe
/// and listing. A store is probed within seconds of its creation and listed with each
/// probe, so waiting longer means the store cannot be probed or listed (its own condition
/// says why): the Restore fails instead of waiting for ever.
pub const CATALOG_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The failure of a from-store Restore that has waited [`CATALOG_WAIT`] for the catalog
/// (reason `CatalogUnavailable`), or `None` while it may still wait.
pub fn catalog_wait_over(
    r: &Restore,
    unprobed: bool,
    now: jiff::Timestamp,
) -> Option<crate::crd::common::Failure> {
    let created = r.metadata.creation_timestamp.as_ref()?.0;
    let waited = now.duration_since(created);
    (waited.as_secs() >= CATALOG_WAIT.as_secs() as i64).then(|| {
        let store = r
            .spec
            .source
            .store_ref
            .as_ref()
            .map(|s| s.name.as_str())
            .unwrap_or_default();
        let what = if unprobed {
            "probed"
        } else {
            "listed"
        };
        crate::crd::common::Failure {
            reason: "CatalogUnavailable".into(),
            message: format!(
                "store {store:?} was not {what} within {} of the restore's creation; its Ready condition says why",
                crate::schedule::duration::format(CATALOG_WAIT)
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::store::catalog::Entry;

    fn entry(kind: SourceKind, source: &str, bytes: Option<u64>) -> Entry {
        Entry {
            id: format!("{source}-id"),
            time: "2026-01-01T00:00:00Z".parse().unwrap(),
            identity: "old/daily".into(),
            run: "daily-1".into(),
            kind,
            source: source.into(),
            db_engine: (kind == SourceKind::Database).then(|| "postgres".into()),
            db_name: (kind == SourceKind::Database).then(|| "orders".into()),
            bytes,
        }
    }

    #[test]
    fn a_restore_point_reads_as_the_backup_its_run_recorded() {
        let p = RestorePoint {
            identity: "old/daily".into(),
            run: "daily-1".into(),
            time: "2026-01-01T00:00:00Z".parse().unwrap(),
            sources: vec![
                entry(SourceKind::Volume, "data", Some(3 << 30)),
                entry(SourceKind::Database, "pg", None),
                entry(SourceKind::Manifests, "old", None),
            ],
        };
        let b = as_backup(&p, "new", "daily");
        assert_eq!(b.metadata.name.as_deref(), Some("daily-1"));
        assert_eq!(b.spec.policy_ref.name, "daily");
        let st = b.status.unwrap();
        assert_eq!(st.phase, Some(BackupPhase::Succeeded));
        let names: Vec<_> = st.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["data", "pg", "manifests"]);
        let vol = st.sources[0].volume.clone().unwrap();
        assert_eq!(vol.storage, Some(Quantity("4Gi".into())), "3 GiB + 25 %");
        let db = st.sources[1].database.clone().unwrap();
        assert_eq!(db.engine, DatabaseEngine::Postgres);
        assert_eq!(db.database.as_deref(), Some("orders"));
        assert_eq!(size_for(Some(10)), Some(Quantity("1Gi".into())));
        assert_eq!(size_for(None), None);
    }

    #[test]
    fn a_restore_waiting_for_its_store_says_so_once() {
        let mut r = Restore::new("back", Default::default());
        r.spec.source.store_ref = Some(crate::crd::backup_policy::StoreRef {
            name: "offsite".into(),
            ..Default::default()
        });
        r.metadata.generation = Some(1);
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let st = waiting_for_catalog(&r, true, t0);
        let c = &st.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", WAITING_FOR_CATALOG)
        );
        assert!(
            c.message.contains("\"offsite\" has not been probed yet"),
            "{}",
            c.message
        );
        // Written once: a later reconcile with the same verdict changes nothing, so the
        // controller does not write the status every 5 s.
        r.status = Some(st.clone());
        let later = waiting_for_catalog(&r, true, t0 + jiff::SignedDuration::from_secs(5));
        assert_eq!(later, st);
        // Probed but not listed yet: the message changes, the reason stays.
        let listed = waiting_for_catalog(&r, false, t0);
        assert!(listed.conditions[0].message.contains("not been listed yet"));
        assert_eq!(listed.conditions[0].reason, WAITING_FOR_CATALOG);
        // The wait ends: ten minutes after the Restore's creation it fails.
        r.metadata.creation_timestamp = Some(Time(t0));
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        assert!(catalog_wait_over(&r, true, at(599)).is_none());
        let f = catalog_wait_over(&r, false, at(600)).unwrap();
        assert_eq!(f.reason, "CatalogUnavailable");
        assert!(
            f.message.contains("\"offsite\" was not listed within 10m"),
            "{}",
            f.message
        );
    }
}

//! Scenario tests of the Restore plan: each test builds the observed world a real
//! reconcile would see at one step of a restore, and feeds the plan's status back as the
//! next reconcile would read it.

use super::*;
use crate::controller::access::observe::testing::{owned_by, uid};
use crate::crd::backup::{
    BackedUpDatabase, BackedUpVolume, BackupPhase, BackupSpec, BackupStatus, PolicyRef,
};
use crate::crd::backup_policy::{BackupPolicySpec, DatabaseSource, Sources, StoreRef};
use crate::crd::common::ScheduleSpec;
use crate::crd::restore::{
    DatabaseTarget, EphemeralDatabase, LocalRef, ManifestRestore, RestoreSource, RestoreSpec,
    VolumeRestore,
};
use crate::crd::store::ChecksumMode;
use crate::jobs::mover::SecretKey;
use crate::jobs::result::RESULT_VERSION;
use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-01-01T00:10:30Z";
const T0: &str = "2026-01-01T00:00:00Z";

fn policy() -> BackupPolicy {
    let mut p = BackupPolicy::new(
        "app",
        BackupPolicySpec {
            store_ref: StoreRef {
                name: "s3".into(),
                ..StoreRef::default()
            },
            schedule: ScheduleSpec {
                cron: "0 * * * *".into(),
                ..ScheduleSpec::default()
            },
            sources: Sources {
                databases: vec![DatabaseSource {
                    name: "pg".into(),
                    engine: DatabaseEngine::Postgres,
                    host: "pg.shop.svc".into(),
                    database: Some("orders".into()),
                    ..DatabaseSource::default()
                }],
                ..Sources::default()
            },
            ..BackupPolicySpec::default()
        },
    );
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("p-uid".into());
    p
}

fn source(kind: SourceKind, name: &str, snap: &str) -> SourceResult {
    SourceResult {
        name: name.into(),
        kind,
        phase: SourcePhase::Succeeded,
        snapshot_id: Some(snap.into()),
        ..SourceResult::default()
    }
}

fn backup(name: &str, phase: BackupPhase, point: &str) -> Backup {
    let mut b = Backup::new(
        name,
        BackupSpec {
            policy_ref: PolicyRef { name: "app".into() },
            ..BackupSpec::default()
        },
    );
    b.metadata.namespace = Some("shop".into());
    let mut vol = source(SourceKind::Volume, "data", "vvvv1111");
    vol.volume = Some(BackedUpVolume {
        storage: Some(Quantity("5Gi".into())),
        storage_class_name: Some("fast".into()),
        access_modes: vec!["ReadWriteOnce".into()],
        volume_mode: None,
    });
    let mut db = source(SourceKind::Database, "pg", "dddd2222");
    db.database = Some(BackedUpDatabase {
        engine: DatabaseEngine::Postgres,
        database: Some("orders".into()),
        server_version: Some("15.8 (Debian 15.8-0+deb12u1)".into()),
    });
    let ok = matches!(phase, BackupPhase::Succeeded | BackupPhase::PartiallyFailed);
    b.status = Some(BackupStatus {
        phase: Some(phase),
        restore_point_time: ok.then(|| Time(ts(point))),
        sources: vec![
            vol,
            db,
            source(SourceKind::Manifests, "manifests", "mmmm3333"),
        ],
        ..BackupStatus::default()
    });
    b
}

fn restore(spec: RestoreSpec) -> Restore {
    let mut r = Restore::new("r1", spec);
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some("r-uid".into());
    r.metadata.generation = Some(1);
    r
}

fn by_backup(name: &str) -> RestoreSource {
    RestoreSource {
        backup_ref: Some(LocalRef { name: name.into() }),
        ..RestoreSource::default()
    }
}

fn store() -> StoreTarget {
    StoreTarget {
        repository: "s3:http://s3:9000/b/p".into(),
        region: "us-east-1".into(),
        path_style: true,
        checksum_mode: ChecksumMode::WhenSupported,
        credentials: None,
        password: SecretKey {
            secret: "pw".into(),
            key: "password".into(),
        },
        ca_bundle: None,
        identity: "repo1".into(),
        object_lock: None,
    }
}

fn namespace(name: &str, allow: Option<&str>) -> Namespace {
    let mut n = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    if let Some(a) = allow {
        n.metadata.annotations = Some(BTreeMap::from([(ALLOW_RESTORE_FROM.into(), a.into())]));
    }
    n
}

fn pvc(name: &str, size: &str, ours: bool) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: ours.then(|| BTreeMap::from([(labels::RESTORE_UID.into(), "r-uid".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            storage_class_name: Some("standard".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn job(name: &str, finished: Option<(bool, &str)>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(uid(name)),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(JobStatus {
            conditions: finished.map(|(ok, reason)| {
                vec![JobCondition {
                    type_: if ok { "Complete" } else { "Failed" }.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    ..JobCondition::default()
                }]
            }),
            ..JobStatus::default()
        }),
    }
}

fn mover_pod(job: &str, phase: &str, message: Option<String>, waiting: Option<&str>) -> Pod {
    owned_by(mover_pod_of(job, phase, message, waiting), job)
}

fn mover_pod_of(job: &str, phase: &str, message: Option<String>, waiting: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{job}-x")),
            labels: Some(BTreeMap::from([("job-name".into(), job.into())])),
            creation_timestamp: Some(Time(ts("2026-01-01T00:10:05Z"))),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "mover".into(),
                state: Some(ContainerState {
                    terminated: message.map(|m| ContainerStateTerminated {
                        exit_code: if phase == "Succeeded" { 0 } else { 61 },
                        message: Some(m),
                        ..ContainerStateTerminated::default()
                    }),
                    waiting: waiting.map(|r| ContainerStateWaiting {
                        reason: Some(r.into()),
                        message: Some("secret \"creds\" not found".into()),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn server_pod(server: &str, waiting: Option<&str>, restarts: i32, last_exit: Option<i32>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{server}-abc")),
            labels: Some(BTreeMap::from([
                (labels::COMPONENT.into(), SERVER_COMPONENT.into()),
                (SERVER_LABEL.into(), server.into()),
            ])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "database".into(),
                restart_count: restarts,
                state: Some(ContainerState {
                    waiting: waiting.map(|r| ContainerStateWaiting {
                        reason: Some(r.into()),
                        message: Some(format!("{r}: image \"postgres:99\" not found")),
                    }),
                    ..ContainerState::default()
                }),
                last_state: last_exit.map(|code| ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        reason: Some("Error".into()),
                        message: Some("FATAL: data directory has wrong ownership".into()),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn deployment(name: &str, ready: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(DeploymentStatus {
            ready_replicas: Some(ready),
            ..DeploymentStatus::default()
        }),
    }
}

/// A mover result with the given details (times included).
fn result(snap: &str, started: &str, finished: &str, details: serde_json::Value) -> String {
    let mut r = MoverResult {
        v: RESULT_VERSION,
        snapshot_id: Some(snap.into()),
        files: Some(3),
        duration_seconds: Some(1.0),
        ..MoverResult::default()
    };
    r.details.insert("startedAt".into(), started.into());
    r.details.insert("finishedAt".into(), finished.into());
    if let serde_json::Value::Object(m) = details {
        r.details.extend(m);
    }
    r.to_message()
}

fn failed(reason: &str, msg: &str) -> String {
    MoverResult {
        v: RESULT_VERSION,
        failure: Some(failure(reason, msg)),
        ..MoverResult::default()
    }
    .to_message()
}

struct World {
    restore: Restore,
    backups: Vec<Backup>,
    policy: Option<BackupPolicy>,
    store: Option<StoreTarget>,
    blocker: Option<Failure>,
    namespaces: Vec<Namespace>,
    target_pvcs: Vec<PersistentVolumeClaim>,
    source_pvcs: Vec<PersistentVolumeClaim>,
    jobs: Vec<Job>,
    pods: Vec<Pod>,
    deployments: Vec<Deployment>,
    mirror: Option<String>,
    config: Config,
    now: Timestamp,
}

impl World {
    fn new(spec: RestoreSpec) -> Self {
        World {
            restore: restore(spec),
            backups: vec![backup("app-1", BackupPhase::Succeeded, T0)],
            policy: Some(policy()),
            store: Some(store()),
            blocker: None,
            namespaces: vec![namespace("shop", None)],
            target_pvcs: vec![],
            source_pvcs: vec![],
            jobs: vec![],
            pods: vec![],
            deployments: vec![],
            mirror: None,
            config: Config::for_tests(),
            now: ts(NOW),
        }
    }

    /// Restore of Backup app-1: volumes (all), the database `pg` and manifests.
    fn everything() -> Self {
        World::new(RestoreSpec {
            source: by_backup("app-1"),
            databases: vec![DatabaseRestore {
                source: "pg".into(),
                ephemeral: Some(EphemeralDatabase::default()),
                ..DatabaseRestore::default()
            }],
            manifests: Some(ManifestRestore {
                suppress_side_effects: true,
                ..ManifestRestore::default()
            }),
            ..RestoreSpec::default()
        })
    }

    /// Into namespace `shop-copy`, which invites `shop`.
    fn elsewhere(mut self) -> Self {
        self.restore.spec.target_namespace = Some("shop-copy".into());
        self.namespaces.push(namespace("shop-copy", Some("shop")));
        self.mirror = Some(mirror_name("r1"));
        self
    }

    /// Makes the target `shop-copy` the sandbox of DrillRun `shop/orders-1`, which owns
    /// the Restore, as the DrillRun controller makes it.
    fn drill_sandbox(mut self) -> Self {
        self.restore.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "lifeboat.dev/v1alpha1".into(),
            kind: "DrillRun".into(),
            name: "orders-1".into(),
            uid: "run-uid".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        let sb = self
            .namespaces
            .iter_mut()
            .find(|n| n.name_any() == "shop-copy")
            .unwrap();
        sb.metadata.uid = Some("sandbox-uid".into());
        sb.metadata.labels = Some(BTreeMap::from([
            (labels::SANDBOX.into(), "true".into()),
            (labels::MANAGED_BY.into(), labels::MANAGER.into()),
            (labels::DRILL_RUN.into(), "orders-1".into()),
        ]));
        let a = sb.metadata.annotations.get_or_insert_default();
        a.insert(
            crate::crd::annotations::DRILL_RUN_REF.into(),
            "shop/orders-1".into(),
        );
        a.insert(
            crate::crd::annotations::DRILL_RUN_UID.into(),
            "run-uid".into(),
        );
        self
    }

    fn plan(&self) -> Plan {
        let target = target_namespace(&self.restore);
        plan(&Observed {
            restore: &self.restore,
            backups: &self.backups,
            policy: self.policy.as_ref(),
            store: self.store.clone(),
            start_blocker: self.blocker.clone(),
            target_namespace: self.namespaces.iter().find(|n| n.name_any() == target),
            target_pvcs: &self.target_pvcs,
            source_pvcs: &self.source_pvcs,
            jobs: &self.jobs,
            pods: &self.pods,
            deployments: &self.deployments,
            mirror: self.mirror.clone(),
            fresh_password: "fresh-secret".into(),
            config: &self.config,
            now: self.now,
        })
    }

    fn step(&mut self) -> Plan {
        let p = self.plan();
        self.restore.status = Some(p.status.clone());
        p
    }

    fn source(&self, name: &str) -> RestoredSource {
        self.restore
            .status
            .as_ref()
            .unwrap()
            .sources
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap()
    }
}

fn pod_spec(j: &Job) -> &PodSpec {
    j.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn args(j: &Job) -> String {
    pod_spec(j).containers[0].args.clone().unwrap().join(" ")
}

const VOL_JOB: &str = "r1-rst-vol-data";
const DB_JOB: &str = "r1-rst-db-pg";
const MAN_JOB: &str = "r1-rst-manifests";
const SERVER: &str = "db-r1-pg";

fn reason(p: &Plan) -> Option<String> {
    p.status.failure.as_ref().map(|f| f.reason.clone())
}

// ---------------------------------------------------------------------------------------
// Resolving the restore point

#[test]
fn a_missing_backup_fails_precisely_and_writes_nothing() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("nope"),
        ..RestoreSpec::default()
    });
    let p = w.step();
    assert_eq!(p.status.phase, Some(RestorePhase::Failed));
    assert_eq!(reason(&p).as_deref(), Some("RestorePointNotFound"));
    assert!(
        p.status
            .failure
            .as_ref()
            .unwrap()
            .message
            .contains("\"nope\"")
    );
    assert!(p.create_jobs.is_empty() && p.create_pvcs.is_empty());
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "RestoreFailed" && e.warning)
    );
    let c = conditions::get(&p.status.conditions, condition::COMPLETE).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Failed"));
    // A failed Backup holds no restore point either.
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.backups = vec![backup("app-1", BackupPhase::Failed, T0)];
    assert_eq!(reason(&w.step()).as_deref(), Some("RestorePointNotFound"));
}

#[test]
fn a_policy_that_does_not_exist_is_named_as_such() {
    let spec = RestoreSpec {
        source: RestoreSource {
            policy_ref: Some(LocalRef {
                name: "ghost".into(),
            }),
            ..RestoreSource::default()
        },
        ..RestoreSpec::default()
    };
    let mut w = World::new(spec.clone());
    w.policy = None;
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("PolicyNotFound"));
    assert!(p.status.failure.unwrap().message.contains("\"ghost\""));
    // The policy exists but has no Backup: that is a missing restore point.
    let mut w = World::new(spec);
    w.backups.clear();
    assert_eq!(reason(&w.step()).as_deref(), Some("RestorePointNotFound"));
}

#[test]
fn a_backup_still_running_is_waited_for() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.backups = vec![backup("app-1", BackupPhase::Running, T0)];
    let p = w.step();
    assert_eq!(p.status.phase, None, "still Pending");
    let c = conditions::get(&p.status.conditions, condition::COMPLETE).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "WaitingForBackup")
    );
    assert!(p.requeue.is_some());
    assert!(p.create_jobs.is_empty() && p.finished.is_none());
    w.backups = vec![backup("app-1", BackupPhase::Succeeded, T0)];
    assert_eq!(w.step().status.phase, Some(RestorePhase::Running));
}

#[test]
fn a_policy_resolves_to_its_newest_usable_backup_at_or_before_the_time() {
    let mut spec = RestoreSpec {
        source: RestoreSource {
            policy_ref: Some(LocalRef { name: "app".into() }),
            ..RestoreSource::default()
        },
        ..RestoreSpec::default()
    };
    let backups = vec![
        backup("app-1", BackupPhase::Succeeded, "2026-01-01T01:00:00Z"),
        backup(
            "app-2",
            BackupPhase::PartiallyFailed,
            "2026-01-01T02:00:00Z",
        ),
        backup("app-3", BackupPhase::Failed, "2026-01-01T03:00:00Z"),
        backup("app-4", BackupPhase::Running, "2026-01-01T04:00:00Z"),
    ];
    let mut other = backup("other-9", BackupPhase::Succeeded, "2026-01-01T09:00:00Z");
    other.spec.policy_ref.name = "other".into();
    let mut all = backups.clone();
    all.push(other);
    let name = |spec: &RestoreSpec| match resolve_point(&restore(spec.clone()), &all) {
        Resolution::Found(b) => b.name_any(),
        r => format!("{r:?}"),
    };
    assert_eq!(
        name(&spec),
        "app-2",
        "latest usable, other policies ignored"
    );
    spec.source.point_in_time = Some("2026-01-01T01:30:00Z".into());
    assert_eq!(name(&spec), "app-1");
    spec.source.point_in_time = Some("2026-01-01T01:00:00Z".into());
    assert_eq!(name(&spec), "app-1", "at the time counts");
    spec.source.point_in_time = Some("2025-12-31T00:00:00Z".into());
    let mut w = World::new(spec);
    w.backups = backups;
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("RestorePointNotFound"));
    assert!(
        p.status
            .failure
            .unwrap()
            .message
            .contains("at or before 2025-12-31T00:00:00Z")
    );
}

fn forget(b: &mut Backup) {
    crate::controller::conditions::set(
        &mut b.status.as_mut().unwrap().conditions,
        &crate::controller::conditions::Desired::new(
            crate::controller::store::forgotten::SNAPSHOTS_FORGOTTEN,
            true,
            "SnapshotsForgotten",
            "the repository no longer holds every snapshot of this Backup",
        ),
        None,
        ts(T0),
    );
}

#[test]
fn a_backup_whose_snapshots_were_forgotten_fails_with_that_reason_and_is_skipped() {
    let mut old = backup("app-1", BackupPhase::Succeeded, "2026-01-01T01:00:00Z");
    forget(&mut old);
    let newer = backup("app-2", BackupPhase::Succeeded, "2026-01-01T02:00:00Z");
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.backups = vec![old.clone(), newer.clone()];
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("SnapshotsForgotten"));
    assert!(p.create_jobs.is_empty());
    // By policy and time: the forgotten one is no restore point, so none at 01:30.
    let spec = RestoreSpec {
        source: RestoreSource {
            policy_ref: Some(LocalRef { name: "app".into() }),
            point_in_time: Some("2026-01-01T01:30:00Z".into()),
            ..RestoreSource::default()
        },
        ..RestoreSpec::default()
    };
    let all = vec![old, newer];
    assert!(matches!(
        resolve_point(&restore(spec), &all),
        Resolution::Missing(f) if f.reason == "RestorePointNotFound"
    ));
}

/// A Restore in namespace `shop` of identity `old/daily` from the store's catalog.
fn from_store_world(source_extra: impl FnOnce(&mut RestoreSource)) -> World {
    use crate::controller::restore::from_store;
    use crate::controller::store::catalog::{Entry, RestorePoint};
    let mut source = RestoreSource {
        store_ref: Some(crate::crd::backup_policy::StoreRef {
            kind: crate::crd::backup_policy::StoreKind::BackupStore,
            name: "s3".into(),
        }),
        from_policy: Some("old/daily".into()),
        ..RestoreSource::default()
    };
    source_extra(&mut source);
    let mut w = World::new(RestoreSpec {
        source,
        manifests: Some(ManifestRestore::default()),
        ..RestoreSpec::default()
    });
    let point = |run: &str, at: &str| RestorePoint {
        identity: "old/daily".into(),
        run: run.into(),
        time: ts(at),
        sources: vec![
            Entry {
                id: format!("{run}-vol"),
                time: ts(at),
                identity: "old/daily".into(),
                run: run.into(),
                kind: SourceKind::Volume,
                source: "data".into(),
                db_engine: None,
                db_name: None,
                bytes: Some(1 << 20),
            },
            Entry {
                id: format!("{run}-man"),
                time: ts(at),
                identity: "old/daily".into(),
                run: run.into(),
                kind: SourceKind::Manifests,
                source: "old".into(),
                db_engine: None,
                db_name: None,
                bytes: None,
            },
        ],
    };
    w.backups = vec![
        from_store::as_backup(&point("daily-1", "2026-01-01T01:00:00Z"), "shop", "daily"),
        from_store::as_backup(&point("daily-2", "2026-01-01T02:00:00Z"), "shop", "daily"),
    ];
    w.policy = Some(from_store::as_policy(&w.restore, "daily"));
    w
}

#[test]
fn a_restore_from_a_store_reads_the_identitys_restore_points_and_only_them() {
    let mut w = from_store_world(|_| {});
    let p = w.step();
    assert_eq!(
        p.status.phase,
        Some(RestorePhase::Running),
        "{:?}",
        p.status.failure
    );
    let rp = p.status.restore_point.clone().unwrap();
    assert_eq!(rp.backup, "daily-2", "the newest");
    assert_eq!(
        (rp.namespace.as_deref(), rp.store.as_deref()),
        (Some("old"), Some("s3"))
    );
    let vol = &p.create_jobs[0];
    let a = args(vol);
    // The mover reads only snapshots tagged with the old namespace's identity.
    assert!(
        a.contains("old/daily") || a.contains("--policy-namespace old"),
        "{a}"
    );
    assert!(a.contains("daily-2-vol"), "{a}");
    let pvc = &p.create_pvcs[0];
    let size = pvc
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"]
        .clone();
    assert_eq!(size.0, "1Gi", "sized from the bytes the backup read");
    // Point in time and an explicit run.
    let mut w = from_store_world(|s| s.point_in_time = Some("2026-01-01T01:30:00Z".into()));
    assert_eq!(w.step().status.restore_point.unwrap().backup, "daily-1");
    let mut w = from_store_world(|s| s.backup_name = Some("daily-1".into()));
    assert_eq!(w.step().status.restore_point.unwrap().backup, "daily-1");
    let mut w = from_store_world(|s| s.backup_name = Some("daily-9".into()));
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("RestorePointNotFound"));
    assert!(p.status.failure.unwrap().message.contains("daily-9"));
    // A store refused by the tenant rules fails the restore with that reason.
    let mut w = from_store_world(|_| {});
    w.blocker = Some(failure("CrossNamespaceRestoreNotAllowed", "no"));
    assert_eq!(
        reason(&w.step()).as_deref(),
        Some("CrossNamespaceRestoreNotAllowed")
    );
    // A store that cannot be listed has no catalog: its reason, not "no restore point"
    // (which would send the reader looking for missing backups).
    let mut w = from_store_world(|_| {});
    w.backups.clear();
    w.store = None;
    w.blocker = Some(failure("StorageUnreachable", "connection refused"));
    assert_eq!(reason(&w.step()).as_deref(), Some("StorageUnreachable"));
}

#[test]
fn invalid_specs_fail_before_anything_is_written() {
    let cases: Vec<(&str, RestoreSpec)> = vec![
        ("neither ref", RestoreSpec::default()),
        (
            "both refs",
            RestoreSpec {
                source: RestoreSource {
                    backup_ref: Some(LocalRef { name: "a".into() }),
                    policy_ref: Some(LocalRef { name: "b".into() }),
                    ..RestoreSource::default()
                },
                ..RestoreSpec::default()
            },
        ),
        (
            "time with a backup",
            RestoreSpec {
                source: RestoreSource {
                    point_in_time: Some("2026-01-01T00:00:00Z".into()),
                    ..by_backup("app-1")
                },
                ..RestoreSpec::default()
            },
        ),
        (
            "bad time",
            RestoreSpec {
                source: RestoreSource {
                    policy_ref: Some(LocalRef { name: "app".into() }),
                    point_in_time: Some("yesterday".into()),
                    ..RestoreSource::default()
                },
                ..RestoreSpec::default()
            },
        ),
        (
            "target and ephemeral",
            RestoreSpec {
                source: by_backup("app-1"),
                databases: vec![DatabaseRestore {
                    source: "pg".into(),
                    target: Some(DatabaseTarget {
                        host: "h".into(),
                        ..DatabaseTarget::default()
                    }),
                    ephemeral: Some(EphemeralDatabase::default()),
                }],
                ..RestoreSpec::default()
            },
        ),
        (
            "no destination",
            RestoreSpec {
                source: by_backup("app-1"),
                databases: vec![DatabaseRestore {
                    source: "pg".into(),
                    ..DatabaseRestore::default()
                }],
                ..RestoreSpec::default()
            },
        ),
        (
            "bad timeout",
            RestoreSpec {
                source: by_backup("app-1"),
                databases: vec![DatabaseRestore {
                    source: "pg".into(),
                    ephemeral: Some(EphemeralDatabase {
                        startup_timeout: Some("soon".into()),
                        ..EphemeralDatabase::default()
                    }),
                    ..DatabaseRestore::default()
                }],
                ..RestoreSpec::default()
            },
        ),
        (
            "two volumes onto one PVC",
            RestoreSpec {
                source: by_backup("app-1"),
                volumes: Some(VolumeRestore {
                    rename: BTreeMap::from([("a".into(), "x".into()), ("b".into(), "x".into())]),
                    ..VolumeRestore::default()
                }),
                ..RestoreSpec::default()
            },
        ),
        (
            "bad PVC name",
            RestoreSpec {
                source: by_backup("app-1"),
                volumes: Some(VolumeRestore {
                    rename: BTreeMap::from([("data".into(), "Data_Copy".into())]),
                    ..VolumeRestore::default()
                }),
                ..RestoreSpec::default()
            },
        ),
    ];
    for (what, spec) in cases {
        let mut w = World::new(spec);
        let p = w.step();
        assert_eq!(reason(&p).as_deref(), Some("InvalidSpec"), "{what}");
        assert!(
            p.create_jobs.is_empty() && p.create_pvcs.is_empty(),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The target namespace

#[test]
fn another_namespace_must_exist_and_invite_the_restore() {
    let check = |ns: Option<Namespace>| {
        let mut r = restore(RestoreSpec {
            source: by_backup("app-1"),
            target_namespace: Some("copy".into()),
            ..RestoreSpec::default()
        });
        r.metadata.namespace = Some("shop".into());
        check_target(&r, ns.as_ref(), &[]).map_err(|f| (f.reason, f.message))
    };
    let (reason, msg) = check(None).unwrap_err();
    assert_eq!(reason, "TargetNotAllowed");
    assert!(msg.contains("does not exist"), "{msg}");
    let (_, msg) = check(Some(namespace("copy", None))).unwrap_err();
    assert!(msg.contains(ALLOW_RESTORE_FROM), "{msg}");
    assert!(check(Some(namespace("copy", Some("dev, test")))).is_err());
    assert_eq!(
        check(Some(namespace("copy", Some("dev, shop")))).unwrap(),
        "copy"
    );
    assert!(check(Some(namespace("copy", Some("*")))).is_ok());
    let mut dying = namespace("copy", Some("*"));
    dying.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    assert!(check(Some(dying)).unwrap_err().1.contains("being deleted"));
    // The Restore's own namespace needs no invitation.
    let own = restore(RestoreSpec::default());
    assert_eq!(
        check_target(&own, Some(&namespace("shop", None)), &[]).unwrap(),
        "shop"
    );
    // A controller serving some namespaces: another one is refused with its own reason,
    // a served one and a drill sandbox are not.
    let served = ["shop".to_string(), "copy".to_string()];
    let mut r = restore(RestoreSpec {
        source: by_backup("app-1"),
        target_namespace: Some("elsewhere".into()),
        ..RestoreSpec::default()
    });
    r.metadata.namespace = Some("shop".into());
    let f = check_target(&r, Some(&namespace("elsewhere", Some("shop"))), &served).unwrap_err();
    assert_eq!(f.reason, "TargetNotServed");
    assert!(
        f.message.contains("watchNamespaces: shop, copy"),
        "{}",
        f.message
    );
    let mut sandbox = namespace("elsewhere", Some("shop"));
    sandbox.metadata.labels =
        Some([(crate::crd::labels::SANDBOX.to_string(), "true".to_string())].into());
    assert!(check_target(&r, Some(&sandbox), &served).is_ok());
    r.spec.target_namespace = Some("copy".into());
    assert!(check_target(&r, Some(&namespace("copy", Some("shop"))), &served).is_ok());
}

#[test]
fn another_namespace_gets_the_installations_mover_but_the_drills_own_sandbox_the_policys() {
    use crate::crd::labels;
    let db_image = |w: &mut World| {
        let mut policy = w.policy.clone().unwrap();
        policy.spec.mover.image = Some("registry.example/team-mover:1".into());
        w.policy = Some(policy);
        w.step();
        w.deployments = vec![deployment(SERVER, 1)];
        w.now = ts("2026-01-01T00:10:44Z");
        let p = w.step();
        let j = p
            .create_jobs
            .iter()
            .find(|j| j.name_any() == DB_JOB)
            .cloned();
        j.map(|j| pod_spec(&j).containers[0].image.clone().unwrap())
    };
    // An inviting namespace: the installation's image, whatever the policy says.
    let mut w = ephemeral_only();
    let image = db_image(&mut w).unwrap();
    assert_eq!(image, w.config.mover_db_image);
    // A sandbox the controller made for this namespace: the policy's own choice.
    let mut w = ephemeral_only().drill_sandbox();
    assert_eq!(db_image(&mut w).unwrap(), "registry.example/team-mover:1");
    // The sandbox labels alone (anyone who may label namespaces can set them), or a
    // sandbox of another run than the Restore's owner, are just another namespace.
    let mut w = ephemeral_only();
    let ns = w
        .namespaces
        .iter_mut()
        .find(|n| n.name_any() == "shop-copy")
        .unwrap();
    ns.metadata.labels = Some(BTreeMap::from([
        (labels::SANDBOX.into(), "true".into()),
        (labels::MANAGED_BY.into(), labels::MANAGER.into()),
    ]));
    assert_eq!(db_image(&mut w).unwrap(), w.config.mover_db_image);
    let mut w = ephemeral_only().drill_sandbox();
    w.restore.metadata.owner_references.as_mut().unwrap()[0].uid = "another-run".into();
    assert_eq!(db_image(&mut w).unwrap(), w.config.mover_db_image);
}

#[test]
fn an_uninvited_target_fails_the_restore_and_creates_nothing() {
    let mut w = World::everything();
    w.restore.spec.target_namespace = Some("prod".into());
    w.namespaces.push(namespace("prod", None));
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("TargetNotAllowed"));
    assert!(p.status.sources.is_empty());
    assert!(
        p.create_jobs.is_empty()
            && p.create_pvcs.is_empty()
            && p.create_deployments.is_empty()
            && p.create_secrets.is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// Volumes

#[test]
fn a_volume_is_restored_into_a_new_pvc_shaped_like_the_source() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    })
    .elsewhere();
    let p = w.step();
    let st = &p.status;
    assert_eq!(st.phase, Some(RestorePhase::Running));
    assert_eq!(st.target_namespace.as_deref(), Some("shop-copy"));
    let rp = st.restore_point.as_ref().unwrap();
    assert_eq!(
        (rp.backup.as_str(), rp.policy.as_str(), rp.time.0),
        ("app-1", "app", ts(T0))
    );
    assert_eq!(st.start_time.as_ref().unwrap().0, ts(NOW));
    assert_eq!(
        st.sources.len(),
        1,
        "volumes by default; databases and manifests only when listed"
    );
    assert!(p.events.iter().any(|e| e.reason == "RestoreStarted"));
    // The PVC: recorded size, class and modes; user data, so no owner and no managed-by.
    let c = &p.create_pvcs[0];
    assert_eq!(c.name_any(), "data");
    assert_eq!(c.namespace().as_deref(), Some("shop-copy"));
    let spec = c.spec.as_ref().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
        Quantity("5Gi".into())
    );
    assert!(c.metadata.owner_references.is_none());
    assert_eq!(
        c.labels().get(labels::RESTORE_UID).map(String::as_str),
        Some("r-uid")
    );
    assert!(c.labels().get(labels::MANAGED_BY).is_none());
    // The mover: root, the new PVC read-write, the snapshot and the run.
    let j = &p.create_jobs[0];
    assert_eq!(j.name_any(), VOL_JOB);
    assert_eq!(j.namespace().as_deref(), Some("shop-copy"));
    assert!(
        j.metadata.owner_references.is_none(),
        "an owner in another namespace would be void"
    );
    let a = args(j);
    assert!(
        a.starts_with("mover restore volume --target /data --restore shop/r1 --policy shop/app --snapshot vvvv1111 --source data"),
        "{a}"
    );
    let pod = pod_spec(j);
    let claim = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .unwrap();
    assert_eq!((claim.claim_name.as_str(), claim.read_only), ("data", None));
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(0));
    let env = pod.containers[0].env.as_ref().unwrap();
    let pw = env.iter().find(|e| e.name == "LIFEBOAT_PASSWORD").unwrap();
    assert_eq!(
        pw.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "pw",
        "the store target the caller built (with the mirror) is used"
    );
    let s = &st.sources[0];
    assert_eq!(
        (s.phase, s.job_name.as_deref(), s.target.as_deref()),
        (SourcePhase::Running, Some(VOL_JOB), Some("data"))
    );
    assert_eq!(s.start_time.as_ref().unwrap().0, ts(NOW));
}

#[test]
fn in_its_own_namespace_the_restore_owns_its_movers() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    let p = w.step();
    let j = &p.create_jobs[0];
    assert_eq!(j.namespace().as_deref(), Some("shop"));
    assert_eq!(
        j.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Restore"
    );
    assert!(
        p.create_pvcs[0].metadata.owner_references.is_none(),
        "restored data outlives the Restore"
    );
}

#[test]
fn an_existing_pvc_fails_only_its_source_with_target_exists() {
    let mut w = World::everything();
    w.target_pvcs = vec![pvc("data", "1Gi", false)];
    let p = w.step();
    let vol = &p.status.sources[0];
    assert_eq!(vol.phase, SourcePhase::Failed);
    let f = vol.failure.as_ref().unwrap();
    assert_eq!(f.reason, "TargetExists");
    assert!(f.message.contains("never overwrites"), "{}", f.message);
    assert!(p.create_pvcs.is_empty());
    assert!(p.create_jobs.iter().all(|j| j.name_any() != VOL_JOB));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "SourceFailed" && e.note.contains("TargetExists"))
    );
    assert_eq!(
        p.status.phase,
        Some(RestorePhase::Running),
        "the others go on"
    );
}

#[test]
fn a_pvc_and_job_created_before_a_crash_are_adopted() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    // The first attempt created the PVC (and the Job) but its status write was lost.
    let first = w.plan();
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    w.jobs = first.create_jobs.clone();
    w.now = ts("2026-01-01T00:10:40Z");
    let p = w.step();
    assert!(
        p.create_pvcs.is_empty() && p.create_jobs.is_empty(),
        "nothing twice"
    );
    assert_eq!(p.status.sources[0].phase, SourcePhase::Running);
    assert_eq!(
        p.status.sources[0].start_time.as_ref().unwrap().0,
        ts(NOW),
        "the start the first attempt recorded on the Job, to the microsecond"
    );
    assert_eq!(
        w.jobs[0].annotations().get(STARTED_AT).map(String::as_str),
        Some("2026-01-01T00:10:30.000000Z")
    );
    assert_eq!(
        p.status.start_time.as_ref().unwrap().0,
        ts(NOW),
        "the restore began with its first source, not at the second attempt"
    );
    // A PVC left by a Restore of the same name but another UID is not ours.
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    let mut old = pvc("data", "5Gi", true);
    old.metadata.labels = Some(BTreeMap::from([(
        labels::RESTORE_UID.into(),
        "old-uid".into(),
    )]));
    w.target_pvcs = vec![old];
    assert_eq!(
        w.step().status.sources[0].failure.as_ref().unwrap().reason,
        "TargetExists"
    );
}

#[test]
fn volumes_can_be_chosen_renamed_and_put_on_another_class() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        volumes: Some(VolumeRestore {
            include: vec!["data".into()],
            rename: BTreeMap::from([("data".into(), "data-restored".into())]),
            storage_class_name: Some("slow".into()),
            skip: false,
        }),
        ..RestoreSpec::default()
    });
    w.target_pvcs = vec![pvc("data", "5Gi", false)];
    let p = w.step();
    let c = &p.create_pvcs[0];
    assert_eq!(c.name_any(), "data-restored");
    assert_eq!(
        c.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("slow")
    );
    assert_eq!(p.status.sources[0].target.as_deref(), Some("data-restored"));
    let claim = pod_spec(&p.create_jobs[0])
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|v| v.persistent_volume_claim.clone())
        .unwrap();
    assert_eq!(claim.claim_name, "data-restored");
}

#[test]
fn pvc_size_falls_back_to_the_live_source_then_a_minimum() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    })
    .elsewhere();
    // A Backup from before sizes were recorded.
    w.backups[0].status.as_mut().unwrap().sources[0].volume = None;
    w.source_pvcs = vec![pvc("data", "7Gi", false)];
    let size = |p: &Plan| {
        p.create_pvcs[0]
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0
            .clone()
    };
    let p = w.plan();
    assert_eq!(size(&p), "7Gi");
    assert_eq!(
        p.create_pvcs[0]
            .spec
            .as_ref()
            .unwrap()
            .storage_class_name
            .as_deref(),
        Some("standard")
    );
    w.source_pvcs.clear();
    assert_eq!(size(&w.plan()), FALLBACK_SIZE);
}

#[test]
fn sources_the_restore_point_lacks_are_reported_not_skipped() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        volumes: Some(VolumeRestore {
            include: vec!["data".into(), "logs".into()],
            ..VolumeRestore::default()
        }),
        databases: vec![DatabaseRestore {
            source: "mysql".into(),
            ephemeral: Some(EphemeralDatabase::default()),
            ..DatabaseRestore::default()
        }],
        ..RestoreSpec::default()
    });
    let p = w.step();
    let failed: Vec<_> = p
        .status
        .sources
        .iter()
        .filter(|s| s.phase == SourcePhase::Failed)
        .map(|s| (s.name.as_str(), s.failure.as_ref().unwrap().reason.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("logs", "SourceNotInRestorePoint"),
            ("mysql", "SourceNotInRestorePoint")
        ]
    );
    assert_eq!(
        p.status.phase,
        Some(RestorePhase::Running),
        "data still restores"
    );
    // A source that failed in the Backup says why.
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    {
        let s = &mut w.backups[0].status.as_mut().unwrap().sources[0];
        s.phase = SourcePhase::Failed;
        s.snapshot_id = None;
        s.failure = Some(failure("PVCNotFound", "data is gone"));
    }
    let p = w.step();
    assert_eq!(
        p.status.phase,
        Some(RestorePhase::Failed),
        "its only source"
    );
    assert!(
        p.status
            .failure
            .unwrap()
            .message
            .contains("PVCNotFound: data is gone")
    );
}

#[test]
fn a_spec_selecting_nothing_fails_with_nothing_to_restore() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.backups[0]
        .status
        .as_mut()
        .unwrap()
        .sources
        .retain(|s| s.kind != SourceKind::Volume);
    assert_eq!(reason(&w.step()).as_deref(), Some("NothingToRestore"));
}

// ---------------------------------------------------------------------------------------
// Databases

fn ephemeral_only() -> World {
    World::new(RestoreSpec {
        source: by_backup("app-1"),
        volumes: Some(VolumeRestore {
            skip: true,
            ..VolumeRestore::default()
        }),
        databases: vec![DatabaseRestore {
            source: "pg".into(),
            ephemeral: Some(EphemeralDatabase {
                startup_timeout: Some("2m".into()),
                ..EphemeralDatabase::default()
            }),
            ..DatabaseRestore::default()
        }],
        ..RestoreSpec::default()
    })
    .elsewhere()
}

#[test]
fn an_ephemeral_server_is_started_first_and_the_mover_follows_once_ready() {
    let mut w = ephemeral_only();
    let p = w.step();
    let db = w.source("pg");
    assert_eq!(db.phase, SourcePhase::Running);
    assert!(db.job_name.is_none(), "no mover before the server is ready");
    let d = db.database.as_ref().unwrap();
    assert_eq!(
        d.image.as_deref(),
        Some("postgres:15"),
        "from the dumped version"
    );
    assert_eq!(d.host, format!("{SERVER}.shop-copy.svc"));
    assert_eq!((d.port, d.database.as_deref()), (5432, Some("orders")));
    assert_eq!(d.credentials.as_ref().unwrap().name, SERVER);
    // Secret, Service and Deployment, all named alike, in the target namespace.
    let secret = &p.create_secrets[0];
    assert_eq!(secret.name_any(), SERVER);
    let data = secret.string_data.as_ref().unwrap();
    assert_eq!(
        (data["username"].as_str(), data["password"].as_str()),
        ("postgres", "fresh-secret")
    );
    let svc = &p.create_services[0];
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        5432
    );
    let dep = &p.create_deployments[0];
    assert_eq!(dep.namespace().as_deref(), Some("shop-copy"));
    let c = &dep
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("postgres:15"));
    assert!(c.readiness_probe.as_ref().unwrap().tcp_socket.is_some());
    // The throwaway server runs as the image's own user and meets `restricted`.
    let pod = dep.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        crate::drill::pod_security::violations(pod, crate::drill::pod_security::Level::Restricted),
        Vec::<String>::new()
    );
    assert_eq!(c.security_context.as_ref().unwrap().run_as_user, Some(999));
    let env = c.env.as_ref().unwrap();
    let pw = env.iter().find(|e| e.name == "POSTGRES_PASSWORD").unwrap();
    assert_eq!(
        pw.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        SERVER,
        "never a literal password"
    );
    assert!(
        dep.metadata.owner_references.is_none(),
        "cross-namespace: by label"
    );
    assert!(p.create_jobs.is_empty());
    assert!(p.requeue.unwrap() <= Duration::from_secs(3));

    // Not ready yet: wait.
    w.deployments = vec![deployment(SERVER, 0)];
    w.pods = vec![server_pod(SERVER, Some("ContainerCreating"), 0, None)];
    w.now = ts("2026-01-01T00:10:40Z");
    let p = w.step();
    assert!(p.create_jobs.is_empty() && p.create_deployments.is_empty());
    assert_eq!(w.source("pg").phase, SourcePhase::Running);

    // Ready: the mover restores into it, as the server's superuser, creating the database.
    w.deployments = vec![deployment(SERVER, 1)];
    w.now = ts("2026-01-01T00:10:44Z");
    let p = w.step();
    let j = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == DB_JOB)
        .unwrap();
    let a = args(j);
    assert!(
        a.starts_with(&format!(
            "mover restore database --engine postgres --host {SERVER}.shop-copy.svc --port 5432 --database orders --create-database --no-owner --restore shop/r1 --policy shop/app --snapshot dddd2222 --source pg"
        )),
        "{a}"
    );
    let c = &pod_spec(j).containers[0];
    assert_eq!(c.image.as_deref(), Some(w.config.mover_db_image.as_str()));
    let user = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "LIFEBOAT_DB_USER")
        .unwrap();
    let sel = user
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), (SERVER, "username"));
    let d = w.source("pg").database.unwrap();
    assert_eq!(d.server_ready_time.unwrap().0, ts("2026-01-01T00:10:44Z"));
    assert!(p.events.iter().any(|e| e.reason == "DatabaseServerReady"));
}

#[test]
fn default_server_images_follow_the_dumped_version() {
    let pg = DatabaseEngine::Postgres;
    let my = DatabaseEngine::Mysql;
    assert_eq!(
        default_image(pg, "15.8 (Debian 15.8-0+deb12u1)").as_deref(),
        Some("postgres:15")
    );
    assert_eq!(default_image(pg, "16.2").as_deref(), Some("postgres:16"));
    assert_eq!(default_image(pg, "9.6.24").as_deref(), Some("postgres:9.6"));
    assert_eq!(
        default_image(my, "10.11.6-MariaDB-0+deb12u1").as_deref(),
        Some("mariadb:10.11")
    );
    assert_eq!(default_image(my, "8.0.36").as_deref(), Some("mysql:8.0"));
    assert_eq!(default_image(pg, "devel"), None);
}

#[test]
fn an_unknown_server_version_needs_an_explicit_image() {
    let mut w = ephemeral_only();
    w.backups[0].status.as_mut().unwrap().sources[1].database = None;
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("ServerVersionUnknown"));
    assert!(p.create_deployments.is_empty());
    let mut w = ephemeral_only();
    w.backups[0].status.as_mut().unwrap().sources[1].database = None;
    w.restore.spec.databases[0]
        .ephemeral
        .as_mut()
        .unwrap()
        .image = Some("postgres:15.3".into());
    w.step();
    let d = w.source("pg").database.unwrap();
    assert_eq!(
        (d.engine, d.image.as_deref()),
        (DatabaseEngine::Postgres, Some("postgres:15.3")),
        "the engine from the policy"
    );
}

fn started_server() -> World {
    let mut w = ephemeral_only();
    w.step();
    w.deployments = vec![deployment(SERVER, 0)];
    w
}

#[test]
fn a_server_whose_image_cannot_be_pulled_fails_after_a_short_grace() {
    let mut w = started_server();
    w.pods = vec![server_pod(SERVER, Some("ImagePullBackOff"), 0, None)];
    w.now = ts("2026-01-01T00:10:50Z");
    let p = w.step();
    assert_eq!(
        w.source("pg").phase,
        SourcePhase::Running,
        "within the grace"
    );
    assert!(p.delete_servers.is_empty());
    w.now = ts("2026-01-01T00:11:01Z");
    let p = w.step();
    let db = w.source("pg");
    assert_eq!(db.phase, SourcePhase::Failed);
    let f = db.failure.unwrap();
    assert_eq!(f.reason, "DatabaseStartFailed");
    assert!(
        f.message.contains("ImagePullBackOff") && f.message.contains("postgres:15"),
        "{}",
        f.message
    );
    assert_eq!(p.delete_servers, vec![SERVER.to_string()]);
    assert_eq!(p.status.phase, Some(RestorePhase::Failed));
    assert_eq!(reason(&p).as_deref(), Some("DatabaseStartFailed"));
}

#[test]
fn a_server_that_keeps_crashing_fails_with_its_exit() {
    let mut w = started_server();
    w.pods = vec![server_pod(SERVER, None, 2, Some(1))];
    w.step();
    assert_eq!(w.source("pg").phase, SourcePhase::Running);
    w.pods = vec![server_pod(SERVER, Some("CrashLoopBackOff"), 3, Some(1))];
    w.step();
    let f = w.source("pg").failure.unwrap();
    assert_eq!(f.reason, "DatabaseStartFailed");
    assert!(
        f.message.contains("crashed 3 times") && f.message.contains("wrong ownership"),
        "{}",
        f.message
    );
}

#[test]
fn a_server_never_ready_times_out_with_its_last_state() {
    let mut w = started_server();
    w.pods = vec![server_pod(SERVER, None, 0, None)];
    w.now = ts("2026-01-01T00:12:20Z");
    w.step();
    assert_eq!(w.source("pg").phase, SourcePhase::Running);
    w.now = ts("2026-01-01T00:12:31Z");
    w.step();
    let f = w.source("pg").failure.unwrap();
    assert_eq!(f.reason, "DatabaseStartFailed");
    assert!(
        f.message.contains("not ready after 2m") && f.message.contains("running but not ready"),
        "{}",
        f.message
    );
    // A bad configuration fails at once.
    let mut w = started_server();
    w.pods = vec![server_pod(
        SERVER,
        Some("CreateContainerConfigError"),
        0,
        None,
    )];
    w.step();
    assert_eq!(w.source("pg").phase, SourcePhase::Failed);
}

#[test]
fn an_existing_server_is_restored_into_with_the_given_login() {
    let target = DatabaseTarget {
        host: "pg.prod.svc".into(),
        port: Some(6432),
        database: Some("orders_copy".into()),
        credentials: DatabaseCredentialsRef {
            name: "pg-admin".into(),
            username_key: Some("user".into()),
            ..DatabaseCredentialsRef::default()
        },
        create_database: true,
    };
    let spec = RestoreSpec {
        source: by_backup("app-1"),
        volumes: Some(VolumeRestore {
            skip: true,
            ..VolumeRestore::default()
        }),
        databases: vec![DatabaseRestore {
            source: "pg".into(),
            target: Some(target),
            ..DatabaseRestore::default()
        }],
        ..RestoreSpec::default()
    };
    // Own namespace: the login Secret is used as it is.
    let mut w = World::new(spec.clone());
    let p = w.step();
    assert!(p.create_deployments.is_empty(), "no server of ours");
    let j = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == DB_JOB)
        .unwrap();
    let a = args(j);
    assert!(
        a.contains(
            "--host pg.prod.svc --port 6432 --database orders_copy --create-database --restore"
        ),
        "{a}"
    );
    assert!(
        !a.contains("--no-owner"),
        "an existing server has the roles"
    );
    let env = pod_spec(j).containers[0].env.clone().unwrap();
    let user = env.iter().find(|e| e.name == "LIFEBOAT_DB_USER").unwrap();
    let sel = user
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("pg-admin", "user"));
    // Another namespace: the mover reads the copy in the credential mirror.
    let mut w = World::new(spec).elsewhere();
    let p = w.step();
    let j = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == DB_JOB)
        .unwrap();
    let env = pod_spec(j).containers[0].env.clone().unwrap();
    let pw = env
        .iter()
        .find(|e| e.name == "LIFEBOAT_DB_PASSWORD")
        .unwrap();
    let sel = pw
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (sel.name.as_str(), sel.key.as_str()),
        (mirror_name("r1").as_str(), "db-pg-password")
    );
    let d = w.source("pg").database.unwrap();
    assert_eq!(
        (d.host.as_str(), d.port, d.database.as_deref()),
        ("pg.prod.svc", 6432, Some("orders_copy"))
    );
}

// ---------------------------------------------------------------------------------------
// Manifests

#[test]
fn manifests_wait_until_every_volume_is_done() {
    let mut w = World::everything();
    let p = w.step();
    assert!(p.create_jobs.iter().all(|j| j.name_any() != MAN_JOB));
    assert_eq!(w.source("manifests").phase, SourcePhase::Pending);
    assert!(w.source("manifests").start_time.is_none());
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    w.jobs = vec![job(VOL_JOB, Some((true, "")))];
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Succeeded",
        Some(result(
            "vvvv1111",
            "2026-01-01T00:10:31.250000Z",
            "2026-01-01T00:10:33.500000Z",
            serde_json::json!({"bytesRestored": 300}),
        )),
        None,
    )];
    let p = w.step();
    let j = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == MAN_JOB)
        .unwrap();
    let a = args(j);
    assert!(
        a.starts_with("mover restore manifests --namespace shop --suppress-side-effects --restore shop/r1 --policy shop/app --snapshot mmmm3333 --source manifests"),
        "{a}"
    );
    assert_eq!(w.source("manifests").phase, SourcePhase::Running);
}

// ---------------------------------------------------------------------------------------
// Results

#[test]
fn results_finish_the_restore_with_the_movers_own_times() {
    let mut w = World::everything().elsewhere();
    w.step();
    w.deployments = vec![deployment(SERVER, 1)];
    w.jobs = vec![job(VOL_JOB, None)];
    w.now = ts("2026-01-01T00:10:35Z");
    w.step();
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        mover_pod(
            VOL_JOB,
            "Succeeded",
            Some(result(
                "vvvv1111",
                "2026-01-01T00:10:31.250000Z",
                "2026-01-01T00:10:33.500000Z",
                serde_json::json!({"bytesRestored": 300000}),
            )),
            None,
        ),
        mover_pod(
            DB_JOB,
            "Succeeded",
            Some(result(
                "dddd2222",
                "2026-01-01T00:10:36.000000Z",
                "2026-01-01T00:10:38.000000Z",
                serde_json::json!({"database": "orders", "serverVersion": "15.9", "backupServerVersion": "15.8",
                    "tables": 2, "rows": 1037, "rowCountsMatch": true, "bytesRestored": 24000}),
            )),
            None,
        ),
    ];
    w.now = ts("2026-01-01T00:10:40Z");
    let p = w.step();
    assert_eq!(
        p.status.phase,
        Some(RestorePhase::Running),
        "manifests are next"
    );
    let vol = w.source("data");
    assert_eq!(vol.phase, SourcePhase::Succeeded);
    assert_eq!((vol.files, vol.bytes), (Some(3), Some(300000)));
    assert_eq!(
        vol.mover_start_time.as_ref().unwrap().0,
        ts("2026-01-01T00:10:31.25Z")
    );
    assert_eq!(vol.mover_seconds, Some(2.25));
    assert_eq!(
        vol.duration_seconds,
        Some(3.5),
        "from the unit's start at 00:10:30"
    );
    let db = w.source("pg");
    let d = db.database.as_ref().unwrap();
    assert_eq!(
        db.target.as_deref(),
        Some(format!("{SERVER}.shop-copy.svc:5432/orders").as_str())
    );
    assert_eq!(
        (
            d.tables,
            d.rows,
            d.row_counts_match,
            d.server_version.as_deref()
        ),
        (Some(2), Some(1037), Some(true), Some("15.9"))
    );
    assert!(
        p.events
            .iter()
            .filter(|e| e.reason == "SourceRestored")
            .count()
            == 2
    );

    let man = w.source("manifests");
    w.jobs.push(job(MAN_JOB, Some((true, ""))));
    w.pods.push(mover_pod(
        MAN_JOB,
        "Succeeded",
        Some(result(
            "mmmm3333",
            "2026-01-01T00:10:41.000000Z",
            "2026-01-01T00:10:42.125000Z",
            serde_json::json!({"applied": 6, "existing": 1, "dropped": 1}),
        )),
        None,
    ));
    w.now = ts("2026-01-01T00:10:50Z");
    let p = w.step();
    assert!(man.start_time.is_some());
    assert_eq!(p.status.phase, Some(RestorePhase::Succeeded));
    assert_eq!(p.finished, Some(RestorePhase::Succeeded));
    let m = w.source("manifests").manifests.unwrap();
    assert_eq!((m.applied, m.existing, m.dropped), (6, 1, 1));
    // The restore ended when the last mover ended, not when the controller noticed.
    let st = &p.status;
    assert_eq!(
        st.completion_time.as_ref().unwrap().0,
        ts("2026-01-01T00:10:42.125Z")
    );
    assert_eq!(st.duration_seconds, Some(12.125));
    assert_eq!(st.duration.as_deref(), Some("12s"));
    let c = conditions::get(&st.conditions, condition::COMPLETE).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "Succeeded")
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "RestoreSucceeded" && !e.warning)
    );
    // Cleanup across namespaces: Jobs and the credential copy go; the server stays.
    assert_eq!(p.delete_secrets, vec![mirror_name("r1")]);
    let mut deleted = p.delete_jobs.clone();
    deleted.sort();
    assert_eq!(deleted, [DB_JOB, MAN_JOB, VOL_JOB]);
    assert!(
        p.delete_servers.is_empty(),
        "the restored database stays while the Restore exists"
    );
    // Finished restores never change again, not even after a spec edit.
    w.restore.metadata.generation = Some(2);
    w.restore.spec.manifests = None;
    let again = w.plan();
    assert_eq!(again.status, p.status);
    assert!(again.finished.is_none() && again.events.is_empty() && again.create_jobs.is_empty());
}

#[test]
fn a_failing_source_makes_the_restore_partially_failed_with_its_reason() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        databases: vec![DatabaseRestore {
            source: "pg".into(),
            target: Some(DatabaseTarget {
                host: "pg".into(),
                ..DatabaseTarget::default()
            }),
            ..DatabaseRestore::default()
        }],
        ..RestoreSpec::default()
    });
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((false, "BackoffLimitExceeded"))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        mover_pod(
            VOL_JOB,
            "Failed",
            Some(failed(
                "SnapshotMissing",
                "snapshot vvvv1111 is not in the repository",
            )),
            None,
        ),
        mover_pod(
            DB_JOB,
            "Succeeded",
            Some(result(
                "dddd2222",
                "2026-01-01T00:10:31Z",
                "2026-01-01T00:10:32Z",
                serde_json::json!({
                "database": "orders", "rowCountsMatch": false,
                "rowCountMismatches": ["orders.public.t: backup 5, restored 4"]}),
            )),
            None,
        ),
    ];
    let p = w.step();
    assert_eq!(p.status.phase, Some(RestorePhase::PartiallyFailed));
    let vol = w.source("data");
    assert_eq!(vol.failure.as_ref().unwrap().reason, "SnapshotMissing");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "SourceFailed" && e.note.contains("SnapshotMissing"))
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "RestorePartiallyFailed" && e.warning)
    );
    // Differing row counts do not undo a restore, but they are loud.
    let db = w.source("pg");
    assert_eq!(db.phase, SourcePhase::Succeeded);
    assert_eq!(db.database.as_ref().unwrap().row_counts_match, Some(false));
    assert!(p.events.iter().any(|e| e.reason == "RowCountMismatch"
        && e.warning
        && e.note.contains("backup 5, restored 4")));
}

#[test]
fn a_manifest_restore_that_applied_some_objects_reports_them_and_fails() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        volumes: Some(VolumeRestore {
            skip: true,
            ..VolumeRestore::default()
        }),
        manifests: Some(ManifestRestore::default()),
        ..RestoreSpec::default()
    });
    w.step();
    let mut r = MoverResult::parse(&failed(
        "ApplyFailed",
        "1 object(s) not restored (5 applied)",
    ))
    .unwrap();
    r.details.insert("applied".into(), 5.into());
    r.details.insert(
        "failed".into(),
        serde_json::json!(["Widget.example.com/w: not served"]),
    );
    w.jobs = vec![job(MAN_JOB, Some((false, "BackoffLimitExceeded")))];
    w.pods = vec![mover_pod(MAN_JOB, "Failed", Some(r.to_message()), None)];
    let p = w.step();
    let m = w.source("manifests");
    assert_eq!(m.failure.as_ref().unwrap().reason, "ApplyFailed");
    let info = m.manifests.unwrap();
    assert_eq!((info.applied, info.failed.len()), (5, 1));
    assert_eq!(
        p.status.phase,
        Some(RestorePhase::Failed),
        "its only source"
    );
}

#[test]
fn a_mover_that_cannot_start_fails_fast_with_the_kubelet_reason() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    w.jobs = vec![job(VOL_JOB, None)];
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Pending",
        None,
        Some("CreateContainerConfigError"),
    )];
    let p = w.step();
    let f = p.status.sources[0].failure.as_ref().unwrap();
    assert_eq!(f.reason, "MoverCannotStart");
    assert!(f.message.contains("not found"));
    assert_eq!(p.delete_jobs, vec![VOL_JOB.to_string()]);
}

#[test]
fn a_failed_pod_without_our_result_still_gives_a_reason() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    w.jobs = vec![job(VOL_JOB, Some((false, "DeadlineExceeded")))];
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("MoverDeadlineExceeded"));
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    w.jobs = vec![job(VOL_JOB, Some((true, "")))];
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Succeeded",
        Some("not json".into()),
        None,
    )];
    assert_eq!(reason(&w.step()).as_deref(), Some("MoverResultMissing"));
}

#[test]
fn a_policy_deleted_mid_restore_fails_what_is_left_to_start() {
    let mut w = World::everything();
    w.step();
    w.policy = None;
    w.store = None;
    w.jobs = vec![job(VOL_JOB, None)];
    let p = w.step();
    assert_eq!(
        w.source("data").phase,
        SourcePhase::Running,
        "a running mover goes on"
    );
    assert_eq!(
        w.source("pg").failure.as_ref().map(|f| f.reason.as_str()),
        Some("PolicyNotFound")
    );
    assert_eq!(p.status.phase, Some(RestorePhase::Running));
}

#[test]
fn damaged_repository_data_fails_the_source_at_the_first_pod() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    w.jobs = vec![job(VOL_JOB, None)];
    let message = "repository data is damaged: blob 1a2b3c4d: authentication failed (in pack \
                   1a2b...); affected: /data/orders.db";
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Failed",
        Some(failed("RepositoryCorrupted", message)),
        None,
    )];
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("RepositoryCorrupted"));
    assert_eq!(p.delete_jobs, vec![VOL_JOB.to_string()]);
    assert!(
        w.source("data")
            .failure
            .as_ref()
            .is_some_and(|f| f.message.contains("/data/orders.db")),
        "the files the damage affects reach the Restore's status"
    );
}

#[test]
fn a_permanent_mover_failure_is_not_retried() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    // The Job would retry (backoffLimit), but the first pod's reason is final.
    w.jobs = vec![job(VOL_JOB, None)];
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Failed",
        Some(failed(
            "SnapshotMissing",
            "snapshot vvvv1111 is not in the repository",
        )),
        None,
    )];
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("SnapshotMissing"));
    assert_eq!(p.delete_jobs, vec![VOL_JOB.to_string()]);
    // A passing fault is left to the Job's retries.
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    w.jobs = vec![job(VOL_JOB, None)];
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Failed",
        Some(failed("StorageUnreachable", "connection refused")),
        None,
    )];
    let p = w.step();
    assert_eq!(w.source("data").phase, SourcePhase::Running);
    assert!(p.delete_jobs.is_empty());
}

#[test]
fn pods_refused_at_admission_fail_fast_instead_of_hanging() {
    // A mover Job whose pods a ResourceQuota refuses never gets one.
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    let mut j = job(VOL_JOB, None);
    j.metadata.creation_timestamp = Some(Time(ts(NOW)));
    w.jobs = vec![j];
    w.now = ts("2026-01-01T00:11:30Z");
    w.step();
    assert_eq!(
        w.source("data").phase,
        SourcePhase::Running,
        "a minute is normal"
    );
    w.now = ts("2026-01-01T00:12:31Z");
    let p = w.step();
    let f = w.source("data").failure.unwrap();
    assert_eq!(f.reason, "MoverCannotStart");
    assert!(f.message.contains("ResourceQuota"), "{}", f.message);
    assert_eq!(p.delete_jobs, vec![VOL_JOB.to_string()]);

    // An ephemeral server's Deployment says so in a condition.
    let mut w = started_server();
    w.deployments[0].status.as_mut().unwrap().conditions =
        Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some(
                "pods \"db-r1-pg-x\" is forbidden: failed quota: q: must specify limits.memory"
                    .into(),
            ),
            ..Default::default()
        }]);
    let p = w.step();
    let f = w.source("pg").failure.unwrap();
    assert_eq!(f.reason, "DatabaseStartFailed");
    assert!(
        f.message.contains("must specify limits.memory"),
        "{}",
        f.message
    );
    assert_eq!(p.delete_servers, vec![SERVER.to_string()]);
}

/// Every kind of mover Job a Restore runs, pinned as rendered (see
/// `jobs::mover::snapshots`): into another namespace, so credentials come from the mirror.
#[test]
fn mover_jobs_of_each_kind_match_their_snapshots() {
    use crate::jobs::mover::snapshots::assert_job;
    let spec = RestoreSpec {
        source: by_backup("app-1"),
        databases: vec![DatabaseRestore {
            source: "pg".into(),
            target: Some(DatabaseTarget {
                host: "pg.prod.svc".into(),
                port: Some(6432),
                database: Some("orders_copy".into()),
                credentials: DatabaseCredentialsRef {
                    name: "pg-admin".into(),
                    ..DatabaseCredentialsRef::default()
                },
                create_database: true,
            }),
            ..DatabaseRestore::default()
        }],
        manifests: Some(ManifestRestore {
            kinds: vec!["Deployment.apps".into(), "ConfigMap".into()],
            suppress_side_effects: true,
            scale_to_zero: true,
        }),
        ..RestoreSpec::default()
    };
    let mut w = World::new(spec).elsewhere();
    let p = w.step();
    let find = |p: &Plan, name: &str| {
        p.create_jobs
            .iter()
            .find(|j| j.name_any() == name)
            .cloned()
            .unwrap_or_else(|| panic!("no Job {name}"))
    };
    assert_job("restore-volume", &find(&p, VOL_JOB));
    assert_job("restore-database", &find(&p, DB_JOB));
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    w.jobs = vec![job(VOL_JOB, Some((true, ""))), job(DB_JOB, None)];
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Succeeded",
        Some(result(
            "vvvv1111",
            "2026-01-01T00:10:31.250000Z",
            "2026-01-01T00:10:33.500000Z",
            serde_json::json!({"bytesRestored": 300}),
        )),
        None,
    )];
    let p = w.step();
    assert_job("restore-manifests", &find(&p, MAN_JOB));
}

mod cancel;
mod store;
#[test]
fn movers_restoring_into_a_drill_sandbox_carry_its_token_and_others_do_not() {
    let mut w = World::everything().elsewhere();
    let p = w.step();
    assert!(!p.create_jobs.is_empty());
    for j in &p.create_jobs {
        assert!(
            !j.labels().contains_key(labels::SANDBOX_TOKEN),
            "not a sandbox: no token"
        );
    }
    // The sandbox label alone makes no sandbox.
    let mut w = World::everything().elsewhere();
    let sb = w
        .namespaces
        .iter_mut()
        .find(|n| n.name_any() == "shop-copy")
        .unwrap();
    sb.metadata.uid = Some("sandbox-uid".into());
    sb.metadata.labels = Some(BTreeMap::from([(labels::SANDBOX.into(), "true".into())]));
    let p = w.step();
    assert!(!p.create_jobs.is_empty());
    for j in &p.create_jobs {
        assert!(
            !j.labels().contains_key(labels::SANDBOX_TOKEN),
            "labels only"
        );
    }
    let mut w = World::everything().elsewhere().drill_sandbox();
    let p = w.step();
    assert!(!p.create_jobs.is_empty());
    for j in &p.create_jobs {
        let pod_labels = j
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone();
        assert_eq!(
            pod_labels.unwrap().get(labels::SANDBOX_TOKEN),
            Some(&crate::jobs::sandbox_token("sandbox-uid")),
            "{}",
            j.name_any()
        );
    }
}

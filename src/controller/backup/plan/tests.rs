//! Scenario tests of the Backup run plan: each test builds the observed world a real
//! reconcile would see at one step of a run.

use super::*;
use crate::controller::access::observe::testing::{owned_by, uid};
use crate::crd::backup::{BackupSpec, PolicyRef};
use crate::crd::backup_policy::{
    BackupPolicySpec, DatabaseEngine, Sources, StoreRef, VolumeSource,
};
use crate::crd::common::{DatabaseCredentialsRef, Retention, ScheduleSpec, condition};
use crate::crd::store::ChecksumMode;
use crate::jobs::mover::SecretKey;
use crate::jobs::result::RESULT_VERSION;
use crate::volume::VolumeSnapshotStatus;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-01-01T00:10:30Z";

fn policy(copy: CopyMethod) -> BackupPolicy {
    let mut p = BackupPolicy::new(
        "orders",
        BackupPolicySpec {
            store_ref: StoreRef {
                name: "s3".into(),
                ..StoreRef::default()
            },
            schedule: ScheduleSpec {
                cron: "*/5 * * * *".into(),
                ..ScheduleSpec::default()
            },
            sources: Sources {
                volumes: vec![VolumeSource {
                    pvc_name: Some("data".into()),
                    copy_method: copy,
                    ..VolumeSource::default()
                }],
                databases: vec![DatabaseSource {
                    name: "pg".into(),
                    engine: DatabaseEngine::Postgres,
                    host: "pg.shop.svc".into(),
                    database: Some("orders".into()),
                    credentials: DatabaseCredentialsRef {
                        name: "pg-login".into(),
                        ..DatabaseCredentialsRef::default()
                    },
                    ..DatabaseSource::default()
                }],
                manifests: None,
            },
            ..BackupPolicySpec::default()
        },
    );
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("p-uid".into());
    p
}

fn backup(status: Option<BackupStatus>) -> Backup {
    let mut b = Backup::new(
        "orders-202601010010",
        BackupSpec {
            policy_ref: PolicyRef {
                name: "orders".into(),
            },
            ..BackupSpec::default()
        },
    );
    b.metadata.namespace = Some("shop".into());
    b.metadata.uid = Some("b-uid".into());
    b.status = status;
    b
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

fn pvc(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            storage_class_name: Some("fast".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("5Gi".into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn snapshot(name: &str, ready: bool, error: Option<&str>) -> VolumeSnapshot {
    let mut s = VolumeSnapshot::new(name, VolumeSnapshotSpec::default());
    s.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:10:01Z")));
    s.status = Some(VolumeSnapshotStatus {
        ready_to_use: Some(ready),
        restore_size: Some(Quantity("3Gi".into())),
        error: error.map(|m| crate::volume::VolumeSnapshotError {
            message: Some(m.into()),
            time: None,
        }),
        ..VolumeSnapshotStatus::default()
    });
    s
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

fn pod(job: &str, phase: &str, terminated: Option<(i32, String)>, waiting: Option<&str>) -> Pod {
    owned_by(pod_of(job, phase, terminated, waiting), job)
}

fn pod_of(job: &str, phase: &str, terminated: Option<(i32, String)>, waiting: Option<&str>) -> Pod {
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
                    terminated: terminated.map(|(code, message)| ContainerStateTerminated {
                        exit_code: code,
                        message: Some(message),
                        ..ContainerStateTerminated::default()
                    }),
                    waiting: waiting.map(|r| ContainerStateWaiting {
                        reason: Some(r.into()),
                        message: Some("secret \"pg-login\" has no key \"password\"".into()),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn ok_result(id: &str, added: u64) -> String {
    MoverResult {
        v: RESULT_VERSION,
        snapshot_id: Some(id.into()),
        files: Some(10),
        bytes_read: Some(1000),
        bytes_added: Some(added),
        duration_seconds: Some(2.5),
        ..MoverResult::default()
    }
    .to_message()
}

fn failed_result(reason: &str, msg: &str) -> String {
    MoverResult {
        v: RESULT_VERSION,
        failure: Some(failure(reason, msg)),
        ..MoverResult::default()
    }
    .to_message()
}

struct World {
    backup: Backup,
    policy: BackupPolicy,
    store: Option<StoreTarget>,
    blocker: Option<Failure>,
    pvcs: Vec<PersistentVolumeClaim>,
    snapshots: Vec<VolumeSnapshot>,
    jobs: Vec<Job>,
    pods: Vec<Pod>,
    consumers: BTreeMap<String, String>,
    busy: bool,
    config: Config,
}

impl World {
    fn new(copy: CopyMethod, status: Option<BackupStatus>) -> Self {
        World {
            backup: backup(status),
            policy: policy(copy),
            store: Some(store()),
            blocker: None,
            pvcs: vec![pvc("data")],
            snapshots: vec![],
            jobs: vec![],
            pods: vec![],
            consumers: BTreeMap::new(),
            busy: false,
            config: Config::for_tests(),
        }
    }

    fn plan(&self) -> Plan {
        plan(&Observed {
            backup: &self.backup,
            policy: Some(&self.policy),
            store: self.store.clone(),
            start_blocker: self.blocker.clone(),
            pvcs: &self.pvcs,
            snapshots: &self.snapshots,
            jobs: &self.jobs,
            pods: &self.pods,
            consumers: &self.consumers,
            maintenance_busy: self.busy,
            config: &self.config,
            now: ts(NOW),
        })
    }

    /// Feeds the plan's status back, as the next reconcile would read it.
    fn step(&mut self) -> Plan {
        let p = self.plan();
        self.backup.status = Some(p.status.clone());
        p
    }
}

const VOL_JOB: &str = "orders-202601010010-vol-data";
const DB_JOB: &str = "orders-202601010010-db-pg";

#[test]
fn starting_fixes_the_units_and_takes_the_first_step_of_each() {
    let mut w = World::new(CopyMethod::Snapshot, None);
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::Running));
    let names: Vec<_> = p
        .status
        .sources
        .iter()
        .map(|s| (s.kind, s.name.as_str(), s.phase))
        .collect();
    assert_eq!(
        names,
        [
            (SourceKind::Volume, "data", SourcePhase::Pending),
            (SourceKind::Database, "pg", SourcePhase::Running),
        ]
    );
    // Volume: a VolumeSnapshot of the live PVC first.
    assert_eq!(p.create_snapshots.len(), 1);
    let vs = &p.create_snapshots[0];
    assert_eq!(vs.name_any(), VOL_JOB);
    assert_eq!(
        vs.spec.source.persistent_volume_claim_name.as_deref(),
        Some("data")
    );
    assert_eq!(
        vs.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Backup"
    );
    // Database: the mover Job straight away, with the database image and secret refs.
    assert_eq!(p.create_jobs.len(), 1);
    let j = &p.create_jobs[0];
    assert_eq!(j.name_any(), DB_JOB);
    let c = &j
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some(w.config.mover_db_image.as_str()));
    let args = c.args.clone().unwrap().join(" ");
    assert!(args.contains("mover backup database --source pg --engine postgres --host pg.shop.svc --port 5432 --database orders"), "{args}");
    assert!(
        args.contains("--policy shop/orders --backup orders-202601010010"),
        "{args}"
    );
    let pw = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "LIFEBOAT_DB_PASSWORD")
        .unwrap();
    assert_eq!(
        pw.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "pg-login"
    );
    assert!(p.events.iter().any(|e| e.reason == "BackupStarted"));
    assert!(p.finished.is_none());
}

#[test]
fn a_ready_snapshot_becomes_a_temporary_pvc_read_by_the_mover() {
    let mut w = World::new(CopyMethod::Snapshot, None);
    w.step();
    w.snapshots = vec![snapshot(VOL_JOB, true, None)];
    w.jobs = vec![job(DB_JOB, None)];
    let p = w.step();
    assert_eq!(p.create_pvcs.len(), 1);
    let tmp = &p.create_pvcs[0];
    assert_eq!(tmp.name_any(), VOL_JOB);
    let spec = tmp.spec.as_ref().unwrap();
    let ds = spec.data_source.as_ref().unwrap();
    assert_eq!(
        (ds.kind.as_str(), ds.name.as_str()),
        ("VolumeSnapshot", VOL_JOB)
    );
    assert_eq!(
        spec.storage_class_name.as_deref(),
        Some("fast"),
        "the source PVC's class"
    );
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
        Quantity("3Gi".into())
    );
    let j = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == VOL_JOB)
        .unwrap();
    let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let claim = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .unwrap();
    assert_eq!(
        claim.claim_name, VOL_JOB,
        "reads the copy, never the live volume"
    );
    assert_eq!(claim.read_only, Some(true));
    assert!(
        p.delete_snapshots.is_empty() && p.delete_pvcs.is_empty(),
        "nothing is cleaned up mid-run"
    );
}

#[test]
fn results_finish_the_run_and_temporaries_are_removed() {
    let mut w = World::new(CopyMethod::Snapshot, None);
    w.step();
    w.snapshots = vec![snapshot(VOL_JOB, true, None)];
    w.jobs = vec![job(DB_JOB, None)];
    w.step();
    let mut tmp = pvc(VOL_JOB);
    tmp.metadata.labels = Some(BTreeMap::from([(
        labels::BACKUP.to_string(),
        "orders-202601010010".to_string(),
    )]));
    w.pvcs.push(tmp);
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(
            VOL_JOB,
            "Succeeded",
            Some((0, ok_result("aaaa", 600))),
            None,
        ),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 400))), None),
    ];
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::Succeeded));
    assert_eq!(p.finished, Some(BackupPhase::Succeeded));
    let ids: Vec<_> = p
        .status
        .sources
        .iter()
        .map(|s| s.snapshot_id.as_deref())
        .collect();
    assert_eq!(ids, [Some("aaaa"), Some("bbbb")]);
    let totals = p.status.totals.as_ref().unwrap();
    assert_eq!((totals.files, totals.bytes_added), (20, 1000));
    assert_eq!(p.status.restore_point_time, p.status.start_time);
    assert_eq!(p.delete_snapshots, vec![VOL_JOB.to_string()]);
    assert_eq!(p.delete_pvcs, vec![VOL_JOB.to_string()]);
    assert_eq!(
        p.delete_jobs,
        vec![VOL_JOB.to_string()],
        "its pod would hold the PVC"
    );
    let c = conditions::get(&p.status.conditions, condition::COMPLETE).unwrap();
    assert_eq!(c.reason, "Succeeded");
    // The next reconcile of the finished run does nothing new (idempotent, no re-finish).
    w.snapshots.clear();
    w.pvcs.retain(|c| c.name_any() == "data");
    let again = w.plan();
    assert!(again.finished.is_none());
    assert!(again.create_jobs.is_empty() && again.events.is_empty());
}

#[test]
fn one_failing_source_makes_the_run_partially_failed_with_its_reason() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((false, "BackoffLimitExceeded"))),
    ];
    w.pods = vec![
        pod(VOL_JOB, "Succeeded", Some((0, ok_result("aaaa", 1))), None),
        pod(
            DB_JOB,
            "Failed",
            Some((
                3,
                failed_result(
                    "DatabaseUnreachable",
                    "connection refused by pg.shop.svc:5432",
                ),
            )),
            None,
        ),
    ];
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::PartiallyFailed));
    let db = p.status.sources.iter().find(|s| s.name == "pg").unwrap();
    assert_eq!(db.phase, SourcePhase::Failed);
    assert_eq!(db.failure.as_ref().unwrap().reason, "DatabaseUnreachable");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "SourceFailed" && e.note.contains("connection refused"))
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "BackupPartiallyFailed" && e.warning)
    );
}

#[test]
fn a_failed_pod_without_our_result_still_gives_a_reason() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((false, "DeadlineExceeded"))),
        job(DB_JOB, Some((false, "BackoffLimitExceeded"))),
    ];
    w.pods = vec![pod(
        DB_JOB,
        "Failed",
        Some((137, "panicked at ...".into())),
        None,
    )];
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::Failed));
    let reasons: Vec<_> = p
        .status
        .sources
        .iter()
        .map(|s| s.failure.as_ref().unwrap().reason.as_str())
        .collect();
    assert_eq!(reasons, ["MoverDeadlineExceeded", "MoverFailed"]);
    let db = &p.status.sources[1];
    assert!(
        db.failure
            .as_ref()
            .unwrap()
            .message
            .contains("exit code 137")
    );
    assert_eq!(
        p.status.failure.as_ref().unwrap().reason,
        "MoverDeadlineExceeded"
    );
}

#[test]
fn a_vanished_job_fails_its_source_instead_of_running_forever() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step(); // both Jobs created, units Running
    w.jobs = vec![job(VOL_JOB, Some((true, "")))];
    w.pods = vec![pod(
        VOL_JOB,
        "Succeeded",
        Some((0, ok_result("aaaa", 1))),
        None,
    )];
    let p = w.step();
    let db = p.status.sources.iter().find(|s| s.name == "pg").unwrap();
    assert_eq!(db.failure.as_ref().unwrap().reason, "JobVanished");
    assert_eq!(p.status.phase, Some(BackupPhase::PartiallyFailed));
}

#[test]
fn a_job_created_before_a_crash_is_adopted_not_recreated() {
    let mut w = World::new(CopyMethod::Direct, None);
    let first = w.plan(); // plan created the Jobs; the status write was lost (crash)
    w.jobs = first.create_jobs.clone();
    let p = w.step();
    assert!(p.create_jobs.is_empty(), "no second Job");
    assert!(
        p.status
            .sources
            .iter()
            .all(|s| s.phase == SourcePhase::Running)
    );
}

#[test]
fn a_mover_that_cannot_start_fails_fast_with_the_kubelet_reason() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step();
    w.jobs = vec![job(VOL_JOB, None), job(DB_JOB, None)];
    w.pods = vec![pod(
        DB_JOB,
        "Pending",
        None,
        Some("CreateContainerConfigError"),
    )];
    let p = w.step();
    let db = p.status.sources.iter().find(|s| s.name == "pg").unwrap();
    let f = db.failure.as_ref().unwrap();
    assert_eq!(f.reason, "MoverCannotStart");
    assert!(f.message.contains("has no key"), "{}", f.message);
    assert_eq!(p.delete_jobs, vec![DB_JOB.to_string()]);
    assert_eq!(
        p.status.phase,
        Some(BackupPhase::Running),
        "the volume is still running"
    );
}

#[test]
fn mover_placement_follows_the_policy() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.policy.spec.mover.node_selector =
        BTreeMap::from([("pool".to_string(), "backup".to_string())]);
    let p = w.step();
    for j in &p.create_jobs {
        let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(
            pod.node_selector.as_ref().unwrap()["pool"],
            "backup",
            "{}",
            j.name_any()
        );
    }
}

#[test]
fn direct_copies_mount_the_live_volume_read_only_on_its_node() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.consumers = BTreeMap::from([("data".to_string(), "node-7".to_string())]);
    let p = w.step();
    let j = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == VOL_JOB)
        .unwrap();
    let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("node-7"));
    let claim = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .unwrap();
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("data", Some(true))
    );
    assert!(p.create_snapshots.is_empty());
}

#[test]
fn snapshot_errors_and_timeouts_fail_the_volume_and_clean_up() {
    let mut w = World::new(CopyMethod::Snapshot, None);
    w.step();
    w.snapshots = vec![snapshot(
        VOL_JOB,
        false,
        Some("driver does not support snapshots"),
    )];
    let p = w.step();
    let vol = &p.status.sources[0];
    assert_eq!(vol.failure.as_ref().unwrap().reason, "SnapshotFailed");
    assert_eq!(p.delete_snapshots, vec![VOL_JOB.to_string()]);

    let mut w = World::new(CopyMethod::Snapshot, None);
    w.step();
    let mut slow = snapshot(VOL_JOB, false, None);
    slow.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:10:00Z")));
    w.snapshots = vec![slow.clone()];
    w.jobs = vec![job(DB_JOB, None)];
    assert_eq!(
        w.plan().status.sources[0].phase,
        SourcePhase::Pending,
        "still within the timeout"
    );
    slow.metadata.creation_timestamp = Some(Time(ts("2025-12-31T23:50:00Z")));
    w.snapshots = vec![slow];
    let p = w.step();
    assert_eq!(
        p.status.sources[0].failure.as_ref().unwrap().reason,
        "SnapshotTimeout"
    );
    assert_eq!(p.delete_snapshots, vec![VOL_JOB.to_string()]);
}

#[test]
fn human_sizes() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
}

#[test]
fn what_a_restore_needs_is_recorded_with_each_source() {
    let mut w = World::new(CopyMethod::Direct, None);
    let p = w.step();
    let vol = p.status.sources[0].volume.as_ref().unwrap();
    assert_eq!(vol.storage, Some(Quantity("5Gi".into())));
    assert_eq!(vol.storage_class_name.as_deref(), Some("fast"));
    let db = p.status.sources[1].database.as_ref().unwrap();
    assert_eq!(
        (
            db.engine,
            db.database.as_deref(),
            db.server_version.as_deref()
        ),
        (DatabaseEngine::Postgres, Some("orders"), None)
    );
    let mut r = MoverResult::parse(&ok_result("bbbb", 1)).unwrap();
    r.details
        .insert("serverVersion".into(), serde_json::json!("15.8 (Debian)"));
    w.jobs = vec![job(DB_JOB, Some((true, "")))];
    w.pods = vec![pod(DB_JOB, "Succeeded", Some((0, r.to_message())), None)];
    let p = w.step();
    let db = p.status.sources[1].database.as_ref().unwrap();
    assert_eq!(db.server_version.as_deref(), Some("15.8 (Debian)"));
}

/// Every kind of Job a Backup runs, pinned as rendered (see `jobs::mover::snapshots`).
#[test]
fn mover_jobs_of_each_kind_match_their_snapshots() {
    use crate::crd::backup_policy::ManifestSource;
    use crate::jobs::mover::snapshots::assert_job;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let mut w = World::new(CopyMethod::Direct, None);
    w.consumers = BTreeMap::from([("data".to_string(), "node-7".to_string())]);
    w.policy.spec.sources.volumes[0].exclude = vec!["*.tmp".into(), "cache/".into()];
    w.policy.spec.sources.databases[0].extra_args = vec!["--no-comments".into()];
    w.policy.spec.sources.manifests = Some(ManifestSource {
        kinds: vec!["Deployment.apps".into(), "ConfigMap".into()],
        selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "shop".to_string())])),
            ..LabelSelector::default()
        }),
        include_secrets: true,
    });
    w.policy.spec.retention = Retention {
        keep_last: Some(3),
        keep_daily: Some(7),
        ..Retention::default()
    };
    let p = w.step();
    let mut names = vec![];
    for j in &p.create_jobs {
        let kind = match j.name_any().as_str() {
            VOL_JOB => "backup-volume",
            DB_JOB => "backup-database",
            _ => "backup-manifests",
        };
        assert_job(kind, j);
        names.push(j.name_any());
    }
    assert_eq!(p.create_jobs.len(), 3, "{names:?}");
    w.jobs = names.iter().map(|n| job(n, Some((true, "")))).collect();
    w.pods = names
        .iter()
        .map(|n| pod(n, "Succeeded", Some((0, ok_result("aaaa", 1))), None))
        .collect();
    w.step();
    let p = w.step();
    let rj = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == retention_job_name("orders-202601010010"))
        .expect("a retention Job");
    assert_job("retention", rj);
}

mod cancel;
mod deadlines;
mod store;

#[test]
fn retention_says_pruned_only_when_it_pruned() {
    assert_eq!(
        retention_message(Some(0), None),
        "every snapshot is still kept by the rules: nothing forgotten, no prune"
    );
    let m = retention_message(Some(2), Some(3 * 1024 * 1024));
    assert!(m.starts_with("forgot 2 snapshot(s) and pruned 3"), "{m}");
    assert_eq!(
        retention_message(Some(1), None),
        "forgot 1 snapshot(s) and pruned unreferenced data"
    );
    assert!(retention_message(None, None).contains("no figures"));
}

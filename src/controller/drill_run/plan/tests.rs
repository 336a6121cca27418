//! Scenario tests of the drill run's phase machine: each test builds the world a real
//! reconcile would see at one step of a run (and `World::step` feeds the plan's status
//! back, as the next reconcile reads it).

use super::*;
use crate::controller::access::observe::testing::{owned_by, uid};
use crate::controller::drill_run::checks::{env_name, parse_db_target};
use crate::controller::drill_run::sandbox::{
    ISOLATION_POLICY, MOVER_POLICY, POD_SECURITY_CHECK, PSA_AUDIT, PSA_ENFORCE, PSA_WARN,
    QUOTA_NAME, Workload, token,
};
use crate::crd::backup::{BackupPhase, BackupSpec, BackupStatus, PolicyRef, SourceResult};
use crate::crd::backup_policy::DatabaseEngine;
use crate::crd::backup_policy::{
    BackupPolicySpec, DatabaseSource, Sources, StoreRef, VolumeSource,
};
use crate::crd::common::{DatabaseCredentialsRef, ScheduleSpec};
use crate::crd::dr_drill::{
    Check, CommandCheck, DrillObjectives, DrillRunSpec, FileChecksum, FilesCheck, FreshnessCheck,
    Sandbox, SqlCheck,
};
use crate::crd::dr_drill::{SandboxNetworkPolicy, SandboxPodSecurity};
use crate::crd::restore::ALLOW_RESTORE_FROM;
use crate::crd::restore::{RestoreStatus, RestoredDatabase, RestoredSource};
use crate::crd::store::S3Spec;
use crate::jobs::result::RESULT_VERSION;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

pub(super) fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const RUN: &str = "orders-202611221500";
const SANDBOX: &str = "drill-shop-orders-202611221500";
const T0: &str = "2026-11-22T15:00:00Z";

pub(super) fn drill_spec() -> DRDrillSpec {
    DRDrillSpec {
        policy_ref: LocalRef {
            name: "orders".into(),
        },
        schedule: ScheduleSpec {
            cron: "0 15 * * *".into(),
            ..ScheduleSpec::default()
        },
        checks: vec![
            Check {
                name: "rows".into(),
                sql: Some(SqlCheck {
                    database: "pg".into(),
                    matches_backup: true,
                    ..SqlCheck::default()
                }),
                ..Check::default()
            },
            Check {
                name: "fresh".into(),
                freshness: Some(FreshnessCheck {
                    database: "pg".into(),
                    query: "select max(created_at) from orders".into(),
                }),
                ..Check::default()
            },
            Check {
                name: "files".into(),
                files: Some(FilesCheck {
                    volume: "data".into(),
                    exist: vec!["hello.txt".into()],
                    checksums: vec![FileChecksum {
                        path: "docs/blob.bin".into(),
                        sha256: None,
                    }],
                }),
                ..Check::default()
            },
            Check {
                name: "app".into(),
                command: Some(CommandCheck {
                    image: "debian".into(),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        "test -s /volumes/data/hello.txt".into(),
                    ],
                    volumes: vec!["data".into()],
                    ..CommandCheck::default()
                }),
                timeout: Some("1m".into()),
                ..Check::default()
            },
        ],
        objectives: DrillObjectives {
            rto: Some("10m".into()),
            rpo: Some("2h".into()),
            rto_window: None,
        },
        ..DRDrillSpec::default()
    }
}

fn drill(spec: DRDrillSpec) -> DRDrill {
    let mut d = DRDrill::new("orders", spec);
    d.metadata.namespace = Some("shop".into());
    d.metadata.uid = Some("drill-uid".into());
    d
}

fn policy() -> BackupPolicy {
    let mut p = BackupPolicy::new(
        "orders",
        BackupPolicySpec {
            store_ref: StoreRef {
                name: "s3".into(),
                ..StoreRef::default()
            },
            sources: Sources {
                volumes: vec![VolumeSource {
                    pvc_name: Some("data".into()),
                    ..VolumeSource::default()
                }],
                databases: vec![DatabaseSource {
                    name: "pg".into(),
                    host: "pg.shop".into(),
                    database: Some("orders".into()),
                    credentials: DatabaseCredentialsRef {
                        name: "pg".into(),
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
    p
}

pub(super) fn backup(name: &str, at: &str, phase: BackupPhase) -> Backup {
    let mut b = Backup::new(
        name,
        BackupSpec {
            policy_ref: PolicyRef {
                name: "orders".into(),
            },
            ..BackupSpec::default()
        },
    );
    b.status = Some(BackupStatus {
        phase: Some(phase),
        restore_point_time: (phase == BackupPhase::Succeeded).then(|| Time(ts(at))),
        sources: vec![
            SourceResult {
                name: "data".into(),
                kind: SourceKind::Volume,
                phase: SourcePhase::Succeeded,
                snapshot_id: Some(format!("vol-{name}")),
                ..SourceResult::default()
            },
            SourceResult {
                name: "pg".into(),
                kind: SourceKind::Database,
                phase: SourcePhase::Succeeded,
                snapshot_id: Some(format!("db-{name}")),
                ..SourceResult::default()
            },
        ],
        ..BackupStatus::default()
    });
    b
}

fn drill_run(name: &str, uid: &str) -> DrillRun {
    let mut r = DrillRun::new(
        name,
        DrillRunSpec {
            drill_ref: LocalRef {
                name: "orders".into(),
            },
            ..DrillRunSpec::default()
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some(uid.into());
    r.metadata.creation_timestamp = Some(Time(ts(T0)));
    r
}

fn store() -> StoreInfo {
    StoreInfo {
        spec: BackupStoreSpec {
            s3: S3Spec {
                endpoint: Some("http://s3:9000".into()),
                bucket: "b".into(),
                prefix: Some("repo".into()),
                ..S3Spec::default()
            },
            ..BackupStoreSpec::default()
        },
        cluster: false,
        problem: None,
        revoked: false,
    }
}

fn restore_done(phase: RestorePhase, completed: &str, failed: Option<Failure>) -> Restore {
    let mut r = Restore::new(RUN, RestoreSpec::default());
    r.metadata.namespace = Some("shop".into());
    r.metadata.owner_references = Some(vec![OwnerReference {
        uid: "run-uid".into(),
        ..OwnerReference::default()
    }]);
    let db_failed = failed.is_some();
    r.status = Some(RestoreStatus {
        phase: Some(phase),
        completion_time: Some(MicroTime(ts(completed))),
        sources: vec![
            RestoredSource {
                name: "data".into(),
                kind: SourceKind::Volume,
                phase: SourcePhase::Succeeded,
                target: Some("data".into()),
                ..RestoredSource::default()
            },
            RestoredSource {
                name: "pg".into(),
                kind: SourceKind::Database,
                phase: if db_failed {
                    SourcePhase::Failed
                } else {
                    SourcePhase::Succeeded
                },
                target: (!db_failed).then(|| "orders-pg.drill-x.svc:5432/orders".into()),
                database: (!db_failed).then(|| RestoredDatabase {
                    engine: DatabaseEngine::Postgres,
                    host: "orders-pg.drill-x.svc".into(),
                    port: 5432,
                    database: Some("orders".into()),
                    credentials: Some(DatabaseCredentialsRef {
                        name: "orders-pg-login".into(),
                        ..DatabaseCredentialsRef::default()
                    }),
                    ..RestoredDatabase::default()
                }),
                failure: failed,
                ..RestoredSource::default()
            },
        ],
        ..RestoreStatus::default()
    });
    r
}

fn job(ns: &str, name: &str, created: &str, finished: Option<(bool, &str)>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(uid(name)),
            namespace: Some(ns.into()),
            creation_timestamp: Some(Time(ts(created))),
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

fn pod(job: &str, container: &str, exit: i32, message: &str, window: (&str, &str)) -> Pod {
    owned_by(pod_of(job, container, exit, message, window), job)
}

fn pod_of(job: &str, container: &str, exit: i32, message: &str, window: (&str, &str)) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{job}-x")),
            labels: Some(BTreeMap::from([("job-name".into(), job.into())])),
            creation_timestamp: Some(Time(ts(window.0))),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: container.into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: exit,
                        message: Some(message.into()),
                        started_at: Some(Time(ts(window.0))),
                        finished_at: Some(Time(ts(window.1))),
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

fn waiting_pod(job: &str, container: &str, reason: &str) -> Pod {
    let mut p = pod(job, container, 0, "", (T0, T0));
    p.status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some("image \"nope:1\" not found".into()),
        }),
        ..ContainerState::default()
    });
    p
}

fn check_result(verdict: &str, observed: &str, finished: &str) -> String {
    let mut details = serde_json::Map::new();
    details.insert("verdict".into(), verdict.into());
    details.insert("observed".into(), observed.into());
    details.insert("expected".into(), "as at backup time".into());
    details.insert("finishedAt".into(), finished.into());
    MoverResult {
        v: RESULT_VERSION,
        duration_seconds: Some(1.25),
        details,
        ..MoverResult::default()
    }
    .to_message()
}

struct World {
    run: DrillRun,
    drill: Option<DRDrill>,
    policy: Option<BackupPolicy>,
    backups: Vec<Backup>,
    runs: Vec<DrillRun>,
    store: Option<StoreInfo>,
    sandbox: SandboxState,
    sandbox_uid: Option<String>,
    source_level: Level,
    workloads: Vec<Workload>,
    restore: Option<Restore>,
    jobs: Vec<Job>,
    pods: Vec<Pod>,
    config: Config,
    now: Timestamp,
    catalog: Option<Vec<crate::controller::store::catalog::RestorePoint>>,
}

impl World {
    fn new(spec: DRDrillSpec) -> Self {
        let run = drill_run(RUN, "run-uid");
        World {
            runs: vec![run.clone()],
            run,
            drill: Some(drill(spec)),
            policy: Some(policy()),
            backups: vec![
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
            ],
            store: Some(store()),
            sandbox: SandboxState::Absent,
            sandbox_uid: None,
            source_level: Level::Privileged,
            workloads: vec![],
            restore: None,
            jobs: vec![],
            pods: vec![],
            config: Config::for_tests(),
            now: ts(T0),
            catalog: None,
        }
    }

    fn plan(&self) -> Plan {
        plan(&Observed {
            run: &self.run,
            drill: self.drill.as_ref(),
            policy: self.policy.as_ref(),
            backups: &self.backups,
            catalog: self.catalog.as_deref(),
            runs: &self.runs,
            store: self.store.clone(),
            sandbox: self.sandbox,
            sandbox_uid: self.sandbox_uid.clone(),
            source_level: self.source_level,
            sandbox_verdict: Level::Restricted,
            workloads: Some(&self.workloads),
            restore: self.restore.as_ref(),
            jobs: &self.jobs,
            pods: &self.pods,
            config: &self.config,
            now: self.now,
        })
    }

    fn step(&mut self) -> Plan {
        let p = self.plan();
        self.run.status = Some(p.status.clone());
        p
    }

    fn at(&mut self, t: &str) -> &mut Self {
        self.now = ts(t);
        self
    }

    /// Drives a run to Verifying with every check Job created.
    fn run_to_verifying(&mut self) -> Plan {
        self.step();
        self.sandbox = SandboxState::Ours { terminating: false };
        self.at("2026-11-22T15:00:02Z").step();
        self.restore = Some(restore_done(
            RestorePhase::Succeeded,
            "2026-11-22T15:01:00Z",
            None,
        ));
        self.at("2026-11-22T15:01:05Z").step()
    }

    /// Every check Job finished with the given results.
    fn finish_checks(&mut self, results: &[(&str, &str, &str)]) {
        for (check, verdict, observed) in results {
            let name = check_job_name(RUN, check);
            let finished = "2026-11-22T15:01:30Z";
            self.jobs.push(job(
                SANDBOX,
                &name,
                "2026-11-22T15:01:05Z",
                Some((true, "Completed")),
            ));
            self.pods.push(pod(
                &name,
                "mover",
                0,
                &check_result(verdict, observed, finished),
                ("2026-11-22T15:01:06Z", finished),
            ));
        }
        let app = check_job_name(RUN, "app");
        self.jobs.push(job(
            SANDBOX,
            &app,
            "2026-11-22T15:01:05Z",
            Some((true, "Completed")),
        ));
        self.pods.push(pod(
            &app,
            "check",
            0,
            "",
            ("2026-11-22T15:01:06Z", "2026-11-22T15:01:40Z"),
        ));
    }
}

fn phase(p: &Plan) -> DrillPhase {
    p.status.phase.unwrap()
}

#[test]
fn a_new_run_records_its_spec_and_restore_point_and_creates_a_labelled_sandbox() {
    let mut w = World::new(drill_spec());
    let p = w.step();
    assert_eq!(phase(&p), DrillPhase::Provisioning);
    assert_eq!(p.status.start_time, Some(Time(ts(T0))));
    assert_eq!(p.status.drill_spec, Some(drill_spec()));
    assert_eq!(p.status.sandbox_namespace.as_deref(), Some(SANDBOX));
    let rp = p.status.restore_point.as_ref().unwrap();
    assert_eq!(
        rp.backup, "orders-202611221400",
        "newest successful, not the failed one"
    );
    assert_eq!(rp.snapshots["pg"], "db-orders-202611221400");
    let prov = p.provision.as_ref().unwrap();
    let ns = &prov.namespace;
    assert_eq!(ns.name_any(), SANDBOX);
    assert_eq!(ns.labels()[labels::SANDBOX], "true");
    assert_eq!(ns.labels()[labels::DRILL_RUN], RUN);
    assert_eq!(ns.labels()[labels::MANAGED_BY], "lifeboat");
    assert_eq!(ns.annotations()[ALLOW_RESTORE_FROM], "shop");
    assert_eq!(ns.annotations()[annotations::DRILL_RUN_UID], "run-uid");
    // The policy backs up a volume: the volume mover (baseline) restores into the
    // sandbox, while restored workloads are held to restricted.
    assert_eq!(
        (
            ns.labels()[PSA_ENFORCE].as_str(),
            ns.labels()[PSA_WARN].as_str(),
            ns.labels()[PSA_AUDIT].as_str()
        ),
        ("baseline", "restricted", "restricted")
    );
    let quota = prov.quota.as_ref().expect("a default quota");
    assert_eq!(
        quota.spec.as_ref().unwrap().hard.as_ref().unwrap()["services.nodeports"].0,
        "0"
    );
    // The movers' way out needs the namespace's UID: not before it exists.
    let names: Vec<_> = prov.network_policies.iter().map(|n| n.name_any()).collect();
    assert_eq!(names, [ISOLATION_POLICY]);
    let deny = prov.network_policies[0].spec.as_ref().unwrap();
    assert_eq!(
        deny.pod_selector,
        Some(LabelSelector::default()),
        "every pod"
    );
    assert_eq!(
        deny.egress.as_ref().unwrap().len(),
        2,
        "same namespace + DNS only"
    );
    let dns = &deny.egress.as_ref().unwrap()[1].to.as_ref().unwrap()[0];
    assert_eq!(
        dns.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["k8s-app"],
        "kube-dns",
        "DNS only to the cluster's DNS pods"
    );
    assert!(
        p.create_restore.is_none(),
        "the Restore waits for the sandbox"
    );
    // What it built is recognised as its own, and nothing else is.
    assert_eq!(
        sandbox_state(Some(ns), &w.run),
        SandboxState::Ours { terminating: false }
    );
    let mut other = drill_run(RUN, "another-uid");
    other.status = None;
    assert_eq!(sandbox_state(Some(ns), &other), SandboxState::Foreign);
    assert_eq!(
        sandbox_state(Some(&Namespace::default()), &w.run),
        SandboxState::Foreign
    );
}

#[test]
fn the_run_records_its_sandboxs_uid_and_then_knows_no_other_namespace() {
    let mut w = World::new(drill_spec());
    let p = w.step();
    let mut ns = p.provision.unwrap().namespace;
    assert_eq!(w.run.status.as_ref().unwrap().sandbox_uid, None);
    // The namespace exists (created, or left by an attempt whose status write was lost).
    w.sandbox = SandboxState::Ours { terminating: false };
    w.sandbox_uid = Some("ns-uid-1".into());
    let p = w.at("2026-11-22T15:00:02Z").step();
    assert_eq!(p.status.sandbox_uid.as_deref(), Some("ns-uid-1"));
    // Recorded once: a later observation does not replace it.
    w.sandbox_uid = Some("ns-uid-2".into());
    assert_eq!(w.step().status.sandbox_uid.as_deref(), Some("ns-uid-1"));
    // From now on only that UID is the sandbox, whatever another namespace of the same
    // name carries (re-created, or labelled and annotated to look like it).
    ns.metadata.uid = Some("ns-uid-1".into());
    assert_eq!(
        sandbox_state(Some(&ns), &w.run),
        SandboxState::Ours { terminating: false }
    );
    ns.metadata.uid = Some("ns-uid-2".into());
    assert_eq!(sandbox_state(Some(&ns), &w.run), SandboxState::Foreign);
}

#[test]
fn once_the_sandbox_exists_the_restore_of_the_chosen_point_starts() {
    let mut spec = drill_spec();
    spec.sandbox.resource_quota = BTreeMap::from([(
        "cpu".to_string(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
    )]);
    spec.sandbox.network_policy = SandboxNetworkPolicy::None;
    spec.restore.manifests = true;
    let mut w = World::new(spec);
    w.step();
    // A newer backup appears meanwhile: the recorded choice stands.
    w.backups.push(backup(
        "orders-202611221459",
        "2026-11-22T14:59:00Z",
        BackupPhase::Succeeded,
    ));
    w.sandbox = SandboxState::Ours { terminating: false };
    let p = w.at("2026-11-22T15:00:02Z").step();
    assert_eq!(phase(&p), DrillPhase::Restoring);
    let prov = p.provision.as_ref().unwrap();
    assert!(prov.network_policies.is_empty());
    assert_eq!(prov.quota.as_ref().unwrap().name_any(), QUOTA_NAME);
    let r = p.create_restore.as_ref().unwrap();
    assert_eq!(r.name_any(), RUN);
    assert_eq!(r.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(
        r.metadata.owner_references.as_ref().unwrap()[0].kind,
        "DrillRun"
    );
    assert_eq!(
        r.spec.source.backup_ref.as_ref().unwrap().name,
        "orders-202611221400"
    );
    assert_eq!(r.spec.target_namespace.as_deref(), Some(SANDBOX));
    assert!(!r.spec.volumes.as_ref().unwrap().skip);
    assert_eq!(r.spec.databases.len(), 1);
    assert_eq!(r.spec.databases[0].source, "pg");
    assert!(r.spec.databases[0].ephemeral.is_some() && r.spec.databases[0].target.is_none());
    assert!(r.spec.manifests.as_ref().unwrap().suppress_side_effects);
    let tl: Vec<_> = p
        .status
        .timeline
        .iter()
        .map(|s| (s.phase, s.duration_seconds))
        .collect();
    assert_eq!(
        tl,
        [
            (DrillPhase::Provisioning, Some(2.0)),
            (DrillPhase::Restoring, None)
        ]
    );
}

#[test]
fn a_point_only_the_repository_keeps_is_restored_from_the_store() {
    use crate::controller::store::catalog::{Entry, RestorePoint};
    let mut spec = drill_spec();
    spec.restore_point.strategy = RestorePointStrategy::Oldest;
    let mut w = World::new(spec);
    let at = ts("2026-11-01T00:00:00Z");
    w.catalog = Some(vec![RestorePoint {
        identity: "shop/orders".into(),
        run: "orders-202611010000".into(),
        time: at,
        sources: vec![Entry {
            id: "vol-old".into(),
            time: at,
            identity: "shop/orders".into(),
            run: "orders-202611010000".into(),
            kind: SourceKind::Volume,
            source: "data".into(),
            db_engine: None,
            db_name: None,
            bytes: None,
        }],
    }]);
    let p = w.step();
    let rp = p.status.restore_point.clone().unwrap();
    assert_eq!(
        (rp.backup.as_str(), rp.from_store, rp.candidates),
        (
            "orders-202611010000",
            Some(true),
            Some(RetainedSource::Catalog)
        )
    );
    let chosen = p
        .events
        .iter()
        .find(|e| e.reason == "RestorePointChosen")
        .unwrap();
    assert!(
        chosen
            .note
            .contains("among the restore points the repository keeps"),
        "{}",
        chosen.note
    );
    w.sandbox = SandboxState::Ours { terminating: false };
    let p = w.at("2026-11-22T15:00:02Z").step();
    let r = p.create_restore.as_ref().unwrap();
    let src = &r.spec.source;
    assert_eq!(src.backup_ref, None);
    assert_eq!(src.store_ref.as_ref().unwrap().name, "s3");
    assert_eq!(src.from_policy.as_deref(), Some("shop/orders"));
    assert_eq!(src.backup_name.as_deref(), Some("orders-202611010000"));
    assert_eq!(r.spec.target_namespace.as_deref(), Some(SANDBOX));
}

#[test]
fn a_missing_restore_point_fails_with_a_clear_reason_and_still_reports_and_cleans_up() {
    let mut w = World::new(drill_spec());
    w.backups.clear();
    let p = w.step();
    assert_eq!(phase(&p), DrillPhase::Reporting);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Failed));
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(
        (f.step.as_str(), f.failure.reason.as_str()),
        ("Provisioning", "NoRestorePoint")
    );
    assert!(
        p.provision.is_none(),
        "nothing is created for a run that cannot restore"
    );
    assert!(
        p.create_jobs.is_empty(),
        "the report Job waits for the stored status"
    );
    let p = w.at("2026-11-22T15:00:01Z").step();
    let report = &p.create_jobs[0];
    assert_eq!(report.name_any(), report_job_name(&w.run));
    // In the controller's namespace, where no namespace editor can reach the pod; with
    // its inputs (the record, the store's credentials) written there first.
    assert_eq!(
        report.metadata.namespace.as_deref(),
        Some("lifeboat-system")
    );
    assert!(p.report_inputs);
    assert_eq!(report.metadata.owner_references, None);
    let args = report
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ");
    assert_eq!(
        args,
        format!("mover report --run shop/{RUN} --record /etc/lifeboat/record/drillrun.json")
    );
    // The report is written; no sandbox was ever made, so the run completes.
    let name = report_job_name(&w.run);
    w.jobs.push(job(
        "lifeboat-system",
        &name,
        "2026-11-22T15:00:01Z",
        Some((true, "Completed")),
    ));
    let mut d = serde_json::Map::new();
    d.insert(
        "location".into(),
        "s3://b/repo/lifeboat-reports/shop/orders/x.json".into(),
    );
    d.insert("sha256".into(), "ab".repeat(32).into());
    let msg = MoverResult {
        v: RESULT_VERSION,
        details: d,
        ..MoverResult::default()
    }
    .to_message();
    w.pods.push(pod(
        &name,
        "mover",
        0,
        &msg,
        ("2026-11-22T15:00:02Z", "2026-11-22T15:00:03Z"),
    ));
    let p = w.at("2026-11-22T15:00:04Z").step();
    assert_eq!(phase(&p), DrillPhase::Completed);
    assert_eq!(p.finished, Some(DrillOutcome::Failed));
    assert_eq!(p.status.report.as_ref().unwrap().sha256, "ab".repeat(32));
    assert!(p.delete_sandbox.is_none());
    assert!(p.verified.is_none());
    assert!(
        p.delete_jobs
            .contains(&("lifeboat-system".to_string(), name))
    );
    assert!(p.delete_record);
    let c = conditions::get(&p.status.conditions, condition::COMPLETE).unwrap();
    assert_eq!(c.reason, "Failed");
    assert!(c.message.contains("NoRestorePoint"), "{}", c.message);
}

#[test]
fn a_namespace_the_run_did_not_create_is_refused_and_never_deleted() {
    let mut w = World::new(drill_spec());
    w.sandbox = SandboxState::Foreign;
    let p = w.step();
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(f.failure.reason, "SandboxNotOwned");
    assert!(p.provision.is_none() && p.create_restore.is_none());
    // Through reporting and clean-up, the foreign namespace is left alone.
    w.store = None;
    let p = w.at("2026-11-22T15:00:05Z").step();
    assert_eq!(phase(&p), DrillPhase::Completed);
    assert!(p.delete_sandbox.is_none());
    assert!(p.events.iter().any(|e| e.reason == "SandboxNotOwned"));
}

#[test]
fn a_successful_restore_starts_one_job_per_check_in_the_sandbox() {
    let mut w = World::new(drill_spec());
    let p = w.run_to_verifying();
    assert_eq!(phase(&p), DrillPhase::Verifying);
    // Verifying starts when the Restore completed, not when the controller noticed.
    let v = p
        .status
        .timeline
        .iter()
        .find(|s| s.phase == DrillPhase::Verifying)
        .unwrap();
    assert_eq!(v.start_time, MicroTime(ts("2026-11-22T15:01:00Z")));
    let names: Vec<_> = p.create_jobs.iter().map(|j| j.name_any()).collect();
    assert_eq!(
        names,
        [
            check_job_name(RUN, "rows"),
            check_job_name(RUN, "fresh"),
            check_job_name(RUN, "files"),
            check_job_name(RUN, "app"),
        ]
    );
    for j in &p.create_jobs {
        assert_eq!(j.metadata.namespace.as_deref(), Some(SANDBOX));
        assert!(
            j.metadata.owner_references.is_none(),
            "no owner across namespaces"
        );
        assert_eq!(
            j.annotations()[annotations::DRILL_RUN_REF],
            format!("shop/{RUN}")
        );
        assert_eq!(j.spec.as_ref().unwrap().backoff_limit, Some(0));
        // Every check pod meets `restricted` but the files check, which reads files of
        // every owner (baseline, DAC_OVERRIDE).
        use crate::drill::pod_security::{Level, violations};
        let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let level = if j.name_any() == check_job_name(RUN, "files") {
            Level::Baseline
        } else {
            Level::Restricted
        };
        assert_eq!(
            violations(pod, level),
            Vec::<String>::new(),
            "{}",
            j.name_any()
        );
    }
    let c = |i: usize| {
        p.create_jobs[i]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .clone()
    };
    let rows = c(0);
    assert_eq!(
        rows.image.as_deref(),
        Some(w.config.mover_db_image.as_str())
    );
    assert_eq!(
        rows.args.unwrap().join(" "),
        "mover check sql --engine postgres --host orders-pg.drill-x.svc --port 5432 --database orders --matches-backup --snapshot db-orders-202611221400"
    );
    let user = rows
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "LIFEBOAT_DB_USER")
        .unwrap();
    assert_eq!(
        user.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "orders-pg-login"
    );
    let files = c(2);
    assert_eq!(
        files.args.unwrap().join(" "),
        "mover check files --root /volumes/data --exist hello.txt --checksum docs/blob.bin --snapshot vol-orders-202611221400"
    );
    let m = files.volume_mounts.unwrap();
    assert!(
        m.iter()
            .any(|m| m.mount_path == "/volumes/data" && m.read_only == Some(true))
    );
    let app = &p.create_jobs[3];
    let pod = app.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(app.spec.as_ref().unwrap().active_deadline_seconds, Some(60));
    let env: Vec<_> = pod.containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    for want in [
        "LIFEBOAT_DB_PG_HOST",
        "LIFEBOAT_DB_PG_PORT",
        "LIFEBOAT_DB_PG_PASSWORD",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
    assert_eq!(
        app.labels()[labels::COMPONENT],
        "drill-check",
        "not exempt from isolation"
    );
    // The next reconcile adopts the Jobs instead of creating them again.
    w.jobs = p.create_jobs.clone();
    let again = w.at("2026-11-22T15:01:10Z").step();
    assert!(again.create_jobs.is_empty());
    assert_eq!(phase(&again), DrillPhase::Verifying);
}

#[test]
fn all_checks_passing_measures_rto_and_rpo_and_goes_to_reporting() {
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        (
            "rows",
            "Passed",
            "500 rows in 1 tables, every table as at backup time",
        ),
        ("fresh", "Passed", "2026-11-22T13:55:00Z"),
        (
            "files",
            "Passed",
            "all 1 path(s) exist, all 1 checksum(s) match",
        ),
    ]);
    let p = w.at("2026-11-22T15:01:45Z").step();
    assert_eq!(phase(&p), DrillPhase::Reporting);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Passed));
    assert!(p.status.failure.is_none());
    let names: Vec<_> = p
        .status
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.result))
        .collect();
    assert_eq!(
        names,
        [
            ("rows", CheckVerdict::Passed),
            ("fresh", CheckVerdict::Passed),
            ("files", CheckVerdict::Passed),
            ("app", CheckVerdict::Passed),
        ]
    );
    // RTO: Restoring began 15:00:02; the last passing check (app) ended 15:01:40.
    let rto = p.status.rto.as_ref().unwrap();
    assert_eq!(rto.measured_seconds, Some(98.0));
    assert_eq!(rto.breakdown["restore"], 58.0);
    assert_eq!(rto.breakdown["verify"], 40.0);
    assert_eq!(rto.met, Some(true));
    // RPO: the data is from 13:55, the run started at 15:00.
    let rpo = p.status.rpo.as_ref().unwrap();
    assert_eq!(rpo.breakdown["restorePoint"], 3600.0);
    assert_eq!(rpo.breakdown["data"], 3900.0);
    assert_eq!(rpo.measured.as_deref(), Some("1h5m"));
    assert_eq!(rpo.met, Some(true));
    let app = p.status.checks.iter().find(|c| c.name == "app").unwrap();
    assert_eq!(app.observed.as_deref(), Some("exit code 0"));
    assert_eq!(app.duration_seconds, Some(34.0));
    let rows = &p.status.checks[0];
    assert_eq!(
        rows.duration_seconds,
        Some(1.25),
        "the mover's own measurement"
    );
    let v = p
        .status
        .timeline
        .iter()
        .find(|s| s.phase == DrillPhase::Verifying)
        .unwrap();
    assert_eq!(v.end_time, Some(MicroTime(ts("2026-11-22T15:01:40Z"))));
}

#[test]
fn a_failing_check_fails_the_run_naming_the_check_and_its_observed_value() {
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        (
            "rows",
            "Failed",
            "1 of 1 tables differ: public.orders 0 rows (backup 500)",
        ),
        ("fresh", "Failed", "no timestamp (the query found no rows)"),
        ("files", "Passed", "ok"),
    ]);
    let p = w.at("2026-11-22T15:01:45Z").step();
    assert_eq!(phase(&p), DrillPhase::Reporting);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Failed));
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(f.step, "check/rows");
    assert_eq!(f.failure.reason, "CheckFailed");
    assert_eq!(
        f.failure.message,
        "rows: observed 1 of 1 tables differ: public.orders 0 rows (backup 500), expected as at backup time (and 1 more: fresh)"
    );
    assert!(p.status.rto.is_none(), "no recovery, no RTO");
    assert!(
        p.status.rpo.is_some(),
        "the restore point's age is still known"
    );
}

#[test]
fn command_checks_fail_on_a_non_zero_exit_and_stuck_images_are_errors() {
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    let app = check_job_name(RUN, "app");
    w.jobs.retain(|j| j.name_any() != app);
    w.pods.retain(|p| p.labels()["job-name"] != app);
    w.jobs.push(job(
        SANDBOX,
        &app,
        "2026-11-22T15:01:05Z",
        Some((false, "BackoffLimitExceeded")),
    ));
    w.pods.push(pod(
        &app,
        "check",
        3,
        "hello.txt is empty\n",
        ("2026-11-22T15:01:06Z", "2026-11-22T15:01:07Z"),
    ));
    let p = w.at("2026-11-22T15:01:45Z").plan();
    let r = p.status.checks.iter().find(|c| c.name == "app").unwrap();
    assert_eq!(r.result, CheckVerdict::Failed);
    assert_eq!(r.observed.as_deref(), Some("exit code 3"));
    assert_eq!(r.message.as_deref(), Some("hello.txt is empty"));
    assert_eq!(p.status.failure.as_ref().unwrap().step, "check/app");

    // An image that cannot be pulled: Error, and the Job is stopped.
    w.jobs.retain(|j| j.name_any() != app);
    w.pods.retain(|p| p.labels()["job-name"] != app);
    w.jobs
        .push(job(SANDBOX, &app, "2026-11-22T15:01:05Z", None));
    w.pods.push(waiting_pod(&app, "check", "ImagePullBackOff"));
    let p = w.plan();
    let r = p.status.checks.iter().find(|c| c.name == "app").unwrap();
    assert_eq!(r.result, CheckVerdict::Error);
    assert!(r.message.as_ref().unwrap().contains("ImagePullBackOff"));
    assert!(p.delete_jobs.contains(&(SANDBOX.to_string(), app.clone())));
    assert_eq!(
        p.status.failure.as_ref().unwrap().failure.reason,
        "CheckError"
    );

    // A check that hangs past its timeout (1m) plus grace: Error.
    w.pods.retain(|p| p.labels()["job-name"] != app);
    let p = w.at("2026-11-22T15:02:36Z").plan();
    let r = p.status.checks.iter().find(|c| c.name == "app").unwrap();
    assert!(
        r.message.as_ref().unwrap().contains("timeout of 1m"),
        "{r:?}"
    );
}

#[test]
fn a_restore_that_fails_fails_the_run_at_restoring_with_its_reason() {
    let mut w = World::new(drill_spec());
    w.step();
    w.sandbox = SandboxState::Ours { terminating: false };
    w.at("2026-11-22T15:00:02Z").step();
    w.restore = Some(restore_done(
        RestorePhase::PartiallyFailed,
        "2026-11-22T15:05:00Z",
        Some(failure(
            "EphemeralServerNotReady",
            "the server (image postgres:does-not-exist) did not start: ImagePullBackOff",
        )),
    ));
    let p = w.at("2026-11-22T15:05:02Z").step();
    assert_eq!(phase(&p), DrillPhase::Reporting);
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(f.step, "Restoring");
    assert_eq!(f.failure.reason, "EphemeralServerNotReady");
    assert_eq!(
        f.failure.message,
        "database pg: EphemeralServerNotReady: the server (image postgres:does-not-exist) did not start: ImagePullBackOff"
    );
    assert!(p.create_jobs.is_empty(), "no checks after a failed restore");
}

#[test]
fn a_vanished_restore_and_the_run_deadline_fail_the_run() {
    let mut w = World::new(drill_spec());
    w.step();
    w.sandbox = SandboxState::Ours { terminating: false };
    w.at("2026-11-22T15:00:02Z").step();
    // The Restore was created in that reconcile and is gone now.
    let p = w.at("2026-11-22T15:00:30Z").plan();
    assert_eq!(
        p.status.failure.as_ref().unwrap().failure.reason,
        "RestoreVanished"
    );
    // Still running after the (default 2h) deadline.
    let mut running = restore_done(RestorePhase::Running, T0, None);
    running.status.as_mut().unwrap().completion_time = None;
    w.restore = Some(running);
    assert_eq!(
        w.at("2026-11-22T16:00:00Z").plan().status.phase,
        Some(DrillPhase::Restoring)
    );
    let p = w.at("2026-11-22T17:00:01Z").plan();
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(
        (f.step.as_str(), f.failure.reason.as_str()),
        ("Restoring", "DeadlineExceeded")
    );
}

#[test]
fn an_rto_over_the_objective_fails_the_run() {
    let mut spec = drill_spec();
    spec.objectives.rto = Some("1m".into());
    let mut w = World::new(spec);
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:59:00Z"),
        ("files", "Passed", "ok"),
    ]);
    let p = w.at("2026-11-22T15:01:45Z").plan();
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(f.step, "objectives/rto");
    assert_eq!(f.failure.reason, "RTOObjectiveMissed");
    assert_eq!(
        f.failure.message,
        "the measured RTO 1m38s exceeds the objective 1m"
    );
}

#[test]
fn rpo_objectives_apply_to_latest_drills_only() {
    let mut spec = drill_spec();
    spec.objectives.rpo = Some("10m".into());
    spec.restore_point.strategy = RestorePointStrategy::Oldest;
    let mut w = World::new(spec);
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T12:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    let p = w.at("2026-11-22T15:01:45Z").plan();
    assert_eq!(p.status.outcome, Some(DrillOutcome::Passed));
    assert_eq!(p.status.rpo.as_ref().unwrap().met, None);
}

#[test]
fn a_run_waits_while_another_run_of_the_drill_is_active() {
    let mut w = World::new(drill_spec());
    let mut other = drill_run("orders-202611211500", "other");
    other.metadata.creation_timestamp = Some(Time(ts("2026-11-21T15:00:00Z")));
    other.status = Some(DrillRunStatus {
        phase: Some(DrillPhase::Verifying),
        ..DrillRunStatus::default()
    });
    w.runs.push(other.clone());
    let p = w.step();
    assert_eq!(phase(&p), DrillPhase::Pending);
    assert!(p.provision.is_none());
    assert_eq!(p.requeue, Some(Duration::from_secs(15)));
    w.runs[1].status.as_mut().unwrap().phase = Some(DrillPhase::Completed);
    assert_eq!(phase(&w.step()), DrillPhase::Provisioning);
}

#[test]
fn a_restarted_controller_resumes_from_the_status_without_redoing_work() {
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    // The status recorded only some results before the crash; the Jobs are all there.
    let mut s = w.run.status.clone().unwrap();
    s.checks.clear();
    w.run.status = Some(s);
    let p = w.at("2026-11-22T15:01:45Z").plan();
    assert!(p.create_jobs.is_empty(), "existing Jobs are adopted");
    assert_eq!(p.status.checks.len(), 4);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Passed));
}

#[test]
fn database_targets_and_env_names() {
    assert_eq!(
        parse_db_target("pg.x.svc:5433/shop", DatabaseEngine::Postgres),
        Some(("pg.x.svc".into(), 5433, "shop".into()))
    );
    assert_eq!(
        parse_db_target("db/shop", DatabaseEngine::Mysql),
        Some(("db".into(), 3306, "shop".into()))
    );
    assert_eq!(parse_db_target("db", DatabaseEngine::Mysql), None);
    assert_eq!(env_name("orders-db"), "ORDERS_DB");
    assert_eq!(sandbox_name(None, "shop", RUN), SANDBOX);
    assert_eq!(sandbox_name(Some("sbx"), "ns", "r"), "sbx-ns-r");
    // Same drill and slot in two namespaces: two sandboxes.
    assert_ne!(sandbox_name(None, "a", RUN), sandbox_name(None, "b", RUN));
    assert!(sandbox_name(None, &"n".repeat(63), &"x".repeat(80)).len() <= 63);
}

/// Every kind of mover Job a drill run starts (the checks, then the report), pinned as
/// rendered (see `jobs::mover::snapshots`).
#[test]
fn mover_jobs_of_each_kind_match_their_snapshots() {
    use crate::crd::dr_drill::{Expectation, HttpCheck};
    use crate::jobs::mover::snapshots::assert_job;
    let mut spec = drill_spec();
    spec.checks[2]
        .files
        .as_mut()
        .unwrap()
        .checksums
        .push(FileChecksum {
            path: "docs/readme.txt".into(),
            sha256: Some("AB".repeat(32)),
        });
    spec.checks.push(Check {
        name: "count".into(),
        sql: Some(SqlCheck {
            database: "pg".into(),
            query: Some("select count(*) from orders".into()),
            expect: Some(Expectation {
                at_least: Some("1".into()),
                ..Expectation::default()
            }),
            ..SqlCheck::default()
        }),
        ..Check::default()
    });
    spec.checks.push(Check {
        name: "web".into(),
        http: Some(HttpCheck {
            url: "http://web.sandbox.svc/healthz".into(),
            expect_status: Some(204),
        }),
        timeout: Some("30s".into()),
        ..Check::default()
    });
    let mut w = World::new(spec);
    w.store.as_mut().unwrap().spec.repository_password = crate::crd::common::SecretKeyRef {
        name: "repo-pass".into(),
        key: "password".into(),
        namespace: None,
    };
    let p = w.run_to_verifying();
    for (check, kind) in [
        ("rows", "check-sql-matches-backup"),
        ("count", "check-sql-query"),
        ("fresh", "check-freshness"),
        ("files", "check-files"),
        ("web", "check-http"),
    ] {
        let name = check_job_name(RUN, check);
        let j = p
            .create_jobs
            .iter()
            .find(|j| j.name_any() == name)
            .unwrap_or_else(|| panic!("no Job for check {check}"));
        assert_job(kind, j);
    }
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("count", "Passed", "5"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
        ("web", "Passed", "204"),
    ]);
    w.at("2026-11-22T15:01:45Z").step();
    let p = w.at("2026-11-22T15:01:46Z").step();
    let report = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == report_job_name(&w.run))
        .expect("the report Job");
    assert_job("report", report);
}

mod finish;
mod report;
#[test]
fn the_movers_way_out_selects_the_sandbox_token_once_the_namespace_exists() {
    let mut w = World::new(drill_spec());
    w.step();
    w.sandbox = SandboxState::Ours { terminating: false };
    w.sandbox_uid = Some("ns-uid-1".into());
    let p = w.at("2026-11-22T15:00:02Z").step();
    let prov = p.provision.as_ref().unwrap();
    let movers = prov
        .network_policies
        .iter()
        .find(|n| n.name_any() == MOVER_POLICY)
        .expect("the mover policy");
    let sel = movers.spec.as_ref().unwrap().pod_selector.clone().unwrap();
    assert_eq!(
        sel.match_labels.unwrap(),
        BTreeMap::from([(labels::SANDBOX_TOKEN.to_string(), token("ns-uid-1"))]),
        "only the token, which no restored object can carry"
    );
}

#[test]
fn a_sandbox_is_never_more_permissive_than_the_drills_namespace() {
    // The drill asks for baseline, its namespace enforces restricted, no volumes: the
    // sandbox is restricted.
    let mut spec = drill_spec();
    spec.sandbox.pod_security = Some(SandboxPodSecurity::Baseline);
    spec.restore.volumes = Some(false);
    let mut w = World::new(spec);
    w.source_level = Level::Restricted;
    let p = w.step();
    let ns = &p.provision.as_ref().unwrap().namespace;
    assert_eq!(ns.labels()[PSA_ENFORCE], "restricted");
    assert_eq!(ns.labels()[PSA_WARN], "restricted");
    // With volumes to restore, the volume mover would need baseline: the run fails
    // with the reason, before anything is created.
    let mut w = World::new(drill_spec());
    w.source_level = Level::Restricted;
    let p = w.step();
    assert!(p.provision.is_none());
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(
        (f.step.as_str(), f.failure.reason.as_str()),
        ("Provisioning", "SandboxPodSecurity")
    );
}

#[test]
fn a_restored_workload_that_breaks_the_sandbox_level_fails_the_pod_security_check() {
    let mut spec = drill_spec();
    spec.restore.manifests = true;
    let mut w = World::new(spec);
    w.workloads = vec![Workload {
        name: "Deployment/agent".into(),
        spec: serde_json::from_value(serde_json::json!({"hostPID": true,
            "containers": [{"name": "a", "securityContext": {"privileged": true}}]}))
        .unwrap(),
    }];
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
        ("app", "Passed", "ok"),
    ]);
    let p = w.at("2026-11-22T15:01:45Z").step();
    let r = p
        .status
        .checks
        .iter()
        .find(|c| c.name == POD_SECURITY_CHECK)
        .expect("the automatic check");
    assert_eq!(r.result, CheckVerdict::Failed);
    assert_eq!(
        r.observed.as_deref(),
        Some(
            "Deployment/agent: allowPrivilegeEscalation != false in container \"a\", capabilities not dropping ALL in container \"a\", hostPID=true, privileged container \"a\", runAsNonRoot != true in container \"a\", seccompProfile not RuntimeDefault or Localhost in container \"a\""
        )
    );
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(f.step, format!("check/{POD_SECURITY_CHECK}"));
    // Without manifests there is nothing to judge and no such check.
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    let p = w.plan();
    assert!(p.status.checks.iter().all(|c| c.name != POD_SECURITY_CHECK));
}

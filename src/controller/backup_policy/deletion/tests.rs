//! The finalizer and deletion decisions, one table row per situation.

use k8s_openapi::api::batch::v1::JobStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use jiff::Timestamp;

use super::*;
use crate::crd::backup_policy::BackupPolicySpec;
use crate::crd::store::ChecksumMode;
use crate::jobs::mover::SecretKey;

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

fn policy(delete: bool, finalizer: bool, deleting: bool) -> BackupPolicy {
    let mut p = BackupPolicy::new(
        "orders",
        BackupPolicySpec {
            deletion_policy: if delete {
                DeletionPolicy::Delete
            } else {
                DeletionPolicy::Retain
            },
            ..BackupPolicySpec::default()
        },
    );
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("p-uid".into());
    if finalizer {
        p.metadata.finalizers = Some(vec!["other.example/keep".into(), FINALIZER.into()]);
    }
    if deleting {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    }
    p
}

fn job(finished: Option<bool>) -> Job {
    let mut j = Job::default();
    j.metadata.name = Some(job_name("orders"));
    j.metadata.namespace = Some("shop".into());
    let cond = |t: &str| k8s_openapi::api::batch::v1::JobCondition {
        type_: t.into(),
        status: "True".into(),
        message: Some("BackoffLimitExceeded".into()),
        ..Default::default()
    };
    j.status = Some(JobStatus {
        conditions: match finished {
            Some(true) => Some(vec![cond("Complete")]),
            Some(false) => Some(vec![cond("Failed")]),
            None => None,
        },
        ..JobStatus::default()
    });
    j
}

struct World {
    policy: BackupPolicy,
    store: Option<StoreTarget>,
    blocker: Option<Failure>,
    job: Option<Job>,
    running: Vec<String>,
    busy: bool,
    terminating: bool,
}

impl World {
    fn new(p: BackupPolicy) -> Self {
        World {
            policy: p,
            store: Some(store()),
            blocker: None,
            job: None,
            running: vec![],
            busy: false,
            terminating: false,
        }
    }

    fn plan(&self) -> Plan {
        let config = Config::for_tests();
        plan(&Observed {
            policy: &self.policy,
            store: self.store.clone(),
            store_blocker: self.blocker.clone(),
            job: self.job.as_ref(),
            pods: &[],
            running_backups: self.running.clone(),
            maintenance_busy: self.busy,
            namespace_terminating: self.terminating,
            config: &config,
        })
    }
}

#[test]
fn finalizer_follows_the_deletion_policy() {
    // (delete, has finalizer, deleting) -> finalizer action
    let cases = [
        ((false, false, false), Finalizer::Keep),
        ((true, false, false), Finalizer::Add),
        ((true, true, false), Finalizer::Keep),
        ((false, true, false), Finalizer::Remove),
        // Switched back to Retain while deleting: let go, forget nothing.
        ((false, true, true), Finalizer::Remove),
        // Deleting without our finalizer: not ours to hold.
        ((true, false, true), Finalizer::Keep),
    ];
    for ((d, f, del), want) in cases {
        let plan = World::new(policy(d, f, del)).plan();
        assert_eq!(
            plan.finalizer, want,
            "delete={d} finalizer={f} deleting={del}"
        );
        if want != Finalizer::Keep || !del {
            assert!(plan.create_job.is_none());
        }
    }
}

#[test]
fn deleting_a_delete_policy_runs_the_forget_job_of_its_own_identity() {
    let plan = World::new(policy(true, true, true)).plan();
    assert_eq!(plan.finalizer, Finalizer::Keep);
    let job = plan.create_job.expect("a deletion Job");
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("orders-delete-snapshots")
    );
    assert_eq!(job.metadata.namespace.as_deref(), Some("shop"));
    let labels = job.metadata.labels.clone().unwrap();
    assert_eq!(labels[labels::JOB_TYPE], "maintenance");
    assert_eq!(labels[labels::REPOSITORY], "repo1");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, "p-uid");
    let args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        MoverCommand::parse(&args).unwrap(),
        MoverCommand::ForgetPolicy(ForgetPolicy {
            policy: NamespacedName::new("shop", "orders"),
            // The cluster's and the policy object's identity: another cluster's snapshots,
            // or those of an earlier policy of the same name, are not this one's to delete.
            owner: Some(crate::jobs::mover::command::SnapshotOwner {
                cluster: crate::config::Config::for_tests().cluster_id.unwrap(),
                policy_uid: "p-uid".into(),
            }),
        })
    );
    assert_eq!(plan.condition.unwrap().1, "Running");
}

#[test]
fn deletion_table() {
    let deleting = || World::new(policy(true, true, true));
    type Case = (
        &'static str,
        World,
        Finalizer,
        Option<&'static str>,
        bool,
        bool,
    );
    // name, world, finalizer, condition reason, creates a Job, warns
    let cases: Vec<Case> = vec![
        (
            "job succeeded: finalizer goes",
            World {
                job: Some(job(Some(true))),
                ..deleting()
            },
            Finalizer::Remove,
            Some("SnapshotsDeleted"),
            false,
            false,
        ),
        (
            "job failed: policy stays, warning",
            World {
                job: Some(job(Some(false))),
                ..deleting()
            },
            Finalizer::Keep,
            Some("DeletionFailed"),
            false,
            true,
        ),
        (
            "job running",
            World {
                job: Some(job(None)),
                ..deleting()
            },
            Finalizer::Keep,
            Some("Running"),
            false,
            false,
        ),
        (
            "a backup still runs: wait",
            World {
                running: vec!["orders-1".into()],
                ..deleting()
            },
            Finalizer::Keep,
            Some("Waiting"),
            false,
            false,
        ),
        (
            "repository busy: wait",
            World {
                busy: true,
                ..deleting()
            },
            Finalizer::Keep,
            Some("Waiting"),
            false,
            false,
        ),
        (
            "store not allowed any more",
            World {
                store: None,
                blocker: Some(Failure {
                    reason: "StoreNotAllowed".into(),
                    message: "no".into(),
                }),
                ..deleting()
            },
            Finalizer::Keep,
            Some("StoreUnavailable"),
            false,
            true,
        ),
        (
            "namespace terminating",
            World {
                terminating: true,
                ..deleting()
            },
            Finalizer::Keep,
            Some("NamespaceTerminating"),
            false,
            true,
        ),
    ];
    for (name, w, finalizer, reason, creates, warns) in cases {
        let plan = w.plan();
        assert_eq!(plan.finalizer, finalizer, "{name}");
        assert_eq!(plan.condition.as_ref().map(|c| c.1), reason, "{name}");
        assert_eq!(plan.create_job.is_some(), creates, "{name}");
        assert_eq!(plan.events.iter().any(|e| e.warning), warns, "{name}");
        if finalizer != Finalizer::Remove {
            assert!(plan.requeue.is_some(), "{name}: must look again");
        }
    }
}

#[test]
fn a_failure_warns_once() {
    let mut w = World::new(policy(true, true, true));
    w.job = Some(job(Some(false)));
    w.policy.status = Some(crate::crd::backup_policy::BackupPolicyStatus {
        conditions: vec![Condition {
            type_: SNAPSHOT_DELETION.into(),
            status: "False".into(),
            reason: "DeletionFailed".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }],
        ..Default::default()
    });
    let plan = w.plan();
    assert_eq!(plan.condition.unwrap().1, "DeletionFailed");
    assert!(plan.events.is_empty());
}

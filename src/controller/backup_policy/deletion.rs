//! `deletionPolicy: Delete`: the policy's finalizer and the maintenance Job that forgets
//! the policy's snapshots (its own `policy=NAMESPACE/NAME` identity only) and prunes
//! before the policy goes away. Pure: the caller reads the world into [`Observed`] and
//! applies the [`Plan`].
//!
//! The finalizer is held while `deletionPolicy` is `Delete`, so a policy switched back to
//! `Retain` (also while it is being deleted) lets go without forgetting anything. A
//! failed Job stays (its pod's log is the evidence) and so does the policy, with the
//! `SnapshotDeletion` condition and a Warning Event; deleting the failed Job retries,
//! removing the finalizer by hand gives up (docs/backup.md).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::{Resource, ResourceExt};

use crate::config::Config;
use crate::controller::PlannedEvent;
use crate::controller::access::observe::{job_failure_reason, job_finished, pod_result};
use crate::controller::backup::plan::DEFAULT_DEADLINE;
use crate::controller::conditions;
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::common::{DeletionPolicy, Failure};
use crate::crd::labels;
use crate::jobs::mover::command::{ForgetPolicy, MoverCommand, NamespacedName, SnapshotOwner};
use crate::jobs::mover::{self, MoverJob, Privilege, StoreTarget};
use crate::jobs::{self, MAX_NAME};

/// The finalizer a `deletionPolicy: Delete` policy carries.
pub(crate) const FINALIZER: &str = "lifeboat.dev/delete-snapshots";
/// The condition that tells how the deletion of the policy's snapshots goes.
pub(crate) const SNAPSHOT_DELETION: &str = "SnapshotDeletion";

/// Name of the deletion Job of a policy.
pub(crate) fn job_name(policy: &str) -> String {
    jobs::name(&[policy, "delete-snapshots"], MAX_NAME)
}

/// Name of the Secret holding a cluster store's credentials for the deletion Job.
pub(crate) fn mirror_name(policy: &str) -> String {
    jobs::name(&[policy, "delete-store"], MAX_NAME)
}

/// What the deletion step looks at.
pub(crate) struct Observed<'a> {
    pub policy: &'a BackupPolicy,
    /// The store as the access kernel gives it to the policy's namespace (`None`: the
    /// namespace may not use it now; `store_blocker` says why).
    pub store: Option<StoreTarget>,
    pub store_blocker: Option<Failure>,
    /// The deletion Job, if it exists, and the pods of it.
    pub job: Option<&'a Job>,
    pub pods: &'a [Pod],
    /// Backups of the policy that are still running (they may still write snapshots).
    pub running_backups: Vec<String>,
    /// Another maintenance Job works on the same repository.
    pub maintenance_busy: bool,
    /// The namespace is being deleted: nothing can be created in it any more.
    pub namespace_terminating: bool,
    pub config: &'a Config,
}

/// What to do with the finalizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finalizer {
    Keep,
    Add,
    Remove,
}

/// The decision.
#[derive(Debug)]
pub(crate) struct Plan {
    pub finalizer: Finalizer,
    pub create_job: Option<Job>,
    /// The condition to write, when the policy is being deleted.
    pub condition: Option<(bool, &'static str, String)>,
    pub events: Vec<PlannedEvent>,
    /// `None`: the deletion is not this reconcile's business (the policy lives on).
    pub requeue: Option<Duration>,
}

fn has_finalizer(p: &BackupPolicy) -> bool {
    p.finalizers().iter().any(|f| f == FINALIZER)
}

/// The finalizer of a live policy, and the deletion of a deleted one.
pub(crate) fn plan(o: &Observed<'_>) -> Plan {
    let p = o.policy;
    let delete = p.spec.deletion_policy == DeletionPolicy::Delete;
    let mut out = Plan {
        finalizer: Finalizer::Keep,
        create_job: None,
        condition: None,
        events: Vec::new(),
        requeue: None,
    };
    if p.metadata.deletion_timestamp.is_none() {
        out.finalizer = match (delete, has_finalizer(p)) {
            (true, false) => Finalizer::Add,
            (false, true) => Finalizer::Remove,
            _ => Finalizer::Keep,
        };
        return out;
    }
    if !has_finalizer(p) {
        return out;
    }
    if !delete {
        out.finalizer = Finalizer::Remove;
        return out;
    }
    let previous = p
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, SNAPSHOT_DELETION))
        .map(|c| c.reason.clone());
    // A Warning once per reason, not on every requeue.
    let fail = |out: &mut Plan, reason: &'static str, message: String, retry: Duration| {
        if previous.as_deref() != Some(reason) {
            out.events.push(PlannedEvent {
                warning: true,
                reason,
                note: message.clone(),
            });
        }
        out.condition = Some((false, reason, message));
        out.requeue = Some(retry);
    };
    let name = job_name(&p.name_any());
    match o.job {
        Some(job) => match job_finished(job) {
            Some(true) => {
                let result = pod_result(o.pods, job, true).and_then(|(r, _)| r);
                let detail = |k: &str| {
                    result
                        .as_ref()
                        .and_then(|r| r.details.get(k).and_then(|v| v.as_u64()))
                };
                let msg = deleted_message(detail("forgotten"), detail("bytesRemoved"));
                out.events.push(PlannedEvent {
                    warning: false,
                    reason: "SnapshotsDeleted",
                    note: format!("deletionPolicy Delete: {msg}"),
                });
                out.condition = Some((true, "SnapshotsDeleted", msg));
                out.finalizer = Finalizer::Remove;
            }
            Some(false) => {
                let f = pod_result(o.pods, job, false)
                    .and_then(|(r, _)| r)
                    .and_then(|r| r.failure)
                    .unwrap_or_else(|| job_failure_reason(job));
                fail(
                    &mut out,
                    "DeletionFailed",
                    format!(
                        "Job {name} failed: {}: {}; the policy stays until its snapshots are deleted (delete the Job to retry, or remove the finalizer {FINALIZER} to keep them)",
                        f.reason, f.message
                    ),
                    Duration::from_secs(60),
                );
            }
            None => {
                out.condition = Some((false, "Running", format!("Job {name} is running")));
                out.requeue = Some(Duration::from_secs(10));
            }
        },
        None if !o.running_backups.is_empty() => {
            out.condition = Some((
                false,
                "Waiting",
                format!(
                    "Backup {} still runs and may write snapshots",
                    o.running_backups.join(", ")
                ),
            ));
            out.requeue = Some(Duration::from_secs(15));
        }
        None if o.namespace_terminating => fail(
            &mut out,
            "NamespaceTerminating",
            format!(
                "the namespace is being deleted, so the Job that deletes the snapshots cannot be created; remove the finalizer {FINALIZER} to keep them and let the namespace go"
            ),
            Duration::from_secs(60),
        ),
        None => match (&o.store, &o.store_blocker) {
            (Some(_), None) if o.maintenance_busy => {
                out.condition = Some((
                    false,
                    "Waiting",
                    "another maintenance Job is working on the repository".into(),
                ));
                out.requeue = Some(Duration::from_secs(30));
            }
            (Some(store), None) => {
                out.create_job = Some(build_job(o, store, &name));
                out.condition = Some((false, "Running", format!("Job {name} started")));
                out.requeue = Some(Duration::from_secs(10));
            }
            (_, blocker) => {
                let (reason, message) = blocker
                    .as_ref()
                    .map(|b| (b.reason.as_str(), b.message.as_str()))
                    .unwrap_or(("StoreNotFound", "the store cannot be used"));
                fail(
                    &mut out,
                    "StoreUnavailable",
                    format!(
                        "cannot delete the policy's snapshots: {reason}: {message}; the policy stays until they are deleted (or remove the finalizer {FINALIZER} to keep them)"
                    ),
                    Duration::from_secs(60),
                );
            }
        },
    }
    out
}

/// What a finished deletion Job did. The mover prunes only when it forgot something.
fn deleted_message(forgotten: Option<u64>, bytes_removed: Option<u64>) -> String {
    match (forgotten, bytes_removed) {
        (Some(0), _) => "the repository held no snapshot of the policy: nothing to delete".into(),
        (Some(n), Some(b)) => format!(
            "forgot the policy's {n} snapshot(s) and pruned {} of unreferenced data",
            crate::controller::backup::plan::human_bytes(b)
        ),
        (Some(n), None) => format!("forgot the policy's {n} snapshot(s) and pruned"),
        (None, _) => "the deletion Job succeeded; its mover reported no figures".into(),
    }
}

fn build_job(o: &Observed<'_>, store: &StoreTarget, name: &str) -> Job {
    let p = o.policy;
    let ns = p.namespace().unwrap_or_default();
    let mut labels = jobs::policy_labels(&p.name_any(), "mover");
    labels.insert(labels::JOB_TYPE.into(), "maintenance".into());
    labels.insert(labels::REPOSITORY.into(), store.identity.clone());
    mover::build(&MoverJob {
        name: name.into(),
        namespace: ns.clone(),
        labels,
        // Owned by the policy: it lives while the finalizer holds the policy, and goes
        // with it once the finalizer is removed.
        owner: p
            .controller_owner_ref(&())
            .expect("a stored policy has a name and uid"),
        image: p
            .spec
            .mover
            .image
            .clone()
            .unwrap_or_else(|| o.config.mover_image.clone()),
        image_pull_policy: o.config.image_pull_policy.clone(),
        service_account: o.config.mover_service_account.clone(),
        command: MoverCommand::ForgetPolicy(ForgetPolicy {
            policy: NamespacedName::new(&ns, p.name_any()),
            owner: SnapshotOwner::of_policy(o.config.cluster_id.as_deref(), p),
        }),
        env: vec![],
        store: store.clone(),
        mounts: vec![],
        node_name: None,
        node_selector: p.spec.mover.node_selector.clone(),
        tolerations: p.spec.mover.tolerations.clone(),
        active_deadline_seconds: DEFAULT_DEADLINE.as_secs() as i64,
        backoff_limit: 1,
        resources: p.spec.mover.resources.clone(),
        privilege: Privilege::Unprivileged,
    })
}

#[cfg(test)]
mod tests;

//! Scheduled verification of a store's repository (`spec.verify`): the pure decision of
//! when a verify Job starts and what its result means for the store's `DataVerified`
//! condition and `status.verify`.
//!
//! The Job runs `lifeboat mover verify` in the controller's namespace, never in a
//! tenant's: it reaches the store through a copy of the store's Secrets named like the Job
//! (written just before it, deleted with it), for a BackupStore and a ClusterBackupStore
//! alike. Names are deterministic per schedule slot and the Jobs are read back before one
//! is created, so a controller that crashes between the create and the status write adopts
//! its Job instead of starting a second one.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::ResourceExt;

use crate::config::Config;
use crate::controller::PlannedEvent;
use crate::controller::access::observe::{
    job_failed_reason, job_finished, no_pod, stuck, terminated,
};
use crate::controller::conditions::{self, Desired};
use crate::crd::common::condition;
use crate::crd::store::{
    BackupStoreSpec, DEFAULT_READ_DATA_SUBSET, StoreStatus, StoreVerify, VerifyStatus,
};
use crate::crd::{annotations, labels};
use crate::jobs::mover::command::{MoverCommand, VerifyRepository};
use crate::jobs::mover::{self, MoverJob, Privilege, StoreTarget};
use crate::jobs::result::MoverResult;
use crate::jobs::{self, MAX_NAME};
use crate::schedule::Schedule;

/// `lifeboat.dev/job-type` of verify Jobs.
pub(crate) const JOB_TYPE: &str = "verify";
/// Label of a verify Job: whether its store is a ClusterBackupStore (`cluster`) or a
/// BackupStore (`namespaced`), so each store controller sweeps only its own kind's.
pub(crate) const SCOPE_LABEL: &str = "lifeboat.dev/store-scope";
/// A verify run reads at most a share of the data, but a large repository at a slow
/// endpoint takes time; past this the Job is stopped (`MoverDeadlineExceeded`).
pub(crate) const DEADLINE: Duration = Duration::from_secs(6 * 3600);
/// How often a running verification is looked at.
const POLL: Duration = Duration::from_secs(10);

/// What the verification of one store depends on.
pub(crate) struct Observed<'a> {
    /// `None` for a ClusterBackupStore.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub uid: &'a str,
    pub created: Timestamp,
    pub generation: Option<i64>,
    pub spec: &'a BackupStoreSpec,
    /// The store is Ready after this reconcile's probe.
    pub ready: bool,
    /// This store's verify Jobs (by the owner annotation) and their pods.
    pub jobs: &'a [Job],
    pub pods: &'a [Pod],
    pub config: &'a Config,
    pub now: Timestamp,
}

/// What to do besides the status.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The Job to create, after the copy of the store's Secrets of the same name.
    pub create: Option<Job>,
    /// Jobs (and their Secret copies, of the same names) to delete.
    pub delete: Vec<String>,
    pub events: Vec<PlannedEvent>,
    /// When to look again (a run in progress, the next slot).
    pub wake: Option<Duration>,
    /// Set when a run ended: `Passed` or its (bounded) reason, for the metric.
    pub finished: Option<&'static str>,
}

/// The Job of the run for `slot`: `verify-<scope>-<store>-<slot, UTC minutes>`, shortened
/// with a hash when long (the scope keeps namespaced stores of one name apart).
pub(crate) fn job_name(namespace: Option<&str>, name: &str, slot: Timestamp) -> String {
    let stamp = slot.strftime("%Y%m%d%H%M").to_string();
    jobs::name(
        &["verify", namespace.unwrap_or("cluster"), name, &stamp],
        MAX_NAME,
    )
}

/// Decides the verification part of the store's next status (in `status`).
pub(crate) fn plan(o: &Observed<'_>, status: &mut StoreStatus) -> Plan {
    let mut p = Plan::default();
    let Some(v) = &o.spec.verify else {
        // Turned off: no status, and a run in progress is stopped (nothing is recorded of
        // it, so there is nothing to lose).
        status.verify = None;
        status
            .conditions
            .retain(|c| c.type_ != condition::DATA_VERIFIED);
        p.delete = o.jobs.iter().map(|j| j.name_any()).collect();
        return p;
    };
    let mut vs = status.verify.clone().unwrap_or_default();
    // The Job the stored status names. A finished one is deleted only once a status
    // without it is stored: a status write lost after the delete would otherwise turn
    // the recorded result into `JobVanished`.
    let recorded = vs.job.clone();
    let identity = match o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.to_string(),
    };
    let schedule = match Schedule::new(&v.schedule, &identity) {
        Ok(s) => s,
        Err(e) => {
            set(o, status, false, "InvalidSchedule", e.to_string());
            return p;
        }
    };
    if let Some(name) = vs.job.clone() {
        observe_run(o, &mut vs, status, &mut p, &name);
    }
    if vs.job.is_none() {
        start_due(o, v, &schedule, &mut vs, &mut p);
    }
    // Jobs of this store that the stored status does not name (a finished run recorded
    // before, turned off and on again, a delete that failed) go; the one it names and
    // the one of the run in progress stay.
    let strays: Vec<String> = o
        .jobs
        .iter()
        .map(|j| j.name_any())
        .filter(|n| Some(n) != recorded.as_ref() && Some(n) != vs.job.as_ref())
        .filter(|n| !p.delete.contains(n))
        .collect();
    p.delete.extend(strays);
    let leftover = o
        .jobs
        .iter()
        .any(|j| Some(j.name_any()) != vs.job && !p.delete.contains(&j.name_any()));
    let next = schedule.next_slot_after(o.now);
    vs.next_verify_time = next.map(|t| t.to_string());
    let until_next = next.and_then(|t| Duration::try_from(t.duration_since(o.now)).ok());
    p.wake = match (vs.job.is_some() || leftover, until_next) {
        (true, _) => Some(POLL),
        (false, Some(d)) => Some(d.max(Duration::from_secs(1))),
        (false, None) => None,
    };
    status.verify = Some(vs);
    p
}

/// The run in progress: still running, finished (its result recorded, its Job deleted),
/// unable to start, or gone.
fn observe_run(
    o: &Observed<'_>,
    vs: &mut VerifyStatus,
    status: &mut StoreStatus,
    p: &mut Plan,
    name: &str,
) {
    let Some(job) = o.jobs.iter().find(|j| j.name_any() == name) else {
        vs.job = None;
        vs.last_verify_time = Some(Time(o.now));
        vs.last_result = Some("JobVanished".into());
        p.finished = Some("JobVanished");
        set(
            o,
            status,
            false,
            "JobVanished",
            format!("the verify Job {name} was deleted before it finished"),
        );
        warn(p, format!("verify Job {name} vanished"));
        return;
    };
    let finished = match job_finished(job) {
        Some(ok) => ok,
        None => {
            let refused = no_pod(o.pods, job, name, o.now).map(|f| f.message);
            if let Some(why) = stuck(o.pods, job).or(refused) {
                vs.job = None;
                vs.last_verify_time = Some(Time(o.now));
                vs.last_result = Some("MoverCannotStart".into());
                p.finished = Some("MoverCannotStart");
                set(o, status, false, "MoverCannotStart", why.clone());
                warn(p, format!("verify Job {name} cannot start: {why}"));
            }
            return;
        }
    };
    let term = terminated(o.pods, job, "mover");
    let ended = term
        .and_then(|t| t.finished_at.as_ref())
        .map_or(o.now, |t| t.0.min(o.now));
    let result = term.and_then(|t| MoverResult::parse(t.message.as_deref().unwrap_or("")));
    let number = |r: &MoverResult, k: &str| r.details.get(k).and_then(|v| v.as_u64());
    if let Some(r) = &result {
        vs.packs_read = number(r, "packsRead");
        vs.packs = number(r, "packs");
        vs.bytes_read = number(r, "bytesRead");
    }
    vs.job = None;
    vs.last_verify_time = Some(Time(ended));
    match (finished, result.as_ref().and_then(|r| r.failure.clone())) {
        (true, None) => {
            vs.last_result = Some("Passed".into());
            p.finished = Some("Passed");
            vs.last_passed_time = Some(Time(ended));
            let msg = format!(
                "read {} of {} pack(s) ({}) and checked every index, snapshot and tree: no damage",
                vs.packs_read.unwrap_or(0),
                vs.packs.unwrap_or(0),
                crate::controller::backup::plan::human_bytes(vs.bytes_read.unwrap_or(0)),
            );
            set(o, status, true, "Verified", msg.clone());
            p.events.push(PlannedEvent {
                warning: false,
                reason: "DataVerified",
                note: msg,
            });
        }
        (_, Some(f)) => {
            vs.last_result = Some(f.reason.clone());
            p.finished = Some(bounded(&f.reason));
            set(o, status, false, bounded(&f.reason), f.message.clone());
            warn(p, format!("{}: {}", f.reason, f.message));
        }
        (false, None) => {
            let why = job_failed_reason(job).unwrap_or_else(|| "failed".into());
            vs.last_result = Some("MoverFailed".into());
            p.finished = Some("MoverFailed");
            let msg = format!("the verify Job {name} failed ({why}) without a result");
            set(o, status, false, "MoverFailed", msg.clone());
            warn(p, msg);
        }
    }
}

/// The newest slot not handled yet starts a run, once the store is Ready (a slot passed
/// while it was not runs as soon as it is; older slots are not made up for).
fn start_due(
    o: &Observed<'_>,
    v: &StoreVerify,
    schedule: &Schedule,
    vs: &mut VerifyStatus,
    p: &mut Plan,
) {
    let Some(slot) = schedule.slot_at_or_before(o.now) else {
        return;
    };
    let handled = vs.last_schedule_time.as_ref().map_or(o.created, |t| t.0);
    if slot <= handled || !o.ready {
        return;
    }
    let name = job_name(o.namespace, o.name, slot);
    vs.last_schedule_time = Some(Time(slot));
    vs.job = Some(name.clone());
    // A Job of this slot already exists: the status write after its create was lost.
    if !o.jobs.iter().any(|j| j.name_any() == name) {
        p.create = Some(job(o, v, &name));
    }
}

/// The condition reasons a verify run can end with (the mover's categories, bounded).
fn bounded(reason: &str) -> &'static str {
    match reason {
        "RepositoryCorrupted" => "RepositoryCorrupted",
        "WrongPassword" => "WrongPassword",
        "RepositoryNotFound" => "RepositoryNotFound",
        "RepositoryLocked" => "RepositoryLocked",
        "StorageAuthFailed" => "StorageAuthFailed",
        "StorageAccessDenied" => "StorageAccessDenied",
        "BucketNotFound" => "BucketNotFound",
        "StorageUnreachable" => "StorageUnreachable",
        "UnsupportedRepository" => "UnsupportedRepository",
        "MoverDeadlineExceeded" => "MoverDeadlineExceeded",
        _ => "VerifyFailed",
    }
}

/// The [`SCOPE_LABEL`] value.
pub(crate) fn scope_value(cluster: bool) -> &'static str {
    if cluster { "cluster" } else { "namespaced" }
}

fn set(o: &Observed<'_>, status: &mut StoreStatus, ok: bool, reason: &str, message: String) {
    conditions::set(
        &mut status.conditions,
        &Desired::new(condition::DATA_VERIFIED, ok, reason, message),
        o.generation,
        o.now,
    );
}

fn warn(p: &mut Plan, note: String) {
    p.events.push(PlannedEvent {
        warning: true,
        reason: "DataVerificationFailed",
        note,
    });
}

/// The verify Job: in the controller's namespace, on the copy of the store's Secrets named
/// like it, with no owner reference (a namespaced store cannot own an object in another
/// namespace); the store's UID annotation ties it to its store.
fn job(o: &Observed<'_>, v: &StoreVerify, name: &str) -> Job {
    let store = StoreTarget::from_spec(o.spec, Some(name));
    let lbl = BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::COMPONENT.to_string(), "mover".to_string()),
        (labels::JOB_TYPE.to_string(), JOB_TYPE.to_string()),
        (labels::REPOSITORY.to_string(), store.identity.clone()),
        (
            SCOPE_LABEL.to_string(),
            scope_value(o.namespace.is_none()).to_string(),
        ),
    ]);
    let mut job = mover::build(&MoverJob {
        name: name.to_string(),
        namespace: o.config.namespace.clone(),
        labels: lbl,
        // Required by the builder, removed below.
        owner: OwnerReference {
            api_version: "lifeboat.dev/v1alpha1".into(),
            kind: if o.namespace.is_some() {
                "BackupStore"
            } else {
                "ClusterBackupStore"
            }
            .into(),
            name: o.name.to_string(),
            uid: o.uid.to_string(),
            ..OwnerReference::default()
        },
        image: o.config.mover_image.clone(),
        image_pull_policy: o.config.image_pull_policy.clone(),
        service_account: o.config.mover_service_account.clone(),
        command: MoverCommand::Verify(VerifyRepository {
            read_data_subset: Some(
                v.read_data_subset
                    .clone()
                    .unwrap_or_else(|| DEFAULT_READ_DATA_SUBSET.to_string()),
            ),
        }),
        env: vec![],
        store,
        mounts: vec![],
        node_name: None,
        node_selector: BTreeMap::new(),
        tolerations: vec![],
        active_deadline_seconds: DEADLINE.as_secs() as i64,
        // Damage fails the same way again; anything else is told by the next slot.
        backoff_limit: 0,
        resources: None,
        privilege: Privilege::Unprivileged,
    });
    job.metadata.owner_references = None;
    job.metadata.annotations = Some(BTreeMap::from([(
        annotations::OWNER_UID.to_string(),
        o.uid.to_string(),
    )]));
    job
}

mod apply;
pub(super) use apply::{Sweep, run, sweep};

#[cfg(test)]
mod tests;

//! The pure decision of the DrillRun controller: the phase machine of one drill run,
//! persisted in `status.phase` and re-derived at every reconcile from the status and the
//! objects that exist (sandbox namespace, Restore, check and report Jobs and their pods),
//! never from memory, so a restarted controller resumes where the last one stopped.
//!
//! ```text
//! Pending ──> Provisioning ──> Restoring ──> Verifying ──> Reporting ──> CleaningUp ──> Completed
//!   (waits     restore point     Restore       one Job per     report Job     sandbox
//!   for other  chosen once;      object        check; RTO,     (drill's       deleted
//!   runs)      sandbox made      → sandbox     RPO, outcome    namespace)     (or kept)
//! any failure or deadline ───────────────────────────────────> Reporting ──> CleaningUp
//! a cancel request (DRDrill annotation) before Reporting ─────> Reporting ──> CleaningUp
//! ```
//!
//! Rules:
//! - The restore point is chosen once and recorded; never re-chosen.
//! - Only a namespace this run created and labelled (labels plus the run's UID annotation)
//!   is ever written to or deleted ([`sandbox_state`]); anything else fails the run.
//! - Every phase has a deadline (the run deadline for the work phases, fixed ones for
//!   provisioning, reporting and clean-up); CleaningUp always runs.
//! - Timeline times come from observed objects where they exist (the Restore's completion,
//!   the checks' end times), so the measured RTO does not include reconcile latency.
//! - A Completed run is never written again.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use kube::{Resource, ResourceExt};

use super::checks::{check_inputs_missing, check_job, check_job_name, check_type, judge, restored};
use super::sandbox::{self, Workload, sandbox_objects};
use crate::config::Config;
use crate::controller::access::observe::{job_failed_reason, job_finished, stuck, terminated};
use crate::controller::conditions::{self, Desired};
use crate::crd::annotations;
use crate::crd::backup::{Backup, SourceKind, SourcePhase};
use crate::crd::backup_policy::{BackupPolicy, VerifiedRestorePoint};
use crate::crd::common::{Failure, condition};
use crate::crd::dr_drill::{
    CheckResult, CheckVerdict, DRDrill, DRDrillSpec, DrillFailure, DrillOutcome, DrillPhase,
    DrillRestorePoint, DrillRun, DrillRunStatus, PhaseSpan, RestorePointStrategy, RetainedSource,
};
use crate::crd::labels;
use crate::crd::restore::{
    DatabaseRestore, LocalRef, ManifestRestore, Restore, RestorePhase, RestoreSource, RestoreSpec,
    VolumeRestore,
};
use crate::crd::store::BackupStoreSpec;
use crate::drill::checks::summarise;
use crate::drill::measure;
use crate::drill::pod_security::Level;
use crate::jobs::mover::command::{MoverCommand, NamespacedName, WriteReport};
use crate::jobs::mover::{self, MoverJob, Privilege, StoreTarget};
use crate::jobs::result::MoverResult;
use crate::jobs::{self, MAX_NAME};
use crate::schedule::duration;

/// Mirror of the store's Secrets inside each sandbox (for check movers).
pub const SANDBOX_STORE_SECRET: &str = "lifeboat-store";
/// Default `spec.runDeadline`.
pub const DEFAULT_RUN_DEADLINE: Duration = Duration::from_secs(2 * 3600);
/// Default `spec.sandbox.ttl`.
pub const DEFAULT_SANDBOX_TTL: Duration = Duration::from_secs(3600);
/// Default `spec.sandbox.namespacePrefix`.
pub const DEFAULT_PREFIX: &str = "drill-";
/// Default timeout of one check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// Creating the sandbox (namespace, quota, policies, RBAC, Secrets) must not take longer.
pub const PROVISIONING_TIMEOUT: Duration = Duration::from_secs(300);
/// Waiting for the sandbox namespace to go away; afterwards the run completes anyway and
/// the sandbox sweep keeps trying.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(600);

/// What the run's sandbox namespace is, as far as this run is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxState {
    /// No namespace of that name.
    Absent,
    /// Created and labelled by this run.
    Ours { terminating: bool },
    /// Someone else's (or an earlier run's of the same name): never written, never deleted.
    Foreign,
}

/// Whether `ns` is the sandbox of `run` ([`jobs::is_sandbox_of`], bound to the UID the
/// run recorded once it has).
pub fn sandbox_state(ns: Option<&Namespace>, run: &DrillRun) -> SandboxState {
    let Some(ns) = ns else {
        return SandboxState::Absent;
    };
    let ns_name = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let owner = jobs::SandboxOwner {
        namespace: &ns_name,
        name: &name,
        uid: run.metadata.uid.as_deref().unwrap_or_default(),
        recorded_uid: run.status.as_ref().and_then(|s| s.sandbox_uid.as_deref()),
    };
    if jobs::is_sandbox_of(ns, &owner) {
        SandboxState::Ours {
            terminating: ns.metadata.deletion_timestamp.is_some(),
        }
    } else {
        SandboxState::Foreign
    }
}

/// `NAMESPACE/NAME` of a run.
pub fn run_ref(run: &DrillRun) -> String {
    format!("{}/{}", run.namespace().unwrap_or_default(), run.name_any())
}

/// The sandbox namespace name of a run: the prefix, the run's namespace and name,
/// within 63 characters.
///
/// The run's namespace is part of it: run names are `<drill>-<slot>`, so two teams'
/// drills of the same name due at the same slot would otherwise claim one namespace,
/// and the second would fail with `SandboxNotOwned`.
pub fn sandbox_name(prefix: Option<&str>, namespace: &str, run: &str) -> String {
    let prefix = prefix.unwrap_or(DEFAULT_PREFIX).trim_end_matches('-');
    jobs::name(&[prefix, namespace, run], MAX_NAME)
}

/// The store behind the drill's policy, as the plan needs it.
#[derive(Clone, Debug)]
pub struct StoreInfo {
    pub spec: BackupStoreSpec,
    /// A ClusterBackupStore (its Secrets are mirrored into the drill's namespace too).
    pub cluster: bool,
    /// Why the store's Secrets cannot be read, or the namespace may not use it.
    pub problem: Option<Failure>,
    /// The namespace may not use the store now (not allowed, or its spec breaks a tenant
    /// rule): whatever step the run is at fails with `problem`, and nothing more is given
    /// the store's credentials.
    pub revoked: bool,
}

impl StoreInfo {
    /// A store the run may not use, for `why`.
    pub fn revoked(why: Failure) -> Self {
        StoreInfo {
            spec: BackupStoreSpec::default(),
            cluster: false,
            problem: Some(why),
            revoked: true,
        }
    }

    /// The store when the run may use it.
    fn usable(&self) -> Option<&Self> {
        (!self.revoked).then_some(self)
    }
}

/// Everything the plan looks at.
pub struct Observed<'a> {
    pub run: &'a DrillRun,
    pub drill: Option<&'a DRDrill>,
    pub policy: Option<&'a BackupPolicy>,
    /// Backups of the policy (to choose the restore point from).
    pub backups: &'a [Backup],
    /// The store catalog's restore points of the policy's identity, once the store's
    /// snapshots are listed (read while the restore point is to be chosen).
    pub catalog: Option<&'a [crate::controller::store::catalog::RestorePoint]>,
    /// DrillRuns of the same drill, this one included.
    pub runs: &'a [DrillRun],
    pub store: Option<StoreInfo>,
    pub sandbox: SandboxState,
    /// The sandbox namespace's UID, once it exists (its token lets movers out).
    pub sandbox_uid: Option<String>,
    /// The Pod Security level the drill's own namespace enforces (no label: privileged).
    pub source_level: Level,
    /// The level restored workloads are judged against (the sandbox's `warn` label).
    pub sandbox_verdict: Level,
    /// Restored workloads in the sandbox, listed while verifying a manifests restore.
    pub workloads: Option<&'a [Workload]>,
    pub restore: Option<&'a Restore>,
    /// Jobs of this run: checks (in the sandbox) and the report (drill's namespace).
    pub jobs: &'a [Job],
    pub pods: &'a [Pod],
    pub config: &'a Config,
    pub now: Timestamp,
}

/// The sandbox to create or complete.
#[derive(Clone, Debug)]
pub struct Provision {
    pub namespace: Namespace,
    pub quota: Option<ResourceQuota>,
    /// Container defaults that let pods without resources into a quota'd sandbox.
    pub limit_range: Option<k8s_openapi::api::core::v1::LimitRange>,
    pub network_policies: Vec<NetworkPolicy>,
}

pub use crate::controller::PlannedEvent;

/// The decision.
#[derive(Debug, Default)]
pub struct Plan {
    pub status: DrillRunStatus,
    pub provision: Option<Provision>,
    pub create_restore: Option<Restore>,
    /// Jobs to create; each carries its namespace (sandbox for checks, the drill's for
    /// the report).
    pub create_jobs: Vec<Job>,
    /// Write what the report Job reads (the run's record and a copy of the store's
    /// Secrets, in the controller's namespace) before the Job.
    pub report_inputs: bool,
    /// Delete the run's record of the report Job.
    pub delete_record: bool,
    /// (namespace, name) of Jobs to delete.
    pub delete_jobs: Vec<(String, String)>,
    /// (namespace, name) of Secrets to delete.
    pub delete_secrets: Vec<(String, String)>,
    /// The sandbox to delete (only ever a namespace in [`SandboxState::Ours`]).
    pub delete_sandbox: Option<String>,
    pub events: Vec<PlannedEvent>,
    pub requeue: Option<Duration>,
    /// Set on the reconcile that completes the run.
    pub finished: Option<DrillOutcome>,
    /// A passed run's restore point, for the policy's `lastVerifiedRestorePoint`.
    pub verified: Option<VerifiedRestorePoint>,
    /// The anchor the report Job returned (a signed envelope, JSON), to check and store
    /// as the drill's anchor before the status is written.
    pub anchor: Option<String>,
}

fn failure(reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        reason: reason.into(),
        message: message.into(),
    }
}

fn phase_of(s: &DrillRunStatus) -> DrillPhase {
    s.phase.unwrap_or_default()
}

fn spec_of<'a>(o: &'a Observed<'_>, s: &'a DrillRunStatus) -> Option<&'a DRDrillSpec> {
    s.drill_spec.as_ref().or(o.drill.map(|d| &d.spec))
}

fn owner(run: &DrillRun) -> OwnerReference {
    run.controller_owner_ref(&())
        .expect("a stored DrillRun has a name and uid")
}

/// Labels of everything a run creates.
pub fn run_labels(run: &DrillRun, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), "lifeboat".to_string()),
        (labels::COMPONENT.to_string(), component.to_string()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (
            labels::DRILL.to_string(),
            jobs::label_value(&run.spec.drill_ref.name),
        ),
        (
            labels::DRILL_RUN.to_string(),
            jobs::label_value(&run.name_any()),
        ),
    ])
}

pub(crate) fn run_annotations(run: &DrillRun) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([(annotations::DRILL_RUN_REF.to_string(), run_ref(run))]);
    if let Some(uid) = &run.metadata.uid {
        a.insert(annotations::DRILL_RUN_UID.to_string(), uid.clone());
    }
    a
}

/// Closes the open phase at `at` and opens `next` there (no span for Completed).
fn enter(s: &mut DrillRunStatus, next: DrillPhase, at: Timestamp) {
    let mut at = at;
    if let Some(open) = s.timeline.iter_mut().rev().find(|p| p.end_time.is_none()) {
        at = at.max(open.start_time.0);
        open.end_time = Some(MicroTime(at));
        open.duration_seconds = Some(measure::seconds_between(open.start_time.0, at));
    }
    s.phase = Some(next);
    if next != DrillPhase::Completed {
        s.timeline.push(PhaseSpan {
            phase: next,
            start_time: MicroTime(at),
            end_time: None,
            duration_seconds: None,
        });
    }
}

fn span_start(s: &DrillRunStatus, phase: DrillPhase) -> Option<Timestamp> {
    s.timeline
        .iter()
        .rev()
        .find(|p| p.phase == phase)
        .map(|p| p.start_time.0)
}

fn span_end(s: &DrillRunStatus, phase: DrillPhase) -> Option<Timestamp> {
    s.timeline
        .iter()
        .rev()
        .find(|p| p.phase == phase)
        .and_then(|p| p.end_time.as_ref().map(|t| t.0))
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs_f64(measure::seconds_between(since, now))
}

/// Fails the run at `step` and moves on to Reporting (the evidence of a failed run is
/// written too). The first failure is the one recorded.
fn fail(p: &mut Plan, step: &str, f: Failure, now: Timestamp) {
    p.events.push(PlannedEvent {
        warning: true,
        reason: "DrillStepFailed",
        note: format!("{step}: {}: {}", f.reason, f.message),
    });
    p.status.outcome = Some(DrillOutcome::Failed);
    if p.status.failure.is_none() {
        p.status.failure = Some(DrillFailure {
            step: step.into(),
            failure: f,
        });
    }
    enter(&mut p.status, DrillPhase::Reporting, now);
}

pub fn plan(o: &Observed<'_>) -> Plan {
    let mut p = Plan {
        status: o.run.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    let persisted = phase_of(&p.status);
    if persisted == DrillPhase::Completed {
        return p;
    }
    p.status.observed_generation = o.run.metadata.generation;
    // `apply` records the sandbox's UID from the create's answer; this records it when
    // that answer was lost (a crash before the status write) or the run was started by
    // a release that did not record it. Only while the run is in progress, and only a
    // namespace with the run's name, labels and UID annotation.
    if p.status.sandbox_uid.is_none() && matches!(o.sandbox, SandboxState::Ours { .. }) {
        p.status.sandbox_uid = o.sandbox_uid.clone();
    }
    if let Some(StoreInfo {
        revoked: true,
        problem: Some(f),
        ..
    }) = &o.store
    {
        match phase_of(&p.status) {
            DrillPhase::Restoring => fail(&mut p, "Restoring", f.clone(), o.now),
            DrillPhase::Verifying => fail(&mut p, "Verifying", f.clone(), o.now),
            _ => {}
        }
    }
    let now_in = phase_of(&p.status);
    if matches!(
        now_in,
        DrillPhase::Pending
            | DrillPhase::Provisioning
            | DrillPhase::Restoring
            | DrillPhase::Verifying
    ) && cancel_asked(o)
    {
        cancel(o, &mut p, now_in);
    }
    // Each step either moves to the next phase (then the next step runs at once) or waits.
    for _ in 0..8 {
        let before = phase_of(&p.status);
        match before {
            DrillPhase::Pending => pending(o, &mut p),
            DrillPhase::Provisioning => provisioning(o, &mut p),
            DrillPhase::Restoring => restoring(o, &mut p, persisted),
            DrillPhase::Verifying => verifying(o, &mut p),
            DrillPhase::Reporting => reporting(o, &mut p, persisted),
            DrillPhase::CleaningUp => cleaning_up(o, &mut p),
            DrillPhase::Completed => break,
        }
        if phase_of(&p.status) == before {
            break;
        }
    }
    p
}

/// Whether another run of the drill goes first: one that is past Pending, or an older
/// Pending one.
fn blocked_by(o: &Observed<'_>) -> Option<String> {
    let me = o.run;
    let key = |r: &DrillRun| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    };
    o.runs
        .iter()
        .filter(|r| r.name_any() != me.name_any())
        .filter(|r| r.spec.drill_ref.name == me.spec.drill_ref.name)
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .find(|r| {
            let ph = r.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
            match ph {
                DrillPhase::Completed => false,
                DrillPhase::Pending => key(r) < key(me),
                _ => true,
            }
        })
        .map(|r| r.name_any())
}

fn pending(o: &Observed<'_>, p: &mut Plan) {
    let now = o.now;
    let Some(drill) = o.drill else {
        p.status.start_time = Some(Time(now));
        fail(
            p,
            "Pending",
            failure(
                "DrillNotFound",
                format!("DRDrill {:?} does not exist", o.run.spec.drill_ref.name),
            ),
            now,
        );
        return;
    };
    if blocked_by(o).is_some() {
        // Never two runs of one drill at once: wait for the other one to complete.
        p.status.phase = Some(DrillPhase::Pending);
        p.requeue = Some(Duration::from_secs(15));
        return;
    }
    let run = o.run.name_any();
    p.status.start_time = Some(Time(now));
    p.status.drill_spec = Some(drill.spec.clone());
    p.status.sandbox_namespace = Some(sandbox_name(
        drill.spec.sandbox.namespace_prefix.as_deref(),
        &o.run.namespace().unwrap_or_default(),
        &run,
    ));
    p.status.restore = Some(run.clone());
    p.events.push(PlannedEvent {
        warning: false,
        reason: "DrillRunStarted",
        note: format!(
            "drill {} started; sandbox {}",
            drill.name_any(),
            p.status.sandbox_namespace.as_deref().unwrap_or_default()
        ),
    });
    enter(&mut p.status, DrillPhase::Provisioning, now);
}

/// The run deadline, or `None` while within it.
fn past_deadline(o: &Observed<'_>, s: &DrillRunStatus) -> Option<Failure> {
    let spec = spec_of(o, s)?;
    let limit = spec
        .run_deadline
        .as_deref()
        .and_then(|d| duration::parse(d).ok())
        .unwrap_or(DEFAULT_RUN_DEADLINE);
    let start = s.start_time.as_ref()?.0;
    (elapsed(start, o.now) > limit).then(|| {
        failure(
            "DeadlineExceeded",
            format!(
                "the run did not finish within its deadline of {} (runDeadline)",
                duration::format(limit)
            ),
        )
    })
}

/// The database sources a drill restores: those it names, else every one of the policy.
pub fn restored_database_sources(spec: &DRDrillSpec, policy: &BackupPolicy) -> Vec<String> {
    if spec.restore.databases.is_empty() {
        policy
            .spec
            .sources
            .databases
            .iter()
            .map(|d| d.name.clone())
            .collect()
    } else {
        spec.restore
            .databases
            .iter()
            .map(|d| d.source.clone())
            .collect()
    }
}

/// The Restore a run creates: its restore point into its sandbox.
pub fn restore_object(
    run: &DrillRun,
    spec: &DRDrillSpec,
    policy: &BackupPolicy,
    rp: &DrillRestorePoint,
    sandbox: &str,
) -> Restore {
    let databases = restored_database_sources(spec, policy)
        .into_iter()
        .map(|source| DatabaseRestore {
            ephemeral: Some(
                spec.restore
                    .databases
                    .iter()
                    .find(|d| d.source == source)
                    .map(|d| d.server.clone())
                    .unwrap_or_default(),
            ),
            source,
            target: None,
        })
        .collect();
    // A point no Backup object records is read from the policy's store, as its
    // snapshots are tagged (`<namespace>/<policy>`).
    let source = if rp.from_store == Some(true) {
        RestoreSource {
            store_ref: Some(policy.spec.store_ref.clone()),
            from_policy: Some(format!(
                "{}/{}",
                policy.namespace().unwrap_or_default(),
                policy.name_any()
            )),
            backup_name: Some(rp.backup.clone()),
            ..RestoreSource::default()
        }
    } else {
        RestoreSource {
            backup_ref: Some(LocalRef {
                name: rp.backup.clone(),
            }),
            ..RestoreSource::default()
        }
    };
    let mut r = Restore::new(
        &run.name_any(),
        RestoreSpec {
            source,
            target_namespace: Some(sandbox.into()),
            volumes: Some(VolumeRestore {
                skip: !spec.restore.volumes.unwrap_or(true),
                ..VolumeRestore::default()
            }),
            databases,
            manifests: spec.restore.manifests.then(|| ManifestRestore {
                suppress_side_effects: true,
                ..ManifestRestore::default()
            }),
        },
    );
    r.metadata.namespace = run.namespace();
    r.metadata.labels = Some(run_labels(run, "drill-restore"));
    r.metadata.owner_references = Some(vec![owner(run)]);
    r
}

/// Restore points (Backup names) that a passed run of the drill restored: the drill's
/// record (kept by the DRDrill controller beyond the runs' history limit) and the runs
/// still there.
fn verified_points(o: &Observed<'_>) -> std::collections::BTreeSet<String> {
    let mut v: std::collections::BTreeSet<String> = o
        .drill
        .and_then(|d| d.status.as_ref())
        .map(|s| s.verified_restore_points.iter().cloned().collect())
        .unwrap_or_default();
    v.extend(o.runs.iter().filter_map(|r| {
        let s = r.status.as_ref()?;
        (s.outcome == Some(DrillOutcome::Passed) && s.phase == Some(DrillPhase::Completed))
            .then(|| s.restore_point.as_ref().map(|rp| rp.backup.clone()))?
    }));
    v
}

fn provisioning(o: &Observed<'_>, p: &mut Plan) {
    let now = o.now;
    let run = o.run;
    let Some(spec) = spec_of(o, &p.status).cloned() else {
        fail(
            p,
            "Provisioning",
            failure("DrillNotFound", "the drill's spec is unknown"),
            now,
        );
        return;
    };
    if let Some(f) = past_deadline(o, &p.status) {
        fail(p, "Provisioning", f, now);
        return;
    }
    if span_start(&p.status, DrillPhase::Provisioning)
        .is_some_and(|s| elapsed(s, now) > PROVISIONING_TIMEOUT)
    {
        fail(
            p,
            "Provisioning",
            failure(
                "SandboxNotReady",
                format!(
                    "the sandbox was not ready within {} (see the controller's Events and logs)",
                    duration::format(PROVISIONING_TIMEOUT)
                ),
            ),
            now,
        );
        return;
    }
    let Some(policy) = o.policy else {
        fail(
            p,
            "Provisioning",
            failure(
                "PolicyNotFound",
                format!("BackupPolicy {:?} does not exist", spec.policy_ref.name),
            ),
            now,
        );
        return;
    };
    if p.status.restore_point.is_none() {
        let seed = run.metadata.uid.clone().unwrap_or_else(|| run.name_any());
        let verified = verified_points(o);
        let choice = Choice {
            policy: &spec.policy_ref.name,
            backups: o.backups,
            catalog: o.catalog,
            verified: &verified,
            seed: &seed,
            now,
        };
        match choose_restore_point(&spec, &choice) {
            Ok(Chosen { point: rp, why }) => {
                let how = if rp.from_store == Some(true) {
                    "restoring restore point"
                } else {
                    "restoring Backup"
                };
                let mut note = format!(
                    "{how} {} ({}, strategy {:?}, among {})",
                    rp.backup,
                    rp.time.0,
                    spec.restore_point.strategy,
                    match rp.candidates {
                        Some(RetainedSource::Catalog) => "the restore points the repository keeps",
                        _ => "the policy's Backup objects",
                    }
                );
                if let Some(w) = why {
                    note.push_str(&format!("; {w}"));
                }
                p.events.push(PlannedEvent {
                    warning: false,
                    reason: "RestorePointChosen",
                    note,
                });
                p.status.restore_point = Some(rp);
            }
            Err(f) => {
                fail(p, "Provisioning", f, now);
                return;
            }
        }
    }
    match &o.store {
        None => {
            fail(
                p,
                "Provisioning",
                failure(
                    "StoreNotFound",
                    format!(
                        "the store {:?} of BackupPolicy {:?} does not exist",
                        policy.spec.store_ref.name,
                        policy.name_any()
                    ),
                ),
                now,
            );
            return;
        }
        Some(StoreInfo {
            problem: Some(f), ..
        }) => {
            fail(p, "Provisioning", f.clone(), now);
            return;
        }
        Some(_) => {}
    }
    let restores_volumes =
        spec.restore.volumes.unwrap_or(true) && !policy.spec.sources.volumes.is_empty();
    let levels = match sandbox::levels(
        spec.sandbox.pod_security.unwrap_or_default(),
        o.source_level,
        restores_volumes,
    ) {
        Ok(l) => l,
        Err(f) => {
            fail(p, "Provisioning", f, now);
            return;
        }
    };
    let sandbox = p.status.sandbox_namespace.clone().unwrap_or_else(|| {
        sandbox_name(
            spec.sandbox.namespace_prefix.as_deref(),
            &run.namespace().unwrap_or_default(),
            &run.name_any(),
        )
    });
    match o.sandbox {
        SandboxState::Foreign => fail(
            p,
            "Provisioning",
            failure(
                "SandboxNotOwned",
                format!(
                    "namespace {sandbox} exists and was not created by this run; a drill never writes to a namespace it did not create"
                ),
            ),
            now,
        ),
        SandboxState::Ours { terminating: true } => fail(
            p,
            "Provisioning",
            failure(
                "SandboxDeleted",
                format!("the sandbox namespace {sandbox} is being deleted"),
            ),
            now,
        ),
        SandboxState::Absent => {
            p.provision = Some(sandbox_objects(run, &spec, &sandbox, levels, None));
            p.requeue = Some(Duration::from_secs(1));
        }
        SandboxState::Ours { terminating: false } => {
            // Idempotent: completes whatever an interrupted attempt left undone, and now
            // that the namespace has a UID, lets the movers out.
            p.provision = Some(sandbox_objects(
                run,
                &spec,
                &sandbox,
                levels,
                o.sandbox_uid.as_deref(),
            ));
            let rp = p.status.restore_point.clone().expect("chosen above");
            p.create_restore = Some(restore_object(run, &spec, policy, &rp, &sandbox));
            p.events.push(PlannedEvent {
                warning: false,
                reason: "RestoreStarted",
                note: format!(
                    "restoring {} {} into sandbox {sandbox}",
                    if rp.from_store == Some(true) {
                        "restore point (from the store)"
                    } else {
                        "Backup"
                    },
                    rp.backup
                ),
            });
            enter(&mut p.status, DrillPhase::Restoring, now);
        }
    }
}

fn restore_failure(r: &Restore) -> Failure {
    let s = r.status.clone().unwrap_or_default();
    let failed: Vec<_> = s
        .sources
        .iter()
        .filter(|x| x.phase == SourcePhase::Failed)
        .collect();
    if let Some(first) = failed.first() {
        let reason = first
            .failure
            .as_ref()
            .map_or("RestoreFailed".to_string(), |f| f.reason.clone());
        let msgs: Vec<String> = failed
            .iter()
            .map(|x| {
                format!(
                    "{} {}: {}",
                    match x.kind {
                        SourceKind::Volume => "volume",
                        SourceKind::Database => "database",
                        SourceKind::Manifests => "manifests",
                    },
                    x.name,
                    x.failure.as_ref().map_or("failed".to_string(), |f| format!(
                        "{}: {}",
                        f.reason, f.message
                    ))
                )
            })
            .collect();
        return failure(&reason, summarise(&msgs.join("; "), 1000));
    }
    s.failure.unwrap_or_else(|| {
        failure(
            "RestoreFailed",
            format!(
                "Restore {} ended {:?} without saying why",
                r.name_any(),
                s.phase.unwrap_or_default()
            ),
        )
    })
}

fn restoring(o: &Observed<'_>, p: &mut Plan, persisted: DrillPhase) {
    let now = o.now;
    if let Some(f) = past_deadline(o, &p.status) {
        fail(p, "Restoring", f, now);
        return;
    }
    let Some(r) = o.restore else {
        if p.create_restore.is_some() || persisted != DrillPhase::Restoring {
            p.requeue = Some(Duration::from_secs(2));
        } else {
            fail(
                p,
                "Restoring",
                failure(
                    "RestoreVanished",
                    format!(
                        "Restore {} disappeared before it finished",
                        p.status.restore.as_deref().unwrap_or_default()
                    ),
                ),
                now,
            );
        }
        return;
    };
    let ours = r
        .owner_references()
        .iter()
        .any(|o2| Some(&o2.uid) == o.run.metadata.uid.as_ref());
    if !ours {
        fail(
            p,
            "Restoring",
            failure(
                "RestoreConflict",
                format!(
                    "a Restore named {} exists that this run did not create",
                    r.name_any()
                ),
            ),
            now,
        );
        return;
    }
    let phase = r.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
    match phase {
        RestorePhase::Succeeded => {
            let done = r
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map_or(now, |t| t.0.min(now));
            p.events.push(PlannedEvent {
                warning: false,
                reason: "RestoreSucceeded",
                note: format!(
                    "Restore {} finished in {}",
                    r.name_any(),
                    r.status
                        .as_ref()
                        .and_then(|s| s.duration.clone())
                        .unwrap_or_else(|| "?".into())
                ),
            });
            enter(&mut p.status, DrillPhase::Verifying, done);
        }
        RestorePhase::PartiallyFailed | RestorePhase::Failed | RestorePhase::Cancelled => {
            fail(p, "Restoring", restore_failure(r), now);
        }
        RestorePhase::Pending | RestorePhase::Running => {
            p.requeue = Some(Duration::from_secs(10));
        }
    }
}

fn sandbox_store(o: &Observed<'_>) -> Option<StoreTarget> {
    o.store
        .as_ref()
        .and_then(StoreInfo::usable)
        .map(|s| StoreTarget::from_spec(&s.spec, Some(SANDBOX_STORE_SECRET)))
}

fn verifying(o: &Observed<'_>, p: &mut Plan) {
    let now = o.now;
    if let Some(f) = past_deadline(o, &p.status) {
        fail(p, "Verifying", f, now);
        return;
    }
    let spec = spec_of(o, &p.status).cloned().unwrap_or_default();
    let run = o.run.name_any();
    let sandbox = p.status.sandbox_namespace.clone().unwrap_or_default();
    let rp = p
        .status
        .restore_point
        .clone()
        .expect("chosen in Provisioning");
    let (dbs, vols) = restored(o.restore, o.policy);
    let store = sandbox_store(o);
    let mut results: Vec<CheckResult> = Vec::new();
    let mut waiting = false;
    if spec.restore.manifests {
        let done = p
            .status
            .checks
            .iter()
            .find(|r| r.name == sandbox::POD_SECURITY_CHECK);
        match (done, o.workloads) {
            (Some(r), _) => results.push(r.clone()),
            (None, Some(w)) => {
                let r = sandbox::pod_security_check(w, o.sandbox_verdict, now);
                if r.result != CheckVerdict::Passed {
                    p.events.push(PlannedEvent {
                        warning: true,
                        reason: "CheckFailed",
                        note: format!("{}: {}", r.name, r.observed.as_deref().unwrap_or("")),
                    });
                }
                results.push(r);
            }
            (None, None) => waiting = true,
        }
    }
    for c in &spec.checks {
        if let Some(done) = p.status.checks.iter().find(|r| r.name == c.name) {
            results.push(done.clone());
            continue;
        }
        let job_name = check_job_name(&run, &c.name);
        match o.jobs.iter().find(|j| j.name_any() == job_name) {
            Some(job) => {
                let (res, stop) = judge(o.pods, o.now, c, job);
                if stop {
                    p.delete_jobs.push((sandbox.clone(), job_name));
                }
                match res {
                    Some(r) => {
                        p.events.push(PlannedEvent {
                            warning: r.result != CheckVerdict::Passed,
                            reason: match r.result {
                                CheckVerdict::Passed => "CheckPassed",
                                CheckVerdict::Failed => "CheckFailed",
                                CheckVerdict::Error => "CheckError",
                            },
                            note: format!(
                                "{}: {}",
                                r.name,
                                r.observed.as_deref().or(r.message.as_deref()).unwrap_or("")
                            ),
                        });
                        results.push(r);
                    }
                    None => waiting = true,
                }
            }
            None => {
                if let Some(why) = check_inputs_missing(c, &dbs, &vols) {
                    results.push(CheckResult {
                        name: c.name.clone(),
                        type_: check_type(c).into(),
                        result: CheckVerdict::Error,
                        message: Some(why),
                        end_time: Some(MicroTime(now)),
                        ..CheckResult::default()
                    });
                    continue;
                }
                let Some(store) = &store else {
                    results.push(CheckResult {
                        name: c.name.clone(),
                        type_: check_type(c).into(),
                        result: CheckVerdict::Error,
                        message: Some("the store is gone".into()),
                        end_time: Some(MicroTime(now)),
                        ..CheckResult::default()
                    });
                    continue;
                };
                let token = o.sandbox_uid.as_deref().map(jobs::sandbox_token);
                p.create_jobs.push(check_job(
                    o.run,
                    o.config,
                    c,
                    &sandbox,
                    store,
                    &rp,
                    &dbs,
                    &vols,
                    o.policy,
                    token.as_deref(),
                ));
                waiting = true;
            }
        }
    }
    p.status.checks = results;
    if waiting {
        p.requeue = Some(Duration::from_secs(5));
        return;
    }
    finish_verification(o, p, &spec);
}

/// All checks have a result: measure, judge the objectives, decide the outcome.
fn finish_verification(o: &Observed<'_>, p: &mut Plan, spec: &DRDrillSpec) {
    let now = o.now;
    let s = &mut p.status;
    let restoring_start = span_start(s, DrillPhase::Restoring).unwrap_or(now);
    let restored_at = span_end(s, DrillPhase::Restoring).unwrap_or(now);
    let ends: Vec<(CheckVerdict, Option<Timestamp>)> = s
        .checks
        .iter()
        .map(|c| (c.result, c.end_time.as_ref().map(|t| t.0)))
        .collect();
    s.rto = measure::rto(
        restoring_start,
        restored_at,
        &ends,
        spec.objectives.rto.as_deref(),
    );
    let newest_data = s
        .checks
        .iter()
        .filter(|c| c.type_ == "freshness" && c.result == CheckVerdict::Passed)
        .filter_map(|c| c.observed.as_deref()?.parse::<Timestamp>().ok())
        .min();
    // NB: an RPO objective only means something for the newest restore point; Oldest,
    // Random and PointInTime drills restore old points on purpose.
    let rpo_objective = (spec.restore_point.strategy == RestorePointStrategy::Latest)
        .then_some(spec.objectives.rpo.as_deref())
        .flatten();
    let run_start = s.start_time.as_ref().map_or(now, |t| t.0);
    s.rpo = s
        .restore_point
        .as_ref()
        .map(|rp| measure::rpo(run_start, rp.time.0, newest_data, rpo_objective));
    let end = ends
        .iter()
        .filter_map(|(_, e)| *e)
        .max()
        .unwrap_or(restored_at)
        .max(restored_at)
        .min(now);
    let bad: Vec<&CheckResult> = s
        .checks
        .iter()
        .filter(|c| c.result != CheckVerdict::Passed)
        .collect();
    if let Some(first) = bad.first() {
        let reason = if first.result == CheckVerdict::Failed {
            "CheckFailed"
        } else {
            "CheckError"
        };
        let mut msg = match (&first.observed, &first.expected) {
            (Some(obs), Some(exp)) => format!("{}: observed {obs}, expected {exp}", first.name),
            (Some(obs), None) => format!("{}: observed {obs}", first.name),
            _ => format!(
                "{}: {}",
                first.name,
                first.message.as_deref().unwrap_or("the check did not pass")
            ),
        };
        if bad.len() > 1 {
            msg.push_str(&format!(
                " (and {} more: {})",
                bad.len() - 1,
                bad[1..]
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let step = format!("check/{}", first.name);
        fail(p, &step, failure(reason, summarise(&msg, 1000)), end);
        return;
    }
    let rto_missed = s.rto.as_ref().filter(|m| m.met == Some(false)).cloned();
    let rpo_missed = s.rpo.as_ref().filter(|m| m.met == Some(false)).cloned();
    if let Some(m) = rto_missed {
        fail(
            p,
            "objectives/rto",
            failure(
                "RTOObjectiveMissed",
                format!(
                    "the measured RTO {} exceeds the objective {}",
                    m.measured.unwrap_or_default(),
                    m.objective.unwrap_or_default()
                ),
            ),
            end,
        );
        return;
    }
    if let Some(m) = rpo_missed {
        fail(
            p,
            "objectives/rpo",
            failure(
                "RPOObjectiveMissed",
                format!(
                    "the measured RPO {} exceeds the objective {}",
                    m.measured.unwrap_or_default(),
                    m.objective.unwrap_or_default()
                ),
            ),
            end,
        );
        return;
    }
    s.outcome = Some(DrillOutcome::Passed);
    p.events.push(PlannedEvent {
        warning: false,
        reason: "ChecksPassed",
        note: format!(
            "all {} check(s) passed; RTO {}",
            p.status.checks.len(),
            p.status
                .rto
                .as_ref()
                .and_then(|m| m.measured.clone())
                .unwrap_or_default()
        ),
    });
    enter(&mut p.status, DrillPhase::Reporting, end);
}

mod finish;
pub mod point;
mod report;
use finish::{cancel, cancel_asked, cleaning_up};
pub use point::*;
pub use report::*;

#[cfg(test)]
mod tests;

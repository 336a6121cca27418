//! The pure decision of the Backup (run) controller. A run is a set of units (one per
//! PVC, database and the manifests), fixed when the run starts and recorded in
//! `status.sources`. Each reconcile re-derives every unit's state from the objects that
//! exist (VolumeSnapshot, temporary PVC, mover Job and its pod), never from memory, so a
//! controller restart adopts whatever the previous process created:
//!
//! ```text
//! Pending --(Snapshot method: VolumeSnapshot, then a PVC restored from it)--> Job created
//!   --> Running --(Job complete + result)--> Succeeded | Failed
//! Running and the Job is gone -----------------------------------------> Failed (JobVanished)
//! ```
//! Temporary PVCs and VolumeSnapshots are deleted as soon as their unit is terminal, on
//! success and on failure alike.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, SecretKeySelector,
    TypedLocalObjectReference, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::{Resource, ResourceExt};

use crate::config::Config;
use crate::controller::access::observe::{
    job_failure_reason, job_finished, no_pod, pod_result, stuck_pod,
};
use crate::controller::conditions::{self, Desired};
use crate::controller::sources::{self, Unit};
use crate::crd::backup::{
    BackedUpDatabase, BackedUpVolume, Backup, BackupPhase, BackupStatus, SourceKind, SourcePhase,
    SourceResult,
};
use crate::crd::backup_policy::{BackupPolicy, CopyMethod, DatabaseSource};
use crate::crd::common::Failure;
use crate::crd::labels;
use crate::jobs::mover::command::{
    ApplyRetention, BackupCommand, BackupDatabase, BackupManifests, BackupRun, BackupVolume,
    MoverCommand, NamespacedName, SnapshotOwner,
};
use crate::jobs::mover::{self, DataMount, MoverJob, Privilege, StoreTarget};
use crate::jobs::result::MoverResult;
use crate::jobs::{self, MAX_NAME};
use crate::schedule::duration;
use crate::volume::{SnapshotState, VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec};

/// Condition type recording the retention run after a backup.
pub const RETENTION_APPLIED: &str = "RetentionApplied";
/// Default run deadline (`spec.mover.activeDeadline`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(6 * 3600);
/// A VolumeSnapshot that is not ready after this long fails its unit.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Everything the plan looks at. `start_blocker` is set by the caller when the policy or
/// store cannot be used (missing, not ready); the run then fails with that reason.
pub struct Observed<'a> {
    pub backup: &'a Backup,
    pub policy: Option<&'a BackupPolicy>,
    pub store: Option<StoreTarget>,
    pub start_blocker: Option<Failure>,
    pub pvcs: &'a [PersistentVolumeClaim],
    pub snapshots: &'a [VolumeSnapshot],
    pub jobs: &'a [Job],
    pub pods: &'a [Pod],
    /// PVC name -> node where a running pod mounts it (for `Direct` on RWO volumes).
    pub consumers: &'a BTreeMap<String, String>,
    /// Another maintenance Job runs on the same repository.
    pub maintenance_busy: bool,
    pub config: &'a Config,
    pub now: Timestamp,
}

pub use crate::controller::PlannedEvent;

/// The decision.
#[derive(Debug, Default)]
pub struct Plan {
    pub create_snapshots: Vec<VolumeSnapshot>,
    pub create_pvcs: Vec<PersistentVolumeClaim>,
    pub create_jobs: Vec<Job>,
    pub delete_snapshots: Vec<String>,
    pub delete_pvcs: Vec<String>,
    /// Jobs to stop (their pod can never start).
    pub delete_jobs: Vec<String>,
    pub status: BackupStatus,
    pub events: Vec<PlannedEvent>,
    /// Set once, on the reconcile that finishes the run (for metrics).
    pub finished: Option<BackupPhase>,
    pub requeue: Option<Duration>,
}

fn job_name(backup: &str, unit_kind: SourceKind, unit: &str) -> String {
    let short = match unit_kind {
        SourceKind::Volume => "vol",
        SourceKind::Database => "db",
        SourceKind::Manifests => "manifests",
    };
    if unit_kind == SourceKind::Manifests {
        jobs::name(&[backup, short], MAX_NAME)
    } else {
        jobs::name(&[backup, short, unit], MAX_NAME)
    }
}

/// Name of the manifests Job of a run.
pub(crate) fn manifests_job_name(backup: &str) -> String {
    job_name(backup, SourceKind::Manifests, "")
}

/// Name of the retention Job of a run.
pub fn retention_job_name(backup: &str) -> String {
    jobs::name(&[backup, "retention"], MAX_NAME)
}

fn labels_for(
    b: &Backup,
    source: Option<&str>,
    job_type: &str,
    repo: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = jobs::policy_labels(&b.spec.policy_ref.name, "mover");
    l.insert(labels::BACKUP.into(), jobs::label_value(&b.name_any()));
    l.insert(labels::JOB_TYPE.into(), job_type.into());
    if let Some(s) = source {
        l.insert(labels::SOURCE.into(), jobs::label_value(s));
    }
    if let Some(r) = repo {
        l.insert(labels::REPOSITORY.into(), r.into());
    }
    l
}

fn owner(b: &Backup) -> OwnerReference {
    b.controller_owner_ref(&())
        .expect("a stored Backup has a name and uid")
}

fn meta(b: &Backup, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: b.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner(b)]),
        ..ObjectMeta::default()
    }
}

fn failure(reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        reason: reason.into(),
        message: message.into(),
    }
}

/// The mover Job for one unit.
fn unit_job(
    o: &Observed<'_>,
    policy: &BackupPolicy,
    store: &StoreTarget,
    unit: &Unit<'_>,
    mount: Option<DataMount>,
    node: Option<String>,
) -> Job {
    let b = o.backup;
    let name = job_name(&b.name_any(), unit.kind(), unit.name());
    let ns = b.namespace().unwrap_or_default();
    let run = BackupRun {
        policy: NamespacedName::new(&ns, policy.name_any()),
        backup: b.name_any(),
        owner: SnapshotOwner::of_policy(o.config.cluster_id.as_deref(), policy),
    };
    let mut env: Vec<EnvVar> = vec![];
    let mut image = o.config.mover_image.clone();
    let mut privilege = Privilege::Unprivileged;
    let command = match unit {
        Unit::Volume { pvc, source } => {
            privilege = Privilege::ReadAnyOwner;
            BackupCommand::Volume(BackupVolume {
                source: pvc.clone(),
                path: "/data".into(),
                excludes: source.exclude.clone(),
                run,
            })
        }
        Unit::Database { source } => {
            image = o.config.mover_db_image.clone();
            env.extend(database_env(source));
            BackupCommand::Database(database_command(source, run))
        }
        Unit::Manifests => {
            let m = policy.spec.sources.manifests.clone().unwrap_or_default();
            BackupCommand::Manifests(BackupManifests {
                namespace: ns.clone(),
                kinds: m.kinds.clone(),
                selector: m
                    .selector
                    .as_ref()
                    .and_then(|sel| kube::core::Selector::try_from(sel.clone()).ok())
                    .map(|s| s.to_string()),
                include_secrets: m.include_secrets,
                staging: None,
                run,
            })
        }
    };
    if let Some(img) = &policy.spec.mover.image {
        image = img.clone();
    }
    let deadline = policy
        .spec
        .mover
        .active_deadline
        .as_deref()
        .and_then(|d| duration::parse(d).ok())
        .unwrap_or(DEFAULT_DEADLINE);
    mover::build(&MoverJob {
        name: name.clone(),
        namespace: ns,
        labels: labels_for(b, Some(unit.name()), "backup", None),
        owner: owner(b),
        image,
        image_pull_policy: o.config.image_pull_policy.clone(),
        service_account: o.config.mover_service_account.clone(),
        command: MoverCommand::Backup(command),
        env,
        store: store.clone(),
        mounts: mount.into_iter().collect(),
        node_name: node,
        node_selector: policy.spec.mover.node_selector.clone(),
        tolerations: policy.spec.mover.tolerations.clone(),
        active_deadline_seconds: deadline.as_secs().max(1) as i64,
        backoff_limit: policy.spec.mover.backoff_limit.unwrap_or(1),
        resources: policy.spec.mover.resources.clone(),
        privilege,
    })
}

fn database_command(d: &DatabaseSource, run: BackupRun) -> BackupDatabase {
    BackupDatabase {
        source: d.name.clone(),
        engine: d.engine.into(),
        host: d.host.clone(),
        port: Some(d.port.unwrap_or(d.engine.default_port())),
        database: d.database.clone(),
        extra_args: d.extra_args.clone(),
        run,
    }
}

fn database_env(d: &DatabaseSource) -> Vec<EnvVar> {
    let r = |name: &str, key: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: d.credentials.name.clone(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    vec![
        r("LIFEBOAT_DB_USER", d.credentials.username_key()),
        r("LIFEBOAT_DB_PASSWORD", d.credentials.password_key()),
    ]
}

/// The temporary PVC restored from a unit's VolumeSnapshot.
fn temp_pvc(
    o: &Observed<'_>,
    name: &str,
    unit_pvc: &str,
    source_class: Option<&str>,
    snap: &VolumeSnapshot,
) -> PersistentVolumeClaim {
    let src = o.pvcs.iter().find(|p| p.name_any() == unit_pvc);
    let src_spec = src.and_then(|p| p.spec.clone()).unwrap_or_default();
    let size: Quantity = snap
        .status
        .as_ref()
        .and_then(|s| s.restore_size.clone())
        .or_else(|| {
            src_spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage").cloned())
        })
        .unwrap_or_else(|| Quantity("1Gi".into()));
    let class = source_class
        .map(str::to_string)
        .or(src_spec.storage_class_name.clone());
    PersistentVolumeClaim {
        metadata: meta(
            o.backup,
            name,
            labels_for(o.backup, Some(unit_pvc), "backup", None),
        ),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: class,
            data_source: Some(TypedLocalObjectReference {
                api_group: Some("snapshot.storage.k8s.io".into()),
                kind: "VolumeSnapshot".into(),
                name: name.into(),
            }),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            volume_mode: src_spec.volume_mode.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn new_snapshot(o: &Observed<'_>, name: &str, pvc: &str, class: Option<String>) -> VolumeSnapshot {
    VolumeSnapshot {
        metadata: meta(
            o.backup,
            name,
            labels_for(o.backup, Some(pvc), "backup", None),
        ),
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(pvc.into()),
                volume_snapshot_content_name: None,
            },
            volume_snapshot_class_name: class,
        },
        status: None,
    }
}

pub(crate) fn elapsed(since: Option<&Time>, now: Timestamp) -> Duration {
    since
        .map(|t| now.duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO)
}

pub fn plan(o: &Observed<'_>) -> Plan {
    let b = o.backup;
    let mut p = Plan {
        status: b.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    // Movers own `progress`; never write it back (a stale copy could clobber theirs).
    p.status.progress.clear();
    p.status.observed_generation = b.metadata.generation;
    let phase = p.status.phase.unwrap_or_default();
    if phase == BackupPhase::Cancelled {
        cancel::stop_jobs(o, &mut p);
    }
    if phase.is_finished() {
        retention(o, &mut p);
        cleanup_all(o, &mut p);
        return p;
    }
    let now = o.now;
    let cancel = crate::crd::cancel_requested(&b.metadata);
    if phase == BackupPhase::Pending && cancel {
        finish::finish_cancelled(o, &mut p);
        return p;
    }
    if phase == BackupPhase::Pending {
        match start(o) {
            Ok(units) => {
                p.status.phase = Some(BackupPhase::Running);
                p.status.start_time = Some(Time(now));
                p.status.sources = units
                    .iter()
                    .map(|u| SourceResult {
                        name: u.name().to_string(),
                        kind: u.kind(),
                        phase: SourcePhase::Pending,
                        volume: match u {
                            Unit::Volume { pvc, .. } => Some(volume_shape(o.pvcs, pvc)),
                            _ => None,
                        },
                        database: match u {
                            Unit::Database { source } => Some(BackedUpDatabase {
                                engine: source.engine,
                                database: source.database.clone(),
                                server_version: None,
                            }),
                            _ => None,
                        },
                        ..SourceResult::default()
                    })
                    .collect();
                p.events.push(PlannedEvent {
                    warning: false,
                    reason: "BackupStarted",
                    note: format!(
                        "backing up {} source(s): {}",
                        units.len(),
                        units
                            .iter()
                            .map(|u| u.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            Err(f) => {
                finish(o, &mut p, Some(f));
                return p;
            }
        }
    }
    // From here on the run has units; a missing policy or store now fails what is left.
    let Some(policy) = o.policy else {
        let f = failure("PolicyNotFound", "the policy was deleted during the run");
        for s in p.status.sources.iter_mut().filter(|s| !terminal(s.phase)) {
            s.phase = SourcePhase::Failed;
            s.failure = Some(f.clone());
        }
        finish(o, &mut p, None);
        cleanup_all(o, &mut p);
        return p;
    };
    // Without the store (gone, or no longer allowed to this namespace) finished movers
    // still count; the others stop, and nothing new starts.
    let store = o.store.as_ref().ok_or_else(|| {
        o.start_blocker
            .clone()
            .unwrap_or_else(|| failure("StoreNotFound", "the store is gone"))
    });
    let units = sources::resolve(&policy.spec.sources, o.pvcs).unwrap_or_default();
    let mut sources = std::mem::take(&mut p.status.sources);
    for entry in sources.iter_mut().filter(|s| !terminal(s.phase)) {
        advance(o, policy, store.as_ref().copied(), &units, entry, &mut p);
    }
    p.status.sources = sources;
    if cancel && !p.status.sources.iter().all(|s| terminal(s.phase)) {
        // A run whose last mover finished just now is done: the request came too late.
        cancel::stop(o, &mut p);
        finish::finish_cancelled(o, &mut p);
    } else if p.status.sources.iter().all(|s| terminal(s.phase)) {
        finish(o, &mut p, None);
        retention(o, &mut p);
    } else {
        p.requeue = Some(Duration::from_secs(30));
    }
    cleanup_all(o, &mut p);
    p
}

/// The PVC's request, class and modes, recorded so that a restore can recreate it alike
/// even after the PVC is gone.
fn volume_shape(pvcs: &[PersistentVolumeClaim], name: &str) -> BackedUpVolume {
    let spec = pvcs
        .iter()
        .find(|p| p.name_any() == name)
        .and_then(|p| p.spec.clone())
        .unwrap_or_default();
    BackedUpVolume {
        storage: spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage").cloned()),
        storage_class_name: spec.storage_class_name,
        access_modes: spec.access_modes.unwrap_or_default(),
        volume_mode: spec.volume_mode,
    }
}

fn terminal(phase: SourcePhase) -> bool {
    matches!(phase, SourcePhase::Succeeded | SourcePhase::Failed)
}

/// Fixes the run's units, or says why it cannot start.
fn start<'a>(o: &Observed<'a>) -> Result<Vec<Unit<'a>>, Failure> {
    if let Some(f) = &o.start_blocker {
        return Err(f.clone());
    }
    let policy = o.policy.ok_or_else(|| {
        failure(
            "PolicyNotFound",
            format!(
                "BackupPolicy {:?} does not exist",
                o.backup.spec.policy_ref.name
            ),
        )
    })?;
    if o.store.is_none() {
        return Err(failure("StoreNotReady", "the policy's store is not ready"));
    }
    sources::resolve(&policy.spec.sources, o.pvcs).map_err(|p| failure(p.reason, p.message))
}

/// Moves one unit forward by one step.
fn advance(
    o: &Observed<'_>,
    policy: &BackupPolicy,
    store: std::result::Result<&StoreTarget, &Failure>,
    units: &[Unit<'_>],
    entry: &mut SourceResult,
    p: &mut Plan,
) {
    let backup = o.backup.name_any();
    let name = job_name(&backup, entry.kind, &entry.name);
    let fail = |entry: &mut SourceResult, f: Failure, p: &mut Plan| {
        p.events.push(PlannedEvent {
            warning: true,
            reason: "SourceFailed",
            note: format!(
                "{} {}: {}: {}",
                kind_str(entry.kind),
                entry.name,
                f.reason,
                f.message
            ),
        });
        entry.phase = SourcePhase::Failed;
        entry.failure = Some(f);
    };
    if let Some(job) = o.jobs.iter().find(|j| j.name_any() == name) {
        entry.job_name = Some(name.clone());
        match job_finished(job) {
            Some(true) => match pod_result(o.pods, job, true) {
                Some((Some(r), _)) if r.failure.is_none() && r.snapshot_id.is_some() => {
                    entry.phase = SourcePhase::Succeeded;
                    entry.snapshot_id = r.snapshot_id;
                    entry.files = r.files;
                    entry.bytes_read = r.bytes_read;
                    entry.bytes_added = r.bytes_added;
                    entry.duration_seconds = r.duration_seconds;
                    if let (Some(db), Some(v)) = (
                        entry.database.as_mut(),
                        r.details.get("serverVersion").and_then(|v| v.as_str()),
                    ) {
                        db.server_version = Some(v.to_string());
                    }
                    p.events.push(PlannedEvent {
                        warning: false,
                        reason: "SourceSucceeded",
                        note: format!(
                            "{} {}: snapshot {}",
                            kind_str(entry.kind),
                            entry.name,
                            entry.snapshot_id.as_deref().unwrap_or("?")
                        ),
                    });
                }
                _ => fail(
                    entry,
                    failure(
                        "MoverResultMissing",
                        "the mover Job completed without reporting a snapshot",
                    ),
                    p,
                ),
            },
            Some(false) => {
                let f = match pod_result(o.pods, job, false) {
                    Some((
                        Some(MoverResult {
                            failure: Some(f), ..
                        }),
                        _,
                    )) => f,
                    Some((_, summary)) => {
                        let mut f = job_failure_reason(job);
                        f.message = format!("{}; last pod: {summary}", f.message);
                        f
                    }
                    None => job_failure_reason(job),
                };
                fail(entry, f, p);
            }
            None => {
                if let Some(f) =
                    stuck_pod(o.pods, job).or_else(|| no_pod(o.pods, job, &name, o.now))
                {
                    p.delete_jobs.push(name.clone());
                    fail(entry, f, p);
                } else if let Err(f) = store {
                    // A mover must not go on with credentials the run may no longer use.
                    p.delete_jobs.push(name.clone());
                    fail(entry, f.clone(), p);
                } else {
                    entry.phase = SourcePhase::Running;
                }
            }
        }
        return;
    }
    if entry.phase == SourcePhase::Running && entry.job_name.is_some() {
        fail(
            entry,
            failure(
                "JobVanished",
                format!("mover Job {name} disappeared before reporting a result"),
            ),
            p,
        );
        return;
    }
    let store = match store {
        Ok(s) => s,
        Err(f) => {
            fail(entry, f.clone(), p);
            return;
        }
    };
    let Some(unit) = units
        .iter()
        .find(|u| u.kind() == entry.kind && u.name() == entry.name)
    else {
        let what = match entry.kind {
            SourceKind::Volume => "PVCNotFound",
            _ => "SourceRemoved",
        };
        fail(
            entry,
            failure(
                what,
                format!(
                    "{} is no longer part of the policy or does not exist",
                    entry.name
                ),
            ),
            p,
        );
        return;
    };
    let (mount, node) = match unit {
        Unit::Volume { pvc, source } => match source.copy_method {
            CopyMethod::Direct => (
                Some(DataMount {
                    claim: pvc.clone(),
                    mount_path: "/data".into(),
                    read_only: true,
                }),
                o.consumers.get(pvc).cloned(),
            ),
            CopyMethod::Snapshot => match o.snapshots.iter().find(|s| s.name_any() == name) {
                None => {
                    p.create_snapshots.push(new_snapshot(
                        o,
                        &name,
                        pvc,
                        source.volume_snapshot_class_name.clone(),
                    ));
                    p.requeue = Some(Duration::from_secs(2));
                    return;
                }
                Some(s) => match s.state() {
                    SnapshotState::Failed(msg) => {
                        fail(
                            entry,
                            failure("SnapshotFailed", format!("VolumeSnapshot {name}: {msg}")),
                            p,
                        );
                        return;
                    }
                    SnapshotState::Pending => {
                        if elapsed(s.metadata.creation_timestamp.as_ref(), o.now) > SNAPSHOT_TIMEOUT
                        {
                            fail(
                                entry,
                                failure(
                                    "SnapshotTimeout",
                                    format!(
                                        "VolumeSnapshot {name} not ready after {}",
                                        duration::format(SNAPSHOT_TIMEOUT)
                                    ),
                                ),
                                p,
                            );
                        }
                        return;
                    }
                    SnapshotState::Ready => {
                        if !o.pvcs.iter().any(|c| c.name_any() == name) {
                            p.create_pvcs.push(temp_pvc(
                                o,
                                &name,
                                pvc,
                                source.storage_class_name.as_deref(),
                                s,
                            ));
                        }
                        (
                            Some(DataMount {
                                claim: name.clone(),
                                mount_path: "/data".into(),
                                read_only: true,
                            }),
                            None,
                        )
                    }
                },
            },
        },
        _ => (None, None),
    };
    p.create_jobs
        .push(unit_job(o, policy, store, unit, mount, node));
    entry.phase = SourcePhase::Running;
    entry.job_name = Some(name);
}

fn kind_str(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Volume => "volume",
        SourceKind::Database => "database",
        SourceKind::Manifests => "manifests",
    }
}

/// Deletes temporary snapshots and PVCs of units that are terminal (or of the whole run
/// once it is finished).
fn cleanup_all(o: &Observed<'_>, p: &mut Plan) {
    let finished = p.status.phase.is_some_and(|ph| ph.is_finished());
    let backup = o.backup.name_any();
    let done: Vec<String> = p
        .status
        .sources
        .iter()
        .filter(|s| finished || terminal(s.phase))
        .map(|s| job_name(&backup, s.kind, &s.name))
        .collect();
    let is_temp = |name: &str| finished || done.iter().any(|d| d == name);
    for s in o
        .snapshots
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
    {
        if is_temp(&s.name_any()) {
            p.delete_snapshots.push(s.name_any());
        }
    }
    for c in o.pvcs {
        let ours = c
            .labels()
            .get(labels::BACKUP)
            .is_some_and(|b| *b == jobs::label_value(&backup));
        if !ours || !is_temp(&c.name_any()) {
            continue;
        }
        if c.metadata.deletion_timestamp.is_none() {
            p.delete_pvcs.push(c.name_any());
        }
        // NB: Kubernetes before 1.23 counts even completed pods as users of a PVC, so the
        // temporary PVC stays Terminating while its mover pod exists. The unit's result is
        // in status already: remove its Job (and pod) too. The Job shares the PVC's name.
        if o.jobs.iter().any(|j| j.name_any() == c.name_any()) {
            p.delete_jobs.push(c.name_any());
        }
    }
}

mod cancel;
mod finish;
use finish::finish;
pub use finish::human_bytes;
mod retention;
pub(crate) use retention::RETENTION_BREAKER_TRIPPED;
use retention::retention;
#[cfg(test)]
pub(crate) use retention::retention_message;

#[cfg(test)]
mod tests;

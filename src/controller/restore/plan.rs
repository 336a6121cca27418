//! The pure decision of the Restore controller. A restore resolves its restore point (a
//! Backup) once, fixes its units (one per volume, database and the manifests) in
//! `status.sources`, and then moves each unit forward from the objects that exist (target
//! PVC, database server, mover Job and its pod), never from memory, so a restarted
//! controller adopts what the previous process created:
//!
//! ```text
//! Pending --(spec valid, target allowed, restore point found)--> Running
//! volume:    PVC created (never over an existing one: TargetExists) + mover Job --> result
//! database:  [ephemeral: Secret, Deployment, Service --(ready)--> ] mover Job --> result
//!            (never ready: DatabaseStartFailed with the pod's reason, server removed)
//! manifests: waits until every volume is done (workloads must find their data), Job --> result
//! Running and the Job is gone ---------------------------------------> Failed (JobVanished)
//! all units terminal --> Succeeded | PartiallyFailed | Failed (never changes again)
//! ```
//!
//! Nothing is written to the target namespace before it is known to accept the restore
//! (the caller gates its own writes with [`check_target`] too).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, PodSpec, PodTemplateSpec, Probe, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, MicroTime, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::config::Config;
use crate::controller::PlannedEvent;
use crate::controller::access::observe::{
    job_failure_reason, job_finished, no_pod, pod_result, stuck_pod,
};
use crate::controller::conditions::{self, Desired};
use crate::crd::backup::{Backup, SourceKind, SourcePhase, SourceResult};
use crate::crd::backup_policy::{BackupPolicy, DatabaseEngine};
use crate::crd::common::{DatabaseCredentialsRef, Failure, condition};
use crate::crd::labels;
use crate::crd::restore::{
    ALLOW_RESTORE_FROM, DatabaseRestore, Restore, RestorePhase, RestorePointRef, RestoreStatus,
    RestoredDatabase, RestoredManifests, RestoredSource, RowCounts,
};
use crate::jobs::mover::{self, DataMount, MoverJob, StoreTarget};
use crate::jobs::result::MoverResult;
use crate::jobs::{self, MAX_NAME};
use crate::schedule::duration;

/// Default run deadline of a mover (`policy.spec.mover.activeDeadline` overrides).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(6 * 3600);
/// Default `ephemeral.startupTimeout`.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// An ephemeral server whose image cannot be pulled for this long has failed (a pull
/// error is usually a wrong name or missing credentials; the grace covers a registry
/// hiccup).
pub const IMAGE_PULL_GRACE: Duration = Duration::from_secs(30);
pub use crate::controller::access::observe::POD_CREATE_TIMEOUT;
/// An ephemeral server that crashed this many times has failed.
pub const MAX_SERVER_RESTARTS: i32 = 3;
/// Label value of `app.kubernetes.io/component` on ephemeral database servers.
pub const SERVER_COMPONENT: &str = "restore-database";
/// Size of a restored PVC when neither the Backup nor the live source says.
pub const FALLBACK_SIZE: &str = "1Gi";
/// Pod waiting reasons of a server that will not resolve by themselves.
const FATAL_SERVER_REASONS: &[&str] = &[
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];
const PULL_REASONS: &[&str] = &["ErrImagePull", "ImagePullBackOff"];
/// Mover failures that no retry of the pod can fix: the unit fails at the first one.
const PERMANENT: &[&str] = &[
    "SnapshotMissing",
    "SnapshotNotAllowed",
    "TargetExists",
    "TargetNotFound",
    "InvalidInput",
    "WrongPassword",
    "RepositoryNotFound",
    "BucketNotFound",
    "StorageAuthFailed",
    "StorageAccessDenied",
    "DatabaseAuthFailed",
    "DatabaseError",
    "ToolMissing",
    // The manifest mover retries passing API faults itself; what it reports is final.
    "ApplyFailed",
    // Damaged repository data fails the same way every time (the mover names the pack
    // and the files; `lifeboat repair packs` and a new backup heal it).
    "RepositoryCorrupted",
    "UnsupportedRepository",
];

/// Everything the plan looks at. The caller reads it with consistent LIST calls.
pub struct Observed<'a> {
    pub restore: &'a Restore,
    /// Backups of the Restore's namespace (needed only while the restore point is
    /// unresolved).
    pub backups: &'a [Backup],
    /// The restore point's policy, once known.
    pub policy: Option<&'a BackupPolicy>,
    /// How movers reach the repository, as seen from the target namespace.
    pub store: Option<StoreTarget>,
    /// Why the restore cannot start (store missing or not ready, a Secret missing).
    pub start_blocker: Option<Failure>,
    /// The target namespace (`None`: it does not exist).
    pub target_namespace: Option<&'a Namespace>,
    /// PVCs of the target namespace.
    pub target_pvcs: &'a [PersistentVolumeClaim],
    /// PVCs of the Restore's namespace (live sources: a fallback for sizes).
    pub source_pvcs: &'a [PersistentVolumeClaim],
    /// Jobs, pods and Deployments of this Restore in the target namespace.
    pub jobs: &'a [Job],
    pub pods: &'a [Pod],
    pub deployments: &'a [Deployment],
    /// Secret in the target namespace holding copies of the store's (and database
    /// targets') credentials, when the movers cannot use the originals.
    pub mirror: Option<String>,
    /// A random password, used if an ephemeral server's Secret is created now.
    pub fresh_password: String,
    pub config: &'a Config,
    pub now: Timestamp,
}

/// The decision.
#[derive(Debug, Default)]
pub struct Plan {
    pub create_pvcs: Vec<PersistentVolumeClaim>,
    /// Created only if absent (an existing Secret keeps its password).
    pub create_secrets: Vec<Secret>,
    pub create_deployments: Vec<Deployment>,
    pub create_services: Vec<Service>,
    pub create_jobs: Vec<Job>,
    pub delete_jobs: Vec<String>,
    /// PVCs to remove (those a cancelled restore had not finished filling).
    pub delete_pvcs: Vec<String>,
    /// Ephemeral servers to remove (Deployment, Service and Secret share the name).
    pub delete_servers: Vec<String>,
    /// Secrets to remove (the credential mirror, once no mover needs it).
    pub delete_secrets: Vec<String>,
    pub status: RestoreStatus,
    pub events: Vec<PlannedEvent>,
    /// Set once, on the reconcile that finishes the restore.
    pub finished: Option<RestorePhase>,
    pub requeue: Option<Duration>,
}

fn failure(reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        reason: reason.into(),
        message: message.into(),
    }
}

fn event(p: &mut Plan, warning: bool, reason: &'static str, note: String) {
    p.events.push(PlannedEvent {
        warning,
        reason,
        note,
    });
}

/// The namespace the Restore writes to.
pub fn target_namespace(r: &Restore) -> String {
    r.spec
        .target_namespace
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| r.namespace().unwrap_or_default())
}

/// Whether the target namespace accepts this Restore: its own namespace always; another
/// one only if it exists, is not being deleted, and lists the Restore's namespace (or
/// `*`) in its `lifeboat.dev/allow-restore-from` annotation, and, when the controller
/// serves only some namespaces (`served`, its `--watch-namespaces`), is one of them or a
/// drill sandbox (where the controller binds its rights itself): elsewhere it has no
/// rights, and every write would be refused with 403 and retried.
pub fn check_target(
    r: &Restore,
    ns: Option<&Namespace>,
    served: &[String],
) -> Result<String, Failure> {
    let own = r.namespace().unwrap_or_default();
    let target = target_namespace(r);
    let not_allowed = |m: String| failure("TargetNotAllowed", m);
    let Some(ns) = ns else {
        return Err(not_allowed(format!(
            "target namespace {target:?} does not exist"
        )));
    };
    if ns.metadata.deletion_timestamp.is_some() {
        return Err(not_allowed(format!(
            "target namespace {target:?} is being deleted"
        )));
    }
    if target == own {
        return Ok(target);
    }
    let sandbox = ns
        .labels()
        .get(crate::crd::labels::SANDBOX)
        .is_some_and(|v| v == "true");
    if !served.is_empty() && !served.contains(&target) && !sandbox {
        return Err(failure(
            "TargetNotServed",
            format!(
                "namespace {target:?} is not served by this Lifeboat installation (watchNamespaces: {}); the platform team can add it",
                served.join(", ")
            ),
        ));
    }
    let allowed = ns
        .annotations()
        .get(ALLOW_RESTORE_FROM)
        .is_some_and(|v| v.split(',').map(str::trim).any(|n| n == "*" || n == own));
    if allowed {
        Ok(target)
    } else {
        Err(not_allowed(format!(
            "namespace {target:?} does not accept restores from {own:?}: its annotation {ALLOW_RESTORE_FROM} must list {own:?} (or *)"
        )))
    }
}

/// Name of the mover Job of a unit: `<restore>-rst-<vol|db>-<source>` or
/// `<restore>-rst-manifests` (the `rst` keeps it apart from a Backup of the same name).
pub fn job_name(restore: &str, kind: SourceKind, source: &str) -> String {
    match kind {
        SourceKind::Volume => jobs::name(&[restore, "rst", "vol", source], MAX_NAME),
        SourceKind::Database => jobs::name(&[restore, "rst", "db", source], MAX_NAME),
        SourceKind::Manifests => jobs::name(&[restore, "rst", "manifests"], MAX_NAME),
    }
}

/// Name of an ephemeral server's Deployment, Service and Secret (a DNS-1035 label: it
/// starts with a letter).
pub fn server_name(restore: &str, source: &str) -> String {
    jobs::name(&["db", restore, source], MAX_NAME)
}

/// Name of the Secret mirroring credentials into the target namespace.
pub fn mirror_name(restore: &str) -> String {
    jobs::name(&[restore, "rst", "credentials"], MAX_NAME)
}

/// Keys of a database target's login in the mirror Secret.
pub fn mirror_db_keys(source: &str) -> (String, String) {
    (
        format!("db-{source}-username"),
        format!("db-{source}-password"),
    )
}

/// The default image of an ephemeral server for the dumped server's version:
/// `postgres:<major>` (`postgres:9.6` before 10), `mariadb:<major.minor>`, or
/// `mysql:<major.minor>`.
pub fn default_image(engine: DatabaseEngine, version: &str) -> Option<String> {
    let v = version.trim();
    let numeric: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').filter(|p| !p.is_empty());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: Option<u32> = parts.next().and_then(|m| m.parse().ok());
    match engine {
        DatabaseEngine::Postgres if major >= 10 => Some(format!("postgres:{major}")),
        DatabaseEngine::Postgres => Some(format!("postgres:{major}.{}", minor?)),
        DatabaseEngine::Mysql => {
            let name = if v.to_ascii_lowercase().contains("mariadb") {
                "mariadb"
            } else {
                "mysql"
            };
            Some(format!("{name}:{major}.{}", minor?))
        }
    }
}

fn labels_for(
    r: &Restore,
    policy: &str,
    component: &str,
    source: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = jobs::policy_labels(policy, component);
    l.extend(restore_labels(r));
    l.insert(labels::JOB_TYPE.into(), "restore".into());
    if let Some(s) = source {
        l.insert(labels::SOURCE.into(), jobs::label_value(s));
    }
    l
}

/// The labels that tie an object to its Restore (the only ones a restored PVC carries:
/// it is user data, not Lifeboat's, so later manifest backups must include it).
pub fn restore_labels(r: &Restore) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            labels::RESTORE.to_string(),
            jobs::label_value(&r.name_any()),
        ),
        (
            labels::RESTORE_NAMESPACE.to_string(),
            r.namespace().unwrap_or_default(),
        ),
        (
            labels::RESTORE_UID.to_string(),
            r.meta().uid.clone().unwrap_or_default(),
        ),
    ])
}

pub(super) fn is_ours(r: &Restore, meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(labels::RESTORE_UID))
        .is_some_and(|u| Some(u) == r.meta().uid.as_ref())
}

/// Children in the Restore's own namespace are owned by it (and go with it); in another
/// namespace an owner reference would be void, so those are cleaned up by label.
fn owners(r: &Restore, target: &str) -> Option<Vec<OwnerReference>> {
    (r.namespace().as_deref() == Some(target)).then(|| {
        vec![
            r.controller_owner_ref(&())
                .expect("a stored Restore has a name and uid"),
        ]
    })
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

fn seconds_between(a: &MicroTime, b: &MicroTime) -> f64 {
    b.0.duration_since(a.0).as_secs_f64().max(0.0)
}

fn detail_time(r: &MoverResult, key: &str) -> Option<Timestamp> {
    r.details
        .get(key)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

pub fn plan(o: &Observed<'_>) -> Plan {
    let r = o.restore;
    let mut p = Plan {
        status: r.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    // Nothing writes `progress` any more (movers write no status); an old object's stale
    // entries are not carried over.
    p.status.progress.clear();
    let phase = p.status.phase.unwrap_or_default();
    if phase.is_finished() {
        // The record of a finished restore never changes, not even for a later spec edit.
        if phase == RestorePhase::Cancelled {
            cancel::remove_unfinished(o, &mut p);
        }
        cleanup(o, &mut p);
        return p;
    }
    p.status.observed_generation = r.metadata.generation;
    let cancelled = crate::crd::cancel_requested(&r.metadata);
    if phase == RestorePhase::Pending && cancelled {
        finish::finish_cancelled(o, &mut p);
        cleanup(o, &mut p);
        return p;
    }
    if phase == RestorePhase::Pending {
        match start(o, &mut p) {
            Start::Started => {}
            Start::Waiting(msg) => {
                conditions::set(
                    &mut p.status.conditions,
                    &Desired::new(condition::COMPLETE, false, "WaitingForBackup", msg),
                    r.metadata.generation,
                    o.now,
                );
                p.requeue = Some(Duration::from_secs(10));
                return p;
            }
            Start::Failed(f) => {
                finish(o, &mut p, Some(f));
                cleanup(o, &mut p);
                return p;
            }
        }
    }
    let point = p
        .status
        .restore_point
        .as_ref()
        .and_then(|rp| o.backups.iter().find(|b| b.name_any() == rp.backup));
    let mut sources = std::mem::take(&mut p.status.sources);
    if let (None, Some(f)) = (&o.store, &o.start_blocker) {
        // The namespace may no longer use the store (or it is gone): no mover goes on
        // with its credentials. Finished movers still count; units without a mover fail
        // below, where a new one would start.
        for entry in sources.iter_mut().filter(|s| !terminal(s.phase)) {
            let job = job_name(&r.name_any(), entry.kind, &entry.name);
            let running = o
                .jobs
                .iter()
                .any(|j| j.name_any() == job && job_finished(j).is_none());
            if running {
                p.delete_jobs.push(job);
                fail(o, entry, f.clone(), &mut p);
            }
        }
    }
    for i in 0..sources.len() {
        if terminal(sources[i].phase) {
            continue;
        }
        // Units are ordered volumes first: a volume finishing now frees the manifests.
        let volumes_done = sources
            .iter()
            .filter(|s| s.kind == SourceKind::Volume)
            .all(|s| terminal(s.phase));
        advance(o, point, &mut sources[i], volumes_done, &mut p);
    }
    // A source adopted after a lost status write may have begun before the start this
    // attempt recorded: the restore began when its first source did.
    let first = sources
        .iter()
        .filter_map(|s| s.start_time.as_ref().map(|t| t.0))
        .min();
    if let (Some(first), Some(start)) = (first, p.status.start_time.as_ref())
        && first < start.0
    {
        p.status.start_time = Some(micro(first));
    }
    p.status.sources = sources;
    if cancelled && !p.status.sources.iter().all(|s| terminal(s.phase)) {
        // A restore whose last mover finished just now is done: the request came too late.
        cancel::stop(o, &mut p);
        finish::finish_cancelled(o, &mut p);
        cleanup(o, &mut p);
    } else if p.status.sources.iter().all(|s| terminal(s.phase)) {
        finish(o, &mut p, None);
        cleanup(o, &mut p);
    } else if p.requeue.is_none() {
        // Job completions wake us through the watch; this is a safety net (and the
        // clock for stuck pods and timeouts).
        p.requeue = Some(Duration::from_secs(15));
    }
    p
}

fn terminal(phase: SourcePhase) -> bool {
    matches!(phase, SourcePhase::Succeeded | SourcePhase::Failed)
}

enum Start {
    Started,
    Waiting(String),
    Failed(Failure),
}

/// Validates, checks the target, resolves the restore point and fixes the units.
fn start(o: &Observed<'_>, p: &mut Plan) -> Start {
    let r = o.restore;
    if let Err(f) = validate(r) {
        return Start::Failed(f);
    }
    let target = match check_target(r, o.target_namespace, &o.config.watch_namespaces) {
        Ok(t) => t,
        Err(f) => return Start::Failed(f),
    };
    // From a store, the restore points come from its catalog: a store that cannot be used
    // has none to offer, and its reason is the one to give.
    if super::from_store::identity(r).is_some()
        && let Some(f) = &o.start_blocker
    {
        return Start::Failed(f.clone());
    }
    let backup = match resolve_point(r, o.backups) {
        Resolution::Found(b) => b,
        Resolution::Wait(m) => return Start::Waiting(m),
        // No restore point because there is no such policy: say that, not "no Backup".
        Resolution::Missing(_)
            if o.policy.is_none()
                && let Some(p) = &r.spec.source.policy_ref =>
        {
            return Start::Failed(failure(
                "PolicyNotFound",
                format!("BackupPolicy {:?} does not exist in this namespace", p.name),
            ));
        }
        Resolution::Missing(f) => return Start::Failed(f),
    };
    let Some(policy) = o.policy else {
        return Start::Failed(failure(
            "PolicyNotFound",
            format!(
                "BackupPolicy {:?} of Backup {:?} does not exist",
                backup.spec.policy_ref.name,
                backup.name_any()
            ),
        ));
    };
    if let Some(f) = &o.start_blocker {
        return Start::Failed(f.clone());
    }
    if o.store.is_none() {
        return Start::Failed(failure("StoreNotReady", "the policy's store is not usable"));
    }
    let units = units(o, backup, policy, &target);
    if units.is_empty() {
        return Start::Failed(failure(
            "NothingToRestore",
            format!(
                "the spec selects no source of Backup {:?} (volumes are restored unless spec.volumes.include narrows them; databases and manifests only when listed)",
                backup.name_any()
            ),
        ));
    }
    let st = &mut p.status;
    st.phase = Some(RestorePhase::Running);
    st.start_time = Some(micro(o.now));
    st.target_namespace = Some(target.clone());
    st.restore_point = Some(RestorePointRef {
        backup: backup.name_any(),
        policy: policy.name_any(),
        time: backup
            .status
            .as_ref()
            .and_then(|s| s.restore_point_time.clone())
            .expect("usable backups have a restore point time"),
        namespace: super::from_store::identity(r).map(|(ns, _)| ns.to_string()),
        store: r.spec.source.store_ref.as_ref().map(|s| s.name.clone()),
    });
    st.failure = None;
    let names: Vec<_> = units
        .iter()
        .map(|u| format!("{} {}", kind_str(u.kind), u.name))
        .collect();
    event(
        p,
        false,
        "RestoreStarted",
        format!(
            "restoring {} source(s) of Backup {} into namespace {target}: {}",
            units.len(),
            backup.name_any(),
            names.join(", ")
        ),
    );
    for u in units.iter().filter(|u| u.phase == SourcePhase::Failed) {
        let f = u.failure.clone().unwrap_or_default();
        event(
            p,
            true,
            "SourceFailed",
            format!(
                "{} {}: {}: {}",
                kind_str(u.kind),
                u.name,
                f.reason,
                f.message
            ),
        );
    }
    p.status.sources = units;
    Start::Started
}

fn kind_str(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Volume => "volume",
        SourceKind::Database => "database",
        SourceKind::Manifests => "manifests",
    }
}

fn not_in_point(
    kind: SourceKind,
    name: &str,
    backup: &Backup,
    found: Option<&SourceResult>,
) -> RestoredSource {
    let why = match found.and_then(|s| s.failure.as_ref()) {
        Some(f) => format!(
            "{} {name} failed in Backup {} ({}: {})",
            kind_str(kind),
            backup.name_any(),
            f.reason,
            f.message
        ),
        None if found.is_some() => format!(
            "{} {name} has no snapshot in Backup {}",
            kind_str(kind),
            backup.name_any()
        ),
        None => format!(
            "Backup {} has no {} source {name:?}",
            backup.name_any(),
            kind_str(kind)
        ),
    };
    RestoredSource {
        name: name.to_string(),
        kind,
        phase: SourcePhase::Failed,
        failure: Some(failure("SourceNotInRestorePoint", why)),
        ..RestoredSource::default()
    }
}

/// The restore's units, in a stable order: volumes, databases, manifests. Sources the
/// restore point lacks are units that failed already.
fn units(
    o: &Observed<'_>,
    backup: &Backup,
    policy: &BackupPolicy,
    target: &str,
) -> Vec<RestoredSource> {
    let r = o.restore;
    let spec = &r.spec;
    let recorded = backup
        .status
        .as_ref()
        .map(|s| s.sources.as_slice())
        .unwrap_or_default();
    let find =
        |kind: SourceKind, name: &str| recorded.iter().find(|s| s.kind == kind && s.name == name);
    let has_snapshot =
        |s: &SourceResult| s.phase == SourcePhase::Succeeded && s.snapshot_id.is_some();
    let mut out = Vec::new();
    let include = spec
        .volumes
        .as_ref()
        .map(|v| v.include.clone())
        .unwrap_or_default();
    let skip = spec.volumes.as_ref().is_some_and(|v| v.skip);
    let wanted: Vec<String> = if skip {
        Vec::new()
    } else if include.is_empty() {
        recorded
            .iter()
            .filter(|s| s.kind == SourceKind::Volume)
            .map(|s| s.name.clone())
            .collect()
    } else {
        include
    };
    for name in wanted {
        match find(SourceKind::Volume, &name) {
            Some(s) if has_snapshot(s) => {
                let pvc = spec
                    .volumes
                    .as_ref()
                    .and_then(|v| v.rename.get(&name).cloned())
                    .unwrap_or_else(|| name.clone());
                out.push(RestoredSource {
                    name: name.clone(),
                    kind: SourceKind::Volume,
                    phase: SourcePhase::Pending,
                    snapshot_id: s.snapshot_id.clone(),
                    target: Some(pvc),
                    ..RestoredSource::default()
                });
            }
            other => out.push(not_in_point(SourceKind::Volume, &name, backup, other)),
        }
    }
    for d in &spec.databases {
        match find(SourceKind::Database, &d.source) {
            Some(s) if has_snapshot(s) => out.push(database_unit(o, d, s, policy, target)),
            other => out.push(not_in_point(SourceKind::Database, &d.source, backup, other)),
        }
    }
    if spec.manifests.is_some() {
        match recorded.iter().find(|s| s.kind == SourceKind::Manifests) {
            Some(s) if has_snapshot(s) => out.push(RestoredSource {
                name: s.name.clone(),
                kind: SourceKind::Manifests,
                phase: SourcePhase::Pending,
                snapshot_id: s.snapshot_id.clone(),
                ..RestoredSource::default()
            }),
            other => out.push(not_in_point(
                SourceKind::Manifests,
                "manifests",
                backup,
                other,
            )),
        }
    }
    out
}

/// A database unit with where it goes: the connection facts are fixed at start, so later
/// steps (and a DR drill reading the status) need neither the Backup nor the policy.
fn database_unit(
    o: &Observed<'_>,
    d: &DatabaseRestore,
    s: &SourceResult,
    policy: &BackupPolicy,
    target: &str,
) -> RestoredSource {
    let r = o.restore;
    let from_policy = policy
        .spec
        .sources
        .databases
        .iter()
        .find(|x| x.name == d.source);
    let engine = s
        .database
        .as_ref()
        .map(|x| x.engine)
        .or(from_policy.map(|x| x.engine));
    let dumped_db = s
        .database
        .as_ref()
        .and_then(|x| x.database.clone())
        .or_else(|| from_policy.and_then(|x| x.database.clone()));
    let mut unit = RestoredSource {
        name: d.source.clone(),
        kind: SourceKind::Database,
        phase: SourcePhase::Pending,
        snapshot_id: s.snapshot_id.clone(),
        ..RestoredSource::default()
    };
    let Some(engine) = engine else {
        unit.phase = SourcePhase::Failed;
        unit.failure = Some(failure(
            "SourceNotInRestorePoint",
            format!(
                "the engine of database {} is recorded neither in the Backup nor in the policy",
                d.source
            ),
        ));
        return unit;
    };
    let mut db = RestoredDatabase {
        engine,
        ..RestoredDatabase::default()
    };
    if let Some(t) = &d.target {
        db.host = t.host.clone();
        db.port = t.port.unwrap_or(engine.default_port());
        db.database = t.database.clone().or(dumped_db);
        db.credentials = Some(t.credentials.clone());
    } else if let Some(e) = &d.ephemeral {
        let server = server_name(&r.name_any(), &d.source);
        let version = s.database.as_ref().and_then(|x| x.server_version.clone());
        let image = e
            .image
            .clone()
            .or_else(|| version.as_deref().and_then(|v| default_image(engine, v)));
        let Some(image) = image else {
            unit.phase = SourcePhase::Failed;
            unit.failure = Some(failure(
                "ServerVersionUnknown",
                format!(
                    "the Backup does not record which {} version was dumped; set spec.databases[].ephemeral.image",
                    engine.as_str()
                ),
            ));
            return unit;
        };
        db.host = format!("{server}.{target}.svc");
        db.port = engine.default_port();
        db.database = dumped_db;
        db.credentials = Some(DatabaseCredentialsRef {
            name: server.clone(),
            username_key: Some("username".into()),
            password_key: Some("password".into()),
        });
        db.server_name = Some(server);
        db.image = Some(image);
    }
    unit.database = Some(db);
    unit
}

/// Moves one unit forward by one step.
fn advance(
    o: &Observed<'_>,
    point: Option<&Backup>,
    entry: &mut RestoredSource,
    volumes_done: bool,
    p: &mut Plan,
) {
    let restore = o.restore.name_any();
    let name = job_name(&restore, entry.kind, &entry.name);
    if entry.start_time.is_none() {
        // Adoption after a lost status write: the child knows when it was made.
        entry.start_time = adopted_start(o, entry, &name);
    }
    if let Some(job) = o.jobs.iter().find(|j| j.name_any() == name) {
        entry.job_name = Some(name.clone());
        observe_job(o, job, &name, entry, p);
        return;
    }
    if entry.job_name.is_some() {
        fail(
            o,
            entry,
            failure(
                "JobVanished",
                format!("mover Job {name} disappeared before reporting a result"),
            ),
            p,
        );
        return;
    }
    if entry.kind == SourceKind::Manifests && !volumes_done {
        // Workloads must not start on volumes that are still being filled.
        return;
    }
    let (Some(policy), Some(store)) = (o.policy, o.store.as_ref()) else {
        let f = o.start_blocker.clone().unwrap_or_else(|| {
            failure(
                "PolicyNotFound",
                "the restore point's policy or store was deleted during the restore",
            )
        });
        fail(o, entry, f, p);
        return;
    };
    if entry.start_time.is_none() {
        entry.start_time = Some(micro(o.now));
    }
    entry.phase = SourcePhase::Running;
    let target = o
        .restore
        .status
        .as_ref()
        .and_then(|s| s.target_namespace.clone())
        .unwrap_or_else(|| target_namespace(o.restore));
    let job = match entry.kind {
        SourceKind::Volume => {
            let pvc = entry.target.clone().unwrap_or_else(|| entry.name.clone());
            match o.target_pvcs.iter().find(|c| c.name_any() == pvc) {
                Some(c) if is_ours(o.restore, &c.metadata) => {}
                Some(_) => {
                    fail(
                        o,
                        entry,
                        failure(
                            "TargetExists",
                            format!(
                                "PVC {pvc} already exists in namespace {target}; a restore never overwrites it (choose another name with spec.volumes.rename)"
                            ),
                        ),
                        p,
                    );
                    return;
                }
                None => p
                    .create_pvcs
                    .push(target_pvc(o, point, entry, &pvc, &target)),
            }
            volume_job(o, policy, store, entry, &pvc, &target)
        }
        SourceKind::Database => {
            let ephemeral = entry.database.as_ref().and_then(|d| d.server_name.clone());
            if let Some(server) = ephemeral
                && !server_ready(o, entry, &server, &target, p)
            {
                return;
            }
            database_job(o, policy, store, entry, &target)
        }
        SourceKind::Manifests => manifests_job(o, policy, store, entry, &target),
    };
    p.create_jobs.push(job);
    entry.job_name = Some(name);
}

/// The start recorded on a child created by an earlier attempt (the server comes first
/// for an ephemeral database).
fn adopted_start(o: &Observed<'_>, entry: &RestoredSource, job: &str) -> Option<MicroTime> {
    let server = entry
        .database
        .as_ref()
        .and_then(|d| d.server_name.as_deref());
    let metas = o
        .deployments
        .iter()
        .filter(|d| Some(d.name_any().as_str()) == server)
        .map(|d| &d.metadata)
        .chain(
            o.jobs
                .iter()
                .filter(|j| j.name_any() == job)
                .map(|j| &j.metadata),
        );
    metas
        .filter_map(|m| m.annotations.as_ref()?.get(STARTED_AT)?.parse().ok())
        .map(micro)
        .next()
}

fn fail(o: &Observed<'_>, entry: &mut RestoredSource, f: Failure, p: &mut Plan) {
    event(
        p,
        true,
        "SourceFailed",
        format!(
            "{} {}: {}: {}",
            kind_str(entry.kind),
            entry.name,
            f.reason,
            f.message
        ),
    );
    entry.phase = SourcePhase::Failed;
    entry.failure = Some(f);
    // A mover that reported its own end time ended then, not when we noticed.
    let end = entry.completion_time.clone().unwrap_or(micro(o.now));
    if let Some(s) = &entry.start_time {
        entry.duration_seconds = Some(seconds_between(s, &end));
    }
    entry.completion_time = Some(end);
}

/// Reads a mover Job's outcome into the unit.
fn observe_job(
    o: &Observed<'_>,
    job: &k8s_openapi::api::batch::v1::Job,
    name: &str,
    entry: &mut RestoredSource,
    p: &mut Plan,
) {
    match job_finished(job) {
        Some(true) => match pod_result(o.pods, job, true) {
            Some((Some(r), _)) if r.failure.is_none() => {
                record_result(o, entry, &r);
                // The per-table counts, when they fit in the termination message.
                if let Some(counts) = r
                    .details
                    .get("rowCounts")
                    .and_then(|v| serde_json::from_value::<RowCounts>(v.clone()).ok())
                {
                    p.status.row_counts.insert(entry.name.clone(), counts);
                }
                entry.phase = SourcePhase::Succeeded;
                event(p, false, "SourceRestored", restored_note(entry));
                if let Some(db) = &entry.database
                    && db.row_counts_match == Some(false)
                {
                    event(
                        p,
                        true,
                        "RowCountMismatch",
                        format!(
                            "database {}: restored row counts differ from the backup: {}",
                            entry.name,
                            db.row_count_mismatches.join("; ")
                        ),
                    );
                }
            }
            _ => fail(
                o,
                entry,
                failure(
                    "MoverResultMissing",
                    "the mover Job completed without reporting a result",
                ),
                p,
            ),
        },
        Some(false) => {
            let f = match pod_result(o.pods, job, false) {
                Some((Some(r), _)) if r.failure.is_some() => {
                    record_result(o, entry, &r);
                    r.failure.clone().expect("checked")
                }
                Some((_, summary)) => {
                    let mut f = job_failure_reason(job);
                    f.message = format!("{}; last pod: {summary}", f.message);
                    f
                }
                None => job_failure_reason(job),
            };
            fail(o, entry, f, p);
        }
        None => {
            if let Some(f) = stuck_pod(o.pods, job) {
                p.delete_jobs.push(name.to_string());
                fail(o, entry, f, p);
            } else if let Some(f) = no_pod(o.pods, job, name, o.now) {
                p.delete_jobs.push(name.to_string());
                fail(o, entry, f, p);
            } else if let Some((Some(r), _)) = pod_result(o.pods, job, false)
                && let Some(f) = r
                    .failure
                    .clone()
                    .filter(|f| PERMANENT.contains(&f.reason.as_str()))
            {
                // A retry would fail the same way (and, for a drill, only delay the verdict).
                record_result(o, entry, &r);
                p.delete_jobs.push(name.to_string());
                fail(o, entry, f, p);
            } else {
                // Also adopts a Job whose creation was never recorded (a crash between
                // creating it and writing the status).
                entry.phase = SourcePhase::Running;
                if entry.start_time.is_none() {
                    entry.start_time = Some(
                        job.metadata
                            .creation_timestamp
                            .as_ref()
                            .map_or(micro(o.now), |t| micro(t.0)),
                    );
                }
            }
        }
    }
}

/// Copies what the mover reported: times, sizes, the database verdict, the manifests
/// counts.
fn record_result(o: &Observed<'_>, entry: &mut RestoredSource, r: &MoverResult) {
    let d = &r.details;
    let u64_of = |k: &str| d.get(k).and_then(Value::as_u64);
    entry.snapshot_id = r.snapshot_id.clone().or(entry.snapshot_id.take());
    entry.files = r.files;
    entry.bytes = u64_of("bytesRestored");
    let started = detail_time(r, "startedAt");
    let finished = detail_time(r, "finishedAt").unwrap_or(o.now);
    entry.mover_start_time = started.map(micro);
    entry.completion_time = Some(micro(finished));
    entry.mover_seconds = match started {
        Some(s) => Some(finished.duration_since(s).as_secs_f64().max(0.0)),
        None => r.duration_seconds,
    };
    if let Some(s) = &entry.start_time {
        entry.duration_seconds = Some(seconds_between(s, &micro(finished)));
    }
    match entry.kind {
        SourceKind::Database => {
            if let Some(db) = entry.database.as_mut() {
                if let Some(name) = d.get("database").and_then(Value::as_str) {
                    db.database = Some(name.to_string());
                }
                db.server_version = d
                    .get("serverVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                db.backup_server_version = d
                    .get("backupServerVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                db.tables = u64_of("tables");
                db.rows = u64_of("rows");
                db.row_counts_match = d.get("rowCountsMatch").and_then(Value::as_bool);
                db.row_count_mismatches = d
                    .get("rowCountMismatches")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                entry.target = Some(format!(
                    "{}:{}/{}",
                    db.host,
                    db.port,
                    db.database.as_deref().unwrap_or("*")
                ));
            }
        }
        SourceKind::Manifests => {
            let list = |k: &str| {
                d.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let m = RestoredManifests {
                applied: u64_of("applied").unwrap_or(0),
                existing: u64_of("existing").unwrap_or(0),
                dropped: u64_of("dropped").unwrap_or(0),
                failed: list("failed"),
            };
            entry.target = Some(format!("{} object(s) applied", m.applied));
            entry.manifests = Some(m);
        }
        SourceKind::Volume => {}
    }
}

fn restored_note(entry: &RestoredSource) -> String {
    let took = entry
        .duration_seconds
        .map(|s| format!(" in {s:.1}s"))
        .unwrap_or_default();
    let snap = entry
        .snapshot_id
        .as_deref()
        .map(|s| &s[..s.len().min(8)])
        .unwrap_or("?");
    match entry.kind {
        SourceKind::Volume => format!(
            "volume {}: snapshot {snap} into PVC {} ({} files, {} bytes){took}",
            entry.name,
            entry.target.as_deref().unwrap_or("?"),
            entry.files.unwrap_or(0),
            entry.bytes.unwrap_or(0)
        ),
        SourceKind::Database => {
            let db = entry.database.clone().unwrap_or_default();
            format!(
                "database {}: snapshot {snap} into {} ({} tables, {} rows, row counts {}){took}",
                entry.name,
                entry.target.as_deref().unwrap_or("?"),
                db.tables.unwrap_or(0),
                db.rows.unwrap_or(0),
                match db.row_counts_match {
                    Some(true) => "match the backup",
                    Some(false) => "DIFFER from the backup",
                    None => "unknown",
                }
            )
        }
        SourceKind::Manifests => {
            let m = entry.manifests.clone().unwrap_or_default();
            format!(
                "manifests: snapshot {snap}: {} applied, {} already existed, {} dropped{took}",
                m.applied, m.existing, m.dropped
            )
        }
    }
}

mod build;
mod cancel;
mod finish;
use finish::{cleanup, finish};
mod point;
mod server;
mod validate;
pub use build::{SERVER_LABEL, STARTED_AT};
use build::{
    database_job, manifests_job, server_deployment, server_secret, server_service, target_pvc,
    volume_job,
};
pub use point::{Resolution, resolve_point};
use server::server_ready;
pub use validate::validate;

#[cfg(test)]
mod tests;

//! `lifeboat mover restore volume|database|manifests`: one source of a Restore, from one
//! snapshot into its target, never over existing data. Each subcommand ends with the
//! result contract ([`crate::jobs::result`]); its `details` carry `startedAt` and
//! `finishedAt` (RFC 3339, microseconds) so the controller records when the data really
//! moved, plus what each kind of restore has to say (row counts, objects applied).
//!
//! Refusals, with their categories (the Restore's failure reasons):
//! - `SnapshotMissing`: the repository no longer has the snapshot (retention, or a
//!   different repository);
//! - `TargetExists`: the volume already holds files, the database already holds tables,
//!   or a manifest restore is told to write outside its own namespace;
//! - `TargetNotFound`: the database does not exist and may not be created;
//! - `ApplyFailed`: the API server refused some manifests (the others were applied).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery, Scope};
use serde_json::{Map, Value, json};

use super::env::db_login;
use super::progress::Reporter;
use super::{Error, RepoAccess, write_result};
use crate::crd::restore::RowCounts;
use crate::db::{self, Connection, DumpMetadata, RestoreOptions};
use crate::jobs::mover::command::{
    NamespacedName, RestoreCommand, RestoreDatabase, RestoreManifests, RestoreRun, RestoreVolume,
};
use crate::jobs::result::{MoverResult, RESULT_VERSION, TERMINATION_MESSAGE_LIMIT};
use crate::repo::{self, ProgressSink, Repo, RestoreTarget, SnapshotFilter, SnapshotInfo};

/// Field manager of every object a manifest restore applies.
pub const FIELD_MANAGER: &str = "lifeboat-restore";
/// Written at the root of a volume while a restore fills it: a retry of the same
/// snapshot may continue; anything else there means the volume is not empty.
pub const VOLUME_MARKER: &str = ".lifeboat-restore-in-progress";
/// At most this many per-object or per-table problems are listed in a result.
const MAX_LISTED: usize = 20;

/// Keep trying to reach a database server this long unless the command says otherwise
/// (a server that was just started).
const DEFAULT_WAIT_SECONDS: u64 = 120;
/// Where a snapshot's YAML is unpacked unless the command names a place.
const DEFAULT_STAGING: &str = "/tmp/lifeboat-restore-manifests";

/// A failed restore that still has facts to report (e.g. what was applied).
struct Failed {
    /// Boxed: a repository error is large, and every restore step returns this.
    error: Box<Error>,
    details: Map<String, Value>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed {
            error: Box::new(error),
            details: Map::new(),
        }
    }
}

impl From<repo::Error> for Failed {
    fn from(e: repo::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<db::Error> for Failed {
    fn from(e: db::Error) -> Self {
        Error::from(e).into()
    }
}

fn micros(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Runs a `mover restore` subcommand and writes its result.
pub(crate) fn run(cmd: RestoreCommand, repo_args: &RepoAccess) -> Result<(), Error> {
    let started_at = Timestamp::now();
    let outcome = match cmd {
        RestoreCommand::Volume(a) => volume(a, repo_args),
        RestoreCommand::Database(a) => database(a, repo_args),
        RestoreCommand::Manifests(a) => manifests(a, repo_args),
    };
    let finished_at = micros(Timestamp::now());
    let (mut result, error) = match outcome {
        Ok(r) => (r, None),
        Err(f) => (
            MoverResult {
                v: RESULT_VERSION,
                failure: Some(super::failure(&f.error)),
                details: f.details,
                ..MoverResult::default()
            },
            Some(*f.error),
        ),
    };
    result
        .details
        .insert("startedAt".into(), micros(started_at).into());
    result
        .details
        .insert("finishedAt".into(), finished_at.into());
    write_result(&result);
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Opens the repository and finds the snapshot; a snapshot that is gone is
/// `SnapshotMissing`, not a generic not-found.
fn open_snapshot(
    repo_args: &RepoAccess,
    run: &RestoreRun,
) -> Result<(Repo, Arc<ProgressSink>, SnapshotInfo), Error> {
    let (repo, sink) = super::backup::open_with_sink(repo_args)?;
    let sn = repo
        .find_snapshot(&run.snapshot, &SnapshotFilter::default())
        .map_err(snapshot_error)?;
    of_policy(&sn, &run.policy)?;
    Ok((repo, sink, sn))
}

/// A restore reads only snapshots of the policy its restore point names: a snapshot ID
/// is input from the Restore's namespace (a Backup's status, a drill's restore point),
/// and in a shared repository another namespace's snapshot would open just as well.
pub(crate) fn of_policy(sn: &SnapshotInfo, policy: &NamespacedName) -> Result<(), Error> {
    let want = format!("{}/{}", policy.namespace, policy.name);
    match super::tags::value(&sn.tags, "policy") {
        Some(got) if got == want => Ok(()),
        got => Err(Error::SnapshotNotAllowed(format!(
            "snapshot {} belongs to policy {}, not {want}: a restore reads only the snapshots of its restore point's policy",
            sn.short_id,
            got.unwrap_or("(none)")
        ))),
    }
}

fn snapshot_error(e: repo::Error) -> Error {
    match e {
        repo::Error::SnapshotNotFound(id) => Error::SnapshotMissing(format!(
            "snapshot {id} is not in the repository (forgotten by retention, or another repository)"
        )),
        other => other.into(),
    }
}

fn base_result(sn: &SnapshotInfo, started: Instant) -> MoverResult {
    MoverResult {
        v: RESULT_VERSION,
        snapshot_id: Some(sn.id.clone()),
        snapshot_time: Some(sn.time.timestamp().to_string()),
        duration_seconds: Some(started.elapsed().as_secs_f64()),
        ..MoverResult::default()
    }
}

// ---------------------------------------------------------------------------------------
// Volumes

/// Why a volume may not be restored into: `None` when it is empty (apart from a file
/// system's `lost+found`), or holds our marker for this very snapshot: a retry of an
/// interrupted restore of the same snapshot continues over what the earlier attempt
/// wrote (the restorer replaces entries in its way; it never follows them).
pub(crate) fn volume_occupied(dir: &Path, snapshot: &str) -> Result<Option<String>, Error> {
    let io = |e: std::io::Error| Error::io(format!("reading {}", dir.display()), e);
    let mut others = Vec::new();
    let mut marker_ok = false;
    let mut has_marker = false;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry
            .map_err(io)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name == "lost+found" {
            continue;
        }
        if name == VOLUME_MARKER {
            // the volume is the tenant's: a marker that is a symlink is not ours
            let content = read_no_follow(&dir.join(VOLUME_MARKER)).unwrap_or_default();
            has_marker = true;
            marker_ok = content.trim() == snapshot;
            if !marker_ok {
                others.push(name);
            }
            continue;
        }
        others.push(name);
    }
    if others.is_empty() || marker_ok {
        return Ok(None);
    }
    others.sort();
    let shown: Vec<_> = others.iter().take(5).cloned().collect();
    Ok(Some(format!(
        "{} already holds {} entr{} ({}{}){}; a restore never overwrites data",
        dir.display(),
        others.len(),
        if others.len() == 1 { "y" } else { "ies" },
        shown.join(", "),
        if others.len() > shown.len() {
            ", ..."
        } else {
            ""
        },
        if has_marker {
            " next to an unfinished restore of another snapshot"
        } else {
            ""
        }
    )))
}

fn read_no_follow(path: &Path) -> std::io::Result<String> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
    let mut s = String::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?
        .take(256)
        .read_to_string(&mut s)?;
    Ok(s)
}

/// Writes the marker as a regular file of ours: whatever has its name is replaced, and a
/// symlink there is never written through (the mover runs as root on a tenant's volume).
fn write_no_follow(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path)?,
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?
        .write_all(content)
}

fn volume(a: RestoreVolume, repo_args: &RepoAccess) -> Result<MoverResult, Failed> {
    let RestoreVolume {
        target,
        devices_and_setid,
        run,
    } = a;
    if !target.is_dir() {
        return Err(Error::TargetNotFound(format!(
            "volume mount {} is not a directory",
            target.display()
        ))
        .into());
    }
    let started = Instant::now();
    let (repo, sink, sn) = open_snapshot(repo_args, &run)?;
    if let Some(why) = volume_occupied(&target, &sn.id)? {
        return Err(Error::TargetExists(why).into());
    }
    let marker = target.join(VOLUME_MARKER);
    write_no_follow(&marker, format!("{}\n", sn.id).as_bytes())
        .map_err(|e| Error::io(format!("writing {}", marker.display()), e))?;
    // The volume mover backs up its mount point; restore that directory's content into
    // ours (not the path itself), whatever the mount point was.
    let sub = sn.paths.first().cloned().unwrap_or_default();
    let reporter = Reporter::start(run.source.clone(), sink);
    let outcome = repo.restore_with(
        &sn.id,
        &SnapshotFilter::default(),
        &RestoreTarget {
            path: sub,
            target: target.clone(),
            delete: false,
            numeric_ids: true,
            devices_and_setid,
        },
    );
    reporter.stop();
    let (_, stats) = outcome?;
    std::fs::remove_file(&marker)
        .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
    let mut r = base_result(&sn, started);
    r.files = Some(stats.files_restored + stats.files_unchanged);
    r.details
        .insert("bytesRestored".into(), stats.bytes_restored.into());
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// Databases

/// Counts bytes written into the restore client for progress reports.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    sink: &'a ProgressSink,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sink.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The databases a dump fills on the target, each with its counts at backup time.
pub fn restore_targets(
    meta: &DumpMetadata,
    database: Option<&str>,
) -> Vec<(String, BTreeMap<String, u64>)> {
    if meta.scope == "all" {
        return meta
            .row_counts
            .iter()
            .map(|(db, c)| (db.clone(), c.clone()))
            .collect();
    }
    let target = database.unwrap_or(&meta.scope).to_string();
    let counts = meta
        .row_counts
        .get(&meta.scope)
        .cloned()
        .unwrap_or_default();
    vec![(target, counts)]
}

/// Compares restored counts with the recorded ones: `db.table: backup N, restored M` for
/// every difference, a missing table counting as 0 rows.
pub fn count_mismatches(
    restored: &BTreeMap<String, BTreeMap<String, u64>>,
    backup: &BTreeMap<String, BTreeMap<String, u64>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let dbs: std::collections::BTreeSet<&String> = restored.keys().chain(backup.keys()).collect();
    for db in dbs {
        let empty = BTreeMap::new();
        let r = restored.get(db).unwrap_or(&empty);
        let b = backup.get(db).unwrap_or(&empty);
        let tables: std::collections::BTreeSet<&String> = r.keys().chain(b.keys()).collect();
        for t in tables {
            match (b.get(t), r.get(t)) {
                (Some(x), Some(y)) if x == y => {}
                (x, y) => out.push(format!(
                    "{db}.{t}: backup {}, restored {}",
                    x.map_or("none".to_string(), |n| n.to_string()),
                    y.map_or("none".to_string(), |n| n.to_string())
                )),
            }
        }
    }
    out
}

fn wait_for_server(adapter: &dyn db::DatabaseAdapter, wait: Duration) -> Result<String, db::Error> {
    let deadline = Instant::now() + wait;
    loop {
        match adapter.server_version() {
            Ok(v) => return Ok(v),
            Err(e @ db::Error::Unreachable { .. }) if Instant::now() < deadline => {
                tracing::info!(error = %e, "database server not reachable yet; retrying");
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

fn database(a: RestoreDatabase, repo_args: &RepoAccess) -> Result<MoverResult, Failed> {
    let RestoreDatabase {
        engine,
        host,
        port,
        database,
        create_database,
        no_owner,
        wait_seconds,
        run,
    } = a;
    let wait_seconds = wait_seconds.unwrap_or(DEFAULT_WAIT_SECONDS);
    if let Some(d) = &database {
        db::validate_name(d)?;
    }
    let started = Instant::now();
    let (user, password) = db_login();
    let conn = Connection {
        host: Some(host.clone()),
        port,
        user,
        password,
        dump_args: Vec::new(),
    };
    let adapter = db::adapter(engine, conn);
    let (repo, sink, sn) = open_snapshot(repo_args, &run)?;
    let (_, meta) = db::read_metadata(&repo, &sn.id, &SnapshotFilter::default())?;
    if meta.engine != engine {
        return Err(Error::InvalidInput(format!(
            "snapshot {} holds a {} dump, not {engine}",
            sn.short_id, meta.engine
        ))
        .into());
    }
    let server_version = wait_for_server(adapter.as_ref(), Duration::from_secs(wait_seconds))?;
    let targets = restore_targets(&meta, database.as_deref());
    let single = meta.scope != "all";
    let mut create = false;
    for (name, _) in &targets {
        if adapter.database_exists(name)? {
            let tables = adapter.row_counts(name)?;
            if !tables.is_empty() {
                return Err(Error::TargetExists(format!(
                        "database {name:?} on {host} already holds {} table(s); a restore never overwrites data",
                        tables.len()
                    ))
                .into());
            }
        } else if single && !create_database {
            return Err(Error::TargetNotFound(format!(
                "database {name:?} does not exist on {host} (set createDatabase to create it)"
            ))
            .into());
        } else if single {
            create = true;
        }
    }
    let target_db = single.then(|| targets[0].0.clone());
    sink.total.store(meta.dump_bytes, Ordering::Relaxed);
    let reporter = Reporter::start(run.source.clone(), sink.clone());
    let id = sn.id.clone();
    let file = meta.dump_file.clone();
    let outcome = adapter.restore(
        &meta,
        &RestoreOptions {
            database: target_db.clone(),
            create_database: create,
            no_owner,
        },
        &mut |w| {
            let mut counting = Counting {
                inner: w,
                sink: &sink,
            };
            repo.dump(&id, &SnapshotFilter::default(), &file, &mut counting)
                .map(|_| ())
        },
    );
    reporter.stop();
    outcome?;
    let mut restored = BTreeMap::new();
    let mut backup = BTreeMap::new();
    for (name, counts) in &targets {
        restored.insert(name.clone(), adapter.row_counts(name)?);
        backup.insert(name.clone(), counts.clone());
    }
    let mismatches = count_mismatches(&restored, &backup);
    let tables: usize = restored.values().map(BTreeMap::len).sum();
    let rows: u64 = restored.values().flat_map(|t| t.values()).sum();
    let mut r = base_result(&sn, started);
    r.bytes_read = Some(meta.dump_bytes);
    let d = &mut r.details;
    if let Some(t) = &target_db {
        d.insert("database".into(), t.clone().into());
    }
    d.insert("bytesRestored".into(), meta.dump_bytes.into());
    d.insert("serverVersion".into(), server_version.into());
    d.insert(
        "backupServerVersion".into(),
        meta.server_version.clone().into(),
    );
    d.insert("tables".into(), tables.into());
    d.insert("rows".into(), rows.into());
    d.insert("rowCountsMatch".into(), mismatches.is_empty().into());
    if !mismatches.is_empty() {
        d.insert(
            "rowCountMismatches".into(),
            mismatches
                .iter()
                .take(MAX_LISTED)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        );
    }
    // The per-table counts ride along when they fit (the controller records them in the
    // Restore's status); the verdict and the mismatches above always do. A mover writes no
    // status itself: what decides an outcome comes only from this message.
    let mut with_counts = r.clone();
    with_counts
        .details
        .insert("rowCounts".into(), json!(RowCounts { restored, backup }));
    // Leave room for the times `run` adds.
    let fits = with_counts.to_message().len() + 120 < TERMINATION_MESSAGE_LIMIT;
    if fits {
        r = with_counts;
    }
    r.details.insert("rowCountsReported".into(), fits.into());
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// Manifests

/// How saved objects are changed on their way back.
#[derive(Clone, Debug, Default)]
pub struct TransformOptions {
    pub suppress_side_effects: bool,
    pub scale_to_zero: bool,
}

/// What happens to one saved object.
#[derive(Clone, Debug, PartialEq)]
pub enum Disposition {
    /// Apply this (rewritten) object.
    Apply(Value),
    /// Leave it out on purpose, for this reason.
    Drop(&'static str),
}

/// Rewrites a saved object for `target_ns`: the namespace (also in RoleBinding subjects
/// that pointed at the saved namespace), cluster-assigned fields, and with
/// `suppress_side_effects` everything that would act on the outside world. Refuses what
/// cannot live in a namespace.
pub fn transform(
    mut obj: Value,
    target_ns: &str,
    opts: &TransformOptions,
) -> Result<Disposition, String> {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("no kind")?
        .to_string();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(g, _)| g)
        .to_string();
    if obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(format!("{kind} without a name"));
    }
    if matches!(
        kind.as_str(),
        "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "PersistentVolume"
    ) {
        return Err(format!(
            "{kind} is cluster-scoped; only namespaced objects are restored"
        ));
    }
    super::manifests::sanitize(&mut obj);
    let saved_ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    obj["metadata"]["namespace"] = target_ns.into();
    let spec = obj.get_mut("spec").and_then(Value::as_object_mut);
    match (kind.as_str(), spec) {
        ("Ingress", _) if opts.suppress_side_effects => {
            return Ok(Disposition::Drop(
                "Ingresses are dropped with suppressSideEffects",
            ));
        }
        // A DaemonSet runs a pod on every node of the cluster, not in a sandbox.
        ("DaemonSet", _) if opts.suppress_side_effects => {
            return Ok(Disposition::Drop(
                "DaemonSets are dropped with suppressSideEffects",
            ));
        }
        // NetworkPolicies only ever allow more: a restored one could open a way out of the
        // restore's own isolation (a drill sandbox denies everything else).
        ("NetworkPolicy", _) if opts.suppress_side_effects => {
            return Ok(Disposition::Drop(
                "NetworkPolicies are dropped with suppressSideEffects",
            ));
        }
        // A PodDisruptionBudget would hold up node drains for pods nobody depends on.
        ("PodDisruptionBudget", _) if opts.suppress_side_effects => {
            return Ok(Disposition::Drop(
                "PodDisruptionBudgets are dropped with suppressSideEffects",
            ));
        }
        ("CronJob" | "Job", Some(spec)) if opts.suppress_side_effects && group == "batch" => {
            spec.insert("suspend".into(), true.into());
        }
        ("Service", Some(spec)) if opts.suppress_side_effects => {
            let t = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if matches!(t, "LoadBalancer" | "NodePort") {
                spec.insert("type".into(), "ClusterIP".into());
                for k in [
                    "externalTrafficPolicy",
                    "healthCheckNodePort",
                    "loadBalancerIP",
                    "loadBalancerSourceRanges",
                    "loadBalancerClass",
                    "allocateLoadBalancerNodePorts",
                ] {
                    spec.remove(k);
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.remove("nodePort");
                    }
                }
            }
            spec.remove("externalIPs");
        }
        ("Deployment" | "StatefulSet" | "ReplicaSet", Some(spec))
            if opts.scale_to_zero && (group == "apps" || group == "extensions") =>
        {
            spec.insert("replicas".into(), 0.into());
        }
        _ => {}
    }
    // A node port is cluster-wide: a copy next to the original would collide with it, so
    // in another namespace the API server assigns fresh ones (same namespace: e.g. a new
    // cluster after a disaster, the saved ports stay).
    if kind == "Service"
        && saved_ns.as_deref().is_some_and(|n| n != target_ns)
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.remove("healthCheckNodePort");
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
    if kind == "RoleBinding"
        && let (Some(saved), Some(subjects)) = (
            saved_ns.as_deref(),
            obj.get_mut("subjects").and_then(Value::as_array_mut),
        )
        && saved != target_ns
    {
        // Into another namespace, a binding keeps only the saved namespace's own
        // ServiceAccounts (now the target's): users, groups and other namespaces'
        // accounts were given rights in the saved namespace, not in this one.
        subjects.retain(|s| {
            s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && s.get("namespace").and_then(Value::as_str) == Some(saved)
        });
        for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
            s.insert("namespace".into(), target_ns.into());
        }
        if subjects.is_empty() {
            return Ok(Disposition::Drop(
                "a RoleBinding whose subjects all belong outside the saved namespace",
            ));
        }
    }
    Ok(Disposition::Apply(obj))
}

/// Apply order: what others refer to first (accounts, config, claims, RBAC, Services),
/// workloads after, so that pods find their ConfigMaps and claims when they start.
pub fn apply_rank(kind: &str) -> u8 {
    match kind {
        "ServiceAccount" => 0,
        "Secret" | "ConfigMap" => 1,
        "PersistentVolumeClaim" => 2,
        "Role" | "RoleBinding" => 3,
        "Service" | "NetworkPolicy" | "PodDisruptionBudget" => 4,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => 6,
        "Job" | "CronJob" => 7,
        "Ingress" => 8,
        _ => 5,
    }
}

/// Whether `wanted` (`Kind` or `Kind.group`) selects the saved directory `dir`
/// (`Kind` or `Kind.group`).
pub fn kind_selected(wanted: &[String], dir: &str) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let kind = dir.split_once('.').map_or(dir, |(k, _)| k);
    wanted
        .iter()
        .any(|w| w.eq_ignore_ascii_case(dir) || (!w.contains('.') && w.eq_ignore_ascii_case(kind)))
}

/// Reads one saved manifest and rewrites it for `namespace`. `Ok(Err(why))`: the file
/// holds nothing restorable (unreadable YAML, or what [`transform`] refuses); `Err`: the
/// file could not be read at all. The restore mover and `lifeboat manifests rewrite`
/// share it, so both treat a saved file alike.
pub(crate) fn load_saved(
    path: &Path,
    namespace: &str,
    opts: &TransformOptions,
) -> std::io::Result<Result<Disposition, String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(match serde_saphyr::from_str::<Value>(&text) {
        Ok(v) => transform(v, namespace, opts),
        Err(e) => Err(format!("unreadable YAML: {e}")),
    })
}

/// The saved YAML files under `root`: `(Kind[.group] directory, file)`, sorted.
pub(crate) fn saved_files(root: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let io = |e: std::io::Error| Error::io(format!("reading {}", root.display()), e);
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).map_err(io)? {
        let dir = dir.map_err(io)?;
        if !dir.file_type().map_err(io)?.is_dir() {
            continue;
        }
        let kind_dir = dir.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(dir.path()).map_err(io)? {
            let path = f.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                out.push((kind_dir.clone(), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The served resource for a saved object: its own version when still served, else the
/// group's most stable version of that kind (CronJob batch/v1beta1 → batch/v1).
fn resolve(discovery: &Discovery, api_version: &str, kind: &str) -> Option<(ApiResource, Scope)> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let candidates: Vec<_> = discovery
        .groups()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.resources_by_stability())
        .filter(|(ar, _)| ar.kind == kind)
        .collect();
    candidates
        .iter()
        .find(|(ar, _)| ar.version == version)
        .or_else(|| candidates.first())
        .map(|(ar, caps)| (ar.clone(), caps.scope.clone()))
}

/// The API server's own words for a refusal (not the client's debug dump).
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// Runs an API call, retrying passing faults (5xx, 429, connection trouble) a few times:
/// what is left is a refusal that another attempt would meet again.
async fn with_retries<T, F, Fut>(mut call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(kube::Error::Api(s)) if (s.code >= 500 || s.code == 429) && attempt < 4 => {
                tracing::info!(code = s.code, message = %s.message, attempt, "retrying");
            }
            Err(kube::Error::Api(s)) => return Err(kube::Error::Api(s)),
            Err(e) if attempt < 4 => tracing::info!(error = %e, attempt, "retrying"),
            other => return other,
        }
        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
    }
}

/// Applies the transformed objects: creates what does not exist, re-applies what an
/// earlier attempt of ours created, leaves everything else alone.
async fn apply_all(
    client: kube::Client,
    namespace: &str,
    objects: Vec<(String, Value)>,
) -> Result<(u64, Vec<String>, Vec<String>), Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| Error::kube_api(format!("API discovery: {e}")))?;
    let mut applied = 0u64;
    let mut existing = Vec::new();
    let mut failed = Vec::new();
    let pp = PatchParams::apply(FIELD_MANAGER);
    for (label, mut value) in objects {
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
        let Some((ar, scope)) = resolve(&discovery, &api_version, &kind) else {
            failed.push(format!(
                "{label}: {api_version} {kind} is not served by this cluster"
            ));
            continue;
        };
        if scope != Scope::Namespaced {
            failed.push(format!("{label}: {kind} is cluster-scoped; refused"));
            continue;
        }
        if value["metadata"]["namespace"].as_str() != Some(namespace) {
            // transform() always sets it; this guards the one rule that must never break.
            return Err(Error::TargetExists(format!(
                "{label} would be applied outside namespace {namespace}; refused"
            )));
        }
        value["apiVersion"] = ar.api_version.clone().into();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        match with_retries(|| api.get_opt(&name)).await {
            Ok(Some(live)) => {
                let ours = live
                    .metadata
                    .managed_fields
                    .iter()
                    .flatten()
                    .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER));
                if !ours {
                    existing.push(label);
                    continue;
                }
            }
            Ok(None) => {}
            Err(e) => {
                failed.push(format!("{label}: {}", api_message(&e)));
                continue;
            }
        }
        let body = Patch::Apply(&value);
        match with_retries(|| api.patch(&name, &pp, &body)).await {
            Ok(_) => applied += 1,
            Err(e) => failed.push(format!("{label}: {}", api_message(&e))),
        }
    }
    Ok((applied, existing, failed))
}

fn manifests(a: RestoreManifests, repo_args: &RepoAccess) -> Result<MoverResult, Failed> {
    let RestoreManifests {
        namespace,
        kinds,
        suppress_side_effects,
        scale_to_zero,
        staging,
        run,
    } = a;
    let staging = staging.unwrap_or_else(|| DEFAULT_STAGING.into());
    // A mover writes only into the namespace it runs in.
    if let Ok(own) = std::env::var("POD_NAMESPACE")
        && !own.is_empty()
        && own != namespace
    {
        return Err(Error::TargetExists(format!(
            "refusing to apply into {namespace:?} from a mover in namespace {own:?}"
        ))
        .into());
    }
    let started = Instant::now();
    let (repo, _sink, sn) = open_snapshot(repo_args, &run)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| Error::io(format!("clearing {}", staging.display()), e))?;
    }
    let sub = sn.paths.first().cloned().unwrap_or_default();
    repo.restore_with(
        &sn.id,
        &SnapshotFilter::default(),
        &RestoreTarget {
            path: sub,
            target: staging.clone(),
            delete: false,
            numeric_ids: false,
            devices_and_setid: false,
        },
    )?;
    let opts = TransformOptions {
        suppress_side_effects,
        scale_to_zero,
    };
    let mut objects = Vec::new();
    let mut dropped = 0u64;
    let mut failed = Vec::new();
    for (dir, path) in saved_files(&staging)? {
        if !kind_selected(&kinds, &dir) {
            continue;
        }
        let label = format!(
            "{dir}/{}",
            path.file_stem().unwrap_or_default().to_string_lossy()
        );
        let loaded = load_saved(&path, &namespace, &opts)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        match loaded {
            Ok(Disposition::Apply(v)) => objects.push((label, v)),
            Ok(Disposition::Drop(why)) => {
                tracing::info!(object = %label, why, "not restored");
                dropped += 1;
            }
            Err(e) => failed.push(format!("{label}: {e}")),
        }
    }
    objects.sort_by_key(|(_, v)| apply_rank(v["kind"].as_str().unwrap_or_default()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("runtime: {e}")))?;
    let (applied, existing, apply_failed) = rt.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            Error::kube_api(format!(
                "no Kubernetes client (in-cluster config or KUBECONFIG): {e}"
            ))
        })?;
        apply_all(client, &namespace, objects).await
    })?;
    failed.extend(apply_failed);
    let mut r = base_result(&sn, started);
    let d = &mut r.details;
    d.insert("applied".into(), applied.into());
    d.insert("existing".into(), (existing.len() as u64).into());
    d.insert("dropped".into(), dropped.into());
    if !existing.is_empty() {
        d.insert(
            "existingObjects".into(),
            existing
                .into_iter()
                .take(MAX_LISTED)
                .collect::<Vec<_>>()
                .into(),
        );
    }
    if failed.is_empty() {
        return Ok(r);
    }
    d.insert(
        "failed".into(),
        failed
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .into(),
    );
    Err(Failed {
        error: Box::new(Error::ApplyFailed(format!(
            "{} object(s) not restored ({} applied): {}",
            failed.len(),
            applied,
            failed
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        details: std::mem::take(&mut r.details),
    })
}

#[cfg(test)]
mod tests;

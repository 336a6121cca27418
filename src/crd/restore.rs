//! `Restore`: bring a restore point of a policy back, into the same namespace or another
//! one that has opted in, source by source.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::backup::{Progress, SourceKind, SourcePhase};
use super::backup_policy::DatabaseEngine;
use super::common::{DURATION_PATTERN, DatabaseCredentialsRef, Failure};
use super::rules::{
    MAX_DURATION_LENGTH, MAX_TIME_LENGTH, exactly_one_of, immutable, not_blank, port,
    positive_duration, rfc3339_time, unique,
};

/// Namespaces other than the Restore's own accept restores only when they carry this
/// annotation listing the namespaces allowed to restore into them (`*` for any).
pub const ALLOW_RESTORE_FROM: &str = "lifeboat.dev/allow-restore-from";

/// A restore of some or all sources of a restore point. The spec is immutable: a Restore
/// is the record of one recovery.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Restore",
    namespaced,
    status = "RestoreStatus",
    shortname = "rst",
    category = "lifeboat",
    doc = "Restores a restore point of a BackupPolicy (volumes, databases, manifests) into a namespace.",
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".status.restorePoint.policy"
    ),
    printcolumn(
        name = "Backup",
        type_ = "string",
        json_path = ".status.restorePoint.backup"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".status.targetNamespace"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = immutable("spec", "a Restore is the record of one recovery; create a new Restore instead"))]
pub struct RestoreSpec {
    /// Which restore point.
    pub source: RestoreSource,
    /// Namespace to restore into. Default: the Restore's own namespace. Another namespace
    /// must exist and carry the annotation `lifeboat.dev/allow-restore-from` listing this
    /// namespace (or `*`), so a Restore can never write where it was not invited.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("!format.dns1123Label().validate(self).hasValue()")
        .message("targetNamespace must be a namespace name: lowercase letters, digits and '-', at most 63")
        .reason(Reason::FieldValueInvalid))]
    pub target_namespace: Option<String>,
    /// Which volumes, and how. Omit to restore every volume of the restore point;
    /// `skip: true` restores none.
    pub volumes: Option<VolumeRestore>,
    /// Which databases, and where to. Omit to restore none. Each source at most once; at
    /// most 32 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = unique("databases", "source"))]
    pub databases: Vec<DatabaseRestore>,
    /// Re-apply the saved manifests. Omit to restore none.
    pub manifests: Option<ManifestRestore>,
}

/// A restore point: a Backup by name, a policy's newest restore point at or before a
/// time, or a restore point of a policy identity read from a store's repository alone
/// (no Backup object: a new cluster, a deleted namespace). Set exactly one of
/// `backupRef`, `policyRef` and `storeRef`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = exactly_one_of(&["backupRef", "policyRef", "storeRef"], "source"),
    validation = Rule::new("!has(self.pointInTime) || has(self.policyRef) || has(self.storeRef)")
        .message("source.pointInTime needs policyRef or storeRef: a Backup is one restore point already")
        .field_path(".pointInTime")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("has(self.storeRef) == has(self.fromPolicy)")
        .message("source.fromPolicy and source.storeRef go together: the store to read and whose restore points")
        .field_path(".fromPolicy")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.backupName) || (has(self.storeRef) && !has(self.pointInTime))")
        .message("source.backupName needs storeRef and excludes pointInTime: it names one restore point of the store")
        .field_path(".backupName")
        .reason(Reason::FieldValueForbidden),
)]
pub struct RestoreSource {
    /// A Backup in this namespace.
    pub backup_ref: Option<LocalRef>,
    /// A BackupPolicy in this namespace; with `pointInTime`, its newest successful restore
    /// point at or before that time, otherwise its newest.
    pub policy_ref: Option<LocalRef>,
    /// A store whose repository holds the restore point: a BackupStore of this namespace,
    /// or a ClusterBackupStore that allows it. With `fromPolicy`; the newest restore
    /// point, or the newest at or before `pointInTime`, or the one `backupName` names.
    pub store_ref: Option<crate::crd::backup_policy::StoreRef>,
    /// With `storeRef`: the policy identity `namespace/policy` whose restore points to
    /// read, as its snapshots are tagged (it may name a namespace that no longer
    /// exists). From a ClusterBackupStore, another namespace's identity needs the store's
    /// `crossNamespaceRestore` to list this namespace.
    #[schemars(length(max = 317))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$')")
        .message("fromPolicy must be namespace/policy, e.g. shop/daily")
        .reason(Reason::FieldValueInvalid))]
    pub from_policy: Option<String>,
    /// With `storeRef`: the restore point made by this run (the Backup's name, as
    /// `lifeboat restore points` lists it).
    #[schemars(length(max = 253))]
    pub backup_name: Option<String>,
    /// RFC 3339 time, e.g. `2026-01-31T23:00:00Z`; only with `policyRef` or `storeRef`.
    #[schemars(length(max = MAX_TIME_LENGTH))]
    #[x_kube(validation = rfc3339_time("pointInTime"))]
    pub point_in_time: Option<String>,
}

/// A reference by name within the namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LocalRef {
    /// Name of the object.
    pub name: String,
}

/// Which volumes to restore.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRestore {
    /// Restore no volume at all (e.g. a database-only restore); `include` is ignored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip: bool,
    /// Restore only these source PVCs (by their name at backup time). Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Name of the restored PVC for a source PVC. Default: the source name. An existing
    /// PVC of that name is never overwritten: the source fails with `TargetExists`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// StorageClass of the restored PVCs. Default: the source PVC's class.
    pub storage_class_name: Option<String>,
}

/// Where one database source is restored.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = exactly_one_of(&["target", "ephemeral"], "databases[]"))]
pub struct DatabaseRestore {
    /// The database source's name in the policy (at most 40 characters, as there).
    #[schemars(length(max = 40))]
    pub source: String,
    /// An existing server to restore into.
    pub target: Option<DatabaseTarget>,
    /// Start a throwaway server in the target namespace and restore into it (what DR
    /// drills do). Exactly one of `target` and `ephemeral` is set.
    pub ephemeral: Option<EphemeralDatabase>,
}

/// An existing database server.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseTarget {
    /// Host name or Service DNS name.
    #[schemars(length(max = 253))]
    #[x_kube(validation = not_blank("host"))]
    pub host: String,
    /// Port. Default: the engine's.
    #[x_kube(validation = port("port"))]
    pub port: Option<u16>,
    /// Database to restore into. Default: the dumped database's name.
    pub database: Option<String>,
    /// Login with rights to create and fill the database: a Secret in the Restore's
    /// namespace (copied for the mover into the target namespace while it runs).
    pub credentials: DatabaseCredentialsRef,
    /// Create the database first. An existing non-empty database is never overwritten:
    /// the source fails with `TargetExists`.
    #[serde(default)]
    pub create_database: bool,
}

/// A throwaway database server started for the restore.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralDatabase {
    /// Server image. Default: the engine's official image at the server version recorded
    /// with the dump (e.g. `postgres:15`, `mariadb:10.11`).
    pub image: Option<String>,
    /// Compute resources of the server.
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Give up if the server is not ready after this long (not zero). Default `5m`.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("startupTimeout"))]
    pub startup_timeout: Option<String>,
}

/// How saved manifests are re-applied.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRestore {
    /// Restore only these kinds (`Kind` or `Kind.group`). Empty: all saved kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Suspend CronJobs, turn LoadBalancer/NodePort Services into ClusterIP, and drop
    /// Ingresses, so a restored copy cannot act on the outside world. Default false for a
    /// Restore, always on in drills.
    #[serde(default)]
    pub suppress_side_effects: bool,
    /// Scale workloads to zero instead of their saved replicas.
    #[serde(default)]
    pub scale_to_zero: bool,
}

/// Life cycle of a Restore.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum RestorePhase {
    /// Accepted, nothing started.
    #[default]
    Pending,
    /// Movers are running.
    Running,
    /// Every requested source was restored.
    Succeeded,
    /// Some sources were restored, others failed.
    PartiallyFailed,
    /// Nothing was restored, or the restore could not start.
    Failed,
    /// Stopped on request (annotation `lifeboat.dev/cancel: "true"`): its movers were
    /// deleted, and so were the PVCs and servers of the sources it had not finished.
    Cancelled,
}

impl RestorePhase {
    /// Finished restores never change again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::PartiallyFailed | Self::Failed | Self::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::PartiallyFailed => "PartiallyFailed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// Observed state of a Restore.
///
/// Times are `MicroTime` (RFC 3339 with microseconds), so that restore durations (RTO
/// evidence) are measured, not rounded to whole seconds.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// `.metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Pending, Running, Succeeded, PartiallyFailed, Failed or Cancelled.
    pub phase: Option<RestorePhase>,
    /// The restore point resolved from `spec.source`.
    pub restore_point: Option<RestorePointRef>,
    /// Namespace the data went to.
    pub target_namespace: Option<String>,
    /// When the restore started (the restore point was resolved and the first source began).
    pub start_time: Option<MicroTime>,
    /// When it finished: the end of the last source's mover (or when the controller
    /// decided the outcome, if no mover ran).
    pub completion_time: Option<MicroTime>,
    /// Wall time, e.g. `3m12s`.
    pub duration: Option<String>,
    /// Wall time from `startTime` to `completionTime`, in seconds.
    pub duration_seconds: Option<f64>,
    /// One entry per restored source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<RestoredSource>,
    /// Not written any more: movers write no status (they log their progress).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub progress: BTreeMap<String, Progress>,
    /// Per-table row counts of each restored database source (by source name): after the
    /// restore, and as recorded at backup time, as its mover reported them when they fit
    /// in its result (4 KiB). The verdict is always in
    /// `sources[].database.rowCountsMatch`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub row_counts: BTreeMap<String, RowCounts>,
    /// Why the restore failed as a whole.
    pub failure: Option<Failure>,
    /// `Complete`, with the phase as reason (`False` with a reason while waiting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A resolved restore point.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestorePointRef {
    /// The Backup whose snapshots are restored (from a store: the run that made them).
    pub backup: String,
    /// The BackupPolicy that made it.
    #[serde(default)]
    pub policy: String,
    /// Its restore point time.
    pub time: Time,
    /// From a store (`source.storeRef`): the namespace of the policy identity, when the
    /// restore point was read from the repository rather than a Backup object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// From a store: the store's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// What one source's restore did.
///
/// Timeline of a source: `startTime` (the controller began: PVC or database server
/// created, or mover Job created) → `moverStartTime` (the mover began reading the
/// snapshot) → `completionTime` (the mover finished). For an ephemeral database,
/// `database.serverReadyTime` lies between the first two.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredSource {
    /// Source name (PVC, database source, `manifests`).
    pub name: String,
    /// `Volume`, `Database` or `Manifests`.
    pub kind: SourceKind,
    /// Pending, Running, Succeeded or Failed.
    pub phase: SourcePhase,
    /// The snapshot restored.
    pub snapshot_id: Option<String>,
    /// Where it went: a PVC name, `host:port/database`, or the number of objects applied.
    pub target: Option<String>,
    /// The mover Job doing the work (in the target namespace).
    pub job_name: Option<String>,
    /// Files restored.
    pub files: Option<u64>,
    /// Bytes restored.
    pub bytes: Option<u64>,
    /// When work on this source began.
    pub start_time: Option<MicroTime>,
    /// When the mover began reading the snapshot.
    pub mover_start_time: Option<MicroTime>,
    /// When the mover finished (or the source failed).
    pub completion_time: Option<MicroTime>,
    /// From `startTime` to `completionTime`, in seconds.
    pub duration_seconds: Option<f64>,
    /// How long the mover itself took (reading the snapshot and writing the data), in
    /// seconds.
    pub mover_seconds: Option<f64>,
    /// Database sources: where the data is now and how it compares with the backup.
    pub database: Option<RestoredDatabase>,
    /// Manifest sources: what was applied.
    pub manifests: Option<RestoredManifests>,
    /// Why it failed.
    pub failure: Option<Failure>,
}

/// A restored database: how to reach it and whether its rows match the backup.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredDatabase {
    /// `postgres` or `mysql`.
    pub engine: DatabaseEngine,
    /// Host the data was restored to (for an ephemeral server: its Service's DNS name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database restored into (for an all-databases dump: unset, the dump's databases).
    pub database: Option<String>,
    /// Secret in the target namespace with the login (for an ephemeral server:
    /// generated, keys `username` and `password`).
    pub credentials: Option<DatabaseCredentialsRef>,
    /// Ephemeral server: its Deployment and Service name in the target namespace.
    pub server_name: Option<String>,
    /// Ephemeral server: the image it runs.
    pub image: Option<String>,
    /// Ephemeral server: when it became ready.
    pub server_ready_time: Option<MicroTime>,
    /// Version of the server the data was restored into.
    pub server_version: Option<String>,
    /// Version of the server that was dumped (from the dump's metadata).
    pub backup_server_version: Option<String>,
    /// Tables after the restore.
    pub tables: Option<u64>,
    /// Rows after the restore, all tables together.
    pub rows: Option<u64>,
    /// Whether every table has exactly the rows recorded at backup time (and no table is
    /// missing or extra). The full counts are in `status.rowCounts`.
    pub row_counts_match: Option<bool>,
    /// Tables whose counts differ, as `db.table: backup N, restored M` (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_count_mismatches: Vec<String>,
}

/// Per-table row counts of one database source: database → table → rows.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RowCounts {
    /// Counted with `count(*)` right after the restore.
    #[serde(default)]
    pub restored: BTreeMap<String, BTreeMap<String, u64>>,
    /// Recorded at backup time, exact for the dump (`lifeboat-metadata.json`).
    #[serde(default)]
    pub backup: BTreeMap<String, BTreeMap<String, u64>>,
}

/// What a manifest restore applied.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredManifests {
    /// Objects created (server-side apply, field manager `lifeboat-restore`).
    pub applied: u64,
    /// Objects left alone because an object of that name already existed (never
    /// overwritten).
    pub existing: u64,
    /// Objects not applied on purpose (Ingresses with `suppressSideEffects`).
    pub dropped: u64,
    /// Objects the API server refused, as `Kind/name: reason` (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

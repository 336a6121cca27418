//! `BackupPolicy`: what to protect in a namespace (volumes, databases, manifests), when,
//! where to, how long to keep it, and the recovery-point objective.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::{
    ConcurrencyPolicy, DURATION_PATTERN, DatabaseCredentialsRef, DeletionPolicy, Retention,
    ScheduleSpec,
};
use super::rules::{
    MAX_DURATION_LENGTH, at_least, exactly_one_of, immutable, not_blank, port, positive_duration,
    unique,
};

/// Scheduled protection of a namespace's data.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "BackupPolicy",
    namespaced,
    status = "BackupPolicyStatus",
    shortname = "bp",
    category = "lifeboat",
    doc = "What to back up in a namespace, when, to which store, and how long to keep it.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule.cron"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Last Success",
        type_ = "date",
        json_path = ".status.lastSuccessfulBackupTime"
    ),
    printcolumn(
        name = "Next Run",
        type_ = "string",
        json_path = ".status.nextBackupTime"
    ),
    printcolumn(name = "RPO", type_ = "string", json_path = ".status.currentRPO"),
    printcolumn(
        name = "RPO Met",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RPOMet\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicySpec {
    /// The store (repository) the backups go to. Immutable: it is the policy's identity
    /// in the repository. Its snapshots, retention, `deletionPolicy`, the restore points
    /// of its Backups and the drills of the policy all live in that store; pointing the
    /// policy elsewhere would strand them. To move, create a new policy.
    #[x_kube(validation = immutable(
        "storeRef",
        "the policy's snapshots and restore points live in that store; create a new policy to use another",
    ))]
    pub store_ref: StoreRef,
    /// When backups run.
    pub schedule: ScheduleSpec,
    /// What is backed up. Each source becomes its own snapshot in the repository, tagged
    /// with the policy and the source name.
    pub sources: Sources,
    /// How many restore points to keep. Applied after each successful backup (forget and
    /// prune), one maintenance Job per repository at a time. Omit it to keep everything;
    /// `retention: {}` is refused (it would read as a policy that forgets).
    // Never serialized empty: the rule on `Retention` refuses `{}`, and a schema default
    // of `{}` would put it into every stored object.
    #[serde(default, skip_serializing_if = "Retention::is_empty")]
    pub retention: Retention,
    /// Recovery objectives this policy is measured against.
    #[serde(default)]
    pub objectives: PolicyObjectives,
    /// Whether a due backup starts while the previous one is still running. Default
    /// `Forbid`: the run is skipped and the skip recorded.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Finished successful Backup objects to keep, at least 1 (they are the restore points
    /// Restores and drills choose from). Default 3.
    #[x_kube(validation = at_least(
        "successfulBackupsHistoryLimit",
        1,
        " (successful Backups are the restore points)",
    ))]
    pub successful_backups_history_limit: Option<u32>,
    /// Finished failed Backup objects to keep; 0 keeps none. Default 3.
    pub failed_backups_history_limit: Option<u32>,
    /// What happens to this policy's snapshots in the repository when the policy is
    /// deleted. Default `Retain`: deleting a policy never deletes backups. `Delete`: the
    /// policy carries the finalizer `lifeboat.dev/delete-snapshots` and, once deleted,
    /// stays until a Job has forgotten its snapshots and pruned (the `SnapshotDeletion`
    /// condition says why it waits; see docs/backup.md).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Settings of the mover Jobs that do the work.
    #[serde(default)]
    pub mover: MoverSpec,
}

/// A reference to a BackupStore in the same namespace, or a ClusterBackupStore.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    /// `BackupStore` (default) or `ClusterBackupStore`.
    #[serde(default)]
    pub kind: StoreKind,
    /// Name of the store.
    pub name: String,
}

/// Kind of store a policy refers to.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// A namespaced BackupStore in the policy's namespace.
    #[default]
    BackupStore,
    /// A cluster-scoped ClusterBackupStore that allows the policy's namespace.
    ClusterBackupStore,
}

/// Everything a policy backs up: at least one volume, database or `manifests`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.volumes) && size(self.volumes) > 0) || (has(self.databases) && size(self.databases) > 0) || has(self.manifests)"
).message("sources must name at least one of volumes, databases and manifests").reason(Reason::FieldValueRequired))]
pub struct Sources {
    /// PersistentVolumeClaims to back up, by name or label selector. At most 64 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub volumes: Vec<VolumeSource>,
    /// Databases to dump logically (pg_dump, mariadb-dump) and stream into the
    /// repository. Names are unique; at most 32 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = unique("databases", "name"))]
    pub databases: Vec<DatabaseSource>,
    /// The namespace's Kubernetes objects, stored as YAML in their own snapshot so the
    /// namespace can be rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<ManifestSource>,
}

/// One or more PVCs and how to read them consistently.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = exactly_one_of(&["pvcName", "selector"], "volumes[]"))]
pub struct VolumeSource {
    /// Name of one PVC. Exactly one of `pvcName` and `selector` is set.
    pub pvc_name: Option<String>,
    /// Label selector matching PVCs in the namespace; each match is its own source.
    pub selector: Option<LabelSelector>,
    /// How the data is read. `Snapshot` (default) takes a CSI VolumeSnapshot, restores
    /// it into a temporary PVC and backs that up, so the application never sees a
    /// second reader or writer and the copy is crash-consistent. `Direct` mounts the
    /// live PVC read-only (on the node that already mounts it, for ReadWriteOnce).
    #[serde(default)]
    pub copy_method: CopyMethod,
    /// VolumeSnapshotClass for `Snapshot`. Default: the class annotated as default for
    /// the volume's CSI driver.
    pub volume_snapshot_class_name: Option<String>,
    /// StorageClass of the temporary PVC restored from the snapshot. Default: the
    /// source PVC's class.
    pub storage_class_name: Option<String>,
    /// Glob patterns (restic syntax) of paths inside the volume not to back up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// How a volume's data is read.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum CopyMethod {
    /// Back up a CSI VolumeSnapshot of the volume.
    #[default]
    Snapshot,
    /// Mount the live volume read-only.
    Direct,
}

/// A database dumped logically into the repository.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSource {
    /// Name of this source, unique in the policy (lowercase letters, digits, `-`). It
    /// names the snapshot's tag and the entry in Backup status.
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 40))]
    pub name: String,
    /// `postgres` or `mysql` (MySQL and MariaDB).
    pub engine: DatabaseEngine,
    /// Host name or Service DNS name of the server.
    #[schemars(length(max = 253))]
    #[x_kube(validation = not_blank("host"))]
    pub host: String,
    /// Port. Default 5432 for postgres, 3306 for mysql.
    #[x_kube(validation = port("port"))]
    pub port: Option<u16>,
    /// Database to dump. Omit to dump every database of the server.
    pub database: Option<String>,
    /// Secret with the login. The user needs read access to everything dumped.
    pub credentials: DatabaseCredentialsRef,
    /// Extra arguments appended to pg_dump / mariadb-dump.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
}

/// A database engine.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseEngine {
    /// PostgreSQL (pg_dump custom format).
    #[default]
    Postgres,
    /// MySQL or MariaDB (mariadb-dump / mysqldump SQL).
    Mysql,
}

impl DatabaseEngine {
    pub fn default_port(self) -> u16 {
        match self {
            DatabaseEngine::Postgres => 5432,
            DatabaseEngine::Mysql => 3306,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseEngine::Postgres => "postgres",
            DatabaseEngine::Mysql => "mysql",
        }
    }
}

/// Which Kubernetes objects of the namespace are saved.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSource {
    /// Kinds to save, as `Kind` or `Kind.group` (e.g. `Deployment`, `Ingress.networking.k8s.io`).
    /// Default: Deployment, StatefulSet, DaemonSet, CronJob, Job, Service, ConfigMap,
    /// PersistentVolumeClaim, ServiceAccount, Role, RoleBinding, Ingress, NetworkPolicy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Only objects matching this selector. Default: all.
    pub selector: Option<LabelSelector>,
    /// Also save Secrets. They are stored encrypted in the repository like everything
    /// else, but anyone with the repository password can read them. Default false.
    #[serde(default)]
    pub include_secrets: bool,
}

/// Objectives a policy is measured against.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyObjectives {
    /// Recovery point objective: the newest successful restore point must never be
    /// older than this (e.g. `1h`; not zero). Sets the `RPOMet` condition.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("rpo"))]
    pub rpo: Option<String>,
}

/// Settings of the mover Jobs.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverSpec {
    /// Mover image. Default: the operator's configured mover image (the database
    /// variant, with pg_dump and mariadb-dump, for database sources).
    pub image: Option<String>,
    /// Compute resources of the mover container.
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Give up on a run after this long (e.g. `6h`; not zero). Default `6h`.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("activeDeadline"))]
    pub active_deadline: Option<String>,
    /// Retries of a failed mover pod before the source counts as failed; 0 for none.
    /// Default 1.
    #[x_kube(validation = at_least("backoffLimit", 0, ""))]
    pub backoff_limit: Option<i32>,
    /// Node labels mover pods must match (e.g. to keep them off database nodes).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Tolerations of mover pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
}

/// Observed state of a policy.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// `.metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Name of the newest Backup of this policy.
    pub last_backup: Option<String>,
    /// When the newest Backup was created (a scheduled one: when its slot was handled).
    pub last_backup_time: Option<Time>,
    /// Name of the newest Backup that succeeded.
    pub last_successful_backup: Option<String>,
    /// Restore point time of the newest successful Backup.
    pub last_successful_backup_time: Option<Time>,
    /// The schedule slot the controller last acted on (created a run or skipped it).
    pub last_schedule_time: Option<Time>,
    /// Next schedule slot, RFC 3339 in UTC.
    pub next_backup_time: Option<String>,
    /// Age of the newest successful restore point when status was written, e.g. `42m`.
    #[serde(rename = "currentRPO")]
    pub current_rpo: Option<String>,
    /// The newest restore point a DR drill restored and verified.
    pub last_verified_restore_point: Option<VerifiedRestorePoint>,
    /// `Ready` and `RPOMet`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A restore point proven restorable by a drill.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedRestorePoint {
    /// The Backup whose snapshots were restored.
    pub backup: String,
    /// Its restore point time.
    pub restore_point_time: Time,
    /// The DrillRun that verified it.
    pub drill_run: String,
    /// When the drill passed.
    pub verified_time: Time,
}

//! `Backup`: one run of a BackupPolicy, created by its schedule or by a user, and the
//! record of what each source produced.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::backup_policy::DatabaseEngine;
use super::common::Failure;
use super::rules::immutable;

/// One backup run of a policy. The spec is immutable: a Backup is the record of one run.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "bk",
    category = "lifeboat",
    doc = "One run of a BackupPolicy: created by its schedule, or by a user for an on-demand backup.",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policyRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Trigger",
        type_ = "string",
        json_path = ".spec.trigger",
        priority = "1"
    ),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startTime"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(
        name = "Added",
        type_ = "string",
        json_path = ".status.totals.bytesAddedHuman",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = immutable("spec", "a Backup is the record of one run; create a new Backup instead"))]
pub struct BackupSpec {
    /// The policy whose sources, store and settings this run uses.
    pub policy_ref: PolicyRef,
    /// Who started the run. Users creating a Backup by hand leave the default.
    #[serde(default)]
    pub trigger: Trigger,
    /// The schedule slot this run belongs to (set by the controller for scheduled runs).
    pub scheduled_time: Option<Time>,
}

/// A reference to a BackupPolicy in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// Name of the BackupPolicy.
    pub name: String,
}

/// What started a run.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Trigger {
    /// Created by a user or a tool (the default).
    #[default]
    Manual,
    /// Created by the policy's schedule.
    Schedule,
}

/// Life cycle of a run.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum BackupPhase {
    /// Accepted, movers not started yet.
    #[default]
    Pending,
    /// Movers are running.
    Running,
    /// Every source produced a snapshot.
    Succeeded,
    /// Some sources produced a snapshot, others failed.
    PartiallyFailed,
    /// No source produced a snapshot, or the run could not start.
    Failed,
    /// Stopped on request (annotation `lifeboat.dev/cancel: "true"`) before it finished:
    /// its movers were deleted; it is no restore point and triggers no retention.
    Cancelled,
}

impl BackupPhase {
    /// Finished runs never change again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            BackupPhase::Succeeded
                | BackupPhase::PartiallyFailed
                | BackupPhase::Failed
                | BackupPhase::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackupPhase::Pending => "Pending",
            BackupPhase::Running => "Running",
            BackupPhase::Succeeded => "Succeeded",
            BackupPhase::PartiallyFailed => "PartiallyFailed",
            BackupPhase::Failed => "Failed",
            BackupPhase::Cancelled => "Cancelled",
        }
    }
}

/// Observed state of a run.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// `.metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Pending, Running, Succeeded, PartiallyFailed, Failed or Cancelled.
    pub phase: Option<BackupPhase>,
    /// When the first mover started.
    pub start_time: Option<Time>,
    /// When the run finished.
    pub completion_time: Option<Time>,
    /// Wall time from start to completion, e.g. `1m32s`.
    pub duration: Option<String>,
    /// The restore point this run produced: the time its snapshots describe.
    pub restore_point_time: Option<Time>,
    /// One entry per source of the policy, in policy order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceResult>,
    /// Sums over the sources.
    pub totals: Option<Totals>,
    /// Why the run failed as a whole (e.g. the policy or store is invalid).
    pub failure: Option<Failure>,
    /// Not written any more: movers write no status (they log their progress).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub progress: BTreeMap<String, Progress>,
    /// `Complete` (with the phase as reason) and `RetentionApplied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What one source produced.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceResult {
    /// Source name: the PVC name for volumes, the database source's name, or `manifests`.
    pub name: String,
    /// `Volume`, `Database` or `Manifests`.
    pub kind: SourceKind,
    /// Pending, Running, Succeeded or Failed.
    pub phase: SourcePhase,
    /// The mover Job doing the work.
    pub job_name: Option<String>,
    /// ID of the snapshot in the repository (use it with `lifeboat restore` or
    /// `restic restore`).
    pub snapshot_id: Option<String>,
    /// Files in the snapshot.
    pub files: Option<u64>,
    /// Bytes read from the source.
    pub bytes_read: Option<u64>,
    /// Bytes added to the repository after deduplication and compression.
    pub bytes_added: Option<u64>,
    /// How long the mover took, in seconds.
    pub duration_seconds: Option<f64>,
    /// Volume sources: the PVC as it was at backup time (a restore recreates it alike).
    pub volume: Option<BackedUpVolume>,
    /// Database sources: what was dumped.
    pub database: Option<BackedUpDatabase>,
    /// Why it failed.
    pub failure: Option<Failure>,
}

/// The shape of a backed-up PVC.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackedUpVolume {
    /// Its storage request, e.g. `5Gi`.
    pub storage: Option<Quantity>,
    /// Its StorageClass.
    pub storage_class_name: Option<String>,
    /// Its access modes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// `Filesystem` or `Block`.
    pub volume_mode: Option<String>,
}

/// What a database source dumped.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackedUpDatabase {
    /// `postgres` or `mysql`.
    pub engine: DatabaseEngine,
    /// The database dumped; unset for all databases of the server.
    pub database: Option<String>,
    /// Version of the server that was dumped (the default image of an ephemeral
    /// restore server follows it).
    pub server_version: Option<String>,
}

/// Kind of a source.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A PersistentVolumeClaim.
    #[default]
    Volume,
    /// A database dump.
    Database,
    /// The namespace's Kubernetes objects.
    Manifests,
}

/// Life cycle of one source within a run.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum SourcePhase {
    /// Not started.
    #[default]
    Pending,
    /// The mover runs.
    Running,
    /// A snapshot was committed.
    Succeeded,
    /// No snapshot was committed.
    Failed,
}

/// How far a mover has got.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Bytes processed so far.
    pub bytes_done: u64,
    /// Bytes to process in total, once known.
    pub bytes_total: Option<u64>,
    /// Files processed so far, when the mover counts them.
    pub files_done: Option<u64>,
    /// Files in total, once known.
    pub files_total: Option<u64>,
    /// When the mover last reported, RFC 3339.
    pub updated: Option<String>,
}

/// Sums over all sources of a run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Files in all snapshots.
    pub files: u64,
    /// Bytes read from all sources.
    pub bytes_read: u64,
    /// Bytes added to the repository.
    pub bytes_added: u64,
    /// `bytesAdded` for people, e.g. `12.3 MiB`.
    pub bytes_added_human: String,
}

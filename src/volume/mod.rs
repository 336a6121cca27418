//! The CSI snapshot API (`snapshot.storage.k8s.io/v1`) as far as Lifeboat uses it, and
//! the temporary objects of the `Snapshot` copy method (a VolumeSnapshot of the source PVC
//! and a PVC restored from it, which the mover then reads).
//!
//! NB: these types are written from the public API's field names, not generated with
//! kopium (no network here to fetch the upstream CRDs); only the fields we read or write
//! are declared, and unknown fields are ignored on read. We never install this CRD: the
//! cluster's snapshot controller does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A request for a point-in-time snapshot of a PVC.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    namespaced,
    status = "VolumeSnapshotStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    pub source: VolumeSnapshotSource,
    pub volume_snapshot_class_name: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    pub persistent_volume_claim_name: Option<String>,
    pub volume_snapshot_content_name: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    pub bound_volume_snapshot_content_name: Option<String>,
    pub creation_time: Option<Time>,
    pub ready_to_use: Option<bool>,
    pub restore_size: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    pub error: Option<VolumeSnapshotError>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotError {
    pub message: Option<String>,
    pub time: Option<Time>,
}

/// Where a snapshot is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotState {
    /// Cut but not usable yet (or not yet seen by the snapshot controller).
    Pending,
    /// `readyToUse`: a PVC can be restored from it.
    Ready,
    /// The snapshot controller reported an error.
    Failed(String),
}

impl VolumeSnapshot {
    /// Reads the state from status. An error only counts while the snapshot is not ready:
    /// the controller may record a transient error and then succeed.
    pub fn state(&self) -> SnapshotState {
        let Some(s) = &self.status else {
            return SnapshotState::Pending;
        };
        if s.ready_to_use == Some(true) {
            return SnapshotState::Ready;
        }
        match s.error.as_ref().and_then(|e| e.message.clone()) {
            Some(m) => SnapshotState::Failed(m),
            None => SnapshotState::Pending,
        }
    }
}

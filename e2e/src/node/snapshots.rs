//! CSI snapshot emulation: installs the snapshot.storage.k8s.io/v1 CRDs (written here
//! from the public API's field names), the default VolumeSnapshotClass, and a controller
//! that copies a PVC's directory when a VolumeSnapshot is created, binds a
//! VolumeSnapshotContent to it, reports readiness or an error, and deletes the copy when
//! the snapshot goes (deletionPolicy Delete). A VolumeSnapshot of a pre-provisioned
//! VolumeSnapshotContent (`source.volumeSnapshotContentName`, the content naming an
//! existing snapshot by `source.snapshotHandle`) is bound to it, as the CSI snapshot
//! controller does: the snapshot handle is the name of the copy's directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::provisioner::copy_tree;
use super::{Ctx, DRIVER, Error, MANAGER, SNAPSHOT_CLASS};

const GROUP: &str = "snapshot.storage.k8s.io";
/// Finalizer we keep on VolumeSnapshots so their content is cleaned up before they go.
pub const FINALIZER: &str = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";
const DEFAULT_CLASS_ANNOTATION: &str = "snapshot.storage.kubernetes.io/is-default-class";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: format!("{GROUP}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// VolumeSnapshot API resource.
pub fn snapshot_resource() -> ApiResource {
    resource("VolumeSnapshot", "volumesnapshots")
}
/// VolumeSnapshotContent API resource.
pub fn content_resource() -> ApiResource {
    resource("VolumeSnapshotContent", "volumesnapshotcontents")
}
/// VolumeSnapshotClass API resource.
pub fn class_resource() -> ApiResource {
    resource("VolumeSnapshotClass", "volumesnapshotclasses")
}

fn s(desc: &str) -> Value {
    json!({"type": "string", "description": desc})
}

fn error_schema() -> Value {
    json!({"type": "object", "description": "The last error encountered during the operation, if any.",
        "properties": {"message": s("A string detailing the error; it may be logged, so it never contains secrets."),
                       "time": {"type": "string", "format": "date-time", "description": "When the error was encountered."}}})
}

fn crd(
    kind: &str,
    plural: &str,
    singular: &str,
    short: &[&str],
    scope: &str,
    schema: Value,
    columns: Value,
) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}"), "annotations": {
            "lifeboat.dev/written-by": MANAGER,
            // *.k8s.io groups need this annotation; ours is an emulation, so say so.
            "api-approved.kubernetes.io": "unapproved, local emulation of the CSI snapshot API by lifeboat-node-agent"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular, "shortNames": short},
            "scope": scope,
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": if kind == "VolumeSnapshotClass" { json!({}) } else { json!({"status": {}}) },
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": schema}
            }]
        }
    })
}

/// The three CRDs of snapshot.storage.k8s.io/v1.
pub fn crds() -> Vec<Value> {
    let class = crd(
        "VolumeSnapshotClass",
        "volumesnapshotclasses",
        "volumesnapshotclass",
        &["vsclass", "vsclasses"],
        "Cluster",
        json!({"type": "object", "description": "VolumeSnapshotClass specifies parameters that an underlying storage system uses when creating a volume snapshot.",
        "required": ["deletionPolicy", "driver"],
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "driver": s("Name of the storage driver that handles this VolumeSnapshotClass."),
            "deletionPolicy": {"type": "string", "enum": ["Delete", "Retain"], "description": "Whether the VolumeSnapshotContent and its physical snapshot are deleted with the bound VolumeSnapshot."},
            "parameters": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Driver-specific parameters."}
        }}),
        json!([
            {"name": "Driver", "type": "string", "jsonPath": ".driver"},
            {"name": "DeletionPolicy", "type": "string", "jsonPath": ".deletionPolicy"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]),
    );
    let snapshot = crd(
        "VolumeSnapshot",
        "volumesnapshots",
        "volumesnapshot",
        &["vs"],
        "Namespaced",
        json!({"type": "object", "description": "VolumeSnapshot is a user's request for a snapshot of a persistent volume.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "required": ["source"], "properties": {
                "source": {"type": "object", "description": "Where the snapshot is taken from: exactly one of persistentVolumeClaimName or volumeSnapshotContentName.",
                    "properties": {
                        "persistentVolumeClaimName": s("Name of the PVC (in the snapshot's namespace) to snapshot."),
                        "volumeSnapshotContentName": s("Name of a pre-existing VolumeSnapshotContent to bind.")}},
                "volumeSnapshotClassName": s("Name of the VolumeSnapshotClass; the default class when empty.")}},
            "status": {"type": "object", "properties": {
                "boundVolumeSnapshotContentName": s("Name of the bound VolumeSnapshotContent."),
                "creationTime": {"type": "string", "format": "date-time", "description": "When the storage system took the snapshot."},
                "readyToUse": {"type": "boolean", "description": "Whether the snapshot can be used to restore a volume."},
                "restoreSize": {"anyOf": [{"type": "integer"}, {"type": "string"}], "description": "Minimum size of a volume restored from this snapshot.", "x-kubernetes-int-or-string": true, "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$"},
                "error": error_schema()}}
        }}),
        json!([
            {"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
            {"name": "SourcePVC", "type": "string", "jsonPath": ".spec.source.persistentVolumeClaimName"},
            {"name": "SourceSnapshotContent", "type": "string", "jsonPath": ".spec.source.volumeSnapshotContentName"},
            {"name": "RestoreSize", "type": "string", "jsonPath": ".status.restoreSize"},
            {"name": "SnapshotClass", "type": "string", "jsonPath": ".spec.volumeSnapshotClassName"},
            {"name": "SnapshotContent", "type": "string", "jsonPath": ".status.boundVolumeSnapshotContentName"},
            {"name": "CreationTime", "type": "date", "jsonPath": ".status.creationTime"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]),
    );
    let content = crd(
        "VolumeSnapshotContent",
        "volumesnapshotcontents",
        "volumesnapshotcontent",
        &["vsc", "vscs"],
        "Cluster",
        json!({"type": "object", "description": "VolumeSnapshotContent represents the actual snapshot object in the storage system.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "required": ["deletionPolicy", "driver", "source", "volumeSnapshotRef"], "properties": {
                "deletionPolicy": {"type": "string", "enum": ["Delete", "Retain"]},
                "driver": s("Name of the CSI driver that created the physical snapshot."),
                "source": {"type": "object", "properties": {
                    "snapshotHandle": s("The storage system's id of a pre-existing snapshot."),
                    "volumeHandle": s("The storage system's id of the volume the snapshot was taken from.")}},
                "sourceVolumeMode": s("Filesystem or Block."),
                "volumeSnapshotClassName": s("Name of the VolumeSnapshotClass used."),
                "volumeSnapshotRef": {"type": "object", "description": "The VolumeSnapshot this content is bound to.", "properties": {
                    "apiVersion": {"type": "string"}, "fieldPath": {"type": "string"}, "kind": {"type": "string"},
                    "name": {"type": "string"}, "namespace": {"type": "string"}, "resourceVersion": {"type": "string"}, "uid": {"type": "string"}}}}},
            "status": {"type": "object", "properties": {
                "creationTime": {"type": "integer", "format": "int64", "description": "When the snapshot was taken, in nanoseconds since the Unix epoch."},
                "readyToUse": {"type": "boolean"},
                "restoreSize": {"type": "integer", "format": "int64", "minimum": 0, "description": "Size in bytes of the snapshot's data."},
                "snapshotHandle": s("The storage system's id of the snapshot."),
                "volumeGroupSnapshotHandle": s("The id of the group snapshot this snapshot belongs to."),
                "error": error_schema()}}
        }}),
        json!([
            {"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
            {"name": "RestoreSize", "type": "integer", "jsonPath": ".status.restoreSize"},
            {"name": "DeletionPolicy", "type": "string", "jsonPath": ".spec.deletionPolicy"},
            {"name": "Driver", "type": "string", "jsonPath": ".spec.driver"},
            {"name": "VolumeSnapshotClass", "type": "string", "jsonPath": ".spec.volumeSnapshotClassName"},
            {"name": "VolumeSnapshot", "type": "string", "jsonPath": ".spec.volumeSnapshotRef.name"},
            {"name": "VolumeSnapshotNamespace", "type": "string", "jsonPath": ".spec.volumeSnapshotRef.namespace"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]),
    );
    vec![class, snapshot, content]
}

/// Installs the CRDs and the default VolumeSnapshotClass (idempotent, server-side apply).
pub async fn install(client: &kube::Client) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(MANAGER).force();
    for c in crds() {
        let name = c["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        api.patch(&name, &pp, &Patch::Apply(&c)).await?;
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .map_err(|_| Error::Setup(format!("CRD {name} not Established within 30s")))?
            .map_err(|e| Error::Setup(format!("waiting for CRD {name}: {e}")))?;
    }
    let classes: Api<DynamicObject> = Api::all_with(client.clone(), &class_resource());
    let class = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshotClass",
        "metadata": {"name": SNAPSHOT_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "driver": DRIVER, "deletionPolicy": "Delete"
    });
    classes
        .patch(SNAPSHOT_CLASS, &pp, &Patch::Apply(&class))
        .await?;
    Ok(())
}

/// Bytes of a Kubernetes quantity like `1Gi`, `500M`, `1024` (0 when unparsable).
pub fn quantity_bytes(q: &str) -> i64 {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().unwrap_or(0.0);
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        _ => 0.0,
    };
    (n * mult) as i64
}

/// Directory that holds the copy behind a VolumeSnapshotContent.
pub fn snapshot_dir(ctx: &Ctx, content: &str) -> PathBuf {
    ctx.cfg.state_dir.join("snapshots").join(content)
}

/// For the provisioner: the directory to restore a PVC from `ns/name`, once ready.
pub async fn restore_source(ctx: &Ctx, ns: &str, name: &str) -> Result<PathBuf, String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &snapshot_resource());
    let vs = api
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("volumesnapshot {ns}/{name} not found"))?;
    let status = &vs.data["status"];
    if status["readyToUse"] != json!(true) {
        return Err(format!(
            "volumesnapshot {ns}/{name} is not ready to use yet"
        ));
    }
    let content = status["boundVolumeSnapshotContentName"]
        .as_str()
        .ok_or_else(|| format!("volumesnapshot {ns}/{name} has no bound content"))?;
    // The copy's directory is named by the snapshot handle (the content's own name for a
    // snapshot this node took; the original's for a pre-provisioned content).
    let contents: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &content_resource());
    let handle = contents
        .get_opt(content)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|c| {
            c.data["status"]["snapshotHandle"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| content.to_string());
    let dir = snapshot_dir(ctx, &handle);
    if !dir.is_dir() {
        return Err(format!(
            "the data of volumesnapshotcontent {content} is missing on this node ({})",
            dir.display()
        ));
    }
    Ok(dir)
}

struct Snapshotter {
    ctx: Arc<Ctx>,
    recorder: Recorder,
    snapshots: ApiResource,
}

enum Outcome {
    Done,
    Ignored,
    Retry(String),
}

impl Snapshotter {
    fn api(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.ctx.client.clone(), ns, &self.snapshots)
    }

    async fn set_error(&self, vs: &DynamicObject, msg: &str) {
        let ns = vs.namespace().unwrap_or_default();
        if vs.data["status"]["error"]["message"].as_str() == Some(msg) {
            return;
        }
        tracing::warn!(snapshot = %vs.name_any(), msg, "snapshot failed");
        let patch = json!({"status": {"readyToUse": false, "error": {"message": msg, "time": jiff::Timestamp::now().to_string()}}});
        let _ = self
            .api(&ns)
            .patch_status(
                &vs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        let ev = Event {
            type_: EventType::Warning,
            reason: "SnapshotCreationFailed".into(),
            note: Some(msg.to_string()),
            action: "CreateSnapshot".into(),
            secondary: None,
        };
        let _ = self
            .recorder
            .publish(&ev, &vs.object_ref(&self.snapshots))
            .await;
    }

    async fn class(&self, name: Option<&str>) -> Result<Option<DynamicObject>, String> {
        let api: Api<DynamicObject> = Api::all_with(self.ctx.client.clone(), &class_resource());
        match name {
            Some(n) => api
                .get_opt(n)
                .await
                .map_err(|e| e.to_string())?
                .map(Some)
                .ok_or_else(|| format!("failed to get input parameters to create snapshot: volumesnapshotclass.snapshot.storage.k8s.io \"{n}\" not found")),
            None => {
                let list = api.list(&Default::default()).await.map_err(|e| e.to_string())?;
                Ok(list.items.into_iter().find(|c| {
                    c.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str) == Some("true")
                }))
            }
        }
    }

    async fn take(&self, vs: &DynamicObject) -> Outcome {
        let ns = vs.namespace().unwrap_or_default();
        let name = vs.name_any();
        let spec = &vs.data["spec"];
        let class = match self.class(spec["volumeSnapshotClassName"].as_str()).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Outcome::Retry(
                    "failed to take snapshot: no default VolumeSnapshotClass".into(),
                );
            }
            Err(e) => return Outcome::Retry(e),
        };
        if class.data["driver"].as_str() != Some(DRIVER) {
            return Outcome::Ignored;
        }
        if let Some(content) = spec["source"]["volumeSnapshotContentName"].as_str() {
            return self.bind(vs, content).await;
        }
        let Some(claim) = spec["source"]["persistentVolumeClaimName"].as_str() else {
            return Outcome::Retry(
                "the snapshot names neither source.persistentVolumeClaimName nor source.volumeSnapshotContentName".into(),
            );
        };
        let pvc = match Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), &ns)
            .get_opt(claim)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Outcome::Retry(format!(
                    "failed to get input parameters to create snapshot {name}: persistentvolumeclaim \"{claim}\" not found"
                ));
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let Some(pv_name) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty())
        else {
            return Outcome::Retry(format!(
                "the PVC {claim} is not yet bound to a PV, will not attempt to take a snapshot"
            ));
        };
        let pv = match Api::<PersistentVolume>::all(self.ctx.client.clone())
            .get(&pv_name)
            .await
        {
            Ok(pv) => pv,
            Err(e) => return Outcome::Retry(format!("getting persistentvolume {pv_name}: {e}")),
        };
        let Some(src) = pv
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| PathBuf::from(&h.path))
        else {
            return Outcome::Retry(format!(
                "persistentvolume {pv_name} is not a host directory volume of driver {DRIVER}"
            ));
        };
        let size = pv
            .spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "0".into());
        // Finalizer first, so a snapshot deleted mid-copy still gets its data removed.
        if !vs.finalizers().iter().any(|f| f == FINALIZER) {
            let mut fins = vs.finalizers().to_vec();
            fins.push(FINALIZER.into());
            let patch =
                json!({"metadata": {"finalizers": fins, "resourceVersion": vs.resource_version()}});
            if let Err(e) = self
                .api(&ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                return Outcome::Retry(format!("adding finalizer: {e}"));
            }
        }
        let uid = vs.uid().unwrap_or_default();
        let content_name = format!("snapcontent-{uid}");
        let dir = snapshot_dir(&self.ctx, &content_name);
        if !dir.is_dir() {
            let tmp = dir.with_extension("partial");
            let _ = std::fs::remove_dir_all(&tmp);
            if let Err(e) = copy_tree(&src, &tmp).await {
                let _ = std::fs::remove_dir_all(&tmp);
                return Outcome::Retry(format!("copying volume {pv_name}: {e}"));
            }
            if let Err(e) = std::fs::rename(&tmp, &dir) {
                return Outcome::Retry(format!("renaming {}: {e}", dir.display()));
            }
        }
        let created = jiff::Timestamp::now();
        let contents: Api<DynamicObject> =
            Api::all_with(self.ctx.client.clone(), &content_resource());
        let deletion_policy = class.data["deletionPolicy"]
            .as_str()
            .unwrap_or("Delete")
            .to_string();
        let content = json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": deletion_policy, "driver": DRIVER,
                "source": {"volumeHandle": pv_name},
                "volumeSnapshotClassName": class.name_any(),
                "volumeSnapshotRef": {"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshot",
                    "name": name, "namespace": ns, "uid": uid, "resourceVersion": vs.resource_version()}
            }
        });
        let obj: DynamicObject = match serde_json::from_value(content) {
            Ok(o) => o,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        match contents.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Outcome::Retry(format!("creating volumesnapshotcontent: {e}")),
        }
        let nanos = created.as_nanosecond() as i64;
        let cpatch = json!({"status": {"snapshotHandle": content_name, "creationTime": nanos, "readyToUse": true, "restoreSize": quantity_bytes(&size)}});
        if let Err(e) = contents
            .patch_status(
                &content_name,
                &PatchParams::default(),
                &Patch::Merge(&cpatch),
            )
            .await
        {
            return Outcome::Retry(format!("updating volumesnapshotcontent status: {e}"));
        }
        let spatch = json!({"status": {"boundVolumeSnapshotContentName": content_name,
            "creationTime": created.to_string(), "readyToUse": true, "restoreSize": size, "error": null}});
        if let Err(e) = self
            .api(&ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&spatch))
            .await
        {
            return Outcome::Retry(format!("updating volumesnapshot status: {e}"));
        }
        tracing::info!(snapshot = %format!("{ns}/{name}"), content = %content_name, "snapshot ready");
        let ev = Event {
            type_: EventType::Normal,
            reason: "SnapshotReady".into(),
            note: Some(format!("Snapshot {ns}/{name} is ready to use.")),
            action: "CreateSnapshot".into(),
            secondary: None,
        };
        let _ = self
            .recorder
            .publish(&ev, &vs.object_ref(&self.snapshots))
            .await;
        Outcome::Done
    }

    /// Binds `vs` to the pre-provisioned content `content_name` (see [`preprovisioned`]).
    async fn bind(&self, vs: &DynamicObject, content_name: &str) -> Outcome {
        let ns = vs.namespace().unwrap_or_default();
        let name = vs.name_any();
        let contents: Api<DynamicObject> =
            Api::all_with(self.ctx.client.clone(), &content_resource());
        let content = match contents.get_opt(content_name).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Outcome::Retry(format!(
                    "volumesnapshotcontent \"{content_name}\" not found"
                ));
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        if content.data["spec"]["driver"].as_str() != Some(DRIVER) {
            return Outcome::Ignored;
        }
        // The size of the original: its content is named by the handle on this node.
        let handle = content.data["spec"]["source"]["snapshotHandle"]
            .as_str()
            .unwrap_or_default();
        let original_size = match contents.get_opt(handle).await {
            Ok(o) => o.and_then(|o| o.data["status"]["restoreSize"].as_i64()),
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let dir_exists = !handle.is_empty() && snapshot_dir(&self.ctx, handle).is_dir();
        let now = jiff::Timestamp::now();
        let (cpatch, spatch) = match preprovisioned(
            &ns,
            &name,
            content_name,
            &content.data,
            dir_exists,
            original_size,
            now,
        ) {
            Ok(p) => p,
            Err(msg) => return Outcome::Retry(msg),
        };
        if let Err(e) = contents
            .patch_status(
                content_name,
                &PatchParams::default(),
                &Patch::Merge(&cpatch),
            )
            .await
        {
            return Outcome::Retry(format!("updating volumesnapshotcontent status: {e}"));
        }
        if let Err(e) = self
            .api(&ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&spatch))
            .await
        {
            return Outcome::Retry(format!("updating volumesnapshot status: {e}"));
        }
        tracing::info!(snapshot = %format!("{ns}/{name}"), content = %content_name, handle, "pre-provisioned snapshot bound");
        Outcome::Done
    }

    async fn delete(&self, vs: &DynamicObject) -> Result<(), String> {
        let ns = vs.namespace().unwrap_or_default();
        let uid = vs.uid().unwrap_or_default();
        let content_name = vs.data["status"]["boundVolumeSnapshotContentName"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("snapcontent-{uid}"));
        let contents: Api<DynamicObject> =
            Api::all_with(self.ctx.client.clone(), &content_resource());
        let content = contents
            .get_opt(&content_name)
            .await
            .map_err(|e| e.to_string())?;
        let policy = content
            .as_ref()
            .and_then(|c| c.data["spec"]["deletionPolicy"].as_str().map(String::from))
            .unwrap_or_else(|| "Delete".into());
        if policy == "Delete" {
            if content.is_some() {
                match contents
                    .delete(&content_name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            let dir = snapshot_dir(&self.ctx, &content_name);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(format!("removing {}: {e}", dir.display()));
            }
        }
        let fins: Vec<String> = vs
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": fins}});
        match self
            .api(&ns)
            .patch(
                &vs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.to_string()),
        }
        tracing::info!(snapshot = %format!("{ns}/{}", vs.name_any()), "snapshot deleted ({policy})");
        Ok(())
    }

    async fn reconcile(&self, vs: &DynamicObject) -> Option<String> {
        if vs.meta().deletion_timestamp.is_some() {
            if vs.finalizers().iter().any(|f| f == FINALIZER) {
                return self.delete(vs).await.err();
            }
            return None;
        }
        if vs.data["status"]["readyToUse"] == json!(true) {
            return None;
        }
        match self.take(vs).await {
            Outcome::Done | Outcome::Ignored => None,
            Outcome::Retry(msg) => {
                self.set_error(vs, &msg).await;
                Some(msg)
            }
        }
    }
}

/// The status patches (content, snapshot) that bind VolumeSnapshot `ns/name` to the
/// pre-provisioned content `content_name` (`content` is its data), or why they cannot:
/// the content must name this snapshot in `volumeSnapshotRef` and an existing snapshot in
/// `source.snapshotHandle` (`dir_exists`: its copy is on this node). The restore size is
/// the original snapshot's, when known.
pub fn preprovisioned(
    ns: &str,
    name: &str,
    content_name: &str,
    content: &Value,
    dir_exists: bool,
    original_size: Option<i64>,
    now: jiff::Timestamp,
) -> Result<(Value, Value), String> {
    let spec = &content["spec"];
    let r = &spec["volumeSnapshotRef"];
    if r["namespace"].as_str() != Some(ns) || r["name"].as_str() != Some(name) {
        return Err(format!(
            "volumesnapshotcontent {content_name} is bound to volumesnapshot {}/{}, not {ns}/{name}",
            r["namespace"].as_str().unwrap_or("?"),
            r["name"].as_str().unwrap_or("?")
        ));
    }
    let Some(handle) = spec["source"]["snapshotHandle"]
        .as_str()
        .filter(|h| !h.is_empty())
    else {
        return Err(format!(
            "volumesnapshotcontent {content_name} is not pre-provisioned: it has no source.snapshotHandle"
        ));
    };
    if !dir_exists {
        return Err(format!(
            "snapshot handle {handle} of volumesnapshotcontent {content_name} names no snapshot on this node"
        ));
    }
    let size = original_size.unwrap_or(0);
    let cpatch = json!({"status": {"snapshotHandle": handle, "creationTime": now.as_nanosecond() as i64,
        "readyToUse": true, "restoreSize": size}});
    let spatch = json!({"status": {"boundVolumeSnapshotContentName": content_name,
        "creationTime": now.to_string(), "readyToUse": true, "restoreSize": size.to_string(), "error": null}});
    Ok((cpatch, spatch))
}

/// Runs the snapshot controller until the agent stops.
pub async fn run(ctx: Arc<Ctx>) {
    let recorder = Recorder::new(
        ctx.client.clone(),
        Reporter {
            controller: "snapshot-controller".into(),
            instance: None,
        },
    );
    let snapshots = snapshot_resource();
    let s = Snapshotter {
        ctx: ctx.clone(),
        recorder,
        snapshots: snapshots.clone(),
    };
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &snapshots);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let contents: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &content_resource());
    let mut content_events = watcher(contents, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut failing: BTreeMap<(String, String), ()> = BTreeMap::new();
    // Like the real snapshot controller, failed snapshots are retried periodically.
    let mut retry = tokio::time::interval(Duration::from_secs(3));
    loop {
        tokio::select! {
            Some(ev) = events.next() => match ev {
                Ok(vs) => {
                    let key = (vs.namespace().unwrap_or_default(), vs.name_any());
                    if s.reconcile(&vs).await.is_some() { failing.insert(key, ()); } else { failing.remove(&key); }
                }
                Err(e) => tracing::warn!(error = %e, "volumesnapshot watch"),
            },
            Some(ev) = content_events.next() => {
                // Contents deleted directly (not through their snapshot) take their data along.
                if let Ok(watcher::Event::Delete(c)) = ev
                    && c.data["spec"]["driver"].as_str() == Some(DRIVER)
                    && c.data["spec"]["deletionPolicy"].as_str() == Some("Delete")
                {
                    let _ = std::fs::remove_dir_all(snapshot_dir(&ctx, &c.name_any()));
                }
            }
            _ = retry.tick(), if !failing.is_empty() => {
                let keys: Vec<(String, String)> = failing.keys().cloned().collect();
                for key in keys {
                    match s.api(&key.0).get_opt(&key.1).await {
                        Ok(Some(vs)) => { if s.reconcile(&vs).await.is_none() { failing.remove(&key); } }
                        Ok(None) => { failing.remove(&key); }
                        Err(_) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("1Gi"), 1 << 30);
        assert_eq!(quantity_bytes("10Mi"), 10 << 20);
        assert_eq!(quantity_bytes("2G"), 2_000_000_000);
        assert_eq!(quantity_bytes("1024"), 1024);
        assert_eq!(quantity_bytes("x"), 0);
    }

    #[test]
    fn a_pre_provisioned_content_binds_its_snapshot_by_handle() {
        let content = json!({"spec": {"driver": DRIVER, "deletionPolicy": "Retain",
            "source": {"snapshotHandle": "snapcontent-orig"},
            "volumeSnapshotRef": {"namespace": "lifeboat-system", "name": "copy"}}});
        let now: jiff::Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let (c, s) = preprovisioned(
            "lifeboat-system",
            "copy",
            "lb-copy",
            &content,
            true,
            Some(1 << 30),
            now,
        )
        .unwrap();
        assert_eq!(c["status"]["snapshotHandle"], "snapcontent-orig");
        assert_eq!(c["status"]["readyToUse"], true);
        assert_eq!(s["status"]["boundVolumeSnapshotContentName"], "lb-copy");
        assert_eq!(s["status"]["readyToUse"], true);
        assert_eq!(s["status"]["restoreSize"], (1i64 << 30).to_string());
        // Another snapshot may not claim the content; a handle must name a snapshot here.
        let err =
            preprovisioned("shop", "thief", "lb-copy", &content, true, None, now).unwrap_err();
        assert!(
            err.contains("bound to volumesnapshot lifeboat-system/copy"),
            "{err}"
        );
        let err = preprovisioned(
            "lifeboat-system",
            "copy",
            "lb-copy",
            &content,
            false,
            None,
            now,
        )
        .unwrap_err();
        assert!(err.contains("names no snapshot on this node"), "{err}");
        let dynamic = json!({"spec": {"driver": DRIVER, "source": {"volumeHandle": "pv-1"},
            "volumeSnapshotRef": {"namespace": "lifeboat-system", "name": "copy"}}});
        let err =
            preprovisioned("lifeboat-system", "copy", "x", &dynamic, true, None, now).unwrap_err();
        assert!(err.contains("not pre-provisioned"), "{err}");
    }

    #[test]
    fn crds_are_structural() {
        for c in crds() {
            let v = &c["spec"]["versions"][0];
            assert_eq!(v["schema"]["openAPIV3Schema"]["type"], "object");
            assert!(
                v["additionalPrinterColumns"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            );
        }
        let names: Vec<String> = crds()
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "volumesnapshotclasses.snapshot.storage.k8s.io",
                "volumesnapshots.snapshot.storage.k8s.io",
                "volumesnapshotcontents.snapshot.storage.k8s.io"
            ]
        );
    }
}

//! The storage provisioner of StorageClass `lifeboat-local`: PVCs of that class get a
//! hostPath PV backed by `<state>/volumes/pvc-<uid>` (optionally filled from a
//! VolumeSnapshot or another PVC given as dataSource); released PVs with reclaimPolicy
//! Delete are removed together with their directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use super::{Ctx, DRIVER, Error, MANAGER, STORAGE_CLASS, snapshots};

/// Annotation the provisioner puts on its PVs.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Creates (or updates) the StorageClass at start-up.
pub async fn install(client: &kube::Client) -> Result<(), Error> {
    let sc = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(
                [(
                    "storageclass.kubernetes.io/is-default-class".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        allow_volume_expansion: Some(false),
        ..Default::default()
    };
    let api: Api<StorageClass> = Api::all(client.clone());
    match api.get_opt(STORAGE_CLASS).await? {
        Some(existing) if existing.provisioner == DRIVER => Ok(()),
        Some(_) => {
            // StorageClass fields are immutable: replace it by delete + create.
            api.delete(STORAGE_CLASS, &DeleteParams::default()).await?;
            api.create(&PostParams::default(), &sc).await?;
            Ok(())
        }
        None => {
            api.create(&PostParams::default(), &sc).await?;
            Ok(())
        }
    }
}

/// Host directory of a provisioned volume.
pub fn volume_dir(ctx: &Ctx, pv_name: &str) -> PathBuf {
    ctx.cfg.state_dir.join("volumes").join(pv_name)
}

/// Copies a directory tree like `cp -a` (modes, owners, symlinks, mtimes; reflinks when
/// the file system can).
pub async fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .await
        .map_err(|e| format!("running cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cp -a {} {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

struct Provisioner {
    ctx: Arc<Ctx>,
    recorder: Recorder,
    failed: BTreeMap<String, String>,
}

fn class_of(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            pvc.annotations()
                .get("volume.beta.kubernetes.io/storage-class")
                .cloned()
        })
}

impl Provisioner {
    async fn warn(&mut self, pvc: &PersistentVolumeClaim, reason: &str, msg: String) {
        let key = pvc.uid().unwrap_or_default();
        if self.failed.get(&key) == Some(&msg) {
            return;
        }
        tracing::warn!(pvc = %pvc.name_any(), %msg, "provisioning");
        self.failed.insert(key, msg.clone());
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(msg),
            action: "Provisioning".into(),
            secondary: None,
        };
        let _ = self.recorder.publish(&ev, &pvc.object_ref(&())).await;
    }

    /// Returns the directory to fill the new volume from, if the PVC has a data source.
    async fn source_dir(&self, pvc: &PersistentVolumeClaim) -> Result<Option<PathBuf>, String> {
        let ns = pvc.namespace().unwrap_or_default();
        let spec = pvc.spec.clone().unwrap_or_default();
        let Some(ds) = spec
            .data_source_ref
            .map(|r| (r.api_group, r.kind, r.name))
            .or(spec.data_source.map(|d| (d.api_group, d.kind, d.name)))
        else {
            return Ok(None);
        };
        match (ds.0.as_deref().unwrap_or(""), ds.1.as_str()) {
            ("snapshot.storage.k8s.io", "VolumeSnapshot") => {
                snapshots::restore_source(&self.ctx, &ns, &ds.2)
                    .await
                    .map(Some)
            }
            ("", "PersistentVolumeClaim") => {
                let src = Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), &ns)
                    .get_opt(&ds.2)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("source persistentvolumeclaim {:?} not found", ds.2))?;
                let pv = src.spec.and_then(|s| s.volume_name).ok_or_else(|| {
                    format!("source persistentvolumeclaim {:?} is not bound", ds.2)
                })?;
                Ok(Some(volume_dir(&self.ctx, &pv)))
            }
            (g, k) => Err(format!("unsupported dataSource {g}/{k}")),
        }
    }

    async fn provision(&mut self, pvc: PersistentVolumeClaim) {
        if class_of(&pvc).as_deref() != Some(STORAGE_CLASS)
            || pvc.meta().deletion_timestamp.is_some()
        {
            return;
        }
        let spec = pvc.spec.clone().unwrap_or_default();
        if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
            return;
        }
        let uid = pvc.uid().unwrap_or_default();
        let pv_name = format!("pvc-{uid}");
        let pvs: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        if let Ok(Some(_)) = pvs.get_opt(&pv_name).await {
            return;
        }
        let source = match self.source_dir(&pvc).await {
            Ok(s) => s,
            Err(msg) => {
                self.warn(
                    &pvc,
                    "ProvisioningFailed",
                    format!(
                        "failed to provision volume with StorageClass {STORAGE_CLASS:?}: {msg}"
                    ),
                )
                .await;
                return;
            }
        };
        let dir = volume_dir(&self.ctx, &pv_name);
        let tmp = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(e) = std::fs::create_dir_all(&tmp) {
            self.warn(
                &pvc,
                "ProvisioningFailed",
                format!("creating {}: {e}", tmp.display()),
            )
            .await;
            return;
        }
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o777));
        if let Some(src) = &source
            && let Err(msg) = copy_tree(src, &tmp).await
        {
            let _ = std::fs::remove_dir_all(&tmp);
            self.warn(&pvc, "ProvisioningFailed", msg).await;
            return;
        }
        // Rename last, so a half-filled restore never becomes a volume.
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            self.warn(
                &pvc,
                "ProvisioningFailed",
                format!("renaming {}: {e}", dir.display()),
            )
            .await;
            return;
        }
        let storage = spec
            .resources
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned())
            .unwrap_or_else(|| Quantity("1Gi".into()));
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(pv_name.clone()),
                annotations: Some([(PROVISIONED_BY.to_string(), DRIVER.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: spec.access_modes.clone(),
                capacity: Some([("storage".to_string(), storage)].into()),
                claim_ref: Some(ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: pvc.namespace(),
                    name: Some(pvc.name_any()),
                    uid: Some(uid.clone()),
                    resource_version: pvc.resource_version(),
                    ..Default::default()
                }),
                host_path: Some(HostPathVolumeSource {
                    path: dir.display().to_string(),
                    type_: Some("Directory".into()),
                }),
                persistent_volume_reclaim_policy: Some("Delete".into()),
                storage_class_name: Some(STORAGE_CLASS.into()),
                volume_mode: spec.volume_mode.clone(),
                ..Default::default()
            }),
            status: None,
        };
        match pvs.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                tracing::info!(pvc = %pvc.name_any(), pv = %pv_name, restored = source.is_some(), "provisioned volume");
                self.failed.remove(&uid);
                let ev = Event {
                    type_: EventType::Normal,
                    reason: "ProvisioningSucceeded".into(),
                    note: Some(format!("Successfully provisioned volume {pv_name}")),
                    action: "Provisioning".into(),
                    secondary: None,
                };
                let _ = self.recorder.publish(&ev, &pvc.object_ref(&())).await;
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                self.warn(
                    &pvc,
                    "ProvisioningFailed",
                    format!("creating PersistentVolume: {e}"),
                )
                .await;
            }
        }
    }

    async fn reclaim(&mut self, pv: PersistentVolume) {
        let ours = pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(DRIVER);
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
        if !ours || phase != Some("Released") || policy != Some("Delete") {
            return;
        }
        let name = pv.name_any();
        let dir = volume_dir(&self.ctx, &name);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pv = %name, error = %e, "removing volume directory");
            return;
        }
        let api: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(pv = %name, "deleted released volume"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(pv = %name, error = %e, "deleting released volume"),
        }
    }
}

/// Watches PVCs (to provision) and PVs (to reclaim) until the agent stops.
pub async fn run(ctx: Arc<Ctx>) {
    let recorder = Recorder::new(
        ctx.client.clone(),
        Reporter {
            controller: format!("{DRIVER}_{MANAGER}"),
            instance: None,
        },
    );
    let mut p = Provisioner {
        ctx: ctx.clone(),
        recorder,
        failed: BTreeMap::new(),
    };
    let pvcs = watcher(
        Api::<PersistentVolumeClaim>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    let pvs = watcher(
        Api::<PersistentVolume>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    let mut pvcs = pvcs.boxed();
    let mut pvs = pvs.boxed();
    // Claims that failed (e.g. a snapshot not ready yet) are retried on this tick.
    let mut retry = tokio::time::interval(Duration::from_secs(3));
    let mut pending: BTreeMap<String, PersistentVolumeClaim> = BTreeMap::new();
    loop {
        tokio::select! {
            Some(ev) = pvcs.next() => match ev {
                Ok(pvc) => {
                    let key = format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any());
                    p.provision(pvc.clone()).await;
                    if p.failed.contains_key(&pvc.uid().unwrap_or_default()) { pending.insert(key, pvc); } else { pending.remove(&key); }
                }
                Err(e) => tracing::warn!(error = %e, "pvc watch"),
            },
            Some(ev) = pvs.next() => match ev {
                Ok(pv) => p.reclaim(pv).await,
                Err(e) => tracing::warn!(error = %e, "pv watch"),
            },
            _ = retry.tick(), if !pending.is_empty() => {
                let items: Vec<(String, PersistentVolumeClaim)> = std::mem::take(&mut pending).into_iter().collect();
                for (key, pvc) in items {
                    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &pvc.namespace().unwrap_or_default());
                    if let Ok(Some(fresh)) = api.get_opt(&pvc.name_any()).await {
                        p.provision(fresh.clone()).await;
                        if p.failed.contains_key(&fresh.uid().unwrap_or_default()) { pending.insert(key, fresh); }
                    }
                }
            }
        }
    }
}

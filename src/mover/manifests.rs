//! `lifeboat mover backup manifests`: saves a namespace's Kubernetes objects as YAML
//! files (`<kind>.<group>/<name>.yaml`) in their own snapshot, stripped of what the
//! cluster assigned (status, uid, resourceVersion, managed fields, cluster IPs...), so
//! that they can be re-applied to rebuild the namespace, here or elsewhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope};

use super::backup::open_with_sink;
use super::progress::Reporter;
use super::{Error, RepoAccess, RunRef, backup_result};
use crate::crd::labels;
use crate::jobs::mover::command::BackupManifests;
use crate::jobs::result::MoverResult;
use crate::repo::PathBackup;

/// Kinds saved when the policy names none.
pub const DEFAULT_KINDS: &[&str] = &[
    "Deployment.apps",
    "StatefulSet.apps",
    "DaemonSet.apps",
    "CronJob.batch",
    "Job.batch",
    "Service",
    "ConfigMap",
    "PersistentVolumeClaim",
    "ServiceAccount",
    "Role.rbac.authorization.k8s.io",
    "RoleBinding.rbac.authorization.k8s.io",
    "Ingress.networking.k8s.io",
    "NetworkPolicy.networking.k8s.io",
];

/// Where the YAML is staged before the backup, unless the command names a place.
const DEFAULT_STAGING: &str = "/tmp/lifeboat-manifests";

/// Drops what the cluster assigned, keeping what a person or tool declared.
pub fn sanitize(obj: &mut serde_json::Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    map.remove("status");
    if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for k in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
            "ownerReferences",
            "finalizers",
        ] {
            meta.remove(k);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
            ann.retain(|k, _| {
                !k.starts_with("pv.kubernetes.io/")
                    && !k.starts_with("volume.beta.kubernetes.io/")
                    && !k.starts_with("volume.kubernetes.io/")
                    && k != "deployment.kubernetes.io/revision"
            });
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    let kind = map
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(spec) = map.get_mut("spec").and_then(|s| s.as_object_mut()) {
        match kind.as_str() {
            // Assigned by the cluster; a restored Service gets new ones. NodePorts are
            // kept: whether they survive is decided at restore time.
            "Service" => {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            // Bound to a PV of this cluster; a restore binds anew.
            "PersistentVolumeClaim" => {
                spec.remove("volumeName");
            }
            // The Job controller adds these; re-applying them is rejected.
            "Job" => {
                spec.remove("selector");
                if let Some(l) = spec
                    .get_mut("template")
                    .and_then(|t| t.get_mut("metadata"))
                    .and_then(|m| m.get_mut("labels"))
                    .and_then(|l| l.as_object_mut())
                {
                    l.remove("controller-uid");
                    l.remove("batch.kubernetes.io/controller-uid");
                    l.remove("job-name");
                    l.remove("batch.kubernetes.io/job-name");
                }
            }
            _ => {}
        }
    }
}

/// Objects that exist in every namespace or belong to Lifeboat itself.
fn skip(obj: &DynamicObject, kind: &str) -> bool {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let managed = obj
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER);
    let token_secret = kind == "Secret"
        && obj.data.get("type").and_then(|t| t.as_str())
            == Some("kubernetes.io/service-account-token");
    managed
        || token_secret
        || (kind == "ServiceAccount" && name == "default")
        || (kind == "ConfigMap" && name == "kube-root-ca.crt")
}

/// The API resource a kind name means among the groups serving it: the only one, the core
/// group's (a bare `ConfigMap`), or the one left besides the legacy `extensions` group
/// (`Ingress` on old clusters). `Err` with the groups when the name is ambiguous.
fn pick_group(mut candidates: Vec<ApiResource>) -> Result<Option<ApiResource>, Vec<String>> {
    if candidates.len() <= 1 {
        return Ok(candidates.pop());
    }
    if let Some(core) = candidates.iter().position(|ar| ar.group.is_empty()) {
        return Ok(Some(candidates.swap_remove(core)));
    }
    let mut current: Vec<ApiResource> = candidates
        .iter()
        .filter(|ar| ar.group != "extensions")
        .cloned()
        .collect();
    if current.len() == 1 {
        return Ok(current.pop());
    }
    let mut groups: Vec<String> = candidates.into_iter().map(|ar| ar.group).collect();
    groups.sort();
    Err(groups)
}

fn file_name(kind: &str, group: &str, name: &str) -> String {
    if group.is_empty() {
        format!("{kind}/{name}.yaml")
    } else {
        format!("{kind}.{group}/{name}.yaml")
    }
}

/// Lists and sanitizes the objects of `kinds`. A kind the user named must be served
/// (`required`); a default kind the cluster does not serve at all is skipped.
async fn collect(
    client: kube::Client,
    namespace: &str,
    kinds: &[String],
    required: bool,
    selector: Option<&str>,
) -> Result<BTreeMap<String, String>, Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| Error::from_kube("API discovery", e))?;
    let mut files = BTreeMap::new();
    for wanted in kinds {
        let (kind, group) = match wanted.split_once('.') {
            Some((k, g)) => (k, Some(g)),
            None => (wanted.as_str(), None),
        };
        // The most stable served version of the kind, in any version of its group: a
        // kind may be served only in a beta version while its group prefers another.
        let candidates: Vec<ApiResource> = discovery
            .groups()
            .filter(|g| group.is_none_or(|want| g.name() == want))
            .filter_map(|g| {
                g.resources_by_stability()
                    .into_iter()
                    .find(|(ar, caps)| ar.kind == kind && caps.scope == Scope::Namespaced)
                    .map(|(ar, _)| ar)
            })
            .collect();
        let found = match pick_group(candidates) {
            Ok(f) => f,
            Err(groups) => {
                return Err(Error::input(format!(
                    "kind {wanted:?} is served by several API groups ({}): write it as \
                     Kind.group",
                    groups.join(", ")
                )));
            }
        };
        let Some(ar) = found else {
            if !required {
                tracing::info!(kind = %wanted, "not served by this cluster; skipped");
                continue;
            }
            return Err(Error::input(format!(
                "kind {wanted:?} is not served by this cluster (or is not namespaced)"
            )));
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        let mut lp = ListParams::default();
        if let Some(s) = selector {
            lp = lp.labels(s);
        }
        // A kind outside the mover's read role is refused (403, `Forbidden`): the chart's
        // `mover.manifestResources` lists what manifests backups may read beyond the
        // defaults.
        let listed = api.list(&lp).await.map_err(|e| {
            Error::from_kube(&format!("listing {wanted} objects in {namespace}"), e)
        })?;
        for obj in listed.items {
            if skip(&obj, kind) {
                continue;
            }
            let name = obj.metadata.name.clone().unwrap_or_default();
            let mut value = serde_json::to_value(&obj)
                .map_err(|e| Error::Internal(format!("encoding {kind}/{name}: {e}")))?;
            value["apiVersion"] = ar.api_version.clone().into();
            value["kind"] = ar.kind.clone().into();
            sanitize(&mut value);
            let yaml = serde_saphyr::to_string(&value)
                .map_err(|e| Error::Internal(format!("encoding {kind}/{name} as YAML: {e}")))?;
            files.insert(file_name(kind, &ar.group, &name), yaml);
        }
    }
    Ok(files)
}

fn stage(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::io(format!("staging manifests in {}", dir.display()), e);
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    for (rel, yaml) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("relative paths have a parent"))
            .map_err(io)?;
        std::fs::write(&path, yaml).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)
}

/// Saves the manifests into a snapshot.
pub(crate) fn backup(a: BackupManifests, repo_args: &RepoAccess) -> Result<MoverResult, Error> {
    let BackupManifests {
        namespace,
        kinds,
        selector,
        include_secrets,
        staging,
        run,
    } = a;
    let run = RunRef::for_backup(&run);
    let staging = staging.unwrap_or_else(|| DEFAULT_STAGING.into());
    let required = !kinds.is_empty();
    let mut kinds: Vec<String> = if kinds.is_empty() {
        DEFAULT_KINDS.iter().map(|k| k.to_string()).collect()
    } else {
        kinds
    };
    if include_secrets && !kinds.iter().any(|k| k == "Secret") {
        kinds.push("Secret".into());
    }
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("runtime: {e}")))?;
    let files = rt.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            Error::kube_api(format!(
                "no Kubernetes client (in-cluster config or KUBECONFIG): {e}"
            ))
        })?;
        collect(client, &namespace, &kinds, required, selector.as_deref()).await
    })?;
    let root = staging.join(&namespace);
    stage(&root, &files)?;
    let (repo, sink) = open_with_sink(repo_args)?;
    let reporter = Reporter::start("manifests".into(), sink);
    let outcome = repo.backup_paths(
        &PathBackup {
            paths: vec![root],
            ..PathBackup::default()
        },
        &crate::repo::SnapshotMeta {
            host: Some(run.namespace.clone()),
            tags: run.tags("manifests", &namespace),
        },
    );
    reporter.stop();
    let mut result = backup_result(&outcome?.snapshot, started.elapsed());
    result.details.insert("objects".into(), files.len().into());
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_the_declaration_and_drops_cluster_state() {
        let mut svc = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "9",
                         "labels": {"app": "web"}, "managedFields": [{}],
                         "annotations": {"pv.kubernetes.io/bind-completed": "yes", "team": "a"}},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80}],
                     "selector": {"app": "web"}},
            "status": {"loadBalancer": {}}
        });
        sanitize(&mut svc);
        assert_eq!(
            svc,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                             "annotations": {"team": "a"}},
                "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}
            })
        );
        let mut pvc = serde_json::json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "d"},
            "spec": {"volumeName": "pv-1", "resources": {}}});
        sanitize(&mut pvc);
        assert!(pvc["spec"].get("volumeName").is_none());
    }

    #[test]
    fn files_are_named_by_kind_and_group() {
        assert_eq!(file_name("ConfigMap", "", "cfg"), "ConfigMap/cfg.yaml");
        assert_eq!(
            file_name("Deployment", "apps", "web"),
            "Deployment.apps/web.yaml"
        );
    }

    fn ar(group: &str, kind: &str) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: if group.is_empty() {
                "v1".into()
            } else {
                format!("{group}/v1")
            },
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
        }
    }

    /// The CRD documents `kinds` as `Kind` or `Kind.group`: a bare `Deployment` is the
    /// apps group's, a bare `ConfigMap` the core group's.
    #[test]
    fn bare_kinds_find_their_group() {
        let pick = |c: Vec<ApiResource>| pick_group(c).map(|a| a.map(|a| a.group));
        assert_eq!(
            pick(vec![ar("apps", "Deployment")]),
            Ok(Some("apps".into()))
        );
        assert_eq!(pick(vec![]), Ok(None));
        assert_eq!(
            pick(vec![ar("", "Event"), ar("events.k8s.io", "Event")]),
            Ok(Some(String::new()))
        );
        assert_eq!(
            pick(vec![
                ar("extensions", "Ingress"),
                ar("networking.k8s.io", "Ingress")
            ]),
            Ok(Some("networking.k8s.io".into()))
        );
        assert_eq!(
            pick(vec![ar("a.example", "Widget"), ar("b.example", "Widget")]),
            Err(vec!["a.example".to_string(), "b.example".to_string()])
        );
    }
}

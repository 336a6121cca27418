//! Pod volumes on the host: materialises emptyDir, secret, configMap, downwardAPI,
//! projected (service-account tokens through the TokenRequest API), hostPath and
//! persistentVolumeClaim volumes as directories under the pod's state directory, and turns
//! a container's volumeMounts into the bind mounts its shim performs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::Api;
use kube::api::PostParams;

use super::envvars;
use super::shim::MountSpec;

/// Why a pod's volumes could not be set up yet (reported as a FailedMount event; the
/// worker retries, like the kubelet).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// A volume materialised on the host.
#[derive(Debug, Clone)]
pub struct HostVolume {
    pub path: PathBuf,
    /// Secret, configMap, downwardAPI and projected volumes are always read-only.
    pub force_read_only: bool,
}

/// A service-account token file that must be refreshed before it expires.
#[derive(Debug, Clone)]
pub struct TokenFile {
    pub path: PathBuf,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub mode: u32,
    pub refresh_at: Instant,
}

/// All volumes of one pod.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub volumes: BTreeMap<String, HostVolume>,
    pub tokens: Vec<TokenFile>,
}

/// The cluster CA file (`--cluster-ca`), set once at start-up.
pub static CLUSTER_CA: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// A file to write into a volume: relative path, content, mode.
type FileOut = (String, Vec<u8>, u32);

fn io_err(what: &str, path: &Path, e: std::io::Error) -> VolumeError {
    VolumeError(format!("{what} {}: {e}", path.display()))
}

fn write_file(
    dir: &Path,
    rel: &str,
    data: &[u8],
    mode: u32,
    gid: Option<u32>,
) -> Result<(), VolumeError> {
    if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
        return Err(VolumeError(format!("invalid path {rel:?} in volume item")));
    }
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
    }
    // Write-then-rename so a process reading the file never sees it half written.
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f")
    ));
    std::fs::write(&tmp, data).map_err(|e| io_err("writing", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("chmod", &tmp, e))?;
    if let Some(g) = gid {
        let _ = nix::unistd::chown(&tmp, None, Some(nix::unistd::Gid::from_raw(g)));
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_err("renaming", &path, e))?;
    Ok(())
}

fn items_or_all(
    keys: impl Iterator<Item = String>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    what: &str,
    optional: bool,
) -> Result<Vec<(String, String, u32)>, VolumeError> {
    let keys: Vec<String> = keys.collect();
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| {
                if keys.contains(&i.key) {
                    Some(Ok((
                        i.key.clone(),
                        i.path.clone(),
                        i.mode.map(|m| m as u32).unwrap_or(default_mode),
                    )))
                } else if optional {
                    None
                } else {
                    Some(Err(VolumeError(format!(
                        "configured to use key {:?} of {what}, which does not exist",
                        i.key
                    ))))
                }
            })
            .collect(),
        _ => Ok(keys
            .into_iter()
            .map(|k| (k.clone(), k, default_mode))
            .collect()),
    }
}

async fn secret_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
) -> Result<Vec<FileOut>, VolumeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| VolumeError(format!("getting secret {ns}/{name}: {e}")))?;
    let Some(secret) = secret else {
        if optional {
            return Ok(Vec::new());
        }
        return Err(VolumeError(format!("secret \"{name}\" not found")));
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .chain(
            secret
                .string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        )
        .collect();
    let what = format!("secret {ns}/{name}");
    Ok(
        items_or_all(data.keys().cloned(), items, default_mode, &what, optional)?
            .into_iter()
            .map(|(k, p, m)| (p, data[&k].clone(), m))
            .collect(),
    )
}

async fn config_map_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
) -> Result<Vec<FileOut>, VolumeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| VolumeError(format!("getting configmap {ns}/{name}: {e}")))?;
    let cm = match cm {
        Some(cm) => cm,
        // The root-CA publisher may not have run yet in a fresh namespace: the agent
        // knows the cluster CA (--cluster-ca) and serves it the same way.
        None if name == "kube-root-ca.crt" && CLUSTER_CA.get().is_some_and(|p| p.is_file()) => {
            let ca = std::fs::read_to_string(CLUSTER_CA.get().expect("checked"))
                .map_err(|e| VolumeError(format!("reading the cluster CA: {e}")))?;
            ConfigMap {
                data: Some([("ca.crt".to_string(), ca)].into()),
                ..Default::default()
            }
        }
        None if optional => return Ok(Vec::new()),
        None => return Err(VolumeError(format!("configmap \"{name}\" not found"))),
    };
    let data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .chain(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        )
        .collect();
    let what = format!("configmap {ns}/{name}");
    Ok(
        items_or_all(data.keys().cloned(), items, default_mode, &what, optional)?
            .into_iter()
            .map(|(k, p, m)| (p, data[&k].clone(), m))
            .collect(),
    )
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<Vec<FileOut>, VolumeError> {
    items
        .iter()
        .map(|i| {
            let value = if let Some(f) = &i.field_ref {
                envvars::field_value(pod, &f.field_path).map_err(|e| VolumeError(e.0))?
            } else if let Some(r) = &i.resource_field_ref {
                let c = pod
                    .spec
                    .as_ref()
                    .and_then(|s| {
                        s.containers
                            .iter()
                            .find(|c| Some(&c.name) == r.container_name.as_ref())
                    })
                    .cloned()
                    .unwrap_or_default();
                envvars::resource_value(&c, &r.resource, 2, 8 << 30)
            } else {
                String::new()
            };
            Ok((
                i.path.clone(),
                value.into_bytes(),
                i.mode.map(|m| m as u32).unwrap_or(default_mode),
            ))
        })
        .collect()
}

/// Requests a token for the pod's service account, bound to the pod, through the
/// TokenRequest API (what the kubelet does for projected serviceAccountToken sources).
pub async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<String, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        metadata: Default::default(),
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        status: None,
    };
    let resp: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .map_err(|e| {
            VolumeError(format!(
                "requesting a token for serviceaccount {ns}/{sa}: {e}"
            ))
        })?;
    resp.status
        .map(|s| s.token)
        .ok_or_else(|| VolumeError("TokenRequest returned no token".into()))
}

fn refresh_instant(expiration_seconds: i64) -> Instant {
    // The kubelet refreshes at 80% of the lifetime.
    Instant::now() + Duration::from_secs((expiration_seconds.max(600) as u64) * 8 / 10)
}

/// Rewrites token files that are due; returns whether any were refreshed.
pub async fn refresh_tokens(
    client: &kube::Client,
    pod: &Pod,
    prepared: &mut Prepared,
) -> Result<bool, VolumeError> {
    let mut any = false;
    for t in prepared
        .tokens
        .iter_mut()
        .filter(|t| t.refresh_at <= Instant::now())
    {
        let token = request_token(client, pod, t.audience.as_deref(), t.expiration_seconds).await?;
        let dir = t.path.parent().unwrap_or(Path::new("/"));
        let name = t
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("token");
        write_file(dir, name, token.as_bytes(), t.mode, None)?;
        t.refresh_at = refresh_instant(t.expiration_seconds);
        any = true;
    }
    Ok(any)
}

async fn pvc_path(client: &kube::Client, ns: &str, claim: &str) -> Result<PathBuf, VolumeError> {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(claim)
        .await
        .map_err(|e| VolumeError(format!("getting persistentvolumeclaim {ns}/{claim}: {e}")))?
        .ok_or_else(|| VolumeError(format!("persistentvolumeclaim \"{claim}\" not found")))?;
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| VolumeError(format!("persistentvolumeclaim \"{claim}\" is not bound")))?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .map_err(|e| VolumeError(format!("getting persistentvolume {pv_name}: {e}")))?;
    let spec = pv.spec.unwrap_or_default();
    spec.host_path
        .map(|h| PathBuf::from(h.path))
        .or_else(|| spec.local.map(|l| PathBuf::from(l.path)))
        .ok_or_else(|| {
            VolumeError(format!(
                "persistentvolume {pv_name} is neither hostPath nor local: this node cannot attach it"
            ))
        })
}

fn mkdir_world_writable(path: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(path).map_err(|e| io_err("creating", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| io_err("chmod", path, e))
}

/// Materialises every volume of the pod under `<pod_dir>/volumes/`.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<Prepared, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.clone().unwrap_or_default();
    let fs_group = spec
        .security_context
        .as_ref()
        .and_then(|s| s.fs_group)
        .map(|g| g as u32);
    let mut out = Prepared::default();
    for v in spec.volumes.iter().flatten() {
        let dir = pod_dir.join("volumes").join(&v.name);
        let mut files: Vec<FileOut> = Vec::new();
        let mut force_ro = true;
        let mut host: Option<PathBuf> = None;
        if v.empty_dir.is_some() {
            mkdir_world_writable(&dir)?;
            force_ro = false;
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = s.default_mode.map(|m| m as u32).unwrap_or(0o644);
            files = secret_files(
                client,
                ns,
                &name,
                s.items.as_ref(),
                mode,
                s.optional == Some(true),
            )
            .await?;
        } else if let Some(c) = &v.config_map {
            let mode = c.default_mode.map(|m| m as u32).unwrap_or(0o644);
            files = config_map_files(
                client,
                ns,
                &c.name,
                c.items.as_ref(),
                mode,
                c.optional == Some(true),
            )
            .await?;
        } else if let Some(d) = &v.downward_api {
            let mode = d.default_mode.map(|m| m as u32).unwrap_or(0o644);
            files = downward_files(pod, d.items.as_deref().unwrap_or_default(), mode)?;
        } else if let Some(p) = &v.projected {
            let mode = p.default_mode.map(|m| m as u32).unwrap_or(0o644);
            for src in p.sources.iter().flatten() {
                if let Some(s) = &src.secret {
                    files.extend(
                        secret_files(
                            client,
                            ns,
                            &s.name,
                            s.items.as_ref(),
                            mode,
                            s.optional == Some(true),
                        )
                        .await?,
                    );
                }
                if let Some(c) = &src.config_map {
                    files.extend(
                        config_map_files(
                            client,
                            ns,
                            &c.name,
                            c.items.as_ref(),
                            mode,
                            c.optional == Some(true),
                        )
                        .await?,
                    );
                }
                if let Some(d) = &src.downward_api {
                    files.extend(downward_files(
                        pod,
                        d.items.as_deref().unwrap_or_default(),
                        mode,
                    )?);
                }
                if let Some(t) = &src.service_account_token {
                    let exp = t.expiration_seconds.unwrap_or(3600);
                    let token = request_token(client, pod, t.audience.as_deref(), exp).await?;
                    // Token files are 0600 unless the pod runs as one non-root user
                    // (then the kubelet makes it readable by that user).
                    let token_mode = if p.default_mode.is_some() {
                        mode
                    } else {
                        0o644
                    };
                    out.tokens.push(TokenFile {
                        path: dir.join(&t.path),
                        audience: t.audience.clone(),
                        expiration_seconds: exp,
                        mode: token_mode,
                        refresh_at: refresh_instant(exp),
                    });
                    files.push((t.path.clone(), token.into_bytes(), token_mode));
                }
            }
        } else if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            match h.type_.as_deref() {
                Some("DirectoryOrCreate") => {
                    std::fs::create_dir_all(&path).map_err(|e| io_err("creating", &path, e))?
                }
                Some("FileOrCreate") if !path.exists() => {
                    std::fs::write(&path, b"").map_err(|e| io_err("creating", &path, e))?
                }
                Some(t) if !path.exists() && !t.is_empty() => {
                    return Err(VolumeError(format!("hostPath {} does not exist", h.path)));
                }
                _ => {}
            }
            host = Some(path);
            force_ro = false;
        } else if let Some(c) = &v.persistent_volume_claim {
            host = Some(pvc_path(client, ns, &c.claim_name).await?);
            force_ro = c.read_only == Some(true);
        } else {
            return Err(VolumeError(format!(
                "volume {:?} has a type this node does not support (emptyDir, secret, configMap, downwardAPI, projected, hostPath, persistentVolumeClaim are supported)",
                v.name
            )));
        }
        let path = match host {
            Some(p) => p,
            None => {
                std::fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
                for (rel, data, mode) in &files {
                    write_file(&dir, rel, data, *mode, fs_group)?;
                }
                dir
            }
        };
        if let Some(g) = fs_group
            && !force_ro
        {
            let _ = nix::unistd::chown(&path, None, Some(nix::unistd::Gid::from_raw(g)));
        }
        out.volumes.insert(
            v.name.clone(),
            HostVolume {
                path,
                force_read_only: force_ro,
            },
        );
    }
    Ok(out)
}

/// The bind mounts for a container's volumeMounts (subPath and subPathExpr included).
pub fn container_mounts(
    prepared: &Prepared,
    container: &Container,
    env: &[(String, String)],
) -> Result<Vec<MountSpec>, VolumeError> {
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let vol = prepared.volumes.get(&vm.name).ok_or_else(|| {
            VolumeError(format!(
                "volumeMount {:?} refers to no volume of the pod",
                vm.name
            ))
        })?;
        let sub = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => {
                let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                Some(envvars::expand(e, &lookup))
            }
            _ => None,
        };
        let source = match &sub {
            Some(s) => {
                if s.starts_with('/') || s.split('/').any(|c| c == "..") {
                    return Err(VolumeError(format!(
                        "subPath {s:?} must be a relative path without '..'"
                    )));
                }
                let p = vol.path.join(s);
                if !p.exists() {
                    if vol.force_read_only {
                        return Err(VolumeError(format!(
                            "subPath {s:?} does not exist in volume {:?}",
                            vm.name
                        )));
                    }
                    mkdir_world_writable(&p)?;
                }
                p
            }
            None => vol.path.clone(),
        };
        mounts.push(MountSpec {
            file: source.is_file(),
            source: Some(source),
            target: PathBuf::from(&vm.mount_path),
            read_only: vm.read_only == Some(true) || vol.force_read_only,
        });
    }
    Ok(mounts)
}

/// Removes the pod's materialised volumes (not PVC data, which lives elsewhere).
pub fn cleanup(pod_dir: &Path) {
    let _ = std::fs::remove_dir_all(pod_dir.join("volumes"));
}

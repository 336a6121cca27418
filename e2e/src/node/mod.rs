//! `lifeboat-node-agent`: plays the node of the local cluster (kubelet, scheduler,
//! kube-proxy, a storage provisioner and a CSI snapshotter in one process). This module
//! owns the shared context and the start-up/shutdown sequence; each concern lives in its
//! own submodule.

pub mod envvars;
pub mod images;
pub mod network;
pub mod pod;
pub mod pods;
pub mod probes;
pub mod process;
pub mod provisioner;
pub mod proxy;
pub mod registration;
pub mod scheduler;
pub mod shim;
pub mod snapshots;
pub mod status;
pub mod volumes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use network::{Cidr, IpAllocator};

/// Name of the StorageClass the agent provisions for.
pub const STORAGE_CLASS: &str = "lifeboat-local";
/// Name of the VolumeSnapshotClass the agent creates.
pub const SNAPSHOT_CLASS: &str = "lifeboat-local";
/// The provisioner / CSI driver name used by the StorageClass, PVs and snapshots.
pub const DRIVER: &str = "local.csi.lifeboat.dev";
/// Field manager and event reporter name.
pub const MANAGER: &str = "lifeboat-node-agent";

/// Validated configuration of one agent.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub state_dir: PathBuf,
    pub images: PathBuf,
    pub pod_cidr: Cidr,
    pub service_cidr: Cidr,
    pub apiserver_host: String,
    pub apiserver_port: u16,
    pub cluster_ca: PathBuf,
    pub cluster_domain: String,
    /// The address the node reports (InternalIP, status.hostIP).
    pub host_ip: String,
}

/// Errors of the agent's start-up and its controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("image map: {0}")]
    Images(#[from] images::LoadError),
    #[error("state directory {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

impl Error {
    /// Bounded category for logs and exit codes.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApi",
            Error::Kubeconfig { .. } => "Kubeconfig",
            Error::Images(_) => "ImageMap",
            Error::State { .. } => "StateDir",
            Error::Setup(_) => "Setup",
        }
    }

    /// Whether retrying could help (API hiccups) or not (bad configuration).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Kube(_))
    }
}

/// What the per-pod hosts file needs, registered while the pod runs.
#[derive(Debug, Clone)]
pub struct HostsTarget {
    pub path: PathBuf,
    pub pod_ip: String,
    pub hostname: String,
    pub namespace: String,
}

/// State shared by all tasks of the agent.
pub struct Ctx {
    pub client: kube::Client,
    pub cfg: Config,
    pub images: images::ImageMap,
    pub ips: Mutex<IpAllocator>,
    pub services: Store<Service>,
    pub hosts: Mutex<BTreeMap<String, HostsTarget>>,
    pub recorder: Recorder,
    pub started: jiff::Timestamp,
}

impl Ctx {
    /// `<state>/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.state_dir.join("pods").join(uid)
    }

    /// Registry of mount points created on the host (removed at shutdown).
    pub fn created_registry(&self) -> PathBuf {
        self.cfg.state_dir.join("created-mountpoints")
    }

    /// Renders and writes one pod's hosts file from the current Services.
    pub fn write_hosts(&self, t: &HostsTarget) {
        let services: Vec<network::ServiceEntry> = self
            .services
            .state()
            .iter()
            .filter_map(|s| {
                let ip = s.spec.as_ref()?.cluster_ip.clone()?;
                if ip.is_empty() || ip == "None" {
                    return None;
                }
                Some(network::ServiceEntry {
                    namespace: s.metadata.namespace.clone()?,
                    name: s.metadata.name.clone()?,
                    cluster_ip: ip,
                })
            })
            .collect();
        let text = network::render_hosts(
            &t.pod_ip,
            &t.hostname,
            &t.namespace,
            &self.cfg.cluster_domain,
            &services,
        );
        // NB: written in place (not renamed over) so the bind mount keeps showing it.
        if std::fs::read_to_string(&t.path).ok().as_deref() != Some(text.as_str()) {
            let _ = std::fs::write(&t.path, text);
        }
    }

    /// Re-renders every registered hosts file (on any Service change).
    pub fn refresh_all_hosts(&self) {
        let targets: Vec<HostsTarget> = self
            .hosts
            .lock()
            .expect("hosts lock")
            .values()
            .cloned()
            .collect();
        for t in &targets {
            self.write_hosts(t);
        }
    }
}

/// Builds a client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let err = |message: String| Error::Kubeconfig {
        path: path.display().to_string(),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| err(e.to_string()))
}

/// Every path used as a mount point in any mount namespace on the machine (containers of
/// other agents on this host included).
pub fn mount_points_in_use() -> std::collections::BTreeSet<PathBuf> {
    let mut seen_ns = std::collections::BTreeSet::new();
    let mut out = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(ns) = std::fs::read_link(entry.path().join("ns/mnt")) else {
            continue;
        };
        if !seen_ns.insert(ns) {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(entry.path().join("mountinfo")) else {
            continue;
        };
        for line in info.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                out.insert(PathBuf::from(mp.replace("\\040", " ")));
            }
        }
    }
    out
}

/// Removes the mount points the shims created on the host, deepest first; only empty
/// directories and empty files go, so nothing a user put there is lost.
///
/// NB: since Linux 3.18 unlinking a path detaches mounts on it in every other mount
/// namespace, so a path still used as a mount point anywhere (another agent on this
/// machine, a straggler) is left alone.
pub fn remove_created_mountpoints(registry: &Path) {
    let Ok(text) = std::fs::read_to_string(registry) else {
        return;
    };
    let mut paths: Vec<PathBuf> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    paths.sort();
    paths.dedup();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let in_use = mount_points_in_use();
    let mut kept = Vec::new();
    for p in &paths {
        if in_use.contains(p) {
            kept.push(p.display().to_string());
            continue;
        }
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(p);
            }
            _ => {}
        }
    }
    if kept.is_empty() {
        let _ = std::fs::remove_file(registry);
    } else {
        tracing::info!(
            ?kept,
            "mount points still used by other mount namespaces were kept"
        );
        let _ = std::fs::write(registry, kept.join("\n") + "\n");
    }
}

/// Runs the agent until SIGTERM/SIGINT, then stops every pod process and cleans up.
pub async fn run(cfg: Config) -> Result<(), Error> {
    let state = |p: &Path| {
        let path = p.display().to_string();
        move |source| Error::State { path, source }
    };
    for sub in ["pods", "volumes", "snapshots", "logs"] {
        let d = cfg.state_dir.join(sub);
        std::fs::create_dir_all(&d).map_err(state(&d))?;
    }
    let images = images::ImageMap::load(&cfg.images)?;
    let _ = volumes::CLUSTER_CA.set(cfg.cluster_ca.clone());
    let client = client_from_kubeconfig(&cfg.kubeconfig).await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kubelet".into(),
            instance: Some(cfg.node_name.clone()),
        },
    );
    registration::register(&client, &cfg).await?;
    provisioner::install(&client).await?;
    snapshots::install(&client).await?;

    let (services, services_writer) = kube::runtime::reflector::store::<Service>();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        ips: Mutex::new(IpAllocator::new(cfg.pod_cidr)),
        cfg,
        images,
        services,
        hosts: Mutex::new(BTreeMap::new()),
        recorder,
        started: jiff::Timestamp::now(),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(registration::heartbeat(ctx.clone()));
    tasks.spawn(proxy::run(ctx.clone(), services_writer));
    tasks.spawn(provisioner::run(ctx.clone()));
    tasks.spawn(snapshots::run(ctx.clone()));
    let pods_task = tokio::spawn(pods::run(ctx.clone(), stop_rx));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Setup(format!("installing SIGTERM handler: {e}")))?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping all pods"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping all pods"),
        r = tasks.join_next() => tracing::error!(?r, "a controller task ended unexpectedly; shutting down"),
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(std::time::Duration::from_secs(60), pods_task).await {
        Ok(_) => {}
        Err(_) => tracing::error!("pods did not stop within 60s"),
    }
    tasks.abort_all();
    remove_created_mountpoints(&ctx.created_registry());
    tracing::info!("node agent stopped");
    Ok(())
}

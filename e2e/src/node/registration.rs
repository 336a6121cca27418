//! Node registration: creates the Node object with the labels, addresses, capacity and
//! conditions a kubelet reports, and keeps it alive (status heartbeat + node Lease).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};

use super::{Config, Ctx, Error};

/// The labels a kubelet puts on its Node.
pub fn labels(cfg: &Config) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", cfg.node_name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("node.lifeboat.dev/local", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn capacity() -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(1 << 20);
    [
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{mem_kib}Ki"))),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]
    .into()
}

/// The API server's version, reported as the kubelet's (a kubelet matches its control
/// plane's minor version): learned once at registration.
static KUBELET_VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn node_status(cfg: &Config) -> NodeStatus {
    let now = Time(jiff::Timestamp::now());
    let cond = |t: &str, status: &str, reason: &str, msg: &str| NodeCondition {
        type_: t.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(msg.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.host_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.node_name.clone(),
            },
        ]),
        allocatable: Some(capacity()),
        capacity: Some(capacity()),
        conditions: Some(vec![
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond(
                "Ready",
                "True",
                "KubeletReady",
                "lifeboat-node-agent is posting ready status",
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints::default()),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: boot_id.trim().into(),
            container_runtime_version: "lifeboat-host://0.1".into(),
            kernel_version: kernel,
            // Deprecated since 1.31: kubelets leave it empty.
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.get().cloned().unwrap_or_default(),
            machine_id: machine_id.trim().into(),
            operating_system: "linux".into(),
            os_image: "lifeboat-node-agent (host processes)".into(),
            system_uuid: machine_id.trim().into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates or updates the Node and marks it Ready.
pub async fn register(client: &kube::Client, cfg: &Config) -> Result<(), Error> {
    if KUBELET_VERSION.get().is_none() {
        let v = client.apiserver_version().await?;
        let _ = KUBELET_VERSION.set(v.git_version);
    }
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(labels(cfg)),
            annotations: Some(
                [("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())].into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cfg.pod_cidr.to_string()),
            pod_cidrs: Some(vec![cfg.pod_cidr.to_string()]),
            ..Default::default()
        }),
        status: None,
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %cfg.node_name, "registered node"),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = serde_json::json!({"metadata": {"labels": labels(cfg)}, "spec": {"unschedulable": null}});
            api.patch(
                &cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            tracing::info!(node = %cfg.node_name, "node already registered; updated");
        }
        Err(e) => return Err(e.into()),
    }
    post_status(client, cfg).await
}

async fn post_status(client: &kube::Client, cfg: &Config) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": node_status(cfg) });
    api.patch_status(
        &cfg.node_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn renew_lease(client: &kube::Client, cfg: &Config) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.node_name.clone()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..Default::default()
        }),
    };
    let pp = PatchParams::apply(super::MANAGER).force();
    api.patch(&cfg.node_name, &pp, &Patch::Apply(&lease))
        .await?;
    Ok(())
}

/// Keeps the node's status and lease fresh every 10 seconds (the kubelet's defaults).
pub async fn heartbeat(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        if let Err(e) = post_status(&ctx.client, &ctx.cfg).await {
            tracing::warn!(error = %e, "node status heartbeat failed");
            if matches!(&e, Error::Kube(kube::Error::Api(s)) if s.code == 404) {
                let _ = register(&ctx.client, &ctx.cfg).await;
            }
        }
        if let Err(e) = renew_lease(&ctx.client, &ctx.cfg).await {
            tracing::debug!(error = %e, "node lease renewal failed");
        }
    }
}

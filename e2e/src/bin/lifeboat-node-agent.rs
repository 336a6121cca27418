//! `lifeboat-node-agent`: the node of the local test cluster (see `lifeboat_e2e::node`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lifeboat_e2e::node::{self, network::Cidr};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Plays the node of the local Kubernetes cluster: runs pods as host processes"
)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,
    /// Admin kubeconfig of the cluster.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Name of the Node to register.
    #[arg(long, env = "LIFEBOAT_NODE_NAME", default_value = "lifeboat-local")]
    node_name: String,
    /// Directory for pod files, volumes, snapshots and logs.
    #[arg(long, env = "LIFEBOAT_NODE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The image map (e2e/images.toml).
    #[arg(long, env = "LIFEBOAT_NODE_IMAGES")]
    images: Option<PathBuf>,
    /// Loopback range pod IPs come from, e.g. 127.1.0.0/16.
    #[arg(long, env = "LIFEBOAT_NODE_POD_CIDR", default_value = "127.1.0.0/16")]
    pod_cidr: Cidr,
    /// The apiserver's --service-cluster-ip-range (a loopback range), e.g. 127.2.0.0/16.
    #[arg(
        long,
        env = "LIFEBOAT_NODE_SERVICE_CIDR",
        default_value = "127.2.0.0/16"
    )]
    service_cidr: Cidr,
    /// Address pods use to reach the apiserver (KUBERNETES_SERVICE_HOST).
    #[arg(
        long,
        env = "LIFEBOAT_NODE_APISERVER_HOST",
        default_value = "127.0.0.1"
    )]
    apiserver_host: String,
    /// Port pods use to reach the apiserver (KUBERNETES_SERVICE_PORT).
    #[arg(long, env = "LIFEBOAT_NODE_APISERVER_PORT")]
    apiserver_port: Option<u16>,
    /// CA bundle of the apiserver (kept for pods' ca.crt when kube-root-ca.crt is absent).
    #[arg(long, env = "LIFEBOAT_NODE_CLUSTER_CA")]
    cluster_ca: Option<PathBuf>,
    /// Cluster DNS domain used in the pods' hosts files.
    #[arg(
        long,
        env = "LIFEBOAT_NODE_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// Address the node reports as InternalIP / status.hostIP.
    #[arg(long, env = "LIFEBOAT_NODE_HOST_IP", default_value = "127.0.0.1")]
    host_ip: String,
}

#[derive(Subcommand, Debug)]
enum Internal {
    /// (internal) container shim started by the agent for each container.
    #[command(hide = true)]
    Shim { spec: PathBuf },
}

fn required<T>(v: Option<T>, flag: &str, env: &str) -> anyhow::Result<T> {
    v.with_context(|| format!("--{flag} (or {env}) is required"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Internal::Shim { spec }) = &cli.internal {
        // Before any runtime exists: the shim forks and must be single-threaded.
        node::shim::main(spec);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn,hyper=warn".into()),
        )
        .init();
    let state_dir = required(cli.state_dir, "state-dir", "LIFEBOAT_NODE_STATE_DIR")?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&state_dir)?;
    let cfg = node::Config {
        kubeconfig: required(cli.kubeconfig, "kubeconfig", "KUBECONFIG")?,
        node_name: cli.node_name,
        state_dir,
        images: required(cli.images, "images", "LIFEBOAT_NODE_IMAGES")?,
        pod_cidr: cli.pod_cidr,
        service_cidr: cli.service_cidr,
        apiserver_host: cli.apiserver_host,
        apiserver_port: required(
            cli.apiserver_port,
            "apiserver-port",
            "LIFEBOAT_NODE_APISERVER_PORT",
        )?,
        cluster_ca: cli.cluster_ca.unwrap_or_default(),
        cluster_domain: cli.cluster_domain,
        host_ip: cli.host_ip,
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), node = %cfg.node_name, pod_cidr = %cfg.pod_cidr, service_cidr = %cfg.service_cidr, "lifeboat-node-agent starting");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(node::run(cfg))
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.category()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

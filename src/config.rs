//! Validated runtime configuration of the controller, built once from the command line
//! (every flag also an environment variable, see `cli`).

use std::net::SocketAddr;
use std::time::Duration;

/// What the controller needs to know about its installation.
#[derive(Clone, Debug)]
pub struct Config {
    /// Image of mover Jobs for volumes and manifests.
    pub mover_image: String,
    /// Image of mover Jobs for database sources (the mover plus pg_dump / mariadb-dump).
    pub mover_db_image: String,
    /// `imagePullPolicy` of mover containers, when set.
    pub image_pull_policy: Option<String>,
    /// Namespace the controller runs in (leader Lease, mirrored cluster-store Secrets).
    pub namespace: String,
    /// Only reconcile objects in these namespaces; empty means all.
    pub watch_namespaces: Vec<String>,
    /// This cluster's identity, tagged on every snapshot (`cluster=`): `--cluster-id`, or
    /// the UID of the `kube-system` namespace read at start. `None` only before start-up
    /// resolved it (and in tests that want untagged snapshots).
    pub cluster_id: Option<String>,
    /// ServiceAccount mover pods run as, created per namespace by the controller.
    pub mover_service_account: String,
    /// ClusterRole bound, for one run, to movers that save a namespace's manifests (read
    /// access). The chart installs it; the controller only creates RoleBindings to it,
    /// which needs `bind` on it rather than holding its rules.
    pub mover_read_cluster_role: String,
    /// ClusterRole bound, for one run, to manifests movers whose policy saves Secrets.
    pub mover_read_secrets_cluster_role: String,
    /// ClusterRole bound to movers that restore manifests into a namespace (write access).
    pub mover_restore_cluster_role: String,
    /// With `watch_namespaces`, the controller's rights in a served namespace are a
    /// RoleBinding there (the chart's), not cluster-wide; a drill sandbox is made at run
    /// time, so the controller binds this ClusterRole there itself, to its own
    /// ServiceAccount, before it writes anything into the sandbox. `None`: the controller
    /// holds its rights cluster-wide and binds nothing.
    pub sandbox_binding: Option<SandboxBinding>,
    /// Reconciliations running at once, per controller.
    pub concurrency: u16,
    /// How often stores are probed for reachability.
    pub store_probe_interval: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// Lease name for leader election; `None` disables it (single replica).
    pub leader_lease: Option<String>,
    /// This process's identity in leader election and Events.
    pub identity: String,
    /// Whether a namespaced BackupStore without credentials may use the ambient cloud
    /// identity (IRSA, pod identity, instance roles). ClusterBackupStores always may:
    /// cluster administrators write them.
    pub allow_ambient_credentials: bool,
    /// The Pod Security level the controller labels its own namespace with at start-up
    /// (`restricted` in the chart); `None` leaves the namespace's labels alone.
    pub own_namespace_pod_security: Option<String>,
    /// Name prefix of the evidence objects in the controller's namespace
    /// (`<prefix>-evidence-signing-key`, `<prefix>-evidence-public-key`; the chart passes
    /// its full name). `None`: drill reports are not signed, and each run says so in its
    /// `EvidenceSigned` condition.
    pub evidence_prefix: Option<String>,
}

/// What the controller binds in each drill sandbox it makes (see `Config::sandbox_binding`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxBinding {
    /// The ClusterRole holding the controller's namespaced rights.
    pub cluster_role: String,
    /// The controller's own ServiceAccount (in `Config::namespace`).
    pub service_account: String,
}

impl Config {
    /// A configuration for unit tests.
    pub fn for_tests() -> Self {
        Config {
            mover_image: "ghcr.io/lifeboat-dev/lifeboat:test".into(),
            mover_db_image: "ghcr.io/lifeboat-dev/lifeboat-db:test".into(),
            image_pull_policy: None,
            namespace: "lifeboat-system".into(),
            watch_namespaces: Vec::new(),
            cluster_id: Some("0c1a55e5-0000-4000-8000-00000000c1d0".into()),
            mover_service_account: "lifeboat-mover".into(),
            mover_read_cluster_role: "lifeboat-mover-read".into(),
            mover_read_secrets_cluster_role: "lifeboat-mover-read-secrets".into(),
            mover_restore_cluster_role: "lifeboat-mover-restore".into(),
            sandbox_binding: None,
            concurrency: 8,
            store_probe_interval: Duration::from_secs(300),
            metrics_addr: "127.0.0.1:0".parse().expect("valid address"),
            leader_lease: None,
            identity: "test".into(),
            allow_ambient_credentials: false,
            own_namespace_pod_security: None,
            evidence_prefix: None,
        }
    }
}

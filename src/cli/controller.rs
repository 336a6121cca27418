//! `lifeboat controller` (run the operator) and `lifeboat crd` (write the CRDs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::CliError;
use crate::config::Config;
use crate::controller;
use crate::schedule::duration;

/// Options of `controller`. Every flag also has an environment variable; the Helm chart
/// passes flags.
#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Namespace the controller runs in (leader Lease, mirrored Secrets).
    #[arg(long, env = "POD_NAMESPACE", default_value = "lifeboat-system")]
    namespace: String,
    /// This process's identity for leader election (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Image of mover Jobs for volumes and manifests.
    #[arg(long, env = "LIFEBOAT_MOVER_IMAGE")]
    mover_image: String,
    /// Image of mover Jobs for databases (with pg_dump / mariadb-dump).
    #[arg(long, env = "LIFEBOAT_MOVER_DB_IMAGE")]
    mover_db_image: String,
    /// imagePullPolicy of mover containers.
    #[arg(long, env = "LIFEBOAT_IMAGE_PULL_POLICY")]
    image_pull_policy: Option<String>,
    /// Comma-separated namespaces to reconcile; empty means all.
    #[arg(long, env = "LIFEBOAT_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// This cluster's identity, tagged on every snapshot (`cluster=`) so that retention in
    /// one cluster never forgets another's snapshots in a shared repository. Empty: the
    /// UID of the `kube-system` namespace.
    #[arg(long, env = "LIFEBOAT_CLUSTER_ID", default_value = "")]
    cluster_id: String,
    /// ServiceAccount of mover pods, created by the controller in each namespace.
    #[arg(
        long,
        env = "LIFEBOAT_MOVER_SERVICE_ACCOUNT",
        default_value = "lifeboat-mover"
    )]
    mover_service_account: String,
    /// ClusterRole bound, for one run, to movers that read manifests.
    #[arg(
        long,
        env = "LIFEBOAT_MOVER_READ_CLUSTER_ROLE",
        default_value = "lifeboat-mover-read"
    )]
    mover_read_cluster_role: String,
    /// ClusterRole bound, for one run, to manifests movers that save Secrets too.
    #[arg(
        long,
        env = "LIFEBOAT_MOVER_READ_SECRETS_CLUSTER_ROLE",
        default_value = "lifeboat-mover-read-secrets"
    )]
    mover_read_secrets_cluster_role: String,
    /// ClusterRole bound to movers that restore manifests.
    #[arg(
        long,
        env = "LIFEBOAT_MOVER_RESTORE_CLUSTER_ROLE",
        default_value = "lifeboat-mover-restore"
    )]
    mover_restore_cluster_role: String,
    /// ClusterRole of the controller's namespaced rights, which it binds to its own
    /// ServiceAccount in each drill sandbox it makes (the chart sets it with
    /// watchNamespaces, where those rights are not cluster-wide); empty: binds nothing.
    #[arg(long, env = "LIFEBOAT_SANDBOX_CLUSTER_ROLE", default_value = "")]
    sandbox_cluster_role: String,
    /// The controller's own ServiceAccount, the subject of those sandbox bindings.
    #[arg(long, env = "POD_SERVICE_ACCOUNT", default_value = "")]
    service_account: String,
    /// Reconciliations running at once, per controller.
    #[arg(long, env = "LIFEBOAT_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// How often stores are probed.
    #[arg(long, env = "LIFEBOAT_STORE_PROBE_INTERVAL", default_value = "5m")]
    store_probe_interval: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "LIFEBOAT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease (needed with more than one replica).
    #[arg(long, env = "LIFEBOAT_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "LIFEBOAT_LEADER_LEASE",
        default_value = "lifeboat-controller"
    )]
    leader_lease: String,
    /// Let namespaced BackupStores without credentials use the controller's and movers'
    /// ambient cloud identity (IRSA, pod identity, instance roles). Off by default: a
    /// namespace editor could otherwise point that identity at any bucket.
    #[arg(long, env = "LIFEBOAT_ALLOW_AMBIENT_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    allow_ambient_credentials: bool,
    /// Pod Security level to enforce on the controller's own namespace, set at start-up
    /// (`restricted`, `baseline`); empty leaves the namespace's labels alone.
    #[arg(long, env = "LIFEBOAT_OWN_NAMESPACE_POD_SECURITY", default_value = "", value_parser = ["", "restricted", "baseline"])]
    own_namespace_pod_security: String,
    /// Name prefix of the evidence signing key Secret and public key ConfigMap in the
    /// controller's namespace (made at start if absent); empty: reports are not signed.
    #[arg(long, env = "LIFEBOAT_EVIDENCE_PREFIX", default_value = "lifeboat")]
    evidence_prefix: String,
}

impl ControllerArgs {
    fn config(self) -> Result<Config, CliError> {
        let ControllerArgs {
            namespace,
            identity,
            mover_image,
            mover_db_image,
            image_pull_policy,
            watch_namespaces,
            cluster_id,
            mover_service_account,
            mover_read_cluster_role,
            mover_read_secrets_cluster_role,
            mover_restore_cluster_role,
            sandbox_cluster_role,
            service_account,
            concurrency,
            store_probe_interval,
            metrics_addr,
            leader_elect,
            leader_lease,
            allow_ambient_credentials,
            own_namespace_pod_security,
            evidence_prefix,
        } = self;
        let identity = identity.unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "lifeboat".into())
        });
        // Two processes of one pod name (a restart racing its predecessor) must not both
        // hold the lease: make the identity unique per process.
        let identity = format!("{identity}_{:08x}", rand::random::<u32>());
        let sandbox_binding = match (sandbox_cluster_role.is_empty(), service_account.is_empty()) {
            (true, _) => None,
            (false, false) => Some(crate::config::SandboxBinding {
                cluster_role: sandbox_cluster_role,
                service_account,
            }),
            (false, true) => {
                return Err(CliError::input(
                    "--sandbox-cluster-role needs --service-account (POD_SERVICE_ACCOUNT): the subject of the sandbox bindings".to_string(),
                ));
            }
        };
        Ok(Config {
            mover_image,
            mover_db_image,
            image_pull_policy,
            namespace,
            watch_namespaces: watch_namespaces
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
            cluster_id: match cluster_id.as_str() {
                "" => None,
                id if valid_cluster_id(id) => Some(cluster_id),
                _ => {
                    return Err(CliError::input(format!(
                        "--cluster-id {cluster_id:?}: use 1 to 63 letters, digits, '.', '_' or '-' (it becomes a snapshot tag)"
                    )));
                }
            },
            mover_service_account,
            mover_read_cluster_role,
            mover_read_secrets_cluster_role,
            mover_restore_cluster_role,
            sandbox_binding,
            concurrency: concurrency.max(1),
            store_probe_interval: duration::parse(&store_probe_interval)
                .map_err(|e| CliError::input(format!("--store-probe-interval: {e}")))?,
            metrics_addr,
            leader_lease: leader_elect.then_some(leader_lease),
            identity,
            allow_ambient_credentials,
            own_namespace_pod_security: (!own_namespace_pod_security.is_empty())
                .then_some(own_namespace_pod_security),
            evidence_prefix: (!evidence_prefix.is_empty()).then_some(evidence_prefix),
        })
    }
}

/// Whether `id` can be a snapshot tag's value everywhere: restic splits tag lists at
/// commas, and a space or `=` would make `cluster=<id>` ambiguous to read back.
fn valid_cluster_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Runs the controller until SIGTERM.
pub fn run(a: ControllerArgs) -> Result<(), CliError> {
    let config = a.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError {
            category: "Internal",
            message: format!("cannot start the runtime: {e}"),
        })?;
    let prober = Arc::new(controller::store::prober::RepoProber {
        runtime: rt.handle().clone(),
        scratch: std::env::temp_dir().join("lifeboat-controller"),
    });
    rt.block_on(controller::run(config, prober))
        .map_err(|e| CliError {
            category: e.category(),
            message: e.to_string(),
        })
}

/// Options of `crd`.
#[derive(Args, Debug)]
pub struct CrdArgs {
    /// Write one file per CRD into this directory instead of printing them all.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the field reference of every CRD as Markdown (docs/reference.md) instead.
    #[arg(long, conflicts_with = "out")]
    reference: bool,
}

/// Prints or writes the CRDs.
pub fn crd(a: CrdArgs) -> Result<(), CliError> {
    let crds = crate::crd::all_crds();
    match a.out {
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let docs: Vec<String> = if a.reference {
                vec![super::reference::render(&crds)]
            } else {
                crds.iter().map(crate::crd::crd_yaml).collect()
            };
            for doc in &docs {
                match out.write_all(doc.as_bytes()) {
                    Ok(()) => {}
                    // `lifeboat crd | head`: the reader is gone, which is not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => {
                        return Err(CliError {
                            category: "LocalIo",
                            message: format!("writing the CRDs: {e}"),
                        });
                    }
                }
            }
            Ok(())
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| CliError {
                category: "LocalIo",
                message: format!("{}: {e}", dir.display()),
            })?;
            for c in &crds {
                let path = dir.join(crate::crd::crd_file_name(c));
                std::fs::write(&path, crate::crd::crd_yaml(c)).map_err(|e| CliError {
                    category: "LocalIo",
                    message: format!("{}: {e}", path.display()),
                })?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_that_make_a_readable_tag() {
        for ok in [
            "4f1e2d3c-0000-4000-8000-000000000001",
            "prod.eu-1",
            "a",
            "x_y",
        ] {
            assert!(super::valid_cluster_id(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "a,b", "a b", "a=b", long.as_str(), "ü"] {
            assert!(!super::valid_cluster_id(bad), "{bad:?}");
        }
    }
}

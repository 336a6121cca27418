//! Starting and stopping the controller process: the CRD check (with a hint when they
//! are missing), the HTTP endpoints, leader election gating the controllers, and the
//! controllers themselves.

use std::sync::Arc;

use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use super::{
    Context, backup, backup_policy, dr_drill, drill_run, evidence, leader, restore, store,
};
use crate::config::Config;
use crate::crd::BackupPolicy;
use crate::http::{self, Health};
use crate::metrics::Metrics;

/// Why the controller process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build a Kubernetes client (in-cluster config or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error(
        "the lifeboat.dev CRDs are not installed (kubectl apply -f crds/, or install the Helm chart with crds.install=true)"
    )]
    CrdsMissing,
    #[error(
        "the controller's ServiceAccount may not list BackupPolicies: check the ClusterRole binding ({0})"
    )]
    Forbidden(String),
    #[error("checking the CRDs: {0}")]
    Check(#[source] kube::Error),
    #[error("serving metrics on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    LostLease(#[from] leader::LostLease),
    #[error(
        "cannot read the kube-system namespace's UID, the cluster identity tagged on snapshots (set --cluster-id to name the cluster instead): {0}"
    )]
    ClusterId(String),
}

impl RunError {
    /// Bounded category; picks the process exit code (docs/engine.md lists them).
    pub fn category(&self) -> &'static str {
        match self {
            RunError::Client(_) => "KubernetesClient",
            RunError::CrdsMissing => "CrdsMissing",
            RunError::Forbidden(_) => "Forbidden",
            RunError::Check(_) => "KubernetesApi",
            RunError::Http { .. } => "MetricsAddress",
            RunError::LostLease(_) => "LostLease",
            RunError::ClusterId(_) => "KubernetesApi",
        }
    }
}

/// With `--watch-namespaces`, the controller may list only in those namespaces.
async fn check_crds(client: &Client, namespaces: &[String]) -> Result<(), RunError> {
    let api = match namespaces.first() {
        None => Api::<BackupPolicy>::all(client.clone()),
        Some(ns) => Api::<BackupPolicy>::namespaced(client.clone(), ns),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(RunError::CrdsMissing),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(RunError::Forbidden(e.message)),
        Err(e) => Err(RunError::Check(e)),
    }
}

/// Enforces Pod Security `level` on the controller's own namespace, so that nothing in it
/// (the controller, and any pod someone adds) runs with more than that level allows. A
/// server-side apply of three labels under a field manager of its own: the namespace's
/// other labels are left alone. Failing to label is logged, not fatal: the controller
/// works without it (the chart grants `patch` on this one namespace only).
async fn label_own_namespace(client: &Client, namespace: &str, level: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Patch, PatchParams};
    let patch = serde_json::json!({
    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/warn": level,
        "pod-security.kubernetes.io/audit": level,
    }}});
    let pp = PatchParams::apply("lifeboat-namespace").force();
    match kube::Api::<Namespace>::all(client.clone())
        .patch(namespace, &pp, &Patch::Apply(&patch))
        .await
    {
        Ok(_) => tracing::info!(%namespace, %level, "own namespace enforces Pod Security level"),
        Err(e) => {
            tracing::warn!(%namespace, %level, error = %e, "could not label the own namespace with its Pod Security level")
        }
    }
}

/// The cluster's identity when none was configured: the UID of `kube-system`, which
/// every cluster has, never changes, and a new cluster does not share (the convention of
/// other multi-cluster tools).
async fn cluster_id(client: &Client) -> Result<String, RunError> {
    use k8s_openapi::api::core::v1::Namespace;
    let ns = match Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await
    {
        Ok(ns) => ns,
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(RunError::Forbidden(format!(
                "get namespaces/kube-system (the cluster identity; or set --cluster-id): {}",
                e.message
            )));
        }
        Err(e) => return Err(RunError::ClusterId(e.to_string())),
    };
    ns.metadata
        .uid
        .ok_or_else(|| RunError::ClusterId("the kube-system namespace has no uid".into()))
}

/// Runs the controller until SIGTERM (Ok) or a fatal error.
pub async fn run(mut config: Config, prober: Arc<dyn store::Prober>) -> Result<(), RunError> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        identity = %config.identity,
        namespace = %config.namespace,
        "starting lifeboat controller"
    );
    let client = Client::try_default().await.map_err(RunError::Client)?;
    check_crds(&client, &config.watch_namespaces).await?;
    if config.cluster_id.is_none() {
        config.cluster_id = Some(cluster_id(&client).await?);
    }
    tracing::info!(
        cluster = config.cluster_id.as_deref(),
        "cluster identity for snapshot tags"
    );
    if let Some(level) = &config.own_namespace_pod_security {
        label_own_namespace(&client, &config.namespace, level).await;
    }
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let addr = config.metrics_addr;
    let listener_metrics = metrics.clone();
    let listener_health = health.clone();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        http::serve(
            addr,
            listener_metrics,
            listener_health,
            std::future::pending(),
            Some(bound_tx),
        )
        .await
    });
    if bound_rx.await.is_err() {
        return match server.await {
            Ok(Err(source)) => Err(RunError::Http { addr, source }),
            _ => Err(RunError::Http {
                addr,
                source: std::io::Error::other("metrics server stopped"),
            }),
        };
    }
    health.set_ready(true);
    let config = Arc::new(config);

    let (lead_tx, mut lead_rx) = watch::channel(config.leader_lease.is_none());
    let lease_cfg = config
        .leader_lease
        .as_ref()
        .map(|lease| leader::LeaseConfig::new(lease, &config.namespace, &config.identity));
    let election = match &lease_cfg {
        Some(cfg) => {
            tracing::info!(lease = %cfg.name, "waiting for the leader lease");
            Some(tokio::spawn(leader::run(
                client.clone(),
                cfg.clone(),
                lead_tx,
            )))
        }
        None => None,
    };
    let terminate = shutdown_signal();
    tokio::pin!(terminate);
    tokio::select! {
        r = lead_rx.wait_for(|leading| *leading) => { if r.is_err() { return Ok(()); } }
        () = &mut terminate => return Ok(()),
    }
    metrics.leader.set(1);
    // Only the leader holds the watch caches: a standby costs the API server nothing.
    let (caches, subscriptions) =
        super::cache::Caches::start(&client, &config.watch_namespaces).await;
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        config.clone(),
        caches,
    ));
    // Before the controllers: the first report of this process is already signed.
    evidence::start(&ctx).await;
    tracing::info!("running controllers");
    let controllers = async {
        tokio::join!(
            store::run(ctx.clone(), prober),
            backup_policy::run(
                ctx.clone(),
                subscriptions.policies,
                subscriptions.policy_backups
            ),
            backup::run(ctx.clone(), subscriptions.backups),
            restore::run(ctx.clone()),
            dr_drill::run(ctx.clone()),
            drill_run::run(ctx.clone()),
            drill_run::sweep::run(ctx.clone()),
            sweep_metrics(ctx.clone()),
            retry_evidence_key(ctx.clone())
        );
    };
    match election {
        None => controllers.await,
        Some(election) => {
            let abort = election.abort_handle();
            tokio::select! {
                () = controllers => {
                    // A clean shutdown: stop renewing, then hand the lease over.
                    abort.abort();
                    if let Some(cfg) = &lease_cfg {
                        leader::release(client.clone(), cfg).await;
                    }
                }
                lost = election => {
                    metrics.leader.set(0);
                    if let Ok(Err(e)) = lost {
                        return Err(e.into());
                    }
                }
            }
        }
    }
    tracing::info!("controllers stopped");
    Ok(())
}

/// How often the metric series of deleted policies and drills are dropped.
const METRICS_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// Drops the metric series of policies and drills that are gone from the controllers'
/// caches (see [`Metrics::sweep`]), until shutdown.
async fn sweep_metrics(ctx: Arc<Context>) {
    let sweep = async {
        let mut tick = tokio::time::interval(METRICS_SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            let policies = &ctx.caches.policies;
            let Some(drills) = ctx.drills.get() else {
                continue;
            };
            // Before its first list an empty cache would read as "everything deleted".
            if drills.wait_until_ready().await.is_err() {
                return;
            }
            let forgotten = ctx.metrics.sweep(
                |ns, name| policies.get(&ObjectRef::new(name).within(ns)).is_some(),
                |ns, name| drills.get(&ObjectRef::new(name).within(ns)).is_some(),
            );
            if forgotten > 0 {
                tracing::info!(
                    forgotten,
                    "dropped the metric series of deleted policies and drills"
                );
            }
        }
    };
    tokio::select! {
        () = sweep => {}
        () = shutdown_signal() => {}
    }
}

/// Retries an unusable evidence key until it works or the process stops.
async fn retry_evidence_key(ctx: Arc<Context>) {
    tokio::select! {
        () = evidence::retry(ctx) => {}
        () = shutdown_signal() => {}
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

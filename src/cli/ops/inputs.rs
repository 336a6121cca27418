//! What `status` reads from the cluster: the Lifeboat objects of a namespace (or all).

use kube::Api;
use kube::api::ListParams;

use super::cluster::{Call, Cluster};
use super::status;
use crate::cli::CliError;
use crate::crd::backup::Backup;
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::dr_drill::{DRDrill, DrillRun};
use crate::crd::store::{BackupStore, ClusterBackupStore};

async fn list_all<K>(
    cluster: &Cluster,
    ns: Option<&str>,
    resource: &'static str,
    kind: &'static str,
) -> Result<Vec<K>, CliError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = match ns {
        Some(n) => Api::namespaced(cluster.client.clone(), n),
        None => Api::all(cluster.client.clone()),
    };
    let mut call = Call::new("list", resource, kind);
    if let Some(n) = ns {
        call = call.ns(n);
    }
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(l.items),
        Err(e) => Err(cluster.explain(&call, e).await),
    }
}

pub(super) async fn read_status_inputs(
    cluster: &Cluster,
    ns: Option<&str>,
) -> Result<status::Inputs, CliError> {
    let policies = list_all::<BackupPolicy>(cluster, ns, "backuppolicies", "BackupPolicy").await?;
    let backups = list_all::<Backup>(cluster, ns, "backups", "Backup").await?;
    let drills = list_all::<DRDrill>(cluster, ns, "drdrills", "DRDrill").await?;
    let runs = list_all::<DrillRun>(cluster, ns, "drillruns", "DrillRun").await?;
    let stores = list_all::<BackupStore>(cluster, ns, "backupstores", "BackupStore").await?;
    // Namespace users usually may not read cluster-scoped stores: show them as unreadable
    // instead of failing the whole command.
    let cluster_stores = match Api::<ClusterBackupStore>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => Some(l.items),
        Err(kube::Error::Api(s)) if s.code == 403 => None,
        Err(e) => {
            return Err(cluster
                .explain(
                    &Call::new("list", "clusterbackupstores", "ClusterBackupStore"),
                    e,
                )
                .await);
        }
    };
    Ok(status::Inputs {
        namespaces: ns.map(|n| vec![n.to_string()]).unwrap_or_default(),
        policies,
        backups,
        drills,
        runs,
        stores,
        cluster_stores,
    })
}

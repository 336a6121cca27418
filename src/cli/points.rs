//! `lifeboat restore points`: the restore points a store's repository holds, by policy
//! identity, as the controller's catalog summarises them in the store's status. Read
//! through the cluster with the user's kubeconfig: no store credentials on the user's
//! machine, and only the stores the user may read (a namespace's BackupStores with the
//! `view` role; ClusterBackupStores need read access to them, usually a cluster admin's).

use clap::Args;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::CliError;
use super::ops::cluster::{Call, Cluster};
use super::ops::{KubeArgs, runtime};
use crate::crd::store::{BackupStore, ClusterBackupStore, IdentitySummary, StoreStatus};

/// Options of `restore points`.
#[derive(Args, Debug)]
pub struct PointsArgs {
    /// Only this store (default: every BackupStore of the namespace).
    #[arg(long)]
    store: Option<String>,
    /// With --store: it is a ClusterBackupStore.
    #[arg(long, requires = "store")]
    cluster_store: bool,
    /// Only this policy identity, as NAMESPACE/POLICY.
    #[arg(long, value_name = "NAMESPACE/POLICY")]
    policy: Option<String>,
    #[command(flatten)]
    kube: KubeArgs,
}

/// One row: a policy identity in a store.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub store: String,
    #[serde(flatten)]
    pub identity: IdentitySummary,
}

/// The document `--json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Points {
    pub rows: Vec<Row>,
    /// Stores whose catalog was not listed yet, or lists more identities than its
    /// status shows, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The rows of one store's status (pure).
pub fn rows(
    store: &str,
    status: Option<&StoreStatus>,
    policy: Option<&str>,
) -> (Vec<Row>, Option<String>) {
    let Some(c) = status.and_then(|s| s.catalog.as_ref()) else {
        return (
            Vec::new(),
            Some(format!(
                "store {store}: its repository has not been listed yet (is the store Ready?)"
            )),
        );
    };
    let rows: Vec<Row> = c
        .policies
        .iter()
        .filter(|p| policy.is_none_or(|want| p.policy == want))
        .map(|p| Row {
            store: store.to_string(),
            identity: p.clone(),
        })
        .collect();
    let note = (c.identities as usize > c.policies.len() && rows.is_empty() && policy.is_some())
        .then(|| {
            format!(
                "store {store}: the status shows {} of {} identities (the newest); this one is not among them",
                c.policies.len(),
                c.identities
            )
        });
    (rows, note)
}

/// The table (pure).
pub fn render(p: &Points) -> String {
    let mut out = String::new();
    let mut table = vec![[
        "STORE".to_string(),
        "POLICY".into(),
        "POINTS".into(),
        "OLDEST".into(),
        "NEWEST".into(),
        "NEWEST BACKUP".into(),
        "SOURCES".into(),
    ]];
    for r in &p.rows {
        let i = &r.identity;
        table.push([
            r.store.clone(),
            i.policy.clone(),
            i.restore_points.to_string(),
            i.oldest.0.to_string(),
            i.newest.0.to_string(),
            i.newest_backup.clone(),
            i.sources.join(","),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    if p.rows.is_empty() {
        out.push_str("no restore points found\n");
    } else {
        for row in &table {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    for n in &p.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// Runs `restore points`.
pub fn run(a: PointsArgs, json: bool) -> Result<(), CliError> {
    let doc = runtime()?.block_on(async {
        let cluster = Cluster::connect(a.kube.context.as_deref()).await?;
        let ns = cluster.namespace(a.kube.namespace.as_deref());
        let mut stores: Vec<(String, Option<StoreStatus>)> = Vec::new();
        match (&a.store, a.cluster_store) {
            (Some(s), true) => {
                let api: Api<ClusterBackupStore> = Api::all(cluster.client.clone());
                let found = api.get(s).await.map_err(|e| {
                    (
                        Call::new("get", "clusterbackupstores", "ClusterBackupStore").name(s),
                        e,
                    )
                });
                match found {
                    Ok(f) => stores.push((s.clone(), f.status)),
                    Err((call, e)) => return Err(cluster.explain(&call, e).await),
                }
            }
            (Some(s), false) => {
                let api: Api<BackupStore> = Api::namespaced(cluster.client.clone(), &ns);
                match api.get(s).await {
                    Ok(f) => stores.push((s.clone(), f.status)),
                    Err(e) => {
                        let call = Call::new("get", "backupstores", "BackupStore")
                            .ns(&ns)
                            .name(s);
                        return Err(cluster.explain(&call, e).await);
                    }
                }
            }
            (None, _) => {
                let api: Api<BackupStore> = Api::namespaced(cluster.client.clone(), &ns);
                match api.list(&ListParams::default()).await {
                    Ok(l) => {
                        for s in l.items {
                            stores.push((s.metadata.name.clone().unwrap_or_default(), s.status));
                        }
                    }
                    Err(e) => {
                        let call = Call::new("list", "backupstores", "BackupStore").ns(&ns);
                        return Err(cluster.explain(&call, e).await);
                    }
                }
            }
        }
        let mut doc = Points {
            rows: Vec::new(),
            notes: Vec::new(),
        };
        for (name, status) in &stores {
            let (r, note) = rows(name, status.as_ref(), a.policy.as_deref());
            doc.rows.extend(r);
            doc.notes.extend(note);
        }
        Ok::<_, CliError>(doc)
    })?;
    if json {
        let s = serde_json::to_string_pretty(&doc).map_err(|e| CliError {
            category: "Internal",
            message: format!("serialising output: {e}"),
        })?;
        println!("{s}");
    } else {
        print!("{}", render(&doc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::store::CatalogStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn identity(policy: &str) -> IdentitySummary {
        IdentitySummary {
            policy: policy.into(),
            restore_points: 3,
            newest: Time("2026-01-03T00:00:00Z".parse().unwrap()),
            oldest: Time("2026-01-01T00:00:00Z".parse().unwrap()),
            newest_backup: "daily-3".into(),
            sources: vec!["volume/data".into(), "database/pg".into()],
        }
    }

    #[test]
    fn rows_come_from_the_stores_catalog_and_filter_by_identity() {
        let status = StoreStatus {
            catalog: Some(CatalogStatus {
                identities: 3,
                policies: vec![identity("shop/daily"), identity("crm/nightly")],
                ..CatalogStatus::default()
            }),
            ..StoreStatus::default()
        };
        let (all, note) = rows("s3", Some(&status), None);
        assert_eq!(all.len(), 2);
        assert_eq!(note, None);
        let (one, _) = rows("s3", Some(&status), Some("crm/nightly"));
        assert_eq!(one.len(), 1);
        let (none, note) = rows("s3", Some(&status), Some("gone/weekly"));
        assert!(none.is_empty());
        assert!(note.unwrap().contains("shows 2 of 3"));
        let (_, unlisted) = rows("s3", None, None);
        assert!(unlisted.unwrap().contains("not been listed"));
        let table = render(&Points {
            rows: all,
            notes: vec![],
        });
        assert!(table.starts_with("STORE"), "{table}");
        assert!(table.contains("shop/daily"));
        assert!(table.contains("volume/data,database/pg"));
    }
}

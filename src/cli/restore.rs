//! `lifeboat restore` and `lifeboat dump`, and the Restore that `lifeboat restore create`
//! asks the cluster for.

use std::{io::Write, path::PathBuf};

use clap::{ArgGroup, Args};
use jiff::Timestamp;
use serde::Serialize;

use super::ops::{KubeArgs, WaitArgs};
use super::{
    CliError, RepoArgs,
    output::{Output, bytes},
    snapshots::split_tags,
};
use crate::crd::backup_policy::{StoreKind, StoreRef};
use crate::crd::common::DatabaseCredentialsRef;
use crate::crd::restore::{
    DatabaseRestore, DatabaseTarget, EphemeralDatabase, LocalRef, ManifestRestore, RestoreSource,
    RestoreSpec, VolumeRestore,
};
use crate::repo::{RestoreStats, RestoreTarget, SnapshotFilter, SnapshotInfo};

/// Which snapshot `latest` means.
#[derive(Args, Debug, Clone)]
pub struct LatestFilter {
    /// With `latest`: only snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// With `latest`: only snapshots with this tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

impl LatestFilter {
    /// As a snapshot filter.
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            host: self.host.clone(),
            tags: split_tags(&self.tags),
            ..SnapshotFilter::default()
        }
    }
}

/// Options of `restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    // NB: Options marked required, not plain values: `restore create` (a subcommand of the
    // same command, see cli::ops) leaves them unset, which clap's derive only allows for
    // Options.
    /// Snapshot ID (or a unique prefix), or `latest`; `ID:/sub/path` restores a sub-path.
    #[arg(required = true)]
    snapshot: Option<String>,
    /// Directory to restore into (created if missing).
    #[arg(long, short = 't', required = true)]
    target: Option<PathBuf>,
    /// Restore only this path of the snapshot (its content lands directly in the target).
    #[arg(long)]
    path: Option<String>,
    /// Delete files in the target that are not in the snapshot.
    #[arg(long)]
    delete: bool,
    /// Create device nodes and keep set-user-ID / set-group-ID bits recorded in the
    /// snapshot (only for snapshots you trust: by default neither is restored).
    #[arg(long)]
    devices_and_setid: bool,
    #[command(flatten)]
    latest: LatestFilter,
}

#[derive(Serialize)]
struct RestoreOut<'a> {
    snapshot: &'a SnapshotInfo,
    path: &'a str,
    target: &'a std::path::Path,
    #[serde(flatten)]
    stats: &'a RestoreStats,
}

/// Splits `ID:/path` (restic's syntax) into its parts.
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((id, path)) if !path.is_empty() => (id, Some(path)),
        _ => (spec, None),
    }
}

/// Runs `restore`.
pub fn run_restore(a: RestoreArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let RestoreArgs {
        snapshot,
        target,
        path,
        delete,
        devices_and_setid,
        latest,
    } = a;
    let (Some(snapshot), Some(target)) = (snapshot, target) else {
        return Err(CliError::input("restore needs SNAPSHOT and --target DIR"));
    };
    let (id, spec_path) = split_spec(&snapshot);
    if spec_path.is_some() && path.is_some() {
        return Err(CliError::input(
            "give the sub-path either as ID:/path or with --path, not both",
        ));
    }
    let sub = path.as_deref().or(spec_path).unwrap_or("");
    let repo = repo_args.open(out.json)?;
    let (sn, stats) = repo.restore_with(
        id,
        &latest.filter(),
        &RestoreTarget {
            path: sub.to_string(),
            target: target.clone(),
            delete,
            numeric_ids: false,
            devices_and_setid,
        },
    )?;
    let o = RestoreOut {
        snapshot: &sn,
        path: sub,
        target: &target,
        stats: &stats,
    };
    out.emit(&o, || {
        format!(
            "restored snapshot {}{} to {}: {} files ({}){}{}",
            sn.short_id,
            if sub.is_empty() {
                String::new()
            } else {
                format!(":{sub}")
            },
            target.display(),
            stats.files_restored,
            bytes(stats.bytes_restored),
            if stats.deleted > 0 {
                format!(", {} entries removed", stats.deleted)
            } else {
                String::new()
            },
            if stats.devices_skipped > 0 {
                format!(
                    ", {} device nodes not created (see --devices-and-setid)",
                    stats.devices_skipped
                )
            } else {
                String::new()
            }
        )
    })
}

/// Options of `dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot ID (or a unique prefix), or `latest`.
    snapshot: String,
    /// Path of the file inside the snapshot.
    file: String,
    #[command(flatten)]
    latest: LatestFilter,
}

/// Runs `dump` (always raw bytes on stdout; `--json` does not apply).
pub fn run_dump(a: DumpArgs, repo_args: &RepoArgs) -> Result<(), CliError> {
    let repo = repo_args.open(true)?;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    repo.dump(&a.snapshot, &a.latest.filter(), &a.file, &mut lock)?;
    lock.flush().map_err(|e| CliError {
        category: "LocalIo",
        message: format!("writing stdout: {e}"),
    })
}

/// Options of `restore create`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("point").required(true).multiple(true).args(["policy", "backup", "store"])))]
#[command(group(ArgGroup::new("db_target").args(["into_ephemeral", "into_host"])))]
pub struct RestoreCreateArgs {
    /// The BackupPolicy whose restore point is restored (its newest, or the newest at or
    /// before --point-in-time).
    #[arg(long)]
    pub(crate) policy: Option<String>,
    /// A Backup (restore point) by name; with --store, the run that made the restore
    /// point (as `lifeboat restore points` lists it), no Backup object needed.
    #[arg(long, conflicts_with = "point_in_time")]
    pub(crate) backup: Option<String>,
    /// With --policy or --store: the newest restore point at or before this RFC 3339
    /// time.
    #[arg(long)]
    pub(crate) point_in_time: Option<String>,
    /// Restore from what this store's repository holds, with no Backup object or policy
    /// in the cluster (a new cluster, a deleted namespace); needs --from-policy. A
    /// BackupStore of the namespace, or with --cluster-store a ClusterBackupStore.
    #[arg(long, requires = "from_policy", conflicts_with = "policy")]
    pub(crate) store: Option<String>,
    /// With --store: it is a ClusterBackupStore.
    #[arg(long, requires = "store")]
    pub(crate) cluster_store: bool,
    /// With --store: whose restore points, as NAMESPACE/POLICY (the namespace they were
    /// backed up from, which may differ from this one).
    #[arg(long, requires = "store", value_name = "NAMESPACE/POLICY")]
    pub(crate) from_policy: Option<String>,
    /// Restore into this namespace (it must exist and carry the annotation
    /// lifeboat.dev/allow-restore-from listing the Restore's namespace). Default: the
    /// Restore's own namespace.
    #[arg(long)]
    pub(crate) to_namespace: Option<String>,
    /// Restore only this volume (source PVC name; repeatable). Default: every volume.
    #[arg(long = "volume", value_name = "PVC")]
    pub(crate) volumes: Vec<String>,
    /// Name the restored PVC of a source PVC: OLD=NEW (repeatable).
    #[arg(long = "rename-volume", value_name = "OLD=NEW", value_parser = parse_rename)]
    pub(crate) renames: Vec<(String, String)>,
    /// StorageClass of the restored PVCs (default: the source PVC's).
    #[arg(long)]
    pub(crate) storage_class: Option<String>,
    /// Restore this database source (repeatable); needs --into-ephemeral or --into-host.
    #[arg(long = "database", value_name = "SOURCE", requires = "db_target")]
    pub(crate) databases: Vec<String>,
    /// Start a throwaway database server in the target namespace and restore into it.
    #[arg(long, requires = "databases")]
    pub(crate) into_ephemeral: bool,
    /// With --into-ephemeral: the server image (default: the engine's official image at
    /// the dumped server's version).
    #[arg(long, requires = "into_ephemeral")]
    pub(crate) ephemeral_image: Option<String>,
    /// Restore into an existing server at this host (a Service DNS name or address).
    #[arg(long, requires_all = ["databases", "credentials"])]
    pub(crate) into_host: Option<String>,
    /// With --into-host: its port (default: the engine's).
    #[arg(long, requires = "into_host")]
    pub(crate) port: Option<u16>,
    /// With --into-host: the database to restore into (default: the dumped name). Only
    /// with one --database.
    #[arg(long, requires = "into_host")]
    pub(crate) target_database: Option<String>,
    /// With --into-host: Secret (keys `username`, `password`) with a login that may create
    /// and fill the database.
    #[arg(long, requires = "into_host")]
    pub(crate) credentials: Option<String>,
    /// With --into-host: create the database first (an existing non-empty one is never
    /// overwritten).
    #[arg(long, requires = "into_host")]
    pub(crate) create_database: bool,
    /// Re-apply the saved Kubernetes manifests.
    #[arg(long)]
    pub(crate) manifests: bool,
    /// With --manifests: only these kinds (`Kind` or `Kind.group`; repeatable).
    #[arg(long = "kind", requires = "manifests")]
    pub(crate) kinds: Vec<String>,
    /// With --manifests: suspend CronJobs, turn LoadBalancer/NodePort Services into
    /// ClusterIP and drop Ingresses.
    #[arg(long, requires = "manifests")]
    pub(crate) suppress_side_effects: bool,
    /// With --manifests: scale workloads to zero.
    #[arg(long, requires = "manifests")]
    pub(crate) scale_to_zero: bool,
    /// Name of the Restore (default: `<policy or backup>-restore-<UTC time>`).
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) kube: KubeArgs,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
}

pub(crate) fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.into(), b.into())),
        _ => Err(format!("{s:?} is not OLD=NEW")),
    }
}

/// The Restore a `restore create` command line asks for (pure; validated).
pub(crate) fn restore_spec(a: &RestoreCreateArgs) -> Result<RestoreSpec, CliError> {
    if let Some(t) = &a.point_in_time {
        t.parse::<Timestamp>().map_err(|e| {
            CliError::input(format!(
                "--point-in-time {t:?} is not an RFC 3339 time (e.g. 2026-03-04T05:06:07Z): {e}"
            ))
        })?;
    }
    if a.target_database.is_some() && a.databases.len() > 1 {
        return Err(CliError::input(
            "--target-database names one database: give a single --database with it",
        ));
    }
    let source = match (&a.store, &a.backup, &a.policy) {
        (Some(store), run, None) => {
            let from = a.from_policy.clone().unwrap_or_default();
            if !from
                .split_once('/')
                .is_some_and(|(n, p)| !n.is_empty() && !p.is_empty() && !p.contains('/'))
            {
                return Err(CliError::input(format!(
                    "--from-policy {from:?} is not NAMESPACE/POLICY (e.g. shop/daily)"
                )));
            }
            RestoreSource {
                store_ref: Some(StoreRef {
                    kind: if a.cluster_store {
                        StoreKind::ClusterBackupStore
                    } else {
                        StoreKind::BackupStore
                    },
                    name: store.clone(),
                }),
                from_policy: Some(from),
                backup_name: run.clone(),
                point_in_time: a.point_in_time.clone(),
                ..RestoreSource::default()
            }
        }
        (Some(_), _, Some(_)) => {
            return Err(CliError::input(
                "--store reads a store's restore points, --policy a policy of this namespace: give one",
            ));
        }
        (None, Some(b), _) => RestoreSource {
            backup_ref: Some(LocalRef { name: b.clone() }),
            ..RestoreSource::default()
        },
        (None, None, Some(p)) => RestoreSource {
            policy_ref: Some(LocalRef { name: p.clone() }),
            point_in_time: a.point_in_time.clone(),
            ..RestoreSource::default()
        },
        (None, None, None) => return Err(CliError::input("give --policy, --backup or --store")),
    };
    let volumes = (!a.volumes.is_empty() || !a.renames.is_empty() || a.storage_class.is_some())
        .then(|| VolumeRestore {
            skip: false,
            include: a.volumes.clone(),
            rename: a.renames.iter().cloned().collect(),
            storage_class_name: a.storage_class.clone(),
        });
    let databases = a
        .databases
        .iter()
        .map(|source| DatabaseRestore {
            source: source.clone(),
            target: a.into_host.as_ref().map(|host| DatabaseTarget {
                host: host.clone(),
                port: a.port,
                database: a.target_database.clone(),
                credentials: DatabaseCredentialsRef {
                    name: a.credentials.clone().unwrap_or_default(),
                    ..DatabaseCredentialsRef::default()
                },
                create_database: a.create_database,
            }),
            ephemeral: a.into_ephemeral.then(|| EphemeralDatabase {
                image: a.ephemeral_image.clone(),
                ..EphemeralDatabase::default()
            }),
        })
        .collect();
    let manifests = a.manifests.then(|| ManifestRestore {
        kinds: a.kinds.clone(),
        suppress_side_effects: a.suppress_side_effects,
        scale_to_zero: a.scale_to_zero,
    });
    Ok(RestoreSpec {
        source,
        target_namespace: a.to_namespace.clone(),
        volumes,
        databases,
        manifests,
    })
}

#[cfg(test)]
mod tests {
    use super::split_spec;

    #[test]
    fn spec_split() {
        assert_eq!(split_spec("latest"), ("latest", None));
        assert_eq!(split_spec("abcd:/data/x"), ("abcd", Some("/data/x")));
        assert_eq!(split_spec("abcd:"), ("abcd:", None));
    }
}

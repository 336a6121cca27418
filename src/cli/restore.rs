//! `lifeboat restore` and `lifeboat dump`.

use std::{io::Write, path::PathBuf};

use clap::Args;
use serde::Serialize;

use super::{
    CliError, RepoArgs,
    output::{Output, bytes},
    snapshots::split_tags,
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
            paths: Vec::new(),
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

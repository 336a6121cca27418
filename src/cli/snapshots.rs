//! `lifeboat snapshots`: list snapshots.

use clap::Args;

use super::{
    CliError, RepoArgs,
    output::{Output, bytes},
};
use crate::repo::SnapshotFilter;

/// Options of `snapshots`.
#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only snapshots of exactly these paths (repeatable).
    #[arg(long = "path")]
    paths: Vec<String>,
}

impl SnapshotsArgs {
    fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            host: self.host.clone(),
            tags: split_tags(&self.tags),
            paths: self.paths.clone(),
            ..SnapshotFilter::default()
        }
    }
}

/// restic accepts `--tag a,b`; so do we.
pub fn split_tags(tags: &[String]) -> Vec<String> {
    tags.iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs `snapshots`.
pub fn run(a: SnapshotsArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let repo = repo_args.open(out.json)?;
    let list = repo.snapshots(&a.filter())?;
    out.emit(&list, || {
        let mut s = format!(
            "{:<8}  {:<25}  {:<16}  {:<20}  {:>10}  {}\n",
            "ID", "Time", "Host", "Tags", "Size", "Paths"
        );
        for sn in &list {
            let size = sn
                .summary
                .as_ref()
                .map(|x| bytes(x.bytes_processed))
                .unwrap_or_default();
            s.push_str(&format!(
                "{:<8}  {:<25}  {:<16}  {:<20}  {:>10}  {}\n",
                sn.short_id,
                sn.time.strftime("%Y-%m-%d %H:%M:%S %:z"),
                sn.hostname,
                sn.tags.join(","),
                size,
                sn.paths.join(", ")
            ));
        }
        s.push_str(&format!("{} snapshots\n", list.len()));
        s
    })
}

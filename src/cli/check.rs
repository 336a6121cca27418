//! `lifeboat check`.

use clap::Args;

use super::{CliError, RepoArgs, output::Output};
use crate::repo::CheckRequest;

/// Options of `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read and verify all data.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read and verify a subset of the data: `10%`, `1/5` or `500MiB`.
    #[arg(long)]
    read_data_subset: Option<String>,
}

/// Runs `check`; errors in the repository end with the `CheckFailed` exit code.
pub fn run(a: CheckArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let repo = repo_args.open(out.json)?;
    let report = repo.check(&CheckRequest {
        read_data: a.read_data,
        read_data_subset: a.read_data_subset,
    })?;
    out.emit(&report, || {
        let mut s = String::new();
        for w in &report.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        for e in &report.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        if report.errors.is_empty() {
            s.push_str("no errors were found\n");
        }
        s
    })?;
    report.into_result().map(|_| ()).map_err(CliError::from)
}

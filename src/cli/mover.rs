//! `lifeboat mover ...`: the entrypoint of mover Jobs (see `crate::mover`).

use clap::{Args, Subcommand};

use super::{CliError, RepoArgs};
use crate::mover;

/// `mover` subcommands.
#[derive(Args, Debug)]
pub struct MoverCmd {
    #[command(subcommand)]
    cmd: MoverSub,
}

#[derive(Subcommand, Debug)]
enum MoverSub {
    /// Back up one source of a Backup.
    #[command(subcommand)]
    Backup(mover::backup::BackupCmd),
    /// Apply a policy's retention to its snapshots and prune.
    Retention(mover::retention::RetentionArgs),
    /// Restore one source of a Restore.
    #[command(subcommand)]
    Restore(mover::restore::RestoreCmd),
    /// Run one DR drill check against restored data.
    #[command(subcommand)]
    Check(mover::check::CheckCmd),
    /// Write a finished drill run's evidence report next to the repository.
    Report(mover::report::ReportArgs),
}

/// Runs a mover subcommand.
pub fn run(c: MoverCmd, repo: &RepoArgs) -> Result<(), CliError> {
    match c.cmd {
        MoverSub::Backup(b) => mover::backup::run(b, repo),
        MoverSub::Retention(r) => mover::finish(mover::retention::run(r, repo)),
        MoverSub::Restore(r) => mover::restore::run(r, repo),
        MoverSub::Check(c) => mover::check::run(c, repo),
        MoverSub::Report(r) => mover::report::run(r, repo),
    }
}

//! `lifeboat backup`: paths, or the stdout of a command (`--stdin-from-command`), which is
//! committed only if the command exits 0.

use std::{ffi::OsString, path::PathBuf};

use clap::Args;

use super::{
    CliError, RepoArgs,
    output::{Output, bytes},
    snapshots::split_tags,
};
use crate::repo::{BackupOutcome, CommandStream, PathBackup, SnapshotMeta, StreamBackup};

/// Options of `backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(
        required_unless_present = "stdin_from_command",
        conflicts_with = "stdin_from_command"
    )]
    paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable, or comma-separated).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long)]
    host: Option<String>,
    /// Exclude files matching a pattern (gitignore-style glob; repeatable).
    #[arg(long = "exclude", short = 'e')]
    excludes: Vec<String>,
    /// Skip directories that contain a file with this name (repeatable).
    #[arg(long)]
    exclude_if_present: Vec<String>,
    /// Stay on the file systems of the given paths.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Back up the standard output of the command given after `--`.
    #[arg(long, requires = "command")]
    stdin_from_command: bool,
    /// File name of the stream inside the snapshot.
    #[arg(long, default_value = "stdin", requires = "stdin_from_command")]
    stdin_filename: String,
    /// The command (after `--`).
    #[arg(last = true, requires = "stdin_from_command")]
    command: Vec<OsString>,
}

/// Runs `backup`.
pub fn run(a: BackupArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let BackupArgs {
        paths,
        tags,
        host,
        excludes,
        exclude_if_present,
        one_file_system,
        stdin_from_command,
        stdin_filename,
        command,
    } = a;
    let meta = SnapshotMeta {
        host,
        tags: split_tags(&tags),
    };
    let repo = repo_args.open(out.json)?;
    let outcome = if stdin_from_command {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| CliError::input("--stdin-from-command needs a command after `--`"))?;
        let program = program.to_string_lossy().into_owned();
        let stream = CommandStream::spawn(&program, args, &[]).map_err(|e| CliError {
            category: "SourceCommandFailed",
            message: format!("no snapshot written: {e}"),
        })?;
        repo.backup_stream(
            StreamBackup {
                path: stdin_filename,
                reader: Box::new(stream),
                extra_files: Vec::new(),
            },
            &meta,
        )?
    } else {
        repo.backup_paths(
            &PathBackup {
                paths,
                excludes,
                exclude_if_present,
                one_file_system,
            },
            &meta,
        )?
    };
    print_outcome(&outcome, out)?;
    if outcome.skipped.is_empty() {
        Ok(())
    } else {
        Err(CliError {
            category: "PartialBackup",
            message: format!(
                "snapshot {} saved, but {} source item(s) could not be read and are missing from it; first: {}",
                outcome.snapshot.short_id,
                outcome.skipped.len(),
                outcome.skipped[0]
            ),
        })
    }
}

/// Prints a backup result.
pub fn print_outcome(outcome: &BackupOutcome, out: &Output) -> Result<(), CliError> {
    out.emit(outcome, || {
        let sn = &outcome.snapshot;
        match &sn.summary {
            Some(s) => format!(
                "snapshot {} saved: {} new, {} changed, {} unmodified files; {} processed, {} added ({} stored) in {:.1}s",
                sn.short_id,
                s.files_new,
                s.files_changed,
                s.files_unmodified,
                bytes(s.bytes_processed),
                bytes(s.data_added),
                bytes(s.data_added_packed),
                s.duration_seconds
            ),
            None => format!("snapshot {} saved", sn.short_id),
        }
    })
}

//! `lifeboat mover backup volume|database|manifests`: one source of a Backup into one
//! snapshot, tagged with its policy, source and run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};

use super::progress::Reporter;
use super::{RunRef, backup_result, finish};
use crate::cli::{CliError, RepoArgs, env_secret};
use crate::db::{self, Connection, DumpScope, Engine};
use crate::jobs::result::MoverResult;
use crate::repo::{PathBackup, ProgressSink, Repo, SnapshotMeta};

/// What every backup mover is told about its run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The policy, as NAMESPACE/NAME.
    #[arg(long)]
    pub policy: String,
    /// The Backup (run) this snapshot belongs to.
    #[arg(long)]
    pub backup: String,
}

/// `mover backup` subcommands.
#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Back up a mounted volume.
    Volume(VolumeArgs),
    /// Dump a database into the repository.
    Database(DatabaseArgs),
    /// Save the namespace's Kubernetes objects as YAML.
    Manifests(super::manifests::ManifestArgs),
}

#[derive(Args, Debug)]
pub struct VolumeArgs {
    /// Source PVC name (recorded in tags and the result).
    #[arg(long)]
    source: String,
    /// Where the volume is mounted.
    #[arg(long)]
    path: PathBuf,
    /// Glob patterns to exclude (repeatable).
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
pub struct DatabaseArgs {
    /// Database source name in the policy.
    #[arg(long)]
    source: String,
    #[arg(long, value_enum)]
    engine: Engine,
    #[arg(long)]
    host: String,
    #[arg(long)]
    port: Option<u16>,
    /// Database to dump; omit for every database of the server.
    #[arg(long)]
    database: Option<String>,
    /// Extra argument for the dump tool (repeatable).
    #[arg(long = "extra-arg", allow_hyphen_values = true)]
    extra_args: Vec<String>,
    #[command(flatten)]
    run: RunArgs,
}

/// Opens the repository with a progress sink attached.
pub fn open_with_sink(repo_args: &RepoArgs) -> Result<(Repo, Arc<ProgressSink>), CliError> {
    let sink = Arc::new(ProgressSink::default());
    let mut opts = repo_args.options(true)?;
    opts.progress_sink = Some(sink.clone());
    let repo = Repo::open(&opts, &repo_args.password()?)?;
    Ok((repo, sink))
}

fn volume(a: VolumeArgs, repo_args: &RepoArgs) -> Result<MoverResult, CliError> {
    let VolumeArgs {
        source,
        path,
        excludes,
        run,
    } = a;
    let run = RunRef::for_backup(&run.policy, &run.backup)?;
    if !path.is_dir() {
        return Err(CliError {
            category: "InvalidInput",
            message: format!("volume mount {} is not a directory", path.display()),
        });
    }
    let started = Instant::now();
    let (repo, sink) = open_with_sink(repo_args)?;
    let reporter = Reporter::start(run.clone(), source.clone(), sink);
    let outcome = repo.backup_paths(
        &PathBackup {
            paths: vec![path],
            excludes,
            ..PathBackup::default()
        },
        &SnapshotMeta {
            host: Some(run.namespace.clone()),
            tags: run.tags("volume", &source),
        },
    );
    reporter.stop();
    Ok(backup_result(&outcome?.snapshot, started.elapsed()))
}

fn database(a: DatabaseArgs, repo_args: &RepoArgs) -> Result<MoverResult, CliError> {
    let DatabaseArgs {
        source,
        engine,
        host,
        port,
        database,
        extra_args,
        run,
    } = a;
    let run = RunRef::for_backup(&run.policy, &run.backup)?;
    db::check_dump_args(engine, &extra_args)?;
    let conn = Connection {
        host: Some(host),
        port,
        user: std::env::var("LIFEBOAT_DB_USER")
            .ok()
            .filter(|u| !u.is_empty()),
        password: env_secret("LIFEBOAT_DB_PASSWORD"),
        dump_args: extra_args,
    };
    let scope = match database {
        Some(d) => DumpScope::Database(d),
        None => DumpScope::All,
    };
    let started = Instant::now();
    let adapter = db::adapter(engine, conn);
    let (repo, sink) = open_with_sink(repo_args)?;
    let reporter = Reporter::start(run.clone(), source.clone(), sink);
    let outcome = db::backup(
        &repo,
        adapter.as_ref(),
        &scope,
        &SnapshotMeta {
            host: Some(run.namespace.clone()),
            tags: run.tags("database", &source),
        },
    );
    reporter.stop();
    let outcome = outcome?;
    let mut result = backup_result(&outcome.backup.snapshot, started.elapsed());
    let rows: u64 = outcome
        .metadata
        .row_counts
        .values()
        .flat_map(|tables| tables.values())
        .sum();
    result.details.insert(
        "serverVersion".into(),
        outcome.metadata.server_version.clone().into(),
    );
    result.details.insert("rows".into(), rows.into());
    Ok(result)
}

/// Runs a `mover backup` subcommand.
pub fn run(cmd: BackupCmd, repo_args: &RepoArgs) -> Result<(), CliError> {
    finish(match cmd {
        BackupCmd::Volume(a) => volume(a, repo_args),
        BackupCmd::Database(a) => database(a, repo_args),
        BackupCmd::Manifests(a) => super::manifests::backup(a, repo_args),
    })
}

//! `lifeboat mover backup volume|database|manifests`: one source of a Backup into one
//! snapshot, tagged with its policy, source and run.

use std::sync::Arc;
use std::time::Instant;

use super::env::db_login;
use super::progress::Reporter;
use super::{Error, RepoAccess, RunRef, backup_result, finish};
use crate::db::{self, Connection, DumpScope};
use crate::jobs::mover::command::{BackupCommand, BackupDatabase, BackupVolume};
use crate::jobs::result::MoverResult;
use crate::repo::{PathBackup, ProgressSink, Repo, SnapshotMeta};

/// Opens the repository with a progress sink attached.
pub(crate) fn open_with_sink(repo_args: &RepoAccess) -> Result<(Repo, Arc<ProgressSink>), Error> {
    let sink = Arc::new(ProgressSink::default());
    let mut opts = repo_args.options(true)?;
    opts.progress_sink = Some(sink.clone());
    let repo = Repo::open(&opts, &repo_args.password()?)?;
    Ok((repo, sink))
}

fn volume(a: BackupVolume, repo_args: &RepoAccess) -> Result<MoverResult, Error> {
    let BackupVolume {
        source,
        path,
        excludes,
        run,
    } = a;
    let run = RunRef::for_backup(&run);
    if !path.is_dir() {
        return Err(Error::input(format!(
            "volume mount {} is not a directory",
            path.display()
        )));
    }
    let started = Instant::now();
    let (repo, sink) = open_with_sink(repo_args)?;
    let reporter = Reporter::start(source.clone(), sink);
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

fn database(a: BackupDatabase, repo_args: &RepoAccess) -> Result<MoverResult, Error> {
    let BackupDatabase {
        source,
        engine,
        host,
        port,
        database,
        extra_args,
        run,
    } = a;
    let run = RunRef::for_backup(&run);
    db::check_dump_args(engine, &extra_args)?;
    let (user, password) = db_login();
    let conn = Connection {
        host: Some(host),
        port,
        user,
        password,
        dump_args: extra_args,
    };
    let scope = match database {
        Some(d) => DumpScope::Database(d),
        None => DumpScope::All,
    };
    let started = Instant::now();
    let adapter = db::adapter(engine, conn);
    let (repo, sink) = open_with_sink(repo_args)?;
    let reporter = Reporter::start(source.clone(), sink);
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
pub(crate) fn run(cmd: BackupCommand, repo_args: &RepoAccess) -> Result<(), Error> {
    finish(match cmd {
        BackupCommand::Volume(a) => volume(a, repo_args),
        BackupCommand::Database(a) => database(a, repo_args),
        BackupCommand::Manifests(a) => super::manifests::backup(a, repo_args),
    })
}

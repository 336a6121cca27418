//! The `lifeboat` command line: one top-level subcommand enum ([`Command`]); each area lives
//! in its own file. The engine commands (issue 3) share the global repository options
//! ([`RepoArgs`]); later issues add operator subcommands (`controller`, `crd`, `mover`,
//! `status`) as new variants with their own files.
//!
//! Secrets are read from the environment or files only, never from flags (flags show up in
//! process listings), and never printed.

pub mod backup;
pub mod check;
pub mod controller;
pub mod db;
pub mod drill;
pub mod evidence;
pub mod exit;
pub mod forget;
pub mod manifests;
pub mod mover;
pub mod ops;
pub mod output;
pub mod points;
pub mod reference;
pub mod repo_cmd;
pub mod reports;
pub mod restore;
pub mod snapshots;
pub mod unlock;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::{
    mover::access::{RepoAccess, S3Access},
    repo::{self, ChecksumMode, ObjectLock, RepoOptions, Secret},
    telemetry::{self, LogFormat},
};
pub use exit::CliError;

/// The `lifeboat` binary.
#[derive(Parser, Debug)]
#[command(
    name = "lifeboat",
    version,
    about = "Backups and DR drills for Kubernetes"
)]
pub struct Cli {
    /// Log filter, in `RUST_LOG` syntax.
    #[arg(long, env = "LIFEBOAT_LOG", default_value = "warn", global = true)]
    pub log: String,
    /// Log line format.
    #[arg(
        long,
        env = "LIFEBOAT_LOG_FORMAT",
        value_enum,
        default_value_t,
        global = true
    )]
    pub log_format: LogFormat,
    /// Machine-readable output: one JSON document on stdout (errors too).
    #[arg(long, global = true)]
    pub json: bool,
    /// Repository options.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Repository administration (`repo init`).
    Repo(repo_cmd::RepoCmd),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// Back up paths, or the output of a command (`--stdin-from-command`); `backup now
    /// POLICY` starts an on-demand Backup in the cluster.
    Backup(ops::BackupCmd),
    /// Restore a snapshot (or a path inside it) into a directory; `restore create`
    /// creates a Restore in the cluster.
    Restore(ops::RestoreCmd),
    /// Write one file of a snapshot to stdout.
    Dump(restore::DumpArgs),
    /// Verify the repository (structure, and with --read-data[-subset] the data).
    Check(check::CheckArgs),
    /// Repair a damaged repository (`repair packs`: salvage damaged packs).
    Repair(check::RepairCmd),
    /// Remove snapshots by keep-rules (plan first; `--dry-run` shows it), optionally prune.
    Forget(forget::ForgetArgs),
    /// Remove stale locks (or all locks with --remove-all).
    Unlock(unlock::UnlockArgs),
    /// Database dumps and restores (PostgreSQL, MariaDB/MySQL).
    Db(db::DbCmd),
    /// Saved manifests: `manifests rewrite` makes files restored with stock restic
    /// applicable in another namespace.
    #[command(subcommand)]
    Manifests(manifests::ManifestsCmd),
    /// Run the Kubernetes operator.
    Controller(controller::ControllerArgs),
    /// Print the CustomResourceDefinitions (or write them with --out DIR, or print their
    /// field reference with --reference).
    Crd(controller::CrdArgs),
    /// DR drills: start a run now, print a run's report, verify a drill's hash chain.
    Drill(drill::DrillCmd),
    /// Evidence of drills: export a bundle for auditors, verify one offline.
    Evidence(evidence::EvidenceCmd),
    /// Policies, drills and stores of a namespace (or all, -A): last runs, RPO and RTO
    /// against their objectives, next runs.
    Status(ops::StatusArgs),
    /// Entrypoint of mover Jobs (run by the operator, not by people).
    #[command(hide = true)]
    Mover(mover::MoverCmd),
}

/// Where the repository is and how to reach it. Every option has an environment variable;
/// the standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...) are honoured by the S3 client as well.
#[derive(Args, Debug, Clone)]
pub struct RepoArgs {
    /// Repository: `s3:http://host:port/bucket/prefix`, `s3:host/bucket` (HTTPS) or a path.
    #[arg(short = 'r', long = "repo", env = "LIFEBOAT_REPOSITORY", global = true)]
    pub repository: Option<String>,
    /// File whose first line is the repository password (else `LIFEBOAT_PASSWORD`).
    #[arg(long, env = "LIFEBOAT_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Cache directory for index and snapshot files of remote repositories.
    #[arg(long, env = "LIFEBOAT_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Do not use a local cache.
    #[arg(long, env = "LIFEBOAT_NO_CACHE", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
    /// No progress bars even on a terminal.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// S3 options.
    #[command(flatten)]
    pub s3: S3Args,
}

/// S3 connection options.
#[derive(Args, Debug, Clone)]
pub struct S3Args {
    /// S3 region (default: the AWS chain's, else us-east-1).
    #[arg(long, env = "LIFEBOAT_S3_REGION", global = true)]
    pub s3_region: Option<String>,
    /// Access key id (with `LIFEBOAT_S3_SECRET_ACCESS_KEY` or --s3-secret-access-key-file);
    /// without it the AWS chain (env, profile, web identity, instance role) is used.
    #[arg(long, env = "LIFEBOAT_S3_ACCESS_KEY_ID", global = true)]
    pub s3_access_key_id: Option<String>,
    /// File holding the secret access key.
    #[arg(long, env = "LIFEBOAT_S3_SECRET_ACCESS_KEY_FILE", global = true)]
    pub s3_secret_access_key_file: Option<PathBuf>,
    /// Named profile of the AWS shared config files.
    #[arg(long, env = "LIFEBOAT_S3_PROFILE", global = true)]
    pub s3_profile: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by most S3-compatibles.
    #[arg(long, env = "LIFEBOAT_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set, global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_path_style: bool,
    /// PEM bundle of CA certificates to trust (replaces the system roots).
    #[arg(long, env = "LIFEBOAT_S3_CA_BUNDLE", global = true)]
    pub s3_ca_bundle: Option<PathBuf>,
    /// Checksums: `when-supported` (CRC32 end to end, the SDK default) or `when-required`.
    #[arg(
        long,
        env = "LIFEBOAT_S3_CHECKSUM",
        value_enum,
        default_value_t,
        global = true
    )]
    pub s3_checksum: ChecksumMode,
    /// Attempts per request (5xx, throttling and timeouts are retried with backoff).
    #[arg(
        long,
        env = "LIFEBOAT_S3_MAX_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub s3_max_attempts: u32,
    /// Connect timeout in seconds.
    #[arg(
        long,
        env = "LIFEBOAT_S3_CONNECT_TIMEOUT",
        default_value_t = 10,
        global = true
    )]
    pub s3_connect_timeout: u64,
    /// Timeout of one request attempt in seconds (a hanging server fails after the attempts).
    #[arg(
        long,
        env = "LIFEBOAT_S3_TIMEOUT",
        default_value_t = 300,
        global = true
    )]
    pub s3_timeout: u64,
    /// Uploads in flight at once.
    #[arg(
        long,
        env = "LIFEBOAT_S3_UPLOAD_CONCURRENCY",
        default_value_t = 4,
        global = true
    )]
    pub s3_upload_concurrency: usize,
    /// Objects above this many MiB are uploaded in parts.
    #[arg(
        long,
        env = "LIFEBOAT_S3_MULTIPART_THRESHOLD_MIB",
        default_value_t = 64,
        global = true
    )]
    pub s3_multipart_threshold_mib: u64,
    /// Part size in MiB (at least 5).
    #[arg(
        long,
        env = "LIFEBOAT_S3_PART_SIZE_MIB",
        default_value_t = 16,
        global = true
    )]
    pub s3_part_size_mib: u64,
    /// `repo init` creates the bucket when it does not exist.
    #[arg(long, env = "LIFEBOAT_S3_CREATE_BUCKET", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_create_bucket: bool,
    /// S3 Object Lock for what the repository writes, `MODE:DAYSd` (`governance:30d`,
    /// `compliance:365d`): every object but lock files gets that retention; the bucket
    /// must have Object Lock enabled (`repo init --s3-create-bucket` creates it so).
    #[arg(long, env = "LIFEBOAT_S3_OBJECT_LOCK", global = true)]
    pub s3_object_lock: Option<ObjectLock>,
}

impl RepoArgs {
    /// The same settings as the plain data the mover (and this CLI) open repositories
    /// with.
    pub(crate) fn access(&self) -> RepoAccess {
        let RepoArgs {
            repository,
            password_file,
            cache_dir,
            no_cache,
            quiet,
            s3,
        } = self;
        let S3Args {
            s3_region,
            s3_access_key_id,
            s3_secret_access_key_file,
            s3_profile,
            s3_path_style,
            s3_ca_bundle,
            s3_checksum,
            s3_max_attempts,
            s3_connect_timeout,
            s3_timeout,
            s3_upload_concurrency,
            s3_multipart_threshold_mib,
            s3_part_size_mib,
            s3_create_bucket,
            s3_object_lock,
        } = s3;
        RepoAccess {
            repository: repository.clone(),
            password_file: password_file.clone(),
            cache_dir: cache_dir.clone(),
            no_cache: *no_cache,
            quiet: *quiet,
            s3: S3Access {
                region: s3_region.clone(),
                access_key_id: s3_access_key_id.clone(),
                secret_access_key_file: s3_secret_access_key_file.clone(),
                profile: s3_profile.clone(),
                path_style: *s3_path_style,
                ca_bundle: s3_ca_bundle.clone(),
                checksum: *s3_checksum,
                max_attempts: *s3_max_attempts,
                connect_timeout_seconds: *s3_connect_timeout,
                timeout_seconds: *s3_timeout,
                upload_concurrency: *s3_upload_concurrency,
                multipart_threshold_mib: *s3_multipart_threshold_mib,
                part_size_mib: *s3_part_size_mib,
                create_bucket: *s3_create_bucket,
                object_lock: *s3_object_lock,
            },
        }
    }

    /// The repository password: `--password-file`, else `LIFEBOAT_PASSWORD`.
    pub fn password(&self) -> Result<Secret, CliError> {
        Ok(self.access().password()?)
    }

    /// Builds the repository options (storage, cache, progress).
    pub fn options(&self, json: bool) -> Result<RepoOptions, CliError> {
        Ok(self.access().options(json)?)
    }

    /// Opens the repository with the configured password.
    pub fn open(&self, json: bool) -> Result<repo::Repo, CliError> {
        Ok(self.access().open(json)?)
    }
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|c| (c, m)));
    let (cli, matches) = match parsed {
        Ok(p) => p,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Commands people run stay quiet (warn); the long-running controller reports what it
    // does (info) unless told otherwise.
    let log_given = matches.value_source("log") != Some(clap::parser::ValueSource::DefaultValue);
    let log = match (&cli.command, log_given) {
        (Command::Controller(_), false) => "info".to_string(),
        _ => cli.log.clone(),
    };
    telemetry::init(&log, cli.log_format);
    repo::log_bridge::install();
    tracing::debug!(version = env!("CARGO_PKG_VERSION"), "lifeboat starting");
    let json = cli.json;
    exit::finish(run(cli), json)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let Cli {
        log: _,
        log_format: _,
        json,
        repo,
        command,
    } = cli;
    let out = output::Output { json };
    match command {
        Command::Repo(c) => repo_cmd::run(c, &repo, &out),
        Command::Snapshots(a) => snapshots::run(a, &repo, &out),
        Command::Backup(c) => ops::backup(c, &repo, &out),
        Command::Restore(c) => ops::restore(c, &repo, &out),
        Command::Dump(a) => restore::run_dump(a, &repo),
        Command::Check(a) => check::run(a, &repo, &out),
        Command::Repair(c) => check::run_repair(c, &repo, &out),
        Command::Forget(a) => forget::run(a, &repo, &out),
        Command::Unlock(a) => unlock::run(a, &repo, &out),
        Command::Db(c) => db::run(c, &repo, &out),
        Command::Manifests(c) => manifests::run(c, &out),
        Command::Controller(a) => controller::run(a),
        Command::Crd(a) => controller::crd(a),
        Command::Drill(c) => drill::run(c, &repo, json),
        Command::Evidence(c) => evidence::run(c, &repo, json),
        Command::Status(a) => ops::status(a, json),
        Command::Mover(c) => mover::run(c, &repo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_issue_command_lines() {
        let ok = [
            vec!["lifeboat", "repo", "init", "--repo", "/tmp/r"],
            vec!["lifeboat", "snapshots", "--json"],
            vec![
                "lifeboat",
                "backup",
                "/a",
                "/b",
                "--tag",
                "x",
                "--host",
                "h",
                "--exclude",
                "*.tmp",
            ],
            vec![
                "lifeboat",
                "backup",
                "--stdin-from-command",
                "--stdin-filename",
                "db.sql",
                "--",
                "pg_dump",
                "-Fc",
                "app",
            ],
            vec![
                "lifeboat",
                "restore",
                "latest",
                "--target",
                "/tmp/t",
                "--path",
                "/data/sub",
            ],
            vec!["lifeboat", "dump", "abcd1234", "/data/file"],
            vec!["lifeboat", "check", "--read-data-subset", "10%"],
            vec![
                "lifeboat",
                "forget",
                "--keep-last",
                "3",
                "--keep-daily",
                "7",
                "--dry-run",
                "--prune",
            ],
            vec!["lifeboat", "unlock", "--remove-all"],
            vec![
                "lifeboat",
                "db",
                "backup",
                "--engine",
                "postgres",
                "--host",
                "127.0.0.1",
                "--database",
                "app",
            ],
            vec![
                "lifeboat",
                "db",
                "backup",
                "--engine",
                "mysql",
                "--all-databases",
            ],
            vec![
                "lifeboat",
                "db",
                "restore",
                "--engine",
                "postgres",
                "latest",
                "--database",
                "app2",
                "--create-database",
            ],
        ];
        for args in ok {
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!("{args:?}: {e}");
            }
        }
        let bad = [
            vec![
                "lifeboat",
                "backup",
                "--stdin-from-command",
                "--stdin-filename",
                "x",
            ],
            vec!["lifeboat", "db", "backup", "--engine", "oracle"],
            vec![
                "lifeboat",
                "db",
                "backup",
                "--engine",
                "postgres",
                "--database",
                "a",
                "--all-databases",
            ],
        ];
        for args in bad {
            assert!(
                Cli::try_parse_from(&args).is_err(),
                "{args:?} should not parse"
            );
        }
    }
}

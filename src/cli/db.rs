//! `lifeboat db backup|restore`: database dumps streamed into and out of the repository.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{
    CliError, RepoArgs,
    backup::print_outcome,
    output::{Output, bytes},
    snapshots::split_tags,
};
use crate::{
    db::{self, Connection, DumpMetadata, DumpScope, Engine},
    mover::env::{env_secret, read_secret_file},
    repo::{SnapshotFilter, SnapshotInfo, SnapshotMeta},
};

/// `db` subcommands.
#[derive(Args, Debug)]
pub struct DbCmd {
    #[command(subcommand)]
    cmd: DbSub,
}

#[derive(Subcommand, Debug)]
enum DbSub {
    /// Dump a database (or all) straight into a new snapshot, with row counts and server
    /// version as metadata.
    Backup(DbBackupArgs),
    /// Stream a database snapshot back into a server.
    Restore(DbRestoreArgs),
}

/// Server connection options. The password comes from `LIFEBOAT_DB_PASSWORD` or
/// `--db-password-file` (never a flag); without either, the clients' own mechanisms apply
/// (`PGPASSWORD`, `~/.pgpass`, `MYSQL_PWD`, option files).
#[derive(Args, Debug, Clone)]
struct ConnArgs {
    /// Database engine.
    #[arg(long, value_enum, env = "LIFEBOAT_DB_ENGINE")]
    engine: Engine,
    /// Server host.
    #[arg(long, env = "LIFEBOAT_DB_HOST")]
    host: Option<String>,
    /// Server port.
    #[arg(long, env = "LIFEBOAT_DB_PORT")]
    port: Option<u16>,
    /// User name.
    #[arg(long, env = "LIFEBOAT_DB_USER")]
    user: Option<String>,
    /// File whose first line is the database password.
    #[arg(long, env = "LIFEBOAT_DB_PASSWORD_FILE")]
    db_password_file: Option<PathBuf>,
}

impl ConnArgs {
    fn connection(&self) -> Result<Connection, CliError> {
        let password = match &self.db_password_file {
            Some(f) => Some(read_secret_file(f, "database password")?),
            None => env_secret("LIFEBOAT_DB_PASSWORD"),
        };
        Ok(Connection {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password,
            dump_args: Vec::new(),
        })
    }
}

#[derive(Args, Debug)]
struct DbBackupArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Database to dump.
    #[arg(
        long,
        env = "LIFEBOAT_DB_DATABASE",
        required_unless_present = "all_databases",
        conflicts_with = "all_databases"
    )]
    database: Option<String>,
    /// Dump every database of the server.
    #[arg(long)]
    all_databases: bool,
    /// Extra tags for the snapshot.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's).
    #[arg(long)]
    snapshot_host: Option<String>,
    /// Extra argument for pg_dump / mariadb-dump (repeatable), e.g.
    /// `--extra-arg=--exclude-table=audit_log`. Options that change the output, format,
    /// connection or database are refused.
    #[arg(long = "extra-arg", allow_hyphen_values = true)]
    extra_args: Vec<String>,
}

#[derive(Args, Debug)]
struct DbRestoreArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Snapshot ID (or prefix) or `latest` (the newest database snapshot of this engine,
    /// narrowed with --tag/--host).
    snapshot: String,
    /// Target database (for single-database dumps).
    #[arg(long, env = "LIFEBOAT_DB_DATABASE")]
    database: Option<String>,
    /// Create the target database first (fails if it exists).
    #[arg(long)]
    create_database: bool,
    /// PostgreSQL: skip ownership and privileges (restore as the connecting user).
    #[arg(long)]
    no_owner: bool,
    /// With `latest`: only snapshots recorded for this host.
    #[arg(long)]
    snapshot_host: Option<String>,
    /// With `latest`: only snapshots with this tag (repeatable), e.g. `db-name:app`.
    #[arg(long = "tag")]
    tags: Vec<String>,
}

#[derive(Serialize)]
struct RestoreOut<'a> {
    snapshot: &'a SnapshotInfo,
    database: Option<&'a str>,
    metadata: &'a DumpMetadata,
}

/// Runs `db ...`.
pub fn run(cmd: DbCmd, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    match cmd.cmd {
        DbSub::Backup(a) => backup(a, repo_args, out),
        DbSub::Restore(a) => restore(a, repo_args, out),
    }
}

fn backup(a: DbBackupArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let DbBackupArgs {
        conn,
        database,
        all_databases,
        tags,
        snapshot_host,
        extra_args,
    } = a;
    let scope = match (database, all_databases) {
        (_, true) => DumpScope::All,
        (Some(d), false) => DumpScope::Database(d),
        (None, false) => return Err(CliError::input("give --database NAME or --all-databases")),
    };
    db::check_dump_args(conn.engine, &extra_args)?;
    let mut connection = conn.connection()?;
    connection.dump_args = extra_args;
    let adapter = db::adapter(conn.engine, connection);
    let repo = repo_args.open(out.json)?;
    let meta = SnapshotMeta {
        host: snapshot_host,
        tags: split_tags(&tags),
    };
    let res = db::backup(&repo, adapter.as_ref(), &scope, &meta)?;
    if out.json {
        return out.emit(&res, String::new);
    }
    print_outcome(&res.backup, out)?;
    let m = &res.metadata;
    let tables: usize = m.row_counts.values().map(|t| t.len()).sum();
    let rows: u64 = m.row_counts.values().flat_map(|t| t.values()).sum();
    println!(
        "{} {} dump of {}: {} in {} tables, {} rows ({})",
        m.engine,
        m.server_version,
        m.scope,
        bytes(m.dump_bytes),
        tables,
        rows,
        serde_json::to_value(m.row_counts_method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    Ok(())
}

fn restore(a: DbRestoreArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let DbRestoreArgs {
        conn,
        snapshot,
        database,
        create_database,
        no_owner,
        snapshot_host,
        tags,
    } = a;
    let engine = conn.engine;
    let adapter = db::adapter(engine, conn.connection()?);
    let repo = repo_args.open(out.json)?;
    let mut filter = SnapshotFilter {
        host: snapshot_host,
        tags: split_tags(&tags),
        ..SnapshotFilter::default()
    };
    filter.tags.push(format!("db-engine:{engine}"));
    let opts = db::RestoreOptions {
        database: database.clone(),
        create_database,
        no_owner,
    };
    let (sn, meta) = db::restore(&repo, adapter.as_ref(), &snapshot, &filter, &opts)?;
    let o = RestoreOut {
        snapshot: &sn,
        database: database.as_deref(),
        metadata: &meta,
    };
    out.emit(&o, || {
        format!(
            "restored {} dump {} of {} (snapshot {}) into {}",
            meta.engine,
            meta.dump_file,
            meta.scope,
            sn.short_id,
            database.as_deref().unwrap_or("the server")
        )
    })
}

//! Database adapters: dump a database straight into the repository (no temporary file),
//! restore a dump from the repository into a database, and the queries a DR drill runs
//! against a restored database (one value; exact row counts per table).
//!
//! The adapters drive the engines' own client programs (`pg_dump`, `pg_restore`, `psql`;
//! `mariadb-dump`, `mariadb`) as subprocesses: the dump formats are theirs, restores are
//! theirs, and the build stays free of database drivers. Passwords reach the clients through
//! the environment (`PGPASSWORD`, `MYSQL_PWD`), never through arguments, logs or errors.
//!
//! A database snapshot holds two files: `dump/<name>` (the dump stream) and
//! `lifeboat-metadata.json` ([`DumpMetadata`]: engine, server version, exact per-table row
//! counts at dump time, how they were obtained). The JSON is a plain file so that stock
//! restic can read it (`restic dump <id> /lifeboat-metadata.json`); tags carry the engine and
//! database for filtering with either tool. See docs/engine.md for the reasoning.

pub mod client;
pub mod counting;
pub mod mysql;
pub mod postgres;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use crate::repo::{
    self, BackupOutcome, ExtraFile, Repo, Secret, SnapshotFilter, SnapshotInfo, SnapshotMeta,
    StreamBackup,
};

/// Name of the metadata file in a database snapshot.
pub const METADATA_FILE: &str = "lifeboat-metadata.json";
/// Directory of the dump file in a database snapshot.
pub const DUMP_DIR: &str = "dump";
/// Format tag of [`DumpMetadata`].
pub const METADATA_FORMAT: &str = "lifeboat.dev/db-dump/v1";

/// Database engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MariaDB or MySQL.
    Mysql,
}

impl Engine {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed database operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client program is not installed.
    #[error("{program} not found: install the database client tools")]
    ToolMissing {
        /// The program.
        program: String,
    },
    /// The server refused or did not answer.
    #[error("{engine} server unreachable: {detail}")]
    Unreachable {
        /// Engine.
        engine: Engine,
        /// Client message.
        detail: String,
    },
    /// Login rejected.
    #[error("{engine} authentication failed: {detail}")]
    Auth {
        /// Engine.
        engine: Engine,
        /// Client message.
        detail: String,
    },
    /// Anything else the database or its clients reported.
    #[error("{engine}: {detail}")]
    Database {
        /// Engine.
        engine: Engine,
        /// Client message.
        detail: String,
    },
    /// Invalid options.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The repository failed (includes a dump that failed halfway: no snapshot written).
    #[error(transparent)]
    Repo(#[from] repo::Error),
}

impl Error {
    /// Every category this type can return apart from the repository's.
    pub const ALL_CATEGORIES: &'static [&'static str] = &[
        "ToolMissing",
        "DatabaseUnreachable",
        "DatabaseAuthFailed",
        "DatabaseError",
        "InvalidInput",
    ];

    /// Bounded PascalCase category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::ToolMissing { .. } => "ToolMissing",
            Self::Unreachable { .. } => "DatabaseUnreachable",
            Self::Auth { .. } => "DatabaseAuthFailed",
            Self::Database { .. } => "DatabaseError",
            Self::InvalidInput(_) => "InvalidInput",
            Self::Repo(e) => e.category(),
        }
    }

    /// Whether retrying may help.
    pub fn retry_class(&self) -> repo::RetryClass {
        match self {
            Self::Unreachable { .. } => repo::RetryClass::Transient,
            Self::Repo(e) => e.retry_class(),
            _ => repo::RetryClass::Permanent,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to reach a server.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// Host name or IP (default: the client's default, usually a local socket).
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Password (passed to the clients through the environment).
    pub password: Option<Secret>,
    /// Extra arguments for the dump tool (pg_dump / pg_dumpall / mariadb-dump), e.g.
    /// `--exclude-table=audit_log`. Checked by [`check_dump_args`].
    pub dump_args: Vec<String>,
}

/// Refuses extra dump arguments that would change where the dump goes, its format, the
/// server or login, or what is dumped at the top level: the restore and the recorded row
/// counts rely on those. Everything else (table filters, lock timeouts, ...) passes.
pub fn check_dump_args(engine: Engine, args: &[String]) -> Result<()> {
    const PG: &[&str] = &[
        "-f",
        "--file",
        "-F",
        "--format",
        "--snapshot",
        "-d",
        "--dbname",
        "-h",
        "--host",
        "-p",
        "--port",
        "-U",
        "--username",
        "-W",
        "--password",
        "-j",
        "--jobs",
        "-l",
        "--database",
    ];
    const MY: &[&str] = &[
        "-r",
        "--result-file",
        "-T",
        "--tab",
        "-X",
        "--xml",
        "-h",
        "--host",
        "-P",
        "--port",
        "-u",
        "--user",
        "-p",
        "--password",
        "-B",
        "--databases",
        "-A",
        "--all-databases",
        "-S",
        "--socket",
        "--defaults-file",
        "--defaults-extra-file",
    ];
    let forbidden = match engine {
        Engine::Postgres => PG,
        Engine::Mysql => MY,
    };
    for a in args {
        if !a.starts_with('-') {
            return Err(Error::InvalidInput(format!(
                "extra dump argument {a:?} is not an option (it must start with '-')"
            )));
        }
        let clash = forbidden.iter().any(|f| {
            if f.starts_with("--") {
                a == f || a.starts_with(&format!("{f}="))
            } else {
                a.starts_with(f) && !a.starts_with("--")
            }
        });
        if clash {
            return Err(Error::InvalidInput(format!(
                "extra dump argument {a:?} is not allowed: Lifeboat sets the output, format, \
                 connection and database itself"
            )));
        }
    }
    Ok(())
}

/// What to dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpScope {
    /// One database.
    Database(String),
    /// Every database of the server.
    All,
}

impl DumpScope {
    /// The name used in tags and file names (`all` for every database).
    pub fn label(&self) -> &str {
        match self {
            Self::Database(d) => d,
            Self::All => "all",
        }
    }
}

/// How the row counts were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountMethod {
    /// Counted with `count(*)` inside the transaction whose snapshot the dump used
    /// (PostgreSQL `pg_export_snapshot` + `pg_dump --snapshot`): exact for the dump.
    ExportedSnapshot,
    /// Counted from the rows in the dump stream itself: exact for the dump.
    CountedFromDump,
}

/// The metadata stored next to a dump (`lifeboat-metadata.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DumpMetadata {
    /// Always [`METADATA_FORMAT`].
    pub format: String,
    /// Engine.
    pub engine: Engine,
    /// `SELECT version()`-style server version string.
    pub server_version: String,
    /// What was dumped.
    pub scope: String,
    /// Path of the dump inside the snapshot.
    pub dump_file: String,
    /// Dump format: `pg_dump-custom`, `pg_dumpall-sql` or `mysqldump-sql`.
    pub dump_format: String,
    /// The dump program and its arguments (no secrets are ever in arguments).
    pub dump_command: Vec<String>,
    /// Rows per table at dump time: database → table → rows.
    pub row_counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// How the counts were obtained.
    pub row_counts_method: CountMethod,
    /// Dump size in bytes.
    pub dump_bytes: u64,
    /// When the dump started.
    pub started_at: jiff::Timestamp,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
}

/// A running dump: the stream, its file name and a closure completing the metadata once the
/// stream has ended successfully.
pub struct DumpStream {
    /// The dump bytes; a read error means the dump failed.
    pub reader: Box<dyn std::io::Read + Send>,
    /// File name (inside `dump/`).
    pub file_name: String,
    /// Produces the metadata; called only after the stream ended without error.
    pub finish: Box<dyn FnOnce() -> std::result::Result<DumpMetadata, String> + Send>,
}

/// Options of a restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Target database (required for single-database dumps; ignored for all-database dumps,
    /// which recreate their own databases).
    pub database: Option<String>,
    /// Create the target database first (fails if it exists).
    pub create_database: bool,
    /// PostgreSQL: do not restore object ownership (restore as the connecting user).
    pub no_owner: bool,
}

/// What every engine adapter offers.
pub trait DatabaseAdapter: Send + Sync {
    /// The engine.
    fn engine(&self) -> Engine;
    /// The server's version string.
    fn server_version(&self) -> Result<String>;
    /// Starts a dump.
    fn start_dump(&self, scope: &DumpScope) -> Result<DumpStream>;
    /// Restores a dump (written into the provided stdin by `feed`) according to `meta`.
    fn restore(
        &self,
        meta: &DumpMetadata,
        opts: &RestoreOptions,
        feed: &mut dyn FnMut(&mut dyn std::io::Write) -> std::result::Result<(), repo::Error>,
    ) -> Result<()>;
    /// Runs a query that returns one value (first column of the first row), for drills.
    fn query_value(&self, database: &str, sql: &str) -> Result<String>;
    /// Exact row counts of every table of a database (`count(*)`), for drills.
    fn row_counts(&self, database: &str) -> Result<BTreeMap<String, u64>>;
    /// Drops a database if it exists (drills clean up their scratch databases).
    fn drop_database(&self, database: &str) -> Result<()>;
    /// Whether a database of that name exists (restores never overwrite one that holds
    /// tables).
    fn database_exists(&self, database: &str) -> Result<bool>;
}

/// `name` as a SQL string literal: quotes doubled, and backslashes doubled too (MySQL reads
/// them as escapes by default; PostgreSQL's standard strings take them literally, so the
/// caller picks).
pub fn sql_string(name: &str, escape_backslashes: bool) -> String {
    let mut s = name.replace('\'', "''");
    if escape_backslashes {
        s = s.replace('\\', "\\\\");
    }
    format!("'{s}'")
}

/// Builds the adapter for an engine.
pub fn adapter(engine: Engine, conn: Connection) -> Box<dyn DatabaseAdapter> {
    match engine {
        Engine::Postgres => Box::new(postgres::Postgres::new(conn)),
        Engine::Mysql => Box::new(mysql::Mysql::new(conn)),
    }
}

/// Checks a database name for the clients' command lines: no leading `-` (it would be read
/// as an option), no NUL, not empty.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('-') || name.contains('\0') || name.len() > 128 {
        return Err(Error::InvalidInput(format!(
            "invalid database name {name:?}"
        )));
    }
    Ok(())
}

/// The result of a database backup.
#[derive(Clone, Debug, Serialize)]
pub struct DbBackupOutcome {
    /// The snapshot.
    #[serde(flatten)]
    pub backup: BackupOutcome,
    /// The stored metadata.
    pub metadata: DumpMetadata,
}

/// Dumps `scope` into a new snapshot: the dump streams straight into the repository, the
/// metadata file is added once the dump finished, and nothing is committed if either fails.
pub fn backup(
    repo: &Repo,
    adapter: &dyn DatabaseAdapter,
    scope: &DumpScope,
    meta: &SnapshotMeta,
) -> Result<DbBackupOutcome> {
    let engine = adapter.engine();
    let dump = adapter.start_dump(scope)?;
    let dump_path = format!("{DUMP_DIR}/{}", dump.file_name);
    let slot: Arc<Mutex<Option<DumpMetadata>>> = Arc::default();
    let slot2 = slot.clone();
    let finish = dump.finish;
    let extra = ExtraFile {
        path: METADATA_FILE.to_string(),
        content: Box::new(move || {
            let m = finish()?;
            let json = serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?;
            *slot2.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
            Ok(json)
        }),
    };
    let mut meta = meta.clone();
    meta.tags.extend([
        "lifeboat-db".to_string(),
        format!("db-engine:{engine}"),
        format!("db-name:{}", scope.label()),
    ]);
    let backup = repo.backup_stream(
        StreamBackup {
            path: dump_path,
            reader: dump.reader,
            extra_files: vec![extra],
        },
        &meta,
    )?;
    let metadata = slot
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| Error::Database {
            engine,
            detail: "metadata missing after a successful backup".into(),
        })?;
    Ok(DbBackupOutcome { backup, metadata })
}

/// Reads the metadata of a database snapshot.
pub fn read_metadata(
    repo: &Repo,
    snapshot: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotInfo, DumpMetadata)> {
    let sn = repo.find_snapshot(snapshot, filter)?;
    let raw = repo.read_file(&sn.id, METADATA_FILE).map_err(|e| match e {
        repo::Error::PathNotFound { .. } => Error::InvalidInput(format!(
            "snapshot {} is not a database backup (no {METADATA_FILE})",
            sn.short_id
        )),
        other => Error::Repo(other),
    })?;
    let meta: DumpMetadata = serde_json::from_slice(&raw).map_err(|e| {
        Error::InvalidInput(format!(
            "snapshot {}: unreadable {METADATA_FILE}: {e}",
            sn.short_id
        ))
    })?;
    if meta.format != METADATA_FORMAT {
        return Err(Error::InvalidInput(format!(
            "snapshot {}: unknown metadata format {:?}",
            sn.short_id, meta.format
        )));
    }
    Ok((sn, meta))
}

/// Restores a database snapshot: the dump streams from the repository into the engine's
/// restore client.
pub fn restore(
    repo: &Repo,
    adapter: &dyn DatabaseAdapter,
    snapshot: &str,
    filter: &SnapshotFilter,
    opts: &RestoreOptions,
) -> Result<(SnapshotInfo, DumpMetadata)> {
    let (sn, meta) = read_metadata(repo, snapshot, filter)?;
    if meta.engine != adapter.engine() {
        return Err(Error::InvalidInput(format!(
            "snapshot {} holds a {} dump, not {}",
            sn.short_id,
            meta.engine,
            adapter.engine()
        )));
    }
    let id = sn.id.clone();
    let file = meta.dump_file.clone();
    adapter.restore(&meta, opts, &mut |w| {
        repo.dump(&id, &SnapshotFilter::default(), &file, w)
            .map(|_| ())
    })?;
    Ok((sn, meta))
}

#[cfg(test)]
mod dump_args_tests {
    use super::*;

    #[test]
    fn extra_dump_args_cannot_redirect_or_reformat_the_dump() {
        let ok = |e, a: &[&str]| {
            check_dump_args(e, &a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert!(
            ok(
                Engine::Postgres,
                &[
                    "--exclude-table=audit",
                    "--lock-wait-timeout=10s",
                    "-n",
                    "public"
                ]
            )
            .is_err(),
            "bare values are refused"
        );
        assert!(
            ok(
                Engine::Postgres,
                &["--exclude-table=audit", "--lock-wait-timeout=10s"]
            )
            .is_ok()
        );
        assert!(
            ok(
                Engine::Mysql,
                &["--ignore-table=app.audit", "--skip-lock-tables"]
            )
            .is_ok()
        );
        for bad in [
            "-f/tmp/x",
            "--file=/tmp/x",
            "-Fp",
            "--format=plain",
            "--snapshot=1",
            "-dother",
        ] {
            assert!(ok(Engine::Postgres, &[bad]).is_err(), "{bad}");
        }
        for bad in [
            "--result-file=/tmp/x",
            "-r/tmp/x",
            "--tab=/tmp",
            "--all-databases",
            "-uroot",
            "--defaults-file=/x",
        ] {
            assert!(ok(Engine::Mysql, &[bad]).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_json_shape() {
        let m = DumpMetadata {
            format: METADATA_FORMAT.into(),
            engine: Engine::Postgres,
            server_version: "15.18".into(),
            scope: "app".into(),
            dump_file: "dump/app.pgdump".into(),
            dump_format: "pg_dump-custom".into(),
            dump_command: vec!["pg_dump".into(), "-Fc".into()],
            row_counts: BTreeMap::from([(
                "app".to_string(),
                BTreeMap::from([("public.t".to_string(), 3)]),
            )]),
            row_counts_method: CountMethod::ExportedSnapshot,
            dump_bytes: 10,
            started_at: jiff::Timestamp::UNIX_EPOCH,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["engine"], "postgres");
        assert_eq!(v["row_counts_method"], "exported-snapshot");
        assert_eq!(v["row_counts"]["app"]["public.t"], 3);
        let back: DumpMetadata = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn sql_strings_are_quoted() {
        assert_eq!(sql_string("app", false), "'app'");
        assert_eq!(sql_string("o'neil", false), "'o''neil'");
        assert_eq!(sql_string("a\\'b", true), "'a\\\\''b'");
        assert_eq!(sql_string("a\\b", false), "'a\\b'");
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("app").is_ok());
        assert!(validate_name("My DB").is_ok());
        assert!(validate_name("-c").is_err());
        assert!(validate_name("").is_err());
    }
}

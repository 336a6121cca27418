//! `lifeboat mover check sql|freshness|files|http`: one DR drill check, run inside the
//! drill's sandbox, against the restored data. The verdict (Passed, Failed or Error), the
//! observed and expected values and the time it finished go to the termination message
//! in `details` (see [`crate::drill::checks::Outcome`]); the command exits 0 whenever it
//! produced a verdict, so a failing check is a result, not a crashed pod.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::cli::{CliError, RepoArgs, env_secret};
use crate::crd::dr_drill::{CheckVerdict, Expectation};
use crate::db::{self, Connection, DumpMetadata, Engine, METADATA_FILE};
use crate::drill::checks::{self, Counts, FileDigest, Outcome};
use crate::jobs::result::{MoverResult, RESULT_VERSION};
use crate::repo::SnapshotFilter;

/// `mover check` subcommands.
#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// A SQL query against an expectation, or every table's row count against the backup.
    Sql(SqlArgs),
    /// The newest business timestamp of the restored data.
    Freshness(FreshnessArgs),
    /// Files of a restored volume: existence and checksums.
    Files(FilesArgs),
    /// An HTTP endpoint inside the sandbox.
    Http(HttpArgs),
}

/// The restored database to connect to (login from `LIFEBOAT_DB_USER` /
/// `LIFEBOAT_DB_PASSWORD`).
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    #[arg(long, value_enum)]
    engine: Engine,
    #[arg(long)]
    host: String,
    #[arg(long)]
    port: Option<u16>,
    /// The restored database.
    #[arg(long)]
    database: String,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Query returning one value.
    #[arg(long, required_unless_present = "matches_backup")]
    query: Option<String>,
    #[arg(long, conflicts_with_all = ["at_least", "at_most"])]
    equals: Option<String>,
    #[arg(long, conflicts_with = "at_most")]
    at_least: Option<String>,
    #[arg(long)]
    at_most: Option<String>,
    /// Compare every table's row count with the counts recorded in the snapshot.
    #[arg(long, requires = "snapshot", conflicts_with = "query")]
    matches_backup: bool,
    /// The database snapshot that was restored.
    #[arg(long)]
    snapshot: Option<String>,
}

#[derive(Args, Debug)]
pub struct FreshnessArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Query returning the newest business timestamp.
    #[arg(long)]
    query: String,
}

#[derive(Args, Debug)]
pub struct FilesArgs {
    /// Where the restored volume is mounted.
    #[arg(long)]
    root: PathBuf,
    /// A path (relative to the volume root) that must exist (repeatable).
    #[arg(long = "exist")]
    exist: Vec<String>,
    /// `PATH=SHA256`, or `PATH` to compare with the snapshot (repeatable).
    #[arg(long = "checksum")]
    checksums: Vec<String>,
    /// The volume snapshot that was restored (for checksums without a value).
    #[arg(long)]
    snapshot: Option<String>,
}

#[derive(Args, Debug)]
pub struct HttpArgs {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_seconds: u64,
}

fn adapter(a: &DbArgs) -> Box<dyn db::DatabaseAdapter> {
    db::adapter(
        a.engine,
        Connection {
            host: Some(a.host.clone()),
            port: a.port,
            user: std::env::var("LIFEBOAT_DB_USER")
                .ok()
                .filter(|u| !u.is_empty()),
            password: env_secret("LIFEBOAT_DB_PASSWORD"),
            dump_args: Vec::new(),
        },
    )
}

/// The row counts recorded in a database snapshot's metadata, keyed by the database they
/// were restored into (a single-database dump may be restored under another name).
fn backup_counts(repo: &RepoArgs, snapshot: &str, restored_db: &str) -> Result<Counts, String> {
    let repo = repo.open(true).map_err(|e| e.message)?;
    let bytes = repo
        .read_file(snapshot, &format!("/{METADATA_FILE}"))
        .map_err(|e| format!("reading {METADATA_FILE} of snapshot {snapshot}: {e}"))?;
    let meta: DumpMetadata = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{METADATA_FILE} of snapshot {snapshot} is not readable: {e}"))?;
    if meta.scope == "all" {
        return Ok(meta.row_counts);
    }
    let counts = meta.row_counts.into_values().next().unwrap_or_default();
    Ok(Counts::from([(restored_db.to_string(), counts)]))
}

fn sql(a: SqlArgs, repo: &RepoArgs) -> Outcome {
    let ad = adapter(&a.db);
    if a.matches_backup {
        let snapshot = a.snapshot.as_deref().unwrap_or_default();
        let backup = match backup_counts(repo, snapshot, &a.db.database) {
            Ok(c) => c,
            Err(e) => return Outcome::error(e),
        };
        let mut restored = Counts::new();
        for db in backup.keys() {
            match ad.row_counts(db) {
                Ok(c) => {
                    restored.insert(db.clone(), c);
                }
                // A database of the backup that is not there at all: every table of it
                // will show as missing.
                Err(db::Error::Database { .. }) if backup.len() > 1 => {}
                Err(e) => return Outcome::error(format!("counting rows in {db}: {e}")),
            }
        }
        return checks::compare_counts(&backup, &restored);
    }
    let expectation = Expectation {
        equals: a.equals,
        at_least: a.at_least,
        at_most: a.at_most,
    };
    checks::sql_value(
        ad.as_ref(),
        &a.db.database,
        a.query.as_deref().unwrap_or_default(),
        &expectation,
    )
}

fn files(a: FilesArgs, repo: &RepoArgs) -> Outcome {
    let digests: Vec<FileDigest> = a
        .checksums
        .iter()
        .map(|c| match c.rsplit_once('=') {
            Some((p, h)) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
                FileDigest {
                    path: p.to_string(),
                    sha256: Some(h.to_string()),
                }
            }
            _ => FileDigest {
                path: c.clone(),
                sha256: None,
            },
        })
        .collect();
    // The repository is opened once, and only when a checksum needs the snapshot.
    let mut opened: Option<Result<(crate::repo::Repo, String), String>> = None;
    let snapshot = a.snapshot.clone();
    let mut from_snapshot = |path: &str| -> Result<String, String> {
        let sn = snapshot
            .as_deref()
            .ok_or("no snapshot given to compare with")?;
        let entry = opened.get_or_insert_with(|| {
            let r = repo.open(true).map_err(|e| e.message)?;
            let info = r
                .find_snapshot(sn, &SnapshotFilter::default())
                .map_err(|e| e.to_string())?;
            // Volume snapshots record the mount path they were taken from (e.g. `/data`).
            let root = info.paths.first().cloned().unwrap_or_else(|| "/".into());
            Ok((r, root))
        });
        let (r, root) = entry.as_ref().map_err(Clone::clone)?;
        let full = format!("{}/{path}", root.trim_end_matches('/'));
        let mut w = HashWriter::default();
        r.dump(sn, &SnapshotFilter::default(), &full, &mut w)
            .map_err(|e| e.to_string())?;
        Ok(w.finish())
    };
    checks::files(&a.root, &a.exist, &digests, &mut from_snapshot)
}

/// A writer that only hashes.
#[derive(Default)]
struct HashWriter(sha2::Sha256);

impl HashWriter {
    fn finish(self) -> String {
        use sha2::Digest;
        hex::encode(self.0.finalize())
    }
}

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn http(a: HttpArgs) -> Outcome {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Outcome::error(format!("no runtime: {e}")),
    };
    rt.block_on(checks::http(
        &a.url,
        a.expect_status,
        Duration::from_secs(a.timeout_seconds.max(1)),
    ))
}

/// The result written for a check.
pub fn result(outcome: &Outcome, took: Duration, finished: jiff::Timestamp) -> MoverResult {
    let mut details = match serde_json::to_value(outcome) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    details.insert("finishedAt".into(), finished.to_string().into());
    MoverResult {
        v: RESULT_VERSION,
        duration_seconds: Some(took.as_secs_f64()),
        details,
        ..MoverResult::default()
    }
}

/// Runs a `mover check` subcommand.
pub fn run(cmd: CheckCmd, repo: &RepoArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let outcome = match cmd {
        CheckCmd::Sql(a) => sql(a, repo),
        CheckCmd::Freshness(a) => {
            let ad = adapter(&a.db);
            checks::freshness(ad.as_ref(), &a.db.database, &a.query)
        }
        CheckCmd::Files(a) => files(a, repo),
        CheckCmd::Http(a) => http(a),
    };
    if outcome.verdict != CheckVerdict::Passed {
        tracing::warn!(verdict = ?outcome.verdict, observed = ?outcome.observed, message = ?outcome.message, "check did not pass");
    }
    super::finish(Ok(result(
        &outcome,
        started.elapsed(),
        jiff::Timestamp::now(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn check_command_lines_parse() {
        let ok = [
            vec![
                "lifeboat",
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
                "--query",
                "select 1",
                "--at-least",
                "1",
            ],
            vec![
                "lifeboat",
                "mover",
                "check",
                "sql",
                "--engine",
                "mysql",
                "--host",
                "db",
                "--port",
                "3306",
                "--database",
                "shop",
                "--matches-backup",
                "--snapshot",
                "abc",
            ],
            vec![
                "lifeboat",
                "mover",
                "check",
                "freshness",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
                "--query",
                "select max(t) from x",
            ],
            vec![
                "lifeboat",
                "mover",
                "check",
                "files",
                "--root",
                "/volumes/data",
                "--exist",
                "a",
                "--checksum",
                "b",
                "--snapshot",
                "abc",
            ],
            vec![
                "lifeboat",
                "mover",
                "check",
                "http",
                "--url",
                "http://web/healthz",
                "--expect-status",
                "204",
            ],
        ];
        for args in ok {
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        let bad = [
            vec![
                "lifeboat",
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
            ],
            vec![
                "lifeboat",
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
                "--matches-backup",
            ],
            vec![
                "lifeboat",
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
                "--query",
                "q",
                "--equals",
                "1",
                "--at-most",
                "2",
            ],
        ];
        for args in bad {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn results_carry_the_verdict_and_fit_the_termination_message() {
        let o = checks::judge_value(
            &"9".repeat(5000),
            &Expectation {
                equals: Some("1".into()),
                ..Expectation::default()
            },
        );
        let r = result(
            &o,
            Duration::from_millis(1500),
            "2026-11-22T15:00:00Z".parse().unwrap(),
        );
        let msg = r.to_message();
        assert!(msg.len() < 4096);
        let back = MoverResult::parse(&msg).unwrap();
        assert_eq!(back.details["verdict"], "Failed");
        assert_eq!(back.details["finishedAt"], "2026-11-22T15:00:00Z");
        assert_eq!(back.duration_seconds, Some(1.5));
        assert!(
            back.details["observed"]
                .as_str()
                .unwrap()
                .ends_with("(5000 bytes in all)")
        );
    }
}

//! `lifeboat mover check sql|freshness|files|http`: one DR drill check, run inside the
//! drill's sandbox, against the restored data. The verdict (Passed, Failed or Error), the
//! observed and expected values and the time it finished go to the termination message
//! in `details` (see [`crate::drill::checks::Outcome`]); the command exits 0 whenever it
//! produced a verdict, so a failing check is a result, not a crashed pod.

use std::time::{Duration, Instant};

use super::env::db_login;
use super::{Error, RepoAccess};
use crate::crd::dr_drill::CheckVerdict;
use crate::db::{self, Connection, DumpMetadata, METADATA_FILE};
use crate::drill::checks::{self, Counts, Outcome};
use crate::jobs::mover::command::{
    CheckCommand, CheckFiles, CheckHttp, CheckSql, DbTarget, SqlTest,
};
use crate::jobs::result::{MoverResult, RESULT_VERSION};
use crate::repo::SnapshotFilter;

fn adapter(a: &DbTarget) -> Box<dyn db::DatabaseAdapter> {
    let (user, password) = db_login();
    db::adapter(
        a.engine,
        Connection {
            host: Some(a.host.clone()),
            port: a.port,
            user,
            password,
            dump_args: Vec::new(),
        },
    )
}

/// The row counts recorded in a database snapshot's metadata, keyed by the database they
/// were restored into (a single-database dump may be restored under another name).
fn backup_counts(repo: &RepoAccess, snapshot: &str, restored_db: &str) -> Result<Counts, String> {
    let repo = repo.open(true).map_err(|e| e.to_string())?;
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

fn sql(a: CheckSql, repo: &RepoAccess) -> Outcome {
    let CheckSql { db: target, test } = a;
    let ad = adapter(&target);
    let (query, expectation) = match test {
        SqlTest::Query { query, expect } => (query, expect),
        SqlTest::MatchesBackup { snapshot } => {
            let backup = match backup_counts(repo, &snapshot, &target.database) {
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
    };
    checks::sql_value(ad.as_ref(), &target.database, &query, &expectation)
}

fn files(a: CheckFiles, repo: &RepoAccess) -> Outcome {
    // The repository is opened once, and only when a checksum needs the snapshot.
    let mut opened: Option<Result<(crate::repo::Repo, String), String>> = None;
    let snapshot = a.snapshot.clone();
    let mut from_snapshot = |path: &str| -> Result<String, String> {
        let sn = snapshot
            .as_deref()
            .ok_or("no snapshot given to compare with")?;
        let entry = opened.get_or_insert_with(|| {
            let r = repo.open(true).map_err(|e| e.to_string())?;
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
    checks::files(&a.root, &a.exist, &a.checksums, &mut from_snapshot)
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

fn http(a: CheckHttp) -> Outcome {
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
pub(crate) fn result(outcome: &Outcome, took: Duration, finished: jiff::Timestamp) -> MoverResult {
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
pub(crate) fn run(cmd: CheckCommand, repo: &RepoAccess) -> Result<(), Error> {
    let started = Instant::now();
    let outcome = match cmd {
        CheckCommand::Sql(a) => sql(a, repo),
        CheckCommand::Freshness(a) => {
            let ad = adapter(&a.db);
            checks::freshness(ad.as_ref(), &a.db.database, &a.query)
        }
        CheckCommand::Files(a) => files(a, repo),
        CheckCommand::Http(a) => http(a),
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
    use crate::crd::dr_drill::Expectation;

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

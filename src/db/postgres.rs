//! PostgreSQL: `pg_dump -Fc` of one database (or `pg_dumpall` for all), `pg_restore` /
//! `psql` to restore, `psql` for queries.
//!
//! Consistency of the row counts with a single-database dump: a `psql` session opens a
//! `REPEATABLE READ READ ONLY` transaction, exports its snapshot (`pg_export_snapshot()`),
//! counts every table with `count(*)` inside it, and keeps the transaction open while
//! `pg_dump --snapshot=<id>` runs. Both see exactly the same data, so the counts are exact
//! for the dump whatever else writes to the database meanwhile. For `pg_dumpall` (no shared
//! snapshot across databases) the rows are counted from the dump stream itself.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Stdio},
};

use super::{
    Connection, CountMethod, DatabaseAdapter, DumpMetadata, DumpScope, DumpStream, Engine, Error,
    METADATA_FORMAT, RestoreOptions, Result,
    client::{Invocation, classify, spawn_error},
    counting::{CountingReader, NoCounter, PgPlainCounter},
    validate_name,
};
use crate::repo::{CommandStream, stream::StderrTail};

const MARK: &str = "__LIFEBOAT_END_OF_RESULT__";
const SEP: &str = "\u{1f}";

/// Generates one `count(*)` statement per user table (not extension members, which
/// `pg_dump` does not dump), for `\gexec`.
const COUNT_TABLES_SQL: &str = "SELECT format('SELECT %L, count(*) FROM %I.%I', \
     n.nspname || '.' || c.relname, n.nspname, c.relname) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
     AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1 \\gexec";

/// The PostgreSQL adapter.
#[derive(Clone, Debug)]
pub struct Postgres {
    conn: Connection,
}

/// Quotes an identifier for SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn parse_counts(lines: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for l in lines {
        let (name, n) = l.rsplit_once(SEP).ok_or_else(|| Error::Database {
            engine: Engine::Postgres,
            detail: format!("unexpected count line {l:?}"),
        })?;
        let n = n.trim().parse::<u64>().map_err(|_| Error::Database {
            engine: Engine::Postgres,
            detail: format!("unexpected count {n:?}"),
        })?;
        out.insert(name.to_string(), n);
    }
    Ok(out)
}

impl Postgres {
    /// An adapter for a server.
    pub fn new(conn: Connection) -> Self {
        Self { conn }
    }

    fn conn_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if let Some(h) = &self.conn.host {
            a.extend(["-h".into(), h.into()]);
        }
        if let Some(p) = self.conn.port {
            a.extend(["-p".into(), p.to_string().into()]);
        }
        if let Some(u) = &self.conn.user {
            a.extend(["-U".into(), u.into()]);
        }
        // Never prompt: a missing password is an error, not a hang.
        a.push("-w".into());
        a
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGCONNECT_TIMEOUT".to_string(), "10".to_string()),
            ("PGAPPNAME".to_string(), "lifeboat".to_string()),
        ];
        if let Some(p) = &self.conn.password {
            env.push(("PGPASSWORD".to_string(), p.expose().to_string()));
        }
        env
    }

    fn inv(&self, program: &str, mut args: Vec<OsString>) -> Invocation {
        let mut all = self.conn_args();
        all.append(&mut args);
        Invocation {
            engine: Engine::Postgres,
            program: program.to_string(),
            args: all,
            env: self.env(),
        }
    }

    fn psql(&self, database: &str, extra: &[&str]) -> Invocation {
        let mut args: Vec<OsString> = vec![
            "-X".into(),
            "-q".into(),
            "-A".into(),
            "-t".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-F".into(),
            SEP.into(),
            "-d".into(),
            database.into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        self.inv("psql", args)
    }

    fn maintenance_db(&self) -> &'static str {
        "postgres"
    }
}

/// A `psql` process kept open across statements (for the exported snapshot).
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: StderrTail,
}

impl Session {
    fn start(inv: &Invocation) -> Result<Self> {
        let mut cmd = inv.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&inv.program, &e))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| Error::Database {
            engine: Engine::Postgres,
            detail: "psql has no stdout".into(),
        })?);
        let (stderr, _) =
            StderrTail::drain(child.stderr.take().ok_or_else(|| Error::Database {
                engine: Engine::Postgres,
                detail: "psql has no stderr".into(),
            })?);
        Ok(Self {
            child,
            stdin,
            stdout,
            stderr,
        })
    }

    fn died(&mut self) -> Error {
        let status = self.child.wait().ok();
        // Give the stderr thread a moment to collect the last words.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let what = status.map_or_else(String::new, |s| super::client::one_line(&format!("{s}")));
        classify(
            Engine::Postgres,
            &format!("psql {what}: {}", self.stderr.text()),
        )
    }

    /// Runs statements; returns the result lines up to the marker.
    fn run(&mut self, sql: &str) -> Result<Vec<String>> {
        let script = format!("{sql}\n\\echo {MARK}\n");
        let ok = self.stdin.as_mut().is_some_and(|s| {
            s.write_all(script.as_bytes())
                .and_then(|()| s.flush())
                .is_ok()
        });
        if !ok {
            return Err(self.died());
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.died()),
                Ok(_) => {
                    let l = line.trim_end_matches(['\n', '\r']);
                    if l == MARK {
                        return Ok(lines);
                    }
                    if !l.is_empty() {
                        lines.push(l.to_string());
                    }
                }
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        self.run("COMMIT;")?;
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| Error::Database {
            engine: Engine::Postgres,
            detail: e.to_string(),
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(self.died())
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl DatabaseAdapter for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn server_version(&self) -> Result<String> {
        let out = self
            .psql(self.maintenance_db(), &["-c", "SHOW server_version"])
            .output(None)?;
        Ok(out.trim().to_string())
    }

    fn start_dump(&self, scope: &DumpScope) -> Result<DumpStream> {
        let started = jiff::Timestamp::now();
        match scope {
            DumpScope::Database(db) => {
                validate_name(db)?;
                let mut session = Session::start(&self.psql(db, &[]))?;
                let head = session.run(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n\
                     SELECT pg_export_snapshot();\n\
                     SELECT current_setting('server_version');",
                )?;
                let [snapshot_id, version] =
                    <[String; 2]>::try_from(head).map_err(|h| Error::Database {
                        engine: Engine::Postgres,
                        detail: format!("unexpected answer to the snapshot export: {h:?}"),
                    })?;
                let counts = parse_counts(&session.run(COUNT_TABLES_SQL)?)?;
                let mut args: Vec<OsString> =
                    vec!["-Fc".into(), format!("--snapshot={snapshot_id}").into()];
                args.extend(self.conn.dump_args.iter().map(OsString::from));
                args.extend(["-d".into(), db.into()]);
                let command: Vec<String> = std::iter::once("pg_dump".to_string())
                    .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
                    .collect();
                let inv = self.inv("pg_dump", args);
                let stream = CommandStream::from_command("pg_dump", inv.command())
                    .map_err(|e| spawn_error("pg_dump", &e))?;
                let (reader, handle) = CountingReader::new(stream, Box::new(NoCounter));
                let db = db.clone();
                Ok(DumpStream {
                    reader: Box::new(reader),
                    file_name: format!("{db}.pgdump"),
                    finish: Box::new(move || {
                        // The dump has ended: the exporting transaction may close now.
                        session.finish().map_err(|e| e.to_string())?;
                        Ok(DumpMetadata {
                            format: METADATA_FORMAT.into(),
                            engine: Engine::Postgres,
                            server_version: version,
                            scope: db.clone(),
                            dump_file: format!("{}/{db}.pgdump", super::DUMP_DIR),
                            dump_format: "pg_dump-custom".into(),
                            dump_command: command,
                            row_counts: BTreeMap::from([(db, counts)]),
                            row_counts_method: CountMethod::ExportedSnapshot,
                            dump_bytes: handle.bytes(),
                            started_at: started,
                            finished_at: jiff::Timestamp::now(),
                        })
                    }),
                })
            }
            DumpScope::All => {
                let version = self.server_version()?;
                let inv = self.inv(
                    "pg_dumpall",
                    self.conn.dump_args.iter().map(OsString::from).collect(),
                );
                let stream = CommandStream::from_command("pg_dumpall", inv.command())
                    .map_err(|e| spawn_error("pg_dumpall", &e))?;
                let (reader, handle) =
                    CountingReader::new(stream, Box::new(PgPlainCounter::new("postgres")));
                Ok(DumpStream {
                    reader: Box::new(reader),
                    file_name: "all-databases.sql".into(),
                    finish: Box::new(move || {
                        Ok(DumpMetadata {
                            format: METADATA_FORMAT.into(),
                            engine: Engine::Postgres,
                            server_version: version,
                            scope: "all".into(),
                            dump_file: format!("{}/all-databases.sql", super::DUMP_DIR),
                            dump_format: "pg_dumpall-sql".into(),
                            dump_command: vec!["pg_dumpall".into()],
                            row_counts: handle.counts(),
                            row_counts_method: CountMethod::CountedFromDump,
                            dump_bytes: handle.bytes(),
                            started_at: started,
                            finished_at: jiff::Timestamp::now(),
                        })
                    }),
                })
            }
        }
    }

    fn restore(
        &self,
        meta: &DumpMetadata,
        opts: &RestoreOptions,
        feed: &mut dyn FnMut(&mut dyn Write) -> std::result::Result<(), crate::repo::Error>,
    ) -> Result<()> {
        match meta.dump_format.as_str() {
            "pg_dump-custom" => {
                let target = opts.database.as_deref().ok_or_else(|| {
                    Error::InvalidInput("restoring one database needs --database".into())
                })?;
                validate_name(target)?;
                if opts.create_database {
                    let sql = format!("CREATE DATABASE {}", quote_ident(target));
                    self.psql(self.maintenance_db(), &["-c", &sql])
                        .output(None)?;
                }
                let mut args: Vec<OsString> = vec![
                    "-d".into(),
                    target.into(),
                    "--exit-on-error".into(),
                    "--single-transaction".into(),
                ];
                if opts.no_owner {
                    args.extend(["--no-owner".into(), "--no-privileges".into()]);
                }
                self.inv("pg_restore", args).feed(|w| feed(w))
            }
            "pg_dumpall-sql" => {
                // A cluster dump recreates roles and databases; existing ones produce
                // "already exists" errors that psql reports and skips (as with any
                // pg_dumpall restore into a non-empty cluster).
                let args: Vec<OsString> = vec![
                    "-X".into(),
                    "-q".into(),
                    "-d".into(),
                    self.maintenance_db().into(),
                ];
                self.inv("psql", args).feed(|w| feed(w))
            }
            other => Err(Error::InvalidInput(format!(
                "unknown PostgreSQL dump format {other:?}"
            ))),
        }
    }

    fn query_value(&self, database: &str, sql: &str) -> Result<String> {
        validate_name(database)?;
        let out = self.psql(database, &["-c", sql]).output(None)?;
        Ok(out
            .lines()
            .next()
            .unwrap_or("")
            .split(SEP)
            .next()
            .unwrap_or("")
            .to_string())
    }

    fn row_counts(&self, database: &str) -> Result<BTreeMap<String, u64>> {
        validate_name(database)?;
        let out = self
            .psql(database, &[])
            .output(Some(&format!("{COUNT_TABLES_SQL}\n")))?;
        let lines: Vec<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        parse_counts(&lines)
    }

    fn database_exists(&self, database: &str) -> Result<bool> {
        validate_name(database)?;
        let sql = format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            super::sql_string(database, false)
        );
        let n = self.query_value(self.maintenance_db(), &sql)?;
        Ok(n.trim() != "0")
    }

    fn drop_database(&self, database: &str) -> Result<()> {
        validate_name(database)?;
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(database)
        );
        self.psql(self.maintenance_db(), &["-c", &sql])
            .output(None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn count_lines_parse() {
        let lines = vec![format!("public.a{SEP}3"), format!("s.\"b|c\"{SEP}0")];
        let c = parse_counts(&lines).unwrap();
        assert_eq!(c["public.a"], 3);
        assert_eq!(c["s.\"b|c\""], 0);
        assert!(parse_counts(&["junk".to_string()]).is_err());
    }

    #[test]
    fn password_goes_to_the_environment_only() {
        let pg = Postgres::new(Connection {
            host: Some("db".into()),
            port: Some(5433),
            user: Some("u".into()),
            password: Some("s3cr3t-pw".into()),
            dump_args: Vec::new(),
        });
        let inv = pg.psql("app", &[]);
        assert!(
            inv.args
                .iter()
                .all(|a| !a.to_string_lossy().contains("s3cr3t-pw"))
        );
        assert!(
            inv.env
                .iter()
                .any(|(k, v)| k == "PGPASSWORD" && v == "s3cr3t-pw")
        );
        assert!(inv.args.contains(&OsString::from("-w")));
    }
}

//! MariaDB/MySQL: `mariadb-dump --single-transaction --routines --events` (falling back to
//! `mysqldump`), `mariadb` (or `mysql`) to restore and query.
//!
//! Consistency of the row counts: `--single-transaction` gives the dump one consistent
//! InnoDB snapshot, but that snapshot cannot be shared with another session (there is no
//! equivalent of PostgreSQL's exported snapshots). Counting in a separate transaction would
//! only be "close to" the dump under concurrent writes. So the rows are counted from the
//! dump stream itself as it passes (each top-level tuple of each `INSERT`, see
//! `counting.rs`): the counts are exactly the rows the dump holds, which is what a restore
//! will produce. Non-transactional tables (MyISAM, Aria) are dumped without a consistent
//! snapshot by any mysqldump; the counts still match the dump.

use std::{collections::BTreeMap, ffi::OsString, io::Write};

use super::{
    Connection, CountMethod, DatabaseAdapter, DumpMetadata, DumpScope, DumpStream, Engine, Error,
    METADATA_FORMAT, RestoreOptions, Result,
    client::{Invocation, spawn_error},
    counting::{CountingReader, MysqlCounter},
    validate_name,
};
use crate::repo::CommandStream;

/// The MariaDB/MySQL adapter.
#[derive(Clone, Debug)]
pub struct Mysql {
    conn: Connection,
    client: String,
    dumper: String,
}

/// Quotes an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal.
fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn first_on_path(candidates: &[&str]) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for c in candidates {
        if std::env::split_paths(&path).any(|d| d.join(c).is_file()) {
            return (*c).to_string();
        }
    }
    candidates[0].to_string()
}

impl Mysql {
    /// An adapter for a server; uses the `mariadb*` clients when installed, else `mysql*`.
    pub fn new(conn: Connection) -> Self {
        Self {
            conn,
            client: first_on_path(&["mariadb", "mysql"]),
            dumper: first_on_path(&["mariadb-dump", "mysqldump"]),
        }
    }

    fn conn_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if let Some(h) = &self.conn.host {
            a.push(format!("--host={h}").into());
            // A host name means TCP even for "localhost" (which the clients map to a socket).
            a.push("--protocol=TCP".into());
        }
        if let Some(p) = self.conn.port {
            a.push(format!("--port={p}").into());
        }
        if let Some(u) = &self.conn.user {
            a.push(format!("--user={u}").into());
        }
        a
    }

    fn env(&self) -> Vec<(String, String)> {
        self.conn
            .password
            .as_ref()
            .map(|p| vec![("MYSQL_PWD".to_string(), p.expose().to_string())])
            .unwrap_or_default()
    }

    fn inv(&self, program: &str, mut args: Vec<OsString>) -> Invocation {
        let mut all = self.conn_args();
        if program == self.client {
            // Only the interactive client has this option; the dumper connects once, right
            // after the version query has proven the server answers.
            all.push("--connect-timeout=10".into());
        }
        all.append(&mut args);
        Invocation {
            engine: Engine::Mysql,
            program: program.to_string(),
            args: all,
            env: self.env(),
        }
    }

    /// `mariadb --batch --skip-column-names [db] -e sql`.
    fn query(&self, database: Option<&str>, sql: &str) -> Result<String> {
        let mut args: Vec<OsString> = vec!["--batch".into(), "--skip-column-names".into()];
        if let Some(db) = database {
            args.push(format!("--database={db}").into());
        }
        args.push("--execute".into());
        args.push(sql.into());
        self.inv(&self.client, args).output(None)
    }
}

impl DatabaseAdapter for Mysql {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn server_version(&self) -> Result<String> {
        Ok(self.query(None, "SELECT VERSION()")?.trim().to_string())
    }

    fn start_dump(&self, scope: &DumpScope) -> Result<DumpStream> {
        let started = jiff::Timestamp::now();
        // Connect once up front: refused connections and bad passwords surface here, with
        // their own exit codes, before any snapshot work starts.
        let version = self.server_version()?;
        let mut args: Vec<OsString> = [
            "--single-transaction",
            "--routines",
            "--events",
            "--triggers",
            "--hex-blob",
            "--default-character-set=utf8mb4",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.extend(self.conn.dump_args.iter().map(OsString::from));
        let (default_db, file_name, label) = match scope {
            DumpScope::Database(db) => {
                validate_name(db)?;
                // No --databases: the dump then carries no CREATE DATABASE / USE, so it can
                // be restored into a database of any name. (validate_name keeps a name from
                // being read as an option.)
                args.push(db.into());
                (db.clone(), format!("{db}.sql"), db.clone())
            }
            DumpScope::All => {
                args.push("--all-databases".into());
                (
                    String::new(),
                    "all-databases.sql".to_string(),
                    "all".to_string(),
                )
            }
        };
        let command: Vec<String> = std::iter::once(self.dumper.clone())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        let inv = self.inv(&self.dumper, args);
        let stream = CommandStream::from_command(&self.dumper, inv.command())
            .map_err(|e| spawn_error(&self.dumper, &e))?;
        let (reader, handle) =
            CountingReader::new(stream, Box::new(MysqlCounter::new(&default_db)));
        let dump_file = format!("{}/{file_name}", super::DUMP_DIR);
        Ok(DumpStream {
            reader: Box::new(reader),
            file_name,
            finish: Box::new(move || {
                Ok(DumpMetadata {
                    format: METADATA_FORMAT.into(),
                    engine: Engine::Mysql,
                    server_version: version,
                    scope: label,
                    dump_file,
                    dump_format: "mysqldump-sql".into(),
                    dump_command: command,
                    row_counts: handle.counts(),
                    row_counts_method: CountMethod::CountedFromDump,
                    dump_bytes: handle.bytes(),
                    started_at: started,
                    finished_at: jiff::Timestamp::now(),
                })
            }),
        })
    }

    fn restore(
        &self,
        meta: &DumpMetadata,
        opts: &RestoreOptions,
        feed: &mut dyn FnMut(&mut dyn Write) -> std::result::Result<(), crate::repo::Error>,
    ) -> Result<()> {
        if meta.dump_format != "mysqldump-sql" {
            return Err(Error::InvalidInput(format!(
                "unknown MySQL dump format {:?}",
                meta.dump_format
            )));
        }
        let mut args: Vec<OsString> = Vec::new();
        if meta.scope != "all" {
            let target = opts.database.as_deref().ok_or_else(|| {
                Error::InvalidInput("restoring one database needs --database".into())
            })?;
            validate_name(target)?;
            if opts.create_database {
                self.query(None, &format!("CREATE DATABASE {}", quote_ident(target)))?;
            }
            args.push(format!("--database={target}").into());
        }
        self.inv(&self.client, args).feed(|w| feed(w))
    }

    fn database_exists(&self, database: &str) -> Result<bool> {
        validate_name(database)?;
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            super::sql_string(database, true)
        );
        Ok(self.query(None, &sql)?.trim() != "0")
    }

    fn query_value(&self, database: &str, sql: &str) -> Result<String> {
        validate_name(database)?;
        let out = self.query(Some(database), sql)?;
        Ok(out
            .lines()
            .next()
            .unwrap_or("")
            .split('\t')
            .next()
            .unwrap_or("")
            .to_string())
    }

    fn row_counts(&self, database: &str) -> Result<BTreeMap<String, u64>> {
        validate_name(database)?;
        let tables = self.query(
            None,
            &format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} \
                 AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                quote_str(database)
            ),
        )?;
        let tables: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
        if tables.is_empty() {
            return Ok(BTreeMap::new());
        }
        let sql = tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT {}, COUNT(*) FROM {}.{}",
                    quote_str(t),
                    quote_ident(database),
                    quote_ident(t)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let out = self.query(None, &sql)?;
        let mut counts = BTreeMap::new();
        for line in out.lines().filter(|l| !l.is_empty()) {
            let (name, n) = line.rsplit_once('\t').ok_or_else(|| Error::Database {
                engine: Engine::Mysql,
                detail: format!("unexpected count line {line:?}"),
            })?;
            let n = n.parse::<u64>().map_err(|_| Error::Database {
                engine: Engine::Mysql,
                detail: format!("unexpected count {n:?}"),
            })?;
            counts.insert(name.to_string(), n);
        }
        Ok(counts)
    }

    fn drop_database(&self, database: &str) -> Result<()> {
        validate_name(database)?;
        self.query(
            None,
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(database)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_str("it's \\"), "'it''s \\\\'");
    }

    #[test]
    fn password_goes_to_the_environment_only() {
        let my = Mysql::new(Connection {
            host: Some("127.0.0.1".into()),
            port: Some(3306),
            user: Some("root".into()),
            password: Some("s3cr3t-pw".into()),
            dump_args: Vec::new(),
        });
        let inv = my.inv("mariadb", vec![]);
        assert!(
            inv.args
                .iter()
                .all(|a| !a.to_string_lossy().contains("s3cr3t-pw"))
        );
        assert_eq!(
            inv.env,
            vec![("MYSQL_PWD".to_string(), "s3cr3t-pw".to_string())]
        );
        assert!(inv.args.contains(&OsString::from("--protocol=TCP")));
    }
}

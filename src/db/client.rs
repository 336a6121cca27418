//! Running the database client programs (psql, pg_dump, mariadb, ...) as subprocesses:
//! passwords go through the environment only, stderr is captured and classified into
//! "unreachable", "authentication" and "other" so errors name the cause.

use std::{
    ffi::OsString,
    io::{Read, Write},
    process::{Command, Stdio},
};

use super::{Engine, Error};
use crate::repo::stream::{StderrTail, describe_status};

/// One client invocation's settings.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Which engine (for error classification).
    pub engine: Engine,
    /// Program name.
    pub program: String,
    /// Arguments (never a password).
    pub args: Vec<OsString>,
    /// Environment additions (passwords live here).
    pub env: Vec<(String, String)>,
}

impl Invocation {
    /// A prepared `Command` with stdin/stdout/stderr as given.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs to completion with optional stdin text; returns stdout.
    pub fn output(&self, stdin: Option<&str>) -> Result<String, Error> {
        let mut cmd = self.command();
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&self.program, &e))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let text = text.to_string();
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        let out = child.wait_with_output().map_err(|e| Error::Database {
            engine: self.engine,
            detail: format!("waiting for {}: {e}", self.program),
        })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = one_line(&String::from_utf8_lossy(&out.stderr));
        let (status, _) = describe_status(&out.status);
        Err(classify(
            self.engine,
            &format!("{} {status}: {stderr}", self.program),
        ))
    }

    /// Runs with `input` streamed to stdin (a restore): `feed` writes into the pipe; the
    /// program's failure wins over a broken pipe when both happen.
    pub fn feed<F>(&self, feed: F) -> Result<(), Error>
    where
        F: FnOnce(&mut dyn Write) -> Result<(), crate::repo::Error>,
    {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&self.program, &e))?;
        let stderr = child.stderr.take();
        let (tail, thread) = StderrTail::drain(stderr.map_or_else(
            || Box::new(std::io::empty()) as Box<dyn Read + Send>,
            |s| Box::new(s) as Box<dyn Read + Send>,
        ));
        let fed = match child.stdin.take() {
            Some(mut stdin) => {
                let r = feed(&mut stdin);
                drop(stdin);
                r
            }
            None => Ok(()),
        };
        let status = child.wait().map_err(|e| Error::Database {
            engine: self.engine,
            detail: format!("waiting for {}: {e}", self.program),
        })?;
        let _ = thread.join();
        if !status.success() {
            let (status, _) = describe_status(&status);
            return Err(classify(
                self.engine,
                &format!("{} {status}: {}", self.program, tail.text()),
            ));
        }
        fed.map_err(Error::Repo)
    }
}

/// Spawn failures: a missing program is its own category.
pub fn spawn_error(program: &str, e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::ToolMissing {
            program: program.to_string(),
        }
    } else {
        Error::Database {
            engine: Engine::Postgres,
            detail: format!("cannot start {program}: {e}"),
        }
    }
}

/// Collapses multi-line client output into one line.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Sorts a client error message into a category by the server's and client's own wording.
pub fn classify(engine: Engine, detail: &str) -> Error {
    let d = detail.to_ascii_lowercase();
    let unreachable = [
        "connection refused",
        "could not connect to server",
        "can't connect to",
        "timeout expired",
        "could not translate host name",
        "no route to host",
        "network is unreachable",
        "connection timed out",
        "unknown mysql server host",
        "unknown server host",
        "lost connection to server at 'handshake",
        "is the server running",
    ];
    let auth = [
        "password authentication failed",
        "no password supplied",
        "access denied for user",
        "authentication failed",
        "pg_hba.conf rejects",
        "no pg_hba.conf entry",
    ];
    if unreachable.iter().any(|p| d.contains(p)) {
        Error::Unreachable {
            engine,
            detail: detail.to_string(),
        }
    } else if auth.iter().any(|p| d.contains(p)) {
        Error::Auth {
            engine,
            detail: detail.to_string(),
        }
    } else {
        Error::Database {
            engine,
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases = [
            (
                Engine::Postgres,
                "psql: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
                "DatabaseUnreachable",
            ),
            (
                Engine::Postgres,
                "FATAL:  password authentication failed for user \"x\"",
                "DatabaseAuthFailed",
            ),
            (
                Engine::Postgres,
                "FATAL:  database \"nope\" does not exist",
                "DatabaseError",
            ),
            (
                Engine::Mysql,
                "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)",
                "DatabaseUnreachable",
            ),
            (
                Engine::Mysql,
                "ERROR 1045 (28000): Access denied for user 'x'@'localhost' (using password: YES)",
                "DatabaseAuthFailed",
            ),
            (
                Engine::Mysql,
                "ERROR 1049 (42000): Unknown database 'nope'",
                "DatabaseError",
            ),
        ];
        for (engine, msg, want) in cases {
            assert_eq!(classify(engine, msg).category(), want, "{msg}");
        }
    }

    #[test]
    fn missing_program_is_tool_missing() {
        let inv = Invocation {
            engine: Engine::Postgres,
            program: "/nonexistent/psql".into(),
            args: vec![],
            env: vec![],
        };
        assert_eq!(inv.output(None).unwrap_err().category(), "ToolMissing");
    }

    #[test]
    fn failing_program_output_is_classified_with_stderr() {
        let inv = Invocation {
            engine: Engine::Mysql,
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "echo \"ERROR 1045 (28000): Access denied for user 'u'\" >&2; exit 1".into(),
            ],
            env: vec![],
        };
        let err = inv.output(None).unwrap_err();
        assert_eq!(err.category(), "DatabaseAuthFailed");
        assert!(err.to_string().contains("exited with code 1"), "{err}");
    }
}

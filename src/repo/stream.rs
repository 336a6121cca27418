//! Commands whose stdout is backed up as a stream. [`CommandStream`] is a reader over the
//! child's stdout that, at end of stream, waits for the child and turns a non-zero exit into
//! a read error carrying the exit status and the tail of stderr. The facade treats any read
//! error as "do not commit the snapshot".

use std::{
    collections::VecDeque,
    ffi::OsString,
    io::{self, Read},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

/// How much of the command's stderr is kept for the error message.
const STDERR_TAIL: usize = 2048;

/// The command failed: it exited non-zero or was killed by a signal.
#[derive(Debug, Clone, thiserror::Error)]
#[error("command `{command}` {status}{}", if stderr_tail.is_empty() { String::new() } else { format!("; stderr: {stderr_tail}") })]
pub struct CommandFailed {
    /// The program name (arguments are left out: they may hold connection details).
    pub command: String,
    /// "exited with code N" or "was killed by signal N".
    pub status: String,
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The last lines of stderr, on one line.
    pub stderr_tail: String,
}

/// Describes an exit status for messages.
pub(crate) fn describe_status(status: &ExitStatus) -> (String, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => (format!("exited with code {c}"), Some(c)),
        (None, Some(s)) => (format!("was killed by signal {s}"), None),
        _ => ("ended abnormally".to_string(), None),
    }
}

/// Keeps the last bytes written to a command's stderr, drained on a thread so a chatty
/// command never blocks on a full pipe.
#[derive(Debug, Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    /// Starts draining `pipe`.
    pub(crate) fn drain(pipe: impl Read + Send + 'static) -> (Self, JoinHandle<()>) {
        let tail = Self::default();
        let buf = tail.0.clone();
        let handle = std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut chunk = [0u8; 4096];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                        b.extend(&chunk[..n]);
                        let excess = b.len().saturating_sub(STDERR_TAIL);
                        b.drain(..excess);
                    }
                }
            }
        });
        (tail, handle)
    }

    /// The tail as one trimmed line (newlines become ` | `).
    pub(crate) fn text(&self) -> String {
        let b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (a, c) = b.as_slices();
        let s = String::from_utf8_lossy(&[a, c].concat()).into_owned();
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// The stdout of a running command as a reader that fails at EOF unless the command
/// exited 0. Dropping it early kills the command.
#[derive(Debug)]
pub struct CommandStream {
    name: String,
    child: Child,
    stdout: ChildStdout,
    stderr: StderrTail,
    stderr_thread: Option<JoinHandle<()>>,
    finished: bool,
}

impl CommandStream {
    /// Spawns `program args...` with extra environment variables (secrets go here, never
    /// into arguments). Stdin is closed.
    pub fn spawn(program: &str, args: &[OsString], env: &[(String, String)]) -> io::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::from_command(program, cmd)
    }

    /// Spawns a prepared command (stdout and stderr are replaced by pipes).
    pub fn from_command(name: &str, mut cmd: Command) -> io::Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{name}`: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr pipe"))?;
        let (tail, thread) = StderrTail::drain(stderr);
        Ok(Self {
            name: name.to_string(),
            child,
            stdout,
            stderr: tail,
            stderr_thread: Some(thread),
            finished: false,
        })
    }

    /// The stderr collected so far.
    pub fn stderr_tail(&self) -> String {
        self.stderr.text()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        let status = self.child.wait()?;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        if status.success() {
            return Ok(());
        }
        let (status, code) = describe_status(&status);
        Err(io::Error::other(CommandFailed {
            command: self.name.clone(),
            status,
            code,
            stderr_tail: self.stderr.text(),
        }))
    }
}

impl Read for CommandStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        match self.stdout.read(buf) {
            Ok(0) if !buf.is_empty() => self.finish().map(|()| 0),
            other => other,
        }
    }
}

impl Drop for CommandStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandStream {
        CommandStream::spawn("sh", &["-c".into(), script.into()], &[]).unwrap()
    }

    #[test]
    fn success_reads_everything() {
        let mut out = String::new();
        sh("printf hello; echo noise >&2")
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
    }

    #[test]
    fn failure_is_a_read_error_with_code_and_stderr() {
        let mut out = Vec::new();
        let err = sh("printf partial; echo 'first line' >&2; echo 'boom: disk full' >&2; exit 3")
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(out, b"partial");
        let failed = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<CommandFailed>())
            .expect("a CommandFailed inside");
        assert_eq!(failed.code, Some(3));
        assert_eq!(failed.command, "sh");
        assert!(
            failed.stderr_tail.ends_with("boom: disk full"),
            "{}",
            failed.stderr_tail
        );
        assert!(err.to_string().contains("exited with code 3"), "{err}");
    }

    #[test]
    fn killed_by_signal_is_reported() {
        let mut out = Vec::new();
        let err = sh("kill -9 $$").read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("killed by signal 9"), "{err}");
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let mut out = Vec::new();
        let err = sh(
            "i=0; while [ $i -lt 500 ]; do echo \"line $i of noise\" >&2; i=$((i+1)); done; exit 1",
        )
        .read_to_end(&mut out)
        .unwrap_err();
        let failed = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<CommandFailed>())
            .unwrap();
        assert!(failed.stderr_tail.len() <= STDERR_TAIL + 512);
        assert!(failed.stderr_tail.ends_with("line 499 of noise"));
    }

    #[test]
    fn missing_program_fails_to_spawn() {
        let err = CommandStream::spawn("/nonexistent/prog", &[], &[]).unwrap_err();
        assert!(err.to_string().contains("cannot start"), "{err}");
    }
}

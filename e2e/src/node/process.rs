//! Container processes from the agent's side: starting a shim for a container, waiting for
//! its exit (as our child, or adopted after an agent restart through a pidfd), signalling
//! the container's process group, and reading the records the shim leaves behind.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::shim::{ExitRecord, ShimSpec};

/// Errors starting a container process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("writing shim files under {path}: {source}")]
    Files {
        path: String,
        source: std::io::Error,
    },
    #[error("spawning the container shim: {0}")]
    Spawn(std::io::Error),
}

/// The files of one container under `<state>/pods/<uid>/`.
#[derive(Debug, Clone)]
pub struct ContainerFiles {
    pub spec: PathBuf,
    pub pid: PathBuf,
    pub shim_pid: PathBuf,
    pub exit: PathBuf,
    pub log: PathBuf,
}

impl ContainerFiles {
    /// Paths for container `name` in pod directory `pod_dir`.
    pub fn new(pod_dir: &Path, name: &str) -> Self {
        ContainerFiles {
            spec: pod_dir.join(format!("{name}.spec.json")),
            pid: pod_dir.join(format!("{name}.pid")),
            shim_pid: pod_dir.join(format!("{name}.shimpid")),
            exit: pod_dir.join(format!("{name}.exit")),
            log: pod_dir.join("logs").join(format!("{name}.log")),
        }
    }
}

/// A running (or finished) container as the agent tracks it.
#[derive(Debug)]
pub struct Handle {
    pub shim_pid: i32,
    pub files: ContainerFiles,
}

/// Starts the shim for a container. The log file is appended to across restarts.
pub async fn start(files: &ContainerFiles, spec: &ShimSpec) -> Result<Handle, ProcessError> {
    let io = |path: &Path| {
        let p = path.display().to_string();
        move |source| ProcessError::Files { path: p, source }
    };
    let _ = std::fs::remove_file(&files.exit);
    if let Some(dir) = files.log.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let body = serde_json::to_vec_pretty(spec).expect("shim spec serialises");
    std::fs::write(&files.spec, body).map_err(io(&files.spec))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.log)
        .map_err(io(&files.log))?;
    let log2 = log.try_clone().map_err(io(&files.log))?;
    // NB: /proc/self/exe keeps working when the agent binary is rebuilt while running.
    let mut cmd = tokio::process::Command::new("/proc/self/exe");
    cmd.arg("shim")
        .arg(&files.spec)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(ProcessError::Spawn)?;
    let shim_pid = child.id().unwrap_or(0) as i32;
    std::fs::write(&files.shim_pid, shim_pid.to_string()).map_err(io(&files.shim_pid))?;
    // The shim is reaped by a detached task so it never lingers as a zombie; its exit is
    // observed through the pidfd in `wait`, the same path used for adopted shims.
    tokio::spawn(async move {
        let mut child = child;
        let _ = child.wait().await;
    });
    Ok(Handle {
        shim_pid,
        files: files.clone(),
    })
}

/// Whether a shim from a previous run is still alive (pid exists and runs our binary).
pub fn shim_alive(files: &ContainerFiles) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(&files.shim_pid)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let spec = files.spec.display().to_string();
    let text = String::from_utf8_lossy(&cmdline);
    (text.contains("shim") && text.contains(&spec)).then_some(pid)
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the returned fd is ours to own.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the shim exits, then returns the exit record it wrote.
pub async fn wait(handle_shim_pid: i32, files: &ContainerFiles) -> ExitRecord {
    // SAFETY: the AsyncFd owns the pidfd, so it stays open for as long as it is registered.
    let registered = pidfd_open(handle_shim_pid).ok().and_then(|fd| unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
    });
    if let Some(afd) = registered {
        let _ = afd.readable().await;
    } else {
        // The shim is already gone (or pidfd is unavailable): fall back to a slow check.
        while Path::new(&format!("/proc/{handle_shim_pid}")).exists() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    read_exit(files).unwrap_or_else(|| ExitRecord {
        pid: 0,
        exit_code: 137,
        signal: None,
        finished_at: jiff::Timestamp::now().to_string(),
        start_error: Some("the container shim ended without recording an exit status".into()),
    })
}

/// The exit record of a finished container, if any.
pub fn read_exit(files: &ContainerFiles) -> Option<ExitRecord> {
    let bytes = std::fs::read(&files.exit).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The container's main PID (its process-group id), once the shim has forked it.
pub async fn container_pid(files: &ContainerFiles) -> Option<i32> {
    for _ in 0..20 {
        if let Some(pid) = std::fs::read_to_string(&files.pid)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(pid);
        }
        if files.exit.exists() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Sends a signal to the container's whole process group.
pub async fn signal(files: &ContainerFiles, sig: Signal) {
    if let Some(pid) = container_pid(files).await
        && kill(Pid::from_raw(-pid), sig).is_err()
    {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Stops a container: SIGTERM, then SIGKILL after `grace`; returns when the shim is gone.
pub async fn stop(shim_pid: i32, files: &ContainerFiles, grace: Duration) -> ExitRecord {
    signal(files, Signal::SIGTERM).await;
    let waited = tokio::time::timeout(grace, wait(shim_pid, files)).await;
    match waited {
        Ok(rec) => rec,
        Err(_) => {
            signal(files, Signal::SIGKILL).await;
            wait(shim_pid, files).await
        }
    }
}

/// Reads the last `max_lines` lines / `max_bytes` bytes of a log (FallbackToLogsOnError).
pub fn log_tail(path: &Path, max_lines: usize, max_bytes: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max_bytes);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(max_lines);
    lines[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&p, 2, 1000), "c\nd");
        assert_eq!(log_tail(&p, 80, 4), "c\nd");
        assert_eq!(log_tail(&dir.path().join("none"), 2, 10), "");
    }
}

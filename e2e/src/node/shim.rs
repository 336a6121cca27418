//! The container shim: a short program (`lifeboat-node-agent shim SPEC`) that builds a
//! container's private mount and UTS namespace, forks the container process, waits for it
//! and records its exit status in a file. It outlives the agent, so a restarted agent can
//! adopt running containers and still learn their exit codes.
//!
//! Invariants: the shim is single-threaded (called before any runtime starts), ignores
//! termination signals (the agent signals the container's process group, never the shim),
//! and writes `<exit_file>` atomically before removing `<pid_file>`.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid, fork};
use serde::{Deserialize, Serialize};

/// One mount in the container's namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountSpec {
    /// Host path to bind; `None` mounts a fresh tmpfs.
    pub source: Option<PathBuf>,
    /// Path inside the container (the host's file system view).
    pub target: PathBuf,
    pub read_only: bool,
    /// The source is a file, so the mount point must be a file too.
    pub file: bool,
}

/// Everything the shim needs to start one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    pub hostname: String,
    pub mounts: Vec<MountSpec>,
    pub pid_file: PathBuf,
    pub exit_file: PathBuf,
    /// Append-only list of mount-point paths the shim had to create (removed on shutdown).
    pub created_registry: PathBuf,
}

/// What the shim records when the container process ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub pid: i32,
    /// Exit code, or 128 + signal number when killed by a signal (as the kubelet shows).
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: String,
    /// Set when the container could not be started at all (exec or mount failure).
    pub start_error: Option<String>,
}

/// Sorts mounts so parents are mounted before anything nested inside them.
pub fn order_mounts(mounts: &mut [MountSpec]) {
    mounts.sort_by_key(|m| m.target.components().count());
}

fn record_created(registry: &Path, path: &Path) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(registry)
    {
        let _ = writeln!(f, "{}", path.display());
    }
}

/// Creates a missing mount point (directories, or an empty file), recording what it made.
fn ensure_target(m: &MountSpec, registry: &Path) -> std::io::Result<()> {
    if m.target.exists() {
        return Ok(());
    }
    let parent_dir = if m.file {
        m.target.parent().map(Path::to_path_buf)
    } else {
        Some(m.target.clone())
    };
    if let Some(dir) = parent_dir {
        let mut missing = Vec::new();
        let mut cur = dir.as_path();
        while !cur.exists() {
            missing.push(cur.to_path_buf());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        for d in missing.iter().rev() {
            // Pods start in parallel on this one host: another pod's shim may create the
            // same mount point (say /volumes/data) between our check and our create.
            match std::fs::create_dir(d) {
                Ok(()) => record_created(registry, d),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    if m.file {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(&m.target)?;
        record_created(registry, &m.target);
    }
    Ok(())
}

fn setup_namespace(spec: &ShimSpec) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        .map_err(|e| format!("unshare(CLONE_NEWNS|CLONE_NEWUTS): {e}"))?;
    // NB: without private propagation the bind mounts below would appear on the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    if !spec.hostname.is_empty() {
        let _ = nix::unistd::sethostname(&spec.hostname);
    }
    Ok(())
}

fn do_mounts(spec: &ShimSpec) -> Result<(), String> {
    // Every bind source is opened before the first mount: a mount (the private /tmp) can
    // hide a later source beneath it (a checkout under /tmp, bound back into view), and
    // binding from the open descriptor reaches the original directory regardless.
    let mut sources = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        sources.push(match &m.source {
            Some(src) => Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(OFlag::O_PATH.bits())
                    .open(src)
                    .map_err(|e| format!("opening mount source {}: {e}", src.display()))?,
            ),
            None => None,
        });
    }
    for (m, opened) in spec.mounts.iter().zip(&sources) {
        let via_fd = opened
            .as_ref()
            .map(|f| PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())));
        ensure_target(m, &spec.created_registry)
            .map_err(|e| format!("creating mount point {}: {e}", m.target.display()))?;
        // Another agent on this machine may remove a shared mount point (say
        // /dev/termination-log) between our check and the mount: recreate it once.
        if !m.target.exists() {
            ensure_target(m, &spec.created_registry)
                .map_err(|e| format!("creating mount point {}: {e}", m.target.display()))?;
        }
        match (&m.source, &via_fd) {
            (Some(src), Some(fd_path)) => mount(
                Some(fd_path.as_path()),
                m.target.as_path(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| {
                format!(
                    "bind-mounting {} on {}: {e}",
                    src.display(),
                    m.target.display()
                )
            })?,
            _ => mount(
                Some("tmpfs"),
                m.target.as_path(),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=1777"),
            )
            .map_err(|e| format!("mounting tmpfs on {}: {e}", m.target.display()))?,
        }
        if m.read_only {
            mount(
                None::<&str>,
                m.target.as_path(),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| format!("remounting {} read-only: {e}", m.target.display()))?;
        }
    }
    Ok(())
}

fn open_path(path: &Path, flags: OFlag) -> Result<OwnedFd, String> {
    nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| format!("opening {}: {e}", path.display()))
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens every host path the shim needs after mounting (mount sources, the pod directory,
/// the registry) and rewrites the spec to reach them through `/proc/self/fd`.
fn pin_host_paths(spec: &mut ShimSpec) -> Result<Vec<OwnedFd>, String> {
    let mut held = Vec::new();
    let dir = spec
        .pid_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| "/".into());
    let dir_fd = open_path(&dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let via_dir = |p: &Path| fd_path(&dir_fd).join(p.file_name().unwrap_or_default());
    spec.pid_file = via_dir(&spec.pid_file);
    spec.exit_file = via_dir(&spec.exit_file);
    held.push(dir_fd);
    let reg = open_path(
        &spec.created_registry,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
    )?;
    spec.created_registry = fd_path(&reg);
    held.push(reg);
    for m in spec.mounts.iter_mut() {
        if let Some(src) = &m.source {
            let fd = open_path(src, OFlag::O_PATH)?;
            m.source = Some(fd_path(&fd));
            held.push(fd);
        }
    }
    Ok(held)
}

fn write_exit(spec: &ShimSpec, rec: &ExitRecord) {
    let tmp = spec.exit_file.with_extension("exit.tmp");
    if let Ok(text) = serde_json::to_vec(rec)
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, &spec.exit_file);
    }
    let _ = std::fs::remove_file(&spec.pid_file);
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

fn to_cstrings(items: impl Iterator<Item = String>) -> Result<Vec<CString>, String> {
    items
        .map(|s| CString::new(s).map_err(|_| "argument or env contains a NUL byte".to_string()))
        .collect()
}

/// Entry point of `lifeboat-node-agent shim SPEC`: never returns.
pub fn main(spec_path: &Path) -> ! {
    let mut spec: ShimSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "lifeboat-node-agent shim: reading {}: {e}",
                spec_path.display()
            );
            std::process::exit(2);
        }
    };
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: installing SIG_IGN is async-signal-safe and the shim has no handlers.
        unsafe {
            let _ = signal(sig, SigHandler::SigIgn);
        }
    }
    // NB: a volume mounted over a directory that holds the state dir (say /work) would
    // hide the remaining sources and our pid/exit files inside the new namespace, so
    // everything on the host side is opened first and reached through /proc/self/fd.
    let original = spec.clone();
    // NB: bind sources must be opened inside the new namespace: the kernel refuses to
    // bind a mount that belongs to another mount namespace (EINVAL).
    let held = setup_namespace(&spec).and_then(|_| pin_host_paths(&mut spec));
    let fail = |msg: String| -> ! {
        eprintln!("lifeboat-node-agent: container failed to start: {msg}");
        write_exit(
            if held.is_ok() { &spec } else { &original },
            &ExitRecord {
                pid: 0,
                exit_code: 128,
                signal: None,
                finished_at: now_rfc3339(),
                start_error: Some(msg),
            },
        );
        std::process::exit(0);
    };
    if let Err(e) = &held {
        fail(e.clone());
    }
    if let Err(e) = do_mounts(&spec) {
        fail(e);
    }
    let argv = match to_cstrings(spec.argv.iter().cloned()) {
        Ok(v) if !v.is_empty() => v,
        Ok(_) => fail("empty argv".into()),
        Err(e) => fail(e),
    };
    let envp = match to_cstrings(spec.env.iter().map(|(k, v)| format!("{k}={v}"))) {
        Ok(v) => v,
        Err(e) => fail(e),
    };
    if let Some(dir) = &spec.working_dir
        && !dir.exists()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    // SAFETY: the shim is single-threaded, so fork is safe; the child only calls
    // async-signal-safe functions on prepared data before execve.
    match unsafe { fork() } {
        Err(e) => fail(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            for sig in [
                Signal::SIGTERM,
                Signal::SIGINT,
                Signal::SIGHUP,
                Signal::SIGQUIT,
            ] {
                // SAFETY: restoring default dispositions before exec.
                unsafe {
                    let _ = signal(sig, SigHandler::SigDfl);
                }
            }
            let _ = nix::unistd::setsid();
            if let Some(dir) = &spec.working_dir
                && let Err(e) = nix::unistd::chdir(dir.as_path())
            {
                eprintln!("lifeboat-node-agent: chdir {}: {e}", dir.display());
                std::process::exit(128);
            }
            if spec.uid.is_some() || spec.gid.is_some() {
                let gid = Gid::from_raw(spec.gid.unwrap_or(0));
                let groups: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(*g)).collect();
                if let Err(e) = nix::unistd::setgroups(&groups)
                    .and_then(|_| nix::unistd::setgid(gid))
                    .and_then(|_| nix::unistd::setuid(Uid::from_raw(spec.uid.unwrap_or(0))))
                {
                    eprintln!("lifeboat-node-agent: dropping privileges: {e}");
                    std::process::exit(128);
                }
            }
            let err = nix::unistd::execve(&argv[0], &argv, &envp).unwrap_err();
            eprintln!("lifeboat-node-agent: exec {:?}: {err}", spec.argv[0]);
            std::process::exit(if err == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            });
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = std::fs::write(&spec.pid_file, child.as_raw().to_string());
            let (exit_code, signal) = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break (code, None),
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        break (128 + sig as i32, Some(sig as i32));
                    }
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break (255, None),
                }
            };
            write_exit(
                &spec,
                &ExitRecord {
                    pid: child.as_raw(),
                    exit_code,
                    signal,
                    finished_at: now_rfc3339(),
                    start_error: None,
                },
            );
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_mount_first() {
        let m = |t: &str| MountSpec {
            source: None,
            target: t.into(),
            read_only: false,
            file: false,
        };
        let mut v = vec![m("/data/a/b"), m("/etc/hosts"), m("/data")];
        order_mounts(&mut v);
        assert_eq!(v[0].target, PathBuf::from("/data"));
        assert_eq!(v[2].target, PathBuf::from("/data/a/b"));
    }
}

//! The restore target, reached only through directory handles. A snapshot is input from
//! whoever controls the repository, and a target may already hold entries (a retried
//! restore, `--delete`): no path below the target is ever resolved through a symlink or
//! out of the target. Paths are opened from the target's handle with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), or component by component with
//! `O_NOFOLLOW` where the kernel has no `openat2`; entries are created, replaced and
//! removed relative to their directory's handle (`mkdirat`, `symlinkat`, `mknodat`,
//! `linkat`, `unlinkat`), and metadata is set through the entry's own handle where it
//! has one.

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Component, Path, PathBuf},
    sync::atomic::{AtomicU8, Ordering},
};

use nix::{
    errno::Errno,
    fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, open, openat, openat2},
    sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat, mknodat},
    unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat},
};

/// Whether `openat2` works here: 0 unknown, 1 yes, 2 no (old kernel, or a seccomp
/// filter that refuses it).
static OPENAT2: AtomicU8 = AtomicU8::new(0);

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// The target directory of a restore.
#[derive(Debug)]
pub(crate) struct Target {
    root: OwnedFd,
    path: PathBuf,
}

impl Target {
    /// Creates `path` if needed and opens it. The target path itself is the caller's
    /// choice and may pass through symlinks; nothing below it will.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let root = open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        Ok(Self {
            root,
            path: path.to_path_buf(),
        })
    }

    /// The target's own handle.
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// `rel` below the target, for messages.
    pub(crate) fn display(&self, rel: &Path) -> String {
        self.path.join(rel).display().to_string()
    }

    /// Opens `rel` (plain names only, checked by the caller) below the target without
    /// following any symlink, with `flags` (`O_NOFOLLOW` and `O_CLOEXEC` are added).
    fn resolve(&self, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if rel.as_os_str().is_empty() {
            return openat(self.root.as_fd(), ".", flags, mode).map_err(io_err);
        }
        if OPENAT2.load(Ordering::Relaxed) != 2 {
            let how = OpenHow::new().flags(flags).mode(mode).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            match openat2(self.root.as_fd(), rel, how) {
                Ok(fd) => {
                    OPENAT2.store(1, Ordering::Relaxed);
                    return Ok(fd);
                }
                Err(Errno::ENOSYS) | Err(Errno::EPERM) if OPENAT2.load(Ordering::Relaxed) == 0 => {
                    OPENAT2.store(2, Ordering::Relaxed);
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        // without openat2: one component at a time, never following a symlink
        let comps: Vec<&OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a plain path",
                )),
            })
            .collect::<io::Result<_>>()?;
        let (last, dirs) = comps.split_last().expect("not empty");
        let mut cur: Option<OwnedFd> = None;
        for d in dirs {
            let at = cur.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
            cur = Some(
                openat(
                    at,
                    *d,
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err)?,
            );
        }
        let at = cur.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
        openat(at, *last, flags, mode).map_err(io_err)
    }

    /// Opens the directory `rel`.
    pub(crate) fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.resolve(rel, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())
    }

    /// Opens the regular file `rel` for writing, creating it (mode 0600) if asked.
    pub(crate) fn file(&self, rel: &Path, create: bool) -> io::Result<File> {
        // O_NONBLOCK: a FIFO where a file was expected fails instead of blocking
        let mut flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK;
        if create {
            flags |= OFlag::O_CREAT;
        }
        let fd = self.resolve(rel, flags, Mode::from_bits_truncate(0o600))?;
        let f = File::from(fd);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(f)
    }
}

/// The entry `name` of directory `dir`, not followed.
pub(crate) fn stat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Removes the entry `name` of `dir` whatever it is (a directory with its content),
/// never following a symlink; a missing entry is fine.
pub(crate) fn remove(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let Some(st) = stat(dir, name)? else {
        return Ok(());
    };
    if file_type(&st) == SFlag::S_IFDIR {
        let sub = openat(
            dir,
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        for entry in list(sub.as_fd())? {
            remove(sub.as_fd(), &entry)?;
        }
        unlinkat(dir, name, UnlinkatFlags::RemoveDir).map_err(io_err)
    } else {
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(io_err)
    }
}

/// The names in directory `dir` (without `.` and `..`).
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let fd = openat(
        dir,
        ".",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)?;
    let mut d = nix::dir::Dir::from_fd(fd).map_err(io_err)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io_err)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// Makes `name` in `dir` a directory: kept if it is one, created (mode 0700 until its
/// metadata is set) if missing, anything else in the way is removed first.
pub(crate) fn mkdir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => {
            if stat(dir, name)?.is_some_and(|st| file_type(&st) == SFlag::S_IFDIR) {
                return Ok(());
            }
            remove(dir, name)?;
            mkdirat(dir, name, Mode::from_bits_truncate(0o700)).map_err(io_err)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Makes `name` in `dir` a symlink to `to` (replacing what is there).
pub(crate) fn symlink(dir: BorrowedFd<'_>, name: &OsStr, to: &OsStr) -> io::Result<()> {
    remove(dir, name)?;
    symlinkat(to, dir, name).map_err(io_err)
}

/// Makes `name` in `dir` a special file (replacing what is there).
pub(crate) fn mknod(dir: BorrowedFd<'_>, name: &OsStr, kind: SFlag, dev: u64) -> io::Result<()> {
    remove(dir, name)?;
    mknodat(dir, name, kind, Mode::from_bits_truncate(0o600), dev).map_err(io_err)
}

/// Makes `name` in `dir` a hard link to `from_name` in `from_dir` (replacing what is
/// there); the link's source is not followed if it is a symlink.
pub(crate) fn hard_link(
    from_dir: BorrowedFd<'_>,
    from_name: &OsStr,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> io::Result<()> {
    remove(dir, name)?;
    linkat(from_dir, from_name, dir, name, AtFlags::empty()).map_err(io_err)
}

/// Prepares `name` in `dir` to be written as a regular file: anything else in the way,
/// and a file with other hard links (writing into it would change files elsewhere), is
/// removed.
pub(crate) fn clear_for_file(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match stat(dir, name)? {
        Some(st) if file_type(&st) != SFlag::S_IFREG || st.st_nlink > 1 => remove(dir, name),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink as std_symlink;

    #[test]
    fn nothing_below_the_target_is_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let t = Target::open(&tmp.path().join("target")).unwrap();
        std_symlink(&outside, tmp.path().join("target/link")).unwrap();
        std_symlink(outside.join("f"), tmp.path().join("target/flink")).unwrap();
        assert!(t.dir(Path::new("link")).is_err());
        assert!(t.file(Path::new("link/f"), true).is_err());
        assert!(t.file(Path::new("flink"), true).is_err());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // the same through the fallback walk
        OPENAT2.store(2, Ordering::Relaxed);
        let fallback = (
            t.dir(Path::new("link")).is_err(),
            t.file(Path::new("link/f"), true).is_err(),
            t.file(Path::new("flink"), true).is_err(),
        );
        OPENAT2.store(0, Ordering::Relaxed);
        assert_eq!(fallback, (true, true, true));
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // replacing removes the link, not what it points to
        std::fs::write(outside.join("keep"), b"x").unwrap();
        mkdir(t.root(), OsStr::new("link")).unwrap();
        assert!(outside.join("keep").exists());
        assert!(t.dir(Path::new("link")).is_ok());
    }

    #[test]
    fn remove_takes_trees_and_leaves_link_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("deep")).unwrap();
        std::fs::write(outside.join("deep/file"), b"x").unwrap();
        let t = Target::open(&tmp.path().join("target")).unwrap();
        std::fs::create_dir_all(tmp.path().join("target/d/e")).unwrap();
        std::fs::write(tmp.path().join("target/d/e/f"), b"y").unwrap();
        std_symlink(&outside, tmp.path().join("target/d/to-outside")).unwrap();
        remove(t.root(), OsStr::new("d")).unwrap();
        assert!(!tmp.path().join("target/d").exists());
        assert!(outside.join("deep/file").exists());
        remove(t.root(), OsStr::new("missing")).unwrap();
    }
}

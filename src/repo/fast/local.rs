//! A minimal local-directory backend in restic's layout, for the hot path's benchmark
//! harness and tests. The facade's own backends (`repo::backend`) replace it in the
//! product; this one exists so `repo::fast` can be measured and tested on its own.

use std::{
    fs::{self, File},
    io::{ErrorKind as IoKind, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// A repository stored in a local directory, laid out like restic's `local` backend
/// (`config`, `keys/`, `snapshots/`, `index/`, `data/XX/`).
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    /// Whether files are fsynced before being renamed into place. On by default: a
    /// pack that is referenced by an index must survive a power loss, and restic does
    /// the same, so the benchmark compares like with like.
    sync: bool,
    tmp_counter: AtomicU64,
}

fn io_err(what: &'static str, path: &Path, err: std::io::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, what, err)
        .attach_context("path", path.display().to_string())
}

impl LocalDir {
    /// A backend rooted at `root` (created by [`WriteBackend::create`]).
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            sync: true,
            tmp_counter: AtomicU64::new(0),
        }
    }

    /// Turns fsync of written files on or off (tests turn it off for speed).
    #[must_use]
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    fn path(&self, tpe: FileType, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => self.root.join("config"),
            FileType::Pack => self.root.join("data").join(&hex[..2]).join(hex.as_str()),
            _ => self.root.join(tpe.dirname()).join(hex.as_str()),
        }
    }
}

impl ReadBackend for LocalDir {
    fn location(&self) -> String {
        format!("local:{}", self.root.display())
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let p = self.root.join("config");
            return match fs::metadata(&p) {
                Ok(m) => Ok(vec![(
                    Id::default(),
                    u32::try_from(m.len()).unwrap_or(u32::MAX),
                )]),
                Err(e) if e.kind() == IoKind::NotFound => Ok(vec![]),
                Err(e) => Err(io_err("cannot stat the config file", &p, e)),
            };
        }
        let base = self.root.join(tpe.dirname());
        let mut dirs = vec![base.clone()];
        if tpe == FileType::Pack {
            dirs.clear();
            match fs::read_dir(&base) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|e| io_err("cannot list directory", &base, e))?;
                        dirs.push(e.path());
                    }
                }
                Err(e) if e.kind() == IoKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(io_err("cannot list directory", &base, e)),
            }
        }
        let mut out = Vec::new();
        for dir in dirs {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(io_err("cannot list directory", &dir, e)),
            };
            for e in rd {
                let e = e.map_err(|e| io_err("cannot list directory", &dir, e))?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                // temporary files of unfinished writes are not repository files
                let Ok(id) = name.parse::<Id>() else { continue };
                let len = e
                    .metadata()
                    .map_err(|err| io_err("cannot stat file", &e.path(), err))?
                    .len();
                out.push((id, u32::try_from(len).unwrap_or(u32::MAX)));
            }
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let p = self.path(tpe, id);
        fs::read(&p)
            .map(Bytes::from)
            .map_err(|e| io_err("cannot read file", &p, e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let p = self.path(tpe, id);
        let f = File::open(&p).map_err(|e| io_err("cannot open file", &p, e))?;
        let mut buf = vec![0; length as usize];
        f.read_exact_at(&mut buf, u64::from(offset))
            .map_err(|e| io_err("cannot read file range", &p, e))?;
        Ok(buf.into())
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id).display().to_string()
    }
}

impl WriteBackend for LocalDir {
    fn create(&self) -> RusticResult<()> {
        for tpe in [
            FileType::Key,
            FileType::Snapshot,
            FileType::Index,
            FileType::Pack,
        ] {
            let d = self.root.join(tpe.dirname());
            fs::create_dir_all(&d).map_err(|e| io_err("cannot create directory", &d, e))?;
        }
        for i in 0..=255u8 {
            let d = self.root.join("data").join(format!("{i:02x}"));
            fs::create_dir_all(&d).map_err(|e| io_err("cannot create directory", &d, e))?;
        }
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let p = self.path(tpe, id);
        let dir = p.parent().unwrap_or(&self.root);
        if tpe == FileType::Pack {
            fs::create_dir_all(dir).map_err(|e| io_err("cannot create directory", dir, e))?;
        }
        // write under a temporary name and rename: a crash never leaves a truncated
        // file under a content-addressed name
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let res = (|| {
            let mut f = File::create(&tmp)?;
            for b in content.slice() {
                f.write_all(b)?;
            }
            if self.sync {
                f.sync_data()?;
            }
            fs::rename(&tmp, &p)
        })();
        if let Err(e) = res {
            _ = fs::remove_file(&tmp);
            return Err(io_err("cannot write file", &p, e));
        }
        Ok(())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let p = self.path(tpe, id);
        fs::remove_file(&p).map_err(|e| io_err("cannot remove file", &p, e))
    }
}

//! A repository in a local directory, laid out exactly as restic's `local` backend does, so
//! `restic -r DIR` reads it. Writes go to a temporary file that is fsynced and renamed into
//! place: a killed backup never leaves a truncated pack under its final name.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;

use super::{ObjectStore, StoreError, StoreErrorKind};

/// Temporary files live here (outside every directory restic lists) until renamed.
const TMP_DIR: &str = ".lifeboat-tmp";

/// A repository rooted at a local directory.
#[derive(Debug)]
pub(crate) struct LocalStore {
    root: PathBuf,
    counter: AtomicU64,
}

impl LocalStore {
    /// A store rooted at `root` (which need not exist yet: `create` makes it).
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            counter: AtomicU64::new(0),
        }
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    fn tmp_name(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let r: u64 = rand::random();
        self.root
            .join(TMP_DIR)
            .join(format!("{}-{n}-{r:016x}", std::process::id()))
    }
}

fn io_err(op: &'static str, path: &str, err: &io::Error) -> StoreError {
    let kind = match err.kind() {
        io::ErrorKind::NotFound => StoreErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => StoreErrorKind::AccessDenied,
        _ => StoreErrorKind::Other,
    };
    StoreError::new(kind, op, path, err.to_string())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ObjectStore for LocalStore {
    fn location(&self) -> String {
        format!("local:{}", self.root.display())
    }

    fn create(&self) -> Result<(), StoreError> {
        let mk = |p: PathBuf| {
            fs::create_dir_all(&p).map_err(|e| io_err("MKDIR", &p.display().to_string(), &e))
        };
        for dir in ["keys", "snapshots", "index", "locks", TMP_DIR] {
            mk(self.root.join(dir))?;
        }
        // restic creates all 256 pack subdirectories up front; doing the same keeps the
        // layout identical for tools that expect them.
        for i in 0..=255u8 {
            mk(self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    fn check_root(&self) -> Result<(), StoreError> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::new(
                StoreErrorKind::Other,
                "STAT",
                "",
                format!("{} is not a directory", self.root.display()),
            )),
            Err(e) => Err(io_err("STAT", &self.root.display().to_string(), &e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        fn walk(base: &Path, rel: &str, out: &mut Vec<(String, u64)>) -> io::Result<()> {
            let entries = match fs::read_dir(base.join(rel)) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    walk(base, &child, out)?;
                } else if ft.is_file() {
                    out.push((child, entry.metadata()?.len()));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.full(dir), "", &mut out).map_err(|e| io_err("LIST", dir, &e))?;
        Ok(out)
    }

    fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        match fs::metadata(self.full(path)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("STAT", path, &e)),
        }
    }

    fn get(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        let full = self.full(path);
        match range {
            None => fs::read(&full)
                .map(Bytes::from)
                .map_err(|e| io_err("GET", path, &e)),
            Some((offset, length)) => {
                let mut f = File::open(&full).map_err(|e| io_err("GET", path, &e))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| io_err("GET", path, &e))?;
                let len = usize::try_from(length).map_err(|_| {
                    StoreError::new(StoreErrorKind::Other, "GET", path, "range too large")
                })?;
                let mut buf = vec![0; len];
                f.read_exact(&mut buf)
                    .map_err(|e| io_err("GET", path, &e))?;
                Ok(Bytes::from(buf))
            }
        }
    }

    fn put(&self, path: &str, data: Vec<Bytes>) -> Result<(), StoreError> {
        let final_path = self.full(path);
        let tmp = self.tmp_name();
        let write = || -> io::Result<()> {
            if let Some(parent) = tmp.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            for chunk in &data {
                f.write_all(chunk)?;
            }
            f.sync_all()?;
            drop(f);
            let parent = final_path
                .parent()
                .ok_or_else(|| io::Error::other("object path has no parent"))?;
            fs::create_dir_all(parent)?;
            fs::rename(&tmp, &final_path)?;
            sync_dir(parent)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("PUT", path, &e)
        })
    }

    fn delete(&self, path: &str) -> Result<(), StoreError> {
        match fs::remove_file(self.full(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("DELETE", path, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("repo"));
        store.create().unwrap();
        store
            .put(
                "data/ab/abcd",
                vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")],
            )
            .unwrap();
        assert_eq!(store.get("data/ab/abcd", None).unwrap(), "hello world");
        assert_eq!(store.get("data/ab/abcd", Some((6, 5))).unwrap(), "world");
        assert_eq!(store.size("data/ab/abcd").unwrap(), Some(11));
        assert_eq!(store.size("data/ab/missing").unwrap(), None);
        assert_eq!(
            store.list("data").unwrap(),
            vec![("ab/abcd".to_string(), 11)]
        );
        // No temporary file is left next to the object or in the tmp dir.
        assert!(
            fs::read_dir(dir.path().join("repo").join(TMP_DIR))
                .unwrap()
                .next()
                .is_none()
        );
        store.delete("data/ab/abcd").unwrap();
        store.delete("data/ab/abcd").unwrap();
        assert!(store.list("data").unwrap().is_empty());
        let err = store.get("data/ab/abcd", None).unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NotFound);
    }

    #[test]
    fn short_ranged_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store
            .put("keys/k", vec![Bytes::from_static(b"abc")])
            .unwrap();
        assert!(store.get("keys/k", Some((1, 5))).is_err());
    }

    #[test]
    fn missing_directory_lists_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("nothing"));
        assert!(store.list("snapshots").unwrap().is_empty());
    }
}

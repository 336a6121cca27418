//! Storage backends: a small blocking object-store interface ([`ObjectStore`]) with two
//! implementations (local directory, S3), and [`RepoBackend`], the one place that maps the
//! restic repository layout (`config`, `keys/`, `snapshots/`, `index/`, `data/xx/`,
//! `locks/`) onto object names and implements rustic_core's backend traits on top.
//!
//! Invariants:
//! - Every object write is all-or-nothing: a crash leaves either the whole object or none
//!   (local: write to a temporary file then rename; S3: a PUT or a completed multipart upload).
//! - Errors keep their cause as a typed [`StoreError`] inside rustic_core's error chain, so
//!   the facade can still tell `NoSuchBucket` from a refused connection.
//! - No secret ever appears in a `location()`, an error or a log line.

pub mod local;
pub mod s3;

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// What went wrong in a storage operation, coarse enough to pick an exit code and a retry
/// class, precise enough (the S3 error code) to tell the operator what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The object does not exist.
    NotFound,
    /// The bucket does not exist (`NoSuchBucket`).
    NoSuchBucket,
    /// The credentials were rejected (`SignatureDoesNotMatch`, `InvalidAccessKeyId`, ...).
    Auth,
    /// The credentials are valid but lack permission (`AccessDenied`).
    AccessDenied,
    /// The endpoint could not be reached (connection refused, DNS, TLS, timeouts).
    Unreachable,
    /// A conditional write found the object already there.
    AlreadyExists,
    /// Any other storage failure (5xx after retries, unexpected answers, local I/O).
    Other,
}

/// A failed storage operation. `code` carries the S3 error code when the server sent one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {path}: {}", self.describe())]
pub struct StoreError {
    /// The coarse kind, used for categories and exit codes.
    pub kind: StoreErrorKind,
    /// The operation (`GET`, `PUT`, `LIST`, ...).
    pub op: &'static str,
    /// The object name relative to the repository root (never a URL with credentials).
    pub path: String,
    /// The S3 error code, e.g. `NoSuchBucket`.
    pub code: Option<String>,
    /// A human-readable cause (server message or local error), free of secrets.
    pub message: String,
}

impl StoreError {
    /// Builds an error without an S3 code.
    pub fn new(
        kind: StoreErrorKind,
        op: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            op,
            path: path.into(),
            code: None,
            message: message.into(),
        }
    }

    fn describe(&self) -> String {
        match (&self.code, self.message.is_empty()) {
            (Some(code), true) => code.clone(),
            (Some(code), false) => format!("{code}: {}", self.message),
            (None, _) => self.message.clone(),
        }
    }

    /// True when retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Unreachable | StoreErrorKind::Other
        )
    }
}

/// A blocking object store holding one repository under a root (a directory, or a bucket
/// and prefix). Paths are `/`-separated and relative to that root.
///
/// Implementations are called from rustic_core's worker threads, never from inside an
/// async runtime.
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// A display name for messages, e.g. `s3:http://127.0.0.1:8333/bucket/prefix`.
    fn location(&self) -> String;
    /// Prepares the root for a new repository (creates the directory layout / checks
    /// the bucket). Must not destroy anything that exists.
    fn create(&self) -> Result<(), StoreError>;
    /// Checks that the root itself exists (the bucket, the directory), so "no repository"
    /// can be told apart from "no bucket".
    fn check_root(&self) -> Result<(), StoreError>;
    /// Lists every object below `dir` (recursively), as `(name relative to dir, size)`.
    /// A missing directory lists as empty.
    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError>;
    /// The size of an object, or `None` when it does not exist.
    fn size(&self, path: &str) -> Result<Option<u64>, StoreError>;
    /// Reads a whole object, or `length` bytes at `offset`.
    fn get(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError>;
    /// Writes an object atomically, replacing an existing one.
    fn put(&self, path: &str, data: Vec<Bytes>) -> Result<(), StoreError>;
    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, path: &str) -> Result<(), StoreError>;
}

/// The object name of a repository file in the restic layout.
pub fn object_path(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    let hex = hex.as_str();
    match tpe {
        FileType::Config => "config".to_string(),
        FileType::Pack => format!("data/{}/{hex}", &hex[..2]),
        other => format!("{}/{hex}", other.dirname()),
    }
}

/// Lets one operation control snapshot writes: a stream backup whose command failed must not
/// leave a snapshot behind, but rustic_core saves the snapshot after skipping unreadable
/// files. Vetoing the snapshot write turns that into an error before anything looks complete.
/// In capture mode snapshot writes are swallowed: the caller finishes the snapshot itself.
#[derive(Debug, Default)]
pub struct CommitGate {
    veto: Mutex<Option<String>>,
    capture: std::sync::atomic::AtomicBool,
}

impl CommitGate {
    /// Swallow snapshot writes (they report success but write nothing).
    pub fn set_capture(&self, on: bool) {
        self.capture.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn capturing(&self) -> bool {
        self.capture.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forbids snapshot writes until [`CommitGate::clear`], giving the reason.
    pub fn veto(&self, reason: impl Into<String>) {
        let mut slot = self.veto.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
    }

    /// Allows snapshot writes again.
    pub fn clear(&self) {
        *self.veto.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The current veto reason, if any.
    pub fn reason(&self) -> Option<String> {
        self.veto.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Raised (inside rustic_core's error chain) when a snapshot write was vetoed.
#[derive(Debug, thiserror::Error)]
#[error("snapshot not committed: {0}")]
pub struct CommitVetoed(pub String);

/// The restic repository layout on an [`ObjectStore`]; implements rustic_core's backend
/// traits and gives the lock code raw access to `locks/`.
#[derive(Clone, Debug)]
pub struct RepoBackend {
    store: Arc<dyn ObjectStore>,
    gate: Arc<CommitGate>,
}

impl RepoBackend {
    /// Wraps a store.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            gate: Arc::default(),
        }
    }

    /// The underlying store (for locks and for other engines working on the same format).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The snapshot commit gate of this backend.
    pub fn gate(&self) -> &Arc<CommitGate> {
        &self.gate
    }

    /// Whether reads cross a network (anything but a local directory): such reads spend
    /// most of their time waiting, so more of them are kept in flight.
    pub fn is_remote(&self) -> bool {
        !self.store.location().starts_with("local:")
    }
}

fn to_rustic(err: StoreError) -> Box<RusticError> {
    let kind = match err.kind {
        StoreErrorKind::NotFound => ErrorKind::Backend,
        StoreErrorKind::Auth | StoreErrorKind::AccessDenied => ErrorKind::Credentials,
        _ => ErrorKind::Backend,
    };
    RusticError::with_source(kind, "storage operation failed", err)
}

fn to_u32_size(path: &str, size: u64) -> RusticResult<u32> {
    u32::try_from(size).map_err(|_| {
        to_rustic(StoreError::new(
            StoreErrorKind::Other,
            "LIST",
            path,
            format!("object of {size} bytes is larger than the restic format allows"),
        ))
    })
}

impl ReadBackend for RepoBackend {
    fn location(&self) -> String {
        self.store.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            // The config is a single object; "list" means "does it exist".
            return match self.store.size("config").map_err(to_rustic)? {
                Some(size) => Ok(vec![(Id::default(), to_u32_size("config", size)?)]),
                None => Ok(Vec::new()),
            };
        }
        let dir = tpe.dirname();
        let mut out = Vec::new();
        for (name, size) in self.store.list(dir).map_err(to_rustic)? {
            // Pack files live in data/xx/<id>; everything else directly below the dir.
            let base = name.rsplit('/').next().unwrap_or(&name);
            match base.parse::<Id>() {
                Ok(id) => out.push((id, to_u32_size(&name, size)?)),
                Err(_) => {
                    tracing::debug!(dir, name, "ignoring a file that is not a repository object")
                }
            }
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.store
            .get(&object_path(tpe, id), None)
            .map_err(to_rustic)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.store
            .get(
                &object_path(tpe, id),
                Some((u64::from(offset), u64::from(length))),
            )
            .map_err(to_rustic)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        object_path(tpe, id)
    }
}

impl WriteBackend for RepoBackend {
    fn create(&self) -> RusticResult<()> {
        self.store.create().map_err(to_rustic)
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        if tpe == FileType::Snapshot {
            if let Some(reason) = self.gate.reason() {
                return Err(RusticError::with_source(
                    ErrorKind::Backend,
                    "snapshot write refused",
                    CommitVetoed(reason),
                ));
            }
            if self.gate.capturing() {
                return Ok(());
            }
        }
        self.store
            .put(&object_path(tpe, id), content.into_vec())
            .map_err(to_rustic)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.store.delete(&object_path(tpe, id)).map_err(to_rustic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_restic() {
        let id: Id = "ab01000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        assert_eq!(object_path(FileType::Config, &id), "config");
        assert_eq!(
            object_path(FileType::Pack, &id),
            format!("data/ab/{}", id.to_hex().as_str())
        );
        assert_eq!(
            object_path(FileType::Snapshot, &id),
            format!("snapshots/{}", id.to_hex().as_str())
        );
        assert_eq!(
            object_path(FileType::Key, &id),
            format!("keys/{}", id.to_hex().as_str())
        );
        assert_eq!(
            object_path(FileType::Index, &id),
            format!("index/{}", id.to_hex().as_str())
        );
    }

    #[test]
    fn gate_keeps_first_reason_until_cleared() {
        let gate = CommitGate::default();
        assert_eq!(gate.reason(), None);
        gate.veto("first");
        gate.veto("second");
        assert_eq!(gate.reason().as_deref(), Some("first"));
        gate.clear();
        assert_eq!(gate.reason(), None);
    }
}

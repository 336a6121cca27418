//! Storage backends: a small blocking object-store interface ([`ObjectStore`]) with two
//! implementations (local directory, S3), and [`RepoBackend`], rustic_core's backend
//! traits on top of a store (the restic layout's object names are
//! [`crate::repo::format::object_path`]).
//!
//! Invariants:
//! - Every object write is all-or-nothing: a crash leaves either the whole object or none
//!   (local: write to a temporary file then rename; S3: a PUT or a completed multipart upload).
//! - Errors keep their cause as a typed [`StoreError`] inside rustic_core's error chain, so
//!   the facade can still tell `NoSuchBucket` from a refused connection.
//! - No secret ever appears in a `location()`, an error or a log line.

pub(crate) mod local;
pub(crate) mod s3;

use std::{fmt, sync::Arc};

use crate::repo::format::object_path;
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
    /// Whether the root has S3 Object Lock enabled; `None` where the notion does not
    /// exist (a local directory).
    fn object_lock_enabled(&self) -> Result<Option<bool>, StoreError> {
        Ok(None)
    }
    /// Extends the retention of every object the repository keeps (see
    /// `s3::lock::extend`); nothing for a store without Object Lock.
    fn extend_retention(&self) -> Result<s3::Extended, StoreError> {
        Ok(s3::Extended::default())
    }
    /// Tries to remove the current *version* of `path` with this store's credentials (see
    /// `s3::DeletionAttempt`); `None` where objects have no versions (a local directory).
    fn try_delete_version(&self, _path: &str) -> Result<Option<s3::DeletionAttempt>, StoreError> {
        Ok(None)
    }
}

/// The restic repository layout on an [`ObjectStore`], as rustic_core's backend traits,
/// for what still runs on rustic_core (`init`, `prune`; see docs/engine.md).
#[derive(Clone, Debug)]
pub(crate) struct RepoBackend {
    store: Arc<dyn ObjectStore>,
}

impl RepoBackend {
    /// Wraps a store.
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
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
        self.store
            .put(&object_path(tpe, id), content.into_vec())
            .map_err(to_rustic)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.store.delete(&object_path(tpe, id)).map_err(to_rustic)
    }
}

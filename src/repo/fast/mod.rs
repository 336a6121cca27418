//! The hot data path over the restic repository format (v2): what `repo::fast` owns is
//! the per-byte work of backup and restore (chunking, hashing, compression, encryption,
//! packing, parallel upload and download). rustic_core keeps everything else: config,
//! keys, snapshot and tree types, check, forget and prune.
//!
//! Invariants: what is written is plain restic format (restic 0.14 lists, checks and
//! restores it; rustic_core reads it back); commit order is data packs, then index
//! files, then the snapshot, so a crash leaves only unreferenced packs that prune
//! removes; memory is bounded by queue depths times the pack size, never by file size.
//!
//! Entry points for the facade: [`backup::backup`] (takes a rustic_core `ReadSource`,
//! the same input as `Repository::archive`) and [`restore::restore`]. Both take the
//! opened `Repository` (for config, key, index and snapshot files) and the raw
//! `WriteBackend` / `ReadBackend` that packs go to and come from.

pub mod backup;
pub mod chunker;
pub mod crypto;
pub mod index;
pub mod local;
pub mod pack;
pub mod restore;
#[cfg(test)]
mod tests;
mod trees;
mod treewalk;

use rustic_core::RusticError;

/// Errors of the hot path.
#[derive(Debug, thiserror::Error)]
pub enum FastError {
    /// A repository operation through rustic_core or the backend failed.
    #[error("repository: {0}")]
    Repo(#[from] Box<RusticError>),
    /// Reading the source or writing the restore target failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// what was being done
        op: &'static str,
        /// the file concerned
        path: String,
        /// the OS error
        source: std::io::Error,
    },
    /// Repository data failed authentication: wrong key or corrupted data.
    #[error("repository data failed authentication (wrong key or corrupted data)")]
    Mac,
    /// Repository data is malformed or inconsistent.
    #[error("malformed repository data: {0}")]
    Format(String),
    /// A path asked for is not in the snapshot.
    #[error("path {0:?} not found in the snapshot")]
    NotFound(String),
    /// The repository's settings are not supported by the hot path.
    #[error("unsupported repository settings: {0}")]
    Unsupported(String),
    /// A worker thread panicked or a pipeline stage stopped early.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Whether retrying the same operation may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Retrying cannot help (bad data, bad settings, bugs).
    Permanent,
    /// A retry may succeed (I/O and backend errors).
    Transient,
}

impl FastError {
    /// Bounded, PascalCase name of the error kind (exit codes, metric labels).
    #[must_use]
    pub const fn category(&self) -> &'static str {
        match self {
            Self::Repo(_) => "RepositoryError",
            Self::Io { .. } => "IoError",
            Self::Mac => "AuthenticationFailed",
            Self::Format(_) => "MalformedRepository",
            Self::NotFound(_) => "NotFound",
            Self::Unsupported(_) => "UnsupportedRepository",
            Self::Internal(_) => "InternalError",
        }
    }

    /// Whether the operation may succeed when retried.
    #[must_use]
    pub const fn retry_class(&self) -> RetryClass {
        match self {
            Self::Repo(_) | Self::Io { .. } => RetryClass::Transient,
            Self::Mac
            | Self::Format(_)
            | Self::NotFound(_)
            | Self::Unsupported(_)
            | Self::Internal(_) => RetryClass::Permanent,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl AsRef<std::path::Path>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        move |source| Self::Io { op, path, source }
    }
}

/// SHA-256 of `data` as a repository id (blob, pack and file ids are all SHA-256).
#[must_use]
pub fn hash(data: &[u8]) -> rustic_core::Id {
    use sha2::Digest;
    rustic_core::Id::new(sha2::Sha256::digest(data).into())
}

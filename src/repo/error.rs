//! Errors of the repository facade: one variant per thing an operator can act on, a bounded
//! `category()` for exit codes and metrics, a retry class. rustic_core's errors are unwrapped
//! here: the typed storage error inside its chain is recovered, so "NoSuchBucket" survives.
//! Messages never contain secrets (passwords, secret keys): nothing here formats one.

use std::io;

use rustic_core::RusticError;

use super::{
    backend::{StoreError, StoreErrorKind},
    lock::LockError,
    stream::CommandFailed,
};

/// Whether retrying the same operation may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Retrying without a change will fail the same way.
    Permanent,
    /// A later attempt may succeed (network, locks held by others, 5xx).
    Transient,
}

/// A failed repository operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository location or an option is invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// There is no repository at the location.
    #[error("no repository at {0} (create one with `lifeboat repo init`)")]
    NotFound(String),
    /// `init` found an existing repository.
    #[error("a repository already exists at {0}")]
    AlreadyExists(String),
    /// No key of the repository opens with the password.
    #[error("wrong password: no key of the repository at {0} opens with it")]
    WrongPassword(String),
    /// A conflicting lock is held.
    #[error("{0}")]
    Locked(String),
    /// The storage failed; keeps the S3 error code.
    #[error("storage error: {0}")]
    Storage(#[source] StoreError),
    /// The command whose output was being backed up failed; nothing was committed.
    #[error("no snapshot written: {0}")]
    CommandFailed(#[source] CommandFailed),
    /// Reading the stream failed for another reason; nothing was committed.
    #[error("no snapshot written: reading the stream failed: {0}")]
    StreamFailed(String),
    /// The snapshot does not exist (or `latest` matched nothing).
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// The path does not exist in the snapshot.
    #[error("path {path:?} not found in snapshot {snapshot}")]
    PathNotFound {
        /// The snapshot.
        snapshot: String,
        /// The path asked for.
        path: String,
    },
    /// `check` found problems.
    #[error("check found {count} error(s); first: {first}")]
    CheckFailed {
        /// Number of errors.
        count: usize,
        /// The first one.
        first: String,
    },
    /// Local file system trouble (restore target, source files).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Repository data is damaged or malformed: it failed authentication, does not
    /// match its id, does not parse, breaks a bound, or a tree names something a restore
    /// must not create. Never retried: the same bytes fail the same way.
    #[error("{0}")]
    Corrupt(Box<Corruption>),
    /// The repository uses something Lifeboat does not read or write (a format version,
    /// a chunker, key parameters beyond the bounds); the message says what to do.
    #[error("unsupported repository: {0}")]
    Unsupported(String),
    /// A bug, or an engine failure without a better category.
    #[error("{0}")]
    Internal(String),
}

/// What is damaged in a repository, named so that an operator can act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The damaged object: `pack 1a2b3c4d`, `tree 5e6f7a8b`, `index/<id>`, ...
    pub object: String,
    /// What is wrong with it.
    pub problem: String,
    /// The pack file holding the damaged data (full id), when known.
    pub pack: Option<String>,
    /// Files of the snapshot that need the damaged data (the first few).
    pub files: Vec<String>,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "repository data is damaged: {}: {}",
            self.object, self.problem
        )?;
        if let Some(p) = &self.pack {
            write!(f, " (in pack {p})")?;
        }
        if !self.files.is_empty() {
            write!(f, "; affected: {}", self.files.join(", "))?;
        }
        Ok(())
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bounded PascalCase name, stable for exit codes, metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::NotFound(_) => "RepositoryNotFound",
            Self::AlreadyExists(_) => "RepositoryExists",
            Self::WrongPassword(_) => "WrongPassword",
            Self::Locked(_) => "RepositoryLocked",
            Self::Storage(e) => match e.kind {
                StoreErrorKind::NoSuchBucket => "BucketNotFound",
                StoreErrorKind::Auth => "StorageAuthFailed",
                StoreErrorKind::AccessDenied => "StorageAccessDenied",
                StoreErrorKind::Unreachable => "StorageUnreachable",
                StoreErrorKind::NotFound
                | StoreErrorKind::AlreadyExists
                | StoreErrorKind::Other => "StorageError",
            },
            Self::CommandFailed(_) | Self::StreamFailed(_) => "SourceCommandFailed",
            Self::SnapshotNotFound(_) | Self::PathNotFound { .. } => "NotFound",
            Self::CheckFailed { .. } => "CheckFailed",
            Self::Io { .. } => "LocalIo",
            Self::Corrupt(_) => "RepositoryCorrupted",
            Self::Unsupported(_) => "UnsupportedRepository",
            Self::Internal(_) => "Internal",
        }
    }

    /// Whether retrying may help.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::Locked(_) => RetryClass::Transient,
            Self::Storage(e) if e.is_transient() => RetryClass::Transient,
            _ => RetryClass::Permanent,
        }
    }

    /// Damage in `object` (no pack known).
    pub(crate) fn corrupt(object: impl std::fmt::Display, problem: impl Into<String>) -> Self {
        Self::Corrupt(Box::new(Corruption {
            object: object.to_string(),
            problem: problem.into(),
            pack: None,
            files: Vec::new(),
        }))
    }

    /// Damage in `object`, stored in `pack`.
    pub(crate) fn corrupt_in_pack(
        object: impl std::fmt::Display,
        pack: &rustic_core::Id,
        problem: impl Into<String>,
    ) -> Self {
        Self::Corrupt(Box::new(Corruption {
            object: object.to_string(),
            problem: problem.into(),
            pack: Some(pack.to_hex().as_str().to_string()),
            files: Vec::new(),
        }))
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Converts a rustic_core error, recovering our typed causes from its chain.
    pub(crate) fn from_rustic(err: &RusticError) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
        while let Some(c) = cause {
            if let Some(s) = c.downcast_ref::<StoreError>() {
                return Self::Storage(s.clone());
            }
            if let Some(io) = c.downcast_ref::<io::Error>()
                && let Some(f) = io.get_ref().and_then(|e| e.downcast_ref::<CommandFailed>())
            {
                return Self::CommandFailed(f.clone());
            }
            cause = c.source();
        }
        if err.is_incorrect_password() {
            return Self::WrongPassword(String::new());
        }
        Self::Internal(one_line(&err.to_string()))
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Store(s) => Self::Storage(s),
            c @ LockError::Conflict { .. } => Self::Locked(c.to_string()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Storage(e)
    }
}

impl From<Box<RusticError>> for Error {
    fn from(e: Box<RusticError>) -> Self {
        Self::from_rustic(&e)
    }
}

/// rustic_core's messages span several lines (guidance, context, links); keep the first
/// meaningful one so every error prints as one line.
pub(crate) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::ErrorKind;

    #[test]
    fn storage_errors_survive_the_rustic_chain() {
        let store = StoreError {
            kind: StoreErrorKind::NoSuchBucket,
            op: "LIST",
            path: "keys".into(),
            code: Some("NoSuchBucket".into()),
            message: "The specified bucket does not exist".into(),
        };
        let rustic = RusticError::with_source(ErrorKind::Backend, "listing failed", store);
        let ours = Error::from(rustic);
        assert_eq!(ours.category(), "BucketNotFound");
        assert!(ours.to_string().contains("NoSuchBucket"), "{ours}");
    }

    #[test]
    fn command_failure_survives_the_rustic_chain() {
        let failed = CommandFailed {
            command: "pg_dump".into(),
            status: "exited with code 1".into(),
            code: Some(1),
            stderr_tail: "connection refused".into(),
        };
        let io = io::Error::other(failed);
        let rustic = RusticError::with_source(ErrorKind::InputOutput, "reading failed", io);
        let ours = Error::from(rustic);
        assert_eq!(ours.category(), "SourceCommandFailed");
        assert!(ours.to_string().contains("exited with code 1"), "{ours}");
    }

    #[test]
    fn categories_are_pascal_case_and_bounded() {
        let samples = [
            Error::InvalidInput("x".into()),
            Error::NotFound("x".into()),
            Error::WrongPassword("x".into()),
            Error::Locked("x".into()),
            Error::Internal("x".into()),
            Error::corrupt("pack 00000000", "x"),
            Error::Unsupported("x".into()),
        ];
        for e in samples {
            let c = e.category();
            assert!(c.chars().next().unwrap().is_ascii_uppercase());
            assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric()));
        }
    }
}

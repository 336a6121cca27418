//! Errors of the mover: one variant per thing a run can report, a bounded `category()`
//! that becomes the result's failure reason (and, through the CLI, the exit code listed
//! in docs/engine.md), and a retry class. The repository's and the database adapters'
//! errors pass through with their own categories and messages unchanged, so the
//! termination message reads exactly as the controllers and docs expect.

use crate::jobs::mover::command::ArgvError;
use crate::repo::RetryClass;

/// Which Kubernetes failure a [`Error::Kubernetes`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KubeFailure {
    /// No client could be built (`KubernetesClient`).
    Client,
    /// The API server refused the request (`Forbidden`, 403).
    Forbidden,
    /// Any other API failure (`KubernetesApi`).
    Api,
}

/// A failed mover run. Messages are one line and never hold a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The argv did not parse (a version skew between controller and mover image, or a
    /// typo in a hand-run mover).
    #[error(transparent)]
    Usage(#[from] ArgvError),
    /// An input the mover refuses (a directory that is not one, an ambiguous kind...).
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
    #[error(transparent)]
    Db(#[from] crate::db::Error),
    /// Local files: staging, the restore target, secret files.
    #[error("{context}: {source}")]
    LocalIo {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{message}")]
    Kubernetes { kind: KubeFailure, message: String },
    /// The restore's snapshot is no longer in the repository.
    #[error("{0}")]
    SnapshotMissing(String),
    /// A retention run would forget more than the policy's `maxForgetPercent` of its
    /// snapshots; nothing was forgotten.
    #[error("{0}")]
    BreakerTripped(String),
    /// The restore's snapshot is not tagged with the policy of its restore point (a
    /// snapshot ID of another namespace's policy, read from a forged record).
    #[error("{0}")]
    SnapshotNotAllowed(String),
    /// The restore's target already holds data, or lies outside the mover's namespace.
    #[error("{0}")]
    TargetExists(String),
    /// The restore's target does not exist and may not be created.
    #[error("{0}")]
    TargetNotFound(String),
    /// Some manifests were refused by the API server (the others were applied).
    #[error("{0}")]
    ApplyFailed(String),
    /// A bug, or a failure without a better category.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The categories of the mover's own variants (wrapped repository and database
    /// errors bring theirs).
    #[cfg(test)]
    pub(crate) const OWN_CATEGORIES: &'static [&'static str] = &[
        "Usage",
        "InvalidInput",
        "LocalIo",
        "KubernetesClient",
        "Forbidden",
        "KubernetesApi",
        "SnapshotMissing",
        "RetentionBreakerTripped",
        "SnapshotNotAllowed",
        "TargetExists",
        "TargetNotFound",
        "ApplyFailed",
        "Internal",
    ];

    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::LocalIo {
            context: context.into(),
            source,
        }
    }

    /// An API failure of any kind (`KubernetesApi`), whatever the client said.
    pub(crate) fn kube_api(message: impl Into<String>) -> Self {
        Self::Kubernetes {
            kind: KubeFailure::Api,
            message: message.into(),
        }
    }

    /// A kube error, told apart: 403, other API answers, no answer at all.
    pub(crate) fn from_kube(what: &str, e: kube::Error) -> Self {
        let kind = match &e {
            kube::Error::Api(s) if s.code == 403 => KubeFailure::Forbidden,
            kube::Error::Api(_) => KubeFailure::Api,
            _ => KubeFailure::Client,
        };
        Self::Kubernetes {
            kind,
            message: format!("{what}: {e}"),
        }
    }

    /// A bounded PascalCase name: the result's failure reason and the exit code's key.
    pub(crate) fn category(&self) -> &'static str {
        match self {
            Self::Usage(_) => "Usage",
            Self::InvalidInput(_) => "InvalidInput",
            Self::Repo(e) => e.category(),
            Self::Db(e) => e.category(),
            Self::LocalIo { .. } => "LocalIo",
            Self::Kubernetes { kind, .. } => match kind {
                KubeFailure::Client => "KubernetesClient",
                KubeFailure::Forbidden => "Forbidden",
                KubeFailure::Api => "KubernetesApi",
            },
            Self::SnapshotMissing(_) => "SnapshotMissing",
            Self::BreakerTripped(_) => "RetentionBreakerTripped",
            Self::SnapshotNotAllowed(_) => "SnapshotNotAllowed",
            Self::TargetExists(_) => "TargetExists",
            Self::TargetNotFound(_) => "TargetNotFound",
            Self::ApplyFailed(_) => "ApplyFailed",
            Self::Internal(_) => "Internal",
        }
    }

    /// Whether running the same command again may help. Refusals (a target that holds
    /// data, a snapshot that is gone, bad input) never do; an unreachable API server or
    /// storage may.
    pub(crate) fn retry_class(&self) -> RetryClass {
        match self {
            Self::Repo(e) => e.retry_class(),
            Self::Db(e) => e.retry_class(),
            Self::Kubernetes {
                kind: KubeFailure::Client | KubeFailure::Api,
                ..
            } => RetryClass::Transient,
            Self::Usage(_)
            | Self::InvalidInput(_)
            | Self::LocalIo { .. }
            | Self::Kubernetes {
                kind: KubeFailure::Forbidden,
                ..
            }
            | Self::SnapshotMissing(_)
            | Self::BreakerTripped(_)
            | Self::SnapshotNotAllowed(_)
            | Self::TargetExists(_)
            | Self::TargetNotFound(_)
            | Self::ApplyFailed(_)
            | Self::Internal(_) => RetryClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value of each variant (and each kind of Kubernetes failure).
    fn every_error() -> Vec<Error> {
        vec![
            Error::Usage(ArgvError::MissingValue("run")),
            Error::input("x"),
            Error::Repo(crate::repo::Error::Locked("held".into())),
            Error::Db(crate::db::Error::ToolMissing {
                program: "pg_dump".into(),
            }),
            Error::io("reading /x", std::io::Error::other("gone")),
            Error::Kubernetes {
                kind: KubeFailure::Client,
                message: "m".into(),
            },
            Error::Kubernetes {
                kind: KubeFailure::Forbidden,
                message: "m".into(),
            },
            Error::kube_api("m"),
            Error::SnapshotMissing("m".into()),
            Error::BreakerTripped("b".into()),
            Error::SnapshotNotAllowed("m".into()),
            Error::TargetExists("m".into()),
            Error::TargetNotFound("m".into()),
            Error::ApplyFailed("m".into()),
            Error::Internal("m".into()),
        ]
    }

    /// `OWN_CATEGORIES` is complete (the CLI's tests check each has an exit code).
    #[test]
    fn own_categories_are_listed() {
        let own: Vec<&str> = every_error()
            .iter()
            .filter(|e| !matches!(e, Error::Repo(_) | Error::Db(_)))
            .map(Error::category)
            .collect();
        let mut listed = Error::OWN_CATEGORIES.to_vec();
        listed.sort_unstable();
        let mut seen = own.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, listed);
    }

    #[test]
    fn messages_and_retry_classes() {
        let e = Error::io("reading /x", std::io::Error::other("gone"));
        assert_eq!(e.to_string(), "reading /x: gone");
        assert_eq!(e.retry_class(), RetryClass::Permanent);
        // Wrapped errors keep their own words and classes.
        let locked = Error::from(crate::repo::Error::Locked("lock held by h".into()));
        assert_eq!(
            (locked.to_string().as_str(), locked.category()),
            ("lock held by h", "RepositoryLocked")
        );
        assert_eq!(locked.retry_class(), RetryClass::Transient);
        assert_eq!(Error::kube_api("x").retry_class(), RetryClass::Transient);
        assert_eq!(
            Error::TargetExists("x".into()).retry_class(),
            RetryClass::Permanent
        );
    }
}

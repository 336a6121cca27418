//! Exit codes and the one-line error every failing command ends with. One code per error
//! category (documented in docs/engine.md); restic's own codes (10, 11, 12) keep their
//! meaning so scripts written for restic read ours the same way.

use std::process::ExitCode;

/// A failed command: a bounded category (which picks the exit code) and a one-line message
/// that names the cause and never contains a secret.
#[derive(Debug)]
pub struct CliError {
    /// PascalCase category, e.g. `BucketNotFound`.
    pub category: &'static str,
    /// One line.
    pub message: String,
}

impl CliError {
    /// Invalid usage discovered after parsing (missing password, conflicting options).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            category: "InvalidInput",
            message: message.into(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        code_for(self.category)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::repo::Error> for CliError {
    fn from(e: crate::repo::Error) -> Self {
        Self {
            category: e.category(),
            message: e.to_string(),
        }
    }
}

impl From<crate::db::Error> for CliError {
    fn from(e: crate::db::Error) -> Self {
        Self {
            category: e.category(),
            message: e.to_string(),
        }
    }
}

impl From<crate::mover::Error> for CliError {
    fn from(e: crate::mover::Error) -> Self {
        Self {
            category: e.category(),
            message: e.to_string(),
        }
    }
}

/// Every category with its exit code and meaning (the table in docs/engine.md).
pub const EXIT_CODES: &[(&str, u8, &str)] = &[
    (
        "Internal",
        1,
        "unexpected failure (a bug, or an engine error without a better category)",
    ),
    ("Usage", 2, "the command line could not be parsed"),
    (
        "InvalidInput",
        3,
        "an option value, repository location, path or password is invalid or missing",
    ),
    (
        "PartialBackup",
        4,
        "the snapshot was written but some source files could not be read (listed)",
    ),
    ("RepositoryNotFound", 10, "no repository at the location"),
    (
        "RepositoryLocked",
        11,
        "a conflicting lock is held (the message says if it is stale)",
    ),
    (
        "WrongPassword",
        12,
        "no key of the repository opens with the password",
    ),
    (
        "RepositoryExists",
        13,
        "`repo init` found an existing repository",
    ),
    (
        "UnsupportedRepository",
        14,
        "the repository uses a format, chunker or key parameters Lifeboat does not read or write (the message says what to do)",
    ),
    (
        "StorageAuthFailed",
        20,
        "S3 rejected the credentials (SignatureDoesNotMatch, InvalidAccessKeyId, ...)",
    ),
    (
        "StorageAccessDenied",
        21,
        "S3 denied the request (AccessDenied)",
    ),
    (
        "BucketNotFound",
        22,
        "the bucket does not exist (NoSuchBucket)",
    ),
    (
        "StorageUnreachable",
        23,
        "the storage endpoint could not be reached (refused, DNS, TLS, timeout)",
    ),
    (
        "StorageError",
        24,
        "any other storage failure (5xx after retries, local I/O in the repository)",
    ),
    (
        "SourceCommandFailed",
        30,
        "the command or dump being backed up failed; no snapshot was written",
    ),
    (
        "DatabaseUnreachable",
        31,
        "the database server refused or did not answer the connection",
    ),
    (
        "DatabaseAuthFailed",
        32,
        "the database rejected the user or password",
    ),
    (
        "DatabaseError",
        33,
        "the database reported an error (missing database, SQL error, restore failure)",
    ),
    (
        "ToolMissing",
        34,
        "a client program (pg_dump, psql, mariadb-dump, ...) is not installed",
    ),
    ("CheckFailed", 40, "`check` found errors in the repository"),
    (
        "RepositoryCorrupted",
        44,
        "repository data is damaged or malformed (the message names the pack or file and what needs it)",
    ),
    (
        "NotFound",
        41,
        "the snapshot or the path inside it, or the named Kubernetes object, does not exist",
    ),
    (
        "LocalIo",
        42,
        "a local file or directory could not be read or written",
    ),
    (
        "ChainBroken",
        43,
        "a drill's evidence report or its hash chain does not verify",
    ),
    (
        "KubernetesClient",
        50,
        "no Kubernetes client could be built (in-cluster config or KUBECONFIG)",
    ),
    ("CrdsMissing", 51, "the lifeboat.dev CRDs are not installed"),
    (
        "Forbidden",
        52,
        "the Kubernetes API refused a request (RBAC); the message names the verb and resource",
    ),
    ("KubernetesApi", 53, "any other Kubernetes API failure"),
    (
        "MetricsAddress",
        54,
        "the metrics address could not be bound",
    ),
    (
        "LostLease",
        55,
        "the controller lost its leader lease (another replica takes over)",
    ),
    (
        "SnapshotMissing",
        60,
        "a restore's snapshot is no longer in the repository",
    ),
    (
        "TargetExists",
        61,
        "a restore's target already holds data (files, tables, or another namespace); nothing was overwritten",
    ),
    (
        "TargetNotFound",
        62,
        "a restore's target (database, volume mount) does not exist and may not be created",
    ),
    (
        "ApplyFailed",
        63,
        "a manifest restore could not apply some objects (the others were applied)",
    ),
    (
        "Unauthorized",
        56,
        "the Kubernetes API server rejected the credentials (401)",
    ),
    (
        "BackupFailed",
        64,
        "`backup now --wait`: the Backup ended Failed or PartiallyFailed (each failed source is named)",
    ),
    (
        "RestoreFailed",
        65,
        "`restore create --wait`: the Restore ended Failed or PartiallyFailed",
    ),
    (
        "DrillFailed",
        66,
        "`drill now --wait`: the DrillRun's outcome is Failed (the failing step is named) or Cancelled",
    ),
    (
        "WaitTimeout",
        67,
        "`--wait --timeout` expired before the run finished (the run continues)",
    ),
    (
        "SnapshotNotAllowed",
        68,
        "a restore's snapshot belongs to another policy than its restore point's (nothing was restored)",
    ),
    (
        "RetentionBreakerTripped",
        69,
        "a retention run would forget more than the policy's `retention.maxForgetPercent` of its snapshots (nothing was forgotten)",
    ),
    (
        "NotImmutable",
        70,
        "`repo try-delete-pack`: the store let a pack version be deleted, or has no versions (the pack was written back)",
    ),
];

/// The exit code of a category (1 for unknown ones).
pub fn code_for(category: &str) -> u8 {
    EXIT_CODES
        .iter()
        .find(|(c, _, _)| *c == category)
        .map_or(1, |(_, code, _)| *code)
}

/// Converts a result into the process exit code, printing the error line.
pub fn finish(result: Result<(), CliError>, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("lifeboat: error: {}", e.message);
            // A partial backup (and a store found mutable) already printed its outcome as
            // the one JSON document; the exit code carries the rest.
            if json && !matches!(e.category, "PartialBackup" | "NotImmutable") {
                let v = serde_json::json!({
                    "error": { "category": e.category, "message": e.message, "exit_code": code }
                });
                println!("{v}");
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod docs_table {
    /// docs/engine.md lists every exit code exactly as the table here.
    #[test]
    fn engine_docs_list_every_exit_code() {
        let doc = include_str!("../../docs/engine.md");
        for (category, code, meaning) in super::EXIT_CODES {
            let row = format!("| {code} | {category} |");
            let line = doc.lines().find(|l| l.starts_with(&row));
            assert!(
                line.is_some(),
                "docs/engine.md lacks the row {row} ({meaning})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_categories_unique() {
        let mut codes: Vec<u8> = EXIT_CODES.iter().map(|(_, c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), EXIT_CODES.len());
        let mut cats: Vec<&str> = EXIT_CODES.iter().map(|(c, _, _)| *c).collect();
        cats.sort_unstable();
        cats.dedup();
        assert_eq!(cats.len(), EXIT_CODES.len());
    }

    #[test]
    fn every_repo_and_db_category_has_a_code() {
        use crate::repo::{Error, StoreError, StoreErrorKind};
        let store = |kind| Error::Storage(StoreError::new(kind, "GET", "x", "m"));
        let repo_errors = [
            Error::InvalidInput(String::new()),
            Error::NotFound(String::new()),
            Error::AlreadyExists(String::new()),
            Error::WrongPassword(String::new()),
            Error::Locked(String::new()),
            store(StoreErrorKind::NoSuchBucket),
            store(StoreErrorKind::Auth),
            store(StoreErrorKind::AccessDenied),
            store(StoreErrorKind::Unreachable),
            store(StoreErrorKind::Other),
            Error::StreamFailed(String::new()),
            Error::SnapshotNotFound(String::new()),
            Error::CheckFailed {
                count: 1,
                first: String::new(),
            },
            Error::io("x", std::io::Error::other("y")),
            Error::Internal(String::new()),
            Error::corrupt("pack 00000000", "x"),
            Error::Unsupported(String::new()),
        ];
        for e in repo_errors {
            let c = e.category();
            assert!(
                EXIT_CODES.iter().any(|(k, _, _)| *k == c),
                "{c} has no exit code"
            );
        }
        for c in crate::db::Error::ALL_CATEGORIES
            .iter()
            .chain(crate::mover::Error::OWN_CATEGORIES)
        {
            assert!(
                EXIT_CODES.iter().any(|(k, _, _)| k == c),
                "{c} has no exit code"
            );
        }
    }
}

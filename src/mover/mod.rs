//! The program inside mover Jobs (`lifeboat mover ...`): one unit of work (back up a
//! volume, a database or a namespace's manifests; apply retention; run one DR drill check;
//! write a drill's evidence report), progress reported to
//! the run object, and the result contract written to the termination message
//! ([`crate::jobs::result`]). It reads its repository settings from the same environment
//! as the engine CLI; credentials arrive as `secretKeyRef` environment variables.

pub mod backup;
pub mod check;
pub mod manifests;
pub mod progress;
pub mod report;
pub mod restore;
pub mod retention;

use std::io::Write;
use std::path::PathBuf;

use crate::cli::CliError;
use crate::crd::common::Failure;
use crate::jobs::mover::TERMINATION_LOG;
use crate::jobs::result::{MoverResult, RESULT_VERSION};
use crate::repo::SnapshotInfo;

/// Overrides where the result is written (tests, and running a mover by hand).
pub const TERMINATION_LOG_ENV: &str = "LIFEBOAT_TERMINATION_LOG";

/// The run a mover works for, from `--policy NS/NAME --backup NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub namespace: String,
    pub policy: String,
    /// Plural of the run object's kind (`backups`, `restores`, `drillruns`).
    pub run_plural: &'static str,
    pub run: String,
}

impl RunRef {
    /// Parses `NS/NAME`.
    pub fn for_backup(policy: &str, backup: &str) -> Result<Self, CliError> {
        let (namespace, name) = policy
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .ok_or_else(|| {
                CliError::input(format!("--policy must be NAMESPACE/NAME, got {policy:?}"))
            })?;
        Ok(RunRef {
            namespace: namespace.into(),
            policy: name.into(),
            run_plural: "backups",
            run: backup.into(),
        })
    }

    /// Parses `--restore NS/NAME` (restores carry no policy tags).
    pub fn for_restore(restore: &str) -> Result<Self, CliError> {
        let (namespace, name) = restore
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .ok_or_else(|| {
                CliError::input(format!("--restore must be NAMESPACE/NAME, got {restore:?}"))
            })?;
        Ok(RunRef {
            namespace: namespace.into(),
            policy: String::new(),
            run_plural: "restores",
            run: name.into(),
        })
    }
}

/// The tags every snapshot of a policy carries, so that `restic snapshots --tag` finds
/// them and retention can select one source's history.
pub mod tags {
    pub const LIFEBOAT: &str = "lifeboat";

    pub fn policy(namespace: &str, name: &str) -> String {
        format!("policy={namespace}/{name}")
    }

    pub fn source(kind: &str, name: &str) -> String {
        format!("source={kind}/{name}")
    }

    pub fn backup(name: &str) -> String {
        format!("backup={name}")
    }

    /// The value of a `key=value` tag, if present.
    pub fn value<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
        tags.iter()
            .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

impl RunRef {
    /// Tags of a snapshot of `source` made for this run.
    pub fn tags(&self, kind: &str, source: &str) -> Vec<String> {
        vec![
            tags::LIFEBOAT.to_string(),
            tags::policy(&self.namespace, &self.policy),
            tags::source(kind, source),
            tags::backup(&self.run),
        ]
    }
}

/// A successful backup's result.
pub fn backup_result(sn: &SnapshotInfo, elapsed: std::time::Duration) -> MoverResult {
    let stats = sn.summary.clone().unwrap_or_default();
    MoverResult {
        v: RESULT_VERSION,
        snapshot_id: Some(sn.id.clone()),
        snapshot_time: Some(sn.time.timestamp().to_string()),
        files: Some(stats.files_new + stats.files_changed + stats.files_unmodified),
        bytes_read: Some(stats.bytes_processed),
        bytes_added: Some(stats.data_added_packed),
        duration_seconds: Some(elapsed.as_secs_f64()),
        ..MoverResult::default()
    }
}

fn termination_log() -> PathBuf {
    std::env::var_os(TERMINATION_LOG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(TERMINATION_LOG))
}

/// Writes the result where Kubernetes picks it up and prints it on stdout.
pub fn write_result(result: &MoverResult) {
    let message = result.to_message();
    let path = termination_log();
    // Outside a pod the default path does not exist; stdout still carries the result.
    if let Err(e) = std::fs::write(&path, &message) {
        tracing::debug!(path = %path.display(), error = %e, "no termination log written");
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{message}");
}

/// Writes the result where Kubernetes picks it up, prints it on stdout, and turns a
/// failure into the command's error (so the exit code names the category too).
pub fn finish(outcome: Result<MoverResult, CliError>) -> Result<(), CliError> {
    let result = match &outcome {
        Ok(r) => r.clone(),
        Err(e) => MoverResult {
            v: RESULT_VERSION,
            failure: Some(Failure {
                reason: e.category.to_string(),
                message: e.message.clone(),
            }),
            ..MoverResult::default()
        },
    };
    write_result(&result);
    outcome.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_refs_and_tags() {
        let r = RunRef::for_backup("shop/orders", "orders-202601010010").unwrap();
        assert_eq!(
            r.tags("volume", "data"),
            [
                "lifeboat",
                "policy=shop/orders",
                "source=volume/data",
                "backup=orders-202601010010"
            ]
        );
        assert!(RunRef::for_backup("orders", "b").is_err());
        assert!(RunRef::for_backup("/orders", "b").is_err());
        let r = RunRef::for_restore("shop/r1").unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.run_plural, r.run.as_str()),
            ("shop", "restores", "r1")
        );
        assert!(RunRef::for_restore("r1").is_err());
        let t = r.tags("database", "pg");
        assert_eq!(tags::value(&t, "source"), Some("database/pg"));
        assert_eq!(tags::value(&t, "nothing"), None);
    }

    #[test]
    fn failures_become_parsable_results_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("term");
        // SAFETY: tests in this module do not read the variable concurrently.
        unsafe { std::env::set_var(TERMINATION_LOG_ENV, &log) };
        let err = finish(Err(CliError {
            category: "BucketNotFound",
            message: "NoSuchBucket: the bucket does not exist".into(),
        }))
        .unwrap_err();
        assert_eq!(err.category, "BucketNotFound");
        let written = std::fs::read_to_string(&log).unwrap();
        let back = MoverResult::parse(&written).unwrap();
        assert_eq!(back.failure.unwrap().reason, "BucketNotFound");
    }
}

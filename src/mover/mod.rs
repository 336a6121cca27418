//! The program inside mover Jobs (`lifeboat mover ...`): one unit of work (back up a
//! volume, a database or a namespace's manifests; apply retention; run one DR drill check;
//! write a drill's evidence report), progress reported to
//! the run object, and the result contract written to the termination message
//! ([`crate::jobs::result`]). Its command is the typed [`MoverCommand`] the controller
//! rendered into the Job's argv; it reaches its repository through [`RepoAccess`] (filled
//! by the CLI from the same environment as the engine commands); credentials arrive as
//! `secretKeyRef` environment variables ([`env`]). Nothing here knows the CLI: errors are
//! [`Error`], which the CLI turns into its exit code.

pub(crate) mod access;
pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod env;
pub(crate) mod error;
pub(crate) mod manifests;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod restore;
pub(crate) mod retention;
pub(crate) mod verify;

use std::io::Write;
use std::path::PathBuf;

pub(crate) use access::RepoAccess;
pub(crate) use error::Error;

use crate::crd::common::Failure;
use crate::jobs::mover::TERMINATION_LOG;
use crate::jobs::mover::command::{BackupRun, MoverCommand};
use crate::jobs::result::{MoverResult, RESULT_VERSION};
use crate::repo::SnapshotInfo;

/// Overrides where the result is written (tests, and running a mover by hand).
pub const TERMINATION_LOG_ENV: &str = "LIFEBOAT_TERMINATION_LOG";

/// Parses a container's argv (`mover ...`) and runs it. An argv that does not parse
/// still ends with a result, so the controller reports `Usage` rather than log lines.
pub(crate) fn run_args(args: &[String], repo: &RepoAccess) -> Result<(), Error> {
    match MoverCommand::parse(args) {
        Ok(cmd) => run(cmd, repo),
        Err(e) => finish(Err(e.into())),
    }
}

/// The mover's pod UID (downward API), recorded with its namespace in every repository
/// lock it takes.
pub const POD_UID_ENV: &str = "POD_UID";

/// The lock holder a mover in pod `uid` of `namespace` records:
/// `pod:<namespace>/<uid>` (the pod's name is the lock's host name).
pub fn lock_holder(namespace: &str, uid: &str) -> String {
    format!("pod:{namespace}/{uid}")
}

/// Runs one mover command; its result has been written when this returns.
pub(crate) fn run(cmd: MoverCommand, repo: &RepoAccess) -> Result<(), Error> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(ns), Some(uid)) = (var("POD_NAMESPACE"), var(POD_UID_ENV)) {
        crate::repo::set_holder(lock_holder(&ns, &uid));
    }
    match cmd {
        MoverCommand::Backup(b) => backup::run(b, repo),
        MoverCommand::Retention(r) => finish(retention::run(r, repo)),
        MoverCommand::ForgetPolicy(f) => finish(retention::forget_policy(f, repo)),
        MoverCommand::Restore(r) => restore::run(r, repo),
        MoverCommand::Check(c) => check::run(c, repo),
        MoverCommand::Report(r) => report::run(r, repo),
        MoverCommand::Verify(v) => verify::run(v, repo),
    }
}

/// The run a mover works for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub namespace: String,
    pub policy: String,
    pub run: String,
    pub(crate) owner: Option<crate::jobs::mover::command::SnapshotOwner>,
}

impl RunRef {
    /// A Backup of a policy (the Backup lives in the policy's namespace).
    pub(crate) fn for_backup(run: &BackupRun) -> Self {
        RunRef {
            namespace: run.policy.namespace.clone(),
            policy: run.policy.name.clone(),
            run: run.backup.clone(),
            owner: run.owner.clone(),
        }
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
        let mut t = vec![
            tags::LIFEBOAT.to_string(),
            tags::policy(&self.namespace, &self.policy),
            tags::source(kind, source),
            tags::backup(&self.run),
        ];
        t.extend(self.owner.iter().flat_map(|o| o.tags()));
        t
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

/// The result's failure for an error (its category is the reason the run object shows),
/// logged with its retry class for whoever reads the pod's log.
fn failure(e: &Error) -> Failure {
    tracing::warn!(category = e.category(), retry = ?e.retry_class(), error = %e, "mover failed");
    Failure {
        reason: e.category().to_string(),
        message: e.to_string(),
    }
}

/// Writes the result where Kubernetes picks it up, prints it on stdout, and turns a
/// failure into the command's error (so the exit code names the category too).
pub(crate) fn finish(outcome: Result<MoverResult, Error>) -> Result<(), Error> {
    let result = match &outcome {
        Ok(r) => r.clone(),
        Err(e) => MoverResult {
            v: RESULT_VERSION,
            failure: Some(failure(e)),
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
        let mut r = RunRef::for_backup(&BackupRun {
            policy: crate::jobs::mover::command::NamespacedName::new("shop", "orders"),
            backup: "orders-202601010010".into(),
            owner: None,
        });
        assert_eq!(
            r.tags("volume", "data"),
            [
                "lifeboat",
                "policy=shop/orders",
                "source=volume/data",
                "backup=orders-202601010010"
            ]
        );
        let t = r.tags("database", "pg");
        assert_eq!(tags::value(&t, "source"), Some("database/pg"));
        assert_eq!(tags::value(&t, "nothing"), None);
        r.owner = Some(crate::jobs::mover::command::SnapshotOwner {
            cluster: "c1".into(),
            policy_uid: "u1".into(),
        });
        let t = r.tags("volume", "data");
        assert_eq!(tags::value(&t, "cluster"), Some("c1"));
        assert_eq!(tags::value(&t, "policy-uid"), Some("u1"));
        assert_eq!(tags::value(&t, "policy"), Some("shop/orders"));
    }

    #[test]
    fn failures_become_parsable_results_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("term");
        // SAFETY: tests in this module do not read the variable concurrently.
        unsafe { std::env::set_var(TERMINATION_LOG_ENV, &log) };
        let err = finish(Err(Error::TargetExists(
            "database \"shop\" on db already holds 3 table(s)".into(),
        )))
        .unwrap_err();
        assert_eq!(err.category(), "TargetExists");
        let written = std::fs::read_to_string(&log).unwrap();
        // The contract the controllers parse, byte for byte.
        assert_eq!(
            written,
            r#"{"v":1,"failure":{"reason":"TargetExists","message":"database \"shop\" on db already holds 3 table(s)"}}"#
        );
        let back = MoverResult::parse(&written).unwrap();
        assert_eq!(back.failure.unwrap().reason, "TargetExists");
        // An argv that does not parse is reported the same way, as `Usage`.
        let err = run_args(
            &["mover".to_string(), "prune".to_string()],
            &RepoAccess::default(),
        )
        .unwrap_err();
        assert_eq!(err.category(), "Usage");
        let back = MoverResult::parse(&std::fs::read_to_string(&log).unwrap()).unwrap();
        let f = back.failure.unwrap();
        assert_eq!(f.reason, "Usage");
        assert!(f.message.contains("got \"prune\""), "{}", f.message);
    }
}

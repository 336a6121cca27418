//! The mover's command line as one type. The controllers build a [`MoverCommand`] and
//! render it into a Job's `args` ([`MoverCommand::to_args`]); inside the Job the mover
//! parses the same argv back ([`MoverCommand::parse`]). It lives in `jobs` next to the
//! result contract (`jobs::result`), its twin in the other direction: the controllers
//! write this one and read that one, the mover the reverse.
//!
//! Render (here) and parse (`parse.rs`) sit side by side so they cannot drift; a
//! round-trip test covers every variant. The parser is written by hand rather than by clap because the grammar
//! is only `mover <command> [<kind>]` followed by `--flag value`, `--flag=value` and
//! `--switch`: one definition of each flag here beats a clap mirror in `src/cli` that
//! must agree with a renderer in `jobs`, and it keeps clap out of everything below the
//! CLI (`lifeboat mover ...` hands its arguments through untouched). A flag that takes a
//! value always consumes the next token, so values starting with `-` (dump arguments,
//! negative bounds) need no escaping.
//!
//! Secrets never travel here: credentials reach the mover as `secretKeyRef` environment
//! variables and mounted files ([`super::store_env`]).

use std::fmt;
use std::path::PathBuf;

use crate::crd::backup_policy::DatabaseEngine;
use crate::crd::common::Retention;
use crate::crd::dr_drill::Expectation;
use crate::db::Engine;
use crate::drill::checks::FileDigest;

/// `NAMESPACE/NAME` of a namespaced object (a policy, a Restore, a DrillRun).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespacedName {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl NamespacedName {
    pub(crate) fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn parse(flag: &'static str, value: String) -> Result<Self, ArgvError> {
        match value.split_once('/') {
            Some((ns, n)) if !ns.is_empty() && !n.is_empty() => Ok(Self::new(ns, n)),
            _ => Err(ArgvError::Invalid {
                flag,
                expected: "NAMESPACE/NAME",
                value,
            }),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl From<DatabaseEngine> for Engine {
    fn from(e: DatabaseEngine) -> Self {
        match e {
            DatabaseEngine::Postgres => Engine::Postgres,
            DatabaseEngine::Mysql => Engine::Mysql,
        }
    }
}

/// One unit of mover work: what a mover Job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MoverCommand {
    /// `mover backup volume|database|manifests`: one source of a Backup.
    Backup(BackupCommand),
    /// `mover restore volume|database|manifests`: one source of a Restore.
    Restore(RestoreCommand),
    /// `mover retention`: a policy's keep rules, then prune.
    Retention(ApplyRetention),
    /// `mover forget-policy`: every snapshot of a deleted policy (`deletionPolicy:
    /// Delete`), then prune.
    ForgetPolicy(ForgetPolicy),
    /// `mover check sql|freshness|files|http`: one DR drill check.
    Check(CheckCommand),
    /// `mover report`: a finished drill run's evidence report.
    Report(WriteReport),
    /// `mover verify`: check a repository (with a share of its data), so damage is found
    /// before a restore needs the data.
    Verify(VerifyRepository),
}

impl MoverCommand {
    /// Whether the mover talks to the API server: only manifest movers (they read or write
    /// the namespace's objects, through a RoleBinding of their run). The others get no
    /// ServiceAccount token at all.
    pub(crate) fn needs_api(&self) -> bool {
        matches!(
            self,
            MoverCommand::Backup(BackupCommand::Manifests(_))
                | MoverCommand::Restore(RestoreCommand::Manifests(_))
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BackupCommand {
    Volume(BackupVolume),
    Database(BackupDatabase),
    Manifests(BackupManifests),
}

/// The run a backup mover works for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackupRun {
    pub(crate) policy: NamespacedName,
    /// The Backup (run object), in the policy's namespace.
    pub(crate) backup: String,
    /// Recorded as tags on every snapshot the run writes. `None`: a hand-run mover or a
    /// Job rendered by an older controller (snapshots without owner tags).
    pub(crate) owner: Option<SnapshotOwner>,
}

/// Who a policy's snapshots belong to besides its `namespace/name`: the cluster that
/// wrote them and the policy object's UID (tags `cluster=` and `policy-uid=`). Two clusters
/// sharing a repository, or a policy deleted and made again under the same name, share
/// the `policy=` tag; retention and deletion act only on snapshots that do not carry
/// another owner (docs/backup.md, "Whose snapshots retention touches").
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotOwner {
    pub(crate) cluster: String,
    pub(crate) policy_uid: String,
}

impl SnapshotOwner {
    /// The owner of `policy`'s snapshots in cluster `cluster`; `None` when either is
    /// unknown (a policy not read from the API server has no UID).
    pub(crate) fn of_policy(
        cluster: Option<&str>,
        policy: &crate::crd::backup_policy::BackupPolicy,
    ) -> Option<Self> {
        Some(SnapshotOwner {
            cluster: cluster?.to_string(),
            policy_uid: policy.metadata.uid.clone()?,
        })
    }

    /// The tags a snapshot of this owner carries.
    pub(crate) fn tags(&self) -> [String; 2] {
        [
            format!("cluster={}", self.cluster),
            format!("policy-uid={}", self.policy_uid),
        ]
    }
}

/// Back up a mounted volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackupVolume {
    /// Source PVC name (recorded in tags and the result).
    pub(crate) source: String,
    /// Where the volume is mounted.
    pub(crate) path: PathBuf,
    /// Glob patterns to exclude.
    pub(crate) excludes: Vec<String>,
    pub(crate) run: BackupRun,
}

/// Dump a database into the repository (login from `LIFEBOAT_DB_USER` /
/// `LIFEBOAT_DB_PASSWORD`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackupDatabase {
    /// Database source name in the policy.
    pub(crate) source: String,
    pub(crate) engine: Engine,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    /// Database to dump; `None`: every database of the server.
    pub(crate) database: Option<String>,
    /// Extra arguments for the dump tool.
    pub(crate) extra_args: Vec<String>,
    pub(crate) run: BackupRun,
}

/// Save the namespace's Kubernetes objects as YAML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackupManifests {
    /// Namespace whose objects are saved.
    pub(crate) namespace: String,
    /// `Kind` or `Kind.group`; empty: common workload kinds.
    pub(crate) kinds: Vec<String>,
    /// Label selector.
    pub(crate) selector: Option<String>,
    /// Also save Secrets (service-account token Secrets never).
    pub(crate) include_secrets: bool,
    /// Where to stage the YAML before the backup; `None`: the mover's default.
    pub(crate) staging: Option<PathBuf>,
    pub(crate) run: BackupRun,
}

/// Apply a policy's retention to its snapshots and prune.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApplyRetention {
    pub(crate) policy: NamespacedName,
    /// The Backup whose success triggered this run (for the record).
    pub(crate) backup: Option<String>,
    pub(crate) keep: Retention,
    /// The sources (`KIND/NAME`, as in their `source=` tag) whose backup succeeded in the
    /// run: only their histories are thinned. Empty: every source of the policy (a run by
    /// hand, or a Job rendered by an older controller).
    pub(crate) sources: Vec<String>,
    /// Plan only: report what would be forgotten.
    pub(crate) dry_run: bool,
    /// Runs (Backup names) whose snapshots are kept whatever the rules say: the policy's
    /// newest restore point a drill verified, so that retention never leaves a policy
    /// without one.
    pub(crate) keep_backups: Vec<String>,
    /// Only snapshots not tagged with another owner are thinned. `None`: every snapshot
    /// with the policy's identity tag (a run by hand, or an older controller's Job).
    pub(crate) owner: Option<SnapshotOwner>,
}

/// Forget every snapshot carrying a policy's identity tag and prune: the work of a
/// `deletionPolicy: Delete` policy's finalizer. No keep rule applies; the identity is
/// the only selector, so it never reaches another policy's snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ForgetPolicy {
    pub(crate) policy: NamespacedName,
    /// As for [`ApplyRetention::owner`].
    pub(crate) owner: Option<SnapshotOwner>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RestoreCommand {
    Volume(RestoreVolume),
    Database(RestoreDatabase),
    Manifests(RestoreManifests),
}

/// The run a restore mover works for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestoreRun {
    /// The Restore (for the mover's log).
    pub(crate) restore: NamespacedName,
    /// The restore point's policy: the snapshot must carry its `policy=NS/NAME` tag.
    pub(crate) policy: NamespacedName,
    /// ID of the snapshot to restore.
    pub(crate) snapshot: String,
    /// Source name (the status entry and progress key).
    pub(crate) source: String,
}

/// Restore a volume snapshot into a mounted (empty) volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestoreVolume {
    /// Where the target volume is mounted (read-write).
    pub(crate) target: PathBuf,
    /// Create device nodes and keep set-user-ID / set-group-ID bits recorded in the
    /// snapshot (`--devices-and-setid`); off: a snapshot is input from whoever can write
    /// the repository.
    pub(crate) devices_and_setid: bool,
    pub(crate) run: RestoreRun,
}

/// Restore a database dump into a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestoreDatabase {
    pub(crate) engine: Engine,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    /// Database to restore into; `None`: the dumped database's name. Ignored for
    /// all-databases dumps, which recreate their own databases.
    pub(crate) database: Option<String>,
    /// Create the database when it does not exist.
    pub(crate) create_database: bool,
    /// PostgreSQL: do not restore ownership and privileges.
    pub(crate) no_owner: bool,
    /// Keep trying to connect this long; `None`: the mover's default.
    pub(crate) wait_seconds: Option<u64>,
    pub(crate) run: RestoreRun,
}

/// Re-apply saved manifests into a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestoreManifests {
    /// The namespace objects are applied into; the mover refuses any other.
    pub(crate) namespace: String,
    /// `Kind` or `Kind.group`; empty: every saved kind.
    pub(crate) kinds: Vec<String>,
    /// Suspend CronJobs, turn LoadBalancer/NodePort Services into ClusterIP, drop Ingresses.
    pub(crate) suppress_side_effects: bool,
    /// Scale Deployments, StatefulSets and ReplicaSets to zero replicas.
    pub(crate) scale_to_zero: bool,
    /// Where the snapshot's YAML is unpacked; `None`: the mover's default.
    pub(crate) staging: Option<PathBuf>,
    pub(crate) run: RestoreRun,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CheckCommand {
    Sql(CheckSql),
    Freshness(CheckFreshness),
    Files(CheckFiles),
    Http(CheckHttp),
}

/// The restored database a check connects to (login from `LIFEBOAT_DB_USER` /
/// `LIFEBOAT_DB_PASSWORD`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DbTarget {
    pub(crate) engine: Engine,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) database: String,
}

/// A SQL check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckSql {
    pub(crate) db: DbTarget,
    pub(crate) test: SqlTest,
}

/// What a SQL check compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SqlTest {
    /// A query returning one value, against at most one bound of `expect`.
    Query { query: String, expect: Expectation },
    /// Every table's row count against the counts recorded in the snapshot.
    MatchesBackup {
        /// The database snapshot that was restored.
        snapshot: String,
    },
}

/// The newest business timestamp of the restored data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckFreshness {
    pub(crate) db: DbTarget,
    pub(crate) query: String,
}

/// Files of a restored volume: existence and checksums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckFiles {
    /// Where the restored volume is mounted.
    pub(crate) root: PathBuf,
    /// Paths (relative to the volume root) that must exist.
    pub(crate) exist: Vec<String>,
    /// Rendered `PATH=SHA256`, or `PATH` to compare with the snapshot. NB: a path of
    /// the form `x=<64 hex digits>` without a digest reads back as path `x` with one.
    pub(crate) checksums: Vec<FileDigest>,
    /// The volume snapshot that was restored (for checksums without a value).
    pub(crate) snapshot: Option<String>,
}

/// An HTTP endpoint inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckHttp {
    pub(crate) url: String,
    pub(crate) expect_status: u16,
    /// Give up after this many seconds.
    pub(crate) timeout_seconds: u64,
}

/// Write a finished drill run's evidence report next to the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WriteReport {
    /// The DrillRun.
    pub(crate) run: NamespacedName,
    /// The run's record as the controller read it from the API (a JSON DrillRun, mounted
    /// from a ConfigMap): the mover reads nothing from the API itself.
    pub(crate) record: std::path::PathBuf,
    /// The installation's signing key (PEM, a Secret volume of the controller's
    /// namespace): the mover signs the report and advances the drill's anchor.
    pub(crate) signing_key: Option<std::path::PathBuf>,
    /// The drill's current anchor (a signed envelope) as the controller read it; absent
    /// for a drill's first signed report.
    pub(crate) anchor: Option<std::path::PathBuf>,
}

/// Check a store's repository: its structure, and the data of a subset of its packs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VerifyRepository {
    /// Which packs to read: `10%`, `1/5` (bucket 1 of 5: run `n/5` on day n to read all
    /// of it every five runs) or `500MiB`; `None`: structure only.
    pub(crate) read_data_subset: Option<String>,
}

/// Defaults of flags the controllers always render (hand-run movers may omit them).
const DEFAULT_EXPECT_STATUS: u16 = 200;
const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

/// An argv the mover does not understand (exit code 2, category `Usage`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ArgvError {
    #[error("`{after}` expects one of {expected}, got {got:?}")]
    UnknownCommand {
        after: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("`mover {command}` takes no argument {token:?}")]
    Unexpected {
        command: &'static str,
        token: String,
    },
    #[error(
        "`mover {command}` has no option {flag} (repository options go before `mover` or in the environment)"
    )]
    UnknownFlag { command: &'static str, flag: String },
    #[error("--{0} needs a value")]
    MissingValue(&'static str),
    #[error("--{0} is given more than once")]
    Repeated(&'static str),
    #[error("`mover {command}` needs --{flag}")]
    Missing {
        command: &'static str,
        flag: &'static str,
    },
    #[error("--{flag} must be {expected}, got {value:?}")]
    Invalid {
        flag: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("`mover {command}`: {what}")]
    Conflict {
        command: &'static str,
        what: &'static str,
    },
}

// ---------------------------------------------------------------------------------------
// Rendering

/// Builds an argv, one flag at a time.
struct Argv(Vec<String>);

impl Argv {
    fn new(words: &[&str]) -> Self {
        Argv(words.iter().map(|w| w.to_string()).collect())
    }

    fn value(&mut self, flag: &str, v: impl fmt::Display) {
        self.0.push(format!("--{flag}"));
        self.0.push(v.to_string());
    }

    fn opt(&mut self, flag: &str, v: Option<impl fmt::Display>) {
        if let Some(v) = v {
            self.value(flag, v);
        }
    }

    fn each(&mut self, flag: &str, vs: &[String]) {
        for v in vs {
            self.value(flag, v);
        }
    }

    /// `--flag=value`: reads unambiguously even to a person when `value` starts with `-`.
    fn attached(&mut self, flag: &str, vs: &[String]) {
        for v in vs {
            self.0.push(format!("--{flag}={v}"));
        }
    }

    fn list(&mut self, flag: &str, vs: &[String]) {
        if !vs.is_empty() {
            self.value(flag, vs.join(","));
        }
    }

    fn switch(&mut self, flag: &str, on: bool) {
        if on {
            self.0.push(format!("--{flag}"));
        }
    }

    fn path(&mut self, flag: &str, p: &std::path::Path) {
        self.value(flag, p.display());
    }

    fn backup_run(&mut self, r: &BackupRun) {
        self.value("policy", &r.policy);
        self.value("backup", &r.backup);
        self.owner(r.owner.as_ref());
    }

    fn owner(&mut self, o: Option<&SnapshotOwner>) {
        if let Some(o) = o {
            self.value("cluster", &o.cluster);
            self.value("policy-uid", &o.policy_uid);
        }
    }

    fn restore_run(&mut self, r: &RestoreRun) {
        self.value("restore", &r.restore);
        self.value("policy", &r.policy);
        self.value("snapshot", &r.snapshot);
        self.value("source", &r.source);
    }

    fn db(&mut self, d: &DbTarget) {
        self.value("engine", d.engine);
        self.value("host", &d.host);
        self.opt("port", d.port);
        self.value("database", &d.database);
    }
}

impl MoverCommand {
    /// The container's `args`: `["mover", "backup", "volume", "--source", ...]`.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let a = match self {
            MoverCommand::Backup(BackupCommand::Volume(c)) => {
                let mut a = Argv::new(&["mover", "backup", "volume"]);
                a.value("source", &c.source);
                a.path("path", &c.path);
                a.each("exclude", &c.excludes);
                a.backup_run(&c.run);
                a
            }
            MoverCommand::Backup(BackupCommand::Database(c)) => {
                let mut a = Argv::new(&["mover", "backup", "database"]);
                a.value("source", &c.source);
                a.value("engine", c.engine);
                a.value("host", &c.host);
                a.opt("port", c.port);
                a.opt("database", c.database.as_ref());
                a.attached("extra-arg", &c.extra_args);
                a.backup_run(&c.run);
                a
            }
            MoverCommand::Backup(BackupCommand::Manifests(c)) => {
                let mut a = Argv::new(&["mover", "backup", "manifests"]);
                a.value("namespace", &c.namespace);
                a.list("kinds", &c.kinds);
                a.opt("selector", c.selector.as_ref());
                a.switch("include-secrets", c.include_secrets);
                a.opt("staging", c.staging.as_ref().map(|p| p.display()));
                a.backup_run(&c.run);
                a
            }
            MoverCommand::Retention(c) => {
                let mut a = Argv::new(&["mover", "retention"]);
                a.value("policy", &c.policy);
                let k = &c.keep;
                a.opt("keep-last", k.keep_last);
                a.opt("keep-hourly", k.keep_hourly);
                a.opt("keep-daily", k.keep_daily);
                a.opt("keep-weekly", k.keep_weekly);
                a.opt("keep-monthly", k.keep_monthly);
                a.opt("keep-yearly", k.keep_yearly);
                a.opt("max-forget-percent", k.max_forget_percent);
                a.opt("backup", c.backup.as_ref());
                a.each("source", &c.sources);
                a.each("keep-backup", &c.keep_backups);
                a.switch("dry-run", c.dry_run);
                a.owner(c.owner.as_ref());
                a
            }
            MoverCommand::ForgetPolicy(c) => {
                let mut a = Argv::new(&["mover", "forget-policy"]);
                a.value("policy", &c.policy);
                a.owner(c.owner.as_ref());
                a
            }
            MoverCommand::Restore(RestoreCommand::Volume(c)) => {
                let mut a = Argv::new(&["mover", "restore", "volume"]);
                a.path("target", &c.target);
                a.switch("devices-and-setid", c.devices_and_setid);
                a.restore_run(&c.run);
                a
            }
            MoverCommand::Restore(RestoreCommand::Database(c)) => {
                let mut a = Argv::new(&["mover", "restore", "database"]);
                a.value("engine", c.engine);
                a.value("host", &c.host);
                a.opt("port", c.port);
                a.opt("database", c.database.as_ref());
                a.switch("create-database", c.create_database);
                a.switch("no-owner", c.no_owner);
                a.opt("wait-seconds", c.wait_seconds);
                a.restore_run(&c.run);
                a
            }
            MoverCommand::Restore(RestoreCommand::Manifests(c)) => {
                let mut a = Argv::new(&["mover", "restore", "manifests"]);
                a.value("namespace", &c.namespace);
                a.list("kinds", &c.kinds);
                a.switch("suppress-side-effects", c.suppress_side_effects);
                a.switch("scale-to-zero", c.scale_to_zero);
                a.opt("staging", c.staging.as_ref().map(|p| p.display()));
                a.restore_run(&c.run);
                a
            }
            MoverCommand::Check(CheckCommand::Sql(c)) => {
                let mut a = Argv::new(&["mover", "check", "sql"]);
                a.db(&c.db);
                match &c.test {
                    SqlTest::MatchesBackup { snapshot } => {
                        a.switch("matches-backup", true);
                        a.value("snapshot", snapshot);
                    }
                    SqlTest::Query { query, expect } => {
                        a.value("query", query);
                        a.opt("equals", expect.equals.as_ref());
                        a.opt("at-least", expect.at_least.as_ref());
                        a.opt("at-most", expect.at_most.as_ref());
                    }
                }
                a
            }
            MoverCommand::Check(CheckCommand::Freshness(c)) => {
                let mut a = Argv::new(&["mover", "check", "freshness"]);
                a.db(&c.db);
                a.value("query", &c.query);
                a
            }
            MoverCommand::Check(CheckCommand::Files(c)) => {
                let mut a = Argv::new(&["mover", "check", "files"]);
                a.path("root", &c.root);
                a.each("exist", &c.exist);
                for d in &c.checksums {
                    match &d.sha256 {
                        Some(h) => a.value("checksum", format!("{}={h}", d.path)),
                        None => a.value("checksum", &d.path),
                    }
                }
                a.opt("snapshot", c.snapshot.as_ref());
                a
            }
            MoverCommand::Check(CheckCommand::Http(c)) => {
                let mut a = Argv::new(&["mover", "check", "http"]);
                a.value("url", &c.url);
                a.value("expect-status", c.expect_status);
                a.value("timeout-seconds", c.timeout_seconds);
                a
            }
            MoverCommand::Report(c) => {
                let mut a = Argv::new(&["mover", "report"]);
                a.value("run", &c.run);
                a.path("record", &c.record);
                a.opt("signing-key", c.signing_key.as_ref().map(|p| p.display()));
                a.opt("anchor", c.anchor.as_ref().map(|p| p.display()));
                a
            }
            MoverCommand::Verify(c) => {
                let mut a = Argv::new(&["mover", "verify"]);
                a.opt("read-data-subset", c.read_data_subset.as_ref());
                a
            }
        };
        a.0
    }
}

mod parse;

#[cfg(test)]
mod tests;

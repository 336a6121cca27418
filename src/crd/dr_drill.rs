//! `DRDrill` (a scheduled restore simulation with checks and objectives) and `DrillRun`
//! (the immutable record of one execution: restore point, timeline, checks, measured RTO
//! and RPO, outcome, and the evidence report's location and digest).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::{DURATION_PATTERN, Failure, ScheduleSpec};
use super::restore::{EphemeralDatabase, LocalRef};
use super::rules::{
    MAX_DURATION_LENGTH, MAX_TIME_LENGTH, at_least, exactly_one_of, immutable, number,
    positive_duration, rfc3339_time, unique, without_rules,
};

/// A scheduled disaster-recovery drill of a BackupPolicy.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "DRDrill",
    plural = "drdrills",
    namespaced,
    status = "DRDrillStatus",
    shortname = "drill",
    category = "lifeboat",
    doc = "A scheduled restore simulation: restores a policy's restore point into an isolated sandbox namespace, runs checks, measures RTO and RPO, records a DrillRun, and cleans up.",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policyRef.name"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule.cron"),
    printcolumn(
        name = "Last Outcome",
        type_ = "string",
        json_path = ".status.lastOutcome"
    ),
    printcolumn(name = "Last Run", type_ = "date", json_path = ".status.lastRunTime"),
    printcolumn(name = "RTO", type_ = "string", json_path = ".status.lastRTO"),
    printcolumn(name = "Next Run", type_ = "string", json_path = ".status.nextRunTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DRDrillSpec {
    /// The BackupPolicy whose restore points are drilled. Immutable: it is the drill's
    /// identity. Its runs, their hash-chained evidence reports, `RTODemonstrated` and
    /// `DrillOverdue` are all about that policy; a drill of another policy is a new drill.
    #[x_kube(validation = immutable(
        "policyRef",
        "a drill's runs and its chain of evidence reports are about one policy; create a new DRDrill to drill another",
    ))]
    pub policy_ref: LocalRef,
    /// When drills run.
    pub schedule: ScheduleSpec,
    /// Which restore point each run restores.
    #[serde(default)]
    pub restore_point: RestorePointSelector,
    /// The isolated namespace each run restores into.
    #[serde(default)]
    pub sandbox: Sandbox,
    /// What is restored.
    #[serde(default)]
    pub restore: DrillRestore,
    /// Checks that must pass for the run to pass. Names are unique; at most 64 checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = unique("checks", "name"))]
    pub checks: Vec<Check>,
    /// Recovery objectives the runs are measured against.
    #[serde(default)]
    pub objectives: DrillObjectives,
    /// Finished DrillRuns to keep, at least 1 (and at least `objectives.rtoWindow`, which
    /// the controller checks). Default 10. Reports stay in the store regardless.
    #[x_kube(validation = at_least("historyLimit", 1, " (finished DrillRuns are the drill's evidence)"))]
    pub history_limit: Option<u32>,
    /// Give up on a run that is still provisioning, restoring or verifying this long after
    /// it started. Default `2h`. Reporting and cleanup have their own limits (10 minutes
    /// each), so a run always ends with its report and a clean sandbox. Not zero.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("runDeadline"))]
    pub run_deadline: Option<String>,
    /// The drill is overdue (condition `DrillOverdue`) when no run has passed for this
    /// long. Default: twice the schedule's interval (e.g. 14 days for a weekly drill),
    /// counted from the last pass or, before the first pass, from the drill's creation.
    /// Not zero.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("overdueAfter"))]
    pub overdue_after: Option<String>,
}

/// Which restore point a run restores.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.strategy) && self.strategy == 'PointInTime') == has(self.time)")
    .message("restorePoint.time is required with strategy PointInTime and only used with it")
    .reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("(has(self.strategy) && self.strategy == 'RandomWithin') == has(self.within)")
    .message("restorePoint.within is required with strategy RandomWithin and only used with it")
    .reason(Reason::FieldValueInvalid))]
pub struct RestorePointSelector {
    /// `Latest` (default), `Oldest`, `Random`, `RandomWithin` and `Unverified` (prove
    /// that older retained copies still restore), or `PointInTime`. Candidates are the
    /// restore points the repository keeps once the store's snapshots are listed.
    #[serde(default)]
    pub strategy: RestorePointStrategy,
    /// RFC 3339 time for `PointInTime` (e.g. `2026-01-31T23:00:00Z`): the newest restore
    /// point at or before it. Only with `PointInTime`.
    #[schemars(length(max = MAX_TIME_LENGTH))]
    #[x_kube(validation = rfc3339_time("time"))]
    pub time: Option<String>,
    /// The window of `RandomWithin`, back from the run's start (e.g. `30d`). Only with
    /// `RandomWithin`.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("within"))]
    pub within: Option<String>,
}

/// How the restore point is chosen among the retained restore points.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RestorePointStrategy {
    /// The newest successful restore point.
    #[default]
    Latest,
    /// The oldest one still retained.
    Oldest,
    /// A different one each run, chosen at random among the retained.
    Random,
    /// The newest at or before `time`.
    PointInTime,
    /// Chosen at random among those made within `within` before the run.
    RandomWithin,
    /// The oldest that no passed run of this drill has verified yet (the oldest when all
    /// are verified).
    Unverified,
}

/// The scratch namespace of a run.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// Prefix of the sandbox namespace's name; the run's namespace and name are appended
    /// (after a `-` unless the prefix ends with one). Lowercase letters, digits and `-`, at most 20
    /// characters. Default `drill-`.
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][-a-z0-9]*$')")
        .message("namespacePrefix must be 1-20 lowercase letters, digits or '-', not starting with '-'")
        .reason(Reason::FieldValueInvalid))]
    pub namespace_prefix: Option<String>,
    /// How long a sandbox kept after a failed run (`keepOnFailure`) lives after the run
    /// finished; then it is deleted. Not zero. Default `1h`.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("ttl"))]
    pub ttl: Option<String>,
    /// Keep the sandbox of a failed run (until its TTL) for investigation.
    #[serde(default)]
    pub keep_on_failure: bool,
    /// Hard limits of the sandbox's ResourceQuota, e.g. `{cpu: "4", memory: 8Gi}`, each
    /// a positive quantity; at most 32. Default: no quota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = quota_limits)]
    #[x_kube(validation = Rule::new("self.all(k, isQuantity(string(self[k])) && quantity(string(self[k])).isGreaterThan(quantity('0')))")
        .message("resourceQuota: every limit must be a positive quantity such as 4, 500m or 8Gi")
        .reason(Reason::FieldValueInvalid))]
    pub resource_quota: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// `DenyAll` (default): a NetworkPolicy that denies all ingress and all egress except
    /// DNS and the sandbox itself, so restored applications cannot reach production.
    /// `None`: no NetworkPolicy.
    #[serde(default)]
    pub network_policy: SandboxNetworkPolicy,
    /// The Pod Security Standards level restored workloads are held to (see the type).
    // The field's own doc does not reach the schema of an optional enum: the type's does.
    // Optional and left out when unset: the spec is copied into a DrillRun's status, and a
    // controller running against CRDs older than this field (an upgrade in progress) must
    // still be able to write that status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<SandboxPodSecurity>,
}

/// The Pod Security Standards level restored workloads are held to: `Restricted`
/// (default) or `Baseline`, never more permissive than the level the drill's own
/// namespace enforces (a stricter source level wins). A restored workload whose pods
/// break the level fails the run's `pod-security` check, naming each violation. The
/// sandbox namespace enforces this level, or `baseline` while volumes are restored
/// into it (the volume mover writes files of every owner); see docs/drills.md.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum SandboxPodSecurity {
    /// Kubernetes' `restricted` level: non-root, no privilege escalation, all
    /// capabilities dropped, a seccomp profile, and the restricted volume types.
    #[default]
    Restricted,
    /// Kubernetes' `baseline` level: no privileged containers, host namespaces, host
    /// paths or ports, or capabilities beyond the default set.
    Baseline,
}

/// Bounds the quota map (its rule visits every entry and parses each value).
fn quota_limits(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), 32.into());
    if let Some(values) = schema
        .get_mut("additionalProperties")
        .and_then(|v| v.as_object_mut())
    {
        values.insert("maxLength".into(), 64.into());
    }
}

/// Network isolation of a sandbox.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum SandboxNetworkPolicy {
    /// Deny all ingress, and all egress except DNS and the sandbox itself.
    #[default]
    DenyAll,
    /// No NetworkPolicy.
    None,
}

/// What a drill restores.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillRestore {
    /// Restore the policy's volumes into the sandbox. Default true.
    pub volumes: Option<bool>,
    /// Database sources to restore into an ephemeral server started in the sandbox.
    /// Default: every database source, with the default image for its engine and version.
    /// Each source at most once; at most 32 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = unique("databases", "source"))]
    pub databases: Vec<DrillDatabase>,
    /// Re-apply the saved manifests (side effects always suppressed: CronJobs
    /// suspended, LoadBalancer/NodePort Services turned into ClusterIP, Ingresses dropped).
    /// Default false.
    #[serde(default)]
    pub manifests: bool,
}

/// One database restored into an ephemeral server.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillDatabase {
    /// The database source's name in the policy (at most 40 characters, as there).
    #[schemars(length(max = 40))]
    pub source: String,
    /// The throwaway server.
    #[serde(default)]
    pub server: EphemeralDatabase,
}

/// One check. Set `name` and exactly one of the check kinds.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = exactly_one_of(&["sql", "files", "command", "http", "freshness"], "checks[]"))]
pub struct Check {
    /// Unique name, shown in the run record and report.
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 40))]
    pub name: String,
    /// Run a SQL query against a restored database.
    pub sql: Option<SqlCheck>,
    /// Verify files in a restored volume.
    pub files: Option<FilesCheck>,
    /// Run a container in the sandbox; it must exit 0.
    pub command: Option<CommandCheck>,
    /// Call a URL inside the sandbox; it must answer with the expected status.
    pub http: Option<HttpCheck>,
    /// Query the newest business timestamp of a restored database; the real RPO of the
    /// restored data is measured from it.
    pub freshness: Option<FreshnessCheck>,
    /// Give up on this check after this long (not zero). Default `5m`.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("timeout"))]
    pub timeout: Option<String>,
}

/// A SQL check: a `query` with an `expect`ation, or `matchesBackup`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.query) != (has(self.matchesBackup) && self.matchesBackup)")
        .message("sql: set either query (with expect) or matchesBackup: true")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new("has(self.expect) == has(self.query)")
        .message("sql.expect goes with query: a query needs one, matchesBackup takes none")
        .field_path(".expect")
        .reason(Reason::FieldValueInvalid),
)]
pub struct SqlCheck {
    /// The database source's name in the policy.
    pub database: String,
    /// Query returning one value (first column of the first row). Not needed with
    /// `matchesBackup`.
    pub query: Option<String>,
    /// What the value must be.
    pub expect: Option<Expectation>,
    /// Every table's row count must equal the count recorded when the backup was taken.
    #[serde(default)]
    pub matches_backup: bool,
}

/// A comparison of an observed value. Numbers compare numerically, anything else as
/// text. Set exactly one.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = exactly_one_of(&["equals", "atLeast", "atMost"], "expect"))]
pub struct Expectation {
    /// The value equals this.
    pub equals: Option<String>,
    /// The value is a number at least this (a number, e.g. `1000` or `0.5`).
    #[schemars(length(max = 64))]
    #[x_kube(validation = number("atLeast"))]
    pub at_least: Option<String>,
    /// The value is a number at most this (a number).
    #[schemars(length(max = 64))]
    #[x_kube(validation = number("atMost"))]
    pub at_most: Option<String>,
}

/// A files check: at least one path under `exist` or `checksums`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.exist) && size(self.exist) > 0) || (has(self.checksums) && size(self.checksums) > 0)")
    .message("files: list at least one path under exist or checksums")
    .reason(Reason::FieldValueRequired))]
pub struct FilesCheck {
    /// The source PVC's name (its restored copy is checked).
    pub volume: String,
    /// Paths (relative to the volume root) that must exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exist: Vec<String>,
    /// Files whose content must hash as given, or as recorded in the snapshot. At most
    /// 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub checksums: Vec<FileChecksum>,
}

/// A file whose content is verified.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileChecksum {
    /// Path relative to the volume root.
    pub path: String,
    /// Expected SHA-256, 64 hexadecimal digits. Omit to compare with the content stored
    /// in the snapshot.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{64}$')")
        .message("sha256 must be 64 hexadecimal digits")
        .reason(Reason::FieldValueInvalid))]
    pub sha256: Option<String>,
}

/// A command check.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommandCheck {
    /// Container image.
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables. Each restored database is also described as
    /// `LIFEBOAT_DB_<SOURCE>_HOST`, `_PORT`, `_DATABASE`, `_USER` and `_PASSWORD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    /// Mount restored volumes (by source PVC name) read-only at `/volumes/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

/// An HTTP check.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// URL inside the sandbox, e.g. `http://web:8080/healthz` (Service names resolve in
    /// the sandbox namespace). `http://` only: a sandbox has no certificates to trust.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'http' && url(self).getHostname() != ''")
        .message("url must be an http:// URL with a host (a sandbox has no certificates to trust)")
        .reason(Reason::FieldValueInvalid))]
    pub url: String,
    /// Expected HTTP status, 100 to 599. Default 200.
    #[x_kube(validation = Rule::new("self >= 100 && self <= 599")
        .message("expectStatus must be an HTTP status, 100 to 599")
        .reason(Reason::FieldValueInvalid))]
    pub expect_status: Option<u16>,
}

/// A freshness check.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FreshnessCheck {
    /// The database source's name in the policy.
    pub database: String,
    /// Query returning the newest business timestamp (e.g. `SELECT max(created_at) FROM
    /// orders`), as a timestamp or RFC 3339 text.
    pub query: String,
}

/// Objectives a drill is measured against.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DrillObjectives {
    /// Recovery time objective: start of restore to all checks passing, e.g. `30m`; not
    /// zero.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("rto"))]
    pub rto: Option<String>,
    /// Recovery point objective: how old the restored data may be, e.g. `1h`; not zero.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    #[x_kube(validation = positive_duration("rpo"))]
    pub rpo: Option<String>,
    /// Runs considered for `RTODemonstrated`, at least 1. Default 3.
    #[x_kube(validation = at_least("rtoWindow", 1, ""))]
    pub rto_window: Option<u32>,
}

/// Observed state of a drill.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DRDrillStatus {
    /// `.metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// The newest DrillRun.
    pub last_run: Option<String>,
    /// When it started.
    pub last_run_time: Option<Time>,
    /// Passed or Failed, of the newest finished run.
    pub last_outcome: Option<DrillOutcome>,
    /// Measured RTO of the newest finished run, e.g. `4m12s`.
    #[serde(rename = "lastRTO")]
    pub last_rto: Option<String>,
    /// When a run last passed.
    pub last_passed_time: Option<Time>,
    /// Failed runs since the last pass.
    pub consecutive_failures: Option<u32>,
    /// The schedule slot the controller last acted on.
    pub last_schedule_time: Option<Time>,
    /// The newest finished DrillRun already counted in `lastOutcome` and
    /// `consecutiveFailures`.
    pub last_completed_run: Option<String>,
    /// Measured RPO of the newest finished run that measured one, e.g. `42m`.
    #[serde(rename = "lastRPO")]
    pub last_rpo: Option<String>,
    /// The evidence report of the newest finished run: the head of the drill's hash
    /// chain (`lifeboat drill verify-chain` checks the chain against it).
    pub last_report: Option<ReportRef>,
    /// Next schedule slot, RFC 3339 in UTC.
    pub next_run_time: Option<String>,
    /// The share of retained restore points this drill has verified.
    pub coverage: Option<RestorePointCoverage>,
    /// Retained restore points (Backup names) a passed run of this drill restored,
    /// whether or not that run is still kept (`historyLimit`); forgotten with the point.
    /// Written by the controller only; at most 1000, newest kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub verified_restore_points: Vec<String>,
    /// `Ready`, `RTODemonstrated`, `RPOMet`, `DrillOverdue`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The outcome of a run.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum DrillOutcome {
    /// The restore succeeded and every check passed.
    Passed,
    /// A step or a check failed.
    Failed,
    /// Stopped on request (the DRDrill's `lifeboat.dev/cancel-run` annotation) before it
    /// finished: it proves nothing either way and counts in no pass rate.
    Cancelled,
}

impl DrillOutcome {
    /// The name used in conditions, metric labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillOutcome::Passed => "Passed",
            DrillOutcome::Failed => "Failed",
            DrillOutcome::Cancelled => "Cancelled",
        }
    }
}

/// One execution of a drill. The spec is immutable; the status never changes once the run
/// finished.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "DrillRun",
    namespaced,
    status = "DrillRunStatus",
    shortname = "drun",
    category = "lifeboat",
    doc = "One execution of a DRDrill: the restore point used, a timeline of phases, every check's result, measured RTO and RPO, the outcome, and the evidence report. Immutable once finished.",
    printcolumn(name = "Drill", type_ = "string", json_path = ".spec.drillRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Outcome", type_ = "string", json_path = ".status.outcome"),
    printcolumn(name = "RTO", type_ = "string", json_path = ".status.rto.measured"),
    printcolumn(name = "RPO", type_ = "string", json_path = ".status.rpo.measured"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = immutable("spec", "a DrillRun is the record of one run; start a new run instead"))]
pub struct DrillRunSpec {
    /// The drill this run executes (its spec as of the run's start is what counts).
    pub drill_ref: LocalRef,
    /// Who started the run.
    #[serde(default)]
    pub trigger: super::backup::Trigger,
    /// The schedule slot, for scheduled runs.
    pub scheduled_time: Option<Time>,
}

/// Phases of a run, in order. Every run passes through CleaningUp.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    Deserialize,
    Serialize,
    JsonSchema,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum DrillPhase {
    /// Accepted, nothing created yet.
    #[default]
    Pending,
    /// Creating the sandbox namespace, quota, network policy and ephemeral databases.
    Provisioning,
    /// Restoring volumes, databases and manifests into the sandbox.
    Restoring,
    /// Running the checks.
    Verifying,
    /// Writing the evidence report to the store.
    Reporting,
    /// Removing the sandbox.
    CleaningUp,
    /// Finished; the record is final.
    Completed,
}

/// Observed state of a run.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillRunStatus {
    /// `.metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Current phase; `Completed` when finished.
    pub phase: Option<DrillPhase>,
    /// Passed or Failed, once known.
    pub outcome: Option<DrillOutcome>,
    /// The restore point used.
    pub restore_point: Option<DrillRestorePoint>,
    /// The sandbox namespace.
    pub sandbox_namespace: Option<String>,
    /// UID of the sandbox namespace this run created. Its clean-up, the sandbox sweep
    /// and its finalizer delete only a namespace with this UID.
    pub sandbox_uid: Option<String>,
    /// The Restore (in the drill's namespace) that restored into the sandbox.
    pub restore: Option<String>,
    /// The drill's spec when the run started: what this run restores, checks and is
    /// measured against, whatever the drill says later. A record: the drill's rules are
    /// not applied to it (the controller copies the spec as it was).
    #[schemars(transform = without_rules)]
    pub drill_spec: Option<DRDrillSpec>,
    /// When the run started.
    pub start_time: Option<Time>,
    /// When the run finished (after clean-up).
    pub completion_time: Option<Time>,
    /// Each phase with its start and end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<PhaseSpan>,
    /// Each check's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// Measured recovery time.
    pub rto: Option<Measurement>,
    /// Measured recovery point.
    pub rpo: Option<Measurement>,
    /// The failing step and why, for failed runs.
    pub failure: Option<DrillFailure>,
    /// The evidence report.
    pub report: Option<ReportRef>,
    /// The report step's attempt to delete a pack version with the store's own
    /// credentials (immutable stores), or why none was made.
    pub immutability: Option<ImmutabilityProbe>,
    /// `Complete` with the outcome as reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What the store answered when the drill tried to delete one pack's current version
/// with the store's own credentials (a plain DELETE only adds a delete marker on a
/// versioned bucket and proves nothing; a version DELETE is what Object Lock refuses).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImmutabilityProbe {
    pub result: ImmutabilityResult,
    /// The object tried, relative to the repository root (`data/ab/ab12...`).
    pub object: Option<String>,
    /// Its version ID.
    pub version: Option<String>,
    /// The S3 error code of the refusal (`AccessDenied`).
    pub code: Option<String>,
    /// What happened, for people.
    pub message: Option<String>,
}

/// The answer to a drill's version deletion.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ImmutabilityResult {
    /// The store does not claim immutability (no `spec.immutability`): nothing was tried.
    #[default]
    Skipped,
    /// The deletion was refused: the pack is immutable to the store's credentials.
    Refused,
    /// The version was deleted (then written back): the store is not immutable as claimed.
    Deleted,
    /// The pack has no version ID: the bucket is not versioned, so it has no Object Lock.
    Unversioned,
    /// No answer either way (no pack to try, an unexpected error).
    Error,
}

/// The restore point a run restored.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillRestorePoint {
    /// The Backup whose snapshots were restored (the run that wrote them, as the
    /// snapshots' `backup=` tag names it when no Backup object is left).
    pub backup: String,
    /// Its restore point time.
    pub time: Time,
    /// Snapshot ID per source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshots: BTreeMap<String, String>,
    /// Where the candidates came from: `Catalog` (the restore points the repository
    /// keeps) or `BackupObjects` (the store's snapshots were not listed yet). Absent in
    /// runs of older releases (Backup objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<RetainedSource>,
    /// True when no Backup object records the point (the policy's history limit removed
    /// it): the run's Restore read it from the store (`source.storeRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_store: Option<bool>,
}

/// Where a list of retained restore points comes from.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RetainedSource {
    /// The repository's catalog: every restore point retention keeps.
    Catalog,
    /// The Backup objects in the cluster (the policy's history limit may have removed
    /// records of points the repository still keeps).
    BackupObjects,
}

/// The share of the retained restore points that a passed run of the drill verified.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestorePointCoverage {
    /// Restore points retained.
    pub retained: u32,
    /// Of those, verified by a passed run.
    pub verified: u32,
    /// verified / retained; absent when nothing is retained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// What `retained` counts.
    pub source: RetainedSource,
}

/// One phase of the timeline.
#[skip_serializing_none]
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseSpan {
    /// The phase.
    pub phase: DrillPhase,
    /// When it began (microseconds: the RTO is measured from these times).
    pub start_time: MicroTime,
    /// When it ended (absent while running).
    pub end_time: Option<MicroTime>,
    /// Its length in seconds.
    pub duration_seconds: Option<f64>,
}

/// The result of one check.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// `sql`, `files`, `command`, `http` or `freshness`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Passed, Failed (the data is wrong) or Error (the check could not run).
    pub result: CheckVerdict,
    /// What was observed (a value, a status code, an exit code, a mismatch).
    pub observed: Option<String>,
    /// What was expected.
    pub expected: Option<String>,
    /// Details for people.
    pub message: Option<String>,
    /// How long the check took, in seconds.
    pub duration_seconds: Option<f64>,
    /// When the check finished (the end of the last passing check ends the RTO).
    pub end_time: Option<MicroTime>,
}

/// A check's verdict.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum CheckVerdict {
    /// The data is as expected.
    #[default]
    Passed,
    /// The data is wrong (the observed value says how).
    Failed,
    /// The check could not run (timeout, unreachable service, bad query).
    Error,
}

/// A measured figure against its objective.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// The measurement for people, e.g. `4m12s`.
    pub measured: Option<String>,
    /// The measurement in seconds.
    pub measured_seconds: Option<f64>,
    /// The objective, as written in the drill.
    pub objective: Option<String>,
    /// Whether the measurement is within the objective (absent without an objective).
    pub met: Option<bool>,
    /// RTO: seconds per phase. RPO: `restorePoint` (drill start minus restore point time)
    /// and `data` (drill start minus the freshness query's newest timestamp).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakdown: BTreeMap<String, f64>,
}

/// Why a run failed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillFailure {
    /// The phase or check that failed (e.g. `Restoring`, `check/orders-count`).
    pub step: String,
    /// Bounded reason and message.
    #[serde(flatten)]
    pub failure: Failure,
}

/// Where the evidence report is and what it hashes to.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportRef {
    /// Location of the JSON report in the store, e.g. `s3://bucket/prefix/lifeboat-reports/ns/drill/run.json`.
    pub location: String,
    /// Location of the human-readable page next to it.
    pub page_location: Option<String>,
    /// SHA-256 of the JSON report, hex.
    pub sha256: String,
    /// SHA-256 of the previous run's report of the same drill (the hash chain), hex.
    pub previous_sha256: Option<String>,
    /// Location of the report's signature (`<report>.json.sig`), when it was signed.
    pub signature_location: Option<String>,
    /// ID of the installation key that signed it.
    pub key_id: Option<String>,
}

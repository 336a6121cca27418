//! `BackupStore` (namespaced) and `ClusterBackupStore` (cluster-scoped): where a
//! restic-format repository lives in S3-compatible storage and how to open it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::{S3CredentialsRef, ScheduleSpec, SecretKeyRef};
use super::rules::{cluster_secret_refs, namespaced_secret_refs};

/// A repository in an S3 bucket that BackupPolicies in this namespace write to.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "BackupStore",
    namespaced,
    status = "StoreStatus",
    shortname = "bstore",
    category = "lifeboat",
    doc = "A restic-format backup repository in S3-compatible storage, usable by the BackupPolicies of its namespace.",
    printcolumn(name = "Bucket", type_ = "string", json_path = ".spec.s3.bucket"),
    printcolumn(
        name = "Prefix",
        type_ = "string",
        json_path = ".spec.s3.prefix",
        priority = "1"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Initialized",
        type_ = "boolean",
        json_path = ".status.initialized"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = namespaced_secret_refs)]
pub struct BackupStoreSpec {
    /// The S3-compatible bucket and how to reach it.
    pub s3: S3Spec,
    /// The repository password (encryption key material). Keep a copy outside the
    /// cluster: without it no backup can ever be read, by Lifeboat or by restic.
    /// A namespaced store reads it from its own namespace and may not set `namespace`; a
    /// ClusterBackupStore must.
    pub repository_password: SecretKeyRef,
    /// Whether the controller creates the repository when none exists at the location.
    /// An existing repository is never overwritten.
    #[serde(default)]
    pub initialize: InitializePolicy,
    /// S3 Object Lock: every object the repository writes (packs, indexes, snapshots,
    /// keys, config; not lock files) gets this retention, and retention runs extend it
    /// for what the repository still holds, so nobody holding the store's credentials can
    /// delete a backup before then. The bucket must have Object Lock enabled (it can only
    /// be turned on when the bucket is created): until it has, the store is not Ready
    /// (reason `ObjectLockNotEnabled`, with a Warning Event).
    pub immutability: Option<Immutability>,
    /// Scheduled verification of the repository: a mover Job checks its structure and
    /// reads a share of its data, so damage is found before a restore needs the data. The
    /// result is the store's `DataVerified` condition.
    pub verify: Option<StoreVerify>,
}

/// When and how much of a store's repository is verified.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoreVerify {
    /// When verification runs (cron in a time zone, as a policy's schedule).
    pub schedule: ScheduleSpec,
    /// Which packs each run reads and authenticates: `10%` (a random tenth each run, the
    /// default), `n/t` (bucket n of t: the same bucket every run), or a size (`500MiB`).
    /// The structure (every index, snapshot and tree) is checked every time.
    #[schemars(
        pattern(r"^([1-9][0-9]*/[1-9][0-9]*|[0-9]+(\.[0-9]+)?%|[0-9]+(\.[0-9]+)?([KkMmGgTt](i?[Bb])?)?)$"),
        length(max = 32)
    )]
    pub read_data_subset: Option<String>,
}

/// The share read when `verify.readDataSubset` is not set.
pub const DEFAULT_READ_DATA_SUBSET: &str = "10%";

/// How long the objects of an immutable store are kept, and how strictly.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Immutability {
    /// `Governance`: a user granted `s3:BypassGovernanceRetention` may still remove it.
    /// `Compliance`: nobody can, the account's root included, until it expires.
    pub mode: ImmutabilityMode,
    /// Days after each write (or retention run) that objects stay undeletable, e.g. `30d`.
    #[x_kube(validation = Rule::new("self.matches('^[1-9][0-9]{0,4}d$') && int(self.substring(0, size(self) - 1)) <= 36500")
        .message("immutability.retention must be a number of days from 1d to 36500d, e.g. 30d")
        .reason(Reason::FieldValueInvalid))]
    #[schemars(length(max = 8))]
    pub retention: String,
}

/// S3 Object Lock retention mode.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ImmutabilityMode {
    Governance,
    Compliance,
}

impl Immutability {
    /// The engine's setting (`governance:30d`), which `LIFEBOAT_S3_OBJECT_LOCK` carries.
    pub fn engine_value(&self) -> String {
        let mode = match self.mode {
            ImmutabilityMode::Governance => "governance",
            ImmutabilityMode::Compliance => "compliance",
        };
        format!("{mode}:{}", self.retention)
    }
}

/// A repository in an S3 bucket shared by BackupPolicies of several namespaces.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "ClusterBackupStore",
    status = "StoreStatus",
    shortname = "cbstore",
    category = "lifeboat",
    doc = "A restic-format backup repository in S3-compatible storage, shared by the BackupPolicies of the allowed namespaces.",
    printcolumn(name = "Bucket", type_ = "string", json_path = ".spec.s3.bucket"),
    printcolumn(
        name = "Prefix",
        type_ = "string",
        json_path = ".spec.s3.prefix",
        priority = "1"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Initialized",
        type_ = "boolean",
        json_path = ".status.initialized"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = cluster_secret_refs)]
pub struct ClusterBackupStoreSpec {
    /// The repository location and secrets, as for a BackupStore, except that every
    /// Secret reference must name its namespace.
    #[serde(flatten)]
    pub store: BackupStoreSpec,
    /// Namespaces whose BackupPolicies may use this store. `*` allows every namespace.
    /// Empty (and no `allowedNamespaceSelector`): no namespace may (a safe default for a
    /// shared bucket).
    #[serde(default)]
    pub allowed_namespaces: Vec<String>,
    /// Namespaces whose labels match this selector may use the store too, besides those
    /// listed in `allowedNamespaces`. Checked on every run, so removing a label (or a name
    /// from the list) stops the namespace's runs that have not finished.
    pub allowed_namespace_selector: Option<LabelSelector>,
    /// Namespaces (allowed to use the store) that may restore the restore points of
    /// another namespace's policies from it (a Restore's `source.fromPolicy`); `*` for
    /// every allowed namespace. A namespace may always restore its own namespace's
    /// policies. Empty (the default): no namespace reads another's data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_namespace_restore: Vec<String>,
}

/// Bucket location and client settings.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// Endpoint URL, e.g. `https://s3.eu-central-1.amazonaws.com` or
    /// `http://minio.storage.svc:9000`. Default: AWS's endpoint for the region.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''")
        .message("endpoint must be an http:// or https:// URL with a host, e.g. https://s3.eu-central-1.amazonaws.com")
        .reason(Reason::FieldValueInvalid))]
    pub endpoint: Option<String>,
    /// Bucket name. The bucket must exist; Lifeboat never creates or deletes buckets.
    pub bucket: String,
    /// Key prefix of the repository inside the bucket, e.g. `prod/orders`.
    pub prefix: Option<String>,
    /// Region for request signing. Default `us-east-1`.
    pub region: Option<String>,
    /// Address the bucket in the URL path instead of the host name. Most S3-compatible
    /// servers need this. Default `true` when an endpoint is set, `false` for AWS.
    pub path_style: Option<bool>,
    /// Credentials. Omit to use the ambient AWS credential chain of the mover pods
    /// (e.g. IRSA or instance roles). `namespace` is refused in a BackupStore and required
    /// in a ClusterBackupStore.
    pub credentials: Option<S3CredentialsRef>,
    /// PEM bundle of certificate authorities to trust for the endpoint, in addition to
    /// the system roots. `namespace` is refused in a BackupStore and required in a
    /// ClusterBackupStore.
    pub ca_bundle: Option<SecretKeyRef>,
    /// When the client adds and checks payload checksums. `WhenSupported` (the default)
    /// gives end-to-end CRC32; `WhenRequired` suits S3-compatible servers that reject
    /// aws-chunked uploads.
    #[serde(default)]
    pub checksum_mode: ChecksumMode,
}

/// Checksum behaviour of the S3 client.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Add and verify checksums whenever the operation supports them.
    #[default]
    WhenSupported,
    /// Only when the operation requires them.
    WhenRequired,
}

/// Whether the controller may create the repository.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum InitializePolicy {
    /// Create the repository when the location holds none (the default).
    #[default]
    IfMissing,
    /// Never create one; report `Initialized=False` until someone does.
    Never,
}

/// Observed state of a store.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// `.metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// The last probe reached the bucket with the given credentials.
    pub reachable: Option<bool>,
    /// A repository exists at the location and opened with the password.
    pub initialized: Option<bool>,
    /// The repository's ID (from its config file), to tell repositories apart.
    pub repository_id: Option<String>,
    /// When the store was last probed.
    pub last_check_time: Option<Time>,
    /// `Ready`, `Reachable`, `Initialized`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What the repository holds: its restore points by policy identity, read from the
    /// snapshots' tags whichever cluster wrote them (refreshed with each probe).
    pub catalog: Option<CatalogStatus>,
    /// Scheduled verification (`spec.verify`): the newest run and what it found.
    pub verify: Option<VerifyStatus>,
}

/// The scheduled verification of a store's repository.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifyStatus {
    /// The schedule slot of the newest run started.
    pub last_schedule_time: Option<Time>,
    /// The Job of the run in progress (in the controller's namespace); absent between runs.
    pub job: Option<String>,
    /// When the newest finished run ended.
    pub last_verify_time: Option<Time>,
    /// Its result: `Passed` or the failure's reason (`RepositoryCorrupted`, ...).
    pub last_result: Option<String>,
    /// Packs it read and authenticated.
    pub packs_read: Option<u64>,
    /// Packs the repository held.
    pub packs: Option<u64>,
    /// Bytes it read.
    pub bytes_read: Option<u64>,
    /// When the store's repository last passed a verification.
    pub last_passed_time: Option<Time>,
    /// The next slot, RFC 3339 in UTC.
    pub next_verify_time: Option<String>,
}

/// A summary of the restore points in a store's repository.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogStatus {
    /// Snapshots in the repository.
    pub snapshots: u64,
    /// Of those, snapshots Lifeboat did not write (no `lifeboat` and `policy=` tags).
    pub other_snapshots: u64,
    /// Restore points (one per run of a policy identity).
    pub restore_points: u64,
    /// Policy identities (`namespace/policy`) with at least one restore point.
    pub identities: u64,
    /// The identities with the newest restore points, at most 50 (`identities` counts
    /// them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<IdentitySummary>,
    /// When the listing began.
    pub list_time: Option<Time>,
}

/// The restore points of one policy identity.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySummary {
    /// `namespace/policy` as the snapshots' `policy=` tag names it.
    pub policy: String,
    /// How many restore points the repository holds.
    pub restore_points: u64,
    /// The newest restore point's time.
    pub newest: Time,
    /// The oldest restore point's time.
    pub oldest: Time,
    /// The run (Backup name) of the newest restore point.
    pub newest_backup: String,
    /// The sources of the newest restore point, as `volume/data`, `database/pg`,
    /// `manifests/shop`.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl ClusterBackupStoreSpec {
    /// Whether `allowedNamespaces` names `namespace` (the label selector is checked by
    /// the controller, which reads the namespace's labels).
    pub fn allows(&self, namespace: &str) -> bool {
        self.allowed_namespaces
            .iter()
            .any(|n| n == "*" || n == namespace)
    }
}

impl ClusterBackupStoreSpec {
    /// Whether `crossNamespaceRestore` lets `namespace` restore other namespaces'
    /// restore points.
    pub fn allows_cross_namespace_restore(&self, namespace: &str) -> bool {
        self.cross_namespace_restore
            .iter()
            .any(|n| n == "*" || n == namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_namespace_restores_only_where_the_store_says_so() {
        let mut spec = ClusterBackupStoreSpec::default();
        assert!(!spec.allows_cross_namespace_restore("prod"));
        spec.cross_namespace_restore = vec!["dr".into()];
        assert!(spec.allows_cross_namespace_restore("dr"));
        assert!(!spec.allows_cross_namespace_restore("prod"));
        spec.cross_namespace_restore = vec!["*".into()];
        assert!(spec.allows_cross_namespace_restore("prod"));
    }

    #[test]
    fn cluster_store_allows_listed_namespaces_only() {
        let mut spec = ClusterBackupStoreSpec::default();
        assert!(!spec.allows("prod"), "empty list allows nobody");
        spec.allowed_namespaces = vec!["prod".into()];
        assert!(spec.allows("prod"));
        assert!(!spec.allows("dev"));
        spec.allowed_namespaces.push("*".into());
        assert!(spec.allows("dev"));
    }
}

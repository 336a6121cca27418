//! Types shared by several Lifeboat kinds: references, schedules, retention, objectives,
//! errors and condition vocabulary. Plain data: no client calls and no logic beyond
//! serde defaults.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::rules::{MAX_DURATION_LENGTH, at_least, between};

/// A Go-style duration such as `90s`, `15m`, `1h30m` or `7d` (`d` = 24 hours).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$";

/// A key in a Secret.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
    /// Namespace of the Secret. Required in a ClusterBackupStore; refused everywhere
    /// else: namespaced objects always read Secrets from their own namespace.
    pub namespace: Option<String>,
}

/// A Secret holding S3 credentials under well-known keys.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret. Required in a ClusterBackupStore, refused in a
    /// BackupStore.
    pub namespace: Option<String>,
    /// Key holding the access key ID. Default `AWS_ACCESS_KEY_ID`.
    pub access_key_id_key: Option<String>,
    /// Key holding the secret access key. Default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_key: Option<String>,
    /// Key holding an optional session token. Default `AWS_SESSION_TOKEN`; ignored when
    /// the Secret has no such key.
    pub session_token_key: Option<String>,
}

impl S3CredentialsRef {
    pub fn access_key_id_key(&self) -> &str {
        self.access_key_id_key
            .as_deref()
            .unwrap_or("AWS_ACCESS_KEY_ID")
    }
    pub fn secret_access_key_key(&self) -> &str {
        self.secret_access_key_key
            .as_deref()
            .unwrap_or("AWS_SECRET_ACCESS_KEY")
    }
    pub fn session_token_key(&self) -> &str {
        self.session_token_key
            .as_deref()
            .unwrap_or("AWS_SESSION_TOKEN")
    }
}

/// A reference to a database's login: a Secret with the user name and password.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseCredentialsRef {
    /// Name of the Secret, in the same namespace.
    pub name: String,
    /// Key holding the user name. Default `username`.
    pub username_key: Option<String>,
    /// Key holding the password. Default `password`.
    pub password_key: Option<String>,
}

impl DatabaseCredentialsRef {
    pub fn username_key(&self) -> &str {
        self.username_key.as_deref().unwrap_or("username")
    }
    pub fn password_key(&self) -> &str {
        self.password_key.as_deref().unwrap_or("password")
    }
}

/// When to run, in the calendar of a time zone.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Standard 5-field cron expression (minute hour day-of-month month day-of-week),
    /// names like `MON` and `JAN`, macros `@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`, and the load-spreading `@hourly-random`, `@daily-random`,
    /// `@weekly-random`, `@monthly-random`, which pick a fixed time derived from the
    /// object's namespace and name.
    pub cron: String,
    /// IANA time zone the cron expression is read in, e.g. `Europe/Berlin`. Default `UTC`.
    /// Daylight-saving gaps and repeats are handled like cron: a skipped local time runs
    /// once right after the gap, a repeated one runs once.
    pub time_zone: Option<String>,
    /// Delay each run by a stable pseudo-random amount below this duration (derived from
    /// the object's identity and the slot), so many objects on one schedule do not start
    /// together. Example: `5m`; `0s` means no jitter.
    #[schemars(pattern(DURATION_PATTERN), length(max = MAX_DURATION_LENGTH))]
    pub jitter: Option<String>,
    /// Stop creating new runs. Runs already started finish.
    #[serde(default)]
    pub suspend: bool,
}

/// How many restore points to keep, by the rules of restic's `forget` (grandfather,
/// father, son). A snapshot is kept when any rule keeps it. Omit `retention` to keep
/// everything; when given, it sets at least one rule, each at least 1.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.keepLast) || has(self.keepHourly) || has(self.keepDaily) || has(self.keepWeekly) || has(self.keepMonthly) || has(self.keepYearly)"
).message(
    "retention must set at least one of keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly and keepYearly; omit retention to keep every restore point"
).reason(Reason::FieldValueRequired))]
pub struct Retention {
    /// Keep the newest N restore points.
    #[x_kube(validation = at_least("keepLast", 1, KEEP_WHY))]
    pub keep_last: Option<u32>,
    /// Keep the newest restore point of each of the last N hours that have one.
    #[x_kube(validation = at_least("keepHourly", 1, KEEP_WHY))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest restore point of each of the last N days that have one.
    #[x_kube(validation = at_least("keepDaily", 1, KEEP_WHY))]
    pub keep_daily: Option<u32>,
    /// Keep the newest restore point of each of the last N weeks that have one.
    #[x_kube(validation = at_least("keepWeekly", 1, KEEP_WHY))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest restore point of each of the last N months that have one.
    #[x_kube(validation = at_least("keepMonthly", 1, KEEP_WHY))]
    pub keep_monthly: Option<u32>,
    /// Keep the newest restore point of each of the last N years that have one.
    #[x_kube(validation = at_least("keepYearly", 1, KEEP_WHY))]
    pub keep_yearly: Option<u32>,
    /// The mass-deletion breaker: the largest share (percent, 1 to 100) of the policy's
    /// snapshots one retention run may forget. A run that would forget more forgets
    /// nothing and reports `RetentionBreakerTripped` (a Warning Event and the Backup's
    /// `RetentionApplied` condition) until the policy's current generation is
    /// acknowledged in the annotation `lifeboat.dev/retention-breaker-acknowledged`
    /// (docs/backup.md). Default 50; 100 turns the breaker off.
    #[x_kube(validation = between("maxForgetPercent", 1, 100))]
    pub max_forget_percent: Option<u32>,
}

/// `retention.maxForgetPercent` when the policy does not set it.
pub const DEFAULT_MAX_FORGET_PERCENT: u32 = 50;

/// Why a keep rule of 0 is refused: alone it would forget every restore point, including
/// the one just made; next to other rules it means nothing.
const KEEP_WHY: &str = " (a rule of 0 keeps nothing: leave the rule out instead)";

impl Retention {
    /// True when no rule is set, which means "keep everything".
    pub fn is_empty(&self) -> bool {
        let Retention {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            // Not a keep rule: alone it keeps nothing (and the schema refuses it alone).
            max_forget_percent: _,
        } = self;
        [
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
        ]
        .iter()
        .all(|k| k.is_none())
    }
}

/// A failure, as a bounded machine-readable reason and a human-readable message.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// PascalCase reason from a fixed vocabulary (e.g. `DumpFailed`, `S3AccessDenied`).
    pub reason: String,
    /// What went wrong, for people. Never contains secrets.
    pub message: String,
}

/// Whether runs of one object may overlap.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConcurrencyPolicy {
    /// Skip a due run while the previous one is still active, and record the skip.
    #[default]
    Forbid,
    /// Start due runs even if earlier ones are active.
    Allow,
}

/// What happens to the data in the repository when the object is deleted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep every snapshot (the default): deleting a policy never deletes backups.
    #[default]
    Retain,
    /// Forget and prune this policy's snapshots from the repository before the object
    /// goes away.
    Delete,
}

/// Condition types used across kinds (`status.conditions[].type`).
pub mod condition {
    /// The object is valid and its dependencies exist; the reason says why not.
    pub const READY: &str = "Ready";
    /// The newest successful restore point is younger than the RPO objective.
    pub const RPO_MET: &str = "RPOMet";
    /// The store answered the last probe.
    pub const REACHABLE: &str = "Reachable";
    /// A repository exists at the store's location and opens with the password.
    pub const INITIALIZED: &str = "Initialized";
    /// A run has finished (Backup): `True` with the outcome as reason.
    pub const COMPLETE: &str = "Complete";
    /// The last drill runs restored within the RTO objective.
    pub const RTO_DEMONSTRATED: &str = "RTODemonstrated";
    /// No drill has passed within the expected interval.
    pub const DRILL_OVERDUE: &str = "DrillOverdue";
    /// The store's scheduled verification read its repository without finding damage.
    pub const DATA_VERIFIED: &str = "DataVerified";
    /// A drill run's report is signed and its drill's anchor advanced to it (`False` with
    /// the reason when it is not: no key, a report not as recorded, a fork).
    pub const EVIDENCE_SIGNED: &str = "EvidenceSigned";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_empty_only_without_rules() {
        assert!(Retention::default().is_empty());
        let r = Retention {
            keep_weekly: Some(0),
            ..Retention::default()
        };
        assert!(!r.is_empty());
    }

    #[test]
    fn none_fields_are_never_serialized() {
        let s = ScheduleSpec {
            cron: "0 * * * *".into(),
            ..ScheduleSpec::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cron": "0 * * * *", "suspend": false})
        );
    }
}

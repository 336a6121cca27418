//! The CEL validation rules (`x-kubernetes-validations`) the API server checks before it
//! stores a Lifeboat object: constructors for the shapes several kinds share (positive
//! durations, RFC 3339 times, one-of, unique names, immutability), and the schema
//! transforms that place rules where a field attribute cannot (the Secret references of a
//! store, whose rules depend on the store's scope; the copy of a drill's spec kept in a
//! run's status, which carries none).
//!
//! Invariants, checked by the tests below:
//! - every message names the field it is about, so `kubectl apply` says what to fix;
//! - a rule sits as deep in the schema as it can, because the API server ratchets a rule
//!   (lets an object that already broke it be updated) only while the value at the rule's
//!   place is unchanged: a rule on `spec.sandbox.ttl` does not stand in the way of an edit
//!   of `spec.schedule` of an object stored before the rule existed;
//! - every string a rule runs a regular expression on, and every list a rule iterates, has
//!   a `maxLength`/`maxItems`, or the API server's cost estimate refuses the CRD;
//! - what only the controller can know (a Secret, a bucket, a cron expression, a time zone)
//!   is not a rule: it stays a condition with a reason.

use kube::core::{Message, Reason, Rule};
use schemars::Schema;
use serde_json::{Value, json};

/// Longest duration string accepted (`1h30m` is 5; 32 leaves room for `1d2h3m4s5ms`).
pub const MAX_DURATION_LENGTH: u32 = 32;

/// Longest RFC 3339 time accepted (`2026-01-02T03:04:05.123456789+01:00` is 35).
pub const MAX_TIME_LENGTH: u32 = 40;

/// RFC 3339 date-time with a `T`, seconds and an offset: what the controller parses
/// (jiff's `Timestamp`). `format.datetime()` alone would also take a lower-case `t` or
/// `z`, and any character before the fraction.
const RFC3339: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// A Go-style duration (the field's schema pattern) that is not zero: some digit other
/// than 0 appears (`0s`, `0m0s` and `00h` are refused; `0.5s` is not).
pub fn positive_duration(field: &str) -> Rule {
    Rule::new("self.matches('[1-9]')")
        .message(Message::Message(format!(
            "{field} must be a positive duration such as 90s, 15m, 1h30m or 7d"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// An RFC 3339 time. `format.datetime()` checks the calendar (no 30 February) without
/// failing the evaluation: a rule that fails with an error instead of `false` is never
/// ratcheted, and its message comes after CEL's own words. CEL's `timestamp(self)` would
/// fail that way on a bad value.
pub fn rfc3339_time(field: &str) -> Rule {
    Rule::new(format!(
        "self.matches('{}') && !format.datetime().validate(self).hasValue()",
        RFC3339.replace('\\', "\\\\")
    ))
    .message(Message::Message(format!(
        "{field} must be an RFC 3339 time such as 2026-01-31T23:00:00Z"
    )))
    .reason(Reason::FieldValueInvalid)
}

/// An integer of at least `min`.
pub fn at_least(field: &str, min: i64, why: &str) -> Rule {
    Rule::new(format!("self >= {min}"))
        .message(Message::Message(format!(
            "{field} must be at least {min}{why}"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// An integer from `min` to `max`.
pub fn between(field: &str, min: i64, max: i64) -> Rule {
    Rule::new(format!("self >= {min} && self <= {max}"))
        .message(Message::Message(format!(
            "{field} must be between {min} and {max}"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// A TCP port: 1 to 65535 (the schema of a `u16` already stops at 65535).
pub fn port(field: &str) -> Rule {
    Rule::new("self >= 1")
        .message(Message::Message(format!(
            "{field} must be between 1 and 65535"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// A string with something other than white space in it. Needs a `maxLength`.
pub fn not_blank(field: &str) -> Rule {
    Rule::new("self.matches('\\\\S')")
        .message(Message::Message(format!("{field} must not be empty")))
        .reason(Reason::FieldValueRequired)
}

/// A decimal number as the check compares it (Rust's `f64` syntax, without `inf`/`NaN`).
pub fn number(field: &str) -> Rule {
    Rule::new(r"self.matches('^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$')")
        .message(Message::Message(format!(
            "{field} must be a number, e.g. 1000 or 0.5"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// Exactly one of the object's optional fields is set.
pub fn exactly_one_of(fields: &[&str], what: &str) -> Rule {
    let has: Vec<String> = fields.iter().map(|f| format!("has(self.{f})")).collect();
    Rule::new(format!("[{}].exists_one(x, x)", has.join(", ")))
        .message(Message::Message(format!(
            "{what}: set exactly one of {}",
            or_list(fields)
        )))
        .reason(Reason::FieldValueInvalid)
}

/// On a list of objects: no two items have the same `key`. Quadratic: the list needs a
/// small `maxItems`.
pub fn unique(list: &str, key: &str) -> Rule {
    Rule::new(format!(
        "self.all(x, self.exists_one(y, y.{key} == x.{key}))"
    ))
    .message(Message::Message(format!(
        "{list}: every {key} must be unique"
    )))
    // Not `FieldValueDuplicate`: the API server reports that reason as a bare "Duplicate
    // value", without the message.
    .reason(Reason::FieldValueInvalid)
}

/// A transition rule: the value never changes once the object exists.
pub fn immutable(field: &str, why: &str) -> Rule {
    Rule::new("self == oldSelf")
        .message(Message::Message(format!("{field} is immutable: {why}")))
        .reason(Reason::FieldValueForbidden)
}

fn or_list(fields: &[&str]) -> String {
    match fields {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Where the Secret references of a store are, below its `spec`: the password, and the
/// optional S3 credentials and CA bundle.
const SECRET_REFS: &[&[&str]] = &[
    &["repositoryPassword"],
    &["s3", "credentials"],
    &["s3", "caBundle"],
];

/// Rules of a namespaced BackupStore's Secret references: they never name a namespace
/// (the store reads Secrets from its own).
pub fn namespaced_secret_refs(schema: &mut Schema) {
    scope_secret_refs(schema, false);
}

/// Rules of a ClusterBackupStore's Secret references: each names its namespace (a
/// cluster-scoped object has none of its own).
pub fn cluster_secret_refs(schema: &mut Schema) {
    scope_secret_refs(schema, true);
}

/// Replaces the scope rule of every Secret reference. `ClusterBackupStoreSpec` flattens
/// `BackupStoreSpec`, so it inherits the namespaced rules first and swaps them here.
fn scope_secret_refs(schema: &mut Schema, cluster: bool) {
    for path in SECRET_REFS {
        let name = path.join(".");
        let rule = if cluster {
            Rule::new("has(self.__namespace__) && self.__namespace__ != ''")
                .message(Message::Message(format!(
                    "{name}.namespace is required in a ClusterBackupStore: name the Secret's namespace"
                )))
                .field_path(".namespace")
                .reason(Reason::FieldValueRequired)
        } else {
            Rule::new("!has(self.__namespace__)")
                .message(Message::Message(format!(
                    "{name}.namespace must not be set in a BackupStore: its Secrets are read from the store's own namespace"
                )))
                .field_path(".namespace")
                .reason(Reason::FieldValueForbidden)
        };
        // `namespace` is a reserved word in CEL: the API server escapes it as
        // `__namespace__`.
        let pointer: String = path.iter().map(|k| format!("/properties/{k}")).collect();
        let node = schema.pointer_mut(&pointer);
        let node = node.unwrap_or_else(|| panic!("store schema has no {name}"));
        let rules = node
            .as_object_mut()
            .expect("a Secret reference is an object")
            .entry("x-kubernetes-validations")
            .or_insert_with(|| json!([]));
        let list = rules.as_array_mut().expect("rules are a list");
        list.retain(|r| !r["rule"].as_str().unwrap_or("").contains("__namespace__"));
        list.push(serde_json::to_value(rule).expect("a rule serializes"));
    }
}

/// Removes every rule below a node: for copies of a spec that the controller writes into
/// a status (a DrillRun's `status.drillSpec`), which record what was, valid or not when
/// the rules were different, and must never block the controller's status write.
pub fn without_rules(schema: &mut Schema) {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("x-kubernetes-validations");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    if let Some(m) = schema.as_object_mut() {
        m.remove("x-kubernetes-validations");
        m.values_mut().for_each(strip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::all_crds;

    /// One rule as placed in a CRD: the kind, the schema path (`[]` for list items,
    /// `<key>` for map values), the rule and its message.
    struct Placed {
        kind: String,
        path: String,
        node: Value,
        rule: String,
        message: String,
    }

    fn placed() -> Vec<Placed> {
        fn walk(kind: &str, path: &str, node: &Value, out: &mut Vec<Placed>) {
            for r in node["x-kubernetes-validations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push(Placed {
                    kind: kind.to_string(),
                    path: path.to_string(),
                    node: node.clone(),
                    rule: r["rule"].as_str().unwrap().to_string(),
                    message: r["message"].as_str().unwrap_or_default().to_string(),
                });
            }
            for (name, child) in node["properties"].as_object().into_iter().flatten() {
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                walk(kind, &p, child, out);
            }
            if node["items"].is_object() {
                walk(kind, &format!("{path}[]"), &node["items"], out);
            }
            if node["additionalProperties"].is_object() {
                walk(
                    kind,
                    &format!("{path}.<key>"),
                    &node["additionalProperties"],
                    out,
                );
            }
        }
        let mut out = Vec::new();
        for crd in all_crds() {
            let schema = serde_json::to_value(
                crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .unwrap()
                    .open_api_v3_schema
                    .as_ref()
                    .unwrap(),
            )
            .unwrap();
            walk(&crd.spec.names.kind, "", &schema, &mut out);
        }
        out
    }

    fn find<'a>(all: &'a [Placed], kind: &str, path: &str) -> Vec<&'a Placed> {
        all.iter()
            .filter(|p| p.kind == kind && p.path == path)
            .collect()
    }

    #[test]
    fn the_rules_sit_on_their_fields() {
        let all = placed();
        let want: &[(&str, &str, &str)] = &[
            (
                "BackupStore",
                "spec.repositoryPassword",
                "!has(self.__namespace__)",
            ),
            (
                "BackupStore",
                "spec.s3.credentials",
                "!has(self.__namespace__)",
            ),
            (
                "BackupStore",
                "spec.s3.caBundle",
                "!has(self.__namespace__)",
            ),
            ("BackupStore", "spec.s3.endpoint", "isURL(self)"),
            (
                "ClusterBackupStore",
                "spec.repositoryPassword",
                "has(self.__namespace__) &&",
            ),
            (
                "ClusterBackupStore",
                "spec.s3.credentials",
                "has(self.__namespace__) &&",
            ),
            (
                "ClusterBackupStore",
                "spec.s3.caBundle",
                "has(self.__namespace__) &&",
            ),
            ("BackupPolicy", "spec.storeRef", "self == oldSelf"),
            ("BackupPolicy", "spec.retention", "has(self.keepLast) ||"),
            ("BackupPolicy", "spec.retention.keepLast", "self >= 1"),
            ("BackupPolicy", "spec.retention.keepYearly", "self >= 1"),
            ("BackupPolicy", "spec.sources", "size(self.volumes) > 0"),
            (
                "BackupPolicy",
                "spec.sources.volumes[]",
                "has(self.pvcName), has(self.selector)",
            ),
            (
                "BackupPolicy",
                "spec.sources.databases",
                "exists_one(y, y.name == x.name)",
            ),
            ("BackupPolicy", "spec.sources.databases[].port", "self >= 1"),
            (
                "BackupPolicy",
                "spec.objectives.rpo",
                "self.matches('[1-9]')",
            ),
            (
                "BackupPolicy",
                "spec.mover.activeDeadline",
                "self.matches('[1-9]')",
            ),
            ("BackupPolicy", "spec.mover.backoffLimit", "self >= 0"),
            (
                "BackupPolicy",
                "spec.successfulBackupsHistoryLimit",
                "self >= 1",
            ),
            ("Backup", "spec", "self == oldSelf"),
            ("Restore", "spec", "self == oldSelf"),
            (
                "Restore",
                "spec.source",
                "has(self.backupRef), has(self.policyRef)",
            ),
            (
                "Restore",
                "spec.source",
                "!has(self.pointInTime) || has(self.policyRef)",
            ),
            ("Restore", "spec.source.pointInTime", "format.datetime()"),
            (
                "Restore",
                "spec.databases[]",
                "has(self.target), has(self.ephemeral)",
            ),
            (
                "Restore",
                "spec.databases[].ephemeral.startupTimeout",
                "self.matches('[1-9]')",
            ),
            ("DRDrill", "spec.policyRef", "self == oldSelf"),
            ("DRDrill", "spec.checks", "exists_one(y, y.name == x.name)"),
            (
                "DRDrill",
                "spec.checks[]",
                "has(self.sql), has(self.files), has(self.command), has(self.http), has(self.freshness)",
            ),
            (
                "DRDrill",
                "spec.checks[].sql.expect",
                "has(self.equals), has(self.atLeast), has(self.atMost)",
            ),
            (
                "DRDrill",
                "spec.restorePoint",
                "self.strategy == 'PointInTime'",
            ),
            ("DRDrill", "spec.restorePoint.time", "format.datetime()"),
            (
                "DRDrill",
                "spec.restorePoint",
                "self.strategy == 'RandomWithin'",
            ),
            (
                "DRDrill",
                "spec.restorePoint.within",
                "self.matches('[1-9]')",
            ),
            ("DRDrill", "spec.objectives.rto", "self.matches('[1-9]')"),
            ("DRDrill", "spec.objectives.rtoWindow", "self >= 1"),
            ("DRDrill", "spec.historyLimit", "self >= 1"),
            ("DRDrill", "spec.sandbox.resourceQuota", "isQuantity"),
            ("DrillRun", "spec", "self == oldSelf"),
        ];
        for (kind, path, rule) in want {
            assert!(
                find(&all, kind, path).iter().any(|p| p.rule.contains(rule)),
                "{kind} {path}: no rule with {rule:?}"
            );
        }
    }

    /// `kubectl apply` prints the path, then the message: the message says which field
    /// it is about (the field itself or, for a rule on an object, one of its fields).
    #[test]
    fn every_message_names_its_field() {
        for p in placed() {
            let last = p.path.rsplit('.').next().unwrap().trim_end_matches("[]");
            let children: Vec<&String> = p.node["properties"]
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            assert!(
                p.message.contains(last) || children.iter().any(|c| p.message.contains(*c)),
                "{} {}: message {:?} names neither {last} nor its fields",
                p.kind,
                p.path,
                p.message
            );
        }
    }

    /// Transition rules only where a kind is a record, or a field is an identity.
    #[test]
    fn only_records_and_identities_are_immutable() {
        let mut got: Vec<String> = placed()
            .into_iter()
            .filter(|p| p.rule.contains("oldSelf"))
            .map(|p| format!("{} {}", p.kind, p.path))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "Backup spec",
                "BackupPolicy spec.storeRef",
                "DRDrill spec.policyRef",
                "DrillRun spec",
                "Restore spec"
            ]
        );
    }

    /// Status is the controller's record: no rule may refuse its writes (a DrillRun's
    /// copy of its drill's spec included).
    #[test]
    fn no_rule_below_a_status() {
        let under: Vec<String> = placed()
            .into_iter()
            .filter(|p| p.path.starts_with("status"))
            .map(|p| format!("{} {}", p.kind, p.path))
            .collect();
        assert!(under.is_empty(), "{under:?}");
    }

    /// The API server refuses a CRD whose rules may cost too much: a rule that scans a
    /// string needs its `maxLength`, a rule over a list or map its `maxItems` or
    /// `maxProperties`. (Applying the CRDs to the real API server is the final word:
    /// e2e/tests/admission does.)
    #[test]
    fn scanned_values_are_bounded() {
        for p in placed() {
            let n = &p.node;
            let scans = ["matches(", "isURL(", "format.", "isQuantity("]
                .iter()
                .any(|f| p.rule.contains(f));
            let iterates = p.rule.contains("self.all(");
            if scans && n["type"] == "string" {
                assert!(
                    n["maxLength"].is_u64(),
                    "{} {}: no maxLength",
                    p.kind,
                    p.path
                );
            }
            if iterates {
                assert!(
                    n["maxItems"].is_u64() || n["maxProperties"].is_u64(),
                    "{} {}: no maxItems/maxProperties",
                    p.kind,
                    p.path
                );
            }
        }
    }

    #[test]
    fn one_of_lists_the_fields() {
        let r = exactly_one_of(&["a", "b", "c"], "x");
        assert_eq!(
            r.rule,
            "[has(self.a), has(self.b), has(self.c)].exists_one(x, x)"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["message"], "x: set exactly one of a, b and c");
    }

    #[test]
    fn the_time_rule_escapes_its_pattern_for_a_cel_string() {
        let r = rfc3339_time("t");
        assert!(r.rule.contains(r"(\\.[0-9]{1,9})?"), "{}", r.rule);
    }

    /// A policy without retention never sends `retention: {}`, which the rule refuses.
    #[test]
    fn empty_retention_is_never_sent() {
        let spec = crate::crd::backup_policy::BackupPolicySpec::default();
        let v = serde_json::to_value(&spec).unwrap();
        assert!(v.get("retention").is_none(), "{v}");
    }
}

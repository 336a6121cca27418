//! Names, labels and the result contract of everything the controllers create (Backups,
//! mover Jobs, temporary PVCs and VolumeSnapshots). Names are deterministic so that a
//! retry after a crash finds and adopts what the previous attempt created instead of
//! creating a second one (observe before create).

pub mod mover;
pub mod result;
pub(crate) mod security;

use std::collections::BTreeMap;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use k8s_openapi::api::core::v1::Namespace;

use crate::crd::labels;

/// The token of the drill sandbox whose namespace has UID `uid`: the value of the
/// `lifeboat.dev/sandbox-token` label that the sandbox's mover NetworkPolicy lets out.
/// Derived from the UID, which did not exist when any restored backup was taken.
pub(crate) fn sandbox_token(uid: &str) -> String {
    let digest = Sha256::digest(format!("lifeboat-sandbox:{uid}"));
    hex::encode(&digest[..8])
}

/// The drill run a sandbox would belong to: what only the DrillRun controller writes on
/// the namespace it creates, and the namespace UID the run recorded when it did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SandboxOwner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// `status.sandboxUid` of the run, once recorded. `None` only while the run has not
    /// recorded it yet (between the create and the status write, or a run an older
    /// release started); see docs/security.md.
    pub recorded_uid: Option<&'a str>,
}

/// The one answer to "is `ns` the sandbox of this drill run": Lifeboat's sandbox labels
/// naming the run, annotations naming its namespace/name and UID, the invitation of the
/// run's namespace, and, once the run recorded it, the namespace's own UID. Labels and
/// annotations alone are not enough once a UID is recorded: anyone who may label
/// namespaces can copy them, nobody can give a namespace another's UID.
pub(crate) fn is_sandbox_of(ns: &Namespace, owner: &SandboxOwner<'_>) -> bool {
    let label = |k: &str| ns.metadata.labels.as_ref().and_then(|l| l.get(k));
    let annotation = |k: &str| ns.metadata.annotations.as_ref().and_then(|a| a.get(k));
    let is = |v: Option<&String>, want: &str| v.map(String::as_str) == Some(want);
    is(label(labels::MANAGED_BY), labels::MANAGER)
        && is(label(labels::SANDBOX), "true")
        && is(label(labels::DRILL_RUN), &label_value(owner.name))
        && is(
            annotation(crate::crd::annotations::DRILL_RUN_REF),
            &format!("{}/{}", owner.namespace, owner.name),
        )
        && !owner.uid.is_empty()
        && is(
            annotation(crate::crd::annotations::DRILL_RUN_UID),
            owner.uid,
        )
        && is(
            annotation(crate::crd::restore::ALLOW_RESTORE_FROM),
            owner.namespace,
        )
        && owner
            .recorded_uid
            .is_none_or(|u| ns.metadata.uid.as_deref() == Some(u))
}

/// Longest name most kinds accept (DNS-1123 subdomain is 253, but Job names end up in
/// a pod label, `job-name`, capped at 63).
pub const MAX_NAME: usize = 63;

/// A DNS-1123 label made of `parts` joined by `-`. When it would exceed `max`, the
/// tail is replaced by a stable 8-hex-digit hash of the whole, so distinct inputs keep
/// distinct names and the same input always gives the same name.
pub fn name(parts: &[&str], max: usize) -> String {
    let joined = sanitize(&parts.join("-"));
    if joined.len() <= max {
        return joined;
    }
    let hash = short_hash(&parts.join("\u{0}"));
    let keep = max.saturating_sub(hash.len() + 1);
    let head = joined[..keep].trim_end_matches('-');
    format!("{head}-{hash}")
}

/// Lower-cases and replaces anything outside `[a-z0-9-]` with `-`, trimming `-` at the
/// ends, so user-chosen names (which may contain `.`) fit label and Job name rules.
fn sanitize(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches('-').to_string()
}

/// First 8 hex digits of SHA-256: stable across processes and releases.
pub fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
}

/// Name of the Backup a policy's schedule creates for `slot`: `<policy>-<YYYYMMDDHHMM>`
/// in UTC. One name per slot, so a second attempt for the same slot collides instead of
/// duplicating the run.
pub fn scheduled_backup_name(policy: &str, slot: Timestamp) -> String {
    let stamp = slot.strftime("%Y%m%d%H%M").to_string();
    name(&[policy, &stamp], MAX_NAME)
}

/// A label value: at most 63 characters; longer values are shortened the same way as
/// names (k8up's trick), so selectors on them still work.
pub fn label_value(v: &str) -> String {
    if v.len() <= 63 {
        v.to_string()
    } else {
        name(&[v], 63)
    }
}

/// The common labels of an object Lifeboat creates for a policy.
///
/// NB: no `app.kubernetes.io/instance`: Argo CD (before 3.0) tracks applications by that
/// label, so an Application named like a policy would claim our generated objects.
/// `lifeboat.dev/policy` carries the policy name instead.
pub fn policy_labels(policy: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), "lifeboat".to_string()),
        (labels::COMPONENT.to_string(), component.to_string()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::POLICY.to_string(), label_value(policy)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_stable_and_distinct() {
        assert_eq!(name(&["orders", "db"], 63), "orders-db");
        assert_eq!(name(&["My.App", "DB_1"], 63), "my-app-db-1");
        let long = "a".repeat(80);
        let n1 = name(&[&long, "x"], 63);
        let n2 = name(&[&long, "y"], 63);
        assert!(n1.len() <= 63 && n2.len() <= 63);
        assert_ne!(n1, n2, "the hash keeps long names distinct");
        assert_eq!(n1, name(&[&long, "x"], 63), "stable");
        assert!(!n1.contains("--") && !n1.ends_with('-'));
    }

    #[test]
    fn scheduled_backup_names_are_per_slot() {
        let slot: Timestamp = "2026-03-04T05:06:00Z".parse().unwrap();
        assert_eq!(scheduled_backup_name("orders", slot), "orders-202603040506");
        let next: Timestamp = "2026-03-04T05:07:00Z".parse().unwrap();
        assert_ne!(
            scheduled_backup_name("orders", slot),
            scheduled_backup_name("orders", next)
        );
        let long = "p".repeat(70);
        assert!(scheduled_backup_name(&long, slot).len() <= MAX_NAME);
    }
}

//! The Restore spec checks the CRD's CEL rules cannot make (and defence in depth for
//! objects stored before the rules).

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::failure;
use crate::crd::common::Failure;
use crate::crd::restore::Restore;
use crate::schedule::duration;

/// Checks the spec. The CRD's CEL rules refuse most of this at admission now (one-of
/// source, pointInTime, one-of target, duplicate sources, empty hosts); this stays as
/// defence in depth for objects stored before the rules, or a CRD installed without them.
/// The `volumes.rename` targets are checked only here.
pub fn validate(r: &Restore) -> Result<(), Failure> {
    let invalid = |m: String| Err(failure("InvalidSpec", m));
    let s = &r.spec;
    let from_store = s.source.store_ref.is_some();
    if from_store != s.source.from_policy.is_some() {
        return invalid("spec.source: storeRef and fromPolicy go together".into());
    }
    if from_store && crate::controller::restore::from_store::identity(r).is_none() {
        return invalid("spec.source.fromPolicy must be namespace/policy".into());
    }
    if s.source.backup_name.is_some() && (!from_store || s.source.point_in_time.is_some()) {
        return invalid("spec.source.backupName needs storeRef and excludes pointInTime".into());
    }
    match (&s.source.backup_ref, &s.source.policy_ref, from_store) {
        (Some(_), None, false) => {
            if s.source.point_in_time.is_some() {
                return invalid("spec.source.pointInTime needs policyRef, not backupRef".into());
            }
        }
        (None, Some(_), false) | (None, None, true) => {
            if let Some(t) = &s.source.point_in_time
                && t.parse::<Timestamp>().is_err()
            {
                return invalid(format!(
                    "spec.source.pointInTime {t:?} is not an RFC 3339 time"
                ));
            }
        }
        _ => {
            return invalid(
                "spec.source: set exactly one of backupRef, policyRef and storeRef".into(),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for (i, d) in s.databases.iter().enumerate() {
        if !seen.insert(d.source.as_str()) {
            return invalid(format!(
                "spec.databases[{i}]: source {:?} is listed twice",
                d.source
            ));
        }
        match (&d.target, &d.ephemeral) {
            (Some(t), None) => {
                if t.host.trim().is_empty() {
                    return invalid(format!("spec.databases[{i}].target.host is empty"));
                }
                if let Some(db) = &t.database
                    && (db.is_empty() || db.starts_with('-'))
                {
                    return invalid(format!(
                        "spec.databases[{i}].target.database {db:?} is not a database name"
                    ));
                }
            }
            (None, Some(e)) => {
                if let Some(t) = &e.startup_timeout
                    && duration::parse(t).is_err()
                {
                    return invalid(format!(
                        "spec.databases[{i}].ephemeral.startupTimeout {t:?} is not a duration"
                    ));
                }
            }
            _ => {
                return invalid(format!(
                    "spec.databases[{i}] ({}): set exactly one of target and ephemeral",
                    d.source
                ));
            }
        }
    }
    if let Some(v) = &s.volumes {
        let mut targets = BTreeSet::new();
        for (from, to) in &v.rename {
            if !is_dns_subdomain(to) {
                return invalid(format!(
                    "spec.volumes.rename[{from:?}]: {to:?} is not a valid PVC name"
                ));
            }
            if !targets.insert(to.as_str()) {
                return invalid(format!(
                    "spec.volumes.rename: two volumes renamed to {to:?}"
                ));
            }
        }
    }
    Ok(())
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

//! Which Backup a Restore's `spec.source` names: by name, or a policy's newest usable
//! restore point at or before `pointInTime` (from a store, the catalog's points stand in
//! for the Backups).

use jiff::Timestamp;
use kube::ResourceExt;

use super::failure;
use crate::controller::store::forgotten::{all_forgotten, forgotten_message};
use crate::crd::backup::{Backup, BackupPhase};
use crate::crd::common::Failure;
use crate::crd::restore::Restore;

/// What `spec.source` resolves to.
#[derive(Debug)]
pub enum Resolution<'a> {
    /// The Backup to restore.
    Found(&'a Backup),
    /// The named Backup is still running; the message says so.
    Wait(String),
    /// No usable restore point (`RestorePointNotFound`) or an invalid spec.
    Missing(Failure),
}

fn usable(b: &Backup) -> bool {
    let st = b.status.as_ref();
    matches!(
        st.and_then(|s| s.phase),
        Some(BackupPhase::Succeeded | BackupPhase::PartiallyFailed)
    ) && st.and_then(|s| s.restore_point_time.as_ref()).is_some()
        && !all_forgotten(b)
}

/// Resolves `spec.source` among the namespace's Backups: a Backup by name, or the
/// policy's newest successful restore point at or before `pointInTime`.
pub fn resolve_point<'a>(r: &Restore, backups: &'a [Backup]) -> Resolution<'a> {
    let src = &r.spec.source;
    let missing = |m: String| Resolution::Missing(failure("RestorePointNotFound", m));
    if let Some(b) = &src.backup_ref {
        let Some(found) = backups.iter().find(|x| x.name_any() == b.name) else {
            return missing(format!("Backup {:?} does not exist", b.name));
        };
        let st = found.status.clone().unwrap_or_default();
        return match st.phase.unwrap_or_default() {
            BackupPhase::Pending | BackupPhase::Running => Resolution::Wait(format!(
                "Backup {:?} has not finished yet ({})",
                b.name,
                st.phase.unwrap_or_default().as_str()
            )),
            BackupPhase::Failed => missing(format!(
                "Backup {:?} failed and holds no restore point{}",
                b.name,
                st.failure
                    .map(|f| format!(" ({}: {})", f.reason, f.message))
                    .unwrap_or_default()
            )),
            BackupPhase::Cancelled => missing(format!(
                "Backup {:?} was cancelled and holds no restore point",
                b.name
            )),
            _ if all_forgotten(found) => Resolution::Missing(failure(
                "SnapshotsForgotten",
                format!("Backup {:?}: {}", b.name, forgotten_message(found)),
            )),
            _ if usable(found) => Resolution::Found(found),
            _ => missing(format!("Backup {:?} records no restore point time", b.name)),
        };
    }
    // From a store, `backups` are the catalog's restore points of the identity.
    let identity = crate::controller::restore::from_store::identity(r);
    if let (Some(run), Some((ns, name))) = (&src.backup_name, identity) {
        return match backups
            .iter()
            .find(|b| b.name_any() == *run && b.spec.policy_ref.name == name)
        {
            Some(b) => Resolution::Found(b),
            None => missing(format!(
                "the store's repository holds no restore point {run:?} of {ns}/{name}"
            )),
        };
    }
    let policy = match (&src.policy_ref, identity) {
        (Some(p), _) => p.name.clone(),
        (None, Some((_, name))) => name.to_string(),
        (None, None) => {
            return Resolution::Missing(failure(
                "InvalidSpec",
                "spec.source: set exactly one of backupRef, policyRef and storeRef",
            ));
        }
    };
    let until = match src.point_in_time.as_deref().map(str::parse::<Timestamp>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            return Resolution::Missing(failure(
                "InvalidSpec",
                "spec.source.pointInTime is not an RFC 3339 time",
            ));
        }
    };
    let best = backups
        .iter()
        .filter(|b| b.spec.policy_ref.name == policy && usable(b))
        .filter_map(|b| {
            let t = b.status.as_ref()?.restore_point_time.as_ref()?.0;
            until.is_none_or(|u| t <= u).then_some((t, b))
        })
        .max_by(|(t1, b1), (t2, b2)| t1.cmp(t2).then_with(|| b1.name_any().cmp(&b2.name_any())));
    match best {
        Some((_, b)) => Resolution::Found(b),
        None => missing(format!(
            "{}{}",
            match (identity, &src.store_ref) {
                (Some((ns, name)), Some(s)) =>
                    format!("store {:?} holds no restore point of {ns}/{name}", s.name),
                _ => format!("BackupPolicy {policy:?} has no successful Backup"),
            },
            src.point_in_time
                .as_deref()
                .map(|t| format!(" at or before {t}"))
                .unwrap_or_default()
        )),
    }
}

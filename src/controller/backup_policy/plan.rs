//! The pure decision of the BackupPolicy controller: from the policy, its store, its
//! Backups, the namespace's PVCs and the clock, compute the Backup to create (if a slot is
//! due), the Backups to prune (history limits), the next status, the Events and the
//! requeue delay. No IO here; every rule is a table test.

use crate::metrics::PolicyGauges;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{Resource, ResourceExt};

use crate::controller::conditions::{self, Desired};
use crate::controller::sources;
use crate::crd::backup::{Backup, BackupPhase, BackupSpec, PolicyRef, Trigger};
use crate::crd::backup_policy::{BackupPolicy, BackupPolicyStatus};
use crate::crd::common::{ConcurrencyPolicy, condition};
use crate::jobs;
use crate::schedule::{self, Schedule};

/// Default number of finished Backups kept per outcome.
pub const DEFAULT_HISTORY: u32 = 3;
/// Status is refreshed at least this often (the `currentRPO` column ages).
pub const REFRESH: Duration = Duration::from_secs(300);
/// Never sleep longer than this, whatever the schedule says (a safety net).
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

pub use crate::controller::access::StoreState;

/// Everything the plan looks at.
pub struct Observed<'a> {
    pub policy: &'a BackupPolicy,
    pub store: StoreState,
    /// Backups labelled with this policy, in any order.
    pub backups: &'a [Backup],
    pub pvcs: &'a [PersistentVolumeClaim],
    /// Secrets referenced by database sources that do not exist.
    pub missing_secrets: Vec<String>,
    pub now: Timestamp,
}

pub use crate::controller::PlannedEvent;

/// Why the policy cannot run now; written to the Ready condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// From a fixed vocabulary: it is also the Event reason and the metric label.
    pub reason: &'static str,
    pub message: String,
    /// Only a spec change can fix it.
    pub permanent: bool,
}

/// The decision.
#[derive(Debug)]
pub struct Plan {
    pub create: Option<Backup>,
    pub delete: Vec<String>,
    pub status: BackupPolicyStatus,
    pub events: Vec<PlannedEvent>,
    pub requeue: Duration,
    pub not_ready: Option<NotReady>,
    /// Figures for the policy's gauges.
    pub gauges: PolicyGauges,
    /// A scheduled run was skipped or missed.
    pub skipped: bool,
}

fn phase(b: &Backup) -> BackupPhase {
    b.status.as_ref().and_then(|s| s.phase).unwrap_or_default()
}

fn created(b: &Backup) -> Timestamp {
    b.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

fn restore_point(b: &Backup) -> Option<Timestamp> {
    let s = b.status.as_ref()?;
    s.restore_point_time
        .as_ref()
        .or(s.completion_time.as_ref())
        .map(|t| t.0)
}

/// The Backup object a schedule slot creates.
pub fn scheduled_backup(policy: &BackupPolicy, slot: Timestamp) -> Backup {
    let name = jobs::scheduled_backup_name(&policy.name_any(), slot);
    let owner = policy
        .controller_owner_ref(&())
        .expect("a stored policy has a name and uid");
    Backup {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: policy.namespace(),
            labels: Some(jobs::policy_labels(&policy.name_any(), "backup")),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: BackupSpec {
            policy_ref: PolicyRef {
                name: policy.name_any(),
            },
            trigger: Trigger::Schedule,
            scheduled_time: Some(Time(slot)),
        },
        status: None,
    }
}

/// Checks everything that must hold before the policy may run.
fn readiness(o: &Observed<'_>) -> Result<Schedule, NotReady> {
    let policy = o.policy;
    let identity = format!(
        "{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    );
    let permanent = |reason: &'static str, message: String| NotReady {
        reason,
        message,
        permanent: true,
    };
    let waiting = |reason: &'static str, message: String| NotReady {
        reason,
        message,
        permanent: false,
    };
    let sched = Schedule::new(&policy.spec.schedule, &identity)
        .map_err(|e| permanent(e.category(), e.to_string()))?;
    // The CRD's rules refuse malformed and zero durations at admission; parsing them here
    // stays as defence in depth (objects stored before the rules).
    if let Some(rpo) = &policy.spec.objectives.rpo {
        schedule::duration::parse(rpo)
            .map_err(|e| permanent("InvalidObjective", format!("spec.objectives.rpo: {e}")))?;
    }
    if let Some(d) = &policy.spec.mover.active_deadline {
        schedule::duration::parse(d)
            .map_err(|e| permanent("InvalidMover", format!("spec.mover.activeDeadline: {e}")))?;
    }
    sources::validate(&policy.spec.sources).map_err(|p| permanent(p.reason, p.message))?;
    let store = &policy.spec.store_ref;
    match &o.store {
        StoreState::Missing => {
            return Err(waiting(
                "StoreNotFound",
                format!("{:?} {:?} does not exist", store.kind, store.name),
            ));
        }
        StoreState::NotAllowed => {
            return Err(permanent(
                "StoreNotAllowed",
                format!(
                    "ClusterBackupStore {:?} allows namespace {:?} neither in allowedNamespaces nor by allowedNamespaceSelector",
                    store.name,
                    policy.namespace().unwrap_or_default()
                ),
            ));
        }
        StoreState::Refused { reason, message } => {
            return Err(permanent(
                reason,
                format!("{:?} {:?}: {message}", store.kind, store.name),
            ));
        }
        StoreState::NotReady { reason, message } => {
            return Err(waiting(
                "StoreNotReady",
                format!(
                    "{:?} {:?} is not ready: {reason}: {message}",
                    store.kind, store.name
                ),
            ));
        }
        StoreState::Ready => {}
    }
    if let Some(secret) = o.missing_secrets.first() {
        return Err(waiting(
            "SecretNotFound",
            format!("Secret {secret:?} referenced by a database source does not exist"),
        ));
    }
    sources::resolve(&policy.spec.sources, o.pvcs).map_err(|p| NotReady {
        reason: p.reason,
        message: p.message,
        permanent: p.permanent,
    })?;
    Ok(sched)
}

/// Finished Backups beyond the history limits, oldest first.
fn surplus(o: &Observed<'_>) -> Vec<String> {
    let spec = &o.policy.spec;
    let keep_ok = spec
        .successful_backups_history_limit
        .unwrap_or(DEFAULT_HISTORY) as usize;
    let keep_failed = spec.failed_backups_history_limit.unwrap_or(DEFAULT_HISTORY) as usize;
    let mut finished: Vec<&Backup> = o
        .backups
        .iter()
        .filter(|b| phase(b).is_finished() && b.metadata.deletion_timestamp.is_none())
        .collect();
    finished.sort_by_key(|b| std::cmp::Reverse((created(b), b.name_any())));
    let (ok, failed): (Vec<&Backup>, Vec<&Backup>) = finished
        .into_iter()
        .partition(|b| phase(b) == BackupPhase::Succeeded);
    let mut out: Vec<String> = ok
        .iter()
        .skip(keep_ok)
        .chain(failed.iter().skip(keep_failed))
        .map(|b| b.name_any())
        .collect();
    out.sort();
    out
}

pub fn plan(o: &Observed<'_>) -> Plan {
    let policy = o.policy;
    let now = o.now;
    let previous = policy.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    // NB: `lastVerifiedRestorePoint` belongs to the drill controller (its own field
    // manager). Sending it here would take it over with `force` and could write back a
    // stale copy; leaving it out keeps this controller's server-side apply from ever
    // touching it.
    status.last_verified_restore_point = None;
    status.observed_generation = policy.metadata.generation;
    let mut events = Vec::new();
    let mut create = None;
    let mut skipped = false;
    let mut requeue = REFRESH;

    // History: newest run, newest success (kept in status even after the Backup object is
    // pruned, so a long history limit is not needed to know the RPO). The newest run's
    // time is when it was created; a run this controller creates is recorded in the same
    // write that handles its slot, so neither its arrival in the cache nor its start
    // costs another status write (when many policies share a slot, every write counts).
    // Only a newer run replaces it: a cache that has not seen the new run yet does not
    // turn the status back.
    if let Some(newest) = o.backups.iter().max_by_key(|b| (created(b), b.name_any())) {
        let name = newest.name_any();
        let t = created(newest);
        let known = previous.last_backup_time.as_ref().map(|x| x.0);
        if previous.last_backup.as_deref() != Some(name.as_str()) && known.is_none_or(|k| t >= k) {
            status.last_backup = Some(name);
            status.last_backup_time = Some(Time(t));
        }
    }
    let newest_ok = o
        .backups
        .iter()
        .filter(|b| phase(b) == BackupPhase::Succeeded)
        .filter_map(|b| restore_point(b).map(|t| (t, b)))
        .max_by_key(|(t, b)| (*t, b.name_any()));
    if let Some((t, b)) = newest_ok {
        let known = status.last_successful_backup_time.as_ref().map(|x| x.0);
        if known.is_none_or(|k| t >= k) {
            status.last_successful_backup = Some(b.name_any());
            status.last_successful_backup_time = Some(Time(t));
        }
    }

    let not_ready = match readiness(o) {
        Err(nr) => {
            status.next_backup_time = None;
            Some(nr)
        }
        Ok(sched) => {
            let last = previous.last_schedule_time.as_ref().map(|t| t.0);
            let not_before = policy
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0);
            let sp = sched.plan(now, last, not_before);
            if policy.spec.schedule.suspend {
                status.next_backup_time = None;
            } else {
                status.next_backup_time = sp.next_slot.map(|t| t.to_string());
                if let Some(slot) = sp.due {
                    status.last_schedule_time = Some(Time(slot));
                    let backup = scheduled_backup(policy, slot);
                    let name = backup.name_any();
                    let exists = o.backups.iter().any(|b| b.name_any() == name);
                    let active: Vec<String> = o
                        .backups
                        .iter()
                        .filter(|b| !phase(b).is_finished())
                        .map(|b| b.name_any())
                        .collect();
                    if exists {
                        // Created by an earlier attempt whose status write was lost: adopt.
                    } else if policy.spec.concurrency_policy == ConcurrencyPolicy::Forbid
                        && !active.is_empty()
                    {
                        skipped = true;
                        events.push(PlannedEvent {
                            warning: true,
                            reason: "BackupSkipped",
                            note: format!(
                                "skipped the {slot} run: {} still running (concurrencyPolicy Forbid)",
                                active.join(", ")
                            ),
                        });
                    } else {
                        events.push(PlannedEvent {
                            warning: false,
                            reason: "BackupCreated",
                            note: format!("created Backup {name} for the {slot} slot"),
                        });
                        // Whole seconds, like the creationTimestamp it stands for.
                        let created = Timestamp::from_second(now.as_second()).unwrap_or(now);
                        status.last_backup = Some(name);
                        status.last_backup_time = Some(Time(created));
                        create = Some(backup);
                    }
                }
                if let Some(slot) = sp.missed {
                    skipped = true;
                    status.last_schedule_time = Some(Time(
                        status
                            .last_schedule_time
                            .as_ref()
                            .map_or(slot, |t| t.0.max(slot)),
                    ));
                    events.push(PlannedEvent {
                        warning: true,
                        reason: "BackupMissed",
                        note: format!(
                            "the {slot} run was not started within its starting deadline; skipped (missed runs are not caught up)"
                        ),
                    });
                }
                if let Some(wake) = sp.wake_at {
                    requeue = requeue.min(until(now, wake));
                }
            }
            None
        }
    };

    // RPO: the age of the newest successful restore point, against the objective.
    let objective = policy
        .spec
        .objectives
        .rpo
        .as_deref()
        .and_then(|r| schedule::duration::parse(r).ok());
    let last_ok = status.last_successful_backup_time.as_ref().map(|t| t.0);
    let age = last_ok.map(|t| until(t, now));
    status.current_rpo = age.map(schedule::duration::format);
    let generation = policy.metadata.generation;
    let mut conds = previous.conditions.clone();
    let was_ready = conditions::is_true(&conds, condition::READY);
    let was_rpo_met = conditions::is_true(&conds, condition::RPO_MET);
    match &not_ready {
        Some(nr) => {
            let changed = conditions::get(&conds, condition::READY)
                .is_none_or(|c| c.status != "False" || c.reason != nr.reason);
            conditions::set(
                &mut conds,
                &Desired::new(condition::READY, false, nr.reason, nr.message.clone()),
                generation,
                now,
            );
            if changed {
                events.push(PlannedEvent {
                    warning: true,
                    reason: nr.reason,
                    note: nr.message.clone(),
                });
            }
        }
        None => {
            let msg = if policy.spec.schedule.suspend {
                "schedule suspended".to_string()
            } else {
                format!(
                    "next backup at {}",
                    status.next_backup_time.as_deref().unwrap_or("unknown")
                )
            };
            conditions::set(
                &mut conds,
                &Desired::new(condition::READY, true, "Ready", msg),
                generation,
                now,
            );
            if was_ready != Some(true) {
                events.push(PlannedEvent {
                    warning: false,
                    reason: "PolicyReady",
                    note: "policy is valid and its store is ready".into(),
                });
            }
        }
    }
    match (objective, age) {
        (None, _) => conds.retain(|c| c.type_ != condition::RPO_MET),
        (Some(obj), None) => {
            conditions::set(
                &mut conds,
                &Desired::new(
                    condition::RPO_MET,
                    false,
                    "NoSuccessfulBackup",
                    format!(
                        "no successful backup yet; objective {}",
                        schedule::duration::format(obj)
                    ),
                ),
                generation,
                now,
            );
        }
        (Some(obj), Some(age)) => {
            let met = age <= obj;
            let (reason, msg) = if met {
                (
                    "WithinObjective",
                    format!(
                        "newest restore point is {} old, objective {}",
                        schedule::duration::format(age),
                        schedule::duration::format(obj)
                    ),
                )
            } else {
                (
                    "ObjectiveBreached",
                    format!(
                        "newest restore point is {} old, older than the objective {}",
                        schedule::duration::format(age),
                        schedule::duration::format(obj)
                    ),
                )
            };
            conditions::set(
                &mut conds,
                &Desired::new(condition::RPO_MET, met, reason, msg),
                generation,
                now,
            );
            if met {
                // Wake exactly when the objective would be breached.
                requeue = requeue.min(obj - age + Duration::from_secs(1));
            }
            if was_rpo_met != Some(met) && was_rpo_met.is_some() {
                events.push(PlannedEvent {
                    warning: !met,
                    reason: if met { "RPOMet" } else { "RPOBreached" },
                    note: format!(
                        "{}: {}",
                        reason,
                        conditions::get(&conds, condition::RPO_MET)
                            .map(|c| c.message.as_str())
                            .unwrap_or_default()
                    ),
                });
            }
        }
    }
    status.conditions = conds;

    Plan {
        create,
        delete: surplus(o),
        status,
        events,
        requeue: requeue.clamp(Duration::from_secs(1), MAX_REQUEUE),
        not_ready,
        gauges: PolicyGauges {
            rpo_seconds: age.map(|a| a.as_secs_f64()),
            rpo_objective_seconds: objective.map(|o| o.as_secs_f64()),
            last_success_seconds: last_ok.map(|t| t.as_second() as f64),
        },
        skipped,
    }
}

/// Non-negative time from `from` to `to`.
fn until(from: Timestamp, to: Timestamp) -> Duration {
    let d = to.duration_since(from);
    if d <= SignedDuration::ZERO {
        Duration::ZERO
    } else {
        Duration::try_from(d).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests;

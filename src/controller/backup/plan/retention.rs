//! The retention step of a finished Backup: its mover Job (one per repository at a time)
//! and its outcome, as the `RetentionApplied` condition and Event.

use super::*;
use crate::crd::annotations;
use crate::crd::common::DEFAULT_MAX_FORGET_PERCENT;

/// How often a retention run that met a repository lock is tried again.
pub(crate) const LOCKED_RETRY_EVERY: Duration = Duration::from_secs(30);
/// How long after the run finished retention keeps retrying a locked repository, or
/// waiting for another maintenance Job, before it fails (`RetentionFailed` with
/// `RepositoryLocked` or `MaintenanceBusy`). Longer than restic's stale-lock age
/// (30 minutes) and a few store probe intervals, so a lock the controller removes, or a
/// long backup elsewhere that finishes, does not cost a retention run.
pub(crate) const LOCKED_RETRY_FOR: Duration = Duration::from_secs(2 * 60 * 60);

fn within_lock_retries(p: &Plan, now: Timestamp) -> bool {
    let Some(done) = p.status.completion_time.as_ref() else {
        return true;
    };
    Duration::try_from(now.duration_since(done.0)).is_ok_and(|age| age < LOCKED_RETRY_FOR)
}

/// After a run with at least one new snapshot: forget + prune by the policy's retention,
/// one maintenance Job per repository at a time.
pub(super) fn retention(o: &Observed<'_>, p: &mut Plan) {
    let Some(policy) = o.policy else {
        return;
    };
    let phase = p.status.phase.unwrap_or_default();
    let r = &policy.spec.retention;
    if r.is_empty() || !matches!(phase, BackupPhase::Succeeded | BackupPhase::PartiallyFailed) {
        return;
    }
    if conditions::get(&p.status.conditions, RETENTION_APPLIED)
        .is_some_and(|c| c.reason != "Waiting" && c.reason != "Running")
    {
        return;
    }
    let b = o.backup;
    let name = retention_job_name(&b.name_any());
    let generation = b.metadata.generation;
    let set = |p: &mut Plan, status: bool, reason: &str, msg: String| {
        conditions::set(
            &mut p.status.conditions,
            &Desired::new(RETENTION_APPLIED, status, reason, msg),
            generation,
            o.now,
        );
    };
    let Some(store) = o.store.as_ref() else {
        // The namespace may no longer use the store (or it is gone): retention cannot run
        // for this run, and says why instead of waiting forever.
        if let Some(f) = &o.start_blocker {
            set(
                p,
                false,
                "RetentionFailed",
                format!("{}: {}", f.reason, f.message),
            );
            if o.jobs.iter().any(|j| j.name_any() == name) {
                p.delete_jobs.push(name);
            }
        }
        return;
    };
    match o.jobs.iter().find(|j| j.name_any() == name) {
        Some(job) => match job_finished(job) {
            Some(true) => {
                let result = pod_result(o.pods, job, true).and_then(|(r, _)| r);
                let detail = |k: &str| {
                    result
                        .as_ref()
                        .and_then(|r| r.details.get(k).and_then(|v| v.as_u64()))
                };
                let msg = retention_message(detail("forgotten"), detail("bytesRemoved"));
                set(p, true, "Applied", msg.clone());
                p.events.push(PlannedEvent {
                    warning: false,
                    reason: "RetentionApplied",
                    note: msg,
                });
            }
            Some(false) => {
                let f = pod_result(o.pods, job, false)
                    .and_then(|(r, _)| r)
                    .and_then(|r| r.failure)
                    .unwrap_or_else(|| job_failure_reason(job));
                if f.reason == RETENTION_BREAKER_TRIPPED {
                    // Final for this run: the acknowledgement applies to the next run's
                    // retention (the same rules, a plan one snapshot longer).
                    let note = format!(
                        "{}; if the rules are meant, acknowledge them: kubectl annotate backuppolicy -n {} {} {}={} --overwrite",
                        f.message,
                        b.namespace().unwrap_or_default(),
                        policy.name_any(),
                        annotations::RETENTION_BREAKER_ACK,
                        policy.metadata.generation.unwrap_or_default(),
                    );
                    set(p, false, RETENTION_BREAKER_TRIPPED, note.clone());
                    p.events.push(PlannedEvent {
                        warning: true,
                        reason: RETENTION_BREAKER_TRIPPED,
                        note,
                    });
                    return;
                }
                if f.reason == "RepositoryLocked" && within_lock_retries(p, o.now) {
                    // Usually the lock of a mover that was killed: the store controller
                    // removes those (docs/engine.md, "Locks of movers that are gone"), and
                    // a live holder lets go when it finishes. A new Job then retries
                    // (same name, once this one is gone).
                    set(
                        p,
                        false,
                        "Waiting",
                        format!(
                            "{}: {}; retrying every {}s until {}s after the run finished",
                            f.reason,
                            f.message,
                            LOCKED_RETRY_EVERY.as_secs(),
                            LOCKED_RETRY_FOR.as_secs()
                        ),
                    );
                    p.delete_jobs.push(name);
                    p.requeue = Some(LOCKED_RETRY_EVERY);
                    return;
                }
                set(
                    p,
                    false,
                    "RetentionFailed",
                    format!("{}: {}", f.reason, f.message),
                );
                p.events.push(PlannedEvent {
                    warning: true,
                    reason: "RetentionFailed",
                    note: f.message,
                });
            }
            None => {
                set(
                    p,
                    false,
                    "Running",
                    format!("maintenance Job {name} is running"),
                );
                p.requeue = Some(Duration::from_secs(15));
            }
        },
        None if o.maintenance_busy && !within_lock_retries(p, o.now) => {
            // The next run's retention covers what this one would have done: say why
            // this one gave up instead of waiting without end.
            let msg = format!(
                "another maintenance Job was still working on the repository {}s after \
                 this run finished; the next run's retention applies the rules",
                LOCKED_RETRY_FOR.as_secs()
            );
            set(
                p,
                false,
                "RetentionFailed",
                format!("MaintenanceBusy: {msg}"),
            );
            p.events.push(PlannedEvent {
                warning: true,
                reason: "RetentionFailed",
                note: msg,
            });
        }
        None if o.maintenance_busy => {
            set(
                p,
                false,
                "Waiting",
                "another maintenance Job is working on the repository".into(),
            );
            p.requeue = Some(Duration::from_secs(30));
        }
        None => {
            let ns = b.namespace().unwrap_or_default();
            let mut keep = r.clone();
            keep.max_forget_percent = Some(if breaker_acknowledged(policy) {
                100
            } else {
                r.max_forget_percent.unwrap_or(DEFAULT_MAX_FORGET_PERCENT)
            });
            let command = MoverCommand::Retention(ApplyRetention {
                policy: NamespacedName::new(&ns, policy.name_any()),
                backup: Some(b.name_any()),
                keep,
                sources: succeeded_sources(&p.status, &ns),
                keep_backups: newest_verified(policy),
                dry_run: false,
                owner: SnapshotOwner::of_policy(o.config.cluster_id.as_deref(), policy),
            });
            p.create_jobs.push(mover::build(&MoverJob {
                name: name.clone(),
                namespace: ns,
                labels: labels_for(b, None, "maintenance", Some(&store.identity)),
                owner: owner(b),
                image: policy
                    .spec
                    .mover
                    .image
                    .clone()
                    .unwrap_or_else(|| o.config.mover_image.clone()),
                image_pull_policy: o.config.image_pull_policy.clone(),
                service_account: o.config.mover_service_account.clone(),
                command,
                env: vec![],
                store: store.clone(),
                mounts: vec![],
                node_name: None,
                node_selector: policy.spec.mover.node_selector.clone(),
                tolerations: policy.spec.mover.tolerations.clone(),
                active_deadline_seconds: DEFAULT_DEADLINE.as_secs() as i64,
                backoff_limit: 1,
                resources: policy.spec.mover.resources.clone(),
                privilege: Privilege::Unprivileged,
            }));
            set(
                p,
                false,
                "Running",
                format!("maintenance Job {name} started"),
            );
            p.requeue = Some(Duration::from_secs(15));
        }
    }
}

/// The mover's failure reason (and this condition's and Event's) when the breaker stops a
/// retention run.
pub(crate) const RETENTION_BREAKER_TRIPPED: &str = "RetentionBreakerTripped";

/// Whether the policy's current generation is acknowledged past the mass-deletion
/// breaker. A generation, not a flag: the next edit of the policy arms the breaker again.
fn breaker_acknowledged(policy: &BackupPolicy) -> bool {
    let generation = policy.metadata.generation.map(|g| g.to_string());
    policy
        .annotations()
        .get(annotations::RETENTION_BREAKER_ACK)
        .is_some_and(|a| Some(a.trim()) == generation.as_deref())
}

/// The policy's newest restore point a drill verified (`status.lastVerifiedRestorePoint`,
/// written by the drill controller; tenants cannot write status): retention keeps its
/// snapshots, so thinning never leaves a policy whose every verified point is gone. A
/// newer verified point moves it, and the older one is then thinned like any other.
fn newest_verified(policy: &BackupPolicy) -> Vec<String> {
    policy
        .status
        .as_ref()
        .and_then(|s| s.last_verified_restore_point.as_ref())
        .map(|v| vec![v.backup.clone()])
        .unwrap_or_default()
}

/// The `source=` tag values (`KIND/NAME`) of the run's sources that succeeded: retention
/// thins only their histories; a source whose backup failed keeps all of its snapshots.
pub(crate) fn succeeded_sources(status: &BackupStatus, namespace: &str) -> Vec<String> {
    status
        .sources
        .iter()
        .filter(|s| s.phase == SourcePhase::Succeeded)
        .map(|s| match s.kind {
            SourceKind::Volume => format!("volume/{}", s.name),
            SourceKind::Database => format!("database/{}", s.name),
            // The manifests mover tags its snapshot with the namespace it saved.
            SourceKind::Manifests => format!("manifests/{namespace}"),
        })
        .collect()
}

/// What a finished retention run did, as its condition and Event say it. The mover
/// prunes only when it forgot something, so "pruned" is said only then.
pub(crate) fn retention_message(forgotten: Option<u64>, bytes_removed: Option<u64>) -> String {
    match (forgotten, bytes_removed) {
        (Some(0), _) => {
            "every snapshot is still kept by the rules: nothing forgotten, no prune".into()
        }
        (Some(n), Some(b)) => format!(
            "forgot {n} snapshot(s) and pruned {} of unreferenced data",
            human_bytes(b)
        ),
        (Some(n), None) => format!("forgot {n} snapshot(s) and pruned unreferenced data"),
        (None, _) => "retention ran; its mover reported no figures".into(),
    }
}

//! The end of a drill run: a cancel request, the clean-up of the sandbox and the final,
//! never rewritten, record (`Completed` with its outcome).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::report::{report_job_name, report_mirror_name};
use super::{
    CLEANUP_TIMEOUT, DEFAULT_SANDBOX_TTL, Observed, Plan, PlannedEvent, SandboxState, elapsed,
    enter, failure, span_start, spec_of,
};
use crate::controller::conditions::{self, Desired};
use crate::crd::annotations;
use crate::crd::backup_policy::VerifiedRestorePoint;
use crate::crd::common::condition;
use crate::crd::dr_drill::{DrillFailure, DrillOutcome, DrillPhase};
use crate::drill::checks::summarise;
use crate::schedule::duration;

/// Whether the run's DRDrill asks for this run to stop: its annotation
/// `lifeboat.dev/cancel-run` names the run. On the DRDrill, not the DrillRun: a DrillRun
/// is a record its namespace's editors may create and read but never change, while the
/// drill is theirs to edit (and one drill has one run at a time, so one name suffices).
pub(super) fn cancel_asked(o: &Observed<'_>) -> bool {
    o.drill
        .and_then(|d| d.metadata.annotations.as_ref())
        .and_then(|a| a.get(annotations::CANCEL_RUN))
        .is_some_and(|r| *r == o.run.name_any())
}

/// Stops the run where it is: outcome `Cancelled`, the step it was in as the failure's
/// step (reason `Cancelled`), then Reporting and CleaningUp as after any failure, so the
/// evidence chain records the run and the sandbox (with whatever the Restore was filling)
/// goes. Only before Reporting: a run writing its report or cleaning up is nearly done,
/// and its outcome is what it measured.
pub(super) fn cancel(o: &Observed<'_>, p: &mut Plan, step: DrillPhase) {
    let step = format!("{step:?}");
    p.events.push(PlannedEvent {
        warning: false,
        reason: "DrillRunCancelled",
        note: format!(
            "cancel requested at {step} (DRDrill annotation {}); removing the sandbox",
            annotations::CANCEL_RUN
        ),
    });
    if p.status.start_time.is_none() {
        p.status.start_time = Some(Time(o.now));
    }
    p.status.outcome = Some(DrillOutcome::Cancelled);
    p.status.failure = Some(DrillFailure {
        step,
        failure: failure(
            "Cancelled",
            format!(
                "cancelled by request (DRDrill annotation {})",
                annotations::CANCEL_RUN
            ),
        ),
    });
    enter(&mut p.status, DrillPhase::Reporting, o.now);
}

pub(super) fn cleaning_up(o: &Observed<'_>, p: &mut Plan) {
    let now = o.now;
    let ns = o.config.namespace.clone();
    let report = report_job_name(o.run);
    if o.jobs.iter().any(|j| j.name_any() == report) {
        p.delete_jobs.push((ns.clone(), report));
    }
    // Whatever the store is now (gone, no longer allowed), the copy of its credentials made
    // for the report goes (the delete checks the Secret is this run's), and the record.
    p.delete_secrets.push((ns, report_mirror_name(o.run)));
    p.delete_record = true;
    let spec = spec_of(o, &p.status).cloned().unwrap_or_default();
    let keep = spec.sandbox.keep_on_failure && p.status.outcome == Some(DrillOutcome::Failed);
    let sandbox = p.status.sandbox_namespace.clone().unwrap_or_default();
    if keep && o.sandbox != SandboxState::Absent {
        let ttl = spec
            .sandbox
            .ttl
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(DEFAULT_SANDBOX_TTL);
        p.events.push(PlannedEvent {
            warning: false,
            reason: "SandboxKept",
            note: format!(
                "keeping sandbox {sandbox} of the failed run for {} (keepOnFailure)",
                duration::format(ttl)
            ),
        });
        complete(o, p);
        return;
    }
    let started = span_start(&p.status, DrillPhase::CleaningUp).unwrap_or(now);
    match o.sandbox {
        SandboxState::Absent => complete(o, p),
        SandboxState::Foreign => {
            p.events.push(PlannedEvent {
                warning: true,
                reason: "SandboxNotOwned",
                note: format!("not deleting namespace {sandbox}: this run did not create it"),
            });
            complete(o, p);
        }
        SandboxState::Ours { terminating } => {
            if elapsed(started, now) > CLEANUP_TIMEOUT {
                p.events.push(PlannedEvent {
                    warning: true,
                    reason: "SandboxNotRemoved",
                    note: format!(
                        "sandbox {sandbox} is still there after {}; the sandbox sweep keeps deleting it",
                        duration::format(CLEANUP_TIMEOUT)
                    ),
                });
                complete(o, p);
                return;
            }
            if !terminating {
                p.delete_sandbox = Some(sandbox);
            }
            p.requeue = Some(Duration::from_secs(3));
        }
    }
}

fn complete(o: &Observed<'_>, p: &mut Plan) {
    let now = o.now;
    enter(&mut p.status, DrillPhase::Completed, now);
    let outcome = p.status.outcome.unwrap_or(DrillOutcome::Failed);
    p.status.outcome = Some(outcome);
    p.status.completion_time = Some(Time(now));
    let reason = outcome.as_str();
    let msg = match (&p.status.failure, outcome) {
        (Some(f), DrillOutcome::Failed) => {
            format!(
                "failed at {}: {}: {}",
                f.step, f.failure.reason, f.failure.message
            )
        }
        (f, DrillOutcome::Cancelled) => format!(
            "cancelled at {}",
            f.as_ref().map_or("Pending", |f| f.step.as_str())
        ),
        _ => format!(
            "passed: {} check(s), RTO {}, RPO {}",
            p.status.checks.len(),
            p.status
                .rto
                .as_ref()
                .and_then(|m| m.measured.clone())
                .unwrap_or_else(|| "-".into()),
            p.status
                .rpo
                .as_ref()
                .and_then(|m| m.measured.clone())
                .unwrap_or_else(|| "-".into())
        ),
    };
    let mut conds: Vec<Condition> = p.status.conditions.clone();
    conditions::set(
        &mut conds,
        &Desired::new(condition::COMPLETE, true, reason, summarise(&msg, 1000)),
        o.run.metadata.generation,
        now,
    );
    p.status.conditions = conds;
    p.events.push(PlannedEvent {
        warning: outcome == DrillOutcome::Failed,
        reason: match outcome {
            DrillOutcome::Passed => "DrillPassed",
            DrillOutcome::Failed => "DrillFailed",
            DrillOutcome::Cancelled => "DrillCancelled",
        },
        note: summarise(&msg, 1000),
    });
    p.finished = Some(outcome);
    if outcome == DrillOutcome::Passed
        && let Some(rp) = &p.status.restore_point
    {
        p.verified = Some(VerifiedRestorePoint {
            backup: rp.backup.clone(),
            restore_point_time: rp.time.clone(),
            drill_run: o.run.name_any(),
            verified_time: Time(now),
        });
    }
    p.requeue = None;
}

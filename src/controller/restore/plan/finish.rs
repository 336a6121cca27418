//! The end of a restore: its final phase, times, `Complete` condition and Event (whether
//! it ran to the end or was cancelled), and the clean-up of a finished restore.

use std::time::Duration;

use kube::ResourceExt;

use super::{Observed, Plan, event, micro, owners, seconds_between, target_namespace};
use crate::controller::conditions::{self, Desired};
use crate::crd::annotations;
use crate::crd::backup::SourcePhase;
use crate::crd::common::{Failure, condition};
use crate::crd::restore::RestorePhase;
use crate::schedule::duration;

/// Sets the final phase, times and condition. `whole` fails the restore as a whole.
pub(super) fn finish(o: &Observed<'_>, p: &mut Plan, whole: Option<Failure>) {
    let ok = succeeded(p);
    let s = &mut p.status;
    let phase = if whole.is_some() || ok == 0 {
        RestorePhase::Failed
    } else if ok == s.sources.len() {
        RestorePhase::Succeeded
    } else {
        RestorePhase::PartiallyFailed
    };
    if let Some(f) = whole {
        s.failure = Some(f);
    } else if phase == RestorePhase::Failed && s.failure.is_none() {
        s.failure = s.sources.iter().find_map(|x| x.failure.clone());
    }
    conclude(o, p, phase);
}

/// Ends a restore that was asked to stop: phase `Cancelled`, a Normal Event.
pub(super) fn finish_cancelled(o: &Observed<'_>, p: &mut Plan) {
    conclude(o, p, RestorePhase::Cancelled);
}

fn succeeded(p: &Plan) -> usize {
    p.status
        .sources
        .iter()
        .filter(|x| x.phase == SourcePhase::Succeeded)
        .count()
}

fn conclude(o: &Observed<'_>, p: &mut Plan, phase: RestorePhase) {
    let now = o.now;
    let ok = succeeded(p);
    let s = &mut p.status;
    s.phase = Some(phase);
    let start = s.start_time.clone().unwrap_or(micro(now));
    // The restore ends when its last mover ended, not when we noticed; a cancelled one
    // when it was stopped.
    let end = s
        .sources
        .iter()
        .filter_map(|x| x.completion_time.as_ref().map(|t| t.0))
        .max()
        .filter(|t| *t >= start.0 && phase != RestorePhase::Cancelled)
        .unwrap_or(now);
    s.start_time = Some(start.clone());
    s.completion_time = Some(micro(end));
    let secs = seconds_between(&start, &micro(end));
    s.duration_seconds = Some(secs);
    s.duration = Some(duration::format(Duration::from_secs_f64(secs)));
    if s.target_namespace.is_none() {
        s.target_namespace = Some(target_namespace(o.restore));
    }
    let (reason, warning) = match phase {
        RestorePhase::Succeeded => ("RestoreSucceeded", false),
        RestorePhase::PartiallyFailed => ("RestorePartiallyFailed", true),
        RestorePhase::Cancelled => ("RestoreCancelled", false),
        _ => ("RestoreFailed", true),
    };
    let msg = match (&s.failure, phase) {
        (Some(f), RestorePhase::Failed) => format!("{}: {}", f.reason, f.message),
        (_, RestorePhase::Cancelled) => format!(
            "cancelled (annotation {}) after {:.1}s: {ok} of {} source(s) had been restored \
             into namespace {} and stay; the PVCs and database servers of the others were removed",
            annotations::CANCEL,
            secs,
            s.sources.len(),
            s.target_namespace.as_deref().unwrap_or("?"),
        ),
        _ => format!(
            "{ok} of {} source(s) restored into namespace {} in {:.1}s",
            s.sources.len(),
            s.target_namespace.as_deref().unwrap_or("?"),
            secs
        ),
    };
    conditions::set(
        &mut s.conditions,
        &Desired::new(condition::COMPLETE, true, phase.as_str(), msg.clone()),
        o.restore.metadata.generation,
        now,
    );
    event(p, warning, reason, msg);
    p.finished = Some(phase);
}

/// Once finished: the credential mirror goes (no mover needs it), and outside the
/// Restore's own namespace its Jobs go too (nothing owns them there). Ephemeral servers
/// stay while the Restore exists: they hold the restored data.
pub(super) fn cleanup(o: &Observed<'_>, p: &mut Plan) {
    if let Some(m) = &o.mirror {
        p.delete_secrets.push(m.clone());
    }
    let target = p
        .status
        .target_namespace
        .clone()
        .unwrap_or_else(|| target_namespace(o.restore));
    if owners(o.restore, &target).is_none() {
        for j in o.jobs {
            if j.metadata.deletion_timestamp.is_none() && !p.delete_jobs.contains(&j.name_any()) {
                p.delete_jobs.push(j.name_any());
            }
        }
    }
}

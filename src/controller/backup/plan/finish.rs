//! The end of a run: its final phase, times, totals, `Complete` condition and Event,
//! whether it ran to the end or was cancelled.

use super::{Observed, Plan, PlannedEvent, elapsed};
use crate::controller::conditions::{self, Desired};
use crate::crd::backup::{BackupPhase, SourcePhase, Totals};
use crate::crd::common::{Failure, condition};
use crate::schedule::duration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Sets the final phase, times, totals and condition. `whole` fails the run as a whole.
pub(super) fn finish(o: &Observed<'_>, p: &mut Plan, whole: Option<Failure>) {
    let ok = succeeded(p);
    let s = &mut p.status;
    let phase = if whole.is_some() || ok == 0 {
        BackupPhase::Failed
    } else if ok == s.sources.len() {
        BackupPhase::Succeeded
    } else {
        BackupPhase::PartiallyFailed
    };
    if whole.is_none() && s.failure.is_none() && phase == BackupPhase::Failed {
        s.failure = s.sources.iter().find_map(|x| x.failure.clone());
    }
    if let Some(f) = whole {
        s.failure = Some(f);
    }
    conclude(o, p, phase);
}

/// Ends a run that was asked to stop: phase `Cancelled`, no restore point, a Normal
/// Event (the user asked for it; nothing went wrong).
pub(super) fn finish_cancelled(o: &Observed<'_>, p: &mut Plan) {
    conclude(o, p, BackupPhase::Cancelled);
}

fn succeeded(p: &Plan) -> usize {
    p.status
        .sources
        .iter()
        .filter(|x| x.phase == SourcePhase::Succeeded)
        .count()
}

fn conclude(o: &Observed<'_>, p: &mut Plan, phase: BackupPhase) {
    let now = o.now;
    let ok = succeeded(p);
    let s = &mut p.status;
    s.phase = Some(phase);
    let start = s.start_time.clone().unwrap_or(Time(now));
    s.start_time = Some(start.clone());
    s.completion_time = Some(Time(now));
    s.duration = Some(duration::format(elapsed(Some(&start), now)));
    if matches!(phase, BackupPhase::Succeeded | BackupPhase::PartiallyFailed) {
        // The run's restore point: when it started (every source is at least this fresh).
        s.restore_point_time = Some(start);
    }
    let (files, read, added) = s.sources.iter().fold((0, 0, 0), |(f, r, a), x| {
        (
            f + x.files.unwrap_or(0),
            r + x.bytes_read.unwrap_or(0),
            a + x.bytes_added.unwrap_or(0),
        )
    });
    s.totals = Some(Totals {
        files,
        bytes_read: read,
        bytes_added: added,
        bytes_added_human: human_bytes(added),
    });
    let (reason, warning) = match phase {
        BackupPhase::Succeeded => ("BackupSucceeded", false),
        BackupPhase::PartiallyFailed => ("BackupPartiallyFailed", true),
        BackupPhase::Cancelled => ("BackupCancelled", false),
        _ => ("BackupFailed", true),
    };
    let msg = match (&s.failure, phase) {
        (Some(f), BackupPhase::Failed) => format!("{}: {}", f.reason, f.message),
        (_, BackupPhase::Cancelled) => format!(
            "cancelled (annotation {}) after {}: {} of {} source(s) had finished before; \
             the other movers were stopped before they committed a snapshot",
            crate::crd::annotations::CANCEL,
            s.duration.as_deref().unwrap_or("0s"),
            ok,
            s.sources.len(),
        ),
        _ => format!(
            "{ok} of {} source(s) succeeded, {} added in {}",
            s.sources.len(),
            human_bytes(added),
            s.duration.as_deref().unwrap_or("0s")
        ),
    };
    conditions::set(
        &mut s.conditions,
        &Desired::new(condition::COMPLETE, true, phase.as_str(), msg.clone()),
        o.backup.metadata.generation,
        now,
    );
    p.events.push(PlannedEvent {
        warning,
        reason,
        note: msg,
    });
    p.finished = Some(phase);
}

/// `12.3 MiB` style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

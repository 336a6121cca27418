//! The pure decision of the DRDrill controller: from the drill, its policy, its DrillRuns
//! and the clock, compute whether the drill is valid (`Ready` with a precise reason), the
//! DrillRun to create for a due slot (one per slot, deterministic name, never two at
//! once), the finished runs beyond the history limit, the status (last run and outcome,
//! consecutive failures, next run, last pass, chain head) and the conditions
//! `RTODemonstrated`, `RPOMet` and `DrillOverdue`. No IO; every rule is a table test.
//!
//! `DrillOverdue` (decision): a drill is overdue when no run has passed for longer than
//! `spec.overdueAfter`, by default twice the schedule's interval (the gap between two
//! consecutive slots), counted from the last pass or, before the first one, from the
//! drill's creation. Twice the interval tolerates one missed or failed run without
//! flapping, and a suspended drill becomes overdue like any other: nothing proves its
//! backups restore any more.

use crate::drill::kpi;
use crate::metrics::DrillGauges;
use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{Resource, ResourceExt};

use crate::controller::conditions::{self, Desired};
use crate::crd::backup::Trigger;
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::common::condition;
use crate::crd::dr_drill::{
    DRDrill, DRDrillStatus, DrillOutcome, DrillPhase, DrillRun, DrillRunSpec, RestorePointStrategy,
};
use crate::crd::labels;
use crate::crd::restore::LocalRef;
use crate::jobs;
use crate::schedule::{Schedule, duration};

/// Default `spec.historyLimit`.
pub const DEFAULT_HISTORY: u32 = 10;
/// Default `spec.objectives.rtoWindow`.
pub const DEFAULT_RTO_WINDOW: u32 = 3;
/// Status is refreshed at least this often.
pub const REFRESH: Duration = Duration::from_secs(300);
/// Never sleep longer than this.
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// Everything the plan looks at.
pub struct Observed<'a> {
    pub drill: &'a DRDrill,
    pub policy: Option<&'a BackupPolicy>,
    /// DrillRuns of this drill, in any order.
    pub runs: &'a [DrillRun],
    /// The policy's retained restore points (the store's catalog, else its Backups).
    pub retained: &'a kpi::Retained,
    pub now: Timestamp,
}

pub use crate::controller::PlannedEvent;

/// Why the drill cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub reason: &'static str,
    pub message: String,
    /// Only a spec change can fix it.
    pub permanent: bool,
}

/// The decision.
#[derive(Debug)]
pub struct Plan {
    pub create: Option<DrillRun>,
    pub delete: Vec<String>,
    pub status: DRDrillStatus,
    pub events: Vec<PlannedEvent>,
    pub requeue: Duration,
    pub not_ready: Option<NotReady>,
    /// Figures for the drill's gauges.
    pub gauges: DrillGauges,
}

fn invalid(reason: &'static str, message: String) -> NotReady {
    NotReady {
        reason,
        message,
        permanent: true,
    }
}

fn phase(r: &DrillRun) -> DrillPhase {
    r.status.as_ref().and_then(|s| s.phase).unwrap_or_default()
}

fn created(r: &DrillRun) -> Timestamp {
    r.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

fn completed_at(r: &DrillRun) -> Timestamp {
    r.status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map_or(created(r), |t| t.0)
}

fn is_dns_label_part(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn parse_opt(field: &str, v: Option<&str>) -> Result<Option<Duration>, String> {
    v.map(|d| duration::parse(d).map_err(|e| format!("{field}: {e}")))
        .transpose()
}

/// Everything that must hold before the drill may run, with a precise reason. The CRD's
/// CEL rules refuse the shape errors at admission now (durations, restore point, sandbox
/// prefix, one check kind, unique names, sql/files/http forms); these checks stay as
/// defence in depth for objects stored before the rules, or a CRD installed without them.
/// What refers to the policy (its sources and volumes) and `historyLimit` against
/// `rtoWindow` are checked only here.
pub fn validate(drill: &DRDrill, policy: Option<&BackupPolicy>) -> Result<Schedule, NotReady> {
    let spec = &drill.spec;
    let identity = format!(
        "{}/{}",
        drill.namespace().unwrap_or_default(),
        drill.name_any()
    );
    let sched = Schedule::new(&spec.schedule, &identity)
        .map_err(|e| invalid(e.category(), e.to_string()))?;
    parse_opt("spec.runDeadline", spec.run_deadline.as_deref())
        .map_err(|m| invalid("InvalidDeadline", m))?;
    let o = &spec.objectives;
    parse_opt("spec.objectives.rto", o.rto.as_deref())
        .and_then(|_| parse_opt("spec.objectives.rpo", o.rpo.as_deref()))
        .and_then(|_| parse_opt("spec.overdueAfter", spec.overdue_after.as_deref()))
        .map_err(|m| invalid("InvalidObjective", m))?;
    let window = o.rto_window.unwrap_or(DEFAULT_RTO_WINDOW);
    let history = spec.history_limit.unwrap_or(DEFAULT_HISTORY);
    if window == 0 {
        return Err(invalid(
            "InvalidObjective",
            "spec.objectives.rtoWindow must be at least 1".into(),
        ));
    }
    if history < window {
        return Err(invalid(
            "InvalidObjective",
            format!(
                "spec.historyLimit ({history}) must be at least spec.objectives.rtoWindow ({window}): RTODemonstrated looks at that many finished runs"
            ),
        ));
    }
    let rp = &spec.restore_point;
    match (rp.strategy, &rp.time) {
        (RestorePointStrategy::PointInTime, None) => {
            return Err(invalid(
                "InvalidRestorePoint",
                "spec.restorePoint.time is required with strategy PointInTime".into(),
            ));
        }
        (RestorePointStrategy::PointInTime, Some(t)) if t.parse::<Timestamp>().is_err() => {
            return Err(invalid(
                "InvalidRestorePoint",
                format!("spec.restorePoint.time {t:?} is not an RFC 3339 time"),
            ));
        }
        (s, Some(_)) if s != RestorePointStrategy::PointInTime => {
            return Err(invalid(
                "InvalidRestorePoint",
                format!("spec.restorePoint.time is only used with strategy PointInTime, not {s:?}"),
            ));
        }
        _ => {}
    }
    match (rp.strategy, &rp.within) {
        (RestorePointStrategy::RandomWithin, None) => {
            Err("spec.restorePoint.within is required with strategy RandomWithin".to_string())
        }
        (RestorePointStrategy::RandomWithin, w) => {
            parse_opt("spec.restorePoint.within", w.as_deref()).map(|_| ())
        }
        (s, Some(_)) => Err(format!(
            "spec.restorePoint.within is only used with strategy RandomWithin, not {s:?}"
        )),
        (_, None) => Ok(()),
    }
    .map_err(|m| invalid("InvalidRestorePoint", m))?;
    let sb = &spec.sandbox;
    if let Some(p) = &sb.namespace_prefix
        && (p.is_empty() || p.len() > 20 || !is_dns_label_part(p) || p.starts_with('-'))
    {
        return Err(invalid(
            "InvalidSandbox",
            format!(
                "spec.sandbox.namespacePrefix {p:?} must be 1-20 lowercase letters, digits or '-', not starting with '-'"
            ),
        ));
    }
    parse_opt("spec.sandbox.ttl", sb.ttl.as_deref()).map_err(|m| invalid("InvalidSandbox", m))?;
    let Some(policy) = policy else {
        return Err(NotReady {
            reason: "PolicyNotFound",
            message: format!("BackupPolicy {:?} does not exist", spec.policy_ref.name),
            permanent: false,
        });
    };
    let mut restored = BTreeSet::new();
    for (i, d) in spec.restore.databases.iter().enumerate() {
        if !policy
            .spec
            .sources
            .databases
            .iter()
            .any(|s| s.name == d.source)
        {
            return Err(invalid(
                "InvalidRestore",
                format!(
                    "spec.restore.databases[{i}]: {:?} is not a database source of BackupPolicy {:?}",
                    d.source,
                    policy.name_any()
                ),
            ));
        }
        if !restored.insert(d.source.clone()) {
            return Err(invalid(
                "InvalidRestore",
                format!(
                    "spec.restore.databases[{i}]: {:?} is listed twice",
                    d.source
                ),
            ));
        }
        parse_opt(
            &format!("spec.restore.databases[{i}].server.startupTimeout"),
            d.server.startup_timeout.as_deref(),
        )
        .map_err(|m| invalid("InvalidRestore", m))?;
    }
    if restored.is_empty() {
        restored = policy
            .spec
            .sources
            .databases
            .iter()
            .map(|d| d.name.clone())
            .collect();
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.checks.iter().enumerate() {
        if !names.insert(c.name.as_str()) {
            return Err(invalid(
                "InvalidCheck",
                format!("spec.checks[{i}]: the name {:?} is used twice", c.name),
            ));
        }
        validate_check(
            i,
            c,
            &restored,
            spec.restore.volumes.unwrap_or(true),
            policy,
        )
        .map_err(|m| invalid("InvalidCheck", m))?;
    }
    Ok(sched)
}

/// The DrillRun a schedule slot creates: `<drill>-<YYYYMMDDHHMM>` (UTC), one per slot.
pub fn scheduled_run(drill: &DRDrill, slot: Timestamp) -> DrillRun {
    let name = jobs::scheduled_backup_name(&drill.name_any(), slot);
    DrillRun {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: drill.namespace(),
            labels: Some(run_labels(&drill.name_any())),
            owner_references: Some(vec![
                drill
                    .controller_owner_ref(&())
                    .expect("a stored drill has a name and uid"),
            ]),
            ..ObjectMeta::default()
        },
        spec: DrillRunSpec {
            drill_ref: LocalRef {
                name: drill.name_any(),
            },
            trigger: Trigger::Schedule,
            scheduled_time: Some(Time(slot)),
        },
        status: None,
    }
}

/// Labels of a drill's runs.
pub fn run_labels(drill: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (labels::NAME.to_string(), "lifeboat".to_string()),
        (labels::COMPONENT.to_string(), "drill-run".to_string()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::DRILL.to_string(), jobs::label_value(drill)),
    ])
}

fn until(from: Timestamp, to: Timestamp) -> Duration {
    let d = to.duration_since(from);
    if d <= SignedDuration::ZERO {
        Duration::ZERO
    } else {
        Duration::try_from(d).unwrap_or(Duration::MAX)
    }
}

/// The gap between two consecutive slots after `now`.
pub fn interval(sched: &Schedule, now: Timestamp) -> Option<Duration> {
    let a = sched.next_slot_after(now)?;
    let b = sched.next_slot_after(a)?;
    Some(until(a, b))
}

pub fn plan(o: &Observed<'_>) -> Plan {
    let drill = o.drill;
    let now = o.now;
    let previous = drill.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = drill.metadata.generation;
    let mut events = Vec::new();
    let mut create = None;
    let mut requeue = REFRESH;
    let generation = drill.metadata.generation;

    // Last run, and every run that finished since the last one counted.
    if let Some(newest) = o.runs.iter().max_by_key(|r| (created(r), r.name_any())) {
        status.last_run = Some(newest.name_any());
        status.last_run_time = Some(
            newest
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .unwrap_or(Time(created(newest))),
        );
    }
    let mut completed: Vec<&DrillRun> = o
        .runs
        .iter()
        .filter(|r| phase(r) == DrillPhase::Completed)
        .collect();
    completed.sort_by_key(|r| (completed_at(r), r.name_any()));
    let anchor = previous
        .last_completed_run
        .as_ref()
        .and_then(|n| completed.iter().position(|r| r.name_any() == *n));
    let fresh: &[&DrillRun] = match (anchor, &previous.last_completed_run) {
        (Some(i), _) => &completed[i + 1..],
        (None, None) => &completed[..],
        // The counted run is gone (history limit): count again from what is visible.
        (None, Some(_)) => {
            status.consecutive_failures = Some(0);
            &completed[..]
        }
    };
    for r in fresh {
        let s = r.status.clone().unwrap_or_default();
        let outcome = s.outcome.unwrap_or(DrillOutcome::Failed);
        status.last_completed_run = Some(r.name_any());
        status.last_outcome = Some(outcome);
        status.last_rto = s.rto.as_ref().and_then(|m| m.measured.clone());
        if let Some(m) = s.rpo.as_ref().and_then(|m| m.measured.clone()) {
            status.last_rpo = Some(m);
        }
        if s.report.is_some() {
            status.last_report = s.report.clone();
        }
        match outcome {
            DrillOutcome::Passed => {
                status.consecutive_failures = Some(0);
                status.last_passed_time = Some(Time(completed_at(r)));
            }
            DrillOutcome::Failed => {
                status.consecutive_failures =
                    Some(status.consecutive_failures.unwrap_or(0).saturating_add(1));
            }
            // Stopped on request: neither a pass nor a failure in a row.
            DrillOutcome::Cancelled => {}
        }
        events.push(PlannedEvent {
            warning: outcome == DrillOutcome::Failed,
            reason: match outcome {
                DrillOutcome::Passed => "DrillPassed",
                DrillOutcome::Failed => "DrillFailed",
                DrillOutcome::Cancelled => "DrillCancelled",
            },
            note: match (&s.failure, outcome) {
                (f, DrillOutcome::Cancelled) => format!(
                    "{} cancelled at {}",
                    r.name_any(),
                    f.as_ref().map_or("Pending", |f| f.step.as_str())
                ),
                (Some(f), DrillOutcome::Failed) => format!(
                    "{} failed at {}: {}: {}",
                    r.name_any(),
                    f.step,
                    f.failure.reason,
                    f.failure.message
                ),
                _ => format!(
                    "{} passed; RTO {}",
                    r.name_any(),
                    status.last_rto.as_deref().unwrap_or("-")
                ),
            },
        });
    }

    let schedule = validate(drill, o.policy);
    let not_ready = match &schedule {
        Err(nr) => {
            status.next_run_time = None;
            Some(nr.clone())
        }
        Ok(sched) => {
            let last = previous.last_schedule_time.as_ref().map(|t| t.0);
            let not_before = drill
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0);
            let sp = sched.plan(now, last, not_before);
            if drill.spec.schedule.suspend {
                status.next_run_time = None;
            } else {
                status.next_run_time = sp.next_slot.map(|t| t.to_string());
                if let Some(slot) = sp.due {
                    status.last_schedule_time = Some(Time(slot));
                    let run = scheduled_run(drill, slot);
                    let name = run.name_any();
                    let active: Vec<String> = o
                        .runs
                        .iter()
                        .filter(|r| phase(r) != DrillPhase::Completed)
                        .map(|r| r.name_any())
                        .collect();
                    if o.runs.iter().any(|r| r.name_any() == name) {
                        // Created by an attempt whose status write was lost: adopt it.
                    } else if !active.is_empty() {
                        events.push(PlannedEvent {
                            warning: true,
                            reason: "DrillSkipped",
                            note: format!(
                                "skipped the {slot} run: {} has not finished (a drill never runs twice at once)",
                                active.join(", ")
                            ),
                        });
                    } else {
                        events.push(PlannedEvent {
                            warning: false,
                            reason: "DrillRunCreated",
                            note: format!("created DrillRun {name} for the {slot} slot"),
                        });
                        create = Some(run);
                    }
                }
                if let Some(slot) = sp.missed {
                    status.last_schedule_time = Some(Time(
                        status
                            .last_schedule_time
                            .as_ref()
                            .map_or(slot, |t| t.0.max(slot)),
                    ));
                    events.push(PlannedEvent {
                        warning: true,
                        reason: "DrillMissed",
                        note: format!(
                            "the {slot} run was not started within its starting deadline; skipped"
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

    let mut conds = previous.conditions.clone();
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
            let msg = if drill.spec.schedule.suspend {
                "schedule suspended".to_string()
            } else {
                format!(
                    "next drill at {}",
                    status.next_run_time.as_deref().unwrap_or("unknown")
                )
            };
            let was = conditions::is_true(&conds, condition::READY);
            conditions::set(
                &mut conds,
                &Desired::new(condition::READY, true, "Ready", msg),
                generation,
                now,
            );
            if was != Some(true) {
                events.push(PlannedEvent {
                    warning: false,
                    reason: "DrillReady",
                    note: "drill is valid and its policy exists".into(),
                });
            }
        }
    }

    // RTODemonstrated: the last `rtoWindow` finished runs passed within the objective.
    let spec = &drill.spec;
    let was_rto = conditions::is_true(&conds, condition::RTO_DEMONSTRATED);
    match spec
        .objectives
        .rto
        .as_deref()
        .and_then(|r| duration::parse(r).ok())
    {
        None => conds.retain(|c| c.type_ != condition::RTO_DEMONSTRATED),
        Some(objective) => {
            let window = spec.objectives.rto_window.unwrap_or(DEFAULT_RTO_WINDOW) as usize;
            // Cancelled runs measured nothing: the window is of runs that finished.
            let last: Vec<&&DrillRun> = completed
                .iter()
                .rev()
                .filter(|r| {
                    r.status.as_ref().and_then(|s| s.outcome) != Some(DrillOutcome::Cancelled)
                })
                .take(window)
                .collect();
            let obj = duration::format(objective);
            let (ok, reason, msg) = if last.len() < window {
                (
                    false,
                    "NotEnoughRuns",
                    format!("{} of the {window} runs needed have finished", last.len()),
                )
            } else if let Some(bad) = last.iter().find(|r| {
                let s = r.status.clone().unwrap_or_default();
                s.outcome != Some(DrillOutcome::Passed)
                    || s.rto
                        .as_ref()
                        .and_then(|m| m.measured_seconds)
                        .is_none_or(|v| v > objective.as_secs_f64())
            }) {
                let s = bad.status.clone().unwrap_or_default();
                let why = match (&s.outcome, s.rto.as_ref().and_then(|m| m.measured.clone())) {
                    (Some(DrillOutcome::Passed), Some(m)) => {
                        format!("took {m}, over the objective {obj}")
                    }
                    _ => s.failure.as_ref().map_or("did not pass".to_string(), |f| {
                        format!("failed at {}: {}", f.step, f.failure.reason)
                    }),
                };
                (
                    false,
                    "ObjectiveNotDemonstrated",
                    format!("run {} {why}", bad.name_any()),
                )
            } else {
                let rtos: Vec<String> = last
                    .iter()
                    .rev()
                    .filter_map(|r| r.status.as_ref()?.rto.as_ref()?.measured.clone())
                    .collect();
                (
                    true,
                    "WithinObjective",
                    format!(
                        "the last {window} runs restored within {obj}: {}",
                        rtos.join(", ")
                    ),
                )
            };
            conditions::set(
                &mut conds,
                &Desired::new(condition::RTO_DEMONSTRATED, ok, reason, msg.clone()),
                generation,
                now,
            );
            if was_rto.is_some() && was_rto != Some(ok) {
                events.push(PlannedEvent {
                    warning: !ok,
                    reason: if ok {
                        "RTODemonstrated"
                    } else {
                        "RTONotDemonstrated"
                    },
                    note: msg,
                });
            }
        }
    }

    // RPOMet: the newest run that measured an RPO met the objective (Latest drills only:
    // older restore points are old on purpose).
    let rpo_objective = (spec.restore_point.strategy == RestorePointStrategy::Latest)
        .then(|| {
            spec.objectives
                .rpo
                .as_deref()
                .and_then(|r| duration::parse(r).ok())
        })
        .flatten();
    match rpo_objective {
        None => conds.retain(|c| c.type_ != condition::RPO_MET),
        Some(objective) => {
            let newest = completed
                .iter()
                .rev()
                .find_map(|r| r.status.as_ref()?.rpo.clone().map(|m| (r.name_any(), m)));
            let obj = duration::format(objective);
            let (ok, reason, msg) = match newest {
                None => (
                    false,
                    "NoMeasurement",
                    format!("no finished run has measured an RPO yet; objective {obj}"),
                ),
                Some((name, m)) => {
                    let v = m.measured_seconds.unwrap_or(f64::INFINITY);
                    let measured = m.measured.unwrap_or_default();
                    if v <= objective.as_secs_f64() {
                        (
                            true,
                            "WithinObjective",
                            format!("run {name} measured an RPO of {measured}, objective {obj}"),
                        )
                    } else {
                        (
                            false,
                            "ObjectiveBreached",
                            format!(
                                "run {name} measured an RPO of {measured}, over the objective {obj}"
                            ),
                        )
                    }
                }
            };
            conditions::set(
                &mut conds,
                &Desired::new(condition::RPO_MET, ok, reason, msg),
                generation,
                now,
            );
        }
    }

    // DrillOverdue (see the module documentation for the rule).
    let was_overdue = conditions::is_true(&conds, condition::DRILL_OVERDUE);
    let bound = spec
        .overdue_after
        .as_deref()
        .and_then(|d| duration::parse(d).ok())
        .or_else(|| {
            schedule
                .as_ref()
                .ok()
                .and_then(|s| interval(s, now))
                .map(|i| i * 2)
        });
    match bound {
        None => conds.retain(|c| c.type_ != condition::DRILL_OVERDUE),
        Some(bound) => {
            let (since, what) = match &status.last_passed_time {
                Some(t) => (t.0, "the last pass"),
                None => (
                    drill
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map_or(now, |t| t.0),
                    "the drill's creation (no run has passed yet)",
                ),
            };
            let age = until(since, now);
            let overdue = age > bound;
            let msg = format!(
                "{} since {what}; a drill is overdue after {}",
                duration::format(age),
                duration::format(bound)
            );
            let reason = if overdue {
                "NoRecentPass"
            } else {
                "PassedRecently"
            };
            conditions::set(
                &mut conds,
                &Desired::new(condition::DRILL_OVERDUE, overdue, reason, msg.clone()),
                generation,
                now,
            );
            if !overdue {
                requeue = requeue.min(bound - age + Duration::from_secs(1));
            }
            if overdue && was_overdue != Some(true) {
                events.push(PlannedEvent {
                    warning: true,
                    reason: "DrillOverdue",
                    note: msg,
                });
            }
        }
    }
    status.conditions = conds;

    // History: finished runs beyond the limit, oldest first. Active runs are never pruned.
    let keep = spec.history_limit.unwrap_or(DEFAULT_HISTORY) as usize;
    let mut delete: Vec<String> = completed
        .iter()
        .rev()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .skip(keep)
        .map(|r| r.name_any())
        .collect();
    delete.sort();

    status.verified_restore_points =
        coverage::record(&previous.verified_restore_points, &completed, o.retained);
    status.coverage = coverage::coverage(&status.verified_restore_points, o.retained);

    let newest_done = completed.last().and_then(|r| r.status.clone());
    let gauges = DrillGauges {
        rto_seconds: newest_done
            .as_ref()
            .and_then(|s| s.rto.as_ref()?.measured_seconds),
        rpo_seconds: completed
            .iter()
            .rev()
            .find_map(|r| r.status.as_ref()?.rpo.as_ref()?.measured_seconds),
        last_passed_seconds: status
            .last_passed_time
            .as_ref()
            .map(|t| t.0.as_second() as f64),
        kpis: Some(kpi::compute(&kpi::samples(&completed), o.now, &kpi::Retained::Unknown).windows),
        coverage: Some(status.coverage.clone()),
    };

    Plan {
        create,
        delete,
        status,
        events,
        requeue: requeue.clamp(Duration::from_secs(1), MAX_REQUEUE),
        not_ready,
        gauges,
    }
}

/// The policy a drill refers to, by name (used to map policy changes to drills).
pub fn uses_policy(drill: &DRDrill, policy: &str) -> bool {
    drill.spec.policy_ref.name == policy
}

mod check_rules;
mod coverage;
use check_rules::validate_check;

#[cfg(test)]
mod tests;

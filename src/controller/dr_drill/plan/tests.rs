//! Scenario tests of the DRDrill plan: validation reasons, scheduling, status counting and
//! the three drill conditions.

use super::*;
use crate::crd::backup_policy::{
    BackupPolicySpec, DatabaseSource, Sources, StoreRef, VolumeSource,
};
use crate::crd::common::Failure;
use crate::crd::common::{DatabaseCredentialsRef, ScheduleSpec};
use crate::crd::dr_drill::Check;
use crate::crd::dr_drill::{
    CommandCheck, DRDrillSpec, DrillDatabase, DrillFailure, DrillObjectives, DrillRunStatus,
    Expectation, FileChecksum, FilesCheck, FreshnessCheck, HttpCheck, Measurement, ReportRef,
    SqlCheck,
};
use crate::drill::kpi;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const CREATED: &str = "2026-11-01T00:00:00Z";

fn spec() -> DRDrillSpec {
    DRDrillSpec {
        policy_ref: LocalRef {
            name: "orders".into(),
        },
        schedule: ScheduleSpec {
            cron: "0 3 * * *".into(),
            ..ScheduleSpec::default()
        },
        checks: vec![Check {
            name: "rows".into(),
            sql: Some(SqlCheck {
                database: "pg".into(),
                matches_backup: true,
                ..SqlCheck::default()
            }),
            ..Check::default()
        }],
        objectives: DrillObjectives {
            rto: Some("10m".into()),
            rpo: Some("1d".into()),
            rto_window: Some(2),
        },
        ..DRDrillSpec::default()
    }
}

fn drill(spec: DRDrillSpec) -> DRDrill {
    let mut d = DRDrill::new("orders", spec);
    d.metadata.namespace = Some("shop".into());
    d.metadata.uid = Some("drill-uid".into());
    d.metadata.generation = Some(1);
    d.metadata.creation_timestamp = Some(Time(ts(CREATED)));
    d
}

fn policy() -> BackupPolicy {
    let mut p = BackupPolicy::new(
        "orders",
        BackupPolicySpec {
            store_ref: StoreRef {
                name: "s3".into(),
                ..StoreRef::default()
            },
            sources: Sources {
                volumes: vec![VolumeSource {
                    pvc_name: Some("data".into()),
                    ..VolumeSource::default()
                }],
                databases: ["pg", "audit"]
                    .iter()
                    .map(|n| DatabaseSource {
                        name: n.to_string(),
                        host: "db".into(),
                        credentials: DatabaseCredentialsRef {
                            name: "pg".into(),
                            ..DatabaseCredentialsRef::default()
                        },
                        ..DatabaseSource::default()
                    })
                    .collect(),
                manifests: None,
            },
            ..BackupPolicySpec::default()
        },
    );
    p.metadata.namespace = Some("shop".into());
    p
}

/// A finished run: (name, completion time, outcome, RTO seconds).
fn done(name: &str, at: &str, outcome: DrillOutcome, rto: Option<f64>) -> DrillRun {
    let mut r = DrillRun::new(
        name,
        DrillRunSpec {
            drill_ref: LocalRef {
                name: "orders".into(),
            },
            ..DrillRunSpec::default()
        },
    );
    r.metadata.creation_timestamp = Some(Time(ts(at) - SignedDuration::from_mins(5)));
    r.status = Some(DrillRunStatus {
        phase: Some(DrillPhase::Completed),
        outcome: Some(outcome),
        start_time: Some(Time(ts(at) - SignedDuration::from_mins(5))),
        completion_time: Some(Time(ts(at))),
        rto: rto.map(|s| Measurement {
            measured: Some(duration::format(Duration::from_secs_f64(s))),
            measured_seconds: Some(s),
            ..Measurement::default()
        }),
        rpo: Some(Measurement {
            measured: Some("3h".into()),
            measured_seconds: Some(10800.0),
            ..Measurement::default()
        }),
        failure: (outcome == DrillOutcome::Failed).then(|| DrillFailure {
            step: "check/rows".into(),
            failure: Failure {
                reason: "CheckFailed".into(),
                message: "rows: observed 0".into(),
            },
        }),
        report: Some(ReportRef {
            location: format!("s3://b/r/{name}.json"),
            sha256: format!("sha-{name}"),
            ..ReportRef::default()
        }),
        ..DrillRunStatus::default()
    });
    r
}

fn active(name: &str) -> DrillRun {
    let mut r = done(name, "2026-11-20T03:05:00Z", DrillOutcome::Passed, None);
    r.status = Some(DrillRunStatus {
        phase: Some(DrillPhase::Verifying),
        ..DrillRunStatus::default()
    });
    r
}

struct World {
    drill: DRDrill,
    policy: Option<BackupPolicy>,
    runs: Vec<DrillRun>,
    now: Timestamp,
}

impl World {
    fn new(spec: DRDrillSpec) -> Self {
        World {
            drill: drill(spec),
            policy: Some(policy()),
            runs: vec![],
            now: ts("2026-11-20T12:00:00Z"),
        }
    }
    fn plan(&self) -> Plan {
        plan(&Observed {
            drill: &self.drill,
            policy: self.policy.as_ref(),
            runs: &self.runs,
            retained: &kpi::Retained::Unknown,
            now: self.now,
        })
    }
    fn step(&mut self) -> Plan {
        let p = self.plan();
        self.drill.status = Some(p.status.clone());
        p
    }
}

fn cond<'a>(p: &'a Plan, t: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::get(&p.status.conditions, t).unwrap_or_else(|| panic!("no {t} condition"))
}

#[test]
fn invalid_drills_get_precise_reasons() {
    let check = |c: Check| {
        let mut s = spec();
        s.checks = vec![c];
        s
    };
    let sql = |db: &str| SqlCheck {
        database: db.into(),
        query: Some("select count(*) from orders".into()),
        expect: Some(Expectation {
            at_least: Some("1".into()),
            ..Expectation::default()
        }),
        ..SqlCheck::default()
    };
    let named = |name: &str| Check {
        name: name.into(),
        sql: Some(sql("pg")),
        ..Check::default()
    };
    let mut cases: Vec<(DRDrillSpec, &str, &str)> = Vec::new();
    let mut s = spec();
    s.schedule.cron = "61 * * * *".into();
    cases.push((s, "InvalidSchedule", "invalid cron"));
    let mut s = spec();
    s.schedule.time_zone = Some("Mars/Olympus".into());
    cases.push((s, "InvalidSchedule", "unknown time zone"));
    cases.push((
        check(Check {
            name: "two".into(),
            sql: Some(sql("pg")),
            http: Some(HttpCheck {
                url: "http://web/".into(),
                expect_status: None,
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "set exactly one of sql, files, command, http and freshness (2 set)",
    ));
    cases.push((
        check(named("none-set")).tap(|s| s.checks[0].sql = None),
        "InvalidCheck",
        "(0 set)",
    ));
    let mut s = spec();
    s.checks = vec![named("dup"), named("dup")];
    cases.push((s, "InvalidCheck", "the name \"dup\" is used twice"));
    cases.push((
        check(Check {
            name: "x".into(),
            sql: Some(sql("nope")),
            ..Check::default()
        }),
        "InvalidCheck",
        "database \"nope\" is not a database source of BackupPolicy \"orders\"",
    ));
    let mut s = check(Check {
        name: "x".into(),
        sql: Some(sql("audit")),
        ..Check::default()
    });
    s.restore.databases = vec![DrillDatabase {
        source: "pg".into(),
        ..DrillDatabase::default()
    }];
    cases.push((
        s,
        "InvalidCheck",
        "database \"audit\" is not restored by this drill",
    ));
    cases.push((
        check(Check {
            name: "x".into(),
            sql: Some(SqlCheck {
                expect: None,
                ..sql("pg")
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "a query needs an expectation",
    ));
    cases.push((
        check(Check {
            name: "x".into(),
            sql: Some(SqlCheck {
                matches_backup: true,
                ..sql("pg")
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "either query (with expect) or matchesBackup",
    ));
    cases.push((
        check(Check {
            name: "x".into(),
            sql: Some(SqlCheck {
                expect: Some(Expectation {
                    at_most: Some("lots".into()),
                    ..Expectation::default()
                }),
                ..sql("pg")
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "atMost must be a number",
    ));
    cases.push((
        check(Check {
            name: "x".into(),
            files: Some(FilesCheck {
                volume: "data".into(),
                checksums: vec![FileChecksum {
                    path: "a".into(),
                    sha256: Some("abc".into()),
                }],
                ..FilesCheck::default()
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "must be 64 hexadecimal digits",
    ));
    cases.push((
        check(Check {
            name: "x".into(),
            files: Some(FilesCheck {
                volume: "data".into(),
                exist: vec!["../etc".into()],
                ..FilesCheck::default()
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "must not contain `..`",
    ));
    cases.push((
        check(Check {
            name: "x".into(),
            files: Some(FilesCheck {
                volume: "logs".into(),
                exist: vec!["a".into()],
                ..FilesCheck::default()
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "volume \"logs\" is not a volume source",
    ));
    let mut s = check(Check {
        name: "x".into(),
        command: Some(CommandCheck {
            image: "busybox".into(),
            volumes: vec!["data".into()],
            ..CommandCheck::default()
        }),
        ..Check::default()
    });
    s.restore.volumes = Some(false);
    cases.push((s, "InvalidCheck", "spec.restore.volumes is false"));
    cases.push((
        check(Check {
            name: "x".into(),
            http: Some(HttpCheck {
                url: "https://web/".into(),
                expect_status: None,
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "must start with http://",
    ));
    cases.push((
        check(Check {
            name: "x".into(),
            freshness: Some(FreshnessCheck {
                database: "pg".into(),
                query: " ".into(),
            }),
            ..Check::default()
        }),
        "InvalidCheck",
        "the freshness query is empty",
    ));
    cases.push((
        check(Check {
            timeout: Some("5 minutes".into()),
            ..named("x")
        }),
        "InvalidCheck",
        "spec.checks[0] (x).timeout",
    ));
    cases.push((
        check(named("Bad_Name")),
        "InvalidCheck",
        "must be lowercase",
    ));
    let mut s = spec();
    s.objectives.rto = Some("soon".into());
    cases.push((s, "InvalidObjective", "spec.objectives.rto"));
    let mut s = spec();
    s.history_limit = Some(1);
    cases.push((s, "InvalidObjective", "historyLimit (1) must be at least"));
    let mut s = spec();
    s.restore_point.strategy = RestorePointStrategy::PointInTime;
    cases.push((s, "InvalidRestorePoint", "time is required"));
    let mut s = spec();
    s.restore_point.time = Some("2026-01-01T00:00:00Z".into());
    cases.push((
        s,
        "InvalidRestorePoint",
        "only used with strategy PointInTime",
    ));
    let mut s = spec();
    s.sandbox.namespace_prefix = Some("Drill_".into());
    cases.push((s, "InvalidSandbox", "namespacePrefix"));
    let mut s = spec();
    s.restore.databases = vec![DrillDatabase {
        source: "mysql".into(),
        ..DrillDatabase::default()
    }];
    cases.push((s, "InvalidRestore", "\"mysql\" is not a database source"));
    let mut s = spec();
    s.run_deadline = Some("1 hour".into());
    cases.push((s, "InvalidDeadline", "spec.runDeadline"));

    for (s, reason, fragment) in cases {
        let nr = validate(&drill(s), Some(&policy())).unwrap_err();
        assert_eq!(nr.reason, reason, "{}", nr.message);
        assert!(
            nr.message.contains(fragment),
            "{reason}: {:?} lacks {fragment:?}",
            nr.message
        );
        assert!(nr.permanent);
    }
    let missing = validate(&drill(spec()), None).unwrap_err();
    assert_eq!(
        (missing.reason, missing.permanent),
        ("PolicyNotFound", false)
    );
    assert!(validate(&drill(spec()), Some(&policy())).is_ok());
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}
impl<T> Tap for T {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn a_due_slot_creates_one_run_and_never_a_second_one_at_once() {
    let mut w = World::new(spec());
    w.now = ts("2026-11-20T03:00:10Z");
    let p = w.step();
    let r = p.create.as_ref().unwrap();
    assert_eq!(r.name_any(), "orders-202611200300");
    assert_eq!(r.spec.trigger, Trigger::Schedule);
    assert_eq!(
        r.spec.scheduled_time,
        Some(Time(ts("2026-11-20T03:00:00Z")))
    );
    assert_eq!(r.labels()[labels::DRILL], "orders");
    assert_eq!(
        r.metadata.owner_references.as_ref().unwrap()[0].kind,
        "DRDrill"
    );
    assert_eq!(
        p.status.next_run_time.as_deref(),
        Some("2026-11-21T03:00:00Z")
    );
    assert_eq!(cond(&p, condition::READY).status, "True");
    // The run exists now (or its status write was lost): adopted, not duplicated.
    w.runs.push(r.clone());
    w.drill.status.as_mut().unwrap().last_schedule_time = None;
    assert!(w.plan().create.is_none());
    // The next slot while that run is still active: skipped and said so.
    let mut running = r.clone();
    running.status = Some(DrillRunStatus {
        phase: Some(DrillPhase::Restoring),
        ..DrillRunStatus::default()
    });
    w.runs = vec![running];
    w.now = ts("2026-11-21T03:00:05Z");
    let p = w.step();
    assert!(p.create.is_none());
    let skip = p
        .events
        .iter()
        .find(|e| e.reason == "DrillSkipped")
        .unwrap();
    assert!(skip.note.contains("orders-202611200300 has not finished"));
    assert_eq!(
        p.status.last_schedule_time,
        Some(Time(ts("2026-11-21T03:00:00Z")))
    );
    // Suspended: no runs, no next run.
    let mut s = spec();
    s.schedule.suspend = true;
    let mut w = World::new(s);
    w.now = ts("2026-11-20T03:00:10Z");
    let p = w.plan();
    assert!(p.create.is_none());
    assert_eq!(p.status.next_run_time, None);
}

#[test]
fn an_invalid_drill_does_not_schedule() {
    let mut w = World::new(spec());
    w.policy = None;
    w.now = ts("2026-11-20T03:00:10Z");
    let p = w.step();
    assert!(p.create.is_none());
    assert_eq!(p.not_ready.as_ref().unwrap().reason, "PolicyNotFound");
    assert_eq!(cond(&p, condition::READY).reason, "PolicyNotFound");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "PolicyNotFound" && e.warning)
    );
    // The same state again: no new Event.
    assert!(!w.plan().events.iter().any(|e| e.reason == "PolicyNotFound"));
}

#[test]
fn outcomes_are_counted_once_and_survive_history_pruning() {
    let mut w = World::new(spec());
    w.runs = vec![
        done(
            "r1",
            "2026-11-17T03:05:00Z",
            DrillOutcome::Passed,
            Some(120.0),
        ),
        done("r2", "2026-11-18T03:05:00Z", DrillOutcome::Failed, None),
        done("r3", "2026-11-19T03:05:00Z", DrillOutcome::Failed, None),
    ];
    let p = w.step();
    let s = &p.status;
    assert_eq!(s.last_outcome, Some(DrillOutcome::Failed));
    assert_eq!(s.consecutive_failures, Some(2));
    assert_eq!(s.last_passed_time, Some(Time(ts("2026-11-17T03:05:00Z"))));
    assert_eq!(s.last_completed_run.as_deref(), Some("r3"));
    assert_eq!(s.last_rto, None, "the newest run demonstrated no RTO");
    assert_eq!(s.last_rpo.as_deref(), Some("3h"));
    assert_eq!(s.last_report.as_ref().unwrap().sha256, "sha-r3");
    assert_eq!(
        p.events
            .iter()
            .filter(|e| e.reason == "DrillFailed")
            .count(),
        2
    );
    // Replanning the same world changes nothing and says nothing new.
    let again = w.step();
    assert_eq!(again.status, p.status);
    assert!(again.events.iter().all(|e| e.reason != "DrillFailed"));
    // r1 and r2 pruned, a new failure: still counted on top.
    w.runs = vec![
        done("r3", "2026-11-19T03:05:00Z", DrillOutcome::Failed, None),
        done("r4", "2026-11-20T03:05:00Z", DrillOutcome::Failed, None),
    ];
    let p = w.step();
    assert_eq!(p.status.consecutive_failures, Some(3));
    w.runs.push(done(
        "r5",
        "2026-11-20T09:05:00Z",
        DrillOutcome::Passed,
        Some(90.0),
    ));
    let p = w.step();
    assert_eq!(p.status.consecutive_failures, Some(0));
    assert_eq!(p.status.last_rto.as_deref(), Some("1m30s"));
    assert_eq!(p.gauges.rto_seconds, Some(90.0));
    assert_eq!(
        p.gauges.last_passed_seconds,
        Some(ts("2026-11-20T09:05:00Z").as_second() as f64)
    );
}

#[test]
fn history_keeps_the_newest_finished_runs_and_every_active_one() {
    let mut s = spec();
    s.history_limit = Some(2);
    let mut w = World::new(s);
    w.runs = vec![
        done(
            "r1",
            "2026-11-16T03:05:00Z",
            DrillOutcome::Passed,
            Some(60.0),
        ),
        done(
            "r2",
            "2026-11-17T03:05:00Z",
            DrillOutcome::Passed,
            Some(60.0),
        ),
        done("r3", "2026-11-18T03:05:00Z", DrillOutcome::Failed, None),
        done(
            "r4",
            "2026-11-19T03:05:00Z",
            DrillOutcome::Passed,
            Some(60.0),
        ),
        active("r5"),
    ];
    assert_eq!(w.plan().delete, ["r1", "r2"]);
}

#[test]
fn rto_demonstrated_needs_the_last_window_of_runs_within_the_objective() {
    let mut w = World::new(spec());
    w.runs = vec![done(
        "r1",
        "2026-11-18T03:05:00Z",
        DrillOutcome::Passed,
        Some(100.0),
    )];
    let p = w.step();
    let c = cond(&p, condition::RTO_DEMONSTRATED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NotEnoughRuns")
    );
    w.runs.push(done(
        "r2",
        "2026-11-19T03:05:00Z",
        DrillOutcome::Passed,
        Some(130.0),
    ));
    let p = w.step();
    let c = cond(&p, condition::RTO_DEMONSTRATED);
    assert_eq!(c.status, "True");
    assert_eq!(
        c.message,
        "the last 2 runs restored within 10m: 1m40s, 2m10s"
    );
    assert!(p.events.iter().any(|e| e.reason == "RTODemonstrated"));
    w.runs.push(done(
        "r3",
        "2026-11-20T03:05:00Z",
        DrillOutcome::Passed,
        Some(700.0),
    ));
    let p = w.step();
    let c = cond(&p, condition::RTO_DEMONSTRATED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ObjectiveNotDemonstrated")
    );
    assert_eq!(c.message, "run r3 took 11m40s, over the objective 10m");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "RTONotDemonstrated" && e.warning)
    );
    w.runs.push(done(
        "r4",
        "2026-11-20T09:05:00Z",
        DrillOutcome::Failed,
        None,
    ));
    let c = cond(&w.step(), condition::RTO_DEMONSTRATED).clone();
    assert_eq!(c.message, "run r4 failed at check/rows: CheckFailed");
    // No objective, no condition.
    let mut s = spec();
    s.objectives.rto = None;
    w.drill.spec = s;
    assert!(conditions::get(&w.plan().status.conditions, condition::RTO_DEMONSTRATED).is_none());
}

#[test]
fn rpo_met_follows_the_newest_measurement() {
    let mut s = spec();
    s.objectives.rpo = Some("2h".into());
    let mut w = World::new(s);
    let p = w.step();
    assert_eq!(cond(&p, condition::RPO_MET).reason, "NoMeasurement");
    w.runs = vec![done(
        "r1",
        "2026-11-19T03:05:00Z",
        DrillOutcome::Passed,
        Some(60.0),
    )];
    let c = cond(&w.step(), condition::RPO_MET).clone();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ObjectiveBreached")
    );
    assert_eq!(
        c.message,
        "run r1 measured an RPO of 3h, over the objective 2h"
    );
}

#[test]
fn drills_are_overdue_after_twice_their_interval_without_a_pass() {
    // Daily drill created on Nov 1st, never passed: overdue after two days.
    let mut w = World::new(spec());
    w.now = ts("2026-11-02T23:00:00Z");
    let p = w.step();
    let c = cond(&p, condition::DRILL_OVERDUE);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PassedRecently")
    );
    assert_eq!(p.requeue, Duration::from_secs(300), "refresh first");
    w.now = ts("2026-11-03T00:00:01Z");
    let p = w.step();
    let c = cond(&p, condition::DRILL_OVERDUE);
    assert_eq!(c.status, "True");
    assert_eq!(
        c.message,
        "2d since the drill's creation (no run has passed yet); a drill is overdue after 2d"
    );
    assert!(p.events.iter().any(|e| e.reason == "DrillOverdue"));
    // A pass clears it; the requeue lands right when it would become overdue again.
    w.runs = vec![done(
        "r1",
        "2026-11-03T03:05:00Z",
        DrillOutcome::Passed,
        Some(60.0),
    )];
    w.now = ts("2026-11-05T03:00:00Z");
    let p = w.step();
    assert_eq!(cond(&p, condition::DRILL_OVERDUE).status, "False");
    // A configured bound wins over the schedule.
    let mut s = spec();
    s.overdue_after = Some("1d".into());
    w.drill.spec = s;
    let p = w.step();
    let c = cond(&p, condition::DRILL_OVERDUE);
    assert_eq!(c.status, "True");
    assert!(c.message.ends_with("overdue after 1d"), "{}", c.message);
}

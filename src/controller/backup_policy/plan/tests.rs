//! Table tests of the BackupPolicy plan.

use super::*;
use crate::crd::backup::BackupStatus;
use crate::crd::backup_policy::{
    BackupPolicySpec, DatabaseEngine, DatabaseSource, PolicyObjectives, Sources, StoreRef,
    VolumeSource,
};
use crate::crd::common::{DatabaseCredentialsRef, ScheduleSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A valid policy on `*/5 * * * *`, created at midnight, with one database source.
fn policy() -> BackupPolicy {
    let mut p = BackupPolicy::new(
        "orders",
        BackupPolicySpec {
            store_ref: StoreRef {
                name: "s3".into(),
                ..StoreRef::default()
            },
            schedule: ScheduleSpec {
                cron: "*/5 * * * *".into(),
                ..ScheduleSpec::default()
            },
            sources: Sources {
                databases: vec![DatabaseSource {
                    name: "orders".into(),
                    engine: DatabaseEngine::Postgres,
                    host: "pg".into(),
                    credentials: DatabaseCredentialsRef {
                        name: "pg-login".into(),
                        ..DatabaseCredentialsRef::default()
                    },
                    ..DatabaseSource::default()
                }],
                ..Sources::default()
            },
            ..BackupPolicySpec::default()
        },
    );
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("uid-1".into());
    p.metadata.generation = Some(1);
    p.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
    p
}

fn backup(name: &str, created: &str, phase: BackupPhase, restore_point: Option<&str>) -> Backup {
    let mut b = Backup::new(
        name,
        BackupSpec {
            policy_ref: PolicyRef {
                name: "orders".into(),
            },
            ..BackupSpec::default()
        },
    );
    b.metadata.creation_timestamp = Some(Time(ts(created)));
    b.status = Some(BackupStatus {
        phase: Some(phase),
        restore_point_time: restore_point.map(|t| Time(ts(t))),
        ..BackupStatus::default()
    });
    b
}

fn observe<'a>(p: &'a BackupPolicy, backups: &'a [Backup], now: &str) -> Observed<'a> {
    Observed {
        policy: p,
        store: StoreState::Ready,
        backups,
        pvcs: &[],
        missing_secrets: vec![],
        now: ts(now),
    }
}

#[test]
fn a_due_slot_creates_one_deterministic_owned_backup() {
    let p = policy();
    let plan = plan(&observe(&p, &[], "2026-01-01T00:10:02Z"));
    let b = plan.create.expect("a Backup for the 00:10 slot");
    assert_eq!(b.name_any(), "orders-202601010010");
    assert_eq!(b.namespace().as_deref(), Some("shop"));
    assert_eq!(b.spec.trigger, Trigger::Schedule);
    assert_eq!(
        b.spec.scheduled_time,
        Some(Time(ts("2026-01-01T00:10:00Z")))
    );
    let owner = &b.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("BackupPolicy", "uid-1", Some(true))
    );
    assert_eq!(
        b.labels().get("lifeboat.dev/policy").map(String::as_str),
        Some("orders")
    );
    assert_eq!(
        plan.status.last_schedule_time,
        Some(Time(ts("2026-01-01T00:10:00Z")))
    );
    assert_eq!(
        plan.status.next_backup_time.as_deref(),
        Some("2026-01-01T00:15:00Z")
    );
    assert!(plan.events.iter().any(|e| e.reason == "BackupCreated"));
    assert!(plan.not_ready.is_none());
    // Wake up for the 00:15 slot.
    assert_eq!(plan.requeue, Duration::from_secs(4 * 60 + 58));
}

#[test]
fn an_existing_backup_for_the_slot_is_adopted_not_duplicated() {
    // The previous attempt created the Backup but its status write was lost.
    let p = policy();
    let existing = [backup(
        "orders-202601010010",
        "2026-01-01T00:10:01Z",
        BackupPhase::Running,
        None,
    )];
    let plan = plan(&observe(&p, &existing, "2026-01-01T00:10:05Z"));
    assert!(plan.create.is_none());
    assert_eq!(
        plan.status.last_schedule_time,
        Some(Time(ts("2026-01-01T00:10:00Z")))
    );
    assert!(!plan.skipped);
}

#[test]
fn forbid_skips_while_a_run_is_active_and_allow_starts_anyway() {
    let mut p = policy();
    p.status = Some(BackupPolicyStatus {
        last_schedule_time: Some(Time(ts("2026-01-01T00:05:00Z"))),
        ..BackupPolicyStatus::default()
    });
    let active = [backup(
        "orders-202601010005",
        "2026-01-01T00:05:00Z",
        BackupPhase::Running,
        None,
    )];
    let plan1 = plan(&observe(&p, &active, "2026-01-01T00:10:00Z"));
    assert!(plan1.create.is_none());
    assert!(plan1.skipped);
    let ev = plan1
        .events
        .iter()
        .find(|e| e.reason == "BackupSkipped")
        .unwrap();
    assert!(
        ev.warning && ev.note.contains("orders-202601010005"),
        "{}",
        ev.note
    );
    assert_eq!(
        plan1.status.last_schedule_time,
        Some(Time(ts("2026-01-01T00:10:00Z"))),
        "the slot is consumed"
    );

    p.spec.concurrency_policy = ConcurrencyPolicy::Allow;
    let plan2 = plan(&observe(&p, &active, "2026-01-01T00:10:00Z"));
    assert_eq!(plan2.create.unwrap().name_any(), "orders-202601010010");
}

/// The parts of the observed world a bad-input case may change.
struct World {
    store: StoreState,
    missing_secrets: Vec<String>,
}

#[test]
fn bad_input_gives_a_precise_not_ready_reason_and_no_run() {
    type Mutate = fn(&mut BackupPolicy, &mut World);
    let cases: Vec<(&str, bool, Mutate)> = vec![
        ("InvalidSchedule", true, |p, _| {
            p.spec.schedule.cron = "61 * * * *".into()
        }),
        ("InvalidSchedule", true, |p, _| {
            p.spec.schedule.time_zone = Some("Nowhere/City".into())
        }),
        ("NoSources", true, |p, _| {
            p.spec.sources = Sources::default()
        }),
        ("StoreNotFound", false, |_, w| w.store = StoreState::Missing),
        ("StoreNotAllowed", true, |_, w| {
            w.store = StoreState::NotAllowed
        }),
        ("StoreNotReady", false, |_, w| {
            w.store = StoreState::NotReady {
                reason: "BucketNotFound".into(),
                message: "NoSuchBucket".into(),
            }
        }),
        ("SecretNotFound", false, |_, w| {
            w.missing_secrets = vec!["pg-login".into()]
        }),
        ("PVCNotFound", false, |p, _| {
            p.spec.sources.volumes = vec![VolumeSource {
                pvc_name: Some("data".into()),
                ..VolumeSource::default()
            }]
        }),
        ("NoVolumesMatched", false, |p, _| {
            p.spec.sources.volumes = vec![VolumeSource {
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "x".into())])),
                    ..LabelSelector::default()
                }),
                ..VolumeSource::default()
            }]
        }),
    ];
    for (reason, permanent, mutate) in cases {
        let mut p = policy();
        let mut world = World {
            store: StoreState::Ready,
            missing_secrets: vec![],
        };
        mutate(&mut p, &mut world);
        let plan = plan(&Observed {
            policy: &p,
            store: world.store,
            backups: &[],
            pvcs: &[],
            missing_secrets: world.missing_secrets,
            now: ts("2026-01-01T00:10:00Z"),
        });
        let nr = plan
            .not_ready
            .as_ref()
            .unwrap_or_else(|| panic!("{reason}: expected not ready"));
        assert_eq!(
            (nr.reason, nr.permanent),
            (reason, permanent),
            "{}",
            nr.message
        );
        assert!(plan.create.is_none(), "{reason}: no run");
        assert_eq!(plan.status.next_backup_time, None);
        let ready = conditions::get(&plan.status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason)
        );
        let ev = plan.events.iter().find(|e| e.warning).unwrap();
        assert_eq!(ev.reason, reason);
    }
}

#[test]
fn history_limits_prune_the_oldest_finished_runs_only() {
    let mut p = policy();
    p.spec.successful_backups_history_limit = Some(2);
    p.spec.failed_backups_history_limit = Some(1);
    let t = |m: u32| format!("2026-01-01T00:{m:02}:00Z");
    let backups: Vec<Backup> = vec![
        backup("ok1", &t(1), BackupPhase::Succeeded, Some(&t(1))),
        backup("ok2", &t(2), BackupPhase::Succeeded, Some(&t(2))),
        backup("ok3", &t(3), BackupPhase::Succeeded, Some(&t(3))),
        backup("bad1", &t(4), BackupPhase::Failed, None),
        backup("part1", &t(5), BackupPhase::PartiallyFailed, None),
        backup("run1", &t(6), BackupPhase::Running, None),
    ];
    let plan = plan(&observe(&p, &backups, "2026-01-01T00:07:00Z"));
    assert_eq!(plan.delete, vec!["bad1".to_string(), "ok1".to_string()]);
    assert_eq!(plan.status.last_successful_backup.as_deref(), Some("ok3"));
    assert_eq!(plan.status.last_backup.as_deref(), Some("run1"));
}

#[test]
fn rpo_is_measured_against_the_objective_and_wakes_at_the_breach() {
    let mut p = policy();
    p.spec.objectives = PolicyObjectives {
        rpo: Some("1h".into()),
    };
    let backups = [backup(
        "ok",
        "2026-01-01T00:00:30Z",
        BackupPhase::Succeeded,
        Some("2026-01-01T00:00:30Z"),
    )];
    let fresh = plan(&observe(&p, &backups, "2026-01-01T00:30:30Z"));
    assert_eq!(fresh.status.current_rpo.as_deref(), Some("30m"));
    let c = conditions::get(&fresh.status.conditions, condition::RPO_MET).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "WithinObjective")
    );
    assert_eq!(fresh.gauges.rpo_seconds, Some(1800.0));

    // Fed back: two hours later the objective is breached, with an Event on the flip.
    p.status = Some(fresh.status.clone());
    let late = plan(&observe(&p, &backups, "2026-01-01T02:00:30Z"));
    let c = conditions::get(&late.status.conditions, condition::RPO_MET).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ObjectiveBreached")
    );
    assert!(
        late.events
            .iter()
            .any(|e| e.reason == "RPOBreached" && e.warning)
    );

    // Before any success: breached with its own reason.
    let none = plan(&observe(&policy_with_rpo(), &[], "2026-01-01T00:30:30Z"));
    let c = conditions::get(&none.status.conditions, condition::RPO_MET).unwrap();
    assert_eq!(c.reason, "NoSuccessfulBackup");
}

fn policy_with_rpo() -> BackupPolicy {
    let mut p = policy();
    p.spec.objectives = PolicyObjectives {
        rpo: Some("1h".into()),
    };
    p
}

#[test]
fn breach_wake_up_is_not_later_than_the_objective() {
    let mut p = policy_with_rpo();
    p.spec.schedule.cron = "0 0 1 1 *".into(); // yearly: the schedule alone would sleep long
    let backups = [backup(
        "ok",
        "2026-01-01T00:00:00Z",
        BackupPhase::Succeeded,
        Some("2026-01-01T00:00:00Z"),
    )];
    let plan = plan(&observe(&p, &backups, "2026-01-01T00:58:00Z"));
    assert_eq!(plan.requeue, Duration::from_secs(121));
}

#[test]
fn suspended_policies_never_create_runs() {
    let mut p = policy();
    p.spec.schedule.suspend = true;
    let plan = plan(&observe(&p, &[], "2026-01-01T00:10:00Z"));
    assert!(plan.create.is_none());
    assert_eq!(plan.status.next_backup_time, None);
    let ready = conditions::get(&plan.status.conditions, condition::READY).unwrap();
    assert_eq!(ready.message, "schedule suspended");
}

#[test]
fn replanning_an_unchanged_world_changes_nothing() {
    let mut p = policy();
    let first = plan(&observe(&p, &[], "2026-01-01T00:11:00Z"));
    p.status = Some(first.status.clone());
    let created = [first.create.clone().unwrap()];
    let second = plan(&observe(&p, &created, "2026-01-01T00:11:00Z"));
    assert!(second.create.is_none());
    // The first write already named the new run as the newest: the second writes nothing.
    assert_eq!(
        first.status.last_backup.as_deref(),
        Some("orders-202601010010")
    );
    assert_eq!(second.status, first.status);
    assert!(
        second.events.is_empty(),
        "no repeated events: {:?}",
        second.events
    );
}

/// `lastVerifiedRestorePoint` is the drill controller's (its own field manager): this
/// controller's server-side apply must never carry it, or it would take the field over
/// and could write back a stale copy.
#[test]
fn the_policy_status_apply_never_carries_the_verified_restore_point() {
    let mut p = policy();
    p.status = Some(BackupPolicyStatus {
        last_verified_restore_point: Some(crate::crd::backup_policy::VerifiedRestorePoint {
            backup: "orders-202601010000".into(),
            restore_point_time: Time(ts("2026-01-01T00:00:00Z")),
            drill_run: "drill-202601010100".into(),
            verified_time: Time(ts("2026-01-01T01:05:00Z")),
        }),
        ..BackupPolicyStatus::default()
    });
    let plan = plan(&observe(&p, &[], "2026-01-01T02:00:00Z"));
    assert!(plan.status.last_verified_restore_point.is_none());
    let body = serde_json::to_value(&plan.status).unwrap();
    assert!(body.get("lastVerifiedRestorePoint").is_none(), "{body}");
}

/// The newest run is recorded when its slot is handled; a cache that has not seen it yet,
/// or its start, must not change that again (each change is a status write, and a burst
/// of policies at one slot is paced by writes).
#[test]
fn the_newest_run_is_recorded_once_and_only_a_newer_one_replaces_it() {
    let mut p = policy();
    let first = plan(&observe(&p, &[], "2026-01-01T00:10:00.700Z"));
    let name = first.create.as_ref().unwrap().name_any();
    assert_eq!(first.status.last_backup.as_deref(), Some(name.as_str()));
    assert_eq!(
        first.status.last_backup_time,
        Some(Time(ts("2026-01-01T00:10:00Z"))),
        "whole seconds, like a creationTimestamp"
    );
    p.status = Some(first.status.clone());
    // The cache still holds only an older run: the status stays.
    let older = [backup(
        "orders-old",
        "2026-01-01T00:05:00Z",
        BackupPhase::Succeeded,
        None,
    )];
    let stale = plan(&observe(&p, &older, "2026-01-01T00:10:01Z"));
    assert_eq!(stale.status.last_backup, first.status.last_backup);
    assert_eq!(stale.status.last_backup_time, first.status.last_backup_time);
    // The run itself, now Running with a start time a second later: still no change.
    let mut running = backup(&name, "2026-01-01T00:10:00Z", BackupPhase::Running, None);
    running.status.as_mut().unwrap().start_time = Some(Time(ts("2026-01-01T00:10:01Z")));
    let started = plan(&observe(
        &p,
        std::slice::from_ref(&running),
        "2026-01-01T00:10:02Z",
    ));
    assert_eq!(
        started.status.last_backup_time,
        first.status.last_backup_time
    );
    // An on-demand run created later replaces it, with its creation time.
    let later = [
        running,
        backup(
            "orders-manual",
            "2026-01-01T00:12:00Z",
            BackupPhase::Pending,
            None,
        ),
    ];
    let manual = plan(&observe(&p, &later, "2026-01-01T00:12:01Z"));
    assert_eq!(manual.status.last_backup.as_deref(), Some("orders-manual"));
    assert_eq!(
        manual.status.last_backup_time,
        Some(Time(ts("2026-01-01T00:12:00Z")))
    );
}

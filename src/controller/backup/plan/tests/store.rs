//! The run and its store: a start blocked by the store, retention after success, and a
//! namespace that loses the store mid-run.

use super::*;

#[test]
fn a_namespace_losing_the_store_mid_run_stops_its_movers_and_keeps_finished_results() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step();
    w.jobs = vec![job(VOL_JOB, None), job(DB_JOB, Some((true, "")))];
    w.pods = vec![pod(
        DB_JOB,
        "Succeeded",
        Some((0, ok_result("bbbb", 1))),
        None,
    )];
    // The ClusterBackupStore's list no longer names the namespace: the kernel hands out
    // no store, only the reason.
    w.store = None;
    w.blocker = Some(failure("StoreNotAllowed", "not any more"));
    let p = w.step();
    // The finished mover's snapshot still counts; the one at work stops.
    assert_eq!(p.status.phase, Some(BackupPhase::PartiallyFailed));
    let db = p.status.sources.iter().find(|s| s.name == "pg").unwrap();
    assert_eq!(db.phase, SourcePhase::Succeeded);
    let vol = p.status.sources.iter().find(|s| s.name == "data").unwrap();
    assert_eq!(vol.failure.as_ref().unwrap().reason, "StoreNotAllowed");
    assert_eq!(p.delete_jobs, vec![VOL_JOB.to_string()]);
    assert!(p.create_jobs.is_empty());
}

#[test]
fn retention_of_a_run_whose_namespace_lost_the_store_fails_with_the_reason() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.policy.spec.retention = Retention {
        keep_last: Some(3),
        ..Retention::default()
    };
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(VOL_JOB, "Succeeded", Some((0, ok_result("aaaa", 1))), None),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 1))), None),
    ];
    w.busy = true;
    assert_eq!(w.step().status.phase, Some(BackupPhase::Succeeded));
    w.busy = false;
    w.store = None;
    w.blocker = Some(failure("StoreNotAllowed", "not any more"));
    let p = w.step();
    assert!(
        p.create_jobs.is_empty(),
        "no maintenance Job without the store"
    );
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RetentionFailed")
    );
    assert!(c.message.starts_with("StoreNotAllowed"), "{}", c.message);
}

#[test]
fn retention_runs_once_per_repository_after_success() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.policy.spec.retention = Retention {
        keep_last: Some(3),
        keep_daily: Some(7),
        ..Retention::default()
    };
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(VOL_JOB, "Succeeded", Some((0, ok_result("aaaa", 1))), None),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 1))), None),
    ];
    w.busy = true;
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::Succeeded));
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!(c.reason, "Waiting");
    assert!(p.create_jobs.is_empty());
    w.busy = false;
    let p = w.step();
    let rj = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == retention_job_name("orders-202601010010"))
        .unwrap();
    assert_eq!(
        rj.labels().get(labels::REPOSITORY).map(String::as_str),
        Some("repo1")
    );
    let args = rj
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
        .join(" ");
    assert!(
        args.contains("mover retention --policy shop/orders --keep-last 3 --keep-daily 7"),
        "{args}"
    );
    let rname = retention_job_name("orders-202601010010");
    w.jobs.push(job(&rname, Some((true, ""))));
    let mut r = MoverResult {
        v: RESULT_VERSION,
        ..MoverResult::default()
    };
    r.details.insert("forgotten".into(), serde_json::json!(2));
    w.pods
        .push(pod(&rname, "Succeeded", Some((0, r.to_message())), None));
    let p = w.step();
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Applied"));
    assert!(c.message.contains("forgot 2"));
    // Applied is final: no second maintenance Job later.
    assert!(w.plan().create_jobs.is_empty());
}

#[test]
fn a_blocked_start_fails_the_run_with_the_reason_and_creates_nothing() {
    let mut w = World::new(CopyMethod::Snapshot, None);
    w.blocker = Some(failure("StoreNotReady", "BucketNotFound: NoSuchBucket"));
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::Failed));
    assert_eq!(p.status.failure.as_ref().unwrap().reason, "StoreNotReady");
    assert!(p.create_jobs.is_empty() && p.create_snapshots.is_empty());
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "BackupFailed" && e.note.contains("BucketNotFound"))
    );
    // A missing PVC at start is just as precise.
    let mut w = World::new(CopyMethod::Snapshot, None);
    w.pvcs.clear();
    let p = w.step();
    assert_eq!(p.status.failure.as_ref().unwrap().reason, "PVCNotFound");
}

/// A run whose retention Job was just created.
fn retention_started(rname: &str) -> World {
    let mut w = World::new(CopyMethod::Direct, None);
    w.policy.spec.retention = Retention {
        keep_last: Some(3),
        ..Retention::default()
    };
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(VOL_JOB, "Succeeded", Some((0, ok_result("aaaa", 1))), None),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 1))), None),
    ];
    w.step();
    assert!(w.step().create_jobs.iter().any(|j| j.name_any() == rname));
    w
}

fn retention_failed(w: &mut World, rname: &str, reason: &str) {
    w.jobs
        .push(job(rname, Some((false, "BackoffLimitExceeded"))));
    w.pods.push(pod(
        rname,
        "Failed",
        Some((
            1,
            failed_result(reason, "shared lock by PID 7 on data-x7k2p"),
        )),
        None,
    ));
}

#[test]
fn retention_that_meets_a_lock_is_retried_until_its_window_closes() {
    use crate::controller::backup::plan::retention::{LOCKED_RETRY_EVERY, LOCKED_RETRY_FOR};
    let rname = retention_job_name("orders-202601010010");
    let mut w = retention_started(&rname);
    retention_failed(&mut w, &rname, "RepositoryLocked");
    let p = w.step();
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Waiting"));
    assert!(c.message.starts_with("RepositoryLocked: "), "{}", c.message);
    assert_eq!(p.delete_jobs, vec![rname.clone()]);
    assert_eq!(p.requeue, Some(LOCKED_RETRY_EVERY));
    // The failed Job is gone: a new one runs.
    w.jobs.retain(|j| j.name_any() != rname);
    w.pods.retain(|p| !p.name_any().starts_with(&rname));
    assert!(w.step().create_jobs.iter().any(|j| j.name_any() == rname));
    // Past the window, a lock fails retention with the reason.
    retention_failed(&mut w, &rname, "RepositoryLocked");
    let done = ts(NOW) - jiff::SignedDuration::try_from(LOCKED_RETRY_FOR).unwrap();
    w.backup.status.as_mut().unwrap().completion_time = Some(Time(done));
    let p = w.step();
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RetentionFailed")
    );
    assert!(c.message.starts_with("RepositoryLocked: "), "{}", c.message);
    assert!(p.delete_jobs.is_empty());
    // Any other failure is final at once.
    let mut w = retention_started(&rname);
    retention_failed(&mut w, &rname, "WrongPassword");
    let p = w.step();
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!(c.reason, "RetentionFailed");
    assert!(p.delete_jobs.is_empty());
}

#[test]
fn retention_waiting_for_another_maintenance_job_ends_with_a_reason() {
    use crate::controller::backup::plan::retention::LOCKED_RETRY_FOR;
    let rname = retention_job_name("orders-202601010010");
    let mut w = retention_started(&rname);
    // Another run's maintenance Job holds the repository: wait, within the window.
    let p = {
        w.busy = true;
        w.step()
    };
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!(c.reason, "Waiting");
    assert!(p.create_jobs.is_empty());
    let done = ts(NOW) - jiff::SignedDuration::try_from(LOCKED_RETRY_FOR).unwrap();
    w.backup.status.as_mut().unwrap().completion_time = Some(Time(done));
    let p = w.step();
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RetentionFailed")
    );
    assert!(c.message.starts_with("MaintenanceBusy: "), "{}", c.message);
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "RetentionFailed")
    );
    assert!(p.create_jobs.is_empty());
    // Final: no Job later either.
    w.busy = false;
    assert!(w.step().create_jobs.is_empty());
}

#[test]
fn retention_after_a_partial_failure_thins_only_the_sources_that_succeeded() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.policy.spec.retention = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((false, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(
            VOL_JOB,
            "Failed",
            Some((1, failed_result("RepositoryLocked", "locked"))),
            None,
        ),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 1))), None),
    ];
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::PartiallyFailed));
    // Retention still runs for the source that succeeded.
    let r = retention_command(&p, &retention_job_name("orders-202601010010"));
    // The volume failed: its history is not thinned by this run.
    assert_eq!(r.sources, vec!["database/pg".to_string()]);
}

#[test]
fn a_tripped_breaker_is_final_for_the_run_and_an_acknowledged_generation_lifts_it() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.policy.spec.retention = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    w.policy.metadata.generation = Some(4);
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(VOL_JOB, "Succeeded", Some((0, ok_result("aaaa", 1))), None),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 1))), None),
    ];
    let rname = retention_job_name("orders-202601010010");
    // Not acknowledged: the default share.
    assert_eq!(
        retention_command(&w.plan(), &rname).keep.max_forget_percent,
        Some(50)
    );
    // Acknowledged for another generation: still the default.
    w.policy.metadata.annotations = Some(
        [(
            crate::crd::annotations::RETENTION_BREAKER_ACK.to_string(),
            "3".to_string(),
        )]
        .into(),
    );
    assert_eq!(
        retention_command(&w.plan(), &rname).keep.max_forget_percent,
        Some(50)
    );
    w.step();
    w.jobs.push(job(&rname, Some((false, ""))));
    w.pods.push(pod(
        &rname,
        "Failed",
        Some((
            1,
            failed_result("RetentionBreakerTripped", "would forget 3 of 4"),
        )),
        None,
    ));
    let p = w.step();
    let c = conditions::get(&p.status.conditions, RETENTION_APPLIED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RetentionBreakerTripped")
    );
    assert!(
        c.message
            .contains("lifeboat.dev/retention-breaker-acknowledged=4"),
        "{}",
        c.message
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "RetentionBreakerTripped")
    );
    // Final: no second Job for this run.
    assert!(w.plan().create_jobs.is_empty());
    // The next run of the acknowledged generation may forget everything its rules say.
    let mut next = World::new(CopyMethod::Direct, None);
    next.policy = w.policy.clone();
    next.policy.metadata.annotations = Some(
        [(
            crate::crd::annotations::RETENTION_BREAKER_ACK.to_string(),
            "4".to_string(),
        )]
        .into(),
    );
    next.step();
    next.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    next.pods = w.pods[..2].to_vec();
    assert_eq!(
        retention_command(&next.plan(), &rname)
            .keep
            .max_forget_percent,
        Some(100)
    );
}

/// The typed command of the retention Job `name` the plan creates.
fn retention_command(p: &Plan, name: &str) -> crate::jobs::mover::command::ApplyRetention {
    let job = p
        .create_jobs
        .iter()
        .find(|j| j.name_any() == name)
        .unwrap_or_else(|| panic!("no retention Job {name}"));
    let args = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    match MoverCommand::parse(&args).unwrap() {
        MoverCommand::Retention(r) => r,
        other => panic!("not a retention command: {other:?}"),
    }
}

#[test]
fn retention_keeps_the_newest_verified_restore_point() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.policy.spec.retention = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(VOL_JOB, "Succeeded", Some((0, ok_result("aaaa", 1))), None),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 1))), None),
    ];
    let rname = retention_job_name("orders-202601010010");
    // No drill has verified anything yet: nothing is kept beyond the rules.
    assert!(retention_command(&w.plan(), &rname).keep_backups.is_empty());
    // A drill verified an older run: the retention Job keeps it by name.
    let t = Time(ts("2025-12-31T00:10:05Z"));
    w.policy.status = Some(crate::crd::backup_policy::BackupPolicyStatus {
        last_verified_restore_point: Some(crate::crd::backup_policy::VerifiedRestorePoint {
            backup: "orders-202512310010".into(),
            restore_point_time: t.clone(),
            drill_run: "orders-drill-1".into(),
            verified_time: t,
        }),
        ..Default::default()
    });
    assert_eq!(
        retention_command(&w.plan(), &rname).keep_backups,
        vec!["orders-202512310010".to_string()]
    );
}

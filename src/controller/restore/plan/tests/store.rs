//! The restore and its store and movers: a blocked start, a vanished mover, and a
//! namespace that loses the store mid-restore.

use super::*;

#[test]
fn a_namespace_losing_the_store_mid_restore_stops_its_movers_and_drops_the_copy() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    })
    .elsewhere();
    w.step();
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    w.jobs = vec![job(VOL_JOB, None)];
    // The kernel gives no store any more, only why.
    w.store = None;
    w.blocker = Some(Failure {
        reason: "StoreNotAllowed".into(),
        message: "not any more".into(),
    });
    let p = w.step();
    assert_eq!(p.status.phase, Some(RestorePhase::Failed));
    assert_eq!(reason(&p).as_deref(), Some("StoreNotAllowed"));
    assert!(p.delete_jobs.contains(&VOL_JOB.to_string()));
    assert_eq!(p.delete_secrets, vec![mirror_name("r1")]);
    assert!(p.create_jobs.is_empty());
}

#[test]
fn a_blocked_store_or_missing_policy_fails_the_start() {
    let mut w = World::everything();
    w.blocker = Some(failure("StoreNotReady", "BucketNotFound: NoSuchBucket"));
    let p = w.step();
    assert_eq!(reason(&p).as_deref(), Some("StoreNotReady"));
    assert!(p.create_jobs.is_empty());
    let mut w = World::everything();
    w.policy = None;
    assert_eq!(reason(&w.step()).as_deref(), Some("PolicyNotFound"));
}

#[test]
fn a_vanished_job_fails_its_source_instead_of_running_forever() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    w.step();
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    let p = w.step();
    let f = p.status.sources[0].failure.as_ref().unwrap();
    assert_eq!(f.reason, "JobVanished");
    assert_eq!(p.status.phase, Some(RestorePhase::Failed));
}

//! Cancelling a run in each of its phases: nothing new starts, unfinished movers go,
//! finished sources keep their result, and the run is no restore point.

use super::*;
use crate::controller::PlannedEvent;
use crate::crd::annotations;

fn cancel(w: &mut World, value: &str) {
    w.backup
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotations::CANCEL.into(), value.into());
}

fn event<'a>(p: &'a Plan, reason: &str) -> Option<&'a PlannedEvent> {
    p.events.iter().find(|e| e.reason == reason)
}

fn assert_cancelled(p: &Plan) {
    assert_eq!(p.status.phase, Some(BackupPhase::Cancelled));
    assert_eq!(p.finished, Some(BackupPhase::Cancelled));
    assert!(p.status.restore_point_time.is_none(), "no restore point");
    assert!(p.status.completion_time.is_some());
    let c = conditions::get(&p.status.conditions, condition::COMPLETE).unwrap();
    assert_eq!(c.reason, "Cancelled");
    let e = event(p, "BackupCancelled").expect("an Event");
    assert!(!e.warning, "the user asked for it: Normal");
    assert!(p.create_jobs.is_empty() && p.create_snapshots.is_empty() && p.create_pvcs.is_empty());
    assert!(p.requeue.is_none());
    // No retention after a cancelled run.
    assert!(
        !p.create_jobs
            .iter()
            .any(|j| j.name_any().ends_with("retention"))
    );
}

#[test]
fn a_pending_run_cancelled_never_starts() {
    let mut w = World::new(CopyMethod::Snapshot, None);
    cancel(&mut w, "true");
    let p = w.step();
    assert_cancelled(&p);
    assert!(p.status.sources.is_empty());
    assert!(event(&p, "BackupStarted").is_none());
}

#[test]
fn a_running_run_cancelled_deletes_its_movers_and_creates_nothing() {
    let mut w = World::new(CopyMethod::Snapshot, None);
    w.step();
    // The volume waits for its VolumeSnapshot; the database mover runs.
    w.snapshots = vec![snapshot(VOL_JOB, false, None)];
    w.jobs = vec![job(DB_JOB, None)];
    w.pods = vec![pod(DB_JOB, "Running", None, None)];
    cancel(&mut w, "true");
    let p = w.step();
    assert_cancelled(&p);
    assert_eq!(p.delete_jobs, vec![DB_JOB.to_string()]);
    assert_eq!(
        p.delete_snapshots,
        vec![VOL_JOB.to_string()],
        "temporaries go"
    );
    for s in &p.status.sources {
        assert_eq!(s.phase, SourcePhase::Failed, "{}", s.name);
        assert_eq!(s.failure.as_ref().unwrap().reason, "Cancelled");
        assert!(s.snapshot_id.is_none());
    }
    let vol = p.status.sources.iter().find(|s| s.name == "data").unwrap();
    assert!(vol.job_name.is_none(), "its Job was never created");
    // No SourceFailed warnings for what the user stopped.
    assert!(event(&p, "SourceFailed").is_none());
}

#[test]
fn sources_finished_before_the_cancel_keep_their_snapshot() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step();
    w.jobs = vec![job(VOL_JOB, None), job(DB_JOB, Some((true, "")))];
    w.pods = vec![
        pod(VOL_JOB, "Running", None, None),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 7))), None),
    ];
    cancel(&mut w, "true");
    let p = w.step();
    assert_cancelled(&p);
    let db = p.status.sources.iter().find(|s| s.name == "pg").unwrap();
    assert_eq!(
        (db.phase, db.snapshot_id.as_deref()),
        (SourcePhase::Succeeded, Some("bbbb"))
    );
    let vol = p.status.sources.iter().find(|s| s.name == "data").unwrap();
    assert_eq!(vol.failure.as_ref().unwrap().reason, "Cancelled");
    assert_eq!(vol.job_name.as_deref(), Some(VOL_JOB));
    assert_eq!(p.delete_jobs, vec![VOL_JOB.to_string()]);
    let msg = &event(&p, "BackupCancelled").unwrap().note;
    assert!(msg.contains("1 of 2 source(s) had finished"), "{msg}");
}

#[test]
fn a_cancelled_run_keeps_deleting_a_mover_that_is_still_there() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step();
    w.jobs = vec![job(VOL_JOB, None), job(DB_JOB, None)];
    cancel(&mut w, "true");
    let first = w.step();
    assert_eq!(first.delete_jobs.len(), 2);
    // The deletes were lost (an API error after the status write): the next reconcile
    // of the finished run deletes again, and changes nothing else.
    let again = w.plan();
    assert_eq!(again.delete_jobs.len(), 2);
    assert!(again.finished.is_none() && again.events.is_empty());
    assert_eq!(Some(&again.status), w.backup.status.as_ref());
    // A Job already being deleted is left alone.
    for j in &mut w.jobs {
        j.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    }
    assert!(w.plan().delete_jobs.is_empty());
}

#[test]
fn a_cancel_that_comes_after_the_last_mover_finished_changes_nothing() {
    let mut w = World::new(CopyMethod::Direct, None);
    w.step();
    w.jobs = vec![
        job(VOL_JOB, Some((true, ""))),
        job(DB_JOB, Some((true, ""))),
    ];
    w.pods = vec![
        pod(VOL_JOB, "Succeeded", Some((0, ok_result("aaaa", 1))), None),
        pod(DB_JOB, "Succeeded", Some((0, ok_result("bbbb", 1))), None),
    ];
    cancel(&mut w, "true");
    let p = w.step();
    assert_eq!(p.status.phase, Some(BackupPhase::Succeeded));
    assert!(p.status.restore_point_time.is_some());
}

#[test]
fn only_the_value_true_cancels() {
    for value in ["false", "yes", ""] {
        let mut w = World::new(CopyMethod::Direct, None);
        cancel(&mut w, value);
        let p = w.step();
        assert_eq!(p.status.phase, Some(BackupPhase::Running), "{value:?}");
    }
}

//! Cancelling a restore in each of its phases: nothing new starts, unfinished movers go
//! with the PVCs and servers they were filling, what was restored before stays.

use super::*;
use crate::crd::annotations;

fn cancel(w: &mut World) {
    w.restore
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotations::CANCEL.into(), "true".into());
}

fn assert_cancelled(p: &Plan) {
    assert_eq!(p.status.phase, Some(RestorePhase::Cancelled));
    assert_eq!(p.finished, Some(RestorePhase::Cancelled));
    let c = conditions::get(&p.status.conditions, condition::COMPLETE).unwrap();
    assert_eq!(c.reason, "Cancelled");
    let e = p
        .events
        .iter()
        .find(|e| e.reason == "RestoreCancelled")
        .expect("an Event");
    assert!(!e.warning);
    assert!(
        p.create_pvcs.is_empty()
            && p.create_jobs.is_empty()
            && p.create_deployments.is_empty()
            && p.create_secrets.is_empty()
            && p.create_services.is_empty()
    );
    assert!(p.requeue.is_none());
    assert!(!p.events.iter().any(|e| e.reason == "SourceFailed"));
}

#[test]
fn a_pending_restore_cancelled_never_starts() {
    let mut w = World::everything();
    cancel(&mut w);
    let p = w.step();
    assert_cancelled(&p);
    assert!(p.status.sources.is_empty());
    // Also one waiting for its Backup: cancel is its way out.
    let mut w = World::everything();
    w.backups = vec![backup("app-1", BackupPhase::Running, T0)];
    let waiting = w.step();
    let c = conditions::get(&waiting.status.conditions, condition::COMPLETE).unwrap();
    assert_eq!(c.reason, "WaitingForBackup");
    cancel(&mut w);
    assert_cancelled(&w.step());
}

#[test]
fn a_running_restore_cancelled_removes_what_it_had_not_finished() {
    let mut w = World::everything();
    let first = w.step();
    // The volume's PVC and mover exist, the ephemeral server starts, the manifests wait.
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    w.jobs = first.create_jobs.clone();
    w.deployments = vec![deployment(SERVER, 0)];
    assert!(w.jobs.iter().any(|j| j.name_any() == VOL_JOB));
    cancel(&mut w);
    let p = w.step();
    assert_cancelled(&p);
    assert_eq!(p.delete_jobs, vec![VOL_JOB.to_string()]);
    assert_eq!(
        p.delete_pvcs,
        vec!["data".to_string()],
        "a partly filled PVC"
    );
    assert_eq!(p.delete_servers, vec![SERVER.to_string()]);
    for s in &p.status.sources {
        assert_eq!(s.phase, SourcePhase::Failed, "{}", s.name);
        assert_eq!(s.failure.as_ref().unwrap().reason, "Cancelled");
        assert!(s.completion_time.is_some());
    }
    assert!(w.source("manifests").job_name.is_none());
    // A later reconcile of the cancelled restore deletes again what is still there (a
    // delete lost to an API error), and changes nothing else.
    let again = w.plan();
    assert!(again.finished.is_none() && again.events.is_empty());
    assert_eq!(again.delete_pvcs, vec!["data".to_string()]);
    assert_eq!(again.delete_jobs, vec![VOL_JOB.to_string()]);
}

#[test]
fn what_was_restored_before_the_cancel_stays() {
    let mut w = World::everything();
    let first = w.step();
    w.target_pvcs = vec![pvc("data", "5Gi", true)];
    w.jobs = first.create_jobs.clone();
    w.jobs.retain(|j| j.name_any() != VOL_JOB);
    w.jobs.push(job(VOL_JOB, Some((true, ""))));
    w.pods = vec![mover_pod(
        VOL_JOB,
        "Succeeded",
        Some(result("aaaa", NOW, NOW, serde_json::json!({}))),
        None,
    )];
    w.deployments = vec![deployment(SERVER, 0)];
    cancel(&mut w);
    let p = w.step();
    assert_cancelled(&p);
    assert_eq!(w.source("data").phase, SourcePhase::Succeeded);
    assert!(p.delete_pvcs.is_empty(), "the restored volume stays");
    assert_eq!(p.delete_servers, vec![SERVER.to_string()]);
    let msg = &p
        .events
        .iter()
        .find(|e| e.reason == "RestoreCancelled")
        .unwrap()
        .note;
    assert!(msg.contains("1 of 3 source(s)"), "{msg}");
}

#[test]
fn a_pvc_the_restore_did_not_create_is_never_removed() {
    let mut w = World::new(RestoreSpec {
        source: by_backup("app-1"),
        ..RestoreSpec::default()
    });
    let first = w.step();
    // Someone else's PVC of that name: not labelled with this Restore's UID.
    w.target_pvcs = vec![pvc("data", "5Gi", false)];
    w.jobs = first.create_jobs.clone();
    cancel(&mut w);
    let p = w.step();
    assert_cancelled(&p);
    assert!(p.delete_pvcs.is_empty());
}

//! The end of a run: reporting, cleaning up, the final record, and a cancel request
//! (the DRDrill's `lifeboat.dev/cancel-run` naming the run).

use super::*;

#[test]
fn reporting_then_cleaning_up_then_completed_with_the_verified_restore_point() {
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    w.at("2026-11-22T15:01:45Z").step();
    let p = w.at("2026-11-22T15:01:46Z").step();
    assert_eq!(p.create_jobs.len(), 1);
    let name = report_job_name(&w.run);
    w.jobs
        .push(job("shop", &name, "2026-11-22T15:01:46Z", None));
    // Running: nothing new.
    let p = w.at("2026-11-22T15:01:50Z").step();
    assert!(p.create_jobs.is_empty());
    assert_eq!(phase(&p), DrillPhase::Reporting);
    w.jobs.retain(|j| j.name_any() != name);
    w.jobs.push(job(
        "shop",
        &name,
        "2026-11-22T15:01:46Z",
        Some((true, "Completed")),
    ));
    let mut d = serde_json::Map::new();
    d.insert(
        "location".into(),
        "s3://b/repo/lifeboat-reports/shop/orders/r.json".into(),
    );
    d.insert(
        "pageLocation".into(),
        "s3://b/repo/lifeboat-reports/shop/orders/r.md".into(),
    );
    d.insert("sha256".into(), "cd".repeat(32).into());
    d.insert("previousSha256".into(), "ef".repeat(32).into());
    let msg = MoverResult {
        v: RESULT_VERSION,
        details: d,
        ..MoverResult::default()
    }
    .to_message();
    w.pods.push(pod(
        &name,
        "mover",
        0,
        &msg,
        ("2026-11-22T15:01:47Z", "2026-11-22T15:01:52Z"),
    ));
    let p = w.at("2026-11-22T15:01:55Z").step();
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    let rep = p.status.report.as_ref().unwrap();
    assert_eq!(
        rep.previous_sha256.as_deref(),
        Some("ef".repeat(32).as_str())
    );
    assert_eq!(p.delete_sandbox.as_deref(), Some(SANDBOX));
    // Deleting: wait.
    w.sandbox = SandboxState::Ours { terminating: true };
    let p = w.at("2026-11-22T15:01:58Z").step();
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    assert!(p.delete_sandbox.is_none());
    assert!(p.finished.is_none());
    // Gone: completed.
    w.sandbox = SandboxState::Absent;
    let p = w.at("2026-11-22T15:02:10Z").step();
    assert_eq!(phase(&p), DrillPhase::Completed);
    assert_eq!(p.finished, Some(DrillOutcome::Passed));
    assert_eq!(
        p.status.completion_time,
        Some(Time(ts("2026-11-22T15:02:10Z")))
    );
    let v = p.verified.as_ref().unwrap();
    assert_eq!(
        (v.backup.as_str(), v.drill_run.as_str()),
        ("orders-202611221400", RUN)
    );
    let phases: Vec<_> = p.status.timeline.iter().map(|s| s.phase).collect();
    assert_eq!(
        phases,
        [
            DrillPhase::Provisioning,
            DrillPhase::Restoring,
            DrillPhase::Verifying,
            DrillPhase::Reporting,
            DrillPhase::CleaningUp
        ]
    );
    assert!(p.status.timeline.iter().all(|s| s.end_time.is_some()));
    // And a completed run is never touched again.
    let after = w.at("2026-11-23T00:00:00Z").plan();
    assert_eq!(after.status, w.run.status.clone().unwrap());
    assert!(
        after.create_jobs.is_empty() && after.delete_sandbox.is_none() && after.events.is_empty()
    );
    assert!(after.requeue.is_none());
}

#[test]
fn keep_on_failure_keeps_the_sandbox_of_a_failed_run() {
    let mut spec = drill_spec();
    spec.sandbox = Sandbox {
        keep_on_failure: true,
        ..Sandbox::default()
    };
    let mut w = World::new(spec);
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Failed", "bad"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    w.store = None;
    let p = w.at("2026-11-22T15:01:45Z").step();
    assert_eq!(phase(&p), DrillPhase::Completed);
    assert!(p.delete_sandbox.is_none());
    assert!(p.events.iter().any(|e| e.reason == "SandboxKept"));
}

#[test]
fn cleanup_gives_up_waiting_after_its_deadline() {
    let mut w = World::new(drill_spec());
    w.backups.clear();
    w.store = None;
    w.sandbox = SandboxState::Ours { terminating: true };
    let p = w.step();
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    let p = w.at("2026-11-22T15:10:01Z").step();
    assert_eq!(phase(&p), DrillPhase::Completed);
    assert!(p.events.iter().any(|e| e.reason == "SandboxNotRemoved"));
}

#[test]
fn a_run_of_a_missing_drill_completes_failed_at_once() {
    let mut w = World::new(drill_spec());
    w.drill = None;
    w.policy = None;
    w.store = None;
    let p = w.step();
    assert_eq!(phase(&p), DrillPhase::Completed);
    assert_eq!(
        p.status.failure.as_ref().unwrap().failure.reason,
        "DrillNotFound"
    );
    assert_eq!(p.finished, Some(DrillOutcome::Failed));
    assert!(p.events.iter().any(|e| e.reason == "ReportFailed"));
}

fn ask_cancel(w: &mut World, run: &str) {
    let d = w.drill.as_mut().unwrap();
    d.metadata.annotations = Some([(annotations::CANCEL_RUN.to_string(), run.to_string())].into());
}

#[test]
fn a_cancel_request_mid_restore_reports_removes_the_sandbox_and_ends_cancelled() {
    let mut w = World::new(drill_spec());
    w.step();
    w.sandbox = SandboxState::Ours { terminating: false };
    let p = w.at("2026-11-22T15:00:02Z").step();
    assert_eq!(phase(&p), DrillPhase::Restoring);
    w.restore = Some(restore_done(
        RestorePhase::Running,
        "2026-11-22T15:00:03Z",
        None,
    ));
    // Another run's name changes nothing.
    ask_cancel(&mut w, "orders-202611211500");
    assert_eq!(
        phase(&w.at("2026-11-22T15:00:10Z").step()),
        DrillPhase::Restoring
    );
    ask_cancel(&mut w, RUN);
    let p = w.at("2026-11-22T15:00:20Z").step();
    assert_eq!(phase(&p), DrillPhase::Reporting);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Cancelled));
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(
        (f.step.as_str(), f.failure.reason.as_str()),
        ("Restoring", "Cancelled")
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "DrillRunCancelled" && !e.warning)
    );
    // The report records the cancelled run (the evidence chain has no gap): the Job is
    // created once the Reporting status is stored, as after a failure.
    let p = w.at("2026-11-22T15:00:21Z").step();
    assert!(
        p.create_jobs
            .iter()
            .any(|j| j.name_any() == report_job_name(&w.run))
    );
    // The report could not be written: the run stays Cancelled (not Failed), and the
    // sandbox goes with whatever the Restore was filling.
    w.store = None;
    w.jobs.clear();
    let p = w.at("2026-11-22T15:00:30Z").step();
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Cancelled));
    assert_eq!(p.delete_sandbox.as_deref(), Some(SANDBOX));
    w.sandbox = SandboxState::Absent;
    let p = w.at("2026-11-22T15:00:40Z").step();
    assert_eq!(phase(&p), DrillPhase::Completed);
    assert_eq!(p.finished, Some(DrillOutcome::Cancelled));
    assert!(p.verified.is_none());
    let done = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Complete")
        .unwrap();
    assert_eq!(done.reason, "Cancelled");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "DrillCancelled" && !e.warning)
    );
}

#[test]
fn a_cancel_request_is_honoured_in_every_work_phase_and_ignored_after() {
    // Pending: the run never provisions.
    let mut w = World::new(drill_spec());
    ask_cancel(&mut w, RUN);
    let p = w.step();
    assert!(p.provision.is_none());
    assert_eq!(p.status.outcome, Some(DrillOutcome::Cancelled));
    assert_eq!(p.status.failure.as_ref().unwrap().step, "Pending");
    // Verifying: the checks' results do not matter any more, even a keepOnFailure
    // sandbox goes (the run did not fail).
    let mut spec = drill_spec();
    spec.sandbox.keep_on_failure = true;
    let mut w = World::new(spec);
    w.run_to_verifying();
    ask_cancel(&mut w, RUN);
    w.store = None;
    let p = w.at("2026-11-22T15:01:10Z").step();
    assert_eq!(p.status.outcome, Some(DrillOutcome::Cancelled));
    assert_eq!(p.status.failure.as_ref().unwrap().step, "Verifying");
    assert_eq!(p.delete_sandbox.as_deref(), Some(SANDBOX));
    // A run already reporting keeps the outcome it measured.
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    let p = w.at("2026-11-22T15:01:45Z").step();
    assert_eq!(phase(&p), DrillPhase::Reporting);
    ask_cancel(&mut w, RUN);
    let p = w.at("2026-11-22T15:01:46Z").step();
    assert_eq!(p.status.outcome, Some(DrillOutcome::Passed));
}

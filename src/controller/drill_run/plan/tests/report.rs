//! Reporting, and a run whose namespace loses the store: no report (and no copy of the
//! store's credentials for one) without the right to the store.

use super::*;

#[test]
fn a_namespace_losing_the_store_fails_the_run_at_its_step_and_hands_out_nothing_more() {
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.store = Some(StoreInfo::revoked(failure(
        "StoreNotAllowed",
        "ClusterBackupStore \"shared\" allows namespace \"shop\" neither ...",
    )));
    let p = w.at("2026-11-22T15:01:10Z").step();
    assert_eq!(p.status.outcome, Some(DrillOutcome::Failed));
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(
        (f.step.as_str(), f.failure.reason.as_str()),
        ("Verifying", "StoreNotAllowed")
    );
    // No report Job, and no copy of the credentials for one: the run goes to clean-up.
    assert!(p.create_jobs.is_empty());
    assert!(!p.report_inputs);
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    assert!(
        p.delete_secrets
            .contains(&("lifeboat-system".to_string(), report_mirror_name(&w.run)))
    );
}

#[test]
fn a_report_that_cannot_be_written_fails_a_passing_run() {
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    w.at("2026-11-22T15:01:45Z").step();
    let name = report_job_name(&w.run);
    w.jobs.push(job(
        "shop",
        &name,
        "2026-11-22T15:01:46Z",
        Some((false, "BackoffLimitExceeded")),
    ));
    let fail_msg = MoverResult {
        v: RESULT_VERSION,
        failure: Some(failure(
            "StorageAccessDenied",
            "PUT lifeboat-reports/...: AccessDenied",
        )),
        ..MoverResult::default()
    }
    .to_message();
    w.pods.push(pod(
        &name,
        "mover",
        21,
        &fail_msg,
        ("2026-11-22T15:01:47Z", "2026-11-22T15:01:48Z"),
    ));
    let p = w.at("2026-11-22T15:01:50Z").step();
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Failed));
    let f = p.status.failure.as_ref().unwrap();
    assert_eq!(
        (f.step.as_str(), f.failure.reason.as_str()),
        ("Reporting", "ReportFailed")
    );
    assert!(f.failure.message.contains("AccessDenied"));
}

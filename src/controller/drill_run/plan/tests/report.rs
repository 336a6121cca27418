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

/// A World at Reporting whose report Job completed with `details`; the plan of that step.
fn reported(w: &mut World, details: &[(&str, &str)]) -> Plan {
    let mut d = serde_json::Map::new();
    for (k, v) in details {
        d.insert((*k).into(), (*v).into());
    }
    reported_with(w, d)
}

fn reported_with(w: &mut World, d: serde_json::Map<String, serde_json::Value>) -> Plan {
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    w.at("2026-11-22T15:01:45Z").step();
    w.at("2026-11-22T15:01:46Z").step();
    let name = report_job_name(&w.run);
    w.jobs.push(job(
        "lifeboat-system",
        &name,
        "2026-11-22T15:01:46Z",
        Some((true, "Completed")),
    ));
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
    w.at("2026-11-22T15:01:55Z").step()
}

const LOCATION: &str = "s3://b/repo/lifeboat-reports/shop/orders/r.json";

fn evidence_signed(p: &Plan) -> Option<(String, String)> {
    p.status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::EVIDENCE_SIGNED)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[test]
fn the_report_job_mounts_the_signing_key_only_when_the_installation_signs() {
    let mut w = World::new(drill_spec());
    w.config.evidence_prefix = Some("lifeboat".into());
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    w.at("2026-11-22T15:01:45Z").step();
    let p = w.at("2026-11-22T15:01:46Z").step();
    let job = &p.create_jobs[0];
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let key_volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "evidence-key")
        .expect("the key volume");
    assert_eq!(
        key_volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("lifeboat-evidence-signing-key")
    );
    let args = pod.containers[0].args.clone().unwrap_or_default().join(" ");
    assert!(
        args.contains("--signing-key /etc/lifeboat/evidence/private-key.pem")
            && args.contains("--anchor /etc/lifeboat/record/anchor.json"),
        "{args}"
    );
    // Without a usable key: no volume, no flag.
    let mut w = World::new(drill_spec());
    w.run_to_verifying();
    w.finish_checks(&[
        ("rows", "Passed", "ok"),
        ("fresh", "Passed", "2026-11-22T14:00:00Z"),
        ("files", "Passed", "ok"),
    ]);
    w.at("2026-11-22T15:01:45Z").step();
    let p = w.at("2026-11-22T15:01:46Z").step();
    let pod = p.create_jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    assert!(
        !pod.volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "evidence-key")
    );
    assert!(
        !pod.containers[0]
            .args
            .clone()
            .unwrap_or_default()
            .join(" ")
            .contains("--signing-key")
    );
}

#[test]
fn a_sealed_report_hands_its_anchor_to_the_controller_and_an_unsigned_one_is_never_silent() {
    let mut w = World::new(drill_spec());
    w.config.evidence_prefix = Some("lifeboat".into());
    let sha = "cd".repeat(32);
    let p = reported(
        &mut w,
        &[
            ("location", LOCATION),
            ("sha256", &sha),
            ("signatureLocation", &format!("{LOCATION}.sig")),
            ("keyId", "3574f0f7ce06325e"),
            ("anchor", "{\"format\":\"x\"}"),
        ],
    );
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    let rep = p.status.report.as_ref().unwrap();
    assert_eq!(
        (rep.signature_location.as_deref(), rep.key_id.as_deref()),
        (
            Some(format!("{LOCATION}.sig").as_str()),
            Some("3574f0f7ce06325e")
        )
    );
    // The controller checks and stores it before the status is written, and sets the
    // condition then.
    assert_eq!(p.anchor.as_deref(), Some("{\"format\":\"x\"}"));
    assert_eq!(evidence_signed(&p), None);

    // Refused by the Job (the stored report is not the run's): recorded, with a Warning.
    let mut w = World::new(drill_spec());
    w.config.evidence_prefix = Some("lifeboat".into());
    let p = reported(
        &mut w,
        &[
            ("location", LOCATION),
            ("sha256", &sha),
            ("sealFailure", "ReportNotAsRecorded"),
            ("sealMessage", "refusing to sign: it differs in outcome"),
        ],
    );
    assert_eq!(phase(&p), DrillPhase::CleaningUp);
    assert!(p.anchor.is_none());
    assert_eq!(
        evidence_signed(&p),
        Some(("False".into(), "ReportNotAsRecorded".into()))
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "EvidenceNotSigned" && e.note.contains("outcome"))
    );
    // The run's outcome is the drill's, not the evidence's.
    assert_eq!(p.status.outcome, Some(DrillOutcome::Passed));

    // No key at all: unsigned, and said so.
    let mut w = World::new(drill_spec());
    let p = reported(&mut w, &[("location", LOCATION), ("sha256", &sha)]);
    assert_eq!(
        evidence_signed(&p),
        Some(("False".into(), "Unsigned".into()))
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "EvidenceNotSigned")
    );
    assert_eq!(seal_reason("SomethingElse"), "SealFailed");
}

#[test]
fn the_immutability_step_is_recorded_and_a_deletion_fails_the_run() {
    let sha = "cd".repeat(32);
    let with = |probe: serde_json::Value| {
        let mut d = serde_json::Map::new();
        d.insert("location".into(), LOCATION.into());
        d.insert("sha256".into(), sha.clone().into());
        d.insert("immutability".into(), probe);
        reported_with(&mut World::new(drill_spec()), d)
    };
    // (the Job's result, outcome, failure reason)
    let table = [
        (
            serde_json::json!({"result": "Refused", "object": "data/ab/abcd", "version": "v1",
                "code": "AccessDenied", "message": "refused"}),
            DrillOutcome::Passed,
            None,
        ),
        (
            serde_json::json!({"result": "Skipped", "message": "no spec.immutability"}),
            DrillOutcome::Passed,
            None,
        ),
        (
            serde_json::json!({"result": "Deleted", "object": "data/ab/abcd", "version": "v1",
                "message": "version v1 of data/ab/abcd was deleted"}),
            DrillOutcome::Failed,
            Some("ImmutabilityNotEnforced"),
        ),
        (
            serde_json::json!({"result": "Error", "message": "the repository has no pack to try"}),
            DrillOutcome::Failed,
            Some("ImmutabilityNotVerified"),
        ),
    ];
    for (probe, outcome, reason) in table {
        let p = with(probe.clone());
        assert_eq!(phase(&p), DrillPhase::CleaningUp);
        let recorded = p.status.immutability.as_ref().expect("recorded");
        assert_eq!(serde_json::to_value(recorded).unwrap(), probe);
        assert_eq!(p.status.outcome, Some(outcome), "{probe}");
        let f = p.status.failure.as_ref();
        assert_eq!(
            f.map(|f| (f.step.as_str(), f.failure.reason.as_str())),
            reason.map(|r| ("immutability", r)),
            "{probe}"
        );
        assert_eq!(
            p.events.iter().any(|e| e.warning
                && e.reason == "DrillStepFailed"
                && e.note.contains("immutability")),
            reason.is_some(),
            "{probe}: {:?}",
            p.events
        );
    }
    // A Job of an older version reports nothing: nothing recorded.
    let p = reported(
        &mut World::new(drill_spec()),
        &[("location", LOCATION), ("sha256", &sha)],
    );
    assert_eq!(p.status.immutability, None);
    assert_eq!(p.status.outcome, Some(DrillOutcome::Passed));
}

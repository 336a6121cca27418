//! The Reporting phase of a drill run: the report Job (`lifeboat mover report`), the store
//! it writes to, and the reading of its result into the run's status. Pure.
//!
//! The report Job runs in the controller's own namespace, whatever the store: namespace
//! editors can exec into pods of their namespace, and a report written from there could be
//! replaced, with its digest, before the controller records it. There it reads the run's
//! record from a ConfigMap the controller writes (the mover has no API access), and the
//! store's credentials from a copy in that namespace, which no tenant can read.

use super::*;
use crate::crd::dr_drill::ImmutabilityProbe;
use crate::drill::immutability;
use crate::evidence::objects;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};

/// Name of the report Job of a run, in the controller's namespace (unique across the
/// namespaces whose drills report there).
pub fn report_job_name(run: &DrillRun) -> String {
    jobs::name(
        &[
            "report",
            &run.namespace().unwrap_or_default(),
            &run.name_any(),
        ],
        MAX_NAME,
    )
}

/// Name of the copy of the store's Secrets for a run's report Job.
pub fn report_mirror_name(run: &DrillRun) -> String {
    jobs::name(
        &[
            "report",
            &run.namespace().unwrap_or_default(),
            &run.name_any(),
            "store",
        ],
        MAX_NAME,
    )
}

/// Name of the ConfigMap holding a run's record for its report Job.
pub fn report_record_name(run: &DrillRun) -> String {
    jobs::name(
        &[
            "report",
            &run.namespace().unwrap_or_default(),
            &run.name_any(),
            "record",
        ],
        MAX_NAME,
    )
}

/// Writing the report must not take longer.
pub const REPORTING_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the report mover finds the run's record.
pub const RECORD_DIR: &str = "/etc/lifeboat/record";
/// The record's key in its ConfigMap (and file name under [`RECORD_DIR`]).
pub const RECORD_KEY: &str = "drillrun.json";
/// The drill's anchor as the controller read it, next to the record (absent for a drill
/// with no anchor yet).
pub const RECORD_ANCHOR_KEY: &str = "anchor.json";
/// Where the report mover finds the installation's signing key.
pub const EVIDENCE_KEY_DIR: &str = "/etc/lifeboat/evidence";

/// The store as the report Job reaches it: through the copy of its Secrets.
pub fn report_store(o: &Observed<'_>) -> Option<StoreTarget> {
    let s = o.store.as_ref()?.usable()?;
    Some(StoreTarget::from_spec(
        &s.spec,
        Some(&report_mirror_name(o.run)),
    ))
}

pub(super) fn report_job(o: &Observed<'_>, store: &StoreTarget) -> Job {
    let run = o.run;
    let ns = run.namespace().unwrap_or_default();
    let mut lbl = run_labels(run, "mover");
    lbl.insert(labels::JOB_TYPE.into(), "report".into());
    // The key is mounted into this Job only (docs/evidence.md, "Where reports are sealed").
    let key_secret = o
        .config
        .evidence_prefix
        .as_deref()
        .map(objects::signing_key_name);
    let signing = key_secret.is_some();
    let mut job = mover::build(&MoverJob {
        name: report_job_name(run),
        namespace: o.config.namespace.clone(),
        labels: lbl,
        // Required by the builder, removed below.
        owner: owner(run),
        image: o.config.mover_image.clone(),
        image_pull_policy: o.config.image_pull_policy.clone(),
        service_account: o.config.mover_service_account.clone(),
        command: MoverCommand::Report(WriteReport {
            run: NamespacedName::new(ns, run.name_any()),
            record: std::path::Path::new(RECORD_DIR).join(RECORD_KEY),
            signing_key: signing
                .then(|| std::path::Path::new(EVIDENCE_KEY_DIR).join(objects::PRIVATE_KEY_PEM)),
            anchor: signing.then(|| std::path::Path::new(RECORD_DIR).join(RECORD_ANCHOR_KEY)),
        }),
        env: vec![],
        store: store.clone(),
        mounts: vec![],
        node_name: None,
        node_selector: o
            .policy
            .map(|p| p.spec.mover.node_selector.clone())
            .unwrap_or_default(),
        tolerations: o
            .policy
            .map(|p| p.spec.mover.tolerations.clone())
            .unwrap_or_default(),
        active_deadline_seconds: REPORTING_TIMEOUT.as_secs() as i64,
        backoff_limit: 1,
        resources: None,
        privilege: Privilege::Unprivileged,
    });
    // NB: an owner in another namespace is not allowed (the garbage collector would delete
    // the Job at once); the run's clean-up removes it.
    job.metadata.owner_references = None;
    job.metadata.annotations = Some(run_annotations(run));
    if let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: "record".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: report_record_name(run),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        if let Some(secret) = &key_secret {
            pod.volumes.get_or_insert_with(Vec::new).push(Volume {
                name: "evidence-key".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    items: Some(vec![KeyToPath {
                        key: objects::PRIVATE_KEY_PEM.into(),
                        path: objects::PRIVATE_KEY_PEM.into(),
                        mode: None,
                    }]),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        if let Some(c) = pod.containers.first_mut() {
            let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
            mounts.push(VolumeMount {
                name: "record".into(),
                mount_path: RECORD_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            if key_secret.is_some() {
                mounts.push(VolumeMount {
                    name: "evidence-key".into(),
                    mount_path: EVIDENCE_KEY_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
            }
        }
    }
    job
}

pub(super) fn report_failed(p: &mut Plan, message: String, now: Timestamp) {
    p.events.push(PlannedEvent {
        warning: true,
        reason: "ReportFailed",
        note: message.clone(),
    });
    if p.status.outcome == Some(DrillOutcome::Passed) || p.status.outcome.is_none() {
        // No evidence, no proof: a run whose report could not be written did not pass.
        // (A failed run keeps its first failure, a cancelled one stays cancelled.)
        p.status.outcome = Some(DrillOutcome::Failed);
        p.status.failure = Some(DrillFailure {
            step: "Reporting".into(),
            failure: failure("ReportFailed", message),
        });
    }
    enter(&mut p.status, DrillPhase::CleaningUp, now);
}

pub(super) fn reporting(o: &Observed<'_>, p: &mut Plan, persisted: DrillPhase) {
    let now = o.now;
    let Some(store) = report_store(o) else {
        report_failed(
            p,
            "no store to write the report to (the drill, its policy or its store is gone)".into(),
            now,
        );
        return;
    };
    let ns = o.config.namespace.clone();
    let name = report_job_name(o.run);
    let Some(job) = o.jobs.iter().find(|j| j.name_any() == name) else {
        // The report Job reads the run's status: create it only once the status that
        // says Reporting (with the outcome, checks and measurements) is stored.
        if persisted == DrillPhase::Reporting {
            p.report_inputs = true;
            p.create_jobs.push(report_job(o, &store));
            p.requeue = Some(Duration::from_secs(5));
        } else {
            p.requeue = Some(Duration::from_secs(1));
        }
        return;
    };
    let term = terminated(o.pods, job, "mover");
    let end = term
        .and_then(|t| t.finished_at.as_ref())
        .map_or(now, |t| t.0.min(now));
    let result = term.and_then(|t| MoverResult::parse(t.message.as_deref().unwrap_or("")));
    match job_finished(job) {
        Some(true) => {
            let d = result.map(|r| r.details).unwrap_or_default();
            let text = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let end = text("finishedAt")
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map_or(end, |t| t.min(now));
            match (text("location"), text("sha256")) {
                (Some(location), Some(sha256)) => {
                    // The Job built the report with this result applied to the record:
                    // the same function applied here keeps the run and its report equal.
                    let probe = d
                        .get("immutability")
                        .and_then(|v| serde_json::from_value::<ImmutabilityProbe>(v.clone()).ok());
                    if let Some(probe) = probe
                        && let Some(f) = immutability::apply(&mut p.status, probe)
                    {
                        p.events.push(PlannedEvent {
                            warning: true,
                            reason: "DrillStepFailed",
                            note: format!(
                                "{}: {}: {}",
                                f.step, f.failure.reason, f.failure.message
                            ),
                        });
                    }
                    p.status.report = Some(crate::crd::dr_drill::ReportRef {
                        location: location.clone(),
                        page_location: text("pageLocation"),
                        sha256: sha256.clone(),
                        previous_sha256: text("previousSha256"),
                        signature_location: text("signatureLocation"),
                        key_id: text("keyId"),
                    });
                    sealing(
                        o,
                        p,
                        text("anchor"),
                        text("sealFailure"),
                        text("sealMessage"),
                    );
                    p.events.push(PlannedEvent {
                        warning: false,
                        reason: "ReportWritten",
                        note: format!("evidence report {location} (sha256 {sha256})"),
                    });
                    enter(&mut p.status, DrillPhase::CleaningUp, end);
                }
                _ => report_failed(
                    p,
                    format!("report Job {name} completed without reporting where it wrote"),
                    end,
                ),
            }
        }
        Some(false) => {
            let why = match result.and_then(|r| r.failure) {
                Some(f) => format!("{}: {}", f.reason, f.message),
                None => format!(
                    "report Job {name} failed ({})",
                    job_failed_reason(job).unwrap_or_else(|| "no reason".into())
                ),
            };
            report_failed(p, why, end);
        }
        None => {
            if let Some(why) = stuck(o.pods, job) {
                p.delete_jobs.push((ns, name.clone()));
                report_failed(p, format!("the report Job cannot start: {why}"), now);
            } else if span_start(&p.status, DrillPhase::Reporting)
                .is_some_and(|s| elapsed(s, now) > REPORTING_TIMEOUT)
            {
                p.delete_jobs.push((ns, name.clone()));
                report_failed(
                    p,
                    format!(
                        "the report was not written within {}",
                        duration::format(REPORTING_TIMEOUT)
                    ),
                    now,
                );
            } else {
                p.requeue = Some(Duration::from_secs(5));
            }
        }
    }
}

/// The report's `EvidenceSigned` condition as the Job left it: `True` once the controller
/// stores the returned anchor (`p.anchor`; a refusal there turns it `False`), otherwise
/// `False` with why, and a Warning Event: an unsigned report is never silent.
fn sealing(
    o: &Observed<'_>,
    p: &mut Plan,
    anchor: Option<String>,
    failure: Option<String>,
    message: Option<String>,
) {
    let (reason, msg) = match (anchor, failure) {
        (Some(a), _) => {
            p.anchor = Some(a);
            return;
        }
        (None, Some(f)) => (
            seal_reason(&f),
            format!("the report was not signed: {}", message.unwrap_or(f)),
        ),
        (None, None) => (
            "Unsigned",
            "the report was not signed: the controller had no usable evidence key (see its log and lifeboat_evidence_key_ready)".to_string(),
        ),
    };
    set_evidence_signed(p, o.run.metadata.generation, o.now, false, reason, msg);
}

/// Sets the run's `EvidenceSigned` condition (and, when `False`, a Warning Event).
pub fn set_evidence_signed(
    p: &mut Plan,
    generation: Option<i64>,
    now: Timestamp,
    signed: bool,
    reason: &'static str,
    message: String,
) {
    conditions::set(
        &mut p.status.conditions,
        &Desired::new(condition::EVIDENCE_SIGNED, signed, reason, message.clone()),
        generation,
        now,
    );
    if !signed {
        p.events.push(PlannedEvent {
            warning: true,
            reason: "EvidenceNotSigned",
            note: message,
        });
    }
}

/// The bounded reason of a seal failure a Job reported (its `evidence::Error` category),
/// or of a stored `EvidenceSigned` condition.
pub fn seal_reason(category: &str) -> &'static str {
    [
        "Sealed",
        "Unsigned",
        "EvidenceKeyInvalid",
        "EvidencePayloadInvalid",
        "AnchorInvalid",
        "ChainFork",
        "ReportNotAsRecorded",
    ]
    .into_iter()
    .find(|c| *c == category)
    .unwrap_or("SealFailed")
}

//! The Reporting phase of a drill run: the report Job (`lifeboat mover report`), the store
//! it writes to, and the reading of its result into the run's status. Pure.
//!
//! The report Job runs in the controller's own namespace, whatever the store: namespace
//! editors can exec into pods of their namespace, and a report written from there could be
//! replaced, with its digest, before the controller records it. There it reads the run's
//! record from a ConfigMap the controller writes (the mover has no API access), and the
//! store's credentials from a copy in that namespace, which no tenant can read.

use super::*;
use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, Volume, VolumeMount};

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

/// Where the report mover finds the run's record.
pub const RECORD_DIR: &str = "/etc/lifeboat/record";
/// The record's key in its ConfigMap (and file name under [`RECORD_DIR`]).
pub const RECORD_KEY: &str = "drillrun.json";

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
        if let Some(c) = pod.containers.first_mut() {
            c.volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: "record".into(),
                    mount_path: RECORD_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
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
    if p.status.outcome != Some(DrillOutcome::Failed) {
        // No evidence, no proof: a run whose report could not be written did not pass.
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
                    p.status.report = Some(crate::crd::dr_drill::ReportRef {
                        location: location.clone(),
                        page_location: text("pageLocation"),
                        sha256: sha256.clone(),
                        previous_sha256: text("previousSha256"),
                    });
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

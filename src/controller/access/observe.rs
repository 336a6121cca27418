//! Job and Pod observation shared by every controller that runs movers: whether a Job
//! finished, which of the observed Pods are really that Job's, and the mover's result from
//! the termination message of such a Pod. Pure.
//!
//! NB: a Pod counts as a Job's only when the job controller made it for that Job object:
//! its `batch.kubernetes.io/controller-uid` label and its controlling owner reference both
//! carry the Job's UID, and it runs as the ServiceAccount of the Job's template. The
//! `job-name` label is not enough: any namespace editor can create a Pod with that label
//! and a termination message of their choosing. A Pod with the mover ServiceAccount is
//! admitted only from the job controller (the chart's ValidatingAdmissionPolicies), so
//! the three together name the Pods the controller's own Job made.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use crate::crd::common::Failure;
use crate::jobs::result::MoverResult;

/// The label the job controller puts on a Job's Pods (and selects them by).
pub(crate) const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// Pod waiting reasons that will not resolve by themselves.
const STUCK_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn failure(reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        reason: reason.into(),
        message: message.into(),
    }
}

/// Whether `pod` was made by the job controller for exactly this `job`.
pub(crate) fn belongs_to(pod: &Pod, job: &Job) -> bool {
    let Some(uid) = job.metadata.uid.as_deref() else {
        return false;
    };
    let labelled = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_UID))
        .is_some_and(|u| u == uid);
    let owned = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "Job" && o.uid == uid);
    let sa = |s: Option<&String>| s.filter(|s| !s.is_empty() && *s != "default").cloned();
    let job_sa = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| sa(s.service_account_name.as_ref()));
    let pod_sa = pod
        .spec
        .as_ref()
        .and_then(|s| sa(s.service_account_name.as_ref()));
    labelled && owned && job_sa == pod_sa
}

/// The Pods of `job` among `pods`, oldest first.
pub(crate) fn pods_of<'p>(pods: &'p [Pod], job: &Job) -> Vec<&'p Pod> {
    let mut out: Vec<&Pod> = pods.iter().filter(|p| belongs_to(p, job)).collect();
    out.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    out
}

/// `Some(true)` once the Job completed, `Some(false)` once it failed, `None` while active.
pub(crate) fn job_finished(job: &Job) -> Option<bool> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    if conds
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True")
    {
        return Some(true);
    }
    if conds
        .iter()
        .any(|c| c.type_ == "Failed" && c.status == "True")
    {
        return Some(false);
    }
    None
}

/// Why a Job failed, from its `Failed` condition.
pub(crate) fn job_failure_reason(job: &Job) -> Failure {
    let cond = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"));
    match cond.and_then(|c| c.reason.as_deref()) {
        Some("DeadlineExceeded") => failure(
            "MoverDeadlineExceeded",
            "the mover did not finish within spec.mover.activeDeadline",
        ),
        _ => failure(
            "MoverFailed",
            cond.and_then(|c| c.message.clone())
                .unwrap_or_else(|| "the mover Job failed".into()),
        ),
    }
}

/// The reason of a Job's `Failed=True` condition.
pub(crate) fn job_failed_reason(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .and_then(|c| c.reason.clone())
}

/// The terminated state of `container` in the newest of the Job's Pods that has one.
pub(crate) fn terminated<'p>(
    pods: &'p [Pod],
    job: &Job,
    container: &str,
) -> Option<&'p ContainerStateTerminated> {
    pods_of(pods, job).iter().rev().find_map(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == container)?
            .state
            .as_ref()?
            .terminated
            .as_ref()
    })
}

/// The mover's result from the newest Pod of a finished Job (`succeeded` picks Pods that
/// ended that way), and a summary of how its container ended.
pub(crate) fn pod_result(
    pods: &[Pod],
    job: &Job,
    succeeded: bool,
) -> Option<(Option<MoverResult>, String)> {
    let want = if succeeded { "Succeeded" } else { "Failed" };
    let pod = pods_of(pods, job)
        .into_iter()
        .rev()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(want))?;
    let term = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "mover")?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    let msg = term.message.clone().unwrap_or_default();
    let summary = format!(
        "exit code {}{}",
        term.exit_code,
        term.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    Some((MoverResult::parse(&msg), summary))
}

/// Why a Pod of the Job cannot start (bad image, missing Secret key...), as text.
pub(crate) fn stuck(pods: &[Pod], job: &Job) -> Option<String> {
    pods_of(pods, job)
        .into_iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        })
        .find(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| STUCK_REASONS.contains(&r))
        })
        .map(|w| {
            format!(
                "{}: {}",
                w.reason.as_deref().unwrap_or_default(),
                w.message.as_deref().unwrap_or("the container cannot start")
            )
        })
}

/// [`stuck`] as a mover failure.
pub(crate) fn stuck_pod(pods: &[Pod], job: &Job) -> Option<Failure> {
    stuck(pods, job).map(|why| failure("MoverCannotStart", why))
}

/// A mover Job without any pod after this long cannot start.
pub const POD_CREATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A Job that has had no pod for [`POD_CREATE_TIMEOUT`]: admission refuses its pods (a
/// ResourceQuota that wants requests and limits, a policy engine), which a Job only
/// reports as Events. Without this the run would wait for the Job's own deadline (hours).
pub(crate) fn no_pod(pods: &[Pod], job: &Job, name: &str, now: jiff::Timestamp) -> Option<Failure> {
    let created = job.metadata.creation_timestamp.as_ref()?.0;
    let age = std::time::Duration::try_from(now.duration_since(created)).unwrap_or_default();
    (!has_pod(pods, job) && age >= POD_CREATE_TIMEOUT).then(|| {
        failure(
            "MoverCannotStart",
            format!(
                "mover Job {name} has had no pod for {}: its pods are refused (a ResourceQuota without spec.mover.resources? see the Job's FailedCreate events)",
                crate::schedule::duration::format(POD_CREATE_TIMEOUT)
            ),
        )
    })
}

/// Whether any Pod of the Job exists.
pub(crate) fn has_pod(pods: &[Pod], job: &Job) -> bool {
    pods.iter().any(|p| belongs_to(p, job))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fixtures: Jobs with a UID and Pods that the job controller would have made for them.
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    /// The UID the fixtures give Job `name`.
    pub(crate) fn uid(name: &str) -> String {
        format!("uid-{name}")
    }

    /// Marks `pod` as made by the job controller for Job `job` (by name, with the
    /// fixtures' UID).
    pub(crate) fn owned_by(mut pod: Pod, job: &str) -> Pod {
        let u = uid(job);
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert("job-name".into(), job.into());
        labels.insert(CONTROLLER_UID.into(), u.clone());
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: job.into(),
            uid: u,
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{owned_by, uid};
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn job(sa: &str) -> Job {
        let mut j: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b-vol-data", "uid": uid("b-vol-data")},
            "spec": {"template": {"spec": {"serviceAccountName": sa, "containers": []}}},
        }))
        .unwrap();
        j.status = None;
        j
    }

    fn pod(message: &str, sa: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: Some(sa.into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Succeeded".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "mover".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            message: Some(message.into()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    const FORGED: &str = r#"{"v":1,"snapshotId":"forged"}"#;

    #[test]
    fn a_pod_with_only_the_job_name_label_is_not_the_jobs() {
        let j = job("lifeboat-mover");
        let mut forged = pod(FORGED, "lifeboat-mover");
        forged.metadata.labels = Some([("job-name".to_string(), "b-vol-data".to_string())].into());
        assert!(pod_result(&[forged], &j, true).is_none());
    }

    #[test]
    fn a_pod_with_copied_labels_and_owner_but_another_service_account_is_not_the_jobs() {
        let j = job("lifeboat-mover");
        let forged = owned_by(pod(FORGED, "default"), "b-vol-data");
        assert!(pod_result(&[forged], &j, true).is_none());
        let other_sa = owned_by(pod(FORGED, "attacker"), "b-vol-data");
        assert!(pod_result(&[other_sa], &j, true).is_none());
    }

    #[test]
    fn a_pod_of_another_job_of_the_same_name_is_not_the_jobs() {
        let j = job("lifeboat-mover");
        let mut earlier = owned_by(pod(FORGED, "lifeboat-mover"), "b-vol-data");
        for o in earlier.metadata.owner_references.iter_mut().flatten() {
            o.uid = "an-earlier-job".into();
        }
        assert!(pod_result(&[earlier], &j, true).is_none());
    }

    #[test]
    fn the_jobs_own_pod_gives_the_result() {
        let j = job("lifeboat-mover");
        let ok = owned_by(
            pod(r#"{"v":1,"snapshotId":"abc"}"#, "lifeboat-mover"),
            "b-vol-data",
        );
        let (r, _) = pod_result(&[ok], &j, true).unwrap();
        assert_eq!(r.unwrap().snapshot_id.as_deref(), Some("abc"));
    }
}

//! Cancelling a restore (annotation `lifeboat.dev/cancel: "true"`): nothing new starts,
//! the movers still running are deleted, and what they had only partly written goes too:
//! the PVCs this restore created for volumes it had not finished, and the ephemeral
//! database servers of databases it had not finished. Sources restored before the
//! request stay (they are complete). Manifests a cancelled manifests mover had already
//! applied stay: they cannot be told apart from objects the namespace had before.

use kube::ResourceExt;

use super::{Observed, Plan, is_ours, job_name, micro, seconds_between, terminal};
use crate::controller::access::observe::job_finished;
use crate::crd::backup::{SourceKind, SourcePhase};
use crate::crd::common::Failure;

/// Reason of a source stopped on request.
pub(crate) const CANCELLED: &str = "Cancelled";

/// Stops what is left: every unit not finished yet fails with reason `Cancelled`, and
/// nothing planned in this reconcile is created.
pub(super) fn stop(o: &Observed<'_>, p: &mut Plan) {
    p.create_pvcs.clear();
    p.create_secrets.clear();
    p.create_deployments.clear();
    p.create_services.clear();
    p.create_jobs.clear();
    p.requeue = None;
    let restore = o.restore.name_any();
    for s in p.status.sources.iter_mut().filter(|s| !terminal(s.phase)) {
        s.phase = SourcePhase::Failed;
        s.failure = Some(Failure {
            reason: CANCELLED.into(),
            message: "the restore was cancelled before this source was restored".into(),
        });
        let end = micro(o.now);
        if let Some(start) = &s.start_time {
            s.duration_seconds = Some(seconds_between(start, &end));
        }
        s.completion_time = Some(end);
        let job = job_name(&restore, s.kind, &s.name);
        if !o.jobs.iter().any(|j| j.name_any() == job) {
            s.job_name = None;
        }
    }
    remove_unfinished(o, p);
}

/// Deletes the unfinished Jobs and the partial PVCs and servers of cancelled units. Also
/// called on every later reconcile of a cancelled restore, so a delete lost to an API
/// error is retried.
pub(super) fn remove_unfinished(o: &Observed<'_>, p: &mut Plan) {
    for j in o.jobs {
        let name = j.name_any();
        if job_finished(j).is_none()
            && j.metadata.deletion_timestamp.is_none()
            && !p.delete_jobs.contains(&name)
        {
            p.delete_jobs.push(name);
        }
    }
    let cancelled = p
        .status
        .sources
        .iter()
        .filter(|s| s.failure.as_ref().is_some_and(|f| f.reason == CANCELLED));
    for s in cancelled {
        match s.kind {
            SourceKind::Volume => {
                let pvc = s.target.clone().unwrap_or_else(|| s.name.clone());
                let partial = o.target_pvcs.iter().any(|c| {
                    c.name_any() == pvc
                        && is_ours(o.restore, &c.metadata)
                        && c.metadata.deletion_timestamp.is_none()
                });
                if partial && !p.delete_pvcs.contains(&pvc) {
                    p.delete_pvcs.push(pvc);
                }
            }
            SourceKind::Database => {
                let server = s.database.as_ref().and_then(|d| d.server_name.clone());
                if let Some(server) = server
                    && o.deployments.iter().any(|d| d.name_any() == server)
                    && !p.delete_servers.contains(&server)
                {
                    p.delete_servers.push(server);
                }
            }
            SourceKind::Manifests => {}
        }
    }
}

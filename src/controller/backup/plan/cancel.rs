//! Cancelling a run (annotation `lifeboat.dev/cancel: "true"`): nothing new starts, the
//! movers still running are deleted (their pods go with them), and the run ends
//! `Cancelled`. A mover stopped before restic wrote its snapshot file leaves no snapshot:
//! restic writes the snapshot last, after every pack and index it refers to, so a
//! killed backup leaves only unreferenced packs (pruned later) and its lock (removed by
//! the stale-lock clean-up, the lock's host being the mover pod that is gone).

use kube::ResourceExt;

use super::{Observed, Plan, terminal};
use crate::controller::access::observe::job_finished;
use crate::crd::backup::SourcePhase;
use crate::crd::common::Failure;

/// Reason of a source (and of the run's `Complete` condition) stopped on request.
pub(crate) const CANCELLED: &str = "Cancelled";

/// Stops what is left of a run: every unit not finished yet fails with reason
/// `Cancelled`, nothing planned in this reconcile is created, and unfinished Jobs go.
pub(super) fn stop(o: &Observed<'_>, p: &mut Plan) {
    p.create_snapshots.clear();
    p.create_pvcs.clear();
    p.create_jobs.clear();
    p.requeue = None;
    for s in p.status.sources.iter_mut().filter(|s| !terminal(s.phase)) {
        s.phase = SourcePhase::Failed;
        s.failure = Some(Failure {
            reason: CANCELLED.into(),
            message: "the run was cancelled before this source committed a snapshot".into(),
        });
        // A Job named in this reconcile only (never created) is no record of anything.
        if !o
            .jobs
            .iter()
            .any(|j| Some(j.name_any()) == s.job_name.clone())
        {
            s.job_name = None;
        }
    }
    stop_jobs(o, p);
}

/// Deletes every Job of the run that has not finished. Also called on every later
/// reconcile of a cancelled run, so a delete lost to an API error is retried.
pub(super) fn stop_jobs(o: &Observed<'_>, p: &mut Plan) {
    for j in o.jobs {
        let name = j.name_any();
        if job_finished(j).is_none()
            && j.metadata.deletion_timestamp.is_none()
            && !p.delete_jobs.contains(&name)
        {
            p.delete_jobs.push(name);
        }
    }
}

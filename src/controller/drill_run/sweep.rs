//! The sandbox sweep: every minute, every namespace labelled as a Lifeboat drill sandbox
//! is matched with its DrillRun (by annotation) and deleted when its run no longer needs
//! it: the run completed without keeping it, or the TTL of a sandbox kept after a failure
//! (`keepOnFailure`) has passed. Runs that are still active are left alone. Everything
//! is read from the API at each pass, so the sweep picks up after a controller restart
//! as if nothing happened.
//!
//! Invariant: the sweep deletes only a namespace whose UID its (existing) run recorded
//! in `status.sandboxUid`, with a UID precondition. Labels and annotations only select
//! candidates: anyone who may label namespaces could copy them. The sandbox of a deleted
//! run is removed by the run's finalizer, which reads the UID from the run itself.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::plan::{self, DEFAULT_SANDBOX_TTL};
use crate::controller::{Context, PlannedEvent};
use crate::crd::annotations;
use crate::crd::dr_drill::{DrillOutcome, DrillPhase, DrillRun};
use crate::crd::labels;
use crate::schedule::duration;

/// How often the sweep runs.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Why sandbox `ns` should be deleted now, or `None` to keep it. `run` is the DrillRun its
/// annotation names, if that exists.
pub fn decide(ns: &Namespace, run: Option<&DrillRun>, now: Timestamp) -> Option<String> {
    if ns.metadata.deletion_timestamp.is_some() {
        return None;
    }
    // Without its run nobody can say which namespace it created: the run's finalizer
    // deleted its sandbox, and anything else is not Lifeboat's to delete.
    let run = run?;
    let recorded = run.status.as_ref().and_then(|s| s.sandbox_uid.as_deref());
    if recorded.is_none() || plan::sandbox_state(Some(ns), run) == plan::SandboxState::Foreign {
        return None;
    }
    let reference = plan::run_ref(run);
    let s = run.status.clone().unwrap_or_default();
    if s.phase != Some(DrillPhase::Completed) {
        return None;
    }
    let spec = s.drill_spec.clone().unwrap_or_default();
    let kept = spec.sandbox.keep_on_failure && s.outcome == Some(DrillOutcome::Failed);
    if !kept {
        return Some(format!("its DrillRun {reference} completed"));
    }
    let ttl = spec
        .sandbox
        .ttl
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(DEFAULT_SANDBOX_TTL);
    let done = s.completion_time.as_ref().map_or(now, |t| t.0);
    let until = done
        .checked_add(jiff::SignedDuration::try_from(ttl).unwrap_or_default())
        .unwrap_or(done);
    (now >= until).then(|| {
        format!(
            "it was kept after the failed run {reference} for its TTL of {}",
            duration::format(ttl)
        )
    })
}

/// One pass over every sandbox.
pub async fn sweep_once(ctx: &Context) -> crate::controller::Result<usize> {
    let client = &ctx.client;
    let lp = ListParams::default().labels(&format!(
        "{}=true,{}={}",
        labels::SANDBOX,
        labels::MANAGED_BY,
        labels::MANAGER
    ));
    let namespaces = Api::<Namespace>::all(client.clone()).list(&lp).await?.items;
    let mut deleted = 0;
    for ns in namespaces {
        let run = match ns
            .annotations()
            .get(annotations::DRILL_RUN_REF)
            .and_then(|r| r.split_once('/'))
        {
            Some((rns, name)) => {
                if !ctx.watches(Some(rns)) {
                    continue;
                }
                Api::<DrillRun>::namespaced(client.clone(), rns)
                    .get_opt(name)
                    .await?
            }
            None => None,
        };
        let Some(why) = decide(&ns, run.as_ref(), Timestamp::now()) else {
            continue;
        };
        // `decide` returns a reason only with a run that recorded this namespace's UID.
        let Some(uid) = run
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .and_then(|s| s.sandbox_uid.clone())
        else {
            continue;
        };
        tracing::info!(namespace = %ns.name_any(), reason = %why, "deleting drill sandbox");
        if super::delete_sandbox(client, &ns.name_any(), &uid).await? {
            deleted += 1;
        }
        if let Some(r) = &run {
            let ev = PlannedEvent {
                warning: false,
                reason: "SandboxSwept",
                note: format!("deleted sandbox {}: {why}", ns.name_any()),
            };
            ctx.publish(r, &ev, "Sweep").await;
        }
    }
    Ok(deleted)
}

/// Sweeps every [`INTERVAL`] until SIGTERM or Ctrl-C.
pub async fn run(ctx: Arc<Context>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler: the sandbox sweep does not run");
            return;
        }
    };
    loop {
        if let Err(e) = sweep_once(&ctx).await {
            tracing::warn!(error = %e, "sandbox sweep failed; retrying later");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::dr_drill::{DRDrillSpec, DrillRunSpec, DrillRunStatus, Sandbox};
    use crate::crd::restore::LocalRef;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn run(phase: DrillPhase, outcome: Option<DrillOutcome>, keep: bool) -> DrillRun {
        let mut r = DrillRun::new(
            "orders-202611221500",
            DrillRunSpec {
                drill_ref: LocalRef {
                    name: "orders".into(),
                },
                ..DrillRunSpec::default()
            },
        );
        r.metadata.namespace = Some("shop".into());
        r.metadata.uid = Some("run-uid".into());
        r.status = Some(DrillRunStatus {
            phase: Some(phase),
            outcome,
            completion_time: Some(Time(t("2026-11-22T15:10:00Z"))),
            sandbox_uid: Some("sandbox-uid".into()),
            drill_spec: Some(DRDrillSpec {
                sandbox: Sandbox {
                    keep_on_failure: keep,
                    ttl: Some("30m".into()),
                    ..Sandbox::default()
                },
                ..DRDrillSpec::default()
            }),
            ..DrillRunStatus::default()
        });
        r
    }

    fn sandbox_of(r: &DrillRun) -> Namespace {
        let levels = crate::controller::drill_run::sandbox::Levels {
            verdict: crate::drill::pod_security::Level::Restricted,
            enforce: crate::drill::pod_security::Level::Restricted,
        };
        let mut ns = crate::controller::drill_run::sandbox::sandbox_objects(
            r,
            &DRDrillSpec::default(),
            "drill-orders-202611221500",
            levels,
            None,
        )
        .namespace;
        ns.metadata.uid = Some("sandbox-uid".into());
        ns
    }

    #[test]
    fn active_runs_keep_their_sandbox() {
        let r = run(DrillPhase::Verifying, None, false);
        assert_eq!(
            decide(&sandbox_of(&r), Some(&r), t("2026-11-23T00:00:00Z")),
            None
        );
    }

    #[test]
    fn leftovers_of_completed_runs_are_deleted() {
        let r = run(DrillPhase::Completed, Some(DrillOutcome::Passed), false);
        let ns = sandbox_of(&r);
        let now = t("2026-11-22T15:11:00Z");
        assert!(decide(&ns, Some(&r), now).unwrap().contains("completed"));
    }

    #[test]
    fn only_the_namespace_whose_uid_the_run_recorded_is_deleted() {
        let r = run(DrillPhase::Completed, Some(DrillOutcome::Passed), false);
        let now = t("2026-11-22T15:11:00Z");
        // Same name, labels and annotations, another UID: a namespace someone labelled
        // (or re-created) to look like the sandbox.
        let mut lookalike = sandbox_of(&r);
        lookalike.metadata.uid = Some("someone-elses".into());
        assert_eq!(decide(&lookalike, Some(&r), now), None);
        // A run that never recorded a UID has nothing the sweep may delete.
        let mut unrecorded = r.clone();
        unrecorded.status.as_mut().unwrap().sandbox_uid = None;
        assert_eq!(decide(&sandbox_of(&r), Some(&unrecorded), now), None);
        // Without its run (the finalizer's business) or with another run of that name.
        assert_eq!(decide(&sandbox_of(&r), None, now), None);
        let mut other = r.clone();
        other.metadata.uid = Some("a-newer-run".into());
        assert_eq!(decide(&sandbox_of(&r), Some(&other), now), None);
    }

    #[test]
    fn kept_sandboxes_live_for_their_ttl_after_the_run() {
        let r = run(DrillPhase::Completed, Some(DrillOutcome::Failed), true);
        let ns = sandbox_of(&r);
        assert_eq!(decide(&ns, Some(&r), t("2026-11-22T15:39:59Z")), None);
        let why = decide(&ns, Some(&r), t("2026-11-22T15:40:00Z")).unwrap();
        assert!(why.contains("TTL of 30m"), "{why}");
        // keepOnFailure keeps only failed runs' sandboxes.
        let passed = run(DrillPhase::Completed, Some(DrillOutcome::Passed), true);
        assert!(decide(&ns, Some(&passed), t("2026-11-22T15:11:00Z")).is_some());
    }

    #[test]
    fn other_namespaces_are_never_touched() {
        let r = run(DrillPhase::Completed, Some(DrillOutcome::Passed), false);
        let mut ns = sandbox_of(&r);
        ns.metadata.labels.as_mut().unwrap().remove(labels::SANDBOX);
        assert_eq!(decide(&ns, Some(&r), t("2026-11-23T00:00:00Z")), None);
        let mut going = sandbox_of(&r);
        going.metadata.deletion_timestamp = Some(Time(t("2026-11-22T15:10:00Z")));
        assert_eq!(decide(&going, Some(&r), t("2026-11-23T00:00:00Z")), None);
    }
}

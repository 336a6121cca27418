//! The DRDrill controller: validates drills, creates one DrillRun per schedule slot,
//! prunes their history, and keeps the drill's status and conditions (RTODemonstrated,
//! RPOMet, DrillOverdue) and gauges current. `plan` decides; this file reads and applies.
//! The runs themselves are the DrillRun controller's (`controller::drill_run`).

pub mod plan;

use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};

use self::plan::{Observed, Plan};
use super::drill_run::list_runs;
use super::drill_run::plan::point;
use super::store::catalog::StoreKey;
use super::{Context, Error, Result, apply_status, error_policy, instrumented, scope};
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::dr_drill::{DRDrill, DRDrillStatus, DrillRun};
use crate::drill::kpi::Retained;
use crate::metrics::DrillLabels;

const CONTROLLER: &str = "drdrill";

async fn reconcile(drill: Arc<DRDrill>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(
        CONTROLLER,
        drill.as_ref(),
        &ctx,
        reconcile_inner(&drill, &ctx),
    )
    .await
}

async fn reconcile_inner(drill: &DRDrill, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = drill.namespace().unwrap_or_default();
    let name = drill.name_any();
    if drill.metadata.deletion_timestamp.is_some() {
        ctx.metrics.forget_drill(&ns, &name);
        return Ok(Action::await_change());
    }
    let policy = Api::<BackupPolicy>::namespaced(client.clone(), &ns)
        .get_opt(&drill.spec.policy_ref.name)
        .await?;
    let runs = list_runs(client, &ns, &name).await?;
    let retained = retained(ctx, &ns, policy.as_ref());
    let plan = plan::plan(&Observed {
        drill,
        policy: policy.as_ref(),
        runs: &runs,
        retained: &retained,
        now: Timestamp::now(),
    });
    apply(drill, &plan, ctx).await?;
    record_gauges(ctx, &ns, &name, &plan);
    match plan.not_ready {
        Some(nr) if nr.permanent => Err(Error::Invalid {
            reason: nr.reason,
            message: nr.message,
        }),
        Some(nr) => Err(Error::Blocked {
            reason: nr.reason,
            message: nr.message,
        }),
        None => Ok(Action::requeue(plan.requeue)),
    }
}

/// The policy's retained restore points as a run would choose among them
/// (`drill_run::plan::point::candidates`): the store's catalog once listed, else the
/// policy's Backup objects (from the cache).
fn retained(ctx: &Context, ns: &str, policy: Option<&BackupPolicy>) -> Retained {
    let Some(p) = policy else {
        return Retained::Unknown;
    };
    let backups = ctx.caches.backups_of(ns, &p.name_any());
    let catalog = ctx
        .catalogs
        .get(&StoreKey::of_ref(ns, &p.spec.store_ref))
        .map(|c| c.points_of(&format!("{ns}/{}", p.name_any())));
    let (cands, source) = point::candidates(&p.name_any(), &backups, catalog.as_deref());
    Retained::Known {
        points: point::retained_names(&cands),
        source,
    }
}

async fn apply(drill: &DRDrill, plan: &Plan, ctx: &Context) -> Result<()> {
    let ns = drill.namespace().unwrap_or_default();
    let runs = Api::<DrillRun>::namespaced(ctx.client.clone(), &ns);
    if let Some(r) = &plan.create {
        match runs.create(&PostParams::default(), r).await {
            Ok(_) => {}
            // Observe-before-create raced with another attempt: the run exists.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in &plan.delete {
        match runs.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for ev in &plan.events {
        ctx.publish(drill, ev, "Reconcile").await;
    }
    if drill.status.as_ref() != Some(&plan.status) {
        let api = Api::<DRDrill>::namespaced(ctx.client.clone(), &ns);
        match apply_status(&api, &drill.name_any(), &plan.status).await {
            // The DRDrill CRD is older than the controller (an upgrade's window, CI's
            // upgrade test): server-side apply refuses a status field the schema does
            // not declare, so record the rest; the coverage waits for the new CRDs.
            Err(Error::Kube(kube::Error::Api(e)))
                if e.message.contains("field not declared in schema") =>
            {
                tracing::warn!(error = %e.message, "the DRDrill CRD is older than the controller: coverage and verifiedRestorePoints not recorded");
                apply_status(&api, &drill.name_any(), &for_old_crd(&plan.status)).await?;
            }
            r => r?,
        }
    }
    Ok(())
}

/// The status without the fields CRDs of earlier releases do not declare.
fn for_old_crd(status: &DRDrillStatus) -> DRDrillStatus {
    DRDrillStatus {
        coverage: None,
        verified_restore_points: Vec::new(),
        ..status.clone()
    }
}

fn record_gauges(ctx: &Context, ns: &str, name: &str, plan: &Plan) {
    ctx.metrics
        .record_drill(&DrillLabels::new(ns, name), plan.gauges.clone(), None);
}

/// Runs the controller until SIGTERM or Ctrl-C (in-flight reconciles finish first).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let served = &ctx.config.watch_namespaces;
    let (store, events) = scope::reflected::<DRDrill>(
        &client,
        served,
        watcher::Config::default().any_semantic(),
        |_| {},
    );
    let controller = Controller::for_stream(events.applied_objects(), store);
    let _ = ctx.drills.set(controller.store());
    let drills = controller.store();
    controller
        .owns_stream(scope::objects::<DrillRun>(
            &client,
            served,
            watcher::Config::default(),
        ))
        // A policy appearing (PolicyNotFound) or changing (sources checks refer to).
        .watches_stream(
            scope::objects::<BackupPolicy>(&client, served, watcher::Config::default()),
            move |p| {
                drills
                    .state()
                    .iter()
                    .filter(|d| {
                        d.namespace() == p.namespace() && plan::uses_policy(d, &p.name_any())
                    })
                    .map(|d| ObjectRef::from_obj(d.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(kube::runtime::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy(CONTROLLER), ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "drdrill controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::dr_drill::{RestorePointCoverage, RetainedSource};

    #[test]
    fn the_status_for_an_old_crd_has_only_fields_it_declares() {
        let full = DRDrillStatus {
            last_run: Some("d-1".into()),
            coverage: Some(RestorePointCoverage {
                retained: 3,
                verified: 1,
                share: Some(1.0 / 3.0),
                source: RetainedSource::Catalog,
            }),
            verified_restore_points: vec!["b1".into()],
            ..DRDrillStatus::default()
        };
        let old = serde_json::to_value(for_old_crd(&full)).unwrap();
        let keys: Vec<&str> = old
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, vec!["lastRun"], "the rest of the status is kept");
        // Without the new fields the two agree, so nothing else was dropped.
        let mut expected = full.clone();
        expected.coverage = None;
        expected.verified_restore_points.clear();
        assert_eq!(for_old_crd(&full), expected);
    }
}

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
use super::{Context, Error, Result, apply_status, error_policy, instrumented, scope};
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::dr_drill::{DRDrill, DrillRun};
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
    let plan = plan::plan(&Observed {
        drill,
        policy: policy.as_ref(),
        runs: &runs,
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
        apply_status(&api, &drill.name_any(), &plan.status).await?;
    }
    Ok(())
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

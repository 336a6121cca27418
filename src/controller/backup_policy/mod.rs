//! The BackupPolicy controller: schedules Backups, prunes their history, and keeps the
//! policy's status (last runs, next run, RPO) current. `plan` decides, this file reads
//! the world and applies the decision.

pub mod plan;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::controller::cache::Subscription;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher};

use self::plan::{Observed, Plan};
use super::access;
use super::{Context, Error, Result, apply_status, error_policy, instrumented};
use crate::crd::backup::Backup;
use crate::crd::backup_policy::{BackupPolicy, StoreKind};
use crate::crd::store::{BackupStore, ClusterBackupStore};
use crate::metrics::PolicyLabels;

const CONTROLLER: &str = "backuppolicy";

/// The policy a run names: from the policy cache when it has it, else from the API server
/// (the cache may not have seen a policy created moments ago).
pub async fn lookup_policy(ctx: &Context, ns: &str, name: &str) -> Result<Option<BackupPolicy>> {
    let cached = ctx.caches.policies.get(&ObjectRef::new(name).within(ns));
    if let Some(p) = cached {
        return Ok(Some(Arc::unwrap_or_clone(p)));
    }
    Ok(Api::<BackupPolicy>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?)
}

/// Secrets named by database sources that do not exist. A Secret seen recently is not
/// looked up again (see [`Context::secret_seen_recently`]); a missing one always is, so
/// a policy waiting for its Secret turns Ready as soon as it is created.
async fn missing_secrets(ctx: &Context, ns: &str, policy: &BackupPolicy) -> Result<Vec<String>> {
    let names: BTreeSet<&str> = policy
        .spec
        .sources
        .databases
        .iter()
        .map(|d| d.credentials.name.as_str())
        .collect();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let mut missing = Vec::new();
    for name in names {
        if ctx.secret_seen_recently(ns, name) {
            continue;
        }
        // metadata only: the controller never needs the values here
        if api.get_metadata_opt(name).await?.is_none() {
            missing.push(name.to_string());
        } else {
            ctx.secret_seen(ns, name);
        }
    }
    Ok(missing)
}

async fn reconcile(policy: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(
        CONTROLLER,
        policy.as_ref(),
        &ctx,
        reconcile_inner(&policy, &ctx),
    )
    .await
}

async fn reconcile_inner(policy: &BackupPolicy, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    if policy.metadata.deletion_timestamp.is_some() {
        ctx.metrics.forget_policy(&ns, &name);
        return Ok(Action::await_change());
    }
    let store = access::resolve(ctx, &ns, &policy.spec.store_ref)
        .await?
        .state;
    let backups = ctx.caches.backups_of(&ns, &name);
    let pvcs = if policy.spec.sources.volumes.is_empty() {
        Vec::new()
    } else {
        // From the API server's watch cache, not a quorum read of etcd: every reconcile of
        // every policy with volumes makes this read, and a PVC created a moment ago being
        // missed only delays Ready by one retry.
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().match_any())
            .await?
            .items
    };
    let missing_secrets = missing_secrets(ctx, &ns, policy).await?;
    let plan = plan::plan(&Observed {
        policy,
        store,
        backups: &backups,
        pvcs: &pvcs,
        missing_secrets,
        now: Timestamp::now(),
    });
    apply(policy, &plan, ctx).await?;
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

/// The only writes of this controller: create the due Backup, delete surplus history,
/// publish Events, write status when it changed.
async fn apply(policy: &BackupPolicy, plan: &Plan, ctx: &Context) -> Result<()> {
    let ns = policy.namespace().unwrap_or_default();
    let backups = Api::<Backup>::namespaced(ctx.client.clone(), &ns);
    if let Some(b) = &plan.create {
        match backups.create(&PostParams::default(), b).await {
            Ok(_) => {}
            // Observe-before-create raced with another attempt: the run exists, adopt it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in &plan.delete {
        match backups.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Events are best-effort and independent of the status: sent while it is written, so
    // a burst of due policies is not paced by two round trips each.
    let events = futures::future::join_all(
        plan.events
            .iter()
            .map(|ev| ctx.publish(policy, ev, "Reconcile")),
    );
    let status = async {
        let mut current = policy.status.clone();
        if let Some(c) = current.as_mut() {
            // Written by the drill controller, never by this one (see plan::plan).
            c.last_verified_restore_point = None;
        }
        if current.as_ref() != Some(&plan.status) {
            let api = Api::<BackupPolicy>::namespaced(ctx.client.clone(), &ns);
            apply_status(&api, &policy.name_any(), &plan.status).await?;
        }
        Ok(())
    };
    let (_, written) = tokio::join!(events, status);
    written
}

fn record_gauges(ctx: &Context, ns: &str, name: &str, plan: &Plan) {
    ctx.metrics
        .record_policy(&PolicyLabels::new(ns, name), plan.gauges, plan.skipped);
}

/// Policies referring to a store, for mapping store changes to policy reconciles.
fn policies_using(
    policies: &reflector::Store<BackupPolicy>,
    kind: StoreKind,
    store_ns: Option<&str>,
    store: &str,
) -> Vec<ObjectRef<BackupPolicy>> {
    policies
        .state()
        .iter()
        .filter(|p| p.spec.store_ref.kind == kind && p.spec.store_ref.name == store)
        .filter(|p| store_ns.is_none() || p.namespace().as_deref() == store_ns)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Runs the controller until SIGTERM or Ctrl-C (in-flight reconciles finish first). It is
/// driven by the shared policy and Backup caches (see [`super::cache`]).
pub async fn run(
    ctx: Arc<Context>,
    policies: Subscription<BackupPolicy>,
    backups: Subscription<Backup>,
) {
    let client = ctx.client.clone();
    let store_reader = ctx.caches.policies.clone();
    let cluster_reader = ctx.caches.policies.clone();
    // A status write wakes the policy once more; that reconcile computes the same status
    // and writes nothing, so it converges (plan::tests::replanning_an_unchanged_world...).
    Controller::for_shared_stream(policies, ctx.caches.policies.clone())
        .owns_shared_stream(backups)
        .watches(
            Api::<BackupStore>::all(client.clone()),
            watcher::Config::default(),
            move |s| {
                policies_using(
                    &store_reader,
                    StoreKind::BackupStore,
                    s.namespace().as_deref(),
                    &s.name_any(),
                )
            },
        )
        .watches(
            Api::<ClusterBackupStore>::all(client.clone()),
            watcher::Config::default(),
            move |s| {
                policies_using(
                    &cluster_reader,
                    StoreKind::ClusterBackupStore,
                    None,
                    &s.name_any(),
                )
            },
        )
        .with_config(kube::runtime::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy(CONTROLLER), ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "backuppolicy controller event");
            }
        })
        .await;
}

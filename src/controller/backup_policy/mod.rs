//! The BackupPolicy controller: schedules Backups, prunes their history, and keeps the
//! policy's status (last runs, next run, RPO) current. `plan` decides, this file reads
//! the world and applies the decision, and runs the `deletionPolicy: Delete` finalizer
//! (decided in `deletion`).

mod deletion;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::controller::cache::Subscription;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher};
use kube::{Resource, ResourceExt};

use self::plan::{Observed, Plan};
use super::access::{self, observe};
use super::conditions::{self, Desired};
use super::{Context, Error, Result, apply_status, error_policy, instrumented};
use crate::crd::backup::Backup;
use crate::crd::backup_policy::{BackupPolicy, StoreKind};
use crate::crd::store::{BackupStore, ClusterBackupStore};
use crate::jobs::mover::StoreTarget;
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
    if let Some(action) = deletion_step(policy, ctx).await? {
        return Ok(action);
    }
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

/// The `deletionPolicy: Delete` finalizer: adds or removes it on a live policy (then the
/// normal reconcile goes on: `None`), and on a deleted one runs the deletion Job until it
/// succeeded (`Some`: nothing else is done for a policy being deleted).
async fn deletion_step(policy: &BackupPolicy, ctx: &Context) -> Result<Option<Action>> {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let holds = policy.finalizers().iter().any(|f| f == deletion::FINALIZER);
    let deleting = policy.metadata.deletion_timestamp.is_some();
    let delete = policy.spec.deletion_policy == crate::crd::common::DeletionPolicy::Delete;
    let config = &ctx.config;
    let mut observed = deletion::Observed {
        policy,
        store: None,
        store_blocker: None,
        job: None,
        pods: &[],
        running_backups: Vec::new(),
        maintenance_busy: false,
        namespace_terminating: false,
        config,
    };
    // Only a deleted policy that holds the finalizer and still says Delete looks at the
    // world; everything else is decided from the policy alone.
    if !(deleting && holds && delete) {
        let plan = deletion::plan(&observed);
        set_finalizer(policy, ctx, plan.finalizer).await?;
        return Ok(deleting.then(Action::await_change));
    }
    let job_name = deletion::job_name(&name);
    let job = Api::<Job>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&job_name)
        .await?;
    let pods = match &job {
        Some(j) if observe::job_finished(j).is_some() => {
            Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                .await?
                .items
        }
        _ => Vec::new(),
    };
    observed.job = job.as_ref();
    observed.pods = &pods;
    if job.is_none() {
        observed.running_backups = ctx
            .caches
            .backups_of(&ns, &name)
            .iter()
            .filter(|b| {
                !b.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .unwrap_or_default()
                    .is_finished()
            })
            .map(|b| b.name_any())
            .collect();
        observed.namespace_terminating = Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&ns)
            .await?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
        if observed.running_backups.is_empty() && !observed.namespace_terminating {
            let (store, blocker) = deletion_store(policy, ctx).await?;
            if let Some(s) = &store {
                observed.maintenance_busy = ctx.caches.maintenance_running(&s.identity, &job_name)
                    || super::backup::maintenance_busy(&ctx.client, &s.identity, &job_name).await?;
            }
            observed.store = store;
            observed.store_blocker = blocker;
        }
    }
    let plan = deletion::plan(&observed);
    if let Some(j) = &plan.create_job {
        match Api::<Job>::namespaced(ctx.client.clone(), &ns)
            .create(&PostParams::default(), j)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for ev in &plan.events {
        ctx.publish(policy, ev, "Delete").await;
    }
    if let Some((status, reason, message)) = &plan.condition {
        let mut current = policy.status.clone().unwrap_or_default();
        current.last_verified_restore_point = None;
        let changed = conditions::set(
            &mut current.conditions,
            &Desired::new(
                deletion::SNAPSHOT_DELETION,
                *status,
                reason,
                message.clone(),
            ),
            policy.metadata.generation,
            Timestamp::now(),
        );
        // The status of a policy about to go is written only while it stays.
        if changed && plan.finalizer != deletion::Finalizer::Remove {
            let api = Api::<BackupPolicy>::namespaced(ctx.client.clone(), &ns);
            apply_status(&api, &name, &current).await?;
        }
    }
    set_finalizer(policy, ctx, plan.finalizer).await?;
    if plan.finalizer == deletion::Finalizer::Remove {
        ctx.metrics.forget_policy(&ns, &name);
    }
    Ok(Some(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    }))
}

/// The store for the deletion Job, through the access kernel exactly as a Backup's
/// retention gets it: only if the namespace may still use it (a store that fails its
/// probe is tried: the Job's failure then says why), a cluster store's credentials
/// mirrored into the namespace for the Job, owned by the policy.
async fn deletion_store(
    policy: &BackupPolicy,
    ctx: &Context,
) -> Result<(Option<StoreTarget>, Option<crate::crd::common::Failure>)> {
    let ns = policy.namespace().unwrap_or_default();
    let store_ref = &policy.spec.store_ref;
    let resolved = access::resolve(ctx, &ns, store_ref).await?;
    let blocker = match &resolved.state {
        access::StoreState::NotReady { .. } => None,
        state => state.blocker(&store_ref.name, &ns),
    };
    let (Some(s), None) = (&resolved.store, &blocker) else {
        return Ok((None, blocker));
    };
    if !s.is_cluster() {
        return Ok((Some(StoreTarget::from_spec(&s.spec, None)), None));
    }
    let mirror = deletion::mirror_name(&policy.name_any());
    match access::read_secrets(&ctx.client, &ctx.config, s).await? {
        Err(r) => Ok((None, Some(r.into()))),
        Ok(secrets) => {
            access::write_mirror(
                &ctx.client,
                &secrets,
                BTreeMap::new(),
                &ns,
                &mirror,
                crate::jobs::policy_labels(&policy.name_any(), "store-credentials"),
                access::MirrorOwner::Reference(
                    policy.controller_owner_ref(&()).expect("stored object"),
                ),
            )
            .await?;
            Ok((Some(StoreTarget::from_spec(&s.spec, Some(&mirror))), None))
        }
    }
}

/// Adds or removes the finalizer; the resourceVersion makes the patch fail (and the
/// reconcile retry) if another writer changed the list meanwhile.
async fn set_finalizer(
    policy: &BackupPolicy,
    ctx: &Context,
    action: deletion::Finalizer,
) -> Result<()> {
    let mut list: Vec<String> = policy.finalizers().to_vec();
    match action {
        deletion::Finalizer::Keep => return Ok(()),
        deletion::Finalizer::Add => list.push(deletion::FINALIZER.into()),
        deletion::Finalizer::Remove => list.retain(|f| f != deletion::FINALIZER),
    }
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": list,
            "resourceVersion": policy.resource_version(),
        }
    });
    let api = Api::<BackupPolicy>::namespaced(
        ctx.client.clone(),
        &policy.namespace().unwrap_or_default(),
    );
    match api
        .patch(
            &policy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
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
        .watches_stream(
            super::scope::objects::<BackupStore>(
                &client,
                &ctx.config.watch_namespaces,
                watcher::Config::default(),
            ),
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

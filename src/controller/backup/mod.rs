//! The Backup controller: runs one backup of a policy as mover Jobs, one per source, and
//! records each source's snapshot in the Backup's status. `plan` decides; this file reads
//! the world and applies.
//!
//! NB: the policy, the store and the run's Jobs and Pods come from watch caches (see
//! `cache.rs`): reads from the API server on every reconcile made a burst of runs at one
//! slot take minutes. A Job missing from the cache is looked up directly before it is
//! declared vanished, and a maintenance Job is started only after a consistent LIST.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::controller::cache::Subscription;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use self::plan::{Observed, Plan};
use super::access::rbac::{self, Grant};
use super::access::{self, observe};
use super::backup_policy::lookup_policy;
use super::{Context, Result, apply_own_status, error_policy, instrumented};
use crate::crd::backup::{Backup, BackupPhase, BackupStatus, SourceKind, SourcePhase};
use crate::crd::backup_policy::{BackupPolicy, CopyMethod, StoreKind};
use crate::crd::common::Failure;
use crate::crd::labels;
use crate::jobs::mover::StoreTarget;
use crate::jobs::{self, MAX_NAME};
use crate::metrics::{FinishedRun, PolicyLabels};
use crate::volume::VolumeSnapshot;

const CONTROLLER: &str = "backup";

fn by_backup(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{}={}", labels::BACKUP, jobs::label_value(name)))
}

/// Nodes where running pods mount each PVC (for `Direct` copies of RWO volumes).
async fn consumers(client: &Client, ns: &str) -> Result<BTreeMap<String, String>> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields("status.phase=Running"))
        .await?;
    let mut out = BTreeMap::new();
    for p in pods.items {
        let Some(spec) = p.spec else { continue };
        let Some(node) = spec.node_name else { continue };
        for v in spec.volumes.unwrap_or_default() {
            if let Some(c) = v.persistent_volume_claim {
                out.entry(c.claim_name).or_insert_with(|| node.clone());
            }
        }
    }
    Ok(out)
}

/// Whether a maintenance Job other than `own` runs on `repository`, read from the API
/// server (a consistent LIST, not the cache).
pub(crate) async fn maintenance_busy(client: &Client, repository: &str, own: &str) -> Result<bool> {
    let lp = ListParams::default().labels(&format!(
        "{}={},{}=maintenance",
        labels::REPOSITORY,
        repository,
        labels::JOB_TYPE
    ));
    let jobs = Api::<Job>::all(client.clone()).list(&lp).await?;
    Ok(jobs
        .items
        .iter()
        .any(|j| j.name_any() != own && observe::job_finished(j).is_none()))
}

/// Gives a hand-made Backup the labels and owner the policy controller selects by.
async fn adopt(client: &Client, backup: &Backup, policy: &BackupPolicy) -> Result<()> {
    let has_label =
        backup.labels().get(labels::POLICY) == Some(&jobs::label_value(&policy.name_any()));
    let owned = backup
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == policy.meta().uid.as_ref());
    if has_label && owned {
        return Ok(());
    }
    let mut owners = backup.owner_references().to_vec();
    if !owned {
        owners.push(policy.controller_owner_ref(&()).expect("stored object"));
    }
    let patch = serde_json::json!({
        "metadata": {
            "labels": jobs::policy_labels(&policy.name_any(), "backup"),
            "ownerReferences": owners,
        }
    });
    Api::<Backup>::namespaced(client.clone(), &backup.namespace().unwrap_or_default())
        .patch(
            &backup.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Whether a run in this state talks to the repository: while it runs, and after it
/// finished while retention is still to be applied.
fn needs_store(status: Option<&BackupStatus>, policy: &BackupPolicy) -> bool {
    let phase = status.and_then(|s| s.phase).unwrap_or_default();
    if !phase.is_finished() {
        return true;
    }
    let retention_done = status.is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == plan::RETENTION_APPLIED
                && matches!(
                    c.reason.as_str(),
                    "Applied" | "RetentionFailed" | plan::RETENTION_BREAKER_TRIPPED
                )
        })
    });
    // Retention follows runs that made snapshots only (see plan::retention).
    let made_snapshots = matches!(phase, BackupPhase::Succeeded | BackupPhase::PartiallyFailed);
    made_snapshots && !policy.spec.retention.is_empty() && !retention_done
}

/// Name of the Secret holding a cluster store's credentials for a Backup's movers.
fn mirror_name(backup: &str) -> String {
    jobs::name(&[backup, "store"], MAX_NAME)
}

/// How this step of the run reaches the store, through the store-access kernel: the
/// target (when the step needs the store and the namespace may use it) and, if not, why.
/// A finished run needs only the namespace's allowance (retention may run while a probe
/// fails); an unfinished one also a Ready store.
async fn store_for(
    ctx: &Context,
    backup: &Backup,
    policy: &BackupPolicy,
    phase: BackupPhase,
) -> Result<(Option<StoreTarget>, Option<Failure>)> {
    let ns = backup.namespace().unwrap_or_default();
    let store_ref = &policy.spec.store_ref;
    let resolved = access::resolve(ctx, &ns, store_ref).await?;
    let blocker = match (&resolved.state, phase.is_finished()) {
        (access::StoreState::NotReady { .. }, true) => None,
        (state, _) => state.blocker(&store_ref.name, &ns),
    };
    let (Some(s), None) = (&resolved.store, &blocker) else {
        return Ok((None, blocker));
    };
    if !needs_store(backup.status.as_ref(), policy) {
        return Ok((None, None));
    }
    if !s.is_cluster() {
        return Ok((Some(StoreTarget::from_spec(&s.spec, None)), None));
    }
    // A pod can only reference Secrets of its own namespace: the cluster store's
    // credentials are copied next to the movers, owned by the Backup, and removed once
    // the run no longer needs them.
    let mirror = mirror_name(&backup.name_any());
    match access::read_secrets(&ctx.client, &ctx.config, s).await? {
        Err(r) => Ok((None, Some(r.into()))),
        Ok(secrets) => {
            access::write_mirror(
                &ctx.client,
                &secrets,
                BTreeMap::new(),
                &ns,
                &mirror,
                jobs::policy_labels(&backup.spec.policy_ref.name, "store-credentials"),
                access::MirrorOwner::Reference(
                    backup.controller_owner_ref(&()).expect("stored object"),
                ),
            )
            .await?;
            Ok((Some(StoreTarget::from_spec(&s.spec, Some(&mirror))), None))
        }
    }
}

/// Whether the run's manifests unit (if any) is over, or the whole run.
fn manifests_done(status: &BackupStatus) -> bool {
    status.phase.is_some_and(BackupPhase::is_finished)
        || status
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Manifests)
            .all(|s| matches!(s.phase, SourcePhase::Succeeded | SourcePhase::Failed))
}

/// The manifests mover reads the namespace through the API: right before its Job is made,
/// the run's RoleBindings give the namespace's mover ServiceAccount the read role (and the
/// Secrets role if the policy saves Secrets), until the unit ends.
async fn manifests_grants(
    ctx: &Context,
    backup: &Backup,
    policy: &BackupPolicy,
    plan: &Plan,
) -> Result<()> {
    let Some(m) = &policy.spec.sources.manifests else {
        return Ok(());
    };
    let job = plan::manifests_job_name(&backup.name_any());
    if !plan
        .create_jobs
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(job.as_str()))
    {
        return Ok(());
    }
    let ns = backup.namespace().unwrap_or_default();
    let owner = backup.controller_owner_ref(&());
    let mut grants = vec![Grant::ReadManifests];
    if m.include_secrets {
        grants.push(Grant::ReadSecrets);
    }
    for g in grants {
        rbac::bind(
            ctx,
            &ns,
            &backup.name_any(),
            g,
            owner.clone(),
            BTreeMap::new(),
        )
        .await?;
    }
    Ok(())
}

async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(
        CONTROLLER,
        backup.as_ref(),
        &ctx,
        reconcile_inner(&backup, &ctx),
    )
    .await
}

async fn reconcile_inner(backup: &Backup, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let phase = backup
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    let policy = lookup_policy(ctx, &ns, &backup.spec.policy_ref.name).await?;
    let mut start_blocker = None;
    let mut store = None;
    if let Some(policy) = &policy {
        if phase == BackupPhase::Pending {
            adopt(client, backup, policy).await?;
        }
        let (target, blocker) = store_for(ctx, backup, policy, phase).await?;
        store = target;
        start_blocker = blocker;
        if phase == BackupPhase::Pending && start_blocker.is_none() {
            rbac::ensure_service_account(ctx, &ns).await?;
        }
    }
    let has_volumes = policy
        .as_ref()
        .is_some_and(|p| !p.spec.sources.volumes.is_empty());
    let pvcs = if has_volumes {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
    } else {
        Vec::new()
    };
    let uses_snapshots = policy.as_ref().is_some_and(|p| {
        p.spec
            .sources
            .volumes
            .iter()
            .any(|v| v.copy_method == CopyMethod::Snapshot)
    });
    let snapshots = if uses_snapshots {
        match Api::<VolumeSnapshot>::namespaced(client.clone(), &ns)
            .list(&by_backup(&name))
            .await
        {
            Ok(l) => l.items,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                start_blocker.get_or_insert(Failure {
                    reason: "SnapshotAPIUnavailable".into(),
                    message: "copyMethod Snapshot needs the snapshot.storage.k8s.io/v1 API (a CSI snapshot controller); use copyMethod Direct or install it".into(),
                });
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        Vec::new()
    };
    let (mut jobs_list, mut pods) = ctx.caches.children_of(&ns, &name);
    // The cache may not have seen a Job we created moments ago: before a running source
    // is declared vanished, ask the API server directly.
    let jobs_api = Api::<Job>::namespaced(client.clone(), &ns);
    let running = backup
        .status
        .iter()
        .flat_map(|s| s.sources.iter())
        .filter(|s| !matches!(s.phase, SourcePhase::Succeeded | SourcePhase::Failed));
    for job in running.filter_map(|s| s.job_name.as_ref()) {
        if !jobs_list
            .iter()
            .any(|j| j.metadata.name.as_ref() == Some(job))
            && let Some(j) = jobs_api.get_opt(job).await?
        {
            jobs_list.push(j);
        }
    }
    // The Pods cache may lag behind the Jobs cache: a Job seen finished whose Pod is not
    // yet seen finished would read as a mover that reported nothing. Ask directly.
    let pods_api = Api::<Pod>::namespaced(client.clone(), &ns);
    for job in &jobs_list {
        let seen_finished = |pods: &[Pod]| {
            pods.iter().any(|p| {
                observe::belongs_to(p, job)
                    && matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
        };
        if let (Some(_), Some(uid)) = (observe::job_finished(job), job.metadata.uid.as_deref())
            && !seen_finished(&pods)
        {
            let fresh = pods_api
                .list(&ListParams::default().labels(&format!("{}={uid}", observe::CONTROLLER_UID)))
                .await?
                .items;
            pods.retain(|p| !observe::belongs_to(p, job));
            pods.extend(fresh);
        }
    }
    let direct = policy.as_ref().is_some_and(|p| {
        p.spec
            .sources
            .volumes
            .iter()
            .any(|v| v.copy_method == CopyMethod::Direct)
    });
    let consumers = if direct && !phase.is_finished() {
        consumers(client, &ns).await?
    } else {
        BTreeMap::new()
    };
    let retention_job = plan::retention_job_name(&name);
    let repository = store.as_ref().map(|s| s.identity.clone());
    let busy = repository
        .as_deref()
        .is_some_and(|r| ctx.caches.maintenance_running(r, &retention_job));
    let mut observed = Observed {
        backup,
        policy: policy.as_ref(),
        store,
        start_blocker,
        pvcs: &pvcs,
        snapshots: &snapshots,
        jobs: &jobs_list,
        pods: &pods,
        consumers: &consumers,
        maintenance_busy: busy,
        config: &ctx.config,
        now: Timestamp::now(),
    };
    let mut plan = plan::plan(&observed);
    // The cache may not show a maintenance Job another run created moments ago: before
    // starting one, confirm with the API server that the repository is free.
    let starts_retention = plan
        .create_jobs
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(retention_job.as_str()));
    if let (true, false, Some(r)) = (starts_retention, busy, repository.as_deref())
        && maintenance_busy(client, r, &retention_job).await?
    {
        observed.maintenance_busy = true;
        plan = plan::plan(&observed);
    }
    let status_changes = {
        let mut current = backup.status.clone().unwrap_or_default();
        current.progress.clear();
        current != plan.status
    };
    // A run that no longer needs the store (finished, or its namespace no longer allowed)
    // keeps no copy of a cluster store's credentials: the copy goes with the status write
    // that says so.
    let drop_mirror = status_changes
        && policy.as_ref().is_some_and(|p| {
            p.spec.store_ref.kind == StoreKind::ClusterBackupStore
                && !needs_store(Some(&plan.status), p)
        });
    if let Some(p) = &policy {
        manifests_grants(ctx, backup, p, &plan).await?;
    }
    apply(backup, &plan, ctx).await?;
    if let Some(p) = &policy
        && status_changes
        && manifests_done(&plan.status)
        && p.spec.sources.manifests.is_some()
    {
        rbac::unbind(ctx, &ns, &name, &[Grant::ReadManifests, Grant::ReadSecrets]).await?;
    }
    if drop_mirror {
        access::delete_mirror(
            client,
            &ns,
            &mirror_name(&name),
            backup.meta().uid.as_deref(),
        )
        .await?;
    }
    if let Some(result) = plan.finished {
        record_finish(ctx, backup, &plan, result);
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

async fn apply(backup: &Backup, plan: &Plan, ctx: &Context) -> Result<()> {
    let client = &ctx.client;
    let ns = backup.namespace().unwrap_or_default();
    let pp = PostParams::default();
    let dp = DeleteParams::background();
    let ok_exists = |r: kube::Result<()>| match r {
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        other => other,
    };
    let snaps = Api::<VolumeSnapshot>::namespaced(client.clone(), &ns);
    for s in &plan.create_snapshots {
        ok_exists(snaps.create(&pp, s).await.map(drop))?;
    }
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    for c in &plan.create_pvcs {
        ok_exists(pvcs.create(&pp, c).await.map(drop))?;
    }
    let jobs_api = Api::<Job>::namespaced(client.clone(), &ns);
    for j in &plan.create_jobs {
        ok_exists(jobs_api.create(&pp, j).await.map(drop))?;
    }
    let mut current = backup.status.clone().unwrap_or_default();
    current.progress.clear();
    if current != plan.status {
        apply_own_status(client, backup, &plan.status).await?;
    }
    // Deletions and events come after the status write: a unit's Job and temporary PVC
    // go only once its result is recorded (a Job removed before a write that then lost
    // to a newer version would read as vanished), and a plan made from a stale object
    // changes and emits nothing.
    for n in &plan.delete_jobs {
        ok_exists(jobs_api.delete(n, &dp).await.map(drop))?;
    }
    for n in &plan.delete_snapshots {
        ok_exists(snaps.delete(n, &dp).await.map(drop))?;
    }
    for n in &plan.delete_pvcs {
        ok_exists(pvcs.delete(n, &dp).await.map(drop))?;
    }
    for ev in &plan.events {
        ctx.publish(backup, ev, "Backup").await;
    }
    Ok(())
}

fn record_finish(ctx: &Context, backup: &Backup, plan: &Plan, result: BackupPhase) {
    let ns = backup.namespace().unwrap_or_default();
    let s = &plan.status;
    let failures = s
        .sources
        .iter()
        .filter(|x| x.phase == SourcePhase::Failed)
        .filter_map(|x| x.failure.as_ref());
    let run = FinishedRun {
        result: result.as_str(),
        duration_seconds: s
            .start_time
            .as_ref()
            .zip(s.completion_time.as_ref())
            .map(|(a, b)| b.0.duration_since(a.0).as_secs_f64()),
        bytes_read_added: s.totals.as_ref().map(|t| (t.bytes_read, t.bytes_added)),
        failure_reasons: failures
            .chain(s.failure.iter().filter(|_| s.sources.is_empty()))
            .map(|f| bounded(&f.reason))
            .collect(),
    };
    ctx.metrics
        .record_backup_run(&PolicyLabels::new(&ns, &backup.spec.policy_ref.name), run);
}

/// Failure reasons come from our own fixed vocabulary; anything unexpected (a future
/// mover, a hand-edited status) is folded into one label value so cardinality stays
/// bounded.
fn bounded(reason: &str) -> String {
    let ok = !reason.is_empty()
        && reason.len() <= 40
        && reason.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        reason.to_string()
    } else {
        "Other".to_string()
    }
}

/// Runs the controller until SIGTERM or Ctrl-C (in-flight reconciles finish first). It is
/// driven by the shared Backup cache (see [`super::cache`]). Its Jobs and PVCs are
/// watched here, not taken from the caches: a child's deletion must wake its Backup (a
/// vanished Job fails the run). Its own subscription passes changes only: a deleted
/// Backup needs nothing (its children are garbage-collected through owner references).
pub async fn run(ctx: Arc<Context>, backups: Subscription<Backup>) {
    let client = ctx.client.clone();
    let ours =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    Controller::for_shared_stream(backups, ctx.caches.backups.clone())
        .owns(Api::<Job>::all(client.clone()), ours.clone())
        .owns_stream(super::scope::objects::<PersistentVolumeClaim>(
            &client,
            &ctx.config.watch_namespaces,
            ours,
        ))
        .with_config(kube::runtime::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy(CONTROLLER), ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "backup controller event");
            }
        })
        .await;
}

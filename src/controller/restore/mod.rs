//! The Restore controller: brings a restore point back, source by source, as mover Jobs
//! in the target namespace, and records each source's result in the Restore's status.
//! `plan` decides; this file reads the world and applies.
//!
//! Children in the Restore's own namespace carry an owner reference. In another
//! namespace an owner reference is void, so there the Restore holds a finalizer
//! (`restores.lifeboat.dev/cleanup`) and its children are found by the
//! `lifeboat.dev/restore-uid` label: Jobs and the credential mirror are removed when it
//! finishes, ephemeral database servers when it is deleted. Restored PVCs are user data
//! and are never removed.
//!
//! NB: children are read with consistent LIST calls, not from a watch cache (a Job
//! created a moment ago must not look vanished).

pub mod from_store;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use self::plan::{Observed, Plan, Resolution};
use super::access::{
    self,
    rbac::{self, Grant},
};
use super::backup_policy::lookup_policy;
use super::{Context, Result, apply_own_status, error_policy, instrumented};
use crate::crd::backup::Backup;
use crate::crd::common::Failure;
use crate::crd::labels;
use crate::crd::restore::{Restore, RestorePhase};
use crate::jobs;
use crate::jobs::mover::StoreTarget;

const CONTROLLER: &str = "restore";
/// Held by Restores whose target is another namespace, until their children there are gone.
pub const FINALIZER: &str = "restores.lifeboat.dev/cleanup";

fn by_uid(r: &Restore) -> ListParams {
    ListParams::default().labels(&format!(
        "{}={}",
        labels::RESTORE_UID,
        r.meta().uid.as_deref().unwrap_or_default()
    ))
}

/// Copies the Secrets the movers need into one Secret of the target namespace (a pod can
/// only reference Secrets of its own namespace): the store's credentials, read through the
/// store-access kernel, and the logins of database targets (which the Restore's author
/// gave in the Restore's namespace).
async fn mirror_secrets(
    ctx: &Context,
    r: &Restore,
    target: &str,
    store: &access::Store,
    mirror: &str,
) -> Result<std::result::Result<(), Failure>> {
    let client = &ctx.client;
    let own = r.namespace().unwrap_or_default();
    let secrets = match access::read_secrets(client, &ctx.config, store).await? {
        Ok(s) => s,
        Err(refusal) => return Ok(Err(refusal.into())),
    };
    let mut extra = BTreeMap::new();
    if target != own {
        let api = Api::<Secret>::namespaced(client.clone(), &own);
        for d in &r.spec.databases {
            let Some(t) = &d.target else { continue };
            let (u, p) = plan::mirror_db_keys(&d.source);
            let c = &t.credentials;
            let secret = match api.get_opt(&c.name).await {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Err(Failure {
                        reason: "SecretNotReadable".into(),
                        message: format!("Secret {own}/{}: {e}", c.name),
                    }));
                }
            };
            let data = secret.and_then(|s| s.data).unwrap_or_default();
            for (key, into) in [(c.username_key(), u), (c.password_key(), p)] {
                match data.get(key) {
                    Some(v) => {
                        extra.insert(into, v.clone());
                    }
                    None => {
                        return Ok(Err(Failure {
                            reason: "SecretNotFound".into(),
                            message: format!("Secret {own}/{} has no key {key:?}", c.name),
                        }));
                    }
                }
            }
        }
    }
    let policy = r
        .status
        .as_ref()
        .and_then(|s| s.restore_point.as_ref())
        .map(|p| p.policy.clone())
        .unwrap_or_default();
    let mut l = jobs::policy_labels(&policy, "store-credentials");
    l.extend(plan::restore_labels(r));
    // Outside its own namespace an owner reference would be void: the Restore removes the
    // copy by name once done, checking the restore-uid label.
    let owner = match target == own {
        true => access::MirrorOwner::Reference(
            r.controller_owner_ref(&())
                .expect("a stored Restore has a name and uid"),
        ),
        false => access::MirrorOwner::Namespace,
    };
    access::write_mirror(client, &secrets, extra, target, mirror, l, owner).await?;
    Ok(Ok(()))
}

/// The key of a Restore's RoleBinding in its target namespace: Restores of one name from
/// several namespaces may share a target.
fn binding_run(r: &Restore) -> String {
    format!("{}-{}", r.namespace().unwrap_or_default(), r.name_any())
}

fn ignore_gone(r: kube::Result<()>) -> kube::Result<()> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        other => other,
    }
}

/// Deletes a Secret of `r` by name, only if it carries `r`'s UID: a namespace may hold
/// the same-named Secret of a newer Restore of the same name (a drill's sandbox is
/// recreated under one name run after run), and the controller may not list Secrets to
/// select by label. The UID precondition closes the gap between the read and the delete.
async fn delete_own_secret(api: &Api<Secret>, name: &str, r: &Restore) -> kube::Result<()> {
    let Some(s) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !plan::is_ours(r, &s.metadata) {
        return Ok(());
    }
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: s.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    ignore_gone(api.delete(name, &dp).await.map(drop))
}

async fn add_finalizer(client: &Client, r: &Restore) -> Result<()> {
    if r.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut fins = r.finalizers().to_vec();
    fins.push(FINALIZER.into());
    // The resourceVersion makes this a compare-and-swap: a concurrent change is a 409.
    let patch = serde_json::json!({
        "metadata": { "finalizers": fins, "resourceVersion": r.resource_version() }
    });
    Api::<Restore>::namespaced(client.clone(), &r.namespace().unwrap_or_default())
        .patch(
            &r.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// A deleted Restore: remove its children from the target namespace (never the
/// restored PVCs), then let it go.
async fn finalize(ctx: &Context, r: &Restore, target: &str) -> Result<()> {
    let client = &ctx.client;
    let ns = r.namespace().unwrap_or_default();
    let lp = by_uid(r);
    let dp = DeleteParams::background();
    let target_alive = Api::<Namespace>::all(client.clone())
        .get_opt(target)
        .await?
        .is_some_and(|n| n.metadata.deletion_timestamp.is_none());
    // A namespace being deleted takes everything with it (and refuses nothing we
    // would do here anyway).
    if target_alive {
        let jobs_api = Api::<Job>::namespaced(client.clone(), target);
        for j in jobs_api.list(&lp).await?.items {
            ignore_gone(jobs_api.delete(&j.name_any(), &dp).await.map(drop))?;
        }
        let deps = Api::<Deployment>::namespaced(client.clone(), target);
        for d in deps.list(&lp).await?.items {
            ignore_gone(deps.delete(&d.name_any(), &dp).await.map(drop))?;
        }
        let svcs = Api::<Service>::namespaced(client.clone(), target);
        for s in svcs.list(&lp).await?.items {
            ignore_gone(svcs.delete(&s.name_any(), &dp).await.map(drop))?;
        }
        // Secrets are deleted by name: the controller may not list them.
        let secrets = Api::<Secret>::namespaced(client.clone(), target);
        let mut names = vec![plan::mirror_name(&r.name_any())];
        names.extend(
            r.spec
                .databases
                .iter()
                .map(|d| plan::server_name(&r.name_any(), &d.source)),
        );
        for n in names {
            delete_own_secret(&secrets, &n, r).await?;
        }
    }
    if target_alive {
        rbac::unbind(ctx, target, &binding_run(r), &[Grant::RestoreManifests]).await?;
    }
    let fins: Vec<String> = r
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch = serde_json::json!({
        "metadata": { "finalizers": fins, "resourceVersion": r.resource_version() }
    });
    Api::<Restore>::namespaced(client.clone(), &ns)
        .patch(
            &r.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn reconcile(restore: Arc<Restore>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(
        CONTROLLER,
        restore.as_ref(),
        &ctx,
        reconcile_inner(&restore, &ctx),
    )
    .await
}

async fn reconcile_inner(r: &Restore, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = r.namespace().unwrap_or_default();
    let name = r.name_any();
    let status = r.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let target = status
        .target_namespace
        .clone()
        .unwrap_or_else(|| plan::target_namespace(r));
    let cross = target != ns;
    if r.metadata.deletion_timestamp.is_some() {
        if r.finalizers().iter().any(|f| f == FINALIZER) {
            finalize(ctx, r, &target).await?;
        }
        return Ok(Action::await_change());
    }
    let target_ns = Api::<Namespace>::all(client.clone())
        .get_opt(&target)
        .await?;
    let served = &ctx.config.watch_namespaces;
    let target_ok = plan::check_target(r, target_ns.as_ref(), served).is_ok();
    // From a store alone, the catalog's restore points of the identity stand in for the
    // Backups, and a policy of the identity's name for the BackupPolicy.
    let identity = from_store::identity(r);
    let catalog = from_store::store_key(r).and_then(|k| ctx.catalogs.get(&k));
    let backups: Vec<Backup> = match (phase, &status.restore_point) {
        (p, _) if identity.is_some() => match (&catalog, identity) {
            (Some(c), Some((ins, ip))) if !p.is_finished() => c
                .points_of(&format!("{ins}/{ip}"))
                .iter()
                .map(|pt| from_store::as_backup(pt, &ns, ip))
                .collect(),
            _ => Vec::new(),
        },
        (RestorePhase::Pending, _) => {
            Api::<Backup>::namespaced(client.clone(), &ns)
                .list(&ListParams::default())
                .await?
                .items
        }
        (p, Some(rp)) if !p.is_finished() => Api::<Backup>::namespaced(client.clone(), &ns)
            .get_opt(&rp.backup)
            .await?
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    let policy_name = match (phase, &status.restore_point) {
        (RestorePhase::Pending, _) => match plan::resolve_point(r, &backups) {
            Resolution::Found(b) => Some(b.spec.policy_ref.name.clone()),
            // Looked up so that a Restore naming a policy that does not exist says so.
            _ => r.spec.source.policy_ref.as_ref().map(|p| p.name.clone()),
        },
        (p, Some(rp)) if !p.is_finished() => Some(rp.policy.clone()),
        _ => None,
    };
    let policy = match (&policy_name, identity) {
        (_, Some((_, ip))) if !phase.is_finished() => Some(from_store::as_policy(r, ip)),
        (_, Some(_)) => None,
        (Some(p), None) => lookup_policy(ctx, &ns, p).await?,
        (None, None) => None,
    };
    let mut blocker: Option<Failure> = None;
    let mut store = None;
    let mut mirror = None;
    if phase.is_finished() {
        // Whatever may still hold copied credentials goes.
        mirror = Some(plan::mirror_name(&name));
    } else if let (Some(policy), true) = (&policy, target_ok) {
        let store_ref = &policy.spec.store_ref;
        let resolved = access::resolve(ctx, &ns, store_ref).await?;
        blocker = match (&resolved.state, phase) {
            // Once running, a probe failing does not stop the restore; the namespace
            // losing the store does.
            (access::StoreState::NotReady { .. }, RestorePhase::Running) => None,
            (state, _) => state.blocker(&store_ref.name, &ns),
        };
        if let (Some((ins, _)), None) = (identity, &blocker) {
            blocker = access::identity::may_restore(ctx, &ns, store_ref, ins).await?;
        }
        // A store created with the Restore (a new cluster) is probed and listed within
        // moments: wait for that rather than fail.
        let unprobed = matches!(&resolved.state,
            access::StoreState::NotReady { reason, .. } if reason == "NotProbedYet");
        let waits = identity.is_some()
            && phase == RestorePhase::Pending
            && (unprobed || (blocker.is_none() && catalog.is_none()));
        if waits {
            let now = Timestamp::now();
            match from_store::catalog_wait_over(r, unprobed, now) {
                // Waited long enough: the Restore fails with that reason.
                Some(f) => blocker = Some(f),
                None => {
                    let waiting = from_store::waiting_for_catalog(r, unprobed, now);
                    if r.status.as_ref() != Some(&waiting) {
                        apply_own_status(client, r, &waiting).await?;
                    }
                    return Ok(Action::requeue(std::time::Duration::from_secs(5)));
                }
            }
        }
        match resolved.store {
            Some(s) if blocker.is_none() => {
                if phase == RestorePhase::Pending {
                    // Before anything is written into another namespace, the Restore
                    // must be able to take it back.
                    if cross {
                        add_finalizer(client, r).await?;
                    }
                    rbac::ensure_service_account(ctx, &target).await?;
                    if r.spec.manifests.is_some() {
                        // The manifests mover writes objects into the target, for as long
                        // as this Restore runs.
                        let owner = (!cross).then(|| {
                            r.controller_owner_ref(&())
                                .expect("a stored Restore has a name and uid")
                        });
                        rbac::bind(
                            ctx,
                            &target,
                            &binding_run(r),
                            Grant::RestoreManifests,
                            owner,
                            plan::restore_labels(r),
                        )
                        .await?;
                    }
                }
                if s.is_cluster() || cross {
                    let m = plan::mirror_name(&name);
                    if phase == RestorePhase::Pending
                        && let Err(f) = mirror_secrets(ctx, r, &target, &s, &m).await?
                    {
                        blocker = Some(f);
                    }
                    mirror = Some(m);
                }
                if blocker.is_none() {
                    store = Some(StoreTarget::from_spec(&s.spec, mirror.as_deref()));
                }
            }
            _ => {
                // The copy of the credentials goes with the right to use them.
                mirror = Some(plan::mirror_name(&name));
            }
        }
    }
    let lp = by_uid(r);
    let exists = target_ns.is_some();
    let target_pvcs = if exists && target_ok && !phase.is_finished() {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &target)
            .list(&ListParams::default())
            .await?
            .items
    } else {
        Vec::new()
    };
    let source_pvcs = if !cross {
        target_pvcs.clone()
    } else if !phase.is_finished() {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
    } else {
        Vec::new()
    };
    let (jobs_list, pods, deployments) = if exists {
        (
            Api::<Job>::namespaced(client.clone(), &target)
                .list(&lp)
                .await?
                .items,
            if phase.is_finished() {
                Vec::new()
            } else {
                Api::<Pod>::namespaced(client.clone(), &target)
                    .list(&lp)
                    .await?
                    .items
            },
            if phase.is_finished() {
                Vec::new()
            } else {
                Api::<Deployment>::namespaced(client.clone(), &target)
                    .list(&lp)
                    .await?
                    .items
            },
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let plan = plan::plan(&Observed {
        restore: r,
        backups: &backups,
        policy: policy.as_ref(),
        store,
        start_blocker: blocker,
        target_namespace: target_ns.as_ref(),
        target_pvcs: &target_pvcs,
        source_pvcs: &source_pvcs,
        jobs: &jobs_list,
        pods: &pods,
        deployments: &deployments,
        mirror,
        fresh_password: hex::encode(rand::random::<[u8; 24]>()),
        config: &ctx.config,
        now: Timestamp::now(),
    });
    let finished_now = plan.finished;
    apply(r, &target, &plan, ctx).await?;
    if finished_now.is_some() && r.spec.manifests.is_some() && exists {
        rbac::unbind(ctx, &target, &binding_run(r), &[Grant::RestoreManifests]).await?;
    }
    if let Some(result) = finished_now {
        tracing::info!(restore = %name, result = result.as_str(), "restore finished");
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

async fn apply(r: &Restore, target: &str, plan: &Plan, ctx: &Context) -> Result<()> {
    let client = &ctx.client;
    let pp = PostParams::default();
    let dp = DeleteParams::background();
    let ok_exists = |res: kube::Result<()>| match res {
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        other => other,
    };
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), target);
    for c in &plan.create_pvcs {
        ok_exists(pvcs.create(&pp, c).await.map(drop))?;
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), target);
    for s in &plan.create_secrets {
        ok_exists(secrets.create(&pp, s).await.map(drop))?;
    }
    let svcs = Api::<Service>::namespaced(client.clone(), target);
    for s in &plan.create_services {
        ok_exists(svcs.create(&pp, s).await.map(drop))?;
    }
    let deps = Api::<Deployment>::namespaced(client.clone(), target);
    for d in &plan.create_deployments {
        ok_exists(deps.create(&pp, d).await.map(drop))?;
    }
    let jobs_api = Api::<Job>::namespaced(client.clone(), target);
    for j in &plan.create_jobs {
        ok_exists(jobs_api.create(&pp, j).await.map(drop))?;
    }
    let mut current = r.status.clone().unwrap_or_default();
    current.progress.clear();
    if current != plan.status {
        apply_own_status(client, r, &plan.status).await?;
    }
    // Deletions and events come after the status write: what they remove is recorded
    // first, and a plan made from a stale object changes and emits nothing.
    for n in &plan.delete_jobs {
        ok_exists(jobs_api.delete(n, &dp).await.map(drop))?;
    }
    for n in &plan.delete_pvcs {
        ok_exists(pvcs.delete(n, &dp).await.map(drop))?;
    }
    for n in &plan.delete_servers {
        ok_exists(deps.delete(n, &dp).await.map(drop))?;
        ok_exists(svcs.delete(n, &dp).await.map(drop))?;
        delete_own_secret(&secrets, n, r).await?;
    }
    for n in &plan.delete_secrets {
        delete_own_secret(&secrets, n, r).await?;
    }
    for ev in &plan.events {
        ctx.publish(r, ev, "Restore").await;
    }
    Ok(())
}

/// Maps a child in any namespace back to its Restore by the labels every child carries.
fn owner_of<K: Resource>(obj: K) -> Option<ObjectRef<Restore>> {
    let l = obj.meta().labels.as_ref()?;
    let name = l.get(labels::RESTORE)?;
    let ns = l.get(labels::RESTORE_NAMESPACE)?;
    Some(ObjectRef::new(name).within(ns))
}

/// Runs the controller until SIGTERM or Ctrl-C (in-flight reconciles finish first).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let ours = watcher::Config::default().labels(&format!(
        "{}={},{}",
        labels::MANAGED_BY,
        labels::MANAGER,
        labels::RESTORE_UID
    ));
    let (store, events) = super::scope::reflected::<Restore>(
        &client,
        &ctx.config.watch_namespaces,
        watcher::Config::default().any_semantic(),
        |_| {},
    );
    // Its children live in the target namespace, a drill's sandbox included (made at run
    // time): they are watched in the whole cluster, by label.
    Controller::for_stream(events.applied_objects(), store)
        .watches(Api::<Job>::all(client.clone()), ours.clone(), owner_of)
        .watches(Api::<Deployment>::all(client.clone()), ours, owner_of)
        .with_config(kube::runtime::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy(CONTROLLER), ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "restore controller event");
            }
        })
        .await;
}

//! The DrillRun controller: runs one DR drill (sandbox, Restore, checks, report, clean-up)
//! as the phase machine of `plan`, and the sandbox sweep that removes sandboxes nobody
//! needs any more (`sweep`). This file reads the world and applies the plan.
//!
//! NB: children are read with consistent GET/LIST calls, not from a watch cache: right
//! after a Job or the Restore is created a stale cache would make it look vanished.
//!
//! Writes outside the drill's own namespace go only to the run's sandbox, and each batch
//! of them first re-reads the namespace and checks it is this run's
//! ([`plan::sandbox_state`]): a drill never writes to a namespace it did not create.

pub mod checks;
pub mod limits;
pub mod plan;
mod record;
pub mod sandbox;
pub mod sweep;

use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use self::plan::{Observed, Plan, SandboxState, StoreInfo};
use self::sandbox::Workload;
use super::access::{self, rbac};
use super::backup_policy::lookup_policy;
use super::store::catalog::StoreKey;
use super::{Context, Error, Result, apply_own_status, error_policy, evidence, instrumented};
use crate::crd::annotations;
use crate::crd::backup_policy::{BackupPolicy, BackupPolicyStatus};
use crate::crd::dr_drill::{DRDrill, DrillOutcome, DrillPhase, DrillRun};
use crate::crd::labels;
use crate::crd::restore::Restore;
use crate::drill::pod_security::Level;
use crate::jobs;
use crate::metrics::{DrillGauges, DrillLabels};

const CONTROLLER: &str = "drillrun";

/// Field manager of the drill controllers' writes to objects other controllers also write
/// (the BackupPolicy's `status.lastVerifiedRestorePoint`): a separate manager, so neither
/// controller's server-side apply removes or reverts the other's fields.
pub const DRILL_MANAGER: &str = "lifeboat-drill-controller";

fn by_run(run: &str) -> ListParams {
    ListParams::default().labels(&format!("{}={}", labels::DRILL_RUN, jobs::label_value(run)))
}

/// DrillRuns of a drill (by label; adopted manual runs carry it too).
pub async fn list_runs(client: &Client, ns: &str, drill: &str) -> Result<Vec<DrillRun>> {
    let lp =
        ListParams::default().labels(&format!("{}={}", labels::DRILL, jobs::label_value(drill)));
    Ok(Api::<DrillRun>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|r| r.spec.drill_ref.name == drill)
        .collect())
}

/// Gives a hand-made DrillRun the labels and owner the drill controller selects by.
async fn adopt(client: &Client, run: &DrillRun, drill: &DRDrill) -> Result<()> {
    let has_label = run.labels().get(labels::DRILL) == Some(&jobs::label_value(&drill.name_any()));
    let owned = run
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == drill.meta().uid.as_ref());
    if has_label && owned {
        return Ok(());
    }
    let mut owners = run.owner_references().to_vec();
    if !owned {
        owners.push(drill.controller_owner_ref(&()).expect("stored object"));
    }
    let mut lbl = run.labels().clone();
    lbl.insert(labels::DRILL.into(), jobs::label_value(&drill.name_any()));
    lbl.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    let patch = serde_json::json!({
        "metadata": { "labels": lbl, "ownerReferences": owners }
    });
    Api::<DrillRun>::namespaced(client.clone(), &run.namespace().unwrap_or_default())
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn reconcile(run: Arc<DrillRun>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(CONTROLLER, run.as_ref(), &ctx, reconcile_inner(&run, &ctx)).await
}

async fn reconcile_inner(run: &DrillRun, ctx: &Context) -> Result<Action> {
    let status = run.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    if run.metadata.deletion_timestamp.is_some() {
        if run.finalizers().iter().any(|f| f == FINALIZER) {
            finalize(ctx, run).await?;
        }
        return Ok(Action::await_change());
    }
    // A finished run is the record: never read around it, never written again.
    if phase == DrillPhase::Completed {
        return Ok(Action::await_change());
    }
    // Before its sandbox can exist, the run must be able to take it back. The patch
    // wakes the run again (and a status write now would carry a stale version).
    if matches!(phase, DrillPhase::Pending | DrillPhase::Provisioning)
        && !run.finalizers().iter().any(|f| f == FINALIZER)
    {
        let mut fins = run.finalizers().to_vec();
        fins.push(FINALIZER.into());
        set_finalizers(&ctx.client, run, fins).await?;
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let drill = Api::<DRDrill>::namespaced(client.clone(), &ns)
        .get_opt(&run.spec.drill_ref.name)
        .await?;
    if phase == DrillPhase::Pending
        && let Some(d) = &drill
    {
        adopt(client, run, d).await?;
    }
    let spec = status
        .drill_spec
        .clone()
        .or_else(|| drill.as_ref().map(|d| d.spec.clone()));
    let policy = match &spec {
        Some(s) => lookup_policy(ctx, &ns, &s.policy_ref.name).await?,
        None => None,
    };
    let backups = match (&policy, phase, &status.restore_point) {
        (Some(p), DrillPhase::Pending | DrillPhase::Provisioning, None) => {
            ctx.caches.backups_of(&ns, &p.name_any())
        }
        _ => Vec::new(),
    };
    // The runs are read while waiting for others and while the restore point is to be
    // chosen (`Unverified` looks at the points passed runs verified).
    let choosing = matches!(phase, DrillPhase::Pending | DrillPhase::Provisioning)
        && status.restore_point.is_none();
    let runs = if phase == DrillPhase::Pending || choosing {
        list_runs(client, &ns, &run.spec.drill_ref.name).await?
    } else {
        Vec::new()
    };
    // The repository's restore points of the policy, once its store's snapshots are
    // listed (the store controllers' in-memory catalog).
    let catalog = match (&policy, choosing) {
        (Some(p), true) => ctx
            .catalogs
            .get(&StoreKey::of_ref(&ns, &p.spec.store_ref))
            .map(|c| c.points_of(&format!("{ns}/{}", p.name_any()))),
        _ => None,
    };
    // The namespace's right to the store is checked on every step; the Secrets are read
    // where the run needs them (the sandbox, the report).
    let (store, usable) = match &policy {
        None => (None, None),
        Some(p) => {
            let resolved = access::resolve(ctx, &ns, &p.spec.store_ref).await?;
            let blocker = resolved.state.blocker(&p.spec.store_ref.name, &ns);
            let transient = matches!(resolved.state, access::StoreState::NotReady { .. });
            match (resolved.store, blocker) {
                (None, None) => (None, None),
                (None, Some(f)) => (Some(StoreInfo::revoked(f)), None),
                (Some(_), Some(f)) if !transient => (Some(StoreInfo::revoked(f)), None),
                (Some(s), _) => {
                    let problem = if matches!(phase, DrillPhase::Pending | DrillPhase::Provisioning)
                    {
                        access::read_secrets(client, &ctx.config, &s)
                            .await?
                            .err()
                            .map(Into::into)
                    } else {
                        None
                    };
                    let info = StoreInfo {
                        spec: s.spec.clone(),
                        cluster: s.is_cluster(),
                        problem,
                        revoked: false,
                    };
                    (Some(info), Some(s))
                }
            }
        }
    };
    let sandbox_name = status.sandbox_namespace.clone().or_else(|| {
        spec.as_ref()
            .map(|s| plan::sandbox_name(s.sandbox.namespace_prefix.as_deref(), &ns, &name))
    });
    let sandbox_ns = match &sandbox_name {
        Some(n) => Api::<Namespace>::all(client.clone()).get_opt(n).await?,
        None => None,
    };
    let sandbox = plan::sandbox_state(sandbox_ns.as_ref(), run);
    let sandbox_uid = match sandbox {
        SandboxState::Ours { .. } => sandbox_ns.as_ref().and_then(|n| n.metadata.uid.clone()),
        _ => None,
    };
    // The level the drill's own namespace enforces caps its sandbox's (read only while
    // the sandbox is being made).
    let source_level = if matches!(phase, DrillPhase::Pending | DrillPhase::Provisioning) {
        let own = Api::<Namespace>::all(client.clone()).get_opt(&ns).await?;
        Level::from_label(
            own.as_ref()
                .and_then(|n| n.labels().get(sandbox::PSA_ENFORCE))
                .map(String::as_str),
        )
    } else {
        Level::Privileged
    };
    let restore = Api::<Restore>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await?;
    // The report Job runs in the controller's own namespace (see plan::report).
    let home = &ctx.config.namespace;
    let mut jobs_list = Api::<Job>::namespaced(client.clone(), home)
        .list(&by_run(&name))
        .await?
        .items;
    let mut pods = Api::<Pod>::namespaced(client.clone(), home)
        .list(&by_run(&name))
        .await?
        .items;
    if let (Some(sb), SandboxState::Ours { .. }) = (&sandbox_name, sandbox) {
        jobs_list.extend(
            Api::<Job>::namespaced(client.clone(), sb)
                .list(&by_run(&name))
                .await?
                .items,
        );
        pods.extend(
            Api::<Pod>::namespaced(client.clone(), sb)
                .list(&by_run(&name))
                .await?
                .items,
        );
    }
    // The restored workloads, for the pod-security check of a manifests restore.
    let sandbox_verdict = Level::from_label(
        sandbox_ns
            .as_ref()
            .and_then(|n| n.labels().get(sandbox::PSA_WARN))
            .map(String::as_str),
    );
    let restores_manifests = status
        .drill_spec
        .as_ref()
        .is_some_and(|s| s.restore.manifests);
    let workloads = match (&sandbox_name, sandbox, phase) {
        (Some(sb), SandboxState::Ours { terminating: false }, DrillPhase::Verifying)
            if restores_manifests =>
        {
            let run_uid = run.metadata.uid.clone().unwrap_or_default();
            let restore_uid = restore.as_ref().and_then(|r| r.metadata.uid.clone());
            Some(restored_workloads(client, sb, &run_uid, restore_uid.as_deref()).await?)
        }
        _ => None,
    };
    // Without a usable key, report Jobs are built unsigned (and runs say so).
    let report_config = ctx.evidence.config_for_reports(&ctx.config);
    let mut plan = plan::plan(&Observed {
        run,
        drill: drill.as_ref(),
        policy: policy.as_ref(),
        backups: &backups,
        catalog: catalog.as_deref(),
        runs: &runs,
        store: store.clone(),
        sandbox,
        sandbox_uid,
        source_level,
        sandbox_verdict,
        workloads: workloads.as_deref(),
        restore: restore.as_ref(),
        jobs: &jobs_list,
        pods: &pods,
        config: &report_config,
        now: Timestamp::now(),
    });
    if let Some(returned) = plan.anchor.take() {
        evidence::anchor_report(ctx, run, &mut plan, &returned).await?;
    }
    apply(run, &plan, usable.as_ref(), ctx).await?;
    evidence::record_seal(ctx, run, &plan);
    if let Some(outcome) = plan.finished {
        record_finish(ctx, run, &plan, outcome);
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Held by every run that may have a sandbox, so that deleting the run deletes its
/// sandbox: a namespaced DrillRun cannot own a (cluster-scoped) Namespace.
pub const FINALIZER: &str = "drillruns.lifeboat.dev/cleanup";

/// Deletes namespace `name` only if it still has `uid` (a UID precondition: a namespace
/// deleted and re-created under the same name, or any other, is never touched).
pub(crate) async fn delete_sandbox(client: &Client, name: &str, uid: &str) -> Result<bool> {
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match Api::<Namespace>::all(client.clone())
        .delete(name, &dp)
        .await
    {
        Ok(_) => Ok(true),
        // Gone, or (409) a namespace of that name with another UID: not ours.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn set_finalizers(client: &Client, run: &DrillRun, fins: Vec<String>) -> Result<()> {
    // The resourceVersion makes this a compare-and-swap: a concurrent change is a 409.
    let patch = serde_json::json!({
        "metadata": { "finalizers": fins, "resourceVersion": run.resource_version() }
    });
    Api::<DrillRun>::namespaced(client.clone(), &run.namespace().unwrap_or_default())
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// A deleted run: its sandbox goes (the namespace whose UID the run recorded, if it is
/// still there), then the run. Only API calls of the controller, no Job: a run deleted
/// with its terminating namespace is never stranded (tidb-operator#2888). A sandbox the
/// run never recorded is not deleted (see docs/security.md).
async fn finalize(ctx: &Context, run: &DrillRun) -> Result<()> {
    let s = run.status.clone().unwrap_or_default();
    if let (Some(name), Some(uid)) = (&s.sandbox_namespace, &s.sandbox_uid)
        && delete_sandbox(&ctx.client, name, uid).await?
    {
        let ev = plan::PlannedEvent {
            warning: false,
            reason: "SandboxRemoved",
            note: format!("deleted sandbox {name} of the deleted run"),
        };
        ctx.publish(run, &ev, "Drill").await;
    }
    let fins = run
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(&ctx.client, run, fins).await
}

/// Reads the sandbox namespace again and refuses to go on unless it is this run's;
/// returns its UID.
async fn guard(client: &Client, run: &DrillRun, sandbox: &str) -> Result<Option<String>> {
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(sandbox)
        .await?;
    match plan::sandbox_state(ns.as_ref(), run) {
        SandboxState::Ours { terminating: false } => Ok(ns.and_then(|n| n.metadata.uid)),
        other => Err(Error::Invalid {
            reason: "SandboxNotOwned",
            message: format!(
                "refusing to write to namespace {sandbox}: {}",
                match other {
                    SandboxState::Absent => "it does not exist",
                    SandboxState::Ours { .. } => "it is being deleted",
                    SandboxState::Foreign => "this drill run did not create it",
                }
            ),
        }),
    }
}

fn ok_exists<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The only writes of this controller.
async fn apply(
    run: &DrillRun,
    plan: &Plan,
    store: Option<&access::Store>,
    ctx: &Context,
) -> Result<()> {
    let client = &ctx.client;
    let ns = run.namespace().unwrap_or_default();
    let pp = PostParams::default();
    let dp = DeleteParams::background();
    let mut status = plan.status.clone();
    if let Some(prov) = &plan.provision {
        let sandbox = prov.namespace.name_any();
        match Api::<Namespace>::all(client.clone())
            .create(&pp, &prov.namespace)
            .await
        {
            Ok(created) => {
                status.sandbox_uid = status.sandbox_uid.or(created.metadata.uid);
            }
            // Created by an earlier attempt, or someone else's: the guard tells which.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        guard(client, run, &sandbox).await?;
        rbac::bind_controller_in_sandbox(ctx, &sandbox).await?;
        if let Some(q) = &prov.quota {
            ok_exists(
                Api::<ResourceQuota>::namespaced(client.clone(), &sandbox)
                    .create(&pp, q)
                    .await,
            )?;
        }
        if let Some(l) = &prov.limit_range {
            ok_exists(
                Api::<k8s_openapi::api::core::v1::LimitRange>::namespaced(client.clone(), &sandbox)
                    .create(&pp, l)
                    .await,
            )?;
        }
        for np in &prov.network_policies {
            ok_exists(
                Api::<NetworkPolicy>::namespaced(client.clone(), &sandbox)
                    .create(&pp, np)
                    .await,
            )?;
        }
        rbac::ensure_service_account(ctx, &sandbox).await?;
        if let Some(s) = store {
            match access::read_secrets(client, &ctx.config, s).await? {
                Ok(secrets) => {
                    access::write_mirror(
                        client,
                        &secrets,
                        Default::default(),
                        &sandbox,
                        plan::SANDBOX_STORE_SECRET,
                        plan::run_labels(run, "store-credentials"),
                        access::MirrorOwner::Namespace,
                    )
                    .await?
                }
                Err(f) => {
                    return Err(Error::Blocked {
                        reason: "SecretNotReadable",
                        message: format!("{}: {}", f.reason, f.message),
                    });
                }
            }
        }
    }
    if let Some(r) = &plan.create_restore {
        ok_exists(
            Api::<Restore>::namespaced(client.clone(), &ns)
                .create(&pp, r)
                .await,
        )?;
    }
    if plan.report_inputs {
        record::write_report_inputs(ctx, run, store).await?;
    }
    let mut guarded = std::collections::BTreeSet::new();
    for j in &plan.create_jobs {
        let jns = j.namespace().unwrap_or_default();
        // Besides the sandbox, a run writes only to the controller's own namespace (its
        // report Job).
        if jns != ns && jns != ctx.config.namespace && guarded.insert(jns.clone()) {
            guard(client, run, &jns).await?;
        }
        ok_exists(
            Api::<Job>::namespaced(client.clone(), &jns)
                .create(&pp, j)
                .await,
        )?;
    }
    if let Some(v) = &plan.verified {
        record_verified(client, &ns, run, v).await?;
    }
    if run.status.as_ref() != Some(&status) {
        match apply_own_status(client, run, &status).await {
            // The DrillRun CRD predates fields of this controller (the window of an
            // upgrade in which the controller is new and the CRDs are not yet):
            // `status.sandboxUid`, `status.immutability` and the report's signature
            // fields; server-side apply refuses what the schema does not declare, so
            // record the rest (the CI's upgrade test hung on `immutability`). Until the
            // CRDs are upgraded, only the run's own clean-up deletes its sandbox, by the
            // UID it observed (docs/security.md, Open items); the signature is still
            // next to the report and its key named in the EvidenceSigned condition.
            Err(Error::Kube(kube::Error::Api(e)))
                if e.message.contains("sandboxUid")
                    || e.message.contains("field not declared in schema") =>
            {
                tracing::warn!(error = %e.message, "the DrillRun CRD is older than the controller: sandboxUid, immutability, report signature and restore point source fields not recorded");
                status.sandbox_uid = None;
                // The step's verdict still decided the outcome and is in the report.
                status.immutability = None;
                if let Some(r) = status.report.as_mut() {
                    r.signature_location = None;
                    r.key_id = None;
                }
                // Where the candidates came from, and whether the point is read from the
                // store: a store point's Restore then names a Backup that does not exist
                // and fails with its reason (old CRDs cannot read a store point anyway).
                if let Some(rp) = status.restore_point.as_mut() {
                    rp.candidates = None;
                    rp.from_store = None;
                }
                apply_own_status(client, run, &status).await?;
            }
            r => r?,
        }
    }
    // Deletions and events come after the status write: what they remove is recorded
    // first, and a plan made from a stale object changes and emits nothing.
    for (jns, name) in &plan.delete_jobs {
        ok_exists(
            Api::<Job>::namespaced(client.clone(), jns)
                .delete(name, &dp)
                .await,
        )?;
    }
    for (sns, name) in &plan.delete_secrets {
        access::delete_mirror(client, sns, name, run.meta().uid.as_deref()).await?;
    }
    if plan.delete_record {
        record::delete_record(ctx, run).await?;
    }
    if let Some(sandbox) = &plan.delete_sandbox {
        // Never delete a namespace this run did not create: check again right before,
        // and delete only the UID the run recorded.
        let observed = guard(client, run, sandbox).await?;
        if let Some(uid) = status.sandbox_uid.as_ref().or(observed.as_ref()) {
            delete_sandbox(client, sandbox, uid).await?;
        }
    }
    for ev in &plan.events {
        ctx.publish(run, ev, "Drill").await;
    }
    Ok(())
}

/// Records a verified restore point on the policy, under the drill controller's own field
/// manager, unless the policy already records a newer one.
async fn record_verified(
    client: &Client,
    ns: &str,
    run: &DrillRun,
    v: &crate::crd::backup_policy::VerifiedRestorePoint,
) -> Result<()> {
    let Some(policy_name) = run
        .status
        .as_ref()
        .and_then(|s| s.drill_spec.as_ref())
        .map(|s| s.policy_ref.name.clone())
    else {
        return Ok(());
    };
    let api = Api::<BackupPolicy>::namespaced(client.clone(), ns);
    let Some(policy) = api.get_opt(&policy_name).await? else {
        return Ok(());
    };
    let newer_known = policy
        .status
        .as_ref()
        .and_then(|s| s.last_verified_restore_point.as_ref())
        .is_some_and(|k| k.restore_point_time.0 > v.restore_point_time.0);
    if newer_known {
        return Ok(());
    }
    let status = BackupPolicyStatus {
        last_verified_restore_point: Some(v.clone()),
        ..BackupPolicyStatus::default()
    };
    let body = serde_json::json!({
        "apiVersion": BackupPolicy::api_version(&()),
        "kind": BackupPolicy::kind(&()),
        "status": status,
    });
    api.patch_status(
        &policy_name,
        &PatchParams::apply(DRILL_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

fn record_finish(ctx: &Context, run: &DrillRun, plan: &Plan, outcome: DrillOutcome) {
    let ns = run.namespace().unwrap_or_default();
    let s = &plan.status;
    let gauges = DrillGauges {
        rto_seconds: s.rto.as_ref().and_then(|r| r.measured_seconds),
        rpo_seconds: s.rpo.as_ref().and_then(|r| r.measured_seconds),
        last_passed_seconds: s
            .completion_time
            .as_ref()
            .filter(|_| outcome == DrillOutcome::Passed)
            .map(|t| t.0.as_second() as f64),
        // The DRDrill controller computes the KPIs from all of the drill's runs, and
        // the coverage from its record and the catalog.
        kpis: None,
        coverage: None,
    };
    let outcome = outcome.as_str();
    ctx.metrics.record_drill(
        &DrillLabels::new(&ns, &run.spec.drill_ref.name),
        gauges,
        Some(outcome),
    );
}

/// The DrillRun a sandbox object belongs to, from its annotation.
fn run_of<K: Resource>(obj: &K) -> Option<ObjectRef<DrillRun>> {
    let r = obj
        .meta()
        .annotations
        .as_ref()?
        .get(annotations::DRILL_RUN_REF)?;
    let (ns, name) = r.split_once('/')?;
    Some(ObjectRef::new(name).within(ns))
}

/// Runs the controller until SIGTERM or Ctrl-C (in-flight reconciles finish first).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let drill_objects = watcher::Config::default().labels(&format!(
        "{},{}={}",
        labels::DRILL_RUN,
        labels::MANAGED_BY,
        labels::MANAGER
    ));
    let served = &ctx.config.watch_namespaces;
    let (store, events) = super::scope::reflected::<DrillRun>(
        &client,
        served,
        watcher::Config::default().any_semantic(),
        |_| {},
    );
    Controller::for_stream(events.applied_objects(), store)
        .owns_stream(super::scope::objects::<Restore>(
            &client,
            served,
            watcher::Config::default(),
        ))
        // Check Jobs live in the sandbox (no owner reference across namespaces) and the
        // sandbox is cluster-scoped: both map back by annotation. Report Jobs carry it too.
        // Both are watched in the whole cluster, by label: sandboxes are made at run time.
        .watches(
            Api::<Job>::all(client.clone()),
            drill_objects.clone(),
            |j| run_of(&j),
        )
        .watches(Api::<Namespace>::all(client.clone()), drill_objects, |n| {
            run_of(&n)
        })
        // A cancel request is an annotation on the run's DRDrill naming the run.
        .watches_stream(
            super::scope::objects::<DRDrill>(&client, served, watcher::Config::default()),
            |d| {
                let run = d.annotations().get(annotations::CANCEL_RUN)?;
                Some(ObjectRef::new(run).within(&d.namespace()?))
            },
        )
        .with_config(kube::runtime::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy(CONTROLLER), ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "drillrun controller event");
            }
        })
        .await;
}

/// The pod templates of what a manifests restore put into a sandbox: Deployments,
/// StatefulSets, CronJobs, Jobs and bare Pods, except what this run made there: its
/// check Jobs (annotated with the run's UID) and its Restore's servers and movers
/// (labelled with the Restore's UID). NB: both UIDs were made after the backup was
/// taken, so no restored object can pass for Lifeboat's by copying a label.
async fn restored_workloads(
    client: &Client,
    sandbox: &str,
    run_uid: &str,
    restore_uid: Option<&str>,
) -> Result<Vec<Workload>> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::batch::v1::CronJob;
    let lp = ListParams::default();
    let ours = |m: &kube::api::ObjectMeta| {
        let by_run = m
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::DRILL_RUN_UID))
            .is_some_and(|u| u == run_uid);
        let by_restore = m
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::RESTORE_UID))
            .is_some_and(|u| Some(u.as_str()) == restore_uid);
        by_run || by_restore
    };
    let mut out = Vec::new();
    let named = |kind: &str, name: String| format!("{kind}/{name}");
    for d in Api::<Deployment>::namespaced(client.clone(), sandbox)
        .list(&lp)
        .await?
    {
        if ours(&d.metadata) {
            continue;
        }
        if let Some(spec) = d.spec.as_ref().and_then(|s| s.template.spec.clone()) {
            out.push(Workload {
                name: named("Deployment", d.name_any()),
                spec,
            });
        }
    }
    for s in Api::<StatefulSet>::namespaced(client.clone(), sandbox)
        .list(&lp)
        .await?
    {
        if let Some(spec) = s.spec.as_ref().and_then(|x| x.template.spec.clone()) {
            out.push(Workload {
                name: named("StatefulSet", s.name_any()),
                spec,
            });
        }
    }
    for c in Api::<CronJob>::namespaced(client.clone(), sandbox)
        .list(&lp)
        .await?
    {
        let spec = c
            .spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .and_then(|j| j.template.spec.clone());
        if let Some(spec) = spec {
            out.push(Workload {
                name: named("CronJob", c.name_any()),
                spec,
            });
        }
    }
    for j in Api::<Job>::namespaced(client.clone(), sandbox)
        .list(&lp)
        .await?
    {
        // A CronJob's Jobs are judged with their CronJob.
        if j.owner_references().is_empty()
            && !ours(&j.metadata)
            && let Some(spec) = j.spec.as_ref().and_then(|s| s.template.spec.clone())
        {
            out.push(Workload {
                name: named("Job", j.name_any()),
                spec,
            });
        }
    }
    for pod in Api::<Pod>::namespaced(client.clone(), sandbox)
        .list(&lp)
        .await?
    {
        if pod.owner_references().is_empty()
            && let Some(spec) = pod.spec.clone()
        {
            out.push(Workload {
                name: named("Pod", pod.name_any()),
                spec,
            });
        }
    }
    Ok(out)
}

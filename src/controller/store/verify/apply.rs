//! The store controller's verification step: reads the store's verify Jobs and their pods
//! (in the controller's namespace), asks the pure [`plan`](super::plan), and carries it
//! out: the copy of the store's Secrets, then the Job; finished Jobs and their copies go.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::super::StoreKind;
use super::super::plan::Plan as StorePlan;
use super::{JOB_TYPE, Observed, SCOPE_LABEL, scope_value};
use crate::controller::access::{self, MirrorOwner};
use crate::controller::{Context, Result};
use crate::crd::labels;

/// Runs the verification step of one reconcile; returns when to look again. Stores
/// without `spec.verify` (and no verification status left to clear) cost no request.
pub(in crate::controller::store) async fn run<K: StoreKind>(
    ctx: &Context,
    store: &K,
    p: &mut StorePlan,
    now: Timestamp,
) -> Result<Option<Duration>> {
    let spec = store.spec();
    let had = store.status().is_some_and(|s| s.verify.is_some());
    if spec.verify.is_none() && !had {
        return Ok(None);
    }
    let uid = store.meta().uid.clone().unwrap_or_default();
    let home = &ctx.config.namespace;
    let jobs_api = Api::<Job>::namespaced(ctx.client.clone(), home);
    let selector = format!("{}={JOB_TYPE}", labels::JOB_TYPE);
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|j| access::owned_by(&j.metadata, Some(&uid)))
        .collect();
    let pods: Vec<Pod> = if jobs.is_empty() {
        Vec::new()
    } else {
        Api::<Pod>::namespaced(ctx.client.clone(), home)
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
    };
    let ns = store.namespace();
    let name = store.name_any();
    let created = store
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let o = Observed {
        namespace: ns.as_deref(),
        name: &name,
        uid: &uid,
        created,
        generation: store.meta().generation,
        spec,
        ready: p.not_ready.is_none(),
        jobs: &jobs,
        pods: &pods,
        config: &ctx.config,
        now,
    };
    let plan = super::plan(&o, &mut p.status);
    for job in &plan.delete {
        match jobs_api.delete(job, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        access::delete_mirror(&ctx.client, home, job, Some(&uid)).await?;
    }
    if let Some(job) = &plan.create {
        let scope = match &ns {
            Some(ns) => access::Scope::Namespaced(ns.clone()),
            None => access::Scope::Cluster,
        };
        let target = access::Store {
            name: name.clone(),
            scope,
            spec: spec.clone(),
        };
        // The probe of this reconcile read them a moment ago; a refusal now is the next
        // probe's to report, and the slot is tried again then.
        let secrets = match access::read_secrets(&ctx.client, &ctx.config, &target).await? {
            Ok(s) => s,
            Err(r) => {
                tracing::warn!(store = %name, reason = r.reason, "verify: store Secrets not readable");
                return Ok(Some(Duration::from_secs(30)));
            }
        };
        let mirror_labels = BTreeMap::from([
            (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
            (labels::JOB_TYPE.to_string(), JOB_TYPE.to_string()),
        ]);
        // The movers' ServiceAccount of the controller's namespace (the drills' report
        // Jobs use it too; made on first use).
        access::rbac::ensure_service_account(ctx, home).await?;
        access::write_mirror(
            &ctx.client,
            &secrets,
            BTreeMap::new(),
            home,
            &job.name_any(),
            mirror_labels,
            MirrorOwner::Uid(uid.clone()),
        )
        .await?;
        match jobs_api.create(&PostParams::default(), job).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(result) = plan.finished {
        ctx.metrics
            .store_verify_runs
            .get_or_create(&crate::metrics::VerifyRunLabels { result })
            .inc();
    }
    p.events.extend(plan.events);
    Ok(plan.wake)
}

/// Which stores' verify Jobs [`sweep`] removes.
pub(in crate::controller::store) enum Sweep {
    /// Those of these store UIDs (deleted stores).
    Only(HashSet<String>),
    /// Those of every store of the scope but these (the live ones, after a full list
    /// taken at that time): a Job made after it may be a new store's.
    AllBut(HashSet<String>, Timestamp),
}

/// Deletes the verify Jobs, and their copies of the store's Secrets, of stores that are
/// gone. Runs beside the controller (from its watch events); a failure is logged and the
/// next full list sweeps again.
pub(in crate::controller::store) async fn sweep(ctx: Arc<Context>, cluster: bool, which: Sweep) {
    let home = &ctx.config.namespace;
    let jobs_api = Api::<Job>::namespaced(ctx.client.clone(), home);
    let selector = format!(
        "{}={JOB_TYPE},{SCOPE_LABEL}={}",
        labels::JOB_TYPE,
        scope_value(cluster)
    );
    let listed = match jobs_api
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!(error = %e, "verify: listing Jobs to sweep");
            return;
        }
    };
    for job in listed {
        let owner = job
            .annotations()
            .get(crate::crd::annotations::OWNER_UID)
            .cloned()
            .unwrap_or_default();
        let gone = match &which {
            Sweep::Only(uids) => uids.contains(&owner),
            Sweep::AllBut(live, listed_at) => {
                let made = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
                !live.contains(&owner) && made.is_some_and(|m| m < *listed_at)
            }
        };
        if !gone {
            continue;
        }
        let name = job.name_any();
        if let Err(e) = jobs_api.delete(&name, &DeleteParams::background()).await
            && !matches!(&e, kube::Error::Api(a) if a.code == 404)
        {
            tracing::warn!(job = %name, error = %e, "verify: deleting the Job of a deleted store");
            continue;
        }
        if let Err(e) = access::delete_mirror(&ctx.client, home, &name, Some(&owner)).await {
            tracing::warn!(secret = %name, error = %e, "verify: deleting a deleted store's Secret copy");
        }
    }
}

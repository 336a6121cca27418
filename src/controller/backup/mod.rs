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
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use self::plan::{Observed, Plan};
use super::backup_policy::{lookup_policy, lookup_store};
use super::{Context, MANAGER, Result, apply_own_status, error_policy, instrumented};
use crate::crd::backup::{Backup, BackupPhase, SourcePhase};
use crate::crd::backup_policy::{BackupPolicy, CopyMethod};
use crate::crd::common::Failure;
use crate::crd::labels;
use crate::crd::store::BackupStoreSpec;
use crate::jobs::mover::{StoreTarget, mirror_keys};
use crate::jobs::{self, MAX_NAME};
use crate::metrics::{FinishedRun, PolicyLabels};
use crate::volume::VolumeSnapshot;

const CONTROLLER: &str = "backup";

fn by_backup(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{}={}", labels::BACKUP, jobs::label_value(name)))
}

/// Copies a cluster store's Secrets into the Backup's namespace (a pod can only reference
/// Secrets of its own namespace). The copy is owned by the Backup and goes with it.
async fn mirror_cluster_secrets(
    client: &Client,
    backup: &Backup,
    spec: &BackupStoreSpec,
) -> Result<std::result::Result<String, Failure>> {
    let ns = backup.namespace().unwrap_or_default();
    let mirror = jobs::name(&[&backup.name_any(), "store"], MAX_NAME);
    mirror_store_secrets(
        client,
        spec,
        None,
        &ns,
        &mirror,
        jobs::policy_labels(&backup.spec.policy_ref.name, "store-credentials"),
        Some(backup.controller_owner_ref(&()).expect("stored object")),
    )
    .await
}

/// Copies the Secrets a store names (password, S3 credentials, CA bundle) into one Secret
/// `name` in `target_ns` under [`mirror_keys`], for mover pods there. `default_ns` is where
/// Secret references without a namespace live (a namespaced BackupStore's own namespace);
/// `None` for a ClusterBackupStore, whose references must name their namespace. Returns
/// the Secret's name, or why the store's Secrets cannot be read.
pub(crate) async fn mirror_store_secrets(
    client: &Client,
    spec: &BackupStoreSpec,
    default_ns: Option<&str>,
    target_ns: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<std::result::Result<String, Failure>> {
    match read_store_secrets(client, spec, default_ns).await? {
        Err(f) => Ok(Err(f)),
        Ok(data) => {
            write_store_secret(client, data, target_ns, name, labels, owner).await?;
            Ok(Ok(name.to_string()))
        }
    }
}

/// The values a store's mirror Secret holds, read from the Secrets the store names (see
/// [`mirror_store_secrets`]), or why they cannot be read.
pub(crate) async fn read_store_secrets(
    client: &Client,
    spec: &BackupStoreSpec,
    default_ns: Option<&str>,
) -> Result<std::result::Result<BTreeMap<String, k8s_openapi::ByteString>, Failure>> {
    let mut data = BTreeMap::new();
    let read = |secret_ns: Option<&String>, name: &str, key: &str, into: &str, optional: bool| {
        let secret_ns = secret_ns.cloned().or(default_ns.map(str::to_string));
        let (name, key, into) = (name.to_string(), key.to_string(), into.to_string());
        async move {
            let Some(secret_ns) = secret_ns else {
                return Err(Failure {
                    reason: "InvalidStore".into(),
                    message: format!("ClusterBackupStore Secret {name:?} must name its namespace"),
                });
            };
            let secret = Api::<Secret>::namespaced(client.clone(), &secret_ns)
                .get_opt(&name)
                .await
                .map_err(|e| Failure {
                    reason: "SecretNotReadable".into(),
                    message: format!("Secret {secret_ns}/{name}: {e}"),
                })?;
            let value = secret.and_then(|s| s.data).and_then(|mut d| d.remove(&key));
            match value {
                Some(v) => Ok(Some((into, v))),
                None if optional => Ok(None),
                None => Err(Failure {
                    reason: "SecretNotFound".into(),
                    message: format!("Secret {secret_ns}/{name} has no key {key:?}"),
                }),
            }
        }
    };
    let pw = &spec.repository_password;
    let mut wanted = vec![
        read(
            pw.namespace.as_ref(),
            &pw.name,
            &pw.key,
            mirror_keys::PASSWORD,
            false,
        )
        .await,
    ];
    if let Some(c) = &spec.s3.credentials {
        wanted.push(
            read(
                c.namespace.as_ref(),
                &c.name,
                c.access_key_id_key(),
                mirror_keys::ACCESS_KEY_ID,
                false,
            )
            .await,
        );
        wanted.push(
            read(
                c.namespace.as_ref(),
                &c.name,
                c.secret_access_key_key(),
                mirror_keys::SECRET_ACCESS_KEY,
                false,
            )
            .await,
        );
        wanted.push(
            read(
                c.namespace.as_ref(),
                &c.name,
                c.session_token_key(),
                mirror_keys::SESSION_TOKEN,
                true,
            )
            .await,
        );
    }
    if let Some(ca) = &spec.s3.ca_bundle {
        wanted.push(
            read(
                ca.namespace.as_ref(),
                &ca.name,
                &ca.key,
                mirror_keys::CA,
                false,
            )
            .await,
        );
    }
    for w in wanted {
        match w {
            Ok(Some((k, v))) => {
                data.insert(k, v);
            }
            Ok(None) => {}
            Err(f) => return Ok(Err(f)),
        }
    }
    Ok(Ok(data))
}

/// Writes a store's mirror Secret (server-side apply, so a repeat changes nothing).
pub(crate) async fn write_store_secret(
    client: &Client,
    data: BTreeMap<String, k8s_openapi::ByteString>,
    target_ns: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(target_ns.to_string()),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), target_ns)
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// Which mover permissions a namespace needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoverAccess {
    /// Report progress on run objects only (volumes, databases).
    Basic,
    /// Also read the namespace's objects (manifest backups).
    Read,
    /// Also create and change objects (manifest restores into a sandbox or target).
    Restore,
}

/// The ServiceAccount movers run as in `ns`, bound by RoleBindings to the ClusterRoles
/// the chart installs. The controller never writes Role rules itself, so it needs no
/// more than `bind` on those ClusterRoles (least privilege, no RBAC escalation).
pub async fn ensure_mover_rbac(ctx: &Context, ns: &str, access: MoverAccess) -> Result<()> {
    let client = &ctx.client;
    let cfg = &ctx.config;
    let sa_name = cfg.mover_service_account.clone();
    let pp = PatchParams::apply(MANAGER).force();
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        labels: Some(BTreeMap::from([
            (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
            (labels::NAME.to_string(), "lifeboat".to_string()),
            (labels::COMPONENT.to_string(), "mover".to_string()),
        ])),
        ..ObjectMeta::default()
    };
    let sa = ServiceAccount {
        metadata: meta(&sa_name),
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .patch(&sa_name, &pp, &Patch::Apply(&sa))
        .await?;
    let mut roles = vec![cfg.mover_cluster_role.clone()];
    if matches!(access, MoverAccess::Read | MoverAccess::Restore) {
        roles.push(cfg.mover_read_cluster_role.clone());
    }
    if access == MoverAccess::Restore {
        roles.push(cfg.mover_restore_cluster_role.clone());
    }
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), ns);
    for role in roles {
        let binding = RoleBinding {
            metadata: meta(&role),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: role.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: sa_name.clone(),
                namespace: Some(ns.into()),
                ..Subject::default()
            }]),
        };
        bindings.patch(&role, &pp, &Patch::Apply(&binding)).await?;
    }
    Ok(())
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
async fn maintenance_busy(client: &Client, repository: &str, own: &str) -> Result<bool> {
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
        .any(|j| j.name_any() != own && plan::job_finished(j).is_none()))
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

/// Whether this step of the run talks to the repository: while it runs (unless it
/// cannot start), and after it finished while retention is still to be applied.
fn needs_store(backup: &Backup, policy: &BackupPolicy, phase: BackupPhase, blocked: bool) -> bool {
    if !phase.is_finished() {
        return !blocked;
    }
    let retention_done = backup.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == plan::RETENTION_APPLIED
                && (c.reason == "Applied" || c.reason == "RetentionFailed")
        })
    });
    !policy.spec.retention.is_empty() && !retention_done
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
        let found = lookup_store(ctx, policy).await?;
        start_blocker = found.state.blocker(&policy.spec.store_ref.name, &ns);
        if needs_store(backup, policy, phase, start_blocker.is_some())
            && let Some((spec, cluster)) = found.spec
        {
            let mirror = match cluster {
                None => None,
                Some(_) => match mirror_cluster_secrets(client, backup, &spec).await? {
                    Ok(m) => Some(m),
                    Err(f) => {
                        start_blocker = Some(f);
                        None
                    }
                },
            };
            if start_blocker.is_none() {
                store = Some(StoreTarget::from_spec(&spec, mirror.as_deref()));
            }
        }
        if phase == BackupPhase::Pending && start_blocker.is_none() {
            let access = if policy.spec.sources.manifests.is_some() {
                MoverAccess::Read
            } else {
                MoverAccess::Basic
            };
            let level = access as u8;
            if ctx.rbac_due(&ns, level) {
                ensure_mover_rbac(ctx, &ns, access).await?;
                ctx.rbac_done(&ns, level);
            }
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
        let job_name = job.name_any();
        let seen_finished = |pods: &[Pod]| {
            pods.iter().any(|p| {
                p.labels().get("job-name") == Some(&job_name)
                    && matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
        };
        if plan::job_finished(job).is_some() && !seen_finished(&pods) {
            let fresh = pods_api
                .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                .await?
                .items;
            pods.retain(|p| p.labels().get("job-name") != Some(&job_name));
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
    apply(backup, &plan, ctx).await?;
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
        .owns(Api::<PersistentVolumeClaim>::all(client.clone()), ours)
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

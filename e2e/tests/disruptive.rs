//! Scenarios that take the operator down (run alone, after the other tests: `e2e/test`
//! has a stage for them): a controller killed mid-run adopts the running Jobs, finishes
//! the Backup and creates no duplicate; a mover Job that vanished fails its source with a
//! reason instead of leaving the Backup Running; a controller that takes over while
//! objects are being deleted still serves new ones.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{OPERATOR_NS, Protected, restic_json};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use lifeboat::crd::backup::{Backup, BackupPhase, SourcePhase};
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

const RUN: Duration = Duration::from_secs(180);

/// Stops every controller replica at once, SIGKILL-style (grace period 0).
async fn kill_controller(client: &kube::Client) -> anyhow::Result<i32> {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NS);
    let replicas = deploys
        .get("lifeboat-controller")
        .await?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    scale_controller(client, 0).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
    let lp = ListParams::default().labels("app.kubernetes.io/component=controller");
    pods.delete_collection(
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
        &lp,
    )
    .await?;
    wait_for("controller pods gone", Duration::from_secs(60), || async {
        Ok(pods.list(&lp).await?.items.is_empty().then_some(()))
    })
    .await?;
    Ok(replicas)
}

/// Sets the controller Deployment's replica count (without waiting for the pods).
async fn scale_controller(client: &kube::Client, replicas: i32) -> anyhow::Result<()> {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NS);
    deploys
        .patch(
            "lifeboat-controller",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await?;
    Ok(())
}

async fn start_controller(client: &kube::Client, replicas: i32) -> anyhow::Result<()> {
    scale_controller(client, replicas).await?;
    common::operator_ready(client, Duration::from_secs(90)).await
}

fn policy(p: &Protected, cron: &str) -> serde_json::Value {
    json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": cron},
                 "sources": {"volumes": [{"pvcName": "data", "copyMethod": "Direct"}],
                             "databases": [{"name": "pg", "engine": "postgres",
                                            "host": common::env("LIFEBOAT_TEST_PG_HOST"),
                                            "port": common::env("LIFEBOAT_TEST_PG_PORT").parse::<u16>().unwrap(),
                                            "database": p.db, "credentials": {"name": "pg-login"}}]}}})
}

async fn running_with_jobs(p: &Protected, backup: &str, jobs: usize) -> anyhow::Result<()> {
    let backups: Api<Backup> = p.ns.api();
    let job_api: Api<Job> = p.ns.api();
    let lp = ListParams::default().labels(&format!("lifeboat.dev/backup={backup}"));
    wait_for(
        &format!("{backup} running with {jobs} mover Jobs"),
        RUN,
        || async {
            let b = backups.get_opt(backup).await?;
            let running =
                b.and_then(|b| b.status).and_then(|s| s.phase) == Some(BackupPhase::Running);
            let n = job_api.list(&lp).await?.items.len();
            Ok((running && n >= jobs).then_some(()))
        },
    )
    .await
}

/// Both scenarios in one test so that they never overlap (each stops the operator).
#[tokio::test]
#[ignore = "needs e2e/local"]
async fn controller_outages_lose_nothing_and_duplicate_nothing() -> anyhow::Result<()> {
    let p = Protected::create("ops-outage").await?;
    let client = p.ns.client.clone();
    // Big enough that movers are still at work when the controller dies.
    p.pvc_with(
        "data",
        json!({}),
        "head -c 150000000 /dev/urandom > /data/big.bin; echo ok > /data/small.txt",
    )
    .await?;
    p.store_ready("s3").await?;

    // 1. Killed mid-run (and down across a schedule slot): adopt, finish, no duplicates.
    p.apply(policy(&p, "* * * * *")).await?;
    let backups: Api<Backup> = p.ns.api();
    let first = wait_for("the first scheduled Backup", RUN, || async {
        Ok(backups
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .next()
            .and_then(|b| b.metadata.name))
    })
    .await?;
    running_with_jobs(&p, &first, 2).await?;
    let replicas = kill_controller(&client).await?;
    // Movers carry on without the controller; stay down past the next slot.
    tokio::time::sleep(Duration::from_secs(70)).await;
    start_controller(&client, replicas).await?;
    let done = p.backup_finished(&first, RUN).await?;
    let st = done.status.clone().unwrap();
    ensure!(
        st.phase == Some(BackupPhase::Succeeded),
        "adopted run: {:?} {:?}",
        st.phase,
        st.sources
    );
    let jobs: Api<Job> = p.ns.api();
    let lp = ListParams::default().labels(&format!("lifeboat.dev/backup={first}"));
    let movers: Vec<String> = jobs
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("lifeboat.dev/job-type"))
                .map(String::as_str)
                == Some("backup")
        })
        .filter_map(|j| j.metadata.name)
        .collect();
    ensure!(
        movers.len() == 2,
        "one mover Job per source, got {movers:?}"
    );
    let snaps = restic_json(
        &p.bucket,
        &p.prefix,
        &["snapshots", "--tag", &format!("backup={first}")],
    )?;
    ensure!(
        snaps.as_array().map(Vec::len) == Some(2),
        "one snapshot per source: {snaps}"
    );
    // The slot that passed while the controller was down ran once (late), never twice.
    let policies: Api<lifeboat::crd::backup_policy::BackupPolicy> = p.ns.api();
    policies
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedule": {"suspend": true}}})),
        )
        .await?;
    let all = backups.list(&Default::default()).await?.items;
    let slots: Vec<_> = all
        .iter()
        .filter_map(|b| b.spec.scheduled_time.clone())
        .collect();
    let unique: BTreeSet<_> = slots.iter().map(|t| t.0).collect();
    ensure!(slots.len() == unique.len(), "a slot ran twice: {slots:?}");
    // The slot that passed while the controller was down is either run late, once, or
    // (concurrencyPolicy Forbid: the first run still looked active at restart) skipped
    // with a recorded reason. Never silently lost, never twice.
    let skips = if slots.len() >= 2 {
        0
    } else {
        p.warnings_once(
            "BackupPolicy",
            "shop",
            "BackupSkipped",
            Duration::from_secs(10),
        )
        .await?
        .into_iter()
        .filter(|w| w.starts_with("BackupSkipped"))
        .count()
    };
    ensure!(
        slots.len() >= 2 || skips >= 1,
        "the slot missed while down was neither run late nor recorded as skipped: {slots:?}"
    );

    // 2. A mover Job that vanished while the controller was away fails its source.
    for b in &all {
        p.backup_finished(b.metadata.name.as_deref().unwrap(), RUN)
            .await?;
    }
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "vanishing"},
        "spec": {"policyRef": {"name": "shop"}}}))
        .await?;
    running_with_jobs(&p, "vanishing", 2).await?;
    let replicas = kill_controller(&client).await?;
    let victim = jobs
        .list(
            &ListParams::default().labels("lifeboat.dev/backup=vanishing,lifeboat.dev/source=data"),
        )
        .await?
        .items
        .into_iter()
        .next()
        .and_then(|j| j.metadata.name)
        .context("the volume's mover Job")?;
    jobs.delete(&victim, &DeleteParams::background()).await?;
    start_controller(&client, replicas).await?;
    let b = p.backup_finished("vanishing", RUN).await?;
    let st = b.status.unwrap();
    let data = st
        .sources
        .iter()
        .find(|s| s.name == "data")
        .context("volume source")?;
    ensure!(
        data.phase == SourcePhase::Failed,
        "volume source: {:?}",
        data.phase
    );
    ensure!(
        data.failure.as_ref().unwrap().reason == "JobVanished",
        "reason {:?}",
        data.failure
    );
    ensure!(
        st.phase == Some(BackupPhase::PartiallyFailed),
        "phase {:?}",
        st.phase
    );
    p.cleanup().await
}

/// A controller that takes over while objects are being deleted (a failover during a
/// namespace's teardown) must still serve new objects. The caches once passed references
/// to the controllers, which looked the object up when they read them: one deleted in
/// between stalled that subscription for good (src/controller/cache.rs). A start is when
/// that was likeliest: the cache passes on every listed object at once, before the
/// controllers read any.
#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_controller_taking_over_during_deletions_still_serves_new_objects() -> anyhow::Result<()>
{
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::coordination::v1::Lease;
    use lifeboat::crd::backup_policy::BackupPolicy;
    use lifeboat_e2e::testing::{TestNs, create};

    const N: usize = 150;
    let ns = TestNs::create("ops-takeover").await?;
    let client = ns.client.clone();
    common::require_operator(&client).await?;
    let policies: Api<BackupPolicy> = ns.api();
    let backups: Api<Backup> = ns.api();
    let policy = |name: &str| {
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name},
            "spec": {"storeRef": {"name": "nowhere"}, "schedule": {"cron": "0 3 * * *"},
                     "sources": {"manifests": {}}}})
    };
    let backup = |name: &str| {
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": name},
            "spec": {"policyRef": {"name": "nowhere"}}})
    };
    futures::stream::iter(0..N)
        .map(|i| {
            let (policies, backups) = (policies.clone(), backups.clone());
            let name = format!("doomed-{i}");
            let (p, b) = (policy(&name), backup(&name));
            async move {
                create(&policies, p).await?;
                create(&backups, b).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;

    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    let holder = || async {
        anyhow::Ok(
            leases
                .get_opt("lifeboat-controller")
                .await?
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty()),
        )
    };
    let old = holder().await?.context("no controller holds the lease")?;
    let replicas = kill_controller(&client).await?;
    scale_controller(&client, replicas).await?;
    // The new leader lists everything right after it takes the lease: delete from then on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while holder().await?.is_none_or(|h| h == old) {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no new controller took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    futures::stream::iter(0..N)
        .map(|i| {
            let (policies, backups) = (policies.clone(), backups.clone());
            let name = format!("doomed-{i}");
            async move {
                policies.delete(&name, &DeleteParams::default()).await?;
                backups.delete(&name, &DeleteParams::default()).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await?;
    common::operator_ready(&client, Duration::from_secs(90)).await?;

    create(&policies, policy("after")).await?;
    create(&backups, backup("after")).await?;
    wait_for(
        "the policy made after the takeover to be reconciled",
        Duration::from_secs(30),
        || async {
            let p = policies.get("after").await?;
            Ok(p.status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .filter(|c| c.reason == "StoreNotFound"))
        },
    )
    .await?;
    wait_for(
        "the Backup made after the takeover to be reconciled",
        Duration::from_secs(30),
        || async { Ok(backups.get("after").await?.status.and_then(|s| s.phase)) },
    )
    .await?;
    ns.delete().await
}

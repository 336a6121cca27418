//! Issue 11 item 7: Lifeboat deletes a drill sandbox only by the namespace UID its run
//! recorded (`status.sandboxUid`), never a namespace because it carries the sandbox labels.
//! A cluster administrator stands in for anyone who may label namespaces (a namespace
//! self-service tool): namespace editors cannot (proven in `security.rs`, row 2). The
//! run's finalizer removes the sandbox of a deleted run, also when the run goes with its
//! whole namespace. docs/security.md's row 7 names this test.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{Protected, backup_now, completed, drill_json};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use lifeboat::crd::dr_drill::{DrillOutcome, DrillRun, DrillRunSpec};
use lifeboat::crd::restore::LocalRef;
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

/// The sweep runs every minute; the kept sandbox's TTL is a second.
const SWEEP: Duration = Duration::from_secs(150);

fn policy() -> serde_json::Value {
    json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
                 "sources": {"volumes": [{"pvcName": "data", "copyMethod": "Direct"}]}}})
}

/// A drill whose check fails, keeping the sandbox for `ttl`.
fn failing_drill(ttl: &str) -> serde_json::Value {
    drill_json(
        "keep",
        json!({"policyRef": {"name": "shop"}, "schedule": {"cron": "0 0 1 1 *"},
               "sandbox": {"keepOnFailure": true, "ttl": ttl},
               "checks": [{"name": "missing", "files": {"volume": "data", "exist": ["missing.txt"]}}]}),
    )
}

async fn start(p: &Protected, run: &str) -> anyhow::Result<()> {
    let api: Api<DrillRun> = p.ns.api();
    let mut r = DrillRun::new(
        run,
        DrillRunSpec {
            drill_ref: LocalRef {
                name: "keep".into(),
            },
            ..DrillRunSpec::default()
        },
    );
    r.metadata.namespace = Some(p.name().into());
    api.create(&PostParams::default(), &r).await?;
    Ok(())
}

/// Waits until the run recorded its sandbox; returns (name, UID, run UID).
async fn recorded(p: &Protected, run: &str) -> anyhow::Result<(String, String, String)> {
    let api: Api<DrillRun> = p.ns.api();
    wait_for(
        &format!("{run} to record its sandbox"),
        Duration::from_secs(120),
        || async {
            let r = api.get(run).await?;
            let s = r.status.clone().unwrap_or_default();
            Ok(s.sandbox_namespace
                .zip(s.sandbox_uid)
                .map(|(n, u)| (n, u, r.metadata.uid.clone().unwrap_or_default())))
        },
    )
    .await
}

/// A namespace made to look exactly like `run`'s sandbox (every label and annotation the
/// controller sets), under another name: only its UID differs.
async fn lookalike(
    nss: &Api<Namespace>,
    p: &Protected,
    run: &str,
    run_uid: &str,
) -> anyhow::Result<String> {
    let name = format!("{}-{run}-lookalike", p.name());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {
        "name": name,
        "labels": {"lifeboat.dev/sandbox": "true", "app.kubernetes.io/managed-by": "lifeboat",
                   "app.kubernetes.io/name": "lifeboat", "lifeboat.dev/drill": "keep",
                   "lifeboat.dev/drill-run": run},
        "annotations": {"lifeboat.dev/drill-run-ref": format!("{}/{run}", p.name()),
                        "lifeboat.dev/drill-run-uid": run_uid,
                        "lifeboat.dev/allow-restore-from": p.name()}}}))?;
    nss.create(&PostParams::default(), &ns).await?;
    Ok(name)
}

/// `name` exists and is not being deleted.
async fn alive(nss: &Api<Namespace>, name: &str) -> anyhow::Result<bool> {
    Ok(nss
        .get_opt(name)
        .await?
        .is_some_and(|n| n.metadata.deletion_timestamp.is_none()))
}

/// The namespace `name` with `uid` is gone or being deleted.
async fn going(nss: &Api<Namespace>, name: &str, uid: &str) -> anyhow::Result<bool> {
    Ok(nss.get_opt(name).await?.is_none_or(|n| {
        n.metadata.uid.as_deref() != Some(uid) || n.metadata.deletion_timestamp.is_some()
    }))
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn only_the_recorded_sandbox_is_swept_and_a_deleted_runs_sandbox_goes() -> anyhow::Result<()>
{
    let p = Protected::create("sbuid").await?;
    let nss: Api<Namespace> = Api::all(p.ns.client.clone());
    let labels_of = |n: &Namespace| n.metadata.labels.clone().unwrap_or_default();
    p.pvc_with("data", json!({}), "printf 'hello\\n' > /data/hello.txt")
        .await?;
    p.store_ready("s3").await?;
    p.apply(policy()).await?;
    backup_now(&p, "b1").await?;

    // The sweep: a kept sandbox past its TTL goes; a namespace carrying the same labels
    // and annotations, naming the same run, stays.
    p.apply(failing_drill("1s")).await?;
    start(&p, "r1").await?;
    let (sb1, uid1, run1) = recorded(&p, "r1").await?;
    let fake1 = lookalike(&nss, &p, "r1", &run1).await?;
    let r1 = completed(&p, "r1").await?;
    let s1 = r1.status.clone().context("status")?;
    ensure!(s1.outcome == Some(DrillOutcome::Failed), "{s1:?}");
    wait_for("the sweep to delete r1's kept sandbox", SWEEP, || async {
        Ok(going(&nss, &sb1, &uid1).await?.then_some(()))
    })
    .await?;
    ensure!(
        alive(&nss, &fake1).await?,
        "the sweep deleted {fake1}, a namespace that only looked like r1's sandbox"
    );
    ensure!(labels_of(&nss.get(&fake1).await?)["lifeboat.dev/sandbox"] == "true");

    // The finalizer: a run deleted with its namespace takes its recorded sandbox along,
    // and only that; the namespace is not stranded by the finalizer.
    p.apply(failing_drill("1h")).await?;
    start(&p, "r2").await?;
    let (sb2, uid2, run2) = recorded(&p, "r2").await?;
    let fake2 = lookalike(&nss, &p, "r2", &run2).await?;
    let r2 = completed(&p, "r2").await?;
    ensure!(
        r2.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "drillruns.lifeboat.dev/cleanup"),
        "r2 holds the finalizer: {:?}",
        r2.metadata.finalizers
    );
    ensure!(alive(&nss, &sb2).await?, "r2's sandbox is kept for an hour");
    let tenant = p.name().to_string();
    p.cleanup().await?;
    wait_for(
        "the tenant namespace and r2's sandbox to go",
        Duration::from_secs(180),
        || async {
            let tenant_gone = nss.get_opt(&tenant).await?.is_none();
            Ok((tenant_gone && going(&nss, &sb2, &uid2).await?).then_some(()))
        },
    )
    .await?;
    let mut survivors = BTreeMap::new();
    for f in [&fake1, &fake2] {
        survivors.insert(f.clone(), alive(&nss, f).await?);
        nss.delete(f, &DeleteParams::default()).await?;
    }
    ensure!(
        survivors.values().all(|a| *a),
        "lookalikes deleted: {survivors:?}"
    );
    Ok(())
}

//! Drills over the restore points the repository keeps (issue 13, item 4) against the
//! local environment with the operator installed: a policy whose Backup history limit is
//! 1 and whose repository holds three restore points.
//!
//! - an `Oldest` drill restores the oldest point, which has no Backup object any more,
//!   from the store (`source.storeRef`) and passes;
//! - an `Unverified` drill run twice restores two different points;
//! - the DRDrill's status shows its coverage of the retained points (source `Catalog`),
//!   and the controller serves `lifeboat_drill_restore_points_verified_ratio`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{Protected, backup_now, drill_json, env, run_drill};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use lifeboat::crd::backup::Backup;
use lifeboat::crd::dr_drill::{DRDrill, DrillOutcome, DrillRun, RetainedSource};
use lifeboat::crd::store::BackupStore;
use lifeboat::drill::report::sha256;
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

const FILL: &str = "printf 'hello\\n' > /data/hello.txt";

fn policy_json() -> serde_json::Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {
            "storeRef": {"name": "s3"},
            "schedule": {"cron": "0 0 1 1 *"},
            // One Backup object kept: the older restore points live in the repository only.
            "successfulBackupsHistoryLimit": 1,
            "sources": {"volumes": [{"pvcName": "data", "copyMethod": "Direct"}]}
        }
    })
}

fn drill(name: &str, strategy: &str) -> serde_json::Value {
    drill_json(
        name,
        json!({
            "policyRef": {"name": "shop"},
            "schedule": {"cron": "0 0 1 1 *"},
            "restorePoint": {"strategy": strategy},
            "checks": [{"name": "files", "files": {"volume": "data", "exist": ["hello.txt"],
                "checksums": [{"path": "hello.txt", "sha256": sha256(b"hello\n")}]}}]
        }),
    )
}

/// The `/metrics` text of the controller replica that exports the namespace's drills.
async fn drill_metrics(client: &kube::Client, ns: &str) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), common::OPERATOR_NS);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
        .await?;
    for p in list.items {
        let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let out = Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "5",
                &format!("http://{ip}:8080/metrics"),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains(&format!("namespace=\"{ns}\"")) && text.contains("lifeboat_drill_") {
            return Ok(text);
        }
    }
    anyhow::bail!("no controller replica exports drill metrics for {ns}")
}

fn gauge(m: &str, name: &str, ns: &str, drill: &str) -> Option<f64> {
    let prefix = format!("{name}{{namespace=\"{ns}\",drill=\"{drill}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn point(r: &DrillRun) -> anyhow::Result<lifeboat::crd::dr_drill::DrillRestorePoint> {
    r.status
        .as_ref()
        .and_then(|s| s.restore_point.clone())
        .context("restore point recorded")
}

fn passed(r: &DrillRun) -> anyhow::Result<()> {
    let s = r.status.as_ref().context("status")?;
    ensure!(
        s.outcome == Some(DrillOutcome::Passed),
        "{:?}: {:?}",
        s.outcome,
        s.failure
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn drills_choose_among_the_restore_points_the_repository_keeps() -> anyhow::Result<()> {
    let p = Protected::create("drill-points").await?;
    let ns = p.name().to_string();
    p.pvc_with("data", json!({"app": "shop"}), FILL).await?;
    p.store_ready("s3").await?;
    p.apply(policy_json()).await?;
    for b in ["b1", "b2", "b3"] {
        backup_now(&p, b).await?;
    }
    // The history limit removes the Backup objects of b1 and b2; the store's catalog
    // still lists three restore points of the identity.
    let backups: Api<Backup> = p.ns.api();
    wait_for("b1 and b2 pruned", Duration::from_secs(60), || async {
        let names: Vec<String> = backups
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|b| b.metadata.name)
            .collect();
        Ok((names == ["b3"]).then_some(()))
    })
    .await?;
    let identity = format!("{ns}/shop");
    let stores: Api<BackupStore> = p.ns.api();
    wait_for(
        "the catalog lists 3 points",
        Duration::from_secs(120),
        || async {
            let s = stores.get("s3").await?;
            let n = s
                .status
                .and_then(|s| s.catalog)
                .and_then(|c| c.policies.into_iter().find(|i| i.policy == identity))
                .map(|i| i.restore_points);
            Ok((n == Some(3)).then_some(()))
        },
    )
    .await?;

    // Oldest: b1, read from the store (no Backup object), and it passes.
    p.apply(drill("oldest", "Oldest")).await?;
    let t0 = Instant::now();
    let r = run_drill(&p, "oldest", "oldest-1").await?;
    let took = t0.elapsed();
    passed(&r)?;
    let rp = point(&r)?;
    ensure!(
        rp.backup == "b1"
            && rp.from_store == Some(true)
            && rp.candidates == Some(RetainedSource::Catalog),
        "{rp:?}"
    );
    let rto = r
        .status
        .as_ref()
        .and_then(|s| s.rto.as_ref()?.measured.clone());
    println!("FIGURE oldest drill of a store point: run {took:?}, RTO {rto:?}");

    // Unverified, twice: two different points (the oldest first).
    p.apply(drill("unverified", "Unverified")).await?;
    let r1 = run_drill(&p, "unverified", "unverified-1").await?;
    passed(&r1)?;
    let r2 = run_drill(&p, "unverified", "unverified-2").await?;
    passed(&r2)?;
    let (a, b) = (point(&r1)?.backup, point(&r2)?.backup);
    ensure!(a == "b1" && b == "b2", "first {a}, second {b}");

    // The drill's coverage: 2 of 3 retained points verified, from the catalog.
    let drills: Api<DRDrill> = p.ns.api();
    let cov = wait_for("coverage 2/3", Duration::from_secs(60), || async {
        let d = drills.get("unverified").await?;
        let st = d.status.unwrap_or_default();
        Ok(st
            .coverage
            .filter(|c| c.verified == 2)
            .map(|c| (c, st.verified_restore_points)))
    })
    .await?;
    let (c, record) = cov;
    ensure!(
        c.retained == 3 && c.source == RetainedSource::Catalog,
        "{c:?}"
    );
    ensure!(record == ["b1", "b2"], "{record:?}");
    let metrics = wait_for("the coverage gauges", Duration::from_secs(60), || async {
        let m = drill_metrics(&p.ns.client, &ns).await.unwrap_or_default();
        let ratio = gauge(
            &m,
            "lifeboat_drill_restore_points_verified_ratio",
            &ns,
            "unverified",
        );
        Ok(ratio.filter(|r| (r - 2.0 / 3.0).abs() < 1e-9).map(|_| m))
    })
    .await?;
    ensure!(
        gauge(
            &metrics,
            "lifeboat_drill_restore_points_retained",
            &ns,
            "unverified"
        ) == Some(3.0),
        "{metrics}"
    );
    ensure!(
        gauge(
            &metrics,
            "lifeboat_drill_restore_points_verified_ratio",
            &ns,
            "oldest"
        )
        .is_some_and(|r| (r - 1.0 / 3.0).abs() < 1e-9),
        "the oldest drill verified b1 only"
    );
    // `lifeboat status` shows the catalog's figures.
    let out = Command::new(env("LIFEBOAT_BIN"))
        .args(["status", "-n", &ns])
        .env("KUBECONFIG", env("KUBECONFIG"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains("2/3 retained"), "{text}");
    p.cleanup().await
}

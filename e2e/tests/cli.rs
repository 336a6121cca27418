//! Operator client scenarios (issue 6) against the local environment with the operator
//! installed from the chart: `lifeboat status` (table and JSON), `lifeboat backup now
//! --wait` (success exits 0; a failing source exits 64 and is named), and a user without
//! rights (a ServiceAccount token in a kubeconfig of its own) getting a clear 403, a
//! viewer seeing status but refused `backup now`. (CRDs missing is a unit test with a fake
//! API server: the shared cluster keeps its CRDs.)

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{Protected, env};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use lifeboat::crd::backup::{Backup, BackupPhase};
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

/// The freshly built `lifeboat` with the given KUBECONFIG.
fn lifeboat(kubeconfig: &str, args: &[&str]) -> anyhow::Result<Output> {
    Command::new(env("LIFEBOAT_BIN"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("LIFEBOAT_REPOSITORY")
        .output()
        .context("running lifeboat")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn policy(name: &str, db_secret: &str, p: &Protected) -> serde_json::Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name},
        "spec": {
            "storeRef": {"name": "s3"},
            // Once a year: only the runs the test starts happen.
            "schedule": {"cron": "0 0 1 1 *"},
            "sources": {
                "volumes": [{"pvcName": "data", "copyMethod": "Direct"}],
                "databases": [{"name": "pg", "engine": "postgres", "host": env("LIFEBOAT_TEST_PG_HOST"),
                    "port": env("LIFEBOAT_TEST_PG_PORT").parse::<u16>().unwrap(), "database": p.db,
                    "credentials": {"name": db_secret}}]
            },
            "objectives": {"rpo": "1h"}
        }
    })
}

/// A kubeconfig for the environment's API server that authenticates as a new
/// ServiceAccount `sa` of the test's namespace.
async fn kubeconfig_for(p: &Protected, sa: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let sas: Api<ServiceAccount> = p.ns.api();
    sas.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": sa}}))?,
    )
    .await?;
    lifeboat_e2e::testing::kubeconfig_for_service_account(&p.ns.client, p.name(), sa).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn status_and_backup_now_drive_the_operator() -> anyhow::Result<()> {
    let p = Protected::create("cli-status").await?;
    let admin = env("KUBECONFIG");
    let ns = p.name().to_string();
    p.pvc_with("data", json!({}), "seq 1 50000 > /data/numbers.txt")
        .await?;
    p.store_ready("s3").await?;
    p.apply(policy("shop", "pg-login", &p)).await?;
    p.policy_condition("shop", "Ready", "True", "Ready", Duration::from_secs(60))
        .await?;

    // backup now --wait: created, followed (plain lines: stderr is not a terminal), exit 0.
    let out = lifeboat(
        &admin,
        &[
            "backup",
            "now",
            "shop",
            "-n",
            &ns,
            "--wait",
            "--timeout",
            "3m",
        ],
    )?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    ensure!(
        out.status.success(),
        "backup now --wait failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    let created = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("backup.lifeboat.dev/"))
        .and_then(|l| l.split_once(' '))
        .map(|(n, _)| n.to_string())
        .with_context(|| format!("no `created` line: {stdout}"))?;
    ensure!(
        created.starts_with("shop-manual-") && created.len() == "shop-manual-".len() + 14,
        "name {created}"
    );
    ensure!(
        stdout.contains(&format!("Backup {created} Succeeded")),
        "summary: {stdout}"
    );
    // The narration starts at whatever phase the first poll sees: a fast backup may
    // already be Succeeded by then, so no particular intermediate phase is required.
    ensure!(
        stderr.contains(&format!("Backup {created}: "))
            && stderr.contains("volume data: Succeeded")
            && stderr.contains("database pg: Succeeded"),
        "progress lines: {stderr}"
    );
    let backups: Api<Backup> = p.ns.api();
    let b = backups.get(&created).await?;
    ensure!(
        b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Succeeded),
        "{:?}",
        b.status
    );

    // status: the policy row with its last backup, success, RPO against the objective.
    p.policy_condition(
        "shop",
        "RPOMet",
        "True",
        "WithinObjective",
        Duration::from_secs(30),
    )
    .await?;
    let out = lifeboat(&admin, &["status", "-n", &ns])?;
    let table = text(&out.stdout);
    ensure!(out.status.success(), "status: {}", text(&out.stderr));
    let header = table
        .lines()
        .find(|l| l.trim_start().starts_with("POLICY"))
        .with_context(|| format!("no policy table:\n{table}"))?;
    let cols: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    ensure!(
        cols == [
            "POLICY",
            "STORE",
            "READY",
            "LAST BACKUP",
            "PHASE",
            "LAST SUCCESS",
            "RPO",
            "RPO OBJECTIVE",
            "NEXT RUN"
        ],
        "columns {cols:?}"
    );
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("shop "))
        .with_context(|| format!("no row for shop:\n{table}"))?;
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    ensure!(
        cells[0] == "shop" && cells[1] == "s3" && cells[2] == "True" && cells[4] == "Succeeded",
        "row {cells:?}"
    );
    ensure!(
        cells[3].ends_with(" ago") && cells[5].ends_with(" ago"),
        "ages {cells:?}"
    );
    ensure!(cells[7] == "1h met", "objective {cells:?}");
    ensure!(cells[8].starts_with("in "), "next run {cells:?}");
    ensure!(
        table.contains("s3     BackupStore")
            || table.lines().any(|l| l.trim_start().starts_with("s3  ")),
        "store table:\n{table}"
    );

    // -o json parses and says the same.
    let out = lifeboat(&admin, &["status", "-n", &ns, "-o", "json"])?;
    ensure!(
        out.status.success(),
        "status -o json: {}",
        text(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).context("status JSON")?;
    ensure!(doc["kind"] == "Status", "{doc}");
    let pol = &doc["namespaces"][0]["policies"][0];
    ensure!(
        pol["name"] == "shop" && pol["lastBackup"]["name"] == created.as_str(),
        "{pol}"
    );
    ensure!(pol["lastBackup"]["phase"] == "Succeeded", "{pol}");
    ensure!(
        pol["rpo"]["met"] == true && pol["rpo"]["objective"] == "1h",
        "{pol}"
    );
    ensure!(
        pol["rpo"]["measuredSeconds"]
            .as_f64()
            .is_some_and(|s| s < 600.0),
        "{pol}"
    );
    ensure!(
        doc["namespaces"][0]["stores"][0]["ready"]["status"] == "True",
        "{doc}"
    );
    // -A lists this namespace too.
    let out = lifeboat(&admin, &["status", "-A", "-o", "json"])?;
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).context("status -A JSON")?;
    ensure!(
        all["namespaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["name"] == ns.as_str())),
        "-A misses {ns}"
    );

    // A failing source: exit 64, the source and its reason named.
    p.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-wrong"},
        "stringData": {"username": env("LIFEBOAT_TEST_PG_USER"), "password": "not-the-password"}}),
    )
    .await?;
    p.apply(policy("broken", "pg-wrong", &p)).await?;
    let out = lifeboat(
        &admin,
        &[
            "backup",
            "now",
            "broken",
            "-n",
            &ns,
            "--wait",
            "--timeout",
            "3m",
        ],
    )?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    ensure!(
        out.status.code() == Some(64),
        "want exit 64, got {:?}:\n{stdout}\n{stderr}",
        out.status
    );
    ensure!(
        stdout.contains("PartiallyFailed")
            && stderr.contains("lifeboat: error: Backup broken-manual-"),
        "{stdout}\n{stderr}"
    );
    ensure!(
        stderr.contains("database pg: "),
        "failed source named: {stderr}"
    );

    // A policy that does not exist: exit 41 with the name.
    let out = lifeboat(&admin, &["backup", "now", "nope", "-n", &ns])?;
    ensure!(out.status.code() == Some(41), "{:?}", out.status);
    ensure!(
        text(&out.stderr).contains(&format!("BackupPolicy nope not found in namespace {ns}")),
        "{}",
        text(&out.stderr)
    );
    p.cleanup().await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn users_without_rights_get_a_clear_403() -> anyhow::Result<()> {
    let p = Protected::create("cli-rbac").await?;
    let ns = p.name().to_string();
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
                 "sources": {"volumes": [{"pvcName": "data"}]}}}),
    )
    .await?;

    // No rights at all: status names the verb and resource it was refused.
    let nobody = kubeconfig_for(&p, "nobody").await?;
    let out = lifeboat(nobody.path().to_str().unwrap(), &["status"])?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(52),
        "want 52, got {:?}: {stderr}",
        out.status
    );
    ensure!(
        stderr.contains(&format!(
            "permission denied: you may not list backuppolicies.lifeboat.dev in namespace {ns}"
        )),
        "{stderr}"
    );
    ensure!(
        stderr.contains(&format!("system:serviceaccount:{ns}:nobody")),
        "the API server's words are kept: {stderr}"
    );

    // The built-in view role (the chart aggregates lifeboat-view into it): status works,
    // backup now is refused with the create it lacks.
    let viewer = kubeconfig_for(&p, "viewer").await?;
    p.apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "viewer-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}]}),
    )
    .await?;
    let cfg = viewer.path().to_str().unwrap().to_string();
    let out = wait_for("the viewer's rights", Duration::from_secs(30), || {
        let cfg = cfg.clone();
        async move {
            let out = lifeboat(&cfg, &["status", "-o", "json"])?;
            Ok(out.status.success().then_some(out))
        }
    })
    .await?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        doc["namespaces"][0]["policies"][0]["name"] == "shop",
        "the viewer sees the policy: {doc}"
    );
    ensure!(
        doc["namespaces"][0]["stores"][0]["name"] == "s3",
        "and the store: {doc}"
    );
    let out = lifeboat(&cfg, &["backup", "now", "shop"])?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(52),
        "want 52, got {:?}: {stderr}",
        out.status
    );
    ensure!(
        stderr.contains(&format!(
            "permission denied: you may not create backups.lifeboat.dev in namespace {ns}"
        )) && stderr.contains("edit"),
        "{stderr}"
    );
    p.cleanup().await
}

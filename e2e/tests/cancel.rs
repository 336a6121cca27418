//! Cancelling runs through the real controller, as a namespace editor with the CLI: a
//! Backup cancelled while its mover uploads (phase Cancelled, its pods gone, no snapshot
//! in the repository as stock `restic` lists it, the next backup succeeds), a Restore
//! cancelled while its mover fills a new PVC (the PVC removed), and the editor refused
//! the same request in a namespace not theirs; a DrillRun cancelled mid-restore through
//! its DRDrill (outcome Cancelled, report written, sandbox gone, the next run passes). Prints the time from the request to phase
//! Cancelled and to the pods being gone.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::*;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use lifeboat::crd::backup::{Backup, BackupPhase, BackupSpec, PolicyRef};
use lifeboat::crd::dr_drill::{DrillOutcome, DrillPhase, DrillRun, DrillRunSpec};
use lifeboat::crd::restore::LocalRef;
use lifeboat::crd::restore::{Restore, RestorePhase};
use lifeboat_e2e::testing::{TestNs, wait_for};
use serde_json::json;

const RUN: Duration = Duration::from_secs(240);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The freshly built `lifeboat` with the given KUBECONFIG.
fn lifeboat_cli(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<Output> {
    Command::new(env("LIFEBOAT_BIN"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("LIFEBOAT_REPOSITORY")
        .output()
        .context("running lifeboat")
}

/// ServiceAccount `editor` bound to the built-in `edit` ClusterRole in the test's
/// namespace; a kubeconfig that authenticates as it.
async fn editor(p: &Protected) -> anyhow::Result<tempfile::NamedTempFile> {
    let sas: Api<ServiceAccount> = p.ns.api();
    sas.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "editor"}}))?,
    )
    .await?;
    p.apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "editor-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": p.name()}]}),
    )
    .await?;
    let kc =
        lifeboat_e2e::testing::kubeconfig_for_service_account(&p.ns.client, p.name(), "editor")
            .await?;
    // The binding and the aggregation of Lifeboat's kinds into `edit` take a moment.
    let path = kc.path().to_path_buf();
    let ns = p.name().to_string();
    wait_for("the editor's rights", Duration::from_secs(30), || async {
        let out = Command::new("kubectl")
            .args(["auth", "can-i", "patch", "backups.lifeboat.dev", "-n", &ns])
            .env("KUBECONFIG", &path)
            .output()?;
        Ok((text(&out.stdout).trim() == "yes").then_some(()))
    })
    .await?;
    Ok(kc)
}

async fn pods_of(p: &Protected, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = p.ns.api();
    Ok(pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

async fn running_pod(p: &Protected, selector: &str) -> anyhow::Result<String> {
    wait_for(&format!("a running pod {selector}"), RUN, || async {
        Ok(pods_of(p, selector)
            .await?
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .and_then(|p| p.metadata.name))
    })
    .await
}

/// Waits until no pod matches; returns how long after `since` that was seen.
async fn pods_gone(p: &Protected, selector: &str, since: Instant) -> anyhow::Result<Duration> {
    wait_for(&format!("pods {selector} gone"), RUN, || async {
        Ok(pods_of(p, selector)
            .await?
            .is_empty()
            .then(|| since.elapsed()))
    })
    .await
}

async fn events(p: &Protected, kind: &str, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let events: Api<k8s_openapi::api::events::v1::Event> = p.ns.api();
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect())
}

fn snapshots(p: &Protected) -> anyhow::Result<Vec<serde_json::Value>> {
    let v = restic_json(&p.bucket, &p.prefix, &["snapshots", "--no-lock"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs e2e/local and the operator"]
async fn an_editor_cancels_a_backup_and_a_restore_cleanly() -> anyhow::Result<()> {
    let p = Protected::create("cancel").await?;
    let other = TestNs::create("cancel-other").await?;
    let result = scenario(&p, &other).await;
    p.cleanup().await?;
    other.delete().await?;
    result
}

async fn scenario(p: &Protected, other: &TestNs) -> anyhow::Result<()> {
    let ns = p.name().to_string();
    // Big enough that the mover is still uploading when the cancel comes.
    p.pvc_with(
        "data",
        json!({}),
        "head -c 600000000 /dev/urandom > /data/big.bin; echo ok > /data/small.txt",
    )
    .await?;
    p.store_ready("s3").await?;
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 3 1 1 *"},
                 "sources": {"volumes": [{"pvcName": "data", "copyMethod": "Direct"}]},
                 "retention": {"keepLast": 1}}}),
    )
    .await?;
    let kc = editor(p).await?;
    let backups: Api<Backup> = p.ns.api();

    // 1. A backup cancelled by the editor while its mover uploads.
    let mut b = Backup::new(
        "b1",
        BackupSpec {
            policy_ref: PolicyRef {
                name: "shop".into(),
            },
            ..BackupSpec::default()
        },
    );
    b.metadata.namespace = Some(ns.clone());
    backups.create(&PostParams::default(), &b).await?;
    let sel = "lifeboat.dev/backup=b1";
    let pod = running_pod(p, sel).await?;
    // The mover holds its lock in the repository: it is at work.
    wait_for("the mover's lock", RUN, || async {
        let out = restic(&p.bucket, &p.prefix, &["list", "locks", "--no-lock"]).unwrap_or_default();
        Ok((!out.trim().is_empty()).then_some(()))
    })
    .await?;
    ensure!(snapshots(p)?.is_empty(), "no snapshot before the cancel");
    let asked = Instant::now();
    let out = lifeboat_cli(kc.path(), &["backup", "cancel", "b1", "-n", &ns, "--wait"])?;
    let to_phase = asked.elapsed();
    ensure!(
        out.status.success(),
        "backup cancel: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    ensure!(
        text(&out.stdout).contains(&format!("Backup {ns}/b1 cancelled")),
        "{}",
        text(&out.stdout)
    );
    let gone = pods_gone(p, sel, asked).await?;
    eprintln!(
        "backup cancel -> phase Cancelled: {:.1} s, -> mover pod {pod} gone: {:.1} s",
        to_phase.as_secs_f64(),
        gone.as_secs_f64()
    );
    let b1 = backups.get("b1").await?;
    let st = b1.status.clone().context("b1 status")?;
    ensure!(st.phase == Some(BackupPhase::Cancelled), "{st:?}");
    ensure!(
        st.restore_point_time.is_none(),
        "a cancelled run is no restore point"
    );
    let src = &st.sources[0];
    ensure!(
        src.failure.as_ref().map(|f| f.reason.as_str()) == Some("Cancelled")
            && src.snapshot_id.is_none(),
        "{src:?}"
    );
    let complete = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Complete")
        .context("Complete")?;
    ensure!(complete.reason == "Cancelled", "{complete:?}");
    let ev = wait_for(
        "a BackupCancelled Event",
        Duration::from_secs(30),
        || async {
            let ev = events(p, "Backup", "b1").await?;
            Ok(ev
                .iter()
                .any(|(t, r)| t == "Normal" && r == "BackupCancelled")
                .then_some(ev))
        },
    )
    .await?;
    ensure!(
        !ev.iter()
            .any(|(t, r)| t == "Warning" && r == "SourceFailed"),
        "{ev:?}"
    );
    // Nothing partial committed: restic lists no snapshot.
    ensure!(snapshots(p)?.is_empty(), "{:?}", snapshots(p)?);
    // No retention ran for the cancelled run.
    ensure!(
        !st.conditions.iter().any(|c| c.type_ == "RetentionApplied"),
        "{:?}",
        st.conditions
    );
    // The record of a cancelled run stays (a later reconcile changes nothing).
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(backups.get("b1").await?.status == Some(st.clone()));

    // 2. The next backup succeeds (the killed mover's lock does not stand in the way),
    // with its retention; restic lists exactly its snapshot.
    let b2 = backup_now(p, "b2").await?;
    let listed = snapshots(p)?;
    ensure!(listed.len() == 1, "{listed:?}");
    let id = b2.status.as_ref().unwrap().sources[0]
        .snapshot_id
        .clone()
        .unwrap();
    ensure!(
        listed[0]["id"]
            .as_str()
            .is_some_and(|s| s.starts_with(&id) || id.starts_with(s)),
        "{listed:?} vs {id}"
    );

    // 3. A restore cancelled by the editor while its mover fills a new PVC.
    let restores: Api<Restore> = p.ns.api();
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": "r1"},
        "spec": {"source": {"backupRef": {"name": "b2"}},
                 "volumes": {"rename": {"data": "data-restored"}}}}),
    )
    .await?;
    let rsel = "lifeboat.dev/restore=r1";
    running_pod(p, rsel).await?;
    let pvcs: Api<PersistentVolumeClaim> = p.ns.api();
    ensure!(pvcs.get_opt("data-restored").await?.is_some());
    let asked = Instant::now();
    let out = lifeboat_cli(kc.path(), &["restore", "cancel", "r1", "-n", &ns, "--wait"])?;
    let to_phase = asked.elapsed();
    ensure!(
        out.status.success(),
        "restore cancel: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let gone = pods_gone(p, rsel, asked).await?;
    let pvc_gone = wait_for("the partly restored PVC to go", RUN, || async {
        Ok(pvcs
            .get_opt("data-restored")
            .await?
            .is_none()
            .then(|| asked.elapsed()))
    })
    .await?;
    eprintln!(
        "restore cancel -> phase Cancelled: {:.1} s, -> mover pod gone: {:.1} s, -> PVC gone: {:.1} s",
        to_phase.as_secs_f64(),
        gone.as_secs_f64(),
        pvc_gone.as_secs_f64()
    );
    let r1 = restores.get("r1").await?;
    let rst = r1.status.context("r1 status")?;
    ensure!(rst.phase == Some(RestorePhase::Cancelled), "{rst:?}");
    ensure!(
        rst.sources[0].failure.as_ref().map(|f| f.reason.as_str()) == Some("Cancelled"),
        "{:?}",
        rst.sources
    );
    // The source PVC was never touched.
    ensure!(pvcs.get_opt("data").await?.is_some());

    // 4. A finished run: the CLI says so and changes nothing.
    let out = lifeboat_cli(kc.path(), &["backup", "cancel", "b2", "-n", &ns])?;
    ensure!(
        out.status.success() && text(&out.stdout).contains("had already finished"),
        "{}",
        text(&out.stdout)
    );
    let b2_after = backups.get("b2").await?;
    ensure!(
        !b2_after
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("lifeboat.dev/cancel"),
        "a finished run is not annotated"
    );

    // 5. A drill run cancelled by the editor while its Restore fills the sandbox.
    drill_cancelled(p, &kc).await?;

    // 6. The editor of this namespace cannot cancel in another one: the CLI and a raw
    // patch with the editor's token are refused by the API server.
    let foreign: Api<Backup> = other.api();
    let mut fb = b.clone();
    fb.metadata.namespace = Some(other.name.clone());
    fb.metadata.name = Some("theirs".into());
    fb.metadata.resource_version = None;
    fb.metadata.uid = None;
    foreign.create(&PostParams::default(), &fb).await?;
    let out = lifeboat_cli(
        kc.path(),
        &["backup", "cancel", "theirs", "-n", &other.name],
    )?;
    ensure!(!out.status.success(), "{}", text(&out.stdout));
    ensure!(
        text(&out.stderr).contains("forbidden") || text(&out.stderr).contains("403"),
        "{}",
        text(&out.stderr)
    );
    let cfg = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kc.path())?,
        &Default::default(),
    )
    .await?;
    let as_editor: Api<Backup> = Api::namespaced(kube::Client::try_from(cfg)?, &other.name);
    let refused = as_editor
        .patch(
            "theirs",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"lifeboat.dev/cancel": "true"}}})),
        )
        .await;
    ensure!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403),
        "{refused:?}"
    );
    let theirs = foreign.get("theirs").await?;
    ensure!(
        !theirs
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("lifeboat.dev/cancel")
    );
    Ok(())
}

/// A DrillRun stopped mid-restore with `lifeboat drill cancel` as the editor (who may not
/// change the DrillRun itself: the request is an annotation on the DRDrill): outcome
/// `Cancelled` at `Restoring`, its report written (the chain records the run), its sandbox
/// removed with the half-filled volume, and the drill's next run passes.
async fn drill_cancelled(p: &Protected, kc: &tempfile::NamedTempFile) -> anyhow::Result<()> {
    let ns = p.name().to_string();
    p.apply(drill_json(
        "weekly",
        json!({"policyRef": {"name": "shop"}, "schedule": {"cron": "0 0 1 1 *"},
               "checks": [{"name": "small", "files": {"volume": "data", "exist": ["small.txt"]}}]}),
    ))
    .await?;
    let runs: Api<DrillRun> = p.ns.api();
    let mut r = DrillRun::new(
        "d1",
        DrillRunSpec {
            drill_ref: LocalRef {
                name: "weekly".into(),
            },
            ..DrillRunSpec::default()
        },
    );
    r.metadata.namespace = Some(ns.clone());
    runs.create(&PostParams::default(), &r).await?;
    let sandbox = wait_for("the drill restoring", RUN, || async {
        let s = runs.get("d1").await?.status.unwrap_or_default();
        Ok(s.sandbox_namespace
            .filter(|_| s.phase == Some(DrillPhase::Restoring)))
    })
    .await?;
    let in_sandbox: Api<Pod> = Api::namespaced(p.ns.client.clone(), &sandbox);
    wait_for("the restore's mover running", RUN, || async {
        Ok(in_sandbox
            .list(&ListParams::default().labels("lifeboat.dev/restore=d1"))
            .await?
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .map(|_| ()))
    })
    .await?;
    let asked = Instant::now();
    let out = lifeboat_cli(kc.path(), &["drill", "cancel", "d1", "-n", &ns, "--wait"])?;
    let to_done = asked.elapsed();
    ensure!(
        out.status.success() && text(&out.stdout).contains(&format!("DrillRun {ns}/d1 cancelled")),
        "drill cancel: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(p.ns.client.clone());
    ensure!(
        namespaces.get_opt(&sandbox).await?.is_none(),
        "the sandbox {sandbox} is gone once the run completed"
    );
    eprintln!(
        "drill cancel -> run completed (report written, sandbox gone): {:.1} s",
        to_done.as_secs_f64()
    );
    let st = runs.get("d1").await?.status.context("d1 status")?;
    ensure!(st.outcome == Some(DrillOutcome::Cancelled), "{st:?}");
    let f = st.failure.as_ref().context("failure")?;
    ensure!(
        (f.step.as_str(), f.failure.reason.as_str()) == ("Restoring", "Cancelled"),
        "{f:?}"
    );
    ensure!(st.report.is_some(), "the cancelled run is reported: {st:?}");
    ensure!(
        events(p, "DrillRun", "d1")
            .await?
            .iter()
            .any(|(t, r)| t == "Normal" && r == "DrillRunCancelled"),
        "a DrillRunCancelled Event"
    );
    // The drill goes on: its next run passes.
    let next = run_drill(p, "weekly", "d2").await?;
    let o = next.status.and_then(|s| s.outcome);
    ensure!(o == Some(DrillOutcome::Passed), "{o:?}");
    Ok(())
}

//! Repository locks left by killed movers, through the real controller: a backup mover is
//! killed with SIGKILL while it uploads (its lock stays in the repository); the controller
//! removes that lock once the pod has failed, says so with an Event on the store, and the
//! run's retention (which needs an exclusive lock) and the next backup's retention and
//! prune succeed with no human action. A live lock of another tool (this test process,
//! holding a shared lock the way restic would) survives the controller's sweeps.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use lifeboat::crd::backup::{Backup, BackupSpec, PolicyRef};
use lifeboat::crd::store::BackupStore;
use lifeboat::repo::{Repo, RepoOptions, S3Config, S3Credentials, Secret, Storage};
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

const RUN: Duration = Duration::from_secs(240);

fn open_repo(bucket: &str) -> anyhow::Result<Repo> {
    let mut cfg = S3Config::new(
        Some(env("LIFEBOAT_TEST_S3_ENDPOINT")),
        bucket.to_string(),
        "repo".into(),
    );
    cfg.path_style = true;
    cfg.region = Some(env("LIFEBOAT_TEST_S3_REGION"));
    cfg.credentials = S3Credentials::Static {
        access_key_id: env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
        secret_access_key: Secret::new(env("LIFEBOAT_TEST_S3_SECRET_KEY")),
        session_token: None,
    };
    let mut opts = RepoOptions::new(Storage::S3(Box::new(cfg)));
    opts.runtime = Some(tokio::runtime::Handle::current());
    Ok(Repo::open(&opts, &Secret::new(REPO_PASSWORD))?)
}

/// The repository's locks as (id, host name, holder).
async fn locks(bucket: &str) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
    let b = bucket.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let _rt = handle.enter();
        Ok(open_repo(&b)?
            .locks()?
            .into_iter()
            .map(|l| (l.id, l.info.hostname, l.info.holder))
            .collect())
    })
    .await?
}

async fn create_backup(p: &Protected, name: &str) -> anyhow::Result<()> {
    let api: Api<Backup> = p.ns.api();
    let mut b = Backup::new(
        name,
        BackupSpec {
            policy_ref: PolicyRef {
                name: "shop".into(),
            },
            ..BackupSpec::default()
        },
    );
    b.metadata.namespace = Some(p.name().into());
    api.create(&PostParams::default(), &b).await?;
    Ok(())
}

async fn retention_applied(p: &Protected, name: &str) -> anyhow::Result<String> {
    let api: Api<Backup> = p.ns.api();
    wait_for(&format!("{name}: RetentionApplied=True"), RUN, || async {
        let b = api.get(name).await?;
        Ok(b.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "RetentionApplied" && c.status == "True")
                .map(|c| c.message.clone())
        }))
    })
    .await
}

/// Normal and Warning Events about the store `s3`, as `reason: note`.
async fn store_events(p: &Protected) -> anyhow::Result<Vec<String>> {
    let events: Api<k8s_openapi::api::events::v1::Event> = p.ns.api();
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("BackupStore") && r.name.as_deref() == Some("s3")
            })
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs e2e/local and the operator"]
async fn a_killed_movers_lock_is_removed_and_retention_runs() -> anyhow::Result<()> {
    let p = Protected::create("stale-lock").await?;
    let result = scenario(&p).await;
    p.cleanup().await?;
    result
}

async fn scenario(p: &Protected) -> anyhow::Result<()> {
    // Big enough that the mover is still uploading when it is killed.
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

    // 1. The first run's mover, killed while it holds its lock.
    create_backup(p, "b1").await?;
    let pods: Api<Pod> = p.ns.api();
    let lp = ListParams::default().labels("lifeboat.dev/backup=b1,lifeboat.dev/source=data");
    let (pod, uid) = wait_for("b1's mover pod running", RUN, || async {
        Ok(pods
            .list(&lp)
            .await?
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .and_then(|p| Some((p.metadata.name?, p.metadata.uid?))))
    })
    .await?;
    let bucket = p.bucket.clone();
    let dead_lock = wait_for("the mover's lock", RUN, || async {
        Ok(locks(&bucket)
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|(_, host, holder)| {
                *host == pod && holder.as_deref().is_some_and(|h| h.ends_with(&uid))
            })
            .map(|(id, _, _)| id))
    })
    .await?;
    let pid_file = std::path::Path::new(&env("LIFEBOAT_LOCAL_DIR"))
        .join("node/pods")
        .join(&uid)
        .join("mover.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?
        .trim()
        .parse()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .context("killing the mover")?;
    let killed = Instant::now();
    eprintln!("killed mover {pod} (PID {pid}) holding lock {dead_lock}");

    // 2. The controller removes the lock (once the pod has failed) with no human action.
    wait_for("the killed mover's lock to be removed", RUN, || async {
        let left = locks(&bucket).await?;
        Ok((!left.iter().any(|(id, _, _)| *id == dead_lock)).then_some(()))
    })
    .await?;
    let took = killed.elapsed();
    eprintln!("kill -> lock removed: {:.1} s", took.as_secs_f64());
    let events = wait_for(
        "an Event naming the removed lock",
        Duration::from_secs(30),
        || async {
            let ev = store_events(p).await?;
            Ok(ev
                .iter()
                .any(|e| {
                    e.starts_with("StaleLockRemoved")
                        && e.contains(&pod)
                        && e.contains(&dead_lock[..12])
                })
                .then_some(ev))
        },
    )
    .await?;
    eprintln!("{events:?}");

    // 3. The run (its mover retried) and its retention, then the next run with its
    // retention and prune, all without anyone unlocking.
    let b1 = p.backup_finished("b1", RUN).await?;
    eprintln!("b1: {:?}", b1.status.as_ref().and_then(|s| s.phase));
    if b1.status.as_ref().and_then(|s| s.phase)
        == Some(lifeboat::crd::backup::BackupPhase::Succeeded)
    {
        let m = retention_applied(p, "b1").await?;
        eprintln!("b1 retention: {m}");
    }
    backup_now(p, "b2").await?;
    let m = retention_applied(p, "b2").await?;
    eprintln!("b2 retention: {m}");
    ensure!(
        locks(&bucket).await?.is_empty(),
        "locks left after the runs: {:?}",
        locks(&bucket).await?
    );

    // 4. A live lock of another tool is never touched: hold a shared lock here (this
    // host, this PID, no holder) across a run that wakes the store's sweep.
    let b = bucket.clone();
    let handle = tokio::runtime::Handle::current();
    let guard = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let _rt = handle.enter();
        let repo = open_repo(&b)?;
        let g = repo.lock(false)?;
        Ok((repo, g))
    })
    .await??;
    let foreign = guard.1.id();
    let held = jiff::Timestamp::now();
    backup_now(p, "b3").await?;
    let stores: Api<BackupStore> = p.ns.api();
    wait_for(
        "a store listing after the foreign lock was taken",
        RUN,
        || async {
            let s = stores.get("s3").await?;
            let listed = s
                .status
                .and_then(|s| s.catalog)
                .and_then(|c| c.list_time)
                .is_some_and(|t| t.0 > held);
            Ok(listed.then_some(()))
        },
    )
    .await?;
    // One more reconcile's worth of time for the sweep that follows the listing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let left = locks(&bucket).await?;
    ensure!(
        left.iter().any(|(id, _, _)| *id == foreign),
        "the foreign lock {foreign} was removed: {left:?}"
    );
    ensure!(
        !store_events(p)
            .await?
            .iter()
            .any(|e| e.contains(&foreign[..12])),
        "an Event claims the foreign lock"
    );
    // Removing the lock file blocks on S3: not on this async thread.
    tokio::task::spawn_blocking(move || drop(guard)).await?;
    Ok(())
}

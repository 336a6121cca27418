//! Immutable stores (S3 Object Lock) through the real controller: a store asking for
//! immutability on a bucket without Object Lock is not Ready (`ObjectLockNotEnabled`, a
//! Warning Event); on a bucket with it, a policy's backup writes every repository object
//! with the store's retention, its retention run (which extends retention on a locked
//! store) succeeds, and the store's own credentials cannot remove a pack.

mod common;

use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::ObjectLockMode;
use common::*;
use kube::Api;
use lifeboat::crd::backup::Backup;
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

fn immutable(p: &Protected, name: &str, bucket: &str) -> serde_json::Value {
    let mut store = p.store_json(name, bucket, "repo-pass");
    store["spec"]["immutability"] = json!({"mode": "Governance", "retention": "1d"});
    store
}
/// Removes a lock-enabled bucket: every version and marker, bypassing Governance (the
/// test's identity is SeaweedFS's admin).
async fn remove_locked_bucket(bucket: &str) {
    let s3 = s3().await;
    loop {
        let Ok(page) = s3.list_object_versions().bucket(bucket).send().await else {
            return;
        };
        let all: Vec<(String, String)> = page
            .versions()
            .iter()
            .filter_map(|v| Some((v.key()?.to_string(), v.version_id()?.to_string())))
            .chain(
                page.delete_markers()
                    .iter()
                    .filter_map(|m| Some((m.key()?.to_string(), m.version_id()?.to_string()))),
            )
            .collect();
        let mut deleted = 0;
        for (k, v) in &all {
            deleted += s3
                .delete_object()
                .bucket(bucket)
                .key(k)
                .version_id(v)
                .bypass_governance_retention(true)
                .send()
                .await
                .is_ok() as usize;
        }
        if deleted == 0 {
            break;
        }
    }
    let _ = s3.delete_bucket().bucket(bucket).send().await;
}

#[tokio::test]
#[ignore = "needs e2e/local and the operator"]
async fn an_immutable_store_locks_what_backups_write() -> anyhow::Result<()> {
    let p = Protected::create("immut").await?;
    let locked = format!("{}-lock", p.bucket);
    s3().await
        .create_bucket()
        .bucket(&locked)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .context("creating the lock-enabled bucket")?;
    let result = scenario(&p, &locked).await;
    remove_locked_bucket(&locked).await;
    p.cleanup().await?;
    result
}

async fn scenario(p: &Protected, locked: &str) -> anyhow::Result<()> {
    // The namespace's ordinary bucket has no Object Lock: the store says so.
    p.apply(immutable(p, "unlocked", &p.bucket)).await?;
    p.store_not_ready("unlocked", "ObjectLockNotEnabled", Duration::from_secs(90))
        .await?;
    let w = p
        .warnings_once(
            "BackupStore",
            "unlocked",
            "ObjectLockNotEnabled",
            Duration::from_secs(10),
        )
        .await?;
    ensure!(
        w.iter()
            .any(|e| e.starts_with("ObjectLockNotEnabled") && e.contains(&p.bucket)),
        "no Warning Event naming the bucket: {w:?}"
    );

    // On a lock-enabled bucket the store is Ready and a backup's objects are locked.
    p.apply(immutable(p, "s3", locked)).await?;
    p.store_ready("s3").await?;
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 3 * * *"},
                 "sources": {"databases": [{"name": "pg", "engine": "postgres",
                     "host": env("LIFEBOAT_TEST_PG_HOST"),
                     "port": env("LIFEBOAT_TEST_PG_PORT").parse::<u16>()?, "database": p.db,
                     "credentials": {"name": "pg-login"}}]},
                 "retention": {"keepLast": 2}}}),
    )
    .await?;
    backup_now(p, "first").await?;

    let s3 = s3().await;
    let listed = s3
        .list_objects_v2()
        .bucket(locked)
        .prefix("repo/")
        .send()
        .await?;
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .filter(|k| !k.starts_with("repo/locks/"))
        .collect();
    ensure!(
        keys.iter().any(|k| k.starts_with("repo/data/"))
            && keys.iter().any(|k| k.starts_with("repo/snapshots/")),
        "no packs or snapshots written: {keys:?}"
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs() as i64;
    for k in &keys {
        let head = s3.head_object().bucket(locked).key(k).send().await?;
        ensure!(
            head.object_lock_mode() == Some(&ObjectLockMode::Governance),
            "{k}: not locked ({:?})",
            head.object_lock_mode()
        );
        let until = head
            .object_lock_retain_until_date()
            .with_context(|| format!("{k}: no retain-until date"))?
            .secs();
        ensure!(
            until - now > 86_400 - 900,
            "{k}: retained only {} s",
            until - now
        );
    }

    // The credentials the store hands its movers cannot remove a pack's data.
    let pack = keys
        .iter()
        .find(|k| k.starts_with("repo/data/"))
        .context("a pack")?;
    let version = s3
        .head_object()
        .bucket(locked)
        .key(pack)
        .send()
        .await?
        .version_id()
        .context("a version ID")?
        .to_string();
    let refused = s3
        .delete_object()
        .bucket(locked)
        .key(pack)
        .version_id(&version)
        .send()
        .await;
    match refused {
        Ok(_) => anyhow::bail!("{pack}: a locked version was deleted"),
        Err(e) => ensure!(e.code() == Some("AccessDenied"), "{pack}: {:?}", e.code()),
    }
    // The backup's retention run (forget, prune, then the retention extension on this
    // locked store) succeeds; only then is the repository free for restic's check lock.
    let backups: Api<Backup> = p.ns.api();
    wait_for("retention applied", Duration::from_secs(150), || async {
        let b = backups.get("first").await?;
        let applied = b.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "RetentionApplied" && c.status == "True")
        });
        Ok(applied.then_some(()))
    })
    .await?;
    // Stock restic still reads the repository.
    restic(locked, "repo", &["check"])?;
    Ok(())
}

//! Immutable stores (S3 Object Lock) through the real controller: a store asking for
//! immutability on a bucket without Object Lock is not Ready (`ObjectLockNotEnabled`, a
//! Warning Event); on a bucket with it, a policy's backup writes every repository object
//! with the store's retention, its retention run (which extends retention on a locked
//! store) succeeds, and the store's own credentials cannot remove a pack. A drill on that
//! store records, in its run and its signed report, that its report step's attempt to
//! delete a pack version was refused; the report's objects (JSON, pages, signature) carry
//! the retention and their versions cannot be deleted either.

mod common;

use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{ObjectLockMode, ObjectLockRetentionMode};
use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use lifeboat::crd::backup::Backup;
use lifeboat::crd::dr_drill::{DrillOutcome, ImmutabilityResult};
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

/// The store's `retention: 1d` reached `k`: its retain-until date is about a day after
/// `now` (a quarter of an hour of slack for the time the test took to get here).
fn retained_about_a_day(k: &str, until: i64, now: i64) -> anyhow::Result<()> {
    ensure!(
        until - now > 86_400 - 900,
        "{k}: retained only {} s",
        until - now
    );
    Ok(())
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
    // The drill's anchor outlives the DRDrill by design; the test's goes with the test.
    let cms: Api<ConfigMap> = Api::namespaced(p.ns.client.clone(), OPERATOR_NS);
    let _ = cms
        .delete(
            &lifeboat::evidence::objects::anchor_name(p.name(), "shop-drill"),
            &Default::default(),
        )
        .await;
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
        retained_about_a_day(k, until, now)?;
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
    drill(p, locked).await
}

/// Whether deleting `key`'s current version (without bypass) is refused.
async fn version_delete_refused(bucket: &str, key: &str) -> anyhow::Result<()> {
    let s3 = s3().await;
    let version = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("HEAD {key}"))?
        .version_id()
        .with_context(|| format!("{key}: no version ID"))?
        .to_string();
    match s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .version_id(&version)
        .send()
        .await
    {
        Ok(_) => anyhow::bail!("{key}: a locked version was deleted"),
        Err(e) => ensure!(e.code() == Some("AccessDenied"), "{key}: {:?}", e.code()),
    }
    Ok(())
}

async fn drill(p: &Protected, locked: &str) -> anyhow::Result<()> {
    p.apply(drill_json(
        "shop-drill",
        json!({
            "policyRef": {"name": "shop"},
            "schedule": {"cron": "0 0 1 1 *"},
            "restore": {"databases": [{"source": "pg"}]},
            "checks": [{"name": "rows", "sql": {"database": "pg", "matchesBackup": true}}]
        }),
    ))
    .await?;
    let r = run_drill(p, "shop-drill", "shop-drill-1").await?;
    let s = r.status.clone().unwrap_or_default();
    ensure!(
        s.outcome == Some(DrillOutcome::Passed),
        "the drill failed: {:?}",
        s.failure
    );
    // The run records the refusal: which pack, which version, the S3 error code.
    let probe = s.immutability.clone().context("no immutability record")?;
    ensure!(
        probe.result == ImmutabilityResult::Refused
            && probe.code.as_deref() == Some("AccessDenied"),
        "{probe:?}"
    );
    let object = format!("repo/{}", probe.object.as_deref().context("no object")?);
    ensure!(object.starts_with("repo/data/"), "{probe:?}");
    let s3 = s3().await;
    let current = s3.head_object().bucket(locked).key(&object).send().await?;
    ensure!(
        current.version_id() == probe.version.as_deref(),
        "{object}: tried {:?}, current {:?}",
        probe.version,
        current.version_id()
    );
    // The signed report says the same.
    let rep = s.report.clone().context("no report")?;
    let key = format!(
        "repo/{}",
        rep.location
            .split_once("/repo/")
            .context("report location")?
            .1
    );
    let body = s3
        .get_object()
        .bucket(locked)
        .key(&key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    let report: serde_json::Value = serde_json::from_slice(&body)?;
    ensure!(
        report["immutability"] == serde_json::to_value(&probe)?,
        "report: {}",
        report["immutability"]
    );
    ensure!(
        rep.signature_location.as_deref() == Some(&format!("{}.sig", rep.location)),
        "{rep:?}"
    );
    let out = std::process::Command::new(env("LIFEBOAT_BIN"))
        .args([
            "drill",
            "verify-chain",
            "shop-drill",
            "-n",
            p.name(),
            "--controller-namespace",
            OPERATOR_NS,
        ])
        .output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success() && said.contains("VERIFIED: 1 report(s)"),
        "verify-chain: {said}"
    );

    // The report's objects are retained like the repository's, and the store's
    // credentials cannot delete their versions.
    let page = |k: &str| format!("repo/{}", report[k]["key"].as_str().unwrap_or_default());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs() as i64;
    for k in [
        key.clone(),
        page("page"),
        page("html"),
        format!("{key}.sig"),
    ] {
        let r = s3
            .get_object_retention()
            .bucket(locked)
            .key(&k)
            .send()
            .await
            .with_context(|| format!("GetObjectRetention {k}"))?;
        let r = r
            .retention()
            .with_context(|| format!("{k}: no retention"))?;
        ensure!(
            r.mode() == Some(&ObjectLockRetentionMode::Governance),
            "{k}: {:?}",
            r.mode()
        );
        let until = r
            .retain_until_date()
            .with_context(|| format!("{k}: no retain-until date"))?
            .secs();
        retained_about_a_day(&k, until, now)?;
        version_delete_refused(locked, &k).await?;
    }
    println!(
        "immutability step: {probe:?}; report objects retained: {key} and its pages, signature"
    );
    Ok(())
}

//! A store's scheduled verification (`spec.verify`) through the real controller: a store
//! verified every minute passes (`DataVerified=True`), then one byte of a data pack is
//! flipped in the bucket and the next run finds it (`DataVerified=False`,
//! `RepositoryCorrupted`, the pack named, a Warning Event), the Jobs ran in the
//! controller's namespace and not the tenant's, turning verification off clears its
//! status, and deleting the store removes its verify Job and Secret copy.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::*;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use lifeboat::crd::store::BackupStore;
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

/// A minute slot, the Job, and the controller noticing: well within this.
const VERIFY: Duration = Duration::from_secs(240);

/// The store's `DataVerified` condition once it says `want` (status, reason), with its
/// message.
async fn data_verified(p: &Protected, want: (&str, &str)) -> anyhow::Result<String> {
    let stores: Api<BackupStore> = p.ns.api();
    wait_for(&format!("DataVerified {want:?}"), VERIFY, || async {
        let s = stores.get("s3").await?;
        Ok(s.status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "DataVerified" && (c.status.as_str(), c.reason.as_str()) == want)
            .map(|c| c.message))
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local and the operator"]
async fn a_verified_store_finds_a_flipped_byte_on_its_next_run() -> anyhow::Result<()> {
    let p = Protected::create("verify").await?;
    let result = scenario(&p).await;
    p.cleanup().await?;
    result
}

async fn scenario(p: &Protected) -> anyhow::Result<()> {
    p.store_ready("s3").await?;
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
                 "sources": {"databases": [
                    {"name": "pg", "engine": "postgres", "host": env("LIFEBOAT_TEST_PG_HOST"),
                     "port": env("LIFEBOAT_TEST_PG_PORT").parse::<u16>()?, "database": p.db,
                     "credentials": {"name": "pg-login"}}]}}}),
    )
    .await?;
    backup_now(p, "shop-1").await?;

    // Every minute, all of the data.
    let stores: Api<BackupStore> = p.ns.api();
    let verify = |on: bool| {
        let v = if on {
            json!({"schedule": {"cron": "* * * * *"}, "readDataSubset": "100%"})
        } else {
            serde_json::Value::Null
        };
        json!({"spec": {"verify": v}})
    };
    stores
        .patch("s3", &PatchParams::default(), &Patch::Merge(verify(true)))
        .await?;
    let t = Instant::now();
    let ok = data_verified(p, ("True", "Verified")).await?;
    eprintln!(
        "first verification passed after {:.1} s: {ok}",
        t.elapsed().as_secs_f64()
    );
    ensure!(
        ok.contains("no damage") && !ok.starts_with("read 0 of"),
        "{ok}"
    );
    let v = stores.get("s3").await?.status.unwrap_or_default().verify;
    let v = v.context("status.verify")?;
    ensure!(
        v.last_result.as_deref() == Some("Passed") && v.last_passed_time.is_some(),
        "{v:?}"
    );
    ensure!(v.next_verify_time.is_some(), "{v:?}");
    // The verify Jobs run in the controller's namespace, not the tenant's.
    let tenant_jobs: Api<Job> = p.ns.api();
    let here = tenant_jobs
        .list(&ListParams::default().labels("lifeboat.dev/job-type=verify"))
        .await?;
    ensure!(
        here.items.is_empty(),
        "a verify Job in the tenant's namespace"
    );

    // One byte of a data pack flipped in the bucket.
    let s3 = s3().await;
    let listed = s3
        .list_objects_v2()
        .bucket(&p.bucket)
        .prefix(format!("{}/data/", p.prefix))
        .send()
        .await?;
    let key = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .next()
        .context("no data pack")?
        .to_string();
    let mut bytes = s3
        .get_object()
        .bucket(&p.bucket)
        .key(&key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes()
        .to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    s3.put_object()
        .bucket(&p.bucket)
        .key(&key)
        .body(bytes.into())
        .send()
        .await?;
    let pack = key.rsplit('/').next().unwrap_or_default();
    let t = Instant::now();
    let bad = data_verified(p, ("False", "RepositoryCorrupted")).await?;
    eprintln!(
        "damage found {:.1} s after the flip: {bad}",
        t.elapsed().as_secs_f64()
    );
    ensure!(
        bad.contains(&pack[..8]),
        "the message names pack {pack}: {bad}"
    );
    let w = p
        .warnings_once(
            "BackupStore",
            "s3",
            "DataVerificationFailed: RepositoryCorrupted",
            Duration::from_secs(30),
        )
        .await?;
    ensure!(
        w.iter()
            .any(|w| w.starts_with("DataVerificationFailed: RepositoryCorrupted")),
        "a Warning Event names the damage: {w:?}"
    );

    // Off: the status goes.
    stores
        .patch("s3", &PatchParams::default(), &Patch::Merge(verify(false)))
        .await?;
    wait_for("status.verify cleared", Duration::from_secs(60), || async {
        let st = stores.get("s3").await?.status.unwrap_or_default();
        Ok(
            (st.verify.is_none() && !st.conditions.iter().any(|c| c.type_ == "DataVerified"))
                .then_some(()),
        )
    })
    .await?;

    // On again, and the store deleted while a run is under way: its Job and the copy of
    // its Secrets in the controller's namespace go with it.
    stores
        .patch("s3", &PatchParams::default(), &Patch::Merge(verify(true)))
        .await?;
    let uid = stores.get("s3").await?.metadata.uid.context("uid")?;
    let home: Api<Job> = Api::namespaced(p.ns.client.clone(), OPERATOR_NS);
    let of_store = || async {
        let jobs = home
            .list(&ListParams::default().labels("lifeboat.dev/job-type=verify"))
            .await?
            .items;
        anyhow::Ok(
            jobs.into_iter()
                .filter(|j| {
                    j.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("lifeboat.dev/owner-uid"))
                        == Some(&uid)
                })
                .filter_map(|j| j.metadata.name)
                .collect::<Vec<_>>(),
        )
    };
    let running = wait_for("a verify Job of the store", VERIFY, || async {
        Ok(of_store().await?.into_iter().next())
    })
    .await?;
    stores.delete("s3", &Default::default()).await?;
    wait_for(
        "the deleted store's verify Jobs gone",
        Duration::from_secs(60),
        || async { Ok(of_store().await?.is_empty().then_some(())) },
    )
    .await?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(p.ns.client.clone(), OPERATOR_NS);
    wait_for("its Secret copy gone", Duration::from_secs(30), || async {
        Ok(secrets.get_opt(&running).await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

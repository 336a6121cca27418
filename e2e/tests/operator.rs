//! Operator-core scenarios (issue 4) against the local environment with the operator
//! installed from the chart (`e2e/local up && e2e/install-operator`): scheduled backups of
//! volumes (both copy methods) and databases that the stock restic CLI lists and restores,
//! retention, on-demand backups, and precise conditions for bad input (a Restore from a
//! store not probed yet says it waits).

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::{Protected, env, lifeboat, my, pg, restic, restic_json};
use kube::Api;
use kube::api::{Patch, PatchParams};
use lifeboat::crd::backup::{Backup, BackupPhase, SourceKind, SourcePhase};
use lifeboat::crd::backup_policy::BackupPolicy;
use lifeboat::crd::store::BackupStore;
use lifeboat_e2e::testing::wait_for;
use serde_json::json;

const RUN: Duration = Duration::from_secs(150);

/// A volume with known content and its own checksum list (verified after restores).
const FILL_DATA: &str = "mkdir -p /data/sub /data/empty-dir
seq 1 200000 > /data/numbers.txt
head -c 3000000 /dev/urandom > /data/sub/blob.bin
printf 'hello\\n' > /data/sub/hi.txt
ln -s numbers.txt /data/link
cd /data && find . -type f ! -name SHA256SUMS -exec sha256sum {} + > SHA256SUMS";

fn policy_json(p: &Protected) -> serde_json::Value {
    json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {
            "storeRef": {"name": "s3"},
            "schedule": {"cron": "* * * * *"},
            "sources": {
                "volumes": [
                    {"pvcName": "data", "copyMethod": "Snapshot"},
                    {"selector": {"matchLabels": {"tier": "logs"}}, "copyMethod": "Direct"}
                ],
                "databases": [
                    {"name": "pg", "engine": "postgres", "host": env("LIFEBOAT_TEST_PG_HOST"),
                     "port": env("LIFEBOAT_TEST_PG_PORT").parse::<u16>().unwrap(), "database": p.db,
                     "credentials": {"name": "pg-login"}},
                    {"name": "my", "engine": "mysql", "host": env("LIFEBOAT_TEST_MYSQL_HOST"),
                     "port": env("LIFEBOAT_TEST_MYSQL_PORT").parse::<u16>().unwrap(), "database": p.db,
                     "credentials": {"name": "my-login"}}
                ],
                "manifests": {}
            },
            "retention": {"keepLast": 1},
            "objectives": {"rpo": "10m"}
        }
    })
}

fn snapshot_of(b: &Backup, name: &str) -> anyhow::Result<String> {
    let s = b.status.as_ref().context("status")?;
    let src = s
        .sources
        .iter()
        .find(|x| x.name == name)
        .with_context(|| format!("source {name}"))?;
    ensure!(
        src.phase == SourcePhase::Succeeded,
        "{name}: {:?} {:?}",
        src.phase,
        src.failure
    );
    src.snapshot_id.clone().context("snapshot id")
}

const PG_CHECKSUM: &str =
    "SELECT count(*) || ':' || md5(string_agg(id || item, ',' ORDER BY id)) FROM orders";
const MY_CHECKSUM: &str =
    "SELECT CONCAT(COUNT(*), ':', MD5(GROUP_CONCAT(CONCAT(id, v) ORDER BY id))) FROM items";

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn scheduled_backups_restore_with_restic_and_retention_keeps_the_newest() -> anyhow::Result<()>
{
    let p = Protected::create("ops-sched").await?;
    p.pvc_with("data", json!({"app": "shop"}), FILL_DATA)
        .await?;
    p.pvc_with(
        "logs",
        json!({"tier": "logs"}),
        "printf 'one\\ntwo\\n' > /data/app.log",
    )
    .await?;
    p.store_ready("s3").await?;
    p.apply(policy_json(&p)).await?;

    // The one-minute schedule creates the first run; every source commits a snapshot.
    let first = p.first_scheduled_backup("shop", RUN).await?;
    let st = first.status.clone().unwrap();
    ensure!(
        st.phase == Some(BackupPhase::Succeeded),
        "first run: {:?} {:?}",
        st.phase,
        st.sources
    );
    let kinds: Vec<_> = st
        .sources
        .iter()
        .map(|s| (s.kind, s.name.as_str()))
        .collect();
    ensure!(
        kinds
            == [
                (SourceKind::Volume, "data"),
                (SourceKind::Volume, "logs"),
                (SourceKind::Database, "pg"),
                (SourceKind::Database, "my"),
                (SourceKind::Manifests, "manifests")
            ],
        "units: {kinds:?}"
    );
    ensure!(first.spec.scheduled_time.is_some(), "made by the schedule");
    let policy = p
        .policy_condition(
            "shop",
            "RPOMet",
            "True",
            "WithinObjective",
            Duration::from_secs(30),
        )
        .await?;
    ensure!(policy.status.unwrap().last_successful_backup == first.metadata.name);

    // restic lists them with our tags.
    let tag = format!("policy={}/shop", p.name());
    let snaps = restic_json(&p.bucket, &p.prefix, &["snapshots", "--tag", &tag])?;
    let tags: Vec<Vec<String>> = snaps
        .as_array()
        .context("snapshot list")?
        .iter()
        .map(|s| serde_json::from_value(s["tags"].clone()).unwrap())
        .collect();
    for source in [
        "volume/data",
        "volume/logs",
        "database/pg",
        "database/my",
        &format!("manifests/{}", p.name()),
    ] {
        ensure!(
            tags.iter().any(|t| t.contains(&format!("source={source}"))
                && t.contains(&format!(
                    "backup={}",
                    first.metadata.name.as_deref().unwrap()
                ))
                && t.contains(&"lifeboat".to_string())),
            "no snapshot tagged source={source}: {tags:?}"
        );
    }

    // restic restores the volume snapshot byte for byte (the fill job's checksums match).
    let out = tempfile::tempdir()?;
    let data_id = snapshot_of(&first, "data")?;
    restic(
        &p.bucket,
        &p.prefix,
        &[
            "restore",
            &data_id,
            "--target",
            out.path().to_str().unwrap(),
        ],
    )?;
    let root = out.path().join("data");
    let sums = std::fs::read_to_string(root.join("SHA256SUMS"))?;
    let hashes = common::tree_hashes(&root)?;
    ensure!(
        sums.lines().count() == 3,
        "checksum list (3 regular files): {sums}"
    );
    for line in sums.lines() {
        let (sum, path) = line.split_once("  ").context("sha256sum line")?;
        let path = path.trim_start_matches("./");
        ensure!(
            hashes.get(path).map(String::as_str) == Some(sum),
            "{path} differs after restore"
        );
    }
    ensure!(
        std::fs::read_link(root.join("link"))?.to_str() == Some("numbers.txt"),
        "symlink kept"
    );
    ensure!(root.join("empty-dir").is_dir(), "empty directory kept");

    // The README's restic-only path for manifests into another namespace: restic restores
    // the files, `lifeboat manifests rewrite` maps them, the API server takes them
    // (server-side dry run: nothing of the shop starts twice). Unrewritten, it refuses them.
    let man = tempfile::tempdir()?;
    restic(
        &p.bucket,
        &p.prefix,
        &[
            "restore",
            "latest",
            "--tag",
            &format!("{tag},source=manifests/{}", p.name()),
            "--target",
            man.path().to_str().unwrap(),
        ],
    )?;
    let saved = man.path().join("tmp/lifeboat-manifests").join(p.name());
    let other = lifeboat_e2e::testing::TestNs::create("e2e-rewrite").await?;
    let apply = |dir: &std::path::Path| {
        std::process::Command::new("kubectl")
            .args(["apply", "--dry-run=server", "-R", "-n", &other.name, "-f"])
            .arg(dir)
            .output()
    };
    let refused = apply(&saved)?;
    ensure!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("does not match the namespace"),
        "saved manifests applied to another namespace unchanged: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let rewritten = man.path().join("rewritten");
    lifeboat(
        &p.bucket,
        &p.prefix,
        &[
            "manifests",
            "rewrite",
            saved.to_str().unwrap(),
            "-n",
            &other.name,
            "-o",
            rewritten.to_str().unwrap(),
        ],
        &[],
    )?;
    let applied = apply(&rewritten)?;
    ensure!(
        applied.status.success(),
        "rewritten manifests: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    ensure!(
        String::from_utf8_lossy(&applied.stdout).contains("persistentvolumeclaim/data"),
        "the saved claims are among them: {}",
        String::from_utf8_lossy(&applied.stdout)
    );
    other.delete().await?;

    // Both database dumps restore into fresh databases with identical rows.
    let pg_id = snapshot_of(&first, "pg")?;
    let restored_pg = format!("{}_restored", p.db);
    let conn = |host: &str, port: &str, user: &str| {
        vec![
            ("LIFEBOAT_DB_HOST", env(host)),
            ("LIFEBOAT_DB_PORT", env(port)),
            ("LIFEBOAT_DB_USER", env(user)),
        ]
    };
    let mut pg_env = conn(
        "LIFEBOAT_TEST_PG_HOST",
        "LIFEBOAT_TEST_PG_PORT",
        "LIFEBOAT_TEST_PG_USER",
    );
    pg_env.push(("LIFEBOAT_DB_PASSWORD", env("LIFEBOAT_TEST_PG_PASSWORD")));
    lifeboat(
        &p.bucket,
        &p.prefix,
        &[
            "db",
            "restore",
            "--engine",
            "postgres",
            &pg_id,
            "--database",
            &restored_pg,
            "--create-database",
        ],
        &pg_env,
    )?;
    ensure!(
        pg(&restored_pg, PG_CHECKSUM)? == pg(&p.db, PG_CHECKSUM)?,
        "postgres rows differ after restore"
    );
    pg(
        "postgres",
        &format!("DROP DATABASE {restored_pg} WITH (FORCE)"),
    )?;
    let my_id = snapshot_of(&first, "my")?;
    let restored_my = format!("{}_restored", p.db);
    let mut my_env = conn(
        "LIFEBOAT_TEST_MYSQL_HOST",
        "LIFEBOAT_TEST_MYSQL_PORT",
        "LIFEBOAT_TEST_MYSQL_USER",
    );
    my_env.push(("LIFEBOAT_DB_PASSWORD", env("LIFEBOAT_TEST_MYSQL_PASSWORD")));
    lifeboat(
        &p.bucket,
        &p.prefix,
        &[
            "db",
            "restore",
            "--engine",
            "mysql",
            &my_id,
            "--database",
            &restored_my,
            "--create-database",
        ],
        &my_env,
    )?;
    ensure!(
        my(Some(&restored_my), MY_CHECKSUM)? == my(Some(&p.db), MY_CHECKSUM)?,
        "mariadb rows differ after restore"
    );
    my(None, &format!("DROP DATABASE {restored_my}"))?;

    // Stop the schedule, take an on-demand Backup: it succeeds, and retention (keepLast 1)
    // then leaves exactly its snapshots.
    let policies: Api<BackupPolicy> = p.ns.api();
    policies
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedule": {"suspend": true}}})),
        )
        .await?;
    let backups: Api<Backup> = p.ns.api();
    wait_for(
        "no running scheduled backup",
        Duration::from_secs(90),
        || async {
            let busy = backups
                .list(&Default::default())
                .await?
                .items
                .iter()
                .any(|b| {
                    !b.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(BackupPhase::is_finished)
                });
            Ok((!busy).then_some(()))
        },
    )
    .await?;
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "on-demand"},
        "spec": {"policyRef": {"name": "shop"}}}))
        .await?;
    let manual = p.backup_finished("on-demand", RUN).await?;
    ensure!(
        manual.status.as_ref().unwrap().phase == Some(BackupPhase::Succeeded),
        "on-demand: {:?}",
        manual.status
    );
    let adopted = manual.metadata.labels.clone().unwrap_or_default();
    ensure!(
        adopted.get("lifeboat.dev/policy").map(String::as_str) == Some("shop"),
        "adopted by its policy"
    );
    wait_for("retention applied", RUN, || async {
        let b = backups.get("on-demand").await?;
        let applied = b.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "RetentionApplied" && c.status == "True")
        });
        Ok(applied.then_some(()))
    })
    .await?;
    let left = restic_json(&p.bucket, &p.prefix, &["snapshots", "--tag", &tag])?;
    let left = left.as_array().context("snapshot list")?;
    ensure!(
        left.len() == 5,
        "one snapshot per source remains, got {}",
        left.len()
    );
    ensure!(
        left.iter().all(|s| s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "backup=on-demand")),
        "the newest (on-demand) snapshots are the ones kept"
    );
    restic(&p.bucket, &p.prefix, &["check"]).context("restic check after prune")?;
    p.cleanup().await
}

/// Each kind of bad input ends in its own condition reason with a Warning Event, and the
/// controller keeps serving the valid policy next to them.
#[tokio::test]
#[ignore = "needs e2e/local"]
async fn bad_input_ends_in_precise_conditions_and_warning_events() -> anyhow::Result<()> {
    let p = Protected::create("ops-bad").await?;
    p.pvc_with("data", json!({"app": "shop"}), "echo x > /data/x")
        .await?;
    p.store_ready("s3").await?;
    // Stores: a missing bucket, bad credentials, an unreachable endpoint, a wrong password
    // for the existing repository, a missing password Secret.
    let mut no_bucket = p.store_json("no-bucket", "does-not-exist", "repo-pass");
    no_bucket["spec"]["s3"]["bucket"] = "lifeboat-missing-bucket".into();
    p.apply(no_bucket).await?;
    p.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": env("LIFEBOAT_TEST_S3_ACCESS_KEY"), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}})).await?;
    let mut bad_creds = p.store_json("bad-creds", &p.bucket, "repo-pass");
    bad_creds["spec"]["s3"]["credentials"]["name"] = "bad-creds".into();
    p.apply(bad_creds).await?;
    let mut unreachable = p.store_json("unreachable", &p.bucket, "repo-pass");
    unreachable["spec"]["s3"]["endpoint"] = "http://127.0.0.1:9".into();
    p.apply(unreachable).await?;
    p.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other-pass"},
        "stringData": {"password": "another-password-entirely-0123456789"}}),
    )
    .await?;
    p.apply(p.store_json("wrong-password", &p.bucket, "other-pass"))
        .await?;
    p.apply(p.store_json("no-secret", &p.bucket, "missing-secret"))
        .await?;
    let stores: Api<BackupStore> = p.ns.api();
    for (store, reason) in [
        ("no-bucket", "BucketNotFound"),
        ("bad-creds", "InvalidCredentials"),
        ("unreachable", "StorageUnreachable"),
        ("wrong-password", "WrongPassword"),
        ("no-secret", "SecretNotFound"),
    ] {
        p.store_not_ready(store, reason, Duration::from_secs(120))
            .await?;
        let w = p
            .warnings_once("BackupStore", store, reason, Duration::from_secs(10))
            .await?;
        ensure!(
            w.iter().any(|e| e.starts_with(reason)),
            "store {store}: no Warning Event {reason}: {w:?}"
        );
    }
    // The missing bucket is named, so the reader knows what to create.
    let ready = stores
        .get("no-bucket")
        .await?
        .status
        .unwrap_or_default()
        .conditions;
    let ready = ready.iter().find(|c| c.type_ == "Ready").context("Ready")?;
    ensure!(
        ready.message.contains("\"lifeboat-missing-bucket\""),
        "BucketNotFound does not name the bucket: {}",
        ready.message
    );

    // Policies, each wrong in one way; `good` is valid.
    let base = |name: &str, store: &str| {
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name},
            "spec": {"storeRef": {"name": store}, "schedule": {"cron": "0 3 * * *"},
                     "sources": {"volumes": [{"pvcName": "data"}]}}})
    };
    let mut cases = vec![];
    let mut bad_cron = base("bad-cron", "s3");
    bad_cron["spec"]["schedule"]["cron"] = "61 * * * *".into();
    cases.push((bad_cron, "InvalidSchedule"));
    let mut bad_tz = base("bad-tz", "s3");
    bad_tz["spec"]["schedule"]["timeZone"] = "Mars/Olympus_Mons".into();
    cases.push((bad_tz, "InvalidSchedule"));
    cases.push((base("no-store", "nonexistent"), "StoreNotFound"));
    cases.push((base("store-down", "no-bucket"), "StoreNotReady"));
    let mut no_secret = base("no-db-secret", "s3");
    no_secret["spec"]["sources"] = json!({"databases": [{"name": "pg", "engine": "postgres", "host": "127.0.0.1",
        "database": "x", "credentials": {"name": "absent-login"}}]});
    cases.push((no_secret, "SecretNotFound"));
    let mut no_match = base("no-match", "s3");
    no_match["spec"]["sources"] =
        json!({"volumes": [{"selector": {"matchLabels": {"app": "nothing-here"}}}]});
    cases.push((no_match, "NoVolumesMatched"));
    let mut no_pvc = base("no-pvc", "s3");
    no_pvc["spec"]["sources"] = json!({"volumes": [{"pvcName": "missing"}]});
    cases.push((no_pvc, "PVCNotFound"));
    for (policy, _) in &cases {
        p.apply(policy.clone()).await?;
    }
    p.apply(base("good", "s3")).await?;
    for (policy, reason) in &cases {
        let name = policy["metadata"]["name"].as_str().unwrap();
        let got = p
            .policy_condition(name, "Ready", "False", reason, Duration::from_secs(90))
            .await?;
        let msg = got
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .message;
        ensure!(!msg.is_empty(), "{name}: an explanation in the condition");
        let w = p
            .warnings_once("BackupPolicy", name, reason, Duration::from_secs(10))
            .await?;
        ensure!(
            w.iter().any(|e| e.starts_with(reason)),
            "policy {name}: no Warning Event {reason}: {w:?}"
        );
    }
    p.policy_condition("good", "Ready", "True", "Ready", Duration::from_secs(60))
        .await?;

    // A database that refuses the dump: the run says which source failed and why.
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "refused"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 3 * * *"},
                 "sources": {"volumes": [{"pvcName": "data"}],
                             "databases": [{"name": "closed", "engine": "postgres", "host": "127.0.0.1", "port": 9,
                                            "database": "x", "credentials": {"name": "pg-login"}}]}}}))
        .await?;
    p.policy_condition("refused", "Ready", "True", "Ready", Duration::from_secs(60))
        .await?;
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "refused-now"},
        "spec": {"policyRef": {"name": "refused"}}}))
        .await?;
    let b = p.backup_finished("refused-now", RUN).await?;
    let s = b.status.unwrap();
    ensure!(
        s.phase == Some(BackupPhase::PartiallyFailed),
        "phase {:?}",
        s.phase
    );
    let db = s
        .sources
        .iter()
        .find(|x| x.name == "closed")
        .context("db source")?;
    let f = db.failure.as_ref().context("db failure")?;
    ensure!(
        f.reason == "DatabaseUnreachable",
        "reason {} ({})",
        f.reason,
        f.message
    );
    ensure!(s.sources.iter().find(|x| x.name == "data").unwrap().phase == SourcePhase::Succeeded);
    // A manual Backup of an invalid policy fails at once with the policy's reason.
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "of-no-store"},
        "spec": {"policyRef": {"name": "no-store"}}}))
        .await?;
    let b = p
        .backup_finished("of-no-store", Duration::from_secs(60))
        .await?;
    let f = b.status.unwrap().failure.context("whole-run failure")?;
    ensure!(f.reason == "StoreNotFound", "reason {}", f.reason);
    p.cleanup().await
}

/// Lifeboat's Event recorder against the real API server: repeats of a reason on one
/// object become one Event whose series counts them (keeping the first note); another
/// reason is another Event.
#[tokio::test]
#[ignore = "needs e2e/local"]
async fn repeated_events_fold_into_one_series_on_the_api_server() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::api::events::v1::Event;
    use lifeboat::controller::events::{EventRecorder, NewEvent};

    let ns = lifeboat_e2e::testing::TestNs::create("ops-events").await?;
    let cms: Api<ConfigMap> = ns.api();
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("subject".into());
    let cm = cms.create(&Default::default(), &cm).await?;
    let rec = EventRecorder::new(ns.client.clone(), "lifeboat-e2e", "e2e");
    for i in 1..=3 {
        rec.publish(
            &cm,
            NewEvent {
                warning: true,
                reason: "StoreNotFound",
                action: "Reconcile",
                note: format!("attempt {i}"),
            },
        )
        .await?;
    }
    rec.publish(
        &cm,
        NewEvent {
            warning: false,
            reason: "BackupCreated",
            action: "Reconcile",
            note: "created".into(),
        },
    )
    .await?;
    let events: Api<Event> = ns.api();
    let mine: Vec<Event> = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("subject"))
        .collect();
    ensure!(mine.len() == 2, "two Events, one per reason: {mine:?}");
    let folded = mine
        .iter()
        .find(|e| e.reason.as_deref() == Some("StoreNotFound"))
        .context("the repeated reason's Event")?;
    ensure!(
        folded.series.as_ref().map(|s| s.count) == Some(3)
            && folded.note.as_deref() == Some("attempt 1")
            && folded.type_.as_deref() == Some("Warning"),
        "{folded:?}"
    );
    let once = mine
        .iter()
        .find(|e| e.reason.as_deref() == Some("BackupCreated"))
        .context("the other reason's Event")?;
    ensure!(
        once.series.is_none() && once.reporting_controller.as_deref() == Some("lifeboat-e2e"),
        "{once:?}"
    );
    ns.delete().await
}

/// A Restore from a store the controller has not probed yet says what it waits for
/// (`Complete=False WaitingForCatalog`), and once the probe fails the Restore fails naming
/// the store's reason. The store's endpoint is a listener that accepts connections and never
/// answers, which keeps the first probe open for its attempt timeout.
#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_restore_from_a_store_not_probed_yet_says_it_waits() -> anyhow::Result<()> {
    let p = Protected::create("op-waitcat").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let mut store = p.store_json("silent", &p.bucket, "repo-pass");
    store["spec"]["s3"]["endpoint"] = format!("http://127.0.0.1:{port}").into();
    p.apply(store).await?;
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": "from-silent"},
        "spec": {"source": {"storeRef": {"name": "silent"}, "fromPolicy": "gone/daily"}}}),
    )
    .await?;
    let restores: Api<lifeboat::crd::restore::Restore> = p.ns.api();
    let waiting = wait_for(
        "Restore from-silent Complete=False WaitingForCatalog",
        Duration::from_secs(60),
        || async {
            let r = restores.get("from-silent").await?;
            Ok(r.status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| {
                    c.type_ == "Complete" && c.status == "False" && c.reason == "WaitingForCatalog"
                }))
        },
    )
    .await?;
    ensure!(
        waiting.message.contains("\"silent\""),
        "the condition names the store: {waiting:?}"
    );
    // Connections are now refused: the probe fails, and so does the Restore, saying why.
    silent.abort();
    let _ = silent.await;
    let r = wait_for("Restore from-silent to finish", RUN, || async {
        let r = restores.get("from-silent").await?;
        let done = r
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|ph| ph.is_finished());
        Ok(done.then_some(r))
    })
    .await?;
    let f = r.status.and_then(|s| s.failure).context("a failure")?;
    ensure!(
        f.reason == "StoreNotReady" && f.message.starts_with("StorageUnreachable"),
        "the Restore fails with the store's reason: {f:?}"
    );
    p.cleanup().await
}

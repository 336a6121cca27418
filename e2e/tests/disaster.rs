//! Recovery when the cluster's records are gone (issue 13): the repository is the source
//! of truth. A namespace is backed up (a PVC of files, a PostgreSQL database, the
//! manifests of a Deployment, Service, ConfigMap and an opted-in Secret), the namespace
//! is deleted with its policy and Backups, and a new namespace brings everything back
//! with one BackupStore (same bucket, prefix and password) and one Restore naming the
//! old policy identity: the files match, the database's row counts match the backup's
//! record, the Deployment runs. Also: Backups follow the repository (snapshots removed
//! behind their back mark them `SnapshotsForgotten`), and a namespace editor cannot read
//! another namespace's restore points from a ClusterBackupStore that does not allow it.
//!
//! Runs alone (e2e/test's DISRUPTIVE filter): it deletes namespaces while it runs and
//! measures the restore's RTO.

#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::{Protected, REPO_PASSWORD, backup_now, env};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use lifeboat::crd::backup::Backup;
use lifeboat::crd::restore::{Restore, RestorePhase};
use lifeboat::crd::store::BackupStore;
use lifeboat_e2e::testing::{TestNs, wait_for};
use serde_json::json;

const LONG: Duration = Duration::from_secs(300);

/// Files of the PVC, with a list of their checksums written next to them (so a Job in
/// the restored namespace can check them without the source).
const FILL: &str = "mkdir -p /data/app/logs && head -c 2000000 /dev/urandom > /data/app/blob.bin && \
    echo hello > /data/app/hello.txt && printf x > '/data/app/logs/a b.log' && \
    cd /data && find . -type f -exec sha256sum {} + | sort -k2 > /tmp/SUMS && mv /tmp/SUMS /data/SUMS";

/// The protected namespace: files, the database (from `Protected`), manifests labelled
/// `app=web`, the policy `shop` and a successful Backup `b1`.
async fn protected(prefix: &str) -> anyhow::Result<(Protected, Backup)> {
    let p = Protected::create(prefix).await?;
    p.pvc_with("data", json!({"app": "web"}), FILL).await?;
    for obj in [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "labels": {"app": "web"}},
               "data": {"greeting": "hello"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-token", "labels": {"app": "web"}},
               "stringData": {"token": "s3cr3t"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"terminationGracePeriodSeconds": 1,
                                              "containers": [{"name": "web", "image": "busybox:1.36",
                                                              "command": ["sleep", "3600"]}]}}}}),
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
               "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
                        "sources": {
                            "volumes": [{"pvcName": "data", "copyMethod": "Direct"}],
                            "databases": [{"name": "pg", "engine": "postgres", "host": env("LIFEBOAT_TEST_PG_HOST"),
                                           "port": env("LIFEBOAT_TEST_PG_PORT").parse::<u16>()?, "database": p.db,
                                           "credentials": {"name": "pg-login"}}],
                            "manifests": {"selector": {"matchLabels": {"app": "web"}}, "includeSecrets": true}}}}),
    ] {
        p.apply(obj).await?;
    }
    p.store_ready("s3").await?;
    let b1 = backup_now(&p, "b1").await?;
    Ok((p, b1))
}

/// Waits until the store's catalog lists `identity` with at least `points` restore points.
async fn catalog_lists(
    api: &Api<BackupStore>,
    store: &str,
    identity: &str,
    points: u64,
) -> anyhow::Result<BackupStore> {
    wait_for(
        &format!("store {store}'s catalog to list {points} restore point(s) of {identity}"),
        Duration::from_secs(120),
        || async {
            let s = api.get(store).await?;
            let hit = s
                .status
                .as_ref()
                .and_then(|st| st.catalog.as_ref())
                .is_some_and(|c| {
                    c.policies
                        .iter()
                        .any(|p| p.policy == identity && p.restore_points >= points)
                });
            Ok(hit.then_some(s))
        },
    )
    .await
}

/// A Job in `ns` that checks the files of PVC `claim` against the list saved with them.
async fn files_match(client: &kube::Client, ns: &str, claim: &str) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let name = format!("check-{claim}");
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "check", "image": "busybox:1.36",
                            "command": ["sh", "-ec", "cd /data && test -s SUMS && sha256sum -c SUMS"],
                            "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}}
    }))?;
    jobs.create(&PostParams::default(), &job).await?;
    wait_for(&format!("job {name}"), Duration::from_secs(90), || async {
        let s = jobs.get(&name).await?.status.unwrap_or_default();
        if s.failed.unwrap_or(0) > 0 {
            bail!("the restored files differ from the backed-up ones (job {name} failed)");
        }
        Ok((s.succeeded.unwrap_or(0) > 0).then_some(()))
    })
    .await
}

/// Creates a Restore and waits until it finished.
async fn restore(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<Restore> {
    let api: Api<Restore> = Api::namespaced(client.clone(), ns);
    let r: Restore = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": name},
        "spec": spec}))?;
    api.create(&PostParams::default(), &r).await?;
    wait_for(&format!("Restore {name} to finish"), LONG, || async {
        Ok(api.get_opt(name).await?.filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        }))
    })
    .await
}

fn describe(r: &Restore) -> String {
    serde_json::to_string_pretty(&r.status).unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_deleted_namespace_comes_back_from_the_store_alone() -> anyhow::Result<()> {
    let (p, b1) = protected("e2e-dr-src").await?;
    let back = Protected {
        ns: TestNs::create("e2e-dr-back").await?,
        bucket: p.bucket.clone(),
        prefix: p.prefix.clone(),
        db: String::new(),
    };
    let result = deleted_namespace(&p, &back, &b1).await;
    let _ = back.ns.delete().await;
    // The namespace is gone when the scenario passed: only the databases are left.
    let _ = p.cleanup().await;
    result
}

async fn deleted_namespace(p: &Protected, back: &Protected, _b1: &Backup) -> anyhow::Result<()> {
    let old = p.name().to_string();
    let identity = format!("{old}/shop");
    // The catalog of the store that wrote it knows the restore point.
    catalog_lists(&p.ns.api(), "s3", &identity, 1).await?;

    // The disaster: the namespace goes, with its policy, Backups and store.
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(p.ns.client.clone());
    ns_api.delete(&old, &Default::default()).await?;
    wait_for("the old namespace to be gone", LONG, || async {
        Ok(ns_api.get_opt(&old).await?.is_none().then_some(()))
    })
    .await?;

    // Recovery: one store (same bucket, prefix and password) and one Restore.
    back.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
                       "AWS_SECRET_ACCESS_KEY": env("LIFEBOAT_TEST_S3_SECRET_KEY")}}),
    )
    .await?;
    back.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-pass"},
        "stringData": {"password": REPO_PASSWORD}}),
    )
    .await?;
    back.apply(back.store_json("s3", &back.bucket, "repo-pass"))
        .await?;
    let started = Instant::now();
    let r = restore(
        &back.ns.client,
        back.name(),
        "from-store",
        json!({"source": {"storeRef": {"name": "s3"}, "fromPolicy": identity},
               "databases": [{"source": "pg", "ephemeral": {"image": "postgres:15"}}],
               "manifests": {}}),
    )
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let st = r.status.clone().unwrap_or_default();
    ensure!(
        st.phase == Some(RestorePhase::Succeeded),
        "{}",
        describe(&r)
    );
    let rp = st.restore_point.clone().context("restorePoint")?;
    ensure!(
        rp.backup == "b1" && rp.namespace.as_deref() == Some(old.as_str()),
        "restore point {rp:?}"
    );
    eprintln!(
        "RTO of the restore from the store alone: {:.1}s from the Restore's creation (store new too), {:.1}s restore time (status.durationSeconds)",
        wall,
        st.duration_seconds.unwrap_or_default()
    );
    // The files.
    files_match(&back.ns.client, back.name(), "data").await?;
    // The database: every table's row count as recorded at backup time.
    let db = st
        .sources
        .iter()
        .find(|s| s.name == "pg")
        .and_then(|s| s.database.clone())
        .context("database source")?;
    ensure!(db.row_counts_match == Some(true), "{}", describe(&r));
    ensure!(db.rows == Some(1050), "rows {:?}", db.rows);
    let counts = st.row_counts.get("pg").context("rowCounts.pg")?;
    ensure!(counts.restored == counts.backup && !counts.backup.is_empty());
    // The manifests, into the new namespace, and the Deployment runs.
    let deployments: Api<Deployment> = back.ns.api();
    wait_for("the restored Deployment to run", LONG, || async {
        let d = deployments.get_opt("web").await?;
        Ok(d.filter(|d| {
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
        })
        .map(drop))
    })
    .await?;
    let secret: Api<k8s_openapi::api::core::v1::Secret> = back.ns.api();
    ensure!(
        secret.get_opt("web-token").await?.is_some(),
        "the opted-in Secret was not restored"
    );
    let cm: Api<k8s_openapi::api::core::v1::ConfigMap> = back.ns.api();
    ensure!(cm.get_opt("app-config").await?.is_some());

    // The CLI lists the restore points through the cluster (no store credentials).
    let out = Command::new(env("LIFEBOAT_BIN"))
        .args(["restore", "points", "-n", back.name(), "--json"])
        .output()
        .context("running lifeboat restore points")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success()
            && text.contains(&identity)
            && text.contains("\"newestBackup\": \"b1\""),
        "restore points: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_backup_whose_snapshots_are_gone_says_so_and_is_not_restored() -> anyhow::Result<()> {
    let (p, b1) = protected("e2e-dr-forgot").await?;
    let result = forgotten(&p, &b1).await;
    p.cleanup().await?;
    result
}

async fn forgotten(p: &Protected, b1: &Backup) -> anyhow::Result<()> {
    // Retention's effect, behind the controller's back: b1's snapshot files go.
    let s3 = common::s3().await;
    for s in &b1.status.as_ref().context("b1 status")?.sources {
        if let Some(id) = &s.snapshot_id {
            s3.delete_object()
                .bucket(&p.bucket)
                .key(format!("{}/snapshots/{id}", p.prefix))
                .send()
                .await?;
        }
    }
    // The next backup's listing notices.
    backup_now(p, "b2").await?;
    let backups: Api<Backup> = p.ns.api();
    wait_for(
        "b1 to be marked SnapshotsForgotten",
        Duration::from_secs(120),
        || async {
            let b = backups.get("b1").await?;
            let hit = b.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "SnapshotsForgotten"
                        && c.status == "True"
                        && c.reason == "SnapshotsForgotten"
                })
            });
            Ok(hit.then_some(()))
        },
    )
    .await?;
    let w = p
        .warnings_once(
            "Backup",
            "b1",
            "SnapshotsForgotten",
            Duration::from_secs(30),
        )
        .await?;
    ensure!(
        w.iter().any(|e| e.starts_with("SnapshotsForgotten")),
        "{w:?}"
    );
    // A Restore of it fails with that reason; one of the policy picks b2.
    let r = restore(
        &p.ns.client,
        p.name(),
        "of-b1",
        json!({"source": {"backupRef": {"name": "b1"}}}),
    )
    .await?;
    let st = r.status.clone().unwrap_or_default();
    ensure!(
        st.phase == Some(RestorePhase::Failed)
            && st.failure.as_ref().map(|f| f.reason.as_str()) == Some("SnapshotsForgotten"),
        "{}",
        describe(&r)
    );
    let r = restore(
        &p.ns.client,
        p.name(),
        "of-policy",
        json!({"source": {"policyRef": {"name": "shop"}}, "volumes": {"rename": {"data": "data-2"}}}),
    )
    .await?;
    let st = r.status.clone().unwrap_or_default();
    ensure!(
        st.restore_point.as_ref().map(|p| p.backup.as_str()) == Some("b2"),
        "{}",
        describe(&r)
    );
    Ok(())
}

/// The catalog's cost for a repository of N Lifeboat snapshots in the environment's
/// SeaweedFS, through the controller's own prober: a first listing (every snapshot file
/// fetched and decoded once) and a refresh (one LIST, nothing fetched). Prints the
/// figures docs/restore.md quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs e2e/local"]
async fn the_catalog_costs_one_list_per_refresh() -> anyhow::Result<()> {
    use lifeboat::controller::store::catalog::StoreCatalog;
    use lifeboat::controller::store::prober::RepoProber;
    use lifeboat::controller::store::{Connection, Prober, Sensitive};
    use lifeboat::crd::store::{BackupStoreSpec, S3Spec};
    use lifeboat::repo::{
        InitOptions, Repo, RepoOptions, S3Config, S3Credentials, Secret, Storage, kdf,
    };
    // Writing the snapshots is the slow part here, not the catalog: 100 by default,
    // LIFEBOAT_E2E_CATALOG_SNAPSHOTS for more.
    let n: usize = std::env::var("LIFEBOAT_E2E_CATALOG_SNAPSHOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let bucket = format!("e2e-catalog-{:08x}", rand::random::<u32>());
    common::create_bucket(&bucket).await?;
    let runtime = tokio::runtime::Handle::current();
    let endpoint = env("LIFEBOAT_TEST_S3_ENDPOINT");
    let (key, secret) = (
        env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
        env("LIFEBOAT_TEST_S3_SECRET_KEY"),
    );
    let b = bucket.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut cfg = S3Config::new(Some(endpoint.clone()), b.clone(), "repo".into());
        cfg.path_style = true;
        cfg.region = Some(env("LIFEBOAT_TEST_S3_REGION"));
        cfg.credentials = S3Credentials::Static {
            access_key_id: key.clone(),
            secret_access_key: Secret::new(secret.clone()),
            session_token: None,
        };
        let mut opts = RepoOptions::new(Storage::S3(Box::new(cfg)));
        opts.runtime = Some(runtime.clone());
        let password = Secret::new(REPO_PASSWORD);
        let repo = Repo::init(
            &opts,
            &password,
            &InitOptions {
                kdf: kdf::RANDOM_SECRET,
                compression: None,
            },
        )?;
        drop(repo);
        // Stock restic writes them, four processes at a time: its local cache fetches each
        // index file once, where the engine reads the whole growing index for every backup
        // (1,000 took over 14 minutes that way). The catalog reads them as any snapshots.
        let made = Instant::now();
        let files = tempfile::tempdir()?;
        std::thread::scope(|s| -> anyhow::Result<()> {
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let (b, dir) = (&b, files.path());
                    s.spawn(move || -> anyhow::Result<()> {
                        for i in (w..n).step_by(4) {
                            let f = dir.join(format!("data-{i}.bin"));
                            std::fs::write(&f, i.to_le_bytes())?;
                            let tags = format!(
                                "lifeboat,policy=ns{}/daily,source=volume/data,backup=daily-{i}",
                                i % 10
                            );
                            let path = f.to_string_lossy();
                            common::restic(
                                b,
                                "repo",
                                &["backup", "--host", "e2e", "--tag", &tags, &path],
                            )?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in writers {
                w.join().expect("a writer thread panicked")?;
            }
            Ok(())
        })?;
        eprintln!("{n} snapshots written in {:.1}s", made.elapsed().as_secs_f64());
        let prober = RepoProber {
            runtime,
            scratch: std::env::temp_dir(),
        };
        let conn = Connection {
            spec: BackupStoreSpec {
                s3: S3Spec {
                    endpoint: Some(endpoint),
                    bucket: b,
                    prefix: Some("repo".into()),
                    region: Some(env("LIFEBOAT_TEST_S3_REGION")),
                    path_style: Some(true),
                    ..S3Spec::default()
                },
                ..BackupStoreSpec::default()
            },
            access_key_id: Some(Sensitive(key)),
            secret_access_key: Some(Sensitive(secret)),
            session_token: None,
            ca_pem: None,
            password: Sensitive(REPO_PASSWORD.into()),
        };
        let mut catalog = StoreCatalog::default();
        for round in ["first listing", "refresh"] {
            let t = Instant::now();
            let (outcome, listing) = prober.probe_and_list(&conn, false, &catalog);
            let total = t.elapsed().as_secs_f64();
            let l = listing
                .context("no listing")?
                .map_err(|e| anyhow::anyhow!(e))?;
            ensure!(l.ids.len() == n, "{outcome:?}: {} ids", l.ids.len());
            let decoded = l.new.len();
            catalog.update(&l.repository_id, &l.ids, &l.new, jiff::Timestamp::now());
            eprintln!(
                "catalog {round}: {n} snapshots, {decoded} fetched and decoded, listing {:.2}s, with the opening (key derivation) {total:.2}s",
                l.seconds
            );
            if round == "refresh" {
                ensure!(decoded == 0, "a refresh fetched {decoded} snapshot files");
            }
        }
        let points: usize = catalog.points().values().map(Vec::len).sum();
        ensure!(points == n, "{points} restore points");
        eprintln!(
            "catalog memory: about {} KiB for {n} snapshots ({} bytes each); status summary {} bytes as JSON",
            catalog.approx_bytes() / 1024,
            catalog.approx_bytes() / n,
            serde_json::to_vec(&catalog.summary())?.len()
        );
        Ok(())
    })
    .await??;
    Ok(())
}

/// `lifeboat` with a kubeconfig (a namespace editor's).
fn lifeboat_as(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = Command::new(env("LIFEBOAT_BIN"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .context("running lifeboat")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn another_namespaces_restore_points_need_the_cluster_stores_consent() -> anyhow::Result<()> {
    let (p, _b1) = protected("e2e-dr-owner").await?;
    let other = TestNs::create("e2e-dr-other").await?;
    let store = format!("dr-{}", other.name);
    let result = cross_namespace(&p, &other, &store).await;
    let _ = Api::<lifeboat::crd::store::ClusterBackupStore>::all(p.ns.client.clone())
        .delete(&store, &Default::default())
        .await;
    let _ = other.delete().await;
    p.cleanup().await?;
    result
}

async fn cross_namespace(p: &Protected, other: &TestNs, store: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Patch, PatchParams};
    use lifeboat::crd::store::ClusterBackupStore;
    let owner = p.name().to_string();
    // A cluster store over the owner's repository, allowing both namespaces to use it.
    let cluster_stores: Api<ClusterBackupStore> = Api::all(p.ns.client.clone());
    let cbs = json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "ClusterBackupStore",
        "metadata": {"name": store},
        "spec": {"s3": {"endpoint": env("LIFEBOAT_TEST_S3_ENDPOINT"), "bucket": p.bucket, "prefix": p.prefix,
                        "credentials": {"name": "s3-creds", "namespace": owner}},
                 "repositoryPassword": {"name": "repo-pass", "key": "password", "namespace": owner},
                 "allowedNamespaces": [owner, other.name]}});
    cluster_stores
        .patch(
            store,
            &PatchParams::apply("lifeboat-e2e").force(),
            &Patch::Apply(&cbs),
        )
        .await?;
    wait_for(
        "the cluster store's catalog",
        Duration::from_secs(120),
        || async {
            let s = cluster_stores.get(store).await?;
            let hit = s.status.and_then(|st| st.catalog).is_some_and(|c| {
                c.policies
                    .iter()
                    .any(|x| x.policy == format!("{owner}/shop"))
            });
            Ok(hit.then_some(()))
        },
    )
    .await?;
    // A namespace editor of the other namespace, with a real token.
    let sas: Api<ServiceAccount> = other.api();
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "editor"}}))?,
    )
    .await?;
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = other.api();
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "editor-edit"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": other.name}]}))?,
        )
        .await?;
    let kubeconfig =
        lifeboat_e2e::testing::kubeconfig_for_service_account(&other.client, &other.name, "editor")
            .await?;
    let from = format!("{owner}/shop");
    let create = |name: &'static str| {
        let args: Vec<String> = [
            "restore",
            "create",
            "--name",
            name,
            "--store",
            store,
            "--cluster-store",
            "--from-policy",
            from.as_str(),
            "-n",
            other.name.as_str(),
            "--wait",
            "--timeout",
            "4m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args
    };
    // The editor asks for the owner's data: refused by the controller, with the reason.
    let args = create("steal");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = wait_for("the editor's rights", Duration::from_secs(30), || async {
        let (ok, out) = lifeboat_as(kubeconfig.path(), &argv)?;
        Ok((!out.contains("Forbidden") && !out.contains("403")).then_some((ok, out)))
    })
    .await?;
    ensure!(
        !ok && out.contains("CrossNamespaceRestoreNotAllowed"),
        "a restore of another namespace's identity was not refused: {out}"
    );
    // The editor cannot grant it to themselves.
    let (ok, out) = lifeboat_as(
        kubeconfig.path(),
        &[
            "restore",
            "points",
            "--store",
            store,
            "--cluster-store",
            "-n",
            &other.name,
        ],
    )?;
    ensure!(!ok, "an editor read a ClusterBackupStore's catalog: {out}");
    let editor_client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(kubeconfig.path())?,
            &Default::default(),
        )
        .await?,
    )?;
    let as_editor: Api<ClusterBackupStore> = Api::all(editor_client);
    let grant = json!({"spec": {"crossNamespaceRestore": [other.name]}});
    let refused = as_editor
        .patch(store, &PatchParams::default(), &Patch::Merge(&grant))
        .await;
    ensure!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403),
        "an editor changed a ClusterBackupStore: {refused:?}"
    );
    // The cluster admin consents: the same request now restores.
    cluster_stores
        .patch(store, &PatchParams::default(), &Patch::Merge(&grant))
        .await?;
    let args = create("granted");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = lifeboat_as(kubeconfig.path(), &argv)?;
    ensure!(ok, "the consented restore failed: {out}");
    files_match(&other.client, &other.name, "data").await?;
    Ok(())
}

/// The second, independent local cluster (its own etcd, API server, controller-manager
/// and node agent) on the first environment's S3 server; brought down when dropped.
struct SecondCluster {
    dir: std::path::PathBuf,
    root: std::path::PathBuf,
}

impl SecondCluster {
    fn script(&self, script: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(self.root.join(script))
            .args(args)
            .env("LIFEBOAT_LOCAL_DIR", &self.dir)
            .env("LIFEBOAT_LOCAL_PORT_BASE", "17450")
            .env("LIFEBOAT_LOCAL_S3_FROM", env("LIFEBOAT_LOCAL_DIR"))
            .env("LIFEBOAT_OPERATOR_REPLICAS", "1")
            .output()
            .with_context(|| format!("running {script}"))?;
        ensure!(
            out.status.success(),
            "{script} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn up() -> anyhow::Result<Self> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("repository root")?
            .to_path_buf();
        let c = SecondCluster {
            dir: root.join("target/e2e-disaster-cluster2"),
            root,
        };
        c.script("e2e/local", &["up"])?;
        c.script("e2e/install-operator", &[])?;
        Ok(c)
    }

    async fn client(&self) -> anyhow::Result<kube::Client> {
        let cfg = kube::config::Kubeconfig::read_from(self.dir.join("kubeconfig"))?;
        Ok(kube::Client::try_from(
            kube::Config::from_custom_kubeconfig(cfg, &Default::default()).await?,
        )?)
    }
}

impl Drop for SecondCluster {
    fn drop(&mut self) {
        if let Err(e) = self.script("e2e/local", &["down"]) {
            eprintln!("second cluster: {e:#}");
        }
    }
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_new_cluster_restores_from_the_bucket_alone() -> anyhow::Result<()> {
    let (p, _b1) = protected("e2e-dr-lost").await?;
    let result = new_cluster(&p).await;
    p.cleanup().await?;
    result
}

async fn new_cluster(p: &Protected) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    let identity = format!("{}/shop", p.name());
    catalog_lists(&p.ns.api(), "s3", &identity, 1).await?;
    let brought_up = Instant::now();
    let two = tokio::task::spawn_blocking(SecondCluster::up).await??;
    eprintln!(
        "second cluster up with the chart in {:.1}s",
        brought_up.elapsed().as_secs_f64()
    );
    let client = two.client().await?;
    // The snapshots name cluster one as their owner, and cluster two is another cluster:
    // what follows proves a restore reads another cluster's snapshots.
    let uid_of_kube_system = |c: kube::Client| async move {
        Api::<Namespace>::all(c)
            .get("kube-system")
            .await?
            .metadata
            .uid
            .context("kube-system uid")
    };
    let (one_id, two_id) = (
        uid_of_kube_system(p.ns.client.clone()).await?,
        uid_of_kube_system(client.clone()).await?,
    );
    ensure!(one_id != two_id, "both clusters have identity {one_id}");
    let tags = common::restic_json(
        &p.bucket,
        &p.prefix,
        &["snapshots", "--tag", &format!("policy={identity}")],
    )?
    .to_string();
    ensure!(
        tags.contains(&format!("cluster={one_id}")) && !tags.contains(&format!("cluster={two_id}")),
        "snapshots before the restore: {tags}"
    );
    let ns = "shop-recovered";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for (name, data) in [
        (
            "s3-creds",
            json!({"AWS_ACCESS_KEY_ID": env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
                   "AWS_SECRET_ACCESS_KEY": env("LIFEBOAT_TEST_S3_SECRET_KEY")}),
        ),
        ("repo-pass", json!({"password": REPO_PASSWORD})),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))?,
            )
            .await?;
    }
    let stores: Api<BackupStore> = Api::namespaced(client.clone(), ns);
    let mut store: BackupStore =
        serde_json::from_value(p.store_json("s3", &p.bucket, "repo-pass"))?;
    store.metadata.namespace = Some(ns.into());
    // The RTO clock starts when the new cluster is asked for the data.
    let started = Instant::now();
    stores.create(&PostParams::default(), &store).await?;
    let r = restore(
        &client,
        ns,
        "recover",
        json!({"source": {"storeRef": {"name": "s3"}, "fromPolicy": identity},
               "databases": [{"source": "pg", "ephemeral": {"image": "postgres:15"}}],
               "manifests": {}}),
    )
    .await?;
    let st = r.status.clone().unwrap_or_default();
    ensure!(
        st.phase == Some(RestorePhase::Succeeded),
        "{}",
        describe(&r)
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for("the restored Deployment to run", LONG, || async {
        let d = deployments.get_opt("web").await?;
        Ok(d.filter(|d| {
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
        })
        .map(drop))
    })
    .await?;
    let rto = started.elapsed().as_secs_f64();
    eprintln!(
        "RTO of the new-cluster restore: {rto:.1}s from the store's creation to the Deployment running ({:.1}s of Restore, status.durationSeconds)",
        st.duration_seconds.unwrap_or_default()
    );
    files_match(&client, ns, "data").await?;
    let db = st
        .sources
        .iter()
        .find(|s| s.name == "pg")
        .and_then(|s| s.database.clone())
        .context("database source")?;
    ensure!(
        db.row_counts_match == Some(true) && db.rows == Some(1050),
        "{}",
        describe(&r)
    );
    drop(two);
    Ok(())
}

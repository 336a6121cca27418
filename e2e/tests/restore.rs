//! Restore scenarios against the local environment with the operator installed
//! (`e2e/local up && e2e/install-operator`): a namespace with a PVC holding files, a
//! PostgreSQL database (the environment's server) and some manifests is backed up by a
//! BackupPolicy, then restored (into a new namespace, into an existing server, over
//! obstacles) and compared with the original. Each test works in its own namespaces,
//! bucket and databases and removes them afterwards.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use lifeboat::crd::backup::{Backup, BackupPhase, SourcePhase};
use lifeboat::crd::restore::{Restore, RestorePhase, RestoredSource};
use lifeboat_e2e::testing::{self, TestNs, create, phase, termination_message, wait_for, wait_pod};
use serde_json::json;

const LONG: Duration = Duration::from_secs(180);

fn env(name: &str) -> String {
    testing::env(name).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------
// Outside the cluster: S3 buckets and the environment's PostgreSQL

struct S3 {
    client: aws_sdk_s3::Client,
}

impl S3 {
    fn new() -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .http_client(http)
            .endpoint_url(env("LIFEBOAT_TEST_S3_ENDPOINT"))
            .region(aws_sdk_s3::config::Region::new(env(
                "LIFEBOAT_TEST_S3_REGION",
            )))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
                env("LIFEBOAT_TEST_S3_SECRET_KEY"),
                None,
                None,
                "e2e",
            ))
            .force_path_style(true)
            .build();
        S3 {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }

    async fn keys(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page?
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }

    async fn delete(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await?;
        Ok(())
    }

    async fn remove_bucket(&self, bucket: &str) {
        match self.keys(bucket, "").await {
            Ok(keys) => {
                for k in keys {
                    if let Err(e) = self.delete(bucket, &k).await {
                        eprintln!("cleanup: deleting {bucket}/{k}: {e:#}");
                    }
                }
            }
            Err(e) => eprintln!("cleanup: listing {bucket}: {e:#}"),
        }
        if let Err(e) = self.client.delete_bucket().bucket(bucket).send().await {
            eprintln!(
                "cleanup: deleting bucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            );
        }
    }
}

/// Runs SQL on a PostgreSQL server (the environment's, or a restored one) and returns the
/// unaligned, tuples-only output.
async fn psql(
    host: &str,
    port: &str,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-d",
            db,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .context("running psql")?;
    ensure!(
        out.status.success(),
        "psql on {host}:{port}/{db} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn env_psql(db: &str, sql: &str) -> anyhow::Result<String> {
    psql(
        &env("LIFEBOAT_TEST_PG_HOST"),
        &env("LIFEBOAT_TEST_PG_PORT"),
        &env("LIFEBOAT_TEST_PG_USER"),
        &env("LIFEBOAT_TEST_PG_PASSWORD"),
        db,
        sql,
    )
    .await
}

/// What a restored database must reproduce: exact counts and a checksum over every row.
const FINGERPRINT_SQL: &str = "SELECT (SELECT count(*) FROM orders) || ' ' || (SELECT count(*) FROM items) || ' ' || \
     (SELECT md5(string_agg(id || ':' || v || ':' || amount::text || ':' || coalesce(note, '-'), ',' ORDER BY id)) FROM orders) || ' ' || \
     (SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM items)";

// ---------------------------------------------------------------------------------------
// Inside the cluster

fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A run-once pod executing `script` with sh; its stdout is the termination message.
async fn run_script(ns: &str, name: &str, script: &str, claim: &str) -> anyhow::Result<String> {
    let client = testing::client().await?;
    let pods: Api<Pod> = Api::namespaced(client, ns);
    create(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main", "image": "busybox:1.36",
                    "command": ["sh", "-c", format!("{{ {script} ; }} > /dev/termination-log 2>&1")],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": [{"name": "d", "mountPath": "/data"}]
                }],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]
            }
        }),
    )
    .await?;
    let pod = wait_pod(&pods, name, &["Succeeded", "Failed"], LONG).await?;
    let msg = termination_message(&pod, "main").unwrap_or_default();
    ensure!(phase(&pod) == "Succeeded", "pod {ns}/{name} failed: {msg}");
    pods.delete(name, &DeleteParams::background()).await?;
    Ok(msg)
}

/// Every entry of the tree under /data: path, type, mode, owner and content hash.
const TREE_SCRIPT: &str = "cd /data && find . -mindepth 1 | sort | while read f; do \
    if [ -L \"$f\" ]; then echo \"L $f -> $(readlink \"$f\") $(stat -c '%u:%g' \"$f\")\"; \
    elif [ -d \"$f\" ]; then echo \"D $f $(stat -c '%a %u:%g' \"$f\")\"; \
    else echo \"F $f $(stat -c '%a %u:%g %s' \"$f\") $(sha256sum < \"$f\" | cut -c1-64)\"; fi; done";

/// The source namespace: files, a database, manifests, a policy and a successful Backup.
struct Source {
    ns: TestNs,
    bucket: String,
    db: String,
    tree: String,
    fingerprint: String,
    /// Other namespaces and databases the test made, removed with the source.
    extra_ns: Vec<String>,
    extra_dbs: Vec<String>,
}

impl Source {
    async fn create(prefix: &str) -> anyhow::Result<Source> {
        let ns = TestNs::create(prefix).await?;
        let id = suffix();
        let mut src = Source {
            bucket: format!("e2e-restore-{id}"),
            db: format!("e2e_restore_{id}"),
            ns,
            tree: String::new(),
            fingerprint: String::new(),
            extra_ns: Vec::new(),
            extra_dbs: Vec::new(),
        };
        if let Err(e) = src.fill().await {
            src.cleanup().await;
            return Err(e);
        }
        Ok(src)
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let s3 = S3::new();
        s3.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await?;
        env_psql("postgres", &format!("CREATE DATABASE {}", self.db)).await?;
        env_psql(
            &self.db,
            "CREATE TABLE orders(id int PRIMARY KEY, v text NOT NULL, amount numeric(10,2), note text); \
             INSERT INTO orders SELECT g, md5(g::text), g * 1.25, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 2500) g; \
             CREATE TABLE items(id int); INSERT INTO items SELECT generate_series(1, 37);",
        )
        .await?;
        self.fingerprint = env_psql(&self.db, FINGERPRINT_SQL).await?;
        let ns = self.ns.name.clone();
        let client = &self.ns.client;
        let password: String = (0..40)
            .map(|_| {
                char::from(
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        [rand::random::<u8>() as usize % 62],
                )
            })
            .collect();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        for (name, data) in [
            (
                "s3",
                json!({"AWS_ACCESS_KEY_ID": env("LIFEBOAT_TEST_S3_ACCESS_KEY"), "AWS_SECRET_ACCESS_KEY": env("LIFEBOAT_TEST_S3_SECRET_KEY")}),
            ),
            ("repo", json!({"password": password})),
            (
                "pg",
                json!({"username": env("LIFEBOAT_TEST_PG_USER"), "password": env("LIFEBOAT_TEST_PG_PASSWORD")}),
            ),
        ] {
            create(&secrets, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})).await?;
        }
        apply_yaml(&ns, &format!(
            r#"
apiVersion: lifeboat.dev/v1alpha1
kind: BackupStore
metadata: {{name: s3}}
spec:
  s3: {{endpoint: "{endpoint}", bucket: {bucket}, prefix: repo, region: {region}, credentials: {{name: s3}}}}
  repositoryPassword: {{name: repo, key: password}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec: {{accessModes: [ReadWriteOnce], storageClassName: {class}, resources: {{requests: {{storage: 3Gi}}}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config, labels: {{app: web}}}}
data: {{greeting: hello, mode: restored}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: web, image: "busybox:1.36", command: [sleep, "3600"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{type: NodePort, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080, protocol: TCP}}]}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: report}}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{{name: r, image: "busybox:1.36", command: [echo, hi]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web}}
spec:
  rules: [{{host: web.example.com, http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}}}]
"#,
            endpoint = env("LIFEBOAT_TEST_S3_ENDPOINT"),
            bucket = self.bucket,
            region = env("LIFEBOAT_TEST_S3_REGION"),
            class = env("LIFEBOAT_TEST_STORAGE_CLASS"),
        ))
        .await?;
        // Files of several owners and modes, nested, binary, a symlink, an empty file.
        run_script(
            &ns,
            "writer",
            "mkdir -p /data/app/logs /data/empty-dir && head -c 2500000 /dev/urandom > /data/app/blob.bin && \
             echo hello > /data/app/hello.txt && chmod 640 /data/app/hello.txt && chown 1234:2345 /data/app/hello.txt && \
             printf 'x' > '/data/app/logs/a file with spaces.log' && chown -R 999:999 /data/app/logs && \
             : > /data/empty && chmod 600 /data/empty && ln -s app/hello.txt /data/link && chmod 750 /data/app && echo ok",
            "data",
        )
        .await?;
        self.tree = run_script(&ns, "tree", TREE_SCRIPT, "data").await?;
        // A Backup fails at once on a store that is not ready; the store controller
        // retries passing S3 errors on its own, so wait for it as a user would.
        let stores: Api<lifeboat::crd::BackupStore> = Api::namespaced(client.clone(), &ns);
        wait_for("BackupStore s3 to be ready", LONG, || async {
            Ok(stores.get_opt("s3").await?.filter(|s| {
                s.status.as_ref().is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            }))
        })
        .await?;
        ensure!(
            self.tree.contains("blob.bin"),
            "unexpected tree: {}",
            self.tree
        );
        apply_yaml(&ns, &format!(
            r#"
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPolicy
metadata: {{name: app}}
spec:
  storeRef: {{name: s3}}
  schedule: {{cron: "0 0 1 1 *"}}
  sources:
    volumes: [{{pvcName: data, copyMethod: Direct}}]
    databases: [{{name: pg, engine: postgres, host: "{host}", port: {port}, database: {db}, credentials: {{name: pg}}}}]
    manifests: {{}}
---
apiVersion: lifeboat.dev/v1alpha1
kind: Backup
metadata: {{name: b1}}
spec: {{policyRef: {{name: app}}}}
"#,
            host = env("LIFEBOAT_TEST_PG_HOST"),
            port = env("LIFEBOAT_TEST_PG_PORT"),
            db = self.db,
        ))
        .await?;
        let backups: Api<Backup> = Api::namespaced(client.clone(), &ns);
        let b = wait_for("Backup b1 to finish", LONG, || async {
            Ok(backups.get_opt("b1").await?.filter(|b| {
                b.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_finished())
            }))
        })
        .await?;
        let st = b.status.unwrap_or_default();
        ensure!(
            st.phase == Some(BackupPhase::Succeeded),
            "Backup b1 ended {:?}: {:?} {:?}",
            st.phase,
            st.failure,
            st.sources
                .iter()
                .map(|s| (&s.name, &s.failure))
                .collect::<Vec<_>>()
        );
        ensure!(st.sources.iter().all(|s| s.phase == SourcePhase::Succeeded));
        Ok(())
    }

    /// A namespace for restores; `allow` is the value of the invitation annotation.
    async fn target(&mut self, prefix: &str, allow: Option<&str>) -> anyhow::Result<String> {
        let t = TestNs::create(prefix).await?;
        let name = t.name.clone();
        self.extra_ns.push(name.clone());
        if let Some(a) = allow {
            let patch =
                json!({"metadata": {"annotations": {"lifeboat.dev/allow-restore-from": a}}});
            Api::<Namespace>::all(t.client.clone())
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(name)
    }

    async fn restore(&self, name: &str, spec: serde_json::Value) -> anyhow::Result<Restore> {
        let api: Api<Restore> = self.ns.api();
        create(
            &api,
            json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": name}, "spec": spec}),
        )
        .await?;
        let r = wait_for(&format!("Restore {name} to finish"), LONG, || async {
            Ok(api.get_opt(name).await?.filter(|r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_finished())
            }))
        })
        .await?;
        Ok(r)
    }

    async fn cleanup(&self) {
        let client = &self.ns.client;
        // Restores first: their finalizer must see the target namespaces alive or gone,
        // never the controller gone.
        let restores: Api<Restore> = self.ns.api();
        if let Ok(list) = restores.list(&ListParams::default()).await {
            for r in list.items {
                let _ = restores
                    .delete(&r.name_any(), &DeleteParams::default())
                    .await;
            }
        }
        for n in self.extra_ns.iter().chain(std::iter::once(&self.ns.name)) {
            let _ = Api::<Namespace>::all(client.clone())
                .delete(n, &DeleteParams::default())
                .await;
        }
        for db in self.extra_dbs.iter().chain(std::iter::once(&self.db)) {
            let _ = env_psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            )
            .await;
        }
        S3::new().remove_bucket(&self.bucket).await;
    }
}

/// Server-side applies a multi-document YAML into `ns` (as a test user would).
async fn apply_yaml(ns: &str, yaml: &str) -> anyhow::Result<()> {
    let client = testing::client().await?;
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await?;
    for doc in yaml.split("\n---\n").filter(|d| !d.trim().is_empty()) {
        let obj: serde_json::Value =
            serde_saphyr::from_str(doc).with_context(|| format!("parsing {doc}"))?;
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let (ar, _) = discovery
            .resolve_gvk(&gvk)
            .with_context(|| format!("{api_version} {kind} is not served"))?;
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(name, &PatchParams::apply("e2e-test"), &Patch::Apply(&obj))
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
    }
    Ok(())
}

/// Creates a backed-up source, runs the scenario, and always cleans up.
macro_rules! with_source {
    ($prefix:expr, $scenario:ident) => {{
        let started = Instant::now();
        let mut src = Source::create($prefix).await?;
        eprintln!(
            "[{}] source namespace {} backed up in {:.1}s",
            $prefix,
            src.ns.name,
            started.elapsed().as_secs_f64()
        );
        let result = $scenario(&mut src).await;
        src.cleanup().await;
        result
    }};
}

fn source<'a>(r: &'a Restore, name: &str) -> anyhow::Result<&'a RestoredSource> {
    r.status
        .as_ref()
        .and_then(|s| s.sources.iter().find(|x| x.name == name))
        .with_context(|| format!("Restore {} has no source {name}", r.name_any()))
}

fn describe(r: &Restore) -> String {
    serde_json::to_string_pretty(&r.status).unwrap_or_default()
}

fn report_times(r: &Restore) {
    let st = r.status.clone().unwrap_or_default();
    eprintln!(
        "restore {}: {:?} in {:.3}s",
        r.name_any(),
        st.phase,
        st.duration_seconds.unwrap_or(-1.0)
    );
    for s in &st.sources {
        eprintln!(
            "  {:?} {}: {:?} total {:.3}s, mover {:.3}s, {} files, {} bytes{}",
            s.kind,
            s.name,
            s.phase,
            s.duration_seconds.unwrap_or(-1.0),
            s.mover_seconds.unwrap_or(-1.0),
            s.files.unwrap_or(0),
            s.bytes.unwrap_or(0),
            s.database
                .as_ref()
                .and_then(|d| d.server_ready_time.as_ref().zip(s.start_time.as_ref()))
                .map(|(ready, start)| format!(
                    ", server ready after {:.3}s",
                    ready.0.duration_since(start.0).as_secs_f64()
                ))
                .unwrap_or_default()
        );
        if let Some(f) = &s.failure {
            eprintln!("    {}: {}", f.reason, f.message);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn every_source_restores_into_a_new_namespace_identically() -> anyhow::Result<()> {
    with_source!("e2e-rst-all", restore_everything)
}

async fn restore_everything(src: &mut Source) -> anyhow::Result<()> {
    let target = src.target("e2e-rst-all-copy", None).await?;
    // Invite the source namespace (among others), as a platform team would.
    let patch = json!({"metadata": {"annotations": {"lifeboat.dev/allow-restore-from": format!("elsewhere, {}", src.ns.name)}}});
    Api::<Namespace>::all(src.ns.client.clone())
        .patch(&target, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let r = src
        .restore(
            "everything",
            json!({
                "source": {"backupRef": {"name": "b1"}},
                "targetNamespace": target,
                "databases": [{"source": "pg", "ephemeral": {}}],
                "manifests": {"suppressSideEffects": true}
            }),
        )
        .await?;
    report_times(&r);
    let st = r.status.clone().unwrap_or_default();
    ensure!(
        st.phase == Some(RestorePhase::Succeeded),
        "{}",
        describe(&r)
    );
    ensure!(st.restore_point.as_ref().map(|p| p.backup.as_str()) == Some("b1"));
    ensure!(st.target_namespace.as_deref() == Some(target.as_str()));
    // Real, ordered timestamps.
    let start = st.start_time.clone().context("startTime")?.0;
    let end = st.completion_time.clone().context("completionTime")?.0;
    ensure!(end > start, "completion {end} not after start {start}");
    for s in &st.sources {
        let (s0, m0, e0) = (
            s.start_time.clone().context("source startTime")?.0,
            s.mover_start_time.clone().context("moverStartTime")?.0,
            s.completion_time
                .clone()
                .context("source completionTime")?
                .0,
        );
        ensure!(
            start <= s0 && s0 <= m0 && m0 < e0 && e0 <= end,
            "timeline of {}: {s0} {m0} {e0}",
            s.name
        );
    }

    // The file tree: same paths, types, modes, owners and content hashes.
    let tree = run_script(&target, "tree", TREE_SCRIPT, "data").await?;
    ensure!(
        tree == src.tree,
        "restored tree differs:\n--- source\n{}\n--- restored\n{tree}",
        src.tree
    );
    let pvc = Api::<PersistentVolumeClaim>::namespaced(src.ns.client.clone(), &target)
        .get("data")
        .await?;
    let size = pvc
        .spec
        .and_then(|s| s.resources)
        .and_then(|r| r.requests)
        .map(|r| r["storage"].0.clone());
    ensure!(
        size.as_deref() == Some("3Gi"),
        "restored PVC size {size:?}, want the source's 3Gi"
    );

    // The database, in an ephemeral server in the target namespace.
    let db = source(&r, "pg")?
        .database
        .clone()
        .context("database status")?;
    ensure!(
        db.image.as_deref() == Some("postgres:15"),
        "image {:?}",
        db.image
    );
    ensure!(db.row_counts_match == Some(true), "{}", describe(&r));
    ensure!(db.rows == Some(2537), "rows {:?}", db.rows);
    let counts = st.row_counts.get("pg").context("status.rowCounts.pg")?;
    ensure!(counts.restored == counts.backup && counts.restored[&src.db]["public.orders"] == 2500);
    let client = &src.ns.client;
    let svc = Api::<Service>::namespaced(client.clone(), &target)
        .get(db.server_name.as_deref().context("server name")?)
        .await?;
    let ip = svc.spec.and_then(|s| s.cluster_ip).context("cluster IP")?;
    let login = Api::<Secret>::namespaced(client.clone(), &target)
        .get(&db.credentials.context("credentials")?.name)
        .await?
        .data
        .context("login data")?;
    let text = |k: &str| String::from_utf8(login[k].0.clone()).unwrap_or_default();
    let restored = psql(
        &ip,
        "5432",
        &text("username"),
        &text("password"),
        db.database.as_deref().unwrap_or_default(),
        FINGERPRINT_SQL,
    )
    .await?;
    ensure!(
        restored == src.fingerprint,
        "restored database {restored} != source {}",
        src.fingerprint
    );

    // The manifests, with their side effects suppressed.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &target)
        .get("app-config")
        .await?;
    ensure!(
        cm.data
            .unwrap_or_default()
            .get("greeting")
            .map(String::as_str)
            == Some("hello")
    );
    let web = Api::<Deployment>::namespaced(client.clone(), &target)
        .get("web")
        .await?;
    ensure!(
        web.spec.and_then(|s| s.replicas) == Some(2),
        "replicas as declared"
    );
    let svc = Api::<Service>::namespaced(client.clone(), &target)
        .get("web")
        .await?
        .spec
        .context("spec")?;
    ensure!(
        svc.type_.as_deref() == Some("ClusterIP"),
        "Service type {:?}",
        svc.type_
    );
    ensure!(
        svc.ports
            .unwrap_or_default()
            .iter()
            .all(|p| p.node_port.is_none())
    );
    let cron = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &target,
        &kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "batch", "v1", "CronJob",
        )),
    )
    .get("report")
    .await?;
    ensure!(
        cron.data["spec"]["suspend"] == json!(true),
        "CronJob not suspended: {}",
        cron.data["spec"]
    );
    let ingresses = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &target,
        &kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "networking.k8s.io",
            "v1",
            "Ingress",
        )),
    )
    .list(&ListParams::default())
    .await?;
    ensure!(ingresses.items.is_empty(), "Ingresses must be dropped");
    let m = source(&r, "manifests")?
        .manifests
        .clone()
        .context("manifests status")?;
    // ConfigMap, Deployment, Service, CronJob applied; the PVC the volume restore made is
    // left alone; the Ingress dropped.
    ensure!(
        m.applied == 4 && m.existing == 1 && m.dropped == 1 && m.failed.is_empty(),
        "{m:?}"
    );
    // Movers and copied credentials are gone from the target; the data stays.
    let jobs = Api::<Job>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    ensure!(
        jobs.items.is_empty(),
        "mover Jobs left: {:?}",
        jobs.items.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    let mirror = Api::<Secret>::namespaced(client.clone(), &target)
        .get_opt("everything-rst-credentials")
        .await?;
    ensure!(mirror.is_none(), "the credential copy must be removed");

    // Deleting the Restore removes its database server, never the restored volume.
    Api::<Restore>::namespaced(client.clone(), &src.ns.name)
        .delete("everything", &DeleteParams::default())
        .await?;
    let deps = Api::<Deployment>::namespaced(client.clone(), &target);
    let server = db.server_name.clone().unwrap_or_default();
    wait_for("the ephemeral server to be removed", LONG, || async {
        Ok(deps.get_opt(&server).await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &target)
            .get_opt("data")
            .await?
            .is_some()
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_database_restores_into_an_existing_server_and_never_over_data() -> anyhow::Result<()> {
    with_source!("e2e-rst-db", restore_into_existing_server)
}

async fn restore_into_existing_server(src: &mut Source) -> anyhow::Result<()> {
    let copy = format!("{}_copy", src.db);
    src.extra_dbs.push(copy.clone());
    let spec = |name: &str| {
        json!({
            "source": {"policyRef": {"name": "app"}},
            "volumes": {"skip": true},
            "databases": [{"source": "pg", "target": {
                "host": env("LIFEBOAT_TEST_PG_HOST"),
                "port": env("LIFEBOAT_TEST_PG_PORT").parse::<u16>().unwrap_or(5432),
                "database": name,
                "credentials": {"name": "pg"},
                "createDatabase": true
            }}]
        })
    };
    let r = src.restore("into-existing", spec(&copy)).await?;
    report_times(&r);
    ensure!(
        r.status.as_ref().and_then(|s| s.phase) == Some(RestorePhase::Succeeded),
        "{}",
        describe(&r)
    );
    let db = source(&r, "pg")?
        .database
        .clone()
        .context("database status")?;
    ensure!(
        db.database.as_deref() == Some(copy.as_str()) && db.row_counts_match == Some(true),
        "{db:?}"
    );
    let restored = env_psql(&copy, FINGERPRINT_SQL).await?;
    ensure!(
        restored == src.fingerprint,
        "restored {restored} != source {}",
        src.fingerprint
    );
    // Ownership survives into a server that has the roles.
    let owner = env_psql(
        &copy,
        "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'",
    )
    .await?;
    ensure!(owner == env("LIFEBOAT_TEST_PG_USER"), "owner {owner}");

    // The same database again: it now holds tables, so the restore refuses.
    let r = src.restore("over-data", spec(&copy)).await?;
    let st = r.status.clone().unwrap_or_default();
    ensure!(st.phase == Some(RestorePhase::Failed), "{}", describe(&r));
    let f = source(&r, "pg")?.failure.clone().context("failure")?;
    ensure!(
        f.reason == "TargetExists" && f.message.contains("already holds"),
        "{f:?}"
    );
    ensure!(
        env_psql(&copy, FINGERPRINT_SQL).await? == src.fingerprint,
        "the data must be untouched"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_namespace_that_did_not_invite_the_restore_gets_nothing() -> anyhow::Result<()> {
    with_source!("e2e-rst-deny", restore_uninvited)
}

async fn restore_uninvited(src: &mut Source) -> anyhow::Result<()> {
    let target = src
        .target("e2e-rst-deny-copy", Some("some-other-namespace"))
        .await?;
    let r = src
        .restore(
            "uninvited",
            json!({
                "source": {"backupRef": {"name": "b1"}},
                "targetNamespace": target,
                "databases": [{"source": "pg", "ephemeral": {}}],
                "manifests": {}
            }),
        )
        .await?;
    let st = r.status.clone().unwrap_or_default();
    ensure!(st.phase == Some(RestorePhase::Failed), "{}", describe(&r));
    let f = st.failure.clone().context("failure")?;
    ensure!(
        f.reason == "TargetNotAllowed" && f.message.contains("lifeboat.dev/allow-restore-from"),
        "{f:?}"
    );
    ensure!(st.sources.is_empty(), "no source may start");
    ensure!(
        r.finalizers().is_empty(),
        "nothing to clean up, so no finalizer"
    );
    let client = &src.ns.client;
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    let jobs = Api::<Job>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    let deps = Api::<Deployment>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    let svcs = Api::<Service>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    let sas =
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &target)
            .list(&ListParams::default())
            .await?;
    ensure!(
        pvcs.items.is_empty()
            && jobs.items.is_empty()
            && deps.items.is_empty()
            && svcs.items.is_empty()
    );
    ensure!(
        cms.items.iter().all(|c| c.name_any() == "kube-root-ca.crt"),
        "ConfigMaps written"
    );
    ensure!(
        secrets
            .items
            .iter()
            .all(|s| s.type_.as_deref() == Some("kubernetes.io/service-account-token")),
        "Secrets written: {:?}",
        secrets
            .items
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>()
    );
    ensure!(
        sas.items.iter().all(|s| s.name_any() == "default"),
        "no mover ServiceAccount"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn failures_are_per_source_an_existing_pvc_and_a_lost_snapshot() -> anyhow::Result<()> {
    with_source!("e2e-rst-exists", restore_with_obstacles)
}

async fn restore_with_obstacles(src: &mut Source) -> anyhow::Result<()> {
    let target = src.target("e2e-rst-exists-copy", Some("*")).await?;
    // Someone's data is already there under the name the volume would take.
    let client = &src.ns.client;
    create(
        &Api::<PersistentVolumeClaim>::namespaced(client.clone(), &target),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": env("LIFEBOAT_TEST_STORAGE_CLASS"),
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await?;
    run_script(
        &target,
        "mark",
        "echo precious > /data/mine.txt && echo ok",
        "data",
    )
    .await?;
    // The manifests snapshot is gone from the repository (as after a careless prune).
    let backup = Api::<Backup>::namespaced(client.clone(), &src.ns.name)
        .get("b1")
        .await?;
    let snap = backup
        .status
        .unwrap_or_default()
        .sources
        .into_iter()
        .find(|s| s.name == "manifests")
        .and_then(|s| s.snapshot_id)
        .context("manifests snapshot")?;
    let s3 = S3::new();
    let key = format!("repo/snapshots/{snap}");
    ensure!(
        s3.keys(&src.bucket, &key).await? == vec![key.clone()],
        "snapshot object {key} not found"
    );
    s3.delete(&src.bucket, &key).await?;

    let r = src
        .restore(
            "partly",
            json!({
                "source": {"backupRef": {"name": "b1"}},
                "targetNamespace": target,
                "databases": [{"source": "pg", "ephemeral": {"startupTimeout": "2m"}}],
                "manifests": {"scaleToZero": true}
            }),
        )
        .await?;
    report_times(&r);
    let st = r.status.clone().unwrap_or_default();
    ensure!(
        st.phase == Some(RestorePhase::PartiallyFailed),
        "{}",
        describe(&r)
    );
    let vol = source(&r, "data")?;
    let f = vol.failure.clone().context("volume failure")?;
    ensure!(f.reason == "TargetExists", "{f:?}");
    let man = source(&r, "manifests")?;
    let f = man.failure.clone().context("manifests failure")?;
    ensure!(
        f.reason == "SnapshotMissing" && f.message.contains(&snap),
        "{f:?}"
    );
    ensure!(source(&r, "pg")?.phase == SourcePhase::Succeeded);
    // The existing volume is untouched, and no workload was created from the manifests.
    let tree = run_script(&target, "look", "ls /data && cat /data/mine.txt", "data").await?;
    ensure!(
        tree.split_whitespace().collect::<Vec<_>>() == ["mine.txt", "precious"],
        "existing PVC changed: {tree}"
    );
    ensure!(
        Api::<Deployment>::namespaced(client.clone(), &target)
            .get_opt("web")
            .await?
            .is_none()
    );
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &src.ns.name)
            .list(&ListParams::default())
            .await?;
    let reasons: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|o| o.name.as_deref()) == Some("partly"))
        .filter_map(|e| e.reason.clone())
        .collect();
    for want in [
        "RestoreStarted",
        "SourceFailed",
        "SourceRestored",
        "RestorePartiallyFailed",
    ] {
        ensure!(
            reasons.iter().any(|r| r == want),
            "no {want} event in {reasons:?}"
        );
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_restore_of_a_missing_backup_or_policy_fails_naming_which() -> anyhow::Result<()> {
    let ns = TestNs::create_with_pod_security("e2e-rst-missing", "restricted").await?;
    let api: Api<Restore> = ns.api();
    let result = async {
        create(
            &api,
            json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": "nothing"},
                   "spec": {"source": {"backupRef": {"name": "does-not-exist"}}}}),
        )
        .await?;
        let r = wait_for("Restore nothing to finish", LONG, || async {
            Ok(api.get_opt("nothing").await?.filter(|r| {
                r.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_finished())
            }))
        })
        .await?;
        let st = r.status.clone().unwrap_or_default();
        let f = st.failure.clone().context("failure")?;
        if st.phase != Some(RestorePhase::Failed) || f.reason != "RestorePointNotFound" {
            bail!("{}", describe(&r));
        }
        ensure!(f.message.contains("does-not-exist"), "{f:?}");
        let c = st.conditions.iter().find(|c| c.type_ == "Complete").context("Complete")?;
        ensure!(c.status == "True" && c.reason == "Failed");
        // A policy that does not exist is named as such, not as a missing restore point.
        create(
            &api,
            json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": "no-policy"},
                   "spec": {"source": {"policyRef": {"name": "ghost"}}}}),
        )
        .await?;
        let r = wait_for("Restore no-policy to finish", LONG, || async {
            Ok(api.get_opt("no-policy").await?.filter(|r| {
                r.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_finished())
            }))
        })
        .await?;
        let f = r.status.clone().unwrap_or_default().failure.context("failure")?;
        ensure!(
            f.reason == "PolicyNotFound" && f.message.contains("\"ghost\""),
            "{}",
            describe(&r)
        );
        Ok(())
    }
    .await;
    let _ = api.delete("nothing", &DeleteParams::default()).await;
    ns.delete().await?;
    result
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn an_ephemeral_server_that_cannot_start_fails_with_the_pods_reason() -> anyhow::Result<()> {
    with_source!("e2e-rst-noimage", restore_with_a_bad_image)
}

async fn restore_with_a_bad_image(src: &mut Source) -> anyhow::Result<()> {
    let target = src.target("e2e-rst-noimage-copy", Some("*")).await?;
    let r = src
        .restore(
            "bad-image",
            json!({
                "source": {"backupRef": {"name": "b1"}},
                "targetNamespace": target,
                "volumes": {"skip": true},
                "databases": [{"source": "pg", "ephemeral": {"image": "lifeboat.dev/no-such-image:1"}}]
            }),
        )
        .await?;
    report_times(&r);
    let st = r.status.clone().unwrap_or_default();
    ensure!(st.phase == Some(RestorePhase::Failed), "{}", describe(&r));
    let f = st.failure.clone().context("failure")?;
    ensure!(
        f.reason == "DatabaseStartFailed"
            && f.message.contains("lifeboat.dev/no-such-image:1")
            && (f.message.contains("ErrImagePull") || f.message.contains("ImagePullBackOff"))
            // the pull error itself, not the startup timeout
            && !f.message.contains("not ready after"),
        "{f:?}"
    );
    // The broken server is removed at once; nothing else was started.
    let client = &src.ns.client;
    let deps = Api::<Deployment>::namespaced(client.clone(), &target);
    wait_for("the failed server to be removed", LONG, || async {
        Ok(deps
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    let jobs = Api::<Job>::namespaced(client.clone(), &target)
        .list(&ListParams::default())
        .await?;
    ensure!(jobs.items.is_empty(), "no mover may run without a server");
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_restore_survives_a_controller_restart_without_duplicates() -> anyhow::Result<()> {
    with_source!("e2e-rst-crash", restore_across_a_restart)
}

async fn restore_across_a_restart(src: &mut Source) -> anyhow::Result<()> {
    let client = src.ns.client.clone();
    let api: Api<Restore> = src.ns.api();
    // Into its own namespace (its Jobs stay, owned), the volume under a new name.
    create(
        &api,
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": "crash"},
               "spec": {"source": {"backupRef": {"name": "b1"}},
                        "volumes": {"rename": {"data": "data-restored"}},
                        "databases": [{"source": "pg", "ephemeral": {}}],
                        "manifests": {"kinds": ["ConfigMap"]}}}),
    )
    .await?;
    wait_for("Restore crash to start", LONG, || async {
        Ok(api
            .get_opt("crash")
            .await?
            .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(RestorePhase::Running)))
    })
    .await?;
    // Kill every controller replica mid-restore.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "lifeboat-system");
    let lp = ListParams::default().labels("app.kubernetes.io/component=controller");
    let killed: Vec<String> = pods
        .list(&lp)
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    ensure!(
        !killed.is_empty(),
        "no controller pod in lifeboat-system: run e2e/install-operator"
    );
    for p in &killed {
        pods.delete(
            p,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await?;
    }
    let r = wait_for("Restore crash to finish", LONG, || async {
        Ok(api.get_opt("crash").await?.filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        }))
    })
    .await?;
    report_times(&r);
    ensure!(
        r.status.as_ref().and_then(|s| s.phase) == Some(RestorePhase::Succeeded),
        "{}",
        describe(&r)
    );
    // One Job per source, each run once: the new controller adopted what the old one made.
    let jobs = Api::<Job>::namespaced(client.clone(), &src.ns.name)
        .list(&ListParams::default().labels(&format!(
            "lifeboat.dev/restore-uid={}",
            r.metadata.uid.clone().unwrap_or_default()
        )))
        .await?;
    let mut names: Vec<_> = jobs.items.iter().map(|j| j.name_any()).collect();
    names.sort();
    ensure!(
        names
            == [
                "crash-rst-db-pg",
                "crash-rst-manifests",
                "crash-rst-vol-data"
            ],
        "{names:?}"
    );
    for j in &jobs.items {
        let st = j.status.clone().unwrap_or_default();
        ensure!(
            st.succeeded == Some(1) && st.failed.unwrap_or(0) == 0,
            "{} ran {:?}/{:?}",
            j.name_any(),
            st.succeeded,
            st.failed
        );
    }
    let deps = Api::<Deployment>::namespaced(client.clone(), &src.ns.name)
        .list(&ListParams::default().labels("app.kubernetes.io/component=restore-database"))
        .await?;
    ensure!(
        deps.items.len() == 1,
        "one ephemeral server, not {}",
        deps.items.len()
    );
    let tree = run_script(&src.ns.name, "tree-restored", TREE_SCRIPT, "data-restored").await?;
    ensure!(tree == src.tree, "restored tree differs");
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_server_refused_by_a_resource_quota_fails_at_once() -> anyhow::Result<()> {
    with_source!("e2e-rst-quota", restore_under_a_quota)
}

async fn restore_under_a_quota(src: &mut Source) -> anyhow::Result<()> {
    // A sandbox as a DR drill makes it: a quota that wants limits on every pod.
    let target = src.target("e2e-rst-quota-copy", Some("*")).await?;
    create(
        &Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(
            src.ns.client.clone(),
            &target,
        ),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "sandbox"},
               "spec": {"hard": {"limits.memory": "4Gi", "limits.cpu": "4"}}}),
    )
    .await?;
    let r = src
        .restore(
            "quota",
            json!({
                "source": {"backupRef": {"name": "b1"}},
                "targetNamespace": target,
                "volumes": {"skip": true},
                "databases": [{"source": "pg", "ephemeral": {}}]
            }),
        )
        .await?;
    report_times(&r);
    let f = source(&r, "pg")?.failure.clone().context("failure")?;
    // The admission refusal itself, not the startup timeout ("not ready after 5m").
    ensure!(
        f.reason == "DatabaseStartFailed"
            && f.message.contains("refused")
            && f.message.contains("limits"),
        "{f:?}"
    );

    // With limits given, the same restore runs inside the quota.
    let r = src
        .restore(
            "quota-ok",
            json!({
                "source": {"backupRef": {"name": "b1"}},
                "targetNamespace": target,
                "volumes": {"skip": true},
                "databases": [{"source": "pg", "ephemeral": {
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}}]
            }),
        )
        .await?;
    report_times(&r);
    // The mover pod has no limits (the policy sets none): refused in turn, which the
    // Restore reports instead of waiting for the Job's deadline.
    let f = source(&r, "pg")?.failure.clone().context("failure")?;
    ensure!(
        f.reason == "MoverCannotStart" && f.message.contains("ResourceQuota"),
        "{f:?}"
    );
    Ok(())
}

/// Runs SQL on a MariaDB server and returns the tab-separated output without headers.
async fn mariadb(
    host: &str,
    port: &str,
    user: &str,
    password: &str,
    db: Option<&str>,
    sql: &str,
) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.args(["--batch", "--skip-column-names", "--connect-timeout=10"])
        .args(["-h", host, "-P", port, "-u", user])
        .env("MYSQL_PWD", password);
    if let Some(db) = db {
        cmd.arg(format!("--database={db}"));
    }
    let out = cmd
        .args(["-e", sql])
        .output()
        .await
        .context("running mariadb")?;
    ensure!(
        out.status.success(),
        "mariadb on {host}:{port} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn env_mariadb(db: Option<&str>, sql: &str) -> anyhow::Result<String> {
    mariadb(
        &env("LIFEBOAT_TEST_MYSQL_HOST"),
        &env("LIFEBOAT_TEST_MYSQL_PORT"),
        &env("LIFEBOAT_TEST_MYSQL_USER"),
        &env("LIFEBOAT_TEST_MYSQL_PASSWORD"),
        db,
        sql,
    )
    .await
}

const MARIADB_FINGERPRINT: &str = "SELECT CONCAT((SELECT COUNT(*) FROM accounts), ' ', \
     (SELECT MD5(GROUP_CONCAT(CONCAT(id, ':', name, ':', balance) ORDER BY id SEPARATOR ',')) FROM accounts))";

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_mariadb_database_restores_into_an_ephemeral_server_of_its_version() -> anyhow::Result<()>
{
    // Database movers and the throwaway server need nothing beyond `restricted`.
    let ns = TestNs::create_with_pod_security("e2e-rst-maria", "restricted").await?;
    let id = suffix();
    let (bucket, db) = (format!("e2e-restore-{id}"), format!("e2e_restore_{id}"));
    let result = mariadb_scenario(&ns, &bucket, &db).await;
    let _ = Api::<Restore>::namespaced(ns.client.clone(), &ns.name)
        .delete("maria", &DeleteParams::default())
        .await;
    let _ = env_mariadb(None, &format!("DROP DATABASE IF EXISTS {db}")).await;
    S3::new().remove_bucket(&bucket).await;
    ns.delete().await?;
    result
}

async fn mariadb_scenario(ns: &TestNs, bucket: &str, db: &str) -> anyhow::Result<()> {
    S3::new()
        .client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await?;
    env_mariadb(None, &format!("CREATE DATABASE {db}")).await?;
    env_mariadb(
        Some(db),
        "CREATE TABLE accounts (id INT PRIMARY KEY, name VARCHAR(40), balance DECIMAL(12,2)) ENGINE=InnoDB; \
         INSERT INTO accounts SELECT seq, CONCAT('acct-', seq, IF(seq % 5 = 0, ' ''quoted''', '')), seq * 3.5 FROM seq_1_to_1500;",
    )
    .await?;
    let fingerprint = env_mariadb(Some(db), MARIADB_FINGERPRINT).await?;
    let version = env_mariadb(None, "SELECT VERSION()").await?;
    let secrets: Api<Secret> = ns.api();
    for (name, data) in [
        (
            "s3",
            json!({"AWS_ACCESS_KEY_ID": env("LIFEBOAT_TEST_S3_ACCESS_KEY"), "AWS_SECRET_ACCESS_KEY": env("LIFEBOAT_TEST_S3_SECRET_KEY")}),
        ),
        (
            "repo",
            json!({"password": format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())}),
        ),
        (
            "maria",
            json!({"username": env("LIFEBOAT_TEST_MYSQL_USER"), "password": env("LIFEBOAT_TEST_MYSQL_PASSWORD")}),
        ),
    ] {
        create(&secrets, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})).await?;
    }
    apply_yaml(
        &ns.name,
        &format!(
            r#"
apiVersion: lifeboat.dev/v1alpha1
kind: BackupStore
metadata: {{name: s3}}
spec:
  s3: {{endpoint: "{endpoint}", bucket: {bucket}, prefix: repo, region: {region}, credentials: {{name: s3}}}}
  repositoryPassword: {{name: repo, key: password}}
"#,
            endpoint = env("LIFEBOAT_TEST_S3_ENDPOINT"),
            region = env("LIFEBOAT_TEST_S3_REGION"),
        ),
    )
    .await?;
    let stores: Api<lifeboat::crd::BackupStore> = ns.api();
    wait_for("BackupStore s3 to be ready", LONG, || async {
        Ok(stores.get_opt("s3").await?.filter(|s| {
            s.status.as_ref().is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        }))
    })
    .await?;
    apply_yaml(
        &ns.name,
        &format!(
            r#"
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPolicy
metadata: {{name: maria}}
spec:
  storeRef: {{name: s3}}
  schedule: {{cron: "0 0 1 1 *"}}
  sources:
    databases: [{{name: maria, engine: mysql, host: "{host}", port: {port}, database: {db}, credentials: {{name: maria}}}}]
---
apiVersion: lifeboat.dev/v1alpha1
kind: Backup
metadata: {{name: b1}}
spec: {{policyRef: {{name: maria}}}}
"#,
            host = env("LIFEBOAT_TEST_MYSQL_HOST"),
            port = env("LIFEBOAT_TEST_MYSQL_PORT"),
        ),
    )
    .await?;
    let backups: Api<Backup> = ns.api();
    let b = wait_for("Backup b1 to finish", LONG, || async {
        Ok(backups.get_opt("b1").await?.filter(|b| {
            b.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        }))
    })
    .await?;
    ensure!(
        b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Succeeded),
        "{:?}",
        b.status
    );
    let api: Api<Restore> = ns.api();
    create(
        &api,
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": "maria"},
               "spec": {"source": {"policyRef": {"name": "maria"}},
                        "databases": [{"source": "maria", "ephemeral": {}}]}}),
    )
    .await?;
    let r = wait_for("Restore maria to finish", LONG, || async {
        Ok(api.get_opt("maria").await?.filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        }))
    })
    .await?;
    report_times(&r);
    ensure!(
        r.status.as_ref().and_then(|s| s.phase) == Some(RestorePhase::Succeeded),
        "{}",
        describe(&r)
    );
    let d = source(&r, "maria")?
        .database
        .clone()
        .context("database status")?;
    // The image follows the dumped server's version: mariadb:<major.minor>.
    let major_minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
    ensure!(
        d.image.as_deref() == Some(format!("mariadb:{major_minor}").as_str()),
        "image {:?} for version {version}",
        d.image
    );
    ensure!(
        d.row_counts_match == Some(true) && d.rows == Some(1500),
        "{d:?}"
    );
    let svc = Api::<Service>::namespaced(ns.client.clone(), &ns.name)
        .get(d.server_name.as_deref().context("server")?)
        .await?;
    let ip = svc.spec.and_then(|s| s.cluster_ip).context("cluster IP")?;
    let login = Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .get(&d.credentials.context("credentials")?.name)
        .await?
        .data
        .context("login")?;
    let text = |k: &str| String::from_utf8(login[k].0.clone()).unwrap_or_default();
    let restored = mariadb(
        &ip,
        "3306",
        &text("username"),
        &text("password"),
        d.database.as_deref(),
        MARIADB_FINGERPRINT,
    )
    .await?;
    ensure!(
        restored == fingerprint,
        "restored {restored} != source {fingerprint}"
    );
    Ok(())
}

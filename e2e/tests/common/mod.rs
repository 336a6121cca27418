//! Fixtures for the operator scenarios: a protected namespace (bucket, repository
//! password, S3 credentials, a PostgreSQL and a MariaDB database with rows, PVCs with
//! files), the real clients (psql, mariadb, restic, lifeboat) and waits on Lifeboat
//! objects. Everything is named after the test with a random suffix and removed after.

#![allow(dead_code)] // each test binary uses a different subset

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lifeboat::crd::backup::{Backup, BackupPhase, BackupSpec, PolicyRef};
use lifeboat::crd::backup_policy::BackupPolicy;
use lifeboat::crd::dr_drill::{DrillPhase, DrillRun, DrillRunSpec};
use lifeboat::crd::restore::LocalRef;
use lifeboat::crd::store::BackupStore;
use lifeboat_e2e::testing::{self, TestNs, wait_for};
use serde_json::json;

pub const REPO_PASSWORD: &str = "kQ8vR2mZ7xW4pL9sT3nB6yH1cJ5fD0gA";
pub const OPERATOR_NS: &str = "lifeboat-system";

pub fn env(name: &str) -> String {
    testing::env(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The operator must have been installed from the chart (`e2e/install-operator`).
pub async fn require_operator(client: &kube::Client) -> anyhow::Result<()> {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NS);
    deploys
        .get_opt("lifeboat-controller")
        .await?
        .context("the operator is not installed: run e2e/install-operator after e2e/local up")?;
    // A test that restarted the controller may have just ended: give it time to come back.
    operator_ready(client, Duration::from_secs(90)).await
}

/// Waits until a controller Pod is Ready. Pods, not the Deployment's status: right after
/// a scale-down and up, `readyReplicas` can still count Pods that are gone.
pub async fn operator_ready(client: &kube::Client, timeout: Duration) -> anyhow::Result<()> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
    let lp = kube::api::ListParams::default().labels("app.kubernetes.io/component=controller");
    wait_for("a ready controller Pod", timeout, || async {
        let ready = pods.list(&lp).await?.items.iter().any(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        Ok(ready.then_some(()))
    })
    .await
}

pub async fn s3() -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let creds = aws_sdk_s3::config::Credentials::new(
        env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
        env("LIFEBOAT_TEST_S3_SECRET_KEY"),
        None,
        None,
        "e2e",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(env("LIFEBOAT_TEST_S3_ENDPOINT"))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub async fn create_bucket(name: &str) -> anyhow::Result<()> {
    s3().await
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .with_context(|| format!("creating bucket {name}"))?;
    Ok(())
}

/// Runs SQL on the environment's PostgreSQL; returns the unaligned output.
pub fn pg(db: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-h"])
        .arg(env("LIFEBOAT_TEST_PG_HOST"))
        .args([
            "-p",
            &env("LIFEBOAT_TEST_PG_PORT"),
            "-U",
            &env("LIFEBOAT_TEST_PG_USER"),
            "-d",
            db,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", env("LIFEBOAT_TEST_PG_PASSWORD"))
        .output()
        .context("running psql")?;
    ensure!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs SQL on the environment's MariaDB.
pub fn my(db: Option<&str>, sql: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--no-defaults", "-N", "-B", "-h"])
        .arg(env("LIFEBOAT_TEST_MYSQL_HOST"))
        .args([
            "-P",
            &env("LIFEBOAT_TEST_MYSQL_PORT"),
            "-u",
            &env("LIFEBOAT_TEST_MYSQL_USER"),
        ]);
    if let Some(d) = db {
        cmd.args(["-D", d]);
    }
    let out = cmd
        .args(["-e", sql])
        .env("MYSQL_PWD", env("LIFEBOAT_TEST_MYSQL_PASSWORD"))
        .output()
        .context("running mariadb")?;
    ensure!(
        out.status.success(),
        "mariadb {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `restic` against a bucket prefix, with JSON output parsed.
pub fn restic_json(bucket: &str, prefix: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = restic(bucket, prefix, &[args, &["--json"]].concat())?;
    serde_json::from_str(&out).with_context(|| format!("restic {args:?} output: {out}"))
}

pub fn restic(bucket: &str, prefix: &str, args: &[&str]) -> anyhow::Result<String> {
    let repo = format!("s3:{}/{bucket}/{prefix}", env("LIFEBOAT_TEST_S3_ENDPOINT"));
    let out = Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", REPO_PASSWORD)
        .env("AWS_ACCESS_KEY_ID", env("LIFEBOAT_TEST_S3_ACCESS_KEY"))
        .env("AWS_SECRET_ACCESS_KEY", env("LIFEBOAT_TEST_S3_SECRET_KEY"))
        .env(
            "RESTIC_CACHE_DIR",
            std::env::temp_dir().join("lifeboat-e2e-restic-cache"),
        )
        .output()
        .context("running restic")?;
    ensure!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `lifeboat` (the freshly built binary) against a bucket prefix.
pub fn lifeboat(
    bucket: &str,
    prefix: &str,
    args: &[&str],
    envs: &[(&str, String)],
) -> anyhow::Result<String> {
    let repo = format!("s3:{}/{bucket}/{prefix}", env("LIFEBOAT_TEST_S3_ENDPOINT"));
    let out = Command::new(env("LIFEBOAT_BIN"))
        .args(args)
        .env("LIFEBOAT_REPOSITORY", repo)
        .env("LIFEBOAT_PASSWORD", REPO_PASSWORD)
        .env("AWS_ACCESS_KEY_ID", env("LIFEBOAT_TEST_S3_ACCESS_KEY"))
        .env("AWS_SECRET_ACCESS_KEY", env("LIFEBOAT_TEST_S3_SECRET_KEY"))
        .env("LIFEBOAT_NO_CACHE", "1")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .context("running lifeboat")?;
    ensure!(
        out.status.success(),
        "lifeboat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// A namespace ready to be protected: a bucket, the Secrets, a BackupStore named `s3`, a
/// PostgreSQL and a MariaDB database (named after the namespace) with 1000 and 500 rows.
pub struct Protected {
    pub ns: TestNs,
    pub bucket: String,
    pub prefix: String,
    pub db: String,
}

impl Protected {
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        let ns = TestNs::create(prefix).await?;
        require_operator(&ns.client).await?;
        let bucket = ns.name.clone();
        create_bucket(&bucket).await?;
        let db = ns.name.replace('-', "_");
        pg("postgres", &format!("CREATE DATABASE {db}"))?;
        pg(&db, "CREATE TABLE orders(id serial PRIMARY KEY, item text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
                 INSERT INTO orders(item) SELECT 'item-' || g FROM generate_series(1, 1000) g;
                 CREATE TABLE customers(id int PRIMARY KEY, name text);
                 INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g;")?;
        my(None, &format!("CREATE DATABASE {db}"))?;
        my(
            Some(&db),
            "CREATE TABLE items(id INT PRIMARY KEY, v VARCHAR(20));
                       INSERT INTO items SELECT seq, CONCAT('v', seq) FROM seq_1_to_500;",
        )?;
        let p = Protected {
            bucket,
            prefix: "repo".into(),
            db,
            ns,
        };
        p.apply(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
            "stringData": {"AWS_ACCESS_KEY_ID": env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
                           "AWS_SECRET_ACCESS_KEY": env("LIFEBOAT_TEST_S3_SECRET_KEY")}}),
        )
        .await?;
        p.apply(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-pass"},
            "stringData": {"password": REPO_PASSWORD}}),
        )
        .await?;
        p.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-login"},
            "stringData": {"username": env("LIFEBOAT_TEST_PG_USER"), "password": env("LIFEBOAT_TEST_PG_PASSWORD")}})).await?;
        p.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-login"},
            "stringData": {"username": env("LIFEBOAT_TEST_MYSQL_USER"), "password": env("LIFEBOAT_TEST_MYSQL_PASSWORD")}})).await?;
        p.apply(p.store_json("s3", &p.bucket, "repo-pass")).await?;
        Ok(p)
    }

    pub fn name(&self) -> &str {
        &self.ns.name
    }

    pub fn store_json(&self, name: &str, bucket: &str, password_secret: &str) -> serde_json::Value {
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupStore", "metadata": {"name": name},
            "spec": {"s3": {"endpoint": env("LIFEBOAT_TEST_S3_ENDPOINT"), "bucket": bucket, "prefix": self.prefix,
                            "credentials": {"name": "s3-creds"}},
                     "repositoryPassword": {"name": password_secret, "key": "password"}}})
    }

    /// Server-side applies an object (JSON with apiVersion/kind/metadata.name) in the namespace.
    pub async fn apply(&self, mut obj: serde_json::Value) -> anyhow::Result<()> {
        obj["metadata"]["namespace"] = self.name().into();
        let api_version = obj["apiVersion"]
            .as_str()
            .context("apiVersion")?
            .to_string();
        let kind = obj["kind"].as_str().context("kind")?.to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .context("name")?
            .to_string();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, &kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.ns.client, &gvk).await?;
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.ns.client.clone(), self.name(), &ar);
        api.patch(
            &name,
            &PatchParams::apply("lifeboat-e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("applying {kind}/{name}"))?;
        Ok(())
    }

    /// A PVC of the local storage class, filled by a Job running `script` with the
    /// volume at /data.
    pub async fn pvc_with(
        &self,
        name: &str,
        labels: serde_json::Value,
        script: &str,
    ) -> anyhow::Result<()> {
        self.apply(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": env("LIFEBOAT_TEST_STORAGE_CLASS"),
                     "resources": {"requests": {"storage": "1Gi"}}}})).await?;
        let job = format!("fill-{name}");
        self.apply(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "fill", "image": "busybox", "command": ["sh", "-ec", script],
                                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": name}}]}}}})).await?;
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = self.ns.api();
        wait_for(&format!("job {job}"), Duration::from_secs(90), || async {
            let j = jobs.get(&job).await?;
            let s = j.status.unwrap_or_default();
            if s.failed.unwrap_or(0) > 0 {
                bail!("job {job} failed");
            }
            Ok((s.succeeded.unwrap_or(0) > 0).then_some(()))
        })
        .await
    }

    pub async fn store_ready(&self, name: &str) -> anyhow::Result<BackupStore> {
        let api: Api<BackupStore> = self.ns.api();
        wait_for(
            &format!("store {name} Ready"),
            Duration::from_secs(90),
            || async {
                let s = api.get(name).await?;
                let ready = s.status.as_ref().is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                Ok(ready.then_some(s))
            },
        )
        .await
    }

    /// Waits until the store says `Ready=False` with `reason` (the prober's verdict).
    pub async fn store_not_ready(
        &self,
        name: &str,
        reason: &str,
        timeout: Duration,
    ) -> anyhow::Result<BackupStore> {
        let api: Api<BackupStore> = self.ns.api();
        wait_for(
            &format!("store {name} Ready=False ({reason})"),
            timeout,
            || async {
                let s = api.get(name).await?;
                let hit = s.status.as_ref().is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == reason)
                });
                Ok(hit.then_some(s))
            },
        )
        .await
    }

    /// Waits until a condition of the object has the given status and reason.
    pub async fn policy_condition(
        &self,
        policy: &str,
        type_: &str,
        status: &str,
        reason: &str,
        timeout: Duration,
    ) -> anyhow::Result<BackupPolicy> {
        let api: Api<BackupPolicy> = self.ns.api();
        wait_for(
            &format!("policy {policy} {type_}={status} ({reason})"),
            timeout,
            || async {
                let p = api.get(policy).await?;
                let hit = p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
                });
                Ok(hit.then_some(p))
            },
        )
        .await
    }

    /// Waits for a Backup to finish; returns it.
    pub async fn backup_finished(&self, name: &str, timeout: Duration) -> anyhow::Result<Backup> {
        let api: Api<Backup> = self.ns.api();
        wait_for(&format!("backup {name} to finish"), timeout, || async {
            let b = api.get_opt(name).await?;
            Ok(b.filter(|b| {
                b.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(BackupPhase::is_finished)
            }))
        })
        .await
    }

    /// The first Backup of a policy (created by its schedule) once it finished.
    pub async fn first_scheduled_backup(
        &self,
        policy: &str,
        timeout: Duration,
    ) -> anyhow::Result<Backup> {
        let api: Api<Backup> = self.ns.api();
        let name = wait_for(&format!("a Backup of {policy}"), timeout, || async {
            let list = api.list(&Default::default()).await?;
            Ok(list
                .items
                .into_iter()
                .find(|b| b.spec.policy_ref.name == policy)
                .map(|b| b.metadata.name.unwrap_or_default()))
        })
        .await?;
        self.backup_finished(&name, timeout).await
    }

    /// Warning Events about an object, as `reason: note` lines.
    pub async fn warnings(&self, kind: &str, name: &str) -> anyhow::Result<Vec<String>> {
        let events: Api<k8s_openapi::api::events::v1::Event> = self.ns.api();
        Ok(events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
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

    /// The Warning Events about `kind/name` once one starts with `prefix`, or as they are
    /// when `timeout` ends (the caller says what was missing). Events are posted alongside
    /// status writes, not strictly before them, so a condition can be seen a moment before
    /// the Event that explains it.
    pub async fn warnings_once(
        &self,
        kind: &str,
        name: &str,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let w = self.warnings(kind, name).await?;
            if w.iter().any(|e| e.starts_with(prefix)) || tokio::time::Instant::now() >= deadline {
                return Ok(w);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes the namespace and the databases (the bucket stays: SeaweedFS's data dir goes
    /// with the environment).
    pub async fn cleanup(self) -> anyhow::Result<()> {
        let _ = pg(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
        );
        let _ = my(None, &format!("DROP DATABASE IF EXISTS {}", self.db));
        self.ns.delete().await
    }
}

/// SHA-256 of every file under a directory, by relative path.
pub fn tree_hashes(
    root: &std::path::Path,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if e.file_type()?.is_file() {
                let rel = p.strip_prefix(root)?.to_string_lossy().to_string();
                out.insert(rel, hex_sha256(&std::fs::read(&p)?));
            }
        }
    }
    Ok(out)
}

pub fn hex_sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// --- Drills ----------------------------------------------------------------------------

/// Longest a drill run may take here (an ephemeral PostgreSQL, restores, checks, report,
/// namespace deletion).
pub const DRILL: Duration = Duration::from_secs(300);

/// Takes an on-demand Backup of policy `shop` and waits for it to succeed.
pub async fn backup_now(p: &Protected, name: &str) -> anyhow::Result<Backup> {
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
    let b = p.backup_finished(name, Duration::from_secs(180)).await?;
    let st = b.status.as_ref().context("backup status")?;
    ensure!(
        st.phase == Some(BackupPhase::Succeeded),
        "backup {name}: {:?} {:?}",
        st.phase,
        st.sources
    );
    Ok(b)
}

pub fn drill_json(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "DRDrill", "metadata": {"name": name},
           "spec": spec})
}

/// Starts a run by hand (what `lifeboat drill now` does) and waits until it completed.
pub async fn run_drill(p: &Protected, drill: &str, run: &str) -> anyhow::Result<DrillRun> {
    let api: Api<DrillRun> = p.ns.api();
    let mut r = DrillRun::new(
        run,
        DrillRunSpec {
            drill_ref: LocalRef { name: drill.into() },
            ..DrillRunSpec::default()
        },
    );
    r.metadata.namespace = Some(p.name().into());
    api.create(&PostParams::default(), &r).await?;
    completed(p, run).await
}

pub async fn completed(p: &Protected, run: &str) -> anyhow::Result<DrillRun> {
    let api: Api<DrillRun> = p.ns.api();
    let last = std::sync::Mutex::new(String::new());
    let res = wait_for(&format!("DrillRun {run} to complete"), DRILL, || async {
        let r = api.get_opt(run).await?;
        if let Some(s) = r.as_ref().and_then(|r| r.status.as_ref()) {
            *last.lock().unwrap() = format!("{:?}", s.phase);
        }
        Ok(r.filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(DrillPhase::Completed)))
    })
    .await;
    let r = res.with_context(|| format!("last phase {}", last.lock().unwrap()))?;
    let s = r.status.clone().unwrap_or_default();
    println!(
        "{run}: {:?}{} RTO {} RPO {} timeline {:?}",
        s.outcome,
        s.failure
            .as_ref()
            .map(|f| format!(
                " at {}: {}: {}",
                f.step, f.failure.reason, f.failure.message
            ))
            .unwrap_or_default(),
        s.rto
            .as_ref()
            .and_then(|m| m.measured.clone())
            .unwrap_or_default(),
        s.rpo
            .as_ref()
            .and_then(|m| m.measured.clone())
            .unwrap_or_default(),
        s.timeline
            .iter()
            .map(|t| format!("{:?} {:.2}s", t.phase, t.duration_seconds.unwrap_or(-1.0)))
            .collect::<Vec<_>>()
    );
    Ok(r)
}

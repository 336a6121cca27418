//! Upgrading the CRDs under existing objects (issue 15, item 7): the CRDs of v0.1.0
//! (e2e/fixtures/crds-v0.1.0, no CEL rules) are installed, stores, a policy, a drill and
//! their records (a Backup, a Restore and a DrillRun, run by the installed operator, so
//! with their status) are created, some of them in shapes v0.1.0 accepted and the new
//! rules refuse; then the chart's current CRDs are applied as `helm upgrade` would
//! (server-side apply of the rendered chart's CRDs, `charts/check --render-to`). The
//! objects keep reconciling, take unrelated edits (CEL ratcheting), refuse the edits the
//! new rules are about, and take the fix-ups docs/install.md#upgrading describes.
//!
//! The chart's other templates did not change with the rules, so the operator installed
//! by e2e/install-operator is the chart "before" and "after" alike; only the CRDs move.
//!
//! CRDs are cluster-wide: this binary runs in the `disruptive` stage of e2e/test (alone,
//! after everything else), and puts the current CRDs back whatever happens.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use common::{Protected, env};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use lifeboat::crd::backup::{Backup, BackupPhase};
use lifeboat::crd::backup_policy::BackupPolicy;
use lifeboat::crd::dr_drill::{DRDrill, DrillOutcome, DrillPhase, DrillRun};
use lifeboat::crd::restore::{Restore, RestorePhase};
use lifeboat::crd::store::{BackupStore, ClusterBackupStore};
use lifeboat_e2e::testing::{self, wait_for};
use serde_json::{Value, json};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/crds-v0.1.0");
const RUN: Duration = Duration::from_secs(300);

/// SHA-256 of `hello\n`, the file the drill checks.
const HELLO_SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

fn kubectl(
    kubeconfig: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> anyhow::Result<Result<String, String>> {
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "running kubectl (source e2e/.local/env.sh: it puts the venv's kubectl on PATH)",
        )?;
    let input = child.stdin.take().context("kubectl stdin")?;
    if let Some(data) = stdin {
        let mut input = input;
        input.write_all(data)?;
    } else {
        drop(input);
    }
    let out = child.wait_with_output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    })
}

fn admin() -> String {
    env("KUBECONFIG")
}

/// Server-side apply of CRDs under kubectl's field manager, as e2e/install-operator
/// applies the rendered chart: applying the older set removes what only the newer has.
fn apply_crds(path: &str) -> anyhow::Result<()> {
    kubectl(
        &admin(),
        &["apply", "--server-side", "--force-conflicts", "-f", path],
        None,
    )?
    .map_err(|e| anyhow::anyhow!("applying CRDs from {path}: {e}"))?;
    kubectl(
        &admin(),
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            path,
        ],
        None,
    )?
    .map_err(|e| anyhow::anyhow!("CRDs from {path} not established: {e}"))?;
    Ok(())
}

/// The CRDs of the chart as it is now, rendered like a release (`charts/check
/// --render-to`), written to a file of their own: what `helm upgrade` applies.
fn chart_crds(dir: &std::path::Path) -> anyhow::Result<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let rendered = dir.join("chart.yaml");
    let out = Command::new(format!("{root}/charts/check"))
        .arg("--render-to")
        .arg(&rendered)
        .output()
        .context("running charts/check")?;
    ensure!(
        out.status.success(),
        "charts/check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&rendered)?;
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(&text)?;
    let crds: Vec<Value> = docs
        .into_iter()
        .flatten()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    ensure!(crds.len() == 7, "{} CRDs in the rendered chart", crds.len());
    let path = dir.join("crds.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": crds}))?,
    )?;
    Ok(path.to_str().unwrap().to_string())
}

/// Waits until the API server validates with the CRDs just applied (it reloads them a
/// moment after the write): a `retention: {}` policy is taken by v0.1.0 and refused now.
async fn rules_in_effect(ns: &str, want: bool) -> anyhow::Result<()> {
    let probe = json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
                 "sources": {"manifests": {}}, "retention": {}}});
    let body = serde_json::to_vec(&probe)?;
    wait_for(
        &format!(
            "the API server to validate with the {} CRDs",
            if want { "new" } else { "old" }
        ),
        Duration::from_secs(60),
        || {
            let body = body.clone();
            async move {
                let refused = kubectl(
                    &admin(),
                    &["create", "--dry-run=server", "-f", "-"],
                    Some(&body),
                )?
                .is_err();
                Ok((refused == want).then_some(()))
            }
        },
    )
    .await
}

/// A ServiceAccount of the namespace bound to the built-in `edit` role: the user who
/// edits the objects after the upgrade.
async fn editor(p: &Protected) -> anyhow::Result<tempfile::NamedTempFile> {
    let sas: Api<ServiceAccount> = p.ns.api();
    sas.create(
        &PostParams::default(),
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
    let cfg = testing::kubeconfig_for_service_account(&p.ns.client, p.name(), "editor").await?;
    let path = cfg.path().to_str().unwrap().to_string();
    let ns = p.name().to_string();
    wait_for("the editor's rights", Duration::from_secs(30), || {
        let (path, ns) = (path.clone(), ns.clone());
        async move {
            let ok = kubectl(
                &path,
                &[
                    "-n",
                    &ns,
                    "auth",
                    "can-i",
                    "patch",
                    "backuppolicies.lifeboat.dev",
                ],
                None,
            )?
            .is_ok();
            Ok(ok.then_some(()))
        }
    })
    .await?;
    Ok(cfg)
}

/// A merge patch of `resource/name` (namespaced when `ns` is given).
fn patch(
    kubeconfig: &str,
    ns: Option<&str>,
    resource: &str,
    name: &str,
    body: Value,
) -> anyhow::Result<Result<String, String>> {
    let body = body.to_string();
    let mut args = vec![];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["patch", resource, name, "--type=merge", "-p", &body]);
    kubectl(kubeconfig, &args, None)
}

/// A JSON patch removing a field (the fix-ups drop what a rule now forbids).
fn remove(
    kubeconfig: &str,
    ns: Option<&str>,
    resource: &str,
    name: &str,
    pointer: &str,
) -> anyhow::Result<Result<String, String>> {
    let body = json!([{"op": "remove", "path": pointer}]).to_string();
    let mut args = vec![];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["patch", resource, name, "--type=json", "-p", &body]);
    kubectl(kubeconfig, &args, None)
}

/// Collects what went wrong instead of stopping at the first surprise.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn accepted(&mut self, what: &str, r: Result<String, String>) {
        if let Err(e) = r {
            self.0.push(format!("{what}: refused: {}", e.trim()));
        }
    }

    fn refused(&mut self, what: &str, r: Result<String, String>, says: &str) {
        match r {
            Ok(_) => self.0.push(format!("{what}: accepted, should be refused")),
            Err(e) if e.contains(says) => {}
            Err(e) => self
                .0
                .push(format!("{what}: refused without {says:?}: {}", e.trim())),
        }
    }
}

/// Waits until the controller has seen the object's current generation and its Ready
/// condition has `status`.
async fn reconciled<K>(api: &Api<K>, name: &str, status: &str) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
    <K as kube::Resource>::DynamicType: Default,
{
    wait_for(
        &format!("{name} reconciled with Ready={status}"),
        Duration::from_secs(120),
        || async {
            let o = api.get(name).await?;
            let v = serde_json::to_value(&o)?;
            let seen = v["status"]["observedGeneration"] == v["metadata"]["generation"];
            let ready = v["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == status);
            Ok((seen && ready).then_some(o))
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local; changes the cluster's CRDs: runs alone (e2e/test disruptive stage)"]
async fn crd_upgrade_keeps_existing_objects_working() -> anyhow::Result<()> {
    let client = testing::client().await?;
    common::require_operator(&client).await?;
    let dir = tempfile::tempdir()?;
    // Rendered first: a chart that does not render must fail before the CRDs are touched.
    let current = chart_crds(dir.path())?;
    apply_crds(FIXTURE)?;
    let res = scenario(&current).await;
    // Whatever happened, the current CRDs are back for every other test.
    let back = apply_crds(&current);
    res.and(back)
}

async fn scenario(current: &str) -> anyhow::Result<()> {
    let p = Protected::create("upgrade").await?;
    let ns = p.name().to_string();
    rules_in_effect(&ns, false).await?;

    // --- v0.1.0: objects in shapes it accepted -------------------------------------
    p.pvc_with(
        "data",
        json!({"app": "shop"}),
        "printf 'hello\\n' > /data/hello.txt",
    )
    .await?;
    p.store_ready("s3").await?;
    // A namespaced store naming its own namespace for the password (v0.1.0 took it and
    // read its own namespace anyway; now `namespace` is refused in a BackupStore).
    let mut legacy = p.store_json("legacy", &p.bucket, "repo-pass");
    legacy["spec"]["s3"]["prefix"] = "legacy".into();
    legacy["spec"]["repositoryPassword"]["namespace"] = ns.clone().into();
    p.apply(legacy).await?;
    p.store_ready("legacy").await?;
    // ClusterBackupStores: one as the rules want, one whose credentials name no
    // namespace (v0.1.0 took it; the controller said InvalidStore).
    let cluster = |name: &str, credentials_ns: bool| {
        let mut creds = json!({"name": "s3-creds"});
        if credentials_ns {
            creds["namespace"] = ns.clone().into();
        }
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "ClusterBackupStore",
            "metadata": {"name": name},
            "spec": {"s3": {"endpoint": env("LIFEBOAT_TEST_S3_ENDPOINT"), "bucket": p.bucket,
                            "prefix": format!("cluster-{name}"), "credentials": creds},
                     "repositoryPassword": {"name": "repo-pass", "key": "password", "namespace": ns},
                     "allowedNamespaces": [ns]}})
    };
    let (cb_ok, cb_legacy) = (format!("{ns}-ok"), format!("{ns}-legacy"));
    let res = with_cluster_stores(
        &p,
        current,
        &cluster(&cb_ok, true),
        &cluster(&cb_legacy, false),
        &cb_ok,
        &cb_legacy,
    )
    .await;
    let _ = kubectl(
        &admin(),
        &[
            "delete",
            "clusterbackupstores.lifeboat.dev",
            &cb_ok,
            &cb_legacy,
            "--ignore-not-found",
        ],
        None,
    );
    res?;
    p.cleanup().await
}

async fn with_cluster_stores(
    p: &Protected,
    current: &str,
    cb_ok_json: &Value,
    cb_legacy_json: &Value,
    cb_ok: &str,
    cb_legacy: &str,
) -> anyhow::Result<()> {
    let ns = p.name().to_string();
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List",
        "items": [cb_ok_json, cb_legacy_json]}))?;
    kubectl(&admin(), &["apply", "-f", "-"], Some(&body))?.map_err(anyhow::Error::msg)?;
    let cbs: Api<ClusterBackupStore> = Api::all(p.ns.client.clone());
    reconciled(&cbs, cb_ok, "True").await?;
    reconciled(&cbs, cb_legacy, "False").await?;

    // A policy without retention: v0.1.0's schema defaulted `retention: {}` into it,
    // which the new rule refuses.
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
                 "sources": {"volumes": [{"pvcName": "data", "copyMethod": "Direct"}],
                             "manifests": {"kinds": ["ConfigMap"]}}}}))
        .await?;
    // As stored (the Rust type would drop an empty retention on the way).
    let stored: Value = serde_json::from_str(
        &kubectl(
            &admin(),
            &[
                "-n",
                &ns,
                "get",
                "backuppolicies.lifeboat.dev",
                "shop",
                "-o",
                "json",
            ],
            None,
        )?
        .map_err(anyhow::Error::msg)?,
    )?;
    ensure!(
        stored["spec"]["retention"] == json!({}),
        "v0.1.0 stores `retention: {{}}`: {}",
        stored["spec"]
    );
    p.policy_condition("shop", "Ready", "True", "Ready", Duration::from_secs(90))
        .await?;
    // A drill whose sandbox TTL is 0s (v0.1.0 took it; now a duration must be positive).
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "DRDrill", "metadata": {"name": "weekly"},
        "spec": {"policyRef": {"name": "shop"}, "schedule": {"cron": "0 0 1 1 *"},
                 "sandbox": {"ttl": "0s"},
                 "checks": [{"name": "hello", "files": {"volume": "data",
                             "checksums": [{"path": "hello.txt", "sha256": HELLO_SHA}]}}]}}))
        .await?;
    // The records, run by the installed operator.
    run_backup(p, "before").await?;
    run_restore(p, "before").await?;
    run_drill(p, "run-before").await?;

    // --- the upgrade ------------------------------------------------------------------
    apply_crds(current)?;
    rules_in_effect(&ns, true).await?;

    let ed = editor(p).await?;
    let ed = ed.path().to_str().unwrap().to_string();
    let nsr = Some(ns.as_str());
    let mut f = Findings::default();

    // The namespaced store: an unrelated edit goes through (the rule sits on
    // repositoryPassword, unchanged: ratcheting), the store keeps being served; an edit
    // of repositoryPassword must drop the namespace (the fix-up), and then works.
    let stores: Api<BackupStore> = p.ns.api();
    f.accepted(
        "legacy store: region edit",
        patch(
            &ed,
            nsr,
            "backupstores.lifeboat.dev",
            "legacy",
            json!({"spec": {"s3": {"region": "us-east-1"}}}),
        )?,
    );
    reconciled(&stores, "legacy", "True").await?;
    f.refused(
        "legacy store: password Secret edit keeping the namespace",
        patch(
            &ed,
            nsr,
            "backupstores.lifeboat.dev",
            "legacy",
            json!({"spec": {"repositoryPassword": {"name": "repo-pass-renamed"}}}),
        )?,
        "repositoryPassword.namespace must not be set in a BackupStore",
    );
    f.accepted(
        "legacy store: fix-up (remove the namespace)",
        remove(
            &ed,
            nsr,
            "backupstores.lifeboat.dev",
            "legacy",
            "/spec/repositoryPassword/namespace",
        )?,
    );
    reconciled(&stores, "legacy", "True").await?;

    // Cluster stores (the administrator's): the legacy one takes an unrelated edit, refuses
    // an edit of its credentials without a namespace, and works once it names one.
    let cbs: Api<ClusterBackupStore> = Api::all(p.ns.client.clone());
    f.accepted(
        "cluster store: allowedNamespaces edit",
        patch(
            &admin(),
            None,
            "clusterbackupstores.lifeboat.dev",
            cb_legacy,
            json!({"spec": {"allowedNamespaces": [ns, "other"]}}),
        )?,
    );
    reconciled(&cbs, cb_legacy, "False").await?;
    f.refused(
        "cluster store: credentials edit without a namespace",
        patch(
            &admin(),
            None,
            "clusterbackupstores.lifeboat.dev",
            cb_legacy,
            json!({"spec": {"s3": {"credentials": {"accessKeyIdKey": "AWS_ACCESS_KEY_ID"}}}}),
        )?,
        "s3.credentials.namespace is required in a ClusterBackupStore",
    );
    f.accepted(
        "cluster store: fix-up (name the namespace)",
        patch(
            &admin(),
            None,
            "clusterbackupstores.lifeboat.dev",
            cb_legacy,
            json!({"spec": {"s3": {"credentials": {"namespace": ns}}}}),
        )?,
    );
    reconciled(&cbs, cb_legacy, "True").await?;
    reconciled(&cbs, cb_ok, "True").await?;

    // The policy: `retention: {}` stays as stored; an unrelated edit goes through and is
    // reconciled; the store is now an identity field (a new transition rule, never
    // ratcheted); setting a keep rule is the fix-up.
    let policies: Api<BackupPolicy> = p.ns.api();
    f.accepted(
        "policy: schedule edit",
        patch(
            &ed,
            nsr,
            "backuppolicies.lifeboat.dev",
            "shop",
            json!({"spec": {"schedule": {"cron": "0 0 2 1 *"}}}),
        )?,
    );
    reconciled(&policies, "shop", "True").await?;
    f.refused(
        "policy: storeRef edit",
        patch(
            &ed,
            nsr,
            "backuppolicies.lifeboat.dev",
            "shop",
            json!({"spec": {"storeRef": {"name": "legacy"}}}),
        )?,
        "storeRef is immutable",
    );
    f.refused(
        "policy: a keep rule of 0",
        patch(
            &ed,
            nsr,
            "backuppolicies.lifeboat.dev",
            "shop",
            json!({"spec": {"retention": {"keepLast": 0}}}),
        )?,
        "keepLast must be at least 1",
    );

    // The drill: unrelated edits, including one next to the 0s TTL, go through; a run
    // copies the spec (0s TTL included) into its status and passes; changing the TTL to
    // another zero is refused, a positive one is the fix-up.
    let drills: Api<DRDrill> = p.ns.api();
    f.accepted(
        "drill: schedule edit",
        patch(
            &ed,
            nsr,
            "drdrills.lifeboat.dev",
            "weekly",
            json!({"spec": {"schedule": {"cron": "0 0 2 1 *"}}}),
        )?,
    );
    f.accepted(
        "drill: keepOnFailure edit next to ttl 0s",
        patch(
            &ed,
            nsr,
            "drdrills.lifeboat.dev",
            "weekly",
            json!({"spec": {"sandbox": {"keepOnFailure": true}}}),
        )?,
    );
    reconciled(&drills, "weekly", "True").await?;
    f.refused(
        "drill: policyRef edit",
        patch(
            &ed,
            nsr,
            "drdrills.lifeboat.dev",
            "weekly",
            json!({"spec": {"policyRef": {"name": "other"}}}),
        )?,
        "policyRef is immutable",
    );

    // Records: labels and status writes go through, their specs are records now.
    for (resource, name, who) in [
        ("backups.lifeboat.dev", "before", ed.as_str()),
        ("restores.lifeboat.dev", "rst-before", ed.as_str()),
        ("drillruns.lifeboat.dev", "run-before", admin_path()),
    ] {
        f.accepted(
            &format!("{resource}/{name}: label"),
            patch(
                who,
                nsr,
                resource,
                name,
                json!({"metadata": {"labels": {"upgraded": "yes"}}}),
            )?,
        );
        // The controller's write (the administrator impersonating it): the chart's
        // run-records policy refuses anyone else on a finished run (docs/security.md).
        f.accepted(
            &format!("{resource}/{name}: status write"),
            kubectl(
                &admin(),
                &[
                    "--as",
                    &format!(
                        "system:serviceaccount:{}:lifeboat-controller",
                        common::OPERATOR_NS
                    ),
                    "-n",
                    &ns,
                    "patch",
                    resource,
                    name,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    r#"{"status":{"observedGeneration":7}}"#,
                ],
                None,
            )?,
        );
    }
    f.refused(
        "backup: spec edit",
        patch(
            &ed,
            nsr,
            "backups.lifeboat.dev",
            "before",
            json!({"spec": {"trigger": "Schedule"}}),
        )?,
        "spec is immutable: a Backup is the record of one run",
    );
    f.refused(
        "restore: spec edit",
        patch(
            &ed,
            nsr,
            "restores.lifeboat.dev",
            "rst-before",
            json!({"spec": {"manifests": {"kinds": ["Secret"]}}}),
        )?,
        "spec is immutable: a Restore is the record of one recovery",
    );
    f.refused(
        "drill run: spec edit",
        patch(
            admin_path(),
            nsr,
            "drillruns.lifeboat.dev",
            "run-before",
            json!({"spec": {"trigger": "Schedule"}}),
        )?,
        "spec is immutable: a DrillRun is the record of one run",
    );

    // The operator keeps serving the old objects: a new backup, restore and drill run.
    run_backup(p, "after").await?;
    run_restore(p, "after").await?;
    let run = run_drill(p, "run-after").await?;
    let ttl = run
        .status
        .as_ref()
        .and_then(|s| s.drill_spec.as_ref())
        .and_then(|d| d.sandbox.ttl.clone());
    ensure!(
        ttl.as_deref() == Some("0s"),
        "the run records the drill's spec as it was: ttl {ttl:?}"
    );
    f.refused(
        "drill: ttl edited to another zero",
        patch(
            &ed,
            nsr,
            "drdrills.lifeboat.dev",
            "weekly",
            json!({"spec": {"sandbox": {"ttl": "0m"}}}),
        )?,
        "ttl must be a positive duration",
    );
    f.accepted(
        "drill: fix-up (a positive ttl)",
        patch(
            &ed,
            nsr,
            "drdrills.lifeboat.dev",
            "weekly",
            json!({"spec": {"sandbox": {"ttl": "10m"}}}),
        )?,
    );
    f.accepted(
        "policy: fix-up (a keep rule)",
        patch(
            &ed,
            nsr,
            "backuppolicies.lifeboat.dev",
            "shop",
            json!({"spec": {"retention": {"keepLast": 5}}}),
        )?,
    );
    reconciled(&policies, "shop", "True").await?;
    reconciled(&drills, "weekly", "True").await?;
    if !f.0.is_empty() {
        bail!("{}", f.0.join("\n"));
    }
    Ok(())
}

fn admin_path() -> &'static str {
    static ADMIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADMIN.get_or_init(admin)
}

async fn run_backup(p: &Protected, name: &str) -> anyhow::Result<()> {
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": name},
        "spec": {"policyRef": {"name": "shop"}}}),
    )
    .await?;
    let b: Backup = p.backup_finished(name, RUN).await?;
    let phase = b.status.as_ref().and_then(|s| s.phase);
    ensure!(
        phase == Some(BackupPhase::Succeeded),
        "backup {name}: {:?}",
        b.status
    );
    Ok(())
}

/// Restores Backup `backup` (its volume as `data-<backup>`) as Restore `rst-<backup>`
/// (a drill run's own Restore is named after the run).
async fn run_restore(p: &Protected, backup: &str) -> anyhow::Result<()> {
    let name = &format!("rst-{backup}");
    p.apply(
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": name},
        "spec": {"source": {"backupRef": {"name": backup}},
                 "volumes": {"rename": {"data": format!("data-{backup}")}}}}),
    )
    .await?;
    let api: Api<Restore> = p.ns.api();
    let r = wait_for(&format!("Restore {name} to finish"), RUN, || async {
        Ok(api.get_opt(name).await?.filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(RestorePhase::is_finished)
        }))
    })
    .await?;
    let phase = r.status.as_ref().and_then(|s| s.phase);
    ensure!(
        phase == Some(RestorePhase::Succeeded),
        "restore {name}: {:?}",
        r.status
    );
    Ok(())
}

async fn run_drill(p: &Protected, name: &str) -> anyhow::Result<DrillRun> {
    p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "DrillRun", "metadata": {"name": name},
        "spec": {"drillRef": {"name": "weekly"}}}))
        .await?;
    let api: Api<DrillRun> = p.ns.api();
    let r = wait_for(&format!("DrillRun {name} to complete"), RUN, || async {
        Ok(api
            .get_opt(name)
            .await?
            .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(DrillPhase::Completed)))
    })
    .await?;
    let s = r.status.clone().unwrap_or_default();
    ensure!(
        s.outcome == Some(DrillOutcome::Passed),
        "drill run {}: {:?} {:?}",
        r.name_any(),
        s.outcome,
        s.failure
    );
    Ok(r)
}

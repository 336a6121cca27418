//! An installation with `watchNamespaces` (issue 11 item 8), against the local environment:
//! the operator is reinstalled from the chart serving one namespace, and then
//!
//! - the controller's own ServiceAccount (its real token) may not read Secrets in
//!   kube-system or in a namespace it does not serve, nor list them anywhere, and may get
//!   them in the one it serves (`kubectl auth can-i`, answered by the API server's RBAC);
//! - that identity, standing in for a compromised controller, cannot bind its namespaced
//!   rights in a namespace that is not a drill sandbox (the admission policy refuses);
//! - a backup and a drill (sandbox, ephemeral database, checks, report) in the served
//!   namespace still pass end to end;
//! - what a namespace editor creates in an unserved namespace is never reconciled.
//!
//! It reinstalls the operator, so it runs in the `disruptive` stage (alone), and puts the
//! default installation back at the end, pass or fail.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{OPERATOR_NS, Protected, backup_now, drill_json, env, run_drill};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use lifeboat::crd::backup::Backup;
use lifeboat::crd::backup_policy::BackupPolicy;
use lifeboat::crd::dr_drill::{DrillOutcome, DrillRun};
use lifeboat_e2e::testing::{TestNs, kubeconfig_for_service_account, wait_for};
use serde_json::json;

const CONTROLLER_SA: &str = "lifeboat-controller";
const NAMESPACED_ROLE: &str = "lifeboat-controller-namespaced";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// `e2e/install-operator`, with `set` as extra chart values.
fn install_operator(set: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = Command::new(root().join("e2e/install-operator"));
    match set {
        Some(s) => cmd.env("LIFEBOAT_OPERATOR_SET", s),
        None => cmd.env_remove("LIFEBOAT_OPERATOR_SET"),
    };
    let out = cmd.output().context("running e2e/install-operator")?;
    ensure!(
        out.status.success(),
        "e2e/install-operator {set:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// kubectl as admin (`kubeconfig` None) or as the identity of `kubeconfig`.
fn kubectl(kubeconfig: Option<&tempfile::NamedTempFile>, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new("kubectl");
    if let Some(k) = kubeconfig {
        cmd.arg("--kubeconfig").arg(k.path());
    }
    cmd.args(args).output().context("running kubectl")
}

/// `kubectl auth can-i` as `who`: true for "yes".
fn can_i(who: &tempfile::NamedTempFile, args: &[&str]) -> anyhow::Result<bool> {
    let out = kubectl(Some(who), &[&["auth", "can-i"], args].concat())?;
    Ok(text(&out.stdout).trim() == "yes")
}

/// `kubectl delete` as admin, of what a reinstall leaves behind: install-operator applies
/// without pruning (Helm would prune), so the served installation keeps the default one's
/// cluster-wide binding, and the default one the served one's RoleBinding and policy.
fn delete(args: &[&str]) -> anyhow::Result<()> {
    let out = kubectl(None, &[&["delete", "--ignore-not-found"], args].concat())?;
    ensure!(
        out.status.success(),
        "kubectl delete {args:?}: {}",
        text(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn with_watch_namespaces_the_controller_reaches_only_the_namespaces_it_serves()
-> anyhow::Result<()> {
    let p = Protected::create("watched").await?;
    let other = TestNs::create("unwatched").await?;
    let editor = editor_of(&other).await?;
    install_operator(Some(&format!("watchNamespaces={{{}}}", p.name())))?;
    // What only the default installation grants: the namespaced rights in every namespace.
    let res = match delete(&["clusterrolebinding", NAMESPACED_ROLE]) {
        Ok(()) => served(&p, &other, &editor).await,
        Err(e) => Err(e),
    };
    // The default installation again, whatever happened.
    let back = install_operator(None)
        .and_then(|()| delete(&["-n", OPERATOR_NS, "rolebinding", NAMESPACED_ROLE]))
        .and_then(|()| {
            delete(&[
                "validatingadmissionpolicy,validatingadmissionpolicybinding",
                "lifeboat-controller-bindings",
            ])
        });
    let cleanup = async {
        other.delete().await?;
        p.cleanup().await
    };
    res?;
    back?;
    cleanup.await
}

async fn served(p: &Protected, other: &TestNs, editor: &Editor) -> anyhow::Result<()> {
    let controller = kubeconfig_for_service_account(&p.ns.client, OPERATOR_NS, CONTROLLER_SA)
        .await
        .context("a token of the controller's ServiceAccount")?;

    // (a) Secrets: only where it serves (and in its own namespace: its evidence key).
    for (ns, want) in [
        ("kube-system", false),
        (other.name.as_str(), false),
        (p.name(), true),
        (OPERATOR_NS, true),
    ] {
        let got = can_i(&controller, &["get", "secrets", "-n", ns])?;
        ensure!(
            got == want,
            "controller: get secrets -n {ns}: {got}, want {want}"
        );
    }
    ensure!(
        !can_i(&controller, &["list", "secrets", "-A"])?,
        "the controller may list Secrets cluster-wide"
    );
    for verb in ["create", "patch", "delete"] {
        ensure!(
            !can_i(&controller, &[verb, "secrets", "-n", &other.name])?,
            "the controller may {verb} Secrets in an unserved namespace"
        );
        ensure!(
            !can_i(&controller, &[verb, "jobs.batch", "-n", &other.name])?,
            "the controller may {verb} Jobs in an unserved namespace"
        );
    }
    ensure!(
        !can_i(
            &controller,
            &["get", "backuppolicies.lifeboat.dev", "-n", &other.name]
        )?,
        "the controller may read an unserved namespace's policies"
    );

    // A compromised controller binding its namespaced rights to itself outside a sandbox:
    // RBAC lets it create the binding (a sandbox is made at run time), admission refuses.
    for ns in ["kube-system", other.name.as_str()] {
        let out = kubectl(
            Some(&controller),
            &[
                "-n",
                ns,
                "create",
                "rolebinding",
                "grab",
                &format!("--clusterrole={NAMESPACED_ROLE}"),
                &format!("--serviceaccount={OPERATOR_NS}:{CONTROLLER_SA}"),
            ],
        )?;
        let err = text(&out.stderr);
        ensure!(
            !out.status.success() && err.contains("only in the drill sandboxes it makes"),
            "binding the controller's rights in {ns}: {}{err}",
            text(&out.stdout)
        );
    }

    // (b) A backup and a drill of the served namespace, sandbox included.
    p.pvc_with(
        "data",
        json!({"app": "shop"}),
        "printf 'hello\\n' > /data/hello.txt",
    )
    .await?;
    p.store_ready("s3").await?;
    p.apply(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {
            "storeRef": {"name": "s3"},
            "schedule": {"cron": "0 0 1 1 *"},
            "sources": {
                "volumes": [{"pvcName": "data", "copyMethod": "Direct"}],
                "databases": [
                    {"name": "pg", "engine": "postgres", "host": env("LIFEBOAT_TEST_PG_HOST"),
                     "port": env("LIFEBOAT_TEST_PG_PORT").parse::<u16>()?, "database": p.db,
                     "credentials": {"name": "pg-login"}}
                ]
            }
        }
    }))
    .await?;
    backup_now(p, "b1").await?;
    p.apply(drill_json(
        "shop-drill",
        json!({
            "policyRef": {"name": "shop"},
            "schedule": {"cron": "0 0 1 1 *"},
            "checks": [
                {"name": "orders", "sql": {"database": "pg", "query": "select count(*) from orders",
                                           "expect": {"atLeast": "1000"}}},
                {"name": "files", "files": {"volume": "data", "exist": ["hello.txt"]}}
            ],
            "objectives": {"rto": "10m", "rpo": "1h"}
        }),
    ))
    .await?;
    let run: DrillRun = run_drill(p, "shop-drill", "shop-drill-1").await?;
    let st = run.status.clone().unwrap_or_default();
    ensure!(
        st.outcome == Some(DrillOutcome::Passed),
        "the drill in the served namespace: {:?} {:?}",
        st.outcome,
        st.failure
    );

    // (c) An editor's objects in an unserved namespace: never reconciled. By now the
    // controller has had a backup and a drill's time to see them.
    let apply = |v: serde_json::Value| editor.apply(&v);
    apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-pass"},
                 "stringData": {"password": "x"}}),
    )?;
    apply(p.store_json("s3", &p.bucket, "repo-pass"))?;
    apply(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "* * * * *"},
                 "sources": {"volumes": [{"pvcName": "data"}]}}
    }))?;
    apply(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "now"},
        "spec": {"policyRef": {"name": "shop"}}
    }))?;
    // Long enough for a reconcile, a scheduled slot (every minute) and a store probe.
    tokio::time::sleep(Duration::from_secs(75)).await;
    let policy = other.api::<BackupPolicy>().get("shop").await?;
    ensure!(
        policy.status.is_none(),
        "an unserved namespace's policy was reconciled: {:?}",
        policy.status
    );
    let backups = other.api::<Backup>().list(&Default::default()).await?;
    ensure!(
        backups.items.len() == 1 && backups.items[0].status.is_none(),
        "an unserved namespace's Backup was reconciled or a scheduled one made: {:?}",
        backups
            .items
            .iter()
            .map(|b| (b.metadata.name.clone(), b.status.clone()))
            .collect::<Vec<_>>()
    );
    ensure!(
        other
            .api::<ServiceAccount>()
            .get_opt("lifeboat-mover")
            .await?
            .is_none(),
        "the controller made its mover ServiceAccount in an unserved namespace"
    );
    // The served namespace's objects are still ours (a cheap liveness check).
    wait_for(
        "the served policy's status",
        Duration::from_secs(30),
        || async {
            let pol = p.ns.api::<BackupPolicy>().get("shop").await?;
            Ok(pol.status.is_some().then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// A ServiceAccount of `ns` bound to the built-in `edit` ClusterRole, acting with its
/// own token.
struct Editor {
    ns: String,
    kubeconfig: tempfile::NamedTempFile,
}

impl Editor {
    fn apply(&self, v: &serde_json::Value) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig.path())
            .args(["-n", &self.ns, "apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(serde_json::to_string(v)?.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "kubectl apply as the editor: {}",
            text(&out.stderr)
        );
        Ok(())
    }
}

async fn editor_of(ns: &TestNs) -> anyhow::Result<Editor> {
    let sas: Api<ServiceAccount> = ns.api();
    sas.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "editor"}}))?,
    )
    .await?;
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = ns.api();
    rbs.create(
        &Default::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "editor-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": ns.name}]}))?,
    )
    .await?;
    let kubeconfig = kubeconfig_for_service_account(&ns.client, &ns.name, "editor").await?;
    let e = Editor {
        ns: ns.name.clone(),
        kubeconfig,
    };
    wait_for("the editor's rights", Duration::from_secs(30), || async {
        Ok(can_i(
            &e.kubeconfig,
            &["create", "backuppolicies.lifeboat.dev", "-n", &e.ns],
        )?
        .then_some(()))
    })
    .await?;
    Ok(e)
}

//! Admission of Lifeboat's kinds by the real API server (issue 15): every CEL rule of the
//! CRDs (src/crd/rules.rs, the tables in docs/reference.md) refuses a violation applied
//! with `kubectl apply` by a namespace editor (a ServiceAccount bound to the built-in
//! `edit` role, into which the chart aggregates Lifeboat's kinds), with the field's path
//! and a message naming it; a valid object with every field set is accepted; each
//! transition rule refuses a spec update while metadata edits and status writes still
//! work. ClusterBackupStores are cluster-scoped, so the cluster administrator applies
//! them; editors may create DrillRuns but never update them (RBAC), so the administrator
//! makes the DrillRun update the rule refuses.
//!
//! `every_rule_has_a_case` (no cluster needed) proves the case tables cover every rule
//! the CRDs carry: a new rule without a case fails it.

mod cases;
#[path = "../common/mod.rs"]
mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cases::{
    Case, Kind, backup, backup_policy, backup_store, cluster_backup_store, drill, drill_run,
    restore,
};
use common::env;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use lifeboat_e2e::testing::{self, TestNs, wait_for};
use serde_json::{Value, json};

/// `obj` with the case's edits applied (each pointer's parent must exist).
fn edited(mut obj: Value, c: &Case) -> Value {
    for (pointer, value) in &c.edits {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        let parent = obj
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{pointer}: no parent"));
        match (parent, value) {
            (Value::Object(m), Some(v)) => {
                m.insert(key.to_string(), v.clone());
            }
            (Value::Object(m), None) => {
                m.remove(key);
            }
            (Value::Array(a), Some(v)) => a[key.parse::<usize>().expect("an index")] = v.clone(),
            (Value::Array(a), None) => {
                a.remove(key.parse::<usize>().expect("an index"));
            }
            _ => panic!("{pointer}: parent is neither object nor list"),
        }
    }
    obj
}

/// `kubectl apply -f -` of one object as the identity of `kubeconfig`; `Ok(())` or the
/// refusal's text.
fn kubectl_apply(
    kubeconfig: &str,
    ns: Option<&str>,
    obj: &Value,
) -> anyhow::Result<Result<(), String>> {
    let mut cmd = Command::new("kubectl");
    cmd.args(["--kubeconfig", kubeconfig]);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "running kubectl (source e2e/.local/env.sh: it puts the venv's kubectl on PATH)",
        )?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(&serde_json::to_vec(obj)?)?;
    let out = child.wait_with_output()?;
    Ok(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// `kubectl patch --subresource=status` as the controller's ServiceAccount (the
/// administrator impersonating it): the controller's kind of write. As anyone else, the
/// chart's `run-records` ValidatingAdmissionPolicy refuses a change to a finished run's
/// status (docs/security.md), which is not what this checks. Every status has
/// `observedGeneration`.
fn status_write(kind: &str, ns: Option<&str>, name: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("kubectl");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let controller = format!(
        "system:serviceaccount:{}:lifeboat-controller",
        common::OPERATOR_NS
    );
    let out = cmd
        .args(["--as", &controller])
        .args([
            "patch",
            &format!("{}.lifeboat.dev", kind.to_lowercase()),
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":42}}"#,
        ])
        .env("KUBECONFIG", env("KUBECONFIG"))
        .output()?;
    ensure!(
        out.status.success(),
        "status write of {kind}/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Whether a refusal is exactly the case's: one error, at its path, with its message.
fn refused_as(err: &str, c: &Case) -> Result<(), String> {
    let one = !err.contains("\n* ");
    let at = err.contains(&format!("{}: ", c.at));
    if one && at && err.contains(c.says) {
        Ok(())
    } else {
        Err(format!(
            "want one error at {} saying {:?}; got: {}",
            c.at,
            c.says,
            err.trim()
        ))
    }
}

/// A namespace with a ServiceAccount bound to the built-in `edit` role, and its
/// kubeconfig (a TokenRequest token: a real identity to RBAC and admission).
struct Editor {
    ns: TestNs,
    kubeconfig: tempfile::NamedTempFile,
}

impl Editor {
    async fn create(prefix: &str) -> anyhow::Result<Self> {
        let ns = TestNs::create(prefix).await?;
        let sas: Api<ServiceAccount> = ns.api();
        sas.create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "editor"}}))?,
        )
        .await?;
        let admin = env("KUBECONFIG");
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "editor-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": ns.name}]});
        kubectl_apply(&admin, Some(&ns.name), &binding)?.map_err(anyhow::Error::msg)?;
        let kubeconfig =
            testing::kubeconfig_for_service_account(&ns.client, &ns.name, "editor").await?;
        let path = kubeconfig.path().to_str().unwrap().to_string();
        let ns_name = ns.name.clone();
        // The aggregated role is the chart's (e2e/install-operator installs it), and RBAC
        // takes a moment to see a new binding.
        wait_for(
            "the editor's rights on lifeboat kinds (is the chart installed?)",
            Duration::from_secs(30),
            || {
                let (path, ns) = (path.clone(), ns_name.clone());
                async move {
                    let ok = Command::new("kubectl")
                        .args(["--kubeconfig", &path, "-n", &ns, "auth", "can-i", "create"])
                        .arg("backuppolicies.lifeboat.dev")
                        .output()?
                        .status
                        .success();
                    Ok(ok.then_some(()))
                }
            },
        )
        .await?;
        Ok(Editor { ns, kubeconfig })
    }

    fn path(&self) -> String {
        self.kubeconfig.path().to_str().unwrap().to_string()
    }
}

/// Applies the valid object and every case as `applier`; for a kind with a transition
/// rule, creates a record, refuses the spec change (as `updater`) and shows that a
/// metadata edit and a status write still go through. Collects every mismatch before
/// failing, so one run reports them all.
async fn exercise(
    k: Kind,
    applier: &str,
    updater: &str,
    ns: Option<&str>,
    suffix: &str,
) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    let named = |mut obj: Value, name: &str| {
        obj["metadata"]["name"] = format!("{name}{suffix}").into();
        obj
    };
    if let Err(e) = kubectl_apply(applier, ns, &named(k.valid.clone(), "valid"))? {
        bail!("{}: the valid object was refused: {e}", k.kind);
    }
    for (i, c) in k.cases.iter().enumerate() {
        let obj = named(edited(k.valid.clone(), c), &format!("bad-{i}"));
        match kubectl_apply(applier, ns, &obj)? {
            Ok(()) => wrong.push(format!("{} case {i} ({}): accepted", k.kind, c.at)),
            Err(e) => {
                if let Err(m) = refused_as(&e, c) {
                    wrong.push(format!("{} case {i}: {m}", k.kind));
                }
            }
        }
    }
    if let Some(t) = &k.transition {
        let record = named(k.valid.clone(), "record");
        let name = record["metadata"]["name"].as_str().unwrap().to_string();
        kubectl_apply(applier, ns, &record)?.map_err(anyhow::Error::msg)?;
        match kubectl_apply(updater, ns, &edited(record.clone(), t))? {
            Ok(()) => wrong.push(format!("{}: spec change accepted", k.kind)),
            Err(e) => {
                if let Err(m) = refused_as(&e, t) {
                    wrong.push(format!("{} transition: {m}", k.kind));
                }
            }
        }
        let mut labelled = record.clone();
        labelled["metadata"]["labels"] = json!({"reviewed": "yes"});
        if let Err(e) = kubectl_apply(updater, ns, &labelled)? {
            wrong.push(format!("{}: a label edit was refused: {e}", k.kind));
        }
        status_write(k.kind, ns, &name)?;
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

async fn as_editor(prefix: &str, k: Kind) -> anyhow::Result<()> {
    let ed = Editor::create(prefix).await?;
    let path = ed.path();
    exercise(k, &path, &path, Some(&ed.ns.name), "").await?;
    ed.ns.delete().await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn backup_store_rules() -> anyhow::Result<()> {
    as_editor("adm-store", backup_store()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn cluster_backup_store_rules() -> anyhow::Result<()> {
    // Cluster-scoped: the cluster administrator applies it (editors cannot); names carry
    // a random suffix and are removed after.
    let suffix = format!("-{:08x}", rand::random::<u32>());
    let admin = env("KUBECONFIG");
    let res = exercise(cluster_backup_store(), &admin, &admin, None, &suffix).await;
    let out = Command::new("kubectl")
        .args([
            "delete",
            "clusterbackupstores.lifeboat.dev",
            "--ignore-not-found",
        ])
        .args(
            ["valid", "bad-0", "bad-1", "bad-2", "bad-3", "bad-4"].map(|n| format!("{n}{suffix}")),
        )
        .env("KUBECONFIG", &admin)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    res
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn backup_policy_rules() -> anyhow::Result<()> {
    as_editor("adm-policy", backup_policy()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn backup_rules() -> anyhow::Result<()> {
    as_editor("adm-backup", backup()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn restore_rules() -> anyhow::Result<()> {
    as_editor("adm-restore", restore()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn drill_rules() -> anyhow::Result<()> {
    as_editor("adm-drill", drill()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn drill_run_rules() -> anyhow::Result<()> {
    // Editors create DrillRuns; only the administrator (and the controller) may update
    // one, so the administrator makes the update the rule refuses. The editor's own
    // update is refused by RBAC before any rule.
    let ed = Editor::create("adm-drun").await?;
    let (path, admin) = (ed.path(), env("KUBECONFIG"));
    exercise(drill_run(), &path, &admin, Some(&ed.ns.name), "").await?;
    let mut changed = drill_run().valid;
    changed["metadata"]["name"] = "record".into();
    changed["metadata"]["labels"] = json!({"edited": "by-editor"});
    match kubectl_apply(&path, Some(&ed.ns.name), &changed)? {
        Ok(()) => bail!("the editor updated a DrillRun"),
        Err(e) => ensure!(e.contains("forbidden"), "{e}"),
    }
    ed.ns.delete().await
}

/// Every rule of every CRD has a case: normalised (`[0]` → `[]`), the case's path is the
/// rule's (plus its `fieldPath`), and its fragment is part of the rule's message.
#[test]
fn every_rule_has_a_case() {
    fn rules(path: &str, node: &Value, out: &mut Vec<(String, String)>) {
        for r in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let at = format!("{path}{}", r["fieldPath"].as_str().unwrap_or(""));
            out.push((at, r["message"].as_str().unwrap_or("").to_string()));
        }
        for (name, child) in node["properties"].as_object().into_iter().flatten() {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            rules(&p, child, out);
        }
        if node["items"].is_object() {
            rules(&format!("{path}[]"), &node["items"], out);
        }
    }
    fn normalised(at: &str) -> String {
        let mut out = String::new();
        let mut in_index = false;
        for ch in at.chars() {
            match ch {
                '[' => {
                    in_index = true;
                    out.push('[');
                }
                ']' => {
                    in_index = false;
                    out.push(']');
                }
                _ if in_index => {}
                _ => out.push(ch),
            }
        }
        out
    }
    let kinds = [
        backup_store(),
        cluster_backup_store(),
        backup_policy(),
        backup(),
        restore(),
        drill(),
        drill_run(),
    ];
    let (mut missing, mut checked) = (Vec::new(), 0);
    for crd in lifeboat::crd::all_crds() {
        let kind = &crd.spec.names.kind;
        let k = kinds
            .iter()
            .find(|k| k.kind == kind)
            .unwrap_or_else(|| panic!("no cases for {kind}"));
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut all = Vec::new();
        rules("", &schema, &mut all);
        for (at, message) in all {
            checked += 1;
            let covered = k
                .cases
                .iter()
                .chain(k.transition.iter())
                .any(|c| normalised(c.at) == at && message.contains(c.says));
            if !covered {
                missing.push(format!("{kind} {at}: {message}"));
            }
        }
    }
    assert!(missing.is_empty(), "rules without a case: {missing:#?}");
    assert!(
        checked > 50,
        "only {checked} rules found: is the schema walk broken?"
    );
}

//! Pod Security and drill sandbox containment against the real API server: a namespace's
//! Pod Security level refuses a pod that breaks it, whoever sends it; a drill's sandbox
//! enforces its level, holds restored workloads to it (the `lifeboat:pod-security`
//! check), restores no DaemonSets, NetworkPolicies or PodDisruptionBudgets, suspends
//! Jobs, turns node ports into cluster IPs, and lets only Lifeboat's own pods out; and a
//! sandbox is never more permissive than the namespace it restores.
//!
//! NB: the local node does not enforce NetworkPolicies, so the policy objects are checked
//! (their selectors and rules), not packets.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{Protected, backup_now, drill_json, run_drill};
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use lifeboat::crd::dr_drill::DrillOutcome;
use lifeboat_e2e::testing::{self, TestNs, wait_for};
use serde_json::json;

/// `kubectl apply` of one object with a kubeconfig: (success, stderr).
fn kubectl_apply(
    kubeconfig: &std::path::Path,
    obj: &serde_json::Value,
) -> anyhow::Result<(bool, String)> {
    let mut child = Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(serde_json::to_string(obj)?.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// A ServiceAccount of `ns` bound to the `edit` ClusterRole there: a namespace editor.
async fn editor(ns: &TestNs) -> anyhow::Result<tempfile::NamedTempFile> {
    let client = &ns.client;
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = ns.api();
    sas.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "editor"}}))?,
    )
    .await?;
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = ns.api();
    rbs.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "editor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": ns.name}]}))?,
    )
    .await?;
    testing::kubeconfig_for_service_account(client, &ns.name, "editor").await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn pod_security_admission_refuses_a_pod_that_breaks_the_namespace_level() -> anyhow::Result<()>
{
    let ns = TestNs::create_with_pod_security("e2e-psa", "restricted").await?;
    let result = async {
        let kc = editor(&ns).await?;
        let pod = |name: &str, sc: serde_json::Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns.name},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["true"], "securityContext": sc}]}})
        };
        let (ok, err) = kubectl_apply(kc.path(), &pod("bad", json!({"privileged": true})))?;
        ensure!(!ok, "a privileged pod was admitted into a restricted namespace");
        ensure!(
            err.contains("violates PodSecurity \"restricted:latest\"") && err.contains("privileged"),
            "refusal does not name the level and the field: {err}"
        );
        let good = json!({"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
        let (ok, err) = kubectl_apply(kc.path(), &pod("good", good))?;
        ensure!(ok, "a restricted pod was refused: {err}");
        Ok(())
    }
    .await;
    ns.delete().await?;
    result
}

fn manifests_policy() -> serde_json::Value {
    json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
        "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
            "sources": {"manifests": {"kinds": ["Deployment", "DaemonSet", "Service", "Job",
                "NetworkPolicy", "PodDisruptionBudget.policy"]}}}})
}

/// What the application namespace holds: one workload that meets `restricted`, one that
/// needs a host path, and the kinds a sandbox must not get as they are.
async fn apply_application(p: &Protected) -> anyhow::Result<()> {
    let restricted_pod = json!({
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "web", "image": "busybox", "command": ["sleep", "3600"],
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
    let deployment = |name: &str, pod: serde_json::Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}})
    };
    p.apply(deployment("web", restricted_pod.clone())).await?;
    p.apply(deployment(
        "agent",
        json!({
        "containers": [{"name": "agent", "image": "busybox", "command": ["sleep", "3600"],
            "volumeMounts": [{"name": "logs", "mountPath": "/host-logs"}]}],
        "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}),
    ))
    .await?;
    p.apply(
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "logger"},
        "spec": {"selector": {"matchLabels": {"app": "logger"}},
            "template": {"metadata": {"labels": {"app": "logger"}}, "spec": restricted_pod}}}),
    )
    .await?;
    p.apply(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await?;
    p.apply(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "m", "image": "busybox", "command": ["true"],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}}))
    .await?;
    p.apply(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}),
    )
    .await?;
    p.apply(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}))
    .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_drill_sandbox_holds_restored_workloads_to_its_level_and_contains_them()
-> anyhow::Result<()> {
    let p = Protected::create("e2e-sbx").await?;
    let mut sandbox = None;
    let result = async {
        p.store_ready("s3").await?;
        apply_application(&p).await?;
        p.apply(manifests_policy()).await?;
        backup_now(&p, "b1").await?;
        p.apply(drill_json(
            "contain",
            json!({
            "policyRef": {"name": "shop"}, "schedule": {"cron": "0 0 1 1 *"},
            "restore": {"volumes": false, "manifests": true},
            // A command check is the user's program: it runs as an ordinary, restricted
            // sandbox pod.
            "checks": [{"name": "app", "command": {"image": "debian:bookworm-slim",
                "command": ["sh", "-c", "test \"$(id -u)\" = 65532"]}, "timeout": "2m"}],
            "sandbox": {"keepOnFailure": true, "ttl": "30m"}}),
        ))
        .await?;
        let run = run_drill(&p, "contain", "contain-1").await?;
        let st = run.status.clone().context("status")?;
        sandbox = st.sandbox_namespace.clone();
        let sb = sandbox.clone().context("sandbox recorded")?;
        ensure!(
            st.outcome == Some(DrillOutcome::Failed),
            "outcome {:?}",
            st.outcome
        );
        let f = st.failure.as_ref().context("failure")?;
        ensure!(
            f.step == "check/lifeboat:pod-security",
            "failed at {}: {:?}",
            f.step,
            f.failure
        );
        let check = st
            .checks
            .iter()
            .find(|c| c.name == "lifeboat:pod-security")
            .context("check")?;
        let observed = check.observed.clone().unwrap_or_default();
        ensure!(
            observed.starts_with("Deployment/agent: ")
                && observed.contains("hostPath volume \"logs\"")
                && !observed.contains("Deployment/web"),
            "pod-security check: {observed}"
        );
        let app = st
            .checks
            .iter()
            .find(|c| c.name == "app")
            .context("app check")?;
        ensure!(
            app.result == lifeboat::crd::dr_drill::CheckVerdict::Passed,
            "command check {app:?}"
        );

        let client = &p.ns.client;
        let ns = Api::<Namespace>::all(client.clone()).get(&sb).await?;
        let l = ns.labels();
        ensure!(
            l.get("pod-security.kubernetes.io/enforce")
                .map(String::as_str)
                == Some("restricted")
                && l.get("pod-security.kubernetes.io/warn").map(String::as_str)
                    == Some("restricted"),
            "sandbox labels {l:?}"
        );
        // The API server enforced the level: the agent's pods were refused.
        let rss = Api::<ReplicaSet>::namespaced(client.clone(), &sb)
            .list(&ListParams::default().labels("app=agent"))
            .await?;
        let refused = rss.items.iter().any(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "ReplicaFailure"
                            && c.message
                                .as_deref()
                                .is_some_and(|m| m.contains("violates PodSecurity"))
                    })
                })
        });
        ensure!(
            refused,
            "the agent's pods were not refused by Pod Security admission"
        );
        // Contained kinds.
        let ds = Api::<DaemonSet>::namespaced(client.clone(), &sb)
            .list(&ListParams::default())
            .await?;
        ensure!(ds.items.is_empty(), "a DaemonSet was restored");
        let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), &sb)
            .list(&ListParams::default())
            .await?;
        ensure!(pdb.items.is_empty(), "a PodDisruptionBudget was restored");
        let svc = Api::<Service>::namespaced(client.clone(), &sb)
            .get("web")
            .await?;
        ensure!(
            svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ClusterIP"),
            "{:?}",
            svc.spec
        );
        let job = Api::<Job>::namespaced(client.clone(), &sb)
            .get("migrate")
            .await?;
        ensure!(
            job.spec.as_ref().and_then(|s| s.suspend) == Some(true),
            "Job not suspended"
        );
        let quota = Api::<ResourceQuota>::namespaced(client.clone(), &sb)
            .get("lifeboat-sandbox")
            .await?;
        let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
        ensure!(
            hard.get("services.nodeports").map(|q| q.0.as_str()) == Some("0"),
            "quota {hard:?}"
        );
        // Only Lifeboat's policies: deny-all with DNS to the cluster DNS, and the movers'
        // way out, which selects the sandbox's token only.
        let nps = Api::<NetworkPolicy>::namespaced(client.clone(), &sb)
            .list(&ListParams::default())
            .await?;
        let mut names: Vec<String> = nps.items.iter().map(|n| n.name_any()).collect();
        names.sort();
        ensure!(
            names == ["lifeboat-sandbox-isolation", "lifeboat-sandbox-movers"],
            "policies {names:?}"
        );
        let movers = nps
            .items
            .iter()
            .find(|n| n.name_any() == "lifeboat-sandbox-movers")
            .unwrap();
        let sel = movers
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.clone())
            .and_then(|s| s.match_labels)
            .unwrap_or_default();
        ensure!(
            sel.len() == 1 && sel.contains_key("lifeboat.dev/sandbox-token"),
            "mover selector {sel:?}"
        );
        // The restore movers are gone by now (their token is pinned by the restore
        // plan's unit tests); the command check, a sandbox pod like any, has none.
        let check = Api::<Job>::namespaced(client.clone(), &sb)
            .get("contain-1-check-app")
            .await?;
        let carries = check
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .is_some_and(|l| l.contains_key("lifeboat.dev/sandbox-token"));
        ensure!(!carries, "the command check carries the token");
        Ok(())
    }
    .await;
    if let Some(sb) = sandbox {
        let _ = Api::<Namespace>::all(p.ns.client.clone())
            .delete(&sb, &DeleteParams::default())
            .await;
    }
    p.cleanup().await?;
    result
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn a_sandbox_is_never_more_permissive_than_the_namespace_it_restores() -> anyhow::Result<()> {
    let p = Protected::create("e2e-sbx-cap").await?;
    let result = async {
        p.store_ready("s3").await?;
        p.pvc_with("data", json!({}), "echo hi > /data/hi").await?;
        p.apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "shop"},
            "spec": {"storeRef": {"name": "s3"}, "schedule": {"cron": "0 0 1 1 *"},
                "sources": {"volumes": [{"pvcName": "data", "copyMethod": "Direct"}]}}}))
        .await?;
        backup_now(&p, "b1").await?;
        // The namespace is tightened after its backups: restoring its volumes would need
        // a baseline sandbox, more permissive than the namespace now is.
        let patch = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
        Api::<Namespace>::all(p.ns.client.clone())
            .patch(p.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        p.apply(drill_json("capped", json!({
            "policyRef": {"name": "shop"}, "schedule": {"cron": "0 0 1 1 *"},
            "checks": [{"name": "files", "files": {"volume": "data", "exist": ["hi"]}}]})))
        .await?;
        let run = run_drill(&p, "capped", "capped-1").await?;
        let st = run.status.context("status")?;
        let f = st.failure.context("failure")?;
        ensure!(
            f.step == "Provisioning" && f.failure.reason == "SandboxPodSecurity"
                && f.failure.message.contains("enforces restricted"),
            "{f:?}"
        );
        let gone = wait_for("no sandbox", Duration::from_secs(30), || async {
            let nss = Api::<Namespace>::all(p.ns.client.clone())
                .list(&ListParams::default().labels("lifeboat.dev/drill-run=capped-1"))
                .await?;
            Ok(nss.items.is_empty().then_some(()))
        })
        .await;
        ensure!(gone.is_ok(), "a sandbox was made although the run could not restore");
        Ok(())
    }
    .await;
    p.cleanup().await?;
    result
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn the_operator_namespace_enforces_restricted_and_the_controller_meets_it()
-> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::PostParams;
    let client = testing::client().await?;
    common::require_operator(&client).await?;
    let ns = Api::<Namespace>::all(client.clone())
        .get(common::OPERATOR_NS)
        .await?;
    ensure!(
        ns.labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str)
            == Some("restricted"),
        "labels {:?}",
        ns.labels()
    );
    // A copy of a running controller pod is admitted (dry run), a privileged one is not.
    let pods: Api<Pod> = Api::namespaced(client.clone(), common::OPERATOR_NS);
    let running = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
        .await?
        .items
        .into_iter()
        .next()
        .context("a controller pod")?;
    let mut copy = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("psa-probe".into()),
            ..Default::default()
        },
        spec: running.spec.clone(),
        status: None,
    };
    if let Some(s) = copy.spec.as_mut() {
        s.node_name = None;
    }
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    pods.create(&dry, &copy)
        .await
        .context("the controller's pod spec is refused by its namespace's level")?;
    let mut bad = copy.clone();
    if let Some(c) = bad.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.security_context = Some(serde_json::from_value(json!({"privileged": true}))?);
    }
    let err = pods
        .create(&dry, &bad)
        .await
        .expect_err("a privileged pod admitted");
    ensure!(err.to_string().contains("violates PodSecurity"), "{err}");
    Ok(())
}

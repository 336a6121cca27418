//! A drill run's sandbox namespace and what contains it: the Pod Security level it
//! enforces, its ResourceQuota (the drill's, or a default), and its NetworkPolicies.
//! Pure: the run's plan decides when to create these; nothing here talks to the API.
//!
//! Invariants:
//! - The sandbox enforces the drill's Pod Security level, raised to `baseline` only while
//!   the run restores volumes into it (Lifeboat's own volume mover needs it), and never
//!   above the level the drill's own namespace enforces.
//! - Under `DenyAll`, only pods carrying this sandbox's token may leave the namespace: the
//!   token is derived from the sandbox namespace's UID, which did not exist when any
//!   backup being restored was taken, so no restored object can carry it. Checks that do
//!   not need the store (HTTP, SQL queries, files) do not get it.
//! - DNS egress reaches only the cluster's DNS pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::plan::{Provision, run_annotations, run_labels};
use crate::crd::common::Failure;
use crate::crd::dr_drill::{CheckResult, CheckVerdict};
use crate::crd::dr_drill::{DRDrillSpec, DrillRun, SandboxNetworkPolicy, SandboxPodSecurity};
use crate::crd::labels;
use crate::crd::restore::ALLOW_RESTORE_FROM;
use crate::drill::checks::summarise;
use crate::drill::pod_security::{Level, violations};
pub(crate) use crate::jobs::sandbox_token as token;
use crate::jobs::security::Privilege;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// Name of the ResourceQuota in a sandbox.
pub const QUOTA_NAME: &str = "lifeboat-sandbox";
/// NetworkPolicy isolating a sandbox.
pub const ISOLATION_POLICY: &str = "lifeboat-sandbox-isolation";
/// NetworkPolicy letting Lifeboat's own movers reach the store.
pub const MOVER_POLICY: &str = "lifeboat-sandbox-movers";
/// The Pod Security labels of a namespace.
pub const PSA_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const PSA_WARN: &str = "pod-security.kubernetes.io/warn";
pub const PSA_AUDIT: &str = "pod-security.kubernetes.io/audit";
/// Pods of the cluster DNS (CoreDNS and kube-dns both carry this label), in kube-system.
const DNS_POD_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// The quota of a sandbox whose drill sets none: object counts only (a cpu or memory
/// quota would refuse every pod without resources), and no LoadBalancer or NodePort
/// Service at all, whatever the restored manifests say.
pub fn default_quota() -> BTreeMap<String, Quantity> {
    [
        ("pods", "50"),
        ("services", "25"),
        ("services.loadbalancers", "0"),
        ("services.nodeports", "0"),
        ("persistentvolumeclaims", "25"),
        ("count/jobs.batch", "50"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
    .collect()
}

/// The levels of a run's sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    /// What restored workloads are judged against (the `pod-security` check), and what
    /// the namespace warns and audits at.
    pub verdict: Level,
    /// What the namespace enforces while Lifeboat restores into it.
    pub enforce: Level,
}

/// The levels of a sandbox: the drill's choice, capped by what the drill's namespace
/// enforces (`source`), and raised for enforcement when Lifeboat's own volume mover
/// runs there. A source that cannot admit that mover fails the run: restoring volumes
/// would need a sandbox more permissive than the namespace the data came from.
pub fn levels(
    requested: SandboxPodSecurity,
    source: Level,
    restores_volumes: bool,
) -> Result<Levels, Failure> {
    let requested = match requested {
        SandboxPodSecurity::Restricted => Level::Restricted,
        SandboxPodSecurity::Baseline => Level::Baseline,
    };
    let verdict = requested.min(source);
    let enforce = if restores_volumes {
        verdict.max(Privilege::WriteAnyOwner.level())
    } else {
        verdict
    };
    if enforce > source {
        return Err(Failure {
            reason: "SandboxPodSecurity".into(),
            message: format!(
                "restoring volumes needs a sandbox that admits the baseline Pod Security level (the volume mover writes files of every owner as root), but the drill's namespace enforces {}; a sandbox is never more permissive than its source",
                source.as_str()
            ),
        });
    }
    Ok(Levels { verdict, enforce })
}

/// The namespace, quota and network policies of a run's sandbox. `uid` is the sandbox
/// namespace's UID once it exists: the mover policy needs its token.
pub fn sandbox_objects(
    run: &DrillRun,
    spec: &DRDrillSpec,
    name: &str,
    levels: Levels,
    uid: Option<&str>,
) -> Provision {
    let mut lbl = run_labels(run, "drill-sandbox");
    lbl.insert(labels::SANDBOX.into(), "true".into());
    lbl.insert(PSA_ENFORCE.into(), levels.enforce.as_str().into());
    lbl.insert(PSA_WARN.into(), levels.verdict.as_str().into());
    lbl.insert(PSA_AUDIT.into(), levels.verdict.as_str().into());
    let mut ann = run_annotations(run);
    ann.insert(
        ALLOW_RESTORE_FROM.into(),
        run.namespace().unwrap_or_default(),
    );
    let meta = |n: &str| ObjectMeta {
        name: Some(n.into()),
        namespace: Some(name.into()),
        labels: Some(run_labels(run, "drill-sandbox")),
        ..ObjectMeta::default()
    };
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(lbl),
            annotations: Some(ann),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let hard = if spec.sandbox.resource_quota.is_empty() {
        default_quota()
    } else {
        spec.sandbox.resource_quota.clone()
    };
    let quota = Some(ResourceQuota {
        metadata: meta(QUOTA_NAME),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        status: None,
    });
    let limit_range = super::limits::for_quota(&spec.sandbox.resource_quota, meta(""));
    let mut network_policies = Vec::new();
    if spec.sandbox.network_policy == SandboxNetworkPolicy::DenyAll {
        network_policies.push(isolation(meta(ISOLATION_POLICY)));
        if let Some(uid) = uid {
            network_policies.push(movers(meta(MOVER_POLICY), &token(uid)));
        }
    }
    Provision {
        namespace,
        quota,
        limit_range,
        network_policies,
    }
}

/// Deny everything but traffic inside the sandbox and DNS queries to the cluster's DNS.
fn isolation(meta: ObjectMeta) -> NetworkPolicy {
    let same_ns = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    };
    let dns_pods = NetworkPolicyPeer {
        namespace_selector: Some(selector("kubernetes.io/metadata.name", "kube-system")),
        pod_selector: Some(selector(DNS_POD_LABEL.0, DNS_POD_LABEL.1)),
        ..NetworkPolicyPeer::default()
    };
    let dns = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(53)),
        ..NetworkPolicyPort::default()
    };
    NetworkPolicy {
        metadata: meta,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![same_ns.clone()]),
                ..NetworkPolicyIngressRule::default()
            }]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![same_ns]),
                    ..NetworkPolicyEgressRule::default()
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![dns_pods]),
                    ports: Some(vec![dns("UDP"), dns("TCP")]),
                },
            ]),
        }),
    }
}

/// Lifeboat's movers in the sandbox reach the store: pods with this sandbox's token.
fn movers(meta: ObjectMeta, token: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(labels::SANDBOX_TOKEN, token)),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![NetworkPolicyEgressRule::default()]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// A restored workload's pod template, as the `pod-security` check judges it.
#[derive(Clone, Debug)]
pub struct Workload {
    /// `Deployment/web`.
    pub name: String,
    pub spec: k8s_openapi::api::core::v1::PodSpec,
}

/// Name of the check every drill that restores manifests gets: restored workloads
/// against the sandbox's Pod Security level. A `:` keeps it apart from users' checks.
pub const POD_SECURITY_CHECK: &str = "lifeboat:pod-security";

/// The `pod-security` check: every restored workload's pod template against `level`,
/// naming each violation (bounded for the status).
pub fn pod_security_check(
    workloads: &[Workload],
    level: Level,
    now: jiff::Timestamp,
) -> CheckResult {
    let bad: Vec<String> = workloads
        .iter()
        .filter_map(|w| {
            let v = violations(&w.spec, level);
            (!v.is_empty()).then(|| format!("{}: {}", w.name, v.join(", ")))
        })
        .collect();
    let (result, observed) = if bad.is_empty() {
        (
            CheckVerdict::Passed,
            format!("{} workload(s) meet {}", workloads.len(), level.as_str()),
        )
    } else {
        (CheckVerdict::Failed, summarise(&bad.join("; "), 900))
    };
    CheckResult {
        name: POD_SECURITY_CHECK.into(),
        type_: "podSecurity".into(),
        result,
        observed: Some(observed),
        expected: Some(format!("every restored workload meets {}", level.as_str())),
        message: (!bad.is_empty()).then(|| {
            "the sandbox's Pod Security level refuses these workloads' pods (or would, at its enforced level); see docs/drills.md".to_string()
        }),
        end_time: Some(MicroTime(now)),
        ..CheckResult::default()
    }
}

fn selector(k: &str, v: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(k.to_string(), v.to_string())])),
        ..LabelSelector::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_drill_capped_by_the_source_and_raised_for_volume_movers() {
        use Level::*;
        use SandboxPodSecurity as S;
        let cases = [
            // requested, source, volumes -> (verdict, enforce) or failure
            (
                S::Restricted,
                Privileged,
                false,
                Some((Restricted, Restricted)),
            ),
            (
                S::Restricted,
                Privileged,
                true,
                Some((Restricted, Baseline)),
            ),
            (S::Baseline, Privileged, false, Some((Baseline, Baseline))),
            (
                S::Baseline,
                Restricted,
                false,
                Some((Restricted, Restricted)),
            ),
            (S::Restricted, Baseline, true, Some((Restricted, Baseline))),
            (S::Restricted, Restricted, true, None),
            (S::Baseline, Restricted, true, None),
        ];
        for (req, src, vols, want) in cases {
            let got = levels(req, src, vols);
            match want {
                Some((verdict, enforce)) => {
                    assert_eq!(
                        got,
                        Ok(Levels { verdict, enforce }),
                        "{req:?} {src:?} {vols}"
                    )
                }
                None => {
                    let f = got.unwrap_err();
                    assert_eq!(f.reason, "SandboxPodSecurity");
                    assert!(f.message.contains("enforces restricted"), "{}", f.message);
                }
            }
        }
    }

    #[test]
    fn the_pod_security_check_names_each_workload_and_violation() {
        let spec = |v: serde_json::Value| -> k8s_openapi::api::core::v1::PodSpec {
            serde_json::from_value(v).unwrap()
        };
        let ok = Workload {
            name: "Deployment/web".into(),
            spec: spec(serde_json::json!({
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "web", "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}}}]})),
        };
        let agent = Workload {
            name: "Deployment/agent".into(),
            spec: spec(serde_json::json!({"hostNetwork": true,
                "containers": [{"name": "a"}],
                "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]})),
        };
        let now = jiff::Timestamp::UNIX_EPOCH;
        let r = pod_security_check(std::slice::from_ref(&ok), Level::Restricted, now);
        assert_eq!(r.result, CheckVerdict::Passed);
        assert_eq!(r.observed.as_deref(), Some("1 workload(s) meet restricted"));
        let r = pod_security_check(&[ok, agent], Level::Baseline, now);
        assert_eq!(r.result, CheckVerdict::Failed);
        assert_eq!(
            r.observed.as_deref(),
            Some("Deployment/agent: hostNetwork=true, hostPath volume \"logs\"")
        );
        assert_eq!(r.name, POD_SECURITY_CHECK);
    }

    #[test]
    fn the_token_is_stable_per_namespace_uid_and_differs_between_them() {
        assert_eq!(token("a-b-c"), token("a-b-c"));
        assert_ne!(token("a-b-c"), token("a-b-d"));
        assert_eq!(token("x").len(), 16);
    }

    #[test]
    fn a_drill_without_a_quota_gets_one_that_forbids_node_ports_and_load_balancers() {
        let q = default_quota();
        assert_eq!(q["services.nodeports"].0, "0");
        assert_eq!(q["services.loadbalancers"].0, "0");
        assert!(!q.contains_key("cpu") && !q.contains_key("requests.memory"));
    }
}

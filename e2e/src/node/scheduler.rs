//! The scheduler's part (pure decisions): whether a pending pod fits this node
//! (nodeName, nodeSelector, required node affinity, schedulerName), with the reason a
//! real scheduler would give when it does not.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

/// Why a pod cannot be placed on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Bind it here.
    Fits,
    /// Not ours to schedule (another scheduler, already bound, terminating).
    Ignore,
    /// Stays Pending with this message (PodScheduled=False, reason Unschedulable).
    Unschedulable(String),
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = t.match_expressions.clone().unwrap_or_default();
    let fields = t.match_fields.clone().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let v = (r.key == "metadata.name").then_some(node);
            requirement_matches(r, v)
        })
}

/// Decides whether the pending pod fits this node.
pub fn check(pod: &Pod, node: &str, labels: &BTreeMap<String, String>) -> Verdict {
    let Some(spec) = pod.spec.as_ref() else {
        return Verdict::Ignore;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Verdict::Ignore;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Verdict::Ignore;
    }
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return if n == node {
            Verdict::Ignore
        } else {
            Verdict::Unschedulable(format!(
                "pod is assigned to node {n:?}, which does not exist; the only node is {node:?}"
            ))
        };
    }
    if spec
        .scheduler_name
        .as_deref()
        .is_some_and(|s| s != "default-scheduler")
    {
        return Verdict::Ignore;
    }
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return Verdict::Unschedulable(
            "0/1 nodes are available: 1 node(s) didn't match node selector.".into(),
        );
    }
    if let Some(req) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !req
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node, labels))
    {
        return Verdict::Unschedulable(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity.".into(),
        );
    }
    Verdict::Fits
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector, PodSpec};

    fn labels() -> BTreeMap<String, String> {
        [
            ("kubernetes.io/hostname".to_string(), "n1".to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
        ]
        .into()
    }

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn affinity(op: &str, key: &str, values: &[&str]) -> Option<Affinity> {
        Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: key.into(),
                            operator: op.into(),
                            values: Some(values.iter().map(|s| s.to_string()).collect()),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn selectors_and_affinity() {
        assert_eq!(
            check(&pod(PodSpec::default()), "n1", &labels()),
            Verdict::Fits
        );
        let sel = PodSpec {
            node_selector: Some([("kubernetes.io/os".to_string(), "windows".to_string())].into()),
            ..Default::default()
        };
        assert!(
            matches!(check(&pod(sel), "n1", &labels()), Verdict::Unschedulable(m) if m.contains("node selector"))
        );
        let a = PodSpec {
            affinity: affinity("In", "kubernetes.io/hostname", &["n1", "n2"]),
            ..Default::default()
        };
        assert_eq!(check(&pod(a), "n1", &labels()), Verdict::Fits);
        let a = PodSpec {
            affinity: affinity("NotIn", "kubernetes.io/hostname", &["n1"]),
            ..Default::default()
        };
        assert!(matches!(
            check(&pod(a), "n1", &labels()),
            Verdict::Unschedulable(_)
        ));
        let a = PodSpec {
            affinity: affinity("DoesNotExist", "gpu", &[]),
            ..Default::default()
        };
        assert_eq!(check(&pod(a), "n1", &labels()), Verdict::Fits);
    }

    #[test]
    fn node_name_and_scheduler_name() {
        let mine = PodSpec {
            node_name: Some("n1".into()),
            ..Default::default()
        };
        assert_eq!(check(&pod(mine), "n1", &labels()), Verdict::Ignore);
        let other = PodSpec {
            node_name: Some("n2".into()),
            ..Default::default()
        };
        assert!(matches!(
            check(&pod(other), "n1", &labels()),
            Verdict::Unschedulable(_)
        ));
        let custom = PodSpec {
            scheduler_name: Some("volcano".into()),
            ..Default::default()
        };
        assert_eq!(check(&pod(custom), "n1", &labels()), Verdict::Ignore);
    }
}

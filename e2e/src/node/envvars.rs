//! Container environment and `$(VAR)` expansion with the kubelet's rules (pure): env,
//! envFrom, valueFrom (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

/// Secret and ConfigMap contents the env refers to, fetched beforehand by the worker.
/// `None` means the object does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

/// Why an environment could not be built (`CreateContainerConfigError` on a real node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Expands `$(NAME)` references from `vars`, leaving unknown references untouched and
/// turning `$$` into `$`, like the kubelet's expansion package.
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        match vars(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Names of Secrets and ConfigMaps a container's env refers to.
pub fn referenced(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut secrets = Vec::new();
    let mut cms = Vec::new();
    for e in container.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(s) = &vf.secret_key_ref {
                secrets.push(s.name.clone());
            }
            if let Some(c) = &vf.config_map_key_ref {
                cms.push(c.name.clone());
            }
        }
    }
    for ef in container.env_from.iter().flatten() {
        if let Some(s) = &ef.secret_ref {
            secrets.push(s.name.clone());
        }
        if let Some(c) = &ef.config_map_ref {
            cms.push(c.name.clone());
        }
    }
    (secrets, cms)
}

/// Resolves a downward-API field path of the pod.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let bracket = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .unwrap_or_default();
        map.and_then(|m| m.get(key).cloned()).unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                meta.labels.as_ref()
            } else {
                meta.annotations.as_ref()
            };
            map.map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
        }
        p if p.starts_with("metadata.labels['") => {
            bracket("metadata.labels['", meta.labels.as_ref())
        }
        p if p.starts_with("metadata.annotations['") => {
            bracket("metadata.annotations['", meta.annotations.as_ref())
        }
        other => {
            return Err(EnvError(format!(
                "unsupported fieldRef fieldPath {other:?}"
            )));
        }
    })
}

/// Resolves a resourceFieldRef: the container's limit, else the node's capacity.
pub fn resource_value(
    container: &Container,
    resource: &str,
    node_cpus: u64,
    node_mem: u64,
) -> String {
    let res = container.resources.as_ref();
    let pick = |which: &str| {
        let map = if which == "limits" {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        let key = resource.split_once('.').map(|x| x.1).unwrap_or(resource);
        map.and_then(|m| m.get(key)).map(|q| q.0.clone())
    };
    let kind = resource.split_once('.').map(|x| x.0).unwrap_or("limits");
    if let Some(v) = pick(kind) {
        return v;
    }
    if resource.ends_with("cpu") {
        node_cpus.to_string()
    } else if resource.ends_with("memory") {
        node_mem.to_string()
    } else {
        "0".into()
    }
}

/// Builds a container's environment in order: the image's ENV, then envFrom, then env
/// (later entries win, values may refer to earlier ones with `$(NAME)`), then the
/// variables every pod gets (`KUBERNETES_SERVICE_*`). Returns ordered pairs.
pub fn build(
    pod: &Pod,
    container: &Container,
    image_env: &[(String, String)],
    sources: &Sources,
    implicit: &[(String, String)],
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for (k, v) in image_env {
        set(&mut env, k.clone(), v.clone());
    }
    for (k, v) in implicit {
        set(&mut env, k.clone(), v.clone());
    }
    for ef in container.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(s) = &ef.secret_ref {
            match sources.secrets.get(&s.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into(),
                        );
                    }
                }
                None if s.optional == Some(true) => {}
                None => return Err(EnvError(format!("secret {:?} not found", s.name))),
            }
        }
        if let Some(c) = &ef.config_map_ref {
            match sources.config_maps.get(&c.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if c.optional == Some(true) => {}
                None => return Err(EnvError(format!("configmap {:?} not found", c.name))),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(s) = &vf.secret_key_ref {
                let optional = s.optional == Some(true);
                match sources.secrets.get(&s.name).cloned().flatten() {
                    Some(data) => match data.get(&s.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in Secret {}/{}",
                                s.key,
                                pod.metadata.namespace.as_deref().unwrap_or_default(),
                                s.name
                            )));
                        }
                    },
                    None if optional => continue,
                    None => return Err(EnvError(format!("secret {:?} not found", s.name))),
                }
            } else if let Some(c) = &vf.config_map_key_ref {
                let optional = c.optional == Some(true);
                match sources.config_maps.get(&c.name).cloned().flatten() {
                    Some(data) => match data.get(&c.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                c.key,
                                pod.metadata.namespace.as_deref().unwrap_or_default(),
                                c.name
                            )));
                        }
                    },
                    None if optional => continue,
                    None => return Err(EnvError(format!("configmap {:?} not found", c.name))),
                }
            } else if let Some(f) = &vf.field_ref {
                field_value(pod, &f.field_path)?
            } else if let Some(r) = &vf.resource_field_ref {
                resource_value(container, &r.resource, 2, 8 << 30)
            } else {
                String::new()
            }
        } else {
            let current = env.clone();
            let lookup = |n: &str| current.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            expand(e.value.as_deref().unwrap_or_default(), &lookup)
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodStatus, SecretKeySelector,
    };

    fn vars(n: &str) -> Option<String> {
        match n {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubelet_rules() {
        assert_eq!(expand("x$(A)y", &vars), "xalphay");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(EMPTY)-", &vars), "-");
        assert_eq!(expand("$A $", &vars), "$A $");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("é$(A)ü", &vars), "éalphaü");
    }

    fn pod() -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "db".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("127.1.0.5".into()),
                ..Default::default()
            }),
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn env_from_values_fields_and_secrets() {
        let c = Container {
            name: "c".into(),
            env: Some(vec![
                field("POD_IP", "status.podIP"),
                field("NS", "metadata.namespace"),
                field("APP", "metadata.labels['app']"),
                field("SA", "spec.serviceAccountName"),
                EnvVar {
                    name: "URL".into(),
                    value: Some("http://$(POD_IP):80/$(NOPE)".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "PW".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "s".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let mut sources = Sources::default();
        sources.secrets.insert(
            "s".into(),
            Some([("password".to_string(), b"hunter2".to_vec())].into()),
        );
        let env = build(&pod(), &c, &[("PATH".into(), "/bin".into())], &sources, &[]).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("POD_IP"), Some("127.1.0.5"));
        assert_eq!(get("NS"), Some("ns"));
        assert_eq!(get("APP"), Some("db"));
        assert_eq!(get("SA"), Some("default"));
        assert_eq!(get("URL"), Some("http://127.1.0.5:80/$(NOPE)"));
        assert_eq!(get("PW"), Some("hunter2"));

        sources.secrets.insert("s".into(), None);
        let err = build(&pod(), &c, &[], &sources, &[]).unwrap_err();
        assert!(err.0.contains("secret \"s\" not found"), "{err}");
    }
}

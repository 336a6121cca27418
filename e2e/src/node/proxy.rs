//! kube-proxy's part: for every Service with a clusterIP in `--service-cidr` (a loopback
//! range), listen on clusterIP:port and forward each TCP connection to a ready endpoint
//! (from the Endpoints the controller-manager maintains, so only Ready pods receive
//! traffic), round-robin. Service changes also re-render every pod's /etc/hosts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

use super::Ctx;

/// One forwarded Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub namespace: String,
    pub service: String,
    /// The Service port's name; Endpoints ports carry the same name.
    pub port_name: Option<String>,
    /// The Service's pod selector; `None` for Services with manual Endpoints.
    pub selector: Option<BTreeMap<String, String>>,
    /// targetPort as written (a number or a container port name); `None` = port.
    pub target_port: Option<String>,
}

/// The listening rules for a set of Services (pure).
pub fn rules(services: &[Arc<Service>], cidr: &super::network::Cidr) -> Vec<Rule> {
    let mut out = Vec::new();
    for s in services {
        let Some(spec) = s.spec.as_ref() else {
            continue;
        };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|i| i.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        if !cidr.contains(ip) {
            continue;
        }
        for p in spec.ports.iter().flatten() {
            if p.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            out.push(Rule {
                ip,
                port,
                namespace: s.metadata.namespace.clone().unwrap_or_default(),
                service: s.metadata.name.clone().unwrap_or_default(),
                port_name: p.name.clone().filter(|n| !n.is_empty()),
                selector: spec.selector.clone().filter(|s| !s.is_empty()),
                target_port: p.target_port.as_ref().map(|t| match t {
                    IntOrString::Int(n) => n.to_string(),
                    IntOrString::String(s) => s.clone(),
                }),
            });
        }
    }
    out.sort();
    out
}

/// Ready backends of a selector Service port, computed from the pods the way the
/// endpoints controller does (pure). NB: the apiserver refuses loopback addresses in
/// Endpoints objects, so for our 127/8 pod IPs the controller-manager cannot publish
/// them; the proxy therefore selects pods itself.
pub fn pod_backends(rule: &Rule, pods: &[Arc<Pod>]) -> Vec<(IpAddr, u16)> {
    let Some(selector) = &rule.selector else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in pods {
        if p.metadata.namespace.as_deref() != Some(rule.namespace.as_str())
            || p.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let labels = p.metadata.labels.clone().unwrap_or_default();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let Some(status) = p.status.as_ref() else {
            continue;
        };
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if status.phase.as_deref() != Some("Running") || !ready {
            continue;
        }
        let Some(ip) = status.pod_ip.as_deref().and_then(|i| i.parse().ok()) else {
            continue;
        };
        let port = match rule.target_port.as_deref() {
            None => Some(rule.port),
            Some(t) => t.parse::<u16>().ok().or_else(|| {
                p.spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(t))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())
            }),
        };
        if let Some(port) = port {
            out.push((ip, port));
        }
    }
    out.sort();
    out
}

/// Ready backends of a Service port from its Endpoints (pure).
pub fn backends(eps: &Endpoints, port_name: Option<&str>) -> Vec<(IpAddr, u16)> {
    let mut out = Vec::new();
    for subset in eps.subsets.iter().flatten() {
        let Some(port) = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().filter(|n| !n.is_empty()) == port_name
                || (port_name.is_none() && subset.ports.as_ref().is_some_and(|v| v.len() == 1))
        }) else {
            continue;
        };
        let Ok(port) = u16::try_from(port.port) else {
            continue;
        };
        for a in subset.addresses.iter().flatten() {
            if let Ok(ip) = a.ip.parse() {
                out.push((ip, port));
            }
        }
    }
    out
}

/// How long a connection waits for a first ready endpoint before it is closed (covers
/// the moment between a pod turning Ready and the Endpoints update reaching us).
const ENDPOINT_WAIT: Duration = Duration::from_secs(5);

async fn serve(
    listener: tokio::net::TcpListener,
    rule: Rule,
    endpoints: Store<Endpoints>,
    pods: Store<Pod>,
    changed: Arc<Notify>,
) {
    let counter = Arc::new(AtomicUsize::new(0));
    let rule = Arc::new(rule);
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let (endpoints, pods, changed, rule, counter) = (
            endpoints.clone(),
            pods.clone(),
            changed.clone(),
            rule.clone(),
            counter.clone(),
        );
        tokio::spawn(async move {
            let key = ObjectRef::new(&rule.service).within(&rule.namespace);
            let deadline = tokio::time::Instant::now() + ENDPOINT_WAIT;
            let targets = loop {
                let notified = changed.notified();
                let targets = if rule.selector.is_some() {
                    pod_backends(&rule, &pods.state())
                } else {
                    endpoints
                        .get(&key)
                        .map(|e| backends(&e, rule.port_name.as_deref()))
                        .unwrap_or_default()
                };
                if !targets.is_empty() {
                    break targets;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    tracing::debug!(service = %rule.service, "no ready endpoints; closing connection");
                    return;
                }
            };
            let target = targets[counter.fetch_add(1, Ordering::Relaxed) % targets.len()];
            match tokio::net::TcpStream::connect(target).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::debug!(?target, error = %e, "connecting to endpoint"),
            }
        });
    }
}

/// Watches Services and Endpoints; keeps listeners and hosts files in line with them.
pub async fn run(ctx: Arc<Ctx>, services_writer: Writer<Service>) {
    let svc_stream = reflector::reflector(
        services_writer,
        watcher(
            Api::<Service>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .boxed();
    let (eps_store, eps_writer) = reflector::store::<Endpoints>();
    let mut eps_stream = reflector::reflector(
        eps_writer,
        watcher(
            Api::<Endpoints>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .boxed();
    let mut svc_stream = svc_stream;
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let mut pod_stream = reflector::reflector(
        pod_writer,
        watcher(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .boxed();
    let mut listeners: BTreeMap<Rule, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let eps_changed = Arc::new(Notify::new());
    loop {
        tokio::select! {
            ev = svc_stream.next() => {
                if ev.is_none() { return; }
                let wanted = rules(&ctx.services.state(), &ctx.cfg.service_cidr);
                listeners.retain(|r, h| {
                    let keep = wanted.contains(r);
                    if !keep { h.abort(); tracing::info!(service = %r.service, ip = %r.ip, port = r.port, "proxy rule removed"); }
                    keep
                });
                for r in wanted {
                    if listeners.contains_key(&r) { continue; }
                    match tokio::net::TcpListener::bind((r.ip, r.port)).await {
                        Ok(l) => {
                            tracing::info!(service = %format!("{}/{}", r.namespace, r.service), ip = %r.ip, port = r.port, "proxying service");
                            let h = tokio::spawn(serve(l, r.clone(), eps_store.clone(), pod_store.clone(), eps_changed.clone()));
                            listeners.insert(r, h);
                        }
                        Err(e) => tracing::warn!(service = %r.service, ip = %r.ip, port = r.port, error = %e, "cannot listen for service"),
                    }
                }
                ctx.refresh_all_hosts();
            }
            _ = eps_stream.next() => eps_changed.notify_waiters(),
            _ = pod_stream.next() => eps_changed.notify_waiters(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec,
    };

    #[test]
    fn rules_and_backends() {
        let svc = Service {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("a".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("127.2.0.9".into()),
                ports: Some(vec![
                    ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("dns".into()),
                        port: 53,
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            status: None,
        };
        let outside = Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.0.0.1".into()),
                ..Default::default()
            }),
            ..svc.clone()
        };
        let cidr = "127.2.0.0/16".parse().unwrap();
        let r = rules(&[Arc::new(svc), Arc::new(outside)], &cidr);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].port, 80);
        assert_eq!(r[0].port_name.as_deref(), Some("http"));
        let eps = Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: "127.1.0.4".into(),
                    ..Default::default()
                }]),
                not_ready_addresses: Some(vec![EndpointAddress {
                    ip: "127.1.0.5".into(),
                    ..Default::default()
                }]),
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: 8080,
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        };
        assert_eq!(
            backends(&eps, Some("http")),
            vec![("127.1.0.4".parse().unwrap(), 8080)]
        );
        assert!(backends(&eps, Some("other")).is_empty());
        let rule = Rule {
            selector: Some([("app".to_string(), "web".to_string())].into()),
            target_port: Some("http".into()),
            ..r[0].clone()
        };
        let pod = |name: &str, ready: &str, app: &str| -> Arc<Pod> {
            Arc::new(serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "a", "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": format!("127.1.0.{}", name.len()),
                           "conditions": [{"type": "Ready", "status": ready}]}
            })).unwrap())
        };
        let pods = vec![
            pod("a", "True", "web"),
            pod("bb", "False", "web"),
            pod("ccc", "True", "db"),
        ];
        assert_eq!(
            pod_backends(&rule, &pods),
            vec![("127.1.0.1".parse().unwrap(), 8080)]
        );
        let numeric = Rule {
            target_port: Some("9000".into()),
            ..rule.clone()
        };
        assert_eq!(
            pod_backends(&numeric, &pods),
            vec![("127.1.0.1".parse().unwrap(), 9000)]
        );
    }
}

//! kube-proxy's part: for every Service with a clusterIP in `--service-cidr` (a loopback
//! range), listen on clusterIP:port and forward each TCP connection to a ready endpoint
//! (from the Endpoints the controller-manager maintains, so only Ready pods receive
//! traffic), round-robin. Service changes also re-render every pod's /etc/hosts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};

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
            });
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

async fn serve(listener: tokio::net::TcpListener, rule: Rule, endpoints: Store<Endpoints>) {
    let counter = AtomicUsize::new(0);
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let key = ObjectRef::new(&rule.service).within(&rule.namespace);
        let targets = endpoints
            .get(&key)
            .map(|e| backends(&e, rule.port_name.as_deref()))
            .unwrap_or_default();
        if targets.is_empty() {
            tracing::debug!(service = %rule.service, "no ready endpoints; closing connection");
            continue;
        }
        let target = targets[counter.fetch_add(1, Ordering::Relaxed) % targets.len()];
        tokio::spawn(async move {
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
    let mut listeners: BTreeMap<Rule, tokio::task::JoinHandle<()>> = BTreeMap::new();
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
                            let h = tokio::spawn(serve(l, r.clone(), eps_store.clone()));
                            listeners.insert(r, h);
                        }
                        Err(e) => tracing::warn!(service = %r.service, ip = %r.ip, port = r.port, error = %e, "cannot listen for service"),
                    }
                }
                ctx.refresh_all_hosts();
            }
            _ = eps_stream.next() => {}
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
    }
}

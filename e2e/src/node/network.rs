//! Pod networking on loopback: pod IP allocation from `--pod-cidr` (all of 127/8 routes
//! to `lo`, so every address is bindable without configuration) and the per-pod
//! `/etc/hosts` that resolves Service names (pure rendering, kept current by the agent).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// An IPv4 CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if prefix > 30 {
            return Err(format!("{s:?}: prefix must be at most /30"));
        }
        let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Cidr {
    /// Whether the address lies in the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.base)
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix as u32)
    }
}

/// Hands out pod IPs; the network and first address are never used, the broadcast neither.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    cidr: Cidr,
    by_pod: BTreeMap<String, Ipv4Addr>,
    used: BTreeSet<Ipv4Addr>,
    next: u32,
}

impl IpAllocator {
    /// An allocator over the block.
    pub fn new(cidr: Cidr) -> Self {
        IpAllocator {
            cidr,
            by_pod: BTreeMap::new(),
            used: BTreeSet::new(),
            next: 2,
        }
    }

    /// Records an address a pod already has (adoption after a restart).
    pub fn adopt(&mut self, uid: &str, ip: Ipv4Addr) -> bool {
        if !self.cidr.contains(ip) || self.used.contains(&ip) {
            return false;
        }
        self.used.insert(ip);
        self.by_pod.insert(uid.to_string(), ip);
        true
    }

    /// The pod's address, allocating one if it has none (round-robin, so a freed
    /// address is not reused at once).
    pub fn allocate(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        let size = self.cidr.size();
        for _ in 0..size {
            let offset = self.next;
            self.next = if self.next + 1 >= size - 1 {
                2
            } else {
                self.next + 1
            };
            let ip = Ipv4Addr::from(u32::from(self.cidr.base) + offset);
            if !self.used.contains(&ip) {
                self.used.insert(ip);
                self.by_pod.insert(uid.to_string(), ip);
                return Some(ip);
            }
        }
        None
    }

    /// Returns the pod's address to the pool.
    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_pod.remove(uid) {
            self.used.remove(&ip);
        }
    }
}

/// A Service as the hosts file needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: String,
}

/// Renders a pod's /etc/hosts: localhost, the pod's own hostname, then every Service
/// under `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.<domain>`, plus the bare
/// `<svc>` for Services of the pod's own namespace (what the search path gives in a
/// cluster).
pub fn render_hosts(
    pod_ip: &str,
    hostname: &str,
    pod_namespace: &str,
    cluster_domain: &str,
    services: &[ServiceEntry],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (lifeboat-node-agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    out.push_str(&format!("{pod_ip}\t{hostname}\n"));
    let mut sorted = services.to_vec();
    sorted.sort();
    for s in &sorted {
        let mut names = Vec::new();
        if s.namespace == pod_namespace {
            names.push(s.name.clone());
        }
        names.push(format!("{}.{}", s.name, s.namespace));
        names.push(format!("{}.{}.svc", s.name, s.namespace));
        names.push(format!("{}.{}.svc.{cluster_domain}", s.name, s.namespace));
        out.push_str(&format!("{}\t{}\n", s.cluster_ip, names.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "127.1.2.3/16".parse().unwrap();
        assert_eq!(c.to_string(), "127.1.0.0/16");
        assert!(c.contains("127.1.200.1".parse().unwrap()));
        assert!(!c.contains("127.2.0.1".parse().unwrap()));
        assert!("127.1.0.0".parse::<Cidr>().is_err());
        assert!("127.1.0.0/31".parse::<Cidr>().is_err());
    }

    #[test]
    fn allocation_is_stable_and_reuses_late() {
        let mut a = IpAllocator::new("127.1.0.0/29".parse().unwrap());
        let first = a.allocate("a").unwrap();
        assert_eq!(first.to_string(), "127.1.0.2");
        assert_eq!(a.allocate("a"), Some(first));
        assert!(a.adopt("x", "127.1.0.3".parse().unwrap()));
        assert!(!a.adopt("y", "127.1.0.3".parse().unwrap()));
        assert_eq!(a.allocate("b").unwrap().to_string(), "127.1.0.4");
        a.release("a");
        assert_eq!(a.allocate("c").unwrap().to_string(), "127.1.0.5");
        assert_eq!(a.allocate("d").unwrap().to_string(), "127.1.0.6");
        assert_eq!(a.allocate("e").unwrap().to_string(), "127.1.0.2");
        assert_eq!(a.allocate("f"), None);
    }

    #[test]
    fn hosts_file_lists_services() {
        let svcs = vec![
            ServiceEntry {
                namespace: "other".into(),
                name: "db".into(),
                cluster_ip: "127.2.0.9".into(),
            },
            ServiceEntry {
                namespace: "app".into(),
                name: "web".into(),
                cluster_ip: "127.2.0.5".into(),
            },
        ];
        let h = render_hosts("127.1.0.7", "web-1", "app", "cluster.local", &svcs);
        assert!(h.contains("127.1.0.7\tweb-1\n"));
        assert!(h.contains("127.2.0.5\tweb web.app web.app.svc web.app.svc.cluster.local\n"));
        assert!(h.contains("127.2.0.9\tdb.other db.other.svc db.other.svc.cluster.local\n"));
        assert!(!h.contains("\tdb "));
    }
}

//! The Kubernetes Pod Security Standards (`baseline` and `restricted`, as of 1.34) applied
//! to a pod spec, without a cluster: what a drill's `pod-security` check reports for each
//! restored workload. The API server enforces the sandbox's label on every pod it admits;
//! this evaluation names the violations of the level the drill asked for, including those
//! of workloads whose pods were never admitted (a Deployment is stored whatever its
//! template says; only its pods are refused).
//!
//! Follows k8s.io/pod-security-admission's checks; Windows-only checks (hostProcess) and
//! AppArmor annotations (replaced by the field) are left out.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};

/// A Pod Security Standards level, in order of permissiveness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    #[default]
    Restricted,
    Baseline,
    Privileged,
}

impl Level {
    /// The value of a `pod-security.kubernetes.io/*` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Restricted => "restricted",
            Level::Baseline => "baseline",
            Level::Privileged => "privileged",
        }
    }

    /// A label value; anything else (or none) is what the API server assumes by default,
    /// `privileged`.
    pub fn from_label(v: Option<&str>) -> Level {
        match v {
            Some("restricted") => Level::Restricted,
            Some("baseline") => Level::Baseline,
            _ => Level::Privileged,
        }
    }
}

/// Capabilities `baseline` lets a container add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls `baseline` allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Volume types `restricted` allows.
fn restricted_volume(v: &k8s_openapi::api::core::v1::Volume) -> bool {
    v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some()
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

/// Every violation of `level` in `spec`, as short phrases naming the field and the
/// container or volume (e.g. `hostPath volume "logs"`), sorted and without repeats.
/// Empty: the pod meets the level.
pub fn violations(spec: &PodSpec, level: Level) -> Vec<String> {
    let mut out = BTreeSet::new();
    if level == Level::Privileged {
        return vec![];
    }
    let psc = spec.security_context.clone().unwrap_or_default();
    let sc = |c: &Container| c.security_context.clone().unwrap_or_default();
    // --- baseline
    for (on, what) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if on == Some(true) {
            out.insert(format!("{what}=true"));
        }
    }
    for v in spec.volumes.iter().flatten() {
        if v.host_path.is_some() {
            out.insert(format!("hostPath volume {:?}", v.name));
        }
    }
    if let Some(sysctls) = &psc.sysctls {
        for s in sysctls {
            if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
                out.insert(format!("sysctl {:?}", s.name));
            }
        }
    }
    let unconfined = |p: &Option<k8s_openapi::api::core::v1::SeccompProfile>| {
        p.as_ref().is_some_and(|p| p.type_ == "Unconfined")
    };
    if unconfined(&psc.seccomp_profile) {
        out.insert("seccompProfile Unconfined (pod)".into());
    }
    if psc
        .app_armor_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        out.insert("appArmorProfile Unconfined (pod)".into());
    }
    if let Some(se) = &psc.se_linux_options
        && !selinux_ok(se)
    {
        out.insert("seLinuxOptions (pod)".into());
    }
    for c in containers(spec) {
        let s: SecurityContext = sc(c);
        let n = &c.name;
        if s.privileged == Some(true) {
            out.insert(format!("privileged container {n:?}"));
        }
        for p in c.ports.iter().flatten() {
            if p.host_port.is_some_and(|h| h != 0) {
                out.insert(format!("hostPort in container {n:?}"));
            }
        }
        let added: Vec<String> = s
            .capabilities
            .as_ref()
            .and_then(|c| c.add.clone())
            .unwrap_or_default();
        for cap in &added {
            let bare = cap.trim_start_matches("CAP_");
            if !BASELINE_CAPABILITIES.contains(&bare) {
                out.insert(format!("capability {cap} in container {n:?}"));
            }
        }
        if s.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            out.insert(format!("procMount in container {n:?}"));
        }
        if unconfined(&s.seccomp_profile) {
            out.insert(format!("seccompProfile Unconfined in container {n:?}"));
        }
        if s.app_armor_profile
            .as_ref()
            .is_some_and(|p| p.type_ == "Unconfined")
        {
            out.insert(format!("appArmorProfile Unconfined in container {n:?}"));
        }
        if let Some(se) = &s.se_linux_options
            && !selinux_ok(se)
        {
            out.insert(format!("seLinuxOptions in container {n:?}"));
        }
        if level == Level::Restricted {
            restricted_container(&mut out, c, &s, &psc, &added);
        }
    }
    // --- restricted, pod level
    if level == Level::Restricted {
        for v in spec.volumes.iter().flatten() {
            if v.host_path.is_none() && !restricted_volume(v) {
                out.insert(format!(
                    "volume {:?} of a type restricted does not allow",
                    v.name
                ));
            }
        }
        if psc.run_as_user == Some(0) {
            out.insert("runAsUser=0 (pod)".into());
        }
    }
    out.into_iter().collect()
}

fn restricted_container(
    out: &mut BTreeSet<String>,
    c: &Container,
    s: &SecurityContext,
    psc: &k8s_openapi::api::core::v1::PodSecurityContext,
    added: &[String],
) {
    let n = &c.name;
    if s.allow_privilege_escalation != Some(false) {
        out.insert(format!(
            "allowPrivilegeEscalation != false in container {n:?}"
        ));
    }
    let non_root = s.run_as_non_root.or(psc.run_as_non_root);
    if non_root != Some(true) {
        out.insert(format!("runAsNonRoot != true in container {n:?}"));
    }
    if s.run_as_user == Some(0) {
        out.insert(format!("runAsUser=0 in container {n:?}"));
    }
    let seccomp = s
        .seccomp_profile
        .as_ref()
        .or(psc.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
        out.insert(format!(
            "seccompProfile not RuntimeDefault or Localhost in container {n:?}"
        ));
    }
    let drops_all = s
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.as_ref())
        .is_some_and(|d| d.iter().any(|x| x == "ALL"));
    if !drops_all {
        out.insert(format!("capabilities not dropping ALL in container {n:?}"));
    }
    for cap in added {
        if cap.trim_start_matches("CAP_") != "NET_BIND_SERVICE" {
            out.insert(format!("capability {cap} in container {n:?}"));
        }
    }
}

/// SELinux: only the container types of the standard, no user or role.
fn selinux_ok(se: &k8s_openapi::api::core::v1::SELinuxOptions) -> bool {
    let type_ok = se.type_.as_deref().is_none_or(|t| {
        matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t" | "container_engine_t"
        )
    });
    type_ok
        && se.user.as_deref().unwrap_or_default().is_empty()
        && se.role.as_deref().unwrap_or_default().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    /// Sets the value at a JSON pointer, creating objects on the way (an index must exist
    /// or be the next one).
    fn set(v: &mut serde_json::Value, ptr: &str, value: serde_json::Value) {
        let mut cur = v;
        for key in ptr.trim_start_matches('/').split('/') {
            cur = match key.parse::<usize>() {
                Ok(i) => {
                    let a = cur.as_array_mut().expect("an array");
                    if a.len() == i {
                        a.push(json!({}));
                    }
                    &mut a[i]
                }
                Err(_) => cur
                    .as_object_mut()
                    .expect("an object")
                    .entry(key.to_string())
                    .or_insert(json!({})),
            };
        }
        *cur = value;
    }

    fn good() -> serde_json::Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "x",
                "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                        {"name": "tmp", "emptyDir": {}}]
        })
    }

    #[test]
    fn a_hardened_pod_meets_restricted() {
        assert_eq!(
            violations(&spec(good()), Level::Restricted),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_baseline_violation_is_named() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("/hostNetwork", json!(true), "hostNetwork=true"),
            ("/hostPID", json!(true), "hostPID=true"),
            ("/hostIPC", json!(true), "hostIPC=true"),
            (
                "/volumes/0",
                json!({"name": "logs", "hostPath": {"path": "/var/log"}}),
                "hostPath volume \"logs\"",
            ),
            (
                "/containers/0/securityContext/privileged",
                json!(true),
                "privileged container \"app\"",
            ),
            (
                "/containers/0/securityContext/capabilities/add",
                json!(["SYS_ADMIN"]),
                "capability SYS_ADMIN in container \"app\"",
            ),
            (
                "/containers/0/ports",
                json!([{"containerPort": 80, "hostPort": 80}]),
                "hostPort in container \"app\"",
            ),
            (
                "/securityContext/seccompProfile",
                json!({"type": "Unconfined"}),
                "seccompProfile Unconfined (pod)",
            ),
        ];
        for (ptr, value, want) in cases {
            let mut v = good();
            set(&mut v, ptr, value);
            let got = violations(&spec(v), Level::Baseline);
            assert!(got.iter().any(|g| g == want), "{ptr}: {got:?}");
        }
    }

    #[test]
    fn restricted_adds_its_own_rules_and_baseline_does_not() {
        let root = spec(json!({"containers": [{"name": "app", "image": "x"}]}));
        assert_eq!(violations(&root, Level::Baseline), Vec::<String>::new());
        let got = violations(&root, Level::Restricted);
        assert_eq!(
            got,
            vec![
                "allowPrivilegeEscalation != false in container \"app\"",
                "capabilities not dropping ALL in container \"app\"",
                "runAsNonRoot != true in container \"app\"",
                "seccompProfile not RuntimeDefault or Localhost in container \"app\"",
            ]
        );
        let mut v = good();
        v["volumes"][0] = json!({"name": "nfs", "nfs": {"server": "s", "path": "/"}});
        v["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["CHOWN"]);
        let got = violations(&spec(v), Level::Restricted);
        assert!(got.contains(&"volume \"nfs\" of a type restricted does not allow".to_string()));
        assert!(got.contains(&"capability CHOWN in container \"app\"".to_string()));
        assert!(
            violations(
                &spec(json!({"hostNetwork": true, "containers": []})),
                Level::Privileged
            )
            .is_empty()
        );
    }

    #[test]
    fn init_containers_count_too() {
        let mut v = good();
        v["initContainers"] = json!([{"name": "setup", "image": "x",
            "securityContext": {"privileged": true}}]);
        let got = violations(&spec(v), Level::Baseline);
        assert_eq!(got, vec!["privileged container \"setup\""]);
    }

    #[test]
    fn levels_order_and_parse() {
        assert!(Level::Restricted < Level::Baseline && Level::Baseline < Level::Privileged);
        assert_eq!(Level::from_label(Some("baseline")), Level::Baseline);
        assert_eq!(Level::from_label(None), Level::Privileged);
        assert_eq!(Level::from_label(Some("bogus")), Level::Privileged);
    }
}

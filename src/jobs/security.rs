//! The security context of every pod Lifeboat creates: the least each kind of pod needs,
//! and the Pod Security Standards level (`restricted` or `baseline`) it therefore meets.
//! One place, so a namespace's `pod-security.kubernetes.io/enforce` label and the pods
//! Lifeboat puts there are decided together (docs/security.md lists the level per pod).
//!
//! NB: the capabilities below are what the kernel checks for each operation; the local
//! test node runs containers as host processes and ignores capabilities and seccomp, so
//! e2e proves the levels are admitted by the API server, not that the capabilities are
//! sufficient. The unit tests pin the list.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

pub(crate) use crate::drill::pod_security::Level;

/// The user the non-root pods run as (the distroless `nonroot` user).
pub(crate) const NONROOT_UID: i64 = 65532;
/// The user of the official postgres and mariadb images (`postgres`, `mysql`).
pub(crate) const DATABASE_UID: i64 = 999;

/// How much a pod needs beyond an unprivileged process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Privilege {
    /// Nothing: a non-root user, no capabilities. Meets `restricted`.
    #[default]
    Unprivileged,
    /// Reads files of any owner and mode (volume backups, file checks): root with
    /// DAC_OVERRIDE only. DAC_READ_SEARCH would be narrower (read and search, no write),
    /// but `baseline` does not allow it while it allows DAC_OVERRIDE, and the volume is
    /// mounted read-only, so the write half of DAC_OVERRIDE has nothing to act on.
    /// Meets `baseline`.
    ReadAnyOwner,
    /// Writes files with their recorded owner, group and mode (volume restores): root
    /// with CHOWN (owners), FOWNER (modes and times of files it does not own),
    /// DAC_OVERRIDE (writing into directories restored read-only) and FSETID (keeping
    /// setuid/setgid bits across the chown). Meets `baseline`.
    WriteAnyOwner,
}

impl Privilege {
    /// The strictest Pod Security level a pod with this privilege is admitted under.
    pub(crate) fn level(self) -> Level {
        match self {
            Privilege::Unprivileged => Level::Restricted,
            Privilege::ReadAnyOwner | Privilege::WriteAnyOwner => Level::Baseline,
        }
    }

    fn capabilities(self) -> Vec<String> {
        let caps: &[&str] = match self {
            Privilege::Unprivileged => &[],
            Privilege::ReadAnyOwner => &["DAC_OVERRIDE"],
            Privilege::WriteAnyOwner => &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"],
        };
        caps.iter().map(|c| c.to_string()).collect()
    }

    fn uid(self) -> i64 {
        match self {
            Privilege::Unprivileged => NONROOT_UID,
            Privilege::ReadAnyOwner | Privilege::WriteAnyOwner => 0,
        }
    }
}

/// The container security context for `p`, running as `uid` when unprivileged.
pub(crate) fn container(p: Privilege, uid: Option<i64>) -> SecurityContext {
    let add = p.capabilities();
    let uid = if p == Privilege::Unprivileged {
        uid.unwrap_or(NONROOT_UID)
    } else {
        p.uid()
    };
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        run_as_non_root: Some(uid != 0),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: (!add.is_empty()).then_some(add),
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

/// The pod security context for `p`: the volume group for unprivileged pods (so they can
/// write to their emptyDirs and claims), and the runtime's default seccomp profile.
pub(crate) fn pod(p: Privilege, uid: Option<i64>) -> PodSecurityContext {
    let unprivileged = p == Privilege::Unprivileged;
    PodSecurityContext {
        fs_group: unprivileged.then(|| uid.unwrap_or(NONROOT_UID)),
        run_as_non_root: Some(unprivileged),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_privilege_gets_exactly_its_capabilities_and_level() {
        let cases = [
            (Privilege::Unprivileged, vec![], 65532, Level::Restricted),
            (
                Privilege::ReadAnyOwner,
                vec!["DAC_OVERRIDE"],
                0,
                Level::Baseline,
            ),
            (
                Privilege::WriteAnyOwner,
                vec!["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"],
                0,
                Level::Baseline,
            ),
        ];
        for (p, caps, uid, level) in cases {
            let c = container(p, None);
            let got = c.capabilities.clone().unwrap();
            assert_eq!(got.drop, Some(vec!["ALL".to_string()]), "{p:?}");
            assert_eq!(got.add.unwrap_or_default(), caps, "{p:?}");
            assert_eq!(c.run_as_user, Some(uid), "{p:?}");
            assert_eq!(c.run_as_non_root, Some(uid != 0), "{p:?}");
            assert_eq!(c.allow_privilege_escalation, Some(false));
            assert_eq!(c.seccomp_profile.unwrap().type_, "RuntimeDefault");
            assert_eq!(p.level(), level);
        }
    }

    #[test]
    fn baseline_capabilities_stay_within_what_baseline_admits() {
        // Kubernetes' baseline level: adding any capability outside this list is refused.
        const BASELINE: &[&str] = &[
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
        for p in [Privilege::ReadAnyOwner, Privilege::WriteAnyOwner] {
            for c in p.capabilities() {
                assert!(BASELINE.contains(&c.as_str()), "{c} is not baseline");
            }
        }
    }

    #[test]
    fn an_unprivileged_pod_may_run_as_a_chosen_user() {
        let c = container(Privilege::Unprivileged, Some(DATABASE_UID));
        assert_eq!((c.run_as_user, c.run_as_group), (Some(999), Some(999)));
        let p = pod(Privilege::Unprivileged, Some(DATABASE_UID));
        assert_eq!(p.fs_group, Some(999));
        assert_eq!(pod(Privilege::WriteAnyOwner, None).fs_group, None);
    }
}

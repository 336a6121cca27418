//! Which repository locks belong to movers that are gone: the decision (pure, [`judge`])
//! and the pod lookups behind it ([`judge_locks`]). The store controller lists a
//! repository's locks when it probes the store and removes what this module calls dead
//! (docs/engine.md, "Locks of movers that are gone").
//!
//! A lock is ours only when it says so: a mover records `pod:<namespace>/<uid>` as the
//! lock's holder and its pod name is the lock's host name. Anything else (restic, the
//! CLI on a laptop, an older mover) is foreign and never touched here; restic's 30-minute
//! rule and `lifeboat unlock` still apply to it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::crd::labels;
use crate::repo::{FoundLock, LockInfo};

/// How long after its last refresh a lock whose pod object is gone (or replaced) may be
/// removed. A pod object can vanish while its process still runs (a force delete, a
/// partitioned node); a live holder rewrites its lock every refresh interval, so a lock
/// older than that plus a margin has no live holder.
pub(crate) const GONE_GRACE: Duration =
    Duration::from_secs(crate::repo::LOCK_REFRESH_EVERY.as_secs() + 60);

/// Lookups per sweep: a repository with more mover locks than this is swept over
/// several probes, so one probe's API requests stay bounded.
pub(crate) const MAX_LOOKUPS: usize = 32;

/// The mover pod a lock names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MoverRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The pod the lock names, as the API server sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PodSeen {
    /// No pod of that name in that namespace.
    Missing,
    Found {
        uid: String,
        phase: Option<String>,
        /// Carries Lifeboat's managed-by label (mover Jobs' pods do).
        lifeboat: bool,
    },
    /// The lookup failed: nothing can be proved.
    Unknown,
}

/// Why a lock stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Not written by a mover (no holder, another format, or a host name that is not
    /// the holder's pod).
    Foreign,
    /// Its pod runs, or may (Pending, Unknown, no phase yet).
    Alive,
    /// The pod exists but is not one of Lifeboat's.
    NotOurs,
    /// The pod could not be looked up.
    Unproven,
    /// The pod is gone but the lock was refreshed within [`GONE_GRACE`].
    RecentlyGone,
}

/// Why a lock is removed: the `reason` label of the removal counter (bounded).
// The variants are spelled as the label values and Event reasons operators read.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The pod finished (Succeeded or Failed): its containers have stopped.
    PodFinished,
    /// No such pod any more, and the lock is older than [`GONE_GRACE`].
    PodGone,
    /// A pod of that name exists with another UID: the holder was deleted.
    PodReplaced,
}

impl Removal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Removal::PodFinished => "PodFinished",
            Removal::PodGone => "PodGone",
            Removal::PodReplaced => "PodReplaced",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep(Keep),
    Remove(Removal),
}

/// The mover a lock names: a holder `pod:<namespace>/<uid>` and a host name that can be
/// a pod name (a DNS label: the kubelet sets a pod's host name to its name).
pub(crate) fn mover_of(info: &LockInfo) -> Option<MoverRef> {
    let rest = info.holder.as_deref()?.strip_prefix("pod:")?;
    let (namespace, uid) = rest.split_once('/')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let uid_ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (label(namespace) && label(&info.hostname) && uid_ok).then(|| MoverRef {
        namespace: namespace.to_string(),
        name: info.hostname.clone(),
        uid: uid.to_string(),
    })
}

/// Keep or remove one lock, given what the API server says of the pod it names.
pub(crate) fn judge(info: &LockInfo, pod: &PodSeen, now: Timestamp) -> Verdict {
    let Some(mover) = mover_of(info) else {
        return Verdict::Keep(Keep::Foreign);
    };
    let grace = SignedDuration::try_from(GONE_GRACE).unwrap_or(SignedDuration::MAX);
    let old_enough = now.duration_since(info.time) > grace;
    let gone = |why| {
        if old_enough {
            Verdict::Remove(why)
        } else {
            Verdict::Keep(Keep::RecentlyGone)
        }
    };
    match pod {
        PodSeen::Unknown => Verdict::Keep(Keep::Unproven),
        PodSeen::Missing => gone(Removal::PodGone),
        PodSeen::Found { uid, .. } if *uid != mover.uid => gone(Removal::PodReplaced),
        PodSeen::Found {
            lifeboat: false, ..
        } => Verdict::Keep(Keep::NotOurs),
        PodSeen::Found { phase, .. } => match phase.as_deref() {
            Some("Succeeded" | "Failed") => Verdict::Remove(Removal::PodFinished),
            _ => Verdict::Keep(Keep::Alive),
        },
    }
}

fn seen(pod: Option<Pod>) -> PodSeen {
    match pod {
        None => PodSeen::Missing,
        Some(p) => PodSeen::Found {
            uid: p.metadata.uid.clone().unwrap_or_default(),
            phase: p.status.and_then(|s| s.phase),
            lifeboat: p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::MANAGED_BY))
                .is_some_and(|v| v == labels::MANAGER),
        },
    }
}

/// A lock to remove, and why.
#[derive(Clone, Debug)]
pub(crate) struct DeadLock {
    pub lock: FoundLock,
    pub mover: MoverRef,
    pub why: Removal,
}

/// The locks of `locks` whose mover is provably gone. One GET per lock that names a
/// mover (at most [`MAX_LOOKUPS`]); foreign locks cost nothing.
pub(crate) async fn judge_locks(
    client: &kube::Client,
    locks: &[FoundLock],
    now: Timestamp,
) -> Vec<DeadLock> {
    let mut dead = Vec::new();
    for lock in locks
        .iter()
        .filter(|l| mover_of(&l.info).is_some())
        .take(MAX_LOOKUPS)
    {
        let Some(mover) = mover_of(&lock.info) else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &mover.namespace);
        let pod = match api.get_opt(&mover.name).await {
            Ok(p) => seen(p),
            Err(e) => {
                tracing::debug!(error = %e, pod = %mover.name, "mover pod lookup failed");
                PodSeen::Unknown
            }
        };
        match judge(&lock.info, &pod, now) {
            Verdict::Remove(why) => dead.push(DeadLock {
                lock: lock.clone(),
                mover,
                why,
            }),
            Verdict::Keep(k) => {
                tracing::debug!(lock = %lock.id, pod = %mover.name, keep = ?k, "lock kept");
            }
        }
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5f0c1a2e-0000-4000-8000-00000000abcd";
    const NOW: &str = "2026-03-01T12:00:00Z";

    fn lock(host: &str, holder: Option<&str>, age_secs: i64) -> LockInfo {
        LockInfo {
            time: NOW.parse::<Timestamp>().unwrap() - SignedDuration::from_secs(age_secs),
            exclusive: false,
            hostname: host.into(),
            username: "lifeboat".into(),
            pid: 1,
            uid: 65532,
            gid: 65532,
            holder: holder.map(str::to_string),
        }
    }

    fn pod(uid: &str, phase: Option<&str>, lifeboat: bool) -> PodSeen {
        PodSeen::Found {
            uid: uid.into(),
            phase: phase.map(str::to_string),
            lifeboat,
        }
    }

    #[test]
    fn verdicts() {
        let holder = format!("pod:shop/{UID}");
        let ours = Some(holder.as_str());
        let mover = "orders-202603011155-data-x7k2p";
        let long_ago = GONE_GRACE.as_secs() as i64 + 1;
        use Keep::*;
        use Removal::*;
        let cases: Vec<(&str, LockInfo, PodSeen, Verdict)> = vec![
            (
                "restic's own lock (no holder)",
                lock("laptop", None, 5),
                PodSeen::Missing,
                Verdict::Keep(Foreign),
            ),
            (
                "old restic lock: not ours to judge",
                lock(mover, None, 4000),
                PodSeen::Missing,
                Verdict::Keep(Foreign),
            ),
            (
                "a holder of another kind",
                lock(mover, Some("ci:runner-7"), long_ago),
                PodSeen::Missing,
                Verdict::Keep(Foreign),
            ),
            (
                "host name that cannot be a pod",
                lock("Build.Host.local", ours, long_ago),
                PodSeen::Missing,
                Verdict::Keep(Foreign),
            ),
            (
                "live mover",
                lock(mover, ours, 5),
                pod(UID, Some("Running"), true),
                Verdict::Keep(Alive),
            ),
            (
                "mover starting",
                lock(mover, ours, 5),
                pod(UID, Some("Pending"), true),
                Verdict::Keep(Alive),
            ),
            (
                "node lost: phase Unknown",
                lock(mover, ours, long_ago),
                pod(UID, Some("Unknown"), true),
                Verdict::Keep(Alive),
            ),
            (
                "killed mover (Failed), however fresh its lock",
                lock(mover, ours, 5),
                pod(UID, Some("Failed"), true),
                Verdict::Remove(PodFinished),
            ),
            (
                "mover that finished without removing its lock",
                lock(mover, ours, 5),
                pod(UID, Some("Succeeded"), true),
                Verdict::Remove(PodFinished),
            ),
            (
                "pod deleted long ago",
                lock(mover, ours, long_ago),
                PodSeen::Missing,
                Verdict::Remove(PodGone),
            ),
            (
                "pod deleted, lock refreshed recently: may be force-deleted and still running",
                lock(mover, ours, 30),
                PodSeen::Missing,
                Verdict::Keep(RecentlyGone),
            ),
            (
                "pod deleted and a new pod of the same name, long ago",
                lock(mover, ours, long_ago),
                pod("0ther-uid", Some("Running"), true),
                Verdict::Remove(PodReplaced),
            ),
            (
                "same name, new pod, lock fresh",
                lock(mover, ours, 30),
                pod("0ther-uid", Some("Running"), true),
                Verdict::Keep(RecentlyGone),
            ),
            (
                "same UID but not a Lifeboat pod",
                lock(mover, ours, long_ago),
                pod(UID, Some("Failed"), false),
                Verdict::Keep(NotOurs),
            ),
            (
                "lookup failed",
                lock(mover, ours, long_ago),
                PodSeen::Unknown,
                Verdict::Keep(Unproven),
            ),
        ];
        let now: Timestamp = NOW.parse().unwrap();
        for (what, info, seen, want) in cases {
            assert_eq!(judge(&info, &seen, now), want, "{what}");
        }
    }

    #[test]
    fn the_holder_names_the_namespace_the_pod_is_looked_up_in() {
        // Another namespace's mover of the same name is not this lock's holder: the
        // lookup goes to the namespace the lock names, never by name alone.
        let l = lock("db-x7k2p", Some(&format!("pod:shop/{UID}")), 5);
        assert_eq!(
            mover_of(&l),
            Some(MoverRef {
                namespace: "shop".into(),
                name: "db-x7k2p".into(),
                uid: UID.into(),
            })
        );
        for bad in ["pod:/uid", "pod:shop/", "pod:Shop/1", "pod:shop", "shop/1"] {
            assert_eq!(mover_of(&lock("db-x7k2p", Some(bad), 5)), None, "{bad}");
        }
    }

    #[test]
    fn the_lock_holder_a_mover_writes_is_the_one_judged() {
        let h = crate::mover::lock_holder("shop", UID);
        assert_eq!(
            mover_of(&lock("db-x7k2p", Some(&h), 5)).map(|m| m.uid),
            Some(UID.to_string())
        );
    }
}

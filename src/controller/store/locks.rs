//! The store controller's lock sweep: after a probe listed the repository's locks, asks
//! the store-access kernel ([`access::locks`]) which belong to movers that are gone,
//! removes those (each only if unchanged since it was read), and says so with a Normal
//! Event on the store and the `lifeboat_stale_locks_removed_total` counter. The removal
//! reopens the repository on a blocking thread under the probe slots and timeout, and
//! only when there is something to remove.

use std::sync::Arc;

use jiff::Timestamp;
use kube::Resource;

use super::{Connection, PROBE_TIMEOUT, StoreCtx};
use crate::controller::PlannedEvent;
use crate::controller::access::{self, locks::DeadLock};
use crate::metrics::LockRemovalLabels;
use crate::repo::FoundLock;

fn note(d: &DeadLock) -> String {
    let why = match d.why {
        access::locks::Removal::PodFinished => "the pod has finished",
        access::locks::Removal::PodGone => "the pod no longer exists",
        access::locks::Removal::PodReplaced => "the pod was replaced by another of that name",
    };
    format!(
        "removed the {} lock {} of mover pod {}/{} (PID {}, last refreshed {}): {why}",
        if d.lock.info.exclusive {
            "exclusive"
        } else {
            "shared"
        },
        &d.lock.id[..d.lock.id.len().min(12)],
        d.mover.namespace,
        d.mover.name,
        d.lock.info.pid,
        d.lock.info.time,
    )
}

pub(super) async fn sweep<K>(
    sc: &Arc<StoreCtx>,
    store: &K,
    conn: Connection,
    locks: &[FoundLock],
    now: Timestamp,
) where
    K: Resource<DynamicType = ()>,
{
    let dead = access::locks::judge_locks(&sc.ctx.client, locks, now).await;
    if dead.is_empty() {
        return;
    }
    let prober = sc.prober.clone();
    let judged: Vec<FoundLock> = dead.iter().map(|d| d.lock.clone()).collect();
    let removed = {
        // Never closed: the semaphore lives as long as the controllers.
        let _slot = sc.probe_slots.acquire().await;
        let task = tokio::task::spawn_blocking(move || prober.remove_locks(&conn, &judged));
        match tokio::time::timeout(PROBE_TIMEOUT, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(format!("lock removal crashed: {join}")),
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        }
    };
    let removed = match removed {
        Ok(ids) => ids,
        Err(e) => {
            // The next probe lists and judges again.
            tracing::warn!(error = %e, "removing locks of movers that are gone failed");
            return;
        }
    };
    for d in dead.iter().filter(|d| removed.contains(&d.lock.id)) {
        sc.ctx
            .metrics
            .stale_locks_removed
            .get_or_create(&LockRemovalLabels {
                reason: d.why.as_str(),
            })
            .inc();
        let ev = PlannedEvent {
            warning: false,
            reason: "StaleLockRemoved",
            note: note(d),
        };
        tracing::info!(lock = %d.lock.id, pod = %d.mover.name, namespace = %d.mover.namespace, reason = d.why.as_str(), "removed the lock of a mover that is gone");
        sc.ctx.publish(store, &ev, "RemoveLock").await;
    }
}

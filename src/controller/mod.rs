//! The controller process: shared context, the reconcile harness (span, timing, metrics,
//! per-object back-off), status writes by server-side apply, Events, and leader election.
//! One sub-module per kind holds that kind's `plan` (pure) and `apply` (writes).

pub(crate) mod access;
pub mod backup;
pub mod backup_policy;
pub mod cache;
pub mod conditions;
pub mod dr_drill;
pub mod drill_run;
pub mod error;
pub mod events;
pub mod evidence;
pub mod leader;
pub mod restore;
pub(crate) mod scope;
pub mod sources;
pub mod store;

mod runner;
pub use runner::{RunError, run};

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::{Error, Result, Retry};

use crate::config::Config;
use crate::metrics::Metrics;

/// Field manager of every write the controller makes.
pub const MANAGER: &str = "lifeboat-controller";

/// What every reconciler gets.
pub struct Context {
    pub client: Client,
    pub recorder: events::EventRecorder,
    pub metrics: Metrics,
    pub config: Arc<Config>,
    /// Watch caches of the objects read on every reconcile.
    pub caches: cache::Caches,
    /// Consecutive failures per object UID, for back-off. Reset on success.
    failures: Mutex<HashMap<String, u32>>,
    /// When the mover ServiceAccount of a namespace was last applied.
    rbac_applied: Mutex<HashMap<String, Instant>>,
    /// The drill controller's cache of DRDrills, set when that controller starts.
    pub drills: OnceLock<kube::runtime::reflector::Store<crate::crd::dr_drill::DRDrill>>,
    /// When a Secret named by a policy was last seen to exist, per namespace and name.
    secrets_seen: Mutex<HashMap<(String, String), Instant>>,
    /// What each store's repository holds (written by the store controllers, read by
    /// the Restore controller).
    pub catalogs: store::catalog::Catalogs,
    /// The evidence signing key's state, set at start (see [`evidence`]).
    pub evidence: evidence::Keys,
}

/// How long a Secret seen to exist is trusted to still exist. The controller may not
/// watch Secrets (its RBAC reads them by name only), and a GET per policy reconcile was
/// most of the API load when many policies fire at one slot. A Secret deleted meanwhile
/// is noticed this much later, or by the run that needs it, which fails with its reason.
const SECRET_SEEN_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// How long an applied mover ServiceAccount is trusted before it is applied again (someone
/// may delete it).
const RBAC_REFRESH: std::time::Duration = std::time::Duration::from_secs(600);

impl Context {
    pub fn new(
        client: Client,
        metrics: Metrics,
        config: Arc<Config>,
        caches: cache::Caches,
    ) -> Self {
        Context {
            recorder: events::EventRecorder::new(client.clone(), MANAGER, &config.identity),
            client,
            metrics,
            config,
            caches,
            failures: Mutex::new(HashMap::new()),
            rbac_applied: Mutex::new(HashMap::new()),
            drills: OnceLock::new(),
            secrets_seen: Mutex::new(HashMap::new()),
            catalogs: store::catalog::Catalogs::default(),
            evidence: evidence::Keys::default(),
        }
    }

    /// Whether Secret `namespace/name` was seen to exist within [`SECRET_SEEN_TTL`].
    pub fn secret_seen_recently(&self, namespace: &str, name: &str) -> bool {
        let map = self.secrets_seen.lock().expect("lock poisoned");
        map.get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|t| t.elapsed() < SECRET_SEEN_TTL)
    }

    /// Records that Secret `namespace/name` exists.
    pub fn secret_seen(&self, namespace: &str, name: &str) {
        let mut map = self.secrets_seen.lock().expect("lock poisoned");
        // Entries of deleted policies would otherwise stay forever.
        if map.len() >= 4096 {
            map.retain(|_, t| t.elapsed() < SECRET_SEEN_TTL);
        }
        map.insert((namespace.to_string(), name.to_string()), Instant::now());
    }

    /// Whether the mover ServiceAccount of `namespace` needs applying now; applying it on
    /// every run start cost a write per run.
    pub fn rbac_due(&self, namespace: &str) -> bool {
        let map = self.rbac_applied.lock().expect("lock poisoned");
        map.get(namespace)
            .is_none_or(|t| t.elapsed() > RBAC_REFRESH)
    }

    /// Records that the mover ServiceAccount of `namespace` was applied.
    pub fn rbac_done(&self, namespace: &str) {
        self.rbac_applied
            .lock()
            .expect("lock poisoned")
            .insert(namespace.to_string(), Instant::now());
    }

    /// Whether objects of `namespace` are ours to reconcile (`--watch-namespaces`).
    /// Cluster-scoped objects always are.
    pub fn watches(&self, namespace: Option<&str>) -> bool {
        let w = &self.config.watch_namespaces;
        match namespace {
            None => true,
            Some(ns) => w.is_empty() || w.iter().any(|x| x == ns),
        }
    }

    fn record_failure(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().expect("lock poisoned");
        let n = f.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    fn record_success(&self, key: &str) {
        self.failures.lock().expect("lock poisoned").remove(key);
    }

    /// Publishes an Event about `obj`. Failing to publish never fails a reconciliation
    /// (Events are best-effort in Kubernetes too); it is logged.
    pub async fn publish<K>(&self, obj: &K, ev: &PlannedEvent, action: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let new = events::NewEvent {
            warning: ev.warning,
            reason: ev.reason,
            action,
            note: truncate(ev.note.clone(), 1000),
        };
        if let Err(e) = self.recorder.publish(obj, new).await {
            tracing::warn!(error = %e, reason = ev.reason, "could not publish event");
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn object_key<K: Resource>(obj: &K) -> String {
    obj.meta()
        .uid
        .clone()
        .unwrap_or_else(|| format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()))
}

/// Runs one reconciliation of `obj` with a span, timing, metrics and back-off reset.
pub async fn instrumented<K, Fut>(
    controller: &'static str,
    obj: &K,
    ctx: &Context,
    body: Fut,
) -> Result<Action>
where
    K: Resource,
    Fut: Future<Output = Result<Action>>,
{
    if !ctx.watches(obj.namespace().as_deref()) {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        controller,
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any()
    );
    let result = tracing::Instrument::instrument(body, span).await;
    ctx.metrics.observe_reconcile(controller, started.elapsed());
    if result.is_ok() {
        ctx.record_success(&object_key(obj));
    }
    result
}

/// The error policy of a controller: metrics by category, then a requeue that depends on
/// the error's retry class and how often this object failed in a row.
pub fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action
where
    K: Resource,
{
    move |obj, err, ctx| {
        ctx.metrics
            .observe_reconcile_error(controller, err.category());
        let key = object_key(obj.as_ref());
        let attempt = ctx.record_failure(&key);
        let seed = key.bytes().fold(attempt as u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(b as u64)
        });
        let delay = error::backoff(err.retry(), attempt, seed);
        match err.retry() {
            Retry::Conflict => tracing::debug!(error = %err, "write conflict, retrying"),
            Retry::Permanent | Retry::Dependency => {
                tracing::info!(name = %obj.name_any(), error = %err, ?delay, "waiting for a change")
            }
            Retry::Transient => {
                tracing::warn!(name = %obj.name_any(), error = %err, ?delay, attempt, "reconcile failed")
            }
        }
        Action::requeue(delay)
    }
}

/// An Event a plan asks the apply step to publish (every controller's plan uses this one
/// shape; the apply step records it against the reconciled object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Writes `status` by server-side apply under [`MANAGER`], forcing ownership of the
/// fields we set (the status is ours alone).
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    apply_status_at(api, name, None, status).await
}

/// [`apply_status_at`] onto `obj` itself: its namespace, name and resourceVersion.
pub async fn apply_own_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize,
{
    let api = Api::<K>::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    apply_status_at(
        &api,
        &obj.name_any(),
        obj.resource_version().as_deref(),
        status,
    )
    .await
}

/// Like [`apply_status`], but only onto the version of the object the plan was made from:
/// the watch cache can hand a reconcile an object older than our own last status write
/// (a Job we deleted after recording its success would then look vanished). The API
/// server refuses a stale write with 409 Conflict, and the object is reconciled again
/// from its current version.
pub async fn apply_status_at<K, S>(
    api: &Api<K>,
    name: &str,
    resource_version: Option<&str>,
    status: &S,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let mut body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(rv) = resource_version {
        body["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_are_truncated_on_a_char_boundary() {
        let s = "é".repeat(600); // 1200 bytes
        let t = truncate(s, 1000);
        assert!(t.len() <= 1000);
        assert!(t.chars().all(|c| c == 'é'));
    }
}

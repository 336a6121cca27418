//! The store-access kernel: the one place that turns a (namespace, store reference) into a
//! store that namespace may use, and the only code that reads a store's Secrets. Every
//! path that touches a repository (backup, retention, restore, drill run, the store probe)
//! goes through it, so the tenant boundary is enforced once:
//!
//! - A namespaced BackupStore's Secret references resolve in the store's own namespace; a
//!   reference that names another namespace is refused (`SecretNamespaceNotAllowed`), it
//!   is never read.
//! - A ClusterBackupStore is usable only by the namespaces it allows, by name or by label
//!   selector. The check runs on every call, from the current store and namespace, so a
//!   name removed from the list (or a label removed from the namespace) stops runs that
//!   have not finished at their next reconcile.
//! - A store without credentials runs on the ambient cloud identity (IRSA, pod identity,
//!   instance roles) only when it is a ClusterBackupStore, or when the installation allows
//!   it for namespaced stores (`--allow-ambient-credentials`): otherwise a namespace
//!   editor could point the controller's identity at any bucket.
//!
//! A resolved [`Store`] is handed out only when the namespace may use it: callers cannot
//! mirror what they were not given. Status conditions are never trusted for these rules
//! (a store's `Ready` may describe an older spec).

pub(crate) mod identity;
pub(crate) mod locks;
pub(crate) mod observe;
pub(crate) mod rbac;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::ObjectRef;

use super::{Context, MANAGER, Result, conditions};
use crate::config::Config;
use crate::crd::annotations;
use crate::crd::backup_policy::{StoreKind, StoreRef};
use crate::crd::common::{Failure, condition};
use crate::crd::store::{
    BackupStore, BackupStoreSpec, ClusterBackupStore, ClusterBackupStoreSpec, StoreStatus,
};
use crate::jobs::mover::mirror_keys;

/// Where a store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A BackupStore, in this namespace.
    Namespaced(String),
    /// A ClusterBackupStore.
    Cluster,
}

/// A store a namespace may use, with its current spec.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Store {
    pub name: String,
    pub scope: Scope,
    pub spec: BackupStoreSpec,
}

impl Store {
    pub(crate) fn is_cluster(&self) -> bool {
        self.scope == Scope::Cluster
    }
}

/// How a namespace sees the store it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreState {
    Missing,
    /// A ClusterBackupStore that allows the namespace neither by name nor by label.
    NotAllowed,
    /// The store's spec breaks a tenant rule (a Secret in another namespace, ambient
    /// credentials where they are not allowed): `reason` says which.
    Refused {
        reason: &'static str,
        message: String,
    },
    NotReady {
        reason: String,
        message: String,
    },
    Ready,
}

impl StoreState {
    /// Why a run cannot start on this store (`None` when it is Ready), for the run's
    /// status: the same reasons whatever kind of run asks.
    pub fn blocker(&self, store: &str, namespace: &str) -> Option<Failure> {
        let (reason, message) = match self {
            StoreState::Ready => return None,
            StoreState::Missing => ("StoreNotFound", format!("store {store:?} does not exist")),
            StoreState::NotAllowed => ("StoreNotAllowed", not_allowed_message(store, namespace)),
            StoreState::Refused { reason, message } => (*reason, message.clone()),
            StoreState::NotReady { reason, message } => {
                ("StoreNotReady", format!("{reason}: {message}"))
            }
        };
        Some(Failure {
            reason: reason.into(),
            message,
        })
    }
}

fn not_allowed_message(store: &str, namespace: &str) -> String {
    format!(
        "ClusterBackupStore {store:?} allows namespace {namespace:?} neither in allowedNamespaces nor by allowedNamespaceSelector"
    )
}

/// What [`resolve`] found: the state, and the store only when the namespace may use it
/// (whatever its readiness: a finished run still cleans up with it).
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub state: StoreState,
    pub store: Option<Store>,
}

fn state_of(status: Option<&StoreStatus>) -> StoreState {
    match status.and_then(|s| conditions::get(&s.conditions, condition::READY)) {
        Some(c) if c.status == "True" => StoreState::Ready,
        Some(c) => StoreState::NotReady {
            reason: c.reason.clone(),
            message: c.message.clone(),
        },
        None => StoreState::NotReady {
            reason: "NotProbedYet".into(),
            message: "the store has not been checked yet".into(),
        },
    }
}

/// Whether a ClusterBackupStore allows `namespace`: by name (or `*`), or because the
/// namespace's labels match `allowedNamespaceSelector`. `labels` is `None` when they were
/// not read (the name matched, or the namespace does not exist). An invalid selector
/// allows nobody.
pub(crate) fn allows(
    spec: &ClusterBackupStoreSpec,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if spec.allows(namespace) {
        return true;
    }
    let (Some(sel), Some(labels)) = (&spec.allowed_namespace_selector, labels) else {
        return false;
    };
    // An empty selector would select every namespace: the same as `*`, which must be
    // written out in allowedNamespaces to mean it.
    if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    {
        return false;
    }
    Selector::try_from(sel.clone()).is_ok_and(|s| s.matches(labels))
}

/// One Secret value a store names: the spec field it comes from, the Secret, its
/// namespace as written, the key, the key it takes in a mirror Secret, and whether it
/// may be missing.
struct SecretUse<'a> {
    field: &'static str,
    name: &'a str,
    namespace: Option<&'a str>,
    key: &'a str,
    into: &'static str,
    optional: bool,
}

fn secret_uses(spec: &BackupStoreSpec) -> Vec<SecretUse<'_>> {
    let pw = &spec.repository_password;
    let mut out = vec![SecretUse {
        field: "spec.repositoryPassword",
        name: &pw.name,
        namespace: pw.namespace.as_deref(),
        key: &pw.key,
        into: mirror_keys::PASSWORD,
        optional: false,
    }];
    if let Some(c) = &spec.s3.credentials {
        for (key, into, optional) in [
            (c.access_key_id_key(), mirror_keys::ACCESS_KEY_ID, false),
            (
                c.secret_access_key_key(),
                mirror_keys::SECRET_ACCESS_KEY,
                false,
            ),
            (c.session_token_key(), mirror_keys::SESSION_TOKEN, true),
        ] {
            out.push(SecretUse {
                field: "spec.s3.credentials",
                name: &c.name,
                namespace: c.namespace.as_deref(),
                key,
                into,
                optional,
            });
        }
    }
    if let Some(ca) = &spec.s3.ca_bundle {
        out.push(SecretUse {
            field: "spec.s3.caBundle",
            name: &ca.name,
            namespace: ca.namespace.as_deref(),
            key: &ca.key,
            into: mirror_keys::CA,
            optional: false,
        });
    }
    out
}

/// Why a store's Secrets are not read: a bounded reason (a condition reason and Event
/// reason) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    /// Whether trying again later may succeed (the API server did not answer).
    pub(crate) fn transient(&self) -> bool {
        self.reason == "SecretNotReadable"
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        Failure {
            reason: r.reason.into(),
            message: r.message,
        }
    }
}

fn refused(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message }
}

/// The tenant rules a store's spec must keep, checked before any Secret is read: where
/// each Secret is read from (`Ok`: one namespace per use, in [`secret_uses`] order), or
/// why the store may not be used.
fn secret_namespaces(store: &Store, config: &Config) -> std::result::Result<Vec<String>, Refusal> {
    let uses = secret_uses(&store.spec);
    let mut out = Vec::with_capacity(uses.len());
    for u in &uses {
        let ns = match (&store.scope, u.namespace) {
            (Scope::Namespaced(own), None) => own.clone(),
            (Scope::Namespaced(own), Some(n)) if n == own => own.clone(),
            (Scope::Namespaced(own), Some(n)) => {
                return Err(refused(
                    "SecretNamespaceNotAllowed",
                    format!(
                        "{}.namespace is {n:?}: a BackupStore reads Secrets from its own namespace {own:?} only",
                        u.field
                    ),
                ));
            }
            (Scope::Cluster, Some(n)) if !n.is_empty() => n.to_string(),
            (Scope::Cluster, _) => {
                return Err(refused(
                    "InvalidStore",
                    format!(
                        "{}: a ClusterBackupStore must name the namespace of Secret {:?}",
                        u.field, u.name
                    ),
                ));
            }
        };
        out.push(ns);
    }
    let ambient = store.spec.s3.credentials.is_none();
    if ambient && !store.is_cluster() && !config.allow_ambient_credentials {
        return Err(refused(
            "AmbientCredentialsNotAllowed",
            "spec.s3.credentials is not set, and this installation does not let namespaced BackupStores use the ambient cloud identity (chart value stores.allowAmbientCredentials)".into(),
        ));
    }
    Ok(out)
}

/// Checks a store's spec against the tenant rules without reading anything.
pub(crate) fn check_rules(store: &Store, config: &Config) -> std::result::Result<(), Refusal> {
    secret_namespaces(store, config).map(drop)
}

/// The values a store's Secrets hold, under [`mirror_keys`].
#[derive(Clone, Default)]
pub(crate) struct StoreSecrets(pub BTreeMap<String, ByteString>);

impl std::fmt::Debug for StoreSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl StoreSecrets {
    /// A value as text, without the trailing newline files often carry.
    pub(crate) fn text(&self, key: &str) -> Option<String> {
        self.0.get(key).map(|v| {
            String::from_utf8_lossy(&v.0)
                .trim_end_matches('\n')
                .to_string()
        })
    }
}

/// Reads the Secrets of `store` (the only place that does), after [`check_rules`]. The
/// inner error says why they cannot be read, as a condition reason: the rule broken,
/// `SecretNotFound`, `SecretKeyNotFound` or `SecretNotReadable`.
pub(crate) async fn read_secrets(
    client: &kube::Client,
    config: &Config,
    store: &Store,
) -> Result<std::result::Result<StoreSecrets, Refusal>> {
    let namespaces = match secret_namespaces(store, config) {
        Ok(n) => n,
        Err(f) => return Ok(Err(f)),
    };
    let mut read: BTreeMap<(String, String), Option<Secret>> = BTreeMap::new();
    let mut out = StoreSecrets::default();
    for (u, ns) in secret_uses(&store.spec).iter().zip(namespaces) {
        let id = (ns.clone(), u.name.to_string());
        if !read.contains_key(&id) {
            let got = Api::<Secret>::namespaced(client.clone(), &ns)
                .get_opt(u.name)
                .await;
            let secret = match got {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Err(refused(
                        "SecretNotReadable",
                        format!("Secret {ns}/{}: {e}", u.name),
                    )));
                }
            };
            read.insert(id.clone(), secret);
        }
        let Some(secret) = &read[&id] else {
            return Ok(Err(refused(
                "SecretNotFound",
                format!("Secret {ns}/{} ({}) does not exist", u.name, u.field),
            )));
        };
        match secret.data.as_ref().and_then(|d| d.get(u.key)) {
            Some(v) => {
                out.0.insert(u.into.to_string(), v.clone());
            }
            None if u.optional => {}
            None => {
                return Ok(Err(refused(
                    "SecretKeyNotFound",
                    format!(
                        "Secret {ns}/{} has no key {:?} ({})",
                        u.name, u.key, u.field
                    ),
                )));
            }
        }
    }
    Ok(Ok(out))
}

/// Who a mirror Secret belongs to: the run object itself (same namespace), or the UID of
/// a run in another namespace (a copy in the controller's namespace).
#[derive(Clone, Debug)]
pub(crate) enum MirrorOwner {
    Reference(OwnerReference),
    Uid(String),
    /// Nobody: the namespace's deletion takes it (a drill sandbox).
    Namespace,
}

/// Writes `secrets` (plus `extra` values) as Secret `name` in `namespace` by server-side
/// apply, so a repeat changes nothing. For pods there that open the repository.
pub(crate) async fn write_mirror(
    client: &kube::Client,
    secrets: &StoreSecrets,
    extra: BTreeMap<String, ByteString>,
    namespace: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    owner: MirrorOwner,
) -> Result<()> {
    let mut data = secrets.0.clone();
    data.extend(extra);
    let (owner_references, annotations) = match owner {
        MirrorOwner::Reference(o) => (Some(vec![o]), None),
        MirrorOwner::Uid(uid) => (
            None,
            Some(BTreeMap::from([(annotations::OWNER_UID.to_string(), uid)])),
        ),
        MirrorOwner::Namespace => (None, None),
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations,
            owner_references,
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// Whether `meta` belongs to the object with UID `owner`: by owner reference, or (in the
/// controller's namespace, where owner references to runs cannot point) by the
/// [`annotations::OWNER_UID`] annotation.
pub(crate) fn owned_by(meta: &ObjectMeta, owner: Option<&str>) -> bool {
    let Some(uid) = owner else { return false };
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
        || meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::OWNER_UID))
            .is_some_and(|u| u == uid)
}

/// Deletes mirror Secret `name` of `namespace` if it belongs to the object with UID
/// `owner` ([`owned_by`]; a namespace may hold a Secret of that name that is not ours:
/// the controller may not list Secrets to select by label). The UID precondition closes
/// the gap between the read and the delete.
pub(crate) async fn delete_mirror(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    owner: Option<&str>,
) -> Result<()> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let Some(s) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !owned_by(&s.metadata, owner) {
        return Ok(());
    }
    let dp = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: s.metadata.uid.clone(),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::background()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The store `r` names, as namespace `ns` sees it. Read from the watch cache; the API
/// server is asked only when the cache has it missing, not allowed or not Ready (the cache
/// may lag behind a store just created or probed, and those are the states that stop a
/// run). The allowance and the tenant rules are decided here from the current spec, never
/// from the store's status.
pub(crate) async fn resolve(ctx: &Context, ns: &str, r: &StoreRef) -> Result<Resolved> {
    let cached = match r.kind {
        StoreKind::BackupStore => ctx
            .caches
            .stores
            .get(&ObjectRef::new(&r.name).within(ns))
            .map(|s| Found::Namespaced(Arc::unwrap_or_clone(s))),
        StoreKind::ClusterBackupStore => ctx
            .caches
            .cluster_stores
            .get(&ObjectRef::new(&r.name))
            .map(|s| Found::Cluster(Arc::unwrap_or_clone(s))),
    };
    let first = judge(ctx, ns, cached).await?;
    if first.state == StoreState::Ready {
        return Ok(first);
    }
    let client = ctx.client.clone();
    let fresh = match r.kind {
        StoreKind::BackupStore => Api::<BackupStore>::namespaced(client, ns)
            .get_opt(&r.name)
            .await?
            .map(Found::Namespaced),
        StoreKind::ClusterBackupStore => Api::<ClusterBackupStore>::all(client)
            .get_opt(&r.name)
            .await?
            .map(Found::Cluster),
    };
    judge(ctx, ns, fresh).await
}

enum Found {
    Namespaced(BackupStore),
    Cluster(ClusterBackupStore),
}

async fn judge(ctx: &Context, ns: &str, found: Option<Found>) -> Result<Resolved> {
    let (store, status) = match found {
        None => {
            return Ok(Resolved {
                state: StoreState::Missing,
                store: None,
            });
        }
        Some(Found::Namespaced(s)) => (
            Store {
                name: kube::ResourceExt::name_any(&s),
                scope: Scope::Namespaced(ns.to_string()),
                spec: s.spec,
            },
            s.status,
        ),
        Some(Found::Cluster(s)) => {
            let labels = if s.spec.allows(ns) || s.spec.allowed_namespace_selector.is_none() {
                None
            } else {
                Api::<Namespace>::all(ctx.client.clone())
                    .get_opt(ns)
                    .await?
                    .map(|n| n.metadata.labels.unwrap_or_default())
            };
            if !allows(&s.spec, ns, labels.as_ref()) {
                return Ok(Resolved {
                    state: StoreState::NotAllowed,
                    store: None,
                });
            }
            (
                Store {
                    name: kube::ResourceExt::name_any(&s),
                    scope: Scope::Cluster,
                    spec: s.spec.store,
                },
                s.status,
            )
        }
    };
    let state = match check_rules(&store, &ctx.config) {
        Err(r) => StoreState::Refused {
            reason: r.reason,
            message: r.message,
        },
        Ok(()) => state_of(status.as_ref()),
    };
    Ok(Resolved {
        state,
        store: Some(store),
    })
}

#[cfg(test)]
mod tests;

//! Whose restore points a namespace may read from a store: a Restore's
//! `source.fromPolicy` names a policy identity (`namespace/policy`) that may be another
//! namespace's. A namespaced store's repository belongs to its namespace's tenant (who
//! holds its password anyway), so every identity in it is theirs to restore. In a
//! ClusterBackupStore's repository every allowed namespace's data lies side by side:
//! a namespace reads its own namespace's identities, and another's only when the store
//! lists it in `crossNamespaceRestore` (only a cluster admin edits cluster stores).
//! The mover checks the same identity against each snapshot's tag, so the controller's
//! decision here is what holds.

use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use crate::controller::{Context, Result};
use crate::crd::backup_policy::{StoreKind, StoreRef};
use crate::crd::common::Failure;
use crate::crd::store::ClusterBackupStore;

/// `None` when `namespace` may restore the restore points of `identity_namespace`'s
/// policies from the store; otherwise why not (`CrossNamespaceRestoreNotAllowed`).
pub(crate) async fn may_restore(
    ctx: &Context,
    namespace: &str,
    store: &StoreRef,
    identity_namespace: &str,
) -> Result<Option<Failure>> {
    if identity_namespace == namespace || store.kind == StoreKind::BackupStore {
        return Ok(None);
    }
    let spec = match ctx.caches.cluster_stores.get(&ObjectRef::new(&store.name)) {
        Some(s) => Some(s.spec.clone()),
        None => Api::<ClusterBackupStore>::all(ctx.client.clone())
            .get_opt(&store.name)
            .await?
            .map(|s| s.spec),
    };
    let allowed = spec.is_some_and(|s| s.allows_cross_namespace_restore(namespace));
    Ok((!allowed).then(|| Failure {
        reason: "CrossNamespaceRestoreNotAllowed".into(),
        message: format!(
            "ClusterBackupStore {:?} does not let namespace {namespace:?} restore namespace {identity_namespace:?}'s restore points (its crossNamespaceRestore does not list {namespace:?})",
            store.name
        ),
    }))
}

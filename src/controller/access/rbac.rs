//! The mover ServiceAccount of a namespace, and the RoleBindings that give it a role for
//! exactly one run: created when the run's mover that needs the API starts, removed when
//! that step ends. Movers that need no API (volumes, databases, retention, checks,
//! reports) run with no role and no token.
//!
//! The bindings point at ClusterRoles the chart installs; the controller never writes
//! Role rules itself, so it needs no more than `bind` on those ClusterRoles (least
//! privilege, no RBAC escalation).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use crate::controller::{Context, MANAGER, Result};
use crate::crd::labels;
use crate::jobs::{self, MAX_NAME};

/// What a run's mover may do through the API, beyond nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Read the kinds a manifests backup saves.
    ReadManifests,
    /// Read Secrets too (`sources.manifests.includeSecrets`).
    ReadSecrets,
    /// Create and change objects (a manifests restore).
    RestoreManifests,
}

impl Grant {
    fn role(self, ctx: &Context) -> &str {
        let c = &ctx.config;
        match self {
            Grant::ReadManifests => &c.mover_read_cluster_role,
            Grant::ReadSecrets => &c.mover_read_secrets_cluster_role,
            Grant::RestoreManifests => &c.mover_restore_cluster_role,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Grant::ReadManifests => "read",
            Grant::ReadSecrets => "read-secrets",
            Grant::RestoreManifests => "restore",
        }
    }
}

/// Name of the RoleBinding that gives `grant` to the movers of run `run`.
pub(crate) fn binding_name(run: &str, grant: Grant) -> String {
    jobs::name(&["lifeboat-mover", run, grant.suffix()], MAX_NAME)
}

fn mover_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::NAME.to_string(), "lifeboat".to_string()),
        (labels::COMPONENT.to_string(), "mover".to_string()),
    ])
}

/// The ServiceAccount movers run as in `ns` (no role of its own). Applied at most every
/// few minutes per namespace (someone may delete it).
pub(crate) async fn ensure_service_account(ctx: &Context, ns: &str) -> Result<()> {
    if !ctx.rbac_due(ns) {
        return Ok(());
    }
    let name = ctx.config.mover_service_account.clone();
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.into()),
            labels: Some(mover_labels()),
            ..ObjectMeta::default()
        },
        // Pods that need a token (manifests movers) ask for one; the rest get none.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&sa),
        )
        .await?;
    ctx.rbac_done(ns);
    Ok(())
}

/// Gives the movers of run `run` in `ns` the role of `grant`, by a RoleBinding of that
/// run (`owner`: the run object, when it lives in `ns`; `extra_labels` find it otherwise).
pub(crate) async fn bind(
    ctx: &Context,
    ns: &str,
    run: &str,
    grant: Grant,
    owner: Option<OwnerReference>,
    extra_labels: BTreeMap<String, String>,
) -> Result<()> {
    let name = binding_name(run, grant);
    let mut l = mover_labels();
    l.extend(extra_labels);
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.into()),
            labels: Some(l),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: grant.role(ctx).to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: ctx.config.mover_service_account.clone(),
            namespace: Some(ns.into()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(ctx.client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&binding),
        )
        .await?;
    Ok(())
}

/// Removes the RoleBindings of run `run` in `ns` (those that exist).
pub(crate) async fn unbind(ctx: &Context, ns: &str, run: &str, grants: &[Grant]) -> Result<()> {
    let api = Api::<RoleBinding>::namespaced(ctx.client.clone(), ns);
    for g in grants {
        match api
            .delete(&binding_name(run, *g), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

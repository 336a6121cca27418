//! The mover ServiceAccount of a namespace, and the RoleBindings that give it a role for
//! exactly one run: created when the run's mover that needs the API starts, removed when
//! that step ends. Movers that need no API (volumes, databases, retention, checks,
//! reports) run with no role and no token.
//!
//! The bindings point at ClusterRoles the chart installs; the controller never writes
//! Role rules itself, so it needs no more than `bind` on those ClusterRoles (least
//! privilege, no RBAC escalation).

use std::collections::BTreeMap;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::config::Config;
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

/// Name of the RoleBinding that gives the controller its rights in a drill sandbox.
pub(crate) const SANDBOX_BINDING: &str = "lifeboat-controller";

/// The RoleBinding that gives the controller its namespaced rights in drill sandbox
/// `sandbox`, when they are not cluster-wide (`--sandbox-cluster-role`). It goes with the
/// namespace.
pub(crate) fn sandbox_binding(config: &Config, sandbox: &str) -> Option<RoleBinding> {
    let b = config.sandbox_binding.as_ref()?;
    let mut l = mover_labels();
    l.insert(labels::COMPONENT.to_string(), "controller".to_string());
    Some(RoleBinding {
        metadata: ObjectMeta {
            name: Some(SANDBOX_BINDING.into()),
            namespace: Some(sandbox.into()),
            labels: Some(l),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: b.cluster_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: b.service_account.clone(),
            namespace: Some(config.namespace.clone()),
            ..Subject::default()
        }]),
    })
}

/// Binds the controller's namespaced rights in drill sandbox `sandbox` (see
/// [`sandbox_binding`]); nothing when they are cluster-wide. Created, never patched: the
/// chart grants `create` on RoleBindings cluster-wide for this (it cannot name a
/// namespace made at run time) and nothing else; once the binding exists, the rights it
/// gives cover the rest. A fresh binding takes the API server's authorizer a moment to
/// see: this waits (briefly) until it lets the controller write Secrets there, so that
/// the sandbox's first writes are not refused.
pub(crate) async fn bind_controller_in_sandbox(ctx: &Context, sandbox: &str) -> Result<()> {
    let Some(binding) = sandbox_binding(&ctx.config, sandbox) else {
        return Ok(());
    };
    let api = Api::<RoleBinding>::namespaced(ctx.client.clone(), sandbox);
    match api.create(&PostParams::default(), &binding).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(sandbox.into()),
                verb: Some("create".into()),
                resource: Some("secrets".into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let reviews = Api::<SelfSubjectAccessReview>::all(ctx.client.clone());
    for _ in 0..20 {
        let r = reviews.create(&PostParams::default(), &review).await?;
        if r.status.is_some_and(|s| s.allowed) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // Not seen yet: the writes that follow fail and are retried like any refusal.
    tracing::info!(%sandbox, "the sandbox binding is not effective yet");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxBinding;

    #[test]
    fn a_sandbox_binding_exists_only_when_the_controllers_rights_are_not_cluster_wide() {
        let mut config = Config::for_tests();
        assert!(sandbox_binding(&config, "drill-x").is_none());
        config.sandbox_binding = Some(SandboxBinding {
            cluster_role: "lb-controller-namespaced".into(),
            service_account: "lb-controller".into(),
        });
        let b = sandbox_binding(&config, "drill-x").expect("a binding");
        assert_eq!(b.metadata.namespace.as_deref(), Some("drill-x"));
        assert_eq!(b.role_ref.kind, "ClusterRole");
        assert_eq!(b.role_ref.name, "lb-controller-namespaced");
        // The controller's own ServiceAccount, in its own namespace: nobody else.
        let subjects = b.subjects.expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, "lb-controller");
        assert_eq!(subjects[0].namespace.as_deref(), Some("lifeboat-system"));
    }
}

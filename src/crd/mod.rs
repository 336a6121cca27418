//! API types of `lifeboat.dev/v1alpha1`: the CRDs generated from them, committed under
//! `crds/`. Types only: no client calls, no logic beyond defaults and small accessors.
//!
//! Bad specs are refused at admission where the CRD can say so: OpenAPI constraints and
//! CEL rules (`x-kubernetes-validations`, see `rules`), listed in docs/reference.md. What
//! only the controller can know (a missing Secret, a bucket, a cron expression, a time
//! zone) is reported as a condition; the controllers also keep their own checks of what
//! the rules now refuse, as defence in depth (objects stored before a rule existed, or a
//! CRD installed without the rules).

// NB: kube's `printcolumn(name = .., type_ = ..)` repeats argument names across
// columns, which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod backup;
pub mod backup_policy;
pub mod common;
pub mod dr_drill;
pub mod restore;
pub(crate) mod rules;
pub mod store;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use backup::Backup;
pub use backup_policy::BackupPolicy;
pub use dr_drill::{DRDrill, DrillRun};
pub use restore::Restore;
pub use store::{BackupStore, ClusterBackupStore};

/// API group of every Lifeboat kind.
pub const GROUP: &str = "lifeboat.dev";
/// API version served and stored.
pub const VERSION: &str = "v1alpha1";

/// Label keys and values Lifeboat puts on the objects it creates. Users and tools select
/// by them, so they are part of the API.
pub mod labels {
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of `MANAGED_BY` on everything Lifeboat creates.
    pub const MANAGER: &str = "lifeboat";
    /// The BackupPolicy an object belongs to.
    pub const POLICY: &str = "lifeboat.dev/policy";
    /// The Backup (run) an object belongs to.
    pub const BACKUP: &str = "lifeboat.dev/backup";
    /// The source (volume, database, manifests) a mover works on.
    pub const SOURCE: &str = "lifeboat.dev/source";
    /// What a Job does: `backup`, `maintenance`, `restore`, `check`.
    pub const JOB_TYPE: &str = "lifeboat.dev/job-type";
    /// Stable hash of a repository's location, on maintenance Jobs, so that only one
    /// exclusive job runs per repository across namespaces.
    pub const REPOSITORY: &str = "lifeboat.dev/repository";
    /// The Restore an object was created for (its name).
    pub const RESTORE: &str = "lifeboat.dev/restore";
    /// The namespace of that Restore (objects in a restore's target namespace may belong
    /// to a Restore elsewhere).
    pub const RESTORE_NAMESPACE: &str = "lifeboat.dev/restore-namespace";
    /// The UID of that Restore: what the controller selects and adopts by, so a new
    /// Restore of the same name never takes over an older one's objects.
    pub const RESTORE_UID: &str = "lifeboat.dev/restore-uid";
    /// The DRDrill an object belongs to (DrillRuns, and what their runs create).
    pub const DRILL: &str = "lifeboat.dev/drill";
    /// The DrillRun an object belongs to (its sandbox namespace, Restore, check and
    /// report Jobs).
    pub const DRILL_RUN: &str = "lifeboat.dev/drill-run";
    /// `true` on the sandbox namespaces of DR drills (what the sandbox sweep selects).
    pub const SANDBOX: &str = "lifeboat.dev/sandbox";
    /// On Lifeboat's pods in a drill sandbox that must reach the store: a value derived
    /// from the sandbox namespace's UID, which no restored object can know in advance.
    /// The sandbox's mover NetworkPolicy selects it.
    pub const SANDBOX_TOKEN: &str = "lifeboat.dev/sandbox-token";
    /// On the evidence objects in the controller's namespace: `signing-key` (the Secret),
    /// `public-key` (the ConfigMap everyone may read), `anchor` (a drill's chain head).
    pub const EVIDENCE: &str = "lifeboat.dev/evidence";
    /// On an anchor: the namespace of its drill.
    pub const DRILL_NAMESPACE: &str = "lifeboat.dev/drill-namespace";
}

/// Annotation keys Lifeboat puts on the objects it creates.
pub mod annotations {
    /// `NAMESPACE/NAME` of the DrillRun a sandbox namespace or check Job belongs to (labels
    /// cannot hold a `/`, and a label value may be a hash of a long name).
    pub const DRILL_RUN_REF: &str = "lifeboat.dev/drill-run-ref";
    /// UID of that DrillRun: a sandbox left by an earlier run of the same name is not
    /// mistaken for the current run's.
    pub const DRILL_RUN_UID: &str = "lifeboat.dev/drill-run-uid";
    /// `NAMESPACE/NAME` of the DRDrill an evidence anchor is the head of.
    pub const DRILL_REF: &str = "lifeboat.dev/drill-ref";
    /// UID of the run object (in another namespace) an object in the controller's
    /// namespace was made for: an owner reference cannot cross namespaces, so the run's
    /// clean-up finds and checks its objects by this.
    pub const OWNER_UID: &str = "lifeboat.dev/owner-uid";
    /// On a BackupPolicy: the `metadata.generation` whose retention may forget more than
    /// `retention.maxForgetPercent` (the mass-deletion breaker is acknowledged for it).
    pub const RETENTION_BREAKER_ACK: &str = "lifeboat.dev/retention-breaker-acknowledged";
    /// On a Backup or Restore: `"true"` asks the controller to stop the run (phase
    /// `Cancelled`). An annotation, not a spec field: the spec stays the immutable record
    /// of what was asked for, and a controller on CRDs of an older release still sees it.
    pub const CANCEL: &str = "lifeboat.dev/cancel";
    /// On a DRDrill: the name of its DrillRun to stop (outcome `Cancelled`). On the drill,
    /// not the run: editors may create and read DrillRuns but never change them.
    pub const CANCEL_RUN: &str = "lifeboat.dev/cancel-run";
}

/// Whether the object asks for its run to be cancelled ([`annotations::CANCEL`] is `"true"`).
pub fn cancel_requested(meta: &kube::core::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(annotations::CANCEL))
        .is_some_and(|v| v == "true")
}

/// Every CRD, in a stable order (the order of the files in `crds/`).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        BackupStore::crd(),
        ClusterBackupStore::crd(),
        BackupPolicy::crd(),
        Backup::crd(),
        Restore::crd(),
        DRDrill::crd(),
        DrillRun::crd(),
    ]
}

/// Renders one CRD as the YAML committed under `crds/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_saphyr::to_string(crd).expect("a CRD always serializes");
    format!("# Generated by `lifeboat crd`; do not edit. Source: src/crd/.\n---\n{body}")
}

/// Renders one CRD as the Helm chart template under `charts/lifeboat/templates/crds/`:
/// installed only with `crds.install`, and kept on `helm uninstall` so deleting the chart
/// never deletes users' policies or the record of their backups (STYLE §3).
pub fn crd_chart_template(crd: &CustomResourceDefinition) -> String {
    let mut crd = crd.clone();
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("helm.sh/resource-policy".into(), "keep".into());
    let body = serde_saphyr::to_string(&crd).expect("a CRD always serializes");
    format!(
        "{{{{- if .Values.crds.install }}}}\n# Generated by `lifeboat crd`; do not edit. Source: src/crd/.\n{body}{{{{- end }}}}\n"
    )
}

/// File name of a CRD under `crds/`: `<plural>.<group>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The committed YAML (crds/ and the chart's templates) must equal what the types
    /// generate. Regenerate with `LIFEBOAT_UPDATE_CRDS=1 cargo test -p lifeboat crd::`
    /// (or `lifeboat crd --out crds`).
    #[test]
    fn committed_crds_match_the_types() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let update = std::env::var_os("LIFEBOAT_UPDATE_CRDS").is_some();
        let mut stale = Vec::new();
        for crd in all_crds() {
            let outputs = [
                (root.join("crds"), crd_yaml(&crd)),
                (
                    root.join("charts/lifeboat/templates/crds"),
                    crd_chart_template(&crd),
                ),
            ];
            for (dir, want) in outputs {
                let path = dir.join(crd_file_name(&crd));
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &want).unwrap();
                    continue;
                }
                match std::fs::read_to_string(&path) {
                    Ok(have) if have == want => {}
                    _ => stale.push(path.display().to_string()),
                }
            }
        }
        assert!(
            stale.is_empty(),
            "CRDs out of date: {stale:?}; run LIFEBOAT_UPDATE_CRDS=1 cargo test -p lifeboat crd::"
        );
    }

    #[test]
    fn every_crd_is_in_the_lifeboat_category_and_has_a_status() {
        for crd in all_crds() {
            let names = &crd.spec.names;
            assert_eq!(
                names.categories.as_deref(),
                Some(&["lifeboat".to_string()][..])
            );
            assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
            let version = &crd.spec.versions[0];
            assert!(version.subresources.as_ref().unwrap().status.is_some());
        }
    }

    /// A `null` inside an `enum` list is rejected by the API server ("unknown object type
    /// nil"); `nullable: true` is the structural way to allow absence.
    #[test]
    fn no_enum_lists_null() {
        fn walk(path: &str, v: &serde_json::Value, bad: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::Array(e)) = m.get("enum")
                        && e.iter().any(|x| x.is_null())
                    {
                        bad.push(path.to_string());
                    }
                    for (k, x) in m {
                        walk(&format!("{path}.{k}"), x, bad);
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(path, x, bad)),
                _ => {}
            }
        }
        let mut bad = Vec::new();
        for crd in all_crds() {
            walk(
                &crd.spec.names.kind,
                &serde_json::to_value(&crd).unwrap(),
                &mut bad,
            );
        }
        assert!(bad.is_empty(), "enums listing null: {bad:?}");
    }

    /// `kubectl explain` shows field descriptions; a field without one is a doc bug.
    #[test]
    fn every_field_is_documented() {
        fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (name, schema) in props {
                    let p = format!("{path}.{name}");
                    // metadata and apimachinery types (conditions, selectors) are documented upstream
                    let foreign = p.ends_with(".metadata")
                        || p.contains(".conditions")
                        || p.contains("selector")
                        || p.contains("resources.");
                    // Upstream types carry their own generic description (e.g. "Time is a
                    // wrapper around time.Time..."), which says nothing about the field.
                    let generic = schema
                        .get("description")
                        .and_then(|d| d.as_str())
                        .is_some_and(|d| {
                            [
                                "Time is a wrapper",
                                "Quantity is a fixed-point",
                                "EnvVar represents",
                            ]
                            .iter()
                            .any(|g| d.starts_with(g))
                        });
                    if !foreign && (schema.get("description").is_none() || generic) {
                        missing.push(p.clone());
                    }
                    walk(&p, schema, missing);
                }
            }
            if let Some(items) = v.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let mut missing = Vec::new();
        for crd in all_crds() {
            let schema = serde_json::to_value(
                crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .unwrap()
                    .open_api_v3_schema
                    .as_ref()
                    .unwrap(),
            )
            .unwrap();
            walk(&crd.spec.names.kind, &schema, &mut missing);
        }
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:#?}"
        );
    }
}

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::crd::common::{S3CredentialsRef, SecretKeyRef};
use crate::crd::store::S3Spec;

fn spec(ns: Option<&str>) -> BackupStoreSpec {
    BackupStoreSpec {
        s3: S3Spec {
            bucket: "b".into(),
            credentials: Some(S3CredentialsRef {
                name: "s3".into(),
                namespace: ns.map(str::to_string),
                ..S3CredentialsRef::default()
            }),
            ..S3Spec::default()
        },
        repository_password: SecretKeyRef {
            name: "pw".into(),
            key: "password".into(),
            namespace: ns.map(str::to_string),
        },
        ..BackupStoreSpec::default()
    }
}

fn namespaced(spec: BackupStoreSpec) -> Store {
    Store {
        name: "s3".into(),
        scope: Scope::Namespaced("shop".into()),
        spec,
    }
}

fn cluster(spec: BackupStoreSpec) -> Store {
    Store {
        name: "shared".into(),
        scope: Scope::Cluster,
        spec,
    }
}

#[test]
fn a_namespaced_store_reads_secrets_from_its_own_namespace_only() {
    let config = Config::for_tests();
    assert_eq!(
        secret_namespaces(&namespaced(spec(None)), &config).unwrap(),
        vec!["shop"; 4]
    );
    assert!(check_rules(&namespaced(spec(Some("shop"))), &config).is_ok());
    let r = check_rules(&namespaced(spec(Some("kube-system"))), &config).unwrap_err();
    assert_eq!(r.reason, "SecretNamespaceNotAllowed");
    assert!(r.message.contains("kube-system"), "{}", r.message);
    // Every reference counts: the CA bundle alone naming another namespace is refused.
    let mut ca = spec(None);
    ca.s3.ca_bundle = Some(SecretKeyRef {
        name: "ca".into(),
        key: "ca.crt".into(),
        namespace: Some("kube-system".into()),
    });
    let r = check_rules(&namespaced(ca), &config).unwrap_err();
    assert_eq!(r.reason, "SecretNamespaceNotAllowed");
    assert!(r.message.starts_with("spec.s3.caBundle"), "{}", r.message);
}

#[test]
fn a_cluster_store_must_name_every_secrets_namespace() {
    let config = Config::for_tests();
    assert_eq!(
        secret_namespaces(&cluster(spec(Some("lifeboat-system"))), &config).unwrap(),
        vec!["lifeboat-system"; 4]
    );
    let r = check_rules(&cluster(spec(None)), &config).unwrap_err();
    assert_eq!(r.reason, "InvalidStore");
}

#[test]
fn ambient_credentials_only_for_cluster_stores_unless_the_installation_allows_them() {
    let mut config = Config::for_tests();
    let mut ambient = spec(None);
    ambient.s3.credentials = None;
    let r = check_rules(&namespaced(ambient.clone()), &config).unwrap_err();
    assert_eq!(r.reason, "AmbientCredentialsNotAllowed");
    let mut cluster_ambient = spec(Some("lifeboat-system"));
    cluster_ambient.s3.credentials = None;
    assert!(check_rules(&cluster(cluster_ambient), &config).is_ok());
    config.allow_ambient_credentials = true;
    assert!(check_rules(&namespaced(ambient), &config).is_ok());
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_cluster_store_allows_namespaces_by_name_or_by_label() {
    let mut s = ClusterBackupStoreSpec {
        allowed_namespaces: vec!["prod".into()],
        ..ClusterBackupStoreSpec::default()
    };
    assert!(allows(&s, "prod", None));
    assert!(!allows(&s, "dev", Some(&labels(&[("team", "a")]))));
    s.allowed_namespace_selector = Some(LabelSelector {
        match_labels: Some(labels(&[("lifeboat.dev/shared-store", "yes")])),
        ..LabelSelector::default()
    });
    assert!(allows(
        &s,
        "dev",
        Some(&labels(&[("lifeboat.dev/shared-store", "yes")]))
    ));
    assert!(!allows(
        &s,
        "dev",
        Some(&labels(&[("lifeboat.dev/shared-store", "no")]))
    ));
    assert!(!allows(&s, "dev", None), "labels unknown: not allowed");
    s.allowed_namespace_selector = Some(LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "team".into(),
            operator: "In".into(),
            values: Some(vec!["a".into(), "b".into()]),
        }]),
        ..LabelSelector::default()
    });
    assert!(allows(&s, "x", Some(&labels(&[("team", "b")]))));
    assert!(!allows(&s, "x", Some(&labels(&[("team", "c")]))));
}

#[test]
fn an_empty_or_invalid_selector_allows_nobody() {
    let mut s = ClusterBackupStoreSpec {
        allowed_namespace_selector: Some(LabelSelector::default()),
        ..ClusterBackupStoreSpec::default()
    };
    assert!(!allows(&s, "any", Some(&labels(&[("a", "b")]))));
    s.allowed_namespace_selector = Some(LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "team".into(),
            operator: "Sometimes".into(),
            values: None,
        }]),
        ..LabelSelector::default()
    });
    assert!(!allows(&s, "any", Some(&labels(&[("team", "a")]))));
    s.allowed_namespaces = vec!["*".into()];
    assert!(allows(&s, "any", None), "* in the list allows everyone");
}

#[test]
fn every_blocked_state_names_its_reason() {
    let reason = |s: StoreState| s.blocker("shared", "shop").map(|f| f.reason);
    assert_eq!(reason(StoreState::Ready), None);
    assert_eq!(
        reason(StoreState::NotAllowed).as_deref(),
        Some("StoreNotAllowed")
    );
    assert_eq!(
        reason(StoreState::Missing).as_deref(),
        Some("StoreNotFound")
    );
    assert_eq!(
        reason(StoreState::Refused {
            reason: "SecretNamespaceNotAllowed",
            message: "m".into()
        })
        .as_deref(),
        Some("SecretNamespaceNotAllowed")
    );
    assert_eq!(
        reason(StoreState::NotReady {
            reason: "BucketNotFound".into(),
            message: "m".into()
        })
        .as_deref(),
        Some("StoreNotReady")
    );
}

#[test]
fn store_secrets_never_print_their_values() {
    let mut s = StoreSecrets::default();
    s.0.insert(
        mirror_keys::PASSWORD.into(),
        ByteString(b"hunter2\n".to_vec()),
    );
    assert!(!format!("{s:?}").contains("hunter2"));
    assert_eq!(s.text(mirror_keys::PASSWORD).as_deref(), Some("hunter2"));
}

//! Unit tests of the restore mover's pure parts: the manifest transformation, kind
//! selection, apply order, the empty-volume rule and the row-count comparison.

use super::*;
use crate::db::Engine;

fn suppress() -> TransformOptions {
    TransformOptions {
        suppress_side_effects: true,
        scale_to_zero: false,
    }
}

fn applied(d: Result<Disposition, String>) -> Value {
    match d {
        Ok(Disposition::Apply(v)) => v,
        other => panic!("expected Apply, got {other:?}"),
    }
}

#[test]
fn the_namespace_is_rewritten_and_cluster_state_dropped() {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                     "ownerReferences": [{"kind": "X"}], "labels": {"app": "a"}},
        "data": {"k": "v"}
    });
    let v = applied(transform(cm, "shop-restored", &TransformOptions::default()));
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "shop-restored", "labels": {"app": "a"}},
            "data": {"k": "v"}
        })
    );
    // An object saved without a namespace gets the target's too.
    let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let v = applied(transform(bare, "t", &TransformOptions::default()));
    assert_eq!(v["metadata"]["namespace"], "t");
}

#[test]
fn side_effects_are_suppressed_only_when_asked() {
    let cron = json!({"apiVersion": "batch/v1beta1", "kind": "CronJob",
        "metadata": {"name": "report", "namespace": "shop"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {}}});
    let v = applied(transform(cron.clone(), "t", &suppress()));
    assert_eq!(v["spec"]["suspend"], true);
    let v = applied(transform(cron, "t", &TransformOptions::default()));
    assert!(v["spec"].get("suspend").is_none(), "left as saved");

    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "externalIPs": ["1.2.3.4"],
                 "selector": {"app": "web"},
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}});
    let v = applied(transform(svc.clone(), "t", &suppress()));
    assert_eq!(
        v["spec"],
        json!({"type": "ClusterIP", "selector": {"app": "web"},
               "ports": [{"port": 80, "targetPort": 8080}]})
    );
    // Not suppressed: still a NodePort Service; its fixed port only where it was saved
    // (a copy in another namespace would collide with the original's port).
    let v = applied(transform(svc.clone(), "shop", &TransformOptions::default()));
    assert_eq!(v["spec"]["type"], "NodePort");
    assert_eq!(v["spec"]["ports"][0]["nodePort"], 30080);
    let v = applied(transform(svc, "t", &TransformOptions::default()));
    assert_eq!(v["spec"]["type"], "NodePort");
    assert!(v["spec"]["ports"][0].get("nodePort").is_none());

    let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.9",
                 "loadBalancerSourceRanges": ["0.0.0.0/0"], "healthCheckNodePort": 31000,
                 "ports": [{"port": 443, "nodePort": 31443}]}});
    let v = applied(transform(lb, "t", &suppress()));
    assert_eq!(
        v["spec"],
        json!({"type": "ClusterIP", "ports": [{"port": 443}]})
    );

    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web"}, "spec": {}});
    assert!(matches!(
        transform(ing.clone(), "t", &suppress()),
        Ok(Disposition::Drop(_))
    ));
    applied(transform(ing, "t", &TransformOptions::default()));
}

#[test]
fn a_sandbox_gets_no_daemonsets_network_policies_or_disruption_budgets_and_jobs_wait() {
    for (api, kind, plural) in [
        ("apps/v1", "DaemonSet", "DaemonSets"),
        ("networking.k8s.io/v1", "NetworkPolicy", "NetworkPolicies"),
        ("policy/v1", "PodDisruptionBudget", "PodDisruptionBudgets"),
    ] {
        let o = json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "spec": {}});
        match transform(o.clone(), "t", &suppress()) {
            Ok(Disposition::Drop(why)) => assert!(why.starts_with(plural), "{why}"),
            other => panic!("{kind} not dropped: {other:?}"),
        }
        applied(transform(o, "t", &TransformOptions::default()));
    }
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"template": {}}});
    assert_eq!(
        applied(transform(job.clone(), "t", &suppress()))["spec"]["suspend"],
        true
    );
    assert!(
        applied(transform(job, "t", &TransformOptions::default()))["spec"]
            .get("suspend")
            .is_none()
    );
}

#[test]
fn scale_to_zero_touches_replicated_workloads_only() {
    let opts = TransformOptions {
        suppress_side_effects: false,
        scale_to_zero: true,
    };
    for kind in ["Deployment", "StatefulSet", "ReplicaSet"] {
        let o = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"},
            "spec": {"replicas": 3}});
        assert_eq!(
            applied(transform(o, "t", &opts))["spec"]["replicas"],
            0,
            "{kind}"
        );
    }
    let o = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
        "spec": {"replicas": 3}});
    assert_eq!(
        applied(transform(o, "t", &TransformOptions::default()))["spec"]["replicas"],
        3
    );
    // A custom resource that happens to be called Deployment is not ours to change.
    let o = json!({"apiVersion": "example.com/v1", "kind": "Deployment",
        "metadata": {"name": "w"}, "spec": {"replicas": 3}});
    assert_eq!(applied(transform(o, "t", &opts))["spec"]["replicas"], 3);
}

#[test]
fn into_another_namespace_a_role_binding_keeps_only_the_namespaces_own_accounts() {
    let rb = |subjects: serde_json::Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "rb", "namespace": "shop"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": subjects})
    };
    let mixed = rb(json!([
        {"kind": "ServiceAccount", "name": "app", "namespace": "shop"},
        {"kind": "ServiceAccount", "name": "mon", "namespace": "monitoring"},
        {"kind": "User", "name": "alice"},
        {"kind": "Group", "name": "shop-admins"}
    ]));
    let v = applied(transform(
        mixed.clone(),
        "shop-copy",
        &TransformOptions::default(),
    ));
    assert_eq!(
        v["subjects"],
        json!([{"kind": "ServiceAccount", "name": "app", "namespace": "shop-copy"}]),
        "foreign subjects (other namespaces' accounts, users, groups) are dropped"
    );
    // In its own namespace a binding comes back as it was saved.
    let same = applied(transform(mixed, "shop", &TransformOptions::default()));
    assert_eq!(same["subjects"].as_array().unwrap().len(), 4);
    // A binding left without subjects is not restored at all.
    let foreign = rb(json!([{"kind": "User", "name": "alice"}]));
    assert!(matches!(
        transform(foreign, "shop-copy", &TransformOptions::default()),
        Ok(Disposition::Drop(_))
    ));
}

#[test]
fn cluster_scoped_and_nameless_objects_are_refused() {
    for kind in [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
    ] {
        let o = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}});
        assert!(
            transform(o, "t", &TransformOptions::default()).is_err(),
            "{kind}"
        );
    }
    let o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
    assert!(transform(o, "t", &TransformOptions::default()).is_err());
    assert!(
        transform(
            json!({"metadata": {"name": "x"}}),
            "t",
            &TransformOptions::default()
        )
        .is_err()
    );
}

#[test]
fn kinds_select_by_kind_or_kind_and_group() {
    let w = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(kind_selected(&[], "Deployment.apps"));
    assert!(kind_selected(&w(&["Deployment"]), "Deployment.apps"));
    assert!(kind_selected(&w(&["deployment.apps"]), "Deployment.apps"));
    assert!(!kind_selected(
        &w(&["Deployment.example.com"]),
        "Deployment.apps"
    ));
    assert!(kind_selected(&w(&["ConfigMap"]), "ConfigMap"));
    assert!(!kind_selected(&w(&["ConfigMap"]), "Secret"));
}

#[test]
fn references_are_applied_before_workloads() {
    let mut kinds = vec![
        "Ingress",
        "Deployment",
        "Service",
        "ConfigMap",
        "CronJob",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "RoleBinding",
        "Widget",
    ];
    kinds.sort_by_key(|k| apply_rank(k));
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "PersistentVolumeClaim",
            "RoleBinding",
            "Service",
            "Widget",
            "Deployment",
            "CronJob",
            "Ingress"
        ]
    );
}

#[test]
fn only_an_empty_volume_or_our_own_retry_is_restored_into() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_eq!(volume_occupied(p, "abc").unwrap(), None);
    std::fs::create_dir(p.join("lost+found")).unwrap();
    assert_eq!(
        volume_occupied(p, "abc").unwrap(),
        None,
        "a file system's lost+found"
    );
    std::fs::write(p.join(VOLUME_MARKER), "abc\n").unwrap();
    assert_eq!(
        volume_occupied(p, "abc").unwrap(),
        None,
        "a retry of the same snapshot"
    );
    assert!(
        volume_occupied(p, "other").unwrap().is_some(),
        "an unfinished restore of another snapshot"
    );
    // what an interrupted attempt of the same snapshot wrote: the retry continues
    std::fs::write(p.join("db.sqlite"), "x").unwrap();
    assert_eq!(volume_occupied(p, "abc").unwrap(), None);
    let why = volume_occupied(p, "other").unwrap().unwrap();
    assert!(
        why.contains("db.sqlite") && why.contains("another snapshot"),
        "{why}"
    );
    std::fs::remove_file(p.join(VOLUME_MARKER)).unwrap();
    let why = volume_occupied(p, "abc").unwrap().unwrap();
    assert!(
        why.contains("db.sqlite") && why.contains("never overwrites"),
        "{why}"
    );
}

fn counts(v: &[(&str, &[(&str, u64)])]) -> BTreeMap<String, BTreeMap<String, u64>> {
    v.iter()
        .map(|(db, t)| {
            (
                db.to_string(),
                t.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            )
        })
        .collect()
}

#[test]
fn row_counts_are_compared_table_by_table() {
    let backup = counts(&[("app", &[("public.a", 3), ("public.b", 0)])]);
    assert!(count_mismatches(&backup, &backup).is_empty());
    let restored = counts(&[("app", &[("public.a", 2), ("public.c", 1)])]);
    assert_eq!(
        count_mismatches(&restored, &backup),
        [
            "app.public.a: backup 3, restored 2",
            "app.public.b: backup 0, restored none",
            "app.public.c: backup none, restored 1",
        ]
    );
}

#[test]
fn restore_targets_follow_the_dump_scope() {
    let mut meta = DumpMetadata {
        format: db::METADATA_FORMAT.into(),
        engine: Engine::Postgres,
        server_version: "15.4".into(),
        scope: "app".into(),
        dump_file: "dump/app.pgdump".into(),
        dump_format: "pg_dump-custom".into(),
        dump_command: vec![],
        row_counts: counts(&[("app", &[("public.t", 5)])]),
        row_counts_method: db::CountMethod::ExportedSnapshot,
        dump_bytes: 1,
        started_at: Timestamp::UNIX_EPOCH,
        finished_at: Timestamp::UNIX_EPOCH,
    };
    let t = restore_targets(&meta, None);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, "app");
    assert_eq!(t[0].1["public.t"], 5);
    let t = restore_targets(&meta, Some("app_copy"));
    assert_eq!(
        (t[0].0.as_str(), t[0].1["public.t"]),
        ("app_copy", 5),
        "renamed target, the dump's counts"
    );
    meta.scope = "all".into();
    meta.row_counts = counts(&[("a", &[]), ("b", &[("public.x", 1)])]);
    let names: Vec<_> = restore_targets(&meta, Some("ignored"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

fn tagged(tags: &[&str]) -> crate::repo::SnapshotInfo {
    serde_json::from_value(serde_json::json!({
        "id": "ab".repeat(32), "short_id": "abababab", "time": "2026-12-07T10:00:00+00:00",
        "hostname": "shop", "paths": ["/data"], "tags": tags, "tree": "cd".repeat(32),
    }))
    .unwrap()
}

#[test]
fn a_restore_opens_only_snapshots_of_its_restore_points_policy() {
    use crate::jobs::mover::command::NamespacedName;
    let own = NamespacedName::new("shop", "app");
    let mine = tagged(&["lifeboat", "policy=shop/app", "source=volume/data"]);
    assert!(super::of_policy(&mine, &own).is_ok());
    // Another namespace's snapshot in a shared repository, read from a forged record.
    let theirs = tagged(&["lifeboat", "policy=bank/ledger", "source=volume/data"]);
    let e = super::of_policy(&theirs, &own).unwrap_err();
    assert_eq!(e.category(), "SnapshotNotAllowed");
    assert!(
        e.to_string().contains("policy bank/ledger, not shop/app"),
        "{e}"
    );
    let untagged = tagged(&["manual"]);
    assert_eq!(
        super::of_policy(&untagged, &own).unwrap_err().category(),
        "SnapshotNotAllowed"
    );
}

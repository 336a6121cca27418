//! Admission of Lifeboat's kinds by the real API server (issue 15): every CEL rule of the
//! CRDs (src/crd/rules.rs, the tables in docs/reference.md) refuses a violation applied
//! with `kubectl apply` by a namespace editor (a ServiceAccount bound to the built-in
//! `edit` role, into which the chart aggregates Lifeboat's kinds), with the field's path
//! and a message naming it; a valid object with every field set is accepted; each
//! transition rule refuses a spec update while metadata edits and status writes still
//! work. ClusterBackupStores are cluster-scoped, so the cluster administrator applies
//! them; editors may create DrillRuns but never update them (RBAC), so the administrator
//! makes the DrillRun update the rule refuses.
//!
//! `every_rule_has_a_case` (no cluster needed) proves the case tables cover every rule
//! the CRDs carry: a new rule without a case fails it.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use common::env;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use lifeboat_e2e::testing::{self, TestNs, wait_for};
use serde_json::{Value, json};

/// One violation: edits to the kind's valid object (JSON pointer, new value or `None` to
/// remove), and what the refusal must say: the path the API server reports (`at`, list
/// indices included) and a fragment of the rule's message (`says`).
struct Case {
    at: &'static str,
    says: &'static str,
    edits: Vec<(&'static str, Option<Value>)>,
}

fn case(at: &'static str, says: &'static str, edits: Vec<(&'static str, Value)>) -> Case {
    Case {
        at,
        says,
        edits: edits.into_iter().map(|(p, v)| (p, Some(v))).collect(),
    }
}

fn removing(mut c: Case, pointers: &[&'static str]) -> Case {
    c.edits.extend(pointers.iter().map(|p| (*p, None)));
    c
}

/// Everything a kind's test needs: the valid object, the violations of its ordinary
/// rules, and the spec change its transition rule refuses (if it has one).
struct Kind {
    kind: &'static str,
    valid: Value,
    cases: Vec<Case>,
    transition: Option<Case>,
}

const API: &str = "lifeboat.dev/v1alpha1";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn backup_store() -> Kind {
    Kind {
        kind: "BackupStore",
        valid: json!({"apiVersion": API, "kind": "BackupStore", "metadata": {"name": "valid"},
            "spec": {
                // Port 9 (discard) refuses at once: the controller's probe fails fast.
                "s3": {"endpoint": "https://127.0.0.1:9", "bucket": "b", "prefix": "p", "region": "eu-1",
                       "pathStyle": true, "checksumMode": "WhenRequired",
                       "credentials": {"name": "c", "accessKeyIdKey": "a", "secretAccessKeyKey": "s",
                                       "sessionTokenKey": "t"},
                       "caBundle": {"name": "ca", "key": "ca.pem"}},
                "repositoryPassword": {"name": "p", "key": "k"},
                "initialize": "Never"}}),
        cases: vec![
            case(
                "spec.repositoryPassword.namespace",
                "repositoryPassword.namespace must not be set in a BackupStore",
                vec![("/spec/repositoryPassword/namespace", json!("other"))],
            ),
            case(
                "spec.s3.credentials.namespace",
                "s3.credentials.namespace must not be set in a BackupStore",
                vec![("/spec/s3/credentials/namespace", json!("other"))],
            ),
            case(
                "spec.s3.caBundle.namespace",
                "s3.caBundle.namespace must not be set in a BackupStore",
                vec![("/spec/s3/caBundle/namespace", json!("other"))],
            ),
            case(
                "spec.s3.endpoint",
                "endpoint must be an http:// or https:// URL",
                vec![("/spec/s3/endpoint", json!("ftp://s3.example.com"))],
            ),
            case(
                "spec.s3.endpoint",
                "endpoint must be an http:// or https:// URL",
                vec![("/spec/s3/endpoint", json!("s3.example.com"))],
            ),
        ],
        transition: None,
    }
}

fn cluster_backup_store() -> Kind {
    let mut store = backup_store().valid;
    store["kind"] = "ClusterBackupStore".into();
    store["spec"]["repositoryPassword"]["namespace"] = "lifeboat-secrets".into();
    store["spec"]["s3"]["credentials"]["namespace"] = "lifeboat-secrets".into();
    store["spec"]["s3"]["caBundle"]["namespace"] = "lifeboat-secrets".into();
    store["spec"]["allowedNamespaces"] = json!(["shop", "*"]);
    let missing = |at, says, pointer| removing(case(at, says, vec![]), &[pointer]);
    Kind {
        kind: "ClusterBackupStore",
        valid: store,
        cases: vec![
            missing(
                "spec.repositoryPassword.namespace",
                "repositoryPassword.namespace is required in a ClusterBackupStore",
                "/spec/repositoryPassword/namespace",
            ),
            missing(
                "spec.s3.credentials.namespace",
                "s3.credentials.namespace is required in a ClusterBackupStore",
                "/spec/s3/credentials/namespace",
            ),
            missing(
                "spec.s3.caBundle.namespace",
                "s3.caBundle.namespace is required in a ClusterBackupStore",
                "/spec/s3/caBundle/namespace",
            ),
            case(
                "spec.s3.caBundle.namespace",
                "s3.caBundle.namespace is required in a ClusterBackupStore",
                vec![("/spec/s3/caBundle/namespace", json!(""))],
            ),
            case(
                "spec.s3.endpoint",
                "endpoint must be an http:// or https:// URL",
                vec![("/spec/s3/endpoint", json!("http://"))],
            ),
        ],
        transition: None,
    }
}

fn backup_policy() -> Kind {
    let keep = |field: &'static str, at: &'static str, says: &'static str| {
        case(at, says, vec![(field, json!(0))])
    };
    Kind {
        kind: "BackupPolicy",
        valid: json!({"apiVersion": API, "kind": "BackupPolicy", "metadata": {"name": "valid"},
            "spec": {
                "storeRef": {"kind": "BackupStore", "name": "s3"},
                // Suspended: the operator never starts a run for these objects.
                "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Berlin", "jitter": "5m", "suspend": true},
                "sources": {
                    "volumes": [{"pvcName": "data", "copyMethod": "Direct", "exclude": ["*.tmp"]},
                                {"selector": {"matchLabels": {"app": "shop"}}, "copyMethod": "Snapshot"}],
                    "databases": [{"name": "pg", "engine": "postgres", "host": "pg.shop.svc", "port": 5432,
                                   "database": "shop", "credentials": {"name": "pg-login"}},
                                  {"name": "my", "engine": "mysql", "host": "my.shop.svc",
                                   "credentials": {"name": "my-login"}}],
                    "manifests": {"kinds": ["Deployment"], "includeSecrets": false}},
                "retention": {"keepLast": 3, "keepHourly": 24, "keepDaily": 7, "keepWeekly": 4,
                              "keepMonthly": 12, "keepYearly": 2},
                "objectives": {"rpo": "1h"},
                "concurrencyPolicy": "Forbid",
                "successfulBackupsHistoryLimit": 1,
                "failedBackupsHistoryLimit": 0,
                "deletionPolicy": "Retain",
                "mover": {"activeDeadline": "6h", "backoffLimit": 0}}}),
        cases: vec![
            case(
                "spec.retention",
                "retention must set at least one of keepLast",
                vec![("/spec/retention", json!({}))],
            ),
            keep(
                "/spec/retention/keepLast",
                "spec.retention.keepLast",
                "keepLast must be at least 1",
            ),
            keep(
                "/spec/retention/keepHourly",
                "spec.retention.keepHourly",
                "keepHourly must be at least 1",
            ),
            keep(
                "/spec/retention/keepDaily",
                "spec.retention.keepDaily",
                "keepDaily must be at least 1",
            ),
            keep(
                "/spec/retention/keepWeekly",
                "spec.retention.keepWeekly",
                "keepWeekly must be at least 1",
            ),
            keep(
                "/spec/retention/keepMonthly",
                "spec.retention.keepMonthly",
                "keepMonthly must be at least 1",
            ),
            keep(
                "/spec/retention/keepYearly",
                "spec.retention.keepYearly",
                "keepYearly must be at least 1",
            ),
            case(
                "spec.sources",
                "sources must name at least one of volumes, databases and manifests",
                vec![("/spec/sources", json!({"volumes": []}))],
            ),
            case(
                "spec.sources.volumes[0]",
                "set exactly one of pvcName and selector",
                vec![(
                    "/spec/sources/volumes/0/selector",
                    json!({"matchLabels": {"a": "b"}}),
                )],
            ),
            case(
                "spec.sources.volumes[1]",
                "set exactly one of pvcName and selector",
                vec![("/spec/sources/volumes/1", json!({"copyMethod": "Direct"}))],
            ),
            case(
                "spec.sources.databases",
                "databases: every name must be unique",
                vec![("/spec/sources/databases/1/name", json!("pg"))],
            ),
            case(
                "spec.sources.databases[1].host",
                "host must not be empty",
                vec![("/spec/sources/databases/1/host", json!("  "))],
            ),
            case(
                "spec.sources.databases[0].port",
                "port must be between 1 and 65535",
                vec![("/spec/sources/databases/0/port", json!(0))],
            ),
            case(
                "spec.objectives.rpo",
                "rpo must be a positive duration",
                vec![("/spec/objectives/rpo", json!("0s"))],
            ),
            case(
                "spec.mover.activeDeadline",
                "activeDeadline must be a positive duration",
                vec![("/spec/mover/activeDeadline", json!("0h0m"))],
            ),
            case(
                "spec.mover.backoffLimit",
                "backoffLimit must be at least 0",
                vec![("/spec/mover/backoffLimit", json!(-1))],
            ),
            case(
                "spec.successfulBackupsHistoryLimit",
                "successfulBackupsHistoryLimit must be at least 1",
                vec![("/spec/successfulBackupsHistoryLimit", json!(0))],
            ),
        ],
        transition: Some(case(
            "spec.storeRef",
            "storeRef is immutable",
            vec![("/spec/storeRef/name", json!("elsewhere"))],
        )),
    }
}

fn backup() -> Kind {
    Kind {
        kind: "Backup",
        valid: json!({"apiVersion": API, "kind": "Backup", "metadata": {"name": "valid"},
            "spec": {"policyRef": {"name": "shop"}, "trigger": "Manual",
                     "scheduledTime": "2026-01-01T03:00:00Z"}}),
        cases: vec![],
        transition: Some(case(
            "spec",
            "spec is immutable: a Backup is the record of one run",
            vec![("/spec/policyRef/name", json!("other"))],
        )),
    }
}

fn restore() -> Kind {
    Kind {
        kind: "Restore",
        valid: json!({"apiVersion": API, "kind": "Restore", "metadata": {"name": "valid"},
            "spec": {
                "source": {"policyRef": {"name": "shop"}, "pointInTime": "2026-01-31T23:00:00+01:00"},
                "volumes": {"include": ["data"], "rename": {"data": "data-restored"},
                            "storageClassName": "fast"},
                "databases": [{"source": "pg", "target": {"host": "pg.shop.svc", "port": 5432,
                                "database": "shop2", "credentials": {"name": "pg-login"},
                                "createDatabase": true}},
                              {"source": "my", "ephemeral": {"image": "mariadb:10.11",
                                "startupTimeout": "5m"}}],
                "manifests": {"kinds": ["ConfigMap"], "suppressSideEffects": true, "scaleToZero": true}}}),
        cases: vec![
            case(
                "spec.source",
                "source: set exactly one of backupRef and policyRef",
                vec![("/spec/source/backupRef", json!({"name": "b"}))],
            ),
            removing(
                case(
                    "spec.source",
                    "source: set exactly one of backupRef and policyRef",
                    vec![],
                ),
                &["/spec/source/policyRef", "/spec/source/pointInTime"],
            ),
            case(
                "spec.source.pointInTime",
                "source.pointInTime needs policyRef",
                vec![(
                    "/spec/source",
                    json!({"backupRef": {"name": "b"}, "pointInTime": "2026-01-31T23:00:00Z"}),
                )],
            ),
            case(
                "spec.source.pointInTime",
                "pointInTime must be an RFC 3339 time",
                vec![("/spec/source/pointInTime", json!("yesterday"))],
            ),
            case(
                "spec.source.pointInTime",
                "pointInTime must be an RFC 3339 time",
                vec![("/spec/source/pointInTime", json!("2026-02-30T00:00:00Z"))],
            ),
            case(
                "spec.source.pointInTime",
                "pointInTime must be an RFC 3339 time",
                vec![("/spec/source/pointInTime", json!("2026-01-31T23:00:00"))],
            ),
            case(
                "spec.targetNamespace",
                "targetNamespace must be a namespace name",
                vec![("/spec/targetNamespace", json!("Shop_Copy"))],
            ),
            case(
                "spec.databases",
                "databases: every source must be unique",
                vec![("/spec/databases/1/source", json!("pg"))],
            ),
            case(
                "spec.databases[0]",
                "databases[]: set exactly one of target and ephemeral",
                vec![("/spec/databases/0/ephemeral", json!({}))],
            ),
            removing(
                case(
                    "spec.databases[1]",
                    "databases[]: set exactly one of target and ephemeral",
                    vec![],
                ),
                &["/spec/databases/1/ephemeral"],
            ),
            case(
                "spec.databases[0].target.host",
                "host must not be empty",
                vec![("/spec/databases/0/target/host", json!(""))],
            ),
            case(
                "spec.databases[0].target.port",
                "port must be between 1 and 65535",
                vec![("/spec/databases/0/target/port", json!(0))],
            ),
            case(
                "spec.databases[1].ephemeral.startupTimeout",
                "startupTimeout must be a positive duration",
                vec![("/spec/databases/1/ephemeral/startupTimeout", json!("0s"))],
            ),
        ],
        transition: Some(case(
            "spec",
            "spec is immutable: a Restore is the record of one recovery",
            vec![("/spec/source/pointInTime", json!("2026-01-30T23:00:00Z"))],
        )),
    }
}

fn drill() -> Kind {
    let sql = |q: &str, expect: Value| json!({"database": "pg", "query": q, "expect": expect});
    Kind {
        kind: "DRDrill",
        valid: json!({"apiVersion": API, "kind": "DRDrill", "metadata": {"name": "valid"},
            "spec": {
                "policyRef": {"name": "shop"},
                "schedule": {"cron": "0 4 * * 0", "suspend": true},
                "restorePoint": {"strategy": "PointInTime", "time": "2026-01-31T23:00:00.5Z"},
                "sandbox": {"namespacePrefix": "dr-", "ttl": "1h", "keepOnFailure": true,
                            "resourceQuota": {"cpu": "4", "memory": "8Gi", "pods": 20},
                            "networkPolicy": "DenyAll"},
                "restore": {"volumes": true, "manifests": true,
                            "databases": [{"source": "pg", "server": {"image": "postgres:15", "startupTimeout": "5m"}},
                                          {"source": "my"}]},
                "checks": [
                    {"name": "rows", "sql": sql("select count(*) from orders", json!({"atLeast": "1000"})), "timeout": "2m"},
                    {"name": "same", "sql": {"database": "pg", "matchesBackup": true}},
                    {"name": "one", "sql": sql("select 1", json!({"equals": "1"}))},
                    {"name": "few", "sql": sql("select 1", json!({"atMost": "1.5e3"}))},
                    {"name": "files", "files": {"volume": "data", "exist": ["a/b"],
                                                "checksums": [{"path": "a/b", "sha256": SHA}, {"path": "c"}]}},
                    {"name": "cmd", "command": {"image": "busybox", "command": ["sh"], "args": ["-c", "true"],
                                                "volumes": ["data"]}},
                    {"name": "web", "http": {"url": "http://web:8080/healthz", "expectStatus": 204}},
                    {"name": "fresh", "freshness": {"database": "pg", "query": "select max(created_at) from orders"}}],
                "objectives": {"rto": "30m", "rpo": "1h", "rtoWindow": 3},
                "historyLimit": 10, "runDeadline": "2h", "overdueAfter": "14d"}}),
        cases: vec![
            removing(
                case(
                    "spec.restorePoint",
                    "restorePoint.time is required with strategy PointInTime",
                    vec![],
                ),
                &["/spec/restorePoint/time"],
            ),
            case(
                "spec.restorePoint",
                "restorePoint.time is required with strategy PointInTime and only used with it",
                vec![("/spec/restorePoint/strategy", json!("Latest"))],
            ),
            case(
                "spec.restorePoint.time",
                "time must be an RFC 3339 time",
                vec![("/spec/restorePoint/time", json!("2026-13-01T00:00:00Z"))],
            ),
            case(
                "spec.sandbox.namespacePrefix",
                "namespacePrefix must be 1-20 lowercase letters",
                vec![("/spec/sandbox/namespacePrefix", json!("-dr"))],
            ),
            case(
                "spec.sandbox.ttl",
                "ttl must be a positive duration",
                vec![("/spec/sandbox/ttl", json!("0s"))],
            ),
            case(
                "spec.sandbox.resourceQuota",
                "resourceQuota: every limit must be a positive quantity",
                vec![("/spec/sandbox/resourceQuota/pods", json!(0))],
            ),
            case(
                "spec.sandbox.resourceQuota",
                "resourceQuota: every limit must be a positive quantity",
                vec![("/spec/sandbox/resourceQuota/memory", json!("lots"))],
            ),
            case(
                "spec.restore.databases",
                "databases: every source must be unique",
                vec![("/spec/restore/databases/1/source", json!("pg"))],
            ),
            case(
                "spec.restore.databases[0].server.startupTimeout",
                "startupTimeout must be a positive duration",
                vec![(
                    "/spec/restore/databases/0/server/startupTimeout",
                    json!("0m"),
                )],
            ),
            case(
                "spec.checks",
                "checks: every name must be unique",
                vec![("/spec/checks/1/name", json!("rows"))],
            ),
            case(
                "spec.checks[6]",
                "checks[]: set exactly one of sql, files, command, http and freshness",
                vec![("/spec/checks/6/command", json!({"image": "busybox"}))],
            ),
            case(
                "spec.checks[0].timeout",
                "timeout must be a positive duration",
                vec![("/spec/checks/0/timeout", json!("0s"))],
            ),
            case(
                "spec.checks[0].sql",
                "sql: set either query (with expect) or matchesBackup",
                vec![("/spec/checks/0/sql/matchesBackup", json!(true))],
            ),
            case(
                "spec.checks[1].sql.expect",
                "sql.expect goes with query",
                vec![("/spec/checks/1/sql/expect", json!({"equals": "1"}))],
            ),
            case(
                "spec.checks[0].sql.expect",
                "expect: set exactly one of equals, atLeast and atMost",
                vec![("/spec/checks/0/sql/expect/equals", json!("1000"))],
            ),
            case(
                "spec.checks[0].sql.expect.atLeast",
                "atLeast must be a number",
                vec![("/spec/checks/0/sql/expect/atLeast", json!("many"))],
            ),
            case(
                "spec.checks[3].sql.expect.atMost",
                "atMost must be a number",
                vec![("/spec/checks/3/sql/expect/atMost", json!("1,5"))],
            ),
            case(
                "spec.checks[4].files",
                "files: list at least one path under exist or checksums",
                vec![("/spec/checks/4/files", json!({"volume": "data"}))],
            ),
            case(
                "spec.checks[4].files.checksums[0].sha256",
                "sha256 must be 64 hexadecimal digits",
                vec![("/spec/checks/4/files/checksums/0/sha256", json!("abc"))],
            ),
            case(
                "spec.checks[6].http.url",
                "url must be an http:// URL with a host",
                vec![("/spec/checks/6/http/url", json!("https://web:8443/"))],
            ),
            case(
                "spec.checks[6].http.expectStatus",
                "expectStatus must be an HTTP status",
                vec![("/spec/checks/6/http/expectStatus", json!(600))],
            ),
            case(
                "spec.objectives.rto",
                "rto must be a positive duration",
                vec![("/spec/objectives/rto", json!("0m"))],
            ),
            case(
                "spec.objectives.rpo",
                "rpo must be a positive duration",
                vec![("/spec/objectives/rpo", json!("0.0h"))],
            ),
            case(
                "spec.objectives.rtoWindow",
                "rtoWindow must be at least 1",
                vec![("/spec/objectives/rtoWindow", json!(0))],
            ),
            case(
                "spec.historyLimit",
                "historyLimit must be at least 1",
                vec![("/spec/historyLimit", json!(0))],
            ),
            case(
                "spec.runDeadline",
                "runDeadline must be a positive duration",
                vec![("/spec/runDeadline", json!("0s"))],
            ),
            case(
                "spec.overdueAfter",
                "overdueAfter must be a positive duration",
                vec![("/spec/overdueAfter", json!("0d"))],
            ),
        ],
        transition: Some(case(
            "spec.policyRef",
            "policyRef is immutable",
            vec![("/spec/policyRef/name", json!("other"))],
        )),
    }
}

fn drill_run() -> Kind {
    Kind {
        kind: "DrillRun",
        valid: json!({"apiVersion": API, "kind": "DrillRun", "metadata": {"name": "valid"},
            "spec": {"drillRef": {"name": "weekly"}, "trigger": "Manual"}}),
        cases: vec![],
        transition: Some(case(
            "spec",
            "spec is immutable: a DrillRun is the record of one run",
            vec![("/spec/drillRef/name", json!("other"))],
        )),
    }
}

/// `obj` with the case's edits applied (each pointer's parent must exist).
fn edited(mut obj: Value, c: &Case) -> Value {
    for (pointer, value) in &c.edits {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        let parent = obj
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{pointer}: no parent"));
        match (parent, value) {
            (Value::Object(m), Some(v)) => {
                m.insert(key.to_string(), v.clone());
            }
            (Value::Object(m), None) => {
                m.remove(key);
            }
            (Value::Array(a), Some(v)) => a[key.parse::<usize>().expect("an index")] = v.clone(),
            (Value::Array(a), None) => {
                a.remove(key.parse::<usize>().expect("an index"));
            }
            _ => panic!("{pointer}: parent is neither object nor list"),
        }
    }
    obj
}

/// `kubectl apply -f -` of one object as the identity of `kubeconfig`; `Ok(())` or the
/// refusal's text.
fn kubectl_apply(
    kubeconfig: &str,
    ns: Option<&str>,
    obj: &Value,
) -> anyhow::Result<Result<(), String>> {
    let mut cmd = Command::new("kubectl");
    cmd.args(["--kubeconfig", kubeconfig]);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "running kubectl (source e2e/.local/env.sh: it puts the venv's kubectl on PATH)",
        )?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(&serde_json::to_vec(obj)?)?;
    let out = child.wait_with_output()?;
    Ok(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// `kubectl patch --subresource=status` as the administrator: the controller's kind of
/// write. Every status has `observedGeneration`.
fn status_write(kind: &str, ns: Option<&str>, name: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("kubectl");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let out = cmd
        .args([
            "patch",
            &format!("{}.lifeboat.dev", kind.to_lowercase()),
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":42}}"#,
        ])
        .env("KUBECONFIG", env("KUBECONFIG"))
        .output()?;
    ensure!(
        out.status.success(),
        "status write of {kind}/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Whether a refusal is exactly the case's: one error, at its path, with its message.
fn refused_as(err: &str, c: &Case) -> Result<(), String> {
    let one = !err.contains("\n* ");
    let at = err.contains(&format!("{}: ", c.at));
    if one && at && err.contains(c.says) {
        Ok(())
    } else {
        Err(format!(
            "want one error at {} saying {:?}; got: {}",
            c.at,
            c.says,
            err.trim()
        ))
    }
}

/// A namespace with a ServiceAccount bound to the built-in `edit` role, and its
/// kubeconfig (a TokenRequest token: a real identity to RBAC and admission).
struct Editor {
    ns: TestNs,
    kubeconfig: tempfile::NamedTempFile,
}

impl Editor {
    async fn create(prefix: &str) -> anyhow::Result<Self> {
        let ns = TestNs::create(prefix).await?;
        let sas: Api<ServiceAccount> = ns.api();
        sas.create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "editor"}}))?,
        )
        .await?;
        let admin = env("KUBECONFIG");
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "editor-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": ns.name}]});
        kubectl_apply(&admin, Some(&ns.name), &binding)?.map_err(anyhow::Error::msg)?;
        let kubeconfig =
            testing::kubeconfig_for_service_account(&ns.client, &ns.name, "editor").await?;
        let path = kubeconfig.path().to_str().unwrap().to_string();
        let ns_name = ns.name.clone();
        // The aggregated role is the chart's (e2e/install-operator installs it), and RBAC
        // takes a moment to see a new binding.
        wait_for(
            "the editor's rights on lifeboat kinds (is the chart installed?)",
            Duration::from_secs(30),
            || {
                let (path, ns) = (path.clone(), ns_name.clone());
                async move {
                    let ok = Command::new("kubectl")
                        .args(["--kubeconfig", &path, "-n", &ns, "auth", "can-i", "create"])
                        .arg("backuppolicies.lifeboat.dev")
                        .output()?
                        .status
                        .success();
                    Ok(ok.then_some(()))
                }
            },
        )
        .await?;
        Ok(Editor { ns, kubeconfig })
    }

    fn path(&self) -> String {
        self.kubeconfig.path().to_str().unwrap().to_string()
    }
}

/// Applies the valid object and every case as `applier`; for a kind with a transition
/// rule, creates a record, refuses the spec change (as `updater`) and shows that a
/// metadata edit and a status write still go through. Collects every mismatch before
/// failing, so one run reports them all.
async fn exercise(
    k: Kind,
    applier: &str,
    updater: &str,
    ns: Option<&str>,
    suffix: &str,
) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    let named = |mut obj: Value, name: &str| {
        obj["metadata"]["name"] = format!("{name}{suffix}").into();
        obj
    };
    if let Err(e) = kubectl_apply(applier, ns, &named(k.valid.clone(), "valid"))? {
        bail!("{}: the valid object was refused: {e}", k.kind);
    }
    for (i, c) in k.cases.iter().enumerate() {
        let obj = named(edited(k.valid.clone(), c), &format!("bad-{i}"));
        match kubectl_apply(applier, ns, &obj)? {
            Ok(()) => wrong.push(format!("{} case {i} ({}): accepted", k.kind, c.at)),
            Err(e) => {
                if let Err(m) = refused_as(&e, c) {
                    wrong.push(format!("{} case {i}: {m}", k.kind));
                }
            }
        }
    }
    if let Some(t) = &k.transition {
        let record = named(k.valid.clone(), "record");
        let name = record["metadata"]["name"].as_str().unwrap().to_string();
        kubectl_apply(applier, ns, &record)?.map_err(anyhow::Error::msg)?;
        match kubectl_apply(updater, ns, &edited(record.clone(), t))? {
            Ok(()) => wrong.push(format!("{}: spec change accepted", k.kind)),
            Err(e) => {
                if let Err(m) = refused_as(&e, t) {
                    wrong.push(format!("{} transition: {m}", k.kind));
                }
            }
        }
        let mut labelled = record.clone();
        labelled["metadata"]["labels"] = json!({"reviewed": "yes"});
        if let Err(e) = kubectl_apply(updater, ns, &labelled)? {
            wrong.push(format!("{}: a label edit was refused: {e}", k.kind));
        }
        status_write(k.kind, ns, &name)?;
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

async fn as_editor(prefix: &str, k: Kind) -> anyhow::Result<()> {
    let ed = Editor::create(prefix).await?;
    let path = ed.path();
    exercise(k, &path, &path, Some(&ed.ns.name), "").await?;
    ed.ns.delete().await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn backup_store_rules() -> anyhow::Result<()> {
    as_editor("adm-store", backup_store()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn cluster_backup_store_rules() -> anyhow::Result<()> {
    // Cluster-scoped: the cluster administrator applies it (editors cannot); names carry
    // a random suffix and are removed after.
    let suffix = format!("-{:08x}", rand::random::<u32>());
    let admin = env("KUBECONFIG");
    let res = exercise(cluster_backup_store(), &admin, &admin, None, &suffix).await;
    let out = Command::new("kubectl")
        .args([
            "delete",
            "clusterbackupstores.lifeboat.dev",
            "--ignore-not-found",
        ])
        .args(
            ["valid", "bad-0", "bad-1", "bad-2", "bad-3", "bad-4"].map(|n| format!("{n}{suffix}")),
        )
        .env("KUBECONFIG", &admin)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    res
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn backup_policy_rules() -> anyhow::Result<()> {
    as_editor("adm-policy", backup_policy()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn backup_rules() -> anyhow::Result<()> {
    as_editor("adm-backup", backup()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn restore_rules() -> anyhow::Result<()> {
    as_editor("adm-restore", restore()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn drill_rules() -> anyhow::Result<()> {
    as_editor("adm-drill", drill()).await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn drill_run_rules() -> anyhow::Result<()> {
    // Editors create DrillRuns; only the administrator (and the controller) may update
    // one, so the administrator makes the update the rule refuses. The editor's own
    // update is refused by RBAC before any rule.
    let ed = Editor::create("adm-drun").await?;
    let (path, admin) = (ed.path(), env("KUBECONFIG"));
    exercise(drill_run(), &path, &admin, Some(&ed.ns.name), "").await?;
    let mut changed = drill_run().valid;
    changed["metadata"]["name"] = "record".into();
    changed["metadata"]["labels"] = json!({"edited": "by-editor"});
    match kubectl_apply(&path, Some(&ed.ns.name), &changed)? {
        Ok(()) => bail!("the editor updated a DrillRun"),
        Err(e) => ensure!(e.contains("forbidden"), "{e}"),
    }
    ed.ns.delete().await
}

/// Every rule of every CRD has a case: normalised (`[0]` → `[]`), the case's path is the
/// rule's (plus its `fieldPath`), and its fragment is part of the rule's message.
#[test]
fn every_rule_has_a_case() {
    fn rules(path: &str, node: &Value, out: &mut Vec<(String, String)>) {
        for r in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let at = format!("{path}{}", r["fieldPath"].as_str().unwrap_or(""));
            out.push((at, r["message"].as_str().unwrap_or("").to_string()));
        }
        for (name, child) in node["properties"].as_object().into_iter().flatten() {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            rules(&p, child, out);
        }
        if node["items"].is_object() {
            rules(&format!("{path}[]"), &node["items"], out);
        }
    }
    fn normalised(at: &str) -> String {
        let mut out = String::new();
        let mut in_index = false;
        for ch in at.chars() {
            match ch {
                '[' => {
                    in_index = true;
                    out.push('[');
                }
                ']' => {
                    in_index = false;
                    out.push(']');
                }
                _ if in_index => {}
                _ => out.push(ch),
            }
        }
        out
    }
    let kinds = [
        backup_store(),
        cluster_backup_store(),
        backup_policy(),
        backup(),
        restore(),
        drill(),
        drill_run(),
    ];
    let (mut missing, mut checked) = (Vec::new(), 0);
    for crd in lifeboat::crd::all_crds() {
        let kind = &crd.spec.names.kind;
        let k = kinds
            .iter()
            .find(|k| k.kind == kind)
            .unwrap_or_else(|| panic!("no cases for {kind}"));
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
        let mut all = Vec::new();
        rules("", &schema, &mut all);
        for (at, message) in all {
            checked += 1;
            let covered = k
                .cases
                .iter()
                .chain(k.transition.iter())
                .any(|c| normalised(c.at) == at && message.contains(c.says));
            if !covered {
                missing.push(format!("{kind} {at}: {message}"));
            }
        }
    }
    assert!(missing.is_empty(), "rules without a case: {missing:#?}");
    assert!(
        checked > 50,
        "only {checked} rules found: is the schema walk broken?"
    );
}

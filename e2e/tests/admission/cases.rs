//! The case tables of the admission tests: for each kind, a valid object with every field
//! set, one violation per rule (or more where a rule has several ways to fail), and the
//! spec change its transition rule refuses.

use serde_json::{Value, json};

/// One violation: edits to the kind's valid object (JSON pointer, new value or `None` to
/// remove), and what the refusal must say: the path the API server reports (`at`, list
/// indices included) and a fragment of the rule's message (`says`).
pub struct Case {
    pub at: &'static str,
    pub says: &'static str,
    pub edits: Vec<(&'static str, Option<Value>)>,
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
pub struct Kind {
    pub kind: &'static str,
    pub valid: Value,
    pub cases: Vec<Case>,
    pub transition: Option<Case>,
}

const API: &str = "lifeboat.dev/v1alpha1";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

pub fn backup_store() -> Kind {
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
                "immutability": {"mode": "Governance", "retention": "30d"},
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
            case(
                "spec.immutability.retention",
                "immutability.retention must be a number of days from 1d to 36500d",
                vec![("/spec/immutability/retention", json!("0d"))],
            ),
            case(
                "spec.immutability.retention",
                "immutability.retention must be a number of days from 1d to 36500d",
                vec![("/spec/immutability/retention", json!("30"))],
            ),
        ],
        transition: None,
    }
}

pub fn cluster_backup_store() -> Kind {
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
            case(
                "spec.immutability.retention",
                "immutability.retention must be a number of days from 1d to 36500d",
                vec![("/spec/immutability/retention", json!("36501d"))],
            ),
        ],
        transition: None,
    }
}

pub fn backup_policy() -> Kind {
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
                              "keepMonthly": 12, "keepYearly": 2, "maxForgetPercent": 50},
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
            keep(
                "/spec/retention/maxForgetPercent",
                "spec.retention.maxForgetPercent",
                "maxForgetPercent must be between 1 and 100",
            ),
            case(
                "spec.retention.maxForgetPercent",
                "maxForgetPercent must be between 1 and 100",
                vec![("/spec/retention/maxForgetPercent", json!(101))],
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

pub fn backup() -> Kind {
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

pub fn restore() -> Kind {
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
                "source: set exactly one of backupRef, policyRef and storeRef",
                vec![("/spec/source/backupRef", json!({"name": "b"}))],
            ),
            removing(
                case(
                    "spec.source",
                    "source: set exactly one of backupRef, policyRef and storeRef",
                    vec![],
                ),
                &["/spec/source/policyRef", "/spec/source/pointInTime"],
            ),
            case(
                "spec.source.fromPolicy",
                "source.fromPolicy and source.storeRef go together",
                vec![("/spec/source/fromPolicy", json!("old/daily"))],
            ),
            removing(
                case(
                    "spec.source.fromPolicy",
                    "source.fromPolicy and source.storeRef go together",
                    vec![("/spec/source/storeRef", json!({"name": "s3"}))],
                ),
                &["/spec/source/policyRef"],
            ),
            removing(
                case(
                    "spec.source.fromPolicy",
                    "fromPolicy must be namespace/policy",
                    vec![
                        ("/spec/source/storeRef", json!({"name": "s3"})),
                        ("/spec/source/fromPolicy", json!("daily")),
                    ],
                ),
                &["/spec/source/policyRef"],
            ),
            removing(
                case(
                    "spec.source.backupName",
                    "source.backupName needs storeRef and excludes pointInTime",
                    vec![
                        ("/spec/source/storeRef", json!({"name": "s3"})),
                        ("/spec/source/fromPolicy", json!("old/daily")),
                        ("/spec/source/backupName", json!("daily-1")),
                    ],
                ),
                &["/spec/source/policyRef"],
            ),
            case(
                "spec.source.backupName",
                "source.backupName needs storeRef and excludes pointInTime",
                vec![("/spec/source/backupName", json!("daily-1"))],
            ),
            case(
                "spec.source.pointInTime",
                "source.pointInTime needs policyRef or storeRef",
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

pub fn drill() -> Kind {
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
            removing(
                case(
                    "spec.restorePoint",
                    "restorePoint.within is required with strategy RandomWithin",
                    vec![("/spec/restorePoint/strategy", json!("RandomWithin"))],
                ),
                &["/spec/restorePoint/time"],
            ),
            case(
                "spec.restorePoint",
                "restorePoint.within is required with strategy RandomWithin and only used with it",
                vec![("/spec/restorePoint/within", json!("30d"))],
            ),
            removing(
                case(
                    "spec.restorePoint.within",
                    "within must be a positive duration",
                    vec![
                        ("/spec/restorePoint/strategy", json!("RandomWithin")),
                        ("/spec/restorePoint/within", json!("0d")),
                    ],
                ),
                &["/spec/restorePoint/time"],
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

pub fn drill_run() -> Kind {
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

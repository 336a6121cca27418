//! Render → parse → equal for every variant, and the argv the parser refuses.

use std::collections::BTreeSet;

use super::*;

/// The leaf command a value is, by name. Exhaustive without a wildcard: a new variant
/// does not compile until it is named here, and `ALL` then needs a sample.
fn leaf(c: &MoverCommand) -> &'static str {
    match c {
        MoverCommand::Backup(BackupCommand::Volume(_)) => "backup volume",
        MoverCommand::Backup(BackupCommand::Database(_)) => "backup database",
        MoverCommand::Backup(BackupCommand::Manifests(_)) => "backup manifests",
        MoverCommand::Restore(RestoreCommand::Volume(_)) => "restore volume",
        MoverCommand::Restore(RestoreCommand::Database(_)) => "restore database",
        MoverCommand::Restore(RestoreCommand::Manifests(_)) => "restore manifests",
        MoverCommand::Retention(_) => "retention",
        MoverCommand::ForgetPolicy(_) => "forget-policy",
        MoverCommand::Check(CheckCommand::Sql(_)) => "check sql",
        MoverCommand::Check(CheckCommand::Freshness(_)) => "check freshness",
        MoverCommand::Check(CheckCommand::Files(_)) => "check files",
        MoverCommand::Check(CheckCommand::Http(_)) => "check http",
        MoverCommand::Report(_) => "report",
        MoverCommand::Verify(_) => "verify",
    }
}

const ALL: [&str; 14] = [
    "backup volume",
    "backup database",
    "backup manifests",
    "restore volume",
    "restore database",
    "restore manifests",
    "retention",
    "forget-policy",
    "check sql",
    "check freshness",
    "check files",
    "check http",
    "report",
    "verify",
];

fn owner() -> SnapshotOwner {
    SnapshotOwner {
        cluster: "4f1e2d3c-0000-4000-8000-000000000001".into(),
        policy_uid: "9a8b7c6d-0000-4000-8000-000000000002".into(),
    }
}

fn backup_run() -> BackupRun {
    BackupRun {
        policy: NamespacedName::new("shop", "orders"),
        backup: "orders-202601010010".into(),
        owner: Some(owner()),
    }
}

fn restore_run() -> RestoreRun {
    RestoreRun {
        restore: NamespacedName::new("shop", "r1"),
        policy: NamespacedName::new("shop", "app"),
        snapshot: "0123abcd".into(),
        source: "data".into(),
    }
}

fn db() -> DbTarget {
    DbTarget {
        engine: Engine::Mysql,
        host: "db.sandbox.svc".into(),
        port: Some(3306),
        database: "shop".into(),
    }
}

/// Each variant with every optional part set, and again with none, plus the values
/// that need care (leading dashes, `=` and spaces inside values).
fn samples() -> Vec<MoverCommand> {
    use MoverCommand as M;
    let hash = "ab".repeat(32);
    vec![
        M::Backup(BackupCommand::Volume(BackupVolume {
            source: "data".into(),
            path: "/data".into(),
            excludes: vec!["*.tmp".into(), "-odd name".into()],
            run: backup_run(),
        })),
        M::Backup(BackupCommand::Volume(BackupVolume {
            source: "data".into(),
            path: "/data".into(),
            excludes: vec![],
            run: BackupRun {
                owner: None,
                ..backup_run()
            },
        })),
        M::Backup(BackupCommand::Database(BackupDatabase {
            source: "pg".into(),
            engine: Engine::Postgres,
            host: "pg.shop.svc".into(),
            port: Some(5432),
            database: Some("orders".into()),
            extra_args: vec!["--no-comments".into(), "--exclude-table=a=b".into()],
            run: backup_run(),
        })),
        M::Backup(BackupCommand::Database(BackupDatabase {
            source: "my".into(),
            engine: Engine::Mysql,
            host: "my".into(),
            port: None,
            database: None,
            extra_args: vec![],
            run: backup_run(),
        })),
        M::Backup(BackupCommand::Manifests(BackupManifests {
            namespace: "shop".into(),
            kinds: vec!["Deployment.apps".into(), "Service".into()],
            selector: Some("app in (web,api),tier!=cache".into()),
            include_secrets: true,
            staging: Some("/tmp/stage".into()),
            run: backup_run(),
        })),
        M::Backup(BackupCommand::Manifests(BackupManifests {
            namespace: "shop".into(),
            kinds: vec![],
            selector: None,
            include_secrets: false,
            staging: None,
            run: backup_run(),
        })),
        M::Retention(ApplyRetention {
            policy: NamespacedName::new("shop", "orders"),
            backup: Some("orders-202601010010".into()),
            keep: Retention {
                keep_last: Some(3),
                keep_hourly: Some(24),
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(12),
                keep_yearly: Some(0),
                max_forget_percent: Some(50),
            },
            sources: vec!["volume/data".into(), "database/pg".into()],
            keep_backups: vec!["orders-202512310010".into()],
            dry_run: true,
            owner: Some(owner()),
        }),
        M::Retention(ApplyRetention {
            policy: NamespacedName::new("shop", "orders"),
            backup: None,
            keep: Retention::default(),
            sources: vec![],
            keep_backups: vec![],
            dry_run: false,
            owner: None,
        }),
        M::ForgetPolicy(ForgetPolicy {
            policy: NamespacedName::new("shop", "orders"),
            owner: Some(owner()),
        }),
        M::ForgetPolicy(ForgetPolicy {
            policy: NamespacedName::new("shop", "orders"),
            owner: None,
        }),
        M::Restore(RestoreCommand::Volume(RestoreVolume {
            target: "/data".into(),
            devices_and_setid: false,
            run: restore_run(),
        })),
        M::Restore(RestoreCommand::Volume(RestoreVolume {
            target: "/restore".into(),
            devices_and_setid: true,
            run: restore_run(),
        })),
        M::Restore(RestoreCommand::Database(RestoreDatabase {
            engine: Engine::Postgres,
            host: "pg-restore".into(),
            port: Some(5432),
            database: Some("orders_copy".into()),
            create_database: true,
            no_owner: true,
            wait_seconds: Some(30),
            run: restore_run(),
        })),
        M::Restore(RestoreCommand::Database(RestoreDatabase {
            engine: Engine::Mysql,
            host: "my".into(),
            port: None,
            database: None,
            create_database: false,
            no_owner: false,
            wait_seconds: None,
            run: restore_run(),
        })),
        M::Restore(RestoreCommand::Manifests(RestoreManifests {
            namespace: "shop-copy".into(),
            kinds: vec!["ConfigMap".into()],
            suppress_side_effects: true,
            scale_to_zero: true,
            staging: Some("/tmp/m".into()),
            run: restore_run(),
        })),
        M::Restore(RestoreCommand::Manifests(RestoreManifests {
            namespace: "shop".into(),
            kinds: vec![],
            suppress_side_effects: false,
            scale_to_zero: false,
            staging: None,
            run: restore_run(),
        })),
        M::Check(CheckCommand::Sql(CheckSql {
            db: db(),
            test: SqlTest::Query {
                query: "select count(*) from orders where total > -1".into(),
                expect: Expectation {
                    at_least: Some("-5".into()),
                    ..Expectation::default()
                },
            },
        })),
        M::Check(CheckCommand::Sql(CheckSql {
            db: DbTarget { port: None, ..db() },
            test: SqlTest::Query {
                query: "select 1".into(),
                expect: Expectation::default(),
            },
        })),
        M::Check(CheckCommand::Sql(CheckSql {
            db: db(),
            test: SqlTest::MatchesBackup {
                snapshot: "0123abcd".into(),
            },
        })),
        M::Check(CheckCommand::Freshness(CheckFreshness {
            db: db(),
            query: "select max(created_at) from orders".into(),
        })),
        M::Check(CheckCommand::Files(CheckFiles {
            root: "/volumes/data".into(),
            exist: vec!["a".into(), "dir/b c".into()],
            checksums: vec![
                FileDigest {
                    path: "x=y".into(),
                    sha256: None,
                },
                FileDigest {
                    path: "data/file".into(),
                    sha256: Some(hash),
                },
            ],
            snapshot: Some("0123abcd".into()),
        })),
        M::Check(CheckCommand::Files(CheckFiles {
            root: "/volumes/data".into(),
            exist: vec![],
            checksums: vec![],
            snapshot: None,
        })),
        M::Check(CheckCommand::Http(CheckHttp {
            url: "http://web.sandbox.svc/healthz?x=1".into(),
            expect_status: 204,
            timeout_seconds: 30,
        })),
        M::Report(WriteReport {
            run: NamespacedName::new("shop", "nightly-20260101"),
            record: "/etc/lifeboat/record/drillrun.json".into(),
            signing_key: None,
            anchor: None,
        }),
        M::Report(WriteReport {
            run: NamespacedName::new("shop", "nightly-20260101"),
            record: "/etc/lifeboat/record/drillrun.json".into(),
            signing_key: Some("/etc/lifeboat/evidence/private-key.pem".into()),
            anchor: Some("/etc/lifeboat/record/anchor.json".into()),
        }),
        M::Verify(VerifyRepository {
            read_data_subset: Some("2/7".into()),
        }),
        M::Verify(VerifyRepository {
            read_data_subset: None,
        }),
    ]
}

#[test]
fn every_variant_round_trips() {
    let samples = samples();
    let covered: BTreeSet<&str> = samples.iter().map(leaf).collect();
    assert_eq!(covered, BTreeSet::from(ALL), "a variant has no sample");
    for c in samples {
        let args = c.to_args();
        assert_eq!(args[0], "mover");
        let back = MoverCommand::parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(back, c, "{args:?}");
    }
}

fn argv(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

#[test]
fn the_rendered_argv_reads_as_documented() {
    let c = MoverCommand::Backup(BackupCommand::Database(BackupDatabase {
        source: "pg".into(),
        engine: Engine::Postgres,
        host: "pg".into(),
        port: Some(5432),
        database: None,
        extra_args: vec!["-Z0".into()],
        run: backup_run(),
    }));
    assert_eq!(
        c.to_args().join(" "),
        "mover backup database --source pg --engine postgres --host pg --port 5432 \
         --extra-arg=-Z0 --policy shop/orders --backup orders-202601010010 \
         --cluster 4f1e2d3c-0000-4000-8000-000000000001 \
         --policy-uid 9a8b7c6d-0000-4000-8000-000000000002"
    );
}

#[test]
fn hand_written_forms_parse_too() {
    // `--flag=value`, flags in any order, defaults for what the controllers always give.
    let c = MoverCommand::parse(&argv(&[
        "mover",
        "check",
        "http",
        "--url=http://web/healthz",
    ]))
    .unwrap();
    assert_eq!(
        c,
        MoverCommand::Check(CheckCommand::Http(CheckHttp {
            url: "http://web/healthz".into(),
            expect_status: 200,
            timeout_seconds: 60,
        }))
    );
    let c = MoverCommand::parse(&argv(&[
        "mover",
        "restore",
        "manifests",
        "--source",
        "manifests",
        "--kinds",
        "Deployment.apps,",
        "--kinds",
        "Service",
        "--restore",
        "shop/r1",
        "--policy",
        "shop/app",
        "--snapshot",
        "ab",
        "--namespace",
        "shop",
    ]))
    .unwrap();
    let MoverCommand::Restore(RestoreCommand::Manifests(m)) = c else {
        panic!("{c:?}")
    };
    assert_eq!(m.kinds, ["Deployment.apps", "Service"]);
}

#[test]
fn bad_argv_is_refused_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["backup", "volume"], "expects one of mover"),
        (&["mover"], "`mover` expects one of backup"),
        (&["mover", "prune"], "got \"prune\""),
        (
            &["mover", "backup", "--source", "x"],
            "`mover backup` expects",
        ),
        (
            &["mover", "report", "--run", "shop/r", "--repo", "/r"],
            "has no option --repo",
        ),
        (
            &["mover", "report", "shop/r"],
            "takes no argument \"shop/r\"",
        ),
        (&["mover", "report"], "needs --run"),
        (
            &[
                "mover",
                "forget-policy",
                "--policy",
                "a/b",
                "--cluster",
                "c1",
            ],
            "--cluster and --policy-uid go together",
        ),
        (&["mover", "report", "--run"], "--run needs a value"),
        (
            &["mover", "report", "--run", "a/b", "--run", "a/c"],
            "--run is given more than once",
        ),
        (
            &["mover", "report", "--run", "r1"],
            "--run must be NAMESPACE/NAME, got \"r1\"",
        ),
        (
            &[
                "mover",
                "retention",
                "--policy",
                "/orders",
                "--keep-last",
                "1",
            ],
            "--policy must be NAMESPACE/NAME",
        ),
        (
            &[
                "mover",
                "retention",
                "--policy",
                "shop/orders",
                "--keep-last",
                "three",
            ],
            "--keep-last must be a whole number, got \"three\"",
        ),
        (
            &[
                "mover",
                "retention",
                "--policy",
                "shop/orders",
                "--dry-run=yes",
            ],
            "--dry-run must be given without a value",
        ),
        (
            &[
                "mover",
                "check",
                "sql",
                "--engine",
                "oracle",
                "--host",
                "db",
                "--database",
                "shop",
                "--query",
                "q",
            ],
            "--engine must be postgres or mysql, got \"oracle\"",
        ),
        (
            &[
                "mover",
                "check",
                "sql",
                "--engine",
                "mysql",
                "--host",
                "db",
                "--port",
                "70000",
                "--database",
                "shop",
                "--query",
                "q",
            ],
            "--port must be a port number",
        ),
        (
            &[
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
            ],
            "needs --query",
        ),
        (
            &[
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
                "--matches-backup",
            ],
            "needs --snapshot",
        ),
        (
            &[
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
                "--query",
                "q",
                "--equals",
                "1",
                "--at-most",
                "2",
            ],
            "at most one of --equals",
        ),
        (
            &[
                "mover",
                "check",
                "sql",
                "--engine",
                "postgres",
                "--host",
                "db",
                "--database",
                "shop",
                "--query",
                "q",
                "--matches-backup",
                "--snapshot",
                "s",
            ],
            "--matches-backup takes no --query",
        ),
    ];
    for (args, want) in cases {
        let err = MoverCommand::parse(&argv(args)).expect_err(&format!("{args:?} parsed"));
        assert!(err.to_string().contains(want), "{args:?}: {err}");
    }
}

#[test]
fn database_engines_convert_one_to_one() {
    assert_eq!(Engine::from(DatabaseEngine::Postgres), Engine::Postgres);
    assert_eq!(Engine::from(DatabaseEngine::Mysql), Engine::Mysql);
}

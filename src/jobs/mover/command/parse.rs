//! The parser of the mover's argv: `mover <command> [<kind>]`, then `--flag value`,
//! `--flag=value` and `--switch` in any order. Each command lists its flags once, with
//! their arity; a flag that takes a value consumes the next token whatever it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// `--flag value`, at most once.
    One,
    /// `--flag value`, repeatable.
    Many,
    /// `--flag`.
    Switch,
}

use Arity::{Many, One, Switch};

const BACKUP_RUN: [(&str, Arity); 4] = [
    ("policy", One),
    ("backup", One),
    ("cluster", One),
    ("policy-uid", One),
];
const OWNER: [(&str, Arity); 2] = [("cluster", One), ("policy-uid", One)];
const RESTORE_RUN: [(&str, Arity); 4] = [
    ("restore", One),
    ("policy", One),
    ("snapshot", One),
    ("source", One),
];
const DB_TARGET: [(&str, Arity); 4] = [
    ("engine", One),
    ("host", One),
    ("port", One),
    ("database", One),
];

/// The flags of one command, as given.
struct Flags {
    command: &'static str,
    values: BTreeMap<&'static str, Vec<String>>,
    switches: BTreeSet<&'static str>,
}

impl Flags {
    fn parse(
        command: &'static str,
        tokens: &[String],
        spec: &[&[(&'static str, Arity)]],
    ) -> Result<Self, ArgvError> {
        let mut f = Flags {
            command,
            values: BTreeMap::new(),
            switches: BTreeSet::new(),
        };
        let mut it = tokens.iter();
        while let Some(tok) = it.next() {
            let Some(body) = tok.strip_prefix("--") else {
                return Err(ArgvError::Unexpected {
                    command,
                    token: tok.clone(),
                });
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(&(name, arity)) = spec.iter().flat_map(|s| s.iter()).find(|(n, _)| *n == name)
            else {
                return Err(ArgvError::UnknownFlag {
                    command,
                    flag: tok.split('=').next().unwrap_or_default().to_string(),
                });
            };
            if arity == Switch {
                if let Some(value) = inline {
                    return Err(ArgvError::Invalid {
                        flag: name,
                        expected: "given without a value",
                        value,
                    });
                }
                if !f.switches.insert(name) {
                    return Err(ArgvError::Repeated(name));
                }
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or(ArgvError::MissingValue(name))?,
            };
            let slot = f.values.entry(name).or_default();
            if arity == One && !slot.is_empty() {
                return Err(ArgvError::Repeated(name));
            }
            slot.push(value);
        }
        Ok(f)
    }

    fn opt(&mut self, flag: &'static str) -> Option<String> {
        self.values.remove(flag).and_then(|mut v| v.pop())
    }

    fn one(&mut self, flag: &'static str) -> Result<String, ArgvError> {
        self.opt(flag).ok_or(ArgvError::Missing {
            command: self.command,
            flag,
        })
    }

    fn many(&mut self, flag: &'static str) -> Vec<String> {
        self.values.remove(flag).unwrap_or_default()
    }

    /// A comma-separated list, possibly given more than once.
    fn list(&mut self, flag: &'static str) -> Vec<String> {
        self.many(flag)
            .iter()
            .flat_map(|v| v.split(','))
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn switch(&self, flag: &'static str) -> bool {
        self.switches.contains(flag)
    }

    fn number<T: FromStr>(
        &mut self,
        flag: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, ArgvError> {
        self.opt(flag)
            .map(|v| {
                v.parse().map_err(|_| ArgvError::Invalid {
                    flag,
                    expected,
                    value: v,
                })
            })
            .transpose()
    }

    fn engine(&mut self) -> Result<Engine, ArgvError> {
        let value = self.one("engine")?;
        match value.as_str() {
            "postgres" => Ok(Engine::Postgres),
            "mysql" => Ok(Engine::Mysql),
            _ => Err(ArgvError::Invalid {
                flag: "engine",
                expected: "postgres or mysql",
                value,
            }),
        }
    }

    fn port(&mut self) -> Result<Option<u16>, ArgvError> {
        self.number("port", "a port number")
    }

    fn key(&mut self, flag: &'static str) -> Result<NamespacedName, ArgvError> {
        NamespacedName::parse(flag, self.one(flag)?)
    }

    fn backup_run(&mut self) -> Result<BackupRun, ArgvError> {
        Ok(BackupRun {
            policy: self.key("policy")?,
            backup: self.one("backup")?,
            owner: self.owner()?,
        })
    }

    /// `--cluster` and `--policy-uid`: both or neither (half an owner would let
    /// retention match snapshots of the other half's every owner).
    fn owner(&mut self) -> Result<Option<SnapshotOwner>, ArgvError> {
        match (self.opt("cluster"), self.opt("policy-uid")) {
            (Some(cluster), Some(policy_uid)) => Ok(Some(SnapshotOwner {
                cluster,
                policy_uid,
            })),
            (None, None) => Ok(None),
            _ => Err(self.conflict("--cluster and --policy-uid go together")),
        }
    }

    fn restore_run(&mut self) -> Result<RestoreRun, ArgvError> {
        Ok(RestoreRun {
            restore: self.key("restore")?,
            policy: self.key("policy")?,
            snapshot: self.one("snapshot")?,
            source: self.one("source")?,
        })
    }

    fn db(&mut self) -> Result<DbTarget, ArgvError> {
        Ok(DbTarget {
            engine: self.engine()?,
            host: self.one("host")?,
            port: self.port()?,
            database: self.one("database")?,
        })
    }

    fn conflict(&self, what: &'static str) -> ArgvError {
        ArgvError::Conflict {
            command: self.command,
            what,
        }
    }
}

/// The first word of `args` and the rest.
fn word<'a>(
    args: &'a [String],
    after: &'static str,
    expected: &'static str,
) -> Result<(&'a str, &'a [String]), ArgvError> {
    match args.split_first() {
        Some((w, rest)) if !w.starts_with('-') => Ok((w.as_str(), rest)),
        other => Err(ArgvError::UnknownCommand {
            after,
            expected,
            got: other.map(|(w, _)| w.clone()).unwrap_or_default(),
        }),
    }
}

/// A checksum as rendered: `PATH=SHA256`, or `PATH` alone.
fn digest(c: String) -> FileDigest {
    match c.rsplit_once('=') {
        Some((p, h)) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => FileDigest {
            path: p.to_string(),
            sha256: Some(h.to_string()),
        },
        _ => FileDigest {
            path: c,
            sha256: None,
        },
    }
}

impl MoverCommand {
    /// Parses a container's `args` (starting with `mover`), as [`Self::to_args`] renders
    /// them.
    pub(crate) fn parse(args: &[String]) -> Result<Self, ArgvError> {
        let args = match word(args, "lifeboat", "mover")? {
            ("mover", rest) => rest,
            (other, _) => {
                return Err(ArgvError::UnknownCommand {
                    after: "lifeboat",
                    expected: "mover",
                    got: other.to_string(),
                });
            }
        };
        let (cmd, rest) = word(
            args,
            "mover",
            "backup, restore, retention, forget-policy, check, report, verify",
        )?;
        Ok(match cmd {
            "backup" => MoverCommand::Backup(backup(rest)?),
            "restore" => MoverCommand::Restore(restore(rest)?),
            "check" => MoverCommand::Check(check(rest)?),
            "retention" => MoverCommand::Retention(retention(rest)?),
            "forget-policy" => {
                let mut f = Flags::parse("forget-policy", rest, &[&[("policy", One)], &OWNER])?;
                MoverCommand::ForgetPolicy(ForgetPolicy {
                    policy: f.key("policy")?,
                    owner: f.owner()?,
                })
            }
            "report" => {
                let mut f = Flags::parse(
                    "report",
                    rest,
                    &[&[
                        ("run", One),
                        ("record", One),
                        ("signing-key", One),
                        ("anchor", One),
                    ]],
                )?;
                MoverCommand::Report(WriteReport {
                    run: f.key("run")?,
                    record: f.one("record")?.into(),
                    signing_key: f.opt("signing-key").map(Into::into),
                    anchor: f.opt("anchor").map(Into::into),
                })
            }
            "verify" => {
                let mut f = Flags::parse("verify", rest, &[&[("read-data-subset", One)]])?;
                MoverCommand::Verify(VerifyRepository {
                    read_data_subset: f.opt("read-data-subset"),
                })
            }
            other => {
                return Err(ArgvError::UnknownCommand {
                    after: "mover",
                    expected: "backup, restore, retention, forget-policy, check, report, verify",
                    got: other.to_string(),
                });
            }
        })
    }
}

fn backup(args: &[String]) -> Result<BackupCommand, ArgvError> {
    const KINDS: &str = "volume, database, manifests";
    let (kind, rest) = word(args, "mover backup", KINDS)?;
    Ok(match kind {
        "volume" => {
            let mut f = Flags::parse(
                "backup volume",
                rest,
                &[
                    &[("source", One), ("path", One), ("exclude", Many)],
                    &BACKUP_RUN,
                ],
            )?;
            BackupCommand::Volume(BackupVolume {
                source: f.one("source")?,
                path: f.one("path")?.into(),
                excludes: f.many("exclude"),
                run: f.backup_run()?,
            })
        }
        "database" => {
            let mut f = Flags::parse(
                "backup database",
                rest,
                &[
                    &[
                        ("source", One),
                        ("engine", One),
                        ("host", One),
                        ("port", One),
                        ("database", One),
                        ("extra-arg", Many),
                    ],
                    &BACKUP_RUN,
                ],
            )?;
            BackupCommand::Database(BackupDatabase {
                source: f.one("source")?,
                engine: f.engine()?,
                host: f.one("host")?,
                port: f.port()?,
                database: f.opt("database"),
                extra_args: f.many("extra-arg"),
                run: f.backup_run()?,
            })
        }
        "manifests" => {
            let mut f = Flags::parse(
                "backup manifests",
                rest,
                &[
                    &[
                        ("namespace", One),
                        ("kinds", Many),
                        ("selector", One),
                        ("include-secrets", Switch),
                        ("staging", One),
                    ],
                    &BACKUP_RUN,
                ],
            )?;
            BackupCommand::Manifests(BackupManifests {
                namespace: f.one("namespace")?,
                kinds: f.list("kinds"),
                selector: f.opt("selector"),
                include_secrets: f.switch("include-secrets"),
                staging: f.opt("staging").map(PathBuf::from),
                run: f.backup_run()?,
            })
        }
        other => {
            return Err(ArgvError::UnknownCommand {
                after: "mover backup",
                expected: KINDS,
                got: other.to_string(),
            });
        }
    })
}

fn retention(args: &[String]) -> Result<ApplyRetention, ArgvError> {
    let mut f = Flags::parse(
        "retention",
        args,
        &[
            &[
                ("policy", One),
                ("backup", One),
                ("keep-last", One),
                ("keep-hourly", One),
                ("keep-daily", One),
                ("keep-weekly", One),
                ("keep-monthly", One),
                ("keep-yearly", One),
                ("max-forget-percent", One),
                ("source", Many),
                ("keep-backup", Many),
                ("dry-run", Switch),
            ],
            &OWNER,
        ],
    )?;
    const N: &str = "a whole number";
    Ok(ApplyRetention {
        policy: f.key("policy")?,
        backup: f.opt("backup"),
        keep: Retention {
            keep_last: f.number("keep-last", N)?,
            keep_hourly: f.number("keep-hourly", N)?,
            keep_daily: f.number("keep-daily", N)?,
            keep_weekly: f.number("keep-weekly", N)?,
            keep_monthly: f.number("keep-monthly", N)?,
            keep_yearly: f.number("keep-yearly", N)?,
            max_forget_percent: f.number("max-forget-percent", N)?,
        },
        sources: f.many("source"),
        keep_backups: f.many("keep-backup"),
        dry_run: f.switch("dry-run"),
        owner: f.owner()?,
    })
}

fn restore(args: &[String]) -> Result<RestoreCommand, ArgvError> {
    const KINDS: &str = "volume, database, manifests";
    let (kind, rest) = word(args, "mover restore", KINDS)?;
    Ok(match kind {
        "volume" => {
            let mut f = Flags::parse(
                "restore volume",
                rest,
                &[
                    &[("target", One), ("devices-and-setid", Switch)],
                    &RESTORE_RUN,
                ],
            )?;
            RestoreCommand::Volume(RestoreVolume {
                target: f.one("target")?.into(),
                devices_and_setid: f.switch("devices-and-setid"),
                run: f.restore_run()?,
            })
        }
        "database" => {
            let mut f = Flags::parse(
                "restore database",
                rest,
                &[
                    &[
                        ("engine", One),
                        ("host", One),
                        ("port", One),
                        ("database", One),
                        ("create-database", Switch),
                        ("no-owner", Switch),
                        ("wait-seconds", One),
                    ],
                    &RESTORE_RUN,
                ],
            )?;
            RestoreCommand::Database(RestoreDatabase {
                engine: f.engine()?,
                host: f.one("host")?,
                port: f.port()?,
                database: f.opt("database"),
                create_database: f.switch("create-database"),
                no_owner: f.switch("no-owner"),
                wait_seconds: f.number("wait-seconds", "a number of seconds")?,
                run: f.restore_run()?,
            })
        }
        "manifests" => {
            let mut f = Flags::parse(
                "restore manifests",
                rest,
                &[
                    &[
                        ("namespace", One),
                        ("kinds", Many),
                        ("suppress-side-effects", Switch),
                        ("scale-to-zero", Switch),
                        ("staging", One),
                    ],
                    &RESTORE_RUN,
                ],
            )?;
            RestoreCommand::Manifests(RestoreManifests {
                namespace: f.one("namespace")?,
                kinds: f.list("kinds"),
                suppress_side_effects: f.switch("suppress-side-effects"),
                scale_to_zero: f.switch("scale-to-zero"),
                staging: f.opt("staging").map(PathBuf::from),
                run: f.restore_run()?,
            })
        }
        other => {
            return Err(ArgvError::UnknownCommand {
                after: "mover restore",
                expected: KINDS,
                got: other.to_string(),
            });
        }
    })
}

fn check(args: &[String]) -> Result<CheckCommand, ArgvError> {
    const KINDS: &str = "sql, freshness, files, http";
    let (kind, rest) = word(args, "mover check", KINDS)?;
    Ok(match kind {
        "sql" => {
            let mut f = Flags::parse(
                "check sql",
                rest,
                &[
                    &DB_TARGET,
                    &[
                        ("query", One),
                        ("equals", One),
                        ("at-least", One),
                        ("at-most", One),
                        ("matches-backup", Switch),
                        ("snapshot", One),
                    ],
                ],
            )?;
            let db = f.db()?;
            let expect = Expectation {
                equals: f.opt("equals"),
                at_least: f.opt("at-least"),
                at_most: f.opt("at-most"),
            };
            let bounds = [&expect.equals, &expect.at_least, &expect.at_most]
                .iter()
                .filter(|b| b.is_some())
                .count();
            if bounds > 1 {
                return Err(f.conflict("give at most one of --equals, --at-least, --at-most"));
            }
            let query = f.opt("query");
            let snapshot = f.opt("snapshot");
            let test = if f.switch("matches-backup") {
                if query.is_some() || bounds > 0 {
                    return Err(f.conflict("--matches-backup takes no --query or bound"));
                }
                SqlTest::MatchesBackup {
                    snapshot: snapshot.ok_or(ArgvError::Missing {
                        command: "check sql",
                        flag: "snapshot",
                    })?,
                }
            } else {
                if snapshot.is_some() {
                    return Err(f.conflict("--snapshot belongs to --matches-backup"));
                }
                SqlTest::Query {
                    query: query.ok_or(ArgvError::Missing {
                        command: "check sql",
                        flag: "query",
                    })?,
                    expect,
                }
            };
            CheckCommand::Sql(CheckSql { db, test })
        }
        "freshness" => {
            let mut f = Flags::parse("check freshness", rest, &[&DB_TARGET, &[("query", One)]])?;
            CheckCommand::Freshness(CheckFreshness {
                db: f.db()?,
                query: f.one("query")?,
            })
        }
        "files" => {
            let mut f = Flags::parse(
                "check files",
                rest,
                &[&[
                    ("root", One),
                    ("exist", Many),
                    ("checksum", Many),
                    ("snapshot", One),
                ]],
            )?;
            CheckCommand::Files(CheckFiles {
                root: f.one("root")?.into(),
                exist: f.many("exist"),
                checksums: f.many("checksum").into_iter().map(digest).collect(),
                snapshot: f.opt("snapshot"),
            })
        }
        "http" => {
            let mut f = Flags::parse(
                "check http",
                rest,
                &[&[
                    ("url", One),
                    ("expect-status", One),
                    ("timeout-seconds", One),
                ]],
            )?;
            CheckCommand::Http(CheckHttp {
                url: f.one("url")?,
                expect_status: f
                    .number("expect-status", "an HTTP status code")?
                    .unwrap_or(DEFAULT_EXPECT_STATUS),
                timeout_seconds: f
                    .number("timeout-seconds", "a number of seconds")?
                    .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            })
        }
        other => {
            return Err(ArgvError::UnknownCommand {
                after: "mover check",
                expected: KINDS,
                got: other.to_string(),
            });
        }
    })
}

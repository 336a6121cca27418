//! The check Jobs of a drill run and how their results are read: what the Restore says
//! it restored (database endpoints and logins, PVC names), one Job per check in the
//! sandbox (`lifeboat mover check ...` for sql, freshness, files and http; the user's
//! image for command checks), and the verdict from the Job, its pod's termination message
//! and exit code. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, Pod, PodSpec,
    PodTemplateSpec, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::{Resource, ResourceExt};

use super::plan::{DEFAULT_CHECK_TIMEOUT, run_annotations, run_labels};
use crate::config::Config;
use crate::controller::access::observe::{job_failed_reason, job_finished, stuck, terminated};
use crate::crd::backup::{SourceKind, SourcePhase};
use crate::crd::backup_policy::{BackupPolicy, DatabaseEngine};
use crate::crd::common::DatabaseCredentialsRef;
use crate::crd::dr_drill::{Check, CheckResult, CheckVerdict, DrillRestorePoint, DrillRun};
use crate::crd::labels;
use crate::crd::restore::Restore;
use crate::drill::checks::{FileDigest, summarise};
use crate::drill::measure;
use crate::jobs::mover::command::{
    CheckCommand, CheckFiles, CheckFreshness, CheckHttp, CheckSql, DbTarget, MoverCommand, SqlTest,
};
use crate::jobs::mover::{self, DataMount, MoverJob, Privilege, StoreTarget, security};
use crate::jobs::result::MoverResult;
use crate::jobs::{self, MAX_NAME};
use crate::schedule::duration;

/// Beyond a check's timeout, how long the controller waits for its Job to report.
const CHECK_GRACE: Duration = Duration::from_secs(30);
fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs_f64(measure::seconds_between(since, now))
}

/// A restored database as the checks reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredDb {
    pub engine: DatabaseEngine,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub credentials: Option<DatabaseCredentialsRef>,
}

/// Parses a Restore's database target `host:port/database`.
pub fn parse_db_target(target: &str, engine: DatabaseEngine) -> Option<(String, u16, String)> {
    let (addr, db) = target.split_once('/')?;
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()?),
        None => (addr.to_string(), engine.default_port()),
    };
    (!host.is_empty() && !db.is_empty()).then(|| (host, port, db.to_string()))
}

/// What the Restore reports about the databases and volumes it restored.
pub fn restored(
    restore: Option<&Restore>,
    policy: Option<&BackupPolicy>,
) -> (BTreeMap<String, RestoredDb>, BTreeMap<String, String>) {
    let mut dbs = BTreeMap::new();
    let mut vols = BTreeMap::new();
    let sources = restore
        .and_then(|r| r.status.as_ref())
        .map(|s| s.sources.clone())
        .unwrap_or_default();
    for s in sources.iter().filter(|s| s.phase == SourcePhase::Succeeded) {
        match s.kind {
            SourceKind::Volume => {
                vols.insert(
                    s.name.clone(),
                    s.target.clone().unwrap_or_else(|| s.name.clone()),
                );
            }
            SourceKind::Database => {
                let source =
                    policy.and_then(|p| p.spec.sources.databases.iter().find(|d| d.name == s.name));
                let engine = source.map(|d| d.engine).unwrap_or_default();
                // An all-databases dump restores under the dumped names: checks connect
                // to the one the policy names, else the engine's default database.
                let fallback_db = || {
                    source.and_then(|d| d.database.clone()).unwrap_or_else(|| {
                        match engine {
                            DatabaseEngine::Postgres => "postgres",
                            DatabaseEngine::Mysql => "mysql",
                        }
                        .to_string()
                    })
                };
                let found = match &s.database {
                    Some(d) => Some(RestoredDb {
                        engine: d.engine,
                        host: d.host.clone(),
                        port: d.port,
                        database: d.database.clone().unwrap_or_else(fallback_db),
                        credentials: d.credentials.clone(),
                    }),
                    None => s
                        .target
                        .as_deref()
                        .and_then(|t| parse_db_target(t, engine))
                        .map(|(host, port, database)| RestoredDb {
                            engine,
                            host,
                            port,
                            database,
                            credentials: None,
                        }),
                };
                if let Some(db) = found {
                    dbs.insert(s.name.clone(), db);
                }
            }
            SourceKind::Manifests => {}
        }
    }
    (dbs, vols)
}

/// The kind of a check as written in results: `sql`, `files`, `command`, `http`,
/// `freshness`.
pub fn check_type(c: &Check) -> &'static str {
    if c.sql.is_some() {
        "sql"
    } else if c.files.is_some() {
        "files"
    } else if c.command.is_some() {
        "command"
    } else if c.http.is_some() {
        "http"
    } else {
        "freshness"
    }
}

/// Name of a check's Job.
pub fn check_job_name(run: &str, check: &str) -> String {
    jobs::name(&[run, "check", check], MAX_NAME)
}

pub fn check_timeout(c: &Check) -> Duration {
    c.timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(DEFAULT_CHECK_TIMEOUT)
}

fn secret_env(name: String, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn plain_env(name: String, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name,
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// The environment name fragment of a database source: `orders-db` → `ORDERS_DB`.
pub fn env_name(source: &str) -> String {
    source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn db_login_env(db: &RestoredDb, user: &str, password: &str) -> Vec<EnvVar> {
    db.credentials
        .iter()
        .flat_map(|c| {
            [
                secret_env(user.into(), &c.name, c.username_key()),
                secret_env(password.into(), &c.name, c.password_key()),
            ]
        })
        .collect()
}

/// Why a check cannot even start (its database or volume was not restored).
pub fn check_inputs_missing(
    c: &Check,
    dbs: &BTreeMap<String, RestoredDb>,
    vols: &BTreeMap<String, String>,
) -> Option<String> {
    let db = c
        .sql
        .as_ref()
        .map(|s| &s.database)
        .or(c.freshness.as_ref().map(|f| &f.database));
    if let Some(d) = db {
        match dbs.get(d) {
            None => {
                return Some(format!(
                    "database source {d:?} was not restored (the Restore reports no target for it)"
                ));
            }
            Some(r) if r.credentials.is_none() => {
                return Some(format!(
                    "the Restore reports no credentials for database source {d:?}"
                ));
            }
            Some(_) => {}
        }
    }
    let volumes: Vec<&String> = c
        .files
        .iter()
        .map(|f| &f.volume)
        .chain(c.command.iter().flat_map(|x| x.volumes.iter()))
        .collect();
    volumes
        .into_iter()
        .find(|v| !vols.contains_key(*v))
        .map(|v| format!("volume {v:?} was not restored"))
}

/// The Job running check `c` in the sandbox.
#[allow(clippy::too_many_arguments)]
pub fn check_job(
    run: &DrillRun,
    config: &Config,
    c: &Check,
    sandbox: &str,
    store: &StoreTarget,
    rp: &DrillRestorePoint,
    dbs: &BTreeMap<String, RestoredDb>,
    vols: &BTreeMap<String, String>,
    policy: Option<&crate::crd::backup_policy::BackupPolicy>,
    sandbox_token: Option<&str>,
) -> Job {
    let name = check_job_name(&run.name_any(), &c.name);
    let timeout = check_timeout(c);
    // Checks are sandbox pods like any other: the sandbox's isolation applies to them
    // (an HTTP check reaches only the sandbox). Only a check that reads the repository
    // carries the token that lets it out (see drill_run::sandbox).
    let mut lbl = run_labels(run, "drill-check");
    if let (Some(sql), Some(t)) = (&c.sql, sandbox_token)
        && sql.matches_backup
    {
        lbl.insert(labels::SANDBOX_TOKEN.into(), t.into());
    }
    lbl.insert(labels::JOB_TYPE.into(), "check".into());
    lbl.insert(labels::SOURCE.into(), jobs::label_value(&c.name));
    let ann = run_annotations(run);
    let deadline = timeout.as_secs().max(1) as i64;
    if let Some(cmd) = &c.command {
        return command_job(cmd, &name, sandbox, lbl, ann, deadline, dbs, vols);
    }
    let mut env = Vec::new();
    let mut mounts = Vec::new();
    let mut image = config.mover_image.clone();
    let mut root = false;
    let db_target = |db: &RestoredDb| DbTarget {
        engine: db.engine.into(),
        host: db.host.clone(),
        port: Some(db.port),
        database: db.database.clone(),
    };
    let check = if let Some(sql) = &c.sql {
        let db = &dbs[&sql.database];
        image = config.mover_db_image.clone();
        env.extend(db_login_env(db, "LIFEBOAT_DB_USER", "LIFEBOAT_DB_PASSWORD"));
        let test = if sql.matches_backup {
            SqlTest::MatchesBackup {
                snapshot: rp.snapshots.get(&sql.database).cloned().unwrap_or_default(),
            }
        } else {
            SqlTest::Query {
                query: sql.query.clone().unwrap_or_default(),
                expect: sql.expect.clone().unwrap_or_default(),
            }
        };
        CheckCommand::Sql(CheckSql {
            db: db_target(db),
            test,
        })
    } else if let Some(f) = &c.freshness {
        let db = &dbs[&f.database];
        image = config.mover_db_image.clone();
        env.extend(db_login_env(db, "LIFEBOAT_DB_USER", "LIFEBOAT_DB_PASSWORD"));
        CheckCommand::Freshness(CheckFreshness {
            db: db_target(db),
            query: f.query.clone(),
        })
    } else if let Some(f) = &c.files {
        root = true;
        let mount = format!("/volumes/{}", f.volume);
        mounts.push(DataMount {
            claim: vols[&f.volume].clone(),
            mount_path: mount.clone(),
            read_only: true,
        });
        CheckCommand::Files(CheckFiles {
            root: mount.into(),
            exist: f.exist.clone(),
            checksums: f
                .checksums
                .iter()
                .map(|d| FileDigest {
                    path: d.path.clone(),
                    sha256: d.sha256.as_ref().map(|h| h.to_ascii_lowercase()),
                })
                .collect(),
            snapshot: rp.snapshots.get(&f.volume).cloned(),
        })
    } else {
        // The drill's spec check admits exactly one kind per check, so this is `http`.
        let h = c.http.clone().unwrap_or_default();
        CheckCommand::Http(CheckHttp {
            url: h.url,
            expect_status: h.expect_status.unwrap_or(200),
            timeout_seconds: timeout.as_secs().max(1),
        })
    };
    let mut job = mover::build(&MoverJob {
        name,
        namespace: sandbox.into(),
        labels: lbl,
        // Required by the builder, removed below.
        owner: run
            .controller_owner_ref(&())
            .expect("a stored DrillRun has a name and uid"),
        image,
        image_pull_policy: config.image_pull_policy.clone(),
        service_account: config.mover_service_account.clone(),
        command: MoverCommand::Check(check),
        env,
        store: store.clone(),
        mounts,
        node_name: None,
        // Checks run where the policy's movers may run: the same nodes reach the store.
        node_selector: policy
            .map(|p| p.spec.mover.node_selector.clone())
            .unwrap_or_default(),
        tolerations: policy
            .map(|p| p.spec.mover.tolerations.clone())
            .unwrap_or_default(),
        active_deadline_seconds: deadline,
        backoff_limit: 0,
        resources: None,
        privilege: if root {
            Privilege::ReadAnyOwner
        } else {
            Privilege::Unprivileged
        },
    });
    // NB: an owner in another namespace is not allowed (the garbage collector would delete
    // the Job at once); the sandbox's deletion removes it.
    job.metadata.owner_references = None;
    job.metadata.annotations = Some(ann);
    job
}

#[allow(clippy::too_many_arguments)]
fn command_job(
    cmd: &crate::crd::dr_drill::CommandCheck,
    name: &str,
    sandbox: &str,
    mut lbl: BTreeMap<String, String>,
    ann: BTreeMap<String, String>,
    deadline: i64,
    dbs: &BTreeMap<String, RestoredDb>,
    vols: &BTreeMap<String, String>,
) -> Job {
    // The user's program: the sandbox's network isolation applies to it, always.
    lbl.remove(labels::SANDBOX_TOKEN);
    let mut env = Vec::new();
    for (source, db) in dbs {
        let n = env_name(source);
        env.push(plain_env(format!("LIFEBOAT_DB_{n}_HOST"), db.host.clone()));
        env.push(plain_env(
            format!("LIFEBOAT_DB_{n}_PORT"),
            db.port.to_string(),
        ));
        env.push(plain_env(
            format!("LIFEBOAT_DB_{n}_DATABASE"),
            db.database.clone(),
        ));
        env.extend(db_login_env(
            db,
            &format!("LIFEBOAT_DB_{n}_USER"),
            &format!("LIFEBOAT_DB_{n}_PASSWORD"),
        ));
    }
    env.extend(cmd.env.iter().cloned());
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, v) in cmd.volumes.iter().enumerate() {
        let vname = format!("volume-{i}");
        volumes.push(Volume {
            name: vname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: vols.get(v).cloned().unwrap_or_else(|| v.clone()),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: vname,
            mount_path: format!("/volumes/{v}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let container = Container {
        name: "check".into(),
        image: Some(cmd.image.clone()),
        command: (!cmd.command.is_empty()).then(|| cmd.command.clone()),
        args: (!cmd.args.is_empty()).then(|| cmd.args.clone()),
        env: Some(env),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        // A command check is the user's own program: it runs unprivileged, as a pod of a
        // `restricted` sandbox must (a program that needs root fails, with the pod's
        // reason, instead of lowering the sandbox's level).
        security_context: Some(security::container(Privilege::Unprivileged, None)),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(sandbox.into()),
            labels: Some(lbl.clone()),
            annotations: Some(ann),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(lbl),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(security::pod(Privilege::Unprivileged, None)),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The result of a check whose Job exists; `None` while it runs. The second value says
/// the Job must be stopped (its pod can never start, or it overran).
pub fn judge(pods: &[Pod], now: Timestamp, c: &Check, job: &Job) -> (Option<CheckResult>, bool) {
    let is_command = c.command.is_some();
    let container = if is_command { "check" } else { "mover" };
    let mut r = CheckResult {
        name: c.name.clone(),
        type_: check_type(c).into(),
        ..CheckResult::default()
    };
    let created = job
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let term = terminated(pods, job, container);
    let end = term
        .and_then(|t| t.finished_at.as_ref())
        .map_or(now, |t| t.0.min(now));
    let took = term.and_then(|t| {
        Some(measure::seconds_between(
            t.started_at.as_ref()?.0,
            t.finished_at.as_ref()?.0,
        ))
    });
    let timeout = check_timeout(c);
    let timed_out = || {
        format!(
            "the check did not finish within its timeout of {}",
            duration::format(timeout)
        )
    };
    match job_finished(job) {
        None => {
            if let Some(why) = stuck(pods, job) {
                r.result = CheckVerdict::Error;
                r.message = Some(summarise(&format!("the check cannot start: {why}"), 700));
                r.end_time = Some(MicroTime(now));
                return (Some(r), true);
            }
            if elapsed(created, now) > timeout + CHECK_GRACE {
                r.result = CheckVerdict::Error;
                r.message = Some(timed_out());
                r.end_time = Some(MicroTime(now));
                return (Some(r), true);
            }
            (None, false)
        }
        Some(ok) => {
            r.end_time = Some(MicroTime(end));
            r.duration_seconds = took;
            let message = term.and_then(|t| t.message.clone()).unwrap_or_default();
            if is_command {
                let code = term.map(|t| t.exit_code);
                r.observed = Some(match code {
                    Some(c) => format!("exit code {c}"),
                    None => "no exit code".into(),
                });
                r.expected = Some("exit code 0".into());
                let m = message.trim();
                if !m.is_empty() {
                    r.message = Some(summarise(m, 700));
                }
                r.result = if ok && code.is_none_or(|c| c == 0) {
                    CheckVerdict::Passed
                } else if job_failed_reason(job).as_deref() == Some("DeadlineExceeded") {
                    r.message = Some(timed_out());
                    CheckVerdict::Error
                } else if code.is_none() {
                    CheckVerdict::Error
                } else {
                    CheckVerdict::Failed
                };
                return (Some(r), false);
            }
            let parsed = MoverResult::parse(&message);
            match parsed {
                Some(m) if m.details.contains_key("verdict") => {
                    let d = &m.details;
                    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
                    r.result = match text("verdict").as_deref() {
                        Some("Passed") => CheckVerdict::Passed,
                        Some("Failed") => CheckVerdict::Failed,
                        _ => CheckVerdict::Error,
                    };
                    r.observed = text("observed");
                    r.expected = text("expected");
                    r.message = text("message");
                    if let Some(t) = text("finishedAt").and_then(|t| t.parse::<Timestamp>().ok()) {
                        r.end_time = Some(MicroTime(t.min(now)));
                    }
                    r.duration_seconds = m.duration_seconds.or(took);
                }
                Some(MoverResult {
                    failure: Some(f), ..
                }) => {
                    r.result = CheckVerdict::Error;
                    r.message = Some(summarise(&format!("{}: {}", f.reason, f.message), 700));
                }
                _ => {
                    r.result = CheckVerdict::Error;
                    r.message = Some(
                        if job_failed_reason(job).as_deref() == Some("DeadlineExceeded") {
                            timed_out()
                        } else {
                            summarise(
                                &format!(
                                    "the check mover ended without a result (exit code {}): {}",
                                    term.map_or("?".into(), |t| t.exit_code.to_string()),
                                    message.trim()
                                ),
                                700,
                            )
                        },
                    );
                }
            }
            (Some(r), false)
        }
    }
}

//! The operator client: commands people run against a cluster with Lifeboat installed.
//! `status` (policies, drills and stores per namespace), `backup now POLICY` (an on-demand
//! Backup), `restore create` (a Restore), `drill now DRILL` (a DrillRun), each optionally
//! following the run to its end with a progress display. Kubeconfig-aware like kubectl:
//! `KUBECONFIG`, `--context`, `-n/--namespace` (default: the context's), `-A`.
//!
//! `backup` and `restore` are also the engine's commands on a repository path
//! (`lifeboat backup /data`, `lifeboat restore SNAPSHOT --target DIR`): [`BackupCmd`] and
//! [`RestoreCmd`] wrap them so that a first word `now` / `create` / `cancel` selects the cluster
//! subcommand and anything else keeps its engine meaning.

pub mod cancel;
pub mod cluster;
pub mod follow;
mod inputs;
pub mod kpis;
pub mod status;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::{CliError, RepoArgs, backup, output::Output, restore};
use crate::crd::backup::{Backup, BackupSpec, PolicyRef, Trigger};
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::dr_drill::{DRDrill, DrillOutcome, DrillPhase, DrillRun, DrillRunSpec};
use crate::crd::restore::{LocalRef, Restore};
use crate::jobs;
use crate::schedule::duration;
use cluster::{Call, Cluster};
use follow::{PlainReporter, RunView};
use inputs::read_status_inputs;
use restore::{RestoreCreateArgs, restore_spec};

/// Where the cluster is: like kubectl's flags.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Kubeconfig context (default: the current context of KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// How long `--wait` may take.
#[derive(Args, Debug, Clone, Default)]
pub struct WaitArgs {
    /// Follow the run until it finishes, with a progress display; exit non-zero if it
    /// fails.
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// With --wait: give up waiting after this long (e.g. `30m`); the run continues.
    #[arg(long, requires = "wait", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError {
            category: "Internal",
            message: format!("cannot start the runtime: {e}"),
        })
}

fn compact_utc(now: Timestamp) -> String {
    now.strftime("%Y%m%d%H%M%S").to_string()
}

/// Name of an object created by hand for `owner`: `<owner>-<what>-<UTC timestamp>`,
/// shortened with a hash when it would exceed 63 characters (Job and label limits).
pub fn manual_name(owner: &str, what: &str, now: Timestamp) -> String {
    jobs::name(&[owner, what, &compact_utc(now)], jobs::MAX_NAME)
}

/// Creates `obj` under `name`; when that name is taken (two commands in one second),
/// retries with `-2`, `-3`... Returns the created object.
async fn create_unique<K>(
    cluster: &Cluster,
    api: &Api<K>,
    mut obj: K,
    call: Call<'_>,
) -> Result<K, CliError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let base = obj.name_any();
    for attempt in 1..=5 {
        if attempt > 1 {
            obj.meta_mut().name = Some(jobs::name(&[&base, &attempt.to_string()], jobs::MAX_NAME));
        }
        match api.create(&PostParams::default(), &obj).await {
            Ok(o) => return Ok(o),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(cluster.explain(&call, e).await),
        }
    }
    Err(CliError {
        category: "KubernetesApi",
        message: format!("{base} and four variants of it already exist; try again"),
    })
}

// ---------------------------------------------------------------------------------------
// status

/// Output format of `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables, one block per namespace.
    #[default]
    Table,
    /// One JSON document (`kind: Status`).
    Json,
}

/// Options of `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    kube: KubeArgs,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Output format (`--json` also selects json).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `status`.
pub fn status(a: StatusArgs, json: bool) -> Result<(), CliError> {
    let StatusArgs {
        kube,
        all_namespaces,
        output,
    } = a;
    let rt = runtime()?;
    let doc = rt.block_on(async {
        let cluster = Cluster::connect(kube.context.as_deref()).await?;
        let ns = (!all_namespaces).then(|| cluster.namespace(kube.namespace.as_deref()));
        let inputs = read_status_inputs(&cluster, ns.as_deref()).await?;
        Ok::<_, CliError>(status::build(&inputs, Timestamp::now()))
    })?;
    if json || output == Format::Json {
        print_json(&doc)
    } else {
        print!("{}", status::render(&doc));
        Ok(())
    }
}

fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError {
        category: "Internal",
        message: format!("serialising output: {e}"),
    })?;
    println!("{s}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// backup now

/// `lifeboat backup`: the engine's `backup PATH...`, or `backup now POLICY`.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Cluster: `lifeboat backup now POLICY` starts an on-demand Backup of a \
                  BackupPolicy; `lifeboat backup cancel NAME` stops a running one. To back up \
                  a directory literally named `now` or `cancel`, write `./now`."
)]
pub struct BackupCmd {
    #[command(subcommand)]
    sub: Option<BackupSub>,
    #[command(flatten)]
    engine: backup::BackupArgs,
}

#[derive(Subcommand, Debug)]
enum BackupSub {
    /// Start an on-demand Backup of a BackupPolicy in the cluster (kubeconfig-aware).
    Now(BackupNowArgs),
    /// Stop a running Backup (phase Cancelled; no snapshot of an unfinished source).
    Cancel(cancel::CancelArgs),
}

/// Options of `backup now`.
#[derive(Args, Debug)]
pub struct BackupNowArgs {
    /// The BackupPolicy.
    policy: String,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    wait: WaitArgs,
}

/// Runs `backup`.
pub fn backup(c: BackupCmd, repo: &RepoArgs, out: &Output) -> Result<(), CliError> {
    match c.sub {
        None => backup::run(c.engine, repo, out),
        Some(BackupSub::Now(a)) => backup_now(a, out.json),
        Some(BackupSub::Cancel(a)) => cancel::backup(a, out.json),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created<'a> {
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<serde_json::Value>,
}

fn backup_now(a: BackupNowArgs, json: bool) -> Result<(), CliError> {
    let BackupNowArgs { policy, kube, wait } = a;
    runtime()?.block_on(async {
        let cluster = Cluster::connect(kube.context.as_deref()).await?;
        let ns = cluster.namespace(kube.namespace.as_deref());
        let policies: Api<BackupPolicy> = Api::namespaced(cluster.client.clone(), &ns);
        if let Err(e) = policies.get(&policy).await {
            return Err(cluster
                .explain(
                    &Call::new("get", "backuppolicies", "BackupPolicy")
                        .ns(&ns)
                        .name(&policy),
                    e,
                )
                .await);
        }
        let api: Api<Backup> = Api::namespaced(cluster.client.clone(), &ns);
        let backup = Backup::new(
            &manual_name(&policy, "manual", Timestamp::now()),
            BackupSpec {
                policy_ref: PolicyRef {
                    name: policy.clone(),
                },
                trigger: Trigger::Manual,
                scheduled_time: None,
            },
        );
        let created = create_unique(
            &cluster,
            &api,
            backup,
            Call::new("create", "backups", "Backup").ns(&ns),
        )
        .await?;
        let name = created.name_any();
        if announce_created("Backup", "backup", &ns, &name, json, wait.wait)? {
            return Ok(());
        }
        let done = follow_run(
            &cluster,
            &api,
            &name,
            &ns,
            "backups",
            &wait,
            json,
            RunView::of_backup,
        )
        .await?;
        finish_run(&done, RunView::of_backup(&done), "BackupFailed", &ns, json)
    })
}

/// Follows a Backup or Restore until it finishes, drawing progress on stderr.
#[allow(clippy::too_many_arguments)]
async fn follow_run<K>(
    cluster: &Cluster,
    api: &Api<K>,
    name: &str,
    ns: &str,
    resource: &'static str,
    wait: &WaitArgs,
    json: bool,
    view: fn(&K) -> RunView,
) -> Result<K, CliError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let tty = std::io::stderr().is_terminal() && !json;
    let mut plain = PlainReporter::new(Duration::from_secs(10));
    let mut drawn = false;
    let interval = Duration::from_millis(if tty { 500 } else { 1000 });
    let result = follow::poll(api, name, interval, wait.timeout, |obj: &K, elapsed| {
        let v = view(obj);
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{}", follow::progress_line(&v, elapsed));
            drawn = true;
        } else if !json {
            for line in plain.observe(&v, elapsed) {
                let _ = writeln!(err, "{line}");
            }
        }
        let _ = err.flush();
        v.finished.then(|| obj.clone())
    })
    .await;
    if drawn {
        eprintln!();
    }
    match result? {
        Ok(obj) => Ok(obj),
        Err(e) => {
            let kind = if resource == "backups" {
                "Backup"
            } else {
                "Restore"
            };
            Err(cluster
                .explain(&Call::new("get", resource, kind).ns(ns).name(name), e)
                .await)
        }
    }
}

fn finish_run<K: Serialize + kube::Resource>(
    obj: &K,
    v: RunView,
    category: &'static str,
    ns: &str,
    json: bool,
) -> Result<(), CliError> {
    if json {
        let status = serde_json::to_value(obj)
            .ok()
            .and_then(|o| o.get("status").cloned());
        print_json(&Created {
            kind: v.kind,
            namespace: ns,
            name: &v.name,
            phase: Some(v.phase.clone()),
            status,
        })?;
    } else {
        print!("{}", follow::run_summary(&v));
    }
    if v.succeeded {
        Ok(())
    } else {
        Err(follow::run_failure(&v, category))
    }
}

// ---------------------------------------------------------------------------------------
// restore create

/// `lifeboat restore`: the engine's `restore SNAPSHOT --target DIR`, or `restore create`.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Cluster: `lifeboat restore create --policy P ...` creates a Restore object; \
                  `lifeboat restore cancel NAME` stops a running one. (Snapshot IDs are \
                  hexadecimal, so `create` and `cancel` are never one.)"
)]
pub struct RestoreCmd {
    #[command(subcommand)]
    sub: Option<RestoreSub>,
    #[command(flatten)]
    engine: restore::RestoreArgs,
}

#[derive(Subcommand, Debug)]
enum RestoreSub {
    /// Create a Restore in the cluster: a restore point of a policy into a namespace.
    Create(Box<RestoreCreateArgs>),
    /// List the restore points stores' repositories hold, by policy identity (from the
    /// controller's catalog in each store's status).
    Points(super::points::PointsArgs),
    /// Stop a running Restore (phase Cancelled; PVCs it had not finished are removed).
    Cancel(cancel::CancelArgs),
}

/// Runs `restore`.
pub fn restore(c: RestoreCmd, repo: &RepoArgs, out: &Output) -> Result<(), CliError> {
    match c.sub {
        None => restore::run_restore(c.engine, repo, out),
        Some(RestoreSub::Create(a)) => restore_create(*a, out.json),
        Some(RestoreSub::Points(a)) => super::points::run(a, out.json),
        Some(RestoreSub::Cancel(a)) => cancel::restore(a, out.json),
    }
}

fn restore_create(a: RestoreCreateArgs, json: bool) -> Result<(), CliError> {
    let spec = restore_spec(&a)?;
    let RestoreCreateArgs {
        policy,
        backup,
        name,
        kube,
        wait,
        to_namespace,
        store,
        from_policy,
        ..
    } = a;
    // From a store, --backup names a run in the repository, not a Backup object, and
    // the policy lives (or lived) in another namespace: nothing here to check first.
    let (backup, from_store_policy) = match &store {
        Some(_) => (
            None,
            from_policy.and_then(|f| f.split_once('/').map(|(_, p)| p.to_string())),
        ),
        None => (backup, None),
    };
    runtime()?.block_on(async {
        let cluster = Cluster::connect(kube.context.as_deref()).await?;
        let ns = cluster.namespace(kube.namespace.as_deref());
        // Check the references first: a typo should fail here, not minutes later in status.
        if let Some(b) = &backup {
            let api: Api<Backup> = Api::namespaced(cluster.client.clone(), &ns);
            let found = match api.get(b).await {
                Ok(f) => f,
                Err(e) => {
                    return Err(cluster
                        .explain(&Call::new("get", "backups", "Backup").ns(&ns).name(b), e)
                        .await);
                }
            };
            if let Some(p) = &policy
                && &found.spec.policy_ref.name != p
            {
                return Err(CliError::input(format!(
                    "Backup {b} belongs to policy {}, not {p}",
                    found.spec.policy_ref.name
                )));
            }
        } else if let Some(p) = &policy {
            let api: Api<BackupPolicy> = Api::namespaced(cluster.client.clone(), &ns);
            if let Err(e) = api.get(p).await {
                return Err(cluster
                    .explain(
                        &Call::new("get", "backuppolicies", "BackupPolicy")
                            .ns(&ns)
                            .name(p),
                        e,
                    )
                    .await);
            }
        }
        if let Some(t) = &to_namespace {
            cluster.require_namespace(t).await?;
        }
        let owner = backup
            .as_deref()
            .or(policy.as_deref())
            .or(from_store_policy.as_deref())
            .unwrap_or("restore");
        let name = name.unwrap_or_else(|| manual_name(owner, "restore", Timestamp::now()));
        let api: Api<Restore> = Api::namespaced(cluster.client.clone(), &ns);
        let created = create_unique(
            &cluster,
            &api,
            Restore::new(&name, spec),
            Call::new("create", "restores", "Restore").ns(&ns),
        )
        .await?;
        let name = created.name_any();
        if announce_created("Restore", "restore", &ns, &name, json, wait.wait)? {
            return Ok(());
        }
        let done = follow_run(
            &cluster,
            &api,
            &name,
            &ns,
            "restores",
            &wait,
            json,
            RunView::of_restore,
        )
        .await?;
        finish_run(
            &done,
            RunView::of_restore(&done),
            "RestoreFailed",
            &ns,
            json,
        )
    })
}

/// Prints what `backup now`, `restore create` and `drill now` created (a kubectl-like line,
/// or the JSON document when not waiting); true when the command ends here (no --wait).
fn announce_created(
    kind: &str,
    resource: &str,
    ns: &str,
    name: &str,
    json: bool,
    wait: bool,
) -> Result<bool, CliError> {
    if !json {
        println!("{resource}.lifeboat.dev/{name} created in namespace {ns}");
    }
    if !wait && json {
        print_json(&Created {
            kind,
            namespace: ns,
            name,
            phase: None,
            status: None,
        })?;
    }
    Ok(!wait)
}

// ---------------------------------------------------------------------------------------
// drill now

/// Options of `drill now` (the namespace and context come from the `drill` command).
#[derive(Args, Debug)]
pub struct DrillNowArgs {
    /// The DRDrill.
    pub drill: String,
    #[command(flatten)]
    wait: WaitArgs,
}

/// Runs `drill now`: creates a DrillRun of the drill and, with --wait, narrates its phases
/// and prints the outcome, RTO/RPO against the objectives and any failing check.
pub fn drill_now(a: DrillNowArgs, kube: KubeArgs, json: bool) -> Result<(), CliError> {
    let DrillNowArgs { drill, wait } = a;
    runtime()?.block_on(async {
        let cluster = Cluster::connect(kube.context.as_deref()).await?;
        let ns = cluster.namespace(kube.namespace.as_deref());
        let drills: Api<DRDrill> = Api::namespaced(cluster.client.clone(), &ns);
        if let Err(e) = drills.get(&drill).await {
            return Err(cluster
                .explain(
                    &Call::new("get", "drdrills", "DRDrill").ns(&ns).name(&drill),
                    e,
                )
                .await);
        }
        let api: Api<DrillRun> = Api::namespaced(cluster.client.clone(), &ns);
        let run = DrillRun::new(
            &manual_name(&drill, "manual", Timestamp::now()),
            DrillRunSpec {
                drill_ref: LocalRef {
                    name: drill.clone(),
                },
                trigger: Trigger::Manual,
                scheduled_time: None,
            },
        );
        let created = create_unique(
            &cluster,
            &api,
            run,
            Call::new("create", "drillruns", "DrillRun").ns(&ns),
        )
        .await?;
        let name = created.name_any();
        if announce_created("DrillRun", "drillrun", &ns, &name, json, wait.wait)? {
            return Ok(());
        }
        let mut prev: Option<DrillPhase> = None;
        let result = follow::poll(
            &api,
            &name,
            Duration::from_secs(1),
            wait.timeout,
            |run: &DrillRun, _| {
                let st = run.status.clone().unwrap_or_default();
                if !json {
                    for line in follow::drill_phase_lines(prev, &st) {
                        eprintln!("{line}");
                    }
                }
                prev = st.phase.or(prev);
                (st.phase == Some(DrillPhase::Completed)).then(|| run.clone())
            },
        )
        .await?;
        let run = match result {
            Ok(r) => r,
            Err(e) => {
                return Err(cluster
                    .explain(
                        &Call::new("get", "drillruns", "DrillRun")
                            .ns(&ns)
                            .name(&name),
                        e,
                    )
                    .await);
            }
        };
        let st = run.status.clone().unwrap_or_default();
        if json {
            print_json(&Created {
                kind: "DrillRun",
                namespace: &ns,
                name: &name,
                phase: st.outcome.map(|o| format!("{o:?}")),
                status: serde_json::to_value(&st).ok(),
            })?;
        } else {
            print!("{}", follow::drill_summary(&run));
        }
        match st.outcome {
            Some(DrillOutcome::Passed) => Ok(()),
            _ => {
                let why = st
                    .failure
                    .map(|f| format!("{}: {}: {}", f.step, f.failure.reason, f.failure.message))
                    .unwrap_or_else(|| "no failure recorded".into());
                let how = if st.outcome == Some(DrillOutcome::Cancelled) {
                    "was cancelled"
                } else {
                    "failed"
                };
                Err(CliError {
                    category: "DrillFailed",
                    message: format!("DrillRun {name} {how} at {why}"),
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn backup_path_and_backup_now_both_parse() {
        // The engine's command is untouched: paths, including one literally `./now`.
        for args in [
            vec!["lifeboat", "backup", "/data"],
            vec!["lifeboat", "backup", "./now"],
            vec!["lifeboat", "backup", "/data", "now"],
            vec!["lifeboat", "backup", "--tag", "x", "/a", "/b"],
        ] {
            match parse(&args).command {
                Command::Backup(BackupCmd { sub: None, .. }) => {}
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        match parse(&["lifeboat", "backup", "now", "shop", "-n", "prod", "--wait"]).command {
            Command::Backup(BackupCmd {
                sub: Some(BackupSub::Now(a)),
                ..
            }) => {
                assert_eq!(a.policy, "shop");
                assert_eq!(a.kube.namespace.as_deref(), Some("prod"));
                assert!(a.wait.wait);
            }
            other => panic!("parsed as {other:?}"),
        }
        // `now` is the subcommand only as the first word; after an option it is a path.
        match parse(&["lifeboat", "backup", "--tag", "x", "now"]).command {
            Command::Backup(BackupCmd { sub: None, .. }) => {}
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            Cli::try_parse_from(["lifeboat", "backup", "now"]).is_err(),
            "POLICY needed"
        );
        assert!(
            Cli::try_parse_from(["lifeboat", "backup"]).is_err(),
            "paths still required"
        );
        assert!(
            Cli::try_parse_from(["lifeboat", "backup", "now", "p", "--timeout", "5m"]).is_err(),
            "--timeout needs --wait"
        );
    }

    #[test]
    fn restore_snapshot_and_restore_create_both_parse() {
        match parse(&["lifeboat", "restore", "latest", "--target", "/tmp/t"]).command {
            Command::Restore(RestoreCmd { sub: None, .. }) => {}
            other => panic!("parsed as {other:?}"),
        }
        let c = parse(&[
            "lifeboat",
            "restore",
            "create",
            "--policy",
            "shop",
            "--to-namespace",
            "shop-copy",
            "--volume",
            "data",
            "--database",
            "pg",
            "--into-ephemeral",
            "--manifests",
            "--wait",
        ]);
        let Command::Restore(RestoreCmd {
            sub: Some(RestoreSub::Create(a)),
            ..
        }) = c.command
        else {
            panic!("not restore create");
        };
        let spec = restore_spec(&a).unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({
                "source": {"policyRef": {"name": "shop"}},
                "targetNamespace": "shop-copy",
                "volumes": {"include": ["data"]},
                "databases": [{"source": "pg", "ephemeral": {}}],
                "manifests": {"suppressSideEffects": false, "scaleToZero": false}
            })
        );
        assert!(a.wait.wait);
        for bad in [
            vec!["lifeboat", "restore", "create"],
            vec![
                "lifeboat",
                "restore",
                "create",
                "--policy",
                "p",
                "--database",
                "pg",
            ],
            vec![
                "lifeboat",
                "restore",
                "create",
                "--backup",
                "b",
                "--point-in-time",
                "2026-01-01T00:00:00Z",
            ],
            vec![
                "lifeboat",
                "restore",
                "create",
                "--policy",
                "p",
                "--database",
                "pg",
                "--into-host",
                "h",
            ],
            vec![
                "lifeboat",
                "restore",
                "create",
                "--policy",
                "p",
                "--database",
                "pg",
                "--into-ephemeral",
                "--into-host",
                "h",
                "--credentials",
                "c",
            ],
        ] {
            assert!(
                Cli::try_parse_from(&bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn restore_specs_for_a_backup_and_an_existing_server() {
        let c = parse(&[
            "lifeboat",
            "restore",
            "create",
            "--backup",
            "shop-202603040500",
            "--database",
            "pg",
            "--into-host",
            "pg.db.svc",
            "--port",
            "5433",
            "--credentials",
            "pg-admin",
            "--target-database",
            "orders_copy",
            "--create-database",
        ]);
        let Command::Restore(RestoreCmd {
            sub: Some(RestoreSub::Create(a)),
            ..
        }) = c.command
        else {
            panic!("not restore create");
        };
        assert_eq!(
            serde_json::to_value(restore_spec(&a).unwrap()).unwrap(),
            serde_json::json!({
                "source": {"backupRef": {"name": "shop-202603040500"}},
                "databases": [{"source": "pg", "target": {"host": "pg.db.svc", "port": 5433,
                    "database": "orders_copy", "credentials": {"name": "pg-admin"},
                    "createDatabase": true}}]
            })
        );
        let c = parse(&[
            "lifeboat",
            "restore",
            "create",
            "--policy",
            "p",
            "--point-in-time",
            "yesterday",
        ]);
        let Command::Restore(RestoreCmd {
            sub: Some(RestoreSub::Create(a)),
            ..
        }) = c.command
        else {
            panic!("not restore create");
        };
        let e = restore_spec(&a).unwrap_err();
        assert_eq!(e.category, "InvalidInput");
        assert!(e.message.contains("RFC 3339"), "{}", e.message);
    }

    #[test]
    fn status_and_drill_now_parse() {
        match parse(&[
            "lifeboat",
            "status",
            "-A",
            "-o",
            "json",
            "--context",
            "prod",
        ])
        .command
        {
            Command::Status(a) => {
                assert!(a.all_namespaces);
                assert_eq!(a.output, Format::Json);
                assert_eq!(a.kube.context.as_deref(), Some("prod"));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["lifeboat", "status", "-A", "-n", "x"]).is_err());
        let c = parse(&["lifeboat", "drill", "now", "weekly", "-n", "shop", "--wait"]);
        assert!(matches!(c.command, Command::Drill(_)), "{:?}", c.command);
    }

    #[test]
    fn manual_names_carry_the_utc_time_and_fit_63_characters() {
        let now: Timestamp = "2026-03-04T05:06:07Z".parse().unwrap();
        assert_eq!(
            manual_name("shop", "manual", now),
            "shop-manual-20260304050607"
        );
        let long = "p".repeat(60);
        let n = manual_name(&long, "manual", now);
        assert!(n.len() <= 63, "{n}");
        assert_ne!(
            n,
            manual_name(&long, "manual", now + jiff::SignedDuration::from_secs(1))
        );
    }

    #[tokio::test]
    async fn status_against_a_cluster_without_crds_says_so() {
        let url = cluster::fake::serve(vec![]).await;
        let cluster = Cluster::plain(&url);
        let e = read_status_inputs(&cluster, Some("shop"))
            .await
            .unwrap_err();
        assert_eq!(e.category, "CrdsMissing");
        assert!(
            e.message
                .starts_with("the Lifeboat CRDs are not installed in this cluster: "),
            "{}",
            e.message
        );
    }
}

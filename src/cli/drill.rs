//! `lifeboat drill report RUN` (fetch a run's evidence report from the store, verify its
//! SHA-256 against the DrillRun, print or save it) and `lifeboat drill verify-chain DRILL`
//! (walk every report of a drill, check each digest and every chain link, print a verdict,
//! exit non-zero on a break). Kubeconfig-aware like kubectl (`KUBECONFIG`, `--context`,
//! `-n`, the context's namespace by default).
//!
//! The store is found through the cluster (run → drill → policy → store), and its
//! credentials are read from the store's Secret unless `--s3-access-key-id` (or the AWS
//! environment, with `--s3-env-credentials`) is given; `--repo` overrides the location,
//! for a store whose in-cluster endpoint is not reachable from where the command runs.
//! Reports are plain objects: reading them never needs the repository password.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use kube::api::{Api, ListParams};
use kube::config::KubeConfigOptions;
use kube::{Client, ResourceExt};

use super::{CliError, RepoArgs};
use crate::crd::backup_policy::{BackupPolicy, StoreKind};
use crate::crd::dr_drill::{DRDrill, DrillRun};
use crate::crd::labels;
use crate::crd::store::{BackupStore, BackupStoreSpec, ClusterBackupStore};
use crate::drill::chain::{self, Anchors};
use crate::drill::report::{self, Report};
use crate::drill::store::{ReportStore, base_location};
use crate::jobs;
use crate::repo::{ObjectStore, RepoOptions, S3Credentials, Secret, Storage};

/// `drill` subcommands.
#[derive(Args, Debug)]
pub struct DrillCmd {
    #[command(subcommand)]
    cmd: DrillSub,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Use the AWS credential chain (AWS_ACCESS_KEY_ID, profiles, ...) instead of the
    /// store's Secret.
    #[arg(long, global = true)]
    s3_env_credentials: bool,
}

/// Where to find the cluster and how to reach the store.
struct KubeArgs {
    namespace: Option<String>,
    context: Option<String>,
    s3_env_credentials: bool,
}

#[derive(Subcommand, Debug)]
enum DrillSub {
    /// Print or save a DrillRun's evidence report, after checking its SHA-256.
    Report(ReportArgs),
    /// Verify every report of a drill and the hash chain linking them.
    VerifyChain(VerifyArgs),
    /// Start a run of a DRDrill now; with --wait, follow it and print the outcome.
    Now(super::ops::DrillNowArgs),
}

/// Which form of the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The human-readable page.
    #[default]
    Markdown,
    /// The JSON record (the bytes the chain hashes).
    Json,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// The DrillRun.
    run: String,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Markdown page or JSON record.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The DRDrill.
    drill: String,
}

fn kube_err(what: &str, e: kube::Error) -> CliError {
    let category = match &e {
        kube::Error::Api(s) if s.code == 403 => "Forbidden",
        kube::Error::Api(s) if s.code == 404 => "NotFound",
        kube::Error::Api(_) => "KubernetesApi",
        _ => "KubernetesClient",
    };
    CliError {
        category,
        message: format!("{what}: {e}"),
    }
}

fn not_found(message: String) -> CliError {
    CliError {
        category: "NotFound",
        message,
    }
}

fn broken(message: String) -> CliError {
    CliError {
        category: "ChainBroken",
        message,
    }
}

async fn client(context: Option<String>) -> Result<Client, CliError> {
    let opts = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let config = match kube::Config::from_kubeconfig(&opts).await {
        Ok(c) => c,
        // No kubeconfig: inside a pod, the in-cluster configuration.
        Err(_) if opts.context.is_none() => kube::Config::infer().await.map_err(|e| CliError {
            category: "KubernetesClient",
            message: format!("no Kubernetes configuration (KUBECONFIG or in-cluster): {e}"),
        })?,
        Err(e) => {
            return Err(CliError {
                category: "KubernetesClient",
                message: format!("reading the kubeconfig: {e}"),
            });
        }
    };
    Client::try_from(config).map_err(|e| kube_err("building a Kubernetes client", e))
}

/// What the store's Secrets hold, for a client outside the cluster.
struct StoreAccess {
    spec: BackupStoreSpec,
    access_key: Option<(String, Secret, Option<Secret>)>,
    ca_bundle: Option<Vec<u8>>,
}

async fn secret_value(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<Vec<u8>>, CliError> {
    let s = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| kube_err(&format!("reading Secret {ns}/{name}"), e))?;
    let v = s.and_then(|s| s.data).and_then(|mut d| d.remove(key));
    match v {
        Some(b) => Ok(Some(b.0)),
        None if optional => Ok(None),
        None => Err(not_found(format!("Secret {ns}/{name} has no key {key:?}"))),
    }
}

async fn store_access(
    client: &Client,
    ns: &str,
    policy_name: &str,
    env_credentials: bool,
) -> Result<StoreAccess, CliError> {
    let policy = Api::<BackupPolicy>::namespaced(client.clone(), ns)
        .get_opt(policy_name)
        .await
        .map_err(|e| kube_err("reading the BackupPolicy", e))?
        .ok_or_else(|| not_found(format!("BackupPolicy {ns}/{policy_name} does not exist")))?;
    let store = &policy.spec.store_ref;
    let (spec, secret_ns) = match store.kind {
        StoreKind::BackupStore => {
            let s = Api::<BackupStore>::namespaced(client.clone(), ns)
                .get_opt(&store.name)
                .await
                .map_err(|e| kube_err("reading the BackupStore", e))?
                .ok_or_else(|| {
                    not_found(format!("BackupStore {ns}/{} does not exist", store.name))
                })?;
            (s.spec, Some(ns.to_string()))
        }
        StoreKind::ClusterBackupStore => {
            let s = Api::<ClusterBackupStore>::all(client.clone())
                .get_opt(&store.name)
                .await
                .map_err(|e| kube_err("reading the ClusterBackupStore", e))?
                .ok_or_else(|| {
                    not_found(format!("ClusterBackupStore {} does not exist", store.name))
                })?;
            (s.spec.store, None)
        }
    };
    let ns_of = |explicit: &Option<String>| {
        explicit
            .clone()
            .or(secret_ns.clone())
            .unwrap_or_else(|| ns.to_string())
    };
    let mut access_key = None;
    if let (Some(c), false) = (&spec.s3.credentials, env_credentials) {
        let sns = ns_of(&c.namespace);
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).trim().to_string();
        let id = secret_value(client, &sns, &c.name, c.access_key_id_key(), false).await?;
        let key = secret_value(client, &sns, &c.name, c.secret_access_key_key(), false).await?;
        let token = secret_value(client, &sns, &c.name, c.session_token_key(), true).await?;
        access_key = Some((
            text(id.unwrap_or_default()),
            Secret::new(text(key.unwrap_or_default())),
            token.map(|t| Secret::new(text(t))),
        ));
    }
    let ca_bundle = match &spec.s3.ca_bundle {
        Some(ca) => secret_value(client, &ns_of(&ca.namespace), &ca.name, &ca.key, false).await?,
        None => None,
    };
    Ok(StoreAccess {
        spec,
        access_key,
        ca_bundle,
    })
}

/// A private temporary file for the store's CA bundle, removed when dropped.
struct TempCa(Option<PathBuf>);

impl Drop for TempCa {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Opens the reports of a store. Blocking: call outside the async runtime.
fn open_reports(
    access: StoreAccess,
    repo: &RepoArgs,
    ca_file: &mut TempCa,
) -> Result<ReportStore, CliError> {
    let spec = &access.spec;
    let mut repo = repo.clone();
    if repo.repository.is_none() {
        let target = crate::jobs::mover::StoreTarget::from_spec(spec, None);
        repo.repository = Some(target.repository);
        repo.s3.s3_region = Some(target.region);
        repo.s3.s3_path_style = target.path_style;
    }
    let mut opts: RepoOptions = repo.options(true)?;
    if let Storage::S3(c) = &mut opts.storage {
        if repo.s3.s3_access_key_id.is_none()
            && let Some((id, key, token)) = access.access_key
        {
            c.credentials = S3Credentials::Static {
                access_key_id: id,
                secret_access_key: key,
                session_token: token,
            };
        }
        if c.ca_bundle.is_none()
            && let Some(pem) = &access.ca_bundle
        {
            let path = std::env::temp_dir().join(format!(
                "lifeboat-drill-ca-{}-{:08x}.pem",
                std::process::id(),
                rand::random::<u32>()
            ));
            ca_file.0 = Some(path.clone());
            std::fs::write(&path, pem).map_err(|e| CliError {
                category: "LocalIo",
                message: format!("writing the store's CA bundle: {e}"),
            })?;
            c.ca_bundle = Some(path);
        }
    }
    let store: Arc<dyn ObjectStore> = opts.object_store()?;
    Ok(ReportStore::new(store, base_location(&opts.storage)))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError {
            category: "Internal",
            message: format!("no runtime: {e}"),
        })
}

fn get(store: &ReportStore, key: &str) -> Result<Vec<u8>, CliError> {
    store
        .get(key)
        .map_err(crate::repo::Error::Storage)?
        .ok_or_else(|| {
            not_found(format!(
                "{} does not exist in the store",
                store.location(key)
            ))
        })
}

fn report(a: ReportArgs, d: &KubeArgs, repo: &RepoArgs) -> Result<(), CliError> {
    let ns = d.namespace.clone();
    let rt = runtime()?;
    let (run, access) = rt.block_on(async {
        let client = client(d.context.clone()).await?;
        let ns = ns.unwrap_or_else(|| client.default_namespace().to_string());
        let run = Api::<DrillRun>::namespaced(client.clone(), &ns)
            .get_opt(&a.run)
            .await
            .map_err(|e| kube_err("reading the DrillRun", e))?
            .ok_or_else(|| not_found(format!("DrillRun {ns}/{} does not exist", a.run)))?;
        let policy = match run.status.as_ref().and_then(|s| s.drill_spec.as_ref()) {
            Some(s) => s.policy_ref.name.clone(),
            None => {
                Api::<DRDrill>::namespaced(client.clone(), &ns)
                    .get(&run.spec.drill_ref.name)
                    .await
                    .map_err(|e| kube_err("reading the DRDrill", e))?
                    .spec
                    .policy_ref
                    .name
            }
        };
        let access = store_access(&client, &ns, &policy, d.s3_env_credentials).await?;
        Ok::<_, CliError>((run, access))
    })?;
    drop(rt);
    let status = run.status.clone().unwrap_or_default();
    let Some(rref) = status.report else {
        return Err(not_found(format!(
            "DrillRun {} has no report yet (phase {:?})",
            run.name_any(),
            status.phase.unwrap_or_default()
        )));
    };
    let mut ca_file = TempCa(None);
    let store = open_reports(access, repo, &mut ca_file)?;
    let key = store.key_of(&rref.location).or_else(|| {
        // Another location given with --repo: the key is the same below the root.
        rref.location
            .find(crate::drill::store::REPORTS_DIR)
            .map(|i| rref.location[i..].to_string())
    });
    let key =
        key.ok_or_else(|| not_found(format!("cannot read report location {}", rref.location)))?;
    let bytes = get(&store, &key)?;
    let sha = report::sha256(&bytes);
    if sha != rref.sha256 {
        return Err(broken(format!(
            "the report {} was modified: it hashes to {sha}, but DrillRun {} recorded {}",
            rref.location,
            run.name_any(),
            rref.sha256
        )));
    }
    let out = match a.format {
        Format::Json => bytes,
        Format::Markdown => {
            let r: Report = serde_json::from_slice(&bytes)
                .map_err(|e| broken(format!("the report is not readable: {e}")))?;
            let page = r
                .page
                .as_ref()
                .ok_or_else(|| broken("the report names no page".into()))?;
            let page_bytes = get(&store, &page.key)?;
            if report::sha256(&page_bytes) != page.sha256 {
                return Err(broken(format!(
                    "the page {} was modified: it does not hash to the {} its report records",
                    store.location(&page.key),
                    page.sha256
                )));
            }
            page_bytes
        }
    };
    match a.output {
        Some(path) => {
            std::fs::write(&path, &out).map_err(|e| CliError {
                category: "LocalIo",
                message: format!("writing {}: {e}", path.display()),
            })?;
            eprintln!(
                "report of {} verified (sha256 {sha}) and saved to {}",
                run.name_any(),
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&out);
            let _ = stdout.flush();
        }
    }
    Ok(())
}

fn verify_chain(a: VerifyArgs, d: &KubeArgs, repo: &RepoArgs, json: bool) -> Result<(), CliError> {
    let ns = d.namespace.clone();
    let rt = runtime()?;
    let (ns, drill, runs, access) = rt.block_on(async {
        let client = client(d.context.clone()).await?;
        let ns = ns.unwrap_or_else(|| client.default_namespace().to_string());
        let drill = Api::<DRDrill>::namespaced(client.clone(), &ns)
            .get_opt(&a.drill)
            .await
            .map_err(|e| kube_err("reading the DRDrill", e))?
            .ok_or_else(|| not_found(format!("DRDrill {ns}/{} does not exist", a.drill)))?;
        let lp = ListParams::default().labels(&format!(
            "{}={}",
            labels::DRILL,
            jobs::label_value(&a.drill)
        ));
        let runs = Api::<DrillRun>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await
            .map_err(|e| kube_err("listing DrillRuns", e))?
            .items;
        let access = store_access(
            &client,
            &ns,
            &drill.spec.policy_ref.name,
            d.s3_env_credentials,
        )
        .await?;
        Ok::<_, CliError>((ns, drill, runs, access))
    })?;
    drop(rt);
    let mut ca_file = TempCa(None);
    let store = open_reports(access, repo, &mut ca_file)?;
    let reports = store
        .load(&ns, &a.drill)
        .map_err(crate::repo::Error::Storage)?;
    let anchors = Anchors {
        runs: runs
            .iter()
            .filter(|r| r.spec.drill_ref.name == a.drill)
            .filter_map(|r| {
                Some((
                    r.name_any(),
                    r.status.as_ref()?.report.as_ref()?.sha256.clone(),
                ))
            })
            .collect::<BTreeMap<_, _>>(),
        head: drill
            .status
            .as_ref()
            .and_then(|s| s.last_report.as_ref())
            .map(|r| r.sha256.clone()),
    };
    let v = chain::verify(
        &ns,
        &a.drill,
        reports,
        &mut |k| store.get(k).ok().flatten(),
        &anchors,
    );
    print_verdict(&v, &ns, &a.drill, &anchors, json);
    if v.intact() {
        Ok(())
    } else {
        let n = v.links.iter().filter(|l| !l.problems.is_empty()).count();
        Err(broken(format!(
            "the hash chain of drill {ns}/{} does not verify: {n} report(s) with problems{}",
            a.drill,
            if v.problems.is_empty() {
                String::new()
            } else {
                format!("; {}", v.problems.join("; "))
            }
        )))
    }
}

fn print_verdict(v: &chain::Verdict, ns: &str, drill: &str, anchors: &Anchors, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let links: Vec<serde_json::Value> = v
            .links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "key": l.key, "run": l.run, "sha256": l.sha256,
                    "ok": l.problems.is_empty(), "problems": l.problems,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "drill": format!("{ns}/{drill}"),
            "intact": v.intact(),
            "reports": links,
            "problems": v.problems,
        });
        let _ = writeln!(out, "{doc}");
        return;
    }
    let _ = writeln!(out, "Evidence reports of drill {ns}/{drill}, oldest first:");
    for l in &v.links {
        let mark = if l.problems.is_empty() { "✓" } else { "✗" };
        let _ = writeln!(
            out,
            "  {mark} {}  sha256 {}…  run {}",
            l.key.rsplit('/').next().unwrap_or(&l.key),
            &l.sha256[..16],
            l.run.as_deref().unwrap_or("?")
        );
        for p in &l.problems {
            let _ = writeln!(out, "      {p}");
        }
    }
    for p in &v.problems {
        let _ = writeln!(out, "  ✗ {p}");
    }
    if v.intact() {
        let _ = writeln!(
            out,
            "VERIFIED: {} report(s), every digest and link intact; {} checked against their DrillRuns{}.",
            v.links.len(),
            v.links
                .iter()
                .filter(|l| l.run.as_ref().is_some_and(|r| anchors.runs.contains_key(r)))
                .count(),
            if anchors.head.is_some() {
                ", the newest against the DRDrill's record"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(out, "BROKEN: the chain does not verify (see above).");
    }
}

/// Runs a `drill` subcommand.
pub fn run(d: DrillCmd, repo: &RepoArgs, json: bool) -> Result<(), CliError> {
    let DrillCmd {
        cmd,
        namespace,
        context,
        s3_env_credentials,
    } = d;
    let k = KubeArgs {
        namespace,
        context,
        s3_env_credentials,
    };
    match cmd {
        DrillSub::Report(a) => report(a, &k, repo),
        DrillSub::VerifyChain(a) => verify_chain(a, &k, repo, json),
        DrillSub::Now(a) => super::ops::drill_now(
            a,
            super::ops::KubeArgs {
                context: k.context,
                namespace: k.namespace,
            },
            json,
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn drill_command_lines_parse() {
        for args in [
            vec![
                "lifeboat",
                "drill",
                "report",
                "orders-202611221500",
                "-n",
                "shop",
            ],
            vec![
                "lifeboat",
                "drill",
                "report",
                "r",
                "--format",
                "json",
                "-o",
                "/tmp/r.json",
            ],
            vec![
                "lifeboat",
                "drill",
                "verify-chain",
                "orders",
                "--context",
                "prod",
                "-n",
                "shop",
            ],
            vec![
                "lifeboat",
                "drill",
                "verify-chain",
                "orders",
                "--s3-env-credentials",
                "--json",
            ],
        ] {
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["lifeboat", "drill", "report"]).is_err());
        assert!(
            Cli::try_parse_from(["lifeboat", "drill", "report", "r", "--format", "html"]).is_err()
        );
    }
}

//! `lifeboat drill report RUN` (fetch a run's evidence report from the store, verify its
//! SHA-256 against the DrillRun, print or save it) and `lifeboat drill verify-chain DRILL`
//! (walk every report of a drill and check its signature, its link and place in the
//! chain, its pages and its run; check the newest against the installation's signed
//! anchor; print a verdict naming every problem; exit non-zero on any). Kubeconfig-aware
//! like kubectl (`KUBECONFIG`, `--context`, `-n`, the context's namespace by default).
//!
//! The store is found through the cluster (run → drill → policy → store; for a deleted
//! drill, the policy its anchor names), and its credentials are read from the store's
//! Secret unless `--s3-access-key-id` (or the AWS environment, with
//! `--s3-env-credentials`) is given; `--repo` overrides the location, for a store whose
//! in-cluster endpoint is not reachable from where the command runs. The trusted keys and
//! anchors are in the controller's namespace (`--controller-namespace`).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::reports::{
    TempCa, anchor, broken, client, get, kube_err, not_found, open_reports, public_keys,
    run_records, runtime, store_access,
};
use super::{CliError, RepoArgs};
use crate::crd::dr_drill::{DRDrill, DrillRun};
use crate::crd::labels;
use crate::drill::chain::{self, AnchorInput, Trust};
use crate::drill::report::{self, Report};
use crate::evidence::anchor::Anchor;
use crate::jobs;

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
    /// The controller's namespace, which holds the evidence public key and anchors.
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_CONTROLLER_NAMESPACE",
        default_value = "lifeboat-system"
    )]
    controller_namespace: String,
    /// Trust these public keys (PEM) instead of the ones the controller publishes.
    #[arg(long, global = true, env = "LIFEBOAT_EVIDENCE_PUBLIC_KEY")]
    public_key: Option<PathBuf>,
}

/// Where to find the cluster and how to reach the store.
struct KubeArgs {
    namespace: Option<String>,
    context: Option<String>,
    s3_env_credentials: bool,
    controller_namespace: String,
    public_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum DrillSub {
    /// Print or save a DrillRun's evidence report, after checking its SHA-256.
    Report(ReportArgs),
    /// Verify every report of a drill and the hash chain linking them.
    VerifyChain(VerifyArgs),
    /// Start a run of a DRDrill now; with --wait, follow it and print the outcome.
    Now(super::ops::DrillNowArgs),
    /// Stop a running DrillRun (outcome Cancelled; its sandbox is removed, its report
    /// says it was cancelled).
    Cancel(super::ops::cancel::DrillCancelArgs),
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
    let (ns, trust, mut notes, access) = rt.block_on(async {
        let client = client(d.context.clone()).await?;
        let ns = ns.unwrap_or_else(|| client.default_namespace().to_string());
        let cns = &d.controller_namespace;
        let drill = Api::<DRDrill>::namespaced(client.clone(), &ns)
            .get_opt(&a.drill)
            .await
            .map_err(|e| kube_err("reading the DRDrill", e))?;
        let (keys, key_note) = public_keys(&client, cns, d.public_key.as_ref()).await?;
        let anchor_input = if keys.is_empty() {
            AnchorInput::NotConsulted
        } else {
            anchor(&client, cns, &ns, &a.drill).await?
        };
        // A deleted drill: its anchor names the policy whose store holds the reports.
        let policy = match (&drill, &anchor_input) {
            (Some(d), _) => d.spec.policy_ref.name.clone(),
            (None, AnchorInput::Present(env)) => Anchor::peek(env)
                .and_then(|a| a.policy)
                .ok_or_else(|| {
                    broken(format!(
                        "DRDrill {ns}/{} does not exist, and its anchor names no policy to find its reports by",
                        a.drill
                    ))
                })?,
            (None, _) => {
                return Err(not_found(format!(
                    "DRDrill {ns}/{} does not exist, and no evidence anchor records it",
                    a.drill
                )));
            }
        };
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
        let access = store_access(&client, &ns, &policy, d.s3_env_credentials).await?;
        let trust = Trust {
            keys,
            anchor: anchor_input,
            runs: Some(run_records(&runs, &a.drill)),
            drill_exists: Some(drill.is_some()),
            drill_head: drill
                .as_ref()
                .and_then(|d| d.status.as_ref())
                .and_then(|s| s.last_report.as_ref())
                .map(|r| r.sha256.clone()),
            window_since: None,
        };
        Ok::<_, CliError>((ns, trust, key_note.into_iter().collect::<Vec<_>>(), access))
    })?;
    drop(rt);
    let mut ca_file = TempCa(None);
    let store = open_reports(access, repo, &mut ca_file)?;
    let reports = store
        .load(&ns, &a.drill)
        .map_err(crate::repo::Error::Storage)?;
    let v = chain::verify(
        &ns,
        &a.drill,
        reports,
        &mut |k| store.get(k).ok().flatten(),
        &trust,
    );
    notes.extend(v.notes.iter().cloned());
    print_verdict(&v, &ns, &a.drill, &trust, &notes, json);
    if v.intact() {
        Ok(())
    } else {
        let n = v.links.iter().filter(|l| !l.problems.is_empty()).count();
        Err(broken(format!(
            "the evidence of drill {ns}/{} does not verify: {n} report(s) with problems{}",
            a.drill,
            if v.problems.is_empty() {
                String::new()
            } else {
                format!(
                    "; {}",
                    v.problems
                        .iter()
                        .map(|p| p.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        )))
    }
}

/// Prints a verdict: one line per report with its problems, the chain's problems, what was
/// not checked, and the conclusion (or one JSON document).
pub(crate) fn print_verdict(
    v: &chain::Verdict,
    ns: &str,
    drill: &str,
    trust: &Trust,
    notes: &[String],
    json: bool,
) {
    let mut out = std::io::stdout().lock();
    if json {
        let links: Vec<serde_json::Value> = v
            .links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "key": l.key, "run": l.run, "sequence": l.sequence, "sha256": l.sha256,
                    "signedBy": l.signed_by, "ok": l.problems.is_empty(), "problems": l.problems,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "drill": format!("{ns}/{drill}"),
            "intact": v.intact(),
            "reports": links,
            "problems": v.problems,
            "notes": notes,
            "anchor": v.anchor.as_ref().map(|a| serde_json::json!({
                "sequence": a.sequence, "headSha256": a.head_sha256, "lastRun": a.last_run,
                "signedSince": a.signed_since,
            })),
        });
        let _ = writeln!(out, "{doc}");
        return;
    }
    let _ = writeln!(out, "Evidence reports of drill {ns}/{drill}, oldest first:");
    for l in &v.links {
        let mark = if l.problems.is_empty() { "✓" } else { "✗" };
        let _ = writeln!(
            out,
            "  {mark} {}{}  sha256 {}…  run {}{}",
            l.sequence.map(|q| format!("#{q} ")).unwrap_or_default(),
            l.key.rsplit('/').next().unwrap_or(&l.key),
            &l.sha256[..16],
            l.run.as_deref().unwrap_or("?"),
            l.signed_by
                .as_ref()
                .map(|k| format!("  signed by {k}"))
                .unwrap_or_default()
        );
        for p in &l.problems {
            let _ = writeln!(out, "      {p}");
        }
    }
    for p in &v.problems {
        let _ = writeln!(out, "  ✗ {p}");
    }
    for n in notes {
        let _ = writeln!(out, "  note: {n}");
    }
    if v.intact() {
        let signed = v.links.iter().filter(|l| l.signed_by.is_some()).count();
        let runs = trust.runs.as_ref();
        let _ = writeln!(
            out,
            "VERIFIED: {} report(s), every digest and link intact; {signed} signed by the installation's key{}; {} checked against their DrillRuns{}.",
            v.links.len(),
            match &v.anchor {
                Some(a) => format!(", the newest is the anchored head #{}", a.sequence),
                None => String::new(),
            },
            v.links
                .iter()
                .filter(|l| l
                    .run
                    .as_ref()
                    .is_some_and(|r| runs.is_some_and(|m| m.contains_key(r))))
                .count(),
            if v.anchor.is_none() && trust.drill_head.is_some() {
                ", the newest against the DRDrill's record"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(out, "BROKEN: the evidence does not verify (see above).");
    }
}

/// Runs a `drill` subcommand.
pub fn run(d: DrillCmd, repo: &RepoArgs, json: bool) -> Result<(), CliError> {
    let DrillCmd {
        cmd,
        namespace,
        context,
        s3_env_credentials,
        controller_namespace,
        public_key,
    } = d;
    let k = KubeArgs {
        namespace,
        context,
        s3_env_credentials,
        controller_namespace,
        public_key,
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
        DrillSub::Cancel(a) => super::ops::cancel::drill_run(
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
                "cancel",
                "orders-202611221500",
                "-n",
                "shop",
                "--wait",
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

//! `lifeboat evidence export` (the drills of a namespace, or of all, with their reports,
//! signatures, anchors, DrillRun records, public key, CSV summary and README, as one
//! `.tar.gz` or directory) and `lifeboat evidence verify` (the same bundle checked with no
//! cluster, against a public key the auditor holds). The bundle's layout and verification
//! are `crate::evidence::bundle`'s; this module reads the cluster and the stores.
//!
//! Drills are found through the DRDrills and through the anchors in the controller's
//! namespace: a deleted DRDrill whose anchor remains is exported (its reports found by
//! the policy its anchor names) and named as deleted, never skipped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::reports::{
    TempCa, anchor, broken, client, kube_err, open_reports, public_keys, read_public_keys, runtime,
    store_access,
};
use super::{CliError, RepoArgs};
use crate::crd::dr_drill::{DRDrill, DrillRun};
use crate::crd::labels;
use crate::drill::chain::AnchorInput;
use crate::evidence::anchor::Anchor;
use crate::evidence::bundle::{Bundle, DrillInput, DrillVerdict};
use crate::evidence::objects;
use crate::jobs;
use crate::schedule::duration;

/// `evidence` subcommands.
#[derive(Args, Debug)]
pub struct EvidenceCmd {
    #[command(subcommand)]
    cmd: EvidenceSub,
}

#[derive(Subcommand, Debug)]
enum EvidenceSub {
    /// Export the evidence of drills (reports, signatures, anchors, DrillRuns, summary).
    Export(ExportArgs),
    /// Verify an exported bundle offline, against the installation's public key.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Only this DRDrill.
    #[arg(long)]
    drill: Option<String>,
    /// Reports of runs started within this long before now (e.g. `90d`, `365d`).
    #[arg(long, value_parser = parse_duration, default_value = "365d")]
    since: Duration,
    /// The bundle: `NAME.tar.gz`, or a directory to create.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Kubeconfig context to use (default: the current one).
    #[arg(long)]
    context: Option<String>,
    /// Use the AWS credential chain instead of the stores' Secrets.
    #[arg(long)]
    s3_env_credentials: bool,
    /// The controller's namespace, which holds the evidence public key and anchors.
    #[arg(
        long,
        env = "LIFEBOAT_CONTROLLER_NAMESPACE",
        default_value = "lifeboat-system"
    )]
    controller_namespace: String,
    /// Trust these public keys (PEM) instead of the ones the controller publishes.
    #[arg(long, env = "LIFEBOAT_EVIDENCE_PUBLIC_KEY")]
    public_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The bundle: a `.tar.gz` file or an unpacked directory.
    bundle: PathBuf,
    /// The installation's public key(s), PEM, obtained independently of the bundle.
    #[arg(long)]
    public_key: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> CliError {
    move |e| CliError {
        category: "LocalIo",
        message: format!("{what}: {e}"),
    }
}

fn bundle_err(e: crate::evidence::Error) -> CliError {
    CliError::input(e.to_string())
}

/// One drill to export, as found in the cluster.
struct Found {
    namespace: String,
    drill: String,
    policy: String,
    exists: bool,
    head: Option<String>,
    anchor: AnchorInput,
}

fn export(a: ExportArgs, repo: &RepoArgs, json: bool) -> Result<(), CliError> {
    let now = jiff::Timestamp::now();
    let since = now
        - jiff::SignedDuration::try_from(a.since)
            .map_err(|e| CliError::input(format!("--since: {e}")))?;
    let rt = runtime()?;
    let (keys, mut notes, found, mut runs, client) = rt.block_on(async {
        let client = client(a.context.clone()).await?;
        let ns = (!a.all_namespaces).then(|| {
            a.namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string())
        });
        let cns = &a.controller_namespace;
        let (keys, key_note) = public_keys(&client, cns, a.public_key.as_ref()).await?;
        let drills = match &ns {
            Some(n) => Api::<DRDrill>::namespaced(client.clone(), n),
            None => Api::<DRDrill>::all(client.clone()),
        }
        .list(&ListParams::default())
        .await
        .map_err(|e| kube_err("listing DRDrills", e))?
        .items;
        let mut found: BTreeMap<(String, String), Found> = BTreeMap::new();
        for d in drills {
            let (dns, name) = (d.namespace().unwrap_or_default(), d.name_any());
            if a.drill.as_ref().is_some_and(|x| *x != name) {
                continue;
            }
            let anchor = if keys.is_empty() {
                AnchorInput::NotConsulted
            } else {
                anchor(&client, cns, &dns, &name).await?
            };
            found.insert(
                (dns.clone(), name.clone()),
                Found {
                    namespace: dns,
                    drill: name,
                    policy: d.spec.policy_ref.name.clone(),
                    exists: true,
                    head: d
                        .status
                        .as_ref()
                        .and_then(|s| s.last_report.as_ref())
                        .map(|r| r.sha256.clone()),
                    anchor,
                },
            );
        }
        // Deleted drills: their anchors remain.
        let mut notes: Vec<String> = key_note.into_iter().collect();
        if !keys.is_empty() {
            let mut lp = ListParams::default().labels(&objects::selector(objects::ANCHOR));
            if let Some(n) = &ns {
                lp = lp.labels(&format!("{}={n}", labels::DRILL_NAMESPACE));
            }
            let anchors = Api::<ConfigMap>::namespaced(client.clone(), cns)
                .list(&lp)
                .await
                .map_err(|e| kube_err(&format!("listing the anchors in {cns}"), e))?
                .items;
            for cm in anchors {
                let Some((dns, name)) = objects::anchor_drill_of(&cm) else {
                    continue;
                };
                if ns.as_ref().is_some_and(|n| *n != dns)
                    || a.drill.as_ref().is_some_and(|x| *x != name)
                    || found.contains_key(&(dns.clone(), name.clone()))
                {
                    continue;
                }
                let env = objects::anchor_envelope_of(&cm);
                let policy = env
                    .as_ref()
                    .ok()
                    .and_then(Anchor::peek)
                    .and_then(|a| a.policy);
                let Some(policy) = policy else {
                    notes.push(format!(
                        "DRDrill {dns}/{name} was deleted and its anchor names no policy: its reports are not exported"
                    ));
                    continue;
                };
                found.insert(
                    (dns.clone(), name.clone()),
                    Found {
                        namespace: dns,
                        drill: name,
                        policy,
                        exists: false,
                        head: None,
                        anchor: env.map_or(AnchorInput::Missing, AnchorInput::Present),
                    },
                );
            }
        }
        let mut runs: BTreeMap<(String, String), Vec<DrillRun>> = BTreeMap::new();
        for f in found.values() {
            let lp = ListParams::default().labels(&format!(
                "{}={}",
                labels::DRILL,
                jobs::label_value(&f.drill)
            ));
            let items = Api::<DrillRun>::namespaced(client.clone(), &f.namespace)
                .list(&lp)
                .await
                .map_err(|e| kube_err("listing DrillRuns", e))?
                .items
                .into_iter()
                .filter(|r| r.spec.drill_ref.name == f.drill)
                .collect();
            runs.insert((f.namespace.clone(), f.drill.clone()), items);
        }
        Ok::<_, CliError>((keys, notes, found, runs, client))
    })?;

    let mut inputs = Vec::new();
    let mut objects_read: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ca_files = Vec::new();
    for (k, f) in found {
        let access = rt.block_on(store_access(
            &client,
            &f.namespace,
            &f.policy,
            a.s3_env_credentials,
        ));
        let access = match access {
            Ok(x) => x,
            Err(e) => {
                notes.push(format!(
                    "{}/{}: its store cannot be reached through policy {}: {}",
                    f.namespace, f.drill, f.policy, e.message
                ));
                continue;
            }
        };
        let mut ca = TempCa(None);
        let store = open_reports(access, repo, &mut ca)?;
        ca_files.push(ca);
        let reports = store
            .load(&f.namespace, &f.drill)
            .map_err(crate::repo::Error::Storage)?;
        // Signatures and pages, read once and kept under their keys.
        for s in &reports {
            let mut keys_of = vec![crate::evidence::signature::signature_key(&s.key)];
            if let Ok(r) = serde_json::from_slice::<crate::drill::report::Report>(&s.bytes) {
                keys_of.extend(
                    [&r.page, &r.html]
                        .into_iter()
                        .flatten()
                        .map(|p| p.key.clone()),
                );
            }
            for key in keys_of {
                if let Some(b) = store.get(&key).map_err(crate::repo::Error::Storage)? {
                    objects_read.insert(key, b);
                }
            }
        }
        inputs.push(DrillInput {
            namespace: f.namespace,
            drill: f.drill,
            drill_exists: f.exists,
            drill_head: f.head,
            anchor: match f.anchor {
                AnchorInput::Present(env) => Some(env),
                _ => None,
            },
            runs: runs.remove(&k).unwrap_or_default(),
            reports,
        });
    }
    drop(rt);
    let drills = inputs.len();
    let b = Bundle::build(inputs, &keys, Some(since), now, &mut |k| {
        objects_read.get(k).cloned()
    })
    .map_err(bundle_err)?;
    let out = &a.output;
    let size = if out.to_string_lossy().ends_with(".tar.gz")
        || out.to_string_lossy().ends_with(".tgz")
    {
        let bytes = b.to_tar_gz(now).map_err(bundle_err)?;
        std::fs::write(out, &bytes).map_err(io(format!("writing {}", out.display())))?;
        bytes.len()
    } else {
        let mut total = 0;
        for (path, bytes) in &b.files {
            let p = out.join(path);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            }
            std::fs::write(&p, bytes).map_err(io(format!("writing {}", p.display())))?;
            total += bytes.len();
        }
        total
    };
    let reports: usize = b
        .manifest()
        .map_err(bundle_err)?
        .drills
        .iter()
        .map(|d| d.reports.len())
        .sum();
    let mut o = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "output": out, "bytes": size, "drills": drills, "reports": reports,
            "files": b.files.len(), "since": since, "keyIds": keys.iter().map(|k| k.id()).collect::<Vec<_>>(),
            "notes": notes,
        });
        let _ = writeln!(o, "{doc}");
    } else {
        for n in &notes {
            let _ = writeln!(o, "note: {n}");
        }
        let _ = writeln!(
            o,
            "Exported {drills} drill(s), {reports} report(s) since {since} to {} ({size} bytes, {} files).",
            out.display(),
            b.files.len()
        );
    }
    Ok(())
}

fn verify(a: VerifyArgs, json: bool) -> Result<(), CliError> {
    let t0 = Instant::now();
    let keys = read_public_keys(&a.public_key)?;
    let b = if a.bundle.is_dir() {
        Bundle::from_dir(&a.bundle)
    } else {
        let bytes =
            std::fs::read(&a.bundle).map_err(io(format!("reading {}", a.bundle.display())))?;
        Bundle::from_tar_gz(&bytes)
    }
    .map_err(bundle_err)?;
    let manifest = b.manifest().map_err(bundle_err)?;
    let verdicts = b.verify(&keys).map_err(bundle_err)?;
    let elapsed = t0.elapsed();
    let bad: Vec<&DrillVerdict> = verdicts.iter().filter(|v| !v.verdict.intact()).collect();
    let mut o = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "intact": bad.is_empty(),
            "exportedAt": manifest.exported_at,
            "since": manifest.since,
            "seconds": elapsed.as_secs_f64(),
            "drills": verdicts.iter().map(|d| serde_json::json!({
                "drill": format!("{}/{}", d.namespace, d.drill),
                "intact": d.verdict.intact(),
                "reports": d.verdict.links.len(),
                "signed": d.verdict.links.iter().filter(|l| l.signed_by.is_some()).count(),
                "problems": d.verdict.all_problems().collect::<Vec<_>>(),
                "notes": d.verdict.notes.iter().chain(&d.notes).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        let _ = writeln!(o, "{doc}");
    } else {
        let _ = writeln!(
            o,
            "Bundle exported {}{}, verified with key(s) {}:",
            manifest.exported_at,
            manifest
                .since
                .map(|s| format!(" (runs since {s})"))
                .unwrap_or_default(),
            keys.iter().map(|k| k.id()).collect::<Vec<_>>().join(", ")
        );
        for d in &verdicts {
            let v = &d.verdict;
            let signed = v.links.iter().filter(|l| l.signed_by.is_some()).count();
            let mark = if v.intact() { "✓" } else { "✗" };
            let _ = writeln!(
                o,
                "  {mark} {}/{}: {} report(s), {signed} signed{}",
                d.namespace,
                d.drill,
                v.links.len(),
                v.anchor
                    .as_ref()
                    .map(|a| format!(", anchored head #{}", a.sequence))
                    .unwrap_or_default()
            );
            for l in &v.links {
                for p in &l.problems {
                    let _ = writeln!(
                        o,
                        "      {}: {p}",
                        l.key.rsplit('/').next().unwrap_or(&l.key)
                    );
                }
            }
            for p in &v.problems {
                let _ = writeln!(o, "      {p}");
            }
            for n in v.notes.iter().chain(&d.notes) {
                let _ = writeln!(o, "      note: {n}");
            }
        }
        let _ = writeln!(
            o,
            "{} in {:.2}s.",
            if bad.is_empty() {
                format!("VERIFIED: {} drill(s)", verdicts.len())
            } else {
                format!(
                    "BROKEN: {} of {} drill(s) do not verify",
                    bad.len(),
                    verdicts.len()
                )
            },
            elapsed.as_secs_f64()
        );
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(broken(format!(
            "the evidence of {} does not verify",
            bad.iter()
                .map(|d| format!("{}/{}", d.namespace, d.drill))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Runs an `evidence` subcommand.
pub fn run(c: EvidenceCmd, repo: &RepoArgs, json: bool) -> Result<(), CliError> {
    match c.cmd {
        EvidenceSub::Export(a) => export(a, repo, json),
        EvidenceSub::Verify(a) => verify(a, json),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn evidence_command_lines_parse() {
        for line in [
            "lifeboat evidence export -n shop --since 90d -o b.tar.gz",
            "lifeboat evidence export -A --drill orders -o dir",
            "lifeboat evidence verify b.tar.gz --public-key k.pem",
        ] {
            let args: Vec<&str> = line.split(' ').collect();
            assert!(super::super::Cli::try_parse_from(args).is_ok(), "{line}");
        }
        for bad in [
            "lifeboat evidence export -n shop -A -o x",
            "lifeboat evidence export -n shop",
            "lifeboat evidence verify b.tar.gz",
            "lifeboat evidence export -n shop --since 3x -o b",
        ] {
            let args: Vec<&str> = bad.split(' ').collect();
            assert!(super::super::Cli::try_parse_from(args).is_err(), "{bad}");
        }
    }
}

//! `lifeboat manifests rewrite`: makes a manifests snapshot restored with stock `restic`
//! applicable in another namespace (or another cluster), with the transform the restore
//! mover itself applies. The restic-only path of the README ends here: the saved files
//! carry their old namespace, which `kubectl apply -n OTHER` refuses.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use super::{CliError, output::Output};
use crate::mover::restore::{Disposition, TransformOptions, load_saved, saved_files};

/// `manifests` subcommands.
#[derive(Subcommand, Debug)]
pub enum ManifestsCmd {
    /// Rewrite saved manifests (`<Kind[.group]>/<name>.yaml` files, as `restic restore`
    /// leaves them under tmp/lifeboat-manifests/<namespace>) for another namespace:
    /// namespace, RoleBinding subjects of the saved namespace (other subjects dropped, a
    /// binding left without any not written), node ports, cluster fields.
    Rewrite(RewriteArgs),
}

/// Options of `manifests rewrite`.
#[derive(Args, Debug)]
pub struct RewriteArgs {
    /// The directory of one saved namespace (holding `<Kind[.group]>/` directories).
    dir: PathBuf,
    /// The namespace the objects are for.
    #[arg(long, short = 'n')]
    namespace: String,
    /// Where the rewritten files go (created; must not exist yet, so nothing is mixed
    /// with older files).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Also do what a drill sandbox does: drop Ingresses, DaemonSets, NetworkPolicies
    /// and PodDisruptionBudgets, suspend Jobs and CronJobs, turn node ports and load
    /// balancers into ClusterIP Services.
    #[arg(long)]
    suppress_side_effects: bool,
    /// Scale Deployments, StatefulSets and ReplicaSets to zero.
    #[arg(long)]
    scale_to_zero: bool,
}

/// What `manifests rewrite` did, file by file.
#[derive(Serialize, Debug, Default)]
pub struct RewriteReport {
    pub written: Vec<String>,
    pub dropped: Vec<Skipped>,
    pub refused: Vec<Skipped>,
}

/// A file that was not written, and why.
#[derive(Serialize, Debug)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// Runs a `manifests` subcommand.
pub fn run(c: ManifestsCmd, out: &Output) -> Result<(), CliError> {
    match c {
        ManifestsCmd::Rewrite(a) => {
            let report = rewrite(&a)?;
            let refused = report.refused.len();
            out.emit(&report, || text(&report, &a.out))?;
            if refused > 0 {
                return Err(CliError::input(format!(
                    "{refused} file(s) could not be rewritten (listed above); the others are in {}",
                    a.out.display()
                )));
            }
            Ok(())
        }
    }
}

fn rewrite(a: &RewriteArgs) -> Result<RewriteReport, CliError> {
    if a.out.exists() {
        return Err(CliError::input(format!(
            "{} exists: give a new directory",
            a.out.display()
        )));
    }
    let files = saved_files(&a.dir)?;
    if files.is_empty() {
        return Err(CliError::input(format!(
            "{} holds no <Kind[.group]>/<name>.yaml files: give the directory of one saved namespace, e.g. ./tmp/lifeboat-manifests/shop",
            a.dir.display()
        )));
    }
    let opts = TransformOptions {
        suppress_side_effects: a.suppress_side_effects,
        scale_to_zero: a.scale_to_zero,
    };
    let mut report = RewriteReport::default();
    for (kind_dir, path) in files {
        let file = format!(
            "{kind_dir}/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let skip = |reason: String| Skipped {
            file: file.clone(),
            reason,
        };
        let loaded = load_saved(&path, &a.namespace, &opts)
            .map_err(|e| CliError::input(format!("reading {}: {e}", path.display())))?;
        match loaded {
            Ok(Disposition::Apply(v)) => {
                write(&a.out.join(&file), &v)?;
                report.written.push(file);
            }
            Ok(Disposition::Drop(why)) => report.dropped.push(skip(why.to_string())),
            Err(e) => report.refused.push(skip(e)),
        }
    }
    Ok(report)
}

fn write(path: &Path, v: &Value) -> Result<(), CliError> {
    let fail = |e: String| CliError::input(format!("writing {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    }
    let yaml = serde_saphyr::to_string(v).map_err(|e| fail(e.to_string()))?;
    std::fs::write(path, yaml).map_err(|e| fail(e.to_string()))
}

fn text(r: &RewriteReport, out: &Path) -> String {
    let mut s = String::new();
    for d in &r.dropped {
        s.push_str(&format!("dropped {}: {}\n", d.file, d.reason));
    }
    for d in &r.refused {
        s.push_str(&format!("refused {}: {}\n", d.file, d.reason));
    }
    s.push_str(&format!(
        "{} object(s) written to {}\n",
        r.written.len(),
        out.display()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, out: PathBuf) -> RewriteArgs {
        RewriteArgs {
            dir: dir.into(),
            namespace: "shop-copy".into(),
            out,
            suppress_side_effects: false,
            scale_to_zero: false,
        }
    }

    fn saved(dir: &Path, rel: &str, yaml: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, yaml).unwrap();
    }

    #[test]
    fn rewrites_the_namespace_and_reports_what_it_could_not() {
        let src = tempfile::tempdir().unwrap();
        saved(
            src.path(),
            "ConfigMap/cfg.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: shop\ndata:\n  a: b\n",
        );
        saved(
            src.path(),
            "RoleBinding.rbac.authorization.k8s.io/rb.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: rb\n  namespace: shop\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: r\nsubjects:\n- kind: ServiceAccount\n  name: app\n  namespace: shop\n",
        );
        saved(
            src.path(),
            "ClusterRole.rbac.authorization.k8s.io/cr.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: cr\n",
        );
        saved(src.path(), "ConfigMap/broken.yaml", "kind: [unclosed\n");
        let out = src.path().join("out");
        let r = rewrite(&args(src.path(), out.clone())).unwrap();
        assert_eq!(
            r.written,
            [
                "ConfigMap/cfg.yaml",
                "RoleBinding.rbac.authorization.k8s.io/rb.yaml"
            ]
        );
        assert_eq!(r.refused.len(), 2, "{r:?}");
        assert!(r.refused.iter().any(|s| s.file == "ConfigMap/broken.yaml"));
        let cfg: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(out.join("ConfigMap/cfg.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["metadata"]["namespace"], "shop-copy");
        let rb: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(out.join("RoleBinding.rbac.authorization.k8s.io/rb.yaml"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(rb["subjects"][0]["namespace"], "shop-copy");
        // Never into an existing directory: old files would mix with the new ones.
        let again = rewrite(&args(src.path(), out)).unwrap_err();
        assert!(again.message.contains("exists"), "{}", again.message);
    }

    #[test]
    fn a_directory_without_saved_objects_is_named() {
        let src = tempfile::tempdir().unwrap();
        let e = rewrite(&args(src.path(), src.path().join("out"))).unwrap_err();
        assert!(e.message.contains("no <Kind[.group]>"), "{}", e.message);
    }
}

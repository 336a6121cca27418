//! `lifeboat check` and `lifeboat repair packs`: output for people (what is damaged,
//! what needs it, which Lifeboat command deals with it), or one JSON document.

use clap::{Args, Subcommand};

use super::{CliError, RepoArgs, output::Output};
use crate::repo::{CheckReport, CheckRequest, RepairReport};

/// Options of `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read and verify all data.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read and verify a subset of the data: `10%`, `1/5` (the packs of bucket 1 of 5;
    /// `1/5` to `5/5` read everything once) or `500MiB`.
    #[arg(long)]
    read_data_subset: Option<String>,
}

fn human(r: &CheckReport) -> String {
    let mut s = String::new();
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    for e in &r.errors {
        s.push_str(&format!("error: {e}\n"));
    }
    s.push_str(&format!(
        "checked {} snapshot(s), {} tree(s), {} pack(s); read {} pack(s) ({} MiB)\n",
        r.snapshots,
        r.trees,
        r.packs,
        r.packs_read,
        r.bytes_read >> 20
    ));
    if r.errors.is_empty() {
        s.push_str("no errors were found\n");
    } else {
        s.push_str(&format!("{} error(s) found\n", r.errors.len()));
        for h in &r.hints {
            s.push_str(&format!("hint: {h}\n"));
        }
    }
    s
}

/// Runs `check`; errors in the repository end with the `CheckFailed` exit code.
pub fn run(a: CheckArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let repo = repo_args.open(out.json)?;
    let report = repo.check(&CheckRequest {
        read_data: a.read_data,
        read_data_subset: a.read_data_subset,
    })?;
    out.emit(&report, || human(&report))?;
    report.into_result().map(|_| ()).map_err(CliError::from)
}

/// `repair ...`.
#[derive(Args, Debug)]
pub struct RepairCmd {
    #[command(subcommand)]
    cmd: RepairSub,
}

#[derive(Subcommand, Debug)]
enum RepairSub {
    /// Salvage damaged packs: copy the blobs they still hold intact into new packs, take
    /// them out of the index and remove them (restic 0.17's `repair packs`). Without
    /// PACK ids, every pack is read and the ones whose data does not verify are repaired.
    /// Afterwards, back up again: lost data of unchanged files is read and stored anew.
    Packs(RepairPacksArgs),
}

#[derive(Args, Debug)]
struct RepairPacksArgs {
    /// Pack ids (or unique prefixes of at least 8 hex digits), as `check` names them.
    packs: Vec<String>,
}

fn human_repair(r: &RepairReport) -> String {
    if r.packs.is_empty() {
        return "no damaged pack found; nothing to repair\n".into();
    }
    let mut s = String::new();
    for p in &r.packs {
        s.push_str(&format!("repaired pack {p}\n"));
    }
    s.push_str(&format!(
        "salvaged {} blob(s) into {} new pack(s), {} intact elsewhere; {} index file(s) rewritten\n",
        r.salvaged, r.new_packs, r.elsewhere, r.index_files_rewritten
    ));
    if r.lost.is_empty() {
        s.push_str("no data was lost\n");
    } else {
        s.push_str(&format!(
            "{} blob(s) lost: {}\n",
            r.lost.len(),
            r.lost.join(", ")
        ));
        for f in &r.affected {
            s.push_str(&format!("needed by {f}\n"));
        }
        s.push_str(
            "hint: run the backups of these files again (`lifeboat backup ...`, or the \
             policy's next run): the lost data is read and stored anew, which heals the \
             older snapshots too; then `lifeboat check --read-data`\n",
        );
    }
    s
}

/// Runs `repair ...`.
pub fn run_repair(c: RepairCmd, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let RepairSub::Packs(a) = c.cmd;
    let repo = repo_args.open(out.json)?;
    let report = repo.repair_packs(&a.packs)?;
    out.emit(&report, || human_repair(&report))
}

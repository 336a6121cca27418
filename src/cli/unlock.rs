//! `lifeboat unlock`: remove stale locks (a dead process on this host, or unrefreshed for 30
//! minutes), or every lock with `--remove-all` (as restic's).

use clap::Args;

use super::{CliError, RepoArgs, output::Output};

/// Options of `unlock`.
#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove all locks, even those of running processes.
    #[arg(long)]
    remove_all: bool,
}

/// Runs `unlock`.
pub fn run(a: UnlockArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let repo = repo_args.open(out.json)?;
    let removed = repo.unlock(a.remove_all)?;
    out.emit(&removed, || {
        let mut s = String::new();
        for l in &removed {
            s.push_str(&format!(
                "removed {} lock {} of PID {} on {}{}\n",
                if l.info.exclusive {
                    "exclusive"
                } else {
                    "shared"
                },
                &l.id[..8.min(l.id.len())],
                l.info.pid,
                l.info.hostname,
                l.stale
                    .as_ref()
                    .map(|r| format!(" (stale: {r})"))
                    .unwrap_or_default()
            ));
        }
        s.push_str(&format!("{} lock(s) removed\n", removed.len()));
        s
    })
}

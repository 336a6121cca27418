//! `lifeboat forget`: compute a retention plan, print it, execute it unless `--dry-run`,
//! then optionally prune.

use clap::Args;
use serde::Serialize;

use super::{
    CliError, RepoArgs,
    output::{Output, bytes},
    snapshots::split_tags,
};
use crate::repo::{ForgetPlan, GroupBy, PruneReport, RetentionPolicy, SnapshotFilter};

/// Options of `forget`.
#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Keep the newest N snapshots.
    #[arg(long)]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long)]
    keep_hourly: Option<u32>,
    /// ... days.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// ... weeks.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// ... months.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// ... years.
    #[arg(long)]
    keep_yearly: Option<u32>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag")]
    keep_tags: Vec<String>,
    /// Keep snapshots newer than the newest minus this duration (`7d`, `36h`, `1y 2mo`).
    #[arg(long)]
    keep_within: Option<jiff::Span>,
    /// Group by these criteria before applying the rules: any of host, paths, tags.
    #[arg(long, default_value = "host,paths")]
    group_by: String,
    /// Only consider snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// Only consider snapshots with this tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only print the plan.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Remove unreferenced data afterwards (with --dry-run: show what prune would do).
    #[arg(long)]
    prune: bool,
}

fn parse_group_by(s: &str) -> Result<GroupBy, CliError> {
    let mut g = GroupBy {
        host: false,
        paths: false,
        tags: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "host" => g.host = true,
            "paths" => g.paths = true,
            "tags" => g.tags = true,
            other => {
                return Err(CliError::input(format!(
                    "unknown --group-by criterion {other:?} (host, paths, tags)"
                )));
            }
        }
    }
    Ok(g)
}

#[derive(Serialize)]
struct ForgetOut {
    dry_run: bool,
    plan: ForgetPlan,
    removed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<PruneReport>,
    /// Objects whose S3 Object Lock retention was extended (an object-locked store only).
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_extended: Option<u64>,
}

/// Runs `forget`.
pub fn run(a: ForgetArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let ForgetArgs {
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        keep_tags,
        keep_within,
        group_by,
        host,
        tags,
        dry_run,
        prune,
    } = a;
    let policy = RetentionPolicy {
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        keep_tags: split_tags(&keep_tags),
        keep_within,
    };
    if policy.is_empty() {
        return Err(CliError::input(
            "no keep rule given (--keep-last, --keep-daily, ...): refusing to forget every snapshot",
        ));
    }
    let group_by = parse_group_by(&group_by)?;
    let repo = repo_args.open(out.json)?;
    let filter = SnapshotFilter {
        host,
        tags: split_tags(&tags),
        ..SnapshotFilter::default()
    };
    let plan = repo.plan_forget(&policy, group_by, &filter)?;
    let removed = if dry_run {
        plan.remove_ids()
    } else {
        repo.forget(&plan)?
    };
    let prune = if prune {
        Some(repo.prune(dry_run)?)
    } else {
        None
    };
    // With Object Lock, what the repository still holds gets its retention moved forward,
    // as the retention mover does after each policy's prune.
    let retention_extended = match dry_run {
        true => None,
        false => Some(repo.extend_retention()?)
            .filter(|e| e.objects > 0)
            .map(|e| e.extended),
    };
    let o = ForgetOut {
        dry_run,
        plan,
        removed,
        prune,
        retention_extended,
    };
    out.emit(&o, || {
        let mut s = String::new();
        for g in &o.plan.groups {
            s.push_str(&format!(
                "group host={} paths={}\n",
                g.key.hostname.as_deref().unwrap_or("*"),
                g.key
                    .paths
                    .as_ref()
                    .map(|p| p.join(","))
                    .unwrap_or_else(|| "*".into())
            ));
            for d in &g.snapshots {
                s.push_str(&format!(
                    "  {} {}  {}  {}\n",
                    if d.keep { "keep  " } else { "remove" },
                    d.snapshot.short_id,
                    d.snapshot.time.strftime("%Y-%m-%d %H:%M:%S"),
                    d.reasons.join(", ")
                ));
            }
        }
        let verb = if o.dry_run { "would remove" } else { "removed" };
        s.push_str(&format!(
            "{verb} {} snapshot(s), kept {}\n",
            o.removed.len(),
            o.plan.keep_count()
        ));
        if let Some(p) = &o.prune {
            let verb = if o.dry_run {
                "prune would delete"
            } else {
                "prune deleted"
            };
            s.push_str(&format!(
                "{verb} {} pack(s), repacked {}, freeing {}\n",
                p.packs_removed,
                p.packs_repacked,
                bytes(p.bytes_removed)
            ));
        }
        if let Some(n) = o.retention_extended {
            s.push_str(&format!(
                "extended the Object Lock retention of {n} object(s)\n"
            ));
        }
        s
    })
}

//! `lifeboat mover retention`: applies a policy's keep rules to each of its sources'
//! snapshot histories separately (a volume's hourly snapshots never crowd out a
//! database's), then prunes once. Runs as the single maintenance Job of its repository.
//! `lifeboat mover forget-policy` is its end: a deleted `deletionPolicy: Delete` policy's
//! every snapshot, then the same prune.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Error, RepoAccess, tags};
use crate::crd::common::{DEFAULT_MAX_FORGET_PERCENT, Retention};
use crate::jobs::mover::command::{ApplyRetention, ForgetPolicy, SnapshotOwner};
use crate::jobs::result::{MoverResult, RESULT_VERSION};
use crate::repo::retention::breaker_trips;
use crate::repo::{
    Decision, ForgetPlan, GroupBy, GroupKey, GroupPlan, RetentionPolicy, SnapshotFilter,
};

/// Applies retention and prunes.
pub(crate) fn run(a: ApplyRetention, repo_args: &RepoAccess) -> Result<MoverResult, Error> {
    let ApplyRetention {
        policy,
        backup: _,
        keep,
        sources: only,
        keep_backups,
        dry_run,
        owner,
    } = a;
    let Retention {
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        max_forget_percent,
    } = keep;
    let rules = RetentionPolicy {
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        // The newest verified restore point: restic's keep-tag rule keeps it in every
        // source's history, and the plan shows `tags` as the reason.
        keep_tags: keep_backups.iter().map(|b| tags::backup(b)).collect(),
        ..RetentionPolicy::default()
    };
    let keeps_something = [
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
    ]
    .iter()
    .any(|k| k.is_some_and(|n| n > 0));
    if !keeps_something {
        // Forgetting with no positive rule would remove every snapshot of the policy.
        return Err(Error::input(
            "refusing retention without a positive keep rule: it would forget every snapshot",
        ));
    }
    let started = Instant::now();
    let repo = repo_args.open(true)?;
    let policy_tag = tags::policy(&policy.namespace, &policy.name);
    let not_contradicting = owner_tags(owner.as_ref());
    let all = repo.snapshots(&SnapshotFilter {
        tags: vec![policy_tag.clone()],
        not_contradicting: not_contradicting.clone(),
        ..SnapshotFilter::default()
    })?;
    let sources = thinned_sources(
        all.iter()
            .filter_map(|s| tags::value(&s.tags, "source").map(str::to_string))
            .collect(),
        &only,
    );
    let mut plans = Vec::with_capacity(sources.len());
    for source in &sources {
        let filter = SnapshotFilter {
            tags: vec![policy_tag.clone(), format!("source={source}")],
            not_contradicting: not_contradicting.clone(),
            ..SnapshotFilter::default()
        };
        let one_group = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        plans.push(repo.plan_forget(&rules, one_group, &filter)?);
    }
    // The breaker sees the whole run before anything is forgotten.
    let would_forget: usize = plans.iter().map(|p| p.remove_ids().len()).sum();
    let max = max_forget_percent.unwrap_or(DEFAULT_MAX_FORGET_PERCENT);
    if !dry_run && breaker_trips(all.len(), would_forget, max) {
        return Err(Error::BreakerTripped(format!(
            "this run would forget {would_forget} of the policy's {} snapshots, more than retention.maxForgetPercent ({max}%): nothing was forgotten",
            all.len()
        )));
    }
    let mut forgotten = 0usize;
    for plan in &plans {
        forgotten += if dry_run {
            plan.remove_ids().len()
        } else {
            repo.forget(plan)?.len()
        };
    }
    let mut result = MoverResult {
        v: RESULT_VERSION,
        duration_seconds: Some(started.elapsed().as_secs_f64()),
        ..MoverResult::default()
    };
    if forgotten > 0 && !dry_run {
        let report = repo.prune(false)?;
        result
            .details
            .insert("bytesRemoved".into(), report.bytes_removed.into());
    }
    if !dry_run {
        // An object-locked store: what the repository still references must outlive the
        // next runs; what prune just hid keeps its own date and expires.
        let ext = repo.extend_retention()?;
        if ext.objects > 0 {
            result
                .details
                .insert("retentionExtended".into(), ext.extended.into());
        }
    }
    result.details.insert("forgotten".into(), forgotten.into());
    result
        .details
        .insert("sources".into(), sources.len().into());
    Ok(result)
}

/// The sources whose histories a run thins: those named by the run (its sources whose
/// backup succeeded), or every source of the policy when it names none. A source whose
/// backup failed keeps its history untouched until it backs up again: a rule changed
/// meanwhile (keepDaily 30 to 1) must not thin the only copies of a source that cannot
/// currently make new ones.
fn thinned_sources(present: BTreeSet<String>, only: &[String]) -> BTreeSet<String> {
    if only.is_empty() {
        return present;
    }
    present
        .into_iter()
        .filter(|s| only.iter().any(|o| o == s))
        .collect()
}

/// The owner tags a run's snapshots must not contradict: another cluster's, or those of a
/// policy of the same name deleted and made again, share the `policy=` tag but are not
/// this policy's to thin or delete. Snapshots with no owner tags (written before they
/// existed) stay the identity's.
fn owner_tags(owner: Option<&SnapshotOwner>) -> Vec<String> {
    owner.map(|o| o.tags().to_vec()).unwrap_or_default()
}

/// Forgets every snapshot tagged with the policy's identity (and not with another owner)
/// and prunes. The identity tag is the only selector (no host, no path): another policy's
/// snapshots, even in the same repository, never match it.
pub(crate) fn forget_policy(f: ForgetPolicy, repo_args: &RepoAccess) -> Result<MoverResult, Error> {
    let started = Instant::now();
    let repo = repo_args.open(true)?;
    let policy_tag = tags::policy(&f.policy.namespace, &f.policy.name);
    let all = repo.snapshots(&SnapshotFilter {
        tags: vec![policy_tag],
        not_contradicting: owner_tags(f.owner.as_ref()),
        ..SnapshotFilter::default()
    })?;
    let plan = ForgetPlan {
        policy: RetentionPolicy::default(),
        groups: vec![GroupPlan {
            key: GroupKey {
                hostname: None,
                paths: None,
                tags: None,
            },
            snapshots: all
                .into_iter()
                .map(|snapshot| Decision {
                    snapshot,
                    keep: false,
                    reasons: Vec::new(),
                })
                .collect(),
        }],
    };
    let forgotten = repo.forget(&plan)?.len();
    let mut result = MoverResult {
        v: RESULT_VERSION,
        duration_seconds: Some(started.elapsed().as_secs_f64()),
        ..MoverResult::default()
    };
    if forgotten > 0 {
        let report = repo.prune(false)?;
        result
            .details
            .insert("bytesRemoved".into(), report.bytes_removed.into());
    }
    result.details.insert("forgotten".into(), forgotten.into());
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_sources_are_thinned() {
        let present: BTreeSet<String> = ["volume/data", "database/pg", "manifests/shop"]
            .map(String::from)
            .into();
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let cases: [(&[&str], &[&str]); 3] = [
            (&[], &["database/pg", "manifests/shop", "volume/data"]),
            // database/pg failed in this run: its history is left alone.
            (
                &["volume/data", "manifests/shop"],
                &["manifests/shop", "volume/data"],
            ),
            // A named source with no snapshot yet plans nothing.
            (&["volume/new"], &[]),
        ];
        for (only, want) in cases {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                thinned_sources(present.clone(), &only),
                set(want),
                "{only:?}"
            );
        }
    }
}

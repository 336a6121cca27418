//! Retention planning: which snapshots a keep-policy keeps, and why. Pure (no IO): the
//! facade lists snapshots, calls [`plan`], shows or executes the result. `forget --dry-run`
//! is just "plan and print".
//!
//! Semantics are restic's (and rustic_core's, whose rule engine does the matching): within
//! each group (default: same host and same paths), snapshots are walked newest first; a
//! snapshot is kept if any rule still has budget for its bucket (the last N, one per hour,
//! day, week, month, year, in the snapshot's recorded UTC offset), if it carries a kept tag,
//! or if it is within the keep-within window of the newest snapshot.

use std::collections::BTreeMap;

use jiff::{Span, Zoned};
use rustic_core::{
    KeepOptions, StringList,
    repofile::{SnapshotFile, SnapshotId},
};
use serde::Serialize;

use super::snapshot::SnapshotInfo;

/// A keep-policy. At least one rule must be set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetentionPolicy {
    /// Keep the newest N snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    pub keep_hourly: Option<u32>,
    /// ... days.
    pub keep_daily: Option<u32>,
    /// ... ISO weeks.
    pub keep_weekly: Option<u32>,
    /// ... months.
    pub keep_monthly: Option<u32>,
    /// ... years.
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot carrying any of these tags.
    pub keep_tags: Vec<String>,
    /// Keep every snapshot newer than the newest snapshot minus this span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Span>,
}

impl RetentionPolicy {
    /// True when no rule is set (planning refuses that: it would delete everything).
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_tags.is_empty()
            && self.keep_within.is_none()
    }

    fn to_keep_options(&self) -> Result<KeepOptions, String> {
        let n = |v: Option<u32>| -> Result<Option<i32>, String> {
            v.map(|v| i32::try_from(v).map_err(|_| format!("keep count {v} is too large")))
                .transpose()
        };
        let mut keep = KeepOptions::default()
            .keep_last(n(self.keep_last)?)
            .keep_hourly(n(self.keep_hourly)?)
            .keep_daily(n(self.keep_daily)?)
            .keep_weekly(n(self.keep_weekly)?)
            .keep_monthly(n(self.keep_monthly)?)
            .keep_yearly(n(self.keep_yearly)?)
            .keep_within(self.keep_within);
        if !self.keep_tags.is_empty() {
            let tags = self
                .keep_tags
                .iter()
                .map(|t| {
                    let mut l = StringList::default();
                    l.add(t.clone());
                    l
                })
                .collect::<Vec<_>>();
            keep = keep.keep_tags(tags);
        }
        Ok(keep)
    }
}

/// How snapshots are grouped before the policy applies (restic's `--group-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the set of backed-up paths.
    pub paths: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default: host and paths.
    fn default() -> Self {
        Self {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

/// The group a snapshot belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Host, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Sorted paths, when grouping by paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Sorted tags, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// The decision for one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub snapshot: SnapshotInfo,
    /// Kept or removed.
    pub keep: bool,
    /// Which rules keep it (`last`, `daily`, `tags`, ...); empty when removed.
    pub reasons: Vec<String>,
}

/// Decisions for one group, newest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupPlan {
    /// The group.
    pub key: GroupKey,
    /// Its snapshots with decisions, newest first.
    pub snapshots: Vec<Decision>,
}

/// The full plan.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetPlan {
    /// The policy it was computed from.
    pub policy: RetentionPolicy,
    /// One entry per group, ordered by key.
    pub groups: Vec<GroupPlan>,
}

impl ForgetPlan {
    /// IDs of the snapshots to remove.
    pub fn remove_ids(&self) -> Vec<String> {
        self.groups
            .iter()
            .flat_map(|g| g.snapshots.iter())
            .filter(|d| !d.keep)
            .map(|d| d.snapshot.id.clone())
            .collect()
    }

    /// Number of snapshots kept.
    pub fn keep_count(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| g.snapshots.iter())
            .filter(|d| d.keep)
            .count()
    }
}

fn group_key(sn: &SnapshotInfo, by: GroupBy) -> GroupKey {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    GroupKey {
        hostname: by.host.then(|| sn.hostname.clone()),
        paths: by.paths.then(|| sorted(&sn.paths)),
        tags: by.tags.then(|| sorted(&sn.tags)),
    }
}

fn to_snapshot_file(sn: &SnapshotInfo) -> Result<SnapshotFile, String> {
    let mut f = SnapshotFile {
        time: sn.time.clone(),
        hostname: sn.hostname.clone(),
        ..SnapshotFile::default()
    };
    f.id = SnapshotId::from(
        sn.id
            .parse::<rustic_core::Id>()
            .map_err(|_| format!("invalid snapshot id {:?}", sn.id))?,
    );
    for p in &sn.paths {
        f.paths.add(p.clone());
    }
    for t in &sn.tags {
        f.tags.add(t.clone());
    }
    Ok(f)
}

/// The mass-deletion breaker: whether forgetting `forget` of `total` snapshots is more
/// than `max_percent` percent of them (100 never trips). Integer arithmetic: no rounding
/// lets 51 of 100 through a 50% breaker.
pub(crate) fn breaker_trips(total: usize, forget: usize, max_percent: u32) -> bool {
    forget as u128 * 100 > total as u128 * u128::from(max_percent.min(100))
}

/// Applies `policy` to `snapshots` at time `now`.
pub(crate) fn plan(
    snapshots: Vec<SnapshotInfo>,
    policy: &RetentionPolicy,
    group_by: GroupBy,
    now: &Zoned,
) -> Result<ForgetPlan, String> {
    if policy.is_empty() {
        return Err(
            "no keep rule given: refusing to forget every snapshot (use --keep-last etc.)".into(),
        );
    }
    let keep = policy.to_keep_options()?;
    let mut groups: BTreeMap<GroupKey, Vec<SnapshotInfo>> = BTreeMap::new();
    for sn in snapshots {
        groups.entry(group_key(&sn, group_by)).or_default().push(sn);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, sns) in groups {
        let by_id: BTreeMap<String, SnapshotInfo> =
            sns.iter().map(|s| (s.id.clone(), s.clone())).collect();
        let files = sns
            .iter()
            .map(to_snapshot_file)
            .collect::<Result<Vec<_>, _>>()?;
        let decided = keep.apply(files, now).map_err(|e| e.to_string())?;
        let snapshots = decided
            .into_iter()
            .map(|fs| {
                let id = fs.snapshot.id.to_hex().as_str().to_string();
                let snapshot = by_id
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("snapshot {id} vanished while planning"))?;
                Ok(Decision {
                    snapshot,
                    keep: fs.keep,
                    reasons: if fs.keep { fs.reasons } else { Vec::new() },
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        out.push(GroupPlan { key, snapshots });
    }
    Ok(ForgetPlan {
        policy: policy.clone(),
        groups: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::repofile::RusticTime;

    fn snap(n: usize, time: &str, host: &str, tags: &[&str]) -> SnapshotInfo {
        SnapshotInfo {
            id: format!("{n:064x}"),
            short_id: format!("{n:08x}"),
            time: RusticTime::parse_utc(time).unwrap(),
            hostname: host.into(),
            username: String::new(),
            paths: vec!["/data".into()],
            tags: tags.iter().map(|s| s.to_string()).collect(),
            tree: "00".repeat(32),
            parent: None,
            summary: None,
        }
    }

    /// Kept snapshot numbers for a policy over a fixed history.
    fn kept(policy: RetentionPolicy, history: &[SnapshotInfo]) -> Vec<usize> {
        let now = RusticTime::parse_utc("2024-06-30T23:00:00Z").unwrap();
        let p = plan(history.to_vec(), &policy, GroupBy::default(), &now).unwrap();
        let mut v: Vec<usize> = p
            .groups
            .iter()
            .flat_map(|g| g.snapshots.iter())
            .filter(|d| d.keep)
            .map(|d| usize::from_str_radix(&d.snapshot.id, 16).unwrap())
            .collect();
        v.sort_unstable();
        v
    }

    /// Two snapshots a day (02:00 and 14:00 UTC) from 2024-01-01 to 2024-06-30: 364 snapshots,
    /// numbered 0 (oldest) .. 363 (newest).
    fn history() -> Vec<SnapshotInfo> {
        let start = RusticTime::parse_utc("2024-01-01T02:00:00Z").unwrap();
        (0..364)
            .map(|i| {
                let t = start
                    .checked_add(jiff::SignedDuration::from_hours(12 * i as i64))
                    .unwrap();
                snap(i, &RusticTime::to_string(&t), "h", &[])
            })
            .collect()
    }

    #[test]
    fn retention_table() {
        let h = history();
        let p = |f: fn(&mut RetentionPolicy)| {
            let mut p = RetentionPolicy::default();
            f(&mut p);
            p
        };
        let cases: Vec<(&str, RetentionPolicy, Vec<usize>)> = vec![
            ("last 3", p(|p| p.keep_last = Some(3)), vec![361, 362, 363]),
            // One per day: the 14:00 snapshot (odd numbers) is the newest of each day.
            (
                "daily 3",
                p(|p| p.keep_daily = Some(3)),
                vec![359, 361, 363],
            ),
            (
                "last 1 + daily 2 overlap",
                p(|p| {
                    p.keep_last = Some(1);
                    p.keep_daily = Some(2);
                }),
                vec![361, 363],
            ),
            // Weeks are ISO weeks: 2024-06-30 is a Sunday, so the newest of each week is
            // Sunday 14:00: 363, then 349 (06-23), 335 (06-16).
            (
                "weekly 3",
                p(|p| p.keep_weekly = Some(3)),
                vec![335, 349, 363],
            ),
            // Newest of June (363), May 31 14:00 (303), April 30 14:00 (241).
            (
                "monthly 3",
                p(|p| p.keep_monthly = Some(3)),
                vec![241, 303, 363],
            ),
            // Fewer years than asked for: the oldest snapshot is kept as well, so a young
            // history keeps its start (restic >= 0.17 and rustic_core semantics; restic 0.14
            // would keep only 363).
            (
                "yearly 5 (only one year)",
                p(|p| p.keep_yearly = Some(5)),
                vec![0, 363],
            ),
            (
                "daily 2 + monthly 2",
                p(|p| {
                    p.keep_daily = Some(2);
                    p.keep_monthly = Some(2);
                }),
                vec![303, 361, 363],
            ),
            // Newest is 06-30 14:00; 30 hours back is 06-29 08:00.
            (
                "within 30 hours",
                p(|p| p.keep_within = Some(Span::new().hours(30))),
                vec![361, 362, 363],
            ),
        ];
        for (name, policy, want) in cases {
            assert_eq!(kept(policy, &h), want, "{name}");
        }
    }

    #[test]
    fn breaker_table() {
        let cases = [
            // (total, forget, max %, trips)
            (10, 5, 50, false),
            (10, 6, 50, true),
            (100, 51, 50, true),
            (3, 1, 50, false),
            (3, 2, 50, true),
            (1, 0, 1, false),
            (10, 10, 100, false),
            (10, 1, 1, true),
            (0, 0, 50, false),
        ];
        for (total, forget, max, trips) in cases {
            assert_eq!(
                breaker_trips(total, forget, max),
                trips,
                "{forget} of {total} at {max}%"
            );
        }
    }

    /// The case the breaker is for: a policy edited from keepDaily 30 to keepDaily 1.
    #[test]
    fn breaker_stops_keep_daily_30_edited_to_1() {
        let h = history();
        let now = RusticTime::parse_utc("2024-06-30T23:00:00Z").unwrap();
        let daily = |n| RetentionPolicy {
            keep_daily: Some(n),
            ..RetentionPolicy::default()
        };
        // The history as keepDaily 30 left it: 30 snapshots.
        let kept30: Vec<SnapshotInfo> = plan(h, &daily(30), GroupBy::default(), &now)
            .unwrap()
            .groups
            .into_iter()
            .flat_map(|g| g.snapshots)
            .filter(|d| d.keep)
            .map(|d| d.snapshot)
            .collect();
        assert_eq!(kept30.len(), 30);
        // A routine run of the same rule forgets nothing; the edit would forget 29.
        let same = plan(kept30.clone(), &daily(30), GroupBy::default(), &now).unwrap();
        assert!(!breaker_trips(30, same.remove_ids().len(), 50));
        let edited = plan(kept30, &daily(1), GroupBy::default(), &now).unwrap();
        assert_eq!(edited.remove_ids().len(), 29);
        assert!(breaker_trips(30, 29, 50));
        assert!(!breaker_trips(30, 29, 100), "acknowledged");
    }

    #[test]
    fn hourly_counts_distinct_hours() {
        let h = vec![
            snap(1, "2024-06-30T10:05:00Z", "h", &[]),
            snap(2, "2024-06-30T10:45:00Z", "h", &[]),
            snap(3, "2024-06-30T11:10:00Z", "h", &[]),
            snap(4, "2024-06-30T12:00:00Z", "h", &[]),
        ];
        let mut p = RetentionPolicy {
            keep_hourly: Some(2),
            ..RetentionPolicy::default()
        };
        assert_eq!(kept(p.clone(), &h), vec![3, 4]);
        p.keep_hourly = Some(3);
        assert_eq!(kept(p, &h), vec![2, 3, 4]);
    }

    #[test]
    fn days_follow_the_recorded_offset() {
        // 23:30 at +02:00 is 21:30 UTC the same day; 00:30 at +02:00 is the next local day
        // although it is still the previous day in UTC. restic buckets by the local day.
        let h = vec![
            snap(1, "2024-06-29T23:30:00+02:00", "h", &[]),
            snap(2, "2024-06-30T00:30:00+02:00", "h", &[]),
        ];
        let p = RetentionPolicy {
            keep_daily: Some(2),
            ..RetentionPolicy::default()
        };
        assert_eq!(kept(p, &h), vec![1, 2]);
    }

    #[test]
    fn tags_and_groups() {
        let h = vec![
            snap(1, "2024-06-01T00:00:00Z", "a", &["keep"]),
            snap(2, "2024-06-02T00:00:00Z", "a", &[]),
            snap(3, "2024-06-03T00:00:00Z", "a", &[]),
            snap(4, "2024-06-01T00:00:00Z", "b", &[]),
            snap(5, "2024-06-02T00:00:00Z", "b", &[]),
        ];
        let mut p = RetentionPolicy {
            keep_last: Some(1),
            ..RetentionPolicy::default()
        };
        // Grouped by host: the newest of each host.
        assert_eq!(kept(p.clone(), &h), vec![3, 5]);
        p.keep_tags = vec!["keep".into()];
        assert_eq!(kept(p.clone(), &h), vec![1, 3, 5]);
        let now = RusticTime::parse_utc("2024-06-30T23:00:00Z").unwrap();
        let ungrouped = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        let plan = plan(h, &p, ungrouped, &now).unwrap();
        assert_eq!(plan.groups.len(), 1);
        let mut removed = plan.remove_ids();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                format!("{:064x}", 2),
                format!("{:064x}", 4),
                format!("{:064x}", 5)
            ]
        );
        assert_eq!(plan.keep_count(), 2);
    }

    #[test]
    fn reasons_are_reported() {
        let h = vec![
            snap(1, "2024-06-01T00:00:00Z", "a", &[]),
            snap(2, "2024-06-02T00:00:00Z", "a", &[]),
        ];
        let p = RetentionPolicy {
            keep_last: Some(1),
            keep_daily: Some(1),
            ..RetentionPolicy::default()
        };
        let now = RusticTime::parse_utc("2024-06-30T23:00:00Z").unwrap();
        let plan = plan(h, &p, GroupBy::default(), &now).unwrap();
        let d = &plan.groups[0].snapshots[0];
        assert!(d.keep);
        assert!(
            d.reasons.iter().any(|r| r.contains("last")),
            "{:?}",
            d.reasons
        );
        assert!(
            d.reasons.iter().any(|r| r.contains("daily")),
            "{:?}",
            d.reasons
        );
        assert!(!plan.groups[0].snapshots[1].keep);
        assert!(plan.groups[0].snapshots[1].reasons.is_empty());
    }

    #[test]
    fn empty_policy_is_refused() {
        let now = Zoned::now();
        assert!(
            plan(
                vec![],
                &RetentionPolicy::default(),
                GroupBy::default(),
                &now
            )
            .is_err()
        );
        let p = RetentionPolicy {
            keep_last: Some(0),
            ..RetentionPolicy::default()
        };
        // keep-last 0 is an explicit "keep none by count", allowed (restic allows it too).
        let h = vec![snap(1, "2024-06-01T00:00:00Z", "a", &[])];
        let plan = plan(h, &p, GroupBy::default(), &now).unwrap();
        assert_eq!(plan.keep_count(), 0);
    }
}

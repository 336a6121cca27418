//! Our view of a snapshot: plain data, serialisable, free of rustic_core types, so callers
//! (CLI, mover, drills) never depend on the engine.

use jiff::Zoned;
use rustic_core::repofile::{RusticTime, SnapshotFile};
use serde::{Deserialize, Serialize};

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Full ID (64 hex digits).
    pub id: String,
    /// First 8 hex digits, as restic prints them.
    pub short_id: String,
    /// When the backup was taken, with the UTC offset it was recorded in (retention buckets
    /// days, weeks and months in that offset, as restic does).
    #[serde(with = "time_with_offset")]
    pub time: Zoned,
    /// Host the backup claims to come from.
    pub hostname: String,
    /// User who ran it.
    #[serde(default)]
    pub username: String,
    /// Backed-up paths (for a stream: the file name inside the snapshot).
    pub paths: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Root tree ID.
    pub tree: String,
    /// Parent snapshot, when the backup was incremental.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Statistics recorded by the backup, when present (restic 0.14 does not record them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotStats>,
}

/// Statistics of the backup that created a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Files that were not in the parent.
    pub files_new: u64,
    /// Files that changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent.
    pub files_unmodified: u64,
    /// Bytes of file content read (or matched with the parent).
    pub bytes_processed: u64,
    /// Bytes of new data added to the repository before compression.
    pub data_added: u64,
    /// Bytes added after compression (what the repository grew by).
    pub data_added_packed: u64,
    /// Wall-clock duration of the backup, in seconds.
    pub duration_seconds: f64,
}

impl SnapshotInfo {
    /// Converts rustic_core's snapshot file.
    pub fn from_file(sn: &SnapshotFile) -> Self {
        let id = sn.id.to_hex().as_str().to_string();
        Self {
            short_id: id.chars().take(8).collect(),
            id,
            time: sn.time.clone(),
            hostname: sn.hostname.clone(),
            username: sn.username.clone(),
            paths: sn.paths.iter().cloned().collect(),
            tags: sn.tags.iter().cloned().collect(),
            tree: sn.tree.to_hex().as_str().to_string(),
            parent: sn.parent.map(|p| p.to_hex().as_str().to_string()),
            summary: sn.summary.as_ref().map(|s| SnapshotStats {
                files_new: s.files_new,
                files_changed: s.files_changed,
                files_unmodified: s.files_unmodified,
                bytes_processed: s.total_bytes_processed,
                data_added: s.data_added,
                data_added_packed: s.data_added_packed,
                duration_seconds: s.backup_duration,
            }),
        }
    }

    /// True if every tag in `tags` is on the snapshot.
    pub fn has_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| self.tags.contains(t))
    }

    /// Whether the snapshot carries `key=value`, or no `key=` tag at all (`tag` is
    /// `key=value`; a tag without `=` must be present as is).
    pub fn agrees_with(&self, tag: &str) -> bool {
        let Some((key, _)) = tag.split_once('=') else {
            return self.tags.iter().any(|t| t == tag);
        };
        let mut keyed = self
            .tags
            .iter()
            .filter(|t| t.split_once('=').is_some_and(|(k, _)| k == key))
            .peekable();
        keyed.peek().is_none() || keyed.any(|t| t == tag)
    }
}

/// Which snapshots an operation looks at. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Only this host.
    pub host: Option<String>,
    /// Only snapshots carrying all these tags.
    pub tags: Vec<String>,
    /// Only snapshots with exactly these paths (order-insensitive).
    pub paths: Vec<String>,
    /// `key=value` tags a snapshot must not contradict: one tagged `key=` with another
    /// value is left out, one with no `key=` tag at all passes (it was written before the
    /// key existed). How an owner's retention skips snapshots that share its selector tags
    /// but belong to someone else.
    pub not_contradicting: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes the filter.
    pub fn matches(&self, sn: &SnapshotInfo) -> bool {
        if let Some(h) = &self.host
            && &sn.hostname != h
        {
            return false;
        }
        if !sn.has_tags(&self.tags) {
            return false;
        }
        if !self.not_contradicting.iter().all(|t| sn.agrees_with(t)) {
            return false;
        }
        if !self.paths.is_empty() {
            let mut a = self.paths.clone();
            let mut b = sn.paths.clone();
            a.sort();
            b.sort();
            if a != b {
                return false;
            }
        }
        true
    }
}

/// RFC 3339 with the recorded offset (`2024-05-01T10:11:12.5+02:00`), restic's format.
mod time_with_offset {
    use super::{RusticTime, Zoned};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(t: &Zoned, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&RusticTime::to_string(t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zoned, D::Error> {
        let s = String::deserialize(d)?;
        RusticTime::parse_utc(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keeps_its_offset_through_json() {
        let t = RusticTime::parse_utc("2024-05-01T23:30:00+02:00").unwrap();
        let info = SnapshotInfo {
            id: "ab".repeat(32),
            short_id: "abababab".into(),
            time: t.clone(),
            hostname: "h".into(),
            username: String::new(),
            paths: vec!["/data".into()],
            tags: vec![],
            tree: "cd".repeat(32),
            parent: None,
            summary: None,
        };
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains("2024-05-01T23:30:00+02:00"), "{json}");
        let back: SnapshotInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back.time.timestamp(), t.timestamp());
        assert_eq!(back.time.day(), 1);
    }

    #[test]
    fn filter_matches() {
        let mut sn: SnapshotInfo = serde_json::from_value(serde_json::json!({
            "id": "00", "short_id": "00", "time": "2024-01-01T00:00:00Z", "hostname": "a",
            "paths": ["/x", "/y"], "tags": ["db", "daily"], "tree": "00"
        }))
        .unwrap();
        let f = |host: Option<&str>, tags: &[&str], paths: &[&str]| SnapshotFilter {
            host: host.map(str::to_string),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            ..SnapshotFilter::default()
        };
        assert!(f(None, &[], &[]).matches(&sn));
        assert!(f(Some("a"), &["db"], &["/y", "/x"]).matches(&sn));
        assert!(!f(Some("b"), &[], &[]).matches(&sn));
        assert!(!f(None, &["weekly"], &[]).matches(&sn));
        assert!(!f(None, &[], &["/x"]).matches(&sn));
        sn.tags.clear();
        assert!(!f(None, &["db"], &[]).matches(&sn));
    }

    #[test]
    fn filter_leaves_out_contradicting_tags_only() {
        let sn = |tags: &[&str]| -> SnapshotInfo {
            serde_json::from_value(serde_json::json!({
                "id": "00", "short_id": "00", "time": "2024-01-01T00:00:00Z",
                "hostname": "a", "paths": ["/x"], "tags": tags, "tree": "00"
            }))
            .unwrap()
        };
        let f = SnapshotFilter {
            tags: vec!["policy=shop/db".into()],
            not_contradicting: vec!["cluster=c1".into(), "policy-uid=u1".into()],
            ..SnapshotFilter::default()
        };
        let cases: &[(&[&str], bool)] = &[
            (&["policy=shop/db", "cluster=c1", "policy-uid=u1"], true),
            // Written before the owner tags existed: still the policy's.
            (&["policy=shop/db"], true),
            (&["policy=shop/db", "cluster=c1"], true),
            // Another cluster, or a policy of the same name that was deleted and made again.
            (&["policy=shop/db", "cluster=c2", "policy-uid=u1"], false),
            (&["policy=shop/db", "cluster=c1", "policy-uid=u0"], false),
            (&["policy=shop/db", "cluster=c2"], false),
            // A key's prefix is not the key.
            (&["policy=shop/db", "cluster-x=c2", "policy-uidx=u0"], true),
            (&["policy=shop/other", "cluster=c1", "policy-uid=u1"], false),
        ];
        for (tags, want) in cases {
            assert_eq!(f.matches(&sn(tags)), *want, "{tags:?}");
        }
    }
}

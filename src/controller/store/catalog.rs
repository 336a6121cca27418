//! The catalog of a store's repository: which restore points of which policy identity
//! (`namespace/policy`) its snapshots make up, whichever cluster wrote them. Built from
//! the snapshot files alone (their tags), kept in memory by snapshot ID (snapshot files
//! are content-addressed and never change, so each is decoded once), summarised in the
//! store's status, and read by the Restore controller to resolve a restore point that has
//! no Backup object (a new cluster, a deleted namespace).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::backup::SourceKind;
use crate::crd::store::{CatalogStatus, IdentitySummary};
use crate::mover::tags;
use crate::repo::SnapshotInfo;

/// Identities listed in a store's status; the rest are counted in `identities`.
pub const MAX_IDENTITIES_IN_STATUS: usize = 50;

/// One snapshot of a Lifeboat source, as far as the catalog cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub time: Timestamp,
    /// `namespace/policy`.
    pub identity: String,
    /// The run (Backup name) that wrote it.
    pub run: String,
    pub kind: SourceKind,
    pub source: String,
    /// Database snapshots: `postgres` or `mysql` (the `db-engine:` tag).
    pub db_engine: Option<String>,
    /// Database snapshots: the dumped database, unless all were (the `db-name:` tag).
    pub db_name: Option<String>,
    /// Bytes the backup read (restic's summary), to size a restored volume.
    pub bytes: Option<u64>,
}

impl Entry {
    /// `None` for snapshots that Lifeboat did not write (other tools share repositories).
    pub fn from_info(sn: &SnapshotInfo) -> Option<Self> {
        if !sn.tags.iter().any(|t| t == tags::LIFEBOAT) {
            return None;
        }
        let identity = tags::value(&sn.tags, "policy")?;
        let (ns, policy) = identity.split_once('/')?;
        if ns.is_empty() || policy.is_empty() {
            return None;
        }
        let run = tags::value(&sn.tags, "backup")?;
        let (kind, source) = tags::value(&sn.tags, "source")?.split_once('/')?;
        let kind = match kind {
            "volume" => SourceKind::Volume,
            "database" => SourceKind::Database,
            "manifests" => SourceKind::Manifests,
            _ => return None,
        };
        let colon = |key: &str| {
            sn.tags
                .iter()
                .find_map(|t| t.strip_prefix(key).map(str::to_string))
        };
        Some(Self {
            id: sn.id.clone(),
            time: sn.time.timestamp(),
            identity: identity.to_string(),
            run: run.to_string(),
            kind,
            source: source.to_string(),
            db_engine: colon("db-engine:"),
            db_name: colon("db-name:").filter(|n| n != "all"),
            bytes: sn.summary.as_ref().map(|s| s.bytes_processed),
        })
    }
}

/// The snapshots of one run of one identity: what a Backup object would have recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePoint {
    pub identity: String,
    pub run: String,
    /// The newest of its snapshots' times (a restore point is complete when its last
    /// source is).
    pub time: Timestamp,
    /// One snapshot per source (the newest, should a run have written one twice).
    pub sources: Vec<Entry>,
}

/// What one listing of a repository holds.
#[derive(Clone, Debug, Default)]
pub struct StoreCatalog {
    /// The repository these IDs belong to: another one (the store's location changed)
    /// starts the cache afresh.
    pub repository_id: String,
    /// Every snapshot of the last listing by ID; `None` for those Lifeboat did not write.
    entries: HashMap<String, Option<Entry>>,
    /// When the listing that produced this began.
    pub listed_at: Option<Timestamp>,
}

impl StoreCatalog {
    /// IDs whose snapshots are decoded already (the lister fetches only the others).
    pub fn knows(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// Applies a listing: `ids` are all snapshot IDs now in the repository, `new` the
    /// decoded snapshots among them the cache did not hold.
    pub fn update(
        &mut self,
        repository_id: &str,
        ids: &[String],
        new: &[SnapshotInfo],
        at: Timestamp,
    ) {
        if self.repository_id != repository_id {
            self.entries.clear();
            self.repository_id = repository_id.to_string();
        }
        let listed: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        self.entries.retain(|id, _| listed.contains(id.as_str()));
        for sn in new {
            self.entries.insert(sn.id.clone(), Entry::from_info(sn));
        }
        self.listed_at = Some(at);
    }

    /// Whether the last listing held this snapshot.
    pub fn holds(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    pub fn snapshots(&self) -> usize {
        self.entries.len()
    }

    /// What the cache holds on the heap, roughly (the map's slots and each entry's
    /// strings), for the memory figures in docs/performance.md.
    pub fn approx_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(String, Option<Entry>)>() + 8;
        self.entries
            .iter()
            .map(|(id, e)| {
                slot + id.capacity()
                    + e.as_ref().map_or(0, |e| {
                        e.id.capacity()
                            + e.identity.capacity()
                            + e.run.capacity()
                            + e.source.capacity()
                            + e.db_engine.as_ref().map_or(0, String::capacity)
                            + e.db_name.as_ref().map_or(0, String::capacity)
                    })
            })
            .sum()
    }

    /// Restore points, by identity, oldest first within each.
    pub fn points(&self) -> BTreeMap<String, Vec<RestorePoint>> {
        let mut runs: BTreeMap<(String, String), Vec<&Entry>> = BTreeMap::new();
        for e in self.entries.values().flatten() {
            runs.entry((e.identity.clone(), e.run.clone()))
                .or_default()
                .push(e);
        }
        let mut out: BTreeMap<String, Vec<RestorePoint>> = BTreeMap::new();
        for ((identity, run), mut entries) in runs {
            entries.sort_by(|a, b| {
                (kind_tag(a.kind), &a.source)
                    .cmp(&(kind_tag(b.kind), &b.source))
                    .then(b.time.cmp(&a.time))
                    .then(a.id.cmp(&b.id))
            });
            entries.dedup_by(|b, a| a.kind == b.kind && a.source == b.source);
            let time = entries.iter().map(|e| e.time).max().unwrap_or_default();
            out.entry(identity.clone()).or_default().push(RestorePoint {
                identity,
                run,
                time,
                sources: entries.into_iter().cloned().collect(),
            });
        }
        for points in out.values_mut() {
            points.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.run.cmp(&b.run)));
        }
        out
    }

    /// The restore points of one identity, oldest first.
    pub fn points_of(&self, identity: &str) -> Vec<RestorePoint> {
        self.points().remove(identity).unwrap_or_default()
    }

    /// The store status's summary: the identities with the newest restore points first,
    /// at most [`MAX_IDENTITIES_IN_STATUS`] of them.
    pub fn summary(&self) -> CatalogStatus {
        let points = self.points();
        let mut ids: Vec<IdentitySummary> = points
            .iter()
            .filter_map(|(identity, p)| {
                let (oldest, newest) = (p.first()?, p.last()?);
                Some(IdentitySummary {
                    policy: identity.clone(),
                    restore_points: p.len() as u64,
                    oldest: Time(oldest.time),
                    newest: Time(newest.time),
                    newest_backup: newest.run.clone(),
                    sources: newest
                        .sources
                        .iter()
                        .map(|e| format!("{}/{}", kind_tag(e.kind), e.source))
                        .collect(),
                })
            })
            .collect();
        ids.sort_by(|a, b| {
            b.newest
                .0
                .cmp(&a.newest.0)
                .then_with(|| a.policy.cmp(&b.policy))
        });
        let identities = ids.len() as u64;
        ids.truncate(MAX_IDENTITIES_IN_STATUS);
        CatalogStatus {
            snapshots: self.entries.len() as u64,
            other_snapshots: self.entries.values().filter(|e| e.is_none()).count() as u64,
            restore_points: points.values().map(|p| p.len() as u64).sum(),
            identities,
            policies: ids,
            list_time: self.listed_at.map(Time),
        }
    }
}

/// The tag word of a source kind (`volume`, `database`, `manifests`).
pub fn kind_tag(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Volume => "volume",
        SourceKind::Database => "database",
        SourceKind::Manifests => "manifests",
    }
}

/// A store, by scope and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreKey {
    /// `None` for a ClusterBackupStore.
    pub namespace: Option<String>,
    pub name: String,
}

impl StoreKey {
    /// The store a reference of an object in `namespace` names.
    pub fn of_ref(namespace: &str, r: &crate::crd::backup_policy::StoreRef) -> Self {
        use crate::crd::backup_policy::StoreKind;
        StoreKey {
            namespace: match r.kind {
                StoreKind::BackupStore => Some(namespace.to_string()),
                StoreKind::ClusterBackupStore => None,
            },
            name: r.name.clone(),
        }
    }
}

/// The catalogs of every store this controller has listed, shared by the store
/// controllers (which write) and the Restore controller (which reads). Each is an `Arc`
/// swapped whole, so a reader never holds the lock while it works.
#[derive(Default)]
pub struct Catalogs(Mutex<HashMap<StoreKey, Arc<StoreCatalog>>>);

impl Catalogs {
    pub fn get(&self, key: &StoreKey) -> Option<Arc<StoreCatalog>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn put(&self, key: StoreKey, catalog: StoreCatalog) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::new(catalog));
    }

    pub fn remove(&self, key: &StoreKey) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Forgets the catalogs of one scope's stores (cluster stores, or namespaced ones)
    /// that are not in `live`: the stores deleted while the controller was not watching.
    /// A deleted store's catalog takes memory for nothing, and must not answer for a store
    /// made again under its name (on another repository, perhaps) before that one is listed.
    pub fn keep_only(&self, cluster: bool, live: &std::collections::HashSet<StoreKey>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| k.namespace.is_none() != cluster || live.contains(k));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn snap(id: &str, at: &str, tags: &[&str]) -> SnapshotInfo {
        let time: Timestamp = at.parse().unwrap();
        SnapshotInfo {
            id: id.into(),
            short_id: id.chars().take(8).collect(),
            time: time.to_zoned(jiff::tz::TimeZone::UTC),
            hostname: "h".into(),
            username: String::new(),
            paths: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: "t".into(),
            parent: None,
            summary: None,
        }
    }

    fn ours(id: &str, at: &str, identity: &str, run: &str, source: &str) -> SnapshotInfo {
        snap(
            id,
            at,
            &[
                "lifeboat",
                &format!("policy={identity}"),
                &format!("source={source}"),
                &format!("backup={run}"),
            ],
        )
    }

    #[test]
    fn snapshots_group_into_restore_points_by_identity_and_run() {
        let mut c = StoreCatalog::default();
        let all = vec![
            ours(
                "a1",
                "2026-01-01T00:00:00Z",
                "shop/daily",
                "r1",
                "volume/data",
            ),
            ours(
                "a2",
                "2026-01-01T00:01:00Z",
                "shop/daily",
                "r1",
                "manifests/shop",
            ),
            ours(
                "b1",
                "2026-01-02T00:00:00Z",
                "shop/daily",
                "r2",
                "volume/data",
            ),
            ours(
                "c1",
                "2026-01-03T00:00:00Z",
                "crm/nightly",
                "r1",
                "database/pg",
            ),
            snap("x1", "2026-01-04T00:00:00Z", &["made-by-restic"]),
        ];
        let ids: Vec<String> = all.iter().map(|s| s.id.clone()).collect();
        c.update("repo", &ids, &all, "2026-01-05T00:00:00Z".parse().unwrap());
        let shop = c.points_of("shop/daily");
        assert_eq!(shop.len(), 2);
        assert_eq!(shop[0].run, "r1");
        assert_eq!(shop[0].sources.len(), 2);
        assert_eq!(shop[0].time, "2026-01-01T00:01:00Z".parse().unwrap());
        // The same run name in another identity is another restore point.
        assert_eq!(c.points_of("crm/nightly").len(), 1);
        let s = c.summary();
        assert_eq!((s.snapshots, s.other_snapshots), (5, 1));
        assert_eq!((s.restore_points, s.identities), (3, 2));
        assert_eq!(s.policies[0].policy, "crm/nightly", "newest first");
        assert_eq!(s.policies[1].restore_points, 2);
        assert_eq!(s.policies[1].newest_backup, "r2");
        assert_eq!(s.policies[1].sources, vec!["volume/data"]);
    }

    #[test]
    fn a_listing_forgets_what_the_repository_lost_and_decodes_only_new_ids() {
        let mut c = StoreCatalog::default();
        let first = vec![
            ours(
                "a1",
                "2026-01-01T00:00:00Z",
                "shop/daily",
                "r1",
                "volume/data",
            ),
            ours(
                "b1",
                "2026-01-02T00:00:00Z",
                "shop/daily",
                "r2",
                "volume/data",
            ),
        ];
        c.update(
            "repo",
            &["a1".into(), "b1".into()],
            &first,
            Timestamp::UNIX_EPOCH,
        );
        assert!(c.knows("a1") && c.knows("b1") && !c.knows("c1"));
        // Retention forgot a1; c1 is new: only c1 is handed over decoded.
        let new = vec![ours(
            "c1",
            "2026-01-03T00:00:00Z",
            "shop/daily",
            "r3",
            "volume/data",
        )];
        c.update(
            "repo",
            &["b1".into(), "c1".into()],
            &new,
            Timestamp::UNIX_EPOCH,
        );
        let runs: Vec<_> = c
            .points_of("shop/daily")
            .into_iter()
            .map(|p| p.run)
            .collect();
        assert_eq!(runs, vec!["r2", "r3"]);
        assert!(!c.holds("a1"));
        // Another repository at the store's location: nothing carries over.
        c.update("other", &[], &[], Timestamp::UNIX_EPOCH);
        assert_eq!(c.snapshots(), 0);
    }

    #[test]
    fn catalogs_of_stores_that_are_gone_are_forgotten_per_scope() {
        let key = |ns: Option<&str>, name: &str| StoreKey {
            namespace: ns.map(str::to_string),
            name: name.into(),
        };
        let all = Catalogs::default();
        for k in [
            key(Some("shop"), "s3"),
            key(Some("shop"), "gone"),
            key(None, "shared"),
            key(None, "old"),
        ] {
            all.put(k, StoreCatalog::default());
        }
        all.remove(&key(Some("shop"), "gone"));
        assert!(all.get(&key(Some("shop"), "gone")).is_none());
        // The cluster stores' relist: only "shared" is left; namespaced ones are untouched.
        all.keep_only(true, &[key(None, "shared")].into_iter().collect());
        assert!(all.get(&key(None, "old")).is_none());
        assert!(all.get(&key(None, "shared")).is_some());
        assert!(all.get(&key(Some("shop"), "s3")).is_some());
        all.keep_only(false, &Default::default());
        assert!(all.get(&key(Some("shop"), "s3")).is_none());
        assert!(all.get(&key(None, "shared")).is_some());
    }

    #[test]
    fn database_tags_and_malformed_identities() {
        let mut db = ours("d1", "2026-01-01T00:00:00Z", "crm/n", "r1", "database/pg");
        db.tags
            .extend(["db-engine:postgres".to_string(), "db-name:all".to_string()]);
        let e = Entry::from_info(&db).unwrap();
        assert_eq!(e.kind, SourceKind::Database);
        assert_eq!(e.db_engine.as_deref(), Some("postgres"));
        assert_eq!(e.db_name, None, "an all-databases dump names no database");
        for bad in ["crm", "/n", "crm/"] {
            let s = ours("d2", "2026-01-01T00:00:00Z", bad, "r1", "volume/v");
            assert_eq!(Entry::from_info(&s), None, "{bad}");
        }
        let odd = ours("d3", "2026-01-01T00:00:00Z", "a/b", "r1", "tape/v");
        assert_eq!(Entry::from_info(&odd), None);
    }
}

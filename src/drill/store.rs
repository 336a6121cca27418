//! Where evidence reports live and how they are written and read: plain objects under
//! `lifeboat-reports/<namespace>/<drill>/` below the repository's root (the same bucket and
//! prefix, so the store's credentials reach them), named
//! `<run start, YYYYMMDDTHHMMSSZ>-<run>.json` plus `.md` for the page, so that key order
//! is run order. restic and Lifeboat only read their own directories of a repository
//! (`config`, `keys/`, `snapshots/`, `index/`, `data/`, `locks/`), so the reports do not
//! disturb `check`, `prune` or any other repository operation.
//!
//! Every call blocks (the object store does).

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;

use super::chain::Stored;
use super::report::{self, PageRef, Previous, Report, Signer};
use crate::crd::dr_drill::DrillRun;
use crate::repo::{ObjectStore, Storage, StoreError, StoreErrorKind};

/// Top-level directory of reports below the repository root.
pub const REPORTS_DIR: &str = "lifeboat-reports";

/// Where one drill's reports are.
pub fn drill_dir(namespace: &str, drill: &str) -> String {
    format!("{REPORTS_DIR}/{namespace}/{drill}")
}

/// The key of a run's JSON report.
pub fn report_key(namespace: &str, drill: &str, start: Timestamp, run: &str) -> String {
    format!(
        "{}/{}-{run}.json",
        drill_dir(namespace, drill),
        start.strftime("%Y%m%dT%H%M%SZ")
    )
}

/// The page's key next to a JSON report's.
pub fn page_key(report_key: &str) -> String {
    format!("{}.md", report_key.trim_end_matches(".json"))
}

/// The HTML page's key next to a JSON report's.
pub fn html_key(report_key: &str) -> String {
    format!("{}.html", report_key.trim_end_matches(".json"))
}

/// The repository's root as a location prefix for reports: `s3://bucket/prefix` or
/// `file:///path`.
pub fn base_location(storage: &Storage) -> String {
    match storage {
        Storage::S3(c) if c.prefix.is_empty() => format!("s3://{}", c.bucket),
        Storage::S3(c) => format!("s3://{}/{}", c.bucket, c.prefix.trim_matches('/')),
        Storage::Local(p) => format!("file://{}", p.display()),
    }
}

/// What a written (or already present) report is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub location: String,
    pub page_location: String,
    pub sha256: String,
    pub previous_sha256: Option<String>,
    /// False when an earlier attempt had already written it (nothing was written now).
    pub created: bool,
}

/// How [`ReportStore::write_as`] writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// The key that will sign the report.
    pub signer: Option<Signer>,
    /// The key of the report to link to (the anchored head), instead of the newest one
    /// before this run's key: a report planted between the head and this run is not
    /// linked into the chain.
    pub after: Option<String>,
}

/// Reports of a repository.
pub struct ReportStore {
    store: Arc<dyn ObjectStore>,
    base: String,
}

impl ReportStore {
    /// Reports below `store`'s root, whose locations start with `base`.
    pub fn new(store: Arc<dyn ObjectStore>, base: String) -> Self {
        ReportStore { store, base }
    }

    /// The full location of a key.
    pub fn location(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// The key of a location recorded in a DrillRun, if it is below this store's root.
    pub fn key_of(&self, location: &str) -> Option<String> {
        location
            .strip_prefix(&self.base)
            .and_then(|k| k.strip_prefix('/'))
            .filter(|k| k.starts_with(REPORTS_DIR))
            .map(str::to_string)
    }

    /// Keys of a drill's JSON reports, in run order.
    pub fn list(&self, namespace: &str, drill: &str) -> Result<Vec<String>, StoreError> {
        let dir = drill_dir(namespace, drill);
        let mut keys: Vec<String> = self
            .store
            .list(&dir)?
            .into_iter()
            .map(|(name, _)| format!("{dir}/{}", name.trim_start_matches('/')))
            .filter(|k| k.ends_with(".json"))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Reads an object; `None` when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.store.get(key, None) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every JSON report of a drill.
    pub fn load(&self, namespace: &str, drill: &str) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        for key in self.list(namespace, drill)? {
            if let Some(bytes) = self.get(&key)? {
                out.push(Stored { key, bytes });
            }
        }
        Ok(out)
    }

    /// [`Self::write_as`] without a signer (the report Job's, until the controller signs).
    pub fn write(&self, run: &DrillRun, now: Timestamp) -> Result<Written, StoreError> {
        self.write_as(run, now, &WriteOptions::default())
    }

    /// Writes the report of a finished run (status final but for the report), linked to
    /// the drill's previous report (the newest before it in key order, or `o.after`),
    /// naming `o.signer` as the key that will sign it.
    /// Idempotent: when an earlier attempt already wrote this run's report, that one is
    /// kept and described (the first write wins, so the chain never forks). An object at
    /// the run's key that is *not* this run's report as recorded (planted there by
    /// someone holding the store's credentials before the run wrote it) is replaced. The
    /// pages are written before the JSON: a JSON report always has its pages.
    pub fn write_as(
        &self,
        run: &DrillRun,
        now: Timestamp,
        o: &WriteOptions,
    ) -> Result<Written, StoreError> {
        let ns = run.namespace().unwrap_or_default();
        let drill = run.spec.drill_ref.name.clone();
        let start = run
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(run.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0);
        let key = report_key(&ns, &drill, start, &run.name_any());
        let keys = self.list(&ns, &drill)?;
        if keys.contains(&key)
            && let Some(bytes) = self.get(&key)?
        {
            let r: Option<Report> = serde_json::from_slice(&bytes).ok();
            if let Some(r) = r.filter(|r| report::differences(r, run).is_empty()) {
                return Ok(Written {
                    location: self.location(&key),
                    page_location: self.location(&page_key(&key)),
                    sha256: report::sha256(&bytes),
                    previous_sha256: r.previous_sha256,
                    created: false,
                });
            }
            tracing::warn!(
                key,
                "an object at the run's report key is not its report: replacing it"
            );
        }
        let before: Vec<&String> = keys.iter().filter(|k| **k < key).collect();
        let previous_key = match &o.after {
            Some(k) => Some(k),
            None => before.last().copied(),
        };
        let previous = match previous_key {
            Some(k) => Some((
                k.clone(),
                self.get(k)?.ok_or_else(|| {
                    StoreError::new(
                        StoreErrorKind::NotFound,
                        "GET",
                        k.clone(),
                        "the previous report is missing",
                    )
                })?,
            )),
            None => None,
        };
        let prev_sha = previous.as_ref().map(|(_, b)| report::sha256(b));
        let prev_report: Option<Report> = previous
            .as_ref()
            .and_then(|(_, b)| serde_json::from_slice(b).ok());
        let mut r = report::build(
            run,
            now,
            previous.as_ref().map(|(k, _)| Previous {
                key: k,
                sha256: prev_sha.as_deref().expect("set with previous"),
                // Reports from before sequence numbers count by their place.
                sequence: prev_report
                    .as_ref()
                    .and_then(|r| r.sequence)
                    .unwrap_or(before.len() as u64),
                report: prev_report.as_ref(),
            }),
            o.signer.clone(),
        );
        let page = report::render_markdown(&r).into_bytes();
        let html = super::html::render(&r).into_bytes();
        let pk = page_key(&key);
        let hk = html_key(&key);
        r.page = Some(PageRef {
            key: pk.clone(),
            sha256: report::sha256(&page),
        });
        r.html = Some(PageRef {
            key: hk.clone(),
            sha256: report::sha256(&html),
        });
        let bytes = report::to_bytes(&r);
        self.store.put(&pk, vec![page.into()])?;
        self.store.put(&hk, vec![html.into()])?;
        let sha = report::sha256(&bytes);
        self.store.put(&key, vec![bytes.into()])?;
        Ok(Written {
            location: self.location(&key),
            page_location: self.location(&pk),
            sha256: sha,
            previous_sha256: prev_sha,
            created: true,
        })
    }

    /// Writes an object below the root (a signature file).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store.put(key, vec![bytes.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::dr_drill::DrillOutcome;
    use crate::drill::chain;
    use crate::repo::backend::local::LocalStore;

    #[test]
    fn keys_sort_in_run_order() {
        let a = report_key(
            "shop",
            "orders",
            "2026-11-22T09:00:00Z".parse().unwrap(),
            "orders-b",
        );
        let b = report_key(
            "shop",
            "orders",
            "2026-11-22T10:00:00Z".parse().unwrap(),
            "orders-a",
        );
        assert_eq!(
            a,
            "lifeboat-reports/shop/orders/20261122T090000Z-orders-b.json"
        );
        assert!(a < b);
        assert_eq!(
            page_key(&a),
            "lifeboat-reports/shop/orders/20261122T090000Z-orders-b.md"
        );
    }

    #[test]
    fn writes_link_runs_into_a_verifiable_chain_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::new(
            Arc::new(LocalStore::new(dir.path().to_path_buf())),
            "file:///repo".into(),
        );
        let now: Timestamp = "2026-11-22T16:00:00Z".parse().unwrap();
        let mut r1 = crate::drill::report::tests::run("r1", DrillOutcome::Passed, Some(60.0));
        r1.status.as_mut().unwrap().start_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-22T15:00:00Z".parse().unwrap(),
            ));
        let w1 = store.write(&r1, now).unwrap();
        assert!(w1.created);
        assert_eq!(w1.previous_sha256, None);
        assert!(
            w1.location
                .starts_with("file:///repo/lifeboat-reports/shop/orders/20261122T150000Z-r1.json")
        );
        let again = store
            .write(&r1, now + jiff::SignedDuration::from_secs(60))
            .unwrap();
        assert_eq!(
            again.sha256, w1.sha256,
            "a retried report Job keeps the first report"
        );
        assert!(!again.created);

        let mut r2 = crate::drill::report::tests::run("r2", DrillOutcome::Failed, None);
        r2.status.as_mut().unwrap().start_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-22T15:30:00Z".parse().unwrap(),
            ));
        let w2 = store.write(&r2, now).unwrap();
        assert_eq!(w2.previous_sha256.as_deref(), Some(w1.sha256.as_str()));
        let page = store
            .get(&store.key_of(&w2.page_location).unwrap())
            .unwrap()
            .unwrap();
        assert!(String::from_utf8(page).unwrap().contains("outcome  ✔✘"));

        let reports = store.load("shop", "orders").unwrap();
        assert_eq!(reports.len(), 2);
        let rec = |h: &str| chain::RunRecord {
            report_sha256: Some(h.to_string()),
            ..chain::RunRecord::default()
        };
        let trust = chain::Trust {
            runs: Some(
                [
                    ("r1".to_string(), rec(&w1.sha256)),
                    ("r2".to_string(), rec(&w2.sha256)),
                ]
                .into(),
            ),
            drill_head: Some(w2.sha256.clone()),
            ..chain::Trust::default()
        };
        let v = chain::verify(
            "shop",
            "orders",
            reports,
            &mut |k| store.get(k).ok().flatten(),
            &trust,
        );
        assert!(v.intact(), "{v:#?}");
        assert_eq!(store.key_of("s3://elsewhere/x"), None);
    }
}

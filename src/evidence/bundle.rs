//! The evidence bundle an auditor takes away (`lifeboat evidence export`) and checks with
//! no cluster (`lifeboat evidence verify`). Pure but for the archive I/O: building the
//! file set from what the CLI read, the `.tar.gz` and directory forms, and verifying every
//! drill in it with `crate::drill::chain::verify`.
//!
//! Layout (every path relative to the bundle root):
//!
//! | path | what |
//! |---|---|
//! | `README.md` | what is inside and how to verify it, with and without Lifeboat |
//! | `manifest.json` | the export: when, which window, which drills, which report keys |
//! | `public-key.pem` | the keys the installation published at export time |
//! | `summary.csv` | one line per run: date, drill, outcome, RTO, RPO, restore point age |
//! | `drills/<ns>/<drill>/anchor.json` | the drill's signed anchor (when there is one) |
//! | `drills/<ns>/<drill>/drillruns.yaml` | the DrillRun records the cluster had |
//! | `store/<key>` | each report, its `.json.sig`, `.md` and `.html`, under its store key |
//!
//! Reports keep their store keys, so the links and page references inside them resolve
//! in the bundle exactly as in the store. The manifest is not signed (the exporter holds
//! no private key): it only says where to look. Verification walks every report found
//! under a drill's directory, not only those the manifest lists, and every anchor found,
//! so that removing a report or a drill from the manifest hides nothing the signatures
//! and anchors cover.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use jiff::Timestamp;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::Error;
use super::keys::PublicKey;
use super::signature::{Envelope, signature_key};
use crate::crd::dr_drill::DrillRun;
use crate::drill::chain::{self, AnchorInput, RunRecord, Stored, Trust, Verdict};
use crate::drill::report::Report;
use crate::drill::store::drill_dir;

/// `format` of the manifest.
pub const BUNDLE_FORMAT: &str = "lifeboat.dev/evidence-bundle/v1";
/// Reading an archive stops beyond this many bytes of content (a bundle of a year of
/// hourly drills of one namespace is a few hundred MiB at most).
pub const MAX_BUNDLE_BYTES: u64 = 2 << 30;
/// Directory of the store's objects in the bundle.
pub const STORE_DIR: &str = "store";

/// What the manifest records of one drill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillEntry {
    pub namespace: String,
    pub drill: String,
    /// Whether the DRDrill existed at export.
    pub drill_exists: bool,
    /// The DRDrill's `status.lastReport.sha256` (tenant-writable; used without an anchor).
    pub drill_head: Option<String>,
    /// Store keys of the exported reports, oldest first.
    pub reports: Vec<String>,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub exported_at: Timestamp,
    /// Reports of runs started before this are left out, but for the last one before it
    /// (so that the first link still verifies).
    pub since: Option<Timestamp>,
    /// Key IDs of `public-key.pem`.
    pub key_ids: Vec<String>,
    pub drills: Vec<DrillEntry>,
}

/// One drill's evidence as read from the cluster and the store.
#[derive(Clone, Debug, Default)]
pub struct DrillInput {
    pub namespace: String,
    pub drill: String,
    pub drill_exists: bool,
    pub drill_head: Option<String>,
    pub anchor: Option<Envelope>,
    pub runs: Vec<DrillRun>,
    /// Every report of the drill in the store (the window is applied here).
    pub reports: Vec<Stored>,
}

/// A bundle: file paths and contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    pub files: BTreeMap<String, Vec<u8>>,
}

/// The start time of a report (from its content; `None` when it does not parse).
fn start_of(s: &Stored) -> Option<Timestamp> {
    serde_json::from_slice::<Report>(&s.bytes)
        .ok()
        .and_then(|r| r.start_time.map(|t| t.0))
}

/// The reports a window keeps: every report of a run started at or after `since`, and
/// the newest one before it, whose digest the first kept report links to.
pub fn in_window(mut reports: Vec<Stored>, since: Option<Timestamp>) -> Vec<Stored> {
    reports.sort_by(|a, b| a.key.cmp(&b.key));
    let Some(since) = since else {
        return reports;
    };
    let first_in = reports
        .iter()
        .position(|s| start_of(s).is_some_and(|t| t >= since))
        .unwrap_or(reports.len());
    reports.split_off(first_in.saturating_sub(1))
}

fn anchor_path(ns: &str, drill: &str) -> String {
    format!("drills/{ns}/{drill}/anchor.json")
}

fn runs_path(ns: &str, drill: &str) -> String {
    format!("drills/{ns}/{drill}/drillruns.yaml")
}

fn store_path(key: &str) -> String {
    format!("{STORE_DIR}/{key}")
}

/// One CSV field, quoted when needed (RFC 4180).
fn csv(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1}")).unwrap_or_default()
}

/// The header of `summary.csv`.
pub const CSV_HEADER: &str = "date,namespace,drill,run,outcome,rto_seconds,rto_objective_met,rpo_seconds,rpo_objective_met,restore_point,restore_point_age_seconds,report";

/// One line of `summary.csv` per report.
pub fn summary_line(key: &str, r: &Report) -> String {
    let start = r.start_time.as_ref().map(|t| t.0);
    let age = match (start, &r.restore_point) {
        (Some(s), Some(p)) => Some(s.duration_since(p.time.0).as_secs_f64()),
        _ => None,
    };
    let met = |m: &Option<crate::crd::dr_drill::Measurement>| {
        m.as_ref()
            .and_then(|m| m.met)
            .map(|b| b.to_string())
            .unwrap_or_default()
    };
    [
        start.map(|t| t.to_string()).unwrap_or_default(),
        r.namespace.clone(),
        r.drill.clone(),
        r.run.clone(),
        r.outcome.map(|o| format!("{o:?}")).unwrap_or_default(),
        secs(r.rto.as_ref().and_then(|m| m.measured_seconds)),
        met(&r.rto),
        secs(r.rpo.as_ref().and_then(|m| m.measured_seconds)),
        met(&r.rpo),
        r.restore_point
            .as_ref()
            .map(|p| p.backup.clone())
            .unwrap_or_default(),
        secs(age),
        key.to_string(),
    ]
    .iter()
    .map(|f| csv(f))
    .collect::<Vec<_>>()
    .join(",")
}

/// DrillRun records without what only the API server needs.
fn runs_yaml(runs: &[DrillRun]) -> Result<String, Error> {
    let mut runs = runs.to_vec();
    runs.sort_by_key(|r| r.name_any());
    for r in &mut runs {
        r.metadata.managed_fields = None;
    }
    serde_saphyr::to_string(&runs).map_err(|e| Error::Bundle(format!("DrillRuns as YAML: {e}")))
}

impl Bundle {
    /// Builds the bundle of `drills` (objects read with `object(key)`: signatures and
    /// pages), exported at `now` with the reports of runs since `since`.
    pub fn build(
        drills: Vec<DrillInput>,
        keys: &[PublicKey],
        since: Option<Timestamp>,
        now: Timestamp,
        object: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    ) -> Result<Bundle, Error> {
        let mut b = Bundle::default();
        let mut entries = Vec::new();
        let mut csv_lines = vec![CSV_HEADER.to_string()];
        for d in drills {
            let reports = in_window(d.reports, since);
            for s in &reports {
                if let Ok(r) = serde_json::from_slice::<Report>(&s.bytes) {
                    csv_lines.push(summary_line(&s.key, &r));
                    for p in [&r.page, &r.html].into_iter().flatten() {
                        if let Some(bytes) = object(&p.key) {
                            b.files.insert(store_path(&p.key), bytes);
                        }
                    }
                }
                if let Some(sig) = object(&signature_key(&s.key)) {
                    b.files.insert(store_path(&signature_key(&s.key)), sig);
                }
                b.files.insert(store_path(&s.key), s.bytes.clone());
            }
            if let Some(env) = &d.anchor {
                b.files
                    .insert(anchor_path(&d.namespace, &d.drill), env.to_bytes());
            }
            b.files.insert(
                runs_path(&d.namespace, &d.drill),
                runs_yaml(&d.runs)?.into_bytes(),
            );
            entries.push(DrillEntry {
                namespace: d.namespace,
                drill: d.drill,
                drill_exists: d.drill_exists,
                drill_head: d.drill_head,
                reports: reports.into_iter().map(|s| s.key).collect(),
            });
        }
        let manifest = Manifest {
            format: BUNDLE_FORMAT.into(),
            exported_at: now,
            since,
            key_ids: keys.iter().map(|k| k.id().to_string()).collect(),
            drills: entries,
        };
        let mut m = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        m.push(b'\n');
        b.files.insert("manifest.json".into(), m);
        b.files.insert(
            "public-key.pem".into(),
            keys.iter()
                .map(PublicKey::to_pem)
                .collect::<String>()
                .into_bytes(),
        );
        let mut text = csv_lines.join("\n");
        text.push('\n');
        b.files.insert("summary.csv".into(), text.into_bytes());
        b.files
            .insert("README.md".into(), readme(&manifest).into_bytes());
        Ok(b)
    }

    /// The manifest.
    pub fn manifest(&self) -> Result<Manifest, Error> {
        let bytes = self.files.get("manifest.json").ok_or_else(|| {
            Error::Bundle("no manifest.json: not a Lifeboat evidence bundle".into())
        })?;
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::Bundle(format!("manifest.json: {e}")))?;
        if m.format != BUNDLE_FORMAT {
            return Err(Error::Bundle(format!(
                "manifest.json has format {:?}, not {BUNDLE_FORMAT}",
                m.format
            )));
        }
        Ok(m)
    }

    /// The `.tar.gz` form. Deterministic: entries in path order, owned by root, mode
    /// 0644, dated at the export.
    pub fn to_tar_gz(&self, mtime: Timestamp) -> Result<Vec<u8>, Error> {
        let io = |e: std::io::Error| Error::Bundle(format!("writing the archive: {e}"));
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        for (path, bytes) in &self.files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime.as_second().max(0) as u64);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, bytes.as_slice())
                .map_err(io)?;
        }
        tar.into_inner().map_err(io)?.finish().map_err(io)
    }

    /// Reads a `.tar.gz`. Only regular files with relative paths are taken; anything else
    /// (links, devices, `..`) is refused, since a bundle never has them.
    pub fn from_tar_gz(bytes: &[u8]) -> Result<Bundle, Error> {
        let io = |e: std::io::Error| Error::Bundle(format!("reading the archive: {e}"));
        let gz = flate2::read::GzDecoder::new(bytes).take(MAX_BUNDLE_BYTES + 1);
        let mut archive = tar::Archive::new(gz);
        let mut b = Bundle::default();
        let mut total = 0u64;
        for entry in archive.entries().map_err(io)? {
            let mut e = entry.map_err(io)?;
            let t = e.header().entry_type();
            if t.is_dir() {
                continue;
            }
            let path = e.path().map_err(io)?.to_string_lossy().to_string();
            if !t.is_file() {
                return Err(Error::Bundle(format!("{path} is not a regular file")));
            }
            let path = clean(&path)?;
            let mut data = Vec::new();
            e.read_to_end(&mut data).map_err(io)?;
            total += data.len() as u64;
            if total > MAX_BUNDLE_BYTES {
                return Err(Error::Bundle(format!(
                    "the archive holds more than {MAX_BUNDLE_BYTES} bytes"
                )));
            }
            b.files.insert(path, data);
        }
        Ok(b)
    }

    /// Reads an unpacked bundle.
    pub fn from_dir(dir: &Path) -> Result<Bundle, Error> {
        let mut b = Bundle::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let rd = std::fs::read_dir(&d)
                .map_err(|e| Error::Bundle(format!("reading {}: {e}", d.display())))?;
            for entry in rd {
                let entry =
                    entry.map_err(|e| Error::Bundle(format!("reading {}: {e}", d.display())))?;
                let p = entry.path();
                let ft = entry
                    .file_type()
                    .map_err(|e| Error::Bundle(format!("{}: {e}", p.display())))?;
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let rel = p.strip_prefix(dir).expect("below the root");
                    let data = std::fs::read(&p)
                        .map_err(|e| Error::Bundle(format!("reading {}: {e}", p.display())))?;
                    b.files.insert(clean(&rel.to_string_lossy())?, data);
                }
            }
        }
        Ok(b)
    }

    /// Verifies every drill in the bundle against `keys` (the installation's public keys,
    /// obtained independently of the bundle): one verdict per drill, in name order.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<Vec<DrillVerdict>, Error> {
        let m = self.manifest()?;
        let mut drills: BTreeMap<(String, String), Option<&DrillEntry>> = m
            .drills
            .iter()
            .map(|d| ((d.namespace.clone(), d.drill.clone()), Some(d)))
            .collect();
        // Drills present in the bundle that the manifest does not list are verified too.
        for path in self.files.keys() {
            let parts: Vec<&str> = path.split('/').collect();
            let found = match parts.as_slice() {
                ["drills", ns, d, _] => Some((ns.to_string(), d.to_string())),
                [STORE_DIR, crate::drill::store::REPORTS_DIR, ns, d, f] if f.ends_with(".json") => {
                    Some((ns.to_string(), d.to_string()))
                }
                _ => None,
            };
            if let Some(k) = found {
                drills.entry(k).or_insert(None);
            }
        }
        let mut out = Vec::new();
        for ((ns, drill), entry) in drills {
            let dir = format!("{}/", store_path(&drill_dir(&ns, &drill)));
            let reports: Vec<Stored> = self
                .files
                .iter()
                .filter(|(p, _)| {
                    p.strip_prefix(&dir)
                        .is_some_and(|f| f.ends_with(".json") && !f.contains('/'))
                })
                .map(|(p, b)| Stored {
                    key: p[STORE_DIR.len() + 1..].to_string(),
                    bytes: b.clone(),
                })
                .collect();
            let listed: BTreeSet<&str> = entry
                .map(|e| e.reports.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let mut notes = Vec::new();
            if entry.is_none() {
                notes.push("the manifest does not list this drill".to_string());
            }
            for s in &reports {
                if !listed.contains(s.key.as_str()) {
                    notes.push(format!(
                        "{} is in the bundle but not in the manifest",
                        s.key
                    ));
                }
            }
            for k in &listed {
                if !reports.iter().any(|s| s.key == *k) {
                    notes.push(format!(
                        "{k} is listed in the manifest but not in the bundle"
                    ));
                }
            }
            let anchor = match self.files.get(&anchor_path(&ns, &drill)) {
                Some(b) => match Envelope::from_bytes(b) {
                    Ok(env) => AnchorInput::Present(env),
                    Err(e) => AnchorInput::Present(Envelope {
                        format: String::new(),
                        algorithm: String::new(),
                        key_id: String::new(),
                        payload: e.to_string(),
                        signature: String::new(),
                    }),
                },
                None => AnchorInput::Missing,
            };
            let runs = match self.files.get(&runs_path(&ns, &drill)) {
                Some(b) => {
                    let text = String::from_utf8_lossy(b);
                    let runs: Vec<DrillRun> = serde_saphyr::from_str(&text)
                        .map_err(|e| Error::Bundle(format!("{}: {e}", runs_path(&ns, &drill))))?;
                    Some(run_records(&runs, &drill))
                }
                None => {
                    notes.push("the bundle has no DrillRun records for this drill".into());
                    None
                }
            };
            let trust = Trust {
                keys: keys.to_vec(),
                anchor,
                runs,
                drill_exists: entry.map(|e| e.drill_exists),
                drill_head: entry.and_then(|e| e.drill_head.clone()),
                window_since: m.since,
            };
            let verdict = chain::verify(
                &ns,
                &drill,
                reports,
                &mut |k| self.files.get(&store_path(k)).cloned(),
                &trust,
            );
            out.push(DrillVerdict {
                namespace: ns,
                drill,
                verdict,
                notes,
            });
        }
        Ok(out)
    }
}

/// The verdict on one drill of a bundle.
#[derive(Clone, Debug)]
pub struct DrillVerdict {
    pub namespace: String,
    pub drill: String,
    pub verdict: Verdict,
    /// Differences between the manifest and the files (informative: the manifest is not
    /// signed).
    pub notes: Vec<String>,
}

/// The records of a drill's runs, by name.
pub fn run_records<'a>(
    runs: impl IntoIterator<Item = &'a DrillRun>,
    drill: &str,
) -> BTreeMap<String, RunRecord> {
    runs.into_iter()
        .filter(|r| r.spec.drill_ref.name == drill)
        .map(|r| {
            let s = r.status.as_ref();
            (
                r.name_any(),
                RunRecord {
                    uid: r.metadata.uid.clone(),
                    created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    start_time: s.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
                    report_sha256: s.and_then(|s| s.report.as_ref()).map(|r| r.sha256.clone()),
                },
            )
        })
        .collect()
}

/// A relative path without `.`, `..` or empty components.
fn clean(path: &str) -> Result<String, Error> {
    let parts: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if path.starts_with('/') || parts.is_empty() || parts.contains(&"..") {
        return Err(Error::Bundle(format!(
            "{path:?} is not a path inside the bundle"
        )));
    }
    Ok(parts.join("/"))
}

/// The README of a bundle.
fn readme(m: &Manifest) -> String {
    let drills: String = m
        .drills
        .iter()
        .map(|d| {
            format!(
                "- `{}/{}`: {} report(s){}\n",
                d.namespace,
                d.drill,
                d.reports.len(),
                if d.drill_exists {
                    ""
                } else {
                    " (the DRDrill no longer existed at export)"
                }
            )
        })
        .collect();
    format!(
        "# Lifeboat evidence bundle\n\n\
Exported {exported}{since}. Trusted key ID(s) at export: {ids}.\n\n\
{drills}\n\
## What is inside\n\n\
- `store/lifeboat-reports/<namespace>/<drill>/`: each drill run's report (`.json`, the record\n  \
  the chain hashes), its signature (`.json.sig`), and its pages (`.md`, `.html`);\n\
- `drills/<namespace>/<drill>/anchor.json`: the installation's signed record of the newest\n  \
  report of the drill (kept where tenants cannot write);\n\
- `drills/<namespace>/<drill>/drillruns.yaml`: the DrillRun records in the cluster at export;\n\
- `summary.csv`: one line per run (date, drill, outcome, RTO, RPO, restore point and its age);\n\
- `public-key.pem`: the installation's public key(s) at export; `manifest.json`: what was exported.\n\n\
## Verify\n\n\
Obtain the installation's public key independently of this bundle (the ConfigMap\n\
`<release>-evidence-public-key` in the controller's namespace, or the copy your organisation\n\
keeps) and compare it with `public-key.pem`. Then:\n\n\
```sh\nlifeboat evidence verify bundle.tar.gz --public-key public-key.pem\n```\n\n\
It checks, for every drill: each report's signature (its digest, run, run UID, place in the\n\
chain), the links between reports (`previousSha256`) and their sequence numbers (no gap, no\n\
reordering), each page's digest, each report against its DrillRun record, and that the\n\
newest report is the head the signed anchor records. It names every problem and exits\n\
non-zero on any.\n\n\
Without Lifeboat, one report's signature (OpenSSL 3):\n\n\
```sh\n\
jq -j .payload R.json.sig > payload\n\
jq -r .signature R.json.sig | base64 -d > sig\n\
openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in payload -sigfile sig\n\
sha256sum R.json   # must equal reportSha256 in payload\n\
```\n\n\
and the same for `anchor.json`, whose `headSha256` is the SHA-256 of the drill's newest report.\n\n\
## What this does not show\n\n\
The manifest and `summary.csv` are not signed: they are an index, checked against the signed\n\
files. Reports of runs before the window are not included, except the last one before it\n\
(so that the first link verifies). A drill whose reports and anchor were both left out of the\n\
bundle is not detected by the verifier: compare the drill list above with the anchors in\n\
the controller's namespace.\n",
        exported = m.exported_at,
        since = m
            .since
            .map(|s| format!(", runs since {s}"))
            .unwrap_or_default(),
        ids = if m.key_ids.is_empty() {
            "none (the installation published no evidence key)".to_string()
        } else {
            m.key_ids.join(", ")
        },
    )
}

#[cfg(test)]
mod tests;

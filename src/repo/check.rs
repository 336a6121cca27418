//! `check`: is every snapshot restorable? Structure first (every index file, pack,
//! snapshot and tree readable; every pack the index lists present at the size the index
//! implies; every tree and data blob a snapshot needs in the index), then optionally the
//! data of all packs or a subset (each pack's SHA-256, its header against the index,
//! every blob authenticated, decompressed and hashed). Damage is named: the pack, the
//! blob, and the snapshots' files that need it, with the Lifeboat command that deals with
//! it. Read-only; runs under a shared lock.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
};

use rand::seq::SliceRandom;
use rustic_core::{
    FileType, Id,
    repofile::{NodeType, SnapshotFile},
};
use serde::Serialize;

use super::{
    Error, Result,
    backend::ObjectStore,
    engine::EngineCtx,
    format::{
        crypto::Crypto,
        files::{self, parallel_map},
        index::{IndexEntry, IndexFiles, RepoIndex},
        object_path,
        pack::{expected_size, read_header, read_range, verify_blob},
        short,
        tree::{TreeLoader, check_entries},
    },
};

/// Which packs `check` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ReadData {
    /// None: structure only.
    None,
    /// Every pack.
    All,
    /// Bucket `n` of `total` (1-based): the packs whose id's first byte modulo `total`
    /// is `n - 1` (restic's `--read-data-subset n/t`; `1/5`..`5/5` read everything once).
    Bucket { n: u32, total: u32 },
    /// A random share of the packs.
    Percent(f64),
    /// Random packs until this many bytes.
    Bytes(u64),
}

impl ReadData {
    /// Parses `n/t`, `x%` or a size (`500MiB`, `2G`, `100000`).
    pub(crate) fn parse(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("invalid --read-data-subset {s:?} (use 10%, 1/5 or 500MiB)");
        let s = s.trim();
        if let Some((n, t)) = s.split_once('/') {
            let (n, total): (u32, u32) = (
                n.trim().parse().map_err(|_| bad())?,
                t.trim().parse().map_err(|_| bad())?,
            );
            if total == 0 || n == 0 || n > total {
                return Err(bad());
            }
            return Ok(Self::Bucket { n, total });
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(Self::Percent(p));
        }
        let digits = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(digits);
        let num: f64 = num.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_lowercase();
        let mult: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
            "" => 1.0,
            "k" => 1024.0,
            "m" => 1024.0 * 1024.0,
            "g" => 1024.0 * 1024.0 * 1024.0,
            "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        let bytes = num * mult;
        if !(bytes >= 1.0 && bytes.is_finite()) {
            return Err(bad());
        }
        Ok(Self::Bytes(bytes as u64))
    }

    fn select(self, mut packs: Vec<(Id, u64)>) -> Vec<(Id, u64)> {
        match self {
            Self::None => Vec::new(),
            Self::All => packs,
            Self::Bucket { n, total } => packs
                .into_iter()
                .filter(|(id, _)| u32::from(super::format::id_bytes(id)[0]) % total == n - 1)
                .collect(),
            Self::Percent(p) => {
                packs.shuffle(&mut rand::rng());
                let k = ((packs.len() as f64) * p / 100.0).ceil() as usize;
                packs.truncate(k.min(packs.len()));
                packs
            }
            Self::Bytes(max) => {
                packs.shuffle(&mut rand::rng());
                let mut total = 0u64;
                packs
                    .into_iter()
                    .take_while(|(_, size)| {
                        let take = total < max;
                        total += size;
                        take
                    })
                    .collect()
            }
        }
    }
}

/// What `check` found. Errors make data unreadable; warnings are harmless.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Problems that make data unreadable, one line each, with what needs the data.
    pub errors: Vec<String>,
    /// Harmless findings (unreferenced packs from an interrupted backup, ...).
    pub warnings: Vec<String>,
    /// Packs whose data is damaged or missing (full ids): `lifeboat repair packs`.
    pub damaged_packs: Vec<String>,
    /// What to do about the errors, in Lifeboat's own commands.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct trees checked.
    pub trees: usize,
    /// Packs in the repository.
    pub packs: usize,
    /// Packs whose data was read.
    pub packs_read: usize,
    /// Bytes of pack data read.
    pub bytes_read: u64,
}

impl CheckReport {
    /// `Err(CheckFailed)` when there are errors.
    pub fn into_result(self) -> Result<Self> {
        match self.errors.first() {
            None => Ok(self),
            Some(first) => Err(Error::CheckFailed {
                count: self.errors.len(),
                first: first.clone(),
            }),
        }
    }
}

/// Packs larger than this are verified blob by blob instead of read whole.
const PACK_READ_WHOLE: u64 = 256 << 20;
/// Files named per damaged blob.
const FILES_PER_BLOB: usize = 3;

/// What reading one pack found: damaged blobs (`id`, why) and pack-level problems.
pub(crate) type PackFindings = (Vec<(Id, String)>, Vec<String>);

/// Verifies the data of one pack against its index entries: damaged blobs (all of them
/// if the pack is gone or its header is unreadable) and the pack-level problems.
pub(crate) fn verify_pack(
    store: &dyn ObjectStore,
    crypto: &Crypto,
    pack: Id,
    size: u64,
    entries: &[IndexEntry],
) -> Result<PackFindings> {
    let mut blobs = Vec::new();
    let mut problems = Vec::new();
    let mut zstd = None;
    let mut scratch = Vec::new();
    if size <= PACK_READ_WHOLE {
        let data = store.get(&object_path(FileType::Pack, &pack), None)?;
        if super::format::hash(&data) != pack {
            problems.push("its content does not match its id (SHA-256)".to_string());
        }
        match read_header(crypto, &data) {
            Err(why) => problems.push(format!("header: {why}")),
            Ok(header) => {
                let listed: HashSet<&IndexEntry> = header.iter().collect();
                if entries.iter().any(|e| !listed.contains(e)) {
                    problems.push("its header does not list the blobs the index has".into());
                }
            }
        }
        for e in entries {
            let enc = data.get(e.offset as usize..(e.offset as usize + e.length as usize));
            let r = match enc {
                None => Err("beyond the end of the pack".to_string()),
                Some(enc) => verify_blob(crypto, &mut zstd, e, enc, &mut scratch),
            };
            if let Err(why) = r {
                blobs.push((e.id, why));
            }
        }
    } else {
        for e in entries {
            let r = read_range(store, &pack, e.offset, e.length)
                .map_err(|err| err.to_string())
                .and_then(|enc| verify_blob(crypto, &mut zstd, e, &enc, &mut scratch));
            if let Err(why) = r {
                blobs.push((e.id, why));
            }
        }
    }
    Ok((blobs, problems))
}

/// Walks every tree of `snapshots` once and calls `file` for each file node with the
/// snapshot, its path and its content, and `tree_error` for trees that cannot be read.
fn walk(
    loader: &mut TreeLoader<'_>,
    snapshots: &[SnapshotFile],
    mut tree_error: impl FnMut(&SnapshotFile, &PathBuf, Id, String),
    mut file: impl FnMut(&SnapshotFile, &PathBuf, &[Id]),
) -> usize {
    let mut seen = HashSet::new();
    for sn in snapshots {
        let mut stack = vec![(*sn.tree, PathBuf::from("/"))];
        while let Some((id, path)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let tree = match loader.load(&id) {
                Ok(t) => t,
                Err(e) => {
                    tree_error(sn, &path, id, e.to_string());
                    continue;
                }
            };
            if let Err(why) = check_entries(&tree) {
                tree_error(sn, &path, id, why);
            }
            for node in &tree.nodes {
                let child = path.join(node.name());
                match node.node_type {
                    NodeType::Dir => {
                        if let Some(sub) = node.subtree {
                            stack.push((*sub, child));
                        }
                    }
                    NodeType::File => {
                        let ids: Vec<Id> = node.content.iter().flatten().map(|d| **d).collect();
                        file(sn, &child, &ids);
                    }
                    _ => {}
                }
            }
        }
    }
    seen.len()
}

/// The files of `snapshots` that need any of `blobs`: blob → "snapshot abcd1234: /path".
pub(crate) fn files_needing(
    store: &Arc<dyn ObjectStore>,
    crypto: &Crypto,
    index: &RepoIndex,
    snapshots: &[SnapshotFile],
    blobs: &HashSet<Id>,
) -> HashMap<Id, Vec<String>> {
    let mut out: HashMap<Id, Vec<String>> = HashMap::new();
    if blobs.is_empty() {
        return out;
    }
    let mut loader = TreeLoader::new(store.clone(), crypto.clone(), index);
    walk(
        &mut loader,
        snapshots,
        |_, _, _, _| {},
        |sn, path, ids| {
            for id in ids {
                if blobs.contains(id) {
                    let v = out.entry(*id).or_default();
                    if v.len() < FILES_PER_BLOB {
                        v.push(format!("snapshot {}: {}", short(&sn.id), path.display()));
                    }
                }
            }
        },
    );
    out
}

/// Runs `check`.
pub(crate) fn check(ctx: &EngineCtx, read: ReadData) -> Result<CheckReport> {
    let store = &ctx.store;
    let crypto = &ctx.crypto;
    let mut report = CheckReport::default();
    let mut damaged_packs: Vec<Id> = Vec::new();
    let mut lost: HashSet<Id> = HashSet::new();

    // 1. index files and packs
    let listed: HashMap<Id, u64> = files::list(store.as_ref(), FileType::Pack)?
        .into_iter()
        .collect();
    report.packs = listed.len();
    let index_files = IndexFiles::load(store, crypto)?;
    for (path, why) in &index_files.damaged {
        report.errors.push(format!("{path}: {why}"));
    }
    let packs = index_files.packs();
    let index = index_files.index();
    let mut sorted: Vec<(&Id, &&[IndexEntry])> = packs.iter().collect();
    sorted.sort_by_key(|(id, _)| **id);
    for (pack, entries) in &sorted {
        let problem = match listed.get(pack) {
            None => Some("the pack file is missing".to_string()),
            Some(&size) if size != expected_size(entries) => Some(format!(
                "{size} bytes, the index implies {}",
                expected_size(entries)
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            report
                .errors
                .push(format!("pack {}: {problem}", pack.to_hex().as_str()));
            damaged_packs.push(**pack);
            for e in entries.iter() {
                lost.insert(e.id);
            }
        }
    }
    let mut unreferenced: Vec<&Id> = listed
        .keys()
        .filter(|id| !packs.contains_key(*id))
        .collect();
    unreferenced.sort();
    for id in unreferenced {
        report.warnings.push(format!(
            "pack {} is not in any index (left by an interrupted backup; the next \
             `lifeboat forget --prune` removes it)",
            id.to_hex().as_str()
        ));
    }

    // 2. snapshots and trees
    let mut snapshots = Vec::new();
    for (id, size) in files::list(store.as_ref(), FileType::Snapshot)? {
        match files::load_snapshot(store.as_ref(), crypto, &id, Some(size)) {
            Ok(sn) => snapshots.push(sn),
            Err(Error::Corrupt(c)) => report.errors.push(format!(
                "snapshot {} cannot be read: {}",
                short(&id),
                c.problem
            )),
            Err(e) => return Err(e),
        }
    }
    snapshots.sort_by(|a, b| a.time.cmp(&b.time));
    report.snapshots = snapshots.len();
    let mut missing: HashSet<Id> = HashSet::new();
    {
        let mut loader = TreeLoader::new(store.clone(), crypto.clone(), &index);
        let mut tree_errors = Vec::new();
        let mut missing_errors = Vec::new();
        report.trees = walk(
            &mut loader,
            &snapshots,
            |sn, path, id, why| {
                tree_errors.push(format!(
                    "snapshot {}: directory {} (tree {}): {why}",
                    short(&sn.id),
                    path.display(),
                    short(&id)
                ));
            },
            |sn, path, ids| {
                for id in ids {
                    if !index.data.contains_key(id) && missing.insert(*id) {
                        missing_errors.push(format!(
                            "snapshot {}: {} needs blob {}, which is in no index{}",
                            short(&sn.id),
                            path.display(),
                            short(id),
                            index.missing_hint()
                        ));
                    }
                }
            },
        );
        report.errors.extend(tree_errors);
        report.errors.extend(missing_errors);
    }

    // 3. data
    let candidates: Vec<(Id, u64)> = sorted
        .iter()
        .filter_map(|(id, _)| listed.get(id).map(|s| (**id, *s)))
        .filter(|(id, _)| !damaged_packs.contains(id))
        .collect();
    let selected = read.select(candidates);
    report.packs_read = selected.len();
    report.bytes_read = selected.iter().map(|(_, s)| s).sum();
    let threads = if store.location().starts_with("local:") {
        2
    } else {
        4
    };
    let verified = parallel_map(selected, threads, |(pack, size)| {
        let entries = packs.get(&pack).copied().unwrap_or_default();
        (
            pack,
            verify_pack(store.as_ref(), crypto, pack, size, entries),
        )
    });
    for (pack, r) in verified {
        let (blobs, problems) = r?;
        if blobs.is_empty() && problems.is_empty() {
            continue;
        }
        damaged_packs.push(pack);
        let hex = pack.to_hex();
        for p in problems {
            report.errors.push(format!("pack {}: {p}", hex.as_str()));
        }
        for (blob, why) in blobs {
            lost.insert(blob);
            report.errors.push(format!(
                "pack {}: blob {}: {why}",
                hex.as_str(),
                short(&blob)
            ));
        }
    }

    // 4. what needs the damaged data
    let needing = files_needing(store, crypto, &index, &snapshots, &lost);
    let mut affected: Vec<String> = needing.values().flatten().cloned().collect();
    affected.sort();
    affected.dedup();
    if !affected.is_empty() {
        let shown: Vec<_> = affected.iter().take(20).cloned().collect();
        report.errors.push(format!(
            "damaged data is needed by {} file(s): {}{}",
            affected.len(),
            shown.join(", "),
            if affected.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    damaged_packs.sort();
    damaged_packs.dedup();
    report.damaged_packs = damaged_packs
        .iter()
        .map(|p| p.to_hex().as_str().to_string())
        .collect();
    report.hints = hints(
        &report,
        !missing.is_empty(),
        !index_files.damaged.is_empty(),
    );
    Ok(report)
}

fn hints(report: &CheckReport, missing_blobs: bool, damaged_index: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !report.damaged_packs.is_empty() {
        let ids: Vec<&str> = report.damaged_packs.iter().map(|p| &p[..16]).collect();
        out.push(format!(
            "salvage what the damaged pack(s) still hold and drop the rest from the index: \
             `lifeboat repair packs {}` (prefixes of the ids above are accepted)",
            ids.join(" ")
        ));
    }
    if !report.damaged_packs.is_empty() || missing_blobs || damaged_index {
        out.push(
            "then run the backups again (`lifeboat backup ...`, or the policy's next run): \
             files whose data is gone are read and stored anew, which also heals older \
             snapshots of the same files; snapshots that still need lost data can be \
             removed with `lifeboat forget`"
                .into(),
        );
    }
    if !report.errors.is_empty() {
        out.push(
            "repeated damage points at the storage: check it before relying on this \
             repository"
                .into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_like_restics() {
        assert_eq!(
            ReadData::parse("1/5").unwrap(),
            ReadData::Bucket { n: 1, total: 5 }
        );
        assert_eq!(ReadData::parse("10%").unwrap(), ReadData::Percent(10.0));
        assert_eq!(
            ReadData::parse("500MiB").unwrap(),
            ReadData::Bytes(500 << 20)
        );
        assert_eq!(ReadData::parse("2G").unwrap(), ReadData::Bytes(2 << 30));
        assert_eq!(ReadData::parse("4096").unwrap(), ReadData::Bytes(4096));
        for bad in [
            "",
            "0/5",
            "6/5",
            "1/0",
            "0%",
            "150%",
            "x%",
            "10 parsecs",
            "-3",
            "1/x",
        ] {
            assert!(ReadData::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buckets_cover_every_pack_once() {
        let packs: Vec<(Id, u64)> = (0..200u32)
            .map(|i| (super::super::format::hash(&i.to_le_bytes()), 1))
            .collect();
        let mut seen = HashSet::new();
        for n in 1..=5 {
            for (id, _) in (ReadData::Bucket { n, total: 5 }).select(packs.clone()) {
                assert!(seen.insert(id));
            }
        }
        assert_eq!(seen.len(), packs.len());
        assert_eq!(ReadData::Percent(10.0).select(packs.clone()).len(), 20);
        assert_eq!(ReadData::Bytes(7).select(packs.clone()).len(), 7);
        assert!(ReadData::None.select(packs).is_empty());
    }
}

//! `repair packs` (restic 0.17's command of that name): salvages what damaged packs still
//! hold and takes them out of the repository. Every blob the index lists for a damaged
//! pack is read on its own; the ones that still authenticate and hash to their id are
//! copied, as they are stored, into new packs (with a new index file); the index files
//! that list the damaged packs are rewritten without them; the damaged pack files are
//! removed. The blobs that could not be salvaged (and exist nowhere else) are then in no
//! index: the next backup of the same files reads them again and stores them anew (same
//! content, same id), which also heals the older snapshots that need them.
//!
//! Order, so an interruption loses nothing: new packs, their index; new index files;
//! old index files removed; damaged packs removed. Runs under an exclusive lock.

use std::collections::{HashMap, HashSet};

use rustic_core::{FileType, Id, repofile::BlobType};
use serde::Serialize;

use super::{
    Result,
    check::{files_needing, verify_pack},
    engine::EngineCtx,
    format::{
        files::{self, parallel_map},
        index::{IndexFiles, IndexWriter},
        object_path,
        pack::{MAX_BLOBS, PackBuilder, expected_size, read_range, target_size, verify_blob},
        short,
    },
};

/// What `repair packs` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// The damaged packs repaired (full ids).
    pub packs: Vec<String>,
    /// Blobs copied into new packs.
    pub salvaged: u64,
    /// Blobs of the damaged packs that were intact in another pack too.
    pub elsewhere: u64,
    /// Blobs lost (in no index any more), short ids.
    pub lost: Vec<String>,
    /// Files of snapshots that need lost blobs ("snapshot abcd1234: /path"; the first few
    /// per blob). Backing the same files up again heals them.
    pub affected: Vec<String>,
    /// New packs written.
    pub new_packs: u64,
    /// Index files replaced.
    pub index_files_rewritten: u64,
}

/// Resolves pack ids or unique prefixes (at least 8 hex digits) against the repository.
fn resolve(ids: &[String], all: &HashSet<Id>) -> std::result::Result<Vec<Id>, String> {
    let mut out = Vec::new();
    for spec in ids {
        let spec = spec.to_ascii_lowercase();
        if spec.len() < 8 || !spec.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{spec:?} is not a pack id (at least 8 hex digits)"));
        }
        let found: Vec<&Id> = all
            .iter()
            .filter(|id| id.to_hex().as_str().starts_with(&spec))
            .collect();
        match found.as_slice() {
            [one] => out.push(**one),
            [] => return Err(format!("no pack {spec} in the repository or its index")),
            _ => return Err(format!("pack id prefix {spec} is ambiguous")),
        }
    }
    Ok(out)
}

/// Repairs the given packs (ids or prefixes), or, with none given, every pack whose data
/// does not verify (all packs are read, as `check --read-data`).
pub(crate) fn repair_packs(ctx: &EngineCtx, ids: &[String]) -> Result<RepairReport> {
    let store = &ctx.store;
    let crypto = &ctx.crypto;
    let index_files = IndexFiles::load(store, crypto)?;
    let packs = index_files.packs();
    let listed: HashMap<Id, u64> = files::list(store.as_ref(), FileType::Pack)?
        .into_iter()
        .collect();
    let damaged: Vec<Id> = if ids.is_empty() {
        let mut bad: Vec<Id> = Vec::new();
        let candidates: Vec<(Id, u64)> = packs
            .iter()
            .filter_map(|(id, entries)| match listed.get(id) {
                Some(&size) if size == expected_size(entries) => Some((*id, size)),
                _ => {
                    bad.push(*id);
                    None
                }
            })
            .collect();
        let verified = parallel_map(candidates, 2, |(pack, size)| {
            let entries = packs.get(&pack).copied().unwrap_or_default();
            (
                pack,
                verify_pack(store.as_ref(), crypto, pack, size, entries),
            )
        });
        for (pack, r) in verified {
            let (blobs, problems) = r?;
            if !blobs.is_empty() || !problems.is_empty() {
                bad.push(pack);
            }
        }
        bad.sort();
        bad
    } else {
        let all: HashSet<Id> = packs.keys().chain(listed.keys()).copied().collect();
        resolve(ids, &all).map_err(crate::repo::Error::InvalidInput)?
    };
    let mut report = RepairReport {
        packs: damaged
            .iter()
            .map(|p| p.to_hex().as_str().to_string())
            .collect(),
        ..RepairReport::default()
    };
    if damaged.is_empty() {
        return Ok(report);
    }
    let damaged_set: HashSet<Id> = damaged.iter().copied().collect();
    let index = index_files.index();

    // 1. salvage: intact blobs into new packs, indexed
    let version = ctx.config.version;
    let mut writer = IndexWriter::new(store.clone(), crypto.clone(), version);
    let mut builders: HashMap<BlobType, PackBuilder> = HashMap::new();
    let mut lost: HashSet<Id> = HashSet::new();
    let mut written: HashSet<Id> = HashSet::new();
    let mut zstd = None;
    let mut scratch = Vec::new();
    let flush = |b: PackBuilder, writer: &mut IndexWriter, new_packs: &mut u64| -> Result<()> {
        let sealed = b.seal(crypto);
        let id = sealed.id();
        store.put(&object_path(FileType::Pack, &id), vec![sealed.data.clone()])?;
        writer.add_pack(id, sealed.entries)?;
        *new_packs += 1;
        Ok(())
    };
    for pack in &damaged {
        for e in packs.get(pack).copied().unwrap_or_default() {
            if written.contains(&e.id) {
                continue;
            }
            // intact in a pack that is not being repaired: nothing to do
            let other = match e.tpe {
                BlobType::Data => index.data.get(&e.id),
                BlobType::Tree => index.trees.get(&e.id),
            };
            if other.is_some_and(|l| !damaged_set.contains(&l.pack)) {
                report.elsewhere += 1;
                continue;
            }
            let enc = match read_range(store.as_ref(), pack, e.offset, e.length) {
                Ok(enc) => enc,
                Err(crate::repo::Error::Corrupt(_)) => {
                    lost.insert(e.id);
                    continue;
                }
                Err(err) => return Err(err),
            };
            if verify_blob(crypto, &mut zstd, e, &enc, &mut scratch).is_err() {
                lost.insert(e.id);
                continue;
            }
            let b = builders
                .entry(e.tpe)
                .or_insert_with(|| PackBuilder::new(e.tpe, Default::default()));
            // copied as stored: already encrypted (and compressed) for this repository
            b.add(e.id, &enc, e.uncompressed_length);
            written.insert(e.id);
            lost.remove(&e.id);
            report.salvaged += 1;
            if b.size() >= target_size(&ctx.config, e.tpe, 0) || b.len() >= MAX_BLOBS {
                let full = std::mem::replace(b, PackBuilder::new(e.tpe, Default::default()));
                flush(full, &mut writer, &mut report.new_packs)?;
            }
        }
    }
    for (_, b) in builders {
        if !b.is_empty() {
            flush(b, &mut writer, &mut report.new_packs)?;
        }
    }
    writer.flush()?;

    // 2. index files without the damaged packs, then the damaged packs themselves
    for (file, file_packs) in &index_files.files {
        if !file_packs.iter().any(|(p, _)| damaged_set.contains(p)) {
            continue;
        }
        let mut rewrite = IndexWriter::new(store.clone(), crypto.clone(), version);
        for (p, blobs) in file_packs {
            if !damaged_set.contains(p) {
                rewrite.add_pack(*p, blobs.clone())?;
            }
        }
        rewrite.flush()?;
        store.delete(&object_path(FileType::Index, file))?;
        report.index_files_rewritten += 1;
    }
    for pack in &damaged {
        store.delete(&object_path(FileType::Pack, pack))?;
    }

    // 3. what the lost blobs leave without data
    let snapshots = files::load_snapshots(store, crypto)?;
    let index = IndexFiles::load(store, crypto)?.index();
    let needing = files_needing(store, crypto, &index, &snapshots, &lost);
    let mut affected: Vec<String> = needing.into_values().flatten().collect();
    affected.sort();
    affected.dedup();
    report.affected = affected;
    let mut lost: Vec<String> = lost.iter().map(short).collect();
    lost.sort();
    report.lost = lost;
    Ok(report)
}

//! The repository index: blob id → location, read from every index file (with bounds:
//! a file, its JSON, each blob's lengths), and the writer of new index files (restic's
//! JSON, encrypted, compressed in format v2) for the packs a backup or repair uploads.

use std::{collections::HashMap, sync::Arc};

use rustic_core::{FileType, Id, repofile::BlobType};
use serde::{Deserialize, Serialize};

use super::{
    crypto::{Crypto, OVERHEAD},
    files::{self, Unpacked, parallel_map},
    limits, object_path, short,
};
use crate::repo::{Error, Result, backend::ObjectStore};

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobLoc {
    /// The pack file holding the blob.
    pub(crate) pack: Id,
    /// Offset of the encrypted blob in the pack.
    pub(crate) offset: u32,
    /// Length of the encrypted blob.
    pub(crate) length: u32,
    /// Plaintext length if the blob is compressed, 0 if it is stored uncompressed.
    pub(crate) uncompressed: u32,
}

impl BlobLoc {
    /// Length of the blob's plaintext.
    pub(crate) const fn plain_len(&self) -> u32 {
        if self.uncompressed > 0 {
            self.uncompressed
        } else {
            self.length.saturating_sub(OVERHEAD as u32)
        }
    }

    /// End of the blob in its pack (checked when the index was read: below 4 GiB).
    pub(crate) const fn end(&self) -> u64 {
        self.offset as u64 + self.length as u64
    }
}

/// One blob of a pack, as recorded in an index file or a pack header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct IndexEntry {
    /// Blob id.
    pub(crate) id: Id,
    /// Blob type.
    #[serde(rename = "type")]
    pub(crate) tpe: BlobType,
    /// Offset in the pack.
    pub(crate) offset: u32,
    /// Encrypted length.
    pub(crate) length: u32,
    /// Plaintext length of compressed blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uncompressed_length: Option<u32>,
}

impl IndexEntry {
    /// Checks the lengths against the format and [`limits`]: a blob is at least its
    /// encryption overhead, its plaintext at most the type's bound, and it ends below
    /// 4 GiB.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let bound = match self.tpe {
            BlobType::Data => limits::DATA_BLOB,
            BlobType::Tree => limits::TREE_BLOB,
        };
        if (self.length as usize) < OVERHEAD {
            return Err(format!("blob of {} bytes", self.length));
        }
        let plain = match self.uncompressed_length {
            Some(u) if u > 0 => u,
            _ => self.length - OVERHEAD as u32,
        };
        // zstd may grow incompressible data a little; 1 MiB of slack is far above that
        if plain > bound || self.length > bound.saturating_add(1 << 20) {
            return Err(format!(
                "blob of {} bytes ({} of plaintext), more than a {:?} blob may have",
                self.length, plain, self.tpe
            ));
        }
        if u64::from(self.offset) + u64::from(self.length) > u64::from(u32::MAX) {
            return Err("blob lies beyond 4 GiB".into());
        }
        Ok(())
    }

    pub(crate) const fn loc(&self, pack: Id) -> BlobLoc {
        BlobLoc {
            pack,
            offset: self.offset,
            length: self.length,
            uncompressed: match self.uncompressed_length {
                Some(u) => u,
                None => 0,
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct JsonPack {
    id: Id,
    blobs: Vec<IndexEntry>,
}

#[derive(Serialize, Deserialize)]
struct JsonIndex {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    supersedes: Option<Vec<Id>>,
    packs: Vec<JsonPack>,
}

/// Parses an index file's JSON: the packs and their checked blobs.
pub(crate) fn parse(json: &[u8]) -> std::result::Result<IndexedPacks, String> {
    let index: JsonIndex = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    for p in &index.packs {
        for (i, b) in p.blobs.iter().enumerate() {
            b.check()
                .map_err(|why| format!("pack {} blob {i}: {why}", short(&p.id)))?;
        }
    }
    Ok(index.packs.into_iter().map(|p| (p.id, p.blobs)).collect())
}

/// All blobs of the repository by id, split by type.
#[derive(Debug, Default)]
pub(crate) struct RepoIndex {
    /// Data blobs.
    pub(crate) data: HashMap<Id, BlobLoc>,
    /// Tree blobs.
    pub(crate) trees: HashMap<Id, BlobLoc>,
    /// Total stored size of data blobs (drives the pack size policy).
    pub(crate) data_bytes: u64,
    /// Total stored size of tree blobs.
    pub(crate) tree_bytes: u64,
    /// Index files that could not be read (`index/<id>`, why). Their blobs are unknown:
    /// a backup writes them again, a restore that needs one says where it should be.
    pub(crate) damaged: Vec<(String, String)>,
}

/// The packs an index file lists, with their blobs.
pub(crate) type IndexedPacks = Vec<(Id, Vec<IndexEntry>)>;

/// The index files of a repository as they are: which file lists which packs.
#[derive(Debug, Default)]
pub(crate) struct IndexFiles {
    /// Each readable index file with its packs and their blobs.
    pub(crate) files: Vec<(Id, IndexedPacks)>,
    /// Index files that could not be read (`index/<id>`, why).
    pub(crate) damaged: Vec<(String, String)>,
}

impl IndexFiles {
    /// Reads every index file. Storage errors fail; an index file that is damaged or
    /// breaks a bound is recorded in [`IndexFiles::damaged`].
    pub(crate) fn load(store: &Arc<dyn ObjectStore>, crypto: &Crypto) -> Result<Self> {
        let listed = files::list(store.as_ref(), FileType::Index)?;
        let loaded = parallel_map(listed, 4, |(id, size)| {
            let path = object_path(FileType::Index, &id);
            let r = files::read(store.as_ref(), crypto, Unpacked::Index, &path, Some(size))
                .and_then(|json| parse(&json).map_err(|why| Error::corrupt(&path, why)));
            (id, path, r)
        });
        let mut out = Self::default();
        for (id, path, r) in loaded {
            match r {
                Ok(packs) => out.files.push((id, packs)),
                Err(Error::Corrupt(c)) => {
                    tracing::warn!(index = %path, problem = %c.problem, "index file left out");
                    out.damaged.push((path, c.problem.clone()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every indexed pack with its blobs (a pack listed by several files once).
    pub(crate) fn packs(&self) -> HashMap<Id, &[IndexEntry]> {
        let mut out = HashMap::new();
        for (_, packs) in &self.files {
            for (pack, blobs) in packs {
                out.entry(*pack).or_insert(blobs.as_slice());
            }
        }
        out
    }

    /// The blob index.
    pub(crate) fn index(&self) -> RepoIndex {
        let mut idx = RepoIndex {
            damaged: self.damaged.clone(),
            ..RepoIndex::default()
        };
        for (_, packs) in &self.files {
            for (pack, blobs) in packs {
                idx.add_pack(*pack, blobs);
            }
        }
        idx
    }
}

impl RepoIndex {
    /// Reads every index file of the repository. Storage errors fail; an index file that
    /// is damaged or breaks a bound is left out and recorded in [`RepoIndex::damaged`].
    pub(crate) fn load(store: &Arc<dyn ObjectStore>, crypto: &Crypto) -> Result<Self> {
        Ok(IndexFiles::load(store, crypto)?.index())
    }

    /// Adds the (checked) blobs of one pack.
    pub(crate) fn add_pack(&mut self, pack: Id, blobs: &[IndexEntry]) {
        for b in blobs {
            let loc = b.loc(pack);
            match b.tpe {
                BlobType::Data => {
                    self.data_bytes += u64::from(b.length);
                    self.data.insert(b.id, loc);
                }
                BlobType::Tree => {
                    self.tree_bytes += u64::from(b.length);
                    self.trees.insert(b.id, loc);
                }
            }
        }
    }

    /// Why a blob is missing, for messages: the index files that could not be read.
    pub(crate) fn missing_hint(&self) -> String {
        match self.damaged.first() {
            None => String::new(),
            Some((path, why)) => format!(
                " ({} index file(s) could not be read, e.g. {path}: {why})",
                self.damaged.len()
            ),
        }
    }
}

/// Blobs per index file before it is written out (restic starts a new index file at a
/// similar size), so a long backup commits its index progressively.
const BLOBS_PER_INDEX_FILE: usize = 50_000;

/// Collects written packs and writes index files for them.
pub(crate) struct IndexWriter {
    store: Arc<dyn ObjectStore>,
    crypto: Crypto,
    version: u32,
    packs: Vec<JsonPack>,
    blobs: usize,
    written: Vec<Id>,
}

impl IndexWriter {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, crypto: Crypto, version: u32) -> Self {
        Self {
            store,
            crypto,
            version,
            packs: Vec::new(),
            blobs: 0,
            written: Vec::new(),
        }
    }

    /// Records a pack that has been written; writes an index file when enough have
    /// accumulated.
    pub(crate) fn add_pack(&mut self, pack: Id, blobs: Vec<IndexEntry>) -> Result<()> {
        self.blobs += blobs.len();
        self.packs.push(JsonPack { id: pack, blobs });
        if self.blobs >= BLOBS_PER_INDEX_FILE {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes an index file for the packs recorded so far (nothing if there are none).
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.packs.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_vec(&JsonIndex {
            supersedes: None,
            packs: std::mem::take(&mut self.packs),
        })
        .map_err(|e| Error::Internal(format!("serialising an index file: {e}")))?;
        let id = files::save(
            self.store.as_ref(),
            &self.crypto,
            self.version,
            FileType::Index,
            &json,
        )?;
        self.written.push(id);
        self.blobs = 0;
        Ok(())
    }

    /// Ids of the index files written.
    pub(crate) fn written(&self) -> &[Id] {
        &self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(length: u32, uncompressed: Option<u32>, offset: u32) -> IndexEntry {
        IndexEntry {
            id: Id::default(),
            tpe: BlobType::Data,
            offset,
            length,
            uncompressed_length: uncompressed,
        }
    }

    #[test]
    fn blob_bounds() {
        assert!(entry(100, None, 0).check().is_ok());
        assert!(entry(100, Some(5000), 0).check().is_ok());
        assert!(entry(31, None, 0).check().is_err());
        assert!(entry(100, Some(u32::MAX), 0).check().is_err());
        assert!(entry(u32::MAX, None, 0).check().is_err());
        assert!(entry(100, None, u32::MAX - 50).check().is_err());
    }

    #[test]
    fn index_json_parses_like_restics_and_refuses_lies() {
        let ok =
            br#"{"packs":[{"id":"1111111111111111111111111111111111111111111111111111111111111111",
            "blobs":[{"id":"2222222222222222222222222222222222222222222222222222222222222222",
            "type":"data","offset":0,"length":100,"uncompressed_length":200}]}]}"#;
        let packs = parse(ok).unwrap();
        assert_eq!(packs[0].1[0].uncompressed_length, Some(200));
        let huge = String::from_utf8_lossy(ok).replace("200}", "4294967295}");
        assert!(parse(huge.as_bytes()).is_err());
        let negative = String::from_utf8_lossy(ok).replace("\"offset\":0", "\"offset\":-1");
        assert!(parse(negative.as_bytes()).is_err());
        for bad in [
            &b""[..],
            b"{}",
            b"{\"packs\":[{}]}",
            b"[1,2]",
            b"{\"packs\":null}",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}

//! The repository index as the hot path needs it: blob id → location, loaded from the
//! index files through rustic_core, and the writer of new index files (restic's JSON,
//! v2-compressed and encrypted) for the packs a backup uploads.

use std::collections::HashMap;

use rustic_core::{
    FileType, Id, Open, Repository, WriteBackend,
    repofile::{BlobType, IndexFile},
};
use serde::Serialize;

use super::{FastError, crypto::Crypto, hash};

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLoc {
    /// The pack file holding the blob.
    pub pack: Id,
    /// Offset of the encrypted blob in the pack.
    pub offset: u32,
    /// Length of the encrypted blob.
    pub length: u32,
    /// Plaintext length if the blob is compressed, 0 if it is stored uncompressed.
    pub uncompressed: u32,
}

impl BlobLoc {
    /// Length of the blob's plaintext.
    #[must_use]
    pub const fn plain_len(&self) -> u32 {
        if self.uncompressed > 0 {
            self.uncompressed
        } else {
            self.length.saturating_sub(super::crypto::OVERHEAD as u32)
        }
    }
}

/// All blobs of the repository by id, split by type.
#[derive(Debug, Default)]
pub struct RepoIndex {
    /// Data blobs.
    pub data: HashMap<Id, BlobLoc>,
    /// Tree blobs.
    pub trees: HashMap<Id, BlobLoc>,
    /// Total stored size of data blobs (drives the pack size policy).
    pub data_bytes: u64,
    /// Total stored size of tree blobs.
    pub tree_bytes: u64,
}

impl RepoIndex {
    /// Reads every index file of the repository.
    ///
    /// # Errors
    /// If an index file cannot be read or decrypted.
    pub fn load<S: Open>(repo: &Repository<S>) -> Result<Self, FastError> {
        let mut idx = Self::default();
        for item in repo.stream_files::<IndexFile>()? {
            let (_, file) = item?;
            for pack in file.packs {
                idx.add_pack(
                    *pack.id,
                    pack.blobs.iter().map(|b| {
                        (
                            b.tpe,
                            *b.id,
                            b.location.offset,
                            b.location.length,
                            b.location.uncompressed_length.map_or(0, u32::from),
                        )
                    }),
                );
            }
        }
        Ok(idx)
    }

    /// Adds the blobs of one pack: `(type, id, offset, length, uncompressed_length)`.
    pub fn add_pack(
        &mut self,
        pack: Id,
        blobs: impl Iterator<Item = (BlobType, Id, u32, u32, u32)>,
    ) {
        for (tpe, id, offset, length, uncompressed) in blobs {
            let loc = BlobLoc {
                pack,
                offset,
                length,
                uncompressed,
            };
            match tpe {
                BlobType::Data => {
                    self.data_bytes += u64::from(length);
                    self.data.insert(id, loc);
                }
                BlobType::Tree => {
                    self.tree_bytes += u64::from(length);
                    self.trees.insert(id, loc);
                }
            }
        }
    }
}

/// One blob of a freshly written pack, as recorded in the index.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IndexEntry {
    /// Blob id.
    pub id: Id,
    /// Blob type.
    #[serde(rename = "type")]
    pub tpe: BlobType,
    /// Offset in the pack.
    pub offset: u32,
    /// Encrypted length.
    pub length: u32,
    /// Plaintext length of compressed blobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

#[derive(Serialize)]
struct JsonPack {
    id: Id,
    blobs: Vec<IndexEntry>,
}

#[derive(Serialize)]
struct JsonIndex<'a> {
    packs: &'a [JsonPack],
}

/// Blobs per index file before it is written out (restic starts a new index file at a
/// similar size), so a long backup commits its index progressively.
const BLOBS_PER_INDEX_FILE: usize = 50_000;

/// Collects written packs and writes index files for them.
#[derive(Default)]
pub struct IndexWriter {
    packs: Vec<JsonPack>,
    blobs: usize,
    written: Vec<Id>,
}

impl IndexWriter {
    /// Records a pack that has been written; writes an index file when enough have
    /// accumulated.
    ///
    /// # Errors
    /// If writing an index file fails.
    pub fn add_pack(
        &mut self,
        be: &dyn WriteBackend,
        crypto: &Crypto,
        pack: Id,
        blobs: Vec<IndexEntry>,
    ) -> Result<(), FastError> {
        self.blobs += blobs.len();
        self.packs.push(JsonPack { id: pack, blobs });
        if self.blobs >= BLOBS_PER_INDEX_FILE {
            self.flush(be, crypto)?;
        }
        Ok(())
    }

    /// Writes an index file for the packs recorded so far (nothing if there are none).
    ///
    /// # Errors
    /// If serialising or writing fails.
    pub fn flush(&mut self, be: &dyn WriteBackend, crypto: &Crypto) -> Result<(), FastError> {
        if self.packs.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_vec(&JsonIndex { packs: &self.packs })
            .map_err(|e| FastError::Internal(format!("serialising index: {e}")))?;
        let enc = crypto.seal_file(&json, 3)?;
        let id = hash(&enc);
        be.write_bytes(FileType::Index, &id, true, enc.into())?;
        self.written.push(id);
        self.packs.clear();
        self.blobs = 0;
        Ok(())
    }

    /// Ids of the index files written.
    #[must_use]
    pub fn written(&self) -> &[Id] {
        &self.written
    }
}

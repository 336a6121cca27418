//! Pack files in restic's layout: encrypted blobs back to back, then the encrypted
//! header (one entry per blob: type, length, plaintext length if compressed, id), then
//! the header's length as a little-endian u32. Also the pack size policy, the same
//! formula rustic_core's packer uses so prune sees our packs as well-sized.

use bytes::{Bytes, BytesMut};
use rustic_core::{BytesList, Id, repofile::BlobType, repofile::ConfigFile};
use sha2::{Digest, Sha256};

use super::{crypto::Crypto, index::IndexEntry};

/// Most blobs in one pack (rustic_core's limit).
pub const MAX_BLOBS: usize = 10_000;

/// Data pack size when the repository config does not set one: restic's default
/// (`--pack-size 16`). rustic_core would use 32 MiB plus growth; 16 MiB halves the
/// memory a backup holds in packs, and both tools' prune accept either size.
pub const DEFAULT_DATA_PACK: u64 = 16 << 20;

/// Target size of the next pack. With `datapack_size` / `treepack_size` set in the
/// repository config this is rustic_core's formula (`size + sqrt(stored) * grow`,
/// capped by the limit); for data packs without a configured size it is
/// [`DEFAULT_DATA_PACK`].
#[must_use]
pub fn target_size(config: &ConfigFile, tpe: BlobType, stored: u64) -> u64 {
    if tpe == BlobType::Data && config.datapack_size.is_none() {
        return DEFAULT_DATA_PACK;
    }
    let (default, grow, limit) = config.packsize(tpe);
    let size = if grow == 0 {
        u64::from(default)
    } else {
        stored.isqrt() * u64::from(grow) + u64::from(default)
    };
    // a pack (with header) must stay below 4 GiB; rustic caps at 4076 MiB
    size.min(u64::from(limit)).min(4076 << 20)
}

/// A pack being filled, in one contiguous buffer that is recycled once the pack has
/// been written (see [`SealedPack::into_buffer`]): pack-sized allocations are made once
/// per pipeline, not once per pack, which keeps the peak RSS close to the live data.
#[derive(Debug)]
pub struct PackBuilder {
    tpe: BlobType,
    buf: BytesMut,
    entries: Vec<IndexEntry>,
}

/// A finished pack: its bytes and the index entries of its blobs.
#[derive(Debug)]
pub struct SealedPack {
    /// Blob type of every blob in the pack.
    pub tpe: BlobType,
    /// The pack's bytes: blobs, encrypted header, header length.
    pub data: Bytes,
    /// Index entries of the blobs, offsets relative to the pack start.
    pub entries: Vec<IndexEntry>,
}

impl PackBuilder {
    /// An empty pack for blobs of type `tpe`, reusing `buf`'s allocation.
    #[must_use]
    pub fn new(tpe: BlobType, mut buf: BytesMut) -> Self {
        buf.clear();
        Self {
            tpe,
            buf,
            entries: Vec::new(),
        }
    }

    /// Appends an encrypted blob; `uncompressed` is its plaintext length if compressed.
    ///
    /// # Panics
    /// If the pack would exceed 4 GiB (callers cut packs far earlier).
    pub fn add(&mut self, id: Id, encrypted: &[u8], uncompressed: Option<u32>) {
        let length = u32::try_from(encrypted.len()).expect("blob below 4 GiB");
        let offset = u32::try_from(self.buf.len()).expect("pack below 4 GiB");
        self.entries.push(IndexEntry {
            id,
            tpe: self.tpe,
            offset,
            length,
            uncompressed_length: uncompressed,
        });
        self.buf.extend_from_slice(encrypted);
    }

    /// Bytes of blobs so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Number of blobs so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob has been added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the encrypted header and its length.
    #[must_use]
    pub fn seal(mut self, crypto: &Crypto) -> SealedPack {
        let mut header = Vec::with_capacity(self.entries.len() * 41);
        for e in &self.entries {
            let compressed = e.uncompressed_length.is_some();
            header.push(match (self.tpe, compressed) {
                (BlobType::Data, false) => 0,
                (BlobType::Tree, false) => 1,
                (BlobType::Data, true) => 2,
                (BlobType::Tree, true) => 3,
            });
            header.extend_from_slice(&e.length.to_le_bytes());
            if let Some(u) = e.uncompressed_length {
                header.extend_from_slice(&u.to_le_bytes());
            }
            header.extend_from_slice(&id_bytes(&e.id));
        }
        let mut enc = Vec::with_capacity(header.len() + super::crypto::OVERHEAD + 4);
        crypto.seal_append(&header, &mut enc);
        let hlen = u32::try_from(enc.len()).expect("header below 4 GiB");
        enc.extend_from_slice(&hlen.to_le_bytes());
        self.buf.extend_from_slice(&enc);
        SealedPack {
            tpe: self.tpe,
            data: self.buf.freeze(),
            entries: self.entries,
        }
    }
}

impl SealedPack {
    /// The pack id: SHA-256 of all its bytes.
    #[must_use]
    pub fn id(&self) -> Id {
        Id::new(Sha256::digest(&self.data).into())
    }

    /// Size in bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The bytes as a backend write list (no copy).
    #[must_use]
    pub fn bytes_list(&self) -> BytesList {
        BytesList::from(self.data.clone())
    }

    /// Takes the buffer back for the next pack (empty if the backend kept a reference).
    #[must_use]
    pub fn into_buffer(self) -> BytesMut {
        self.data.try_into_mut().unwrap_or_default()
    }
}

/// The 32 raw bytes of an id.
#[must_use]
pub fn id_bytes(id: &Id) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(id.to_hex().as_str(), &mut out).expect("an id is 64 hex digits");
    out
}

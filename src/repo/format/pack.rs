//! Pack files in restic's layout: encrypted blobs back to back, then the encrypted
//! header (one entry per blob: type, length, plaintext length if compressed, id), then
//! the header's length as a little-endian u32. The writer ([`PackBuilder`]), the header
//! reader ([`parse_header`]) and the pack size policy (rustic_core's formula, so prune
//! sees our packs as well-sized).

use bytes::{Bytes, BytesMut};
use rustic_core::{
    FileType, Id,
    repofile::{BlobType, ConfigFile},
};

use crate::repo::{Error, Result, backend::ObjectStore};

use super::{
    crypto::{Crypto, OVERHEAD},
    hash, id_bytes,
    index::IndexEntry,
    limits, object_path, short,
};

/// Most blobs in one pack (rustic_core's limit).
pub(crate) const MAX_BLOBS: usize = 10_000;

/// Data pack size when the repository config does not set one: restic's default
/// (`--pack-size 16`). rustic_core would use 32 MiB plus growth; 16 MiB halves the
/// memory a backup holds in packs, and both tools' prune accept either size.
pub(crate) const DEFAULT_DATA_PACK: u64 = 16 << 20;

/// Target size of the next pack. With `datapack_size` / `treepack_size` set in the
/// repository config this is rustic_core's formula (`size + sqrt(stored) * grow`,
/// capped by the limit); for data packs without a configured size it is
/// [`DEFAULT_DATA_PACK`].
pub(crate) fn target_size(config: &ConfigFile, tpe: BlobType, stored: u64) -> u64 {
    if tpe == BlobType::Data && config.datapack_size.is_none() {
        return DEFAULT_DATA_PACK;
    }
    let (default, grow, limit) = config.packsize(tpe);
    let size = if grow == 0 {
        u64::from(default)
    } else {
        stored.isqrt() * u64::from(grow) + u64::from(default)
    };
    // a pack (with header) must stay below 4 GiB; rustic caps at 4076 MiB; and a pack
    // is held in memory while it is filled, so a config asking for more is not obeyed
    size.clamp(1 << 20, 1 << 30)
        .min(u64::from(limit).max(1 << 20))
}

/// A pack being filled, in one contiguous buffer that is recycled once the pack has
/// been written (the uploader hands it back): pack-sized allocations are made once
/// per pipeline, not once per pack, which keeps the peak RSS close to the live data.
#[derive(Debug)]
pub(crate) struct PackBuilder {
    tpe: BlobType,
    buf: BytesMut,
    entries: Vec<IndexEntry>,
}

/// A finished pack: its bytes and the index entries of its blobs.
#[derive(Debug)]
pub(crate) struct SealedPack {
    /// Blob type of every blob in the pack.
    pub(crate) tpe: BlobType,
    /// The pack's bytes: blobs, encrypted header, header length.
    pub(crate) data: Bytes,
    /// Index entries of the blobs, offsets relative to the pack start.
    pub(crate) entries: Vec<IndexEntry>,
}

impl PackBuilder {
    /// An empty pack for blobs of type `tpe`, reusing `buf`'s allocation.
    pub(crate) fn new(tpe: BlobType, mut buf: BytesMut) -> Self {
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
    pub(crate) fn add(&mut self, id: Id, encrypted: &[u8], uncompressed: Option<u32>) {
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
    pub(crate) fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Number of blobs so far.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob has been added.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the encrypted header and its length.
    pub(crate) fn seal(mut self, crypto: &Crypto) -> SealedPack {
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
        let mut enc = Vec::with_capacity(header.len() + OVERHEAD + 4);
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
    pub(crate) fn id(&self) -> Id {
        hash(&self.data)
    }
}

/// The size of a pack holding exactly these blobs: the blobs, the encrypted header
/// (37 bytes per entry, 41 for a compressed blob) and the header's length.
pub(crate) fn expected_size(entries: &[IndexEntry]) -> u64 {
    let blobs: u64 = entries.iter().map(|e| u64::from(e.length)).sum();
    let header: u64 = entries
        .iter()
        .map(|e| {
            if e.uncompressed_length.is_some() {
                41
            } else {
                37
            }
        })
        .sum();
    blobs + header + OVERHEAD as u64 + 4
}

/// Checks one stored blob (its encrypted bytes as in the pack) without changing them:
/// authentication, decompression to the recorded length, SHA-256 against its id.
/// `scratch` is reused between calls.
pub(crate) fn verify_blob(
    crypto: &Crypto,
    zstd: &mut Option<zstd::bulk::Decompressor<'static>>,
    e: &IndexEntry,
    enc: &[u8],
    scratch: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    if enc.len() != e.length as usize {
        return Err(format!(
            "{} bytes where the index says {}",
            enc.len(),
            e.length
        ));
    }
    scratch.clear();
    scratch.extend_from_slice(enc);
    let r = crypto.open_in_place(scratch).map_err(|e| e.to_string())?;
    let ok = match e.uncompressed_length {
        Some(u) if u > 0 => {
            let z = match zstd {
                Some(z) => z,
                None => {
                    zstd.insert(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?)
                }
            };
            // the index's length was checked against the bound
            let plain = z
                .decompress(&scratch[r], u as usize)
                .map_err(|e| format!("decompression failed: {e}"))?;
            if plain.len() != u as usize {
                return Err("decompresses to the wrong length".into());
            }
            hash(&plain) == e.id
        }
        _ => hash(&scratch[r]) == e.id,
    };
    if ok {
        Ok(())
    } else {
        Err("its content does not match its id (SHA-256)".into())
    }
}

/// Reads `length` bytes at `offset` of a pack. A pack that is missing or shorter than
/// that is damage in the repository ([`Error::Corrupt`], naming the pack), not a storage
/// failure to retry.
pub(crate) fn read_range(
    store: &dyn ObjectStore,
    pack: &Id,
    offset: u32,
    length: u32,
) -> Result<Bytes> {
    let path = object_path(FileType::Pack, pack);
    let end = u64::from(offset) + u64::from(length);
    let object = || format!("pack {}", short(pack));
    match store.get(&path, Some((u64::from(offset), u64::from(length)))) {
        Ok(b) if b.len() == length as usize => Ok(b),
        Ok(b) => Err(Error::corrupt_in_pack(
            object(),
            pack,
            format!(
                "truncated: {} bytes at {offset}, the index expects {length}",
                b.len()
            ),
        )),
        Err(e) => match store.size(&path) {
            Ok(None) => Err(Error::corrupt_in_pack(
                object(),
                pack,
                "the pack file is missing",
            )),
            Ok(Some(size)) if size < end => Err(Error::corrupt_in_pack(
                object(),
                pack,
                format!("truncated: {size} bytes, the index expects at least {end}"),
            )),
            _ => Err(e.into()),
        },
    }
}

/// The length of the encrypted header of a pack of `pack_size` bytes, from the pack's
/// last four bytes; checked against the pack size and [`limits::PACK_HEADER`].
pub(crate) fn header_length(last4: [u8; 4], pack_size: u64) -> Result<u32, String> {
    let len = u32::from_le_bytes(last4);
    if u64::from(len) + 4 > pack_size {
        return Err(format!(
            "header of {len} bytes does not fit a pack of {pack_size} bytes"
        ));
    }
    if len > limits::PACK_HEADER || (len as usize) < OVERHEAD {
        return Err(format!("header of {len} bytes"));
    }
    Ok(len)
}

/// Decrypts and parses a pack header (`enc`: the encrypted header, without its length
/// field) of a pack of `pack_size` bytes: the blobs it lists, with their offsets. The
/// blobs must exactly fill the pack before the header.
pub(crate) fn parse_header(
    crypto: &Crypto,
    enc: &[u8],
    pack_size: u64,
) -> Result<Vec<IndexEntry>, String> {
    let plain = crypto.open(enc).map_err(|e| format!("header: {e}"))?;
    parse_plain_header(&plain, enc.len() as u64, pack_size)
}

/// [`parse_header`] after decryption: `plain` is the header's plaintext, `enc_len` the
/// length of its encrypted form.
pub(crate) fn parse_plain_header(
    plain: &[u8],
    enc_len: u64,
    pack_size: u64,
) -> Result<Vec<IndexEntry>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut offset = 0u64;
    while pos < plain.len() {
        let tpe = plain[pos];
        let (blob_type, compressed) = match tpe {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            t => return Err(format!("header entry {} has unknown type {t}", out.len())),
        };
        let need = 1 + 4 + if compressed { 4 } else { 0 } + 32;
        let entry = plain
            .get(pos..pos + need)
            .ok_or_else(|| format!("header entry {} is truncated", out.len()))?;
        let length = u32::from_le_bytes(entry[1..5].try_into().expect("4 bytes"));
        let uncompressed =
            compressed.then(|| u32::from_le_bytes(entry[5..9].try_into().expect("4 bytes")));
        let id_bytes: [u8; 32] = entry[need - 32..].try_into().expect("32 bytes");
        let e = IndexEntry {
            id: Id::new(id_bytes),
            tpe: blob_type,
            offset: u32::try_from(offset)
                .map_err(|_| format!("header entry {} lies beyond 4 GiB", out.len()))?,
            length,
            uncompressed_length: uncompressed,
        };
        e.check()
            .map_err(|why| format!("header entry {}: {why}", out.len()))?;
        offset += u64::from(length);
        out.push(e);
        pos += need;
    }
    let expected = offset + enc_len + 4;
    if expected != pack_size {
        return Err(format!(
            "the header lists {offset} bytes of blobs; with the header that is {expected} \
             bytes, but the pack has {pack_size}"
        ));
    }
    Ok(out)
}

/// Splits a whole pack into its header's entries (checked against the pack's length).
pub(crate) fn read_header(crypto: &Crypto, pack: &[u8]) -> Result<Vec<IndexEntry>, String> {
    let size = pack.len() as u64;
    let last4: [u8; 4] = pack
        .get(pack.len().saturating_sub(4)..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| "shorter than 4 bytes".to_string())?;
    let hlen = header_length(last4, size)? as usize;
    let start = pack.len() - 4 - hlen;
    parse_header(crypto, &pack[start..pack.len() - 4], size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(c: &Crypto) -> SealedPack {
        let mut p = PackBuilder::new(BlobType::Data, BytesMut::new());
        p.add(hash(b"one"), &c.seal(b"one"), None);
        p.add(hash(b"two"), &c.seal(b"xx"), Some(3));
        p.seal(c)
    }

    #[test]
    fn header_round_trips() {
        let c = Crypto::random();
        let pack = sealed(&c);
        let entries = read_header(&c, &pack.data).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].offset, entries[0].length), (0, 35));
        assert_eq!((entries[1].offset, entries[1].length), (35, 34));
        assert_eq!(entries[1].uncompressed_length, Some(3));
        assert_eq!(entries[1].id, hash(b"two"));
    }

    #[test]
    fn damaged_packs_are_errors_not_panics() {
        let c = Crypto::random();
        let pack = sealed(&c).data.to_vec();
        // truncated anywhere, a byte flipped anywhere, a length field that lies
        for cut in 0..pack.len() {
            assert!(read_header(&c, &pack[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..pack.len() {
            let mut bad = pack.clone();
            bad[i] ^= 0x40;
            // the blobs' bytes are not covered by the header (check reads them)
            if i >= 69 {
                assert!(read_header(&c, &bad).is_err(), "flip at {i}");
            }
        }
        let mut bad = pack.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_header(&c, &bad).is_err());
        assert!(read_header(&c, &[]).is_err());
    }
}

//! Small writers for restic-format objects that rustic_core offers no public API for: a pack
//! of (uncompressed) tree blobs with its index file, and a snapshot file. Used to finish
//! stream snapshots (see `engine::backup_stream`): rustic_core records a streamed file with
//! size 0 in its tree node, which makes restic restore it as an empty file; we write the
//! corrected tree(s) ourselves.
//!
//! Formats (restic design document): a pack is `blob... || encrypt(header) || u32le(len of
//! the encrypted header)`, a header entry for an uncompressed tree blob is `0x01 ||
//! u32le(encrypted length) || id`. Index and snapshot files are encrypted JSON (raw JSON is
//! valid in format v2). Object IDs are SHA-256 of the stored bytes; blob IDs of the plain
//! bytes.

use bytes::Bytes;
use rustic_core::repofile::{SnapshotFile, SnapshotId};
use sha2::{Digest, Sha256};

use super::{Error, Result, backend::ObjectStore, crypto::CryptoKey};

/// Writes one pack holding the given tree blobs (`(plain json bytes, blob id hex)`) and an
/// index file describing it. Pack first, index second: a crash in between leaves only an
/// unreferenced pack.
pub fn write_tree_pack(
    store: &dyn ObjectStore,
    key: &CryptoKey,
    trees: &[(Vec<u8>, String)],
) -> Result<()> {
    if trees.is_empty() {
        return Ok(());
    }
    let mut pack = Vec::new();
    let mut header = Vec::new();
    let mut entries = Vec::new();
    for (plain, id_hex) in trees {
        let enc = key.encrypt(plain);
        let offset = pack.len();
        let len =
            u32::try_from(enc.len()).map_err(|_| Error::Engine("tree blob too large".into()))?;
        pack.extend_from_slice(&enc);
        let id = hex::decode(id_hex).map_err(|e| Error::Engine(format!("bad blob id: {e}")))?;
        header.push(1u8);
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&id);
        entries.push(serde_json::json!({
            "id": id_hex, "type": "tree", "offset": offset, "length": len
        }));
    }
    let enc_header = key.encrypt(&header);
    let header_len = u32::try_from(enc_header.len())
        .map_err(|_| Error::Engine("pack header too large".into()))?;
    pack.extend_from_slice(&enc_header);
    pack.extend_from_slice(&header_len.to_le_bytes());
    let pack_id = hex::encode(Sha256::digest(&pack));
    let pack_size = pack.len();
    store.put(
        &format!("data/{}/{pack_id}", &pack_id[..2]),
        vec![Bytes::from(pack)],
    )?;
    let index = serde_json::json!({
        "packs": [{ "id": pack_id, "blobs": entries, "size": pack_size }]
    });
    let enc = key.encrypt(&serde_json::to_vec(&index).map_err(|e| Error::Engine(e.to_string()))?);
    let index_id = hex::encode(Sha256::digest(&enc));
    store.put(&format!("index/{index_id}"), vec![Bytes::from(enc)])?;
    Ok(())
}

/// Writes a snapshot file; returns it with its new ID set.
pub fn write_snapshot(
    store: &dyn ObjectStore,
    key: &CryptoKey,
    mut snap: SnapshotFile,
) -> Result<SnapshotFile> {
    snap.id = SnapshotId::default();
    let json = serde_json::to_vec(&snap).map_err(|e| Error::Engine(e.to_string()))?;
    let enc = key.encrypt(&json);
    let id_hex = hex::encode(Sha256::digest(&enc));
    store.put(&format!("snapshots/{id_hex}"), vec![Bytes::from(enc)])?;
    snap.id = SnapshotId::from(
        id_hex
            .parse::<rustic_core::Id>()
            .map_err(|e| Error::Engine(e.to_string()))?,
    );
    Ok(snap)
}

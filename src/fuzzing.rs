//! Entry points of the fuzz targets (`fuzz/`, built by cargo-fuzz with `--cfg fuzzing`):
//! every parser of what a repository or a backup holds, fed arbitrary bytes. None may
//! panic, hang or allocate beyond the format's bounds. Compiled only for fuzzing.

use crate::repo::format::{
    files::{Unpacked, decode_plain, parse_snapshot},
    index, key, pack, tree,
};

/// A key file: its JSON and parameter checks; cheap parameters are also derived (a
/// wrong password, or a master key that does not parse).
pub fn key_file(data: &[u8]) {
    if let Ok(p) = key::key_params(data)
        && p.n() * u64::from(p.r) * u64::from(p.p) <= 1 << 12
    {
        let _ = key::open_key_file(data, "password");
    }
}

/// A pack header's plaintext (after 8 bytes giving the pack's size), and the length
/// field at a pack's end.
pub fn pack_header(data: &[u8]) {
    if data.len() < 12 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let plain = &data[8..];
    let _ = pack::parse_plain_header(plain, plain.len() as u64 + 32, size);
    let last4: [u8; 4] = data[data.len() - 4..].try_into().expect("4 bytes");
    let _ = pack::header_length(last4, data.len() as u64);
}

/// An index file after decryption (plain or version 2 + zstd).
pub fn index_file(data: &[u8]) {
    if let Ok(json) = decode_plain(Unpacked::Index, data.to_vec()) {
        let _ = index::parse(&json);
    }
    let _ = index::parse(data);
}

/// A tree blob's JSON, and the checks a restore makes on it.
pub fn tree_blob(data: &[u8]) {
    if let Ok(t) = tree::parse(data) {
        let _ = tree::check_entries(&t);
        for n in &t.nodes {
            let _ = tree::entry_name(n);
            let _ = serde_json::to_vec(n);
        }
    }
}

/// A snapshot file after decryption, as the facade presents it.
pub fn snapshot_file(data: &[u8]) {
    if let Ok(json) = decode_plain(Unpacked::Snapshot, data.to_vec())
        && let Ok(sn) = parse_snapshot(&json, rustic_core::Id::default())
    {
        let info = crate::repo::SnapshotInfo::from_file(&sn);
        let _ = serde_json::to_string(&info);
    }
}

/// A saved Kubernetes object (JSON) through the manifest restore's transform; the first
/// byte chooses the options.
pub fn manifest_transform(data: &[u8]) {
    let Some((&flags, json)) = data.split_first() else {
        return;
    };
    if let Ok(obj) = serde_json::from_slice::<serde_json::Value>(json) {
        let opts = crate::mover::restore::TransformOptions {
            suppress_side_effects: flags & 1 != 0,
            scale_to_zero: flags & 2 != 0,
        };
        let _ = crate::mover::restore::transform(obj, "restored", &opts);
    }
}

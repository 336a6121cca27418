//! The restic repository format (restic's design document), read and written by Lifeboat
//! itself: encryption ([`crypto`]), key files ([`key`]), unpacked files (config, index,
//! snapshots, locks: [`files`]), packs ([`pack`]), index files ([`index`]) and trees
//! ([`tree`]).
//!
//! Everything read from a repository is input from whoever controls the storage. Every
//! size is checked against a bound ([`limits`]) before memory is allocated for it, every
//! parse failure is an error naming the object, and nothing here panics on bad input. The
//! bounds are listed in docs/engine.md ("Hostile repositories"); the parsers are fuzzed
//! (fuzz/).

pub(crate) mod crypto;
pub(crate) mod files;
pub(crate) mod index;
pub(crate) mod key;
pub(crate) mod pack;
pub(crate) mod tree;

use rustic_core::{FileType, Id};

/// The bounds put on what a repository may hold. Far above what restic or Lifeboat
/// writes (restic: blobs of at most 8 MiB, packs of 16 MiB by default, index files of
/// at most ~50,000 blobs), far below what would exhaust a mover pod.
pub(crate) mod limits {
    /// A key file (restic's are ~450 bytes).
    pub(crate) const KEY_FILE: u64 = 64 << 10;
    /// Key files tried with a password before giving up (each costs one KDF).
    pub(crate) const KEYS_TRIED: usize = 32;
    /// The config file, a lock file.
    pub(crate) const SMALL_FILE: u64 = 64 << 10;
    /// A snapshot file as stored, and its JSON once decompressed.
    pub(crate) const SNAPSHOT_FILE: u64 = 16 << 20;
    pub(crate) const SNAPSHOT_JSON: u64 = 64 << 20;
    /// An index file as stored, and its JSON once decompressed.
    pub(crate) const INDEX_FILE: u64 = 256 << 20;
    pub(crate) const INDEX_JSON: u64 = 1 << 30;
    /// The plaintext of a data blob (restic's chunks are at most 8 MiB).
    pub(crate) const DATA_BLOB: u32 = 64 << 20;
    /// The plaintext of a tree blob (one directory's JSON: ~300 bytes per entry).
    pub(crate) const TREE_BLOB: u32 = 512 << 20;
    /// The encrypted header of a pack.
    pub(crate) const PACK_HEADER: u32 = 32 << 20;
    /// Tree packs read whole (and cached) while walking trees; larger ones are read
    /// blob by blob.
    pub(crate) const TREE_PACK_READ_WHOLE: u64 = 64 << 20;
}

/// The object name of a repository file in the restic layout.
pub(crate) fn object_path(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    let hex = hex.as_str();
    match tpe {
        FileType::Config => "config".to_string(),
        FileType::Pack => format!("data/{}/{hex}", &hex[..2]),
        other => format!("{}/{hex}", other.dirname()),
    }
}

/// The first 8 hex digits of an id, as restic shows them.
pub(crate) fn short(id: &Id) -> String {
    id.to_hex().as_str()[..8].to_string()
}

/// The 32 raw bytes of an id.
pub(crate) fn id_bytes(id: &Id) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(id.to_hex().as_str(), &mut out).expect("an id is 64 hex digits");
    out
}

/// SHA-256 of `data` as a repository id (blob, pack and file ids are all SHA-256).
pub(crate) fn hash(data: &[u8]) -> Id {
    use sha2::Digest;
    Id::new(sha2::Sha256::digest(data).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_restic() {
        let id: Id = "ab01000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        let hex = id.to_hex();
        assert_eq!(object_path(FileType::Config, &id), "config");
        assert_eq!(
            object_path(FileType::Pack, &id),
            format!("data/ab/{}", hex.as_str())
        );
        assert_eq!(
            object_path(FileType::Snapshot, &id),
            format!("snapshots/{}", hex.as_str())
        );
        assert_eq!(
            object_path(FileType::Key, &id),
            format!("keys/{}", hex.as_str())
        );
        assert_eq!(
            object_path(FileType::Index, &id),
            format!("index/{}", hex.as_str())
        );
        assert_eq!(short(&id), "ab010000");
    }
}

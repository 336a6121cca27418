//! Unpacked repository files: `config`, `snapshots/<id>`, `index/<id>` and `locks/<id>`,
//! each one encrypted JSON, in format v2 usually behind a version byte `2` and zstd
//! (restic's `SaveUnpacked`); format v1 and v2 readers also accept plain JSON. A file's
//! id is the SHA-256 of its stored bytes, checked when it is read.

use std::sync::Arc;

use rustic_core::{
    FileType, Id,
    repofile::{ConfigFile, SnapshotFile},
};

use super::{
    crypto::{Crypto, decompress_bounded},
    hash, limits, object_path, short,
};
use crate::repo::{Error, Result, backend::ObjectStore};

/// The kinds of unpacked files, with their bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unpacked {
    Config,
    Snapshot,
    Index,
    Lock,
}

impl Unpacked {
    /// Most bytes the stored (encrypted) file may have.
    pub(crate) const fn stored_max(self) -> u64 {
        match self {
            Self::Config | Self::Lock => limits::SMALL_FILE,
            Self::Snapshot => limits::SNAPSHOT_FILE,
            Self::Index => limits::INDEX_FILE,
        }
    }

    /// Most bytes of JSON it may decompress to.
    pub(crate) const fn plain_max(self) -> u64 {
        match self {
            Self::Config | Self::Lock => limits::SMALL_FILE,
            Self::Snapshot => limits::SNAPSHOT_JSON,
            Self::Index => limits::INDEX_JSON,
        }
    }

    pub(crate) const fn what(self) -> &'static str {
        match self {
            Self::Config => "config file",
            Self::Snapshot => "snapshot file",
            Self::Index => "index file",
            Self::Lock => "lock file",
        }
    }
}

/// Decrypts an unpacked file and undoes v2 compression, within the kind's bounds.
pub(crate) fn decode(
    crypto: &Crypto,
    kind: Unpacked,
    data: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    if data.len() as u64 > kind.stored_max() {
        return Err(format!(
            "{} bytes, more than a {} may have ({})",
            data.len(),
            kind.what(),
            kind.stored_max()
        ));
    }
    let plain = crypto.open(data).map_err(|e| e.to_string())?;
    decode_plain(kind, plain)
}

/// [`decode`] after decryption: plain JSON, or the version byte 2 and zstd.
pub(crate) fn decode_plain(kind: Unpacked, plain: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    match plain.first() {
        None | Some(b'{' | b'[') => Ok(plain),
        Some(2) => decompress_bounded(&plain[1..], kind.plain_max()),
        Some(b) => Err(format!("unknown format byte {b:#x}")),
    }
}

/// Encrypts JSON as an unpacked file of a repository of `version` (2: compressed behind
/// the version byte, as restic writes it; 1: plain).
pub(crate) fn encode(crypto: &Crypto, json: &[u8], version: u32) -> Result<Vec<u8>> {
    if version < 2 {
        return Ok(crypto.seal(json));
    }
    let mut plain = vec![2u8];
    plain.extend_from_slice(
        &zstd::bulk::compress(json, 3)
            .map_err(|e| Error::Internal(format!("zstd compression failed: {e}")))?,
    );
    Ok(crypto.seal(&plain))
}

/// Reads and decodes `path` (of `size` bytes when already known from a listing).
pub(crate) fn read(
    store: &dyn ObjectStore,
    crypto: &Crypto,
    kind: Unpacked,
    path: &str,
    size: Option<u64>,
) -> Result<Vec<u8>> {
    let size = match size {
        Some(s) => s,
        None => store
            .size(path)?
            .ok_or_else(|| Error::corrupt(path, "missing"))?,
    };
    if size > kind.stored_max() {
        return Err(Error::corrupt(
            path,
            format!(
                "{size} bytes, more than a {} may have ({})",
                kind.what(),
                kind.stored_max()
            ),
        ));
    }
    let data = store.get(path, None)?;
    if kind != Unpacked::Config
        && let Some(name) = path.rsplit('/').next()
        && let Ok(id) = name.parse::<Id>()
        && hash(&data) != id
    {
        return Err(Error::corrupt(
            path,
            "its content does not match its name (SHA-256)",
        ));
    }
    decode(crypto, kind, &data).map_err(|why| Error::corrupt(path, why))
}

/// Writes JSON as a new unpacked file of type `tpe`; returns its id.
pub(crate) fn save(
    store: &dyn ObjectStore,
    crypto: &Crypto,
    version: u32,
    tpe: FileType,
    json: &[u8],
) -> Result<Id> {
    let data = encode(crypto, json, version)?;
    let id = hash(&data);
    store.put(&object_path(tpe, &id), vec![data.into()])?;
    Ok(id)
}

/// Parses and checks a config file's JSON.
pub(crate) fn parse_config(json: &[u8]) -> std::result::Result<ConfigFile, String> {
    let config: ConfigFile = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    if !matches!(config.version, 1 | 2) {
        return Err(format!(
            "repository format version {} is unknown",
            config.version
        ));
    }
    Ok(config)
}

/// Reads the repository's config.
pub(crate) fn load_config(store: &dyn ObjectStore, crypto: &Crypto) -> Result<ConfigFile> {
    let json = read(store, crypto, Unpacked::Config, "config", None)?;
    parse_config(&json).map_err(|why| Error::corrupt("config", why))
}

/// Parses a snapshot file's JSON; `id` is its file's id.
pub(crate) fn parse_snapshot(json: &[u8], id: Id) -> std::result::Result<SnapshotFile, String> {
    let mut sn: SnapshotFile = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    sn.id = id.into();
    Ok(sn)
}

/// Reads one snapshot file.
pub(crate) fn load_snapshot(
    store: &dyn ObjectStore,
    crypto: &Crypto,
    id: &Id,
    size: Option<u64>,
) -> Result<SnapshotFile> {
    let path = object_path(FileType::Snapshot, id);
    let json = read(store, crypto, Unpacked::Snapshot, &path, size)?;
    parse_snapshot(&json, *id).map_err(|why| Error::corrupt(format!("snapshot {}", short(id)), why))
}

/// Ids and sizes of the files of one type (names that are no ids are not repository
/// files: temporary files of other tools, for instance).
pub(crate) fn list(store: &dyn ObjectStore, tpe: FileType) -> Result<Vec<(Id, u64)>> {
    Ok(store
        .list(tpe.dirname())?
        .into_iter()
        .filter_map(|(name, size)| {
            let base = name.rsplit('/').next().unwrap_or(&name);
            base.parse::<Id>().ok().map(|id| (id, size))
        })
        .collect())
}

/// Every snapshot of the repository. A snapshot file that cannot be read is left out
/// with a warning (and reported by `check`), so one damaged file does not stop backups
/// or restores of the others.
pub(crate) fn load_snapshots(
    store: &Arc<dyn ObjectStore>,
    crypto: &Crypto,
) -> Result<Vec<SnapshotFile>> {
    let listed = list(store.as_ref(), FileType::Snapshot)?;
    let loaded = parallel_map(listed, 8, |(id, size)| {
        load_snapshot(store.as_ref(), crypto, &id, Some(size))
    });
    let mut out = Vec::with_capacity(loaded.len());
    for r in loaded {
        match r {
            Ok(sn) => out.push(sn),
            Err(e @ Error::Corrupt(_)) => tracing::warn!(error = %e, "snapshot left out"),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Writes a snapshot file; returns the snapshot with its new id.
pub(crate) fn save_snapshot(
    store: &dyn ObjectStore,
    crypto: &Crypto,
    version: u32,
    mut snap: SnapshotFile,
) -> Result<SnapshotFile> {
    snap.id = Id::default().into();
    let json = serde_json::to_vec(&snap)
        .map_err(|e| Error::Internal(format!("serialising a snapshot: {e}")))?;
    let id = save(store, crypto, version, FileType::Snapshot, &json)?;
    snap.id = id.into();
    Ok(snap)
}

/// `f` over `items` on up to `threads` threads, results in input order.
pub(crate) fn parallel_map<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let n = items.len();
    if n <= 1 || threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut out);
    std::thread::scope(|s| {
        for _ in 0..threads.min(n) {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((i, item)) = next else { return };
                    let r = f(item);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_round_trip_and_bounds_hold() {
        let c = Crypto::random();
        for version in [1, 2] {
            let enc = encode(&c, br#"{"a":1}"#, version).unwrap();
            assert_eq!(decode(&c, Unpacked::Snapshot, &enc).unwrap(), br#"{"a":1}"#);
        }
        // a compressed file that expands beyond its kind's bound
        let mut plain = vec![2u8];
        plain.extend(zstd::bulk::compress(&vec![b' '; 128 << 10], 3).unwrap());
        let bomb = c.seal(&plain);
        assert!(decode(&c, Unpacked::Lock, &bomb).is_err());
        assert!(decode(&c, Unpacked::Snapshot, &bomb).is_ok());
        assert!(decode(&c, Unpacked::Lock, &c.seal(&[7, 1, 2])).is_err());
        assert!(decode(&c, Unpacked::Lock, &[0; 10]).is_err());
    }

    #[test]
    fn parallel_map_keeps_order() {
        let v: Vec<u32> = (0..100).collect();
        assert_eq!(
            parallel_map(v.clone(), 4, |x| x * 2),
            v.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
    }

    #[test]
    fn configs_of_unknown_versions_are_refused() {
        assert!(
            parse_config(br#"{"version":3,"id":"00","chunker_polynomial":"3DA3358B4DC173"}"#)
                .is_err()
        );
        assert!(parse_config(b"{").is_err());
    }
}

//! Trees (one directory each: its entries as restic's JSON nodes) are read here: with
//! bounds from the index, their SHA-256 checked, and every entry's name checked before a
//! restore turns it into a path. Whole tree packs are cached while walking (a snapshot's
//! trees sit together in a few packs, so one read serves thousands of trees).

use std::{
    collections::{HashMap, HashSet},
    ffi::OsString,
    os::unix::ffi::OsStrExt,
    sync::Arc,
};

use bytes::Bytes;
use rustic_core::{
    FileType, Id,
    repofile::{Node, NodeType, Tree},
};

use super::{crypto::Crypto, hash, index::RepoIndex, limits, object_path, short};
use crate::repo::{Error, Result, backend::ObjectStore};

/// The file name a tree entry stands for, if it is one plain name: not empty, not `.`
/// or `..`, without `/` or NUL (names are stored escaped, restic's `strconv.Quote`
/// style; this is the unescaped name).
pub(crate) fn entry_name(node: &Node) -> std::result::Result<OsString, String> {
    let name = node.name();
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(format!("invalid file name {:?}", node.name));
    }
    Ok(name.into_owned())
}

/// Checks what a restore relies on: every name is a plain name ([`entry_name`]), no
/// name appears twice, directories have a subtree. Returns the names in order.
pub(crate) fn check_entries(tree: &Tree) -> std::result::Result<Vec<OsString>, String> {
    let mut seen = HashSet::with_capacity(tree.nodes.len());
    let mut names = Vec::with_capacity(tree.nodes.len());
    for node in &tree.nodes {
        let name = entry_name(node)?;
        if !seen.insert(name.clone()) {
            return Err(format!("the name {:?} appears twice", node.name));
        }
        if node.node_type == NodeType::Dir && node.subtree.is_none() {
            return Err(format!("directory {:?} has no subtree", node.name));
        }
        names.push(name);
    }
    Ok(names)
}

/// Parses a tree's JSON.
pub(crate) fn parse(json: &[u8]) -> std::result::Result<Tree, String> {
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

/// Reads trees by id through the index, caching whole tree packs.
pub(crate) struct TreeLoader<'a> {
    store: Arc<dyn ObjectStore>,
    crypto: Crypto,
    index: &'a RepoIndex,
    packs: HashMap<Id, Bytes>,
    cached_bytes: usize,
    /// One decompression context for all trees: creating one per tree was 9% of a
    /// no-change backup's CPU in the profile.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

/// Tree packs kept in memory while walking; beyond this, ranged reads are used.
const TREE_CACHE_BYTES: usize = 64 << 20;

impl<'a> TreeLoader<'a> {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, crypto: Crypto, index: &'a RepoIndex) -> Self {
        Self {
            store,
            crypto,
            index,
            packs: HashMap::new(),
            cached_bytes: 0,
            zstd: None,
        }
    }

    /// The encrypted bytes of a tree blob.
    fn fetch(&mut self, id: &Id) -> Result<(Vec<u8>, super::index::BlobLoc)> {
        let loc = *self.index.trees.get(id).ok_or_else(|| {
            Error::corrupt(
                format!("tree {}", short(id)),
                format!("not in the index{}", self.index.missing_hint()),
            )
        })?;
        let path = object_path(FileType::Pack, &loc.pack);
        let (start, end) = (loc.offset as usize, loc.end() as usize);
        let beyond = || {
            Error::corrupt_in_pack(
                format!("tree {}", short(id)),
                &loc.pack,
                "the pack is shorter than the index says",
            )
        };
        if let Some(p) = self.packs.get(&loc.pack) {
            return Ok((p.get(start..end).ok_or_else(beyond)?.to_vec(), loc));
        }
        if self.cached_bytes < TREE_CACHE_BYTES
            && let Some(size) = self.store.size(&path)?
            && size <= limits::TREE_PACK_READ_WHOLE
            && size >= loc.end()
        {
            let p = self.store.get(&path, None)?;
            let blob = p.get(start..end).ok_or_else(beyond)?.to_vec();
            self.cached_bytes += p.len();
            self.packs.insert(loc.pack, p);
            return Ok((blob, loc));
        }
        let data = super::pack::read_range(self.store.as_ref(), &loc.pack, loc.offset, loc.length)?;
        Ok((data.to_vec(), loc))
    }

    /// Reads, verifies and parses tree `id` (names are not checked: see
    /// [`check_entries`]).
    pub(crate) fn load(&mut self, id: &Id) -> Result<Arc<Tree>> {
        let (mut enc, loc) = self.fetch(id)?;
        let bad =
            |why: String| Error::corrupt_in_pack(format!("tree {}", short(id)), &loc.pack, why);
        let r = self
            .crypto
            .open_in_place(&mut enc)
            .map_err(|e| bad(e.to_string()))?;
        let plain = &enc[r];
        let json = if loc.uncompressed > 0 {
            let z = match &mut self.zstd {
                Some(z) => z,
                None => self.zstd.insert(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| Error::Internal(format!("zstd: {e}")))?,
                ),
            };
            // the capacity is the index's length, which was checked against the bound
            z.decompress(plain, loc.uncompressed as usize)
                .map_err(|e| bad(format!("decompression failed: {e}")))?
        } else {
            plain.to_vec()
        };
        if hash(&json) != *id {
            return Err(bad("its content does not match its id (SHA-256)".into()));
        }
        let tree = parse(&json).map_err(bad)?;
        Ok(Arc::new(tree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::repofile::Metadata;

    fn node(name: &str, t: NodeType) -> Node {
        let mut n = Node::new_node(std::ffi::OsStr::new("x"), t, Metadata::default());
        n.name = name.to_string();
        if n.node_type == NodeType::Dir {
            n.subtree = Some(Id::default().into());
        }
        n
    }

    #[test]
    fn names_must_be_plain_and_unique() {
        for bad in ["", ".", "..", "a/b", "/", "a\\x00b", "..\\x2f"] {
            let t = Tree {
                nodes: vec![node(bad, NodeType::File)],
            };
            assert!(check_entries(&t).is_err(), "{bad:?}");
        }
        let dup = Tree {
            nodes: vec![
                node("x", NodeType::Dir),
                node(
                    "x",
                    NodeType::Symlink {
                        linktarget: "/etc".into(),
                        linktarget_raw: None,
                    },
                ),
            ],
        };
        assert!(check_entries(&dup).unwrap_err().contains("twice"));
        // two spellings of one name are one name
        let escaped = Tree {
            nodes: vec![node("a", NodeType::File), node("\\x61", NodeType::File)],
        };
        assert!(check_entries(&escaped).is_err());
        let ok = Tree {
            nodes: vec![node("caf\\xe9", NodeType::File), node("a b", NodeType::Dir)],
        };
        let names = check_entries(&ok).unwrap();
        assert_eq!(names[0].as_bytes(), b"caf\xe9");
        let no_subtree = Tree {
            nodes: vec![{
                let mut n = node("d", NodeType::Dir);
                n.subtree = None;
                n
            }],
        };
        assert!(check_entries(&no_subtree).is_err());
    }
}

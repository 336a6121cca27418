//! Repositories someone else controls: crafted trees, snapshots, indexes and packs,
//! written with the format's own writers, restored or read by the facade. Nothing may
//! be written outside the restore's target, nothing may panic, and every refusal is a
//! `RepositoryCorrupted` (or `UnsupportedRepository`) error naming the object.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
};

use rustic_core::{FileType, Id, repofile::BlobType};
use serde_json::{Value, json};

use super::{
    Error, InitOptions, Repo, RepoOptions, RestoreTarget, Secret, SnapshotFilter, Storage,
    format::{files, hash, index::IndexWriter, object_path, pack::PackBuilder},
    kdf,
};

const PASSWORD: &str = "hostile-repository-test-password!";

/// A repository whose trees, blobs and snapshots are written by hand.
struct Crafted {
    tmp: tempfile::TempDir,
    repo: Repo,
    data: PackBuilder,
    trees: PackBuilder,
}

fn dir_mode() -> u32 {
    (1 << 31) | 0o755
}

impl Crafted {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let opts = RepoOptions::new(Storage::Local(tmp.path().join("repo")));
        let init = InitOptions {
            kdf: kdf::RANDOM_SECRET,
            compression: None,
        };
        let repo = Repo::init(&opts, &Secret::new(PASSWORD), &init).unwrap();
        Self {
            tmp,
            repo,
            data: PackBuilder::new(BlobType::Data, Default::default()),
            trees: PackBuilder::new(BlobType::Tree, Default::default()),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// A data blob (stored uncompressed); returns its id.
    fn blob(&mut self, content: &[u8]) -> String {
        let id = hash(content);
        let enc = self.repo.ctx.crypto.seal(content);
        self.data.add(id, &enc, None);
        id.to_hex().as_str().to_string()
    }

    /// A tree of these JSON nodes, exactly as given; returns its id.
    fn tree(&mut self, nodes: Vec<Value>) -> String {
        let json = serde_json::to_vec(&json!({ "nodes": nodes })).unwrap();
        let id = hash(&json);
        let enc = self.repo.ctx.crypto.seal(&json);
        self.trees.add(id, &enc, None);
        id.to_hex().as_str().to_string()
    }

    fn file(&mut self, name: &str, content: &[u8]) -> Value {
        let blob = self.blob(content);
        json!({"name": name, "type": "file", "mode": 0o644, "size": content.len(),
               "content": [blob]})
    }

    /// Writes the packs, an index and a snapshot of `tree`; returns the snapshot id.
    fn snapshot(&mut self, tree: &str) -> String {
        let ctx = &self.repo.ctx;
        let mut idx = IndexWriter::new(ctx.store.clone(), ctx.crypto.clone(), 2);
        for tpe in [BlobType::Data, BlobType::Tree] {
            let b = match tpe {
                BlobType::Data => &mut self.data,
                BlobType::Tree => &mut self.trees,
            };
            let pack = std::mem::replace(b, PackBuilder::new(tpe, Default::default()));
            if pack.is_empty() {
                continue;
            }
            let sealed = pack.seal(&ctx.crypto);
            let id = sealed.id();
            ctx.store
                .put(&object_path(FileType::Pack, &id), vec![sealed.data.clone()])
                .unwrap();
            idx.add_pack(id, sealed.entries).unwrap();
        }
        idx.flush().unwrap();
        let snap = json!({"time": "2026-01-01T00:00:00Z", "tree": tree, "paths": ["/x"],
                          "hostname": "h"});
        files::save(
            ctx.store.as_ref(),
            &ctx.crypto,
            2,
            FileType::Snapshot,
            &serde_json::to_vec(&snap).unwrap(),
        )
        .unwrap()
        .to_hex()
        .as_str()
        .to_string()
    }

    fn restore_into(
        &self,
        snap: &str,
        target: &Path,
        devices: bool,
    ) -> super::Result<super::RestoreStats> {
        self.repo
            .restore_with(
                snap,
                &SnapshotFilter::default(),
                &RestoreTarget {
                    path: String::new(),
                    target: target.to_path_buf(),
                    delete: false,
                    numeric_ids: true,
                    devices_and_setid: devices,
                },
            )
            .map(|(_, s)| s)
    }
}

fn corrupted(r: super::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(e @ Error::Corrupt(_)) => e.to_string(),
        other => panic!("expected RepositoryCorrupted, got {other:?}"),
    }
}

fn empty(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn a_directory_and_a_symlink_of_the_same_name_are_refused() {
    for symlink_first in [false, true] {
        let mut c = Crafted::new();
        let outside = c.path("outside");
        fs::create_dir(&outside).unwrap();
        let f = c.file("planted", b"owned");
        let sub = c.tree(vec![f]);
        let dir = json!({"name": "x", "type": "dir", "mode": dir_mode(), "subtree": sub});
        let link = json!({"name": "x", "type": "symlink", "linktarget": outside.to_str().unwrap(),
                          "mode": 0o777});
        let nodes = if symlink_first {
            vec![link, dir]
        } else {
            vec![dir, link]
        };
        let root = c.tree(nodes);
        let snap = c.snapshot(&root);
        let msg = corrupted(c.restore_into(&snap, &c.path("target"), false));
        assert!(msg.contains("twice"), "{msg}");
        assert!(empty(&outside), "something was written outside the target");
    }
}

#[test]
fn names_that_are_not_plain_names_are_refused() {
    for name in [
        "..",
        ".",
        "",
        "/",
        "a/b",
        "../../escape",
        "/abs",
        "nul\\x00byte",
        "..\\x2fx",
    ] {
        let mut c = Crafted::new();
        let f = c.file(name, b"owned");
        let sub = c.tree(vec![f]);
        let root = c.tree(vec![json!({"name": "d", "type": "dir", "mode": dir_mode(),
                                      "subtree": sub})]);
        let snap = c.snapshot(&root);
        let target = c.path("deep/target");
        let msg = corrupted(c.restore_into(&snap, &target, false));
        assert!(msg.contains("invalid file name"), "{name:?}: {msg}");
        assert!(!c.path("escape").exists() && !c.path("deep/escape").exists());
        assert!(!c.path("deep/target/d/planted").exists());
    }
}

#[test]
fn existing_symlinks_and_hard_links_in_the_target_are_replaced_not_followed() {
    let mut c = Crafted::new();
    let outside = c.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    fs::write(outside.join("linked"), b"original").unwrap();
    let target = c.path("target");
    fs::create_dir(&target).unwrap();
    // what a previous, interrupted restore or someone with access to the volume left
    symlink(&outside, target.join("d")).unwrap();
    symlink(outside.join("victim"), target.join("f")).unwrap();
    fs::hard_link(outside.join("linked"), target.join("h")).unwrap();
    let inner = c.file("inner", b"restored");
    let sub = c.tree(vec![inner]);
    let f = c.file("f", b"restored");
    let h = c.file("h", b"restored");
    let root = c.tree(vec![
        json!({"name": "d", "type": "dir", "mode": dir_mode(), "subtree": sub}),
        f,
        h,
    ]);
    let snap = c.snapshot(&root);
    c.restore_into(&snap, &target, false).unwrap();
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"original");
    assert_eq!(fs::read(outside.join("linked")).unwrap(), b"original");
    assert!(!outside.join("inner").exists());
    assert!(fs::symlink_metadata(target.join("d")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("d/inner")).unwrap(), b"restored");
    assert!(fs::symlink_metadata(target.join("f")).unwrap().is_file());
    assert_eq!(fs::read(target.join("f")).unwrap(), b"restored");
    assert_eq!(fs::read(target.join("h")).unwrap(), b"restored");
    assert_eq!(fs::metadata(target.join("h")).unwrap().nlink(), 1);
}

#[test]
fn device_nodes_and_setid_bits_only_when_asked() {
    let mut c = Crafted::new();
    let f = c.file("tool", b"#!/bin/sh\n");
    let mut f = f;
    // Go's os.ModeSetuid | os.ModeSetgid | 0755
    f["mode"] = json!((1u32 << 23) | (1 << 22) | 0o755);
    let root = c.tree(vec![
        json!({"name": "null2", "type": "chardev", "device": 259, "mode": (1u32 << 26) | (1 << 21) | 0o666}),
        f,
    ]);
    let snap = c.snapshot(&root);
    let plain = c.path("plain");
    let stats = c.restore_into(&snap, &plain, false).unwrap();
    assert_eq!(stats.devices_skipped, 1);
    assert!(!plain.join("null2").exists());
    assert_eq!(
        fs::metadata(plain.join("tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    let trusted = c.path("trusted");
    let stats = c.restore_into(&snap, &trusted, true).unwrap();
    assert_eq!(
        fs::metadata(trusted.join("tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o6755
    );
    if nix::unistd::geteuid().is_root() {
        assert_eq!(stats.devices_skipped, 0);
        let m = fs::symlink_metadata(trusted.join("null2")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &m.file_type()
        ));
    }
}

#[test]
fn lies_about_sizes_are_refused_before_allocating() {
    let mut c = Crafted::new();
    let f = c.file("f", b"data");
    let root = c.tree(vec![f.clone()]);
    c.snapshot(&root);
    // an extra index file claiming a 4 GiB plaintext for a blob: refused as a whole
    let ctx = &c.repo.ctx;
    let blob = f["content"][0].as_str().unwrap();
    let lie = json!({"packs": [{"id": "ab".repeat(32), "blobs": [
        {"id": blob, "type": "data", "offset": 0, "length": 100, "uncompressed_length": u32::MAX}]}]});
    files::save(
        ctx.store.as_ref(),
        &ctx.crypto,
        2,
        FileType::Index,
        &serde_json::to_vec(&lie).unwrap(),
    )
    .unwrap();
    let index = super::format::index::RepoIndex::load(&ctx.store, &ctx.crypto).unwrap();
    assert_eq!(index.damaged.len(), 1, "{:?}", index.damaged);
    assert!(
        index.damaged[0].1.contains("more than a"),
        "{:?}",
        index.damaged
    );
    // the honest index still serves the restore
    let snap = c
        .repo
        .find_snapshot("latest", &SnapshotFilter::default())
        .unwrap();
    c.restore_into(&snap.id, &c.path("t"), false).unwrap();
    assert_eq!(fs::read(c.path("t/f")).unwrap(), b"data");
    // a snapshot file beyond its bound is left out, not read
    let big = vec![b' '; (super::format::limits::SNAPSHOT_FILE + 1) as usize];
    let id = hash(&big);
    ctx.store
        .put(&object_path(FileType::Snapshot, &id), vec![big.into()])
        .unwrap();
    assert_eq!(
        c.repo.snapshots(&SnapshotFilter::default()).unwrap().len(),
        1
    );
    let err = files::load_snapshot(ctx.store.as_ref(), &ctx.crypto, &id, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("more than a snapshot file may have"),
        "{err}"
    );
}

#[test]
fn malformed_trees_and_snapshots_are_errors_not_panics() {
    let mut c = Crafted::new();
    // a "tree" that is not a tree
    let junk = b"{\"nodes\": [{\"name\": 5}]}".to_vec();
    let id = hash(&junk);
    let enc = c.repo.ctx.crypto.seal(&junk);
    c.trees.add(id, &enc, None);
    let snap = c.snapshot(id.to_hex().as_str());
    let msg = corrupted(c.restore_into(&snap, &c.path("t"), false));
    assert!(msg.contains(&id.to_hex().as_str()[..8]), "{msg}");
    // a snapshot naming a tree that does not exist
    let ghost = c.snapshot(&"cd".repeat(32));
    let msg = corrupted(c.restore_into(&ghost, &c.path("t2"), false));
    assert!(msg.contains("not in the index"), "{msg}");
    // snapshot files that do not parse or do not decrypt are left out of listings
    let ctx = &c.repo.ctx;
    files::save(
        ctx.store.as_ref(),
        &ctx.crypto,
        2,
        FileType::Snapshot,
        b"[1, 2, 3]",
    )
    .unwrap();
    let garbage = b"not even encrypted".to_vec();
    ctx.store
        .put(
            &object_path(FileType::Snapshot, &hash(&garbage)),
            vec![garbage.into()],
        )
        .unwrap();
    assert_eq!(
        c.repo.snapshots(&SnapshotFilter::default()).unwrap().len(),
        2
    );
}

#[test]
fn a_truncated_pack_names_the_pack_and_the_file() {
    let mut c = Crafted::new();
    let content: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let f = c.file("important.db", &content);
    let root = c.tree(vec![f]);
    let snap = c.snapshot(&root);
    let pack = c
        .repo
        .ctx
        .store
        .list("data")
        .unwrap()
        .into_iter()
        .map(|(name, size)| (c.path("repo/data").join(name), size))
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let f = fs::OpenOptions::new().write(true).open(&pack.0).unwrap();
    f.set_len(pack.1 / 2).unwrap();
    let err = c.restore_into(&snap, &c.path("t"), false).unwrap_err();
    assert_eq!(err.category(), "RepositoryCorrupted", "{err}");
    let msg = err.to_string();
    let pack_id = pack.0.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(pack_id), "{msg}");
    assert!(msg.contains("important.db"), "{msg}");
    // one flipped byte instead: the same, through authentication
    let _ = Id::default();
}

//! Interop and safety tests of the backup pipeline and the restorer against real tools:
//! Debian's `restic` (list, `check --read-data`, restore byte-identically, chunk
//! compatibility, restoring what restic wrote) and rustic_core (checks what we wrote).
//! restic must be installed (`apt-get install restic`); the tests fail, not skip,
//! without it.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use rustic_core::{
    CheckOptions, Excludes, FileType, LocalSource, LocalSourceFilterOptions,
    LocalSourceSaveOptions, SnapshotOptions,
};

use super::{
    InitOptions, Repo, RepoOptions, Secret, Storage,
    backend::{ObjectStore, StoreError, local::LocalStore},
    backup::{BackupOptions, backup},
    engine::EngineCtx,
    format::files,
    kdf,
    restore::{RestoreOptions, restore},
};

const PASSWORD: &str = "fast-path-test-password";

fn restic(args: &[&str], repo: &Path) -> std::process::Output {
    let out = Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `restic` ({e}): these tests need Debian's restic 0.14 (apt-get install restic)")
        });
    assert!(
        out.status.success(),
        "restic {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A small tree with what matters: multi-chunk random and compressible files, a
/// duplicate, an empty file, nesting, symlinks (one dangling), a hard link, modes.
fn make_source(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    let big = pseudo_random(20 << 20, 7);
    fs::write(root.join("big.bin"), &big).unwrap();
    fs::write(root.join("a/big-copy.bin"), &big).unwrap();
    let text: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("line {i} of a compressible text file\n").into_bytes())
        .collect();
    fs::write(root.join("a/b/text.txt"), &text).unwrap();
    fs::write(root.join("a/b/c/small.txt"), b"hello restic\n").unwrap();
    fs::write(root.join("empty.txt"), b"").unwrap();
    fs::set_permissions(
        root.join("a/b/c/small.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    symlink("a/b/c/small.txt", root.join("link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    fs::hard_link(root.join("a/b/c/small.txt"), root.join("hardlink.txt")).unwrap();
    fs::hard_link(root.join("empty.txt"), root.join("empty-link.txt")).unwrap();
}

/// Contents, link targets and permission bits of every entry under `root`.
fn snapshot_of(root: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (String, Vec<u8>, u32)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.insert(
                    rel,
                    ("link".into(), t.into_os_string().into_encoded_bytes(), 0),
                );
            } else if m.is_dir() {
                out.insert(rel, ("dir".into(), Vec::new(), mode));
                walk(root, &p, out);
            } else {
                out.insert(rel, ("file".into(), fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

struct TestRepo {
    dir: PathBuf,
    ctx: EngineCtx,
}

fn options(dir: &Path) -> RepoOptions {
    RepoOptions::new(Storage::Local(dir.to_path_buf()))
}

fn open(dir: &Path) -> TestRepo {
    let repo = Repo::open(&options(dir), &Secret::new(PASSWORD)).unwrap();
    TestRepo {
        dir: dir.to_path_buf(),
        ctx: repo.ctx,
    }
}

/// The repository at `dir` with its objects written through `store`.
fn open_with(dir: &Path, store: Arc<dyn ObjectStore>) -> TestRepo {
    let mut t = open(dir);
    t.ctx.store = store;
    t
}

fn init(dir: &Path) -> TestRepo {
    let init = InitOptions {
        kdf: kdf::RANDOM_SECRET,
        compression: None,
    };
    Repo::init(&options(dir), &Secret::new(PASSWORD), &init).unwrap();
    open(dir)
}

fn run_backup(
    t: &TestRepo,
    src: &Path,
) -> (
    rustic_core::repofile::SnapshotFile,
    super::backup::BackupStats,
) {
    let paths = vec![src.to_path_buf()];
    let source = LocalSource::new(
        LocalSourceSaveOptions::default(),
        &Excludes::default(),
        &LocalSourceFilterOptions::default(),
        &paths,
    )
    .unwrap();
    let snap = SnapshotOptions::default()
        .host(Some("test-host".to_string()))
        .to_snapshot()
        .unwrap();
    backup(&t.ctx, &source, &paths, snap, &BackupOptions::default()).unwrap()
}

fn count(dir: &Path, tpe: FileType) -> usize {
    files::list(&LocalStore::new(dir), tpe).unwrap().len()
}

fn restore_into(
    t: &TestRepo,
    tree: &rustic_core::TreeId,
    target: &Path,
) -> super::restore::RestoreStats {
    restore(
        &t.ctx.store,
        &t.ctx.crypto,
        tree,
        "",
        target,
        &RestoreOptions::default(),
    )
    .unwrap()
    .expect("the whole tree is there")
}

#[test]
fn restic_lists_checks_and_restores_what_we_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    let t = init(&tmp.path().join("repo"));
    let (snap, stats) = run_backup(&t, &src);
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    assert!(
        stats.packs_written >= 2,
        "one data and one tree pack at least"
    );

    let out = restic(&["snapshots", "--json"], &t.dir);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], snap.id.to_hex().as_str());
    assert_eq!(list[0]["hostname"], "test-host");

    let out = restic(&["check", "--read-data"], &t.dir);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));

    let target = tmp.path().join("restic-restore");
    restic(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        &t.dir,
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(snapshot_of(&src), snapshot_of(&restored));
    // restic keeps hard links it can see in one snapshot
    let (a, b) = (
        fs::metadata(restored.join("a/b/c/small.txt")).unwrap(),
        fs::metadata(restored.join("hardlink.txt")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn our_chunks_are_restics_chunks() {
    // restic backing up the same data into our repository must find every data blob
    // already there: same chunk boundaries, same ids, same deduplication
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    let t = init(&tmp.path().join("repo"));
    run_backup(&t, &src);
    let out = restic(
        &["backup", "--json", "--host", "other", src.to_str().unwrap()],
        &t.dir,
    );
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .expect("restic prints a summary");
    assert_eq!(
        summary["data_blobs"], 0,
        "restic found new data blobs: {summary}"
    );
}

#[test]
fn rustic_core_checks_what_we_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    let t = init(&tmp.path().join("repo"));
    run_backup(&t, &src);
    let repo = open(&t.dir).ctx.open_rustic().unwrap();
    let check = repo.check(CheckOptions::default().read_data(true)).unwrap();
    assert!(check.is_ok().is_ok(), "rustic_core check: {check:?}");
}

#[test]
fn we_restore_what_restic_wrote_and_what_we_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    // restic's own repository, written by restic
    let rdir = tmp.path().join("restic-repo");
    restic(&["init"], &rdir);
    restic(&["backup", src.to_str().unwrap()], &rdir);
    let t = open(&rdir);
    let snap = files::load_snapshots(&t.ctx.store, &t.ctx.crypto)
        .unwrap()
        .remove(0);
    let target = tmp.path().join("from-restic");
    restore_into(&t, &snap.tree, &target);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(snapshot_of(&src), snapshot_of(&restored));

    // and our own backup, restored by us, with times and hard links
    let t = init(&tmp.path().join("repo"));
    let (snap, _) = run_backup(&t, &src);
    let target = tmp.path().join("from-us");
    let stats = restore_into(&t, &snap.tree, &target);
    assert_eq!(
        stats.bytes,
        (40 << 20) + fs::metadata(src.join("a/b/text.txt")).unwrap().len() + 13
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(snapshot_of(&src), snapshot_of(&restored));
    for f in ["big.bin", "a/b/text.txt", "a/b/c/small.txt"] {
        let (x, y) = (
            fs::metadata(src.join(f)).unwrap(),
            fs::metadata(restored.join(f)).unwrap(),
        );
        assert_eq!(
            (x.mtime(), x.mtime_nsec()),
            (y.mtime(), y.mtime_nsec()),
            "{f}"
        );
    }
    let (a, b) = (
        fs::metadata(restored.join("a/b/c/small.txt")).unwrap(),
        fs::metadata(restored.join("hardlink.txt")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn unchanged_backup_reuses_everything_and_changes_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    let t = init(&tmp.path().join("repo"));
    let (first, _) = run_backup(&t, &src);
    let packs = count(&t.dir, FileType::Pack);

    let t = open(&t.dir);
    let (second, stats) = run_backup(&t, &src);
    assert_eq!(stats.packs_written, 0);
    assert_eq!(count(&t.dir, FileType::Pack), packs);
    assert_eq!(first.tree, second.tree, "same data, same tree");
    assert_eq!(second.parent, Some(first.id));
    let sum = second.summary.as_ref().unwrap();
    assert_eq!(sum.files_new + sum.files_changed, 0);

    fs::write(src.join("a/b/c/small.txt"), b"changed\n").unwrap();
    fs::write(src.join("new.txt"), b"new file\n").unwrap();
    let t = open(&t.dir);
    let (third, stats) = run_backup(&t, &src);
    assert_ne!(third.tree, second.tree);
    assert!(stats.packs_written >= 2);
    let sum = third.summary.as_ref().unwrap();
    assert_eq!(
        (sum.files_new, sum.files_changed),
        (1, 2),
        "new.txt; small.txt and its hard link"
    );
    let out = restic(&["check", "--read-data"], &t.dir);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));
}

/// Fails every pack write after the first `ok` ones, like a store that goes away.
#[derive(Debug)]
struct FailingPacks {
    inner: LocalStore,
    ok: usize,
    packs: AtomicUsize,
}

impl ObjectStore for FailingPacks {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<(), StoreError> {
        self.inner.create()
    }
    fn check_root(&self) -> Result<(), StoreError> {
        self.inner.check_root()
    }
    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.list(dir)
    }
    fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(path)
    }
    fn get(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        self.inner.get(path, range)
    }
    fn put(&self, path: &str, data: Vec<Bytes>) -> Result<(), StoreError> {
        if path.starts_with("data/") && self.packs.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(StoreError::new(
                super::backend::StoreErrorKind::Other,
                "PUT",
                path,
                "injected failure",
            ));
        }
        self.inner.put(path, data)
    }
    fn delete(&self, path: &str) -> Result<(), StoreError> {
        self.inner.delete(path)
    }
}

#[test]
fn failed_upload_leaves_no_snapshot_and_a_consistent_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    // more data than one 16 MiB pack, so a pack is written before the failure
    fs::write(src.join("more.bin"), pseudo_random(24 << 20, 99)).unwrap();
    let dir = tmp.path().join("repo");
    init(&dir);
    let failing = Arc::new(FailingPacks {
        inner: LocalStore::new(&dir),
        ok: 1,
        packs: AtomicUsize::new(0),
    });
    let t = open_with(&dir, failing);
    let paths = vec![src.clone()];
    let source = LocalSource::new(
        LocalSourceSaveOptions::default(),
        &Excludes::default(),
        &LocalSourceFilterOptions::default(),
        &paths,
    )
    .unwrap();
    let snap = SnapshotOptions::default().to_snapshot().unwrap();
    let err = backup(&t.ctx, &source, &paths, snap, &BackupOptions::default())
        .expect_err("the injected failure must fail the backup");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(
        count(&dir, FileType::Snapshot),
        0,
        "no snapshot after a failure"
    );
    assert_eq!(count(&dir, FileType::Pack), 1);
    assert_eq!(
        count(&dir, FileType::Index),
        1,
        "the written pack is indexed"
    );
    let out = restic(&["check", "--read-data"], &dir);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors were found"));

    // the next backup succeeds, reusing the indexed pack
    let t = open(&dir);
    let (_, stats) = run_backup(&t, &src);
    assert!(stats.packs_written >= 2);
    restic(&["check", "--read-data"], &dir);
    let target = tmp.path().join("restore");
    restic(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        &dir,
    );
    assert_eq!(
        snapshot_of(&src),
        snapshot_of(&target.join(src.strip_prefix("/").unwrap()))
    );
}

#[test]
fn command_stream_is_committed_only_when_the_caller_says_so() {
    use rustic_core::{ChildStdoutSource, CommandInput};
    let tmp = tempfile::tempdir().unwrap();
    let t = init(&tmp.path().join("repo"));
    let dump = |script: &str| {
        let cmd = CommandInput::from(vec!["sh".to_string(), "-c".to_string(), script.to_string()]);
        ChildStdoutSource::new(&cmd, PathBuf::from("db.sql")).unwrap()
    };
    let snap = || SnapshotOptions::default().to_snapshot().unwrap();
    let paths = [PathBuf::from("db.sql")];

    // a dump that fails halfway: data may be stored, but no snapshot is written
    let src = dump("yes 'INSERT INTO t VALUES (1);' | head -c 3000000; exit 3");
    let pending =
        super::backup::prepare(&t.ctx, &src, &paths, snap(), &BackupOptions::default()).unwrap();
    assert!(src.finish().is_err(), "exit code 3 must be reported");
    drop(pending);
    assert_eq!(count(&t.dir, FileType::Snapshot), 0);

    // a dump that succeeds: one file of the stream's bytes, committed
    let src = dump("yes 'INSERT INTO t VALUES (2);' | head -c 30000000");
    let pending =
        super::backup::prepare(&t.ctx, &src, &paths, snap(), &BackupOptions::default()).unwrap();
    src.finish().unwrap();
    let (_, stats) = pending.commit().unwrap();
    assert!(stats.skipped.is_empty());
    let out = restic(&["dump", "latest", "/db.sql"], &t.dir);
    assert_eq!(out.stdout.len(), 30_000_000);
    assert!(out.stdout.starts_with(b"INSERT INTO t VALUES (2);\nINSERT"));
    restic(&["check", "--read-data"], &t.dir);
}

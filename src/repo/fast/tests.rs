//! Interop and safety tests of the hot path against real tools: Debian's `restic`
//! (list, `check --read-data`, restore byte-identically, chunk compatibility, restoring
//! what restic wrote) and rustic_core (reads back and checks what we wrote). restic must
//! be installed (`apt-get install restic`); the tests fail, not skip, without it.

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
    BytesList, CheckOptions, ConfigOptions, Credentials, Excludes, FileType, Id, KeyOptions,
    LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, OpenStatus, ReadBackend,
    Repository, RepositoryBackends, RepositoryOptions, RusticResult, SnapshotOptions, WriteBackend,
};

use super::{
    backup::{BackupOptions, backup},
    local::LocalDir,
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
    be: Arc<dyn WriteBackend>,
    repo: Repository<OpenStatus>,
}

fn open(dir: &Path) -> TestRepo {
    let be: Arc<dyn WriteBackend> = Arc::new(LocalDir::new(dir).with_sync(false));
    open_with(dir, be)
}

fn open_with(dir: &Path, be: Arc<dyn WriteBackend>) -> TestRepo {
    let backends = RepositoryBackends::new(be.clone(), None);
    let repo = Repository::new(&RepositoryOptions::default().no_cache(true), &backends)
        .unwrap()
        .open(&Credentials::password(PASSWORD))
        .unwrap();
    TestRepo {
        dir: dir.to_path_buf(),
        be,
        repo,
    }
}

fn init(dir: &Path) -> TestRepo {
    let be: Arc<dyn WriteBackend> = Arc::new(LocalDir::new(dir).with_sync(false));
    let backends = RepositoryBackends::new(be, None);
    Repository::new(&RepositoryOptions::default().no_cache(true), &backends)
        .unwrap()
        .init(
            &Credentials::password(PASSWORD),
            &KeyOptions::default(),
            &ConfigOptions::default(),
        )
        .unwrap();
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
    backup(
        &t.repo,
        &t.be,
        &source,
        &paths,
        snap,
        &BackupOptions::default(),
    )
    .unwrap()
}

fn count(dir: &Path, tpe: FileType) -> usize {
    LocalDir::new(dir).list(tpe).unwrap().len()
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
fn rustic_core_reads_back_and_checks_what_we_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_source(&src);
    let t = init(&tmp.path().join("repo"));
    run_backup(&t, &src);
    let repo = open(&t.dir).repo;
    let check = repo.check(CheckOptions::default().read_data(true)).unwrap();
    assert!(check.is_ok().is_ok(), "rustic_core check: {check:?}");
    let repo = repo.to_indexed().unwrap();
    let node = repo.node_from_snapshot_path("latest", |_| true).unwrap();
    let ls = rustic_core::LsOptions::default().recursive(true);
    let target = tmp.path().join("rustic-restore");
    let dest = rustic_core::LocalDestination::new(target.to_str().unwrap(), true, false).unwrap();
    let ropts = rustic_core::RestoreOptions::default();
    let plan = repo
        .prepare_restore(&ropts, repo.ls(&node, &ls).unwrap(), &dest, false)
        .unwrap();
    repo.restore(plan, &ropts, repo.ls(&node, &ls).unwrap(), &dest)
        .unwrap();
    let restored = target.join(src.strip_prefix("/").unwrap());
    let (a, b) = (snapshot_of(&src), snapshot_of(&restored));
    // rustic_core restores the same bytes and links; compare content and kind
    let strip = |m: BTreeMap<PathBuf, (String, Vec<u8>, u32)>| {
        m.into_iter()
            .map(|(k, (t, c, _))| (k, (t, c)))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(strip(a), strip(b));
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
    let snap = t.repo.get_snapshot_from_str("latest", |_| true).unwrap();
    let target = tmp.path().join("from-restic");
    restore(
        &t.repo,
        &t.be,
        &snap.tree,
        "",
        &target,
        &RestoreOptions::default(),
    )
    .unwrap();
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(snapshot_of(&src), snapshot_of(&restored));

    // and our own backup, restored by us, with times and hard links
    let t = init(&tmp.path().join("repo"));
    let (snap, _) = run_backup(&t, &src);
    let target = tmp.path().join("from-us");
    let stats = restore(
        &t.repo,
        &t.be,
        &snap.tree,
        "",
        &target,
        &RestoreOptions::default(),
    )
    .unwrap();
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
struct FailingPacks {
    inner: LocalDir,
    ok: usize,
    packs: AtomicUsize,
}

impl ReadBackend for FailingPacks {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.inner.read_full(tpe, id)
    }
    fn read_partial(&self, tpe: FileType, id: &Id, c: bool, o: u32, l: u32) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, c, o, l)
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for FailingPacks {
    fn write_bytes(&self, tpe: FileType, id: &Id, c: bool, data: BytesList) -> RusticResult<()> {
        if tpe == FileType::Pack && self.packs.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(rustic_core::RusticError::new(
                rustic_core::ErrorKind::Backend,
                "injected failure",
            ));
        }
        self.inner.write_bytes(tpe, id, c, data)
    }
    fn remove(&self, tpe: FileType, id: &Id, c: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, c)
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
        inner: LocalDir::new(&dir).with_sync(false),
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
    let err = backup(
        &t.repo,
        &t.be,
        &source,
        &paths,
        snap,
        &BackupOptions::default(),
    )
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
    let pending = super::backup::prepare(
        &t.repo,
        &t.be,
        &src,
        &paths,
        snap(),
        &BackupOptions::default(),
    )
    .unwrap();
    assert!(src.finish().is_err(), "exit code 3 must be reported");
    drop(pending);
    assert_eq!(count(&t.dir, FileType::Snapshot), 0);

    // a dump that succeeds: one file of the stream's bytes, committed
    let src = dump("yes 'INSERT INTO t VALUES (2);' | head -c 30000000");
    let pending = super::backup::prepare(
        &t.repo,
        &t.be,
        &src,
        &paths,
        snap(),
        &BackupOptions::default(),
    )
    .unwrap();
    src.finish().unwrap();
    let (_, stats) = pending.commit(&*t.be).unwrap();
    assert!(stats.skipped.is_empty());
    let out = restic(&["dump", "latest", "/db.sql"], &t.dir);
    assert_eq!(out.stdout.len(), 30_000_000);
    assert!(out.stdout.starts_with(b"INSERT INTO t VALUES (2);\nINSERT"));
    restic(&["check", "--read-data"], &t.dir);
}

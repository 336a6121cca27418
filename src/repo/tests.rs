//! Facade tests on a local-directory repository (real rustic_core, real files; no services).

use std::{fs, io::Read, path::Path};

use super::*;

const PW: &str = "Zq3-vN8#pL2x!rT6wY9@kM4s";

fn new_repo(dir: &Path) -> Repo {
    let opts = RepoOptions::new(Storage::Local(dir.join("repo")));
    Repo::init(
        &opts,
        &Secret::new(PW),
        &InitOptions {
            kdf: kdf::RANDOM_SECRET,
            compression: None,
        },
    )
    .unwrap()
}

fn opts(dir: &Path) -> RepoOptions {
    RepoOptions::new(Storage::Local(dir.join("repo")))
}

fn write_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    fs::write(
        root.join("sub/b.bin"),
        (0..200_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(root.join("sub/deeper/c.log"), b"skip me").unwrap();
    std::os::unix::fs::symlink("does-not-exist", root.join("dangling")).unwrap();
}

fn sh_stream(script: &str) -> Box<dyn Read + Send> {
    Box::new(CommandStream::spawn("sh", &["-c".into(), script.into()], &[]).unwrap())
}

#[test]
fn init_open_and_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    new_repo(dir.path());
    // The layout restic expects.
    for p in [
        "config",
        "keys",
        "snapshots",
        "index",
        "data/00",
        "data/ff",
        "locks",
    ] {
        assert!(dir.path().join("repo").join(p).exists(), "{p}");
    }
    let again = Repo::init(&opts(dir.path()), &Secret::new(PW), &InitOptions::default());
    assert!(matches!(again, Err(Error::AlreadyExists(_))), "{again:?}");
    Repo::open(&opts(dir.path()), &Secret::new(PW)).unwrap();
    let err = Repo::open(&opts(dir.path()), &Secret::new("not the password")).unwrap_err();
    assert_eq!(err.category(), "WrongPassword", "{err}");
    assert!(!err.to_string().contains("not the password"));
    let missing = RepoOptions::new(Storage::Local(dir.path().join("nothing")));
    let err = Repo::open(&missing, &Secret::new(PW)).unwrap_err();
    assert_eq!(err.category(), "RepositoryNotFound", "{err}");
}

#[test]
fn key_file_carries_chosen_kdf_params_and_weak_presets_are_guarded() {
    let dir = tempfile::tempdir().unwrap();
    new_repo(dir.path());
    let keys: Vec<_> = fs::read_dir(dir.path().join("repo/keys"))
        .unwrap()
        .collect();
    assert_eq!(keys.len(), 1);
    let key: serde_json::Value =
        serde_json::from_slice(&fs::read(keys[0].as_ref().unwrap().path()).unwrap()).unwrap();
    assert_eq!(key["N"], 4096);
    assert_eq!(key["r"], 8);
    assert_eq!(key["p"], 1);
    // The default for typed passwords keeps restic's key memory (32 MiB): a command's peak
    // memory must not be its key derivation (docs/engine.md, "Key derivation").
    let typed = tempfile::tempdir().unwrap();
    Repo::init(
        &opts(typed.path()),
        &Secret::new("correct horse battery"),
        &InitOptions::default(),
    )
    .unwrap();
    let key = fs::read_dir(typed.path().join("repo/keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let key: serde_json::Value = serde_json::from_slice(&fs::read(key.path()).unwrap()).unwrap();
    assert_eq!(
        (&key["N"], &key["r"], &key["p"]),
        (&32768.into(), &8.into(), &2.into())
    );
    assert!(kdf::check_random_secret(PW).is_ok());
    assert!(kdf::check_random_secret("password123").is_err());
    assert!(kdf::check_random_secret("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
    assert!(kdf::check_random_secret("3f9a1c0b7e2d4a6f8b1c3e5d7f9a0b2c").is_ok());
}

#[test]
fn backup_restore_dump_with_excludes_tags_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = dir.path().join("src");
    write_tree(&src);
    let out = repo
        .backup_paths(
            &PathBackup {
                paths: vec![src.clone()],
                excludes: vec!["*.log".into()],
                ..PathBackup::default()
            },
            &SnapshotMeta {
                host: Some("host-a".into()),
                tags: vec!["t1".into(), "t2".into()],
            },
        )
        .unwrap();
    let sn = &out.snapshot;
    assert_eq!(sn.hostname, "host-a");
    assert_eq!(sn.tags, vec!["t1", "t2"]);
    assert_eq!(
        sn.paths,
        vec![fs::canonicalize(&src).unwrap().display().to_string()]
    );

    let listed = repo.snapshots(&SnapshotFilter::default()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, sn.id);

    // Whole restore: the tree is recreated below the target with its absolute path.
    let target = dir.path().join("restore");
    repo.restore("latest", &SnapshotFilter::default(), "", &target, false)
        .unwrap();
    let restored = target.join(fs::canonicalize(&src).unwrap().strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(
        fs::read(restored.join("sub/b.bin")).unwrap(),
        fs::read(src.join("sub/b.bin")).unwrap()
    );
    assert!(
        !restored.join("sub/deeper/c.log").exists(),
        "excluded file restored"
    );
    assert_eq!(
        fs::read_link(restored.join("dangling")).unwrap(),
        Path::new("does-not-exist")
    );

    // Sub-path restore puts the directory's content into the target.
    let sub_target = dir.path().join("restore-sub");
    let sub_path = format!("{}/sub", fs::canonicalize(&src).unwrap().display());
    repo.restore(
        &sn.short_id,
        &SnapshotFilter::default(),
        &sub_path,
        &sub_target,
        false,
    )
    .unwrap();
    assert!(sub_target.join("b.bin").exists());
    assert!(!sub_target.join("a.txt").exists());

    // A file's path restores the file into the target directory.
    let file_target = dir.path().join("restore-file");
    let file_path = format!("{}/a.txt", fs::canonicalize(&src).unwrap().display());
    repo.restore(
        &sn.id,
        &SnapshotFilter::default(),
        &file_path,
        &file_target,
        false,
    )
    .unwrap();
    assert_eq!(fs::read(file_target.join("a.txt")).unwrap(), b"alpha\n");

    // Dump one file.
    let mut buf = Vec::new();
    let n = repo
        .dump(
            &sn.id,
            &SnapshotFilter::default(),
            &format!("{}/a.txt", fs::canonicalize(&src).unwrap().display()),
            &mut buf,
        )
        .unwrap();
    assert_eq!((n, buf.as_slice()), (6, &b"alpha\n"[..]));
    let err = repo
        .dump(
            "latest",
            &SnapshotFilter::default(),
            "/no/such/file",
            &mut Vec::new(),
        )
        .unwrap_err();
    assert_eq!(err.category(), "NotFound", "{err}");
    let err = repo
        .restore("deadbeef", &SnapshotFilter::default(), "", &target, false)
        .unwrap_err();
    assert_eq!(err.category(), "NotFound", "{err}");

    let report = repo
        .check(&CheckRequest {
            read_data: true,
            read_data_subset: None,
        })
        .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    // No lock is left behind by any of the above.
    assert!(repo.locks().unwrap().is_empty());
}

#[test]
fn second_backup_uses_the_parent_and_adds_little() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = dir.path().join("src");
    write_tree(&src);
    let req = PathBackup {
        paths: vec![src.clone()],
        ..PathBackup::default()
    };
    let first = repo
        .backup_paths(&req, &SnapshotMeta::default())
        .unwrap()
        .snapshot;
    let second = repo
        .backup_paths(&req, &SnapshotMeta::default())
        .unwrap()
        .snapshot;
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.tree, first.tree);
    let stats = second.summary.unwrap();
    assert_eq!(stats.files_new + stats.files_changed, 0);
    assert_eq!(stats.data_added, 0);
}

#[test]
fn stream_backup_commits_only_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let ok = repo
        .backup_stream(
            StreamBackup {
                path: "dump/data.sql".into(),
                reader: sh_stream("printf 'line1\\nline2\\n'"),
                extra_files: vec![ExtraFile {
                    path: "meta.json".into(),
                    content: Box::new(|| Ok(b"{\"ok\":true}".to_vec())),
                }],
            },
            &SnapshotMeta {
                host: None,
                tags: vec!["stream".into()],
            },
        )
        .unwrap();
    assert_eq!(ok.snapshot.paths, vec!["dump/data.sql"]);
    assert_eq!(
        repo.read_file("latest", "dump/data.sql").unwrap(),
        b"line1\nline2\n"
    );
    assert_eq!(
        repo.read_file("latest", "meta.json").unwrap(),
        b"{\"ok\":true}"
    );
    // The tree records the real sizes (rustic_core alone would record 0, and restic would
    // restore an empty file): a restore reproduces the content and the size.
    let target = dir.path().join("stream-restore");
    repo.restore("latest", &SnapshotFilter::default(), "", &target, false)
        .unwrap();
    assert_eq!(
        fs::read(target.join("dump/data.sql")).unwrap(),
        b"line1\nline2\n"
    );
    assert_eq!(
        fs::read(target.join("meta.json")).unwrap(),
        b"{\"ok\":true}"
    );
    let report = repo
        .check(&CheckRequest {
            read_data: true,
            read_data_subset: None,
        })
        .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");

    // A command failing halfway: an error naming the exit code and stderr, and no snapshot.
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let called2 = called.clone();
    let err = repo
        .backup_stream(
            StreamBackup {
                path: "dump/data.sql".into(),
                reader: sh_stream("head -c 3000000 /dev/urandom; echo 'pg_dump: error: connection lost' >&2; exit 2"),
                extra_files: vec![ExtraFile {
                    path: "meta.json".into(),
                    content: Box::new(move || {
                        called2.store(true, std::sync::atomic::Ordering::SeqCst);
                        Ok(b"{}".to_vec())
                    }),
                }],
            },
            &SnapshotMeta::default(),
        )
        .unwrap_err();
    assert_eq!(err.category(), "SourceCommandFailed", "{err}");
    let msg = err.to_string();
    assert!(msg.contains("exited with code 2"), "{msg}");
    assert!(msg.contains("connection lost"), "{msg}");
    assert!(
        !called.load(std::sync::atomic::Ordering::SeqCst),
        "metadata produced for a failed stream"
    );
    assert_eq!(repo.snapshots(&SnapshotFilter::default()).unwrap().len(), 1);
    // The orphaned data is harmless: check passes (at most warnings) and prune removes it.
    let report = repo.check(&CheckRequest::default()).unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    repo.prune(false).unwrap();
    let report = repo
        .check(&CheckRequest {
            read_data: true,
            read_data_subset: None,
        })
        .unwrap();
    assert!(
        report.errors.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
    assert!(repo.locks().unwrap().is_empty());
}

#[test]
fn stream_extra_file_failure_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let err = repo
        .backup_stream(
            StreamBackup {
                path: "a".into(),
                reader: sh_stream("echo data"),
                extra_files: vec![ExtraFile {
                    path: "b".into(),
                    content: Box::new(|| Err("row counts unavailable".into())),
                }],
            },
            &SnapshotMeta::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("row counts unavailable"), "{err}");
    assert!(
        repo.snapshots(&SnapshotFilter::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn stream_paths_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    for (main, extra) in [("../x", None), ("/abs", None), ("z", Some("a")), ("", None)] {
        let req = StreamBackup {
            path: main.into(),
            reader: Box::new(std::io::empty()),
            extra_files: extra
                .map(|e: &str| ExtraFile {
                    path: e.into(),
                    content: Box::new(|| Ok(vec![])),
                })
                .into_iter()
                .collect(),
        };
        let err = repo
            .backup_stream(req, &SnapshotMeta::default())
            .unwrap_err();
        assert_eq!(err.category(), "InvalidInput", "{main}: {err}");
    }
}

#[test]
fn forget_plan_then_execute_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        fs::write(src.join("f"), format!("version {i} ").repeat(10_000)).unwrap();
        ids.push(
            repo.backup_paths(
                &PathBackup {
                    paths: vec![src.clone()],
                    ..PathBackup::default()
                },
                &SnapshotMeta::default(),
            )
            .unwrap()
            .snapshot
            .id,
        );
    }
    let policy = RetentionPolicy {
        keep_last: Some(2),
        ..RetentionPolicy::default()
    };
    let plan = repo
        .plan_forget(&policy, GroupBy::default(), &SnapshotFilter::default())
        .unwrap();
    let mut remove = plan.remove_ids();
    remove.sort();
    let mut want = ids[..2].to_vec();
    want.sort();
    assert_eq!(remove, want);
    // Planning changed nothing.
    assert_eq!(repo.snapshots(&SnapshotFilter::default()).unwrap().len(), 4);
    let dry = repo.prune(true).unwrap();
    assert!(dry.dry_run);
    repo.forget(&plan).unwrap();
    let left: Vec<String> = repo
        .snapshots(&SnapshotFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ids[2..].to_vec());
    let pruned = repo.prune(false).unwrap();
    assert!(
        pruned.bytes_removed > 0 || pruned.packs_repacked > 0,
        "{pruned:?}"
    );
    let report = repo
        .check(&CheckRequest {
            read_data: true,
            read_data_subset: None,
        })
        .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    // The kept snapshots still restore.
    let target = dir.path().join("r");
    repo.restore(&ids[3], &SnapshotFilter::default(), "", &target, false)
        .unwrap();
}

#[test]
fn exclusive_operations_respect_foreign_locks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let held = repo.lock(false).unwrap();
    let err = repo.prune(true).unwrap_err();
    assert_eq!(err.category(), "RepositoryLocked", "{err}");
    assert_eq!(err.retry_class(), RetryClass::Transient);
    // Shared operations still run next to a shared lock.
    repo.snapshots(&SnapshotFilter::default()).unwrap();
    drop(held);
    repo.prune(true).unwrap();
}

#[test]
fn check_subset_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let err = repo
        .check(&CheckRequest {
            read_data: false,
            read_data_subset: Some("lots".into()),
        })
        .unwrap_err();
    assert_eq!(err.category(), "InvalidInput");
    repo.check(&CheckRequest {
        read_data: false,
        read_data_subset: Some("10%".into()),
    })
    .unwrap();
}

#[test]
fn secrets_do_not_print() {
    let s = Secret::new("hunter2-hunter2");
    assert_eq!(format!("{s} {s:?}"), "*** ***");
}

#[test]
fn unreadable_source_files_are_reported_not_silently_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("fine.txt"), b"fine").unwrap();
    // Reading /proc/self/mem from offset 0 fails with EIO: an unreadable source file.
    let out = repo
        .backup_paths(
            &PathBackup {
                paths: vec![src.clone(), "/proc/self/mem".into()],
                ..PathBackup::default()
            },
            &SnapshotMeta::default(),
        )
        .unwrap();
    assert!(
        out.skipped.iter().any(|s| s.contains("/proc/")),
        "{:?}",
        out.skipped
    );
    // The readable part is in the snapshot.
    let mut buf = Vec::new();
    let path = format!("{}/fine.txt", fs::canonicalize(&src).unwrap().display());
    repo.dump(
        &out.snapshot.id,
        &SnapshotFilter::default(),
        &path,
        &mut buf,
    )
    .unwrap();
    assert_eq!(buf, b"fine");
}

#[test]
fn a_progress_sink_sees_the_bytes_of_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    new_repo(dir.path());
    let src = dir.path().join("src");
    write_tree(&src);
    let sink = Arc::new(progress::ProgressSink::default());
    let mut o = opts(dir.path());
    o.progress_sink = Some(sink.clone());
    let repo = Repo::open(&o, &Secret::new(PW)).unwrap();
    repo.backup_paths(
        &PathBackup {
            paths: vec![src],
            ..PathBackup::default()
        },
        &SnapshotMeta::default(),
    )
    .unwrap();
    let done = sink.done.load(std::sync::atomic::Ordering::Relaxed);
    let total = sink.total.load(std::sync::atomic::Ordering::Relaxed);
    // a.txt (6) + b.bin (200,000) + c.log (7) bytes of content, plus the symlink, whose
    // size rustic counts as the length of its target ("does-not-exist", 14).
    assert_eq!(total, 200_027, "the scan's total");
    // Only file content is processed as bytes, so `done` stops just short of the total.
    assert_eq!(done, 200_013, "every content byte counted once");
}

#[test]
fn the_repository_id_is_stable_across_opens_and_distinct_per_repository() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = new_repo(a.path());
    assert_eq!(first.id().len(), 64, "a full hex ID");
    let again = Repo::open(&opts(a.path()), &Secret::new(PW)).unwrap();
    assert_eq!(first.id(), again.id());
    assert_ne!(first.id(), new_repo(b.path()).id());
}

//! Corruption named, contained and healed: one byte flipped in a data pack is found by
//! `check --read-data` (pack, blob, the file that needs it, what to do), makes a restore
//! fail with `RepositoryCorrupted` naming the pack and the file, is salvaged by `repair
//! packs`, and the next backup of the same files stores the lost data again, which heals
//! the older snapshot too. restic 0.14 agrees at both ends.

use std::{fs, path::Path, process::Command};

use rustic_core::FileType;

use super::{
    CheckRequest, InitOptions, PathBackup, Repo, RepoOptions, Secret, SnapshotFilter, SnapshotMeta,
    Storage, format::index::RepoIndex, kdf,
};

const PASSWORD: &str = "corruption-test-password-of-some-length";

fn restic_check(repo: &Path) -> (bool, String) {
    let out = Command::new("restic")
        .args(["check", "--read-data"])
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .expect("these tests need Debian's restic 0.14 (apt-get install restic)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
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

#[test]
fn a_flipped_byte_is_named_contained_and_healed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let precious = pseudo_random(3 << 20, 11);
    fs::write(src.join("sub/precious.bin"), &precious).unwrap();
    fs::write(src.join("other.txt"), "other file\n".repeat(1000)).unwrap();
    let repo_dir = tmp.path().join("repo");
    let opts = RepoOptions::new(Storage::Local(repo_dir.clone()));
    let init = InitOptions {
        kdf: kdf::RANDOM_SECRET,
        compression: None,
    };
    let repo = Repo::init(&opts, &Secret::new(PASSWORD), &init).unwrap();
    let req = PathBackup {
        paths: vec![src.clone()],
        ..PathBackup::default()
    };
    let first = repo.backup_paths(&req, &SnapshotMeta::default()).unwrap();

    // flip one byte of the first blob of precious.bin
    let ctx = &repo.ctx;
    let index = RepoIndex::load(&ctx.store, &ctx.crypto).unwrap();
    let blob = super::format::hash(&precious[..]);
    let _ = blob;
    let node_blob = {
        // the first chunk of the file is its first blob; find it by content
        let cdc = super::backup::chunker_for(&ctx.config).unwrap();
        let mut buf = Vec::new();
        let mut r = super::backup::chunker::ChunkReader::new(&cdc, &precious[..], &mut buf);
        super::format::hash(r.next_chunk().unwrap().unwrap())
    };
    let loc = *index.data.get(&node_blob).expect("the blob is indexed");
    let pack_hex = loc.pack.to_hex().as_str().to_string();
    let pack_path = repo_dir.join(super::format::object_path(FileType::Pack, &loc.pack));
    let mut bytes = fs::read(&pack_path).unwrap();
    bytes[loc.offset as usize + 100] ^= 0x01;
    fs::write(&pack_path, &bytes).unwrap();
    assert!(!restic_check(&repo_dir).0, "restic must see the damage too");

    // structure alone looks fine; reading the data names the pack, the blob and the file
    let structure = repo.check(&CheckRequest::default()).unwrap();
    assert!(structure.errors.is_empty(), "{:?}", structure.errors);
    let report = repo
        .check(&CheckRequest {
            read_data: true,
            read_data_subset: None,
        })
        .unwrap();
    assert_eq!(report.damaged_packs, std::slice::from_ref(&pack_hex));
    let all = report.errors.join("\n");
    assert!(all.contains(&pack_hex), "{all}");
    assert!(all.contains("sub/precious.bin"), "{all}");
    assert!(!all.contains("other.txt"), "{all}");
    assert!(
        report
            .hints
            .iter()
            .any(|h| h.contains("lifeboat repair packs")),
        "{:?}",
        report.hints
    );
    assert!(report.hints.iter().all(|h| !h.contains("rustic")));

    // a restore stops at the damage with a named, permanent error
    let err = repo
        .restore(
            &first.snapshot.id,
            &SnapshotFilter::default(),
            "",
            &tmp.path().join("r1"),
            false,
        )
        .unwrap_err();
    assert_eq!(err.category(), "RepositoryCorrupted", "{err}");
    assert_eq!(err.retry_class(), super::RetryClass::Permanent);
    let msg = err.to_string();
    assert!(
        msg.contains(&pack_hex) && msg.contains("precious.bin"),
        "{msg}"
    );

    // repair salvages the rest of the pack and drops it
    let repaired = repo.repair_packs(&[]).unwrap();
    assert_eq!(repaired.packs, std::slice::from_ref(&pack_hex));
    assert_eq!(repaired.lost.len(), 1, "{repaired:?}");
    assert!(repaired.salvaged > 0, "{repaired:?}");
    assert!(
        repaired.affected.iter().any(|f| f.contains("precious.bin")),
        "{repaired:?}"
    );
    assert!(!pack_path.exists());
    // now the snapshot's need for the lost blob shows in the structure check
    let after = repo.check(&CheckRequest::default()).unwrap();
    assert!(
        after
            .errors
            .iter()
            .any(|e| e.contains("precious.bin") && e.contains("in no index")),
        "{:?}",
        after.errors
    );

    // the next backup reads the file again (its data is in no index) and heals the old
    // snapshot: same content, same blob id
    repo.backup_paths(&req, &SnapshotMeta::default()).unwrap();
    let healed = repo
        .check(&CheckRequest {
            read_data: true,
            read_data_subset: None,
        })
        .unwrap();
    assert!(healed.errors.is_empty(), "{:?}", healed.errors);
    let target = tmp.path().join("r2");
    repo.restore(
        &first.snapshot.id,
        &SnapshotFilter::default(),
        "",
        &target,
        false,
    )
    .unwrap();
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(restored.join("sub/precious.bin")).unwrap(),
        precious
    );
    let (ok, out) = restic_check(&repo_dir);
    assert!(ok, "{out}");
}

#[test]
fn a_missing_pack_and_an_unreadable_index_file_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), pseudo_random(100_000, 3)).unwrap();
    let repo_dir = tmp.path().join("repo");
    let opts = RepoOptions::new(Storage::Local(repo_dir.clone()));
    let init = InitOptions {
        kdf: kdf::RANDOM_SECRET,
        compression: None,
    };
    let repo = Repo::init(&opts, &Secret::new(PASSWORD), &init).unwrap();
    let req = PathBackup {
        paths: vec![src.clone()],
        ..PathBackup::default()
    };
    repo.backup_paths(&req, &SnapshotMeta::default()).unwrap();
    let ctx = &repo.ctx;
    let index = RepoIndex::load(&ctx.store, &ctx.crypto).unwrap();
    let data_pack = index.data.values().next().unwrap().pack;
    fs::remove_file(repo_dir.join(super::format::object_path(FileType::Pack, &data_pack))).unwrap();
    let report = repo.check(&CheckRequest::default()).unwrap();
    let all = report.errors.join("\n");
    assert!(
        all.contains("missing") && all.contains(data_pack.to_hex().as_str()),
        "{all}"
    );
    assert_eq!(
        report.damaged_packs,
        [data_pack.to_hex().as_str().to_string()]
    );
    // an index file that does not decrypt is named, not a crash
    let idx = fs::read_dir(repo_dir.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    fs::write(idx.path(), b"garbage").unwrap();
    let report = repo.check(&CheckRequest::default()).unwrap();
    assert!(
        report.errors.iter().any(|e| e.starts_with("index/")),
        "{:?}",
        report.errors
    );
}

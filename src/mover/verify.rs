//! `lifeboat mover verify [--read-data-subset S]`: checks a store's repository (its
//! structure, and the data of a subset of its packs), so damage is found on a schedule
//! rather than by the restore that needs the data. The result's `details` carry the
//! counts (`snapshots`, `trees`, `packs`, `packsRead`, `bytesRead`), and on damage the
//! `damagedPacks` and the first `errors`; the failure reason is `RepositoryCorrupted`
//! (no retry helps: the same bytes fail the same way).

use super::{Error, RepoAccess};
use crate::jobs::mover::command::VerifyRepository;
use crate::jobs::result::{MoverResult, RESULT_VERSION};
use crate::repo::{self, CheckRequest, Corruption};

/// Errors listed in the result (the termination message is small).
const ERRORS_LISTED: usize = 5;

fn verify(a: VerifyRepository, access: &RepoAccess) -> Result<MoverResult, Error> {
    let VerifyRepository { read_data_subset } = a;
    let repo = access.open(true)?;
    let report = repo.check(&CheckRequest {
        read_data: false,
        read_data_subset,
    })?;
    let mut details = serde_json::Map::new();
    details.insert("snapshots".into(), report.snapshots.into());
    details.insert("trees".into(), report.trees.into());
    details.insert("packs".into(), report.packs.into());
    details.insert("packsRead".into(), report.packs_read.into());
    details.insert("bytesRead".into(), report.bytes_read.into());
    if report.errors.is_empty() {
        return Ok(MoverResult {
            v: RESULT_VERSION,
            details,
            ..MoverResult::default()
        });
    }
    tracing::warn!(errors = report.errors.len(), damaged_packs = ?report.damaged_packs, "repository damaged");
    let first: Vec<String> = report.errors.iter().take(ERRORS_LISTED).cloned().collect();
    details.insert("errors".into(), report.errors.len().into());
    details.insert("firstErrors".into(), first.clone().into());
    details.insert("damagedPacks".into(), report.damaged_packs.clone().into());
    let failure = repo::Error::Corrupt(Box::new(Corruption {
        object: format!("repository {}", repo.location()),
        problem: format!(
            "check found {} error(s), first: {}; {}",
            report.errors.len(),
            first[0],
            report.hints.first().cloned().unwrap_or_default()
        ),
        pack: report.damaged_packs.first().cloned(),
        files: Vec::new(),
    }));
    let e = Error::from(failure);
    Ok(MoverResult {
        v: RESULT_VERSION,
        failure: Some(super::failure(&e)),
        details,
        ..MoverResult::default()
    })
}

/// Runs `mover verify`; damage ends the command with `RepositoryCorrupted`.
pub(crate) fn run(a: VerifyRepository, access: &RepoAccess) -> Result<(), Error> {
    let outcome = verify(a, access);
    let failed = outcome
        .as_ref()
        .ok()
        .and_then(|r| r.failure.as_ref())
        .map(|f| f.message.clone());
    super::finish(outcome)?;
    match failed {
        Some(message) => Err(Error::Repo(repo::Error::corrupt("repository", message))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{InitOptions, PathBackup, Repo, RepoOptions, Secret, SnapshotMeta, Storage};

    #[test]
    fn damage_is_reported_as_repository_corrupted_with_the_pack() {
        let tmp = tempfile::tempdir().unwrap();
        let repo_dir = tmp.path().join("repo");
        let pw = "verify-test-password-long-enough-to-be-random";
        std::fs::write(tmp.path().join("pw"), pw).unwrap();
        let repo = Repo::init(
            &RepoOptions::new(Storage::Local(repo_dir.clone())),
            &Secret::new(pw),
            &InitOptions {
                kdf: repo::kdf::RANDOM_SECRET,
                compression: None,
            },
        )
        .unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let data: Vec<u8> = (0..400_000u32)
            .flat_map(|i| (i * 7).to_le_bytes())
            .collect();
        std::fs::write(src.join("f"), &data).unwrap();
        repo.backup_paths(
            &PathBackup {
                paths: vec![src],
                ..PathBackup::default()
            },
            &SnapshotMeta::default(),
        )
        .unwrap();
        let access = RepoAccess {
            repository: Some(repo_dir.display().to_string()),
            password_file: Some(tmp.path().join("pw")),
            no_cache: true,
            quiet: true,
            ..RepoAccess::default()
        };
        let all = || VerifyRepository {
            read_data_subset: Some("100%".into()),
        };
        let ok = verify(all(), &access).unwrap();
        assert!(ok.failure.is_none(), "{ok:?}");
        assert_eq!(ok.details["packsRead"], ok.details["packs"]);
        // the largest pack holds the file's data: flip a byte in it
        let mut packs: Vec<_> = walkdir(&repo_dir.join("data"));
        packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
        let pack = packs.last().unwrap().clone();
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[10] ^= 0x80;
        std::fs::write(&pack, bytes).unwrap();
        let bad = verify(all(), &access).unwrap();
        let f = bad.failure.as_ref().expect("damage is a failure");
        assert_eq!(f.reason, "RepositoryCorrupted");
        let name = pack.file_name().unwrap().to_str().unwrap();
        assert!(f.message.contains(name), "{}", f.message);
        assert_eq!(bad.details["damagedPacks"][0], name);
        assert!(f.message.contains("lifeboat repair packs"), "{}", f.message);
        // a structure-only run does not read the data and finds nothing
        let quick = verify(
            VerifyRepository {
                read_data_subset: None,
            },
            &access,
        )
        .unwrap();
        assert!(quick.failure.is_none());
        assert_eq!(quick.details["packsRead"], 0);
    }

    fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}

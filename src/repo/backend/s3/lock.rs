//! S3 Object Lock for a repository: which objects get a retention and until when, the
//! bucket's lock state, and extending the retention of what the repository still holds.
//!
//! Why every object but lock files: packs, indexes, snapshots, keys and the config are what
//! a restore needs, so deleting or overwriting any of them must be refused; restic's lock
//! files are written and removed by every run, and a retained lock file would only be an
//! undeletable version. On a lock-enabled (hence versioned) bucket a plain DELETE still
//! succeeds: it adds a delete marker and keeps the locked version, which is how prune keeps
//! working; removing a *version* before its retain-until date is what the server refuses.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::{
    Client,
    primitives::DateTime,
    types::{ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode},
};
use futures::{StreamExt, TryStreamExt};

use super::sdk_error;
use crate::repo::backend::{StoreError, StoreErrorKind};

/// Object Lock mode (S3's two retention modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still shorten or remove a retention.
    Governance,
    /// Nobody, the account's root included, can shorten or remove it.
    Compliance,
}

/// The retention every object a repository writes gets: `mode` until `days` after the
/// write (or after the last extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub days: u32,
}

/// The longest retention accepted (S3's own limit is 100 years).
const MAX_DAYS: u32 = 36_500;

impl std::str::FromStr for ObjectLock {
    type Err = String;

    /// `governance:30d` or `compliance:365d`.
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = || format!("{s:?}: expected MODE:DAYSd, e.g. governance:30d or compliance:365d");
        let (mode, days) = s.split_once(':').ok_or_else(hint)?;
        let mode = match mode.to_ascii_lowercase().as_str() {
            "governance" => LockMode::Governance,
            "compliance" => LockMode::Compliance,
            _ => return Err(hint()),
        };
        let days: u32 = days
            .strip_suffix('d')
            .and_then(|d| d.parse().ok())
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(hint)?;
        Ok(Self { mode, days })
    }
}

impl std::fmt::Display for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        };
        write!(f, "{mode}:{}d", self.days)
    }
}

impl ObjectLock {
    fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.days) * 86_400)
    }

    fn s3_mode(&self) -> ObjectLockMode {
        match self.mode {
            LockMode::Governance => ObjectLockMode::Governance,
            LockMode::Compliance => ObjectLockMode::Compliance,
        }
    }
}

/// What one write carries.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Retention {
    pub(super) mode: ObjectLockMode,
    pub(super) until: DateTime,
}

/// The retention of a write of `path` at `now`, if the repository is locked and the
/// object is one that must be kept.
pub(super) fn retention_for(
    lock: Option<&ObjectLock>,
    path: &str,
    now: SystemTime,
) -> Option<Retention> {
    let lock = lock?;
    if path.starts_with("locks/") {
        return None;
    }
    Some(Retention {
        mode: lock.s3_mode(),
        until: DateTime::from(now + lock.period()),
    })
}

/// Whether the bucket has Object Lock enabled.
pub(super) async fn bucket_enabled(client: &Client, bucket: &str) -> Result<bool, StoreError> {
    match client
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            .is_some_and(|e| e.as_str() == "Enabled")),
        Err(e) => {
            let err = sdk_error(bucket, "GET-OBJECT-LOCK", "", e);
            match err.code.as_deref() {
                Some("ObjectLockConfigurationNotFoundError") => Ok(false),
                _ => Err(err),
            }
        }
    }
}

/// What an extension pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extended {
    /// Objects looked at.
    pub objects: u64,
    /// Objects whose retain-until date was moved later.
    pub extended: u64,
}

/// Requests in flight during an extension pass.
const EXTEND_CONCURRENCY: usize = 16;

/// Moves the retain-until date of every current object under `prefix` (but lock files) to
/// `now + days` when less than half the period is left, as kopia's maintenance does: an
/// object still referenced by the repository then never expires while it is referenced,
/// and an object that prune hid (a delete marker) keeps its own date and expires.
/// One GET per object, one PUT per extended object; never shortens a retention.
pub(super) async fn extend(
    client: &Client,
    bucket: &str,
    keys: Vec<(String, String)>,
    lock: &ObjectLock,
    now: SystemTime,
) -> Result<Extended, StoreError> {
    let target = DateTime::from(now + lock.period());
    let renew_before = DateTime::from(now + lock.period() / 2);
    let mode = match lock.mode {
        LockMode::Governance => ObjectLockRetentionMode::Governance,
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
    };
    let objects = keys.len() as u64;
    let extended: Vec<bool> = futures::stream::iter(keys)
        .map(|(key, path)| {
            let mode = mode.clone();
            async move {
                let current = match client
                    .get_object_retention()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                {
                    Ok(out) => out.retention().and_then(|r| r.retain_until_date()).copied(),
                    Err(e) => {
                        let err = sdk_error(bucket, "GET-RETENTION", &path, e);
                        // Written before the store was locked: no retention yet.
                        if err.kind == StoreErrorKind::NotFound
                            || err.code.as_deref() == Some("NoSuchObjectLockConfiguration")
                        {
                            None
                        } else {
                            return Err(err);
                        }
                    }
                };
                if current.is_some_and(|c| c.secs() >= renew_before.secs()) {
                    return Ok(false);
                }
                client
                    .put_object_retention()
                    .bucket(bucket)
                    .key(&key)
                    .retention(
                        ObjectLockRetention::builder()
                            .mode(mode)
                            .retain_until_date(target)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| sdk_error(bucket, "PUT-RETENTION", &path, e))?;
                Ok(true)
            }
        })
        .buffer_unordered(EXTEND_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(Extended {
        objects,
        extended: extended.iter().filter(|e| **e).count() as u64,
    })
}

/// What trying to remove one object's current version with the store's own credentials
/// did: the drill's proof that the store is immutable (a plain DELETE proves nothing on a
/// versioned bucket: it only adds a delete marker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionAttempt {
    /// The object, relative to the repository root.
    pub path: String,
    /// The version tried; absent when the object has none (an unversioned bucket).
    pub version: Option<String>,
    pub outcome: DeletionOutcome,
    /// The server answered the version DELETE with a new delete marker (it ignored the
    /// version): the marker was removed again, so nothing stays hidden.
    pub marker_removed: bool,
    /// The version was deleted and the object written back (same bytes, the store's
    /// retention), so the repository stays whole.
    pub rewritten: bool,
}

/// How the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionOutcome {
    /// The version DELETE was refused with this S3 error code (Object Lock: `AccessDenied`).
    Refused { code: String },
    /// The version was deleted: the object was not protected.
    Deleted,
    /// The object has no version ID: the bucket is not versioned, so it cannot hold Object
    /// Lock, and no deletion was tried (on such a bucket it would really remove the data).
    Unversioned,
}

/// The verdict on a version DELETE's answer: a refusal for lack of permission is what
/// Object Lock gives; any other error is not evidence either way and is returned as is.
pub(super) fn judge_deletion(
    answer: Result<(), StoreError>,
) -> Result<DeletionOutcome, StoreError> {
    match answer {
        Ok(()) => Ok(DeletionOutcome::Deleted),
        Err(e) if e.kind == StoreErrorKind::AccessDenied => Ok(DeletionOutcome::Refused {
            code: e.code.unwrap_or_else(|| "AccessDenied".into()),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mode_and_days() {
        let l: ObjectLock = "governance:30d".parse().unwrap();
        assert_eq!(
            l,
            ObjectLock {
                mode: LockMode::Governance,
                days: 30
            }
        );
        assert_eq!(l.to_string(), "governance:30d");
        assert_eq!(
            "Compliance:365d".parse::<ObjectLock>().unwrap().mode,
            LockMode::Compliance
        );
        for bad in [
            "",
            "governance",
            "governance:30",
            "governance:0d",
            "legal:30d",
            "compliance:36501d",
        ] {
            assert!(bad.parse::<ObjectLock>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn everything_but_lock_files_is_retained_for_the_period() {
        let lock = ObjectLock {
            mode: LockMode::Compliance,
            days: 2,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        for path in [
            "config",
            "keys/ab",
            "data/ab/abcd",
            "index/ab",
            "snapshots/ab",
        ] {
            let r = retention_for(Some(&lock), path, now).expect(path);
            assert_eq!(r.mode, ObjectLockMode::Compliance);
            assert_eq!(r.until.secs(), 1_000 + 2 * 86_400);
        }
        assert_eq!(retention_for(Some(&lock), "locks/ab", now), None);
        assert_eq!(retention_for(None, "data/ab/abcd", now), None);
    }

    #[test]
    fn only_a_permission_refusal_counts_as_refused() {
        let err = |kind, code: Option<&str>| {
            let mut e = StoreError::new(kind, "DELETE-VERSION", "data/ab/abcd", "x");
            e.code = code.map(str::to_string);
            e
        };
        let table: Vec<(Result<(), StoreError>, Option<DeletionOutcome>)> = vec![
            (Ok(()), Some(DeletionOutcome::Deleted)),
            (
                Err(err(StoreErrorKind::AccessDenied, Some("AccessDenied"))),
                Some(DeletionOutcome::Refused {
                    code: "AccessDenied".into(),
                }),
            ),
            (
                Err(err(StoreErrorKind::AccessDenied, None)),
                Some(DeletionOutcome::Refused {
                    code: "AccessDenied".into(),
                }),
            ),
            // Neither a refusal nor a deletion: no evidence, an error.
            (
                Err(err(StoreErrorKind::Other, Some("InvalidRequest"))),
                None,
            ),
            (
                Err(err(StoreErrorKind::NotFound, Some("NoSuchVersion"))),
                None,
            ),
            (Err(err(StoreErrorKind::Unreachable, None)), None),
        ];
        for (answer, want) in table {
            let shown = format!("{answer:?}");
            assert_eq!(judge_deletion(answer).ok(), want, "{shown}");
        }
    }
}

//! The real [`Prober`]: opens the store's repository with the repository engine (and
//! creates it when allowed and missing), mapping engine errors to condition reasons.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::catalog::StoreCatalog;
use super::plan::Outcome;
use super::{Connection, Listing, Prober};
use crate::repo::{self, InitOptions, Repo, RepoOptions, S3Config, S3Credentials, Secret, Storage};

/// Probes with the repository engine.
#[derive(Clone, Debug)]
pub struct RepoProber {
    /// Runtime handle for the S3 client (the controller's own).
    pub runtime: tokio::runtime::Handle,
    /// Directory for CA bundles handed to the S3 client as files.
    pub scratch: PathBuf,
}

fn reason_for(e: &repo::Error) -> (&'static str, bool, bool) {
    // (reason, reachable, transient)
    match e.category() {
        "BucketNotFound" => ("BucketNotFound", false, false),
        "StorageAuthFailed" => ("InvalidCredentials", false, false),
        "StorageAccessDenied" => ("AccessDenied", false, false),
        "StorageUnreachable" => ("StorageUnreachable", false, true),
        "WrongPassword" => ("WrongPassword", true, false),
        "RepositoryLocked" => ("RepositoryLocked", true, true),
        "InvalidInput" => ("InvalidStore", false, false),
        "StorageError" => (
            "StorageError",
            false,
            e.retry_class() == repo::RetryClass::Transient,
        ),
        _ => ("ProbeFailed", false, true),
    }
}

fn failed(e: &repo::Error) -> Outcome {
    let (reason, reachable, transient) = reason_for(e);
    Outcome::Failed {
        reason,
        message: e.to_string(),
        reachable,
        transient,
    }
}

impl RepoProber {
    fn ca_file(&self, pem: &str) -> std::io::Result<PathBuf> {
        let name = format!(
            "ca-{}.pem",
            &hex::encode(Sha256::digest(pem.as_bytes()))[..16]
        );
        let path = self.scratch.join(name);
        if !path.exists() {
            std::fs::create_dir_all(&self.scratch)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, pem)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(path)
    }

    fn options(&self, conn: &Connection) -> Result<RepoOptions, Outcome> {
        let s3 = &conn.spec.s3;
        let mut cfg = S3Config::new(
            s3.endpoint.clone(),
            s3.bucket.clone(),
            s3.prefix
                .clone()
                .unwrap_or_default()
                .trim_matches('/')
                .to_string(),
        );
        cfg.region = Some(s3.region.clone().unwrap_or_else(|| "us-east-1".into()));
        cfg.path_style = s3.path_style.unwrap_or(s3.endpoint.is_some());
        cfg.checksum = match s3.checksum_mode {
            crate::crd::store::ChecksumMode::WhenSupported => repo::ChecksumMode::WhenSupported,
            crate::crd::store::ChecksumMode::WhenRequired => repo::ChecksumMode::WhenRequired,
        };
        // A probe must answer within the controller's timeout: fewer, shorter attempts
        // than a mover's.
        cfg.max_attempts = 2;
        cfg.connect_timeout = Duration::from_secs(5);
        cfg.attempt_timeout = Duration::from_secs(20);
        cfg.credentials = match (&conn.access_key_id, &conn.secret_access_key) {
            (Some(id), Some(key)) => S3Credentials::Static {
                access_key_id: id.0.clone(),
                secret_access_key: Secret::new(key.0.clone()),
                session_token: conn
                    .session_token
                    .as_ref()
                    .map(|t| Secret::new(t.0.clone())),
            },
            _ => S3Credentials::Chain,
        };
        if let Some(pem) = &conn.ca_pem {
            cfg.ca_bundle = Some(self.ca_file(&pem.0).map_err(|e| Outcome::Failed {
                reason: "ProbeFailed",
                message: format!("cannot stage the CA bundle: {e}"),
                reachable: false,
                transient: true,
            })?);
        }
        // An immutable store's repository is created with its objects locked too.
        cfg.object_lock = match &conn.spec.immutability {
            Some(i) => Some(
                i.engine_value()
                    .parse()
                    .map_err(|e: String| Outcome::Failed {
                        reason: "InvalidStore",
                        message: format!("spec.immutability: {e}"),
                        reachable: false,
                        transient: false,
                    })?,
            ),
            None => None,
        };
        let mut opts = RepoOptions::new(Storage::S3(Box::new(cfg)));
        opts.runtime = Some(self.runtime.clone());
        Ok(opts)
    }
}

/// An immutable store whose bucket cannot lock objects: every write with a retention
/// would be refused, so the store is not ready (checked before a repository is created).
fn lock_missing(opts: &RepoOptions) -> Option<Outcome> {
    let enabled = opts
        .object_store()
        .and_then(|s| s.object_lock_enabled().map_err(repo::Error::from));
    match enabled {
        Ok(Some(true)) => None,
        Ok(_) => Some(Outcome::Failed {
            reason: "ObjectLockNotEnabled",
            message: format!(
                "spec.immutability is set but bucket {:?} does not have S3 Object Lock enabled \
                 (it can only be turned on when a bucket is created): use a bucket created \
                 with Object Lock, or remove spec.immutability",
                bucket_of(opts)
            ),
            reachable: true,
            transient: false,
        }),
        Err(e) => Some(failed(&e)),
    }
}

fn bucket_of(opts: &RepoOptions) -> String {
    match &opts.storage {
        Storage::S3(c) => c.bucket.clone(),
        Storage::Local(p) => p.display().to_string(),
    }
}

impl RepoProber {
    /// Opens the repository (creating it when allowed and missing): the repository and
    /// what the probe found.
    fn open(&self, conn: &Connection, initialize: bool) -> Result<(Repo, Outcome), Outcome> {
        let opts = self.options(conn)?;
        let password = Secret::new(conn.password.0.clone());
        if conn.spec.immutability.is_some()
            && let Some(outcome) = lock_missing(&opts)
        {
            return Err(outcome);
        }
        match Repo::open(&opts, &password) {
            Ok(r) => {
                let repository_id = r.id().to_string();
                Ok((r, Outcome::Ready { repository_id }))
            }
            Err(repo::Error::NotFound(_)) if !initialize => Err(Outcome::NotInitialized),
            Err(repo::Error::NotFound(_)) => {
                // Passwords of stores are Kubernetes Secrets, usually long random strings:
                // use the cheap KDF for those, the interactive one otherwise (see
                // docs/engine.md, "Key derivation").
                let kdf = if repo::kdf::check_random_secret(password.expose()).is_ok() {
                    repo::kdf::RANDOM_SECRET
                } else {
                    repo::kdf::INTERACTIVE
                };
                match Repo::init(
                    &opts,
                    &password,
                    &InitOptions {
                        kdf,
                        compression: None,
                    },
                ) {
                    Ok(r) => {
                        let repository_id = r.id().to_string();
                        Ok((r, Outcome::Initialized { repository_id }))
                    }
                    Err(e) => Err(failed(&e)),
                }
            }
            Err(e) => Err(failed(&e)),
        }
    }
}

impl Prober for RepoProber {
    fn probe(&self, conn: &Connection, initialize: bool) -> Outcome {
        match self.open(conn, initialize) {
            Ok((_, outcome)) | Err(outcome) => outcome,
        }
    }

    fn probe_and_list(
        &self,
        conn: &Connection,
        initialize: bool,
        known: &StoreCatalog,
    ) -> (Outcome, Option<Result<Listing, String>>) {
        let (repo, outcome) = match self.open(conn, initialize) {
            Ok(x) => x,
            Err(outcome) => return (outcome, None),
        };
        let started = std::time::Instant::now();
        // A cache of another repository (the location changed) is no help.
        let same = known.repository_id == repo.id();
        let listing = repo
            .snapshot_listing(|id| same && known.knows(id))
            .map(|(ids, new)| Listing {
                repository_id: repo.id().to_string(),
                ids,
                new,
                seconds: started.elapsed().as_secs_f64(),
                // A failed lock listing costs only this sweep: the next probe tries again.
                locks: repo.locks().unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "listing the repository's locks failed");
                    vec![]
                }),
            })
            .map_err(|e| e.to_string());
        (outcome, Some(listing))
    }

    fn remove_locks(
        &self,
        conn: &Connection,
        locks: &[repo::FoundLock],
    ) -> Result<Vec<String>, String> {
        // Never creates a repository: the locks were read from an existing one.
        let (repo, _) = self.open(conn, false).map_err(|o| format!("{o:?}"))?;
        let mut removed = Vec::new();
        for l in locks {
            match repo.remove_lock_if_unchanged(&l.id, &l.info) {
                Ok(true) => removed.push(l.id.clone()),
                Ok(false) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(removed)
    }
}

//! How to reach and open a repository, as plain data: where it is, where its password
//! is, the cache and the S3 client settings. The CLI fills this from its flags and
//! environment (`cli::RepoArgs`), the mover receives it; resolving it into
//! [`RepoOptions`] (reading the secret files and variables) happens here, once, for
//! both, and only when a command opens the repository.

use std::path::PathBuf;
use std::time::Duration;

use super::Error;
use super::env::{env_secret, read_secret_file};
use crate::repo::{self, ChecksumMode, ObjectLock, RepoOptions, S3Credentials, Secret, Storage};

/// Where the repository is and how to open it.
#[derive(Clone, Debug, Default)]
pub(crate) struct RepoAccess {
    /// `s3:http://host:port/bucket/prefix`, `s3:host/bucket` (HTTPS) or a path.
    pub(crate) repository: Option<String>,
    /// File whose first line is the password (else `LIFEBOAT_PASSWORD`).
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) no_cache: bool,
    /// No progress bars.
    pub(crate) quiet: bool,
    pub(crate) s3: S3Access,
}

/// S3 client settings (the CLI documents each with its flag).
#[derive(Clone, Debug, Default)]
pub(crate) struct S3Access {
    pub(crate) region: Option<String>,
    /// With the secret from `LIFEBOAT_S3_SECRET_ACCESS_KEY` or `secret_access_key_file`;
    /// without it the AWS chain is used.
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key_file: Option<PathBuf>,
    pub(crate) profile: Option<String>,
    pub(crate) path_style: bool,
    pub(crate) ca_bundle: Option<PathBuf>,
    pub(crate) checksum: ChecksumMode,
    pub(crate) max_attempts: u32,
    pub(crate) connect_timeout_seconds: u64,
    pub(crate) timeout_seconds: u64,
    pub(crate) upload_concurrency: usize,
    pub(crate) multipart_threshold_mib: u64,
    pub(crate) part_size_mib: u64,
    pub(crate) create_bucket: bool,
    pub(crate) object_lock: Option<ObjectLock>,
}

impl RepoAccess {
    /// The repository password: `password_file`, else `LIFEBOAT_PASSWORD`.
    pub(crate) fn password(&self) -> Result<Secret, Error> {
        if let Some(f) = &self.password_file {
            return read_secret_file(f, "password");
        }
        env_secret("LIFEBOAT_PASSWORD").ok_or_else(|| {
            Error::input("no repository password: set LIFEBOAT_PASSWORD or --password-file")
        })
    }

    /// The repository options (storage, cache, progress); `json` output turns progress
    /// bars off.
    pub(crate) fn options(&self, json: bool) -> Result<RepoOptions, Error> {
        let location = self
            .repository
            .as_deref()
            .ok_or_else(|| Error::input("no repository: set --repo or LIFEBOAT_REPOSITORY"))?;
        let mut storage = Storage::parse(location)?;
        if let Storage::S3(c) = &mut storage {
            let s = &self.s3;
            c.region.clone_from(&s.region);
            c.path_style = s.path_style;
            c.ca_bundle.clone_from(&s.ca_bundle);
            c.checksum = s.checksum;
            c.max_attempts = s.max_attempts.max(1);
            c.connect_timeout = Duration::from_secs(s.connect_timeout_seconds.max(1));
            c.attempt_timeout = Duration::from_secs(s.timeout_seconds.max(1));
            c.upload_concurrency = s.upload_concurrency.max(1);
            c.multipart_threshold = s.multipart_threshold_mib.max(5) << 20;
            c.part_size = s.part_size_mib.max(5) << 20;
            c.create_bucket = s.create_bucket;
            c.object_lock = s.object_lock;
            c.credentials = match (&s.access_key_id, &s.profile) {
                (Some(id), _) => {
                    let secret = match &s.secret_access_key_file {
                        Some(f) => read_secret_file(f, "S3 secret key")?,
                        None => env_secret("LIFEBOAT_S3_SECRET_ACCESS_KEY").ok_or_else(|| {
                            Error::input(
                                "--s3-access-key-id needs LIFEBOAT_S3_SECRET_ACCESS_KEY or \
                                 --s3-secret-access-key-file",
                            )
                        })?,
                    };
                    S3Credentials::Static {
                        access_key_id: id.clone(),
                        secret_access_key: secret,
                        session_token: env_secret("LIFEBOAT_S3_SESSION_TOKEN"),
                    }
                }
                (None, Some(p)) => S3Credentials::Profile(p.clone()),
                (None, None) => S3Credentials::Chain,
            };
        }
        let cache_dir = match (&storage, self.no_cache, &self.cache_dir) {
            (_, true, _) => None,
            (_, false, Some(d)) => Some(d.clone()),
            // A local repository is its own cache.
            (Storage::Local(_), false, None) => None,
            (Storage::S3(_), false, None) => default_cache_dir(),
        };
        Ok(RepoOptions {
            storage,
            cache_dir,
            progress: !json && !self.quiet,
            runtime: None,
            progress_sink: None,
        })
    }

    /// Opens the repository with the configured password.
    pub(crate) fn open(&self, json: bool) -> Result<repo::Repo, Error> {
        let opts = self.options(json)?;
        let password = self.password()?;
        Ok(repo::Repo::open(&opts, &password)?)
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("lifeboat"))
}

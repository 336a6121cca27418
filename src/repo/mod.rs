//! The repository engine's facade: the only API the CLI, the mover, the drills and the
//! tests use. Restic repository format v2 (compressed), engine `rustic_core`, our own
//! backends (local directory, S3 on aws-sdk-s3) and restic-compatible locks. No Kubernetes
//! types, no rustic_core types in the public signatures (except inside [`engine`], the
//! swap point of the hot paths).
//!
//! Every method blocks; from async code call it inside `spawn_blocking`.
//!
//! Invariants:
//! - Commit order is data packs, index, snapshot: a crash leaves only unreferenced data.
//! - Every operation holds a restic-compatible lock: shared for backup, restore, dump,
//!   snapshots and check; exclusive for forget and prune.
//! - A stream backup whose source fails leaves no snapshot.
//! - Destructive operations are plan → execute: [`Repo::plan_forget`] then [`Repo::forget`].

pub(crate) mod backend;
pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod format;
pub(crate) mod location;
pub(crate) mod lock;
pub(crate) mod log_bridge;
pub(crate) mod progress;
pub(crate) mod repair;
pub(crate) mod restore;
pub(crate) mod retention;
pub(crate) mod snapshot;
pub(crate) mod stream;

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustic_core::{
    ConfigOptions, Credentials, FileType, KeyOptions, PruneOptions, Repository, RepositoryBackends,
    RepositoryOptions, SnapshotOptions, repofile::SnapshotFile,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use backend::{
    ObjectStore, StoreError, StoreErrorKind,
    s3::{
        ChecksumMode, DeletionAttempt, DeletionOutcome, Extended, LockMode, ObjectLock, S3Config,
        S3Credentials,
    },
};
pub use check::CheckReport;
pub use engine::{ExtraFile, PathBackup, RestoreStats, RestoreTarget, StreamBackup};
pub use error::{Corruption, Error, Result, RetryClass};
pub use format::key::KdfParams;
pub(crate) use lock::REFRESH_EVERY as LOCK_REFRESH_EVERY;
pub use lock::{FoundLock, LockInfo, set_holder};
pub use progress::ProgressSink;
pub use repair::RepairReport;
pub use retention::{Decision, ForgetPlan, GroupBy, GroupKey, GroupPlan, RetentionPolicy};
pub use snapshot::{SnapshotFilter, SnapshotInfo, SnapshotStats};
pub use stream::{CommandFailed, CommandStream};

use backend::{RepoBackend, local::LocalStore, s3::S3Store};
use engine::EngineCtx;
use format::{crypto::Crypto, files, index::RepoIndex, object_path};
use progress::TermProgress;

/// The program name recorded in snapshots (`program_version`).
pub const PROGRAM: &str = concat!("lifeboat ", env!("CARGO_PKG_VERSION"));

/// A secret string (password, secret key). Never printed: `Debug` and `Display` show
/// `***`; use [`Secret::expose`] at the one place the value is needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// Where the repository's objects live.
#[derive(Clone, Debug)]
pub enum Storage {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket and prefix.
    S3(Box<S3Config>),
}

impl Storage {
    /// Parses a restic-style location (`s3:http://host:port/bucket/prefix` or a path); S3
    /// settings other than the location take their defaults (credentials from the AWS
    /// chain) and can be adjusted on the returned value.
    pub fn parse(location: &str) -> Result<Self> {
        match location::parse(location).map_err(Error::InvalidInput)? {
            location::Location::Local(p) => Ok(Self::Local(p)),
            location::Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => Ok(Self::S3(Box::new(S3Config::new(endpoint, bucket, prefix)))),
        }
    }

    /// A display name without secrets.
    pub fn location(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::S3(c) => c.location(),
        }
    }
}

/// How to reach and present a repository.
#[derive(Clone, Debug)]
pub struct RepoOptions {
    /// The storage.
    pub storage: Storage,
    /// Local cache of index and snapshot files (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Show progress bars on stderr (only ever when stderr is a terminal).
    pub progress: bool,
    /// Runtime for the S3 client; `None` starts a small private one.
    pub runtime: Option<tokio::runtime::Handle>,
    /// Counters of the running operation for another thread to poll (mover progress).
    pub progress_sink: Option<Arc<progress::ProgressSink>>,
}

impl RepoOptions {
    /// Options for a storage with no cache and no progress.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            cache_dir: None,
            progress: false,
            runtime: None,
            progress_sink: None,
        }
    }

    /// The object store under the repository's root, for objects kept next to the
    /// repository (DR drill reports). Blocking, like every store call.
    pub fn object_store(&self) -> Result<Arc<dyn ObjectStore>> {
        self.open_store()
    }

    fn open_store(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(match &self.storage {
            Storage::Local(p) => Arc::new(LocalStore::new(p.clone())),
            // Client set-up fails only on local input (CA bundle file, TLS settings).
            Storage::S3(c) => Arc::new(
                S3Store::new((**c).clone(), self.runtime.clone())
                    .map_err(|e| Error::InvalidInput(e.message))?,
            ),
        })
    }

    fn rustic_options(&self) -> RepositoryOptions {
        match &self.cache_dir {
            Some(dir) => RepositoryOptions::default().cache_dir(dir.clone()),
            None => RepositoryOptions::default().no_cache(true),
        }
    }
}

/// KDF presets for new keys (see docs/engine.md, "Key derivation").
pub mod kdf {
    use super::KdfParams;

    /// For passwords people type: scrypt N=2^15, r=8, p=2 (32 MiB, about 0.17 s here), the
    /// memory restic 0.14 gives its keys and the lower end of the time it calibrates to.
    pub const INTERACTIVE: KdfParams = KdfParams {
        log_n: 15,
        r: 8,
        p: 2,
    };
    /// For long random secrets (operator-generated): N=2^12, r=8, p=1 (4 MiB, a few ms).
    /// Only accepted for passwords that look like random secrets, see [`check_random_secret`].
    pub const RANDOM_SECRET: KdfParams = KdfParams {
        log_n: 12,
        r: 8,
        p: 1,
    };

    /// Refuses passwords that cannot be long random secrets: shorter than 24 characters,
    /// fewer than 12 distinct characters, or under 128 bits by a character-class estimate.
    /// A guard against mistakes, not a proof of randomness.
    pub fn check_random_secret(password: &str) -> Result<(), String> {
        let len = password.chars().count();
        let distinct = password
            .chars()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let mut alphabet = 0u32;
        if password.chars().any(|c| c.is_ascii_lowercase()) {
            alphabet += 26;
        }
        if password.chars().any(|c| c.is_ascii_uppercase()) {
            alphabet += 26;
        }
        if password.chars().any(|c| c.is_ascii_digit()) {
            alphabet += 10;
        }
        if password.chars().any(|c| !c.is_ascii_alphanumeric()) {
            alphabet += 33;
        }
        let bits = len as f64 * f64::from(alphabet.max(1)).log2();
        if len < 24 || distinct < 12 || bits < 128.0 {
            return Err(format!(
                "the random-secret KDF preset needs a long random password (at least 24 \
                 characters, 12 distinct, ~128 bits; this one has {len} characters, {distinct} \
                 distinct, ~{bits:.0} bits): use the interactive preset for typed passwords"
            ));
        }
        Ok(())
    }
}

/// Options for `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// scrypt parameters of the first key.
    pub kdf: KdfParams,
    /// zstd level (restic's `auto` is the default when `None`).
    pub compression: Option<i32>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: kdf::INTERACTIVE,
            compression: None,
        }
    }
}

/// The result of a backup.
#[derive(Clone, Debug, Serialize)]
pub struct BackupOutcome {
    /// The new snapshot.
    pub snapshot: SnapshotInfo,
    /// Source entries that could not be read and are missing from the snapshot (the snapshot
    /// was still written, as restic does; the CLI exits with `PartialBackup`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Options for `check`.
#[derive(Clone, Debug, Default)]
pub struct CheckRequest {
    /// Read and verify all pack data.
    pub read_data: bool,
    /// Read only a subset: `10%`, `1/5`, `500MiB`.
    pub read_data_subset: Option<String>,
}

/// What `prune` did (or would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Whether anything was changed.
    pub dry_run: bool,
    /// Pack files removed entirely.
    pub packs_removed: u64,
    /// Pack files repacked.
    pub packs_repacked: u64,
    /// Bytes removed from the repository.
    pub bytes_removed: u64,
    /// Unreferenced pack files (left by interrupted backups) removed.
    pub unreferenced_packs_removed: u64,
}

/// An open repository.
#[derive(Clone, Debug)]
pub struct Repo {
    ctx: EngineCtx,
    location: String,
    id: String,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

impl Repo {
    /// Creates a new repository (format v2, compression on) with one key for `password`.
    pub fn init(opts: &RepoOptions, password: &Secret, init: &InitOptions) -> Result<Self> {
        init.kdf.validate().map_err(Error::InvalidInput)?;
        let location = opts.storage.location();
        let store = opts.open_store()?;
        // Creates the bucket when asked to (S3) or the directories (local); never
        // destroys anything, so it is safe before the existence checks.
        store.create()?;
        if store.size("config")?.is_some() {
            return Err(Error::AlreadyExists(location));
        }
        if !store.list("keys")?.is_empty() {
            return Err(Error::AlreadyExists(format!(
                "{location} (it has key files but no config: an interrupted init? remove keys/ first)"
            )));
        }
        let master = Crypto::random();
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok());
        let json = format::key::make_key_file(&master, password.expose(), init.kdf, host, user)
            .map_err(Error::Internal)?;
        // Key first, config last: the config's presence is what makes it a repository.
        store.put(&format!("keys/{}", sha256_hex(&json)), vec![json.into()])?;
        let mut config = ConfigOptions::default().set_version(2u32);
        if let Some(level) = init.compression {
            config = config.set_compression(level);
        }
        let repo_opts = opts.rustic_options();
        let progress = TermProgress::new(opts.progress, opts.progress_sink.clone());
        // rustic_core writes the config (a random chunker polynomial and repository id).
        let backends = RepositoryBackends::new(Arc::new(RepoBackend::new(store.clone())), None);
        Repository::new_with_progress(&repo_opts, &backends, progress.clone())?.init(
            &Credentials::Masterkey(master.to_master_key()),
            &KeyOptions::default(),
            &config,
        )?;
        Self::finish_open(store, master, repo_opts, progress, location)
    }

    /// Opens an existing repository.
    pub fn open(opts: &RepoOptions, password: &Secret) -> Result<Self> {
        let location = opts.storage.location();
        let store = opts.open_store()?;
        if store.size("config")?.is_none() {
            // A missing bucket answers HEAD with a bare 404: ask about the bucket itself so
            // the error names the real cause.
            return Err(match store.check_root() {
                Err(e) if e.kind != StoreErrorKind::NotFound => Error::Storage(e),
                _ => Error::NotFound(location),
            });
        }
        let keys = store.list("keys")?;
        let master = format::key::find_master_key(&keys, password.expose(), &location, |name| {
            Ok(store.get(&format!("keys/{name}"), None)?.to_vec())
        })?;
        let repo_opts = opts.rustic_options();
        let progress = TermProgress::new(opts.progress, opts.progress_sink.clone());
        Self::finish_open(store, master, repo_opts, progress, location)
    }

    fn finish_open(
        store: Arc<dyn ObjectStore>,
        crypto: Crypto,
        repo_opts: RepositoryOptions,
        progress: TermProgress,
        location: String,
    ) -> Result<Self> {
        let config = files::load_config(store.as_ref(), &crypto).map_err(|e| match e {
            // the config is encrypted with the master key: a key that opens but does not
            // decrypt the config belongs to another repository
            Error::Corrupt(c) if c.problem.contains("authentication") => Error::corrupt(
                "config",
                "it does not decrypt with the master key of the repository's key file",
            ),
            other => other,
        })?;
        let id = config.id.to_hex().as_str().to_string();
        Ok(Self {
            ctx: EngineCtx {
                store,
                crypto,
                config,
                progress,
                repo_opts,
            },
            location,
            id,
        })
    }

    /// The repository's ID (from its config file): tells repositories apart, and a
    /// re-created repository at the same location from the old one.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The location, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Adds a key for another password (e.g. rotating to a new KDF preset).
    pub fn add_key(&self, password: &Secret, kdf: KdfParams) -> Result<String> {
        let json = format::key::make_key_file(&self.ctx.crypto, password.expose(), kdf, None, None)
            .map_err(Error::InvalidInput)?;
        let id = sha256_hex(&json);
        self.store().put(&format!("keys/{id}"), vec![json.into()])?;
        Ok(id)
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.ctx.store
    }

    /// Takes a lock for the duration of the returned guard.
    pub fn lock(&self, exclusive: bool) -> Result<lock::LockGuard> {
        Ok(lock::LockGuard::acquire(
            self.store().clone(),
            &self.ctx.crypto,
            exclusive,
        )?)
    }

    fn all_snapshot_files(&self) -> Result<Vec<SnapshotFile>> {
        files::load_snapshots(self.store(), &self.ctx.crypto)
    }

    /// Lists snapshots matching `filter`, oldest first.
    pub fn snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<SnapshotInfo>> {
        let _lock = self.lock(false)?;
        self.snapshots_unlocked(filter)
    }

    fn snapshots_unlocked(&self, filter: &SnapshotFilter) -> Result<Vec<SnapshotInfo>> {
        let mut v: Vec<SnapshotInfo> = self
            .all_snapshot_files()?
            .iter()
            .map(SnapshotInfo::from_file)
            .filter(|s| filter.matches(s))
            .collect();
        v.sort_by(|a, b| {
            a.time
                .timestamp()
                .cmp(&b.time.timestamp())
                .then(a.id.cmp(&b.id))
        });
        Ok(v)
    }

    /// The IDs of every snapshot file (one LIST), and the decoded snapshots among them
    /// that `known` does not hold yet (one GET each, 8 at a time). Snapshot files are
    /// content-addressed and never change, so a caller that keeps what it decoded by ID
    /// fetches each snapshot once in its life. No lock is taken: a snapshot forgotten
    /// between the LIST and its GET is left out (and gone from the next listing), and
    /// the catalog's reader must not add a lock file per refresh to a busy repository.
    pub fn snapshot_listing(
        &self,
        known: impl Fn(&str) -> bool + Sync,
    ) -> Result<(Vec<String>, Vec<SnapshotInfo>)> {
        let listed = files::list(self.store().as_ref(), FileType::Snapshot)?;
        let ids: Vec<String> = listed
            .iter()
            .map(|(id, _)| id.to_hex().as_str().to_string())
            .collect();
        let wanted: Vec<_> = listed
            .into_iter()
            .zip(&ids)
            .filter(|(_, hex)| !known(hex))
            .map(|(l, _)| l)
            .collect();
        let loaded = files::parallel_map(wanted, 8, |(id, size)| {
            files::load_snapshot(self.store().as_ref(), &self.ctx.crypto, &id, Some(size))
        });
        let mut new = Vec::with_capacity(loaded.len());
        for r in loaded {
            match r {
                Ok(sn) => new.push(SnapshotInfo::from_file(&sn)),
                Err(Error::Storage(e)) if e.kind == StoreErrorKind::NotFound => {}
                Err(e @ Error::Corrupt(_)) => tracing::warn!(error = %e, "snapshot left out"),
                Err(e) => return Err(e),
            }
        }
        Ok((ids, new))
    }

    /// Resolves `latest` (newest matching `filter`) or a unique ID prefix.
    fn resolve(&self, spec: &str, filter: &SnapshotFilter) -> Result<SnapshotFile> {
        let all = self.all_snapshot_files()?;
        if spec == "latest" {
            return all
                .into_iter()
                .filter(|s| filter.matches(&SnapshotInfo::from_file(s)))
                .max_by_key(|s| s.time.timestamp())
                .ok_or_else(|| Error::SnapshotNotFound("latest".into()));
        }
        if spec.is_empty() || !spec.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{spec:?} is not a snapshot ID (hex) or `latest`"
            )));
        }
        let spec_lc = spec.to_ascii_lowercase();
        let mut found: Vec<SnapshotFile> = all
            .into_iter()
            .filter(|s| s.id.to_hex().as_str().starts_with(&spec_lc))
            .collect();
        match found.len() {
            0 => Err(Error::SnapshotNotFound(spec.to_string())),
            1 => Ok(found.remove(0)),
            n => Err(Error::InvalidInput(format!(
                "snapshot ID prefix {spec:?} is ambiguous ({n} matches)"
            ))),
        }
    }

    /// Resolves a snapshot spec to its info.
    pub fn find_snapshot(&self, spec: &str, filter: &SnapshotFilter) -> Result<SnapshotInfo> {
        Ok(SnapshotInfo::from_file(&self.resolve(spec, filter)?))
    }

    fn new_snapshot(&self, meta: &SnapshotMeta) -> Result<SnapshotFile> {
        let mut opts = SnapshotOptions::default();
        if let Some(h) = &meta.host {
            opts = opts.host(h.clone());
        }
        for t in &meta.tags {
            if t.is_empty() || t.contains(',') {
                return Err(Error::InvalidInput(format!(
                    "tag {t:?} must be non-empty and contain no comma"
                )));
            }
            opts = opts.add_tags(t)?;
        }
        let mut snap = opts.to_snapshot()?;
        PROGRAM.clone_into(&mut snap.program_version);
        Ok(snap)
    }

    /// Backs up local paths. Paths are made absolute (and must exist), as restic records them.
    pub fn backup_paths(&self, req: &PathBackup, meta: &SnapshotMeta) -> Result<BackupOutcome> {
        if req.paths.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to back up: no path given".into(),
            ));
        }
        let mut req = req.clone();
        for p in &mut req.paths {
            *p = std::fs::canonicalize(&*p)
                .map_err(|e| Error::io(format!("source path {}", p.display()), e))?;
        }
        let snap = self.new_snapshot(meta)?;
        // confirmed by the engine once it has read the index and the parent
        let lock = lock::PendingLock::begin(self.store().clone(), &self.ctx.crypto, false)?;
        let (sn, skipped) = engine::backup_paths(&self.ctx, &req, snap, lock)?;
        Ok(BackupOutcome {
            snapshot: SnapshotInfo::from_file(&sn),
            skipped,
        })
    }

    /// Backs up a stream as one file (plus extra files). On any read error nothing that
    /// looks like a snapshot is written and the error names the cause (for a
    /// [`CommandStream`]: the exit status and stderr tail).
    pub fn backup_stream(&self, req: StreamBackup, meta: &SnapshotMeta) -> Result<BackupOutcome> {
        let snap = self.new_snapshot(meta)?;
        let _lock = self.lock(false)?;
        let sn = engine::backup_stream(&self.ctx, req, snap)?;
        Ok(BackupOutcome {
            snapshot: SnapshotInfo::from_file(&sn),
            skipped: Vec::new(),
        })
    }

    /// Restores a snapshot (or a path inside it) into a local directory.
    pub fn restore(
        &self,
        snapshot: &str,
        filter: &SnapshotFilter,
        path: &str,
        target: &Path,
        delete: bool,
    ) -> Result<(SnapshotInfo, RestoreStats)> {
        self.restore_with(
            snapshot,
            filter,
            &RestoreTarget {
                path: path.to_string(),
                target: target.to_path_buf(),
                delete,
                numeric_ids: false,
                devices_and_setid: false,
            },
        )
    }

    /// [`Repo::restore`] with every option of the engine (numeric owners, devices).
    pub fn restore_with(
        &self,
        snapshot: &str,
        filter: &SnapshotFilter,
        target: &RestoreTarget,
    ) -> Result<(SnapshotInfo, RestoreStats)> {
        let _lock = self.lock(false)?;
        let sn = self.resolve(snapshot, filter)?;
        let stats = engine::restore(&self.ctx, &sn, target)?;
        Ok((SnapshotInfo::from_file(&sn), stats))
    }

    /// Streams one file of a snapshot into `out`; returns the bytes written.
    pub fn dump(
        &self,
        snapshot: &str,
        filter: &SnapshotFilter,
        path: &str,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let _lock = self.lock(false)?;
        let sn = self.resolve(snapshot, filter)?;
        let index = RepoIndex::load(self.store(), &self.ctx.crypto)?;
        let inner = path.trim_start_matches('/');
        let node = restore::find_node(self.store(), &self.ctx.crypto, &index, &sn.tree, inner)?
            .filter(|_| !inner.is_empty())
            .ok_or_else(|| Error::PathNotFound {
                snapshot: short(sn.id.to_hex().as_str()),
                path: path.to_string(),
            })?;
        if !node.is_file() {
            return Err(Error::InvalidInput(format!(
                "{path:?} in snapshot {} is not a file",
                short(sn.id.to_hex().as_str())
            )));
        }
        let mut n = 0u64;
        let mut buf = Vec::new();
        for id in node.content.iter().flatten() {
            restore::read_blob(
                self.store().as_ref(),
                &self.ctx.crypto,
                &index,
                id,
                &mut buf,
            )
            .map_err(|e| match e {
                Error::Corrupt(mut c) => {
                    c.files.push(path.to_string());
                    Error::Corrupt(c)
                }
                other => other,
            })?;
            out.write_all(&buf)
                .map_err(|e| Error::io("writing the dump", e))?;
            n += buf.len() as u64;
        }
        out.flush().map_err(|e| Error::io("writing the dump", e))?;
        Ok(n)
    }

    /// Reads one (small) file of a snapshot into memory.
    pub fn read_file(&self, snapshot: &str, path: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.dump(snapshot, &SnapshotFilter::default(), path, &mut buf)?;
        Ok(buf)
    }

    /// Verifies the repository structure, optionally reading (a subset of) the data.
    /// Damage is named (pack, blob, the files that need it) with what to do about it.
    pub fn check(&self, req: &CheckRequest) -> Result<CheckReport> {
        let read = match (&req.read_data_subset, req.read_data) {
            (Some(s), _) => check::ReadData::parse(s).map_err(Error::InvalidInput)?,
            (None, true) => check::ReadData::All,
            (None, false) => check::ReadData::None,
        };
        let _lock = self.lock(false)?;
        check::check(&self.ctx, read)
    }

    /// Salvages damaged packs (ids or unique prefixes; none: every pack whose data does
    /// not verify) and takes them out of the repository, under an exclusive lock. See
    /// `repair.rs`.
    pub fn repair_packs(&self, packs: &[String]) -> Result<RepairReport> {
        let _lock = self.lock(true)?;
        repair::repair_packs(&self.ctx, packs)
    }

    /// Plans which snapshots `policy` removes (no change is made).
    pub fn plan_forget(
        &self,
        policy: &RetentionPolicy,
        group_by: GroupBy,
        filter: &SnapshotFilter,
    ) -> Result<ForgetPlan> {
        let _lock = self.lock(false)?;
        let snaps = self.snapshots_unlocked(filter)?;
        retention::plan(snaps, policy, group_by, &jiff::Zoned::now()).map_err(Error::InvalidInput)
    }

    /// Removes the snapshots a plan marks for removal; returns their IDs.
    pub fn forget(&self, plan: &ForgetPlan) -> Result<Vec<String>> {
        let ids = plan.remove_ids();
        if ids.is_empty() {
            return Ok(ids);
        }
        let _lock = self.lock(true)?;
        let existing: std::collections::BTreeSet<String> =
            files::list(self.store().as_ref(), FileType::Snapshot)?
                .into_iter()
                .map(|(id, _)| id.to_hex().as_str().to_string())
                .collect();
        for id in &ids {
            let parsed: rustic_core::Id = id
                .parse()
                .map_err(|_| Error::InvalidInput(format!("invalid snapshot id {id}")))?;
            if existing.contains(id) {
                self.store()
                    .delete(&object_path(FileType::Snapshot, &parsed))?;
            }
        }
        Ok(ids)
    }

    /// Removes data no snapshot references (restic's `prune`), under an exclusive lock.
    pub fn prune(&self, dry_run: bool) -> Result<PruneReport> {
        let _lock = self.lock(true)?;
        // Deleting at once is safe here because we hold an exclusive lock (restic's model);
        // rustic's two-phase delete is for lock-free operation.
        let opts = PruneOptions::default().instant_delete(true);
        let repo = self.ctx.open_rustic()?;
        let plan = repo.prune_plan(&opts)?;
        let stats = &plan.stats;
        let sizes = stats.size_sum();
        let report = PruneReport {
            dry_run,
            packs_removed: stats.packs.unused + stats.packs_to_delete.remove,
            packs_repacked: stats.packs.repack,
            bytes_removed: sizes.remove + sizes.repackrm + stats.size_to_delete.remove,
            unreferenced_packs_removed: stats.packs_unref,
        };
        if !dry_run {
            repo.prune(&opts, plan)?;
        }
        Ok(report)
    }

    /// Moves the S3 Object Lock retention of every object the repository still holds
    /// forward (under a shared lock, so no prune hides objects meanwhile); nothing for a
    /// store without Object Lock. Returns what it did.
    pub fn extend_retention(&self) -> Result<Extended> {
        let _lock = self.lock(false)?;
        Ok(self.store().extend_retention()?)
    }

    /// Whether the repository's bucket has Object Lock enabled (`None`: not an S3 store).
    pub fn object_lock_enabled(&self) -> Result<Option<bool>> {
        Ok(self.store().object_lock_enabled()?)
    }

    /// Lists the locks in the repository (without taking one).
    pub fn locks(&self) -> Result<Vec<FoundLock>> {
        Ok(lock::list_locks(self.store().as_ref(), &self.ctx.crypto)?)
    }

    /// Removes the lock `id` if it still holds `expected`; `false` when it is gone or
    /// changed. For a caller that knows more than the engine about who holds a lock.
    pub fn remove_lock_if_unchanged(&self, id: &str, expected: &lock::LockInfo) -> Result<bool> {
        Ok(lock::remove_lock_if_unchanged(
            self.store().as_ref(),
            &self.ctx.crypto,
            id,
            expected,
        )?)
    }

    /// Removes stale locks, or every lock with `all`; returns the removed ones.
    pub fn unlock(&self, all: bool) -> Result<Vec<FoundLock>> {
        Ok(lock::remove_locks(
            self.store().as_ref(),
            &self.ctx.crypto,
            all,
        )?)
    }
}

/// Snapshot metadata chosen by the caller.
#[derive(Clone, Debug, Default)]
pub struct SnapshotMeta {
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_corruption;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_interop;

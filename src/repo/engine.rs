//! The three data operations (back up paths, back up a stream, restore) on one
//! implementation of the format (`backup`, `restore`, `format`), with plain inputs (an
//! [`EngineCtx`] and our request types) and plain outputs; locking, snapshot resolution
//! and error mapping stay in `mod.rs`.

use std::{io::Read, path::PathBuf, sync::Arc};

use rustic_core::{
    Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, OpenStatus, PathList,
    ProgressBars, ProgressType, ReadSource, Repository, RepositoryBackends, RepositoryOptions,
    repofile::{ConfigFile, SnapshotFile},
};

use super::{
    Error, Result,
    backend::{ObjectStore, RepoBackend},
    backup,
    format::crypto::Crypto,
    progress::TermProgress,
    restore,
};

pub(crate) use super::backup::stream::backup_stream;

/// What the operations get: where the repository's objects are, its master key and its
/// config (all read once by `Repo::open`).
#[derive(Clone, Debug)]
pub(crate) struct EngineCtx {
    /// The object store under the repository's root.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The repository's master key.
    pub(crate) crypto: Crypto,
    /// The repository's config.
    pub(crate) config: ConfigFile,
    /// Progress display.
    pub(crate) progress: TermProgress,
    /// rustic_core's options (cache), for what still runs on rustic_core (prune).
    pub(crate) repo_opts: RepositoryOptions,
}

impl EngineCtx {
    /// The zstd level data is written with; `None`: stored uncompressed (format v1, or
    /// v2 with compression set to 0).
    pub(crate) fn compression(&self) -> Option<i32> {
        self.config.zstd().ok().flatten()
    }

    /// Opens rustic_core on the same store, with the master key (no KDF).
    pub(crate) fn open_rustic(&self) -> Result<Repository<OpenStatus>> {
        let backends =
            RepositoryBackends::new(Arc::new(RepoBackend::new(self.store.clone())), None);
        Ok(
            Repository::new_with_progress(&self.repo_opts, &backends, self.progress.clone())?
                .open(&rustic_core::Credentials::Masterkey(
                    self.crypto.to_master_key(),
                ))?,
        )
    }

    /// Whether reads cross a network (anything but a local directory): such reads spend
    /// most of their time waiting, so more of them are kept in flight.
    fn is_remote(&self) -> bool {
        !self.store.location().starts_with("local:")
    }
}

/// Back up local paths.
#[derive(Clone, Debug, Default)]
pub struct PathBackup {
    /// Absolute paths to back up.
    pub paths: Vec<PathBuf>,
    /// Glob patterns to exclude (gitignore syntax, as restic's `--exclude`).
    pub excludes: Vec<String>,
    /// Skip directories containing a file with one of these names.
    pub exclude_if_present: Vec<String>,
    /// Do not cross file system boundaries.
    pub one_file_system: bool,
}

/// One extra file written into a stream snapshot after the stream ended successfully
/// (database metadata that is only known once the dump is complete).
pub struct ExtraFile {
    /// Path inside the snapshot; must sort after the stream's path.
    pub path: String,
    /// Produces the content; called only after the stream ended successfully.
    pub content: Box<dyn FnOnce() -> std::result::Result<Vec<u8>, String> + Send>,
}

impl std::fmt::Debug for ExtraFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Back up a byte stream as one file.
pub struct StreamBackup {
    /// Path of the file inside the snapshot (relative, `/`-separated, e.g. `dump/app.pgdump`).
    pub path: String,
    /// The stream. A read error (for a [`super::stream::CommandStream`]: a non-zero exit)
    /// aborts the backup without a snapshot.
    pub reader: Box<dyn Read + Send>,
    /// Files added after the stream.
    pub extra_files: Vec<ExtraFile>,
}

impl std::fmt::Debug for StreamBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBackup")
            .field("path", &self.path)
            .field("extra_files", &self.extra_files)
            .finish_non_exhaustive()
    }
}

/// Where and what to restore.
#[derive(Clone, Debug)]
pub struct RestoreTarget {
    /// Path inside the snapshot (`""` for everything).
    pub path: String,
    /// Local directory (or file, when `path` is a file) to restore into.
    pub target: PathBuf,
    /// Remove files in the target that are not in the snapshot.
    pub delete: bool,
    /// Set owners from the recorded numeric UID/GID instead of looking the recorded user
    /// and group names up locally (containers: the mover's `/etc/passwd` is not the
    /// application's).
    pub numeric_ids: bool,
    /// Create device nodes and keep set-user-ID / set-group-ID bits recorded in the
    /// snapshot. Off unless the snapshot is trusted: a repository someone else writes
    /// must not plant a device or a setuid binary.
    pub devices_and_setid: bool,
}

/// Statistics of a restore.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RestoreStats {
    /// Files written.
    pub files_restored: u64,
    /// Files already identical in the target (the restorer writes every file: always 0,
    /// kept for the JSON output's shape).
    pub files_unchanged: u64,
    /// Bytes written.
    pub bytes_restored: u64,
    /// Entries removed from the target because the snapshot does not have them
    /// (`delete`).
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted: u64,
    /// Device nodes in the snapshot that were not created (not asked for with
    /// `devices_and_setid`, or not permitted).
    #[serde(skip_serializing_if = "is_zero")]
    pub devices_skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Backup options for the product's stores. One pack writer: on a local disk a second
/// one only holds another pack in memory (fsync is not the bottleneck); the S3 store
/// queues pack uploads itself and runs `upload_concurrency` of them at once, so more
/// writers would only add packs waiting in memory (docs/performance.md).
pub(crate) fn backup_options(progress: rustic_core::Progress) -> backup::BackupOptions {
    backup::BackupOptions {
        upload_workers: 1,
        progress: Some(progress),
        ..backup::BackupOptions::default()
    }
}

/// A skipped entry as the facade reports it (`path: reason`).
fn skipped_line((path, why): (String, String)) -> String {
    if path.is_empty() {
        why
    } else {
        format!("{path}: {why}")
    }
}

fn excludes(req: &PathBackup) -> Excludes {
    let globs = req
        .excludes
        .iter()
        .map(|e| format!("!{e}"))
        .collect::<Vec<_>>();
    Excludes::default().globs(globs)
}

fn filter_options(req: &PathBackup) -> LocalSourceFilterOptions {
    LocalSourceFilterOptions::default()
        .exclude_if_present(req.exclude_if_present.clone())
        .one_file_system(req.one_file_system)
}

/// Backs up `req.paths` into a new snapshot prepared from `snap` (tags, host, time).
/// Returns the snapshot and the entries that could not be read (left out of it).
///
/// The parent is the latest snapshot of the same host, label and paths (rustic's and
/// restic's default); the filesystem walk, excludes and node metadata are rustic_core's
/// `LocalSource` (names that are not UTF-8 are stored escaped, as restic stores them).
pub(crate) fn backup_paths(
    ctx: &EngineCtx,
    req: &PathBackup,
    snap: SnapshotFile,
) -> Result<(SnapshotFile, Vec<String>)> {
    // Sorted and without nested duplicates: the pipeline builds trees from a walk in
    // path order.
    let source = PathList::from_iter(req.paths.iter().cloned())
        .sanitize()
        .map_err(|e| Error::InvalidInput(format!("source paths: {e}")))?;
    let paths = source.paths();
    let src = LocalSource::new(
        LocalSourceSaveOptions::default(),
        &excludes(req),
        &filter_options(req),
        &paths,
    )?;
    let progress = ctx.progress.progress(ProgressType::Bytes, "backing up...");
    let opts = backup_options(progress.clone());
    let result = std::thread::scope(|s| {
        // The total for the progress display, scanned beside the backup (as rustic does);
        // only when someone looks at it.
        if !progress.is_hidden() {
            s.spawn(|| {
                if let Ok(Some(size)) = src.size() {
                    progress.set_length(size);
                }
            });
        }
        backup::backup(ctx, &src, &paths, snap, &opts)
    });
    progress.finish();
    let (sn, stats) = result?;
    Ok((sn, stats.skipped.into_iter().map(skipped_line).collect()))
}

/// Restores `target.path` of snapshot `snap` into `target.target`: a directory's content
/// into the target, a file inside it (as restic does). Every blob's SHA-256 is verified
/// against its id before it is written.
pub(crate) fn restore(
    ctx: &EngineCtx,
    snap: &SnapshotFile,
    target: &RestoreTarget,
) -> Result<RestoreStats> {
    let progress = ctx
        .progress
        .progress(ProgressType::Bytes, "restoring file contents...");
    let defaults = restore::RestoreOptions::default();
    let opts = restore::RestoreOptions {
        // A worker reads a segment, then decrypts and writes it. From S3 most of that is
        // waiting on the read (the SeaweedFS restore used 0.78 of restic's CPU yet took
        // longer), so twice as many workers keep reads in flight; each holds at most one
        // segment (8 MiB) and its blobs.
        workers: if ctx.is_remote() {
            defaults.workers * 2
        } else {
            defaults.workers
        },
        numeric_ids: target.numeric_ids,
        devices_and_setid: target.devices_and_setid,
        delete: target.delete,
        progress: Some(progress.clone()),
        ..defaults
    };
    let inner_path = target.path.trim_start_matches('/');
    let result = restore::restore(
        &ctx.store,
        &ctx.crypto,
        &snap.tree,
        inner_path,
        &target.target,
        &opts,
    );
    progress.finish();
    let Some(stats) = result? else {
        return Err(Error::PathNotFound {
            snapshot: snap.id.to_hex().as_str()[..8].to_string(),
            path: target.path.clone(),
        });
    };
    Ok(RestoreStats {
        files_restored: stats.files,
        files_unchanged: 0,
        bytes_restored: stats.bytes,
        deleted: stats.deleted,
        devices_skipped: stats.devices_skipped,
    })
}

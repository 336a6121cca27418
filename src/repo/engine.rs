//! The swappable core of the three hot operations: back up paths, back up a stream,
//! restore. Each is one function with plain inputs (an [`EngineCtx`] and our request types)
//! and plain outputs; locking, snapshot resolution and error mapping stay in `mod.rs`.
//!
//! All three run on the hot path of [`super::fast`] (restic-compatible chunking, packing,
//! parallel upload and restore; docs/performance.md) over the product's own backend.
//! rustic_core's archiver and restorer remain as fallbacks where the hot path does not
//! apply, each named at its call: repositories it cannot write (format v1, uncompressed,
//! or a non-Rabin chunker; it restores from them), non-UTF-8 source paths, and restores
//! with `delete` (removing files that are not in the snapshot).

use std::{
    collections::VecDeque,
    io::{self, Cursor, Read},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
};

use rustic_core::{
    BackupOptions, ErrorKind, Excludes, LocalDestination, LocalSource, LocalSourceFilterOptions,
    LocalSourceSaveOptions, LsOptions, OpenStatus, PathList, ProgressBars, ProgressType,
    ReadSource, ReadSourceEntry, ReadSourceOpen, Repository, RepositoryBackends, RepositoryOptions,
    RestoreOptions, RusticError, RusticResult, WriteBackend,
    repofile::{Metadata, Node, NodeType, SnapshotFile},
};

use super::{
    Error, Result,
    backend::{CommitGate, RepoBackend},
    fast::{self, FastError},
    progress::TermProgress,
    stream::CommandFailed,
};

/// What the engine functions get: the raw pieces any implementation of the format needs
/// (the object store, the master key) and a way to open rustic_core on them (cheap: the
/// master key skips the KDF; the repository config comes with it, `repo.config()`).
#[derive(Clone, Debug)]
pub struct EngineCtx {
    /// The restic-layout backend (its `store()` gives raw object access).
    pub backend: RepoBackend,
    /// The repository's master key.
    pub key: rustic_core::repofile::MasterKey,
    /// Repository options used to open `repo` (cache settings).
    pub repo_opts: RepositoryOptions,
    /// Progress display.
    pub progress: TermProgress,
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
}

/// Statistics of a restore.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RestoreStats {
    /// Files written.
    pub files_restored: u64,
    /// Files already identical in the target.
    pub files_unchanged: u64,
    /// Bytes written.
    pub bytes_restored: u64,
}

fn rerr(e: Box<RusticError>) -> Error {
    Error::from_rustic(&e)
}

fn fast_err(e: FastError) -> Error {
    match e {
        FastError::Repo(r) => Error::from_rustic(&r),
        FastError::Io { op, path, source } => Error::io(format!("{op} {path}"), source),
        other => Error::Engine(other.to_string()),
    }
}

/// Why the hot path cannot write to this repository, if it cannot. It writes what restic
/// 0.14 writes by default (format v2, zstd, Rabin chunks); anything else goes to
/// rustic_core's archiver, which handles every format it can open.
fn fast_unsupported(repo: &Repository<OpenStatus>) -> Option<String> {
    let config = repo.config();
    match config.zstd() {
        Ok(Some(_)) => {}
        Ok(None) => return Some("repository without compression (format v1)".into()),
        Err(e) => return Some(e.to_string()),
    }
    fast::backup::chunker_for(config)
        .err()
        .map(|e| e.to_string())
}

impl EngineCtx {
    /// The backend the hot path reads and writes objects through (the product's own
    /// backend: local directory or S3).
    fn fast_backend(&self) -> Arc<dyn WriteBackend> {
        Arc::new(self.backend.clone())
    }

    /// Hot-path backup options for this context's store.
    fn fast_backup_options(&self, progress: rustic_core::Progress) -> fast::backup::BackupOptions {
        // One pack writer: on a local disk a second one only holds another pack in memory
        // (fsync is not the bottleneck); the S3 store queues pack uploads itself and runs
        // `upload_concurrency` of them at once, so more writers would only add packs
        // waiting in memory (docs/performance.md).
        fast::backup::BackupOptions {
            upload_workers: 1,
            progress: Some(progress),
            ..fast::backup::BackupOptions::default()
        }
    }
}

/// A skipped entry of the hot path as the facade reports it (`path: reason`).
fn skipped_line((path, why): (String, String)) -> String {
    if path.is_empty() {
        why
    } else {
        format!("{path}: {why}")
    }
}

impl EngineCtx {
    /// Opens rustic_core on this context's backend.
    pub fn open(&self) -> Result<Repository<OpenStatus>> {
        self.open_on(self.backend.clone())
    }

    /// Opens rustic_core on another backend over the same store (e.g. with its own gate).
    pub fn open_on(&self, backend: RepoBackend) -> Result<Repository<OpenStatus>> {
        let backends = RepositoryBackends::new(Arc::new(backend), None);
        Repository::new_with_progress(&self.repo_opts, &backends, self.progress.clone())
            .map_err(rerr)?
            .open(&rustic_core::Credentials::Masterkey(self.key.clone()))
            .map_err(rerr)
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
/// `LocalSource`, exactly what its archiver would use.
pub fn backup_paths(
    ctx: &EngineCtx,
    req: &PathBackup,
    snap: SnapshotFile,
) -> Result<(SnapshotFile, Vec<String>)> {
    let repo = ctx.open()?;
    let utf8 = req.paths.iter().all(|p| p.to_str().is_some());
    let why_not = if utf8 {
        fast_unsupported(&repo)
    } else {
        Some("a source path is not UTF-8".into())
    };
    if let Some(why) = why_not {
        // Fallback: rustic_core's archiver (see the module comment).
        tracing::info!(reason = %why, "backing up with rustic_core's archiver");
        return backup_paths_rustic(repo, req, snap).map(|sn| (sn, Vec::new()));
    }
    // Sorted and without nested duplicates: the hot path builds trees from a walk in
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
    )
    .map_err(rerr)?;
    let progress = ctx.progress.progress(ProgressType::Bytes, "backing up...");
    let opts = ctx.fast_backup_options(progress.clone());
    let be = ctx.fast_backend();
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
        fast::backup::backup(&repo, &be, &src, &paths, snap, &opts)
    });
    progress.finish();
    let (sn, stats) = result.map_err(fast_err)?;
    Ok((sn, stats.skipped.into_iter().map(skipped_line).collect()))
}

fn backup_paths_rustic(
    repo: Repository<OpenStatus>,
    req: &PathBackup,
    snap: SnapshotFile,
) -> Result<SnapshotFile> {
    let opts = BackupOptions::default()
        .excludes(excludes(req))
        .ignore_filter_opts(filter_options(req));
    let source = PathList::from_iter(req.paths.iter().cloned());
    let indexed = repo.to_indexed_ids().map_err(rerr)?;
    indexed.backup(&opts, &source, snap).map_err(rerr)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Running,
    Done,
    Failed,
}

/// Shared between the stream reader and the extra-file openers.
#[derive(Default)]
struct StreamShared {
    state: Mutex<Option<StreamState>>,
    cond: Condvar,
    failure: Mutex<Option<Error>>,
    /// Bytes of each file as read, by path inside the snapshot.
    sizes: Mutex<Vec<(PathBuf, u64)>>,
}

impl StreamShared {
    fn record_size(&self, path: &Path, n: u64) {
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_path_buf(), n));
    }
}

impl StreamShared {
    fn set(&self, s: StreamState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
        self.cond.notify_all();
    }

    fn wait_end(&self) -> StreamState {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *st {
                Some(StreamState::Running) | None => {
                    st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                Some(s) => return s,
            }
        }
    }

    fn fail(&self, gate: Option<&CommitGate>, err: Error) {
        if let Some(gate) = gate {
            gate.veto(err.to_string());
        }
        let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(err);
        }
        drop(slot);
        self.set(StreamState::Failed);
    }
}

struct GuardedReader {
    inner: Box<dyn Read + Send>,
    shared: Arc<StreamShared>,
    /// The commit gate of rustic_core's path (the hot path commits explicitly instead).
    gate: Option<Arc<CommitGate>>,
    path: PathBuf,
    read: u64,
}

impl Drop for GuardedReader {
    fn drop(&mut self) {
        // Dropped before its end (the pipeline stopped on another error): whoever waits
        // for the stream to end must not wait forever. The pipeline's error is reported.
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if *st == Some(StreamState::Running) {
            *st = Some(StreamState::Failed);
            self.shared.cond.notify_all();
        }
    }
}

impl Read for GuardedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.shared.record_size(&self.path, self.read);
                self.shared.set(StreamState::Done);
                Ok(0)
            }
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let ours = match e.get_ref().and_then(|x| x.downcast_ref::<CommandFailed>()) {
                    Some(f) => Error::CommandFailed(f.clone()),
                    None => Error::StreamFailed(e.to_string()),
                };
                self.shared.fail(self.gate.as_deref(), ours);
                Err(e)
            }
        }
    }
}

enum StreamOpen {
    Main(GuardedReader),
    Extra {
        path: String,
        content: Box<dyn FnOnce() -> std::result::Result<Vec<u8>, String> + Send>,
        shared: Arc<StreamShared>,
        gate: Arc<CommitGate>,
    },
}

impl ReadSourceOpen for StreamOpen {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self {
            Self::Main(r) => Ok(Box::new(r)),
            Self::Extra {
                path,
                content,
                shared,
                gate,
            } => {
                // Extra files describe a complete stream: produce them only after it ended
                // well. Entries are sorted so the stream is always opened first; waiting here
                // cannot deadlock.
                if shared.wait_end() != StreamState::Done {
                    return Err(RusticError::new(
                        ErrorKind::InputOutput,
                        "stream failed; extra file not written",
                    ));
                }
                match content() {
                    Ok(bytes) => {
                        shared.record_size(Path::new(&path), bytes.len() as u64);
                        Ok(Box::new(Cursor::new(bytes)))
                    }
                    Err(msg) => {
                        shared.fail(Some(&gate), Error::StreamFailed(format!("{path}: {msg}")));
                        Err(RusticError::new(
                            ErrorKind::InputOutput,
                            "extra file failed",
                        ))
                    }
                }
            }
        }
    }
}

struct StreamSource {
    entries: Mutex<Vec<(PathBuf, StreamOpen)>>,
}

fn file_node(name: &str) -> Node {
    let meta = Metadata {
        mode: Some(0o600),
        mtime: Some(jiff::Timestamp::now()),
        uid: Some(nix::unistd::getuid().as_raw()),
        gid: Some(nix::unistd::getgid().as_raw()),
        ..Metadata::default()
    };
    Node::new_node(std::ffi::OsStr::new(name), NodeType::File, meta)
}

impl ReadSource for StreamSource {
    type Open = StreamOpen;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<StreamOpen>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(|e| e.into_inner()));
        entries
            .into_iter()
            .map(|(path, open)| {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(ReadSourceEntry {
                    node: file_node(&name),
                    path,
                    open: Some(open),
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// Checks a path inside a snapshot: relative, normal components only.
pub fn validate_snapshot_path(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if p.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::InvalidInput(format!(
            "{p:?} is not a valid file name inside a snapshot (relative, no `..`)"
        )));
    }
    Ok(path.to_path_buf())
}

/// Backs up a stream (and extra files) into a new snapshot. Nothing that looks like a
/// snapshot is written unless the stream ended without error.
pub fn backup_stream(
    ctx: &EngineCtx,
    req: StreamBackup,
    snap: SnapshotFile,
) -> Result<SnapshotFile> {
    let main_path = validate_snapshot_path(&req.path)?;
    let mut extra_paths = Vec::new();
    for e in &req.extra_files {
        let p = validate_snapshot_path(&e.path)?;
        if p <= main_path {
            return Err(Error::InvalidInput(format!(
                "extra file {:?} must sort after the stream {:?}",
                e.path, req.path
            )));
        }
        extra_paths.push(p);
    }
    if extra_paths.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidInput(
            "extra files must be sorted and distinct".into(),
        ));
    }

    let repo = ctx.open()?;
    if let Some(why) = fast_unsupported(&repo) {
        // Fallback: rustic_core's archiver (see the module comment).
        tracing::info!(reason = %why, "backing up the stream with rustic_core's archiver");
        return backup_stream_rustic(ctx, req, snap, main_path, extra_paths);
    }

    let shared = Arc::new(StreamShared::default());
    shared.set(StreamState::Running);
    let dir_time = snap.time.timestamp();
    let mut plan = VecDeque::new();
    let mut dirs_planned = std::collections::BTreeSet::new();
    let mut plan_dirs = |file: &Path, plan: &mut VecDeque<Planned>| {
        let mut dir = PathBuf::new();
        for c in file.parent().into_iter().flat_map(Path::components) {
            dir.push(c);
            if dirs_planned.insert(dir.clone()) {
                plan.push_back(Planned::Dir(dir.clone()));
            }
        }
    };
    plan_dirs(&main_path, &mut plan);
    plan.push_back(Planned::Main(GuardedReader {
        inner: req.reader,
        shared: shared.clone(),
        gate: None,
        path: main_path.clone(),
        read: 0,
    }));
    for (e, p) in req.extra_files.into_iter().zip(extra_paths) {
        plan_dirs(&p, &mut plan);
        plan.push_back(Planned::Extra(p, e.path, e.content));
    }
    let src = FastStreamSource {
        plan: Mutex::new(plan),
        shared: shared.clone(),
        dir_time,
    };
    let progress = ctx.progress.progress(ProgressType::Bytes, "backing up...");
    let opts = ctx.fast_backup_options(progress.clone());
    let be = ctx.fast_backend();
    let prepared = fast::backup::prepare(&repo, &be, &src, &[main_path], snap, &opts);
    progress.finish();
    // A pipeline error is the cause (the stream then stopped early); then the stream's
    // own failure; only a stream read to its end with every extra file gets a snapshot.
    let pending = prepared.map_err(fast_err)?;
    if let Some(f) = shared
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(f);
    }
    if let Some((path, why)) = pending.skipped().first() {
        return Err(Error::StreamFailed(format!("{path}: {why}")));
    }
    if *shared.state.lock().unwrap_or_else(|e| e.into_inner()) != Some(StreamState::Done) {
        return Err(Error::StreamFailed(
            "the stream was not read to its end".into(),
        ));
    }
    let (sn, _) = pending.commit(&*be).map_err(fast_err)?;
    Ok(sn)
}

/// One step of a stream snapshot for the hot path, in tree order.
enum Planned {
    /// A directory on the way to a file (dated like the snapshot: restic would show year
    /// 1 for a directory without time).
    Dir(PathBuf),
    /// The stream.
    Main(GuardedReader),
    /// An extra file: its path, its name for messages, its producer.
    Extra(
        PathBuf,
        String,
        Box<dyn FnOnce() -> std::result::Result<Vec<u8>, String> + Send>,
    ),
}

/// The opener the hot path's workers get.
enum FastStreamOpen {
    Main(GuardedReader),
    Bytes(Vec<u8>),
}

impl ReadSourceOpen for FastStreamOpen {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        Ok(match self {
            Self::Main(r) => Box::new(r),
            Self::Bytes(b) => Box::new(Cursor::new(b)),
        })
    }
}

struct FastStreamSource {
    plan: Mutex<VecDeque<Planned>>,
    shared: Arc<StreamShared>,
    dir_time: jiff::Timestamp,
}

impl ReadSource for FastStreamSource {
    type Open = FastStreamOpen;
    type Iter = FastStreamEntries;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        FastStreamEntries {
            plan: std::mem::take(&mut *self.plan.lock().unwrap_or_else(|e| e.into_inner())),
            shared: self.shared.clone(),
            dir_time: self.dir_time,
        }
    }
}

/// The entries of a stream snapshot. Extra files are produced on the walking thread, which
/// asks for them only after handing the stream to a worker (the hot path pulls entries
/// lazily), so waiting here for the stream's end blocks no worker.
struct FastStreamEntries {
    plan: VecDeque<Planned>,
    shared: Arc<StreamShared>,
    dir_time: jiff::Timestamp,
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Iterator for FastStreamEntries {
    type Item = RusticResult<ReadSourceEntry<FastStreamOpen>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (path, node, open) = match self.plan.pop_front()? {
            Planned::Dir(path) => {
                let meta = Metadata {
                    mode: Some(0o755),
                    mtime: Some(self.dir_time),
                    ..Metadata::default()
                };
                let node =
                    Node::new_node(std::ffi::OsStr::new(&name_of(&path)), NodeType::Dir, meta);
                (path, node, None)
            }
            Planned::Main(r) => {
                let path = r.path.clone();
                (
                    path.clone(),
                    file_node(&name_of(&path)),
                    Some(FastStreamOpen::Main(r)),
                )
            }
            Planned::Extra(path, label, content) => {
                // Extra files describe a complete stream: produce them only after it
                // ended well; after a failure the snapshot is abandoned anyway.
                if self.shared.wait_end() != StreamState::Done {
                    self.plan.clear();
                    return None;
                }
                match content() {
                    Ok(bytes) => (
                        path.clone(),
                        file_node(&name_of(&path)),
                        Some(FastStreamOpen::Bytes(bytes)),
                    ),
                    Err(msg) => {
                        self.shared
                            .fail(None, Error::StreamFailed(format!("{label}: {msg}")));
                        self.plan.clear();
                        return None;
                    }
                }
            }
        };
        Some(Ok(ReadSourceEntry { path, node, open }))
    }
}

/// [`backup_stream`] on rustic_core's archiver, for repositories the hot path does not
/// write.
fn backup_stream_rustic(
    ctx: &EngineCtx,
    req: StreamBackup,
    snap: SnapshotFile,
    main_path: PathBuf,
    extra_paths: Vec<PathBuf>,
) -> Result<SnapshotFile> {
    // A private backend (same store, own commit gate) and a repository opened on it with
    // the master key (no KDF): concurrent stream backups never share a gate.
    let backend = RepoBackend::new(ctx.backend.store().clone());
    let gate = backend.gate().clone();
    let repo = ctx.open_on(backend)?;

    let shared = Arc::new(StreamShared::default());
    shared.set(StreamState::Running);
    let mut entries = vec![(
        main_path.clone(),
        StreamOpen::Main(GuardedReader {
            inner: req.reader,
            shared: shared.clone(),
            gate: Some(gate.clone()),
            path: main_path.clone(),
            read: 0,
        }),
    )];
    for (e, p) in req.extra_files.into_iter().zip(extra_paths) {
        entries.push((
            p,
            StreamOpen::Extra {
                path: e.path,
                content: e.content,
                shared: shared.clone(),
                gate: gate.clone(),
            },
        ));
    }
    let source = StreamSource {
        entries: Mutex::new(entries),
    };
    let opts = BackupOptions::default();
    let indexed = repo.to_indexed_ids().map_err(rerr)?;
    // rustic_core would save the snapshot with size-0 file nodes (restic then restores empty
    // files); capture it instead and write corrected trees and the snapshot ourselves.
    gate.set_capture(true);
    let quiet = super::log_bridge::QuietArchiver::new();
    let result = indexed.archive(&opts, &source, snap, &[main_path]);
    drop(quiet);
    let failure = shared
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let snap = match (result, failure) {
        (_, Some(f)) => return Err(f),
        (Ok(sn), None) => sn,
        (Err(e), None) => return Err(rerr(e)),
    };
    let sizes = std::mem::take(&mut *shared.sizes.lock().unwrap_or_else(|e| e.into_inner()));
    tracing::debug!(?sizes, tree = %snap.tree, "finishing stream snapshot");
    finish_stream_snapshot(ctx, snap, &sizes)
}

/// Rewrites the trees on the way to each streamed file with the file's real size, then
/// writes the snapshot (pack, index, snapshot: the format's commit order).
fn finish_stream_snapshot(
    ctx: &EngineCtx,
    mut snap: SnapshotFile,
    sizes: &[(PathBuf, u64)],
) -> Result<SnapshotFile> {
    let repo = ctx.open()?.to_indexed_ids().map_err(rerr)?;
    let mut new_trees = Vec::new();
    let dir_time = snap.time.timestamp();
    let root = fix_tree(
        &repo,
        snap.tree,
        Path::new(""),
        sizes,
        dir_time,
        &mut new_trees,
    )?;
    let key = super::crypto::CryptoKey::from_master(&ctx.key)
        .map_err(|e| Error::Engine(e.to_string()))?;
    let store = ctx.backend.store();
    super::format::write_tree_pack(store.as_ref(), &key, &new_trees)?;
    snap.tree = root;
    super::format::write_snapshot(store.as_ref(), &key, snap)
}

fn fix_tree<S: rustic_core::IndexedTree>(
    repo: &Repository<S>,
    id: rustic_core::TreeId,
    dir: &Path,
    sizes: &[(PathBuf, u64)],
    dir_time: jiff::Timestamp,
    out: &mut Vec<(Vec<u8>, String)>,
) -> Result<rustic_core::TreeId> {
    let mut tree = repo.get_tree(&id).map_err(rerr)?;
    let mut changed = false;
    for node in &mut tree.nodes {
        let path = dir.join(node.name());
        if node.is_file() {
            if let Some((_, n)) = sizes.iter().find(|(p, _)| *p == path)
                && node.meta.size != *n
            {
                node.meta.size = *n;
                changed = true;
            }
        } else if node.is_dir()
            && let Some(sub) = node.subtree
            && sizes.iter().any(|(p, _)| p.starts_with(&path))
        {
            let new = fix_tree(repo, sub, &path, sizes, dir_time, out)?;
            if new != sub {
                node.subtree = Some(new);
                changed = true;
            }
            // Directories made up for the stream path have no time; restic would show
            // year 1 and restore them dated 1901.
            if node.meta.mtime.is_none() {
                node.meta.mtime = Some(dir_time);
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(id);
    }
    let (bytes, new_id) = tree
        .serialize()
        .map_err(|e| Error::Engine(format!("serialising a tree: {e}")))?;
    out.push((bytes, new_id.to_hex().as_str().to_string()));
    Ok(new_id)
}

/// Restores `target.path` of snapshot `snap` into `target.target`: a directory's content
/// into the target, a file inside it (as restic does). Every blob's SHA-256 is verified
/// against its id before it is written.
pub fn restore(
    ctx: &EngineCtx,
    snap: &SnapshotFile,
    target: &RestoreTarget,
) -> Result<RestoreStats> {
    if target.delete {
        // Fallback: removing what is not in the snapshot is rustic_core's restorer's job
        // (it compares the target with the snapshot; the hot path only writes).
        return restore_rustic(ctx, snap, target);
    }
    let repo = ctx.open()?;
    let progress = ctx
        .progress
        .progress(ProgressType::Bytes, "restoring file contents...");
    let defaults = fast::restore::RestoreOptions::default();
    let opts = fast::restore::RestoreOptions {
        // A worker reads a segment, then decrypts and writes it. From S3 most of that is
        // waiting on the read (the SeaweedFS restore used 0.78 of restic's CPU yet took
        // longer), so twice as many workers keep reads in flight; each holds at most one
        // segment (8 MiB) and its blobs.
        workers: if ctx.backend.is_remote() {
            defaults.workers * 2
        } else {
            defaults.workers
        },
        numeric_ids: target.numeric_ids,
        progress: Some(progress.clone()),
        ..defaults
    };
    let inner_path = target.path.trim_start_matches('/');
    let result = fast::restore::restore(
        &repo,
        &ctx.fast_backend(),
        &snap.tree,
        inner_path,
        &target.target,
        &opts,
    );
    progress.finish();
    let stats = result.map_err(|e| match e {
        FastError::NotFound(_) => Error::PathNotFound {
            snapshot: snap.id.to_hex().as_str()[..8].to_string(),
            path: target.path.clone(),
        },
        other => fast_err(other),
    })?;
    Ok(RestoreStats {
        files_restored: stats.files,
        // The hot path writes every file; it does not compare with what is there.
        files_unchanged: 0,
        bytes_restored: stats.bytes,
    })
}

fn restore_rustic(
    ctx: &EngineCtx,
    snap: &SnapshotFile,
    target: &RestoreTarget,
) -> Result<RestoreStats> {
    let repo = ctx.open()?.to_indexed().map_err(rerr)?;
    let inner_path = target.path.trim_start_matches('/');
    let node = repo
        .node_from_snapshot_and_path(snap, inner_path)
        .map_err(|e| match Error::from_rustic(&e) {
            s @ Error::Storage(_) => s,
            _ => Error::PathNotFound {
                snapshot: snap.id.to_hex().as_str()[..8].to_string(),
                path: target.path.clone(),
            },
        })?;
    let ls = repo.ls(&node, &LsOptions::default()).map_err(rerr)?;
    // The target is always a directory (a restored file lands inside it, as with restic);
    // rustic_core reads a trailing slash as "directory".
    let mut target_str = target.target.to_string_lossy().into_owned();
    if !target_str.ends_with('/') {
        target_str.push('/');
    }
    let dest = LocalDestination::new(&target_str, true, false).map_err(rerr)?;
    let opts = RestoreOptions::default()
        .delete(target.delete)
        .numeric_id(target.numeric_ids);
    let plan = repo
        .prepare_restore(&opts, ls.clone(), &dest, false)
        .map_err(rerr)?;
    let stats = RestoreStats {
        files_restored: plan.stats.files.restore,
        files_unchanged: plan.stats.files.unchanged,
        bytes_restored: plan.restore_size,
    };
    repo.restore(plan, &opts, ls, &dest).map_err(rerr)?;
    Ok(stats)
}

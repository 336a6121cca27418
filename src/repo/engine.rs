//! The swappable core of the three hot operations: back up paths, back up a stream,
//! restore. Each is one function with plain inputs (an [`EngineCtx`] and our request types)
//! and plain outputs, currently implemented on rustic_core. A faster implementation (the
//! `fast` module of the performance work) can replace any of them without touching the
//! facade's callers: locking, snapshot resolution and error mapping stay in `mod.rs`.

use std::{
    io::{self, Cursor, Read},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
};

use rustic_core::{
    BackupOptions, ErrorKind, Excludes, LocalDestination, LocalSourceFilterOptions, LsOptions,
    OpenStatus, PathList, ReadSource, ReadSourceEntry, ReadSourceOpen, Repository,
    RepositoryBackends, RepositoryOptions, RestoreOptions, RusticError, RusticResult,
    repofile::{Metadata, Node, NodeType, SnapshotFile},
};

use super::{Error, Result, backend::RepoBackend, progress::TermProgress, stream::CommandFailed};

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

/// Backs up `req.paths` into a new snapshot prepared from `snap` (tags, host, time).
pub fn backup_paths(ctx: &EngineCtx, req: &PathBackup, snap: SnapshotFile) -> Result<SnapshotFile> {
    let globs = req
        .excludes
        .iter()
        .map(|e| format!("!{e}"))
        .collect::<Vec<_>>();
    let opts = BackupOptions::default()
        .excludes(Excludes::default().globs(globs))
        .ignore_filter_opts(
            LocalSourceFilterOptions::default()
                .exclude_if_present(req.exclude_if_present.clone())
                .one_file_system(req.one_file_system),
        );
    let source = PathList::from_iter(req.paths.iter().cloned());
    let indexed = ctx.open()?.to_indexed_ids().map_err(rerr)?;
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

    fn fail(&self, gate: &super::backend::CommitGate, err: Error) {
        gate.veto(err.to_string());
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
    gate: Arc<super::backend::CommitGate>,
    path: PathBuf,
    read: u64,
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
                self.shared.fail(&self.gate, ours);
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
        gate: Arc<super::backend::CommitGate>,
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
                        shared.fail(&gate, Error::StreamFailed(format!("{path}: {msg}")));
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
            gate: gate.clone(),
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

/// Restores `target.path` of snapshot `snap` into `target.target`.
pub fn restore(
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

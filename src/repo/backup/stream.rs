//! A byte stream (a database dump, the manifests of a namespace) backed up as one file
//! of a snapshot, plus small files produced only after the stream ended well (its
//! metadata). The stream and the extra files are the entries of a `ReadSource` fed to
//! the backup pipeline; the snapshot is committed only if the stream (for a
//! [`CommandStream`](crate::repo::CommandStream): its command too) and every extra file
//! succeeded: data packs and index may be written, the snapshot is not.

use std::{
    collections::VecDeque,
    io::{self, Cursor, Read},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
};

use rustic_core::{
    ProgressBars, ProgressType, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult,
    repofile::{Metadata, Node, NodeType, SnapshotFile},
};

use crate::repo::{
    Error, Result,
    engine::{EngineCtx, StreamBackup, backup_options},
    stream::CommandFailed,
};

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

    fn fail(&self, err: Error) {
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
    /// Its path inside the snapshot.
    path: PathBuf,
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
                self.shared.set(StreamState::Done);
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let ours = match e.get_ref().and_then(|x| x.downcast_ref::<CommandFailed>()) {
                    Some(f) => Error::CommandFailed(f.clone()),
                    None => Error::StreamFailed(e.to_string()),
                };
                self.shared.fail(ours);
                Err(e)
            }
        }
    }
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

/// Checks a path inside a snapshot: relative, normal components only.
pub(crate) fn validate_snapshot_path(p: &str) -> Result<PathBuf> {
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
pub(crate) fn backup_stream(
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
        path: main_path.clone(),
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
    let opts = backup_options(progress.clone());
    let prepared = super::prepare(ctx, &src, &[main_path], snap, &opts);
    progress.finish();
    // A pipeline error is the cause (the stream then stopped early); then the stream's
    // own failure; only a stream read to its end with every extra file gets a snapshot.
    let pending = prepared?;
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
    let (sn, _) = pending.commit()?;
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
                            .fail(Error::StreamFailed(format!("{label}: {msg}")));
                        self.plan.clear();
                        return None;
                    }
                }
            }
        };
        Some(Ok(ReadSourceEntry { path, node, open }))
    }
}

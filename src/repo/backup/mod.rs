//! The backup pipeline. Stages run on their own threads, joined by bounded channels so
//! memory stays bounded whatever the input:
//!
//! ```text
//! walk + trees (caller's thread) ──files──▶ chunk+hash ×F ──new blobs──▶ zstd+encrypt ×C
//!        ▲                                     │                               │
//!        └────────────── content ids ──────────┘                               ▼
//!                                              upload ×U ◀──sealed packs── packer
//! ```
//!
//! The walking thread also serialises trees and packs them (trees are small), matches
//! entries against the parent snapshot (unchanged files reuse their content ids without
//! being read), and writes, in this order, the index files for packs already uploaded and
//! then the snapshot. A failure anywhere stops every stage (channels disconnect) and no
//! snapshot is written.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    sync::{Arc, Mutex},
    thread,
    time::Instant,
};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use rustic_core::{
    FileType, Id, ReadSource, ReadSourceEntry, ReadSourceOpen, StringList,
    repofile::{BlobType, ConfigFile, Node, NodeType, SnapshotFile, SnapshotSummary, Tree},
};

use super::{
    Error, Result,
    backend::ObjectStore,
    engine::EngineCtx,
    format::{
        crypto::Crypto,
        files, hash,
        index::{IndexEntry, IndexWriter, RepoIndex},
        object_path,
        pack::{MAX_BLOBS, PackBuilder, SealedPack, target_size},
        tree::TreeLoader,
    },
};
use chunker::{Cdc, ChunkReader};
use treewalk::{Event, TreeEvents};

pub(crate) mod chunker;
pub(crate) mod stream;
pub(crate) mod treewalk;

/// Which snapshot unchanged files are taken from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum ParentChoice {
    /// The latest snapshot with the same host name and paths (restic's default).
    #[default]
    Latest,
    /// No parent: read every file.
    None,
}

/// Tuning and behaviour of [`backup`].
#[derive(Debug, Clone)]
pub(crate) struct BackupOptions {
    /// Parent snapshot selection.
    pub(crate) parent: ParentChoice,
    /// Treat a changed ctime as unchanged (restic `--ignore-ctime`).
    pub(crate) ignore_ctime: bool,
    /// Treat a changed inode as unchanged (restic `--ignore-inode`).
    pub(crate) ignore_inode: bool,
    /// zstd level for data blobs; `None` takes the repository's setting (0 = zstd's
    /// default, level 3).
    pub(crate) compression_level: Option<i32>,
    /// Threads reading, chunking, hashing, compressing and encrypting (one file each;
    /// an idle thread compresses blobs of another's file, so a single large file or
    /// stream still uses them all).
    pub(crate) workers: usize,
    /// Threads uploading packs (raise for high-latency object stores).
    pub(crate) upload_workers: usize,
    /// Bytes of file content processed (read, or taken unchanged from the parent).
    pub(crate) progress: Option<rustic_core::Progress>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        let cores = thread::available_parallelism().map_or(2, usize::from);
        Self {
            parent: ParentChoice::Latest,
            ignore_ctime: false,
            ignore_inode: false,
            compression_level: None,
            workers: cores,
            upload_workers: 2,
            progress: None,
        }
    }
}

/// What a backup did, beyond the snapshot's own summary.
#[derive(Debug, Clone, Default)]
pub(crate) struct BackupStats {
    /// Id of the snapshot written.
    pub(crate) snapshot: Id,
    /// Entries skipped because they could not be read: `(path, reason)`.
    pub(crate) skipped: Vec<(String, String)>,
    /// Data packs and tree packs uploaded.
    pub(crate) packs_written: u64,
    /// Index files written.
    pub(crate) index_files_written: u64,
    /// Seconds spent loading the index and the parent snapshot, in the pipeline (walk,
    /// read, pack, upload), and committing (index files and snapshot).
    pub(crate) phase_secs: [f64; 3],
}

/// A file to read, and where its content ids go.
struct FileJob<O> {
    frame: usize,
    slot: usize,
    path: PathBuf,
    open: O,
}

/// The content of a read file (or why it could not be read).
struct FileDone {
    frame: usize,
    slot: usize,
    result: Result<(Vec<Id>, u64, u64), (String, String)>,
}

/// A new blob on its way to compression.
struct PlainBlob {
    id: Id,
    data: Vec<u8>,
}

/// A compressed and encrypted blob on its way into a pack.
struct SealedBlob {
    id: Id,
    data: Vec<u8>,
    /// Plaintext length of a compressed blob (`None`: stored uncompressed).
    plain_len: Option<u32>,
}

/// A directory being assembled.
struct Frame {
    /// Entries in walk order; `None` marks an entry dropped because it was unreadable.
    nodes: Vec<Option<Node>>,
    /// Files being read plus subdirectories not yet finished.
    pending: usize,
    /// The walk has left the directory.
    closed: bool,
    /// Where the finished tree's id goes: the parent frame and the slot of this dir.
    up: Option<(usize, usize)>,
    /// The same directory in the parent snapshot, for unchanged-file matching.
    parent: Option<Arc<Tree>>,
    /// Cursor into `parent.nodes` (both lists are sorted by name).
    cursor: usize,
    /// Path, for messages.
    path: PathBuf,
}

/// Recycled byte buffers: blob buffers go back to the stage that fills them, so the
/// pipeline stops allocating (and page-faulting) once warm, and its footprint is the
/// buffers in circulation rather than whatever the allocator keeps around.
#[derive(Clone)]
struct Pool {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

/// Buffers a pool keeps; more are freed (the pipeline has about this many in flight).
const POOL_KEEP: usize = 6;

/// Buffers bigger than this are freed rather than kept (chunks are usually ~1.5 MiB;
/// keeping rare 8 MiB ones would pin memory for the rest of the run).
const POOL_KEEP_MAX: usize = 4 << 20;

impl Pool {
    fn new() -> Self {
        let (tx, rx) = unbounded();
        Self { tx, rx }
    }
    fn take(&self) -> Vec<u8> {
        self.rx.try_recv().unwrap_or_default()
    }
    fn give(&self, mut v: Vec<u8>) {
        if v.capacity() <= POOL_KEEP_MAX && self.rx.len() < POOL_KEEP {
            v.clear();
            _ = self.tx.send(v);
        }
    }
}

/// Packs uploaded so far and the index files written for them.
struct Committed {
    idx: IndexWriter,
    packs: u64,
    data_blobs: u64,
    tree_blobs: u64,
    added: u64,
    added_packed: u64,
}

impl Committed {
    fn record(&mut self, id: Id, entries: Vec<IndexEntry>) -> Result<()> {
        self.packs += 1;
        for e in &entries {
            self.added += u64::from(e.uncompressed_length.unwrap_or(e.length));
            self.added_packed += u64::from(e.length);
            match e.tpe {
                BlobType::Data => self.data_blobs += 1,
                BlobType::Tree => self.tree_blobs += 1,
            }
        }
        self.idx.add_pack(id, entries)
    }
}

/// The first error of any stage; later errors are consequences.
#[derive(Default)]
struct FirstError(Mutex<Option<Error>>);

impl FirstError {
    fn set(&self, e: Error) {
        let mut g = self.0.lock().expect("error slot");
        if g.is_none() {
            *g = Some(e);
        }
    }
    fn take(&self) -> Option<Error> {
        self.0.lock().expect("error slot").take()
    }
}

/// A backup whose data and index are in the repository but whose snapshot is not yet
/// written: the caller decides (for example only if a dump command exited 0).
/// Dropping it leaves only unreferenced, indexed packs, which prune removes.
#[derive(Debug)]
pub(crate) struct PendingSnapshot {
    snap: SnapshotFile,
    stats: BackupStats,
    store: Arc<dyn ObjectStore>,
    crypto: Crypto,
    version: u32,
    started: Instant,
}

impl PendingSnapshot {
    /// Entries left out because they could not be read: `(path, reason)`.
    #[must_use]
    pub(crate) fn skipped(&self) -> &[(String, String)] {
        &self.stats.skipped
    }

    /// Writes the snapshot file: the commit point of the backup.
    pub(crate) fn commit(mut self) -> Result<(SnapshotFile, BackupStats)> {
        let clock = Instant::now();
        if let Some(summary) = self.snap.summary.as_mut() {
            summary.total_duration = self.started.elapsed().as_secs_f64();
        }
        let snap =
            files::save_snapshot(self.store.as_ref(), &self.crypto, self.version, self.snap)?;
        self.stats.snapshot = *snap.id;
        self.stats.phase_secs[2] += clock.elapsed().as_secs_f64();
        Ok((snap, self.stats))
    }
}

/// Backs up the entries of `src` and writes a snapshot: [`prepare`] then
/// [`PendingSnapshot::commit`].
pub(crate) fn backup<R>(
    ctx: &EngineCtx,
    src: &R,
    backup_paths: &[PathBuf],
    snap: SnapshotFile,
    opts: &BackupOptions,
) -> Result<(SnapshotFile, BackupStats)>
where
    R: ReadSource,
    R::Open: Send,
{
    prepare(ctx, src, backup_paths, snap, opts)?.commit()
}

/// Backs up the entries of `src`: data packs, then index files; the snapshot is
/// returned uncommitted.
///
/// `snap` is the prefilled snapshot (host, tags, time, ...); `backup_paths` become its
/// `paths` (as text: a path that is not UTF-8 is recorded with U+FFFD in place of the
/// bytes that are not, as restic records it; the names inside the trees are exact).
///
/// Unreadable source entries are not errors: they are left out of the snapshot and
/// listed in [`BackupStats::skipped`].
#[allow(clippy::too_many_lines)]
pub(crate) fn prepare<R>(
    ctx: &EngineCtx,
    src: &R,
    backup_paths: &[PathBuf],
    mut snap: SnapshotFile,
    opts: &BackupOptions,
) -> Result<PendingSnapshot>
where
    R: ReadSource,
    R::Open: Send,
{
    let start = Instant::now();
    let config = ctx.config.clone();
    let crypto = ctx.crypto.clone();
    let be = &ctx.store;
    let cdc = chunker_for(&config)?;
    // `None`: blobs are stored uncompressed (format v1, or v2 with compression off)
    let level = match opts.compression_level {
        Some(l) => Some(l),
        None => ctx.compression(),
    };

    let mut paths = StringList::default();
    for p in backup_paths {
        paths.add(p.to_string_lossy().into_owned());
    }
    snap.paths = paths;

    let mut clock = Instant::now();
    let index = RepoIndex::load(&ctx.store, &ctx.crypto)?;
    let parent_snap = find_parent(ctx, &snap, &opts.parent)?;
    let mut trees = TreeLoader::new(be.clone(), crypto.clone(), &index);
    // a parent whose root tree cannot be read only costs reading every file again
    let parent_root = match &parent_snap {
        Some(p) => match trees.load(&p.tree) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, parent = %p.id, "parent snapshot not used");
                None
            }
        },
        None => None,
    };
    if let (Some(p), Some(_)) = (&parent_snap, &parent_root) {
        snap.parent = Some(p.id);
        snap.parents = vec![p.id];
    }

    let errors = FirstError::default();
    let new_blobs: Mutex<HashSet<Id>> = Mutex::default();
    let mut stats = BackupStats::default();
    let mut summary = snap.summary.take().unwrap_or_default();
    summary.backup_start = jiff::Zoned::now();

    let workers = opts.workers.max(1);
    let (job_tx, job_rx) = bounded::<FileJob<R::Open>>(workers * 4);
    let (done_tx, done_rx) = unbounded::<FileDone>();
    let (help_tx, help_rx) = bounded::<PlainBlob>(workers);
    let (sealed_tx, sealed_rx) = bounded::<SealedBlob>(workers);
    let (pack_tx, pack_rx) = bounded::<SealedPack>(0);
    let sealed_pool = Pool::new();
    let (free_pack_tx, free_pack_rx) = unbounded::<bytes::BytesMut>();
    let (written_tx, written_rx) = unbounded::<(Id, Vec<IndexEntry>)>();
    let mut committed = Committed {
        idx: IndexWriter::new(ctx.store.clone(), crypto.clone(), ctx.config.version),
        packs: 0,
        data_blobs: 0,
        tree_blobs: 0,
        added: 0,
        added_packed: 0,
    };
    let shared = Shared {
        cdc: &cdc,
        index: &index,
        new_blobs: &new_blobs,
        crypto: &crypto,
        level,
        errors: &errors,
        sealed_pool: &sealed_pool,
        progress: opts.progress.as_ref(),
        idle: AtomicUsize::new(0),
        busy: AtomicUsize::new(workers),
    };

    let t_setup = clock.elapsed().as_secs_f64();
    clock = Instant::now();
    let root_tree = thread::scope(|s| -> Result<Option<Id>> {
        for _ in 0..workers {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            let (help_tx, help_rx, sealed_tx) =
                (help_tx.clone(), help_rx.clone(), sealed_tx.clone());
            let shared = &shared;
            s.spawn(move || worker(shared, &job_rx, &done_tx, &help_tx, &help_rx, &sealed_tx));
        }
        drop((job_rx, done_tx, help_tx, help_rx, sealed_tx));
        {
            let (pack_tx, crypto, config, index) = (pack_tx.clone(), &crypto, &config, &index);
            let (pool, free) = (&sealed_pool, free_pack_rx);
            s.spawn(move || {
                packer(
                    &sealed_rx,
                    &pack_tx,
                    crypto,
                    config,
                    index.data_bytes,
                    pool,
                    &free,
                )
            });
        }
        for _ in 0..opts.upload_workers.max(1) {
            let (pack_rx, written_tx, be, errors) =
                (pack_rx.clone(), written_tx.clone(), be.clone(), &errors);
            let free = free_pack_tx.clone();
            s.spawn(move || uploader(&pack_rx, &written_tx, &*be, errors, &free));
        }
        drop((pack_rx, written_tx, free_pack_tx));

        let mut walk = Walk {
            frames: Vec::new(),
            free: Vec::new(),
            stack: Vec::new(),
            outstanding: 0,
            index: &index,
            new_trees: HashSet::new(),
            tree_pack: PackBuilder::new(BlobType::Tree, bytes::BytesMut::new()),
            tree_target: target_size(&config, BlobType::Tree, index.tree_bytes),
            tree_bytes: index.tree_bytes,
            config: &config,
            crypto: &crypto,
            zstd: match level {
                Some(l) => Some(
                    zstd::bulk::Compressor::new(l)
                        .map_err(|e| Error::Internal(format!("zstd: {e}")))?,
                ),
                None => None,
            },
            pack_tx: Some(pack_tx),
            opts,
            summary: &mut summary,
            skipped: &mut stats.skipped,
            root: None,
            written: &written_rx,
            committed: &mut committed,
        };
        let res = walk.run(src, &job_tx, &done_rx, parent_root, &mut trees);
        drop(job_tx);
        let res = res
            .and_then(|()| walk.drain(&done_rx))
            .and_then(|()| walk.finish());
        // dropping the tree-pack sender lets the uploaders end once the packer has
        walk.pack_tx = None;
        if let Err(e) = res {
            errors.set(e);
        }
        Ok(walk.root)
    })?;

    let t_pipeline = clock.elapsed().as_secs_f64();
    clock = Instant::now();
    // all stages have ended; index what was uploaded even on failure, so a retry reuses
    // the packs instead of uploading them again
    for (id, entries) in written_rx {
        committed.record(id, entries)?;
    }
    committed.idx.flush()?;
    stats.packs_written = committed.packs;
    stats.index_files_written = committed.idx.written().len() as u64;
    summary.data_blobs = committed.data_blobs;
    summary.tree_blobs = committed.tree_blobs;
    summary.data_added = committed.added;
    summary.data_added_packed = committed.added_packed;
    if let Some(e) = errors.take() {
        return Err(e);
    }
    let root = root_tree.ok_or_else(|| Error::Internal("no root tree".into()))?;

    summary.backup_end = jiff::Zoned::now();
    summary.backup_duration = start.elapsed().as_secs_f64();
    summary.total_duration = summary.backup_duration;
    snap.tree = root.into();
    snap.summary = Some(summary);
    stats.phase_secs = [t_setup, t_pipeline, clock.elapsed().as_secs_f64()];
    Ok(PendingSnapshot {
        snap,
        stats,
        store: ctx.store.clone(),
        crypto,
        version: ctx.config.version,
        started: start,
    })
}

/// The repository's chunker: restic's content-defined chunking with the repository's
/// polynomial. rustic's fixed-size chunker is refused (restic cannot write such a
/// repository either); restoring from one works.
pub(crate) fn chunker_for(config: &ConfigFile) -> Result<Cdc> {
    if config.chunker() != rustic_core::repofile::Chunker::Rabin {
        return Err(Error::Unsupported(
            "the repository uses rustic's fixed-size chunker; Lifeboat backs up into \
             restic-compatible repositories (Rabin chunker): initialise a new one with \
             `lifeboat repo init`"
                .into(),
        ));
    }
    let poly = config
        .poly()
        .map_err(|e| Error::corrupt("config", format!("chunker polynomial: {e}")))?;
    Cdc::new(
        poly,
        config.chunk_min_size(),
        config.chunk_size(),
        config.chunk_max_size(),
    )
    .map_err(|e| Error::Unsupported(format!("chunker settings: {e}")))
}

fn find_parent(
    ctx: &EngineCtx,
    snap: &SnapshotFile,
    choice: &ParentChoice,
) -> Result<Option<SnapshotFile>> {
    if *choice == ParentChoice::None {
        return Ok(None);
    }
    let all = files::load_snapshots(&ctx.store, &ctx.crypto)?;
    Ok(match choice {
        ParentChoice::None => None,
        // rustic's default grouping for parents: host, label and paths
        ParentChoice::Latest => all
            .into_iter()
            .filter(|s| {
                s.hostname == snap.hostname && s.label == snap.label && s.paths == snap.paths
            })
            .max_by(|a, b| a.time.cmp(&b.time)),
    })
}

/// What every worker shares.
struct Shared<'a> {
    cdc: &'a Cdc,
    index: &'a RepoIndex,
    new_blobs: &'a Mutex<HashSet<Id>>,
    crypto: &'a Crypto,
    level: Option<i32>,
    errors: &'a FirstError,
    sealed_pool: &'a Pool,
    progress: Option<&'a rustic_core::Progress>,
    /// Workers waiting for work: a file reader hands blobs to them instead of
    /// compressing them itself.
    idle: AtomicUsize,
    /// Workers not yet finished with their last file (helpers stay until it is 0).
    busy: AtomicUsize,
}

/// Per-thread tools of a worker.
struct Tools {
    buf: Vec<u8>,
    /// `None` when blobs are stored uncompressed.
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

/// Reads files (chunk, hash, dedup, compress, encrypt) and, when idle, compresses
/// blobs handed over by the other workers.
fn worker<O: ReadSourceOpen>(
    sh: &Shared<'_>,
    jobs: &Receiver<FileJob<O>>,
    done: &Sender<FileDone>,
    help_tx: &Sender<PlainBlob>,
    help_rx: &Receiver<PlainBlob>,
    sealed: &Sender<SealedBlob>,
) {
    let zstd = match sh.level.map(zstd::bulk::Compressor::new).transpose() {
        Ok(z) => z,
        Err(e) => {
            sh.busy.fetch_sub(1, Ordering::SeqCst);
            return sh.errors.set(Error::Internal(format!("zstd: {e}")));
        }
    };
    let mut tools = Tools {
        buf: Vec::new(),
        zstd,
    };
    let mut jobs_open = true;
    loop {
        // blobs handed over come first: their owner is waiting on nobody, but they
        // hold memory
        if let Ok(b) = help_rx.try_recv() {
            if !seal_and_send(sh, &mut tools.zstd, b.id, &b.data, sealed) {
                break;
            }
            continue;
        }
        if jobs_open {
            match jobs.try_recv() {
                Ok(job) => {
                    if !run_job(sh, &mut tools, job, done, help_tx, sealed) {
                        break;
                    }
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    jobs_open = false;
                    sh.busy.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
        } else if sh.busy.load(Ordering::SeqCst) == 0 && help_rx.is_empty() {
            return;
        }
        // nothing to do right now: wait for either kind of work
        sh.idle.fetch_add(1, Ordering::SeqCst);
        let got = if jobs_open {
            crossbeam_channel::select! {
                recv(jobs) -> j => match j {
                    Ok(job) => Some(Work::Job(job)),
                    Err(_) => Some(Work::JobsClosed),
                },
                recv(help_rx) -> b => b.ok().map(Work::Help),
            }
        } else {
            help_rx
                .recv_timeout(std::time::Duration::from_millis(2))
                .ok()
                .map(Work::Help)
        };
        sh.idle.fetch_sub(1, Ordering::SeqCst);
        let ok = match got {
            Some(Work::Job(job)) => run_job(sh, &mut tools, job, done, help_tx, sealed),
            Some(Work::Help(b)) => seal_and_send(sh, &mut tools.zstd, b.id, &b.data, sealed),
            Some(Work::JobsClosed) => {
                jobs_open = false;
                sh.busy.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => true,
        };
        if !ok {
            break;
        }
    }
    if jobs_open {
        sh.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Work<O> {
    Job(FileJob<O>),
    Help(PlainBlob),
    JobsClosed,
}

/// Processes one file; false if the pipeline has stopped.
fn run_job<O: ReadSourceOpen>(
    sh: &Shared<'_>,
    tools: &mut Tools,
    job: FileJob<O>,
    done: &Sender<FileDone>,
    help_tx: &Sender<PlainBlob>,
    sealed: &Sender<SealedBlob>,
) -> bool {
    let result = read_file(sh, tools, job.open, &job.path, help_tx, sealed);
    let stop = matches!(result, Err(None));
    let result = result.map_err(|e| {
        e.unwrap_or_else(|| (job.path.display().to_string(), "pipeline stopped".into()))
    });
    done.send(FileDone {
        frame: job.frame,
        slot: job.slot,
        result,
    })
    .is_ok()
        && !stop
}

/// Compresses and encrypts one blob and hands it to the packer; false if the packer
/// is gone.
fn seal_and_send(
    sh: &Shared<'_>,
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
    id: Id,
    plain: &[u8],
    sealed: &Sender<SealedBlob>,
) -> bool {
    let mut out = sh.sealed_pool.take();
    let plain_len = match zstd {
        Some(z) => {
            if let Err(e) = sh.crypto.seal_compressed_append(z, plain, &mut out) {
                sh.errors.set(e);
                return false;
            }
            Some(u32::try_from(plain.len()).expect("chunks are below 4 GiB"))
        }
        None => {
            sh.crypto.seal_append(plain, &mut out);
            None
        }
    };
    sealed
        .send(SealedBlob {
            id,
            data: out,
            plain_len,
        })
        .is_ok()
}

/// Reads, chunks and hashes one file; new blobs are compressed here, or handed to an
/// idle worker. `Err(None)` means the pipeline behind has stopped; `Err(Some(..))` that
/// this file could not be read.
#[allow(clippy::type_complexity)]
fn read_file<O: ReadSourceOpen>(
    sh: &Shared<'_>,
    tools: &mut Tools,
    open: O,
    path: &std::path::Path,
    help_tx: &Sender<PlainBlob>,
    sealed: &Sender<SealedBlob>,
) -> Result<(Vec<Id>, u64, u64), Option<(String, String)>> {
    let unreadable = |e: String| Some((path.display().to_string(), e));
    let reader = open.open().map_err(|e| unreadable(e.to_string()))?;
    let mut chunks = ChunkReader::new(sh.cdc, reader, &mut tools.buf);
    let mut ids = Vec::new();
    let (mut size, mut added) = (0u64, 0u64);
    while let Some(chunk) = chunks.next_chunk().map_err(|e| unreadable(e.to_string()))? {
        let id = hash(chunk);
        size += chunk.len() as u64;
        if let Some(p) = sh.progress {
            p.inc(chunk.len() as u64);
        }
        ids.push(id);
        let is_new =
            !sh.index.data.contains_key(&id) && sh.new_blobs.lock().expect("blob set").insert(id);
        if !is_new {
            continue;
        }
        added += chunk.len() as u64;
        // a copy is only worth it when another worker would otherwise sit idle
        if sh.idle.load(Ordering::SeqCst) > 0 && !help_tx.is_full() {
            let blob = PlainBlob {
                id,
                data: chunk.to_vec(),
            };
            match help_tx.try_send(blob) {
                Ok(()) => continue,
                Err(e) => {
                    let b = e.into_inner();
                    if !seal_and_send(sh, &mut tools.zstd, b.id, &b.data, sealed) {
                        return Err(None);
                    }
                    continue;
                }
            }
        }
        if !seal_and_send(sh, &mut tools.zstd, id, chunk, sealed) {
            return Err(None);
        }
    }
    Ok((ids, size, added))
}

fn packer(
    sealed: &Receiver<SealedBlob>,
    packs: &Sender<SealedPack>,
    crypto: &Crypto,
    config: &ConfigFile,
    mut stored: u64,
    pool: &Pool,
    free: &Receiver<bytes::BytesMut>,
) {
    // the buffer of a written pack comes back through `free`; at most one per uploader
    // plus the one being filled exist, since handing a pack over is a rendezvous
    // sized once for a full pack plus the largest blob, so it never reallocates
    let room = |target: u64| (target as usize) + config.chunk_max_size() + (1 << 16);
    let fresh = |free: &Receiver<bytes::BytesMut>, target: u64| {
        let b = free.try_recv().unwrap_or_default();
        // the target creeps up with the repository size; a recycled buffer that is a
        // little too small must be replaced, not grown (growing doubles it)
        if b.capacity() >= room(target) {
            b
        } else {
            bytes::BytesMut::with_capacity(room(target) + (4 << 20))
        }
    };
    let mut target = target_size(config, BlobType::Data, stored);
    let mut pack = PackBuilder::new(BlobType::Data, fresh(free, target));
    for b in sealed {
        pack.add(b.id, &b.data, b.plain_len);
        pool.give(b.data);
        if pack.size() >= target || pack.len() >= MAX_BLOBS {
            stored += pack.size();
            target = target_size(config, BlobType::Data, stored);
            let full = std::mem::replace(
                &mut pack,
                PackBuilder::new(BlobType::Data, fresh(free, target)),
            );
            if packs.send(full.seal(crypto)).is_err() {
                return;
            }
        }
    }
    if !pack.is_empty() {
        _ = packs.send(pack.seal(crypto));
    }
}

fn uploader(
    packs: &Receiver<SealedPack>,
    written: &Sender<(Id, Vec<IndexEntry>)>,
    be: &dyn ObjectStore,
    errors: &FirstError,
    free: &Sender<bytes::BytesMut>,
) {
    for pack in packs {
        let id = pack.id();
        if let Err(e) = be.put(&object_path(FileType::Pack, &id), vec![pack.data.clone()]) {
            return errors.set(e.into());
        }
        let SealedPack { tpe, data, entries } = pack;
        if written.send((id, entries)).is_err() {
            return;
        }
        if tpe == BlobType::Data {
            _ = free.send(data.try_into_mut().unwrap_or_default());
        }
    }
}

/// The walking thread's state: directories being assembled and the tree packer.
struct Walk<'a> {
    frames: Vec<Option<Frame>>,
    free: Vec<usize>,
    stack: Vec<usize>,
    outstanding: usize,
    index: &'a RepoIndex,
    new_trees: HashSet<Id>,
    tree_pack: PackBuilder,
    tree_target: u64,
    tree_bytes: u64,
    config: &'a ConfigFile,
    crypto: &'a Crypto,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    pack_tx: Option<Sender<SealedPack>>,
    opts: &'a BackupOptions,
    summary: &'a mut SnapshotSummary,
    skipped: &'a mut Vec<(String, String)>,
    root: Option<Id>,
    written: &'a Receiver<(Id, Vec<IndexEntry>)>,
    committed: &'a mut Committed,
}

impl Walk<'_> {
    fn frame(&mut self, i: usize) -> &mut Frame {
        self.frames[i].as_mut().expect("live frame")
    }

    fn new_frame(&mut self, f: Frame) -> usize {
        if let Some(i) = self.free.pop() {
            self.frames[i] = Some(f);
            i
        } else {
            self.frames.push(Some(f));
            self.frames.len() - 1
        }
    }

    fn run<R>(
        &mut self,
        src: &R,
        jobs: &Sender<FileJob<R::Open>>,
        done: &Receiver<FileDone>,
        parent_root: Option<Arc<Tree>>,
        trees: &mut TreeLoader<'_>,
    ) -> Result<()>
    where
        R: ReadSource,
    {
        let root = self.new_frame(Frame {
            nodes: Vec::new(),
            pending: 0,
            closed: false,
            up: None,
            parent: parent_root,
            cursor: 0,
            path: PathBuf::new(),
        });
        self.stack.push(root);

        let skipped = std::cell::RefCell::new(Vec::new());
        let entries = src.entries().filter_map(|item| match item {
            Ok(ReadSourceEntry { path, node, open }) => Some(if node.is_dir() {
                (path, node, open)
            } else {
                let dir = path.parent().map(PathBuf::from).unwrap_or_default();
                (dir, node, open)
            }),
            Err(e) => {
                skipped.borrow_mut().push((String::new(), e.to_string()));
                None
            }
        });
        for ev in TreeEvents::new(entries) {
            while let Ok(d) = done.try_recv() {
                self.file_done(d)?;
            }
            while let Ok((id, entries)) = self.written.try_recv() {
                self.committed.record(id, entries)?;
            }
            match ev {
                Event::Enter { path, node } => self.enter(path, node, trees)?,
                Event::Leave => {
                    let f = self.stack.pop().expect("enter before leave");
                    self.frame(f).closed = true;
                    self.maybe_finish(f)?;
                }
                Event::Item { path, node, open } => self.item(path, node, open, jobs)?,
            }
        }
        self.skipped.extend(skipped.into_inner());
        Ok(())
    }

    /// Waits for the files still being read.
    fn drain(&mut self, done: &Receiver<FileDone>) -> Result<()> {
        while self.outstanding > 0 {
            let d = done
                .recv()
                .map_err(|_| Error::Internal("file workers stopped early".into()))?;
            self.file_done(d)?;
        }
        Ok(())
    }

    /// Closes the root tree and sends the last tree pack.
    fn finish(&mut self) -> Result<()> {
        let root = self
            .stack
            .pop()
            .ok_or_else(|| Error::Internal("no root".into()))?;
        if !self.stack.is_empty() {
            return Err(Error::Internal("unbalanced walk".into()));
        }
        self.frame(root).closed = true;
        self.maybe_finish(root)?;
        if self.root.is_none() {
            return Err(Error::Internal("root tree not finished".into()));
        }
        if !self.tree_pack.is_empty() {
            let pack = std::mem::replace(
                &mut self.tree_pack,
                PackBuilder::new(BlobType::Tree, bytes::BytesMut::new()),
            );
            self.send_pack(pack)?;
        }
        Ok(())
    }

    fn send_pack(&mut self, pack: PackBuilder) -> Result<()> {
        let sealed = pack.seal(self.crypto);
        self.pack_tx
            .as_ref()
            .ok_or_else(|| Error::Internal("uploaders gone".into()))?
            .send(sealed)
            .map_err(|_| Error::Internal("uploaders stopped".into()))
    }

    fn enter(&mut self, path: PathBuf, node: Node, trees: &mut TreeLoader<'_>) -> Result<()> {
        let cur = *self.stack.last().expect("root frame");
        let parent_sub = find_in_parent(self.frame(cur), &node.name)
            .filter(|p| p.is_dir())
            .and_then(|p| p.subtree);
        let parent = match parent_sub {
            // a parent tree that cannot be read only costs re-reading files
            Some(id) => trees.load(&id).ok(),
            None => None,
        };
        let f = self.frame(cur);
        f.nodes.push(Some(node));
        f.pending += 1;
        let slot = f.nodes.len() - 1;
        let child = self.new_frame(Frame {
            nodes: Vec::new(),
            pending: 0,
            closed: false,
            up: Some((cur, slot)),
            parent,
            cursor: 0,
            path,
        });
        self.stack.push(child);
        Ok(())
    }

    fn item<O>(
        &mut self,
        path: PathBuf,
        mut node: Node,
        open: Option<O>,
        jobs: &Sender<FileJob<O>>,
    ) -> Result<()> {
        let cur = *self.stack.last().expect("root frame");
        let (ignore_ctime, ignore_inode) = (self.opts.ignore_ctime, self.opts.ignore_inode);
        let index = self.index;
        let f = self.frames[cur].as_mut().expect("live frame");
        let (had_parent, unchanged) = match find_in_parent(f, &node.name) {
            None => (false, None),
            Some(p) => {
                let (a, b) = (&p.meta, &node.meta);
                let same = p.node_type == node.node_type
                    && a.size == b.size
                    && a.mtime == b.mtime
                    && (ignore_ctime || a.ctime == b.ctime)
                    && (ignore_inode || a.inode == 0 || b.inode == 0 || a.inode == b.inode);
                let content = p
                    .content
                    .as_ref()
                    .filter(|c| same && c.iter().all(|id| index.data.contains_key(&**id)))
                    .cloned();
                (true, content)
            }
        };
        let is_file = node.node_type == NodeType::File;
        if !is_file {
            f.nodes.push(Some(node));
            return Ok(());
        }
        self.summary.total_files_processed += 1;
        if let Some(content) = unchanged {
            self.summary.total_bytes_processed += node.meta.size;
            if let Some(p) = &self.opts.progress {
                p.inc(node.meta.size);
            }
            node.content = Some(content);
            f.nodes.push(Some(node));
            self.summary.files_unmodified += 1;
            return Ok(());
        }
        if had_parent {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
        let full = path.join(&node.name);
        f.nodes.push(Some(node));
        let slot = f.nodes.len() - 1;
        let Some(open) = open else {
            f.nodes[slot] = None;
            self.skipped
                .push((full.display().to_string(), "no reader".into()));
            return Ok(());
        };
        f.pending += 1;
        self.outstanding += 1;
        jobs.send(FileJob {
            frame: cur,
            slot,
            path: full,
            open,
        })
        .map_err(|_| Error::Internal("file workers stopped".into()))
    }

    fn file_done(&mut self, d: FileDone) -> Result<()> {
        self.outstanding -= 1;
        let f = self.frame(d.frame);
        match d.result {
            Ok((ids, size, _added)) => {
                let node = f.nodes[d.slot].as_mut().expect("file node");
                node.content = Some(ids.into_iter().map(Into::into).collect());
                // the tree must describe what was read, even if the file changed meanwhile
                node.meta.size = size;
                self.summary.total_bytes_processed += size;
            }
            Err(skip) => {
                f.nodes[d.slot] = None;
                self.skipped.push(skip);
            }
        }
        let f = self.frame(d.frame);
        f.pending -= 1;
        self.maybe_finish(d.frame)
    }

    /// Finishes frame `i` and every ancestor that becomes complete with it.
    fn maybe_finish(&mut self, mut i: usize) -> Result<()> {
        loop {
            let f = self.frame(i);
            if !f.closed || f.pending > 0 {
                return Ok(());
            }
            let f = self.frames[i].take().expect("live frame");
            self.free.push(i);
            let tree = Tree {
                nodes: f.nodes.into_iter().flatten().collect(),
            };
            let id = self.save_tree(&tree, &f.path)?;
            match f.up {
                None => {
                    self.root = Some(id);
                    return Ok(());
                }
                Some((p, slot)) => {
                    let pf = self.frame(p);
                    if let Some(n) = pf.nodes[slot].as_mut() {
                        n.subtree = Some(id.into());
                    }
                    pf.pending -= 1;
                    i = p;
                }
            }
        }
    }

    fn save_tree(&mut self, tree: &Tree, path: &std::path::Path) -> Result<Id> {
        let (json, id) = tree
            .serialize()
            .map_err(|e| Error::Internal(format!("serialising tree {}: {e}", path.display())))?;
        let id: Id = *id;
        self.summary.total_dirs_processed += 1;
        self.summary.total_dirsize_processed += json.len() as u64;
        if self.index.trees.contains_key(&id) || !self.new_trees.insert(id) {
            self.summary.dirs_unmodified += 1;
            return Ok(id);
        }
        self.summary.dirs_new += 1;
        let mut out = Vec::new();
        let plain = match &mut self.zstd {
            Some(z) => {
                self.crypto.seal_compressed_append(z, &json, &mut out)?;
                Some(
                    u32::try_from(json.len())
                        .map_err(|_| Error::Internal(format!("tree of {} bytes", json.len())))?,
                )
            }
            None => {
                self.crypto.seal_append(&json, &mut out);
                None
            }
        };
        self.tree_pack.add(id, &out, plain);
        if self.tree_pack.size() >= self.tree_target || self.tree_pack.len() >= MAX_BLOBS {
            let pack = std::mem::replace(
                &mut self.tree_pack,
                PackBuilder::new(BlobType::Tree, bytes::BytesMut::new()),
            );
            self.tree_bytes += pack.size();
            self.tree_target = target_size(self.config, BlobType::Tree, self.tree_bytes);
            self.send_pack(pack)?;
        }
        Ok(id)
    }
}

/// The entry named `name` in the frame's parent tree, advancing the frame's cursor (the
/// walk visits names in sorted order, like the tree stores them).
fn find_in_parent<'t>(f: &'t mut Frame, name: &str) -> Option<&'t Node> {
    let tree = f.parent.as_ref()?;
    while let Some(n) = tree.nodes.get(f.cursor) {
        match n.name.as_str().cmp(name) {
            std::cmp::Ordering::Less => f.cursor += 1,
            std::cmp::Ordering::Equal => return Some(n),
            std::cmp::Ordering::Greater => return None,
        }
    }
    None
}

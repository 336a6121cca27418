//! Restore of a snapshot (or a subtree of it) into a local directory: the trees are
//! walked first (directories, links and special files created, a plan built of which
//! blob goes to which file offset), then pack ranges are read by parallel workers that
//! decrypt, decompress, verify and `pwrite` each blob to every place it belongs, and
//! finally metadata is applied (files first, then directories deepest first, so writing
//! into a directory cannot disturb its restored mtime).
//!
//! Memory is bounded by the workers times the read segment size, not by file or pack
//! size; each blob is read once however many files contain it.
//!
//! A snapshot is input from whoever controls the repository. The writer never leaves its
//! target: every tree's names are checked (plain names, no duplicates) before anything
//! is created, every path is resolved from the target's directory handle without
//! following symlinks ([`target`]), and entries in the way of a restored one (a symlink
//! where a directory goes, above all) are replaced, never written through. Device nodes
//! and set-user-ID / set-group-ID bits are restored only when asked
//! ([`RestoreOptions::devices_and_setid`]). With [`RestoreOptions::delete`], entries of
//! the target that the snapshot does not have are removed.

pub(crate) mod target;

use std::{
    collections::{HashMap, HashSet},
    ffi::{OsStr, OsString},
    fs::File,
    os::{
        fd::{AsFd, BorrowedFd},
        unix::fs::FileExt,
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
};

use nix::{
    fcntl::AtFlags,
    sys::{
        stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, futimens, utimensat},
        time::TimeSpec,
    },
    unistd::{Gid, Uid, fchown, fchownat},
};
use rustic_core::{
    Id, Progress,
    repofile::{Node, NodeType, Tree},
};

use super::{
    Error, Result,
    backend::ObjectStore,
    format::{
        crypto::Crypto,
        hash,
        index::{BlobLoc, RepoIndex},
        pack::read_range,
        short,
        tree::{TreeLoader, check_entries},
    },
};
use target::Target;

/// Tuning and behaviour of [`restore`].
#[derive(Debug, Clone)]
pub(crate) struct RestoreOptions {
    /// Threads reading and writing data.
    pub(crate) workers: usize,
    /// Check each blob's SHA-256 against its id (on by default: a DR restore must not
    /// write silently corrupted data; costs about 0.5 s of CPU per GiB).
    pub(crate) verify_blobs: bool,
    /// Restore owner and group (needs root; on by default when running as root).
    pub(crate) ownership: bool,
    /// Owners from the recorded numeric UID/GID; otherwise the recorded user and group
    /// names are looked up locally first, as restic does.
    pub(crate) numeric_ids: bool,
    /// Create device nodes and keep set-user-ID / set-group-ID bits. Off by default: a
    /// snapshot written by someone else must not plant a device or a setuid binary.
    pub(crate) devices_and_setid: bool,
    /// Remove entries of the target that the snapshot does not have.
    pub(crate) delete: bool,
    /// Bytes of file content written (its length is set once the plan is made).
    pub(crate) progress: Option<Progress>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            workers: thread::available_parallelism()
                .map_or(2, usize::from)
                .max(2),
            verify_blobs: true,
            ownership: nix::unistd::geteuid().is_root(),
            numeric_ids: false,
            devices_and_setid: false,
            delete: false,
            progress: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestoreStats {
    /// Regular files restored.
    pub(crate) files: u64,
    /// Directories restored.
    pub(crate) dirs: u64,
    /// Symlinks and special files restored.
    pub(crate) others: u64,
    /// Device nodes not created (not asked for, or not permitted).
    pub(crate) devices_skipped: u64,
    /// Entries of the target removed because the snapshot does not have them.
    pub(crate) deleted: u64,
    /// Bytes of file content written.
    pub(crate) bytes: u64,
    /// Distinct blobs read.
    pub(crate) blobs: u64,
    /// Ranged reads issued.
    pub(crate) reads: u64,
    /// Seconds spent walking trees (and creating directories), planning, writing data,
    /// and applying metadata.
    pub(crate) phase_secs: [f64; 4],
}

/// A regular file to restore.
struct FileTarget {
    /// Below the target.
    path: PathBuf,
    node: Node,
    /// Hard link to restore as a link to this earlier file instead of writing data.
    link_to: Option<usize>,
}

/// One blob and every place it goes.
struct BlobUse {
    loc: BlobLoc,
    id: Id,
    targets: Vec<(usize, u64)>,
}

/// One ranged read: consecutive blobs of a pack.
struct Segment {
    pack: Id,
    offset: u32,
    length: u32,
    blobs: Vec<BlobUse>,
}

/// Largest span read at once; also bounds the memory of each worker.
const SEGMENT_BYTES: u32 = 8 << 20;
/// Gaps (blobs not needed) up to this size are read through rather than split.
const MAX_GAP: u32 = 256 << 10;
/// Files named in a corruption report.
const FILES_NAMED: usize = 5;

/// What to restore: the content of a tree, or single entries (a file picked by path).
enum Source {
    Tree(Id),
    Nodes(Arc<Tree>),
}

/// Finds `path` (relative, `/`-separated; empty for the whole tree) below the tree
/// `root`: a directory restores its content, anything else restores itself (restic's
/// and rustic's `snapshot:path` semantics). Components match a node's name as stored
/// (escaped) or as the file name it stands for.
fn resolve(loader: &mut TreeLoader<'_>, root: &Id, path: &str) -> Result<Option<Source>> {
    let mut cur = *root;
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, name) in comps.iter().enumerate() {
        let tree = loader.load(&cur)?;
        let Some(node) = tree
            .nodes
            .iter()
            .find(|n| n.name == *name || n.name() == OsStr::new(name))
        else {
            return Ok(None);
        };
        match node.subtree {
            Some(sub) if node.is_dir() => cur = *sub,
            _ if i + 1 == comps.len() => {
                return Ok(Some(Source::Nodes(Arc::new(Tree {
                    nodes: vec![node.clone()],
                }))));
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(Source::Tree(cur)))
}

/// Resolves `path` of the tree `root` to its node (for `dump`): `None` if it is not
/// there.
pub(crate) fn find_node(
    store: &Arc<dyn ObjectStore>,
    crypto: &Crypto,
    index: &RepoIndex,
    root: &Id,
    path: &str,
) -> Result<Option<Node>> {
    let mut loader = TreeLoader::new(store.clone(), crypto.clone(), index);
    Ok(match resolve(&mut loader, root, path)? {
        Some(Source::Nodes(t)) => t.nodes.first().cloned(),
        _ => None,
    })
}

/// Reads one data blob (decrypted, decompressed, verified) into `out`.
pub(crate) fn read_blob(
    store: &dyn ObjectStore,
    crypto: &Crypto,
    index: &RepoIndex,
    id: &Id,
    out: &mut Vec<u8>,
) -> Result<()> {
    let loc = *index.data.get(id).ok_or_else(|| {
        Error::corrupt(
            format!("blob {}", short(id)),
            format!("not in the index{}", index.missing_hint()),
        )
    })?;
    let mut enc = read_range(store, &loc.pack, loc.offset, loc.length)?.to_vec();
    let mut zstd = None;
    let plain = open_blob(crypto, &mut zstd, id, &loc, &mut enc, out, true)?;
    if plain {
        out.clear();
        out.extend_from_slice(&enc[16..enc.len() - 16]);
    }
    Ok(())
}

/// Decrypts (in place), decompresses into `out` if compressed, and verifies one blob.
/// Returns true when the plaintext is `enc[16..len-16]` (stored uncompressed) rather
/// than `out`.
fn open_blob(
    crypto: &Crypto,
    zstd: &mut Option<zstd::bulk::Decompressor<'static>>,
    id: &Id,
    loc: &BlobLoc,
    enc: &mut [u8],
    out: &mut Vec<u8>,
    verify: bool,
) -> Result<bool> {
    let bad = |why: String| Error::corrupt_in_pack(format!("blob {}", short(id)), &loc.pack, why);
    if enc.len() != loc.length as usize {
        return Err(bad("the pack is shorter than the index says".into()));
    }
    let r = crypto.open_in_place(enc).map_err(|e| bad(e.to_string()))?;
    let in_enc = loc.uncompressed == 0;
    if !in_enc {
        let z = match zstd {
            Some(z) => z,
            None => zstd.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| Error::Internal(format!("zstd: {e}")))?,
            ),
        };
        out.clear();
        // the index's length was checked against the bound before this allocation
        out.reserve(loc.uncompressed as usize);
        z.decompress_to_buffer(&enc[r.clone()], out)
            .map_err(|e| bad(format!("decompression failed: {e}")))?;
        if out.len() != loc.uncompressed as usize {
            return Err(bad("decompresses to the wrong length".into()));
        }
    }
    if verify {
        let plain: &[u8] = if in_enc { &enc[r] } else { out };
        if hash(plain) != *id {
            return Err(bad("its content does not match its id (SHA-256)".into()));
        }
    }
    Ok(in_enc)
}

fn io_at(target: &Target, op: &str, rel: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let what = format!("{op} {}", target.display(rel));
    move |e| Error::io(what, e)
}

/// The parent directory and the name of a path below the target.
fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or_default(),
    )
}

/// Restores `path` of the tree `root` (a snapshot's `tree`) into the directory
/// `target_dir`, creating it if needed: a directory's content lands in the target, a
/// file inside it. `Ok(None)` if `path` is not in the tree.
///
/// Errors: damaged or malformed repository data (naming the pack and the files that
/// need it), storage errors, and errors creating or writing the target's entries.
/// Metadata that cannot be applied (ownership when not root) is not an error.
#[allow(clippy::too_many_lines)]
pub(crate) fn restore(
    store: &Arc<dyn ObjectStore>,
    crypto: &Crypto,
    root: &Id,
    path: &str,
    target_dir: &Path,
    opts: &RestoreOptions,
) -> Result<Option<RestoreStats>> {
    let index = RepoIndex::load(store, crypto)?;
    let mut stats = RestoreStats::default();
    let mut clock = std::time::Instant::now();
    let mut lap = |i: usize, stats: &mut RestoreStats| {
        stats.phase_secs[i] = clock.elapsed().as_secs_f64();
        clock = std::time::Instant::now();
    };
    let mut loader = TreeLoader::new(store.clone(), crypto.clone(), &index);
    let Some(top) = resolve(&mut loader, root, path)? else {
        return Ok(None);
    };
    let target = Target::open(target_dir)
        .map_err(|e| Error::io(format!("opening {}", target_dir.display()), e))?;
    // Only a target with content can hold something in the way (a symlink where a file
    // goes); a fresh one is spared a stat per file.
    let careful = opts.delete
        || !target::list(target.root())
            .map_err(io_at(&target, "reading", Path::new("")))?
            .is_empty();

    // 1. walk the trees: create directories, links and special files; list the files
    let mut dirs: Vec<(PathBuf, Node)> = Vec::new();
    let mut files: Vec<FileTarget> = Vec::new();
    let mut others: Vec<(PathBuf, Node)> = Vec::new();
    let mut inodes: HashMap<(u64, u64), usize> = HashMap::new();
    let mut stack: Vec<(Source, PathBuf)> = vec![(top, PathBuf::new())];
    while let Some((src, dir)) = stack.pop() {
        let (tree, tree_id) = match src {
            Source::Tree(id) => (loader.load(&id)?, Some(id)),
            Source::Nodes(t) => (t, None),
        };
        let names = check_entries(&tree).map_err(|why| {
            let object = match tree_id {
                Some(id) => format!("tree {} (directory {})", short(&id), target.display(&dir)),
                None => format!("entry {path:?}"),
            };
            Error::corrupt(object, why)
        })?;
        let dfd = target.dir(&dir).map_err(io_at(&target, "opening", &dir))?;
        let d = dfd.as_fd();
        if opts.delete && tree_id.is_some() {
            let keep: HashSet<&OsString> = names.iter().collect();
            for existing in target::list(d).map_err(io_at(&target, "reading", &dir))? {
                if !keep.contains(&existing) {
                    let rel = dir.join(&existing);
                    target::remove(d, &existing).map_err(io_at(&target, "removing", &rel))?;
                    stats.deleted += 1;
                }
            }
        }
        for (node, name) in tree.nodes.iter().zip(names) {
            let rel = dir.join(&name);
            match &node.node_type {
                NodeType::Dir => {
                    target::mkdir(d, &name).map_err(io_at(&target, "creating directory", &rel))?;
                    let sub = node.subtree.expect("checked by check_entries");
                    stack.push((Source::Tree(*sub), rel.clone()));
                    dirs.push((rel, node.clone()));
                }
                NodeType::File => {
                    if careful {
                        target::clear_for_file(d, &name).map_err(io_at(
                            &target,
                            "replacing",
                            &rel,
                        ))?;
                    }
                    let link_to = if node.meta.links > 1 {
                        let key = (node.meta.device_id, node.meta.inode);
                        match inodes.get(&key) {
                            Some(&first) => Some(first),
                            None => {
                                inodes.insert(key, files.len());
                                None
                            }
                        }
                    } else {
                        None
                    };
                    files.push(FileTarget {
                        path: rel,
                        node: node.clone(),
                        link_to,
                    });
                }
                NodeType::Symlink { .. } => {
                    let to = node.node_type.to_link();
                    target::symlink(d, &name, to.as_os_str()).map_err(io_at(
                        &target,
                        "creating symlink",
                        &rel,
                    ))?;
                    others.push((rel, node.clone()));
                }
                NodeType::Fifo | NodeType::Dev { .. } | NodeType::Chardev { .. } => {
                    let (kind, dev) = match node.node_type {
                        NodeType::Fifo => (SFlag::S_IFIFO, 0),
                        NodeType::Dev { device } => (SFlag::S_IFBLK, device),
                        NodeType::Chardev { device } => (SFlag::S_IFCHR, device),
                        _ => unreachable!("matched above"),
                    };
                    if kind != SFlag::S_IFIFO && !opts.devices_and_setid {
                        stats.devices_skipped += 1;
                        continue;
                    }
                    // devices need root; like restic, a failure here is not fatal
                    if target::mknod(d, &name, kind, dev).is_ok() {
                        others.push((rel, node.clone()));
                    } else {
                        stats.devices_skipped += u64::from(kind != SFlag::S_IFIFO);
                    }
                }
                NodeType::Socket => {}
            }
        }
    }
    drop(loader);
    lap(0, &mut stats);
    stats.dirs = dirs.len() as u64;
    stats.others = others.len() as u64;
    stats.files = files.len() as u64;

    // 2. plan: which blob goes where, grouped by pack and cut into ranged reads
    let mut by_id: HashMap<Id, (Id, usize)> = HashMap::new();
    let mut by_pack: HashMap<Id, Vec<BlobUse>> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        if f.link_to.is_some() {
            continue;
        }
        let mut off = 0u64;
        for id in f.node.content.iter().flatten() {
            let id: Id = **id;
            let loc = *index.data.get(&id).ok_or_else(|| {
                let mut e = Error::corrupt(
                    format!("blob {}", short(&id)),
                    format!("not in the index{}", index.missing_hint()),
                );
                if let Error::Corrupt(c) = &mut e {
                    c.files.push(target.display(&f.path));
                }
                e
            })?;
            if let Some((pack, i)) = by_id.get(&id) {
                by_pack.get_mut(pack).expect("planned pack")[*i]
                    .targets
                    .push((fi, off));
            } else {
                let v = by_pack.entry(loc.pack).or_default();
                by_id.insert(id, (loc.pack, v.len()));
                v.push(BlobUse {
                    loc,
                    id,
                    targets: vec![(fi, off)],
                });
            }
            off += u64::from(loc.plain_len());
        }
        stats.bytes += off;
    }
    drop(by_id);
    let mut segments = Vec::new();
    for (pack, mut blobs) in by_pack {
        blobs.sort_by_key(|b| b.loc.offset);
        let mut cur: Option<Segment> = None;
        for b in blobs {
            let (bo, bl) = (u64::from(b.loc.offset), u64::from(b.loc.length));
            if let Some(s) = cur.as_mut() {
                let end = u64::from(s.offset) + u64::from(s.length);
                if bo >= end
                    && bo - end <= u64::from(MAX_GAP)
                    && bo + bl - u64::from(s.offset) <= u64::from(SEGMENT_BYTES)
                {
                    // below SEGMENT_BYTES, so it fits a u32
                    s.length = (bo + bl - u64::from(s.offset)) as u32;
                    s.blobs.push(b);
                    continue;
                }
                segments.push(cur.take().expect("checked"));
            }
            cur = Some(Segment {
                pack,
                offset: b.loc.offset,
                length: b.loc.length,
                blobs: vec![b],
            });
        }
        segments.extend(cur);
    }
    // larger reads first keeps the workers busy until the end
    segments.sort_by_key(|s| std::cmp::Reverse(s.length));
    stats.reads = segments.len() as u64;
    stats.blobs = segments.iter().map(|s| s.blobs.len() as u64).sum();
    if let Some(p) = &opts.progress {
        p.set_length(stats.bytes);
    }
    lap(1, &mut stats);

    // 3. data: workers take segments, read, decrypt, decompress, verify, pwrite
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let ctx = WriteCtx {
        store: store.as_ref(),
        crypto,
        files: &files,
        target: &target,
        opts,
    };
    thread::scope(|s| {
        for _ in 0..opts.workers.max(1) {
            s.spawn(|| {
                let mut w = Writer {
                    open: None,
                    plain: Vec::new(),
                    zstd: None,
                };
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(seg) = segments.get(i) else { return };
                    if let Err(e) = restore_segment(&ctx, seg, &mut w) {
                        failed.store(true, Ordering::Relaxed);
                        first_err.lock().expect("error slot").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().expect("error slot") {
        return Err(e);
    }
    lap(2, &mut stats);

    // 4. files: create the empty ones, fix lengths, hard links, metadata
    let chunk = files.len().div_ceil(opts.workers.max(1)).max(1);
    let results: Vec<Result<()>> = thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(|| finish_files(&target, part, &files, opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal("a restore worker panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    for (rel, node) in &others {
        let (parent, name) = split(rel);
        if let Ok(dfd) = target.dir(parent) {
            set_metadata_at(dfd.as_fd(), name, node, opts);
        }
    }
    for (rel, node) in dirs.iter().rev() {
        if let Ok(dfd) = target.dir(rel) {
            set_metadata(dfd.as_fd(), node, opts);
        }
    }
    lap(3, &mut stats);
    Ok(Some(stats))
}

/// What the data workers share.
struct WriteCtx<'a> {
    store: &'a dyn ObjectStore,
    crypto: &'a Crypto,
    files: &'a [FileTarget],
    target: &'a Target,
    opts: &'a RestoreOptions,
}

/// Per-worker output state: the file written last stays open, since consecutive blobs
/// of a pack usually belong to the same file.
struct Writer {
    open: Option<(usize, File)>,
    plain: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Writer {
    fn write(&mut self, ctx: &WriteCtx<'_>, fi: usize, off: u64, data: &[u8]) -> Result<()> {
        if self.open.as_ref().is_none_or(|(i, _)| *i != fi) {
            let path = &ctx.files[fi].path;
            let f = ctx
                .target
                .file(path, true)
                .map_err(io_at(ctx.target, "creating", path))?;
            self.open = Some((fi, f));
        }
        let (_, f) = self.open.as_ref().expect("opened above");
        f.write_all_at(data, off)
            .map_err(io_at(ctx.target, "writing", &ctx.files[fi].path))
    }
}

/// A corruption found while restoring, with the files that need the damaged blob.
fn name_files(mut e: Error, ctx: &WriteCtx<'_>, b: &BlobUse) -> Error {
    if let Error::Corrupt(c) = &mut e {
        for &(fi, _) in &b.targets {
            let name = ctx.target.display(&ctx.files[fi].path);
            if c.files.len() >= FILES_NAMED {
                if c.files.last().is_none_or(|l| l != "...") {
                    c.files.push("...".into());
                }
                break;
            }
            if !c.files.contains(&name) {
                c.files.push(name);
            }
        }
    }
    e
}

fn restore_segment(ctx: &WriteCtx<'_>, seg: &Segment, w: &mut Writer) -> Result<()> {
    let data = read_range(ctx.store, &seg.pack, seg.offset, seg.length).map_err(|mut e| {
        for b in &seg.blobs {
            e = name_files(e, ctx, b);
        }
        e
    })?;
    let mut buf = data.to_vec();
    drop(data);
    for b in &seg.blobs {
        let start = (b.loc.offset - seg.offset) as usize;
        let end = (start + b.loc.length as usize).min(buf.len());
        let enc = &mut buf[start.min(end)..end];
        let mut out = std::mem::take(&mut w.plain);
        let in_enc = open_blob(
            ctx.crypto,
            &mut w.zstd,
            &b.id,
            &b.loc,
            enc,
            &mut out,
            ctx.opts.verify_blobs,
        )
        .map_err(|e| name_files(e, ctx, b))?;
        let plain: &[u8] = if in_enc {
            &enc[16..enc.len() - 16]
        } else {
            &out
        };
        for &(fi, off) in &b.targets {
            w.write(ctx, fi, off, plain)?;
        }
        if let Some(p) = &ctx.opts.progress {
            p.inc(plain.len() as u64 * b.targets.len() as u64);
        }
        // keep the buffer for the next blob
        w.plain = out;
    }
    Ok(())
}

fn finish_files(
    target: &Target,
    part: &[FileTarget],
    all: &[FileTarget],
    opts: &RestoreOptions,
) -> Result<()> {
    for f in part {
        if let Some(first) = f.link_to {
            // an empty first file has no data and may not exist yet (another thread
            // creates it): create it here, it is the same inode either way
            let first = &all[first].path;
            target
                .file(first, true)
                .map_err(io_at(target, "creating", first))?;
            let (fp, fname) = split(first);
            let (lp, lname) = split(&f.path);
            let from = target.dir(fp).map_err(io_at(target, "opening", fp))?;
            let to = target.dir(lp).map_err(io_at(target, "opening", lp))?;
            target::hard_link(from.as_fd(), fname, to.as_fd(), lname)
                .map_err(io_at(target, "linking", &f.path))?;
            continue;
        }
        // files with content exist already; empty ones are created here, and a file that
        // was in the target before gets its length fixed
        let file = target
            .file(&f.path, true)
            .map_err(io_at(target, "creating", &f.path))?;
        let size: u64 = f.node.meta.size;
        if file.metadata().map(|m| m.len()).unwrap_or(u64::MAX) != size {
            file.set_len(size)
                .map_err(io_at(target, "truncating", &f.path))?;
        }
        set_metadata(file.as_fd(), &f.node, opts);
    }
    Ok(())
}

/// The owner to restore: by recorded name unless numeric ids are asked for (restic's
/// default), falling back to the recorded numbers.
fn owner(m: &rustic_core::repofile::Metadata, numeric: bool) -> (Option<Uid>, Option<Gid>) {
    let uid = m.uid.map(Uid::from_raw);
    let gid = m.gid.map(Gid::from_raw);
    if numeric {
        return (uid, gid);
    }
    let by_name = m
        .user
        .as_deref()
        .and_then(|u| nix::unistd::User::from_name(u).ok().flatten())
        .map(|u| u.uid);
    let group = m
        .group
        .as_deref()
        .and_then(|g| nix::unistd::Group::from_name(g).ok().flatten())
        .map(|g| g.gid);
    (by_name.or(uid), group.or(gid))
}

fn times(m: &rustic_core::repofile::Metadata) -> (TimeSpec, TimeSpec) {
    let ts = |t: Option<jiff::Timestamp>| {
        t.map_or(TimeSpec::UTIME_OMIT, |t| {
            TimeSpec::new(t.as_second(), i64::from(t.subsec_nanosecond()))
        })
    };
    (ts(m.atime.or(m.mtime)), ts(m.mtime))
}

/// Applies owner, mode and times through the entry's own handle (files, directories);
/// failures are ignored like restic does for metadata the restoring user may not set.
/// Owner before mode: changing the owner clears set-user-ID bits.
fn set_metadata(fd: BorrowedFd<'_>, node: &Node, opts: &RestoreOptions) {
    let m = &node.meta;
    if opts.ownership {
        let (uid, gid) = owner(m, opts.numeric_ids);
        _ = fchown(fd, uid, gid);
    }
    if let Some(mode) = m.mode {
        _ = fchmod(
            fd,
            Mode::from_bits_truncate(unix_mode(mode, opts.devices_and_setid)),
        );
    }
    let (atime, mtime) = times(m);
    _ = futimens(fd, &atime, &mtime);
}

/// [`set_metadata`] for entries without a handle of their own (symlinks, FIFOs,
/// devices), relative to their directory and without following them.
fn set_metadata_at(dir: BorrowedFd<'_>, name: &OsStr, node: &Node, opts: &RestoreOptions) {
    let m = &node.meta;
    if opts.ownership {
        let (uid, gid) = owner(m, opts.numeric_ids);
        _ = fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW);
    }
    let is_link = matches!(node.node_type, NodeType::Symlink { .. });
    if let (Some(mode), false) = (m.mode, is_link) {
        // Linux cannot change a symlink's mode; the entry was just created by us as a
        // FIFO or device in a directory reached without following links
        _ = fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(unix_mode(mode, opts.devices_and_setid)),
            FchmodatFlags::FollowSymlink,
        );
    }
    let (atime, mtime) = times(m);
    _ = utimensat(dir, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink);
}

/// Go's `os.FileMode` permission and special bits (as stored by restic) to Unix mode
/// bits; set-user-ID and set-group-ID only with `setid`.
const fn unix_mode(go: u32, setid: bool) -> u32 {
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const STICKY: u32 = 1 << 20;
    let mut m = go & 0o777;
    if setid && go & SETUID != 0 {
        m |= 0o4000;
    }
    if setid && go & SETGID != 0 {
        m |= 0o2000;
    }
    if go & STICKY != 0 {
        m |= 0o1000;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::unix_mode;

    #[test]
    fn go_modes_map_to_unix_bits() {
        assert_eq!(unix_mode(0o644, false), 0o644);
        assert_eq!(unix_mode((1 << 31) | 0o755, false), 0o755);
        assert_eq!(unix_mode((1 << 23) | 0o755, true), 0o4755);
        assert_eq!(unix_mode((1 << 23) | (1 << 22) | 0o755, false), 0o755);
        assert_eq!(unix_mode((1 << 20) | (1 << 31) | 0o777, false), 0o1777);
    }
}

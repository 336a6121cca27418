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
//! Into a target that already has content, nothing is followed: an entry in the way of
//! a restored file that is not a regular file (a symlink above all) is replaced, never
//! written through. Files not in the snapshot are left alone (no `--delete`).

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
};

use nix::{
    fcntl::AT_FDCWD,
    sys::{
        stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat},
        time::TimeSpec,
    },
    unistd::{Gid, Uid, fchownat},
};
use rustic_core::{
    FileType, Id, Open, Progress, Repository, WriteBackend,
    repofile::{Node, NodeType, Tree},
};

use super::{
    FastError,
    crypto::Crypto,
    hash,
    index::{BlobLoc, RepoIndex},
    trees::TreeLoader,
};

/// Tuning and behaviour of [`restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Threads reading and writing data.
    pub workers: usize,
    /// Check each blob's SHA-256 against its id (on by default: a DR restore must not
    /// write silently corrupted data; costs about 0.5 s of CPU per GiB).
    pub verify_blobs: bool,
    /// Restore owner and group (needs root; on by default when running as root).
    pub ownership: bool,
    /// Owners from the recorded numeric UID/GID; otherwise the recorded user and group
    /// names are looked up locally first, as restic does.
    pub numeric_ids: bool,
    /// Bytes of file content written (its length is set once the plan is made).
    pub progress: Option<Progress>,
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
            progress: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks and special files restored.
    pub others: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Distinct blobs read.
    pub blobs: u64,
    /// Ranged reads issued.
    pub reads: u64,
    /// Seconds spent walking trees (and creating directories), planning, writing data,
    /// and applying metadata.
    pub phase_secs: [f64; 4],
}

/// A regular file to restore.
struct FileTarget {
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

/// What to restore: the content of a tree, or single entries (a file picked by path).
enum Source {
    Tree(Id),
    Nodes(Arc<Tree>),
}

/// Finds `path` (relative, `/`-separated; empty for the whole tree) below the tree
/// `root`: a directory restores its content, anything else restores itself (restic's
/// and rustic's `snapshot:path` semantics).
fn resolve(loader: &mut TreeLoader<'_>, root: &Id, path: &str) -> Result<Source, FastError> {
    let mut cur = *root;
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, name) in comps.iter().enumerate() {
        let tree = loader.load(&cur)?;
        let node = tree
            .nodes
            .iter()
            .find(|n| n.name() == std::ffi::OsStr::new(name))
            .ok_or_else(|| FastError::NotFound(path.to_string()))?;
        match node.subtree {
            Some(sub) if node.is_dir() => cur = *sub,
            _ if i + 1 == comps.len() => {
                return Ok(Source::Nodes(Arc::new(Tree {
                    nodes: vec![node.clone()],
                })));
            }
            _ => return Err(FastError::NotFound(path.to_string())),
        }
    }
    Ok(Source::Tree(cur))
}

/// Restores `path` of the tree `root` (a snapshot's `tree`) into the directory
/// `target`, creating it if needed: a directory's content lands in `target`, a file
/// inside it.
///
/// # Errors
/// [`FastError::NotFound`] if `path` is not in the tree; repository or backend errors,
/// blobs failing authentication or verification, and errors creating or writing the
/// target files. Metadata that cannot be applied (ownership when not root) is not an
/// error.
#[allow(clippy::too_many_lines)]
pub fn restore<S: Open>(
    repo: &Repository<S>,
    be: &Arc<dyn WriteBackend>,
    root: &Id,
    path: &str,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreStats, FastError> {
    let crypto = Crypto::from_master_key(&repo.key())?;
    let index = RepoIndex::load(repo)?;
    let mut stats = RestoreStats::default();
    let mut clock = std::time::Instant::now();
    let mut lap = |i: usize, stats: &mut RestoreStats| {
        stats.phase_secs[i] = clock.elapsed().as_secs_f64();
        clock = std::time::Instant::now();
    };
    let mut loader = TreeLoader::new(be.clone(), crypto.clone(), &index);
    let top = resolve(&mut loader, root, path)?;
    // Only a target with content can hold something in the way (a symlink where a file
    // goes); a fresh one is spared a stat per file.
    let careful = match fs::read_dir(target) {
        Ok(mut rd) => rd.next().is_some(),
        Err(_) => false,
    };
    fs::create_dir_all(target).map_err(FastError::io("creating", target))?;

    // 1. walk the trees: create directories, links and special files; list the files
    let mut dirs: Vec<(PathBuf, Node)> = Vec::new();
    let mut files: Vec<FileTarget> = Vec::new();
    let mut links: Vec<(PathBuf, Node)> = Vec::new();
    let mut inodes: HashMap<(u64, u64), usize> = HashMap::new();
    let mut stack: Vec<(Source, PathBuf)> = vec![(top, target.to_path_buf())];
    while let Some((src, dir)) = stack.pop() {
        let tree = match src {
            Source::Tree(id) => loader.load(&id)?,
            Source::Nodes(t) => t,
        };
        for node in &tree.nodes {
            let name = node.name();
            // a tree entry must be one plain name: never "..", "/" or a path
            let mut comps = Path::new(&*name).components();
            let plain = matches!(comps.next(), Some(std::path::Component::Normal(_)))
                && comps.next().is_none();
            if !plain {
                return Err(FastError::Format(format!(
                    "invalid file name {:?} in a tree",
                    node.name
                )));
            }
            let path = dir.join(&*name);
            match &node.node_type {
                NodeType::Dir => {
                    match fs::create_dir(&path) {
                        Ok(()) => {}
                        // `symlink_metadata`: a symlink to a directory is in the way,
                        // not a directory to restore into
                        Err(e)
                            if e.kind() == std::io::ErrorKind::AlreadyExists
                                && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            remove_existing(&path)?;
                            fs::create_dir(&path)
                                .map_err(FastError::io("creating directory", &path))?;
                        }
                        Err(e) => return Err(FastError::io("creating directory", &path)(e)),
                    }
                    let sub = node.subtree.ok_or_else(|| {
                        FastError::Format(format!("directory {} has no subtree", path.display()))
                    })?;
                    stack.push((Source::Tree(*sub), path.clone()));
                    dirs.push((path, node.clone()));
                }
                NodeType::File => {
                    if careful && fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
                        remove_existing(&path)?;
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
                        path,
                        node: node.clone(),
                        link_to,
                    });
                }
                NodeType::Symlink { .. } => {
                    remove_existing(&path)?;
                    std::os::unix::fs::symlink(node.node_type.to_link(), &path)
                        .map_err(FastError::io("creating symlink", &path))?;
                    links.push((path, node.clone()));
                }
                NodeType::Fifo | NodeType::Dev { .. } | NodeType::Chardev { .. } => {
                    let (kind, dev) = match node.node_type {
                        NodeType::Fifo => (SFlag::S_IFIFO, 0),
                        NodeType::Dev { device } => (SFlag::S_IFBLK, device),
                        NodeType::Chardev { device } => (SFlag::S_IFCHR, device),
                        _ => unreachable!("matched above"),
                    };
                    remove_existing(&path)?;
                    // devices need root; like restic, a failure here is not fatal
                    if mknod(&path, kind, Mode::from_bits_truncate(0o600), dev).is_ok() {
                        links.push((path, node.clone()));
                    }
                }
                NodeType::Socket => {}
            }
        }
    }
    drop(loader);
    lap(0, &mut stats);
    stats.dirs = dirs.len() as u64;
    stats.others = links.len() as u64;
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
                FastError::Format(format!("blob {} is not in the index", id.to_hex().as_str()))
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
            let (bo, bl) = (b.loc.offset, b.loc.length);
            if let Some(s) = cur.as_mut() {
                let end = s.offset + s.length;
                if bo >= end && bo - end <= MAX_GAP && bo + bl - s.offset <= SEGMENT_BYTES {
                    s.length = bo + bl - s.offset;
                    s.blobs.push(b);
                    continue;
                }
                segments.push(cur.take().expect("checked"));
            }
            cur = Some(Segment {
                pack,
                offset: bo,
                length: bl,
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
    let first_err: Mutex<Option<FastError>> = Mutex::new(None);
    thread::scope(|s| {
        for _ in 0..opts.workers.max(1) {
            s.spawn(|| {
                let mut w = match zstd::bulk::Decompressor::new() {
                    Ok(zstd) => Writer {
                        open: None,
                        plain: Vec::new(),
                        zstd,
                    },
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        first_err
                            .lock()
                            .expect("error slot")
                            .get_or_insert(FastError::Internal(format!("zstd: {e}")));
                        return;
                    }
                };
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(seg) = segments.get(i) else { return };
                    if let Err(e) = restore_segment(&**be, &crypto, seg, &files, opts, &mut w) {
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
    let results: Vec<Result<(), FastError>> = thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(|| finish_files(part, &files, opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(FastError::Internal("panic".into())))
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    for (path, node) in &links {
        set_metadata(path, node, opts, false);
    }
    for (path, node) in dirs.iter().rev() {
        set_metadata(path, node, opts, true);
    }
    lap(3, &mut stats);
    Ok(stats)
}

fn remove_existing(path: &Path) -> Result<(), FastError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(FastError::io("replacing", path)),
        Ok(_) => fs::remove_file(path).map_err(FastError::io("replacing", path)),
        Err(_) => Ok(()),
    }
}

/// Per-worker output state: the file written last stays open, since consecutive blobs
/// of a pack usually belong to the same file.
struct Writer {
    open: Option<(usize, File)>,
    plain: Vec<u8>,
    zstd: zstd::bulk::Decompressor<'static>,
}

impl Writer {
    fn write(
        &mut self,
        files: &[FileTarget],
        fi: usize,
        off: u64,
        data: &[u8],
    ) -> Result<(), FastError> {
        if self.open.as_ref().is_none_or(|(i, _)| *i != fi) {
            let path = &files[fi].path;
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(FastError::io("creating", path))?;
            self.open = Some((fi, f));
        }
        let (_, f) = self.open.as_ref().expect("opened above");
        f.write_all_at(data, off)
            .map_err(FastError::io("writing", &files[fi].path))
    }
}

fn restore_segment(
    be: &dyn WriteBackend,
    crypto: &Crypto,
    seg: &Segment,
    files: &[FileTarget],
    opts: &RestoreOptions,
    w: &mut Writer,
) -> Result<(), FastError> {
    let data = be.read_partial(FileType::Pack, &seg.pack, false, seg.offset, seg.length)?;
    let mut buf = data.to_vec();
    drop(data);
    for b in &seg.blobs {
        let start = (b.loc.offset - seg.offset) as usize;
        let enc = buf
            .get_mut(start..start + b.loc.length as usize)
            .ok_or_else(|| FastError::Format("short read from pack".into()))?;
        let r = crypto.open_in_place(enc)?;
        let decompressed: Vec<u8>;
        let plain: &[u8] = if b.loc.uncompressed > 0 {
            let mut out = std::mem::take(&mut w.plain);
            out.clear();
            out.reserve(b.loc.uncompressed as usize);
            w.zstd
                .decompress_to_buffer(&enc[r], &mut out)
                .map_err(|e| FastError::Format(format!("blob {}: {e}", b.id.to_hex().as_str())))?;
            if out.len() != b.loc.uncompressed as usize {
                return Err(FastError::Format(format!(
                    "blob {} has the wrong length",
                    b.id.to_hex().as_str()
                )));
            }
            decompressed = out;
            &decompressed
        } else {
            decompressed = Vec::new();
            &enc[r]
        };
        if opts.verify_blobs && hash(plain) != b.id {
            return Err(FastError::Format(format!(
                "blob {} does not match its id (corrupted pack?)",
                b.id.to_hex().as_str()
            )));
        }
        for &(fi, off) in &b.targets {
            w.write(files, fi, off, plain)?;
        }
        if let Some(p) = &opts.progress {
            p.inc(plain.len() as u64 * b.targets.len() as u64);
        }
        // keep the buffer for the next blob
        w.plain = decompressed;
    }
    Ok(())
}

fn finish_files(
    part: &[FileTarget],
    all: &[FileTarget],
    opts: &RestoreOptions,
) -> Result<(), FastError> {
    for f in part {
        if let Some(first) = f.link_to {
            // an empty first file has no data and may not exist yet (another thread
            // creates it): create it here, it is the same inode either way
            let target = &all[first].path;
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(target)
                .map_err(FastError::io("creating", target))?;
            remove_existing(&f.path)?;
            fs::hard_link(target, &f.path).map_err(FastError::io("linking", &f.path))?;
            continue;
        }
        // files with content exist already; empty ones are created here, and a file that
        // was in the target before gets its length fixed
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&f.path)
            .map_err(FastError::io("creating", &f.path))?;
        let size: u64 = f.node.meta.size;
        if file.metadata().map(|m| m.len()).unwrap_or(u64::MAX) != size {
            file.set_len(size)
                .map_err(FastError::io("truncating", &f.path))?;
        }
        drop(file);
        set_metadata(&f.path, &f.node, opts, false);
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

/// Applies owner, mode and times; failures are ignored like restic does for metadata
/// the restoring user may not set.
fn set_metadata(path: &Path, node: &Node, opts: &RestoreOptions, _is_dir: bool) {
    let m = &node.meta;
    if opts.ownership {
        let (uid, gid) = owner(m, opts.numeric_ids);
        _ = fchownat(
            AT_FDCWD,
            path,
            uid,
            gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
    }
    let is_link = matches!(node.node_type, NodeType::Symlink { .. });
    if let (Some(mode), false) = (m.mode, is_link) {
        _ = fs::set_permissions(
            path,
            std::os::unix::fs::PermissionsExt::from_mode(unix_mode(mode)),
        );
    }
    let ts = |t: Option<jiff::Timestamp>| {
        t.map_or(TimeSpec::UTIME_OMIT, |t| {
            TimeSpec::new(t.as_second(), i64::from(t.subsec_nanosecond()))
        })
    };
    let (atime, mtime) = (ts(m.atime.or(m.mtime)), ts(m.mtime));
    _ = utimensat(
        AT_FDCWD,
        path,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    );
}

/// Go's `os.FileMode` permission and special bits (as stored by restic) to Unix mode bits.
const fn unix_mode(go: u32) -> u32 {
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const STICKY: u32 = 1 << 20;
    let mut m = go & 0o777;
    if go & SETUID != 0 {
        m |= 0o4000;
    }
    if go & SETGID != 0 {
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
        assert_eq!(unix_mode(0o644), 0o644);
        assert_eq!(unix_mode((1 << 31) | 0o755), 0o755);
        assert_eq!(unix_mode((1 << 23) | 0o755), 0o4755);
        assert_eq!(unix_mode((1 << 20) | (1 << 31) | 0o777), 0o1777);
    }
}

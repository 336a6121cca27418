//! Benchmark harness for the hot path: init / backup / restore a repository with either
//! rustic_core's own archiver and restorer (`--engine rustic`) or `repo::fast`
//! (`--engine fast`). Used by `bench/run` until the `lifeboat` CLI is merged.

#[path = "s3be.rs"]
mod s3be;

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result, bail};
use lifeboat::repo::fast::{self, local::LocalDir};
use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, Excludes, FileType, KeyOptions, LocalDestination,
    LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, LsOptions, PathList,
    ReadBackend, Repository, RepositoryBackends, RepositoryOptions, RestoreOptions,
    SnapshotOptions, WriteBackend,
};

/// Command line, shaped like the `lifeboat` CLI so `bench/tools.toml` can switch to
/// it by changing the program name:
/// `fastbench [--repo R] [--engine fast|rustic] repo init | backup [--host H] PATH... |
/// restore SNAPSHOT --target DIR | size | wipe`.
struct Args {
    cmd: String,
    repo: String,
    engine: String,
    host: String,
    snapshot: String,
    target: Option<PathBuf>,
    paths: Vec<String>,
}

fn parse() -> Result<Args> {
    let mut repo = std::env::var("LIFEBOAT_REPOSITORY").ok();
    let mut engine = std::env::var("FASTBENCH_ENGINE").unwrap_or_else(|_| "fast".into());
    let mut host = "perfbench".to_string();
    let mut target = None;
    let mut pos = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--repo" => repo = Some(it.next().context("--repo needs a value")?),
            "--engine" => engine = it.next().context("--engine needs a value")?,
            "--target" => target = Some(it.next().context("--target needs a value")?.into()),
            "--host" => host = it.next().context("--host needs a value")?,
            "--version" => {
                println!(
                    "fastbench (lifeboat repo::fast harness) {}",
                    env!("CARGO_PKG_VERSION")
                );
                std::process::exit(0);
            }
            _ => pos.push(a),
        }
    }
    let mut pos = pos.into_iter();
    let mut cmd = pos
        .next()
        .context("usage: fastbench repo init | backup PATH... | restore SNAPSHOT --target DIR")?;
    if cmd == "repo" {
        cmd = pos.next().context("repo what?")?;
    }
    let rest: Vec<String> = pos.collect();
    let snapshot = if cmd == "restore" {
        rest.first().cloned().unwrap_or_else(|| "latest".into())
    } else {
        String::new()
    };
    Ok(Args {
        cmd,
        repo: repo.context("no repository (--repo or LIFEBOAT_REPOSITORY)")?,
        engine,
        host,
        snapshot,
        target,
        paths: rest,
    })
}

/// Writes a key file for `master` protected by `password` with scrypt parameters
/// `2^log_n, r, p`, exactly as restic lays key files out.
fn rekey(
    be: &dyn WriteBackend,
    master: &rustic_core::repofile::MasterKey,
    password: &str,
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<()> {
    let mut salt = vec![0u8; 64];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut salt);
    let params = scrypt::Params::new(log_n, r, p).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut user = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut user)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut data = Vec::new();
    fast::crypto::Crypto::from_raw(&user).seal_append(&serde_json::to_vec(master)?, &mut data);
    let key = rustic_core::repofile::KeyFile {
        hostname: None,
        username: None,
        created: Some(jiff::Zoned::now()),
        kdf: "scrypt".into(),
        n: 1 << log_n,
        r,
        p,
        data,
        salt,
    };
    let json = serde_json::to_vec(&key)?;
    be.write_bytes(FileType::Key, &fast::hash(&json), false, json.into())?;
    Ok(())
}

fn main() -> Result<()> {
    let args = parse()?;
    let be: Arc<dyn WriteBackend> = if args.repo.starts_with("s3:") {
        Arc::new(s3be::S3Dir::new(&args.repo)?)
    } else {
        // FASTBENCH_NO_FSYNC is for measuring what durability costs, never for figures
        Arc::new(LocalDir::new(&args.repo).with_sync(std::env::var("FASTBENCH_NO_FSYNC").is_err()))
    };
    if args.cmd == "size" || args.cmd == "wipe" {
        // repository size / removal, for run_bench's repo_size and cleanup hooks on S3
        let mut total = 0u64;
        for tpe in [
            FileType::Config,
            FileType::Key,
            FileType::Snapshot,
            FileType::Index,
            FileType::Pack,
        ] {
            for (id, size) in be.list_with_size(tpe)? {
                total += u64::from(size);
                if args.cmd == "wipe" {
                    be.remove(tpe, &id, false)?;
                }
            }
        }
        if args.cmd == "size" {
            println!("{total}");
        }
        return Ok(());
    }
    let password = std::env::var("LIFEBOAT_PASSWORD").context("LIFEBOAT_PASSWORD is not set")?;
    let backends = RepositoryBackends::new(be.clone(), None);
    let opts = RepositoryOptions::default().no_cache(true);
    let creds = Credentials::password(&password);
    let repo = Repository::new(&opts, &backends)?;
    match (args.cmd.as_str(), args.engine.as_str()) {
        ("init", _) => {
            let repo = repo.init(&creds, &KeyOptions::default(), &ConfigOptions::default())?;
            // FASTBENCH_KDF=log_n,r,p replaces the key by one with these scrypt
            // parameters: analysis of what key derivation costs, never the default
            if let Ok(kdf) = std::env::var("FASTBENCH_KDF") {
                let v: Vec<u32> = kdf.split(',').map(str::parse).collect::<Result<_, _>>()?;
                let [log_n, r, p] = v[..] else {
                    bail!("FASTBENCH_KDF=log_n,r,p")
                };
                let old = be.list(FileType::Key)?;
                rekey(&*be, &repo.key(), &password, u8::try_from(log_n)?, r, p)?;
                for id in old {
                    be.remove(FileType::Key, &id, false)?;
                }
            }
        }
        ("kdf-bench", _) => {
            for (log_n, r, p) in [(17u8, 8u32, 1u32), (15, 8, 1), (15, 8, 2), (15, 8, 4)] {
                let params =
                    scrypt::Params::new(log_n, r, p).map_err(|e| anyhow::anyhow!("{e}"))?;
                let t = std::time::Instant::now();
                let mut out = [0u8; 64];
                scrypt::scrypt(b"password", &[7u8; 64], &params, &mut out)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!(
                    "scrypt N=2^{log_n} r={r} p={p}: {:.3} s, {} MiB",
                    t.elapsed().as_secs_f64(),
                    ((128u64 * u64::from(r)) << log_n) >> 20
                );
            }
        }
        ("backup", "rustic") => {
            let repo = repo.open(&creds)?.to_indexed_ids()?;
            let snap = SnapshotOptions::default()
                .host(Some(args.host.clone()))
                .to_snapshot()?;
            let source = args
                .paths
                .iter()
                .collect::<PathList>()
                .sanitize()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let snap = repo.backup(&BackupOptions::default(), &source, snap)?;
            eprintln!("snapshot {}", snap.id);
        }
        ("backup", "fast") => {
            let repo = repo.open(&creds)?;
            let snap = SnapshotOptions::default()
                .host(Some(args.host.clone()))
                .to_snapshot()?;
            let source = args
                .paths
                .iter()
                .collect::<PathList>()
                .sanitize()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let paths = source.paths();
            let src = LocalSource::new(
                LocalSourceSaveOptions::default(),
                &Excludes::default(),
                &LocalSourceFilterOptions::default(),
                &paths,
            )?;
            let mut opts = fast::backup::BackupOptions::default();
            if let Ok(l) = std::env::var("FASTBENCH_LEVEL") {
                opts.compression_level = Some(l.parse()?);
            }
            // local disks gain nothing from parallel pack writes but pay a pack of
            // memory per writer; object stores need several requests in flight
            opts.upload_workers = if args.repo.starts_with("s3:") { 3 } else { 1 };
            if let Ok(n) = std::env::var("FASTBENCH_UPLOADERS") {
                opts.upload_workers = n.parse()?;
            }
            let (snap, stats) = fast::backup::backup(&repo, &be, &src, &paths, snap, &opts)?;
            eprintln!(
                "snapshot {} packs {} skipped {} phases {:?}",
                snap.id,
                stats.packs_written,
                stats.skipped.len(),
                stats.phase_secs
            );
            for (p, e) in &stats.skipped {
                eprintln!("skipped {p}: {e}");
            }
        }
        ("restore", "fast") => {
            let target = args.target.context("restore needs --target")?;
            let repo = repo.open(&creds)?;
            let snap = repo.get_snapshot_from_str(&args.snapshot, |_| true)?;
            let mut opts = fast::restore::RestoreOptions::default();
            if std::env::var("FASTBENCH_NO_VERIFY").is_ok() {
                opts.verify_blobs = false;
            }
            let stats = fast::restore::restore(&repo, &be, &snap.tree, &target, &opts)?;
            eprintln!("{stats:?}");
        }
        ("restore", "rustic") => {
            let target = args.target.context("restore needs --target")?;
            let repo = repo.open(&creds)?.to_indexed()?;
            let node = repo.node_from_snapshot_path(&args.snapshot, |_| true)?;
            let ls = LsOptions::default().recursive(true);
            let dest = LocalDestination::new(&target.to_string_lossy(), true, !node.is_dir())?;
            let ropts = RestoreOptions::default();
            let plan = repo.prepare_restore(&ropts, repo.ls(&node, &ls)?, &dest, false)?;
            repo.restore(plan, &ropts, repo.ls(&node, &ls)?, &dest)?;
        }
        (c, e) => bail!("unknown command {c} / engine {e}"),
    }
    Ok(())
}

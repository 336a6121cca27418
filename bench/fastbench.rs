//! Benchmark helpers that are not product commands: the size of a repository and its
//! removal (the runner's `repo_size` / `cleanup` hooks for S3 repositories, through the
//! product's own storage backend), and `kdf-bench`, the cost of scrypt parameters. The
//! benchmarked operations themselves run through the `lifeboat` CLI.
//!
//! `fastbench [--repo R] size | wipe | kdf-bench` (`--repo` or `LIFEBOAT_REPOSITORY`; S3
//! credentials from the standard AWS variables).

use anyhow::{Context, Result, bail};
use lifeboat::repo::{RepoOptions, Storage};

/// Objects of a restic repository, by the directory they live in.
const DIRS: [&str; 5] = ["keys", "snapshots", "index", "data", "locks"];

fn main() -> Result<()> {
    let mut repo = std::env::var("LIFEBOAT_REPOSITORY").ok();
    let mut cmd = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--repo" => repo = Some(it.next().context("--repo needs a value")?),
            "--version" => {
                println!(
                    "fastbench (lifeboat benchmark helpers) {}",
                    env!("CARGO_PKG_VERSION")
                );
                return Ok(());
            }
            _ => cmd = Some(a),
        }
    }
    match cmd.as_deref() {
        Some("kdf-bench") => kdf_bench(),
        Some(c @ ("size" | "wipe")) => {
            let location = repo.context("no repository (--repo or LIFEBOAT_REPOSITORY)")?;
            let store = RepoOptions::new(Storage::parse(&location)?).object_store()?;
            let mut total = store.size("config")?.unwrap_or(0);
            for dir in DIRS {
                for (name, size) in store.list(dir)? {
                    total += size;
                    if c == "wipe" {
                        store.delete(&format!("{dir}/{name}"))?;
                    }
                }
            }
            if c == "wipe" {
                store.delete("config")?;
            } else {
                println!("{total}");
            }
            Ok(())
        }
        _ => bail!("usage: fastbench [--repo R] size | wipe | kdf-bench"),
    }
}

/// Times scrypt with the parameters discussed in docs/performance.md (the scrypt crate
/// the product derives keys with).
fn kdf_bench() -> Result<()> {
    for (log_n, r, p) in [(17u8, 8u32, 1u32), (15, 8, 1), (15, 8, 2), (15, 8, 4)] {
        let params = scrypt::Params::new(log_n, r, p).map_err(|e| anyhow::anyhow!("{e}"))?;
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
    Ok(())
}

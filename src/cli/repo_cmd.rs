//! `lifeboat repo ...`: repository administration.

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{CliError, RepoArgs, output::Output};
use crate::repo::{self, InitOptions, KdfParams, kdf};

/// `repo` subcommands.
#[derive(Args, Debug)]
pub struct RepoCmd {
    #[command(subcommand)]
    cmd: RepoSub,
}

#[derive(Subcommand, Debug)]
enum RepoSub {
    /// Create a repository (restic format v2, compressed) with one key.
    Init(InitArgs),
    /// Try to delete the current version of the smallest pack with these credentials, as a
    /// drill does on an immutable store: exit 0 when the store refuses, 70 (NotImmutable)
    /// when the version was deleted (it is written back) or the bucket has no versions.
    TryDeletePack,
}

/// KDF preset for the new key (see docs/engine.md, "Key derivation").
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum KdfPreset {
    /// scrypt N=2^15 r=8 p=2 (32 MiB, ~0.17 s per command): for passwords people type.
    #[default]
    Interactive,
    /// scrypt N=2^12 r=8 p=1 (4 MiB, milliseconds): only for long random secrets (checked).
    RandomSecret,
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Key derivation preset.
    #[arg(long, value_enum, default_value_t, env = "LIFEBOAT_KDF")]
    kdf: KdfPreset,
    /// Override: log2 of scrypt's N (with --kdf-r and --kdf-p).
    #[arg(long, requires_all = ["kdf_r", "kdf_p"])]
    kdf_log_n: Option<u8>,
    /// Override: scrypt's r.
    #[arg(long, requires = "kdf_log_n")]
    kdf_r: Option<u32>,
    /// Override: scrypt's p.
    #[arg(long, requires = "kdf_log_n")]
    kdf_p: Option<u32>,
    /// zstd compression level (default: restic's "auto").
    #[arg(long)]
    compression: Option<i32>,
}

#[derive(Serialize)]
struct InitOut {
    location: String,
    kdf: KdfParams,
    kdf_memory_mib: u64,
}

/// Runs `repo ...`.
pub fn run(cmd: RepoCmd, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    match cmd.cmd {
        RepoSub::Init(a) => init(a, repo_args, out),
        RepoSub::TryDeletePack => try_delete_pack(repo_args, out),
    }
}

fn try_delete_pack(repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    use crate::crd::dr_drill::ImmutabilityResult;
    let opts = repo_args.options(out.json)?;
    let store = opts.object_store()?;
    let probe = crate::drill::immutability::probe(store.as_ref(), true)
        .map_err(|e| CliError::from(repo::Error::Storage(e)))?;
    let message = probe.message.clone().unwrap_or_default();
    out.emit(&probe, || message.clone())?;
    match probe.result {
        ImmutabilityResult::Refused | ImmutabilityResult::Skipped => Ok(()),
        ImmutabilityResult::Deleted | ImmutabilityResult::Unversioned => Err(CliError {
            category: "NotImmutable",
            message,
        }),
        ImmutabilityResult::Error => Err(CliError::input(message)),
    }
}

fn init(a: InitArgs, repo_args: &RepoArgs, out: &Output) -> Result<(), CliError> {
    let InitArgs {
        kdf: preset,
        kdf_log_n,
        kdf_r,
        kdf_p,
        compression,
    } = a;
    let password = repo_args.password()?;
    let kdf = match (kdf_log_n, kdf_r, kdf_p) {
        (Some(log_n), Some(r), Some(p)) => KdfParams { log_n, r, p },
        _ => match preset {
            KdfPreset::Interactive => kdf::INTERACTIVE,
            KdfPreset::RandomSecret => {
                kdf::check_random_secret(password.expose()).map_err(CliError::input)?;
                kdf::RANDOM_SECRET
            }
        },
    };
    let opts = repo_args.options(out.json)?;
    let r = repo::Repo::init(&opts, &password, &InitOptions { kdf, compression })?;
    let o = InitOut {
        location: r.location().to_string(),
        kdf,
        kdf_memory_mib: kdf.memory_bytes() >> 20,
    };
    out.emit(&o, || {
        format!(
            "created repository at {} (key: scrypt N=2^{} r={} p={}, {} MiB)",
            o.location, kdf.log_n, kdf.r, kdf.p, o.kdf_memory_mib
        )
    })
}

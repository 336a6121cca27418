//! Lifeboat: a Kubernetes backup and disaster-recovery operator that proves, on a
//! schedule, that its backups restore.
//!
//! The crate is one library with one binary (`lifeboat`, see `main.rs`). Modules keep
//! Kubernetes out of the data path: `repo` and `db` know nothing of Kubernetes, so the
//! same code serves the CLI, the mover Jobs and the tests.

pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod db;
pub mod drill;
pub mod evidence;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod mover;
// The engine's visibility is its facade (src/repo/mod.rs): nothing inside is `pub`
// unless the facade re-exports it.
#[warn(unreachable_pub)]
pub mod repo;
pub mod schedule;
pub mod telemetry;
pub mod volume;

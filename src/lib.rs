//! Lifeboat: a Kubernetes backup and disaster-recovery operator that proves, on a
//! schedule, that its backups restore.
//!
//! The crate is one library with one binary (`lifeboat`, see `main.rs`). Modules keep
//! Kubernetes out of the data path: `repo` and `db` know nothing of Kubernetes, so the
//! same code serves the CLI, the mover Jobs and the tests.

pub mod repo;
pub mod telemetry;

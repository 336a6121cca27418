//! The BackupPolicy controller: schedules Backups, prunes their history, and keeps the
//! policy's status (last runs, next run, RPO) current.

pub mod plan;

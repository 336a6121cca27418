//! The Backup controller: runs one backup of a policy as mover Jobs, one per source, and
//! records each source's snapshot in the Backup's status.

pub mod plan;

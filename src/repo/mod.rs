//! Placeholder for the repository facade (owned by the engine branch): only declares the
//! hot-path module so it compiles on its own. The lead replaces this file when merging.

pub mod fast;

//! rustic_core logs through the `log` crate; this forwards its records into `tracing` so
//! they share our subscriber, filter and format. rustic's `info` lines are progress chatter
//! for its own CLI, so they become `debug` here.

use std::sync::atomic::{AtomicUsize, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// While positive, rustic's archiver warnings are demoted to debug: during a stream backup
/// its "ignoring error" about the failed stream is replaced by our own one-line error.
static QUIET_ARCHIVER: AtomicUsize = AtomicUsize::new(0);

/// Demotes archiver warnings while alive.
pub struct QuietArchiver(());

impl QuietArchiver {
    /// Starts demoting.
    pub fn new() -> Self {
        QUIET_ARCHIVER.fetch_add(1, Ordering::SeqCst);
        Self(())
    }
}

impl Default for QuietArchiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for QuietArchiver {
    fn drop(&mut self) {
        QUIET_ARCHIVER.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Bridge;

impl Log for Bridge {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let module = record.target();
        let msg = record.args();
        let demote = record.level() == Level::Warn
            && module.starts_with("rustic_core::archiver")
            && QUIET_ARCHIVER.load(Ordering::SeqCst) > 0;
        if demote {
            tracing::debug!(target: "rustic", module, "{msg}");
            return;
        }
        match record.level() {
            Level::Error => tracing::error!(target: "rustic", module, "{msg}"),
            Level::Warn => tracing::warn!(target: "rustic", module, "{msg}"),
            Level::Info | Level::Debug => tracing::debug!(target: "rustic", module, "{msg}"),
            Level::Trace => tracing::trace!(target: "rustic", module, "{msg}"),
        }
    }

    fn flush(&self) {}
}

static BRIDGE: Bridge = Bridge;

/// Installs the bridge (once per process; later calls are no-ops).
pub fn install() {
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}

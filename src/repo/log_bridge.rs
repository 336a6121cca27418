//! rustic_core logs through the `log` crate; this forwards its records into `tracing` so
//! they share our subscriber, filter and format. rustic's `info` lines are progress chatter
//! for its own CLI, so they become `debug` here.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

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

/// Archiver warnings collected while a [`WarningCollector`] is alive (process-wide).
static COLLECTED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Collects rustic's archiver warnings (files it could not read and skipped) while alive, so a
/// backup can report them instead of passing silently. Process-wide: one backup at a time.
pub struct WarningCollector(());

impl WarningCollector {
    /// Starts collecting.
    pub fn start() -> Self {
        install();
        *COLLECTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        Self(())
    }

    /// Stops and returns what was collected.
    pub fn finish(self) -> Vec<String> {
        COLLECTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }
}

impl Drop for WarningCollector {
    fn drop(&mut self) {
        *COLLECTED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

struct Bridge;

impl Log for Bridge {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        // When no tracing subscriber is installed, tracing (built with its `log` feature by
        // some dependency) forwards events back to `log`: without this guard a record would
        // bounce between the two until the stack overflows.
        thread_local! {
            static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if INSIDE.with(|i| i.replace(true)) {
            return;
        }
        self.forward(record);
        INSIDE.with(|i| i.set(false));
    }

    fn flush(&self) {}
}

impl Bridge {
    fn forward(&self, record: &Record<'_>) {
        let module = record.target();
        let msg = record.args();
        if record.level() == Level::Warn && module.starts_with("rustic_core::archiver") {
            let mut c = COLLECTED.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = c.as_mut()
                && v.len() < 1000
            {
                let line = super::error::one_line(&msg.to_string());
                let line = line
                    .strip_prefix("ignoring error: ")
                    .unwrap_or(&line)
                    .trim_start_matches("Error: ")
                    .to_string();
                v.push(line);
            }
        }
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
}

static BRIDGE: Bridge = Bridge;

/// Installs the bridge (once per process; later calls are no-ops).
pub fn install() {
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}

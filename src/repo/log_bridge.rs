//! rustic_core logs through the `log` crate; this forwards its records into `tracing` so
//! they share our subscriber, filter and format. rustic's `info` lines are progress chatter
//! for its own CLI, so they become `debug` here.

use log::{Level, LevelFilter, Log, Metadata, Record};

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
pub(crate) fn install() {
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}

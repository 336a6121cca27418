//! Reports a mover's progress while it works: every few seconds one log line with the
//! bytes done (and the total, when known), for `kubectl logs`.
//!
//! NB: movers used to merge-patch `status.progress` of their run object. They no longer
//! write any status: a mover's ServiceAccount holds no rights on run objects, so neither a
//! mover nor anyone borrowing its identity can change what the controller records. What
//! decides an outcome comes only from the termination message of the Pod the controller's
//! Job made (see `controller::access::observe`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::repo::ProgressSink;

/// How often progress is logged.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A running reporter; [`Reporter::stop`] logs the final figures.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The figures of one report: bytes done, and the total when known.
pub fn figures(sink: &ProgressSink) -> (u64, Option<u64>) {
    let total = sink.total.load(Ordering::Relaxed);
    (
        sink.done.load(Ordering::Relaxed),
        (total > 0).then_some(total),
    )
}

impl Reporter {
    /// Starts logging `sink` for `source`.
    pub fn start(source: String, sink: Arc<ProgressSink>) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                loop {
                    let last = flag.load(Ordering::Relaxed);
                    let (done, total) = figures(&sink);
                    tracing::info!(source = %source, bytes_done = done, bytes_total = total, "progress");
                    if last {
                        break;
                    }
                    let mut waited = Duration::ZERO;
                    while waited < INTERVAL && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                        waited += Duration::from_millis(100);
                    }
                }
            })
            .ok();
        Reporter { stop, thread }
    }

    /// Logs the final figures and waits for the reporter to end.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_totals_are_none_not_zero() {
        let sink = ProgressSink::default();
        sink.done.store(10, Ordering::Relaxed);
        assert_eq!(figures(&sink), (10, None));
        sink.total.store(100, Ordering::Relaxed);
        assert_eq!(figures(&sink), (10, Some(100)));
    }
}

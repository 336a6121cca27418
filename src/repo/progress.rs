//! Progress of rustic_core operations: a single self-overwriting line on stderr when
//! stderr is a terminal (logs and `--json` stay clean), and optionally a [`ProgressSink`]
//! of counters that a caller polls (the mover reports them to Kubernetes).

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rustic_core::{HiddenProgress, Progress, ProgressBars, ProgressType, RusticProgress};

/// Byte counters of the current operation, readable from another thread. Only byte
/// progress (backup, restore, check) feeds it; counters and spinners do not.
#[derive(Debug, Default)]
pub struct ProgressSink {
    /// Bytes processed so far.
    pub done: AtomicU64,
    /// Bytes to process, once known (0 until then).
    pub total: AtomicU64,
}

/// Progress bars on stderr, or hidden; plus an optional sink.
#[derive(Clone, Debug)]
pub(crate) struct TermProgress {
    enabled: bool,
    sink: Option<Arc<ProgressSink>>,
}

impl TermProgress {
    /// Shows progress only if `wanted` and stderr is a terminal; feeds `sink` either way.
    pub(crate) fn new(wanted: bool, sink: Option<Arc<ProgressSink>>) -> Self {
        Self {
            enabled: wanted && std::io::stderr().is_terminal(),
            sink,
        }
    }
}

impl ProgressBars for TermProgress {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        let sink = match progress_type {
            ProgressType::Bytes => self.sink.clone(),
            _ => None,
        };
        if let Some(s) = &sink {
            s.done.store(0, Ordering::Relaxed);
            s.total.store(0, Ordering::Relaxed);
        }
        if !self.enabled {
            return match sink {
                Some(sink) => Progress::new(SinkOnly(sink)),
                None => Progress::new(HiddenProgress),
            };
        }
        Progress::new(Line {
            sink,
            kind: progress_type,
            title: Arc::new(Mutex::new(prefix.to_string())),
            pos: Arc::new(AtomicU64::new(0)),
            len: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            last: Arc::new(Mutex::new(None)),
        })
    }
}

/// Feeds the sink without drawing anything.
#[derive(Debug)]
struct SinkOnly(Arc<ProgressSink>);

impl RusticProgress for SinkOnly {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.total.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, _title: &str) {}
    fn inc(&self, inc: u64) {
        self.0.done.fetch_add(inc, Ordering::Relaxed);
    }
    fn finish(&self) {}
}

#[derive(Debug)]
struct Line {
    sink: Option<Arc<ProgressSink>>,
    kind: ProgressType,
    title: Arc<Mutex<String>>,
    pos: Arc<AtomicU64>,
    len: Arc<AtomicU64>,
    started: Instant,
    last: Arc<Mutex<Option<Instant>>>,
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Line {
    fn render(&self, force: bool) {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if !force && last.is_some_and(|l| now.duration_since(l) < Duration::from_millis(200)) {
                return;
            }
            *last = Some(now);
        }
        let pos = self.pos.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        let title = self.title.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let body = match self.kind {
            ProgressType::Spinner => String::new(),
            ProgressType::Counter if len > 0 => format!("{pos}/{len}"),
            ProgressType::Counter => format!("{pos}"),
            ProgressType::Bytes if len > 0 => format!(
                "{} / {} ({}/s)",
                human(pos),
                human(len),
                human((pos as f64 / secs) as u64)
            ),
            ProgressType::Bytes => {
                format!("{} ({}/s)", human(pos), human((pos as f64 / secs) as u64))
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{title} {body}");
        let _ = err.flush();
    }
}

impl RusticProgress for Line {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.len.store(len, Ordering::Relaxed);
        if let Some(s) = &self.sink {
            s.total.store(len, Ordering::Relaxed);
        }
        self.render(false);
    }
    fn set_title(&self, title: &str) {
        *self.title.lock().unwrap_or_else(|e| e.into_inner()) = title.to_string();
        self.render(false);
    }
    fn inc(&self, inc: u64) {
        self.pos.fetch_add(inc, Ordering::Relaxed);
        if let Some(s) = &self.sink {
            s.done.fetch_add(inc, Ordering::Relaxed);
        }
        self.render(false);
    }
    fn finish(&self) {
        self.render(true);
        let _ = writeln!(std::io::stderr());
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes() {
        assert_eq!(human(12), "12 B");
        assert_eq!(human(2048), "2.0 KiB");
        assert_eq!(human(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}

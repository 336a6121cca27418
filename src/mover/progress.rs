//! Reports a mover's progress to its run object while it works: every few seconds a JSON
//! merge patch of `status.progress.<source>` (a map, so concurrent movers of one run never
//! overwrite each other, and the controller's server-side-applied fields stay untouched).
//! Best effort: without in-cluster credentials, or when a patch fails, the work goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;

use super::RunRef;
use crate::crd::backup::Progress;
use crate::repo::ProgressSink;

/// How often progress is reported.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A running reporter; [`Reporter::stop`] sends the final figures.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The patch body for one report.
pub fn patch_body(source: &str, sink: &ProgressSink) -> serde_json::Value {
    let total = sink.total.load(Ordering::Relaxed);
    let p = Progress {
        bytes_done: sink.done.load(Ordering::Relaxed),
        bytes_total: (total > 0).then_some(total),
        files_done: None,
        files_total: None,
        updated: Some(jiff::Timestamp::now().to_string()),
    };
    serde_json::json!({ "status": { "progress": { source: p } } })
}

pub(crate) fn run_api(client: kube::Client, run: &RunRef) -> Api<DynamicObject> {
    let kind = match run.run_plural {
        "restores" => "Restore",
        "drillruns" => "DrillRun",
        _ => "Backup",
    };
    let gvk = GroupVersionKind::gvk(crate::crd::GROUP, crate::crd::VERSION, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, run.run_plural);
    Api::namespaced_with(client, &run.namespace, &ar)
}

impl Reporter {
    /// Starts reporting `sink` for `source` of `run`. Returns a reporter even when no
    /// cluster is reachable (it then does nothing), so callers need no special case.
    pub fn start(run: RunRef, source: String, sink: Arc<ProgressSink>) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::debug!(error = %e, "no runtime for progress reports");
                        return;
                    }
                };
                rt.block_on(async move {
                    let client = match kube::Client::try_default().await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!(error = %e, "not in a cluster: progress is not reported");
                            return;
                        }
                    };
                    let api = run_api(client, &run);
                    let pp = PatchParams::default();
                    let mut warned = false;
                    loop {
                        let last = flag.load(Ordering::Relaxed);
                        let body = patch_body(&source, &sink);
                        if let Err(e) = api.patch_status(&run.run, &pp, &Patch::Merge(&body)).await
                            && !warned
                        {
                            tracing::warn!(error = %e, "could not report progress (continuing)");
                            warned = true;
                        }
                        if last {
                            break;
                        }
                        let mut waited = Duration::ZERO;
                        while waited < INTERVAL && !flag.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            waited += Duration::from_millis(100);
                        }
                    }
                });
            })
            .ok();
        Reporter { stop, thread }
    }

    /// Sends the final report and waits for it (bounded by the patch's own timeout).
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
    fn the_patch_touches_only_this_sources_progress() {
        let sink = ProgressSink::default();
        sink.done.store(10, Ordering::Relaxed);
        let body = patch_body("data", &sink);
        let p = &body["status"]["progress"]["data"];
        assert_eq!(p["bytesDone"], 10);
        assert!(
            p.get("bytesTotal").is_none(),
            "unknown totals are omitted, not null"
        );
        assert_eq!(body["status"].as_object().unwrap().len(), 1);
        sink.total.store(100, Ordering::Relaxed);
        assert_eq!(
            patch_body("data", &sink)["status"]["progress"]["data"]["bytesTotal"],
            100
        );
    }
}

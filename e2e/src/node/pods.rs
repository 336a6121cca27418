//! The pod manager: one watch over all pods that binds pending pods that fit this node
//! (the scheduler's job), starts a worker per pod bound here, forwards updates and
//! deletions to it, and on the first full listing cleans up what a previous agent run
//! left for pods that no longer exist.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, PersistentVolumeClaim, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;

use super::pod::Worker;
use super::process::{self, ContainerFiles};
use super::scheduler::{self, Verdict};
use super::{Ctx, registration};

struct Scheduler {
    ctx: Arc<Ctx>,
    recorder: Recorder,
    labels: BTreeMap<String, String>,
    pending: BTreeMap<String, Pod>,
    reported: BTreeMap<String, String>,
}

impl Scheduler {
    async fn unbound_claim(&self, pod: &Pod) -> Option<String> {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        for v in pod.spec.as_ref()?.volumes.iter().flatten() {
            let Some(c) = &v.persistent_volume_claim else {
                continue;
            };
            match api.get_opt(&c.claim_name).await {
                Ok(Some(pvc)) => {
                    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
                        return Some("0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims.".into());
                    }
                }
                Ok(None) => {
                    return Some(format!(
                        "0/1 nodes are available: persistentvolumeclaim \"{}\" not found.",
                        c.claim_name
                    ));
                }
                Err(e) => {
                    return Some(format!(
                        "checking persistentvolumeclaim {}: {e}",
                        c.claim_name
                    ));
                }
            }
        }
        None
    }

    async fn consider(&mut self, pod: Pod) {
        let uid = pod.uid().unwrap_or_default();
        let mut verdict = scheduler::check(&pod, &self.ctx.cfg.node_name, &self.labels);
        if verdict == Verdict::Fits
            && let Some(msg) = self.unbound_claim(&pod).await
        {
            verdict = Verdict::Unschedulable(msg);
        }
        match verdict {
            Verdict::Ignore => {
                self.pending.remove(&uid);
            }
            Verdict::Fits => {
                if self.bind(&pod).await {
                    self.pending.remove(&uid);
                    self.reported.remove(&uid);
                } else {
                    self.pending.insert(uid, pod);
                }
            }
            Verdict::Unschedulable(msg) => {
                self.pending.insert(uid.clone(), pod.clone());
                if self.reported.get(&uid) != Some(&msg) {
                    self.reported.insert(uid, msg.clone());
                    self.unschedulable(&pod, &msg).await;
                }
            }
        }
    }

    async fn bind(&self, pod: &Pod) -> bool {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let binding = Binding {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.uid(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.ctx.cfg.node_name.clone()),
                ..Default::default()
            },
        };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{name}"), "bound to node");
                let ev = Event {
                    type_: EventType::Normal,
                    reason: "Scheduled".into(),
                    note: Some(format!(
                        "Successfully assigned {ns}/{name} to {}",
                        self.ctx.cfg.node_name
                    )),
                    action: "Binding".into(),
                    secondary: None,
                };
                let _ = self.recorder.publish(&ev, &pod.object_ref(&())).await;
                true
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => true,
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "binding failed; will retry");
                false
            }
        }
    }

    async fn unschedulable(&self, pod: &Pod, msg: &str) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        tracing::info!(pod = %format!("{ns}/{name}"), reason = msg, "pod stays pending");
        let ev = Event {
            type_: EventType::Warning,
            reason: "FailedScheduling".into(),
            note: Some(msg.to_string()),
            action: "Scheduling".into(),
            secondary: None,
        };
        let _ = self.recorder.publish(&ev, &pod.object_ref(&())).await;
        let patch = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
            "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }]}});
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(error = %e, "setting PodScheduled=False");
        }
    }

    async fn retry_all(&mut self) {
        let pods: Vec<Pod> = self.pending.values().cloned().collect();
        for p in pods {
            self.consider(p).await;
        }
    }
}

/// Kills what a previous run left for pods that no longer exist, and removes their state.
async fn cleanup_orphans(ctx: &Ctx, known: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(ctx.cfg.state_dir.join("pods")) else {
        return;
    };
    for entry in entries.flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if known.contains(&uid) {
            continue;
        }
        let dir = entry.path();
        for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(container) = name.strip_suffix(".shimpid") {
                let files = ContainerFiles::new(&dir, container);
                if let Some(shim) = process::shim_alive(&files) {
                    tracing::info!(%uid, container, "killing a container left by a previous run");
                    process::stop(shim, &files, Duration::from_secs(2)).await;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Runs the pod manager until `stop` flips; then stops every pod's processes.
pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let recorder = Recorder::new(
        ctx.client.clone(),
        Reporter {
            controller: "default-scheduler".into(),
            instance: None,
        },
    );
    let mut sched = Scheduler {
        labels: registration::labels(&ctx.cfg),
        ctx: ctx.clone(),
        recorder,
        pending: BTreeMap::new(),
        reported: BTreeMap::new(),
    };
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let mut pod_events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let pvcs: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
    let mut pvc_events = watcher(pvcs, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut workers: BTreeMap<String, watch::Sender<Option<Pod>>> = BTreeMap::new();
    let mut running = tokio::task::JoinSet::new();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut first_listing = true;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let node = ctx.cfg.node_name.clone();

    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(uid) = done { workers.remove(&uid); }
            }
            ev = pod_events.next() => {
                let Some(ev) = ev else { break };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => { tracing::warn!(error = %e, "pod watch"); continue; }
                };
                let apply = match ev {
                    watcher::Event::Init => { listed.clear(); None }
                    watcher::Event::InitApply(p) => { listed.insert(p.uid().unwrap_or_default()); Some(p) }
                    watcher::Event::Apply(p) => Some(p),
                    watcher::Event::InitDone => {
                        let gone: Vec<String> = workers.keys().filter(|u| !listed.contains(*u)).cloned().collect();
                        for uid in gone {
                            if let Some(tx) = workers.get(&uid) { let _ = tx.send(None); }
                        }
                        if first_listing {
                            first_listing = false;
                            let known: BTreeSet<String> = workers.keys().cloned().collect();
                            cleanup_orphans(&ctx, &known).await;
                        }
                        None
                    }
                    watcher::Event::Delete(p) => {
                        let uid = p.uid().unwrap_or_default();
                        sched.pending.remove(&uid);
                        sched.reported.remove(&uid);
                        if let Some(tx) = workers.get(&uid) { let _ = tx.send(None); }
                        None
                    }
                };
                let Some(p) = apply else { continue };
                let uid = p.uid().unwrap_or_default();
                let bound_here = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str());
                if bound_here {
                    sched.pending.remove(&uid);
                    if let Some(tx) = workers.get(&uid) {
                        let _ = tx.send(Some(p));
                    } else {
                        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                        let dir_exists = ctx.pod_dir(&uid).exists();
                        // A finished pod from before a restart needs no worker unless it is
                        // being deleted (then the worker finalizes it).
                        if matches!(phase.as_deref(), Some("Succeeded" | "Failed"))
                            && p.metadata.deletion_timestamp.is_none()
                            && !dir_exists
                        {
                            continue;
                        }
                        let (tx, rx) = watch::channel(Some(p.clone()));
                        workers.insert(uid.clone(), tx);
                        let worker = Worker::new(ctx.clone(), p, rx, shutdown_rx.clone());
                        running.spawn(async move { worker.run().await; uid });
                    }
                } else {
                    sched.consider(p).await;
                }
            }
            pvc = pvc_events.next() => {
                if let Some(Ok(_)) = pvc && !sched.pending.is_empty() { sched.retry_all().await; }
            }
            _ = retry.tick() => {
                if !sched.pending.is_empty() { sched.retry_all().await; }
            }
        }
    }
    tracing::info!(pods = workers.len(), "stopping pod workers");
    let _ = shutdown_tx.send(true);
    while running.join_next().await.is_some() {}
}

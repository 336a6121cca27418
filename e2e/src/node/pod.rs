//! The lifecycle of one pod bound to this node (the kubelet's pod worker): prepare
//! volumes, run init containers in order and then the containers through shims, restart
//! them per restartPolicy with back-off, track readiness, report status, and on deletion
//! stop the processes (SIGTERM, SIGKILL after the grace period), clean up and finalize.
//!
//! Invariant: only this worker writes the pod's status, and it writes only when the
//! computed status changed.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, ContainerStatus, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};
use tokio::sync::{mpsc, watch};

use super::images::ImageError;
use super::process::{self, ContainerFiles};
use super::shim::{ExitRecord, MountSpec, ShimSpec};
use super::status::{self, PodRuntime, State, Terminated};
use super::volumes::{self, Prepared};
use super::{Ctx, HostsTarget, envvars, probes};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MAX_TERMINATION_MESSAGE: usize = 4096;

enum WorkerEvent {
    Exited {
        name: String,
        rec: ExitRecord,
    },
    Ready {
        name: String,
        generation: u64,
        ready: bool,
    },
}

struct Live {
    shim_pid: i32,
    files: ContainerFiles,
    probe: Option<tokio::task::JoinHandle<()>>,
}

/// The worker of one pod; created by the pod manager, fed with pod updates (None once
/// the pod is gone from the API).
pub struct Worker {
    ctx: Arc<Ctx>,
    pod: Pod,
    updates: watch::Receiver<Option<Pod>>,
    shutdown: watch::Receiver<bool>,
    uid: String,
    dir: PathBuf,
    rt: PodRuntime,
    prepared: Option<Prepared>,
    live: BTreeMap<String, Live>,
    restart_at: BTreeMap<String, Instant>,
    generation: BTreeMap<String, u64>,
    retry_at: Option<Instant>,
    deadline: Option<Instant>,
    last_status: Option<serde_json::Value>,
    last_event: Option<String>,
    tx: mpsc::UnboundedSender<WorkerEvent>,
    rx: mpsc::UnboundedReceiver<WorkerEvent>,
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn spec_containers(pod: &Pod) -> (Vec<Container>, Vec<Container>) {
    let spec = pod.spec.clone().unwrap_or_default();
    (spec.init_containers.unwrap_or_default(), spec.containers)
}

/// Back-off before restarting a container that has restarted `count` times.
pub fn backoff(count: i32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << count.clamp(0, 5));
    Duration::from_secs(secs.min(300))
}

fn from_status(cs: &ContainerStatus) -> status::Container {
    let term = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| Terminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t
            .reason
            .clone()
            .unwrap_or_else(|| status::exit_reason(t.exit_code).into()),
        message: t.message.clone(),
        started_at: t.started_at.as_ref().map(|x| x.0),
        finished_at: t.finished_at.as_ref().map(|x| x.0).unwrap_or_else(now),
        container_id: t.container_id.clone(),
    };
    let state = cs.state.clone().unwrap_or_default();
    let st = if let Some(r) = &state.running {
        State::Running {
            started_at: r.started_at.as_ref().map(|x| x.0).unwrap_or_else(now),
        }
    } else if let Some(t) = &state.terminated {
        State::Terminated(term(t))
    } else {
        let w = state.waiting.unwrap_or_default();
        State::Waiting {
            reason: w.reason.unwrap_or_else(|| "PodInitializing".into()),
            message: w.message,
        }
    };
    status::Container {
        name: cs.name.clone(),
        image: cs.image.clone(),
        image_id: cs.image_id.clone(),
        state: st,
        last_state: cs
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(term),
        restart_count: cs.restart_count,
        ready: cs.ready,
        container_id: cs.container_id.clone(),
    }
}

impl Worker {
    /// A worker for a pod bound to this node.
    pub fn new(
        ctx: Arc<Ctx>,
        pod: Pod,
        updates: watch::Receiver<Option<Pod>>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = ctx.pod_dir(&uid);
        let (init, main) = spec_containers(&pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let rt = PodRuntime {
            init: init
                .iter()
                .map(|c| status::Container::new(&c.name, c.image.as_deref().unwrap_or_default()))
                .collect(),
            main: main
                .iter()
                .map(|c| status::Container::new(&c.name, c.image.as_deref().unwrap_or_default()))
                .collect(),
            restart_policy: spec.restart_policy.unwrap_or_else(|| "Always".into()),
            pod_ip: None,
            host_ip: ctx.cfg.host_ip.clone(),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .unwrap_or_else(now),
            pod_failure: None,
            generation: pod.metadata.generation,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Worker {
            ctx,
            pod,
            updates,
            shutdown,
            uid,
            dir,
            rt,
            prepared: None,
            live: BTreeMap::new(),
            restart_at: BTreeMap::new(),
            generation: BTreeMap::new(),
            retry_at: None,
            deadline: None,
            last_status: None,
            last_event: None,
            tx,
            rx,
        }
    }

    fn ns(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    async fn event(&mut self, type_: EventType, reason: &str, note: String) {
        // One event per distinct message, so a retry loop does not flood the API.
        let key = format!("{reason}:{note}");
        if self.last_event.as_deref() == Some(key.as_str()) {
            return;
        }
        self.last_event = Some(key);
        let reference = self.pod.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, "publishing event");
        }
    }

    fn container_mut(&mut self, name: &str) -> Option<&mut status::Container> {
        self.rt
            .init
            .iter_mut()
            .chain(self.rt.main.iter_mut())
            .find(|c| c.name == name)
    }

    fn spec_of(&self, name: &str) -> Option<(Container, bool)> {
        let (init, main) = spec_containers(&self.pod);
        init.into_iter()
            .map(|c| (c, true))
            .chain(main.into_iter().map(|c| (c, false)))
            .find(|(c, _)| c.name == name)
    }

    fn hostname(&self) -> String {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let name = spec.hostname.unwrap_or_else(|| self.name());
        name.chars().take(63).collect()
    }

    async fn report(&mut self) {
        let previous = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let st = status::compute(&self.rt, &previous, now());
        let value = serde_json::to_value(&st).unwrap_or_default();
        if self.last_status.as_ref() == Some(&value) {
            return;
        }
        let patch = serde_json::json!({ "status": value });
        match self
            .api()
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => {
                self.pod.status = p.status;
                self.last_status = Some(value);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::debug!(pod = %self.name(), "pod is gone; status not updated");
            }
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %e, "status update failed; will retry");
                self.retry_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// Takes over the state a previous agent run left: adopted shims keep running.
    fn adopt(&mut self) {
        let Some(st) = self.pod.status.clone() else {
            return;
        };
        let mut adopted = false;
        for (list, statuses) in [
            (
                &mut self.rt.init,
                st.init_container_statuses.unwrap_or_default(),
            ),
            (&mut self.rt.main, st.container_statuses.unwrap_or_default()),
        ] {
            for cs in statuses {
                if let Some(slot) = list.iter_mut().find(|c| c.name == cs.name) {
                    *slot = from_status(&cs);
                    adopted = true;
                }
            }
        }
        if !adopted {
            return;
        }
        tracing::info!(pod = %self.name(), "adopting pod from a previous agent run");
        let names: Vec<String> = self
            .rt
            .init
            .iter()
            .chain(self.rt.main.iter())
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            let running = matches!(
                self.container_mut(&name).map(|c| &c.state),
                Some(State::Running { .. })
            );
            if !running {
                continue;
            }
            let files = ContainerFiles::new(&self.dir, &name);
            if let Some(shim_pid) = process::shim_alive(&files) {
                self.watch_exit(&name, shim_pid, files.clone());
                self.live.insert(
                    name.clone(),
                    Live {
                        shim_pid,
                        files,
                        probe: None,
                    },
                );
            } else if let Some(rec) = process::read_exit(&files) {
                let _ = self.tx.send(WorkerEvent::Exited { name, rec });
            } else if let Some(c) = self.container_mut(&name) {
                let started = match c.state {
                    State::Running { started_at } => Some(started_at),
                    _ => None,
                };
                c.state = State::Terminated(Terminated {
                    exit_code: 137,
                    signal: None,
                    reason: "ContainerStatusUnknown".into(),
                    message: Some(
                        "The container could not be located when the node agent restarted".into(),
                    ),
                    started_at: started,
                    finished_at: now(),
                    container_id: c.container_id.clone(),
                });
                c.ready = false;
            }
        }
        // Containers the previous run saw end are restarted as their policy says.
        let policy = self.rt.restart_policy.clone();
        let restart: Vec<String> = self
            .rt
            .init
            .iter()
            .filter(|c| c.failed() && policy != "Never")
            .chain(self.rt.main.iter().filter(|c| match policy.as_str() {
                "Always" => matches!(c.state, State::Terminated(_)),
                "OnFailure" => c.failed(),
                _ => false,
            }))
            .map(|c| c.name.clone())
            .collect();
        for name in restart {
            if !self.live.contains_key(&name) {
                self.restart_at.insert(name, Instant::now());
            }
        }
    }

    fn watch_exit(&self, name: &str, shim_pid: i32, files: ContainerFiles) {
        let tx = self.tx.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let rec = process::wait(shim_pid, &files).await;
            let _ = tx.send(WorkerEvent::Exited { name, rec });
        });
    }

    fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Runs the pod to completion and deletion.
    pub async fn run(mut self) {
        if let Err(e) = std::fs::create_dir_all(self.dir.join("logs")) {
            tracing::error!(error = %e, "creating pod directory");
        }
        let ip = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .and_then(|ip| ip.parse().ok())
            .filter(|ip| self.ctx.ips.lock().expect("ips").adopt(&self.uid, *ip))
            .or_else(|| self.ctx.ips.lock().expect("ips").allocate(&self.uid));
        self.rt.pod_ip = ip.map(|i| i.to_string());
        if self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            // hostNetwork pods report the node's address, as on a real node.
            self.ctx.ips.lock().expect("ips").release(&self.uid);
            self.rt.pod_ip = Some(self.ctx.cfg.host_ip.clone());
        }
        let _ = std::fs::write(
            self.dir.join("pod"),
            format!("{}/{}\n", self.ns(), self.name()),
        );
        self.adopt();
        if let Some(secs) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
        {
            let elapsed = (now().as_second() - self.rt.start_time.as_second()).max(0) as u64;
            self.deadline =
                Some(Instant::now() + Duration::from_secs((secs as u64).saturating_sub(elapsed)));
        }
        let mut gone = false;
        let mut shutting_down = false;
        loop {
            if shutting_down {
                return self.shutdown().await;
            }
            if gone || self.terminating() {
                break;
            }
            if let Some(d) = self.deadline
                && d <= Instant::now()
                && !self.rt.terminal()
            {
                self.rt.pod_failure = Some((
                    "DeadlineExceeded".into(),
                    "Pod was active on the node longer than the specified deadline".into(),
                ));
                self.event(
                    EventType::Normal,
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline".into(),
                )
                .await;
                self.stop_all(Duration::from_secs(
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                        .unwrap_or(30) as u64,
                ))
                .await;
            }
            self.step().await;
            self.report().await;
            let next = [
                self.retry_at,
                self.restart_at.values().min().copied(),
                self.deadline.filter(|_| !self.rt.terminal()),
                self.prepared
                    .as_ref()
                    .and_then(|p| p.tokens.iter().map(|t| t.refresh_at).min()),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.changed() => shutting_down = true,
                ev = self.rx.recv() => {
                    if let Some(ev) = ev { self.handle(ev).await; }
                }
                changed = self.updates.changed() => {
                    if changed.is_err() { gone = true; continue; }
                    match self.updates.borrow_and_update().clone() {
                        Some(p) => {
                            let status = self.pod.status.take();
                            self.pod = p;
                            // Keep our own last status: the watch may lag behind our writes.
                            if self.last_status.is_some() { self.pod.status = status; }
                        }
                        None => gone = true,
                    }
                }
                _ = sleep => {
                    self.retry_at = None;
                    if let Some(p) = self.prepared.as_mut()
                        && p.tokens.iter().any(|t| t.refresh_at <= Instant::now())
                        && let Err(e) = volumes::refresh_tokens(&self.ctx.client, &self.pod, p).await
                    {
                        tracing::warn!(error = %e, "refreshing a service-account token");
                        for t in p.tokens.iter_mut() { t.refresh_at = Instant::now() + Duration::from_secs(10); }
                    }
                }
            }
        }
        self.finish(gone).await;
    }

    /// The agent is stopping: kill the processes, report, keep the pod and its files.
    async fn shutdown(mut self) {
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .clamp(0, 10);
        self.stop_all(Duration::from_secs(grace as u64)).await;
        self.ctx.hosts.lock().expect("hosts").remove(&self.uid);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.report()).await;
    }

    async fn finish(mut self, gone: bool) {
        let grace = if gone {
            Duration::from_secs(2)
        } else {
            let secs = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or(self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            Duration::from_secs(secs.max(0) as u64)
        };
        if !self.live.is_empty() {
            tracing::info!(pod = %self.name(), ?grace, "killing pod processes");
            self.event(EventType::Normal, "Killing", "Stopping containers".into())
                .await;
        }
        self.stop_all(grace).await;
        while let Ok(ev) = self.rx.try_recv() {
            self.handle_exit_only(ev);
        }
        self.cleanup();
        if !gone {
            self.report().await;
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = self.api().delete(&self.name(), &dp).await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
            {
                tracing::warn!(pod = %self.name(), error = %e, "finalizing pod deletion");
            }
        }
    }

    /// Stops every live container (SIGTERM, SIGKILL after `grace`) and records their exits.
    async fn stop_all(&mut self, grace: Duration) {
        let live: Vec<(String, Live)> = std::mem::take(&mut self.live).into_iter().collect();
        let mut waits = Vec::new();
        for (name, l) in live {
            if let Some(p) = l.probe {
                p.abort();
            }
            waits.push(async move {
                let rec = process::stop(l.shim_pid, &l.files, grace).await;
                (name, rec)
            });
        }
        for (name, rec) in futures::future::join_all(waits).await {
            self.record_exit(&name, rec);
        }
        self.restart_at.clear();
    }

    fn cleanup(&mut self) {
        self.ctx.hosts.lock().expect("hosts").remove(&self.uid);
        self.ctx.ips.lock().expect("ips").release(&self.uid);
        volumes::cleanup(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        let link_dir = self
            .ctx
            .cfg
            .state_dir
            .join("logs")
            .join(self.ns())
            .join(self.name());
        let _ = std::fs::remove_dir_all(&link_dir);
        if let Some(ns_dir) = link_dir.parent() {
            let _ = std::fs::remove_dir(ns_dir);
        }
    }

    fn handle_exit_only(&mut self, ev: WorkerEvent) {
        if let WorkerEvent::Exited { name, rec } = ev
            && self.live.remove(&name).is_some()
        {
            self.record_exit(&name, rec);
        }
    }

    fn termination_message(&self, c: &Container, rec: &ExitRecord) -> Option<String> {
        let file = self.dir.join(format!("{}.termination-log", c.name));
        let mut msg = std::fs::read(&file)
            .map(|b| {
                String::from_utf8_lossy(&b[..b.len().min(MAX_TERMINATION_MESSAGE)]).into_owned()
            })
            .unwrap_or_default();
        if msg.is_empty()
            && rec.exit_code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            msg = process::log_tail(&ContainerFiles::new(&self.dir, &c.name).log, 80, 2048);
        }
        if let Some(e) = &rec.start_error {
            msg = e.clone();
        }
        (!msg.is_empty()).then_some(msg)
    }

    fn record_exit(&mut self, name: &str, rec: ExitRecord) {
        let Some((spec, _)) = self.spec_of(name) else {
            return;
        };
        let message = self.termination_message(&spec, &rec);
        let Some(c) = self.container_mut(name) else {
            return;
        };
        let started_at = match c.state {
            State::Running { started_at } => Some(started_at),
            _ => None,
        };
        let reason = if rec.start_error.is_some() {
            "StartError".to_string()
        } else {
            status::exit_reason(rec.exit_code).to_string()
        };
        c.state = State::Terminated(Terminated {
            exit_code: rec.exit_code,
            signal: rec.signal,
            reason,
            message,
            started_at,
            finished_at: rec.finished_at.parse().unwrap_or_else(|_| now()),
            container_id: c.container_id.clone(),
        });
        c.ready = false;
    }

    async fn handle(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Ready {
                name,
                generation,
                ready,
            } => {
                if self.generation.get(&name) == Some(&generation)
                    && let Some(c) = self.container_mut(&name)
                {
                    c.ready = ready;
                }
            }
            WorkerEvent::Exited { name, rec } => {
                if let Some(l) = self.live.remove(&name)
                    && let Some(p) = l.probe
                {
                    p.abort();
                }
                let code = rec.exit_code;
                self.record_exit(&name, rec);
                tracing::info!(pod = %self.name(), container = %name, code, "container exited");
                let policy = self.rt.restart_policy.clone();
                let is_init = self.rt.init.iter().any(|c| c.name == name);
                let restart = match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => code != 0,
                    _ => !is_init || code != 0,
                };
                if restart && self.rt.pod_failure.is_none() {
                    let count = self
                        .container_mut(&name)
                        .map(|c| c.restart_count)
                        .unwrap_or(0);
                    self.restart_at
                        .insert(name.clone(), Instant::now() + backoff(count));
                }
            }
        }
    }

    /// Advances the pod: volumes, then init containers one by one, then containers.
    async fn step(&mut self) {
        if self.rt.terminal() || self.rt.pod_failure.is_some() {
            return;
        }
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        if self.prepared.is_none() {
            let (init, main) = spec_containers(&self.pod);
            for c in init.iter().chain(main.iter()) {
                let image = c.image.clone().unwrap_or_default();
                if let Err(e) = self.ctx.images.pull(&image) {
                    self.set_waiting_all("ErrImagePull", &e.to_string(), &c.name);
                    self.event(
                        EventType::Warning,
                        "Failed",
                        format!("Failed to pull image {image:?}: {e}"),
                    )
                    .await;
                    // A real node keeps retrying with back-off; the map is fixed, so the
                    // container stays in ImagePullBackOff until the pod is deleted.
                    if let Some(cc) = self.container_mut(&c.name) {
                        cc.state = State::Waiting {
                            reason: "ImagePullBackOff".into(),
                            message: Some(format!("Back-off pulling image {image:?}: {e}")),
                        };
                    }
                    self.retry_at = Some(Instant::now() + Duration::from_secs(10));
                    return;
                }
            }
            match volumes::prepare(&self.ctx.client, &self.pod, &self.dir).await {
                Ok(p) => self.prepared = Some(p),
                Err(e) => {
                    self.set_waiting_all("ContainerCreating", "", "");
                    self.event(
                        EventType::Warning,
                        "FailedMount",
                        format!("MountVolume.SetUp failed: {e}"),
                    )
                    .await;
                    self.retry_at = Some(Instant::now() + Duration::from_secs(3));
                    return;
                }
            }
            self.register_hosts();
        }
        let (init, main) = spec_containers(&self.pod);
        if !self.rt.initialized() {
            for (i, c) in init.iter().enumerate() {
                let st = &self.rt.init[i];
                if st.succeeded() {
                    continue;
                }
                if self.live.contains_key(&c.name) {
                    return;
                }
                let due = self
                    .restart_at
                    .get(&c.name)
                    .is_none_or(|t| *t <= Instant::now());
                if due {
                    self.start(c, true).await;
                } else {
                    self.mark_backoff(&c.name);
                }
                return;
            }
        }
        for c in main.iter() {
            if self.live.contains_key(&c.name) {
                continue;
            }
            let idx = self.rt.main.iter().position(|x| x.name == c.name);
            let Some(idx) = idx else { continue };
            let waiting = matches!(self.rt.main[idx].state, State::Waiting { .. });
            match self.restart_at.get(&c.name) {
                Some(t) if *t <= Instant::now() => self.start(c, false).await,
                Some(_) => self.mark_backoff(&c.name),
                None if waiting => self.start(c, false).await,
                None => {}
            }
        }
    }

    fn mark_backoff(&mut self, name: &str) {
        let pod = format!("{}_{}({})", self.name(), self.ns(), self.uid);
        if let Some(c) = self.container_mut(name)
            && matches!(c.state, State::Terminated(_))
        {
            let State::Terminated(t) = c.state.clone() else {
                return;
            };
            c.last_state = Some(t);
            c.restart_count += 1;
            let delay = backoff(c.restart_count - 1).as_secs();
            c.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {delay}s restarting failed container={name} pod={pod}"
                )),
            };
        }
    }

    fn set_waiting_all(&mut self, reason: &str, message: &str, only: &str) {
        for c in self.rt.init.iter_mut().chain(self.rt.main.iter_mut()) {
            if matches!(c.state, State::Waiting { .. }) {
                let (r, m) = if only.is_empty() || c.name == only {
                    (reason, message)
                } else {
                    ("ContainerCreating", "")
                };
                c.state = State::Waiting {
                    reason: r.into(),
                    message: (!m.is_empty()).then(|| m.to_string()),
                };
            }
        }
    }

    fn register_hosts(&mut self) {
        let t = HostsTarget {
            path: self.dir.join("hosts"),
            pod_ip: self.rt.pod_ip.clone().unwrap_or_default(),
            hostname: self.hostname(),
            namespace: self.ns(),
        };
        self.ctx.write_hosts(&t);
        self.ctx
            .hosts
            .lock()
            .expect("hosts")
            .insert(self.uid.clone(), t);
    }

    async fn env_sources(&self, c: &Container) -> Result<envvars::Sources, String> {
        let (secrets, cms) = envvars::referenced(c);
        let ns = self.ns();
        let mut sources = envvars::Sources::default();
        for s in secrets {
            let got = Api::<Secret>::namespaced(self.ctx.client.clone(), &ns)
                .get_opt(&s)
                .await
                .map_err(|e| format!("getting secret {ns}/{s}: {e}"))?;
            sources.secrets.insert(
                s,
                got.map(|g| {
                    g.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect()
                }),
            );
        }
        for m in cms {
            let got = Api::<ConfigMap>::namespaced(self.ctx.client.clone(), &ns)
                .get_opt(&m)
                .await
                .map_err(|e| format!("getting configmap {ns}/{m}: {e}"))?;
            sources
                .config_maps
                .insert(m, got.map(|g| g.data.unwrap_or_default()));
        }
        Ok(sources)
    }

    fn implicit_env(&self) -> Vec<(String, String)> {
        let h = &self.ctx.cfg.apiserver_host;
        let p = self.ctx.cfg.apiserver_port;
        vec![
            ("HOSTNAME".into(), self.hostname()),
            ("KUBERNETES_SERVICE_HOST".into(), h.clone()),
            ("KUBERNETES_SERVICE_PORT".into(), p.to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), p.to_string()),
            ("KUBERNETES_PORT".into(), format!("tcp://{h}:{p}")),
            ("KUBERNETES_PORT_443_TCP".into(), format!("tcp://{h}:{p}")),
            ("KUBERNETES_PORT_443_TCP_PROTO".into(), "tcp".into()),
            ("KUBERNETES_PORT_443_TCP_PORT".into(), p.to_string()),
            ("KUBERNETES_PORT_443_TCP_ADDR".into(), h.clone()),
            (
                "LIFEBOAT_POD_IP".into(),
                self.rt.pod_ip.clone().unwrap_or_default(),
            ),
        ]
    }

    fn identity(&self, c: &Container) -> (Option<u32>, Option<u32>, Vec<u32>) {
        let psc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let uid = csc.run_as_user.or(psc.run_as_user).map(|u| u as u32);
        let gid = csc.run_as_group.or(psc.run_as_group).map(|g| g as u32);
        let mut groups: Vec<u32> = psc
            .supplemental_groups
            .unwrap_or_default()
            .into_iter()
            .map(|g| g as u32)
            .collect();
        if let Some(fs) = psc.fs_group {
            groups.push(fs as u32);
        }
        if let Some(g) = gid {
            groups.insert(0, g);
        }
        (uid, gid, groups)
    }

    /// A passwd file with an entry for `uid` when the host has none (initdb and friends
    /// refuse to run as a user without one); mounted over /etc/passwd in the container.
    fn passwd_for(&self, uid: u32, gid: u32) -> Option<PathBuf> {
        if nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .is_some()
        {
            return None;
        }
        let mut text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        text.push_str(&format!(
            "container:x:{uid}:{gid}:container user:/tmp:/bin/sh\n"
        ));
        let path = self.dir.join("passwd");
        std::fs::write(&path, text).ok()?;
        Some(path)
    }

    async fn fail_start(&mut self, name: &str, reason: &str, message: String) {
        if let Some(c) = self.container_mut(name) {
            c.state = State::Waiting {
                reason: reason.into(),
                message: Some(message.clone()),
            };
        }
        self.event(EventType::Warning, "Failed", format!("Error: {message}"))
            .await;
        self.retry_at = Some(Instant::now() + Duration::from_secs(5));
    }

    async fn start(&mut self, c: &Container, is_init: bool) {
        let image = c.image.clone().unwrap_or_default();
        let sources = match self.env_sources(c).await {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail_start(&c.name, "CreateContainerConfigError", e)
                    .await;
            }
        };
        // Image ENV first so the container's env overrides it; the resolve step needs the
        // env for $(VAR) in command/args, so resolve with the image's env afterwards.
        let image_env = match self.ctx.images.image_env(&image) {
            Ok(env) => env,
            Err(e) => return self.fail_start(&c.name, e.reason(), e.to_string()).await,
        };
        let mut pod_view = self.pod.clone();
        if let Some(st) = pod_view.status.as_mut() {
            st.pod_ip = self.rt.pod_ip.clone();
        }
        let mut env = match envvars::build(&pod_view, c, &image_env, &sources, &self.implicit_env())
        {
            Ok(e) => e,
            Err(e) => {
                return self
                    .fail_start(&c.name, "CreateContainerConfigError", e.0)
                    .await;
            }
        };
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
        }
        let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let command: Vec<String> = c
            .command
            .iter()
            .flatten()
            .map(|s| envvars::expand(s, &lookup))
            .collect();
        let args: Option<Vec<String>> = c
            .args
            .as_ref()
            .map(|a| a.iter().map(|s| envvars::expand(s, &lookup)).collect());
        let exists = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        };
        let resolved = match self
            .ctx
            .images
            .resolve(&image, &command, args.as_deref(), &exists)
        {
            Ok(r) => r,
            Err(e @ ImageError::ExecutableNotFound { .. })
            | Err(e @ ImageError::NoCommand { .. }) => {
                // A real runtime fails the start: the container terminates with 128.
                let msg = e.to_string();
                self.record_start_failure(&c.name, &image, msg.clone());
                self.event(EventType::Warning, "Failed", format!("Error: {msg}"))
                    .await;
                let policy = self.rt.restart_policy.clone();
                if policy != "Never" {
                    let count = self
                        .container_mut(&c.name)
                        .map(|x| x.restart_count)
                        .unwrap_or(0);
                    self.restart_at
                        .insert(c.name.clone(), Instant::now() + backoff(count));
                }
                return;
            }
            Err(e) => return self.fail_start(&c.name, e.reason(), e.to_string()).await,
        };
        let Some(prepared) = self.prepared.clone() else {
            return;
        };
        let mut mounts = match volumes::container_mounts(&prepared, c, &env) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .fail_start(&c.name, "CreateContainerConfigError", e.0)
                    .await;
            }
        };
        let term_file = self.dir.join(format!("{}.termination-log", c.name));
        let _ = std::fs::write(&term_file, b"");
        let _ = std::fs::set_permissions(&term_file, std::fs::Permissions::from_mode(0o666));
        mounts.push(MountSpec {
            source: Some(term_file),
            target: PathBuf::from(
                c.termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
            ),
            read_only: false,
            file: true,
        });
        mounts.push(MountSpec {
            source: Some(self.dir.join("hosts")),
            target: "/etc/hosts".into(),
            read_only: false,
            file: true,
        });
        if !mounts.iter().any(|m| m.target == Path::new("/tmp")) {
            mounts.push(MountSpec {
                source: None,
                target: "/tmp".into(),
                read_only: false,
                file: false,
            });
        }
        // A checkout under /tmp (CI may clone there) would vanish behind the private /tmp,
        // ours or a volume the pod mounts there (the chart's controller has an emptyDir
        // at /tmp): bind the host paths the program comes from back into view, read-only.
        for keep in visible_under_tmp(&resolved.argv, self.ctx.images.images_dir()) {
            mounts.push(MountSpec {
                source: Some(keep.clone()),
                target: keep,
                read_only: true,
                file: false,
            });
        }
        let (uid, gid, groups) = self.identity(c);
        if let Some(u) = uid
            && let Some(p) = self.passwd_for(u, gid.unwrap_or(0))
        {
            mounts.push(MountSpec {
                source: Some(p),
                target: "/etc/passwd".into(),
                read_only: true,
                file: true,
            });
        }
        super::shim::order_mounts(&mut mounts);
        let files = ContainerFiles::new(&self.dir, &c.name);
        let spec = ShimSpec {
            argv: resolved.argv.clone(),
            env: env.clone(),
            working_dir: Some(PathBuf::from(
                c.working_dir.clone().unwrap_or_else(|| "/".into()),
            )),
            uid,
            gid: gid.or(uid.map(|_| 0)),
            groups,
            hostname: self.hostname(),
            mounts,
            pid_file: files.pid.clone(),
            exit_file: files.exit.clone(),
            created_registry: self.ctx.created_registry(),
        };
        let handle = match process::start(&files, &spec).await {
            Ok(h) => h,
            Err(e) => {
                return self
                    .fail_start(&c.name, "CreateContainerError", e.to_string())
                    .await;
            }
        };
        self.link_log(&c.name, &files.log);
        self.restart_at.remove(&c.name);
        let restarting = self
            .container_mut(&c.name)
            .map(|x| matches!(x.state, State::Terminated(_)))
            .unwrap_or(false);
        if restarting {
            self.mark_backoff(&c.name);
        }
        let generation = self.generation.entry(c.name.clone()).or_insert(0);
        *generation += 1;
        let generation = *generation;
        let uid_s = self.uid.clone();
        let probe = if is_init {
            None
        } else {
            c.readiness_probe.clone()
        };
        let has_probe = probe.is_some();
        if let Some(st) = self.container_mut(&c.name) {
            st.state = State::Running { started_at: now() };
            st.image_id = format!("lifeboat-host://{}", resolved.argv[0]);
            st.container_id = Some(format!(
                "lifeboat://{uid_s}/{}/{}",
                c.name, st.restart_count
            ));
            st.ready = !has_probe;
        }
        tracing::info!(pod = %self.name(), container = %c.name, argv = ?resolved.argv, "container started");
        self.event(
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        )
        .await;
        self.watch_exit(&c.name, handle.shim_pid, files.clone());
        let probe_task = probe.map(|p| {
            let (ptx, mut prx) = mpsc::unbounded_channel();
            let ports: Vec<(String, i32)> = c
                .ports
                .iter()
                .flatten()
                .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                .collect();
            let exec = p.exec.as_ref().map(|e| {
                let argv: Vec<String> = e.command.clone().unwrap_or_default();
                let argv = self
                    .ctx
                    .images
                    .resolve(&image, &argv, None, &exists)
                    .map(|r| r.argv)
                    .unwrap_or(argv);
                probes::ExecTarget {
                    pid_file: files.pid.clone(),
                    env: env.clone(),
                    uid,
                    gid,
                    argv,
                }
            });
            let ip = self.rt.pod_ip.clone().unwrap_or_default();
            let wtx = self.tx.clone();
            let name = c.name.clone();
            tokio::spawn(async move {
                let runner = tokio::spawn(probes::run(p, ip, ports, exec, ptx));
                while let Some(ready) = prx.recv().await {
                    if wtx
                        .send(WorkerEvent::Ready {
                            name: name.clone(),
                            generation,
                            ready,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
                runner.abort();
            })
        });
        self.live.insert(
            c.name.clone(),
            Live {
                shim_pid: handle.shim_pid,
                files,
                probe: probe_task,
            },
        );
    }

    fn record_start_failure(&mut self, name: &str, image: &str, msg: String) {
        let _ = image;
        if let Some(c) = self.container_mut(name) {
            c.state = State::Terminated(Terminated {
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: Some(msg),
                started_at: None,
                finished_at: now(),
                container_id: None,
            });
            c.ready = false;
        }
    }

    fn link_log(&self, container: &str, log: &Path) {
        let dir = self
            .ctx
            .cfg
            .state_dir
            .join("logs")
            .join(self.ns())
            .join(self.name());
        if std::fs::create_dir_all(&dir).is_ok() {
            let link = dir.join(format!("{container}.log"));
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink(log, &link);
        }
    }
}

/// Host directories under `/tmp` that a container needs to see although it gets a
/// private `/tmp`: its program's directory and the entrypoint scripts. Nested paths are
/// dropped (their parent is bound already).
fn visible_under_tmp(argv: &[String], images_dir: &Path) -> Vec<PathBuf> {
    let tmp = Path::new("/tmp");
    // Programs may be named through `..` (`${IMAGES_DIR}/../target/debug/x`): resolve
    // those first, or the nesting check below would drop the directory as "inside" the
    // images directory.
    let resolved = |d: &Path| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf());
    let mut dirs: Vec<PathBuf> = argv
        .first()
        .and_then(|p| Path::new(p).parent())
        .into_iter()
        .chain(std::iter::once(images_dir))
        .map(resolved)
        .filter(|d| d.starts_with(tmp) && d != tmp)
        .collect();
    dirs.sort();
    dirs.dedup();
    let nested: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| dirs.iter().any(|o| o != *d && d.starts_with(o)))
        .cloned()
        .collect();
    dirs.retain(|d| !nested.contains(d));
    dirs
}

#[cfg(test)]
mod tests {

    #[test]
    fn programs_under_tmp_stay_visible_behind_the_private_tmp() {
        let argv = vec!["/tmp/x/target/debug/lifeboat".to_string(), "mover".into()];
        assert_eq!(
            visible_under_tmp(&argv, Path::new("/tmp/x/e2e/images")),
            vec![
                PathBuf::from("/tmp/x/e2e/images"),
                PathBuf::from("/tmp/x/target/debug")
            ]
        );
        let argv = vec!["/usr/bin/sh".to_string()];
        assert!(visible_under_tmp(&argv, Path::new("/work/main/e2e/images")).is_empty());
        let argv = vec!["/tmp/x/e2e/images/pg.sh".to_string()];
        assert_eq!(
            visible_under_tmp(&argv, Path::new("/tmp/x/e2e")),
            vec![PathBuf::from("/tmp/x/e2e")],
            "nested paths collapse into their parent"
        );
    }

    #[test]
    fn programs_named_through_dotdot_stay_visible() {
        let root = Path::new("/tmp").join(format!("lb-visible-{}", std::process::id()));
        let images = root.join("e2e/images");
        let bin = root.join("target/debug");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let argv = vec![format!("{}/../../target/debug/x", images.display())];
        let got = visible_under_tmp(&argv, &images);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(got, vec![images, bin]);
    }
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(1), Duration::from_secs(20));
        assert_eq!(backoff(4), Duration::from_secs(160));
        assert_eq!(backoff(9), Duration::from_secs(300));
    }
}

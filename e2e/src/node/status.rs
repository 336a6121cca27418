//! Pod status computation (pure): from the agent's view of each container, the phase,
//! conditions and container statuses a kubelet would report.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// One container's state as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

/// A finished container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

/// One container's runtime record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub state: State,
    pub last_state: Option<Terminated>,
    pub restart_count: i32,
    /// Readiness from the probe (or "running" when the container has none).
    pub ready: bool,
    pub container_id: Option<String>,
}

impl Container {
    /// A container that has not been started yet.
    pub fn new(name: &str, image: &str) -> Self {
        Container {
            name: name.into(),
            image: image.into(),
            image_id: String::new(),
            state: State::Waiting {
                reason: "PodInitializing".into(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
            ready: false,
            container_id: None,
        }
    }

    /// Whether the container ended successfully (its last run exited 0).
    pub fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    /// Whether the container ended with a failure.
    pub fn failed(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code != 0)
    }
}

/// The whole pod as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRuntime {
    pub init: Vec<Container>,
    pub main: Vec<Container>,
    pub restart_policy: String,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Timestamp,
    /// Set for pods the agent gave up on before they started (pod-level reason).
    pub pod_failure: Option<(String, String)>,
    /// `metadata.generation` of the pod spec the agent acts on: reported as
    /// `observedGeneration` (status and conditions), as kubelets do since 1.33.
    pub generation: Option<i64>,
}

/// Kubelet reason for an exit: Completed for 0, Error otherwise.
pub fn exit_reason(code: i32) -> &'static str {
    if code == 0 { "Completed" } else { "Error" }
}

impl PodRuntime {
    /// Whether every init container finished successfully.
    pub fn initialized(&self) -> bool {
        self.init.iter().all(Container::succeeded)
    }

    /// The pod phase, with the kubelet's rules for restart policies.
    pub fn phase(&self) -> &'static str {
        if self.pod_failure.is_some() {
            return "Failed";
        }
        let never = self.restart_policy == "Never";
        if !self.initialized() {
            if never && self.init.iter().any(Container::failed) {
                return "Failed";
            }
            return "Pending";
        }
        let running = self
            .main
            .iter()
            .filter(|c| matches!(c.state, State::Running { .. }))
            .count();
        let succeeded = self.main.iter().filter(|c| c.succeeded()).count();
        let failed = self.main.iter().filter(|c| c.failed()).count();
        let n = self.main.len();
        let started = self
            .main
            .iter()
            .filter(|c| !matches!(c.state, State::Waiting { .. }) || c.restart_count > 0)
            .count();
        if running > 0 {
            return "Running";
        }
        if succeeded + failed == n && n > 0 {
            return match self.restart_policy.as_str() {
                "Always" => "Running",
                "OnFailure" if failed > 0 => "Running",
                _ if failed > 0 => "Failed",
                _ => "Succeeded",
            };
        }
        if started > 0 { "Running" } else { "Pending" }
    }

    /// Whether the pod reached a terminal phase.
    pub fn terminal(&self) -> bool {
        matches!(self.phase(), "Succeeded" | "Failed")
    }
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: t.container_id.clone(),
        exit_code: t.exit_code,
        finished_at: Some(time(t.finished_at)),
        message: t.message.clone(),
        reason: Some(t.reason.clone()),
        signal: t.signal,
        started_at: t.started_at.map(time),
    }
}

fn container_status(c: &Container) -> ContainerStatus {
    let state = match &c.state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        State::Terminated(t) => ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        },
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.container_id.clone(),
        ready: c.ready && matches!(c.state, State::Running { .. }),
        restart_count: c.restart_count,
        started: Some(matches!(c.state, State::Running { .. })),
        state: Some(state),
        last_state: Some(match &c.last_state {
            Some(t) => ContainerState {
                terminated: Some(terminated(t)),
                ..Default::default()
            },
            None => ContainerState::default(),
        }),
        ..Default::default()
    }
}

fn condition(
    generation: Option<i64>,
    previous: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: if ok { None } else { reason.map(Into::into) },
        message: if ok { None } else { message },
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: generation,
    }
}

/// Computes the pod status to report. `previous` keeps lastTransitionTime stable.
pub fn compute(rt: &PodRuntime, previous: &[PodCondition], now: Timestamp) -> PodStatus {
    let phase = rt.phase();
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let not_init: Vec<&str> = rt
        .init
        .iter()
        .filter(|c| !c.succeeded())
        .map(|c| c.name.as_str())
        .collect();
    let unready: Vec<&str> = rt
        .main
        .iter()
        .filter(|c| !(c.ready && matches!(c.state, State::Running { .. })))
        .map(|c| c.name.as_str())
        .collect();
    let list = |v: &[&str]| v.join(" ");
    let ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let init_reason = if terminal && not_init.is_empty() {
        "PodCompleted"
    } else {
        "ContainersNotInitialized"
    };
    let conditions = vec![
        condition(
            rt.generation,
            previous,
            "Initialized",
            not_init.is_empty(),
            Some(init_reason),
            Some(format!(
                "containers with incomplete status: [{}]",
                list(&not_init)
            )),
            now,
        ),
        condition(
            rt.generation,
            previous,
            "Ready",
            unready.is_empty() && !terminal,
            Some(ready_reason),
            (!terminal).then(|| format!("containers with unready status: [{}]", list(&unready))),
            now,
        ),
        condition(
            rt.generation,
            previous,
            "ContainersReady",
            unready.is_empty() && !terminal,
            Some(ready_reason),
            (!terminal).then(|| format!("containers with unready status: [{}]", list(&unready))),
            now,
        ),
        condition(
            rt.generation,
            previous,
            "PodScheduled",
            true,
            None,
            None,
            now,
        ),
        // The sandbox (network and volumes) is ready once the pod has its IP (the agent
        // sets up volumes before it assigns one), and gone once the pod has ended.
        condition(
            rt.generation,
            previous,
            "PodReadyToStartContainers",
            rt.pod_ip.is_some() && !terminal,
            None,
            None,
            now,
        ),
    ];
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(rt.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: rt.host_ip.clone(),
        }]),
        pod_ip: rt.pod_ip.clone(),
        pod_ips: rt.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: Some(time(rt.start_time)),
        init_container_statuses: (!rt.init.is_empty())
            .then(|| rt.init.iter().map(container_status).collect()),
        container_statuses: Some(rt.main.iter().map(container_status).collect()),
        // NB: the API server sets qosClass at creation and refuses any change since 1.32;
        // a merge patch without the field leaves its value.
        qos_class: None,
        observed_generation: rt.generation,
        reason: rt.pod_failure.as_ref().map(|(r, _)| r.clone()),
        message: rt.pod_failure.as_ref().map(|(_, m)| m.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(policy: &str) -> PodRuntime {
        PodRuntime {
            init: vec![Container::new("init", "busybox")],
            main: vec![
                Container::new("a", "busybox"),
                Container::new("b", "busybox"),
            ],
            restart_policy: policy.into(),
            pod_ip: Some("127.1.0.2".into()),
            host_ip: "127.0.0.1".into(),
            start_time: Timestamp::UNIX_EPOCH,
            pod_failure: None,
            generation: Some(1),
        }
    }

    fn done(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            signal: None,
            reason: exit_reason(code).into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: None,
        })
    }

    fn running() -> State {
        State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn phases_follow_restart_policy() {
        let mut r = rt("Never");
        assert_eq!(r.phase(), "Pending");
        r.init[0].state = done(1);
        assert_eq!(r.phase(), "Failed");
        let mut r = rt("OnFailure");
        r.init[0].state = done(1);
        assert_eq!(r.phase(), "Pending");
        r.init[0].state = done(0);
        assert_eq!(r.phase(), "Pending");
        r.main[0].state = running();
        assert_eq!(r.phase(), "Running");
        r.main[0].state = done(0);
        r.main[1].state = done(3);
        assert_eq!(r.phase(), "Running");
        r.restart_policy = "Never".into();
        assert_eq!(r.phase(), "Failed");
        r.main[1].state = done(0);
        assert_eq!(r.phase(), "Succeeded");
        r.restart_policy = "Always".into();
        assert_eq!(r.phase(), "Running");
    }

    #[test]
    fn conditions_and_statuses() {
        let mut r = rt("Always");
        r.init[0].state = done(0);
        r.main[0].state = running();
        r.main[0].ready = true;
        r.main[1].state = running();
        let s = compute(&r, &[], Timestamp::UNIX_EPOCH);
        let cond = |t: &str| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Initialized").status, "True");
        assert_eq!(cond("PodReadyToStartContainers").status, "True");
        assert_eq!(cond("Ready").status, "False");
        assert_eq!(s.observed_generation, Some(1));
        assert!(
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .all(|c| c.observed_generation == Some(1))
        );
        assert_eq!(
            cond("Ready").message.as_deref(),
            Some("containers with unready status: [b]")
        );
        r.main[1].ready = true;
        let later = Timestamp::from_second(100).unwrap();
        let s2 = compute(&r, s.conditions.as_ref().unwrap(), later);
        let c2 = s2.conditions.unwrap();
        let ready = c2.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time, Some(Time(later)));
        let init = c2.iter().find(|c| c.type_ == "Initialized").unwrap();
        assert_eq!(init.last_transition_time, Some(Time(Timestamp::UNIX_EPOCH)));
        let cs = s2.container_statuses.unwrap();
        assert!(cs[0].ready && cs[0].started == Some(true));
        assert_eq!(s2.pod_ip.as_deref(), Some("127.1.0.2"));
    }

    #[test]
    fn completed_pod_is_not_ready() {
        let mut r = rt("Never");
        r.init[0].state = done(0);
        r.main[0].state = done(0);
        r.main[1].state = done(0);
        let s = compute(&r, &[], Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let conds = s.conditions.unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        let sandbox = conds
            .iter()
            .find(|c| c.type_ == "PodReadyToStartContainers")
            .unwrap();
        assert_eq!(sandbox.status, "False", "an ended pod has no sandbox");
    }
}

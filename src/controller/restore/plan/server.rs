//! Ephemeral database servers of a Restore: whether a server is ready for its mover, and
//! the precise reason when it never will be (a pod refused at admission, an image that
//! cannot be pulled, a crash loop, a timeout). Pure.

use super::*;

/// Ensures the ephemeral server exists and says whether it is ready. Fails the unit
/// with `DatabaseStartFailed` (and removes the server) when it cannot become ready.
pub(super) fn server_ready(
    o: &Observed<'_>,
    entry: &mut RestoredSource,
    server: &str,
    target: &str,
    p: &mut Plan,
) -> bool {
    let db = entry.database.clone().unwrap_or_default();
    let Some(deployment) = o.deployments.iter().find(|d| d.name_any() == server) else {
        // First step (or the Deployment was removed by hand): the Secret keeps its
        // password if it exists, the Service is recreated if missing.
        p.create_secrets
            .push(server_secret(o, entry, server, target, &o.fresh_password));
        p.create_services
            .push(server_service(o, entry, server, target));
        p.create_deployments
            .push(server_deployment(o, entry, server, target));
        p.requeue = Some(Duration::from_secs(2));
        return false;
    };
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        >= 1;
    if ready {
        if db.server_ready_time.is_none() {
            if let Some(d) = entry.database.as_mut() {
                d.server_ready_time = Some(micro(o.now));
            }
            let took = entry
                .start_time
                .as_ref()
                .map(|s| format!(" after {:.1}s", seconds_between(s, &micro(o.now))))
                .unwrap_or_default();
            event(
                p,
                false,
                "DatabaseServerReady",
                format!(
                    "database {}: server {server} ({}) is ready{took}",
                    entry.name,
                    db.image.as_deref().unwrap_or("?")
                ),
            );
        }
        return true;
    }
    // Pods refused at admission (quota, policy) show only as a Deployment condition.
    let refused = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        })
        .map(|c| {
            format!(
                "its pod is refused: {}",
                c.message
                    .clone()
                    .unwrap_or_else(|| c.reason.clone().unwrap_or_default())
            )
        });
    if let Some(msg) = refused {
        fail(
            o,
            entry,
            failure(
                "DatabaseStartFailed",
                format!(
                    "ephemeral server {server} ({}): {msg}",
                    db.image.as_deref().unwrap_or("?")
                ),
            ),
            p,
        );
        p.delete_servers.push(server.to_string());
        return false;
    }
    let since = entry.start_time.as_ref().map(|t| t.0).unwrap_or(o.now);
    let waited = Duration::try_from(o.now.duration_since(since)).unwrap_or(Duration::ZERO);
    let timeout = o
        .restore
        .spec
        .databases
        .iter()
        .find(|d| d.source == entry.name)
        .and_then(|d| d.ephemeral.as_ref())
        .and_then(|e| e.startup_timeout.as_deref())
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(DEFAULT_STARTUP_TIMEOUT);
    let (fatal, status) = server_pod_state(o, server, waited);
    let why = match (fatal, waited >= timeout) {
        (Some(f), _) => Some(f),
        (None, true) => Some(format!(
            "not ready after {}: {}",
            duration::format(timeout),
            status.unwrap_or_else(|| "no pod was created".into())
        )),
        (None, false) => None,
    };
    match why {
        Some(msg) => {
            fail(
                o,
                entry,
                failure(
                    "DatabaseStartFailed",
                    format!(
                        "ephemeral server {server} ({}): {msg}",
                        db.image.as_deref().unwrap_or("?")
                    ),
                ),
                p,
            );
            p.delete_servers.push(server.to_string());
        }
        None => p.requeue = Some(Duration::from_secs(3)),
    }
    false
}

/// The server pod's state: a reason it will never become ready (if any), and a summary
/// for a timeout message.
fn server_pod_state(
    o: &Observed<'_>,
    server: &str,
    waited: Duration,
) -> (Option<String>, Option<String>) {
    let pod = o.pods.iter().find(|p| {
        p.labels().get(labels::COMPONENT).map(String::as_str) == Some(SERVER_COMPONENT)
            && p.labels().get(SERVER_LABEL).map(String::as_str) == Some(server)
    });
    let Some(pod) = pod else {
        return (None, None);
    };
    let st = pod.status.clone().unwrap_or_default();
    if let Some(c) = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        let msg = format!(
            "pod {} cannot be scheduled: {}",
            pod.name_any(),
            c.message.clone().unwrap_or_default()
        );
        return (None, Some(msg));
    }
    let Some(c) = st.container_statuses.iter().flatten().next() else {
        return (
            None,
            Some(format!(
                "pod {} is {}",
                pod.name_any(),
                st.phase.unwrap_or_default()
            )),
        );
    };
    let waiting = c.state.as_ref().and_then(|s| s.waiting.clone());
    if let Some(w) = &waiting {
        let reason = w.reason.clone().unwrap_or_default();
        let text = format!(
            "{reason}: {}",
            w.message
                .clone()
                .unwrap_or_else(|| "the container cannot start".into())
        );
        if FATAL_SERVER_REASONS.contains(&reason.as_str())
            || (PULL_REASONS.contains(&reason.as_str()) && waited >= IMAGE_PULL_GRACE)
        {
            return (Some(text.clone()), Some(text));
        }
    }
    let last = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .map(|t| {
            format!(
                "exit code {}{}{}",
                t.exit_code,
                t.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
                t.message
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(": {}", m.trim()))
                    .unwrap_or_default()
            )
        });
    if c.restart_count >= MAX_SERVER_RESTARTS {
        let msg = format!(
            "crashed {} times; last {}",
            c.restart_count,
            last.clone().unwrap_or_else(|| "exit unknown".into())
        );
        return (Some(msg.clone()), Some(msg));
    }
    let summary = match (waiting, last) {
        (Some(w), _) => format!(
            "{}: {}",
            w.reason.unwrap_or_default(),
            w.message.unwrap_or_default()
        ),
        (None, Some(l)) => format!("restarted {} time(s), last {l}", c.restart_count),
        (None, None) => format!("pod {} is running but not ready", pod.name_any()),
    };
    (None, Some(summary))
}

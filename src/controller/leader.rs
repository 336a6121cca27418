//! Leader election on a `coordination.k8s.io/v1` Lease, so that two or more controller
//! replicas are safe: only the holder reconciles. Writes use the Lease's resourceVersion
//! (optimistic concurrency), so two candidates can never both believe they won.
//!
//! A leader that cannot renew before its lease would expire stops leading and the process
//! exits (the Deployment restarts it as a standby); the next holder takes over once the
//! lease has expired. This is the client-go/controller-runtime behaviour.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Settings of one election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique per process: pod name plus a random suffix.
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews, and candidates retry.
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(4),
        }
    }
}

/// What to do with the Lease as observed.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease exists: create it holding it.
    Create,
    /// Take it over (free, or the holder's lease expired).
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a valid lease.
    Wait,
}

/// Pure decision from the observed lease.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Step::Renew,
        None | Some("") => Step::Acquire,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15) as i64);
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed {
                Some(t) if t + duration > now => Step::Wait,
                _ => Step::Acquire,
            }
        }
    }
}

fn spec_for(cfg: &LeaseConfig, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// One election round. Returns whether we hold the lease afterwards.
async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> kube::Result<bool> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    match decide(spec, &cfg.identity, now) {
        Step::Wait => Ok(false),
        Step::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec_for(cfg, None, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another candidate created it first: it leads.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Step::Acquire | Step::Renew => {
            let mut lease = current.expect("a spec was observed");
            lease.spec = Some(spec_for(cfg, lease.spec.as_ref(), now));
            // `replace` carries the observed resourceVersion: a concurrent writer makes
            // this fail with 409 instead of both succeeding.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Runs the election forever. `leading` is set to true once the lease is acquired. If a
/// leader fails to renew within the lease duration it returns an error: the caller must
/// stop reconciling (the process exits).
pub async fn run(
    client: kube::Client,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
) -> Result<(), LostLease> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renewed: Option<std::time::Instant> = None;
    loop {
        let held = match round(&api, &cfg).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "leader election round failed");
                false
            }
        };
        let was_leading = *leading.borrow();
        if held {
            last_renewed = Some(std::time::Instant::now());
            if !was_leading {
                tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
                leading.send_replace(true);
            }
        } else if was_leading {
            // Renewal failed. Keep trying until just before the lease could be taken.
            let since = last_renewed.map_or(Duration::MAX, |t| t.elapsed());
            if since + cfg.retry_period >= cfg.lease_duration {
                leading.send_replace(false);
                return Err(LostLease);
            }
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// Gives the lease up on a clean shutdown, so a standby takes over at once instead of
/// waiting for it to expire (client-go's ReleaseOnCancel). Best effort: a failure only
/// means the standby waits out the lease duration.
pub async fn release(client: kube::Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let ours = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        == Some(cfg.identity.as_str());
    if !ours {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
    }
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = %cfg.name, "released the leader lease"),
        Err(e) => tracing::warn!(error = %e, "could not release the leader lease"),
    }
}

/// The leader could not renew its lease in time.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease: could not renew it before it expired")]
pub struct LostLease;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn lease(holder: Option<&str>, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(Into::into),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn election_decisions() {
        let now = at("2026-01-01T00:00:20Z");
        assert_eq!(decide(None, "a", now), Step::Create);
        assert_eq!(
            decide(Some(&lease(Some("a"), "2026-01-01T00:00:19Z")), "a", now),
            Step::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), "2026-01-01T00:00:10Z")), "a", now),
            Step::Wait
        );
        // b renewed at :04, lease 15 s: expired at :19.
        assert_eq!(
            decide(Some(&lease(Some("b"), "2026-01-01T00:00:04Z")), "a", now),
            Step::Acquire
        );
        assert_eq!(
            decide(Some(&lease(None, "2026-01-01T00:00:19Z")), "a", now),
            Step::Acquire
        );
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_keeps_acquire_time() {
        let cfg = LeaseConfig::new("l", "ns", "a");
        let now = at("2026-01-01T00:01:00Z");
        let mut prev = lease(Some("b"), "2026-01-01T00:00:00Z");
        prev.lease_transitions = Some(2);
        let taken = spec_for(&cfg, Some(&prev), now);
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        let later = at("2026-01-01T00:01:04Z");
        let renewed = spec_for(&cfg, Some(&taken), later);
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(now)));
        assert_eq!(renewed.renew_time, Some(MicroTime(later)));
    }
}

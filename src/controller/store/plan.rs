//! The pure part of the store controller: from the outcome of a probe (or the reason no
//! probe could run), the next status, the Events and the requeue delay.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::controller::conditions::{self, Desired};
use crate::crd::common::condition;
use crate::crd::store::StoreStatus;

/// What probing the store found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The repository opened with the password.
    Ready { repository_id: String },
    /// The controller created the repository just now.
    Initialized { repository_id: String },
    /// The bucket is reachable but holds no repository, and `initialize: Never`.
    NotInitialized,
    /// The probe could not run (Secrets) or failed (S3, password).
    Failed {
        /// Bounded reason, e.g. `SecretNotFound`, `BucketNotFound`, `WrongPassword`.
        reason: &'static str,
        message: String,
        /// The bucket answered (the failure is past reachability, e.g. a wrong password).
        reachable: bool,
        /// Retrying without a change can help (network, 5xx).
        transient: bool,
    },
}

pub use crate::controller::PlannedEvent;

#[derive(Debug)]
pub struct Plan {
    pub status: StoreStatus,
    pub events: Vec<PlannedEvent>,
    /// `Some` when the store is not ready: why, for the error policy.
    pub not_ready: Option<(&'static str, String, bool)>,
    pub requeue: Duration,
}

pub fn plan(
    previous: Option<&StoreStatus>,
    generation: Option<i64>,
    outcome: Outcome,
    probe_interval: Duration,
    now: Timestamp,
) -> Plan {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.last_check_time = Some(Time(now));
    let was_ready = conditions::is_true(&status.conditions, condition::READY);
    let was_reason =
        conditions::get(&status.conditions, condition::READY).map(|c| c.reason.clone());
    let mut events = Vec::new();
    let set = |type_: &str, ok: bool, reason: &str, msg: String, status: &mut StoreStatus| {
        conditions::set(
            &mut status.conditions,
            &Desired::new(type_, ok, reason, msg),
            generation,
            now,
        );
    };
    let not_ready = match &outcome {
        Outcome::Ready { repository_id } | Outcome::Initialized { repository_id } => {
            status.reachable = Some(true);
            status.initialized = Some(true);
            status.repository_id = Some(repository_id.clone());
            set(
                condition::REACHABLE,
                true,
                "Reachable",
                "the bucket answered".into(),
                &mut status,
            );
            set(
                condition::INITIALIZED,
                true,
                "Initialized",
                format!("repository {repository_id} opened with the password"),
                &mut status,
            );
            set(
                condition::READY,
                true,
                "Ready",
                "the repository is reachable and opens with the password".into(),
                &mut status,
            );
            if let Outcome::Initialized { .. } = outcome {
                events.push(PlannedEvent {
                    warning: false,
                    reason: "RepositoryInitialized",
                    note: format!("created repository {repository_id}"),
                });
            }
            if was_ready != Some(true) {
                events.push(PlannedEvent {
                    warning: false,
                    reason: "StoreReady",
                    note: "the repository is reachable and opens with the password".into(),
                });
            }
            None
        }
        Outcome::NotInitialized => {
            status.reachable = Some(true);
            status.initialized = Some(false);
            let msg = "the location holds no repository and spec.initialize is Never: run `lifeboat repo init` or set initialize: IfMissing".to_string();
            set(
                condition::REACHABLE,
                true,
                "Reachable",
                "the bucket answered".into(),
                &mut status,
            );
            set(
                condition::INITIALIZED,
                false,
                "NotInitialized",
                msg.clone(),
                &mut status,
            );
            set(
                condition::READY,
                false,
                "NotInitialized",
                msg.clone(),
                &mut status,
            );
            Some(("NotInitialized", msg, false))
        }
        Outcome::Failed {
            reason,
            message,
            reachable,
            transient,
        } => {
            status.reachable = Some(*reachable);
            if !reachable {
                set(
                    condition::REACHABLE,
                    false,
                    reason,
                    message.clone(),
                    &mut status,
                );
            } else {
                set(
                    condition::REACHABLE,
                    true,
                    "Reachable",
                    "the bucket answered".into(),
                    &mut status,
                );
                set(
                    condition::INITIALIZED,
                    false,
                    reason,
                    message.clone(),
                    &mut status,
                );
            }
            set(
                condition::READY,
                false,
                reason,
                message.clone(),
                &mut status,
            );
            Some((*reason, message.clone(), *transient))
        }
    };
    if let Some((reason, msg, _)) = &not_ready
        && was_reason.as_deref() != Some(*reason)
    {
        events.push(PlannedEvent {
            warning: true,
            reason,
            note: msg.clone(),
        });
    }
    Plan {
        status,
        events,
        requeue: probe_interval,
        not_ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const EVERY: Duration = Duration::from_secs(300);

    #[test]
    fn ready_store_sets_all_conditions_and_one_event() {
        let p = plan(
            None,
            Some(1),
            Outcome::Ready {
                repository_id: "abc".into(),
            },
            EVERY,
            at("2026-01-01T00:00:00Z"),
        );
        assert!(p.not_ready.is_none());
        assert_eq!(p.status.initialized, Some(true));
        assert_eq!(p.status.repository_id.as_deref(), Some("abc"));
        for t in [
            condition::READY,
            condition::REACHABLE,
            condition::INITIALIZED,
        ] {
            assert_eq!(
                conditions::is_true(&p.status.conditions, t),
                Some(true),
                "{t}"
            );
        }
        assert_eq!(
            p.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
            ["StoreReady"]
        );
        // The next probe with the same result publishes nothing new.
        let again = plan(
            Some(&p.status),
            Some(1),
            Outcome::Ready {
                repository_id: "abc".into(),
            },
            EVERY,
            at("2026-01-01T00:05:00Z"),
        );
        assert!(again.events.is_empty());
    }

    #[test]
    fn failures_keep_their_precise_reason_and_reachability() {
        let wrong_pw = Outcome::Failed {
            reason: "WrongPassword",
            message: "no key opens with the password".into(),
            reachable: true,
            transient: false,
        };
        let p = plan(None, Some(1), wrong_pw, EVERY, at("2026-01-01T00:00:00Z"));
        let ready = conditions::get(&p.status.conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "WrongPassword")
        );
        assert_eq!(
            conditions::is_true(&p.status.conditions, condition::REACHABLE),
            Some(true)
        );
        assert_eq!(p.status.reachable, Some(true));
        assert_eq!(p.events[0].reason, "WrongPassword");
        assert!(p.events[0].warning);

        let no_bucket = Outcome::Failed {
            reason: "BucketNotFound",
            message: "NoSuchBucket: the bucket does not exist".into(),
            reachable: false,
            transient: false,
        };
        let p = plan(
            Some(&p.status),
            Some(1),
            no_bucket,
            EVERY,
            at("2026-01-01T00:01:00Z"),
        );
        let reach = conditions::get(&p.status.conditions, condition::REACHABLE).unwrap();
        assert_eq!(
            (reach.status.as_str(), reach.reason.as_str()),
            ("False", "BucketNotFound")
        );
        assert_eq!(p.not_ready.as_ref().unwrap().0, "BucketNotFound");
    }

    #[test]
    fn initializing_is_announced() {
        let p = plan(
            None,
            None,
            Outcome::Initialized {
                repository_id: "new".into(),
            },
            EVERY,
            at("2026-01-01T00:00:00Z"),
        );
        let reasons: Vec<_> = p.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["RepositoryInitialized", "StoreReady"]);
        let p = plan(
            None,
            None,
            Outcome::NotInitialized,
            EVERY,
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(p.not_ready.unwrap().0, "NotInitialized");
        assert_eq!(p.status.initialized, Some(false));
    }
}

//! Status conditions the Kubernetes way: one entry per type, `lastTransitionTime` moves
//! only when the status flips (so rewriting an unchanged condition never churns the object
//! and never wakes watchers for nothing).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as the plan wants it; `set` turns it into the stored form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

impl<'a> Desired<'a> {
    pub fn new(type_: &'a str, status: bool, reason: &'a str, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Upserts `want` into `conditions`. Keeps the stored `lastTransitionTime` unless the
/// status changes. Returns whether anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    want: &Desired<'_>,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = status_str(want.status);
    match conditions.iter_mut().find(|c| c.type_ == want.type_) {
        Some(c) => {
            let flipped = c.status != status;
            let changed = flipped
                || c.reason != want.reason
                || c.message != want.message
                || c.observed_generation != generation;
            if flipped {
                c.last_transition_time = Time(now);
            }
            c.status = status.to_string();
            c.reason = want.reason.to_string();
            c.message = want.message.clone();
            c.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: want.type_.to_string(),
                status: status.to_string(),
                reason: want.reason.to_string(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// Looks up a condition's status.
pub fn is_true(conditions: &[Condition], type_: &str) -> Option<bool> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

/// Looks up a condition.
pub fn get<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-01-01T02:00:00Z".parse().unwrap();
        let mut cs = Vec::new();
        assert!(set(
            &mut cs,
            &Desired::new("Ready", false, "StoreNotFound", "no store"),
            Some(1),
            t0
        ));
        // Same status, new reason: changed, but the transition time stays.
        assert!(set(
            &mut cs,
            &Desired::new("Ready", false, "SecretNotFound", "no secret"),
            Some(1),
            t1
        ));
        assert_eq!(cs[0].last_transition_time, Time(t0));
        // Identical: nothing changes.
        assert!(!set(
            &mut cs,
            &Desired::new("Ready", false, "SecretNotFound", "no secret"),
            Some(1),
            t2
        ));
        // Flip: transition time moves.
        assert!(set(
            &mut cs,
            &Desired::new("Ready", true, "Ready", "ok"),
            Some(1),
            t2
        ));
        assert_eq!(cs[0].last_transition_time, Time(t2));
        assert_eq!(is_true(&cs, "Ready"), Some(true));
        assert_eq!(cs.len(), 1);
    }
}

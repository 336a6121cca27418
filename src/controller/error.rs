//! Errors of the reconcilers, each with a bounded category (metric label, Event reason)
//! and a retry class that decides how `error_policy` requeues.

use std::time::Duration;

/// How an error is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The user must change something (bad spec): the condition says what. Requeue only
    /// as a slow safety net; the watch on the object brings the fix.
    Permanent,
    /// Something the object depends on is missing or not ready (a Secret, a store):
    /// retry with back-off, since we do not watch every dependency.
    Dependency,
    /// A passing fault (API server, network): retry soon with back-off.
    Transient,
    /// Optimistic-concurrency conflict: retry almost at once, not an alarm.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object cannot be reconciled until its spec changes. The message is already in
    /// a status condition.
    #[error("{reason}: {message}")]
    Invalid {
        reason: &'static str,
        message: String,
    },
    /// A dependency is missing or not ready. The message is already in a status condition.
    #[error("{reason}: {message}")]
    Blocked {
        reason: &'static str,
        message: String,
    },
    /// The repository could not be reached or opened.
    #[error("{reason}: {message}")]
    Store {
        reason: &'static str,
        message: String,
        retry: Retry,
    },
    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },
}

impl Error {
    /// Bounded PascalCase name for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(e)) if e.code == 403 => "Forbidden",
            Error::Kube(kube::Error::Api(e)) if e.code == 429 => "TooManyRequests",
            Error::Kube(_) => "KubernetesApi",
            Error::Invalid { reason, .. }
            | Error::Blocked { reason, .. }
            | Error::Store { reason, .. } => reason,
            Error::Serialize { .. } => "Serialization",
        }
    }

    pub fn retry(&self) -> Retry {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => Retry::Conflict,
            Error::Kube(_) => Retry::Transient,
            Error::Invalid { .. } | Error::Serialize { .. } => Retry::Permanent,
            Error::Blocked { .. } => Retry::Dependency,
            Error::Store { retry, .. } => *retry,
        }
    }

    /// Whether the API said the object is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(e)) if e.code == 404)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Requeue delay after the `attempt`-th consecutive failure (1-based) of this class.
/// Exponential with a ceiling, plus up to 10% jitter so a fleet of failing objects does
/// not retry in lockstep. HTTP 429 gets the longer dependency curve.
pub fn backoff(retry: Retry, attempt: u32, jitter_seed: u64) -> Duration {
    let (base, cap) = match retry {
        Retry::Conflict => (Duration::from_millis(200), Duration::from_secs(2)),
        Retry::Transient => (Duration::from_secs(1), Duration::from_secs(300)),
        Retry::Dependency => (Duration::from_secs(10), Duration::from_secs(300)),
        Retry::Permanent => return Duration::from_secs(900),
    };
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let d = exp.min(cap);
    let jitter = d.as_millis() as u64 / 10;
    d + Duration::from_millis(if jitter == 0 { 0 } else { jitter_seed % jitter })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let t: Vec<_> = (1..=12)
            .map(|a| backoff(Retry::Transient, a, 0).as_secs())
            .collect();
        assert_eq!(&t[..4], &[1, 2, 4, 8]);
        assert_eq!(*t.last().unwrap(), 300);
        assert_eq!(backoff(Retry::Permanent, 7, 0), Duration::from_secs(900));
        assert!(backoff(Retry::Conflict, 1, 0) < Duration::from_secs(1));
        let jittered = backoff(Retry::Dependency, 1, 12345);
        assert!(jittered >= Duration::from_secs(10) && jittered < Duration::from_secs(11));
    }
}

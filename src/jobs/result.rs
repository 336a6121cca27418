//! The mover's result contract: one compact JSON object the mover writes to its
//! termination message (`/dev/termination-log`, at most 4096 bytes) and the controller
//! parses from the pod's container status. The controller never scrapes logs.

use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::crd::common::Failure;

/// Kubernetes truncates termination messages beyond this many bytes.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// Marker of the contract's version, so a newer controller can tell old movers apart.
pub const RESULT_VERSION: u32 = 1;

/// What a mover reports when it ends, successfully or not.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverResult {
    /// Contract version ([`RESULT_VERSION`]).
    pub v: u32,
    /// Snapshot committed (backups) or restored (restores).
    pub snapshot_id: Option<String>,
    /// The snapshot's time: the restore point.
    pub snapshot_time: Option<String>,
    pub files: Option<u64>,
    pub bytes_read: Option<u64>,
    pub bytes_added: Option<u64>,
    pub duration_seconds: Option<f64>,
    /// Set when the mover failed; `reason` is a bounded category.
    pub failure: Option<Failure>,
    /// Small free-form facts for the caller (e.g. per-table row counts of a database
    /// restore, check results). Kept short: the whole message must fit the limit.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl MoverResult {
    /// Serializes within the termination-message limit. If the details make it too long
    /// they are dropped (and the failure message shortened) rather than letting Kubernetes
    /// cut the JSON in the middle, which would make it unparsable.
    pub fn to_message(&self) -> String {
        let full = serde_json::to_string(self).expect("a result always serializes");
        if full.len() <= TERMINATION_MESSAGE_LIMIT {
            return full;
        }
        let mut slim = self.clone();
        slim.details.clear();
        slim.details
            .insert("truncated".into(), serde_json::Value::Bool(true));
        if let Some(f) = slim.failure.as_mut() {
            let mut cut = f.message.len().min(1024);
            while !f.message.is_char_boundary(cut) {
                cut -= 1;
            }
            f.message.truncate(cut);
        }
        serde_json::to_string(&slim).expect("a result always serializes")
    }

    /// Parses a termination message. `None` when the message is not ours (for example the
    /// log tail that `FallbackToLogsOnError` put there after a crash).
    pub fn parse(message: &str) -> Option<MoverResult> {
        let r: MoverResult = serde_json::from_str(message.trim()).ok()?;
        (r.v >= 1).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_messages() {
        let r = MoverResult {
            v: RESULT_VERSION,
            snapshot_id: Some("abc123".into()),
            files: Some(3),
            bytes_added: Some(10),
            ..MoverResult::default()
        };
        assert_eq!(MoverResult::parse(&r.to_message()), Some(r));
        assert_eq!(MoverResult::parse("panicked at src/main.rs:1"), None);
        assert_eq!(
            MoverResult::parse("{}"),
            None,
            "no version: not a mover result"
        );
    }

    #[test]
    fn oversized_results_stay_parsable() {
        let mut r = MoverResult {
            v: RESULT_VERSION,
            failure: Some(Failure {
                reason: "DumpFailed".into(),
                message: "x".repeat(5000),
            }),
            ..MoverResult::default()
        };
        for i in 0..200 {
            r.details.insert(format!("table_{i}"), serde_json::json!(i));
        }
        let msg = r.to_message();
        assert!(msg.len() <= TERMINATION_MESSAGE_LIMIT, "{}", msg.len());
        let back = MoverResult::parse(&msg).unwrap();
        assert_eq!(back.failure.unwrap().reason, "DumpFailed");
        assert_eq!(
            back.details.get("truncated"),
            Some(&serde_json::Value::Bool(true))
        );
    }
}

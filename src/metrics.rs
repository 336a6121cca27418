//! Prometheus metrics of the controller, served on `/metrics`: reconcile health per
//! controller and the domain figures platform teams alert on (backup outcomes, bytes,
//! last success, current RPO; drill outcomes, RTO and RPO).
//!
//! Label values are bounded: object names (one series per object, removed when the object
//! goes), outcome phases and error categories. Never a message or a `Debug` string.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileErrorLabels {
    pub controller: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub namespace: String,
    pub policy: String,
    /// Succeeded, PartiallyFailed or Failed.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub namespace: String,
    pub policy: String,
    /// A bounded error category such as `DumpFailed` or `S3AccessDenied`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    pub namespace: String,
    pub drill: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillRunLabels {
    pub namespace: String,
    pub drill: String,
    /// Passed or Failed.
    pub outcome: &'static str,
}

fn duration_histogram() -> Histogram {
    // 1 s .. ~9 h: from a tiny database dump to a multi-terabyte volume.
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 32400.0,
    ])
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
}

/// Every metric the controller exports. Cheap to clone (shared state inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    pub backup_runs: Family<RunLabels, Counter>,
    pub backup_failures: Family<FailureLabels, Counter>,
    pub backup_duration: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    pub backup_bytes_read: Family<PolicyLabels, Counter>,
    pub backup_bytes_added: Family<PolicyLabels, Counter>,
    pub backup_last_success: Family<PolicyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub policy_rpo: Family<PolicyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub policy_rpo_objective: Family<PolicyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub backups_skipped: Family<PolicyLabels, Counter>,
    pub drill_runs: Family<DrillRunLabels, Counter>,
    pub drill_rto: Family<DrillLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub drill_rpo: Family<DrillLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub drill_last_passed: Family<DrillLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lifeboat");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_histogram),
            backup_runs: Family::default(),
            backup_failures: Family::default(),
            backup_duration: Family::new_with_constructor(duration_histogram),
            backup_bytes_read: Family::default(),
            backup_bytes_added: Family::default(),
            backup_last_success: Family::default(),
            policy_rpo: Family::default(),
            policy_rpo_objective: Family::default(),
            backups_skipped: Family::default(),
            drill_runs: Family::default(),
            drill_rto: Family::default(),
            drill_rpo: Family::default(),
            drill_last_passed: Family::default(),
            leader: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "reconcile",
            "Reconciliations by controller",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciliations by controller and error category",
            m.reconcile_errors.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconciliation",
            prometheus_client::registry::Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        r.register(
            "backup_runs",
            "Finished backup runs by policy and result",
            m.backup_runs.clone(),
        );
        r.register(
            "backup_failures",
            "Failed backup sources by policy and reason",
            m.backup_failures.clone(),
        );
        r.register_with_unit(
            "backup_duration",
            "Wall time of finished backup runs",
            prometheus_client::registry::Unit::Seconds,
            m.backup_duration.clone(),
        );
        r.register_with_unit(
            "backup_read",
            "Bytes read from sources by backups",
            prometheus_client::registry::Unit::Bytes,
            m.backup_bytes_read.clone(),
        );
        r.register_with_unit(
            "backup_added",
            "Bytes added to repositories by backups, after deduplication and compression",
            prometheus_client::registry::Unit::Bytes,
            m.backup_bytes_added.clone(),
        );
        r.register(
            "backup_last_success_timestamp_seconds",
            "Restore point time of the newest successful backup, Unix seconds",
            m.backup_last_success.clone(),
        );
        r.register_with_unit(
            "policy_rpo",
            "Age of the newest successful restore point of a policy",
            prometheus_client::registry::Unit::Seconds,
            m.policy_rpo.clone(),
        );
        r.register_with_unit(
            "policy_rpo_objective",
            "RPO objective of a policy",
            prometheus_client::registry::Unit::Seconds,
            m.policy_rpo_objective.clone(),
        );
        r.register(
            "backups_skipped",
            "Scheduled backups skipped (previous run still active, or slot missed)",
            m.backups_skipped.clone(),
        );
        r.register(
            "drill_runs",
            "Finished DR drill runs by drill and outcome",
            m.drill_runs.clone(),
        );
        r.register_with_unit(
            "drill_rto",
            "Measured recovery time of the newest drill run that got as far as measuring it",
            prometheus_client::registry::Unit::Seconds,
            m.drill_rto.clone(),
        );
        r.register_with_unit(
            "drill_rpo",
            "Measured recovery point age of the newest drill run",
            prometheus_client::registry::Unit::Seconds,
            m.drill_rpo.clone(),
        );
        r.register(
            "drill_last_passed_timestamp_seconds",
            "When the newest passing drill run finished, Unix seconds",
            m.drill_last_passed.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// Records one reconciliation of `controller`.
    pub fn observe_reconcile(&self, controller: &'static str, took: Duration) {
        let l = ControllerLabels { controller };
        self.reconciles.get_or_create(&l).inc();
        self.reconcile_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// Records a failed reconciliation under its error category.
    pub fn observe_reconcile_error(&self, controller: &'static str, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&ReconcileErrorLabels {
                controller,
                category,
            })
            .inc();
    }

    /// Drops every per-policy series of a deleted policy.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        let l = PolicyLabels {
            namespace: namespace.to_string(),
            policy: policy.to_string(),
        };
        self.backup_duration.remove(&l);
        self.backup_bytes_read.remove(&l);
        self.backup_bytes_added.remove(&l);
        self.backup_last_success.remove(&l);
        self.policy_rpo.remove(&l);
        self.policy_rpo_objective.remove(&l);
        self.backups_skipped.remove(&l);
    }

    /// Drops every per-drill series of a deleted drill (the runs counter stays: it is
    /// what the LifeboatDrillFailed alert counts over its window).
    pub fn forget_drill(&self, namespace: &str, drill: &str) {
        let l = DrillLabels {
            namespace: namespace.to_string(),
            drill: drill.to_string(),
        };
        self.drill_rto.remove(&l);
        self.drill_rpo.remove(&l);
        self.drill_last_passed.remove(&l);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_prefixed_names_and_units() {
        let m = Metrics::new();
        m.observe_reconcile("backuppolicy", Duration::from_millis(3));
        m.observe_reconcile_error("backuppolicy", "StoreNotFound");
        let l = PolicyLabels {
            namespace: "shop".into(),
            policy: "orders".into(),
        };
        m.policy_rpo.get_or_create(&l).set(42.0);
        let text = m.encode();
        assert!(
            text.contains(r#"lifeboat_reconcile_total{controller="backuppolicy"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"lifeboat_reconcile_errors_total{controller="backuppolicy",category="StoreNotFound"} 1"#
        ));
        assert!(
            text.contains(r#"lifeboat_policy_rpo_seconds{namespace="shop",policy="orders"} 42.0"#)
        );
        assert!(text.contains("lifeboat_reconcile_duration_seconds_bucket"));
        m.forget_policy("shop", "orders");
        assert!(!m.encode().contains(r#"policy="orders""#));
    }
}

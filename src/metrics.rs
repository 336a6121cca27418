//! Prometheus metrics of the controller, served on `/metrics`: reconcile health per
//! controller and the domain figures platform teams alert on (backup outcomes, bytes,
//! last success, current RPO; drill outcomes, RTO and RPO).
//!
//! Label values are bounded: object names (one series per object, removed when the object
//! goes), outcome phases and error categories. Never a message or a `Debug` string.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
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

/// The series of one policy. Written only through [`Metrics`] methods that note the
/// policy, so its series can all be found again when it is deleted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    namespace: String,
    policy: String,
}

impl PolicyLabels {
    pub fn new(namespace: &str, policy: &str) -> Self {
        PolicyLabels {
            namespace: namespace.to_string(),
            policy: policy.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    namespace: String,
    policy: String,
    /// Succeeded, PartiallyFailed or Failed.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    namespace: String,
    policy: String,
    /// A bounded error category such as `DumpFailed` or `S3AccessDenied`.
    reason: String,
}

/// The series of one drill.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    namespace: String,
    drill: String,
}

impl DrillLabels {
    pub fn new(namespace: &str, drill: &str) -> Self {
        DrillLabels {
            namespace: namespace.to_string(),
            drill: drill.to_string(),
        }
    }
}

/// The series of one drill's KPIs over one window.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrillWindowLabels {
    namespace: String,
    drill: String,
    /// `30d` or `90d` (`drill::kpi::WINDOWS`).
    window: &'static str,
}

/// The label value of a KPI window (a fixed set: `drill::kpi::WINDOWS`).
fn window_label(days: u32) -> Option<&'static str> {
    match days {
        30 => Some("30d"),
        90 => Some("90d"),
        _ => None,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrillRunLabels {
    namespace: String,
    drill: String,
    /// Passed or Failed.
    outcome: &'static str,
}

/// Which policies and drills have series, and the label values beyond the object's name
/// each has used: a `Family` cannot be searched by a partial label set, so removing a
/// deleted object's series needs them listed.
#[derive(Default)]
struct Owners {
    policies: HashMap<(String, String), PolicySeries>,
    drills: HashMap<(String, String), BTreeSet<&'static str>>,
}

#[derive(Default)]
struct PolicySeries {
    results: BTreeSet<&'static str>,
    reasons: BTreeSet<String>,
}

type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// A policy's gauges as its controller computed them; `None` leaves a gauge as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyGauges {
    pub rpo_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    pub last_success_seconds: Option<f64>,
}

/// A drill's gauges; `None` leaves a gauge as it is.
#[derive(Clone, Debug, Default)]
pub struct DrillGauges {
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub last_passed_seconds: Option<f64>,
    /// The drill's KPIs per window (from its DrillRuns in the cluster). A window without
    /// runs has no pass rate: its pass-rate and RTO p95 series are removed, not left stale.
    pub kpis: Option<Vec<crate::drill::kpi::WindowKpis>>,
    /// The verified share of the retained restore points: `Some(None)` when the
    /// retained points are not known (the series are removed), as is the ratio when
    /// nothing is retained. Only the DRDrill controller knows it.
    pub coverage: Option<Option<crate::drill::kpi::Coverage>>,
}

/// What a finished backup run adds to its policy's series.
#[derive(Clone, Debug)]
pub struct FinishedRun {
    /// Succeeded, PartiallyFailed or Failed.
    pub result: &'static str,
    pub duration_seconds: Option<f64>,
    pub bytes_read_added: Option<(u64, u64)>,
    pub failure_reasons: Vec<String>,
}

/// Sets a gauge when its value is known; `None` leaves it as it is.
fn set_known<L>(f: &Family<L, GaugeF64>, l: &L, v: Option<f64>)
where
    L: Clone + std::hash::Hash + Eq,
{
    if let Some(v) = v {
        f.get_or_create(l).set(v);
    }
}

/// Sets a gauge, or removes its series when the value is not known (a stale pass rate
/// would keep an alert firing, or silent, about runs that left the window).
fn set_or_remove<L>(f: &Family<L, GaugeF64>, l: &L, v: Option<f64>)
where
    L: Clone + std::hash::Hash + Eq,
{
    match v {
        Some(v) => {
            f.get_or_create(l).set(v);
        }
        None => {
            f.remove(l);
        }
    }
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
    backup_runs: Family<RunLabels, Counter>,
    backup_failures: Family<FailureLabels, Counter>,
    backup_duration: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    backup_bytes_read: Family<PolicyLabels, Counter>,
    backup_bytes_added: Family<PolicyLabels, Counter>,
    backup_last_success: Family<PolicyLabels, GaugeF64>,
    policy_rpo: Family<PolicyLabels, GaugeF64>,
    policy_rpo_objective: Family<PolicyLabels, GaugeF64>,
    backups_skipped: Family<PolicyLabels, Counter>,
    drill_runs: Family<DrillRunLabels, Counter>,
    drill_rto: Family<DrillLabels, GaugeF64>,
    drill_rpo: Family<DrillLabels, GaugeF64>,
    drill_last_passed: Family<DrillLabels, GaugeF64>,
    drill_window_runs: Family<DrillWindowLabels, GaugeF64>,
    drill_pass_rate: Family<DrillWindowLabels, GaugeF64>,
    drill_rto_p95: Family<DrillWindowLabels, GaugeF64>,
    drill_points_verified: Family<DrillLabels, GaugeF64>,
    drill_points_retained: Family<DrillLabels, GaugeF64>,
    pub leader: Gauge,
    evidence_seals: Family<SealLabels, Counter>,
    evidence_key_ready: Gauge,
    /// Repository locks of movers that are gone, removed by the store controller.
    pub stale_locks_removed: Family<LockRemovalLabels, Counter>,
    /// Finished scheduled verifications of stores' repositories, by result.
    pub store_verify_runs: Family<VerifyRunLabels, Counter>,
    owners: Arc<Mutex<Owners>>,
}

/// `reason`: `PodFinished`, `PodGone` or `PodReplaced` (bounded: see
/// `controller::access::locks::Removal`). No store label: the Event names the store.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LockRemovalLabels {
    pub reason: &'static str,
}

/// `result`: `Passed`, or the bounded reason the run ended with (`RepositoryCorrupted`,
/// `MoverFailed`, ...: `controller::store::verify`). No store label: the store's
/// `DataVerified` condition and Warning Event name it; the counter is for the alert.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerifyRunLabels {
    pub result: &'static str,
}

/// `outcome`: `Sealed`, or a bounded refusal category (`ReportNotAsRecorded`,
/// `ChainFork`, `AnchorInvalid`, `EvidenceKeyInvalid`, `Unsigned`, ...). No drill label:
/// the run's condition and Event name the drill; the counter is for the alert.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SealLabels {
    pub outcome: &'static str,
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
            drill_window_runs: Family::default(),
            drill_pass_rate: Family::default(),
            drill_rto_p95: Family::default(),
            drill_points_verified: Family::default(),
            drill_points_retained: Family::default(),
            leader: Gauge::default(),
            evidence_seals: Family::default(),
            evidence_key_ready: Gauge::default(),
            stale_locks_removed: Family::default(),
            store_verify_runs: Family::default(),
            owners: Arc::default(),
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
            "drill_window_runs",
            "Finished runs of a drill started within the window (its DrillRuns in the cluster)",
            m.drill_window_runs.clone(),
        );
        r.register(
            "drill_pass_rate",
            "Share of a drill's finished runs within the window that passed (0..1)",
            m.drill_pass_rate.clone(),
        );
        r.register_with_unit(
            "drill_rto_p95",
            "Nearest-rank 95th percentile of the RTO of a drill's passed runs within the window",
            prometheus_client::registry::Unit::Seconds,
            m.drill_rto_p95.clone(),
        );
        r.register(
            "drill_restore_points_verified_ratio",
            "Share of the policy's retained restore points a passed run of the drill verified (0..1)",
            m.drill_points_verified.clone(),
        );
        r.register(
            "drill_restore_points_retained",
            "Retained restore points of the drill's policy (the store's catalog, else its Backups)",
            m.drill_points_retained.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        r.register(
            "evidence_seal",
            "Drill reports sealed (signed and anchored), or not, by outcome",
            m.evidence_seals.clone(),
        );
        r.register(
            "evidence_key_ready",
            "1 when the evidence signing key is usable, 0 when reports are written unsigned",
            m.evidence_key_ready.clone(),
        );
        r.register(
            "stale_locks_removed",
            "Repository locks of mover pods that are gone, removed by the controller",
            m.stale_locks_removed.clone(),
        );
        r.register(
            "store_verify_runs",
            "Finished scheduled verifications of store repositories, by result",
            m.store_verify_runs.clone(),
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

    // Every write of a per-object series below notes its owner and writes under one
    // lock, and forgetting takes the same lock: a run that ends while its policy is being
    // swept away either lands before (and is removed) or after (and is noted again, for
    // the next sweep), never as an unlisted series.

    /// Sets a policy's gauges (each when known) and counts a skipped slot.
    pub fn record_policy(&self, l: &PolicyLabels, gauges: PolicyGauges, skipped: bool) {
        let mut o = self.owners.lock().expect("lock poisoned");
        o.policies
            .entry((l.namespace.clone(), l.policy.clone()))
            .or_default();
        set_known(&self.policy_rpo, l, gauges.rpo_seconds);
        set_known(&self.policy_rpo_objective, l, gauges.rpo_objective_seconds);
        set_known(&self.backup_last_success, l, gauges.last_success_seconds);
        if skipped {
            self.backups_skipped.get_or_create(l).inc();
        }
    }

    /// Records a finished backup run: its result, duration, bytes and each failed
    /// source's (or the whole run's) bounded reason.
    pub fn record_backup_run(&self, l: &PolicyLabels, run: FinishedRun) {
        let mut o = self.owners.lock().expect("lock poisoned");
        let series = o
            .policies
            .entry((l.namespace.clone(), l.policy.clone()))
            .or_default();
        series.results.insert(run.result);
        self.backup_runs
            .get_or_create(&RunLabels {
                namespace: l.namespace.clone(),
                policy: l.policy.clone(),
                result: run.result,
            })
            .inc();
        if let Some(secs) = run.duration_seconds {
            self.backup_duration.get_or_create(l).observe(secs.max(0.0));
        }
        if let Some((read, added)) = run.bytes_read_added {
            self.backup_bytes_read.get_or_create(l).inc_by(read);
            self.backup_bytes_added.get_or_create(l).inc_by(added);
        }
        for reason in run.failure_reasons {
            series.reasons.insert(reason.clone());
            self.backup_failures
                .get_or_create(&FailureLabels {
                    namespace: l.namespace.clone(),
                    policy: l.policy.clone(),
                    reason,
                })
                .inc();
        }
    }

    /// Sets a drill's gauges (each when known) and, for a run that just finished, counts
    /// it by outcome.
    pub fn record_drill(
        &self,
        l: &DrillLabels,
        gauges: DrillGauges,
        finished: Option<&'static str>,
    ) {
        let mut o = self.owners.lock().expect("lock poisoned");
        let outcomes = o
            .drills
            .entry((l.namespace.clone(), l.drill.clone()))
            .or_default();
        set_known(&self.drill_rto, l, gauges.rto_seconds);
        set_known(&self.drill_rpo, l, gauges.rpo_seconds);
        set_known(&self.drill_last_passed, l, gauges.last_passed_seconds);
        for w in gauges.kpis.iter().flatten() {
            let Some(window) = window_label(w.days) else {
                continue;
            };
            let wl = DrillWindowLabels {
                namespace: l.namespace.clone(),
                drill: l.drill.clone(),
                window,
            };
            self.drill_window_runs
                .get_or_create(&wl)
                .set(f64::from(w.runs));
            set_or_remove(&self.drill_pass_rate, &wl, w.pass_rate);
            set_or_remove(&self.drill_rto_p95, &wl, w.rto_p95_seconds);
        }
        if let Some(c) = &gauges.coverage {
            let c = c.as_ref();
            set_or_remove(&self.drill_points_verified, l, c.and_then(|c| c.share));
            set_or_remove(
                &self.drill_points_retained,
                l,
                c.map(|c| f64::from(c.retained)),
            );
        }
        if let Some(outcome) = finished {
            outcomes.insert(outcome);
            self.drill_runs
                .get_or_create(&DrillRunLabels {
                    namespace: l.namespace.clone(),
                    drill: l.drill.clone(),
                    outcome,
                })
                .inc();
        }
    }

    /// Counts one report's sealing outcome.
    pub fn record_seal(&self, outcome: &'static str) {
        self.evidence_seals
            .get_or_create(&SealLabels { outcome })
            .inc();
    }

    /// Whether the evidence signing key is usable.
    pub fn evidence_key_ready(&self, ready: bool) {
        self.evidence_key_ready.set(i64::from(ready));
    }

    /// Drops every series of a deleted policy, its run and failure counters included: an
    /// alert about a policy that no longer exists cannot be acted on.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        let mut o = self.owners.lock().expect("lock poisoned");
        self.forget_policy_locked(&mut o, namespace, policy);
    }

    fn forget_policy_locked(&self, o: &mut Owners, namespace: &str, policy: &str) {
        let key = (namespace.to_string(), policy.to_string());
        let Some(series) = o.policies.remove(&key) else {
            return;
        };
        let (namespace, policy) = key;
        let l = PolicyLabels {
            namespace: namespace.clone(),
            policy: policy.clone(),
        };
        self.backup_duration.remove(&l);
        self.backup_bytes_read.remove(&l);
        self.backup_bytes_added.remove(&l);
        self.backup_last_success.remove(&l);
        self.policy_rpo.remove(&l);
        self.policy_rpo_objective.remove(&l);
        self.backups_skipped.remove(&l);
        for result in series.results {
            self.backup_runs.remove(&RunLabels {
                namespace: namespace.clone(),
                policy: policy.clone(),
                result,
            });
        }
        for reason in series.reasons {
            self.backup_failures.remove(&FailureLabels {
                namespace: namespace.clone(),
                policy: policy.clone(),
                reason,
            });
        }
    }

    /// Drops every series of a deleted drill, its runs counter included (see
    /// [`Metrics::forget_policy`]).
    pub fn forget_drill(&self, namespace: &str, drill: &str) {
        let mut o = self.owners.lock().expect("lock poisoned");
        self.forget_drill_locked(&mut o, namespace, drill);
    }

    fn forget_drill_locked(&self, o: &mut Owners, namespace: &str, drill: &str) {
        let key = (namespace.to_string(), drill.to_string());
        let Some(outcomes) = o.drills.remove(&key) else {
            return;
        };
        let (namespace, drill) = key;
        let l = DrillLabels {
            namespace: namespace.clone(),
            drill: drill.clone(),
        };
        self.drill_rto.remove(&l);
        self.drill_rpo.remove(&l);
        self.drill_last_passed.remove(&l);
        self.drill_points_verified.remove(&l);
        self.drill_points_retained.remove(&l);
        for days in crate::drill::kpi::WINDOWS {
            if let Some(window) = window_label(days) {
                let wl = DrillWindowLabels {
                    namespace: namespace.clone(),
                    drill: drill.clone(),
                    window,
                };
                self.drill_window_runs.remove(&wl);
                self.drill_pass_rate.remove(&wl);
                self.drill_rto_p95.remove(&wl);
            }
        }
        for outcome in outcomes {
            self.drill_runs.remove(&DrillRunLabels {
                namespace: namespace.clone(),
                drill: drill.clone(),
                outcome,
            });
        }
    }

    /// Drops the series of every policy and drill that no longer exists. Neither kind
    /// has a finalizer and kube-runtime does not reconcile deletions, so no reconcile sees
    /// one go; without this their series would stay until the process restarts (a slow
    /// leak where namespaces come and go). Returns how many objects were forgotten.
    pub fn sweep(
        &self,
        policy_exists: impl Fn(&str, &str) -> bool,
        drill_exists: impl Fn(&str, &str) -> bool,
    ) -> usize {
        let mut o = self.owners.lock().expect("lock poisoned");
        let policies: Vec<_> = o
            .policies
            .keys()
            .filter(|(ns, n)| !policy_exists(ns, n))
            .cloned()
            .collect();
        let drills: Vec<_> = o
            .drills
            .keys()
            .filter(|(ns, n)| !drill_exists(ns, n))
            .cloned()
            .collect();
        for (ns, name) in &policies {
            self.forget_policy_locked(&mut o, ns, name);
        }
        for (ns, name) in &drills {
            self.forget_drill_locked(&mut o, ns, name);
        }
        policies.len() + drills.len()
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
mod tests;

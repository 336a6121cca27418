//! `lifeboat status`, the pure part: from the listed objects and the current time, the
//! status document (policies with their last backup, last success, RPO against the
//! objective, next run and drills; drills with their last run, outcome, RTO/RPO against
//! the objectives and next run; stores with Ready) and its rendering as tables.
//!
//! The JSON form is a stable document (`apiVersion: lifeboat.dev/v1alpha1`, `kind:
//! Status`): fields are only ever added.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use serde::Serialize;

use super::kpis::{self, rel, table, until};
use crate::crd::backup::Backup;
use crate::crd::backup_policy::{BackupPolicy, StoreKind};
use crate::crd::common::condition;
use crate::crd::dr_drill::{DRDrill, DrillPhase, DrillRun, Measurement};
use crate::crd::store::{BackupStore, ClusterBackupStore, StoreStatus};
use crate::drill::kpi::DrillKpis;
use crate::schedule::duration;

/// Everything `status` read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Namespaces to show even when they hold nothing (the `-n` namespace).
    pub namespaces: Vec<String>,
    pub policies: Vec<BackupPolicy>,
    pub backups: Vec<Backup>,
    pub drills: Vec<DRDrill>,
    pub runs: Vec<DrillRun>,
    pub stores: Vec<BackupStore>,
    /// `None` when the user may not list ClusterBackupStores.
    pub cluster_stores: Option<Vec<ClusterBackupStore>>,
}

/// The whole document.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// When the document was made (ages are relative to it), RFC 3339.
    pub generated_at: String,
    pub namespaces: Vec<NamespaceStatus>,
}

/// One namespace.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    pub name: String,
    pub policies: Vec<PolicyStatus>,
    /// Drills whose policy does not exist (their runs fail until it does).
    pub drills_without_policy: Vec<DrillStatus>,
    /// BackupStores of the namespace and the ClusterBackupStores its policies use.
    pub stores: Vec<StoreStatusRow>,
}

/// A condition, reduced.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cond {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Cond {
    fn of(conditions: &[Condition], type_: &str) -> Option<Cond> {
        conditions.iter().find(|c| c.type_ == type_).map(|c| Cond {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
    }
}

/// A run (Backup or DrillRun) and when it started.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRef {
    pub name: String,
    /// Pending, Running, Succeeded, ... (Backups); Provisioning ... Completed (DrillRuns).
    /// Absent when the object is gone (history limit) or not yet seen by the controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
}

/// A measured figure against its objective.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    /// Whether the measurement meets the objective (absent when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// The condition's reason, when a condition decides `met` (`RPOMet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One BackupPolicy.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub name: String,
    /// `BackupStore/NAME` or `ClusterBackupStore/NAME`.
    pub store: String,
    pub schedule: String,
    pub suspended: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Cond>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<RunRef>,
    /// The newest successful Backup; `time` is its restore point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<RunRef>,
    /// Age of the newest restore point now, against `objectives.rpo` (`met` from the
    /// controller's `RPOMet` condition).
    pub rpo: Objective,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_in_seconds: Option<i64>,
    pub drills: Vec<DrillStatus>,
}

/// One DRDrill.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    pub name: String,
    pub policy: String,
    pub schedule: String,
    pub suspended: bool,
    /// The newest DrillRun (running or finished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRef>,
    /// Passed or Failed, of the newest finished run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    pub rto: Objective,
    pub rpo: Objective,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_in_seconds: Option<i64>,
    /// Key figures over 30 and 90 days (`super::kpis`); absent before the first finished run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpis: Option<DrillKpis>,
}

/// One store.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatusRow {
    /// `BackupStore` or `ClusterBackupStore`.
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Absent for a ClusterBackupStore the user may not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Cond>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initialized: Option<bool>,
    /// False when the user may not read it (ClusterBackupStores need cluster rights).
    pub readable: bool,
}

fn ts(t: &Time) -> Timestamp {
    t.0
}

fn secs_between(earlier: Timestamp, later: Timestamp) -> i64 {
    later.as_second() - earlier.as_second()
}

fn run_ref(name: String, phase: Option<String>, time: Option<Timestamp>, now: Timestamp) -> RunRef {
    RunRef {
        name,
        phase,
        time: time.map(|t| t.to_string()),
        age_seconds: time.map(|t| secs_between(t, now)),
    }
}

fn objective_of(m: Option<&Measurement>, spec_objective: Option<&String>) -> Objective {
    let mut o = Objective {
        objective: spec_objective.cloned(),
        ..Objective::default()
    };
    if let Some(m) = m {
        o.measured = m.measured.clone().or_else(|| {
            m.measured_seconds
                .map(|s| duration::format(Duration::from_secs_f64(s)))
        });
        o.measured_seconds = m.measured_seconds;
        o.objective = m.objective.clone().or(o.objective);
        o.met = m.met;
    }
    o
}

fn newest<'a, T: kube::Resource + 'a>(items: impl Iterator<Item = &'a T>) -> Option<&'a T> {
    items.max_by_key(|o| {
        (
            o.meta().creation_timestamp.as_ref().map(|t| t.0),
            o.meta().name.clone(),
        )
    })
}

fn next_run(
    next: Option<&String>,
    suspended: bool,
    now: Timestamp,
) -> (Option<String>, Option<i64>) {
    if suspended {
        return (None, None);
    }
    let Some(n) = next else {
        return (None, None);
    };
    let secs = n.parse::<Timestamp>().ok().map(|t| secs_between(now, t));
    (Some(n.clone()), secs)
}

fn drill_status(
    d: &DRDrill,
    runs: &[&DrillRun],
    backups: &[&Backup],
    now: Timestamp,
) -> DrillStatus {
    let st = d.status.clone().unwrap_or_default();
    let name = d.name_any();
    let own: Vec<&DrillRun> = runs
        .iter()
        .copied()
        .filter(|r| r.spec.drill_ref.name == name)
        .collect();
    let latest = newest(own.iter().copied());
    let last_run = match latest {
        Some(r) => {
            let rst = r.status.clone().unwrap_or_default();
            let phase = rst.phase.map(|p| format!("{p:?}"));
            let started = rst.start_time.as_ref().map(ts).or(r
                .metadata
                .creation_timestamp
                .as_ref()
                .map(ts));
            Some(run_ref(r.name_any(), phase, started, now))
        }
        None => st
            .last_run
            .clone()
            .map(|n| run_ref(n, None, st.last_run_time.as_ref().map(ts), now)),
    };
    // Figures come from the newest finished run; the drill's status carries the RTO text
    // when the run object is gone.
    let finished = newest(own.iter().copied().filter(|r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(DrillPhase::Completed))
    }));
    let fst = finished.and_then(|r| r.status.clone());
    let mut rto = objective_of(
        fst.as_ref().and_then(|s| s.rto.as_ref()),
        d.spec.objectives.rto.as_ref(),
    );
    if rto.measured.is_none() {
        rto.measured = st.last_rto.clone();
    }
    let rpo = objective_of(
        fst.as_ref().and_then(|s| s.rpo.as_ref()),
        d.spec.objectives.rpo.as_ref(),
    );
    let last_outcome = fst
        .as_ref()
        .and_then(|s| s.outcome)
        .or(st.last_outcome)
        .map(|o| format!("{o:?}"));
    let suspended = d.spec.schedule.suspend;
    let (next, next_in) = next_run(st.next_run_time.as_ref(), suspended, now);
    DrillStatus {
        name,
        policy: d.spec.policy_ref.name.clone(),
        schedule: d.spec.schedule.cron.clone(),
        suspended,
        last_run,
        last_outcome,
        rto,
        rpo,
        consecutive_failures: st.consecutive_failures,
        next_run: next,
        next_run_in_seconds: next_in,
        kpis: kpis::of_drill(
            &own,
            &backups
                .iter()
                .copied()
                .filter(|b| b.spec.policy_ref.name == d.spec.policy_ref.name)
                .collect::<Vec<_>>(),
            st.coverage.as_ref(),
            now,
        ),
    }
}

fn store_row(kind: &str, name: String, bucket: String, st: Option<&StoreStatus>) -> StoreStatusRow {
    StoreStatusRow {
        kind: kind.into(),
        name,
        bucket: Some(bucket),
        ready: st.and_then(|s| Cond::of(&s.conditions, condition::READY)),
        initialized: st.and_then(|s| s.initialized),
        readable: true,
    }
}

/// Builds the document.
pub fn build(inputs: &Inputs, now: Timestamp) -> StatusDoc {
    let mut namespaces: BTreeSet<String> = inputs.namespaces.iter().cloned().collect();
    let ns_of = |m: &kube::core::ObjectMeta| m.namespace.clone().unwrap_or_default();
    namespaces.extend(inputs.policies.iter().map(|o| ns_of(&o.metadata)));
    namespaces.extend(inputs.drills.iter().map(|o| ns_of(&o.metadata)));
    namespaces.extend(inputs.stores.iter().map(|o| ns_of(&o.metadata)));
    let cluster_stores: BTreeMap<String, &ClusterBackupStore> = inputs
        .cluster_stores
        .iter()
        .flatten()
        .map(|s| (s.name_any(), s))
        .collect();

    let mut out = Vec::new();
    for ns in namespaces {
        let in_ns = |m: &kube::core::ObjectMeta| m.namespace.as_deref() == Some(ns.as_str());
        let mut policies: Vec<&BackupPolicy> = inputs
            .policies
            .iter()
            .filter(|o| in_ns(&o.metadata))
            .collect();
        policies.sort_by_key(|p| p.name_any());
        let backups: Vec<&Backup> = inputs
            .backups
            .iter()
            .filter(|o| in_ns(&o.metadata))
            .collect();
        let mut drills: Vec<&DRDrill> = inputs
            .drills
            .iter()
            .filter(|o| in_ns(&o.metadata))
            .collect();
        drills.sort_by_key(|d| d.name_any());
        let runs: Vec<&DrillRun> = inputs.runs.iter().filter(|o| in_ns(&o.metadata)).collect();

        let mut rows = Vec::new();
        let mut used_cluster_stores = BTreeSet::new();
        for p in &policies {
            let name = p.name_any();
            let st = p.status.clone().unwrap_or_default();
            let store = match p.spec.store_ref.kind {
                StoreKind::BackupStore => format!("BackupStore/{}", p.spec.store_ref.name),
                StoreKind::ClusterBackupStore => {
                    used_cluster_stores.insert(p.spec.store_ref.name.clone());
                    format!("ClusterBackupStore/{}", p.spec.store_ref.name)
                }
            };
            let latest = newest(
                backups
                    .iter()
                    .copied()
                    .filter(|b| b.spec.policy_ref.name == name),
            );
            let last_backup = match latest {
                Some(b) => {
                    let bst = b.status.clone().unwrap_or_default();
                    let started = bst.start_time.as_ref().map(ts).or(b
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(ts));
                    Some(run_ref(
                        b.name_any(),
                        bst.phase.map(|p| p.as_str().to_string()),
                        started,
                        now,
                    ))
                }
                None => st
                    .last_backup
                    .clone()
                    .map(|n| run_ref(n, None, st.last_backup_time.as_ref().map(ts), now)),
            };
            let success_time = st.last_successful_backup_time.as_ref().map(ts);
            let last_success = st
                .last_successful_backup
                .clone()
                .map(|n| run_ref(n, Some("Succeeded".into()), success_time, now));
            let rpo_cond = Cond::of(&st.conditions, condition::RPO_MET);
            let objective = p.spec.objectives.rpo.clone();
            let current = success_time.map(|t| secs_between(t, now).max(0));
            let met = match &rpo_cond {
                Some(c) if c.status == "True" => Some(true),
                Some(c) if c.status == "False" => Some(false),
                _ => None,
            };
            let rpo = Objective {
                measured: current.map(|s| duration::format(Duration::from_secs(s as u64))),
                measured_seconds: current.map(|s| s as f64),
                objective,
                met,
                reason: rpo_cond.map(|c| c.reason),
            };
            let suspended = p.spec.schedule.suspend;
            let (next, next_in) = next_run(st.next_backup_time.as_ref(), suspended, now);
            let drills_of: Vec<DrillStatus> = drills
                .iter()
                .filter(|d| d.spec.policy_ref.name == name)
                .map(|d| drill_status(d, &runs, &backups, now))
                .collect();
            rows.push(PolicyStatus {
                name,
                store,
                schedule: p.spec.schedule.cron.clone(),
                suspended,
                ready: Cond::of(&st.conditions, condition::READY),
                last_backup,
                last_success,
                rpo,
                next_run: next,
                next_run_in_seconds: next_in,
                drills: drills_of,
            });
        }
        let policy_names: BTreeSet<String> = policies.iter().map(|p| p.name_any()).collect();
        let orphans = drills
            .iter()
            .filter(|d| !policy_names.contains(&d.spec.policy_ref.name))
            .map(|d| drill_status(d, &runs, &backups, now))
            .collect();

        let mut stores: Vec<StoreStatusRow> = inputs
            .stores
            .iter()
            .filter(|o| in_ns(&o.metadata))
            .map(|s| {
                store_row(
                    "BackupStore",
                    s.name_any(),
                    s.spec.s3.bucket.clone(),
                    s.status.as_ref(),
                )
            })
            .collect();
        stores.sort_by(|a, b| a.name.cmp(&b.name));
        for name in used_cluster_stores {
            stores.push(match cluster_stores.get(&name) {
                Some(s) => store_row(
                    "ClusterBackupStore",
                    name,
                    s.spec.store.s3.bucket.clone(),
                    s.status.as_ref(),
                ),
                None => StoreStatusRow {
                    kind: "ClusterBackupStore".into(),
                    ready: inputs.cluster_stores.as_ref().map(|_| Cond {
                        status: "False".into(),
                        reason: "NotFound".into(),
                        message: "no such ClusterBackupStore".into(),
                    }),
                    name,
                    bucket: None,
                    initialized: None,
                    readable: inputs.cluster_stores.is_some(),
                },
            });
        }
        out.push(NamespaceStatus {
            name: ns,
            policies: rows,
            drills_without_policy: orphans,
            stores,
        });
    }
    StatusDoc {
        api_version: "lifeboat.dev/v1alpha1",
        kind: "Status",
        generated_at: now.to_string(),
        namespaces: out,
    }
}

/// `5m ago`, `in 3h2m`, `-`.
fn objective_cell(o: &Objective) -> String {
    let Some(obj) = &o.objective else {
        return "-".into();
    };
    match (o.met, o.reason.as_deref()) {
        (Some(true), _) => format!("{obj} met"),
        (Some(false), Some(r)) if r != "ObjectiveMissed" && r != "Breached" => {
            format!("{obj} MISSED ({r})")
        }
        (Some(false), _) => format!("{obj} MISSED"),
        (None, _) => obj.clone(),
    }
}

fn drill_row(d: &DrillStatus) -> Vec<String> {
    let last = match &d.last_run {
        Some(r) => rel(r.age_seconds),
        None => "never".into(),
    };
    // An active run shows its phase; otherwise the newest outcome.
    let active = d
        .last_run
        .as_ref()
        .and_then(|r| r.phase.clone())
        .filter(|p| p != "Completed");
    let outcome = match (active, &d.last_outcome) {
        (Some(p), _) => format!("running: {p}"),
        (None, Some(o)) => o.clone(),
        (None, None) => "-".into(),
    };
    let outcome = match d.consecutive_failures {
        Some(n) if n > 1 => format!("{outcome} ({n} in a row)"),
        _ => outcome,
    };
    vec![
        d.name.clone(),
        d.policy.clone(),
        last,
        outcome,
        d.rto.measured.clone().unwrap_or_else(|| "-".into()),
        objective_cell(&d.rto),
        d.rpo.measured.clone().unwrap_or_else(|| "-".into()),
        objective_cell(&d.rpo),
        if d.suspended {
            "suspended".into()
        } else {
            until(d.next_run_in_seconds)
        },
    ]
}

/// Renders the document as tables, one block per namespace.
pub fn render(doc: &StatusDoc) -> String {
    let mut s = String::new();
    if doc.namespaces.is_empty() {
        s.push_str("No Lifeboat objects found.\n");
    }
    for (i, ns) in doc.namespaces.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let _ = writeln!(s, "NAMESPACE {}", ns.name);
        let mut problems = Vec::new();
        let all_drills: Vec<&DrillStatus> = ns
            .policies
            .iter()
            .flat_map(|p| p.drills.iter())
            .chain(ns.drills_without_policy.iter())
            .collect();
        if ns.policies.is_empty() && all_drills.is_empty() && ns.stores.is_empty() {
            s.push_str("  no BackupPolicies, DRDrills or BackupStores\n");
            continue;
        }
        if !ns.policies.is_empty() {
            let rows: Vec<Vec<String>> = ns
                .policies
                .iter()
                .map(|p| {
                    if let Some(r) = p.ready.as_ref().filter(|r| r.status != "True") {
                        problems.push(format!("policy {}: {}: {}", p.name, r.reason, r.message));
                    }
                    let (last, phase) = match &p.last_backup {
                        Some(b) => (
                            rel(b.age_seconds),
                            b.phase.clone().unwrap_or_else(|| "-".into()),
                        ),
                        None => ("never".into(), "-".into()),
                    };
                    vec![
                        p.name.clone(),
                        p.store.split_once('/').map_or(p.store.clone(), |(k, n)| {
                            if k == "ClusterBackupStore" {
                                format!("{n} (cluster)")
                            } else {
                                n.to_string()
                            }
                        }),
                        p.ready.as_ref().map_or("-".into(), |r| r.status.clone()),
                        last,
                        phase,
                        p.last_success
                            .as_ref()
                            .map_or("never".into(), |b| rel(b.age_seconds)),
                        p.rpo.measured.clone().unwrap_or_else(|| "-".into()),
                        objective_cell(&p.rpo),
                        if p.suspended {
                            "suspended".into()
                        } else {
                            until(p.next_run_in_seconds)
                        },
                    ]
                })
                .collect();
            s.push_str(&table(
                &[
                    "POLICY",
                    "STORE",
                    "READY",
                    "LAST BACKUP",
                    "PHASE",
                    "LAST SUCCESS",
                    "RPO",
                    "RPO OBJECTIVE",
                    "NEXT RUN",
                ],
                &rows,
            ));
        }
        if !all_drills.is_empty() {
            s.push('\n');
            let rows: Vec<Vec<String>> = all_drills.iter().map(|d| drill_row(d)).collect();
            s.push_str(&table(
                &[
                    "DRILL",
                    "POLICY",
                    "LAST RUN",
                    "OUTCOME",
                    "RTO",
                    "RTO OBJECTIVE",
                    "RPO",
                    "RPO OBJECTIVE",
                    "NEXT RUN",
                ],
                &rows,
            ));
            let kpi_rows: Vec<Vec<String>> = all_drills
                .iter()
                .filter_map(|d| d.kpis.as_ref().map(|k| kpis::rows(&d.name, k)))
                .flatten()
                .collect();
            if !kpi_rows.is_empty() {
                s.push('\n');
                s.push_str(&table(&kpis::HEADER, &kpi_rows));
            }
            for d in &ns.drills_without_policy {
                problems.push(format!(
                    "drill {}: its BackupPolicy {} does not exist",
                    d.name, d.policy
                ));
            }
        }
        if !ns.stores.is_empty() {
            s.push('\n');
            let rows: Vec<Vec<String>> = ns
                .stores
                .iter()
                .map(|st| {
                    if let Some(r) = st.ready.as_ref().filter(|r| r.status != "True") {
                        problems.push(format!(
                            "{} {}: {}: {}",
                            st.kind, st.name, r.reason, r.message
                        ));
                    }
                    let (ready, reason) = match (&st.ready, st.readable) {
                        (Some(r), _) => (r.status.clone(), r.reason.clone()),
                        (None, false) => ("?".into(), "not readable with your rights".into()),
                        (None, true) => ("-".into(), "not probed yet".into()),
                    };
                    vec![
                        st.name.clone(),
                        st.kind.clone(),
                        st.bucket.clone().unwrap_or_else(|| "-".into()),
                        ready,
                        reason,
                    ]
                })
                .collect();
            s.push_str(&table(
                &["STORE", "KIND", "BUCKET", "READY", "REASON"],
                &rows,
            ));
        }
        if !problems.is_empty() {
            s.push('\n');
            for p in problems {
                let _ = writeln!(s, "  ! {p}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::backup::{BackupPhase, BackupSpec, BackupStatus, PolicyRef};
    use crate::crd::backup_policy::{
        BackupPolicySpec, BackupPolicyStatus, PolicyObjectives, StoreRef,
    };
    use crate::crd::common::ScheduleSpec;
    use crate::crd::dr_drill::{
        DRDrillSpec, DRDrillStatus, DrillObjectives, DrillOutcome, DrillRunSpec, DrillRunStatus,
    };
    use crate::crd::restore::LocalRef;
    use crate::crd::store::{BackupStoreSpec, S3Spec};

    const NOW: &str = "2026-03-04T12:00:00Z";

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: at(NOW),
            observed_generation: None,
        }
    }

    fn meta<T: kube::Resource>(mut o: T, ns: &str, created: &str) -> T {
        o.meta_mut().namespace = Some(ns.into());
        o.meta_mut().creation_timestamp = Some(at(created));
        o
    }

    fn policy(name: &str, rpo_met: &str) -> BackupPolicy {
        let mut p = BackupPolicy::new(
            name,
            BackupPolicySpec {
                store_ref: StoreRef {
                    name: "s3".into(),
                    ..StoreRef::default()
                },
                schedule: ScheduleSpec {
                    cron: "0 * * * *".into(),
                    ..ScheduleSpec::default()
                },
                objectives: PolicyObjectives {
                    rpo: Some("1h".into()),
                },
                ..BackupPolicySpec::default()
            },
        );
        p.status = Some(BackupPolicyStatus {
            last_backup: Some(format!("{name}-202603041100")),
            last_successful_backup: Some(format!("{name}-202603041100")),
            last_successful_backup_time: Some(at("2026-03-04T11:00:05Z")),
            next_backup_time: Some("2026-03-04T13:00:00Z".into()),
            conditions: vec![
                cond("Ready", "True", "Ready", "ok"),
                cond("RPOMet", rpo_met, "WithinObjective", ""),
            ],
            ..BackupPolicyStatus::default()
        });
        meta(p, "shop", "2026-03-01T00:00:00Z")
    }

    fn backup(name: &str, policy: &str, phase: BackupPhase, started: &str) -> Backup {
        let mut b = Backup::new(
            name,
            BackupSpec {
                policy_ref: PolicyRef {
                    name: policy.into(),
                },
                ..BackupSpec::default()
            },
        );
        b.status = Some(BackupStatus {
            phase: Some(phase),
            start_time: Some(at(started)),
            ..BackupStatus::default()
        });
        meta(b, "shop", started)
    }

    fn fixture() -> Inputs {
        let mut drill = DRDrill::new(
            "orders-weekly",
            DRDrillSpec {
                policy_ref: LocalRef {
                    name: "orders".into(),
                },
                schedule: ScheduleSpec {
                    cron: "0 3 * * 0".into(),
                    ..ScheduleSpec::default()
                },
                objectives: DrillObjectives {
                    rto: Some("30m".into()),
                    rpo: Some("2h".into()),
                    rto_window: None,
                },
                ..DRDrillSpec::default()
            },
        );
        drill.status = Some(DRDrillStatus {
            last_run: Some("orders-weekly-202603010300".into()),
            last_outcome: Some(DrillOutcome::Passed),
            next_run_time: Some("2026-03-08T03:00:00Z".into()),
            ..DRDrillStatus::default()
        });
        let drill = meta(drill, "shop", "2026-02-01T00:00:00Z");
        let mut run = DrillRun::new(
            "orders-weekly-202603010300",
            DrillRunSpec {
                drill_ref: LocalRef {
                    name: "orders-weekly".into(),
                },
                ..DrillRunSpec::default()
            },
        );
        run.status = Some(DrillRunStatus {
            phase: Some(DrillPhase::Completed),
            outcome: Some(DrillOutcome::Passed),
            start_time: Some(at("2026-03-01T03:00:00Z")),
            rto: Some(Measurement {
                measured: Some("4m12s".into()),
                measured_seconds: Some(252.0),
                objective: Some("30m".into()),
                met: Some(true),
                ..Measurement::default()
            }),
            rpo: Some(Measurement {
                measured: Some("1h5m".into()),
                measured_seconds: Some(3900.0),
                objective: Some("2h".into()),
                met: Some(true),
                ..Measurement::default()
            }),
            ..DrillRunStatus::default()
        });
        let run = meta(run, "shop", "2026-03-01T03:00:00Z");
        let mut store = BackupStore::new(
            "s3",
            BackupStoreSpec {
                s3: S3Spec {
                    bucket: "shop-backups".into(),
                    ..S3Spec::default()
                },
                ..BackupStoreSpec::default()
            },
        );
        store.status = Some(StoreStatus {
            initialized: Some(true),
            conditions: vec![cond("Ready", "True", "Ready", "reachable")],
            ..StoreStatus::default()
        });
        let store = meta(store, "shop", "2026-01-01T00:00:00Z");
        let mut broken = policy("invoices", "False");
        if let Some(st) = broken.status.as_mut() {
            st.conditions = vec![
                cond("Ready", "False", "InvalidSchedule", "cron: bad field"),
                cond("RPOMet", "False", "NoSuccessfulBackup", "never backed up"),
            ];
            st.last_successful_backup = None;
            st.last_successful_backup_time = None;
            st.last_backup = None;
            st.next_backup_time = None;
        }
        Inputs {
            namespaces: vec![],
            policies: vec![policy("orders", "True"), broken],
            backups: vec![
                backup(
                    "orders-202603041100",
                    "orders",
                    BackupPhase::Succeeded,
                    "2026-03-04T11:00:00Z",
                ),
                backup(
                    "orders-manual-20260304115500",
                    "orders",
                    BackupPhase::Running,
                    "2026-03-04T11:55:00Z",
                ),
                backup(
                    "orders-202603041000",
                    "orders",
                    BackupPhase::Succeeded,
                    "2026-03-04T10:00:00Z",
                ),
            ],
            drills: vec![drill],
            runs: vec![run],
            stores: vec![store],
            cluster_stores: None,
        }
    }

    #[test]
    fn the_table_shows_policies_drills_and_stores() {
        let doc = build(&fixture(), NOW.parse().unwrap());
        let text = render(&doc);
        let want = "\
NAMESPACE shop
  POLICY    STORE  READY  LAST BACKUP  PHASE    LAST SUCCESS  RPO     RPO OBJECTIVE                   NEXT RUN
  invoices  s3     False  never        -        never         -       1h MISSED (NoSuccessfulBackup)  -
  orders    s3     True   5m ago       Running  59m55s ago    59m55s  1h met                          in 1h

  DRILL          POLICY  LAST RUN  OUTCOME  RTO    RTO OBJECTIVE  RPO   RPO OBJECTIVE  NEXT RUN
  orders-weekly  orders  3d9h ago  Passed   4m12s  30m met        1h5m  2h met         in 3d15h

  DRILL          WINDOW  RUNS  PASSED  FAILED  PASS RATE  RTO P50  RTO P95  RTO TREND  POINTS VERIFIED
  orders-weekly  30d     1     1       0       100%       4m12s    4m12s    -          0/2 listed
  orders-weekly  90d     1     1       0       100%       4m12s    4m12s    -          0/2 listed

  STORE  KIND         BUCKET        READY  REASON
  s3     BackupStore  shop-backups  True   Ready

  ! policy invoices: InvalidSchedule: cron: bad field
";
        assert_eq!(text, want, "got:\n{text}");
    }

    #[test]
    fn json_is_a_stable_document() {
        let doc = build(&fixture(), NOW.parse().unwrap());
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["apiVersion"], "lifeboat.dev/v1alpha1");
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["generatedAt"], NOW);
        let orders = &v["namespaces"][0]["policies"][1];
        assert_eq!(orders["name"], "orders");
        assert_eq!(orders["store"], "BackupStore/s3");
        assert_eq!(orders["lastBackup"]["name"], "orders-manual-20260304115500");
        assert_eq!(orders["lastBackup"]["phase"], "Running");
        assert_eq!(orders["lastBackup"]["ageSeconds"], 300);
        assert_eq!(orders["lastSuccess"]["time"], "2026-03-04T11:00:05Z");
        assert_eq!(orders["rpo"]["measuredSeconds"], 3595.0);
        assert_eq!(orders["rpo"]["objective"], "1h");
        assert_eq!(orders["rpo"]["met"], true);
        assert_eq!(orders["rpo"]["reason"], "WithinObjective");
        assert_eq!(orders["nextRunInSeconds"], 3600);
        let drill = &orders["drills"][0];
        assert_eq!(drill["name"], "orders-weekly");
        assert_eq!(drill["lastOutcome"], "Passed");
        assert_eq!(drill["lastRun"]["phase"], "Completed");
        assert_eq!(drill["rto"]["measuredSeconds"], 252.0);
        assert_eq!(drill["rto"]["met"], true);
        assert_eq!(v["namespaces"][0]["stores"][0]["ready"]["status"], "True");
        let invoices = &v["namespaces"][0]["policies"][0];
        assert!(invoices.get("lastBackup").is_none(), "absent, not null");
        assert_eq!(invoices["ready"]["reason"], "InvalidSchedule");
    }

    #[test]
    fn an_empty_namespace_is_shown_when_asked_for() {
        let inputs = Inputs {
            namespaces: vec!["empty".into()],
            ..Inputs::default()
        };
        let text = render(&build(&inputs, NOW.parse().unwrap()));
        assert_eq!(
            text,
            "NAMESPACE empty\n  no BackupPolicies, DRDrills or BackupStores\n"
        );
        assert_eq!(
            render(&build(&Inputs::default(), NOW.parse().unwrap())),
            "No Lifeboat objects found.\n"
        );
    }

    #[test]
    fn a_running_drill_shows_its_phase_and_cluster_stores_their_access() {
        let mut inputs = fixture();
        let mut running = inputs.runs[0].clone();
        running.metadata.name = Some("orders-weekly-manual-20260304115900".into());
        running.metadata.creation_timestamp = Some(at("2026-03-04T11:59:00Z"));
        running.status = Some(DrillRunStatus {
            phase: Some(DrillPhase::Restoring),
            start_time: Some(at("2026-03-04T11:59:00Z")),
            ..DrillRunStatus::default()
        });
        inputs.runs.push(running);
        inputs.policies[1].spec.store_ref = StoreRef {
            kind: StoreKind::ClusterBackupStore,
            name: "shared".into(),
        };
        let doc = build(&inputs, NOW.parse().unwrap());
        let text = render(&doc);
        assert!(
            text.contains("orders-weekly  orders  1m ago    running: Restoring  4m12s"),
            "{text}"
        );
        assert!(
            text.contains(
                "shared  ClusterBackupStore  -             ?      not readable with your rights"
            ),
            "{text}"
        );
        assert!(text.contains("shared (cluster)"), "{text}");
    }
}

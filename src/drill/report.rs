//! The evidence report of a drill run: a JSON document (the record an auditor verifies)
//! and a Markdown page rendered from it (timeline, checks, RTO/RPO against objectives, the
//! trend of the last runs as a Unicode sparkline). Pure: building, rendering and hashing.
//!
//! The chain: each report carries `previousSha256`, the SHA-256 of the exact bytes of the
//! drill's previous report, its `sequence` number in the chain (1 for the first), and
//! `page.sha256` / `html.sha256`, those of its own pages. Changing, removing, reordering
//! or inserting any report breaks a link (`super::chain` verifies it). The controller signs
//! each report (`crate::evidence`): a signature file next to it covers its digest and its
//! place in the chain.
//!
//! Reports are stored as plain (unencrypted) objects next to the repository, so that an
//! auditor needs read access to the bucket and nothing else. They hold no secrets: check
//! values are summarised, credentials never appear in a DrillRun.

use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use sha2::{Digest, Sha256};

use crate::crd::backup::Trigger;
use crate::crd::dr_drill::{
    CheckResult, CheckVerdict, DrillFailure, DrillObjectives, DrillOutcome, DrillRestorePoint,
    DrillRun, ImmutabilityProbe, Measurement, PhaseSpan,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// Value of `format` in every report.
pub const REPORT_FORMAT: &str = "lifeboat.dev/drill-report/v1";
/// Runs shown in a page's trend, this one included.
pub const TREND_RUNS: usize = 12;
/// Days of earlier runs a report carries (its KPIs look back this far).
pub const HISTORY_DAYS: i64 = 90;
/// At most this many earlier runs are carried (an hourly drill reaches it in 5 days).
pub const HISTORY_RUNS: usize = 120;

/// One run in the trend of a report.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    pub run: String,
    pub start_time: Option<Time>,
    pub outcome: Option<DrillOutcome>,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    /// The Backup whose restore point the run restored.
    pub restore_point: Option<String>,
}

/// The key that signs a report (the installation's; see `crate::evidence`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signer {
    /// `Ed25519`.
    pub algorithm: String,
    /// First 16 hex digits of the SHA-256 of the raw public key.
    pub key_id: String,
    /// Base64 of the raw 32-byte public key.
    pub public_key: String,
}

/// Where the page is and what it hashes to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageRef {
    /// Object key relative to the repository root.
    pub key: String,
    pub sha256: String,
}

/// The evidence report of one drill run.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: String,
    pub namespace: String,
    pub drill: String,
    pub run: String,
    pub run_uid: Option<String>,
    pub policy: Option<String>,
    pub trigger: Trigger,
    pub scheduled_time: Option<Time>,
    /// When the report was written, RFC 3339.
    pub generated_at: String,
    pub outcome: Option<DrillOutcome>,
    pub failure: Option<DrillFailure>,
    pub restore_point: Option<DrillRestorePoint>,
    pub sandbox_namespace: Option<String>,
    pub start_time: Option<Time>,
    #[serde(default)]
    pub timeline: Vec<PhaseSpan>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    pub rto: Option<Measurement>,
    pub rpo: Option<Measurement>,
    /// The attempt to delete a pack version with the store's credentials, or why none
    /// was made (`super::immutability`).
    pub immutability: Option<ImmutabilityProbe>,
    #[serde(default)]
    pub objectives: DrillObjectives,
    /// The previous runs of the drill, oldest first: those started within
    /// [`HISTORY_DAYS`] before this one, at most [`HISTORY_RUNS`].
    #[serde(default)]
    pub trend: Vec<TrendPoint>,
    /// Runs passed and failed, RTO percentiles and trend over 30 and 90 days, from the
    /// trend and this run.
    pub kpis: Option<super::kpi::DrillKpis>,
    /// This report's place in the drill's chain, from 1.
    pub sequence: Option<u64>,
    /// The key that signs this report (the signature is in `<report>.json.sig`).
    pub signer: Option<Signer>,
    /// Object key of the drill's previous report.
    pub previous_report: Option<String>,
    /// SHA-256 of the previous report's bytes: the chain link.
    pub previous_sha256: Option<String>,
    /// The Markdown page rendered from this report.
    pub page: Option<PageRef>,
    /// The self-contained HTML page rendered from this report.
    pub html: Option<PageRef>,
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The report's stored bytes (pretty JSON with a final newline). These exact bytes are
/// what the chain hashes.
pub fn to_bytes(r: &Report) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(r).expect("a report always serializes");
    v.push(b'\n');
    v
}

/// The trend point of a report's own run.
pub fn point_of(r: &Report) -> TrendPoint {
    TrendPoint {
        run: r.run.clone(),
        start_time: r.start_time.clone(),
        outcome: r.outcome,
        rto_seconds: r.rto.as_ref().and_then(|m| m.measured_seconds),
        rpo_seconds: r.rpo.as_ref().and_then(|m| m.measured_seconds),
        restore_point: r.restore_point.as_ref().map(|p| p.backup.clone()),
    }
}

/// The previous report, as the new one links to it.
pub struct Previous<'a> {
    pub key: &'a str,
    pub sha256: &'a str,
    /// Its sequence number (for a report written before sequence numbers, its position
    /// in the drill's listing, from 1).
    pub sequence: u64,
    /// Parsed, when it parses (its trend continues into the new one).
    pub report: Option<&'a Report>,
}

/// Builds the report of `run` (whose status is final but for the report itself), signed
/// by `signer` when given. The page references are set by the caller once the pages are
/// rendered.
pub fn build(
    run: &DrillRun,
    generated_at: jiff::Timestamp,
    previous: Option<Previous<'_>>,
    signer: Option<Signer>,
) -> Report {
    let s = run.status.clone().unwrap_or_default();
    let spec = s.drill_spec.clone().unwrap_or_default();
    let mut trend = Vec::new();
    if let Some(p) = previous.as_ref().and_then(|p| p.report) {
        trend.extend(p.trend.iter().cloned());
        trend.push(point_of(p));
    }
    // The history is bounded by days back from this run's start, then by count.
    let start = s.start_time.as_ref().map_or(generated_at, |t| t.0);
    let horizon = start - jiff::SignedDuration::from_hours(24 * HISTORY_DAYS);
    trend.retain(|p| p.start_time.as_ref().is_none_or(|t| t.0 >= horizon));
    if trend.len() > HISTORY_RUNS {
        trend.drain(..trend.len() - HISTORY_RUNS);
    }
    let mut r = Report {
        format: REPORT_FORMAT.into(),
        namespace: run.namespace().unwrap_or_default(),
        drill: run.spec.drill_ref.name.clone(),
        run: run.name_any(),
        run_uid: run.metadata.uid.clone(),
        policy: Some(spec.policy_ref.name.clone()).filter(|p| !p.is_empty()),
        trigger: run.spec.trigger,
        scheduled_time: run.spec.scheduled_time.clone(),
        generated_at: generated_at.to_string(),
        outcome: s.outcome,
        failure: s.failure,
        restore_point: s.restore_point,
        sandbox_namespace: s.sandbox_namespace,
        start_time: s.start_time,
        timeline: s.timeline,
        checks: s.checks,
        rto: s.rto,
        rpo: s.rpo,
        immutability: s.immutability,
        objectives: spec.objectives,
        trend,
        kpis: None,
        sequence: Some(previous.as_ref().map_or(1, |p| p.sequence + 1)),
        signer,
        previous_report: previous.as_ref().map(|p| p.key.to_string()),
        previous_sha256: previous.as_ref().map(|p| p.sha256.to_string()),
        page: None,
        html: None,
    };
    r.kpis = Some(super::kpi::of_report(&r));
    r
}

/// How a stored report differs from what `run` recorded: empty when the report is the
/// run's, as the report writer built it from the run's status. What is compared is what
/// the report asserts about the run (identity, restore point, checks, measurements,
/// outcome); the timeline may have grown since (the report is written during
/// Reporting), so the report's phases must be the run's, in order, and every phase the
/// report shows as ended must have ended when the run says.
pub fn differences(r: &Report, run: &DrillRun) -> Vec<String> {
    let s = run.status.clone().unwrap_or_default();
    let spec = s.drill_spec.clone().unwrap_or_default();
    let mut d = Vec::new();
    let mut same = |what: &str, equal: bool| {
        if !equal {
            d.push(what.to_string());
        }
    };
    same(
        "namespace",
        run.namespace().as_deref() == Some(r.namespace.as_str()),
    );
    same("drill", run.spec.drill_ref.name == r.drill);
    same("run", run.name_any() == r.run);
    same("runUid", run.metadata.uid == r.run_uid);
    same(
        "policy",
        Some(spec.policy_ref.name.clone()).filter(|p| !p.is_empty()) == r.policy,
    );
    same("trigger", run.spec.trigger == r.trigger);
    same("scheduledTime", run.spec.scheduled_time == r.scheduled_time);
    same("outcome", s.outcome == r.outcome);
    same("failure", s.failure == r.failure);
    same("restorePoint", s.restore_point == r.restore_point);
    same(
        "sandboxNamespace",
        s.sandbox_namespace == r.sandbox_namespace,
    );
    same("startTime", s.start_time == r.start_time);
    same("checks", s.checks == r.checks);
    same("rto", s.rto == r.rto);
    same("rpo", s.rpo == r.rpo);
    // A controller running against CRDs older than the field has it pruned from the run's
    // status: only a recorded attempt is compared (the report's signature covers the rest).
    same(
        "immutability",
        s.immutability.is_none() || s.immutability == r.immutability,
    );
    same("objectives", spec.objectives == r.objectives);
    let timeline_ok = r.timeline.len() <= s.timeline.len()
        && r.timeline.iter().zip(&s.timeline).all(|(a, b)| {
            a.phase == b.phase
                && a.start_time == b.start_time
                && (a.end_time.is_none()
                    || (a.end_time == b.end_time && a.duration_seconds == b.duration_seconds))
        });
    same("timeline", timeline_ok);
    d
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A Unicode sparkline of `values` scaled between their minimum and maximum; `·` marks a
/// run without a value (a failed run demonstrates no RTO).
pub fn sparkline(values: &[Option<f64>]) -> String {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    let (lo, hi) = present
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    values
        .iter()
        .map(|v| match v {
            None => '·',
            Some(_) if (hi - lo).abs() < f64::EPSILON => BARS[3],
            Some(v) => {
                let i = ((v - lo) / (hi - lo) * 7.0).round() as usize;
                BARS[i.min(7)]
            }
        })
        .collect()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), crate::drill::measure::format_seconds)
}

fn measurement_line(m: Option<&Measurement>, none: &str) -> String {
    let Some(m) = m else { return none.into() };
    let measured = m
        .measured
        .clone()
        .unwrap_or_else(|| secs(m.measured_seconds));
    match (&m.objective, m.met) {
        (Some(o), Some(true)) => format!("**{measured}** (objective {o}: met)"),
        (Some(o), Some(false)) => format!("**{measured}** (objective {o}: **missed**)"),
        _ => format!("**{measured}** (no objective)"),
    }
}

fn outcome_word(o: Option<DrillOutcome>) -> &'static str {
    match o {
        Some(DrillOutcome::Passed) => "✅ PASSED",
        Some(DrillOutcome::Failed) => "❌ FAILED",
        Some(DrillOutcome::Cancelled) => "⏹ CANCELLED",
        None => "unknown",
    }
}

fn verdict_word(v: CheckVerdict) -> &'static str {
    match v {
        CheckVerdict::Passed => "✅ Passed",
        CheckVerdict::Failed => "❌ Failed",
        CheckVerdict::Error => "⚠️ Error",
    }
}

fn hhmmss(t: jiff::Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// The runs a page shows in its trend: the last [`TREND_RUNS`], this one last.
pub fn shown_points(r: &Report) -> Vec<TrendPoint> {
    let mut points = r.trend.clone();
    points.push(point_of(r));
    let skip = points.len().saturating_sub(TREND_RUNS);
    points.split_off(skip)
}

/// Renders the human-readable page of a report.
pub fn render_markdown(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# DR drill report: {}/{}", r.namespace, r.drill);
    let _ = writeln!(w);
    let _ = writeln!(w, "Run `{}` — **{}**", r.run, outcome_word(r.outcome));
    if let Some(f) = &r.failure {
        let _ = writeln!(
            w,
            "\nFailed at **{}**: `{}`: {}",
            f.step,
            f.failure.reason,
            cell(&f.failure.message)
        );
    }
    let _ = writeln!(w, "\n| | |\n|---|---|");
    let _ = writeln!(w, "| Drill | `{}/{}` |", r.namespace, r.drill);
    if let Some(p) = &r.policy {
        let _ = writeln!(w, "| Backup policy | `{p}` |");
    }
    let trigger = match r.trigger {
        Trigger::Schedule => format!(
            "schedule{}",
            r.scheduled_time
                .as_ref()
                .map(|t| format!(" (slot {})", t.0))
                .unwrap_or_default()
        ),
        Trigger::Manual => "manual".into(),
    };
    let _ = writeln!(
        w,
        "| Started | {} by {trigger} |",
        r.start_time
            .as_ref()
            .map_or("—".into(), |t| t.0.to_string())
    );
    if let Some(rp) = &r.restore_point {
        let snaps: Vec<String> = rp
            .snapshots
            .iter()
            .map(|(k, v)| format!("{k} `{}`", &v[..v.len().min(8)]))
            .collect();
        let _ = writeln!(
            w,
            "| Restore point | Backup `{}` of {}{} |",
            rp.backup,
            rp.time.0,
            if snaps.is_empty() {
                String::new()
            } else {
                format!(" (snapshots: {})", snaps.join(", "))
            }
        );
    }
    if let Some(ns) = &r.sandbox_namespace {
        let _ = writeln!(w, "| Sandbox | `{ns}` |");
    }
    let _ = writeln!(
        w,
        "| RTO | {} |",
        measurement_line(
            r.rto.as_ref(),
            "not demonstrated (the recovery did not succeed)"
        )
    );
    let mut rpo = measurement_line(r.rpo.as_ref(), "not measured");
    if let Some(m) = &r.rpo {
        let parts: Vec<String> = m
            .breakdown
            .iter()
            .map(|(k, v)| format!("{k} {}", secs(Some(*v))))
            .collect();
        if !parts.is_empty() {
            rpo = format!("{rpo}; {}", parts.join(", "));
        }
    }
    let _ = writeln!(w, "| RPO | {rpo} |");

    let _ = writeln!(w, "\n## Timeline\n");
    let total: f64 = r
        .timeline
        .iter()
        .filter_map(|p| p.duration_seconds)
        .sum::<f64>()
        .max(1.0);
    let _ = writeln!(
        w,
        "| Phase | Start | End | Duration | |\n|---|---|---|---|---|"
    );
    for p in &r.timeline {
        let bar_len = p
            .duration_seconds
            .map_or(0, |d| ((d / total) * 30.0).round().max(1.0) as usize);
        let _ = writeln!(
            w,
            "| {:?} | {} | {} | {} | `{}` |",
            p.phase,
            hhmmss(p.start_time.0),
            p.end_time
                .as_ref()
                .map_or("(this report)".into(), |t| hhmmss(t.0)),
            secs(p.duration_seconds),
            "█".repeat(bar_len)
        );
    }

    let _ = writeln!(w, "\n## Checks\n");
    if r.checks.is_empty() {
        let _ = writeln!(w, "No checks ran.");
    } else {
        let _ = writeln!(
            w,
            "| Check | Type | Result | Observed | Expected | Duration |\n|---|---|---|---|---|---|"
        );
        for c in &r.checks {
            let observed = match (&c.observed, &c.message) {
                (Some(o), Some(m)) => format!("{o} ({m})"),
                (Some(o), None) => o.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "—".into(),
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&c.name),
                c.type_,
                verdict_word(c.result),
                cell(&observed),
                cell(c.expected.as_deref().unwrap_or("—")),
                secs(c.duration_seconds)
            );
        }
    }

    if let Some(i) = &r.immutability {
        let _ = writeln!(w, "\n## Immutability\n");
        let _ = writeln!(
            w,
            "{:?}: {}",
            i.result,
            cell(i.message.as_deref().unwrap_or("—"))
        );
    }

    let points = shown_points(r);
    let _ = writeln!(w, "\n## Trend of the last {} runs\n", points.len());
    let marks: String = points
        .iter()
        .map(|p| match p.outcome {
            Some(DrillOutcome::Passed) => '✔',
            Some(DrillOutcome::Failed) => '✘',
            Some(DrillOutcome::Cancelled) => '–',
            None => '?',
        })
        .collect();
    let rtos: Vec<Option<f64>> = points.iter().map(|p| p.rto_seconds).collect();
    let rpos: Vec<Option<f64>> = points.iter().map(|p| p.rpo_seconds).collect();
    let _ = writeln!(w, "```text");
    let _ = writeln!(w, "outcome  {marks}");
    let _ = writeln!(
        w,
        "RTO      {}  {} .. {}",
        sparkline(&rtos),
        secs(rtos.iter().flatten().copied().reduce(f64::min)),
        secs(rtos.iter().flatten().copied().reduce(f64::max))
    );
    let _ = writeln!(
        w,
        "RPO      {}  {} .. {}",
        sparkline(&rpos),
        secs(rpos.iter().flatten().copied().reduce(f64::min)),
        secs(rpos.iter().flatten().copied().reduce(f64::max))
    );
    let _ = writeln!(
        w,
        "```\n(oldest to newest; this run last; `·` = no value)\n"
    );
    let _ = writeln!(
        w,
        "| Run | Started | Outcome | RTO | RPO |\n|---|---|---|---|---|"
    );
    for p in points.iter().rev() {
        let _ = writeln!(
            w,
            "| `{}` | {} | {} | {} | {} |",
            p.run,
            p.start_time
                .as_ref()
                .map_or("—".into(), |t| t.0.to_string()),
            outcome_word(p.outcome),
            secs(p.rto_seconds),
            secs(p.rpo_seconds)
        );
    }

    let _ = writeln!(w, "\n## Integrity\n");
    let _ = writeln!(
        w,
        "This page is covered by the SHA-256 in the JSON report next to it (`page.sha256`)."
    );
    match (&r.previous_report, &r.previous_sha256) {
        (Some(k), Some(h)) => {
            let _ = writeln!(
                w,
                "The report links to the previous report `{k}` by its SHA-256 `{h}`."
            );
        }
        _ => {
            let _ = writeln!(
                w,
                "This is the first report of the drill: the chain starts here."
            );
        }
    }
    let _ = writeln!(
        w,
        "Verify the whole chain with `lifeboat drill verify-chain {} -n {}`.",
        r.drill, r.namespace
    );
    let _ = writeln!(w, "\nGenerated {} by Lifeboat.", r.generated_at);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::common::Failure;
    use crate::crd::dr_drill::{DrillPhase, DrillRunSpec, DrillRunStatus};
    use crate::crd::restore::LocalRef;
    use std::collections::BTreeMap;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn micro(s: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(s.parse().unwrap())
    }

    pub(crate) fn run(name: &str, outcome: DrillOutcome, rto: Option<f64>) -> DrillRun {
        let mut r = DrillRun::new(
            name,
            DrillRunSpec {
                drill_ref: LocalRef {
                    name: "orders".into(),
                },
                ..DrillRunSpec::default()
            },
        );
        r.metadata.namespace = Some("shop".into());
        r.metadata.uid = Some(format!("uid-{name}"));
        r.status = Some(DrillRunStatus {
            outcome: Some(outcome),
            start_time: Some(time("2026-11-22T15:00:00Z")),
            sandbox_namespace: Some(format!("drill-{name}")),
            restore_point: Some(DrillRestorePoint {
                backup: "orders-202611221400".into(),
                time: time("2026-11-22T14:00:00Z"),
                snapshots: BTreeMap::from([("pg".into(), "cb40c44f5f70".into())]),
                candidates: None,
                from_store: None,
            }),
            timeline: vec![
                PhaseSpan {
                    phase: DrillPhase::Provisioning,
                    start_time: micro("2026-11-22T15:00:00Z"),
                    end_time: Some(micro("2026-11-22T15:00:02Z")),
                    duration_seconds: Some(2.0),
                },
                PhaseSpan {
                    phase: DrillPhase::Restoring,
                    start_time: micro("2026-11-22T15:00:02Z"),
                    end_time: Some(micro("2026-11-22T15:01:02Z")),
                    duration_seconds: Some(60.0),
                },
            ],
            checks: vec![CheckResult {
                name: "orders|count".into(),
                type_: "sql".into(),
                result: if outcome == DrillOutcome::Passed {
                    CheckVerdict::Passed
                } else {
                    CheckVerdict::Failed
                },
                observed: Some("0".into()),
                expected: Some(">= 1".into()),
                duration_seconds: Some(1.5),
                ..CheckResult::default()
            }],
            rto: rto.map(|s| Measurement {
                measured: Some(crate::schedule::duration::format(
                    std::time::Duration::from_secs_f64(s),
                )),
                measured_seconds: Some(s),
                objective: Some("5m".into()),
                met: Some(s <= 300.0),
                ..Measurement::default()
            }),
            failure: (outcome == DrillOutcome::Failed).then(|| DrillFailure {
                step: "check/orders-count".into(),
                failure: Failure {
                    reason: "CheckFailed".into(),
                    message: "orders-count: observed 0, expected >= 1".into(),
                },
            }),
            ..DrillRunStatus::default()
        });
        r
    }

    #[test]
    fn reports_link_to_their_predecessor_and_carry_the_trend() {
        let now: jiff::Timestamp = "2026-11-22T15:02:00Z".parse().unwrap();
        let first = build(
            &run("r1", DrillOutcome::Passed, Some(70.0)),
            now,
            None,
            None,
        );
        assert_eq!(first.previous_sha256, None);
        assert!(first.trend.is_empty());
        let first_bytes = to_bytes(&first);
        let h1 = sha256(&first_bytes);
        let second = build(
            &run("r2", DrillOutcome::Failed, None),
            now,
            Some(Previous {
                key: "lifeboat-reports/shop/orders/a.json",
                sha256: &h1,
                sequence: 1,
                report: Some(&first),
            }),
            None,
        );
        assert_eq!(second.previous_sha256.as_deref(), Some(h1.as_str()));
        assert_eq!(second.trend.len(), 1);
        assert_eq!(second.trend[0].run, "r1");
        assert_eq!(second.trend[0].rto_seconds, Some(70.0));
        // Stable bytes: parsing and re-serializing gives the same digest.
        let back: Report = serde_json::from_slice(&first_bytes).unwrap();
        assert_eq!(sha256(&to_bytes(&back)), h1);
    }

    #[test]
    fn the_history_is_bounded_by_days_then_by_count() {
        let now: jiff::Timestamp = "2026-11-22T15:02:00Z".parse().unwrap();
        let day0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        // One run a day for 200 days, then 150 runs within one day.
        let mut r0 = run("r0", DrillOutcome::Passed, Some(10.0));
        r0.status.as_mut().unwrap().start_time = Some(Time(day0));
        let mut prev = build(&r0, now, None, None);
        for i in 1..350i64 {
            let h = sha256(&to_bytes(&prev));
            let start = if i < 200 {
                day0 + jiff::SignedDuration::from_hours(24 * i)
            } else {
                day0 + jiff::SignedDuration::from_hours(24 * 200)
                    + jiff::SignedDuration::from_secs(60 * i)
            };
            let mut r = run(
                &format!("r{i}"),
                DrillOutcome::Passed,
                Some(10.0 + i as f64),
            );
            r.status.as_mut().unwrap().start_time = Some(Time(start));
            prev = build(
                &r,
                now,
                Some(Previous {
                    key: "k",
                    sha256: &h,
                    sequence: i as u64,
                    report: Some(&prev),
                }),
                None,
            );
            if i == 199 {
                // 90 days back from day 199: runs of days 109..=198 (day 0 had no start).
                assert_eq!(prev.trend.len(), 90, "by days");
                assert_eq!(prev.trend[0].run, "r109");
            }
        }
        assert_eq!(prev.trend.len(), HISTORY_RUNS, "by count");
        assert_eq!(prev.trend.last().unwrap().run, "r348");
        assert_eq!(prev.sequence, Some(350));
        assert_eq!(shown_points(&prev).len(), TREND_RUNS);
        assert_eq!(shown_points(&prev).last().unwrap().run, "r349");
    }

    #[test]
    fn sparklines_scale_between_min_and_max() {
        assert_eq!(sparkline(&[Some(1.0), Some(8.0), None, Some(4.5)]), "▁█·▅");
        assert_eq!(sparkline(&[Some(5.0), Some(5.0)]), "▄▄");
        assert_eq!(sparkline(&[None]), "·");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn the_page_shows_outcome_checks_objectives_and_trend() {
        let now: jiff::Timestamp = "2026-11-22T15:02:00Z".parse().unwrap();
        let first = build(
            &run("r1", DrillOutcome::Passed, Some(70.0)),
            now,
            None,
            None,
        );
        let h1 = sha256(&to_bytes(&first));
        let second = build(
            &run("r2", DrillOutcome::Failed, None),
            now,
            Some(Previous {
                key: "lifeboat-reports/shop/orders/r1.json",
                sha256: &h1,
                sequence: 1,
                report: Some(&first),
            }),
            None,
        );
        let page = render_markdown(&second);
        for want in [
            "# DR drill report: shop/orders",
            "Run `r2` — **❌ FAILED**",
            "Failed at **check/orders-count**: `CheckFailed`: orders-count: observed 0, expected >= 1",
            "| orders\\|count | sql | ❌ Failed | 0 | >= 1 | 1.5s |",
            "| RTO | not demonstrated",
            "outcome  ✔✘",
            "RTO      ▄·",
            &h1,
            "| Restoring | 15:00:02 | 15:01:02 | 1m |",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
        let page1 = render_markdown(&first);
        assert!(page1.contains("**1m10s** (objective 5m: met)"), "{page1}");
        assert!(page1.contains("the chain starts here"));
    }
}

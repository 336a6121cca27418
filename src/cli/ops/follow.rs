//! Following a run until it finishes: a view of a Backup or Restore (phase, sources,
//! mover progress), its rendering as a one-line progress bar (on a terminal) or as plain
//! lines that say what changed (otherwise), the DrillRun phase narration, and the final
//! summaries. Everything here is pure except [`poll`], the waiting loop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use kube::Api;
use serde::de::DeserializeOwned;

use super::super::{CliError, output::bytes};
use crate::crd::backup::{Backup, Progress, SourceKind, SourcePhase};
use crate::crd::common::Failure;
use crate::crd::dr_drill::{
    CheckVerdict, DrillOutcome, DrillPhase, DrillRun, DrillRunStatus, Measurement,
};
use crate::crd::restore::Restore;
use crate::schedule::duration;

/// What a progress display needs to know about a Backup or a Restore.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunView {
    /// `Backup` or `Restore`.
    pub kind: &'static str,
    pub name: String,
    /// Pending, Running, Succeeded, PartiallyFailed, Failed (empty before the controller
    /// has seen the object).
    pub phase: String,
    pub finished: bool,
    pub succeeded: bool,
    pub sources: Vec<SourceView>,
    pub progress: BTreeMap<String, Progress>,
    /// Why the run failed as a whole.
    pub failure: Option<Failure>,
    /// Wall time, once finished.
    pub duration: Option<String>,
}

/// One source of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceView {
    pub name: String,
    pub kind: SourceKind,
    pub phase: SourcePhase,
    /// What it produced: a snapshot ID (backups) or a target (restores), and sizes.
    pub detail: String,
    pub failure: Option<Failure>,
}

impl RunView {
    pub fn of_backup(b: &Backup) -> Self {
        let st = b.status.clone().unwrap_or_default();
        let phase = st.phase.map(|p| p.as_str().to_string()).unwrap_or_default();
        RunView {
            kind: "Backup",
            name: b.metadata.name.clone().unwrap_or_default(),
            finished: st.phase.is_some_and(|p| p.is_finished()),
            succeeded: phase == "Succeeded",
            phase,
            sources: st
                .sources
                .iter()
                .map(|s| {
                    let mut detail = Vec::new();
                    if let Some(id) = &s.snapshot_id {
                        detail.push(format!("snapshot {}", short(id)));
                    }
                    if let Some(f) = s.files {
                        detail.push(format!("{f} files"));
                    }
                    if let Some(r) = s.bytes_read {
                        detail.push(format!("{} read", bytes(r)));
                    }
                    if let Some(a) = s.bytes_added {
                        detail.push(format!("{} added", bytes(a)));
                    }
                    SourceView {
                        name: s.name.clone(),
                        kind: s.kind,
                        phase: s.phase,
                        detail: detail.join(", "),
                        failure: s.failure.clone(),
                    }
                })
                .collect(),
            progress: st.progress,
            failure: st.failure,
            duration: st.duration,
        }
    }

    pub fn of_restore(r: &Restore) -> Self {
        let st = r.status.clone().unwrap_or_default();
        let phase = st.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        RunView {
            kind: "Restore",
            name: r.metadata.name.clone().unwrap_or_default(),
            finished: st.phase.is_some_and(|p| p.is_finished()),
            succeeded: phase == "Succeeded",
            phase,
            sources: st
                .sources
                .iter()
                .map(|s| {
                    let mut detail = Vec::new();
                    if let Some(t) = &s.target {
                        detail.push(format!("into {t}"));
                    }
                    if let Some(id) = &s.snapshot_id {
                        detail.push(format!("from snapshot {}", short(id)));
                    }
                    if let Some(f) = s.files {
                        detail.push(format!("{f} files"));
                    }
                    if let Some(b) = s.bytes {
                        detail.push(bytes(b));
                    }
                    SourceView {
                        name: s.name.clone(),
                        kind: s.kind,
                        phase: s.phase,
                        detail: detail.join(", "),
                        failure: s.failure.clone(),
                    }
                })
                .collect(),
            progress: st.progress,
            failure: st.failure,
            duration: st.duration,
        }
    }

    /// Bytes done over all sources, and the total when every reporting source knows its
    /// own (database dumps are streams of unknown length until they end).
    pub fn bytes(&self) -> (u64, Option<u64>) {
        let done = self.progress.values().map(|p| p.bytes_done).sum();
        let total = self
            .progress
            .values()
            .map(|p| p.bytes_total)
            .sum::<Option<u64>>();
        (done, total.filter(|t| *t > 0))
    }

    fn sources_done(&self) -> usize {
        self.sources
            .iter()
            .filter(|s| matches!(s.phase, SourcePhase::Succeeded | SourcePhase::Failed))
            .count()
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `[##########----------]` for a fraction in 0..=1.
pub fn bar(fraction: f64, width: usize) -> String {
    let f = fraction.clamp(0.0, 1.0);
    let filled = ((f * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// How far the run is, 0..=1: each source weighs the same; a finished source counts
/// whole, a running one by its mover's bytes when it knows its total (database dumps are
/// streams of unknown length until they end, so they count only when done).
pub fn fraction(v: &RunView) -> Option<f64> {
    if v.sources.is_empty() {
        return None;
    }
    let sum: f64 = v
        .sources
        .iter()
        .map(|s| match s.phase {
            SourcePhase::Succeeded | SourcePhase::Failed => 1.0,
            SourcePhase::Pending => 0.0,
            SourcePhase::Running => v
                .progress
                .get(&s.name)
                .and_then(|p| {
                    p.bytes_total
                        .filter(|t| *t > 0)
                        .map(|t| (p.bytes_done as f64 / t as f64).min(1.0))
                })
                .unwrap_or(0.0),
        })
        .sum();
    Some(sum / v.sources.len() as f64)
}

/// The one-line progress display of a terminal (redrawn in place).
pub fn progress_line(v: &RunView, elapsed: Duration) -> String {
    let phase = if v.phase.is_empty() {
        "Waiting"
    } else {
        &v.phase
    };
    let mut line = format!("{} {}  {phase:<9}", v.kind, v.name);
    if let Some(f) = fraction(v) {
        let _ = write!(line, "  {} {:>3.0}%", bar(f, 24), f * 100.0);
    }
    let (done, total) = v.bytes();
    match total {
        Some(t) => {
            let _ = write!(line, "  {} / {}", bytes(done), bytes(t));
        }
        None if done > 0 => {
            let _ = write!(line, "  {}", bytes(done));
        }
        None => {}
    }
    if !v.sources.is_empty() {
        let _ = write!(
            line,
            "  {}/{} sources done",
            v.sources_done(),
            v.sources.len()
        );
    }
    let _ = write!(line, "  {}", duration::format(elapsed));
    line
}

/// Plain-line reporting for logs and pipes: one line per change of the run's phase or a
/// source's phase, and a progress line at most every `every`.
#[derive(Debug)]
pub struct PlainReporter {
    phase: Option<String>,
    sources: BTreeMap<String, SourcePhase>,
    last_progress: Option<Duration>,
    every: Duration,
}

impl PlainReporter {
    pub fn new(every: Duration) -> Self {
        PlainReporter {
            phase: None,
            sources: BTreeMap::new(),
            last_progress: None,
            every,
        }
    }

    /// The lines to print for this observation (`elapsed` since following began).
    pub fn observe(&mut self, v: &RunView, elapsed: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let at = duration::format(elapsed);
        if self.phase.as_deref() != Some(v.phase.as_str()) && !v.phase.is_empty() {
            out.push(format!("[{at}] {} {}: {}", v.kind, v.name, v.phase));
            self.phase = Some(v.phase.clone());
        }
        for s in &v.sources {
            if self.sources.get(&s.name) == Some(&s.phase) {
                continue;
            }
            self.sources.insert(s.name.clone(), s.phase);
            if s.phase == SourcePhase::Pending {
                continue;
            }
            let mut line = format!("[{at}]   {} {}: {:?}", kind_word(s.kind), s.name, s.phase);
            if let Some(f) = &s.failure {
                let _ = write!(line, ": {}: {}", f.reason, f.message);
            } else if !s.detail.is_empty() && s.phase == SourcePhase::Succeeded {
                let _ = write!(line, " ({})", s.detail);
            }
            out.push(line);
        }
        let (done, total) = v.bytes();
        let due = self
            .last_progress
            .is_none_or(|last| elapsed.saturating_sub(last) >= self.every);
        if !v.finished && done > 0 && due {
            self.last_progress = Some(elapsed);
            out.push(match total {
                Some(t) => format!(
                    "[{at}]   progress: {} / {} ({:.0}%)",
                    bytes(done),
                    bytes(t),
                    (done as f64 / t as f64 * 100.0).min(100.0),
                ),
                None => format!("[{at}]   progress: {}", bytes(done)),
            });
        }
        out
    }
}

fn kind_word(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Volume => "volume",
        SourceKind::Database => "database",
        SourceKind::Manifests => "manifests",
    }
}

/// The summary printed when a Backup or Restore has finished.
pub fn run_summary(v: &RunView) -> String {
    let mut s = format!("{} {} {}", v.kind, v.name, v.phase);
    if let Some(d) = &v.duration {
        let _ = write!(s, " in {d}");
    }
    let failed = v
        .sources
        .iter()
        .filter(|x| x.phase == SourcePhase::Failed)
        .count();
    if failed > 0 {
        let _ = write!(s, ": {failed} of {} sources failed", v.sources.len());
    }
    s.push('\n');
    if let Some(f) = &v.failure {
        let _ = writeln!(s, "  {}: {}", f.reason, f.message);
    }
    let w = v.sources.iter().map(|x| x.name.len()).max().unwrap_or(0);
    for x in &v.sources {
        let what = match &x.failure {
            Some(f) => format!("{}: {}", f.reason, f.message),
            None => x.detail.clone(),
        };
        let _ = writeln!(
            s,
            "  {:<w$}  {:<9}  {:<9}  {what}",
            x.name,
            format!("{:?}", x.kind),
            format!("{:?}", x.phase)
        );
    }
    s
}

/// The error a failed run ends the command with: each failed source and its reason.
pub fn run_failure(v: &RunView, category: &'static str) -> CliError {
    let mut reasons: Vec<String> = v
        .sources
        .iter()
        .filter_map(|x| {
            x.failure.as_ref().map(|f| {
                format!(
                    "{} {}: {}: {}",
                    kind_word(x.kind),
                    x.name,
                    f.reason,
                    f.message
                )
            })
        })
        .collect();
    if let Some(f) = &v.failure {
        reasons.insert(0, format!("{}: {}", f.reason, f.message));
    }
    if reasons.is_empty() {
        reasons.push("no reason recorded".into());
    }
    CliError {
        category,
        message: format!("{} {} {}: {}", v.kind, v.name, v.phase, reasons.join("; ")),
    }
}

/// A DrillRun's phase line: `Restoring (Provisioning took 3.2s)`.
pub fn drill_phase_lines(prev: Option<DrillPhase>, st: &DrillRunStatus) -> Vec<String> {
    let Some(phase) = st.phase else {
        return Vec::new();
    };
    if prev == Some(phase) {
        return Vec::new();
    }
    let mut out = Vec::new();
    // Phases that ended since the last observation, with their measured length.
    for span in &st.timeline {
        let ended_now = prev.is_none_or(|p| span.phase >= p) && span.phase < phase;
        if ended_now && let Some(d) = span.duration_seconds {
            out.push(format!("  {:?} done in {}", span.phase, secs(d)));
        }
    }
    out.push(match phase {
        DrillPhase::Completed => "  Completed".to_string(),
        p => format!("  {p:?}..."),
    });
    out
}

fn secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        duration::format(Duration::from_secs_f64(s))
    }
}

fn measurement(label: &str, m: Option<&Measurement>) -> String {
    let Some(m) = m else {
        return format!("{label}  not measured");
    };
    let mut s = format!(
        "{label}  {}",
        m.measured
            .clone()
            .or(m.measured_seconds.map(secs))
            .unwrap_or_else(|| "-".into())
    );
    match (&m.objective, m.met) {
        (Some(o), Some(true)) => {
            let _ = write!(s, "  objective {o}: met");
        }
        (Some(o), Some(false)) => {
            let _ = write!(s, "  objective {o}: MISSED");
        }
        (Some(o), None) => {
            let _ = write!(s, "  objective {o}");
        }
        (None, _) => s.push_str("  (no objective)"),
    }
    if !m.breakdown.is_empty() {
        let parts: Vec<String> = m
            .breakdown
            .iter()
            .map(|(k, v)| format!("{k} {}", secs(*v)))
            .collect();
        let _ = write!(s, "  [{}]", parts.join(", "));
    }
    s
}

/// The summary of a finished DrillRun: outcome, restore point, RTO and RPO against the
/// objectives, every check, the failing step, the report.
pub fn drill_summary(run: &DrillRun) -> String {
    let st = run.status.clone().unwrap_or_default();
    let name = run.metadata.name.clone().unwrap_or_default();
    let outcome = match st.outcome {
        Some(DrillOutcome::Passed) => "Passed",
        Some(DrillOutcome::Failed) => "FAILED",
        Some(DrillOutcome::Cancelled) => "Cancelled",
        None => "no outcome",
    };
    let mut s = format!("DrillRun {name}: {outcome}\n");
    if let Some(rp) = &st.restore_point {
        let _ = writeln!(s, "  restore point  {} ({})", rp.backup, rp.time.0);
    }
    if let Some(ns) = &st.sandbox_namespace {
        let _ = writeln!(s, "  sandbox        {ns}");
    }
    let _ = writeln!(s, "  {}", measurement("RTO", st.rto.as_ref()));
    let _ = writeln!(s, "  {}", measurement("RPO", st.rpo.as_ref()));
    if !st.checks.is_empty() {
        let _ = writeln!(s, "  checks:");
        let w = st.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &st.checks {
            let verdict = match c.result {
                CheckVerdict::Passed => "Passed",
                CheckVerdict::Failed => "FAILED",
                CheckVerdict::Error => "ERROR",
            };
            let mut line = format!("    {:<w$}  {:<9}  {verdict:<6}", c.name, c.type_);
            if let Some(o) = &c.observed {
                let _ = write!(line, "  observed {o}");
            }
            if let Some(e) = &c.expected {
                let _ = write!(line, ", expected {e}");
            }
            if c.result != CheckVerdict::Passed
                && let Some(m) = &c.message
            {
                let _ = write!(line, ": {m}");
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
    }
    if let Some(f) = &st.failure {
        let _ = writeln!(
            s,
            "  failed at      {}: {}: {}",
            f.step, f.failure.reason, f.failure.message
        );
    }
    if let Some(r) = &st.report {
        let _ = writeln!(s, "  report         {} (sha256 {})", r.location, r.sha256);
    }
    s
}

/// Polls `name` in `api` every `interval` and hands each observation to `observe`, which
/// returns `Some(result)` to stop. Fails on a timeout, when the object disappears, or on
/// an API error (explained by `explain`).
pub async fn poll<K, T, F>(
    api: &Api<K>,
    name: &str,
    interval: Duration,
    timeout: Option<Duration>,
    mut observe: F,
) -> Result<Result<T, kube::Error>, CliError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
    F: FnMut(&K, Duration) -> Option<T>,
{
    let start = tokio::time::Instant::now();
    loop {
        let obj = match api.get(name).await {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(t) = observe(&obj, start.elapsed()) {
            return Ok(Ok(t));
        }
        if let Some(limit) = timeout
            && start.elapsed() >= limit
        {
            return Err(CliError {
                category: "WaitTimeout",
                message: format!(
                    "gave up waiting after {} (--timeout); {name} keeps running: check it with \
                     `kubectl get {} {name}` or `lifeboat status`",
                    duration::format(limit),
                    K::kind(&Default::default()).to_lowercase(),
                ),
            });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::backup::{BackupPhase, BackupSpec, BackupStatus, SourceResult};
    use crate::crd::dr_drill::{CheckResult, DrillFailure, DrillRestorePoint, PhaseSpan};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn backup(
        phase: BackupPhase,
        sources: Vec<SourceResult>,
        progress: &[(&str, u64, Option<u64>)],
    ) -> Backup {
        let mut b = Backup::new("shop-manual-20260304050607", BackupSpec::default());
        b.status = Some(BackupStatus {
            phase: Some(phase),
            sources,
            progress: progress
                .iter()
                .map(|(n, d, t)| {
                    (
                        n.to_string(),
                        Progress {
                            bytes_done: *d,
                            bytes_total: *t,
                            ..Progress::default()
                        },
                    )
                })
                .collect(),
            duration: phase.is_finished().then(|| "1m32s".to_string()),
            ..BackupStatus::default()
        });
        b
    }

    fn src(name: &str, kind: SourceKind, phase: SourcePhase) -> SourceResult {
        SourceResult {
            name: name.into(),
            kind,
            phase,
            ..SourceResult::default()
        }
    }

    #[test]
    fn bars_fill_proportionally_and_clamp() {
        assert_eq!(bar(0.0, 10), "[----------]");
        assert_eq!(bar(0.5, 10), "[#####-----]");
        assert_eq!(bar(1.0, 10), "[##########]");
        assert_eq!(bar(1.7, 4), "[####]");
        assert_eq!(bar(-1.0, 4), "[----]");
    }

    #[test]
    fn the_terminal_line_sums_progress_over_sources() {
        let b = backup(
            BackupPhase::Running,
            vec![
                src("data", SourceKind::Volume, SourcePhase::Succeeded),
                src("logs", SourceKind::Volume, SourcePhase::Running),
                src("pg", SourceKind::Database, SourcePhase::Pending),
            ],
            &[
                ("data", 3 << 20, Some(3 << 20)),
                ("logs", 1 << 20, Some(5 << 20)),
            ],
        );
        let line = progress_line(&RunView::of_backup(&b), Duration::from_secs(75));
        // (1 + 1/5 + 0) / 3 sources = 40 %.
        assert_eq!(
            line,
            "Backup shop-manual-20260304050607  Running    [##########--------------]  40%  \
             4.00 MiB / 8.00 MiB  1/3 sources done  1m15s"
        );
    }

    #[test]
    fn streams_of_unknown_length_count_when_done() {
        let b = backup(
            BackupPhase::Running,
            vec![
                src("pg", SourceKind::Database, SourcePhase::Running),
                src("data", SourceKind::Volume, SourcePhase::Succeeded),
            ],
            &[("pg", 2048, None), ("data", 1024, Some(1024))],
        );
        let line = progress_line(&RunView::of_backup(&b), Duration::from_secs(3));
        assert!(
            line.ends_with("[############------------]  50%  3.00 KiB  1/2 sources done  3s"),
            "{line}"
        );
        let waiting = progress_line(
            &RunView::of_backup(&backup(BackupPhase::Pending, vec![], &[])),
            Duration::ZERO,
        );
        assert_eq!(waiting, "Backup shop-manual-20260304050607  Pending    0s");
    }

    #[test]
    fn plain_lines_report_changes_only() {
        let mut r = PlainReporter::new(Duration::from_secs(10));
        let running = backup(
            BackupPhase::Running,
            vec![src("data", SourceKind::Volume, SourcePhase::Running)],
            &[("data", 10, Some(100))],
        );
        let v = RunView::of_backup(&running);
        let first = r.observe(&v, Duration::from_secs(1));
        assert_eq!(
            first,
            vec![
                "[1s] Backup shop-manual-20260304050607: Running",
                "[1s]   volume data: Running",
                "[1s]   progress: 10 B / 100 B (10%)",
            ]
        );
        assert!(
            r.observe(&v, Duration::from_secs(2)).is_empty(),
            "nothing new"
        );
        assert_eq!(
            r.observe(&v, Duration::from_secs(12)),
            vec!["[12s]   progress: 10 B / 100 B (10%)"]
        );
        let mut failed = src("data", SourceKind::Volume, SourcePhase::Failed);
        failed.failure = Some(Failure {
            reason: "SnapshotFailed".into(),
            message: "no VolumeSnapshotClass".into(),
        });
        let done = backup(BackupPhase::Failed, vec![failed], &[]);
        assert_eq!(
            r.observe(&RunView::of_backup(&done), Duration::from_secs(13)),
            vec![
                "[13s] Backup shop-manual-20260304050607: Failed",
                "[13s]   volume data: Failed: SnapshotFailed: no VolumeSnapshotClass",
            ]
        );
    }

    #[test]
    fn a_partial_failure_names_each_failed_source() {
        let mut ok = src("data", SourceKind::Volume, SourcePhase::Succeeded);
        ok.snapshot_id = Some("0123456789abcdef".into());
        ok.bytes_added = Some(2048);
        let mut bad = src("pg", SourceKind::Database, SourcePhase::Failed);
        bad.failure = Some(Failure {
            reason: "DumpFailed".into(),
            message: "pg_dump: connection refused".into(),
        });
        let b = backup(BackupPhase::PartiallyFailed, vec![ok, bad], &[]);
        let v = RunView::of_backup(&b);
        assert!(v.finished && !v.succeeded);
        let summary = run_summary(&v);
        assert_eq!(
            summary,
            "Backup shop-manual-20260304050607 PartiallyFailed in 1m32s: 1 of 2 sources failed\n  \
             data  Volume     Succeeded  snapshot 01234567, 2.00 KiB added\n  \
             pg    Database   Failed     DumpFailed: pg_dump: connection refused\n"
        );
        let e = run_failure(&v, "BackupFailed");
        assert_eq!(e.exit_code(), 64);
        assert_eq!(
            e.message,
            "Backup shop-manual-20260304050607 PartiallyFailed: database pg: DumpFailed: pg_dump: \
             connection refused"
        );
    }

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn drill_phases_are_narrated_with_their_lengths() {
        let span = |phase, d: f64| PhaseSpan {
            phase,
            start_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                at("2026-03-04T05:00:00Z").0,
            ),
            end_time: None,
            duration_seconds: Some(d),
        };
        let st = DrillRunStatus {
            phase: Some(DrillPhase::Verifying),
            timeline: vec![
                span(DrillPhase::Provisioning, 2.5),
                span(DrillPhase::Restoring, 61.0),
            ],
            ..DrillRunStatus::default()
        };
        assert_eq!(
            drill_phase_lines(Some(DrillPhase::Provisioning), &st),
            vec![
                "  Provisioning done in 2.5s",
                "  Restoring done in 1m1s",
                "  Verifying..."
            ]
        );
        assert!(drill_phase_lines(Some(DrillPhase::Verifying), &st).is_empty());
    }

    #[test]
    fn drill_summary_shows_objectives_checks_and_the_failing_step() {
        let mut run = DrillRun::new("orders-drill-manual-1", Default::default());
        run.status = Some(DrillRunStatus {
            phase: Some(DrillPhase::Completed),
            outcome: Some(DrillOutcome::Failed),
            restore_point: Some(DrillRestorePoint {
                backup: "orders-202603040500".into(),
                time: at("2026-03-04T05:00:00Z"),
                snapshots: Default::default(),
                candidates: None,
                from_store: None,
            }),
            rto: Some(Measurement {
                measured: Some("4m12s".into()),
                measured_seconds: Some(252.0),
                objective: Some("30m".into()),
                met: Some(true),
                ..Measurement::default()
            }),
            rpo: Some(Measurement {
                measured: Some("2h".into()),
                objective: Some("1h".into()),
                met: Some(false),
                ..Measurement::default()
            }),
            checks: vec![
                CheckResult {
                    name: "orders".into(),
                    type_: "sql".into(),
                    result: CheckVerdict::Failed,
                    observed: Some("0".into()),
                    expected: Some(">= 1000".into()),
                    message: Some("too few rows".into()),
                    ..CheckResult::default()
                },
                CheckResult {
                    name: "files".into(),
                    type_: "files".into(),
                    result: CheckVerdict::Passed,
                    ..CheckResult::default()
                },
            ],
            failure: Some(DrillFailure {
                step: "check/orders".into(),
                failure: Failure {
                    reason: "CheckFailed".into(),
                    message: "orders: observed 0".into(),
                },
            }),
            ..DrillRunStatus::default()
        });
        assert_eq!(
            drill_summary(&run),
            "DrillRun orders-drill-manual-1: FAILED\n  \
             restore point  orders-202603040500 (2026-03-04T05:00:00Z)\n  \
             RTO  4m12s  objective 30m: met\n  \
             RPO  2h  objective 1h: MISSED\n  \
             checks:\n    \
             orders  sql        FAILED  observed 0, expected >= 1000: too few rows\n    \
             files   files      Passed\n  \
             failed at      check/orders: CheckFailed: orders: observed 0\n"
        );
    }
}

//! The evidence report as a page people read: one self-contained HTML document per run
//! (inline CSS, inline SVG charts, no script, no font, no image, nothing fetched: a
//! Content-Security-Policy meta tag forbids every remote load), rendered from the JSON
//! report by a pure function. It shows the outcome, the figures against their
//! objectives, the KPIs, the RTO and RPO of the last runs, the timeline, every check, the
//! restore point, the chain and signature the report claims, and what the run
//! demonstrates for the controls auditors ask about.
//!
//! The page states what the report says; it cannot vouch for itself. Its digest is in the
//! report (`html.sha256`), which the installation's signature covers; `lifeboat drill
//! verify-chain` and `lifeboat evidence verify` check both.

use std::fmt::Write as _;

use super::kpi::{Direction, DrillKpis};
use super::measure::format_seconds;
use super::report::{Report, TrendPoint, point_of};
use crate::crd::backup::Trigger;
use crate::crd::dr_drill::{CheckVerdict, DrillOutcome, Measurement};

/// Runs in the page's charts, this one included.
pub const CHART_RUNS: usize = 30;

/// The policy of every page: nothing but its own inline styles.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'";

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:1.5rem;margin:0 0 4px}h2{font-size:1.15rem;margin:28px 0 8px;border-bottom:1px solid #d6d9df;padding-bottom:4px}
.sub{color:#5a6272;margin:0 0 16px}
.badge{display:inline-block;padding:4px 12px;border-radius:4px;font-weight:700;color:#fff}
.passed{background:#1f7a3a}.failed{background:#b42318}.unknown{background:#6b7280}
.failure{background:#fdecea;border-left:4px solid #b42318;padding:8px 12px;margin:12px 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e4e6ea;vertical-align:top}
th{background:#eef0f3;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1f7a3a;font-weight:600}.bad{color:#b42318;font-weight:600}.warn{color:#a15c00;font-weight:600}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
svg{background:#fff;border:1px solid #e4e6ea;display:block;margin:8px 0}
.chart text{font-size:11px;fill:#5a6272}
.note{color:#5a6272;font-size:.85rem}
footer{margin-top:32px;color:#5a6272;font-size:.8rem}
";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), format_seconds)
}

fn outcome_badge(o: Option<DrillOutcome>) -> &'static str {
    match o {
        Some(DrillOutcome::Passed) => "<span class=\"badge passed\">PASSED</span>",
        Some(DrillOutcome::Failed) => "<span class=\"badge failed\">FAILED</span>",
        Some(DrillOutcome::Cancelled) => "<span class=\"badge unknown\">CANCELLED</span>",
        None => "<span class=\"badge unknown\">UNKNOWN</span>",
    }
}

fn measurement(m: Option<&Measurement>, none: &str) -> String {
    let Some(m) = m else {
        return esc(none);
    };
    let measured = esc(&m
        .measured
        .clone()
        .unwrap_or_else(|| secs(m.measured_seconds)));
    match (&m.objective, m.met) {
        (Some(o), Some(true)) => format!(
            "<strong>{measured}</strong> — objective {}: <span class=\"ok\">met</span>",
            esc(o)
        ),
        (Some(o), Some(false)) => format!(
            "<strong>{measured}</strong> — objective {}: <span class=\"bad\">missed</span>",
            esc(o)
        ),
        _ => format!("<strong>{measured}</strong> (no objective)"),
    }
}

fn objective_seconds(o: Option<&String>) -> Option<f64> {
    o.and_then(|s| crate::schedule::duration::parse(s).ok())
        .map(|d| d.as_secs_f64())
}

/// A line chart of one figure over runs, with the objective as a dashed line. Runs
/// without a value (a failed run demonstrates no RTO) are marked on the axis.
fn chart(
    title: &str,
    points: &[TrendPoint],
    value: fn(&TrendPoint) -> Option<f64>,
    objective: Option<f64>,
) -> String {
    const W: f64 = 900.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 24.0;
    const BOTTOM: f64 = 30.0;
    let values: Vec<Option<f64>> = points.iter().map(value).collect();
    let max = values
        .iter()
        .flatten()
        .copied()
        .chain(objective)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let n = points.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + (W - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / max);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {W} {H}\" width=\"100%\">\
         <title>{t}</title>\
         <text x=\"{LEFT}\" y=\"14\" font-weight=\"600\">{t}</text>\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#9aa1ad\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#9aa1ad\"/>\
         <text x=\"{lx}\" y=\"{yt}\" text-anchor=\"end\">{top}</text>\
         <text x=\"{lx}\" y=\"{b}\" text-anchor=\"end\">0</text>",
        t = esc(title),
        b = H - BOTTOM,
        r = W - RIGHT,
        lx = LEFT - 6.0,
        yt = TOP + 4.0,
        top = esc(&format_seconds(max)),
    );
    if let Some(o) = objective {
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yo:.1}\" x2=\"{r}\" y2=\"{yo:.1}\" stroke=\"#a15c00\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{r}\" y=\"{ty:.1}\" text-anchor=\"end\">objective {ov}</text>",
            yo = y(o),
            ty = y(o) - 4.0,
            r = W - RIGHT,
            ov = esc(&format_seconds(o)),
        );
    }
    let path: Vec<String> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
        .collect();
    if path.len() > 1 {
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
    }
    for (i, (p, v)) in points.iter().zip(&values).enumerate() {
        let when = p.start_time.as_ref().map_or(String::new(), |t| {
            t.0.strftime("%Y-%m-%d %H:%M").to_string()
        });
        let failed = p.outcome != Some(DrillOutcome::Passed);
        match v {
            Some(v) => {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{} {}: {}</title></circle>",
                    x(i),
                    y(*v),
                    if failed { "#b42318" } else { "#2563eb" },
                    esc(&p.run),
                    esc(&when),
                    esc(&format_seconds(*v))
                );
            }
            // A cancelled run measured nothing and failed nothing: a grey dash.
            None if p.outcome == Some(DrillOutcome::Cancelled) => {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#667085\">–<title>{} {}: cancelled</title></text>",
                    x(i),
                    H - BOTTOM - 4.0,
                    esc(&p.run),
                    esc(&when)
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#b42318\">✘<title>{} {}: no value (failed)</title></text>",
                    x(i),
                    H - BOTTOM - 4.0,
                    esc(&p.run),
                    esc(&when)
                );
            }
        }
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let day = |p: &TrendPoint| {
            p.start_time
                .as_ref()
                .map_or(String::new(), |t| t.0.strftime("%Y-%m-%d").to_string())
        };
        let _ = write!(
            s,
            "<text x=\"{LEFT}\" y=\"{yb}\">{}</text><text x=\"{r}\" y=\"{yb}\" text-anchor=\"end\">{} (this run)</text>",
            esc(&day(first)),
            esc(&day(last)),
            yb = H - 8.0,
            r = W - RIGHT,
        );
    }
    s.push_str("</svg>");
    s
}

fn timeline(r: &Report) -> String {
    let mut s = String::new();
    let Some(t0) = r.timeline.first().map(|p| p.start_time.0) else {
        return "<p>No phases recorded.</p>".into();
    };
    let end = r
        .timeline
        .iter()
        .filter_map(|p| p.end_time.as_ref().map(|t| t.0))
        .max()
        .unwrap_or(t0);
    let total = super::measure::seconds_between(t0, end).max(1.0);
    const W: f64 = 900.0;
    const LABEL: f64 = 130.0;
    const ROW: f64 = 22.0;
    let h = ROW * r.timeline.len() as f64 + 8.0;
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"Timeline\" viewBox=\"0 0 {W} {h}\" width=\"100%\"><title>Timeline</title>"
    );
    for (i, p) in r.timeline.iter().enumerate() {
        let from = super::measure::seconds_between(t0, p.start_time.0);
        let dur = p.duration_seconds.unwrap_or(0.0);
        let x = LABEL + (W - LABEL - 90.0) * from / total;
        let w = ((W - LABEL - 90.0) * dur / total).max(2.0);
        let y = 4.0 + ROW * i as f64;
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{ty}\">{phase:?}</text><rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"14\" fill=\"#2563eb\" rx=\"2\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\">{d}</text>",
            ty = y + 11.0,
            phase = p.phase,
            tx = x + w + 6.0,
            d = esc(&if p.end_time.is_some() {
                secs(p.duration_seconds)
            } else {
                "(this report)".into()
            }),
        );
    }
    s.push_str("</svg>");
    s.push_str(
        "<table><tr><th>Phase</th><th>Start (UTC)</th><th>End (UTC)</th><th>Duration</th></tr>",
    );
    for p in &r.timeline {
        let _ = write!(
            s,
            "<tr><td>{:?}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            p.phase,
            esc(&p.start_time.0.to_string()),
            esc(&p
                .end_time
                .as_ref()
                .map_or("(this report)".into(), |t| t.0.to_string())),
            esc(&secs(p.duration_seconds))
        );
    }
    s.push_str("</table>");
    s
}

fn kpi_table(k: &DrillKpis) -> String {
    let mut s = String::from(
        "<table><tr><th>Window</th><th>Runs</th><th>Passed</th><th>Failed</th><th>Pass rate</th>\
         <th>RTO p50</th><th>RTO p95</th><th>RTO trend</th><th>RPO p95</th></tr>",
    );
    for w in &k.windows {
        let trend = match &w.rto_trend {
            None => "—".to_string(),
            Some(t) => {
                let (class, word) = match t.direction {
                    Direction::Rising => ("bad", "rising"),
                    Direction::Falling => ("ok", "falling"),
                    Direction::Steady => ("", "steady"),
                };
                format!(
                    "<span class=\"{class}\">{word}</span> ({:+.0} %: {} → {})",
                    t.change * 100.0,
                    esc(&format_seconds(t.earlier_p50_seconds)),
                    esc(&format_seconds(t.later_p50_seconds))
                )
            }
        };
        let _ = write!(
            s,
            "<tr><td>last {} days</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{trend}</td><td class=\"num\">{}</td></tr>",
            w.days,
            w.runs,
            w.passed,
            w.failed,
            w.pass_rate
                .map_or("—".into(), |r| format!("{:.0} %", r * 100.0)),
            esc(&secs(w.rto_p50_seconds)),
            esc(&secs(w.rto_p95_seconds)),
            esc(&secs(w.rpo_p95_seconds)),
        );
    }
    s.push_str("</table>");
    match &k.restore_points {
        Some(c) => {
            let _ = write!(
                s,
                "<p>{} of {} retained restore points verified by a passed run ({:?}).</p>",
                c.verified, c.retained, c.source
            );
        }
        None => s.push_str(
            "<p class=\"note\">The share of retained restore points verified needs the repository's catalog; \
             <code>lifeboat status</code> shows it from what the cluster knows.</p>",
        ),
    }
    s
}

fn controls(r: &Report) -> String {
    let passed = r.outcome == Some(DrillOutcome::Passed);
    let when = r.start_time.as_ref().map_or("(unknown date)".into(), |t| {
        t.0.strftime("%Y-%m-%d").to_string()
    });
    let point = r
        .restore_point
        .as_ref()
        .map_or("a restore point".to_string(), |p| {
            format!("the restore point of Backup {} ({})", p.backup, p.time.0)
        });
    let result = if passed {
        format!(
            "the restore succeeded and all {} checks passed",
            r.checks.len()
        )
    } else {
        "the test failed (see the failure above): the record shows a failed test, not a working recovery".into()
    };
    let rto = r
        .rto
        .as_ref()
        .and_then(|m| m.measured.clone())
        .unwrap_or_else(|| "no RTO (not demonstrated)".into());
    let rpo = r
        .rpo
        .as_ref()
        .and_then(|m| m.measured.clone())
        .unwrap_or_else(|| "no RPO".into());
    let rows = [
        (
            "ISO/IEC 27001:2022 Annex A 8.13 (information backup)",
            format!(
                "Backup copies are tested: on {when}, {point} was restored into an isolated namespace and checked; {result}."
            ),
            "That the backup policy covers all information that needs protecting, and that the policy is agreed: these are the organisation's documents.",
        ),
        (
            "SOC 2 (2017 TSC) A1.3 (recovery plan testing)",
            format!(
                "A recovery procedure for this workload was executed end to end and timed: RTO {rto}, RPO {rpo}, against the objectives shown above."
            ),
            "That the entity's whole recovery plan (people, communication, other systems) was tested.",
        ),
        (
            "DORA (EU 2022/2554) Art. 11 (response and recovery)",
            format!(
                "A recovery of this workload was exercised and its recovery time measured ({rto}) against the drill's objective."
            ),
            "Business-continuity scenarios, crisis communication and the other Art. 11 duties beyond this workload's recovery.",
        ),
        (
            "DORA Art. 12 (backup policies, restoration and recovery), 12(2) and 12(3)",
            format!(
                "The backup was restored and verified on {when} (periodic testing when the drill runs on a schedule, which the run's trigger shows); the restore went into a drill sandbox namespace with a deny-all network policy, logically segregated from the source."
            ),
            "Physical segregation: the sandbox is in the same cluster as the source.",
        ),
        (
            "HIPAA 45 CFR 164.308(a)(7)(ii)(D) (testing and revision procedures)",
            format!(
                "A periodic test of this workload's data backup and restoration took place on {when}; {result}."
            ),
            "The revision of the contingency plan, a human process; whether the workload holds ePHI.",
        ),
    ];
    let mut s = String::from(
        "<table><tr><th>Control</th><th>What this run demonstrates</th><th>What it does not</th></tr>",
    );
    for (c, shows, not) in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c),
            esc(&shows),
            esc(not)
        );
    }
    s.push_str(
        "</table><p class=\"note\">This maps what the run's evidence shows to controls auditors ask about. \
         It is not a statement of compliance: an assessor decides what the evidence supports.</p>",
    );
    s
}

/// Renders the page of a report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let title = format!("DR drill report: {}/{} — {}", r.namespace, r.drill, r.run);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{CSS}</style></head><body><main>\n",
        esc(&title)
    );
    let _ = writeln!(
        s,
        "<h1>DR drill report: {}/{}</h1><p class=\"sub\">Run <code>{}</code>{} {}</p>",
        esc(&r.namespace),
        esc(&r.drill),
        esc(&r.run),
        r.sequence
            .map_or(String::new(), |n| format!(", report #{n} of the drill")),
        outcome_badge(r.outcome)
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(
            s,
            "<div class=\"failure\">Failed at <strong>{}</strong>: <code>{}</code> {}</div>",
            esc(&f.step),
            esc(&f.failure.reason),
            esc(&f.failure.message)
        );
    }

    s.push_str("<h2>Summary</h2><table>");
    let mut row = |k: &str, v: String| {
        let _ = write!(s, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    };
    row(
        "Drill",
        format!("<code>{}/{}</code>", esc(&r.namespace), esc(&r.drill)),
    );
    if let Some(p) = &r.policy {
        row("Backup policy", format!("<code>{}</code>", esc(p)));
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
    row(
        "Started",
        format!(
            "{} by {}",
            esc(&r
                .start_time
                .as_ref()
                .map_or("—".into(), |t| t.0.to_string())),
            esc(&trigger)
        ),
    );
    if let Some(rp) = &r.restore_point {
        row(
            "Restore point",
            format!(
                "Backup <code>{}</code> of {}",
                esc(&rp.backup),
                esc(&rp.time.0.to_string())
            ),
        );
    }
    if let Some(ns) = &r.sandbox_namespace {
        row("Sandbox", format!("<code>{}</code>", esc(ns)));
    }
    row(
        "RTO",
        measurement(
            r.rto.as_ref(),
            "not demonstrated (the recovery did not succeed)",
        ),
    );
    let mut rpo = measurement(r.rpo.as_ref(), "not measured");
    if let Some(m) = &r.rpo
        && !m.breakdown.is_empty()
    {
        let parts: Vec<String> = m
            .breakdown
            .iter()
            .map(|(k, v)| format!("{} {}", esc(k), esc(&format_seconds(*v))))
            .collect();
        rpo = format!("{rpo}; {}", parts.join(", "));
    }
    row("RPO", rpo);
    row("Generated", esc(&r.generated_at));
    s.push_str("</table>\n");

    if let Some(k) = &r.kpis {
        s.push_str("<h2>Key figures</h2>");
        s.push_str(&kpi_table(k));
        s.push('\n');
    }

    let mut points = r.trend.clone();
    points.push(point_of(r));
    let skip = points.len().saturating_sub(CHART_RUNS);
    let points = points.split_off(skip);
    let _ = write!(s, "<h2>RTO and RPO of the last {} runs</h2>", points.len());
    s.push_str(&chart(
        "RTO (restore start to last check passing)",
        &points,
        |p| p.rto_seconds,
        objective_seconds(r.objectives.rto.as_ref()),
    ));
    s.push_str(&chart(
        "RPO (age of the restored data)",
        &points,
        |p| p.rpo_seconds,
        objective_seconds(r.objectives.rpo.as_ref()),
    ));
    s.push_str("<p class=\"note\">Oldest to newest; ✘ marks a run without a value (a failed run demonstrates no RTO).</p>\n");

    s.push_str("<h2>Timeline</h2>");
    s.push_str(&timeline(r));
    s.push('\n');

    s.push_str("<h2>Checks</h2>");
    if r.checks.is_empty() {
        s.push_str("<p>No checks ran.</p>");
    } else {
        s.push_str("<table><tr><th>Check</th><th>Type</th><th>Result</th><th>Observed</th><th>Expected</th><th>Duration</th></tr>");
        for c in &r.checks {
            let (class, word) = match c.result {
                CheckVerdict::Passed => ("ok", "Passed"),
                CheckVerdict::Failed => ("bad", "Failed"),
                CheckVerdict::Error => ("warn", "Error"),
            };
            let observed = match (&c.observed, &c.message) {
                (Some(o), Some(m)) => format!("{o} ({m})"),
                (Some(o), None) => o.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "—".into(),
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&c.name),
                esc(&c.type_),
                esc(&observed),
                esc(c.expected.as_deref().unwrap_or("—")),
                esc(&secs(c.duration_seconds))
            );
        }
        s.push_str("</table>");
    }
    s.push('\n');

    if let Some(i) = &r.immutability {
        use crate::crd::dr_drill::ImmutabilityResult as R;
        let class = match i.result {
            R::Refused => "ok",
            R::Skipped => "warn",
            R::Deleted | R::Unversioned | R::Error => "bad",
        };
        let _ = writeln!(
            s,
            "<h2>Immutability</h2><table><tr><th>Result</th><th>Object</th><th>Version</th><th>Code</th><th>What happened</th></tr><tr><td class=\"{class}\">{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            i.result,
            esc(i.object.as_deref().unwrap_or("—")),
            esc(i.version.as_deref().unwrap_or("—")),
            esc(i.code.as_deref().unwrap_or("—")),
            esc(i.message.as_deref().unwrap_or("—"))
        );
    }

    s.push_str("<h2>Restore point</h2>");
    match &r.restore_point {
        None => s.push_str("<p>No restore point was chosen.</p>"),
        Some(rp) => {
            let _ = write!(
                s,
                "<p>Backup <code>{}</code>, restore point time {}.</p>",
                esc(&rp.backup),
                esc(&rp.time.0.to_string())
            );
            if !rp.snapshots.is_empty() {
                s.push_str("<table><tr><th>Source</th><th>Snapshot</th></tr>");
                for (k, v) in &rp.snapshots {
                    let _ = write!(
                        s,
                        "<tr><td>{}</td><td><code>{}</code></td></tr>",
                        esc(k),
                        esc(v)
                    );
                }
                s.push_str("</table>");
            }
        }
    }
    s.push('\n');

    s.push_str("<h2>Chain and signature</h2><table>");
    let mut row = |k: &str, v: String| {
        let _ = write!(s, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    };
    row(
        "Place in the chain",
        r.sequence.map_or(
            "not numbered (written before sequence numbers)".into(),
            |n| format!("report #{n}"),
        ),
    );
    row(
        "Previous report",
        match (&r.previous_report, &r.previous_sha256) {
            (Some(k), Some(h)) => {
                format!("<code>{}</code><br>SHA-256 <code>{}</code>", esc(k), esc(h))
            }
            _ => "none: the chain starts here".into(),
        },
    );
    row(
        "Signer",
        match &r.signer {
            Some(g) => format!(
                "{} key <code>{}</code> (public key <code>{}</code>); the signature is in the file <code>.json.sig</code> next to the report",
                esc(&g.algorithm),
                esc(&g.key_id),
                esc(&g.public_key)
            ),
            None => "not named in the report: the installation signs it in <code>.json.sig</code> next to the report".into(),
        },
    );
    s.push_str("</table>");
    let _ = writeln!(
        s,
        "<p class=\"note\">This page shows what the report claims. Verify the signatures, the chain and its \
         anchor with <code>lifeboat drill verify-chain {} -n {}</code>, or offline from an exported bundle with \
         <code>lifeboat evidence verify BUNDLE --public-key FILE</code>.</p>",
        esc(&r.drill),
        esc(&r.namespace)
    );

    s.push_str("<h2>Controls</h2>");
    s.push_str(&controls(r));
    let _ = write!(
        s,
        "\n<footer>Generated {} by Lifeboat from the JSON report ({}).</footer>\n</main></body></html>\n",
        esc(&r.generated_at),
        esc(super::report::REPORT_FORMAT)
    );
    // One table row per line: readable snapshots and diffs.
    s.replace("</tr>", "</tr>\n")
}

#[cfg(test)]
mod tests;

//! Tests of the metrics: names, units, labels, series removed with their owners.

use super::*;

#[test]
fn exposition_has_prefixed_names_and_units() {
    let m = Metrics::new();
    m.observe_reconcile("backuppolicy", Duration::from_millis(3));
    m.observe_reconcile_error("backuppolicy", "StoreNotFound");
    let l = PolicyLabels::new("shop", "orders");
    m.record_policy(
        &l,
        PolicyGauges {
            rpo_seconds: Some(42.0),
            ..Default::default()
        },
        false,
    );
    let text = m.encode();
    assert!(
        text.contains(r#"lifeboat_reconcile_total{controller="backuppolicy"} 1"#),
        "{text}"
    );
    assert!(text.contains(
        r#"lifeboat_reconcile_errors_total{controller="backuppolicy",category="StoreNotFound"} 1"#
    ));
    assert!(text.contains(r#"lifeboat_policy_rpo_seconds{namespace="shop",policy="orders"} 42.0"#));
    assert!(text.contains("lifeboat_reconcile_duration_seconds_bucket"));
    m.forget_policy("shop", "orders");
    assert!(!m.encode().contains(r#"policy="orders""#));
}

#[test]
fn a_sweep_removes_every_series_of_objects_gone_and_keeps_the_rest() {
    let m = Metrics::new();
    for name in ["gone", "kept"] {
        let l = PolicyLabels::new("shop", name);
        m.record_policy(
            &l,
            PolicyGauges {
                rpo_seconds: Some(1.0),
                ..Default::default()
            },
            false,
        );
        for result in ["Succeeded", "PartiallyFailed"] {
            m.record_backup_run(
                &l,
                FinishedRun {
                    result,
                    duration_seconds: None,
                    bytes_read_added: Some((7, 3)),
                    failure_reasons: vec!["DumpFailed".into()],
                },
            );
        }
        let d = DrillLabels::new("shop", &format!("{name}-drill"));
        m.record_drill(
            &d,
            DrillGauges {
                rto_seconds: Some(3.0),
                ..Default::default()
            },
            Some("Failed"),
        );
    }
    let text = m.encode();
    for series in [
        r#"lifeboat_backup_runs_total{namespace="shop",policy="gone",result="PartiallyFailed"} 1"#,
        r#"lifeboat_backup_failures_total{namespace="shop",policy="gone",reason="DumpFailed"} 2"#,
        r#"lifeboat_drill_runs_total{namespace="shop",drill="gone-drill",outcome="Failed"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    let forgotten = m.sweep(|_, p| p != "gone", |_, d| d != "gone-drill");
    assert_eq!(forgotten, 2);
    let text = m.encode();
    assert!(!text.contains("gone"), "{text}");
    // rpo, read, added, two results, one reason
    assert_eq!(text.matches(r#"policy="kept""#).count(), 6, "{text}");
    assert_eq!(text.matches(r#"drill="kept-drill""#).count(), 2, "{text}");
    assert_eq!(m.sweep(|_, _| true, |_, _| true), 0);
}

#[test]
fn drill_kpis_are_gauges_per_window_and_an_empty_window_has_no_pass_rate() {
    use crate::crd::dr_drill::DrillOutcome;
    use crate::drill::kpi::{self, Retained, Sample};
    let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let day = jiff::SignedDuration::from_hours(24);
    let run = |days_ago: i64, passed: bool, rto: f64| Sample {
        start: now - day * days_ago as i32,
        outcome: Some(if passed {
            DrillOutcome::Passed
        } else {
            DrillOutcome::Failed
        }),
        rto_seconds: passed.then_some(rto),
        rpo_seconds: None,
        restore_point: None,
    };
    // (samples, 30d: runs, pass rate, RTO p95; 90d: runs, pass rate)
    let table = [
        (
            vec![run(1, true, 60.0), run(2, false, 0.0), run(40, true, 90.0)],
            (2.0, Some(0.5), Some(60.0)),
            (3.0, Some(2.0 / 3.0)),
        ),
        // Runs only older than 30 days: the 30-day pass rate and RTO are absent.
        (
            vec![run(40, true, 90.0)],
            (0.0, None, None),
            (1.0, Some(1.0)),
        ),
    ];
    let m = Metrics::new();
    let l = DrillLabels::new("shop", "orders");
    for (samples, (runs30, rate30, rto30), (runs90, rate90)) in table {
        let k = kpi::compute(&samples, now, &Retained::Unknown);
        m.record_drill(
            &l,
            DrillGauges {
                kpis: Some(k.windows),
                ..Default::default()
            },
            None,
        );
        let text = m.encode();
        let value = |name: &str, window: &str| -> Option<f64> {
            let prefix = format!(r#"{name}{{namespace="shop",drill="orders",window="{window}"}} "#);
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .map(|v| v.parse().unwrap())
        };
        assert_eq!(
            value("lifeboat_drill_window_runs", "30d"),
            Some(runs30),
            "{text}"
        );
        assert_eq!(value("lifeboat_drill_pass_rate", "30d"), rate30, "{text}");
        assert_eq!(
            value("lifeboat_drill_rto_p95_seconds", "30d"),
            rto30,
            "{text}"
        );
        assert_eq!(
            value("lifeboat_drill_window_runs", "90d"),
            Some(runs90),
            "{text}"
        );
        assert_eq!(value("lifeboat_drill_pass_rate", "90d"), rate90, "{text}");
    }
    m.forget_drill("shop", "orders");
    assert!(!m.encode().contains(r#"drill="orders""#));
}

//! The page of a passed and of a failed run, pinned as snapshots under
//! `src/drill/html/snapshots/` (`LIFEBOAT_UPDATE_SNAPSHOTS=1` rewrites them), and the
//! properties every page must have: nothing loaded from anywhere, everything escaped.

use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::crd::dr_drill::DrillOutcome;
use crate::drill::report::{self, Previous, build, to_bytes};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/drill/html/snapshots")
        .join(format!("{name}.html"))
}

fn assert_snapshot(name: &str, page: &str) {
    let file = path(name);
    if std::env::var_os("LIFEBOAT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&file, page).expect("writing a snapshot");
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    if committed != page {
        let first = committed
            .lines()
            .zip(page.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(page.lines().count()));
        panic!(
            "the {name} page differs from {} from line {}:\n  committed: {:?}\n  rendered:  {:?}\n\
             review the change and rerun with LIFEBOAT_UPDATE_SNAPSHOTS=1 to accept it",
            file.display(),
            first + 1,
            committed.lines().nth(first).unwrap_or("<end>"),
            page.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

/// A drill with `n` earlier daily runs (every fourth failed, the RTO growing), then this
/// run with `outcome`.
fn report_after(n: usize, outcome: DrillOutcome) -> Report {
    let day0: Timestamp = "2026-09-01T15:00:00Z".parse().unwrap();
    let mut prev: Option<(String, Report)> = None;
    for i in 0..=n {
        let o = if i == n {
            outcome
        } else if i % 4 == 3 {
            DrillOutcome::Failed
        } else {
            DrillOutcome::Passed
        };
        let rto = (o == DrillOutcome::Passed).then_some(60.0 + 3.0 * i as f64);
        let mut run = report::tests::run(&format!("orders-{i}"), o, rto);
        let start = day0 + SignedDuration::from_hours(24 * i as i64);
        let s = run.status.as_mut().unwrap();
        s.start_time = Some(Time(start));
        s.rpo = Some(crate::crd::dr_drill::Measurement {
            measured: Some("1h".into()),
            measured_seconds: Some(3600.0 + 60.0 * (i % 5) as f64),
            objective: Some("2h".into()),
            met: Some(true),
            breakdown: [("restorePoint".to_string(), 3600.0)].into(),
        });
        s.drill_spec = Some(crate::crd::dr_drill::DRDrillSpec {
            objectives: crate::crd::dr_drill::DrillObjectives {
                rto: Some("5m".into()),
                rpo: Some("2h".into()),
                rto_window: None,
            },
            ..Default::default()
        });
        let r = build(
            &run,
            start + SignedDuration::from_secs(150),
            prev.as_ref().map(|(h, r)| Previous {
                key: "lifeboat-reports/shop/orders/prev.json",
                sha256: h,
                sequence: r.sequence.unwrap(),
                report: Some(r),
            }),
            Some(report::Signer {
                algorithm: "Ed25519".into(),
                key_id: "0123456789abcdef".into(),
                public_key: "N9O0Q4COA2kET/XyvJDDgv0RAVTbHGt/cQoropDBROM=".into(),
            }),
        );
        prev = Some((report::sha256(&to_bytes(&r)), r));
    }
    prev.unwrap().1
}

#[test]
fn the_page_of_a_passed_run() {
    let r = report_after(40, DrillOutcome::Passed);
    let page = render(&r);
    assert_snapshot("passed", &page);
    for want in [
        "<span class=\"badge passed\">PASSED</span>",
        "report #41 of the drill",
        "last 30 days",
        "last 90 days",
        "RTO and RPO of the last 30 runs",
        "objective 5m",
        "Backup <code>orders-202611221400</code>",
        "key <code>0123456789abcdef</code>",
        "lifeboat drill verify-chain orders -n shop",
        "ISO/IEC 27001:2022 Annex A 8.13",
        "SOC 2 (2017 TSC) A1.3",
        "DORA (EU 2022/2554) Art. 11",
        "DORA Art. 12",
        "HIPAA 45 CFR 164.308(a)(7)(ii)(D)",
        "It is not a statement of compliance",
    ] {
        assert!(page.contains(want), "missing {want:?}");
    }
    // One RTO point per passed run among the 30 shown, one RPO point per run.
    let rto_chart = &page[page
        .find("<svg class=\"chart\" role=\"img\" aria-label=\"RTO")
        .unwrap()..];
    let rto_chart = &rto_chart[..rto_chart.find("</svg>").unwrap()];
    let passed = report::shown_points(&r).len(); // sanity: the shown trend is 12 runs
    assert_eq!(passed, report::TREND_RUNS);
    let mut all = r.trend.clone();
    all.push(report::point_of(&r));
    let last30 = &all[all.len() - CHART_RUNS..];
    assert_eq!(
        rto_chart.matches("<circle").count(),
        last30.iter().filter(|p| p.rto_seconds.is_some()).count()
    );
    assert_eq!(
        rto_chart.matches(">✘<").count(),
        last30.iter().filter(|p| p.rto_seconds.is_none()).count()
    );
}

#[test]
fn the_page_of_a_failed_run() {
    let r = report_after(3, DrillOutcome::Failed);
    let page = render(&r);
    assert_snapshot("failed", &page);
    assert!(page.contains("<span class=\"badge failed\">FAILED</span>"));
    assert!(page.contains("Failed at <strong>check/orders-count</strong>"));
    assert!(page.contains("not demonstrated (the recovery did not succeed)"));
    assert!(page.contains("the test failed (see the failure above)"));
    assert!(page.contains("<td class=\"bad\">Failed</td>"));
}

#[test]
fn the_page_of_a_cancelled_run() {
    let r = report_after(3, DrillOutcome::Cancelled);
    let page = render(&r);
    assert!(page.contains("<span class=\"badge unknown\">CANCELLED</span>"));
    // In the chart: a grey dash with its title, not the failed runs' cross.
    assert!(page.contains(">–<title>orders-3 2026-09-04 15:00: cancelled</title>"));
    assert_eq!(page.matches(">✘<").count(), 0, "no run failed");
}

#[test]
fn a_page_loads_nothing_and_escapes_everything() {
    let mut r = report_after(2, DrillOutcome::Passed);
    r.checks[0].name = "<script>alert(1)</script>".into();
    r.checks[0].observed = Some("\"><img src=x onerror=alert(1)>".into());
    r.namespace = "shop&co".into();
    let page = render(&r);
    assert!(!page.contains("<script"), "a check name became markup");
    assert!(!page.contains("<img"), "an observed value became markup");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("shop&amp;co"));
    assert!(page.contains(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">"
    )));
    let clean = render(&report_after(2, DrillOutcome::Passed));
    for banned in [
        "http://", "https://", " src=", " href=", "<link", "<script", "url(",
    ] {
        assert!(!clean.contains(banned), "the page contains {banned:?}");
    }
}

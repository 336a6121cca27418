//! Verifying a drill's hash chain of evidence reports. Pure: the caller reads the stored
//! objects and the digests the cluster recorded (each DrillRun's `status.report.sha256`,
//! the DRDrill's `status.lastReport.sha256`, the head of the chain); this module says
//! whether they agree and, if not, exactly where and how they disagree.
//!
//! What is checked, report by report in key order (keys start with the run's start time):
//! - the object parses as a report of this drill and run;
//! - `previousSha256` equals the SHA-256 of the previous report's bytes (none for the
//!   first: a first report that links somewhere means reports before it were removed);
//! - the page exists and hashes to `page.sha256`;
//! - the digest recorded in the report's DrillRun, when that run still exists;
//!
//! and for the chain: its last report is the head recorded in the DRDrill. A report edited
//! in the middle breaks the next link (and its run's digest); the newest one is caught by
//! the head; a removed report breaks the link after it, or the head.

use std::collections::BTreeMap;

use super::report::{REPORT_FORMAT, Report, sha256};

/// A report object as read from the store.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Object key relative to the repository root.
    pub key: String,
    pub bytes: Vec<u8>,
}

/// Digests the cluster recorded, to anchor the chain.
#[derive(Clone, Debug, Default)]
pub struct Anchors {
    /// DrillRun name -> `status.report.sha256`, for the runs that still exist.
    pub runs: BTreeMap<String, String>,
    /// The DRDrill's `status.lastReport.sha256`.
    pub head: Option<String>,
}

/// The verdict on one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub key: String,
    pub run: Option<String>,
    pub sha256: String,
    pub problems: Vec<String>,
}

/// The verdict on the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub links: Vec<Link>,
    /// Problems of the chain as a whole (missing head, no reports).
    pub problems: Vec<String>,
}

impl Verdict {
    /// True when no report and no link has a problem.
    pub fn intact(&self) -> bool {
        self.problems.is_empty() && self.links.iter().all(|l| l.problems.is_empty())
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}

/// Verifies the reports of drill `namespace/drill`. `reports` may come in any order;
/// `page(key)` reads a page object (`None` when it does not exist).
pub fn verify(
    namespace: &str,
    drill: &str,
    mut reports: Vec<Stored>,
    page: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    anchors: &Anchors,
) -> Verdict {
    reports.sort_by(|a, b| a.key.cmp(&b.key));
    let mut links = Vec::new();
    let mut problems = Vec::new();
    let mut prev_sha: Option<String> = None;
    for s in &reports {
        let sha = sha256(&s.bytes);
        let mut p = Vec::new();
        let parsed: Option<Report> = match serde_json::from_slice::<Report>(&s.bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                p.push(format!("not a readable drill report: {e}"));
                None
            }
        };
        if let Some(r) = &parsed {
            if r.format != REPORT_FORMAT {
                p.push(format!("unknown format {:?}", r.format));
            }
            if r.namespace != namespace || r.drill != drill {
                p.push(format!(
                    "belongs to drill {}/{}, not {namespace}/{drill}",
                    r.namespace, r.drill
                ));
            }
            let file = s.key.rsplit('/').next().unwrap_or_default();
            if !file.ends_with(&format!("-{}.json", r.run)) {
                p.push(format!(
                    "its run {:?} does not match its name {file:?}",
                    r.run
                ));
            }
            match (&prev_sha, &r.previous_sha256) {
                (None, None) => {}
                (None, Some(h)) => p.push(format!(
                    "links to a previous report ({}…) that is not in the store: reports before it were removed",
                    short(h)
                )),
                (Some(want), None) => p.push(format!(
                    "broken link: it names no previous report, but the previous one hashes to {}…",
                    short(want)
                )),
                (Some(want), Some(h)) if h != want => p.push(format!(
                    "broken link: previousSha256 is {}…, but the previous report hashes to {}…",
                    short(h),
                    short(want)
                )),
                _ => {}
            }
            match &r.page {
                None => p.push("names no page".into()),
                Some(pr) => match page(&pr.key) {
                    None => p.push(format!("its page {} is missing", pr.key)),
                    Some(bytes) if sha256(&bytes) != pr.sha256 => p.push(format!(
                        "its page {} was modified (hashes to {}…, the report says {}…)",
                        pr.key,
                        short(&sha256(&bytes)),
                        short(&pr.sha256)
                    )),
                    Some(_) => {}
                },
            }
            if let Some(recorded) = anchors.runs.get(&r.run)
                && *recorded != sha
            {
                p.push(format!(
                    "modified: it hashes to {}…, but DrillRun {} recorded {}…",
                    short(&sha),
                    r.run,
                    short(recorded)
                ));
            }
        }
        links.push(Link {
            key: s.key.clone(),
            run: parsed.map(|r| r.run),
            sha256: sha.clone(),
            problems: p,
        });
        prev_sha = Some(sha);
    }
    match (&anchors.head, links.last()) {
        (Some(head), None) => problems.push(format!(
            "no reports in the store, but the DRDrill records a last report {}…",
            short(head)
        )),
        (Some(head), Some(last)) if *head != last.sha256 => {
            let at = links.iter().position(|l| l.sha256 == *head);
            problems.push(match at {
                Some(i) => format!(
                    "the DRDrill's last report ({}…) is {} but {} report(s) follow it",
                    short(head),
                    links[i].key,
                    links.len() - 1 - i
                ),
                None => format!(
                    "the DRDrill's last report ({}…) is not in the store: the newest report was modified or removed",
                    short(head)
                ),
            });
        }
        (None, None) => problems.push("no reports in the store".into()),
        _ => {}
    }
    Verdict { links, problems }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::dr_drill::DrillOutcome;
    use crate::drill::report::{self, PageRef, Previous};
    use std::collections::HashMap;

    /// A chain of `n` reports as the mover writes them: (reports, pages, anchors).
    fn chain(n: usize) -> (Vec<Stored>, HashMap<String, Vec<u8>>, Anchors) {
        let now: jiff::Timestamp = "2026-11-22T15:02:00Z".parse().unwrap();
        let mut stored = Vec::new();
        let mut pages = HashMap::new();
        let mut anchors = Anchors::default();
        let mut prev: Option<(String, String, Report)> = None;
        for i in 0..n {
            let name = format!("orders-2026112215{i:02}");
            let run = report::tests::run(&name, DrillOutcome::Passed, Some(60.0 + i as f64));
            let key = format!("lifeboat-reports/shop/orders/20261122T15{i:02}00Z-{name}.json");
            let mut r = report::build(
                &run,
                now,
                prev.as_ref().map(|(k, h, r)| Previous {
                    key: k,
                    sha256: h,
                    report: Some(r),
                }),
            );
            let page_key = key.replace(".json", ".md");
            let page = report::render_markdown(&r).into_bytes();
            r.page = Some(PageRef {
                key: page_key.clone(),
                sha256: sha256(&page),
            });
            pages.insert(page_key, page);
            let bytes = report::to_bytes(&r);
            let h = sha256(&bytes);
            anchors.runs.insert(name.clone(), h.clone());
            anchors.head = Some(h.clone());
            stored.push(Stored {
                key: key.clone(),
                bytes,
            });
            prev = Some((key, h, r));
        }
        (stored, pages, anchors)
    }

    fn run_verify(reports: Vec<Stored>, pages: &HashMap<String, Vec<u8>>, a: &Anchors) -> Verdict {
        verify("shop", "orders", reports, &mut |k| pages.get(k).cloned(), a)
    }

    #[test]
    fn an_untouched_chain_verifies_in_any_listing_order() {
        let (mut reports, pages, anchors) = chain(4);
        reports.reverse();
        let v = run_verify(reports, &pages, &anchors);
        assert!(v.intact(), "{v:#?}");
        assert_eq!(v.links.len(), 4);
        // Runs deleted by the history limit leave the chain verifiable.
        let mut partial = anchors.clone();
        partial.runs.clear();
        let (reports, pages, _) = chain(4);
        assert!(run_verify(reports, &pages, &partial).intact());
    }

    #[test]
    fn a_tampered_report_breaks_the_next_link_and_its_run_digest() {
        let (mut reports, pages, anchors) = chain(4);
        let text = String::from_utf8(reports[1].bytes.clone()).unwrap();
        reports[1].bytes = text.replace("\"Passed\"", "\"Failed\"").into_bytes();
        let v = run_verify(reports, &pages, &anchors);
        assert!(!v.intact());
        assert!(
            v.links[1].problems.iter().any(|p| p.contains("recorded")),
            "{v:#?}"
        );
        assert!(
            v.links[2]
                .problems
                .iter()
                .any(|p| p.starts_with("broken link")),
            "{v:#?}"
        );
        assert!(v.links[0].problems.is_empty() && v.links[3].problems.is_empty());
    }

    #[test]
    fn a_broken_link_is_named() {
        let (mut reports, pages, mut anchors) = chain(3);
        let mut r: Report = serde_json::from_slice(&reports[2].bytes).unwrap();
        r.previous_sha256 = Some("0".repeat(64));
        reports[2].bytes = report::to_bytes(&r);
        // Even if someone also rewrote the cluster's records to match the forged report.
        anchors.head = Some(sha256(&reports[2].bytes));
        anchors.runs.clear();
        let v = run_verify(reports, &pages, &anchors);
        assert_eq!(v.links[2].problems.len(), 1, "{v:#?}");
        assert!(v.links[2].problems[0].contains("previousSha256 is 0000000000000000…"));
    }

    #[test]
    fn removed_and_modified_newest_reports_are_caught_by_the_head() {
        let (mut reports, pages, anchors) = chain(3);
        reports.pop();
        let v = run_verify(reports.clone(), &pages, &anchors);
        assert!(!v.intact());
        assert!(v.problems[0].contains("not in the store"), "{v:#?}");
        // Removing the first report: the second now links to nothing.
        let (mut reports, pages, anchors) = chain(3);
        reports.remove(0);
        let v = run_verify(reports, &pages, &anchors);
        assert!(v.links[0].problems[0].contains("reports before it were removed"));
    }

    #[test]
    fn pages_are_covered_too() {
        let (reports, mut pages, anchors) = chain(2);
        let key = pages.keys().next().unwrap().clone();
        pages
            .get_mut(&key)
            .unwrap()
            .extend_from_slice(b"\nall good!\n");
        let v = run_verify(reports.clone(), &pages, &anchors);
        assert!(
            v.links
                .iter()
                .any(|l| l.problems.iter().any(|p| p.contains("was modified")))
        );
        pages.remove(&key);
        let v = run_verify(reports, &pages, &anchors);
        assert!(
            v.links
                .iter()
                .any(|l| l.problems.iter().any(|p| p.contains("is missing")))
        );
    }

    #[test]
    fn garbage_and_foreign_reports_are_reported() {
        let (mut reports, pages, anchors) = chain(2);
        reports[0].bytes = b"{not json".to_vec();
        let v = run_verify(reports, &pages, &anchors);
        assert!(v.links[0].problems[0].starts_with("not a readable drill report"));
        let v = verify(
            "other",
            "orders",
            chain(1).0,
            &mut |_| None,
            &Anchors::default(),
        );
        assert!(
            v.links[0]
                .problems
                .iter()
                .any(|p| p.contains("belongs to drill shop/orders"))
        );
        let empty = verify("shop", "orders", vec![], &mut |_| None, &Anchors::default());
        assert!(!empty.intact());
    }
}

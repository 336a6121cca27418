//! Every attack on the evidence, as fixtures: a chain of signed reports with pages, the
//! installation's key, the signed anchor and the DrillRun records, then one change each
//! (what someone holding the store's credentials, or a namespace editor, can do), and
//! the problem kind that names it.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::crd::dr_drill::{DrillOutcome, DrillRun};
use crate::drill::report::{self, PageRef, Previous, Signer};
use crate::evidence::anchor::{self, NewHead};
use crate::evidence::keys::SigningKey;
use crate::evidence::seal::signer_of;
use crate::evidence::signature::ReportStatement;

const DIR: &str = "lifeboat-reports/shop/orders";

pub(crate) fn start(i: usize) -> Timestamp {
    "2026-11-22T15:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(24 * i as i64)
}

pub(crate) fn run(i: usize) -> DrillRun {
    let name = format!("orders-{i}");
    let mut r = report::tests::run(&name, DrillOutcome::Passed, Some(60.0 + i as f64));
    r.metadata.creation_timestamp = Some(Time(start(i) - SignedDuration::from_secs(1)));
    r.status.as_mut().unwrap().start_time = Some(Time(start(i)));
    r
}

fn key_of(run: &DrillRun) -> String {
    let s = run.status.as_ref().unwrap().start_time.as_ref().unwrap().0;
    format!(
        "{DIR}/{}-{}.json",
        s.strftime("%Y%m%dT%H%M%SZ"),
        run.metadata.name.as_deref().unwrap()
    )
}

/// Stored reports, their pages and signatures, as the report writer and the controller's
/// seal make them.
#[derive(Clone)]
pub(crate) struct Chain {
    pub(crate) reports: Vec<Stored>,
    pub(crate) objects: HashMap<String, Vec<u8>>,
    pub(crate) shas: Vec<String>,
}

/// Writes the reports of `runs` in order, each linked to the one before; signs them with
/// `key` (the installation's, or an attacker's) when given.
fn write(runs: &[DrillRun], key: Option<&SigningKey>, signer: Option<Signer>) -> Chain {
    let mut c = Chain {
        reports: Vec::new(),
        objects: HashMap::new(),
        shas: Vec::new(),
    };
    let mut prev: Option<(String, String, Report)> = None;
    for run in runs {
        let k = key_of(run);
        let generated = run.status.as_ref().unwrap().start_time.as_ref().unwrap().0
            + SignedDuration::from_secs(120);
        let mut r = report::build(
            run,
            generated,
            prev.as_ref().map(|(k, h, r)| Previous {
                key: k,
                sha256: h,
                sequence: r.sequence.unwrap(),
                report: Some(r),
            }),
            signer.clone(),
        );
        let md = report::render_markdown(&r).into_bytes();
        let html = crate::drill::html::render(&r).into_bytes();
        r.page = Some(PageRef {
            key: k.replace(".json", ".md"),
            sha256: sha256(&md),
        });
        r.html = Some(PageRef {
            key: k.replace(".json", ".html"),
            sha256: sha256(&html),
        });
        c.objects.insert(k.replace(".json", ".md"), md);
        c.objects.insert(k.replace(".json", ".html"), html);
        let bytes = report::to_bytes(&r);
        let h = sha256(&bytes);
        if let Some(key) = key {
            let st = ReportStatement {
                namespace: r.namespace.clone(),
                drill: r.drill.clone(),
                run: r.run.clone(),
                run_uid: r.run_uid.clone(),
                sequence: r.sequence,
                start_time: r.start_time.as_ref().map(|t| t.0),
                report_sha256: h.clone(),
                previous_sha256: r.previous_sha256.clone(),
                signed_at: generated + SignedDuration::from_secs(5),
            };
            c.objects
                .insert(signature_key(&k), st.sign(key).unwrap().to_bytes());
        }
        c.reports.push(Stored {
            key: k.clone(),
            bytes,
        });
        c.shas.push(h.clone());
        prev = Some((k, h, r));
    }
    c
}

/// The installation: its key, a signed chain of `n` runs, the anchor and the records.
pub(crate) struct World {
    pub(crate) key: SigningKey,
    pub(crate) runs: Vec<DrillRun>,
    pub(crate) chain: Chain,
    pub(crate) anchor: Envelope,
}

impl World {
    pub(crate) fn new(n: usize) -> World {
        let key = SigningKey::generate().unwrap();
        let runs: Vec<DrillRun> = (1..=n).map(run).collect();
        let chain = write(&runs, Some(&key), Some(signer_of(&key)));
        // The anchor advanced once per sealed report, as the controller does.
        let mut a: Option<Anchor> = None;
        for (i, r) in runs.iter().enumerate() {
            let name = r.metadata.name.clone().unwrap();
            let head = NewHead {
                namespace: "shop",
                drill: "orders",
                sequence: i as u64 + 1,
                sha256: &chain.shas[i],
                previous_sha256: i.checked_sub(1).map(|p| chain.shas[p].as_str()),
                location: &chain.reports[i].key,
                run: &name,
                run_uid: r.metadata.uid.as_deref(),
                run_time: Some(start(i + 1)),
                policy: None,
            };
            a = Some(anchor::advance(a.as_ref(), &head, start(i + 1)).unwrap());
        }
        let anchor = a.unwrap().sign(&key).unwrap();
        World {
            key,
            runs,
            chain,
            anchor,
        }
    }

    pub(crate) fn trust(&self) -> Trust {
        Trust {
            keys: vec![self.key.public().clone()],
            anchor: AnchorInput::Present(self.anchor.clone()),
            runs: Some(
                self.runs
                    .iter()
                    .zip(&self.chain.shas)
                    .map(|(r, h)| {
                        (
                            r.metadata.name.clone().unwrap(),
                            RunRecord {
                                uid: r.metadata.uid.clone(),
                                created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                                start_time: r
                                    .status
                                    .as_ref()
                                    .unwrap()
                                    .start_time
                                    .as_ref()
                                    .map(|t| t.0),
                                report_sha256: Some(h.clone()),
                            },
                        )
                    })
                    .collect(),
            ),
            drill_exists: Some(true),
            drill_head: self.chain.shas.last().cloned(),
            window_since: None,
        }
    }
}

fn check(c: &Chain, trust: &Trust) -> Verdict {
    verify(
        "shop",
        "orders",
        c.reports.clone(),
        &mut |k| c.objects.get(k).cloned(),
        trust,
    )
}

fn kinds(v: &Verdict) -> Vec<ProblemKind> {
    v.all_problems().map(|p| p.kind).collect()
}

fn edit(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains(from), "{from:?} not in the report");
    text.replacen(from, to, 1).into_bytes()
}

#[test]
fn an_untouched_signed_chain_verifies_in_any_listing_order() {
    let w = World::new(4);
    let mut c = w.chain.clone();
    c.reports.reverse();
    let v = check(&c, &w.trust());
    assert!(v.intact(), "{v:#?}");
    assert_eq!(v.links.len(), 4);
    assert!(
        v.links
            .iter()
            .all(|l| l.signed_by.as_deref() == Some(w.key.public().id()))
    );
    assert_eq!(v.anchor.as_ref().unwrap().sequence, 4);
    // Runs removed by the history limit leave the chain verifiable.
    let mut t = w.trust();
    t.runs = Some(BTreeMap::new());
    assert!(check(&w.chain, &t).intact());
}

#[test]
fn an_edited_report_is_named_by_its_signature_the_next_link_and_its_run() {
    let w = World::new(4);
    let mut c = w.chain.clone();
    c.reports[1].bytes = edit(&c.reports[1].bytes, "\"Passed\"", "\"Failed\"");
    let v = check(&c, &w.trust());
    assert!(!v.intact());
    let on = |i: usize| {
        v.links[i]
            .problems
            .iter()
            .map(|p| p.kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        on(1),
        [ProblemKind::SignatureMismatch, ProblemKind::RunMismatch],
        "{v:#?}"
    );
    assert!(
        v.links[1].problems[0]
            .message
            .contains("edited after signing")
    );
    assert!(v.links[1].problems[1].message.contains("recorded"));
    assert_eq!(on(2), [ProblemKind::BrokenLink]);
    assert!(v.links[2].problems[0].message.starts_with("broken link"));
    assert!(on(0).is_empty() && on(3).is_empty());
}

#[test]
fn an_edited_newest_report_fails_its_signature_and_the_anchor() {
    let w = World::new(3);
    let mut c = w.chain.clone();
    c.reports[2].bytes = edit(&c.reports[2].bytes, "\"Passed\"", "\"Failed\"");
    let mut t = w.trust();
    // Even with the tenant-writable records rewritten to match.
    t.runs = None;
    t.drill_head = Some(sha256(&c.reports[2].bytes));
    let v = check(&c, &t);
    assert_eq!(
        kinds(&v),
        [ProblemKind::SignatureMismatch, ProblemKind::HeadMismatch],
        "{v:#?}"
    );
}

#[test]
fn a_deleted_report_is_a_gap_and_a_broken_link() {
    let w = World::new(4);
    let mut c = w.chain.clone();
    c.reports.remove(1);
    let v = check(&c, &w.trust());
    assert_eq!(
        kinds(&v),
        [ProblemKind::BrokenLink, ProblemKind::SequenceGap],
        "{v:#?}"
    );
    assert!(
        v.links[1].problems[1]
            .message
            .contains("#3 follows #1: 1 report(s)")
    );
    // The first one: the second now links to nothing.
    let mut c = w.chain.clone();
    c.reports.remove(0);
    let v = check(&c, &w.trust());
    assert_eq!(kinds(&v), [ProblemKind::EarlierRemoved]);
}

#[test]
fn deleted_newest_reports_are_caught_by_the_anchor() {
    let w = World::new(4);
    let mut c = w.chain.clone();
    c.reports.truncate(2);
    let mut t = w.trust();
    t.drill_head = Some(c.shas[1].clone());
    let v = check(&c, &t);
    assert_eq!(kinds(&v), [ProblemKind::HeadMismatch]);
    assert!(
        v.problems[0]
            .message
            .contains("the store ends at #2: the newest reports were removed"),
        "{v:#?}"
    );
    // All of them.
    let mut c = w.chain.clone();
    c.reports.clear();
    assert_eq!(kinds(&check(&c, &t)), [ProblemKind::NoReports]);
}

#[test]
fn reordered_reports_are_named() {
    let w = World::new(4);
    // Swap the contents of two keys (each keeps its signature file by key).
    let mut c = w.chain.clone();
    let b1 = c.reports[1].bytes.clone();
    c.reports[1].bytes = c.reports[2].bytes.clone();
    c.reports[2].bytes = b1;
    let v = check(&c, &w.trust());
    assert!(
        v.has(ProblemKind::Renamed) && v.has(ProblemKind::Reordered),
        "{v:#?}"
    );
    // Rename keys so that a later run sorts first (objects and signatures move along).
    let mut c = w.chain.clone();
    let moved = c.reports[3].key.replace("20261126T", "20261123T");
    let sig = c
        .objects
        .remove(&format!("{}.sig", c.reports[3].key))
        .unwrap();
    c.objects.insert(format!("{moved}.sig"), sig);
    c.reports[3].key = moved;
    let v = check(&c, &w.trust());
    assert!(
        v.has(ProblemKind::Renamed) && v.has(ProblemKind::Reordered),
        "{v:#?}"
    );
    assert!(v.has(ProblemKind::BrokenLink));
}

#[test]
fn a_report_planted_before_its_run_is_refused_for_every_reason_it_has() {
    let w = World::new(2);
    // The attacker writes the next run's report at its predictable key before the run:
    // no UID to know, generated before the run started, no signature it can make.
    let mut next = run(3);
    next.metadata.uid = None;
    let mut planted = write(
        &[w.runs[0].clone(), w.runs[1].clone(), next.clone()],
        None,
        None,
    );
    let mut r: Report = serde_json::from_slice(&planted.reports[2].bytes).unwrap();
    r.generated_at = (start(3) - SignedDuration::from_hours(2)).to_string();
    planted.reports[2].bytes = report::to_bytes(&r);
    let mut c = w.chain.clone();
    c.reports.push(planted.reports[2].clone());
    for k in ["md", "html"] {
        let key = planted.reports[2].key.replace(".json", &format!(".{k}"));
        c.objects.insert(key.clone(), planted.objects[&key].clone());
    }
    // The run then exists, with its UID and creation time.
    let mut t = w.trust();
    let real = run(3);
    t.runs.as_mut().unwrap().insert(
        "orders-3".into(),
        RunRecord {
            uid: real.metadata.uid.clone(),
            created: real.metadata.creation_timestamp.as_ref().map(|t| t.0),
            start_time: Some(start(3)),
            report_sha256: None,
        },
    );
    let v = check(&c, &t);
    let on = v.links[2]
        .problems
        .iter()
        .map(|p| p.kind)
        .collect::<Vec<_>>();
    assert!(on.contains(&ProblemKind::Unsigned), "{v:#?}");
    assert!(
        on.iter()
            .filter(|k| **k == ProblemKind::PlantedBeforeRun)
            .count()
            >= 2,
        "{on:?}"
    );
    assert!(
        v.links[2]
            .problems
            .iter()
            .any(|p| p.message.contains("before its run started"))
    );
    assert!(
        kinds(&v).contains(&ProblemKind::HeadMismatch),
        "a report after the anchored head"
    );

    // Signed, but with the attacker's own key: not the installation's.
    let attacker = SigningKey::generate().unwrap();
    let mut c = w.chain.clone();
    let forged = write(
        &[w.runs[0].clone(), w.runs[1].clone(), run(3)],
        Some(&attacker),
        None,
    );
    c.reports.push(forged.reports[2].clone());
    c.objects.extend(
        forged
            .objects
            .into_iter()
            .filter(|(k, _)| k.contains("orders-3")),
    );
    let v = check(&c, &w.trust());
    assert!(
        v.links[2]
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::UntrustedKey),
        "{v:#?}"
    );
    assert!(
        v.links[2]
            .problems
            .iter()
            .any(|p| p.message.contains("not the installation's"))
    );
}

#[test]
fn a_consistent_rewrite_of_the_whole_chain_is_caught_by_signatures_and_the_anchor() {
    let w = World::new(3);
    // Every report rebuilt with a better RTO, links and pages recomputed: the chain is
    // consistent in itself, and the tenant-writable records are rewritten to match.
    let better: Vec<DrillRun> = w
        .runs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.status
                .as_mut()
                .unwrap()
                .rto
                .as_mut()
                .unwrap()
                .measured_seconds = Some(1.0);
            r
        })
        .collect();
    let attacker = SigningKey::generate().unwrap();
    for (key, what) in [
        (None, ProblemKind::Unsigned),
        (Some(&attacker), ProblemKind::UntrustedKey),
    ] {
        let c = write(&better, key, None);
        let mut t = w.trust();
        for (r, h) in t.runs.as_mut().unwrap().values_mut().zip(&c.shas) {
            r.report_sha256 = Some(h.clone());
        }
        t.drill_head = c.shas.last().cloned();
        let v = check(&c, &t);
        let k = kinds(&v);
        assert_eq!(
            k.iter().filter(|x| **x == what).count(),
            3,
            "{what:?}: {v:#?}"
        );
        assert_eq!(k.last(), Some(&ProblemKind::HeadMismatch));
        assert!(
            v.problems[0].message.contains("the chain was rewritten"),
            "{v:#?}"
        );
        // Without the installation's key and anchor, the rewrite would pass: what the
        // signatures and the anchor add.
        let bare = Trust {
            drill_head: c.shas.last().cloned(),
            ..Trust::default()
        };
        assert!(check(&c, &bare).intact());
    }
}

#[test]
fn a_deleted_drill_is_named_not_passed() {
    let w = World::new(2);
    let mut t = w.trust();
    t.drill_exists = Some(false);
    t.runs = Some(BTreeMap::new());
    let v = check(&w.chain, &t);
    assert_eq!(kinds(&v), [ProblemKind::DrillDeleted]);
    assert!(
        v.problems[0]
            .message
            .contains("anchor records 2 report(s), the last of run orders-2"),
        "{v:#?}"
    );
    // And its reports deleted too: nothing to check is itself a finding.
    let empty = Chain {
        reports: vec![],
        ..w.chain.clone()
    };
    assert_eq!(
        kinds(&check(&empty, &t)),
        [ProblemKind::NoReports, ProblemKind::DrillDeleted]
    );
}

#[test]
fn a_forged_or_missing_anchor_is_a_problem_when_the_installation_signs() {
    let w = World::new(2);
    let mut t = w.trust();
    let mut env = w.anchor.clone();
    env.payload = env.payload.replace("sequence: 2", "sequence: 1");
    t.anchor = AnchorInput::Present(env);
    let v = check(&w.chain, &t);
    assert!(v.has(ProblemKind::AnchorInvalid), "{v:#?}");
    t.anchor = AnchorInput::Missing;
    assert_eq!(kinds(&check(&w.chain, &t)), [ProblemKind::AnchorMissing]);
    // Another drill's anchor.
    let mut other = crate::evidence::anchor::tests::anchor();
    other.drill = "payments".into();
    t.anchor = AnchorInput::Present(other.sign(&w.key).unwrap());
    assert!(check(&w.chain, &t).has(ProblemKind::AnchorInvalid));
}

#[test]
fn pages_are_covered() {
    let w = World::new(2);
    for suffix in [".md", ".html"] {
        let key = w.chain.reports[0].key.replace(".json", suffix);
        let mut c = w.chain.clone();
        c.objects
            .get_mut(&key)
            .unwrap()
            .extend_from_slice(b"\nall good!\n");
        assert_eq!(
            kinds(&check(&c, &w.trust())),
            [ProblemKind::PageModified],
            "{suffix}"
        );
        c.objects.remove(&key);
        assert_eq!(
            kinds(&check(&c, &w.trust())),
            [ProblemKind::PageMissing],
            "{suffix}"
        );
    }
}

#[test]
fn reports_from_before_signing_are_covered_by_the_links_of_the_first_signed_one() {
    let key = SigningKey::generate().unwrap();
    let runs: Vec<DrillRun> = (1..=4).map(run).collect();
    let mut c = write(&runs, Some(&key), None);
    // Reports 1 and 2 were written before the installation had a key.
    for r in &c.reports[..2] {
        c.objects.remove(&signature_key(&r.key));
    }
    let head = NewHead {
        namespace: "shop",
        drill: "orders",
        sequence: 3,
        sha256: &c.shas[2],
        previous_sha256: Some(&c.shas[1]),
        location: "x",
        run: "orders-3",
        run_uid: None,
        run_time: None,
        policy: None,
    };
    let a3 = anchor::advance(None, &head, start(3)).unwrap();
    let a4 = anchor::advance(
        Some(&a3),
        &NewHead {
            sequence: 4,
            sha256: &c.shas[3],
            previous_sha256: Some(&c.shas[2]),
            run: "orders-4",
            ..head
        },
        start(4),
    )
    .unwrap();
    assert_eq!(a4.signed_since, 3);
    let t = Trust {
        keys: vec![key.public().clone()],
        anchor: AnchorInput::Present(a4.sign(&key).unwrap()),
        ..Trust::default()
    };
    assert!(check(&c, &t).intact(), "{:#?}", check(&c, &t));
    // Without an anchor saying where signing started, every report must be signed.
    let strict = Trust {
        keys: vec![key.public().clone()],
        anchor: AnchorInput::Missing,
        ..Trust::default()
    };
    assert_eq!(
        kinds(&check(&c, &strict)),
        [
            ProblemKind::Unsigned,
            ProblemKind::Unsigned,
            ProblemKind::AnchorMissing
        ]
    );
    // An edited report from before signing still breaks the first signed report's link.
    c.reports[1].bytes = edit(&c.reports[1].bytes, "\"Passed\"", "\"Failed\"");
    assert_eq!(kinds(&check(&c, &t)), [ProblemKind::BrokenLink]);
}

#[test]
fn an_export_window_starts_at_the_report_before_it() {
    let w = World::new(4);
    let mut c = w.chain.clone();
    c.reports.drain(..1); // #2 is the last report before the window, #3 and #4 inside.
    let mut t = w.trust();
    t.window_since = Some(start(3) - SignedDuration::from_hours(1));
    let v = check(&c, &t);
    assert!(v.intact(), "{v:#?}");
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("1 report(s) before #2 are not included"))
    );
    // Dropping the boundary report too is caught.
    c.reports.drain(..1);
    assert_eq!(kinds(&check(&c, &t)), [ProblemKind::EarlierRemoved]);
}

#[test]
fn without_a_key_the_verdict_says_what_was_not_checked() {
    let w = World::new(2);
    let t = Trust {
        drill_head: w.chain.shas.last().cloned(),
        ..Trust::default()
    };
    let v = check(&w.chain, &t);
    assert!(v.intact());
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("signatures were not checked")),
        "{v:#?}"
    );
    assert!(v.links.iter().all(|l| l.signed_by.is_none()));
}

#[test]
fn garbage_and_foreign_reports_are_reported() {
    let w = World::new(2);
    let mut c = w.chain.clone();
    c.reports[0].bytes = b"{not json".to_vec();
    let v = check(&c, &w.trust());
    assert_eq!(v.links[0].problems[0].kind, ProblemKind::Unreadable);
    let v = verify(
        "other",
        "orders",
        w.chain.reports.clone(),
        &mut |_| None,
        &Trust::default(),
    );
    assert!(v.has(ProblemKind::ForeignReport));
    let empty = verify("shop", "orders", vec![], &mut |_| None, &Trust::default());
    assert_eq!(kinds(&empty), [ProblemKind::NoReports]);
}

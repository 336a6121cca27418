//! A bundle of a signed chain built, packed, unpacked and verified offline; each way of
//! tampering with a bundle (edited report, removed report, removed or edited anchor,
//! another key, a planted report unknown to the manifest) named by the verifier.

use jiff::SignedDuration;

use super::*;
use crate::drill::chain::ProblemKind;
use crate::drill::chain::tests::{World, start};
use crate::evidence::keys::SigningKey;

fn input(w: &World) -> DrillInput {
    let t = w.trust();
    DrillInput {
        namespace: "shop".into(),
        drill: "orders".into(),
        drill_exists: true,
        drill_head: t.drill_head.clone(),
        anchor: Some(w.anchor.clone()),
        runs: w
            .runs
            .iter()
            .zip(&w.chain.shas)
            .map(|(r, h)| {
                let mut r = r.clone();
                r.status.as_mut().unwrap().report = Some(crate::crd::dr_drill::ReportRef {
                    location: "s3://b/x".into(),
                    sha256: h.clone(),
                    ..Default::default()
                });
                r
            })
            .collect(),
        reports: w.chain.reports.clone(),
    }
}

fn bundle(w: &World, since: Option<Timestamp>) -> Bundle {
    Bundle::build(
        vec![input(w)],
        &[w.key.public().clone()],
        since,
        start(30),
        &mut |k| w.chain.objects.get(k).cloned(),
    )
    .unwrap()
}

fn verify(b: &Bundle, w: &World) -> DrillVerdict {
    let mut v = b.verify(&[w.key.public().clone()]).unwrap();
    assert_eq!(v.len(), 1, "{v:#?}");
    v.remove(0)
}

#[test]
fn a_bundle_round_trips_through_tar_gz_and_verifies_offline() {
    let w = World::new(5);
    let b = bundle(&w, None);
    let packed = b.to_tar_gz(start(30)).unwrap();
    // Deterministic: the same bundle packs to the same bytes.
    assert_eq!(packed, b.to_tar_gz(start(30)).unwrap());
    let back = Bundle::from_tar_gz(&packed).unwrap();
    assert_eq!(back, b);
    let v = verify(&back, &w);
    assert!(v.verdict.intact(), "{v:#?}");
    assert!(v.notes.is_empty(), "{v:#?}");
    assert_eq!(v.verdict.links.len(), 5);
    assert!(v.verdict.links.iter().all(|l| l.signed_by.is_some()));
    // Every report's signature and both pages are in the bundle.
    for s in &w.chain.reports {
        for suffix in [".json", ".json.sig", ".md", ".html"] {
            let p = format!("store/{}{}", s.key.trim_end_matches(".json"), suffix);
            assert!(b.files.contains_key(&p), "{p}");
        }
    }
    let csv = String::from_utf8(b.files["summary.csv"].clone()).unwrap();
    assert_eq!(csv.lines().count(), 6);
    assert_eq!(csv.lines().next(), Some(CSV_HEADER));
    assert!(csv.contains(",shop,orders,orders-1,Passed,61.0,"), "{csv}");
    let readme = String::from_utf8(b.files["README.md"].clone()).unwrap();
    assert!(readme.contains(w.key.public().id()));
    assert!(readme.contains("lifeboat evidence verify"));
    assert_eq!(
        PublicKey::all_from_pem(std::str::from_utf8(&b.files["public-key.pem"]).unwrap()).unwrap(),
        vec![w.key.public().clone()]
    );
}

#[test]
fn the_window_keeps_the_report_before_it_and_verifies() {
    let w = World::new(5);
    // Runs 1..=5 start on days 1..=5: since day 3 keeps runs 3, 4, 5 and run 2.
    let b = bundle(&w, Some(start(3) - SignedDuration::from_secs(60)));
    let m = b.manifest().unwrap();
    assert_eq!(m.drills[0].reports.len(), 4);
    assert!(m.drills[0].reports[0].ends_with("-orders-2.json"));
    let v = verify(&b, &w);
    assert!(v.verdict.intact(), "{v:#?}");
    assert!(
        v.verdict
            .notes
            .iter()
            .any(|n| n.contains("before this bundle's window")),
        "{v:#?}"
    );
}

#[test]
fn tampering_with_a_bundle_is_named() {
    let w = World::new(4);
    let b = bundle(&w, None);
    let key = |i: usize| format!("store/{}", w.chain.reports[i].key);

    // An edited report.
    let mut t = b.clone();
    let p = key(1);
    let text = String::from_utf8(t.files[&p].clone()).unwrap();
    t.files
        .insert(p, text.replacen("\"Passed\"", "\"Failed\"", 1).into_bytes());
    let v = verify(&t, &w);
    assert!(v.verdict.has(ProblemKind::SignatureMismatch), "{v:#?}");
    assert!(v.verdict.has(ProblemKind::BrokenLink), "{v:#?}");

    // A removed report (and its manifest entry): a gap and a broken link.
    let mut t = b.clone();
    t.files.remove(&key(2));
    let v = verify(&t, &w);
    assert!(v.verdict.has(ProblemKind::SequenceGap), "{v:#?}");
    assert!(
        v.notes.iter().any(|n| n.contains("not in the bundle")),
        "{v:#?}"
    );

    // The newest report removed: only the anchor knows.
    let mut t = b.clone();
    t.files.remove(&key(3));
    let v = verify(&t, &w);
    assert!(v.verdict.has(ProblemKind::HeadMismatch), "{v:#?}");

    // The anchor removed, or edited.
    let mut t = b.clone();
    t.files.remove("drills/shop/orders/anchor.json");
    assert!(verify(&t, &w).verdict.has(ProblemKind::AnchorMissing));
    let mut t = b.clone();
    let a = String::from_utf8(t.files["drills/shop/orders/anchor.json"].clone()).unwrap();
    t.files.insert(
        "drills/shop/orders/anchor.json".into(),
        a.replacen("sequence: 4", "sequence: 3", 1).into_bytes(),
    );
    assert!(verify(&t, &w).verdict.has(ProblemKind::AnchorInvalid));

    // Verified with another key than the installation's: nothing verifies.
    let other = SigningKey::generate().unwrap();
    let v = b.verify(&[other.public().clone()]).unwrap().remove(0);
    assert!(v.verdict.has(ProblemKind::UntrustedKey), "{v:#?}");
    assert!(v.verdict.has(ProblemKind::AnchorInvalid), "{v:#?}");

    // A report planted in the bundle, unknown to the manifest, after the head.
    let mut t = b.clone();
    let planted = key(3)
        .replace("orders-4.json", "orders-5.json")
        .replace("20261125", "20261126");
    t.files.insert(planted, t.files[&key(3)].clone());
    let v = verify(&t, &w);
    assert!(!v.verdict.intact(), "{v:#?}");
    assert!(
        v.notes.iter().any(|n| n.contains("not in the manifest")),
        "{v:#?}"
    );

    // A drill the manifest does not list is still verified.
    let mut t = b.clone();
    let mut m = t.manifest().unwrap();
    m.drills.clear();
    t.files
        .insert("manifest.json".into(), serde_json::to_vec(&m).unwrap());
    let v = verify(&t, &w);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("does not list this drill")),
        "{v:#?}"
    );
    assert_eq!(v.verdict.links.len(), 4);
}

#[test]
fn archives_with_links_or_escaping_paths_are_refused() {
    let mut raw = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    raw.append_link(&mut h, "manifest.json", "/etc/passwd")
        .unwrap();
    let tarball = raw.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tarball).unwrap();
    let e = Bundle::from_tar_gz(&gz.finish().unwrap()).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(clean("../x").is_err());
    assert!(clean("/x").is_err());
    assert_eq!(clean("./a//b").unwrap(), "a/b");
    assert!(Bundle::from_tar_gz(b"not gzip").is_err());
    assert!(Bundle::default().manifest().is_err());
}

#[test]
fn csv_fields_are_quoted() {
    assert_eq!(csv("a,b"), "\"a,b\"");
    assert_eq!(csv("say \"x\""), "\"say \"\"x\"\"\"");
    assert_eq!(csv("plain"), "plain");
}

/// A year of daily signed runs: the bundle's size and the offline verification's time,
/// bounded so that a regression (quadratic verification, uncompressed pages) fails.
#[test]
fn a_year_of_daily_runs_packs_small_and_verifies_fast() {
    let w = World::new(365);
    let b = bundle(&w, None);
    let packed = b.to_tar_gz(start(400)).unwrap();
    let t0 = std::time::Instant::now();
    let v = verify(&Bundle::from_tar_gz(&packed).unwrap(), &w);
    let took = t0.elapsed();
    assert!(v.verdict.intact(), "{:?}", v.verdict.all_problems().next());
    let raw: usize = b.files.values().map(Vec::len).sum();
    println!(
        "365 runs: {} files, {raw} bytes, {} bytes as .tar.gz, verified in {:.2}s",
        b.files.len(),
        packed.len(),
        took.as_secs_f64()
    );
    assert!(packed.len() < 16 << 20, "{} bytes", packed.len());
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
}

//! Sealing a written report: the controller's step after a run's report is in the store.
//! It signs only what it can vouch for:
//!
//! 1. the report at the location the run recorded hashes to the digest the run recorded;
//! 2. it is this run's report as the writer builds it from the run's status
//!    ([`report::differences`] is empty: identity including the run's UID, outcome,
//!    checks, RTO/RPO, restore point, timeline), names no other signer, and its pages are
//!    exactly what this version renders from it;
//! 3. it follows the anchored head: the next sequence number, linked to the head's digest
//!    (the previous report is read and its digest checked as well).
//!
//! Then it writes `<report>.json.sig` (reused when a valid one is there: sealing is
//! idempotent) and returns the advanced anchor, which the caller stores (a ConfigMap
//! update with the resourceVersion it read: two sealers cannot both advance). Blocking
//! (the store is).

use jiff::Timestamp;
use kube::ResourceExt;

use super::Error;
use super::anchor::{self, Anchor, NewHead};
use super::keys::{ALGORITHM, SigningKey};
use super::signature::{Envelope, ReportStatement, signature_key};
use crate::crd::dr_drill::DrillRun;
use crate::drill::report::{self, Report, Signer};
use crate::drill::store::ReportStore;

/// The signer entry a report names for `key`.
pub fn signer_of(key: &SigningKey) -> Signer {
    Signer {
        algorithm: ALGORITHM.into(),
        key_id: key.public().id().into(),
        public_key: key.public().to_base64(),
    }
}

/// What sealing produced.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// The report's key below the repository root.
    pub report_key: String,
    /// The signature stored at `<report_key>.sig`.
    pub signature: Envelope,
    /// False when a valid signature was already there.
    pub signature_written: bool,
    /// The anchor to store (unchanged when the report already was the head).
    pub anchor: Anchor,
    /// It, signed.
    pub anchor_envelope: Envelope,
}

fn refuse(why: String) -> Error {
    Error::NotAsRecorded(why)
}

/// Seals the report of `run`, which must follow `anchor` (the drill's current anchor, if
/// it has one). See the module documentation.
pub fn seal(
    store: &ReportStore,
    run: &DrillRun,
    key: &SigningKey,
    anchor: Option<&Anchor>,
    now: Timestamp,
) -> Result<Sealed, Error> {
    let status = run.status.clone().unwrap_or_default();
    let recorded = status
        .report
        .ok_or_else(|| refuse(format!("DrillRun {} records no report", run.name_any())))?;
    let report_key = store.key_of(&recorded.location).ok_or_else(|| {
        refuse(format!(
            "{} is not a report of this store",
            recorded.location
        ))
    })?;
    let bytes = store
        .get(&report_key)?
        .ok_or_else(|| refuse(format!("{} does not exist", recorded.location)))?;
    let sha = report::sha256(&bytes);
    if sha != recorded.sha256 {
        return Err(refuse(format!(
            "{} hashes to {sha}, the run recorded {}",
            recorded.location, recorded.sha256
        )));
    }
    let r: Report = serde_json::from_slice(&bytes)
        .map_err(|e| refuse(format!("{} is not a report: {e}", recorded.location)))?;
    let diff = report::differences(&r, run);
    if !diff.is_empty() {
        return Err(refuse(format!(
            "{} is not the run's report: it differs from the run's record in {}",
            recorded.location,
            diff.join(", ")
        )));
    }
    if let Some(s) = &r.signer
        && *s != signer_of(key)
    {
        return Err(refuse(format!(
            "{} names signer {}, not this installation's key {}",
            recorded.location,
            s.key_id,
            key.public().id()
        )));
    }
    check_pages(store, &r)?;
    let sequence = r
        .sequence
        .ok_or_else(|| refuse(format!("{} has no sequence number", recorded.location)))?;
    if let (Some(pk), Some(psha)) = (&r.previous_report, &r.previous_sha256) {
        let prev = store
            .get(pk)?
            .ok_or_else(|| refuse(format!("its previous report {pk} does not exist")))?;
        if report::sha256(&prev) != *psha {
            return Err(refuse(format!(
                "its previous report {pk} no longer hashes to the {psha} it links to"
            )));
        }
        let prev_seq = serde_json::from_slice::<Report>(&prev)
            .ok()
            .and_then(|p| p.sequence);
        if let Some(p) = prev_seq
            && p + 1 != sequence
        {
            return Err(refuse(format!(
                "its sequence number {sequence} does not follow its previous report's {p}"
            )));
        }
    }

    let head = NewHead {
        namespace: &r.namespace,
        drill: &r.drill,
        sequence,
        sha256: &sha,
        previous_sha256: r.previous_sha256.as_deref(),
        location: &recorded.location,
        run: &r.run,
        run_uid: r.run_uid.as_deref(),
        run_time: r.start_time.as_ref().map(|t| t.0),
        policy: r.policy.as_deref(),
    };
    let next = match anchor {
        // Sealed before (the anchor was stored, then something failed): same anchor.
        Some(a) if a.head_sha256 == sha && a.sequence == sequence => a.clone(),
        _ => anchor::advance(anchor, &head, now)?,
    };

    let statement = ReportStatement {
        namespace: r.namespace.clone(),
        drill: r.drill.clone(),
        run: r.run.clone(),
        run_uid: r.run_uid.clone(),
        sequence: Some(sequence),
        start_time: r.start_time.as_ref().map(|t| t.0),
        report_sha256: sha.clone(),
        previous_sha256: r.previous_sha256.clone(),
        signed_at: now,
    };
    let sig_key = signature_key(&report_key);
    let existing = store
        .get(&sig_key)?
        .and_then(|b| Envelope::from_bytes(&b).ok())
        .filter(|env| {
            env.open(std::slice::from_ref(key.public()))
                .ok()
                .and_then(|p| ReportStatement::parse(p).ok())
                .is_some_and(|s| {
                    ReportStatement {
                        signed_at: now,
                        ..s
                    } == statement
                })
        });
    let (signature, signature_written) = match existing {
        Some(env) => (env, false),
        None => {
            let env = statement.sign(key)?;
            store.put(&sig_key, env.to_bytes())?;
            (env, true)
        }
    };
    Ok(Sealed {
        report_key,
        signature,
        signature_written,
        anchor_envelope: next.sign(key)?,
        anchor: next,
    })
}

/// The report's pages are what this version renders from it.
fn check_pages(store: &ReportStore, r: &Report) -> Result<(), Error> {
    let mut bare = r.clone();
    bare.page = None;
    bare.html = None;
    let pages = [
        (r.page.as_ref(), report::render_markdown(&bare)),
        (r.html.as_ref(), crate::drill::html::render(&bare)),
    ];
    for (pref, rendered) in pages {
        let Some(pref) = pref else {
            continue;
        };
        let stored = store
            .get(&pref.key)?
            .ok_or_else(|| refuse(format!("its page {} does not exist", pref.key)))?;
        if report::sha256(&stored) != pref.sha256 || stored != rendered.as_bytes() {
            return Err(refuse(format!(
                "its page {} is not the page of the report",
                pref.key
            )));
        }
    }
    if r.page.is_none() {
        return Err(refuse("the report names no page".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crd::dr_drill::ReportRef;
    use crate::drill::chain::tests::{run, start};
    use crate::drill::chain::{self, AnchorInput, Trust};
    use crate::drill::store::WriteOptions;
    use crate::repo::backend::local::LocalStore;

    /// Writes run `i`'s report as the report Job will (naming the signer, linked to the
    /// anchored head) and records it on the run as the controller does.
    fn written(
        store: &ReportStore,
        key: &SigningKey,
        i: usize,
        after: Option<&Anchor>,
    ) -> DrillRun {
        let mut r = run(i);
        let w = store
            .write_as(
                &r,
                start(i) + jiff::SignedDuration::from_secs(90),
                &WriteOptions {
                    signer: Some(signer_of(key)),
                    after: after.map(|a| store.key_of(&a.head_location).unwrap()),
                },
            )
            .unwrap();
        r.status.as_mut().unwrap().report = Some(ReportRef {
            location: w.location,
            page_location: Some(w.page_location),
            sha256: w.sha256,
            previous_sha256: w.previous_sha256,
            ..ReportRef::default()
        });
        r
    }

    #[test]
    fn sealing_signs_what_the_run_recorded_and_advances_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::new(
            Arc::new(LocalStore::new(dir.path().to_path_buf())),
            "file:///repo".into(),
        );
        let key = SigningKey::generate().unwrap();
        let r1 = written(&store, &key, 1, None);
        let s1 = seal(&store, &r1, &key, None, start(1)).unwrap();
        assert!(s1.signature_written);
        assert_eq!((s1.anchor.sequence, s1.anchor.signed_since), (1, 1));
        // Idempotent: the signature is reused, the anchor stays.
        let again = seal(&store, &r1, &key, Some(&s1.anchor), start(2)).unwrap();
        assert!(!again.signature_written);
        assert_eq!(again.anchor, s1.anchor);

        let r2 = written(&store, &key, 2, Some(&s1.anchor));
        let s2 = seal(&store, &r2, &key, Some(&s1.anchor), start(2)).unwrap();
        assert_eq!(s2.anchor.sequence, 2);
        assert_eq!(s2.anchor.last_run, "orders-2");

        // What was sealed verifies, signatures and anchor included.
        let trust = Trust {
            keys: vec![key.public().clone()],
            anchor: AnchorInput::Present(s2.anchor_envelope.clone()),
            ..Trust::default()
        };
        let v = chain::verify(
            "shop",
            "orders",
            store.load("shop", "orders").unwrap(),
            &mut |k| store.get(k).ok().flatten(),
            &trust,
        );
        assert!(v.intact(), "{v:#?}");
        assert_eq!(v.links.iter().filter(|l| l.signed_by.is_some()).count(), 2);

        // A run sealed against an older anchor would fork the chain.
        let r3 = written(&store, &key, 3, Some(&s2.anchor));
        assert!(matches!(
            seal(&store, &r3, &key, Some(&s1.anchor), start(3)),
            Err(Error::Fork(_))
        ));
        // A stored report edited after the run recorded it is not signed.
        let k3 = store
            .key_of(
                &r3.status
                    .as_ref()
                    .unwrap()
                    .report
                    .as_ref()
                    .unwrap()
                    .location,
            )
            .unwrap();
        let text = String::from_utf8(store.get(&k3).unwrap().unwrap()).unwrap();
        store
            .put(
                &k3,
                text.replacen("\"Passed\"", "\"Failed\"", 1).into_bytes(),
            )
            .unwrap();
        let e = seal(&store, &r3, &key, Some(&s2.anchor), start(3)).unwrap_err();
        assert!(matches!(e, Error::NotAsRecorded(_)), "{e}");
        assert_eq!(e.category(), "ReportNotAsRecorded");
        // A report consistent with a digest the run never recorded (status and report
        // forged together) differs from the run's record.
        let mut forged = r3.clone();
        forged
            .status
            .as_mut()
            .unwrap()
            .report
            .as_mut()
            .unwrap()
            .sha256 = crate::drill::report::sha256(&store.get(&k3).unwrap().unwrap());
        let e = seal(&store, &forged, &key, Some(&s2.anchor), start(3)).unwrap_err();
        assert!(
            e.to_string()
                .contains("differs from the run's record in outcome"),
            "{e}"
        );
    }
}

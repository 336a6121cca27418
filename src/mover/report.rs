//! `lifeboat mover report --run NS/NAME --record FILE`: writes a finished drill run's
//! evidence report (JSON and Markdown page, linked into the drill's hash chain) next to
//! the repository, and reports its location and digests in the termination message
//! (`details`: `location`, `pageLocation`, `sha256`, `previousSha256`).
//!
//! The run's record is the DrillRun as the controller read it from the API when the run
//! reached Reporting, handed over as a file (a ConfigMap the controller wrote in its own
//! namespace, where the report mover runs): it is larger than any argument list should
//! be, and the mover needs no API access (movers hold no rights on run objects).
//!
//! With `--signing-key` (the installation's key, a Secret volume: this Job runs in the
//! controller's namespace, where no tenant reaches its pod) it names the key as the
//! report's signer, links the report to the drill's *anchored* head (`--anchor`, the
//! anchor the controller read) rather than to the newest object by key, and seals it
//! (`evidence::seal`: checked against the record, `<report>.json.sig` written, anchor
//! advanced). The advanced anchor goes back in the result (`anchor`, with
//! `signatureLocation`, `keyId`); the controller checks it is the next step of the anchor
//! it holds before storing it. A report it refuses to seal (not as recorded, a fork) is
//! still reported, with `sealFailure` and `sealMessage`: the run records why it is not
//! signed instead of failing without evidence.
//!
//! Before the report is built it runs the drill's immutability step
//! (`drill::immutability`) with the store's credentials it was given, the copy of the
//! store's Secrets every mover gets: on a store with `spec.immutability` it tries to
//! delete one pack's version; the answer goes into the report and back (`immutability`).

use super::{Error, RepoAccess};
use crate::crd::dr_drill::DrillRun;
use crate::crd::dr_drill::ReportRef;
use crate::drill::immutability;
use crate::drill::store::{ReportStore, WriteOptions, base_location};
use crate::evidence::anchor::Anchor;
use crate::evidence::keys::SigningKey;
use crate::evidence::seal;
use crate::evidence::signature::{Envelope, signature_key};
use crate::jobs::mover::command::WriteReport;
use crate::jobs::result::{MoverResult, RESULT_VERSION};

/// Reads the run's record, and checks it is the run the command names.
fn record(a: &WriteReport) -> Result<DrillRun, Error> {
    let text = std::fs::read_to_string(&a.record)
        .map_err(|e| Error::io(format!("reading {}", a.record.display()), e))?;
    let run: DrillRun = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("{} is not a DrillRun: {e}", a.record.display())))?;
    let named = (
        run.metadata.namespace.as_deref(),
        run.metadata.name.as_deref(),
    );
    if named != (Some(a.run.namespace.as_str()), Some(a.run.name.as_str())) {
        return Err(Error::input(format!(
            "{} holds DrillRun {:?}/{:?}, not {}",
            a.record.display(),
            named.0,
            named.1,
            a.run
        )));
    }
    Ok(run)
}

/// The signing key and the anchor the controller handed over, if it asked for signing.
fn signing(a: &WriteReport, run: &DrillRun) -> Result<Option<(SigningKey, Option<Anchor>)>, Error> {
    let Some(path) = &a.signing_key else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let key =
        SigningKey::from_pem(&pem).map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    // No anchor file: the drill's first signed report (the controller checks that when it
    // stores the result: a missing file cannot skip an anchor it holds).
    let anchor = match a.anchor.as_ref().map(std::fs::read) {
        None => None,
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
        Some(Err(e)) => return Err(Error::io("reading the anchor", e)),
        Some(Ok(bytes)) => {
            let env = Envelope::from_bytes(&bytes)
                .map_err(|e| Error::input(format!("the anchor: {e}")))?;
            // After a key rotation the anchor is signed by an older key the controller
            // still trusts: it hands those over next to the anchor.
            let mut trusted = vec![key.public().clone()];
            let listed = a
                .anchor
                .as_ref()
                .map(|p| p.with_file_name(crate::evidence::objects::PUBLIC_KEY_PEM));
            if let Some(Ok(pem)) = listed.map(std::fs::read_to_string) {
                trusted.extend(
                    crate::evidence::keys::PublicKey::all_from_pem(&pem)
                        .map_err(|e| Error::input(format!("the trusted keys: {e}")))?,
                );
            }
            Some(
                Anchor::open(&env, &trusted, &a.run.namespace, &run.spec.drill_ref.name)
                    .map_err(|e| Error::input(format!("the anchor: {e}")))?,
            )
        }
    };
    Ok(Some((key, anchor)))
}

fn write(a: WriteReport, repo: &RepoAccess) -> Result<MoverResult, Error> {
    let mut run = record(&a)?;
    let signing = signing(&a, &run)?;
    let opts = repo.options(true)?;
    let objects = opts.object_store()?;
    // Before the report is built: the attempt is part of what the report records, and a
    // deletion that succeeds fails the run. The controller applies the same result to the
    // run's status when it reads this Job's result, so report and record agree.
    let immutable = matches!(&opts.storage, crate::repo::Storage::S3(c) if c.object_lock.is_some());
    let probe =
        immutability::probe(objects.as_ref(), immutable).map_err(crate::repo::Error::Storage)?;
    tracing::info!(result = ?probe.result, object = ?probe.object, code = ?probe.code, "immutability step");
    immutability::apply(run.status.get_or_insert_default(), probe.clone());
    let store = ReportStore::new(objects, base_location(&opts.storage));
    let now = jiff::Timestamp::now();
    let w = store
        .write_as(
            &run,
            now,
            &WriteOptions {
                signer: signing.as_ref().map(|(k, _)| seal::signer_of(k)),
                after: signing
                    .as_ref()
                    .and_then(|(_, a)| a.as_ref())
                    .and_then(|a| store.key_of(&a.head_location)),
            },
        )
        .map_err(crate::repo::Error::Storage)?;
    tracing::info!(location = %w.location, sha256 = %w.sha256, created = w.created, "report written");
    let mut details = serde_json::Map::new();
    details.insert(
        "immutability".into(),
        serde_json::to_value(&probe).expect("a probe serializes"),
    );
    details.insert("location".into(), w.location.clone().into());
    details.insert("pageLocation".into(), w.page_location.clone().into());
    details.insert("sha256".into(), w.sha256.clone().into());
    if let Some(p) = &w.previous_sha256 {
        details.insert("previousSha256".into(), p.clone().into());
    }
    if let Some((key, anchor)) = &signing {
        // The run as the controller will record it once this Job reports.
        let mut recorded = run.clone();
        recorded.status.get_or_insert_default().report = Some(ReportRef {
            location: w.location.clone(),
            page_location: Some(w.page_location.clone()),
            sha256: w.sha256.clone(),
            previous_sha256: w.previous_sha256.clone(),
            ..ReportRef::default()
        });
        match seal::seal(&store, &recorded, key, anchor.as_ref(), now) {
            Ok(sealed) => {
                tracing::info!(sequence = sealed.anchor.sequence, "report sealed");
                details.insert(
                    "signatureLocation".into(),
                    store.location(&signature_key(&sealed.report_key)).into(),
                );
                details.insert("keyId".into(), key.public().id().to_string().into());
                details.insert(
                    "anchor".into(),
                    serde_json::to_string(&sealed.anchor_envelope)
                        .expect("an envelope serializes")
                        .into(),
                );
            }
            Err(crate::evidence::Error::Store(e)) if e.is_transient() => {
                return Err(crate::repo::Error::Storage(e).into());
            }
            Err(e) => {
                tracing::warn!(category = e.category(), error = %e, "report not sealed");
                details.insert("sealFailure".into(), e.category().into());
                // The termination message holds 4 KiB in all.
                let m: String = e.to_string().chars().take(600).collect();
                details.insert("sealMessage".into(), m.into());
            }
        }
    }
    // The pod's finish time has whole seconds only; the run's timeline wants better.
    details.insert(
        "finishedAt".into(),
        jiff::Timestamp::now().to_string().into(),
    );
    Ok(MoverResult {
        v: RESULT_VERSION,
        details,
        ..MoverResult::default()
    })
}

/// Runs `mover report`.
pub(crate) fn run(a: WriteReport, repo: &RepoAccess) -> Result<(), Error> {
    super::finish(write(a, repo))
}

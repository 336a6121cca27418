//! The drill's immutability step: on a store that claims immutability, try to remove one
//! pack's current version with the store's own credentials and record what the server
//! answered (`DrillRunStatus.immutability`, carried into the report); a deletion that
//! succeeds fails the run. Which pack, how the answer reads, and how it changes a run's
//! status. The S3 request itself is the engine's (`ObjectStore::try_delete_version`).
//!
//! The smallest pack is tried: if the store lets the version go, the engine writes the
//! bytes back, and the smallest is the cheapest to hold and rewrite.

use crate::crd::common::Failure;
use crate::crd::dr_drill::{
    DrillFailure, DrillOutcome, DrillRunStatus, ImmutabilityProbe, ImmutabilityResult,
};
use crate::repo::{DeletionAttempt, DeletionOutcome, ObjectStore, StoreError};

/// The step name a failure of this step carries.
pub const STEP: &str = "immutability";

/// The pack to try: the smallest under `data/` (ties: the first by name).
pub fn pick_pack(listed: &[(String, u64)]) -> Option<String> {
    listed
        .iter()
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
        .map(|(name, _)| format!("data/{name}"))
}

/// The record of an attempt.
pub fn of_attempt(a: &DeletionAttempt) -> ImmutabilityProbe {
    let mut p = ImmutabilityProbe {
        object: Some(a.path.clone()),
        version: a.version.clone(),
        ..ImmutabilityProbe::default()
    };
    match &a.outcome {
        DeletionOutcome::Refused { code } => {
            p.result = ImmutabilityResult::Refused;
            p.code = Some(code.clone());
            p.message = Some(format!(
                "deleting version {} of {} with the store's credentials was refused ({code})",
                a.version.as_deref().unwrap_or("?"),
                a.path
            ));
        }
        DeletionOutcome::Deleted => {
            p.result = ImmutabilityResult::Deleted;
            let after = if a.marker_removed {
                "; the server added a delete marker instead, which was removed"
            } else if a.rewritten {
                "; the object was written back"
            } else {
                ""
            };
            p.message = Some(format!(
                "version {} of {} was deleted with the store's credentials: the store is not \
                 immutable{after}",
                a.version.as_deref().unwrap_or("?"),
                a.path
            ));
        }
        DeletionOutcome::Unversioned => {
            p.result = ImmutabilityResult::Unversioned;
            p.message = Some(format!(
                "{} has no version ID: the bucket is not versioned, so it has no Object Lock \
                 (no deletion tried)",
                a.path
            ));
        }
    }
    p
}

/// The record of a store that does not claim immutability.
pub fn skipped() -> ImmutabilityProbe {
    ImmutabilityProbe {
        result: ImmutabilityResult::Skipped,
        message: Some("the store has no spec.immutability: no deletion was tried".into()),
        ..ImmutabilityProbe::default()
    }
}

fn error(object: Option<String>, message: String) -> ImmutabilityProbe {
    ImmutabilityProbe {
        result: ImmutabilityResult::Error,
        object,
        message: Some(message.chars().take(500).collect()),
        ..ImmutabilityProbe::default()
    }
}

/// Runs the step against `store` (the repository's root). `immutable`: the store claims
/// immutability. A transient store error is returned (the report Job fails and is
/// retried as any unwritable report); any other is recorded as an `Error` result.
pub fn probe(store: &dyn ObjectStore, immutable: bool) -> Result<ImmutabilityProbe, StoreError> {
    if !immutable {
        return Ok(skipped());
    }
    let listed = match store.list("data") {
        Ok(l) => l,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => return Ok(error(None, format!("listing the packs: {e}"))),
    };
    let Some(pack) = pick_pack(&listed) else {
        return Ok(error(None, "the repository has no pack to try".into()));
    };
    match store.try_delete_version(&pack) {
        Ok(Some(a)) => Ok(of_attempt(&a)),
        Ok(None) => Ok(error(
            Some(pack),
            "the store has no object versions (not S3)".into(),
        )),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => Ok(error(Some(pack), e.to_string())),
    }
}

/// Records `probe` in the run's status. Anything but a refusal (or a skip) fails a run
/// that had passed: the store does not hold what it claims, or the drill could not show
/// that it does. A run that had already failed keeps its first failure; a cancelled one
/// stays cancelled.
/// Returns the failure it set.
pub fn apply(status: &mut DrillRunStatus, probe: ImmutabilityProbe) -> Option<DrillFailure> {
    let reason = match probe.result {
        ImmutabilityResult::Skipped | ImmutabilityResult::Refused => None,
        ImmutabilityResult::Deleted | ImmutabilityResult::Unversioned => {
            Some("ImmutabilityNotEnforced")
        }
        ImmutabilityResult::Error => Some("ImmutabilityNotVerified"),
    };
    let message = probe.message.clone().unwrap_or_default();
    status.immutability = Some(probe);
    let reason = reason?;
    if matches!(
        status.outcome,
        Some(DrillOutcome::Failed | DrillOutcome::Cancelled)
    ) {
        return None;
    }
    let f = DrillFailure {
        step: STEP.into(),
        failure: Failure {
            reason: reason.into(),
            message,
        },
    };
    status.outcome = Some(DrillOutcome::Failed);
    status.failure = Some(f.clone());
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_pack_is_tried() {
        let l = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(n, s)| (n.to_string(), *s))
                .collect::<Vec<_>>()
        };
        assert_eq!(pick_pack(&[]), None);
        assert_eq!(
            pick_pack(&l(&[("ab/ab1", 900), ("cd/cd2", 300), ("ef/ef3", 4000)])),
            Some("data/cd/cd2".into())
        );
        assert_eq!(
            pick_pack(&l(&[("ff/ff9", 300), ("aa/aa1", 300)])),
            Some("data/aa/aa1".into())
        );
    }

    fn attempt(outcome: DeletionOutcome, marker_removed: bool, rewritten: bool) -> DeletionAttempt {
        DeletionAttempt {
            path: "data/ab/abcd".into(),
            version: Some("v1".into()),
            outcome,
            marker_removed,
            rewritten,
        }
    }

    /// (the record, result, code, failure reason on a passed run, message part)
    type Row = (
        ImmutabilityProbe,
        ImmutabilityResult,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );

    #[test]
    fn each_answer_reads_and_judges_the_run() {
        let refused = DeletionOutcome::Refused {
            code: "AccessDenied".into(),
        };
        let table: Vec<Row> = vec![
            (
                of_attempt(&attempt(refused, false, false)),
                ImmutabilityResult::Refused,
                Some("AccessDenied"),
                None,
                "version v1 of data/ab/abcd with the store's credentials was refused (AccessDenied)",
            ),
            (
                of_attempt(&attempt(DeletionOutcome::Deleted, false, true)),
                ImmutabilityResult::Deleted,
                None,
                Some("ImmutabilityNotEnforced"),
                "the store is not immutable; the object was written back",
            ),
            (
                of_attempt(&attempt(DeletionOutcome::Deleted, true, false)),
                ImmutabilityResult::Deleted,
                None,
                Some("ImmutabilityNotEnforced"),
                "a delete marker instead, which was removed",
            ),
            (
                of_attempt(&attempt(DeletionOutcome::Unversioned, false, false)),
                ImmutabilityResult::Unversioned,
                None,
                Some("ImmutabilityNotEnforced"),
                "not versioned",
            ),
            (
                skipped(),
                ImmutabilityResult::Skipped,
                None,
                None,
                "no spec.immutability",
            ),
            (
                error(None, "the repository has no pack to try".into()),
                ImmutabilityResult::Error,
                None,
                Some("ImmutabilityNotVerified"),
                "no pack",
            ),
        ];
        for (probe, result, code, reason, says) in table {
            assert_eq!(probe.result, result);
            assert_eq!(probe.code.as_deref(), code, "{probe:?}");
            assert!(
                probe.message.as_deref().unwrap().contains(says),
                "{probe:?}"
            );
            let mut passed = DrillRunStatus {
                outcome: Some(DrillOutcome::Passed),
                ..DrillRunStatus::default()
            };
            let set = apply(&mut passed, probe.clone());
            assert_eq!(passed.immutability.as_ref(), Some(&probe));
            assert_eq!(
                set.as_ref().map(|f| f.failure.reason.as_str()),
                reason,
                "{probe:?}"
            );
            assert_eq!(passed.failure, set);
            let want = if reason.is_some() {
                DrillOutcome::Failed
            } else {
                DrillOutcome::Passed
            };
            assert_eq!(passed.outcome, Some(want));
            // An already failed run keeps its first failure.
            let first = DrillFailure {
                step: "Restoring".into(),
                failure: Failure {
                    reason: "RestoreFailed".into(),
                    message: "x".into(),
                },
            };
            let mut failed = DrillRunStatus {
                outcome: Some(DrillOutcome::Failed),
                failure: Some(first.clone()),
                ..DrillRunStatus::default()
            };
            assert_eq!(apply(&mut failed, probe.clone()), None);
            assert_eq!(failed.failure, Some(first));
            assert_eq!(failed.immutability, Some(probe));
        }
    }

    #[test]
    fn the_report_carries_the_step_and_its_pages_show_it() {
        use crate::drill::report;
        let mut run = report::tests::run("r1", DrillOutcome::Passed, Some(60.0));
        let probe = of_attempt(&attempt(
            DeletionOutcome::Refused {
                code: "AccessDenied".into(),
            },
            false,
            false,
        ));
        apply(run.status.as_mut().unwrap(), probe.clone());
        let now: jiff::Timestamp = "2026-11-22T15:02:00Z".parse().unwrap();
        let r = report::build(&run, now, None, None);
        assert_eq!(r.immutability.as_ref(), Some(&probe));
        assert!(report::differences(&r, &run).is_empty());
        let md = report::render_markdown(&r);
        assert!(md.contains("## Immutability"), "{md}");
        assert!(
            md.contains("Refused: deleting version v1 of data/ab/abcd"),
            "{md}"
        );
        let html = crate::drill::html::render(&r);
        assert!(html.contains("<h2>Immutability</h2>"));
        assert!(html.contains(
            "<td class=\"ok\">Refused</td><td>data/ab/abcd</td><td>v1</td><td>AccessDenied</td>"
        ));

        // A report claiming a refusal the run does not record is not the run's.
        let mut forged = r.clone();
        forged.immutability = Some(skipped());
        assert_eq!(report::differences(&forged, &run), vec!["immutability"]);
        // A status without the field (CRDs older than it prune it) is not compared.
        let mut old = run.clone();
        old.status.as_mut().unwrap().immutability = None;
        assert!(report::differences(&r, &old).is_empty());
        // Without the step, the pages have no section.
        let plain = report::build(&old, now, None, None);
        assert!(!report::render_markdown(&plain).contains("Immutability"));
        assert!(!crate::drill::html::render(&plain).contains("Immutability"));
    }
}

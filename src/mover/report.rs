//! `lifeboat mover report --run NS/NAME --record FILE`: writes a finished drill run's
//! evidence report (JSON and Markdown page, linked into the drill's hash chain) next to
//! the repository, and reports its location and digests in the termination message
//! (`details`: `location`, `pageLocation`, `sha256`, `previousSha256`).
//!
//! The run's record is the DrillRun as the controller read it from the API when the run
//! reached Reporting, handed over as a file (a ConfigMap the controller wrote in its own
//! namespace, where the report mover runs): it is larger than any argument list should
//! be, and the mover needs no API access (movers hold no rights on run objects).

use super::{Error, RepoAccess};
use crate::crd::dr_drill::DrillRun;
use crate::drill::store::{ReportStore, base_location};
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

fn write(a: WriteReport, repo: &RepoAccess) -> Result<MoverResult, Error> {
    let run = record(&a)?;
    let opts = repo.options(true)?;
    let store = ReportStore::new(opts.object_store()?, base_location(&opts.storage));
    let w = store
        .write(&run, jiff::Timestamp::now())
        .map_err(crate::repo::Error::Storage)?;
    tracing::info!(location = %w.location, sha256 = %w.sha256, created = w.created, "report written");
    let mut details = serde_json::Map::new();
    details.insert("location".into(), w.location.into());
    details.insert("pageLocation".into(), w.page_location.into());
    details.insert("sha256".into(), w.sha256.into());
    if let Some(p) = w.previous_sha256 {
        details.insert("previousSha256".into(), p.into());
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

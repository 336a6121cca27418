//! `lifeboat mover report --run NS/NAME`: writes a finished drill run's evidence report
//! (JSON and Markdown page, linked into the drill's hash chain) next to the repository,
//! and reports its location and digests in the termination message (`details`:
//! `location`, `pageLocation`, `sha256`, `previousSha256`).
//!
//! The run's record is read from the API (`drillruns/status`, which the mover's role may
//! get), not passed on the command line: it is larger than any argument list should be,
//! and reading it here means the report shows exactly what the cluster recorded.

use kube::Api;

use super::{Error, RepoAccess};
use crate::crd::dr_drill::DrillRun;
use crate::drill::store::{ReportStore, base_location};
use crate::jobs::mover::command::WriteReport;
use crate::jobs::result::{MoverResult, RESULT_VERSION};

fn fetch(namespace: &str, name: &str) -> Result<DrillRun, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("no runtime: {e}")))?;
    rt.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| Error::from_kube("building a Kubernetes client", e))?;
        Api::<DrillRun>::namespaced(client, namespace)
            .get_status(name)
            .await
            .map_err(|e| Error::from_kube(&format!("reading DrillRun {namespace}/{name}"), e))
    })
}

fn write(a: WriteReport, repo: &RepoAccess) -> Result<MoverResult, Error> {
    let WriteReport { run } = a;
    let run = fetch(&run.namespace, &run.name)?;
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

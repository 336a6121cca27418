//! `backup cancel NAME` and `restore cancel NAME`: ask the controller to stop a running
//! Backup or Restore by setting the annotation `lifeboat.dev/cancel: "true"` (a merge
//! patch, so the caller needs `patch` on the object: a namespace editor has it), then,
//! with `--wait`, follow the run until it has stopped.

use std::time::Duration;

use clap::Args;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use super::cluster::{Call, Cluster};
use super::{KubeArgs, WaitArgs, follow, print_json, runtime};
use crate::cli::CliError;
use crate::crd::annotations;
use crate::crd::backup::Backup;
use crate::crd::restore::Restore;

/// Options of `backup cancel` and `restore cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The Backup or Restore to stop.
    name: String,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Outcome<'a> {
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    /// `requested` (annotation set), `cancelled` (seen stopped, with --wait), or
    /// `finished` (it had ended before the request: nothing was changed).
    result: &'a str,
    phase: String,
}

/// What the command needs to know about a run object.
trait Run: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug {
    const KIND: &'static str;
    const RESOURCE: &'static str;
    /// The phase (empty before the controller has seen it) and whether it is final.
    fn phase(&self) -> (String, bool);
}

impl Run for Backup {
    const KIND: &'static str = "Backup";
    const RESOURCE: &'static str = "backups";
    fn phase(&self) -> (String, bool) {
        let p = self.status.as_ref().and_then(|s| s.phase);
        (
            p.map(|p| p.as_str().to_string()).unwrap_or_default(),
            p.is_some_and(|p| p.is_finished()),
        )
    }
}

impl Run for Restore {
    const KIND: &'static str = "Restore";
    const RESOURCE: &'static str = "restores";
    fn phase(&self) -> (String, bool) {
        let p = self.status.as_ref().and_then(|s| s.phase);
        (
            p.map(|p| p.as_str().to_string()).unwrap_or_default(),
            p.is_some_and(|p| p.is_finished()),
        )
    }
}

/// Runs `backup cancel`.
pub fn backup(a: CancelArgs, json: bool) -> Result<(), CliError> {
    cancel::<Backup>(a, json)
}

/// Runs `restore cancel`.
pub fn restore(a: CancelArgs, json: bool) -> Result<(), CliError> {
    cancel::<Restore>(a, json)
}

fn cancel<K>(a: CancelArgs, json: bool) -> Result<(), CliError>
where
    K: Run<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    let CancelArgs { name, kube, wait } = a;
    runtime()?.block_on(async {
        let cluster = Cluster::connect(kube.context.as_deref()).await?;
        let ns = cluster.namespace(kube.namespace.as_deref());
        let api: Api<K> = Api::namespaced(cluster.client.clone(), &ns);
        let call = |verb| Call::new(verb, K::RESOURCE, K::KIND).ns(&ns).name(&name);
        let obj = match api.get(&name).await {
            Ok(o) => o,
            Err(e) => return Err(cluster.explain(&call("get"), e).await),
        };
        let (phase, finished) = obj.phase();
        if finished {
            // Nothing to stop; the record of a finished run never changes.
            return report(K::KIND, &ns, &name, "finished", phase, json);
        }
        let patch = serde_json::json!({
            "metadata": { "annotations": { annotations::CANCEL: "true" } }
        });
        let patched = match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(o) => o,
            Err(e) => return Err(cluster.explain(&call("patch"), e).await),
        };
        if !wait.wait {
            return report(K::KIND, &ns, &name, "requested", patched.phase().0, json);
        }
        let stopped = follow::poll(
            &api,
            &name,
            Duration::from_millis(500),
            wait.timeout,
            |o: &K, _| {
                let (phase, finished) = o.phase();
                finished.then_some(phase)
            },
        )
        .await?;
        match stopped {
            Ok(phase) => {
                let result = if phase == "Cancelled" {
                    "cancelled"
                } else {
                    "finished"
                };
                report(K::KIND, &ns, &name, result, phase, json)
            }
            Err(e) => Err(cluster.explain(&call("get"), e).await),
        }
    })
}

fn report(
    kind: &str,
    ns: &str,
    name: &str,
    result: &str,
    phase: String,
    json: bool,
) -> Result<(), CliError> {
    if json {
        return print_json(&Outcome {
            kind,
            namespace: ns,
            name,
            result,
            phase,
        });
    }
    let phase = if phase.is_empty() { "Pending" } else { &phase };
    match result {
        "requested" => println!("{kind} {ns}/{name}: cancel requested (phase {phase})"),
        "cancelled" => println!("{kind} {ns}/{name} cancelled"),
        _ => println!("{kind} {ns}/{name} had already finished ({phase}); nothing to cancel"),
    }
    Ok(())
}

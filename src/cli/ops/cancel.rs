//! `backup cancel NAME`, `restore cancel NAME` and `drill cancel RUN`: ask the controller
//! to stop a running Backup or Restore by setting the annotation `lifeboat.dev/cancel:
//! "true"` on it, or a DrillRun by naming it in its DRDrill's `lifeboat.dev/cancel-run`
//! (merge patches, so the caller needs `patch` on the object: a namespace editor has it on
//! all three kinds, and never on a DrillRun, the record), then, with `--wait`, follow the
//! run until it has stopped.

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
use crate::crd::dr_drill::{DRDrill, DrillPhase, DrillRun};
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

/// Options of `drill cancel` (the namespace and context come from the `drill` command).
#[derive(Args, Debug)]
pub struct DrillCancelArgs {
    /// The DrillRun to stop.
    run: String,
    #[command(flatten)]
    wait: WaitArgs,
}

impl Run for DrillRun {
    const KIND: &'static str = "DrillRun";
    const RESOURCE: &'static str = "drillruns";
    /// A DrillRun's phase is its progress; a finished run's outcome is what the command
    /// reports (`Passed`, `Failed`, `Cancelled`).
    fn phase(&self) -> (String, bool) {
        let s = self.status.clone().unwrap_or_default();
        if s.phase == Some(DrillPhase::Completed) {
            let o = s.outcome.map(|o| o.as_str()).unwrap_or_default();
            return (o.to_string(), true);
        }
        (s.phase.map(|p| format!("{p:?}")).unwrap_or_default(), false)
    }
}

/// Runs `drill cancel`: names the run in its DRDrill's `lifeboat.dev/cancel-run`.
pub fn drill_run(a: DrillCancelArgs, kube: KubeArgs, json: bool) -> Result<(), CliError> {
    let DrillCancelArgs { run, wait } = a;
    runtime()?.block_on(async {
        let cluster = Cluster::connect(kube.context.as_deref()).await?;
        let ns = cluster.namespace(kube.namespace.as_deref());
        let runs: Api<DrillRun> = Api::namespaced(cluster.client.clone(), &ns);
        let obj = match runs.get(&run).await {
            Ok(o) => o,
            Err(e) => {
                let c = Call::new("get", "drillruns", "DrillRun").ns(&ns).name(&run);
                return Err(cluster.explain(&c, e).await);
            }
        };
        let (phase, finished) = obj.phase();
        if finished {
            return report("DrillRun", &ns, &run, "finished", phase, json);
        }
        let drill = obj.spec.drill_ref.name.clone();
        let patch = serde_json::json!({
            "metadata": { "annotations": { annotations::CANCEL_RUN: run } }
        });
        let drills: Api<DRDrill> = Api::namespaced(cluster.client.clone(), &ns);
        if let Err(e) = drills
            .patch(&drill, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            let c = Call::new("patch", "drdrills", "DRDrill")
                .ns(&ns)
                .name(&drill);
            return Err(cluster.explain(&c, e).await);
        }
        if !wait.wait {
            return report("DrillRun", &ns, &run, "requested", phase, json);
        }
        wait_stopped(&runs, &cluster, &ns, &run, wait, json).await
    })
}

/// Follows a run until it is finished and reports how it ended.
async fn wait_stopped<K>(
    api: &Api<K>,
    cluster: &Cluster,
    ns: &str,
    name: &str,
    wait: WaitArgs,
    json: bool,
) -> Result<(), CliError>
where
    K: Run<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    let stopped = follow::poll(
        api,
        name,
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
            report(K::KIND, ns, name, result, phase, json)
        }
        Err(e) => {
            let call = Call::new("get", K::RESOURCE, K::KIND).ns(ns).name(name);
            Err(cluster.explain(&call, e).await)
        }
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
        wait_stopped(&api, &cluster, &ns, &name, wait, json).await
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

//! What a drill run's report Job reads, in the controller's namespace (its record
//! ConfigMap: the run as the controller read it, the drill's anchor and the trusted keys;
//! a copy of the store's Secrets), and removing the record afterwards.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, DeleteParams, PostParams};

use super::super::access::{self, rbac};
use super::super::{Context, Error, Result, evidence};
use super::{ok_exists, plan};
use crate::crd::dr_drill::DrillRun;

/// What the report Job reads, in the controller's namespace: a copy of the store's
/// Secrets, and the run's record as read now (the plan asks for these only once the
/// status that says Reporting is stored, so the record holds the outcome and checks).
pub(super) async fn write_report_inputs(
    ctx: &Context,
    run: &DrillRun,
    store: Option<&access::Store>,
) -> Result<()> {
    let client = &ctx.client;
    let home = &ctx.config.namespace;
    let uid = run.meta().uid.clone().unwrap_or_default();
    let Some(s) = store else {
        return Err(Error::Blocked {
            reason: "StoreNotFound",
            message: "the run's store is not usable for the report".into(),
        });
    };
    match access::read_secrets(client, &ctx.config, s).await? {
        Ok(secrets) => {
            access::write_mirror(
                client,
                &secrets,
                Default::default(),
                home,
                &plan::report_mirror_name(run),
                plan::run_labels(run, "store-credentials"),
                access::MirrorOwner::Uid(uid.clone()),
            )
            .await?
        }
        Err(f) => {
            return Err(Error::Blocked {
                reason: "SecretNotReadable",
                message: format!("{}: {}", f.reason, f.message),
            });
        }
    }
    rbac::ensure_service_account(ctx, home).await?;
    let mut record = run.clone();
    record.metadata.managed_fields = None;
    let mut data = BTreeMap::from([(
        plan::RECORD_KEY.to_string(),
        serde_json::to_string(&record).expect("a DrillRun serializes"),
    )]);
    evidence::report_inputs(ctx, run, &mut data).await?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(plan::report_record_name(run)),
            namespace: Some(home.clone()),
            labels: Some(plan::run_labels(run, "drill-record")),
            annotations: Some(BTreeMap::from([(
                crate::crd::annotations::OWNER_UID.to_string(),
                uid,
            )])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    };
    ok_exists(
        Api::<ConfigMap>::namespaced(client.clone(), home)
            .create(&PostParams::default(), &cm)
            .await,
    )?;
    Ok(())
}

/// Deletes the run's record ConfigMap, if it is this run's.
pub(super) async fn delete_record(ctx: &Context, run: &DrillRun) -> Result<()> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let name = plan::report_record_name(run);
    let Some(cm) = api.get_opt(&name).await? else {
        return Ok(());
    };
    if access::owned_by(&cm.metadata, run.meta().uid.as_deref()) {
        ok_exists(api.delete(&name, &DeleteParams::background()).await)?;
    }
    Ok(())
}

//! The installation's evidence key and the drills' anchors, as the controller keeps them
//! in its own namespace (docs/evidence.md): the signing key is made once (a create-only,
//! immutable Secret), its public half published (a ConfigMap, server-side applied), and
//! the anchor a report Job returns is stored only when it is the next step of the anchor
//! the controller holds (a replace with the resourceVersion read).
//!
//! The signing itself happens in the report Job (`crate::mover::report`), which mounts
//! the Secret: this process only needs the public keys to check what the Job returns.

use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use super::{Context, MANAGER, Result};
use crate::config::Config;
use crate::crd::dr_drill::{DrillRun, ReportRef};
use crate::evidence::anchor::{self, Anchor, NewHead};
use crate::evidence::keys::{PublicKey, SigningKey};
use crate::evidence::objects;
use crate::evidence::signature::Envelope;

/// Whether the installation can sign, as found at start.
#[derive(Clone, Debug)]
pub enum KeyState {
    /// Not looked at yet, or signing is off (`--evidence-prefix=`).
    Off,
    /// The trusted public keys, the signing one first.
    Ready(Arc<Vec<PublicKey>>),
    /// The key could not be made or read: reports are written unsigned, and each run says
    /// so in its `EvidenceSigned` condition.
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// The key state shared by the reconcilers.
#[derive(Debug)]
pub struct Keys(RwLock<KeyState>);

impl Default for Keys {
    fn default() -> Self {
        Keys(RwLock::new(KeyState::Off))
    }
}

impl Keys {
    pub fn get(&self) -> KeyState {
        self.0.read().expect("lock poisoned").clone()
    }

    fn set(&self, s: KeyState) {
        *self.0.write().expect("lock poisoned") = s;
    }

    /// The configuration report Jobs are built with: without the key's name unless the
    /// key is usable (a Job mounting a Secret that is not a key would fail the run).
    pub fn config_for_reports(&self, config: &Arc<Config>) -> Arc<Config> {
        match (self.get(), &config.evidence_prefix) {
            (KeyState::Ready(_), Some(_)) | (_, None) => config.clone(),
            _ => Arc::new(Config {
                evidence_prefix: None,
                ..(**config).clone()
            }),
        }
    }
}

/// Why the key is not usable: bounded reason and message.
#[derive(Debug)]
struct KeyFailure {
    reason: &'static str,
    message: String,
}

impl From<kube::Error> for KeyFailure {
    fn from(e: kube::Error) -> Self {
        KeyFailure {
            reason: match &e {
                kube::Error::Api(s) if s.code == 403 => "Forbidden",
                _ => "KubernetesApi",
            },
            message: e.to_string(),
        }
    }
}

impl From<crate::evidence::Error> for KeyFailure {
    fn from(e: crate::evidence::Error) -> Self {
        KeyFailure {
            reason: e.category(),
            message: e.to_string(),
        }
    }
}

/// Reads the signing key, making it if there is none (never replacing one: a new key
/// would orphan every signature of the old), and publishes the public keys: the current
/// one first, then those already published (they signed older reports).
async fn ensure(
    client: &Client,
    namespace: &str,
    prefix: &str,
) -> std::result::Result<Vec<PublicKey>, KeyFailure> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let name = objects::signing_key_name(prefix);
    let secret = match secrets.get_opt(&name).await? {
        Some(s) => s,
        None => {
            let key = SigningKey::generate()?;
            match secrets
                .create(
                    &PostParams::default(),
                    &objects::signing_key_secret(prefix, namespace, &key),
                )
                .await
            {
                Ok(s) => {
                    tracing::info!(secret = %name, key_id = %key.public().id(), "made the evidence signing key");
                    s
                }
                // Another replica made it first: use that one.
                Err(kube::Error::Api(e)) if e.code == 409 => secrets.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let key = objects::signing_key_of(&secret)?;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let cm_name = objects::public_key_name(prefix);
    let mut keys = vec![key.public().clone()];
    if let Some(cm) = cms.get_opt(&cm_name).await?
        && let Ok(old) = objects::public_keys_of(&cm)
    {
        keys.extend(old.into_iter().filter(|k| k != key.public()));
    }
    let mut cm = objects::public_key_config_map(prefix, namespace, &keys);
    cm.metadata.managed_fields = None;
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": cm.metadata,
        "data": cm.data,
    });
    cms.patch(
        &cm_name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(keys)
}

/// Looks at the key once (the leader, before the controllers start, so the first report
/// is already signed) and records the outcome.
pub async fn start(ctx: &Context) {
    let Some(prefix) = &ctx.config.evidence_prefix else {
        tracing::warn!("--evidence-prefix is empty: drill reports are not signed");
        return;
    };
    match ensure(&ctx.client, &ctx.config.namespace, prefix).await {
        Ok(keys) => {
            tracing::info!(key_id = %keys[0].id(), "evidence signing key ready");
            ctx.metrics.evidence_key_ready(true);
            ctx.evidence.set(KeyState::Ready(Arc::new(keys)));
        }
        Err(f) => {
            tracing::error!(reason = f.reason, error = %f.message, "the evidence signing key is not usable: drill reports will be written unsigned");
            ctx.metrics.evidence_key_ready(false);
            ctx.evidence.set(KeyState::Failed {
                reason: f.reason,
                message: f.message,
            });
        }
    }
}

/// Tries again every minute while the key is not usable (an API outage at start, or an
/// administrator replacing a broken Secret).
pub async fn retry(ctx: Arc<Context>) {
    loop {
        if !matches!(ctx.evidence.get(), KeyState::Failed { .. }) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        start(&ctx).await;
    }
}

/// What storing a returned anchor came to, when it did not fail on the API.
pub enum Stored {
    /// The anchor is at this run's report.
    Anchored,
    /// Not stored: the bounded reason and why.
    Refused {
        reason: &'static str,
        message: String,
    },
}

fn refused(reason: &'static str, message: impl Into<String>) -> Result<Stored> {
    Ok(Stored::Refused {
        reason,
        message: message.into(),
    })
}

/// Checks the anchor envelope a run's report Job returned (`returned`, JSON) and stores
/// it as the drill's anchor. It must be signed by a trusted key, name this run and its
/// recorded report, and be exactly the next step from the anchor stored now
/// (`anchor::advance`: next sequence number, linked to its head); the write replaces the
/// object at the resourceVersion read, so two runs cannot both advance from one head.
/// API failures are errors (retried); everything else is a refusal the run records.
pub async fn store_anchor(
    ctx: &Context,
    run: &DrillRun,
    report: &ReportRef,
    returned: &str,
) -> Result<Stored> {
    let KeyState::Ready(keys) = ctx.evidence.get() else {
        return refused(
            "EvidenceKeyInvalid",
            "the controller has no usable evidence key to check the anchor with",
        );
    };
    let ns = run.namespace().unwrap_or_default();
    let drill = run.spec.drill_ref.name.clone();
    let env = match Envelope::from_bytes(returned.as_bytes()) {
        Ok(e) => e,
        Err(e) => return refused("AnchorInvalid", format!("the returned anchor: {e}")),
    };
    let a = match Anchor::open(&env, &keys, &ns, &drill) {
        Ok(a) => a,
        Err(e) => return refused("AnchorInvalid", format!("the returned anchor: {e}")),
    };
    let this_run = a.last_run == run.name_any()
        && a.last_run_uid.as_deref() == run.metadata.uid.as_deref()
        && a.head_sha256 == report.sha256
        && a.head_location == report.location;
    if !this_run {
        return refused(
            "AnchorInvalid",
            format!(
                "the returned anchor is at run {} ({}), not this run's report {}",
                a.last_run, a.head_sha256, report.sha256
            ),
        );
    }
    let cms = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let name = objects::anchor_name(&ns, &drill);
    let current = cms.get_opt(&name).await?;
    let previous = match &current {
        None => None,
        Some(cm) => {
            let opened = objects::anchor_envelope_of(cm)
                .map_err(|e| e.to_string())
                .and_then(|e| Anchor::open(&e, &keys, &ns, &drill).map_err(|e| e.to_string()));
            match opened {
                Ok(p) => Some(p),
                // Never overwrite an anchor that does not verify: it is the evidence
                // that someone wrote it.
                Err(e) => {
                    return refused("AnchorInvalid", format!("the stored anchor {name}: {e}"));
                }
            }
        }
    };
    if let Some(p) = &previous
        && p.sequence == a.sequence
        && p.head_sha256 == a.head_sha256
    {
        // Stored by an earlier attempt of this reconcile.
        return Ok(Stored::Anchored);
    }
    let head = NewHead {
        namespace: &a.namespace,
        drill: &a.drill,
        sequence: a.sequence,
        sha256: &a.head_sha256,
        previous_sha256: report.previous_sha256.as_deref(),
        location: &a.head_location,
        run: &a.last_run,
        run_uid: a.last_run_uid.as_deref(),
        run_time: a.last_run_time,
        policy: a.policy.as_deref(),
    };
    match anchor::advance(previous.as_ref(), &head, a.updated_at) {
        Ok(expected) if expected == a => {}
        Ok(_) => {
            return refused(
                "AnchorInvalid",
                "the returned anchor is not the next step of the stored one",
            );
        }
        Err(e) => return refused(e.category(), e.to_string()),
    }
    let mut cm = objects::anchor_config_map(&ctx.config.namespace, &a, &env);
    match current {
        Some(old) => {
            cm.metadata.resource_version = old.metadata.resource_version;
            cms.replace(&name, &PostParams::default(), &cm).await?;
        }
        None => {
            cms.create(&PostParams::default(), &cm).await?;
        }
    }
    Ok(Stored::Anchored)
}

/// What the report Job gets next to the run's record: the drill's anchor as stored now
/// (`anchor.json`; the Job opens it with the key, and [`store_anchor`] checks what comes
/// back) and the trusted public keys (`public-key.pem`: after a rotation the anchor is
/// signed by an older key).
pub async fn report_inputs(
    ctx: &Context,
    run: &DrillRun,
    data: &mut std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let KeyState::Ready(keys) = ctx.evidence.get() else {
        return Ok(());
    };
    let anchor = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.config.namespace)
        .get_opt(&objects::anchor_name(
            &run.namespace().unwrap_or_default(),
            &run.spec.drill_ref.name,
        ))
        .await?;
    if let Some(text) = anchor
        .and_then(|cm| cm.data)
        .and_then(|mut d| d.remove(objects::ANCHOR_JSON))
    {
        data.insert(
            crate::controller::drill_run::plan::RECORD_ANCHOR_KEY.to_string(),
            text,
        );
    }
    data.insert(
        objects::PUBLIC_KEY_PEM.to_string(),
        keys.iter().map(|k| k.to_pem()).collect(),
    );
    Ok(())
}

/// Stores the anchor the report Job returned (see `evidence::store_anchor`) and records
/// on the run whether its report is signed and anchored.
pub async fn anchor_report(
    ctx: &Context,
    run: &DrillRun,
    plan: &mut crate::controller::drill_run::plan::Plan,
    returned: &str,
) -> Result<()> {
    let Some(report) = plan.status.report.clone() else {
        return Ok(());
    };
    let (signed, reason, message) = match store_anchor(ctx, run, &report, returned).await? {
        Stored::Anchored => (
            true,
            "Sealed",
            format!(
                "signed by key {} ({}); the drill's anchor is at this report",
                report.key_id.as_deref().unwrap_or("?"),
                report.signature_location.as_deref().unwrap_or("?")
            ),
        ),
        Stored::Refused { reason, message } => (
            false,
            reason,
            format!(
                "the report is signed but the drill's anchor was not advanced to it: {message}"
            ),
        ),
    };
    super::drill_run::plan::set_evidence_signed(
        plan,
        run.metadata.generation,
        Timestamp::now(),
        signed,
        reason,
        message,
    );
    Ok(())
}

/// Counts a report's sealing outcome once, when its `EvidenceSigned` condition is first
/// written.
pub fn record_seal(ctx: &Context, run: &DrillRun, plan: &crate::controller::drill_run::plan::Plan) {
    let had = |s: &crate::crd::dr_drill::DrillRunStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == crate::crd::common::condition::EVIDENCE_SIGNED)
            .map(|c| (c.status == "True", c.reason.clone()))
    };
    if run.status.as_ref().and_then(had).is_some() {
        return;
    }
    if let Some((signed, reason)) = had(&plan.status) {
        ctx.metrics.record_seal(if signed {
            "Sealed"
        } else {
            super::drill_run::plan::seal_reason(&reason)
        });
    }
}

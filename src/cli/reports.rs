//! What the evidence commands (`lifeboat drill report|verify-chain`, `lifeboat evidence
//! export`) read from the cluster and the store: a kube client, the store of a drill's
//! policy with the credentials its Secrets hold (for a client outside the cluster), the
//! reports in it, and the installation's evidence objects in the controller's namespace
//! (the trusted public keys, each drill's signed anchor).
//!
//! Reports are plain objects: reading them never needs the repository password.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::config::KubeConfigOptions;
use kube::{Client, ResourceExt};

use super::{CliError, RepoArgs};
use crate::crd::backup_policy::{BackupPolicy, StoreKind};
use crate::crd::store::{BackupStore, BackupStoreSpec, ClusterBackupStore};
use crate::drill::chain::AnchorInput;
use crate::drill::store::{ReportStore, base_location};
use crate::evidence::keys::PublicKey;
use crate::evidence::objects;
use crate::repo::{ObjectStore, RepoOptions, S3Credentials, Secret, Storage};

pub(crate) fn kube_err(what: &str, e: kube::Error) -> CliError {
    let category = match &e {
        kube::Error::Api(s) if s.code == 403 => "Forbidden",
        kube::Error::Api(s) if s.code == 404 => "NotFound",
        kube::Error::Api(_) => "KubernetesApi",
        _ => "KubernetesClient",
    };
    CliError {
        category,
        message: format!("{what}: {e}"),
    }
}

pub(crate) fn not_found(message: String) -> CliError {
    CliError {
        category: "NotFound",
        message,
    }
}

pub(crate) fn broken(message: String) -> CliError {
    CliError {
        category: "ChainBroken",
        message,
    }
}

pub(crate) async fn client(context: Option<String>) -> Result<Client, CliError> {
    let opts = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let config = match kube::Config::from_kubeconfig(&opts).await {
        Ok(c) => c,
        // No kubeconfig: inside a pod, the in-cluster configuration.
        Err(_) if opts.context.is_none() => kube::Config::infer().await.map_err(|e| CliError {
            category: "KubernetesClient",
            message: format!("no Kubernetes configuration (KUBECONFIG or in-cluster): {e}"),
        })?,
        Err(e) => {
            return Err(CliError {
                category: "KubernetesClient",
                message: format!("reading the kubeconfig: {e}"),
            });
        }
    };
    Client::try_from(config).map_err(|e| kube_err("building a Kubernetes client", e))
}

/// What the store's Secrets hold, for a client outside the cluster.
pub(crate) struct StoreAccess {
    spec: BackupStoreSpec,
    access_key: Option<(String, Secret, Option<Secret>)>,
    ca_bundle: Option<Vec<u8>>,
}

pub(crate) async fn secret_value(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<Vec<u8>>, CliError> {
    let s = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| kube_err(&format!("reading Secret {ns}/{name}"), e))?;
    let v = s.and_then(|s| s.data).and_then(|mut d| d.remove(key));
    match v {
        Some(b) => Ok(Some(b.0)),
        None if optional => Ok(None),
        None => Err(not_found(format!("Secret {ns}/{name} has no key {key:?}"))),
    }
}

pub(crate) async fn store_access(
    client: &Client,
    ns: &str,
    policy_name: &str,
    env_credentials: bool,
) -> Result<StoreAccess, CliError> {
    let policy = Api::<BackupPolicy>::namespaced(client.clone(), ns)
        .get_opt(policy_name)
        .await
        .map_err(|e| kube_err("reading the BackupPolicy", e))?
        .ok_or_else(|| not_found(format!("BackupPolicy {ns}/{policy_name} does not exist")))?;
    let store = &policy.spec.store_ref;
    let (spec, secret_ns) = match store.kind {
        StoreKind::BackupStore => {
            let s = Api::<BackupStore>::namespaced(client.clone(), ns)
                .get_opt(&store.name)
                .await
                .map_err(|e| kube_err("reading the BackupStore", e))?
                .ok_or_else(|| {
                    not_found(format!("BackupStore {ns}/{} does not exist", store.name))
                })?;
            (s.spec, Some(ns.to_string()))
        }
        StoreKind::ClusterBackupStore => {
            let s = Api::<ClusterBackupStore>::all(client.clone())
                .get_opt(&store.name)
                .await
                .map_err(|e| kube_err("reading the ClusterBackupStore", e))?
                .ok_or_else(|| {
                    not_found(format!("ClusterBackupStore {} does not exist", store.name))
                })?;
            (s.spec.store, None)
        }
    };
    let ns_of = |explicit: &Option<String>| {
        explicit
            .clone()
            .or(secret_ns.clone())
            .unwrap_or_else(|| ns.to_string())
    };
    let mut access_key = None;
    if let (Some(c), false) = (&spec.s3.credentials, env_credentials) {
        let sns = ns_of(&c.namespace);
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).trim().to_string();
        let id = secret_value(client, &sns, &c.name, c.access_key_id_key(), false).await?;
        let key = secret_value(client, &sns, &c.name, c.secret_access_key_key(), false).await?;
        let token = secret_value(client, &sns, &c.name, c.session_token_key(), true).await?;
        access_key = Some((
            text(id.unwrap_or_default()),
            Secret::new(text(key.unwrap_or_default())),
            token.map(|t| Secret::new(text(t))),
        ));
    }
    let ca_bundle = match &spec.s3.ca_bundle {
        Some(ca) => secret_value(client, &ns_of(&ca.namespace), &ca.name, &ca.key, false).await?,
        None => None,
    };
    Ok(StoreAccess {
        spec,
        access_key,
        ca_bundle,
    })
}

/// A private temporary file for the store's CA bundle, removed when dropped.
pub(crate) struct TempCa(pub(crate) Option<PathBuf>);

impl Drop for TempCa {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Opens the reports of a store. Blocking: call outside the async runtime.
pub(crate) fn open_reports(
    access: StoreAccess,
    repo: &RepoArgs,
    ca_file: &mut TempCa,
) -> Result<ReportStore, CliError> {
    let spec = &access.spec;
    let mut repo = repo.clone();
    if repo.repository.is_none() {
        let target = crate::jobs::mover::StoreTarget::from_spec(spec, None);
        repo.repository = Some(target.repository);
        repo.s3.s3_region = Some(target.region);
        repo.s3.s3_path_style = target.path_style;
    }
    let mut opts: RepoOptions = repo.options(true)?;
    if let Storage::S3(c) = &mut opts.storage {
        if repo.s3.s3_access_key_id.is_none()
            && let Some((id, key, token)) = access.access_key
        {
            c.credentials = S3Credentials::Static {
                access_key_id: id,
                secret_access_key: key,
                session_token: token,
            };
        }
        if c.ca_bundle.is_none()
            && let Some(pem) = &access.ca_bundle
        {
            let path = std::env::temp_dir().join(format!(
                "lifeboat-drill-ca-{}-{:08x}.pem",
                std::process::id(),
                rand::random::<u32>()
            ));
            ca_file.0 = Some(path.clone());
            std::fs::write(&path, pem).map_err(|e| CliError {
                category: "LocalIo",
                message: format!("writing the store's CA bundle: {e}"),
            })?;
            c.ca_bundle = Some(path);
        }
    }
    let store: Arc<dyn ObjectStore> = opts.object_store()?;
    Ok(ReportStore::new(store, base_location(&opts.storage)))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError {
            category: "Internal",
            message: format!("no runtime: {e}"),
        })
}

pub(crate) fn get(store: &ReportStore, key: &str) -> Result<Vec<u8>, CliError> {
    store
        .get(key)
        .map_err(crate::repo::Error::Storage)?
        .ok_or_else(|| {
            not_found(format!(
                "{} does not exist in the store",
                store.location(key)
            ))
        })
}

fn forbidden_hint(what: &str, controller_namespace: &str, e: kube::Error) -> CliError {
    let mut err = kube_err(what, e);
    if err.category == "Forbidden" {
        err.message = format!(
            "{}; the evidence objects are ConfigMaps in {controller_namespace}: ask for get and list on configmaps there (or pass --public-key FILE)",
            err.message
        );
    }
    err
}

/// The note when the evidence objects may not be read: the chain is still checked against
/// what the user may read, and the verdict says what was not checked and how to get it.
fn forbidden_note(controller_namespace: &str) -> String {
    format!(
        "the evidence key and anchors (ConfigMaps in {controller_namespace}) may not be read with your rights: signatures and the anchor were not checked; ask for get and list on configmaps there, or pass --public-key FILE"
    )
}

/// The name prefix of the installation's evidence objects (the chart's full name):
/// `LIFEBOAT_EVIDENCE_PREFIX`, as the controller's flag, else `lifeboat`.
fn evidence_prefix() -> String {
    std::env::var("LIFEBOAT_EVIDENCE_PREFIX")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "lifeboat".into())
}

/// The installation's trusted public keys: from `--public-key FILE` when given, else
/// from the ConfigMap the controller publishes. Empty (with a note) when the
/// installation publishes none; an error when it cannot be read.
pub(crate) async fn public_keys(
    client: &Client,
    controller_namespace: &str,
    file: Option<&PathBuf>,
) -> Result<(Vec<PublicKey>, Option<String>), CliError> {
    if let Some(f) = file {
        return Ok((read_public_keys(f)?, None));
    }
    let cms = Api::<ConfigMap>::namespaced(client.clone(), controller_namespace)
        .list(&ListParams::default().labels(&objects::selector(objects::PUBLIC_KEY)))
        .await;
    let cms = match cms {
        Ok(l) => l.items,
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        // Tenants may not list there (the report Jobs' records of every namespace are
        // ConfigMaps there too); the chart lets everyone read the public key by name.
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let name = objects::public_key_name(&evidence_prefix());
            match Api::<ConfigMap>::namespaced(client.clone(), controller_namespace)
                .get_opt(&name)
                .await
            {
                Ok(cm) => cm.into_iter().collect(),
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    return Ok((Vec::new(), Some(forbidden_note(controller_namespace))));
                }
                Err(e) => {
                    return Err(forbidden_hint(
                        "reading the evidence public key",
                        controller_namespace,
                        e,
                    ));
                }
            }
        }
        Err(e) => {
            return Err(forbidden_hint(
                "reading the evidence public key",
                controller_namespace,
                e,
            ));
        }
    };
    let mut keys = Vec::new();
    for cm in &cms {
        keys.extend(objects::public_keys_of(cm).map_err(|e| CliError {
            category: "ChainBroken",
            message: format!("ConfigMap {controller_namespace}/{}: {e}", cm.name_any()),
        })?);
    }
    let note = keys.is_empty().then(|| {
        format!("no evidence public key is published in namespace {controller_namespace}")
    });
    Ok((keys, note))
}

/// Reads a `--public-key` file.
pub(crate) fn read_public_keys(path: &PathBuf) -> Result<Vec<PublicKey>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError {
        category: "LocalIo",
        message: format!("reading {}: {e}", path.display()),
    })?;
    PublicKey::all_from_pem(&text).map_err(|e| CliError::input(format!("{}: {e}", path.display())))
}

/// A drill's anchor ConfigMap, looked up by name.
pub(crate) async fn anchor(
    client: &Client,
    controller_namespace: &str,
    namespace: &str,
    drill: &str,
) -> Result<AnchorInput, CliError> {
    let name = objects::anchor_name(namespace, drill);
    let cm = match Api::<ConfigMap>::namespaced(client.clone(), controller_namespace)
        .get_opt(&name)
        .await
    {
        // The verdict notes that no anchor was consulted.
        Err(kube::Error::Api(s)) if s.code == 403 => return Ok(AnchorInput::NotConsulted),
        r => {
            r.map_err(|e| forbidden_hint("reading the drill's anchor", controller_namespace, e))?
        }
    };
    Ok(match cm {
        None => AnchorInput::Missing,
        Some(cm) => match objects::anchor_envelope_of(&cm) {
            Ok(env) => AnchorInput::Present(env),
            // Unreadable: passed on as an envelope that cannot verify.
            Err(e) => AnchorInput::Present(crate::evidence::signature::Envelope {
                format: String::new(),
                algorithm: String::new(),
                key_id: String::new(),
                payload: e.to_string(),
                signature: String::new(),
            }),
        },
    })
}

pub(crate) use crate::evidence::bundle::run_records;

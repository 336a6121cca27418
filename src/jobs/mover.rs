//! Builds mover Jobs: the pods that run `lifeboat mover ...` next to the data. Pure:
//! every input is an argument, so the rendered Job is a snapshot-tested value.
//!
//! Security rules encoded here: credentials reach the mover only as `secretKeyRef` env or
//! Secret volumes (never literal values in the Job), data volumes are mounted read-only for
//! backups, the pod runs under the dedicated mover ServiceAccount, and every Job has a
//! deadline and a bounded retry count. The container's argv is rendered from one typed
//! [`command::MoverCommand`], which the mover parses back.

pub(crate) mod command;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, ResourceRequirements, SecretKeySelector, SecretVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::crd::store::{BackupStoreSpec, ChecksumMode};
pub(crate) use crate::jobs::security::{self, Privilege};

/// Where the repository is and which Secrets open it, as seen from the mover's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreTarget {
    /// restic-style location: `s3:https://host/bucket/prefix`.
    pub repository: String,
    pub region: String,
    pub path_style: bool,
    pub checksum_mode: ChecksumMode,
    /// Secret (in the mover's namespace) and keys holding S3 credentials.
    pub credentials: Option<CredentialKeys>,
    /// Secret and key holding the repository password.
    pub password: SecretKey,
    /// Secret and key holding a PEM CA bundle.
    pub ca_bundle: Option<SecretKey>,
    /// Stable identity of the repository (hash of its location) for serializing
    /// exclusive maintenance across namespaces.
    pub identity: String,
    /// S3 Object Lock setting (`governance:30d`) for every write, when the store is
    /// immutable.
    pub object_lock: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKey {
    pub secret: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialKeys {
    pub secret: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

/// Keys of the Secret into which a ClusterBackupStore's credentials are mirrored for a
/// namespace (a Job can only reference Secrets of its own namespace).
pub mod mirror_keys {
    pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    pub const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
    pub const PASSWORD: &str = "password";
    pub const CA: &str = "ca.crt";
}

impl StoreTarget {
    /// Translates a store spec into what a mover in `namespace` needs. With `mirror`, all
    /// secrets are read from that one Secret under [`mirror_keys`] (cluster stores);
    /// otherwise from the Secrets the spec names, which live in `namespace`.
    pub fn from_spec(spec: &BackupStoreSpec, mirror: Option<&str>) -> StoreTarget {
        let s3 = &spec.s3;
        let region = s3.region.clone().unwrap_or_else(|| "us-east-1".into());
        let endpoint = s3
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let mut repository = format!("s3:{}/{}", endpoint.trim_end_matches('/'), s3.bucket);
        if let Some(p) = s3
            .prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
        {
            repository = format!("{repository}/{p}");
        }
        let path_style = s3.path_style.unwrap_or(s3.endpoint.is_some());
        let (credentials, password, ca_bundle) = match mirror {
            Some(m) => (
                s3.credentials.as_ref().map(|_| CredentialKeys {
                    secret: m.into(),
                    access_key_id: mirror_keys::ACCESS_KEY_ID.into(),
                    secret_access_key: mirror_keys::SECRET_ACCESS_KEY.into(),
                    session_token: mirror_keys::SESSION_TOKEN.into(),
                }),
                SecretKey {
                    secret: m.into(),
                    key: mirror_keys::PASSWORD.into(),
                },
                s3.ca_bundle.as_ref().map(|_| SecretKey {
                    secret: m.into(),
                    key: mirror_keys::CA.into(),
                }),
            ),
            None => (
                s3.credentials.as_ref().map(|c| CredentialKeys {
                    secret: c.name.clone(),
                    access_key_id: c.access_key_id_key().into(),
                    secret_access_key: c.secret_access_key_key().into(),
                    session_token: c.session_token_key().into(),
                }),
                SecretKey {
                    secret: spec.repository_password.name.clone(),
                    key: spec.repository_password.key.clone(),
                },
                s3.ca_bundle.as_ref().map(|c| SecretKey {
                    secret: c.name.clone(),
                    key: c.key.clone(),
                }),
            ),
        };
        StoreTarget {
            identity: super::short_hash(&repository),
            repository,
            region,
            path_style,
            checksum_mode: s3.checksum_mode,
            object_lock: spec.immutability.as_ref().map(|i| i.engine_value()),
            credentials,
            password,
            ca_bundle,
        }
    }
}

/// A volume mounted into the mover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataMount {
    pub claim: String,
    pub mount_path: String,
    pub read_only: bool,
}

/// Everything that varies between mover Jobs.
#[derive(Clone, Debug)]
pub struct MoverJob {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub owner: OwnerReference,
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub service_account: String,
    /// What the mover does; rendered into the container's `args`.
    pub(crate) command: command::MoverCommand,
    /// Extra environment (non-secret values, or secretKeyRefs built by the caller).
    pub env: Vec<EnvVar>,
    pub store: StoreTarget,
    pub mounts: Vec<DataMount>,
    /// Pin to a node (ReadWriteOnce volumes already attached there).
    pub node_name: Option<String>,
    /// Node labels the pod must match.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pod.
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    pub active_deadline_seconds: i64,
    pub backoff_limit: i32,
    pub resources: Option<ResourceRequirements>,
    /// What the pod needs beyond an unprivileged process: volume movers read and restore
    /// files of any owner; database, manifest and report movers need nothing.
    pub(crate) privilege: Privilege,
}

/// Where the mover writes its result (Kubernetes' default termination message path).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

fn secret_env(name: &str, s: &SecretKey) -> EnvVar {
    secret_env_optional(name, &s.secret, &s.key, false)
}

fn secret_env_optional(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// The environment that opens the repository (see `lifeboat --help`: every engine flag has
/// an env var).
pub fn store_env(store: &StoreTarget) -> Vec<EnvVar> {
    let mut env = vec![
        plain_env("LIFEBOAT_REPOSITORY", &store.repository),
        secret_env("LIFEBOAT_PASSWORD", &store.password),
        plain_env("LIFEBOAT_S3_REGION", &store.region),
        plain_env("LIFEBOAT_S3_PATH_STYLE", store.path_style.to_string()),
        plain_env(
            "LIFEBOAT_S3_CHECKSUM",
            match store.checksum_mode {
                ChecksumMode::WhenSupported => "when-supported",
                ChecksumMode::WhenRequired => "when-required",
            },
        ),
        // SDKs must never probe the instance metadata endpoint from a mover.
        plain_env("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    if let Some(lock) = &store.object_lock {
        env.push(plain_env("LIFEBOAT_S3_OBJECT_LOCK", lock));
    }
    if let Some(c) = &store.credentials {
        env.push(secret_env_optional(
            "AWS_ACCESS_KEY_ID",
            &c.secret,
            &c.access_key_id,
            false,
        ));
        env.push(secret_env_optional(
            "AWS_SECRET_ACCESS_KEY",
            &c.secret,
            &c.secret_access_key,
            false,
        ));
        env.push(secret_env_optional(
            "AWS_SESSION_TOKEN",
            &c.secret,
            &c.session_token,
            true,
        ));
    }
    if store.ca_bundle.is_some() {
        env.push(plain_env(
            "LIFEBOAT_S3_CA_BUNDLE",
            "/etc/lifeboat/ca/ca.crt",
        ));
    }
    env
}

/// Renders the Job.
pub fn build(m: &MoverJob) -> Job {
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }];
    for (i, d) in m.mounts.iter().enumerate() {
        let name = format!("data-{i}");
        volumes.push(Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: d.claim.clone(),
                read_only: d.read_only.then_some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: d.mount_path.clone(),
            read_only: d.read_only.then_some(true),
            ..VolumeMount::default()
        });
    }
    if let Some(ca) = &m.store.ca_bundle {
        volumes.push(Volume {
            name: "ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.secret.clone()),
                items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                    key: ca.key.clone(),
                    path: "ca.crt".into(),
                    mode: None,
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "ca".into(),
            mount_path: "/etc/lifeboat/ca".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let mut env = store_env(&m.store);
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    env.push(field("POD_NAMESPACE", "metadata.namespace"));
    // Recorded in the repository locks the mover takes, so the controller can tell when
    // their holder is gone (docs/engine.md, "Locks of movers that are gone").
    env.push(field(crate::mover::POD_UID_ENV, "metadata.uid"));
    env.push(plain_env("HOME", "/tmp"));
    env.push(plain_env("LIFEBOAT_CACHE_DIR", "/tmp/cache"));
    env.extend(m.env.iter().cloned());
    let container = Container {
        name: "mover".into(),
        image: Some(m.image.clone()),
        image_pull_policy: m.image_pull_policy.clone(),
        args: Some(m.command.to_args()),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: m.resources.clone(),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(security::container(m.privilege, None)),
        ..Container::default()
    };
    let meta = ObjectMeta {
        labels: Some(m.labels.clone()),
        ..ObjectMeta::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(m.name.clone()),
            namespace: Some(m.namespace.clone()),
            labels: Some(m.labels.clone()),
            owner_references: Some(vec![m.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(m.backoff_limit),
            active_deadline_seconds: Some(m.active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(meta),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(m.service_account.clone()),
                    // No token unless the mover reads or writes objects (see needs_api).
                    automount_service_account_token: Some(m.command.needs_api()),
                    node_name: m.node_name.clone(),
                    node_selector: (!m.node_selector.is_empty()).then(|| m.node_selector.clone()),
                    tolerations: (!m.tolerations.is_empty()).then(|| m.tolerations.clone()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(security::pod(m.privilege, None)),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Snapshot tests of rendered mover Jobs: each kind's Job, as a controller builds it, is
/// pinned as YAML under `src/jobs/mover/snapshots/`, so any change to what reaches the
/// cluster shows up in review. `LIFEBOAT_UPDATE_SNAPSHOTS=1` rewrites the files.
#[cfg(test)]
pub(crate) mod snapshots {
    use std::path::PathBuf;

    use k8s_openapi::api::batch::v1::Job;

    fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/jobs/mover/snapshots")
            .join(format!("{name}.yaml"))
    }

    /// Compares `job` with the committed snapshot `name`.
    pub(crate) fn assert_job(name: &str, job: &Job) {
        let rendered = serde_saphyr::to_string(job).expect("a Job serializes");
        let file = path(name);
        if std::env::var_os("LIFEBOAT_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&file, &rendered).expect("writing a snapshot");
            return;
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        if committed != rendered {
            let first = committed
                .lines()
                .zip(rendered.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(committed.lines().count().min(rendered.lines().count()));
            panic!(
                "the {name} Job differs from {} from line {}:\n  committed: {:?}\n  rendered:  {:?}\n\
                 review the change and rerun with LIFEBOAT_UPDATE_SNAPSHOTS=1 to accept it",
                file.display(),
                first + 1,
                committed.lines().nth(first).unwrap_or("<end>"),
                rendered.lines().nth(first).unwrap_or("<end>"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::security::NONROOT_UID;

    fn store() -> StoreTarget {
        StoreTarget {
            repository: "s3:http://s3.local:9000/bucket/prod".into(),
            region: "us-east-1".into(),
            path_style: true,
            checksum_mode: ChecksumMode::WhenSupported,
            credentials: Some(CredentialKeys {
                secret: "s3-creds".into(),
                access_key_id: "AWS_ACCESS_KEY_ID".into(),
                secret_access_key: "AWS_SECRET_ACCESS_KEY".into(),
                session_token: "AWS_SESSION_TOKEN".into(),
            }),
            password: SecretKey {
                secret: "repo-pass".into(),
                key: "password".into(),
            },
            ca_bundle: Some(SecretKey {
                secret: "ca".into(),
                key: "bundle.pem".into(),
            }),
            identity: "abcd1234".into(),
            object_lock: None,
        }
    }

    fn job() -> MoverJob {
        MoverJob {
            name: "orders-202601010010-data".into(),
            namespace: "shop".into(),
            labels: BTreeMap::from([("lifeboat.dev/backup".into(), "orders-202601010010".into())]),
            owner: OwnerReference {
                api_version: "lifeboat.dev/v1alpha1".into(),
                kind: "Backup".into(),
                name: "orders-202601010010".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            image: "ghcr.io/lifeboat-dev/lifeboat:1".into(),
            image_pull_policy: None,
            service_account: "lifeboat-mover".into(),
            command: command::MoverCommand::Backup(command::BackupCommand::Volume(
                command::BackupVolume {
                    source: "data".into(),
                    path: "/data".into(),
                    excludes: vec![],
                    run: command::BackupRun {
                        policy: command::NamespacedName::new("shop", "orders"),
                        backup: "orders-202601010010".into(),
                        owner: None,
                    },
                },
            )),
            env: vec![],
            store: store(),
            mounts: vec![DataMount {
                claim: "data".into(),
                mount_path: "/data".into(),
                read_only: true,
            }],
            node_name: None,
            node_selector: BTreeMap::new(),
            tolerations: vec![],
            active_deadline_seconds: 3600,
            backoff_limit: 1,
            resources: None,
            privilege: Privilege::ReadAnyOwner,
        }
    }

    #[test]
    fn secrets_are_only_ever_references() {
        let j = build(&job());
        let text = serde_json::to_string(&j).unwrap();
        let pod = j.spec.unwrap().template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap();
        for name in [
            "LIFEBOAT_PASSWORD",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            let e = env.iter().find(|e| e.name == name).unwrap();
            assert!(e.value.is_none(), "{name} must not be a literal");
            assert!(e.value_from.as_ref().unwrap().secret_key_ref.is_some());
        }
        assert!(
            !text.contains("\"value\":\"testsecret"),
            "no literal secret"
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("lifeboat-mover"));
    }

    #[test]
    fn data_is_mounted_read_only_with_a_deadline_and_result_contract() {
        let j = build(&job());
        let spec = j.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(3600));
        assert_eq!(spec.backoff_limit, Some(1));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        let data = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/data")
            .unwrap();
        assert_eq!(data.read_only, Some(true));
        let claim = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find_map(|v| v.persistent_volume_claim.as_ref())
            .unwrap();
        assert_eq!(claim.read_only, Some(true));
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        let ca = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/etc/lifeboat/ca")
            .unwrap();
        assert_eq!(ca.read_only, Some(true));
        assert_eq!(j.metadata.owner_references.unwrap()[0].kind, "Backup");
    }

    #[test]
    fn store_specs_translate_to_locations_and_secret_refs() {
        use crate::crd::common::{S3CredentialsRef, SecretKeyRef};
        use crate::crd::store::S3Spec;
        let spec = BackupStoreSpec {
            s3: S3Spec {
                endpoint: Some("http://minio.storage:9000/".into()),
                bucket: "backups".into(),
                prefix: Some("/prod/orders/".into()),
                credentials: Some(S3CredentialsRef {
                    name: "creds".into(),
                    ..S3CredentialsRef::default()
                }),
                ..S3Spec::default()
            },
            repository_password: SecretKeyRef {
                name: "pw".into(),
                key: "pass".into(),
                namespace: None,
            },
            ..BackupStoreSpec::default()
        };
        let t = StoreTarget::from_spec(&spec, None);
        assert_eq!(
            t.repository,
            "s3:http://minio.storage:9000/backups/prod/orders"
        );
        assert!(t.path_style, "custom endpoints default to path style");
        assert_eq!(
            t.password,
            SecretKey {
                secret: "pw".into(),
                key: "pass".into()
            }
        );
        assert_eq!(
            t.credentials.as_ref().unwrap().access_key_id,
            "AWS_ACCESS_KEY_ID"
        );
        let m = StoreTarget::from_spec(&spec, Some("mirror"));
        assert_eq!(m.password.secret, "mirror");
        assert_eq!(m.identity, t.identity, "same repository, same identity");
        let mut aws = spec.clone();
        aws.s3.endpoint = None;
        aws.s3.region = Some("eu-central-1".into());
        let a = StoreTarget::from_spec(&aws, None);
        assert_eq!(
            a.repository,
            "s3:https://s3.eu-central-1.amazonaws.com/backups/prod/orders"
        );
        assert!(!a.path_style);
    }

    #[test]
    fn every_mover_meets_the_pod_security_level_of_its_privilege() {
        use crate::drill::pod_security::{Level, violations};
        for p in [
            Privilege::Unprivileged,
            Privilege::ReadAnyOwner,
            Privilege::WriteAnyOwner,
        ] {
            let mut m = job();
            m.privilege = p;
            let pod = build(&m).spec.unwrap().template.spec.unwrap();
            assert_eq!(violations(&pod, p.level()), Vec::<String>::new(), "{p:?}");
            if p.level() == Level::Baseline {
                assert!(!violations(&pod, Level::Restricted).is_empty(), "{p:?}");
            }
        }
    }

    #[test]
    fn non_root_movers_get_the_nonroot_uid() {
        let mut m = job();
        m.privilege = Privilege::Unprivileged;
        let pod = build(&m).spec.unwrap().template.spec.unwrap();
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(
            (sc.run_as_user, sc.run_as_non_root),
            (Some(NONROOT_UID), Some(true))
        );
        assert_eq!(pod.security_context.unwrap().fs_group, Some(NONROOT_UID));
    }
}

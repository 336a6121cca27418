//! Builders of the objects a Restore creates: the restored PVC, an ephemeral database
//! server (Secret, Deployment, Service) and the mover Jobs. Pure functions of the
//! observed world; the state machine in the parent module decides when to use them.

use super::*;
use crate::jobs::mover::command::{
    MoverCommand, NamespacedName, RestoreCommand, RestoreDatabase, RestoreManifests, RestoreRun,
    RestoreVolume,
};
use crate::jobs::security::{self, DATABASE_UID, Privilege};

/// Annotation on mover Jobs and ephemeral servers: when the controller created them.
pub const STARTED_AT: &str = "lifeboat.dev/started-at";

/// Pod label selecting one ephemeral server's pods.
pub const SERVER_LABEL: &str = "lifeboat.dev/server";

pub(super) fn server_labels(
    o: &Observed<'_>,
    server: &str,
    source: &str,
) -> BTreeMap<String, String> {
    let policy = policy_name(o);
    let mut l = labels_for(o.restore, &policy, SERVER_COMPONENT, Some(source));
    l.remove(labels::JOB_TYPE);
    l.insert(SERVER_LABEL.into(), server.into());
    l
}

pub(super) fn policy_name(o: &Observed<'_>) -> String {
    o.restore
        .status
        .as_ref()
        .and_then(|s| s.restore_point.as_ref())
        .map(|p| p.policy.clone())
        .or_else(|| o.policy.map(|p| p.name_any()))
        .unwrap_or_default()
}

pub(super) fn child_meta(
    o: &Observed<'_>,
    name: &str,
    target: &str,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(target.into()),
        labels: Some(labels),
        owner_references: owners(o.restore, target),
        ..ObjectMeta::default()
    }
}

pub(super) fn server_secret(
    o: &Observed<'_>,
    entry: &RestoredSource,
    server: &str,
    target: &str,
    password: &str,
) -> Secret {
    let engine = entry
        .database
        .as_ref()
        .map(|d| d.engine)
        .unwrap_or_default();
    let user = match engine {
        DatabaseEngine::Postgres => "postgres",
        DatabaseEngine::Mysql => "root",
    };
    Secret {
        metadata: child_meta(o, server, target, server_labels(o, server, &entry.name)),
        string_data: Some(BTreeMap::from([
            ("username".to_string(), user.to_string()),
            ("password".to_string(), password.to_string()),
        ])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

pub(super) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(super) fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

pub(super) fn server_deployment(
    o: &Observed<'_>,
    entry: &RestoredSource,
    server: &str,
    target: &str,
) -> Deployment {
    let db = entry.database.clone().unwrap_or_default();
    let labels = server_labels(o, server, &entry.name);
    let selector = BTreeMap::from([
        (
            labels::RESTORE_UID.to_string(),
            o.restore.meta().uid.clone().unwrap_or_default(),
        ),
        (SERVER_LABEL.to_string(), server.to_string()),
    ]);
    let (env, data_dir, run_dir) = match db.engine {
        DatabaseEngine::Postgres => (
            vec![
                secret_env("POSTGRES_USER", server, "username"),
                secret_env("POSTGRES_PASSWORD", server, "password"),
                plain_env("PGDATA", "/var/lib/postgresql/data/pgdata"),
            ],
            "/var/lib/postgresql/data",
            "/var/run/postgresql",
        ),
        // MYSQL_ROOT_PASSWORD is read by the mysql image and (as an alias) by mariadb.
        DatabaseEngine::Mysql => (
            vec![secret_env("MYSQL_ROOT_PASSWORD", server, "password")],
            "/var/lib/mysql",
            "/run/mysqld",
        ),
    };
    let resources = o
        .restore
        .spec
        .databases
        .iter()
        .find(|d| d.source == entry.name)
        .and_then(|d| d.ephemeral.as_ref())
        .and_then(|e| e.resources.clone());
    let mut meta = child_meta(o, server, target, labels.clone());
    meta.annotations = Some(started_at(o));
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "database".into(),
                        image: db.image.clone(),
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some("db".into()),
                            container_port: db.port.into(),
                            ..ContainerPort::default()
                        }]),
                        // The official images open the TCP port only once initialisation
                        // is done (their bootstrap server listens on a socket only).
                        readiness_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction {
                                port: IntOrString::Int(db.port.into()),
                                host: None,
                            }),
                            initial_delay_seconds: Some(1),
                            period_seconds: Some(2),
                            ..Probe::default()
                        }),
                        resources,
                        volume_mounts: Some(vec![
                            VolumeMount {
                                name: "data".into(),
                                mount_path: data_dir.into(),
                                ..VolumeMount::default()
                            },
                            VolumeMount {
                                name: "run".into(),
                                mount_path: run_dir.into(),
                                ..VolumeMount::default()
                            },
                            VolumeMount {
                                name: "tmp".into(),
                                mount_path: "/tmp".into(),
                                ..VolumeMount::default()
                            },
                        ]),
                        security_context: Some(server_security()),
                        ..Container::default()
                    }],
                    volumes: Some(
                        ["data", "run", "tmp"]
                            .into_iter()
                            .map(|name| Volume {
                                name: name.into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Volume::default()
                            })
                            .collect(),
                    ),
                    security_context: Some(security::pod(
                        Privilege::Unprivileged,
                        Some(DATABASE_UID),
                    )),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The throwaway server runs as the images' own database user (999) from the start, so it
/// needs no root to drop from and meets the `restricted` level; its writable places are
/// emptyDirs (data, the socket directory and /tmp), so the root file system stays
/// read-only. The official postgres and mariadb images support running this way.
fn server_security() -> k8s_openapi::api::core::v1::SecurityContext {
    security::container(Privilege::Unprivileged, Some(DATABASE_UID))
}

pub(super) fn server_service(
    o: &Observed<'_>,
    entry: &RestoredSource,
    server: &str,
    target: &str,
) -> Service {
    let db = entry.database.clone().unwrap_or_default();
    Service {
        metadata: child_meta(o, server, target, server_labels(o, server, &entry.name)),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([
                (
                    labels::RESTORE_UID.to_string(),
                    o.restore.meta().uid.clone().unwrap_or_default(),
                ),
                (SERVER_LABEL.to_string(), server.to_string()),
            ])),
            ports: Some(vec![ServicePort {
                name: Some("db".into()),
                port: db.port.into(),
                target_port: Some(IntOrString::Int(db.port.into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The restored PVC: the source's size, modes and class as recorded at backup time
/// (else as the live source PVC has them, else 1Gi), the spec's class overriding.
pub(super) fn target_pvc(
    o: &Observed<'_>,
    point: Option<&Backup>,
    entry: &RestoredSource,
    name: &str,
    target: &str,
) -> PersistentVolumeClaim {
    let recorded = point
        .iter()
        .flat_map(|b| b.status.iter().flat_map(|s| s.sources.iter()))
        .find(|s| s.kind == SourceKind::Volume && s.name == entry.name)
        .and_then(|s| s.volume.clone())
        .unwrap_or_default();
    let live = o
        .source_pvcs
        .iter()
        .find(|c| c.name_any() == entry.name)
        .and_then(|c| c.spec.clone())
        .unwrap_or_default();
    let size = recorded
        .storage
        .clone()
        .or_else(|| {
            live.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage").cloned())
        })
        .unwrap_or_else(|| Quantity(FALLBACK_SIZE.into()));
    let class = o
        .restore
        .spec
        .volumes
        .as_ref()
        .and_then(|v| v.storage_class_name.clone())
        .or(recorded.storage_class_name.clone())
        .or(live.storage_class_name.clone());
    let modes = if recorded.access_modes.is_empty() {
        live.access_modes
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec!["ReadWriteOnce".into()])
    } else {
        recorded.access_modes.clone()
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(target.into()),
            // Restored data belongs to the user, not to the Restore: no owner, and no
            // managed-by label (manifest backups skip Lifeboat's own objects).
            labels: Some(restore_labels(o.restore)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes),
            storage_class_name: class,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            volume_mode: recorded.volume_mode.clone().or(live.volume_mode),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

pub(super) fn common_job(
    o: &Observed<'_>,
    policy: &BackupPolicy,
    store: &StoreTarget,
    entry: &RestoredSource,
    target: &str,
    command: RestoreCommand,
) -> MoverJob {
    let r = o.restore;
    let deadline = policy
        .spec
        .mover
        .active_deadline
        .as_deref()
        .and_then(|d| duration::parse(d).ok())
        .unwrap_or(DEFAULT_DEADLINE);
    // Into another namespace the source policy's choices do not travel: the target runs
    // the installation's image, on its own default placement (a policy's author may not
    // pick what runs, or where, in a namespace that only invited a restore).
    let mover_spec = match foreign(o, target) {
        None => policy.spec.mover.clone(),
        Some(_) => Default::default(),
    };
    let mut labels = labels_for(r, &policy.name_any(), "mover", Some(&entry.name));
    // Into a drill sandbox: the token that lets the mover through its NetworkPolicy.
    if let Some(uid) = own_sandbox(o).and_then(|ns| ns.metadata.uid.as_deref()) {
        labels.insert(
            crate::crd::labels::SANDBOX_TOKEN.into(),
            jobs::sandbox_token(uid),
        );
    }
    MoverJob {
        name: job_name(&r.name_any(), entry.kind, &entry.name),
        namespace: target.into(),
        labels,
        owner: r
            .controller_owner_ref(&())
            .expect("a stored Restore has a name and uid"),
        image: mover_spec
            .image
            .clone()
            .unwrap_or_else(|| o.config.mover_image.clone()),
        image_pull_policy: o.config.image_pull_policy.clone(),
        service_account: o.config.mover_service_account.clone(),
        command: MoverCommand::Restore(command),
        env: vec![],
        store: store.clone(),
        mounts: vec![],
        node_name: None,
        // In its own namespace the policy's placement applies to its restores too: the
        // nodes that may reach the store are the same in both directions.
        node_selector: mover_spec.node_selector.clone(),
        tolerations: mover_spec.tolerations.clone(),
        active_deadline_seconds: deadline.as_secs().max(1) as i64,
        // Every restore mover can resume: a volume keeps its marker, a database its
        // empty target, manifests re-apply their own objects.
        backoff_limit: policy.spec.mover.backoff_limit.unwrap_or(2),
        resources: policy.spec.mover.resources.clone(),
        privilege: Privilege::Unprivileged,
    }
}

/// `Some(target)` when the Restore writes into another namespace than its own. A drill
/// sandbox made for the Restore's namespace counts as its own: the same team's policy
/// chose the image and placement, and a drill measures the restore as it would run.
pub(super) fn foreign<'t>(o: &Observed<'_>, target: &'t str) -> Option<&'t str> {
    if o.restore.namespace().as_deref() == Some(target) || own_sandbox(o).is_some() {
        return None;
    }
    Some(target)
}

/// The target namespace, when it is the sandbox of the DrillRun that owns this Restore
/// (the one predicate, [`jobs::is_sandbox_of`]). The Restore cannot read the run's
/// recorded sandbox UID here, so this relies on what only the controller writes on the
/// namespace (labels, the run's UID, the invitation; tenants cannot edit Namespaces); a
/// Restore claiming another run of its namespace as owner claims only its own team's
/// sandbox.
fn own_sandbox<'n>(o: &Observed<'n>) -> Option<&'n Namespace> {
    let ns = o.target_namespace?;
    let own = o.restore.namespace()?;
    let run_api = crate::crd::dr_drill::DrillRun::api_version(&());
    o.restore
        .owner_references()
        .iter()
        .filter(|r| r.kind == "DrillRun" && r.api_version == run_api)
        .any(|r| {
            let owner = jobs::SandboxOwner {
                namespace: &own,
                name: &r.name,
                uid: &r.uid,
                recorded_uid: None,
            };
            jobs::is_sandbox_of(ns, &owner)
        })
        .then_some(ns)
}

/// The run a restore mover reports to.
fn restore_run(o: &Observed<'_>, entry: &RestoredSource) -> RestoreRun {
    let r = o.restore;
    RestoreRun {
        restore: NamespacedName::new(r.namespace().unwrap_or_default(), r.name_any()),
        // The restore point's policy lives in the Restore's namespace.
        policy: NamespacedName::new(r.namespace().unwrap_or_default(), policy_name(o)),
        snapshot: entry.snapshot_id.clone().unwrap_or_default(),
        source: entry.name.clone(),
    }
}

pub(super) fn build_job(o: &Observed<'_>, m: MoverJob, target: &str) -> Job {
    let mut job = mover::build(&m);
    // An owner reference across namespaces is void (the garbage collector would delete
    // the Job at once): outside its own namespace the Restore cleans up by label.
    if owners(o.restore, target).is_none() {
        job.metadata.owner_references = None;
    }
    job.metadata.annotations = Some(started_at(o));
    job
}

/// When this step began, to the microsecond, so that a controller that restarts before
/// recording it in status still reports the real start (creation timestamps have whole
/// seconds only).
pub(super) fn started_at(o: &Observed<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([(
        STARTED_AT.to_string(),
        o.now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    )])
}

pub(super) fn volume_job(
    o: &Observed<'_>,
    policy: &BackupPolicy,
    store: &StoreTarget,
    entry: &RestoredSource,
    pvc: &str,
    target: &str,
) -> Job {
    let command = RestoreCommand::Volume(RestoreVolume {
        target: "/data".into(),
        // A Restore has no field to ask for devices and setuid bits yet: off.
        devices_and_setid: false,
        run: restore_run(o, entry),
    });
    let mut m = common_job(o, policy, store, entry, target, command);
    // Files of any owner are written with their recorded owner and mode.
    m.privilege = Privilege::WriteAnyOwner;
    m.mounts = vec![DataMount {
        claim: pvc.into(),
        mount_path: "/data".into(),
        read_only: false,
    }];
    build_job(o, m, target)
}

pub(super) fn database_job(
    o: &Observed<'_>,
    policy: &BackupPolicy,
    store: &StoreTarget,
    entry: &RestoredSource,
    target: &str,
) -> Job {
    let db = entry.database.clone().unwrap_or_default();
    let ephemeral = db.server_name.is_some();
    let create = ephemeral
        || o.restore
            .spec
            .databases
            .iter()
            .find(|d| d.source == entry.name)
            .and_then(|d| d.target.as_ref())
            .is_some_and(|t| t.create_database);
    let command = RestoreCommand::Database(RestoreDatabase {
        engine: db.engine.into(),
        host: db.host.clone(),
        port: Some(db.port),
        database: db.database.clone(),
        create_database: create,
        // The dump's roles do not exist on a fresh server.
        no_owner: ephemeral,
        wait_seconds: None,
        run: restore_run(o, entry),
    });
    let creds = db.credentials.clone().unwrap_or_default();
    let env = match (&o.mirror, ephemeral) {
        (Some(mirror), false) => {
            let (u, p) = mirror_db_keys(&entry.name);
            vec![
                secret_env("LIFEBOAT_DB_USER", mirror, &u),
                secret_env("LIFEBOAT_DB_PASSWORD", mirror, &p),
            ]
        }
        _ => vec![
            secret_env("LIFEBOAT_DB_USER", &creds.name, creds.username_key()),
            secret_env("LIFEBOAT_DB_PASSWORD", &creds.name, creds.password_key()),
        ],
    };
    let mut m = common_job(o, policy, store, entry, target, command);
    m.image = policy
        .spec
        .mover
        .image
        .clone()
        .filter(|_| foreign(o, target).is_none())
        .unwrap_or_else(|| o.config.mover_db_image.clone());
    m.env = env;
    build_job(o, m, target)
}

pub(super) fn manifests_job(
    o: &Observed<'_>,
    policy: &BackupPolicy,
    store: &StoreTarget,
    entry: &RestoredSource,
    target: &str,
) -> Job {
    let spec = o.restore.spec.manifests.clone().unwrap_or_default();
    let command = RestoreCommand::Manifests(RestoreManifests {
        namespace: target.into(),
        kinds: spec.kinds.clone(),
        suppress_side_effects: spec.suppress_side_effects,
        scale_to_zero: spec.scale_to_zero,
        staging: None,
        run: restore_run(o, entry),
    });
    let m = common_job(o, policy, store, entry, target, command);
    build_job(o, m, target)
}

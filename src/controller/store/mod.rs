//! The store controller (BackupStore and ClusterBackupStore): reads the Secrets a store
//! names, probes the repository (reachable? initialized? does the password open it?),
//! creates the repository when allowed, and reports it all as conditions. Probing runs on
//! a blocking thread with a timeout; the repository engine behind [`Prober`] knows
//! nothing of Kubernetes. The same opening lists the repository's snapshots into the
//! store's catalog ([`catalog`]), and Backups whose snapshots retention forgot are marked
//! ([`forgotten`]). Locks left by movers that are gone are removed ([`locks`]).

pub mod catalog;
pub mod forgotten;
mod locks;
pub mod plan;
pub mod prober;
mod verify;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use self::plan::Outcome;
use super::{Context, Error, Result, access, apply_status, error_policy, instrumented};
use crate::crd::backup::Backup;
use crate::crd::store::{
    BackupStore, BackupStoreSpec, ClusterBackupStore, InitializePolicy, StoreStatus,
};
use crate::jobs::mover::mirror_keys;

/// A secret value that never prints.
#[derive(Clone, Default)]
pub struct Sensitive(pub String);

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything needed to open a store's repository, Secrets resolved.
#[derive(Clone, Debug)]
pub struct Connection {
    pub spec: BackupStoreSpec,
    pub access_key_id: Option<Sensitive>,
    pub secret_access_key: Option<Sensitive>,
    pub session_token: Option<Sensitive>,
    pub ca_pem: Option<Sensitive>,
    pub password: Sensitive,
}

/// What one listing of a repository's snapshots found.
#[derive(Clone, Debug)]
pub struct Listing {
    pub repository_id: String,
    /// Every snapshot ID in the repository.
    pub ids: Vec<String>,
    /// The decoded snapshots among them that the catalog did not know.
    pub new: Vec<crate::repo::SnapshotInfo>,
    /// How long the listing took.
    pub seconds: f64,
    /// The repository's locks, read with the same opening ([`locks`]).
    pub locks: Vec<crate::repo::FoundLock>,
}

/// Opens (and if asked, creates) a repository. Blocking; the controller calls it on a
/// blocking thread with a timeout.
pub trait Prober: Send + Sync + 'static {
    fn probe(&self, conn: &Connection, initialize: bool) -> Outcome;

    /// Probes and, when the repository opens, lists its snapshots with the same opening
    /// (one key derivation), decoding only those `known` does not hold. The default
    /// lists nothing.
    fn probe_and_list(
        &self,
        conn: &Connection,
        initialize: bool,
        known: &catalog::StoreCatalog,
    ) -> (Outcome, Option<std::result::Result<Listing, String>>) {
        let _ = known;
        (self.probe(conn, initialize), None)
    }

    /// Removes each lock that still holds what was judged; returns the IDs removed.
    /// The default removes nothing.
    fn remove_locks(
        &self,
        conn: &Connection,
        locks: &[crate::repo::FoundLock],
    ) -> std::result::Result<Vec<String>, String> {
        let _ = (conn, locks);
        Ok(vec![])
    }
}

/// How long one probe may take before the store counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many probes run at once, over both store kinds. Opening a repository derives its
/// key from the password, and scrypt at restic's parameters (N=2^15, r=8) needs 32 MiB
/// while it runs: at the controllers' concurrency (16 per kind) a start with many stores
/// would need 1 GiB, four times the chart's memory limit. Two at once keep that to
/// 64 MiB; the rest wait their turn (the wait does not count against [`PROBE_TIMEOUT`]).
pub const PROBES_AT_ONCE: usize = 2;

fn failed(reason: &'static str, message: String, transient: bool) -> Outcome {
    Outcome::Failed {
        reason,
        message,
        reachable: false,
        transient,
    }
}

/// Resolves the Secrets of a store through the store-access kernel (which refuses a
/// namespaced store's reference to another namespace, and ambient credentials where they
/// are not allowed, before reading anything).
async fn connection(
    ctx: &Context,
    ns: Option<&str>,
    name: &str,
    spec: &BackupStoreSpec,
) -> std::result::Result<Connection, Outcome> {
    let store = access::Store {
        name: name.to_string(),
        scope: match ns {
            Some(ns) => access::Scope::Namespaced(ns.to_string()),
            None => access::Scope::Cluster,
        },
        spec: spec.clone(),
    };
    let secrets = match access::read_secrets(&ctx.client, &ctx.config, &store).await {
        Ok(Ok(s)) => s,
        Ok(Err(r)) => {
            let transient = r.transient();
            return Err(failed(r.reason, r.message, transient));
        }
        Err(e) => return Err(failed("SecretNotReadable", e.to_string(), true)),
    };
    let value = |key: &str| secrets.text(key).map(Sensitive);
    Ok(Connection {
        spec: spec.clone(),
        access_key_id: value(mirror_keys::ACCESS_KEY_ID),
        secret_access_key: value(mirror_keys::SECRET_ACCESS_KEY),
        session_token: value(mirror_keys::SESSION_TOKEN),
        ca_pem: value(mirror_keys::CA),
        password: value(mirror_keys::PASSWORD).unwrap_or_default(),
    })
}

type Probed = (Outcome, Option<std::result::Result<Listing, String>>);

async fn probe(
    slots: &Semaphore,
    prober: Arc<dyn Prober>,
    conn: Connection,
    initialize: bool,
    known: Arc<catalog::StoreCatalog>,
) -> Probed {
    // Never closed: the semaphore lives as long as the controllers.
    let _slot = slots.acquire().await;
    let task =
        tokio::task::spawn_blocking(move || prober.probe_and_list(&conn, initialize, &known));
    match tokio::time::timeout(PROBE_TIMEOUT, task).await {
        Ok(Ok(probed)) => probed,
        Ok(Err(join)) => (
            failed("ProbeFailed", format!("probe crashed: {join}"), true),
            None,
        ),
        Err(_) => (
            failed(
                "StorageUnreachable",
                format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
                true,
            ),
            None,
        ),
    }
}

/// The two store kinds share everything but scope.
trait StoreKind:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static
{
    const CONTROLLER: &'static str;
    /// How a policy's `storeRef.kind` names this kind.
    const REF_KIND: crate::crd::backup_policy::StoreKind;
    fn spec(&self) -> &BackupStoreSpec;
    fn status(&self) -> Option<&StoreStatus>;
    fn api(client: kube::Client, ns: Option<&str>) -> Api<Self>;
    /// The stores of this kind the controller serves, and the events that fill them.
    fn reflected(client: &kube::Client, served: &[String]) -> (Store<Self>, Events<Self>);
}

type Events<K> = futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

impl StoreKind for BackupStore {
    const CONTROLLER: &'static str = "backupstore";
    const REF_KIND: crate::crd::backup_policy::StoreKind =
        crate::crd::backup_policy::StoreKind::BackupStore;
    fn spec(&self) -> &BackupStoreSpec {
        &self.spec
    }
    fn status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
    fn api(client: kube::Client, ns: Option<&str>) -> Api<Self> {
        Api::namespaced(client, ns.unwrap_or_default())
    }
    fn reflected(client: &kube::Client, served: &[String]) -> (Store<Self>, Events<Self>) {
        super::scope::reflected(
            client,
            served,
            watcher::Config::default().any_semantic(),
            |_| {},
        )
    }
}

impl StoreKind for ClusterBackupStore {
    const CONTROLLER: &'static str = "clusterbackupstore";
    const REF_KIND: crate::crd::backup_policy::StoreKind =
        crate::crd::backup_policy::StoreKind::ClusterBackupStore;
    fn spec(&self) -> &BackupStoreSpec {
        &self.spec.store
    }
    fn status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
    fn api(client: kube::Client, _: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
    fn reflected(client: &kube::Client, _: &[String]) -> (Store<Self>, Events<Self>) {
        let (reader, writer) = kube::runtime::reflector::store();
        let events = kube::runtime::watcher(
            Api::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .reflect(writer)
        .boxed();
        (reader, events)
    }
}

/// A ready store whose spec has not changed and that was verified moments ago needs no
/// new probe: this is the wake-up caused by our own status write. Returns how long to
/// wait until the next regular probe.
fn recently_verified<K: StoreKind>(
    store: &K,
    now: Timestamp,
    interval: Duration,
) -> Option<Duration> {
    const GAP: Duration = Duration::from_secs(30);
    let status = store.status()?;
    let ready =
        super::conditions::is_true(&status.conditions, crate::crd::common::condition::READY)
            == Some(true);
    let same_spec = status.observed_generation == store.meta().generation;
    let age = Duration::try_from(now.duration_since(status.last_check_time.as_ref()?.0)).ok()?;
    (ready && same_spec && age < GAP)
        .then(|| interval.saturating_sub(age).max(Duration::from_secs(1)))
}

/// Writes when anything but `lastCheckTime` changed, or when `lastCheckTime` has aged
/// past half the probe interval: the column stays meaningful without a write (and a
/// wake-up) per probe.
fn status_worth_writing(
    old: Option<&StoreStatus>,
    new: &StoreStatus,
    now: Timestamp,
    interval: Duration,
) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &StoreStatus| StoreStatus {
        last_check_time: None,
        catalog: s.catalog.clone().map(|c| crate::crd::store::CatalogStatus {
            list_time: None,
            ..c
        }),
        ..s.clone()
    };
    if strip(old) != strip(new) {
        return true;
    }
    let age = old
        .last_check_time
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok());
    age.is_none_or(|a| a >= interval / 2)
}

/// Writes the store's status when [`status_worth_writing`] says so.
async fn write_status<K>(
    ctx: &Context,
    store: &K,
    new: &StoreStatus,
    now: Timestamp,
    interval: Duration,
) -> Result<()>
where
    K: StoreKind + Serialize,
{
    let ns = store.namespace();
    if status_worth_writing(store.status(), new, now, interval) {
        let api = K::api(ctx.client.clone(), ns.as_deref());
        // The catalog goes by merge patch: a controller upgraded before its CRDs (the
        // upgrade test runs it so) must still write the rest, and server-side apply
        // refuses a field the stored schema does not declare, where a merge patch's is
        // pruned. The apply carries the stored catalog, so it never removes it.
        let stored = store.status().and_then(|s| s.catalog.clone());
        let fresh = new.catalog.clone();
        let applied = StoreStatus {
            catalog: stored.clone(),
            ..new.clone()
        };
        apply_status(&api, &store.name_any(), &applied).await?;
        if fresh.is_some() && fresh != stored {
            let patch = serde_json::json!({ "status": { "catalog": fresh } });
            api.patch_status(
                &store.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
        }
    }
    Ok(())
}

/// Shared state of the store controllers.
pub struct StoreCtx {
    pub ctx: Arc<Context>,
    pub prober: Arc<dyn Prober>,
    /// [`PROBES_AT_ONCE`] permits.
    pub probe_slots: Semaphore,
}

async fn reconcile<K>(store: Arc<K>, sc: Arc<StoreCtx>) -> Result<Action>
where
    K: StoreKind + Serialize,
{
    let ctx = sc.ctx.clone();
    instrumented(K::CONTROLLER, store.as_ref(), &ctx, async {
        let ns = store.namespace();
        let spec = store.spec();
        let now = Timestamp::now();
        let interval = ctx.config.store_probe_interval;
        let key = catalog::StoreKey {
            namespace: ns.clone(),
            name: store.name_any(),
        };
        let known = sc.ctx.catalogs.get(&key).unwrap_or_default();
        let backup_since = forgotten::finished_since(&ctx, &key, known.listed_at);
        if let Some(wait) = recently_verified(store.as_ref(), now, interval)
            && !backup_since
        {
            // No new probe: the stored status stands, and the verification (when there
            // is one) still looks at its Job and its schedule.
            let mut p = plan::Plan {
                status: store.status().cloned().unwrap_or_default(),
                events: Vec::new(),
                not_ready: None,
                requeue: wait,
            };
            let verify_wake = verify::run(&ctx, store.as_ref(), &mut p, now).await?;
            for ev in &p.events {
                ctx.publish(store.as_ref(), ev, "Verify").await;
            }
            write_status(&ctx, store.as_ref(), &p.status, now, interval).await?;
            return Ok(Action::requeue(verify_wake.map_or(wait, |w| w.min(wait))));
        }
        let mut opened = None;
        let (outcome, listing) =
            match connection(&ctx, ns.as_deref(), &store.name_any(), spec).await {
                Ok(conn) => {
                    opened = Some(conn.clone());
                    probe(
                        &sc.probe_slots,
                        sc.prober.clone(),
                        conn,
                        spec.initialize == InitializePolicy::IfMissing,
                        known.clone(),
                    )
                    .await
                }
                Err(outcome) => (outcome, None),
            };
        let mut p = plan::plan(
            store.status(),
            store.meta().generation,
            outcome,
            interval,
            now,
        );
        match listing {
            Some(Ok(l)) => {
                let mut c = (*known).clone();
                c.update(&l.repository_id, &l.ids, &l.new, now);
                tracing::debug!(
                    store = %store.name_any(),
                    snapshots = l.ids.len(),
                    decoded = l.new.len(),
                    seconds = l.seconds,
                    "catalog listed"
                );
                p.status.catalog = Some(c.summary());
                forgotten::mark(&ctx, &key, &c).await?;
                sc.ctx.catalogs.put(key.clone(), c);
                if let Some(conn) = opened {
                    locks::sweep(&sc, store.as_ref(), conn, &l.locks, now).await;
                }
            }
            Some(Err(e)) => {
                // The previous summary stays: it was true at its listTime.
                tracing::warn!(store = %store.name_any(), error = %e, "catalog listing failed");
            }
            None => {}
        }
        let verify_wake = verify::run(&ctx, store.as_ref(), &mut p, now).await?;
        for ev in &p.events {
            ctx.publish(store.as_ref(), ev, "Probe").await;
        }
        write_status(&ctx, store.as_ref(), &p.status, now, interval).await?;
        let requeue = verify_wake.map_or(p.requeue, |w| w.min(p.requeue));
        match p.not_ready {
            None => Ok(Action::requeue(requeue)),
            Some((reason, message, true)) => Err(Error::Store {
                reason,
                message,
                retry: super::Retry::Transient,
            }),
            Some((reason, message, false)) => Err(Error::Blocked { reason, message }),
        }
    })
    .await
}

async fn run_kind<K>(sc: Arc<StoreCtx>)
where
    K: StoreKind + Serialize,
{
    let client = sc.ctx.client.clone();
    let policy = {
        let f = error_policy::<K>(K::CONTROLLER);
        move |obj: Arc<K>, err: &Error, sc: Arc<StoreCtx>| f(obj, err, sc.ctx.clone())
    };
    // A finished Backup wakes its store, so the catalog lists the new restore point
    // without waiting for the probe interval (the reconcile lists only when a Backup
    // finished after the last listing).
    let policies = sc.ctx.caches.policies.clone();
    let store_of = move |b: Backup| {
        let done = b
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_finished());
        let ns = b.namespace()?;
        let policy = policies.get(&ObjectRef::new(&b.spec.policy_ref.name).within(&ns))?;
        let r = &policy.spec.store_ref;
        (done && r.kind == K::REF_KIND).then(|| match K::REF_KIND {
            crate::crd::backup_policy::StoreKind::BackupStore => {
                ObjectRef::new(&r.name).within(&ns)
            }
            crate::crd::backup_policy::StoreKind::ClusterBackupStore => ObjectRef::new(&r.name),
        })
    };
    let served = sc.ctx.config.watch_namespaces.clone();
    let (store, events) = K::reflected(&client, &served);
    // A deleted store's catalog goes with it (kube-runtime does not reconcile an object
    // that is gone): at its Delete event, and, for stores deleted while the watch was
    // down, at the end of each full list.
    let events = {
        let (ctx, reader) = (sc.ctx.clone(), store.clone());
        let cluster = K::REF_KIND == crate::crd::backup_policy::StoreKind::ClusterBackupStore;
        let key_of = |s: &K| catalog::StoreKey {
            namespace: s.namespace(),
            name: s.name_any(),
        };
        // Its verify Jobs and their copies of its Secrets (in the controller's
        // namespace, where no owner reference can tie them to a namespaced store) go too.
        let uids = |stores: &[Arc<K>]| -> std::collections::HashSet<String> {
            stores.iter().filter_map(|s| s.meta().uid.clone()).collect()
        };
        events.inspect(move |e| match e {
            Ok(watcher::Event::Delete(s)) => {
                ctx.catalogs.remove(&key_of(s));
                let gone = s.meta().uid.clone().into_iter().collect();
                tokio::spawn(verify::sweep(
                    ctx.clone(),
                    cluster,
                    verify::Sweep::Only(gone),
                ));
            }
            Ok(watcher::Event::InitDone) => {
                let state = reader.state();
                let live = state.iter().map(|s| key_of(s)).collect();
                ctx.catalogs.keep_only(cluster, &live);
                let keep = verify::Sweep::AllBut(uids(&state), Timestamp::now());
                tokio::spawn(verify::sweep(ctx.clone(), cluster, keep));
            }
            _ => {}
        })
    };
    Controller::for_stream(events.applied_objects(), store)
        .watches_stream(
            super::scope::objects::<Backup>(
                &client,
                &served,
                watcher::Config::default().any_semantic(),
            ),
            store_of,
        )
        .with_config(kube::runtime::Config::default().concurrency(sc.ctx.config.concurrency))
        .shutdown_on_signal()
        .run(reconcile::<K>, policy, sc)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "store controller event");
            }
        })
        .await;
}

/// Runs both store controllers until SIGTERM.
pub async fn run(ctx: Arc<Context>, prober: Arc<dyn Prober>) {
    let sc = Arc::new(StoreCtx {
        ctx,
        prober,
        probe_slots: Semaphore::new(PROBES_AT_ONCE),
    });
    tokio::join!(
        run_kind::<BackupStore>(sc.clone()),
        run_kind::<ClusterBackupStore>(sc)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers Ready after a pause, counting how many probes run at once.
    #[derive(Default)]
    struct SlowProber {
        running: AtomicUsize,
        most: AtomicUsize,
    }

    impl Prober for SlowProber {
        fn probe(&self, _: &Connection, _: bool) -> Outcome {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            self.running.fetch_sub(1, Ordering::SeqCst);
            Outcome::Ready {
                repository_id: "r".into(),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_than_the_allowed_probes_derive_keys_at_once() {
        let prober = Arc::new(SlowProber::default());
        let slots = Semaphore::new(PROBES_AT_ONCE);
        let conn = Connection {
            spec: BackupStoreSpec::default(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            ca_pem: None,
            password: Sensitive(String::new()),
        };
        let outcomes = futures::future::join_all(
            (0..8).map(|_| probe(&slots, prober.clone(), conn.clone(), false, Arc::default())),
        )
        .await;
        assert!(
            outcomes
                .iter()
                .all(|(o, _)| matches!(o, Outcome::Ready { .. }))
        );
        assert_eq!(prober.most.load(Ordering::SeqCst), PROBES_AT_ONCE);
    }
    use crate::controller::conditions::{self, Desired};
    use crate::crd::common::condition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn checked(at_time: &str, ready: bool) -> StoreStatus {
        let mut s = StoreStatus {
            observed_generation: Some(1),
            last_check_time: Some(Time(at(at_time))),
            ..StoreStatus::default()
        };
        conditions::set(
            &mut s.conditions,
            &Desired::new(
                condition::READY,
                ready,
                if ready { "Ready" } else { "BucketNotFound" },
                "",
            ),
            Some(1),
            at(at_time),
        );
        s
    }

    #[test]
    fn our_own_status_write_does_not_trigger_a_second_probe() {
        let interval = Duration::from_secs(300);
        let mut store = BackupStore::new("s", BackupStoreSpec::default());
        store.metadata.generation = Some(1);
        store.status = Some(checked("2026-01-01T00:00:00Z", true));
        let wait = recently_verified(&store, at("2026-01-01T00:00:02Z"), interval);
        assert_eq!(wait, Some(Duration::from_secs(298)));
        // A spec change, an unhealthy store, or an old check: probe now.
        store.metadata.generation = Some(2);
        assert_eq!(
            recently_verified(&store, at("2026-01-01T00:00:02Z"), interval),
            None
        );
        store.metadata.generation = Some(1);
        store.status = Some(checked("2026-01-01T00:00:00Z", false));
        assert_eq!(
            recently_verified(&store, at("2026-01-01T00:00:02Z"), interval),
            None
        );
        store.status = Some(checked("2026-01-01T00:00:00Z", true));
        assert_eq!(
            recently_verified(&store, at("2026-01-01T00:01:00Z"), interval),
            None
        );
    }

    #[test]
    fn last_check_time_alone_is_written_only_when_it_has_aged() {
        let interval = Duration::from_secs(300);
        let old = checked("2026-01-01T00:00:00Z", true);
        let mut new = old.clone();
        new.last_check_time = Some(Time(at("2026-01-01T00:01:00Z")));
        assert!(!status_worth_writing(
            Some(&old),
            &new,
            at("2026-01-01T00:01:00Z"),
            interval
        ));
        assert!(status_worth_writing(
            Some(&old),
            &new,
            at("2026-01-01T00:02:30Z"),
            interval
        ));
        new.repository_id = Some("changed".into());
        assert!(status_worth_writing(
            Some(&old),
            &new,
            at("2026-01-01T00:01:00Z"),
            interval
        ));
        assert!(status_worth_writing(
            None,
            &new,
            at("2026-01-01T00:01:00Z"),
            interval
        ));
    }
}

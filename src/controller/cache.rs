//! Shared watch caches of the objects the controllers read on every reconcile: policies,
//! Backups, stores, and the Jobs and Pods Lifeboat made (selected by label, so the cache
//! holds ours only). The policy and Backup controllers are driven by subscriptions to
//! these caches instead of watches of their own: each kind is held once, without its
//! managed fields (a heap profile of 1,000 policies due at one slot found the two
//! controllers' own stores were 15.5 of the 28 MiB live).
//! Reading these from the API server on each reconcile (a label-selected LIST reads the
//! whole namespace from etcd) made a namespace with N policies cost O(N²).
//!
//! NB: a cache can lag behind the API server. Every decision that a stale read could make
//! wrong is confirmed: creates tolerate AlreadyExists, and a Job missing from the cache is
//! looked up directly before its source is declared vanished.

use std::sync::Arc;

use futures::SinkExt;
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crd::backup::Backup;
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::labels;
use crate::crd::store::{BackupStore, ClusterBackupStore};

/// The caches, readable from any reconcile.
#[derive(Clone)]
pub struct Caches {
    pub policies: Store<BackupPolicy>,
    pub backups: Store<Backup>,
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    pub stores: Store<BackupStore>,
    pub cluster_stores: Store<ClusterBackupStore>,
}

/// One subscriber's end of a cache: each object the cache applied a change to (or
/// removed, if asked for), in the order applied. The objects are the cache's own
/// (`Arc`-shared), so a queued change costs a pointer.
pub type Subscription<K> = mpsc::Receiver<Arc<K>>;

/// The cache's end of a subscription, with what the subscriber is told of.
type Subscriber<K> = (Pass, mpsc::Sender<Arc<K>>);

/// The changes a controller is driven by.
pub struct Subscriptions {
    /// The policy controller's own kind.
    pub policies: Subscription<BackupPolicy>,
    /// The policy controller's children, deletions included: a run that finished or was
    /// deleted changes its policy's status and history.
    pub policy_backups: Subscription<Backup>,
    /// The Backup controller's own kind.
    pub backups: Subscription<Backup>,
}

/// Whether a subscriber is also told of removed objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Changes,
    ChangesAndDeletions,
}

/// How many changes a subscription may fall behind before the cache waits for it. The
/// controllers take them as fast as they come (they only queue reconciles), so this only
/// bounds a burst such as the initial list.
const SUBSCRIPTION_BUFFER: usize = 1024;

/// Annotation `kubectl apply` writes: the whole applied object again, never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Runs one reflector until the process ends, with one subscription per entry of
/// `subscribers`. Managed fields (often larger than the rest of the object) and `kubectl
/// apply`'s copy of the object are dropped before caching: neither is ever read; `strip`
/// drops whatever else of the kind is never read from the cache.
fn spawn_reflector<K>(
    api: Api<K>,
    wc: watcher::Config,
    strip: fn(&mut K),
    subscribers: &[Pass],
) -> (Store<K>, Vec<Subscription<K>>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, wc)
        .default_backoff()
        .modify(move |o: &mut K| slim(o, strip))
        .reflect(writer);
    spawn_dispatch(events.boxed(), reader, subscribers)
}

/// [`spawn_reflector`] for a namespaced kind, over the namespaces the controller serves
/// (see [`super::scope`]).
fn spawn_scoped_reflector<K>(
    client: &Client,
    namespaces: &[String],
    wc: watcher::Config,
    strip: fn(&mut K),
    subscribers: &[Pass],
) -> (Store<K>, Vec<Subscription<K>>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, events) =
        super::scope::reflected(client, namespaces, wc, move |o: &mut K| slim(o, strip));
    spawn_dispatch(events, reader, subscribers)
}

/// Drops what no reader of a cache ever reads.
fn slim<K: Resource>(o: &mut K, strip: fn(&mut K)) {
    o.managed_fields_mut().clear();
    o.annotations_mut().remove(LAST_APPLIED);
    strip(o);
}

fn spawn_dispatch<K>(
    events: futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
    reader: Store<K>,
    subscribers: &[Pass],
) -> (Store<K>, Vec<Subscription<K>>)
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (senders, receivers) = channels(subscribers);
    tokio::spawn(dispatch(events, reader.clone(), senders));
    (reader, receivers)
}

/// The sending and receiving ends of one subscription per entry of `passes`.
fn channels<K>(passes: &[Pass]) -> (Vec<Subscriber<K>>, Vec<Subscription<K>>) {
    passes
        .iter()
        .map(|pass| {
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
            ((*pass, tx), rx)
        })
        .unzip()
}

/// Passes each change `events` made to `reader`'s cache on to the subscribers, waiting
/// for a subscriber that is a full buffer behind.
///
/// Why not kube-runtime's shared reflector (`store_shared`, `ReflectHandle`): its handle
/// sends an object reference and looks the object up when the subscriber reads it. If the
/// object was deleted in between, the handle returns `Pending` without asking to be woken,
/// and a controller (which polls its triggers through `SelectAll`) never polls that
/// subscription again: after a burst of deletions the controller stopped seeing new
/// objects, then the cache stopped with it. Sending the object itself has no such gap
/// (and can pass on deletions, which the shared reflector drops).
async fn dispatch<K, S>(events: S, reader: Store<K>, mut senders: Vec<Subscriber<K>>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let (changed, deleted) = match event {
            Err(e) => {
                tracing::debug!(error = %e, "cache watch error (retrying)");
                continue;
            }
            _ if senders.is_empty() => continue,
            // The reflector has applied the event: read the cached copy instead of
            // keeping a second one alive in the buffers.
            Ok(watcher::Event::Apply(o)) => (
                reader.get(&ObjectRef::from_obj(&o)).into_iter().collect(),
                false,
            ),
            Ok(watcher::Event::Delete(o)) => (vec![Arc::new(o)], true),
            // A (re)list is visible at its end, all at once.
            Ok(watcher::Event::InitDone) => (reader.state(), false),
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
        };
        for obj in changed {
            for (pass, tx) in &mut senders {
                if deleted && *pass == Pass::Changes {
                    continue;
                }
                // A dropped subscriber (its controller stopped) is no reason to stop the
                // cache the other readers use.
                let _ = tx.send(obj.clone()).await;
            }
        }
    }
}

impl Caches {
    /// Starts the reflectors and waits until each has its initial list. The subscriptions
    /// must be taken up by running controllers: until then a cache can apply only
    /// [`SUBSCRIPTION_BUFFER`] changes before it waits (its initial list is complete and
    /// readable by then: the reflector applies a list before it is passed on).
    pub async fn start(client: &Client, namespaces: &[String]) -> (Caches, Subscriptions) {
        let ours = watcher::Config::default()
            .labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
            .any_semantic();
        let all = || watcher::Config::default().any_semantic();
        let (policies, mut policy_subs) =
            spawn_scoped_reflector(client, namespaces, all(), |_| {}, &[Pass::Changes]);
        let (backups, backup_subs) = spawn_scoped_reflector(
            client,
            namespaces,
            all(),
            |_| {},
            &[Pass::Changes, Pass::ChangesAndDeletions],
        );
        // The plans read a Job's status and a Pod's status (results, stuck containers),
        // never their specs, which are most of their size. Ours only, by label, in the
        // whole cluster: drill sandboxes are namespaces made at run time (see
        // [`super::scope`]).
        let (jobs, _) = spawn_reflector(
            Api::<Job>::all(client.clone()),
            ours.clone(),
            |j| j.spec = None,
            &[],
        );
        let (pods, _) = spawn_reflector(
            Api::<Pod>::all(client.clone()),
            ours,
            |p| p.spec = None,
            &[],
        );
        let (stores, _) = spawn_scoped_reflector(client, namespaces, all(), |_| {}, &[]);
        let (cluster_stores, _) = spawn_reflector(
            Api::<ClusterBackupStore>::all(client.clone()),
            all(),
            |_| {},
            &[],
        );
        let caches = Caches {
            policies,
            backups,
            jobs,
            pods,
            stores,
            cluster_stores,
        };
        // The writers live as long as their tasks, so this only waits for the first list.
        let _ = caches.policies.wait_until_ready().await;
        let _ = caches.backups.wait_until_ready().await;
        let _ = caches.jobs.wait_until_ready().await;
        let _ = caches.pods.wait_until_ready().await;
        let _ = caches.stores.wait_until_ready().await;
        let _ = caches.cluster_stores.wait_until_ready().await;
        let mut backup_subs = backup_subs.into_iter();
        let subscriptions = Subscriptions {
            policies: policy_subs.pop().expect("one subscription asked for"),
            backups: backup_subs.next().expect("two subscriptions asked for"),
            policy_backups: backup_subs.next().expect("two subscriptions asked for"),
        };
        (caches, subscriptions)
    }

    /// Whether a maintenance Job other than `own` is still running on `repository`.
    pub fn maintenance_running(&self, repository: &str, own: &str) -> bool {
        self.jobs
            .find(|j| {
                let l = j.labels();
                l.get(labels::REPOSITORY).map(String::as_str) == Some(repository)
                    && l.get(labels::JOB_TYPE).map(String::as_str) == Some("maintenance")
                    && j.name_any() != own
                    && crate::controller::access::observe::job_finished(j).is_none()
            })
            .is_some()
    }

    /// Backups of a policy, from the cache.
    pub fn backups_of(&self, namespace: &str, policy: &str) -> Vec<Backup> {
        self.backups
            .state_filter(|b| {
                b.namespace().as_deref() == Some(namespace) && b.spec.policy_ref.name == policy
            })
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// Jobs and Pods labelled with a run (`lifeboat.dev/backup=<run>`), from the cache.
    pub fn children_of(&self, namespace: &str, run: &str) -> (Vec<Job>, Vec<Pod>) {
        let value = crate::jobs::label_value(run);
        let ours = |ns: Option<String>, l: &std::collections::BTreeMap<String, String>| {
            ns.as_deref() == Some(namespace) && l.get(labels::BACKUP) == Some(&value)
        };
        let jobs = self
            .jobs
            .state_filter(|j| ours(j.namespace(), j.labels()))
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect();
        let pods = self
            .pods
            .state_filter(|p| ours(p.namespace(), p.labels()))
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect();
        (jobs, pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn filled<K>(objects: Vec<K>) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let (reader, mut writer) = reflector::store();
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(o));
        }
        reader
    }

    fn job(name: &str, repository: &str, job_type: &str, complete: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some(
                    [
                        (labels::REPOSITORY.to_string(), repository.to_string()),
                        (labels::JOB_TYPE.to_string(), job_type.to_string()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            status: Some(JobStatus {
                conditions: complete.then(|| {
                    vec![k8s_openapi::api::batch::v1::JobCondition {
                        type_: "Complete".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    fn caches(jobs: Vec<Job>, cluster: Vec<ClusterBackupStore>) -> Caches {
        Caches {
            policies: filled(vec![]),
            backups: filled(vec![]),
            jobs: filled(jobs),
            pods: filled(vec![]),
            stores: filled(vec![]),
            cluster_stores: filled(cluster),
        }
    }

    #[test]
    fn only_another_unfinished_maintenance_job_on_the_repository_is_busy() {
        let c = caches(
            vec![
                job("own", "repo-a", "maintenance", false),
                job("done", "repo-a", "maintenance", true),
                job("backup", "repo-a", "backup", false),
                job("elsewhere", "repo-b", "maintenance", false),
            ],
            vec![],
        );
        assert!(!c.maintenance_running("repo-a", "own"));
        assert!(c.maintenance_running("repo-b", "own"));
        assert!(c.maintenance_running("repo-a", "another"));
    }

    fn cm(name: &str) -> k8s_openapi::api::core::v1::ConfigMap {
        let mut c = k8s_openapi::api::core::v1::ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("shop".into());
        c
    }

    /// Runs `events` through a cache and [`dispatch`] with one subscriber per `passes`
    /// entry; returns the cache and what each subscriber read, read the way a controller
    /// reads its triggers (through `SelectAll`, which polls a stream only when woken).
    async fn dispatched(
        events: Vec<watcher::Event<k8s_openapi::api::core::v1::ConfigMap>>,
        passes: &[Pass],
    ) -> (
        Store<k8s_openapi::api::core::v1::ConfigMap>,
        Vec<Vec<Arc<k8s_openapi::api::core::v1::ConfigMap>>>,
    ) {
        let (reader, writer) = reflector::store();
        let (senders, receivers) = channels(passes);
        let events = futures::stream::iter(events.into_iter().map(Ok)).reflect(writer);
        dispatch(events, reader.clone(), senders).await;
        let mut read = Vec::new();
        for rx in receivers {
            let mut all = futures::stream::SelectAll::new();
            all.push(rx);
            read.push(all.collect().await);
        }
        (reader, read)
    }

    fn names(objs: &[Arc<k8s_openapi::api::core::v1::ConfigMap>]) -> Vec<String> {
        objs.iter().map(|o| o.name_any()).collect()
    }

    /// The failure that made the caches dispatch themselves: kube-runtime's shared
    /// reflector handle stalled for good on an object deleted before it was read.
    #[tokio::test]
    async fn an_object_deleted_before_it_is_read_does_not_stall_the_subscription() {
        let (reader, read) = dispatched(
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a")),
                watcher::Event::InitDone,
                watcher::Event::Apply(cm("x")),
                watcher::Event::Delete(cm("x")),
                watcher::Event::Apply(cm("y")),
            ],
            &[Pass::Changes, Pass::ChangesAndDeletions],
        )
        .await;
        assert_eq!(names(&read[0]), ["a", "x", "y"]);
        assert_eq!(names(&read[1]), ["a", "x", "x", "y"]);
        // What is passed on is the cache's own copy, not a second one.
        let y = reader.get(&ObjectRef::new("y").within("shop")).unwrap();
        assert!(Arc::ptr_eq(&read[0][2], &y));
        assert!(Arc::ptr_eq(&read[1][3], &y));
    }

    #[tokio::test]
    async fn a_relist_is_passed_on_once_complete_and_watch_errors_are_skipped() {
        let (reader, writer) = reflector::store();
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(cm("a"))),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::InitApply(cm("b"))),
            Ok(watcher::Event::InitDone),
        ])
        .reflect(writer);
        dispatch(events, reader, vec![(Pass::Changes, tx)]).await;
        let mut got = names(&rx.collect::<Vec<_>>().await);
        got.sort();
        assert_eq!(got, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_dropped_subscriber_does_not_stop_the_others() {
        let (reader, writer) = reflector::store();
        let (gone, gone_rx) = mpsc::channel(1);
        drop(gone_rx);
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let events =
            futures::stream::iter(["a", "b", "c"].map(|n| Ok(watcher::Event::Apply(cm(n)))))
                .reflect(writer);
        dispatch(
            events,
            reader,
            vec![(Pass::Changes, gone), (Pass::Changes, tx)],
        )
        .await;
        assert_eq!(names(&rx.collect::<Vec<_>>().await), ["a", "b", "c"]);
    }
}

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

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crd::backup::Backup;
use crate::crd::backup_policy::{BackupPolicy, StoreKind};
use crate::crd::labels;
use crate::crd::store::{BackupStore, BackupStoreSpec, ClusterBackupStore, StoreStatus};

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

/// A store as a policy in some namespace sees it.
#[derive(Clone, Debug)]
pub struct FoundStore {
    pub spec: BackupStoreSpec,
    pub status: Option<StoreStatus>,
    /// The ClusterBackupStore's name; `None` for a namespaced BackupStore.
    pub cluster: Option<String>,
    /// Whether the policy's namespace may use it (always true for a BackupStore).
    pub allowed: bool,
}

impl FoundStore {
    pub fn namespaced(s: BackupStore) -> Self {
        FoundStore {
            spec: s.spec,
            status: s.status,
            cluster: None,
            allowed: true,
        }
    }

    pub fn cluster(s: ClusterBackupStore, namespace: &str) -> Self {
        FoundStore {
            allowed: s.spec.allows(namespace),
            cluster: Some(s.name_any()),
            spec: s.spec.store,
            status: s.status,
        }
    }
}

/// The changes a controller is driven by: each yields a cached object whenever the cache
/// applies a change to it. Deletions are not passed on: a policy learns of a deleted
/// Backup at its next wake-up (its next slot at the latest), and the Backup controller,
/// which must notice a vanished Job at once, watches its Jobs itself.
pub struct Subscriptions {
    /// The policy controller's own kind.
    pub policies: ReflectHandle<BackupPolicy>,
    /// The policy controller's children (a finished run changes the policy's status).
    pub policy_backups: ReflectHandle<Backup>,
    /// The Backup controller's own kind.
    pub backups: ReflectHandle<Backup>,
}

/// How many changes a subscription may fall behind before the cache waits for it. Items
/// are object references; the controllers take them as fast as they come (they only
/// queue reconciles), so this only bounds a burst such as the initial list.
const SUBSCRIPTION_BUFFER: usize = 1024;

/// Annotation `kubectl apply` writes: the whole applied object again, never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Runs one reflector until the process ends, with `subscribers` subscriptions to its
/// changes. Managed fields (often larger than the rest of the object) and `kubectl
/// apply`'s copy of the object are dropped before caching: neither is ever read; `strip`
/// drops whatever else of the kind is never read from the cache.
fn spawn_reflector<K>(
    api: Api<K>,
    wc: watcher::Config,
    strip: fn(&mut K),
    subscribers: usize,
) -> (Store<K>, Vec<ReflectHandle<K>>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = if subscribers == 0 {
        reflector::store()
    } else {
        reflector::store_shared(SUBSCRIPTION_BUFFER)
    };
    let handles = (0..subscribers)
        .filter_map(|_| writer.subscribe())
        .collect();
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(move |o: &mut K| {
            o.managed_fields_mut().clear();
            o.annotations_mut().remove(LAST_APPLIED);
            strip(o);
        })
        .reflect_shared(writer)
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::debug!(error = %e, "cache watch error (retrying)");
            }
        });
    tokio::spawn(stream);
    (reader, handles)
}

impl Caches {
    /// Starts the reflectors and waits until each has its initial list. The subscriptions
    /// must be taken up by running controllers: until then a cache can apply only
    /// [`SUBSCRIPTION_BUFFER`] changes before it waits (its initial list is complete and
    /// readable by then: a store is marked ready before its changes are passed on).
    pub async fn start(client: &Client) -> (Caches, Subscriptions) {
        let ours = watcher::Config::default()
            .labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
            .any_semantic();
        let all = || watcher::Config::default().any_semantic();
        let (policies, mut policy_subs) =
            spawn_reflector(Api::<BackupPolicy>::all(client.clone()), all(), |_| {}, 1);
        let (backups, mut backup_subs) =
            spawn_reflector(Api::<Backup>::all(client.clone()), all(), |_| {}, 2);
        // The plans read a Job's status and a Pod's status (results, stuck containers),
        // never their specs, which are most of their size.
        let (jobs, _) = spawn_reflector(
            Api::<Job>::all(client.clone()),
            ours.clone(),
            |j| j.spec = None,
            0,
        );
        let (pods, _) =
            spawn_reflector(Api::<Pod>::all(client.clone()), ours, |p| p.spec = None, 0);
        let (stores, _) =
            spawn_reflector(Api::<BackupStore>::all(client.clone()), all(), |_| {}, 0);
        let (cluster_stores, _) = spawn_reflector(
            Api::<ClusterBackupStore>::all(client.clone()),
            all(),
            |_| {},
            0,
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
        let subscriptions = Subscriptions {
            policies: policy_subs.pop().expect("one subscription asked for"),
            policy_backups: backup_subs.pop().expect("two subscriptions asked for"),
            backups: backup_subs.pop().expect("two subscriptions asked for"),
        };
        (caches, subscriptions)
    }

    /// The store `kind`/`name` as seen from `namespace`, from the cache.
    pub fn store(&self, kind: StoreKind, namespace: &str, name: &str) -> Option<FoundStore> {
        match kind {
            StoreKind::BackupStore => self
                .stores
                .get(&reflector::ObjectRef::new(name).within(namespace))
                .map(|s| FoundStore::namespaced(Arc::unwrap_or_clone(s))),
            StoreKind::ClusterBackupStore => self
                .cluster_stores
                .get(&reflector::ObjectRef::new(name))
                .map(|s| FoundStore::cluster(Arc::unwrap_or_clone(s), namespace)),
        }
    }

    /// Whether a maintenance Job other than `own` is still running on `repository`.
    pub fn maintenance_running(&self, repository: &str, own: &str) -> bool {
        self.jobs
            .find(|j| {
                let l = j.labels();
                l.get(labels::REPOSITORY).map(String::as_str) == Some(repository)
                    && l.get(labels::JOB_TYPE).map(String::as_str) == Some("maintenance")
                    && j.name_any() != own
                    && crate::controller::backup::plan::job_finished(j).is_none()
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
    use crate::crd::store::ClusterBackupStoreSpec;
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

    #[test]
    fn a_cluster_store_is_found_with_whether_the_namespace_may_use_it() {
        let mut s = ClusterBackupStore::new(
            "shared",
            ClusterBackupStoreSpec {
                allowed_namespaces: vec!["shop".into()],
                ..ClusterBackupStoreSpec::default()
            },
        );
        s.metadata.uid = Some("u".into());
        let c = caches(vec![], vec![s]);
        let found = c
            .store(StoreKind::ClusterBackupStore, "shop", "shared")
            .unwrap();
        assert!(found.allowed);
        assert_eq!(found.cluster.as_deref(), Some("shared"));
        let other = c
            .store(StoreKind::ClusterBackupStore, "blog", "shared")
            .unwrap();
        assert!(!other.allowed);
        assert!(c.store(StoreKind::BackupStore, "shop", "shared").is_none());
    }
}

//! Shared watch caches of the objects the controllers read on every reconcile: Backups,
//! and the Jobs and Pods Lifeboat made (selected by label, so the cache holds ours only).
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
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crd::backup::Backup;
use crate::crd::labels;

/// The caches, readable from any reconcile.
#[derive(Clone)]
pub struct Caches {
    pub backups: Store<Backup>,
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
}

/// Runs one reflector until the process ends. Managed fields are dropped before caching:
/// they are often larger than the rest of the object and never read.
fn spawn_reflector<K>(api: Api<K>, wc: watcher::Config) -> Store<K>
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
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::debug!(error = %e, "cache watch error (retrying)");
            }
        });
    tokio::spawn(stream);
    reader
}

impl Caches {
    /// Starts the reflectors and waits until each has its initial list.
    pub async fn start(client: &Client) -> Caches {
        let ours = watcher::Config::default()
            .labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
            .any_semantic();
        let caches = Caches {
            backups: spawn_reflector(
                Api::<Backup>::all(client.clone()),
                watcher::Config::default().any_semantic(),
            ),
            jobs: spawn_reflector(Api::<Job>::all(client.clone()), ours.clone()),
            pods: spawn_reflector(Api::<Pod>::all(client.clone()), ours),
        };
        // The writers live as long as their tasks, so this only waits for the first list.
        let _ = caches.backups.wait_until_ready().await;
        let _ = caches.jobs.wait_until_ready().await;
        let _ = caches.pods.wait_until_ready().await;
        caches
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

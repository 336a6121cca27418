//! Where the controllers list and watch the namespaced kinds they serve: the whole cluster,
//! or, with `--watch-namespaces`, one watch per served namespace, merged. The chart then
//! grants those kinds by RoleBindings in the served namespaces only (docs/security.md), so
//! a cluster-wide LIST would be refused.
//!
//! Label-selected watches of Lifeboat's own Jobs, Pods and Deployments and of sandbox
//! namespaces stay cluster-wide: drill sandboxes are namespaces made at run time, which
//! no per-namespace watch started at install time could cover.

use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use kube::api::Api;
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

type Events<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// One `Api` per served namespace, or one for the whole cluster when `namespaces` is empty.
fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Every object of kind `K` changed or deleted in the served namespaces: the trigger of a
/// controller's `owns_stream` / `watches_stream`. Unlike a store, a trigger needs no merged
/// relists: a relist only wakes the owners again.
pub(crate) fn objects<K>(
    client: &Client,
    namespaces: &[String],
    wc: watcher::Config,
) -> BoxStream<'static, Result<K, watcher::Error>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    stream::select_all(apis::<K>(client, namespaces).into_iter().map(|api| {
        watcher(api, wc.clone())
            .default_backoff()
            .touched_objects()
            .boxed()
    }))
    .boxed()
}

/// A store of the objects of kind `K` in the served namespaces, with the stream that fills
/// it (the store changes as the stream is polled, as with `reflector`).
pub(crate) fn reflected<K>(
    client: &Client,
    namespaces: &[String],
    wc: watcher::Config,
    modify: impl FnMut(&mut K) + Clone + Send + 'static,
) -> (Store<K>, Events<K>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let writer = Writer::<K>::default();
    let reader = writer.as_reader();
    let streams: Vec<Events<K>> = apis::<K>(client, namespaces)
        .into_iter()
        .map(|api| {
            watcher(api, wc.clone())
                .default_backoff()
                .modify(modify.clone())
                .boxed()
        })
        .collect();
    let events = merge(streams, namespaces.to_vec(), reader.clone())
        .reflect(writer)
        .boxed();
    (reader, events)
}

/// Merges one watch stream per namespace into the event stream of one store.
///
/// A store (`reflector::store::Writer`) takes a relist as `Init`, `InitApply`…, `InitDone`
/// and then replaces its whole content: passed through as they are, one namespace's relist
/// would drop every other namespace's objects. So the first lists of all namespaces are
/// gathered and given to the store as one list (the store is ready when every namespace
/// is listed); a later relist of one namespace becomes an `Apply` of each listed object
/// and a `Delete` of each object of that namespace the store holds but the list lacks.
/// A single stream (one namespace, or the whole cluster) is passed through untouched.
fn merge<K>(mut streams: Vec<Events<K>>, namespaces: Vec<String>, reader: Store<K>) -> Events<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    if streams.len() == 1 {
        return streams.pop().expect("one stream");
    }
    let n = streams.len();
    let tagged = stream::select_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |e| (i, e))),
    );
    let state = Merger {
        input: tagged.boxed(),
        namespaces,
        reader,
        first: (0..n).map(|_| None).collect(),
        relisting: (0..n).map(|_| Vec::new()).collect(),
        held: VecDeque::new(),
        ready: false,
    };
    stream::unfold(state, |mut s| async move {
        let (i, e) = match s.held.pop_front() {
            Some(h) => h,
            None => s.input.next().await?,
        };
        let out = s.step(i, e);
        Some((stream::iter(out), s))
    })
    .flatten()
    .boxed()
}

type Tagged<K> = (usize, Result<Event<K>, watcher::Error>);

struct Merger<K: Resource<DynamicType = ()> + Clone + 'static> {
    input: BoxStream<'static, Tagged<K>>,
    /// The namespace of each stream, by index.
    namespaces: Vec<String>,
    /// The store the merged events fill: what a namespace held before its relist.
    reader: Store<K>,
    /// Each namespace's first complete list, until every namespace has one.
    first: Vec<Option<Vec<K>>>,
    /// Each namespace's list in progress.
    relisting: Vec<Vec<K>>,
    /// Events of namespaces already listed while others are still listing, replayed once
    /// the store holds the first lists.
    held: VecDeque<Tagged<K>>,
    ready: bool,
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> Merger<K> {
    fn step(
        &mut self,
        i: usize,
        e: Result<Event<K>, watcher::Error>,
    ) -> Vec<Result<Event<K>, watcher::Error>> {
        let e = match e {
            Ok(e) => e,
            Err(err) => return vec![Err(err)],
        };
        if !self.ready {
            return self.step_first(i, e);
        }
        match e {
            Event::Apply(o) => vec![Ok(Event::Apply(o))],
            Event::Delete(o) => vec![Ok(Event::Delete(o))],
            Event::Init => {
                self.relisting[i].clear();
                vec![]
            }
            Event::InitApply(o) => {
                self.relisting[i].push(o);
                vec![]
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut self.relisting[i]);
                self.relisted(i, listed)
            }
        }
    }

    fn step_first(&mut self, i: usize, e: Event<K>) -> Vec<Result<Event<K>, watcher::Error>> {
        if self.first[i].is_some() {
            self.held.push_back((i, Ok(e)));
            return vec![];
        }
        match e {
            Event::Init => self.relisting[i].clear(),
            Event::InitApply(o) => self.relisting[i].push(o),
            Event::InitDone => self.first[i] = Some(std::mem::take(&mut self.relisting[i])),
            // A watcher sends changes only after its list.
            Event::Apply(_) | Event::Delete(_) => {}
        }
        if self.first.iter().any(Option::is_none) {
            return vec![];
        }
        self.ready = true;
        let mut out = vec![Ok(Event::Init)];
        for list in self.first.drain(..) {
            out.extend(list.into_iter().flatten().map(|o| Ok(Event::InitApply(o))));
        }
        out.push(Ok(Event::InitDone));
        out
    }

    /// A namespace's relist, as changes to what the store holds of that namespace.
    fn relisted(&self, i: usize, listed: Vec<K>) -> Vec<Result<Event<K>, watcher::Error>> {
        let ns = &self.namespaces[i];
        let names: HashSet<String> = listed.iter().map(|o| o.name_any()).collect();
        let gone: Vec<_> = self
            .reader
            .state()
            .into_iter()
            .filter(|o| {
                o.namespace().as_deref() == Some(ns.as_str()) && !names.contains(&o.name_any())
            })
            .map(|o| Ok(Event::Delete(K::clone(&o))))
            .collect();
        listed
            .into_iter()
            .map(|o| Ok(Event::Apply(o)))
            .chain(gone)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some(ns.into());
        c
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut v: Vec<_> = store
            .state()
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap(), o.name_any()))
            .collect();
        v.sort();
        v
    }

    fn feed(events: Vec<Event<ConfigMap>>) -> Events<ConfigMap> {
        stream::iter(events.into_iter().map(Ok)).boxed()
    }

    /// Two namespaces listed one after the other: neither's list replaces the other's,
    /// and the store is ready only once both are listed.
    #[tokio::test]
    async fn each_namespaces_list_and_relist_changes_only_that_namespace() {
        let writer = Writer::<ConfigMap>::default();
        let reader = writer.as_reader();
        let a = feed(vec![
            Event::Init,
            Event::InitApply(cm("a", "1")),
            Event::InitApply(cm("a", "2")),
            Event::InitDone,
            // A change before b is listed is held, then applied after the first lists.
            Event::Apply(cm("a", "3")),
            // A relist after a watch gap: 1 is gone, 4 is new.
            Event::Init,
            Event::InitApply(cm("a", "2")),
            Event::InitApply(cm("a", "3")),
            Event::InitApply(cm("a", "4")),
            Event::InitDone,
        ]);
        let b = feed(vec![
            Event::Init,
            Event::InitApply(cm("b", "1")),
            Event::InitDone,
            Event::Delete(cm("b", "1")),
            Event::Apply(cm("b", "5")),
            Event::Apply(cm("b", "6")),
            // A relist that finds the namespace empty.
            Event::Init,
            Event::InitDone,
        ]);
        let merged =
            merge(vec![a, b], vec!["a".into(), "b".into()], reader.clone()).reflect(writer);
        let mut merged = std::pin::pin!(merged);
        let mut inits = 0;
        while let Some(e) = merged.next().await {
            if let Ok(Event::InitDone) = e {
                inits += 1;
                // Ready at once with both first lists, whatever came in between.
                let now = names(&reader);
                assert!(
                    now.contains(&"a/1".to_string()) && now.contains(&"b/1".to_string()),
                    "{now:?}"
                );
            }
        }
        assert_eq!(inits, 1, "the store is listed once, not once per namespace");
        assert_eq!(names(&reader), ["a/2", "a/3", "a/4"]);
    }

    #[tokio::test]
    async fn one_stream_is_passed_through() {
        let writer = Writer::<ConfigMap>::default();
        let reader = writer.as_reader();
        let merged = merge(
            vec![feed(vec![
                Event::Init,
                Event::InitApply(cm("a", "1")),
                Event::InitDone,
            ])],
            vec!["a".into()],
            reader.clone(),
        )
        .reflect(writer);
        let seen: Vec<_> = merged.collect().await;
        assert_eq!(seen.len(), 3);
        assert_eq!(names(&reader), ["a/1"]);
    }
}

//! Publishing Kubernetes Events (events.k8s.io/v1), with a repeat of the same reason on
//! the same object folded into the first Event's series, keeping only what folding needs.
//!
//! Why not kube-runtime's `Recorder`: it keeps every Event it published, whole (about
//! 1.4 KiB each), for six minutes, in a map that never shrinks and that it scans on every
//! publish. At a slot where 1,000 policies fire that held ~10 MiB of the controller's
//! memory long after the burst (docs/performance.md). Here an entry is a few short
//! strings, and there are at most [`CAPACITY`] of them (client-go bounds its cache too).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;

/// A repeat within this long of the previous one joins its series; a later one starts a
/// new Event (the same window client-go and kube-runtime use).
const TTL: Duration = Duration::from_secs(6 * 60);

/// Most series remembered at once; the least recently seen go first.
const CAPACITY: usize = 4096;

/// What makes two Events one series: the object, the type, the reason and the action
/// (not the note: a retry's message often differs only in a detail).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    regarding: String,
    warning: bool,
    reason: String,
    action: String,
}

#[derive(Debug)]
struct Seen {
    name: String,
    count: i32,
    last: Instant,
}

/// Whether a publish starts an Event or adds to the series of an existing one.
#[derive(Debug, PartialEq, Eq)]
enum Fold {
    New,
    Repeat { name: String, count: i32 },
}

/// The remembered series; pure, so its rules are unit-tested without an API server.
#[derive(Debug, Default)]
struct Series {
    seen: HashMap<Key, Seen>,
}

impl Series {
    /// Decides how an Event with `key` is published at `now`. A repeat is counted at
    /// once, so concurrent repeats get distinct counts.
    fn observe(&mut self, key: &Key, now: Instant) -> Fold {
        match self.seen.get_mut(key) {
            Some(s) if now.duration_since(s.last) < TTL => {
                s.count += 1;
                s.last = now;
                Fold::Repeat {
                    name: s.name.clone(),
                    count: s.count,
                }
            }
            _ => Fold::New,
        }
    }

    /// Remembers a created Event as the start of its series.
    fn created(&mut self, key: Key, name: String, now: Instant) {
        if self.seen.len() >= CAPACITY && !self.seen.contains_key(&key) {
            self.evict(now);
        }
        self.seen.insert(
            key,
            Seen {
                name,
                count: 1,
                last: now,
            },
        );
    }

    /// Drops expired series; when all are recent, the least recently seen quarter.
    fn evict(&mut self, now: Instant) {
        self.seen.retain(|_, s| now.duration_since(s.last) < TTL);
        if self.seen.len() >= CAPACITY {
            let mut lasts: Vec<Instant> = self.seen.values().map(|s| s.last).collect();
            let cut = CAPACITY / 4;
            let (_, nth, _) = lasts.select_nth_unstable(cut);
            let cutoff = *nth;
            self.seen.retain(|_, s| s.last > cutoff);
        }
        // After a burst the map would otherwise keep its largest size for good.
        if self.seen.capacity() > 4 * self.seen.len().max(64) {
            self.seen.shrink_to_fit();
        }
    }
}

/// Publishes Events as one controller instance.
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
}

/// An Event to publish about an object.
pub struct NewEvent<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

impl EventRecorder {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        EventRecorder {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            series: Mutex::default(),
        }
    }

    /// Publishes `ev` about `obj`: a new Event, or the next count of a recent one with
    /// the same reason.
    pub async fn publish<K>(&self, obj: &K, ev: NewEvent<'_>) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let regarding = obj.object_ref(&());
        let key = Key {
            regarding: regarding.uid.clone().unwrap_or_else(|| {
                format!(
                    "{}/{}/{}",
                    regarding.kind.as_deref().unwrap_or_default(),
                    regarding.namespace.as_deref().unwrap_or_default(),
                    regarding.name.as_deref().unwrap_or_default()
                )
            }),
            warning: ev.warning,
            reason: ev.reason.to_string(),
            action: ev.action.to_string(),
        };
        // Cluster-scoped objects' Events go to `default`, as kubectl looks for them there.
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let fold = self
            .series
            .lock()
            .expect("lock poisoned")
            .observe(&key, Instant::now());
        if let Fold::Repeat { name, count } = fold {
            let patch = json!({"series": {
                "count": count,
                "lastObservedTime": MicroTime(jiff::Timestamp::now()),
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Expired from the API server (Events live an hour by default): start anew.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(regarding, &ev);
        let created = api.create(&PostParams::default(), &event).await?;
        self.series.lock().expect("lock poisoned").created(
            key,
            created.metadata.name.unwrap_or_default(),
            Instant::now(),
        );
        Ok(())
    }

    fn event(&self, regarding: ObjectReference, ev: &NewEvent<'_>) -> Event {
        let now = jiff::Timestamp::now();
        Event {
            metadata: ObjectMeta {
                // The object's name and the time make the name unique, as client-go's do.
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if ev.warning { "Warning" } else { "Normal" }.into()),
            reason: Some(ev.reason.to_string()),
            action: Some(ev.action.to_string()),
            note: Some(ev.note.clone()),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            series: None::<EventSeries>,
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(obj: &str, reason: &str) -> Key {
        Key {
            regarding: obj.into(),
            warning: true,
            reason: reason.into(),
            action: "Reconcile".into(),
        }
    }

    #[test]
    fn repeats_of_a_reason_fold_into_one_series_until_it_expires() {
        let mut s = Series::default();
        let t0 = Instant::now();
        let k = key("uid-1", "StoreNotFound");
        assert_eq!(s.observe(&k, t0), Fold::New);
        s.created(k.clone(), "orders.1".into(), t0);
        for count in 2..=4 {
            assert_eq!(
                s.observe(&k, t0 + Duration::from_secs(count as u64)),
                Fold::Repeat {
                    name: "orders.1".into(),
                    count
                }
            );
        }
        // Another reason, or another object, is another series.
        assert_eq!(s.observe(&key("uid-1", "SecretNotFound"), t0), Fold::New);
        assert_eq!(s.observe(&key("uid-2", "StoreNotFound"), t0), Fold::New);
        // The window counts from the last repeat.
        let later = t0 + Duration::from_secs(4) + TTL;
        assert_eq!(s.observe(&k, later), Fold::New);
    }

    #[test]
    fn memory_is_bounded_and_the_least_recent_series_go_first() {
        let mut s = Series::default();
        let t0 = Instant::now();
        let n = CAPACITY + 100;
        for i in 0..n {
            let k = key(&format!("uid-{i}"), "BackupCreated");
            s.created(k, format!("e{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert!(s.seen.len() <= CAPACITY, "{}", s.seen.len());
        assert_eq!(
            s.observe(&key("uid-0", "BackupCreated"), t0 + Duration::from_secs(10)),
            Fold::New,
            "the oldest series was evicted"
        );
        let newest = format!("uid-{}", n - 1);
        assert!(matches!(
            s.observe(&key(&newest, "BackupCreated"), t0 + Duration::from_secs(10)),
            Fold::Repeat { count: 2, .. }
        ));
        // Once all have expired the next insert frees the map's memory too.
        s.created(
            key("fresh", "X"),
            "f".into(),
            t0 + TTL + Duration::from_secs(60),
        );
        s.evict(t0 + TTL + Duration::from_secs(60));
        assert_eq!(s.seen.len(), 1);
        assert!(s.seen.capacity() < 1024, "{}", s.seen.capacity());
    }
}

//! Repository locks compatible with restic's, so restic and Lifeboat can share a repository.
//!
//! A lock is an encrypted JSON file in `locks/` named by the SHA-256 of its content.
//! Protocol (restic's): look for conflicting locks, write ours, wait 200 ms, look again
//! (a concurrent writer that raced us sees ours or we see theirs), then refresh every five
//! minutes by writing a new file and deleting the old one. An exclusive lock conflicts with
//! every other lock, a shared lock only with exclusive ones. A lock is stale when it has
//! not been refreshed for 30 minutes, or when it was taken on this host by a process that no
//! longer exists; stale locks still conflict (as in restic) until `unlock` removes them.
//!
//! rustic_core has no locking of its own: the facade takes these around every operation.

use std::{
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;
use jiff::Timestamp;
use rustic_core::Id;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    backend::{ObjectStore, StoreError},
    format::{
        crypto::Crypto,
        files::{Unpacked, decode},
    },
};

/// How long an unrefreshed lock stays valid (restic: 30 minutes).
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed (restic: 5 minutes).
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
const RECHECK_DELAY: Duration = Duration::from_millis(200);

/// The lock file content (restic's JSON field names).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// When the lock was created or last refreshed.
    pub time: Timestamp,
    /// Exclusive (prune, forget) or shared (backup, restore, check...).
    pub exclusive: bool,
    /// Host name of the holder.
    pub hostname: String,
    /// User name of the holder.
    #[serde(default)]
    pub username: String,
    /// Process id of the holder on its host.
    pub pid: i64,
    /// User id.
    #[serde(default)]
    pub uid: u32,
    /// Group id.
    #[serde(default)]
    pub gid: u32,
    /// Who holds the lock beyond host and PID, as the process said at start
    /// ([`set_holder`]): an opaque string the engine does not interpret (Lifeboat's
    /// movers record their pod's identity, so the controller can tell when the holder is
    /// gone). Not one of restic's fields; restic ignores fields it does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records who this process is, for every lock it writes from now on. Process-wide, like
/// the host name and PID a lock carries; the first call wins.
pub fn set_holder(holder: String) {
    let _ = HOLDER.set(holder);
}

impl LockInfo {
    fn mine(exclusive: bool) -> Self {
        let uid = nix::unistd::getuid();
        let username = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default();
        Self {
            time: Timestamp::now(),
            exclusive,
            hostname: hostname(),
            username,
            pid: i64::from(std::process::id()),
            uid: uid.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            holder: HOLDER.get().cloned(),
        }
    }

    /// Why the lock is stale, or `None` if it may still be held.
    pub fn stale_reason(&self, now: Timestamp, my_host: &str) -> Option<String> {
        let age = now.duration_since(self.time);
        if age > jiff::SignedDuration::try_from(STALE_AFTER).unwrap_or_default() {
            return Some(format!(
                "not refreshed for {}s (limit {}s)",
                age.as_secs(),
                STALE_AFTER.as_secs()
            ));
        }
        if self.hostname == my_host && !process_exists(self.pid) {
            return Some(format!(
                "process {} no longer exists on this host",
                self.pid
            ));
        }
        None
    }

    fn describe(&self) -> String {
        format!(
            "{} lock by PID {} on {} (user {:?}) created {}",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.pid,
            self.hostname,
            self.username,
            self.time
        )
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

fn process_exists(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        // EPERM: it exists but belongs to someone else.
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Lock handling failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds a conflicting lock.
    #[error("repository is locked: {holder}{}", stale.as_ref().map(|s| format!(" (stale: {s}; `lifeboat unlock` removes stale locks)")).unwrap_or_default())]
    Conflict {
        /// Description of the conflicting lock.
        holder: String,
        /// Why it is stale, if it is.
        stale: Option<String>,
    },
    /// The storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lock as found in the repository.
#[derive(Clone, Debug, Serialize)]
pub struct FoundLock {
    /// The lock file's ID.
    pub id: String,
    /// Its content.
    #[serde(flatten)]
    pub info: LockInfo,
    /// Why it is stale, if it is.
    pub stale: Option<String>,
}

/// Reads every lock; locks that cannot be read or decrypted are skipped (restic does the
/// same: they may belong to another repository key generation or be half-written).
pub(crate) fn list_locks(
    store: &dyn ObjectStore,
    key: &Crypto,
) -> Result<Vec<FoundLock>, StoreError> {
    let now = Timestamp::now();
    let me = hostname();
    let mut out = Vec::new();
    for (name, size) in store.list("locks")? {
        if size > Unpacked::Lock.stored_max() {
            tracing::debug!(lock = %name, size, "ignoring an oversized lock file");
            continue;
        }
        let data = match store.get(&format!("locks/{name}"), None) {
            Ok(d) => d,
            Err(e) if e.kind == super::backend::StoreErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Some(info) = decode(key, Unpacked::Lock, &data)
            .ok()
            .and_then(|plain| serde_json::from_slice::<LockInfo>(&plain).ok())
        else {
            tracing::debug!(lock = %name, "ignoring unreadable lock file");
            continue;
        };
        let stale = info.stale_reason(now, &me);
        out.push(FoundLock {
            id: name,
            info,
            stale,
        });
    }
    Ok(out)
}

/// Removes locks: the stale ones, or all of them with `all` (restic's `unlock
/// --remove-all`). Returns the removed locks.
pub(crate) fn remove_locks(
    store: &dyn ObjectStore,
    key: &Crypto,
    all: bool,
) -> Result<Vec<FoundLock>, StoreError> {
    let mut removed = Vec::new();
    for lock in list_locks(store, key)? {
        if all || lock.stale.is_some() {
            store.delete(&format!("locks/{}", lock.id))?;
            removed.push(lock);
        }
    }
    Ok(removed)
}

/// Removes the lock file `id` only if it still holds `expected`: the caller judged that
/// content (a lock file's name is the hash of its content, and a refresh writes a new
/// file, so this re-read guards against a store that reuses names, not a refresh).
/// `Ok(false)` when the file is gone or holds something else.
pub(crate) fn remove_lock_if_unchanged(
    store: &dyn ObjectStore,
    key: &Crypto,
    id: &str,
    expected: &LockInfo,
) -> Result<bool, StoreError> {
    let path = format!("locks/{id}");
    let data = match store.get(&path, None) {
        Ok(d) => d,
        Err(e) if e.kind == super::backend::StoreErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let current = decode(key, Unpacked::Lock, &data)
        .ok()
        .and_then(|plain| serde_json::from_slice::<LockInfo>(&plain).ok());
    if current.as_ref() != Some(expected) {
        return Ok(false);
    }
    store.delete(&path)?;
    Ok(true)
}

fn write_lock(
    store: &dyn ObjectStore,
    key: &Crypto,
    info: &LockInfo,
) -> Result<String, StoreError> {
    let json = serde_json::to_vec(info).expect("lock info serialises");
    let data = key.seal(&json);
    let id = Id::new(Sha256::digest(&data).into())
        .to_hex()
        .as_str()
        .to_string();
    store.put(&format!("locks/{id}"), vec![Bytes::from(data)])?;
    Ok(id)
}

fn find_conflict(
    store: &dyn ObjectStore,
    key: &Crypto,
    exclusive: bool,
    own: Option<&str>,
) -> Result<Option<FoundLock>, StoreError> {
    Ok(list_locks(store, key)?
        .into_iter()
        .filter(|l| Some(l.id.as_str()) != own)
        .find(|l| exclusive || l.info.exclusive))
}

/// A lock written but not yet confirmed: the first half of restic's protocol (check,
/// write). [`PendingLock::confirm`] waits out the rest of the re-check delay and checks
/// again. Between the two the caller may read the repository (index, snapshots, parent
/// trees), so the wait costs nothing: no exclusive holder was there at the first check,
/// and one that starts now sees our lock and backs off, or we see its lock at the
/// re-check and discard what we read. Nothing may be written before `confirm`.
/// Dropped unconfirmed, it removes its lock file.
#[derive(Debug)]
pub(crate) struct PendingLock {
    store: Arc<dyn ObjectStore>,
    key: Crypto,
    exclusive: bool,
    info: LockInfo,
    /// `None` once confirmed (the guard owns the file then)
    id: Option<String>,
    written: Instant,
}

impl PendingLock {
    /// Looks for conflicting locks and writes ours.
    pub(crate) fn begin(
        store: Arc<dyn ObjectStore>,
        master: &Crypto,
        exclusive: bool,
    ) -> Result<Self, LockError> {
        let key = master.clone();
        if let Some(l) = find_conflict(store.as_ref(), &key, exclusive, None)? {
            return Err(conflict(l));
        }
        let info = LockInfo::mine(exclusive);
        let id = write_lock(store.as_ref(), &key, &info)?;
        Ok(Self {
            store,
            key,
            exclusive,
            info,
            id: Some(id),
            written: Instant::now(),
        })
    }

    /// Waits until the re-check delay has passed since the lock was written, looks for
    /// conflicting locks again, and holds the lock (refreshed) if there is none.
    pub(crate) fn confirm(self) -> Result<LockGuard, LockError> {
        self.confirm_with_refresh(REFRESH_EVERY)
    }

    fn confirm_with_refresh(mut self, refresh: Duration) -> Result<LockGuard, LockError> {
        let id = self.id.clone().expect("an unconfirmed lock has its file");
        if let Some(rest) = RECHECK_DELAY.checked_sub(self.written.elapsed()) {
            std::thread::sleep(rest);
        }
        // on error, drop removes the lock file
        if let Some(l) = find_conflict(self.store.as_ref(), &self.key, self.exclusive, Some(&id))? {
            return Err(conflict(l));
        }
        self.id = None;
        tracing::debug!(lock = %id, exclusive = self.exclusive, "repository lock taken");
        Ok(LockGuard::start(
            id,
            self.info.clone(),
            self.key.clone(),
            self.store.clone(),
            refresh,
        ))
    }
}

impl Drop for PendingLock {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.store.delete(&format!("locks/{id}"));
        }
    }
}

fn conflict(l: FoundLock) -> LockError {
    LockError::Conflict {
        holder: l.info.describe(),
        stale: l.stale,
    }
}

/// A held lock; refreshed in the background, removed on drop.
#[derive(Debug)]
pub struct LockGuard {
    state: Arc<Mutex<String>>,
    store: Arc<dyn ObjectStore>,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard {
    /// Takes a lock, following restic's check / write / wait / re-check protocol.
    pub(crate) fn acquire(
        store: Arc<dyn ObjectStore>,
        master: &Crypto,
        exclusive: bool,
    ) -> Result<Self, LockError> {
        PendingLock::begin(store, master, exclusive)?.confirm()
    }

    /// [`LockGuard::acquire`] with another refresh interval (tests).
    #[cfg(test)]
    pub(crate) fn acquire_with_refresh(
        store: Arc<dyn ObjectStore>,
        master: &Crypto,
        exclusive: bool,
        refresh: Duration,
    ) -> Result<Self, LockError> {
        PendingLock::begin(store, master, exclusive)?.confirm_with_refresh(refresh)
    }

    fn start(
        id: String,
        info: LockInfo,
        key: Crypto,
        store: Arc<dyn ObjectStore>,
        refresh: Duration,
    ) -> Self {
        let state = Arc::new(Mutex::new(id));
        let (tx, rx) = mpsc::channel::<()>();
        let refresher = {
            let state = state.clone();
            let store = store.clone();
            std::thread::Builder::new()
                .name("lifeboat-lock".into())
                .spawn(move || {
                    loop {
                        match rx.recv_timeout(refresh) {
                            Err(RecvTimeoutError::Timeout) => {}
                            _ => return,
                        }
                        let mut info = info.clone();
                        info.time = Timestamp::now();
                        let mut current = state.lock().unwrap_or_else(|e| e.into_inner());
                        match write_lock(store.as_ref(), &key, &info) {
                            Ok(new_id) => {
                                let old = std::mem::replace(&mut *current, new_id);
                                if let Err(e) = store.delete(&format!("locks/{old}")) {
                                    tracing::warn!(error = %e, "removing the previous lock file failed");
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "refreshing the repository lock failed"),
                        }
                    }
                })
                .ok()
        };
        Self {
            state,
            store,
            stop: Some(tx),
            refresher,
        }
    }

    /// The current lock file's ID.
    pub fn id(&self) -> String {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let id = self.id();
        if let Err(e) = self.store.delete(&format!("locks/{id}")) {
            tracing::warn!(error = %e, lock = %id, "removing the repository lock failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::local::LocalStore;

    fn setup() -> (tempfile::TempDir, Arc<dyn ObjectStore>, Crypto) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()));
        store.create().unwrap();
        (dir, store, Crypto::random())
    }

    #[test]
    fn shared_locks_coexist_and_exclusive_conflicts() {
        let (_d, store, mk) = setup();
        let a = LockGuard::acquire(store.clone(), &mk, false).unwrap();
        let b = LockGuard::acquire(store.clone(), &mk, false).unwrap();
        let err = LockGuard::acquire(store.clone(), &mk, true).unwrap_err();
        assert!(
            matches!(err, LockError::Conflict { stale: None, .. }),
            "{err}"
        );
        drop(a);
        drop(b);
        let x = LockGuard::acquire(store.clone(), &mk, true).unwrap();
        let err = LockGuard::acquire(store.clone(), &mk, false).unwrap_err();
        assert!(err.to_string().contains("exclusive lock by PID"), "{err}");
        drop(x);
        assert!(store.list("locks").unwrap().is_empty());
    }

    #[test]
    fn pending_lock_loses_to_an_exclusive_lock_written_before_its_recheck() {
        let (_d, store, mk) = setup();
        let pending = PendingLock::begin(store.clone(), &mk, false).unwrap();
        // a prune elsewhere that checked before our lock existed writes its own
        let mut other = LockInfo::mine(true);
        other.hostname = "another-host".into();
        let theirs = write_lock(store.as_ref(), &mk, &other).unwrap();
        let err = pending.confirm().unwrap_err();
        assert!(err.to_string().contains("exclusive lock"), "{err}");
        // ours is gone, theirs stays
        let left: Vec<String> = list_locks(store.as_ref(), &mk)
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(left, vec![theirs]);
    }

    #[test]
    fn pending_lock_dropped_unconfirmed_removes_its_file_and_confirmed_holds_it() {
        let (_d, store, mk) = setup();
        let pending = PendingLock::begin(store.clone(), &mk, true).unwrap();
        assert_eq!(store.list("locks").unwrap().len(), 1);
        drop(pending);
        assert!(store.list("locks").unwrap().is_empty());
        let pending = PendingLock::begin(store.clone(), &mk, true).unwrap();
        let guard = pending.confirm().unwrap();
        assert_eq!(store.list("locks").unwrap().len(), 1);
        // held: a shared lock is refused while it lives
        assert!(LockGuard::acquire(store.clone(), &mk, false).is_err());
        drop(guard);
        assert!(store.list("locks").unwrap().is_empty());
    }

    #[test]
    fn dead_process_lock_is_stale_and_removable() {
        let (_d, store, mk) = setup();
        let key = mk.clone();
        let mut info = LockInfo::mine(true);
        info.pid = 0x3fff_fff0; // no such process
        write_lock(store.as_ref(), &key, &info).unwrap();
        let mut old = LockInfo::mine(false);
        old.hostname = "elsewhere".into();
        old.time = Timestamp::now() - jiff::SignedDuration::from_secs(31 * 60);
        write_lock(store.as_ref(), &key, &old).unwrap();
        let live = LockGuard::acquire(store.clone(), &mk, false);
        // The dead exclusive lock still blocks (as in restic), and the error says it is stale.
        let err = live.unwrap_err();
        assert!(err.to_string().contains("stale"), "{err}");
        let locks = list_locks(store.as_ref(), &key).unwrap();
        assert_eq!(locks.len(), 2);
        assert!(locks.iter().all(|l| l.stale.is_some()));
        let removed = remove_locks(store.as_ref(), &key, false).unwrap();
        assert_eq!(removed.len(), 2);
        let _g = LockGuard::acquire(store.clone(), &mk, true).unwrap();
    }

    #[test]
    fn live_foreign_lock_is_kept_unless_remove_all() {
        let (_d, store, mk) = setup();
        let key = mk.clone();
        let mut other = LockInfo::mine(false);
        other.hostname = "another-host".into();
        write_lock(store.as_ref(), &key, &other).unwrap();
        assert!(
            remove_locks(store.as_ref(), &key, false)
                .unwrap()
                .is_empty()
        );
        assert_eq!(remove_locks(store.as_ref(), &key, true).unwrap().len(), 1);
    }

    #[test]
    fn held_lock_is_refreshed_and_removed_on_drop() {
        let (_d, store, mk) = setup();
        let key = mk.clone();
        let guard =
            LockGuard::acquire_with_refresh(store.clone(), &mk, false, Duration::from_millis(150))
                .unwrap();
        let first_id = guard.id();
        let first = list_locks(store.as_ref(), &key).unwrap();
        assert_eq!(first.len(), 1);
        std::thread::sleep(Duration::from_millis(500));
        let later = list_locks(store.as_ref(), &key).unwrap();
        // Refreshing writes a new lock file and removes the old one: still exactly one lock,
        // with a newer time and another ID.
        assert_eq!(later.len(), 1, "{later:?}");
        assert_ne!(later[0].id, first_id);
        assert_eq!(later[0].id, guard.id());
        assert!(later[0].info.time > first[0].info.time);
        drop(guard);
        assert!(list_locks(store.as_ref(), &key).unwrap().is_empty());
    }

    #[test]
    fn removal_if_unchanged_removes_only_the_judged_content() {
        let (_d, store, mk) = setup();
        let mut dead = LockInfo::mine(false);
        dead.hostname = "orders-data-x7k2p".into();
        dead.holder = Some("pod:shop/0000".into());
        let id = write_lock(store.as_ref(), &mk, &dead).unwrap();
        let mut other = dead.clone();
        other.pid += 1;
        // Judged content differs: kept.
        assert!(!remove_lock_if_unchanged(store.as_ref(), &mk, &id, &other).unwrap());
        assert_eq!(list_locks(store.as_ref(), &mk).unwrap().len(), 1);
        assert!(remove_lock_if_unchanged(store.as_ref(), &mk, &id, &dead).unwrap());
        assert!(list_locks(store.as_ref(), &mk).unwrap().is_empty());
        // Already gone: nothing to do, no error.
        assert!(!remove_lock_if_unchanged(store.as_ref(), &mk, &id, &dead).unwrap());
    }

    #[test]
    fn holder_round_trips_and_is_absent_from_restic_json() {
        let mut info = LockInfo::mine(true);
        info.holder = None;
        let json = serde_json::to_string(&info).unwrap();
        assert!(!json.contains("holder"), "{json}");
        info.holder = Some("pod:shop/uid".into());
        let back: LockInfo = serde_json::from_str(&serde_json::to_string(&info).unwrap()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn restic_lock_json_parses() {
        // As written by restic 0.14 (Go's time format with nanoseconds and an offset).
        let json = r#"{"time":"2024-05-01T10:11:12.123456789+02:00","exclusive":false,"hostname":"h","username":"root","pid":42,"uid":0,"gid":0}"#;
        let info: LockInfo = serde_json::from_str(json).unwrap();
        assert_eq!(info.pid, 42);
        assert!(!info.exclusive);
    }
}

//! Sessions and contexts behind numbers: a C caller holds a `u64` that is
//! never reused, so a stale, closed or invented handle is an error, not a
//! dangling pointer. A call takes its own reference to the session, so a
//! close on another thread cannot free it mid-generation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lode_runtime::{Context, Session};

/// A session and the contexts made in it.
pub struct Entry {
    /// The session.
    pub session: Session,
    /// Its contexts, by handle.
    pub contexts: BTreeMap<u64, Context>,
}

type Shared = Arc<Mutex<Entry>>;

static SESSIONS: Mutex<BTreeMap<u64, Shared>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A handle never handed out before (sessions and contexts share the
/// counter, so one can never be mistaken for the other).
pub fn next_handle() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn sessions() -> MutexGuard<'static, BTreeMap<u64, Shared>> {
    // A panic while the map was held left it consistent (inserts and
    // removes are single operations), so a poisoned lock is still usable.
    SESSIONS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers `session`; returns its handle.
pub fn insert(session: Session) -> u64 {
    let h = next_handle();
    let entry = Entry {
        session,
        contexts: BTreeMap::new(),
    };
    sessions().insert(h, Arc::new(Mutex::new(entry)));
    h
}

/// Removes a session; `None` when unknown.
pub fn remove(h: u64) -> Option<Shared> {
    sessions().remove(&h)
}

/// The session `h`, or `None` when unknown.
pub fn get(h: u64) -> Option<Shared> {
    sessions().get(&h).cloned()
}

/// Locks an entry, recovering from a panic in an earlier call (the runtime
/// leaves a session usable after an error).
pub fn lock(e: &Shared) -> MutexGuard<'_, Entry> {
    e.lock().unwrap_or_else(|p| p.into_inner())
}

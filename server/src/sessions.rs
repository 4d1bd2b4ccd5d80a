//! The session table: what the server remembers between requests.
//!
//! A session outlives the connection that created it (step 7 names its
//! session, so a client may come back on a new connection), so its keys and
//! counters live here, not in the connection task. The table is bounded:
//! expired sessions are swept when room is needed, and a full table refuses
//! new registrations rather than growing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pki_common::proto::handshake::ServerSessionKeys;
use pki_common::proto::message::SessionId;

/// One registered client's session.
pub struct Session {
    pub client_id: String,
    /// Whether the client id was proven by a TLS client certificate, or
    /// only stated by the client in step 5.
    pub client_authenticated: bool,
    /// Seconds since the Unix epoch, for display.
    pub expires_at: u64,
    /// The same moment on the monotonic clock, for the checks: a lifetime
    /// of one second is a full second, not "until the next tick".
    pub deadline: std::time::Instant,
    pub requests: u64,
    pub keys: ServerSessionKeys,
}

/// A handle to one session; the inner lock serialises its counters.
pub type SessionHandle = Arc<Mutex<Session>>;

/// All live sessions, bounded.
pub struct SessionTable {
    sessions: Mutex<HashMap<SessionId, SessionHandle>>,
    max_sessions: usize,
}

impl SessionTable {
    pub fn new(max_sessions: usize) -> Self {
        SessionTable {
            sessions: Mutex::new(HashMap::new()),
            max_sessions,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a session; `false` if the table is full even after sweeping.
    pub fn insert(&self, id: SessionId, session: Session, now: std::time::Instant) -> bool {
        let mut map = self.map();
        if map.len() >= self.max_sessions {
            map.retain(|_, s| s.lock().map(|s| s.deadline > now).unwrap_or(false));
        }
        if map.len() >= self.max_sessions {
            return false;
        }
        map.insert(id, Arc::new(Mutex::new(session)));
        true
    }

    /// Removes expired sessions; answers how many.
    pub fn sweep(&self, now: std::time::Instant) -> usize {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, s| s.lock().map(|s| s.deadline > now).unwrap_or(false));
        before - map.len()
    }

    pub fn get(&self, id: &SessionId) -> Option<SessionHandle> {
        self.map().get(id).cloned()
    }

    pub fn remove(&self, id: &SessionId) {
        self.map().remove(id);
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

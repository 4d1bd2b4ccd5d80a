//! The session table: what the server remembers between requests.
//!
//! A session outlives the connection that created it (step 7 names its
//! session, so a client may come back on a new connection), so its keys and
//! counters live here, not in the connection task. The table owns every
//! rule about a session's life: it is bounded (expired sessions are swept
//! when room is needed, and a full table refuses new registrations rather
//! than growing), an expired session or one that reached its request limit
//! is removed on its next use, and the client is told to register again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pki_common::proto::handshake::{Clock, ServerSessionKeys};
use pki_common::proto::message::{Response, ServiceRequest, SessionId, SessionSealed};
use pki_common::proto::{Frame, ProtoError};

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
    pub deadline: Instant,
    /// Requests opened so far; only a request that decrypts counts, so a
    /// forged frame cannot use up a client's allowance.
    pub requests: u64,
    pub keys: ServerSessionKeys,
}

impl Session {
    /// Step 7: opens a request and counts it.
    pub fn open_request(
        &mut self,
        sealed: &SessionSealed,
        clock: Clock,
    ) -> Result<ServiceRequest, ProtoError> {
        let request = self.keys.open_request(sealed, clock)?;
        self.requests += 1;
        Ok(request)
    }

    /// Step 8: seals the response.
    pub fn seal_response(&mut self, response: &Response) -> Result<Frame, ProtoError> {
        self.keys.seal_response(response)
    }
}

/// A handle to one session; the inner lock serialises its counters.
type SessionHandle = Arc<Mutex<Session>>;

/// All live sessions, bounded.
pub struct SessionTable {
    sessions: Mutex<HashMap<SessionId, SessionHandle>>,
    max_sessions: usize,
    /// Requests one session may carry; then the client registers again,
    /// which bounds how much traffic one set of keys protects.
    max_requests: u64,
}

impl SessionTable {
    pub fn new(max_sessions: usize, max_requests: u64) -> Self {
        SessionTable {
            sessions: Mutex::new(HashMap::new()),
            max_sessions,
            max_requests,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a session; `false` if the table is full even after sweeping.
    pub fn insert(&self, id: SessionId, session: Session, now: Instant) -> bool {
        let mut map = self.map();
        if map.len() >= self.max_sessions {
            map.retain(|_, s| live(s, now));
        }
        if map.len() >= self.max_sessions {
            return false;
        }
        map.insert(id, Arc::new(Mutex::new(session)));
        true
    }

    /// Runs `use_session` on session `id` if it may still be used at `now`.
    /// An unknown id is [`ProtoError::UnknownSession`]; an expired session,
    /// or one that has carried its last request, is removed and refused
    /// with [`ProtoError::SessionExpired`] or [`ProtoError::RequestLimit`].
    pub fn with_session<T>(
        &self,
        id: &SessionId,
        now: Instant,
        use_session: impl FnOnce(&mut Session) -> Result<T, ProtoError>,
    ) -> Result<T, ProtoError> {
        let handle = self.map().get(id).cloned();
        let handle = handle.ok_or(ProtoError::UnknownSession)?;
        let mut session = handle.lock().unwrap_or_else(|p| p.into_inner());
        let refusal = if now >= session.deadline {
            ProtoError::SessionExpired
        } else if session.requests >= self.max_requests {
            ProtoError::RequestLimit {
                max: self.max_requests,
            }
        } else {
            return use_session(&mut session);
        };
        drop(session);
        self.map().remove(id);
        Err(refusal)
    }

    /// Removes expired sessions; answers how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, s| live(s, now));
        before - map.len()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a session is still within its lifetime. A poisoned lock means
/// a handler panicked mid-request; that session is dropped.
fn live(session: &SessionHandle, now: Instant) -> bool {
    session.lock().map(|s| s.deadline > now).unwrap_or(false)
}

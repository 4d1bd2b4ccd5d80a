//! The session table: what the server remembers between requests.
//!
//! A session outlives the connection that created it (step 7 names its
//! session, so a client may come back on a new connection), so its keys and
//! counters live here, not in the connection task. The table owns every
//! rule about a session's life: it is bounded (expired sessions are swept
//! when room is needed, and a full table refuses new registrations rather
//! than growing), an expired session or one that reached its request limit
//! is removed on its next use, and the client is told to register again.
//!
//! # Who may fill it
//! Registering without a client certificate costs an attacker nothing, so
//! unauthenticated sessions have bounds of their own: at most
//! `max_anonymous` in all and `max_per_address` from one source address
//! (the TCP peer's IP, never the address a client states in step 5). They
//! can therefore never take the whole table, and when it is full anyway a
//! client that authenticated with a certificate takes the place of the
//! oldest unauthenticated session: anonymous clients can never lock out
//! authenticated ones.
//!
//! # Revocation
//! A session remembers the serial of the client certificate it was
//! registered with. When a new CRL lists it, [`SessionTable::end_revoked`]
//! removes every such session, and [`SessionTable::with_session`] refuses a
//! request on one whose certificate the current CRL lists, whatever
//! connection it arrives on.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pki_common::proto::handshake::{Clock, ServerSessionKeys};
use pki_common::proto::message::{Response, ServiceRequest, SessionId, SessionSealed};
use pki_common::proto::{Frame, ProtoError};

/// One registered client's session.
pub struct Session {
    pub client_id: String,
    /// The serial (lower-case hex) of the client certificate the client id
    /// was proven with, or `None` if the id was only stated by the client
    /// in step 5.
    pub client_serial: Option<String>,
    /// The serials of the intermediates of that certificate's chain: the
    /// root revoking one of them revokes the session too.
    pub issuer_serials: Vec<String>,
    /// The TCP peer's address at registration, for the per-address bound.
    pub source: IpAddr,
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
    /// Whether the client id was proven by a TLS client certificate.
    pub fn client_authenticated(&self) -> bool {
        self.client_serial.is_some()
    }

    /// The client certificate's serial and its intermediates', if the
    /// session was registered with a certificate: if a CRL lists any of
    /// them, the session ends.
    pub fn serials(&self) -> Vec<String> {
        match &self.client_serial {
            Some(leaf) => std::iter::once(leaf.clone())
                .chain(self.issuer_serials.iter().cloned())
                .collect(),
            None => Vec::new(),
        }
    }

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

/// How many sessions the table holds, and of which kind.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// All sessions.
    pub max_sessions: usize,
    /// Unauthenticated sessions, in all.
    pub max_anonymous: usize,
    /// Unauthenticated sessions from one source address.
    pub max_per_address: usize,
    /// Requests one session may carry; then the client registers again,
    /// which bounds how much traffic one set of keys protects.
    pub max_requests: u64,
}

/// A handle to one session; the inner lock serialises its counters.
type SessionHandle = Arc<Mutex<Session>>;

/// One row: the session and what the bounds need without locking it.
struct Entry {
    handle: SessionHandle,
    /// For unauthenticated sessions: the source address and the insertion
    /// order (the key in [`Inner::anonymous`]).
    anonymous: Option<(IpAddr, u64)>,
    /// The client certificate's serial, then its intermediates'.
    serials: Vec<String>,
}

/// The table and its counters, kept consistent under one lock.
#[derive(Default)]
struct Inner {
    map: HashMap<SessionId, Entry>,
    /// Unauthenticated sessions, oldest first.
    anonymous: BTreeMap<u64, SessionId>,
    per_address: HashMap<IpAddr, usize>,
    next_order: u64,
}

impl Inner {
    fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        let entry = self.map.remove(id)?;
        if let Some((addr, order)) = entry.anonymous {
            self.anonymous.remove(&order);
            if let Some(n) = self.per_address.get_mut(&addr) {
                *n -= 1;
                if *n == 0 {
                    self.per_address.remove(&addr);
                }
            }
        }
        Some(entry)
    }

    /// Removes every session `doomed` picks; answers how many.
    fn remove_where(&mut self, mut doomed: impl FnMut(&Entry) -> bool) -> usize {
        let ids: Vec<SessionId> = self
            .map
            .iter()
            .filter(|(_, e)| doomed(e))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.remove(id);
        }
        ids.len()
    }

    fn sweep(&mut self, now: Instant) -> usize {
        self.remove_where(|e| !live(&e.handle, now))
    }

    fn anonymous_from(&self, addr: &IpAddr) -> usize {
        self.per_address.get(addr).copied().unwrap_or(0)
    }

    /// Whether an unauthenticated session from `addr` would exceed a bound.
    fn anonymous_refusal(&self, addr: &IpAddr, limits: &Limits) -> Option<ProtoError> {
        if self.anonymous_from(addr) >= limits.max_per_address {
            Some(ProtoError::Busy(
                "too many unauthenticated sessions from this address; present a client certificate, or try again when older sessions expire",
            ))
        } else if self.anonymous.len() >= limits.max_anonymous {
            Some(ProtoError::Busy(
                "the limit of unauthenticated sessions is reached; present a client certificate, or try again later",
            ))
        } else if self.map.len() >= limits.max_sessions {
            Some(ProtoError::Busy("the session table is full"))
        } else {
            None
        }
    }
}

/// All live sessions, bounded.
pub struct SessionTable {
    inner: Mutex<Inner>,
    limits: Limits,
}

impl SessionTable {
    pub fn new(limits: Limits) -> Self {
        SessionTable {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a session, within the bounds described in the module
    /// documentation; [`ProtoError::Busy`] saying which bound refused it.
    pub fn insert(&self, id: SessionId, session: Session, now: Instant) -> Result<(), ProtoError> {
        let mut inner = self.lock();
        let source = session.source.to_canonical();
        let anonymous = !session.client_authenticated();
        if anonymous && inner.anonymous_refusal(&source, &self.limits).is_some() {
            inner.sweep(now);
            if let Some(refusal) = inner.anonymous_refusal(&source, &self.limits) {
                return Err(refusal);
            }
        }
        if inner.map.len() >= self.limits.max_sessions {
            inner.sweep(now);
        }
        if inner.map.len() >= self.limits.max_sessions {
            // Only an authenticated session gets here with the table full:
            // it takes the oldest unauthenticated session's place.
            let oldest = inner.anonymous.values().next().copied();
            match oldest {
                Some(oldest) => {
                    inner.remove(&oldest);
                    tracing::info!(
                        "session table full: ended the oldest unauthenticated session {} to make room for an authenticated client",
                        hex::encode(&oldest[..4])
                    );
                }
                None => return Err(ProtoError::Busy("the session table is full")),
            }
        }
        let order = inner.next_order;
        inner.next_order += 1;
        let entry = Entry {
            anonymous: anonymous.then_some((source, order)),
            serials: session.serials(),
            handle: Arc::new(Mutex::new(session)),
        };
        if anonymous {
            inner.anonymous.insert(order, id);
            *inner.per_address.entry(source).or_insert(0) += 1;
        }
        inner.map.insert(id, entry);
        Ok(())
    }

    /// Runs `use_session` on session `id` if it may still be used at `now`.
    /// An unknown id is [`ProtoError::UnknownSession`]; an expired session,
    /// one that has carried its last request, or one whose client
    /// certificate `revoked` says is revoked, is removed and refused with
    /// [`ProtoError::SessionExpired`], [`ProtoError::RequestLimit`] or
    /// [`ProtoError::CertificateRevoked`].
    pub fn with_session<T>(
        &self,
        id: &SessionId,
        now: Instant,
        revoked: impl Fn(&str) -> bool,
        use_session: impl FnOnce(&mut Session) -> Result<T, ProtoError>,
    ) -> Result<T, ProtoError> {
        let handle = self.lock().map.get(id).map(|e| e.handle.clone());
        let handle = handle.ok_or(ProtoError::UnknownSession)?;
        let mut session = handle.lock().unwrap_or_else(|p| p.into_inner());
        let refusal = if now >= session.deadline {
            ProtoError::SessionExpired
        } else if session.requests >= self.limits.max_requests {
            ProtoError::RequestLimit {
                max: self.limits.max_requests,
            }
        } else if let Some(serial) = session.serials().into_iter().find(|s| revoked(s)) {
            ProtoError::CertificateRevoked { serial }
        } else {
            return use_session(&mut session);
        };
        drop(session);
        self.lock().remove(id);
        Err(refusal)
    }

    /// Ends every session registered with a client certificate that
    /// `revoked` says is revoked (or whose intermediate it says is);
    /// answers how many.
    pub fn end_revoked(&self, revoked: impl Fn(&str) -> bool) -> usize {
        self.lock()
            .remove_where(|e| e.serials.iter().any(|s| revoked(s)))
    }

    /// Removes expired sessions; answers how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.lock().sweep(now)
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// How many sessions are unauthenticated.
    pub fn anonymous_len(&self) -> usize {
        self.lock().anonymous.len()
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

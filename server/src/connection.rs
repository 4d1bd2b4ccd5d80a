//! One client connection, steps 3 to 8, in the order of `docs/protocol.md`.
//!
//! A connection starts either with a hello (a new registration, steps 3 to
//! 6, then requests) or with a resume (steps 3R and 4R: a session granted
//! earlier, by this server or a replica, carried in its ticket). Either
//! way the session's keys are this connection's: the server keeps no
//! session between connections (see [`ConnSession`]). Any refusal is
//! logged, sent to the client as an alert, and closes the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::RngCore;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use pki_common::cert::CertInfo;
use pki_common::framed::ServerFramed;
use pki_common::proto::handshake::{
    accept_hello, request_session_id, Clock, ServerRegistering, ServerSessionKeys,
};
use pki_common::proto::message::{
    Registration, Response, ServiceRequest, SessionGranted, SessionSealed, Status,
};
use pki_common::proto::resume::accept_resume;
use pki_common::proto::ticket::TicketContents;
use pki_common::proto::{Frame, Kind, ProtoError};
use pki_common::shutdown::Shutdown;

use crate::identity::Identity;
use crate::live::{self, Live};
use crate::service::RequestContext;
use crate::Shared;

/// The session this connection serves requests on: granted here (step 6)
/// or resumed from its ticket (step 4R). It lives as long as the
/// connection; between connections only the client's ticket remembers it.
/// So the server's memory per idle session is nothing: what it keeps is
/// the ticket keys and the CRL (for revocation), and per open connection
/// these keys and counters (for the limits).
struct ConnSession {
    id: [u8; 16],
    client_id: String,
    /// Whether a client certificate proved the client id.
    authenticated: bool,
    /// Seconds since the Unix epoch.
    expires_at: u64,
    /// Requests opened on this connection; only a request that decrypts
    /// counts, so a forged frame cannot use up the allowance.
    requests: u64,
    keys: ServerSessionKeys,
}

/// Serves one TLS connection until the client closes it or a step fails.
/// `identity` is the certificate this connection presented; `deadline`
/// bounds the TLS handshake and steps 3 to 6 together, so a client that
/// connects and then says nothing is dropped.
pub async fn serve(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    identity: Arc<Identity>,
    deadline: Instant,
    shutdown: Shutdown,
) {
    // Every write is bounded by the idle timeout: a client that does not
    // read must not hold the connection slot.
    let framed = ServerFramed::open(stream, shared.config.max_frame, shared.config.idle_timeout)
        .map(|f| f.with_wire(shared.config.wire));
    let mut conn = match framed {
        Ok(conn) => Conn {
            // The certificate this connection was authenticated with, if
            // any, and the intermediates of its chain: when a new CRL
            // lists one of them, the connection ends.
            serials: conn
                .peer_cert()
                .into_iter()
                .chain(conn.peer_intermediates())
                .filter_map(|c| CertInfo::parse(c).ok())
                .map(|c| c.serial_hex)
                .collect(),
            framed: conn,
            peer,
            shared: &shared,
            shutdown,
            live: shared.live.subscribe(),
            session: None,
        },
        Err(e) => {
            warn!("refused {peer}: {}", ProtoError::Exporter(e.to_string()));
            return;
        }
    };
    match conn.run(&identity, deadline).await {
        Ok(()) | Err(ProtoError::Closed) => {}
        Err(err) => {
            if matches!(err, ProtoError::ShuttingDown) {
                info!("closing the connection from {peer}: shutting down");
            } else {
                warn!("refused {peer}: {err}");
            }
            if let Some(code) = err.alert_code() {
                shared.metrics.count_alert(code);
            }
            conn.framed.send_alert(&err).await;
        }
    }
    conn.framed.close().await;
}

/// One connection's state while it is served.
struct Conn<'a> {
    framed: ServerFramed,
    peer: SocketAddr,
    shared: &'a Shared,
    shutdown: Shutdown,
    /// Told of every new CRL.
    live: watch::Receiver<Arc<Live>>,
    /// Serials of the client certificates this connection relies on: the
    /// one it presented, and those of the session it serves.
    serials: Vec<String>,
    session: Option<ConnSession>,
}

impl Conn<'_> {
    fn clock(&self) -> Clock {
        Clock {
            now: pki_common::unix_now(),
            skew: self.shared.config.skew_secs,
        }
    }

    fn idle(&self) -> Instant {
        Instant::now() + self.shared.config.idle_timeout
    }

    /// Reads the next frame, waiting until `until` at the latest. Shutdown
    /// interrupts only this wait: a request already read is answered
    /// before the connection closes. So does a new CRL that lists a
    /// certificate this connection relies on: the connection ends with
    /// [`ProtoError::CertificateRevoked`].
    async fn next_frame(
        &mut self,
        until: Instant,
        waiting_for: &'static str,
    ) -> Result<Frame, ProtoError> {
        // Biased, revocation first: a request that arrives just after its
        // certificate was revoked must meet the revocation (the session is
        // already gone, and answering "unknown session" would hide why),
        // not whichever branch the random choice of `select!` favours.
        tokio::select! {
            biased;
            serial = live::revoked_among(&mut self.live, &self.serials) => {
                Err(ProtoError::CertificateRevoked { serial })
            }
            _ = self.shutdown.wait() => Err(ProtoError::ShuttingDown),
            read = self.framed.recv_until(until, waiting_for) => read,
        }
    }

    async fn run(&mut self, identity: &Identity, deadline: Instant) -> Result<(), ProtoError> {
        let frame = self.next_frame(deadline, "the first frame").await?;
        match frame.kind {
            // Boxed: the registration state (key schedule, both
            // directions' keys, the hello) then lives on the heap only
            // while registering, instead of sizing every idle connection's
            // future for it.
            Kind::Hello => Box::pin(self.register(identity, &frame, deadline)).await?,
            Kind::Resume => self.resume(&frame).await?,
            Kind::ServiceRequest => {
                return Err(ProtoError::UnknownSession);
            }
            _ => frame.require(Kind::Hello).map(|_| ())?,
        }
        let mut frame = self.next_frame(self.idle(), "a service request").await?;
        loop {
            let (session_id, sealed) = request_session_id(&frame)?;
            let (response, answered) = self.answer(&session_id, &sealed)?;
            self.framed.send(&response).await?;
            info!("phase 3 · step 8: {answered}");
            frame = match self.next_frame(self.idle(), "a service request").await {
                Err(ProtoError::Closed) => return Ok(()),
                other => other?,
            };
        }
    }

    /// Who signed the client's certificate, and which CRL covers each
    /// certificate of its chain (TLS has checked them all).
    fn narrate_client_chain(&self, identity: &Identity) {
        let Some(leaf) = self.framed.peer_cert() else {
            return;
        };
        let intermediates = self.framed.peer_intermediates();
        info!(
            "phase 2 · client chain: {}",
            pki_common::cert::describe_chain(leaf, intermediates, &identity.root)
        );
        if let Some(crls) = &self.shared.live.current().crls {
            let chain: Vec<_> = std::iter::once(leaf)
                .chain(intermediates)
                .cloned()
                .collect();
            info!(
                "phase 2 · client revocation: {}",
                crls.describe_coverage(&chain)
            );
        }
    }

    /// Step 5's narration: who registered, and how the server knows.
    fn narrate_registration(
        &self,
        identity: &Identity,
        registration: &Registration,
        client_cert: Option<&CertInfo>,
    ) {
        match client_cert {
            Some(cert) => {
                info!(
                    "phase 2 · step 5: registration from client {:?} at {}, authenticated by certificate {} (TLS verified its chain, and the client's CertificateVerify proved it holds that certificate's key, its client.key)",
                    registration.client_id,
                    registration.client_addr,
                    cert.short_serial()
                );
                self.narrate_client_chain(identity);
                self.framed
                    .wire()
                    .certified_key("the client's key", &cert.short_serial(), &cert.spki_der);
            }
            None => info!(
                "phase 2 · step 5: registration from client {:?} at {} (no client certificate: unauthenticated client id)",
                registration.client_id, registration.client_addr
            ),
        }
    }

    /// The serials of the intermediates in the client's chain: the root
    /// revoking one of them revokes the session too.
    fn client_issuer_serials(&self) -> Vec<String> {
        self.framed
            .peer_intermediates()
            .iter()
            .filter_map(|c| CertInfo::parse(c).ok())
            .map(|c| c.serial_hex)
            .collect()
    }

    /// Steps 3 to 6.
    async fn register(
        &mut self,
        identity: &Identity,
        hello_frame: &Frame,
        deadline: Instant,
    ) -> Result<(), ProtoError> {
        // TLS has verified the client's certificate, if it presented one.
        let client_cert = self
            .framed
            .peer_cert()
            .and_then(|c| CertInfo::parse(c).ok());
        let peer = self.peer;

        // Steps 3 and 4.
        let (mut registering, proof) = accept_hello(
            hello_frame,
            self.framed.exporter(),
            &self.shared.config.names,
            identity.signer.as_ref(),
            self.clock(),
        )?;
        info!(
            "phase 2 · step 3: hello from {peer} for {:?} (in the clear inside TLS)",
            registering.hello.expected_server
        );
        self.framed.send(&proof).await?;
        info!(
            "phase 2 · step 4: sent server proof, signed with server.key (the key of certificate {}) over the hello, our fresh X25519 share and this TLS connection's exporter",
            identity.info.short_serial()
        );
        let facts = registering.facts();
        info!(
            "phase 2 · registration keys {} and {}: HKDF-SHA256 of the X25519 shared secret, salted with transcript {} (TLS exporter, steps 3 and 4)",
            facts.recv.name, facts.send.name, facts.transcript_name
        );
        let wire = self.framed.wire();
        wire.certified_key(
            "our server.key",
            &identity.info.short_serial(),
            &identity.info.spki_der,
        );
        wire.keys(&facts);

        // Step 5.
        let reg_frame = self.next_frame(deadline, "the registration").await?;
        let registration =
            registering.on_registration(&reg_frame, self.clock(), client_cert.as_ref())?;
        info!(
            "phase 2 · step 5: opened the registration with {} (registration key, client to server)",
            facts.recv.name
        );
        self.narrate_registration(identity, &registration, client_cert.as_ref());

        // Step 6.
        let client_serial = client_cert.map(|c| c.serial_hex);
        let issuer_serials = match client_serial {
            Some(_) => self.client_issuer_serials(),
            None => Vec::new(),
        };
        self.grant(registering, &registration, client_serial, issuer_serials)
            .await
    }

    /// Step 6: a fresh session id and the session's ticket, sealed under
    /// the current ticket key, sent sealed under the registration key.
    /// The connection keeps the session keys; the server keeps nothing.
    async fn grant(
        &mut self,
        registering: ServerRegistering,
        registration: &Registration,
        client_serial: Option<String>,
        issuer_serials: Vec<String>,
    ) -> Result<(), ProtoError> {
        // A CRL installed since the TLS handshake may list the certificate
        // or one of its intermediates.
        let live = self.shared.live.current();
        let chain = client_serial.iter().chain(&issuer_serials);
        if let Some(serial) = chain.clone().find(|s| live.is_revoked(s)) {
            return Err(ProtoError::CertificateRevoked {
                serial: serial.clone(),
            });
        }
        let mut session_id = [0u8; 16];
        rand::rng().fill_bytes(&mut session_id);
        let now = pki_common::unix_now();
        let lifetime = self.shared.config.session_lifetime;
        let expires_at = now.saturating_add(lifetime.as_secs());
        let tickets = self.shared.tickets.keys();
        let contents = TicketContents {
            session_id,
            client_id: registration.client_id.clone(),
            client_serial,
            issuer_serials,
            server_name: registering.hello.expected_server.to_ascii_lowercase(),
            expires_at,
            secret: *registering.resumption_secret()?,
        };
        let granted = SessionGranted {
            session_id,
            lifetime_secs: lifetime.as_secs(),
            client_id: registration.client_id.clone(),
            timestamp: now,
            ticket: tickets.seal(&contents)?,
        };
        let sealed_with = registering.facts().send.name;
        let (grant_frame, keys) = registering.grant(&granted)?;
        let session_facts = keys.facts();
        self.start_session(&contents, keys);
        self.framed.send(&grant_frame).await?;
        self.shared.metrics.sessions_granted.inc();
        info!(
            "phase 2 · step 6: granted session {} to {:?} for {}s, sealed with AES-256-GCM under {sealed_with} (registration key, server to client); its ticket is sealed under ticket key {}",
            hex::encode(&session_id[..4]),
            registration.client_id,
            lifetime.as_secs(),
            hex::encode(tickets.current.id())
        );
        info!(
            "phase 2 · session keys {} and {}: HKDF-SHA256 of the same X25519 shared secret, expanded with transcript {} (steps 3 to 6); never sent",
            session_facts.recv.name, session_facts.send.name, session_facts.transcript_name
        );
        self.framed.wire().keys(&session_facts);
        Ok(())
    }

    /// Makes `contents`' session this connection's, with `keys`; its
    /// certificates join those a new CRL may end the connection for.
    fn start_session(&mut self, contents: &TicketContents, keys: ServerSessionKeys) {
        for serial in contents.serials() {
            if !self.serials.contains(&serial) {
                self.serials.push(serial);
            }
        }
        self.session = Some(ConnSession {
            id: contents.session_id,
            client_id: contents.client_id.clone(),
            authenticated: contents.client_authenticated(),
            expires_at: contents.expires_at,
            requests: 0,
            keys,
        });
    }

    /// Steps 3R and 4R: opens the ticket (any replica's, under a key this
    /// server holds), refuses it if a certificate it names is on the
    /// current CRL, and answers; this connection's request keys follow.
    async fn resume(&mut self, frame: &Frame) -> Result<(), ProtoError> {
        let tickets = self.shared.tickets.keys();
        let (resumed, answer) = accept_resume(
            frame,
            self.framed.exporter(),
            &tickets,
            &self.shared.config.names,
            self.clock(),
        )?;
        let contents = &resumed.contents;
        let live = self.shared.live.current();
        if let Some(serial) = contents.serials().into_iter().find(|s| live.is_revoked(s)) {
            return Err(ProtoError::CertificateRevoked { serial });
        }
        let facts = resumed.keys.facts();
        self.start_session(contents, resumed.keys);
        self.framed.send(&answer).await?;
        self.shared.metrics.sessions_resumed.inc();
        info!(
            "phase 2 · step 3R: {} resumed session {} of {:?}{} with its ticket (opened with ticket key {}); request keys {} and {}: HKDF-SHA256 of the ticket's resumption secret, salted with transcript {} (this TLS connection's exporter and both nonces)",
            self.peer,
            hex::encode(&contents.session_id[..4]),
            contents.client_id,
            if contents.client_authenticated() { ", authenticated by certificate" } else { "" },
            hex::encode(tickets.current.id()),
            facts.recv.name,
            facts.send.name,
            facts.transcript_name
        );
        self.framed.wire().keys(&facts);
        Ok(())
    }

    /// Steps 7 and 8 for one request on this connection's session;
    /// answers the response and what to say once it is sent.
    fn answer(
        &mut self,
        session_id: &[u8; 16],
        sealed: &SessionSealed,
    ) -> Result<(Frame, String), ProtoError> {
        let clock = self.clock();
        let max_requests = self.shared.config.max_requests_per_session;
        let session = match self.session.as_mut() {
            Some(s) if s.id == *session_id => s,
            _ => return Err(ProtoError::UnknownSession),
        };
        if session.expires_at <= clock.now {
            return Err(ProtoError::SessionExpired);
        }
        if session.requests >= max_requests {
            return Err(ProtoError::RequestLimit { max: max_requests });
        }
        let request = session.keys.open_request(sealed, clock)?;
        session.requests += 1;
        let keys = session.keys.facts();
        info!(
            "phase 3 · step 7: request {:?} from {:?} on session {}, opened with {} (session key, client to server)",
            request.name,
            session.client_id,
            hex::encode(&session_id[..4]),
            keys.recv.name
        );
        let (status, data) = self.serve_request(&request);
        let session = self.session.as_mut().ok_or(ProtoError::UnknownSession)?;
        let frame = session.keys.seal_response(&Response {
            status,
            data,
            timestamp: clock.now,
        })?;
        self.shared.metrics.count_request(status);
        let answered = format!(
            "answered {:?} with {}, sealed with AES-256-GCM under {} (session key, server to client)",
            request.name,
            match status {
                Status::Ok => "ok",
                Status::NotFound => "not found",
                Status::BadRequest => "bad request",
            },
            keys.send.name
        );
        Ok((frame, answered))
    }

    /// The service's answer to `request` on this connection's session.
    fn serve_request(&self, request: &ServiceRequest) -> (Status, Vec<u8>) {
        let Some(session) = self.session.as_ref() else {
            return (Status::BadRequest, Vec::new());
        };
        let ctx = RequestContext {
            client_id: &session.client_id,
            client_authenticated: session.authenticated,
            expires_at: session.expires_at,
            requests: session.requests,
        };
        self.shared
            .service
            .answer(&request.name, &ctx, &request.body)
    }
}

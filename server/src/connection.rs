//! One client connection, steps 3 to 8, in the order of `docs/protocol.md`.
//!
//! A connection starts either with a hello (a new registration, steps 3 to
//! 6, then requests) or with a service request on a session registered
//! earlier. Any refusal is logged, sent to the client as an alert, and
//! closes the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use pki_common::proto::handshake::{accept_hello, request_session_id, Clock};
use pki_common::proto::message::{Response, SessionGranted, SessionSealed, Status};
use pki_common::proto::{read_frame, write_frame, Frame, Kind, ProtoError, EXPORTER_LABEL};
use rand::RngCore;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::identity::Identity;
use crate::service::RequestContext;
use crate::sessions::Session;
use crate::Shared;
use pki_common::cert::CertInfo;
use pki_common::shutdown::Shutdown;

type Stream = TlsStream<TcpStream>;

/// Serves one TLS connection until the client closes it or a step fails.
/// `identity` is the certificate this connection presented; `deadline`
/// bounds the TLS handshake and steps 3 to 6 together, so a client that
/// connects and then says nothing is dropped.
pub async fn serve(
    mut stream: Stream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    identity: Arc<Identity>,
    deadline: Instant,
    mut shutdown: Shutdown,
) {
    let outcome = run(
        &mut stream,
        peer,
        &shared,
        &identity,
        deadline,
        &mut shutdown,
    )
    .await;
    match outcome {
        Ok(()) | Err(ProtoError::Closed) => {}
        Err(err) => {
            if matches!(err, ProtoError::ShuttingDown) {
                info!("closing the connection from {peer}: shutting down");
            } else {
                warn!("refused {peer}: {err}");
            }
            if let Some(alert) = Frame::alert_for(&err) {
                // Bounded like every write: a client that does not read
                // must not hold the connection slot.
                let _ = tokio::time::timeout(
                    shared.config.idle_timeout,
                    write_frame(&mut stream, &alert),
                )
                .await;
            }
        }
    }
    let _ = tokio::time::timeout(shared.config.idle_timeout, stream.shutdown()).await;
}

fn clock(shared: &Shared) -> Clock {
    Clock {
        now: pki_common::unix_now(),
        skew: shared.config.skew_secs,
    }
}

/// Reads the next frame, waiting until `until` at the latest. Shutdown
/// interrupts only this wait: a request already read is answered before
/// the connection closes.
async fn next_frame(
    stream: &mut Stream,
    shared: &Shared,
    until: Instant,
    waiting_for: &'static str,
    shutdown: &mut Shutdown,
) -> Result<Frame, ProtoError> {
    tokio::select! {
        read = tokio::time::timeout_at(until, read_frame(stream, shared.config.max_frame)) => {
            read.map_err(|_| ProtoError::Timeout(waiting_for))?
        }
        _ = shutdown.wait() => Err(ProtoError::ShuttingDown),
    }
}

/// Writes a frame, bounded by the idle timeout, so a client that stops
/// reading cannot hold a connection slot.
async fn send(stream: &mut Stream, shared: &Shared, frame: &Frame) -> Result<(), ProtoError> {
    tokio::time::timeout(shared.config.idle_timeout, write_frame(stream, frame))
        .await
        .map_err(|_| ProtoError::Timeout("the client to read"))?
}

fn idle(shared: &Shared) -> Instant {
    Instant::now() + shared.config.idle_timeout
}

async fn run(
    stream: &mut Stream,
    peer: SocketAddr,
    shared: &Shared,
    identity: &Identity,
    deadline: Instant,
    shutdown: &mut Shutdown,
) -> Result<(), ProtoError> {
    let first = next_frame(stream, shared, deadline, "the first frame", shutdown).await?;
    let first = match first.kind {
        Kind::Hello => {
            // Boxed: the registration state (key schedule, both
            // directions' keys, the hello) then lives on the heap only
            // while registering, instead of sizing every idle connection's
            // future for it.
            Box::pin(register(
                stream, peer, shared, identity, &first, deadline, shutdown,
            ))
            .await?;
            next_frame(stream, shared, idle(shared), "a service request", shutdown).await?
        }
        _ => first,
    };
    let mut frame = first;
    loop {
        let (session_id, sealed) = request_session_id(&frame)?;
        let response = answer(shared, &session_id, &sealed)?;
        send(stream, shared, &response).await?;
        frame = match next_frame(stream, shared, idle(shared), "a service request", shutdown).await
        {
            Err(ProtoError::Closed) => return Ok(()),
            other => other?,
        };
    }
}

/// Steps 3 to 6.
async fn register(
    stream: &mut Stream,
    peer: SocketAddr,
    shared: &Shared,
    identity: &Identity,
    hello_frame: &Frame,
    deadline: Instant,
    shutdown: &mut Shutdown,
) -> Result<(), ProtoError> {
    // TLS has verified the client's certificate, if it presented one.
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|c| CertInfo::parse(c).ok());
    let mut exporter = [0u8; 32];
    stream
        .get_ref()
        .1
        .export_keying_material(&mut exporter, EXPORTER_LABEL, None)
        .map_err(|e| ProtoError::Exporter(e.to_string()))?;

    // Steps 3 and 4.
    let (mut registering, proof) = accept_hello(
        hello_frame,
        exporter,
        &shared.config.names,
        identity.signer.as_ref(),
        clock(shared),
    )?;
    info!(
        "phase 2 · step 3: hello from {peer} for {}",
        registering.hello.expected_server
    );
    send(stream, shared, &proof).await?;
    info!(
        "phase 2 · step 4: sent server proof, signed with the key of certificate {}",
        identity.info.short_serial()
    );

    // Step 5.
    let reg_frame = next_frame(stream, shared, deadline, "the registration", shutdown).await?;
    let registration = registering.on_registration(&reg_frame, clock(shared))?;
    let authenticated = match &client_cert {
        Some(cert) => {
            if !cert
                .dns_names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&registration.client_id))
            {
                return Err(ProtoError::ClientIdNotCertified {
                    claimed: registration.client_id,
                    certified: cert.names().join(", "),
                });
            }
            info!(
                "phase 2 · step 5: registration from client {:?} at {}, authenticated by certificate {}",
                registration.client_id,
                registration.client_addr,
                cert.short_serial()
            );
            true
        }
        None => {
            info!(
                "phase 2 · step 5: registration from client {:?} at {} (no client certificate: unauthenticated client id)",
                registration.client_id, registration.client_addr
            );
            false
        }
    };

    // Step 6.
    let mut session_id = [0u8; 16];
    rand::rng().fill_bytes(&mut session_id);
    let now = pki_common::unix_now();
    let lifetime = shared.config.session_lifetime.as_secs();
    let granted = SessionGranted {
        session_id,
        lifetime_secs: lifetime,
        client_id: registration.client_id.clone(),
        timestamp: now,
    };
    let (grant_frame, keys) = registering.grant(&granted)?;
    let stored = shared.sessions.insert(
        session_id,
        Session {
            client_id: registration.client_id.clone(),
            client_authenticated: authenticated,
            expires_at: now.saturating_add(lifetime),
            deadline: std::time::Instant::now() + shared.config.session_lifetime,
            requests: 0,
            keys,
        },
        std::time::Instant::now(),
    );
    if !stored {
        return Err(ProtoError::Busy("the session table is full"));
    }
    send(stream, shared, &grant_frame).await?;
    info!(
        "phase 2 · step 6: granted session {} to {:?} for {}s",
        hex::encode(&session_id[..4]),
        registration.client_id,
        lifetime
    );
    Ok(())
}

/// Steps 7 and 8 for one request.
fn answer(
    shared: &Shared,
    session_id: &[u8; 16],
    sealed: &SessionSealed,
) -> Result<Frame, ProtoError> {
    let handle = shared
        .sessions
        .get(session_id)
        .ok_or(ProtoError::UnknownSession)?;
    let mut session = handle.lock().unwrap_or_else(|p| p.into_inner());
    let clock = clock(shared);
    if std::time::Instant::now() >= session.deadline {
        drop(session);
        shared.sessions.remove(session_id);
        return Err(ProtoError::SessionExpired);
    }
    if session.requests >= shared.config.max_requests_per_session {
        drop(session);
        shared.sessions.remove(session_id);
        return Err(ProtoError::RequestLimit {
            max: shared.config.max_requests_per_session,
        });
    }
    let request = session.keys.open_request(sealed, clock)?;
    session.requests += 1;
    info!(
        "phase 3 · step 7: request {:?} from {:?} on session {}",
        request.name,
        session.client_id,
        hex::encode(&session_id[..4])
    );
    let ctx = RequestContext {
        client_id: &session.client_id,
        client_authenticated: session.client_authenticated,
        expires_at: session.expires_at,
        requests: session.requests,
    };
    let (status, data) = shared.service.answer(&request.name, &ctx, &request.body);
    let frame = session.keys.seal_response(&Response {
        status,
        data,
        timestamp: clock.now,
    })?;
    info!(
        "phase 3 · step 8: answered {:?} with {}",
        request.name,
        match status {
            Status::Ok => "ok",
            Status::NotFound => "not found",
            Status::BadRequest => "bad request",
        }
    );
    Ok(frame)
}

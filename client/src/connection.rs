//! One verified TLS 1.3 connection to the server, driving steps 3 to 8 of
//! the protocol from the client's side, in the order of `docs/protocol.md`:
//! connect (TLS, certificate and CRL checked before any protocol byte),
//! register (steps 3 to 6), request (steps 7 and 8), close.
//!
//! The protocol state machine itself is in `pki_common::proto::handshake`;
//! the framed, time-limited reads and writes and the TLS exporter are
//! `pki_common::framed`'s, shared with the server. This module only moves
//! frames between the two and turns failures into [`ClientError`]s.

use std::net::SocketAddr;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tracing::info;

use pki_common::cert::CertInfo;
use pki_common::framed::ClientFramed;
use pki_common::proto::handshake::{ClientHello, ClientSession, ClientTicket, Clock};
use pki_common::proto::message::{Registration, Response, ServiceRequest};
use pki_common::proto::resume::ClientResuming;
use pki_common::proto::{Frame, ProtoError};

use crate::{ClientConfig, ClientError, ClientTls};

/// A TLS 1.3 connection whose server certificate has been verified.
pub struct Connection {
    framed: ClientFramed,
    server_cert: CertificateDer<'static>,
    local_addr: SocketAddr,
    config: ClientConfig,
}

impl Connection {
    /// Connects and verifies the server's certificate: chain to the CA
    /// root, expected name, validity, serverAuth EKU.
    pub async fn connect(config: &ClientConfig) -> Result<Self, ClientError> {
        let tls = ClientTls::prepare(config).await?;
        Self::connect_with(&tls, config).await
    }

    /// Connects with trust prepared earlier, so many connections share one
    /// CRL fetch and one TLS configuration.
    pub async fn connect_with(tls: &ClientTls, config: &ClientConfig) -> Result<Self, ClientError> {
        let name = ServerName::try_from(config.name.clone())
            .map_err(|_| ClientError::BadName(config.name.clone()))?;
        let addr = config.server.clone();
        let (tcp, local_addr) = open_tcp(config).await?;
        let connector = TlsConnector::from(tls.config.clone());
        let stream = tokio::time::timeout(config.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout(config.timeout))?
            .map_err(|e| handshake_error(tls, &addr, e))?;
        // Every write is bounded like every read, so a server that stops
        // reading cannot hold the client either.
        let framed = ClientFramed::open(stream, config.max_frame, config.timeout)
            .map_err(|source| ClientError::Tls {
                addr: addr.clone(),
                source,
            })?
            .with_wire(config.wire);
        let server_cert = framed
            .peer_cert()
            .cloned()
            .ok_or_else(|| ClientError::Tls {
                addr: addr.clone(),
                source: rustls::Error::NoCertificatesPresented,
            })?;
        if let Ok(info) = CertInfo::parse(&server_cert) {
            info!(
                "phase 2 · TLS 1.3 to {addr}: certificate for {} (serial {}, valid until {}) verified against {}; the server proved it holds that certificate's private key (its server.key) by signing the TLS handshake (CertificateVerify)",
                config.name,
                info.short_serial(),
                info.not_after_rfc3339(),
                config.ca.display()
            );
            narrate_chain(tls, &framed);
            let wire = framed.wire();
            wire.certified_key("the server's key", &info.short_serial(), &info.spki_der);
            if let Some(id) = &config.identity {
                wire.certified_key("our client.key", &id.info.short_serial(), &id.info.spki_der);
            }
        }
        Ok(Connection {
            framed,
            server_cert,
            local_addr,
            config: config.clone(),
        })
    }

    /// The verified server certificate.
    pub fn server_cert(&self) -> &CertificateDer<'static> {
        &self.server_cert
    }

    /// Steps 3 to 6: hello, check the server's proof, register, receive the
    /// session.
    pub async fn register(&mut self) -> Result<ClientSession, ClientError> {
        let (hello, hello_frame) = ClientHello::start(
            &self.config.name,
            self.framed.exporter(),
            clock(&self.config),
        )?;
        self.send(&hello_frame).await?;
        info!(
            "phase 2 · step 3: sent hello (protocol v{}, expecting {}, fresh X25519 share), in the clear inside TLS",
            pki_common::proto::VERSION,
            self.config.name
        );

        let proof = self.receive().await?;
        let mut registering = match hello.on_proof(&proof, &self.server_cert, clock(&self.config)) {
            Ok(r) => r,
            Err(e) => return Err(self.refuse(e).await),
        };
        let serial = CertInfo::parse(&self.server_cert)
            .map(|c| c.short_serial())
            .unwrap_or_default();
        info!(
            "phase 2 · step 4: server proof verified: signed with the server's key (server.key) of certificate {serial}, over our hello, its X25519 share and this TLS connection's exporter; timestamp within ±{}s",
            self.config.skew_secs
        );
        let facts = registering.facts();
        info!(
            "phase 2 · registration keys {} and {}: HKDF-SHA256 of the X25519 shared secret, salted with transcript {} (TLS exporter, steps 3 and 4)",
            facts.send.name, facts.recv.name, facts.transcript_name
        );
        self.framed.wire().keys(&facts);

        let registration = Registration {
            client_id: self.config.client_id.clone(),
            client_addr: self.local_addr.to_string(),
            timestamp: pki_common::unix_now(),
        };
        let reg_frame = registering.register(&registration)?;
        self.send(&reg_frame).await?;
        info!(
            "phase 2 · step 5: sent registration for {:?} from {}, sealed with AES-256-GCM under {} (registration key, client to server)",
            registration.client_id,
            registration.client_addr,
            facts.send.name
        );

        let granted = self.receive().await?;
        let (session, granted) =
            match registering.on_granted(&granted, &self.config.client_id, clock(&self.config)) {
                Ok(s) => s,
                Err(e) => return Err(self.refuse(e).await),
            };
        let keys = session.facts();
        info!(
            "phase 2 · step 6: opened the grant with {} (registration key, server to client): session {} for {}s",
            facts.recv.name,
            hex::encode(&granted.session_id[..4]),
            granted.lifetime_secs
        );
        info!(
            "phase 2 · session keys {} and {}: HKDF-SHA256 of the same X25519 shared secret, expanded with transcript {} (steps 3 to 6); never sent",
            keys.send.name, keys.recv.name, keys.transcript_name
        );
        self.framed.wire().keys(&keys);
        Ok(session)
    }

    /// Steps 3R and 4R: resumes the session of `ticket` on this connection
    /// (in place of steps 3 to 6), on whichever replica it reached.
    pub async fn resume(&mut self, ticket: &ClientTicket) -> Result<ClientSession, ClientError> {
        let (resuming, frame) =
            ClientResuming::start(ticket, self.framed.exporter(), clock(&self.config))?;
        self.send(&frame).await?;
        info!(
            "phase 2 · step 3R: sent resume for session {} with its ticket and a fresh nonce, in the clear inside TLS (the ticket is sealed under the server's ticket key; only a server holding that key reads it)",
            hex::encode(&ticket.session_id[..4])
        );
        let answer = self.receive().await?;
        let session = match resuming.on_resumed(&answer, clock(&self.config)) {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(e).await),
        };
        let keys = session.facts();
        info!(
            "phase 2 · step 4R: resumed session {}; request keys {} and {}: HKDF-SHA256 of the session's resumption secret, salted with transcript {} (this TLS connection's exporter and both nonces); never sent",
            hex::encode(&session.session_id[..4]),
            keys.send.name,
            keys.recv.name,
            keys.transcript_name
        );
        self.framed.wire().keys(&keys);
        Ok(session)
    }

    /// Steps 7 and 8: one request under the session key.
    pub async fn request(
        &mut self,
        session: &mut ClientSession,
        name: &str,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        let frame = session.request(&ServiceRequest {
            name: name.to_string(),
            body: body.to_vec(),
            timestamp: pki_common::unix_now(),
        })?;
        self.send(&frame).await?;
        let keys = session.facts();
        info!(
            "phase 3 · step 7: sent request {name:?}, sealed with AES-256-GCM under {} (session key, client to server)",
            keys.send.name
        );
        let reply = self.receive().await?;
        let response = match session.on_response(&reply, clock(&self.config)) {
            Ok(r) => r,
            Err(e) => return Err(self.refuse(e).await),
        };
        info!(
            "phase 3 · step 8: response {:?} ({} bytes) opened and verified with {} (session key, server to client)",
            response.status,
            response.data.len(),
            keys.recv.name
        );
        Ok(response)
    }

    /// Sends `frame` exactly as given and answers the server's next frame,
    /// whatever it is. The protocol never needs this; tools that show what
    /// the server refuses do (the replay exercise in `docs/tutorial.md`
    /// sends a step-7 frame recorded on another connection).
    pub async fn send_recorded(&mut self, frame: &Frame) -> Result<Frame, ClientError> {
        self.send(frame).await?;
        self.receive().await
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) {
        self.framed.close().await;
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        let sent = self.framed.send(frame).await;
        sent.map_err(|e| self.tls_or_proto(e))
    }

    /// Reads one frame, bounded by the timeout so a silent server cannot
    /// hold the client forever.
    async fn receive(&mut self) -> Result<Frame, ClientError> {
        let until = Instant::now() + self.config.timeout;
        let read = self.framed.recv_until(until, "the server").await;
        read.map_err(|e| self.tls_or_proto(e))
    }

    /// In TLS 1.3 the server judges the client's certificate after the
    /// client has finished its handshake, so a refusal arrives as an alert
    /// on the first read; report it as the TLS error it is.
    fn tls_or_proto(&self, err: ProtoError) -> ClientError {
        if let ProtoError::Timeout(_) = err {
            return ClientError::Timeout(self.config.timeout);
        }
        if let ProtoError::Io(io) = &err {
            if let Some(source) = pki_common::tls::tls_error_in(io) {
                return ClientError::Tls {
                    addr: self.config.server.clone(),
                    source: source.clone(),
                };
            }
        }
        ClientError::Proto(err)
    }

    /// Sends our refusal to the server (best effort) and returns it.
    async fn refuse(&mut self, err: ProtoError) -> ClientError {
        self.framed.send_alert(&err).await;
        ClientError::Proto(err)
    }
}

/// Who signed the server's certificate, and which CRL covers each
/// certificate of its chain: rustls has checked them all.
fn narrate_chain(tls: &ClientTls, framed: &ClientFramed) {
    let Some(leaf) = framed.peer_cert() else {
        return;
    };
    let intermediates = framed.peer_intermediates();
    info!(
        "phase 2 · server chain: {}",
        pki_common::cert::describe_chain(leaf, intermediates, tls.root())
    );
    if let Some(crls) = tls.crls() {
        let chain: Vec<_> = std::iter::once(leaf)
            .chain(intermediates)
            .cloned()
            .collect();
        info!(
            "phase 2 · server revocation: {}",
            crls.describe_coverage(&chain)
        );
    }
}

/// The protocol's notion of now, with the configured allowance for skew
/// between the client's and the server's clocks.
fn clock(config: &ClientConfig) -> Clock {
    Clock {
        now: pki_common::unix_now(),
        skew: config.skew_secs,
    }
}

/// Opens the TCP connection within the timeout. Also returns our local
/// address, which the registration (step 5) reports to the server.
async fn open_tcp(config: &ClientConfig) -> Result<(TcpStream, SocketAddr), ClientError> {
    let addr = &config.server;
    let tcp = tokio::time::timeout(config.timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout(config.timeout))?
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    // Frames are small and each step waits for the answer: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    let local_addr = tcp.local_addr().map_err(|source| ClientError::Connect {
        addr: addr.clone(),
        source,
    })?;
    Ok((tcp, local_addr))
}

/// Turns a failed handshake into the most precise error: a revoked server
/// certificate names its serial and reason, any other rustls refusal keeps
/// the rustls error, and the rest is an I/O failure.
fn handshake_error(tls: &ClientTls, addr: &str, e: std::io::Error) -> ClientError {
    match pki_common::tls::tls_error_in(&e) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {
            tls.revoked_error()
        }
        Some(source) => ClientError::Tls {
            addr: addr.to_string(),
            source: source.clone(),
        },
        None => ClientError::Handshake {
            addr: addr.to_string(),
            source: e,
        },
    }
}

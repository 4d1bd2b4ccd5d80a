//! The two state machines, client and server, for steps 3 to 8.
//!
//! They do no I/O: each method takes the frame that arrived and answers the
//! frame to send. The drivers in `pki-client` and `pki-server` move frames
//! over TLS; tests move them by hand and tamper with them in between. Each
//! state is a distinct type, so a step cannot be taken out of order.

use rand::RngCore;
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use rustls::pki_types::CertificateDer;
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::check_timestamp;
use super::error::ProtoError;
use super::frame::{Frame, Kind};
use super::message::{
    decode, encode, Hello, Registration, Response, Sealed, ServerProof, ServiceRequest,
    SessionGranted, SessionId, SessionSealed,
};
use super::seal::{DirectionKey, KeySchedule};
use crate::cert::CertInfo;

/// Context string of the step-4 signature, so it can never be mistaken for
/// a signature made for any other purpose with the same key.
const PROOF_CONTEXT: &[u8] = b"pki-auth v1 server proof\0";

/// Signature schemes the server may sign step 4 with, in preference order.
/// All are TLS 1.3 schemes; RSA signs with PSS.
const PROOF_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
];

/// The time checks both sides apply.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Seconds since the Unix epoch.
    pub now: u64,
    /// Allowed difference from the peer's timestamps, in seconds.
    pub skew: u64,
}

pub(super) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

pub(super) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// What the step-4 signature covers: the context string, the TLS exporter
/// value (binding the proof to this TLS connection), the hash of the hello
/// frame, and the server's share, nonce, timestamp and scheme.
fn proof_message(exporter: &[u8; 32], hello_frame: &[u8], proof: &ServerProof) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROOF_CONTEXT.len() + 32 * 4 + 10);
    m.extend_from_slice(PROOF_CONTEXT);
    m.extend_from_slice(exporter);
    m.extend_from_slice(&sha256(&[hello_frame]));
    m.extend_from_slice(&proof.server_share);
    m.extend_from_slice(&proof.nonce);
    m.extend_from_slice(&proof.timestamp.to_be_bytes());
    m.extend_from_slice(&proof.scheme.to_be_bytes());
    m
}

/// A fresh X25519 key pair from ring, the provider the whole tree uses:
/// its X25519 is several times faster than a portable implementation, and
/// an ephemeral key can be used for one agreement only (the type is
/// consumed), so it cannot be reused by mistake.
fn fresh_share() -> Result<(EphemeralPrivateKey, [u8; 32]), ProtoError> {
    let rng = ring::rand::SystemRandom::new();
    let secret = EphemeralPrivateKey::generate(&X25519, &rng)
        .map_err(|_| ProtoError::Signing("cannot generate an X25519 key".into()))?;
    let public = secret
        .compute_public_key()
        .map_err(|_| ProtoError::Signing("cannot compute an X25519 public key".into()))?;
    let mut share = [0u8; 32];
    share.copy_from_slice(public.as_ref());
    Ok((secret, share))
}

/// X25519 with the peer's share. ring refuses a non-contributory share
/// (an all-zero result); the copy of the shared secret is zeroized on drop.
fn agree(secret: EphemeralPrivateKey, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, ProtoError> {
    agreement::agree_ephemeral(secret, &UnparsedPublicKey::new(&X25519, peer), |shared| {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(shared);
        out
    })
    .map_err(|_| ProtoError::WeakKeyShare)
}

/// Verifies `signature` over `message` with the public key of `cert`, using
/// the provider's TLS 1.3 mapping of `scheme` to a verification algorithm.
pub fn verify_with_cert(
    cert: &CertificateDer<'_>,
    scheme: u16,
    message: &[u8],
    signature: &[u8],
) -> Result<(), ProtoError> {
    let scheme_enum = SignatureScheme::from(scheme);
    if !PROOF_SCHEMES.contains(&scheme_enum) {
        return Err(ProtoError::UnsupportedScheme(scheme));
    }
    let algs = crate::tls::provider().signature_verification_algorithms;
    let alg = algs
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme_enum)
        .and_then(|(_, a)| a.first())
        .ok_or(ProtoError::UnsupportedScheme(scheme))?;
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| ProtoError::BadSignature)?;
    ee.verify_signature(*alg, message, signature)
        .map_err(|_| ProtoError::BadSignature)
}

/// What may be shown of one stage of the key schedule (the narration and
/// `--wire`): the transcript hash its keys are bound to, and the names and
/// fingerprints of the key this side seals with and the key it opens
/// with. Never a key.
#[derive(Debug, Clone)]
pub struct KeyFacts {
    /// `TH1` (registration keys) or `TH2` (session keys).
    pub transcript_name: &'static str,
    pub transcript: [u8; 32],
    pub send: KeyName,
    pub recv: KeyName,
}

/// A key's name in `docs/protocol.md` §7 and its one-way fingerprint.
#[derive(Debug, Clone)]
pub struct KeyName {
    pub name: String,
    pub fingerprint: [u8; 8],
}

impl KeyName {
    fn of(key: &DirectionKey) -> Self {
        KeyName {
            name: key.name().to_string(),
            fingerprint: key.fingerprint(),
        }
    }
}

impl KeyFacts {
    fn of(
        transcript_name: &'static str,
        transcript: &[u8; 32],
        send: &DirectionKey,
        recv: &DirectionKey,
    ) -> Self {
        KeyFacts {
            transcript_name,
            transcript: *transcript,
            send: KeyName::of(send),
            recv: KeyName::of(recv),
        }
    }
}

// ---------------------------------------------------------------- client

/// The client after sending step 3, waiting for step 4.
pub struct ClientHello {
    secret: EphemeralPrivateKey,
    hello_frame: Vec<u8>,
    exporter: [u8; 32],
    expected_server: String,
}

impl ClientHello {
    /// Step 3: a fresh X25519 share and nonce for `expected_server`.
    /// `exporter` is this TLS connection's exporter value.
    pub fn start(
        expected_server: &str,
        exporter: [u8; 32],
        clock: Clock,
    ) -> Result<(Self, Frame), ProtoError> {
        let (secret, client_share) = fresh_share()?;
        let hello = Hello {
            expected_server: expected_server.to_string(),
            client_share,
            nonce: random(),
            timestamp: clock.now,
        };
        let frame = Frame::new(Kind::Hello, encode(&hello)?);
        Ok((
            ClientHello {
                secret,
                hello_frame: frame.encode(),
                exporter,
                expected_server: expected_server.to_string(),
            },
            frame,
        ))
    }

    /// Step 4: checks the server's signature with the public key of the
    /// certificate TLS has just verified, and its timestamp. Only if both
    /// pass does the client go on to say anything about itself.
    pub fn on_proof(
        self,
        frame: &Frame,
        server_cert: &CertificateDer<'_>,
        clock: Clock,
    ) -> Result<ClientRegistering, ProtoError> {
        let proof: ServerProof = decode(frame.require(Kind::ServerProof)?, "server proof")?;
        let message = proof_message(&self.exporter, &self.hello_frame, &proof);
        verify_with_cert(server_cert, proof.scheme, &message, &proof.signature)?;
        check_timestamp("server proof", proof.timestamp, clock.now, clock.skew)?;
        let shared = agree(self.secret, &proof.server_share)?;
        let transcript = sha256(&[&self.exporter, &self.hello_frame, &frame.encode()]);
        let schedule = KeySchedule::extract(&shared, &transcript);
        let (send, recv) = schedule.direction_keys("registration", &transcript, &transcript)?;
        Ok(ClientRegistering {
            schedule,
            transcript,
            send,
            recv,
            registration_frame: Vec::new(),
            expected_server: self.expected_server,
        })
    }
}

/// The client after step 4, ready to register.
pub struct ClientRegistering {
    schedule: KeySchedule,
    transcript: [u8; 32],
    send: DirectionKey,
    recv: DirectionKey,
    registration_frame: Vec<u8>,
    expected_server: String,
}

impl ClientRegistering {
    /// The registration keys: bound to TH1; sends with `K_reg_c2s`.
    pub fn facts(&self) -> KeyFacts {
        KeyFacts::of("TH1", &self.transcript, &self.send, &self.recv)
    }

    /// Step 5: seals the registration.
    pub fn register(&mut self, registration: &Registration) -> Result<Frame, ProtoError> {
        let (seq, ciphertext) = self.send.seal(Kind::Registration, &encode(registration)?)?;
        let frame = Frame::new(Kind::Registration, encode(&Sealed { seq, ciphertext })?);
        self.registration_frame = frame.encode();
        Ok(frame)
    }

    /// Step 6: opens the grant, checks it names us, and derives the session
    /// keys.
    pub fn on_granted(
        mut self,
        frame: &Frame,
        client_id: &str,
        clock: Clock,
    ) -> Result<(ClientSession, SessionGranted), ProtoError> {
        let sealed: Sealed = decode(frame.require(Kind::SessionGranted)?, "session granted")?;
        let plain = self
            .recv
            .open(Kind::SessionGranted, sealed.seq, &sealed.ciphertext)?;
        let granted: SessionGranted = decode(&plain, "session granted")?;
        check_timestamp("session granted", granted.timestamp, clock.now, clock.skew)?;
        // The server answers the id in lower case (step 5 normalises it).
        if !granted.client_id.eq_ignore_ascii_case(client_id) {
            return Err(ProtoError::ClientIdMismatch {
                expected: client_id.to_string(),
                got: granted.client_id,
            });
        }
        let secret = self
            .schedule
            .resumption_secret(&sha256(&[&self.transcript, &self.registration_frame]))?;
        let transcript = sha256(&[&self.transcript, &self.registration_frame, &frame.encode()]);
        let (send, recv) =
            self.schedule
                .direction_keys("session", &transcript, &granted.session_id)?;
        let ticket = ClientTicket {
            server_name: self.expected_server,
            session_id: granted.session_id,
            expires_at: clock.now.saturating_add(granted.lifetime_secs),
            ticket: granted.ticket.clone(),
            secret,
        };
        let session = ClientSession::new(granted.session_id, send, recv, transcript, Some(ticket));
        Ok((session, granted))
    }
}

/// What the client keeps of a session to resume it on a later connection
/// (step 3R): the ticket as the server sealed it, and the resumption
/// secret, which the client derived itself and which never travels.
#[derive(Clone)]
pub struct ClientTicket {
    /// The server name the session was granted for.
    pub server_name: String,
    pub session_id: SessionId,
    /// Seconds since the Unix epoch, by the client's clock.
    pub expires_at: u64,
    pub ticket: Vec<u8>,
    pub secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ClientTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientTicket(session {}, for {}, until {})",
            hex::encode(&self.session_id[..4]),
            self.server_name,
            self.expires_at
        )
    }
}

/// An established session, client side: steps 7 and 8, as often as needed
/// on this connection.
pub struct ClientSession {
    pub session_id: SessionId,
    send: DirectionKey,
    recv: DirectionKey,
    /// The transcript hash the session keys are bound to, for narration.
    th2: [u8; 32],
    /// What resumes the session on a later connection.
    ticket: Option<ClientTicket>,
    /// The name of the transcript `th2` is (`TH2`, or `THR` when resumed).
    transcript_name: &'static str,
}

impl ClientSession {
    pub(super) fn new(
        session_id: SessionId,
        send: DirectionKey,
        recv: DirectionKey,
        th2: [u8; 32],
        ticket: Option<ClientTicket>,
    ) -> Self {
        ClientSession {
            session_id,
            send,
            recv,
            th2,
            ticket,
            transcript_name: "TH2",
        }
    }

    pub(super) fn resumed(mut self) -> Self {
        self.transcript_name = "THR";
        self
    }

    /// The ticket that resumes this session on another connection.
    pub fn ticket(&self) -> Option<&ClientTicket> {
        self.ticket.as_ref()
    }

    /// The session keys: bound to TH2 (or THR); sends with `K_ses_c2s`
    /// (or `K_res_c2s`).
    pub fn facts(&self) -> KeyFacts {
        KeyFacts::of(self.transcript_name, &self.th2, &self.send, &self.recv)
    }

    /// Step 7: seals a request under the session key.
    pub fn request(&mut self, request: &ServiceRequest) -> Result<Frame, ProtoError> {
        let (seq, ciphertext) = self.send.seal(Kind::ServiceRequest, &encode(request)?)?;
        Ok(Frame::new(
            Kind::ServiceRequest,
            encode(&SessionSealed {
                session_id: self.session_id,
                seq,
                ciphertext,
            })?,
        ))
    }

    /// Step 8: opens the response.
    pub fn on_response(&mut self, frame: &Frame, clock: Clock) -> Result<Response, ProtoError> {
        let sealed: Sealed = decode(frame.require(Kind::Response)?, "response")?;
        let plain = self
            .recv
            .open(Kind::Response, sealed.seq, &sealed.ciphertext)?;
        let response: Response = decode(&plain, "response")?;
        check_timestamp("response", response.timestamp, clock.now, clock.skew)?;
        Ok(response)
    }
}

// ---------------------------------------------------------------- server

/// The server after step 4, waiting for the registration.
pub struct ServerRegistering {
    schedule: KeySchedule,
    transcript: [u8; 32],
    send: DirectionKey,
    recv: DirectionKey,
    registration_frame: Vec<u8>,
    /// The hello as received, for narration.
    pub hello: Hello,
}

/// Steps 3 and 4, server side: checks the hello (expected identity among
/// `names`, timestamp) and answers the proof, signed with `signer`, the key
/// of the server's certificate.
pub fn accept_hello(
    frame: &Frame,
    exporter: [u8; 32],
    names: &[String],
    signer: &dyn SigningKey,
    clock: Clock,
) -> Result<(ServerRegistering, Frame), ProtoError> {
    let hello: Hello = decode(frame.require(Kind::Hello)?, "hello")?;
    // DNS names compare without regard to case, as in TLS name checks.
    if !names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(&hello.expected_server))
    {
        return Err(ProtoError::WrongServer {
            expected: hello.expected_server,
            actual: names.join(", "),
        });
    }
    check_timestamp("hello", hello.timestamp, clock.now, clock.skew)?;
    let (secret, server_share) = fresh_share()?;
    let shared = agree(secret, &hello.client_share)?;
    let signer = signer
        .choose_scheme(PROOF_SCHEMES)
        .ok_or_else(|| ProtoError::Signing("the server key supports no proof scheme".into()))?;
    let mut proof = ServerProof {
        server_share,
        nonce: random(),
        timestamp: clock.now,
        scheme: u16::from(signer.scheme()),
        signature: Vec::new(),
    };
    let hello_frame = frame.encode();
    proof.signature = signer
        .sign(&proof_message(&exporter, &hello_frame, &proof))
        .map_err(|e| ProtoError::Signing(e.to_string()))?;
    let proof_frame = Frame::new(Kind::ServerProof, encode(&proof)?);
    let transcript = sha256(&[&exporter, &hello_frame, &proof_frame.encode()]);
    let schedule = KeySchedule::extract(&shared, &transcript);
    let (recv, send) = schedule.direction_keys("registration", &transcript, &transcript)?;
    Ok((
        ServerRegistering {
            schedule,
            transcript,
            send,
            recv,
            registration_frame: Vec::new(),
            hello,
        },
        proof_frame,
    ))
}

impl ServerRegistering {
    /// The registration keys: bound to TH1; sends with `K_reg_s2c`.
    pub fn facts(&self) -> KeyFacts {
        KeyFacts::of("TH1", &self.transcript, &self.send, &self.recv)
    }

    /// Step 5: opens and checks the registration. When TLS verified a
    /// client certificate (`client_cert`), the client id must be one of its
    /// DNS names (compared without regard to case): the certificate, not
    /// the client's word, says who it is.
    ///
    /// The registration answered is normalised: the client id in lower
    /// case (ids are DNS-style names, and DNS names compare without regard
    /// to case, so `Client1.PKI.test` and `client1.pki.test` are one
    /// client everywhere: the session, `whoami`, the logs), and the client
    /// address as a parsed socket address. An address that does not parse
    /// is refused rather than logged as sent, so it cannot forge log lines.
    pub fn on_registration(
        &mut self,
        frame: &Frame,
        clock: Clock,
        client_cert: Option<&CertInfo>,
    ) -> Result<Registration, ProtoError> {
        let sealed: Sealed = decode(frame.require(Kind::Registration)?, "registration")?;
        let plain = self
            .recv
            .open(Kind::Registration, sealed.seq, &sealed.ciphertext)?;
        let mut registration: Registration = decode(&plain, "registration")?;
        check_timestamp(
            "registration",
            registration.timestamp,
            clock.now,
            clock.skew,
        )?;
        registration.client_id = checked_client_id(&registration.client_id, client_cert)?;
        let addr: std::net::SocketAddr = registration
            .client_addr
            .parse()
            .map_err(|_| ProtoError::InvalidClientAddr(registration.client_addr.clone()))?;
        registration.client_addr = addr.to_string();
        self.registration_frame = frame.encode();
        Ok(registration)
    }

    /// The session's resumption secret, for its ticket (after step 5).
    pub fn resumption_secret(&self) -> Result<Zeroizing<[u8; 32]>, ProtoError> {
        self.schedule
            .resumption_secret(&sha256(&[&self.transcript, &self.registration_frame]))
    }

    /// Step 6: seals the grant and derives the session keys.
    pub fn grant(
        mut self,
        granted: &SessionGranted,
    ) -> Result<(Frame, ServerSessionKeys), ProtoError> {
        let (seq, ciphertext) = self.send.seal(Kind::SessionGranted, &encode(granted)?)?;
        let frame = Frame::new(Kind::SessionGranted, encode(&Sealed { seq, ciphertext })?);
        let transcript = sha256(&[&self.transcript, &self.registration_frame, &frame.encode()]);
        let (recv, send) =
            self.schedule
                .direction_keys("session", &transcript, &granted.session_id)?;
        Ok((
            frame,
            ServerSessionKeys {
                recv,
                send,
                th2: transcript,
                transcript_name: "TH2",
            },
        ))
    }
}

/// Step 5's client id rules: 1 to 64 of a restricted set of characters,
/// one of the certificate's DNS names when the client presented one, and
/// answered in lower case.
fn checked_client_id(id: &str, client_cert: Option<&CertInfo>) -> Result<String, ProtoError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@');
    if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) {
        return Err(ProtoError::InvalidClientId(id.to_string()));
    }
    if let Some(cert) = client_cert {
        if !cert.dns_names.iter().any(|n| n.eq_ignore_ascii_case(id)) {
            return Err(ProtoError::ClientIdNotCertified {
                claimed: id.to_string(),
                certified: cert.names().join(", "),
            });
        }
    }
    Ok(id.to_ascii_lowercase())
}

/// An established session's keys, server side. The server keeps them in its
/// session table, so a session outlives the connection that made it.
pub struct ServerSessionKeys {
    pub(super) recv: DirectionKey,
    pub(super) send: DirectionKey,
    /// The transcript hash the session keys are bound to, for narration.
    pub(super) th2: [u8; 32],
    /// `TH2`, or `THR` on a resumed connection.
    pub(super) transcript_name: &'static str,
}

/// Reads the session id of a step-7 frame, to find its keys.
pub fn request_session_id(frame: &Frame) -> Result<(SessionId, SessionSealed), ProtoError> {
    let sealed: SessionSealed = decode(frame.require(Kind::ServiceRequest)?, "service request")?;
    Ok((sealed.session_id, sealed))
}

impl ServerSessionKeys {
    /// The session keys: bound to TH2 (or THR); sends with `K_ses_s2c`
    /// (or `K_res_s2c`).
    pub fn facts(&self) -> KeyFacts {
        KeyFacts::of(self.transcript_name, &self.th2, &self.send, &self.recv)
    }

    /// Step 7: opens a request.
    pub fn open_request(
        &mut self,
        sealed: &SessionSealed,
        clock: Clock,
    ) -> Result<ServiceRequest, ProtoError> {
        // The keys are this connection's alone: a request that does not
        // open was sealed for another connection, or altered.
        let plain = self
            .recv
            .open(Kind::ServiceRequest, sealed.seq, &sealed.ciphertext)
            .map_err(|e| match e {
                ProtoError::DecryptFailed { step } => ProtoError::NotThisConnection { step },
                other => other,
            })?;
        let request: ServiceRequest = decode(&plain, "service request")?;
        check_timestamp("service request", request.timestamp, clock.now, clock.skew)?;
        Ok(request)
    }

    /// Step 8: seals a response.
    pub fn seal_response(&mut self, response: &Response) -> Result<Frame, ProtoError> {
        let (seq, ciphertext) = self.send.seal(Kind::Response, &encode(response)?)?;
        Ok(Frame::new(
            Kind::Response,
            encode(&Sealed { seq, ciphertext })?,
        ))
    }
}

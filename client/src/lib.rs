//! `pki-client`: phases 2 and 3 from the client's side.
//!
//! The client verifies the server's certificate against the CA root before
//! it sends a single byte of the application protocol, checks the server's
//! step-4 proof against that same certificate, negotiates a session key,
//! and requests service under it.
//!
//! # Layout
//! - [`ClientConfig`]: where to connect and what to trust.
//! - [`Connection`]: one verified TLS 1.3 connection; [`Connection::register`]
//!   runs steps 3 to 6, [`Connection::request`] steps 7 and 8.
//! - [`revocation`]: getting and checking the CRL before the handshake.
//! - [`request_once`]: the whole flow, as `pki-client request` runs it.

pub mod revocation;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::info;

use pki_common::cert::{CertInfo, Purpose};
use pki_common::enroll::{check_held, Enrolled, Held, KeyFiles};
use pki_common::proto::handshake::{ClientHello, ClientSession, Clock};
use pki_common::proto::message::{Registration, Response, ServiceRequest};
use pki_common::proto::{read_frame, write_frame, AlertCode, Frame, ProtoError, EXPORTER_LABEL};
use revocation::{obtain_crl, CrlSource, RecordingVerifier};

/// Where to connect and what to trust.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the application server.
    pub server: String,
    /// The identity the server's certificate must carry.
    pub name: String,
    /// The CA root, the only trust anchor.
    pub ca: PathBuf,
    pub client_id: String,
    pub skew_secs: u64,
    pub max_frame: usize,
    /// Bound on connecting, the TLS handshake and each protocol step.
    pub timeout: Duration,
    /// Where the current CRL comes from.
    pub crl: CrlSource,
    /// The client's own certificate and key, presented when the server asks.
    pub identity: Option<Enrolled>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: "127.0.0.1:9443".into(),
            name: "app.pki.test".into(),
            ca: PathBuf::from("certs/ca.pem"),
            client_id: "client1".into(),
            skew_secs: pki_common::proto::DEFAULT_SKEW_SECS,
            max_frame: pki_common::proto::DEFAULT_MAX_FRAME,
            timeout: Duration::from_secs(10),
            crl: CrlSource::Fetch {
                ca_url: "https://127.0.0.1:8443".into(),
            },
            identity: None,
        }
    }
}

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    File(#[from] pki_common::files::FileError),
    #[error(transparent)]
    TlsSetup(#[from] pki_common::tls::TlsSetupError),
    #[error("invalid server name {0:?}")]
    BadName(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The server's certificate (or the TLS handshake) was refused; the
    /// rustls error says exactly why.
    #[error("TLS with server {addr} failed: {}", pki_common::tls::describe_tls_error(.source))]
    Tls { addr: String, source: rustls::Error },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("revocation status unknown: {reason}; pass --crl FILE, or --insecure-skip-revocation to go on without the check (insecure)")]
    RevocationUnknown { reason: String },
    #[error("refusing the CRL: {0}")]
    Crl(#[from] pki_common::revocation::CrlError),
    #[error("server certificate revoked (serial {serial}, {})", .reason.map(|r| r.as_str()).unwrap_or("no reason given"))]
    Revoked {
        serial: String,
        reason: Option<pki_common::revocation::Reason>,
    },
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error(transparent)]
    Enroll(#[from] pki_common::enroll::EnrollError),
    #[error("the client certificate cannot be used ({0}); it needs a new token: `pki-ca token --profile client --name …`, then `pki-client enroll --token …`")]
    NeedToken(String),
}

/// What the client trusts, prepared once: the root, the checked CRL and the
/// TLS configuration built from them (and from the client's certificate).
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Remembers the last certificate shown, to name it if it is revoked.
    verifier: Arc<RecordingVerifier>,
    crl: Option<pki_common::revocation::VerifiedCrl>,
}

impl ClientTls {
    /// Reads the root, gets and checks the CRL, and builds the TLS
    /// configuration.
    pub async fn prepare(config: &ClientConfig) -> Result<Self, ClientError> {
        let root = pki_common::files::read_cert(&config.ca)?;
        let crl = obtain_crl(&config.crl, &root).await?;
        let crls = crl.iter().map(|c| c.der.clone()).collect();
        let verifier = Arc::new(RecordingVerifier::new(pki_common::tls::server_verifier(
            &root, crls,
        )?));
        let identity = match &config.identity {
            Some(id) => {
                info!(
                    "phase 2 · TLS: presenting client certificate {} for {} if the server asks",
                    id.info.short_serial(),
                    id.info.names().join(", ")
                );
                Some((vec![id.cert.clone()], id.key_der()?))
            }
            None => None,
        };
        let mut tls = pki_common::tls::client_config_with(verifier.clone(), identity)?;
        // No TLS session resumption: a resumed handshake skips the
        // certificate, so the server would not be checked against the
        // current CRL again. Every connection verifies in full.
        tls.resumption = rustls::client::Resumption::disabled();
        Ok(ClientTls {
            config: Arc::new(tls),
            verifier,
            crl,
        })
    }
}

/// A TLS 1.3 connection whose server certificate has been verified.
pub struct Connection {
    stream: TlsStream<TcpStream>,
    server_cert: CertificateDer<'static>,
    local_addr: SocketAddr,
    config: ClientConfig,
}

fn clock(config: &ClientConfig) -> Clock {
    Clock {
        now: pki_common::unix_now(),
        skew: config.skew_secs,
    }
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
        let (verifier, crl) = (&tls.verifier, &tls.crl);
        let name = ServerName::try_from(config.name.clone())
            .map_err(|_| ClientError::BadName(config.name.clone()))?;
        let addr = config.server.clone();
        let tcp = tokio::time::timeout(config.timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| ClientError::Timeout(config.timeout))?
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let local_addr = tcp.local_addr().map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
        let connector = TlsConnector::from(tls.config.clone());
        let stream = tokio::time::timeout(config.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout(config.timeout))?
            .map_err(|e| match pki_common::tls::tls_error_in(&e) {
                Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {
                    revoked_error(verifier.seen().as_ref(), crl.as_ref())
                }
                Some(source) => ClientError::Tls {
                    addr: addr.clone(),
                    source: source.clone(),
                },
                None => ClientError::Handshake {
                    addr: addr.clone(),
                    source: e,
                },
            })?;
        let server_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
            .ok_or_else(|| ClientError::Tls {
                addr: addr.clone(),
                source: rustls::Error::NoCertificatesPresented,
            })?;
        if let Ok(info) = CertInfo::parse(&server_cert) {
            info!(
                "phase 2 · TLS 1.3 to {addr}: certificate for {} (serial {}, valid until {}) verified against {}",
                config.name,
                info.short_serial(),
                info.not_after_rfc3339(),
                config.ca.display()
            );
        }
        Ok(Connection {
            stream,
            server_cert,
            local_addr,
            config: config.clone(),
        })
    }

    /// The verified server certificate.
    pub fn server_cert(&self) -> &CertificateDer<'static> {
        &self.server_cert
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        write_frame(&mut self.stream, frame)
            .await
            .map_err(|e| self.tls_or_proto(e))
    }

    async fn receive(&mut self) -> Result<Frame, ClientError> {
        tokio::time::timeout(
            self.config.timeout,
            read_frame(&mut self.stream, self.config.max_frame),
        )
        .await
        .map_err(|_| ClientError::Timeout(self.config.timeout))?
        .map_err(|e| self.tls_or_proto(e))
    }

    /// In TLS 1.3 the server judges the client's certificate after the
    /// client has finished its handshake, so a refusal arrives as an alert
    /// on the first read; report it as the TLS error it is.
    fn tls_or_proto(&self, err: ProtoError) -> ClientError {
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
        if let Some(alert) = Frame::alert_for(&err) {
            let _ = write_frame(&mut self.stream, &alert).await;
        }
        ClientError::Proto(err)
    }

    /// Steps 3 to 6: hello, check the server's proof, register, receive the
    /// session.
    pub async fn register(&mut self) -> Result<ClientSession, ClientError> {
        let mut exporter = [0u8; 32];
        self.stream
            .get_ref()
            .1
            .export_keying_material(&mut exporter, EXPORTER_LABEL, None)
            .map_err(|source| ClientError::Tls {
                addr: self.config.server.clone(),
                source,
            })?;

        let (hello, hello_frame) =
            ClientHello::start(&self.config.name, exporter, clock(&self.config))?;
        self.send(&hello_frame).await?;
        info!(
            "phase 2 · step 3: sent hello (protocol v{}, expecting {}, fresh X25519 share)",
            pki_common::proto::VERSION,
            self.config.name
        );

        let proof = self.receive().await?;
        let mut registering = match hello.on_proof(&proof, &self.server_cert, clock(&self.config)) {
            Ok(r) => r,
            Err(e) => return Err(self.refuse(e).await),
        };
        info!("phase 2 · step 4: server proof verified with the certificate's key; timestamp within ±{}s", self.config.skew_secs);

        let registration = Registration {
            client_id: self.config.client_id.clone(),
            client_addr: self.local_addr.to_string(),
            timestamp: pki_common::unix_now(),
        };
        let reg_frame = registering.register(&registration)?;
        self.send(&reg_frame).await?;
        info!(
            "phase 2 · step 5: sent registration for {:?} from {}, sealed with AES-256-GCM",
            registration.client_id, registration.client_addr
        );

        let granted = self.receive().await?;
        let (session, granted) =
            match registering.on_granted(&granted, &self.config.client_id, clock(&self.config)) {
                Ok(s) => s,
                Err(e) => return Err(self.refuse(e).await),
            };
        info!(
            "phase 2 · step 6: session {} granted for {}s; session keys derived",
            hex::encode(&granted.session_id[..4]),
            granted.lifetime_secs
        );
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
        info!("phase 3 · step 7: sent request {name:?} under the session key");
        let reply = self.receive().await?;
        let response = match session.on_response(&reply, clock(&self.config)) {
            Ok(r) => r,
            Err(e) => return Err(self.refuse(e).await),
        };
        info!(
            "phase 3 · step 8: response {:?} ({} bytes) opened and verified",
            response.status,
            response.data.len()
        );
        Ok(response)
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.stream.shutdown().await;
    }
}

/// Names the revoked certificate and the reason the CRL gives.
fn revoked_error(
    cert: Option<&CertificateDer<'static>>,
    crl: Option<&pki_common::revocation::VerifiedCrl>,
) -> ClientError {
    let serial = cert
        .and_then(|c| CertInfo::parse(c).ok())
        .map(|i| i.serial_hex)
        .unwrap_or_else(|| "unknown".into());
    let reason = crl.and_then(|c| c.revocation_of(&serial)).flatten();
    ClientError::Revoked { serial, reason }
}

/// The whole flow: connect, register, one request.
pub async fn request_once(
    config: &ClientConfig,
    name: &str,
    body: &[u8],
) -> Result<Response, ClientError> {
    let mut conn = Connection::connect(config).await?;
    let mut session = conn.register().await?;
    let response = conn.request(&mut session, name, body).await?;
    conn.close().await;
    Ok(response)
}

/// A client that keeps its session across requests and connections, and
/// registers again when the server no longer knows the session (it
/// restarted, the session expired or reached its request limit).
pub struct SessionClient {
    config: ClientConfig,
    conn: Option<Connection>,
    session: Option<ClientSession>,
}

impl SessionClient {
    pub fn new(config: ClientConfig) -> Self {
        SessionClient {
            config,
            conn: None,
            session: None,
        }
    }

    /// The current session, if registered.
    pub fn session(&self) -> Option<&ClientSession> {
        self.session.as_ref()
    }

    /// Closes the connection but keeps the session, to resume it on the
    /// next request over a new connection.
    pub async fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// Steps 7 and 8, connecting and registering (steps 3 to 6) as needed.
    pub async fn request(&mut self, name: &str, body: &[u8]) -> Result<Response, ClientError> {
        match self.try_request(name, body).await {
            Err(ClientError::Proto(ProtoError::PeerAlert {
                code:
                    AlertCode::UnknownSession | AlertCode::SessionExpired | AlertCode::RequestLimit,
                message,
            })) => {
                info!("the server ended our session ({message}); registering again");
                // The server closes the connection after an alert.
                self.conn = None;
                self.session = None;
                self.try_request(name, body).await
            }
            other => other,
        }
    }

    async fn try_request(&mut self, name: &str, body: &[u8]) -> Result<Response, ClientError> {
        if self.conn.is_none() {
            self.conn = Some(Connection::connect(&self.config).await?);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or(ClientError::Proto(ProtoError::Closed))?;
        if self.session.is_none() {
            self.session = Some(conn.register().await?);
        }
        let session = self
            .session
            .as_mut()
            .ok_or(ClientError::Proto(ProtoError::Closed))?;
        let result = conn.request(session, name, body).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// Loads the client's certificate and key if they are good to present
/// (chain to the root, clientAuth, not expired); `None` if there are none.
pub fn load_identity(
    files: &KeyFiles,
    root: &CertificateDer<'static>,
) -> Result<Option<Enrolled>, ClientError> {
    if !files.cert.exists() && !files.key.exists() {
        return Ok(None);
    }
    match check_held(files, root, &[], Purpose::ClientAuth, None) {
        Held::Good(e) => Ok(Some(e)),
        Held::DueForRenewal(e, why) => {
            tracing::warn!(
                "the client certificate is due for renewal ({why}); run `pki-client renew`"
            );
            Ok(Some(e))
        }
        Held::Unusable(why) => Err(ClientError::NeedToken(why)),
    }
}

/// `pki-client enroll`: keeps a good certificate for `name` (unless
/// `force`), otherwise makes a key and enrolls with `token`.
pub async fn enroll_client(
    ca_url: &str,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    name: &str,
    token: &str,
    force: bool,
) -> Result<Enrolled, ClientError> {
    let names = vec![name.to_string()];
    if !force {
        // A certificate is kept only if the CA's current CRL says it is not
        // revoked; without a CRL its status is unknown, so it is replaced
        // (which needs the CA anyway).
        let crl = obtain_crl(
            &CrlSource::Fetch {
                ca_url: ca_url.to_string(),
            },
            root,
        )
        .await
        .map_err(|e| {
            tracing::warn!(
                "cannot check the current certificate's revocation ({e}); enrolling anew"
            )
        })
        .ok()
        .flatten();
        let held = match &crl {
            Some(crl) => check_held(files, root, &names, Purpose::ClientAuth, Some(crl)),
            None => Held::Unusable("revocation status unknown".into()),
        };
        if let Held::Good(held) = held {
            info!(
                "client certificate {} for {name} is still good (serial {}, valid until {}); use --force to replace it",
                files.cert.display(),
                held.info.short_serial(),
                held.info.not_after_rfc3339()
            );
            return Ok(held);
        }
    }
    let ca = pki_common::https::CaClient::new(ca_url, None, root)
        .map_err(pki_common::enroll::EnrollError::from)?;
    let enrolled = pki_common::enroll::enroll(
        &ca,
        root,
        &names,
        token,
        Purpose::ClientAuth,
        pki_common::enroll::Retry::default(),
    )
    .await?;
    enrolled.save(files)?;
    info!(
        "wrote {} (mode 0600) and {}",
        files.key.display(),
        files.cert.display()
    );
    Ok(enrolled)
}

/// `pki-client renew`: renews the client's certificate with itself (new
/// key, same name). A revoked or expired certificate cannot renew.
pub async fn renew_client(
    ca_url: &str,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
) -> Result<Enrolled, ClientError> {
    let current = match check_held(files, root, &[], Purpose::ClientAuth, None) {
        Held::Good(e) | Held::DueForRenewal(e, _) => e,
        Held::Unusable(why) => return Err(ClientError::NeedToken(why)),
    };
    let renewed =
        pki_common::enroll::renew(ca_url, None, root, &current, Purpose::ClientAuth).await?;
    renewed.save(files)?;
    Ok(renewed)
}

//! The CA's TLS 1.3 listener.
//!
//! The listener presents a certificate the CA issues from its own root at
//! start-up, so callers verify the CA endpoint against `ca.pem` like any
//! other server. Connections are capped; on shutdown the listener stops
//! accepting and lets in-flight requests finish within a deadline.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use pki_common::shutdown::Shutdown;

use crate::Ca;

/// How the CA listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Names on the CA's own TLS certificate.
    pub names: Vec<String>,
    pub max_body: usize,
    /// Connections served at once; further ones are closed at once.
    pub max_connections: usize,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// How often the ledger is checked for revocations made by
    /// `pki-ca revoke`, which may run in another process.
    pub crl_poll: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            names: vec!["ca.pki.test".into(), "127.0.0.1".into()],
            max_body: crate::http::DEFAULT_MAX_BODY,
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            crl_poll: Duration::from_secs(1),
        }
    }
}

/// Errors starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot prepare the CA's TLS certificate and CRL: {0}")]
    Identity(#[from] crate::CaError),
    #[error(transparent)]
    Tls(#[from] pki_common::tls::TlsSetupError),
}

/// A bound, ready CA listener.
pub struct CaServer {
    ca: Arc<Ca>,
    listener: TcpListener,
    /// The acceptor presenting the CA's own certificate, and when that
    /// certificate is due for replacement; swapped by `rotate_own`.
    acceptor: Arc<RwLock<(TlsAcceptor, i64)>>,
    router: axum::Router,
    opts: ServeOptions,
}

impl CaServer {
    /// Issues the CA's TLS certificate and binds the listener.
    pub async fn bind(ca: Arc<Ca>, opts: ServeOptions) -> Result<Self, ServeError> {
        let (acceptor, due) = own_acceptor(&ca, &opts.names)?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: opts.listen,
                source,
            })?;
        ca.publish_crl()?;
        let router = crate::http::router(ca.clone(), opts.max_body);
        Ok(CaServer {
            ca,
            listener,
            acceptor: Arc::new(RwLock::new((acceptor, due))),
            router,
            opts,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, then drains.
    pub async fn run(self, mut shutdown: Shutdown) {
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!("CA listening on https://{addr} (TLS 1.3)");
        tokio::spawn(rotate_own(
            self.ca.clone(),
            self.opts.names.clone(),
            self.acceptor.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(refresh_crl(
            self.ca.clone(),
            self.opts.crl_poll,
            shutdown.clone(),
        ));
        let limit = Arc::new(Semaphore::new(self.opts.max_connections));
        let mut tasks = JoinSet::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        continue;
                    }
                },
            };
            // Over the cap, a connection is closed at once rather than
            // queued: the caller sees the refusal and can retry.
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                warn!(
                    "refused {peer}: connection limit ({}) reached",
                    self.opts.max_connections
                );
                drop(tcp);
                continue;
            };
            let acceptor = self
                .acceptor
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone();
            let router = self.router.clone();
            let handshake_timeout = self.opts.handshake_timeout;
            let mut conn_shutdown = shutdown.clone();
            // Reap finished connection tasks so the set stays small.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!("TLS handshake with {peer} failed: {e}");
                        return;
                    }
                    Err(_) => {
                        debug!("TLS handshake with {peer} timed out");
                        return;
                    }
                };
                let peer_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.clone().into_owned());
                let service = TowerToHyperService::new(
                    router.layer(axum::Extension(crate::http::PeerCertificate(peer_cert))),
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(handshake_timeout)
                    .serve_connection(TokioIo::new(tls), service);
                tokio::pin!(conn);
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(e) = res {
                            debug!("connection from {peer} ended: {e}");
                        }
                    }
                    _ = conn_shutdown.wait() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        info!("CA shutting down: no longer accepting, draining in-flight requests");
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.opts.shutdown_grace, drain)
            .await
            .is_err()
        {
            warn!("some connections did not finish within the grace period; closing them");
            tasks.abort_all();
        }
    }
}

/// Issues the CA's own TLS certificate and the acceptor presenting it;
/// answers also when it is due for replacement (two thirds of its life).
fn own_acceptor(ca: &Ca, names: &[String]) -> Result<(TlsAcceptor, i64), ServeError> {
    let (cert, key) = ca.issue_service_certificate(names)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(pki_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| pki_common::tls::TlsSetupError::BadIdentity(e.to_string()))?
        .with_client_cert_verifier(Arc::new(RenewalClientVerifier {
            root: ca.root().cert.clone(),
        }))
        .with_single_cert(vec![cert.der.clone()], key)
        .map_err(|e| pki_common::tls::TlsSetupError::BadIdentity(e.to_string()))?;
    let (nb, na) = (cert.info.not_before, cert.info.not_after);
    Ok((TlsAcceptor::from(Arc::new(config)), na - (na - nb) / 3))
}

/// Replaces the CA's own TLS certificate before it runs out, so a CA that
/// serves for longer than a certificate lifetime stays reachable.
async fn rotate_own(
    ca: Arc<Ca>,
    names: Vec<String>,
    acceptor: Arc<RwLock<(TlsAcceptor, i64)>>,
    mut shutdown: Shutdown,
) {
    loop {
        let due = acceptor.read().unwrap_or_else(|p| p.into_inner()).1;
        let wait = due.saturating_sub(pki_common::unix_now() as i64).max(1) as u64;
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
        }
        let (ca, names) = (ca.clone(), names.clone());
        match tokio::task::spawn_blocking(move || own_acceptor(&ca, &names)).await {
            Ok(Ok(fresh)) => {
                *acceptor.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                info!("replaced the CA's own TLS certificate before it expires");
            }
            Ok(Err(e)) => {
                warn!("cannot replace the CA's own TLS certificate: {e}; retrying in 10 s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(e) => warn!("the certificate rotation task failed: {e}"),
        }
    }
}

/// Keeps the served CRL current: a revocation recorded by any process is
/// published within one `poll`, and a CRL is renewed at half its validity.
/// The trigger is the ledger itself, so revoking needs access to the CA's
/// files and offers nothing to network callers.
async fn refresh_crl(ca: Arc<Ca>, poll: Duration, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        let ca = ca.clone();
        match tokio::task::spawn_blocking(move || ca.refresh_crl()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("cannot refresh the CRL: {e}"),
            Err(e) => warn!("the CRL refresh task failed: {e}"),
        }
    }
}

/// Verifies the optional TLS client certificate on the CA's listener, which
/// only renewal uses.
///
/// It differs from rustls's WebPKI client verifier in one respect: it
/// accepts a certificate with either the serverAuth or the clientAuth EKU,
/// since servers renew their certificates too. The chain to the root and
/// the validity are checked as usual; revocation is judged by the renewal
/// handler from the ledger, so that its refusal can say why.
#[derive(Debug)]
struct RenewalClientVerifier {
    root: CertificateDer<'static>,
}

/// Accepts serverAuth or clientAuth.
struct ServerOrClientAuth;

impl webpki::ExtendedKeyUsageValidator for ServerOrClientAuth {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
        const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
        for id in iter {
            let id = id?;
            if id == webpki::KeyPurposeId::new(SERVER_AUTH)
                || id == webpki::KeyPurposeId::new(CLIENT_AUTH)
            {
                return Ok(());
            }
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::client_auth(),
                present: Vec::new(),
            },
        ))
    }
}

impl ClientCertVerifier for RenewalClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bad = |e: webpki::Error| {
            rustls::Error::InvalidCertificate(match e {
                webpki::Error::CertExpired { .. } => CertificateError::Expired,
                webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
                webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
                webpki::Error::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
                webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
                other => CertificateError::Other(rustls::OtherError(std::sync::Arc::new(other))),
            })
        };
        let anchor = webpki::anchor_from_trusted_cert(&self.root).map_err(bad)?;
        let ee = webpki::EndEntityCert::try_from(end_entity).map_err(bad)?;
        let algs = pki_common::tls::provider().signature_verification_algorithms;
        ee.verify_for_usage(
            algs.all,
            &[anchor],
            intermediates,
            now,
            ServerOrClientAuth,
            None,
            None,
        )
        .map_err(bad)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Every listener here is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &pki_common::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        pki_common::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

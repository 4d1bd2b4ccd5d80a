//! The CA's TLS 1.3 listener.
//!
//! The listener presents a certificate the CA issues from its own root at
//! start-up, so callers verify the CA endpoint against `ca.pem` like any
//! other server. Connections are capped; on shutdown the listener stops
//! accepting and lets in-flight requests finish within a deadline.
//!
//! Only the listener lives here. What it verifies of a client certificate
//! is in `renewal_verifier`; the loops that keep its certificate and the
//! CRL fresh while it runs are in `tasks`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use pki_common::shutdown::Shutdown;

use crate::renewal_verifier::RenewalClientVerifier;
use crate::Ca;

/// The acceptor presenting the CA's own certificate, and when that
/// certificate is due for replacement. Shared between the accept loop,
/// which clones the acceptor for each connection, and
/// [`tasks::rotate_own`](crate::tasks), which swaps both at once.
pub(crate) type OwnAcceptor = Arc<RwLock<(TlsAcceptor, i64)>>;

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
    acceptor: OwnAcceptor,
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

    /// Starts the background loops of [`tasks`](crate::tasks), which stop
    /// with `shutdown`.
    fn spawn_tasks(&self, shutdown: &Shutdown) {
        tokio::spawn(crate::tasks::rotate_own(
            self.ca.clone(),
            self.opts.names.clone(),
            self.acceptor.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(crate::tasks::refresh_crl(
            self.ca.clone(),
            self.opts.crl_poll,
            shutdown.clone(),
        ));
    }

    /// Serves until `shutdown` fires, then drains.
    pub async fn run(self, mut shutdown: Shutdown) {
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!("CA listening on https://{addr} (TLS 1.3)");
        self.spawn_tasks(&shutdown);
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
            let conn = Connection {
                tcp,
                peer,
                acceptor,
                router: self.router.clone(),
                handshake_timeout: self.opts.handshake_timeout,
                _permit: permit,
            };
            // Reap finished connection tasks so the set stays small.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(conn.serve(shutdown.clone()));
        }
        info!("CA shutting down: no longer accepting, draining in-flight requests");
        drain(tasks, self.opts.shutdown_grace).await;
    }
}

/// An accepted TCP connection and what serving it takes.
struct Connection {
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: axum::Router,
    handshake_timeout: Duration,
    /// Held until the connection ends: one of `max_connections`.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// Runs the TLS handshake, then serves HTTP/1.1 requests until the
    /// peer closes or `shutdown` fires, when in-flight requests finish.
    async fn serve(self, mut shutdown: Shutdown) {
        let Connection {
            tcp,
            peer,
            acceptor,
            router,
            handshake_timeout,
            _permit,
        } = self;
        let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
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
        // Renewal authenticates with the TLS client certificate; the
        // handlers see it through this extension.
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
            _ = shutdown.wait() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Waits up to `grace` for the connection tasks to finish, then aborts
/// those still running.
async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    let finished = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finished).await.is_err() {
        warn!("some connections did not finish within the grace period; closing them");
        tasks.abort_all();
    }
}

/// Issues the CA's own TLS certificate and the acceptor presenting it;
/// answers also when it is due for replacement (two thirds of its life).
pub(crate) fn own_acceptor(ca: &Ca, names: &[String]) -> Result<(TlsAcceptor, i64), ServeError> {
    let (cert, key) = ca.issue_service_certificate(names)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(pki_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| pki_common::tls::TlsSetupError::BadIdentity(e.to_string()))?
        .with_client_cert_verifier(Arc::new(RenewalClientVerifier::new(ca.root().cert.clone())))
        .with_single_cert(vec![cert.der.clone()], key)
        .map_err(|e| pki_common::tls::TlsSetupError::BadIdentity(e.to_string()))?;
    let (nb, na) = (cert.info.not_before, cert.info.not_after);
    Ok((TlsAcceptor::from(Arc::new(config)), na - (na - nb) / 3))
}

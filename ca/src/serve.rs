//! The CA's TLS 1.3 listener.
//!
//! The listener presents a certificate the CA issues from its current
//! intermediate at start-up, with that intermediate (leaf first), so
//! callers verify the CA endpoint against `ca.pem` alone like any other
//! server, plus the CA-endpoint EKU only that certificate carries.
//! Connections are capped; on shutdown the listener stops accepting and
//! lets in-flight requests finish within a deadline.
//!
//! A connection holds a slot only while it keeps moving: the TLS handshake
//! has `handshake_timeout`; the wait for a request's headers (the first
//! request, and each one after on a kept-alive connection) and the headers
//! themselves have `request_timeout`, and so does the body after them; a
//! write of the answer that makes no progress for `request_timeout` (the
//! client does not read) fails too. A client that stalls at any point is
//! cut off, so a few hundred stalled connections cannot lock out `/health`
//! for more than one of those bounds.
//!
//! Only the listener lives here. What it verifies of a client certificate
//! is `pki_common::tls::verify::RenewalClientVerifier`; the loops that keep its certificate and the
//! CRL fresh while it runs are in `tasks`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

pub use pki_common::listener::ListenOptions;
use pki_common::listener::{accept_tls, Listener};
use pki_common::metrics::MetricsListener;
use pki_common::shutdown::Shutdown;
use pki_common::tls::verify::RenewalClientVerifier;

use crate::metrics::CaMetrics;
use crate::publish::{PublicListener, PublicSource};
use crate::stall::WriteDeadline;
use crate::Ca;

/// The acceptor presenting the CA's own certificate, when that
/// certificate is due for replacement, and the intermediate that issued
/// it. Shared between the accept loop, which clones the acceptor for each
/// connection, and [`tasks::rotate_own`](crate::tasks), which swaps all
/// three at once.
pub(crate) type OwnAcceptor = Arc<RwLock<(TlsAcceptor, i64, String)>>;

/// How the CA listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address, connection cap, TLS handshake deadline, and the shutdown
    /// grace.
    pub listener: ListenOptions,
    /// How long the CA waits for a request's headers (after the handshake,
    /// or after the previous answer on a kept-alive connection, so it is
    /// also the idle bound), and again for its body after them.
    pub request_timeout: Duration,
    /// Names on the CA's own TLS certificate.
    pub names: Vec<String>,
    pub max_body: usize,
    /// How often the ledger is checked for revocations made by
    /// `pki-ca revoke`, which may run in another process.
    pub crl_poll: Duration,
    /// Where to serve `/metrics` and `/health` in plain HTTP, if anywhere
    /// (see `pki_common::metrics`).
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve the CRLs and issuer certificates that issued
    /// certificates point at (`--http-listen`), in plain HTTP: see
    /// [`crate::publish`].
    pub http_listen: Option<SocketAddr>,
    /// ACME under `/acme/` on the same listener (see [`crate::acme`]);
    /// `None` serves none.
    pub acme: Option<crate::acme::AcmeConfig>,
}

impl ServeOptions {
    /// The CA's defaults, listening on `listen`. The CA serves a handful
    /// of enrollments, not long-lived sessions, so it holds fewer
    /// connections than the application server.
    pub fn on(listen: SocketAddr) -> Self {
        ServeOptions {
            listener: ListenOptions {
                max_connections: 256,
                ..ListenOptions::on(listen)
            },
            request_timeout: crate::http::DEFAULT_REQUEST_TIMEOUT,
            http_listen: None,
            names: crate::reserved::DEFAULT_ENDPOINT_NAMES
                .iter()
                .map(|n| n.to_string())
                .collect(),
            max_body: crate::http::DEFAULT_MAX_BODY,
            crl_poll: Duration::from_secs(1),
            metrics_listen: None,
            acme: Some(crate::acme::AcmeConfig::default()),
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions::on(SocketAddr::from(([127, 0, 0, 1], 8443)))
    }
}

/// Errors starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] pki_common::listener::BindError),
    #[error("cannot prepare the CA's TLS certificate and CRL: {0}")]
    Identity(#[from] crate::CaError),
    #[error(transparent)]
    Tls(#[from] pki_common::tls::TlsSetupError),
    #[error("cannot serve ACME: {0}")]
    Acme(#[from] crate::acme::AcmeSetupError),
}

/// A bound, ready CA listener.
pub struct CaServer {
    ca: Arc<Ca>,
    listener: Listener,
    acceptor: OwnAcceptor,
    router: axum::Router,
    opts: ServeOptions,
    metrics: Arc<CaMetrics>,
    metrics_listener: Option<MetricsListener>,
    public_listener: Option<PublicListener>,
}

impl CaServer {
    /// Binds the listener, then issues the CA's TLS certificate.
    ///
    /// In that order: a port already in use (a second `pki-ca serve`, a
    /// typo in `--listen`) then fails before anything is issued or
    /// recorded in the ledger.
    pub async fn bind(ca: Arc<Ca>, opts: ServeOptions) -> Result<Self, ServeError> {
        let listener = Listener::bind(opts.listener.clone()).await?;
        let metrics_listener = match opts.metrics_listen {
            Some(addr) => Some(MetricsListener::bind(addr).await?),
            None => None,
        };
        let public_listener = match opts.http_listen {
            Some(addr) => Some(PublicListener::bind(addr).await?),
            None => None,
        };
        let own = own_acceptor(&ca, &opts.names)?;
        ca.publish_crl()?;
        let limits = crate::http::BodyLimits {
            max_body: opts.max_body,
            timeout: opts.request_timeout,
        };
        let metrics = Arc::new(CaMetrics::default());
        let acme = match &opts.acme {
            Some(config) => Some(Arc::new(crate::acme::Acme::new(
                ca.clone(),
                config.clone(),
            )?)),
            None => None,
        };
        let router = crate::http::router_counted(ca.clone(), limits, metrics.clone(), acme);
        Ok(CaServer {
            ca,
            listener,
            acceptor: Arc::new(RwLock::new(own)),
            router,
            opts,
            metrics,
            metrics_listener,
            public_listener,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The metrics endpoint's address, if it serves one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|m| m.local_addr().ok())
    }

    /// The plain-HTTP publication endpoint's address, if it serves one.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public_listener
            .as_ref()
            .and_then(|p| p.local_addr().ok())
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
    pub async fn run(self, shutdown: Shutdown) {
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!("CA listening on https://{addr} (TLS 1.3)");
        self.spawn_tasks(&shutdown);
        if let Some(metrics_listener) = self.metrics_listener {
            let endpoint = self
                .metrics
                .endpoint(self.ca.clone(), self.listener.refused_at_cap());
            tokio::spawn(metrics_listener.serve(endpoint, shutdown.clone()));
        }
        if let Some(public) = self.public_listener {
            if let Ok(addr) = public.local_addr() {
                info!("publishing CRLs and issuer certificates on http://{addr} (plain HTTP)");
            }
            let source: Arc<dyn PublicSource> = self.ca.clone();
            tokio::spawn(public.serve(source, shutdown.clone()));
        }
        let (acceptor, router) = (self.acceptor, self.router);
        let timeouts = Timeouts {
            handshake: self.opts.listener.handshake_timeout,
            request: self.opts.request_timeout,
        };
        self.listener
            .serve(shutdown, |tcp, peer, conn_shutdown| {
                // The certificate current at accept time; a rotation
                // applies to later connections.
                let acceptor = acceptor.read().unwrap_or_else(|p| p.into_inner()).0.clone();
                serve_connection(tcp, peer, acceptor, router.clone(), timeouts, conn_shutdown)
            })
            .await;
        info!("CA stopped accepting");
    }
}

/// The bounds on a connection's phases (see the module doc).
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    handshake: Duration,
    request: Duration,
}

/// Runs the TLS handshake, then serves HTTP/1.1 requests until the peer
/// closes or `shutdown` fires, when in-flight requests finish.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: axum::Router,
    timeouts: Timeouts,
    mut shutdown: Shutdown,
) {
    let deadline = tokio::time::Instant::now() + timeouts.handshake;
    let Some(tls) = accept_tls(&acceptor, tcp, peer, deadline).await else {
        return;
    };
    // Renewal authenticates with the TLS client certificate; the handlers
    // see it through this extension.
    let peer_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let service = TowerToHyperService::new(
        router
            .layer(axum::Extension(crate::http::PeerCertificate(peer_cert)))
            .layer(axum::Extension(crate::http::PeerAddr(peer))),
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper arms this timer whenever it waits for a request head: right
        // after the handshake and whenever a kept-alive connection goes
        // idle, so it bounds idle connections too. The body is bounded by
        // the router (`http::read_body_within`).
        .header_read_timeout(timeouts.request)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(tls, timeouts.request)),
            service,
        );
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

/// Issues the CA's own TLS certificate and the acceptor presenting it;
/// answers also when it is due for replacement and which intermediate
/// issued it.
pub(crate) fn own_acceptor(
    ca: &Ca,
    names: &[String],
) -> Result<(TlsAcceptor, i64, String), ServeError> {
    let (cert, key) = ca.issue_service_certificate(names)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let verifier = RenewalClientVerifier::new(ca.root().cert.clone());
    let config = rustls::ServerConfig::builder_with_provider(pki_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| pki_common::tls::TlsSetupError::BadIdentity(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            std::iter::once(cert.der.clone())
                .chain(cert.chain.iter().cloned())
                .collect(),
            key,
        )
        .map_err(|e| pki_common::tls::TlsSetupError::BadIdentity(e.to_string()))?;
    let due = ca.own_renewal_due(&cert.info);
    Ok((TlsAcceptor::from(Arc::new(config)), due, cert.issuer_id))
}

//! `pki-server`: the application server.
//!
//! Phase 1: it makes its own key and enrolls with the CA by CSR (or reuses
//! a still-good certificate), and renews it before it runs out. Phases 2
//! and 3: it serves clients over TLS 1.3, proves its identity inside the
//! application protocol, grants sessions and answers requests under the
//! session keys.
//!
//! # Layout
//! - [`identity`]: phase 1: reuse, renew or enroll.
//! - [`live`]: the certificate and TLS configuration new connections get,
//!   swapped whole on renewal or on a new CRL.
//! - [`connection`]: one connection, steps 3 to 8.
//! - [`tickets`]: the ticket key file shared by the replicas: the keys
//!   that seal and open session tickets, reloaded when the file changes.
//!   The server keeps no session between connections; the client carries
//!   it in its ticket.
//! - [`metrics`]: what `--metrics-listen` serves: counters, gauges and
//!   the health check.
//! - [`service`]: the named requests (`memo`, `whoami`, `echo`).
//! - [`AppServer`]: start-up (phase 1, then bind), the TLS handshake of
//!   each accepted connection, and the background tasks (renewal, CRL
//!   refresh, session sweep). The accept loop, connection cap and graceful
//!   drain are `pki_common::listener`'s, shared with the CA.

pub mod connection;
pub mod identity;
pub mod live;
pub mod metrics;
pub mod service;
pub mod tickets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use pki_common::ca::bootstrap::Fingerprint;
use pki_common::ca::enroll::Retry;
pub use pki_common::listener::ListenOptions;
use pki_common::listener::{accept_tls, Listener};
use pki_common::metrics::MetricsListener;
use pki_common::proto::view::WireView;
use pki_common::shutdown::{Shutdown, ShutdownTrigger};
pub use pki_common::tls::ClientAuth;

use identity::{Enrollment, Identity, IdentityError, IdentityFiles};
use live::{Live, LiveState};
use metrics::ServerMetrics;
use service::Service;
use tickets::TicketKeyStore;

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address, connection cap, the deadline for the TLS handshake and
    /// steps 3 to 6 together, and the shutdown grace.
    pub listener: ListenOptions,
    /// The names the server enrolls for and answers to in step 3; the first
    /// becomes the certificate's subject CN.
    pub names: Vec<String>,
    /// Holds ca.pem, server.key and server.pem, the CRL cache ca.crls.pem
    /// (and the CA's ca.crl.pem, root.crl.pem and intermediates/ when the
    /// CA shares the directory).
    pub certs_dir: PathBuf,
    /// The server's certificate; `None`: `server.pem` in `certs_dir`. Two
    /// servers sharing a directory each need their own.
    pub cert_file: Option<PathBuf>,
    /// The server's private key; `None`: `server.key` in `certs_dir`.
    pub key_file: Option<PathBuf>,
    /// The SHA-256 fingerprint of the CA root: with it, a missing
    /// `ca.pem` is fetched from the CA and kept only if it matches (see
    /// `pki_common::ca::bootstrap`).
    pub root_fingerprint: Option<Fingerprint>,
    pub enrollment: Enrollment,
    /// Whether clients must present a certificate.
    pub client_auth: ClientAuth,
    pub session_lifetime: Duration,
    /// Allowed clock difference from clients' timestamps, in seconds.
    pub skew_secs: u64,
    pub max_frame: usize,
    /// How long a connection may wait for its next frame, and how long a
    /// write may wait for the client to read.
    pub idle_timeout: Duration,
    /// Requests one session may carry on one connection; then the client
    /// registers again (or resumes on a new connection).
    pub max_requests_per_session: u64,
    /// The ticket key file; `None`: `ticket.key` in `certs_dir`, created
    /// if missing. Replicas that resume each other's sessions share it.
    pub ticket_key_file: Option<PathBuf>,
    /// How often the ticket key file is read again (SIGHUP: at once).
    pub ticket_key_poll: Duration,
    /// How often the CRL used for client certificates is refreshed.
    pub crl_refresh: Duration,
    /// How long to wait before retrying a failed renewal.
    pub renew_retry: Duration,
    /// Where to serve `/metrics` and `/health` in plain HTTP, if anywhere
    /// (see `pki_common::metrics`).
    pub metrics_listen: Option<SocketAddr>,
    /// `--wire`: show each frame, the exporter, transcript hashes and key
    /// fingerprints (never a key); see `pki_common::proto::view`.
    pub wire: WireView,
}

impl ServerConfig {
    /// Where the server keeps its root, key and certificate.
    pub fn identity_files(&self) -> IdentityFiles {
        let mut files = IdentityFiles::in_dir(&self.certs_dir);
        if let Some(cert) = &self.cert_file {
            files.cert = cert.clone();
        }
        if let Some(key) = &self.key_file {
            files.key = key.clone();
        }
        files
    }

    /// Where the ticket keys are.
    pub fn ticket_key_path(&self) -> PathBuf {
        self.ticket_key_file
            .clone()
            .unwrap_or_else(|| self.certs_dir.join("ticket.key"))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listener: ListenOptions::on(SocketAddr::from(([127, 0, 0, 1], 9443))),
            names: vec!["app.pki.test".into()],
            certs_dir: PathBuf::from("certs"),
            cert_file: None,
            key_file: None,
            root_fingerprint: None,
            enrollment: Enrollment {
                ca_url: "https://127.0.0.1:8443".into(),
                ca_name: None,
                token: None,
                retry: Retry::default(),
            },
            client_auth: ClientAuth::Optional,
            session_lifetime: Duration::from_secs(3600),
            skew_secs: pki_common::proto::DEFAULT_SKEW_SECS,
            max_frame: pki_common::proto::DEFAULT_MAX_FRAME,
            idle_timeout: Duration::from_secs(60),
            max_requests_per_session: 100_000,
            ticket_key_file: None,
            ticket_key_poll: Duration::from_secs(5),
            crl_refresh: Duration::from_secs(60),
            renew_retry: Duration::from_secs(10),
            metrics_listen: None,
            wire: WireView::default(),
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("phase 1 failed: {0}")]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Tls(#[from] pki_common::tls::TlsSetupError),
    #[error("client certificates are required, but no current CRL is available to check their revocation; start the CA at --ca-url (or put its ca.crl.pem next to the ca.pem in --dir) and try again")]
    NoCrl,
    #[error("this server's certificate {serial} was revoked and could not be replaced ({source}); the server stopped rather than keep presenting it. Mint a token with `pki-ca token --name {name}` and start the server with it")]
    OwnCertificateRevoked {
        /// The revoked certificate's serial, shortened.
        serial: String,
        /// The server's primary name.
        name: String,
        source: IdentityError,
    },
    #[error(transparent)]
    Bind(#[from] pki_common::listener::BindError),
    #[error("cannot use the ticket key: {0}")]
    TicketKey(String),
}

/// What every connection task shares.
pub struct Shared {
    pub config: ServerConfig,
    pub live: LiveState,
    /// The keys that seal and open session tickets.
    pub tickets: Arc<TicketKeyStore>,
    pub service: Service,
    /// What the server counts, for `/metrics`.
    pub metrics: ServerMetrics,
    /// Stops the server from within (see [`Shared::fail`]).
    stop: ShutdownTrigger,
    /// Why the server stopped itself, if it did.
    failure: Mutex<Option<ServerError>>,
}

impl Shared {
    /// The certificate new connections get now.
    pub fn identity(&self) -> Arc<Identity> {
        self.live.current().identity.clone()
    }

    /// Stops the server because it cannot go on serving safely (its own
    /// certificate was revoked and could not be replaced): the listener
    /// stops accepting, open connections drain, and [`AppServer::run`]
    /// answers `error`.
    pub fn fail(&self, error: ServerError) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.stop.trigger();
    }
}

/// A bound application server.
pub struct AppServer {
    listener: Listener,
    shared: Arc<Shared>,
    /// Whether to renew the certificate in the background (servers that
    /// enrolled themselves; not hand-made test identities).
    renews: bool,
    /// Fires when the server stops itself ([`Shared::fail`]).
    stopped: Shutdown,
    /// The `/metrics` and `/health` socket, with `--metrics-listen`.
    metrics_listener: Option<MetricsListener>,
}

impl AppServer {
    /// Phase 1 (reuse, renew or enroll), then binds the listener.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        // Enrollment and the CRL fetched after it share one deadline, so
        // either start order (server or CA first) works in every mode.
        let deadline = tokio::time::Instant::now() + config.enrollment.retry.deadline;
        let files = config.identity_files();
        let root =
            identity::trusted_root(&files, &config.enrollment, config.root_fingerprint.as_ref())
                .await?;
        let mut crl = identity::current_crl(&files, &config.enrollment, &root).await;
        let identity =
            identity::obtain(&files, &config.names, &config.enrollment, crl.as_ref()).await?;
        if crl.is_none() {
            // The CA may have come up while we enrolled. A server that
            // must check client certificates keeps trying until the
            // deadline; one that need not tries once more.
            crl = match config.client_auth {
                ClientAuth::Required => {
                    identity::current_crl_until(&files, &config.enrollment, &root, deadline).await
                }
                ClientAuth::Optional => {
                    identity::current_crl(&files, &config.enrollment, &root).await
                }
            };
        }
        let mut server = Self::bind_with_crl(config, identity, Service::default(), crl).await?;
        server.renews = true;
        Ok(server)
    }

    /// Binds with a given identity and service (tests build their own).
    pub async fn bind(
        config: ServerConfig,
        identity: Identity,
        service: Service,
    ) -> Result<Self, ServerError> {
        let files = config.identity_files();
        let crl = identity::current_crl(&files, &config.enrollment, &identity.root).await;
        Self::bind_with_crl(config, identity, service, crl).await
    }

    async fn bind_with_crl(
        config: ServerConfig,
        identity: Identity,
        service: Service,
        crl: Option<pki_common::revocation::CrlSet>,
    ) -> Result<Self, ServerError> {
        if config.client_auth == ClientAuth::Required && crl.is_none() {
            return Err(ServerError::NoCrl);
        }
        if crl.is_none() {
            warn!("client certificates, if presented, are not checked for revocation: no current CRL yet");
        }
        let live = Live::build(Arc::new(identity), crl, config.client_auth)?;
        let tickets = TicketKeyStore::open(&config.ticket_key_path())
            .map_err(|e| ServerError::TicketKey(e.to_string()))?;
        let listener = Listener::bind(config.listener.clone()).await?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(MetricsListener::bind(addr).await?),
            None => None,
        };
        let (stop, stopped) = pki_common::shutdown::channel();
        Ok(AppServer {
            listener,
            shared: Arc::new(Shared {
                tickets: Arc::new(tickets),
                live: LiveState::new(live),
                config,
                service,
                metrics: ServerMetrics::default(),
                stop,
                failure: Mutex::new(None),
            }),
            renews: false,
            stopped,
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The metrics endpoint's address, if it serves one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|m| m.local_addr().ok())
    }

    /// The shared state (identity, ticket keys, metrics), for inspection.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` fires, then drains. An error if the server
    /// stopped itself instead (see [`Shared::fail`]).
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!(
            "server listening on {addr} (TLS 1.3) as {}; client certificates {}",
            self.shared.config.names.join(", "),
            match self.shared.config.client_auth {
                ClientAuth::Required => "required",
                ClientAuth::Optional => "optional",
            }
        );
        // From here on, `shutdown` is the caller's signal or the server's
        // own decision to stop, whichever comes first.
        let shutdown = either(self.shared.clone(), shutdown, self.stopped.clone());
        tokio::spawn(live::refresh_crl(self.shared.clone(), shutdown.clone()));
        tokio::spawn(
            self.shared
                .tickets
                .clone()
                .watch(self.shared.config.ticket_key_poll, shutdown.clone()),
        );
        if self.renews {
            tokio::spawn(live::keep_renewed(self.shared.clone(), shutdown.clone()));
        }
        if let Some(metrics_listener) = self.metrics_listener {
            let endpoint = ServerMetrics::endpoint(&self.shared, self.listener.refused_at_cap());
            tokio::spawn(metrics_listener.serve(endpoint, shutdown.clone()));
        }
        let shared = self.shared;
        self.listener
            .serve(shutdown, |tcp, peer, conn_shutdown| {
                accept(shared.clone(), tcp, peer, conn_shutdown)
            })
            .await;
        info!("server shut down");
        let failure = shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        failure.map_or(Ok(()), Err)
    }
}

/// A [`Shutdown`] that fires when `outer` or `inner` does (`inner` is the
/// one `shared.stop` fires).
fn either(shared: Arc<Shared>, mut outer: Shutdown, mut inner: Shutdown) -> Shutdown {
    let merged = inner.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = outer.wait() => shared.stop.trigger(),
            _ = inner.wait() => {}
        }
    });
    merged
}

/// One accepted TCP connection: the TLS handshake, then steps 3 to 8.
async fn accept(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, shutdown: Shutdown) {
    // Request and response are one write each: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    // The certificate and TLS config as of this connection: a renewal
    // swaps them for later connections only, and step 4 is signed with the
    // key of the certificate this one presented.
    let live = shared.live.current();
    if let Some(reason) = live.own_revocation() {
        warn!(
            "refused {peer}: this server's certificate {} is revoked ({}); it is not presented while a new one is obtained",
            live.identity.info.short_serial(),
            reason.map(|r| r.as_str()).unwrap_or("no reason given")
        );
        return;
    }
    let deadline = tokio::time::Instant::now() + shared.config.listener.handshake_timeout;
    let acceptor = TlsAcceptor::from(live.tls.clone());
    let Some(stream) = accept_tls(&acceptor, tcp, peer, deadline).await else {
        return;
    };
    // On shutdown the connection finishes the request in hand, then
    // closes; the listener's drain bounds how long that takes.
    connection::serve(
        stream,
        peer,
        shared,
        live.identity.clone(),
        deadline,
        shutdown,
    )
    .await;
}

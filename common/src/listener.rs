//! The accept loop both daemons run: a connection cap, back-off on accept
//! errors, and a graceful drain on shutdown.
//!
//! Like mini-redis's listener, it is bounded by default: a connection over
//! the cap is closed at once (the caller sees the refusal and can retry)
//! rather than queued, and an accept error such as EMFILE pauses the loop
//! with a doubling back-off instead of spinning on a core. On shutdown it
//! stops accepting and gives in-flight connections a grace period, then
//! aborts the rest.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::shutdown::Shutdown;

/// The options every listener has, with the same defaults in both daemons.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub listen: SocketAddr,
    /// Connections served at once; further ones are closed at once.
    pub max_connections: usize,
    /// How long the TLS handshake may take (for the application server,
    /// the handshake and steps 3 to 6 together).
    pub handshake_timeout: Duration,
    /// How long in-flight connections get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl ListenOptions {
    /// The defaults for a listener on `listen`.
    pub fn on(listen: SocketAddr) -> Self {
        ListenOptions {
            listen,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The first pause after a failed accept; doubled on each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between accept attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The listening address could not be bound (in use, not permitted).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{}", bind_hint(.source))]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// What to do about a failed bind, after the `"; "` of the hint
/// convention (`crate::cli`); both daemons take the address as `--listen`.
fn bind_hint(source: &std::io::Error) -> &'static str {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another program is already listening there: stop it, or pass a free address with --listen"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need privileges: pass another address with --listen"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; this host has no such address: pass one of its own with --listen (e.g. 127.0.0.1:8443)"
        }
        _ => "",
    }
}

/// A bound listening socket with its limits.
pub struct Listener {
    tcp: TcpListener,
    opts: ListenOptions,
    /// Connections closed at once because the cap was reached; a daemon
    /// registers it with its metrics ([`Listener::refused_at_cap`]).
    refused: Counter,
}

impl Listener {
    /// Binds `opts.listen`.
    pub async fn bind(opts: ListenOptions) -> Result<Self, BindError> {
        let tcp = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| BindError {
                addr: opts.listen,
                source,
            })?;
        Ok(Listener {
            tcp,
            opts,
            refused: Counter::default(),
        })
    }

    /// The count of connections refused at the cap: a handle to the
    /// listener's own counter, for the daemon's metrics registry.
    pub fn refused_at_cap(&self) -> Counter {
        self.refused.clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn options(&self) -> &ListenOptions {
        &self.opts
    }

    /// Accepts until `shutdown` fires, running `handle` for each connection
    /// in its own task while a connection slot is held; then drains.
    /// `handle` gets its own [`Shutdown`] so it can finish the request in
    /// hand and close.
    pub async fn serve<F, Fut>(self, mut shutdown: Shutdown, mut handle: F)
    where
        F: FnMut(TcpStream, SocketAddr, Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let limit = Arc::new(Semaphore::new(self.opts.max_connections));
        let mut tasks = JoinSet::new();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = self.tcp.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => {
                    backoff = FIRST_BACKOFF;
                    a
                }
                Err(e) => {
                    warn!("accept failed: {e}; pausing {backoff:?} before accepting again");
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                self.refused.inc();
                warn!(
                    "refused {peer}: connection limit ({}) reached",
                    self.opts.max_connections
                );
                drop(tcp);
                continue;
            };
            // Reap finished connection tasks so the set stays small.
            while tasks.try_join_next().is_some() {}
            let conn = handle(tcp, peer, shutdown.clone());
            tasks.spawn(async move {
                let _permit = permit;
                conn.await;
            });
        }
        info!("no longer accepting; draining in-flight connections");
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

/// The TLS handshake of an accepted connection, bounded by `deadline`;
/// `None` (logged) if it fails or runs out of time. A bare connect-and-close
/// (a readiness probe) or a timeout is only worth a debug line; a refused
/// certificate or a protocol error is worth a warning.
pub async fn accept_tls(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            debug!("TLS handshake with {peer} failed: {e}");
            None
        }
        Ok(Err(e)) => {
            warn!("TLS handshake with {peer} failed: {e}");
            None
        }
        Err(_) => {
            debug!("TLS handshake with {peer} timed out");
            None
        }
    }
}

//! Prometheus metrics and a health check, served by both daemons on
//! `--metrics-listen`.
//!
//! Each daemon registers its own metrics in a [`Registry`] and hands it to
//! [`MetricsListener::serve`], which answers two plain-HTTP endpoints:
//!
//! - `GET /metrics`: every registered metric, in the OpenMetrics text
//!   format Prometheus scrapes;
//! - `GET /health`: `200 ok …` while the daemon can do its job, `503` and
//!   the reason otherwise.
//!
//! Plain HTTP, no authentication: the numbers reveal load and failure
//! rates, nothing secret, but they are meant for a local scraper. The
//! endpoint is therefore off unless asked for, and a non-loopback address
//! is served with a warning.
//!
//! The metrics crate is `prometheus-client` (the Prometheus project's own):
//! it only encodes, so the HTTP side is the axum the CA already uses and no
//! second TLS or crypto stack enters the tree.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::histogram::exponential_buckets;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
pub use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::listener::BindError;
use crate::shutdown::Shutdown;

/// A label set: name–value pairs, e.g. `[("code", "token_used")]`.
pub type Labels = Vec<(String, String)>;

/// One label, as a [`Labels`] set.
pub fn label(name: &str, value: impl Into<String>) -> Labels {
    vec![(name.to_string(), value.into())]
}

/// Buckets for a latency histogram: 1 ms to about 16 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// What `/health` answers: `Ok(detail)` for 200, `Err(reason)` for 503.
pub type HealthCheck = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Runs before each scrape, to set the gauges that are read rather than
/// counted (sessions held, the CRL's age).
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

/// What the endpoint serves.
#[derive(Clone)]
pub struct MetricsEndpoint {
    pub registry: Arc<Registry>,
    pub before_scrape: BeforeScrape,
    pub health: HealthCheck,
}

/// The bound metrics socket. Bound at start-up with the daemon's main
/// listener, so a taken port stops the daemon before it serves anything.
pub struct MetricsListener {
    tcp: TcpListener,
}

impl MetricsListener {
    /// Binds `addr`; warns if it is not a loopback address.
    pub async fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        if !addr.ip().is_loopback() {
            warn!("metrics on {addr} are plain HTTP without authentication and reachable from other hosts; prefer a loopback address (127.0.0.1) and a local scraper");
        }
        Ok(MetricsListener { tcp })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves `/metrics` and `/health` until `shutdown` fires.
    pub async fn serve(self, endpoint: MetricsEndpoint, mut shutdown: Shutdown) {
        if let Ok(addr) = self.local_addr() {
            info!("metrics on http://{addr}/metrics, health on http://{addr}/health");
        }
        let router = Router::new()
            .route("/metrics", get(scrape))
            .route("/health", get(health))
            .with_state(endpoint);
        let served = axum::serve(self.tcp, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = served {
            warn!("the metrics endpoint stopped: {e}");
        }
    }
}

async fn scrape(axum::extract::State(endpoint): axum::extract::State<MetricsEndpoint>) -> Response {
    (endpoint.before_scrape)();
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &endpoint.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        )
            .into_response(),
    }
}

async fn health(axum::extract::State(endpoint): axum::extract::State<MetricsEndpoint>) -> Response {
    match (endpoint.health)() {
        Ok(detail) => (StatusCode::OK, format!("ok: {detail}\n")).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}\n"),
        )
            .into_response(),
    }
}

//! The application server's metrics and health, served on `pki-server
//! --metrics-listen`.
//!
//! Counted where they happen: a connection counts the sessions it grants
//! and resumes, the requests it answers (by status) and the alerts it
//! sends (by code); the listener counts connections refused at its cap.
//! The CRL's number and age are read at each scrape.

use std::sync::Arc;

use pki_common::metrics::{label, Counter, Family, Gauge, Labels, MetricsEndpoint, Registry};
use pki_common::proto::message::Status;
use pki_common::proto::AlertCode;

use crate::Shared;

/// Everything the server counts.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub sessions_granted: Counter,
    /// Sessions resumed on a new connection with their ticket (step 3R).
    pub sessions_resumed: Counter,
    /// Requests answered, by `status` (`ok`, `not_found`, `bad_request`).
    pub requests: Family<Labels, Counter>,
    /// Alerts sent to clients, by `code` (`Replayed`, `Busy`, …).
    pub alerts: Family<Labels, Counter>,
    crl_number: Gauge,
    crl_age_seconds: Gauge,
}

impl ServerMetrics {
    /// Counts one answered request.
    pub fn count_request(&self, status: Status) {
        let status = match status {
            Status::Ok => "ok",
            Status::NotFound => "not_found",
            Status::BadRequest => "bad_request",
        };
        self.requests.get_or_create(&label("status", status)).inc();
    }

    /// Counts one alert sent.
    pub fn count_alert(&self, code: AlertCode) {
        self.alerts
            .get_or_create(&label("code", code.to_string()))
            .inc();
    }

    /// The `/metrics` and `/health` endpoint over `shared`, with the
    /// listener's `refused_at_cap` counter.
    pub fn endpoint(shared: &Arc<Shared>, refused_at_cap: Counter) -> MetricsEndpoint {
        let metrics = &shared.metrics;
        let mut registry = Registry::with_prefix("pki_server");
        registry.register(
            "sessions_granted",
            "Sessions granted (step 6)",
            metrics.sessions_granted.clone(),
        );
        registry.register(
            "sessions_resumed",
            "Sessions resumed on a new connection with their ticket (step 3R)",
            metrics.sessions_resumed.clone(),
        );
        registry.register(
            "requests",
            "Requests answered (step 8), by status",
            metrics.requests.clone(),
        );
        registry.register(
            "alerts",
            "Alerts sent to clients, by code",
            metrics.alerts.clone(),
        );
        registry.register(
            "crl_number",
            "Number of the CRL client certificates are checked against (0: none)",
            metrics.crl_number.clone(),
        );
        registry.register(
            "crl_age_seconds",
            "Seconds since that CRL's thisUpdate",
            metrics.crl_age_seconds.clone(),
        );
        registry.register(
            "connections_refused_at_cap",
            "Connections closed at once because --max-connections were open",
            refused_at_cap,
        );
        let (scraped, checked) = (shared.clone(), shared.clone());
        MetricsEndpoint {
            registry: Arc::new(registry),
            before_scrape: Arc::new(move || scraped.metrics.read(&scraped)),
            health: Arc::new(move || health(&checked)),
        }
    }

    /// Sets the gauges from the CRLs in use. (There is no session count:
    /// the server holds no session between connections.)
    fn read(&self, shared: &Shared) {
        // The number of the CRL that covers the server's own certificate
        // (its issuer's), and the age of the oldest CRL in use.
        let live = shared.live.current();
        if let Some(crls) = &live.crls {
            let now = pki_common::unix_now() as i64;
            if let Some(crl) = crls.covering(&live.identity.cert).or(crls.iter().next()) {
                self.crl_number
                    .set(i64::try_from(crl.number).unwrap_or(i64::MAX));
            }
            let oldest = crls.iter().map(|c| c.this_update).min().unwrap_or(now);
            self.crl_age_seconds.set(now.saturating_sub(oldest));
        }
    }
}

/// Healthy while the server presents a certificate it may present: not
/// revoked, not expired.
fn health(shared: &Shared) -> Result<String, String> {
    let live = shared.live.current();
    let info = &live.identity.info;
    if let Some(reason) = live.own_revocation() {
        return Err(format!(
            "this server's certificate {} is revoked ({}); it is being replaced, or the server needs a new token",
            info.short_serial(),
            reason.map(|r| r.as_str()).unwrap_or("no reason given")
        ));
    }
    if pki_common::unix_now() as i64 >= info.not_after {
        return Err(format!(
            "this server's certificate {} expired at {}",
            info.short_serial(),
            info.not_after_rfc3339()
        ));
    }
    Ok(format!(
        "serving as {}; certificate {} valid until {}; {}",
        shared.config.names.join(", "),
        info.short_serial(),
        info.not_after_rfc3339(),
        match &live.crls {
            Some(crls) => format!("CRLs {}", crls.numbers()),
            None => "no CRL".to_string(),
        }
    ))
}

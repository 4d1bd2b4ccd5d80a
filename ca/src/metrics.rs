//! The CA's metrics, served on `pki-ca serve --metrics-listen`.
//!
//! Counted where they happen: the API counts what it issued and refused
//! (by the refusal's stable code, the `error` of the JSON problem
//! document) and times each issuance; the listener counts connections
//! refused at its cap; the CA counts each pre-issuance lint that failed
//! (`lint_failures`, by `lint`), whichever path issued. The CRL's number
//! and age are read from the CRL being served at each scrape.

use std::sync::Arc;

use pki_common::metrics::{
    label, latency_histogram, Counter, Family, Gauge, Histogram, Labels, MetricsEndpoint, Registry,
};

use crate::Ca;

/// Everything the CA counts.
#[derive(Debug)]
pub struct CaMetrics {
    /// Certificates issued, by `operation` (`enroll`, `renew`).
    pub issued: Family<Labels, Counter>,
    /// Requests refused, by `code` (`token_used`, `name_not_authorized`,
    /// `body_too_large`, `not_found`, …).
    pub refused: Family<Labels, Counter>,
    /// How long an issuance took, from the complete request to the signed
    /// and recorded certificate (token check, CSR check, signing, ledger
    /// commit).
    pub issuance_seconds: Histogram,
    crl_number: Gauge,
    crl_age_seconds: Gauge,
    crl_next_update: Gauge,
}

impl Default for CaMetrics {
    fn default() -> Self {
        CaMetrics {
            issued: Family::default(),
            refused: Family::default(),
            issuance_seconds: latency_histogram(),
            crl_number: Gauge::default(),
            crl_age_seconds: Gauge::default(),
            crl_next_update: Gauge::default(),
        }
    }
}

impl CaMetrics {
    /// Counts one certificate issued by `operation`, which took `seconds`.
    pub fn count_issued(&self, operation: &str, seconds: f64) {
        self.issued
            .get_or_create(&label("operation", operation))
            .inc();
        self.issuance_seconds.observe(seconds);
    }

    /// Counts one request refused with `code`.
    pub fn count_refused(&self, code: &str) {
        self.refused.get_or_create(&label("code", code)).inc();
    }

    /// The `/metrics` and `/health` endpoint over these metrics, the CRL
    /// `ca` serves, and the listener's `refused_at_cap` counter.
    pub fn endpoint(self: &Arc<Self>, ca: Arc<Ca>, refused_at_cap: Counter) -> MetricsEndpoint {
        let mut registry = Registry::with_prefix("pki_ca");
        registry.register(
            "certificates_issued",
            "Certificates issued, by operation (enroll, renew)",
            self.issued.clone(),
        );
        registry.register(
            "requests_refused",
            "API requests refused, by the code of the JSON problem document",
            self.refused.clone(),
        );
        registry.register(
            "issuance_duration_seconds",
            "Time to check, sign and record one certificate",
            self.issuance_seconds.clone(),
        );
        registry.register(
            "crl_number",
            "Number of the CRL being served",
            self.crl_number.clone(),
        );
        registry.register(
            "crl_age_seconds",
            "Seconds since the served CRL's thisUpdate",
            self.crl_age_seconds.clone(),
        );
        registry.register(
            "crl_next_update_timestamp_seconds",
            "The served CRL's nextUpdate, Unix seconds",
            self.crl_next_update.clone(),
        );
        registry.register(
            "lint_failures",
            "Certificates the CA refused to issue because a pre-issuance lint failed, by lint",
            ca.lint_failure_family().clone(),
        );
        registry.register(
            "connections_refused_at_cap",
            "Connections closed at once because --max-connections were open",
            refused_at_cap,
        );
        let (metrics, health_ca) = (self.clone(), ca.clone());
        MetricsEndpoint {
            registry: Arc::new(registry),
            before_scrape: Arc::new(move || metrics.read_crl(&ca)),
            health: Arc::new(move || health(&health_ca)),
        }
    }

    /// Sets the CRL gauges from the CRL being served.
    fn read_crl(&self, ca: &Ca) {
        if let Some(crl) = ca.current_crl() {
            let now = pki_common::unix_now() as i64;
            self.crl_number
                .set(i64::try_from(crl.number).unwrap_or(i64::MAX));
            self.crl_age_seconds
                .set(now.saturating_sub(crl.this_update));
            self.crl_next_update.set(crl.next_update);
        }
    }
}

/// Healthy while a current CRL is served: the CA has its root and ledger
/// (it would not run otherwise) and parties can check revocation.
fn health(ca: &Ca) -> Result<String, String> {
    let now = pki_common::unix_now() as i64;
    match ca.current_crl() {
        Some(crl) if now < crl.next_update => Ok(format!(
            "serving; CRL #{} current until {}",
            crl.number,
            pki_common::cert::rfc3339(crl.next_update)
        )),
        Some(crl) => Err(format!(
            "the served CRL #{} expired at {}; check the CA's log for why it was not refreshed",
            crl.number,
            pki_common::cert::rfc3339(crl.next_update)
        )),
        None => Err("no CRL published yet".into()),
    }
}

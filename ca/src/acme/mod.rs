//! ACME (RFC 8555): certificates for any standard client (certbot, lego,
//! acme.sh, Caddy, Traefik, cert-manager), served next to the CA's own API
//! on the same HTTPS listener, under `/acme/`.
//!
//! ACME only decides *who* may have a certificate for a name: the account
//! that proves control of it by `http-01` or `tls-alpn-01`. *What* is
//! issued is the CA's: finalize goes through the one decide–sign–record
//! path every certificate takes ([`Ca::issue_for_order`]), so an ACME
//! certificate has the same policy, ledger record, revocation and CRL as
//! one from `/v1/sign`.
//!
//! - [`jws`]: the signed requests; the signature arithmetic is ring's.
//! - [`problem`]: the RFC 7807 error documents.
//! - [`model`]: accounts, orders, authorizations, challenges, statuses.
//! - [`store`]: where they live: the ledger's database, so they survive a
//!   restart and every replica on one database shares them.
//! - `request`: what every POST goes through: JWS, URL, nonce, key.
//! - `resources`: the handlers, one per resource.
//! - `validate`: fetching the challenge responses.
//! - `eab`: external account binding keys (`pki-ca eab`).

pub mod eab;
pub mod jws;
pub mod model;
mod orders;
pub mod problem;
mod request;
mod resources;
pub mod store;
mod validate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::Ca;
pub use resources::router;

/// How long a nonce stays usable.
pub const NONCE_LIFETIME_SECS: i64 = 3600;
/// How long an order (and its pending authorizations) may take.
pub const ORDER_LIFETIME_SECS: i64 = 7 * 24 * 3600;
/// How long a validated authorization stays valid.
pub const VALID_AUTHZ_LIFETIME_SECS: i64 = 30 * 24 * 3600;
/// The window of the rate limits.
pub const RATE_WINDOW_SECS: i64 = 3600;

/// What `pki-ca serve` is told about ACME.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// DNS suffixes (a name is allowed if it is one, or ends in `.` and
    /// one) and IP addresses that ACME may issue for. Empty: none.
    pub allow: Vec<String>,
    /// Where `http-01` is fetched (80 by default).
    pub http_port: u16,
    /// Where `tls-alpn-01` connects (443 by default).
    pub tls_port: u16,
    /// Name-to-address overrides for validation, as Pebble's
    /// configuration has, so tests need no DNS.
    pub resolve: HashMap<String, IpAddr>,
    /// Whether a new account must bring an external account binding.
    pub eab_required: bool,
    /// New orders per account per hour.
    pub orders_per_hour: u32,
    /// Certificates per name per hour.
    pub certs_per_name_per_hour: u32,
    /// The bound on one validation attempt (connect, TLS, answer).
    pub validation_timeout: Duration,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            allow: Vec::new(),
            http_port: 80,
            tls_port: 443,
            resolve: HashMap::new(),
            eab_required: false,
            orders_per_hour: 300,
            certs_per_name_per_hour: 50,
            validation_timeout: Duration::from_secs(10),
        }
    }
}

impl AcmeConfig {
    /// Whether `--acme-allow` covers the identifier.
    pub fn allows(&self, kind: &str, value: &str) -> bool {
        self.allow.iter().any(|a| match kind {
            "ip" => a.parse::<IpAddr>().ok() == value.parse::<IpAddr>().ok(),
            _ => {
                let a = a.trim_start_matches('.').to_ascii_lowercase();
                !a.is_empty() && (value == a || value.ends_with(&format!(".{a}")))
            }
        })
    }
}

/// The ACME service: the CA, its configuration and its EAB master key.
pub struct Acme {
    ca: Arc<Ca>,
    config: AcmeConfig,
    eab: Option<eab::EabMaster>,
}

/// Why ACME could not start.
#[derive(Debug, thiserror::Error)]
pub enum AcmeSetupError {
    #[error("this CA's ledger keeps no ACME state, so it cannot serve ACME")]
    NoStore,
    #[error(
        "--acme-eab-required, but no external account key was ever minted: run `pki-ca eab` first"
    )]
    NoEabKey,
    #[error(transparent)]
    Eab(#[from] eab::EabError),
}

impl Acme {
    pub fn new(ca: Arc<Ca>, config: AcmeConfig) -> Result<Self, AcmeSetupError> {
        if ca.ledger().acme().is_none() {
            return Err(AcmeSetupError::NoStore);
        }
        let eab = eab::EabMaster::load(ca.paths())?;
        if config.eab_required && eab.is_none() {
            return Err(AcmeSetupError::NoEabKey);
        }
        Ok(Acme { ca, config, eab })
    }

    /// The ACME store. `new` checked the ledger has one and the ledger
    /// never changes, so the error cannot happen; it is an error rather
    /// than a panic all the same.
    fn store(&self) -> Result<&dyn store::AcmeStore, crate::ledger::LedgerError> {
        self.ca.ledger().acme().ok_or_else(|| {
            crate::ledger::LedgerError::Unavailable("this CA's ledger keeps no ACME state".into())
        })
    }
}

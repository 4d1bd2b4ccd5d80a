//! The ledger: every token and every certificate this CA has issued.
//!
//! A certificate is committed here before it is returned to anyone, in the
//! same transaction that consumes its token, so no certificate ever leaves
//! the CA unrecorded and no token works twice. The serial is the primary
//! key, so a serial can never repeat.
//!
//! Storage sits behind the narrow [`Ledger`] trait; [`SqliteLedger`] is the
//! embedded implementation. A networked database for several CA replicas
//! would be a second implementation of the same ten operations (eight to
//! write: [`Ledger::add_tokens`] and [`Ledger::renewed_by`] have defaults):
//! tokens (add, look up), certificates (record an issuance, list, look up,
//! find the renewal of one, revoke), and the two counters behind the CRL
//! (the revision, the next CRL number).
//!
//! # Renewal chains
//! A certificate renews at most once, and revoking one revokes every
//! certificate renewed from it, transitively. Both rules are decided inside
//! the write transaction (see [`Ledger::record_issuance`] and
//! [`Ledger::revoke`]), so that no interleaving of a renewal and a
//! revocation, in this process or another, leaves a renewed certificate
//! valid while its ancestor is revoked: otherwise a stolen key could renew
//! itself into certificates its revocation does not reach.

mod migrate;
pub(crate) mod postgres;
mod postgres_acme;
mod sqlite;
mod sqlite_acme;

pub use migrate::{migrate_sqlite_to_postgres, MigrationReport};
pub use postgres::PgLedger;
pub use sqlite::SqliteLedger;

use crate::token::TokenGrant;
use pki_common::cert::Profile;
use pki_common::revocation::Reason;

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the ledger could not commit: {0}")]
    CommitFailed(String),
    #[error("the token was used by a concurrent request")]
    TokenAlreadyUsed,
    #[error("the ledger holds a malformed record: {0}")]
    Corrupt(String),
    #[error("no certificate with serial {0} in the ledger; `pki-ca list` shows them all")]
    NoSuchSerial(String),
    #[error("certificate {serial} is already revoked ({reason}, at {at})")]
    AlreadyRevoked {
        serial: String,
        reason: Reason,
        at: String,
    },
    #[error("certificate {serial} was already renewed, as {by}; a certificate renews only once")]
    AlreadyRenewed { serial: String, by: String },
    #[error("certificate {serial} was revoked ({reason}) while its renewal was under way")]
    RevokedMeanwhile { serial: String, reason: Reason },
    #[error("the key is already the key of another ACME account")]
    KeyInUse,
    #[error("ACME order {0} is no longer being finalized (it expired or failed meanwhile)")]
    OrderNotProcessing(String),
    #[error("PostgreSQL refused a ledger statement: {0}")]
    Pg(String),
    /// The database cannot be reached now (refused, closed, timed out);
    /// the API answers 503 `ledger_unavailable` with `Retry-After`.
    #[error("the ledger database cannot be reached: {0}")]
    Unavailable(String),
    #[error("the ledger's schema is version {found}, newer than this pki-ca knows ({known}): a newer pki-ca wrote it; run that version, or upgrade this one")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("bad ledger URL {0}; expected postgres://user[:password]@host[:port]/database")]
    BadUrl(String),
}

/// The ledger schema version this pki-ca writes and reads, the same for
/// both backends: SQLite's `user_version`, PostgreSQL's `schema_version`
/// table. A ledger at a higher version is refused
/// ([`LedgerError::SchemaTooNew`]) rather than misread.
pub const SCHEMA_VERSION: i64 = 4;

/// Where the ledger is: `None` for the SQLite file in the CA's directory,
/// or a `postgres://` URL (`--ledger`, `PKI_LEDGER_URL`), with the roots
/// to verify the database's TLS certificate against (`--ledger-ca`).
pub fn open(
    sqlite_path: &std::path::Path,
    url: Option<&str>,
    tls: Option<rustls::ClientConfig>,
) -> Result<std::sync::Arc<dyn Ledger>, LedgerError> {
    match url {
        None => Ok(std::sync::Arc::new(SqliteLedger::open(sqlite_path)?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(std::sync::Arc::new(PgLedger::connect(url, tls)?))
        }
        Some(other) => Err(LedgerError::BadUrl(other.to_string())),
    }
}

/// A revocation as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    pub reason: Reason,
    /// Seconds since the Unix epoch.
    pub revoked_at: i64,
}

/// A certificate as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedRecord {
    pub serial_hex: String,
    pub names: Vec<String>,
    pub profile: Profile,
    pub not_before: i64,
    pub not_after: i64,
    /// The token that authorized it; `None` for the CA's own TLS
    /// certificate.
    pub token_id: Option<String>,
    pub issued_at: i64,
    pub der: Vec<u8>,
    pub revoked: Option<Revocation>,
    /// The serial of the certificate this one renewed, if any.
    pub renewed_from: Option<String>,
    /// The id of the intermediate that signed it; `root` for a certificate
    /// the root signed itself (before the hierarchy: every row of an older
    /// ledger).
    pub issuer_id: String,
    /// The ACME order it was issued for, if any: the ledger marks that
    /// order valid in the same transaction, and the order's account may
    /// revoke it.
    pub acme_order: Option<String>,
}

/// An intermediate as the ledger keeps it: issued where the root key is,
/// revoked there too (the root CRL lists it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntermediateRecord {
    pub id: String,
    pub serial_hex: String,
    pub der: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub revoked: Option<Revocation>,
}

impl IntermediateRecord {
    /// The record of the intermediate `id`, certificate `der`.
    pub fn new(id: &str, der: &[u8], info: &pki_common::cert::CertInfo) -> Self {
        IntermediateRecord {
            id: id.to_string(),
            serial_hex: info.serial_hex.clone(),
            der: der.to_vec(),
            not_before: info.not_before,
            not_after: info.not_after,
            revoked: None,
        }
    }
}

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Valid,
    Expired,
    Revoked(Reason),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Valid => f.write_str("valid"),
            Status::Expired => f.write_str("expired"),
            Status::Revoked(reason) => write!(f, "revoked ({reason})"),
        }
    }
}

impl IssuedRecord {
    /// The certificate's status at `now`; revocation outranks expiry.
    pub fn status(&self, now: i64) -> Status {
        match self.revoked {
            Some(r) => Status::Revoked(r.reason),
            None if now >= self.not_after => Status::Expired,
            None => Status::Valid,
        }
    }
}

/// The operations the CA needs from storage.
pub trait Ledger: Send + Sync {
    /// Stores a new token grant.
    fn add_token(&self, grant: &TokenGrant) -> Result<(), LedgerError>;
    /// Stores several grants at once; all or none.
    fn add_tokens(&self, grants: &[TokenGrant]) -> Result<(), LedgerError> {
        grants.iter().try_for_each(|g| self.add_token(g))
    }
    /// Looks a token grant up by its public id.
    fn token(&self, id: &str) -> Result<Option<TokenGrant>, LedgerError>;
    /// Records an issued certificate and, in the same transaction, marks
    /// `token_id` used. Fails with [`LedgerError::TokenAlreadyUsed`] if the
    /// token was used meanwhile; then nothing is recorded.
    ///
    /// A renewal (`record.renewed_from` set) is checked in the same
    /// transaction: it fails with [`LedgerError::AlreadyRenewed`] if the
    /// certificate it renews was renewed before, and with
    /// [`LedgerError::RevokedMeanwhile`] if that certificate, or any it was
    /// renewed from, is revoked. So of two concurrent renewals of one
    /// certificate exactly one is recorded, and a renewal racing a
    /// revocation either lands before it (and is revoked with it) or fails.
    fn record_issuance(
        &self,
        record: &IssuedRecord,
        token_id: Option<&str>,
    ) -> Result<(), LedgerError>;
    /// Every issued certificate, oldest first.
    fn certificates(&self) -> Result<Vec<IssuedRecord>, LedgerError>;
    /// One certificate by serial (lower-case hex).
    fn certificate(&self, serial: &str) -> Result<Option<IssuedRecord>, LedgerError>;
    /// The serial of the certificate renewed from `serial`, if it was
    /// renewed. (The default reads every record; a store with an index on
    /// `renewed_from` answers directly.)
    fn renewed_by(&self, serial: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .certificates()?
            .into_iter()
            .find(|r| r.renewed_from.as_deref() == Some(serial))
            .map(|r| r.serial_hex))
    }
    /// Revokes the certificate with `serial` (lower-case hex) and, in the
    /// same transaction, every certificate renewed from it, transitively,
    /// with the same reason and time. Committed before it returns.
    ///
    /// Revoking a certificate that is already revoked fails with
    /// [`LedgerError::AlreadyRevoked`], unless a certificate renewed from
    /// it is not yet revoked (a ledger written before renewals were
    /// revoked with their origin): then those are revoked.
    fn revoke(&self, serial: &str, revocation: Revocation) -> Result<(), LedgerError>;
    /// A counter that changes with every revocation, so a running CA can
    /// tell that its CRL is out of date.
    fn revision(&self) -> Result<i64, LedgerError>;
    /// The next CRL number: increases by one on every call and never
    /// repeats, across restarts too.
    fn next_crl_number(&self) -> Result<u64, LedgerError>;
    /// The next CRL number of the intermediate `issuer`: strictly
    /// increasing for that issuer. (The default shares one counter among
    /// every issuer, which is strictly increasing for each of them too.)
    fn next_crl_number_of(&self, issuer: &str) -> Result<u64, LedgerError> {
        let _ = issuer;
        self.next_crl_number()
    }
    /// Where the ACME state is kept, if this ledger keeps it (`None`: the
    /// CA serves no ACME).
    fn acme(&self) -> Option<&dyn crate::acme::store::AcmeStore> {
        None
    }
}

pub(crate) fn names_to_json(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn names_from_json(s: &str) -> Result<Vec<String>, LedgerError> {
    serde_json::from_str(s).map_err(|e| LedgerError::Corrupt(format!("names {s:?}: {e}")))
}

pub(crate) fn profile_from(s: &str) -> Result<Profile, LedgerError> {
    s.parse().map_err(LedgerError::Corrupt)
}

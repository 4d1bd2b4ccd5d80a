//! The errors the CA's operations answer.
//!
//! Two types, split by audience: [`CaError`] is for the operator (opening
//! the CA, minting tokens, revoking, publishing CRLs), [`SignError`] for a
//! network caller asking for a certificate. Every [`SignError`] carries a
//! stable [`code`](SignError::code), because clients act on the code, not
//! on the sentence, which may be reworded.

use pki_common::cert::Profile;
use pki_common::revocation::Reason;

use crate::authority::AuthorityError;
use crate::ledger::LedgerError;
use crate::lint::LintFailure;
use crate::policy::PolicyError;
use crate::reserved::NameReserved;
use crate::token::TokenError;

/// Errors opening the CA or minting tokens.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("a token needs at least one --name")]
    NoNames,
    #[error(transparent)]
    File(#[from] pki_common::files::FileError),
    #[error("invalid serial {0:?}: expected hex digits, as `pki-ca list` prints them")]
    BadSerial(String),
    #[error(transparent)]
    NameReserved(#[from] NameReserved),
    /// The certificate the CA would have issued broke its own profile.
    #[error(transparent)]
    Lint(#[from] LintFailure),
    /// The CRL was signed and is served, but its file could not be
    /// written: the file is behind, the served CRL is not. Kept apart from
    /// [`CaError::File`] so that callers can tell "nothing was published"
    /// from "published, but the file is stale".
    #[error("CRL #{number} is signed and served at /v1/crl by a serving CA, but {path} could not be written ({source}); the file keeps an older CRL until it can be written: fix the path or free disk space (a serving CA retries every poll)")]
    CrlFile {
        number: u64,
        path: String,
        source: pki_common::files::FileError,
    },
}

/// Why a signing request was refused. Each maps to one HTTP status and one
/// stable error code in [`http`](crate::http).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no enrollment token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("the CA cannot record the certificate, so it will not issue it: {0}")]
    Ledger(LedgerError),
    #[error("the CA failed to sign: {0}")]
    Authority(#[from] AuthorityError),
    #[error("renewal needs the certificate to renew, presented as the TLS client certificate")]
    NoClientCertificate,
    #[error("certificate {0} was not issued by this CA")]
    UnknownCertificate(String),
    #[error("certificate {serial} is revoked ({reason}) and cannot renew; it needs a new token: `pki-ca token`, then enroll again")]
    RenewRevoked { serial: String, reason: Reason },
    #[error("certificate {0} has expired and cannot renew; it needs a new token: `pki-ca token`, then enroll again")]
    RenewExpired(String),
    #[error(transparent)]
    NameReserved(#[from] NameReserved),
    #[error("certificate {serial} was already renewed, as {by}; a certificate renews only once, so renew {by} instead (or, if it was lost, get a new token: `pki-ca token`, then enroll again)")]
    AlreadyRenewed { serial: String, by: String },
    #[error("the token is for a {token} certificate, but the request asks for a {requested} certificate; nothing was issued and the token is still usable: enroll with the {token} profile, or ask for a {requested} token (`pki-ca token --profile {requested}`)")]
    ProfileMismatch { token: Profile, requested: Profile },
    #[error("bad query {0:?}: POST /v1/sign takes one parameter, profile=server or profile=client, at most once")]
    BadProfile(String),
    /// The certificate the CA would have issued broke its own profile: the
    /// CA's fault, the one deliberate 500 (`lint_failed`).
    #[error(transparent)]
    Lint(#[from] LintFailure),
}

impl SignError {
    /// The stable, machine-readable code sent as `error`.
    pub fn code(&self) -> &'static str {
        match self {
            SignError::MissingToken => "missing_token",
            SignError::Token(TokenError::Malformed) => "malformed_token",
            SignError::Token(TokenError::Unknown) => "unknown_token",
            SignError::Token(TokenError::Expired { .. }) => "token_expired",
            SignError::Token(TokenError::Used { .. }) => "token_used",
            SignError::Policy(PolicyError::Unparseable(_)) => "bad_csr",
            SignError::Policy(PolicyError::BadSignature) => "bad_csr_signature",
            SignError::Policy(PolicyError::UnsupportedKey(_)) => "unsupported_key",
            SignError::Policy(PolicyError::NameNotAuthorized { .. }) => "name_not_authorized",
            SignError::Policy(PolicyError::InvalidName(_)) => "invalid_name",
            SignError::Policy(PolicyError::UnsupportedSignature(_)) => "unsupported_signature",
            SignError::Policy(PolicyError::IssuerExpiring { .. }) => "issuer_expiring",
            SignError::Policy(PolicyError::NameNotPermitted { .. }) => "name_not_permitted",
            SignError::Ledger(_) => "ledger_unavailable",
            SignError::Authority(AuthorityError::NoIntermediate { .. }) => "no_intermediate",
            SignError::Authority(_) => "internal",
            SignError::NoClientCertificate => "client_certificate_required",
            SignError::UnknownCertificate(_) => "unknown_certificate",
            SignError::RenewRevoked { .. } => "certificate_revoked",
            SignError::RenewExpired(_) => "certificate_expired",
            SignError::NameReserved(_) => "name_reserved",
            SignError::AlreadyRenewed { .. } => "already_renewed",
            SignError::ProfileMismatch { .. } => "profile_mismatch",
            SignError::BadProfile(_) => "bad_profile",
            SignError::Lint(_) => "lint_failed",
        }
    }
}

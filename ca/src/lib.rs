//! `pki-ca`: an online certificate authority.
//!
//! It keeps a root, mints one-time enrollment tokens, issues X.509
//! certificates from CSRs over HTTPS to token holders, and records
//! everything it issues.
//!
//! # Layout
//! - [`token`]: enrollment tokens and what they authorize.
//! - [`policy`]: what may be issued: CSR verification, accepted keys,
//!   authorized names, validity. No HTTP here, no signing.
//! - [`authority`]: the root (creation, loading) and the signing of the
//!   certificate the policy decided.
//! - [`ledger`]: the record of every token and certificate (SQLite).
//! - [`http`]: the HTTPS API; it maps requests to [`Ca`] calls and errors
//!   to JSON problem documents, and decides nothing itself.
//! - [`serve`]: the TLS 1.3 listener and its graceful shutdown.
//!
//! [`Ca`] wires them together: token, then policy, then authority, then
//! ledger, in the order a request meets them.

pub mod authority;
pub mod http;
pub mod ledger;
pub mod policy;
pub mod serve;
pub mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use tracing::{info, warn};

use authority::{AuthorityError, RootAuthority, SignedCert};
use ledger::{IssuedRecord, Ledger, LedgerError, SqliteLedger};
use policy::{IssuancePolicy, PolicyError};
use token::{EnrollmentToken, Profile, TokenError, TokenGrant};

/// Where the CA keeps its files.
#[derive(Debug, Clone)]
pub struct CaPaths {
    dir: PathBuf,
}

impl CaPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CaPaths { dir: dir.into() }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The root certificate, distributed to every party out of band.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The root key: PKCS#8 PEM, mode 0600, never leaves the CA.
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The ledger database.
    pub fn ledger(&self) -> PathBuf {
        self.dir.join("ca-ledger.sqlite")
    }
}

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
}

/// Why a signing request was refused. Each maps to one HTTP status and one
/// stable error code in [`http`].
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
            SignError::Ledger(_) => "ledger_unavailable",
            SignError::Authority(_) => "internal",
        }
    }
}

/// The certificate authority: root, policy and ledger together.
pub struct Ca {
    root: RootAuthority,
    policy: IssuancePolicy,
    ledger: Arc<dyn Ledger>,
}

impl Ca {
    /// Opens the CA in `paths` (the root must exist) with its SQLite ledger.
    pub fn open(paths: &CaPaths, policy: IssuancePolicy) -> Result<Self, CaError> {
        let root = RootAuthority::load(paths)?;
        let ledger = Arc::new(SqliteLedger::open(&paths.ledger())?);
        Ok(Ca {
            root,
            policy,
            ledger,
        })
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The root certificate.
    pub fn root(&self) -> &RootAuthority {
        &self.root
    }

    /// The ledger.
    pub fn ledger(&self) -> &dyn Ledger {
        self.ledger.as_ref()
    }

    /// Mints a one-time token for `names` and `profile`, valid for `ttl`.
    /// Only the hash of its secret is stored.
    pub fn mint_token(
        &self,
        names: &[String],
        profile: Profile,
        ttl: Duration,
    ) -> Result<EnrollmentToken, CaError> {
        if names.is_empty() {
            return Err(CaError::NoNames);
        }
        let names = names
            .iter()
            .map(|n| policy::normalize_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let token = EnrollmentToken::generate();
        let now = pki_common::unix_now() as i64;
        self.ledger.add_token(&TokenGrant {
            id: token.id().to_string(),
            secret_hash: token.secret_hash().to_vec(),
            names: names.clone(),
            profile,
            created_at: now,
            expires_at: now.saturating_add(ttl.as_secs() as i64),
            used_at: None,
        })?;
        info!(
            target: "audit",
            "audit: minted token {} for {} (profile {profile}, expires in {})",
            token.id(),
            names.join(", "),
            humantime::format_duration(ttl)
        );
        Ok(token)
    }

    /// Phase 1 at the CA: checks the token, verifies the CSR, applies the
    /// policy, signs, and records the certificate (consuming the token)
    /// before answering it. Every outcome is audited.
    pub fn sign(&self, bearer: Option<&str>, csr: &[u8]) -> Result<SignedCert, SignError> {
        let token_id = bearer
            .and_then(|b| EnrollmentToken::parse(b).ok())
            .map(|t| t.id().to_string())
            .unwrap_or_else(|| "-".into());
        let result = self.sign_inner(bearer, csr);
        match &result {
            Ok(cert) => info!(
                target: "audit",
                "audit: issued serial {} for {} (token {token_id}, valid until {})",
                cert.info.serial_hex,
                cert.info.names().join(", "),
                cert.info.not_after_rfc3339()
            ),
            Err(e) => warn!(
                target: "audit",
                "audit: refused CSR (token {token_id}): {}: {e}",
                e.code()
            ),
        }
        result
    }

    fn sign_inner(&self, bearer: Option<&str>, csr: &[u8]) -> Result<SignedCert, SignError> {
        let presented = EnrollmentToken::parse(bearer.ok_or(SignError::MissingToken)?)?;
        let grant = self
            .ledger
            .token(presented.id())
            .map_err(SignError::Ledger)?
            .ok_or(TokenError::Unknown)?;
        let now = pki_common::unix_now() as i64;
        grant.check(&presented, now)?;
        let verified = policy::verify_csr(csr)?;
        let decision = self.policy.decide(
            &verified,
            &grant.names,
            grant.profile,
            self.root.info.not_after,
            now,
        )?;
        let cert = self.root.sign(&decision, &verified.spki_der)?;
        let record = IssuedRecord {
            serial_hex: cert.info.serial_hex.clone(),
            names: decision.names.clone(),
            profile: decision.profile,
            not_before: decision.not_before,
            not_after: decision.not_after,
            token_id: Some(grant.id.clone()),
            issued_at: now,
            der: cert.der.to_vec(),
        };
        match self.ledger.record_issuance(&record, Some(&grant.id)) {
            Ok(()) => Ok(cert),
            Err(LedgerError::TokenAlreadyUsed) => Err(TokenError::Used {
                at: "just now, by a concurrent request".into(),
            }
            .into()),
            Err(e) => Err(SignError::Ledger(e)),
        }
    }

    /// Issues the CA's own TLS certificate for `names` with a fresh key that
    /// stays in memory, recorded in the ledger like any other certificate.
    pub fn issue_service_certificate(
        &self,
        names: &[String],
    ) -> Result<(SignedCert, KeyPair), CaError> {
        let names = names
            .iter()
            .map(|n| policy::normalize_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(AuthorityError::Sign)?;
        use rcgen::PublicKeyData;
        let spki = key.subject_public_key_info();
        let verified = policy::VerifiedCsr {
            spki_der: spki.clone(),
            key: policy::KeyKind::EcdsaP256,
            requested_names: names.clone(),
        };
        let now = pki_common::unix_now() as i64;
        let decision = self.policy.decide(
            &verified,
            &names,
            Profile::Server,
            self.root.info.not_after,
            now,
        )?;
        let cert = self.root.sign(&decision, &spki)?;
        self.ledger.record_issuance(
            &IssuedRecord {
                serial_hex: cert.info.serial_hex.clone(),
                names: names.clone(),
                profile: Profile::Server,
                not_before: decision.not_before,
                not_after: decision.not_after,
                token_id: None,
                issued_at: now,
                der: cert.der.to_vec(),
            },
            None,
        )?;
        info!(
            target: "audit",
            "audit: issued serial {} for the CA's own endpoint {}",
            cert.info.serial_hex,
            names.join(", ")
        );
        Ok((cert, key))
    }
}

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
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pki_common::revocation::Reason;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
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
    /// The current CRL, PEM, rewritten whenever a new CRL is signed.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("ca.crl.pem")
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
    #[error(transparent)]
    File(#[from] pki_common::files::FileError),
    #[error("invalid serial {0:?}: expected hex digits, as `pki-ca list` prints them")]
    BadSerial(String),
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
    #[error("renewal needs the certificate to renew, presented as the TLS client certificate")]
    NoClientCertificate,
    #[error("certificate {0} was not issued by this CA")]
    UnknownCertificate(String),
    #[error("certificate {serial} is revoked ({reason}) and cannot renew; it needs a new token: `pki-ca token`, then enroll again")]
    RenewRevoked { serial: String, reason: Reason },
    #[error("certificate {0} has expired and cannot renew; it needs a new token: `pki-ca token`, then enroll again")]
    RenewExpired(String),
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
            SignError::NoClientCertificate => "client_certificate_required",
            SignError::UnknownCertificate(_) => "unknown_certificate",
            SignError::RenewRevoked { .. } => "certificate_revoked",
            SignError::RenewExpired(_) => "certificate_expired",
        }
    }
}

/// The certificate authority: root, policy and ledger together.
pub struct Ca {
    paths: CaPaths,
    root: RootAuthority,
    policy: IssuancePolicy,
    ledger: Arc<dyn Ledger>,
    /// The CRL currently served; replaced whole, never edited.
    crl: RwLock<Option<Arc<Crl>>>,
}

/// A signed CRL and what it was made from.
#[derive(Debug)]
pub struct Crl {
    pub der: CertificateRevocationListDer<'static>,
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
    /// The ledger revision it reflects.
    pub revision: i64,
    /// How many certificates it lists.
    pub entries: usize,
}

impl Crl {
    pub fn pem(&self) -> String {
        pki_common::files::pem_encode("X509 CRL", self.der.as_ref())
    }
}

impl Ca {
    /// Opens the CA in `paths` (the root must exist) with its SQLite ledger.
    pub fn open(paths: &CaPaths, policy: IssuancePolicy) -> Result<Self, CaError> {
        let ledger = Arc::new(SqliteLedger::open(&paths.ledger())?);
        Self::with_ledger(paths, policy, ledger)
    }

    /// Opens the CA with another ledger implementation (a networked store,
    /// or a failing one in tests).
    pub fn with_ledger(
        paths: &CaPaths,
        policy: IssuancePolicy,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Self, CaError> {
        let root = RootAuthority::load(paths)?;
        Ok(Ca {
            paths: paths.clone(),
            root,
            policy,
            ledger,
            crl: RwLock::new(None),
        })
    }

    /// Normalises a serial as users type it (any case, with or without
    /// colons) to the ledger's lower-case hex.
    pub fn normalize_serial(serial: &str) -> Result<String, CaError> {
        let hex: String = serial
            .trim()
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.is_empty() || hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CaError::BadSerial(serial.to_string()));
        }
        Ok(hex)
    }

    /// Revokes a certificate. The revocation is committed to the ledger
    /// before this returns; a running CA notices the ledger's new revision
    /// and publishes a new CRL within a second.
    pub fn revoke(&self, serial: &str, reason: Reason) -> Result<String, CaError> {
        let serial = Self::normalize_serial(serial)?;
        self.ledger.revoke(
            &serial,
            ledger::Revocation {
                reason,
                revoked_at: pki_common::unix_now() as i64,
            },
        )?;
        warn!(target: "audit", "audit: revoked serial {serial} ({reason})");
        Ok(serial)
    }

    /// Signs a CRL valid from `this_update` for `interval`, numbered from
    /// the ledger's counter, listing every revoked certificate.
    pub fn sign_crl_at(&self, this_update: i64, interval: Duration) -> Result<Crl, CaError> {
        let revision = self.ledger.revision()?;
        let revoked: Vec<(String, ledger::Revocation)> = self
            .ledger
            .certificates()?
            .into_iter()
            .filter_map(|r| r.revoked.map(|rev| (r.serial_hex, rev)))
            .collect();
        let number = self.ledger.next_crl_number()?;
        let next_update = this_update.saturating_add(interval.as_secs().max(1) as i64);
        let der = self
            .root
            .sign_crl(number, this_update, next_update, &revoked)?;
        Ok(Crl {
            der,
            number,
            this_update,
            next_update,
            revision,
            entries: revoked.len(),
        })
    }

    /// Signs a CRL now, makes it the one served, and writes `ca.crl.pem`.
    pub fn publish_crl(&self) -> Result<Arc<Crl>, CaError> {
        let crl =
            Arc::new(self.sign_crl_at(pki_common::unix_now() as i64, self.policy.crl_interval)?);
        pki_common::files::write_public(&self.paths.crl(), &crl.pem())?;
        info!(
            target: "audit",
            "audit: published CRL #{} listing {} revoked certificate(s), next update {}",
            crl.number,
            crl.entries,
            pki_common::cert::rfc3339(crl.next_update)
        );
        *self.crl.write().unwrap_or_else(|p| p.into_inner()) = Some(crl.clone());
        Ok(crl)
    }

    /// The CRL currently served, if one has been published.
    pub fn current_crl(&self) -> Option<Arc<Crl>> {
        self.crl.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Publishes a new CRL if there is none, if the ledger has a revocation
    /// the current one lacks, or if half its validity has passed (so a
    /// fresh CRL is out well before nextUpdate).
    pub fn refresh_crl(&self) -> Result<Option<Arc<Crl>>, CaError> {
        let now = pki_common::unix_now() as i64;
        let stale = match self.current_crl() {
            None => true,
            Some(crl) => {
                crl.revision != self.ledger.revision()?
                    || now >= crl.this_update + (crl.next_update - crl.this_update) / 2
            }
        };
        if stale {
            self.publish_crl().map(Some)
        } else {
            Ok(None)
        }
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
        let mut tokens = self.mint_tokens(names, profile, ttl, 1)?;
        tokens.pop().ok_or(CaError::NoNames)
    }

    /// Mints `count` tokens alike in one ledger transaction (for load runs).
    pub fn mint_tokens(
        &self,
        names: &[String],
        profile: Profile,
        ttl: Duration,
        count: usize,
    ) -> Result<Vec<EnrollmentToken>, CaError> {
        if names.is_empty() {
            return Err(CaError::NoNames);
        }
        let names = names
            .iter()
            .map(|n| policy::normalize_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let now = pki_common::unix_now() as i64;
        let tokens: Vec<EnrollmentToken> =
            (0..count).map(|_| EnrollmentToken::generate()).collect();
        let grants: Vec<TokenGrant> = tokens
            .iter()
            .map(|token| TokenGrant {
                id: token.id().to_string(),
                secret_hash: token.secret_hash().to_vec(),
                names: names.clone(),
                profile,
                created_at: now,
                expires_at: now.saturating_add(ttl.as_secs() as i64),
                used_at: None,
            })
            .collect();
        self.ledger.add_tokens(&grants)?;
        for token in &tokens {
            info!(
                target: "audit",
                "audit: minted token {} for {} (profile {profile}, expires in {})",
                token.id(),
                names.join(", "),
                humantime::format_duration(ttl)
            );
        }
        Ok(tokens)
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
        self.issue(
            &verified,
            &grant.names,
            grant.profile,
            Some(&grant.id),
            None,
        )
    }

    /// Decides, signs and records a certificate; the record is committed
    /// (consuming `token_id`, if any) before the certificate is returned.
    fn issue(
        &self,
        verified: &policy::VerifiedCsr,
        names: &[String],
        profile: Profile,
        token_id: Option<&str>,
        renewed_from: Option<&str>,
    ) -> Result<SignedCert, SignError> {
        let now = pki_common::unix_now() as i64;
        let decision =
            self.policy
                .decide(verified, names, profile, self.root.info.not_after, now)?;
        let cert = self.root.sign(&decision, &verified.spki_der)?;
        let record = IssuedRecord {
            serial_hex: cert.info.serial_hex.clone(),
            names: decision.names.clone(),
            profile: decision.profile,
            not_before: decision.not_before,
            not_after: decision.not_after,
            token_id: token_id.map(str::to_owned),
            issued_at: now,
            der: cert.der.to_vec(),
            revoked: None,
            renewed_from: renewed_from.map(str::to_owned),
        };
        match self.ledger.record_issuance(&record, token_id) {
            Ok(()) => Ok(cert),
            Err(LedgerError::TokenAlreadyUsed) => Err(TokenError::Used {
                at: "just now, by a concurrent request".into(),
            }
            .into()),
            Err(e) => Err(SignError::Ledger(e)),
        }
    }

    /// Renewal: the caller authenticated with `presented`, a certificate
    /// this CA issued, which must be neither expired nor revoked. The new
    /// certificate has the same names and profile (the CSR may bring a new
    /// key), and the ledger links it to the old one.
    pub fn renew(
        &self,
        presented: Option<&CertificateDer<'_>>,
        csr: &[u8],
    ) -> Result<SignedCert, SignError> {
        let result = self.renew_inner(presented, csr);
        let old = presented
            .and_then(|c| pki_common::cert::CertInfo::parse(c).ok())
            .map(|i| i.serial_hex)
            .unwrap_or_else(|| "-".into());
        match &result {
            Ok(cert) => info!(
                target: "audit",
                "audit: renewed serial {old} as {} for {} (valid until {})",
                cert.info.serial_hex,
                cert.info.names().join(", "),
                cert.info.not_after_rfc3339()
            ),
            Err(e) => warn!(
                target: "audit",
                "audit: refused renewal of {old}: {}: {e}",
                e.code()
            ),
        }
        result
    }

    fn renew_inner(
        &self,
        presented: Option<&CertificateDer<'_>>,
        csr: &[u8],
    ) -> Result<SignedCert, SignError> {
        let presented = presented.ok_or(SignError::NoClientCertificate)?;
        let info = pki_common::cert::CertInfo::parse(presented)
            .map_err(|_| SignError::UnknownCertificate("unparseable".into()))?;
        let record = self
            .ledger
            .certificate(&info.serial_hex)
            .map_err(SignError::Ledger)?
            .filter(|r| r.der == presented.as_ref())
            .ok_or_else(|| SignError::UnknownCertificate(info.serial_hex.clone()))?;
        let now = pki_common::unix_now() as i64;
        match record.status(now) {
            ledger::Status::Revoked(reason) => {
                return Err(SignError::RenewRevoked {
                    serial: record.serial_hex,
                    reason,
                })
            }
            ledger::Status::Expired => return Err(SignError::RenewExpired(record.serial_hex)),
            ledger::Status::Valid => {}
        }
        let verified = policy::verify_csr(csr)?;
        self.issue(
            &verified,
            &record.names,
            record.profile,
            None,
            Some(&record.serial_hex),
        )
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
                revoked: None,
                renewed_from: None,
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

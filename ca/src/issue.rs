//! Issuing certificates: enrollment, renewal, and the CA's own.
//!
//! All three take one path, [`Ca::issue`]: the policy decides the
//! certificate, the pre-issuance lint ([`crate::lint`]) checks it as
//! signed with a throwaway key, the current intermediate signs it, and the
//! ledger records it (consuming the token, if any) before anyone sees it.
//! The ledger's [`IssuedRecord`] is built in one place, [`issued_record`], so every
//! certificate this CA issues is recorded alike. Who may ask is decided
//! before, in [`authorize`](crate::authorize).

use std::net::SocketAddr;

use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use tracing::{info, warn};

use crate::authority::Intermediate;
use crate::authority::{AuthorityError, SignedCert};
use crate::ledger::{IssuedRecord, LedgerError};
use crate::lint::{Expected, LintFailure, LintedError};
use crate::policy::{self, Decision, PolicyError, VerifiedCsr};
use crate::reserved::NameReserved;
use crate::token::{EnrollmentToken, TokenError};
use crate::{Ca, CaError, SignError};
use pki_common::cert::Profile;

/// Why [`Ca::issue`] failed. Its callers answer different error types
/// (a network caller a [`SignError`], the operator a [`CaError`]), so the
/// shared path answers neither and each caller converts.
#[derive(Debug, thiserror::Error)]
enum IssueError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Reserved(#[from] NameReserved),
    #[error(transparent)]
    Lint(#[from] LintFailure),
}

impl From<LintedError> for IssueError {
    fn from(e: LintedError) -> Self {
        match e {
            LintedError::Authority(e) => IssueError::Authority(e),
            LintedError::Lint(e) => IssueError::Lint(e),
        }
    }
}

impl From<IssueError> for SignError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Policy(e) => SignError::Policy(e),
            IssueError::Authority(e) => SignError::Authority(e),
            // Two requests raced for one token and the other committed
            // first: to the caller that is a used token, not a ledger fault.
            IssueError::Ledger(LedgerError::TokenAlreadyUsed) => TokenError::Used {
                at: format!(
                    "{} (by a concurrent request)",
                    pki_common::cert::rfc3339(pki_common::unix_now() as i64)
                ),
            }
            .into(),
            // A concurrent renewal of the same certificate committed
            // first, or a revocation reached it meanwhile.
            IssueError::Ledger(LedgerError::AlreadyRenewed { serial, by }) => {
                SignError::AlreadyRenewed { serial, by }
            }
            IssueError::Ledger(LedgerError::RevokedMeanwhile { serial, reason }) => {
                SignError::RenewRevoked { serial, reason }
            }
            IssueError::Ledger(e) => SignError::Ledger(e),
            IssueError::Reserved(e) => SignError::NameReserved(e),
            IssueError::Lint(e) => SignError::Lint(e),
        }
    }
}

impl From<IssueError> for CaError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Policy(e) => CaError::Policy(e),
            IssueError::Authority(e) => CaError::Authority(e),
            IssueError::Ledger(e) => CaError::Ledger(e),
            IssueError::Reserved(e) => CaError::NameReserved(e),
            IssueError::Lint(e) => CaError::Lint(e),
        }
    }
}

/// What a certificate is issued on: the names and profile it may carry,
/// and what authorized it, for the ledger.
struct Grounds<'a> {
    names: &'a [String],
    profile: Profile,
    /// The token consumed by this issuance, if any.
    token_id: Option<&'a str>,
    /// The serial of the certificate this one renews, if any.
    renewed_from: Option<&'a str>,
    /// Whether this is the CA's own TLS certificate: the only one that may
    /// carry the reserved names and the CA-endpoint EKU.
    ca_endpoint: bool,
    /// The ACME order this certificate finalizes, if any.
    acme_order: Option<&'a str>,
}

/// The ledger's record of `cert`, signed as `decision` said at `now`: the
/// one place a record is built.
fn issued_record(
    cert: &SignedCert,
    decision: &Decision,
    grounds: &Grounds<'_>,
    now: i64,
) -> IssuedRecord {
    IssuedRecord {
        serial_hex: cert.info.serial_hex.clone(),
        names: decision.names.clone(),
        profile: decision.profile,
        not_before: decision.not_before,
        not_after: decision.not_after,
        token_id: grounds.token_id.map(str::to_owned),
        issued_at: now,
        der: cert.der.to_vec(),
        revoked: None,
        renewed_from: grounds.renewed_from.map(str::to_owned),
        issuer_id: cert.issuer_id.clone(),
        acme_order: grounds.acme_order.map(str::to_owned),
    }
}

impl Ca {
    /// Phase 1 at the CA, for a caller that does not state the profile it
    /// expects (older clients): [`Ca::sign_for`] without the profile check.
    pub fn sign(&self, bearer: Option<&str>, csr: &[u8]) -> Result<SignedCert, SignError> {
        self.sign_for(bearer, None, csr)
    }

    /// Phase 1 at the CA: checks the token (and that its profile is
    /// `requested`, if given), verifies the CSR, applies the policy, signs,
    /// and records the certificate (consuming the token) before answering
    /// it. Every outcome is audited.
    pub fn sign_for(
        &self,
        bearer: Option<&str>,
        requested: Option<Profile>,
        csr: &[u8],
    ) -> Result<SignedCert, SignError> {
        self.sign_from(None, bearer, requested, csr)
    }

    /// [`Ca::sign_for`] for a request from `peer`, which the audit line
    /// names.
    pub fn sign_from(
        &self,
        peer: Option<SocketAddr>,
        bearer: Option<&str>,
        requested: Option<Profile>,
        csr: &[u8],
    ) -> Result<SignedCert, SignError> {
        let token_id = bearer
            .and_then(|b| EnrollmentToken::parse(b).ok())
            .map(|t| t.id().to_string())
            .unwrap_or_else(|| "-".into());
        let result = self.sign_inner(bearer, requested, csr);
        audit(
            &result,
            peer,
            |cert| {
                format!(
                    "issued serial {} for {} (token {token_id}, valid until {}, signed by intermediate {})",
                    cert.info.serial_hex,
                    cert.info.names().join(", "),
                    cert.info.not_after_rfc3339(),
                    cert.issuer_id
                )
            },
            || format!("refused CSR (token {token_id})"),
        );
        result
    }

    fn sign_inner(
        &self,
        bearer: Option<&str>,
        requested: Option<Profile>,
        csr: &[u8],
    ) -> Result<SignedCert, SignError> {
        let grant = self.authorize_enrollment(bearer, requested)?;
        let verified = policy::verify_csr(csr)?;
        let grounds = Grounds {
            names: &grant.names,
            profile: grant.profile,
            token_id: Some(&grant.id),
            renewed_from: None,
            ca_endpoint: false,
            acme_order: None,
        };
        Ok(self.issue(&verified, &grounds)?)
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
        self.renew_from(None, presented, csr)
    }

    /// [`Ca::renew`] for a request from `peer`, which the audit line names.
    pub fn renew_from(
        &self,
        peer: Option<SocketAddr>,
        presented: Option<&CertificateDer<'_>>,
        csr: &[u8],
    ) -> Result<SignedCert, SignError> {
        let result = self.renew_inner(presented, csr);
        let old = presented
            .and_then(|c| pki_common::cert::CertInfo::parse(c).ok())
            .map(|i| i.serial_hex)
            .unwrap_or_else(|| "-".into());
        audit(
            &result,
            peer,
            |cert| {
                format!(
                    "renewed serial {old} as {} for {} (valid until {}, signed by intermediate {})",
                    cert.info.serial_hex,
                    cert.info.names().join(", "),
                    cert.info.not_after_rfc3339(),
                    cert.issuer_id
                )
            },
            || format!("refused renewal of {old}"),
        );
        result
    }

    fn renew_inner(
        &self,
        presented: Option<&CertificateDer<'_>>,
        csr: &[u8],
    ) -> Result<SignedCert, SignError> {
        let record = self.authorize_renewal(presented)?;
        let verified = policy::verify_csr(csr)?;
        let grounds = Grounds {
            names: &record.names,
            profile: record.profile,
            token_id: None,
            renewed_from: Some(&record.serial_hex),
            ca_endpoint: false,
            acme_order: None,
        };
        Ok(self.issue(&verified, &grounds)?)
    }

    /// Issues the CA's own TLS certificate for `names` with a fresh key that
    /// stays in memory, recorded in the ledger like any other certificate.
    /// There is no CSR: the key is made here, so its SPKI is known good.
    pub fn issue_service_certificate(
        &self,
        names: &[String],
    ) -> Result<(SignedCert, KeyPair), CaError> {
        let names = names
            .iter()
            .map(|n| policy::normalize_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        // Whatever the CA's endpoint answers to is reserved before it is
        // certified, so no one else can be issued the same names.
        self.reserve_endpoint_names(&names)?;
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(AuthorityError::Sign)?;
        use rcgen::PublicKeyData;
        let verified = VerifiedCsr {
            spki_der: key.subject_public_key_info(),
            key: policy::KeyKind::EcdsaP256,
            requested_names: names.clone(),
        };
        let grounds = Grounds {
            names: &names,
            profile: Profile::Server,
            token_id: None,
            renewed_from: None,
            ca_endpoint: true,
            acme_order: None,
        };
        let cert = self.issue(&verified, &grounds)?;
        info!(
            target: "audit",
            "audit: issued serial {} for the CA's own endpoint {} (signed by intermediate {})",
            cert.info.serial_hex,
            names.join(", "),
            cert.issuer_id
        );
        if cert.info.not_after >= self.root.info.not_after {
            warn!(
                "the CA's own TLS certificate ends with the root, at {}: create a new root (`pki-ca init --force`) and re-enroll every party before then",
                cert.info.not_after_rfc3339()
            );
        } else if self
            .intermediate(&cert.issuer_id)
            .is_some_and(|i| cert.info.not_after >= i.info.not_after)
        {
            warn!(
                "the CA's own TLS certificate ends with its intermediate {}, at {}: issue a new intermediate where the root key is (`pki-ca intermediate`) before then",
                cert.issuer_id,
                cert.info.not_after_rfc3339()
            );
        }
        Ok((cert, key))
    }

    /// ACME finalize: issues a TLS server certificate for `names` (the
    /// order's identifiers, already validated) on the CSR's key, through
    /// the same decide–sign–record path as enrollment. The ledger marks
    /// `order_id` valid in the transaction that records the certificate.
    pub(crate) fn issue_for_order(
        &self,
        peer: Option<SocketAddr>,
        verified: &VerifiedCsr,
        names: &[String],
        order_id: &str,
        account_id: &str,
    ) -> Result<SignedCert, SignError> {
        let grounds = Grounds {
            names,
            profile: Profile::Server,
            token_id: None,
            renewed_from: None,
            ca_endpoint: false,
            acme_order: Some(order_id),
        };
        let result = self.issue(verified, &grounds).map_err(SignError::from);
        audit(
            &result,
            peer,
            |cert| {
                format!(
                    "issued serial {} for {} (ACME account {account_id}, order {order_id}, valid until {}, signed by intermediate {})",
                    cert.info.serial_hex,
                    cert.info.names().join(", "),
                    cert.info.not_after_rfc3339(),
                    cert.issuer_id
                )
            },
            || format!("refused ACME finalize (account {account_id}, order {order_id})"),
        );
        result
    }

    /// When the CA's own certificate `info` is due for replacement: at two
    /// thirds of its life, like any certificate, unless it already ends
    /// with its issuer (the current intermediate, which never outlives the
    /// root). Such a certificate cannot be bettered, since every
    /// replacement would end at the same instant, each shorter than the
    /// last (and, with the backdating, born past its own renewal point):
    /// replacing it would only add ledger rows, once a second. So it is
    /// due when it expires, and the rotation's refusal then backs off.
    pub(crate) fn own_renewal_due(&self, info: &pki_common::cert::CertInfo) -> i64 {
        let issuer_end = self
            .current_issuer()
            .map(|i| i.info.not_after)
            .unwrap_or(self.root.info.not_after);
        if info.not_after >= issuer_end {
            info.not_after
        } else {
            info.renewal_due()
        }
    }

    /// Decides, signs and records a certificate; the record is committed
    /// (consuming the token, if any) before the certificate is returned,
    /// so no certificate leaves the CA unrecorded. Every leaf the CA
    /// issues (enrollment, renewal, ACME, its own) comes through here.
    fn issue(
        &self,
        verified: &VerifiedCsr,
        grounds: &Grounds<'_>,
    ) -> Result<SignedCert, IssueError> {
        let (cert, decision, now) = self.decide_and_sign(verified, grounds)?;
        let record = issued_record(&cert, &decision, grounds, now);
        self.ledger.record_issuance(&record, grounds.token_id)?;
        Ok(cert)
    }

    /// The policy's decision for `grounds`, built and signed by the
    /// current intermediate only once its linting certificate passed every
    /// lint (see [`crate::lint`]). Nothing is recorded.
    fn decide_and_sign(
        &self,
        verified: &VerifiedCsr,
        grounds: &Grounds<'_>,
    ) -> Result<(SignedCert, Decision, i64), IssueError> {
        if !grounds.ca_endpoint {
            // Defence in depth: the token may predate the reservation.
            self.refuse_reserved(grounds.names)?;
        }
        let issuer = self.current_issuer()?;
        issuer.check_permitted(grounds.names)?;
        let now = pki_common::unix_now() as i64;
        let mut decision = self.policy.decide(
            verified,
            grounds.names,
            grounds.profile,
            issuer.info.not_after,
            now,
        )?;
        // Never born before its issuer (an intermediate issued in the last
        // minutes is younger than the backdating).
        decision.not_before = decision.not_before.max(issuer.info.not_before);
        let url = self.public_url.as_deref();
        let draft = issuer.leaf_draft(&decision, grounds.ca_endpoint, url)?;
        let expected = self.expected(&issuer, verified, grounds);
        let cert = self.linting.sign(
            &issuer,
            &self.root.cert,
            draft,
            &verified.spki_der,
            &expected,
        )?;
        Ok((cert, decision, now))
    }

    /// What the lints hold the certificate to, from the grounds (the
    /// token's names and profile), the CSR's key, the policy's limits, the
    /// issuer's certificate and the configured public URL: never from the
    /// decision or the draft they check.
    fn expected<'a>(
        &'a self,
        issuer: &'a Intermediate,
        verified: &'a VerifiedCsr,
        grounds: &Grounds<'a>,
    ) -> Expected<'a> {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let base = self
            .public_url
            .as_deref()
            .and_then(|u| crate::extensions::public_base(u).ok());
        Expected {
            names: grounds.names,
            profile: grounds.profile,
            ca_endpoint: grounds.ca_endpoint,
            spki_der: &verified.spki_der,
            key: verified.key,
            max_validity_secs: secs(self.policy.lifetime)
                .saturating_add(secs(self.policy.backdate)),
            issuer: issuer.lint_facts(),
            crl_url: base.map(|b| crate::extensions::crl_url(b, &issuer.id)),
            issuer_url: base.map(|b| crate::extensions::issuer_url(b, &issuer.id)),
        }
    }

    /// Decides, lints and signs a certificate for `verified` under
    /// `names` and `profile` as an enrollment would, but records nothing:
    /// for the benchmark, which measures what linting costs against
    /// [`Intermediate::sign_unlinted`].
    #[doc(hidden)]
    pub fn issue_unrecorded(
        &self,
        verified: &VerifiedCsr,
        names: &[String],
        profile: Profile,
    ) -> Result<SignedCert, SignError> {
        let grounds = Grounds {
            names,
            profile,
            token_id: None,
            renewed_from: None,
            ca_endpoint: false,
            acme_order: None,
        };
        Ok(self.decide_and_sign(verified, &grounds)?.0)
    }
}

/// Writes one audit line for the outcome of a signing request: what was
/// issued, or what was refused with its stable code and the reason, and
/// the `peer` address it came from (a field of its own: `peer=…` in text,
/// a key in JSON).
fn audit(
    result: &Result<SignedCert, SignError>,
    peer: Option<SocketAddr>,
    issued: impl FnOnce(&SignedCert) -> String,
    refused: impl FnOnce() -> String,
) {
    let peer = Peer(peer);
    match result {
        Ok(cert) => info!(target: "audit", peer = %peer, "audit: {}", issued(cert)),
        Err(e) => warn!(target: "audit", peer = %peer, "audit: {}: {}: {e}", refused(), e.code()),
    }
}

/// A request's peer address in an audit line; `-` for a call that did not
/// come over the network (a test, an operator command).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("-"),
        }
    }
}

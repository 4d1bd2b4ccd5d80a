//! Who may get a certificate: the whole life of an authorization.
//!
//! A certificate is authorized in exactly one of two ways, and every rule
//! for each lives in one function here:
//!
//! - **Enrollment**, by a one-time token. The operator mints tokens
//!   ([`Ca::mint_tokens`]): the grant (names, profile, expiry, the hash of
//!   the secret) goes to the ledger and the token itself is printed once.
//!   A caller redeems one ([`Ca::authorize_enrollment`]). Minting lives
//!   here rather than in [`token`](crate::token) because it is the other
//!   half of redemption: both read and write the same ledger grants, while
//!   `token` stays the pure token format (parsing, hashing, checking a
//!   grant), free of storage, so it can be fuzzed on its own.
//! - **Renewal**, by a certificate this CA issued, presented as the TLS
//!   client certificate. Two layers judge it, and only two:
//!   1. the TLS handshake, in `pki_common::tls::verify::RenewalClientVerifier`:
//!      the certificate chains to the root, is within its validity, and
//!      carries the serverAuth or clientAuth EKU. Those checks need the
//!      handshake's proof of possession of the key, so they cannot move
//!      out of the TLS layer;
//!   2. the ledger, in [`Ca::authorize_renewal`]: the certificate is one
//!      this CA recorded (byte for byte), not revoked and not expired. They
//!      run after the handshake, so that a refusal can say why in a
//!      problem document instead of as a bare TLS alert.
//!
//! Neither function verifies the CSR or signs: that is
//! [`issue`](crate::issue), which runs only on what these return.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tracing::info;

use crate::ledger::{IssuedRecord, Status};
use crate::policy;
use crate::token::{EnrollmentToken, TokenError, TokenGrant};
use crate::{Ca, CaError, SignError};
use pki_common::cert::Profile;

impl Ca {
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
        self.refuse_reserved(&names)?;
        // A token for a name the intermediate may not certify could never
        // be redeemed; refuse it now, with the reason.
        if let Ok(issuer) = self.current_issuer() {
            issuer.check_permitted(&names)?;
        }
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

    /// Every rule for enrollment: the bearer token is well-formed, known,
    /// its secret matches, it is neither used nor expired, and its profile
    /// is the one the request asks for (`requested`, when the caller
    /// states one). Answers the grant, whose names and profile the
    /// certificate gets.
    ///
    /// The profile is checked here, before anything is signed, because a
    /// certificate of the wrong profile is useless to the caller, who
    /// would discard it: issuing it would only spend the token.
    ///
    /// The token is not consumed here: it is marked used in the same ledger
    /// transaction that records the certificate, so a request that fails
    /// later (a bad CSR, a failed commit) leaves the token usable, and two
    /// concurrent requests cannot both use it.
    pub(crate) fn authorize_enrollment(
        &self,
        bearer: Option<&str>,
        requested: Option<Profile>,
    ) -> Result<TokenGrant, SignError> {
        let presented = EnrollmentToken::parse(bearer.ok_or(SignError::MissingToken)?)?;
        let grant = self
            .ledger
            .token(presented.id())
            .map_err(SignError::Ledger)?
            .ok_or(TokenError::Unknown)?;
        let now = pki_common::unix_now() as i64;
        grant.check(&presented, now)?;
        match requested {
            Some(requested) if requested != grant.profile => Err(SignError::ProfileMismatch {
                token: grant.profile,
                requested,
            }),
            _ => Ok(grant),
        }
    }

    /// Every ledger rule for renewal (the chain and EKU were checked by
    /// the TLS verifier, see the module doc): a certificate was presented,
    /// this CA recorded exactly it, it is neither revoked nor expired, and
    /// it was not renewed before (a certificate renews once: otherwise a
    /// stolen key could fork into certificates that outlive the revocation
    /// of the one it was stolen with). Answers its record, whose names and profile the new certificate
    /// keeps. Revocation outranks expiry, as in [`IssuedRecord::status`].
    pub(crate) fn authorize_renewal(
        &self,
        presented: Option<&CertificateDer<'_>>,
    ) -> Result<IssuedRecord, SignError> {
        let presented = presented.ok_or(SignError::NoClientCertificate)?;
        let info = pki_common::cert::CertInfo::parse(presented)
            .map_err(|_| SignError::UnknownCertificate("unparseable".into()))?;
        let record = self
            .ledger
            .certificate(&info.serial_hex)
            .map_err(SignError::Ledger)?
            // The whole certificate must match, not just its serial: only
            // what this CA recorded renews.
            .filter(|r| r.der == presented.as_ref())
            .ok_or_else(|| SignError::UnknownCertificate(info.serial_hex.clone()))?;
        let now = pki_common::unix_now() as i64;
        match record.status(now) {
            Status::Revoked(reason) => {
                return Err(SignError::RenewRevoked {
                    serial: record.serial_hex,
                    reason,
                })
            }
            Status::Expired => return Err(SignError::RenewExpired(record.serial_hex)),
            Status::Valid => {}
        }
        // Checked early to refuse before any signing; the ledger checks
        // again when it records the renewal, where the rule is decided.
        if let Some(by) = self
            .ledger
            .renewed_by(&record.serial_hex)
            .map_err(SignError::Ledger)?
        {
            return Err(SignError::AlreadyRenewed {
                serial: record.serial_hex,
                by,
            });
        }
        Ok(record)
    }
}

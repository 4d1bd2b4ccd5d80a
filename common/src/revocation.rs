//! Revocation as every party sees it: reasons, and checking a CRL.
//!
//! rustls enforces revocation only against the CRLs it is given, so each
//! party fetches the CA's CRL and checks it here first: it must be signed by
//! the root and not be past its nextUpdate. The parsed list then answers
//! "is this serial revoked, and why" for messages a user can act on.

use std::collections::HashMap;
use std::str::FromStr;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

crate::wire::wire_enum! {
    /// Why a certificate was revoked (RFC 5280 §5.3.1): the CRLReason code,
    /// and the camelCase name `pki-ca revoke --reason` takes and the ledger
    /// stores.
    pub enum Reason: u8 {
        Unspecified = 0 => "unspecified",
        KeyCompromise = 1 => "keyCompromise",
        CaCompromise = 2 => "cACompromise",
        AffiliationChanged = 3 => "affiliationChanged",
        Superseded = 4 => "superseded",
        CessationOfOperation = 5 => "cessationOfOperation",
        PrivilegeWithdrawn = 9 => "privilegeWithdrawn",
    }
}

impl Reason {
    /// The name, as the ledger stores it.
    pub fn as_str(self) -> &'static str {
        self.name()
    }
}

impl FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown reason {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// Why a CRL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    #[error("the CRL cannot be parsed: {0}")]
    Unparseable(String),
    #[error(
        "the CRL is not signed by the CA root ({0}); it comes from another CA or was tampered with"
    )]
    NotFromRoot(String),
    #[error("the CRL is stale: its nextUpdate {next_update} has passed; fetch a current one from the CA")]
    Expired { next_update: String },
    #[error("the CRL has no nextUpdate, so its freshness cannot be judged")]
    NoNextUpdate,
    #[error("the CRL has no CRL number (or one above 2^64), so it cannot be ordered against the CRL in use")]
    NoNumber,
    /// A CRL older than the one in use: installing it would bring back
    /// certificates revoked since (a rollback).
    #[error("CRL #{offered} is older than CRL #{current}, which is in use; an older CRL is never installed (it would un-revoke certificates)")]
    Rollback { offered: u64, current: u64 },
    /// Two different CRLs signed with the same number: the CA never does
    /// this, so one of them is not what the CA published in that order.
    #[error("CRL #{number} differs from the CRL #{number} in use; a CRL number names one CRL only, so the new one is refused")]
    Conflict { number: u64 },
}

/// How a verified CRL relates to the one in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succession {
    /// A higher number: it replaces the one in use.
    Newer,
    /// The very CRL in use (same number, same bytes): nothing to do.
    Same,
}

/// A CRL that has been checked against the root and the clock.
#[derive(Debug, Clone)]
pub struct VerifiedCrl {
    pub der: CertificateRevocationListDer<'static>,
    /// The CRL number (RFC 5280 §5.2.3): the CA numbers its CRLs from a
    /// counter in its ledger, so a higher number is a later CRL.
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
    /// Revoked serials (lower-case hex) and their reasons, if given.
    revoked: HashMap<String, Option<Reason>>,
}

impl VerifiedCrl {
    /// The reason `serial_hex` is revoked (`Some(None)` if revoked without
    /// a reason), or `None` if the CRL does not list it.
    pub fn revocation_of(&self, serial_hex: &str) -> Option<Option<Reason>> {
        self.revoked.get(&serial_hex.to_ascii_lowercase()).copied()
    }

    /// How many certificates it lists.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// The one rule for replacing a CRL, whatever its source (the CA, a
    /// file, a cache): only a higher CRL number replaces the CRL in use.
    /// A lower number is a rollback, and the same number with other bytes
    /// a conflict; both are refused, so a revoked certificate can never be
    /// accepted again by feeding a party an older CRL (say, a stale
    /// `ca.crl.pem` while the CA is unreachable). Both CRLs must already be
    /// verified against the root and the clock.
    pub fn succeeds(&self, current: Option<&VerifiedCrl>) -> Result<Succession, CrlError> {
        let Some(current) = current else {
            return Ok(Succession::Newer);
        };
        match self.number.cmp(&current.number) {
            std::cmp::Ordering::Greater => Ok(Succession::Newer),
            std::cmp::Ordering::Less => Err(CrlError::Rollback {
                offered: self.number,
                current: current.number,
            }),
            std::cmp::Ordering::Equal if self.der == current.der => Ok(Succession::Same),
            std::cmp::Ordering::Equal => Err(CrlError::Conflict {
                number: self.number,
            }),
        }
    }
}

/// The newest of several verified CRLs (from the CA and from a file, say),
/// by the rule of [`VerifiedCrl::succeeds`]: the highest number wins; of
/// two with the same number, the one listed first is kept.
pub fn newest(candidates: impl IntoIterator<Item = VerifiedCrl>) -> Option<VerifiedCrl> {
    candidates.into_iter().fold(None, |best, next| match best {
        Some(best) if next.succeeds(Some(&best)) != Ok(Succession::Newer) => Some(best),
        _ => Some(next),
    })
}

/// Accepts a CRL in PEM (`X509 CRL`) or DER.
pub fn crl_from_pem_or_der(
    bytes: &[u8],
) -> Result<CertificateRevocationListDer<'static>, CrlError> {
    crate::files::pem_or_der(bytes).map_err(CrlError::Unparseable)
}

/// Checks that `crl` is signed by `root` and current at `now` (Unix
/// seconds), and parses its entries.
pub fn verify_crl(
    crl: CertificateRevocationListDer<'static>,
    root: &CertificateDer<'_>,
    now: i64,
) -> Result<VerifiedCrl, CrlError> {
    let (_, root_cert) =
        X509Certificate::from_der(root).map_err(|e| CrlError::Unparseable(format!("root: {e}")))?;
    let (rest, parsed) = CertificateRevocationList::from_der(crl.as_ref())
        .map_err(|e| CrlError::Unparseable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CrlError::Unparseable("trailing bytes after the CRL".into()));
    }
    if parsed.issuer() != root_cert.subject() {
        return Err(CrlError::NotFromRoot(format!(
            "issued by {}",
            parsed.issuer()
        )));
    }
    parsed
        .verify_signature(root_cert.public_key())
        .map_err(|_| CrlError::NotFromRoot("bad signature".into()))?;
    let next_update = parsed
        .next_update()
        .ok_or(CrlError::NoNextUpdate)?
        .timestamp();
    if now >= next_update {
        return Err(CrlError::Expired {
            next_update: crate::cert::rfc3339(next_update),
        });
    }
    let revoked = parsed
        .iter_revoked_certificates()
        .map(|entry| {
            let reason = entry
                .reason_code()
                .and_then(|(_, code)| Reason::from_code(code.0));
            (hex::encode(entry.raw_serial()), reason)
        })
        .collect();
    let number = parsed
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(CrlError::NoNumber)?;
    Ok(VerifiedCrl {
        number,
        this_update: parsed.last_update().timestamp(),
        next_update,
        revoked,
        der: crl,
    })
}

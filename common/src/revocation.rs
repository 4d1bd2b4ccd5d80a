//! Revocation as every party sees it: reasons, and checking CRLs.
//!
//! rustls enforces revocation only against the CRLs it is given, so each
//! party fetches the CA's CRLs and checks them here first: each must be
//! signed by its issuer (the root, or an intermediate that the root signed)
//! and not be past its nextUpdate. The parsed lists then answer "is this
//! serial revoked, and why" for messages a user can act on.
//!
//! A two-level CA has one CRL per issuer: the root's lists revoked
//! intermediates, each intermediate's lists the leaves it issued. A
//! [`CrlSet`] holds the verified CRL of every issuer, and the no-rollback
//! rule ([`VerifiedCrl::succeeds`]) applies to each issuer on its own.

use std::collections::{BTreeMap, HashMap};
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
    /// Signed by neither the root nor an intermediate that chains to it.
    #[error("the CRL is signed by {issuer}, which is neither the CA root nor an intermediate the root signed; it comes from another CA or was tampered with")]
    UnknownIssuer { issuer: String },
    /// An intermediate offered to check CRLs with does not chain to the root.
    #[error("the intermediate {name} cannot vouch for a CRL: {why}")]
    BadIntermediate { name: String, why: String },
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

/// The id of the root as a CRL issuer; an intermediate's id is
/// [`issuer_id`] of its certificate.
pub const ROOT_ID: &str = "root";

/// Who signed a CRL: the root, or one of its intermediates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlIssuer {
    /// [`ROOT_ID`], or the intermediate's [`issuer_id`].
    pub id: String,
    /// Its subject's common name (or whole subject), for narration.
    pub name: String,
}

impl CrlIssuer {
    pub fn is_root(&self) -> bool {
        self.id == ROOT_ID
    }
}

impl std::fmt::Display for CrlIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_root() {
            write!(f, "the root ({})", self.name)
        } else {
            write!(f, "intermediate {} ({})", self.id, self.name)
        }
    }
}

/// An intermediate's id: the first 16 hex digits (lower case) of its
/// Subject Key Identifier, as the CA names `intermediates/<id>.pem`;
/// without an SKI, of the SHA-256 of its public key. The key, not the
/// name, identifies an issuer: a rolled-over intermediate may keep its
/// predecessor's name, never its key.
pub fn issuer_id(cert: &X509Certificate<'_>) -> String {
    use x509_parser::extensions::ParsedExtension;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
            _ => None,
        });
    let bytes = ski.unwrap_or_else(|| {
        use sha2::Digest;
        sha2::Sha256::digest(cert.public_key().raw).to_vec()
    });
    let mut id = hex::encode(bytes);
    id.truncate(16);
    id
}

/// [`issuer_id`] of a certificate in DER; `None` if it cannot be parsed.
pub fn issuer_id_of(cert: &CertificateDer<'_>) -> Option<String> {
    X509Certificate::from_der(cert)
        .ok()
        .map(|(_, c)| issuer_id(&c))
}

/// The common name of a certificate's subject, or the whole subject.
fn display_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| name.to_string())
}

/// A CA certificate that may sign CRLs: the root, or an intermediate that
/// was checked against the root ([`Signer::intermediate`]).
#[derive(Debug, Clone)]
pub struct Signer {
    pub issuer: CrlIssuer,
    pub cert: CertificateDer<'static>,
}

impl Signer {
    /// The root: trusted as given (it is the trust anchor).
    pub fn root(root: &CertificateDer<'_>) -> Result<Self, CrlError> {
        let (_, parsed) = X509Certificate::from_der(root)
            .map_err(|e| CrlError::Unparseable(format!("root: {e}")))?;
        Ok(Signer {
            issuer: CrlIssuer {
                id: ROOT_ID.into(),
                name: display_name(parsed.subject()),
            },
            cert: root.clone().into_owned(),
        })
    }

    /// An intermediate, accepted only if the root signed it, it is a CA
    /// and (unless `now` is 0, which orders CRLs regardless of the clock)
    /// it is within its validity. Whether the root has revoked it is for
    /// the root's CRL to say, at path validation.
    pub fn intermediate(
        cert: &CertificateDer<'_>,
        root: &CertificateDer<'_>,
        now: i64,
    ) -> Result<Self, CrlError> {
        let (_, root_cert) = X509Certificate::from_der(root)
            .map_err(|e| CrlError::Unparseable(format!("root: {e}")))?;
        let (_, parsed) =
            X509Certificate::from_der(cert).map_err(|e| CrlError::BadIntermediate {
                name: "(unparseable)".into(),
                why: e.to_string(),
            })?;
        let name = display_name(parsed.subject());
        let bad = |why: &str| CrlError::BadIntermediate {
            name: name.clone(),
            why: why.to_string(),
        };
        if parsed.issuer() != root_cert.subject()
            || parsed
                .verify_signature(Some(root_cert.public_key()))
                .is_err()
        {
            return Err(bad("the root did not sign it"));
        }
        let is_ca = parsed
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(bad("it is not a CA certificate"));
        }
        let validity = parsed.validity();
        if now != 0
            && (now < validity.not_before.timestamp() || now > validity.not_after.timestamp())
        {
            return Err(bad("it is outside its validity period"));
        }
        Ok(Signer {
            issuer: CrlIssuer {
                id: issuer_id(&parsed),
                name,
            },
            cert: cert.clone().into_owned(),
        })
    }

    /// Whether this CA signed `cert` (by name and signature).
    pub fn signed(&self, cert: &X509Certificate<'_>) -> bool {
        X509Certificate::from_der(&self.cert).is_ok_and(|(_, me)| {
            cert.issuer() == me.subject() && cert.verify_signature(Some(me.public_key())).is_ok()
        })
    }
}

/// A CRL that has been checked against its issuer and the clock.
#[derive(Debug, Clone)]
pub struct VerifiedCrl {
    pub der: CertificateRevocationListDer<'static>,
    /// Who signed it: the root or an intermediate.
    pub issuer: CrlIssuer,
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
/// seconds; 0 checks the signature only, to order CRLs), and parses its
/// entries.
pub fn verify_crl(
    crl: CertificateRevocationListDer<'static>,
    root: &CertificateDer<'_>,
    now: i64,
) -> Result<VerifiedCrl, CrlError> {
    verify_crl_by(crl, &[Signer::root(root)?], now)
}

/// Checks that `crl` is signed by one of `signers` (the root first, then
/// intermediates already checked against it) and current at `now`, and
/// parses its entries.
pub fn verify_crl_by(
    crl: CertificateRevocationListDer<'static>,
    signers: &[Signer],
    now: i64,
) -> Result<VerifiedCrl, CrlError> {
    let (rest, parsed) = CertificateRevocationList::from_der(crl.as_ref())
        .map_err(|e| CrlError::Unparseable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CrlError::Unparseable("trailing bytes after the CRL".into()));
    }
    let issuer = signing_issuer(&parsed, signers)?;
    let next_update = parsed
        .next_update()
        .ok_or(CrlError::NoNextUpdate)?
        .timestamp();
    if now != 0 && now >= next_update {
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
        issuer,
        der: crl,
    })
}

/// Which of `signers` signed `crl`: its issuer name must be the signer's
/// subject and the signature must verify with the signer's key. A CRL
/// naming the root that does not verify keeps its own refusal (forged or
/// tampered with), as one naming nobody we know does.
fn signing_issuer(
    crl: &CertificateRevocationList<'_>,
    signers: &[Signer],
) -> Result<CrlIssuer, CrlError> {
    let mut named = false;
    for signer in signers {
        let Ok((_, cert)) = X509Certificate::from_der(&signer.cert) else {
            continue;
        };
        if crl.issuer() != cert.subject() {
            continue;
        }
        named = true;
        if crl.verify_signature(cert.public_key()).is_ok() {
            return Ok(signer.issuer.clone());
        }
    }
    let root_named = signers.first().is_some_and(|root| {
        X509Certificate::from_der(&root.cert).is_ok_and(|(_, c)| crl.issuer() == c.subject())
    });
    match (named, root_named, signers.len()) {
        (true, true, _) => Err(CrlError::NotFromRoot("bad signature".into())),
        (_, _, 1) => Err(CrlError::NotFromRoot(format!("issued by {}", crl.issuer()))),
        (true, false, _) => Err(CrlError::UnknownIssuer {
            issuer: format!(
                "{} (with another key than the intermediate of that name)",
                crl.issuer()
            ),
        }),
        (false, _, _) => Err(CrlError::UnknownIssuer {
            issuer: crl.issuer().to_string(),
        }),
    }
}

/// The verified CRL of every issuer of a CA: the root's (which lists
/// revoked intermediates) and one per intermediate (which lists the leaves
/// it issued); a one-level CA has the root's alone.
///
/// Every party gives the whole set to rustls, which then checks each
/// certificate of a chain against the CRL of its issuer, and refuses a
/// certificate no CRL speaks for (see `crate::tls`). The set also keeps
/// the intermediates that signed its CRLs, checked against the root, so it
/// can be stored and read back on its own ([`CrlSet::to_pem`]).
#[derive(Debug, Clone)]
pub struct CrlSet {
    /// By issuer id ([`ROOT_ID`] or an intermediate's [`issuer_id`]).
    crls: BTreeMap<String, VerifiedCrl>,
    /// The root first, then the intermediates known to this set.
    signers: Vec<Signer>,
}

/// What [`CrlSet::merge`] made of an offered set.
#[derive(Debug)]
pub struct Merged {
    pub set: CrlSet,
    /// The issuers whose offered CRL replaced (or joined) the ones in use.
    pub newer: Vec<CrlIssuer>,
    /// The issuers whose offered CRL was refused, and why (a rollback or
    /// a conflict): the one in use stays.
    pub refused: Vec<(CrlIssuer, CrlError)>,
}

impl CrlSet {
    /// A set of one CRL: a one-level CA, or a CRL file given by hand.
    pub fn single(crl: VerifiedCrl, root: &CertificateDer<'_>) -> Result<Self, CrlError> {
        let mut crls = BTreeMap::new();
        crls.insert(crl.issuer.id.clone(), crl);
        Ok(CrlSet {
            crls,
            signers: vec![Signer::root(root)?],
        })
    }

    /// Verifies every CRL in `crls` against the root or one of
    /// `intermediates` (each checked against the root first; one that
    /// does not chain is left out, so a CRL it signed is refused) and the
    /// clock. One CRL that cannot be trusted refuses the whole set: the CA
    /// never publishes one, so the set is not what the CA published. Of
    /// two CRLs of one issuer the newer is kept.
    pub fn verify(
        crls: Vec<CertificateRevocationListDer<'static>>,
        intermediates: &[CertificateDer<'_>],
        root: &CertificateDer<'_>,
        now: i64,
    ) -> Result<Self, CrlError> {
        let mut signers = vec![Signer::root(root)?];
        for cert in intermediates {
            match Signer::intermediate(cert, root, now) {
                Ok(s) if !signers.iter().any(|k| k.issuer.id == s.issuer.id) => signers.push(s),
                Ok(_) => {}
                Err(e) => tracing::debug!("not used to check CRLs: {e}"),
            }
        }
        if crls.is_empty() {
            return Err(CrlError::Unparseable("no CRL in the answer".into()));
        }
        let mut set = CrlSet {
            crls: BTreeMap::new(),
            signers,
        };
        for der in crls {
            let crl = verify_crl_by(der, &set.signers, now)?;
            let current = set.crls.get(&crl.issuer.id);
            if crl.succeeds(current)? == Succession::Newer {
                set.crls.insert(crl.issuer.id.clone(), crl);
            }
        }
        // Keep only the intermediates that vouch for a CRL here.
        set.signers
            .retain(|s| s.issuer.is_root() || set.crls.contains_key(&s.issuer.id));
        Ok(set)
    }

    /// Reads a set from PEM: `CERTIFICATE` blocks are intermediates,
    /// `X509 CRL` blocks CRLs (what [`CrlSet::to_pem`] writes, or the CA's
    /// `/v1/crls` and `/v1/intermediates` in one file). A lone DER CRL is
    /// read too.
    pub fn from_pem(bytes: &[u8], root: &CertificateDer<'_>, now: i64) -> Result<Self, CrlError> {
        Self::from_pem_with(bytes, &[], root, now)
    }

    /// [`CrlSet::from_pem`], with intermediates `known` from elsewhere
    /// (checked against the root like those in the file).
    pub fn from_pem_with(
        bytes: &[u8],
        known: &[CertificateDer<'static>],
        root: &CertificateDer<'_>,
        now: i64,
    ) -> Result<Self, CrlError> {
        if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let crls = vec![crl_from_pem_or_der(bytes)?];
            return CrlSet::verify(crls, known, root, now);
        }
        let (crls, mut intermediates) = split_pem(bytes)?;
        intermediates.extend(known.iter().cloned());
        CrlSet::verify(crls, &intermediates, root, now)
    }

    /// The intermediates that signed CRLs of this set.
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        self.signers
            .iter()
            .filter(|s| !s.issuer.is_root())
            .map(|s| s.cert.clone())
            .collect()
    }

    /// The intermediates, then the CRLs, in PEM: read back by
    /// [`CrlSet::from_pem`] with nothing else than the root.
    pub fn to_pem(&self) -> String {
        let certs = self
            .signers
            .iter()
            .filter(|s| !s.issuer.is_root())
            .map(|s| crate::files::cert_to_pem(&s.cert));
        let crls = self
            .iter()
            .map(|c| crate::files::pem_encode("X509 CRL", c.der.as_ref()));
        certs.chain(crls).collect()
    }

    /// The CRLs, the root's first: what rustls is given.
    pub fn ders(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.iter().map(|c| c.der.clone()).collect()
    }

    /// The CRLs, the root's first, then by issuer id.
    pub fn iter(&self) -> impl Iterator<Item = &VerifiedCrl> {
        let root = self.crls.get(ROOT_ID);
        root.into_iter()
            .chain(self.crls.values().filter(|c| !c.issuer.is_root()))
    }

    /// The CRL of the issuer with this id.
    pub fn get(&self, issuer_id: &str) -> Option<&VerifiedCrl> {
        self.crls.get(issuer_id)
    }

    /// How many CRLs (issuers) the set holds.
    pub fn len(&self) -> usize {
        self.crls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.crls.is_empty()
    }

    /// The CRLs' numbers, "#5 (root), #9 (intermediate ab12…)", for logs.
    pub fn numbers(&self) -> String {
        self.iter()
            .map(|c| format!("#{} ({})", c.number, c.issuer))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// When a party should fetch a newer set: the earliest half-life of
    /// the intermediates' CRLs (the CA re-signs them at half-life), or of
    /// the root's CRL when it is the only one (a one-level CA). The root's
    /// CRL of a two-level CA is re-signed by hand where the root key is,
    /// rarely; judging freshness by it would make every party fetch on
    /// every use for most of its life. Any fetch brings the whole set, so a
    /// new root CRL is seen as soon as a leaf revocation would be.
    pub fn half_life(&self) -> i64 {
        let half = |c: &VerifiedCrl| c.this_update + (c.next_update - c.this_update) / 2;
        let frequent = self.iter().filter(|c| !c.issuer.is_root()).map(half).min();
        frequent
            .or_else(|| self.iter().map(half).min())
            .unwrap_or(0)
    }

    /// Whether any CRL here lists `serial_hex`, and the reason. Serials are
    /// random (at least 64 bits), so a serial names one certificate across
    /// all issuers; [`CrlSet::status_of`] judges a certificate by its
    /// issuer's CRL.
    pub fn revocation_of(&self, serial_hex: &str) -> Option<(Option<Reason>, &VerifiedCrl)> {
        self.iter()
            .find_map(|c| c.revocation_of(serial_hex).map(|r| (r, c)))
    }

    /// The signer (root or intermediate) known to this set that issued
    /// `cert`.
    pub fn issuer_of(&self, cert: &CertificateDer<'_>) -> Option<&Signer> {
        let (_, parsed) = X509Certificate::from_der(cert).ok()?;
        self.signers.iter().find(|s| s.signed(&parsed))
    }

    /// The CRL that covers `cert`: its issuer's.
    pub fn covering(&self, cert: &CertificateDer<'_>) -> Option<&VerifiedCrl> {
        self.get(&self.issuer_of(cert)?.issuer.id)
    }

    /// The one rule of [`VerifiedCrl::succeeds`], issuer by issuer: an
    /// offered CRL replaces the one in use only if it is newer; a rollback
    /// or a conflict is refused and the one in use stays. Issuers only one
    /// side knows are kept. With nothing in use, the offered set is taken.
    pub fn merge(current: Option<&CrlSet>, offered: CrlSet) -> Merged {
        let Some(current) = current else {
            let newer = offered.iter().map(|c| c.issuer.clone()).collect();
            return Merged {
                set: offered,
                newer,
                refused: Vec::new(),
            };
        };
        let mut set = current.clone();
        let (mut newer, mut refused) = (Vec::new(), Vec::new());
        for signer in &offered.signers {
            if !set.signers.iter().any(|s| s.issuer.id == signer.issuer.id) {
                set.signers.push(signer.clone());
            }
        }
        for (id, crl) in offered.crls {
            match crl.succeeds(current.get(&id)) {
                Ok(Succession::Newer) => {
                    newer.push(crl.issuer.clone());
                    set.crls.insert(id, crl);
                }
                Ok(Succession::Same) => {}
                Err(e) => refused.push((crl.issuer.clone(), e)),
            }
        }
        Merged {
            set,
            newer,
            refused,
        }
    }
}

/// The CRLs and certificates of a PEM bundle; other blocks are ignored.
pub fn split_pem(
    bytes: &[u8],
) -> Result<
    (
        Vec<CertificateRevocationListDer<'static>>,
        Vec<CertificateDer<'static>>,
    ),
    CrlError,
> {
    let blocks =
        pem::parse_many(bytes).map_err(|_| CrlError::Unparseable("the PEM is malformed".into()))?;
    let (mut crls, mut certs) = (Vec::new(), Vec::new());
    for block in blocks {
        match block.tag() {
            "X509 CRL" => crls.push(CertificateRevocationListDer::from(block.into_contents())),
            "CERTIFICATE" => certs.push(CertificateDer::from(block.into_contents())),
            _ => {}
        }
    }
    Ok((crls, certs))
}

impl CrlSet {
    /// Which CRL covers which certificate of `chain` (leaf first), for
    /// narration: "1a2b… on CRL #9 of intermediate ab12… (PKI Int); ab12…
    /// on CRL #3 of the root (PKI Root)". A certificate whose issuer has no
    /// CRL here is said to be uncovered: rustls refuses it.
    pub fn describe_coverage(&self, chain: &[CertificateDer<'_>]) -> String {
        chain
            .iter()
            .filter_map(|cert| {
                let info = crate::cert::CertInfo::parse(cert).ok()?;
                let what = format!("serial {}", info.short_serial());
                Some(match self.covering(cert) {
                    Some(crl) => format!("{what} on CRL #{} of {}", crl.number, crl.issuer),
                    None => format!("{what} on no CRL here (its status is unknown: refused)"),
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

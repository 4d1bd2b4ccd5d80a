//! Pre-issuance linting: the CA refuses to sign a certificate that breaks
//! its own profile.
//!
//! The policy decides a certificate and rcgen encodes it; a mistake in
//! either (a change to the policy or the profiles, a new rcgen) would
//! otherwise be signed and handed out, and a signed certificate can only
//! be revoked. So every leaf goes through [`Linting::sign`], the approach
//! of Let's Encrypt's Boulder:
//!
//! 1. the certificate is built exactly as it will be issued (the same
//!    `CertificateParams`, serial included) and signed with a THROWAWAY key
//!    of the issuer's type, under the issuer's real name and key
//!    identifier, so its TBS is byte for byte the one the real key will
//!    sign;
//! 2. that linting certificate is parsed back with x509-parser and checked
//!    by the named lints of [`rules`] against an [`Expected`] built from
//!    sources independent of the code that built the certificate (the
//!    token's names, the CSR's key, the policy's limits, the issuer's
//!    certificate, the configured public URL);
//! 3. only then is it signed with the real key; the real certificate's TBS
//!    must equal the linted one (`linted_tbs`), and the certificate must
//!    verify with webpki against the chain, for the profile's usage and
//!    each of its names (`chain_verifies`), before it is recorded and
//!    returned.
//!
//! A failure refuses the issuance with [`LintFailure`] (HTTP 500
//! `lint_failed`: the CA's fault, not the caller's), writes an audit line
//! naming the lint, and counts it in `pki_ca_lint_failures_total{lint}`.
//! A failure in step 2 leaves nothing signed with the real key; in step
//! 3, the signed certificate is dropped unrecorded.

mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use pki_common::cert::Profile;
use pki_common::metrics::{label, Counter, Family, Labels};
use rcgen::{CertificateParams, KeyPair, SubjectPublicKeyInfo};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::warn;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::authority::{AuthorityError, Intermediate, SignedCert};
use crate::policy::KeyKind;

pub use rules::IssuerFacts;

/// What the certificate must be, each fact taken from a source other than
/// the code that built it: a certificate that disagrees with one of them
/// is the builder's mistake.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The names the token (or the renewed certificate) authorized,
    /// normalised; the SAN must hold exactly these.
    pub names: &'a [String],
    pub profile: Profile,
    /// The CA's own TLS certificate: serverAuth plus the CA-endpoint EKU.
    pub ca_endpoint: bool,
    /// The subject key the CSR proved possession of, DER SPKI.
    pub spki_der: &'a [u8],
    /// Its kind, as the CSR intake classified it (decides the key usage).
    pub key: KeyKind,
    /// The profile's longest validity, notBefore to notAfter, in seconds.
    pub max_validity_secs: i64,
    /// The issuing intermediate, read from its certificate.
    pub issuer: &'a IssuerFacts,
    /// The CRL Distribution Point URI configured (`--public-url`), if any.
    pub crl_url: Option<String>,
    /// The AIA caIssuers URI configured, if any.
    pub issuer_url: Option<String>,
}

/// One lint that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The lint's stable name (the `lint` label of the metric).
    pub lint: &'static str,
    pub detail: String,
}

/// The CA refused to issue a certificate that breaks its own profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFailure {
    /// Every lint that failed, in the order they ran; never empty.
    pub findings: Vec<Finding>,
}

impl LintFailure {
    fn one(lint: &'static str, detail: impl Into<String>) -> Self {
        LintFailure {
            findings: vec![Finding {
                lint,
                detail: detail.into(),
            }],
        }
    }

    /// The names of the lints that failed.
    pub fn lints(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.lint).collect()
    }
}

impl std::fmt::Display for LintFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let found: Vec<String> = self
            .findings
            .iter()
            .map(|x| format!("{}: {}", x.lint, x.detail))
            .collect();
        write!(
            f,
            "the CA refused to issue a certificate that breaks its own profile (pre-issuance lint failed: {}); nothing was issued and nothing recorded, and a token presented is still unused. This is the CA's fault, not the request's: report it to the CA's operator, who finds the lint in the CA's audit log",
            found.join("; ")
        )
    }
}

impl std::error::Error for LintFailure {}

/// Every lint's name: the checks of the linting certificate (with
/// `well_formed` first: it must parse at all), then the two checks of the
/// real certificate.
pub fn lint_names() -> Vec<&'static str> {
    std::iter::once(WELL_FORMED)
        .chain(rules::LINTS.iter().map(|l| l.name))
        .chain([LINTED_TBS, CHAIN_VERIFIES])
        .collect()
}

/// RFC 5280 §4.1: the certificate is one DER `Certificate`, nothing after.
const WELL_FORMED: &str = "well_formed";
/// Step 5 of the linting: what the real key signed is what was linted.
const LINTED_TBS: &str = "linted_tbs";
/// RFC 5280 §6 as rustls-webpki implements it: the certificate verifies
/// against the root through its intermediate, for its usage and names.
const CHAIN_VERIFIES: &str = "chain_verifies";

/// Runs every lint of [`rules`] on `der`, a certificate as it would be
/// issued. Public so that the benchmark can time it alone.
pub fn lint(der: &[u8], expected: &Expected<'_>) -> Result<(), LintFailure> {
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        Ok(_) => {
            return Err(LintFailure::one(
                WELL_FORMED,
                "bytes follow the certificate",
            ))
        }
        Err(e) => return Err(LintFailure::one(WELL_FORMED, format!("x509-parser: {e}"))),
    };
    let findings: Vec<Finding> = rules::LINTS
        .iter()
        .filter_map(|l| {
            (l.check)(&cert, expected).err().map(|detail| Finding {
                lint: l.name,
                detail,
            })
        })
        .collect();
    if findings.is_empty() {
        Ok(())
    } else {
        Err(LintFailure { findings })
    }
}

/// A deliberately wrong issuance, injected by tests through
/// [`Ca::inject_fault`](crate::Ca::inject_fault) to prove that each lint
/// catches what it is for. Never set outside tests.
#[doc(hidden)]
#[derive(Clone)]
pub enum Fault {
    /// A wrong policy or profile: edits the certificate's fields (or the
    /// subject key) after the policy decided them, before both signings.
    Draft(Arc<dyn Fn(&mut Draft) + Send + Sync>),
    /// A signer of the wrong type: the linting key is of this algorithm
    /// rather than the issuer's.
    LintingKey(&'static rcgen::SignatureAlgorithm),
    /// An encoder writing what rcgen cannot be made to write (a version
    /// other than 3, another issuer name): edits the linting certificate.
    LintingDer(DerEdit),
    /// A signer whose output is not what was linted: edits the real
    /// certificate after signing.
    IssuedDer(DerEdit),
}

/// An edit of a certificate's DER, for a [`Fault`].
#[doc(hidden)]
pub type DerEdit = Arc<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// What a [`Fault::Draft`] may edit.
#[doc(hidden)]
pub struct Draft {
    pub params: CertificateParams,
    pub spki_der: Vec<u8>,
}

/// The CA's linting state: the failure counter, the test-only fault, and
/// how many certificates the real key signed (so tests can assert that a
/// lint failure signed nothing).
#[derive(Default)]
pub struct Linting {
    failures: Family<Labels, Counter>,
    fault: RwLock<Option<Fault>>,
    real_signatures: AtomicU64,
}

/// Why [`Linting::sign`] did not answer a certificate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LintedError {
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Lint(#[from] LintFailure),
}

impl Linting {
    /// The `pki_ca_lint_failures_total` family, by `lint`.
    pub fn failures(&self) -> &Family<Labels, Counter> {
        &self.failures
    }

    pub(crate) fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.write().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    pub(crate) fn real_signatures(&self) -> u64 {
        self.real_signatures.load(Ordering::Relaxed)
    }

    fn fault(&self) -> Option<Fault> {
        self.fault.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Signs `params` for `spki_der` with `issuer`'s key, but only once
    /// the linting certificate passed every lint, and answers it only if
    /// what was signed is what was linted and it verifies against `root`
    /// (see the module doc).
    pub(crate) fn sign(
        &self,
        issuer: &Intermediate,
        root: &CertificateDer<'_>,
        params: CertificateParams,
        spki_der: &[u8],
        expected: &Expected<'_>,
    ) -> Result<SignedCert, LintedError> {
        let fault = self.fault();
        let mut draft = Draft {
            params,
            spki_der: spki_der.to_vec(),
        };
        if let Some(Fault::Draft(edit)) = &fault {
            edit(&mut draft);
        }
        let public_key =
            SubjectPublicKeyInfo::from_der(&draft.spki_der).map_err(AuthorityError::from)?;
        let mut linting = match &fault {
            Some(Fault::LintingKey(alg)) => {
                let key = KeyPair::generate_for(alg).map_err(AuthorityError::from)?;
                issuer.sign_linting_with(&draft.params, &public_key, key)?
            }
            _ => issuer.sign_linting(&draft.params, &public_key)?,
        };
        if let Some(Fault::LintingDer(edit)) = &fault {
            edit(&mut linting);
        }
        self.judge(lint(&linting, expected), expected)?;
        let mut cert = issuer.sign_draft(&draft.params, &public_key)?;
        self.real_signatures.fetch_add(1, Ordering::Relaxed);
        if let Some(Fault::IssuedDer(edit)) = &fault {
            let mut der = cert.der.to_vec();
            edit(&mut der);
            cert.der = CertificateDer::from(der);
        }
        let checked = same_tbs(&linting, &cert.der)
            .map_err(|detail| LintFailure::one(LINTED_TBS, detail))
            .and_then(|()| {
                chain_verifies(&cert, root, expected)
                    .map_err(|detail| LintFailure::one(CHAIN_VERIFIES, detail))
            });
        self.judge(checked, expected)?;
        Ok(cert)
    }

    /// Counts and audits a failure, naming every lint that failed.
    fn judge(
        &self,
        outcome: Result<(), LintFailure>,
        expected: &Expected<'_>,
    ) -> Result<(), LintFailure> {
        let Err(failure) = outcome else {
            return Ok(());
        };
        for finding in &failure.findings {
            self.failures
                .get_or_create(&label("lint", finding.lint))
                .inc();
            warn!(
                target: "audit",
                "audit: pre-issuance lint {} failed for a {} certificate for {}: {}; nothing was issued",
                finding.lint,
                expected.profile,
                expected.names.join(", "),
                finding.detail
            );
        }
        Err(failure)
    }
}

/// Checks that `issued` (signed with the real key) has the TBS of
/// `linted`: every field, byte for byte. The signature algorithm is part
/// of the TBS and the same, since the linting key is of the issuer's type
/// (`signature_algorithm` checked it); the AKI is the real issuer's,
/// since the linting certificate was signed under the issuer's real name
/// and key identifier. So only the signature value may differ.
fn same_tbs(linted: &[u8], issued: &[u8]) -> Result<(), String> {
    let parse = |der| match X509Certificate::from_der(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("the certificate signed does not parse: {e}")),
    };
    let (a, b) = (parse(linted)?, parse(issued)?);
    if a.tbs_certificate.as_ref() == b.tbs_certificate.as_ref()
        && a.signature_algorithm == b.signature_algorithm
    {
        return Ok(());
    }
    let (ta, tb) = (&a.tbs_certificate, &b.tbs_certificate);
    let differ: Vec<&str> = [
        ("version", ta.version == tb.version),
        ("serial", ta.raw_serial() == tb.raw_serial()),
        ("signature algorithm", ta.signature == tb.signature),
        ("issuer", ta.issuer.as_raw() == tb.issuer.as_raw()),
        ("validity", ta.validity == tb.validity),
        ("subject", ta.subject.as_raw() == tb.subject.as_raw()),
        ("subject key", ta.subject_pki.raw == tb.subject_pki.raw),
        ("extensions", ta.extensions() == tb.extensions()),
        (
            "outer signature algorithm",
            a.signature_algorithm == b.signature_algorithm,
        ),
    ]
    .into_iter()
    .filter_map(|(field, same)| (!same).then_some(field))
    .collect();
    Err(format!(
        "the certificate signed with the real key differs from the one linted in: {}",
        if differ.is_empty() {
            "its encoding".to_string()
        } else {
            differ.join(", ")
        }
    ))
}

/// Verifies `cert` with webpki against `root` through its chain, at the
/// present time, for the profile's usage (the CA's own certificate also
/// for the CA-endpoint EKU every party requires of it), and for each of
/// its names.
fn chain_verifies(
    cert: &SignedCert,
    root: &CertificateDer<'_>,
    expected: &Expected<'_>,
) -> Result<(), String> {
    use pki_common::tls::verify::{verify_chain, CA_ENDPOINT_EKU};
    let now = UnixTime::now();
    let usage = match expected.profile {
        Profile::Server => webpki::KeyUsage::server_auth(),
        Profile::Client => webpki::KeyUsage::client_auth(),
    };
    let ee = verify_chain(&cert.der, root, &cert.chain, now, usage)
        .map_err(|e| format!("webpki refuses it for {}: {e}", expected.profile))?;
    if expected.ca_endpoint {
        // "If present", so that the intermediate, which has no EKU, passes;
        // the leaf has one (`extended_key_usage` made sure).
        let usage = webpki::KeyUsage::required_if_present(CA_ENDPOINT_EKU);
        verify_chain(&cert.der, root, &cert.chain, now, usage)
            .map_err(|e| format!("webpki refuses it as the CA's endpoint: {e}"))?;
    }
    for name in expected.names {
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|e| format!("{name:?} is not a name webpki can check: {e}"))?;
        ee.verify_is_valid_for_subject_name(&server_name)
            .map_err(|e| format!("webpki finds it not valid for {name}: {e}"))?;
    }
    Ok(())
}

impl crate::Ca {
    /// Injects a deliberately wrong issuance ([`Fault`]) into every
    /// certificate issued from now on (`None` removes it): for the tests
    /// that prove each lint catches what it is for. Never used outside
    /// tests.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Option<Fault>) {
        self.linting.set_fault(fault);
    }

    /// How many certificates the real intermediate keys have signed since
    /// the CA was opened, for tests asserting that a lint failure signed
    /// nothing.
    #[doc(hidden)]
    pub fn real_signatures(&self) -> u64 {
        self.linting.real_signatures()
    }

    /// How many times `lint` has failed since the CA was opened.
    pub fn lint_failures(&self, lint: &str) -> u64 {
        self.linting
            .failures()
            .get_or_create(&label("lint", lint))
            .get()
    }

    /// The `lint_failures` counter family, for the metrics endpoint.
    pub(crate) fn lint_failure_family(&self) -> &Family<Labels, Counter> {
        self.linting.failures()
    }
}

//! The one crypto provider and the TLS 1.3-only configurations.
//!
//! rustls defaults to aws-lc-rs while rcgen defaults to ring; with both
//! compiled in, rustls's implicit default provider panics. The whole tree is
//! therefore built with ring only, and every config is made here with the
//! provider passed explicitly.
//!
//! [`verify`] holds the custom certificate verifiers and the one path
//! validation everything runs.

pub mod verify;

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("the CA root certificate cannot be used as a trust anchor: {0}")]
    BadRoot(String),
    #[error("the certificate and private key cannot be used for TLS: {0}")]
    BadIdentity(String),
}

/// The ring provider, the only one in this tree.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root store holding exactly one trust anchor: our CA root. No system
/// roots are ever added.
pub fn root_store(root: &CertificateDer<'_>) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root.clone().into_owned())
        .map_err(|e| TlsSetupError::BadRoot(e.to_string()))?;
    Ok(roots)
}

/// Whether a TLS server asks clients for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a valid certificate.
    Required,
    /// A client may present one (it is then verified); one without is
    /// accepted as unauthenticated.
    Optional,
}

/// A TLS 1.3-only server config that presents `chain` (leaf first, then
/// its intermediates) and verifies client certificates against `root`
/// alone (chain through the intermediates the client sends, validity,
/// clientAuth EKU) and, given CRLs, refuses revoked ones at every level of
/// the chain, unknown revocation status and expired CRLs (the policy of
/// [`server_verifier`]). It never resumes a session (see below).
pub fn server_config_with_client_auth(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    root: &CertificateDer<'_>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    mode: ClientAuth,
) -> Result<ServerConfig, TlsSetupError> {
    let roots = Arc::new(root_store(root)?);
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
    if !crls.is_empty() {
        // See `server_verifier` for the revocation policy.
        builder = builder.with_crls(crls).enforce_revocation_expiration();
    }
    if mode == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsSetupError::BadRoot(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::BadIdentity(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError::BadIdentity(e.to_string()))?;
    // No TLS session resumption. A resumed handshake carries no client
    // certificate: rustls hands back the one from the original handshake,
    // unchecked, so a client whose certificate has since expired or been
    // revoked would still count as "authenticated by certificate". Without
    // tickets (stateless) or a session cache (stateful), every connection
    // is a full handshake that verifies the certificate against the clock
    // and the current CRL. The cost is one signature per connection, which
    // the protocol's own step 4 already pays.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// A TLS 1.3-only client config that trusts only `root`, checking the chain,
/// the name, the validity period and the serverAuth EKU (rustls's WebPKI
/// verifier does all four). No revocation check: used to reach the CA
/// itself, which is where CRLs come from.
pub fn client_config(root: &CertificateDer<'_>) -> Result<ClientConfig, TlsSetupError> {
    client_config_with(server_verifier(root, Vec::new())?, None)
}

/// A TLS 1.3-only client config around `verifier`, presenting `identity`
/// (certificate chain and key) if the server asks for one.
pub fn client_config_with(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::BadRoot(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsSetupError::BadIdentity(e.to_string())),
    }
}

/// The standard WebPKI server verifier over our single root: the peer's
/// intermediates come with its chain in the handshake, and only the root
/// is trusted. Given CRLs (every issuer's: see
/// [`crate::revocation::CrlSet`]), it refuses revoked certificates, refuses
/// when no CRL speaks for a certificate, and refuses an expired CRL.
///
/// The revocation policy, which a two-level PKI depends on:
/// - depth `RevocationCheckDepth::Chain`: every certificate of the path
///   but the root is checked, so a revoked intermediate takes every leaf
///   under it down with it. It is the builder's default; the one way to
///   weaken it, `only_check_end_entity_revocation()`, is never called.
/// - unknown status `UnknownStatusPolicy::Deny`: a certificate whose
///   issuer published no CRL here (an intermediate the root's CRL does not
///   cover, or a leaf whose intermediate's CRL is missing) is refused. The
///   builder's default again; `allow_unknown_revocation_status()` is never
///   called. rustls 0.23's builders have no setter for either default, so
///   `tests/tests/hierarchy_parties.rs` pins both by behaviour.
/// - expiration enforced (`enforce_revocation_expiration()`): rustls
///   would otherwise accept a CRL past its nextUpdate.
pub fn server_verifier(
    root: &CertificateDer<'_>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsSetupError> {
    let roots = Arc::new(root_store(root)?);
    let mut builder = WebPkiServerVerifier::builder_with_provider(roots, provider());
    if !crls.is_empty() {
        builder = builder.with_crls(crls).enforce_revocation_expiration();
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsSetupError::BadRoot(e.to_string()))?;
    Ok(verifier)
}

/// What went wrong in a TLS handshake, in classes a program maps to the
/// flag or file its user should change: the same "unknown issuer" is
/// `--ca` for the client and the `ca.pem` in `--dir` for the server, so
/// the wording of the fix is the program's ([`describe_tls_error`] only
/// says what happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The peer's certificate does not chain to the root we trust.
    UnknownIssuer,
    /// It chains, but does not carry the name we expected.
    NameMismatch,
    Expired,
    NotValidYet,
    Revoked,
    WrongPurpose,
    /// The peer refused us (an alert), e.g. our certificate.
    PeerRefused,
    Other,
}

/// The class of a TLS error, see [`TlsFailure`].
pub fn classify_tls_error(err: &rustls::Error) -> TlsFailure {
    match err {
        rustls::Error::InvalidCertificate(c) => {
            match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UnknownIssuer
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsFailure::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsFailure::NotValidYet
                }
                CertificateError::Revoked => TlsFailure::Revoked,
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => TlsFailure::WrongPurpose,
                _ => TlsFailure::Other,
            }
        }
        rustls::Error::AlertReceived(_) => TlsFailure::PeerRefused,
        _ => TlsFailure::Other,
    }
}

/// Why a peer's certificate was refused, in words a user can read.
///
/// rustls reports these as nested enums, some of which print as Rust
/// `Debug` dumps; a learner wants to read "unknown issuer". What to do
/// about it depends on the program's flags, so the caller adds that (see
/// [`TlsFailure`]).
pub fn describe_tls_error(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert_err) => format!(
            "certificate verification failed: {}",
            describe_certificate_error(cert_err)
        ),
        rustls::Error::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            let why = match alert {
                A::CertificateRequired => {
                    "it requires a client certificate (get one with `pki-client enroll`)"
                }
                A::UnknownCA => "it does not accept our certificate: unknown issuer",
                A::CertificateRevoked => "it does not accept our certificate: revoked",
                A::CertificateExpired => "it does not accept our certificate: expired",
                A::BadCertificate => "it does not accept our certificate",
                _ => "",
            };
            if why.is_empty() {
                format!("the peer refused the TLS connection (alert {alert:?})")
            } else {
                format!("the peer refused the TLS connection: {why} (alert {alert:?})")
            }
        }
        rustls::Error::InvalidCertRevocationList(_) => {
            "TLS error: the certificate revocation list cannot be used".into()
        }
        other => format!("TLS error: {other}"),
    }
}

/// A refused certificate in words; never a `Debug` dump.
fn describe_certificate_error(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer => {
            "unknown issuer (the certificate does not chain to the CA root trusted here)".into()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "name mismatch (expected {}, the certificate names {})",
            expected.to_str(),
            presented
                .iter()
                .map(|n| plain_name(n))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateError::NotValidForName => {
            "name mismatch (the certificate is not valid for the expected name)".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "expired (the certificate's validity has ended)".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "not valid yet (check the clocks)".into()
        }
        CertificateError::Revoked => "revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "wrong purpose (the certificate lacks the required extended key usage)".into()
        }
        CertificateError::BadSignature => {
            "bad signature (the certificate names the CA root as issuer but was not signed by it)"
                .into()
        }
        CertificateError::Other(o) if o.0.is::<verify::NotCaEndpoint>() => o.0.to_string(),
        CertificateError::UnknownRevocationStatus => {
            "unknown revocation status (no CRL speaks for the certificate)".into()
        }
        CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => "the CRL has expired".into(),
        CertificateError::BadEncoding => "the certificate is not valid DER".into(),
        _ => "the certificate was refused".into(),
    }
}

/// rustls lists presented names in their Debug form, `DnsName("a.test")`;
/// a user wants to read `a.test`.
fn plain_name(name: &str) -> &str {
    for prefix in ["DnsName(\"", "IpAddress(", "DnsName("] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return rest.trim_end_matches(')').trim_end_matches('"');
        }
    }
    name
}

/// Finds the rustls error inside an I/O error from a TLS stream, if any.
pub fn tls_error_in(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

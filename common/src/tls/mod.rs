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

/// A TLS 1.3-only server config that verifies client certificates against
/// `root` (chain, validity, clientAuth EKU) and, given CRLs, refuses revoked
/// ones and expired CRLs. It never resumes a session (see below).
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

/// The standard WebPKI server verifier over our single root. Given CRLs,
/// it refuses revoked certificates, refuses when no CRL speaks for the
/// certificate, and refuses an expired CRL (rustls accepts one unless told
/// otherwise).
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

/// Why a peer's certificate was refused, in words a user can act on.
///
/// rustls reports these as nested enums; a learner wants to read "unknown
/// issuer" and what to do about it.
pub fn describe_tls_error(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert_err) => match cert_err {
            CertificateError::UnknownIssuer => "certificate verification failed: unknown issuer (the certificate does not chain to the CA root you trust; check --ca)".into(),
            CertificateError::NotValidForNameContext { expected, presented } => format!(
                "certificate verification failed: name mismatch (expected {}, the certificate names {}; check --name)",
                expected.to_str(),
                presented
                    .iter()
                    .map(|n| plain_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CertificateError::NotValidForName => {
                "certificate verification failed: name mismatch (the certificate is not valid for the expected name; check --name)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate verification failed: expired (the certificate's validity has ended; re-enroll it)".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate verification failed: not valid yet (check the clocks)".into()
            }
            CertificateError::Revoked => "certificate verification failed: revoked".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "certificate verification failed: wrong purpose (the certificate lacks the required extended key usage)".into()
            }
            CertificateError::BadSignature => {
                "certificate verification failed: bad signature (the certificate names your CA root as issuer but was not signed by it)".into()
            }
            CertificateError::Other(o) if o.0.is::<verify::NotCaEndpoint>() => {
                format!("certificate verification failed: {}", o.0)
            }
            other => format!("certificate verification failed: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            let why = match alert {
                A::CertificateRequired => "it requires a client certificate (get one with `pki-client enroll`)",
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
        other => format!("TLS error: {other}"),
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

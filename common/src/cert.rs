//! Inspecting and verifying certificates.
//!
//! Parsing is x509-parser's; path validation is rustls-webpki's, the same
//! code rustls runs during a handshake, so "the certificate chains to the
//! root" means here exactly what it means to a TLS peer.

use std::net::IpAddr;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Errors inspecting or verifying a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not a valid X.509 certificate: {0}")]
    Parse(String),
    /// Signed by another CA: either the root in hand is the wrong one, or
    /// the certificate is from an older or foreign CA. Kept apart because
    /// the fix (the right root file) is not the fix for the rest (a new
    /// certificate).
    #[error("the certificate does not chain to this CA root (another CA issued it)")]
    OtherRoot,
    #[error("the certificate expired at {0}")]
    Expired(String),
    #[error("the certificate is not valid before {0} (check the clocks)")]
    NotYetValid(String),
    #[error("the certificate is not for {0} use (it lacks that extended key usage)")]
    WrongPurpose(Profile),
    #[error("certificate does not chain to the CA root: {0}")]
    Chain(String),
    #[error("certificate is not valid for {name}: {reason}")]
    Name { name: String, reason: String },
}

/// The facts about a certificate that the programs narrate and decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Lower-case hex, no separators, as `openssl x509 -serial` prints it.
    pub serial_hex: String,
    pub subject_cn: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    /// DER of the SubjectPublicKeyInfo, to compare keys.
    pub spki_der: Vec<u8>,
}

impl CertInfo {
    /// Parses the facts out of a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, CertError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertError::Parse(
                "trailing bytes after the certificate".into(),
            ));
        }
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match SanName::of(name) {
                    SanName::Dns(d) => dns_names.push(d),
                    SanName::Ip(ip) => ip_addresses.push(ip),
                    SanName::BadIp | SanName::Other(_) => {}
                }
            }
        }
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        Ok(CertInfo {
            serial_hex: hex::encode(cert.raw_serial()),
            subject_cn,
            dns_names,
            ip_addresses,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca,
            spki_der: cert.public_key().raw.to_vec(),
        })
    }

    /// Every name the certificate's SAN holds, DNS names first.
    pub fn names(&self) -> Vec<String> {
        self.dns_names
            .iter()
            .cloned()
            .chain(self.ip_addresses.iter().map(|ip| ip.to_string()))
            .collect()
    }

    /// The fraction of the lifetime still ahead at `now` (0.0 once expired).
    pub fn lifetime_left(&self, now: i64) -> f64 {
        let total = (self.not_after - self.not_before).max(1) as f64;
        ((self.not_after - now).max(0) as f64 / total).min(1.0)
    }

    /// When the certificate is due for renewal (Unix seconds): once two
    /// thirds of its lifetime have passed. Renewing then leaves a third of
    /// the lifetime to retry in if the CA is down, and every party that
    /// holds a certificate (the server, clients, the CA's own endpoint)
    /// uses this one rule.
    pub fn renewal_due(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before) / 3
    }

    /// The notAfter time in RFC 3339, for narration.
    pub fn not_after_rfc3339(&self) -> String {
        rfc3339(self.not_after)
    }

    /// A short serial for narration: the first 8 hex digits and an ellipsis.
    pub fn short_serial(&self) -> String {
        short_serial(&self.serial_hex)
    }
}

/// A serial shortened for log lines; the full value stays in the ledger.
pub fn short_serial(hex: &str) -> String {
    if hex.len() > 8 {
        format!("{}…", &hex[..8])
    } else {
        hex.to_string()
    }
}

/// Formats Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// One subjectAltName entry, read the same way from a certificate and from
/// a CSR: only DNS names and IP addresses mean anything to this PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanName {
    Dns(String),
    Ip(IpAddr),
    /// An iPAddress entry that is neither 4 nor 16 octets.
    BadIp,
    /// Any other kind of name, as x509-parser prints it.
    Other(String),
}

impl SanName {
    pub fn of(name: &GeneralName<'_>) -> Self {
        match name {
            GeneralName::DNSName(d) => SanName::Dns(d.to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).map_or(SanName::BadIp, |b| SanName::Ip(b.into())),
                16 => {
                    <[u8; 16]>::try_from(*bytes).map_or(SanName::BadIp, |b| SanName::Ip(b.into()))
                }
                _ => SanName::BadIp,
            },
            other => SanName::Other(other.to_string()),
        }
    }
}

/// What a certificate is for: the profile decides its extended key usage
/// at the CA, and what a party checks it for. One enum for both, so the CA
/// and the parties cannot disagree about what "server" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// TLS server: EKU serverAuth.
    Server,
    /// TLS client: EKU clientAuth.
    Client,
}

impl Profile {
    /// The name in tokens, the ledger and `--profile`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Server => "server",
            Profile::Client => "client",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Profile::Server),
            "client" => Ok(Profile::Client),
            other => Err(format!(
                "unknown profile {other:?} (expected server or client)"
            )),
        }
    }
}

/// Verifies that `leaf` chains to `root` (through `intermediates`, the
/// rest of the chain it came with: the root alone is trusted, an
/// intermediate only helps to build the path), is valid at `now`, carries
/// the EKU for `profile`, and (if given) is valid for `name`.
pub fn verify_leaf(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    root: &CertificateDer<'_>,
    profile: Profile,
    name: Option<&str>,
    now: UnixTime,
) -> Result<(), CertError> {
    let usage = match profile {
        Profile::Server => webpki::KeyUsage::server_auth(),
        Profile::Client => webpki::KeyUsage::client_auth(),
    };
    let ee = crate::tls::verify::verify_chain(leaf, root, intermediates, now, usage)
        .map_err(|e| chain_error(&e, profile))?;
    if let Some(name) = name {
        let server_name = ServerName::try_from(name).map_err(|e| CertError::Name {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        ee.verify_is_valid_for_subject_name(&server_name)
            .map_err(|e| CertError::Name {
                name: name.to_string(),
                reason: match e {
                    webpki::Error::CertNotValidForName(ctx) if ctx.presented.is_empty() => {
                        "the certificate names no DNS name or IP address".into()
                    }
                    webpki::Error::CertNotValidForName(ctx) => {
                        format!("the certificate names {}", ctx.presented.join(", "))
                    }
                    other => describe_webpki_error(&other),
                },
            })?;
    }
    Ok(())
}

/// A path-validation failure as a [`CertError`] a user can act on.
fn chain_error(e: &webpki::Error, profile: Profile) -> CertError {
    use webpki::Error as E;
    match e {
        E::BadDer | E::BadDerTime => CertError::Parse(describe_webpki_error(e)),
        E::UnknownIssuer | E::InvalidSignatureForPublicKey => CertError::OtherRoot,
        E::CertExpired { not_after, .. } => CertError::Expired(rfc3339(not_after.as_secs() as i64)),
        E::CertNotValidYet { not_before, .. } => {
            CertError::NotYetValid(rfc3339(not_before.as_secs() as i64))
        }
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            CertError::WrongPurpose(profile)
        }
        other => CertError::Chain(describe_webpki_error(other)),
    }
}

/// rustls-webpki's errors print as their Rust `Debug` form
/// (`RequiredEkuNotFoundContext { … }`); these are the words for the
/// ones a user meets, and a plain sentence for the rest.
pub fn describe_webpki_error(e: &webpki::Error) -> String {
    use webpki::Error as E;
    #[allow(deprecated)]
    let text = match e {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => "the certificate is not valid DER",
        E::UnknownIssuer => "it was issued by another CA",
        E::InvalidSignatureForPublicKey => "its signature does not verify with the root's key",
        E::CertExpired { .. } => "it has expired",
        E::CertNotValidYet { .. } => "it is not valid yet (check the clocks)",
        E::CertRevoked => "it is revoked",
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            "it lacks the extended key usage this use needs"
        }
        E::CertNotValidForName(_) => "it is not valid for the expected name",
        E::CaUsedAsEndEntity => "it is a CA certificate, used as an end-entity certificate",
        E::EndEntityUsedAsCa => "an end-entity certificate was used as a CA",
        E::UnknownRevocationStatus => "no CRL speaks for it",
        E::CrlExpired { .. } => "the CRL has expired",
        E::InvalidCertValidity => "its validity period is invalid",
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "it is signed with an unsupported algorithm"
        }
        _ => "it fails path validation against the root",
    };
    text.to_string()
}

/// The common name of a certificate's subject (or the whole subject).
fn subject_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| cert.subject().to_string())
}

/// Who signed what, leaf first, for narration: "app.pki.test (serial
/// 1a2b…) ← signed by intermediate "PKI Intermediate" (id ab12…) ←
/// signed by the root "PKI Root"". Under a one-level CA the root signs
/// the leaf directly, and the line says so.
pub fn describe_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    root: &CertificateDer<'_>,
) -> String {
    let mut out = match CertInfo::parse(leaf) {
        Ok(info) => format!(
            "{} (serial {})",
            info.names()
                .first()
                .cloned()
                .or(info.subject_cn.clone())
                .unwrap_or_default(),
            info.short_serial()
        ),
        Err(_) => "the certificate".into(),
    };
    for cert in intermediates {
        if let Ok((_, parsed)) = X509Certificate::from_der(cert) {
            out.push_str(&format!(
                " ← signed by intermediate \"{}\" (id {})",
                subject_name(&parsed),
                crate::revocation::issuer_id(&parsed)
            ));
        }
    }
    let root_name = X509Certificate::from_der(root)
        .map(|(_, r)| subject_name(&r))
        .unwrap_or_default();
    if intermediates.is_empty() {
        out.push_str(&format!(
            " ← signed by the root \"{root_name}\" directly (one-level CA)"
        ));
    } else {
        out.push_str(&format!(
            " ← signed by the root \"{root_name}\", which signs only intermediates (its key can stay offline)"
        ));
    }
    out
}

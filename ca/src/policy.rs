//! Issuance policy: what this CA will certify, decided before anything is
//! signed.
//!
//! The policy takes only two things from a CSR: the public key (after the
//! CSR's signature proves possession of it) and the names it asks for,
//! which must all be covered by the token. Every extension of the
//! certificate comes from here, never from the CSR: a CSR asking for
//! CA:TRUE or keyCertSign still gets an end-entity certificate.

use std::net::IpAddr;
use std::time::Duration;

use pki_common::cert::SanName;
use rustls::pki_types::{CertificateSigningRequestDer, ServerName};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use pki_common::cert::Profile;

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the body is not a PKCS#10 CSR in PEM or DER: {0}")]
    Unparseable(String),
    #[error("the CSR's signature does not verify, so it does not prove possession of its key")]
    BadSignature,
    #[error("unsupported key: {0}; accepted keys are ECDSA P-256 or P-384, Ed25519, and RSA 2048 to 4096 bits")]
    UnsupportedKey(String),
    #[error("the CSR asks for {name:?}, which the token does not cover (it covers: {authorized})")]
    NameNotAuthorized { name: String, authorized: String },
    #[error("invalid name {0:?}: expected a DNS name or an IP address")]
    InvalidName(String),
}

/// The kinds of subject key this CA certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa { bits: usize },
}

/// A CSR whose signature has verified: its key and the names it asks for.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// DER SubjectPublicKeyInfo, copied into the certificate as is.
    pub spki_der: Vec<u8>,
    pub key: KeyKind,
    /// Subject CN and SAN entries, as text.
    pub requested_names: Vec<String>,
}

/// Parses a CSR (PEM or DER), verifies its signature and classifies its key.
pub fn verify_csr(body: &[u8]) -> Result<VerifiedCsr, PolicyError> {
    let der: CertificateSigningRequestDer<'static> =
        pki_common::files::pem_or_der(body).map_err(PolicyError::Unparseable)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| PolicyError::Unparseable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PolicyError::Unparseable(
            "trailing bytes after the CSR".into(),
        ));
    }
    let info = &csr.certification_request_info;
    let key = classify_key(&info.subject_pki)?;
    csr.verify_signature()
        .map_err(|_| PolicyError::BadSignature)?;

    let mut requested_names = Vec::new();
    for cn in info.subject.iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|_| PolicyError::InvalidName("<non-text common name>".into()))?;
        requested_names.push(cn.to_string());
    }
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    requested_names.push(match SanName::of(name) {
                        SanName::Dns(d) | SanName::Other(d) => d,
                        SanName::Ip(ip) => ip.to_string(),
                        SanName::BadIp => {
                            return Err(PolicyError::InvalidName("<bad IP length>".into()))
                        }
                    });
                }
            }
            // Every other requested extension (basicConstraints, keyUsage,
            // EKU, anything unknown) is ignored: policy decides those.
        }
    }
    Ok(VerifiedCsr {
        spki_der: info.subject_pki.raw.to_vec(),
        key,
        requested_names,
    })
}

fn classify_key(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<KeyKind, PolicyError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyKind::EcdsaP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyKind::EcdsaP384),
            Some(c) => Err(PolicyError::UnsupportedKey(format!("elliptic curve {c}"))),
            None => Err(PolicyError::UnsupportedKey(
                "elliptic curve without a named curve".into(),
            )),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return Ok(KeyKind::Ed25519);
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
            _ => return Err(PolicyError::UnsupportedKey("malformed RSA key".into())),
        };
        if !(2048..=4096).contains(&bits) {
            return Err(PolicyError::UnsupportedKey(format!("RSA-{bits}")));
        }
        return Ok(KeyKind::Rsa { bits });
    }
    Err(PolicyError::UnsupportedKey(format!("key algorithm {alg}")))
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    match modulus.get(start) {
        Some(first) => (modulus.len() - start - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// Checks that `name` is a DNS name or an IP address; answers it normalised
/// (lower-case DNS, canonical IP text).
pub fn normalize_name(name: &str) -> Result<String, PolicyError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(d)) if !name.is_empty() => Ok(d.as_ref().to_ascii_lowercase()),
        _ => Err(PolicyError::InvalidName(name.to_string())),
    }
}

/// The certificate the policy allows, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Exactly the token's names; the first is the subject CN.
    pub names: Vec<String>,
    pub profile: Profile,
    pub key: KeyKind,
    pub not_before: i64,
    pub not_after: i64,
}

/// The CA's rules for end-entity certificates.
#[derive(Debug, Clone)]
pub struct IssuancePolicy {
    /// How long a certificate is valid (30 days by default).
    pub lifetime: Duration,
    /// How far notBefore lies in the past, to allow for clock skew.
    pub backdate: Duration,
    /// How long each CRL is valid (nextUpdate − thisUpdate). A new one is
    /// published after half of it, and on every revocation.
    pub crl_interval: Duration,
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        IssuancePolicy {
            lifetime: Duration::from_secs(30 * 24 * 3600),
            backdate: Duration::from_secs(5 * 60),
            crl_interval: Duration::from_secs(24 * 3600),
        }
    }
}

impl IssuancePolicy {
    /// Decides the certificate for `csr` under a token authorizing `names`
    /// for `profile`. The lifetime never runs past `root_not_after`.
    pub fn decide(
        &self,
        csr: &VerifiedCsr,
        names: &[String],
        profile: Profile,
        root_not_after: i64,
        now: i64,
    ) -> Result<Decision, PolicyError> {
        for requested in &csr.requested_names {
            let normalized =
                normalize_name(requested).map_err(|_| PolicyError::NameNotAuthorized {
                    name: requested.clone(),
                    authorized: names.join(", "),
                })?;
            if !names.contains(&normalized) {
                return Err(PolicyError::NameNotAuthorized {
                    name: requested.clone(),
                    authorized: names.join(", "),
                });
            }
        }
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        // Never backdate by more than a tenth of the lifetime: a short-lived
        // certificate would otherwise be born two thirds through its life
        // and due for renewal at once.
        let backdate = i64::try_from(self.backdate.as_secs())
            .unwrap_or(0)
            .min(lifetime / 10);
        Ok(Decision {
            names: names.to_vec(),
            profile,
            key: csr.key,
            not_before: now.saturating_sub(backdate),
            not_after: now.saturating_add(lifetime).min(root_not_after),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_with(names: &[&str]) -> VerifiedCsr {
        VerifiedCsr {
            spki_der: vec![],
            key: KeyKind::EcdsaP256,
            requested_names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn authorized() -> Vec<String> {
        vec!["app.pki.test".into(), "127.0.0.1".into()]
    }

    #[test]
    fn certificate_names_exactly_what_the_token_authorizes() {
        let d = IssuancePolicy::default()
            .decide(
                &csr_with(&["app.pki.test"]),
                &authorized(),
                Profile::Server,
                i64::MAX,
                1000,
            )
            .unwrap();
        assert_eq!(d.names, authorized());
        assert_eq!(d.not_before, 1000 - 300);
        assert_eq!(d.not_after, 1000 + 30 * 24 * 3600);
    }

    #[test]
    fn a_name_outside_the_token_is_refused() {
        for bad in ["evil.pki.test", "10.0.0.1", "email@x", "*.pki.test"] {
            let err = IssuancePolicy::default()
                .decide(
                    &csr_with(&["app.pki.test", bad]),
                    &authorized(),
                    Profile::Server,
                    i64::MAX,
                    0,
                )
                .unwrap_err();
            assert!(
                matches!(&err, PolicyError::NameNotAuthorized { name, .. } if name == bad),
                "{err}"
            );
        }
    }

    #[test]
    fn lifetime_never_runs_past_the_root() {
        let d = IssuancePolicy::default()
            .decide(&csr_with(&[]), &authorized(), Profile::Client, 5000, 1000)
            .unwrap();
        assert_eq!(d.not_after, 5000);
    }

    #[test]
    fn names_are_validated_and_normalized() {
        assert_eq!(normalize_name("App.PKI.test").unwrap(), "app.pki.test");
        assert_eq!(normalize_name("::1").unwrap(), "::1");
        assert!(normalize_name("").is_err());
        assert!(normalize_name("bad name").is_err());
    }

    #[test]
    fn garbage_is_not_a_csr() {
        assert!(matches!(
            verify_csr(b"garbage"),
            Err(PolicyError::Unparseable(_))
        ));
        assert!(matches!(
            verify_csr(
                b"-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----\n"
            ),
            Err(PolicyError::Unparseable(_))
        ));
    }
}

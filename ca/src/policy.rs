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
    OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ECDSA_WITH_SHA512, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use pki_common::cert::Profile;

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The sentence says what the body was and how to send a CSR; it
    /// never quotes the body or the parser's internals.
    #[error("{0}")]
    Unparseable(String),
    #[error("the CSR's signature does not verify, so it does not prove possession of its key")]
    BadSignature,
    #[error("unsupported key: {0}; accepted keys are ECDSA P-256 or P-384, Ed25519, and RSA 2048 to 4096 bits")]
    UnsupportedKey(String),
    #[error("the CSR asks for {name:?}, which the token does not cover (it covers: {authorized})")]
    NameNotAuthorized { name: String, authorized: String },
    #[error("invalid name {0:?}: expected a DNS name or an IP address")]
    InvalidName(String),
    #[error("unsupported CSR signature: {0}; sign the CSR with SHA-256, SHA-384 or SHA-512 (RSA PKCS#1 v1.5 or ECDSA), or with Ed25519")]
    UnsupportedSignature(String),
    /// The intermediate's NameConstraints do not permit the name: a
    /// certificate for it would fail verification everywhere.
    #[error("{name:?} is outside the names the CA's intermediate may certify (its name constraints permit {permitted}); use a name inside them, or issue an intermediate that permits it where the root key is (`pki-ca intermediate --permit-dns …`)")]
    NameNotPermitted { name: String, permitted: String },
    /// `issuer_not_after` is the issuing intermediate's notAfter, which
    /// never runs past the root's.
    #[error("the CA's issuing intermediate expires at {issuer_not_after}, so a certificate issued now would be valid for only {remaining_secs} s, below the minimum of {minimum_secs} s; the operator must issue a new intermediate where the root key is (`pki-ca intermediate`), or, if the root itself expires then, create a new root (`pki-ca init --force`) and re-enroll every party")]
    IssuerExpiring {
        issuer_not_after: String,
        remaining_secs: i64,
        minimum_secs: i64,
    },
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
    let der: CertificateSigningRequestDer<'static> = pki_common::files::pem_or_der(body)
        .map_err(|why| unparseable(&format!("the body is not a usable PEM CSR: {why}")))?;
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|_| not_a_csr(body))?;
    if !rest.is_empty() {
        return Err(unparseable("the body has bytes after the CSR"));
    }
    let info = &csr.certification_request_info;
    let key = classify_key(&info.subject_pki)?;
    check_signature_algorithm(&csr.signature_algorithm)?;
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

/// How to send a CSR, the fix for every unparseable body.
const SEND_A_CSR: &str =
    "send the PEM or DER CSR as the body, e.g. with `curl --data-binary @req.pem`";

fn unparseable(what: &str) -> PolicyError {
    PolicyError::Unparseable(format!("{what}; {SEND_A_CSR}"))
}

/// What a body that does not parse as DER was, as far as a person cares.
fn not_a_csr(body: &[u8]) -> PolicyError {
    let start = body.trim_ascii_start();
    unparseable(if body.is_empty() {
        "the body is empty"
    } else if start.starts_with(b"{") || start.starts_with(b"[") {
        "the body is JSON, not a CSR"
    } else if start.starts_with(b"-----BEGIN") {
        "the body's PEM does not hold a CSR"
    } else {
        "the body is not a PEM or DER CSR"
    })
}

/// The CSR signature algorithms accepted: SHA-2 with RSA PKCS#1 v1.5 or
/// ECDSA, and Ed25519. SHA-1 (and MD5) are refused: a collision-prone hash
/// makes the proof of possession forgeable in principle, and no current
/// tool needs it. RSA-PSS is not on the list either: no tool needs it to
/// sign a CSR, and its parameters would need checks of their own.
fn check_signature_algorithm(
    alg: &x509_parser::x509::AlgorithmIdentifier<'_>,
) -> Result<(), PolicyError> {
    let oid = &alg.algorithm;
    let accepted = [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ECDSA_WITH_SHA512,
        OID_SIG_ED25519,
    ];
    if accepted.contains(oid) {
        return Ok(());
    }
    let name = match oid {
        o if *o == OID_PKCS1_SHA1WITHRSA => "sha1WithRSAEncryption (SHA-1)".to_string(),
        o if o.to_id_string() == "1.2.840.10045.4.1" => "ecdsa-with-SHA1 (SHA-1)".to_string(),
        o => format!("signature algorithm {o}"),
    };
    Err(PolicyError::UnsupportedSignature(name))
}

/// Classifies the CSR's key, and refuses any key the signer could not put
/// into a certificate as it came: the AlgorithmIdentifier must be exactly
/// the one its algorithm specifies (RSA with NULL parameters, Ed25519
/// without any, ECDSA with a named curve), and the key must be one rcgen
/// accepts. Every key-shaped input is judged here, so that no client key
/// reaches the signer and fails there as an internal error.
fn classify_key(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<KeyKind, PolicyError> {
    let kind = classify_algorithm(spki)?;
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|e| PolicyError::UnsupportedKey(format!("a key the CA cannot certify ({e})")))?;
    Ok(kind)
}

fn classify_algorithm(
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
        // RFC 8410 §3: the parameters MUST be absent.
        if spki.algorithm.parameters.is_some() {
            return Err(PolicyError::UnsupportedKey(
                "an Ed25519 key with algorithm parameters (RFC 8410 requires none)".into(),
            ));
        }
        return Ok(KeyKind::Ed25519);
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        return classify_rsa(spki);
    }
    Err(PolicyError::UnsupportedKey(format!("key algorithm {alg}")))
}

/// An RSA key: NULL parameters, 2048 to 4096 bits, exponent 65537.
fn classify_rsa(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<KeyKind, PolicyError> {
    // RFC 3279 §2.3.1: the parameters MUST be present and NULL.
    let null = spki.algorithm.parameters.as_ref().is_some_and(|p| {
        p.tag() == x509_parser::der_parser::asn1_rs::Tag::Null && p.data.is_empty()
    });
    if !null {
        return Err(PolicyError::UnsupportedKey(
            "an RSA key without NULL algorithm parameters (RFC 3279 requires them)".into(),
        ));
    }
    let rsa = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa,
        _ => return Err(PolicyError::UnsupportedKey("malformed RSA key".into())),
    };
    let bits = modulus_bits(rsa.modulus);
    if !(2048..=4096).contains(&bits) {
        return Err(PolicyError::UnsupportedKey(format!("RSA-{bits}")));
    }
    // 65537 only: small exponents have a history of attacks on weak
    // padding, and every current tool makes 65537.
    let exponent = strip_leading_zeros(rsa.exponent);
    if exponent != [0x01, 0x00, 0x01] {
        return Err(PolicyError::UnsupportedKey(format!(
            "RSA public exponent 0x{} (only 65537 is accepted)",
            hex::encode(exponent)
        )));
    }
    Ok(KeyKind::Rsa { bits })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
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
    /// The least validity a certificate may be issued with (1 hour by
    /// default; never more than `lifetime`). A certificate never outlives
    /// the root, so near the root's expiry every certificate is cut short;
    /// below this minimum the CA refuses to issue (`issuer_expiring`)
    /// rather than hand out certificates that expire at once, or already
    /// have.
    pub min_validity: Duration,
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        IssuancePolicy {
            lifetime: Duration::from_secs(30 * 24 * 3600),
            backdate: Duration::from_secs(5 * 60),
            crl_interval: Duration::from_secs(24 * 3600),
            min_validity: Duration::from_secs(3600),
        }
    }
}

impl IssuancePolicy {
    /// Decides the certificate for `csr` under a token authorizing `names`
    /// for `profile`. The lifetime never runs past `issuer_not_after` (the issuing
    /// intermediate's notAfter), and a
    /// certificate that would be left with less than `min_validity` is
    /// refused ([`PolicyError::IssuerExpiring`]).
    pub fn decide(
        &self,
        csr: &VerifiedCsr,
        names: &[String],
        profile: Profile,
        issuer_not_after: i64,
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
        let not_after = now.saturating_add(lifetime).min(issuer_not_after);
        self.check_min_validity(not_after, issuer_not_after, now)?;
        Ok(Decision {
            names: names.to_vec(),
            profile,
            key: csr.key,
            not_before: now.saturating_sub(backdate),
            not_after,
        })
    }

    /// Refuses a certificate that would be valid from `now` to `not_after`
    /// for less than the minimum. The minimum is `min_validity`, or the
    /// lifetime itself when that is shorter, so a policy of short-lived
    /// certificates still issues: only the cut by the root's expiry can
    /// bring a certificate below it.
    fn check_min_validity(
        &self,
        not_after: i64,
        issuer_not_after: i64,
        now: i64,
    ) -> Result<(), PolicyError> {
        let minimum = self.min_validity.min(self.lifetime).as_secs();
        let minimum = i64::try_from(minimum).unwrap_or(i64::MAX);
        let remaining = not_after.saturating_sub(now);
        if remaining < minimum {
            return Err(PolicyError::IssuerExpiring {
                issuer_not_after: pki_common::cert::rfc3339(issuer_not_after),
                remaining_secs: remaining.max(0),
                minimum_secs: minimum,
            });
        }
        Ok(())
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
    fn near_the_roots_expiry_nothing_is_issued() {
        let policy = IssuancePolicy::default();
        // One second short of the default hour, and an expired root.
        for root_not_after in [1000 + 3599, 1000, 10] {
            let err = policy
                .decide(
                    &csr_with(&[]),
                    &authorized(),
                    Profile::Client,
                    root_not_after,
                    1000,
                )
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    PolicyError::IssuerExpiring {
                        minimum_secs: 3600,
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert!(policy
            .decide(
                &csr_with(&[]),
                &authorized(),
                Profile::Client,
                1000 + 3600,
                1000
            )
            .is_ok());
        // A lifetime shorter than the minimum is its own minimum.
        let short = IssuancePolicy {
            lifetime: Duration::from_secs(6),
            ..IssuancePolicy::default()
        };
        assert!(short
            .decide(
                &csr_with(&[]),
                &authorized(),
                Profile::Client,
                i64::MAX,
                1000
            )
            .is_ok());
        assert!(short
            .decide(&csr_with(&[]), &authorized(), Profile::Client, 1005, 1000)
            .is_err());
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

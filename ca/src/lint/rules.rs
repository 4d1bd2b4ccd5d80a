//! The lints: one small function per rule, each citing the RFC 5280 (or
//! profile) clause it enforces. Each answers `Err(why)` in words an
//! operator can act on; [`LINTS`] names them.
//!
//! The profile is this CA's: an end-entity certificate (RFC 5280 §4.2.1.9)
//! for TLS, its names in the SAN only as the token authorized them, its
//! key usage and EKU fixed by the key type and the profile, pointers to
//! revocation information when `--public-url` is set, and nothing else.

use std::net::IpAddr;

use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension, X509Extension};
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS, OID_PKIX_AUTHORITY_INFO_ACCESS,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CRL_DISTRIBUTION_POINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Version};

use super::Expected;
use crate::policy::KeyKind;
use pki_common::cert::Profile;

type Check = fn(&X509Certificate<'_>, &Expected<'_>) -> Result<(), String>;

/// A named lint.
pub(super) struct Lint {
    pub name: &'static str,
    pub check: Check,
}

/// Every lint run on the linting certificate, in order.
pub(super) const LINTS: &[Lint] = &[
    Lint {
        name: "version_3",
        check: version_3,
    },
    Lint {
        name: "serial_number",
        check: serial_number,
    },
    Lint {
        name: "signature_algorithm",
        check: signature_algorithm,
    },
    Lint {
        name: "issuer_name",
        check: issuer_name,
    },
    Lint {
        name: "validity_within_issuer",
        check: validity_within_issuer,
    },
    Lint {
        name: "validity_max",
        check: validity_max,
    },
    Lint {
        name: "subject_key",
        check: subject_key,
    },
    Lint {
        name: "basic_constraints",
        check: basic_constraints,
    },
    Lint {
        name: "key_usage",
        check: key_usage,
    },
    Lint {
        name: "extended_key_usage",
        check: extended_key_usage,
    },
    Lint {
        name: "subject_alt_name",
        check: subject_alt_name,
    },
    Lint {
        name: "subject_common_name",
        check: subject_common_name,
    },
    Lint {
        name: "unknown_extension",
        check: unknown_extension,
    },
    Lint {
        name: "duplicate_extension",
        check: duplicate_extension,
    },
    Lint {
        name: "critical_extension",
        check: critical_extension,
    },
    Lint {
        name: "authority_key_id",
        check: authority_key_id,
    },
    Lint {
        name: "subject_key_id",
        check: subject_key_id,
    },
    Lint {
        name: "crl_distribution_points",
        check: crl_distribution_points,
    },
    Lint {
        name: "authority_info_access",
        check: authority_info_access,
    },
];

/// What the lints need to know of the issuing intermediate, read once
/// from its certificate when it is loaded.
#[derive(Debug, Clone)]
pub struct IssuerFacts {
    /// Its subject, DER: every leaf's issuer field.
    pub subject_der: Vec<u8>,
    /// Its subjectKeyIdentifier: every leaf's AKI.
    pub key_id: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    /// The signature algorithm its key makes, or why none is known.
    signature: Result<(Oid<'static>, bool), String>,
}

impl IssuerFacts {
    /// The facts of the CA certificate `der`, whose SKI is `key_id`.
    pub fn of(der: &[u8], key_id: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        Ok(IssuerFacts {
            subject_der: cert.subject().as_raw().to_vec(),
            key_id: key_id.to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            signature: signature_for(cert.public_key()),
        })
    }
}

/// The AlgorithmIdentifier a key of this type signs with in this CA
/// (RFC 5758 §3.2 for ECDSA, RFC 8410 §3 for Ed25519: no parameters; RFC
/// 4055 §5 for RSA: NULL parameters), and whether it has NULL parameters.
fn signature_for(spki: &SubjectPublicKeyInfo<'_>) -> Result<(Oid<'static>, bool), String> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok((OID_SIG_ECDSA_WITH_SHA256, false)),
            Some(c) if c == OID_NIST_EC_P384 => Ok((OID_SIG_ECDSA_WITH_SHA384, false)),
            other => Err(format!(
                "the issuer's key is on an unsupported curve {other:?}"
            )),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return Ok((OID_SIG_ED25519, false));
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        return Ok((OID_PKCS1_SHA256WITHRSA, true));
    }
    Err(format!("the issuer's key is of an unsupported type {alg}"))
}

/// RFC 5280 §4.1.2.1: a certificate with extensions MUST be version 3.
fn version_3(cert: &X509Certificate<'_>, _: &Expected<'_>) -> Result<(), String> {
    match cert.version() {
        X509Version::V3 => Ok(()),
        v => Err(format!("version {} (value {}), not 3", v.0 + 1, v.0)),
    }
}

/// RFC 5280 §4.1.2.2: a positive integer of at most 20 octets; CA/Browser
/// Forum Baseline Requirements §7.1: at least 64 bits from a CSPRNG. One
/// certificate cannot show randomness, but it can show room for it: a
/// positive INTEGER holding 64 random bits needs 9 content octets (the
/// sign bit takes one). The CA draws 127 bits with a non-zero top octet,
/// so its serials are always 16 octets.
fn serial_number(cert: &X509Certificate<'_>, _: &Expected<'_>) -> Result<(), String> {
    let raw = cert.raw_serial();
    match raw.first() {
        None => Err("empty serial".into()),
        Some(b) if b & 0x80 != 0 => Err(format!("negative serial {}", hex::encode(raw))),
        _ if raw.iter().all(|b| *b == 0) => Err("serial zero".into()),
        _ if raw.len() > 20 => Err(format!("serial of {} octets, over 20", raw.len())),
        _ if raw.len() < 9 => Err(format!(
            "serial {} of {} octets cannot hold 64 random bits (9 octets at least)",
            hex::encode(raw),
            raw.len()
        )),
        _ => Ok(()),
    }
}

/// RFC 5280 §4.1.1.2 and §4.1.2.3: the outer signatureAlgorithm equals
/// the TBS's `signature`, and (profile) it is the one the issuer's key
/// makes, with the parameters its RFC requires.
fn signature_algorithm(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let (outer, inner) = (&cert.signature_algorithm, &cert.tbs_certificate.signature);
    if outer != inner {
        return Err(format!(
            "the outer signatureAlgorithm {} differs from the TBS's {}",
            outer.algorithm, inner.algorithm
        ));
    }
    let (oid, null) = e.issuer.signature.as_ref().map_err(String::clone)?;
    if outer.algorithm != *oid || !parameters_ok(outer, *null) {
        return Err(format!(
            "{} with parameters {:?}, but the issuer's key signs with {oid}{}",
            outer.algorithm,
            outer.parameters.as_ref().map(|p| p.tag()),
            if *null {
                " with NULL parameters"
            } else {
                " without parameters"
            }
        ));
    }
    Ok(())
}

fn parameters_ok(alg: &AlgorithmIdentifier<'_>, null: bool) -> bool {
    match &alg.parameters {
        None => !null,
        Some(p) => null && p.tag() == x509_parser::der_parser::asn1_rs::Tag::Null,
    }
}

/// RFC 5280 §4.1.2.4: the issuer field is the issuing CA's subject.
fn issuer_name(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    if cert.issuer().as_raw() == e.issuer.subject_der.as_slice() {
        return Ok(());
    }
    Err(format!(
        "issuer {} is not the intermediate's subject",
        cert.issuer()
    ))
}

/// RFC 5280 §4.1.2.5 (notBefore before notAfter) and the profile: the
/// certificate is valid only while its issuer is, so it never outlives
/// the intermediate (nor, through it, the root) and is never born before
/// it.
fn validity_within_issuer(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let (nb, na) = validity(cert);
    let rfc = pki_common::cert::rfc3339;
    if nb >= na {
        return Err(format!(
            "notBefore {} is not before notAfter {}",
            rfc(nb),
            rfc(na)
        ));
    }
    if nb < e.issuer.not_before || na > e.issuer.not_after {
        return Err(format!(
            "valid {} to {}, outside its issuer's {} to {}",
            rfc(nb),
            rfc(na),
            rfc(e.issuer.not_before),
            rfc(e.issuer.not_after)
        ));
    }
    Ok(())
}

/// Profile (the policy's lifetime plus its backdating for clock skew):
/// no certificate is valid for longer.
fn validity_max(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let (nb, na) = validity(cert);
    let length = na.saturating_sub(nb);
    if length > e.max_validity_secs {
        return Err(format!(
            "valid for {length} s, over the profile's maximum of {} s",
            e.max_validity_secs
        ));
    }
    Ok(())
}

fn validity(cert: &X509Certificate<'_>) -> (i64, i64) {
    let v = cert.validity();
    (v.not_before.timestamp(), v.not_after.timestamp())
}

/// Profile (the CSR intake's rules, RFC 3279 §2.3.1, RFC 5480 §2.1.1, RFC
/// 8410 §3): the subject key is the one the CSR proved possession of, of
/// an accepted type and size: ECDSA P-256 or P-384 on a named curve,
/// Ed25519 without parameters, RSA 2048 to 4096 bits with NULL parameters
/// and exponent 65537.
fn subject_key(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let spki = cert.public_key();
    if spki.raw != e.spki_der {
        return Err("the subject key is not the key the CSR proved possession of".into());
    }
    let alg = &spki.algorithm;
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            other => Err(format!("an EC key on curve {other:?}, not P-256 or P-384")),
        };
    }
    if alg.algorithm == OID_SIG_ED25519 {
        return match alg.parameters {
            None => Ok(()),
            Some(_) => Err("an Ed25519 key with parameters".into()),
        };
    }
    if alg.algorithm == OID_PKCS1_RSAENCRYPTION && parameters_ok(alg, true) {
        return rsa_key(spki);
    }
    Err(format!(
        "a key of type {} the profile does not allow",
        alg.algorithm
    ))
}

fn rsa_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), String> {
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
        return Err("a malformed RSA key".into());
    };
    let modulus: Vec<u8> = rsa
        .modulus
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    let bits = modulus
        .first()
        .map_or(0, |top| modulus.len() * 8 - top.leading_zeros() as usize);
    let exponent: Vec<u8> = rsa
        .exponent
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    if !(2048..=4096).contains(&bits) {
        return Err(format!("an RSA-{bits} key, outside 2048 to 4096 bits"));
    }
    if exponent != [1, 0, 1] {
        return Err(format!(
            "RSA exponent 0x{}, not 65537",
            hex::encode(exponent)
        ));
    }
    Ok(())
}

/// RFC 5280 §4.2.1.9: basicConstraints, critical, cA FALSE and no path
/// length, on every leaf (the profile puts it there explicitly, so no
/// relying party has to guess).
fn basic_constraints(cert: &X509Certificate<'_>, _: &Expected<'_>) -> Result<(), String> {
    let Some(ext) = find(cert, &OID_X509_EXT_BASIC_CONSTRAINTS) else {
        return Err("no basicConstraints".into());
    };
    match ext.parsed_extension() {
        ParsedExtension::BasicConstraints(bc) if bc.ca => Err("cA is TRUE on a leaf".into()),
        ParsedExtension::BasicConstraints(bc) if bc.path_len_constraint.is_some() => {
            Err("a pathLenConstraint on a leaf".into())
        }
        ParsedExtension::BasicConstraints(_) if !ext.critical => {
            Err("basicConstraints is not critical".into())
        }
        ParsedExtension::BasicConstraints(_) => Ok(()),
        other => Err(format!("basicConstraints does not parse: {other:?}")),
    }
}

/// RFC 5280 §4.2.1.3 (SHOULD be critical; keyCertSign only for CAs) and
/// the profile: digitalSignature, plus keyEncipherment for an RSA key
/// (TLS 1.2 RSA key exchange), and nothing else.
fn key_usage(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let Some(ext) = find(cert, &OID_X509_EXT_KEY_USAGE) else {
        return Err("no keyUsage".into());
    };
    let ParsedExtension::KeyUsage(ku) = ext.parsed_extension() else {
        return Err("keyUsage does not parse".into());
    };
    let mut want = vec!["digitalSignature"];
    if matches!(e.key, KeyKind::Rsa { .. }) {
        want.push("keyEncipherment");
    }
    let have: Vec<&str> = [
        ("digitalSignature", ku.digital_signature()),
        ("nonRepudiation", ku.non_repudiation()),
        ("keyEncipherment", ku.key_encipherment()),
        ("dataEncipherment", ku.data_encipherment()),
        ("keyAgreement", ku.key_agreement()),
        ("keyCertSign", ku.key_cert_sign()),
        ("cRLSign", ku.crl_sign()),
        ("encipherOnly", ku.encipher_only()),
        ("decipherOnly", ku.decipher_only()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if have != want {
        return Err(format!("keyUsage {have:?}, the profile says {want:?}"));
    }
    if !ext.critical {
        return Err("keyUsage is not critical".into());
    }
    Ok(())
}

/// RFC 5280 §4.2.1.12 and the profile: exactly the profile's purpose
/// (serverAuth or clientAuth), and for the CA's own certificate
/// serverAuth plus the CA-endpoint EKU, which no other certificate may
/// carry; never anyExtendedKeyUsage.
fn extended_key_usage(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    use pki_common::tls::verify::CA_ENDPOINT_EKU;
    let Some(ext) = find(cert, &OID_X509_EXT_EXTENDED_KEY_USAGE) else {
        return Err("no extendedKeyUsage".into());
    };
    let ParsedExtension::ExtendedKeyUsage(eku) = ext.parsed_extension() else {
        return Err("extendedKeyUsage does not parse".into());
    };
    let ca_endpoint = eku.other.len() == 1 && eku.other[0].as_bytes() == CA_ENDPOINT_EKU;
    let others_ok = eku.other.is_empty() || (e.ca_endpoint && ca_endpoint);
    let exact = match e.profile {
        Profile::Server => eku.server_auth && !eku.client_auth,
        Profile::Client => eku.client_auth && !eku.server_auth,
    };
    let rest = eku.any || eku.code_signing || eku.email_protection;
    let rest = rest || eku.time_stamping || eku.ocsp_signing;
    if !exact || rest || !others_ok || e.ca_endpoint != ca_endpoint {
        return Err(format!(
            "extendedKeyUsage {eku:?}, the profile says {}{}",
            e.profile,
            if e.ca_endpoint {
                " and the CA-endpoint EKU"
            } else {
                " only"
            }
        ));
    }
    Ok(())
}

/// RFC 5280 §4.2.1.6 and the profile: a SAN (non-critical, since the
/// subject is not empty) holding exactly the authorized names, each once,
/// as DNS names and IP addresses only.
fn subject_alt_name(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let Some(ext) = find(cert, &OID_X509_EXT_SUBJECT_ALT_NAME) else {
        return Err("no subjectAltName".into());
    };
    let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
        return Err("subjectAltName does not parse".into());
    };
    let mut have = Vec::new();
    for name in &san.general_names {
        have.push(match name {
            GeneralName::DNSName(d) => d.to_ascii_lowercase(),
            GeneralName::IPAddress(b) => ip_text(b).ok_or("an IP address of a bad length")?,
            other => return Err(format!("a SAN entry {other} that is no DNS name or IP")),
        });
    }
    let mut want = e.names.to_vec();
    let mut sorted = have.clone();
    sorted.sort();
    want.sort();
    if sorted != want || sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!(
            "SAN names {}, the token authorized {}",
            have.join(", "),
            e.names.join(", ")
        ));
    }
    if ext.critical != cert.subject().as_raw().len().le(&2) {
        return Err("SAN criticality does not match the subject's emptiness".into());
    }
    Ok(())
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

/// CA/Browser Forum Baseline Requirements §7.1.4.3 (RFC 6125 §6.4.4
/// gives CN the lowest priority): a subject commonName, if any, is one of
/// the SAN's names.
fn subject_common_name(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    for cn in cert.subject().iter_common_name() {
        let cn = cn.as_str().map_err(|_| "a commonName that is not text")?;
        let normal = match cn.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => cn.to_ascii_lowercase(),
        };
        if !e.names.contains(&normal) {
            return Err(format!(
                "commonName {cn:?} is not among the authorized names"
            ));
        }
    }
    Ok(())
}

/// The extensions the profile puts into a leaf, and whether each is
/// critical there.
const PROFILE_EXTENSIONS: [(&Oid<'static>, bool); 8] = [
    (&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, false),
    (&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER, false),
    (&OID_X509_EXT_SUBJECT_ALT_NAME, false),
    (&OID_X509_EXT_KEY_USAGE, true),
    (&OID_X509_EXT_EXTENDED_KEY_USAGE, false),
    (&OID_X509_EXT_BASIC_CONSTRAINTS, true),
    (&OID_X509_EXT_CRL_DISTRIBUTION_POINTS, false),
    (&OID_PKIX_AUTHORITY_INFO_ACCESS, false),
];

/// Profile: no extension it does not list (a CSR's extensions never reach
/// the certificate; an unknown one here is the builder's).
fn unknown_extension(cert: &X509Certificate<'_>, _: &Expected<'_>) -> Result<(), String> {
    let unknown: Vec<String> = cert
        .extensions()
        .iter()
        .filter(|x| !PROFILE_EXTENSIONS.iter().any(|(oid, _)| **oid == x.oid))
        .map(|x| x.oid.to_id_string())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!(
        "extensions outside the profile: {}",
        unknown.join(", ")
    ))
}

/// RFC 5280 §4.2: a certificate MUST NOT include more than one instance
/// of a particular extension.
fn duplicate_extension(cert: &X509Certificate<'_>, _: &Expected<'_>) -> Result<(), String> {
    let exts = cert.extensions();
    for (i, x) in exts.iter().enumerate() {
        if exts[..i].iter().any(|y| y.oid == x.oid) {
            return Err(format!("extension {} appears twice", x.oid.to_id_string()));
        }
    }
    Ok(())
}

/// RFC 5280 §4.2 (a relying party MUST reject a certificate with a
/// critical extension it does not recognise) and the profile: only
/// basicConstraints and keyUsage are critical; §4.2.1.1, §4.2.1.2,
/// §4.2.1.13 and §4.2.2.1 forbid it for AKI, SKI, CRLDP and AIA.
fn critical_extension(cert: &X509Certificate<'_>, _: &Expected<'_>) -> Result<(), String> {
    let empty_subject = cert.subject().as_raw().len() <= 2;
    let wrong: Vec<String> = cert
        .extensions()
        .iter()
        .filter(|x| x.critical)
        .filter(|x| {
            let san = x.oid == OID_X509_EXT_SUBJECT_ALT_NAME && empty_subject;
            let listed = PROFILE_EXTENSIONS.iter().any(|(o, c)| **o == x.oid && *c);
            !(listed || san)
        })
        .map(|x| x.oid.to_id_string())
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!(
        "critical extensions the profile does not list as critical: {}",
        wrong.join(", ")
    ))
}

/// RFC 5280 §4.2.1.1: an AKI, non-critical, whose keyIdentifier is the
/// issuer's SKI (and nothing else, as the profile writes it), so relying
/// parties find the right issuer across a rollover.
fn authority_key_id(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let Some(ext) = find(cert, &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER) else {
        return Err("no authorityKeyIdentifier".into());
    };
    let ParsedExtension::AuthorityKeyIdentifier(aki) = ext.parsed_extension() else {
        return Err("authorityKeyIdentifier does not parse".into());
    };
    let id = aki.key_identifier.as_ref().map(|k| k.0);
    if id != Some(e.issuer.key_id.as_slice()) {
        return Err(format!(
            "keyIdentifier {}, but the issuer's SKI is {}",
            id.map(hex::encode).unwrap_or_else(|| "absent".into()),
            hex::encode(&e.issuer.key_id)
        ));
    }
    if aki.authority_cert_issuer.is_some() || aki.authority_cert_serial.is_some() {
        return Err("an authorityCertIssuer or serial the profile does not write".into());
    }
    Ok(())
}

/// RFC 5280 §4.2.1.2: an SKI (SHOULD in end-entity certificates; this
/// profile always writes one), non-empty.
fn subject_key_id(cert: &X509Certificate<'_>, _: &Expected<'_>) -> Result<(), String> {
    match find(cert, &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER).map(|x| x.parsed_extension()) {
        Some(ParsedExtension::SubjectKeyIdentifier(id)) if !id.0.is_empty() => Ok(()),
        Some(ParsedExtension::SubjectKeyIdentifier(_)) => Err("an empty SKI".into()),
        Some(_) => Err("subjectKeyIdentifier does not parse".into()),
        None => Err("no subjectKeyIdentifier".into()),
    }
}

/// RFC 5280 §4.2.1.13 and `--public-url`: with a public URL, exactly one
/// distribution point, a full name holding the issuer's CRL URL; without
/// one, no CRL Distribution Points.
fn crl_distribution_points(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let found = find(cert, &OID_X509_EXT_CRL_DISTRIBUTION_POINTS);
    let uris = match found.map(|x| x.parsed_extension()) {
        None => None,
        Some(ParsedExtension::CRLDistributionPoints(points)) => Some(
            points
                .iter()
                .map(|p| match &p.distribution_point {
                    Some(DistributionPointName::FullName(names)) if p.reasons.is_none() => names
                        .iter()
                        .map(|n| match n {
                            GeneralName::URI(u) => u.to_string(),
                            other => format!("<{other}>"),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => "<not a plain full name>".into(),
                })
                .collect::<Vec<_>>(),
        ),
        Some(_) => return Err("CRL Distribution Points does not parse".into()),
    };
    let want = e.crl_url.as_ref().map(|u| vec![u.clone()]);
    if uris != want {
        return Err(format!(
            "CRL Distribution Points {uris:?}, configured {want:?}"
        ));
    }
    Ok(())
}

/// RFC 5280 §4.2.2.1 and `--public-url`: with a public URL, exactly one
/// caIssuers access description naming the issuer's certificate URL;
/// without one, no AIA.
fn authority_info_access(cert: &X509Certificate<'_>, e: &Expected<'_>) -> Result<(), String> {
    let found = find(cert, &OID_PKIX_AUTHORITY_INFO_ACCESS);
    let have = match found.map(|x| x.parsed_extension()) {
        None => None,
        Some(ParsedExtension::AuthorityInfoAccess(aia)) => Some(
            aia.accessdescs
                .iter()
                .map(|d| match &d.access_location {
                    GeneralName::URI(u)
                        if d.access_method == OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS =>
                    {
                        u.to_string()
                    }
                    other => format!("<{} {other}>", d.access_method),
                })
                .collect::<Vec<_>>(),
        ),
        Some(_) => return Err("authorityInfoAccess does not parse".into()),
    };
    let want = e.issuer_url.as_ref().map(|u| vec![u.clone()]);
    if have != want {
        return Err(format!("AIA caIssuers {have:?}, configured {want:?}"));
    }
    Ok(())
}

/// The first extension with `oid`.
fn find<'c, 'a>(cert: &'c X509Certificate<'a>, oid: &Oid<'_>) -> Option<&'c X509Extension<'a>> {
    cert.extensions().iter().find(|x| x.oid == *oid)
}

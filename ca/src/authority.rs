//! The root and the signing of certificates.
//!
//! rcgen builds and signs; this module decides every field. The serial is
//! drawn fresh for every certificate (rcgen would otherwise derive it from
//! the public key, so one CSR sent twice would get one serial twice).

use std::net::IpAddr;
use std::time::Duration;

use pki_common::revocation::Reason;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use tracing::info;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use pki_common::cert::CertInfo;
use pki_common::files;

use crate::ledger::Revocation;
use crate::policy::{Decision, KeyKind};
use crate::CaPaths;
use pki_common::cert::Profile;

/// Errors creating, loading or using the root.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    File(#[from] files::FileError),
    /// `dir` is the directory `--dir` named, which may be a typo.
    #[error("no CA root at {path}; run `pki-ca init --dir {dir}` to create one there, or check --dir (or PKI_CERTS_DIR)")]
    NoRoot { path: String, dir: String },
    #[error("the root key in {key} does not match the root certificate in {cert}")]
    KeyMismatch { key: String, cert: String },
    #[error("cannot use the root: {0}")]
    Root(String),
    #[error("cannot sign: {0}")]
    Sign(#[from] rcgen::Error),
}

/// What `pki-ca init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Created(CertInfo),
    KeptExisting(CertInfo),
}

/// A fresh positive serial: 16 random bytes (127 random bits) with the top
/// bit cleared, well inside RFC 5280's 20-octet limit.
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        // Keep the DER encoding at its full 16 bytes.
        bytes[0] = 0x01;
    }
    SerialNumber::from_slice(&bytes)
}

fn to_time(unix: i64) -> Result<OffsetDateTime, AuthorityError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| AuthorityError::Root(e.to_string()))
}

/// Creates the root key and self-signed certificate, unless one exists and
/// `force` is false: a root is never replaced silently.
pub fn init_root(
    paths: &CaPaths,
    validity: Duration,
    force: bool,
) -> Result<InitOutcome, AuthorityError> {
    if !force && paths.root_cert().exists() && paths.root_key().exists() {
        let root = RootAuthority::load(paths)?;
        return Ok(InitOutcome::KeptExisting(root.info));
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pki-auth");
    // A random suffix keeps roots of different installations apart: with
    // one shared name, a peer holding another installation's root would
    // report "bad signature" instead of "unknown issuer".
    let mut suffix = [0u8; 4];
    rand::rng().fill_bytes(&mut suffix);
    dn.push(
        DnType::CommonName,
        format!("pki-auth Root CA {}", hex::encode(suffix)),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial());
    // Path length 0: this root signs end-entity certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = pki_common::unix_now() as i64;
    params.not_before = to_time(now - 300)?;
    params.not_after = to_time(now + validity.as_secs() as i64)?;
    let cert = params.self_signed(&key)?;

    // The key first: a certificate without its key is useless, a key
    // without its certificate is harmlessly replaced on the next init.
    files::write_private_key(&paths.root_key(), &key.serialize_pem())?;
    files::write_public(&paths.root_cert(), &cert.pem())?;
    let info = CertInfo::parse(cert.der()).map_err(|e| AuthorityError::Root(e.to_string()))?;
    info!(
        "created CA root {} (serial {}, valid until {})",
        paths.root_cert().display(),
        info.short_serial(),
        info.not_after_rfc3339()
    );
    Ok(InitOutcome::Created(info))
}

/// A certificate the authority has just signed.
#[derive(Debug, Clone)]
pub struct SignedCert {
    pub der: CertificateDer<'static>,
    pub info: CertInfo,
}

/// The root, loaded and ready to sign.
pub struct RootAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The root's subjectKeyIdentifier, which every CRL names as its
    /// authorityKeyIdentifier.
    key_id: Vec<u8>,
    pub cert: CertificateDer<'static>,
    pub info: CertInfo,
}

impl RootAuthority {
    /// Loads `ca.pem` and `ca.key` and checks that they belong together.
    pub fn load(paths: &CaPaths) -> Result<Self, AuthorityError> {
        if !paths.root_cert().exists() {
            return Err(AuthorityError::NoRoot {
                path: paths.root_cert().display().to_string(),
                dir: paths.dir().display().to_string(),
            });
        }
        let cert = files::read_cert(&paths.root_cert())?;
        let key_pem = files::read_private_key_pem(&paths.root_key())?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| AuthorityError::Root(e.to_string()))?;
        let info = CertInfo::parse(&cert).map_err(|e| AuthorityError::Root(e.to_string()))?;
        use rcgen::PublicKeyData;
        if info.spki_der != key.subject_public_key_info() {
            return Err(AuthorityError::KeyMismatch {
                key: paths.root_key().display().to_string(),
                cert: paths.root_cert().display().to_string(),
            });
        }
        let key_id = root_key_id(&cert)?;
        let issuer = Issuer::from_ca_cert_der(&cert, key)?;
        Ok(RootAuthority {
            issuer,
            key_id,
            cert,
            info,
        })
    }

    /// The root certificate, PEM-encoded.
    pub fn pem(&self) -> String {
        files::cert_to_pem(&self.cert)
    }

    /// Signs a CRL numbered `number`, valid from `this_update` to
    /// `next_update`, listing `revoked` (serial in hex, revocation).
    pub fn sign_crl(
        &self,
        number: u64,
        this_update: i64,
        next_update: i64,
        revoked: &[(String, Revocation)],
    ) -> Result<CertificateRevocationListDer<'static>, AuthorityError> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial, r)| {
                let bytes = hex::decode(serial).map_err(|_| {
                    AuthorityError::Root(format!("bad serial {serial:?} in the ledger"))
                })?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: to_time(r.revoked_at)?,
                    // RFC 5280 §5.3.1: omit the reason rather than say
                    // "unspecified".
                    reason_code: (r.reason != Reason::Unspecified).then(|| rcgen_reason(r.reason)),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, AuthorityError>>()?;
        let params = CertificateRevocationListParams {
            this_update: to_time(this_update)?,
            next_update: to_time(next_update)?,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.key_id.clone()),
        };
        Ok(params.signed_by(&self.issuer)?.der().clone())
    }

    /// Signs the certificate `decision` describes for the key `spki_der`.
    /// Its only EKU is the profile's: this path never sets the CA-endpoint
    /// EKU, so no certificate issued to another party can pass for the CA.
    pub fn sign(&self, decision: &Decision, spki_der: &[u8]) -> Result<SignedCert, AuthorityError> {
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        let params = leaf_params(decision)?;
        self.signed(params, &public_key)
    }

    /// Signs the CA's own TLS certificate: as [`sign`](Self::sign) for a
    /// server, but its extendedKeyUsage is serverAuth plus the CA-endpoint
    /// EKU ([`CA_ENDPOINT_EKU_OID`](pki_common::tls::verify::CA_ENDPOINT_EKU_OID)),
    /// by which every party recognises the CA's endpoint. rcgen takes OID
    /// arcs as u64 and that OID's last arc is a 128-bit UUID, so the
    /// extension's DER value is added as is (it is a constant).
    pub fn sign_ca_endpoint(
        &self,
        decision: &Decision,
        spki_der: &[u8],
    ) -> Result<SignedCert, AuthorityError> {
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        let mut params = leaf_params(decision)?;
        params.extended_key_usages = Vec::new();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[2, 5, 29, 37],
                pki_common::tls::verify::CA_ENDPOINT_EKU_EXTENSION.to_vec(),
            ));
        self.signed(params, &public_key)
    }

    fn signed(
        &self,
        params: CertificateParams,
        public_key: &rcgen::SubjectPublicKeyInfo,
    ) -> Result<SignedCert, AuthorityError> {
        let cert = params.signed_by(public_key, &self.issuer)?;
        let der = cert.der().clone();
        let info = CertInfo::parse(&der).map_err(|e| AuthorityError::Root(e.to_string()))?;
        Ok(SignedCert { der, info })
    }
}

/// Every field of an end-entity certificate, as `decision` says.
fn leaf_params(decision: &Decision) -> Result<CertificateParams, AuthorityError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(first) = decision.names.first() {
        dn.push(DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    params.subject_alt_names = decision
        .names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = match decision.key {
        KeyKind::Rsa { .. } => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    };
    params.extended_key_usages = vec![match decision.profile {
        Profile::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Profile::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = to_time(decision.not_before)?;
    params.not_after = to_time(decision.not_after)?;
    Ok(params)
}

fn rcgen_reason(reason: Reason) -> RevocationReason {
    match reason {
        Reason::Unspecified => RevocationReason::Unspecified,
        Reason::KeyCompromise => RevocationReason::KeyCompromise,
        Reason::CaCompromise => RevocationReason::CaCompromise,
        Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
        Reason::Superseded => RevocationReason::Superseded,
        Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
        Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
    }
}

/// The subjectKeyIdentifier of the root certificate.
fn root_key_id(cert: &CertificateDer<'_>) -> Result<Vec<u8>, AuthorityError> {
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert)
        .map_err(|e| AuthorityError::Root(e.to_string()))?;
    parsed
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| AuthorityError::Root("the root has no subjectKeyIdentifier".into()))
}

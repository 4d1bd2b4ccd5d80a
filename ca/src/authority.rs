//! The hierarchy as the online CA holds it, and the signing of the
//! certificates the policy decided, and of CRLs.
//!
//! Two levels: the ROOT ([`RootAuthority`]: its certificate only; its key
//! is offline, see [`root`](crate::root)) and the issuing INTERMEDIATES
//! ([`Intermediate`]: certificate and key, in `--dir/intermediates/`).
//! Every leaf is signed by an intermediate, and every intermediate signs
//! the CRL of its own leaves.
//!
//! rcgen builds and signs; this module decides every field. The serial is
//! drawn fresh for every certificate (rcgen would otherwise derive it from
//! the public key, so one CSR sent twice would get one serial twice).

use std::net::IpAddr;
use std::path::Path;

use pki_common::revocation::Reason;
use rand::RngCore;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use pki_common::cert::CertInfo;
use pki_common::files;

use crate::keyfile::KeyFileError;
use crate::ledger::Revocation;
use crate::policy::{Decision, KeyKind};
use crate::CaPaths;
use pki_common::cert::Profile;

pub use crate::root::{init, init_root, InitOptions, InitOutcome, RootSigner};

/// The issuer id of the root, in the ledger and in URLs.
pub const ROOT_ID: &str = "root";

/// Errors creating, loading or using the root and the intermediates.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    File(#[from] files::FileError),
    /// `dir` is the directory `--dir` named, which may be a typo.
    #[error("no CA root at {path}; run `pki-ca init --dir {dir}` to create one there, or check --dir (or PKI_CERTS_DIR)")]
    NoRoot { path: String, dir: String },
    #[error("no root key at {path}: this command signs with the root, so run it where the root key is and name that directory with --root-dir")]
    NoRootKey { path: String },
    #[error("the key in {key} does not match the certificate in {cert}")]
    KeyMismatch { key: String, cert: String },
    #[error("cannot use the root: {0}")]
    Root(String),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("the intermediate {path} cannot be used: {reason}")]
    BadIntermediate { path: String, reason: String },
    #[error("no usable intermediate in {dir} (none, or every one is expired or revoked); issue one where the root key is: `pki-ca intermediate --dir {dir_arg} --root-dir <root key directory>`")]
    NoIntermediate { dir: String, dir_arg: String },
    #[error("no intermediate {id} in {dir}: give its id (the name of its .pem file there) or its serial")]
    UnknownIntermediate { id: String, dir: String },
    #[error("cannot sign: {0}")]
    Sign(#[from] rcgen::Error),
    /// The intermediate's key is of a type the CA cannot make a throwaway
    /// key of, so it cannot lint what it would sign, and does not sign.
    #[error("the CA cannot lint before signing: {0}; issue a P-256 intermediate where the root key is (`pki-ca intermediate`)")]
    LintingKey(String),
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

pub(crate) fn to_time(unix: i64) -> Result<OffsetDateTime, AuthorityError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| AuthorityError::Root(e.to_string()))
}

/// A certificate the authority has just signed.
#[derive(Debug, Clone)]
pub struct SignedCert {
    pub der: CertificateDer<'static>,
    pub info: CertInfo,
    /// The id of the intermediate that signed it.
    pub issuer_id: String,
    /// The certificates between it and the root (its intermediate), for
    /// the chain the CA answers and presents: leaf first, then these.
    pub chain: Vec<CertificateDer<'static>>,
}

impl SignedCert {
    /// The leaf and its chain, PEM, leaf first (the
    /// `application/pem-certificate-chain` answer).
    pub fn chain_pem(&self) -> String {
        std::iter::once(&self.der)
            .chain(&self.chain)
            .map(files::cert_to_pem)
            .collect()
    }
}

/// The root as the online CA knows it: its certificate only, the trust
/// anchor every party has. Its key is never loaded here.
pub struct RootAuthority {
    pub cert: CertificateDer<'static>,
    pub info: CertInfo,
}

impl RootAuthority {
    /// Loads `ca.pem`.
    pub fn load(paths: &CaPaths) -> Result<Self, AuthorityError> {
        if !paths.root_cert().exists() {
            return Err(AuthorityError::NoRoot {
                path: paths.root_cert().display().to_string(),
                dir: paths.dir().display().to_string(),
            });
        }
        let cert = files::read_cert(&paths.root_cert())?;
        let info = CertInfo::parse(&cert).map_err(|e| AuthorityError::Root(e.to_string()))?;
        Ok(RootAuthority { cert, info })
    }

    /// The root certificate, PEM-encoded.
    pub fn pem(&self) -> String {
        files::cert_to_pem(&self.cert)
    }
}

/// A CA key with its certificate: the root (offline) or an intermediate.
pub(crate) struct Signer {
    issuer: Issuer<'static, KeyPair>,
    /// The signer's subjectKeyIdentifier, which every CRL it signs names
    /// as its authorityKeyIdentifier.
    key_id: Vec<u8>,
}

impl Signer {
    /// `key` for `cert`, checked to belong together (`key_path` and
    /// `cert_path` name the files in the error).
    pub(crate) fn new(
        cert: &CertificateDer<'_>,
        key: KeyPair,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<Self, AuthorityError> {
        use rcgen::PublicKeyData;
        let info = CertInfo::parse(cert).map_err(|e| AuthorityError::Root(e.to_string()))?;
        if info.spki_der != key.subject_public_key_info() {
            return Err(AuthorityError::KeyMismatch {
                key: key_path.display().to_string(),
                cert: cert_path.display().to_string(),
            });
        }
        let key_id = key_id_of(cert).map_err(AuthorityError::Root)?;
        let issuer = Issuer::from_ca_cert_der(cert, key)?;
        Ok(Signer { issuer, key_id })
    }

    /// An issuer with `cert`'s name and key identifier and a fresh
    /// throwaway key of this signer's key type, for linting certificates.
    /// ring cannot generate RSA keys, so an RSA issuer cannot lint (the
    /// CA makes P-256 intermediates).
    fn linting_issuer(
        &self,
        cert: &CertificateDer<'_>,
    ) -> Result<Issuer<'static, KeyPair>, String> {
        let alg = self.issuer.key().algorithm();
        let key = KeyPair::generate_for(alg)
            .map_err(|e| format!("no throwaway key of the intermediate's type {alg:?}: {e}"))?;
        Issuer::from_ca_cert_der(cert, key).map_err(|e| e.to_string())
    }

    /// Signs `params` for `public_key`.
    pub(crate) fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<(CertificateDer<'static>, CertInfo), AuthorityError> {
        let cert = params.signed_by(public_key, &self.issuer)?;
        let der = cert.der().clone();
        let info = CertInfo::parse(&der).map_err(|e| AuthorityError::Root(e.to_string()))?;
        Ok((der, info))
    }

    /// Signs a CRL numbered `number`, valid from `this_update` to
    /// `next_update`, listing `revoked` (serial in hex, revocation).
    pub(crate) fn sign_crl(
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
}

/// An issuing intermediate: it signs leaves and the CRL of its leaves.
pub struct Intermediate {
    /// The first 16 hex digits of its subjectKeyIdentifier: its name in
    /// file names, the ledger and URLs.
    pub id: String,
    pub cert: CertificateDer<'static>,
    pub info: CertInfo,
    signer: Signer,
    /// Its NameConstraints' permitted subtrees.
    permitted: Permitted,
    /// What the lints check its leaves against.
    lint_facts: crate::lint::IssuerFacts,
    /// Its name and key identifier with a throwaway key of its key's type,
    /// made when it is loaded (as Boulder makes its linting signer once),
    /// to sign the linting certificates; or why no such key can be made.
    linting: Result<Issuer<'static, KeyPair>, String>,
}

impl Intermediate {
    /// Loads `intermediates/<id>.pem` and its key, checks that they
    /// belong together and that the root signed the certificate.
    pub fn load(paths: &CaPaths, id: &str, root: &RootAuthority) -> Result<Self, AuthorityError> {
        let (cert_path, key_path) = (paths.intermediate_cert(id), paths.intermediate_key(id));
        let bad = |reason: String| AuthorityError::BadIntermediate {
            path: cert_path.display().to_string(),
            reason,
        };
        let cert = files::read_cert(&cert_path)?;
        check_signed_by_root(&cert, root).map_err(bad)?;
        let key_pem = files::read_private_key_pem(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(e.to_string()))?;
        let signer = Signer::new(&cert, key, &key_path, &cert_path)?;
        let info = CertInfo::parse(&cert).map_err(|e| bad(e.to_string()))?;
        let actual = id_of(&signer.key_id);
        if actual != id {
            return Err(bad(format!("its key identifier names it {actual}")));
        }
        let permitted = Permitted::of(&cert).map_err(bad)?;
        let lint_facts = crate::lint::IssuerFacts::of(&cert, &signer.key_id).map_err(bad)?;
        let linting = signer.linting_issuer(&cert);
        Ok(Intermediate {
            id: id.to_string(),
            cert,
            info,
            signer,
            permitted,
            lint_facts,
            linting,
        })
    }

    /// Refuses a name its NameConstraints do not permit: the CA issues
    /// nothing that would fail verification for that reason.
    pub fn check_permitted(&self, names: &[String]) -> Result<(), crate::policy::PolicyError> {
        match names.iter().find(|n| !self.permitted.allows(n)) {
            None => Ok(()),
            Some(name) => Err(crate::policy::PolicyError::NameNotPermitted {
                name: name.clone(),
                permitted: self.permitted.to_string(),
            }),
        }
    }

    /// The certificate, PEM-encoded.
    pub fn pem(&self) -> String {
        files::cert_to_pem(&self.cert)
    }

    /// The certificate `decision` describes, every field as it will be
    /// issued (serial included), before anyone signs it. Its only EKU is
    /// the profile's, except for the CA's own TLS certificate
    /// (`ca_endpoint`): serverAuth plus the CA-endpoint EKU
    /// ([`CA_ENDPOINT_EKU_OID`](pki_common::tls::verify::CA_ENDPOINT_EKU_OID)),
    /// by which every party recognises the CA's endpoint, so no
    /// certificate issued to another party can pass for the CA. rcgen
    /// takes OID arcs as u64 and that OID's last arc is a 128-bit UUID, so
    /// the extension's DER value is added as is (it is a constant). With
    /// `public_url`, it says where its CRL and its issuer are.
    pub(crate) fn leaf_draft(
        &self,
        decision: &Decision,
        ca_endpoint: bool,
        public_url: Option<&str>,
    ) -> Result<CertificateParams, AuthorityError> {
        let mut params = leaf_params(decision)?;
        if ca_endpoint {
            params.extended_key_usages = Vec::new();
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[2, 5, 29, 37],
                    pki_common::tls::verify::CA_ENDPOINT_EKU_EXTENSION.to_vec(),
                ));
        }
        if let Some(url) = public_url {
            crate::extensions::revocation_pointers(&mut params, url, &self.id);
        }
        Ok(params)
    }

    /// Signs `params` for `public_key` with the real key. Only the linted
    /// path ([`crate::lint`]) calls it.
    pub(crate) fn sign_draft(
        &self,
        params: &CertificateParams,
        public_key: &rcgen::SubjectPublicKeyInfo,
    ) -> Result<SignedCert, AuthorityError> {
        let (der, info) = self.signer.sign(params, public_key)?;
        Ok(SignedCert {
            der,
            info,
            issuer_id: self.id.clone(),
            chain: vec![self.cert.clone()],
        })
    }

    /// The linting certificate: `params` for `public_key` signed with this
    /// intermediate's throwaway key, under its real name and key
    /// identifier, so its TBS is the one the real key will sign.
    pub(crate) fn sign_linting(
        &self,
        params: &CertificateParams,
        public_key: &rcgen::SubjectPublicKeyInfo,
    ) -> Result<Vec<u8>, AuthorityError> {
        let issuer = self
            .linting
            .as_ref()
            .map_err(|why| AuthorityError::LintingKey(why.clone()))?;
        Ok(params.signed_by(public_key, issuer)?.der().to_vec())
    }

    /// [`sign_linting`](Self::sign_linting) with another throwaway `key`
    /// (a test's key of the wrong type).
    pub(crate) fn sign_linting_with(
        &self,
        params: &CertificateParams,
        public_key: &rcgen::SubjectPublicKeyInfo,
        key: KeyPair,
    ) -> Result<Vec<u8>, AuthorityError> {
        let issuer = Issuer::from_ca_cert_der(&self.cert, key)?;
        Ok(params.signed_by(public_key, &issuer)?.der().to_vec())
    }

    /// What the lints know of this intermediate.
    pub fn lint_facts(&self) -> &crate::lint::IssuerFacts {
        &self.lint_facts
    }

    /// Signs the certificate `decision` describes WITHOUT linting it: only
    /// for the benchmark's baseline, which measures what linting costs.
    /// Everything the CA issues goes through `Ca::issue`, which lints.
    #[doc(hidden)]
    pub fn sign_unlinted(
        &self,
        decision: &Decision,
        spki_der: &[u8],
        public_url: Option<&str>,
    ) -> Result<SignedCert, AuthorityError> {
        let params = self.leaf_draft(decision, false, public_url)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        self.sign_draft(&params, &public_key)
    }

    /// Signs this intermediate's CRL (see [`Signer::sign_crl`]).
    pub fn sign_crl(
        &self,
        number: u64,
        this_update: i64,
        next_update: i64,
        revoked: &[(String, Revocation)],
    ) -> Result<CertificateRevocationListDer<'static>, AuthorityError> {
        self.signer
            .sign_crl(number, this_update, next_update, revoked)
    }
}

/// Every field of an end-entity certificate, as `decision` says.
pub fn leaf_params(decision: &Decision) -> Result<CertificateParams, AuthorityError> {
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

/// The subjectKeyIdentifier of a CA certificate.
pub(crate) fn key_id_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(cert).map_err(|e| e.to_string())?;
    parsed
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| "the certificate has no subjectKeyIdentifier".into())
}

/// An intermediate's id from its subjectKeyIdentifier: the first 16 hex
/// digits, lower case.
pub(crate) fn id_of(key_id: &[u8]) -> String {
    let mut id = hex::encode(key_id);
    id.truncate(16);
    id
}

/// Checks that `cert` is signed by the root, so a stray file in
/// `intermediates/` cannot make the CA issue under another CA.
fn check_signed_by_root(cert: &CertificateDer<'_>, root: &RootAuthority) -> Result<(), String> {
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(cert).map_err(|e| e.to_string())?;
    let (_, root_cert) = x509_parser::certificate::X509Certificate::from_der(&root.cert)
        .map_err(|e| e.to_string())?;
    if parsed.issuer() != root_cert.subject() {
        return Err(format!(
            "it is issued by {}, not by the root {}",
            parsed.issuer(),
            root_cert.subject()
        ));
    }
    parsed
        .verify_signature(Some(root_cert.public_key()))
        .map_err(|_| "the root's signature on it does not verify (another root signed it)".into())
}

/// The permitted subtrees of an intermediate's NameConstraints, per name
/// type (RFC 5280 §4.2.1.10: a type without subtrees is unconstrained).
#[derive(Debug, Default, Clone)]
struct Permitted {
    /// DNS names; each permits itself and the names below it.
    dns: Vec<String>,
    /// IP ranges: address and mask, of equal length (4 or 16 bytes).
    ip: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Permitted {
    fn of(cert: &CertificateDer<'_>) -> Result<Self, String> {
        use x509_parser::extensions::GeneralName;
        let (_, parsed) =
            x509_parser::certificate::X509Certificate::from_der(cert).map_err(|e| e.to_string())?;
        let mut permitted = Permitted::default();
        let subtrees = parsed
            .extensions()
            .iter()
            .filter_map(|ext| match ext.parsed_extension() {
                ParsedExtension::NameConstraints(nc) => nc.permitted_subtrees.as_ref(),
                _ => None,
            })
            .flatten();
        for subtree in subtrees {
            match &subtree.base {
                GeneralName::DNSName(d) => permitted
                    .dns
                    .push(d.trim_start_matches('.').to_ascii_lowercase()),
                GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
                    let (addr, mask) = b.split_at(b.len() / 2);
                    permitted.ip.push((addr.to_vec(), mask.to_vec()));
                }
                other => return Err(format!("unsupported name constraint {other}")),
            }
        }
        Ok(permitted)
    }

    fn allows(&self, name: &str) -> bool {
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                let octets = match ip {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                self.ip.is_empty()
                    || self.ip.iter().any(|(addr, mask)| {
                        addr.len() == octets.len()
                            && (0..addr.len()).all(|i| octets[i] & mask[i] == addr[i] & mask[i])
                    })
            }
            Err(_) => {
                let name = name.to_ascii_lowercase();
                self.dns.is_empty()
                    || self
                        .dns
                        .iter()
                        .any(|d| name == *d || name.ends_with(&format!(".{d}")))
            }
        }
    }
}

impl std::fmt::Display for Permitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.dns.iter().map(|d| format!("{d} and below")).collect();
        for (addr, mask) in &self.ip {
            let prefix: u32 = mask.iter().map(|b| b.count_ones()).sum();
            let ip = match <[u8; 4]>::try_from(addr.as_slice()) {
                Ok(v4) => IpAddr::from(v4),
                Err(_) => match <[u8; 16]>::try_from(addr.as_slice()) {
                    Ok(v6) => IpAddr::from(v6),
                    Err(_) => continue,
                },
            };
            parts.push(format!("{ip}/{prefix}"));
        }
        if parts.is_empty() {
            return f.write_str("every name");
        }
        f.write_str(&parts.join(", "))
    }
}

//! A readable summary of a PKI file: certificate, CSR, CRL or private key,
//! PEM or DER, told apart here (`pki-ca inspect`).
//!
//! A learner's questions are "what is this file, who signed it, why is it
//! trusted, is it still good": so besides the fields `openssl x509 -text`
//! shows, a certificate is checked against the root (the same path
//! validation the parties run, [`crate::tls::verify::verify_chain`]) and
//! against the CRL next to the root, if that CRL verifies. Parsing is
//! x509-parser's. A private key is described by its public half and its
//! file mode; no byte of the key is ever printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::cert::{rfc3339, CertInfo};
use crate::revocation::{CrlError, CrlSet, Signer};

mod hierarchy;
pub use hierarchy::overview;

/// Errors reading a file to inspect.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a certificate, CSR, CRL or private key (PEM or DER){}", .path.display(), .why.as_deref().map(|w| format!(" ({w})")).unwrap_or_default())]
    Unknown { path: PathBuf, why: Option<String> },
}

/// What a file is checked against: the root, the intermediates and the
/// CRLs next to it (see [`hierarchy`]).
pub struct Trust {
    /// The root file and its certificate, if it could be read.
    pub root: Option<(PathBuf, CertificateDer<'static>)>,
    /// Why there is no root, when there is none.
    pub no_root: Option<String>,
    /// The intermediates the CA holds (`intermediates/*.pem` next to the
    /// root) and those the CRL files carry: they link a leaf to the root.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// The CRLs next to the root (`ca.crls.pem`, `ca.crl.pem`,
    /// `root.crl.pem`, `intermediates/*.crl.pem`), verified, the newest
    /// of each issuer; or why none could be used. `None`: no CRL file.
    pub crls: Option<Result<CrlSet, String>>,
    /// The file each issuer's CRL in `crls` was read from, by issuer id.
    pub crl_files: BTreeMap<String, PathBuf>,
}

impl Trust {
    /// The root in `root_file`, and the intermediates and CRLs beside it.
    pub fn from_root_file(root_file: &Path) -> Self {
        let root = match crate::files::read_cert(root_file) {
            Ok(cert) => cert,
            Err(e) => {
                return Trust {
                    root: None,
                    no_root: Some(e.to_string()),
                    intermediates: Vec::new(),
                    crls: None,
                    crl_files: BTreeMap::new(),
                }
            }
        };
        let dir = root_file.parent().unwrap_or(Path::new("."));
        let mut intermediates = crate::ca::crl::intermediates_next_to(root_file);
        let (crls, crl_files) = hierarchy::crls_next_to(dir, &root, &intermediates);
        if let Some(Ok(set)) = &crls {
            for cert in set.intermediates() {
                if !intermediates.contains(&cert) {
                    intermediates.push(cert);
                }
            }
        }
        Trust {
            root: Some((root_file.to_path_buf(), root)),
            no_root: None,
            intermediates,
            crls,
            crl_files,
        }
    }
}

/// What a file turned out to be, with its description.
pub struct Report {
    pub kind: Kind,
    /// `(label, value)` pairs, in reading order.
    pub fields: Vec<(&'static str, String)>,
    /// One line: what it is, who signed it, whether it is trusted.
    pub summary: String,
}

/// The kinds of file this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Certificate,
    Csr,
    Crl,
    PrivateKey,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = self.fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        for (label, value) in &self.fields {
            writeln!(f, "{:<width$} {value}", format!("{label}:"))?;
        }
        Ok(())
    }
}

/// Reads `path` and describes it, checked against `trust`.
pub fn inspect_file(path: &Path, trust: &Trust) -> Result<Report, InspectError> {
    let bytes = std::fs::read(path).map_err(|source| InspectError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let unknown = |why: Option<String>| InspectError::Unknown {
        path: path.to_path_buf(),
        why,
    };
    let (label, der) = decode(&bytes).map_err(|why| unknown(Some(why)))?;
    if let Some(report) = hierarchy::crl_bundle(&bytes, trust) {
        return Ok(report);
    }
    let report = match label.as_deref() {
        Some("CERTIFICATE") => certificate(&der, &hierarchy::rest_of_chain(&bytes), trust),
        Some("CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") => csr(&der),
        Some("X509 CRL") => crl(&der, trust),
        Some(l) if l.ends_with("PRIVATE KEY") => key(path, &der),
        Some(other) => return Err(unknown(Some(format!("PEM label {other:?}")))),
        None => sniff_der(path, &der, trust),
    };
    report.ok_or_else(|| unknown(None))
}

/// The first PEM object's label and DER, or the bytes as DER (no label).
fn decode(bytes: &[u8]) -> Result<(Option<String>, Vec<u8>), String> {
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Ok((None, bytes.to_vec()));
    }
    let pem = pem::parse(bytes).map_err(|_| "malformed PEM".to_string())?;
    Ok((Some(pem.tag().to_string()), pem.into_contents()))
}

/// DER without a label: tried as each kind in turn.
fn sniff_der(path: &Path, der: &[u8], trust: &Trust) -> Option<Report> {
    if X509Certificate::from_der(der).is_ok() {
        return certificate(der, &[], trust);
    }
    if X509CertificationRequest::from_der(der).is_ok() {
        return csr(der);
    }
    if CertificateRevocationList::from_der(der).is_ok() {
        return crl(der, trust);
    }
    key(path, der)
}

/// `AB:CD:…`, as `openssl x509 -fingerprint -sha256` prints it.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// "in 29 days" / "3 hours ago", for a time relative to now.
pub fn relative(at: i64, now: i64) -> String {
    let secs = (at - now).unsigned_abs();
    let amount = match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    };
    if at >= now {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// "ECDSA P-256", "Ed25519", "RSA 2048 bits".
pub fn describe_key(spki: &SubjectPublicKeyInfo<'_>) -> String {
    use x509_parser::oid_registry as oids;
    let alg = &spki.algorithm.algorithm;
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == oids::OID_EC_P256 => "ECDSA P-256".into(),
            Some(c) if c == oids::OID_NIST_EC_P384 => "ECDSA P-384".into(),
            Some(c) => format!("ECDSA on curve {c}"),
            None => "ECDSA (no named curve)".into(),
        };
    }
    if *alg == oids::OID_SIG_ED25519 {
        return "Ed25519".into();
    }
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(key) => format!("RSA {} bits", key.key_size()),
            Err(_) => "RSA (unreadable key)".into(),
        };
    }
    format!("key algorithm {alg}")
}

/// The EKUs by name; the CA endpoint's own EKU is named too.
fn describe_eku(cert: &X509Certificate<'_>) -> Option<String> {
    let eku = cert.extended_key_usage().ok().flatten()?.value;
    let mut names: Vec<String> = [
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.any, "anyExtendedKeyUsage"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n.to_string())
    .collect();
    for oid in &eku.other {
        let id = oid.to_id_string();
        if id == crate::tls::verify::CA_ENDPOINT_EKU_OID {
            names.push("CA endpoint (this PKI's own)".into());
        } else {
            names.push(id);
        }
    }
    Some(names.join(", "))
}

/// A certificate (with the rest of the chain its file holds): its
/// fields, then trust and revocation.
fn certificate(der: &[u8], rest: &[CertificateDer<'static>], trust: &Trust) -> Option<Report> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let info = CertInfo::parse(der).ok()?;
    let now = crate::unix_now() as i64;
    let self_signed = info.is_ca && cert.subject() == cert.issuer();
    let chain = chain_status(der, rest, &info, trust);
    let revocation = revocation_status(der, rest, trust);
    let mut fields = vec![
        ("type", "certificate (X.509)".to_string()),
        ("subject", cert.subject().to_string()),
        ("names", or_none(info.names().join(", "))),
        ("issuer", cert.issuer().to_string()),
        ("serial", info.serial_hex.clone()),
        ("validity", validity(&info, now)),
        ("key", describe_key(cert.public_key())),
        ("key usage", key_usage(&cert)),
        (
            "extended key usage",
            describe_eku(&cert).unwrap_or("absent".into()),
        ),
        ("basic constraints", basic_constraints(&cert)),
        ("SHA-256 fingerprint", sha256_fingerprint(der)),
        ("chain", chain.clone()),
    ];
    if !rest.is_empty() {
        fields.push((
            "file holds",
            format!(
                "the chain: this certificate, then {} intermediate(s)",
                rest.len()
            ),
        ));
    }
    if !self_signed {
        fields.push(("revocation", revocation.clone()));
    }
    let summary = certificate_summary(&cert, &info, &chain, &revocation, self_signed, now);
    Some(Report {
        kind: Kind::Certificate,
        fields,
        summary,
    })
}

/// One line: who it is, who signed it, whether it chains and is revoked,
/// when it expires.
fn certificate_summary(
    cert: &X509Certificate<'_>,
    info: &CertInfo,
    chain: &str,
    revocation: &str,
    self_signed: bool,
    now: i64,
) -> String {
    let who = info
        .names()
        .first()
        .cloned()
        .or(info.subject_cn.clone())
        .unwrap_or_else(|| cert.subject().to_string());
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| cert.issuer().to_string());
    let (signed, revoked) = if self_signed {
        ("self-signed".to_string(), String::new())
    } else {
        (format!("signed by {issuer}"), format!("; {revocation}"))
    };
    format!(
        "{who}, {signed} — {chain}{revoked}, expires {}",
        relative(info.not_after, now)
    )
}

/// The validity period and where now stands in it.
fn validity(info: &CertInfo, now: i64) -> String {
    let status = if now > info.not_after {
        format!("EXPIRED {}", relative(info.not_after, now))
    } else if now < info.not_before {
        format!("NOT YET VALID, starts {}", relative(info.not_before, now))
    } else {
        format!("expires {}", relative(info.not_after, now))
    };
    format!(
        "{} to {} ({status})",
        rfc3339(info.not_before),
        rfc3339(info.not_after)
    )
}

fn basic_constraints(cert: &X509Certificate<'_>) -> String {
    match cert.basic_constraints().ok().flatten() {
        Some(bc) if bc.value.ca => format!(
            "CA:TRUE{}",
            bc.value
                .path_len_constraint
                .map(|n| format!(", pathlen:{n}"))
                .unwrap_or_default()
        ),
        Some(_) => "CA:FALSE".into(),
        None => "absent".into(),
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s
    }
}

fn key_usage(cert: &X509Certificate<'_>) -> String {
    match cert.key_usage().ok().flatten() {
        Some(ku) => ku.value.to_string(),
        None => "absent".into(),
    }
}

/// Whether `der` chains to the root (through the intermediates of its file
/// and those next to the root), judged at a moment inside its own validity
/// so that the answer is about the signatures alone (expiry is reported on
/// its own line); and if it does, who signed what.
fn chain_status(
    der: &[u8],
    rest: &[CertificateDer<'static>],
    info: &CertInfo,
    trust: &Trust,
) -> String {
    let Some((root_path, root)) = &trust.root else {
        return format!(
            "not checked: no root ({}); pass --ca FILE",
            trust.no_root.as_deref().unwrap_or("none given")
        );
    };
    let root_name = root_path.display();
    if root.as_ref() == der {
        return format!(
            "this is the root itself ({root_name}), trusted because it was distributed out of band"
        );
    }
    let leaf = CertificateDer::from(der.to_vec());
    let at = info.not_before.max(0) + 1;
    if info.is_ca {
        return intermediate_status(&leaf, root, &root_name.to_string(), at);
    }
    let pool: Vec<_> = rest.iter().chain(&trust.intermediates).cloned().collect();
    let when = UnixTime::since_unix_epoch(Duration::from_secs(at as u64));
    let verify = |usage| crate::tls::verify::verify_chain(&leaf, root, &pool, when, usage).err();
    // Either purpose will do here: the question is who signed it.
    let (Some(as_server), Some(as_client)) = (
        verify(webpki::KeyUsage::server_auth()),
        verify(webpki::KeyUsage::client_auth()),
    ) else {
        let path = hierarchy::path_to_root(&leaf, &pool, root);
        return format!(
            "chain OK to the root in {root_name}: {}",
            crate::cert::describe_chain(&leaf, &path, root)
        );
    };
    #[allow(deprecated)]
    let err = match as_server {
        webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_) => {
            as_client
        }
        other => other,
    };
    match err {
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            format!("does not chain to the root in {root_name}: another CA issued it")
        }
        other => format!(
            "does not chain to the root in {root_name}: {}",
            crate::cert::describe_webpki_error(&other)
        ),
    }
}

/// Whether a CA certificate (not the root) is an intermediate the root
/// signed, judged at `at` (inside its validity).
fn intermediate_status(
    cert: &CertificateDer<'_>,
    root: &CertificateDer<'_>,
    root_name: &str,
    at: i64,
) -> String {
    match Signer::intermediate(cert, root, at) {
        Ok(s) => format!(
            "chain OK to the root in {root_name}: the root signed this intermediate (id {}), which signs leaves and their CRL",
            s.issuer.id
        ),
        Err(CrlError::BadIntermediate { why, .. }) => {
            format!("does not chain to the root in {root_name}: {why}")
        }
        Err(e) => format!("does not chain to the root in {root_name}: {e}"),
    }
}

/// Whether the CRLs next to the root list the certificate, or an
/// intermediate above it: which CRL covers it, and what it says.
fn revocation_status(der: &[u8], rest: &[CertificateDer<'static>], trust: &Trust) -> String {
    let set = match &trust.crls {
        None => {
            return "not checked: no CRL (ca.crls.pem, ca.crl.pem, root.crl.pem) next to the root"
                .into()
        }
        Some(Err(why)) => return format!("unknown: {why}"),
        Some(Ok(set)) => set,
    };
    let cert = CertificateDer::from(der.to_vec());
    let file_of = |id: &str| {
        trust
            .crl_files
            .get(id)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let Some(crl) = set.covering(&cert) else {
        return "unknown: no CRL of its issuer next to the root (a party would refuse it)".into();
    };
    let serial = CertInfo::parse(der)
        .map(|i| i.serial_hex)
        .unwrap_or_default();
    let per = format!(
        "CRL #{} of {} in {}",
        crl.number,
        crl.issuer,
        file_of(&crl.issuer.id)
    );
    if let Some(reason) = crl.revocation_of(&serial) {
        let why = reason.map(|r| r.as_str()).unwrap_or("no reason given");
        return format!("REVOKED ({why}) per {per}");
    }
    // A revoked intermediate above it takes it down too.
    let root = trust.root.as_ref().map(|(_, r)| r.clone());
    let pool: Vec<_> = rest.iter().chain(&trust.intermediates).cloned().collect();
    let above = root
        .map(|r| hierarchy::path_to_root(&cert, &pool, &r))
        .unwrap_or_default();
    for issuer in above.iter().filter_map(|c| CertInfo::parse(c).ok()) {
        if let Some((reason, on)) = set.revocation_of(&issuer.serial_hex) {
            let why = reason.map(|r| r.as_str()).unwrap_or("no reason given");
            return format!(
                "REVOKED: its intermediate {} is revoked ({why}) per CRL #{} of {}; itself not listed on {per}",
                issuer.subject_cn.unwrap_or_default(),
                on.number,
                on.issuer
            );
        }
    }
    format!("not revoked ({per})")
}

/// A CSR: who asks for what, with which key, and whether it proves it.
fn csr(der: &[u8]) -> Option<Report> {
    let (_, csr) = X509CertificationRequest::from_der(der).ok()?;
    let info = &csr.certification_request_info;
    let mut names = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                names.push(match crate::cert::SanName::of(name) {
                    crate::cert::SanName::Dns(d) | crate::cert::SanName::Other(d) => d,
                    crate::cert::SanName::Ip(ip) => ip.to_string(),
                    crate::cert::SanName::BadIp => "<bad IP address>".into(),
                });
            }
        }
    }
    let signature = match csr.verify_signature() {
        Ok(()) => "valid: it proves possession of the key".to_string(),
        Err(_) => "INVALID: it does not prove possession of the key".to_string(),
    };
    let subject = info.subject.to_string();
    let names = or_none(names.join(", "));
    let summary = format!(
        "a request for {names} ({}), signature {}",
        describe_key(&info.subject_pki),
        signature.split(':').next().unwrap_or_default()
    );
    Some(Report {
        kind: Kind::Csr,
        fields: vec![
            ("type", "certificate signing request (PKCS#10)".into()),
            ("subject", or_none(subject)),
            ("requested names", names),
            ("key", describe_key(&info.subject_pki)),
            ("signature", signature),
            ("SHA-256 fingerprint", sha256_fingerprint(der)),
        ],
        summary,
    })
}

/// A CRL: who issued it, its number and dates, its entries, and whether
/// the root signed it and it is current.
fn crl(der: &[u8], trust: &Trust) -> Option<Report> {
    let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
    let now = crate::unix_now() as i64;
    let number = crl
        .crl_number()
        .map(|n| format!("#{n}"))
        .unwrap_or_else(|| "none".into());
    let next = crl.next_update().map(|t| t.timestamp());
    let mut entries = String::new();
    for entry in crl.iter_revoked_certificates() {
        let reason = entry
            .reason_code()
            .map(|(_, r)| {
                crate::revocation::Reason::from_code(r.0)
                    .map(|r| r.as_str())
                    .unwrap_or("other")
                    .to_string()
            })
            .unwrap_or_else(|| "no reason given".into());
        let _ = write!(
            entries,
            "\n  {} revoked {} ({reason})",
            hex::encode(entry.raw_serial()),
            rfc3339(entry.revocation_date.timestamp())
        );
    }
    let count = crl.iter_revoked_certificates().count();
    let status = crl_trust(der, trust, now);
    let fields = vec![
        (
            "type",
            "certificate revocation list (X.509 CRL)".to_string(),
        ),
        ("issuer", crl.issuer().to_string()),
        ("number", number.clone()),
        ("this update", rfc3339(crl.last_update().timestamp())),
        (
            "next update",
            next.map(|t| format!("{} ({})", rfc3339(t), relative(t, now)))
                .unwrap_or_else(|| "absent".into()),
        ),
        ("entries", format!("{count} revoked{entries}")),
        ("status", status.clone()),
    ];
    Some(Report {
        kind: Kind::Crl,
        summary: format!(
            "CRL {number} by {}, {count} revoked — {status}",
            crl.issuer()
        ),
        fields,
    })
}

fn crl_trust(der: &[u8], trust: &Trust, now: i64) -> String {
    let Some((root_path, root)) = &trust.root else {
        return "not checked: no root".into();
    };
    let root_name = root_path.display();
    let check = |at| CrlSet::from_pem_with(der, &trust.intermediates, root, at);
    // First who signed it (whatever the clock), then whether it is current.
    let signed = match check(0) {
        Ok(set) => match set.iter().next() {
            Some(crl) if crl.issuer.is_root() => format!(
                "signed by the root in {root_name}; it covers the certificates the root signed (intermediates, or the leaves of a one-level CA)"
            ),
            Some(crl) => format!(
                "signed by {}, which the root in {root_name} signed; it covers the leaves that intermediate issued",
                crl.issuer
            ),
            None => return "refused: no CRL".into(),
        },
        Err(CrlError::NotFromRoot(_)) => return format!("NOT signed by the root in {root_name}"),
        Err(e @ CrlError::UnknownIssuer { .. }) => return format!("refused: {e}"),
        Err(e) => return format!("refused: {e}"),
    };
    match check(now) {
        Ok(_) => match signed.split_once(';') {
            Some((who, covers)) => format!("{who}, current;{covers}"),
            None => format!("{signed}, current"),
        },
        Err(CrlError::Expired { next_update }) => {
            let who = signed.split(';').next().unwrap_or_default();
            format!("{who}, but STALE since {next_update}")
        }
        Err(e) => format!("refused: {e}"),
    }
}

/// A private key: its type and size from its public half, and its file
/// mode. The key itself is never printed.
fn key(path: &Path, der: &[u8]) -> Option<Report> {
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(der.to_vec());
    let pair = rcgen::KeyPair::try_from(&pkcs8).ok()?;
    let spki_der = rcgen::PublicKeyData::subject_public_key_info(&pair);
    let kind = SubjectPublicKeyInfo::from_der(&spki_der)
        .map(|(_, spki)| describe_key(&spki))
        .unwrap_or_else(|_| "unknown".into());
    let mode = file_mode(path);
    let mut fields = vec![
        ("type", "private key (PKCS#8)".to_string()),
        ("key", kind.clone()),
        ("file mode", mode.clone()),
    ];
    let sibling = path.with_extension("pem");
    if let Ok(cert) = crate::files::read_cert(&sibling) {
        let matches = CertInfo::parse(&cert).is_ok_and(|i| i.spki_der == spki_der);
        fields.push((
            "certificate",
            format!(
                "{} {} this key",
                sibling.display(),
                if matches { "carries" } else { "does NOT carry" }
            ),
        ));
    }
    Some(Report {
        kind: Kind::PrivateKey,
        summary: format!("private key, {kind}, {mode}"),
        fields,
    })
}

/// The file's mode, with a warning if group or others can read it.
fn file_mode(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return format!(
                    "{mode:04o} — WARNING: group or others can read it; run `chmod 600 {}`",
                    path.display()
                );
            }
            return format!("{mode:04o} (only the owner can read it)");
        }
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_a_person_says_them() {
        assert_eq!(relative(1_000 + 30 * 86_400, 1_000), "in 30 days");
        assert_eq!(relative(1_000, 1_000 + 3 * 3_600), "3 hours ago");
        assert_eq!(relative(1_000 + 59, 1_000), "in 59 seconds");
    }

    #[test]
    fn fingerprints_are_colon_separated_upper_case_hex() {
        let f = sha256_fingerprint(b"");
        assert!(f.starts_with("E3:B0:C4:42:"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn garbage_is_none_of_the_four_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pem");
        std::fs::write(&path, b"not pki").unwrap();
        let trust = Trust::from_root_file(&dir.path().join("ca.pem"));
        assert!(matches!(
            inspect_file(&path, &trust),
            Err(InspectError::Unknown { .. })
        ));
    }
}

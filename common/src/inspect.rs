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
use crate::revocation::{verify_crl, CrlError, VerifiedCrl};

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

/// What a file is checked against: the root, and the CRL next to it.
pub struct Trust {
    /// The root file and its certificate, if it could be read.
    pub root: Option<(PathBuf, CertificateDer<'static>)>,
    /// Why there is no root, when there is none.
    pub no_root: Option<String>,
    /// The CRL file next to the root (`ca.crl.pem`), verified; or why not.
    pub crl: Option<Result<(PathBuf, VerifiedCrl), String>>,
}

impl Trust {
    /// The root in `root_file` and the `ca.crl.pem` beside it.
    pub fn from_root_file(root_file: &Path) -> Self {
        let root = match crate::files::read_cert(root_file) {
            Ok(cert) => cert,
            Err(e) => {
                return Trust {
                    root: None,
                    no_root: Some(e.to_string()),
                    crl: None,
                }
            }
        };
        let crl_path = root_file.with_file_name("ca.crl.pem");
        let crl = crl_path.exists().then(|| {
            crate::ca::crl::read_crl(&crl_path, &root)
                .map(|c| (crl_path.clone(), c))
                .map_err(|e| format!("{}: {e}", crl_path.display()))
        });
        Trust {
            root: Some((root_file.to_path_buf(), root)),
            no_root: None,
            crl,
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
    let report = match label.as_deref() {
        Some("CERTIFICATE") => certificate(&der, trust),
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
        return certificate(der, trust);
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

/// A certificate: its fields, then trust and revocation.
fn certificate(der: &[u8], trust: &Trust) -> Option<Report> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let info = CertInfo::parse(der).ok()?;
    let now = crate::unix_now() as i64;
    let chain = chain_status(der, &info, trust);
    let revocation = revocation_status(&info, trust);
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
    if !info.is_ca {
        fields.push(("revocation", revocation.clone()));
    }
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
    let summary = format!(
        "{who}, {} — {chain}{}, expires {}",
        if info.is_ca && cert.subject() == cert.issuer() {
            "self-signed".to_string()
        } else {
            format!("signed by {issuer}")
        },
        if info.is_ca {
            String::new()
        } else {
            format!("; {revocation}")
        },
        relative(info.not_after, now)
    );
    Some(Report {
        kind: Kind::Certificate,
        fields,
        summary,
    })
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

/// Whether `der` chains to the root, judged at a moment inside its own
/// validity so that the answer is about the signature alone (expiry is
/// reported on its own line).
fn chain_status(der: &[u8], info: &CertInfo, trust: &Trust) -> String {
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
    let at = info.not_before.max(0) as u64 + 1;
    let when = UnixTime::since_unix_epoch(Duration::from_secs(at));
    let verify = |usage| crate::tls::verify::verify_chain(&leaf, root, &[], when, usage).err();
    // Either purpose will do here: the question is who signed it.
    let (Some(as_server), Some(as_client)) = (
        verify(webpki::KeyUsage::server_auth()),
        verify(webpki::KeyUsage::client_auth()),
    ) else {
        return format!("chain OK to the root in {root_name}");
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

/// Whether the CRL next to the root lists the certificate.
fn revocation_status(info: &CertInfo, trust: &Trust) -> String {
    match &trust.crl {
        None => "not checked: no ca.crl.pem next to the root".into(),
        Some(Err(why)) => format!("unknown: {why}"),
        Some(Ok((path, crl))) => match crl.revocation_of(&info.serial_hex) {
            None => format!("not revoked (CRL #{} in {})", crl.number, path.display()),
            Some(reason) => format!(
                "REVOKED ({}) per CRL #{} in {}",
                reason.map(|r| r.as_str()).unwrap_or("no reason given"),
                crl.number,
                path.display()
            ),
        },
    }
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
    match verify_crl(der.to_vec().into(), root, now) {
        Ok(_) => format!("signed by the root in {root_name}, current"),
        Err(CrlError::Expired { next_update }) => {
            format!("signed by the root in {root_name}, but STALE since {next_update}")
        }
        Err(CrlError::NotFromRoot(_)) => format!("NOT signed by the root in {root_name}"),
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

/// Every PKI file in `dir`, one line each, the root first: "who signed
/// what, and why is it trusted", as `make inspect` shows it. Files that
/// are not PKI files (the ledger, notes) are left out.
pub fn overview(dir: &Path, trust: &Trust) -> Result<String, InspectError> {
    let read_err = |source| InspectError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !name.starts_with('.')
                && [".pem", ".key", ".crt", ".der", ".crl", ".csr"]
                    .iter()
                    .any(|s| name.ends_with(s))
        })
        .collect();
    // The root first, then certificates, keys, and the CRL last.
    let rank = |p: &PathBuf| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match name {
            "ca.pem" => 0,
            n if n.ends_with(".crl.pem") || n.ends_with(".crl") => 3,
            n if n.ends_with(".key") => 2,
            _ => 1,
        }
    };
    files.sort_by_key(|p| (rank(p), p.clone()));
    let mut out = String::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        match inspect_file(path, trust) {
            Ok(report) => {
                let _ = writeln!(out, "{name}: {}", report.summary);
            }
            Err(InspectError::Unknown { .. }) => {}
            Err(e) => {
                let _ = writeln!(out, "{name}: cannot be read: {e}");
            }
        }
    }
    if files.is_empty() {
        let _ = writeln!(out, "{}: no certificates, keys or CRLs here", dir.display());
    }
    let _ = writeln!(
        out,
        "\nWhy trusted: each party was given the root (ca.pem) out of band and trusts nothing else; a certificate is good when it chains to that root, is within its validity and is not listed in the CRL the root signed (ca.crl.pem)."
    );
    Ok(out)
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

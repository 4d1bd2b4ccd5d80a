//! The hierarchy a directory holds, as `make inspect` shows it: root →
//! intermediate → leaf, who signed what, which key is offline, and which
//! CRL covers which certificate.
//!
//! Everything is read from files and checked as the parties check it: an
//! intermediate must be signed by the root, a CRL by its issuer. Nothing
//! is written, and no byte of a key is read beyond whether the file exists.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{inspect_file, InspectError, Kind, Report, Trust};
use crate::cert::CertInfo;
use crate::revocation::{CrlSet, Signer};

/// Where a two-level CA keeps its intermediates, under its `--dir`.
const INTERMEDIATES: &str = "intermediates";

/// The regular files of `dir`, sorted; none if it cannot be read.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn is_crl_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".crl.pem") || name.ends_with(".crl") || name == "ca.crls.pem"
}

/// The CRL files of a CA directory: the CA's own (`root.crl.pem`,
/// `ca.crl.pem`, `intermediates/*.crl*`) first, so that a CRL found there
/// and in the parties' cache `ca.crls.pem` is said to come from the CA's.
fn crl_files(dir: &Path) -> Vec<PathBuf> {
    let own = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let mut files: Vec<PathBuf> = ["root.crl.pem", "ca.crl.pem"]
        .iter()
        .filter_map(|n| own(n))
        .collect();
    files.extend(
        files_in(&dir.join(INTERMEDIATES))
            .into_iter()
            .filter(|p| is_crl_name(p)),
    );
    files.extend(own("ca.crls.pem"));
    files
}

/// The CRLs next to the root, verified against their issuers and the
/// clock, merged (the newest of each issuer), and the file each came
/// from. `None` without any CRL file; an error when none verifies.
pub(super) fn crls_next_to(
    dir: &Path,
    root: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
) -> (Option<Result<CrlSet, String>>, BTreeMap<String, PathBuf>) {
    let files = crl_files(dir);
    if files.is_empty() {
        return (None, BTreeMap::new());
    }
    let now = crate::unix_now() as i64;
    let (mut set, mut first_err): (Option<CrlSet>, Option<String>) = (None, None);
    let mut read = Vec::new();
    for path in files {
        let verified = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                CrlSet::from_pem_with(&b, intermediates, root, now).map_err(|e| e.to_string())
            });
        match verified {
            Ok(found) => {
                read.push((path, found.clone()));
                set = Some(CrlSet::merge(set.as_ref(), found).set);
            }
            Err(e) => {
                first_err.get_or_insert(format!("{}: {e}", path.display()));
            }
        }
    }
    let Some(set) = set else {
        return (first_err.map(Err), BTreeMap::new());
    };
    let mut origin = BTreeMap::new();
    for crl in set.iter() {
        if let Some((path, _)) = read
            .iter()
            .find(|(_, s)| s.get(&crl.issuer.id).is_some_and(|c| c.der == crl.der))
        {
            origin.insert(crl.issuer.id.clone(), path.clone());
        }
    }
    (Some(Ok(set)), origin)
}

/// The certificates after the first in a PEM file: the rest of a chain.
pub(super) fn rest_of_chain(bytes: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(bytes)
        .filter_map(Result::ok)
        .skip(1)
        .collect()
}

/// The intermediates from `pool` that lead from `cert` up to `root`,
/// nearest first (at most a few: this PKI has one level).
pub(super) fn path_to_root(
    cert: &CertificateDer<'_>,
    pool: &[CertificateDer<'static>],
    root: &CertificateDer<'_>,
) -> Vec<CertificateDer<'static>> {
    let mut path: Vec<CertificateDer<'static>> = Vec::new();
    let mut current = cert.clone().into_owned();
    for _ in 0..4 {
        let Ok((_, parsed)) = X509Certificate::from_der(&current) else {
            break;
        };
        if Signer::root(root).is_ok_and(|r| r.signed(&parsed)) {
            break;
        }
        let next = pool.iter().find(|c| {
            !path.contains(c) && Signer::intermediate(c, root, 0).is_ok_and(|s| s.signed(&parsed))
        });
        let Some(next) = next else { break };
        path.push(next.clone());
        current = next.clone();
    }
    path
}

/// A PEM file of several CRLs (the parties' `ca.crls.pem`, or `/v1/crls`
/// saved): one line per CRL. `None` if the file is not such a bundle.
pub(super) fn crl_bundle(bytes: &[u8], trust: &Trust) -> Option<Report> {
    let (crls, certs) = crate::revocation::split_pem(bytes).ok()?;
    if crls.len() + certs.len() < 2 || crls.is_empty() {
        return None;
    }
    let root = &trust.root.as_ref()?.1;
    let now = crate::unix_now() as i64;
    let (status, lines) = match CrlSet::verify(
        crls.clone(),
        &[&certs[..], &trust.intermediates[..]].concat(),
        root,
        now,
    ) {
        Ok(set) => {
            let lines: Vec<String> = set
                .iter()
                .map(|c| format!("\n  CRL #{} of {}, {} revoked", c.number, c.issuer, c.len()))
                .collect();
            (
                "every CRL signed by its issuer, which chains to the root, and current".to_string(),
                lines.concat(),
            )
        }
        Err(e) => (format!("refused: {e}"), String::new()),
    };
    Some(Report {
        kind: Kind::Crl,
        summary: format!("{} CRLs (one per issuer) — {status}", crls.len()),
        fields: vec![
            (
                "type",
                "CRL set (one X.509 CRL per issuer, with the intermediates that signed them)"
                    .into(),
            ),
            ("CRLs", format!("{}{lines}", crls.len())),
            ("intermediates", certs.len().to_string()),
            ("status", status),
        ],
    })
}

/// Every PKI file in `dir` (and `dir/intermediates/`), one line each, the
/// root first; then the hierarchy as a tree: who signed what, which key is
/// offline, which CRL covers which certificate. Files that are not PKI
/// files (the ledger, notes) are left out.
pub fn overview(dir: &Path, trust: &Trust) -> Result<String, InspectError> {
    std::fs::read_dir(dir).map_err(|source| InspectError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = files_in(dir)
        .into_iter()
        .chain(files_in(&dir.join(INTERMEDIATES)))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !name.starts_with('.')
                && [".pem", ".key", ".crt", ".der", ".crl", ".csr"]
                    .iter()
                    .any(|s| name.ends_with(s))
        })
        .collect();
    // The root first, then certificates, keys, and the CRLs last.
    let rank = |p: &PathBuf| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match name {
            "ca.pem" => 0,
            _ if is_crl_name(p) => 3,
            n if n.ends_with(".key") => 2,
            _ => 1,
        }
    };
    files.sort_by_key(|p| (rank(p), p.clone()));
    let mut out = String::new();
    let mut leaves = Vec::new();
    for path in &files {
        let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        match inspect_file(path, trust) {
            Ok(report) => {
                let _ = writeln!(out, "{name}: {}", report.summary);
                if report.kind == Kind::Certificate && !name.starts_with(INTERMEDIATES) {
                    leaves.push(name);
                }
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
    out.push_str(&tree(dir, trust, &leaves));
    let _ = writeln!(
        out,
        "\nWhy trusted: each party was given the root (ca.pem) out of band and trusts nothing else; a certificate is good when it chains to that root (through the intermediate its chain carries), is within its validity, and neither it nor any certificate above it is listed in the CRL its issuer signed (ca.crl.pem)."
    );
    Ok(out)
}

/// The hierarchy as a tree, with keys and CRLs.
fn tree(dir: &Path, trust: &Trust, leaves: &[String]) -> String {
    let Some((_, root)) = &trust.root else {
        return String::new();
    };
    let mut out = String::from("\nHierarchy (who signed what):\n");
    let root_info = X509Certificate::from_der(root)
        .ok()
        .map(|(_, c)| c.subject().to_string());
    let _ = writeln!(out, "root {} (ca.pem)", root_info.unwrap_or_default());
    let _ = writeln!(out, "  key: {}", root_key(dir, trust));
    let lists = if trust.intermediates.is_empty() {
        "leaves"
    } else {
        "intermediates"
    };
    let _ = writeln!(
        out,
        "  its CRL (lists revoked {lists}): {}",
        crl_line(dir, trust, crate::revocation::ROOT_ID)
    );
    let mut placed = vec![false; leaves.len()];
    for cert in &trust.intermediates {
        if let Ok(signer) = Signer::intermediate(cert, root, 0) {
            out.push_str(&branch(dir, trust, &signer, leaves, &mut placed));
        }
    }
    let root_signer = Signer::root(root).ok();
    for (i, leaf) in leaves.iter().enumerate() {
        let by_root = root_signer
            .as_ref()
            .is_some_and(|r| signed_by(&dir.join(leaf), r));
        if !placed[i] && leaf != "ca.pem" && by_root {
            let _ = writeln!(
                out,
                "  └─ {leaf}{} (signed by the root directly)",
                leaf_names(&dir.join(leaf))
            );
        }
    }
    out
}

/// One intermediate of the tree: its key, its CRL, and the leaves in
/// `leaves` it signed (marked in `placed`).
fn branch(
    dir: &Path,
    trust: &Trust,
    signer: &Signer,
    leaves: &[String],
    placed: &mut [bool],
) -> String {
    let id = &signer.issuer.id;
    let mut out = format!(
        "  └─ intermediate \"{}\" (id {id}), signed by the root\n",
        signer.issuer.name
    );
    let key = dir.join(INTERMEDIATES).join(format!("{id}.key"));
    let key = if key.exists() {
        format!(
            "{} — ONLINE: the CA signs leaves and this intermediate's CRL with it",
            key.strip_prefix(dir).unwrap_or(&key).display()
        )
    } else {
        "not in this directory".into()
    };
    let _ = writeln!(out, "       key: {key}");
    let _ = writeln!(
        out,
        "       its CRL (lists revoked leaves): {}",
        crl_line(dir, trust, id)
    );
    for (i, leaf) in leaves.iter().enumerate() {
        if signed_by(&dir.join(leaf), signer) {
            placed[i] = true;
            let _ = writeln!(out, "       └─ {leaf}{}", leaf_names(&dir.join(leaf)));
        }
    }
    out
}

/// "CRL #3 (root.crl.pem), 1 revoked": the CRL of issuer `id` in use.
fn crl_line(dir: &Path, trust: &Trust, id: &str) -> String {
    let Some(Ok(set)) = &trust.crls else {
        return "no CRL here".into();
    };
    let Some(crl) = set.get(id) else {
        return "no CRL here".into();
    };
    let file = trust
        .crl_files
        .get(id)
        .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .unwrap_or_default();
    format!("CRL #{} ({file}), {} revoked", crl.number, crl.len())
}

/// Whether the first certificate in `path` was signed by `signer`.
fn signed_by(path: &Path, signer: &Signer) -> bool {
    crate::files::read_cert(path).is_ok_and(|der| {
        X509Certificate::from_der(&der).is_ok_and(|(_, c)| !c.is_ca() && signer.signed(&c))
    })
}

/// ": app.pki.test (serial 1a2b…)" for a leaf file.
fn leaf_names(path: &Path) -> String {
    crate::files::read_cert(path)
        .ok()
        .and_then(|d| CertInfo::parse(&d).ok())
        .map(|i| format!(": {} (serial {})", i.names().join(", "), i.short_serial()))
        .unwrap_or_default()
}

/// Where the root's key is, and whether that is offline.
fn root_key(dir: &Path, trust: &Trust) -> String {
    let two_level = !trust.intermediates.is_empty();
    for name in ["root.key", "ca.key"] {
        let path = dir.join(name);
        if path.exists() {
            return if two_level {
                format!("{name} is in {} — next to the online CA: keep it offline (`pki-ca init --root-dir DIR`), only `pki-ca intermediate`, `revoke --intermediate` and `root-crl` need it", dir.display())
            } else {
                format!(
                    "{name} in {} — ONLINE: it signs every leaf (a one-level CA)",
                    dir.display()
                )
            };
        }
    }
    format!(
        "not in {} — OFFLINE (where `pki-ca init --root-dir` put it); the online CA never needs it",
        dir.display()
    )
}

//! Phase 1 at the application server: have a certificate.
//!
//! The server reuses `server.key` and `server.pem` when they belong
//! together, chain to `ca.pem`, name the server and have more than a third
//! of their lifetime left. Otherwise it makes a fresh key in this process,
//! enrolls with the CA by CSR and writes both files. The private key never
//! leaves the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pki_common::revocation::{crl_from_pem_or_der, verify_crl, VerifiedCrl};
use rcgen::{KeyPair, PublicKeyData};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::SigningKey;
use tracing::{info, warn};

use pki_common::cert::{verify_leaf, CertInfo, Purpose};
use pki_common::enroll::{enroll, EnrollError, Retry};
use pki_common::files::{self, FileError};
use pki_common::https::CaClient;

/// Errors obtaining the server's identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no CA root at {0}: copy the CA's ca.pem there (it is the trust anchor, distributed out of band)")]
    NoRoot(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("no usable certificate ({reason}) and no enrollment token; mint one with `pki-ca token --name {name}` and pass it with --token")]
    NeedToken { reason: String, name: String },
    #[error("enrollment failed: {0}")]
    Enroll(#[from] EnrollError),
    #[error(transparent)]
    Https(#[from] pki_common::https::HttpsError),
    #[error("the private key cannot be used: {0}")]
    Key(String),
}

/// Where the server keeps its files.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub root: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl IdentityFiles {
    /// The standard names in `dir`: `ca.pem`, `server.key`, `server.pem`.
    pub fn in_dir(dir: &Path) -> Self {
        IdentityFiles {
            root: dir.join("ca.pem"),
            key: dir.join("server.key"),
            cert: dir.join("server.pem"),
        }
    }
}

/// How to enroll when enrollment is needed.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub ca_url: String,
    /// The name the CA's certificate must carry (default: the URL's host).
    pub ca_name: Option<String>,
    pub token: Option<String>,
    pub retry: Retry,
}

/// The server's certified identity.
pub struct Identity {
    pub root: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub info: CertInfo,
    /// The certified key, for the step-4 signature.
    pub signer: Arc<dyn SigningKey>,
}

impl Identity {
    /// Builds an identity from a certificate and its key (PEM).
    pub fn from_parts(
        root: CertificateDer<'static>,
        cert: CertificateDer<'static>,
        key_pem: &str,
    ) -> Result<Self, IdentityError> {
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let signer = pki_common::tls::provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let info = CertInfo::parse(&cert).map_err(|e| IdentityError::Key(e.to_string()))?;
        Ok(Identity {
            root,
            cert,
            key,
            info,
            signer,
        })
    }
}

/// The current CRL: fetched from the CA, or else the `ca.crl.pem` file next
/// to the root; `None` (with a warning) when neither is available, so a
/// server whose CA is down can still start with a certificate it holds.
async fn current_crl(
    files: &IdentityFiles,
    enrollment: &Enrollment,
    root: &CertificateDer<'static>,
) -> Option<VerifiedCrl> {
    let now = pki_common::unix_now() as i64;
    let fetched = async {
        let ca = CaClient::new(&enrollment.ca_url, enrollment.ca_name.as_deref(), root)
            .map_err(|e| e.to_string())?;
        let resp = ca
            .get(pki_common::api::CRL)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!("the CA answered {}", resp.status));
        }
        verify_crl(
            crl_from_pem_or_der(&resp.body).map_err(|e| e.to_string())?,
            root,
            now,
        )
        .map_err(|e| e.to_string())
    };
    let fetch_error = match fetched.await {
        Ok(crl) => return Some(crl),
        Err(e) => e,
    };
    let file = files.root.with_file_name("ca.crl.pem");
    let from_file = std::fs::read(&file)
        .map_err(|e| e.to_string())
        .and_then(|b| crl_from_pem_or_der(&b).map_err(|e| e.to_string()))
        .and_then(|der| verify_crl(der, root, now).map_err(|e| e.to_string()));
    match from_file {
        Ok(crl) => Some(crl),
        Err(file_error) => {
            warn!(
                "phase 1: cannot tell whether our own certificate is revoked (CA: {fetch_error}; {}: {file_error})",
                file.display()
            );
            None
        }
    }
}

/// Why the files on disk cannot be reused, or `Ok` with the identity.
fn try_reuse(
    files: &IdentityFiles,
    root: &CertificateDer<'static>,
    names: &[String],
    crl: Option<&VerifiedCrl>,
) -> Result<Identity, String> {
    if !files.cert.exists() || !files.key.exists() {
        return Err(format!(
            "{} or {} is missing",
            files.cert.display(),
            files.key.display()
        ));
    }
    let cert = files::read_cert(&files.cert).map_err(|e| e.to_string())?;
    let key_pem = files::read_private_key_pem(&files.key).map_err(|e| e.to_string())?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", files.key.display()))?;
    let info = CertInfo::parse(&cert).map_err(|e| e.to_string())?;
    if info.spki_der != key.subject_public_key_info() {
        return Err("the key does not match the certificate".into());
    }
    let first = names.first().map(String::as_str);
    verify_leaf(&cert, root, Purpose::ServerAuth, first, UnixTime::now())
        .map_err(|e| e.to_string())?;
    let certified = info.names();
    if let Some(missing) = names.iter().find(|n| !certified.contains(n)) {
        return Err(format!("the certificate does not name {missing}"));
    }
    if let Some(revoked) = crl.and_then(|c| c.revocation_of(&info.serial_hex)) {
        return Err(format!(
            "the certificate {} is revoked ({})",
            info.short_serial(),
            revoked.map(|r| r.as_str()).unwrap_or("no reason given")
        ));
    }
    let left = info.lifetime_left(pki_common::unix_now() as i64);
    if left <= 1.0 / 3.0 {
        return Err(format!("only {:.0}% of its lifetime is left", left * 100.0));
    }
    Identity::from_parts(root.clone(), cert, &key_pem).map_err(|e| e.to_string())
}

/// Phase 1: reuses the certificate on disk or enrolls for a new one.
pub async fn obtain(
    files: &IdentityFiles,
    names: &[String],
    enrollment: &Enrollment,
) -> Result<Identity, IdentityError> {
    if !files.root.exists() {
        return Err(IdentityError::NoRoot(files.root.display().to_string()));
    }
    let root = files::read_cert(&files.root)?;
    let crl = current_crl(files, enrollment, &root).await;
    let reason = match try_reuse(files, &root, names, crl.as_ref()) {
        Ok(identity) => {
            info!(
                "phase 1: reusing {} (serial {}, valid until {}, chains to {})",
                files.cert.display(),
                identity.info.short_serial(),
                identity.info.not_after_rfc3339(),
                files.root.display()
            );
            return Ok(identity);
        }
        Err(reason) => reason,
    };
    let Some(token) = enrollment.token.as_deref() else {
        return Err(IdentityError::NeedToken {
            reason,
            name: names.first().cloned().unwrap_or_default(),
        });
    };
    info!("phase 1: enrolling with the CA ({reason})");
    let ca = CaClient::new(&enrollment.ca_url, enrollment.ca_name.as_deref(), &root)?;
    let enrolled = enroll(
        &ca,
        &root,
        names,
        token,
        Purpose::ServerAuth,
        enrollment.retry,
    )
    .await?;
    files::write_private_key(&files.key, &enrolled.key_pem)?;
    files::write_public(&files.cert, &files::cert_to_pem(&enrolled.cert))?;
    info!(
        "phase 1: wrote {} (mode 0600) and {}",
        files.key.display(),
        files.cert.display()
    );
    Identity::from_parts(root, enrolled.cert, &enrolled.key_pem)
}

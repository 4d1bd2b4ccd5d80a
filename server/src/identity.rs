//! Phase 1 at the application server: have a good certificate, and keep it
//! good.
//!
//! The server reuses `server.key` and `server.pem` while they belong
//! together, chain to `ca.pem`, name the server, are not revoked and have
//! more than a third of their lifetime left. Past two thirds it renews
//! them, authenticating with the certificate itself. When they are
//! unusable (missing, revoked, from another root, expired) it makes a
//! fresh key in this process and enrolls with a token. The private key
//! never leaves the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::SigningKey;
use tracing::{info, warn};

use pki_common::cert::{CertInfo, Purpose};
use pki_common::enroll::{check_held, enroll, renew, EnrollError, Enrolled, Held, KeyFiles, Retry};
use pki_common::files::{self, FileError};
use pki_common::https::CaClient;
use pki_common::revocation::{crl_from_pem_or_der, verify_crl, VerifiedCrl};

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

    fn key_files(&self) -> KeyFiles {
        KeyFiles {
            key: self.key.clone(),
            cert: self.cert.clone(),
        }
    }

    /// The CRL file the CA writes next to the root.
    pub fn crl(&self) -> PathBuf {
        self.root.with_file_name("ca.crl.pem")
    }
}

/// How to reach the CA, to enroll, renew and fetch CRLs.
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
    /// The key in PEM, kept to renew with.
    key_pem: String,
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
            key_pem: key_pem.to_string(),
        })
    }

    fn from_enrolled(root: CertificateDer<'static>, e: Enrolled) -> Result<Self, IdentityError> {
        Self::from_parts(root, e.cert, &e.key_pem)
    }

    fn as_enrolled(&self) -> Enrolled {
        Enrolled {
            key_pem: self.key_pem.clone(),
            cert: self.cert.clone(),
            info: self.info.clone(),
        }
    }

    /// When this certificate is due for renewal: once two thirds of its
    /// lifetime have passed (Unix seconds).
    pub fn renewal_due(&self) -> i64 {
        self.info.not_after - (self.info.not_after - self.info.not_before) / 3
    }
}

/// The current CRL: fetched from the CA, or else the `ca.crl.pem` file next
/// to the root; `None` (with a warning) when neither is available.
pub async fn current_crl(
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
    let file = files.crl();
    let from_file = std::fs::read(&file)
        .map_err(|e| e.to_string())
        .and_then(|b| crl_from_pem_or_der(&b).map_err(|e| e.to_string()))
        .and_then(|der| verify_crl(der, root, now).map_err(|e| e.to_string()));
    match from_file {
        Ok(crl) => Some(crl),
        Err(file_error) => {
            warn!(
                "no current CRL (CA: {fetch_error}; {}: {file_error})",
                file.display()
            );
            None
        }
    }
}

/// Reads the root the server trusts.
pub fn read_root(files: &IdentityFiles) -> Result<CertificateDer<'static>, IdentityError> {
    if !files.root.exists() {
        return Err(IdentityError::NoRoot(files.root.display().to_string()));
    }
    Ok(files::read_cert(&files.root)?)
}

/// Phase 1: reuses, renews, or enrolls for a new certificate.
pub async fn obtain(
    files: &IdentityFiles,
    names: &[String],
    enrollment: &Enrollment,
    crl: Option<&VerifiedCrl>,
) -> Result<Identity, IdentityError> {
    let root = read_root(files)?;
    let reason = match check_held(&files.key_files(), &root, names, Purpose::ServerAuth, crl) {
        Held::Good(held) => {
            info!(
                "phase 1: reusing {} (serial {}, valid until {}, chains to {})",
                files.cert.display(),
                held.info.short_serial(),
                held.info.not_after_rfc3339(),
                files.root.display()
            );
            return Identity::from_enrolled(root, held);
        }
        Held::DueForRenewal(held, why) => {
            info!(
                "phase 1: {} is due for renewal ({why})",
                files.cert.display()
            );
            let current = Identity::from_enrolled(root.clone(), held)?;
            match renew_identity(&current, files, enrollment).await {
                Ok(renewed) => return Ok(renewed),
                Err(e) if enrollment.token.is_none() => {
                    warn!("phase 1: renewal failed ({e}); starting with the current certificate, renewal will be retried");
                    return Ok(current);
                }
                Err(e) => format!("renewal failed: {e}"),
            }
        }
        Held::Unusable(reason) => reason,
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
    enrolled.save(&files.key_files())?;
    info!(
        "phase 1: wrote {} (mode 0600) and {}",
        files.key.display(),
        files.cert.display()
    );
    Identity::from_enrolled(root, enrolled)
}

/// Renews `current` at the CA (new key, same names), saves it, and answers
/// the new identity.
pub async fn renew_identity(
    current: &Identity,
    files: &IdentityFiles,
    enrollment: &Enrollment,
) -> Result<Identity, IdentityError> {
    let renewed = renew(
        &enrollment.ca_url,
        enrollment.ca_name.as_deref(),
        &current.root,
        &current.as_enrolled(),
        Purpose::ServerAuth,
    )
    .await?;
    renewed.save(&files.key_files())?;
    Identity::from_enrolled(current.root.clone(), renewed)
}

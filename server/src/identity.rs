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

use pki_common::ca::bootstrap::{self, BootstrapError, Fingerprint};
use pki_common::ca::client::CaClient;
use pki_common::ca::crl::{CrlCache, FetchCrlError};
pub use pki_common::ca::enroll::Enrollment;
use pki_common::ca::enroll::{self, EnrollError, Enrolled, KeyFiles, ObtainError};
use pki_common::cert::{CertInfo, Profile};
use pki_common::files::{self, FileError};
use pki_common::revocation::CrlSet;

/// Errors obtaining the server's identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no CA root at {0}; copy the CA's ca.pem there (it is the trust anchor, distributed out of band), fetch it from the CA with --root-fingerprint FP (FP is what `pki-ca init` printed), or pass the directory that holds it with --dir")]
    NoRoot(String),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("no usable certificate ({reason}) and no enrollment token; {}mint one with `pki-ca token --name {name}` and pass it in PKI_TOKEN or with --token-file FILE (mode 0600)", if *.other_root { "if the ca.pem in --dir is the right root, " } else { "" })]
    NeedToken {
        reason: String,
        name: String,
        /// The certificate is from another root than `ca.pem`.
        other_root: bool,
    },
    #[error("enrollment failed: {}{}", .0, hint(.0))]
    Enroll(#[from] EnrollError),
    #[error("the private key cannot be used: {0}")]
    Key(String),
}

/// The hint for a failed enrollment, in the server's terms: its root is
/// the `ca.pem` in `--dir`.
fn hint(e: &EnrollError) -> String {
    e.hint("the ca.pem in --dir")
        .map(|h| format!("; {h}"))
        .unwrap_or_default()
}

/// Where the server keeps its files.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub root: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl IdentityFiles {
    /// The standard names in `dir`: `ca.pem`, `server.key`, `server.pem`
    /// (`--cert` and `--key` replace the last two).
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

    /// The CRL file next to the root that the CA writes when it shares the
    /// directory (`ca.crl.pem`); the server reads it, never writes it.
    pub fn crl(&self) -> PathBuf {
        self.root.with_file_name("ca.crl.pem")
    }

    /// Where the server keeps the newest CRLs it fetched (`ca.crls.pem`
    /// next to the root, see `CrlCache`), so a restart while the CA is
    /// down still has them; the CA's `ca.crl.pem` is read as well.
    pub fn crl_cache(&self) -> CrlCache {
        CrlCache::next_to(&self.root)
    }
}

/// The server's certified identity.
pub struct Identity {
    pub root: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    /// The intermediates between `cert` and the root, presented after it.
    pub intermediates: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub info: CertInfo,
    /// The certified key, for the step-4 signature.
    pub signer: Arc<dyn SigningKey>,
    /// The key in PEM, kept to renew with.
    key_pem: String,
}

impl Identity {
    /// Builds an identity from a certificate the root signed directly and
    /// its key (PEM).
    pub fn from_parts(
        root: CertificateDer<'static>,
        cert: CertificateDer<'static>,
        key_pem: &str,
    ) -> Result<Self, IdentityError> {
        Self::from_chain(root, vec![cert], key_pem)
    }

    /// Builds an identity from a chain (the leaf, then its intermediates)
    /// and the leaf's key (PEM).
    pub fn from_chain(
        root: CertificateDer<'static>,
        mut chain: Vec<CertificateDer<'static>>,
        key_pem: &str,
    ) -> Result<Self, IdentityError> {
        if chain.is_empty() {
            return Err(IdentityError::Key("no certificate in the chain".into()));
        }
        let cert = chain.remove(0);
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
            intermediates: chain,
            key,
            info,
            signer,
            key_pem: key_pem.to_string(),
        })
    }

    fn from_enrolled(root: CertificateDer<'static>, e: Enrolled) -> Result<Self, IdentityError> {
        let chain = e.chain();
        Self::from_chain(root, chain, &e.key_pem)
    }

    fn as_enrolled(&self) -> Enrolled {
        Enrolled {
            key_pem: self.key_pem.clone(),
            cert: self.cert.clone(),
            intermediates: self.intermediates.clone(),
            info: self.info.clone(),
        }
    }

    /// The chain presented in TLS: the leaf, then its intermediates.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.cert.clone())
            .chain(self.intermediates.iter().cloned())
            .collect()
    }
}

/// The newest CRLs the server can verify, one per issuer: the CA's (`GET
/// /v1/crls`, or `/v1/crl` from a one-level CA) and the files next to the
/// root (`ca.crls.pem`, and the CA's `ca.crl.pem`) are all read, and of
/// each issuer the CRL with the higher number wins ([`CrlSet::merge`], the
/// rule every CRL replacement follows), so a stale file can never stand in
/// for the CA's newer list. Newer CRLs from the CA are kept in
/// `ca.crls.pem` (`CrlCache`, shared with the client), so a restart while
/// the CA is down still has them. `None` (with a warning) when neither is
/// available.
pub async fn current_crl(
    files: &IdentityFiles,
    enrollment: &Enrollment,
    root: &CertificateDer<'static>,
) -> Option<CrlSet> {
    let ca = CaClient::new(&enrollment.ca_url, enrollment.ca_name.as_deref(), root)
        .map_err(FetchCrlError::from);
    let cache = files.crl_cache();
    match cache.latest(ca, root).await {
        Ok(crl) => Some(crl),
        Err(e) => {
            warn!("no current CRL (CA: {e})");
            None
        }
    }
}

/// [`current_crl`], tried again with backoff (as enrollment retries) until
/// `deadline`: a server that must check client certificates cannot serve
/// without a CRL, and the CA it just enrolled with may be only starting.
pub async fn current_crl_until(
    files: &IdentityFiles,
    enrollment: &Enrollment,
    root: &CertificateDer<'static>,
    deadline: tokio::time::Instant,
) -> Option<CrlSet> {
    let mut backoff = enrollment.retry.initial_backoff;
    loop {
        if let Some(crl) = current_crl(files, enrollment, root).await {
            return Some(crl);
        }
        if tokio::time::Instant::now() + backoff >= deadline {
            return None;
        }
        info!("no CRL yet; trying again in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(enrollment.retry.max_backoff);
    }
}

/// The root the server trusts: `ca.pem`, fetched first from the CA when it
/// is missing and `fingerprint` pins it (see `pki_common::ca::bootstrap`).
pub async fn trusted_root(
    files: &IdentityFiles,
    enrollment: &Enrollment,
    fingerprint: Option<&Fingerprint>,
) -> Result<CertificateDer<'static>, IdentityError> {
    let Some(fingerprint) = fingerprint else {
        return read_root(files);
    };
    Ok(bootstrap::ensure_root(
        &files.root,
        &enrollment.ca_url,
        enrollment.ca_name.as_deref(),
        fingerprint,
        enrollment.retry,
    )
    .await?)
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
    crl: Option<&CrlSet>,
) -> Result<Identity, IdentityError> {
    let root = read_root(files)?;
    let key_files = files.key_files();
    let enrolled = enroll::obtain(enrollment, &root, &key_files, names, Profile::Server, crl)
        .await
        .map_err(|e| match e {
            ObtainError::NeedToken { reason, other_root } => IdentityError::NeedToken {
                reason,
                name: names.first().cloned().unwrap_or_default(),
                other_root,
            },
            ObtainError::Enroll(e) => IdentityError::Enroll(e),
            ObtainError::File(e) => IdentityError::File(e),
        })?;
    Identity::from_enrolled(root, enrolled)
}

/// Renews `current` at the CA (new key, same names), saves it, and answers
/// the new identity.
pub async fn renew_identity(
    current: &Identity,
    files: &IdentityFiles,
    enrollment: &Enrollment,
) -> Result<Identity, IdentityError> {
    let renewed = enroll::renew_and_save(
        enrollment,
        &current.root,
        &files.key_files(),
        &current.as_enrolled(),
        Profile::Server,
    )
    .await?;
    Identity::from_enrolled(current.root.clone(), renewed)
}

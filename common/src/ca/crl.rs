//! Getting the CA's current CRL, from the CA or from a file, checked
//! against the root and the clock before anything relies on it.
//!
//! Every party that relies on revocation (the client before its handshake,
//! the server for client certificates and its own, `pki-ca revoke
//! --ca-url`) gets its CRL here, so the checks cannot differ between them.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use super::api;
use super::client::CaClient;
use crate::revocation::{crl_from_pem_or_der, verify_crl, CrlError, VerifiedCrl};

/// Why no usable CRL could be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchCrlError {
    #[error("cannot fetch the CRL: {0}")]
    Https(#[from] super::client::HttpsError),
    #[error("the CA answered {0} for its CRL")]
    Status(u16),
    #[error("cannot read the CRL {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A CRL arrived but cannot be trusted (not the root's, stale,
    /// unparseable): it is refused, never used.
    #[error(transparent)]
    Refused(#[from] CrlError),
}

/// `GET /v1/crl` from `ca`, verified against `root` and the clock.
pub async fn fetch_crl(
    ca: &CaClient,
    root: &CertificateDer<'_>,
) -> Result<VerifiedCrl, FetchCrlError> {
    let resp = ca.get(api::CRL).await?;
    if !resp.status.is_success() {
        return Err(FetchCrlError::Status(resp.status.as_u16()));
    }
    let der = crl_from_pem_or_der(&resp.body)?;
    Ok(verify_crl(der, root, crate::unix_now() as i64)?)
}

/// A CRL file (PEM or DER), verified against `root` and the clock.
pub fn read_crl(path: &Path, root: &CertificateDer<'_>) -> Result<VerifiedCrl, FetchCrlError> {
    let bytes = std::fs::read(path).map_err(|source| FetchCrlError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let der = crl_from_pem_or_der(&bytes)?;
    Ok(verify_crl(der, root, crate::unix_now() as i64)?)
}

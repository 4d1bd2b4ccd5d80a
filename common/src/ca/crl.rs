//! Getting the CA's current CRL, from the CA or from a file, checked
//! against the root and the clock before anything relies on it.
//!
//! Every party that relies on revocation (the client before its handshake,
//! the server for client certificates and its own, `pki-ca revoke
//! --ca-url`) gets its CRL here, so the checks cannot differ between them.
//! [`CrlCache`] keeps the last verified CRL on disk, so the client and the
//! server can go on while the CA is down, until that CRL's nextUpdate.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use super::api;
use super::client::CaClient;
use crate::revocation::{crl_from_pem_or_der, verify_crl, CrlError, Succession, VerifiedCrl};

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

/// Where a CRL in use came from, for the narration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlOrigin {
    /// Just fetched from the CA (and stored in the cache if newer).
    Fetched,
    /// The cached file, still in the first half of its life: not fetched.
    CachedFresh,
    /// The cached file, because the CA could not be reached (the reason);
    /// still current.
    CachedCaDown(String),
    /// The cached file, because the CA served an older CRL (the reason):
    /// a party never goes back to an older CRL.
    CachedNewer(String),
}

/// The last verified CRL, kept in a file (`ca.crl.pem` next to the root),
/// so a party can go on checking revocation while the CA is down.
///
/// Reading it is verifying it: the root's signature and the clock, like a
/// fetched CRL. Replacing it follows the one succession rule
/// ([`VerifiedCrl::succeeds`], [`newest`](crate::revocation::newest)): only a higher CRL number ever
/// replaces what is in the file, so an older CRL (a replay, or a CA restored
/// from an old backup) never brings back a revoked certificate. The file
/// may be the CA's own `ca.crl.pem` (in `make run-all` every party shares
/// `certs/`); that is safe because nothing here writes a CRL over a newer
/// one.
#[derive(Debug, Clone)]
pub struct CrlCache {
    pub path: std::path::PathBuf,
}

/// No current CRL from the CA, nor from the cache.
#[derive(Debug, thiserror::Error)]
#[error("{fetch}, and the cached CRL {path} cannot stand in: {cache}")]
pub struct NoCurrentCrl {
    /// Why the fetch failed (or was refused).
    pub fetch: FetchCrlError,
    pub path: String,
    /// Why the cache could not stand in.
    pub cache: String,
}

impl CrlCache {
    /// The cache beside `root`: `ca.crl.pem` in the root's directory.
    pub fn next_to(root: &Path) -> Self {
        CrlCache {
            path: root.with_file_name("ca.crl.pem"),
        }
    }

    /// The cached CRL if it verifies and is current.
    pub fn load(&self, root: &CertificateDer<'_>) -> Result<VerifiedCrl, FetchCrlError> {
        read_crl(&self.path, root)
    }

    /// Stores `crl` if it succeeds the CRL in the file (by number; the
    /// file's CRL is judged by its signature only, so an expired one is
    /// ordered too). A file that is not a CRL of this root is replaced: no
    /// one could have relied on it. Answers whether it wrote.
    pub fn store(
        &self,
        crl: &VerifiedCrl,
        root: &CertificateDer<'_>,
    ) -> Result<bool, crate::files::FileError> {
        let existing = std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| crl_from_pem_or_der(&bytes).ok())
            // Time 0: the order of two CRLs does not depend on the clock.
            .and_then(|der| verify_crl(der, root, 0).ok());
        if crl.succeeds(existing.as_ref()) != Ok(Succession::Newer) {
            return Ok(false);
        }
        let pem = crate::files::pem_encode("X509 CRL", crl.der.as_ref());
        crate::files::write_public(&self.path, &pem)?;
        Ok(true)
    }

    /// The CRL a short-lived party (the client) should use now: the cached
    /// one while it is in the first half of its life (no request to the
    /// CA at all); after that a fetched one, stored if newer; and when the
    /// fetch fails, the cached one for as long as it is current. The CA
    /// publishes a new CRL at half-life too, so a refresh finds one.
    pub async fn current(
        &self,
        ca: &CaClient,
        root: &CertificateDer<'_>,
    ) -> Result<(VerifiedCrl, CrlOrigin), NoCurrentCrl> {
        let cached = self.load(root);
        let now = crate::unix_now() as i64;
        if let Ok(crl) = &cached {
            if now < crl.this_update + (crl.next_update - crl.this_update) / 2 {
                return Ok((crl.clone(), CrlOrigin::CachedFresh));
            }
        }
        match fetch_crl(ca, root).await {
            Ok(fetched) => Ok(self.keep_newest(fetched, cached.ok(), root)),
            Err(fetch) => match cached {
                Ok(crl) => Ok((crl, CrlOrigin::CachedCaDown(fetch.to_string()))),
                Err(cache) => Err(self.neither(fetch, cache)),
            },
        }
    }

    /// The newest CRL to be had for a long-running party (the server),
    /// which refreshes on its own schedule: always fetched, then compared
    /// with the cached one; the newer is used and kept.
    pub async fn latest(
        &self,
        ca: Result<CaClient, FetchCrlError>,
        root: &CertificateDer<'_>,
    ) -> Result<VerifiedCrl, NoCurrentCrl> {
        let fetched = match ca {
            Ok(ca) => fetch_crl(&ca, root).await,
            Err(e) => Err(e),
        };
        let cached = self.load(root);
        match (fetched, cached) {
            (Ok(fetched), cached) => Ok(self.keep_newest(fetched, cached.ok(), root).0),
            (Err(_), Ok(cached)) => Ok(cached),
            (Err(fetch), Err(cache)) => Err(self.neither(fetch, cache)),
        }
    }

    /// The newer of a fetched and a cached CRL ([`VerifiedCrl::succeeds`]; the cached one
    /// wins a tie, as it was there first), and where it came from; a
    /// fetched CRL that is newer is stored. A CA that serves an older CRL
    /// than the cache holds does not roll the party back.
    fn keep_newest(
        &self,
        fetched: VerifiedCrl,
        cached: Option<VerifiedCrl>,
        root: &CertificateDer<'_>,
    ) -> (VerifiedCrl, CrlOrigin) {
        if let Some(cached) = cached {
            if let Err(e) = fetched.succeeds(Some(&cached)) {
                tracing::warn!(
                    "the CA's CRL is not used over the cached {}: {e}",
                    self.path.display()
                );
                return (cached, CrlOrigin::CachedNewer(e.to_string()));
            }
        }
        match self.store(&fetched, root) {
            Ok(true) => {
                tracing::debug!("cached CRL #{} in {}", fetched.number, self.path.display())
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot cache the CRL: {e}; it is used all the same"),
        }
        (fetched, CrlOrigin::Fetched)
    }

    fn neither(&self, fetch: FetchCrlError, cache: FetchCrlError) -> NoCurrentCrl {
        let cache = match cache {
            FetchCrlError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "none yet".to_string()
            }
            FetchCrlError::Read { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        NoCurrentCrl {
            fetch,
            path: self.path.display().to_string(),
            cache,
        }
    }
}

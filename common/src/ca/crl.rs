//! Getting the CA's current CRLs, from the CA or from a file, checked
//! against the root and the clock before anything relies on them.
//!
//! Every party that relies on revocation (the client before its handshake,
//! the server for client certificates and its own, `pki-ca revoke
//! --ca-url`) gets its CRLs here, so the checks cannot differ between them.
//!
//! A two-level CA publishes one CRL per issuer (`GET /v1/crls`): the
//! root's, which lists revoked intermediates, and one per intermediate,
//! which lists the leaves it issued. Each is verified against its issuer:
//! the root, or an intermediate (`GET /v1/intermediates`) that the root
//! signed. A CA that does not serve `/v1/crls` (404) is a one-level CA,
//! whose `/v1/crl` is the root's CRL and all there is.
//!
//! [`CrlCache`] keeps the last verified set on disk, so the client and the
//! server can go on while the CA is down, until its CRLs' nextUpdate.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;

use super::api;
use super::client::CaClient;
use crate::revocation::{
    crl_from_pem_or_der, verify_crl, verify_crl_by, CrlError, CrlSet, Merged, Signer, VerifiedCrl,
};

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
    /// A CRL arrived but cannot be trusted (not signed by the root or one
    /// of its intermediates, stale, unparseable): it is refused, never used.
    #[error(transparent)]
    Refused(#[from] CrlError),
}

/// `GET /v1/crl` from `ca`, verified against the root (a one-level CA) or,
/// when the root did not sign it, against the CA's intermediates (a
/// two-level CA serves its current intermediate's CRL there).
pub async fn fetch_crl(
    ca: &CaClient,
    root: &CertificateDer<'_>,
) -> Result<VerifiedCrl, FetchCrlError> {
    let body = get_ok(ca, api::CRL)
        .await?
        .ok_or(FetchCrlError::Status(404))?;
    let der = crl_from_pem_or_der(&body)?;
    let now = crate::unix_now() as i64;
    match verify_crl(der.clone(), root, now) {
        Err(CrlError::NotFromRoot(why)) => {
            let intermediates = fetch_intermediates(ca).await?;
            let mut signers = vec![Signer::root(root)?];
            signers.extend(
                intermediates
                    .iter()
                    .filter_map(|c| Signer::intermediate(c, root, now).ok()),
            );
            if signers.len() == 1 {
                return Err(CrlError::NotFromRoot(why).into());
            }
            Ok(verify_crl_by(der, &signers, now)?)
        }
        other => Ok(other?),
    }
}

/// `GET path`: the body on success, `None` on 404, an error otherwise.
async fn get_ok(ca: &CaClient, path: &str) -> Result<Option<Vec<u8>>, FetchCrlError> {
    let resp = ca.get(path).await?;
    match resp.status.as_u16() {
        404 => Ok(None),
        _ if resp.status.is_success() => Ok(Some(resp.body.to_vec())),
        other => Err(FetchCrlError::Status(other)),
    }
}

/// `GET /v1/intermediates`: the certificates (unverified; [`CrlSet::verify`]
/// checks each against the root). None from a one-level CA (404).
pub async fn fetch_intermediates(
    ca: &CaClient,
) -> Result<Vec<CertificateDer<'static>>, FetchCrlError> {
    use rustls::pki_types::pem::PemObject;
    let Some(body) = get_ok(ca, api::INTERMEDIATES).await? else {
        return Ok(Vec::new());
    };
    Ok(CertificateDer::pem_slice_iter(&body)
        .filter_map(Result::ok)
        .collect())
}

/// Every CRL the CA publishes, verified: `GET /v1/crls` and `GET
/// /v1/intermediates`, or `GET /v1/crl` alone from a one-level CA (which
/// answers 404 to the first). Answers the set and the path it came from.
pub async fn fetch_crls(
    ca: &CaClient,
    root: &CertificateDer<'_>,
) -> Result<(CrlSet, &'static str), FetchCrlError> {
    let Some(bundle) = get_ok(ca, api::CRLS).await? else {
        let crl = fetch_crl(ca, root).await?;
        return Ok((CrlSet::single(crl, root)?, api::CRL));
    };
    let intermediates = fetch_intermediates(ca).await?;
    let now = crate::unix_now() as i64;
    let (crls, _) = crate::revocation::split_pem(&bundle)?;
    let set = CrlSet::verify(crls, &intermediates, root, now)?;
    Ok((set, api::CRLS))
}

/// A CRL file (PEM or DER), verified against `root` and the clock.
pub fn read_crl(path: &Path, root: &CertificateDer<'_>) -> Result<VerifiedCrl, FetchCrlError> {
    let der = crl_from_pem_or_der(&read(path)?)?;
    Ok(verify_crl(der, root, crate::unix_now() as i64)?)
}

/// A file of CRLs (and the intermediates that signed them, see
/// [`CrlSet::from_pem`]), verified against `root` and the clock: a single
/// root CRL (one-level CA), or a bundle such as the cache writes.
pub fn read_crls(path: &Path, root: &CertificateDer<'_>) -> Result<CrlSet, FetchCrlError> {
    Ok(CrlSet::from_pem(
        &read(path)?,
        root,
        crate::unix_now() as i64,
    )?)
}

fn read(path: &Path) -> Result<Vec<u8>, FetchCrlError> {
    std::fs::read(path).map_err(|source| FetchCrlError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Where a CRL set in use came from, for the narration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlOrigin {
    /// Just fetched from the CA (and stored in the cache if newer), from
    /// this path (`/v1/crls`, or `/v1/crl` of a one-level CA).
    Fetched(&'static str),
    /// The cached file, still in the first half of its life: not fetched.
    CachedFresh,
    /// The cached file, because the CA could not be reached (the reason);
    /// still current.
    CachedCaDown(String),
    /// Fetched (from this path), except for the issuers whose CRL the CA
    /// served older than the cache holds (their ids and the reason): a
    /// party never goes back to an older CRL.
    CachedNewer(&'static str, Vec<(String, String)>),
}

/// The last verified CRLs, kept in a file (`ca.crls.pem` next to the root),
/// so a party can go on checking revocation while the CA is down.
///
/// Reading it is verifying it: each CRL against its issuer and the clock,
/// like a fetched one. Replacing it follows the one succession rule
/// ([`CrlSet::merge`]), issuer by issuer: only a higher CRL number of the
/// same issuer ever replaces what is in the file, so an older CRL (a
/// replay, or a CA restored from an old backup) never brings back a
/// revoked certificate.
///
/// `ca_files` are the CA's own CRL files, when it shares the directory
/// (as in `make run-all`): `ca.crl.pem` (its current issuer's CRL) and
/// `root.crl.pem` (the root's). They are read, never written, checked with
/// the intermediates the cache holds and those of `intermediates/` next
/// to the root, and merged by the same rule: a current CRL there is used
/// like a cached one, an older one is refused aloud.
#[derive(Debug, Clone)]
pub struct CrlCache {
    pub path: PathBuf,
    pub ca_files: Vec<PathBuf>,
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

/// The certificates in `intermediates/*.pem` next to `root_file` (a
/// two-level CA's directory), unverified: every use checks them against
/// the root.
pub fn intermediates_next_to(root_file: &Path) -> Vec<CertificateDer<'static>> {
    let dir = root_file.with_file_name("intermediates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .filter(|p| !p.to_string_lossy().ends_with(".crl.pem"))
        .filter_map(|p| crate::files::read_certs(p).ok())
        .flatten()
        .collect()
}

impl CrlCache {
    /// The cache beside `root`: `ca.crls.pem` in the root's directory, and
    /// the CA's `ca.crl.pem` and `root.crl.pem` there read as well.
    pub fn next_to(root: &Path) -> Self {
        CrlCache {
            path: root.with_file_name("ca.crls.pem"),
            ca_files: vec![
                root.with_file_name("ca.crl.pem"),
                root.with_file_name("root.crl.pem"),
            ],
        }
    }

    /// The cached CRLs that verify and are current (the file's and the
    /// CA's files', merged by the succession rule).
    pub fn load(&self, root: &CertificateDer<'_>) -> Result<CrlSet, FetchCrlError> {
        self.load_at(root, crate::unix_now() as i64)
            .map_err(|(_, e)| e)
    }

    /// [`CrlCache::load`] at `now`; on failure, the file to blame: the
    /// cache's, or the first CA file's when the cache does not exist.
    fn load_at(
        &self,
        root: &CertificateDer<'_>,
        now: i64,
    ) -> Result<CrlSet, (PathBuf, FetchCrlError)> {
        let own = read(&self.path).and_then(|b| Ok(CrlSet::from_pem(&b, root, now)?));
        let mut known = own.as_ref().map(CrlSet::intermediates).unwrap_or_default();
        known.extend(intermediates_next_to(&self.path));
        let mut first_err = None;
        let mut found = own.as_ref().ok().cloned();
        for path in self.ca_files.iter().filter(|p| p.exists()) {
            let set = read(path).and_then(|b| Ok(CrlSet::from_pem_with(&b, &known, root, now)?));
            match set {
                Ok(set) => found = Some(self.merge_ca_file(found, set, path)),
                Err(e) => {
                    first_err.get_or_insert((path.clone(), e));
                }
            }
        }
        match (found, own, first_err) {
            (Some(set), _, _) => Ok(set),
            (None, Err(FetchCrlError::Read { source, .. }), Some(ca_err))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(ca_err)
            }
            (None, Err(e), _) => Err((self.path.clone(), e)),
            (None, Ok(own), _) => Ok(own),
        }
    }

    /// `found` merged with the CRLs of the CA's file at `path`; one older
    /// than the one in hand (a replay) is refused aloud.
    fn merge_ca_file(&self, found: Option<CrlSet>, set: CrlSet, path: &Path) -> CrlSet {
        let merged = CrlSet::merge(found.as_ref(), set);
        for (issuer, e) in &merged.refused {
            tracing::warn!("the CRL of {issuer} in {} is not used: {e}", path.display());
        }
        merged.set
    }

    /// Stores the CRLs of `set` that succeed those in the file, issuer by
    /// issuer (the file's are judged by their signatures only, so expired
    /// ones are ordered too). A file that is not a CRL set of this root is
    /// replaced: no one could have relied on it. Answers whether it wrote.
    pub fn store(
        &self,
        set: &CrlSet,
        root: &CertificateDer<'_>,
    ) -> Result<bool, crate::files::FileError> {
        // Time 0: the order of two CRLs does not depend on the clock.
        let existing = read(&self.path)
            .ok()
            .and_then(|bytes| CrlSet::from_pem(&bytes, root, 0).ok());
        let merged = CrlSet::merge(existing.as_ref(), set.clone());
        if merged.newer.is_empty() {
            return Ok(false);
        }
        crate::files::write_public(&self.path, &merged.set.to_pem())?;
        Ok(true)
    }

    /// The CRLs a short-lived party (the client) should use now: the cached
    /// ones while they are in the first half of their life (no request to
    /// the CA at all); after that fetched ones, stored if newer; and when
    /// the fetch fails, the cached ones for as long as they are current.
    /// The CA publishes new CRLs at half-life too, so a refresh finds them.
    pub async fn current(
        &self,
        ca: &CaClient,
        root: &CertificateDer<'_>,
    ) -> Result<(CrlSet, CrlOrigin), NoCurrentCrl> {
        let cached = self.load_at(root, crate::unix_now() as i64);
        let now = crate::unix_now() as i64;
        if let Ok(set) = &cached {
            if now < set.half_life() {
                return Ok((set.clone(), CrlOrigin::CachedFresh));
            }
        }
        match fetch_crls(ca, root).await {
            Ok((fetched, from)) => Ok(self.keep_newest(fetched, from, cached.ok(), root)),
            Err(fetch) => match cached {
                Ok(set) => Ok((set, CrlOrigin::CachedCaDown(fetch.to_string()))),
                Err(cache) => Err(self.neither(fetch, cache)),
            },
        }
    }

    /// The newest CRLs to be had for a long-running party (the server),
    /// which refreshes on its own schedule: always fetched, then merged
    /// with the cached ones; the newer of each issuer is used and kept.
    pub async fn latest(
        &self,
        ca: Result<CaClient, FetchCrlError>,
        root: &CertificateDer<'_>,
    ) -> Result<CrlSet, NoCurrentCrl> {
        let fetched = match ca {
            Ok(ca) => fetch_crls(&ca, root).await,
            Err(e) => Err(e),
        };
        let cached = self.load_at(root, crate::unix_now() as i64);
        match (fetched, cached) {
            (Ok((fetched, from)), cached) => {
                Ok(self.keep_newest(fetched, from, cached.ok(), root).0)
            }
            (Err(_), Ok(cached)) => Ok(cached),
            (Err(fetch), Err(cache)) => Err(self.neither(fetch, cache)),
        }
    }

    /// The fetched CRLs merged with the cached ones, issuer by issuer
    /// ([`CrlSet::merge`]; the cached one wins a tie, as it was there
    /// first), and where they came from; what the fetch brought that is
    /// newer is stored. A CA that serves an older CRL than the cache holds
    /// does not roll the party back.
    fn keep_newest(
        &self,
        fetched: CrlSet,
        from: &'static str,
        cached: Option<CrlSet>,
        root: &CertificateDer<'_>,
    ) -> (CrlSet, CrlOrigin) {
        let Merged { set, refused, .. } = CrlSet::merge(cached.as_ref(), fetched);
        for (issuer, e) in &refused {
            tracing::warn!(
                "the CA's CRL of {issuer} is not used over the cached {}: {e}",
                self.path.display()
            );
        }
        match self.store(&set, root) {
            Ok(true) => tracing::debug!("cached CRLs {} in {}", set.numbers(), self.path.display()),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot cache the CRLs: {e}; they are used all the same"),
        }
        let origin = if refused.is_empty() {
            CrlOrigin::Fetched(from)
        } else {
            let kept = refused
                .into_iter()
                .map(|(issuer, e)| (issuer.id, e.to_string()))
                .collect();
            CrlOrigin::CachedNewer(from, kept)
        };
        (set, origin)
    }

    fn neither(
        &self,
        fetch: FetchCrlError,
        (path, cache): (PathBuf, FetchCrlError),
    ) -> NoCurrentCrl {
        let cache = match cache {
            FetchCrlError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "none yet".to_string()
            }
            FetchCrlError::Read { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        NoCurrentCrl {
            fetch,
            path: path.display().to_string(),
            cache,
        }
    }
}

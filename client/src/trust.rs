//! What the client trusts, and the revocation check before any byte of the
//! protocol.
//!
//! The root (`ca.pem`) is the only trust anchor; the server sends its
//! intermediate with its certificate. The client gets the current CRLs, one
//! per issuer (from the CA, through its cache `ca.crls.pem` next to the
//! root, or from a file), checks each against its issuer (the root, or an
//! intermediate the root signed) and the clock, and hands them all to
//! rustls, which then refuses a server certificate that is revoked, or
//! whose intermediate is, during the handshake. Revocation lives here
//! rather than in a module of its own because it is part of the trust
//! decision: the CRLs are loaded with the root and baked into the same TLS
//! configuration.
//!
//! rustls says only "revoked"; to say which certificate and why, the
//! verifier remembers the chain it was shown, and
//! [`ClientTls::revoked_error`] looks the serials up in the CRLs.
//!
//! Getting and verifying the CRLs is `pki_common::ca::crl`'s, the same code
//! the server runs; the recording verifier is in `pki_common::tls::verify`
//! beside the CA's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tracing::{info, warn};

use pki_common::ca::client::CaClient;
use pki_common::ca::crl::{
    fetch_crls, read_crls, CrlCache, CrlOrigin, FetchCrlError, NoCurrentCrl,
};
use pki_common::cert::CertInfo;
use pki_common::revocation::{CrlSet, VerifiedCrl};
use pki_common::tls::verify::RecordingVerifier;

use crate::{ClientConfig, ClientError};

/// What the client trusts, prepared once: the root, the checked CRLs and
/// the TLS configuration built from them (and from the client's
/// certificate).
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Remembers the last chain shown, to name it if it is revoked.
    verifier: Arc<RecordingVerifier>,
    crl: Option<CrlSet>,
    root: CertificateDer<'static>,
}

impl ClientTls {
    /// Reads the root, gets and checks the CRLs, and builds the TLS
    /// configuration.
    pub async fn prepare(config: &ClientConfig) -> Result<Self, ClientError> {
        let root = pki_common::files::read_cert(&config.ca)?;
        let crl = obtain_crl(&config.crl, &root).await?;
        let crls = crl.as_ref().map(CrlSet::ders).unwrap_or_default();
        let verifier = Arc::new(RecordingVerifier::new(pki_common::tls::server_verifier(
            &root, crls,
        )?));
        let identity = match &config.identity {
            Some(id) => {
                info!(
                    "phase 2 · TLS: presenting client certificate {} for {} if the server asks; signing the TLS handshake with its key, client.key (CertificateVerify), proves we hold it",
                    id.info.short_serial(),
                    id.info.names().join(", ")
                );
                Some((id.chain(), id.key_der()?))
            }
            None => None,
        };
        let mut tls = pki_common::tls::client_config_with(verifier.clone(), identity)?;
        // No TLS session resumption: a resumed handshake skips the
        // certificate, so the server would not be checked against the
        // current CRL again. Every connection verifies in full.
        tls.resumption = rustls::client::Resumption::disabled();
        Ok(ClientTls {
            config: Arc::new(tls),
            verifier,
            crl,
            root,
        })
    }

    /// The root trusted.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The CRLs in use, if revocation is checked.
    pub fn crls(&self) -> Option<&CrlSet> {
        self.crl.as_ref()
    }

    /// After rustls refused the server's certificate as revoked: names the
    /// certificate it was shown (or the intermediate of its chain that is
    /// revoked) and the reason the CRL gives, which rustls itself does not
    /// report.
    pub(crate) fn revoked_error(&self) -> ClientError {
        let leaf = self.verifier.seen().and_then(|c| CertInfo::parse(&c).ok());
        let serial = leaf
            .as_ref()
            .map(|i| i.serial_hex.clone())
            .unwrap_or_else(|| "unknown".into());
        let lookup = |serial: &str| self.crl.as_ref().and_then(|c| c.revocation_of(serial));
        if lookup(&serial).is_none() {
            let intermediates = self.verifier.seen_intermediates();
            for issuer in intermediates.iter().filter_map(|c| CertInfo::parse(c).ok()) {
                if let Some((reason, _)) = lookup(&issuer.serial_hex) {
                    return ClientError::IssuerRevoked {
                        serial,
                        issuer: issuer.subject_cn.clone().unwrap_or_default(),
                        issuer_serial: issuer.serial_hex,
                        reason,
                    };
                }
            }
        }
        let reason = lookup(&serial).and_then(|(r, _)| r);
        ClientError::Revoked { serial, reason }
    }
}

/// Where the client learns which certificates are revoked.
#[derive(Debug, Clone)]
pub enum CrlSource {
    /// `GET /v1/crls` (or `/v1/crl` from a one-level CA) from the CA at
    /// this URL, verified against the root, whose certificate must carry
    /// `ca_name` (default: the URL's host), on every use.
    Fetch {
        ca_url: String,
        ca_name: Option<String>,
    },
    /// The CA at `ca_url`, through the on-disk cache `cache` (what
    /// `pki-client` uses: `ca.crls.pem` next to the root): the cached CRLs
    /// while they are in the first half of their life, then fetched ones;
    /// the cached ones again while the CA is down, until their nextUpdate.
    /// See `pki_common::ca::crl::CrlCache`.
    Cached {
        ca_url: String,
        ca_name: Option<String>,
        cache: PathBuf,
    },
    /// A CRL file, PEM or DER: one CRL, or a bundle of CRLs with the
    /// intermediates that signed them (what the cache holds).
    File(PathBuf),
    /// No revocation check. Insecure: a revoked server is accepted.
    InsecureSkip,
}

/// Gets and checks the CRLs for phase 2; `None` only for
/// [`CrlSource::InsecureSkip`].
///
/// Any failure to get current CRLs is an error rather than "no CRL": the
/// client fails closed, and only an explicit `InsecureSkip` goes on blind.
pub async fn obtain_crl(
    source: &CrlSource,
    root: &CertificateDer<'static>,
) -> Result<Option<CrlSet>, ClientError> {
    obtain_crl_for("phase 2", source, root).await
}

/// [`obtain_crl`], narrated as part of `phase` ("client enrollment" when
/// enrollment checks the certificate it holds, "phase 2" before a
/// connection).
pub async fn obtain_crl_for(
    phase: &str,
    source: &CrlSource,
    root: &CertificateDer<'static>,
) -> Result<Option<CrlSet>, ClientError> {
    let (fetched, origin) = match source {
        CrlSource::InsecureSkip => {
            warn!("INSECURE: revocation is not checked (--insecure-skip-revocation); a revoked server certificate would be accepted");
            return Ok(None);
        }
        CrlSource::File(path) => (read_crls(path, root), path.display().to_string()),
        CrlSource::Fetch { ca_url, ca_name } => {
            let fetched = match CaClient::new(ca_url, ca_name.as_deref(), root) {
                Ok(ca) => fetch_crls(&ca, root).await,
                Err(e) => Err(e.into()),
            };
            let origin = match &fetched {
                Ok((_, path)) => format!("{ca_url}{path}"),
                Err(_) => ca_url.clone(),
            };
            (fetched.map(|(set, _)| set), origin)
        }
        CrlSource::Cached {
            ca_url,
            ca_name,
            cache,
        } => {
            return cached_crl(phase, ca_url, ca_name.as_deref(), cache, root)
                .await
                .map(Some);
        }
    };
    let set = fetched.map_err(|e| match e {
        // A CRL arrived but is not to be trusted: say exactly why.
        FetchCrlError::Refused(e) => ClientError::Crl(e),
        other => ClientError::RevocationUnknown { source: other },
    })?;
    for crl in set.iter() {
        narrate(phase, crl, &origin);
    }
    Ok(Some(set))
}

/// [`CrlSource::Cached`]: the CRLs through the cache, saying where each
/// came from (and, when the CA is down, that the cached ones stand in).
async fn cached_crl(
    phase: &str,
    ca_url: &str,
    ca_name: Option<&str>,
    cache: &Path,
    root: &CertificateDer<'static>,
) -> Result<CrlSet, ClientError> {
    let ca = CaClient::new(ca_url, ca_name, root).map_err(|e| ClientError::RevocationUnknown {
        source: FetchCrlError::from(e),
    })?;
    let cache = CrlCache {
        ca_files: CrlCache::next_to(cache).ca_files,
        path: cache.to_path_buf(),
    };
    let (set, origin) = match cache.current(&ca, root).await {
        Ok(found) => found,
        // The CA's CRL arrived but is not to be trusted: say exactly why.
        Err(NoCurrentCrl {
            fetch: FetchCrlError::Refused(e),
            ..
        }) => return Err(ClientError::Crl(e)),
        Err(e) => return Err(ClientError::NoCurrentCrl { source: e }),
    };
    let path = cache.path.display();
    if let CrlOrigin::CachedCaDown(why) = &origin {
        let numbers: Vec<String> = set.iter().map(|c| format!("#{}", c.number)).collect();
        let until = pki_common::cert::rfc3339(set.iter().map(|c| c.next_update).min().unwrap_or(0));
        warn!(
            "{phase} · revocation: the CA is unreachable ({why}); using the cached CRL {} from {path}, current until {until}",
            numbers.join(", ")
        );
    }
    for crl in set.iter() {
        match &origin {
            CrlOrigin::Fetched(from) => narrate(phase, crl, &format!("{ca_url}{from}")),
            CrlOrigin::CachedNewer(from, kept) => {
                match kept.iter().any(|(id, _)| *id == crl.issuer.id) {
                    true => narrate(
                        phase,
                        crl,
                        &format!("the cache {path} (newer than the CA's)"),
                    ),
                    false => narrate(phase, crl, &format!("{ca_url}{from}")),
                }
            }
            CrlOrigin::CachedFresh | CrlOrigin::CachedCaDown(_) => {
                narrate(phase, crl, &format!("the cache {path}"))
            }
        }
    }
    Ok(set)
}

/// One CRL: where it came from, who signed it, until when it holds, and
/// what it covers.
fn narrate(phase: &str, crl: &VerifiedCrl, origin: &str) {
    let signer = if crl.issuer.is_root() {
        "the root".to_string()
    } else {
        format!("{}, which the root signed,", crl.issuer)
    };
    let covers = if crl.issuer.is_root() {
        "the certificates the root signed"
    } else {
        "the leaves this intermediate issued"
    };
    info!(
        "{phase} · revocation: CRL #{} from {origin} is signed by {signer} and current until {} ({} revoked); it covers {covers}",
        crl.number,
        pki_common::cert::rfc3339(crl.next_update),
        crl.len()
    );
}

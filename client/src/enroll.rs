//! Phase 1 for the client: getting, keeping and renewing its own
//! certificate (clientAuth), which it presents when a server asks.
//!
//! The protocol with the CA is `pki_common::ca::enroll`; this module decides
//! when the certificate on disk is good enough to use or keep, and fails
//! closed: a certificate whose revocation status is unknown is not kept.

use rustls::pki_types::CertificateDer;
use tracing::info;

use pki_common::ca::enroll::{check_held, Enrolled, Held, KeyFiles, Retry};
use pki_common::cert::Profile;

use crate::trust::{obtain_crl, CrlSource};
use crate::ClientError;

/// Loads the client's certificate and key if they are good to present
/// (chain to the root, clientAuth, not expired); `None` if there are none.
pub fn load_identity(
    files: &KeyFiles,
    root: &CertificateDer<'static>,
) -> Result<Option<Enrolled>, ClientError> {
    if !files.cert.exists() && !files.key.exists() {
        return Ok(None);
    }
    match check_held(files, root, &[], Profile::Client, None) {
        Held::Good(e) => Ok(Some(e)),
        Held::DueForRenewal(e, why) => {
            tracing::warn!(
                "the client certificate is due for renewal ({why}); run `pki-client renew`"
            );
            Ok(Some(e))
        }
        Held::Unusable(why) => Err(ClientError::NeedToken(why)),
    }
}

/// `pki-client enroll`: keeps a good certificate for `name` (unless
/// `force`), otherwise makes a key and enrolls with `token`, retrying for
/// the default minute while the CA cannot be reached.
pub async fn enroll_client(
    ca_url: &str,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    name: &str,
    token: &str,
    force: bool,
) -> Result<Enrolled, ClientError> {
    enroll_client_within(ca_url, root, files, name, token, force, Retry::default()).await
}

/// [`enroll_client`], retrying as `retry` says (`--enroll-deadline`).
pub async fn enroll_client_within(
    ca_url: &str,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    name: &str,
    token: &str,
    force: bool,
    retry: Retry,
) -> Result<Enrolled, ClientError> {
    let names = vec![name.to_string()];
    if !force {
        if let Some(held) = still_good(ca_url, root, files, &names).await {
            info!(
                "client certificate {} for {name} is still good (serial {}, valid until {}); use --force to replace it",
                files.cert.display(),
                held.info.short_serial(),
                held.info.not_after_rfc3339()
            );
            return Ok(held);
        }
    }
    let ca = pki_common::ca::client::CaClient::new(ca_url, None, root)
        .map_err(pki_common::ca::enroll::EnrollError::from)?;
    let enrolled =
        pki_common::ca::enroll::enroll(&ca, root, &names, token, Profile::Client, retry).await?;
    enrolled.save(files)?;
    Ok(enrolled)
}

/// The certificate on disk, if it is good for `names` and worth keeping.
///
/// A certificate is kept only if the CA's current CRL says it is not
/// revoked; without a CRL its status is unknown, so it is replaced (which
/// needs the CA anyway).
async fn still_good(
    ca_url: &str,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    names: &[String],
) -> Option<Enrolled> {
    if !files.cert.exists() {
        // Nothing to keep: no revocation check to warn about either.
        return None;
    }
    let crl = obtain_crl(
        &CrlSource::Fetch {
            ca_url: ca_url.to_string(),
        },
        root,
    )
    .await
    .map_err(|e| {
        tracing::warn!("cannot check the current certificate's revocation ({e}); enrolling anew")
    })
    .ok()
    .flatten();
    let held = match &crl {
        Some(crl) => check_held(files, root, names, Profile::Client, Some(crl)),
        None => Held::Unusable("revocation status unknown".into()),
    };
    match held {
        Held::Good(held) => Some(held),
        _ => None,
    }
}

/// `pki-client renew`: renews the client's certificate with itself (new
/// key, same name). A revoked or expired certificate cannot renew.
pub async fn renew_client(
    ca_url: &str,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
) -> Result<Enrolled, ClientError> {
    let current = match check_held(files, root, &[], Profile::Client, None) {
        Held::Good(e) | Held::DueForRenewal(e, _) => e,
        Held::Unusable(why) => return Err(ClientError::NeedToken(why)),
    };
    let renewed =
        pki_common::ca::enroll::renew(ca_url, None, root, &current, Profile::Client).await?;
    renewed.save(files)?;
    Ok(renewed)
}

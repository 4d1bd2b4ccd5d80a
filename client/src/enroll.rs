//! Phase 1 for the client: getting, keeping and renewing its own
//! certificate (clientAuth), which it presents when a server asks.
//!
//! The protocol with the CA is `pki_common::ca::enroll`; this module decides
//! when the certificate on disk is good enough to use or keep, and fails
//! closed: a certificate whose revocation status is unknown is not kept.

use rustls::pki_types::CertificateDer;
use tracing::info;

use pki_common::ca::enroll::{check_held, Enrolled, Enrollment, Held, KeyFiles};
use pki_common::cert::Profile;

use crate::trust::{obtain_crl_for, CrlSource};
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
        Held::Unusable(why) => Err(ClientError::unusable(why)),
    }
}

/// `pki-client enroll`: keeps a good certificate for `name` (unless
/// `force`), otherwise makes a key and enrolls with the token at the CA
/// `ca` names (its URL, the name its certificate must carry, and how long
/// to retry while it cannot be reached).
pub async fn enroll_client(
    ca: &Enrollment,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    name: &str,
    force: bool,
) -> Result<Enrolled, ClientError> {
    let (ca_url, ca_name) = (ca.ca_url.as_str(), ca.ca_name.as_deref());
    let names = vec![name.to_string()];
    if !force {
        if let Some(held) = still_good(ca_url, ca_name, root, files, &names).await {
            info!(
                "client certificate {} for {name} is still good (serial {}, valid until {}); use --force to replace it",
                files.cert.display(),
                held.info.short_serial(),
                held.info.not_after_rfc3339()
            );
            return Ok(held);
        }
    }
    // Only now is a token needed: a certificate that is still good is kept
    // without one.
    let token = ca.token.as_deref().ok_or(ClientError::NoToken)?;
    let client = pki_common::ca::client::CaClient::new(ca_url, ca_name, root)
        .map_err(pki_common::ca::enroll::EnrollError::from)?;
    let enrolled =
        pki_common::ca::enroll::enroll(&client, root, &names, token, Profile::Client, ca.retry)
            .await?;
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
    ca_name: Option<&str>,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    names: &[String],
) -> Option<Enrolled> {
    if !files.cert.exists() {
        // Nothing to keep: no revocation check to warn about either.
        return None;
    }
    let crl = obtain_crl_for(
        "client enrollment",
        &CrlSource::Fetch {
            ca_url: ca_url.to_string(),
            ca_name: ca_name.map(str::to_owned),
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
        None => Held::Unusable(pki_common::ca::enroll::Unusable::RevocationUnknown {
            cert: files.cert.clone(),
        }),
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
    ca_name: Option<&str>,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
) -> Result<Enrolled, ClientError> {
    let current = match check_held(files, root, &[], Profile::Client, None) {
        Held::Good(e) | Held::DueForRenewal(e, _) => e,
        Held::Unusable(why) => return Err(ClientError::unusable(why)),
    };
    let renewed =
        pki_common::ca::enroll::renew(ca_url, ca_name, root, &current, Profile::Client).await?;
    renewed.save(files)?;
    Ok(renewed)
}

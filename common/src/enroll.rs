//! Phase 1 seen from the party that enrolls (the application server now,
//! clients later): steps 1 and 2 of the original flow.
//!
//! The key pair is generated here, in the enrolling process; only the CSR,
//! which proves possession of the key, ever leaves it. The certificate that
//! comes back is checked before it is trusted: it must chain to the root,
//! carry our own public key and every name we asked for.

use std::time::Duration;

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use tracing::{info, warn};

use crate::api;
use crate::cert::{verify_leaf, CertInfo, Purpose};
use crate::https::{CaClient, HttpsError};

/// Errors enrolling with the CA.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("cannot build the key or the CSR: {0}")]
    Csr(#[from] rcgen::Error),
    #[error(
        "the CA at {url} could not be reached before the deadline ({attempts} attempts): {last}"
    )]
    Unreachable {
        url: String,
        attempts: u32,
        last: HttpsError,
    },
    #[error(transparent)]
    Https(#[from] HttpsError),
    #[error("the CA refused the CSR ({status}): {error}: {detail}")]
    Refused {
        status: u16,
        error: String,
        detail: String,
    },
    #[error("the CA's answer is not a usable certificate: {0}")]
    BadAnswer(String),
}

/// How long and how often to retry while the CA cannot be reached.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Duration,
    /// The first pause; each later one doubles, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            deadline: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A freshly enrolled identity: our key and the certificate for it.
pub struct Enrolled {
    /// PKCS#8 PEM of the private key, to be written with mode 0600.
    pub key_pem: String,
    pub cert: CertificateDer<'static>,
    pub info: CertInfo,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Enrolled")
            .field("info", &self.info)
            .finish()
    }
}

/// Generates a P-256 key, sends a CSR for `names` to the CA with `token`,
/// and checks the certificate it answers. Retries with backoff while the CA
/// cannot be reached, up to `retry.deadline`; a refusal is final.
pub async fn enroll(
    ca: &CaClient,
    root: &CertificateDer<'_>,
    names: &[String],
    token: &str,
    purpose: Purpose,
    retry: Retry,
) -> Result<Enrolled, EnrollError> {
    let first = names
        .first()
        .ok_or_else(|| EnrollError::BadAnswer("no name to enroll for".into()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, first.as_str());
    let csr = params.serialize_request(&key)?;
    let csr_pem = csr.pem()?;

    let started = tokio::time::Instant::now();
    let mut backoff = retry.initial_backoff;
    let mut attempts = 0;
    let response = loop {
        attempts += 1;
        info!(
            "phase 1 · step 1: sent CSR for {} (ECDSA P-256) to {}",
            names.join(", "),
            ca.url()
        );
        match ca
            .post(
                api::SIGN,
                Some(token),
                "application/pkcs10",
                csr_pem.clone().into_bytes(),
            )
            .await
        {
            Ok(resp) => break resp,
            Err(e) if e.is_transient() && started.elapsed() + backoff < retry.deadline => {
                warn!(
                    "phase 1 · step 1: the CA is not reachable yet (attempt {attempts}: {e}); retrying in {backoff:?}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
            }
            Err(e) if e.is_transient() => {
                return Err(EnrollError::Unreachable {
                    url: ca.url().to_string(),
                    attempts,
                    last: e,
                })
            }
            Err(e) => return Err(e.into()),
        }
    };

    if !response.status.is_success() {
        let (error, detail) = match response.error_body() {
            Some(b) => (b.error, b.detail),
            None => (
                "unexpected answer".into(),
                String::from_utf8_lossy(&response.body).into_owned(),
            ),
        };
        return Err(EnrollError::Refused {
            status: response.status.as_u16(),
            error,
            detail,
        });
    }

    let cert = CertificateDer::from_pem_slice(&response.body)
        .map_err(|e| EnrollError::BadAnswer(format!("no PEM certificate in the answer: {e}")))?;
    let info = CertInfo::parse(&cert).map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    verify_leaf(&cert, root, purpose, Some(first), UnixTime::now())
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    if info.spki_der != key.subject_public_key_info() {
        return Err(EnrollError::BadAnswer(
            "the certificate does not carry our public key".into(),
        ));
    }
    let certified = info.names();
    if let Some(missing) = names.iter().find(|n| !certified.contains(n)) {
        return Err(EnrollError::BadAnswer(format!(
            "the certificate does not name {missing}"
        )));
    }
    info!(
        "phase 1 · step 2: received certificate serial {}, valid until {}, chains to the CA root",
        info.short_serial(),
        info.not_after_rfc3339()
    );
    Ok(Enrolled {
        key_pem: key.serialize_pem(),
        cert,
        info,
    })
}

//! Phase 1 seen from a party that holds a certificate (the application
//! server, and clients): steps 1 and 2 of the original flow, plus keeping
//! the certificate: reuse while it is good, renew before it runs out.
//!
//! The key pair is generated here, in the enrolling process; only the CSR,
//! which proves possession of the key, ever leaves it. The certificate that
//! comes back is checked before it is trusted: it must chain to the root,
//! carry our own public key and every name we asked for.
//!
//! Two ways to be authorized: a one-time enrollment token (`POST
//! /v1/sign`), or, to renew, the certificate being renewed, presented as a
//! TLS client certificate (`POST /v1/renew`). Renewal makes a new key too.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tracing::{info, warn};

use super::api;
use super::client::{CaClient, HttpsError, Response};
use crate::cert::{verify_leaf, CertInfo, Profile};
use crate::files;
use crate::revocation::CrlSet;

/// Errors enrolling with or renewing at the CA.
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
    /// `error` and `detail` are the CA's text, shown escaped so that they
    /// cannot forge log lines.
    #[error("the CA refused the CSR ({status}): {}: {}", crate::proto::log_safe(.error), crate::proto::log_safe(.detail))]
    Refused {
        status: u16,
        error: String,
        detail: String,
    },
    #[error("the CA's answer is not a usable certificate: {0}")]
    BadAnswer(String),
    #[error("the certificate to renew has expired; renewal needs a new token (`pki-ca token`, then enroll again)")]
    Expired,
    #[error("cannot save the new key and certificate: {0}")]
    Save(String),
}

impl EnrollError {
    /// What to change when the CA could not be reached or trusted; see
    /// [`HttpsError::hint`]. A refusal carries the CA's own advice.
    pub fn hint(&self, root: &str) -> Option<String> {
        match self {
            EnrollError::Https(e) => e.hint(root),
            // The CA may just be slow to start: waiting longer is a fix too.
            EnrollError::Unreachable { last, .. } => Some(match last.hint(root) {
                Some(hint) => format!("{hint}; or wait longer with --enroll-deadline"),
                None => "check --ca-url and that `pki-ca serve` runs there, or wait longer with --enroll-deadline".into(),
            }),
            _ => None,
        }
    }
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

/// A certified identity: our key and the certificate for it, with the
/// intermediates that link it to the root.
#[derive(Clone)]
pub struct Enrolled {
    /// PKCS#8 PEM of the private key, to be written with mode 0600.
    pub key_pem: String,
    /// The leaf: our certificate.
    pub cert: CertificateDer<'static>,
    /// The rest of the chain, the leaf's issuer first, the root left out
    /// (every party has it): empty under a one-level CA. Presented in TLS
    /// after the leaf, so a peer that trusts only the root can build the
    /// path.
    pub intermediates: Vec<CertificateDer<'static>>,
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

impl Enrolled {
    /// The key in the form rustls takes.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, EnrollError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| EnrollError::BadAnswer(format!("unreadable key: {e}")))
    }

    /// The chain as presented in TLS and written to the certificate file:
    /// the leaf, then its intermediates.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.cert.clone())
            .chain(self.intermediates.iter().cloned())
            .collect()
    }

    /// Writes the key (mode 0600) and the chain (leaf first), and says so.
    pub fn save(&self, files: &KeyFiles) -> Result<(), files::FileError> {
        files::write_private_key(&files.key, &self.key_pem)?;
        let pem: String = self.chain().iter().map(files::cert_to_pem).collect();
        files::write_public(&files.cert, &pem)?;
        info!(
            "wrote {} (mode 0600) and {}",
            files.key.display(),
            files.cert.display()
        );
        Ok(())
    }
}

/// Where a party keeps its key and certificate.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub key: PathBuf,
    pub cert: PathBuf,
}

/// What the files on disk are good for.
pub enum Held {
    /// Good: chains, names us, not revoked, more than a third of its
    /// lifetime left.
    Good(Enrolled),
    /// Still valid but due for renewal (a third or less of its lifetime
    /// left): renew it with itself.
    DueForRenewal(Enrolled, String),
    /// Unusable; [`Unusable`] says why, and whether a new token is the fix.
    Unusable(Unusable),
}

/// Why the key and certificate on disk cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("{} or {} is missing", .cert.display(), .key.display())]
    Missing { cert: PathBuf, key: PathBuf },
    /// Unreadable, or a key others can read: the file needs fixing, which
    /// a new token would not do.
    #[error(transparent)]
    File(files::FileError),
    #[error("{}: not a usable private key ({reason})", .key.display())]
    BadKey { key: PathBuf, reason: String },
    #[error("{} is not the key of {}", .key.display(), .cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{}: {source}", .cert.display())]
    Cert {
        cert: PathBuf,
        source: crate::cert::CertError,
    },
    #[error("{} does not name {name}", .cert.display())]
    NotNamed { cert: PathBuf, name: String },
    #[error("{} (serial {serial}) is revoked ({})", .cert.display(), .reason.map(|r| r.as_str()).unwrap_or("no reason given"))]
    Revoked {
        cert: PathBuf,
        serial: String,
        reason: Option<crate::revocation::Reason>,
    },
    /// The intermediate that issued it is revoked (on the root's CRL), and
    /// with it every certificate it issued.
    #[error("the intermediate {issuer} (serial {serial}) that issued {} is revoked ({}), and every certificate it issued with it", .cert.display(), .reason.map(|r| r.as_str()).unwrap_or("no reason given"))]
    IssuerRevoked {
        cert: PathBuf,
        issuer: String,
        serial: String,
        reason: Option<crate::revocation::Reason>,
    },
    /// No current CRL says whether it is revoked.
    #[error("the revocation status of {} is unknown", .cert.display())]
    RevocationUnknown { cert: PathBuf },
}

impl Unusable {
    /// Whether the certificate was issued by another root than the one in
    /// hand: the fix may be the root file rather than a new certificate.
    pub fn is_other_root(&self) -> bool {
        matches!(
            self,
            Unusable::Cert {
                source: crate::cert::CertError::OtherRoot,
                ..
            }
        )
    }
}

/// Judges the key and certificate in `files`.
pub fn check_held(
    files: &KeyFiles,
    root: &CertificateDer<'static>,
    names: &[String],
    purpose: Profile,
    crl: Option<&CrlSet>,
) -> Held {
    match load_held(files, root, names, purpose, crl) {
        Err(reason) => Held::Unusable(reason),
        Ok(held) => {
            let now = crate::unix_now() as i64;
            if now >= held.info.renewal_due() {
                let left = held.info.lifetime_left(now);
                let reason = format!("only {:.0}% of its lifetime is left", left * 100.0);
                Held::DueForRenewal(held, reason)
            } else {
                Held::Good(held)
            }
        }
    }
}

fn load_held(
    files: &KeyFiles,
    root: &CertificateDer<'static>,
    names: &[String],
    purpose: Profile,
    crl: Option<&CrlSet>,
) -> Result<Enrolled, Unusable> {
    if !files.cert.exists() || !files.key.exists() {
        return Err(Unusable::Missing {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    let cert_err = |source| Unusable::Cert {
        cert: files.cert.clone(),
        source,
    };
    let mut chain = files::read_certs(&files.cert).map_err(Unusable::File)?;
    let cert = chain.remove(0);
    let intermediates = chain;
    let key_pem = files::read_private_key_pem(&files.key).map_err(Unusable::File)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| Unusable::BadKey {
        key: files.key.clone(),
        reason: e.to_string(),
    })?;
    let info = CertInfo::parse(&cert).map_err(cert_err)?;
    if info.spki_der != key.subject_public_key_info() {
        return Err(Unusable::KeyMismatch {
            key: files.key.clone(),
            cert: files.cert.clone(),
        });
    }
    let first = names.first().map(String::as_str);
    verify_leaf(&cert, &intermediates, root, purpose, first, UnixTime::now()).map_err(cert_err)?;
    let certified = info.names();
    if let Some(missing) = names.iter().find(|n| !certified.contains(n)) {
        return Err(Unusable::NotNamed {
            cert: files.cert.clone(),
            name: missing.clone(),
        });
    }
    if let Some(crl) = crl {
        revoked_in_chain(&files.cert, &info, &intermediates, crl)?;
    }
    Ok(Enrolled {
        key_pem,
        cert,
        intermediates,
        info,
    })
}

/// Whether `crl` revokes the leaf (`info`) or one of its intermediates:
/// a revoked intermediate takes every certificate it issued with it.
fn revoked_in_chain(
    path: &std::path::Path,
    info: &CertInfo,
    intermediates: &[CertificateDer<'static>],
    crl: &CrlSet,
) -> Result<(), Unusable> {
    if let Some((reason, _)) = crl.revocation_of(&info.serial_hex) {
        return Err(Unusable::Revoked {
            cert: path.to_path_buf(),
            serial: info.short_serial(),
            reason,
        });
    }
    for issuer in intermediates.iter().filter_map(|c| CertInfo::parse(c).ok()) {
        if let Some((reason, _)) = crl.revocation_of(&issuer.serial_hex) {
            return Err(Unusable::IssuerRevoked {
                cert: path.to_path_buf(),
                issuer: issuer.subject_cn.clone().unwrap_or_default(),
                serial: issuer.short_serial(),
                reason,
            });
        }
    }
    Ok(())
}

/// Who signed the certificate in hand, and which CRL covers each
/// certificate of its chain.
fn narrate_held(label: &str, held: &Enrolled, root: &CertificateDer<'_>, crl: Option<&CrlSet>) {
    info!(
        "{label} · chain: {}",
        crate::cert::describe_chain(&held.cert, &held.intermediates, root)
    );
    if let Some(crl) = crl {
        info!(
            "{label} · revocation: {}",
            crl.describe_coverage(&held.chain())
        );
    }
}

/// A fresh P-256 key and a CSR for `names`.
fn key_and_csr(names: &[String]) -> Result<(KeyPair, String), EnrollError> {
    let first = names
        .first()
        .ok_or_else(|| EnrollError::BadAnswer("no name to enroll for".into()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, first.as_str());
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

/// Steps 1 and 2: generates a P-256 key, sends a CSR for `names` to the CA
/// with `token`, and checks the certificate it answers. Retries with
/// backoff while the CA cannot be reached, up to `retry.deadline`; a
/// refusal is final.
pub async fn enroll(
    ca: &CaClient,
    root: &CertificateDer<'_>,
    names: &[String],
    token: &str,
    purpose: Profile,
    retry: Retry,
) -> Result<Enrolled, EnrollError> {
    let (key, csr) = key_and_csr(names)?;
    // State the profile we need, so that the CA refuses a token of
    // another profile before spending it on a certificate we would discard.
    let path = api::sign_path(purpose);
    let (label, ask, answer) = step_labels(purpose);
    let response =
        retry_while_unreachable(ca.url(), &format!("{label} · {ask}"), retry, || async {
            let response = ca
                .post(
                    &path,
                    Some(token),
                    "application/pkcs10",
                    csr.clone().into_bytes(),
                )
                .await?;
            unavailable_is_transient(ca.url(), response)
        })
        .await?;
    // Said only now: the CSR has reached the CA, which has answered.
    info!(
        "{label} · {ask}: sent CSR for {} to {} with the one-time token; the CSR carries our new ECDSA P-256 public key and is signed with its private key (proof of possession), which never leaves this process",
        names.join(", "),
        ca.url()
    );
    let enrolled = check_answer(response, key, root, names, purpose)?;
    info!(
        "{label} · {answer}: received certificate serial {}, valid until {}, signed by the CA's intermediate, chains to the CA root",
        enrolled.info.short_serial(),
        enrolled.info.not_after_rfc3339()
    );
    info!(
        "{label} · chain: {}",
        crate::cert::describe_chain(&enrolled.cert, &enrolled.intermediates, root)
    );
    Ok(enrolled)
}

/// The narration's labels for enrolling as `purpose`: the server's is the
/// lab's phase 1 (steps 1 and 2); the client's enrollment, which the lab
/// did not have, has its own label and steps (E1, E2), so it is never
/// mistaken for the server's.
pub fn step_labels(purpose: Profile) -> (&'static str, &'static str, &'static str) {
    match purpose {
        Profile::Client => ("client enrollment", "E1", "E2"),
        Profile::Server => ("phase 1", "step 1", "step 2"),
    }
}

/// A `503 ledger_unavailable` answer as the transient error it is: the CA
/// is up but cannot record a certificate now (its database unreachable)
/// and says to retry; the token was not spent, so trying again with it is
/// right. Other 503s (no current intermediate, an expiring one) need the
/// operator, so they stay final refusals with their advice.
fn unavailable_is_transient(url: &str, response: Response) -> Result<Response, HttpsError> {
    let body = response.error_body();
    let ledger_down = response.status == hyper::StatusCode::SERVICE_UNAVAILABLE
        && body
            .as_ref()
            .is_some_and(|b| b.error == "ledger_unavailable");
    if !ledger_down {
        return Ok(response);
    }
    let detail = body.map(|b| b.detail).unwrap_or_default();
    Err(HttpsError::Unavailable {
        addr: url.to_string(),
        detail: crate::proto::log_safe(&detail).to_string(),
    })
}

/// Runs `attempt` until it gets an answer, fails for good, or the next try
/// would start after `retry.deadline`, pausing with backoff in between.
///
/// Each pause is announced once, as "CA unreachable, retrying (attempt n,
/// next in …)", so that a party waiting for a CA that is not up yet says
/// what it is doing instead of repeating what it tried. `label` prefixes
/// the line (the step of the flow). Only transient failures (no
/// connection, a timeout, a broken exchange) are retried; a TLS refusal is
/// final at once, as trying again cannot change it.
pub async fn retry_while_unreachable<T, Fut>(
    url: &str,
    label: &str,
    retry: Retry,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, EnrollError>
where
    Fut: std::future::Future<Output = Result<T, HttpsError>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = retry.initial_backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Ok(answer) => return Ok(answer),
            Err(e) if e.is_transient() && started.elapsed() + backoff < retry.deadline => {
                warn!("{label}: CA unreachable, retrying (attempt {attempts}, next in {backoff:?}): {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
            }
            Err(e) if e.is_transient() => {
                return Err(EnrollError::Unreachable {
                    url: url.to_string(),
                    attempts,
                    last: e,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Renews `current` at the CA at `ca_url`: presents it as the TLS client
/// certificate, sends a CSR for the same names with a new key, and checks
/// the answer. One attempt; the caller decides when to try again.
pub async fn renew(
    ca_url: &str,
    ca_name: Option<&str>,
    root: &CertificateDer<'static>,
    current: &Enrolled,
    purpose: Profile,
) -> Result<Enrolled, EnrollError> {
    if current.info.not_after <= crate::unix_now() as i64 {
        return Err(EnrollError::Expired);
    }
    let names = current.info.names();
    let ca = CaClient::with_identity(ca_url, ca_name, root, (current.chain(), current.key_der()?))?;
    let (key, csr) = key_and_csr(&names)?;
    info!(
        "renewal: sent CSR for {} (new ECDSA P-256 key) to {}, authenticated by certificate {}",
        names.join(", "),
        ca.url(),
        current.info.short_serial()
    );
    let response = ca
        .post(api::RENEW, None, "application/pkcs10", csr.into_bytes())
        .await?;
    let renewed = check_answer(response, key, root, &names, purpose)?;
    info!(
        "renewal: received certificate serial {} (replaces {}), valid until {}",
        renewed.info.short_serial(),
        current.info.short_serial(),
        renewed.info.not_after_rfc3339()
    );
    Ok(renewed)
}

/// Checks the CA's answer: a certificate chain (`application/pem-certificate-chain`:
/// the leaf, then the intermediates that issued it; a one-level CA sends
/// the leaf alone) whose leaf chains to the root through those
/// intermediates, for our key, naming every name we asked for.
fn check_answer(
    response: Response,
    key: KeyPair,
    root: &CertificateDer<'_>,
    names: &[String],
    purpose: Profile,
) -> Result<Enrolled, EnrollError> {
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
    let mut chain = answer_chain(&response.body, root)?;
    let cert = chain.remove(0);
    let intermediates = chain;
    let info = CertInfo::parse(&cert).map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    let first = names.first().map(String::as_str);
    verify_leaf(&cert, &intermediates, root, purpose, first, UnixTime::now())
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
    Ok(Enrolled {
        key_pem: key.serialize_pem(),
        cert,
        intermediates,
        info,
    })
}

/// The certificates of a PEM chain, leaf first, without the root should
/// the CA append it (every party has it already). At least one.
fn answer_chain(
    body: &[u8],
    root: &CertificateDer<'_>,
) -> Result<Vec<CertificateDer<'static>>, EnrollError> {
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(body) {
        let cert = cert.map_err(|_| {
            EnrollError::BadAnswer("the PEM certificate chain in the answer is malformed".into())
        })?;
        if chain.is_empty() || cert.as_ref() != root.as_ref() {
            chain.push(cert);
        }
    }
    if chain.is_empty() {
        return Err(EnrollError::BadAnswer(
            "no PEM certificate in the answer".into(),
        ));
    }
    Ok(chain)
}

/// How a party reaches the CA to enroll and renew.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub ca_url: String,
    /// The name the CA's certificate must carry (default: the URL's host).
    pub ca_name: Option<String>,
    /// A one-time token from `pki-ca token`, spent only if enrolling anew
    /// is needed.
    pub token: Option<String>,
    pub retry: Retry,
}

/// Why no certificate could be had.
#[derive(Debug, thiserror::Error)]
pub enum ObtainError {
    /// Nothing usable on disk, and no token to enroll with.
    #[error("no usable certificate ({reason}) and no enrollment token")]
    NeedToken {
        reason: String,
        /// The certificate was issued by another root than the one in
        /// hand, which may be the file to fix.
        other_root: bool,
    },
    #[error("enrollment failed: {0}")]
    Enroll(#[from] EnrollError),
    #[error(transparent)]
    File(#[from] files::FileError),
}

/// Renews `current` at the CA and saves the new key and certificate.
pub async fn renew_and_save(
    enrollment: &Enrollment,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    current: &Enrolled,
    purpose: Profile,
) -> Result<Enrolled, EnrollError> {
    let ca_name = enrollment.ca_name.as_deref();
    let renewed = renew(&enrollment.ca_url, ca_name, root, current, purpose).await?;
    renewed
        .save(files)
        .map_err(|e| EnrollError::Save(e.to_string()))?;
    Ok(renewed)
}

/// Phase 1 for a party that keeps its certificate in `files`: reuse it
/// while it is good; past two thirds of its life, renew it with itself;
/// when it is unusable (missing, revoked per `crl`, from another root,
/// expired), make a fresh key and enroll with the token.
///
/// A certificate that is due but cannot be renewed is still used when
/// there is no token: it is valid, and renewal is retried later.
pub async fn obtain(
    enrollment: &Enrollment,
    root: &CertificateDer<'static>,
    files: &KeyFiles,
    names: &[String],
    purpose: Profile,
    crl: Option<&CrlSet>,
) -> Result<Enrolled, ObtainError> {
    let mut other_root = false;
    let (label, _, _) = step_labels(purpose);
    let reason = match check_held(files, root, names, purpose, crl) {
        Held::Good(held) => {
            info!(
                "{label}: reusing {} (serial {}, valid until {}, chains to the CA root)",
                files.cert.display(),
                held.info.short_serial(),
                held.info.not_after_rfc3339(),
            );
            narrate_held(label, &held, root, crl);
            return Ok(held);
        }
        Held::DueForRenewal(held, why) => {
            info!(
                "{label}: {} is due for renewal ({why})",
                files.cert.display()
            );
            match renew_and_save(enrollment, root, files, &held, purpose).await {
                Ok(renewed) => return Ok(renewed),
                Err(e) if enrollment.token.is_none() => {
                    warn!("{label}: renewal failed ({e}); starting with the current certificate, renewal will be retried");
                    return Ok(held);
                }
                Err(e) => format!("renewal failed: {e}"),
            }
        }
        // A key file others can read is the file's problem, not one a new
        // token solves; with a token the files are replaced anyway.
        Held::Unusable(Unusable::File(e)) if enrollment.token.is_none() => {
            return Err(ObtainError::File(e))
        }
        Held::Unusable(why) => {
            other_root = why.is_other_root();
            why.to_string()
        }
    };
    let Some(token) = enrollment.token.as_deref() else {
        return Err(ObtainError::NeedToken { reason, other_root });
    };
    info!("{label}: enrolling with the CA ({reason})");
    let ca = CaClient::new(&enrollment.ca_url, enrollment.ca_name.as_deref(), root)
        .map_err(EnrollError::from)?;
    let enrolled = enroll(&ca, root, names, token, purpose, enrollment.retry).await?;
    enrolled.save(files)?;
    Ok(enrolled)
}

//! What the client trusts, and the revocation check before any byte of the
//! protocol.
//!
//! The root (`ca.pem`) is the only trust anchor. The client gets the current
//! CRL (from the CA, or a file), checks that the root signed it and that it
//! is not stale, and hands it to rustls, which then refuses a revoked server
//! certificate during the handshake. Revocation lives here rather than in a
//! module of its own because it is part of the trust decision: the CRL is
//! loaded with the root and baked into the same TLS configuration.
//!
//! rustls says only "revoked"; to say which certificate and why, the
//! verifier remembers the certificate it was shown, and
//! [`ClientTls::revoked_error`] looks the serial up in the CRL.
//!
//! Fetching the CRL is done the same way by other crates; it stays here
//! until it moves into `pki-common`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tracing::{info, warn};

use pki_common::cert::CertInfo;
use pki_common::revocation::{crl_from_pem_or_der, verify_crl, VerifiedCrl};

use crate::{ClientConfig, ClientError};

/// What the client trusts, prepared once: the root, the checked CRL and the
/// TLS configuration built from them (and from the client's certificate).
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Remembers the last certificate shown, to name it if it is revoked.
    verifier: Arc<RecordingVerifier>,
    crl: Option<VerifiedCrl>,
}

impl ClientTls {
    /// Reads the root, gets and checks the CRL, and builds the TLS
    /// configuration.
    pub async fn prepare(config: &ClientConfig) -> Result<Self, ClientError> {
        let root = pki_common::files::read_cert(&config.ca)?;
        let crl = obtain_crl(&config.crl, &root).await?;
        let crls = crl.iter().map(|c| c.der.clone()).collect();
        let verifier = Arc::new(RecordingVerifier::new(pki_common::tls::server_verifier(
            &root, crls,
        )?));
        let identity = match &config.identity {
            Some(id) => {
                info!(
                    "phase 2 · TLS: presenting client certificate {} for {} if the server asks",
                    id.info.short_serial(),
                    id.info.names().join(", ")
                );
                Some((vec![id.cert.clone()], id.key_der()?))
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
        })
    }

    /// After rustls refused the server's certificate as revoked: names the
    /// certificate it was shown and the reason the CRL gives, which rustls
    /// itself does not report.
    pub(crate) fn revoked_error(&self) -> ClientError {
        let serial = self
            .verifier
            .seen()
            .and_then(|c| CertInfo::parse(&c).ok())
            .map(|i| i.serial_hex)
            .unwrap_or_else(|| "unknown".into());
        let reason = self
            .crl
            .as_ref()
            .and_then(|c| c.revocation_of(&serial))
            .flatten();
        ClientError::Revoked { serial, reason }
    }
}

/// Where the client learns which certificates are revoked.
#[derive(Debug, Clone)]
pub enum CrlSource {
    /// `GET /v1/crl` from the CA at this URL (verified against the root).
    Fetch { ca_url: String },
    /// A CRL file, PEM or DER.
    File(PathBuf),
    /// No revocation check. Insecure: a revoked server is accepted.
    InsecureSkip,
}

/// Gets and checks the CRL; `None` only for [`CrlSource::InsecureSkip`].
///
/// Any failure to get a current CRL is an error rather than "no CRL": the
/// client fails closed, and only an explicit `InsecureSkip` goes on blind.
pub async fn obtain_crl(
    source: &CrlSource,
    root: &CertificateDer<'static>,
) -> Result<Option<VerifiedCrl>, ClientError> {
    let unknown = |reason: String| ClientError::RevocationUnknown { reason };
    let (bytes, origin) = match source {
        CrlSource::InsecureSkip => {
            warn!("INSECURE: revocation is not checked (--insecure-skip-revocation); a revoked server certificate would be accepted");
            return Ok(None);
        }
        CrlSource::File(path) => (
            std::fs::read(path)
                .map_err(|e| unknown(format!("cannot read the CRL {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        CrlSource::Fetch { ca_url } => {
            let ca = pki_common::https::CaClient::new(ca_url, None, root)
                .map_err(|e| unknown(e.to_string()))?;
            let resp = ca
                .get(pki_common::api::CRL)
                .await
                .map_err(|e| unknown(format!("cannot fetch the CRL: {e}")))?;
            if !resp.status.is_success() {
                return Err(unknown(format!(
                    "the CA answered {} for its CRL",
                    resp.status
                )));
            }
            (
                resp.body.to_vec(),
                format!("{ca_url}{}", pki_common::api::CRL),
            )
        }
    };
    let der = crl_from_pem_or_der(&bytes)?;
    let crl = verify_crl(der, root, pki_common::unix_now() as i64)?;
    info!(
        "phase 2 · revocation: CRL #{} from {origin} is signed by the root and current until {} ({} revoked)",
        crl.number,
        pki_common::cert::rfc3339(crl.next_update),
        crl.len()
    );
    Ok(Some(crl))
}

/// Delegates to the WebPKI verifier and remembers the end-entity
/// certificate it was shown, so a refusal can name it.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl RecordingVerifier {
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        RecordingVerifier {
            inner,
            seen: Mutex::new(None),
        }
    }

    /// The last end-entity certificate presented.
    pub fn seen(&self) -> Option<CertificateDer<'static>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

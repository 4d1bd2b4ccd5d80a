//! The TLS client-certificate check of the CA's listener, used only by
//! renewal.
//!
//! This is the first of the two layers that authorize a renewal (see
//! [`authorize`](crate::authorize)): chain, validity and EKU, which need the
//! handshake. Everything the ledger knows is judged after the handshake,
//! by `Ca::authorize_renewal`, so that a refusal can say why.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Verifies the optional TLS client certificate on the CA's listener, which
/// only renewal uses.
///
/// It differs from rustls's WebPKI client verifier in one respect: it
/// accepts a certificate with either the serverAuth or the clientAuth EKU,
/// since servers renew their certificates too. The chain to the root and
/// the validity are checked as usual; revocation is judged by the renewal
/// handler from the ledger, so that its refusal can say why.
#[derive(Debug)]
pub(crate) struct RenewalClientVerifier {
    root: CertificateDer<'static>,
}

impl RenewalClientVerifier {
    /// A verifier accepting certificates issued by `root`.
    pub(crate) fn new(root: CertificateDer<'static>) -> Self {
        RenewalClientVerifier { root }
    }
}

/// Accepts serverAuth or clientAuth.
struct ServerOrClientAuth;

impl webpki::ExtendedKeyUsageValidator for ServerOrClientAuth {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
        const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
        for id in iter {
            let id = id?;
            if id == webpki::KeyPurposeId::new(SERVER_AUTH)
                || id == webpki::KeyPurposeId::new(CLIENT_AUTH)
            {
                return Ok(());
            }
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::client_auth(),
                present: Vec::new(),
            },
        ))
    }
}

impl ClientCertVerifier for RenewalClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bad = |e: webpki::Error| {
            rustls::Error::InvalidCertificate(match e {
                webpki::Error::CertExpired { .. } => CertificateError::Expired,
                webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
                webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
                webpki::Error::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
                webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
                other => CertificateError::Other(rustls::OtherError(std::sync::Arc::new(other))),
            })
        };
        let anchor = webpki::anchor_from_trusted_cert(&self.root).map_err(bad)?;
        let ee = webpki::EndEntityCert::try_from(end_entity).map_err(bad)?;
        let algs = pki_common::tls::provider().signature_verification_algorithms;
        ee.verify_for_usage(
            algs.all,
            &[anchor],
            intermediates,
            now,
            ServerOrClientAuth,
            None,
            None,
        )
        .map_err(bad)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Every listener here is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &pki_common::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        pki_common::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

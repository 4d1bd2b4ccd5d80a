//! The certificate verifiers this project writes itself, side by side,
//! and the one path validation they and [`crate::cert::verify_leaf`] run.
//!
//! Everything else uses rustls's WebPKI verifiers unchanged. These two
//! wrap or reuse the same rustls-webpki code, and differ only where noted:
//! - [`RecordingVerifier`] (the client): the standard server verifier, but
//!   it remembers the certificate it was shown, so a "revoked" refusal can
//!   name the certificate and the CRL's reason.
//! - [`RenewalClientVerifier`] (the CA): accepts a client certificate with
//!   either the serverAuth or the clientAuth EKU, since servers renew their
//!   certificates too.
//! - [`CaEndpointVerifier`] (every party talking to the CA): the standard
//!   server verifier, plus the CA-endpoint EKU ([`CA_ENDPOINT_EKU_OID`]),
//!   which only the CA's own TLS certificate carries.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::provider;

/// id-kp-serverAuth (RFC 5280 §4.2.1.12), DER content octets.
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// id-kp-clientAuth.
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// The extended key usage that marks the CA's own TLS certificate, in
/// dotted form: a UUID OID (ITU-T X.667, arc 2.25), which needs no
/// registration and cannot collide with anyone else's.
///
/// The CA puts it, next to serverAuth, on its own endpoint certificate
/// only; the issuance path for every other certificate cannot set it. So a
/// certificate the CA issued to a token holder, even one naming the CA's
/// address, does not pass [`CaEndpointVerifier`].
pub const CA_ENDPOINT_EKU_OID: &str = "2.25.125654714155661035733071156709513752857";

/// [`CA_ENDPOINT_EKU_OID`], DER content octets (what rustls-webpki compares).
pub const CA_ENDPOINT_EKU: &[u8] = &[
    0x69, 0x81, 0xbd, 0x88, 0x9b, 0xee, 0x9b, 0xda, 0xfa, 0xac, 0x9f, 0xb4, 0x99, 0x90, 0xe7, 0xde,
    0x81, 0x9f, 0xe2, 0x19,
];

/// The value of the extendedKeyUsage extension on the CA's own TLS
/// certificate: `SEQUENCE { id-kp-serverAuth, CA_ENDPOINT_EKU }`, DER.
/// rcgen encodes OID arcs as u64 and a UUID arc is 128 bits, so the CA
/// writes this value as is; a test checks that openssl reads it back as
/// those two purposes.
pub const CA_ENDPOINT_EKU_EXTENSION: &[u8] = &[
    0x30, 0x20, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x14, 0x69, 0x81,
    0xbd, 0x88, 0x9b, 0xee, 0x9b, 0xda, 0xfa, 0xac, 0x9f, 0xb4, 0x99, 0x90, 0xe7, 0xde, 0x81, 0x9f,
    0xe2, 0x19,
];

/// The handshake-signature half of a verifier that checks signatures
/// itself: with the one provider, TLS 1.3 only (every listener and client
/// here refuses TLS 1.2, so a 1.2 signature is a peer out of contract).
macro_rules! provider_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &rustls::pki_types::CertificateDer<'_>,
            _dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls12NotOffered,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &$crate::tls::provider().signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            $crate::tls::provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}
pub(crate) use provider_signatures;

/// The handshake-signature half of a [`ServerCertVerifier`] that wraps
/// the WebPKI verifier in `self.inner`: signatures are checked exactly as
/// rustls checks them; only the certificate checks differ.
macro_rules! delegate_signatures {
    () => {
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
    };
}

/// Path validation of `leaf` to `root` at `now` for `usage`: the code
/// rustls runs during a handshake, so "chains to the root" means the same
/// everywhere in this project.
pub fn verify_chain<'a>(
    leaf: &'a CertificateDer<'a>,
    root: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: impl webpki::ExtendedKeyUsageValidator,
) -> Result<webpki::EndEntityCert<'a>, webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(root)?;
    let ee = webpki::EndEntityCert::try_from(leaf)?;
    let algs = provider().signature_verification_algorithms;
    ee.verify_for_usage(algs.all, &[anchor], intermediates, now, usage, None, None)?;
    Ok(ee)
}

/// Delegates to the WebPKI verifier and remembers the chain it was
/// shown, so a refusal can name the certificate (the leaf, or the
/// intermediate that a revocation of the whole branch is about).
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Option<CertificateDer<'static>>>,
    seen_intermediates: Mutex<Vec<CertificateDer<'static>>>,
}

impl RecordingVerifier {
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        RecordingVerifier {
            inner,
            seen: Mutex::new(None),
            seen_intermediates: Mutex::new(Vec::new()),
        }
    }

    /// The intermediates presented with the last end-entity certificate.
    pub fn seen_intermediates(&self) -> Vec<CertificateDer<'static>> {
        self.seen_intermediates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
        *self
            .seen_intermediates
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = intermediates
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    delegate_signatures!();
}

/// Verifies the optional TLS client certificate on the CA's listener, which
/// only renewal uses.
///
/// It differs from rustls's WebPKI client verifier in one respect: it
/// accepts a certificate with either the serverAuth or the clientAuth EKU.
/// The chain to the root and the validity are checked as usual; revocation
/// and the rest of the renewal rules are judged by the CA from its ledger
/// after the handshake, so that a refusal can say why.
#[derive(Debug)]
pub struct RenewalClientVerifier {
    root: CertificateDer<'static>,
}

impl RenewalClientVerifier {
    /// A verifier accepting certificates issued by `root`.
    pub fn new(root: CertificateDer<'static>) -> Self {
        RenewalClientVerifier { root }
    }
}

/// Accepts serverAuth or clientAuth.
///
/// rustls-webpki applies the rule to every certificate of the path, and an
/// issuer without an extendedKeyUsage extension (the intermediates) must
/// pass; so an empty list passes here, and [`leaf_ekus`] holds the end
/// entity itself to the rule after path validation.
struct ServerOrClientAuth;

impl webpki::ExtendedKeyUsageValidator for ServerOrClientAuth {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut empty = true;
        for id in iter {
            empty = false;
            let id = id?;
            if id == webpki::KeyPurposeId::new(SERVER_AUTH)
                || id == webpki::KeyPurposeId::new(CLIENT_AUTH)
            {
                return Ok(());
            }
        }
        if empty {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::client_auth(),
                present: Vec::new(),
            },
        ))
    }
}

/// The end entity's own extended key usages (DER content octets of each
/// OID; empty without the extension or when it cannot be parsed, which
/// path validation has refused already).
fn leaf_ekus(leaf: &CertificateDer<'_>) -> Vec<Vec<u8>> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return Vec::new();
    };
    let Ok(Some(eku)) = cert.extended_key_usage() else {
        return Vec::new();
    };
    let eku = eku.value;
    let mut ekus: Vec<Vec<u8>> = eku.other.iter().map(|o| o.as_bytes().to_vec()).collect();
    if eku.server_auth {
        ekus.push(SERVER_AUTH.to_vec());
    }
    if eku.client_auth {
        ekus.push(CLIENT_AUTH.to_vec());
    }
    ekus
}

/// rustls's name for a path-validation failure, so the peer gets the
/// matching TLS alert.
fn as_rustls(e: webpki::Error) -> rustls::Error {
    rustls::Error::InvalidCertificate(match e {
        webpki::Error::CertExpired { .. } => CertificateError::Expired,
        webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
        webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
        webpki::Error::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    })
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
        verify_chain(
            end_entity,
            &self.root,
            intermediates,
            now,
            ServerOrClientAuth,
        )
        .map_err(as_rustls)?;
        let ekus = leaf_ekus(end_entity);
        if !ekus.iter().any(|e| e == SERVER_AUTH || e == CLIENT_AUTH) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    provider_signatures!();
}

/// Why [`CaEndpointVerifier`] refused a certificate that is otherwise a
/// valid server certificate for the CA's name.
#[derive(Debug, thiserror::Error)]
#[error(
    "the endpoint's certificate is not the CA's own: it chains to the CA root and names the CA, \
     but lacks the CA-endpoint extended key usage {CA_ENDPOINT_EKU_OID}, which only the CA's own \
     TLS certificate carries; another process may be answering on the CA's address, so nothing \
     (no token, no CSR) was sent to it; check --ca-url"
)]
pub struct NotCaEndpoint;

/// The CA-endpoint refusal inside a rustls error, if that is what it is.
pub fn not_ca_endpoint(err: &rustls::Error) -> Option<&NotCaEndpoint> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<NotCaEndpoint>()
        }
        _ => None,
    }
}

/// Requires serverAuth and the CA-endpoint EKU together. As with
/// [`ServerOrClientAuth`], an issuer without the extension passes, and the
/// end entity is held to the rule by [`leaf_ekus`].
struct CaEndpointUsage;

impl webpki::ExtendedKeyUsageValidator for CaEndpointUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let (mut server_auth, mut endpoint, mut empty) = (false, false, true);
        for id in iter {
            empty = false;
            let id = id?;
            server_auth |= id == webpki::KeyPurposeId::new(SERVER_AUTH);
            endpoint |= id == webpki::KeyPurposeId::new(CA_ENDPOINT_EKU);
        }
        if empty || (server_auth && endpoint) {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(CA_ENDPOINT_EKU),
                present: Vec::new(),
            },
        ))
    }
}

/// Verifies the CA's TLS endpoint: everything rustls's WebPKI server
/// verifier checks (chain to the root, validity, the expected name,
/// serverAuth), and then that the certificate carries the CA-endpoint EKU.
///
/// Chain and name alone are not enough to know we are talking to the CA:
/// the CA certifies other parties' names too, and a party holding a
/// certificate for the CA's address (or a process on that address while
/// the CA is down) would otherwise receive enrollment tokens and CSRs.
#[derive(Debug)]
pub struct CaEndpointVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    root: CertificateDer<'static>,
}

impl CaEndpointVerifier {
    /// A verifier for the CA endpoint whose certificate chains to `root`.
    pub fn new(root: &CertificateDer<'_>) -> Result<Self, super::TlsSetupError> {
        Ok(CaEndpointVerifier {
            inner: super::server_verifier(root, Vec::new())?,
            root: root.clone().into_owned(),
        })
    }
}

impl ServerCertVerifier for CaEndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The standard checks first, so their refusals (unknown issuer,
        // name mismatch, expired) read as they do everywhere else.
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let not_endpoint = || {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(NotCaEndpoint),
            )))
        };
        match verify_chain(end_entity, &self.root, intermediates, now, CaEndpointUsage) {
            Ok(_) => {
                let ekus = leaf_ekus(end_entity);
                let has = |eku: &[u8]| ekus.iter().any(|e| e == eku);
                if has(SERVER_AUTH) && has(CA_ENDPOINT_EKU) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(not_endpoint())
                }
            }
            Err(webpki::Error::RequiredEkuNotFoundContext(_)) => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(NotCaEndpoint)),
                )))
            }
            Err(other) => Err(as_rustls(other)),
        }
    }

    delegate_signatures!();
}

/// Accepts whatever certificate the server presents, checking only that
/// the handshake is signed by its key.
///
/// For ACME's tls-alpn-01 (RFC 8737) and nothing else: there the
/// certificate is self-signed by the party being validated, and the
/// validator judges it by its content (the name and the
/// `id-pe-acmeIdentifier` extension), not by a chain. A connection made
/// with it is not authenticated and must carry nothing secret.
///
/// The handshake signature is checked against the certificate's public
/// key as a raw key: WebPKI's parser, which the usual check goes through,
/// refuses the critical acmeIdentifier extension it does not know.
#[derive(Debug, Default)]
pub struct ChallengeResponseVerifier;

impl ServerCertVerifier for ChallengeResponseVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        use x509_parser::prelude::FromDer;
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(
            parsed.tbs_certificate.subject_pki.raw,
        );
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

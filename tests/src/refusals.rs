//! Refusal assertions shared by the test files: each names the specific
//! error a refusal must carry, so no test settles for "it failed".

use pki_client::ClientError;
use pki_common::proto::{AlertCode, ProtoError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{AlertDescription, CertificateError};

use crate::TestPki;

/// One CSR the CA must refuse: a name for the case (for the failure
/// message), the bearer token, the body, and the HTTP status and error code
/// the CA must answer with.
pub type CsrRefusal<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

/// Posts `body` to `/v1/sign` and asserts the CA refuses it with `status`
/// and the JSON error `code`, with a non-empty detail.
pub async fn expect_csr_refusal(
    pki: &TestPki,
    token: Option<&str>,
    body: Vec<u8>,
    status: u16,
    code: &str,
) {
    let resp = pki.post_csr(token, body).await;
    let err = resp.error_body().unwrap_or_else(|| {
        panic!(
            "expected a JSON error, got {} {:?}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        )
    });
    assert_eq!(
        (resp.status.as_u16(), err.error.as_str()),
        (status, code),
        "{}",
        err.detail
    );
    assert!(!err.detail.is_empty());
}

/// Runs [`expect_csr_refusal`] over a table, in order, so a list of
/// refusals reads as a list.
pub async fn expect_csr_refusals(pki: &TestPki, cases: Vec<CsrRefusal<'_>>) {
    for (case, token, body, status, code) in cases {
        eprintln!("refusal case: {case}");
        expect_csr_refusal(pki, token, body, status, code).await;
    }
}

/// The certificate in a successful `/v1/sign` answer; fails the test on
/// any other answer, showing the body.
pub fn cert_of(resp: &pki_common::ca::client::Response) -> CertificateDer<'static> {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    CertificateDer::from_pem_slice(&resp.body).unwrap()
}

/// The protocol alert a client error carries, if it is one: the server's
/// refusals arrive this way.
pub fn peer_alert(err: &ClientError) -> Option<AlertCode> {
    match err {
        ClientError::Proto(ProtoError::PeerAlert { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Why the client refused the server's certificate, if it did.
pub fn invalid_certificate(err: &ClientError) -> Option<&CertificateError> {
    match err {
        ClientError::Tls {
            source: rustls::Error::InvalidCertificate(e),
            ..
        } => Some(e),
        _ => None,
    }
}

/// The TLS alert the server sent when it refused the client's
/// certificate, if it did.
pub fn tls_alert(err: &ClientError) -> Option<AlertDescription> {
    match err {
        ClientError::Tls {
            source: rustls::Error::AlertReceived(a),
            ..
        } => Some(*a),
        _ => None,
    }
}

//! The CA's HTTP API, as both the CA and its callers see it.

use serde::{Deserialize, Serialize};

/// `GET`: 200 once the CA is ready to sign.
pub const HEALTH: &str = "/health";
/// `GET`: the root certificate, PEM.
pub const ROOT: &str = "/v1/root";
/// `POST`: a PKCS#10 CSR (PEM or DER) with `Authorization: Bearer <token>`;
/// answers the issued certificate, PEM.
pub const SIGN: &str = "/v1/sign";

/// `POST`: a CSR for the same names as the TLS client certificate the
/// caller presents, which must be neither expired nor revoked; answers
/// the renewed certificate, PEM.
pub const RENEW: &str = "/v1/renew";
/// `GET`: the current CRL, DER; `?format=pem` for PEM.
pub const CRL: &str = "/v1/crl";

/// Media type of the certificate the CA returns.
pub const PEM_CERT_CHAIN: &str = "application/pem-certificate-chain";

/// The JSON body of every refusal: a stable machine-readable code and a
/// sentence for the human that says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

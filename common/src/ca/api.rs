//! The CA's HTTP API, as both the CA and its callers see it.

use serde::{Deserialize, Serialize};

/// `GET`: 200 once the CA is ready to sign.
pub const HEALTH: &str = "/health";
/// `GET`: the root certificate, PEM.
pub const ROOT: &str = "/v1/root";
/// `POST`: a PKCS#10 CSR (PEM or DER) with `Authorization: Bearer <token>`;
/// answers the issued certificate, PEM.
///
/// The query `?profile=server` or `?profile=client` states the profile the
/// caller expects (see [`sign_path`]). A token of another profile is then
/// refused with `409 profile_mismatch` before it is spent: nothing is
/// issued and the token stays usable with its own profile. Without the
/// query (older callers) the token's profile is issued, whatever it is.
/// Any other query is refused with `400 bad_profile`.
pub const SIGN: &str = "/v1/sign";

/// The path of `POST /v1/sign` stating the expected `profile`; every
/// enrolling party of this workspace sends it.
pub fn sign_path(profile: crate::cert::Profile) -> String {
    format!("{SIGN}?profile={}", profile.as_str())
}

/// `POST`: a CSR for the same names as the TLS client certificate the
/// caller presents, which must be neither expired nor revoked; answers
/// the renewed certificate, PEM. A certificate renews once: a second
/// renewal of it is refused with `409 already_renewed` (renew the newer
/// certificate instead), and revoking a certificate revokes its renewals.
pub const RENEW: &str = "/v1/renew";
/// `GET`: the current CRL, DER; `?format=pem` for PEM. With a two-level
/// CA, the CRL of the current intermediate (kept for older callers).
pub const CRL: &str = "/v1/crl";
/// `GET`: every CRL a party needs, PEM bundle: the root's (listing revoked
/// intermediates), then one per intermediate the CA holds (listing the
/// leaves it issued). A CA without it (404) is a one-level CA: its
/// `/v1/crl` is the root's, and all there is.
pub const CRLS: &str = "/v1/crls";
/// `GET`: every intermediate the CA holds that has not expired, PEM
/// bundle: what a party checks the intermediates' CRLs against.
pub const INTERMEDIATES: &str = "/v1/intermediates";

/// Media type of the certificate the CA returns.
pub const PEM_CERT_CHAIN: &str = "application/pem-certificate-chain";

/// The JSON body of every refusal: a stable machine-readable code and a
/// sentence for the human that says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

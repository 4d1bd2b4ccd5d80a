//! The CA's HTTP API, as both the CA and its callers see it.

use serde::{Deserialize, Serialize};

/// `GET`: 200 once the CA is ready to sign.
pub const HEALTH: &str = "/health";
/// `GET`: the root certificate, PEM.
pub const ROOT: &str = "/v1/root";
/// `POST`: a PKCS#10 CSR (PEM or DER) with `Authorization: Bearer <token>`;
/// answers the issued certificate and its chain, PEM, leaf first, then the
/// intermediate that signed it ([`PEM_CERT_CHAIN`]); the root is not
/// included (every party has it).
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
/// the renewed certificate and its chain, PEM, leaf first (as [`SIGN`]).
/// A certificate renews once: a second
/// renewal of it is refused with `409 already_renewed` (renew the newer
/// certificate instead), and revoking a certificate revokes its renewals.
pub const RENEW: &str = "/v1/renew";
/// `GET`: the current intermediate's CRL, DER; `?format=pem` for PEM.
/// Kept for older callers: [`CRLS`] has every CRL a chain needs.
pub const CRL: &str = "/v1/crl";
/// `GET`: every CRL a party needs to check a whole chain, PEM, one after
/// the other: the root's CRL (it lists revoked intermediates; signed where
/// the root key is), then the CRL of each intermediate the CA holds (each
/// signed by its intermediate, listing its revoked leaves).
pub const CRLS: &str = "/v1/crls";
/// `GET`: every intermediate the CA holds that has not expired, PEM, one
/// after the other; they verify against the root, and the intermediates'
/// CRLs verify against them.
pub const INTERMEDIATES: &str = "/v1/intermediates";

/// Media type of the certificate chain the CA returns (RFC 8555 §9.1).
pub const PEM_CERT_CHAIN: &str = "application/pem-certificate-chain";

/// The JSON body of every refusal: a stable machine-readable code and a
/// sentence for the human that says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

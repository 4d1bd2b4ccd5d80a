//! Where a certificate says its CRL and its issuer are published: CRL
//! Distribution Points and Authority Information Access (caIssuers).
//!
//! Stub: engineer C writes the body (issue 13, item 4).

/// Adds to `params` the CRL Distribution Point
/// `<public_url>/crl/<issuer_id>.crl` and the AIA caIssuers
/// `<public_url>/issuer/<issuer_id>.crt`, where `issuer_id` is the id of
/// the certificate's ISSUER (an intermediate id for a leaf, `root` for an
/// intermediate).
pub fn revocation_pointers(
    _params: &mut rcgen::CertificateParams,
    _public_url: &str,
    _issuer_id: &str,
) {
}

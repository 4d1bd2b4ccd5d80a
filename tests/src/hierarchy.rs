//! The two-level hierarchy from a test's side: certificates signed
//! directly with a CA key held in a test directory, bypassing the CA's
//! policy, to make what the CA itself would refuse (an expired leaf, a
//! name outside the intermediate's constraints).

use pki_ca::policy::Decision;
use pki_ca::CaPaths;
use pki_common::files;
use rustls::pki_types::CertificateDer;

/// A leaf as `decision` says, for the key `spki_der`, signed directly by
/// the root (its key unencrypted in `paths`, as `TestPki` leaves it): a
/// chain of one, which verifies against the root alone.
pub fn root_signed(
    paths: &CaPaths,
    decision: &Decision,
    spki_der: &[u8],
) -> CertificateDer<'static> {
    let root = files::read_cert(&paths.root_cert()).unwrap();
    let key = files::read_private_key_pem(&paths.root_key()).unwrap();
    signed_by(&root, &key, decision, spki_der)
}

/// A leaf as `decision` says, for the key `spki_der`, signed with the
/// intermediate `id` held in `paths`.
pub fn intermediate_signed(
    paths: &CaPaths,
    id: &str,
    decision: &Decision,
    spki_der: &[u8],
) -> CertificateDer<'static> {
    let cert = files::read_cert(&paths.intermediate_cert(id)).unwrap();
    let key = files::read_private_key_pem(&paths.intermediate_key(id)).unwrap();
    signed_by(&cert, &key, decision, spki_der)
}

fn signed_by(
    issuer_cert: &CertificateDer<'_>,
    issuer_key_pem: &str,
    decision: &Decision,
    spki_der: &[u8],
) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::from_pem(issuer_key_pem).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(issuer_cert, key).unwrap();
    let params = pki_ca::authority::leaf_params(decision).unwrap();
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der).unwrap();
    params
        .signed_by(&public_key, &issuer)
        .unwrap()
        .der()
        .clone()
}

/// The ids of the intermediates in `paths`, oldest file name order.
pub fn intermediate_ids(paths: &CaPaths) -> Vec<String> {
    pki_ca::root::intermediate_ids(paths)
}

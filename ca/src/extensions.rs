//! Where any relying party finds revocation: the CRL Distribution Points
//! and Authority Information Access extensions of the certificates the CA
//! issues.
//!
//! Our own parties fetch CRLs from the CA's HTTPS API, but software outside
//! this project (OpenSSL's `-crl_download`, GnuTLS, browsers, Go, Java)
//! knows nothing of that API: it learns from the certificate itself where
//! the issuer's CRL is (CRL Distribution Points, RFC 5280 §4.2.1.13) and
//! where the issuer's certificate is when the peer did not send it
//! (Authority Information Access, id-ad-caIssuers, RFC 5280 §4.2.2.1).
//! Both point at the CA's plain-HTTP listener ([`crate::publish`]):
//! `<public_url>/crl/<issuer>.crl` and `<public_url>/issuer/<issuer>.crt`.
//!
//! The URLs are plain `http://` on purpose. What they serve is signed, so
//! TLS adds no integrity; and fetching a CRL over TLS would need the
//! revocation status of the TLS server's own certificate first, a circular
//! dependency RFC 5280 §8 warns about for `https` URIs in both extensions.
//! RFC 5280 §4.2.1.13 and §4.2.2.1 ask for HTTP (or LDAP) URIs.
//!
//! The DER is written with `yasna`, the encoder rcgen itself uses: rcgen
//! encodes CRL Distribution Points, and the AIA value is encoded here as
//! its ASN.1 structure, never as hand-assembled bytes.

use rcgen::{CertificateParams, CrlDistributionPoint, CustomExtension};
use yasna::models::ObjectIdentifier;
use yasna::Tag;

use crate::publish::is_issuer_id;

/// id-pe-authorityInfoAccess (RFC 5280 §4.2.2.1).
pub const OID_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// id-ad-caIssuers: the access method naming the issuer's certificate.
pub const OID_AD_CA_ISSUERS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 2];

/// The longest base URL accepted: certificates carry it twice, and a
/// relying party fetching it should not meet anything unusual.
const MAX_PUBLIC_URL: usize = 200;

/// Why a `--public-url` cannot go into certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicUrlError {
    #[error("the public URL {0:?} does not start with http://; CRLs and issuer certificates are signed and published over plain HTTP (fetching them over TLS would need revocation information for the TLS certificate itself, RFC 5280 §8): pass the address of --http-listen, e.g. http://ca.pki.test:8080")]
    NotHttp(String),
    #[error("the public URL {0:?} names no host: pass one, e.g. http://ca.pki.test:8080")]
    NoHost(String),
    #[error("the public URL {0:?} has a character certificates cannot carry or a relying party would misread (only visible ASCII, no user info, query or fragment): pass a plain http://HOST:PORT base, e.g. http://ca.pki.test:8080")]
    BadCharacter(String),
    #[error("the public URL is longer than {MAX_PUBLIC_URL} characters: pass a short http://HOST:PORT base")]
    TooLong,
}

/// Checks a `--public-url` and returns it as it goes into certificates:
/// without its trailing slashes, so `<base>/crl/…` has exactly one.
///
/// For the command line (a clap `value_parser` can call it), so a bad URL
/// stops the CA at start-up rather than leaving certificates without their
/// pointers ([`revocation_pointers`] skips a URL this refuses).
pub fn public_base(url: &str) -> Result<&str, PublicUrlError> {
    if url.len() > MAX_PUBLIC_URL {
        return Err(PublicUrlError::TooLong);
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(PublicUrlError::NotHttp(url.to_string()));
    };
    // Visible ASCII only: IA5String is ASCII, and a space or control
    // character would end the URL early for some readers. '?' and '#'
    // would swallow the path appended to the base; '@' puts credentials
    // (or a misleading host) in every certificate.
    if !rest
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '@' | '\\'))
    {
        return Err(PublicUrlError::BadCharacter(url.to_string()));
    }
    let base = url.trim_end_matches('/');
    match base.strip_prefix("http://") {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(base),
        _ => Err(PublicUrlError::NoHost(url.to_string())),
    }
}

/// The URL of `issuer_id`'s CRL under `base` (a [`public_base`]).
pub fn crl_url(base: &str, issuer_id: &str) -> String {
    format!("{base}/crl/{issuer_id}.crl")
}

/// The URL of `issuer_id`'s certificate under `base` (a [`public_base`]).
pub fn issuer_url(base: &str, issuer_id: &str) -> String {
    format!("{base}/issuer/{issuer_id}.crt")
}

/// Points a certificate about to be signed by `issuer_id` at that issuer's
/// CRL and certificate on the CA's plain-HTTP listener at `public_url`:
/// CRL Distribution Points `<public_url>/crl/<issuer_id>.crl` and AIA
/// caIssuers `<public_url>/issuer/<issuer_id>.crt` (see the module doc for
/// why plain HTTP).
///
/// `issuer_id` is the id of the certificate's ISSUER: the intermediate's
/// id for a leaf, `root` for an intermediate. A `public_url` that
/// [`public_base`] refuses, or an id outside `[a-z0-9-]{1,64}`, adds
/// nothing and logs a warning: the command line checks the URL first, so
/// this only guards against a caller that did not.
pub fn revocation_pointers(params: &mut CertificateParams, public_url: &str, issuer_id: &str) {
    let Some(base) = checked(public_url, issuer_id) else {
        return;
    };
    set_crl_distribution_point(params, base, issuer_id);
    params.custom_extensions.retain(|e| {
        e.oid_components()
            .ne(OID_AUTHORITY_INFO_ACCESS.iter().copied())
    });
    params
        .custom_extensions
        .push(authority_info_access(&issuer_url(base, issuer_id)));
}

/// Only the CRL Distribution Point `<public_url>/crl/<issuer_id>.crl`, no
/// AIA: for the self-signed root, whose "issuer" is itself.
///
/// Why a root carries it at all: `openssl verify -crl_check_all` checks a
/// CRL for every certificate of the chain, the trust anchor included, and
/// with `-crl_download` it finds that CRL only through the certificate's
/// own CRL Distribution Points (OpenSSL 3.0: "unable to get certificate
/// CRL" at the root's depth otherwise). The root's CRL, signed by the root,
/// never lists the root; RFC 5280 path validation does not check a trust
/// anchor's status, so other verifiers ignore the pointer.
pub fn crl_pointer(params: &mut CertificateParams, public_url: &str, issuer_id: &str) {
    if let Some(base) = checked(public_url, issuer_id) {
        set_crl_distribution_point(params, base, issuer_id);
    }
}

/// The base URL if both arguments can go into a certificate.
fn checked<'a>(public_url: &'a str, issuer_id: &str) -> Option<&'a str> {
    let base = match public_base(public_url) {
        Ok(base) => base,
        Err(e) => {
            tracing::warn!("issuing without CRL Distribution Points and AIA: {e}");
            return None;
        }
    };
    if !is_issuer_id(issuer_id) {
        tracing::warn!(
            "issuing without CRL Distribution Points and AIA: the issuer id {issuer_id:?} is not [a-z0-9-]{{1,64}}"
        );
        return None;
    }
    Some(base)
}

fn set_crl_distribution_point(params: &mut CertificateParams, base: &str, issuer_id: &str) {
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![crl_url(base, issuer_id)],
    }];
}

/// The non-critical AuthorityInfoAccess extension (RFC 5280 §4.2.2.1) with
/// one caIssuers access description whose location is `uri`:
///
/// ```text
/// AuthorityInfoAccessSyntax ::= SEQUENCE SIZE (1..MAX) OF AccessDescription
/// AccessDescription ::= SEQUENCE { accessMethod OBJECT IDENTIFIER,
///                                  accessLocation GeneralName }
/// GeneralName ::= CHOICE { … uniformResourceIdentifier [6] IA5String … }
/// ```
///
/// `uri` must be ASCII ([`public_base`] and [`is_issuer_id`] make sure of
/// it): yasna refuses anything else by panicking.
fn authority_info_access(uri: &str) -> CustomExtension {
    let der = yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_sequence(|writer| {
                writer
                    .next()
                    .write_oid(&ObjectIdentifier::from_slice(OID_AD_CA_ISSUERS));
                // GeneralName is a CHOICE, so its tags are implicit.
                writer
                    .next()
                    .write_tagged_implicit(Tag::context(6), |writer| writer.write_ia5_string(uri));
            });
        });
    });
    // from_oid_content makes the extension non-critical, as §4.2.2.1
    // requires.
    CustomExtension::from_oid_content(OID_AUTHORITY_INFO_ACCESS, der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, IsCa, KeyPair};
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate};

    /// A certificate signed by a throwaway CA, with `edit` applied.
    fn issue(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(ca_cert.der(), ca_key).unwrap();
        let mut params = CertificateParams::new(vec!["leaf.pki.test".to_string()]).unwrap();
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    /// The CRLDP URIs and the AIA (method, URI) pairs, and whether AIA is
    /// critical, as x509-parser reads them.
    fn pointers(der: &[u8]) -> (Vec<String>, Vec<(String, String)>, Option<bool>) {
        let (rest, cert) = X509Certificate::from_der(der).unwrap();
        assert!(rest.is_empty());
        let (mut crldp, mut aia, mut aia_critical) = (Vec::new(), Vec::new(), None);
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(points) => {
                    for point in points.iter() {
                        let Some(DistributionPointName::FullName(names)) =
                            &point.distribution_point
                        else {
                            panic!("a distribution point without a full name")
                        };
                        for name in names {
                            let GeneralName::URI(uri) = name else {
                                panic!("a distribution point name that is not a URI: {name:?}")
                            };
                            crldp.push(uri.to_string());
                        }
                    }
                }
                ParsedExtension::AuthorityInfoAccess(access) => {
                    aia_critical = Some(ext.critical);
                    for desc in access.iter() {
                        let GeneralName::URI(uri) = &desc.access_location else {
                            panic!("an access location that is not a URI")
                        };
                        aia.push((desc.access_method.to_id_string(), uri.to_string()));
                    }
                }
                ParsedExtension::UnsupportedExtension { .. } => {
                    panic!("x509-parser did not understand {}", ext.oid)
                }
                _ => {}
            }
        }
        (crldp, aia, aia_critical)
    }

    #[test]
    fn leaf_points_at_its_issuers_crl_and_certificate() {
        let der = issue(|p| revocation_pointers(p, "http://127.0.0.1:8080/", "0123abcd0123abcd"));
        let (crldp, aia, critical) = pointers(&der);
        assert_eq!(crldp, ["http://127.0.0.1:8080/crl/0123abcd0123abcd.crl"]);
        assert_eq!(
            aia,
            [(
                "1.3.6.1.5.5.7.48.2".to_string(),
                "http://127.0.0.1:8080/issuer/0123abcd0123abcd.crt".to_string()
            )]
        );
        assert_eq!(critical, Some(false), "AIA must be non-critical");
    }

    #[test]
    fn calling_twice_replaces_rather_than_duplicates() {
        let der = issue(|p| {
            revocation_pointers(p, "http://old.pki.test", "root");
            revocation_pointers(p, "http://ca.pki.test:8080", "root");
        });
        let (crldp, aia, _) = pointers(&der);
        assert_eq!(crldp, ["http://ca.pki.test:8080/crl/root.crl"]);
        assert_eq!(aia.len(), 1);
        assert_eq!(aia[0].1, "http://ca.pki.test:8080/issuer/root.crt");
    }

    #[test]
    fn crl_pointer_sets_only_the_distribution_point() {
        let der = issue(|p| crl_pointer(p, "http://ca.pki.test", "root"));
        let (crldp, aia, critical) = pointers(&der);
        assert_eq!(crldp, ["http://ca.pki.test/crl/root.crl"]);
        assert!(aia.is_empty());
        assert_eq!(critical, None);
    }

    #[test]
    fn refused_urls_and_ids_add_nothing_and_do_not_panic() {
        for (url, id) in [
            ("https://ca.pki.test", "root"),
            ("http://cä.pki.test", "root"),
            ("http://ca.pki.test/a b", "root"),
            ("http://", "root"),
            ("http://ca.pki.test", "../etc"),
            ("http://ca.pki.test", "Root"),
            ("http://ca.pki.test", ""),
        ] {
            let der = issue(|p| revocation_pointers(p, url, id));
            let (crldp, aia, _) = pointers(&der);
            assert!(crldp.is_empty() && aia.is_empty(), "{url} {id}");
        }
    }

    #[test]
    fn public_base_trims_and_refuses_with_a_hint() {
        assert_eq!(public_base("http://h:1//"), Ok("http://h:1"));
        assert_eq!(public_base("http://h:1/pki"), Ok("http://h:1/pki"));
        let refusals = [
            "https://h",
            "ftp://h",
            "http://",
            "http:///x",
            "http://u@h",
            "http://h/?q",
            "http://h/#f",
            "http://h\t",
        ];
        for url in refusals {
            let e = public_base(url).unwrap_err().to_string();
            assert!(e.contains("pass "), "{url}: {e}");
        }
        assert_eq!(
            public_base(&format!("http://{}", "a".repeat(300))),
            Err(PublicUrlError::TooLong)
        );
    }

    #[test]
    fn openssl_shows_both_extensions() {
        let der = issue(|p| revocation_pointers(p, "http://127.0.0.1:8080", "abc"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaf.der");
        std::fs::write(&path, der).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&path)
            .output()
            .expect("openssl must be installed to run this test");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("X509v3 CRL Distribution Points"), "{text}");
        assert!(
            text.contains("URI:http://127.0.0.1:8080/crl/abc.crl"),
            "{text}"
        );
        assert!(text.contains("Authority Information Access"), "{text}");
        assert!(
            text.contains("CA Issuers - URI:http://127.0.0.1:8080/issuer/abc.crt"),
            "{text}"
        );
    }
}

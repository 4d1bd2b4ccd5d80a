//! Pre-issuance linting: for each lint, an issuance made wrong on purpose
//! (through the test-only [`Ca::inject_fault`]) in exactly that rule is
//! refused with `lint_failed` naming that lint, signs nothing with the
//! real key (or, for the checks after signing, drops what it signed),
//! records nothing, leaves the token unused and moves the counter. Then a
//! property test issues many certificates across profiles, key types and
//! name mixes, every one linted, and lints each answer again.

#[path = "../../tests/src/crafted_csr.rs"]
#[allow(dead_code)]
mod crafted_csr;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pki_ca::authority::init_root;
use pki_ca::lint::{lint, lint_names, Draft, Expected, Fault};
use pki_ca::policy::{verify_csr, IssuancePolicy};
use pki_ca::{Ca, CaError, CaPaths, SignError};
use pki_common::cert::Profile;
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};

const NAME: &str = "app.pki.test";
const PUBLIC_URL: &str = "http://ca.pki.test:8080";

/// A CA in a temporary directory.
struct Fixture {
    _dir: tempfile::TempDir,
    ca: Ca,
}

impl Fixture {
    fn new(public_url: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path());
        init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
        let ca = Ca::open(&paths, IssuancePolicy::default())
            .unwrap()
            .with_public_url(public_url.map(str::to_string));
        Fixture { _dir: dir, ca }
    }

    fn token(&self, names: &[String], profile: Profile) -> String {
        self.ca
            .mint_token(names, profile, Duration::from_secs(3600))
            .unwrap()
            .to_string()
    }

    fn recorded(&self) -> usize {
        self.ca.ledger().certificates().unwrap().len()
    }
}

/// A DER CSR for `names` (SAN only) signed by `key`.
fn csr(key: &KeyPair, names: &[String]) -> Vec<u8> {
    let mut params = CertificateParams::new(names.to_vec()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.serialize_request(key).unwrap().der().to_vec()
}

/// `der` with the first occurrence of `from` replaced by `to` (of the same
/// length, so no length changes).
fn replace(der: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = der
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{from:02x?} is not in the certificate"));
    der[at..at + to.len()].copy_from_slice(to);
}

fn draft(edit: impl Fn(&mut Draft) + Send + Sync + 'static) -> Fault {
    Fault::Draft(Arc::new(edit))
}

fn params(edit: impl Fn(&mut CertificateParams) + Send + Sync + 'static) -> Fault {
    draft(move |d| edit(&mut d.params))
}

fn linting_der(edit: impl Fn(&mut Vec<u8>) + Send + Sync + 'static) -> Fault {
    Fault::LintingDer(Arc::new(edit))
}

fn issued_der(edit: impl Fn(&mut Vec<u8>) + Send + Sync + 'static) -> Fault {
    Fault::IssuedDer(Arc::new(edit))
}

/// An extendedKeyUsage of serverAuth alone, as rcgen writes it but
/// critical.
fn critical_server_auth() -> CustomExtension {
    use yasna::models::ObjectIdentifier;
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(&[1, 3, 6, 1, 5, 5, 7, 3, 1]))
        })
    });
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 37], der);
    ext.set_criticality(true);
    ext
}

/// One fault per lint: each breaks exactly the rule its lint enforces.
fn faults(f: &Fixture) -> Vec<(&'static str, Fault)> {
    let issuer = f.ca.current_issuer().unwrap();
    let issuer_nb = issuer.info.not_before;
    let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other_spki = rcgen::PublicKeyData::subject_public_key_info(&other_key);
    vec![
        ("well_formed", linting_der(|d| d.push(0))),
        (
            "version_3",
            linting_der(|d| replace(d, &[0xa0, 3, 2, 1, 2], &[0xa0, 3, 2, 1, 1])),
        ),
        (
            "serial_number",
            params(|p| p.serial_number = Some(SerialNumber::from_slice(&[1, 2, 3, 4]))),
        ),
        (
            "signature_algorithm",
            Fault::LintingKey(&rcgen::PKCS_ECDSA_P384_SHA384),
        ),
        (
            "issuer_name",
            linting_der(|d| replace(d, b"Intermediate CA", b"Intermediate CB")),
        ),
        (
            "validity_within_issuer",
            params(move |p| {
                p.not_before = time::OffsetDateTime::from_unix_timestamp(issuer_nb - 10).unwrap();
                p.not_after = p.not_before + time::Duration::hours(1);
            }),
        ),
        (
            "validity_max",
            params(|p| p.not_after += time::Duration::days(2)),
        ),
        (
            "subject_key",
            draft(move |d| d.spki_der = other_spki.clone()),
        ),
        (
            "basic_constraints",
            params(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
        ),
        (
            "key_usage",
            params(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)),
        ),
        (
            "extended_key_usage",
            params(|p| {
                p.extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth)
            }),
        ),
        (
            "subject_alt_name",
            params(|p| {
                p.subject_alt_names
                    .push(SanType::DnsName("evil.pki.test".try_into().unwrap()))
            }),
        ),
        (
            "subject_common_name",
            params(|p| {
                p.distinguished_name = DistinguishedName::new();
                p.distinguished_name
                    .push(DnType::CommonName, "evil.pki.test");
            }),
        ),
        (
            "unknown_extension",
            params(|p| {
                p.custom_extensions.push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 99999, 1],
                    vec![0x05, 0x00],
                ))
            }),
        ),
        (
            "duplicate_extension",
            params(|p| {
                p.custom_extensions.push(CustomExtension::from_oid_content(
                    &[2, 5, 29, 19],
                    vec![0x30, 0],
                ))
            }),
        ),
        (
            "critical_extension",
            params(|p| {
                p.extended_key_usages.clear();
                p.custom_extensions.push(critical_server_auth());
            }),
        ),
        (
            "authority_key_id",
            params(|p| p.use_authority_key_identifier_extension = false),
        ),
        (
            "subject_key_id",
            params(|p| p.key_identifier_method = KeyIdMethod::PreSpecified(Vec::new())),
        ),
        (
            "crl_distribution_points",
            params(|p| {
                p.crl_distribution_points = vec![CrlDistributionPoint {
                    uris: vec!["http://elsewhere.pki.test/crl/x.crl".into()],
                }]
            }),
        ),
        (
            "authority_info_access",
            params(|p| {
                pki_ca::extensions::revocation_pointers(p, "http://elsewhere.pki.test", "x");
                p.crl_distribution_points.clear();
            }),
        ),
        // The two checks after the real signature.
        (
            "linted_tbs",
            issued_der(|d| replace(d, b"app.pki.test", b"app.pki.tesu")),
        ),
        (
            "chain_verifies",
            issued_der(|d| {
                if let Some(last) = d.last_mut() {
                    *last ^= 0x01;
                }
            }),
        ),
    ]
}

/// Issues through `/v1/sign`'s path with `fault` injected and asserts the
/// refusal of exactly `lint`, with nothing recorded, the token unused and
/// the counter moved; then issues with the same token, fault removed.
fn assert_refused(f: &Fixture, lint: &str, fault: Fault) {
    let names = vec![NAME.to_string()];
    let token = f.token(&names, Profile::Server);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let body = csr(&key, &names);
    let (recorded, signed, failures) = (
        f.recorded(),
        f.ca.real_signatures(),
        f.ca.lint_failures(lint),
    );

    f.ca.inject_fault(Some(fault));
    let result = f.ca.sign(Some(&token), &body);
    f.ca.inject_fault(None);

    let err = result.expect_err(&format!("{lint}: the CA issued a broken certificate"));
    assert_eq!(err.code(), "lint_failed", "{lint}: {err}");
    let SignError::Lint(failure) = &err else {
        panic!("{lint}: {err:?}")
    };
    assert_eq!(failure.lints(), [lint], "{lint}: {failure}");
    assert!(err.to_string().contains(lint), "{err}");
    assert_eq!(
        f.recorded(),
        recorded,
        "{lint}: a refused certificate was recorded"
    );
    let after_signing = matches!(lint, "linted_tbs" | "chain_verifies");
    assert_eq!(
        f.ca.real_signatures(),
        signed + u64::from(after_signing),
        "{lint}: the real key signed {}",
        if after_signing {
            "not once"
        } else {
            "before the lint passed"
        }
    );
    assert_eq!(
        f.ca.lint_failures(lint),
        failures + 1,
        "{lint}: the counter did not move"
    );
    let cert = f.ca.sign(Some(&token), &body).unwrap_or_else(|e| {
        panic!("{lint}: the token should still be usable after a lint failure: {e}")
    });
    assert_eq!(f.recorded(), recorded + 1);
    assert!(cert.info.names().contains(&NAME.to_string()));
}

#[test]
fn every_lint_refuses_the_rule_it_enforces_and_nothing_else() {
    let f = Fixture::new(None);
    let cases = faults(&f);
    let covered: Vec<&str> = cases.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        covered,
        lint_names(),
        "every lint needs a case here, in order"
    );
    for (lint, fault) in cases {
        assert_refused(&f, lint, fault);
    }
}

#[test]
fn with_a_public_url_the_pointers_are_required_as_configured() {
    let f = Fixture::new(Some(PUBLIC_URL));
    let cases: Vec<(&str, Fault)> = vec![
        (
            "crl_distribution_points",
            params(|p| p.crl_distribution_points.clear()),
        ),
        (
            "authority_info_access",
            params(|p| p.custom_extensions.clear()),
        ),
    ];
    for (lint, fault) in cases {
        assert_refused(&f, lint, fault);
    }
}

#[test]
fn renewal_and_the_cas_own_certificate_are_linted_too() {
    let f = Fixture::new(None);
    let names = vec![NAME.to_string()];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let body = csr(&key, &names);
    let cert =
        f.ca.sign(Some(&f.token(&names, Profile::Server)), &body)
            .unwrap();
    let bad_ku = || params(|p| p.key_usages.push(KeyUsagePurpose::CrlSign));

    f.ca.inject_fault(Some(bad_ku()));
    let renewed = f.ca.renew(Some(&cert.der), &body);
    let own = f.ca.issue_service_certificate(&["ca.pki.test".to_string()]);
    f.ca.inject_fault(None);

    let err = renewed.expect_err("a broken renewal was issued");
    assert_eq!(err.code(), "lint_failed", "{err}");
    match own {
        Err(CaError::Lint(failure)) => assert_eq!(failure.lints(), ["key_usage"]),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the CA issued itself a broken certificate"),
    }
    assert_eq!(f.recorded(), 1, "only the first certificate is recorded");
    // Without the fault, both pass every lint (the CA's own carries the
    // CA-endpoint EKU, which its lint expects there and only there).
    f.ca.renew(Some(&cert.der), &body).unwrap();
    f.ca.issue_service_certificate(&["ca.pki.test".to_string()])
        .unwrap();
    assert_eq!(f.ca.lint_failures("key_usage"), 2);
}

// ------------------------------------------------------------ property test

/// The subject keys the CA accepts: P-256, P-384, Ed25519, RSA 2048 and
/// 3072 (made by openssl once: ring cannot make RSA keys).
struct Keys {
    _dir: tempfile::TempDir,
    keys: Vec<(&'static str, KeyPair)>,
}

fn rsa(dir: &std::path::Path, bits: u32) -> KeyPair {
    let path = dir.join(format!("rsa{bits}.key"));
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .arg("-out")
        .arg(&path)
        .output()
        .expect("openssl must be installed to run this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(&path).unwrap();
    KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let gen = |alg| KeyPair::generate_for(alg).unwrap();
        let keys = vec![
            ("p256", gen(&rcgen::PKCS_ECDSA_P256_SHA256)),
            ("p384", gen(&rcgen::PKCS_ECDSA_P384_SHA384)),
            ("ed25519", gen(&rcgen::PKCS_ED25519)),
            ("rsa2048", rsa(dir.path(), 2048)),
            ("rsa3072", rsa(dir.path(), 3072)),
        ];
        Keys { _dir: dir, keys }
    })
}

/// Two CAs, without and with a public URL, shared by every case.
fn cas() -> &'static [Fixture; 2] {
    static CAS: OnceLock<[Fixture; 2]> = OnceLock::new();
    CAS.get_or_init(|| [Fixture::new(None), Fixture::new(Some(PUBLIC_URL))])
}

const NAME_POOL: &[&str] = &[
    "app.pki.test",
    "api.pki.test",
    "Mixed.Case.pki.test",
    "a.b.c.pki.test",
    "192.0.2.7",
    "10.1.2.3",
    "::1",
    "fd00::5",
];

/// How a case's certificate is issued.
#[derive(Debug, Clone, Copy)]
enum Path {
    Enroll,
    Renew,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn every_issued_certificate_passes_every_lint(
        key in 0usize..5,
        client in any::<bool>(),
        names in proptest::sample::subsequence(NAME_POOL, 1..4),
        public in any::<bool>(),
        path in prop_oneof![Just(Path::Enroll), Just(Path::Renew)],
    ) {
        let f = &cas()[usize::from(public)];
        let (kind, key) = &keys().keys[key];
        let profile = if client { Profile::Client } else { Profile::Server };
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let body = csr(key, &names);
        let failures_before: u64 = lint_names().iter().map(|l| f.ca.lint_failures(l)).sum();
        let mut cert = f.ca.sign(Some(&f.token(&names, profile)), &body)
            .map_err(|e| TestCaseError::fail(format!("{kind} {names:?}: {e}")))?;
        if let Path::Renew = path {
            cert = f.ca.renew(Some(&cert.der), &body)
                .map_err(|e| TestCaseError::fail(format!("renewal {kind} {names:?}: {e}")))?;
        }
        let failures_after: u64 = lint_names().iter().map(|l| f.ca.lint_failures(l)).sum();
        prop_assert_eq!(failures_before, failures_after);

        // Lint the answered certificate again, from the outside.
        let verified = verify_csr(&body).unwrap();
        let issuer = f.ca.current_issuer().unwrap();
        let normal: Vec<String> = names
            .iter()
            .map(|n| pki_ca::policy::normalize_name(n).unwrap())
            .collect();
        let base = f.ca.public_url();
        let expected = Expected {
            names: &normal,
            profile,
            ca_endpoint: false,
            spki_der: &verified.spki_der,
            key: verified.key,
            max_validity_secs: 30 * 24 * 3600 + 300,
            issuer: issuer.lint_facts(),
            crl_url: base.map(|b| pki_ca::extensions::crl_url(b, &issuer.id)),
            issuer_url: base.map(|b| pki_ca::extensions::issuer_url(b, &issuer.id)),
        };
        let relinted = lint(&cert.der, &expected);
        prop_assert!(relinted.is_ok(), "{} {:?}: {}", kind, names, relinted.unwrap_err());
    }
}

//! Phase 1 against a real CA listener: enrollment, the issued certificate
//! as openssl sees it, CSRs made by openssl, and every refusal with its
//! specific error.

use std::time::Duration;

use pki_ca::authority::{init_root, InitOutcome};
use pki_common::ca::enroll::{enroll, EnrollError, Retry};
use pki_common::cert::CertInfo;
use pki_common::cert::Profile;
use pki_common::files;
use pki_tests::csr::{openssl_csr, openssl_verify_server, p256, write_file as write};
use pki_tests::refusals::{
    cert_of, expect_csr_refusal as expect_refusal, expect_csr_refusals, CsrRefusal,
};
use pki_tests::{app_token, bounded, openssl_ok, TestPki};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_yields_a_certificate_openssl_accepts_with_every_extension() {
    bounded(async {
        let pki = TestPki::start().await;
        let enrolled = pki
            .enroll_as(&["app.pki.test", "127.0.0.2"], Profile::Server)
            .await;
        let pem = write(
            pki.dir(),
            "leaf.pem",
            files::cert_to_pem(&enrolled.cert).as_bytes(),
        );
        let root = pki.root_path();
        let root = root.to_str().unwrap();
        // The CA answered the chain: the leaf, then the intermediate that
        // signed it (its current issuer), whose key the online CA holds.
        let issuer = pki.ca.current_issuer().unwrap();
        assert_eq!(enrolled.intermediates, vec![issuer.cert.clone()]);

        // openssl verifies it up to the root alone, through the intermediate.
        let verify = openssl_verify_server(root, &pem);
        assert!(verify.contains(": OK"), "{verify}");

        let text = openssl_ok(&["x509", "-in", &pem, "-noout", "-text"]);
        for expected in [
            "Subject: CN = app.pki.test",
            "DNS:app.pki.test, IP Address:127.0.0.2",
            "X509v3 Basic Constraints: critical\n                CA:FALSE",
            "X509v3 Key Usage: critical\n                Digital Signature\n",
            "X509v3 Extended Key Usage: \n                TLS Web Server Authentication",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
            "Issuer: O = pki-auth, CN = pki-auth Intermediate CA ",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // The issuer is the intermediate by name and by key: the leaf's AKI
        // is the intermediate's SKI, whose AKI is the root's SKI.
        let intermediate = pki.paths.intermediate_cert(&issuer.id);
        let intermediate = intermediate.to_str().unwrap();
        let intermediate_text = openssl_ok(&["x509", "-in", intermediate, "-noout", "-text"]);
        let root_text = openssl_ok(&["x509", "-in", root, "-noout", "-text"]);
        let field = |t: &str, label: &str| {
            let at = t.find(label).unwrap();
            t[at..].lines().next().unwrap().to_string()
        };
        assert_eq!(
            field(&text, "Issuer: ").trim(),
            field(&intermediate_text, "Subject: ")
                .trim()
                .replacen("Subject: ", "Issuer: ", 1)
        );
        let ski = |t: &str, label: &str| {
            let at = t.find(label).unwrap();
            t[at..].lines().nth(1).unwrap().trim().to_string()
        };
        assert_eq!(
            ski(&text, "X509v3 Authority Key Identifier"),
            ski(&intermediate_text, "X509v3 Subject Key Identifier")
        );
        assert_eq!(
            ski(&intermediate_text, "X509v3 Authority Key Identifier"),
            ski(&root_text, "X509v3 Subject Key Identifier")
        );
        assert_ne!(
            ski(&text, "X509v3 Authority Key Identifier"),
            ski(&root_text, "X509v3 Subject Key Identifier")
        );
        // notBefore is backdated; the default lifetime is 30 days.
        let info = &enrolled.info;
        let now = pki_common::unix_now() as i64;
        assert!(info.not_before <= now - 240 && info.not_before >= now - 400);
        assert!((info.not_after - now - 30 * 24 * 3600).abs() < 60);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_has_the_extensions_of_a_ca_and_init_keeps_it() {
    let pki = TestPki::start().await;
    let root = pki.root_path();
    let text = openssl_ok(&["x509", "-in", root.to_str().unwrap(), "-noout", "-text"]);
    for expected in [
        // pathLen 1: the root signs intermediates, which sign leaves.
        "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:1",
        "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let info = CertInfo::parse(&pki.root()).unwrap();
    let years = (info.not_after - info.not_before) as f64 / (365.25 * 24.0 * 3600.0);
    assert!((9.9..10.1).contains(&years), "{years}");
    let serial = hex::decode(&info.serial_hex).unwrap();
    assert!(serial.len() >= 8 && serial.len() <= 20 && serial[0] & 0x80 == 0);

    // A second init keeps the root; --force replaces it.
    let before = std::fs::read(&root).unwrap();
    let kept = init_root(&pki.paths, Duration::from_secs(3600), false).unwrap();
    assert!(matches!(kept, InitOutcome::KeptExisting(_)));
    assert_eq!(std::fs::read(&root).unwrap(), before);
    let forced = init_root(&pki.paths, Duration::from_secs(3600), true).unwrap();
    assert!(matches!(forced, InitOutcome::Created(_)));
    assert_ne!(std::fs::read(&root).unwrap(), before);
    let key_text = openssl_ok(&[
        "pkey",
        "-in",
        pki.paths.root_key().to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(key_text.contains("P-256"), "{key_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_csrs_are_issued_from_policy_not_from_the_csr() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = pki.dir();
        let root = pki.root_path();
        let root = root.to_str().unwrap();
        let cases: Vec<(&str, Vec<&str>, Vec<&str>, &str)> = vec![
            ("p256", p256(), vec![], "Digital Signature\n"),
            (
                "rsa2048",
                vec!["-newkey", "rsa:2048"],
                vec![],
                "Digital Signature, Key Encipherment",
            ),
            (
                "ed25519",
                vec!["-newkey", "ed25519"],
                vec![],
                "Digital Signature\n",
            ),
            (
                "p384",
                vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
                vec![],
                "Digital Signature\n",
            ),
            (
                "extra",
                p256(),
                vec![
                    "-addext",
                    "subjectAltName=DNS:app.pki.test",
                    "-addext",
                    "nsComment=hello",
                    "-addext",
                    "extendedKeyUsage=codeSigning",
                ],
                "Digital Signature\n",
            ),
            (
                "ca-true",
                p256(),
                vec![
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
                "Digital Signature\n",
            ),
        ];
        for (tag, key, extra, usage) in cases {
            let csr = openssl_csr(dir, tag, &key, "app.pki.test", &extra);
            let cert = pki.issue(csr, "app.pki.test", Profile::Server).await;
            let pem = write(
                dir,
                &format!("{tag}.pem"),
                files::cert_to_pem(&cert).as_bytes(),
            );
            let text = openssl_ok(&["x509", "-in", &pem, "-noout", "-text"]);
            assert!(text.contains("CA:FALSE"), "{tag}: {text}");
            assert!(!text.contains("CA:TRUE"), "{tag}: {text}");
            assert!(!text.contains("Certificate Sign"), "{tag}: {text}");
            assert!(!text.contains("Code Signing"), "{tag}: {text}");
            assert!(!text.contains("hello"), "{tag}: {text}");
            assert!(
                text.contains(usage),
                "{tag}: expected key usage {usage:?} in {text}"
            );
            assert!(
                text.contains("TLS Web Server Authentication"),
                "{tag}: {text}"
            );
            let verify = openssl_verify_server(root, &pem);
            assert!(verify.contains(": OK"), "{tag}: {verify}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_der_csr_is_accepted_like_a_pem_one() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = pki.dir();
        openssl_csr(dir, "der", &p256(), "app.pki.test", &[]);
        let der_path = dir.join("der.der");
        openssl_ok(&[
            "req",
            "-in",
            dir.join("der.csr").to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der_path.to_str().unwrap(),
        ]);
        let der = std::fs::read(der_path).unwrap();
        let cert = pki.issue(der, "app.pki.test", Profile::Server).await;
        assert_eq!(
            CertInfo::parse(&cert).unwrap().names(),
            vec!["app.pki.test".to_string()]
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_profile_gets_client_auth() {
    bounded(async {
        let pki = TestPki::start().await;
        let csr = openssl_csr(pki.dir(), "c", &p256(), "client1.pki.test", &[]);
        let cert = pki.issue(csr, "client1.pki.test", Profile::Client).await;
        let pem = write(pki.dir(), "c.pem", files::cert_to_pem(&cert).as_bytes());
        let text = openssl_ok(&["x509", "-in", &pem, "-noout", "-text"]);
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_csr_twice_gets_two_serials() {
    bounded(async {
        let pki = TestPki::start().await;
        let csr = openssl_csr(pki.dir(), "twice", &p256(), "app.pki.test", &[]);
        let mut serials = Vec::new();
        for _ in 0..2 {
            let cert = pki
                .issue(csr.clone(), "app.pki.test", Profile::Server)
                .await;
            let info = CertInfo::parse(&cert).unwrap();
            let serial = hex::decode(&info.serial_hex).unwrap();
            assert!(serial.len() >= 8 && serial.len() <= 20 && serial[0] & 0x80 == 0);
            serials.push(info.serial_hex);
        }
        assert_ne!(serials[0], serials[1]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_each_give_their_specific_error() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = pki.dir();
        let good = openssl_csr(dir, "good", &p256(), "app.pki.test", &[]);

        // Bad CSR signature: flip a bit in the last byte (inside the signature).
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(&good).unwrap();
        let mut tampered = der.as_ref().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let t = pki.token(&["app.pki.test"], Profile::Server);
        let rsa1024 = openssl_csr(
            dir,
            "rsa1024",
            &["-newkey", "rsa:1024"],
            "app.pki.test",
            &[],
        );
        // A name the token does not cover, in the CN or in the SAN.
        let evil = openssl_csr(dir, "evil", &p256(), "evil.pki.test", &[]);
        let evil_san = openssl_csr(
            dir,
            "evilsan",
            &p256(),
            "app.pki.test",
            &[
                "-addext",
                "subjectAltName=DNS:app.pki.test,DNS:evil.pki.test",
            ],
        );
        let unknown = format!("pkiet1.{}.{}", "0".repeat(16), "1".repeat(64));
        let cases: Vec<CsrRefusal> = vec![
            (
                "bad signature",
                Some(&t),
                tampered,
                400,
                "bad_csr_signature",
            ),
            ("RSA-1024", Some(&t), rsa1024, 400, "unsupported_key"),
            ("name in the CN", Some(&t), evil, 403, "name_not_authorized"),
            (
                "name in the SAN",
                Some(&t),
                evil_san,
                403,
                "name_not_authorized",
            ),
            (
                "garbage body",
                Some(&t),
                b"not a csr at all".to_vec(),
                400,
                "bad_csr",
            ),
            (
                "oversized body",
                Some(&t),
                vec![b'A'; 100 * 1024],
                413,
                "body_too_large",
            ),
            ("missing token", None, good.clone(), 401, "missing_token"),
            (
                "malformed token",
                Some("hello"),
                good.clone(),
                401,
                "malformed_token",
            ),
            (
                "unknown token",
                Some(&unknown),
                good.clone(),
                401,
                "unknown_token",
            ),
        ];
        expect_csr_refusals(&pki, cases).await;

        // The refusals above did not consume the token: it still works once.
        cert_of(&pki.post_csr(Some(&t), good.clone()).await);
        // Reused token.
        expect_refusal(&pki, Some(&t), good.clone(), 401, "token_used").await;

        // Expired token.
        let expired = app_token(&pki.ca, Duration::ZERO);
        expect_refusal(&pki, Some(&expired), good, 401, "token_expired").await;

        // Wrong method.
        let resp = pki.ca_client().get("/v1/sign").await.unwrap();
        assert_eq!(resp.status, 405);
        assert_eq!(resp.error_body().unwrap().error, "method_not_allowed");

        // Unknown endpoint.
        let resp = pki.ca_client().get("/v1/nothing").await.unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(resp.error_body().unwrap().error, "not_found");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_reports_the_cas_refusal() {
    bounded(async {
        let pki = TestPki::start().await;
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let names = vec!["other.pki.test".to_string()];
        let err = enroll(&pki.ca_client(), &pki.root(), &names, &token, Profile::Server, Retry::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EnrollError::Refused { status: 403, error, .. } if error == "name_not_authorized"),
            "{err}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_root_endpoints() {
    bounded(async {
        let pki = TestPki::start().await;
        let health = pki.ca_client().get("/health").await.unwrap();
        assert_eq!(health.status, 200);
        let root = pki.ca_client().get("/v1/root").await.unwrap();
        assert_eq!(root.status, 200);
        assert_eq!(
            CertificateDer::from_pem_slice(&root.body).unwrap(),
            pki.root()
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_records_every_issuance_and_survives_a_restart() {
    bounded(async {
        let pki = TestPki::start().await;
        let csr = openssl_csr(pki.dir(), "l", &p256(), "app.pki.test", &[]);
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let cert = cert_of(&pki.post_csr(Some(&token), csr.clone()).await);
        let serial = CertInfo::parse(&cert).unwrap().serial_hex;

        // Restart: a new CA process over the same directory.
        let pki = pki.restart().await;
        let records = pki.ca.ledger().certificates().unwrap();
        let rec = records
            .iter()
            .find(|r| r.serial_hex == serial)
            .expect("issued cert in the ledger");
        assert_eq!(rec.der, cert.as_ref());
        assert_eq!(rec.names, vec!["app.pki.test".to_string()]);
        assert_eq!(rec.profile, Profile::Server);
        assert!(rec.token_id.is_some());
        // The used token stays used across the restart.
        expect_refusal(&pki, Some(&token), csr, 401, "token_used").await;
        // The ledger also holds the CA's own TLS certificates (one per start).
        assert_eq!(records.iter().filter(|r| r.token_id.is_none()).count(), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_is_configurable() {
    bounded(async {
        let pki = TestPki::start_with_lifetime(Duration::from_secs(3600)).await;
        let info = CertInfo::parse(&pki.issue_app_csr("short").await).unwrap();
        assert!((info.not_after - pki_common::unix_now() as i64 - 3600).abs() < 60);
    })
    .await
}

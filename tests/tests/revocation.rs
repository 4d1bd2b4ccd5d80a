//! Revocation: the CA's CRL as openssl sees it, and every party refusing
//! what the CRL lists, each refusal with its specific error.

use std::time::Duration;

use pki_ca::policy::IssuancePolicy;
use pki_ca::{Ca, CaPaths};
use pki_client::CrlSource;
use pki_client::{request_once, ClientError};
use pki_common::cert::CertInfo;
use pki_common::cert::Profile;
use pki_common::files;
use pki_common::revocation::{verify_crl_by, CrlError, Reason, Signer, VerifiedCrl};
use pki_server::identity::IdentityError;
use pki_server::{AppServer, ServerError};
use pki_tests::{bounded, openssl, openssl_ok, AppFixture, TestPki};
use rustls::pki_types::CertificateRevocationListDer;

/// Fetches the CA's CRL over HTTPS and checks it against its issuer, the
/// current intermediate.
async fn fetch_crl(pki: &TestPki) -> VerifiedCrl {
    let resp = pki.ca_client().get("/v1/crl").await.unwrap();
    assert_eq!(resp.status, 200);
    verify_by_current_issuer(pki, CertificateRevocationListDer::from(resp.body.to_vec()))
}

/// Checks `der` as a party does: signed by the CA's current intermediate
/// (itself checked against the root), and current. Not the root's CRL.
fn verify_by_current_issuer(
    pki: &TestPki,
    der: CertificateRevocationListDer<'static>,
) -> VerifiedCrl {
    let now = pki_common::unix_now() as i64;
    let issuer = pki.ca.current_issuer().unwrap();
    let signers = [
        Signer::root(&pki.root()).unwrap(),
        Signer::intermediate(&issuer.cert, &pki.root(), now).unwrap(),
    ];
    let crl = verify_crl_by(der, &signers, now).unwrap();
    assert_eq!(
        crl.issuer.id, issuer.id,
        "not the current intermediate's CRL"
    );
    crl
}

/// Polls the running CA until its CRL lists `serial` (the CA notices
/// revocations by any process within about a second).
async fn wait_until_listed(pki: &TestPki, serial: &str) {
    for _ in 0..100 {
        if fetch_crl(pki).await.revocation_of(serial).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the CA did not publish the revocation of {serial}");
}

/// What `pki-ca revoke` does: another `Ca` over the same files.
fn revoke_from_another_process(pki: &TestPki, serial: &str, reason: Reason) {
    let ca = Ca::open(&CaPaths::new(pki.dir()), IssuancePolicy::default()).unwrap();
    ca.revoke(serial, reason).unwrap();
}

async fn enroll_file(pki: &TestPki, tag: &str) -> (std::path::PathBuf, CertInfo) {
    let identity = pki.enroll_identity(&["app.pki.test"]).await;
    let path = pki.dir().join(format!("{tag}.pem"));
    files::write_public(&path, &files::cert_to_pem(&identity.cert)).unwrap();
    (path, identity.info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_agrees_with_the_ledger() {
    bounded(async {
        let pki = TestPki::start().await;
        let (revoked, revoked_info) = enroll_file(&pki, "revoked").await;
        let (good, _) = enroll_file(&pki, "good").await;
        // The serial as openssl prints it, upper case: the CA accepts it.
        let serial_line = openssl_ok(&[
            "x509",
            "-in",
            revoked.to_str().unwrap(),
            "-noout",
            "-serial",
        ]);
        let serial = serial_line.trim().trim_start_matches("serial=");
        pki.ca.revoke(serial, Reason::KeyCompromise).unwrap();
        let crl = pki.ca.publish_crl().unwrap();

        // ca.crl.pem is the current intermediate's CRL, signed by it.
        let issuer = pki.ca.current_issuer().unwrap();
        assert_eq!(crl.issuer_id, issuer.id);
        let issuer_name = format!(
            "Issuer: O = pki-auth, CN = {}",
            issuer.info.subject_cn.as_deref().unwrap()
        );
        let crl_file = pki.paths.crl();
        let text = openssl_ok(&["crl", "-in", crl_file.to_str().unwrap(), "-noout", "-text"]);
        for expected in [
            "Version 2",
            &issuer_name,
            "X509v3 Authority Key Identifier",
            "X509v3 CRL Number",
            "Next Update",
            &revoked_info.serial_hex.to_uppercase(),
            "Key Compromise",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(
            text.contains(&format!(
                "X509v3 CRL Number: \n                {}",
                crl.number
            )),
            "{text}"
        );

        // openssl checks the whole chain (-crl_check_all): the leaf against
        // ca.crl.pem, the intermediate (given as untrusted, the root alone
        // is trusted) against the root's CRL.
        let root = pki.root_path();
        let intermediate = pki.paths.intermediate_cert(&issuer.id);
        let crl_set = pki.dir().join("crl-set.pem");
        let set = [pki.paths.root_crl(), crl_file.clone()]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>();
        std::fs::write(&crl_set, set).unwrap();
        let verify = |cert: &std::path::Path| {
            openssl(&[
                "verify",
                "-crl_check_all",
                "-CRLfile",
                crl_set.to_str().unwrap(),
                "-CAfile",
                root.to_str().unwrap(),
                "-untrusted",
                intermediate.to_str().unwrap(),
                cert.to_str().unwrap(),
            ])
        };
        let out = verify(&revoked);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success() && all.contains("error 23"), "{all}");
        let out = verify(&good);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The ledger says the same.
        let records = pki.ca.ledger().certificates().unwrap();
        let rec = records
            .iter()
            .find(|r| r.serial_hex == revoked_info.serial_hex)
            .unwrap();
        assert_eq!(rec.revoked.unwrap().reason, Reason::KeyCompromise);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crl_is_served_as_der_and_pem_and_numbers_increase() {
    bounded(async {
        let pki = TestPki::start().await;
        let first = fetch_crl(&pki).await;
        let pem = pki.ca_client().get("/v1/crl?format=pem").await.unwrap();
        assert!(String::from_utf8_lossy(&pem.body).starts_with("-----BEGIN X509 CRL-----"));
        let bad = pki.ca_client().get("/v1/crl?format=xml").await.unwrap();
        assert_eq!(bad.error_body().unwrap().error, "bad_format");
        let second = pki.ca.publish_crl().unwrap();
        assert!(second.number > first.number);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_running_servers_certificate_refuses_new_clients() {
    bounded(async {
        let AppFixture { pki, server } = AppFixture::start().await;
        let config = pki.client_config(server.addr);
        request_once(&config, "memo", b"").await.unwrap();

        let serial = server.shared.identity().info.serial_hex.clone();
        revoke_from_another_process(&pki, &serial, Reason::KeyCompromise);
        wait_until_listed(&pki, &serial).await;

        let err = request_once(&config, "memo", b"").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Revoked { serial: s, reason: Some(Reason::KeyCompromise) } if *s == serial),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("server certificate revoked (serial {serial}, keyCompromise)")
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let now = pki_common::unix_now() as i64;
        // The current intermediate's CRL, signed by it, expired an hour ago;
        // given in a set that is otherwise whole and current (the
        // intermediate that signed it, the root's CRL).
        let stale = app
            .pki
            .ca
            .sign_crl_at(now - 7200, Duration::from_secs(3600))
            .unwrap();
        let issuer = app.pki.ca.current_issuer().unwrap();
        assert_eq!(stale.issuer_id, issuer.id);
        let root_crl = std::fs::read_to_string(app.pki.paths.root_crl()).unwrap();
        let set = format!("{}{root_crl}{}", issuer.pem(), stale.pem());
        let err = app.memo_refusal_with_crls("stale", &set).await;
        assert!(
            matches!(err, ClientError::Crl(CrlError::Expired { .. })),
            "{err}"
        );

        // The same set with a current CRL in its place is accepted: the
        // staleness alone was refused.
        let fresh = app
            .pki
            .ca
            .sign_crl_at(now, Duration::from_secs(3600))
            .unwrap();
        let path = app.pki.dir().join("fresh.crl.pem");
        let set = format!("{}{root_crl}{}", issuer.pem(), fresh.pem());
        files::write_public(&path, &set).unwrap();
        let mut config = app.client_config();
        config.crl = CrlSource::File(path);
        request_once(&config, "memo", b"").await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_from_another_ca_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let other = TestPki::start().await;
        let theirs = other.ca.publish_crl().unwrap();
        let err = app.memo_refusal_with_crl("theirs", &theirs).await;
        assert!(
            matches!(err, ClientError::Crl(CrlError::NotFromRoot(_))),
            "{err}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_revocation_status_stops_the_client_unless_it_opts_out() {
    bounded(async {
        let app = AppFixture::start().await;
        let mut config = app.client_config();
        config.crl = CrlSource::Fetch {
            ca_url: format!("https://127.0.0.1:{}", pki_tests::free_port()),
            ca_name: None,
        };
        let err = request_once(&config, "memo", b"").await.unwrap_err();
        assert!(
            matches!(err, ClientError::RevocationUnknown { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("--insecure-skip-revocation"),
            "{err}"
        );

        config.crl = CrlSource::InsecureSkip;
        request_once(&config, "memo", b"").await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_its_own_revoked_certificate_and_re_enrolls_with_a_token() {
    bounded(async {
        let AppFixture { pki, server } = AppFixture::start().await;
        let dir = server.certs_dir();
        let old = server.shared.identity().info.serial_hex.clone();
        pki.ca.revoke(&old, Reason::Superseded).unwrap();
        pki.ca.publish_crl().unwrap();

        let err = AppServer::start(pki.server_config(&dir, None)).await.err().unwrap();
        assert!(
            matches!(&err, ServerError::Identity(IdentityError::NeedToken { reason, .. }) if reason.contains("revoked (superseded)")),
            "{err}"
        );
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let renewed = AppServer::start(pki.server_config(&dir, Some(token))).await.unwrap();
        assert_ne!(renewed.shared().identity().info.serial_hex, old);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_and_the_crl_number_survive_a_restart() {
    bounded(async {
        let pki = TestPki::start().await;
        let (_, info) = enroll_file(&pki, "r").await;
        pki.ca
            .revoke(&info.serial_hex, Reason::CessationOfOperation)
            .unwrap();
        let before = pki.ca.publish_crl().unwrap().number;

        let pki = pki.restart().await;
        let crl = fetch_crl(&pki).await;
        assert!(crl.number > before);
        assert_eq!(
            crl.revocation_of(&info.serial_hex),
            Some(Some(Reason::CessationOfOperation))
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unspecified_revocation_is_listed_without_a_reason_code() {
    bounded(async {
        let pki = TestPki::start().await;
        let (_, info) = enroll_file(&pki, "u").await;
        pki.ca
            .revoke(&info.serial_hex, Reason::Unspecified)
            .unwrap();
        let crl = pki.ca.publish_crl().unwrap();
        let verified = verify_by_current_issuer(&pki, crl.der.clone());
        assert_eq!(verified.revocation_of(&info.serial_hex), Some(None));
        let text = openssl_ok(&[
            "crl",
            "-in",
            pki.paths.crl().to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(!text.contains("CRL Reason Code"), "{text}");
    })
    .await
}

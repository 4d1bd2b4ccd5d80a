//! Attacks on the CA core (issue 11, items 1, 9, 10, 11 and 15), each run
//! against a real CA on loopback and each asserting its specific refusal.

use std::time::Duration;

use pki_ca::authority::init_root;
use pki_ca::policy::IssuancePolicy;
use pki_ca::token::EnrollmentToken;
use pki_ca::{CaError, CaPaths};
use pki_client::ClientError;
use pki_common::ca::api;
use pki_common::ca::crl::fetch_crl;
use pki_common::ca::enroll::{enroll, renew, EnrollError, Enrolled, KeyFiles, Retry};
use pki_common::cert::Profile;
use pki_common::revocation::{Reason, VerifiedCrl};
use pki_tests::crafted_csr;
use pki_tests::refusals::{expect_csr_refusals, CsrRefusal};
use pki_tests::{binary, bounded, csr_for, TestPki};

/// Asserts `err` is the CA's refusal with `status` and `code`.
fn assert_refused(err: &EnrollError, status: u16, code: &str) {
    assert!(
        matches!(err, EnrollError::Refused { status: s, error, detail } if *s == status && error == code && !detail.is_empty()),
        "expected {status} {code}, got: {err}"
    );
}

/// Polls `GET /v1/crl` until the CRL served lists every one of `serials`.
async fn wait_listed(pki: &TestPki, serials: &[&str]) -> VerifiedCrl {
    for _ in 0..100 {
        let crl = fetch_crl(&pki.ca_client(), &pki.root()).await.unwrap();
        if serials.iter().all(|s| crl.revocation_of(s).is_some()) {
            return crl;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/v1/crl did not list all of {serials:?}");
}

async fn renew_client(pki: &TestPki, current: &Enrolled) -> Result<Enrolled, EnrollError> {
    renew(&pki.ca_url(), None, &pki.root(), current, Profile::Client).await
}

/// Item 1: renewing one certificate twice used to fork it, and revoking
/// the original left the forks valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_renews_once_and_its_revocation_reaches_every_renewal() {
    bounded(async {
        let pki = TestPki::start().await;
        let original = pki.enroll_client("stolen.pki.test").await;
        let first = renew_client(&pki, &original).await.unwrap();
        // The attacker, holding the original key, tries to fork it.
        let err = renew_client(&pki, &original).await.unwrap_err();
        assert_refused(&err, 409, "already_renewed");
        let second = renew_client(&pki, &first).await.unwrap();
        let serials = [
            original.info.serial_hex.as_str(),
            first.info.serial_hex.as_str(),
            second.info.serial_hex.as_str(),
        ];

        pki.ca.revoke(serials[0], Reason::KeyCompromise).unwrap();
        for serial in serials {
            let record = pki.ca.ledger().certificate(serial).unwrap().unwrap();
            assert_eq!(
                record.revoked.map(|r| r.reason),
                Some(Reason::KeyCompromise),
                "{serial}"
            );
        }
        let crl = wait_listed(&pki, &serials).await;
        for serial in serials {
            assert_eq!(crl.revocation_of(serial), Some(Some(Reason::KeyCompromise)));
        }
        // The end of the chain cannot renew either.
        let err = renew_client(&pki, &second).await.unwrap_err();
        assert_refused(&err, 403, "certificate_revoked");

        // `pki-ca list` shows the chain, as a table and as JSON.
        let list = |json: bool| {
            let mut cmd = std::process::Command::new(binary("pki-ca"));
            cmd.arg("--dir").arg(pki.dir()).arg("list");
            if json {
                cmd.arg("--json");
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let rows: Vec<serde_json::Value> = serde_json::from_str(&list(true)).unwrap();
        let row = |serial: &str| rows.iter().find(|r| r["serial"] == serial).unwrap().clone();
        assert_eq!(row(serials[0])["renewed_by"], serials[1]);
        assert_eq!(row(serials[1])["renewed_from"], serials[0]);
        assert_eq!(row(serials[1])["renewed_by"], serials[2]);
        assert_eq!(row(serials[2])["renewed_by"], serde_json::Value::Null);
        let table = list(false);
        assert!(
            table.contains("RENEWED_FROM") && table.contains("RENEWED_BY"),
            "{table}"
        );
        let line = table.lines().find(|l| l.starts_with(serials[1])).unwrap();
        assert!(
            line.contains(serials[0]) && line.contains(serials[2]),
            "{line}"
        );
    })
    .await
}

/// Item 1: concurrent renewals of one certificate; exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_renewals_of_one_certificate_exactly_one_succeeds() {
    bounded(async {
        let pki = std::sync::Arc::new(TestPki::start().await);
        let original = pki.enroll_client("race.pki.test").await;
        let attempts: Vec<_> = (0..8)
            .map(|_| {
                let (pki, original) = (pki.clone(), original.clone());
                tokio::spawn(async move { renew_client(&pki, &original).await })
            })
            .collect();
        let mut won = Vec::new();
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(renewed) => won.push(renewed.info.serial_hex),
                Err(e) => assert_refused(&e, 409, "already_renewed"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one renewal succeeds: {won:?}");
        let renewals: Vec<_> = pki
            .ca
            .ledger()
            .certificates()
            .unwrap()
            .into_iter()
            .filter(|r| r.renewed_from.as_deref() == Some(original.info.serial_hex.as_str()))
            .collect();
        assert_eq!(renewals.len(), 1);
        assert_eq!(renewals[0].serial_hex, won[0]);
    })
    .await
}

/// Item 9: with `ca.crl.pem` unwritable (a directory in its place; the
/// tests run as root, so a mode would not stop the write), a revocation
/// still reaches `/v1/crl`, and the file error is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_crl_file_does_not_keep_a_revocation_off_v1_crl() {
    bounded(async {
        let pki = TestPki::start().await;
        let victim = pki.enroll_client("victim.pki.test").await;
        let serial = victim.info.serial_hex.as_str();
        let crl_path = pki.paths.crl();
        std::fs::remove_file(&crl_path).unwrap();
        std::fs::create_dir(&crl_path).unwrap();

        pki.ca.revoke(serial, Reason::KeyCompromise).unwrap();
        // The serving CA's own refresh publishes it, the file failing.
        wait_listed(&pki, &[serial]).await;
        // Publishing directly reports the file error, CRL served anyway.
        let err = pki.ca.publish_crl().unwrap_err();
        let CaError::CrlFile { number, .. } = &err else {
            panic!("expected a CRL file error, got: {err}");
        };
        let served = pki.ca.current_crl().unwrap();
        assert_eq!(served.number, *number);
        assert_eq!(served.entries, 1);
        assert!(
            err.to_string().contains("is signed and served at /v1/crl"),
            "{err}"
        );

        // Once the file can be written, the serving CA writes it.
        std::fs::remove_dir(&crl_path).unwrap();
        for _ in 0..100 {
            if crl_path.is_file() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // ca.crl.pem is the current intermediate's CRL: it verifies against
        // that intermediate.
        let issuer = pki.ca.current_issuer().unwrap();
        let on_disk = pki_common::ca::crl::read_crl(&crl_path, &issuer.cert).unwrap();
        assert_eq!(
            on_disk.revocation_of(serial),
            Some(Some(Reason::KeyCompromise))
        );
    })
    .await
}

/// Item 10: near the root's expiry, the CA refuses to issue with
/// `issuer_expiring`, and does not re-issue its own TLS certificate (it
/// used to, once a second, a ledger row each time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_roots_expiry_nothing_is_issued_and_the_ca_does_not_churn_its_own_certificate() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path());
        // A root with 23 s left, and a 20 s minimum: the CA may start, and
        // a few seconds later it may issue nothing more.
        init_root(&paths, Duration::from_secs(23), false).unwrap();
        let minimum = 20;
        let policy = IssuancePolicy {
            min_validity: Duration::from_secs(minimum),
            ..IssuancePolicy::default()
        };
        let pki = TestPki::serve_in(dir, policy).await;
        let own_rows = || pki.ca.ledger().certificates().unwrap().len();
        assert_eq!(own_rows(), 1, "the CA's own certificate");
        // Its own certificate ends with the root, and was born past two
        // thirds of its life (it is backdated): the old rotation re-issued
        // it every second from here on.
        let root_not_after = pki.ca.root().info.not_after;
        let until_refused = root_not_after - minimum as i64 + 1 - pki_common::unix_now() as i64;
        tokio::time::sleep(Duration::from_secs(until_refused.max(0) as u64)).await;

        let token = pki.token(&["late.pki.test"], Profile::Server);
        let resp = pki.post_csr(Some(&token), csr_for("late.pki.test")).await;
        let body = resp.error_body().unwrap();
        assert_eq!(
            (resp.status.as_u16(), body.error.as_str()),
            (503, "issuer_expiring")
        );
        assert!(
            body.detail.contains("pki-ca init --force"),
            "{}",
            body.detail
        );
        assert_eq!(
            own_rows(),
            1,
            "no certificate was added: no churn, no late leaf"
        );
    })
    .await
}

/// Item 11: CSRs that used to end as `500 internal` (an RSA key without
/// its NULL parameters, an Ed25519 key with parameters), and the weak
/// ones the CA must now refuse (exponent 3, SHA-1), each get their 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_weak_csr_keys_are_client_errors_not_internal_ones() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = pki.dir();
        let name = "app.pki.test";
        let token = pki.token(&[name], Profile::Server);
        let t = Some(token.as_str());
        let [ec_sha1, rsa_sha1] = crafted_csr::sha1_signed(dir, name);
        let cases: Vec<CsrRefusal> = vec![
            (
                "rsa without NULL",
                t,
                crafted_csr::rsa_without_null(dir, name),
                400,
                "unsupported_key",
            ),
            (
                "ed25519 with parameters",
                t,
                crafted_csr::ed25519_with_parameters(name),
                400,
                "unsupported_key",
            ),
            (
                "rsa exponent 3",
                t,
                crafted_csr::rsa_exponent_3(dir, name),
                400,
                "unsupported_key",
            ),
            ("ecdsa-with-SHA1", t, ec_sha1, 400, "unsupported_signature"),
            ("sha1WithRSA", t, rsa_sha1, 400, "unsupported_signature"),
        ];
        expect_csr_refusals(&pki, cases).await;
        // Refusals leave the token usable.
        let resp = pki.post_csr(t, csr_for(name)).await;
        assert_eq!(resp.status, 200);
    })
    .await
}

/// Item 15: `pki-client enroll` with a server-profile token used to spend
/// the token on a server certificate the client then discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_the_wrong_profile_is_refused_before_it_is_spent() {
    bounded(async {
        let pki = TestPki::start().await;
        let name = "app.pki.test";
        let token = pki.token(&[name], Profile::Server);
        let before = pki.ca.ledger().certificates().unwrap().len();
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles {
            key: dir.path().join("client.key"),
            cert: dir.path().join("client.pem"),
        };
        let err = pki
            .client_enroll_into(&files, name, &token)
            .await
            .unwrap_err();
        let ClientError::Enroll(err) = &err else {
            panic!("expected the CA's refusal, got: {err}");
        };
        assert_refused(err, 409, "profile_mismatch");
        assert!(err.to_string().contains("still usable"), "{err}");
        assert_eq!(
            pki.ca.ledger().certificates().unwrap().len(),
            before,
            "nothing issued"
        );
        let id = EnrollmentToken::parse(&token).unwrap().id().to_string();
        let grant = pki.ca.ledger().token(&id).unwrap().unwrap();
        assert_eq!(grant.used_at, None, "the token was not spent");

        // A request naming no known profile is refused the same way.
        let resp = pki
            .ca_client()
            .post(
                "/v1/sign?profile=admin",
                Some(&token),
                "application/pkcs10",
                csr_for(name),
            )
            .await
            .unwrap();
        assert_eq!(
            (
                resp.status.as_u16(),
                resp.error_body().unwrap().error.as_str()
            ),
            (400, "bad_profile")
        );

        // The same token, with the profile it was minted for, still works.
        let names = vec![name.to_string()];
        let server = enroll(
            &pki.ca_client(),
            &pki.root(),
            &names,
            &token,
            Profile::Server,
            Retry::default(),
        )
        .await
        .unwrap();
        assert!(pki
            .ca
            .ledger()
            .certificate(&server.info.serial_hex)
            .unwrap()
            .is_some());
        assert_eq!(api::sign_path(Profile::Client), "/v1/sign?profile=client");
    })
    .await
}

/// A stolen token raced against its owner: twenty concurrent requests with
/// one token, each with its own key, yield exactly one certificate; every
/// other request is refused with `token_used`, and the ledger records one
/// issuance for the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_uses_of_one_token_yield_one_certificate() {
    bounded(async {
        let pki = std::sync::Arc::new(TestPki::start().await);
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (pki, token) = (pki.clone(), token.clone());
            racers.spawn(async move { pki.post_csr(Some(&token), csr_for("app.pki.test")).await });
        }
        let (mut issued, mut used) = (0, 0);
        while let Some(resp) = racers.join_next().await {
            let resp = resp.unwrap();
            match resp.status.as_u16() {
                200 => issued += 1,
                401 => {
                    assert_eq!(resp.error_body().unwrap().error, "token_used");
                    used += 1;
                }
                other => panic!("unexpected answer {other}: {:?}", resp.error_body()),
            }
        }
        assert_eq!((issued, used), (1, 19));
        let id = EnrollmentToken::parse(&token).unwrap().id().to_string();
        let records = pki.ca.ledger().certificates().unwrap();
        assert_eq!(
            records
                .iter()
                .filter(|r| r.token_id.as_deref() == Some(id.as_str()))
                .count(),
            1
        );
    })
    .await
}

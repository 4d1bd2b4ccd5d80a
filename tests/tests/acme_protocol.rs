//! ACME (RFC 8555) against the CA, message by message: the whole flow
//! with each challenge type, and each refusal with its problem type.

use std::time::Duration;

use pki_ca::acme::AcmeConfig;
use pki_ca::policy::IssuancePolicy;
use pki_tests::acme::{b64, csr_for, sign_jws, AccountKey, AcmeClient, Http01, TlsAlpn01};
use pki_tests::{bounded, TestPki};
use serde_json::{json, Value};

const NAME: &str = "app.pki.test";

/// A CA serving ACME for `pki.test` (and 127.0.0.2), validating http-01
/// at `http` and tls-alpn-01 at `tls`, with `tweak` on top.
async fn acme_ca(http: u16, tls: u16, tweak: impl FnOnce(&mut AcmeConfig)) -> TestPki {
    let mut config = AcmeConfig {
        allow: vec!["pki.test".into(), "127.0.0.2".into()],
        http_port: http,
        tls_port: tls,
        validation_timeout: Duration::from_secs(5),
        ..AcmeConfig::default()
    };
    config
        .resolve
        .insert(NAME.into(), "127.0.0.1".parse().unwrap());
    config
        .resolve
        .insert("other.pki.test".into(), "127.0.0.1".parse().unwrap());
    config
        .resolve
        .insert("127.0.0.2".into(), "127.0.0.1".parse().unwrap());
    tweak(&mut config);
    TestPki::start_serving(|opts| opts.acme = Some(config)).await
}

/// Registers, orders `names`, and answers every http-01 challenge at
/// `http`; answers the order after its authorizations are settled.
async fn validated_order(
    client: &mut AcmeClient,
    http: &Http01,
    names: &[&str],
) -> (String, Value) {
    assert_eq!(client.register().await.status, 201);
    let order = client.new_order(names).await;
    assert_eq!(
        order.status,
        201,
        "{}",
        String::from_utf8_lossy(&order.body)
    );
    let order_url = order.header("location").unwrap();
    let order = order.json();
    for (authz_url, authz) in client.authorizations(&order).await {
        let ch = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "http-01")
            .unwrap()
            .clone();
        let token = ch["token"].as_str().unwrap();
        http.answer(token, &client.key_authorization(token));
        let r = client
            .post(ch["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        assert_eq!(r.status, 200);
        assert!(r.header("link").unwrap_or_default().contains("rel=\"up\""));
        assert_eq!(client.poll(&authz_url).await["status"], "valid");
    }
    let order = client.post(&order_url, None).await.json();
    (order_url, order)
}

async fn finalize(
    client: &mut AcmeClient,
    order: &Value,
    csr: String,
) -> pki_tests::acme::AcmeResponse {
    let url = order["finalize"].as_str().unwrap().to_string();
    client.post(&url, Some(&json!({ "csr": csr }))).await
}

#[tokio::test]
async fn http_01_flow_issues_a_recorded_certificate_that_chains_to_the_root_and_revokes() {
    bounded(async {
        let http = Http01::start().await;
        let pki = acme_ca(http.port, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        let dir = client.directory().await;
        assert_eq!(dir["newOrder"], client.url("/acme/new-order"));
        let (order_url, order) = validated_order(&mut client, &http, &[NAME, "127.0.0.2"]).await;
        assert_eq!(order["status"], "ready");
        let r = finalize(&mut client, &order, csr_for(&[NAME, "127.0.0.2"])).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let order = client.post(&order_url, None).await.json();
        assert_eq!(order["status"], "valid");
        let cert_url = order["certificate"].as_str().unwrap().to_string();
        let cert = client.post(&cert_url, None).await;
        assert_eq!(
            cert.header("content-type").as_deref(),
            Some("application/pem-certificate-chain")
        );
        let pem = String::from_utf8(cert.body.clone()).unwrap();
        assert_eq!(
            pem.matches("BEGIN CERTIFICATE").count(),
            2,
            "leaf and intermediate"
        );
        let file = pki_tests::csr::write_file(pki.dir(), "acme.pem", pem.as_bytes());
        let verified =
            pki_tests::csr::openssl_verify_server(pki.root_path().to_str().unwrap(), &file);
        assert!(verified.contains("OK"), "{verified}");

        // The ledger recorded it, for this order.
        let serial = cert_url.rsplit('/').next().unwrap().to_string();
        let record = pki.ca.ledger().certificate(&serial).unwrap().unwrap();
        assert_eq!(
            record.names,
            vec![NAME.to_string(), "127.0.0.2".to_string()]
        );
        assert!(record.acme_order.is_some());

        // Revoked by the account that ordered it; a second time is refused.
        let der =
            pki_common::files::pem_or_der::<rustls::pki_types::CertificateDer>(pem.as_bytes())
                .unwrap();
        let revoke = client.url("/acme/revoke-cert");
        let payload = json!({"certificate": b64(der.as_ref()), "reason": 4});
        assert_eq!(client.post(&revoke, Some(&payload)).await.status, 200);
        assert!(pki
            .ca
            .ledger()
            .certificate(&serial)
            .unwrap()
            .unwrap()
            .revoked
            .is_some());
        client
            .post(&revoke, Some(&payload))
            .await
            .assert_problem("alreadyRevoked");
    })
    .await;
}

#[tokio::test]
async fn tls_alpn_01_validates_the_acme_identifier_extension() {
    bounded(async {
        let responder = TlsAlpn01::bind().await;
        let pki = acme_ca(1, responder.port, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        client.register().await;
        let order = client.new_order(&[NAME]).await.json();
        let (authz_url, authz) = client.authorizations(&order).await.remove(0);
        let ch = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "tls-alpn-01")
            .unwrap()
            .clone();
        responder.serve(
            NAME,
            &client.key_authorization(ch["token"].as_str().unwrap()),
        );
        client
            .post(ch["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        assert_eq!(client.poll(&authz_url).await["status"], "valid");
    })
    .await;
}

#[tokio::test]
async fn a_tls_alpn_answer_for_another_key_authorization_is_incorrect() {
    bounded(async {
        let responder = TlsAlpn01::bind().await;
        let pki = acme_ca(1, responder.port, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        client.register().await;
        let order = client.new_order(&[NAME]).await.json();
        let (authz_url, authz) = client.authorizations(&order).await.remove(0);
        let ch = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "tls-alpn-01")
            .unwrap()
            .clone();
        responder.serve(NAME, "someone-else.token");
        client
            .post(ch["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        let authz = client.poll(&authz_url).await;
        assert_eq!(authz["status"], "invalid");
        let ch = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "tls-alpn-01")
            .unwrap()
            .clone();
        assert_eq!(
            ch["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse",
            "{}",
            ch["error"]
        );
    })
    .await;
}

#[tokio::test]
async fn a_wrong_key_authorization_fails_the_challenge_and_the_order() {
    bounded(async {
        let http = Http01::start().await;
        let pki = acme_ca(http.port, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        client.register().await;
        let order = client.new_order(&[NAME]).await;
        let order_url = order.header("location").unwrap();
        let (authz_url, authz) = client.authorizations(&order.json()).await.remove(0);
        let ch = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "http-01")
            .unwrap()
            .clone();
        let token = ch["token"].as_str().unwrap();
        http.answer(token, &format!("{token}.not-the-account-thumbprint"));
        client
            .post(ch["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        let authz = client.poll(&authz_url).await;
        assert_eq!(authz["status"], "invalid");
        assert_eq!(
            authz["challenges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "http-01")
                .unwrap()["error"]["type"],
            "urn:ietf:params:acme:error:incorrectResponse"
        );
        let order = client.post(&order_url, None).await.json();
        assert_eq!(order["status"], "invalid");
        finalize(&mut client, &order, csr_for(&[NAME]))
            .await
            .assert_problem("orderNotReady");
    })
    .await;
}

#[tokio::test]
async fn finalize_refuses_a_csr_naming_more_than_the_order_and_a_weak_key() {
    bounded(async {
        let http = Http01::start().await;
        let pki = acme_ca(http.port, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        let (_, order) = validated_order(&mut client, &http, &[NAME]).await;
        let r = finalize(&mut client, &order, csr_for(&[NAME, "other.pki.test"])).await;
        r.assert_problem("badCSR");
        let sub = &r.json()["subproblems"][0];
        assert_eq!(sub["identifier"]["value"], "other.pki.test");
        assert_eq!(sub["type"], "urn:ietf:params:acme:error:badCSR");

        let weak = pki_tests::csr::openssl_csr(
            pki.dir(),
            "weak",
            &["-newkey", "rsa:1024"],
            NAME,
            &["-addext", "subjectAltName=DNS:app.pki.test"],
        );
        let der =
            pki_common::files::pem_or_der::<rustls::pki_types::CertificateSigningRequestDer>(&weak)
                .unwrap();
        finalize(&mut client, &order, b64(der.as_ref()))
            .await
            .assert_problem("badPublicKey");
        // Neither was recorded; the order is still ready for a good CSR.
        assert!(pki
            .ca
            .ledger()
            .certificates()
            .unwrap()
            .iter()
            .all(|r| r.acme_order.is_none()));
        assert_eq!(
            finalize(&mut client, &order, csr_for(&[NAME])).await.status,
            200
        );
    })
    .await;
}

#[tokio::test]
async fn forged_replayed_and_misaddressed_requests_are_refused() {
    bounded(async {
        let pki = acme_ca(1, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        client.register().await;
        let url = client.url("/acme/new-order");
        let payload = json!({"identifiers": [{"type": "dns", "value": NAME}]}).to_string();

        // A bad signature: signed by another key under this account's kid.
        let nonce = client.fresh_nonce().await;
        let mut jws = client.jws(&url, Some(&nonce), payload.as_bytes(), false);
        let other = AccountKey::generate();
        jws["signature"] = json!(b64(&other.sign(b"something else")));
        client
            .post_jws(&url, &jws)
            .await
            .assert_problem("malformed");

        // A nonce used once is refused the second time.
        let nonce = client.fresh_nonce().await;
        let jws = client.jws(&url, Some(&nonce), payload.as_bytes(), false);
        assert_eq!(client.post_jws(&url, &jws).await.status, 201);
        let again = client.post_jws(&url, &jws).await;
        again.assert_problem("badNonce");
        // ... and an invented one.
        let jws = client.jws(&url, Some("bm90LWEtbm9uY2U"), payload.as_bytes(), false);
        client.post_jws(&url, &jws).await.assert_problem("badNonce");

        // A JWS for another URL.
        let nonce = client.fresh_nonce().await;
        let jws = client.jws(
            &client.url("/acme/new-account"),
            Some(&nonce),
            payload.as_bytes(),
            false,
        );
        client
            .post_jws(&url, &jws)
            .await
            .assert_problem("unauthorized");

        // A kid no account has.
        client.kid = Some(client.url("/acme/acct/0000"));
        client
            .post(
                &url,
                Some(&json!({"identifiers": [{"type": "dns", "value": NAME}]})),
            )
            .await
            .assert_problem("accountDoesNotExist");

        // An algorithm outside the list.
        let nonce = client.fresh_nonce().await;
        let protected =
            json!({"alg": "HS256", "url": url, "nonce": nonce, "jwk": client.key.jwk()});
        let r = client
            .post_jws(
                &client.url("/acme/new-account"),
                &sign_jws(&client.key, &protected, b"{}"),
            )
            .await;
        assert_eq!(r.problem(), "unauthorized", "the url check comes first");
        let nonce = client.fresh_nonce().await;
        let new_account = client.url("/acme/new-account");
        let protected =
            json!({"alg": "none", "url": new_account, "nonce": nonce, "jwk": client.key.jwk()});
        let r = client
            .post_jws(&new_account, &sign_jws(&client.key, &protected, b"{}"))
            .await;
        r.assert_problem("badSignatureAlgorithm");
        assert!(r.json()["algorithms"]
            .as_array()
            .unwrap()
            .contains(&json!("ES256")));
    })
    .await;
}

#[tokio::test]
async fn identifiers_outside_the_allowed_names_or_reserved_are_rejected() {
    bounded(async {
        let pki = acme_ca(1, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        client.register().await;
        let r = client.new_order(&["www.example.com"]).await;
        r.assert_problem("rejectedIdentifier");
        assert!(r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("--acme-allow"));
        // The CA's own endpoint name is never issued, even if allowed.
        client
            .new_order(&["ca.pki.test"])
            .await
            .assert_problem("rejectedIdentifier");
        let r = client.new_order(&["a.example.com", "*.pki.test"]).await;
        r.assert_problem("rejectedIdentifier");
        assert_eq!(r.json()["subproblems"].as_array().unwrap().len(), 2);
        let url = client.url("/acme/new-order");
        client
            .post(
                &url,
                Some(&json!({"identifiers": [{"type": "email", "value": "a@pki.test"}]})),
            )
            .await
            .assert_problem("unsupportedIdentifier");
    })
    .await;
}

#[tokio::test]
async fn accounts_can_be_found_rekeyed_and_deactivated() {
    bounded(async {
        let pki = acme_ca(1, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        client
            .register_with(json!({"onlyReturnExisting": true}))
            .await
            .assert_problem("accountDoesNotExist");
        assert_eq!(client.register().await.status, 201);
        let kid = client.kid.clone().unwrap();
        let again = client
            .register_with(json!({"onlyReturnExisting": true}))
            .await;
        assert_eq!(again.status, 200);
        assert_eq!(again.header("location").as_deref(), Some(kid.as_str()));

        // keyChange: the inner JWS by the new key, over the account and old key.
        let new_key = AccountKey::generate();
        let url = client.url("/acme/key-change");
        let inner = sign_jws(
            &new_key,
            &json!({"alg": "ES256", "url": url, "jwk": new_key.jwk()}),
            json!({"account": kid, "oldKey": client.key.jwk()})
                .to_string()
                .as_bytes(),
        );
        let r = client.post(&url, Some(&inner)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        // The old key no longer signs for the account; the new one does.
        client.post(&kid, None).await.assert_problem("malformed");
        client.key = new_key;
        assert_eq!(client.post(&kid, None).await.json()["status"], "valid");

        let r = client
            .post(&kid, Some(&json!({"status": "deactivated"})))
            .await;
        assert_eq!(r.json()["status"], "deactivated");
        client
            .new_order(&[NAME])
            .await
            .assert_problem("unauthorized");
    })
    .await;
}

#[tokio::test]
async fn the_certificate_key_may_revoke_and_a_stranger_may_not() {
    bounded(async {
        let http = Http01::start().await;
        let pki = acme_ca(http.port, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        let (order_url, order) = validated_order(&mut client, &http, &[NAME]).await;
        // The certificate's key: an ES256 key whose PKCS#8 rcgen reads.
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let cert_key = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
        finalize(
            &mut client,
            &order,
            pki_tests::acme::csr_with_key(&[NAME], &cert_key),
        )
        .await;
        let order = client.post(&order_url, None).await.json();
        let pem = client
            .post(order["certificate"].as_str().unwrap(), None)
            .await
            .body;
        let der = pki_common::files::pem_or_der::<rustls::pki_types::CertificateDer>(&pem).unwrap();
        let payload = json!({"certificate": b64(der.as_ref())}).to_string();

        let mut stranger = AcmeClient::new(&pki);
        stranger.register().await;
        let url = client.url("/acme/revoke-cert");
        stranger
            .post(&url, Some(&serde_json::from_str(&payload).unwrap()))
            .await
            .assert_problem("unauthorized");

        let mut holder = AcmeClient::with_key(&pki, AccountKey::from_pkcs8(pkcs8.as_ref()));
        let nonce = holder.fresh_nonce().await;
        let jws = holder.jws(&url, Some(&nonce), payload.as_bytes(), true);
        assert_eq!(holder.post_jws(&url, &jws).await.status, 200);
        let serial = order["certificate"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        assert!(pki
            .ca
            .ledger()
            .certificate(&serial)
            .unwrap()
            .unwrap()
            .revoked
            .is_some());
    })
    .await;
}

#[tokio::test]
async fn external_account_binding_missing_reused_or_forged_is_refused() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let paths = pki_ca::CaPaths::new(dir.path());
        pki_ca::authority::init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
        let ca = pki_ca::Ca::open(&paths, IssuancePolicy::default()).unwrap();
        let (kid, key) = pki_ca::acme::eab::mint(&ca, Duration::from_secs(600)).unwrap();
        drop(ca);
        let config = AcmeConfig {
            eab_required: true,
            ..AcmeConfig::default()
        };
        let pki =
            TestPki::serve_with(dir, IssuancePolicy::default(), |o| o.acme = Some(config)).await;
        let mut client = AcmeClient::new(&pki);
        client
            .register()
            .await
            .assert_problem("externalAccountRequired");

        let url = client.url("/acme/new-account");
        let binding = |client: &AcmeClient, mac_key: &[u8]| {
            let protected = b64(json!({"alg": "HS256", "kid": kid, "url": url})
                .to_string()
                .as_bytes());
            let payload = b64(client.key.jwk().to_string().as_bytes());
            let mac = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, mac_key),
                format!("{protected}.{payload}").as_bytes(),
            );
            json!({"protected": protected, "payload": payload, "signature": b64(mac.as_ref())})
        };
        let good_key =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &key)
                .unwrap();
        let forged = binding(&client, b"not the key");
        client
            .register_with(json!({"externalAccountBinding": forged}))
            .await
            .assert_problem("unauthorized");
        let good = binding(&client, &good_key);
        assert_eq!(
            client
                .register_with(json!({"externalAccountBinding": good}))
                .await
                .status,
            201
        );

        let mut second = AcmeClient::new(&pki);
        let reused = binding(&second, &good_key);
        let r = second
            .register_with(json!({"externalAccountBinding": reused}))
            .await;
        r.assert_problem("unauthorized");
        assert!(r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("already used"));
    })
    .await;
}

#[tokio::test]
async fn rate_limits_answer_rate_limited_with_retry_after() {
    bounded(async {
        let pki = acme_ca(1, 1, |c| c.orders_per_hour = 2).await;
        let mut client = AcmeClient::new(&pki);
        client.register().await;
        assert_eq!(client.new_order(&[NAME]).await.status, 201);
        assert_eq!(client.new_order(&[NAME]).await.status, 201);
        let r = client.new_order(&[NAME]).await;
        r.assert_problem("rateLimited");
        assert_eq!(r.status, 429);
        assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    })
    .await;
}

#[tokio::test]
async fn accounts_and_orders_survive_a_restart() {
    bounded(async {
        let http = Http01::start().await;
        let pki = acme_ca(http.port, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        let (order_url, _) = validated_order(&mut client, &http, &[NAME]).await;
        let TestPki { dir, .. } = pki;
        let config = AcmeConfig {
            allow: vec!["pki.test".into()],
            ..AcmeConfig::default()
        };
        let pki =
            TestPki::serve_with(dir, IssuancePolicy::default(), |o| o.acme = Some(config)).await;
        let kid = client.kid.clone().unwrap();
        let mut after = AcmeClient::with_key(&pki, client.key);
        // Same host and path, new port: the account's URL moves with it.
        let id = kid.rsplit('/').next().unwrap();
        after.kid = Some(after.url(&format!("/acme/acct/{id}")));
        let order_path = order_url.split("/acme/").nth(1).unwrap();
        let order = after
            .post(&after.url(&format!("/acme/{order_path}")), None)
            .await
            .json();
        assert_eq!(order["status"], "ready");
    })
    .await;
}

#[test]
fn pki_ca_eab_mints_a_key_kept_hashed_with_its_master_key_private() {
    let dir = tempfile::tempdir().unwrap();
    let paths = pki_ca::CaPaths::new(dir.path());
    pki_ca::authority::init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
    let out = std::process::Command::new(pki_tests::binary("pki-ca"))
        .args([
            "--dir",
            dir.path().to_str().unwrap(),
            "eab",
            "--valid",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .unwrap();
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("hmac-key: "))
        .unwrap();
    assert!(kid.starts_with("eab-") && key.len() >= 43, "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("acme-eab.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The ledger holds the key's hash, never the key.
    let db = rusqlite::Connection::open(paths.ledger()).unwrap();
    let stored: Vec<u8> = db
        .query_row("SELECT key_hash FROM acme_eab WHERE kid = ?1", [kid], |r| {
            r.get(0)
        })
        .unwrap();
    let raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key).unwrap();
    assert_ne!(stored, raw);
    assert_eq!(
        stored,
        <sha2::Sha256 as sha2::Digest>::digest(&raw).to_vec()
    );
}

#[tokio::test]
async fn acme_finalize_is_linted_and_a_failing_certificate_is_neither_signed_nor_recorded() {
    bounded(async {
        let http = Http01::start().await;
        let pki = acme_ca(http.port, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        let (order_url, order) = validated_order(&mut client, &http, &[NAME]).await;
        let signed_before = pki.ca.real_signatures();
        // A profile gone wrong: CA:TRUE on a leaf.
        pki.ca
            .inject_fault(Some(pki_ca::lint::Fault::Draft(std::sync::Arc::new(|d| {
                d.params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
            }))));
        let r = finalize(&mut client, &order, csr_for(&[NAME])).await;
        pki.ca.inject_fault(None);
        r.assert_problem("serverInternal");
        assert_eq!(r.status, 500);
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains("basic_constraints"),
            "{}",
            r.json()
        );
        assert_eq!(
            pki.ca.real_signatures(),
            signed_before,
            "nothing signed with the real key"
        );
        assert_eq!(pki.ca.lint_failures("basic_constraints"), 1);
        assert!(pki
            .ca
            .ledger()
            .certificates()
            .unwrap()
            .iter()
            .all(|c| c.acme_order.is_none()));
        let order = client.post(&order_url, None).await.json();
        assert_eq!(order["status"], "invalid");
        assert_eq!(
            order["error"]["type"],
            "urn:ietf:params:acme:error:serverInternal"
        );
    })
    .await;
}

#[tokio::test]
async fn a_contact_other_than_mailto_a_bad_reason_and_a_key_already_taken_are_refused() {
    bounded(async {
        let http = Http01::start().await;
        let pki = acme_ca(http.port, 1, |_| {}).await;
        let mut client = AcmeClient::new(&pki);
        client
            .register_with(json!({"contact": ["tel:+15551234"]}))
            .await
            .assert_problem("unsupportedContact");

        // A revocation reason outside 0, 1, 3, 4, 5.
        let (order_url, order) = validated_order(&mut client, &http, &[NAME]).await;
        finalize(&mut client, &order, csr_for(&[NAME])).await;
        let order = client.post(&order_url, None).await.json();
        let pem = client
            .post(order["certificate"].as_str().unwrap(), None)
            .await
            .body;
        let der = pki_common::files::pem_or_der::<rustls::pki_types::CertificateDer>(&pem).unwrap();
        let revoke = client.url("/acme/revoke-cert");
        let payload = json!({"certificate": b64(der.as_ref()), "reason": 2});
        client
            .post(&revoke, Some(&payload))
            .await
            .assert_problem("badRevocationReason");

        // keyChange to a key another account already holds: 409, and the
        // Location of that account.
        let mut other = AcmeClient::new(&pki);
        other.register().await;
        let other_kid = other.kid.clone().unwrap();
        let url = client.url("/acme/key-change");
        let kid = client.kid.clone().unwrap();
        let inner = sign_jws(
            &other.key,
            &json!({"alg": "ES256", "url": url, "jwk": other.key.jwk()}),
            json!({"account": kid, "oldKey": client.key.jwk()})
                .to_string()
                .as_bytes(),
        );
        let r = client.post(&url, Some(&inner)).await;
        assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("location").as_deref(), Some(other_kid.as_str()));
        assert!(r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("another account"));
    })
    .await;
}

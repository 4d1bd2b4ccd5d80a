//! Mutual authentication and renewal: the accept/refuse table for client
//! certificates, renewal and its refusals, and a server that swaps its
//! certificate while running.

use std::process::{Command, Stdio};
use std::time::Duration;

use pki_client::{request_once, ClientConfig, ClientError, Connection};
use pki_common::ca::enroll::{renew, EnrollError};
use pki_common::cert::CertInfo;
use pki_common::cert::Profile;
use pki_common::files;
use pki_common::proto::{AlertCode, ProtoError};
use pki_common::revocation::Reason;
use pki_server::{AppServer, ClientAuth};
use pki_tests::refusals::tls_alert;
use pki_tests::{bounded, write_identity_files, AppFixture, TestPki};
use rustls::AlertDescription;

fn with_identity(
    mut config: ClientConfig,
    identity: Option<pki_common::ca::enroll::Enrolled>,
    id: &str,
) -> ClientConfig {
    config.identity = identity;
    config.client_id = id.to_string();
    config
}

/// Whether the server refused the client's certificate with `alert`.
fn refused_with(err: &ClientError, alert: AlertDescription) -> bool {
    tls_alert(err) == Some(alert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accept_and_refuse_table() {
    bounded(async {
        let app = AppFixture::start_with(|c| {
            c.client_auth = ClientAuth::Required;
            c.crl_refresh = Duration::from_millis(100);
        })
        .await;
        let pki = &app.pki;
        let other = TestPki::start().await;
        let base = app.client_config();
        let good = pki.enroll_client("client1.pki.test").await;

        // Accepted: a certificate from our CA, the client id it names.
        let ok = request_once(&with_identity(base.clone(), Some(good.clone()), "client1.pki.test"), "whoami", b"")
            .await
            .unwrap();
        let text = String::from_utf8(ok.data).unwrap();
        assert!(text.contains("client id: client1.pki.test (authenticated by certificate)"), "{text}");

        // Refused: no certificate.
        let err = request_once(&with_identity(base.clone(), None, "client1"), "memo", b"").await.unwrap_err();
        assert!(refused_with(&err, AlertDescription::CertificateRequired), "{err}");
        assert!(err.to_string().contains("requires a client certificate"), "{err}");

        // Refused: a certificate from another CA.
        let foreign = other.enroll_client("client1.pki.test").await;
        let err = request_once(&with_identity(base.clone(), Some(foreign), "client1.pki.test"), "memo", b"")
            .await
            .unwrap_err();
        assert!(refused_with(&err, AlertDescription::UnknownCA), "{err}");

        // Refused: a client id that does not match the certificate.
        let err = request_once(&with_identity(base.clone(), Some(good.clone()), "admin.pki.test"), "memo", b"")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Proto(ProtoError::PeerAlert { code: AlertCode::ClientIdMismatch, message }) if message.contains("admin.pki.test")),
            "{err}"
        );

        // Refused: a revoked certificate, once the server has the new CRL.
        let revoked = pki.enroll_client("client2.pki.test").await;
        let config = with_identity(base.clone(), Some(revoked.clone()), "client2.pki.test");
        request_once(&config, "memo", b"").await.unwrap();
        pki.ca.revoke(&revoked.info.serial_hex, Reason::KeyCompromise).unwrap();
        pki.ca.publish_crl().unwrap();
        let mut last = None;
        for _ in 0..100 {
            match request_once(&config, "memo", b"").await {
                Err(e) if refused_with(&e, AlertDescription::CertificateRevoked) => {
                    last = None;
                    break;
                }
                other => last = Some(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(last.is_none(), "the server kept accepting a revoked client certificate: {last:?}");
        // Others are still accepted.
        request_once(&with_identity(base, Some(good), "client1.pki.test"), "memo", b"").await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_clients_without_certificates_are_unauthenticated() {
    bounded(async {
        let app = AppFixture::start().await;
        let base = app.client_config();
        let anon = request_once(&with_identity(base.clone(), None, "client1"), "whoami", b"")
            .await
            .unwrap();
        assert!(String::from_utf8(anon.data)
            .unwrap()
            .contains("(unauthenticated"));
        let good = app.pki.enroll_client("client1.pki.test").await;
        let authd = request_once(
            &with_identity(base, Some(good), "client1.pki.test"),
            "whoami",
            b"",
        )
        .await
        .unwrap();
        assert!(String::from_utf8(authd.data)
            .unwrap()
            .contains("(authenticated by certificate)"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_client_certificates_needs_a_crl() {
    bounded(async {
        let pki = TestPki::start().await;
        let identity = pki.enroll_identity(&["app.pki.test"]).await;
        let config = pki_server::ServerConfig {
            listener: pki_server::ListenOptions::on("127.0.0.1:0".parse().unwrap()),
            client_auth: ClientAuth::Required,
            certs_dir: tempfile::tempdir().unwrap().path().to_path_buf(),
            enrollment: pki_server::identity::Enrollment {
                ca_url: format!("https://127.0.0.1:{}", pki_tests::free_port()),
                ca_name: None,
                token: None,
                retry: Default::default(),
            },
            ..Default::default()
        };
        let err = AppServer::bind(config, identity, Default::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, pki_server::ServerError::NoCrl), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_with_a_client_certificate_completes_the_handshake() {
    bounded(async {
        let AppFixture { pki, server } =
            AppFixture::start_with(|c| c.client_auth = ClientAuth::Required).await;
        let other = TestPki::start().await;
        // openssl's -cert takes the leaf alone: the intermediate that
        // issued it goes in -cert_chain, so s_client sends the whole chain
        // and the server can build the path to the root it trusts.
        let write = |tag: &str, e: &pki_common::ca::enroll::Enrolled| {
            let (cert, key) = write_identity_files(pki.dir(), tag, e);
            let chain = pki.dir().join(format!("{tag}-chain.pem"));
            let intermediates: String = e.intermediates.iter().map(files::cert_to_pem).collect();
            files::write_public(&chain, &intermediates).unwrap();
            (cert, key, chain.to_str().unwrap().to_string())
        };
        let ours = write("ours", &pki.enroll_client("client1.pki.test").await);
        let theirs = write("theirs", &other.enroll_client("client1.pki.test").await);
        let root = pki.root_path().to_str().unwrap().to_string();
        let addr = server.addr.to_string();
        // Sends one line and waits for the server to answer or close: with
        // TLS 1.3 the server's verdict on the client certificate arrives
        // after the client's side of the handshake.
        let s_client = move |identity: Option<(String, String, String)>| {
            let mut args = vec![
                "s_client".to_string(),
                "-tls1_3".into(),
                "-connect".into(),
                addr.clone(),
                "-servername".into(),
                "app.pki.test".into(),
                "-CAfile".into(),
                root.clone(),
                "-verify_return_error".into(),
                "-ign_eof".into(),
            ];
            if let Some((cert, key, chain)) = identity {
                args.extend([
                    "-cert".into(),
                    cert,
                    "-cert_chain".into(),
                    chain,
                    "-key".into(),
                    key,
                ]);
            }
            let mut child = Command::new("openssl")
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("openssl must be installed");
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(b"not a frame\n");
            let out = child.wait_with_output().unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let run = |id| {
            tokio::task::spawn_blocking({
                let f = s_client.clone();
                move || f(id)
            })
        };
        let accepted = run(Some(ours)).await.unwrap();
        assert!(
            accepted.contains("Verify return code: 0 (ok)"),
            "{accepted}"
        );
        assert!(!accepted.contains("alert"), "{accepted}");
        // The server answered at the protocol level: it saw our bytes.
        assert!(accepted.contains("PA"), "{accepted}");

        let without = run(None).await.unwrap();
        assert!(without.contains("certificate required"), "{without}");
        let foreign = run(Some(theirs)).await.unwrap();
        assert!(foreign.contains("unknown ca"), "{foreign}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_issues_a_linked_certificate_and_refuses_revoked_or_expired_ones() {
    bounded(async {
        let pki = TestPki::start().await;
        let root = pki.root();
        let current = pki.enroll_client("client1.pki.test").await;

        let renewed = renew(&pki.ca_url(), None, &root, &current, Profile::Client).await.unwrap();
        assert_ne!(renewed.info.serial_hex, current.info.serial_hex);
        assert_ne!(renewed.info.spki_der, current.info.spki_der, "renewal makes a new key");
        assert_eq!(renewed.info.names(), current.info.names());
        let record = pki.ca.ledger().certificate(&renewed.info.serial_hex).unwrap().unwrap();
        assert_eq!(record.renewed_from.as_deref(), Some(current.info.serial_hex.as_str()));
        assert_eq!(record.profile, Profile::Client);
        assert!(record.token_id.is_none());

        // Revoked: refused, and the refusal says a new token is needed.
        pki.ca.revoke(&renewed.info.serial_hex, Reason::KeyCompromise).unwrap();
        let err = renew(&pki.ca_url(), None, &root, &renewed, Profile::Client).await.unwrap_err();
        assert!(
            matches!(&err, EnrollError::Refused { status: 403, error, detail } if error == "certificate_revoked" && detail.contains("new token")),
            "{err}"
        );

        // Expired: refused before anything is sent.
        let mut expired = current.clone();
        expired.info.not_after = pki_common::unix_now() as i64 - 1;
        let err = renew(&pki.ca_url(), None, &root, &expired, Profile::Client).await.unwrap_err();
        assert!(matches!(err, EnrollError::Expired), "{err}");
        assert!(err.to_string().contains("new token"));

        // No client certificate at all.
        let resp = pki
            .ca_client()
            .post("/v1/renew", None, "application/pkcs10", b"x".to_vec())
            .await
            .unwrap();
        assert_eq!((resp.status.as_u16(), resp.error_body().unwrap().error.as_str()), (401, "client_certificate_required"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_swaps_certificates_while_running_and_open_sessions_keep_working() {
    bounded(async {
        // Six-second certificates: renewal comes due after four.
        let pki = TestPki::start_with_lifetime(Duration::from_secs(6)).await;
        let server = pki
            .start_server(|c| c.renew_retry = Duration::from_millis(200))
            .await;
        let config = pki.client_config(server.addr);
        let first = server.shared.identity().info.serial_hex.clone();

        let mut open = Connection::connect(&config).await.unwrap();
        let mut session = open.register().await.unwrap();
        assert_eq!(
            CertInfo::parse(open.server_cert()).unwrap().serial_hex,
            first
        );

        let mut renewed = None;
        for _ in 0..200 {
            let now = server.shared.identity().info.serial_hex.clone();
            if now != first {
                renewed = Some(now);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let renewed = renewed.expect("the server did not renew its certificate");

        // New connections see the new certificate...
        let fresh = Connection::connect(&config).await.unwrap();
        assert_eq!(
            CertInfo::parse(fresh.server_cert()).unwrap().serial_hex,
            renewed
        );
        fresh.close().await;
        let resp = request_once(&config, "memo", b"").await.unwrap();
        assert_eq!(resp.data, b"take cis3319 class this morning");
        // ...while the session opened before the swap keeps working.
        let resp = open.request(&mut session, "memo", b"").await.unwrap();
        assert_eq!(resp.data, b"take cis3319 class this morning");
        // The renewed certificate is on disk and in the ledger, linked.
        let dir = server.dir.as_ref().unwrap().path();
        let on_disk = CertInfo::parse(&files::read_cert(&dir.join("server.pem")).unwrap()).unwrap();
        let record = pki
            .ca
            .ledger()
            .certificate(&on_disk.serial_hex)
            .unwrap()
            .unwrap();
        assert!(record.renewed_from.is_some());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_past_two_thirds_renews_on_start_without_a_token() {
    bounded(async {
        let pki = TestPki::start_with_lifetime(Duration::from_secs(3)).await;
        let dir = pki.server_dir();
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let first = AppServer::start(pki.server_config(dir.path(), Some(token)))
            .await
            .unwrap();
        let serial = first.shared().identity().info.serial_hex.clone();
        let due = first.shared().identity().info.renewal_due();
        drop(first);
        while (pki_common::unix_now() as i64) < due {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let again = AppServer::start(pki.server_config(dir.path(), None))
            .await
            .unwrap();
        let renewed = again.shared().identity().info.serial_hex.clone();
        assert_ne!(renewed, serial);
        let record = pki.ca.ledger().certificate(&renewed).unwrap().unwrap();
        assert_eq!(record.renewed_from.as_deref(), Some(serial.as_str()));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_keeps_a_good_certificate_only_when_the_crl_says_it_is_not_revoked() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();
        let files = pki_common::ca::enroll::KeyFiles {
            key: dir.path().join("client.key"),
            cert: dir.path().join("client.pem"),
        };
        let token = pki.token(&["client1.pki.test"], Profile::Client);
        let first = pki
            .client_enroll_into(&files, "client1.pki.test", &token)
            .await
            .unwrap();
        // Good and not revoked: kept, no token spent.
        let kept = pki
            .client_enroll_into(&files, "client1.pki.test", "unused")
            .await
            .unwrap();
        assert_eq!(kept.info.serial_hex, first.info.serial_hex);
        // Revoked: not kept; the (bogus) token is then refused by the CA.
        pki.ca
            .revoke(&first.info.serial_hex, Reason::KeyCompromise)
            .unwrap();
        pki.ca.publish_crl().unwrap();
        let err = pki
            .client_enroll_into(&files, "client1.pki.test", "unused")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Enroll(EnrollError::Refused { status: 401, .. })
            ),
            "{err}"
        );
    })
    .await
}

//! Phase 1 at the application server: enroll, reuse, start order.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use pki_common::ca::enroll::Retry;
use pki_common::cert::CertInfo;
use pki_common::cert::Profile;
use pki_common::files;
use pki_server::identity::{Enrollment, IdentityError};
use pki_server::{AppServer, ServerError};
use pki_tests::{
    app_token, bind_ca, bounded, free_port, offline_ca, openssl_ok, AppFixture, TestPki,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_makes_its_own_key_enrolls_and_then_reuses() {
    bounded(async {
        let AppFixture { pki, server } = AppFixture::start().await;
        let dir = server.certs_dir();
        let key = dir.join("server.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Standard PKCS#8 PEM that openssl reads.
        assert!(std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        openssl_ok(&["pkey", "-in", key.to_str().unwrap(), "-noout"]);
        let first = CertInfo::parse(&files::read_cert(&dir.join("server.pem")).unwrap()).unwrap();
        assert_eq!(first.names(), vec!["app.pki.test".to_string()]);
        // The certificate the CA recorded is the one the server holds.
        assert!(pki
            .ca
            .ledger()
            .certificates()
            .unwrap()
            .iter()
            .any(|r| r.serial_hex == first.serial_hex));

        // A restart without a token reuses the still-valid certificate.
        let config = pki.server_config(&dir, None);
        let again = AppServer::start(config).await.unwrap();
        assert_eq!(again.shared().identity().info.serial_hex, first.serial_hex);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_usable_certificate_the_server_asks_for_a_token() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();
        // No root at all.
        let err = AppServer::start(pki.server_config(dir.path(), None))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ServerError::Identity(IdentityError::NoRoot(_))),
            "{err}"
        );
        // A root but no certificate and no token.
        std::fs::copy(pki.root_path(), dir.path().join("ca.pem")).unwrap();
        let err = AppServer::start(pki.server_config(dir.path(), None))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ServerError::Identity(IdentityError::NeedToken { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains("pki-ca token --name app.pki.test"),
            "{err}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_root_is_not_reused() {
    bounded(async {
        let AppFixture { pki, server } = AppFixture::start().await;
        let dir = server.certs_dir();
        // The server now trusts a different root: its certificate no longer chains.
        let other = TestPki::start().await;
        std::fs::copy(other.root_path(), dir.join("ca.pem")).unwrap();
        let err = AppServer::start(pki.server_config(&dir, None)).await.err().unwrap();
        assert!(
            matches!(&err, ServerError::Identity(IdentityError::NeedToken { reason, .. }) if reason.contains("chain")),
            "{err}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_order_does_not_matter_the_server_waits_for_the_ca() {
    bounded(async {
        let ca_dir = tempfile::tempdir().unwrap();
        let (paths, ca) = offline_ca(ca_dir.path());
        let ca = Arc::new(ca);
        let token = app_token(&ca, Duration::from_secs(600));
        let port = free_port();
        let server_dir = tempfile::tempdir().unwrap();
        std::fs::copy(paths.root_cert(), server_dir.path().join("ca.pem")).unwrap();
        let config = pki_server::ServerConfig {
            listener: pki_server::ListenOptions::on("127.0.0.1:0".parse().unwrap()),
            certs_dir: server_dir.path().to_path_buf(),
            enrollment: Enrollment {
                ca_url: format!("https://127.0.0.1:{port}"),
                ca_name: None,
                token: Some(token),
                retry: Retry {
                    deadline: Duration::from_secs(20),
                    initial_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(200),
                },
            },
            ..pki_server::ServerConfig::default()
        };
        // The server starts first, while nothing listens on the CA's port.
        let server = tokio::spawn(AppServer::start(config));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !server.is_finished(),
            "the server gave up instead of retrying"
        );
        let ca_server = bind_ca(ca, format!("127.0.0.1:{port}").parse().unwrap())
            .await
            .unwrap();
        let (_stop, shutdown) = pki_common::shutdown::channel();
        tokio::spawn(ca_server.run(shutdown));
        let server = server.await.unwrap().unwrap();
        assert!(server
            .shared()
            .identity()
            .info
            .names()
            .contains(&"app.pki.test".to_string()));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gives_up_at_its_deadline_with_a_clear_error() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = pki.server_dir();
        let mut config = pki.server_config(
            dir.path(),
            Some(pki.token(&["app.pki.test"], Profile::Server)),
        );
        config.enrollment.ca_url = format!("https://127.0.0.1:{}", free_port());
        config.enrollment.retry = Retry {
            deadline: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
        };
        let err = AppServer::start(config).await.err().unwrap();
        assert!(
            matches!(
                err,
                ServerError::Identity(IdentityError::Enroll(
                    pki_common::ca::enroll::EnrollError::Unreachable { .. }
                ))
            ),
            "{err}"
        );
    })
    .await
}

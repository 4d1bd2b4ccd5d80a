//! Pre-issuance linting through the HTTPS API: a certificate that breaks
//! the CA's own profile (injected with the test-only
//! `Ca::inject_fault`) is answered with a 500 `lint_failed` naming the
//! lint, nothing is recorded in the ledger, the token stays usable, the
//! audit log names the lint and `pki_ca_lint_failures_total` moves.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pki_ca::authority::init_root;
use pki_ca::lint::Fault;
use pki_ca::policy::IssuancePolicy;
use pki_ca::serve::{CaServer, ServeOptions};
use pki_ca::{Ca, CaPaths};
use pki_common::ca::api;
use pki_common::ca::client::CaClient;
use pki_common::cert::Profile;
use pki_common::shutdown;
use pki_tests::observed::{http_get, sample};
use pki_tests::{bounded, csr_for, free_port};
use rcgen::{BasicConstraints, IsCa};

/// Everything logged in this test binary, to find the audit lines in.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> Self {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_failing_a_lint_is_a_500_lint_failed_and_is_not_recorded() {
    let log = Captured::install();
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path());
        init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
        let ca = Arc::new(Ca::open(&paths, IssuancePolicy::default()).unwrap());
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut opts = ServeOptions::on("127.0.0.1:0".parse().unwrap());
        opts.metrics_listen = Some(metrics);
        // The CA's own certificate is issued (and linted) here, unbroken.
        let server = CaServer::bind(ca.clone(), opts).await.unwrap();
        let url = format!("https://{}", server.local_addr().unwrap());
        let (_stop, shutdown) = shutdown::channel();
        tokio::spawn(server.run(shutdown));
        let recorded = ca.ledger().certificates().unwrap().len();
        let client = CaClient::new(&url, None, &ca.root().cert).unwrap();
        let token = ca
            .mint_token(
                &["app.pki.test".into()],
                Profile::Server,
                Duration::from_secs(900),
            )
            .unwrap()
            .to_string();
        let csr = csr_for("app.pki.test");

        // A profile gone wrong: CA:TRUE on a leaf.
        ca.inject_fault(Some(Fault::Draft(Arc::new(|d| {
            d.params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
        }))));
        let refused = client
            .post(api::SIGN, Some(&token), "application/pkcs10", csr.clone())
            .await
            .unwrap();
        ca.inject_fault(None);

        assert_eq!(refused.status.as_u16(), 500);
        let body = refused.error_body().expect("a JSON problem document");
        assert_eq!(body.error, "lint_failed");
        assert!(body.detail.contains("basic_constraints"), "{}", body.detail);
        assert!(body.detail.contains("cA is TRUE"), "{}", body.detail);
        assert_eq!(
            ca.ledger().certificates().unwrap().len(),
            recorded,
            "the refused certificate was recorded"
        );
        assert!(
            log.text()
                .contains("audit: pre-issuance lint basic_constraints failed"),
            "no audit line names the lint:\n{}",
            log.text()
        );
        let (status, text) = http_get(metrics, "/metrics").await;
        assert_eq!(status, 200);
        let lint = r#"pki_ca_lint_failures_total{lint="basic_constraints"}"#;
        assert_eq!(sample(&text, lint), Some(1.0), "{text}");
        let refused = r#"pki_ca_requests_refused_total{code="lint_failed"}"#;
        assert_eq!(sample(&text, refused), Some(1.0), "{text}");

        // The token was not spent: with the fault gone it issues.
        let issued = client
            .post(api::SIGN, Some(&token), "application/pkcs10", csr)
            .await
            .unwrap();
        assert_eq!(issued.status.as_u16(), 200);
        assert_eq!(ca.ledger().certificates().unwrap().len(), recorded + 1);
    })
    .await
}

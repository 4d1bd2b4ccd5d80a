//! A standard ACME client against the CA: certbot (Debian's package,
//! which `make test` and `.ci/run` install when it is missing) gets,
//! renews and revokes a certificate over http-01, and shows the CA's
//! refusal of a name outside `--acme-allow`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use pki_ca::acme::AcmeConfig;
use pki_ca::publish::PublicSource;
use pki_tests::{bounded, free_port, TestPki};

const NAME: &str = "app.pki.test";

struct Certbot<'a> {
    pki: &'a TestPki,
    dir: &'a Path,
    port: u16,
}

impl Certbot<'_> {
    /// Runs certbot with its state in `dir`, trusting the CA's root for
    /// its own HTTPS (REQUESTS_CA_BUNDLE), as docs/acme.md shows.
    async fn run(&self, args: &[&str]) -> Output {
        let d = |sub: &str| self.dir.join(sub).to_string_lossy().into_owned();
        let server = format!("{}/acme/directory", self.pki.ca_url());
        let port = self.port.to_string();
        let mut cmd = tokio::process::Command::new("certbot");
        cmd.args(args)
            .args([
                "--config-dir",
                &d("config"),
                "--work-dir",
                &d("work"),
                "--logs-dir",
                &d("logs"),
            ])
            .args(["--server", &server, "--non-interactive", "--agree-tos"])
            .arg("--register-unsafely-without-email")
            .args(["--http-01-port", &port, "--http-01-address", "127.0.0.1"])
            .env("REQUESTS_CA_BUNDLE", self.pki.root_path());
        tokio::time::timeout(Duration::from_secs(50), cmd.output())
            .await
            .expect("certbot finished in time")
            .expect("certbot runs (apt-get install certbot)")
    }

    /// certbot's output and the end of its log, for a failure message.
    fn report(&self, out: &Output) -> String {
        let log =
            std::fs::read_to_string(self.dir.join("logs/letsencrypt.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{}\nlog (end):\n{}", text(out), tail.join("\n"))
    }

    fn cert_path(&self) -> String {
        self.dir
            .join(format!("config/live/{NAME}/cert.pem"))
            .to_string_lossy()
            .into_owned()
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn acme_ca(http_port: u16) -> TestPki {
    let mut config = AcmeConfig {
        allow: vec!["pki.test".into()],
        http_port,
        ..AcmeConfig::default()
    };
    config
        .resolve
        .insert(NAME.into(), "127.0.0.1".parse().unwrap());
    TestPki::start_serving(|opts| opts.acme = Some(config)).await
}

fn serial_of(pem_path: &str) -> String {
    let pem = std::fs::read(pem_path).unwrap();
    let der = pki_common::files::pem_or_der::<rustls::pki_types::CertificateDer>(&pem).unwrap();
    pki_common::cert::CertInfo::parse(&der).unwrap().serial_hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_gets_renews_and_revokes_a_certificate_over_http_01() {
    bounded(async {
        let port = free_port();
        let pki = acme_ca(port).await;
        let dir = tempfile::tempdir().unwrap();
        let certbot = Certbot {
            pki: &pki,
            dir: dir.path(),
            port,
        };

        let out = certbot.run(&["certonly", "--standalone", "-d", NAME]).await;
        assert!(out.status.success(), "{}", certbot.report(&out));
        let first = serial_of(&certbot.cert_path());
        let record = pki
            .ca
            .ledger()
            .certificate(&first)
            .unwrap()
            .expect("the ledger lists it");
        assert_eq!(record.names, vec![NAME.to_string()]);
        assert!(record.acme_order.is_some());
        // It chains to the root, as a strict TLS client checks it.
        let fullchain = dir.path().join(format!("config/live/{NAME}/fullchain.pem"));
        let verified = pki_tests::csr::openssl_verify_server(
            pki.root_path().to_str().unwrap(),
            fullchain.to_str().unwrap(),
        );
        assert!(verified.contains("OK"), "{verified}");

        let out = certbot
            .run(&["renew", "--force-renewal", "--no-random-sleep-on-renew"])
            .await;
        assert!(out.status.success(), "{}", certbot.report(&out));
        let second = serial_of(&certbot.cert_path());
        assert_ne!(first, second, "renewal issued a new certificate");
        assert!(pki.ca.ledger().certificate(&second).unwrap().is_some());

        let out = certbot
            .run(&[
                "revoke",
                "--cert-path",
                &certbot.cert_path(),
                "--no-delete-after-revoke",
            ])
            .await;
        assert!(out.status.success(), "{}", certbot.report(&out));
        let revoked = pki.ca.ledger().certificate(&second).unwrap().unwrap();
        assert!(revoked.revoked.is_some());
        // The next CRL of its issuer lists it.
        let mut listed = false;
        for _ in 0..100 {
            if let Some(der) = pki.ca.crl_der(&revoked.issuer_id) {
                let file = pki_tests::csr::write_file(pki.dir(), "acme.crl", &der);
                let out = std::process::Command::new("openssl")
                    .args(["crl", "-inform", "DER", "-in", &file, "-noout", "-text"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout)
                    .to_lowercase()
                    .contains(&second)
                {
                    listed = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(listed, "serial {second} is on the next CRL");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_shows_the_refusal_of_a_name_outside_the_allowed_ones() {
    bounded(async {
        let port = free_port();
        let pki = acme_ca(port).await;
        let dir = tempfile::tempdir().unwrap();
        let certbot = Certbot {
            pki: &pki,
            dir: dir.path(),
            port,
        };
        let out = certbot
            .run(&["certonly", "--standalone", "-d", "www.example.com"])
            .await;
        let all = certbot.report(&out);
        assert!(!out.status.success(), "{all}");
        // certbot prints the problem; Debian bookworm's certbot 2.1 on
        // Python 3.11 instead crashes while printing any ACME error
        // ("AttributeError: can't set attribute", certbot#9539, fixed in
        // 2.2), and the problem document is then in its log.
        let log = std::fs::read_to_string(dir.path().join("logs/letsencrypt.log")).unwrap();
        let shown = format!("{}{log}", String::from_utf8_lossy(&out.stderr));
        assert!(
            shown.contains("urn:ietf:params:acme:error:rejectedIdentifier"),
            "{all}"
        );
        assert!(
            shown.contains("www.example.com is outside the names this CA issues for by ACME"),
            "{all}"
        );
        assert!(pki
            .ca
            .ledger()
            .certificates()
            .unwrap()
            .iter()
            .all(|r| r.acme_order.is_none()));
    })
    .await;
}

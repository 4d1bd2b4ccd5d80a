//! Issue 12, items 12 and 13, through the binaries: rustls's own log lines
//! with `RUST_LOG=rustls=debug`, `--log-format json`, the peer address in
//! the CA's audit lines, `make run-all`'s prefixed lines and summary, and
//! the `/metrics` and `/health` endpoints of both daemons with counters
//! that move.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pki_common::ca::api;
use pki_common::ca::client::CaClient;
use pki_tests::observed::{http_get, sample, send_junk, text, Daemons};
use pki_tests::{binary, bounded, csr_for, free_port};

const MEMO: &str = "take cis3319 class this morning\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_rustls_debug_shows_what_rustls_says() {
    bounded(async {
        let mut daemons = Daemons::start(&[], &[], &[]).await;
        let quiet = daemons.client(&[], &[]);
        assert!(quiet.status.success(), "{}", text(&quiet.stderr));
        assert!(
            !text(&quiet.stderr).contains("DEBUG"),
            "{}",
            text(&quiet.stderr)
        );

        let loud = daemons.client(&[], &[("RUST_LOG", "info,rustls=debug")]);
        assert!(loud.status.success(), "{}", text(&loud.stderr));
        assert!(
            text(&loud.stderr).lines().any(|l| l.contains(" DEBUG ")),
            "rustls's debug lines are missing:\n{}",
            text(&loud.stderr)
        );
        // In JSON, each line names its source: the lines come from rustls.
        let json = daemons.client(
            &["--log-format", "json"],
            &[("RUST_LOG", "info,rustls=debug")],
        );
        assert!(json.status.success(), "{}", text(&json.stderr));
        let from_rustls = json_lines(&text(&json.stderr))
            .into_iter()
            .filter(|l| {
                l["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("rustls"))
            })
            .count();
        assert!(from_rustls > 0, "{}", text(&json.stderr));
        daemons.stop();
    })
    .await
}

/// Every line of `stderr`, parsed as a JSON object (the test fails on a
/// line that is not one).
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(value.is_object(), "{line}");
            assert!(
                value["timestamp"].is_string() && value["level"].is_string(),
                "{line}"
            );
            value
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_gives_one_json_object_per_line_in_all_three_programs() {
    bounded(async {
        // The CA by flag, the server by PKI_LOG_FORMAT, the client by flag.
        let mut daemons = Daemons::start(
            &["--log-format", "json"],
            &[],
            &[("PKI_LOG_FORMAT", "json")],
        )
        .await;
        let client = daemons.client(&["--log-format", "json"], &[]);
        assert!(client.status.success(), "{}", text(&client.stderr));
        assert_eq!(text(&client.stdout), MEMO);
        let (ca_log, server_log) = daemons.stop();

        let client = json_lines(&text(&client.stderr));
        assert!(client.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("phase 3 · step 8:"))));
        let server = json_lines(&server_log);
        assert!(server.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("phase 3 · step 8: answered"))));
        // The CA's audit line of the server's enrollment carries the
        // peer address as a key of its own.
        let ca = json_lines(&ca_log);
        let issued = ca
            .iter()
            .find(|l| {
                l["message"].as_str().is_some_and(|m| {
                    m.starts_with("audit: issued serial") && m.contains("app.pki.test (token")
                })
            })
            .unwrap_or_else(|| panic!("no audit line for the enrollment:\n{ca_log}"));
        assert_eq!(issued["target"], "audit");
        assert!(
            issued["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{issued}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_counts_issued_and_refused_and_names_the_peer_in_its_audit_lines() {
    bounded(async {
        let mut daemons = Daemons::start(&[], &[], &[]).await;
        // The server's enrollment was one issuance; now one refusal.
        let ca = CaClient::new(&daemons.ca_url(), None, &daemons.root()).unwrap();
        let refused = ca
            .post(
                api::SIGN,
                Some("not-a-token"),
                "application/pkcs10",
                csr_for("x.pki.test"),
            )
            .await
            .unwrap();
        assert_eq!(refused.status.as_u16(), 401);
        let code = serde_json::from_slice::<api::ErrorBody>(&refused.body)
            .unwrap()
            .error;

        let (status, metrics) = http_get(daemons.ca_metrics, "/metrics").await;
        assert_eq!(status, 200, "{metrics}");
        assert_eq!(
            sample(
                &metrics,
                r#"pki_ca_certificates_issued_total{operation="enroll"}"#
            ),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(
                &metrics,
                &format!(r#"pki_ca_requests_refused_total{{code="{code}"}}"#)
            ),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "pki_ca_issuance_duration_seconds_count"),
            Some(1.0),
            "{metrics}"
        );
        assert!(sample(&metrics, "pki_ca_crl_number").is_some_and(|n| n >= 1.0));
        assert!(sample(&metrics, "pki_ca_crl_age_seconds").is_some_and(|n| n >= 0.0));
        assert_eq!(
            sample(&metrics, "pki_ca_connections_refused_at_cap_total"),
            Some(0.0)
        );
        let (status, health) = http_get(daemons.ca_metrics, "/health").await;
        assert_eq!(status, 200);
        assert!(health.starts_with("ok: serving; CRL #"), "{health}");

        let (ca_log, _) = daemons.stop();
        for prefix in [
            "for app.pki.test (token ",
            &format!("audit: refused CSR (token -): {code}:"),
        ] {
            let line = ca_log
                .lines()
                .find(|l| l.contains(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line:\n{ca_log}"));
            assert!(line.contains(" peer=127.0.0.1:"), "{line}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_counts_sessions_requests_alerts_and_refusals_at_the_cap() {
    bounded(async {
        let mut daemons = Daemons::start(&[], &["--max-connections", "2"], &[]).await;
        let (status, health) = http_get(daemons.server_metrics, "/health").await;
        assert_eq!(status, 200);
        assert!(
            health.starts_with("ok: serving as app.pki.test; certificate "),
            "{health}"
        );

        let client = daemons.client(&[], &[]);
        assert_eq!(text(&client.stdout), MEMO, "{}", text(&client.stderr));
        send_junk(daemons.server_addr, &daemons.root()).await;
        let (_, metrics) = http_get(daemons.server_metrics, "/metrics").await;
        assert_eq!(
            sample(&metrics, "pki_server_sessions_granted_total"),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "pki_server_sessions_resumed_total"),
            Some(0.0)
        );
        assert_eq!(
            sample(&metrics, r#"pki_server_requests_total{status="ok"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&metrics, r#"pki_server_alerts_total{code="BadFrame"}"#),
            Some(1.0),
            "{metrics}"
        );
        assert!(sample(&metrics, "pki_server_crl_number").is_some_and(|n| n >= 1.0));

        // Two connections that say nothing hold both slots; the next ones
        // are closed at once, and counted.
        let _held = [
            tokio::net::TcpStream::connect(daemons.server_addr)
                .await
                .unwrap(),
            tokio::net::TcpStream::connect(daemons.server_addr)
                .await
                .unwrap(),
        ];
        let name = "pki_server_connections_refused_at_cap_total";
        let mut refused = 0.0;
        for _ in 0..50 {
            let _extra = tokio::net::TcpStream::connect(daemons.server_addr).await;
            let (_, metrics) = http_get(daemons.server_metrics, "/metrics").await;
            refused = sample(&metrics, name).unwrap_or(0.0);
            if refused >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            refused >= 1.0,
            "no connection was counted as refused at the cap"
        );
        daemons.stop();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_prefixes_every_line_and_ends_with_a_summary() {
    let certs = tempfile::tempdir().unwrap();
    let out = run_all(certs.path());
    let out = bounded(out).await.unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, MEMO);
    for line in stderr.lines() {
        assert!(
            ["[ca]", "[server]", "[client]", "[run-all]"]
                .iter()
                .any(|p| line.starts_with(p)),
            "a line without a prefix: {line:?}\n{stderr}"
        );
    }
    // The programs' log lines carry millisecond timestamps.
    let stamped = stderr
        .lines()
        .filter(|l| l.contains(" INFO "))
        .all(|l| millisecond_stamp(l.split_whitespace().nth(1).unwrap_or_default()));
    assert!(stamped, "{stderr}");
    // The client's enrollment has its own label, its CRL check too: on a
    // second run the client
    // checks the certificate it holds against the CRL before keeping it.
    let again = bounded(run_all(certs.path())).await.unwrap();
    let again_err = text(&again.stderr);
    assert!(again.status.success(), "{again_err}");
    assert!(
        again_err
            .lines()
            .any(|l| l.starts_with("[client]")
                && l.contains("client enrollment · revocation: CRL #")),
        "{again_err}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("[run-all] OK — CA on 127.0.0.1:")
            && last.contains(", server app.pki.test (serial ")
            && last.contains(", client client1.pki.test (serial ")
            && last.contains(r#"— memo: "take cis3319 class this morning" in "#)
            && last.ends_with(" s"),
        "{last}"
    );
}

/// Whether `stamp` reads `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn millisecond_stamp(stamp: &str) -> bool {
    let b = stamp.as_bytes();
    b.len() == 24
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && b[20..23].iter().all(u8::is_ascii_digit)
}

/// `scripts/run-all.sh` as `make run-all` runs it, with the built binaries.
fn run_all(certs: &Path) -> tokio::task::JoinHandle<std::process::Output> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = binary("pki-ca").parent().unwrap().to_path_buf();
    let certs = certs.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("scripts/run-all.sh")
            .current_dir(repo)
            .env("BIN", bin)
            .env("CERTS", &certs)
            // The offline root, kept inside the temporary directory.
            .env("ROOT_DIR", certs.join("offline-root"))
            .env("CA_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("SERVER_LISTEN", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
}

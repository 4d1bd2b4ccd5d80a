//! The three binaries as processes, the way `make run-all` runs them, and
//! TLS interoperability with openssl in both directions.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pki_client::Connection;
use pki_common::cert::Profile;
use pki_common::files;
use pki_tests::refusals::invalid_certificate;
use pki_tests::{
    binary, bounded, free_port, openssl, wait_for_port, write_identity_files, Reaped, TestPki,
};
use rustls::CertificateError;

fn spawn(cmd: &mut Command) -> Reaped {
    Reaped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_binaries_run_the_whole_flow_and_a_second_run_reuses() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().to_str().unwrap();
        let ca_port = free_port();
        let server_port = free_port();
        let ca_listen = format!("127.0.0.1:{ca_port}");
        let server_listen = format!("127.0.0.1:{server_port}");

        let init = run(Command::new(binary("pki-ca")).args(["--dir", certs, "init"]));
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );

        // Two rounds, as `make run-all` twice in a row: the second reuses the
        // root and the server certificate.
        let mut serials = Vec::new();
        for _ in 0..2 {
            let _ca = spawn(
                Command::new(binary("pki-ca"))
                    .args(["--dir", certs, "serve", "--listen", &ca_listen]),
            );
            wait_for_port(ca_listen.parse().unwrap(), Duration::from_secs(20)).await;
            let token = run(Command::new(binary("pki-ca")).args([
                "--dir",
                certs,
                "token",
                "--name",
                "app.pki.test",
            ]));
            assert!(token.status.success());
            let token = String::from_utf8(token.stdout).unwrap();
            assert_eq!(
                token.lines().count(),
                1,
                "the token is printed alone on stdout"
            );
            let _server = spawn(Command::new(binary("pki-server")).args([
                "--dir",
                certs,
                "--listen",
                &server_listen,
                "--ca-url",
                &format!("https://{ca_listen}"),
                "--token",
                token.trim(),
            ]));
            wait_for_port(server_listen.parse().unwrap(), Duration::from_secs(20)).await;
            let client = run(Command::new(binary("pki-client")).args([
                "--server",
                &server_listen,
                "--ca",
                &format!("{certs}/ca.pem"),
                "--ca-url",
                &format!("https://{ca_listen}"),
                "request",
                "memo",
            ]));
            let stderr = String::from_utf8_lossy(&client.stderr);
            assert!(client.status.success(), "{stderr}");
            assert_eq!(
                String::from_utf8_lossy(&client.stdout),
                "take cis3319 class this morning\n"
            );
            // The first run registers (steps 3 to 6); the second resumes
            // that session with the ticket the first kept (steps 3R, 4R).
            let steps: &[&str] = if serials.is_empty() {
                &["3", "4", "5", "6", "7", "8"]
            } else {
                &["3R", "4R", "7", "8"]
            };
            for step in steps {
                assert!(
                    stderr.contains(&format!("step {step}:")),
                    "step {step} not narrated:\n{stderr}"
                );
            }
            let cert = files::read_cert(&dir.path().join("server.pem")).unwrap();
            serials.push(pki_common::cert::CertInfo::parse(&cert).unwrap().serial_hex);
        }
        assert_eq!(
            serials[0], serials[1],
            "the second run should reuse the server certificate"
        );

        // A client that trusts another CA exits non-zero with a one-line reason.
        let _ca = spawn(
            Command::new(binary("pki-ca")).args(["--dir", certs, "serve", "--listen", &ca_listen]),
        );
        let _server = spawn(Command::new(binary("pki-server")).args([
            "--dir",
            certs,
            "--listen",
            &server_listen,
        ]));
        wait_for_port(server_listen.parse().unwrap(), Duration::from_secs(20)).await;
        let other = tempfile::tempdir().unwrap();
        let other_certs = other.path().to_str().unwrap();
        assert!(
            run(Command::new(binary("pki-ca")).args(["--dir", other_certs, "init"]))
                .status
                .success()
        );
        let refused = run(Command::new(binary("pki-client")).args([
            "--server",
            &server_listen,
            "--ca",
            &format!("{other_certs}/ca.pem"),
            "--insecure-skip-revocation",
            "request",
            "memo",
        ]));
        assert!(!refused.status.success());
        assert!(refused.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        let last = stderr
            .lines()
            .find(|l| l.starts_with("pki-client: "))
            .unwrap_or_default();
        assert!(last.contains("unknown issuer"), "{stderr}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_completes_a_tls13_handshake_with_the_server() {
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki.start_server(|_| {}).await;
        let root = pki.root_path();
        let connect = server.addr.to_string();
        let out = tokio::task::spawn_blocking(move || {
            let mut child = Command::new("openssl")
                .args([
                    "s_client",
                    "-tls1_3",
                    "-connect",
                    &connect,
                    "-servername",
                    "app.pki.test",
                    "-CAfile",
                    root.to_str().unwrap(),
                    "-verify_return_error",
                    "-verify_hostname",
                    "app.pki.test",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("openssl must be installed");
            // Closing stdin makes s_client exit after the handshake.
            drop(child.stdin.take());
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
        assert!(stdout.contains("TLSv1.3"), "{stdout}");
    })
    .await
}

/// Runs `openssl s_server` presenting `cert`/`key` on a free port.
async fn s_server(dir: &Path, cert: &str, chain: &str, key: &str) -> (Reaped, SocketAddr) {
    let port = free_port();
    let child = spawn(
        Command::new("openssl")
            .args([
                "s_server",
                "-tls1_3",
                "-accept",
                &port.to_string(),
                "-cert",
                cert,
                "-cert_chain",
                chain,
                "-key",
                key,
                "-www",
            ])
            .current_dir(dir),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr, Duration::from_secs(20)).await;
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_client_verifies_openssl_s_server_by_our_ca_and_refuses_another_ca() {
    bounded(async {
        let _ = openssl(&["version"]);
        let pki = TestPki::start().await;
        let other = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();
        for (tag, ca, expect_ok) in [("ours", &pki, true), ("theirs", &other, false)] {
            let enrolled = ca.enroll_as(&["app.pki.test"], Profile::Server).await;
            let (cert, key) = write_identity_files(dir.path(), tag, &enrolled);
            // s_server's -cert takes the leaf alone; the intermediate that
            // issued it goes in -cert_chain, so the client, which trusts
            // only the root, is sent the whole chain to verify.
            let chain = dir.path().join(format!("{tag}-chain.pem"));
            let intermediates: String = enrolled
                .intermediates
                .iter()
                .map(files::cert_to_pem)
                .collect();
            files::write_public(&chain, &intermediates).unwrap();
            let chain = chain.to_str().unwrap();
            let (_child, addr) = s_server(dir.path(), &cert, chain, &key).await;
            let result = Connection::connect(&pki.client_config(addr)).await;
            if expect_ok {
                let conn = result
                    .unwrap_or_else(|e| panic!("TLS verification against s_server failed: {e}"));
                conn.close().await;
            } else {
                let err = result.err().unwrap();
                assert!(
                    matches!(
                        invalid_certificate(&err),
                        Some(CertificateError::UnknownIssuer)
                    ),
                    "{err}"
                );
            }
        }
    })
    .await
}

/// Runs `scripts/run-all.sh` as `make run-all` does, with the built
/// binaries, certificates in `certs` and free ports, off the async workers.
fn run_all_script(
    certs: &Path,
    extra: &[(&'static str, &'static str)],
) -> tokio::task::JoinHandle<std::process::Output> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = binary("pki-ca").parent().unwrap().to_path_buf();
    let (certs, extra) = (certs.to_path_buf(), extra.to_vec());
    tokio::task::spawn_blocking(move || {
        run(Command::new("bash")
            .arg("scripts/run-all.sh")
            .current_dir(repo)
            .env("BIN", bin)
            .env("CERTS", &certs)
            // The offline root, kept inside the temporary directory.
            .env("ROOT_DIR", certs.join("offline-root"))
            .env("CA_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("SERVER_LISTEN", format!("127.0.0.1:{}", free_port()))
            .envs(extra))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_all_script_narrates_eight_steps_and_prints_the_memo() {
    let certs = tempfile::tempdir().unwrap();
    let out = run_all_script(certs.path(), &[]);
    let out = bounded(out).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "take cis3319 class this morning\n");
    // The root key is offline: encrypted, outside the certs the CA and the
    // parties use, and not needed by them.
    let root_key = std::fs::read_to_string(certs.path().join("offline-root/root.key")).unwrap();
    assert!(root_key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert!(!certs.path().join("root.key").exists() && !certs.path().join("ca.key").exists());
    // Both sides authenticated by certificate.
    assert!(
        stderr.contains("server listening on") && stderr.contains("client certificates required"),
        "{stderr}"
    );
    assert!(stderr.contains("authenticated by certificate"), "{stderr}");
    for step in 1..=8 {
        assert!(
            stderr.contains(&format!("step {step}:")),
            "step {step} not narrated:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_demo_shows_the_client_refusing_the_revoked_server() {
    let certs = tempfile::tempdir().unwrap();
    let out = run_all_script(certs.path(), &[("REVOKE", "keyCompromise")]);
    let out = bounded(out).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("pki-client: server certificate revoked (serial ")
            && stderr.contains(", keyCompromise)"),
        "{stderr}"
    );
}

#[test]
fn pki_ca_revoke_and_list_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().to_str().unwrap();
    let pki_ca = |args: &[&str]| {
        let mut all = vec!["--dir", certs];
        all.extend_from_slice(args);
        run(Command::new(binary("pki-ca")).args(all))
    };
    assert!(pki_ca(&["init"]).status.success());
    // Issue one certificate through the library, as the CA would.
    let ca = pki_ca::Ca::open(&pki_ca::CaPaths::new(dir.path()), Default::default()).unwrap();
    let (cert, _) = ca
        .issue_service_certificate(&["app.pki.test".into()])
        .unwrap();
    let serial = cert.info.serial_hex.clone();
    drop(ca);

    let out = pki_ca(&[
        "revoke",
        "--serial",
        &serial.to_uppercase(),
        "--reason",
        "superseded",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("ca.crl.pem").exists());

    let again = pki_ca(&["revoke", "--serial", &serial]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already revoked (superseded"));
    let unknown = pki_ca(&["revoke", "--serial", "abcdef"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no certificate with serial abcdef"));
    let bad_reason = pki_ca(&["revoke", "--serial", &serial, "--reason", "boredom"]);
    // clap refuses it, listing the reasons (issue 12, item 7).
    assert!(String::from_utf8_lossy(&bad_reason.stderr).contains("invalid value 'boredom'"));

    let list = pki_ca(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["serial"] == serial.as_str())
        .unwrap();
    assert_eq!(row["status"], "revoked");
    assert_eq!(row["revocation_reason"], "superseded");
    assert_eq!(row["names"], serde_json::json!(["app.pki.test"]));
    let table = String::from_utf8(pki_ca(&["list"]).stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&serial) && l.contains("revoked (superseded)")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_client_enroll_and_renew_from_the_command_line() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client.key");
        let client = |args: Vec<String>| {
            let mut all: Vec<String> = vec![
                "--ca".into(),
                pki.root_path().to_string_lossy().into_owned(),
                "--ca-url".into(),
                pki.ca_url(),
                "--cert".into(),
                cert.to_string_lossy().into_owned(),
                "--key".into(),
                key.to_string_lossy().into_owned(),
            ];
            all.extend(args);
            tokio::task::spawn_blocking(move || run(Command::new(binary("pki-client")).args(all)))
        };
        let serial = |p: &Path| {
            pki_common::cert::CertInfo::parse(&files::read_cert(p).unwrap())
                .unwrap()
                .serial_hex
        };

        let token = pki.token(&["client1.pki.test"], Profile::Client);
        let out = client(vec!["enroll".into(), "--token".into(), token])
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let first = serial(&cert);

        let out = client(vec!["renew".into()]).await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let second = serial(&cert);
        assert_ne!(first, second);

        pki.ca
            .revoke(&second, pki_common::revocation::Reason::KeyCompromise)
            .unwrap();
        let out = client(vec!["renew".into()]).await.unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("certificate_revoked") && stderr.contains("new token"),
            "{stderr}"
        );
    })
    .await
}

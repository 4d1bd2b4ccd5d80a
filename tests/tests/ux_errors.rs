//! Issue 12, items 9 to 11: the error a user reads, through the real
//! binaries (and a real HTTPS request for the API).
//!
//! Every listed mistake must end in `program: what failed: cause` once,
//! the hint on a `hint:` line naming the flag or file to change, exit
//! status 1, no Rust `Debug` dump, no sentence said twice, and no
//! backtrace even though `RUST_BACKTRACE=1` is set (only `PKI_BACKTRACE=1`
//! asks for one).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pki_common::cert::Profile;
use pki_tests::{binary, bounded, free_port, wait_for_port, write_identity_files, Reaped, TestPki};

/// Runs a binary with `RUST_BACKTRACE=1`, as many Rust users' shells set
/// it, off the async workers.
async fn run(program: &str, args: Vec<String>, dir: &Path) -> Output {
    let exe = binary(program);
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(&args)
            .current_dir(dir)
            .env("RUST_BACKTRACE", "1")
            .env_remove("PKI_BACKTRACE")
            .env_remove("PKI_TOKEN")
            .env_remove("PKI_CERTS_DIR")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The error report in `out`: its `program: …` line and its hints.
/// Asserts the shape every report must have and returns (message, hints).
fn report(out: &Output, program: &str) -> (String, Vec<String>) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let prefix = format!("{program}: ");
    let messages: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(messages.len(), 1, "one error line expected:\n{stderr}");
    let hints: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("hint: "))
        .map(str::to_owned)
        .collect();
    for banned in [
        "Caused by",
        "Stack backtrace",
        "backtrace",
        "Error: ",
        "{ ",
        "Context",
        "DnsName(",
        "Der(",
    ] {
        assert!(!stderr.contains(banned), "{banned:?} in:\n{stderr}");
    }
    // No sentence twice: every clause of the report is said once.
    let report = std::iter::once(messages[0].to_string())
        .chain(hints.iter().cloned())
        .collect::<Vec<_>>()
        .join("; ");
    let mut seen = std::collections::HashSet::new();
    for clause in report.split([':', ';', '\n']).map(str::trim) {
        if clause.len() >= 12 {
            assert!(seen.insert(clause), "{clause:?} repeated in:\n{stderr}");
        }
    }
    (messages[0].to_string(), hints)
}

/// A CA serving in this process, with a client certificate enrolled from
/// it into `dir` as client.pem/client.key, and a foreign root as
/// other-ca.pem.
async fn client_setup(dir: &Path) -> TestPki {
    let pki = TestPki::start().await;
    let enrolled = pki.enroll_client("client1.pki.test").await;
    write_identity_files(dir, "client", &enrolled);
    std::fs::copy(pki.root_path(), dir.join("ca.pem")).unwrap();
    let other = TestPki::start().await;
    std::fs::copy(other.root_path(), dir.join("other-ca.pem")).unwrap();
    pki
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_on_the_client_points_at_the_root_not_at_a_new_token() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = client_setup(dir.path()).await;
        let base = [
            "--server",
            "127.0.0.1:1",
            "--ca",
            "other-ca.pem",
            "--ca-url",
            &pki.ca_url(),
            "--cert",
            "client.pem",
            "--key",
            "client.key",
        ];
        // With the client certificate: it does not chain to --ca.
        let out = run(
            "pki-client",
            args(&[&base[..], &["request", "memo"]].concat()),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-client");
        assert!(
            message.contains("client.pem was not issued by the CA root given with --ca"),
            "{message}"
        );
        assert!(!message.contains("needs a new token"), "{message}");
        assert!(hints[0].starts_with("pass the root of the CA that issued it with --ca"));

        // Without one: the CA's own certificate does not chain to --ca.
        let out = run(
            "pki-client",
            args(&[&base[..], &["--no-client-cert", "request", "memo"]].concat()),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-client");
        assert!(message.contains("unknown issuer"), "{message}");
        assert!(
            hints[0].starts_with("the CA at --ca-url was not issued by the root in --ca"),
            "{hints:?}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_others_can_read_gets_chmod_not_a_new_token() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = client_setup(dir.path()).await;
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("client.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(
            "pki-client",
            args(&[
                "--ca-url",
                &pki.ca_url(),
                "--ca",
                "ca.pem",
                "--cert",
                "client.pem",
                "--key",
                "client.key",
                "request",
                "memo",
            ]),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-client");
        assert!(
            message.contains("client.key: private key is accessible to group or others (mode 644)"),
            "{message}"
        );
        assert_eq!(hints, ["run `chmod 600 client.key`"]);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("token"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_url_suggests_the_url_before_skipping_revocation() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        client_setup(dir.path()).await;
        let nobody = format!("https://127.0.0.1:{}", free_port());
        let out = run(
            "pki-client",
            args(&[
                "--ca",
                "ca.pem",
                "--ca-url",
                &nobody,
                "--no-client-cert",
                "request",
                "memo",
            ]),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-client");
        assert!(message.contains("revocation status unknown"), "{message}");
        assert!(message.contains("Connection refused"), "{message}");
        let hint = &hints[0];
        assert!(hint.starts_with("check --ca-url"), "{hint}");
        let url = hint.find("--ca-url").unwrap();
        let skip = hint.find("--insecure-skip-revocation").unwrap();
        assert!(url < skip, "{hint}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_name_points_at_ca_name() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = client_setup(dir.path()).await;
        // `localhost` is not a name on the CA's certificate (ca.pki.test,
        // 127.0.0.1): the real mistake behind "check --name" before.
        let url = format!("https://localhost:{}", pki.ca_addr.port());
        let out = run(
            "pki-client",
            args(&[
                "--ca",
                "ca.pem",
                "--ca-url",
                &url,
                "--no-client-cert",
                "request",
                "memo",
            ]),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-client");
        assert!(
            message.contains("name mismatch (expected localhost"),
            "{message}"
        );
        assert!(
            hints[0].contains("pass a name it carries with --ca-name"),
            "{hints:?}"
        );
        assert!(!hints[0].contains("--name "), "{hints:?}");

        // And --ca-name fixes it: the request now gets past the CA.
        let out = run(
            "pki-client",
            args(&[
                "--ca",
                "ca.pem",
                "--ca-url",
                &url,
                "--ca-name",
                "ca.pki.test",
                "--no-client-cert",
                "--server",
                "127.0.0.1:1",
                "request",
                "memo",
            ]),
            dir.path(),
        )
        .await;
        let (message, _) = report(&out, "pki-client");
        assert!(
            message.contains("cannot connect to 127.0.0.1:1"),
            "{message}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_server_without_ca_pem_names_dir_not_a_ca_flag() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            "pki-server",
            args(&["--dir", "nothere", "--listen", "127.0.0.1:0"]),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-server");
        assert!(
            message.contains("no CA root at nothere/ca.pem"),
            "{message}"
        );
        assert!(hints[0].contains("--dir"), "{hints:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("--ca "));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_server_with_a_foreign_root_names_its_ca_pem() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();
        let other = TestPki::start().await;
        std::fs::copy(other.root_path(), dir.path().join("ca.pem")).unwrap();
        let token = pki.token(&["app.pki.test"], Profile::Server);
        std::fs::write(dir.path().join("token"), &token).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("token"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let out = run(
            "pki-server",
            args(&[
                "--dir",
                ".",
                "--listen",
                "127.0.0.1:0",
                "--ca-url",
                &pki.ca_url(),
                "--token-file",
                "token",
                "--enroll-deadline",
                "1s",
            ]),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-server");
        assert!(message.contains("unknown issuer"), "{message}");
        assert!(
            hints[0].contains("was not issued by the root in the ca.pem in --dir"),
            "{hints:?}"
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("--ca "));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_ca_on_a_port_in_use_names_listen() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let init = run("pki-ca", args(&["--dir", ".", "init"]), dir.path()).await;
        assert!(init.status.success());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let out = run(
            "pki-ca",
            args(&["--dir", ".", "serve", "--listen", &addr]),
            dir.path(),
        )
        .await;
        let (message, hints) = report(&out, "pki-ca");
        assert!(
            message.contains(&format!("cannot listen on {addr}")),
            "{message}"
        );
        assert_eq!(message.matches("Address already in use").count(), 1);
        assert!(hints[0].contains("--listen"), "{hints:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtrace_comes_only_with_pki_backtrace() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let exe = binary("pki-server");
        let path = dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(exe)
                .args(["--dir", "nothere"])
                .current_dir(path)
                .env("PKI_BACKTRACE", "1")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr.starts_with("pki-server: ") || stderr.contains("\npki-server: "));
        assert!(stderr.contains("backtrace:"), "{stderr}");
    })
    .await
}

/// Item 11: what a body that is not a CSR gets, in the answer and in the
/// CA's audit log, from the real `pki-ca serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_csrs_get_a_short_sentence_with_the_fix() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(run("pki-ca", args(&["--dir", ".", "init"]), d)
            .await
            .status
            .success());
        let minted = run(
            "pki-ca",
            args(&["--dir", ".", "token", "--name", "app.pki.test"]),
            d,
        )
        .await;
        let token = String::from_utf8_lossy(&minted.stdout).trim().to_string();
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(d.join("ca.log")).unwrap();
        let ca = Reaped(
            Command::new(binary("pki-ca"))
                .args(["--dir", ".", "serve", "--listen", &listen])
                .current_dir(d)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        wait_for_port(listen.parse().unwrap(), Duration::from_secs(20)).await;
        let root = pki_common::files::read_cert(&d.join("ca.pem")).unwrap();
        let client =
            pki_common::ca::client::CaClient::new(&format!("https://{listen}"), None, &root)
                .unwrap();
        // What `curl -d @req.pem` sends: the PEM with its line breaks gone.
        let stripped: Vec<u8> = pki_tests::csr_for("app.pki.test")
            .into_iter()
            .filter(|b| *b != b'\n' && *b != b'\r')
            .collect();
        let json = br#"{"csr": "-----BEGIN CERTIFICATE REQUEST-----"}"#.to_vec();
        for (case, body) in [
            ("stripped PEM", stripped),
            ("empty", vec![]),
            ("JSON", json),
        ] {
            let resp = client
                .post(
                    pki_common::ca::api::SIGN,
                    Some(&token),
                    "application/pkcs10",
                    body,
                )
                .await
                .unwrap();
            let err = resp.error_body().expect(case);
            assert_eq!(
                (resp.status.as_u16(), err.error.as_str()),
                (400, "bad_csr"),
                "{case}"
            );
            let detail = &err.detail;
            assert!(detail.len() < 250, "{case}: {detail}");
            assert!(detail.contains("--data-binary"), "{case}: {detail}");
            assert_human(detail);
        }
        drop(ca);
        let log = std::fs::read_to_string(d.join("ca.log")).unwrap();
        let refusals: Vec<&str> = log.lines().filter(|l| l.contains("bad_csr")).collect();
        assert_eq!(refusals.len(), 3, "{log}");
        for line in refusals {
            assert!(line.len() < 450, "{line}");
            assert_human(line);
        }
    })
    .await
}

/// No parser internals: no `Der(`, no `Parsing requires`, no byte array.
fn assert_human(text: &str) {
    assert!(!text.contains("Der("), "{text}");
    assert!(!text.contains("Parsing requires"), "{text}");
    assert!(!text.contains("UnexpectedTag"), "{text}");
    let digits_list = text
        .split(", ")
        .filter(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        .count();
    assert!(digits_list < 3, "a byte array in: {text}");
}

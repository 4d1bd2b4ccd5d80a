//! The command lines as a new user meets them (issue 12, "Commands"),
//! through the real binaries: options after the subcommand, the retry
//! message, bootstrapping the root by its fingerprint (and refusing a
//! mismatch), a second server in one directory, no files from read-only
//! commands, binding before issuing, and the help, value lists and
//! completions.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pki_common::ca::bootstrap::Fingerprint;
use pki_common::cert::{CertInfo, Profile};
use pki_common::files;
use pki_common::revocation::Reason;
use pki_tests::{binary, bounded, free_port, openssl_ok, wait_for_port, Reaped, TestPki};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

// ------------------------------------------------------------- helpers

/// One of the programs, with none of the variables it reads inherited
/// from the developer's shell (each test sets its own), and no backtrace
/// in its report.
fn program(name: &str) -> Command {
    let mut cmd = Command::new(binary(name));
    for var in [
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
        "PKI_CERTS_DIR",
        "PKI_TOKEN",
        "PKI_TOKEN_FILE",
        "PKI_ROOT_FINGERPRINT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command to completion.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// Starts a long-running command, killed when the handle is dropped.
fn spawn(cmd: &mut Command) -> Reaped {
    Reaped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refusal a person can read: no Rust `Debug` dump, and no sentence
/// said twice.
fn assert_readable(text: &str) {
    for dump in [" { ", "Context", "Os {", "kind: "] {
        assert!(!text.contains(dump), "Debug output {dump:?} in:\n{text}");
    }
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let mut seen = std::collections::HashSet::new();
    for part in last
        .split([';', ':'])
        .map(str::trim)
        .filter(|p| p.len() > 20)
    {
        assert!(seen.insert(part), "{part:?} repeated in:\n{last}");
    }
}

/// A `pki-ca` made with the binary (`init`) and serving (`serve`) on a
/// free port, with the fingerprint `init` printed.
struct CaProcess {
    dir: tempfile::TempDir,
    listen: SocketAddr,
    fingerprint: String,
    _serving: Reaped,
}

impl CaProcess {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let init = run(program("pki-ca").arg("--dir").arg(dir.path()).arg("init"));
        assert!(init.status.success(), "{}", stderr(&init));
        let fingerprint = printed_fingerprint(&stdout(&init));
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let serving = spawn(program("pki-ca").arg("--dir").arg(dir.path()).args([
            "serve",
            "--listen",
            &listen.to_string(),
        ]));
        wait_for_port(listen, Duration::from_secs(20)).await;
        CaProcess {
            dir,
            listen,
            fingerprint,
            _serving: serving,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.listen)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn pki_ca(&self, args: &[&str]) -> Output {
        run(program("pki-ca").arg("--dir").arg(self.dir()).args(args))
    }

    fn token(&self, name: &str, profile: Profile) -> String {
        let out = self.pki_ca(&["token", "--name", name, "--profile", profile.as_str()]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }
}

/// The fingerprint in `pki-ca init`'s report.
fn printed_fingerprint(report: &str) -> String {
    report
        .lines()
        .find_map(|l| l.strip_prefix("root fingerprint (SHA-256): "))
        .unwrap_or_else(|| panic!("no fingerprint in:\n{report}"))
        .trim()
        .to_string()
}

/// The serial and names of the certificate in `path`.
fn cert_in(path: &Path) -> CertInfo {
    CertInfo::parse(&files::read_cert(path).unwrap()).unwrap()
}

// ------------------------------------------------ 1. global options

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_options_go_after_the_subcommand_and_pki_certs_dir_sets_the_directory() {
    bounded(async {
        let help = run(program("pki-client").args(["enroll", "--help"]));
        assert!(help.status.success());
        let help = stdout(&help);
        for flag in [
            "--ca-url <CA_URL>",
            "--ca <CA>",
            "--cert <CERT>",
            "--key <KEY>",
            "--enroll-deadline <DURATION>",
            "--root-fingerprint <FP>",
        ] {
            assert!(help.contains(flag), "enroll --help lacks {flag}:\n{help}");
        }

        let ca = CaProcess::start().await;
        let elsewhere = tempfile::tempdir().unwrap();
        let (cert, key) = (
            elsewhere.path().join("me.pem"),
            elsewhere.path().join("me.key"),
        );
        // Every connection option after the subcommand, as users type it.
        let token = ca.token("client1.pki.test", Profile::Client);
        let out = run(program("pki-client")
            .args(["enroll", "--token", &token, "--ca-url", &ca.url()])
            .arg("--ca")
            .arg(ca.dir().join("ca.pem"))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(cert_in(&cert).dns_names, ["client1.pki.test"]);
        assert!(key.exists());

        // PKI_CERTS_DIR alone tells the client where ca.pem and its own
        // files are, as it tells pki-ca and pki-server.
        let token = ca.token("client2.pki.test", Profile::Client);
        let out = run(program("pki-client")
            .env("PKI_CERTS_DIR", ca.dir())
            .env("PKI_TOKEN", &token)
            .args(["enroll", "--as", "client2.pki.test", "--ca-url", &ca.url()]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            cert_in(&ca.dir().join("client.pem")).dns_names,
            ["client2.pki.test"]
        );
        assert!(ca.dir().join("client.key").exists());
    })
    .await
}

// ---------------------------------------------------- 2. retry message

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_says_it_is_retrying_and_gives_up_at_the_client_deadline() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let init = run(program("pki-ca").arg("--dir").arg(dir.path()).arg("init"));
        assert!(init.status.success());
        // Nothing listens there.
        let url = format!("https://127.0.0.1:{}", free_port());
        let out = run(program("pki-client")
            .arg("--dir")
            .arg(dir.path())
            .env("PKI_TOKEN", "not-needed-for-this-test")
            .args(["enroll", "--ca-url", &url, "--enroll-deadline", "1s"]));
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        // Nothing reached the CA, so no line may say a CSR was sent: the
        // narration says what happened, never what is about to.
        assert_eq!(err.matches("sent CSR").count(), 0, "{err}");
        assert!(
            err.contains("CA unreachable, retrying (attempt 1, next in 100ms)")
                && err.contains("CA unreachable, retrying (attempt 2, next in 200ms)"),
            "{err}"
        );
        let last = err
            .lines()
            .find(|l| l.starts_with("pki-client: "))
            .unwrap_or_default();
        assert!(
            last.contains("could not be reached before the deadline"),
            "{err}"
        );
        assert!(
            err.lines()
                .any(|l| l.starts_with("hint: ") && l.contains("--enroll-deadline")),
            "{err}"
        );
        assert_readable(&err);
    })
    .await
}

// ------------------------------------------------------- 3. bootstrap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_and_a_server_fetch_the_root_by_its_fingerprint() {
    bounded(async {
        let ca = CaProcess::start().await;
        // The fingerprint init printed is the one openssl computes.
        let openssl = openssl_ok(&[
            "x509",
            "-in",
            ca.dir().join("ca.pem").to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ]);
        let (_, theirs) = openssl.trim().split_once('=').unwrap();
        assert_eq!(theirs.to_uppercase(), ca.fingerprint);

        // The server, on a new host: only the fingerprint (as plain
        // lower-case hex this time) and the URL.
        let server_dir = tempfile::tempdir().unwrap();
        let plain = ca.fingerprint.replace(':', "").to_lowercase();
        let listen = format!("127.0.0.1:{}", free_port());
        let _server = spawn(
            program("pki-server")
                .arg("--dir")
                .arg(server_dir.path())
                .env("PKI_TOKEN", ca.token("app.pki.test", Profile::Server))
                .args(["--listen", &listen, "--ca-url", &ca.url()])
                .args(["--root-fingerprint", &plain]),
        );
        wait_for_port(listen.parse().unwrap(), Duration::from_secs(20)).await;
        let root = std::fs::read(ca.dir().join("ca.pem")).unwrap();
        assert_eq!(
            std::fs::read(server_dir.path().join("ca.pem")).unwrap(),
            root
        );

        // The client, on another: enroll, then a request to that server.
        let client_dir = tempfile::tempdir().unwrap();
        let out = run(program("pki-client")
            .arg("--dir")
            .arg(client_dir.path())
            .env("PKI_TOKEN", ca.token("client1.pki.test", Profile::Client))
            .args(["--root-fingerprint", &ca.fingerprint, "--ca-url", &ca.url()])
            .arg("enroll"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("fetched the CA root from"));
        assert_eq!(
            std::fs::read(client_dir.path().join("ca.pem")).unwrap(),
            root
        );
        let out = run(program("pki-client")
            .arg("--dir")
            .arg(client_dir.path())
            .args([
                "request",
                "memo",
                "--server",
                &listen,
                "--ca-url",
                &ca.url(),
            ])
            // An existing ca.pem that matches is kept.
            .args(["--root-fingerprint", &ca.fingerprint]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "take cis3319 class this morning\n");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fingerprint_mismatch_is_refused_naming_both_and_nothing_is_written() {
    bounded(async {
        let ca = CaProcess::start().await;
        let wrong = Fingerprint::of(b"another root").to_string();
        let empty = tempfile::tempdir().unwrap();

        let client = run(program("pki-client")
            .arg("--dir")
            .arg(empty.path())
            .env("PKI_TOKEN", "never-sent")
            .args([
                "enroll",
                "--ca-url",
                &ca.url(),
                "--root-fingerprint",
                &wrong,
            ]));
        let server = run(program("pki-server")
            .arg("--dir")
            .arg(empty.path())
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--ca-url", &ca.url(), "--root-fingerprint", &wrong]));
        for (program, out) in [("pki-client", &client), ("pki-server", &server)] {
            let err = stderr(out);
            assert!(!out.status.success(), "{program}: {err}");
            assert!(
                err.contains(&format!(
                    "serves a root with SHA-256 fingerprint {}",
                    ca.fingerprint
                )) && err.contains(&format!(
                    "expected fingerprint (--root-fingerprint) is {wrong}"
                )) && err.contains("nothing was written"),
                "{program}: {err}"
            );
            assert_readable(&err);
        }
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);

        // A ca.pem already there that does not match is left alone.
        let existing = ca.dir().join("ca.pem");
        let before = std::fs::read(&existing).unwrap();
        let out = run(program("pki-client").arg("--ca").arg(&existing).args([
            "request",
            "memo",
            "--root-fingerprint",
            &wrong,
        ]));
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!(
                "a root with SHA-256 fingerprint {}",
                ca.fingerprint
            )) && err.contains("already trusts another root"),
            "{err}"
        );
        assert_eq!(std::fs::read(&existing).unwrap(), before);

        // A fingerprint that is not one is refused before anything runs.
        let out =
            run(program("pki-client").args(["--root-fingerprint", "AB:CD", "request", "memo"]));
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("a SHA-256 fingerprint has 64"),
            "{}",
            stderr(&out)
        );
    })
    .await
}

/// An endpoint that answers `GET /v1/root` with the right root but is not
/// the CA: its TLS certificate is `chain`, for `app.pki.test`.
async fn impostor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    root_pem: String,
) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(pki_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = vec![0u8; 4096];
            let _ = tls.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{root_pem}",
                root_pem.len()
            );
            let _ = tls.write_all(answer.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_is_not_taken_from_an_endpoint_that_is_not_the_ca() {
    bounded(async {
        let pki = TestPki::start().await;
        let fingerprint = Fingerprint::of(&pki.root()).to_string();
        // A certificate from the right CA, but not the CA's own, presented
        // with its whole chain (the intermediate that issued it), so it
        // does chain to the root; and one from nobody. Both endpoints serve
        // the right root.
        let other = pki.enroll_identity(&["app.pki.test"]).await;
        let own_key = rcgen::KeyPair::generate().unwrap();
        let self_signed = rcgen::CertificateParams::new(vec!["app.pki.test".into()])
            .unwrap()
            .self_signed(&own_key)
            .unwrap();
        let cases = [
            (
                other.chain(),
                other.key.clone_key(),
                "lacks the CA-endpoint extended key usage",
            ),
            (
                vec![self_signed.der().clone()],
                PrivateKeyDer::try_from(own_key.serialize_der()).unwrap(),
                "unknown issuer",
            ),
        ];
        for (chain, key, why) in cases {
            let addr = impostor(chain, key, pki.ca.root_pem()).await;
            let dir = tempfile::tempdir().unwrap();
            let out = run(program("pki-server")
                .arg("--dir")
                .arg(dir.path())
                .args(["--listen", &format!("127.0.0.1:{}", free_port())])
                .args(["--ca-url", &format!("https://{addr}"), "--ca-name", "app.pki.test"])
                .args(["--root-fingerprint", &fingerprint]));
            let err = stderr(&out);
            assert!(!out.status.success(), "{err}");
            assert!(
                err.contains("serves the root with the expected fingerprint, but its own TLS certificate does not verify against that root")
                    && err.contains(why),
                "{err}"
            );
            assert!(!dir.path().join("ca.pem").exists());
        }
    })
    .await
}

// ------------------------------------------- 5. two servers, one dir

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_in_one_directory_keep_their_own_files_and_both_serve() {
    bounded(async {
        let ca = CaProcess::start().await;
        let dir = ca.dir();
        let (first, second) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        let _app = spawn(
            program("pki-server")
                .arg("--dir")
                .arg(dir)
                .env("PKI_TOKEN", ca.token("app.pki.test", Profile::Server))
                .args(["--listen", &first, "--ca-url", &ca.url()]),
        );
        wait_for_port(first.parse().unwrap(), Duration::from_secs(20)).await;
        let app_serial = cert_in(&dir.join("server.pem")).serial_hex;
        let _api = spawn(
            program("pki-server")
                .arg("--dir")
                .arg(dir)
                .env("PKI_TOKEN", ca.token("api.pki.test", Profile::Server))
                .args([
                    "--name",
                    "api.pki.test",
                    "--listen",
                    &second,
                    "--ca-url",
                    &ca.url(),
                ])
                .arg("--cert")
                .arg(dir.join("api.pem"))
                .arg("--key")
                .arg(dir.join("api.key")),
        );
        wait_for_port(second.parse().unwrap(), Duration::from_secs(20)).await;

        let app = cert_in(&dir.join("server.pem"));
        assert_eq!(app.serial_hex, app_serial, "server.pem was overwritten");
        assert_eq!(app.dns_names, ["app.pki.test"]);
        assert_eq!(cert_in(&dir.join("api.pem")).dns_names, ["api.pki.test"]);
        assert!(dir.join("api.key").exists());
        for (addr, name) in [(&first, "app.pki.test"), (&second, "api.pki.test")] {
            let out = run(program("pki-client")
                .arg("--dir")
                .arg(dir)
                .args(["request", "memo", "--server", addr, "--name", name])
                .args(["--ca-url", &ca.url()]));
            assert!(out.status.success(), "{name}: {}", stderr(&out));
        }
    })
    .await
}

// ---------------------------------- 6. read-only commands, bind first

#[test]
fn read_only_commands_on_a_mistyped_dir_create_nothing() {
    let base = tempfile::tempdir().unwrap();
    let typo = base.path().join("typo");
    let typo_arg = typo.to_str().unwrap();
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["token", "--name", "app.pki.test"],
        vec!["revoke", "--serial", "0a1b"],
    ] {
        let out = run(program("pki-ca").args(["--dir", typo_arg]).args(&args));
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(&format!("no CA root at {typo_arg}/ca.pem"))
                && err.contains(&format!("run `pki-ca init --dir {typo_arg}`")),
            "{args:?}: {err}"
        );
        assert_readable(&err);
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }

    // A root without a ledger yet (nothing served): an empty list, and
    // still no ledger.
    let init = run(program("pki-ca").args(["--dir", typo_arg, "init"]));
    assert!(init.status.success());
    let out = run(program("pki-ca").args(["--dir", typo_arg, "list", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]");
    assert!(!typo.join("ca-ledger.sqlite").exists());
}

/// How many certificates `pki-ca list` shows in `dir`.
fn ledger_rows(dir: &Path) -> usize {
    let out = run(program("pki-ca")
        .arg("--dir")
        .arg(dir)
        .args(["list", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_port_in_use_fails_before_issuing_its_certificate() {
    bounded(async {
        let ca = CaProcess::start().await;
        // The serving CA issues and records its own TLS certificate (just
        // after it binds): the count below would see one more.
        let mut before = ledger_rows(ca.dir());
        while before == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            before = ledger_rows(ca.dir());
        }
        assert_eq!(before, 1);
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_addr = busy.local_addr().unwrap().to_string();
        let out = ca.pki_ca(&["serve", "--listen", &busy_addr]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(&busy_addr), "{err}");
        assert_eq!(
            ledger_rows(ca.dir()),
            before,
            "a certificate was issued: {err}"
        );
    })
    .await
}

// ----------------------------------------------------------- 7. help

#[test]
fn help_lists_profiles_and_reasons_and_clap_checks_them() {
    let token = run(program("pki-ca").args(["token", "--help"]));
    let token = stdout(&token);
    assert!(
        token.contains("Possible values:")
            && token.contains("- server:")
            && token.contains("- client:"),
        "{token}"
    );
    let revoke = run(program("pki-ca").args(["revoke", "--help"]));
    let revoke = stdout(&revoke);
    for reason in Reason::ALL {
        assert!(
            revoke.contains(&format!("- {reason}:")),
            "{reason} missing:\n{revoke}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(program("pki-ca")
        .arg("--dir")
        .arg(dir.path())
        .args(["revoke", "--serial", "01", "--reason", "lost"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid value 'lost'") && stderr(&out).contains("keyCompromise"),
        "{}",
        stderr(&out)
    );
    // The wire names are accepted in any case, as before.
    let out = run(program("pki-ca").arg("--dir").arg(dir.path()).args([
        "revoke",
        "--serial",
        "01",
        "--reason",
        "KEYCOMPROMISE",
    ]));
    assert!(stderr(&out).contains("no CA root"), "{}", stderr(&out));
}

/// Every subcommand of each program, for the help checks.
const SUBCOMMANDS: &[(&str, &[&str])] = &[
    (
        "pki-ca",
        &["init", "token", "serve", "revoke", "list", "completions"],
    ),
    ("pki-client", &["request", "enroll", "renew", "completions"]),
    ("pki-server", &["completions"]),
];

#[test]
fn every_flag_is_described_and_every_subcommand_has_examples() {
    for (prog, subcommands) in SUBCOMMANDS {
        let mut pages = vec![(String::new(), run(program(prog).arg("--help")))];
        for sub in *subcommands {
            pages.push((sub.to_string(), run(program(prog).args([sub, "--help"]))));
        }
        for (sub, out) in pages {
            let page = stdout(&out);
            assert!(out.status.success(), "{prog} {sub}");
            assert!(
                page.contains("Example"),
                "{prog} {sub} has no examples:\n{page}"
            );
            assert_every_flag_described(&page, &format!("{prog} {sub}"));
        }
    }
}

/// Clap prints a short page with each description on its option's line,
/// after a gap, and a long page with it on the next line, indented further;
/// an option with neither has no description.
fn assert_every_flag_described(page: &str, what: &str) {
    let lines: Vec<&str> = page.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let is_option = line.starts_with("  -") || line.starts_with("      --");
        let is_positional = line.starts_with("  <");
        if !(is_option || is_positional) {
            continue;
        }
        let next = lines.get(i + 1).copied().unwrap_or("");
        let same_line = line.trim_start().contains("  ");
        let described = same_line || (next.starts_with("          ") && !next.trim().is_empty());
        let help_or_version = line.contains("--help") || line.contains("--version");
        assert!(
            described || help_or_version,
            "{what}: {line:?} has no description:\n{page}"
        );
    }
}

#[test]
fn completions_for_every_program() {
    for (prog, subcommands) in SUBCOMMANDS {
        let out = run(program(prog).args(["completions", "bash"]));
        assert!(out.status.success(), "{prog}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("complete "), "{prog}:\n{script}");
        for sub in *subcommands {
            assert!(script.contains(sub), "{prog}: {sub} not completed");
        }
        for shell in ["zsh", "fish"] {
            let out = run(program(prog).args(["completions", shell]));
            assert!(
                out.status.success() && !out.stdout.is_empty(),
                "{prog} {shell}"
            );
        }
    }
}

/// `pki-client enroll` needs a token only when it must enroll: a good
/// certificate is kept without one, and an empty `PKI_TOKEN` is no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_asks_for_a_token_only_when_it_must_enroll() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(pki.root_path(), dir.path().join("ca.pem")).unwrap();
        let enroll = |token: &str| {
            let mut cmd = program("pki-client");
            cmd.arg("--dir")
                .arg(dir.path())
                .args([
                    "--ca-url",
                    &pki.ca_url(),
                    "enroll",
                    "--as",
                    "client1.pki.test",
                ])
                .env("PKI_TOKEN", token);
            run(&mut cmd)
        };
        let none = enroll("");
        let err = stderr(&none);
        assert!(!none.status.success(), "{err}");
        assert!(err.contains("pki-client: no enrollment token"), "{err}");
        assert!(
            err.contains("hint: set PKI_TOKEN, or pass --token-file"),
            "{err}"
        );
        let token = pki.token(&["client1.pki.test"], Profile::Client);
        let first = enroll(&token);
        assert!(first.status.success(), "{}", stderr(&first));
        let kept = enroll("");
        let err = stderr(&kept);
        assert!(kept.status.success(), "{err}");
        assert!(err.contains("is still good"), "{err}");
    })
    .await
}

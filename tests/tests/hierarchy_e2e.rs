//! Issue 13 end to end, through the binaries only: a CA started with
//! `--public-url` and `--http-listen` puts CRL Distribution Points and AIA
//! in what it issues, and openssl, with nothing of this project but the
//! root and a leaf, finds the intermediate and every CRL and sees a
//! revocation; and revoking the intermediate makes the client refuse the
//! server it used to accept.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pki_tests::{binary, bounded, free_port, openssl, wait_for_port, Reaped};

/// One of the programs, with none of the variables it reads inherited
/// from the developer's shell.
fn program(name: &str) -> Command {
    let mut cmd = Command::new(binary(name));
    for var in [
        "RUST_BACKTRACE",
        "PKI_CERTS_DIR",
        "PKI_ROOT_PASSPHRASE",
        "PKI_TOKEN",
        "http_proxy",
        "HTTP_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn loopback() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// `pki-ca serve` over `dir`, publishing on `http`, with the CRL
/// re-published within a second of a revocation.
async fn serve(dir: &Path, https: SocketAddr, http: SocketAddr) -> Reaped {
    let process = Reaped(
        program("pki-ca")
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--listen", &https.to_string()])
            .args(["--public-url", &format!("http://{http}")])
            .args(["--http-listen", &http.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(https, Duration::from_secs(20)).await;
    wait_for_port(http, Duration::from_secs(20)).await;
    process
}

/// The intermediate, fetched over plain HTTP from the URL in the leaf's
/// AIA caIssuers, as any relying party would, written as PEM.
fn fetch_issuer_via_aia(leaf: &Path, out: &Path) {
    let text = ok(&mut openssl_cmd(&[
        "x509",
        "-in",
        &leaf.display().to_string(),
        "-noout",
        "-text",
    ]));
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("CA Issuers - URI:"))
        .unwrap_or_else(|| panic!("no AIA caIssuers in the leaf:\n{text}"))
        .to_string();
    assert!(text.contains("X509v3 CRL Distribution Points"), "{text}");
    let der = out.with_extension("der");
    ok(Command::new("curl")
        .args(["-sSf", "--noproxy", "*", "-o"])
        .arg(&der)
        .arg(&url));
    ok(&mut openssl_cmd(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &der.display().to_string(),
        "-out",
        &out.display().to_string(),
    ]));
}

fn openssl_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY");
    cmd
}

/// `openssl verify -crl_download -crl_check_all` with the root and the
/// fetched intermediate only: openssl downloads every CRL itself.
fn openssl_verdict(root: &Path, intermediate: &Path, leaf: &Path) -> String {
    let out = openssl(&[
        "verify",
        "-crl_download",
        "-crl_check_all",
        "-CAfile",
        &root.display().to_string(),
        "-untrusted",
        &intermediate.display().to_string(),
        &leaf.display().to_string(),
    ]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_a_leaf_revocation_through_crldp_with_no_project_tool() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let (https, http) = (loopback(), loopback());
        let public = format!("http://{http}");
        ok(program("pki-ca")
            .arg("--dir")
            .arg(&certs)
            .args(["init", "--public-url", &public]));
        let _ca = serve(&certs, https, http).await;

        // A client enrolls through the real client, so the chain on disk
        // is what users get.
        let token = ok(program("pki-ca").arg("--dir").arg(&certs).args([
            "token",
            "--profile",
            "client",
            "--name",
            "client1.pki.test",
        ]));
        ok(program("pki-client")
            .arg("--dir")
            .arg(&certs)
            .args(["--ca-url", &format!("https://{https}"), "enroll"])
            .env("PKI_TOKEN", token.trim()));

        // Only the leaf (the first certificate of client.pem) and the root.
        let leaf = dir.path().join("leaf.pem");
        ok(&mut openssl_cmd(&[
            "x509",
            "-in",
            &certs.join("client.pem").display().to_string(),
            "-out",
            &leaf.display().to_string(),
        ]));
        let root = certs.join("ca.pem");
        let intermediate = dir.path().join("intermediate.pem");
        fetch_issuer_via_aia(&leaf, &intermediate);

        let verdict = openssl_verdict(&root, &intermediate, &leaf);
        assert!(verdict.contains(": OK"), "{verdict}");

        let serial = ok(&mut openssl_cmd(&[
            "x509",
            "-in",
            &leaf.display().to_string(),
            "-noout",
            "-serial",
        ]));
        let serial = serial.trim().trim_start_matches("serial=").to_string();
        ok(program("pki-ca").arg("--dir").arg(&certs).args([
            "revoke",
            "--serial",
            &serial,
            "--reason",
            "keyCompromise",
            "--ca-url",
            &format!("https://{https}"),
        ]));
        // The serving CA publishes the new CRL on its plain-HTTP listener
        // within its poll; openssl downloads it afresh each run.
        let mut verdict = String::new();
        for _ in 0..50 {
            verdict = openssl_verdict(&root, &intermediate, &leaf);
            if verdict.contains("certificate revoked") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(verdict.contains("certificate revoked"), "{verdict}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_intermediate_makes_the_client_refuse_the_server() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let root_dir = dir.path().join("offline-root");
        let passphrase = dir.path().join("passphrase");
        std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let root_args = |cmd: &mut Command| {
            cmd.arg("--root-dir")
                .arg(&root_dir)
                .arg("--root-passphrase-file")
                .arg(&passphrase);
        };
        let mut init = program("pki-ca");
        init.arg("--dir").arg(&certs).arg("init");
        root_args(&mut init);
        ok(&mut init);
        assert!(!certs.join("root.key").exists() && !certs.join("ca.key").exists());
        let key = std::fs::read_to_string(root_dir.join("root.key")).unwrap();
        assert!(
            key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{key}"
        );

        let (https, http) = (loopback(), loopback());
        let _ca = serve(&certs, https, http).await;
        let ca_url = format!("https://{https}");
        let server_listen = loopback();
        let token = ok(program("pki-ca").arg("--dir").arg(&certs).args([
            "token",
            "--name",
            "app.pki.test",
        ]));
        let _server = Reaped(
            program("pki-server")
                .arg("--dir")
                .arg(&certs)
                .args(["--listen", &server_listen.to_string(), "--ca-url", &ca_url])
                .env("PKI_TOKEN", token.trim())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(server_listen, Duration::from_secs(20)).await;
        let request = || {
            program("pki-client")
                .arg("--dir")
                .arg(&certs)
                .args(["--server", &server_listen.to_string(), "--ca-url", &ca_url])
                .args(["--no-client-cert", "request", "memo"])
                .output()
                .unwrap()
        };
        let before = request();
        assert!(
            before.status.success(),
            "{}",
            String::from_utf8_lossy(&before.stderr)
        );

        // Where the root key is: revoke the intermediate on the root CRL.
        let id = std::fs::read_dir(certs.join("intermediates"))
            .unwrap()
            .filter_map(|e| e.ok())
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".pem").map(str::to_owned)
            })
            .unwrap();
        let mut revoke = program("pki-ca");
        revoke.arg("--dir").arg(&certs).args([
            "revoke",
            "--intermediate",
            &id,
            "--reason",
            "cACompromise",
        ]);
        root_args(&mut revoke);
        ok(&mut revoke);

        // The client's cache holds a CRL set still in its first half-life:
        // remove it, as a fresh client would start, so the new root CRL is
        // fetched from the CA.
        let _ = std::fs::remove_file(certs.join("ca.crls.pem"));
        let mut after = request();
        for _ in 0..30 {
            if !after.status.success() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = std::fs::remove_file(certs.join("ca.crls.pem"));
            after = request();
        }
        let err = String::from_utf8_lossy(&after.stderr);
        assert!(
            !after.status.success(),
            "the client still accepts the server:\n{err}"
        );
        assert!(err.contains("revoked"), "{err}");
    })
    .await
}

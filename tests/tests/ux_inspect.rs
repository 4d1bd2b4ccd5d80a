//! Issue 12, item 4: `pki-ca inspect`, through the binary, on every kind
//! of file the PKI writes (certificate, CSR, CRL, key; PEM and DER), and
//! the trust questions it answers: chains to the root or not, revoked or
//! not.

use std::path::Path;
use std::process::{Command, Output};

use pki_common::cert::CertInfo;
use pki_common::revocation::Reason;
use pki_tests::{binary, bounded, openssl_ok, write_identity_files, TestPki};

async fn inspect(dir: &Path, extra: &[&str]) -> Output {
    let exe = binary("pki-ca");
    let mut args = vec!["--dir".to_string(), dir.to_str().unwrap().to_string()];
    args.push("inspect".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// stdout of a successful `pki-ca inspect`.
async fn inspect_ok(dir: &Path, extra: &[&str]) -> String {
    let out = inspect(dir, extra).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value on the `label:` line of a report.
fn field<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"))
}

/// The CA's current intermediate, which signed every leaf here: its id and
/// common name; and the root's common name.
fn issuers(pki: &TestPki) -> (String, String, String) {
    let issuer = pki.ca.current_issuer().unwrap();
    let root = CertInfo::parse(&pki.root()).unwrap();
    (
        issuer.id.clone(),
        issuer.info.subject_cn.clone().unwrap(),
        root.subject_cn.unwrap(),
    )
}

/// A CA with an enrolled server and client, their files in the CA's
/// directory as `make run-all` leaves them, and a current CRL file.
async fn pki_with_parties() -> TestPki {
    let pki = TestPki::start().await;
    let server = pki
        .enroll_as(&["app.pki.test"], pki_common::cert::Profile::Server)
        .await;
    write_identity_files(pki.dir(), "server", &server);
    let client = pki.enroll_client("client1.pki.test").await;
    write_identity_files(pki.dir(), "client", &client);
    pki.ca.publish_crl().unwrap();
    pki
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_shows_its_fields_its_chain_and_its_revocation() {
    bounded(async {
        let pki = pki_with_parties().await;
        let path = pki.dir().join("server.pem");
        let report = inspect_ok(pki.dir(), &[path.to_str().unwrap()]).await;
        let der = pki_common::files::read_cert(&path).unwrap();
        let info = CertInfo::parse(&der).unwrap();
        let (id, intermediate, root) = issuers(&pki);
        assert_eq!(field(&report, "subject"), "CN=app.pki.test");
        assert_eq!(field(&report, "names"), "app.pki.test");
        // Signed by the intermediate, not by the root.
        assert_eq!(
            field(&report, "issuer"),
            format!("O=pki-auth, CN={intermediate}")
        );
        assert_eq!(field(&report, "serial"), info.serial_hex);
        assert!(
            ["(expires in 29 days)", "(expires in 30 days)"]
                .iter()
                .any(|d| field(&report, "validity").contains(d)),
            "{report}"
        );
        assert_eq!(field(&report, "key"), "ECDSA P-256");
        assert_eq!(field(&report, "extended key usage"), "serverAuth");
        assert_eq!(field(&report, "basic constraints"), "CA:FALSE");
        // The fingerprint openssl computes.
        let openssl = openssl_ok(&[
            "x509",
            "-in",
            path.to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ]);
        let expected = openssl.trim().split('=').nth(1).unwrap();
        assert_eq!(field(&report, "SHA-256 fingerprint"), expected);
        // The chain: leaf ← the intermediate the file carries ← the root.
        let chain = field(&report, "chain");
        assert!(
            chain.starts_with(&format!(
                "chain OK to the root in {}: app.pki.test (serial {}…) ← signed by intermediate \"{intermediate}\" (id {id}) ← signed by the root \"{root}\"",
                pki.root_path().display(),
                &info.serial_hex[..8]
            )),
            "{report}"
        );
        assert_eq!(
            field(&report, "file holds"),
            "the chain: this certificate, then 1 intermediate(s)"
        );
        // Judged by the CRL of the intermediate that issued it.
        let crl = pki.ca.current_crl().unwrap();
        assert_eq!(
            field(&report, "revocation"),
            format!(
                "not revoked (CRL #{} of intermediate {id} ({intermediate}) in {})",
                crl.number,
                pki.paths.crl().display()
            )
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_certificate_does_not_chain() {
    bounded(async {
        let pki = pki_with_parties().await;
        let other = TestPki::start().await;
        let foreign = other.enroll_client("client1.pki.test").await;
        write_identity_files(pki.dir(), "foreign", &foreign);
        let path = pki.dir().join("foreign.pem");
        let report = inspect_ok(pki.dir(), &[path.to_str().unwrap()]).await;
        assert!(
            field(&report, "chain").starts_with("does not chain to the root in")
                && field(&report, "chain").ends_with("another CA issued it"),
            "{report}"
        );
        // And against its own root, given with --ca, it does.
        let theirs = other.root_path();
        let report = inspect_ok(
            pki.dir(),
            &["--ca", theirs.to_str().unwrap(), path.to_str().unwrap()],
        )
        .await;
        assert!(field(&report, "chain").starts_with("chain OK"), "{report}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_and_the_crl_show_the_reason() {
    bounded(async {
        let pki = pki_with_parties().await;
        let client = pki.dir().join("client.pem");
        let serial = CertInfo::parse(&pki_common::files::read_cert(&client).unwrap())
            .unwrap()
            .serial_hex;
        pki.ca.revoke(&serial, Reason::KeyCompromise).unwrap();
        let crl = pki.ca.publish_crl().unwrap();

        let (id, intermediate, _) = issuers(&pki);
        assert_eq!(crl.issuer_id, id);
        let report = inspect_ok(pki.dir(), &[client.to_str().unwrap()]).await;
        assert!(
            field(&report, "revocation").starts_with(&format!(
                "REVOKED (keyCompromise) per CRL #{} of intermediate {id}",
                crl.number
            )),
            "{report}"
        );

        let crl_path = pki.dir().join("ca.crl.pem");
        let report = inspect_ok(pki.dir(), &[crl_path.to_str().unwrap()]).await;
        assert_eq!(field(&report, "number"), format!("#{}", crl.number));
        assert_eq!(
            field(&report, "issuer"),
            format!("O=pki-auth, CN={intermediate}")
        );
        assert!(field(&report, "this update").ends_with('Z'), "{report}");
        assert!(field(&report, "next update").contains("(in "), "{report}");
        assert_eq!(field(&report, "entries"), "1 revoked");
        assert!(
            report.contains(&format!("  {serial} revoked ")) && report.contains("(keyCompromise)"),
            "{report}"
        );
        assert_eq!(
            field(&report, "status"),
            format!(
                "signed by intermediate {id} ({intermediate}), which the root in {} signed, current; it covers the leaves that intermediate issued",
                pki.root_path().display()
            )
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_pem_or_der_shows_what_it_asks_for_and_whether_it_proves_its_key() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["app.pki.test".to_string(), "10.0.0.7".to_string()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "app.pki.test");
        let csr = params.serialize_request(&key).unwrap();
        std::fs::write(dir.path().join("req.pem"), csr.pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("req.der"), csr.der()).unwrap();
        for file in ["req.pem", "req.der"] {
            let path = dir.path().join(file);
            let report = inspect_ok(dir.path(), &[path.to_str().unwrap()]).await;
            assert!(
                field(&report, "type").starts_with("certificate signing request"),
                "{report}"
            );
            assert_eq!(field(&report, "subject"), "CN=app.pki.test");
            assert_eq!(field(&report, "requested names"), "app.pki.test, 10.0.0.7");
            assert_eq!(field(&report, "key"), "ECDSA P-256");
            assert!(field(&report, "signature").starts_with("valid"), "{report}");
            // No root in this directory: said, not failed.
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_shows_its_type_and_mode_and_never_its_material() {
    bounded(async {
        let pki = pki_with_parties().await;
        let path = pki.dir().join("server.key");
        let pem = std::fs::read_to_string(&path).unwrap();
        let report = inspect_ok(pki.dir(), &[path.to_str().unwrap()]).await;
        assert_eq!(field(&report, "key"), "ECDSA P-256");
        assert!(field(&report, "file mode").starts_with("0600"), "{report}");
        assert!(
            field(&report, "certificate").ends_with("server.pem carries this key"),
            "{report}"
        );
        assert!(!report.contains("BEGIN"), "{report}");
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!report.contains(line), "key material in:\n{report}");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let report = inspect_ok(pki.dir(), &[path.to_str().unwrap()]).await;
        let mode = field(&report, "file mode");
        assert!(
            mode.starts_with("0644") && mode.contains("WARNING") && mode.contains("chmod 600"),
            "{report}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_overview_says_who_signed_what() {
    bounded(async {
        let pki = pki_with_parties().await;
        let (id, intermediate, root) = issuers(&pki);
        let root_crl = pki.ca.root_crl().unwrap().number;
        let out = inspect_ok(pki.dir(), &[]).await;
        let line = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
                .to_string()
        };
        assert!(
            line("ca.pem").contains("self-signed — this is the root itself"),
            "{out}"
        );
        // The leaves: signed by the intermediate, chained through it to the
        // root, judged by its CRL.
        let crl = pki.ca.current_crl().unwrap().number;
        for (file, name) in [("server.pem", "app.pki.test"), ("client.pem", "client1.pki.test")] {
            let leaf = line(file);
            assert!(
                leaf.starts_with(&format!("{file}: {name}, signed by {intermediate} — chain OK to the root in ")),
                "{out}"
            );
            assert!(
                leaf.contains(&format!("← signed by intermediate \"{intermediate}\" (id {id}) ← signed by the root \"{root}\""))
                    && leaf.contains(&format!("not revoked (CRL #{crl} of intermediate {id} "))
                    && leaf.contains("expires in "),
                "{out}"
            );
        }
        // The intermediate: signed by the root, judged by the root's CRL.
        let int = line(&format!("intermediates/{id}.pem"));
        assert!(
            int.starts_with(&format!("intermediates/{id}.pem: {intermediate}, signed by {root} — chain OK"))
                && int.contains(&format!("not revoked (CRL #{root_crl} of the root ")),
            "{out}"
        );
        // Each CRL by its issuer: the leaves' by the intermediate, the
        // intermediates' by the root.
        assert!(
            line("ca.crl.pem").contains(&format!(
                "CRL #{crl} by O=pki-auth, CN={intermediate}, 0 revoked — signed by intermediate {id} ("
            )),
            "{out}"
        );
        assert!(
            line("root.crl.pem").contains(&format!("CRL #{root_crl} by O=pki-auth, CN={root}, 0 revoked — signed by the root in ")),
            "{out}"
        );
        assert!(line("server.key").contains("ECDSA P-256, 0600"), "{out}");
        // Who signed what, root → intermediate → leaves, and where each
        // signing key is.
        let hierarchy = out
            .split_once("Hierarchy (who signed what):\n")
            .unwrap_or_else(|| panic!("no hierarchy in:\n{out}"))
            .1;
        let mut at = 0;
        for expected in [
            format!("root O=pki-auth, CN={root} (ca.pem)"),
            format!(
                "key: root.key is in {} — next to the online CA: keep it offline",
                pki.dir().display()
            ),
            format!("its CRL (lists revoked intermediates): CRL #{root_crl} (root.crl.pem), 0 revoked"),
            format!("└─ intermediate \"{intermediate}\" (id {id}), signed by the root"),
            format!("key: intermediates/{id}.key — ONLINE"),
            format!("its CRL (lists revoked leaves): CRL #{crl} (ca.crl.pem), 0 revoked"),
        ] {
            let found = hierarchy[at..]
                .find(&expected)
                .unwrap_or_else(|| panic!("no {expected:?} in order in:\n{out}"));
            at += found + expected.len();
        }
        // Under the intermediate, the leaves it signed.
        for leaf in [
            "└─ client.pem: client1.pki.test (serial ",
            "└─ server.pem: app.pki.test (serial ",
        ] {
            assert!(hierarchy[at..].contains(leaf), "no {leaf:?} under {id} in:\n{out}");
        }
        assert!(out.contains("Why trusted:"), "{out}");
        // The ledger is not a PKI file and is left out.
        assert!(!out.contains("sqlite"), "{out}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_creates_nothing_and_reports_a_missing_file_cleanly() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo");
        let out = inspect(&typo, &[]).await;
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("pki-ca: ") && stderr.contains("typo"),
            "{stderr}"
        );
        assert!(!typo.exists());
        let out = inspect(dir.path(), &[dir.path().join("nope.pem").to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("nope.pem: No such file"));
        // A file that is none of the four kinds says so.
        std::fs::write(dir.path().join("notes.pem"), "hello").unwrap();
        let out = inspect(
            dir.path(),
            &[dir.path().join("notes.pem").to_str().unwrap()],
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not a certificate, CSR, CRL or private key"),
            "{stderr}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    })
    .await
}

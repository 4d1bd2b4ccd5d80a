//! Issue 13, the CA side of items 1–3, through the real `pki-ca` binary:
//! a root and an intermediate from `pki-ca init`, the root key encrypted
//! and elsewhere (`--root-dir`) and never needed by `serve`, chains in
//! every answer and on the CA's TLS endpoint, intermediate rollover,
//! revoking an intermediate on the root CRL, and name constraints that
//! openssl and rustls/webpki enforce.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pki_ca::policy::{Decision, KeyKind};
use pki_ca::CaPaths;
use pki_common::ca::api;
use pki_common::ca::client::CaClient;
use pki_common::cert::{CertInfo, Profile};
use pki_common::files;
use pki_tests::{binary, bounded, csr_for, free_port, openssl, openssl_ok, wait_for_port, Reaped};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

// ------------------------------------------------------------- helpers

/// One of the programs, with none of the variables it reads inherited
/// from the developer's shell, and no backtrace in its report.
fn program(name: &str) -> Command {
    let mut cmd = Command::new(binary(name));
    for var in [
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
        "PKI_CERTS_DIR",
        "PKI_ROOT_DIR",
        "PKI_ROOT_PASSPHRASE",
        "PKI_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `pki-ca --dir <dir> <args>`, which must succeed; answers its stdout.
fn pki_ca_ok(dir: &Path, args: &[&str]) -> String {
    let out = run(program("pki-ca").arg("--dir").arg(dir).args(args));
    assert!(
        out.status.success(),
        "pki-ca {args:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A refusal a person can read: no Rust `Debug` dump, and no sentence
/// said twice.
fn assert_readable(text: &str) {
    for dump in [" { ", "Context", "Os {", "kind: "] {
        assert!(!text.contains(dump), "Debug output {dump:?} in:\n{text}");
    }
    let mut seen = std::collections::HashSet::new();
    for part in text
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|p| p.len() > 20)
    {
        assert!(seen.insert(part), "{part:?} said twice in:\n{text}");
    }
}

/// A `pki-ca serve` process on a free loopback port over `dir`.
struct Serving {
    listen: SocketAddr,
    root: CertificateDer<'static>,
    _process: Reaped,
}

impl Serving {
    async fn start(dir: &Path) -> Self {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let process = Reaped(
            program("pki-ca")
                .arg("--dir")
                .arg(dir)
                .args(["serve", "--listen", &listen.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(listen, Duration::from_secs(20)).await;
        let root = files::read_cert(&dir.join("ca.pem")).unwrap();
        Serving {
            listen,
            root,
            _process: process,
        }
    }

    fn client(&self) -> CaClient {
        CaClient::new(&format!("https://{}", self.listen), None, &self.root).unwrap()
    }

    /// A token from the `pki-ca token` command, and `POST /v1/sign` with
    /// it: the answer's status and body.
    async fn enroll(&self, dir: &Path, name: &str) -> (u16, String) {
        let token = pki_ca_ok(dir, &["token", "--name", name]);
        let resp = self
            .client()
            .post(
                &api::sign_path(Profile::Server),
                Some(token.trim()),
                "application/pkcs10",
                csr_for(name),
            )
            .await
            .unwrap();
        (
            resp.status.as_u16(),
            String::from_utf8_lossy(&resp.body).into_owned(),
        )
    }

    /// `GET path`, 200 expected: the body.
    async fn get(&self, path: &str) -> Vec<u8> {
        let resp = self.client().get(path).await.unwrap();
        assert_eq!(resp.status.as_u16(), 200, "GET {path}");
        resp.body.to_vec()
    }
}

/// Every certificate in a PEM text, in order.
fn certs_in(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every CRL in a PEM text, in order.
fn crls_in(pem: &[u8]) -> Vec<CertificateRevocationListDer<'static>> {
    CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Writes `cert` as PEM to `dir/<name>`; answers the path as a string.
fn write_cert(dir: &Path, name: &str, cert: &CertificateDer<'_>) -> String {
    let path = dir.join(name);
    files::write_public(&path, &files::cert_to_pem(cert)).unwrap();
    path.to_str().unwrap().to_string()
}

/// `openssl verify` of `leaf` against the root in `dir` with the
/// intermediate `inter` as untrusted, plus `extra` options.
fn openssl_verify(dir: &Path, inter: &str, leaf: &str, extra: &[&str]) -> Output {
    let root = dir.join("ca.pem");
    let mut args = vec!["verify", "-CAfile", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-untrusted", inter, leaf]);
    openssl(&args)
}

fn openssl_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The text of `openssl x509 -text` for the certificate file `path`.
fn x509_text(path: &Path) -> String {
    openssl_ok(&["x509", "-in", path.to_str().unwrap(), "-noout", "-text"])
}

/// Polls `check` every 100 ms until it answers `Some`, at most 10 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The only intermediate id in `dir`.
fn only_intermediate(dir: &Path) -> String {
    let ids = pki_tests::hierarchy::intermediate_ids(&CaPaths::new(dir));
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

// --------------------------------------------- 1. the offline root key

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_encrypts_the_root_key_elsewhere_and_serve_issues_chains_without_it() {
    bounded(async {
        let work = tempfile::tempdir().unwrap();
        let (dir, offline) = (work.path().join("certs"), work.path().join("offline"));
        let pass_file = work.path().join("pass");
        std::fs::write(&pass_file, "correct horse battery\n").unwrap();

        // A passphrase file others can read is refused, and nothing made.
        set_mode(&pass_file, 0o644);
        let out = run(program("pki-ca").arg("--dir").arg(&dir).args([
            "init",
            "--root-dir",
            offline.to_str().unwrap(),
            "--root-passphrase-file",
            pass_file.to_str().unwrap(),
        ]));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("chmod 600"), "{err}");
        assert_readable(&err);
        assert!(!dir.join("ca.pem").exists() && !offline.join("root.key").exists());

        set_mode(&pass_file, 0o600);
        let report = pki_ca_ok(
            &dir,
            &[
                "init",
                "--root-dir",
                offline.to_str().unwrap(),
                "--root-passphrase-file",
                pass_file.to_str().unwrap(),
            ],
        );
        let id = only_intermediate(&dir);
        for expected in [
            "root.key  the root key (mode 0600, encrypted with the passphrase): OFFLINE"
                .to_string(),
            format!("the issuing intermediate {id}, signed by the root"),
            "the ONLY key `pki-ca serve` needs".to_string(),
            "-> intermediate -> leaf".to_string(),
        ] {
            assert!(report.contains(&expected), "{expected:?} in:\n{report}");
        }
        // The root key is in --root-dir only, and openssl decrypts it.
        let root_key = offline.join("root.key");
        assert!(!dir.join("root.key").exists() && !dir.join("ca.key").exists());
        let pem = std::fs::read_to_string(&root_key).unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{pem}"
        );
        let key = root_key.to_str().unwrap();
        openssl_ok(&[
            "pkey",
            "-in",
            key,
            "-passin",
            "pass:correct horse battery",
            "-noout",
        ]);
        assert!(
            !openssl(&["pkey", "-in", key, "-passin", "pass:wrong", "-noout"])
                .status
                .success()
        );

        // pathLen 1 on the root, 0 on the intermediate; both sign
        // certificates and CRLs; the intermediate names the root's key.
        let root_text = x509_text(&dir.join("ca.pem"));
        assert!(root_text.contains("CA:TRUE, pathlen:1"), "{root_text}");
        let inter_path = dir.join("intermediates").join(format!("{id}.pem"));
        let inter_text = x509_text(&inter_path);
        for expected in [
            "CA:TRUE, pathlen:0",
            "Certificate Sign, CRL Sign",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
        ] {
            assert!(
                inter_text.contains(expected),
                "{expected:?} in:\n{inter_text}"
            );
        }

        // Without the root directory at all, the CA serves and issues.
        std::fs::rename(&offline, work.path().join("elsewhere")).unwrap();
        let ca = Serving::start(&dir).await;
        let (status, chain) = ca.enroll(&dir, "app.pki.test").await;
        assert_eq!(status, 200, "{chain}");
        let certs = certs_in(chain.as_bytes());
        assert_eq!(certs.len(), 2, "leaf then intermediate:\n{chain}");
        assert!(!CertInfo::parse(&certs[0]).unwrap().is_ca, "the leaf first");
        assert_eq!(certs[1], files::read_cert(&inter_path).unwrap());
        let leaf = write_cert(work.path(), "leaf.pem", &certs[0]);
        let inter = write_cert(work.path(), "inter.pem", &certs[1]);
        let verified = openssl_verify(&dir, &inter, &leaf, &[]);
        assert!(verified.status.success(), "{}", openssl_text(&verified));
        // The leaf alone does not chain to the root: the intermediate is
        // needed, and the answer carries it.
        let alone = openssl(&[
            "verify",
            "-CAfile",
            dir.join("ca.pem").to_str().unwrap(),
            &leaf,
        ]);
        assert!(!alone.status.success());

        // The CA's own TLS endpoint presents leaf + intermediate.
        let shown = openssl_ok(&[
            "s_client",
            "-connect",
            &ca.listen.to_string(),
            "-showcerts",
            "-CAfile",
            dir.join("ca.pem").to_str().unwrap(),
        ]);
        assert_eq!(
            shown.matches("-----BEGIN CERTIFICATE-----").count(),
            2,
            "{shown}"
        );
        assert!(shown.contains("Verify return code: 0 (ok)"), "{shown}");

        // The root commands need the root key, and say where to find it.
        let out = run(program("pki-ca").arg("--dir").arg(&dir).arg("intermediate"));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("--root-dir"), "{err}");
        assert_readable(&err);
        // And its passphrase.
        let out = run(program("pki-ca").arg("--dir").arg(&dir).args([
            "root-crl",
            "--root-dir",
            work.path().join("elsewhere").to_str().unwrap(),
        ]));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("PKI_ROOT_PASSPHRASE"), "{err}");
        assert_readable(&err);
        assert!(!dir.join("root.key").exists());
    })
    .await
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ------------------------------------------------------- rollover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_intermediate_takes_over_and_the_old_chains_keep_verifying() {
    bounded(async {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("certs");
        let out = run(program("pki-ca").arg("--dir").arg(&dir).arg("init"));
        assert!(out.status.success(), "{}", stderr(&out));
        // Without a passphrase the root key is written in the clear, loudly.
        assert!(
            stderr(&out).contains("is NOT encrypted"),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).contains("NOT encrypted: give a passphrase"));
        let old_id = only_intermediate(&dir);
        let ca = Serving::start(&dir).await;
        let (status, old_chain) = ca.enroll(&dir, "old.pki.test").await;
        assert_eq!(status, 200, "{old_chain}");

        let report = pki_ca_ok(&dir, &["intermediate"]);
        let ids = pki_tests::hierarchy::intermediate_ids(&CaPaths::new(&dir));
        assert_eq!(ids.len(), 2);
        let new_id = ids.iter().find(|i| **i != old_id).unwrap().clone();
        assert!(
            report.contains(&format!("issued intermediate {new_id}")),
            "{report}"
        );

        // The serving CA picks it up without a restart.
        let held = eventually("the CA serving both intermediates", || async {
            let body = ca.get(api::INTERMEDIATES).await;
            let certs = certs_in(&body);
            (certs.len() == 2).then_some(certs)
        })
        .await;
        let new_cert =
            files::read_cert(&dir.join("intermediates").join(format!("{new_id}.pem"))).unwrap();
        assert!(held.contains(&new_cert));
        let (status, new_chain) = eventually("a leaf under the new intermediate", || async {
            let (status, chain) = ca.enroll(&dir, "new.pki.test").await;
            let under_new = certs_in(chain.as_bytes()).get(1) == Some(&new_cert);
            under_new.then_some((status, chain))
        })
        .await;
        assert_eq!(status, 200);
        // The CA's own TLS certificate moves to the new intermediate too.
        eventually(
            "the CA presenting a chain through the new intermediate",
            || async {
                let shown =
                    openssl_ok(&["s_client", "-connect", &ca.listen.to_string(), "-showcerts"]);
                certs_in(shown.as_bytes()).contains(&new_cert).then_some(())
            },
        )
        .await;

        // Both chains verify: old leaf with the old intermediate, new leaf
        // with the new one.
        for (tag, chain) in [("old", &old_chain), ("new", &new_chain)] {
            let certs = certs_in(chain.as_bytes());
            let leaf = write_cert(work.path(), &format!("{tag}.pem"), &certs[0]);
            let inter = write_cert(work.path(), &format!("{tag}-inter.pem"), &certs[1]);
            let verified = openssl_verify(&dir, &inter, &leaf, &[]);
            assert!(
                verified.status.success(),
                "{tag}: {}",
                openssl_text(&verified)
            );
        }
        // One CRL per intermediate after the root's, each verifying
        // against its own issuer; the ledger says who signed what.
        let crls = crls_in(&ca.get(api::CRLS).await);
        assert_eq!(crls.len(), 3, "the root's, then one per intermediate");
        let now = pki_common::unix_now() as i64;
        pki_common::revocation::verify_crl(crls[0].clone(), &ca.root, now).unwrap();
        for crl in &crls[1..] {
            assert!(held
                .iter()
                .any(|i| pki_common::revocation::verify_crl(crl.clone(), i, now).is_ok()));
        }
        let listed: serde_json::Value =
            serde_json::from_str(&pki_ca_ok(&dir, &["list", "--json"])).unwrap();
        let issuer_of = |name: &str| {
            listed
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["names"][0] == name)
                .map(|r| r["issuer"].as_str().unwrap().to_string())
        };
        assert_eq!(issuer_of("old.pki.test").as_deref(), Some(old_id.as_str()));
        assert_eq!(issuer_of("new.pki.test").as_deref(), Some(new_id.as_str()));
    })
    .await
}

// ------------------------------------------- revoking an intermediate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_intermediate_is_on_the_root_crl_and_its_leaves_fail() {
    bounded(async {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("certs");
        pki_ca_ok(&dir, &["init"]);
        let id = only_intermediate(&dir);
        let ca = Serving::start(&dir).await;
        let (_, chain) = ca.enroll(&dir, "app.pki.test").await;
        let certs = certs_in(chain.as_bytes());
        let leaf = write_cert(work.path(), "leaf.pem", &certs[0]);
        let inter = write_cert(work.path(), "inter.pem", &certs[1]);
        let crl_file = work.path().join("crls.pem");
        std::fs::write(&crl_file, ca.get(api::CRLS).await).unwrap();
        let crl_check = ["-crl_check_all", "-CRLfile", crl_file.to_str().unwrap()];
        let before = openssl_verify(&dir, &inter, &leaf, &crl_check);
        assert!(before.status.success(), "{}", openssl_text(&before));

        let report = pki_ca_ok(
            &dir,
            &["revoke", "--intermediate", &id, "--reason", "cACompromise"],
        );
        assert!(
            report.contains(&format!("revoked intermediate {id} (cACompromise)")),
            "{report}"
        );
        assert!(
            report.contains("`pki-ca intermediate` issues one"),
            "{report}"
        );

        // The serving CA publishes the new root CRL, which lists it.
        let serial = CertInfo::parse(&certs[1]).unwrap().serial_hex;
        let bundle = eventually("the root CRL listing the intermediate", || async {
            let body = ca.get(api::CRLS).await;
            let root_crl = crls_in(&body).first().cloned()?;
            let now = pki_common::unix_now() as i64;
            let crl = pki_common::revocation::verify_crl(root_crl, &ca.root, now).ok()?;
            crl.revocation_of(&serial).is_some().then_some(body)
        })
        .await;
        std::fs::write(&crl_file, bundle).unwrap();
        let after = openssl_verify(&dir, &inter, &leaf, &crl_check);
        assert!(!after.status.success());
        assert!(
            openssl_text(&after).contains("certificate revoked"),
            "{}",
            openssl_text(&after)
        );

        // Nothing more is issued under it: no intermediate is left.
        let (status, body) = ca.enroll(&dir, "late.pki.test").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("no_intermediate") && body.contains("pki-ca intermediate"),
            "{body}"
        );
        // Until a new one is issued, where the root key is.
        pki_ca_ok(&dir, &["intermediate"]);
        let (status, _) = eventually("issuance under a new intermediate", || async {
            let (status, chain) = ca.enroll(&dir, "late.pki.test").await;
            (status == 200).then_some((status, chain))
        })
        .await;
        assert_eq!(status, 200);
        // Revoking it twice is refused, readably.
        let out =
            run(program("pki-ca")
                .arg("--dir")
                .arg(&dir)
                .args(["revoke", "--intermediate", &id]));
        assert!(!out.status.success());
        assert!(stderr(&out).contains("already revoked"), "{}", stderr(&out));
        assert_readable(&stderr(&out));
    })
    .await
}

// ------------------------------------------------- name constraints

/// A server leaf for `names`, valid for an hour.
fn decision(names: &[&str]) -> Decision {
    let now = pki_common::unix_now() as i64;
    Decision {
        names: names.iter().map(|n| n.to_string()).collect(),
        profile: Profile::Server,
        key: KeyKind::EcdsaP256,
        not_before: now - 60,
        not_after: now + 3600,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_outside_the_name_constraints_fails_in_openssl_and_rustls() {
    bounded(async {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("certs");
        pki_ca_ok(
            &dir,
            &[
                "init",
                "--permit-dns",
                "pki.test",
                "--permit-ip",
                "127.0.0.0/8",
            ],
        );
        let id = only_intermediate(&dir);
        let paths = CaPaths::new(&dir);
        let inter_path: PathBuf = paths.intermediate_cert(&id);
        let inter_text = x509_text(&inter_path);
        assert!(
            inter_text.contains("DNS:pki.test") && inter_text.contains("IP:127.0.0.0/255.0.0.0"),
            "{inter_text}"
        );

        // The CA itself refuses a name outside them, saying why.
        let out =
            run(program("pki-ca")
                .arg("--dir")
                .arg(&dir)
                .args(["token", "--name", "evil.example"]));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("outside the names") && err.contains("pki.test and below"),
            "{err}"
        );
        assert_readable(&err);

        // Its own endpoint (ca.pki.test, 127.0.0.1) is inside them.
        let ca = Serving::start(&dir).await;
        let (status, chain) = ca.enroll(&dir, "app.pki.test").await;
        assert_eq!(status, 200, "{chain}");
        let inter = inter_path.to_str().unwrap();
        let root = files::read_cert(&paths.root_cert()).unwrap();
        let intermediate = files::read_cert(&inter_path).unwrap();
        let inside = certs_in(chain.as_bytes()).remove(0);

        // Leaves outside, signed with the intermediate's key directly
        // (the CA would not): a DNS name and an address.
        let key = rcgen::KeyPair::generate().unwrap();
        use rcgen::PublicKeyData;
        let spki = key.subject_public_key_info();
        for (tag, names) in [("dns", ["evil.example"]), ("ip", ["10.0.0.1"])] {
            let outside =
                pki_tests::hierarchy::intermediate_signed(&paths, &id, &decision(&names), &spki);
            let leaf = write_cert(work.path(), &format!("{tag}.pem"), &outside);
            let refused = openssl_verify(&dir, inter, &leaf, &[]);
            assert!(!refused.status.success(), "{tag}");
            assert!(
                openssl_text(&refused).contains("permitted subtree violation"),
                "{tag}: {}",
                openssl_text(&refused)
            );
            let err = pki_common::tls::verify::verify_chain(
                &outside,
                &root,
                std::slice::from_ref(&intermediate),
                UnixTime::now(),
                webpki::KeyUsage::server_auth(),
            )
            .err();
            assert!(
                matches!(err, Some(webpki::Error::NameConstraintViolation)),
                "{tag}: {err:?}"
            );
        }
        // The same checks pass for the leaf inside them.
        let leaf = write_cert(work.path(), "inside.pem", &inside);
        let verified = openssl_verify(&dir, inter, &leaf, &[]);
        assert!(verified.status.success(), "{}", openssl_text(&verified));
        pki_common::tls::verify::verify_chain(
            &inside,
            &root,
            std::slice::from_ref(&intermediate),
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
        )
        .unwrap();
    })
    .await
}

// ------------------------------------------ renewal with a client chain

/// A fresh P-256 key and a PEM CSR for `name` made with it.
fn key_and_csr(name: &str) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr.into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_accepts_a_client_chain_against_the_root_and_answers_a_chain() {
    bounded(async {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("certs");
        pki_ca_ok(&dir, &["init"]);
        let ca = Serving::start(&dir).await;
        let token = pki_ca_ok(&dir, &["token", "--name", "app.pki.test"]);
        let (key, csr) = key_and_csr("app.pki.test");
        let resp = ca
            .client()
            .post(
                &api::sign_path(Profile::Server),
                Some(token.trim()),
                "application/pkcs10",
                csr,
            )
            .await
            .unwrap();
        assert_eq!(resp.status.as_u16(), 200);
        let chain = certs_in(&resp.body);
        let url = format!("https://{}", ca.listen);
        let key_der = || rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let renew = |identity| async {
            let client = CaClient::with_identity(&url, None, &ca.root, identity).unwrap();
            let (_, csr) = key_and_csr("app.pki.test");
            client
                .post(api::RENEW, None, "application/pkcs10", csr)
                .await
        };

        // The leaf alone does not chain to the root: the CA's TLS check
        // refuses it, so nothing is renewed.
        let alone = renew((vec![chain[0].clone()], key_der())).await;
        let err = alone.expect_err("the leaf alone was accepted").to_string();
        assert!(err.contains("failed"), "{err}");

        // Leaf and intermediate, as the CA answered them: renewed, and the
        // answer is a chain again, leaf first.
        let resp = renew((chain.clone(), key_der())).await.unwrap();
        assert_eq!(
            resp.status.as_u16(),
            200,
            "{}",
            String::from_utf8_lossy(&resp.body)
        );
        let renewed = certs_in(&resp.body);
        assert_eq!(renewed.len(), 2);
        assert_eq!(renewed[1], chain[1]);
        let leaf = write_cert(work.path(), "renewed.pem", &renewed[0]);
        let inter = write_cert(work.path(), "inter.pem", &renewed[1]);
        let verified = openssl_verify(&dir, &inter, &leaf, &[]);
        assert!(verified.status.success(), "{}", openssl_text(&verified));
    })
    .await
}

//! Issue 13, items 2, 3 and 5 from the relying parties' side: chains
//! everywhere, revocation at both levels, and the learner's view.
//!
//! The two-level CA (issue 13, item 1) is built here with rcgen: a root,
//! intermediates the root signed, leaves under them, and CRLs each signed
//! by the right issuer. The parties' code (and their binaries) run against
//! it unchanged: every verifier trusts the root alone and takes the
//! intermediates from the chain; every CRL is checked against its issuer;
//! rustls checks each level of a chain and refuses an unknown status.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::CertificateError;

use pki_common::ca::crl::CrlCache;
use pki_common::ca::enroll::Enrolled;
use pki_common::cert::{verify_leaf, CertError, CertInfo, Profile};
use pki_common::files;
use pki_common::revocation::{issuer_id_of, CrlError, CrlSet, ROOT_ID};
use pki_tests::observed::text;
use pki_tests::{binary, bounded, free_port, openssl, wait_for_port, Reaped};

// ------------------------------------------------ a two-level PKI, by hand

/// A CA certificate and the issuer that signs with its key.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// The key, PKCS#8 PEM, to lay out a CA directory.
    key_pem: String,
}

impl Ca {
    fn id(&self) -> String {
        issuer_id_of(&self.cert).expect("a certificate")
    }

    fn serial(&self) -> String {
        CertInfo::parse(&self.cert).unwrap().serial_hex
    }

    /// A CRL signed by this CA: `number`, listing `revoked` (serial, with
    /// keyCompromise), valid for `validity` from a minute ago.
    fn crl(
        &self,
        number: u64,
        revoked: &[u64],
        validity: Duration,
    ) -> CertificateRevocationListDer<'static> {
        let now = SystemTime::now();
        let params = CertificateRevocationListParams {
            this_update: (now - Duration::from_secs(60)).into(),
            next_update: (now + validity).into(),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: (now - Duration::from_secs(30)).into(),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().der().clone()
    }
}

fn ca_params(cn: &str, path_len: u8, serial: u64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from(serial));
    params
}

/// A root (pathLen 1) named `cn`.
fn root(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(cn, 1, 1);
    let cert = params.self_signed(&key).unwrap().der().clone();
    let key_pem = key.serialize_pem();
    Ca {
        cert,
        issuer: Issuer::new(params, key),
        key_pem,
    }
}

/// An intermediate (pathLen 0) named `cn`, signed by `root`.
fn intermediate(root: &Ca, cn: &str, serial: u64) -> Ca {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(cn, 0, serial);
    let cert = params.signed_by(&key, &root.issuer).unwrap().der().clone();
    let key_pem = key.serialize_pem();
    Ca {
        cert,
        issuer: Issuer::new(params, key),
        key_pem,
    }
}

/// A leaf for `name` with the EKU of `profile`, issued by `by`, with its
/// chain (`by` itself, unless `by` is the root).
fn leaf(by: &Ca, name: &str, profile: Profile, serial: u64, root: &Ca) -> Enrolled {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.serial_number = Some(SerialNumber::from(serial));
    params.extended_key_usages = vec![match profile {
        Profile::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Profile::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    let cert = params.signed_by(&key, &by.issuer).unwrap().der().clone();
    let intermediates = if by.cert == root.cert {
        Vec::new()
    } else {
        vec![by.cert.clone()]
    };
    Enrolled {
        key_pem: key.serialize_pem(),
        info: CertInfo::parse(&cert).unwrap(),
        cert,
        intermediates,
    }
}

/// The PKI of most tests: a root, intermediate A (the server's) and B (a
/// client's), a server leaf under A and a client leaf under B.
struct Pki {
    root: Ca,
    a: Ca,
    b: Ca,
    server: Enrolled,
    client: Enrolled,
}

const A_SERIAL: u64 = 0x1a;
const B_SERIAL: u64 = 0x1b;
const SERVER_SERIAL: u64 = 0x5e01;
const CLIENT_SERIAL: u64 = 0x3c01;

fn pki() -> Pki {
    let root = root("Test Root");
    let a = intermediate(&root, "Test Intermediate A", A_SERIAL);
    let b = intermediate(&root, "Test Intermediate B", B_SERIAL);
    let server = leaf(&a, "app.pki.test", Profile::Server, SERVER_SERIAL, &root);
    let client = leaf(
        &b,
        "client1.pki.test",
        Profile::Client,
        CLIENT_SERIAL,
        &root,
    );
    Pki {
        root,
        a,
        b,
        server,
        client,
    }
}

const DAY: Duration = Duration::from_secs(86_400);

impl Pki {
    /// The intermediates, then the CRLs: a CRL bundle as the parties keep
    /// it, with the root's CRL revoking the intermediates in `revoked`.
    fn bundle(&self, root_number: u64, revoked: &[u64]) -> String {
        let certs = [&self.a.cert, &self.b.cert]
            .map(files::cert_to_pem)
            .concat();
        let crls = [
            self.root.crl(root_number, revoked, DAY),
            self.a.crl(1, &[], DAY),
            self.b.crl(1, &[], DAY),
        ]
        .iter()
        .map(|c| files::pem_encode("X509 CRL", c.as_ref()))
        .collect::<String>();
        certs + &crls
    }

    fn set(&self, crls: Vec<CertificateRevocationListDer<'static>>) -> Result<CrlSet, CrlError> {
        CrlSet::verify(
            crls,
            &[self.a.cert.clone(), self.b.cert.clone()],
            &self.root.cert,
            pki_common::unix_now() as i64,
        )
    }
}

/// The chain in a certificate file: the leaf, then its intermediates.
fn chain_pem(e: &Enrolled) -> String {
    e.chain().iter().map(files::cert_to_pem).collect()
}

// ---------------------------------------------- chains against the root

#[test]
fn a_leaf_verifies_against_the_root_alone_through_its_intermediate() {
    let pki = pki();
    let now = UnixTime::now();
    let root = &pki.root.cert;
    let server = &pki.server;
    verify_leaf(
        &server.cert,
        &server.intermediates,
        root,
        Profile::Server,
        Some("app.pki.test"),
        now,
    )
    .unwrap();
    // Without the intermediate there is no path to the root.
    let err = verify_leaf(&server.cert, &[], root, Profile::Server, None, now).unwrap_err();
    assert!(matches!(err, CertError::OtherRoot), "{err}");
    // An intermediate of another root does not help.
    let other = root_and_foreign_leaf();
    let err = verify_leaf(
        &other.cert,
        &other.intermediates,
        root,
        Profile::Server,
        None,
        now,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::OtherRoot), "{err}");
    // The intermediate itself is not a leaf.
    let err = verify_leaf(&pki.a.cert, &[], root, Profile::Server, None, now).unwrap_err();
    assert!(!err.to_string().contains("{ "), "{err}");
}

/// A server leaf under an intermediate of another root with the same names.
fn root_and_foreign_leaf() -> Enrolled {
    let root = root("Test Root");
    let a = intermediate(&root, "Test Intermediate A", A_SERIAL);
    leaf(&a, "app.pki.test", Profile::Server, SERVER_SERIAL, &root)
}

// ----------------------------------------------- the CRL set, by issuer

#[test]
fn each_crl_is_verified_against_its_own_issuer() {
    let pki = pki();
    let set = pki
        .set(vec![pki.a.crl(4, &[], DAY), pki.root.crl(2, &[], DAY)])
        .unwrap();
    assert_eq!(set.len(), 2);
    let root_crl = set.get(ROOT_ID).unwrap();
    assert_eq!((root_crl.number, root_crl.issuer.is_root()), (2, true));
    assert_eq!(set.get(&pki.a.id()).unwrap().number, 4);
    // Which CRL covers which certificate: the leaf on its intermediate's,
    // the intermediate on the root's.
    assert_eq!(
        set.covering(&pki.server.cert).unwrap().issuer.id,
        pki.a.id()
    );
    assert_eq!(set.covering(&pki.a.cert).unwrap().issuer.id, ROOT_ID);
    let coverage = set.describe_coverage(&pki.server.chain());
    assert!(
        coverage.contains(&format!(
            "serial 5e01 on CRL #4 of intermediate {}",
            pki.a.id()
        )) && coverage.contains("serial 1a on CRL #2 of the root (Test Root)"),
        "{coverage}"
    );
    // The root's CRL lists the intermediate: the set says so.
    let set = pki.set(vec![pki.root.crl(3, &[A_SERIAL], DAY)]).unwrap();
    assert!(set.revocation_of(&pki.a.serial()).is_some());
}

#[test]
fn a_crl_signed_by_the_wrong_issuer_is_refused() {
    let pki = pki();
    // An intermediate of another root, with the same name as A.
    let impostor_root = root("Test Root");
    let impostor = intermediate(&impostor_root, "Test Intermediate A", A_SERIAL);
    let err = pki.set(vec![impostor.crl(9, &[], DAY)]).unwrap_err();
    assert!(matches!(err, CrlError::UnknownIssuer { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("neither the CA root nor an intermediate the root signed"));
    // Even when the impostor's certificate is offered with it: it does not
    // chain to the root, so it vouches for nothing, and the root is all
    // there is to check the CRL against.
    let err = CrlSet::verify(
        vec![impostor.crl(9, &[], DAY)],
        std::slice::from_ref(&impostor.cert),
        &pki.root.cert,
        pki_common::unix_now() as i64,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CRL is not signed by the CA root (issued by CN=Test Intermediate A); it comes from another CA or was tampered with"
    );
    // A's CRL with only the root to check it against.
    let err = CrlSet::verify(
        vec![pki.a.crl(1, &[], DAY)],
        &[],
        &pki.root.cert,
        pki_common::unix_now() as i64,
    )
    .unwrap_err();
    assert!(matches!(err, CrlError::NotFromRoot(_)), "{err}");
    // One bad CRL refuses the whole answer: it is not what the CA published.
    let err = pki
        .set(vec![pki.root.crl(1, &[], DAY), impostor.crl(9, &[], DAY)])
        .unwrap_err();
    assert!(matches!(err, CrlError::UnknownIssuer { .. }), "{err}");
}

#[test]
fn no_rollback_holds_per_issuer_in_memory_and_in_the_cache_file() {
    let pki = pki();
    let current = pki
        .set(vec![pki.root.crl(2, &[], DAY), pki.a.crl(5, &[], DAY)])
        .unwrap();
    let offered = pki
        .set(vec![pki.root.crl(3, &[], DAY), pki.a.crl(4, &[], DAY)])
        .unwrap();
    let merged = CrlSet::merge(Some(&current), offered);
    assert_eq!(
        merged.set.get(ROOT_ID).unwrap().number,
        3,
        "the root's newer CRL"
    );
    assert_eq!(
        merged.set.get(&pki.a.id()).unwrap().number,
        5,
        "A's is not rolled back"
    );
    assert_eq!(merged.refused.len(), 1);
    let (issuer, err) = &merged.refused[0];
    assert_eq!(issuer.id, pki.a.id());
    assert_eq!(
        err.to_string(),
        "CRL #4 is older than CRL #5, which is in use; an older CRL is never installed (it would un-revoke certificates)"
    );

    // The cache file: stored, read back with the root alone, and never
    // rolled back issuer by issuer.
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("ca.pem");
    files::write_public(&root_file, &files::cert_to_pem(&pki.root.cert)).unwrap();
    let cache = CrlCache::next_to(&root_file);
    assert!(cache.path.ends_with("ca.crls.pem"));
    assert!(cache.store(&merged.set, &pki.root.cert).unwrap());
    let older_root = pki
        .set(vec![pki.root.crl(1, &[], DAY), pki.a.crl(6, &[], DAY)])
        .unwrap();
    assert!(
        cache.store(&older_root, &pki.root.cert).unwrap(),
        "A's #6 is newer"
    );
    let loaded = cache.load(&pki.root.cert).unwrap();
    assert_eq!(
        loaded.get(ROOT_ID).unwrap().number,
        3,
        "the root's #1 did not replace #3"
    );
    assert_eq!(loaded.get(&pki.a.id()).unwrap().number, 6);
}

// ------------------------------------------- rustls: every level checked

/// The client's verdict (rustls's WebPKI server verifier, as the client
/// builds it) on the server's chain, with `crls`.
fn client_verdict(
    pki: &Pki,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<(), rustls::Error> {
    let verifier = pki_common::tls::server_verifier(&pki.root.cert, crls).unwrap();
    let name = ServerName::try_from("app.pki.test").unwrap();
    verifier
        .verify_server_cert(
            &pki.server.cert,
            &pki.server.intermediates,
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn rustls_checks_the_whole_chain_and_refuses_an_unknown_status_at_any_level() {
    let pki = pki();
    let all = |root_revokes: &[u64]| {
        pki.set(vec![
            pki.root.crl(1, root_revokes, DAY),
            pki.a.crl(1, &[], DAY),
        ])
        .unwrap()
        .ders()
    };
    client_verdict(&pki, all(&[])).unwrap();
    // Revoking the intermediate revokes every leaf under it (depth: the
    // whole chain).
    let err = client_verdict(&pki, all(&[A_SERIAL])).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
    // Revoking the other intermediate changes nothing for this chain.
    client_verdict(&pki, all(&[B_SERIAL])).unwrap();
    // No CRL from the root: the intermediate's status is unknown: refused.
    let err = client_verdict(&pki, vec![pki.a.crl(1, &[], DAY)]).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
    );
    // No CRL from the intermediate: the leaf's status is unknown: refused.
    let err = client_verdict(&pki, vec![pki.root.crl(1, &[], DAY)]).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
    );
    // An expired intermediate CRL is refused too (expiration enforced).
    let expired = {
        let now = SystemTime::now();
        let params = CertificateRevocationListParams {
            this_update: (now - Duration::from_secs(7200)).into(),
            next_update: (now - Duration::from_secs(3600)).into(),
            crl_number: SerialNumber::from(2u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&pki.a.issuer).unwrap().der().clone()
    };
    let err = client_verdict(&pki, vec![pki.root.crl(1, &[], DAY), expired]).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::ExpiredRevocationList
                    | CertificateError::ExpiredRevocationListContext { .. }
            )
        ),
        "{err:?}"
    );
    let text = pki_common::tls::describe_tls_error(&err);
    assert_eq!(text, "certificate verification failed: the CRL has expired");
}

// ------------------------------------------------ through the binaries

/// A directory laid out as a two-level CA and its parties leave it: the
/// root (no root key: it is offline), intermediates with their keys, the
/// root's CRL, A's CRL as `ca.crl.pem`, and the server's and client's
/// chains and keys.
fn lay_out(dir: &Path, pki: &Pki, root_revokes: &[u64]) {
    files::write_public(&dir.join("ca.pem"), &files::cert_to_pem(&pki.root.cert)).unwrap();
    for ca in [&pki.a, &pki.b] {
        let base = dir.join("intermediates").join(ca.id());
        files::write_public(&base.with_extension("pem"), &files::cert_to_pem(&ca.cert)).unwrap();
        files::write_private_key(&base.with_extension("key"), &ca.key_pem).unwrap();
    }
    let pem = |c: &CertificateRevocationListDer<'_>| files::pem_encode("X509 CRL", c.as_ref());
    files::write_public(
        &dir.join("root.crl.pem"),
        &pem(&pki.root.crl(1, root_revokes, DAY)),
    )
    .unwrap();
    files::write_public(&dir.join("ca.crl.pem"), &pem(&pki.a.crl(1, &[], DAY))).unwrap();
    files::write_public(&dir.join("ca.crls.pem"), &pki.bundle(1, root_revokes)).unwrap();
    for (tag, e) in [("server", &pki.server), ("client", &pki.client)] {
        files::write_public(&dir.join(format!("{tag}.pem")), &chain_pem(e)).unwrap();
        files::write_private_key(&dir.join(format!("{tag}.key")), &e.key_pem).unwrap();
    }
}

/// Starts `pki-server` over `dir` with the server's files already there
/// (reused, no CA needed: the CRLs come from `ca.crls.pem`), its log in
/// `dir/server.log`.
async fn start_server(dir: &Path, extra: &[&str]) -> (Reaped, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new(binary("pki-server"))
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .args(["--ca-url", &format!("https://127.0.0.1:{}", free_port())])
        .args(["--enroll-deadline", "2s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let child = Reaped(child);
    wait_for_port(addr, Duration::from_secs(20)).await;
    (child, addr)
}

/// `pki-client request memo` against `addr`, trusting `dir/ca.pem`,
/// checking revocation against `crl`.
async fn client_request(dir: &Path, addr: std::net::SocketAddr, crl: &Path, cert: bool) -> Output {
    let dir = dir.to_path_buf();
    let crl = crl.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(binary("pki-client"));
        cmd.args([
            "--dir",
            dir.to_str().unwrap(),
            "--server",
            &addr.to_string(),
        ])
        .args(["--crl", crl.to_str().unwrap()]);
        if !cert {
            cmd.arg("--no-client-cert");
        }
        cmd.args(["request", "memo"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The `pki-client: …` line of a failed run, checked for the error style.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pki-client: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"))
        .to_string();
    assert!(!line.contains("{ ") && !line.contains("Context"), "{line}");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_presents_its_chain_and_the_client_narrates_who_signed_what() {
    bounded(async {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        lay_out(dir.path(), &pki, &[]);
        let (_server, addr) = start_server(dir.path(), &[]).await;

        // openssl, given the root alone, sees two certificates and verifies.
        let addr_s = addr.to_string();
        let root = dir.path().join("ca.pem");
        let s_client = tokio::task::spawn_blocking(move || {
            openssl(&[
                "s_client", "-connect", &addr_s, "-servername", "app.pki.test", "-showcerts",
                "-CAfile", root.to_str().unwrap(), "-verify_return_error",
            ])
        })
        .await
        .unwrap();
        let shown = text(&s_client.stdout);
        assert_eq!(shown.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{shown}");
        assert!(shown.contains("Verify return code: 0 (ok)"), "{shown}");

        let out = client_request(dir.path(), addr, &dir.path().join("ca.crls.pem"), false).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "take cis3319 class this morning\n");
        let stderr = text(&out.stderr);
        let a = pki.a.id();
        for expected in [
            "phase 2 · revocation: CRL #1 from ".to_string(),
            "is signed by the root and current until".into(),
            format!("is signed by intermediate {a} (Test Intermediate A), which the root signed, and current until"),
            format!("phase 2 · server chain: app.pki.test (serial 5e01) ← signed by intermediate \"Test Intermediate A\" (id {a}) ← signed by the root \"Test Root\", which signs only intermediates (its key can stay offline)"),
            format!("phase 2 · server revocation: serial 5e01 on CRL #1 of intermediate {a} (Test Intermediate A); serial 1a on CRL #1 of the root (Test Root)"),
        ] {
            assert!(stderr.contains(&expected), "no {expected:?} in:\n{stderr}");
        }
        // The server said the same of its own certificate at start.
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
        assert!(
            log.contains(&format!("phase 1 · chain: app.pki.test (serial 5e01) ← signed by intermediate \"Test Intermediate A\" (id {a})")),
            "{log}"
        );
        assert!(
            log.contains("phase 1 · revocation: serial 5e01 on CRL #1 of intermediate"),
            "{log}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_intermediate_fails_every_leaf_under_it_on_both_sides() {
    bounded(async {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        // The root has revoked B, the client's intermediate, but not A.
        lay_out(dir.path(), &pki, &[B_SERIAL]);
        let (_server, addr) =
            start_server(dir.path(), &["--require-client-cert"]).await;
        let crls = dir.path().join("ca.crls.pem");

        // The server refuses the client: its certificate is not listed,
        // its intermediate is.
        let out = client_request(dir.path(), addr, &crls, true).await;
        let line = error_line(&out);
        assert!(
            line.contains("it does not accept our certificate: revoked"),
            "{line}"
        );
        assert!(out.stdout.is_empty());

        // The root revokes A as well: the client refuses the server, and
        // says that it is the intermediate, not the server's certificate,
        // that is listed.
        let revoked = dir.path().join("revoked.crls.pem");
        files::write_public(&revoked, &pki.bundle(2, &[A_SERIAL, B_SERIAL])).unwrap();
        let out = client_request(dir.path(), addr, &revoked, false).await;
        let line = error_line(&out);
        assert_eq!(
            line,
            "pki-client: server certificate 5e01 was issued by the intermediate Test Intermediate A (serial 1a), which the root has revoked (keyCompromise)"
        );
        assert!(
            text(&out.stderr).contains("\nhint: every certificate it issued is refused: the server needs a certificate from the CA's current intermediate (restart pki-server with a new token)\n"),
            "{}",
            text(&out.stderr)
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_root_intermediate_leaf_the_offline_key_and_the_crls() {
    bounded(async {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        lay_out(dir.path(), &pki, &[B_SERIAL]);
        let exe = binary("pki-ca");
        let d = dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(exe)
                .args(["--dir", d.to_str().unwrap(), "inspect"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let report = text(&out.stdout);
        let (a, b) = (pki.a.id(), pki.b.id());
        for expected in [
            "Hierarchy (who signed what):".to_string(),
            "root CN=Test Root (ca.pem)".into(),
            format!("key: not in {} — OFFLINE", dir.path().display()),
            "its CRL (lists revoked intermediates): CRL #1 (".into(),
            format!("└─ intermediate \"Test Intermediate A\" (id {a}), signed by the root"),
            format!("key: intermediates/{a}.key — ONLINE"),
            "└─ server.pem: app.pki.test (serial 5e01)".into(),
            format!("└─ intermediate \"Test Intermediate B\" (id {b}), signed by the root"),
            "└─ client.pem: client1.pki.test (serial 3c01)".into(),
        ] {
            assert!(report.contains(&expected), "no {expected:?} in:\n{report}");
        }
        let line = |name: &str| {
            report
                .lines()
                .find(|l| l.starts_with(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in:\n{report}"))
                .to_string()
        };
        let server = line("server.pem");
        assert!(
            server.contains("signed by Test Intermediate A")
                && server.contains("chain OK to the root in")
                && server.contains(&format!("not revoked (CRL #1 of intermediate {a}")),
            "{server}"
        );
        let client = line("client.pem");
        assert!(
            client.contains("REVOKED: its intermediate Test Intermediate B is revoked (keyCompromise) per CRL #1 of the root"),
            "{client}"
        );
        let int_b = line(&format!("intermediates/{b}.pem"));
        assert!(int_b.contains("REVOKED (keyCompromise) per CRL #1 of the root"), "{int_b}");
        assert!(line("ca.crl.pem").contains(&format!("signed by intermediate {a}")), "{report}");
        assert!(line("root.crl.pem").contains("signed by the root"), "{report}");
    })
    .await
}

// ------------------------------------------- the server's CRL refresh

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_root_crl_revoking_the_clients_intermediate_ends_its_session() {
    bounded(async {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        lay_out(dir.path(), &pki, &[]);
        let identity = pki_server::identity::Identity::from_chain(
            pki.root.cert.clone(),
            pki.server.chain(),
            &pki.server.key_pem,
        )
        .unwrap();
        let server = pki_tests::RunningServer::with_identity(identity, |c| {
            c.certs_dir = dir.path().to_path_buf();
            c.client_auth = pki_server::ClientAuth::Required;
            c.enrollment.ca_url = format!("https://127.0.0.1:{}", free_port());
        })
        .await;
        let installed = server.shared.live.current().crls.clone().unwrap();
        assert_eq!(
            installed.len(),
            3,
            "the root's and both intermediates' CRLs"
        );

        let config = pki_client::ClientConfig {
            server: server.addr.to_string(),
            ca: dir.path().join("ca.pem"),
            crl: pki_client::CrlSource::File(dir.path().join("ca.crls.pem")),
            client_id: "client1.pki.test".into(),
            identity: Some(pki.client.clone()),
            ..pki_client::ClientConfig::default()
        };
        let mut conn = pki_client::Connection::connect(&config).await.unwrap();
        let mut session = conn.register().await.unwrap();
        conn.request(&mut session, "memo", b"").await.unwrap();
        let ticket = session.ticket().cloned().unwrap();

        // The root revokes B; the server installs the new set (as its
        // refresh would): the session bound to a certificate under B ends,
        // and so does the connection.
        let revoked = pki
            .set(vec![
                pki.root.crl(2, &[B_SERIAL], DAY),
                pki.b.crl(1, &[], DAY),
            ])
            .unwrap();
        pki_server::live::install_crl(&server.shared, revoked).await;
        let err = conn.request(&mut session, "memo", b"").await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        // Its ticket no longer resumes it, on any connection.
        let mut again = pki_client::Connection::connect(&config).await.unwrap();
        let err = again.resume(&ticket).await.err().expect("refused");
        assert!(err.to_string().contains("revoked"), "{err}");
        // The set in use still holds A's CRL, which the offer did not carry.
        let now = server.shared.live.current().crls.clone().unwrap();
        assert_eq!(now.get(ROOT_ID).unwrap().number, 2);
        assert!(now.get(&pki.a.id()).is_some());
    })
    .await
}

#[test]
fn the_cas_own_crl_files_stand_in_for_the_cache_in_a_shared_directory() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path(), &pki, &[B_SERIAL]);
    std::fs::remove_file(dir.path().join("ca.crls.pem")).unwrap();
    // root.crl.pem (the root's), ca.crl.pem (A's, checked with
    // intermediates/), as `pki-ca serve` leaves them in its directory.
    let cache = CrlCache::next_to(&dir.path().join("ca.pem"));
    let set = cache.load(&pki.root.cert).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.revocation_of(&pki.b.serial()).is_some());
    assert_eq!(
        set.covering(&pki.server.cert).unwrap().issuer.id,
        pki.a.id()
    );
    // An older root CRL there never replaces the newer one in the cache.
    cache
        .store(
            &pki.set(vec![pki.root.crl(5, &[], DAY)]).unwrap(),
            &pki.root.cert,
        )
        .unwrap();
    let set = cache.load(&pki.root.cert).unwrap();
    assert_eq!(set.get(ROOT_ID).unwrap().number, 5);
    assert!(set.revocation_of(&pki.b.serial()).is_none());
}

//! Issue 13, item 4: revocation that any relying party can find.
//!
//! A root → intermediate → leaf hierarchy whose certificates carry the CA's
//! CRL Distribution Points and AIA caIssuers (`pki_ca::extensions`),
//! pointing at the CA's plain-HTTP listener (`pki_ca::publish`). Then only
//! tools outside this project: with the leaf and the root alone on disk,
//! curl fetches the intermediate from the leaf's AIA URL, and
//! `openssl verify -crl_download -crl_check_all` downloads every CRL of the
//! chain from the certificates' CRL Distribution Points.
//!
//! The hierarchy is built here with rcgen, as the CA will build it: these
//! tests prove the extensions and the listener, whoever signs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pki_ca::extensions::{crl_pointer, revocation_pointers};
use pki_ca::publish::{PublicListener, PublicSource};
use pki_common::shutdown::{self, ShutdownTrigger};
use pki_tests::bounded;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};

/// The intermediate's id, as the CA derives it (16 hex digits of its SKI);
/// any id of the right shape does here.
const INT_ID: &str = "0123456789abcdef";
const GOOD_SERIAL: u64 = 0x1001;
const REVOKED_SERIAL: u64 = 0x1002;
const INT_SERIAL: u64 = 0x0101;

/// What the plain-HTTP listener publishes; the CRLs can be replaced while
/// it serves, as the CA re-signs them.
#[derive(Default)]
struct Published {
    crls: Mutex<HashMap<String, Vec<u8>>>,
    certs: HashMap<String, Vec<u8>>,
}

impl PublicSource for Published {
    fn crl_der(&self, id: &str) -> Option<Vec<u8>> {
        self.crls.lock().unwrap().get(id).cloned()
    }
    fn issuer_der(&self, id: &str) -> Option<Vec<u8>> {
        self.certs.get(id).cloned()
    }
}

/// The hierarchy: the two issuers (for signing CRLs) and the certificates.
struct Hierarchy {
    root: Issuer<'static, KeyPair>,
    intermediate: Issuer<'static, KeyPair>,
    root_pem: String,
    intermediate_der: Vec<u8>,
    root_der: Vec<u8>,
    good_leaf_pem: String,
    revoked_leaf_pem: String,
}

fn ca_params(name: &str, path_len: u8, serial: u64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from(serial));
    params
}

fn leaf(base: &str, serial: u64, intermediate: &Issuer<'_, KeyPair>) -> String {
    let mut params = CertificateParams::new(vec!["leaf.pki.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "leaf.pki.test");
    params.serial_number = Some(SerialNumber::from(serial));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    revocation_pointers(&mut params, base, INT_ID);
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, intermediate).unwrap().pem()
}

/// Root (pathLen 1, its own CRL Distribution Point: see
/// `crl_pointer`'s doc), intermediate (pathLen 0, pointing at the root's
/// CRL and certificate), and two leaves pointing at the intermediate's.
/// `root_crldp: false` leaves the root without its pointer.
fn hierarchy(base: &str, root_crldp: bool) -> Hierarchy {
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = ca_params("pki-auth test Root CA", 1, 1);
    if root_crldp {
        crl_pointer(&mut root_params, base, "root");
    }
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root = Issuer::from_ca_cert_der(root_cert.der(), root_key).unwrap();

    let int_key = KeyPair::generate().unwrap();
    let mut int_params = ca_params("pki-auth test Intermediate CA", 0, INT_SERIAL);
    int_params.use_authority_key_identifier_extension = true;
    revocation_pointers(&mut int_params, base, "root");
    let int_cert = int_params.signed_by(&int_key, &root).unwrap();
    let intermediate = Issuer::from_ca_cert_der(int_cert.der(), int_key).unwrap();

    Hierarchy {
        good_leaf_pem: leaf(base, GOOD_SERIAL, &intermediate),
        revoked_leaf_pem: leaf(base, REVOKED_SERIAL, &intermediate),
        root_pem: root_cert.pem(),
        root_der: root_cert.der().to_vec(),
        intermediate_der: int_cert.der().to_vec(),
        root,
        intermediate,
    }
}

/// A CRL by `issuer` numbered `number`, current for an hour, listing
/// `revoked` serials.
fn crl(issuer: &Issuer<'_, KeyPair>, number: u64, revoked: &[u64]) -> Vec<u8> {
    // rcgen takes `time` values; the epoch plus a std Duration is one.
    let now = pki_common::unix_now();
    let at = |unix: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix);
    CertificateRevocationListParams {
        this_update: at(now - 300),
        next_update: at(now + 3600),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from(*serial),
                revocation_time: at(now - 60),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

/// The plain-HTTP listener, bound BEFORE anything is issued so that the
/// URL in the certificates is known (port 0: no race for a free port).
struct Public {
    base: String,
    _stop: ShutdownTrigger,
}

async fn bind_public() -> (PublicListener, String) {
    let listener = PublicListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    (listener, base)
}

fn serve(listener: PublicListener, base: String, source: Arc<Published>) -> Public {
    let (stop, shutdown) = shutdown::channel();
    tokio::spawn(listener.serve(source, shutdown));
    Public { base, _stop: stop }
}

/// The initial publication: both issuers' certificates, empty CRLs.
fn publish(h: &Hierarchy) -> Arc<Published> {
    Arc::new(Published {
        crls: Mutex::new(HashMap::from([
            ("root".to_string(), crl(&h.root, 1, &[])),
            (INT_ID.to_string(), crl(&h.intermediate, 1, &[])),
        ])),
        certs: HashMap::from([
            ("root".to_string(), h.root_der.clone()),
            (INT_ID.to_string(), h.intermediate_der.clone()),
        ]),
    })
}

/// Runs `program` with `args` in `dir`, with no proxy from the
/// environment between it and 127.0.0.1; exit status and stdout+stderr.
async fn run(dir: &Path, program: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("no_proxy", "*")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} must be installed to run these tests: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What a relying party with only `leaf.pem` and `root.pem` does: finds
/// the intermediate through the leaf's AIA caIssuers URL (curl), then has
/// openssl download the CRLs through CRL Distribution Points and check
/// every level. Returns openssl verify's status and output.
async fn relying_party(dir: &Path, leaf_pem: &str, root_pem: &str) -> (bool, String) {
    std::fs::write(dir.join("leaf.pem"), leaf_pem).unwrap();
    std::fs::write(dir.join("root.pem"), root_pem).unwrap();
    let (ok, aia) = run(
        dir,
        "openssl",
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "authorityInfoAccess",
        ],
    )
    .await;
    assert!(ok, "{aia}");
    let url = aia
        .lines()
        .find_map(|l| l.trim().strip_prefix("CA Issuers - URI:"))
        .unwrap_or_else(|| panic!("no AIA caIssuers URL in the leaf: {aia}"))
        .to_string();
    let (ok, fetched) = run(
        dir,
        "curl",
        &[
            "-sS",
            "--fail",
            "--noproxy",
            "*",
            "-o",
            "intermediate.der",
            "-w",
            "%{content_type}",
            &url,
        ],
    )
    .await;
    assert!(ok, "curl {url}: {fetched}");
    assert_eq!(fetched, "application/pkix-cert");
    let (ok, text) = run(
        dir,
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "intermediate.der",
            "-out",
            "intermediate.pem",
        ],
    )
    .await;
    assert!(ok, "the AIA URL did not serve a DER certificate: {text}");
    run(
        dir,
        "openssl",
        &[
            "verify",
            "-crl_download",
            "-crl_check_all",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ],
    )
    .await
}

/// The certificates point where the listener serves, as openssl shows.
async fn assert_pointers(dir: &Path, h: &Hierarchy, base: &str) {
    let base = base.trim_end_matches('/');
    std::fs::write(dir.join("leaf.pem"), &h.good_leaf_pem).unwrap();
    let (ok, text) = run(
        dir,
        "openssl",
        &["x509", "-in", "leaf.pem", "-noout", "-text"],
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("X509v3 CRL Distribution Points"), "{text}");
    assert!(
        text.contains(&format!("URI:{base}/crl/{INT_ID}.crl")),
        "{text}"
    );
    assert!(
        text.contains(&format!("CA Issuers - URI:{base}/issuer/{INT_ID}.crt")),
        "{text}"
    );
    std::fs::write(dir.join("int.der"), &h.intermediate_der).unwrap();
    let (ok, text) = run(
        dir,
        "openssl",
        &[
            "x509", "-inform", "DER", "-in", "int.der", "-noout", "-text",
        ],
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.contains(&format!("URI:{base}/crl/root.crl")), "{text}");
    assert!(
        text.contains(&format!("CA Issuers - URI:{base}/issuer/root.crt")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_finds_the_intermediate_and_every_crl_from_the_leaf_and_root_alone() {
    bounded(async {
        let (listener, base) = bind_public().await;
        let h = hierarchy(&base, true);
        let source = publish(&h);
        let public = serve(listener, base, source.clone());
        let dir = tempfile::tempdir().unwrap();
        assert_pointers(dir.path(), &h, &public.base).await;

        // Nothing revoked: both leaves verify.
        for leaf in [&h.good_leaf_pem, &h.revoked_leaf_pem] {
            let (ok, text) = relying_party(dir.path(), leaf, &h.root_pem).await;
            assert!(ok, "a valid leaf must verify: {text}");
            assert!(text.contains("leaf.pem: OK"), "{text}");
        }

        // The intermediate revokes one leaf: only that one fails, and
        // openssl says why.
        source.crls.lock().unwrap().insert(
            INT_ID.to_string(),
            crl(&h.intermediate, 2, &[REVOKED_SERIAL]),
        );
        let (ok, text) = relying_party(dir.path(), &h.revoked_leaf_pem, &h.root_pem).await;
        assert!(!ok, "a revoked leaf must not verify: {text}");
        assert!(text.contains("certificate revoked"), "{text}");
        assert!(text.contains("error 23 at 0 depth"), "{text}");
        let (ok, text) = relying_party(dir.path(), &h.good_leaf_pem, &h.root_pem).await;
        assert!(ok, "{text}");

        // The root revokes the intermediate: every leaf under it fails,
        // at the intermediate's depth.
        source
            .crls
            .lock()
            .unwrap()
            .insert("root".to_string(), crl(&h.root, 2, &[INT_SERIAL]));
        let (ok, text) = relying_party(dir.path(), &h.good_leaf_pem, &h.root_pem).await;
        assert!(!ok, "a leaf under a revoked intermediate must fail: {text}");
        assert!(text.contains("certificate revoked"), "{text}");
        assert!(text.contains("error 23 at 1 depth"), "{text}");
    })
    .await;
}

/// The pointers change nothing for rustls (webpki), which gets its CRLs
/// from our parties rather than from the URLs: the chain with CRLDP and AIA
/// at every level verifies against the root with both CRLs, revocation
/// checked along the whole chain and an unknown status refused, and a
/// revoked leaf is refused as revoked.
#[test]
fn rustls_verifies_the_chain_that_carries_the_pointers() {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};

    let h = hierarchy("http://127.0.0.1:9/", true);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(h.root_der.clone())).unwrap();
    let crls = vec![
        CertificateRevocationListDer::from(crl(&h.root, 1, &[])),
        CertificateRevocationListDer::from(crl(&h.intermediate, 2, &[REVOKED_SERIAL])),
    ];
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), pki_common::tls::provider())
            .with_crls(crls)
            .enforce_revocation_expiration()
            .build()
            .unwrap();
    let intermediates = [CertificateDer::from(h.intermediate_der.clone())];
    let name = ServerName::try_from("leaf.pki.test").unwrap();
    let verify = |pem: &str| {
        let leaf =
            pki_common::files::pem_or_der::<CertificateDer<'static>>(pem.as_bytes()).unwrap();
        verifier.verify_server_cert(&leaf, &intermediates, &name, &[], UnixTime::now())
    };
    verify(&h.good_leaf_pem).expect("the valid leaf must verify in rustls");
    let refused = verify(&h.revoked_leaf_pem).unwrap_err();
    assert_eq!(
        refused,
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
    );
}

/// Why the root carries a CRL Distribution Point to its own CRL:
/// `-crl_check_all` wants a CRL for the trust anchor too, and with
/// `-crl_download` finds it only through that pointer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_roots_own_pointer_crl_check_all_cannot_finish() {
    bounded(async {
        let (listener, base) = bind_public().await;
        let h = hierarchy(&base, false);
        let _public = serve(listener, base, publish(&h));
        let dir = tempfile::tempdir().unwrap();
        let (ok, text) = relying_party(dir.path(), &h.good_leaf_pem, &h.root_pem).await;
        assert!(!ok, "{text}");
        assert!(
            text.contains("error 3 at 2 depth lookup: unable to get certificate CRL"),
            "{text}"
        );
    })
    .await;
}

/// An unknown issuer is a 404 to curl, and a CRL comes with its media
/// type, as RFC 5280 §4.2.1.13 asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_the_media_types_and_a_404_for_an_unknown_issuer() {
    bounded(async {
        let (listener, base) = bind_public().await;
        let h = hierarchy(&base, true);
        let public = serve(listener, base, publish(&h));
        let dir = tempfile::tempdir().unwrap();
        let get = |path: String| {
            let url = format!("{}{path}", public.base);
            let dir = dir.path().to_path_buf();
            async move {
                run(
                    &dir,
                    "curl",
                    &[
                        "-sS",
                        "--noproxy",
                        "*",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code} %{content_type}",
                        &url,
                    ],
                )
                .await
            }
        };
        let (_, text) = get(format!("crl/{INT_ID}.crl")).await;
        assert_eq!(text, "200 application/pkix-crl");
        let (_, text) = get("crl/root.crl".into()).await;
        assert_eq!(text, "200 application/pkix-crl");
        let (_, text) = get("issuer/root.crt".into()).await;
        assert_eq!(text, "200 application/pkix-cert");
        let (_, text) = get("crl/fedcba9876543210.crl".into()).await;
        assert!(text.starts_with("404 "), "{text}");
        let (_, text) = get("crl/..%2f..%2fca.key.crl".into()).await;
        assert!(text.starts_with("400 "), "{text}");
    })
    .await;
}

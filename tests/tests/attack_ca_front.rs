//! Attacks on the CA's network face and identity (issue 11, items 3, 5,
//! 16a and 16c): slow requests that hold connection slots, a rogue
//! endpoint posing as the CA, error answers that are not JSON, and the
//! case of the `Authorization` scheme.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pki_ca::serve::{CaServer, ServeOptions};
use pki_ca::{Ca, CaError};
use pki_common::ca::api;
use pki_common::ca::client::{CaClient, HttpsError};
use pki_common::ca::enroll::{enroll, EnrollError, Retry};
use pki_common::cert::Profile;
use pki_common::files;
use pki_common::shutdown::{self, ShutdownTrigger};
use pki_common::tls::verify::CA_ENDPOINT_EKU_OID;
use pki_tests::refusals::expect_csr_refusal;
use pki_tests::{binary, bounded, csr_for, offline_ca, openssl_ok, TestPki};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

// ------------------------------------------------------------- fixtures

/// A CA served with options the test chooses (timeouts, connection cap,
/// names), in its own directory.
struct FrontCa {
    _dir: tempfile::TempDir,
    ca: Arc<Ca>,
    addr: SocketAddr,
    _stop: ShutdownTrigger,
}

impl FrontCa {
    async fn start(tweak: impl FnOnce(&mut ServeOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, ca) = offline_ca(dir.path());
        let ca = Arc::new(ca);
        let mut opts = ServeOptions::on("127.0.0.1:0".parse().unwrap());
        tweak(&mut opts);
        let server = CaServer::bind(ca.clone(), opts).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, shutdown) = shutdown::channel();
        tokio::spawn(server.run(shutdown));
        FrontCa {
            _dir: dir,
            ca,
            addr,
            _stop: stop,
        }
    }

    fn root(&self) -> CertificateDer<'static> {
        self.ca.root().cert.clone()
    }

    fn client(&self) -> CaClient {
        CaClient::new(&format!("https://{}", self.addr), None, &self.root()).unwrap()
    }
}

/// A TLS connection to `addr` trusting `root`, for requests written by
/// hand; `None` if the server closed it during the handshake (as it does
/// over the connection cap).
async fn tls_to(addr: SocketAddr, root: &CertificateDer<'_>) -> Option<TlsStream<TcpStream>> {
    let config = pki_common::tls::client_config(root).unwrap();
    let tcp = TcpStream::connect(addr).await.ok()?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp)
        .await
        .ok()
}

/// Reads until the peer closes or `bound` passes: what arrived, and
/// whether the connection was closed within the bound.
async fn read_until_closed<R: AsyncReadExt + Unpin>(
    stream: &mut R,
    bound: Duration,
) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            // A close with or without close_notify: either way the CA let go.
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a whole HTTP/1.1 request by hand and reads the answer until the
/// CA closes: the status and the body.
async fn raw_request(
    addr: SocketAddr,
    root: &CertificateDer<'_>,
    head: &str,
    body: &[u8],
) -> (u16, String) {
    let mut tls = tls_to(addr, root).await.expect("TLS to the CA");
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    tls.flush().await.unwrap();
    let (text, closed) = read_until_closed(&mut tls, Duration::from_secs(10)).await;
    assert!(
        closed,
        "the CA did not close after Connection: close:\n{text}"
    );
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Asserts `resp` is the JSON problem document `code` with `status`.
fn assert_problem(resp: &pki_common::ca::client::Response, status: u16, code: &str) {
    let err = resp.error_body().unwrap_or_else(|| {
        panic!(
            "expected a JSON problem {code}, got {} {:?}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        )
    });
    assert_eq!(
        (resp.status.as_u16(), err.error.as_str()),
        (status, code),
        "{}",
        err.detail
    );
    assert!(!err.detail.is_empty());
}

// ----------------------------------------- item 3: slow requests

/// Headers announcing a body that will come slowly, or never.
const SLOW_HEAD: &str = "POST /v1/sign HTTP/1.1\r\nHost: ca\r\nAuthorization: Bearer x\r\n\
                         Content-Type: application/pkcs10\r\nContent-Length: 1000\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_beyond_the_connection_cap_are_cut_and_health_answers_again() {
    bounded(async {
        const CAP: usize = 3;
        let timeout = Duration::from_millis(800);
        let ca = FrontCa::start(|o| {
            o.listener.max_connections = CAP;
            o.request_timeout = timeout;
        })
        .await;
        let started = tokio::time::Instant::now();
        // Twice the cap: the first CAP hold every slot, the rest are
        // turned away at once. Half trickle a byte every 100 ms, half send
        // no body at all.
        let mut slow = Vec::new();
        for i in 0..2 * CAP {
            let Some(tls) = tls_to(ca.addr, &ca.root()).await else {
                continue;
            };
            let (mut rd, mut wr) = tokio::io::split(tls);
            slow.push(tokio::spawn(async move {
                wr.write_all(SLOW_HEAD.as_bytes()).await.unwrap();
                wr.flush().await.unwrap();
                let trickle = async move {
                    if i % 2 == 0 {
                        while wr.write_all(b"A").await.is_ok() && wr.flush().await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    std::future::pending::<()>().await
                };
                tokio::select! {
                    read = read_until_closed(&mut rd, Duration::from_secs(20)) => read,
                    _ = trickle => unreachable!(),
                }
            }));
        }
        assert!(
            slow.len() >= CAP,
            "only {} slow connections got through",
            slow.len()
        );

        // /health answers once the slow ones are cut, within a few of the
        // request deadlines.
        let client = ca.client();
        loop {
            if let Ok(resp) = client.get(api::HEALTH).await {
                assert_eq!(resp.status, 200);
                break;
            }
            assert!(
                started.elapsed() < 4 * timeout,
                "/health did not answer within {:?}",
                4 * timeout
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for conn in slow {
            let (answer, closed) = conn.await.unwrap();
            assert!(closed, "a slow connection was left open:\n{answer}");
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{answer}"
            );
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_request_or_with_trickled_headers_is_closed() {
    bounded(async {
        let timeout = Duration::from_millis(500);
        let ca = FrontCa::start(|o| o.request_timeout = timeout).await;

        // The handshake, then silence.
        let mut silent = tls_to(ca.addr, &ca.root()).await.unwrap();
        let (got, closed) = read_until_closed(&mut silent, 6 * timeout).await;
        assert!(closed && got.is_empty(), "closed: {closed}, got {got:?}");

        // Headers one byte every 100 ms: never complete in time.
        let tls = tls_to(ca.addr, &ca.root()).await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(tls);
        let trickle = tokio::spawn(async move {
            for b in "GET /health HTTP/1.1\r\nX-Slow: "
                .bytes()
                .chain(std::iter::repeat(b'a'))
            {
                if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let (got, closed) = read_until_closed(&mut rd, 6 * timeout).await;
        assert!(closed, "trickled headers kept the connection open");
        assert!(!got.contains("200 OK"), "{got}");
        trickle.abort();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_bound() {
    bounded(async {
        let timeout = Duration::from_millis(500);
        let ca = FrontCa::start(|o| o.request_timeout = timeout).await;
        let mut tls = tls_to(ca.addr, &ca.root()).await.unwrap();
        tls.write_all(b"GET /health HTTP/1.1\r\nHost: ca\r\n\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        // The answer comes, and the connection stays open for more...
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).ends_with("ok\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
        // ...but not forever.
        let (more, closed) = read_until_closed(&mut tls, 6 * timeout).await;
        assert!(closed && more.is_empty(), "closed: {closed}, got {more:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_loses_its_slot() {
    bounded(async {
        let timeout = Duration::from_millis(500);
        let ca = FrontCa::start(|o| {
            o.listener.max_connections = 1;
            o.request_timeout = timeout;
        })
        .await;
        // Pipelined requests, answers never read, a small receive buffer:
        // the CA's writes soon block, with the only slot held.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(ca.addr).await.unwrap();
        let config = pki_common::tls::client_config(&ca.root()).unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp)
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let flood = tokio::spawn(async move {
            let batch = "GET /v1/root HTTP/1.1\r\nHost: ca\r\n\r\n".repeat(100);
            for _ in 0..2000 {
                if tls.write_all(batch.as_bytes()).await.is_err() {
                    return true;
                }
            }
            false
        });
        let client = ca.client();
        loop {
            if let Ok(resp) = client.get(api::HEALTH).await {
                assert_eq!(resp.status, 200);
                break;
            }
            assert!(
                started.elapsed() < 20 * timeout,
                "/health did not answer while a client did not read"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            flood.await.unwrap(),
            "the CA kept reading from a client that never reads"
        );
    })
    .await
}

// ------------------------------------------- item 16a: JSON problems

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_refusal_is_a_json_problem_document() {
    bounded(async {
        let pki = TestPki::start().await;
        let ca = pki.ca_client();
        let cases = [
            ("/v1/crl?format=pem&format=der", 400, "bad_query"),
            ("/v1/crl?format=xml", 400, "bad_format"),
            ("/v1/nothing-here", 404, "not_found"),
            (api::SIGN, 405, "method_not_allowed"),
        ];
        for (path, status, code) in cases {
            eprintln!("case: GET {path}");
            assert_problem(&ca.get(path).await.unwrap(), status, code);
        }
        let resp = ca
            .post(api::HEALTH, None, "text/plain", vec![])
            .await
            .unwrap();
        assert_problem(&resp, 405, "method_not_allowed");
        let huge = vec![b'A'; pki_ca::http::DEFAULT_MAX_BODY + 1];
        let resp = ca
            .post(api::SIGN, None, "application/pkcs10", huge)
            .await
            .unwrap();
        assert_problem(&resp, 413, "body_too_large");
        // A body that is not UTF-8 or not a CSR, in any content type, is
        // judged as a CSR: a JSON refusal too.
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let resp = ca
            .post(api::SIGN, Some(&token), "text/html", vec![0xff, 0xfe])
            .await
            .unwrap();
        assert_problem(&resp, 400, "bad_csr");
    })
    .await
}

// ---------------------------------- item 16c: the Authorization scheme

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    bounded(async {
        let pki = TestPki::start().await;
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let token = pki.token(&["app.pki.test"], Profile::Server);
            let csr = csr_for("app.pki.test");
            let head = format!(
                "POST /v1/sign HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\
                 Authorization: {scheme} {token}\r\nContent-Type: application/pkcs10\r\n\
                 Content-Length: {}\r\n\r\n",
                csr.len()
            );
            let (status, body) = raw_request(pki.ca_addr, &pki.root(), &head, &csr).await;
            assert_eq!(status, 200, "{scheme}: {body}");
            assert!(body.contains("BEGIN CERTIFICATE"), "{scheme}: {body}");
        }
        // Another scheme is still no token.
        let head = "POST /v1/sign HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\
                    Authorization: Basic YTpi\r\nContent-Length: 0\r\n\r\n";
        let (status, body) = raw_request(pki.ca_addr, &pki.root(), head, b"").await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains(r#""error":"missing_token""#), "{body}");
    })
    .await
}

// ----------------------------- item 5: the CA's names are reserved

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_the_cas_own_names_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = offline_ca(dir.path());
    for asked in [
        names(&["127.0.0.1"]),
        names(&["ca.pki.test"]),
        names(&["CA.PKI.TEST"]),
        names(&["app.pki.test", "127.0.0.1"]),
    ] {
        let err = ca
            .mint_token(&asked, Profile::Server, Duration::from_secs(60))
            .unwrap_err();
        assert!(
            matches!(&err, CaError::NameReserved(r)
                if asked.iter().any(|a| a.eq_ignore_ascii_case(&r.name))),
            "{err}"
        );
    }
    // The command line says so, and prints no token.
    for name in ["127.0.0.1", "ca.pki.test"] {
        let out = std::process::Command::new(binary("pki-ca"))
            .args([
                "--dir",
                dir.path().to_str().unwrap(),
                "token",
                "--name",
                name,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{stderr}");
        assert!(
            stderr.contains(&format!("\"{name}\" is reserved")),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_a_ca_serves_are_reserved_for_other_pki_ca_processes() {
    bounded(async {
        let ca = FrontCa::start(|o| o.names = names(&["ca.example.org", "10.1.2.3"])).await;
        // `pki-ca token` opens the same directory in another process.
        let dir = ca._dir.path().to_str().unwrap().to_string();
        for name in ["ca.example.org", "10.1.2.3", "ca.pki.test"] {
            let out = std::process::Command::new(binary("pki-ca"))
                .args(["--dir", &dir, "token", "--name", name])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}: a token was minted");
            assert!(stderr.contains("is reserved"), "{stderr}");
        }
        // An ordinary name still works.
        let out = std::process::Command::new(binary("pki-ca"))
            .args(["--dir", &dir, "token", "--name", "app.pki.test"])
            .output()
            .unwrap();
        assert!(out.status.success());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_minted_before_the_name_was_reserved_issues_nothing() {
    bounded(async {
        let pki = TestPki::start().await;
        let token = pki.token(&["late.pki.test"], Profile::Server);
        // A certificate for the name, issued before the reservation.
        let held = pki.enroll_as(&["late.pki.test"], Profile::Server).await;
        // The CA is restarted with `--name late.pki.test`.
        pki.ca.reserve_endpoint_names(&names(&["late.pki.test"])).unwrap();

        expect_csr_refusal(&pki, Some(&token), csr_for("late.pki.test"), 403, "name_reserved")
            .await;
        let id = pki_ca::token::EnrollmentToken::parse(&token).unwrap();
        let grant = pki.ca.ledger().token(id.id()).unwrap().unwrap();
        assert_eq!(grant.used_at, None, "the refused request spent the token");

        // Nor does a certificate for it renew.
        let err = pki_common::ca::enroll::renew(&pki.ca_url(), None, &pki.root(), &held, Profile::Server)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EnrollError::Refused { status: 403, error, .. } if error == "name_reserved"),
            "{err}"
        );
    })
    .await
}

// ------------------------- item 5: only the CA's own certificate passes

/// A certificate signed with the real CA root's key for the CA's address
/// and name, with serverAuth: everything an ordinary server certificate
/// has, as a token holder got one before the names were reserved.
fn rogue_identity(pki: &TestPki) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let root_key = files::read_private_key_pem(&pki.paths.root_key()).unwrap();
    let root_key = rcgen::KeyPair::from_pem(&root_key).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&pki.root(), root_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(names(&["127.0.0.1", "ca.pki.test"])).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let cert = params.signed_by(&key, &issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.der().clone(), key)
}

/// A TLS endpoint presenting `identity` on 127.0.0.1: answers its address
/// and how many bytes of application data it has received in all.
async fn rogue_endpoint(
    identity: (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> (SocketAddr, Arc<AtomicUsize>) {
    let config = rustls::ServerConfig::builder_with_provider(pki_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![identity.0], identity.1)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_endpoint_with_an_ordinary_certificate_for_the_cas_address_gets_no_token() {
    bounded(async {
        let pki = TestPki::start().await;
        let (rogue, received) = rogue_endpoint(rogue_identity(&pki)).await;
        // The attack is real: by chain, name and validity alone, the rogue
        // endpoint passes for the CA.
        assert!(tls_to(rogue, &pki.root()).await.is_some());

        let token = pki.token(&["app.pki.test"], Profile::Server);
        let url = format!("https://127.0.0.1:{}", rogue.port());
        let client = CaClient::new(&url, None, &pki.root()).unwrap();
        let err = enroll(
            &client,
            &pki.root(),
            &names(&["app.pki.test"]),
            &token,
            Profile::Server,
            Retry {
                deadline: Duration::from_secs(2),
                ..Retry::default()
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, EnrollError::Https(HttpsError::NotCaEndpoint { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(CA_ENDPOINT_EKU_OID), "{err}");

        // The CA name on the command line changes nothing.
        let named = CaClient::new(&url, Some("ca.pki.test"), &pki.root()).unwrap();
        let err = named.get(api::HEALTH).await.unwrap_err();
        assert!(matches!(err, HttpsError::NotCaEndpoint { .. }), "{err}");

        // The client's and the server's enrollment refuse it too.
        let dir = tempfile::tempdir().unwrap();
        let key_files = pki_common::ca::enroll::KeyFiles {
            key: dir.path().join("client.key"),
            cert: dir.path().join("client.pem"),
        };
        let client_token = pki.token(&["client1.pki.test"], Profile::Client);
        let ca = pki_common::ca::enroll::Enrollment {
            ca_url: url.clone(),
            ca_name: None,
            token: Some(client_token.clone()),
            retry: pki_common::ca::enroll::Retry::default(),
        };
        let err = pki_client::enroll_client(&ca, &pki.root(), &key_files, "client1.pki.test", true)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(CA_ENDPOINT_EKU_OID), "{err:#}");
        let server_dir = pki.server_dir();
        let mut config = pki.server_config(server_dir.path(), Some(token.clone()));
        config.enrollment.ca_url = url.clone();
        let err = pki_server::AppServer::start(config)
            .await
            .err()
            .expect("the server enrolled with the rogue");
        assert!(format!("{err:#}").contains(CA_ENDPOINT_EKU_OID), "{err:#}");

        // Nothing reached the rogue endpoint, and the token is still good
        // at the real CA.
        assert_eq!(
            received.load(Ordering::SeqCst),
            0,
            "the rogue received a request"
        );
        let enrolled = enroll(
            &pki.ca_client(),
            &pki.root(),
            &names(&["app.pki.test"]),
            &token,
            Profile::Server,
            Retry::default(),
        )
        .await
        .unwrap();
        assert_eq!(enrolled.info.names(), names(&["app.pki.test"]));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_cas_own_certificate_carries_the_ca_endpoint_usage() {
    bounded(async {
        let pki = TestPki::start().await;
        let tls = tls_to(pki.ca_addr, &pki.root()).await.unwrap();
        let own = tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned();
        let enrolled = pki.enroll_as(&["app.pki.test"], Profile::Server).await;
        let text = |cert: &CertificateDer<'_>, tag: &str| {
            let path = pki.dir().join(format!("{tag}.pem"));
            files::write_public(&path, &files::cert_to_pem(cert)).unwrap();
            openssl_ok(&["x509", "-in", path.to_str().unwrap(), "-noout", "-text"])
        };
        let own = text(&own, "ca-endpoint");
        let expected = format!("TLS Web Server Authentication, {CA_ENDPOINT_EKU_OID}");
        assert!(own.contains(&expected), "{own}");
        let leaf = text(&enrolled.cert, "leaf");
        assert!(!leaf.contains(CA_ENDPOINT_EKU_OID), "{leaf}");
        assert!(leaf.contains("TLS Web Server Authentication"), "{leaf}");
    })
    .await
}

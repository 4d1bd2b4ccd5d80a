//! The CA's plain-HTTP listener: the CRLs and issuer certificates that the
//! CRL Distribution Points and AIA caIssuers of every issued certificate
//! point at ([`crate::extensions`]).
//!
//! - `GET /crl/<id>.crl`: the current CRL of issuer `<id>`, DER,
//!   `application/pkix-crl` (RFC 5280 §4.2.1.13, RFC 2585 §4.2);
//! - `GET /issuer/<id>.crt`: the certificate of issuer `<id>`, DER,
//!   `application/pkix-cert` (RFC 5280 §4.2.2.1, RFC 2585 §4.1);
//!
//! and `HEAD` of both. `<id>` is an intermediate's id or `root`, always
//! `[a-z0-9-]{1,64}`: anything else is refused before the source is asked,
//! so no path (`..`, `/`, `%2F`) ever reaches it.
//!
//! Why plain HTTP: everything served here is signed by the issuer the
//! relying party is checking, so TLS would add no integrity, and a CRL
//! fetched over TLS would need the revocation status of the TLS server's
//! own certificate first (RFC 5280 §8). Without TLS this listener holds no
//! key and decides nothing: it serves what [`PublicSource`] hands it.
//!
//! It runs on the shared accept loop (`pki_common::listener`: connection
//! cap, back-off, drain) with the HTTPS listener's bounds: the wait for a
//! request's headers, and a write the client does not read, are each
//! bounded by `request_timeout`, so stalled clients cannot hold the
//! connection slots.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tracing::{debug, info};

use pki_common::listener::{BindError, ListenOptions, Listener};
use pki_common::metrics::Counter;
use pki_common::shutdown::Shutdown;

use crate::stall::WriteDeadline;

/// Where the listener gets what it publishes. The serving CA implements it
/// over its issuers; tests implement it with fixed bytes.
pub trait PublicSource: Send + Sync {
    /// The current CRL of issuer `id` (an intermediate's id, or `root`),
    /// DER; `None` if there is no such issuer.
    fn crl_der(&self, id: &str) -> Option<Vec<u8>>;
    /// The certificate of issuer `id`, DER; `None` if there is none.
    fn issuer_der(&self, id: &str) -> Option<Vec<u8>>;
}

/// The longest issuer id: an intermediate's id is 16 hex digits, `root`
/// is 4; the room left is for ids of other shapes later.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is an issuer id this listener serves: 1 to
/// [`MAX_ID_LEN`] characters of `a-z`, `0-9` and `-`. No dot, slash or
/// percent sign, so an id can never name a path.
pub fn is_issuer_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// How the plain-HTTP listener listens.
#[derive(Debug, Clone)]
pub struct PublicOptions {
    /// Address, connection cap and shutdown grace (no handshake here).
    pub listener: ListenOptions,
    /// How long a request's headers may take (and the idle wait before
    /// them), and how long a write may make no progress.
    pub request_timeout: Duration,
    /// The longest `Cache-Control: max-age` of a CRL; never past its
    /// nextUpdate either.
    pub crl_max_age: Duration,
}

impl PublicOptions {
    /// The defaults, listening on `listen`: the HTTPS listener's cap and
    /// request timeout.
    pub fn on(listen: SocketAddr) -> Self {
        PublicOptions {
            listener: ListenOptions {
                max_connections: 256,
                ..ListenOptions::on(listen)
            },
            request_timeout: crate::http::DEFAULT_REQUEST_TIMEOUT,
            crl_max_age: DEFAULT_CRL_MAX_AGE,
        }
    }
}

/// How long a cache may keep a CRL by default. A relying party may keep
/// a CRL until its nextUpdate anyway; but this CA re-signs its CRL the
/// moment a certificate is revoked, and a shared cache between the CA and
/// its relying parties should not hide that for long.
pub const DEFAULT_CRL_MAX_AGE: Duration = Duration::from_secs(300);

/// How long a cache may keep an issuer certificate: it does not change
/// under its id (a new intermediate has a new key, hence a new id).
const ISSUER_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The largest request head hyper buffers (its minimum is 8 KiB): a GET
/// of a short path needs far less.
const MAX_HEAD: usize = 16 * 1024;

/// The bound plain-HTTP listener.
pub struct PublicListener {
    listener: Listener,
    opts: PublicOptions,
}

impl PublicListener {
    /// Binds `addr` with the defaults ([`PublicOptions::on`]).
    pub async fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        Self::bind_with(PublicOptions::on(addr)).await
    }

    /// Binds `opts.listener.listen`.
    pub async fn bind_with(opts: PublicOptions) -> Result<Self, BindError> {
        let listener = Listener::bind(opts.listener.clone()).await?;
        Ok(PublicListener { listener, opts })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Connections refused at the cap, for the daemon's metrics registry.
    pub fn refused_at_cap(&self) -> Counter {
        self.listener.refused_at_cap()
    }

    /// Serves `source` until `shutdown` fires, then drains.
    pub async fn serve(self, source: Arc<dyn PublicSource>, shutdown: Shutdown) {
        if let Ok(addr) = self.local_addr() {
            info!("publishing CRLs on http://{addr}/crl/<issuer>.crl and issuer certificates on http://{addr}/issuer/<issuer>.crt (plain HTTP: both are signed)");
        }
        let router = router(source, self.opts.crl_max_age);
        let timeout = self.opts.request_timeout;
        self.listener
            .serve(shutdown, |tcp, peer, conn_shutdown| {
                serve_connection(tcp, peer, router.clone(), timeout, conn_shutdown)
            })
            .await;
        info!("stopped publishing CRLs and issuer certificates");
    }
}

/// Serves HTTP/1.1 requests on `tcp` until the peer closes or `shutdown`
/// fires, when the request in hand finishes.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    timeout: Duration,
    mut shutdown: Shutdown,
) {
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Armed whenever hyper waits for a request head, so it bounds idle
        // kept-alive connections too. No handler reads a body.
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(tcp, timeout)),
            TowerToHyperService::new(router),
        );
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!("plain-HTTP connection from {peer} ended: {e}");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Published {
    source: Arc<dyn PublicSource>,
    crl_max_age: Duration,
}

/// The routes over `source` (see the module doc). `get` answers `HEAD`
/// too, with the headers and without the body.
fn router(source: Arc<dyn PublicSource>, crl_max_age: Duration) -> Router {
    Router::new()
        .route("/crl/{file}", get(crl))
        .route("/issuer/{file}", get(issuer))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Published {
            source,
            crl_max_age,
        })
}

async fn crl(
    State(published): State<Published>,
    file: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match issuer_id_of(file, ".crl", "/crl/<issuer>.crl") {
        Ok(id) => id,
        Err((status, detail)) => return refuse(status, detail),
    };
    match published.source.crl_der(&id) {
        Some(der) => {
            let max_age = crl_max_age(&der, published.crl_max_age);
            der_answer(der, "application/pkix-crl", max_age)
        }
        None => refuse(
            StatusCode::NOT_FOUND,
            format!("no CRL for issuer {id}: this CA publishes the CRLs of its root (/crl/root.crl) and of the intermediates it holds; take the URL from the certificate's CRL Distribution Points"),
        ),
    }
}

async fn issuer(
    State(published): State<Published>,
    file: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match issuer_id_of(file, ".crt", "/issuer/<issuer>.crt") {
        Ok(id) => id,
        Err((status, detail)) => return refuse(status, detail),
    };
    match published.source.issuer_der(&id) {
        Some(der) => der_answer(der, "application/pkix-cert", Some(ISSUER_MAX_AGE)),
        None => refuse(
            StatusCode::NOT_FOUND,
            format!("no issuer certificate {id}: this CA publishes its root (/issuer/root.crt) and the intermediates it holds; take the URL from the certificate's Authority Information Access"),
        ),
    }
}

/// The issuer id in the last path segment `file`, which must be
/// `<id><suffix>`; otherwise the status and sentence of the refusal
/// (`shape` is the route, for the sentence).
fn issuer_id_of(
    file: Result<Path<String>, PathRejection>,
    suffix: &str,
    shape: &str,
) -> Result<String, (StatusCode, String)> {
    // A segment that is not UTF-8 once percent-decoded is no id either.
    let bad_id = || {
        (
            StatusCode::BAD_REQUEST,
            format!("the issuer id must be 1 to {MAX_ID_LEN} characters of a-z, 0-9 and '-': ask for {shape}, taking the URL from the certificate"),
        )
    };
    let Ok(Path(file)) = file else {
        return Err(bad_id());
    };
    let Some(id) = file.strip_suffix(suffix) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no such file: this listener serves {shape}"),
        ));
    };
    if !is_issuer_id(id) {
        return Err(bad_id());
    }
    Ok(id.to_string())
}

/// How long a cache may keep `crl`: until its nextUpdate, at most `cap`;
/// `None` (not at all) if it has no nextUpdate, is past it, or does not
/// parse.
fn crl_max_age(crl: &[u8], cap: Duration) -> Option<Duration> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let (_, parsed) = CertificateRevocationList::from_der(crl).ok()?;
    let next_update = parsed.next_update()?.timestamp();
    let left = next_update.checked_sub(pki_common::unix_now() as i64)?;
    let left = u64::try_from(left).ok().filter(|s| *s > 0)?;
    Some(Duration::from_secs(left).min(cap))
}

/// A 200 answer with `der` as `content_type`, cacheable for `max_age`.
fn der_answer(der: Vec<u8>, content_type: &'static str, max_age: Option<Duration>) -> Response {
    let cache = match max_age {
        Some(age) => format!("public, max-age={}", age.as_secs()),
        None => "no-cache".to_string(),
    };
    let cache = HeaderValue::from_str(&cache).unwrap_or(HeaderValue::from_static("no-cache"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, cache),
        ],
        der,
    )
        .into_response()
}

/// A refusal: `status` and a sentence saying what was wrong and what to do.
fn refuse(status: StatusCode, detail: String) -> Response {
    debug!("plain-HTTP listener refused a request: {status}: {detail}");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{detail}\n"),
    )
        .into_response()
}

async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "no such file: this listener serves /crl/<issuer>.crl and /issuer/<issuer>.crt".into(),
    )
}

async fn method_not_allowed() -> Response {
    let mut answer = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "this listener only publishes: use GET or HEAD".into(),
    );
    answer
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Fixed bytes per id; `crl_der` and `issuer_der` record the ids asked.
    struct Fake {
        crls: HashMap<String, Vec<u8>>,
        certs: HashMap<String, Vec<u8>>,
        asked: std::sync::Mutex<Vec<String>>,
    }

    impl PublicSource for Fake {
        fn crl_der(&self, id: &str) -> Option<Vec<u8>> {
            self.asked.lock().unwrap().push(id.to_string());
            self.crls.get(id).cloned()
        }
        fn issuer_der(&self, id: &str) -> Option<Vec<u8>> {
            self.asked.lock().unwrap().push(id.to_string());
            self.certs.get(id).cloned()
        }
    }

    /// A CRL signed by a throwaway CA, valid until `next_update`.
    fn crl_until(next_update: time::OffsetDateTime) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        let cert = ca.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(cert.der(), key).unwrap();
        rcgen::CertificateRevocationListParams {
            this_update: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .der()
        .to_vec()
    }

    struct Running {
        addr: SocketAddr,
        fake: Arc<Fake>,
        _stop: pki_common::shutdown::ShutdownTrigger,
    }

    async fn start(crl: Vec<u8>) -> Running {
        let fake = Arc::new(Fake {
            crls: HashMap::from([("root".to_string(), crl)]),
            certs: HashMap::from([("0123abcd-x".to_string(), b"cert-der".to_vec())]),
            asked: Default::default(),
        });
        let listener = PublicListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = pki_common::shutdown::channel();
        tokio::spawn(listener.serve(fake.clone(), shutdown));
        Running {
            addr,
            fake,
            _stop: stop,
        }
    }

    /// The status, the headers (names lower case) and the body of
    /// `method target` sent as raw HTTP/1.1, so odd targets reach the
    /// server unchanged.
    async fn request(addr: SocketAddr, method: &str, target: &str) -> (u16, String, Vec<u8>) {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {target} HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec())
            .unwrap()
            .to_lowercase();
        let status = head[9..12].parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn serves_crls_and_certificates_as_der_with_their_media_types() {
        let crl = crl_until(time::OffsetDateTime::now_utc() + time::Duration::hours(2));
        let pki = start(crl.clone()).await;
        let (status, head, body) = request(pki.addr, "GET", "/crl/root.crl").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: application/pkix-crl"),
            "{head}"
        );
        assert!(
            head.contains("cache-control: public, max-age=300"),
            "{head}"
        );
        assert_eq!(body, crl);
        let (status, head, body) = request(pki.addr, "GET", "/issuer/0123abcd-x.crt").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: application/pkix-cert"),
            "{head}"
        );
        assert_eq!(body, b"cert-der");
    }

    #[tokio::test]
    async fn head_answers_the_headers_without_the_body() {
        let pki = start(crl_until(
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
        .await;
        let (status, head, body) = request(pki.addr, "HEAD", "/issuer/0123abcd-x.crt").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: application/pkix-cert"),
            "{head}"
        );
        assert!(head.contains("content-length: 8"), "{head}");
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn a_crl_is_cached_no_longer_than_its_next_update() {
        let soon = crl_until(time::OffsetDateTime::now_utc() + time::Duration::seconds(100));
        let pki = start(soon).await;
        let (_, head, _) = request(pki.addr, "GET", "/crl/root.crl").await;
        let age: u64 = head
            .split("max-age=")
            .nth(1)
            .and_then(|s| s.lines().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=100).contains(&age), "{head}");

        let stale = crl_until(time::OffsetDateTime::now_utc() - time::Duration::seconds(1));
        let pki = start(stale).await;
        let (status, head, _) = request(pki.addr, "GET", "/crl/root.crl").await;
        assert_eq!(status, 200);
        assert!(head.contains("cache-control: no-cache"), "{head}");
    }

    #[tokio::test]
    async fn unknown_ids_are_404_and_bad_ids_never_reach_the_source() {
        let pki = start(crl_until(
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
        .await;
        let (status, _, body) = request(pki.addr, "GET", "/crl/ffff.crl").await;
        assert_eq!(status, 404);
        assert!(String::from_utf8_lossy(&body).contains("no CRL for issuer ffff"));
        let (status, _, _) = request(pki.addr, "GET", "/issuer/root.crt").await;
        assert_eq!(status, 404);
        for target in [
            "/crl/..%2Fca.key.crl",
            "/crl/%2e%2e.crl",
            "/crl/Root.crl",
            "/crl/.crl",
            "/crl/a.b.crl",
            "/crl/%ff.crl",
            &format!("/issuer/{}.crt", "a".repeat(65)),
        ] {
            let (status, _, body) = request(pki.addr, "GET", target).await;
            assert_eq!(status, 400, "{target}");
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("a-z, 0-9 and '-'"), "{target}: {body}");
        }
        for target in [
            "/crl/root.der",
            "/crl/../ca.key",
            "/crl/a/b.crl",
            "/",
            "/ca.key",
            "/crl/",
        ] {
            let (status, _, _) = request(pki.addr, "GET", target).await;
            assert_eq!(status, 404, "{target}");
        }
        let asked = pki.fake.asked.lock().unwrap().clone();
        assert_eq!(asked, ["ffff", "root"], "only valid ids reach the source");
    }

    #[tokio::test]
    async fn only_get_and_head() {
        let pki = start(crl_until(
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
        .await;
        for method in ["POST", "PUT", "DELETE"] {
            let (status, head, body) = request(pki.addr, method, "/crl/root.crl").await;
            assert_eq!(status, 405, "{method}");
            assert!(
                head.contains("allow: get,head") || head.contains("allow: get, head"),
                "{head}"
            );
            assert!(String::from_utf8_lossy(&body).contains("use GET or HEAD"));
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_request_timeout() {
        let mut opts = PublicOptions::on(SocketAddr::from(([127, 0, 0, 1], 0)));
        opts.request_timeout = Duration::from_millis(200);
        let listener = PublicListener::bind_with(opts).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, shutdown) = pki_common::shutdown::channel();
        let fake = Arc::new(Fake {
            crls: HashMap::new(),
            certs: HashMap::new(),
            asked: Default::default(),
        });
        tokio::spawn(listener.serve(fake, shutdown));
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /crl/root.crl HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        // Closed by the server (with or without a 408) well before this.
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
            .await
            .expect("the server must close a connection whose headers do not come")
            .ok();
    }

    #[test]
    fn issuer_ids() {
        for id in ["root", "0123456789abcdef", "a-b", &"z".repeat(64)] {
            assert!(is_issuer_id(id), "{id}");
        }
        for id in ["", "Root", "a.b", "a/b", "..", "a%2f", "é", &"z".repeat(65)] {
            assert!(!is_issuer_id(id), "{id}");
        }
    }
}

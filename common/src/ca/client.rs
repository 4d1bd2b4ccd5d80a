//! A small HTTPS/1.1 client that trusts only the CA root.
//!
//! The parties talk to the CA a handful of times (enrollment), so each
//! request opens its own TLS 1.3 connection; there is no pool to reason
//! about. The CA endpoint is verified against `certs/ca.pem` like any other
//! server (chain, name, validity, serverAuth), and must also carry the
//! CA-endpoint EKU that only the CA's own TLS certificate has
//! ([`CaEndpointVerifier`]): a certificate the CA issued to someone else for
//! the CA's address does not pass, so no token goes to an impostor.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::api::ErrorBody;
use crate::tls::verify::{not_ca_endpoint, CaEndpointVerifier};

/// The largest response body accepted from the CA.
const MAX_RESPONSE: usize = 1 << 20;
/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors talking to the CA.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("bad CA URL {url:?} (--ca-url): {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        addr: String,
        reason: String,
        /// What went wrong, for the caller's hint.
        kind: crate::tls::TlsFailure,
    },
    /// The endpoint proved a certificate from our CA for the CA's name,
    /// but not the CA's own endpoint certificate: final, never retried.
    #[error("refusing {addr}: {source}")]
    NotCaEndpoint {
        addr: String,
        source: crate::tls::verify::NotCaEndpoint,
    },
    #[error("HTTP exchange with {addr} failed: {reason}")]
    Http { addr: String, reason: String },
    #[error("request to {addr} timed out")]
    Timeout { addr: String },
    /// The CA answered 503 (its ledger unreachable, say): it asks to be
    /// tried again, so this is retried like an unreachable CA.
    #[error("the CA at {addr} is temporarily unavailable: {detail}")]
    Unavailable { addr: String, detail: String },
    #[error(transparent)]
    Setup(#[from] crate::tls::TlsSetupError),
}

impl HttpsError {
    /// Whether trying again later may succeed (the CA is not up yet), as
    /// opposed to a refusal that will not change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpsError::Connect { .. }
                | HttpsError::Timeout { .. }
                | HttpsError::Http { .. }
                | HttpsError::Unavailable { .. }
        )
    }

    /// What the user should change, for a program whose trusted root is
    /// `root` (e.g. "--ca certs/ca.pem", or "the ca.pem in --dir"): the CA
    /// URL and name are `--ca-url` and `--ca-name` in every program.
    pub fn hint(&self, root: &str) -> Option<String> {
        use crate::tls::TlsFailure as F;
        Some(match self {
            HttpsError::Connect { addr, .. } | HttpsError::Timeout { addr } => format!(
                "check --ca-url, and that the CA is running at {addr} (`pki-ca serve --listen {addr}`)"
            ),
            HttpsError::Http { .. } => {
                "check --ca-url: it must be the address of `pki-ca serve`".into()
            }
            HttpsError::Tls { kind, .. } => match kind {
                F::UnknownIssuer => format!(
                    "the CA at --ca-url was not issued by the root in {root}: use that CA's ca.pem, or the URL of the CA whose root you have"
                ),
                F::NameMismatch => "the CA's certificate does not carry the expected name (--ca-name, by default the host of --ca-url): pass a name it carries with --ca-name (the names of `pki-ca serve --name`)".into(),
                F::Expired | F::NotValidYet => "check the clocks here and at the CA; restarting `pki-ca serve` gives it a fresh certificate".into(),
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    /// The CA's JSON error document, if the body is one.
    pub fn error_body(&self) -> Option<ErrorBody> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Splits `https://host:port` into the address to connect to and the host
/// the CA's certificate must name. Parsing is hyper's (`http::Uri`), so
/// bracketed IPv6 literals and the rest of RFC 3986 are handled as every
/// other HTTP client handles them; only what this client cannot honour is
/// refused: another scheme, a missing port, a path, a query or user info.
fn parse_ca_url(url: &str) -> Result<(String, String), HttpsError> {
    let bad = |reason: &str| HttpsError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| bad(&format!("not a URL ({e}); expected https://host:port")))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("only https:// URLs are accepted"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("expected https://host:port"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user information is not accepted in the CA URL"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("expected https://host:port, without a path or query"));
    }
    let port = authority
        .port_u16()
        .ok_or_else(|| bad("the URL needs an explicit port, e.g. https://127.0.0.1:8443"))?;
    let host = authority.host();
    if host.is_empty() {
        return Err(bad("expected https://host:port"));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok((format!("{host}:{port}"), bare.to_string()))
}

/// A client for one CA endpoint, `https://host:port`.
#[derive(Clone)]
pub struct CaClient {
    /// `host:port` to connect to.
    addr: String,
    /// The name the CA's certificate must be valid for.
    server_name: ServerName<'static>,
    connector: TlsConnector,
    /// The URL as given, for messages.
    url: String,
}

impl std::fmt::Debug for CaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaClient").field("url", &self.url).finish()
    }
}

impl CaClient {
    /// A client for `url` (`https://host:port`), verifying the CA's TLS
    /// certificate against `root` and for `ca_name` (by default the host in
    /// the URL).
    pub fn new(
        url: &str,
        ca_name: Option<&str>,
        root: &CertificateDer<'_>,
    ) -> Result<Self, HttpsError> {
        Self::build(url, ca_name, root, None)
    }

    /// As [`CaClient::new`], presenting `identity` (certificate chain and
    /// key) when the CA asks for a client certificate, as renewal does.
    pub fn with_identity(
        url: &str,
        ca_name: Option<&str>,
        root: &CertificateDer<'_>,
        identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    ) -> Result<Self, HttpsError> {
        Self::build(url, ca_name, root, Some(identity))
    }

    fn build(
        url: &str,
        ca_name: Option<&str>,
        root: &CertificateDer<'_>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, HttpsError> {
        let verifier = Arc::new(CaEndpointVerifier::new(root)?);
        Self::with_verifier(url, ca_name, verifier, identity)
    }

    /// A client whose TLS certificate check is `verifier`. Only
    /// [`bootstrap`](super::bootstrap) uses another verifier than
    /// [`CaEndpointVerifier`], for the one request made before the root is
    /// known, and it checks the chain it recorded before it trusts anything.
    pub(crate) fn with_verifier(
        url: &str,
        ca_name: Option<&str>,
        verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, HttpsError> {
        let (addr, host) = parse_ca_url(url)?;
        let name = ca_name.unwrap_or(&host);
        let server_name =
            ServerName::try_from(name.to_string()).map_err(|e| HttpsError::BadUrl {
                url: url.to_string(),
                reason: format!("invalid CA name {name:?}: {e}"),
            })?;
        let config = crate::tls::client_config_with(verifier, identity)?;
        Ok(CaClient {
            addr,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            url: url.to_string(),
        })
    }

    /// The URL this client talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Response, HttpsError> {
        self.request(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST path` with a bearer token and a body.
    pub async fn post(
        &self,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response, HttpsError> {
        self.request(
            Method::POST,
            path,
            Some((bearer, content_type)),
            Bytes::from(body),
        )
        .await
    }

    /// Builds the request, then runs the whole exchange (connection
    /// included) under one deadline.
    async fn request(
        &self,
        method: Method,
        path: &str,
        post: Option<(Option<&str>, &str)>,
        body: Bytes,
    ) -> Result<Response, HttpsError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.as_str());
        if let Some((bearer, content_type)) = post {
            req = req.header(hyper::header::CONTENT_TYPE, content_type);
            if let Some(token) = bearer {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        let req = req.body(Full::new(body)).map_err(|e| HttpsError::Http {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(req))
            .await
            .map_err(|_| HttpsError::Timeout {
                addr: self.addr.clone(),
            })?
    }

    /// Connects, verifies the CA, sends `req` and reads the answer.
    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<Response, HttpsError> {
        let addr = self.addr.clone();
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| HttpsError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| tls_failure(&addr, &e))?;
        let http = |reason: String| HttpsError::Http {
            addr: addr.clone(),
            reason,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| http(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        driver.abort();
        Ok(Response { status, body })
    }
}

/// The error for a failed handshake with the CA at `addr`: an impostor
/// (a certificate without the CA-endpoint EKU) gets its own variant.
fn tls_failure(addr: &str, e: &std::io::Error) -> HttpsError {
    let tls = crate::tls::tls_error_in(e);
    if tls.and_then(not_ca_endpoint).is_some() {
        return HttpsError::NotCaEndpoint {
            addr: addr.to_string(),
            source: crate::tls::verify::NotCaEndpoint,
        };
    }
    HttpsError::Tls {
        addr: addr.to_string(),
        reason: tls
            .map(crate::tls::describe_tls_error)
            .unwrap_or_else(|| e.to_string()),
        kind: tls
            .map(crate::tls::classify_tls_error)
            .unwrap_or(crate::tls::TlsFailure::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ca_url;

    #[test]
    fn ca_urls() {
        let ok = |u: &str| parse_ca_url(u).unwrap();
        assert_eq!(
            ok("https://127.0.0.1:8443"),
            ("127.0.0.1:8443".into(), "127.0.0.1".into())
        );
        assert_eq!(
            ok("https://ca.pki.test:8443/"),
            ("ca.pki.test:8443".into(), "ca.pki.test".into())
        );
        assert_eq!(
            ok("https://[::1]:8443"),
            ("[::1]:8443".into(), "::1".into())
        );
        for bad in [
            "http://127.0.0.1:8443",
            "https://127.0.0.1",
            "https://127.0.0.1:8443/v1",
            "https://127.0.0.1:8443?x=1",
            "https://user@127.0.0.1:8443",
            "127.0.0.1:8443",
            "https://",
            "",
        ] {
            assert!(parse_ca_url(bad).is_err(), "{bad} should be refused");
        }
    }
}

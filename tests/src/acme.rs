//! A small ACME client for the protocol tests, and the two challenge
//! responders (`http-01`, `tls-alpn-01`) the CA validates against.
//!
//! It is a test tool: it signs whatever it is told to, so the tests can
//! also send what a real client never would (a reused nonce, a wrong URL,
//! a forged signature). The interoperability tests use certbot instead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::TestPki;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 account key.
pub struct AccountKey {
    pair: EcdsaKeyPair,
}

impl AccountKey {
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        AccountKey { pair }
    }

    /// The key in a PKCS#8 document (for the certificate key that revokes).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Self {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .unwrap();
        AccountKey { pair }
    }

    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            jwk["x"], jwk["y"]
        );
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

/// An answer from the CA.
#[derive(Debug)]
pub struct AcmeResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl AcmeResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The problem type, without `urn:ietf:params:acme:error:`.
    pub fn problem(&self) -> String {
        self.json()["type"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("urn:ietf:params:acme:error:")
            .to_string()
    }

    /// Asserts a problem document of `kind` with this content type.
    pub fn assert_problem(&self, kind: &str) {
        assert_eq!(
            self.problem(),
            kind,
            "expected problem {kind}, got status {} body {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert!(
            self.header("replay-nonce").is_some(),
            "every answer carries a fresh nonce"
        );
    }
}

/// An ACME client of the CA in `pki`.
pub struct AcmeClient {
    pub base: String,
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    pub key: AccountKey,
    pub kid: Option<String>,
    nonce: Option<String>,
}

impl AcmeClient {
    pub fn new(pki: &TestPki) -> Self {
        Self::for_ca(pki.root(), pki.ca_addr)
    }

    /// A client of the CA at `addr` whose root is `root`.
    pub fn for_ca(root: rustls::pki_types::CertificateDer<'static>, addr: SocketAddr) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(pki_common::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        AcmeClient {
            base: format!("https://{addr}"),
            addr,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            key: AccountKey::generate(),
            kid: None,
            nonce: None,
        }
    }

    /// A client of `pki` with `key` (a restarted CA, a certificate key).
    pub fn with_key(pki: &TestPki, key: AccountKey) -> Self {
        AcmeClient {
            key,
            ..AcmeClient::new(pki)
        }
    }

    /// Sends the following requests to `addr` while keeping this
    /// client's URLs: another CA replica behind the same name, as a load
    /// balancer would.
    pub fn via(&mut self, addr: SocketAddr) {
        self.addr = addr;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One HTTPS request.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> AcmeResponse {
        self.request_with(method, url, body, &[("content-type", content_type)])
            .await
    }

    /// One HTTPS request with these headers (any path of the CA, not only
    /// ACME's: the tests read answers' headers with it).
    pub async fn request_with(
        &self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> AcmeResponse {
        let path = url.strip_prefix(&self.base).unwrap_or(url).to_string();
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = self.connector.connect(name, tcp).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.base.trim_start_matches("https://"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        AcmeResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn directory(&self) -> Value {
        self.request("GET", &self.url("/acme/directory"), None, "text/plain")
            .await
            .json()
    }

    pub async fn fresh_nonce(&mut self) -> String {
        let r = self
            .request("HEAD", &self.url("/acme/new-nonce"), None, "text/plain")
            .await;
        r.header("replay-nonce").expect("newNonce answers a nonce")
    }

    async fn nonce(&mut self) -> String {
        match self.nonce.take() {
            Some(n) => n,
            None => self.fresh_nonce().await,
        }
    }

    /// A flattened JWS by the account key: `kid` if registered (and not
    /// `force_jwk`), else `jwk`.
    pub fn jws(&self, url: &str, nonce: Option<&str>, payload: &[u8], force_jwk: bool) -> Value {
        let mut protected = json!({"alg": "ES256", "url": url});
        if let Some(n) = nonce {
            protected["nonce"] = json!(n);
        }
        match (&self.kid, force_jwk) {
            (Some(kid), false) => protected["kid"] = json!(kid),
            _ => protected["jwk"] = self.key.jwk(),
        }
        sign_jws(&self.key, &protected, payload)
    }

    /// POSTs a JWS as is, keeping the answer's nonce for the next request.
    pub async fn post_jws(&mut self, url: &str, jws: &Value) -> AcmeResponse {
        let r = self
            .request(
                "POST",
                url,
                Some(jws.to_string().into_bytes()),
                "application/jose+json",
            )
            .await;
        self.nonce = r.header("replay-nonce");
        r
    }

    /// A signed POST of `payload` (`None`: POST-as-GET).
    pub async fn post(&mut self, url: &str, payload: Option<&Value>) -> AcmeResponse {
        let nonce = self.nonce().await;
        let bytes = payload
            .map(|p| p.to_string().into_bytes())
            .unwrap_or_default();
        let jws = self.jws(url, Some(&nonce), &bytes, false);
        self.post_jws(url, &jws).await
    }

    /// newAccount; keeps the account URL as the kid.
    pub async fn register(&mut self) -> AcmeResponse {
        self.register_with(json!({"termsOfServiceAgreed": true}))
            .await
    }

    pub async fn register_with(&mut self, payload: Value) -> AcmeResponse {
        let url = self.url("/acme/new-account");
        let nonce = self.nonce().await;
        let jws = self.jws(&url, Some(&nonce), payload.to_string().as_bytes(), true);
        let r = self.post_jws(&url, &jws).await;
        if r.status == 201 || r.status == 200 {
            self.kid = r.header("location");
        }
        r
    }

    /// newOrder for `names` (dns, or ip if they parse as addresses).
    pub async fn new_order(&mut self, names: &[&str]) -> AcmeResponse {
        let ids: Vec<Value> = names
            .iter()
            .map(|n| {
                let kind = if n.parse::<std::net::IpAddr>().is_ok() {
                    "ip"
                } else {
                    "dns"
                };
                json!({"type": kind, "value": n})
            })
            .collect();
        let url = self.url("/acme/new-order");
        self.post(&url, Some(&json!({"identifiers": ids}))).await
    }

    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.key.thumbprint())
    }

    /// The order's authorizations, as JSON.
    pub async fn authorizations(&mut self, order: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for url in order["authorizations"].as_array().unwrap() {
            let url = url.as_str().unwrap().to_string();
            let authz = self.post(&url, None).await.json();
            out.push((url, authz));
        }
        out
    }

    /// Polls `url` (POST-as-GET) until its status is not `pending` or
    /// `processing`, within a bounded number of tries.
    pub async fn poll(&mut self, url: &str) -> Value {
        for _ in 0..100 {
            let v = self.post(url, None).await.json();
            match v["status"].as_str() {
                Some("pending") | Some("processing") => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                _ => return v,
            }
        }
        panic!("{url} stayed pending");
    }
}

/// Signs `payload` under `protected` with `key`: a flattened JWS.
pub fn sign_jws(key: &AccountKey, protected: &Value, payload: &[u8]) -> Value {
    let protected = b64(protected.to_string().as_bytes());
    let payload = b64(payload);
    let sig = key.sign(format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64(&sig)})
}

/// An http-01 responder on 127.0.0.1: answers each token it was given
/// with its content, anything else with 404.
#[derive(Clone)]
pub struct Http01 {
    pub port: u16,
    answers: Arc<Mutex<HashMap<String, String>>>,
}

impl Http01 {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = answers.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let answers = served.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = tcp.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let token = path.trim_start_matches("/.well-known/acme-challenge/");
                    let answer = answers.lock().unwrap().get(token).cloned();
                    let reply = match answer {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
                    };
                    let _ = tcp.write_all(reply.as_bytes()).await;
                });
            }
        });
        Http01 { port, answers }
    }

    pub fn answer(&self, token: &str, content: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_string(), content.to_string());
    }
}

/// A tls-alpn-01 responder on 127.0.0.1 (RFC 8737), bound before the CA
/// starts (the CA is told its port) and answering once the challenge is
/// known.
pub struct TlsAlpn01 {
    pub port: u16,
    listener: TcpListener,
}

impl TlsAlpn01 {
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TlsAlpn01 {
            port: listener.local_addr().unwrap().port(),
            listener,
        }
    }

    /// Presents, to a client offering `acme-tls/1`, a self-signed
    /// certificate for `name` with the acmeIdentifier extension holding
    /// `digest_of`'s SHA-256.
    pub fn serve(self, name: &str, digest_of: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(
                &Sha256::digest(digest_of.as_bytes()),
            ));
        let cert = params.self_signed(&key).unwrap();
        let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        // Not `with_single_cert`: it refuses the critical extension rustls
        // does not know, which is the point of this certificate.
        let provider = pki_common::tls::provider();
        let signing = provider.key_provider.load_private_key(der_key).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signing);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = self.listener;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
    }
}

/// A CSR for `names` with a fresh P-256 key, DER, base64url.
pub fn csr_for(names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    csr_with_key(names, &key)
}

pub fn csr_with_key(names: &[&str], key: &rcgen::KeyPair) -> String {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    // As certbot does: the first name is also the subject CN.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    b64(params.serialize_request(key).unwrap().der())
}

//! Validating challenges: the CA connects to the name being ordered and
//! checks that whoever answers there holds the account key.
//!
//! - `http-01` (RFC 8555 §8.3): `GET http://<name>:<port>/.well-known/acme-challenge/<token>`
//!   must answer the key authorization.
//! - `tls-alpn-01` (RFC 8737): a TLS connection offering only the
//!   `acme-tls/1` protocol must present a certificate for the name alone,
//!   with the critical `id-pe-acmeIdentifier` extension holding the
//!   SHA-256 of the key authorization.
//!
//! Every step is bounded: one deadline for the whole attempt, at most
//! [`MAX_REDIRECTS`] redirects (plain HTTP only), and at most
//! [`MAX_BODY`] bytes of answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::jws::b64e;
use super::model::{Authz, Challenge};
use super::problem::{Problem, ProblemType};
use super::{Acme, AcmeConfig, VALID_AUTHZ_LIFETIME_SECS};

/// Redirects followed by `http-01`.
pub const MAX_REDIRECTS: usize = 3;
/// The most bytes of an `http-01` answer read.
pub const MAX_BODY: usize = 8 * 1024;
/// The `id-pe-acmeIdentifier` extension (RFC 8737 §6.1).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// A fresh challenge token: 128 random bits, base64url (§8.1).
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    b64e(&bytes)
}

/// Validates `challenge` and records the outcome on it and its
/// authorization.
pub(super) async fn run(acme: Arc<Acme>, challenge: Challenge, authz: Authz, key_auth: String) {
    let cfg = acme.config.clone();
    let outcome = tokio::time::timeout(
        cfg.validation_timeout,
        attempt(&cfg, &challenge, &authz, &key_auth),
    )
    .await
    .unwrap_or_else(|_| {
        Err(Problem::new(
            ProblemType::Connection,
            format!(
                "no answer within {}",
                humantime::format_duration(cfg.validation_timeout)
            ),
        ))
    });
    let now = pki_common::unix_now() as i64;
    let error = outcome.as_ref().err().map(|p| p.body().to_string());
    match &outcome {
        Ok(()) => {
            tracing::info!(target: "audit", "audit: ACME {} for {} validated (authorization {})", challenge.kind, authz.identifier.value, authz.id)
        }
        Err(p) => {
            tracing::warn!(target: "audit", "audit: ACME {} for {} failed (authorization {}): {p}", challenge.kind, authz.identifier.value, authz.id)
        }
    }
    let _ = tokio::task::spawn_blocking(move || {
        acme.store()?.finish_challenge(
            &challenge.id,
            outcome.is_ok(),
            error.as_deref(),
            now,
            now + VALID_AUTHZ_LIFETIME_SECS,
        )
    })
    .await;
}

async fn attempt(
    cfg: &AcmeConfig,
    challenge: &Challenge,
    authz: &Authz,
    key_auth: &str,
) -> Result<(), Problem> {
    let name = &authz.identifier.value;
    match challenge.kind.as_str() {
        "http-01" => http_01(cfg, name, &challenge.token, key_auth).await,
        "tls-alpn-01" => tls_alpn_01(cfg, name, key_auth).await,
        other => Err(Problem::malformed(format!(
            "unknown challenge type {other}"
        ))),
    }
}

/// Where `host` is: `--acme-resolve`, an address literal, or DNS.
async fn resolve(cfg: &AcmeConfig, host: &str, port: u16) -> Result<SocketAddr, Problem> {
    if let Some(ip) = cfg.resolve.get(host) {
        return Ok(SocketAddr::new(*ip, port));
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| Problem::new(ProblemType::Connection, format!("{host} does not resolve")))
}

async fn connect(cfg: &AcmeConfig, host: &str, port: u16) -> Result<TcpStream, Problem> {
    let addr = resolve(cfg, host, port).await?;
    TcpStream::connect(addr).await.map_err(|e| {
        Problem::new(
            ProblemType::Connection,
            format!("cannot connect to {host} at {addr}: {e}"),
        )
    })
}

async fn http_01(cfg: &AcmeConfig, name: &str, token: &str, key_auth: &str) -> Result<(), Problem> {
    let mut host = name.to_string();
    let mut port = cfg.http_port;
    let mut path = format!("/.well-known/acme-challenge/{token}");
    for _ in 0..=MAX_REDIRECTS {
        let response = http_get(cfg, &host, port, &path).await?;
        if response.status().is_redirection() {
            (host, port, path) = redirect_target(cfg, &response)?;
            continue;
        }
        if response.status() != hyper::StatusCode::OK {
            return Err(Problem::new(
                ProblemType::IncorrectResponse,
                format!(
                    "http://{name}{path} answered {} instead of the key authorization",
                    response.status()
                ),
            ));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| {
                Problem::new(
                    ProblemType::IncorrectResponse,
                    format!("the answer is over {MAX_BODY} bytes"),
                )
            })?
            .to_bytes();
        // §8.3: trailing whitespace is allowed.
        let text = String::from_utf8_lossy(&body);
        if text.trim_end() == key_auth {
            return Ok(());
        }
        return Err(Problem::new(
            ProblemType::IncorrectResponse,
            format!(
                "the key authorization at http://{name}{path} is wrong: expected {key_auth:?}, got {:?}",
                text.chars().take(128).collect::<String>()
            ),
        ));
    }
    Err(Problem::new(
        ProblemType::Connection,
        format!("more than {MAX_REDIRECTS} redirects"),
    ))
}

async fn http_get(
    cfg: &AcmeConfig,
    host: &str,
    port: u16,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, Problem> {
    let tcp = connect(cfg, host, port).await?;
    let fail = |e: hyper::Error| {
        Problem::new(
            ProblemType::Connection,
            format!("http://{host}:{port}{path}: {e}"),
        )
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(fail)?;
    tokio::spawn(conn);
    let authority = if port == 80 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "pki-ca acme validation")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| Problem::internal(e.to_string()))?;
    sender.send_request(request).await.map_err(fail)
}

/// Where a redirect points: plain HTTP only (§8.3 allows HTTPS, which this
/// validator does not follow); a port the redirect does not give is the
/// configured `http-01` port.
fn redirect_target(
    cfg: &AcmeConfig,
    response: &hyper::Response<hyper::body::Incoming>,
) -> Result<(String, u16, String), Problem> {
    let bad = |why: &str| Problem::new(ProblemType::Connection, format!("redirect {why}"));
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| bad("without a Location"))?;
    let uri: hyper::Uri = location.parse().map_err(|_| bad("to an unparseable URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(&format!(
            "to {location:?}: only http:// redirects are followed"
        )));
    }
    let host = uri.host().ok_or_else(|| bad("without a host"))?.to_string();
    let path = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    Ok((host, uri.port_u16().unwrap_or(cfg.http_port), path))
}

/// The name a tls-alpn-01 connection asks for: the DNS name, or for an
/// address its reverse-DNS name (RFC 8738 §6).
fn sni_for(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(IpAddr::V6(v6)) => {
            let mut labels: Vec<String> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .map(|n| format!("{n:x}"))
                .collect();
            labels.reverse();
            format!("{}.ip6.arpa", labels.join("."))
        }
        Err(_) => name.to_string(),
    }
}

async fn tls_alpn_01(cfg: &AcmeConfig, name: &str, key_auth: &str) -> Result<(), Problem> {
    let tls_err = |why: String| Problem::new(ProblemType::Tls, why);
    let mut config = rustls::ClientConfig::builder_with_provider(pki_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Problem::internal(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(
            pki_common::tls::verify::ChallengeResponseVerifier,
        ))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let server_name = rustls::pki_types::ServerName::try_from(sni_for(name))
        .map_err(|_| Problem::malformed(format!("{name} is not a name TLS can ask for")))?;
    let tcp = connect(cfg, name, cfg.tls_port).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| tls_err(format!("TLS with {name}:{} failed: {e}", cfg.tls_port)))?;
    let (_, conn) = tls.get_ref();
    if conn.alpn_protocol() != Some(b"acme-tls/1") {
        return Err(tls_err(format!(
            "{name} did not negotiate the acme-tls/1 protocol"
        )));
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| tls_err("no certificate".into()))?;
    check_alpn_certificate(cert, name, key_auth)
}

/// RFC 8737 §3: the certificate names exactly `name`, and carries the
/// critical acmeIdentifier extension with the key authorization's hash.
fn check_alpn_certificate(der: &[u8], name: &str, key_auth: &str) -> Result<(), Problem> {
    use x509_parser::prelude::*;
    let wrong = |why: String| Problem::new(ProblemType::IncorrectResponse, why);
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| wrong("the certificate does not parse".into()))?;
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|g| match pki_common::cert::SanName::of(g) {
                    pki_common::cert::SanName::Dns(d) => d.to_ascii_lowercase(),
                    pki_common::cert::SanName::Ip(ip) => ip.to_string(),
                    pki_common::cert::SanName::BadIp => "a malformed address".into(),
                    pki_common::cert::SanName::Other(o) => o,
                })
                .collect()
        })
        .unwrap_or_default();
    if sans != [name.to_string()] {
        return Err(wrong(format!(
            "the certificate must name {name} alone, but names {sans:?}"
        )));
    }
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
        .ok_or_else(|| wrong("the certificate lacks the acmeIdentifier extension".into()))?;
    if !ext.critical {
        return Err(wrong("the acmeIdentifier extension is not critical".into()));
    }
    let (rest, digest) = x509_parser::der_parser::der::parse_der_octetstring(ext.value)
        .map_err(|_| wrong("the acmeIdentifier extension is not an OCTET STRING".into()))?;
    let expected = Sha256::digest(key_auth.as_bytes());
    if !rest.is_empty() || digest.as_slice().ok() != Some(expected.as_slice()) {
        return Err(wrong(
            "the acmeIdentifier extension does not hold this challenge's key authorization hash"
                .into(),
        ));
    }
    Ok(())
}

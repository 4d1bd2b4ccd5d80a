//! The CA's HTTPS API.
//!
//! Handlers translate between HTTP and [`Ca`] calls. They make
//! no policy decision: every refusal comes from the CA and is sent as a
//! JSON problem document `{"error": code, "detail": sentence}`, and so is
//! every refusal of the HTTP layer that reaches a handler or a middleware
//! here (unknown path, wrong method, bad query, body too large or too
//! slow). What hyper refuses before there is a request at all (a request
//! line or headers that do not parse, headers too large) it answers itself
//! with a bare status, or by closing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use rustls::pki_types::CertificateDer;

use pki_common::ca::api::{self, ErrorBody};
use pki_common::cert::Profile;

use crate::issue::Peer;
use crate::metrics::CaMetrics;
use crate::{Ca, SignError};

/// The largest request body accepted by default; a CSR is a few KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// How long a request's body may take to arrive by default, counted from
/// the end of its headers. A CSR is a few KiB: any client sends it in
/// well under a second.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request body may cost the CA: its size and how long it may take
/// to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_body: usize,
    pub timeout: Duration,
}

/// The API's routes over `ca`, refusing bodies over `limits.max_body`
/// bytes or slower than `limits.timeout`.
pub fn router(ca: Arc<Ca>, limits: BodyLimits) -> Router {
    router_counted(ca, limits, Arc::new(CaMetrics::default()), None)
}

/// [`router`], counting what it issues and refuses in `metrics`, with the
/// ACME resources under `/acme/` if `acme` is given.
pub fn router_counted(
    ca: Arc<Ca>,
    limits: BodyLimits,
    metrics: Arc<CaMetrics>,
    acme: Option<Arc<crate::acme::Acme>>,
) -> Router {
    let api = Router::new()
        .route(api::HEALTH, get(health))
        .route(api::ROOT, get(root))
        .route(api::SIGN, post(sign))
        .route(api::CRL, get(crl))
        .route(api::CRLS, get(crls))
        .route(api::INTERMEDIATES, get(intermediates))
        .route(api::RENEW, post(renew))
        .with_state(ca);
    let api = match acme {
        Some(acme) => api.merge(crate::acme::router(acme)),
        None => api,
    };
    api.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            read_body_within,
        ))
        // Outermost, so it sees every answer, the body limits' too.
        .layer(axum::middleware::from_fn_with_state(metrics, count))
}

/// The address of the connection a request came on, put into each request
/// by the listener, for the audit lines.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The peer address of `extensions`' request, if the listener gave one.
fn peer_of(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<PeerAddr>().map(|p| p.0)
}

/// Marks an answer as a refusal with this code, for [`count`].
#[derive(Debug, Clone)]
pub(crate) struct Refused(pub(crate) String);

/// Marks an answer as a certificate issued by this operation, and how long
/// the issuance took, for [`count`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Issued {
    pub(crate) operation: &'static str,
    pub(crate) seconds: f64,
}

/// Counts each answer the handlers and the body limits marked.
async fn count(State(metrics): State<Arc<CaMetrics>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(Refused(code)) = response.extensions().get::<Refused>() {
        metrics.count_refused(code);
    }
    if let Some(issued) = response.extensions().get::<Issued>() {
        metrics.count_issued(issued.operation, issued.seconds);
    }
    response
}

/// Reads the whole request body, bounded in size and in time, before any
/// handler runs.
///
/// A client that sends its headers and then trickles the body, or sends
/// none, would otherwise hold its connection slot for as long as it likes
/// (hyper bounds only the headers), and enough of them lock everyone out.
/// Reading the body here, rather than timing the handler, bounds only what
/// the client controls: a signing call that has started is never cut off
/// between the ledger commit (which spends the token) and the answer.
/// The refusals close the connection: the rest of the body is not read.
async fn read_body_within(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let peer = peer_of(&parts.extensions);
    let read = Limited::new(body, limits.max_body).collect();
    let refusal = match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(body)) => {
            let req = Request::from_parts(parts, Body::from(body.to_bytes()));
            return next.run(req).await;
        }
        Err(_) => {
            tracing::warn!(
                target: "audit",
                peer = %Peer(peer),
                "audit: refused a request: request_timeout (its body did not arrive within {})",
                humantime::format_duration(limits.timeout)
            );
            problem(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {}; send the whole request at once",
                    humantime::format_duration(limits.timeout)
                ),
            )
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => too_large(peer),
        Ok(Err(e)) => problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("cannot read the request body: {e}"),
        ),
    };
    closing(refusal)
}

/// `response` with `Connection: close`, for a refusal after which the
/// connection cannot carry another request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large(peer: Option<SocketAddr>) -> Response {
    tracing::warn!(target: "audit", peer = %Peer(peer), "audit: refused CSR: body_too_large");
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body exceeds the CA's limit; a CSR is a few KiB",
    )
}

fn problem(status: StatusCode, error: &str, detail: impl Into<String>) -> Response {
    let mut response = (
        status,
        Json(ErrorBody {
            error: error.to_string(),
            detail: detail.into(),
        }),
    )
        .into_response();
    // A 503 is the CA's own passing trouble (its ledger unreachable, no
    // current issuer): say when to come back.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response.extensions_mut().insert(Refused(error.to_string()));
    response
}

async fn health() -> &'static str {
    // The listener only starts once the root is loaded and the ledger
    // open, so answering at all means ready to sign.
    "ok\n"
}

async fn root(State(ca): State<Arc<Ca>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        ca.root_pem(),
    )
        .into_response()
}

/// `GET /v1/intermediates`: every intermediate held that has not expired,
/// PEM, oldest first.
async fn intermediates(State(ca): State<Arc<Ca>>) -> Response {
    let bundle: String = ca.live_intermediates().iter().map(|i| i.pem()).collect();
    ([(header::CONTENT_TYPE, "application/x-pem-file")], bundle).into_response()
}

/// `GET /v1/crls`: the root CRL, then each intermediate's CRL, PEM. A
/// party missing any of them could not check a whole chain, so without
/// the root CRL (none in `root.crl.pem`) or a CRL per live intermediate
/// the answer is 503, not a partial bundle.
async fn crls(State(ca): State<Arc<Ca>>) -> Response {
    let Some(root_crl) = ca.root_crl() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "crl_unavailable",
            "the CA has no root CRL to publish (root.crl.pem); sign one where the root key is: `pki-ca root-crl`",
        );
    };
    let crls = ca.crls();
    if crls.is_empty() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "crl_unavailable",
            "the CA has not published its CRLs yet; try again shortly",
        );
    }
    let mut bundle = pki_common::files::pem_encode("X509 CRL", root_crl.der.as_ref());
    for crl in crls {
        bundle.push_str(&crl.pem());
    }
    ([(header::CONTENT_TYPE, "application/x-pem-file")], bundle).into_response()
}

#[derive(serde::Deserialize)]
struct CrlQuery {
    format: Option<String>,
}

async fn crl(
    State(ca): State<Arc<Ca>>,
    query: Result<Query<CrlQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!(
                "{}; the only parameter is format, given at most once: der (the default) or pem",
                rejection.body_text()
            ),
            )
        }
    };
    let Some(crl) = ca.current_crl() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "crl_unavailable",
            "the CA has not published a CRL yet; try again shortly",
        );
    };
    match q.format.as_deref() {
        None | Some("der") => (
            [(header::CONTENT_TYPE, "application/pkix-crl")],
            crl.der.as_ref().to_vec(),
        )
            .into_response(),
        Some("pem") => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            crl.pem(),
        )
            .into_response(),
        Some(other) => problem(
            StatusCode::BAD_REQUEST,
            "bad_format",
            format!("unknown format {other:?}; use der (the default) or pem"),
        ),
    }
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the API has GET /health, GET /v1/root, GET /v1/intermediates, GET /v1/crls, GET /v1/crl, POST /v1/sign and POST /v1/renew",
    )
}

async fn method_not_allowed() -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "wrong method for this endpoint; the API has GET /health, GET /v1/root, GET /v1/intermediates, GET /v1/crls, GET /v1/crl, POST /v1/sign and POST /v1/renew",
    )
}

fn status_of(err: &SignError) -> StatusCode {
    match err {
        SignError::MissingToken | SignError::Token(_) => StatusCode::UNAUTHORIZED,
        SignError::Policy(
            crate::policy::PolicyError::NameNotAuthorized { .. }
            | crate::policy::PolicyError::NameNotPermitted { .. },
        ) => StatusCode::FORBIDDEN,
        SignError::Policy(crate::policy::PolicyError::IssuerExpiring { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SignError::Policy(_) | SignError::BadProfile(_) => StatusCode::BAD_REQUEST,
        SignError::AlreadyRenewed { .. } | SignError::ProfileMismatch { .. } => {
            StatusCode::CONFLICT
        }
        SignError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
        SignError::Authority(crate::authority::AuthorityError::NoIntermediate { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SignError::Authority(_) | SignError::Lint(_) => StatusCode::INTERNAL_SERVER_ERROR,
        SignError::NoClientCertificate => StatusCode::UNAUTHORIZED,
        SignError::UnknownCertificate(_)
        | SignError::RenewRevoked { .. }
        | SignError::RenewExpired(_) => StatusCode::FORBIDDEN,
        SignError::NameReserved(_) => StatusCode::FORBIDDEN,
    }
}

/// The TLS client certificate of the connection a request came on, put
/// into each request by the listener.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<CertificateDer<'static>>);

/// The body, or the problem document that refuses it.
#[allow(clippy::result_large_err)]
fn csr_body(
    body: Result<Bytes, BytesRejection>,
    peer: Option<SocketAddr>,
) -> Result<Bytes, Response> {
    match body {
        Ok(b) => Ok(b),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(too_large(peer))
        }
        Err(rejection) => Err(problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )),
    }
}

/// Runs a signing call (`operation`: enroll or renew) off the async
/// workers (verifying and signing are CPU work, and the ledger commit waits
/// on the disk) and answers its outcome.
async fn signed(
    operation: &'static str,
    call: impl FnOnce() -> Result<crate::authority::SignedCert, SignError> + Send + 'static,
) -> Response {
    let started = std::time::Instant::now();
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(cert)) => {
            let mut response = (
                [(header::CONTENT_TYPE, api::PEM_CERT_CHAIN)],
                cert.chain_pem(),
            )
                .into_response();
            response.extensions_mut().insert(Issued {
                operation,
                seconds: started.elapsed().as_secs_f64(),
            });
            response
        }
        Ok(Err(e)) => problem(status_of(&e), e.code(), e.to_string()),
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the signing task failed; see the CA's log",
        ),
    }
}

async fn renew(
    State(ca): State<Arc<Ca>>,
    peer: Option<Extension<PeerCertificate>>,
    addr: Option<Extension<PeerAddr>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let addr = addr.map(|Extension(a)| a.0);
    let body = match csr_body(body, addr) {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let peer = peer.and_then(|Extension(p)| p.0);
    signed("renew", move || ca.renew_from(addr, peer.as_ref(), &body)).await
}

async fn sign(
    State(ca): State<Arc<Ca>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    addr: Option<Extension<PeerAddr>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let addr = addr.map(|Extension(a)| a.0);
    let body = match csr_body(body, addr) {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let bearer = bearer_token(&headers);
    let requested = match requested_profile(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return problem(status_of(&e), e.code(), e.to_string()),
    };
    signed("enroll", move || {
        ca.sign_from(addr, bearer.as_deref(), requested, &body)
    })
    .await
}

/// The profile a `POST /v1/sign` states it expects (`?profile=client`),
/// so the CA refuses a token of another profile before spending it. A
/// request without one (an older client) is served as before. Any other
/// query parameter, or the profile twice, is refused: a request must say
/// one thing.
fn requested_profile(query: Option<&str>) -> Result<Option<Profile>, SignError> {
    let mut profile = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("profile", value)) if profile.is_none() => {
                profile = Some(
                    value
                        .parse::<Profile>()
                        .map_err(|_| SignError::BadProfile(value.to_string()))?,
                );
            }
            _ => return Err(SignError::BadProfile(pair.to_string())),
        }
    }
    Ok(profile)
}

/// The token in an `Authorization: Bearer <token>` header. The scheme is
/// matched without regard to case (RFC 9110 §11.1, formerly RFC 7235), so
/// `bearer` and `BEARER` work too; any other scheme is no token.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in [
            "Bearer t",
            "bearer t",
            "BEARER t",
            "BeArEr   t ",
            "bearer\tt",
        ] {
            assert_eq!(
                bearer_token(&with_authorization(value)).as_deref(),
                Some("t"),
                "{value:?}"
            );
        }
        for value in ["Basic t", "Bearert", "Bearer", "Token t"] {
            assert_eq!(bearer_token(&with_authorization(value)), None, "{value:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}

//! The CA's HTTPS API.
//!
//! Handlers translate between HTTP and [`Ca`] calls. They make
//! no policy decision: every refusal comes from the CA and is sent as a
//! JSON problem document `{"error": code, "detail": sentence}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use rustls::pki_types::CertificateDer;

use pki_common::ca::api::{self, ErrorBody};
use pki_common::cert::Profile;
use pki_common::files::cert_to_pem;

use crate::{Ca, SignError};

/// The largest request body accepted by default; a CSR is a few KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// The API's routes over `ca`, refusing bodies over `max_body` bytes.
pub fn router(ca: Arc<Ca>, max_body: usize) -> Router {
    Router::new()
        .route(api::HEALTH, get(health))
        .route(api::ROOT, get(root))
        .route(api::SIGN, post(sign))
        .route(api::CRL, get(crl))
        .route(api::RENEW, post(renew))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(ca)
}

fn problem(status: StatusCode, error: &str, detail: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: error.to_string(),
            detail: detail.into(),
        }),
    )
        .into_response()
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

#[derive(serde::Deserialize)]
struct CrlQuery {
    format: Option<String>,
}

async fn crl(State(ca): State<Arc<Ca>>, Query(q): Query<CrlQuery>) -> Response {
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
        "no such endpoint; the API has GET /health, GET /v1/root, GET /v1/crl, POST /v1/sign and POST /v1/renew",
    )
}

async fn method_not_allowed() -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "wrong method for this endpoint; the API has GET /health, GET /v1/root, GET /v1/crl, POST /v1/sign and POST /v1/renew",
    )
}

fn status_of(err: &SignError) -> StatusCode {
    match err {
        SignError::MissingToken | SignError::Token(_) => StatusCode::UNAUTHORIZED,
        SignError::Policy(crate::policy::PolicyError::NameNotAuthorized { .. }) => {
            StatusCode::FORBIDDEN
        }
        SignError::Policy(crate::policy::PolicyError::IssuerExpiring { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SignError::Policy(_) | SignError::BadProfile(_) => StatusCode::BAD_REQUEST,
        SignError::AlreadyRenewed { .. } | SignError::ProfileMismatch { .. } => {
            StatusCode::CONFLICT
        }
        SignError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
        SignError::Authority(_) => StatusCode::INTERNAL_SERVER_ERROR,
        SignError::NoClientCertificate => StatusCode::UNAUTHORIZED,
        SignError::UnknownCertificate(_)
        | SignError::RenewRevoked { .. }
        | SignError::RenewExpired(_) => StatusCode::FORBIDDEN,
    }
}

/// The TLS client certificate of the connection a request came on, put
/// into each request by the listener.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<CertificateDer<'static>>);

/// The body, or the problem document that refuses it.
#[allow(clippy::result_large_err)]
fn csr_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Response> {
    match body {
        Ok(b) => Ok(b),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!(target: "audit", "audit: refused CSR: body_too_large");
            Err(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body exceeds the CA's limit; a CSR is a few KiB",
            ))
        }
        Err(rejection) => Err(problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )),
    }
}

/// Runs a signing call off the async workers (verifying and signing are
/// CPU work, and the ledger commit waits on the disk) and answers its
/// outcome.
async fn signed(
    call: impl FnOnce() -> Result<crate::authority::SignedCert, SignError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(cert)) => (
            [(header::CONTENT_TYPE, api::PEM_CERT_CHAIN)],
            cert_to_pem(&cert.der),
        )
            .into_response(),
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match csr_body(body) {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let peer = peer.and_then(|Extension(p)| p.0);
    signed(move || ca.renew(peer.as_ref(), &body)).await
}

async fn sign(
    State(ca): State<Arc<Ca>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match csr_body(body) {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let requested = match requested_profile(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return problem(status_of(&e), e.code(), e.to_string()),
    };
    signed(move || ca.sign_for(bearer.as_deref(), requested, &body)).await
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

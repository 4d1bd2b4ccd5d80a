//! ACME error documents (RFC 8555 §6.7, RFC 7807): one type per failure,
//! a sentence saying what was wrong and what to do, and `subproblems`
//! naming each identifier when a request fails for several.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::model::Identifier;

/// The `urn:ietf:params:acme:error:*` types this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProblemType {
    AccountDoesNotExist,
    AlreadyRevoked,
    BadCsr,
    BadNonce,
    BadPublicKey,
    BadRevocationReason,
    BadSignatureAlgorithm,
    Connection,
    ExternalAccountRequired,
    IncorrectResponse,
    Malformed,
    OrderNotReady,
    RateLimited,
    RejectedIdentifier,
    ServerInternal,
    Tls,
    Unauthorized,
    UnsupportedContact,
    UnsupportedIdentifier,
    Conflict,
}

impl ProblemType {
    /// The name after `urn:ietf:params:acme:error:`.
    pub fn name(self) -> &'static str {
        use ProblemType::*;
        match self {
            AccountDoesNotExist => "accountDoesNotExist",
            AlreadyRevoked => "alreadyRevoked",
            BadCsr => "badCSR",
            BadNonce => "badNonce",
            BadPublicKey => "badPublicKey",
            BadRevocationReason => "badRevocationReason",
            BadSignatureAlgorithm => "badSignatureAlgorithm",
            Connection => "connection",
            ExternalAccountRequired => "externalAccountRequired",
            IncorrectResponse => "incorrectResponse",
            Malformed => "malformed",
            OrderNotReady => "orderNotReady",
            RateLimited => "rateLimited",
            RejectedIdentifier => "rejectedIdentifier",
            ServerInternal => "serverInternal",
            Tls => "tls",
            Unauthorized => "unauthorized",
            UnsupportedContact => "unsupportedContact",
            UnsupportedIdentifier => "unsupportedIdentifier",
            // RFC 8555 defines no conflict type; a key change to a key
            // another account holds is `malformed` with status 409.
            Conflict => "malformed",
        }
    }

    /// The full type URN.
    pub fn urn(self) -> String {
        format!("urn:ietf:params:acme:error:{}", self.name())
    }

    fn status(self) -> StatusCode {
        use ProblemType::*;
        match self {
            AccountDoesNotExist
            | AlreadyRevoked
            | BadCsr
            | BadNonce
            | BadPublicKey
            | BadRevocationReason
            | BadSignatureAlgorithm
            | ExternalAccountRequired
            | Malformed
            | RejectedIdentifier
            | UnsupportedContact
            | UnsupportedIdentifier
            | Connection
            | IncorrectResponse
            | Tls => StatusCode::BAD_REQUEST,
            Unauthorized | OrderNotReady => StatusCode::FORBIDDEN,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ServerInternal => StatusCode::INTERNAL_SERVER_ERROR,
            Conflict => StatusCode::CONFLICT,
        }
    }
}

/// A failure for one identifier of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Subproblem {
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
    pub identifier: Identifier,
}

/// An ACME problem document, and how it is answered.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: ProblemType,
    pub detail: String,
    pub subproblems: Vec<Subproblem>,
    /// Seconds, for `rateLimited` (and a ledger outage).
    pub retry_after: Option<u64>,
    /// A status other than the type's own (404 for an unknown resource,
    /// 405, 415, 503).
    pub status: Option<StatusCode>,
    /// `Location` for a 409 conflict: the account that holds the key.
    pub location: Option<String>,
}

impl Problem {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            subproblems: Vec::new(),
            retry_after: None,
            status: None,
            location: None,
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::Malformed, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::Unauthorized, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::ServerInternal, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Problem::malformed(format!("no such {what}")).with_status(StatusCode::NOT_FOUND)
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_subproblems(mut self, subproblems: Vec<Subproblem>) -> Self {
        self.subproblems = subproblems;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(self.kind.status())
    }

    /// The document as JSON.
    pub fn body(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "type": self.kind.urn(),
            "detail": self.detail,
            "status": self.status().as_u16(),
        });
        if !self.subproblems.is_empty() {
            doc["subproblems"] = serde_json::to_value(&self.subproblems).unwrap_or_default();
        }
        if self.kind == ProblemType::BadSignatureAlgorithm {
            doc["algorithms"] = serde_json::json!(super::jws::ALGORITHMS);
        }
        doc
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

/// The content type of every problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(location) = self.location.as_deref().and_then(|l| l.parse().ok()) {
            headers.insert(header::LOCATION, location);
        }
        // Counted by the API's metrics like every refusal.
        response
            .extensions_mut()
            .insert(crate::http::Refused(format!("acme:{}", self.kind.name())));
        response
    }
}

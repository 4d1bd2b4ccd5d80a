//! The ACME resources (RFC 8555 §7): the routes, the plumbing every
//! answer shares (a fresh `Replay-Nonce`, the directory `Link`), and the
//! account resources. Orders, authorizations, challenges and
//! certificates are in [`super::orders`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use super::jws::{Jwk, Jws};
use super::model::{Account, AccountStatus};
use super::problem::{Problem, ProblemType};
use super::request::{base_url, KeyRule, Signed};
use super::Acme;
use crate::http::PeerAddr;
use crate::ledger::LedgerError;

/// The ACME routes over `acme`, under `/acme/`.
pub fn router(acme: Arc<Acme>) -> Router {
    Router::new()
        .route("/acme/directory", get(directory))
        .route("/acme/new-nonce", get(nonce_get).head(nonce_head))
        .route("/acme/new-account", post(new_account))
        .route("/acme/new-order", post(super::orders::new_order))
        .route("/acme/revoke-cert", post(super::orders::revoke_cert))
        .route("/acme/key-change", post(key_change))
        .route("/acme/acct/{id}", post(account))
        .route("/acme/acct/{id}/orders", post(account_orders))
        .route("/acme/order/{id}", post(super::orders::order))
        .route("/acme/order/{id}/finalize", post(super::orders::finalize))
        .route("/acme/authz/{id}", post(super::orders::authz))
        .route("/acme/chall/{id}", post(super::orders::challenge))
        .route("/acme/cert/{id}", post(super::orders::certificate))
        .with_state(acme)
}

/// A successful answer, before the headers every answer gets.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: AnswerBody,
    pub location: Option<String>,
    /// Extra `Link` headers (`rel="up"`).
    pub links: Vec<String>,
    pub retry_after: Option<u64>,
    /// Whether a certificate was issued, for the metrics.
    pub issued: bool,
}

pub(super) enum AnswerBody {
    Json(Value),
    Pem(String),
    Empty,
}

impl Answer {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Answer {
            status,
            body: AnswerBody::Json(body),
            location: None,
            links: Vec::new(),
            retry_after: None,
            issued: false,
        }
    }

    pub fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }
}

/// A POST as it arrived: headers, path, body, and the peer for audits.
pub(super) struct Post {
    pub headers: HeaderMap,
    pub path: String,
    pub body: Vec<u8>,
    pub peer: Option<std::net::SocketAddr>,
}

impl Post {
    async fn read(request: Request) -> Post {
        let (parts, body) = request.into_parts();
        // The API's middleware has already read the body, bounded.
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Post {
            peer: parts.extensions.get::<PeerAddr>().map(|p| p.0),
            headers: parts.headers,
            path: parts.uri.path().to_string(),
            body,
        }
    }
}

/// Authenticates `request` under `rule`, runs `handle` off the async
/// threads (the ledger blocks), and answers with a fresh nonce whatever
/// the outcome.
pub(super) async fn run<F>(acme: Arc<Acme>, request: Request, rule: KeyRule, handle: F) -> Response
where
    F: FnOnce(&Arc<Acme>, Signed, &Post) -> Result<Answer, Problem> + Send + 'static,
{
    let post = Post::read(request).await;
    let worker = acme.clone();
    let result = tokio::task::spawn_blocking(move || {
        let signed = worker.authenticate(&post.headers, &post.path, &post.body, rule)?;
        let answer = handle(&worker, signed, &post)?;
        Ok::<_, Problem>((answer, post.headers))
    })
    .await;
    match result {
        Ok(Ok((answer, headers))) => finish(&acme, &headers, answer.into_response()).await,
        Ok(Err(problem)) => {
            tracing::debug!("ACME request refused: {problem}");
            finish(&acme, &HeaderMap::new(), problem.into_response()).await
        }
        Err(_) => {
            let problem = Problem::internal("the request failed inside the CA; retry");
            finish(&acme, &HeaderMap::new(), problem.into_response()).await
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            AnswerBody::Json(v) => (self.status, axum::Json(v)).into_response(),
            AnswerBody::Pem(pem) => {
                let mut r = (self.status, pem).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/pem-certificate-chain"),
                );
                r
            }
            AnswerBody::Empty => (self.status, Body::empty()).into_response(),
        };
        let headers = response.headers_mut();
        if let Some(loc) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, loc);
        }
        for link in self.links {
            if let Ok(v) = HeaderValue::from_str(&link) {
                headers.append(header::LINK, v);
            }
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.issued {
            response.extensions_mut().insert(crate::http::Issued {
                operation: "acme",
                seconds: 0.0,
            });
        }
        response
    }
}

/// Adds what every ACME answer carries: a fresh nonce (so a client that
/// was refused for a bad nonce can retry at once), the directory link,
/// and no caching.
async fn finish(acme: &Arc<Acme>, headers: &HeaderMap, mut response: Response) -> Response {
    let worker = acme.clone();
    let nonce = tokio::task::spawn_blocking(move || worker.new_nonce()).await;
    let out = response.headers_mut();
    if let Ok(Ok(nonce)) = nonce {
        if let Ok(v) = HeaderValue::from_str(&nonce) {
            out.insert("replay-nonce", v);
        }
    }
    if let Ok(base) = base_url(headers) {
        if let Ok(v) = HeaderValue::from_str(&format!("<{base}/acme/directory>;rel=\"index\"")) {
            out.append(header::LINK, v);
        }
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn directory(State(acme): State<Arc<Acme>>, headers: HeaderMap) -> Response {
    let base = match base_url(&headers) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    axum::Json(json!({
        "newNonce": format!("{base}/acme/new-nonce"),
        "newAccount": format!("{base}/acme/new-account"),
        "newOrder": format!("{base}/acme/new-order"),
        "revokeCert": format!("{base}/acme/revoke-cert"),
        "keyChange": format!("{base}/acme/key-change"),
        "meta": {
            "externalAccountRequired": acme.config.eab_required,
        },
    }))
    .into_response()
}

async fn nonce_head(State(acme): State<Arc<Acme>>, headers: HeaderMap) -> Response {
    new_nonce(acme, headers, StatusCode::OK).await
}

async fn nonce_get(State(acme): State<Arc<Acme>>, headers: HeaderMap) -> Response {
    new_nonce(acme, headers, StatusCode::NO_CONTENT).await
}

/// newNonce: `status` with a fresh nonce, or the ledger's problem when
/// none can be stored (an answer without a nonce would only fail later).
async fn new_nonce(acme: Arc<Acme>, headers: HeaderMap, status: StatusCode) -> Response {
    let worker = acme.clone();
    let nonce = tokio::task::spawn_blocking(move || worker.new_nonce()).await;
    let mut response = match nonce {
        Ok(Ok(nonce)) => {
            let mut r = status.into_response();
            if let Ok(v) = HeaderValue::from_str(&nonce) {
                r.headers_mut().insert("replay-nonce", v);
            }
            r
        }
        Ok(Err(problem)) => problem.into_response(),
        Err(_) => Problem::internal("the nonce could not be made; retry").into_response(),
    };
    if let Ok(base) = base_url(&headers) {
        if let Ok(v) = HeaderValue::from_str(&format!("<{base}/acme/directory>;rel=\"index\"")) {
            response.headers_mut().append(header::LINK, v);
        }
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn account_url(base: &str, id: &str) -> String {
    format!("{base}/acme/acct/{id}")
}

fn account_json(base: &str, a: &Account) -> Value {
    json!({
        "status": match a.status {
            AccountStatus::Valid => "valid",
            AccountStatus::Deactivated => "deactivated",
        },
        "contact": a.contact,
        "orders": format!("{}/orders", account_url(base, &a.id)),
        "createdAt": pki_common::cert::rfc3339(a.created_at),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewAccount {
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    only_return_existing: bool,
    #[serde(default)]
    external_account_binding: Option<Value>,
}

async fn new_account(State(acme): State<Arc<Acme>>, request: Request) -> Response {
    run(acme, request, KeyRule::Jwk, |acme, signed, _| {
        acme.new_account(signed)
    })
    .await
}

fn check_contacts(contact: &[String]) -> Result<(), Problem> {
    for c in contact {
        if !c.starts_with("mailto:") || c.contains('?') || c.len() > 320 {
            return Err(Problem::new(
                ProblemType::UnsupportedContact,
                format!("contact {c:?} is not supported; give mailto: addresses only"),
            ));
        }
    }
    Ok(())
}

impl Acme {
    fn new_account(&self, signed: Signed) -> Result<Answer, Problem> {
        let req: NewAccount = signed.json()?;
        let Some(jwk) = signed.jwk.as_ref() else {
            return Err(Problem::malformed(
                "newAccount carries the account key as jwk",
            ));
        };
        let thumbprint = jwk.thumbprint();
        if let Some(existing) = self.store()?.account_by_thumbprint(&thumbprint)? {
            let body = account_json(&signed.base, &existing);
            return Ok(
                Answer::json(StatusCode::OK, body).at(account_url(&signed.base, &existing.id))
            );
        }
        if req.only_return_existing {
            return Err(Problem::new(
                ProblemType::AccountDoesNotExist,
                "no account has this key; create one (without onlyReturnExisting)",
            ));
        }
        check_contacts(&req.contact)?;
        let eab_kid = match &req.external_account_binding {
            Some(binding) => Some(self.check_binding(binding, jwk, &signed.base)?),
            None if self.config.eab_required => {
                return Err(Problem::new(
                    ProblemType::ExternalAccountRequired,
                    "this CA requires an external account binding: ask the operator for a key id and HMAC key (`pki-ca eab`)",
                ))
            }
            None => None,
        };
        let account = Account {
            id: random_id(),
            thumbprint,
            jwk: jwk.to_json(),
            status: AccountStatus::Valid,
            contact: req.contact,
            created_at: pki_common::unix_now() as i64,
        };
        match self.store()?.create_account(&account, eab_kid.as_deref()) {
            Err(LedgerError::TokenAlreadyUsed) => return Err(eab_used()),
            other => other?,
        }
        tracing::info!(target: "audit", "audit: ACME account {} created (key {})", account.id, account.thumbprint);
        Ok(
            Answer::json(StatusCode::CREATED, account_json(&signed.base, &account))
                .at(account_url(&signed.base, &account.id)),
        )
    }

    /// Verifies an external account binding (§7.3.4): an HS256 JWS over
    /// the account key, under a key `pki-ca eab` minted and nobody used.
    /// Answers its key id, consumed with the account's creation.
    fn check_binding(&self, binding: &Value, jwk: &Jwk, base: &str) -> Result<String, Problem> {
        let unauthorized =
            |why: &str| Problem::unauthorized(format!("the external account binding {why}"));
        let inner = Jws::parse(binding.to_string().as_bytes())?;
        let kid = inner
            .header
            .kid
            .clone()
            .ok_or_else(|| unauthorized("has no kid"))?;
        if inner.header.url.as_deref() != Some(&format!("{base}/acme/new-account")) {
            return Err(unauthorized("is not for this newAccount URL"));
        }
        if inner.header.nonce.is_some() || inner.header.jwk.is_some() {
            return Err(Problem::malformed(
                "the external account binding has a nonce or jwk; it has neither",
            ));
        }
        let bound = serde_json::from_slice::<Value>(&inner.payload)
            .ok()
            .and_then(|v| Jwk::from_value(&v).ok());
        if bound.as_ref() != Some(jwk) {
            return Err(unauthorized("binds another key than this account's"));
        }
        let now = pki_common::unix_now() as i64;
        let (Some(master), Some(hash)) = (&self.eab, self.store()?.eab_hash(&kid, now)?) else {
            return Err(eab_used());
        };
        let key = master.key_of(&kid);
        if super::eab::key_hash(&key) != hash {
            return Err(eab_used());
        }
        inner
            .verify_hmac(&key)
            .map_err(|_| unauthorized("MAC does not verify with the key of its key id"))?;
        Ok(kid)
    }
}

fn eab_used() -> Problem {
    Problem::unauthorized(
        "the external account key id is unknown, expired or already used; ask the operator for a new one (`pki-ca eab`)",
    )
}

/// A fresh random id for a resource URL.
pub(super) fn random_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[derive(Deserialize)]
struct AccountUpdate {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    contact: Option<Vec<String>>,
}

async fn account(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    run(acme, request, KeyRule::Kid, move |acme, signed, _| {
        let account = signed.account()?.clone();
        if account.id != id {
            return Err(Problem::unauthorized(
                "an account may only read or change itself",
            ));
        }
        if !signed.is_get() {
            let update: AccountUpdate = signed.json()?;
            match update.status.as_deref() {
                Some("deactivated") => {
                    acme.store()?
                        .set_account_status(&id, AccountStatus::Deactivated)?;
                    tracing::info!(target: "audit", "audit: ACME account {id} deactivated");
                }
                Some(other) => {
                    return Err(Problem::malformed(format!(
                        "an account's status can only be set to \"deactivated\", not {other:?}"
                    )))
                }
                None => {}
            }
            if let Some(contact) = update.contact {
                check_contacts(&contact)?;
                acme.store()?.set_account_contact(&id, &contact)?;
            }
        }
        let now = acme.store()?.account(&id)?.unwrap_or(account);
        Ok(Answer::json(
            StatusCode::OK,
            account_json(&signed.base, &now),
        ))
    })
    .await
}

async fn account_orders(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    run(acme, request, KeyRule::Kid, move |acme, signed, _| {
        if signed.account()?.id != id {
            return Err(Problem::unauthorized(
                "an account may only list its own orders",
            ));
        }
        let orders: Vec<String> = acme
            .store()?
            .orders_of(&id)?
            .iter()
            .map(|o| super::orders::order_url(&signed.base, o))
            .collect();
        Ok(Answer::json(StatusCode::OK, json!({ "orders": orders })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyChange {
    account: String,
    old_key: Value,
}

async fn key_change(State(acme): State<Arc<Acme>>, request: Request) -> Response {
    run(acme, request, KeyRule::Kid, |acme, signed, post| {
        acme.key_change(signed, post)
    })
    .await
}

impl Acme {
    /// keyChange (§7.3.5): the outer JWS is signed by the account's key,
    /// the inner one by the new key, over the account and the old key.
    fn key_change(&self, signed: Signed, post: &super::resources::Post) -> Result<Answer, Problem> {
        let account = signed.account()?.clone();
        let inner = Jws::parse(&signed.payload)?;
        let url = format!("{}{}", signed.base, post.path);
        if inner.header.url.as_deref() != Some(url.as_str()) {
            return Err(Problem::unauthorized(
                "the inner JWS's url is not the keyChange URL",
            ));
        }
        if inner.header.nonce.is_some() || inner.header.kid.is_some() {
            return Err(Problem::malformed(
                "the inner JWS carries the new key as jwk, without nonce or kid",
            ));
        }
        let new_key =
            Jwk::from_value(
                inner.header.jwk.as_ref().ok_or_else(|| {
                    Problem::malformed("the inner JWS carries the new key as jwk")
                })?,
            )?;
        inner.verify(&new_key)?;
        let change: KeyChange = serde_json::from_slice(&inner.payload).map_err(|e| {
            Problem::malformed(format!("the inner payload is not {{account, oldKey}}: {e}"))
        })?;
        if change.account != account_url(&signed.base, &account.id) {
            return Err(Problem::unauthorized(
                "the inner payload names another account",
            ));
        }
        if Jwk::from_value(&change.old_key)?.thumbprint() != account.thumbprint {
            return Err(Problem::unauthorized(
                "oldKey is not the account's current key",
            ));
        }
        let thumbprint = new_key.thumbprint();
        if let Some(holder) = self.store()?.account_by_thumbprint(&thumbprint)? {
            let mut p = Problem::new(
                ProblemType::Conflict,
                "the new key is already another account's key",
            )
            .with_status(StatusCode::CONFLICT);
            p.location = Some(account_url(&signed.base, &holder.id));
            return Err(p);
        }
        match self
            .store()?
            .set_account_key(&account.id, &new_key.to_json(), &thumbprint)
        {
            Err(LedgerError::KeyInUse) => {
                return Err(Problem::new(
                    ProblemType::Conflict,
                    "the new key is already another account's key",
                )
                .with_status(StatusCode::CONFLICT))
            }
            other => other?,
        }
        tracing::info!(target: "audit", "audit: ACME account {} changed its key to {thumbprint}", account.id);
        let now = self.store()?.account(&account.id)?.unwrap_or(account);
        Ok(Answer::json(
            StatusCode::OK,
            account_json(&signed.base, &now),
        ))
    }
}

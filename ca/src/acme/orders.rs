//! Orders, authorizations, challenges, certificates and revocation
//! (RFC 8555 §7.4–7.6), and the JSON each is shown as.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::jws::b64;
use super::model::*;
use super::problem::{Problem, ProblemType, Subproblem};
use super::request::{KeyRule, Signed};
use super::resources::{random_id, run, Answer, AnswerBody, Post};
use super::{Acme, ORDER_LIFETIME_SECS, RATE_WINDOW_SECS};
use crate::policy::{self, PolicyError};
use crate::SignError;
use pki_common::cert::rfc3339;
use pki_common::revocation::Reason;

/// The most identifiers one order may have.
const MAX_IDENTIFIERS: usize = 100;

pub(super) fn order_url(base: &str, id: &str) -> String {
    format!("{base}/acme/order/{id}")
}

fn authz_url(base: &str, id: &str) -> String {
    format!("{base}/acme/authz/{id}")
}

fn challenge_url(base: &str, id: &str) -> String {
    format!("{base}/acme/chall/{id}")
}

fn cert_url(base: &str, serial: &str) -> String {
    format!("{base}/acme/cert/{serial}")
}

fn now() -> i64 {
    pki_common::unix_now() as i64
}

fn problem_json(value: &Option<String>) -> Option<Value> {
    value.as_deref().and_then(|e| serde_json::from_str(e).ok())
}

impl Acme {
    fn order_json(&self, base: &str, order: &Order) -> Result<(Value, OrderStatus), Problem> {
        let authzs = self.authzs_of(order)?;
        let status = order.status_at(&authzs, now());
        let mut body = json!({
            "status": status.as_str(),
            "expires": rfc3339(order.expires_at),
            "identifiers": order.identifiers,
            "authorizations": order.authz_ids.iter().map(|a| authz_url(base, a)).collect::<Vec<_>>(),
            "finalize": format!("{}/finalize", order_url(base, &order.id)),
        });
        if let Some(serial) = &order.cert_serial {
            body["certificate"] = json!(cert_url(base, serial));
        }
        if let Some(error) = problem_json(&order.error) {
            body["error"] = error;
        }
        Ok((body, status))
    }

    fn authzs_of(&self, order: &Order) -> Result<Vec<Authz>, Problem> {
        let mut out = Vec::with_capacity(order.authz_ids.len());
        for id in &order.authz_ids {
            if let Some(a) = self.store()?.authz(id)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The order `id`, if it is `account`'s.
    fn owned_order(&self, id: &str, account: &str) -> Result<Order, Problem> {
        match self.store()?.order(id)? {
            Some(o) if o.account_id == account => Ok(o),
            Some(_) => Err(Problem::unauthorized(
                "this order belongs to another account",
            )),
            None => Err(Problem::not_found("order")),
        }
    }

    /// The authorization `id`, if it is `account`'s.
    fn owned_authz(&self, id: &str, account: &str) -> Result<Authz, Problem> {
        match self.store()?.authz(id)? {
            Some(a) if a.account_id == account => Ok(a),
            Some(_) => Err(Problem::unauthorized(
                "this authorization belongs to another account",
            )),
            None => Err(Problem::not_found("authorization")),
        }
    }
}

fn challenge_json(base: &str, c: &Challenge) -> Value {
    let mut body = json!({
        "type": c.kind,
        "url": challenge_url(base, &c.id),
        "token": c.token,
        "status": c.status.as_str(),
    });
    if let Some(at) = c.validated_at {
        body["validated"] = json!(rfc3339(at));
    }
    if let Some(error) = problem_json(&c.error) {
        body["error"] = error;
    }
    body
}

fn authz_json(base: &str, a: &Authz) -> Value {
    json!({
        "identifier": a.identifier,
        "status": a.status_at(now()).as_str(),
        "expires": rfc3339(a.expires_at),
        "challenges": a.challenges.iter().map(|c| challenge_json(base, c)).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    identifiers: Vec<Identifier>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
}

pub(super) async fn new_order(State(acme): State<Arc<Acme>>, request: Request) -> Response {
    run(acme, request, KeyRule::Kid, |acme, signed, _| {
        acme.new_order(signed)
    })
    .await
}

impl Acme {
    fn new_order(&self, signed: Signed) -> Result<Answer, Problem> {
        let account = signed.account()?.clone();
        let req: NewOrder = signed.json()?;
        if req.not_before.is_some() || req.not_after.is_some() {
            return Err(Problem::malformed(
                "notBefore and notAfter are not supported: the CA's policy sets the validity; leave them out",
            ));
        }
        if req.identifiers.is_empty() || req.identifiers.len() > MAX_IDENTIFIERS {
            return Err(Problem::malformed(format!(
                "an order names 1 to {MAX_IDENTIFIERS} identifiers"
            )));
        }
        let identifiers = self.check_identifiers(&req.identifiers)?;
        self.check_rate_limits(&account.id, &identifiers)?;
        let (order, authzs) = build_order(&account.id, identifiers);
        self.store()?.create_order(&order, &authzs)?;
        tracing::info!(
            target: "audit",
            "audit: ACME order {} by account {} for {}",
            order.id,
            account.id,
            order.identifiers.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(", ")
        );
        let (body, _) = self.order_json(&signed.base, &order)?;
        Ok(Answer::json(StatusCode::CREATED, body).at(order_url(&signed.base, &order.id)))
    }

    /// Normalizes the identifiers and refuses any this CA may not issue
    /// for: each failure is a subproblem naming its identifier.
    fn check_identifiers(&self, ids: &[Identifier]) -> Result<Vec<Identifier>, Problem> {
        let mut out: Vec<Identifier> = Vec::new();
        let mut problems = Vec::new();
        for id in ids {
            match self.check_identifier(id) {
                Ok(normal) if !out.contains(&normal) => out.push(normal),
                Ok(_) => {}
                Err(p) => problems.push(Subproblem {
                    kind: p.kind.urn(),
                    detail: p.detail,
                    identifier: id.clone(),
                }),
            }
        }
        match problems.len() {
            0 => Ok(out),
            1 => {
                let only = problems.remove(0);
                let kind = if only.kind.ends_with("unsupportedIdentifier") {
                    ProblemType::UnsupportedIdentifier
                } else {
                    ProblemType::RejectedIdentifier
                };
                Err(Problem::new(kind, only.detail.clone()).with_subproblems(vec![only]))
            }
            n => Err(Problem::new(
                ProblemType::RejectedIdentifier,
                format!("{n} identifiers cannot be issued for; see subproblems"),
            )
            .with_subproblems(problems)),
        }
    }

    fn check_identifier(&self, id: &Identifier) -> Result<Identifier, Problem> {
        let rejected = |why: String| Problem::new(ProblemType::RejectedIdentifier, why);
        let value = match id.kind.as_str() {
            "dns" if id.value.starts_with("*.") => {
                return Err(rejected(format!(
                    "{}: wildcard names need dns-01, which this CA does not offer",
                    id.value
                )))
            }
            "dns" | "ip" => policy::normalize_name(&id.value)
                .map_err(|e| Problem::new(ProblemType::RejectedIdentifier, e.to_string()))?,
            other => {
                return Err(Problem::new(
                    ProblemType::UnsupportedIdentifier,
                    format!("identifier type {other:?} is not supported; use dns or ip"),
                ))
            }
        };
        let is_ip = value.parse::<std::net::IpAddr>().is_ok();
        if is_ip != (id.kind == "ip") {
            return Err(Problem::malformed(format!(
                "{:?} is not an identifier of type {}",
                id.value, id.kind
            )));
        }
        if !self.config.allows(&id.kind, &value) {
            return Err(rejected(format!(
                "{value} is outside the names this CA issues for by ACME; the operator allows names with --acme-allow"
            )));
        }
        if let Err(e) = self.ca.refuse_reserved(std::slice::from_ref(&value)) {
            return Err(rejected(e.to_string()));
        }
        Ok(Identifier {
            kind: id.kind.clone(),
            value,
        })
    }

    fn check_rate_limits(&self, account: &str, ids: &[Identifier]) -> Result<(), Problem> {
        let now = now();
        let since = now - RATE_WINDOW_SECS;
        let limited = |what: String, oldest: i64| {
            let mut p = Problem::new(ProblemType::RateLimited, what);
            p.retry_after = Some((oldest + RATE_WINDOW_SECS - now).max(1) as u64);
            p
        };
        let (orders, oldest) = self.store()?.orders_since(account, since)?;
        if orders >= self.config.orders_per_hour {
            return Err(limited(
                format!("this account created {orders} orders in the last hour, the most allowed; retry later"),
                oldest,
            ));
        }
        for id in ids {
            let (certs, oldest) = self.store()?.acme_certs_since(&id.value, since)?;
            if certs >= self.config.certs_per_name_per_hour {
                return Err(limited(
                    format!("{} got {certs} certificates in the last hour, the most allowed; retry later", id.value),
                    oldest,
                ));
            }
        }
        Ok(())
    }
}

/// A new order for `identifiers`, with one pending authorization each,
/// offering `http-01` and `tls-alpn-01`.
fn build_order(account: &str, identifiers: Vec<Identifier>) -> (Order, Vec<Authz>) {
    let now = now();
    let order_id = random_id();
    let expires_at = now + ORDER_LIFETIME_SECS;
    let authzs: Vec<Authz> = identifiers
        .iter()
        .map(|identifier| {
            let id = random_id();
            let challenges = ["http-01", "tls-alpn-01"]
                .iter()
                .map(|kind| Challenge {
                    id: random_id(),
                    authz_id: id.clone(),
                    kind: kind.to_string(),
                    token: super::validate::new_token(),
                    status: ChallengeStatus::Pending,
                    validated_at: None,
                    error: None,
                })
                .collect();
            Authz {
                id,
                order_id: order_id.clone(),
                account_id: account.to_string(),
                identifier: identifier.clone(),
                status: AuthzStatus::Pending,
                expires_at,
                challenges,
            }
        })
        .collect();
    let order = Order {
        id: order_id,
        account_id: account.to_string(),
        status: OrderStatus::Pending,
        identifiers,
        expires_at,
        created_at: now,
        authz_ids: authzs.iter().map(|a| a.id.clone()).collect(),
        cert_serial: None,
        error: None,
    };
    (order, authzs)
}

pub(super) async fn order(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    run(acme, request, KeyRule::Kid, move |acme, signed, _| {
        let order = acme.owned_order(&id, &signed.account()?.id)?;
        let (body, status) = acme.order_json(&signed.base, &order)?;
        let mut answer = Answer::json(StatusCode::OK, body);
        if status == OrderStatus::Processing {
            answer.retry_after = Some(1);
        }
        Ok(answer)
    })
    .await
}

#[derive(Deserialize)]
struct Finalize {
    csr: String,
}

pub(super) async fn finalize(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    run(acme, request, KeyRule::Kid, move |acme, signed, post| {
        acme.finalize(&id, signed, post)
    })
    .await
}

impl Acme {
    fn finalize(&self, id: &str, signed: Signed, post: &Post) -> Result<Answer, Problem> {
        let account = signed.account()?.id.clone();
        let order = self.owned_order(id, &account)?;
        let (_, status) = self.order_json(&signed.base, &order)?;
        if status != OrderStatus::Ready {
            return Err(Problem::new(
                ProblemType::OrderNotReady,
                format!(
                    "the order is {}, not ready: every authorization must be valid first",
                    status.as_str()
                ),
            ));
        }
        let req: Finalize = signed.json()?;
        let der = b64("the csr", &req.csr)
            .map_err(|e| Problem::new(ProblemType::BadCsr, e.to_string()))?;
        let verified = policy::verify_csr(&der).map_err(csr_problem)?;
        check_csr_names(&verified.requested_names, &order.identifiers)?;
        if !self.store()?.start_finalize(&order.id)? {
            return Err(Problem::new(
                ProblemType::OrderNotReady,
                "the order is already being finalized",
            ));
        }
        let names: Vec<String> = order.identifiers.iter().map(|i| i.value.clone()).collect();
        match self
            .ca
            .issue_for_order(post.peer, &verified, &names, &order.id, &account)
        {
            Ok(_) => {}
            Err(e) => {
                let problem = sign_problem(e);
                self.store()?
                    .fail_order(&order.id, &problem.body().to_string())?;
                return Err(problem);
            }
        }
        let order = self.owned_order(id, &account)?;
        let (body, _) = self.order_json(&signed.base, &order)?;
        let mut answer = Answer::json(StatusCode::OK, body);
        answer.issued = true;
        Ok(answer)
    }
}

/// The CSR must name exactly the order's identifiers (§7.4); each name
/// missing or extra is a subproblem.
fn check_csr_names(requested: &[String], ordered: &[Identifier]) -> Result<(), Problem> {
    let want: BTreeSet<&str> = ordered.iter().map(|i| i.value.as_str()).collect();
    let mut have = BTreeSet::new();
    let mut problems = Vec::new();
    for name in requested {
        let normal = policy::normalize_name(name).unwrap_or_else(|_| name.clone());
        if !want.contains(normal.as_str()) {
            problems.push(Subproblem {
                kind: ProblemType::BadCsr.urn(),
                detail: format!("the CSR asks for {name}, which the order does not name"),
                identifier: identifier_of(&normal),
            });
        }
        have.insert(normal);
    }
    for name in &want {
        if !have.contains(*name) {
            problems.push(Subproblem {
                kind: ProblemType::BadCsr.urn(),
                detail: format!("the CSR does not ask for {name}, which the order names"),
                identifier: identifier_of(name),
            });
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Problem::new(
        ProblemType::BadCsr,
        "the CSR must name exactly the order's identifiers; see subproblems",
    )
    .with_subproblems(problems))
}

fn identifier_of(name: &str) -> Identifier {
    let kind = if name.parse::<std::net::IpAddr>().is_ok() {
        "ip"
    } else {
        "dns"
    };
    Identifier {
        kind: kind.into(),
        value: name.to_string(),
    }
}

fn csr_problem(e: PolicyError) -> Problem {
    match e {
        PolicyError::UnsupportedKey(_) => Problem::new(ProblemType::BadPublicKey, e.to_string()),
        other => Problem::new(ProblemType::BadCsr, other.to_string()),
    }
}

fn sign_problem(e: SignError) -> Problem {
    match e {
        SignError::Policy(p @ PolicyError::NameNotPermitted { .. }) => {
            Problem::new(ProblemType::RejectedIdentifier, p.to_string())
        }
        SignError::Policy(p) => csr_problem(p),
        SignError::NameReserved(r) => Problem::new(ProblemType::RejectedIdentifier, r.to_string()),
        SignError::Ledger(crate::ledger::LedgerError::OrderNotProcessing(o)) => Problem::new(
            ProblemType::OrderNotReady,
            format!("order {o} is no longer being finalized"),
        ),
        other => Problem::internal(other.to_string()),
    }
}

pub(super) async fn authz(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    run(acme, request, KeyRule::Kid, move |acme, signed, _| {
        let account = signed.account()?.id.clone();
        let authz = acme.owned_authz(&id, &account)?;
        if !signed.is_get() {
            #[derive(Deserialize)]
            struct Deactivate {
                status: String,
            }
            let req: Deactivate = signed.json()?;
            if req.status != "deactivated" {
                return Err(Problem::malformed(
                    "an authorization can only be deactivated",
                ));
            }
            acme.store()?
                .set_authz_status(&id, AuthzStatus::Deactivated)?;
        }
        let authz = acme.store()?.authz(&id)?.unwrap_or(authz);
        Ok(Answer::json(
            StatusCode::OK,
            authz_json(&signed.base, &authz),
        ))
    })
    .await
}

pub(super) async fn challenge(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    run(acme, request, KeyRule::Kid, move |acme, signed, _| {
        acme.respond_challenge(&id, signed)
    })
    .await
}

impl Acme {
    /// A POST of `{}` to a challenge asks the server to validate it
    /// (§7.5.1); validation runs in the background and the client polls.
    fn respond_challenge(self: &Arc<Self>, id: &str, signed: Signed) -> Result<Answer, Problem> {
        let account = signed.account()?.clone();
        let challenge = self
            .store()?
            .challenge(id)?
            .ok_or_else(|| Problem::not_found("challenge"))?;
        let authz = self.owned_authz(&challenge.authz_id, &account.id)?;
        if !signed.is_get() {
            if authz.status_at(now()) != AuthzStatus::Pending {
                return Err(Problem::malformed(format!(
                    "the authorization is {}, so its challenges can no longer be answered",
                    authz.status_at(now()).as_str()
                )));
            }
            if self.store()?.start_challenge(id)? {
                let key_auth = format!("{}.{}", challenge.token, account.thumbprint);
                tokio::runtime::Handle::current().spawn(super::validate::run(
                    self.clone(),
                    challenge.clone(),
                    authz.clone(),
                    key_auth,
                ));
            }
        }
        let challenge = self.store()?.challenge(id)?.unwrap_or(challenge);
        let mut answer = Answer::json(StatusCode::OK, challenge_json(&signed.base, &challenge));
        answer.links.push(format!(
            "<{}>;rel=\"up\"",
            authz_url(&signed.base, &authz.id)
        ));
        Ok(answer)
    }
}

pub(super) async fn certificate(
    State(acme): State<Arc<Acme>>,
    Path(serial): Path<String>,
    request: Request,
) -> Response {
    run(acme, request, KeyRule::Kid, move |acme, signed, _| {
        let account = signed.account()?.id.clone();
        if acme.store()?.account_of_certificate(&serial)?.as_deref() != Some(account.as_str()) {
            return Err(Problem::not_found("certificate for this account"));
        }
        let record = acme
            .ca
            .ledger()
            .certificate(&serial)?
            .ok_or_else(|| Problem::not_found("certificate"))?;
        let mut pem = pki_common::files::pem_encode("CERTIFICATE", &record.der);
        if let Some(issuer) = acme.ca.issuer_cert_der(&record.issuer_id) {
            pem.push_str(&pki_common::files::pem_encode("CERTIFICATE", &issuer));
        }
        Ok(Answer {
            status: StatusCode::OK,
            body: AnswerBody::Pem(pem),
            location: None,
            links: Vec::new(),
            retry_after: None,
            issued: false,
        })
    })
    .await
}

#[derive(Deserialize)]
struct RevokeCert {
    certificate: String,
    #[serde(default)]
    reason: Option<u8>,
}

pub(super) async fn revoke_cert(State(acme): State<Arc<Acme>>, request: Request) -> Response {
    run(acme, request, KeyRule::Either, |acme, signed, _| {
        acme.revoke_cert(signed)
    })
    .await
}

impl Acme {
    /// revokeCert (§7.6), by the account that ordered the certificate, or
    /// signed with the certificate's own key.
    fn revoke_cert(&self, signed: Signed) -> Result<Answer, Problem> {
        let req: RevokeCert = signed.json()?;
        let der = b64("the certificate", &req.certificate)?;
        let info = pki_common::cert::CertInfo::parse(&rustls::pki_types::CertificateDer::from(
            der.clone(),
        ))
        .map_err(|e| Problem::malformed(format!("the certificate does not parse: {e}")))?;
        let record = self
            .ca
            .ledger()
            .certificate(&info.serial_hex)?
            .filter(|r| r.der == der)
            .ok_or_else(|| Problem::not_found("certificate issued by this CA"))?;
        let authorized = match (&signed.account, &signed.jwk) {
            (Some(account), _) => {
                self.store()?
                    .account_of_certificate(&record.serial_hex)?
                    .as_deref()
                    == Some(account.id.as_str())
            }
            (None, Some(jwk)) => spki_of(&der).is_some_and(|spki| jwk.matches_spki(&spki)),
            (None, None) => false,
        };
        if !authorized {
            return Err(Problem::unauthorized(
                "only the account that ordered the certificate, or its own key, may revoke it",
            ));
        }
        let reason = match req.reason.unwrap_or(0) {
            code @ (0 | 1 | 3 | 4 | 5) => Reason::from_code(code).unwrap_or(Reason::Unspecified),
            code => {
                return Err(Problem::new(
                    ProblemType::BadRevocationReason,
                    format!("reason code {code} is not accepted; use 0, 1, 3, 4 or 5"),
                ))
            }
        };
        if let Some(r) = record.revoked {
            return Err(Problem::new(
                ProblemType::AlreadyRevoked,
                format!(
                    "certificate {} is already revoked ({})",
                    record.serial_hex, r.reason
                ),
            ));
        }
        self.ca
            .revoke(&record.serial_hex, reason)
            .map_err(|e| Problem::internal(e.to_string()))?;
        Ok(Answer {
            body: AnswerBody::Empty,
            ..Answer::json(StatusCode::OK, Value::Null)
        })
    }
}

/// The DER SubjectPublicKeyInfo of the certificate `der`.
fn spki_of(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

//! What every ACME POST goes through before its handler runs (RFC 8555
//! §6.2–6.5): a flattened JWS, a protected `url` equal to the URL the
//! request was sent to, a `jwk` or a `kid` as the resource demands, a
//! signature that verifies with that key, and a nonce this server handed
//! out and nobody used yet. Whatever fails is answered with its own
//! problem type and a fresh nonce.

use axum::http::{header, HeaderMap};
use rand::RngCore;

use super::jws::{b64e, Jwk, Jws, JwsError};
use super::model::{Account, AccountStatus};
use super::problem::{Problem, ProblemType};
use super::{Acme, NONCE_LIFETIME_SECS};
use crate::ledger::LedgerError;

/// Which key a resource takes (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyRule {
    /// `jwk`: newAccount, where there is no account yet.
    Jwk,
    /// `kid`: everything an account does.
    Kid,
    /// Either: revokeCert, by the account or by the certificate's key.
    Either,
}

/// A request whose JWS verified.
pub(super) struct Signed {
    pub payload: Vec<u8>,
    /// `https://host`, as the client addressed this server.
    pub base: String,
    /// The account of the `kid`, if the request named one.
    pub account: Option<Account>,
    /// The key of a `jwk` request, if the request carried one.
    pub jwk: Option<Jwk>,
}

impl Signed {
    /// Whether this is a POST-as-GET (an empty payload, §6.3).
    pub fn is_get(&self) -> bool {
        self.payload.is_empty()
    }

    /// The payload as JSON; an empty or unparseable one is malformed.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Problem> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Problem::malformed(format!("the payload is not the JSON expected: {e}")))
    }

    /// The requesting account (a `kid` request).
    pub fn account(&self) -> Result<&Account, Problem> {
        self.account
            .as_ref()
            .ok_or_else(|| Problem::malformed("this resource takes a kid, not a jwk"))
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        // The ledger is the CA's own; its failures are the CA's fault,
        // and (an outage) worth retrying.
        let mut p = Problem::internal(format!("the CA's ledger failed: {e}; retry later"))
            .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE);
        p.retry_after = Some(5);
        p
    }
}

impl From<JwsError> for Problem {
    fn from(e: JwsError) -> Self {
        let kind = match e {
            JwsError::BadAlgorithm(_) => ProblemType::BadSignatureAlgorithm,
            JwsError::BadKey(_) => ProblemType::BadPublicKey,
            JwsError::Malformed(_) | JwsError::BadSignature => ProblemType::Malformed,
        };
        Problem::new(kind, e.to_string())
    }
}

/// `https://host` for the `Host` the request was sent to: the URLs this
/// server hands out and the `url` it expects are under it.
pub(super) fn base_url(headers: &HeaderMap) -> Result<String, Problem> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .ok_or_else(|| Problem::malformed("the request has no usable Host header"))?;
    Ok(format!("https://{host}"))
}

impl Acme {
    /// A fresh nonce, stored so that exactly one request can use it.
    pub(super) fn new_nonce(&self) -> Result<String, Problem> {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let nonce = b64e(&bytes);
        let now = pki_common::unix_now() as i64;
        self.store()?.add_nonce(&nonce, now + NONCE_LIFETIME_SECS)?;
        Ok(nonce)
    }

    /// Checks a POST to `path` against §6.2–6.5 and `rule`.
    pub(super) fn authenticate(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
        rule: KeyRule,
    ) -> Result<Signed, Problem> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok());
        if content_type != Some("application/jose+json") {
            return Err(Problem::malformed(
                "ACME requests are sent as Content-Type: application/jose+json",
            )
            .with_status(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let base = base_url(headers)?;
        let jws = Jws::parse(body)?;
        let url = format!("{base}{path}");
        if jws.header.url.as_deref() != Some(url.as_str()) {
            return Err(Problem::unauthorized(format!(
                "the JWS's protected url is {:?}, but the request was sent to {url:?}; sign the URL you send to",
                jws.header.url.as_deref().unwrap_or("")
            )));
        }
        let (account, jwk) = self.signing_key(&jws, &base, rule)?;
        let key = match (&account, &jwk) {
            (Some(a), _) => Jwk::from_value(&serde_json::from_str(&a.jwk).unwrap_or_default())?,
            (None, Some(k)) => k.clone(),
            (None, None) => return Err(Problem::malformed("the JWS names no key")),
        };
        jws.verify(&key)?;
        self.check_nonce(jws.header.nonce.as_deref())?;
        if let Some(a) = &account {
            if a.status != AccountStatus::Valid {
                return Err(Problem::unauthorized(format!(
                    "account {} is deactivated; create a new account",
                    a.id
                )));
            }
        }
        Ok(Signed {
            payload: jws.payload,
            base,
            account,
            jwk,
        })
    }

    /// The key the JWS claims: the account of its `kid`, or its `jwk`,
    /// exactly one of them, as `rule` allows.
    fn signing_key(
        &self,
        jws: &Jws,
        base: &str,
        rule: KeyRule,
    ) -> Result<(Option<Account>, Option<Jwk>), Problem> {
        match (&jws.header.jwk, &jws.header.kid, rule) {
            (Some(_), Some(_), _) => Err(Problem::malformed(
                "the JWS has both jwk and kid; send exactly one",
            )),
            (Some(jwk), None, KeyRule::Jwk | KeyRule::Either) => {
                Ok((None, Some(Jwk::from_value(jwk)?)))
            }
            (None, Some(kid), KeyRule::Kid | KeyRule::Either) => {
                let prefix = format!("{base}/acme/acct/");
                let account = kid
                    .strip_prefix(&prefix)
                    .map(|id| self.store()?.account(id))
                    .transpose()?
                    .flatten()
                    .ok_or_else(|| {
                        Problem::new(
                            ProblemType::AccountDoesNotExist,
                            format!(
                                "no account {kid:?} on this server; create one with newAccount"
                            ),
                        )
                    })?;
                Ok((Some(account), None))
            }
            (_, _, KeyRule::Jwk) => Err(Problem::malformed(
                "newAccount is signed with the new account's key, in a jwk",
            )),
            (_, _, _) => Err(Problem::malformed(
                "this request is signed by an account: name it with a kid (its URL)",
            )),
        }
    }

    fn check_nonce(&self, nonce: Option<&str>) -> Result<(), Problem> {
        let now = pki_common::unix_now() as i64;
        let fresh = match nonce {
            Some(n) if !n.is_empty() => self.store()?.take_nonce(n, now)?,
            _ => false,
        };
        if fresh {
            Ok(())
        } else {
            Err(Problem::new(
                ProblemType::BadNonce,
                "the nonce is missing, unknown, expired or already used; retry with the Replay-Nonce of this answer",
            ))
        }
    }
}

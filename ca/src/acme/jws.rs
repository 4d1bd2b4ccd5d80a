//! JSON Web Signatures as ACME uses them (RFC 8555 §6.2, RFC 7515).
//!
//! Only what ACME allows: the flattened JSON serialization with one
//! signature and a protected header only; the algorithms `ES256`,
//! `ES384`, `RS256` and `EdDSA` (Ed25519), and `HS256` for the external
//! account binding's inner JWS. The signature arithmetic is ring's: this
//! module turns a JWK into the public-key bytes ring takes
//! (`ECDSA_P256_SHA256_FIXED`, `RsaPublicKeyComponents`, `ED25519`) and
//! asks ring to verify. No JOSE crate fits here: the well-kept ones bring
//! aws-lc-rs or OpenSSL, and this tree has one crypto provider, ring.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why a JWS or JWK was refused. The ACME layer maps each to its problem
/// type (see [`super::problem`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    #[error("the request body is not a flattened JWS: {0}")]
    Malformed(String),
    #[error("unsupported JWS algorithm {0:?}; use ES256, ES384, RS256 or EdDSA")]
    BadAlgorithm(String),
    #[error("the JWS signature does not verify with the account key")]
    BadSignature,
    #[error("unusable JWK: {0}")]
    BadKey(String),
}

/// The algorithms this server verifies account signatures with, as the
/// `badSignatureAlgorithm` problem lists them.
pub const ALGORITHMS: &[&str] = &["ES256", "ES384", "RS256", "EdDSA"];

/// A flattened JWS as it arrives: three base64url fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    protected: String,
    payload: String,
    signature: String,
}

/// The protected header fields ACME uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Protected {
    pub alg: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub jwk: Option<Value>,
    #[serde(default)]
    pub kid: Option<String>,
}

/// A parsed, not yet verified, JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    pub header: Protected,
    /// The decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
    /// `protected || "." || payload`, as they arrived: what was signed.
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// Decodes base64url without padding, naming `what` on failure.
pub fn b64(what: &str, text: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwsError::Malformed(format!("{what} is not base64url without padding")))
}

/// Encodes base64url without padding.
pub fn b64e(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Jws {
    /// Parses a flattened JWS. A general serialization (`signatures`), an
    /// unprotected `header`, or any other member is refused: ACME allows
    /// exactly one signature over a protected header.
    pub fn parse(body: &[u8]) -> Result<Self, JwsError> {
        let flat: Flattened = serde_json::from_slice(body).map_err(|e| {
            JwsError::Malformed(format!(
                "expected {{\"protected\", \"payload\", \"signature\"}} and nothing else ({e})"
            ))
        })?;
        let header_json = b64("the protected header", &flat.protected)?;
        let header: Protected = serde_json::from_slice(&header_json).map_err(|e| {
            JwsError::Malformed(format!("the protected header is not valid JSON ({e})"))
        })?;
        let payload = b64("the payload", &flat.payload)?;
        let signature = b64("the signature", &flat.signature)?;
        let mut signing_input = flat.protected.into_bytes();
        signing_input.push(b'.');
        signing_input.extend_from_slice(flat.payload.as_bytes());
        Ok(Jws {
            header,
            payload,
            signing_input,
            signature,
        })
    }

    /// Verifies the signature with `key` under the header's `alg`, which
    /// must suit the key. `HS256` is not accepted here: only the external
    /// account binding is MACed ([`Jws::verify_hmac`]).
    pub fn verify(&self, key: &Jwk) -> Result<(), JwsError> {
        let alg = self.header.alg.as_str();
        if !ALGORITHMS.contains(&alg) {
            return Err(JwsError::BadAlgorithm(alg.to_string()));
        }
        key.verify(alg, &self.signing_input, &self.signature)
    }

    /// Verifies an `HS256` MAC under `key` (the external account binding).
    pub fn verify_hmac(&self, key: &[u8]) -> Result<(), JwsError> {
        if self.header.alg != "HS256" {
            return Err(JwsError::BadAlgorithm(format!(
                "{} (the external account binding is MACed with HS256)",
                self.header.alg
            )));
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::verify(&key, &self.signing_input, &self.signature)
            .map_err(|_| JwsError::BadSignature)
    }
}

/// An account public key, from its JWK (RFC 7517/7518/8037).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jwk {
    /// `crv` P-256 or P-384; the uncompressed point `04 || x || y`.
    Ec { p384: bool, x: Vec<u8>, y: Vec<u8> },
    /// Modulus and exponent, big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The 32-byte public key.
    Ed25519 { x: Vec<u8> },
}

fn member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, JwsError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwsError::BadKey(format!("the JWK has no {name:?} string")))
}

fn strip_zeros(mut b: Vec<u8>) -> Vec<u8> {
    let lead = b.iter().take_while(|&&x| x == 0).count();
    b.drain(..lead);
    b
}

impl Jwk {
    /// Reads a public JWK. A key with private members (`d`, `p`, …) is
    /// refused: a client that sends one has leaked its key.
    pub fn from_value(jwk: &Value) -> Result<Self, JwsError> {
        if jwk.get("d").is_some() {
            return Err(JwsError::BadKey(
                "the JWK holds a private key (\"d\"); send only the public key".into(),
            ));
        }
        let key = match member(jwk, "kty")? {
            "EC" => {
                let p384 = match member(jwk, "crv")? {
                    "P-256" => false,
                    "P-384" => true,
                    other => return Err(JwsError::BadKey(format!("unsupported curve {other:?}"))),
                };
                let x = b64("the JWK's x", member(jwk, "x")?)?;
                let y = b64("the JWK's y", member(jwk, "y")?)?;
                let len = if p384 { 48 } else { 32 };
                if x.len() != len || y.len() != len {
                    return Err(JwsError::BadKey(
                        "the EC coordinates have the wrong length".into(),
                    ));
                }
                Jwk::Ec { p384, x, y }
            }
            "RSA" => Jwk::Rsa {
                n: strip_zeros(b64("the JWK's n", member(jwk, "n")?)?),
                e: strip_zeros(b64("the JWK's e", member(jwk, "e")?)?),
            },
            "OKP" => match member(jwk, "crv")? {
                "Ed25519" => {
                    let x = b64("the JWK's x", member(jwk, "x")?)?;
                    if x.len() != 32 {
                        return Err(JwsError::BadKey("an Ed25519 key is 32 bytes".into()));
                    }
                    Jwk::Ed25519 { x }
                }
                other => return Err(JwsError::BadKey(format!("unsupported curve {other:?}"))),
            },
            other => return Err(JwsError::BadKey(format!("unsupported key type {other:?}"))),
        };
        if let Jwk::Rsa { n, .. } = &key {
            if n.len() * 8 < 2048 {
                return Err(JwsError::BadKey(format!(
                    "an RSA key of {} bits is too weak; use 2048 bits or more",
                    n.len() * 8
                )));
            }
        }
        Ok(key)
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in
    /// lexicographic order, without whitespace, base64url. It names the
    /// account key in key authorizations and in the ledger.
    pub fn thumbprint(&self) -> String {
        b64e(&Sha256::digest(self.canonical().as_bytes()))
    }

    /// The canonical JSON of the required members (RFC 7638 §3.2). The
    /// member values are base64url or fixed names, so there is nothing to
    /// escape.
    fn canonical(&self) -> String {
        match self {
            Jwk::Ec { p384, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                if *p384 { "P-384" } else { "P-256" },
                b64e(x),
                b64e(y)
            ),
            Jwk::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64e(e), b64e(n)),
            Jwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64e(x)),
        }
    }

    /// The canonical JWK as JSON, as the ledger stores it.
    pub fn to_json(&self) -> String {
        self.canonical()
    }

    fn verify(&self, alg: &str, input: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        let mismatch = || {
            JwsError::BadAlgorithm(format!(
                "{alg} does not suit the account key ({})",
                self.kind()
            ))
        };
        let ok = match (self, alg) {
            (Jwk::Ec { p384: false, x, y }, "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point(x, y))
                    .verify(input, sig)
            }
            (Jwk::Ec { p384: true, x, y }, "ES384") => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point(x, y))
                    .verify(input, sig)
            }
            (Jwk::Rsa { n, e }, "RS256") => RsaPublicKeyComponents { n, e }.verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                input,
                sig,
            ),
            (Jwk::Ed25519 { x }, "EdDSA") => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(input, sig)
            }
            _ => return Err(mismatch()),
        };
        ok.map_err(|_| JwsError::BadSignature)
    }

    fn kind(&self) -> &'static str {
        match self {
            Jwk::Ec { p384: false, .. } => "EC P-256",
            Jwk::Ec { p384: true, .. } => "EC P-384",
            Jwk::Rsa { .. } => "RSA",
            Jwk::Ed25519 { .. } => "Ed25519",
        }
    }

    /// Whether this is the key in the DER SubjectPublicKeyInfo `spki`:
    /// revocation by the certificate's own key compares the two.
    pub fn matches_spki(&self, spki: &[u8]) -> bool {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let Ok((_, info)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki) else {
            return false;
        };
        match (self, info.parsed()) {
            (Jwk::Ec { x, y, .. }, Ok(PublicKey::EC(ec))) => ec.data() == point(x, y).as_slice(),
            (Jwk::Rsa { n, e }, Ok(PublicKey::RSA(rsa))) => {
                strip_zeros(rsa.modulus.to_vec()) == *n && strip_zeros(rsa.exponent.to_vec()) == *e
            }
            (Jwk::Ed25519 { x }, _) => {
                info.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519
                    && info.subject_public_key.data.as_ref() == x.as_slice()
            }
            _ => false,
        }
    }
}

fn point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + x.len() + y.len());
    p.push(0x04);
    p.extend_from_slice(x);
    p.extend_from_slice(y);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and its thumbprint.
    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let jwk: Value = serde_json::from_str(r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#).unwrap();
        let key = Jwk::from_value(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn private_members_and_weak_keys_are_refused() {
        let ec = serde_json::json!({"kty":"EC","crv":"P-256","x":b64e(&[1;32]),"y":b64e(&[2;32]),"d":"AA"});
        assert!(matches!(Jwk::from_value(&ec), Err(JwsError::BadKey(m)) if m.contains("private")));
        let rsa = serde_json::json!({"kty":"RSA","n":b64e(&[0xff;128]),"e":"AQAB"});
        assert!(
            matches!(Jwk::from_value(&rsa), Err(JwsError::BadKey(m)) if m.contains("1024 bits"))
        );
    }

    #[test]
    fn general_serialization_and_unprotected_headers_are_refused() {
        for body in [
            r#"{"payload":"","signatures":[]}"#,
            r#"{"protected":"e30","payload":"","signature":"","header":{}}"#,
        ] {
            assert!(matches!(
                Jws::parse(body.as_bytes()),
                Err(JwsError::Malformed(_))
            ));
        }
    }

    #[test]
    fn alg_none_and_mismatched_algorithms_are_refused() {
        let key = Jwk::Ed25519 { x: vec![0; 32] };
        let mk = |alg: &str| Jws {
            header: Protected {
                alg: alg.into(),
                nonce: None,
                url: None,
                jwk: None,
                kid: None,
            },
            payload: vec![],
            signing_input: b"x.y".to_vec(),
            signature: vec![0; 64],
        };
        assert!(matches!(
            mk("none").verify(&key),
            Err(JwsError::BadAlgorithm(_))
        ));
        assert!(matches!(
            mk("HS256").verify(&key),
            Err(JwsError::BadAlgorithm(_))
        ));
        assert!(
            matches!(mk("ES256").verify(&key), Err(JwsError::BadAlgorithm(m)) if m.contains("does not suit"))
        );
        assert_eq!(mk("EdDSA").verify(&key), Err(JwsError::BadSignature));
    }
}

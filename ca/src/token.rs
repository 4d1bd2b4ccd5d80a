//! Enrollment tokens: one-time, bound to names and a profile, expiring.
//!
//! A token reads `pkiet1.<id>.<secret>`: 8 random bytes of id, in hex, by
//! which the ledger finds the grant, and 32 random bytes of secret, in hex,
//! of which the ledger keeps only the SHA-256 hash. A stolen ledger thus
//! yields no usable token.

use pki_common::cert::Profile;
use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const PREFIX: &str = "pkiet1";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the token is malformed (expected pkiet1.<16 hex>.<64 hex>, as printed by `pki-ca token`)"
    )]
    Malformed,
    #[error("the token is unknown to this CA (mint one with `pki-ca token`)")]
    Unknown,
    #[error("the token expired at {at}; mint a new one with `pki-ca token`")]
    Expired { at: String },
    #[error(
        "the token was already used at {at}; tokens work once, mint a new one with `pki-ca token`"
    )]
    Used { at: String },
}

/// A token as presented by a caller (or as just minted).
pub struct EnrollmentToken {
    id: String,
    secret: Zeroizing<[u8; 32]>,
}

impl EnrollmentToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut id = [0u8; 8];
        let mut secret = Zeroizing::new([0u8; 32]);
        let mut rng = rand::rng();
        rng.fill_bytes(&mut id);
        rng.fill_bytes(secret.as_mut());
        EnrollmentToken {
            id: hex::encode(id),
            secret,
        }
    }

    /// Parses a presented token. Never panics, whatever the input.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let mut parts = s.trim().split('.');
        let (Some(PREFIX), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(id, 16) || !lower_hex(secret, 64) {
            return Err(TokenError::Malformed);
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret, bytes.as_mut()).map_err(|_| TokenError::Malformed)?;
        Ok(EnrollmentToken {
            id: id.to_string(),
            secret: bytes,
        })
    }

    /// The public id, under which the ledger stores the grant.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// SHA-256 of the secret: all the ledger keeps of it.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_ref()).into()
    }

    /// Whether `hash` is this token's secret hash, compared in constant time.
    pub fn matches(&self, hash: &[u8]) -> bool {
        let mine = self.secret_hash();
        hash.len() == mine.len()
            && mine.iter().zip(hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Display for EnrollmentToken {
    /// The token in the form a caller presents it. Only ever printed once,
    /// by `pki-ca token`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}",
            self.id,
            hex::encode(self.secret.as_ref())
        )
    }
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnrollmentToken({}.…)", self.id)
    }
}

/// What a token authorizes, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub id: String,
    pub secret_hash: Vec<u8>,
    /// DNS names and IP addresses, in the order given; the first becomes
    /// the subject CN.
    pub names: Vec<String>,
    pub profile: Profile,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl TokenGrant {
    /// Checks that `presented` is this grant's token and may still be used
    /// at `now`.
    pub fn check(&self, presented: &EnrollmentToken, now: i64) -> Result<(), TokenError> {
        if self.id != presented.id() || !presented.matches(&self.secret_hash) {
            return Err(TokenError::Unknown);
        }
        if let Some(at) = self.used_at {
            return Err(TokenError::Used {
                at: pki_common::cert::rfc3339(at),
            });
        }
        if now >= self.expires_at {
            return Err(TokenError::Expired {
                at: pki_common::cert::rfc3339(self.expires_at),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant_for(t: &EnrollmentToken) -> TokenGrant {
        TokenGrant {
            id: t.id().to_string(),
            secret_hash: t.secret_hash().to_vec(),
            names: vec!["app.pki.test".into()],
            profile: Profile::Server,
            created_at: 0,
            expires_at: 1000,
            used_at: None,
        }
    }

    #[test]
    fn printed_token_parses_back_to_the_same_secret() {
        let t = EnrollmentToken::generate();
        let parsed = EnrollmentToken::parse(&t.to_string()).unwrap();
        assert_eq!(parsed.id(), t.id());
        assert_eq!(parsed.secret_hash(), t.secret_hash());
        assert!(!format!("{t:?}").contains(&hex::encode(t.secret.as_ref())));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = EnrollmentToken::generate().to_string();
        for bad in [
            "",
            "pkiet1",
            "pkiet1..",
            "pkiet2.0011223344556677.00",
            &good.replace("pkiet1", "pkiet2"),
            &good.to_uppercase(),
            &format!("{good}.extra"),
            &good[..good.len() - 1],
            "pkiet1.001122334455667g.0000000000000000000000000000000000000000000000000000000000000000",
            "pkiet1.€€€€€€€€.€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€",
        ] {
            assert_eq!(EnrollmentToken::parse(bad).unwrap_err(), TokenError::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn grant_checks_secret_use_and_expiry() {
        let t = EnrollmentToken::generate();
        let grant = grant_for(&t);
        assert_eq!(grant.check(&t, 10), Ok(()));

        let other = EnrollmentToken::generate();
        let forged = EnrollmentToken::parse(&format!(
            "pkiet1.{}.{}",
            t.id(),
            other.to_string().rsplit('.').next().unwrap()
        ))
        .unwrap();
        assert_eq!(grant.check(&forged, 10), Err(TokenError::Unknown));

        assert!(matches!(
            grant.check(&t, 1000),
            Err(TokenError::Expired { .. })
        ));

        let used = TokenGrant {
            used_at: Some(5),
            ..grant
        };
        assert!(matches!(used.check(&t, 10), Err(TokenError::Used { .. })));
    }
}

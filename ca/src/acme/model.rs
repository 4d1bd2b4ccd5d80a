//! The ACME objects (RFC 8555 §7.1) as the ledger keeps them, and their
//! statuses (§7.1.6). The JSON the clients see is built from these in
//! [`super::resources`].

use serde::{Deserialize, Serialize};

/// An identifier: `dns` (RFC 8555) or `ip` (RFC 8738).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// An account's status: `valid` until the client deactivates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Valid,
    Deactivated,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    /// The RFC 7638 thumbprint of its key; unique among accounts.
    pub thumbprint: String,
    /// The canonical public JWK.
    pub jwk: String,
    pub status: AccountStatus,
    pub contact: Vec<String>,
    pub created_at: i64,
}

/// Statuses of orders, authorizations and challenges, by their RFC names.
macro_rules! status_enum {
    ($name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),* }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

status_enum!(OrderStatus {
    Pending = "pending",
    Ready = "ready",
    Processing = "processing",
    Valid = "valid",
    Invalid = "invalid",
});

status_enum!(AuthzStatus {
    Pending = "pending",
    Valid = "valid",
    Invalid = "invalid",
    Deactivated = "deactivated",
    Expired = "expired",
    Revoked = "revoked",
});

status_enum!(ChallengeStatus {
    Pending = "pending",
    Processing = "processing",
    Valid = "valid",
    Invalid = "invalid",
});

#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub account_id: String,
    /// As stored: `pending` until finalize moves it on; the effective
    /// status ([`Order::status_at`]) also reads its authorizations.
    pub status: OrderStatus,
    pub identifiers: Vec<Identifier>,
    pub expires_at: i64,
    pub created_at: i64,
    pub authz_ids: Vec<String>,
    pub cert_serial: Option<String>,
    /// The problem document that made it invalid, as JSON.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Authz {
    pub id: String,
    pub order_id: String,
    pub account_id: String,
    pub identifier: Identifier,
    pub status: AuthzStatus,
    pub expires_at: i64,
    pub challenges: Vec<Challenge>,
}

#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub authz_id: String,
    /// `http-01` or `tls-alpn-01`.
    pub kind: String,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated_at: Option<i64>,
    pub error: Option<String>,
}

impl Authz {
    /// The status at `now`: a pending or valid authorization past its
    /// expiry is `expired` (§7.1.6).
    pub fn status_at(&self, now: i64) -> AuthzStatus {
        match self.status {
            AuthzStatus::Pending | AuthzStatus::Valid if now >= self.expires_at => {
                AuthzStatus::Expired
            }
            s => s,
        }
    }
}

impl Order {
    /// The status at `now`, given its authorizations' (§7.1.6): an order
    /// not yet finalized is `invalid` once it expires or any authorization
    /// fails, `ready` once all are valid, else `pending`.
    pub fn status_at(&self, authzs: &[Authz], now: i64) -> OrderStatus {
        match self.status {
            OrderStatus::Pending | OrderStatus::Ready => {}
            s => return s,
        }
        if now >= self.expires_at {
            return OrderStatus::Invalid;
        }
        let statuses: Vec<_> = authzs.iter().map(|a| a.status_at(now)).collect();
        if statuses
            .iter()
            .any(|s| *s != AuthzStatus::Valid && *s != AuthzStatus::Pending)
        {
            OrderStatus::Invalid
        } else if statuses.len() == self.authz_ids.len()
            && statuses.iter().all(|s| *s == AuthzStatus::Valid)
        {
            OrderStatus::Ready
        } else {
            OrderStatus::Pending
        }
    }
}

//! [`AcmeStore`] on PostgreSQL: the same statements as SQLite's
//! (`sqlite_acme.rs`), so that every replica on one database serves the
//! same accounts, orders and nonces, and the same races are decided by
//! the database alike.

use tokio_postgres::Row;

use super::postgres::PgLedger;
use super::LedgerError;
use crate::acme::model::*;
use crate::acme::store::AcmeStore;
use crate::pg_params;

const ACCOUNT_BY_ID: &str =
    "SELECT id, thumbprint, jwk, status, contact, created_at FROM acme_accounts WHERE id = $1";
const ACCOUNT_BY_THUMBPRINT: &str = "SELECT id, thumbprint, jwk, status, contact, created_at FROM acme_accounts WHERE thumbprint = $1";

fn account_from(r: &Row) -> Account {
    let contact: String = r.get(4);
    Account {
        id: r.get(0),
        thumbprint: r.get(1),
        jwk: r.get(2),
        status: if r.get::<_, String>(3) == "deactivated" {
            AccountStatus::Deactivated
        } else {
            AccountStatus::Valid
        },
        contact: serde_json::from_str(&contact).unwrap_or_default(),
        created_at: r.get(5),
    }
}

fn corrupt(what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("ACME {what} with an unknown status"))
}

fn challenge_from(r: &Row) -> Result<Challenge, LedgerError> {
    Ok(Challenge {
        id: r.get(0),
        authz_id: r.get(1),
        kind: r.get(2),
        token: r.get(3),
        status: ChallengeStatus::parse(&r.get::<_, String>(4))
            .ok_or_else(|| corrupt("challenge"))?,
        validated_at: r.get(5),
        error: r.get(6),
    })
}

fn count_and_oldest(rows: Vec<Row>) -> (u32, i64) {
    rows.first()
        .map(|r| (r.get::<_, i64>(0).max(0) as u32, r.get::<_, i64>(1)))
        .unwrap_or((0, 0))
}

impl PgLedger {
    fn challenges_of(&self, authz_id: &str) -> Result<Vec<Challenge>, LedgerError> {
        self.rows(
            "SELECT id, authz_id, type, token, status, validated_at, error FROM acme_challenges WHERE authz_id = $1 ORDER BY type",
            pg_params![authz_id.to_string()],
        )?
        .iter()
        .map(challenge_from)
        .collect()
    }
}

impl AcmeStore for PgLedger {
    fn add_nonce(&self, nonce: &str, expires_at: i64) -> Result<(), LedgerError> {
        self.transaction(
            vec![
                (
                    "INSERT INTO acme_nonces (value, expires_at) VALUES ($1, $2)",
                    pg_params![nonce.to_string(), expires_at],
                    1,
                ),
                (
                    "DELETE FROM acme_nonces WHERE expires_at < $1",
                    pg_params![expires_at - crate::acme::NONCE_LIFETIME_SECS * 2],
                    0,
                ),
            ],
            |_| LedgerError::Corrupt("a nonce was not stored".into()),
        )
    }

    fn take_nonce(&self, nonce: &str, now: i64) -> Result<bool, LedgerError> {
        let n = self.execute(
            "DELETE FROM acme_nonces WHERE value = $1 AND expires_at > $2",
            pg_params![nonce.to_string(), now],
        )?;
        Ok(n == 1)
    }

    fn add_eab(&self, kid: &str, key_hash: &[u8], expires_at: i64) -> Result<(), LedgerError> {
        self.execute(
            "INSERT INTO acme_eab (kid, key_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            pg_params![
                kid.to_string(),
                key_hash.to_vec(),
                pki_common::unix_now() as i64,
                expires_at
            ],
        )?;
        Ok(())
    }

    fn eab_hash(&self, kid: &str, now: i64) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self
            .rows(
                "SELECT key_hash FROM acme_eab WHERE kid = $1 AND used_at IS NULL AND expires_at > $2",
                pg_params![kid.to_string(), now],
            )?
            .first()
            .map(|r| r.get(0)))
    }

    fn create_account(&self, a: &Account, eab_kid: Option<&str>) -> Result<(), LedgerError> {
        let mut statements = Vec::new();
        if let Some(kid) = eab_kid {
            statements.push((
                "UPDATE acme_eab SET used_at = $1, account_id = $2 WHERE kid = $3 AND used_at IS NULL",
                pg_params![a.created_at, a.id.clone(), kid.to_string()],
                1,
            ));
        }
        statements.push((
            "INSERT INTO acme_accounts (id, thumbprint, jwk, status, contact, created_at) VALUES ($1, $2, $3, 'valid', $4, $5)",
            pg_params![
                a.id.clone(),
                a.thumbprint.clone(),
                a.jwk.clone(),
                serde_json::to_string(&a.contact).unwrap_or_default(),
                a.created_at
            ],
            1,
        ));
        // Only the EAB update can change no row: its key was used.
        self.transaction(statements, |_| LedgerError::TokenAlreadyUsed)
    }

    fn account(&self, id: &str) -> Result<Option<Account>, LedgerError> {
        Ok(self
            .rows(ACCOUNT_BY_ID, pg_params![id.to_string()])?
            .first()
            .map(account_from))
    }

    fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<Account>, LedgerError> {
        Ok(self
            .rows(ACCOUNT_BY_THUMBPRINT, pg_params![thumbprint.to_string()])?
            .first()
            .map(account_from))
    }

    fn set_account_status(&self, id: &str, status: AccountStatus) -> Result<(), LedgerError> {
        let text = match status {
            AccountStatus::Valid => "valid",
            AccountStatus::Deactivated => "deactivated",
        };
        self.execute(
            "UPDATE acme_accounts SET status = $1 WHERE id = $2",
            pg_params![text.to_string(), id.to_string()],
        )?;
        Ok(())
    }

    fn set_account_contact(&self, id: &str, contact: &[String]) -> Result<(), LedgerError> {
        self.execute(
            "UPDATE acme_accounts SET contact = $1 WHERE id = $2",
            pg_params![
                serde_json::to_string(contact).unwrap_or_default(),
                id.to_string()
            ],
        )?;
        Ok(())
    }

    fn set_account_key(&self, id: &str, jwk: &str, thumbprint: &str) -> Result<(), LedgerError> {
        self.transaction(
            vec![(
                "UPDATE acme_accounts SET jwk = $1, thumbprint = $2 WHERE id = $3",
                pg_params![jwk.to_string(), thumbprint.to_string(), id.to_string()],
                0,
            )],
            |_| LedgerError::KeyInUse,
        )
    }

    fn create_order(&self, order: &Order, authzs: &[Authz]) -> Result<(), LedgerError> {
        let mut statements = vec![(
            "INSERT INTO acme_orders (id, account_id, status, identifiers, authz_ids, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            pg_params![
                order.id.clone(),
                order.account_id.clone(),
                order.status.as_str().to_string(),
                serde_json::to_string(&order.identifiers).unwrap_or_default(),
                serde_json::to_string(&order.authz_ids).unwrap_or_default(),
                order.expires_at,
                order.created_at
            ],
            1,
        )];
        for a in authzs {
            statements.push((
                "INSERT INTO acme_authzs (id, order_id, account_id, id_type, id_value, status, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                pg_params![
                    a.id.clone(),
                    a.order_id.clone(),
                    a.account_id.clone(),
                    a.identifier.kind.clone(),
                    a.identifier.value.clone(),
                    a.status.as_str().to_string(),
                    a.expires_at
                ],
                1,
            ));
            for c in &a.challenges {
                statements.push((
                    "INSERT INTO acme_challenges (id, authz_id, type, token, status) VALUES ($1, $2, $3, $4, $5)",
                    pg_params![
                        c.id.clone(),
                        c.authz_id.clone(),
                        c.kind.clone(),
                        c.token.clone(),
                        c.status.as_str().to_string()
                    ],
                    1,
                ));
            }
        }
        self.transaction(statements, |_| {
            LedgerError::Corrupt("an order was not stored".into())
        })
    }

    fn order(&self, id: &str) -> Result<Option<Order>, LedgerError> {
        let rows = self.rows(
            "SELECT id, account_id, status, identifiers, authz_ids, expires_at, created_at, cert_serial, error FROM acme_orders WHERE id = $1",
            pg_params![id.to_string()],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let bad = |what: &str| LedgerError::Corrupt(format!("ACME order {id}: {what}"));
        Ok(Some(Order {
            id: r.get(0),
            account_id: r.get(1),
            status: OrderStatus::parse(&r.get::<_, String>(2))
                .ok_or_else(|| bad("unknown status"))?,
            identifiers: serde_json::from_str(&r.get::<_, String>(3))
                .map_err(|_| bad("identifiers"))?,
            authz_ids: serde_json::from_str(&r.get::<_, String>(4))
                .map_err(|_| bad("authorizations"))?,
            expires_at: r.get(5),
            created_at: r.get(6),
            cert_serial: r.get(7),
            error: r.get(8),
        }))
    }

    fn orders_of(&self, account_id: &str) -> Result<Vec<String>, LedgerError> {
        Ok(self
            .rows(
                "SELECT id FROM acme_orders WHERE account_id = $1 ORDER BY created_at DESC LIMIT 1000",
                pg_params![account_id.to_string()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn authz(&self, id: &str) -> Result<Option<Authz>, LedgerError> {
        let rows = self.rows(
            "SELECT id, order_id, account_id, id_type, id_value, status, expires_at FROM acme_authzs WHERE id = $1",
            pg_params![id.to_string()],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let id: String = r.get(0);
        Ok(Some(Authz {
            challenges: self.challenges_of(&id)?,
            id,
            order_id: r.get(1),
            account_id: r.get(2),
            identifier: Identifier {
                kind: r.get(3),
                value: r.get(4),
            },
            status: AuthzStatus::parse(&r.get::<_, String>(5))
                .ok_or_else(|| corrupt("authorization"))?,
            expires_at: r.get(6),
        }))
    }

    fn set_authz_status(&self, id: &str, status: AuthzStatus) -> Result<(), LedgerError> {
        self.execute(
            "UPDATE acme_authzs SET status = $1 WHERE id = $2",
            pg_params![status.as_str().to_string(), id.to_string()],
        )?;
        Ok(())
    }

    fn challenge(&self, id: &str) -> Result<Option<Challenge>, LedgerError> {
        self.rows(
            "SELECT id, authz_id, type, token, status, validated_at, error FROM acme_challenges WHERE id = $1",
            pg_params![id.to_string()],
        )?
        .first()
        .map(challenge_from)
        .transpose()
    }

    fn start_challenge(&self, id: &str) -> Result<bool, LedgerError> {
        let n = self.execute(
            "UPDATE acme_challenges SET status = 'processing' WHERE id = $1 AND status = 'pending'",
            pg_params![id.to_string()],
        )?;
        Ok(n == 1)
    }

    fn finish_challenge(
        &self,
        id: &str,
        valid: bool,
        error: Option<&str>,
        now: i64,
        authz_expires_at: i64,
    ) -> Result<(), LedgerError> {
        let status = if valid { "valid" } else { "invalid" };
        self.transaction(
            vec![
                (
                    "UPDATE acme_challenges SET status = $1, validated_at = $2, error = $3 WHERE id = $4",
                    pg_params![
                        status.to_string(),
                        valid.then_some(now),
                        error.map(str::to_owned),
                        id.to_string()
                    ],
                    0,
                ),
                (
                    "UPDATE acme_authzs SET status = $1, expires_at = CASE WHEN $1 = 'valid' THEN $2 ELSE expires_at END
                     WHERE id = (SELECT authz_id FROM acme_challenges WHERE id = $3) AND status = 'pending'",
                    pg_params![status.to_string(), authz_expires_at, id.to_string()],
                    0,
                ),
            ],
            |_| LedgerError::Corrupt("a challenge outcome was not stored".into()),
        )
    }

    fn start_finalize(&self, order_id: &str) -> Result<bool, LedgerError> {
        let n = self.execute(
            "UPDATE acme_orders SET status = 'processing' WHERE id = $1 AND status IN ('pending', 'ready')",
            pg_params![order_id.to_string()],
        )?;
        Ok(n == 1)
    }

    fn fail_order(&self, order_id: &str, error: &str) -> Result<(), LedgerError> {
        self.execute(
            "UPDATE acme_orders SET status = 'invalid', error = $1 WHERE id = $2 AND status != 'valid'",
            pg_params![error.to_string(), order_id.to_string()],
        )?;
        Ok(())
    }

    fn orders_since(&self, account_id: &str, since: i64) -> Result<(u32, i64), LedgerError> {
        Ok(count_and_oldest(self.rows(
            "SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM acme_orders WHERE account_id = $1 AND created_at >= $2",
            pg_params![account_id.to_string(), since],
        )?))
    }

    fn acme_certs_since(&self, name: &str, since: i64) -> Result<(u32, i64), LedgerError> {
        Ok(count_and_oldest(self.rows(
            "SELECT COUNT(*), COALESCE(MIN(issued_at), 0) FROM certificates WHERE acme_order IS NOT NULL AND issued_at >= $1 AND names LIKE $2",
            pg_params![since, format!("%\"{name}\"%")],
        )?))
    }

    fn account_of_certificate(&self, serial: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .rows(
                "SELECT o.account_id FROM certificates c JOIN acme_orders o ON o.id = c.acme_order WHERE c.serial = $1",
                pg_params![serial.to_string()],
            )?
            .first()
            .map(|r| r.get(0)))
    }
}

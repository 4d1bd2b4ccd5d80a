//! [`AcmeStore`] on SQLite: the ACME state in the ledger's file.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{LedgerError, SqliteLedger};
use crate::acme::model::*;
use crate::acme::store::AcmeStore;

fn account_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    let contact: String = r.get(4)?;
    Ok(Account {
        id: r.get(0)?,
        thumbprint: r.get(1)?,
        jwk: r.get(2)?,
        status: if r.get::<_, String>(3)? == "deactivated" {
            AccountStatus::Deactivated
        } else {
            AccountStatus::Valid
        },
        contact: serde_json::from_str(&contact).unwrap_or_default(),
        created_at: r.get(5)?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, thumbprint, jwk, status, contact, created_at";

fn corrupt(what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("ACME {what} with an unknown status"))
}

fn challenges_of(conn: &Connection, authz_id: &str) -> Result<Vec<Challenge>, LedgerError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, authz_id, type, token, status, validated_at, error FROM acme_challenges WHERE authz_id = ?1 ORDER BY type",
    )?;
    let rows = stmt.query_map([authz_id], |r| {
        Ok((
            Challenge {
                id: r.get(0)?,
                authz_id: r.get(1)?,
                kind: r.get(2)?,
                token: r.get(3)?,
                status: ChallengeStatus::Pending,
                validated_at: r.get(5)?,
                error: r.get(6)?,
            },
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut c, status) = row?;
        c.status = ChallengeStatus::parse(&status).ok_or_else(|| corrupt("challenge"))?;
        out.push(c);
    }
    Ok(out)
}

impl AcmeStore for SqliteLedger {
    fn add_nonce(&self, nonce: &str, expires_at: i64) -> Result<(), LedgerError> {
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO acme_nonces (value, expires_at) VALUES (?1, ?2)")?
            .execute(params![nonce, expires_at])?;
        // Expired nonces go as new ones come: the table stays the size of
        // the nonces handed out in one lifetime.
        conn.prepare_cached("DELETE FROM acme_nonces WHERE expires_at < ?1")?
            .execute([expires_at - crate::acme::NONCE_LIFETIME_SECS * 2])?;
        Ok(())
    }

    fn take_nonce(&self, nonce: &str, now: i64) -> Result<bool, LedgerError> {
        let changed = self
            .conn()
            .prepare_cached("DELETE FROM acme_nonces WHERE value = ?1 AND expires_at > ?2")?
            .execute(params![nonce, now])?;
        Ok(changed == 1)
    }

    fn add_eab(&self, kid: &str, key_hash: &[u8], expires_at: i64) -> Result<(), LedgerError> {
        self.conn().execute(
            "INSERT INTO acme_eab (kid, key_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![kid, key_hash, pki_common::unix_now() as i64, expires_at],
        )?;
        Ok(())
    }

    fn eab_hash(&self, kid: &str, now: i64) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT key_hash FROM acme_eab WHERE kid = ?1 AND used_at IS NULL AND expires_at > ?2",
                params![kid, now],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn create_account(&self, a: &Account, eab_kid: Option<&str>) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(kid) = eab_kid {
            let changed = tx.execute(
                "UPDATE acme_eab SET used_at = ?1, account_id = ?2 WHERE kid = ?3 AND used_at IS NULL",
                params![a.created_at, a.id, kid],
            )?;
            if changed != 1 {
                return Err(LedgerError::TokenAlreadyUsed);
            }
        }
        let inserted = tx.execute(
            "INSERT INTO acme_accounts (id, thumbprint, jwk, status, contact, created_at) VALUES (?1, ?2, ?3, 'valid', ?4, ?5)",
            params![a.id, a.thumbprint, a.jwk, serde_json::to_string(&a.contact).unwrap_or_default(), a.created_at],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(LedgerError::KeyInUse);
            }
            other => other?,
        };
        tx.commit()?;
        Ok(())
    }

    fn account(&self, id: &str) -> Result<Option<Account>, LedgerError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM acme_accounts WHERE id = ?1");
        Ok(self.conn().query_row(&sql, [id], account_row).optional()?)
    }

    fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<Account>, LedgerError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM acme_accounts WHERE thumbprint = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [thumbprint], account_row)
            .optional()?)
    }

    fn set_account_status(&self, id: &str, status: AccountStatus) -> Result<(), LedgerError> {
        let text = match status {
            AccountStatus::Valid => "valid",
            AccountStatus::Deactivated => "deactivated",
        };
        self.conn().execute(
            "UPDATE acme_accounts SET status = ?1 WHERE id = ?2",
            params![text, id],
        )?;
        Ok(())
    }

    fn set_account_contact(&self, id: &str, contact: &[String]) -> Result<(), LedgerError> {
        let json = serde_json::to_string(contact).unwrap_or_default();
        self.conn().execute(
            "UPDATE acme_accounts SET contact = ?1 WHERE id = ?2",
            params![json, id],
        )?;
        Ok(())
    }

    fn set_account_key(&self, id: &str, jwk: &str, thumbprint: &str) -> Result<(), LedgerError> {
        let updated = self.conn().execute(
            "UPDATE acme_accounts SET jwk = ?1, thumbprint = ?2 WHERE id = ?3",
            params![jwk, thumbprint, id],
        );
        match updated {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(LedgerError::KeyInUse)
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    fn create_order(&self, order: &Order, authzs: &[Authz]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO acme_orders (id, account_id, status, identifiers, authz_ids, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                order.id,
                order.account_id,
                order.status.as_str(),
                serde_json::to_string(&order.identifiers).unwrap_or_default(),
                serde_json::to_string(&order.authz_ids).unwrap_or_default(),
                order.expires_at,
                order.created_at
            ],
        )?;
        for a in authzs {
            tx.execute(
                "INSERT INTO acme_authzs (id, order_id, account_id, id_type, id_value, status, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![a.id, a.order_id, a.account_id, a.identifier.kind, a.identifier.value, a.status.as_str(), a.expires_at],
            )?;
            for c in &a.challenges {
                tx.execute(
                    "INSERT INTO acme_challenges (id, authz_id, type, token, status) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![c.id, c.authz_id, c.kind, c.token, c.status.as_str()],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn order(&self, id: &str) -> Result<Option<Order>, LedgerError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, account_id, status, identifiers, authz_ids, expires_at, created_at, cert_serial, error FROM acme_orders WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, account_id, status, ids, authz_ids, expires_at, created_at, cert, error)) =
            row
        else {
            return Ok(None);
        };
        let bad = |what: &str| LedgerError::Corrupt(format!("ACME order {id}: {what}"));
        Ok(Some(Order {
            status: OrderStatus::parse(&status).ok_or_else(|| bad("unknown status"))?,
            identifiers: serde_json::from_str(&ids).map_err(|_| bad("identifiers"))?,
            authz_ids: serde_json::from_str(&authz_ids).map_err(|_| bad("authorizations"))?,
            id,
            account_id,
            expires_at,
            created_at,
            cert_serial: cert,
            error,
        }))
    }

    fn orders_of(&self, account_id: &str) -> Result<Vec<String>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM acme_orders WHERE account_id = ?1 ORDER BY created_at DESC LIMIT 1000",
        )?;
        let ids = stmt
            .query_map([account_id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    fn authz(&self, id: &str) -> Result<Option<Authz>, LedgerError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, order_id, account_id, id_type, id_value, status, expires_at FROM acme_authzs WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        Authz {
                            id: r.get(0)?,
                            order_id: r.get(1)?,
                            account_id: r.get(2)?,
                            identifier: Identifier { kind: r.get(3)?, value: r.get(4)? },
                            status: AuthzStatus::Pending,
                            expires_at: r.get(6)?,
                            challenges: Vec::new(),
                        },
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((mut authz, status)) = row else {
            return Ok(None);
        };
        authz.status = AuthzStatus::parse(&status).ok_or_else(|| corrupt("authorization"))?;
        authz.challenges = challenges_of(&conn, &authz.id)?;
        Ok(Some(authz))
    }

    fn set_authz_status(&self, id: &str, status: AuthzStatus) -> Result<(), LedgerError> {
        self.conn().execute(
            "UPDATE acme_authzs SET status = ?1 WHERE id = ?2",
            params![status.as_str(), id],
        )?;
        Ok(())
    }

    fn challenge(&self, id: &str) -> Result<Option<Challenge>, LedgerError> {
        let conn = self.conn();
        let authz: Option<String> = conn
            .query_row(
                "SELECT authz_id FROM acme_challenges WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(authz) = authz else { return Ok(None) };
        Ok(challenges_of(&conn, &authz)?
            .into_iter()
            .find(|c| c.id == id))
    }

    fn start_challenge(&self, id: &str) -> Result<bool, LedgerError> {
        let changed = self.conn().execute(
            "UPDATE acme_challenges SET status = 'processing' WHERE id = ?1 AND status = 'pending'",
            [id],
        )?;
        Ok(changed == 1)
    }

    fn finish_challenge(
        &self,
        id: &str,
        valid: bool,
        error: Option<&str>,
        now: i64,
        authz_expires_at: i64,
    ) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (status, authz_status) = if valid {
            ("valid", "valid")
        } else {
            ("invalid", "invalid")
        };
        tx.execute(
            "UPDATE acme_challenges SET status = ?1, validated_at = ?2, error = ?3 WHERE id = ?4",
            params![status, valid.then_some(now), error, id],
        )?;
        // Only a pending authorization moves: one deactivated meanwhile
        // stays so.
        tx.execute(
            "UPDATE acme_authzs SET status = ?1, expires_at = CASE WHEN ?1 = 'valid' THEN ?2 ELSE expires_at END
             WHERE id = (SELECT authz_id FROM acme_challenges WHERE id = ?3) AND status = 'pending'",
            params![authz_status, authz_expires_at, id],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn start_finalize(&self, order_id: &str) -> Result<bool, LedgerError> {
        let changed = self.conn().execute(
            "UPDATE acme_orders SET status = 'processing' WHERE id = ?1 AND status IN ('pending', 'ready')",
            [order_id],
        )?;
        Ok(changed == 1)
    }

    fn fail_order(&self, order_id: &str, error: &str) -> Result<(), LedgerError> {
        self.conn().execute(
            "UPDATE acme_orders SET status = 'invalid', error = ?1 WHERE id = ?2 AND status != 'valid'",
            params![error, order_id],
        )?;
        Ok(())
    }

    fn orders_since(&self, account_id: &str, since: i64) -> Result<(u32, i64), LedgerError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM acme_orders WHERE account_id = ?1 AND created_at >= ?2",
            params![account_id, since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn acme_certs_since(&self, name: &str, since: i64) -> Result<(u32, i64), LedgerError> {
        // Names are stored as a JSON array of normalized names, which
        // hold no quote: the quoted name matches exactly one element.
        let pattern = format!("%\"{name}\"%");
        Ok(self.conn().query_row(
            "SELECT COUNT(*), COALESCE(MIN(issued_at), 0) FROM certificates WHERE acme_order IS NOT NULL AND issued_at >= ?1 AND names LIKE ?2",
            params![since, pattern],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn account_of_certificate(&self, serial: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT o.account_id FROM certificates c JOIN acme_orders o ON o.id = c.acme_order WHERE c.serial = ?1",
                [serial],
                |r| r.get(0),
            )
            .optional()?)
    }
}

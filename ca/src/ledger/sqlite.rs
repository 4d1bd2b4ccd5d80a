//! [`SqliteLedger`]: the embedded ledger, one SQLite file.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tracing::warn;

use super::{
    names_from_json, names_to_json, profile_from, IntermediateRecord, IssuedRecord, Ledger,
    LedgerError, Revocation,
};
use crate::token::TokenGrant;

/// The ledger in an SQLite file.
pub struct SqliteLedger {
    /// The writing connection, serialised: SQLite allows one writer at a
    /// time anyway.
    conn: Mutex<Connection>,
    /// A second connection for reads, so looking a token up does not wait
    /// for a commit's fsync (WAL lets readers and the writer proceed
    /// together).
    reader: Mutex<Connection>,
    /// Issuances waiting to be committed. Whoever holds `conn` next
    /// commits all of them in one transaction, so concurrent issuances
    /// share one fsync (group commit) and each is still durable before its
    /// caller returns.
    pending: Mutex<Vec<PendingIssuance>>,
}

/// One issuance waiting for the group commit, and where its outcome goes.
struct PendingIssuance {
    record: IssuedRecord,
    token_id: Option<String>,
    outcome: Arc<Mutex<Option<Result<(), LedgerError>>>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    names       TEXT NOT NULL,
    profile     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE TABLE IF NOT EXISTS certificates (
    serial      TEXT PRIMARY KEY,
    names       TEXT NOT NULL,
    profile     TEXT NOT NULL,
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    token_id    TEXT REFERENCES tokens(id),
    issued_at   INTEGER NOT NULL,
    der         BLOB NOT NULL
);
";

/// Schema changes after the first version, applied in order; the index+1
/// is the `user_version` each one brings the database to.
const MIGRATIONS: &[&str] = &[
    // 1: revocation.
    "ALTER TABLE certificates ADD COLUMN revoked_at INTEGER;
     ALTER TABLE certificates ADD COLUMN revocation_reason TEXT;
     CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT OR IGNORE INTO counters (name, value) VALUES ('revision', 0), ('crl_number', 0);",
    // 2: renewal links a certificate to the one it replaced.
    "ALTER TABLE certificates ADD COLUMN renewed_from TEXT REFERENCES certificates(serial);",
    // 3: the hierarchy: who signed each certificate (the root signed every
    // certificate of an older ledger), and the intermediates themselves.
    "ALTER TABLE certificates ADD COLUMN issuer_id TEXT NOT NULL DEFAULT 'root';
     CREATE TABLE IF NOT EXISTS intermediates (
         id                TEXT PRIMARY KEY,
         serial            TEXT NOT NULL UNIQUE,
         der               BLOB NOT NULL,
         not_before        INTEGER NOT NULL,
         not_after         INTEGER NOT NULL,
         revoked_at        INTEGER,
         revocation_reason TEXT
     );",
    // 4: ACME (RFC 8555): accounts, orders, authorizations, challenges,
    // nonces and external-account keys; a certificate names its order.
    "ALTER TABLE certificates ADD COLUMN acme_order TEXT;
     CREATE TABLE IF NOT EXISTS acme_accounts (
         id          TEXT PRIMARY KEY,
         thumbprint  TEXT NOT NULL UNIQUE,
         jwk         TEXT NOT NULL,
         status      TEXT NOT NULL,
         contact     TEXT NOT NULL,
         created_at  INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS acme_orders (
         id          TEXT PRIMARY KEY,
         account_id  TEXT NOT NULL REFERENCES acme_accounts(id),
         status      TEXT NOT NULL,
         identifiers TEXT NOT NULL,
         authz_ids   TEXT NOT NULL,
         expires_at  INTEGER NOT NULL,
         created_at  INTEGER NOT NULL,
         cert_serial TEXT,
         error       TEXT
     );
     CREATE INDEX IF NOT EXISTS acme_orders_by_account ON acme_orders(account_id, created_at);
     CREATE TABLE IF NOT EXISTS acme_authzs (
         id          TEXT PRIMARY KEY,
         order_id    TEXT NOT NULL REFERENCES acme_orders(id),
         account_id  TEXT NOT NULL,
         id_type     TEXT NOT NULL,
         id_value    TEXT NOT NULL,
         status      TEXT NOT NULL,
         expires_at  INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS acme_challenges (
         id           TEXT PRIMARY KEY,
         authz_id     TEXT NOT NULL REFERENCES acme_authzs(id),
         type         TEXT NOT NULL,
         token        TEXT NOT NULL,
         status       TEXT NOT NULL,
         validated_at INTEGER,
         error        TEXT
     );
     CREATE INDEX IF NOT EXISTS acme_challenges_by_authz ON acme_challenges(authz_id);
     CREATE TABLE IF NOT EXISTS acme_nonces (value TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS acme_eab (
         kid         TEXT PRIMARY KEY,
         key_hash    BLOB NOT NULL,
         created_at  INTEGER NOT NULL,
         expires_at  INTEGER NOT NULL,
         used_at     INTEGER,
         account_id  TEXT
     );",
];

// Every migration brings the file one version up.
const _: () = assert!(MIGRATIONS.len() as i64 == super::SCHEMA_VERSION);

fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > super::SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew {
            found: version,
            known: super::SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The database's own guard of the one-renewal rule: a unique index on
/// `renewed_from` (SQLite lets NULLs repeat), which also serves the
/// lookups of renewals. A ledger written before the rule may hold two
/// renewals of one certificate; there the index cannot be built, and the
/// check inside the issuing transaction (`check_renewable`), which holds
/// on its own, is the only guard.
fn one_renewal_index(conn: &Connection) {
    if let Err(e) = conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS one_renewal_each ON certificates(renewed_from)",
    ) {
        warn!("the ledger holds certificates renewed more than once, from before renewal was limited to once; the limit still holds for new renewals ({e})");
    }
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        #[cfg(unix)]
        {
            // Only the CA reads its ledger; SQLite gives the -wal and -shm
            // files the same mode as the database.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        // WAL with synchronous=FULL: a committed issuance survives a crash
        // or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let mut conn = conn;
        migrate(&mut conn)?;
        one_renewal_index(&conn);
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteLedger {
            reader: Mutex::new(reader),
            conn: Mutex::new(conn),
            pending: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Commits a batch of issuances in one transaction. An item that is
/// refused (its token used meanwhile) leaves no change behind, so it does
/// not undo the others; if the commit itself fails, every item fails.
fn commit_batch(conn: &mut Connection, batch: &[PendingIssuance]) -> Vec<Result<(), LedgerError>> {
    let run = |conn: &mut Connection| -> Result<Vec<Result<(), LedgerError>>, rusqlite::Error> {
        // IMMEDIATE: the write lock is taken before the renewal checks
        // read, so what they read cannot change before the commit, even
        // from another process (`pki-ca revoke`).
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        for item in batch {
            results.push(insert_issuance(&tx, &item.record, item.token_id.as_deref()));
        }
        tx.commit()?;
        Ok(results)
    };
    match run(conn) {
        Ok(results) => results,
        Err(e) => {
            let msg = e.to_string();
            batch
                .iter()
                .map(|_| Err(LedgerError::CommitFailed(msg.clone())))
                .collect()
        }
    }
}

/// Consumes the token (if any) and inserts the certificate; on failure it
/// leaves the token as it was. (Per-item savepoints would do the same, at a
/// cost that showed in the profile.)
fn insert_issuance(
    conn: &Connection,
    rec: &IssuedRecord,
    token_id: Option<&str>,
) -> Result<(), LedgerError> {
    if let Some(parent) = rec.renewed_from.as_deref() {
        check_renewable(conn, parent)?;
    }
    if let Some(id) = token_id {
        // Cached statements: issuance is the hot path, and parsing the SQL
        // each time showed in the profile.
        let changed = conn
            .prepare_cached("UPDATE tokens SET used_at = ?1 WHERE id = ?2 AND used_at IS NULL")?
            .execute(params![rec.issued_at, id])?;
        if changed != 1 {
            return Err(LedgerError::TokenAlreadyUsed);
        }
    }
    if let Some(order) = rec.acme_order.as_deref() {
        // The order becomes valid with its certificate, or neither
        // happens: an order that expired or failed meanwhile gets none.
        let changed = conn
            .prepare_cached("UPDATE acme_orders SET status = 'valid', cert_serial = ?1 WHERE id = ?2 AND status = 'processing'")?
            .execute(params![rec.serial_hex, order])?;
        if changed != 1 {
            if let Some(id) = token_id {
                conn.prepare_cached("UPDATE tokens SET used_at = NULL WHERE id = ?1")?
                    .execute([id])?;
            }
            return Err(LedgerError::OrderNotProcessing(order.to_string()));
        }
    }
    let inserted = conn.prepare_cached(
        "INSERT INTO certificates (serial, names, profile, not_before, not_after, token_id, issued_at, der, renewed_from, issuer_id, acme_order)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
            rec.serial_hex,
            names_to_json(&rec.names),
            rec.profile.as_str(),
            rec.not_before,
            rec.not_after,
            rec.token_id,
            rec.issued_at,
            rec.der,
            rec.renewed_from,
            rec.issuer_id,
            rec.acme_order
        ]);
    if let Err(e) = inserted {
        if let Some(id) = token_id {
            conn.prepare_cached("UPDATE tokens SET used_at = NULL WHERE id = ?1")?
                .execute([id])?;
        }
        if let Some(order) = rec.acme_order.as_deref() {
            conn.prepare_cached(
                "UPDATE acme_orders SET status = 'processing', cert_serial = NULL WHERE id = ?1",
            )?
            .execute([order])?;
        }
        return Err(e.into());
    }
    Ok(())
}

/// The ledger's half of the one-renewal rule, run inside the issuing
/// transaction: `parent` has not been renewed yet, and neither it nor any
/// certificate it was renewed from is revoked.
fn check_renewable(conn: &Connection, parent: &str) -> Result<(), LedgerError> {
    let by: Option<String> = conn
        .prepare_cached("SELECT serial FROM certificates WHERE renewed_from = ?1 LIMIT 1")?
        .query_row([parent], |r| r.get(0))
        .optional()?;
    if let Some(by) = by {
        return Err(LedgerError::AlreadyRenewed {
            serial: parent.to_string(),
            by,
        });
    }
    // UNION, not UNION ALL: a damaged ledger with a cycle still ends.
    let revoked: Option<(String, String)> = conn
        .prepare_cached(
            "WITH RECURSIVE up(serial, parent, reason) AS (
                 SELECT serial, renewed_from, revocation_reason FROM certificates WHERE serial = ?1
                 UNION
                 SELECT c.serial, c.renewed_from, c.revocation_reason
                 FROM certificates c JOIN up ON c.serial = up.parent)
             SELECT serial, reason FROM up WHERE reason IS NOT NULL LIMIT 1",
        )?
        .query_row([parent], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match revoked {
        Some((serial, reason)) => Err(LedgerError::RevokedMeanwhile {
            serial,
            reason: reason.parse().map_err(LedgerError::Corrupt)?,
        }),
        None => Ok(()),
    }
}

/// Revokes, on `tx`, every certificate renewed from `serial`, transitively,
/// that is not revoked yet; answers how many.
fn revoke_renewals(
    tx: &Connection,
    serial: &str,
    revocation: Revocation,
) -> Result<usize, LedgerError> {
    Ok(tx.execute(
        "WITH RECURSIVE down(serial) AS (
             SELECT serial FROM certificates WHERE renewed_from = ?3
             UNION
             SELECT c.serial FROM certificates c JOIN down ON c.renewed_from = down.serial)
         UPDATE certificates SET revoked_at = ?1, revocation_reason = ?2
         WHERE serial IN (SELECT serial FROM down) AND revoked_at IS NULL",
        params![revocation.revoked_at, revocation.reason.as_str(), serial],
    )?)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Inserts one token grant on `conn` (a connection or a transaction).
fn insert_token(conn: &Connection, g: &TokenGrant) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO tokens (id, secret_hash, names, profile, created_at, expires_at, used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            g.id,
            g.secret_hash,
            names_to_json(&g.names),
            g.profile.as_str(),
            g.created_at,
            g.expires_at,
            g.used_at
        ],
    )?;
    Ok(())
}

impl Ledger for SqliteLedger {
    fn acme(&self) -> Option<&dyn crate::acme::store::AcmeStore> {
        Some(self)
    }

    fn add_tokens(&self, grants: &[TokenGrant]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for g in grants {
            insert_token(&tx, g)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn add_token(&self, g: &TokenGrant) -> Result<(), LedgerError> {
        insert_token(&self.conn(), g)
    }

    fn token(&self, id: &str) -> Result<Option<TokenGrant>, LedgerError> {
        let reader = lock(&self.reader);
        let row = reader
            .prepare_cached(
                "SELECT id, secret_hash, names, profile, created_at, expires_at, used_at
                 FROM tokens WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })
            .optional()?;
        row.map(
            |(id, secret_hash, names, profile, created_at, expires_at, used_at)| {
                Ok(TokenGrant {
                    id,
                    secret_hash,
                    names: names_from_json(&names)?,
                    profile: profile_from(&profile)?,
                    created_at,
                    expires_at,
                    used_at,
                })
            },
        )
        .transpose()
    }

    fn record_issuance(
        &self,
        rec: &IssuedRecord,
        token_id: Option<&str>,
    ) -> Result<(), LedgerError> {
        let outcome = Arc::new(Mutex::new(None));
        lock(&self.pending).push(PendingIssuance {
            record: rec.clone(),
            token_id: token_id.map(str::to_owned),
            outcome: outcome.clone(),
        });
        // Waits while another caller commits a batch, which may hold ours.
        let mut conn = self.conn();
        if let Some(done) = lock(&outcome).take() {
            return done;
        }
        let batch = std::mem::take(&mut *lock(&self.pending));
        let results = commit_batch(&mut conn, &batch);
        for (item, result) in batch.iter().zip(results) {
            *lock(&item.outcome) = Some(result);
        }
        drop(conn);
        let done = lock(&outcome).take();
        done.unwrap_or_else(|| {
            Err(LedgerError::Corrupt(
                "issuance lost from the commit batch".into(),
            ))
        })
    }

    fn certificates(&self) -> Result<Vec<IssuedRecord>, LedgerError> {
        self.select_certificates("1 = 1 ORDER BY issued_at, rowid", [])
    }

    fn certificate(&self, serial: &str) -> Result<Option<IssuedRecord>, LedgerError> {
        Ok(self
            .select_certificates("serial = ?1", [serial])?
            .into_iter()
            .next())
    }

    fn renewed_by(&self, serial: &str) -> Result<Option<String>, LedgerError> {
        let reader = lock(&self.reader);
        let by = reader
            .prepare_cached("SELECT serial FROM certificates WHERE renewed_from = ?1 LIMIT 1")?
            .query_row([serial], |r| r.get(0))
            .optional()?;
        Ok(by)
    }

    fn revoke(&self, serial: &str, revocation: Revocation) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(Option<i64>, Option<String>)> = tx
            .query_row(
                "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ?1",
                [serial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match current {
            None => return Err(LedgerError::NoSuchSerial(serial.to_string())),
            Some((Some(at), Some(reason))) => {
                // Already revoked: only renewals that escaped it (written
                // before revocation reached them) are left to revoke.
                if revoke_renewals(&tx, serial, revocation)? == 0 {
                    return Err(LedgerError::AlreadyRevoked {
                        serial: serial.to_string(),
                        reason: reason.parse().map_err(LedgerError::Corrupt)?,
                        at: pki_common::cert::rfc3339(at),
                    });
                }
            }
            Some(_) => {
                tx.execute(
                    "UPDATE certificates SET revoked_at = ?1, revocation_reason = ?2 WHERE serial = ?3",
                    params![revocation.revoked_at, revocation.reason.as_str(), serial],
                )?;
                revoke_renewals(&tx, serial, revocation)?;
            }
        }
        tx.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'revision'",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn revision(&self) -> Result<i64, LedgerError> {
        Ok(self.conn().query_row(
            "SELECT value FROM counters WHERE name = 'revision'",
            [],
            |r| r.get(0),
        )?)
    }

    fn next_crl_number(&self) -> Result<u64, LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'crl_number'",
            [],
        )?;
        let n: i64 = tx.query_row(
            "SELECT value FROM counters WHERE name = 'crl_number'",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn next_crl_number_of(&self, issuer: &str) -> Result<u64, LedgerError> {
        let name = format!("crl_number:{issuer}");
        let n: i64 = self.conn().query_row(
            "INSERT INTO counters (name, value) VALUES (?1, 1)
             ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
            [name],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

/// The intermediates, kept by the commands run where the root key is.
/// Not part of [`Ledger`]: the online CA does not need them (it learns
/// which intermediates are revoked from the root CRL, which it can verify).
impl SqliteLedger {
    /// Records an intermediate; one already recorded is left as it is.
    pub fn record_intermediate(&self, rec: &IntermediateRecord) -> Result<(), LedgerError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO intermediates (id, serial, der, not_before, not_after)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                rec.id,
                rec.serial_hex,
                rec.der,
                rec.not_before,
                rec.not_after
            ],
        )?;
        Ok(())
    }

    /// Every intermediate, oldest first.
    pub fn intermediates(&self) -> Result<Vec<IntermediateRecord>, LedgerError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(
            "SELECT id, serial, der, not_before, not_after, revoked_at, revocation_reason
             FROM intermediates ORDER BY not_before, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                IntermediateRecord {
                    id: r.get(0)?,
                    serial_hex: r.get(1)?,
                    der: r.get(2)?,
                    not_before: r.get(3)?,
                    not_after: r.get(4)?,
                    revoked: None,
                },
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (mut rec, at, reason) = row?;
            if let (Some(revoked_at), Some(reason)) = (at, reason) {
                rec.revoked = Some(Revocation {
                    reason: reason.parse().map_err(LedgerError::Corrupt)?,
                    revoked_at,
                });
            }
            Ok(rec)
        })
        .collect()
    }

    /// Revokes the intermediate `id`; revoking it twice is refused.
    pub fn revoke_intermediate(&self, id: &str, revocation: Revocation) -> Result<(), LedgerError> {
        if let Some(done) = self
            .intermediates()?
            .into_iter()
            .find(|r| r.id == id)
            .and_then(|r| r.revoked)
        {
            return Err(LedgerError::AlreadyRevoked {
                serial: id.to_string(),
                reason: done.reason,
                at: pki_common::cert::rfc3339(done.revoked_at),
            });
        }
        let changed = self.conn().execute(
            "UPDATE intermediates SET revoked_at = ?1, revocation_reason = ?2 WHERE id = ?3",
            params![revocation.revoked_at, revocation.reason.as_str(), id],
        )?;
        if changed == 0 {
            return Err(LedgerError::NoSuchSerial(id.to_string()));
        }
        Ok(())
    }

    /// The certificates `issuer` signed, oldest first.
    pub fn certificates_of(&self, issuer: &str) -> Result<Vec<IssuedRecord>, LedgerError> {
        self.select_certificates("issuer_id = ?1 ORDER BY issued_at, rowid", [issuer])
    }

    /// The number of the last CRL the root signed before the hierarchy
    /// (the single counter of older ledgers), so the root's CRLs go on
    /// above it.
    pub fn legacy_crl_number(&self) -> Result<u64, LedgerError> {
        let n: i64 = self.conn().query_row(
            "SELECT value FROM counters WHERE name = 'crl_number'",
            [],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

impl SqliteLedger {
    /// Certificates matching an SQL condition on the `certificates` table.
    fn select_certificates<P: rusqlite::Params>(
        &self,
        condition: &str,
        params: P,
    ) -> Result<Vec<IssuedRecord>, LedgerError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT serial, names, profile, not_before, not_after, token_id, issued_at, der,
                    revoked_at, revocation_reason, renewed_from, issuer_id, acme_order
             FROM certificates WHERE {condition}"
        ))?;
        let rows = stmt.query_map(params, Row::read)?;
        rows.map(|row| row?.into_record()).collect()
    }
}

/// A `certificates` row as SQLite answers it, in the column order of
/// [`SqliteLedger::select_certificates`]; checked on the way to an
/// [`IssuedRecord`], since a row may be damaged.
struct Row {
    serial_hex: String,
    names: String,
    profile: String,
    not_before: i64,
    not_after: i64,
    token_id: Option<String>,
    issued_at: i64,
    der: Vec<u8>,
    revoked_at: Option<i64>,
    reason: Option<String>,
    renewed_from: Option<String>,
    issuer_id: String,
    acme_order: Option<String>,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            serial_hex: r.get(0)?,
            names: r.get(1)?,
            profile: r.get(2)?,
            not_before: r.get(3)?,
            not_after: r.get(4)?,
            token_id: r.get(5)?,
            issued_at: r.get(6)?,
            der: r.get(7)?,
            revoked_at: r.get(8)?,
            reason: r.get(9)?,
            renewed_from: r.get(10)?,
            issuer_id: r.get(11)?,
            acme_order: r.get(12)?,
        })
    }

    fn into_record(self) -> Result<IssuedRecord, LedgerError> {
        let revoked = match (self.revoked_at, self.reason) {
            (Some(revoked_at), Some(reason)) => Some(Revocation {
                reason: reason.parse().map_err(LedgerError::Corrupt)?,
                revoked_at,
            }),
            _ => None,
        };
        Ok(IssuedRecord {
            serial_hex: self.serial_hex,
            names: names_from_json(&self.names)?,
            profile: profile_from(&self.profile)?,
            not_before: self.not_before,
            not_after: self.not_after,
            token_id: self.token_id,
            issued_at: self.issued_at,
            der: self.der,
            revoked,
            renewed_from: self.renewed_from,
            issuer_id: self.issuer_id,
            acme_order: self.acme_order,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pki_common::cert::Profile;
    use pki_common::revocation::Reason;

    fn grant(id: &str) -> TokenGrant {
        TokenGrant {
            id: id.into(),
            secret_hash: vec![1; 32],
            names: vec!["a.test".into()],
            profile: Profile::Server,
            created_at: 1,
            expires_at: 100,
            used_at: None,
        }
    }

    fn record(serial: &str, token: Option<&str>) -> IssuedRecord {
        IssuedRecord {
            serial_hex: serial.into(),
            names: vec!["a.test".into()],
            profile: Profile::Server,
            not_before: 1,
            not_after: 2,
            token_id: token.map(str::to_owned),
            issued_at: 5,
            der: vec![0x30],
            revoked: None,
            renewed_from: None,
            issuer_id: "root".into(),
            acme_order: None,
        }
    }

    #[test]
    fn revocations_and_crl_numbers_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let revocation = Revocation {
            reason: Reason::KeyCompromise,
            revoked_at: 42,
        };
        {
            let l = SqliteLedger::open(&path).unwrap();
            l.record_issuance(&record("0a", None), None).unwrap();
            let before = l.revision().unwrap();
            l.revoke("0a", revocation).unwrap();
            assert_eq!(l.revision().unwrap(), before + 1);
            assert!(matches!(
                l.revoke("0a", revocation),
                Err(LedgerError::AlreadyRevoked {
                    reason: Reason::KeyCompromise,
                    ..
                })
            ));
            assert!(matches!(
                l.revoke("0b", revocation),
                Err(LedgerError::NoSuchSerial(_))
            ));
            assert_eq!(l.next_crl_number().unwrap(), 1);
            assert_eq!(l.next_crl_number().unwrap(), 2);
        }
        let l = SqliteLedger::open(&path).unwrap();
        assert_eq!(l.certificates().unwrap()[0].revoked, Some(revocation));
        assert_eq!(l.next_crl_number().unwrap(), 3);
    }

    #[test]
    fn issuance_consumes_the_token_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        {
            let l = SqliteLedger::open(&path).unwrap();
            l.add_token(&grant("t1")).unwrap();
            l.record_issuance(&record("01", Some("t1")), Some("t1"))
                .unwrap();
            assert!(matches!(
                l.record_issuance(&record("02", Some("t1")), Some("t1")),
                Err(LedgerError::TokenAlreadyUsed)
            ));
        }
        let l = SqliteLedger::open(&path).unwrap();
        assert_eq!(l.token("t1").unwrap().unwrap().used_at, Some(5));
        let certs = l.certificates().unwrap();
        assert_eq!(certs, vec![record("01", Some("t1"))]);
    }

    #[test]
    fn concurrent_issuances_share_commits_and_a_token_still_works_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let l = Arc::new(SqliteLedger::open(&path).unwrap());
        for t in 0..8 {
            l.add_token(&grant(&format!("t{t}"))).unwrap();
        }
        // 64 issuances from 16 threads; each token is tried 8 times.
        let handles: Vec<_> = (0..16)
            .map(|th| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..4)
                        .map(|i| {
                            let n = th * 4 + i;
                            let token = format!("t{}", n % 8);
                            let rec = record(&format!("{n:04x}"), Some(&token));
                            (n, l.record_issuance(&rec, Some(&token)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let outcomes: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let ok: Vec<_> = outcomes
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(ok.len(), 8, "each token works exactly once");
        assert!(outcomes
            .iter()
            .filter(|(_, r)| r.is_err())
            .all(|(_, r)| matches!(r, Err(LedgerError::TokenAlreadyUsed))));
        let reopened = SqliteLedger::open(&path).unwrap();
        let stored = reopened.certificates().unwrap();
        assert_eq!(stored.len(), 8);
        for n in ok {
            assert!(stored.iter().any(|r| r.serial_hex == format!("{n:04x}")));
        }
    }

    fn renewal(serial: &str, from: &str) -> IssuedRecord {
        IssuedRecord {
            renewed_from: Some(from.into()),
            ..record(serial, None)
        }
    }

    #[test]
    fn a_certificate_renews_once_and_revocation_follows_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        l.record_issuance(&record("a0", None), None).unwrap();
        l.record_issuance(&renewal("a1", "a0"), None).unwrap();
        assert!(matches!(
            l.record_issuance(&renewal("f1", "a0"), None),
            Err(LedgerError::AlreadyRenewed { serial, by }) if serial == "a0" && by == "a1"
        ));
        l.record_issuance(&renewal("a2", "a1"), None).unwrap();
        assert_eq!(l.renewed_by("a0").unwrap().as_deref(), Some("a1"));
        assert_eq!(l.renewed_by("a2").unwrap(), None);

        let revocation = Revocation {
            reason: Reason::KeyCompromise,
            revoked_at: 42,
        };
        l.revoke("a0", revocation).unwrap();
        for serial in ["a0", "a1", "a2"] {
            let r = l.certificate(serial).unwrap().unwrap();
            assert_eq!(r.revoked, Some(revocation), "{serial}");
        }
        // The end of a revoked chain cannot renew: not even by a request
        // that passed its checks before the revocation.
        assert!(matches!(
            l.record_issuance(&renewal("a3", "a2"), None),
            Err(LedgerError::RevokedMeanwhile { serial, reason: Reason::KeyCompromise }) if serial == "a2"
        ));
        assert!(matches!(
            l.revoke("a0", revocation),
            Err(LedgerError::AlreadyRevoked { .. })
        ));
    }

    #[test]
    fn revoking_again_reaches_a_renewal_that_escaped() {
        // A ledger from before renewals were revoked with their origin.
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        l.record_issuance(&record("b0", None), None).unwrap();
        l.record_issuance(&renewal("b1", "b0"), None).unwrap();
        let revocation = Revocation {
            reason: Reason::KeyCompromise,
            revoked_at: 7,
        };
        l.conn()
            .execute(
                "UPDATE certificates SET revoked_at = 7, revocation_reason = 'keyCompromise' WHERE serial = 'b0'",
                [],
            )
            .unwrap();
        l.revoke("b0", revocation).unwrap();
        assert_eq!(
            l.certificate("b1").unwrap().unwrap().revoked,
            Some(revocation)
        );
    }

    #[test]
    fn of_concurrent_renewals_of_one_certificate_exactly_one_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap());
        l.record_issuance(&record("c0", None), None).unwrap();
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let l = l.clone();
                std::thread::spawn(move || {
                    l.record_issuance(&renewal(&format!("c{:02x}", i + 1), "c0"), None)
                })
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(outcomes
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, LedgerError::AlreadyRenewed { .. })));
        assert_eq!(l.certificates().unwrap().len(), 2);
    }

    #[test]
    fn crl_numbers_are_per_issuer_and_rows_name_their_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        {
            let l = SqliteLedger::open(&path).unwrap();
            assert_eq!(l.next_crl_number_of("aa").unwrap(), 1);
            assert_eq!(l.next_crl_number_of("aa").unwrap(), 2);
            assert_eq!(l.next_crl_number_of("bb").unwrap(), 1);
            let under_aa = IssuedRecord {
                issuer_id: "aa".into(),
                ..record("01", None)
            };
            l.record_issuance(&under_aa, None).unwrap();
            l.record_issuance(&record("02", None), None).unwrap();
        }
        let l = SqliteLedger::open(&path).unwrap();
        assert_eq!(l.next_crl_number_of("aa").unwrap(), 3);
        let of_aa = l.certificates_of("aa").unwrap();
        assert_eq!(of_aa.len(), 1);
        assert_eq!(of_aa[0].serial_hex, "01");
        assert_eq!(l.certificates_of("root").unwrap()[0].serial_hex, "02");
    }

    #[test]
    fn an_older_ledger_gets_the_issuer_column_and_its_rows_are_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            // A ledger as version 2 left it, with one certificate.
            let mut conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            for (i, sql) in MIGRATIONS.iter().take(2).enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", i as i64 + 1)
                    .unwrap();
            }
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO certificates (serial, names, profile, not_before, not_after, issued_at, der)
                 VALUES ('0c', '[\"a.test\"]', 'server', 1, 2, 5, x'30')",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let l = SqliteLedger::open(&path).unwrap();
        assert_eq!(l.certificate("0c").unwrap().unwrap().issuer_id, "root");
        assert!(l.intermediates().unwrap().is_empty());
    }

    #[test]
    fn a_serial_can_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        l.record_issuance(&record("aa", None), None).unwrap();
        assert!(matches!(
            l.record_issuance(&record("aa", None), None),
            Err(LedgerError::Db(_))
        ));
        // A refused insert leaves its token unused.
        l.add_token(&grant("t9")).unwrap();
        assert!(matches!(
            l.record_issuance(&record("aa", Some("t9")), Some("t9")),
            Err(LedgerError::Db(_))
        ));
        assert_eq!(l.token("t9").unwrap().unwrap().used_at, None);
    }
}

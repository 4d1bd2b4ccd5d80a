//! [`PgLedger`]: the ledger in PostgreSQL, for several CA replicas on one
//! database.
//!
//! # Why it is built this way
//! The [`Ledger`] trait is synchronous (SQLite is), and it is called from
//! async handlers, blocking threads and the command line alike. The
//! driver, tokio-postgres behind a deadpool pool, is async. So the ledger
//! owns a small runtime of its own: each call spawns its query there and
//! waits for the answer on a plain channel, which is safe on any thread
//! (a nested `block_on` would panic inside the CA's runtime). The pool
//! reconnects by itself, so the CA recovers from a database outage
//! without a restart; while the database is unreachable, every call fails
//! fast with [`LedgerError::Unavailable`], which the API answers with 503
//! `ledger_unavailable` and `Retry-After`.
//!
//! # Correct across replicas
//! Every rule two replicas could race on is decided by the database:
//! a token is consumed by `UPDATE … WHERE used_at IS NULL RETURNING` in the
//! issuing transaction; serials are a primary key; CRL numbers come from
//! `INSERT … ON CONFLICT DO UPDATE … RETURNING`, which locks the counter's
//! row, so they strictly increase whichever replica asks. Renewals and
//! revocations take one transaction-scoped advisory lock, so a renewal
//! cannot slip past a revocation of its ancestor on another replica (the
//! one-renewal and revocation rules of the module above). Commits are
//! durable before a call returns (`synchronous_commit` is PostgreSQL's
//! default), so a replica killed after answering has lost nothing.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Row;

use super::{
    names_from_json, names_to_json, profile_from, IssuedRecord, Ledger, LedgerError, Revocation,
    SCHEMA_VERSION,
};
use crate::token::TokenGrant;

/// How long one ledger call may take, connection included, before it is
/// answered as [`LedgerError::Unavailable`].
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock that serializes renewals and revocations.
const RENEWAL_LOCK: i64 = 0x706b_692d_6361; // "pki-ca"
/// The advisory lock held while migrating, so replicas starting together
/// migrate once.
const MIGRATION_LOCK: i64 = 0x706b_692d_6d69; // "pki-mi"

/// The ledger in a PostgreSQL database.
pub struct PgLedger {
    /// `Some` until dropped: shut down in the background, since a ledger
    /// may be dropped inside the CA's own runtime.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The URL without its password, for messages.
    display: String,
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A tokio-postgres error as the ledger's: one from the server (a
/// constraint, a syntax error) is a database error; any other (refused,
/// closed, timed out) means the database cannot be reached now.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> LedgerError {
    match e.as_db_error() {
        Some(db) => LedgerError::Pg(format!("{}: {}", db.code().code(), db.message())),
        None => LedgerError::Unavailable(with_causes(&e)),
    }
}

/// An error with its causes ("error performing TLS handshake" alone does
/// not say that the certificate was refused, or why).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        cause = c.source();
    }
    text
}

fn pool_err(e: deadpool_postgres::PoolError) -> LedgerError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        other => LedgerError::Unavailable(with_causes(&other)),
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// The URL as it may be shown: without a password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl PgLedger {
    /// Connects to the database at `url` (a `postgres://` URL; its
    /// `sslmode` decides TLS, verified against `tls_roots` when given), and
    /// brings the schema up to date. Fails if the database cannot be
    /// reached now, or holds a schema newer than this CA knows.
    pub fn connect(url: &str, tls: Option<rustls::ClientConfig>) -> Result<Self, LedgerError> {
        let display = redact(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| LedgerError::BadUrl(format!("{display}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pki-ledger")
            .enable_all()
            .build()
            .map_err(|e| {
                LedgerError::Unavailable(format!("cannot start the ledger's runtime: {e}"))
            })?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                manager_config,
            ),
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CALL_TIMEOUT))
            .recycle_timeout(Some(CALL_TIMEOUT))
            .build()
            .map_err(|e| LedgerError::BadUrl(format!("{display}: {e}")))?;
        let ledger = PgLedger {
            runtime: Some(runtime),
            pool,
            display,
        };
        ledger.call(|pool| async move { migrate(&pool).await })?;
        Ok(ledger)
    }

    /// The database, as messages show it (no password).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Runs `work` on the ledger's runtime and waits for it, at most
    /// [`CALL_TIMEOUT`] and a little.
    pub(crate) fn call<T, F, Fut>(&self, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        self.call_within(CALL_TIMEOUT, work)
    }

    /// [`PgLedger::call`] with another bound (a migration takes longer).
    pub(crate) fn call_within<T, F, Fut>(&self, limit: Duration, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(LedgerError::Unavailable("the ledger is closed".into()));
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let pool = self.pool.clone();
        runtime.spawn(async move {
            let outcome = tokio::time::timeout(limit, work(pool))
                .await
                .unwrap_or_else(|_| {
                    Err(LedgerError::Unavailable(format!(
                        "no answer from the database within {}",
                        humantime::format_duration(limit)
                    )))
                });
            let _ = tx.send(outcome);
        });
        rx.recv_timeout(limit + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(LedgerError::Unavailable("the ledger call was lost".into())))
    }
}

/// The PostgreSQL schema at each version; the number is the ledger schema
/// version, the same for both backends (SQLite reaches 4 step by step;
/// PostgreSQL starts there).
const PG_MIGRATIONS: &[(i64, &str)] = &[(
    4,
    "CREATE TABLE tokens (
         id          TEXT PRIMARY KEY,
         secret_hash BYTEA NOT NULL,
         names       TEXT NOT NULL,
         profile     TEXT NOT NULL,
         created_at  BIGINT NOT NULL,
         expires_at  BIGINT NOT NULL,
         used_at     BIGINT
     );
     CREATE TABLE certificates (
         serial            TEXT PRIMARY KEY,
         names             TEXT NOT NULL,
         profile           TEXT NOT NULL,
         not_before        BIGINT NOT NULL,
         not_after         BIGINT NOT NULL,
         token_id          TEXT REFERENCES tokens(id),
         issued_at         BIGINT NOT NULL,
         der               BYTEA NOT NULL,
         revoked_at        BIGINT,
         revocation_reason TEXT,
         renewed_from      TEXT REFERENCES certificates(serial),
         issuer_id         TEXT NOT NULL DEFAULT 'root',
         acme_order        TEXT,
         seq               BIGSERIAL
     );
     CREATE UNIQUE INDEX one_renewal_each ON certificates(renewed_from);
     CREATE INDEX certificates_by_issuer ON certificates(issuer_id);
     CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
     INSERT INTO counters (name, value) VALUES ('revision', 0), ('crl_number', 0);
     CREATE TABLE intermediates (
         id                TEXT PRIMARY KEY,
         serial            TEXT NOT NULL UNIQUE,
         der               BYTEA NOT NULL,
         not_before        BIGINT NOT NULL,
         not_after         BIGINT NOT NULL,
         revoked_at        BIGINT,
         revocation_reason TEXT
     );
     CREATE TABLE acme_accounts (
         id          TEXT PRIMARY KEY,
         thumbprint  TEXT NOT NULL UNIQUE,
         jwk         TEXT NOT NULL,
         status      TEXT NOT NULL,
         contact     TEXT NOT NULL,
         created_at  BIGINT NOT NULL
     );
     CREATE TABLE acme_orders (
         id          TEXT PRIMARY KEY,
         account_id  TEXT NOT NULL REFERENCES acme_accounts(id),
         status      TEXT NOT NULL,
         identifiers TEXT NOT NULL,
         authz_ids   TEXT NOT NULL,
         expires_at  BIGINT NOT NULL,
         created_at  BIGINT NOT NULL,
         cert_serial TEXT,
         error       TEXT
     );
     CREATE INDEX acme_orders_by_account ON acme_orders(account_id, created_at);
     CREATE TABLE acme_authzs (
         id          TEXT PRIMARY KEY,
         order_id    TEXT NOT NULL REFERENCES acme_orders(id),
         account_id  TEXT NOT NULL,
         id_type     TEXT NOT NULL,
         id_value    TEXT NOT NULL,
         status      TEXT NOT NULL,
         expires_at  BIGINT NOT NULL
     );
     CREATE TABLE acme_challenges (
         id           TEXT PRIMARY KEY,
         authz_id     TEXT NOT NULL REFERENCES acme_authzs(id),
         type         TEXT NOT NULL,
         token        TEXT NOT NULL,
         status       TEXT NOT NULL,
         validated_at BIGINT,
         error        TEXT
     );
     CREATE INDEX acme_challenges_by_authz ON acme_challenges(authz_id);
     CREATE TABLE acme_nonces (value TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
     CREATE TABLE acme_eab (
         kid         TEXT PRIMARY KEY,
         key_hash    BYTEA NOT NULL,
         created_at  BIGINT NOT NULL,
         expires_at  BIGINT NOT NULL,
         used_at     BIGINT,
         account_id  TEXT
     );",
)];

/// Brings the schema up to [`SCHEMA_VERSION`], under an advisory lock so
/// that replicas starting together migrate once; refuses a newer schema.
async fn migrate(pool: &Pool) -> Result<(), LedgerError> {
    let mut client = pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await
        .map_err(pg_err)?;
    let found: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in PG_MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute("DELETE FROM schema_version", &[])
            .await
            .map_err(pg_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(())
}

const CERT_COLUMNS: &str = "serial, names, profile, not_before, not_after, token_id, issued_at, der, revoked_at, revocation_reason, renewed_from, issuer_id, acme_order";

fn cert_from(row: &Row) -> Result<IssuedRecord, LedgerError> {
    let names: String = row.get(1);
    let profile: String = row.get(2);
    let revoked = match (
        row.get::<_, Option<i64>>(8),
        row.get::<_, Option<String>>(9),
    ) {
        (Some(revoked_at), Some(reason)) => Some(Revocation {
            reason: reason.parse().map_err(LedgerError::Corrupt)?,
            revoked_at,
        }),
        _ => None,
    };
    Ok(IssuedRecord {
        serial_hex: row.get(0),
        names: names_from_json(&names)?,
        profile: profile_from(&profile)?,
        not_before: row.get(3),
        not_after: row.get(4),
        token_id: row.get(5),
        issued_at: row.get(6),
        der: row.get(7),
        revoked,
        renewed_from: row.get(10),
        issuer_id: row.get(11),
        acme_order: row.get(12),
    })
}

async fn select_certs(
    client: &impl GenericClient,
    condition: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<IssuedRecord>, LedgerError> {
    let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE {condition}");
    let rows = client.query(&sql, params).await.map_err(pg_err)?;
    rows.iter().map(cert_from).collect()
}

/// The renewal rule inside the issuing transaction, as SQLite's
/// `check_renewable`: `parent` not renewed yet, and neither it nor any
/// certificate it was renewed from revoked.
async fn check_renewable(client: &impl GenericClient, parent: &str) -> Result<(), LedgerError> {
    if let Some(row) = client
        .query_opt(
            "SELECT serial FROM certificates WHERE renewed_from = $1 LIMIT 1",
            &[&parent],
        )
        .await
        .map_err(pg_err)?
    {
        return Err(LedgerError::AlreadyRenewed {
            serial: parent.to_string(),
            by: row.get(0),
        });
    }
    let revoked = client
        .query_opt(
            "WITH RECURSIVE up(serial, parent, reason) AS (
                 SELECT serial, renewed_from, revocation_reason FROM certificates WHERE serial = $1
                 UNION
                 SELECT c.serial, c.renewed_from, c.revocation_reason
                 FROM certificates c JOIN up ON c.serial = up.parent)
             SELECT serial, reason FROM up WHERE reason IS NOT NULL LIMIT 1",
            &[&parent],
        )
        .await
        .map_err(pg_err)?;
    match revoked {
        Some(row) => Err(LedgerError::RevokedMeanwhile {
            serial: row.get(0),
            reason: row
                .get::<_, String>(1)
                .parse()
                .map_err(LedgerError::Corrupt)?,
        }),
        None => Ok(()),
    }
}

async fn record_issuance(
    pool: Pool,
    rec: IssuedRecord,
    token_id: Option<String>,
) -> Result<(), LedgerError> {
    let mut client = pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    if let Some(parent) = rec.renewed_from.as_deref() {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RENEWAL_LOCK])
            .await
            .map_err(pg_err)?;
        check_renewable(&tx, parent).await?;
    }
    if let Some(id) = token_id.as_deref() {
        let used = tx
            .query_opt(
                "UPDATE tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL RETURNING id",
                &[&rec.issued_at, &id],
            )
            .await
            .map_err(pg_err)?;
        if used.is_none() {
            return Err(LedgerError::TokenAlreadyUsed);
        }
    }
    if let Some(order) = rec.acme_order.as_deref() {
        let changed = tx
            .execute(
                "UPDATE acme_orders SET status = 'valid', cert_serial = $1 WHERE id = $2 AND status = 'processing'",
                &[&rec.serial_hex, &order],
            )
            .await
            .map_err(pg_err)?;
        if changed != 1 {
            return Err(LedgerError::OrderNotProcessing(order.to_string()));
        }
    }
    let inserted = tx
        .execute(
            "INSERT INTO certificates (serial, names, profile, not_before, not_after, token_id, issued_at, der, renewed_from, issuer_id, acme_order)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &rec.serial_hex,
                &names_to_json(&rec.names),
                &rec.profile.as_str(),
                &rec.not_before,
                &rec.not_after,
                &rec.token_id,
                &rec.issued_at,
                &rec.der,
                &rec.renewed_from,
                &rec.issuer_id,
                &rec.acme_order,
            ],
        )
        .await;
    match inserted {
        Err(e) if is_unique_violation(&e) && rec.renewed_from.is_some() => {
            return Err(LedgerError::AlreadyRenewed {
                serial: rec.renewed_from.clone().unwrap_or_default(),
                by: "a concurrent renewal".into(),
            })
        }
        other => other.map_err(pg_err)?,
    };
    tx.commit().await.map_err(pg_err)
}

async fn revoke(pool: Pool, serial: String, revocation: Revocation) -> Result<(), LedgerError> {
    let mut client = pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RENEWAL_LOCK])
        .await
        .map_err(pg_err)?;
    let current = tx
        .query_opt(
            "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = $1",
            &[&serial],
        )
        .await
        .map_err(pg_err)?;
    let reason = revocation.reason.as_str();
    let Some(row) = current else {
        return Err(LedgerError::NoSuchSerial(serial));
    };
    let renewals = "WITH RECURSIVE down(serial) AS (
             SELECT serial FROM certificates WHERE renewed_from = $3
             UNION
             SELECT c.serial FROM certificates c JOIN down ON c.renewed_from = down.serial)
         UPDATE certificates SET revoked_at = $1, revocation_reason = $2
         WHERE serial IN (SELECT serial FROM down) AND revoked_at IS NULL";
    match (
        row.get::<_, Option<i64>>(0),
        row.get::<_, Option<String>>(1),
    ) {
        (Some(at), Some(was)) => {
            let n = tx
                .execute(renewals, &[&revocation.revoked_at, &reason, &serial])
                .await
                .map_err(pg_err)?;
            if n == 0 {
                return Err(LedgerError::AlreadyRevoked {
                    serial,
                    reason: was.parse().map_err(LedgerError::Corrupt)?,
                    at: pki_common::cert::rfc3339(at),
                });
            }
        }
        _ => {
            tx.execute(
                "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3",
                &[&revocation.revoked_at, &reason, &serial],
            )
            .await
            .map_err(pg_err)?;
            tx.execute(renewals, &[&revocation.revoked_at, &reason, &serial])
                .await
                .map_err(pg_err)?;
        }
    }
    tx.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'revision'",
        &[],
    )
    .await
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}

fn token_from(row: &Row) -> Result<TokenGrant, LedgerError> {
    let names: String = row.get(2);
    let profile: String = row.get(3);
    Ok(TokenGrant {
        id: row.get(0),
        secret_hash: row.get(1),
        names: names_from_json(&names)?,
        profile: profile_from(&profile)?,
        created_at: row.get(4),
        expires_at: row.get(5),
        used_at: row.get(6),
    })
}

/// One statement on a pooled connection.
async fn exec(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, LedgerError> {
    let client = pool.get().await.map_err(pool_err)?;
    client.execute(sql, params).await.map_err(pg_err)
}

async fn counter(pool: &Pool, name: &str) -> Result<u64, LedgerError> {
    let client = pool.get().await.map_err(pool_err)?;
    let row = client
        .query_one(
            "INSERT INTO counters (name, value) VALUES ($1, 1)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
            &[&name],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

impl Ledger for PgLedger {
    fn acme(&self) -> Option<&dyn crate::acme::store::AcmeStore> {
        Some(self)
    }

    fn add_tokens(&self, grants: &[TokenGrant]) -> Result<(), LedgerError> {
        let grants = grants.to_vec();
        self.call(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_err)?;
            let tx = client.transaction().await.map_err(pg_err)?;
            for g in &grants {
                tx.execute(
                    "INSERT INTO tokens (id, secret_hash, names, profile, created_at, expires_at, used_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[&g.id, &g.secret_hash, &names_to_json(&g.names), &g.profile.as_str(), &g.created_at, &g.expires_at, &g.used_at],
                )
                .await
                .map_err(pg_err)?;
            }
            tx.commit().await.map_err(pg_err)
        })
    }

    fn add_token(&self, grant: &TokenGrant) -> Result<(), LedgerError> {
        self.add_tokens(std::slice::from_ref(grant))
    }

    fn token(&self, id: &str) -> Result<Option<TokenGrant>, LedgerError> {
        let id = id.to_string();
        self.call(move |pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            let row = client
                .query_opt(
                    "SELECT id, secret_hash, names, profile, created_at, expires_at, used_at FROM tokens WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(pg_err)?;
            row.as_ref().map(token_from).transpose()
        })
    }

    fn record_issuance(
        &self,
        record: &IssuedRecord,
        token_id: Option<&str>,
    ) -> Result<(), LedgerError> {
        let (record, token_id) = (record.clone(), token_id.map(str::to_owned));
        self.call(move |pool| record_issuance(pool, record, token_id))
    }

    fn certificates(&self) -> Result<Vec<IssuedRecord>, LedgerError> {
        self.call(|pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            select_certs(&client, "TRUE ORDER BY issued_at, seq", &[]).await
        })
    }

    fn certificate(&self, serial: &str) -> Result<Option<IssuedRecord>, LedgerError> {
        let serial = serial.to_string();
        self.call(move |pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            Ok(select_certs(&client, "serial = $1", &[&serial])
                .await?
                .into_iter()
                .next())
        })
    }

    fn renewed_by(&self, serial: &str) -> Result<Option<String>, LedgerError> {
        let serial = serial.to_string();
        self.call(move |pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            let row = client
                .query_opt(
                    "SELECT serial FROM certificates WHERE renewed_from = $1 LIMIT 1",
                    &[&serial],
                )
                .await
                .map_err(pg_err)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn revoke(&self, serial: &str, revocation: Revocation) -> Result<(), LedgerError> {
        let serial = serial.to_string();
        self.call(move |pool| revoke(pool, serial, revocation))
    }

    fn revision(&self) -> Result<i64, LedgerError> {
        self.call(|pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            let row = client
                .query_one("SELECT value FROM counters WHERE name = 'revision'", &[])
                .await
                .map_err(pg_err)?;
            Ok(row.get(0))
        })
    }

    fn next_crl_number(&self) -> Result<u64, LedgerError> {
        self.call(|pool| async move { counter(&pool, "crl_number").await })
    }

    fn next_crl_number_of(&self, issuer: &str) -> Result<u64, LedgerError> {
        let name = format!("crl_number:{issuer}");
        self.call(move |pool| async move { counter(&pool, &name).await })
    }
}

/// A statement parameter, owned, so a call can move it to the ledger's
/// runtime.
pub(crate) type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

/// Boxes statement parameters.
#[macro_export]
#[doc(hidden)]
macro_rules! pg_params {
    ($($p:expr),* $(,)?) => {
        vec![$(Box::new($p) as $crate::ledger::postgres::Param),*]
    };
}

fn refs(params: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as _).collect()
}

/// The raw statements the ACME store and `pki-ca ledger migrate` use.
impl PgLedger {
    /// Runs one statement; answers the number of rows it changed.
    pub(crate) fn execute(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, LedgerError> {
        self.call(move |pool| async move { exec(&pool, sql, &refs(&params)).await })
    }

    /// Runs one query; answers its rows.
    pub(crate) fn rows(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<Row>, LedgerError> {
        self.call(move |pool| async move {
            let client = pool.get().await.map_err(pool_err)?;
            client.query(sql, &refs(&params)).await.map_err(pg_err)
        })
    }

    /// Runs statements in one transaction; each must change at least the
    /// number of rows it is paired with, or the transaction rolls back
    /// with the error `short` makes of the statement's index.
    pub(crate) fn transaction(
        &self,
        statements: Vec<(&'static str, Vec<Param>, u64)>,
        short: fn(usize) -> LedgerError,
    ) -> Result<(), LedgerError> {
        self.call(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_err)?;
            let tx = client.transaction().await.map_err(pg_err)?;
            for (i, (sql, params, at_least)) in statements.iter().enumerate() {
                let changed = match tx.execute(*sql, &refs(params)).await {
                    Err(e) if is_unique_violation(&e) => return Err(LedgerError::KeyInUse),
                    other => other.map_err(pg_err)?,
                };
                if changed < *at_least {
                    return Err(short(i));
                }
            }
            tx.commit().await.map_err(pg_err)
        })
    }
}

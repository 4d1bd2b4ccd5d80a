//! `pki-ca ledger migrate`: moves an SQLite ledger into PostgreSQL, in
//! one transaction, and verifies that every table arrived whole before it
//! commits.

use std::path::Path;

use rusqlite::types::Value;

use super::postgres::{pg_err, Param, PgLedger};
use super::LedgerError;

/// The type of a column, to bind NULLs with the right PostgreSQL type.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Blob,
}
use Kind::*;

/// The tables copied, parents before children, with their columns. ACME
/// nonces are not copied: they live an hour, and clients fetch new ones.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "tokens",
        &[
            ("id", Text),
            ("secret_hash", Blob),
            ("names", Text),
            ("profile", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("used_at", Int),
        ],
    ),
    (
        "certificates",
        &[
            ("serial", Text),
            ("names", Text),
            ("profile", Text),
            ("not_before", Int),
            ("not_after", Int),
            ("token_id", Text),
            ("issued_at", Int),
            ("der", Blob),
            ("revoked_at", Int),
            ("revocation_reason", Text),
            ("renewed_from", Text),
            ("issuer_id", Text),
            ("acme_order", Text),
        ],
    ),
    (
        "intermediates",
        &[
            ("id", Text),
            ("serial", Text),
            ("der", Blob),
            ("not_before", Int),
            ("not_after", Int),
            ("revoked_at", Int),
            ("revocation_reason", Text),
        ],
    ),
    (
        "acme_accounts",
        &[
            ("id", Text),
            ("thumbprint", Text),
            ("jwk", Text),
            ("status", Text),
            ("contact", Text),
            ("created_at", Int),
        ],
    ),
    (
        "acme_orders",
        &[
            ("id", Text),
            ("account_id", Text),
            ("status", Text),
            ("identifiers", Text),
            ("authz_ids", Text),
            ("expires_at", Int),
            ("created_at", Int),
            ("cert_serial", Text),
            ("error", Text),
        ],
    ),
    (
        "acme_authzs",
        &[
            ("id", Text),
            ("order_id", Text),
            ("account_id", Text),
            ("id_type", Text),
            ("id_value", Text),
            ("status", Text),
            ("expires_at", Int),
        ],
    ),
    (
        "acme_challenges",
        &[
            ("id", Text),
            ("authz_id", Text),
            ("type", Text),
            ("token", Text),
            ("status", Text),
            ("validated_at", Int),
            ("error", Text),
        ],
    ),
    (
        "acme_eab",
        &[
            ("kid", Text),
            ("key_hash", Blob),
            ("created_at", Int),
            ("expires_at", Int),
            ("used_at", Int),
            ("account_id", Text),
        ],
    ),
];

/// What was moved: rows per table, and the counters carried over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub tables: Vec<(String, u64)>,
    pub counters: u64,
}

/// One SQLite value as a PostgreSQL parameter of `kind`.
fn param(value: Value, kind: Kind) -> Result<Param, LedgerError> {
    let bad = || {
        LedgerError::Corrupt(format!(
            "a value of type {value:?} where the schema has another"
        ))
    };
    Ok(match (kind, &value) {
        (Int, Value::Integer(i)) => Box::new(Some(*i)),
        (Int, Value::Null) => Box::new(None::<i64>),
        (Text, Value::Text(t)) => Box::new(Some(t.clone())),
        (Text, Value::Null) => Box::new(None::<String>),
        (Blob, Value::Blob(b)) => Box::new(Some(b.clone())),
        (Blob, Value::Null) => Box::new(None::<Vec<u8>>),
        _ => return Err(bad()),
    })
}

type Rows = Vec<Vec<Param>>;
/// Every table's rows, and the counters, as read from SQLite.
type Snapshot = (Vec<(&'static str, Rows)>, Vec<(String, i64)>);

/// Reads every table of the SQLite ledger at `from` (which must be at the
/// current schema: open it with this pki-ca once to migrate it).
fn read_sqlite(from: &Path) -> Result<Snapshot, LedgerError> {
    // Opening through the ledger brings an older file up to date first.
    drop(super::SqliteLedger::open(from)?);
    let conn =
        rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut tables = Vec::new();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let order = if *table == "certificates" {
            " ORDER BY issued_at, rowid"
        } else {
            " ORDER BY rowid"
        };
        let sql = format!("SELECT {} FROM {table}{order}", names.join(", "));
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut out: Rows = Vec::new();
        while let Some(row) = rows.next()? {
            let mut params = Vec::with_capacity(columns.len());
            for (i, (_, kind)) in columns.iter().enumerate() {
                params.push(param(row.get::<_, Value>(i)?, *kind)?);
            }
            out.push(params);
        }
        tables.push((*table, out));
    }
    let mut stmt = conn.prepare("SELECT name, value FROM counters")?;
    let counters = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(String, i64)>, _>>()?;
    Ok((tables, counters))
}

/// Copies the SQLite ledger at `from` into the (empty) PostgreSQL ledger
/// `to`, all or nothing, and checks that each table holds exactly the rows
/// copied before committing.
pub fn migrate_sqlite_to_postgres(
    from: &Path,
    to: &PgLedger,
) -> Result<MigrationReport, LedgerError> {
    let (tables, counters) = read_sqlite(from)?;
    to.call_within(std::time::Duration::from_secs(600), move |pool| async move {
        let mut client = pool.get().await.map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let existing: i64 = tx
            .query_one("SELECT (SELECT COUNT(*) FROM certificates) + (SELECT COUNT(*) FROM tokens)", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        if existing > 0 {
            return Err(LedgerError::Pg(format!(
                "the PostgreSQL ledger already holds {existing} tokens and certificates; migrate into an empty database"
            )));
        }
        let mut report = MigrationReport::default();
        for ((table, rows), (_, columns)) in tables.iter().zip(TABLES) {
            let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
            let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let sql = format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), marks.join(", "));
            let stmt = tx.prepare(&sql).await.map_err(pg_err)?;
            for row in rows {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    row.iter().map(|p| p.as_ref() as _).collect();
                tx.execute(&stmt, &refs).await.map_err(pg_err)?;
            }
            let count: i64 = tx
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .await
                .map_err(pg_err)?
                .get(0);
            if count as usize != rows.len() {
                return Err(LedgerError::Corrupt(format!(
                    "{table}: {} rows read from SQLite, {count} in PostgreSQL; nothing was committed",
                    rows.len()
                )));
            }
            report.tables.push((table.to_string(), count as u64));
        }
        for (name, value) in &counters {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, EXCLUDED.value)",
                &[name, value],
            )
            .await
            .map_err(pg_err)?;
        }
        report.counters = counters.len() as u64;
        tx.commit().await.map_err(pg_err)?;
        Ok(report)
    })
}

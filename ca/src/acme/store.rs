//! Where the ACME state lives: accounts, orders, authorizations,
//! challenges, nonces and external-account keys, in the ledger's
//! database, so that they survive a restart and every CA replica on one
//! database serves the same account.
//!
//! Every rule that two requests could race on is decided by the database
//! in one statement: a nonce is deleted as it is used (`DELETE … WHERE
//! value = ?`, one row or none), an external-account key is consumed with
//! `UPDATE … WHERE used_at IS NULL` in the transaction that creates the
//! account, a challenge moves to `processing` only from `pending`, and an
//! order to `processing` only from `ready`. An order becomes `valid` in
//! the transaction that records its certificate (see
//! [`crate::ledger::Ledger::record_issuance`]).
//!
//! The implementations are with the ledgers: `ledger/sqlite_acme.rs` and
//! `ledger/postgres_acme.rs`.

use super::model::*;
use crate::ledger::LedgerError;

/// The ACME operations the CA needs from storage.
pub trait AcmeStore: Send + Sync {
    fn add_nonce(&self, nonce: &str, expires_at: i64) -> Result<(), LedgerError>;
    /// Removes `nonce` if it is stored and unexpired; answers whether it was.
    fn take_nonce(&self, nonce: &str, now: i64) -> Result<bool, LedgerError>;

    fn add_eab(&self, kid: &str, key_hash: &[u8], expires_at: i64) -> Result<(), LedgerError>;
    /// The hash of the external-account key `kid`, if minted, unused and
    /// unexpired.
    fn eab_hash(&self, kid: &str, now: i64) -> Result<Option<Vec<u8>>, LedgerError>;
    /// Creates the account and, in the same transaction, consumes the
    /// external-account key `eab_kid`: fails with
    /// [`LedgerError::TokenAlreadyUsed`] if another account took it first.
    fn create_account(&self, account: &Account, eab_kid: Option<&str>) -> Result<(), LedgerError>;
    fn account(&self, id: &str) -> Result<Option<Account>, LedgerError>;
    fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<Account>, LedgerError>;
    fn set_account_status(&self, id: &str, status: AccountStatus) -> Result<(), LedgerError>;
    fn set_account_contact(&self, id: &str, contact: &[String]) -> Result<(), LedgerError>;
    /// Replaces the account key; fails with [`LedgerError::KeyInUse`] when
    /// another account holds the new one.
    fn set_account_key(&self, id: &str, jwk: &str, thumbprint: &str) -> Result<(), LedgerError>;

    /// Stores an order with its authorizations and their challenges, all or
    /// none.
    fn create_order(&self, order: &Order, authzs: &[Authz]) -> Result<(), LedgerError>;
    fn order(&self, id: &str) -> Result<Option<Order>, LedgerError>;
    fn orders_of(&self, account_id: &str) -> Result<Vec<String>, LedgerError>;
    fn authz(&self, id: &str) -> Result<Option<Authz>, LedgerError>;
    fn set_authz_status(&self, id: &str, status: AuthzStatus) -> Result<(), LedgerError>;
    fn challenge(&self, id: &str) -> Result<Option<Challenge>, LedgerError>;
    /// Moves a pending challenge to processing; answers whether this call
    /// did (false: another request already started it).
    fn start_challenge(&self, id: &str) -> Result<bool, LedgerError>;
    /// Records a validation's outcome on the challenge and its
    /// authorization, in one transaction.
    fn finish_challenge(
        &self,
        id: &str,
        valid: bool,
        error: Option<&str>,
        now: i64,
        authz_expires_at: i64,
    ) -> Result<(), LedgerError>;
    /// Moves a ready order to processing; answers whether this call did.
    fn start_finalize(&self, order_id: &str) -> Result<bool, LedgerError>;
    fn fail_order(&self, order_id: &str, error: &str) -> Result<(), LedgerError>;

    /// Orders `account_id` created since `since`, and the oldest of them.
    fn orders_since(&self, account_id: &str, since: i64) -> Result<(u32, i64), LedgerError>;
    /// Certificates issued through ACME for `name` since `since`, and the
    /// oldest of them.
    fn acme_certs_since(&self, name: &str, since: i64) -> Result<(u32, i64), LedgerError>;
    /// The account whose order produced the certificate `serial`.
    fn account_of_certificate(&self, serial: &str) -> Result<Option<String>, LedgerError>;
}

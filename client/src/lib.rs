//! # Layout
//!
//! One module per concern; everything public is re-exported here, so the
//! paths other crates use (`pki_client::Connection`, …) do not depend on
//! which file an item lives in.
//!
//! - `config`: [`ClientConfig`], where to connect and what to trust.
//! - `error`: [`ClientError`], every way the client stops.
//! - `trust`: [`ClientTls`], the root, the CRL and the TLS configuration
//!   built from them, and the revocation check before the handshake
//!   ([`revocation::CrlSource`], [`revocation::obtain_crl`],
//!   [`revocation::RecordingVerifier`]).
//! - [`revocation`]: the revocation items under the path they have always
//!   had; they live in `trust`.
//! - `connection`: [`Connection`], one verified TLS 1.3 connection;
//!   [`Connection::connect`] checks the server before step 3,
//!   [`Connection::register`] runs steps 3 to 6, [`Connection::request`]
//!   steps 7 and 8.
//! - `session`: [`request_once`], the whole flow as `pki-client request`
//!   runs it, and [`SessionClient`], which keeps a session across requests.
//! - `enroll`: [`load_identity`], [`enroll_client`], [`renew_client`], the
//!   client's own certificate (phase 1).
//!
//! The command line (`src/main.rs`) only parses flags and calls these.
//!
//! # What the client does
//!
//! `pki-client` runs phases 2 and 3 from the client's side. It verifies the
//! server's certificate against the CA root before it sends a single byte
//! of the application protocol, checks the server's step-4 proof against
//! that same certificate, negotiates a session key, and requests service
//! under it.

mod config;
mod connection;
mod enroll;
mod error;
mod session;
mod trust;

pub use config::ClientConfig;
pub use connection::Connection;
pub use enroll::{enroll_client, load_identity, renew_client};
pub use error::ClientError;
pub use session::{request_once, SessionClient};
pub use trust::ClientTls;

/// Where the client gets the CRL and how it checks it. The items live in
/// `trust`, with the rest of the trust decision; this path stays so that
/// `pki_client::revocation::CrlSource` keeps working.
pub mod revocation {
    pub use crate::trust::{obtain_crl, CrlSource, RecordingVerifier};
}

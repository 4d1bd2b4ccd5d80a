//! `pki-client`: phases 2 and 3 from the client's side, and the client's
//! own certificate.
//!
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
//!   ([`CrlSource`], [`obtain_crl`]).
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
pub mod ticket;
mod trust;

pub use config::{crl_cache_path, ClientConfig};
pub use connection::Connection;
pub use enroll::{enroll_client, load_identity, renew_client};
pub use error::ClientError;
pub use session::{request_once, SessionClient};
pub use trust::{obtain_crl, obtain_crl_for, ClientTls, CrlSource};

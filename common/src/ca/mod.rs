//! The CA as every other party sees it: its API, how to talk to it, how to
//! get and keep a certificate from it, and how to get its CRL.
//!
//! # Layout
//! - [`api`]: the HTTP paths and the JSON error document, shared with the
//!   CA itself so the two sides cannot drift apart.
//! - [`client`]: a small HTTPS client that trusts only the CA root.
//! - [`enroll`]: phase 1 from an enrolling party: make a key locally, send
//!   a CSR with a token, check the answer; renew; and [`enroll::obtain`]:
//!   reuse, else renew, else enroll.
//! - [`crl`]: the current CRL, fetched or read, verified before use.
//! - [`bootstrap`]: the first contact, which fetches the root itself from
//!   the CA given only its SHA-256 fingerprint.

pub mod api;
pub mod bootstrap;
pub mod client;
pub mod crl;
pub mod enroll;

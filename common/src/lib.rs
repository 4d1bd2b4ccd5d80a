//! What two or more parties of the PKI share.
//!
//! The CA, the application server and the client each live in their own
//! crate; anything two of them must agree on lives here, once, so the two
//! sides cannot drift apart.
//!
//! # Layout
//! - [`tls`]: the one crypto provider (ring) and the TLS 1.3-only configs
//!   every listener and every client is built from, plus friendly wording
//!   for certificate-verification failures.
//! - [`files`]: reading and writing PEM files; private keys are PKCS#8 with
//!   mode 0600, and a key readable by others is refused.
//! - [`cert`]: inspecting certificates (names, serial, validity) and
//!   verifying a certificate against the root.
//! - [`api`]: the CA's HTTP API: paths and the JSON error document.
//! - [`https`]: a small HTTPS client that trusts only the CA root, used to
//!   talk to the CA.
//! - [`enroll`]: phase 1 seen from an enrolling party: make a key locally,
//!   send a CSR with a token, check the certificate that comes back.
//! - [`proto`]: the application protocol of phases 2 and 3 (steps 3 to 8):
//!   frames, messages, key schedule, sealing, and the two state machines.
//! - [`revocation`]: revocation reasons, and checking a CRL against the
//!   root and the clock.
//! - [`shutdown`]: the signal that tells listeners to stop accepting.
//! - [`logging`]: `RUST_LOG`-driven narration.

pub mod api;
pub mod cert;
pub mod enroll;
pub mod files;
pub mod https;
pub mod logging;
pub mod proto;
pub mod revocation;
pub mod shutdown;
pub mod tls;

/// Seconds since the Unix epoch. Protocol timestamps and the ledger use it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! What two or more parties of the PKI share.
//!
//! The CA, the application server and the client each live in their own
//! crate; anything two of them must agree on lives here, once, so the two
//! sides cannot drift apart.
//!
//! # Layout
//! - [`tls`]: the one crypto provider (ring) and the TLS 1.3-only configs
//!   every listener and every client is built from, plus friendly wording
//!   for certificate-verification failures; [`tls::verify`] holds the two
//!   custom certificate verifiers side by side.
//! - [`files`]: reading and writing PEM files; private keys are PKCS#8 with
//!   mode 0600, and a key readable by others is refused.
//! - [`cert`]: inspecting certificates (names, serial, validity, when to
//!   renew), the certificate [`cert::Profile`], and verifying a certificate
//!   against the root.
//! - [`ca`]: everything that talks to the CA: its HTTP API, an HTTPS client
//!   that trusts only the root, enrolling and renewing (and
//!   [`ca::enroll::obtain`]: reuse, else renew, else enroll), and fetching
//!   the CRL.
//! - [`revocation`]: revocation reasons, checking a CRL against its issuer
//!   (the root or an intermediate) and the clock, and the verified CRL set
//!   of a two-level CA (one CRL per issuer).
//! - [`proto`]: the application protocol of phases 2 and 3 (steps 3 to 8):
//!   frames, messages, key schedule, sealing, and the two state machines.
//! - [`framed`]: a TLS stream carrying protocol frames, with the frame
//!   limit, read and write deadlines, the exporter and the peer certificate.
//! - [`listener`]: the accept loop both daemons run: connection cap,
//!   back-off on accept errors, graceful drain.
//! - [`shutdown`]: the signal that tells listeners to stop accepting.
//! - [`cli`]: how the three programs report an error: one line, the
//!   hint on its own line, a backtrace only with `PKI_BACKTRACE=1`.
//! - [`inspect`]: a readable summary of a certificate, CSR, CRL or key
//!   file (`pki-ca inspect`), with its trust and revocation status, and the
//!   hierarchy a directory holds (root → intermediate → leaf).
//! - [`logging`]: `RUST_LOG`-driven narration, as text or JSON lines.
//! - [`metrics`]: the `/metrics` and `/health` endpoint both daemons serve
//!   on `--metrics-listen`; each registers its own metrics.
//! - `wire`: one pattern for the enums whose codes travel on the wire.

pub mod ca;
pub mod cert;
pub mod cli;
pub mod files;
pub mod framed;
pub mod inspect;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod proto;
pub mod revocation;
pub mod shutdown;
pub mod tls;
mod wire;

/// Seconds since the Unix epoch. Protocol timestamps and the ledger use it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

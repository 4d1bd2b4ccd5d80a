//! Every way the client can stop, in one enum, so the command line can
//! print a one-line reason and the tests can match on the cause.

use std::time::Duration;

use pki_common::proto::ProtoError;

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    File(#[from] pki_common::files::FileError),
    #[error(transparent)]
    TlsSetup(#[from] pki_common::tls::TlsSetupError),
    #[error("invalid server name {0:?}")]
    BadName(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The server's certificate (or the TLS handshake) was refused; the
    /// rustls error says exactly why.
    #[error("TLS with server {addr} failed: {}", pki_common::tls::describe_tls_error(.source))]
    Tls { addr: String, source: rustls::Error },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("revocation status unknown: {reason}; pass --crl FILE, or --insecure-skip-revocation to go on without the check (insecure)")]
    RevocationUnknown { reason: String },
    #[error("refusing the CRL: {0}")]
    Crl(#[from] pki_common::revocation::CrlError),
    #[error("server certificate revoked (serial {serial}, {})", .reason.map(|r| r.as_str()).unwrap_or("no reason given"))]
    Revoked {
        serial: String,
        reason: Option<pki_common::revocation::Reason>,
    },
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error(transparent)]
    Enroll(#[from] pki_common::ca::enroll::EnrollError),
    #[error("the client certificate cannot be used ({0}); it needs a new token: `pki-ca token --profile client --name …`, then `PKI_TOKEN=… pki-client enroll` (or `--token-file FILE`, mode 0600)")]
    NeedToken(String),
    #[error("no enrollment token: set PKI_TOKEN, or pass --token-file FILE (mode 0600)")]
    NoToken,
    /// No `ca.pem` and no fingerprint to fetch it with.
    #[error("no CA root at {0}: copy the CA's ca.pem there, or fetch it from the CA with --root-fingerprint FP --ca-url URL (FP is what `pki-ca init` printed)")]
    NoRoot(String),
    #[error(transparent)]
    Bootstrap(#[from] pki_common::ca::bootstrap::BootstrapError),
}

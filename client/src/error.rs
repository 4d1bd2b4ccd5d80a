//! Every way the client can stop, in one enum, so the command line can
//! print a one-line reason and the tests can match on the cause.

use std::time::Duration;

use pki_common::proto::ProtoError;

/// The client's name for its root, in hints about the CA connection.
const ROOT: &str = "--ca";

/// The hint for a refused server certificate, in the client's flags.
fn server_tls_hint(err: &rustls::Error) -> &'static str {
    use pki_common::tls::TlsFailure as F;
    match pki_common::tls::classify_tls_error(err) {
        F::UnknownIssuer => "; the server's certificate is from another CA than the root given with --ca: pass that CA's ca.pem with --ca (or --server the right server)",
        F::NameMismatch => "; pass a name the server's certificate carries with --name, or start the server with --name for this one",
        F::Expired => "; the server's certificate has expired: the server must renew it (restart pki-server, with a token if asked)",
        F::NotValidYet => "; check the clocks of this host and the CA",
        F::WrongPurpose => "; the server presents a certificate that is not a server certificate (`pki-ca token --profile server`)",
        _ => "",
    }
}

/// The hint for a failed enrollment or renewal, in the client's flags.
fn enroll_hint(err: &pki_common::ca::enroll::EnrollError) -> String {
    err.hint(ROOT).map(|h| format!("; {h}")).unwrap_or_default()
}

/// The first thing to check when no CRL could be had, if it is known;
/// ends with a separator, as the rest of the hint follows.
fn crl_hint(err: &pki_common::ca::crl::FetchCrlError) -> String {
    use pki_common::ca::crl::FetchCrlError as E;
    match err {
        E::Https(e) => e.hint(ROOT).map(|h| format!("{h}; ")).unwrap_or_default(),
        E::Status(_) => "check --ca-url: it must be the address of `pki-ca serve`; ".into(),
        _ => String::new(),
    }
}

impl ClientError {
    /// The error for key and certificate files the client cannot use,
    /// with the fix that applies: the file's mode, the root, the pair, or
    /// (for the rest) a new token.
    pub fn unusable(why: pki_common::ca::enroll::Unusable) -> Self {
        use pki_common::ca::enroll::Unusable as U;
        match why {
            U::File(e) => ClientError::File(e),
            U::Cert {
                cert,
                source: pki_common::cert::CertError::OtherRoot,
            } => ClientError::OtherRoot { cert },
            why @ (U::KeyMismatch { .. } | U::BadKey { .. }) => {
                ClientError::Mismatched { unusable: why }
            }
            other => ClientError::NeedToken(other.to_string()),
        }
    }
}

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
    #[error("TLS with server {addr} failed: {}{}", pki_common::tls::describe_tls_error(.source), server_tls_hint(.source))]
    Tls { addr: String, source: rustls::Error },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// No CRL could be had: the CA is the usual cause, so its flags come
    /// first; skipping the check is the last resort.
    #[error("revocation status unknown: {source}; {}or pass a current CRL file with --crl FILE (--insecure-skip-revocation goes on without the check: insecure)", crl_hint(.source))]
    RevocationUnknown {
        source: pki_common::ca::crl::FetchCrlError,
    },
    /// The CA gave no CRL and the cached one cannot stand in.
    #[error("revocation status unknown: {source}; {}or pass a current CRL file with --crl FILE (--insecure-skip-revocation goes on without the check: insecure)", crl_hint(&.source.fetch))]
    NoCurrentCrl {
        source: pki_common::ca::crl::NoCurrentCrl,
    },
    #[error("refusing the CRL: {0}")]
    Crl(#[from] pki_common::revocation::CrlError),
    #[error("server certificate revoked (serial {serial}, {})", .reason.map(|r| r.as_str()).unwrap_or("no reason given"))]
    Revoked {
        serial: String,
        reason: Option<pki_common::revocation::Reason>,
    },
    /// The server's certificate itself is not listed, but the
    /// intermediate that issued it is: the root revoked that whole branch.
    #[error("server certificate {serial} was issued by the intermediate {issuer} (serial {issuer_serial}), which the root has revoked ({}); every certificate it issued is refused: the server needs a certificate from the CA's current intermediate (restart pki-server with a new token)", .reason.map(|r| r.as_str()).unwrap_or("no reason given"))]
    IssuerRevoked {
        serial: String,
        issuer: String,
        issuer_serial: String,
        reason: Option<pki_common::revocation::Reason>,
    },
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("{}{}", .0, enroll_hint(.0))]
    Enroll(#[from] pki_common::ca::enroll::EnrollError),
    #[error("the client certificate cannot be used ({0}); it needs a new token: `pki-ca token --profile client --name …`, then `PKI_TOKEN=… pki-client enroll` (or `--token-file FILE`, mode 0600)")]
    NeedToken(String),
    /// The client's certificate is from another CA than `--ca`: either
    /// `--ca` is the wrong file, or the CA's root was replaced.
    #[error("{} was not issued by the CA root given with --ca; pass the root of the CA that issued it with --ca, or, if that CA's root was replaced, enroll again with a new token (`pki-client enroll --force`)", .cert.display())]
    OtherRoot { cert: std::path::PathBuf },
    /// The key and certificate files do not belong together.
    #[error("{unusable}; pass the matching pair with --cert and --key, or enroll again with a new token (`pki-client enroll --force`)")]
    Mismatched {
        unusable: pki_common::ca::enroll::Unusable,
    },
    #[error("no enrollment token; set PKI_TOKEN, or pass --token-file FILE (mode 0600)")]
    NoToken,
    /// No `ca.pem` and no fingerprint to fetch it with.
    #[error("no CA root at {0}: copy the CA's ca.pem there, or fetch it from the CA with --root-fingerprint FP --ca-url URL (FP is what `pki-ca init` printed)")]
    NoRoot(String),
    #[error(transparent)]
    Bootstrap(#[from] pki_common::ca::bootstrap::BootstrapError),
}

//! Every way a step can be refused, and the alert each refusal sends.

use super::frame::Kind;

/// Why a protocol step was refused. Both sides use the same type; a refusal
/// received from the peer arrives as [`ProtoError::PeerAlert`].
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("not a pki-auth frame (bad magic {0:02x?}); is the peer speaking this protocol?")]
    BadMagic([u8; 2]),
    #[error(
        "unsupported protocol version {got} (this side speaks version {})",
        super::VERSION
    )]
    UnsupportedVersion { got: u8 },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    #[error("message out of order: expected {expected}, got {got}")]
    UnexpectedMessage { expected: Kind, got: Kind },
    #[error(
        "{step}: decryption failed (the ciphertext was tampered with or sealed under another key)"
    )]
    DecryptFailed { step: &'static str },
    #[error("{step}: replayed frame (sequence number {got}, expected {expected})")]
    Replayed {
        step: &'static str,
        expected: u64,
        got: u64,
    },
    #[error("{step}: reordered frame (sequence number {got}, expected {expected})")]
    Reordered {
        step: &'static str,
        expected: u64,
        got: u64,
    },
    #[error("{what} timestamp is {delta}s off the local clock (allowed skew ±{skew}s); check the clocks")]
    StaleTimestamp {
        what: &'static str,
        delta: i64,
        skew: u64,
    },
    #[error(
        "step 4: the server's proof signature does not verify with the key in its certificate"
    )]
    BadSignature,
    #[error("step 4: signature scheme {0:#06x} is not acceptable")]
    UnsupportedScheme(u16),
    #[error("step 3: the client expects server {expected:?}, but this server is {actual}")]
    WrongServer { expected: String, actual: String },
    #[error("step 5: invalid client id {0:?}: use 1 to 64 letters, digits, '.', '-', '_' or '@'")]
    InvalidClientId(String),
    #[error("step 5: invalid client address {0:?}: it must be an IP address and port, such as 127.0.0.1:50000 or [::1]:50000")]
    InvalidClientAddr(String),
    #[error("step 5: the client id {claimed:?} is not the identity in the client certificate ({certified})")]
    ClientIdNotCertified { claimed: String, certified: String },
    #[error("step 6: the server granted a session to {got:?}, but we registered as {expected:?}")]
    ClientIdMismatch { expected: String, got: String },
    #[error("the session has expired; register again")]
    SessionExpired,
    #[error("the server is shutting down; try again shortly")]
    ShuttingDown,
    #[error("the session has reached its limit of {max} requests; register again")]
    RequestLimit { max: u64 },
    #[error("unknown session; register again")]
    UnknownSession,
    #[error("step 3R: the session ticket expired at {at}; register again")]
    TicketExpired { at: String },
    #[error("step 3R: the session ticket is sealed under key {key_id}, which this server does not hold (retired by a key rotation, or from another service); register again")]
    UnknownTicketKey { key_id: String },
    #[error("step 3R: the session ticket does not open under its key: it was altered or forged; register again")]
    BadTicket,
    #[error("step 3R: the session ticket was granted by server {ticket_for:?}, but this server is {actual}; register with this server")]
    TicketWrongServer { ticket_for: String, actual: String },
    /// A resumed connection's keys are bound to its own TLS exporter and
    /// nonces, so a request recorded on another connection cannot open.
    #[error("{step}: the request does not open under this connection's keys: it was sealed for another connection (a replay) or altered")]
    NotThisConnection { step: &'static str },
    /// The client certificate a connection or session was authenticated
    /// with is on the CA's current CRL: its sessions have ended.
    #[error("the client certificate {serial} has been revoked: its sessions have ended; enroll a new certificate (`pki-client enroll`) and register again")]
    CertificateRevoked { serial: String },
    #[error("key agreement failed: the peer's X25519 share is not contributory")]
    WeakKeyShare,
    #[error("the sequence number space of this session is exhausted; register again")]
    SequenceExhausted,
    #[error("the server is at capacity ({0}); try again later")]
    Busy(&'static str),
    #[error("cannot sign the proof: {0}")]
    Signing(String),
    #[error("cannot bind to the TLS connection: {0}")]
    Exporter(String),
    /// A primitive failed where its contract says it cannot (HKDF asked for
    /// 32 bytes, AES-GCM sealing a bounded message). Reported rather than
    /// hidden, so a broken build or library cannot silently leave a key
    /// all-zero.
    #[error("internal cryptographic failure: {0}")]
    Crypto(&'static str),
    /// A message could not be serialised (postcard refuses nothing these
    /// plain structs hold, so this points at a bug, not at the peer).
    #[error("cannot encode the {0} message")]
    Encode(&'static str),
    /// The message is the peer's own text: it is shown with control
    /// characters escaped, so it cannot forge log lines.
    #[error("the peer refused: {} [{code}]", super::log_safe(.message))]
    PeerAlert { code: AlertCode, message: String },
    #[error("the peer closed the connection")]
    Closed,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

crate::wire::wire_enum! {
    /// The code carried by an alert frame, so the peer can tell refusals
    /// apart without parsing sentences.
    pub enum AlertCode: u16 {
        BadFrame = 1 => "BadFrame",
        UnsupportedVersion = 2 => "UnsupportedVersion",
        FrameTooLarge = 3 => "FrameTooLarge",
        Malformed = 4 => "Malformed",
        UnexpectedMessage = 5 => "UnexpectedMessage",
        DecryptFailed = 6 => "DecryptFailed",
        Replayed = 7 => "Replayed",
        Reordered = 8 => "Reordered",
        StaleTimestamp = 9 => "StaleTimestamp",
        BadSignature = 10 => "BadSignature",
        WrongServer = 11 => "WrongServer",
        ClientIdMismatch = 12 => "ClientIdMismatch",
        SessionExpired = 13 => "SessionExpired",
        UnknownSession = 14 => "UnknownSession",
        KeyAgreement = 15 => "KeyAgreement",
        Busy = 16 => "Busy",
        Timeout = 17 => "Timeout",
        RequestLimit = 18 => "RequestLimit",
        ShuttingDown = 19 => "ShuttingDown",
        CertificateRevoked = 20 => "CertificateRevoked",
        TicketExpired = 21 => "TicketExpired",
        UnknownTicketKey = 22 => "UnknownTicketKey",
        BadTicket = 23 => "BadTicket",
        TicketWrongServer = 24 => "TicketWrongServer",
        NotThisConnection = 25 => "NotThisConnection",
        Internal = 99 => "Internal",
        ;
        /// A code this side does not know (a newer peer's), kept as a
        /// number so the refusal can still be reported.
        unknown Other => "alert",
    }
}

impl ProtoError {
    /// The alert to send the peer for this refusal, or `None` where there is
    /// nobody left to tell (the peer closed, or the peer refused first).
    pub fn alert_code(&self) -> Option<AlertCode> {
        Some(match self {
            ProtoError::BadMagic(_) | ProtoError::UnknownKind(_) => AlertCode::BadFrame,
            ProtoError::UnsupportedVersion { .. } => AlertCode::UnsupportedVersion,
            ProtoError::FrameTooLarge { .. } => AlertCode::FrameTooLarge,
            ProtoError::Malformed { .. }
            | ProtoError::InvalidClientId(_)
            | ProtoError::InvalidClientAddr(_) => AlertCode::Malformed,
            ProtoError::UnexpectedMessage { .. } => AlertCode::UnexpectedMessage,
            ProtoError::DecryptFailed { .. } => AlertCode::DecryptFailed,
            ProtoError::Replayed { .. } => AlertCode::Replayed,
            ProtoError::Reordered { .. } => AlertCode::Reordered,
            ProtoError::StaleTimestamp { .. } => AlertCode::StaleTimestamp,
            ProtoError::BadSignature | ProtoError::UnsupportedScheme(_) => AlertCode::BadSignature,
            ProtoError::WrongServer { .. } => AlertCode::WrongServer,
            ProtoError::ClientIdMismatch { .. } | ProtoError::ClientIdNotCertified { .. } => {
                AlertCode::ClientIdMismatch
            }
            ProtoError::SessionExpired | ProtoError::SequenceExhausted => AlertCode::SessionExpired,
            ProtoError::UnknownSession => AlertCode::UnknownSession,
            ProtoError::TicketExpired { .. } => AlertCode::TicketExpired,
            ProtoError::UnknownTicketKey { .. } => AlertCode::UnknownTicketKey,
            ProtoError::BadTicket => AlertCode::BadTicket,
            ProtoError::TicketWrongServer { .. } => AlertCode::TicketWrongServer,
            ProtoError::NotThisConnection { .. } => AlertCode::NotThisConnection,
            ProtoError::CertificateRevoked { .. } => AlertCode::CertificateRevoked,
            ProtoError::RequestLimit { .. } => AlertCode::RequestLimit,
            ProtoError::ShuttingDown => AlertCode::ShuttingDown,
            ProtoError::WeakKeyShare => AlertCode::KeyAgreement,
            ProtoError::Busy(_) => AlertCode::Busy,
            ProtoError::Timeout(_) => AlertCode::Timeout,
            ProtoError::Signing(_)
            | ProtoError::Exporter(_)
            | ProtoError::Crypto(_)
            | ProtoError::Encode(_) => AlertCode::Internal,
            ProtoError::PeerAlert { .. } | ProtoError::Closed | ProtoError::Io(_) => return None,
        })
    }
}

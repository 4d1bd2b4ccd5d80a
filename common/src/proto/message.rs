//! One type per protocol step, defined once for both sides.
//!
//! Payloads are encoded with postcard (compact, deterministic serde). The
//! frame header carries the version; these types carry everything else the
//! step table in `docs/protocol.md` lists.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ProtoError;
use super::frame::{Frame, Kind};

/// 16 random bytes naming a session in the server's table.
pub type SessionId = [u8; 16];

/// Step 3, C→S, in the clear (inside TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The server identity the client expects, e.g. `app.pki.test`.
    pub expected_server: String,
    /// The client's fresh X25519 public key.
    pub client_share: [u8; 32],
    pub nonce: [u8; 32],
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
}

/// Step 4, S→C, in the clear, signed with the server's certified key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerProof {
    /// The server's fresh X25519 public key.
    pub server_share: [u8; 32],
    pub nonce: [u8; 32],
    pub timestamp: u64,
    /// The TLS `SignatureScheme` code of `signature`.
    pub scheme: u16,
    pub signature: Vec<u8>,
}

/// The envelope of steps 5, 6 and 8: a sequence number and AES-256-GCM
/// ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub seq: u64,
    pub ciphertext: Vec<u8>,
}

/// The envelope of step 7: as [`Sealed`], plus the session id in the clear
/// so the server can find the session's key, on this connection or a later
/// one. The id is also bound into the AEAD's associated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSealed {
    pub session_id: SessionId,
    pub seq: u64,
    pub ciphertext: Vec<u8>,
}

/// Step 5, C→S, sealed under the registration key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub client_id: String,
    /// The client's address and port as the client sees them.
    pub client_addr: String,
    pub timestamp: u64,
}

/// Step 6, S→C, sealed under the registration key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGranted {
    pub session_id: SessionId,
    pub lifetime_secs: u64,
    /// The client id, echoed back.
    pub client_id: String,
    pub timestamp: u64,
    /// The session ticket ([`super::ticket`]): opaque to the client, which
    /// presents it in step 3R to resume the session on a new connection,
    /// on any server replica sharing the ticket key.
    pub ticket: Vec<u8>,
}

/// Step 3R, C→S, in the clear inside TLS: resumes a session on a new
/// connection, in place of steps 3 to 6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The server identity the client expects, as in step 3.
    pub expected_server: String,
    /// The ticket from step 6, as received.
    pub ticket: Vec<u8>,
    /// Fresh for this connection.
    pub nonce: [u8; 32],
    pub timestamp: u64,
}

/// Step 4R, S→C, in the clear inside TLS: the server's fresh nonce. The
/// request keys of this connection come from the ticket's secret, both
/// nonces and this connection's TLS exporter, so only a server that
/// opened the ticket can answer step 8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    pub session_id: SessionId,
    pub nonce: [u8; 32],
    pub timestamp: u64,
    /// When the session ends (seconds since the Unix epoch).
    pub expires_at: u64,
}

/// Step 7, C→S, sealed under the session key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub name: String,
    pub body: Vec<u8>,
    pub timestamp: u64,
}

/// The outcome of a service request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Ok,
    NotFound,
    BadRequest,
}

/// Step 8, S→C, sealed under the session key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub status: Status,
    pub data: Vec<u8>,
    pub timestamp: u64,
}

/// A refusal; the sender closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub code: u16,
    pub message: String,
}

/// Encodes a message with postcard. An error (which these plain structs
/// cannot cause) is reported rather than sent as an empty payload.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    postcard::to_stdvec(msg).map_err(|_| ProtoError::Encode(std::any::type_name::<T>()))
}

/// Decodes a message, refusing trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, ProtoError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(ProtoError::Malformed { what }),
    }
}

impl Frame {
    /// An alert frame for `err`, if the peer should be told.
    pub fn alert_for(err: &ProtoError) -> Option<Frame> {
        let alert = Alert {
            code: err.alert_code()?.code(),
            message: err.to_string(),
        };
        encode(&alert)
            .ok()
            .map(|payload| Frame::new(Kind::Alert, payload))
    }

    /// Checks that this frame is of kind `expected`. An alert becomes
    /// [`ProtoError::PeerAlert`]; any other kind is out of order.
    pub fn require(&self, expected: Kind) -> Result<&[u8], ProtoError> {
        if self.kind == expected {
            return Ok(&self.payload);
        }
        if self.kind == Kind::Alert {
            let alert: Alert = decode(&self.payload, "alert")?;
            return Err(ProtoError::PeerAlert {
                code: super::AlertCode::from_code(alert.code),
                message: alert.message,
            });
        }
        Err(ProtoError::UnexpectedMessage {
            expected,
            got: self.kind,
        })
    }
}

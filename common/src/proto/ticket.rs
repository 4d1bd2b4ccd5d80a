//! Session tickets (step 6, and resumption in steps 3R and 4R): the
//! server's memory of a session, sealed under a key the server replicas
//! share and carried by the client, as Kerberos carries its service
//! tickets.
//!
//! A ticket is AES-256-GCM under the ticket key whose id it names, so a
//! server opens it without any per-session state, and any replica holding
//! the key opens it alike. It holds who the client is (and the
//! certificate that proved it), when the session ends, which server name
//! it was granted for, and the session's resumption secret, from which
//! each later connection derives its own request keys.
//!
//! The key file (`--ticket-key`, mode 0600) holds the current key, which
//! seals and opens, and optionally the previous one, which only opens, so
//! tickets sealed before a rotation keep working until the previous key is
//! dropped:
//!
//! ```text
//! # pki-server ticket keys: the first seals; both open
//! current 9f2c…(64 hex digits)
//! previous 41d7…(64 hex digits)
//! ```

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::ProtoError;
use super::message::{decode, encode, SessionId};

/// What a ticket holds. Sealed; only a server holding the ticket key reads
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct TicketContents {
    pub session_id: SessionId,
    pub client_id: String,
    /// The serial (lower-case hex) of the client certificate that proved
    /// the client id, if one did.
    pub client_serial: Option<String>,
    /// The serials of that certificate's intermediates: a CRL listing any
    /// of them ends the session too.
    pub issuer_serials: Vec<String>,
    /// The server name the session was granted for (the hello's).
    pub server_name: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    /// The resumption secret both ends derived in step 5.
    pub secret: [u8; 32],
}

impl TicketContents {
    /// Whether a client certificate authenticated the client id.
    pub fn client_authenticated(&self) -> bool {
        self.client_serial.is_some()
    }

    /// The certificate's serial and its intermediates': if a CRL lists any,
    /// the ticket is refused.
    pub fn serials(&self) -> Vec<String> {
        match &self.client_serial {
            Some(leaf) => std::iter::once(leaf.clone())
                .chain(self.issuer_serials.iter().cloned())
                .collect(),
            None => Vec::new(),
        }
    }
}

/// A ticket as it travels: the key id in the clear, so the server knows
/// which key opens it, then a fresh nonce and the ciphertext.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SealedTicket {
    key_id: [u8; 8],
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
}

/// The associated data of every ticket: the format, and the key id.
fn ticket_aad(key_id: &[u8; 8]) -> Vec<u8> {
    [b"pki-auth v1 ticket".as_slice(), key_id].concat()
}

/// One ticket key.
#[derive(Clone)]
pub struct TicketKey {
    id: [u8; 8],
    cipher: Aes256Gcm,
}

impl TicketKey {
    /// The key from its 32 bytes; its id is derived from it, so a file
    /// cannot pair a key with the wrong id.
    pub fn new(key: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"pki-auth v1 ticket key id\0")
            .chain_update(key)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        TicketKey {
            id,
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// The key id, as tickets and logs name the key.
    pub fn id(&self) -> [u8; 8] {
        self.id
    }
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TicketKey({})", hex::encode(self.id))
    }
}

/// Why a ticket key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    #[error("line {line}: {why}; expected `current <64 hex digits>` and optionally `previous <64 hex digits>`")]
    Syntax { line: usize, why: String },
    #[error("no `current` key")]
    NoCurrent,
}

/// The keys a server opens tickets with: the current one (which also
/// seals) and the previous one, if the file still has it.
#[derive(Debug, Clone)]
pub struct TicketKeys {
    pub current: TicketKey,
    pub previous: Option<TicketKey>,
}

fn parse_key(hex_text: &str, line: usize) -> Result<TicketKey, TicketKeyError> {
    let bytes = Zeroizing::new(hex::decode(hex_text).map_err(|_| TicketKeyError::Syntax {
        line,
        why: "the key is not hex".into(),
    })?);
    let key: &[u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| TicketKeyError::Syntax {
            line,
            why: format!("the key is {} bytes, not 32", bytes.len()),
        })?;
    Ok(TicketKey::new(key))
}

impl TicketKeys {
    /// Reads a key file's text.
    pub fn parse(text: &str) -> Result<Self, TicketKeyError> {
        let (mut current, mut previous) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, key) =
                line.split_once(char::is_whitespace)
                    .ok_or_else(|| TicketKeyError::Syntax {
                        line: i + 1,
                        why: "a word and a key".into(),
                    })?;
            let slot = match word {
                "current" => &mut current,
                "previous" => &mut previous,
                other => {
                    return Err(TicketKeyError::Syntax {
                        line: i + 1,
                        why: format!("unknown word {other:?}"),
                    })
                }
            };
            *slot = Some(parse_key(key.trim(), i + 1)?);
        }
        Ok(TicketKeys {
            current: current.ok_or(TicketKeyError::NoCurrent)?,
            previous,
        })
    }

    /// A key file's text with a fresh current key, keeping `previous`
    /// (the hex of the key being retired) if given.
    pub fn generate(previous: Option<&str>) -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        let mut text = Zeroizing::new(String::from(
            "# pki-server ticket keys: the first seals; both open\n",
        ));
        text.push_str(&format!("current {}\n", hex::encode(key.as_ref())));
        if let Some(previous) = previous {
            text.push_str(&format!("previous {previous}\n"));
        }
        text
    }

    /// The hex of the current key in a key file's text, for a rotation.
    pub fn current_hex(text: &str) -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("current"))
            .map(|k| k.trim().to_string())
    }

    /// Seals `contents` under the current key.
    pub fn seal(&self, contents: &TicketContents) -> Result<Vec<u8>, ProtoError> {
        let plain = Zeroizing::new(encode(contents)?);
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let key = &self.current;
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &ticket_aad(&key.id),
                },
            )
            .map_err(|_| ProtoError::Crypto("AES-256-GCM sealing of a ticket failed"))?;
        encode(&SealedTicket {
            key_id: key.id,
            nonce,
            ciphertext,
        })
    }

    /// Opens a ticket: refused if no key this server holds has its id
    /// ([`ProtoError::UnknownTicketKey`]), or if it does not open under that
    /// key ([`ProtoError::BadTicket`]: altered, or forged).
    pub fn open(&self, ticket: &[u8]) -> Result<TicketContents, ProtoError> {
        let sealed: SealedTicket = decode(ticket, "ticket").map_err(|_| ProtoError::BadTicket)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| ProtoError::UnknownTicketKey {
                key_id: hex::encode(sealed.key_id),
            })?;
        let plain = Zeroizing::new(
            key.cipher
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &ticket_aad(&key.id),
                    },
                )
                .map_err(|_| ProtoError::BadTicket)?,
        );
        decode(&plain, "ticket").map_err(|_| ProtoError::BadTicket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents() -> TicketContents {
        TicketContents {
            session_id: [1; 16],
            client_id: "client1.pki.test".into(),
            client_serial: Some("ab".into()),
            issuer_serials: vec!["cd".into()],
            server_name: "app.pki.test".into(),
            expires_at: 100,
            secret: [9; 32],
        }
    }

    #[test]
    fn a_ticket_opens_under_the_current_and_the_previous_key_only() {
        let old = TicketKeys::generate(None);
        let old_keys = TicketKeys::parse(&old).unwrap();
        let ticket = old_keys.seal(&contents()).unwrap();
        let rotated = TicketKeys::generate(TicketKeys::current_hex(&old).as_deref());
        let rotated = TicketKeys::parse(&rotated).unwrap();
        assert_eq!(rotated.open(&ticket).unwrap(), contents());
        let again = TicketKeys::parse(&TicketKeys::generate(None)).unwrap();
        assert!(matches!(
            again.open(&ticket),
            Err(ProtoError::UnknownTicketKey { .. })
        ));
    }

    #[test]
    fn an_altered_ticket_is_refused() {
        let keys = TicketKeys::parse(&TicketKeys::generate(None)).unwrap();
        let mut ticket = keys.seal(&contents()).unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(matches!(keys.open(&ticket), Err(ProtoError::BadTicket)));
        assert!(matches!(keys.open(b"junk"), Err(ProtoError::BadTicket)));
    }

    #[test]
    fn a_key_file_must_have_a_current_key_of_32_bytes() {
        assert!(matches!(
            TicketKeys::parse("# nothing\n"),
            Err(TicketKeyError::NoCurrent)
        ));
        assert!(TicketKeys::parse("current abcd\n").is_err());
        assert!(TicketKeys::parse("next 00\n").is_err());
    }
}

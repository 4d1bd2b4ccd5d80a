//! `--wire`: an opt-in view of what the protocol puts inside TLS, for a
//! learner who wants to see what the original lab's raw bytes tried to
//! show, without ever showing a secret.
//!
//! It shows, for every frame sent or received, its step, kind, length and
//! the first bytes of its ciphertext (or of its payload, for the frames
//! that travel in the clear inside TLS); the prefixes of the TLS exporter
//! value and of the transcript hashes; and one-way fingerprints of the
//! AES-256-GCM keys and of the certified public keys. Keys are never
//! shown: a key appears only as the first 8 bytes of
//! SHA-256("pki-auth v1 key fingerprint\0" || key), from which nothing of
//! the key can be learnt, and which both sides print alike when they hold
//! the same key.
//!
//! What TLS itself puts on the network is another layer: every frame shown
//! here is encrypted again by TLS 1.3 before it leaves the process.

use sha2::{Digest, Sha256};
use tracing::info;

use super::frame::{Frame, Kind};
use super::handshake::KeyFacts;
use super::message::{decode, Sealed, SessionSealed};

/// How many bytes of a ciphertext, payload or hash the view shows.
const SHOWN: usize = 8;

/// Whether `--wire` was given. Copy it into every connection; when it is
/// off, every method does nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireView {
    enabled: bool,
}

/// The first [`SHOWN`] bytes of `bytes` in hex, with an ellipsis when
/// there are more.
fn prefix(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(SHOWN)];
    let more = if bytes.len() > SHOWN { "…" } else { "" };
    format!("{}{more}", hex::encode(shown))
}

impl WireView {
    /// The view `--wire` asks for (`enabled`), or none.
    pub fn new(enabled: bool) -> Self {
        WireView { enabled }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// One frame, `sent` or received, as the protocol hands it to TLS.
    pub fn frame(&self, sent: bool, frame: &Frame) {
        if !self.enabled {
            return;
        }
        let verb = if sent { "sent" } else { "received" };
        info!(
            "wire · {verb} {} (kind {}): 8-byte header + {} bytes; {}; TLS 1.3 encrypts the whole frame again on the network",
            frame.kind.step(),
            frame.kind.code(),
            frame.payload.len(),
            body(frame)
        );
    }

    /// The TLS exporter value of this connection, which step 4 signs and
    /// TH1 hashes.
    pub fn exporter(&self, exporter: &[u8; 32]) {
        if self.enabled {
            info!(
                "wire · TLS exporter E (label EXPORTER-pki-auth-v1, 32 bytes, the same at both ends of this TLS connection): {}",
                prefix(exporter)
            );
        }
    }

    /// A stage of the key schedule: the transcript hash and the
    /// fingerprints of both keys.
    pub fn keys(&self, facts: &KeyFacts) {
        if !self.enabled {
            return;
        }
        info!(
            "wire · {} = {}; this side seals with {} (fingerprint {}) and opens with {} (fingerprint {}); the keys themselves are never shown",
            facts.transcript_name,
            prefix(&facts.transcript),
            facts.send.name,
            hex::encode(facts.send.fingerprint),
            facts.recv.name,
            hex::encode(facts.recv.fingerprint)
        );
    }

    /// A certified public key: `whose` (e.g. `server.key`), the SHA-256 of
    /// its SubjectPublicKeyInfo, as `openssl pkey -pubout -outform DER |
    /// openssl sha256` prints it from the private key file.
    pub fn certified_key(&self, whose: &str, serial: &str, spki_der: &[u8]) {
        if self.enabled {
            info!(
                "wire · {whose}: public key SHA-256 {} (certificate serial {serial}); the private key stays in its file",
                prefix(&Sha256::digest(spki_der))
            );
        }
    }
}

/// What the view shows of a frame's payload: for a sealed frame its
/// sequence number and the first bytes of its ciphertext; for a frame in
/// the clear inside TLS, the first bytes of the payload itself.
fn body(frame: &Frame) -> String {
    match frame.kind {
        Kind::Registration | Kind::SessionGranted | Kind::Response => {
            match decode::<Sealed>(&frame.payload, "sealed") {
                Ok(s) => format!(
                    "seq {}, AES-256-GCM ciphertext and tag ({} bytes): {}",
                    s.seq,
                    s.ciphertext.len(),
                    prefix(&s.ciphertext)
                ),
                Err(_) => format!("not a sealed payload: {}", prefix(&frame.payload)),
            }
        }
        Kind::ServiceRequest => match decode::<SessionSealed>(&frame.payload, "sealed") {
            Ok(s) => format!(
                "session {} (in the clear, to find its keys), seq {}, AES-256-GCM ciphertext and tag ({} bytes): {}",
                hex::encode(&s.session_id[..4]),
                s.seq,
                s.ciphertext.len(),
                prefix(&s.ciphertext)
            ),
            Err(_) => format!("not a sealed payload: {}", prefix(&frame.payload)),
        },
        _ => format!(
            "in the clear inside TLS: {}",
            prefix(&frame.payload)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_shows_at_most_eight_bytes() {
        assert_eq!(prefix(&[1, 2, 3]), "010203");
        assert_eq!(prefix(&[0xab; 32]), "abababababababab…");
    }

    #[test]
    fn a_sealed_frame_shows_its_sequence_and_ciphertext_prefix() {
        let sealed = Sealed {
            seq: 7,
            ciphertext: vec![0xcd; 40],
        };
        let frame = Frame::new(
            Kind::Response,
            super::super::message::encode(&sealed).unwrap(),
        );
        let shown = body(&frame);
        assert!(shown.contains("seq 7"), "{shown}");
        assert!(shown.contains("(40 bytes): cdcdcdcdcdcdcdcd…"), "{shown}");
    }
}

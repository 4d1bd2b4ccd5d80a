//! The key schedule and sealing.
//!
//! Keys: X25519 gives a shared secret; HKDF-SHA256 extracts it with the
//! transcript hash as salt, then expands one key per direction and purpose.
//! Registration keys (steps 5 and 6) are bound to the transcript of steps 3
//! and 4; session keys (steps 7 and 8) to the transcript of steps 3 to 6.
//!
//! Sealing: AES-256-GCM. Each direction has its own key and its own counter,
//! so a nonce never repeats under one key. The associated data binds the
//! frame kind, the direction, the sequence number and a context (the
//! transcript hash while registering, the session id afterwards). A frame
//! whose sequence number is not exactly the next one expected is refused
//! before decryption: lower is a replay, higher is a reordering.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::ProtoError;
use super::frame::Kind;

/// Which way a frame travels. Part of every nonce and associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    ClientToServer = 1,
    ServerToClient = 2,
}

/// The pseudorandom key extracted from the X25519 secret. Zeroized on drop.
pub struct KeySchedule {
    prk: Zeroizing<[u8; 32]>,
}

impl KeySchedule {
    /// HKDF-Extract(salt = transcript hash, ikm = shared secret).
    pub fn extract(shared_secret: &[u8; 32], transcript: &[u8; 32]) -> Self {
        let (prk, _) = Hkdf::<Sha256>::extract(Some(transcript), shared_secret);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&prk);
        KeySchedule { prk: out }
    }

    /// HKDF-Expand(label || context) to a 32-byte key.
    fn expand(&self, label: &str, context: &[u8]) -> Result<Zeroizing<[u8; 32]>, ProtoError> {
        let mut okm = Zeroizing::new([0u8; 32]);
        let info = [label.as_bytes(), context].concat();
        // Both calls are within HKDF's limits (a 32-byte PRK, 32 bytes out);
        // a failure is still an error, never a silently all-zero key.
        Hkdf::<Sha256>::from_prk(self.prk.as_ref())
            .map_err(|_| ProtoError::Crypto("HKDF-SHA256 refused the PRK"))?
            .expand(&info, okm.as_mut())
            .map_err(|_| ProtoError::Crypto("HKDF-SHA256 expand failed"))?;
        Ok(okm)
    }

    /// The session's resumption secret, from which every later connection
    /// that presents the session's ticket derives its own request keys.
    /// Bound to `context`, the transcript of steps 3 to 5, which both
    /// sides know before step 6 (the ticket that carries the secret is
    /// sealed into step 6, so it cannot depend on step 6 itself).
    pub fn resumption_secret(&self, context: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, ProtoError> {
        self.expand("pki-auth v1 resumption", context)
    }

    /// The sealer and opener for one direction pair, under `label`, bound to
    /// `context` (transcript hash or session id).
    pub fn direction_keys(
        &self,
        label: &str,
        transcript: &[u8; 32],
        context: &[u8],
    ) -> Result<(DirectionKey, DirectionKey), ProtoError> {
        let c2s = self.expand(&format!("pki-auth v1 {label} c2s"), transcript)?;
        let s2c = self.expand(&format!("pki-auth v1 {label} s2c"), transcript)?;
        let short = match label {
            "registration" => "reg",
            "resumed" => "res",
            _ => "ses",
        };
        Ok((
            DirectionKey::new(&c2s, Direction::ClientToServer, context)
                .named(format!("K_{short}_c2s")),
            DirectionKey::new(&s2c, Direction::ServerToClient, context)
                .named(format!("K_{short}_s2c")),
        ))
    }
}

/// One direction's key and counter. The sending side calls
/// [`DirectionKey::seal`], the receiving side [`DirectionKey::open`].
pub struct DirectionKey {
    cipher: Aes256Gcm,
    direction: Direction,
    context: Vec<u8>,
    next_seq: u64,
    /// The key's name in `docs/protocol.md` §7 (`K_reg_c2s`, …), so the
    /// narration can say which key sealed a message.
    name: String,
    /// A one-way fingerprint of the key, for `--wire`: both sides print
    /// the same one when they hold the same key, and it reveals nothing
    /// of the key itself.
    fingerprint: [u8; 8],
}

/// The label hashed with a key to fingerprint it; a fingerprint is never
/// a prefix of the key or of any value the protocol uses.
const FINGERPRINT_LABEL: &[u8] = b"pki-auth v1 key fingerprint\0";

/// SHA-256 of the label and `key`, first 8 bytes: enough to tell keys
/// apart in a log, and one-way.
pub fn key_fingerprint(key: &[u8]) -> [u8; 8] {
    use sha2::Digest;
    let digest = Sha256::new()
        .chain_update(FINGERPRINT_LABEL)
        .chain_update(key)
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

impl DirectionKey {
    fn new(key: &[u8; 32], direction: Direction, context: &[u8]) -> Self {
        DirectionKey {
            cipher: Aes256Gcm::new(key.into()),
            direction,
            context: context.to_vec(),
            next_seq: 0,
            name: String::from("K"),
            fingerprint: key_fingerprint(key),
        }
    }

    fn named(mut self, name: String) -> Self {
        self.name = name;
        self
    }

    /// The key's name as `docs/protocol.md` §7 writes it, e.g. `K_ses_c2s`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's fingerprint ([`key_fingerprint`]), never the key.
    pub fn fingerprint(&self) -> [u8; 8] {
        self.fingerprint
    }

    /// The sequence number the next seal or open uses.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[0] = self.direction as u8;
        n[4..].copy_from_slice(&seq.to_be_bytes());
        n
    }

    fn aad(&self, kind: Kind, seq: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.context.len());
        aad.extend_from_slice(b"pki-auth v1");
        aad.push(kind.code());
        aad.push(self.direction as u8);
        aad.extend_from_slice(&seq.to_be_bytes());
        aad.extend_from_slice(&self.context);
        aad
    }

    /// Seals `plaintext` for a frame of `kind`; answers the sequence number
    /// used and the ciphertext.
    pub fn seal(&mut self, kind: Kind, plaintext: &[u8]) -> Result<(u64, Vec<u8>), ProtoError> {
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(ProtoError::SequenceExhausted)?;
        let nonce = self.nonce(seq);
        let aad = self.aad(kind, seq);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| ProtoError::Crypto("AES-256-GCM sealing failed"))?;
        Ok((seq, ct))
    }

    /// Opens a frame of `kind` with sequence number `seq`. The counter only
    /// advances on success, so a forged frame cannot desynchronise it.
    pub fn open(&mut self, kind: Kind, seq: u64, ciphertext: &[u8]) -> Result<Vec<u8>, ProtoError> {
        let step = kind.step();
        if seq < self.next_seq {
            return Err(ProtoError::Replayed {
                step,
                expected: self.next_seq,
                got: seq,
            });
        }
        if seq > self.next_seq {
            return Err(ProtoError::Reordered {
                step,
                expected: self.next_seq,
                got: seq,
            });
        }
        let nonce = self.nonce(seq);
        let aad = self.aad(kind, seq);
        let pt = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| ProtoError::DecryptFailed { step })?;
        self.next_seq = seq.checked_add(1).ok_or(ProtoError::SequenceExhausted)?;
        Ok(pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (DirectionKey, DirectionKey) {
        let ks = KeySchedule::extract(&[7; 32], &[1; 32]);
        let (tx, _) = ks.direction_keys("session", &[2; 32], b"sid").unwrap();
        let (rx, _) = ks.direction_keys("session", &[2; 32], b"sid").unwrap();
        (tx, rx)
    }

    #[test]
    fn seal_open_in_order() {
        let (mut tx, mut rx) = pair();
        for i in 0..3u8 {
            let (seq, ct) = tx.seal(Kind::ServiceRequest, &[i]).unwrap();
            assert_eq!(seq, u64::from(i));
            assert_eq!(rx.open(Kind::ServiceRequest, seq, &ct).unwrap(), vec![i]);
        }
    }

    #[test]
    fn replay_reorder_tamper_and_kind_confusion_are_refused() {
        let (mut tx, mut rx) = pair();
        let (s0, c0) = tx.seal(Kind::ServiceRequest, b"a").unwrap();
        let (s1, c1) = tx.seal(Kind::ServiceRequest, b"b").unwrap();
        assert!(matches!(
            rx.open(Kind::ServiceRequest, s1, &c1),
            Err(ProtoError::Reordered {
                expected: 0,
                got: 1,
                ..
            })
        ));
        let mut bad = c0.clone();
        bad[0] ^= 1;
        assert!(matches!(
            rx.open(Kind::ServiceRequest, s0, &bad),
            Err(ProtoError::DecryptFailed { .. })
        ));
        assert!(matches!(
            rx.open(Kind::Registration, s0, &c0),
            Err(ProtoError::DecryptFailed { .. })
        ));
        rx.open(Kind::ServiceRequest, s0, &c0).unwrap();
        assert!(matches!(
            rx.open(Kind::ServiceRequest, s0, &c0),
            Err(ProtoError::Replayed {
                expected: 1,
                got: 0,
                ..
            })
        ));
    }
}

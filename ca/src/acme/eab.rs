//! External account binding (RFC 8555 §7.3.4): one-time HMAC keys that
//! tie a new ACME account to someone the operator knows.
//!
//! The ledger keeps only a hash of each key, as it does of tokens, so a
//! copy of the database mints no account. A MAC, unlike a token, cannot be
//! checked against a hash, so each key is derived from a master key and
//! its id, HMAC-SHA256(master, id), and re-derived to verify. The master
//! key is a file beside the intermediates' keys (mode 0600), shared by the
//! replicas the same way.

use std::path::PathBuf;

use rand::RngCore;
use ring::hmac;
use sha2::{Digest, Sha256};

use super::jws::{b64, b64e};
use crate::CaPaths;

#[derive(Debug, thiserror::Error)]
pub enum EabError {
    #[error("cannot read the external account master key {path}: {why}")]
    Read { path: String, why: String },
    #[error("cannot write the external account master key {path}: {why}")]
    Write { path: String, why: String },
}

/// The master key the external-account keys are derived from.
pub struct EabMaster {
    key: hmac::Key,
}

fn master_path(paths: &CaPaths) -> PathBuf {
    paths.dir().join("acme-eab.key")
}

impl EabMaster {
    /// The master key in `paths`, if one was ever made.
    pub fn load(paths: &CaPaths) -> Result<Option<Self>, EabError> {
        let path = master_path(paths);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(EabError::Read {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })
            }
        };
        let bytes = b64("the master key", text.trim()).map_err(|e| EabError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(Some(EabMaster {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }))
    }

    /// The master key in `paths`, made (mode 0600) if there is none.
    pub fn load_or_create(paths: &CaPaths) -> Result<Self, EabError> {
        if let Some(master) = Self::load(paths)? {
            return Ok(master);
        }
        let path = master_path(paths);
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        pki_common::files::write_private_key(&path, &format!("{}\n", b64e(&bytes))).map_err(
            |e| EabError::Write {
                path: path.display().to_string(),
                why: e.to_string(),
            },
        )?;
        Ok(EabMaster {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    /// The HMAC key of the external account `kid`.
    pub fn key_of(&self, kid: &str) -> Vec<u8> {
        let mut input = b"pki-ca acme eab v1:".to_vec();
        input.extend_from_slice(kid.as_bytes());
        hmac::sign(&self.key, &input).as_ref().to_vec()
    }
}

/// What the ledger stores of an external-account key.
pub fn key_hash(key: &[u8]) -> Vec<u8> {
    Sha256::digest(key).to_vec()
}

/// A fresh key id.
pub fn new_kid() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("eab-{}", hex::encode(bytes))
}

/// Why `pki-ca eab` could not mint a key.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(transparent)]
    Master(#[from] EabError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("this CA's ledger keeps no ACME state")]
    NoStore,
}

/// Mints a one-time external account key valid for `validity`: its id,
/// and the HMAC key, base64url, to hand to the account holder (certbot's
/// `--eab-kid` and `--eab-hmac-key`). Only the key's hash is stored.
pub fn mint(ca: &crate::Ca, validity: std::time::Duration) -> Result<(String, String), MintError> {
    let store = ca.ledger().acme().ok_or(MintError::NoStore)?;
    let master = EabMaster::load_or_create(ca.paths())?;
    let kid = new_kid();
    let key = master.key_of(&kid);
    let expires_at = (pki_common::unix_now() as i64)
        .saturating_add(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX));
    store.add_eab(&kid, &key_hash(&key), expires_at)?;
    Ok((kid, b64e(&key)))
}

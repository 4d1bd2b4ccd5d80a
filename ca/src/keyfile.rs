//! The root key on disk: PKCS#8 PEM, encrypted with a passphrase when one
//! is given.
//!
//! The encryption is PBES2 (RFC 8018) with PBKDF2-HMAC-SHA256 and
//! AES-256-CBC: what `openssl pkey -passin` reads and what OpenSSL itself
//! writes by default, so the operator can check, back up or move the key
//! with standard tools. The RustCrypto `pkcs8` crate encodes and decodes
//! it; nothing here builds ASN.1 by hand.
//!
//! The passphrase comes from `PKI_ROOT_PASSPHRASE` or from a file
//! (`--root-passphrase-file`) that only its owner may read, never from the
//! command line, where every local user could read it (`ps`).

use std::path::{Path, PathBuf};

use pkcs8::der::pem::LineEnding;
use pkcs8::der::{Decode, SecretDocument};
use pkcs8::{pkcs5::pbes2, EncryptedPrivateKeyInfo, PrivateKeyInfo};
use rand::RngCore;
use rcgen::KeyPair;
use zeroize::Zeroizing;

/// PBKDF2 rounds: OWASP's 2023 figure for PBKDF2-HMAC-SHA256. The key is
/// decrypted once per root operation (rarely), so the cost is paid rarely.
const PBKDF2_ROUNDS: u32 = 600_000;

/// The environment variable holding the root key's passphrase.
pub const PASSPHRASE_ENV: &str = "PKI_ROOT_PASSPHRASE";

const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// Errors reading or writing the root key or its passphrase.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the passphrase file is accessible to group or others (mode {mode:o}); run `chmod 600 {path}`")]
    PassphraseFileTooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: the passphrase file is empty")]
    EmptyPassphrase { path: PathBuf },
    #[error("{path} is encrypted; give its passphrase in {PASSPHRASE_ENV} or with --root-passphrase-file FILE")]
    PassphraseNeeded { path: PathBuf },
    #[error(
        "{path}: cannot decrypt the root key: the passphrase is wrong, or the file is damaged"
    )]
    WrongPassphrase { path: PathBuf },
    #[error("{path}: not a PKCS#8 private key in PEM ({reason})")]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot encrypt the root key: {0}")]
    Encrypt(String),
}

/// A passphrase, wiped from memory when dropped.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// The passphrase from `file` (if given; it must be private to its
    /// owner, and its trailing newline is dropped), else from
    /// [`PASSPHRASE_ENV`]; `None` if neither is given.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Option<Self>, KeyFileError> {
        if let Some(path) = file {
            return Self::from_file(path).map(Some);
        }
        Ok(std::env::var(PASSPHRASE_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| Passphrase(Zeroizing::new(p))))
    }

    fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::PassphraseFileTooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let line = text.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Err(KeyFileError::EmptyPassphrase {
                path: path.to_path_buf(),
            });
        }
        Ok(Passphrase(Zeroizing::new(line.to_string())))
    }

    /// A passphrase given directly (tests, embedding programs).
    pub fn new(text: &str) -> Self {
        Passphrase(Zeroizing::new(text.to_string()))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// `key` as PEM: encrypted PKCS#8 under `passphrase` if one is given,
/// plain PKCS#8 otherwise.
pub fn encode_key(
    key: &KeyPair,
    passphrase: Option<&Passphrase>,
) -> Result<Zeroizing<String>, KeyFileError> {
    let Some(passphrase) = passphrase else {
        return Ok(Zeroizing::new(key.serialize_pem()));
    };
    let der = Zeroizing::new(key.serialize_der());
    let info = PrivateKeyInfo::from_der(&der).map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut iv);
    let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ROUNDS, &salt, &iv)
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    let encrypted = info
        .encrypt_with_params(params, passphrase.bytes())
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    encrypted
        .to_pem(ENCRYPTED_LABEL, LineEnding::LF)
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))
}

/// Whether the PEM text `pem` holds an encrypted key.
pub fn is_encrypted(pem: &str) -> bool {
    pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
}

/// The key in `pem` (read from `path`, which errors name), decrypted with
/// `passphrase` if it is encrypted.
pub fn decode_key(
    path: &Path,
    pem: &str,
    passphrase: Option<&Passphrase>,
) -> Result<KeyPair, KeyFileError> {
    let unreadable = |reason: String| KeyFileError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    if !is_encrypted(pem) {
        return KeyPair::from_pem(pem).map_err(|e| unreadable(e.to_string()));
    }
    let passphrase = passphrase.ok_or_else(|| KeyFileError::PassphraseNeeded {
        path: path.to_path_buf(),
    })?;
    let (label, doc) = SecretDocument::from_pem(pem).map_err(|e| unreadable(e.to_string()))?;
    if label != ENCRYPTED_LABEL {
        return Err(unreadable(format!("unexpected PEM label {label:?}")));
    }
    let info =
        EncryptedPrivateKeyInfo::from_der(doc.as_bytes()).map_err(|e| unreadable(e.to_string()))?;
    let plain = info
        .decrypt(passphrase.bytes())
        .map_err(|_| KeyFileError::WrongPassphrase {
            path: path.to_path_buf(),
        })?;
    KeyPair::try_from(plain.as_bytes()).map_err(|_| KeyFileError::WrongPassphrase {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_key_decrypts_only_with_its_passphrase() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pass = Passphrase::new("correct horse");
        let pem = encode_key(&key, Some(&pass)).unwrap();
        assert!(is_encrypted(&pem));
        let path = Path::new("root.key");
        let back = decode_key(path, &pem, Some(&pass)).unwrap();
        assert_eq!(back.serialize_der(), key.serialize_der());
        assert!(matches!(
            decode_key(path, &pem, Some(&Passphrase::new("wrong"))),
            Err(KeyFileError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            decode_key(path, &pem, None),
            Err(KeyFileError::PassphraseNeeded { .. })
        ));
        let plain = encode_key(&key, None).unwrap();
        assert!(!is_encrypted(&plain));
        assert_eq!(
            decode_key(path, &plain, None).unwrap().serialize_der(),
            key.serialize_der()
        );
    }
}

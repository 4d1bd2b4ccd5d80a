//! Where the CA keeps its files.
//!
//! Every file name lives here, so that `init`, `serve`, `revoke` and the
//! tests — which may run in different processes against one directory —
//! cannot disagree about them.

use std::path::{Path, PathBuf};

/// Where the CA keeps its files.
#[derive(Debug, Clone)]
pub struct CaPaths {
    dir: PathBuf,
}

impl CaPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CaPaths { dir: dir.into() }
    }
    /// The directory itself, as given (`--dir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The root certificate, distributed to every party out of band.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The root key: PKCS#8 PEM, mode 0600, never leaves the CA.
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The ledger database.
    pub fn ledger(&self) -> PathBuf {
        self.dir.join("ca-ledger.sqlite")
    }
    /// The current CRL, PEM, rewritten whenever a new CRL is signed.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("ca.crl.pem")
    }
    /// The names the CA's endpoint has presented, reserved for it: written
    /// by `pki-ca serve`, read by every `pki-ca` command (see `reserved`).
    pub fn endpoint_names(&self) -> PathBuf {
        self.dir.join("ca-endpoint-names.txt")
    }
}

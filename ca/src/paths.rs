//! Where the CA keeps its files.
//!
//! Every file name lives here, so that `init`, `serve`, `revoke` and the
//! tests — which may run in different processes against one directory —
//! cannot disagree about them.
//!
//! Two directories: `--dir`, the ONLINE CA's (the root certificate, the
//! intermediates with their keys, the ledger, the CRLs), and `--root-dir`,
//! where the ROOT KEY lives (by default the same directory; in a real
//! deployment another machine, or removable storage). Nothing the online
//! CA runs reads the root directory.

use std::path::{Path, PathBuf};

/// Where the CA keeps its files.
#[derive(Debug, Clone)]
pub struct CaPaths {
    dir: PathBuf,
    root_dir: PathBuf,
}

impl CaPaths {
    /// The CA in `dir`, with its root key in the same directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        CaPaths {
            root_dir: dir.clone(),
            dir,
        }
    }
    /// The same CA with its root key in `root_dir` (`--root-dir`).
    pub fn with_root_dir(mut self, root_dir: impl Into<PathBuf>) -> Self {
        self.root_dir = root_dir.into();
        self
    }
    /// The directory itself, as given (`--dir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Where the root key lives (`--root-dir`).
    pub fn root_dir(&self) -> &Path {
        &self.root_dir
    }
    /// The root certificate, distributed to every party out of band.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The root key: PKCS#8 PEM, mode 0600, encrypted when a passphrase
    /// was given. Only the commands that sign with the root read it
    /// (`init`, `intermediate`, `revoke --intermediate`, `root-crl`).
    pub fn root_key(&self) -> PathBuf {
        self.root_dir.join("root.key")
    }
    /// The root key of a CA made before the hierarchy (issue 13), which
    /// signed every leaf: read in place of [`root_key`](Self::root_key)
    /// when that is absent, so such a CA can issue its first intermediate.
    pub fn legacy_root_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The counter of the root's CRL numbers, kept with the root key.
    pub fn root_crl_number(&self) -> PathBuf {
        self.root_dir.join("root-crl.number")
    }
    /// The root's CRL (revoked intermediates), PEM: signed where the root
    /// key is, published by the online CA.
    pub fn root_crl(&self) -> PathBuf {
        self.dir.join("root.crl.pem")
    }
    /// The directory of the issuing intermediates.
    pub fn intermediates(&self) -> PathBuf {
        self.dir.join("intermediates")
    }
    /// An intermediate's certificate, PEM.
    pub fn intermediate_cert(&self, id: &str) -> PathBuf {
        self.intermediates().join(format!("{id}.pem"))
    }
    /// An intermediate's key: PKCS#8 PEM, mode 0600, unencrypted (the
    /// online CA signs with it unattended).
    pub fn intermediate_key(&self, id: &str) -> PathBuf {
        self.intermediates().join(format!("{id}.key"))
    }
    /// The ledger database.
    pub fn ledger(&self) -> PathBuf {
        self.dir.join("ca-ledger.sqlite")
    }
    /// The CURRENT intermediate's CRL, PEM, rewritten whenever a new CRL
    /// is signed.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("ca.crl.pem")
    }
    /// The names the CA's endpoint has presented, reserved for it: written
    /// by `pki-ca serve`, read by every `pki-ca` command (see `reserved`).
    pub fn endpoint_names(&self) -> PathBuf {
        self.dir.join("ca-endpoint-names.txt")
    }
}

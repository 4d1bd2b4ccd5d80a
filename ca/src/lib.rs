//! `pki-ca`: an online certificate authority.
//!
//! It keeps a root, mints one-time enrollment tokens, issues X.509
//! certificates from CSRs over HTTPS to token holders, renews them for
//! their holders, revokes them, and records everything it issues.
//!
//! # Layout
//! One home for every concern. The modules with public items of their own
//! are public; the others only add methods to [`Ca`] or hold types that
//! are re-exported here, so their paths are not part of the API.
//! - `paths`: where the CA keeps its files ([`CaPaths`]).
//! - `error`: [`CaError`] for the operator, [`SignError`] (with its stable
//!   codes) for network callers.
//! - [`token`]: the enrollment token format: parsing, hashing, and checking
//!   a presented token against its grant. No storage, so it can be fuzzed.
//! - `authorize`: who may get a certificate: minting tokens
//!   ([`Ca::mint_tokens`]; the grant side of a token, so it sits with
//!   redemption rather than in [`token`]), redeeming them
//!   (`authorize_enrollment`), and every ledger rule for renewal
//!   (`authorize_renewal`).
//! - [`policy`]: what may be issued: CSR verification, accepted keys,
//!   authorized names, validity. No HTTP here, no signing.
//! - [`reserved`]: the names the CA's own endpoint answers to, which are
//!   never minted or issued to anyone else.
//! - [`authority`]: the hierarchy's certificates (the root's, with no key;
//!   the intermediates', with theirs) and the signing of the certificates
//!   the policy decided, and of CRLs.
//! - [`root`]: what is done with the root key, where it is: creating the
//!   hierarchy, issuing intermediates, signing the root CRL. The online CA
//!   never reads the root key.
//! - `keyfile`: the root key on disk, encrypted PKCS#8.
//! - `hierarchy`: which intermediates the CA holds, which one issues now,
//!   and the root CRL it publishes.
//! - `issue`: enrollment ([`Ca::sign`]), renewal ([`Ca::renew`]) and the
//!   CA's own TLS certificate ([`Ca::issue_service_certificate`]), all
//!   through one decide–lint–sign–record path.
//! - `crl`: revocation ([`Ca::revoke`]) and the CRLs ([`Crl`]), one per
//!   intermediate: signing, publishing, refreshing.
//! - [`lint`]: pre-issuance linting: every leaf is signed with a
//!   throwaway key and checked against the profile before the real key
//!   signs it.
//! - [`ledger`]: the record of every token and certificate (SQLite).
//! - [`metrics`]: what `pki-ca serve --metrics-listen` exposes.
//! - [`extensions`]: where any relying party finds revocation: the CRL
//!   Distribution Points and AIA caIssuers put into issued certificates.
//! - [`publish`]: the plain-HTTP listener those extensions point at
//!   (`/crl/<issuer>.crl`, `/issuer/<issuer>.crt`), serving what a
//!   [`publish::PublicSource`] hands it.
//! - [`http`]: the HTTPS API; it maps requests to [`Ca`] calls and errors
//!   to JSON problem documents, and decides nothing itself.
//! - [`serve`]: the TLS 1.3 listener: the CA's own certificate, and
//!   HTTP/1.1 over each connection. The accept loop, connection cap and
//!   drain are `pki_common::listener`'s; the TLS client-certificate check,
//!   the handshake half of renewal authorization (chain, validity, EKU), is
//!   `pki_common::tls::verify::RenewalClientVerifier`.
//! - `stall`: the bound on a write the peer does not read.
//! - `tasks`: the serving CA's background loops: replacing its own TLS
//!   certificate, keeping the CRL current.
//!
//! [`Ca`] ties them together. A request meets them in this order: the
//! listener and the API, then authorization, then policy, then the
//! authority, then the ledger.

pub mod acme;
pub mod authority;
mod authorize;
mod crl;
mod error;
pub mod extensions;
mod hierarchy;
pub mod http;
mod issue;
pub mod keyfile;
pub mod ledger;
pub mod lint;
pub mod metrics;
mod paths;
pub mod policy;
pub mod publish;
pub mod reserved;
pub mod root;
pub mod serve;
mod stall;
mod tasks;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use authority::RootAuthority;
use ledger::{Ledger, SqliteLedger};
use policy::IssuancePolicy;
use reserved::ReservedNames;

pub use crl::Crl;
pub use error::{CaError, SignError};
pub use paths::CaPaths;

/// The certificate authority: root certificate, intermediates, policy and
/// ledger together.
///
/// Its operations are spread over the modules by concern (see the crate
/// doc); this file holds only its state and how it is opened.
pub struct Ca {
    paths: CaPaths,
    root: RootAuthority,
    /// The intermediates and the root CRL; replaced on a reload.
    held: RwLock<hierarchy::Held>,
    policy: IssuancePolicy,
    ledger: Arc<dyn Ledger>,
    /// Where certificates say their CRL and issuer are published
    /// (`--public-url`); `None` leaves those extensions out.
    public_url: Option<String>,
    /// The CRL currently served for each intermediate (by id); each is
    /// replaced whole, never edited.
    crls: RwLock<HashMap<String, Arc<Crl>>>,
    /// The names the CA's own endpoint answers to, never issued to others.
    reserved: RwLock<ReservedNames>,
    /// The issuer and number of the CRL last written to `ca.crl.pem`
    /// (`None`: none yet), so that a file left behind by a failed write is
    /// written again.
    crl_written: Mutex<Option<(String, u64)>>,
    /// Pre-issuance linting: its failure counter (and, in tests, a fault).
    linting: lint::Linting,
}

impl Ca {
    /// Opens the CA in `paths` (the root certificate must exist) with its
    /// SQLite ledger. The root KEY is not read: the online CA signs with
    /// its intermediates only.
    ///
    /// The root is loaded before the ledger is opened, which creates it
    /// (and its directory): a mistyped `--dir` then fails with "no CA
    /// root" and leaves nothing behind.
    pub fn open(paths: &CaPaths, policy: IssuancePolicy) -> Result<Self, CaError> {
        let root = RootAuthority::load(paths)?;
        let ledger = Arc::new(SqliteLedger::open(&paths.ledger())?);
        Self::assemble(paths, policy, ledger, root)
    }

    /// Opens the CA in `paths` with the ledger at `url`: `None` for the
    /// SQLite file in `paths`, or a `postgres://` URL (see
    /// [`ledger::open`]). The root is loaded first, as in [`Ca::open`].
    pub fn open_with_url(
        paths: &CaPaths,
        policy: IssuancePolicy,
        url: Option<&str>,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, CaError> {
        let root = RootAuthority::load(paths)?;
        let ledger = ledger::open(&paths.ledger(), url, tls)?;
        Self::assemble(paths, policy, ledger, root)
    }

    /// Opens the CA with another ledger implementation (a networked store,
    /// or a failing one in tests).
    pub fn with_ledger(
        paths: &CaPaths,
        policy: IssuancePolicy,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Self, CaError> {
        let root = RootAuthority::load(paths)?;
        Self::assemble(paths, policy, ledger, root)
    }

    fn assemble(
        paths: &CaPaths,
        policy: IssuancePolicy,
        ledger: Arc<dyn Ledger>,
        root: RootAuthority,
    ) -> Result<Self, CaError> {
        let reserved = ReservedNames::load(&paths.endpoint_names())?;
        let held = hierarchy::Held::load(paths, &root);
        let ca = Ca {
            paths: paths.clone(),
            root,
            held: RwLock::new(held),
            policy,
            ledger,
            public_url: None,
            crls: RwLock::new(HashMap::new()),
            reserved: RwLock::new(reserved),
            crl_written: Mutex::new(None),
            linting: lint::Linting::default(),
        };
        // Announces the current issuer (or the lack of one).
        ca.reload_hierarchy();
        Ok(ca)
    }

    /// Puts CRL Distribution Points and AIA caIssuers under `url` into
    /// every certificate issued from now on (`--public-url`).
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url;
        self
    }

    /// The base URL certificates point at for revocation, if any.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// The root certificate, PEM, as `GET /v1/root` serves it.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The root: its certificate (`cert`, the trust anchor every party
    /// verifies against) and its parsed details (`info`). The root key is
    /// not here: it stays where `pki-ca init` put it (`--root-dir`).
    pub fn root(&self) -> &RootAuthority {
        &self.root
    }

    /// Where the CA keeps its files.
    pub fn paths(&self) -> &CaPaths {
        &self.paths
    }

    /// The ledger, for reading records (`pki-ca list`, tests).
    pub fn ledger(&self) -> &dyn Ledger {
        self.ledger.as_ref()
    }
}

/// What the plain-HTTP publication listener serves: the CRL and the
/// certificate of each issuer the CA holds, by id (`root`, or an
/// intermediate's id).
impl publish::PublicSource for Ca {
    fn crl_der(&self, id: &str) -> Option<Vec<u8>> {
        self.crl_der_of(id)
    }

    fn issuer_der(&self, id: &str) -> Option<Vec<u8>> {
        self.issuer_cert_der(id)
    }
}

//! The hierarchy the online CA holds: the intermediates in
//! `intermediates/`, which of them issues now, and the root CRL it
//! publishes.
//!
//! The CURRENT issuer is the intermediate valid now, not listed on the
//! root CRL, with the latest notBefore. Older ones stay held while their
//! leaves live: they keep signing those leaves' CRLs, so both chains
//! verify during a rollover. A new intermediate, issued where the root key
//! is (`pki-ca intermediate`), and a new root CRL are picked up by
//! [`Ca::reload_hierarchy`], which the serving CA polls with its CRL (see
//! [`tasks`](crate::tasks)): no restart is needed.

use std::collections::HashSet;
use std::sync::Arc;

use pki_common::revocation::{verify_crl, VerifiedCrl};
use tracing::{info, warn};

use crate::authority::{AuthorityError, Intermediate, RootAuthority, ROOT_ID};
use crate::{Ca, CaPaths};

/// What the CA holds of the hierarchy; replaced whole on a reload.
#[derive(Default)]
pub(crate) struct Held {
    /// Every intermediate loaded from `intermediates/`, oldest first.
    pub intermediates: Vec<Arc<Intermediate>>,
    /// The root CRL from `root.crl.pem`, verified against the root.
    pub root_crl: Option<VerifiedCrl>,
    /// Ids that failed to load, so each is warned about once.
    pub broken: HashSet<String>,
    /// The id of the issuer last announced, to log a change once.
    pub announced: Option<String>,
}

impl Held {
    /// Loads every intermediate and the root CRL in `paths`.
    pub fn load(paths: &CaPaths, root: &RootAuthority) -> Self {
        let mut held = Held::default();
        held.reload(paths, root);
        held
    }

    /// Adds the intermediates not held yet and takes a newer root CRL;
    /// answers whether anything changed.
    pub fn reload(&mut self, paths: &CaPaths, root: &RootAuthority) -> bool {
        let mut changed = false;
        for id in crate::root::intermediate_ids(paths) {
            if self.intermediates.iter().any(|i| i.id == id) || self.broken.contains(&id) {
                continue;
            }
            match Intermediate::load(paths, &id, root) {
                Ok(i) => {
                    self.intermediates.push(Arc::new(i));
                    changed = true;
                }
                Err(e) => {
                    warn!("skipping intermediate {id}: {e}");
                    self.broken.insert(id);
                }
            }
        }
        self.intermediates
            .sort_by_key(|i| (i.info.not_before, i.id.clone()));
        changed | self.reload_root_crl(paths, root)
    }

    /// Takes `root.crl.pem` if it is the root's and newer than the one
    /// held (a CRL is never rolled back: it would un-revoke intermediates).
    fn reload_root_crl(&mut self, paths: &CaPaths, root: &RootAuthority) -> bool {
        let Ok(bytes) = std::fs::read(paths.root_crl()) else {
            return false;
        };
        let verified = pki_common::revocation::crl_from_pem_or_der(&bytes)
            // Time 0: the signature only; an expired root CRL is still the
            // best list of revoked intermediates there is.
            .and_then(|der| verify_crl(der, &root.cert, 0));
        let crl = match verified {
            Ok(crl) => crl,
            Err(e) => {
                if self.root_crl.is_none() {
                    warn!("{} is not used: {e}", paths.root_crl().display());
                }
                return false;
            }
        };
        if self
            .root_crl
            .as_ref()
            .is_some_and(|h| h.number >= crl.number)
        {
            return false;
        }
        if crl.next_update <= pki_common::unix_now() as i64 {
            warn!(
                "the root CRL #{} in {} expired at {}: parties refuse every certificate until it is re-signed where the root key is (`pki-ca root-crl`)",
                crl.number,
                paths.root_crl().display(),
                pki_common::cert::rfc3339(crl.next_update)
            );
        }
        self.root_crl = Some(crl);
        true
    }

    /// Whether the root CRL lists `intermediate`.
    pub fn is_revoked(&self, intermediate: &Intermediate) -> bool {
        self.root_crl
            .as_ref()
            .is_some_and(|c| c.revocation_of(&intermediate.info.serial_hex).is_some())
    }

    /// The current issuer at `now` (see the module doc).
    pub fn current(&self, now: i64) -> Option<Arc<Intermediate>> {
        self.intermediates
            .iter()
            .filter(|i| i.info.not_before <= now && now < i.info.not_after)
            .filter(|i| !self.is_revoked(i))
            .max_by_key(|i| i.info.not_before)
            .cloned()
    }
}

impl Ca {
    /// The intermediate that signs new certificates now.
    pub fn current_issuer(&self) -> Result<Arc<Intermediate>, AuthorityError> {
        let now = pki_common::unix_now() as i64;
        self.held().current(now).ok_or_else(|| {
            let dir = self.paths.dir().display().to_string();
            AuthorityError::NoIntermediate {
                dir: self.paths.intermediates().display().to_string(),
                dir_arg: dir,
            }
        })
    }

    /// Every intermediate the CA holds, oldest first (expired and revoked
    /// ones included).
    pub fn intermediates(&self) -> Vec<Arc<Intermediate>> {
        self.held().intermediates.clone()
    }

    /// The intermediates that are not expired, as `GET /v1/intermediates`
    /// serves them.
    pub fn live_intermediates(&self) -> Vec<Arc<Intermediate>> {
        let now = pki_common::unix_now() as i64;
        self.intermediates()
            .into_iter()
            .filter(|i| now < i.info.not_after)
            .collect()
    }

    /// The root CRL the CA publishes, if `root.crl.pem` holds one.
    pub fn root_crl(&self) -> Option<VerifiedCrl> {
        self.held().root_crl.clone()
    }

    /// Whether the root CRL lists the intermediate `id`.
    pub fn is_intermediate_revoked(&self, id: &str) -> bool {
        let held = self.held();
        held.intermediates
            .iter()
            .any(|i| i.id == id && held.is_revoked(i))
    }

    /// The current CRL of the issuer `id` (an intermediate id, or `root`),
    /// DER.
    pub fn crl_der_of(&self, id: &str) -> Option<Vec<u8>> {
        if id == ROOT_ID {
            return self.root_crl().map(|c| c.der.as_ref().to_vec());
        }
        self.crl_of(id).map(|c| c.der.as_ref().to_vec())
    }

    /// The certificate of the issuer `id` (an intermediate id, or `root`),
    /// DER.
    pub fn issuer_cert_der(&self, id: &str) -> Option<Vec<u8>> {
        if id == ROOT_ID {
            return Some(self.root.cert.as_ref().to_vec());
        }
        self.held()
            .intermediates
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.cert.as_ref().to_vec())
    }

    /// The intermediate `id`, if held.
    pub(crate) fn intermediate(&self, id: &str) -> Option<Arc<Intermediate>> {
        self.held()
            .intermediates
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// Picks up intermediates issued and root CRLs signed since the CA
    /// opened (where the root key is, perhaps by another process), and
    /// says when the current issuer changes. Answers whether anything
    /// changed.
    pub fn reload_hierarchy(&self) -> bool {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        let changed = held.reload(&self.paths, &self.root);
        let now = pki_common::unix_now() as i64;
        let current = held.current(now).map(|i| i.id.clone());
        if current != held.announced {
            match &current {
                Some(id) => info!(
                    "issuing under intermediate {id} (root key offline: the CA holds {} only)",
                    self.paths.intermediate_key(id).display()
                ),
                None => warn!(
                    "no usable intermediate in {}: nothing can be issued until one is issued where the root key is (`pki-ca intermediate`)",
                    self.paths.intermediates().display()
                ),
            }
            held.announced = current;
        }
        changed
    }

    pub(crate) fn held(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(|p| p.into_inner())
    }
}

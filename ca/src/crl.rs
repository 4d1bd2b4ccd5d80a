//! Revocation and the CRLs.
//!
//! The ledger is the only source of truth: [`Ca::revoke`] commits there and
//! nowhere else, so `pki-ca revoke` works from another process and whether
//! or not the CA is serving. A serving CA notices the ledger's new revision
//! in [`Ca::refresh_crl`] (polled by [`tasks`](crate::tasks)) and publishes
//! new CRLs. A CRL is replaced whole, never edited, so readers never see
//! one half-built.
//!
//! Each intermediate signs the CRL of the leaves it issued, numbered from
//! its own counter; the current intermediate's is also `ca.crl.pem` and
//! `GET /v1/crl`. The root's CRL (revoked intermediates) is signed where
//! the root key is ([`root`](crate::root)); the CA only publishes it.

use std::sync::Arc;
use std::time::Duration;

use pki_common::revocation::Reason;
use rustls::pki_types::CertificateRevocationListDer;
use tracing::{info, warn};

use crate::authority::Intermediate;
use crate::ledger::Revocation;
use crate::{Ca, CaError};

/// A signed CRL and what it was made from.
#[derive(Debug)]
pub struct Crl {
    /// The id of the intermediate that signed it.
    pub issuer_id: String,
    pub der: CertificateRevocationListDer<'static>,
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
    /// The ledger revision it reflects.
    pub revision: i64,
    /// How many certificates it lists.
    pub entries: usize,
}

impl Crl {
    pub fn pem(&self) -> String {
        pki_common::files::pem_encode("X509 CRL", self.der.as_ref())
    }
}

impl Ca {
    /// Normalises a serial as users type it (any case, with or without
    /// colons) to the ledger's lower-case hex.
    pub fn normalize_serial(serial: &str) -> Result<String, CaError> {
        let hex: String = serial
            .trim()
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.is_empty() || hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CaError::BadSerial(serial.to_string()));
        }
        Ok(hex)
    }

    /// Revokes a certificate and every certificate renewed from it,
    /// transitively, in one ledger transaction (a renewal is the same
    /// holder's, possibly made with the key the revocation is about). The
    /// revocation is committed to the ledger before this returns; a running
    /// CA notices the ledger's new revision and publishes a new CRL within
    /// a second.
    pub fn revoke(&self, serial: &str, reason: Reason) -> Result<String, CaError> {
        let serial = Self::normalize_serial(serial)?;
        self.ledger.revoke(
            &serial,
            Revocation {
                reason,
                revoked_at: pki_common::unix_now() as i64,
            },
        )?;
        warn!(target: "audit", "audit: revoked serial {serial} ({reason})");
        for (renewed, from) in self.renewals_of(&serial)? {
            warn!(target: "audit", "audit: revoked serial {renewed} ({reason}), renewed from {from}");
        }
        Ok(serial)
    }

    /// Every certificate renewed from `serial`, transitively, with the
    /// serial each renewed, in renewal order: the chain after `serial`.
    pub fn renewals_of(&self, serial: &str) -> Result<Vec<(String, String)>, CaError> {
        let mut chain = Vec::new();
        let mut at = serial.to_string();
        // The ledger allows one renewal per certificate, so the chain is a
        // line; the bound stops at a damaged ledger's cycle.
        while let Some(next) = self.ledger.renewed_by(&at)? {
            if chain.len() > 10_000 {
                break;
            }
            chain.push((next.clone(), at));
            at = next;
        }
        Ok(chain)
    }

    /// Signs the CURRENT intermediate's CRL valid from `this_update` for
    /// `interval` (see [`Ca::sign_crl_of`]).
    pub fn sign_crl_at(&self, this_update: i64, interval: Duration) -> Result<Crl, CaError> {
        let issuer = self.current_issuer()?;
        self.sign_crl_of(&issuer, this_update, interval)
    }

    /// Signs `issuer`'s CRL valid from `this_update` for `interval`,
    /// numbered from that issuer's counter in the ledger, listing every
    /// revoked certificate it issued.
    pub fn sign_crl_of(
        &self,
        issuer: &Intermediate,
        this_update: i64,
        interval: Duration,
    ) -> Result<Crl, CaError> {
        let revision = self.ledger.revision()?;
        let revoked: Vec<(String, Revocation)> = self
            .ledger
            .certificates()?
            .into_iter()
            .filter(|r| r.issuer_id == issuer.id)
            .filter_map(|r| r.revoked.map(|rev| (r.serial_hex, rev)))
            .collect();
        let number = self.ledger.next_crl_number_of(&issuer.id)?;
        let next_update = this_update.saturating_add(interval.as_secs().max(1) as i64);
        let der = issuer.sign_crl(number, this_update, next_update, &revoked)?;
        Ok(Crl {
            issuer_id: issuer.id.clone(),
            der,
            number,
            this_update,
            next_update,
            revision,
            entries: revoked.len(),
        })
    }

    /// Signs a CRL now for every intermediate held that is not expired,
    /// makes them the ones served, then writes the current intermediate's
    /// to `ca.crl.pem`; answers that one.
    ///
    /// Served first, written second: a revocation is committed to the
    /// ledger before the CRL is signed, so once signed it must reach
    /// `/v1/crl` whatever happens to the file (a full disk, a broken
    /// mount, a directory in its place). A failed write answers
    /// [`CaError::CrlFile`] with the CRL already served; the serving CA
    /// writes the file again on its next poll ([`Ca::refresh_crl`]).
    pub fn publish_crl(&self) -> Result<Arc<Crl>, CaError> {
        let now = pki_common::unix_now() as i64;
        // Every intermediate's first: a CA left without a current issuer
        // (its only intermediate revoked) still publishes the CRLs of the
        // leaves it issued.
        for issuer in self.intermediates() {
            if issuer.info.not_after <= now {
                continue;
            }
            let crl = Arc::new(self.sign_crl_of(&issuer, now, self.policy.crl_interval)?);
            self.crls
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(issuer.id.clone(), crl.clone());
            info!(
                target: "audit",
                "audit: published CRL #{} of intermediate {} listing {} revoked certificate(s), next update {}",
                crl.number,
                issuer.id,
                crl.entries,
                pki_common::cert::rfc3339(crl.next_update)
            );
        }
        let current = self.current_issuer()?;
        let crl = self.crl_of(&current.id).ok_or_else(|| {
            CaError::Authority(crate::authority::AuthorityError::Root(format!(
                "no CRL was signed for the current intermediate {}",
                current.id
            )))
        })?;
        self.write_crl_file(&crl)?;
        Ok(crl)
    }

    /// The CRL served for the intermediate `id`, if one has been published.
    pub fn crl_of(&self, id: &str) -> Option<Arc<Crl>> {
        self.crls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The CRLs served, one per intermediate that has one, oldest
    /// intermediate first.
    pub fn crls(&self) -> Vec<Arc<Crl>> {
        self.intermediates()
            .iter()
            .filter_map(|i| self.crl_of(&i.id))
            .collect()
    }

    /// Writes `crl` to `ca.crl.pem` and remembers that it did.
    fn write_crl_file(&self, crl: &Crl) -> Result<(), CaError> {
        let path = self.paths.crl();
        pki_common::files::write_public(&path, &crl.pem()).map_err(|source| CaError::CrlFile {
            number: crl.number,
            path: path.display().to_string(),
            source,
        })?;
        *self.crl_written.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((crl.issuer_id.clone(), crl.number));
        Ok(())
    }

    /// The CURRENT intermediate's CRL, if one has been published.
    pub fn current_crl(&self) -> Option<Arc<Crl>> {
        self.current_issuer()
            .ok()
            .and_then(|issuer| self.crl_of(&issuer.id))
    }

    /// First picks up new intermediates and a new root CRL
    /// ([`Ca::reload_hierarchy`]). Then publishes new CRLs if an
    /// intermediate has none, if the ledger has a revocation the CRLs
    /// lack, or if half a CRL's validity has passed (so a fresh CRL is out
    /// well before nextUpdate). Otherwise, if the current CRL never reached
    /// `ca.crl.pem`, tries writing it again.
    pub fn refresh_crl(&self) -> Result<Option<Arc<Crl>>, CaError> {
        self.reload_hierarchy();
        let now = pki_common::unix_now() as i64;
        let current = self.current_crl();
        let revision = self.ledger.revision()?;
        // The current intermediate is live, so it is among these.
        let stale = self
            .intermediates()
            .iter()
            .filter(|i| now < i.info.not_after)
            .any(|i| match self.crl_of(&i.id) {
                None => true,
                Some(crl) => {
                    crl.revision != revision
                        || now >= crl.this_update + (crl.next_update - crl.this_update) / 2
                }
            });
        match current {
            _ if stale => self.publish_crl().map(Some),
            Some(crl)
                if *self.crl_written.lock().unwrap_or_else(|p| p.into_inner())
                    != Some((crl.issuer_id.clone(), crl.number)) =>
            {
                self.write_crl_file(&crl)?;
                info!(
                    "wrote CRL #{} to {}",
                    crl.number,
                    self.paths.crl().display()
                );
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

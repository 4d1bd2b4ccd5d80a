//! The certificate and TLS configuration that new connections get.
//!
//! Both are replaced together, never edited: when the certificate is
//! renewed, or a new CRL arrives for checking client certificates. A
//! connection keeps the pair it was accepted with, so its step-4 proof is
//! signed by the key of the certificate it was shown, and open sessions
//! (which live in the session table, not in the TLS configuration) carry on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use pki_common::revocation::{CrlSet, Reason};
use pki_common::shutdown::Shutdown;
use pki_common::tls::{server_config_with_client_auth, ClientAuth, TlsSetupError};

use crate::identity::{self, Identity, IdentityError};
use crate::Shared;

/// One certificate with the TLS configuration that presents it.
pub struct Live {
    pub identity: Arc<Identity>,
    pub tls: Arc<rustls::ServerConfig>,
    /// The CRLs client certificates are checked against (one per issuer:
    /// the root's, and each intermediate's), if any.
    pub crls: Option<CrlSet>,
}

impl Live {
    /// The TLS configuration presenting the identity's whole chain (leaf,
    /// then intermediates), checking client chains against the root and
    /// every CRL of `crls`.
    pub fn build(
        identity: Arc<Identity>,
        crls: Option<CrlSet>,
        mode: ClientAuth,
    ) -> Result<Self, TlsSetupError> {
        let ders = crls.as_ref().map(CrlSet::ders).unwrap_or_default();
        let tls = server_config_with_client_auth(
            identity.chain(),
            identity.key.clone_key(),
            &identity.root,
            ders,
            mode,
        )?;
        Ok(Live {
            identity,
            tls: Arc::new(tls),
            crls,
        })
    }

    /// Whether a CRL in use lists the certificate with `serial_hex` (a
    /// client's, or an intermediate of its chain).
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.crls
            .as_ref()
            .is_some_and(|c| c.revocation_of(serial_hex).is_some())
    }

    /// Whether a CRL in use lists the server's own certificate or an
    /// intermediate of its chain: `Some(reason)` if one does. Such a
    /// certificate is never presented again.
    pub fn own_revocation(&self) -> Option<Option<Reason>> {
        let crls = self.crls.as_ref()?;
        std::iter::once(&self.identity.cert)
            .chain(&self.identity.intermediates)
            .filter_map(|c| pki_common::cert::CertInfo::parse(c).ok())
            .find_map(|info| crls.revocation_of(&info.serial_hex).map(|(r, _)| r))
    }
}

/// The current [`Live`], swapped atomically. A `watch` channel, so open
/// connections learn of a new CRL at once (see [`revoked_among`]).
pub struct LiveState {
    current: watch::Sender<Arc<Live>>,
    /// Serialises replacements: each is computed from the one it
    /// replaces, so a renewal and a new CRL cannot undo each other.
    writer: Mutex<()>,
}

impl LiveState {
    pub fn new(live: Live) -> Self {
        LiveState {
            current: watch::Sender::new(Arc::new(live)),
            writer: Mutex::new(()),
        }
    }

    pub fn current(&self) -> Arc<Live> {
        self.current.borrow().clone()
    }

    /// A receiver that is told of every replacement.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Live>> {
        self.current.subscribe()
    }

    /// Replaces the current [`Live`] with what `next` makes of it, if it
    /// makes anything, and answers what `next` answered besides.
    fn update<T>(&self, next: impl FnOnce(&Arc<Live>) -> (Option<Live>, T)) -> T {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (live, answer) = next(&self.current());
        if let Some(live) = live {
            self.current.send_replace(Arc::new(live));
        }
        answer
    }
}

/// Resolves with the first of `serials` that a CRL installed since `live`
/// last looked lists; pends otherwise. A connection waits on this beside
/// its next frame, so a revoked client is cut off at once, not at its next
/// request.
pub async fn revoked_among(live: &mut watch::Receiver<Arc<Live>>, serials: &[String]) -> String {
    loop {
        if serials.is_empty() || live.changed().await.is_err() {
            return std::future::pending().await;
        }
        let current = live.borrow_and_update().clone();
        if let Some(serial) = serials.iter().find(|s| current.is_revoked(s)) {
            return serial.clone();
        }
    }
}

/// Fetches the CRLs every `crl_refresh` and installs those that are newer.
/// "Newer" is the one rule of [`CrlSet::merge`], issuer by issuer: an
/// older CRL (a stale `ca.crl.pem` while the CA is down, say) or another
/// CRL with the same number is refused, and the one in use stays.
pub async fn refresh_crl(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let files = shared.config.identity_files();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(shared.config.crl_refresh) => {}
        }
        let root = shared.live.current().identity.root.clone();
        let Some(crl) = identity::current_crl(&files, &shared.config.enrollment, &root).await
        else {
            continue;
        };
        install_crl(&shared, crl).await;
    }
}

/// Installs the CRLs of `offered` that succeed those in use, issuer by
/// issuer; then ends the sessions of the client certificates they list,
/// and deals with the server's own certificate if it is listed (or its
/// intermediate is).
pub async fn install_crl(shared: &Arc<Shared>, offered: CrlSet) {
    let mode = shared.config.client_auth;
    let installed = shared.live.update(|current| {
        let merged = CrlSet::merge(current.crls.as_ref(), offered);
        for (issuer, e) in &merged.refused {
            warn!("not installing the CRL of {issuer} offered: {e}");
        }
        if merged.newer.is_empty() {
            return (None, None);
        }
        let numbers: Vec<String> = merged
            .newer
            .iter()
            .filter_map(|i| merged.set.get(&i.id))
            .map(|c| format!("CRL #{} of {}", c.number, c.issuer))
            .collect();
        match Live::build(current.identity.clone(), Some(merged.set), mode) {
            Ok(live) => {
                let own = live.own_revocation();
                (Some(live), Some((own, numbers)))
            }
            Err(e) => {
                warn!("cannot install the new CRLs: {e}");
                (None, None)
            }
        }
    });
    let Some((own, numbers)) = installed else {
        return;
    };
    for crl in &numbers {
        info!("installed {crl} for checking client certificates");
    }
    // Connections whose certificates the new CRLs list end themselves
    // (they watch `shared.live`); a ticket naming one is refused at its
    // next resumption. No session table to sweep.
    if let Some(reason) = own {
        own_certificate_revoked(shared, reason).await;
    }
}

/// The server's own certificate is on the CRL. It is not presented again
/// (new connections are refused meanwhile, see `accept`): the server
/// enrolls a fresh key with its token if it has one (the CA refuses to
/// renew a revoked certificate), and otherwise stops, saying how to get a
/// new certificate, rather than serve one its clients will refuse.
async fn own_certificate_revoked(shared: &Arc<Shared>, reason: Option<Reason>) {
    let current = shared.live.current();
    let serial = current.identity.info.short_serial();
    let why = reason.map(|r| r.as_str()).unwrap_or("no reason given");
    error!("this server's certificate {serial} has been revoked ({why}): it is no longer presented; enrolling a new one");
    let files = shared.config.identity_files();
    let config = &shared.config;
    let obtained = identity::obtain(
        &files,
        &config.names,
        &config.enrollment,
        current.crls.as_ref(),
    )
    .await;
    let installed = obtained.and_then(|identity| {
        let new_serial = identity.info.short_serial();
        shared.live.update(|live| {
            match Live::build(Arc::new(identity), live.crls.clone(), config.client_auth) {
                Ok(new) => (Some(new), Ok(new_serial)),
                Err(e) => (None, Err(IdentityError::Key(e.to_string()))),
            }
        })
    });
    match installed {
        Ok(new_serial) => {
            info!("re-enrolled: new connections now get certificate {new_serial}");
        }
        Err(e) => {
            error!("cannot replace the revoked certificate {serial}: {e}; stopping rather than keep presenting it");
            let name = config.names.first().cloned().unwrap_or_default();
            shared.fail(crate::ServerError::OwnCertificateRevoked {
                serial,
                name,
                source: e,
            });
        }
    }
}

/// Renews the server's certificate once two thirds of its lifetime have
/// passed, and installs the new one for new connections.
pub async fn keep_renewed(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let files = shared.config.identity_files();
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let current = shared.live.current();
        let wait = match retry_at.take() {
            Some(at) => at.saturating_duration_since(tokio::time::Instant::now()),
            None => {
                let due = current.identity.info.renewal_due();
                Duration::from_secs(due.saturating_sub(pki_common::unix_now() as i64).max(0) as u64)
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match identity::renew_identity(&current.identity, &files, &shared.config.enrollment).await {
            Ok(renewed) => {
                let serial = renewed.info.short_serial();
                let mode = shared.config.client_auth;
                let built = shared.live.update(|live| {
                    match Live::build(Arc::new(renewed), live.crls.clone(), mode) {
                        Ok(new) => (Some(new), Ok(())),
                        Err(e) => (None, Err(e)),
                    }
                });
                match built {
                    Ok(()) => {
                        info!("renewal: new connections now get certificate {serial}; open sessions continue");
                    }
                    Err(e) => {
                        warn!("renewal: cannot use the new certificate: {e}");
                        retry_at = Some(tokio::time::Instant::now() + shared.config.renew_retry);
                    }
                }
            }
            Err(e) => {
                warn!(
                    "renewal failed: {e}; retrying in {:?}",
                    shared.config.renew_retry
                );
                retry_at = Some(tokio::time::Instant::now() + shared.config.renew_retry);
            }
        }
    }
}

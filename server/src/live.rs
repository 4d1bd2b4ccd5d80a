//! The certificate and TLS configuration that new connections get.
//!
//! Both are replaced together, never edited: when the certificate is
//! renewed, or a new CRL arrives for checking client certificates. A
//! connection keeps the pair it was accepted with, so its step-4 proof is
//! signed by the key of the certificate it was shown, and open sessions
//! (which live in the session table, not in the TLS configuration) carry on.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{info, warn};

use pki_common::revocation::VerifiedCrl;
use pki_common::shutdown::Shutdown;
use pki_common::tls::{server_config_with_client_auth, ClientAuth, TlsSetupError};

use crate::identity::{self, Identity, IdentityFiles};
use crate::Shared;

/// One certificate with the TLS configuration that presents it.
pub struct Live {
    pub identity: Arc<Identity>,
    pub tls: Arc<rustls::ServerConfig>,
    /// The CRL client certificates are checked against, if any.
    pub crl: Option<VerifiedCrl>,
}

impl Live {
    pub fn build(
        identity: Arc<Identity>,
        crl: Option<VerifiedCrl>,
        mode: ClientAuth,
    ) -> Result<Self, TlsSetupError> {
        let crls = crl.iter().map(|c| c.der.clone()).collect();
        let tls = server_config_with_client_auth(
            vec![identity.cert.clone()],
            identity.key.clone_key(),
            &identity.root,
            crls,
            mode,
        )?;
        Ok(Live {
            identity,
            tls: Arc::new(tls),
            crl,
        })
    }
}

/// The current [`Live`], swapped atomically.
pub struct LiveState(RwLock<Arc<Live>>);

impl LiveState {
    pub fn new(live: Live) -> Self {
        LiveState(RwLock::new(Arc::new(live)))
    }

    pub fn current(&self) -> Arc<Live> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, live: Live) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }
}

/// Fetches the CRL every `crl_refresh` and installs it when it is newer.
pub async fn refresh_crl(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let files = IdentityFiles::in_dir(&shared.config.certs_dir);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(shared.config.crl_refresh) => {}
        }
        let current = shared.live.current();
        let Some(crl) =
            identity::current_crl(&files, &shared.config.enrollment, &current.identity.root).await
        else {
            continue;
        };
        if current.crl.as_ref().map(|c| &c.der) == Some(&crl.der) {
            continue;
        }
        let number = crl.number.clone();
        match Live::build(
            current.identity.clone(),
            Some(crl),
            shared.config.client_auth,
        ) {
            Ok(live) => {
                shared.live.replace(live);
                info!("installed CRL #{number} for checking client certificates");
            }
            Err(e) => warn!("cannot install the new CRL: {e}"),
        }
    }
}

/// Renews the server's certificate once two thirds of its lifetime have
/// passed, and installs the new one for new connections.
pub async fn keep_renewed(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let files = IdentityFiles::in_dir(&shared.config.certs_dir);
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
                let crl = shared.live.current().crl.clone();
                match Live::build(Arc::new(renewed), crl, shared.config.client_auth) {
                    Ok(live) => {
                        shared.live.replace(live);
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

//! The serving CA's background loops.
//!
//! Both keep something the listener hands out current without a restart:
//! [`rotate_own`] the CA's own TLS certificate, [`refresh_crl`] the CRL.
//! Each does its work off the async workers (signing is CPU work and the
//! ledger waits on the disk), logs a failure and tries again, and stops
//! when `shutdown` fires.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use pki_common::shutdown::Shutdown;

use crate::serve::{own_acceptor, OwnAcceptor};
use crate::Ca;

/// Replaces the CA's own TLS certificate before it runs out, so a CA that
/// serves for longer than a certificate lifetime stays reachable.
pub(crate) async fn rotate_own(
    ca: Arc<Ca>,
    names: Vec<String>,
    acceptor: OwnAcceptor,
    mut shutdown: Shutdown,
) {
    loop {
        let due = acceptor.read().unwrap_or_else(|p| p.into_inner()).1;
        let wait = due.saturating_sub(pki_common::unix_now() as i64).max(1) as u64;
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
        }
        let (ca, names) = (ca.clone(), names.clone());
        match tokio::task::spawn_blocking(move || own_acceptor(&ca, &names)).await {
            Ok(Ok(fresh)) => {
                *acceptor.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                info!("replaced the CA's own TLS certificate before it expires");
            }
            Ok(Err(e)) => {
                warn!("cannot replace the CA's own TLS certificate: {e}; retrying in 10 s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(e) => warn!("the certificate rotation task failed: {e}"),
        }
    }
}

/// Keeps the served CRL current: a revocation recorded by any process is
/// published within one `poll`, and a CRL is renewed at half its validity.
/// The trigger is the ledger itself, so revoking needs access to the CA's
/// files and offers nothing to network callers.
pub(crate) async fn refresh_crl(ca: Arc<Ca>, poll: Duration, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        let ca = ca.clone();
        match tokio::task::spawn_blocking(move || ca.refresh_crl()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("cannot refresh the CRL: {e}"),
            Err(e) => warn!("the CRL refresh task failed: {e}"),
        }
    }
}

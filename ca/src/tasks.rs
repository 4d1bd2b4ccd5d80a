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

/// The first pause after a failed rotation; each further failure doubles
/// it, up to [`ROTATE_BACKOFF_MAX`].
const ROTATE_BACKOFF_FIRST: Duration = Duration::from_secs(10);
/// The longest pause between two rotation attempts that fail.
const ROTATE_BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// How often the rotation checks whether the current intermediate changed.
const ISSUER_POLL: Duration = Duration::from_secs(1);
/// At most one warning per this interval from a loop that keeps failing.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Replaces the CA's own TLS certificate before it runs out, so a CA that
/// serves for longer than a certificate lifetime stays reachable, and
/// within [`ISSUER_POLL`] of a change of the current intermediate (a
/// rollover, or its revocation), so the CA presents a chain through the
/// intermediate it issues under.
///
/// A failure (the root is about to expire, the ledger cannot record)
/// does not change by retrying at once, so the pause doubles from
/// [`ROTATE_BACKOFF_FIRST`] up to [`ROTATE_BACKOFF_MAX`], and the warning
/// is logged at most once a minute. A success resets the pause.
pub(crate) async fn rotate_own(
    ca: Arc<Ca>,
    names: Vec<String>,
    acceptor: OwnAcceptor,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(ROTATE_BACKOFF_FIRST, ROTATE_BACKOFF_MAX);
    let mut warnings = WarnLimiter::new(WARN_INTERVAL);
    let mut pause = Duration::ZERO;
    loop {
        let (due, issuer) = {
            let own = acceptor.read().unwrap_or_else(|p| p.into_inner());
            (own.1, own.2.clone())
        };
        let until_due = due.saturating_sub(pki_common::unix_now() as i64).max(1) as u64;
        let wait = Duration::from_secs(until_due).min(ISSUER_POLL).max(pause);
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let issuer_changed = ca.current_issuer().is_ok_and(|i| i.id != issuer);
        if !issuer_changed && (pki_common::unix_now() as i64) < due {
            continue;
        }
        let (ca, names) = (ca.clone(), names.clone());
        let failure = match tokio::task::spawn_blocking(move || own_acceptor(&ca, &names)).await {
            Ok(Ok(fresh)) => {
                *acceptor.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                info!("replaced the CA's own TLS certificate (it was due, or the current intermediate changed)");
                backoff.reset();
                pause = Duration::ZERO;
                continue;
            }
            Ok(Err(e)) => format!("cannot replace the CA's own TLS certificate: {e}"),
            Err(e) => format!("the certificate rotation task failed: {e}"),
        };
        pause = backoff.next_pause();
        if let Some(suppressed) = warnings.allow(std::time::Instant::now()) {
            warn!(
                "{failure}; retrying in {}{}",
                humantime::format_duration(pause),
                suppressed_note(suppressed)
            );
        }
    }
}

/// Doubling pauses between attempts that keep failing.
#[derive(Debug)]
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The pause before the next attempt; doubles the one after.
    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Lets a repeated warning through at most once per interval, counting
/// the ones held back, so a failing loop cannot flood the log.
#[derive(Debug)]
struct WarnLimiter {
    interval: Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn new(interval: Duration) -> Self {
        WarnLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last one)` if a warning may be logged at
    /// `now`; `None` (and one more held back) otherwise.
    fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

fn suppressed_note(suppressed: u64) -> String {
    match suppressed {
        0 => String::new(),
        n => format!(" ({n} similar warning(s) held back in the last minute)"),
    }
}

/// Keeps the served CRL current: a revocation recorded by any process is
/// published within one `poll`, and a CRL is renewed at half its validity.
/// The trigger is the ledger itself, so revoking needs access to the CA's
/// files and offers nothing to network callers.
///
/// A failure that persists (an unwritable `ca.crl.pem`) is retried every
/// poll but warned about at most once a minute.
pub(crate) async fn refresh_crl(ca: Arc<Ca>, poll: Duration, mut shutdown: Shutdown) {
    let mut warnings = WarnLimiter::new(WARN_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        let ca = ca.clone();
        let failure = match tokio::task::spawn_blocking(move || ca.refresh_crl()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => format!("cannot refresh the CRL: {e}"),
            Err(e) => format!("the CRL refresh task failed: {e}"),
        };
        if let Some(suppressed) = warnings.allow(std::time::Instant::now()) {
            warn!("{failure}{}", suppressed_note(suppressed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_rotation_backs_off_to_an_hour_and_resets() {
        let mut b = Backoff::new(ROTATE_BACKOFF_FIRST, ROTATE_BACKOFF_MAX);
        let pauses: Vec<u64> = (0..12).map(|_| b.next_pause().as_secs()).collect();
        assert_eq!(&pauses[..4], &[10, 20, 40, 80]);
        assert_eq!(*pauses.last().unwrap(), 3600);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        b.reset();
        assert_eq!(b.next_pause().as_secs(), 10);
    }

    #[test]
    fn a_repeated_warning_is_logged_at_most_once_a_minute() {
        let mut w = WarnLimiter::new(WARN_INTERVAL);
        let t0 = Instant::now();
        assert_eq!(w.allow(t0), Some(0));
        // A failure every second for a minute: all held back.
        for s in 1..60 {
            assert_eq!(w.allow(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(w.allow(t0 + Duration::from_secs(60)), Some(59));
        assert_eq!(w.allow(t0 + Duration::from_secs(61)), None);
    }
}

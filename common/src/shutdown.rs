//! The signal that tells a listener to stop accepting.
//!
//! A `watch` channel rather than a broadcast: a task that subscribes late
//! still sees that shutdown has already begun.

use tokio::sync::watch;

/// Held by whoever decides when to stop (a signal handler, a test).
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Held by every task that must stop when told.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and listener pair.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Tells every [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown has been triggered, or the trigger dropped.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A [`Shutdown`] that fires on SIGINT or SIGTERM: the wiring both daemons
/// need, installed once at start so a signal during start-up (a server
/// waiting for the CA) stops the process as cleanly as one later on.
/// Must be called inside a Tokio runtime.
pub fn on_os_signal() -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        os_signal().await;
        trigger.trigger();
    });
    shutdown
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, whichever comes first.
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! The ticket key file: which keys seal and open session tickets, shared
//! by every server replica (`--ticket-key`, default `ticket.key` in the
//! certificates directory, mode 0600).
//!
//! Rotation is a new file: `pki-server ticket-key rotate` writes a fresh
//! current key and keeps the old one as `previous`, so tickets sealed
//! before the rotation keep working until the previous key is dropped
//! (the next rotation, or `pki-server ticket-key retire`). A running
//! server notices a replaced file within `--ticket-key-poll`, or at once
//! on SIGHUP; copy the same file to every replica.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{info, warn};

use pki_common::files::FileError;
use pki_common::proto::ticket::{TicketKeyError, TicketKeys};
use pki_common::shutdown::Shutdown;

/// Why the ticket key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TicketFileError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {source}")]
    Keys {
        path: String,
        source: TicketKeyError,
    },
}

fn read(path: &Path) -> Result<(String, TicketKeys), TicketFileError> {
    let text = pki_common::files::read_private_key_pem(path)?;
    let keys = TicketKeys::parse(&text).map_err(|source| TicketFileError::Keys {
        path: path.display().to_string(),
        source,
    })?;
    Ok((text, keys))
}

/// Writes a key file with a fresh current key and, if given, the previous
/// one (its hex), mode 0600.
fn write(path: &Path, previous: Option<&str>) -> Result<(), TicketFileError> {
    let text = TicketKeys::generate(previous);
    pki_common::files::write_private_key(path, &text)?;
    Ok(())
}

/// The keys in use, replaced whole when the file changes.
pub struct TicketKeyStore {
    path: PathBuf,
    keys: RwLock<(String, Arc<TicketKeys>)>,
}

impl TicketKeyStore {
    /// Loads the key file at `path`, creating it with a fresh key if there
    /// is none (a single server needs nothing more; replicas copy it).
    pub fn open(path: &Path) -> Result<Self, TicketFileError> {
        if !path.exists() {
            write(path, None)?;
            info!(
                "created the ticket key {} (mode 0600); copy it to every server replica that should resume this server's sessions",
                path.display()
            );
        }
        let (text, keys) = read(path)?;
        Ok(TicketKeyStore {
            path: path.to_path_buf(),
            keys: RwLock::new((text, Arc::new(keys))),
        })
    }

    /// The keys now: the current one seals; it and the previous one open.
    pub fn keys(&self) -> Arc<TicketKeys> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Reads the file again; answers whether the keys changed. A file that
    /// cannot be read or parsed leaves the keys in use as they are.
    pub fn reload(&self) -> Result<bool, TicketFileError> {
        let (text, keys) = read(&self.path)?;
        let mut slot = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if slot.0 == text {
            return Ok(false);
        }
        info!(
            "ticket keys from {}: sealing under {}, also opening {}",
            self.path.display(),
            hex::encode(keys.current.id()),
            keys.previous
                .as_ref()
                .map(|k| hex::encode(k.id()))
                .unwrap_or_else(|| "nothing older".into())
        );
        *slot = (text, Arc::new(keys));
        Ok(true)
    }

    /// Reloads every `poll`, and at once on SIGHUP, until `shutdown`.
    pub async fn watch(self: Arc<Self>, poll: Duration, mut shutdown: Shutdown) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(poll) => {}
                _ = hup => info!("SIGHUP: reading the ticket key file again"),
            }
            if let Err(e) = self.reload() {
                warn!("keeping the ticket keys in use: {e}");
            }
        }
    }
}

/// `pki-server ticket-key rotate`: a fresh current key, the old current
/// one kept as previous (tickets under it still open). Answers the new
/// file's key ids.
pub fn rotate(path: &Path) -> Result<TicketKeys, TicketFileError> {
    let old = match read(path) {
        Ok((text, _)) => TicketKeys::current_hex(&text),
        Err(TicketFileError::File(FileError::Io { .. })) if !path.exists() => None,
        Err(e) => return Err(e),
    };
    write(path, old.as_deref())?;
    Ok(read(path)?.1)
}

/// `pki-server ticket-key retire`: drops the previous key, so tickets
/// sealed under it stop working; the current key stays.
pub fn retire(path: &Path) -> Result<TicketKeys, TicketFileError> {
    let (text, _) = read(path)?;
    let current = TicketKeys::current_hex(&text).unwrap_or_default();
    let kept = format!("# pki-server ticket keys: the first seals; both open\ncurrent {current}\n");
    pki_common::files::write_private_key(path, &kept)?;
    Ok(read(path)?.1)
}

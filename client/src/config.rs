//! What a client needs to know before it connects: where the server is,
//! which name it must prove, and what to trust.
//!
//! Everything is plain data so one configuration can be cloned into many
//! connections (the benchmarks and [`crate::SessionClient`] do this); the
//! work of reading the root and the CRL happens later, in
//! [`crate::ClientTls::prepare`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use pki_common::ca::enroll::Enrolled;
use pki_common::proto::view::WireView;

use crate::trust::CrlSource;

/// Where to connect and what to trust.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the application server.
    pub server: String,
    /// The identity the server's certificate must carry.
    pub name: String,
    /// The CA root, the only trust anchor.
    pub ca: PathBuf,
    pub client_id: String,
    pub skew_secs: u64,
    pub max_frame: usize,
    /// Bound on connecting, the TLS handshake and each protocol step.
    pub timeout: Duration,
    /// Where the current CRL comes from.
    pub crl: CrlSource,
    /// The client's own certificate and key, presented when the server asks.
    pub identity: Option<Enrolled>,
    /// `--wire`: show each frame, the exporter, transcript hashes and key
    /// fingerprints (never a key); see `pki_common::proto::view`.
    pub wire: WireView,
    /// Where to keep the session ticket between runs (`--ticket`), so a
    /// later run resumes instead of registering; `None`: keep none.
    pub ticket_file: Option<PathBuf>,
}

/// Where `pki-client` keeps the last verified CRL: `ca.crl.pem` beside the
/// root it trusts, where a CA sharing the directory writes its own (the
/// cache only ever replaces a CRL with a newer one, so sharing is safe).
pub fn crl_cache_path(root: &Path) -> PathBuf {
    pki_common::ca::crl::CrlCache::next_to(root).path
}

impl Default for ClientConfig {
    /// The addresses and names of a local `make demo`, and the revocation
    /// check on: a client fails closed unless told otherwise.
    fn default() -> Self {
        ClientConfig {
            server: "127.0.0.1:9443".into(),
            name: "app.pki.test".into(),
            ca: PathBuf::from("certs/ca.pem"),
            client_id: "client1".into(),
            skew_secs: pki_common::proto::DEFAULT_SKEW_SECS,
            max_frame: pki_common::proto::DEFAULT_MAX_FRAME,
            timeout: Duration::from_secs(10),
            crl: CrlSource::Fetch {
                ca_url: "https://127.0.0.1:8443".into(),
                ca_name: None,
            },
            identity: None,
            wire: WireView::default(),
            ticket_file: None,
        }
    }
}

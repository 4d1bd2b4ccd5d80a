//! Fixtures that stand up more than one party at once, so a test states
//! what it needs ("a CA with an enrolled server") in one line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pki_ca::authority::init_root;
use pki_ca::policy::IssuancePolicy;
use pki_ca::serve::{CaServer, ServeError, ServeOptions};
use pki_ca::{Ca, CaPaths};
use pki_client::{request_once, ClientConfig, ClientError, Connection};
use pki_common::ca::enroll::Enrolled;
use pki_common::cert::Profile;
use pki_common::files;
use pki_common::proto::handshake::ClientSession;
use pki_server::ServerConfig;

use crate::raw::RawClient;
use crate::{RunningServer, TestPki};

/// A running CA with one application server enrolled from it.
///
/// Most protocol tests need exactly this pair before they can say anything;
/// destructure it (`let AppFixture { pki, server } = ...`) to keep the
/// test body in terms of the CA and the server.
pub struct AppFixture {
    pub pki: TestPki,
    pub server: RunningServer,
}

impl AppFixture {
    /// A fresh CA and a server with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A fresh CA and a server whose configuration `tweak` adjusts (limits,
    /// timeouts, client authentication).
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let pki = TestPki::start().await;
        let server = pki.start_server(tweak).await;
        AppFixture { pki, server }
    }

    /// A client configuration for this server, trusting this CA.
    pub fn client_config(&self) -> ClientConfig {
        self.pki.client_config(self.server.addr)
    }

    /// A frame-by-frame client connected to this server.
    pub async fn raw_client(&self) -> RawClient {
        RawClient::connect(&self.pki, self.server.addr).await
    }

    /// Writes `crl` alone into the CA's directory as `<tag>.crl.pem`, gives
    /// it to the client as its CRL file and asks for the memo, where the
    /// test expects the client to refuse that CRL: returns the error.
    pub async fn memo_refusal_with_crl(&self, tag: &str, crl: &pki_ca::Crl) -> ClientError {
        self.memo_refusal_with_crls(tag, &crl.pem()).await
    }

    /// [`AppFixture::memo_refusal_with_crl`] with a whole CRL set in PEM,
    /// as a party keeps it (`ca.crls.pem`: the intermediates that signed
    /// CRLs, then the CRLs).
    pub async fn memo_refusal_with_crls(&self, tag: &str, pem: &str) -> ClientError {
        let path = self.pki.dir().join(format!("{tag}.crl.pem"));
        files::write_public(&path, pem).unwrap();
        let mut config = self.client_config();
        config.crl = pki_client::CrlSource::File(path);
        request_once(&config, "memo", b"")
            .await
            .expect_err("the request was expected to be refused")
    }

    /// A raw client that has already registered: the state most refusal
    /// tests of steps 7 and 8 start from.
    pub async fn raw_session(&self) -> (RawClient, ClientSession) {
        let mut client = self.raw_client().await;
        let session = client.register().await;
        (client, session)
    }
}

impl TestPki {
    /// Connects the real client to `addr` and registers (steps 1 to 6), the
    /// start of every test that then exercises a session.
    pub async fn session(&self, addr: std::net::SocketAddr) -> (Connection, ClientSession) {
        let mut conn = Connection::connect(&self.client_config(addr))
            .await
            .unwrap();
        let session = conn.register().await.unwrap();
        (conn, session)
    }

    /// Asks the server at `addr` for the memo once, with the default client
    /// configuration, where the test expects a refusal: returns the error so
    /// the test can assert which one.
    pub async fn memo_refusal(&self, addr: std::net::SocketAddr) -> ClientError {
        request_once(&self.client_config(addr), "memo", b"")
            .await
            .expect_err("the request was expected to be refused")
    }

    /// A fresh CA that issues certificates valid for `lifetime` (otherwise
    /// the default policy): short lifetimes make renewal come due within a
    /// test, and a set lifetime is what the lifetime test checks.
    pub async fn start_with_lifetime(lifetime: Duration) -> Self {
        TestPki::start_with(IssuancePolicy {
            lifetime,
            ..IssuancePolicy::default()
        })
        .await
    }

    /// Stops this CA and starts a new one over the same directory with the
    /// default policy: what a CA process restart looks like to its files.
    pub async fn restart(self) -> Self {
        let TestPki { dir, ca, .. } = self;
        drop(ca);
        TestPki::serve_in(dir, IssuancePolicy::default()).await
    }

    /// Runs `pki-client enroll` (without `--force`) for `name` against this
    /// CA, keeping the key and certificate in `files`: the client's own
    /// enrollment path, which may keep what it already has.
    pub async fn client_enroll_into(
        &self,
        files: &pki_common::ca::enroll::KeyFiles,
        name: &str,
        token: &str,
    ) -> Result<Enrolled, ClientError> {
        let ca = pki_common::ca::enroll::Enrollment {
            ca_url: self.ca_url(),
            ca_name: None,
            token: Some(token.to_string()),
            retry: pki_common::ca::enroll::Retry::default(),
        };
        pki_client::enroll_client(&ca, &self.root(), files, name, false).await
    }

    /// A fresh directory holding a copy of the root as `ca.pem`: what an
    /// operator gives a server before its first start.
    pub fn server_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(self.root_path(), dir.path().join("ca.pem")).unwrap();
        dir
    }

    /// Mints a token for `names` and enrolls a fresh key with it, with the
    /// purpose that goes with `profile`: the one enrollment the server and
    /// client helpers share.
    pub async fn enroll_as(&self, names: &[&str], profile: Profile) -> Enrolled {
        let token = self.token(names, profile);
        let purpose = match profile {
            Profile::Server => pki_common::cert::Profile::Server,
            Profile::Client => pki_common::cert::Profile::Client,
        };
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        pki_common::ca::enroll::enroll(
            &self.ca_client(),
            &self.root(),
            &names,
            &token,
            purpose,
            pki_common::ca::enroll::Retry::default(),
        )
        .await
        .unwrap()
    }
}

impl RunningServer {
    /// The server's certificate directory (only for servers started by
    /// [`TestPki::start_server`], which own one).
    pub fn certs_dir(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("this server was not started in its own directory")
            .path()
            .to_path_buf()
    }
}

/// Creates a root in `dir` and opens the CA without serving it, as before
/// a CA process starts (or alongside one, as the `pki-ca` subcommands do).
pub fn offline_ca(dir: &Path) -> (CaPaths, Ca) {
    let paths = CaPaths::new(dir);
    init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
    let ca = Ca::open(&paths, IssuancePolicy::default()).unwrap();
    (paths, ca)
}

/// Mints a server token for `app.pki.test`, the name every test server
/// uses, valid for `ttl`.
pub fn app_token(ca: &Ca, ttl: Duration) -> String {
    ca.mint_token(&["app.pki.test".into()], Profile::Server, ttl)
        .unwrap()
        .to_string()
}

/// Binds the CA's HTTPS listener on `listen` with default options, so every
/// test that serves a CA by hand does it the same way.
pub async fn bind_ca(ca: Arc<Ca>, listen: std::net::SocketAddr) -> Result<CaServer, ServeError> {
    CaServer::bind(ca, ServeOptions::on(listen)).await
}

/// Writes an enrolled certificate and its key as `<tag>.pem` and
/// `<tag>.key` in `dir`, for openssl, which reads only files; returns the
/// two paths as strings, ready for its command line.
pub fn write_identity_files(dir: &Path, tag: &str, enrolled: &Enrolled) -> (String, String) {
    let cert = dir.join(format!("{tag}.pem"));
    let key = dir.join(format!("{tag}.key"));
    let chain: String = enrolled.chain().iter().map(files::cert_to_pem).collect();
    files::write_public(&cert, &chain).unwrap();
    files::write_private_key(&key, &enrolled.key_pem).unwrap();
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

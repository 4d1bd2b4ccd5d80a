//! Helpers for the end-to-end tests: a real CA and a real application
//! server on ephemeral loopback ports, in a temporary directory.
//!
//! # Layout
//!
//! - this file: [`TestPki`] (a running CA), [`RunningServer`] (a running
//!   application server), the time bound every test runs under, and
//!   process and openssl helpers;
//! - [`fixtures`]: several parties at once ([`AppFixture`]: a CA with an
//!   enrolled server), registered sessions, enrollment, CA files without a
//!   listener, certificate and key files for openssl;
//! - [`csr`]: CSRs made with openssl and their issuance;
//! - [`raw`]: a client that speaks the protocol frame by frame;
//! - [`refusals`]: assertions that a refusal carries its specific error.

pub mod acme;
pub mod crafted_csr;
pub mod csr;
pub mod fixtures;
pub mod hierarchy;
pub mod observed;
pub mod postgres;
pub mod raw;
pub mod refusals;

pub use fixtures::{app_token, bind_ca, offline_ca, write_identity_files, AppFixture};
pub use raw::RawClient;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use pki_ca::authority::init_root;
use pki_ca::policy::IssuancePolicy;
use pki_ca::{Ca, CaPaths};
use pki_client::ClientConfig;
use pki_common::ca::client::CaClient;
use pki_common::ca::enroll::Retry;
use pki_common::cert::Profile;
use pki_common::shutdown::{self, ShutdownTrigger};
use pki_server::identity::{Enrollment, Identity};
use pki_server::service::Service;
use pki_server::{AppServer, ServerConfig, Shared};
use rustls::pki_types::CertificateDer;

/// Every test body runs under this bound, so a hang fails instead of
/// stalling CI.
pub const TEST_BOUND: Duration = Duration::from_secs(60);

/// Runs `fut` with [`TEST_BOUND`].
pub async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, fut)
        .await
        .expect("test exceeded its time bound")
}

/// A CA with its root in a temporary directory, serving on 127.0.0.1:0.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub paths: CaPaths,
    pub ca: Arc<Ca>,
    pub ca_addr: SocketAddr,
    _stop: ShutdownTrigger,
}

impl TestPki {
    /// Creates a root and starts the CA.
    pub async fn start() -> Self {
        Self::start_with(IssuancePolicy::default()).await
    }

    /// Like [`TestPki::start`] with an issuance policy, for tests that need
    /// short-lived certificates (renewal) or other limits.
    pub async fn start_with(policy: IssuancePolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path());
        init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
        Self::serve_in(dir, policy).await
    }

    /// Starts a CA over an existing directory (a restart).
    pub async fn serve_in(dir: tempfile::TempDir, policy: IssuancePolicy) -> Self {
        Self::serve_with(dir, policy, |_| {}).await
    }

    /// Creates a root and starts the CA with serving options changed by
    /// `tweak` (ACME's, say).
    pub async fn start_serving(tweak: impl FnOnce(&mut pki_ca::serve::ServeOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path());
        init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
        Self::serve_with(dir, IssuancePolicy::default(), tweak).await
    }

    /// Starts a CA over `dir` with `policy` and tweaked serving options.
    pub async fn serve_with(
        dir: tempfile::TempDir,
        policy: IssuancePolicy,
        tweak: impl FnOnce(&mut pki_ca::serve::ServeOptions),
    ) -> Self {
        let paths = CaPaths::new(dir.path());
        let ca = Arc::new(Ca::open(&paths, policy).unwrap());
        let mut opts = pki_ca::serve::ServeOptions::on("127.0.0.1:0".parse().unwrap());
        tweak(&mut opts);
        let server = pki_ca::serve::CaServer::bind(ca.clone(), opts)
            .await
            .unwrap();
        let ca_addr = server.local_addr().unwrap();
        let (stop, shutdown) = shutdown::channel();
        tokio::spawn(server.run(shutdown));
        TestPki {
            dir,
            paths,
            ca,
            ca_addr,
            _stop: stop,
        }
    }

    pub fn ca_url(&self) -> String {
        format!("https://{}", self.ca_addr)
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.ca.root().cert.clone()
    }

    pub fn root_path(&self) -> PathBuf {
        self.paths.root_cert()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Mints a token valid for 15 minutes.
    pub fn token(&self, names: &[&str], profile: Profile) -> String {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self.ca
            .mint_token(&names, profile, Duration::from_secs(900))
            .unwrap()
            .to_string()
    }

    pub fn ca_client(&self) -> CaClient {
        CaClient::new(&self.ca_url(), None, &self.root()).unwrap()
    }

    /// `POST /v1/sign` with an optional bearer token.
    pub async fn post_csr(
        &self,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> pki_common::ca::client::Response {
        self.ca_client()
            .post(pki_common::ca::api::SIGN, token, "application/pkcs10", body)
            .await
            .unwrap()
    }

    /// A server config enrolling with this CA into `dir`, on 127.0.0.1:0.
    pub fn server_config(&self, dir: &Path, token: Option<String>) -> ServerConfig {
        ServerConfig {
            listener: pki_server::ListenOptions::on("127.0.0.1:0".parse().unwrap()),
            certs_dir: dir.to_path_buf(),
            enrollment: Enrollment {
                ca_url: self.ca_url(),
                ca_name: None,
                token,
                retry: Retry {
                    deadline: Duration::from_secs(5),
                    ..Retry::default()
                },
            },
            ..ServerConfig::default()
        }
    }

    /// Enrolls and starts an application server in a fresh directory that
    /// holds a copy of the root.
    pub async fn start_server(&self, tweak: impl FnOnce(&mut ServerConfig)) -> RunningServer {
        let dir = self.server_dir();
        let token = self.token(&["app.pki.test"], Profile::Server);
        let mut config = self.server_config(dir.path(), Some(token));
        tweak(&mut config);
        let server = AppServer::start(config).await.unwrap();
        RunningServer::spawn(server, Some(dir))
    }

    /// A client config trusting this CA's root, for `server`.
    pub fn client_config(&self, server: SocketAddr) -> ClientConfig {
        ClientConfig {
            server: server.to_string(),
            ca: self.root_path(),
            timeout: Duration::from_secs(10),
            crl: pki_client::CrlSource::Fetch {
                ca_url: self.ca_url(),
                ca_name: None,
            },
            ..ClientConfig::default()
        }
    }
}

/// An application server running in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub dir: Option<tempfile::TempDir>,
    _stop: ShutdownTrigger,
}

impl RunningServer {
    /// Runs an already started or bound server in the background until
    /// this handle is dropped.
    pub fn spawn(server: AppServer, dir: Option<tempfile::TempDir>) -> Self {
        let addr = server.local_addr().unwrap();
        let shared = server.shared();
        let (stop, shutdown) = shutdown::channel();
        tokio::spawn(server.run(shutdown));
        RunningServer {
            addr,
            shared,
            dir,
            _stop: stop,
        }
    }

    /// Binds a server with a hand-made identity (tests of bad servers).
    /// Its files (the ticket key, the CRL cache) go to a fresh temporary
    /// directory unless `tweak` names another: never to a `certs` of the
    /// working directory, which parallel tests would share.
    pub async fn with_identity(identity: Identity, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            listener: pki_server::ListenOptions::on("127.0.0.1:0".parse().unwrap()),
            certs_dir: dir.path().to_path_buf(),
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let server = AppServer::bind(config, identity, Service::default())
            .await
            .unwrap();
        Self::spawn(server, Some(dir))
    }
}

/// A PEM CSR for `name` with a fresh P-256 key and no subject, as an
/// enrolling party would send it.
pub fn csr_for(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
        .into_bytes()
}

/// A child process that is killed when dropped, so a failing test leaves
/// no process behind.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs openssl with `args`, failing the test if it cannot be started.
pub fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed to run these tests")
}

/// Runs openssl and returns stdout, failing the test on a non-zero exit.
pub fn openssl_ok(args: &[&str]) -> String {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port that was free a moment ago, for processes that need a number.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls until `addr` accepts TCP connections, at most `bound`.
pub async fn wait_for_port(addr: SocketAddr, bound: Duration) {
    let start = tokio::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(start.elapsed() < bound, "{addr} not ready within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The path of one of the workspace's binaries, built by `make test`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make test` (it builds the binaries first) or `cargo build --workspace --bins`",
        path.display()
    );
    path
}

impl TestPki {
    /// Enrolls a fresh key for `names` and returns it as a server identity.
    pub async fn enroll_identity(&self, names: &[&str]) -> Identity {
        let enrolled = self.enroll_as(names, Profile::Server).await;
        Identity::from_chain(self.root(), enrolled.chain(), &enrolled.key_pem).unwrap()
    }

    /// Enrolls a client-profile certificate for `name` (a fresh key).
    pub async fn enroll_client(&self, name: &str) -> pki_common::ca::enroll::Enrolled {
        self.enroll_as(&[name], Profile::Client).await
    }
}

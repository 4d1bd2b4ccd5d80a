//! Fixtures for the observability and CRL-cache tests: the three binaries
//! as processes with their logs kept in files, a CA in this process that
//! can be stopped (to test a client while the CA is down), and plain-HTTP
//! requests to the `/metrics` and `/health` endpoints.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use pki_ca::policy::IssuancePolicy;
use pki_ca::serve::{CaServer, ServeOptions};
use pki_ca::{Ca, CaPaths};
use pki_common::cert::Profile;
use pki_common::shutdown::{self, ShutdownTrigger};
use pki_server::identity::Enrollment;
use pki_server::{AppServer, ListenOptions, ServerConfig};

use crate::{binary, free_port, wait_for_port, Reaped, RunningServer};

/// How long a daemon may take to start listening.
const START_BOUND: Duration = Duration::from_secs(20);

/// `pki-ca serve` and `pki-server` as processes sharing one directory (as
/// `make run-all` runs them), each with its metrics endpoint, and their
/// stderr kept in `ca.log` and `server.log` there.
pub struct Daemons {
    pub dir: tempfile::TempDir,
    pub ca_addr: SocketAddr,
    pub server_addr: SocketAddr,
    pub ca_metrics: SocketAddr,
    pub server_metrics: SocketAddr,
    ca: Option<Reaped>,
    server: Option<Reaped>,
}

impl Daemons {
    /// Starts both; `ca_args` and `server_args` are added to their command
    /// lines, `env` to both environments.
    pub async fn start(ca_args: &[&str], server_args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let init = Command::new(binary("pki-ca"))
            .args(["--dir", &d, "init"])
            .output()
            .unwrap();
        assert!(init.status.success(), "{}", text(&init.stderr));
        let port = |_| SocketAddr::from(([127, 0, 0, 1], free_port()));
        let [ca_addr, server_addr, ca_metrics, server_metrics] = [0; 4].map(port);
        let ca = spawn_logged(
            Command::new(binary("pki-ca"))
                .args(["--dir", &d, "serve", "--listen", &ca_addr.to_string()])
                .args(["--metrics-listen", &ca_metrics.to_string()])
                .args(ca_args)
                .envs(env.iter().copied()),
            &dir.path().join("ca.log"),
        );
        wait_for_port(ca_addr, START_BOUND).await;
        let token = Command::new(binary("pki-ca"))
            .args(["--dir", &d, "token", "--name", "app.pki.test"])
            .output()
            .unwrap();
        assert!(token.status.success(), "{}", text(&token.stderr));
        let server = spawn_logged(
            Command::new(binary("pki-server"))
                .args(["--dir", &d, "--listen", &server_addr.to_string()])
                .args(["--ca-url", &format!("https://{ca_addr}")])
                .args(["--metrics-listen", &server_metrics.to_string()])
                .args(server_args)
                .env("PKI_TOKEN", text(&token.stdout).trim())
                .envs(env.iter().copied()),
            &dir.path().join("server.log"),
        );
        wait_for_port(server_addr, START_BOUND).await;
        wait_for_port(ca_metrics, START_BOUND).await;
        wait_for_port(server_metrics, START_BOUND).await;
        Daemons {
            dir,
            ca_addr,
            server_addr,
            ca_metrics,
            server_metrics,
            ca: Some(ca),
            server: Some(server),
        }
    }

    pub fn ca_url(&self) -> String {
        format!("https://{}", self.ca_addr)
    }

    pub fn root_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn root(&self) -> rustls::pki_types::CertificateDer<'static> {
        pki_common::files::read_cert(&self.root_path()).unwrap()
    }

    /// `pki-client … request memo` without a client certificate, with
    /// `args` before the subcommand and `env` added.
    pub fn client(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(binary("pki-client"))
            .args(["--server", &self.server_addr.to_string()])
            .args(["--ca", self.root_path().to_str().unwrap()])
            .args(["--ca-url", &self.ca_url(), "--no-client-cert"])
            .args(args)
            .args(["request", "memo"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Stops both daemons (SIGKILL; their logs are complete up to there)
    /// and answers their logs: the CA's, then the server's.
    pub fn stop(&mut self) -> (String, String) {
        drop(self.server.take());
        drop(self.ca.take());
        (self.log("ca.log"), self.log("server.log"))
    }

    /// A daemon's log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Reaped {
    let file = std::fs::File::create(log).unwrap();
    Reaped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap(),
    )
}

/// Bytes as text, for assertions and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `GET path` in plain HTTP/1.1 from `addr`: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = text(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// The value of the sample `name` (with its labels, exactly as exposed,
/// e.g. `pki_ca_requests_refused_total{code="token_malformed"}`) in a
/// `/metrics` body; `None` if it is not there.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

/// Opens a TLS connection to the application server at `addr` (trusting
/// `root`) and sends bytes that are not a protocol frame, so the server
/// answers with an alert; waits for the server to close.
pub async fn send_junk(addr: SocketAddr, root: &rustls::pki_types::CertificateDer<'_>) {
    let config = pki_common::tls::client_config(root).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("app.pki.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"this is not a frame of the protocol at all\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
}

/// A CA in this process, in its own directory, that a test can stop.
pub struct StoppableCa {
    pub dir: tempfile::TempDir,
    pub ca: Arc<Ca>,
    pub addr: SocketAddr,
    stop: Option<ShutdownTrigger>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StoppableCa {
    /// Creates a root and serves it on 127.0.0.1:0. The ledger is polled
    /// for revocations only once an hour, so the CRL served is the one
    /// published at start until the test says otherwise.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path());
        pki_ca::authority::init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
        let ca = Arc::new(Ca::open(&paths, IssuancePolicy::default()).unwrap());
        let mut opts = ServeOptions::on("127.0.0.1:0".parse().unwrap());
        opts.crl_poll = Duration::from_secs(3600);
        let server = CaServer::bind(ca.clone(), opts).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, shutdown) = shutdown::channel();
        let task = tokio::spawn(server.run(shutdown));
        StoppableCa {
            dir,
            ca,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops serving and waits until the port is closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.trigger();
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Enrolls and starts an application server (client certificates
    /// optional) in a directory of its own holding a copy of the root.
    pub async fn start_server(&self) -> RunningServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(self.dir.path().join("ca.pem"), dir.path().join("ca.pem")).unwrap();
        let token = self
            .ca
            .mint_token(
                &["app.pki.test".to_string()],
                Profile::Server,
                Duration::from_secs(900),
            )
            .unwrap()
            .to_string();
        let config = ServerConfig {
            listener: ListenOptions::on("127.0.0.1:0".parse().unwrap()),
            certs_dir: dir.path().to_path_buf(),
            enrollment: Enrollment {
                ca_url: self.url(),
                ca_name: None,
                token: Some(token),
                retry: pki_common::ca::enroll::Retry {
                    deadline: Duration::from_secs(5),
                    ..Default::default()
                },
            },
            ..ServerConfig::default()
        };
        let server = AppServer::start(config).await.unwrap();
        RunningServer::spawn(server, Some(dir))
    }
}

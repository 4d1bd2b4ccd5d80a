//! `pki-server`: the application server's command line.
//!
//! Usage:
//!   pki-server [--listen 127.0.0.1:9443] [--name app.pki.test]
//!              [--ca-url https://127.0.0.1:8443] [--token <t>]
//!              [--require-client-cert] [limits: see --help]
//!
//! Phase 1 reuses certs/server.{key,pem} or enrolls with the token; then the
//! server serves phases 2 and 3 until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use pki_common::ca::enroll::Retry;
use pki_server::identity::Enrollment;
use pki_server::{AppServer, ClientAuth, ListenOptions, ServerConfig};

#[derive(Parser)]
#[command(name = "pki-server", version, about = "The application server")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// A name to enroll for and answer to (repeatable; the first is primary).
    #[arg(long = "name", default_values = ["app.pki.test"])]
    names: Vec<String>,
    /// Directory holding ca.pem, server.key and server.pem.
    #[arg(long, env = "PKI_CERTS_DIR", default_value = "certs")]
    dir: PathBuf,
    /// The CA's URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    ca_url: String,
    /// The name the CA's certificate must carry (default: the URL's host).
    #[arg(long)]
    ca_name: Option<String>,
    /// An enrollment token from `pki-ca token`, used if enrollment is needed.
    #[arg(long, env = "PKI_TOKEN")]
    token: Option<String>,
    /// How long to keep retrying while the CA cannot be reached.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    enroll_deadline: Duration,
    /// Lifetime of granted sessions.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    session_lifetime: Duration,
    /// Require every client to present a certificate from the CA (mutual TLS).
    #[arg(long)]
    require_client_cert: bool,
    /// Largest protocol frame accepted, in bytes.
    #[arg(long, default_value_t = pki_common::proto::DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// How long the TLS handshake and steps 3 to 6 may take together.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// How long a connection may wait for its next request.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Connections served at once; more are closed at once.
    #[arg(long, default_value_t = ServerConfig::default().listener.max_connections)]
    max_connections: usize,
    /// Sessions held at once (expired ones are swept).
    #[arg(long, default_value_t = ServerConfig::default().max_sessions)]
    max_sessions: usize,
    /// Sessions of clients without a certificate, in all (default: half of
    /// --max-sessions); a client with a certificate is never locked out.
    #[arg(long)]
    max_anonymous_sessions: Option<usize>,
    /// Sessions of clients without a certificate from one IP address.
    #[arg(long, default_value_t = ServerConfig::default().max_sessions_per_address)]
    max_sessions_per_address: usize,
    /// Requests one session may carry.
    #[arg(long, default_value_t = ServerConfig::default().max_requests_per_session)]
    max_requests_per_session: u64,
    /// Allowed clock skew for protocol timestamps.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    skew: Duration,
}

fn main() -> anyhow::Result<()> {
    pki_common::logging::init();
    let cli = Cli::parse();
    let config = ServerConfig {
        listener: ListenOptions {
            listen: cli.listen,
            max_connections: cli.max_connections,
            handshake_timeout: cli.handshake_timeout,
            ..ListenOptions::on(cli.listen)
        },
        names: cli.names,
        certs_dir: cli.dir,
        enrollment: Enrollment {
            ca_url: cli.ca_url,
            ca_name: cli.ca_name,
            token: cli.token,
            retry: Retry {
                deadline: cli.enroll_deadline,
                ..Retry::default()
            },
        },
        session_lifetime: cli.session_lifetime,
        client_auth: if cli.require_client_cert {
            ClientAuth::Required
        } else {
            ClientAuth::Optional
        },
        skew_secs: cli.skew.as_secs(),
        max_frame: cli.max_frame,
        idle_timeout: cli.idle_timeout,
        max_sessions: cli.max_sessions,
        max_anonymous_sessions: cli.max_anonymous_sessions,
        max_sessions_per_address: cli.max_sessions_per_address,
        max_requests_per_session: cli.max_requests_per_session,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        // One signal listener from the start: a signal during phase 1
        // (which may wait for the CA) stops the server as cleanly as later.
        let shutdown = pki_common::shutdown::on_os_signal();
        let mut during_start = shutdown.clone();
        let server = tokio::select! {
            s = AppServer::start(config) => s.context("pki-server cannot start")?,
            _ = during_start.wait() => return Ok(()),
        };
        server.run(shutdown).await.context("pki-server stopped")?;
        tracing::info!("server stopped");
        Ok(())
    })
}

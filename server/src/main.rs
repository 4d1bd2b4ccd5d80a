//! `pki-server`: the application server's command line.
//!
//! Usage:
//!   pki-server [--listen 127.0.0.1:9443] [--name app.pki.test]
//!              [--ca-url https://127.0.0.1:8443] [--token-file F]
//!              [--require-client-cert] [limits: see --help]
//!              [--cert F --key F] [--root-fingerprint FP]
//!   pki-server completions bash
//!
//! Phase 1 reuses certs/server.{key,pem} or enrolls with the token; then the
//! server serves phases 2 and 3 until SIGINT or SIGTERM.
//!
//! The token is best passed in `PKI_TOKEN` or a mode-0600 `--token-file`:
//! a `--token` value is in the process table for every local user to read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use pki_common::ca::bootstrap::Fingerprint;
use pki_common::ca::enroll::Retry;
use pki_server::identity::Enrollment;
use pki_server::{AppServer, ClientAuth, ListenOptions, ServerConfig};

/// Examples shown under `pki-server --help`.
const EXAMPLES: &str = "\
Examples:
  # First start: enroll with a one-time token (the CA must be serving)
  PKI_TOKEN=$(pki-ca token --name app.pki.test) pki-server --name app.pki.test

  # On a new host: fetch the root, pinned by the fingerprint `pki-ca init` printed
  PKI_TOKEN=... pki-server --ca-url https://ca.example:8443 --root-fingerprint AB:CD:...

  # A second server in the same directory keeps its own files
  PKI_TOKEN=$(pki-ca token --name api.pki.test) pki-server --name api.pki.test \\
    --listen 127.0.0.1:9444 --cert certs/api.pem --key certs/api.key

  # Later starts reuse (or renew) the certificate: no token needed
  pki-server --require-client-cert";

#[derive(Parser)]
#[command(
    name = "pki-server",
    version,
    about = "The application server: enrolls for its certificate, then serves clients",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Option<ServerCommand>,
    /// Where to listen for clients, address:port.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// A name to enroll for and answer to (repeatable; the first is primary).
    #[arg(long = "name", default_values = ["app.pki.test"])]
    names: Vec<String>,
    /// Directory holding ca.pem, server.key and server.pem.
    #[arg(long, env = "PKI_CERTS_DIR", default_value = "certs")]
    dir: PathBuf,
    /// The server's certificate, written on enrollment and renewal
    /// [default: server.pem in --dir]. Give each server sharing a
    /// directory its own.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The server's private key, mode 0600 [default: server.key in --dir].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The CA's URL, for enrollment, renewal and the CRL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    ca_url: String,
    /// The SHA-256 fingerprint of the CA root (as `pki-ca init` prints it).
    /// When ca.pem is missing, the root is fetched from --ca-url and kept
    /// only if it matches; an existing ca.pem must match too.
    #[arg(long, env = "PKI_ROOT_FINGERPRINT", value_name = "FP")]
    root_fingerprint: Option<Fingerprint>,
    /// The name the CA's certificate must carry (default: the URL's host).
    #[arg(long)]
    ca_name: Option<String>,
    /// An enrollment token from `pki-ca token`, used if enrollment is needed.
    /// Prefer the PKI_TOKEN variable or --token-file: other local users can
    /// read a value given here in the process table.
    #[arg(long, env = "PKI_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the enrollment token (mode 0600, like a key file).
    #[arg(long, env = "PKI_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// How long to keep retrying while the CA cannot be reached.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    enroll_deadline: Duration,
    /// Lifetime of granted sessions.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    session_lifetime: Duration,
    /// Require every client to present a certificate from the CA (mutual TLS).
    #[arg(long)]
    require_client_cert: bool,
    /// Largest protocol frame accepted, in bytes.
    #[arg(long, default_value_t = pki_common::proto::DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// How long the TLS handshake and steps 3 to 6 may take together.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// How long a connection may wait for its next request.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Connections served at once; more are closed at once.
    #[arg(long, default_value_t = ServerConfig::default().listener.max_connections)]
    max_connections: usize,
    /// Requests one session may carry on one connection.
    #[arg(long, default_value_t = ServerConfig::default().max_requests_per_session)]
    max_requests_per_session: u64,
    /// The session ticket keys, shared by every replica that resumes this
    /// server's sessions [default: ticket.key in --dir, created if missing].
    #[arg(long, value_name = "FILE", env = "PKI_TICKET_KEY")]
    ticket_key: Option<PathBuf>,
    /// How often the ticket key file is read again; SIGHUP reads it at once.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    ticket_key_poll: Duration,
    /// Allowed clock skew for protocol timestamps.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    skew: Duration,
    /// Show what the protocol puts inside TLS: each frame's kind, length
    /// and first bytes of ciphertext, the TLS exporter's and transcript
    /// hashes' first bytes, and fingerprints of keys. Never a secret key.
    #[arg(long)]
    wire: bool,
    /// Serve Prometheus /metrics and /health in plain HTTP on this
    /// address. Off unless given; given alone it is 127.0.0.1:9442, a loopback
    /// address: the endpoint has no TLS and no authentication, so it is for
    /// a scraper on this host unless you name another address.
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:9442")]
    metrics_listen: Option<SocketAddr>,
    /// Log format on stderr: text (a line per event, for people) or json
    /// (a JSON object per line, for log pipelines).
    #[arg(long, global = true, env = "PKI_LOG_FORMAT", default_value = "text")]
    log_format: pki_common::logging::LogFormat,
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Manage the session ticket key file (--ticket-key, default
    /// ticket.key in --dir). Copy the file to every replica afterwards; a
    /// running server reads it within --ticket-key-poll, or on SIGHUP.
    #[command(after_help = "\
Examples:
  pki-server ticket-key rotate     # new current key; the old one still opens tickets
  pki-server ticket-key retire     # drop the previous key: tickets under it stop working
  pkill -HUP pki-server            # apply now")]
    TicketKey {
        #[command(subcommand)]
        action: TicketKeyAction,
    },
    /// Print a shell completion script on stdout.
    #[command(after_help = "\
Examples:
  pki-server completions bash > /etc/bash_completion.d/pki-server
  pki-server completions fish > ~/.config/fish/completions/pki-server.fish")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    pki_common::cli::init();
    pki_common::cli::finish("pki-server", run().map(|()| ExitCode::SUCCESS))
}

fn run() -> anyhow::Result<()> {
    let (cli, token_on_command_line) = parse_cli();
    match cli.command {
        Some(ServerCommand::Completions { shell }) => return completions(shell),
        Some(ServerCommand::TicketKey { action }) => {
            let path = cli.ticket_key.unwrap_or_else(|| cli.dir.join("ticket.key"));
            return ticket_key(&path, action);
        }
        None => {}
    }
    pki_common::logging::init_with(cli.log_format);
    let token = enrollment_token(cli.token, cli.token_file.as_deref(), token_on_command_line)?;
    let config = ServerConfig {
        listener: ListenOptions {
            listen: cli.listen,
            max_connections: cli.max_connections,
            handshake_timeout: cli.handshake_timeout,
            ..ListenOptions::on(cli.listen)
        },
        names: cli.names,
        certs_dir: cli.dir,
        cert_file: cli.cert,
        key_file: cli.key,
        root_fingerprint: cli.root_fingerprint,
        enrollment: Enrollment {
            ca_url: cli.ca_url,
            ca_name: cli.ca_name,
            token,
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
        wire: pki_common::proto::view::WireView::new(cli.wire),
        max_frame: cli.max_frame,
        idle_timeout: cli.idle_timeout,
        max_requests_per_session: cli.max_requests_per_session,
        ticket_key_file: cli.ticket_key,
        ticket_key_poll: cli.ticket_key_poll,
        metrics_listen: cli.metrics_listen,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        // One signal listener from the start: a signal during phase 1
        // (which may wait for the CA) stops the server as cleanly as later.
        let shutdown = pki_common::shutdown::on_os_signal();
        let mut during_start = shutdown.clone();
        let server = tokio::select! {
            s = AppServer::start(config) => s.context("cannot start")?,
            _ = during_start.wait() => return Ok(()),
        };
        server.run(shutdown).await.context("stopped")?;
        tracing::info!("server stopped");
        Ok(())
    })
}

#[derive(Subcommand)]
enum TicketKeyAction {
    /// A fresh current key; the old current key stays as the previous one.
    Rotate,
    /// Drop the previous key.
    Retire,
}

/// `pki-server ticket-key rotate|retire`.
fn ticket_key(path: &Path, action: TicketKeyAction) -> anyhow::Result<()> {
    let keys = match action {
        TicketKeyAction::Rotate => pki_server::tickets::rotate(path),
        TicketKeyAction::Retire => pki_server::tickets::retire(path),
    }
    .with_context(|| format!("cannot update the ticket key file {}", path.display()))?;
    println!("current: {}", hex::encode(keys.current.id()));
    match &keys.previous {
        Some(k) => println!("previous: {} (still opens tickets)", hex::encode(k.id())),
        None => println!("previous: none"),
    }
    println!(
        "wrote {}; copy it to every replica, then `pkill -HUP pki-server` (or wait --ticket-key-poll)",
        path.display()
    );
    Ok(())
}

/// `pki-server completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "pki-server", &mut std::io::stdout());
    Ok(())
}

/// Parses the command line, and tells whether `--token` was given on it
/// (rather than in `PKI_TOKEN`), which deserves a warning.
fn parse_cli() -> (Cli, bool) {
    let matches = Cli::command().get_matches();
    let on_command_line = matches.value_source("token") == Some(ValueSource::CommandLine);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, on_command_line)
}

/// The enrollment token from `--token`/`PKI_TOKEN` or `--token-file`,
/// warning when it was typed on the command line, where `ps` and
/// `/proc/<pid>/cmdline` show it to every local user until the server exits.
fn enrollment_token(
    token: Option<String>,
    token_file: Option<&Path>,
    on_command_line: bool,
) -> anyhow::Result<Option<String>> {
    if on_command_line {
        tracing::warn!("{}", pki_common::files::TOKEN_ON_COMMAND_LINE);
    }
    match token_file {
        Some(path) => Ok(Some(pki_common::files::read_token_file(path)?)),
        None => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (unique ids, valid defaults, …),
    /// which otherwise run only when a flag is parsed.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

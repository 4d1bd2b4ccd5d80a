//! `pki-client`: the client's command line.
//!
//! Usage:
//!   pki-client [--server 127.0.0.1:9443] [--name app.pki.test]
//!              [--ca certs/ca.pem] [--id client1]
//!              [--ca-url https://127.0.0.1:8443 | --crl FILE | --insecure-skip-revocation]
//!              request memo
//!
//! Prints the response data on stdout and narrates steps 3 to 8 on stderr.
//! Exits 0 on success, otherwise non-zero with a one-line reason.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use pki_client::revocation::CrlSource;
use pki_client::{request_once, ClientConfig};
use pki_common::proto::message::Status;

#[derive(Parser)]
#[command(name = "pki-client", version, about = "The client")]
struct Cli {
    /// The application server, host:port.
    #[arg(long, default_value = "127.0.0.1:9443")]
    server: String,
    /// The identity the server's certificate must carry.
    #[arg(long, default_value = "app.pki.test")]
    name: String,
    /// The CA root certificate, the only trust anchor.
    #[arg(long, default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// The client id to register as.
    #[arg(long, default_value = "client1")]
    id: String,
    /// The CA to fetch the current CRL from.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    ca_url: String,
    /// Check revocation against this CRL file (PEM or DER) instead of fetching one.
    #[arg(long, conflicts_with = "insecure_skip_revocation")]
    crl: Option<PathBuf>,
    /// INSECURE: do not check revocation at all.
    #[arg(long)]
    insecure_skip_revocation: bool,
    /// Allowed clock skew for protocol timestamps.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    skew: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register with the server and send one request (e.g. memo, whoami, echo).
    Request {
        name: String,
        /// The request body.
        #[arg(long, default_value = "")]
        body: String,
    },
}

fn main() -> ExitCode {
    pki_common::logging::init();
    let cli = Cli::parse();
    let config = ClientConfig {
        server: cli.server,
        name: cli.name,
        ca: cli.ca,
        client_id: cli.id,
        skew_secs: cli.skew.as_secs(),
        crl: match (cli.crl, cli.insecure_skip_revocation) {
            (_, true) => CrlSource::InsecureSkip,
            (Some(path), false) => CrlSource::File(path),
            (None, false) => CrlSource::Fetch { ca_url: cli.ca_url },
        },
        ..ClientConfig::default()
    };
    let Command::Request { name, body } = cli.command;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pki-client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(request_once(&config, &name, body.as_bytes())) {
        Ok(response) => {
            println!("{}", String::from_utf8_lossy(&response.data));
            match response.status {
                Status::Ok => ExitCode::SUCCESS,
                other => {
                    eprintln!("pki-client: the server answered {other:?}");
                    ExitCode::from(3)
                }
            }
        }
        Err(e) => {
            eprintln!("pki-client: {e}");
            ExitCode::FAILURE
        }
    }
}

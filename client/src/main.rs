//! `pki-client`: the client's command line.
//!
//! Usage:
//!   pki-client [--server 127.0.0.1:9443] [--name app.pki.test]
//!              [--ca certs/ca.pem] [--id client1]
//!              [--ca-url https://127.0.0.1:8443 | --crl FILE | --insecure-skip-revocation]
//!              request memo
//!   pki-client enroll [--token-file F] [--as client1.pki.test]   certs/client.{key,pem}
//!   pki-client renew                                             renew them with themselves
//!
//! `request` prints the response data on stdout and narrates steps 3 to 8
//! on stderr. It presents certs/client.pem when it exists. Every command
//! exits 0 on success, otherwise non-zero with a one-line reason.
//!
//! `enroll` takes its token from `PKI_TOKEN` or a mode-0600 `--token-file`;
//! `--token` works but warns, as the process table shows it to every user.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use rustls::pki_types::CertificateDer;

use pki_client::CrlSource;
use pki_client::{
    enroll_client, load_identity, renew_client, request_once, ClientConfig, ClientError,
};
use pki_common::ca::enroll::KeyFiles;
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
    /// The client id to register as (default: the name in the client
    /// certificate, or client1 without one).
    #[arg(long)]
    id: Option<String>,
    /// The CA: where the CRL is fetched, and where enroll and renew go.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    ca_url: String,
    /// The name the CA's certificate must carry (default: the URL's host).
    #[arg(long)]
    ca_name: Option<String>,
    /// Check revocation against this CRL file (PEM or DER) instead of fetching one.
    #[arg(long, conflicts_with = "insecure_skip_revocation")]
    crl: Option<PathBuf>,
    /// INSECURE: do not check revocation at all.
    #[arg(long)]
    insecure_skip_revocation: bool,
    /// The client's certificate, presented to servers that ask for one.
    #[arg(long, default_value = "certs/client.pem")]
    cert: PathBuf,
    /// The client's private key (PKCS#8 PEM, mode 0600).
    #[arg(long, default_value = "certs/client.key")]
    key: PathBuf,
    /// Do not present a client certificate even if there is one.
    #[arg(long)]
    no_client_cert: bool,
    /// Allowed clock skew for protocol timestamps.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    skew: Duration,
    /// Log format on stderr: text (a line per event, for people) or json
    /// (a JSON object per line, for log pipelines).
    #[arg(long, global = true, env = "PKI_LOG_FORMAT", default_value = "text")]
    log_format: pki_common::logging::LogFormat,
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
    /// Make a key here and enroll for a client certificate with a token.
    Enroll {
        /// A client-profile token from `pki-ca token --profile client`.
        /// Prefer the PKI_TOKEN variable or --token-file: other local users
        /// can read a value given here in the process table.
        #[arg(
            long,
            env = "PKI_TOKEN",
            hide_env_values = true,
            required_unless_present = "token_file"
        )]
        token: Option<String>,
        /// A file holding the token (mode 0600, like a key file).
        #[arg(long, env = "PKI_TOKEN_FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// The identity to enroll for; it becomes the client id.
        #[arg(long = "as", default_value = "client1.pki.test")]
        identity: String,
        /// Enroll even if the current certificate is still good.
        #[arg(long)]
        force: bool,
    },
    /// Renew the client certificate, authenticating with it (new key).
    Renew,
}

fn main() -> ExitCode {
    pki_common::cli::init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    pki_common::logging::init_with(cli.log_format);
    let token_on_command_line = matches
        .subcommand_matches("enroll")
        .and_then(|m| m.value_source("token"))
        == Some(ValueSource::CommandLine);
    if token_on_command_line {
        tracing::warn!("{}", pki_common::files::TOKEN_ON_COMMAND_LINE);
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => pki_common::cli::finish("pki-client", runtime.block_on(run(cli))),
        Err(e) => pki_common::cli::finish("pki-client", Err::<ExitCode, _>(e)),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, ClientError> {
    let files = KeyFiles {
        key: cli.key.clone(),
        cert: cli.cert.clone(),
    };
    let root = pki_common::files::read_cert(&cli.ca)?;
    match &cli.command {
        Command::Enroll {
            token,
            token_file,
            identity,
            force,
        } => {
            let token = match (token_file, token) {
                (Some(path), _) => pki_common::files::read_token_file(path)?,
                (None, Some(token)) => token.clone(),
                // clap requires one of the two; this only guards a change.
                (None, None) => return Err(ClientError::NoToken),
            };
            let e = enroll_client(
                &cli.ca_url,
                cli.ca_name.as_deref(),
                &root,
                &files,
                identity,
                &token,
                *force,
            )
            .await?;
            println!(
                "{} (serial {}, valid until {})",
                files.cert.display(),
                e.info.serial_hex,
                e.info.not_after_rfc3339()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Renew => {
            let e = renew_client(&cli.ca_url, cli.ca_name.as_deref(), &root, &files).await?;
            println!(
                "{} renewed (serial {}, valid until {})",
                files.cert.display(),
                e.info.serial_hex,
                e.info.not_after_rfc3339()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Request { name, body } => {
            let config = request_config(&cli, &files, &root)?;
            let response = request_once(&config, name, body.as_bytes()).await?;
            println!("{}", String::from_utf8_lossy(&response.data));
            Ok(match response.status {
                Status::Ok => ExitCode::SUCCESS,
                other => {
                    eprintln!("pki-client: the server answered {other:?}");
                    ExitCode::from(3)
                }
            })
        }
    }
}

/// The configuration for `request`, from the flags and the client's
/// certificate. Without `--id` the client registers under the name its
/// certificate proves, so the server can bind the id to the certificate.
fn request_config(
    cli: &Cli,
    files: &KeyFiles,
    root: &CertificateDer<'static>,
) -> Result<ClientConfig, ClientError> {
    let identity = if cli.no_client_cert {
        None
    } else {
        load_identity(files, root)?
    };
    let client_id = cli.id.clone().unwrap_or_else(|| {
        identity
            .as_ref()
            .and_then(|i| i.info.dns_names.first().cloned())
            .unwrap_or_else(|| "client1".into())
    });
    Ok(ClientConfig {
        server: cli.server.clone(),
        name: cli.name.clone(),
        ca: cli.ca.clone(),
        client_id,
        skew_secs: cli.skew.as_secs(),
        crl: match (&cli.crl, cli.insecure_skip_revocation) {
            (_, true) => CrlSource::InsecureSkip,
            (Some(path), false) => CrlSource::File(path.clone()),
            (None, false) => CrlSource::Cached {
                ca_url: cli.ca_url.clone(),
                ca_name: cli.ca_name.clone(),
                cache: pki_client::crl_cache_path(&cli.ca),
            },
        },
        identity,
        ..ClientConfig::default()
    })
}

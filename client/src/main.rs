//! `pki-client`: the client's command line.
//!
//! Usage:
//!   pki-client [--server 127.0.0.1:9443] [--name app.pki.test]
//!              [--ca certs/ca.pem] [--id client1]
//!              [--ca-url https://127.0.0.1:8443 | --crl FILE | --insecure-skip-revocation]
//!              request memo
//!   pki-client enroll [--token-file F] [--as client1.pki.test]   certs/client.{key,pem}
//!   pki-client renew                                             renew them with themselves
//!   pki-client completions bash                                  a completion script
//!
//! Every option may come before or after the subcommand. With
//! `--root-fingerprint FP`, a missing `--ca` file is fetched from
//! `--ca-url` first and kept only if its SHA-256 is FP.
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
use pki_common::ca::bootstrap::{ensure_root, Fingerprint};
use pki_common::ca::enroll::{Enrollment, KeyFiles, Retry};
use pki_common::proto::message::Status;

/// Examples shown under `pki-client --help`.
const EXAMPLES: &str = "\
Examples:
  # First contact on a new host: fetch the root, pinned by the fingerprint
  # that `pki-ca init` printed, then enroll with a client token
  PKI_TOKEN=$(pki-ca token --profile client --name client1.pki.test) \\
    pki-client enroll --ca-url https://127.0.0.1:8443 --root-fingerprint AB:CD:...

  # One request to the application server, verified against certs/ca.pem
  pki-client request memo --server 127.0.0.1:9443 --name app.pki.test

Options go before or after the subcommand; PKI_CERTS_DIR sets --dir.";

/// The heading of the options every subcommand takes.
const GLOBAL: &str = "Global options (before or after the subcommand)";

#[derive(Parser)]
#[command(
    name = "pki-client",
    version,
    about = "The client: enrolls for its own certificate and talks to the application server",
    after_help = EXAMPLES
)]
struct Cli {
    /// Directory holding ca.pem, client.pem and client.key (the defaults of
    /// --ca, --cert and --key).
    #[arg(long, global = true, help_heading = GLOBAL, env = "PKI_CERTS_DIR", default_value = "certs")]
    dir: PathBuf,
    /// Where `request` keeps its session ticket between runs (mode 0600),
    /// to resume the session instead of registering [default:
    /// client.ticket beside the root, --ca, as the CRL cache is].
    #[arg(long, global = true, value_name = "FILE")]
    ticket: Option<PathBuf>,
    /// Register anew every time: neither use nor keep a session ticket.
    #[arg(long, global = true)]
    no_ticket: bool,
    /// The application server, host:port.
    #[arg(long, global = true, help_heading = GLOBAL, default_value = "127.0.0.1:9443")]
    server: String,
    /// The identity the server's certificate must carry.
    #[arg(long, global = true, help_heading = GLOBAL, default_value = "app.pki.test")]
    name: String,
    /// The CA root certificate, the only trust anchor [default: ca.pem in --dir].
    #[arg(long, global = true, help_heading = GLOBAL)]
    ca: Option<PathBuf>,
    /// The SHA-256 fingerprint of the CA root (as `pki-ca init` prints it).
    /// When the --ca file is missing, the root is fetched from --ca-url and
    /// kept only if it matches; an existing file must match too.
    #[arg(long, global = true, help_heading = GLOBAL, env = "PKI_ROOT_FINGERPRINT", value_name = "FP")]
    root_fingerprint: Option<Fingerprint>,
    /// The client id to register as (default: the name in the client
    /// certificate, or client1 without one).
    #[arg(long, global = true, help_heading = GLOBAL)]
    id: Option<String>,
    /// The CA: where the CRL is fetched, and where enroll and renew go.
    #[arg(long, global = true, help_heading = GLOBAL, default_value = "https://127.0.0.1:8443")]
    ca_url: String,
    /// The name the CA's certificate must carry (default: the URL's host).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "NAME")]
    ca_name: Option<String>,
    /// How long to keep retrying while the CA cannot be reached (enroll,
    /// and fetching the root with --root-fingerprint).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    enroll_deadline: Duration,
    /// Check revocation against this CRL file (PEM or DER) instead of fetching one.
    #[arg(long, global = true, help_heading = GLOBAL, conflicts_with = "insecure_skip_revocation")]
    crl: Option<PathBuf>,
    /// INSECURE: do not check revocation at all.
    #[arg(long, global = true, help_heading = GLOBAL)]
    insecure_skip_revocation: bool,
    /// The client's certificate, presented to servers that ask for one
    /// [default: client.pem in --dir].
    #[arg(long, global = true, help_heading = GLOBAL)]
    cert: Option<PathBuf>,
    /// The client's private key, PKCS#8 PEM, mode 0600 [default: client.key
    /// in --dir].
    #[arg(long, global = true, help_heading = GLOBAL)]
    key: Option<PathBuf>,
    /// Do not present a client certificate even if there is one.
    #[arg(long, global = true, help_heading = GLOBAL)]
    no_client_cert: bool,
    /// Allowed clock skew for protocol timestamps.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    skew: Duration,
    /// Show what the protocol puts inside TLS: each frame's kind, length
    /// and first bytes of ciphertext, the TLS exporter's and transcript
    /// hashes' first bytes, and fingerprints of keys. Never a secret key.
    #[arg(long, global = true, help_heading = GLOBAL)]
    wire: bool,
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
    #[command(after_help = "\
Examples:
  pki-client request memo
  pki-client request echo --body hello --server 127.0.0.1:9443 --name app.pki.test
  pki-client request whoami --crl certs/ca.crl.pem")]
    Request {
        /// The request: memo, whoami or echo.
        // Not `name`: that id is the global `--name`, the server's.
        #[arg(value_name = "REQUEST")]
        request: String,
        /// The request body.
        #[arg(long, default_value = "")]
        body: String,
    },
    /// Make a key here and enroll for a client certificate with a token.
    #[command(after_help = "\
Examples:
  PKI_TOKEN=$(pki-ca token --profile client --name client1.pki.test) \\
    pki-client enroll --as client1.pki.test --ca-url https://127.0.0.1:8443
  pki-client enroll --token-file token.txt --enroll-deadline 10s")]
    Enroll {
        /// A client-profile token from `pki-ca token --profile client`.
        /// Prefer the PKI_TOKEN variable or --token-file: other local users
        /// can read a value given here in the process table.
        #[arg(long, env = "PKI_TOKEN", hide_env_values = true)]
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
    #[command(after_help = "\
Example:
  pki-client renew --ca-url https://127.0.0.1:8443")]
    Renew,
    /// Print a shell completion script on stdout.
    #[command(after_help = "\
Examples:
  pki-client completions bash > /etc/bash_completion.d/pki-client
  pki-client completions zsh > \"${fpath[1]}/_pki-client\"")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// The file of `flag`, or `name` in `--dir`.
    fn file(&self, flag: &Option<PathBuf>, name: &str) -> PathBuf {
        flag.clone().unwrap_or_else(|| self.dir.join(name))
    }

    fn ca_file(&self) -> PathBuf {
        self.file(&self.ca, "ca.pem")
    }

    fn retry(&self) -> Retry {
        Retry {
            deadline: self.enroll_deadline,
            ..Retry::default()
        }
    }
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
    if let Command::Completions { shell } = cli.command {
        return Ok(completions(shell));
    }
    let files = KeyFiles {
        key: cli.file(&cli.key, "client.key"),
        cert: cli.file(&cli.cert, "client.pem"),
    };
    let root = root(&cli).await?;
    match &cli.command {
        Command::Completions { .. } => Ok(ExitCode::SUCCESS),
        Command::Enroll {
            token,
            token_file,
            identity,
            force,
        } => {
            let ca = Enrollment {
                ca_url: cli.ca_url.clone(),
                ca_name: cli.ca_name.clone(),
                token: enrollment_token(token.as_deref(), token_file.as_deref())?,
                retry: cli.retry(),
            };
            let e = enroll_client(&ca, &root, &files, identity, *force).await?;
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
        Command::Request { request, body } => {
            let config = request_config(&cli, &files, &root)?;
            let response = request_once(&config, request, body.as_bytes()).await?;
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

/// `pki-client completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "pki-client", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// The token from `--token-file`, or from `--token`/`PKI_TOKEN`.
/// The token from `--token-file` or `--token`/`PKI_TOKEN`, if any. An empty
/// value (`PKI_TOKEN=`) counts as none: it is a forgotten variable, not a
/// token to send. Whether one is needed is decided later: a certificate
/// that is still good is kept without one.
fn enrollment_token(
    token: Option<&str>,
    token_file: Option<&std::path::Path>,
) -> Result<Option<String>, ClientError> {
    match (token_file, token.map(str::trim)) {
        (Some(path), _) => Ok(Some(pki_common::files::read_token_file(path)?)),
        (None, Some(token)) if !token.is_empty() => Ok(Some(token.to_string())),
        (None, _) => Ok(None),
    }
}

/// The root to trust: `--ca`, fetched first from `--ca-url` when it is
/// missing and `--root-fingerprint` pins it (see
/// `pki_common::ca::bootstrap`).
async fn root(cli: &Cli) -> Result<CertificateDer<'static>, ClientError> {
    let path = cli.ca_file();
    match &cli.root_fingerprint {
        Some(fp) => {
            Ok(ensure_root(&path, &cli.ca_url, cli.ca_name.as_deref(), fp, cli.retry()).await?)
        }
        None if !path.exists() => Err(ClientError::NoRoot(path.display().to_string())),
        None => Ok(pki_common::files::read_cert(&path)?),
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
        ca: cli.ca_file(),
        client_id,
        skew_secs: cli.skew.as_secs(),
        crl: match (&cli.crl, cli.insecure_skip_revocation) {
            (_, true) => CrlSource::InsecureSkip,
            (Some(path), false) => CrlSource::File(path.clone()),
            (None, false) => CrlSource::Cached {
                ca_url: cli.ca_url.clone(),
                ca_name: cli.ca_name.clone(),
                cache: pki_client::crl_cache_path(&cli.ca_file()),
            },
        },
        identity,
        wire: pki_common::proto::view::WireView::new(cli.wire),
        ticket_file: (!cli.no_ticket).then(|| {
            cli.ticket
                .clone()
                .unwrap_or_else(|| pki_client::ticket::default_path(&cli.ca_file()))
        }),
        ..ClientConfig::default()
    })
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

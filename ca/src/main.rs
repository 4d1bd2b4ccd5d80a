//! `pki-ca`: the certificate authority's command line.
//!
//! Usage:
//!   pki-ca init [--force] [--root-dir DIR]      create the root and an intermediate in certs/
//!   pki-ca token --name app.pki.test [--profile server] [--ttl 15m]
//!   pki-ca serve [--listen 127.0.0.1:8443]      the HTTPS API
//!   pki-ca revoke --serial <hex>|--cert FILE [--reason keyCompromise] [--ca-url URL]
//!   pki-ca revoke --intermediate <id> [--root-dir DIR]   (where the root key is)
//!   pki-ca intermediate [--root-dir DIR]        a new intermediate (where the root key is)
//!   pki-ca root-crl [--root-dir DIR]            re-sign the root CRL (where the root key is)
//!   pki-ca list [--json]                        every certificate, its status and renewal chain
//!   pki-ca completions bash                     a shell completion script
//!
//! Only `init`, `intermediate`, `root-crl` and `serve` create files (and
//! `token` and `revoke` write to an existing CA's ledger); with a mistyped
//! `--dir` every command reports "no CA root" and leaves nothing behind.
//! Only `init`, `intermediate`, `revoke --intermediate` and `root-crl`
//! read the root key; `serve` never does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand};

use pki_ca::authority::{Intermediate, RootAuthority};
use pki_ca::keyfile::Passphrase;
use pki_ca::ledger::{IssuedRecord, Revocation, Status};
use pki_ca::policy::IssuancePolicy;
use pki_ca::root::{InitOptions, InitOutcome, IntermediateOptions, RootSigner};
use pki_ca::serve::{CaServer, ServeOptions};
use pki_ca::{Ca, CaPaths};
use pki_common::ca::bootstrap::Fingerprint;
use pki_common::ca::client::CaClient;
use pki_common::cert::Profile;
use pki_common::revocation::Reason;

/// Examples shown under `pki-ca --help`: the first run, start to finish.
const EXAMPLES: &str = "\
Examples:
  pki-ca init                                   # root and intermediate in certs/, prints the root's fingerprint
  PKI_ROOT_PASSPHRASE=... pki-ca init --root-dir /media/offline   # the root key encrypted, elsewhere
  pki-ca serve --listen 127.0.0.1:8443          # the HTTPS API (leave it running)
  pki-ca token --name app.pki.test              # a one-time token for a server
  pki-ca token --profile client --name client1.pki.test
  pki-ca list                                   # every certificate issued
  pki-ca revoke --cert certs/server.pem --reason keyCompromise

Every command takes --dir (or PKI_CERTS_DIR); only init, intermediate, root-crl and serve create files.
The root key is read only by init, intermediate, revoke --intermediate and root-crl (--root-dir).";

#[derive(Parser)]
#[command(
    name = "pki-ca",
    version,
    about = "An online certificate authority",
    after_help = EXAMPLES
)]
struct Cli {
    /// The online CA's directory: ca.pem (the root certificate),
    /// intermediates/, the ledger and the CRLs.
    #[arg(long, global = true, env = "PKI_CERTS_DIR", default_value = "certs")]
    dir: PathBuf,
    /// Log format on stderr: text (a line per event, for people) or json
    /// (a JSON object per line, for log pipelines).
    #[arg(long, global = true, env = "PKI_LOG_FORMAT", default_value = "text")]
    log_format: pki_common::logging::LogFormat,
    /// The ledger: a postgres:// URL, for CA replicas sharing one
    /// database (add ?sslmode=require and --ledger-ca for TLS). Without
    /// it: the SQLite file ca-ledger.sqlite in --dir.
    #[arg(
        long,
        global = true,
        env = "PKI_LEDGER_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    ledger: Option<String>,
    /// With --ledger ...?sslmode=require: the CA certificate(s) the
    /// database's TLS certificate must chain to (PEM).
    #[arg(long, global = true, env = "PKI_LEDGER_CA", value_name = "FILE")]
    ledger_ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where this invocation's ledger is (`--ledger`, `--ledger-ca`), set
/// once from the command line: every command that opens the CA opens the
/// same ledger.
static LEDGER: std::sync::OnceLock<(Option<String>, Option<PathBuf>)> = std::sync::OnceLock::new();

/// The TLS settings for the database, from `--ledger-ca`.
fn ledger_tls(ca: Option<&PathBuf>) -> anyhow::Result<Option<rustls::ClientConfig>> {
    let Some(path) = ca else { return Ok(None) };
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read --ledger-ca {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls::pki_types::CertificateDer =
            cert.with_context(|| format!("{}: not PEM certificates", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{}: an unusable CA certificate", path.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(pki_common::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(config))
}

/// Opens the CA with `policy` and this invocation's ledger.
fn open_with(paths: &CaPaths, policy: IssuancePolicy) -> anyhow::Result<Ca> {
    let (url, ca) = LEDGER.get().cloned().unwrap_or_default();
    let tls = ledger_tls(ca.as_ref())?;
    Ca::open_with_url(paths, policy, url.as_deref(), tls).context("cannot open the CA")
}

#[derive(Subcommand)]
enum Command {
    /// Create the root (key and self-signed certificate) and an issuing
    /// intermediate signed by it (kept if present).
    #[command(after_help = "\
Examples:
  pki-ca init                       # prints the files and the root's SHA-256 fingerprint
  pki-ca --dir /srv/pki init --validity 1825days
  PKI_ROOT_PASSPHRASE=... pki-ca init --root-dir /media/offline --permit-dns pki.test --permit-ip 127.0.0.0/8
  openssl x509 -in certs/ca.pem -noout -fingerprint -sha256   # the same fingerprint")]
    Init(InitArgs),
    /// Issue a new intermediate with the root key, to roll the current one
    /// over; run where the root key is. The old one stays, so the
    /// certificates it issued keep verifying; a serving CA issues under the
    /// new one within a second.
    #[command(after_help = "\
Examples:
  PKI_ROOT_PASSPHRASE=... pki-ca intermediate --root-dir /media/offline
  pki-ca intermediate --permit-dns pki.test --validity 365days")]
    Intermediate(IntermediateCmdArgs),
    /// Re-sign the root's CRL (revoked intermediates) before its
    /// nextUpdate; run where the root key is.
    #[command(after_help = "\
Examples:
  PKI_ROOT_PASSPHRASE=... pki-ca root-crl --root-dir /media/offline
  openssl crl -in certs/root.crl.pem -noout -text")]
    RootCrl(RootCrlArgs),
    /// Mint a one-time enrollment token; prints it alone on stdout.
    #[command(after_help = "\
Examples:
  pki-ca token --name app.pki.test
  pki-ca token --name app.pki.test --name 127.0.0.1 --ttl 1h
  pki-ca token --profile client --name client1.pki.test
  PKI_TOKEN=$(pki-ca token --name app.pki.test) pki-server")]
    Token(TokenArgs),
    /// Serve the HTTPS API, and ACME (RFC 8555) at /acme/directory.
    #[command(after_help = "\
Examples:
  pki-ca serve
  pki-ca serve --listen 0.0.0.0:8443 --name ca.example.org --cert-lifetime 7days
  pki-ca serve --acme-allow pki.test --acme-http-port 5002 --acme-resolve app.pki.test=127.0.0.1")]
    Serve(ServeArgs),
    /// Mint a one-time ACME external account binding key: prints its key
    /// id and HMAC key (certbot --eab-kid and --eab-hmac-key).
    #[command(after_help = "\
Examples:
  pki-ca eab
  pki-ca eab --valid 1day")]
    Eab(EabArgs),
    /// Revoke a certificate; works whether or not the CA is serving. An
    /// intermediate (--intermediate) is revoked on the root's CRL, where
    /// the root key is: every certificate it issued then fails.
    #[command(after_help = "\
Examples:
  pki-ca revoke --cert certs/server.pem --reason keyCompromise
  pki-ca revoke --serial 3f2a... --reason superseded --ca-url https://127.0.0.1:8443
  pki-ca revoke --intermediate 1a2b3c4d5e6f7a8b --reason cACompromise --root-dir /media/offline")]
    Revoke(RevokeArgs),
    /// List every issued certificate with its status.
    #[command(after_help = "\
Examples:
  pki-ca list
  pki-ca list --json | jq '.[] | select(.status == \"valid\") | .serial'")]
    List(ListArgs),
    /// Move the ledger between backends.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Describe certificate, CSR, CRL or key files (PEM or DER): names,
    /// issuer, validity, key, fingerprint, whether they chain to the root
    /// and are revoked. Without a file: every file in --dir, one line each.
    Inspect(InspectArgs),
    /// Print a shell completion script on stdout.
    #[command(after_help = "\
Examples:
  pki-ca completions bash > /etc/bash_completion.d/pki-ca
  pki-ca completions zsh > \"${fpath[1]}/_pki-ca\"")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

// The argument structs carry no doc comment of their own: the variant's
// doc above is the subcommand's help.

#[derive(Args)]
struct InitArgs {
    /// Replace an existing root (and its intermediates). Every certificate
    /// it issued stops verifying.
    #[arg(long)]
    force: bool,
    /// Root validity.
    #[arg(long, value_name = "DURATION", default_value = "3650days", value_parser = humantime::parse_duration)]
    validity: Duration,
    /// Intermediate validity (never past the root's).
    #[arg(long, value_name = "DURATION", default_value = "1825days", value_parser = humantime::parse_duration)]
    intermediate_validity: Duration,
    #[command(flatten)]
    root: RootArgs,
    #[command(flatten)]
    intermediate: IntermediateArgs,
}

/// Where the root key is, and its passphrase.
#[derive(Args)]
struct RootArgs {
    /// The directory of the root key (root.key); default: --dir. Keep it
    /// offline: only init, intermediate, revoke --intermediate and
    /// root-crl read it, never serve.
    #[arg(long, value_name = "DIR", env = "PKI_ROOT_DIR")]
    root_dir: Option<PathBuf>,
    /// A file (mode 0600) holding the root key's passphrase, or set
    /// PKI_ROOT_PASSPHRASE. Without either, init writes the root key
    /// unencrypted.
    #[arg(long, value_name = "FILE")]
    root_passphrase_file: Option<PathBuf>,
}

/// What goes into a new intermediate.
#[derive(Args)]
struct IntermediateArgs {
    /// NameConstraints: leaves may carry this DNS name and the names below
    /// it only (repeatable).
    #[arg(long = "permit-dns", value_name = "NAME", value_parser = permit_dns)]
    permit_dns: Vec<String>,
    /// NameConstraints: leaves may carry addresses in this range only, as
    /// CIDR (repeatable).
    #[arg(long = "permit-ip", value_name = "CIDR", value_parser = permit_ip)]
    permit_ip: Vec<String>,
    /// The plain-HTTP base URL (http://HOST:PORT) where the CA publishes
    /// CRLs and issuer certificates; the intermediate points at the root's
    /// there.
    #[arg(long, value_name = "URL", value_parser = public_url)]
    public_url: Option<String>,
    /// Validity of the root CRL signed now.
    #[arg(long, value_name = "DURATION", default_value = "30days", value_parser = humantime::parse_duration)]
    root_crl_interval: Duration,
}

impl IntermediateArgs {
    fn options(self, validity: Duration) -> IntermediateOptions {
        IntermediateOptions {
            validity,
            permit_dns: self.permit_dns,
            permit_ip: self.permit_ip,
            public_url: self.public_url,
            root_crl_interval: self.root_crl_interval,
        }
    }
}

#[derive(Args)]
struct IntermediateCmdArgs {
    /// Validity of the new intermediate (never past the root's).
    #[arg(long, value_name = "DURATION", default_value = "1825days", value_parser = humantime::parse_duration)]
    validity: Duration,
    #[command(flatten)]
    root: RootArgs,
    #[command(flatten)]
    intermediate: IntermediateArgs,
}

#[derive(Args)]
struct RootCrlArgs {
    #[command(flatten)]
    root: RootArgs,
    /// Validity of the root CRL; re-sign it before then.
    #[arg(long, value_name = "DURATION", default_value = "30days", value_parser = humantime::parse_duration)]
    root_crl_interval: Duration,
}

/// `--permit-dns`: a DNS name, checked as the CA will use it.
fn permit_dns(value: &str) -> Result<String, String> {
    pki_ca::root::parse_permit_dns(value).map_err(|e| e.to_string())
}

/// `--permit-ip`: CIDR, checked as the CA will use it.
fn permit_ip(value: &str) -> Result<String, String> {
    pki_ca::root::parse_permit_ip(value)
        .map(|_| value.trim().to_string())
        .map_err(|e| e.to_string())
}

/// `--public-url`: plain HTTP (a CRL fetched over TLS would need a CRL for
/// the TLS certificate itself, RFC 5280 §4.2.1.13), no trailing slash.
fn public_url(value: &str) -> Result<String, String> {
    let url = value.trim().trim_end_matches('/');
    match url.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']) => Ok(url.to_string()),
        _ => Err(format!("{value:?}: expected http://HOST:PORT (plain HTTP, no path): CRLs and certificates are signed, and fetching them over TLS would need revocation information for the TLS certificate itself")),
    }
}

#[derive(Args)]
struct TokenArgs {
    /// A DNS name or IP address the certificate may carry (repeatable).
    #[arg(long = "name", required = true)]
    names: Vec<String>,
    /// The kind of certificate the token is good for.
    #[arg(long, default_value = "server", value_parser = profile_parser())]
    profile: Profile,
    /// How long the token stays valid.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Mint this many tokens alike, one per line (for load runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
}

#[derive(Args)]
struct ServeArgs {
    /// Where to listen, address:port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Names on the CA's own TLS certificate (repeatable); callers check
    /// the host of their --ca-url against them.
    #[arg(long = "name", default_values = ["ca.pki.test", "127.0.0.1"])]
    names: Vec<String>,
    /// Lifetime of issued certificates.
    #[arg(long, value_name = "DURATION", default_value = "30days", value_parser = humantime::parse_duration)]
    cert_lifetime: Duration,
    /// Validity of each CRL; a new one is published after half of it.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    crl_interval: Duration,
    /// Largest request body accepted, in bytes (larger gets 413).
    #[arg(long, default_value_t = pki_ca::http::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Connections served at once; more are closed at once.
    #[arg(long, default_value_t = ServeOptions::default().listener.max_connections)]
    max_connections: usize,
    /// How long a TLS handshake may take.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// How long a request's headers may take to arrive (after the
    /// handshake, or while a kept-alive connection is idle), and again its
    /// body after them; a slower client is cut off (408 for a slow body).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Serve Prometheus /metrics and /health in plain HTTP on this
    /// address. Off unless given; given alone it is 127.0.0.1:8442, a loopback
    /// address: the endpoint has no TLS and no authentication, so it is for
    /// a scraper on this host unless you name another address.
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8442")]
    metrics_listen: Option<SocketAddr>,
    /// The base URL put in every issued certificate's CRL Distribution
    /// Points and AIA caIssuers, e.g. http://ca.example:8080: where any
    /// relying party (openssl, browsers) finds the issuer's CRL and
    /// certificate. Serve them there with --http-listen.
    #[arg(long, value_name = "URL", value_parser = public_url)]
    public_url: Option<String>,
    /// Serve /crl/<issuer>.crl and /issuer/<issuer>.crt in plain HTTP on
    /// this address (what --public-url points at). Plain HTTP on purpose:
    /// they are signed, and fetching them over TLS would need revocation
    /// information for the TLS certificate itself.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    #[command(flatten)]
    acme: AcmeArgs,
}

/// ACME (RFC 8555) at /acme/directory on the same listener.
#[derive(Args)]
struct AcmeArgs {
    /// A DNS suffix (app.pki.test and anything under it) or IP address
    /// ACME may issue for (repeatable). None given: ACME issues nothing.
    #[arg(long = "acme-allow", value_name = "SUFFIX")]
    allow: Vec<String>,
    /// The port http-01 validation connects to.
    #[arg(long = "acme-http-port", default_value_t = 80)]
    http_port: u16,
    /// The port tls-alpn-01 validation connects to.
    #[arg(long = "acme-tls-port", default_value_t = 443)]
    tls_port: u16,
    /// NAME=ADDRESS: validate NAME at ADDRESS instead of its DNS address
    /// (repeatable; for tests and private networks).
    #[arg(long = "acme-resolve", value_name = "NAME=ADDRESS", value_parser = resolve_override)]
    resolve: Vec<(String, std::net::IpAddr)>,
    /// Refuse new ACME accounts without an external account binding
    /// (keys from `pki-ca eab`).
    #[arg(long = "acme-eab-required")]
    eab_required: bool,
    /// New orders one account may create per hour.
    #[arg(long = "acme-orders-per-hour", default_value_t = 300)]
    orders_per_hour: u32,
    /// Certificates one name may get through ACME per hour.
    #[arg(long = "acme-certs-per-name-per-hour", default_value_t = 50)]
    certs_per_name_per_hour: u32,
    /// Turn ACME off.
    #[arg(long = "no-acme")]
    off: bool,
}

impl AcmeArgs {
    fn config(self) -> Option<pki_ca::acme::AcmeConfig> {
        (!self.off).then(|| pki_ca::acme::AcmeConfig {
            allow: self.allow,
            http_port: self.http_port,
            tls_port: self.tls_port,
            resolve: self.resolve.into_iter().collect(),
            eab_required: self.eab_required,
            orders_per_hour: self.orders_per_hour,
            certs_per_name_per_hour: self.certs_per_name_per_hour,
            ..pki_ca::acme::AcmeConfig::default()
        })
    }
}

fn resolve_override(text: &str) -> Result<(String, std::net::IpAddr), String> {
    let (name, addr) = text.split_once('=').ok_or_else(|| {
        format!("expected NAME=ADDRESS, e.g. app.pki.test=127.0.0.1, not {text:?}")
    })?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    Ok((name.to_ascii_lowercase(), addr))
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Copy the SQLite ledger (--from, default ca-ledger.sqlite in --dir)
    /// into an empty PostgreSQL ledger (--to), all or nothing, checking
    /// every table's row count before committing.
    #[command(after_help = "\
Examples:
  pki-ca ledger migrate --to postgres://pki@db.example/pki
  pki-ca --ledger postgres://pki@db.example/pki list   # then every command takes --ledger")]
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// The SQLite ledger to copy.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// The PostgreSQL ledger to fill (must hold no tokens or certificates).
    #[arg(long, value_name = "URL")]
    to: String,
}

#[derive(Args)]
struct EabArgs {
    /// How long the key may be used to create an account.
    #[arg(long, value_name = "DURATION", default_value = "7days", value_parser = humantime::parse_duration)]
    valid: Duration,
}

#[derive(Args)]
struct RevokeArgs {
    /// The serial, in hex as `pki-ca list` or `openssl x509 -serial` prints it.
    #[arg(long, required_unless_present_any = ["cert", "intermediate"], conflicts_with_all = ["cert", "intermediate"])]
    serial: Option<String>,
    /// Or an intermediate, by id (its file name in intermediates/) or
    /// serial: revoked on the root CRL, with the root key (--root-dir).
    #[arg(long, value_name = "ID", conflicts_with_all = ["cert", "ca_url"])]
    intermediate: Option<String>,
    #[command(flatten)]
    root: RootArgs,
    /// With --intermediate: validity of the root CRL signed now.
    #[arg(long, value_name = "DURATION", default_value = "30days", value_parser = humantime::parse_duration)]
    root_crl_interval: Duration,
    /// Or the certificate file (PEM) to revoke.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Why, as RFC 5280 names it; the CRL carries it to every party.
    #[arg(long, default_value = "unspecified", ignore_case = true, value_parser = reason_parser())]
    reason: Reason,
    /// Wait until the CA serving at this URL publishes the revocation.
    #[arg(long, value_name = "URL")]
    ca_url: Option<String>,
}

/// `--profile`'s values, listed in `--help` and checked by clap.
fn profile_parser() -> impl TypedValueParser<Value = Profile> {
    PossibleValuesParser::new([
        PossibleValue::new("server").help("a TLS server certificate (serverAuth), for pki-server"),
        PossibleValue::new("client").help("a TLS client certificate (clientAuth), for pki-client"),
    ])
    .try_map(|s| s.parse::<Profile>())
}

/// `--reason`'s values, listed in `--help`: every [`Reason`], so a reason
/// added there is offered here too.
fn reason_parser() -> impl TypedValueParser<Value = Reason> {
    PossibleValuesParser::new(
        Reason::ALL
            .iter()
            .map(|r| PossibleValue::new(r.as_str()).help(reason_help(*r))),
    )
    .try_map(|s| s.parse::<Reason>())
}

/// When to give each reason, for `pki-ca revoke --help`.
fn reason_help(reason: Reason) -> &'static str {
    match reason {
        Reason::Unspecified => "no reason given",
        Reason::KeyCompromise => "the certificate's private key was exposed or lost",
        Reason::CaCompromise => "the CA's own key was exposed",
        Reason::AffiliationChanged => "the holder's name or affiliation changed",
        Reason::Superseded => "replaced by a newer certificate",
        Reason::CessationOfOperation => "the certificate is no longer needed",
        Reason::PrivilegeWithdrawn => "the holder may no longer have it",
    }
}

#[derive(Args)]
struct InspectArgs {
    /// The files to describe; none: every PKI file in --dir.
    files: Vec<PathBuf>,
    /// The root to check against (default: ca.pem in --dir); the CRL is
    /// the ca.crl.pem next to it.
    #[arg(long)]
    ca: Option<PathBuf>,
}

#[derive(Args)]
struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    pki_common::cli::init();
    pki_common::cli::finish("pki-ca", run().map(|()| ExitCode::SUCCESS))
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    pki_common::logging::init_with(cli.log_format);
    let paths = CaPaths::new(&cli.dir);
    let _ = LEDGER.set((cli.ledger.clone(), cli.ledger_ca.clone()));
    match cli.command {
        Command::Init(args) => init(&paths, args),
        Command::Intermediate(args) => intermediate(&paths, args),
        Command::RootCrl(args) => root_crl(&paths, args),
        Command::Token(args) => token(&paths, args),
        Command::Serve(args) => serve(&paths, args),
        Command::Eab(args) => eab(&paths, args),
        Command::Revoke(args) => revoke(&paths, args),
        Command::List(args) => list(&paths, args),
        Command::Inspect(args) => inspect(&paths, args),
        Command::Ledger(LedgerCommand::Migrate(args)) => ledger_migrate(&paths, args),
        Command::Completions { shell } => completions(shell),
    }
}

/// `pki-ca completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "pki-ca", &mut std::io::stdout());
    Ok(())
}

/// Opens the CA for a one-shot command, which issues nothing, so the
/// default policy serves.
fn open(paths: &CaPaths) -> anyhow::Result<Ca> {
    open_with(paths, IssuancePolicy::default())
}

/// The CA's paths with the root key in `--root-dir` (if given).
fn with_root(paths: &CaPaths, root: &RootArgs) -> CaPaths {
    match &root.root_dir {
        Some(dir) => paths.clone().with_root_dir(dir),
        None => paths.clone(),
    }
}

/// The root key's passphrase, from `--root-passphrase-file` or
/// PKI_ROOT_PASSPHRASE.
fn passphrase(root: &RootArgs) -> anyhow::Result<Option<Passphrase>> {
    Ok(Passphrase::from_file_or_env(
        root.root_passphrase_file.as_deref(),
    )?)
}

/// Loads the root key, for the commands run where it is.
fn root_signer(paths: &CaPaths, root: &RootArgs) -> anyhow::Result<RootSigner> {
    RootSigner::load(paths, passphrase(root)?.as_ref()).context("cannot use the root key")
}

/// `pki-ca init`: on stdout, where each file is, which key is offline,
/// and the root's fingerprint, which other hosts need to fetch the root
/// safely (`--root-fingerprint`).
fn init(paths: &CaPaths, args: InitArgs) -> anyhow::Result<()> {
    let paths = with_root(paths, &args.root);
    let opts = InitOptions {
        validity: args.validity,
        force: args.force,
        passphrase: passphrase(&args.root)?,
        intermediate: args.intermediate.options(args.intermediate_validity),
    };
    let outcome = pki_ca::root::init(&paths, opts).context("cannot create the root")?;
    let dir = paths.dir().display();
    match &outcome {
        InitOutcome::Created(_) => println!("created the CA root and its intermediate in {dir}:"),
        InitOutcome::KeptExisting(info) => {
            tracing::info!(
                "kept the existing root {} (serial {}, valid until {}); use --force to replace it",
                paths.root_cert().display(),
                info.short_serial(),
                info.not_after_rfc3339()
            );
            println!("kept the existing CA root in {dir} (--force replaces it):");
        }
    }
    print_hierarchy(&paths)?;
    let root = pki_common::files::read_cert(&paths.root_cert())?;
    let fingerprint = Fingerprint::of(&root);
    println!("root fingerprint (SHA-256): {fingerprint}");
    println!(
        "  check it: openssl x509 -in {} -noout -fingerprint -sha256",
        paths.root_cert().display()
    );
    println!("  on another host: pki-client --ca-url https://<this host>:8443 --root-fingerprint {fingerprint} enroll");
    Ok(())
}

/// Prints root → intermediate and which key is where: the root key
/// offline, the intermediate's key with the online CA.
fn print_hierarchy(paths: &CaPaths) -> anyhow::Result<()> {
    let root = RootAuthority::load(paths)?;
    let key = [paths.root_key(), paths.legacy_root_key()]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| paths.root_key());
    let encrypted = std::fs::read_to_string(&key)
        .map(|pem| pki_ca::keyfile::is_encrypted(&pem))
        .unwrap_or(false);
    println!(
        "  {}  the root certificate: every party trusts it (give them it, or its fingerprint)",
        paths.root_cert().display()
    );
    println!(
        "  {}  the root key (mode 0600, {}): OFFLINE; only init, intermediate, revoke --intermediate and root-crl read it, never serve; back it up",
        key.display(),
        if encrypted { "encrypted with the passphrase" } else { "NOT encrypted: give a passphrase to encrypt it" }
    );
    if let Some(current) = current_intermediate(paths, &root) {
        println!(
            "  {}  the issuing intermediate {}, signed by the root (valid until {}): it signs every certificate and their CRL",
            paths.intermediate_cert(&current.id).display(),
            current.id,
            current.info.not_after_rfc3339()
        );
        println!(
            "  {}  the intermediate's key (mode 0600): the ONLY key `pki-ca serve` needs",
            paths.intermediate_key(&current.id).display()
        );
    }
    println!(
        "  {}  the root's CRL (revoked intermediates), signed by the root, published by `pki-ca serve`",
        paths.root_crl().display()
    );
    println!(
        "  `pki-ca serve` keeps its ledger ({}) and the intermediate's CRL ({}) here too",
        paths.ledger().display(),
        paths.crl().display()
    );
    println!(
        "chain: root {} -> intermediate -> leaf",
        root.info.subject_cn.as_deref().unwrap_or("(no CN)")
    );
    Ok(())
}

/// The intermediate valid now with the latest notBefore, as the CA would
/// pick it (revocation aside: init and intermediate make a fresh one).
fn current_intermediate(paths: &CaPaths, root: &RootAuthority) -> Option<Intermediate> {
    let now = pki_common::unix_now() as i64;
    pki_ca::root::intermediate_ids(paths)
        .iter()
        .filter_map(|id| Intermediate::load(paths, id, root).ok())
        .filter(|i| i.info.not_before <= now && now < i.info.not_after)
        .max_by_key(|i| i.info.not_before)
}

/// `pki-ca intermediate`: a new intermediate, signed with the root key.
fn intermediate(paths: &CaPaths, args: IntermediateCmdArgs) -> anyhow::Result<()> {
    let paths = with_root(paths, &args.root);
    let signer = root_signer(&paths, &args.root)?;
    let opts = args.intermediate.options(args.validity);
    let (id, info) = signer
        .issue_intermediate(&paths, &opts)
        .context("cannot issue the intermediate")?;
    signer
        .sign_root_crl(&paths, opts.root_crl_interval)
        .context("the intermediate is issued, but the root CRL could not be signed")?;
    println!(
        "issued intermediate {id} (serial {}, valid until {}), signed by the root:",
        info.serial_hex,
        info.not_after_rfc3339()
    );
    println!(
        "  {}  its certificate; {}  its key (mode 0600)",
        paths.intermediate_cert(&id).display(),
        paths.intermediate_key(&id).display()
    );
    println!("  a serving CA issues under it within a second (or on its next start); the older intermediates stay, so the certificates they issued keep verifying");
    Ok(())
}

/// `pki-ca root-crl`: re-signs the root CRL with the root key.
fn root_crl(paths: &CaPaths, args: RootCrlArgs) -> anyhow::Result<()> {
    let paths = with_root(paths, &args.root);
    let signer = root_signer(&paths, &args.root)?;
    let number = signer
        .sign_root_crl(&paths, args.root_crl_interval)
        .context("cannot sign the root CRL")?;
    println!(
        "{} is root CRL #{number}, valid for {}; a serving CA publishes it within a second",
        paths.root_crl().display(),
        humantime::format_duration(args.root_crl_interval)
    );
    Ok(())
}

/// `pki-ca token`: the tokens alone on stdout, one per line, written at
/// once.
fn token(paths: &CaPaths, args: TokenArgs) -> anyhow::Result<()> {
    let ca = open(paths)?;
    let tokens = ca
        .mint_tokens(&args.names, args.profile, args.ttl, args.count as usize)
        .context("cannot mint tokens")?;
    let mut out = String::new();
    for token in tokens {
        out.push_str(&format!("{token}\n"));
    }
    print!("{out}");
    Ok(())
}

/// `pki-ca ledger migrate`: SQLite into PostgreSQL, verified.
fn ledger_migrate(paths: &CaPaths, args: MigrateArgs) -> anyhow::Result<()> {
    let from = args.from.unwrap_or_else(|| paths.ledger());
    anyhow::ensure!(
        from.exists(),
        "no SQLite ledger at {}; give --from FILE",
        from.display()
    );
    let tls = ledger_tls(LEDGER.get().and_then(|(_, ca)| ca.as_ref()))?;
    let to = pki_ca::ledger::PgLedger::connect(&args.to, tls)
        .context("cannot open the PostgreSQL ledger")?;
    let report = pki_ca::ledger::migrate_sqlite_to_postgres(&from, &to)
        .with_context(|| format!("cannot migrate {} into {}", from.display(), to.display()))?;
    for (table, rows) in &report.tables {
        println!("{table}: {rows} rows");
    }
    println!("counters: {}", report.counters);
    println!(
        "migrated {} into {}; every table's count verified. Serve with --ledger (or PKI_LEDGER_URL) from now on, and keep the SQLite file as a backup.",
        from.display(),
        to.display()
    );
    Ok(())
}

/// `pki-ca eab`: mints one external account binding key.
fn eab(paths: &CaPaths, args: EabArgs) -> anyhow::Result<()> {
    let ca = open(paths)?;
    let (kid, key) =
        pki_ca::acme::eab::mint(&ca, args.valid).context("cannot mint an external account key")?;
    println!("kid: {kid}");
    println!("hmac-key: {key}");
    Ok(())
}

/// `pki-ca serve`: serves until SIGINT or SIGTERM, then drains.
fn serve(paths: &CaPaths, args: ServeArgs) -> anyhow::Result<()> {
    let policy = IssuancePolicy {
        lifetime: args.cert_lifetime,
        crl_interval: args.crl_interval,
        ..IssuancePolicy::default()
    };
    let ca = open_with(paths, policy)?;
    let ca = Arc::new(ca.with_public_url(args.public_url));
    let mut opts = ServeOptions::on(args.listen);
    opts.names = args.names;
    opts.max_body = args.max_body;
    opts.listener.max_connections = args.max_connections;
    opts.listener.handshake_timeout = args.handshake_timeout;
    opts.request_timeout = args.request_timeout;
    opts.metrics_listen = args.metrics_listen;
    opts.http_listen = args.http_listen;
    opts.acme = args.acme.config();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        let shutdown = pki_common::shutdown::on_os_signal();
        let server = CaServer::bind(ca, opts)
            .await
            .context("cannot start the CA listener")?;
        server.run(shutdown).await;
        tracing::info!("CA stopped");
        Ok(())
    })
}

/// `pki-ca revoke`: records the revocation in the ledger and rewrites the
/// CRL file; with `--ca-url`, also waits for the running CA to serve it.
/// With `--intermediate`, revokes an intermediate on the root CRL instead.
fn revoke(paths: &CaPaths, args: RevokeArgs) -> anyhow::Result<()> {
    if let Some(id) = &args.intermediate {
        return revoke_intermediate(paths, id, &args);
    }
    let ca = open(paths)?;
    let serial = match (args.serial, args.cert) {
        (Some(s), _) => s,
        (None, Some(path)) => {
            let der = pki_common::files::read_cert(&path)?;
            pki_common::cert::CertInfo::parse(&der)
                .with_context(|| format!("{}", path.display()))?
                .serial_hex
        }
        (None, None) => anyhow::bail!("give --serial, --cert or --intermediate"),
    };
    let reason = args.reason;
    let serial = ca.revoke(&serial, reason).context("cannot revoke")?;
    // Also refresh the CRL file, so it is current even when no CA
    // is serving.
    let crl = ca
        .publish_crl()
        .context("the revocation is recorded, but the CRL could not be published")?;
    let issuer = ca
        .ledger()
        .certificate(&serial)
        .ok()
        .flatten()
        .map(|r| r.issuer_id)
        .unwrap_or_else(|| "-".into());
    println!(
        "revoked {serial} ({reason}); {} is CRL #{} (the CRL of intermediate {issuer}, which issued it, lists it)",
        paths.crl().display(),
        crl.number
    );
    if let Some(url) = args.ca_url {
        let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
        runtime
            .block_on(wait_published(&url, &ca, &serial, &issuer))
            .context("the revocation is recorded, but the running CA did not publish it")?;
    }
    Ok(())
}

/// `pki-ca revoke --intermediate`: the root CRL lists it from now on.
fn revoke_intermediate(paths: &CaPaths, id: &str, args: &RevokeArgs) -> anyhow::Result<()> {
    let paths = with_root(paths, &args.root);
    let signer = root_signer(&paths, &args.root)?;
    let revocation = Revocation {
        reason: args.reason,
        revoked_at: pki_common::unix_now() as i64,
    };
    let (id, number) = signer
        .revoke_intermediate(&paths, id, revocation, args.root_crl_interval)
        .context("cannot revoke the intermediate")?;
    println!(
        "revoked intermediate {id} ({}); {} is root CRL #{number}: every certificate it issued fails from now on, and a serving CA publishes it at /v1/crls within a second",
        args.reason,
        paths.root_crl().display()
    );
    let root = RootAuthority::load(&paths)?;
    let left = pki_ca::root::intermediate_ids(&paths)
        .into_iter()
        .filter(|other| *other != id)
        .filter_map(|other| Intermediate::load(&paths, &other, &root).ok())
        .any(|i| i.info.not_after > revocation.revoked_at);
    if !left {
        println!("  no other intermediate is left to issue with: `pki-ca intermediate` issues one");
    }
    Ok(())
}

/// Polls the CA at `url` until the CRL of `issuer` (the intermediate that
/// issued `serial`) lists `serial`, for at most 10 s. Each CRL is checked
/// against that intermediate's certificate, held in --dir.
async fn wait_published(url: &str, ca: &Ca, serial: &str, issuer: &str) -> anyhow::Result<()> {
    let root = ca.root().cert.clone();
    let issuer_cert = ca
        .issuer_cert_der(issuer)
        .map(rustls::pki_types::CertificateDer::from)
        .with_context(|| {
            format!("the intermediate {issuer} that issued {serial} is not in --dir, so the CRL served cannot be checked")
        })?;
    let client = CaClient::new(url, None, &root)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A CA that is briefly unreachable, or still serves the older CRL,
        // is polled again until the deadline.
        if let Some(number) = served_listing(&client, &issuer_cert, serial).await {
            println!("published by {url} in CRL #{number}");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{url} did not list {serial} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The number of the CRL signed by `issuer` that `GET /v1/crls` serves,
/// if it lists `serial`.
async fn served_listing(
    client: &CaClient,
    issuer: &rustls::pki_types::CertificateDer<'_>,
    serial: &str,
) -> Option<u64> {
    use rustls::pki_types::pem::PemObject;
    let resp = client.get(pki_common::ca::api::CRLS).await.ok()?;
    if !resp.status.is_success() {
        return None;
    }
    let now = pki_common::unix_now() as i64;
    rustls::pki_types::CertificateRevocationListDer::pem_slice_iter(&resp.body)
        .filter_map(Result::ok)
        .filter_map(|der| pki_common::revocation::verify_crl(der, issuer, now).ok())
        .find(|crl| crl.revocation_of(serial).is_some())
        .map(|crl| crl.number)
}

/// `pki-ca inspect`: reads files only; the CA is not opened, so nothing is
/// created, even in a mistyped --dir.
fn inspect(paths: &CaPaths, args: InspectArgs) -> anyhow::Result<()> {
    use pki_common::inspect::{inspect_file, overview, Trust};
    let trust = Trust::from_root_file(&args.ca.unwrap_or_else(|| paths.root_cert()));
    if args.files.is_empty() {
        let dir = paths
            .root_cert()
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        print!("{}", overview(&dir, &trust)?);
        return Ok(());
    }
    for (i, path) in args.files.iter().enumerate() {
        let report = inspect_file(path, &trust)?;
        let gap = if i == 0 { "" } else { "\n" };
        print!("{gap}{}\n{report}", path.display());
    }
    Ok(())
}

/// `pki-ca list`: a table, or JSON with `--json`.
fn list(paths: &CaPaths, args: ListArgs) -> anyhow::Result<()> {
    let remote = LEDGER.get().is_some_and(|(url, _)| url.is_some());
    let records = if remote || paths.ledger().exists() {
        open(paths)?
            .ledger()
            .certificates()
            .context("cannot read the ledger")?
    } else {
        // Nothing issued yet, or a mistyped --dir: a listing creates no
        // ledger. Without a root this is the "no CA root" refusal.
        RootAuthority::load(paths).context("cannot open the CA")?;
        Vec::new()
    };
    let now = pki_common::unix_now() as i64;
    if args.json {
        let renewed_by = renewals(&records);
        let rows: Vec<_> = records
            .iter()
            .map(|r| json_row(r, renewed_by.get(r.serial_hex.as_str()).copied(), now))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let renewed_by = renewals(&records);
    println!(
        "{:<32}  {:<7}  {:<20}  {:<25}  {:<32}  {:<32}  NAMES",
        "SERIAL", "PROFILE", "EXPIRES", "STATUS", "RENEWED_FROM", "RENEWED_BY"
    );
    for r in &records {
        println!(
            "{:<32}  {:<7}  {:<20}  {:<25}  {:<32}  {:<32}  {}",
            r.serial_hex,
            r.profile.as_str(),
            pki_common::cert::rfc3339(r.not_after),
            r.status(now).to_string(),
            r.renewed_from.as_deref().unwrap_or("-"),
            renewed_by
                .get(r.serial_hex.as_str())
                .copied()
                .unwrap_or("-"),
            r.names.join(",")
        );
    }
    Ok(())
}

/// Which certificate renewed each one (serial → serial), from the
/// `renewed_from` links: with `renewed_from`, the renewal chain both ways.
fn renewals(records: &[IssuedRecord]) -> std::collections::HashMap<&str, &str> {
    records
        .iter()
        .filter_map(|r| Some((r.renewed_from.as_deref()?, r.serial_hex.as_str())))
        .collect()
}

/// One certificate as `pki-ca list --json` prints it; scripts read these
/// field names, so they are stable.
fn json_row(r: &IssuedRecord, renewed_by: Option<&str>, now: i64) -> serde_json::Value {
    serde_json::json!({
        "serial": r.serial_hex,
        "names": r.names,
        "profile": r.profile.as_str(),
        "not_before": pki_common::cert::rfc3339(r.not_before),
        "not_after": pki_common::cert::rfc3339(r.not_after),
        "status": match r.status(now) {
            Status::Valid => "valid",
            Status::Expired => "expired",
            Status::Revoked(_) => "revoked",
        },
        "revocation_reason": r.revoked.map(|v| v.reason.as_str()),
        "revoked_at": r.revoked.map(|v| pki_common::cert::rfc3339(v.revoked_at)),
        "token_id": r.token_id,
        "renewed_from": r.renewed_from,
        "renewed_by": renewed_by,
        "issuer": r.issuer_id,
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

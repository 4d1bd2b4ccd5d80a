//! `pki-ca`: the certificate authority's command line.
//!
//! Usage:
//!   pki-ca init [--force]                       create the root in certs/
//!   pki-ca token --name app.pki.test [--profile server] [--ttl 15m]
//!   pki-ca serve [--listen 127.0.0.1:8443]      the HTTPS API
//!   pki-ca revoke --serial <hex>|--cert FILE [--reason keyCompromise] [--ca-url URL]
//!   pki-ca list [--json]                        every certificate, its status and renewal chain
//!   pki-ca completions bash                     a shell completion script
//!
//! Only `init` and `serve` create files (and `token` and `revoke` write to
//! an existing CA's ledger); with a mistyped `--dir` every command reports
//! "no CA root" and leaves nothing behind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand};

use pki_ca::authority::{init_root, InitOutcome, RootAuthority};
use pki_ca::ledger::{IssuedRecord, Status};
use pki_ca::policy::IssuancePolicy;
use pki_ca::serve::{CaServer, ServeOptions};
use pki_ca::{Ca, CaPaths};
use pki_common::ca::bootstrap::Fingerprint;
use pki_common::ca::client::CaClient;
use pki_common::ca::crl::fetch_crl;
use pki_common::cert::Profile;
use pki_common::revocation::Reason;

/// Examples shown under `pki-ca --help`: the first run, start to finish.
const EXAMPLES: &str = "\
Examples:
  pki-ca init                                   # root in certs/, prints its fingerprint
  pki-ca serve --listen 127.0.0.1:8443          # the HTTPS API (leave it running)
  pki-ca token --name app.pki.test              # a one-time token for a server
  pki-ca token --profile client --name client1.pki.test
  pki-ca list                                   # every certificate issued
  pki-ca revoke --cert certs/server.pem --reason keyCompromise

Every command takes --dir (or PKI_CERTS_DIR); only init and serve create files.";

#[derive(Parser)]
#[command(
    name = "pki-ca",
    version,
    about = "An online certificate authority",
    after_help = EXAMPLES
)]
struct Cli {
    /// Directory holding ca.pem, ca.key and the ledger.
    #[arg(long, global = true, env = "PKI_CERTS_DIR", default_value = "certs")]
    dir: PathBuf,
    /// Log format on stderr: text (a line per event, for people) or json
    /// (a JSON object per line, for log pipelines).
    #[arg(long, global = true, env = "PKI_LOG_FORMAT", default_value = "text")]
    log_format: pki_common::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the root key and self-signed root certificate (kept if present).
    #[command(after_help = "\
Examples:
  pki-ca init                       # prints the files and the root's SHA-256 fingerprint
  pki-ca --dir /srv/pki init --validity 1825days
  openssl x509 -in certs/ca.pem -noout -fingerprint -sha256   # the same fingerprint")]
    Init(InitArgs),
    /// Mint a one-time enrollment token; prints it alone on stdout.
    #[command(after_help = "\
Examples:
  pki-ca token --name app.pki.test
  pki-ca token --name app.pki.test --name 127.0.0.1 --ttl 1h
  pki-ca token --profile client --name client1.pki.test
  PKI_TOKEN=$(pki-ca token --name app.pki.test) pki-server")]
    Token(TokenArgs),
    /// Serve the HTTPS API.
    #[command(after_help = "\
Examples:
  pki-ca serve
  pki-ca serve --listen 0.0.0.0:8443 --name ca.example.org --cert-lifetime 7days")]
    Serve(ServeArgs),
    /// Revoke a certificate; works whether or not the CA is serving.
    #[command(after_help = "\
Examples:
  pki-ca revoke --cert certs/server.pem --reason keyCompromise
  pki-ca revoke --serial 3f2a... --reason superseded --ca-url https://127.0.0.1:8443")]
    Revoke(RevokeArgs),
    /// List every issued certificate with its status.
    #[command(after_help = "\
Examples:
  pki-ca list
  pki-ca list --json | jq '.[] | select(.status == \"valid\") | .serial'")]
    List(ListArgs),
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
    /// Replace an existing root. Every certificate it issued stops verifying.
    #[arg(long)]
    force: bool,
    /// Root validity.
    #[arg(long, value_name = "DURATION", default_value = "3650days", value_parser = humantime::parse_duration)]
    validity: Duration,
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
}

#[derive(Args)]
struct RevokeArgs {
    /// The serial, in hex as `pki-ca list` or `openssl x509 -serial` prints it.
    #[arg(long, required_unless_present = "cert", conflicts_with = "cert")]
    serial: Option<String>,
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
    match cli.command {
        Command::Init(args) => init(&paths, args),
        Command::Token(args) => token(&paths, args),
        Command::Serve(args) => serve(&paths, args),
        Command::Revoke(args) => revoke(&paths, args),
        Command::List(args) => list(&paths, args),
        Command::Inspect(args) => inspect(&paths, args),
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
    Ca::open(paths, IssuancePolicy::default()).context("cannot open the CA")
}

/// `pki-ca init`: on stdout, where each file is and the root's
/// fingerprint, which other hosts need to fetch the root safely
/// (`--root-fingerprint`).
fn init(paths: &CaPaths, args: InitArgs) -> anyhow::Result<()> {
    let outcome = init_root(paths, args.validity, args.force).context("cannot create the root")?;
    let dir = paths.dir().display();
    match &outcome {
        InitOutcome::Created(_) => println!("created the CA root in {dir}:"),
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
    let root = pki_common::files::read_cert(&paths.root_cert())?;
    let fingerprint = Fingerprint::of(&root);
    let (cert, key) = (paths.root_cert(), paths.root_key());
    println!(
        "  {}  the root certificate: every party trusts it (give them it, or its fingerprint)",
        cert.display()
    );
    println!(
        "  {}  the root key (mode 0600): keep it secret, and back it up",
        key.display()
    );
    println!(
        "  `pki-ca serve` keeps its ledger ({}) and CRL ({}) here too",
        paths.ledger().display(),
        paths.crl().display()
    );
    println!("root fingerprint (SHA-256): {fingerprint}");
    println!(
        "  check it: openssl x509 -in {} -noout -fingerprint -sha256",
        cert.display()
    );
    println!("  on another host: pki-client --ca-url https://<this host>:8443 --root-fingerprint {fingerprint} enroll");
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

/// `pki-ca serve`: serves until SIGINT or SIGTERM, then drains.
fn serve(paths: &CaPaths, args: ServeArgs) -> anyhow::Result<()> {
    let policy = IssuancePolicy {
        lifetime: args.cert_lifetime,
        crl_interval: args.crl_interval,
        ..IssuancePolicy::default()
    };
    let ca = Arc::new(Ca::open(paths, policy).context("cannot open the CA")?);
    let mut opts = ServeOptions::on(args.listen);
    opts.names = args.names;
    opts.max_body = args.max_body;
    opts.listener.max_connections = args.max_connections;
    opts.listener.handshake_timeout = args.handshake_timeout;
    opts.request_timeout = args.request_timeout;
    opts.metrics_listen = args.metrics_listen;
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
fn revoke(paths: &CaPaths, args: RevokeArgs) -> anyhow::Result<()> {
    let ca = open(paths)?;
    let serial = match (args.serial, args.cert) {
        (Some(s), _) => s,
        (None, Some(path)) => {
            let der = pki_common::files::read_cert(&path)?;
            pki_common::cert::CertInfo::parse(&der)
                .with_context(|| format!("{}", path.display()))?
                .serial_hex
        }
        (None, None) => anyhow::bail!("give --serial or --cert"),
    };
    let reason = args.reason;
    let serial = ca.revoke(&serial, reason).context("cannot revoke")?;
    // Also refresh the CRL file, so it is current even when no CA
    // is serving.
    let crl = ca
        .publish_crl()
        .context("the revocation is recorded, but the CRL could not be published")?;
    println!(
        "revoked {serial} ({reason}); {} is CRL #{}",
        paths.crl().display(),
        crl.number
    );
    if let Some(url) = args.ca_url {
        let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
        runtime
            .block_on(wait_published(&url, &ca, &serial))
            .context("the revocation is recorded, but the running CA did not publish it")?;
    }
    Ok(())
}

/// Polls the CA at `url` until its CRL lists `serial`, for at most 10 s.
async fn wait_published(url: &str, ca: &Ca, serial: &str) -> anyhow::Result<()> {
    let root = ca.root().cert.clone();
    let client = CaClient::new(url, None, &root)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A CA that is briefly unreachable, or still serves the older CRL,
        // is polled again until the deadline.
        if let Ok(crl) = fetch_crl(&client, &root).await {
            if crl.revocation_of(serial).is_some() {
                println!("published by {url} in CRL #{}", crl.number);
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{url} did not list {serial} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let records = if paths.ledger().exists() {
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

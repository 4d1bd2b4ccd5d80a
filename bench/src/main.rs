//! `pki-bench`: measures every end-to-end figure beside a baseline from
//! the same run and writes the table as Markdown and JSON.
//!
//! Usage (`make bench` builds in release mode and runs this):
//!   pki-bench [--duration 5s] [--sessions 10000] [--out bench/results]
//!   pki-bench idle-server --listen ADDR --cert F --key F --root F   (the memory baseline)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use pki_bench::report::{Figure, Report};
use pki_bench::{baseline, scenarios};

#[derive(Parser)]
#[command(name = "pki-bench", about = "The benchmark harness")]
struct Cli {
    /// How long each throughput measurement runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Idle sessions held for the memory figure (and as many granted,
    /// their connections closed, for the figure with tickets).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Concurrent clients for the throughput figures.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Where latest.md and latest.json go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Run only these figures (comma-separated: issuance, sessions,
    /// resume, requests, memory, programs). `resume` is resumption beside
    /// registration without the TLS baselines; `sessions` includes it.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also time a clean release build (takes minutes).
    #[arg(long, env = "BENCH_CLEAN_BUILD", value_parser = clap::builder::FalseyValueParser::new())]
    clean_build: bool,
    #[command(subcommand)]
    command: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// A plain tokio-rustls server that holds connections idle.
    IdleServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        root: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(Mode::IdleServer {
        listen,
        cert,
        key,
        root,
    }) = &cli.command
    {
        return runtime.block_on(idle_server(*listen, cert, key, root));
    }
    let repo = std::env::current_dir()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("no binary directory")?
        .to_path_buf();
    let cores = scenarios::cores();
    eprintln!(
        "pki-bench: {cores} cores, {:?} per throughput measurement",
        cli.duration
    );
    let mut figures = runtime.block_on(in_process_figures(&cli, &bin_dir))?;
    if cli.wanted("programs") {
        eprintln!("5/5 whole programs…");
        figures.extend(scenarios::run_all(&repo, &bin_dir)?);
    }
    if cli.clean_build {
        figures.push(scenarios::clean_build(&repo)?);
    }
    let report = Report {
        cores,
        date: pki_common::cert::rfc3339(pki_common::unix_now() as i64),
        figures,
    };
    report.publish(&cli.out)
}

impl Cli {
    /// Whether the figure `name` is to be measured: every figure unless
    /// `--only` names some.
    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

/// The memory baseline's server (`pki-bench idle-server`): a plain
/// tokio-rustls server presenting the given certificate, holding every
/// connection idle until the harness kills it.
async fn idle_server(
    listen: SocketAddr,
    cert: &Path,
    key: &Path,
    root: &Path,
) -> anyhow::Result<()> {
    let config = pki_common::tls::server_config_with_client_auth(
        // The whole chain the pki-server wrote: its certificate, and any
        // intermediate between it and the root.
        pki_common::files::read_certs(cert)?,
        pki_common::files::read_private_key(key)?,
        &pki_common::files::read_cert(root)?,
        Vec::new(),
        pki_common::tls::ClientAuth::Optional,
    )?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    baseline::serve(listener, Arc::new(config), baseline::Behaviour::Idle).await;
    Ok(())
}

/// Figures 1 to 4, measured inside this process's runtime (the memory
/// figure runs the servers as processes but drives them from here).
async fn in_process_figures(cli: &Cli, bin_dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    if cli.wanted("issuance") {
        eprintln!("1/5 CA issuance…");
        figures.extend(scenarios::issuance(cli.duration, cli.clients).await?);
    }
    if cli.wanted("sessions") || cli.wanted("resume") || cli.wanted("requests") {
        let fixture = scenarios::Fixture::start().await?;
        if cli.wanted("sessions") || cli.wanted("resume") {
            eprintln!("2/5 session establishment: registration and resumption…");
            let e = scenarios::establishment(&fixture, cli.duration, cli.clients).await?;
            if cli.wanted("sessions") {
                figures.extend(scenarios::sessions(&fixture, &e, cli.duration).await?);
            }
            figures.extend(scenarios::resumption(&e));
        }
        if cli.wanted("requests") {
            eprintln!("3/5 service requests…");
            figures.extend(scenarios::requests(&fixture, cli.duration, cli.clients).await?);
        }
    }
    if cli.wanted("memory") {
        eprintln!("4/5 memory with {} idle sessions…", cli.sessions);
        figures.extend(scenarios::memory(cli.sessions, bin_dir).await?);
    }
    Ok(figures)
}

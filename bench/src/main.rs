//! `pki-bench`: measures every end-to-end figure beside a baseline from
//! the same run, ours and the baseline in alternating rounds, and writes
//! the tables as Markdown and JSON (with every round) and the scaling plot.
//!
//! Usage (`make bench` builds in release mode and runs this):
//!   pki-bench [--duration 7s] [--rounds 7] [--sessions 10000] [--out bench/results]
//!   pki-bench plain-server --behaviour idle|close|echo --listen ADDR --cert F --key F --root F

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use pki_bench::baseline::{self, Behaviour};
use pki_bench::report::{Figure, Report, Settings};
use pki_bench::rounds::{Comparison, Scaling};
use pki_bench::scenarios::{self, Plan};

#[derive(Parser)]
#[command(name = "pki-bench", about = "The benchmark harness")]
struct Cli {
    /// How long ours and each baseline run in all, per figure, split into
    /// --rounds alternating rounds.
    #[arg(long, default_value = "7s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Alternating rounds per figure (ours, baseline, ours, baseline, …).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Unrecorded warm-up of each contender before the first round.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Idle sessions held for the memory figure (and as many granted,
    /// their connections closed, for the figure with tickets).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Concurrent clients for the throughput figures.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Concurrent clients at each level of the scaling figures.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    levels: Vec<usize>,
    /// How long each scaling level runs.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    level_duration: Duration,
    /// Where latest.md, latest.json and scaling.svg go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Run only these figures (comma-separated: issuance, sessions,
    /// resume, requests, scaling, memory, programs). `resume` is
    /// resumption beside registration without the TLS baselines;
    /// `sessions` includes it.
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
    /// A plain tokio-rustls server, the baselines' server: it closes each
    /// connection after the handshake, echoes length-prefixed messages,
    /// or holds connections idle.
    #[command(alias = "idle-server")]
    PlainServer {
        #[arg(long, value_enum, default_value = "idle")]
        behaviour: Behaviour,
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
    if let Some(Mode::PlainServer {
        behaviour,
        listen,
        cert,
        key,
        root,
    }) = &cli.command
    {
        return runtime.block_on(plain_server(*behaviour, *listen, cert, key, root));
    }
    let repo = std::env::current_dir()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("no binary directory")?
        .to_path_buf();
    let cores = scenarios::cores();
    let rounds = cli.rounds as usize;
    let plan = Plan {
        rounds,
        round: cli.duration / rounds as u32,
        warmup: cli.warmup,
        clients: cli.clients,
        levels: cli.levels.clone(),
        level: cli.level_duration,
        bin_dir: bin_dir.clone(),
    };
    eprintln!(
        "pki-bench: {cores} cores, {rounds} alternating rounds of {:?} per contender",
        plan.round
    );
    let mut measured = runtime.block_on(end_to_end(&cli, &plan))?;
    if cli.wanted("programs") {
        eprintln!("5/5 whole programs…");
        measured
            .figures
            .extend(scenarios::run_all(&repo, &bin_dir)?);
    }
    if cli.clean_build {
        measured.figures.push(scenarios::clean_build(&repo)?);
    }
    let report = Report {
        cores,
        date: pki_common::cert::rfc3339(pki_common::unix_now() as i64),
        settings: Settings {
            rounds,
            round_seconds: plan.round.as_secs_f64(),
            warmup_seconds: plan.warmup.as_secs_f64(),
            clients: plan.clients,
        },
        figures: measured.figures,
        comparisons: measured.comparisons,
        scaling: measured.scaling,
        ceiling: measured.ceiling,
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

/// The plain baseline server (`pki-bench plain-server`): tokio-rustls
/// presenting the given certificate chain, with the TLS 1.3 configuration
/// our server uses, until the harness kills it.
async fn plain_server(
    behaviour: Behaviour,
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
    baseline::serve(listener, Arc::new(config), behaviour).await;
    Ok(())
}

/// Everything the end-to-end figures produced.
#[derive(Default)]
struct Measured {
    figures: Vec<Figure>,
    comparisons: Vec<Comparison>,
    scaling: Vec<Scaling>,
    ceiling: Option<pki_bench::report::Ceiling>,
}

/// Figures 1 to 4 and the scaling figures; every server under test runs
/// as a separate process, driven from this one.
async fn end_to_end(cli: &Cli, plan: &Plan) -> anyhow::Result<Measured> {
    let mut m = Measured::default();
    let scaling = cli.wanted("scaling");
    if cli.wanted("issuance") || scaling {
        eprintln!("1/5 CA issuance (pki-ca serve)…");
        let tokens = scenarios::tokens_needed(plan, cli.wanted("issuance"), scaling);
        let ca = scenarios::CaUnderTest::start(&plan.bin_dir, tokens).await?;
        if cli.wanted("issuance") {
            let (figures, c) = scenarios::issuance(&ca, plan).await?;
            m.figures.extend(figures);
            m.comparisons.push(c);
        }
        if scaling {
            eprintln!("  scaling at {:?} enrollers…", plan.levels);
            m.scaling
                .push(scenarios::issuance_scaling(&ca, plan).await?);
        }
    }
    let sessions = cli.wanted("sessions");
    if sessions || cli.wanted("resume") || cli.wanted("requests") || scaling {
        let fixture = scenarios::Fixture::start(&plan.bin_dir).await?;
        if sessions || cli.wanted("resume") {
            eprintln!("2/5 session establishment: registration, bare TLS, resumption…");
            let target_dir = plan.bin_dir.parent().context("no target directory")?;
            m.ceiling = scenarios::criterion_ceiling(target_dir);
            if sessions && m.ceiling.is_none() {
                eprintln!(
                    "  no criterion estimates in {}/criterion: the ceiling is left out (make bench runs them first)",
                    target_dir.display()
                );
            }
            let (figures, c) =
                scenarios::sessions(&fixture, plan, sessions, m.ceiling.as_ref()).await?;
            m.figures.extend(figures);
            m.comparisons.push(c);
        }
        if scaling {
            eprintln!("  scaling at {:?} clients…", plan.levels);
            m.scaling
                .push(scenarios::sessions_scaling(&fixture, plan).await?);
        }
        if cli.wanted("requests") {
            eprintln!("3/5 service requests…");
            let (figures, c) = scenarios::requests(&fixture, plan).await?;
            m.figures.extend(figures);
            m.comparisons.push(c);
        }
    }
    if cli.wanted("memory") {
        eprintln!("4/5 memory with {} idle sessions…", cli.sessions);
        m.figures
            .extend(scenarios::memory(cli.sessions, &plan.bin_dir).await?);
    }
    Ok(m)
}

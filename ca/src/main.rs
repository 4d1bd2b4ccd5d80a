//! `pki-ca`: the certificate authority's command line.
//!
//! Usage:
//!   pki-ca init [--force]                       create the root in certs/
//!   pki-ca token --name app.pki.test [--profile server] [--ttl 15m]
//!   pki-ca serve [--listen 127.0.0.1:8443]      the HTTPS API

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use pki_ca::authority::{init_root, InitOutcome};
use pki_ca::policy::IssuancePolicy;
use pki_ca::serve::{CaServer, ServeOptions};
use pki_ca::token::Profile;
use pki_ca::{Ca, CaPaths};

#[derive(Parser)]
#[command(name = "pki-ca", version, about = "An online certificate authority")]
struct Cli {
    /// Directory holding ca.pem, ca.key and the ledger.
    #[arg(long, global = true, env = "PKI_CERTS_DIR", default_value = "certs")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the root key and self-signed root certificate (kept if present).
    Init {
        /// Replace an existing root. Every certificate it issued stops verifying.
        #[arg(long)]
        force: bool,
        /// Root validity.
        #[arg(long, default_value = "3650days", value_parser = humantime::parse_duration)]
        validity: Duration,
    },
    /// Mint a one-time enrollment token; prints it alone on stdout.
    Token {
        /// A DNS name or IP address the certificate may carry (repeatable).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long, default_value = "server")]
        profile: Profile,
        /// How long the token stays valid.
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Serve the HTTPS API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Names on the CA's own TLS certificate (repeatable).
        #[arg(long = "name", default_values = ["ca.pki.test", "127.0.0.1"])]
        names: Vec<String>,
        /// Lifetime of issued certificates.
        #[arg(long, default_value = "30days", value_parser = humantime::parse_duration)]
        cert_lifetime: Duration,
    },
}

fn main() -> anyhow::Result<()> {
    pki_common::logging::init();
    let cli = Cli::parse();
    let paths = CaPaths::new(&cli.dir);
    match cli.command {
        Command::Init { force, validity } => {
            match init_root(&paths, validity, force).context("pki-ca init failed")? {
                InitOutcome::Created(_) => {}
                InitOutcome::KeptExisting(info) => tracing::info!(
                    "kept the existing root {} (serial {}, valid until {}); use --force to replace it",
                    paths.root_cert().display(),
                    info.short_serial(),
                    info.not_after_rfc3339()
                ),
            }
            Ok(())
        }
        Command::Token {
            names,
            profile,
            ttl,
        } => {
            let ca = Ca::open(&paths, IssuancePolicy::default()).context("cannot open the CA")?;
            let token = ca
                .mint_token(&names, profile, ttl)
                .context("cannot mint a token")?;
            println!("{token}");
            Ok(())
        }
        Command::Serve {
            listen,
            names,
            cert_lifetime,
        } => {
            let policy = IssuancePolicy {
                lifetime: cert_lifetime,
                ..IssuancePolicy::default()
            };
            let ca = Arc::new(Ca::open(&paths, policy).context("cannot open the CA")?);
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(async move {
                let server = CaServer::bind(
                    ca,
                    ServeOptions {
                        listen,
                        names,
                        ..ServeOptions::default()
                    },
                )
                .await
                .context("cannot start the CA listener")?;
                let (trigger, shutdown) = pki_common::shutdown::channel();
                tokio::spawn(async move {
                    pki_common::shutdown::os_signal().await;
                    trigger.trigger();
                });
                server.run(shutdown).await;
                tracing::info!("CA stopped");
                Ok(())
            })
        }
    }
}

//! One function per figure, each measuring ours and its baseline in the
//! same run with the same client code: ours and the baselines in
//! alternating rounds ([`crate::rounds`]), every server under test a
//! separate process whose CPU time per operation is read from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use pki_ca::authority::init_root;
use pki_ca::policy::{verify_csr, IssuancePolicy};
use pki_ca::{Ca, CaPaths};
use pki_client::{ClientConfig, ClientTls, Connection};
use pki_common::cert::Profile;
use pki_common::proto::handshake::{ClientSession, ClientTicket};
use pki_tests::TestPki;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::report::{Bound, Ceiling, Figure};
use crate::rounds::{
    cpu_time, gather, interleave, measure, Comparison, Contender, Measured, ScalePoint, Scaling,
};
use crate::stats::Samples;

/// The number of cores, as the baselines scale by it.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// How the interleaved and scaling figures are measured.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Rounds per comparison; every contender runs once in each.
    pub rounds: usize,
    /// How long each contender runs in one round.
    pub round: Duration,
    /// How long each contender runs, unrecorded, before the first round.
    pub warmup: Duration,
    /// Concurrent clients for the interleaved figures.
    pub clients: usize,
    /// Concurrent clients at each level of the scaling figures.
    pub levels: Vec<usize>,
    /// How long each scaling level runs.
    pub level: Duration,
    /// Where the release binaries are.
    pub bin_dir: PathBuf,
}

impl Plan {
    async fn compare(
        &self,
        name: &str,
        unit: &str,
        contenders: &[Contender],
    ) -> anyhow::Result<Comparison> {
        interleave(name, unit, contenders, self.rounds, self.round, self.warmup).await
    }

    /// One level of a scaling figure: a short warm-up, then one run.
    async fn level(&self, clients: usize, c: &Contender) -> anyhow::Result<ScalePoint> {
        (c.run)(Duration::from_millis(300)).await;
        let figures = measure(c, self.level).await?;
        if figures.errors > 0 {
            eprintln!("{} at {clients} clients: {} failed", c.name, figures.errors);
        }
        Ok(ScalePoint { clients, figures })
    }
}

/// The session-establishment ceiling from the criterion estimates in
/// `target/criterion` (`make bench` runs the micro-benchmarks first):
/// `None` if either is missing.
pub fn criterion_ceiling(target_dir: &Path) -> Option<Ceiling> {
    let mean_us = |id: &str| -> Option<f64> {
        let path = target_dir
            .join("criterion")
            .join(id)
            .join("new")
            .join("estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        Some(v["mean"]["point_estimate"].as_f64()? / 1000.0)
    };
    let tls = mean_us(crate::TLS_HANDSHAKE_BENCH)?;
    let steps = mean_us(crate::STEPS_BENCH)?;
    Some(Ceiling {
        tls_handshake_us: tls,
        steps_3_to_6_us: steps,
        ratio: tls / (tls + steps),
    })
}

// ------------------------------------------------------------ 1. issuance

/// A CA directory with its root, a release `pki-ca serve` over it (the
/// process under test), and the same CA opened in this process, as the
/// `pki-ca` subcommands open it beside a serving CA: to mint the tokens,
/// and for the in-process limit.
pub struct CaUnderTest {
    _dir: tempfile::TempDir,
    ca: Arc<Ca>,
    server: Reaped,
    addr: SocketAddr,
    root: CertificateDer<'static>,
    csr: Bytes,
    names: Vec<String>,
    tokens: Arc<Mutex<Vec<String>>>,
}

impl CaUnderTest {
    /// Creates the root, mints `tokens` tokens in one transaction (as
    /// `pki-ca token --count` does) and starts `pki-ca serve`.
    pub async fn start(bin_dir: &Path, tokens: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let paths = CaPaths::new(dir.path());
        init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false)?;
        let ca = Arc::new(Ca::open(&paths, IssuancePolicy::default())?);
        let names = vec!["app.pki.test".to_string()];
        let t = Instant::now();
        let tokens: Vec<String> = ca
            .mint_tokens(&names, Profile::Server, Duration::from_secs(3600), tokens)?
            .into_iter()
            .map(|t| t.to_string())
            .collect();
        eprintln!(
            "  minted {} tokens in {:.1} s",
            tokens.len(),
            t.elapsed().as_secs_f64()
        );
        let listen = format!("127.0.0.1:{}", pki_tests::free_port());
        let server = Reaped(
            Command::new(bin_dir.join("pki-ca"))
                .arg("--dir")
                .arg(dir.path())
                .args(["serve", "--listen", &listen, "--no-acme"])
                // Out of the way: every scaling level's connections, idle
                // while the other contenders run.
                .args(["--max-connections", "4096", "--request-timeout", "1h"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("pki-ca (run `cargo build --release` first)")?,
        );
        let addr: SocketAddr = listen.parse()?;
        pki_tests::wait_for_port(addr, Duration::from_secs(30)).await;
        Ok(CaUnderTest {
            root: ca.root().cert.clone(),
            _dir: dir,
            ca,
            server,
            addr,
            // Prepared in advance: the load generator only sends it.
            csr: Bytes::from(pki_tests::csr_for("app.pki.test")),
            names,
            tokens: Arc::new(Mutex::new(tokens)),
        })
    }

    /// `workers` enrollers, each on its own HTTPS/1.1 keep-alive connection
    /// (opened now), posting the CSR with a fresh token.
    async fn enrollers(&self, name: &str, workers: usize) -> anyhow::Result<Contender> {
        let mut senders = Vec::new();
        for _ in 0..workers {
            senders.push(Arc::new(tokio::sync::Mutex::new(
                keepalive(self.addr, &self.root).await?,
            )));
        }
        let (tokens, csr, host) = (self.tokens.clone(), self.csr.clone(), self.addr.to_string());
        Ok(Contender::driven(
            name,
            Some(self.server.0.id()),
            workers,
            move |w| {
                let (sender, tokens, csr, host) = (
                    senders[w].clone(),
                    tokens.clone(),
                    csr.clone(),
                    host.clone(),
                );
                async move {
                    let token = tokens
                        .lock()
                        .map_err(|_| anyhow!("poisoned"))?
                        .pop()
                        .ok_or_else(|| anyhow!("out of tokens"))?;
                    let mut sender = sender.lock().await;
                    sign_once(&mut sender, host, &token, csr).await
                }
            },
        ))
    }

    /// The in-process issuance on one blocking thread (parse and verify
    /// the CSR, decide, [lint,] sign, [check,] encode; no HTTP, no ledger),
    /// its CPU time read from that thread.
    fn in_process(&self, name: &str, lint: bool) -> Contender {
        let (ca, csr, names) = (self.ca.clone(), self.csr.clone(), self.names.clone());
        Contender {
            name: name.into(),
            server: None,
            run: Box::new(move |d| {
                let (ca, csr, names) = (ca.clone(), csr.clone(), names.clone());
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || {
                        issue_in_process(&ca, &csr, &names, lint, d)
                    })
                    .await
                    .unwrap_or_default()
                })
            }),
        }
    }
}

/// Issues in a loop on this thread for `d`; see [`CaUnderTest::in_process`].
fn issue_in_process(ca: &Ca, csr: &[u8], names: &[String], lint: bool, d: Duration) -> Measured {
    let policy = IssuancePolicy::default();
    let Ok(issuer) = ca.current_issuer() else {
        return Measured::default();
    };
    let issue = || -> anyhow::Result<pki_ca::authority::SignedCert> {
        let v = verify_csr(csr)?;
        if lint {
            Ok(ca.issue_unrecorded(&v, names, Profile::Server)?)
        } else {
            let now = pki_common::unix_now() as i64;
            let d = policy.decide(&v, names, Profile::Server, issuer.info.not_after, now)?;
            Ok(issuer.sign_unlinted(&d, &v.spki_der, None)?)
        }
    };
    let cpu_before = cpu_time("thread-self").ok();
    let start = Instant::now();
    let mut s = Samples::default();
    while start.elapsed() < d {
        let t = Instant::now();
        match issue() {
            Ok(c) => {
                std::hint::black_box(pki_common::files::cert_to_pem(&c.der));
                s.record(t.elapsed());
            }
            Err(_) => s.errors += 1,
        }
    }
    s.elapsed = start.elapsed();
    let cpu = cpu_before.and_then(|b| Some(cpu_time("thread-self").ok()?.saturating_sub(b)));
    Measured { samples: s, cpu }
}

/// How many tokens the issuance figures may use: the whole run at a rate
/// well above what two cores reach, and then some.
pub fn tokens_needed(plan: &Plan, compare: bool, scale: bool) -> usize {
    let mut secs = 0.0;
    if compare {
        secs += (plan.warmup + plan.round * plan.rounds as u32).as_secs_f64();
    }
    if scale {
        secs += plan.levels.len() as f64 * (plan.level.as_secs_f64() + 0.3);
    }
    ((secs * 20_000.0) as usize).clamp(1000, 500_000)
}

/// CA issuance over HTTPS with keep-alive against the in-process cost of
/// one issuance on one core times the number of cores, in alternating
/// rounds; with the CA's CPU time per certificate.
pub async fn issuance(ca: &CaUnderTest, plan: &Plan) -> anyhow::Result<(Vec<Figure>, Comparison)> {
    let clients = plan.clients;
    let contenders = [
        ca.enrollers("pki-ca serve over HTTPS", clients).await?,
        ca.in_process("in-process issuance with lint, one thread", true),
        ca.in_process("in-process issuance without lint, one thread", false),
    ];
    let c = plan.compare("CA issuance", "cert", &contenders).await?;
    let n = cores() as f64;
    let limit = format!("in-process issuance × {} cores", cores());
    let mut cpu = Figure::at_most(
        "CA CPU per recorded certificate (pki-ca serve, /proc)",
        "ms",
        c.cpu(0).median,
        0.12,
        Some(("in-process issuance, one thread", c.cpu(1).median)),
    );
    let cpu_ratio = c.cpu_ratio(0, 1);
    (cpu.ratio, cpu.ratio_min, cpu.ratio_max) = (
        Some(cpu_ratio.median),
        Some(cpu_ratio.min),
        Some(cpu_ratio.max),
    );
    Ok((
        vec![
            Figure::interleaved(
                &format!(
                    "CA issuance throughput ({clients} enrollers, keep-alive, recorded before answering)"
                ),
                "cert/s",
                c.throughput(0).median,
                &limit,
                c.throughput(1).median * n,
                c.over_rounds(|r| r[0].throughput / (r[1].throughput * n)),
                Bound::AtLeast(0.5),
            ),
            cpu,
            Figure::plain("CA issuance p50 latency", "ms", c.latency(0, false).median),
            Figure::plain("CA issuance p99 latency", "ms", c.latency(0, true).median),
            Figure::interleaved(
                "in-process issuance with pre-issuance lint, one core",
                "cert/s",
                c.throughput(1).median,
                "the same without linting",
                c.throughput(2).median,
                c.rate_ratio(1, 2),
                Bound::Nothing,
            ),
            Figure::plain(
                "pre-issuance lint cost per certificate (thread CPU, same rounds)",
                "µs",
                c.over_rounds(|r| {
                    (r[1].cpu_ms_per_op.unwrap_or(f64::NAN) - r[2].cpu_ms_per_op.unwrap_or(f64::NAN))
                        * 1e3
                })
                .median,
            ),
        ],
        c,
    ))
}

/// Issuance at each level of concurrent enrollers.
pub async fn issuance_scaling(ca: &CaUnderTest, plan: &Plan) -> anyhow::Result<Scaling> {
    let mut points = Vec::new();
    for &n in &plan.levels {
        let c = ca.enrollers("CA issuance", n).await?;
        points.push(plan.level(n, &c).await?);
    }
    Ok(Scaling {
        name: "CA issuance (pki-ca serve, keep-alive)".into(),
        unit: "cert".into(),
        points,
    })
}

/// One `POST /v1/sign` on a keep-alive connection; an error unless the CA
/// issued.
async fn sign_once(
    sender: &mut Sender,
    host: String,
    token: &str,
    csr: Bytes,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = hyper::Request::post(pki_common::ca::api::SIGN)
        .header(hyper::header::HOST, host)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(hyper::header::CONTENT_TYPE, "application/pkcs10")
        .body(Full::new(csr))?;
    let resp = sender.send_request(req).await?;
    let ok = resp.status().is_success();
    let _ = resp.into_body().collect().await?;
    if ok {
        Ok(())
    } else {
        Err(anyhow!("refused"))
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTPS/1.1 connection to the CA.
async fn keepalive(
    addr: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'_>,
) -> anyhow::Result<Sender> {
    let config = pki_common::tls::client_config(root)?;
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

// ------------------------------------------------- shared server fixture

/// A CA (in this process: it only enrolls the server and serves the CRL
/// the client fetches once) and a release `pki-server` as a separate
/// process, the one under test, with the client's trust prepared once.
pub struct Fixture {
    pub pki: TestPki,
    dir: tempfile::TempDir,
    server: Reaped,
    pub addr: SocketAddr,
    pub config: ClientConfig,
    pub tls: Arc<ClientTls>,
}

impl Fixture {
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Self> {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir()?;
        std::fs::copy(pki.root_path(), dir.path().join("ca.pem"))?;
        let max = u64::MAX.to_string();
        let (server, addr) = start_pki_server(
            &pki,
            dir.path(),
            bin_dir,
            &["--max-requests-per-session", &max],
        )
        .await?;
        let config = pki.client_config(addr);
        let tls = Arc::new(ClientTls::prepare(&config).await?);
        Ok(Fixture {
            pki,
            dir,
            server,
            addr,
            config,
            tls,
        })
    }

    fn pid(&self) -> u32 {
        self.server.0.id()
    }

    /// Connect, TLS 1.3, steps 3 to 6, close, by `workers` clients.
    fn registering(&self, name: &str, workers: usize) -> Contender {
        let (tls, config) = (self.tls.clone(), self.config.clone());
        Contender::driven(name, Some(self.pid()), workers, move |_| {
            let (tls, config) = (tls.clone(), config.clone());
            async move {
                let mut conn = Connection::connect_with(&tls, &config).await?;
                conn.register().await?;
                conn.close().await;
                Ok(())
            }
        })
    }
}

/// A bare TLS 1.3 handshake with the client's configuration.
async fn bare_handshake(tls: &ClientTls, addr: SocketAddr) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let mut s = TlsConnector::from(tls.config.clone())
        .connect(ServerName::try_from("app.pki.test")?.to_owned(), tcp)
        .await?;
    let _ = s.shutdown().await;
    Ok(())
}

/// Bare TLS 1.3 handshakes against the server at `addr` (process `pid`).
fn bare(f: &Fixture, name: &str, pid: u32, addr: SocketAddr, workers: usize) -> Contender {
    let tls = f.tls.clone();
    Contender::driven(name, Some(pid), workers, move |_| {
        let tls = tls.clone();
        async move { bare_handshake(&tls, addr).await }
    })
}

// --------------------------------------------- 2. session establishment

/// Session establishment in alternating rounds: a full registration (TLS
/// 1.3, steps 3 to 6), bare TLS 1.3 handshakes against a plain
/// tokio-rustls server presenting the same certificate chain, resuming
/// with a ticket (TLS 1.3, steps 3R and 4R) and bare TLS 1.3 against
/// `openssl s_server`; each connection then closed. Without `baselines`,
/// only registration and resumption.
pub async fn sessions(
    f: &Fixture,
    plan: &Plan,
    baselines: bool,
    ceiling: Option<&Ceiling>,
) -> anyhow::Result<(Vec<Figure>, Comparison)> {
    let workers = plan.clients;
    let ticket = {
        let mut conn = Connection::connect_with(&f.tls, &f.config).await?;
        let session = conn.register().await?;
        conn.close().await;
        session
            .ticket()
            .cloned()
            .ok_or_else(|| anyhow!("step 6 granted no ticket"))?
    };
    let resuming = {
        let (tls, config) = (f.tls.clone(), f.config.clone());
        Contender::driven(
            "TLS 1.3 + steps 3R–4R, resuming a ticket (pki-server)",
            Some(f.pid()),
            workers,
            move |_| {
                let (tls, config, ticket) = (tls.clone(), config.clone(), ticket.clone());
                async move {
                    let mut conn = Connection::connect_with(&tls, &config).await?;
                    conn.resume(&ticket).await?;
                    conn.close().await;
                    Ok(())
                }
            },
        )
    };
    let mut contenders = vec![f.registering("TLS 1.3 + steps 3–6 (pki-server)", workers)];
    let (_plain, _openssl);
    let (mut bare_i, mut openssl_i) = (None, None);
    if baselines {
        let (plain, addr) = start_plain_server(f.dir.path(), "close").await?;
        bare_i = Some(contenders.len());
        contenders.push(bare(
            f,
            "bare TLS 1.3 (pki-bench plain-server)",
            plain.0.id(),
            addr,
            workers,
        ));
        _plain = Some(plain);
    } else {
        _plain = None;
    }
    let resume_i = contenders.len();
    contenders.push(resuming);
    if baselines {
        match OpensslServer::start(f.dir.path()).await {
            Ok(o) => {
                openssl_i = Some(contenders.len());
                contenders.push(bare(
                    f,
                    "bare TLS 1.3, openssl s_server",
                    o.child.id(),
                    o.addr,
                    workers,
                ));
                _openssl = Some(o);
            }
            Err(e) => {
                eprintln!("skipping the openssl s_server baseline: {e}");
                _openssl = None;
            }
        }
    } else {
        _openssl = None;
    }
    let c = plan
        .compare("session establishment", "sessions", &contenders)
        .await?;

    let mut figures = Vec::new();
    if let Some(b) = bare_i {
        let ratio = c.rate_ratio(0, b);
        figures.push(Figure::interleaved(
            &format!("session establishment (TLS 1.3 + steps 3–6, {workers} clients)"),
            "sessions/s",
            c.throughput(0).median,
            "bare TLS 1.3, tokio-rustls (plain-server)",
            c.throughput(b).median,
            ratio,
            Bound::AtLeast(0.7),
        ));
        if let Some(ceiling) = ceiling {
            figures.push(Figure::interleaved(
                "session establishment / bare TLS, against the ceiling from criterion",
                "(ratio)",
                ratio.median,
                "computed ceiling",
                ceiling.ratio,
                ratio.scaled(ceiling.ratio),
                Bound::AtLeast(0.9),
            ));
        }
        figures.push(Figure::interleaved(
            "server CPU per session (pki-server, TLS 1.3 + steps 3–6)",
            "ms",
            c.cpu(0).median,
            "per bare TLS 1.3 handshake (plain-server)",
            c.cpu(b).median,
            c.cpu_ratio(0, b),
            Bound::AtMost(1.6),
        ));
    }
    figures.push(Figure::plain(
        "session establishment p50 latency",
        "ms",
        c.latency(0, false).median,
    ));
    figures.push(Figure::plain(
        "session establishment p99 latency",
        "ms",
        c.latency(0, true).median,
    ));
    if let Some(b) = bare_i {
        figures.push(Figure::interleaved(
            "session resumption vs bare TLS",
            "sessions/s",
            c.throughput(resume_i).median,
            "bare TLS 1.3, tokio-rustls (plain-server)",
            c.throughput(b).median,
            c.rate_ratio(resume_i, b),
            Bound::Nothing,
        ));
    }
    if let Some(o) = openssl_i {
        figures.push(Figure::interleaved(
            "session establishment vs openssl s_server",
            "sessions/s",
            c.throughput(0).median,
            "bare TLS 1.3, openssl s_server",
            c.throughput(o).median,
            c.rate_ratio(0, o),
            Bound::Nothing,
        ));
    }
    figures.extend([
        Figure::interleaved(
            &format!("session resumption with a ticket (TLS 1.3 + steps 3R–4R, {workers} clients)"),
            "sessions/s",
            c.throughput(resume_i).median,
            "full registration (TLS 1.3 + steps 3–6), same clients",
            c.throughput(0).median,
            c.rate_ratio(resume_i, 0),
            Bound::Nothing,
        ),
        Figure::interleaved(
            "session resumption p50 latency",
            "ms",
            c.latency(resume_i, false).median,
            "full registration p50",
            c.latency(0, false).median,
            c.over_rounds(|r| r[resume_i].p50_ms / r[0].p50_ms),
            Bound::Nothing,
        ),
        Figure::interleaved(
            "server CPU per resumed connection (pki-server)",
            "ms",
            c.cpu(resume_i).median,
            "per registered connection",
            c.cpu(0).median,
            c.cpu_ratio(resume_i, 0),
            Bound::Nothing,
        ),
    ]);
    Ok((figures, c))
}

/// Registrations at each level of concurrent clients.
pub async fn sessions_scaling(f: &Fixture, plan: &Plan) -> anyhow::Result<Scaling> {
    let mut points = Vec::new();
    for &n in &plan.levels {
        let c = f.registering("session establishment", n);
        points.push(plan.level(n, &c).await?);
    }
    Ok(Scaling {
        name: "session establishment (pki-server, TLS 1.3 + steps 3–6)".into(),
        unit: "sessions".into(),
        points,
    })
}

/// `openssl s_server` presenting the certificate chain and key in `certs`.
struct OpensslServer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl OpensslServer {
    async fn start(certs: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // `-cert` takes the first certificate only: the intermediates
        // between it and the root go in `-cert_chain`, as our server sends
        // them too.
        let chain = pki_common::files::read_certs(&certs.join("server.pem"))?;
        let intermediates: String = chain[1..]
            .iter()
            .map(pki_common::files::cert_to_pem)
            .collect();
        let chain_file = dir.path().join("chain.pem");
        std::fs::write(&chain_file, intermediates)?;
        let port = pki_tests::free_port();
        let mut openssl = Command::new("openssl");
        openssl.arg("s_server");
        if chain.len() > 1 {
            openssl.arg("-cert_chain").arg(&chain_file);
        }
        let child = openssl
            .args(["-tls1_3", "-quiet", "-www", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(certs.join("server.pem"))
            .arg("-key")
            .arg(certs.join("server.key"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("openssl")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        pki_tests::wait_for_port(addr, Duration::from_secs(10)).await;
        Ok(OpensslServer {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------ 3. service requests

/// An established session, shared between the phases of a measurement.
type SharedSession = Arc<tokio::sync::Mutex<(Connection, ClientSession)>>;

/// Steps 7 and 8 over many established sessions, against the same sizes
/// through a plain tokio-rustls echo server (`plain-server --behaviour
/// echo`), in alternating rounds; then p99 at half the peak.
pub async fn requests(f: &Fixture, plan: &Plan) -> anyhow::Result<(Vec<Figure>, Comparison)> {
    let sessions = plan.clients;
    let body = vec![0x42u8; 32];
    let conns = establish(f, sessions).await?;
    // On a session of its own: building a request advances its session.
    let frame_len = request_frame_len(&establish(f, 1).await?[0], &body).await?;
    let (echo, echo_addr) = start_plain_server(f.dir.path(), "echo").await?;
    let mut streams = Vec::new();
    for _ in 0..sessions {
        let tcp = TcpStream::connect(echo_addr).await?;
        tcp.set_nodelay(true)?;
        let s = TlsConnector::from(f.tls.config.clone())
            .connect(ServerName::try_from("app.pki.test")?.to_owned(), tcp)
            .await?;
        streams.push(Arc::new(tokio::sync::Mutex::new(s)));
    }
    let ours = Contender::driven("steps 7–8 (pki-server)", Some(f.pid()), sessions, {
        let (conns, body) = (conns.clone(), body.clone());
        move |w| {
            let (c, body) = (conns[w].clone(), body.clone());
            async move {
                let mut guard = c.lock().await;
                let (conn, session) = &mut *guard;
                conn.request(session, "echo", &body).await?;
                Ok(())
            }
        }
    });
    let payload = vec![0x42u8; frame_len];
    let base = Contender::driven(
        "plain tokio-rustls echo (plain-server)",
        Some(echo.0.id()),
        sessions,
        move |w| {
            let (s, payload) = (streams[w].clone(), payload.clone());
            async move {
                let mut s = s.lock().await;
                let mut msg = (payload.len() as u32).to_be_bytes().to_vec();
                msg.extend_from_slice(&payload);
                s.write_all(&msg).await?;
                s.flush().await?;
                let mut len = [0u8; 4];
                s.read_exact(&mut len).await?;
                let mut back = vec![0u8; u32::from_be_bytes(len) as usize];
                s.read_exact(&mut back).await?;
                Ok(())
            }
        },
    );
    let c = plan
        .compare("service requests", "req", &[ours, base])
        .await?;
    let peak = c.throughput(0).median;
    let half = paced(
        &conns,
        &body,
        peak / 2.0,
        (plan.round * 3).max(Duration::from_secs(2)),
    )
    .await;
    if half.errors > 0 {
        eprintln!("service requests at half the peak: {} failed", half.errors);
    }
    Ok((
        vec![
            Figure::interleaved(
                &format!("service requests (steps 7–8, {sessions} sessions, 32-byte body)"),
                "req/s",
                peak,
                &format!("plain tokio-rustls echo, {frame_len}-byte messages"),
                c.throughput(1).median,
                c.rate_ratio(0, 1),
                Bound::AtLeast(0.8),
            ),
            Figure::interleaved(
                "server CPU per request (pki-server)",
                "ms",
                c.cpu(0).median,
                "per echoed message (plain-server)",
                c.cpu(1).median,
                c.cpu_ratio(0, 1),
                Bound::Nothing,
            ),
            Figure::at_most(
                &format!(
                    "service request p99 at half the peak ({:.0} req/s)",
                    half.rate()
                ),
                "ms",
                half.percentile_ms(99.0),
                1.0,
                None,
            ),
        ],
        c,
    ))
}

/// `sessions` registered sessions with the fixture's server, one per
/// connection.
async fn establish(f: &Fixture, sessions: usize) -> anyhow::Result<Vec<SharedSession>> {
    let mut conns = Vec::new();
    for _ in 0..sessions {
        let mut conn = Connection::connect_with(&f.tls, &f.config).await?;
        let session = conn.register().await?;
        conns.push(Arc::new(tokio::sync::Mutex::new((conn, session))));
    }
    Ok(conns)
}

/// Open loop at `rate` requests per second in all: each session sends on a
/// fixed schedule, the sessions' schedules spread over one interval, and
/// latency is measured from the send, not from the schedule.
async fn paced(conns: &[SharedSession], body: &[u8], rate: f64, duration: Duration) -> Samples {
    let sessions = conns.len();
    let pace = Duration::from_secs_f64(sessions as f64 / rate.max(1.0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, c) in conns.iter().enumerate() {
        let offset = pace.mul_f64(w as f64 / sessions as f64);
        let schedule = Schedule {
            first: start + offset,
            end: start + duration,
            pace,
        };
        tasks.spawn(paced_session(c.clone(), body.to_vec(), schedule));
    }
    gather(tasks, start).await
}

/// When one session sends: at `first`, then every `pace`, until `end`.
struct Schedule {
    first: Instant,
    end: Instant,
    pace: Duration,
}

/// One session's part of [`paced`].
async fn paced_session(c: SharedSession, body: Vec<u8>, schedule: Schedule) -> Samples {
    let mut s = Samples::default();
    let mut k = 0u32;
    loop {
        let at = schedule.first + schedule.pace * k;
        if at >= schedule.end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let t = Instant::now();
        let mut guard = c.lock().await;
        let (conn, session) = &mut *guard;
        match conn.request(session, "echo", &body).await {
            Ok(_) => s.record(t.elapsed()),
            Err(_) => s.errors += 1,
        }
        k += 1;
    }
    s
}

/// The request frame's size on the wire, for the echo baseline.
async fn request_frame_len(c: &SharedSession, body: &[u8]) -> anyhow::Result<usize> {
    let mut guard = c.lock().await;
    let (_, session) = &mut *guard;
    let req = pki_common::proto::message::ServiceRequest {
        name: "echo".into(),
        body: body.to_vec(),
        timestamp: pki_common::unix_now(),
    };
    Ok(session.request(&req)?.encode().len())
}

// -------------------------------------------------------------- 4. memory

/// The resident set of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens `n` connections with `open`, 64 at a time; keeps them.
async fn open_many<T, F, Fut>(n: usize, open: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..(n - held.len()).min(64) {
            batch.spawn(open());
        }
        while let Some(opened) = batch.join_next().await {
            held.push(opened??);
        }
    }
    Ok(held)
}

/// The server's RSS per idle established session, beyond what the TLS
/// connection itself costs (measured on a plain server holding the same
/// number of idle TLS connections); and, on the same server in the same
/// run, its RSS per session whose connection has closed, the client
/// keeping only its ticket, and its CPU per resumed connection beside its
/// CPU per registered one.
pub async fn memory(n: usize, bin_dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let pki = TestPki::start().await;
    let dir = tempfile::tempdir()?;
    std::fs::copy(pki.root_path(), dir.path().join("ca.pem"))?;
    let (server, addr) = start_pki_server(&pki, dir.path(), bin_dir, &[]).await?;
    let config = pki.client_config(addr);
    let tls = Arc::new(ClientTls::prepare(&config).await?);

    // First, while the server is fresh: sessions granted on connections
    // that then close, so that at most 64 connections are ever open and
    // whatever the server keeps per session shows.
    let granted = rss_per_ticket(&server, n, &tls, &config)
        .await
        .context("sessions granted, connections closed")?;
    // Every one of those sessions resumed once: they all still live,
    // though the server holds nothing for them.
    let resume_cpu = resume_all(&server, &granted.tickets, &tls, &config)
        .await
        .context("resuming the tickets")?;
    let ours = rss_per_connection(&server, n, || open_session(tls.clone(), config.clone()))
        .await
        .context("idle sessions")?;

    // Baseline: the same number of idle TLS connections to a plain server
    // presenting the same certificate.
    let (plain, baddr) = start_plain_server(dir.path(), "idle").await?;
    let tls_only = rss_per_connection(&plain, n, || open_tls(tls.clone(), baddr))
        .await
        .context("idle TLS connections to the plain server")?;

    let per_op_ms = |cpu: Duration| cpu.as_secs_f64() * 1e3 / n as f64;
    Ok(vec![
        Figure::compared(
            &format!("server RSS per idle session ({n} sessions)"),
            "KiB",
            ours,
            "plain TLS connection",
            tls_only,
        ),
        Figure::at_most(
            "server RSS per idle session beyond its TLS connection",
            "KiB",
            ours - tls_only,
            4.0,
            None,
        ),
        Figure::compared(
            &format!(
                "server RSS per session with its connection closed, the client keeping its ticket ({n} sessions)"
            ),
            "KiB",
            granted.kib_per_session,
            "idle session on an open connection",
            ours,
        ),
        Figure::compared(
            &format!("pki-server CPU per resumed connection (TLS 1.3 + steps 3R–4R, {n} tickets)"),
            "ms",
            per_op_ms(resume_cpu),
            "per registered connection (TLS 1.3 + steps 3–6)",
            per_op_ms(granted.cpu),
        ),
    ])
}

/// What [`rss_per_ticket`] measured, and the tickets it obtained.
struct Granted {
    kib_per_session: f64,
    /// The server's CPU time for the `n` registrations.
    cpu: Duration,
    tickets: Vec<ClientTicket>,
}

/// How much `server`'s resident set grows, in KiB per session, when `n`
/// sessions are granted and their connections closed (64 at a time, after
/// 64 as a warm-up), the clients keeping their tickets; and the server's
/// CPU time for those `n` registrations.
async fn rss_per_ticket(
    server: &Reaped,
    n: usize,
    tls: &Arc<ClientTls>,
    config: &ClientConfig,
) -> anyhow::Result<Granted> {
    let grant = || grant_ticket(tls.clone(), config.clone());
    let _warm = open_many(64, &grant).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(server.0.id())?;
    let cpu_before = cpu_time(&server.0.id().to_string())?;
    let tickets = open_many(n, &grant).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(server.0.id())?;
    let cpu = cpu_time(&server.0.id().to_string())?.saturating_sub(cpu_before);
    Ok(Granted {
        kib_per_session: after.saturating_sub(before) as f64 / n as f64,
        cpu,
        tickets,
    })
}

/// Registers on a new connection, closes it, and keeps only the ticket.
async fn grant_ticket(tls: Arc<ClientTls>, config: ClientConfig) -> anyhow::Result<ClientTicket> {
    let (conn, session) = open_session(tls, config).await?;
    conn.close().await;
    session
        .ticket()
        .cloned()
        .ok_or_else(|| anyhow!("step 6 granted no ticket"))
}

/// Resumes every ticket once on a new connection, 64 at a time, and
/// closes it; an error unless all resume. Answers `server`'s CPU time.
async fn resume_all(
    server: &Reaped,
    tickets: &[ClientTicket],
    tls: &Arc<ClientTls>,
    config: &ClientConfig,
) -> anyhow::Result<Duration> {
    let pid = server.0.id().to_string();
    let before = cpu_time(&pid)?;
    for chunk in tickets.chunks(64) {
        let mut batch = tokio::task::JoinSet::new();
        for ticket in chunk {
            let (tls, config, ticket) = (tls.clone(), config.clone(), ticket.clone());
            batch.spawn(async move {
                let mut conn = Connection::connect_with(&tls, &config).await?;
                conn.resume(&ticket).await?;
                conn.close().await;
                anyhow::Ok(())
            });
        }
        while let Some(done) = batch.join_next().await {
            done?.context("resuming a ticket")?;
        }
    }
    // The server's side of the last closes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(cpu_time(&pid)?.saturating_sub(before))
}

/// `pki-server` from `bin_dir` over `dir` (which holds `ca.pem`), enrolled
/// with `pki` and with its limits raised out of the way; once it listens.
/// The token goes in `PKI_TOKEN`, as it should in any deployment: an
/// argument would be visible in the process table.
async fn start_pki_server(
    pki: &TestPki,
    dir: &Path,
    bin_dir: &Path,
    extra: &[&str],
) -> anyhow::Result<(Reaped, SocketAddr)> {
    let token = pki.token(&["app.pki.test"], Profile::Server);
    let listen = format!("127.0.0.1:{}", pki_tests::free_port());
    let server = Reaped(
        Command::new(bin_dir.join("pki-server"))
            .arg("--dir")
            .arg(dir)
            .args(["--listen", &listen, "--ca-url", &pki.ca_url()])
            .env("PKI_TOKEN", &token)
            .args(["--max-connections", "1000000"])
            .args(["--idle-timeout", "1h", "--handshake-timeout", "60s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("pki-server (run `cargo build --release` first)")?,
    );
    let addr: SocketAddr = listen.parse()?;
    pki_tests::wait_for_port(addr, Duration::from_secs(30)).await;
    Ok((server, addr))
}

/// This program as `plain-server` with `behaviour`, presenting the
/// certificate chain and key the pki-server enrolled into `dir`; once it
/// listens.
async fn start_plain_server(dir: &Path, behaviour: &str) -> anyhow::Result<(Reaped, SocketAddr)> {
    let listen = format!("127.0.0.1:{}", pki_tests::free_port());
    let plain = Reaped(
        Command::new(std::env::current_exe()?)
            .args([
                "plain-server",
                "--behaviour",
                behaviour,
                "--listen",
                &listen,
            ])
            .arg("--cert")
            .arg(dir.join("server.pem"))
            .arg("--key")
            .arg(dir.join("server.key"))
            .arg("--root")
            .arg(dir.join("ca.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let addr: SocketAddr = listen.parse()?;
    pki_tests::wait_for_port(addr, Duration::from_secs(30)).await;
    Ok((plain, addr))
}

/// How much `server`'s resident set grows, in KiB per connection, when
/// `n` connections opened with `open` are held: 64 are opened first as a
/// warm-up, and each reading waits for the process to settle.
async fn rss_per_connection<T, F, Fut>(server: &Reaped, n: usize, open: F) -> anyhow::Result<f64>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let _warm = open_many(64, &open).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(server.0.id())?;
    let held = open_many(n, &open).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(server.0.id())?;
    drop(held);
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}

async fn open_session(
    tls: Arc<ClientTls>,
    config: ClientConfig,
) -> anyhow::Result<(Connection, pki_common::proto::handshake::ClientSession)> {
    let mut conn = Connection::connect_with(&tls, &config).await?;
    let session = conn.register().await?;
    Ok((conn, session))
}

async fn open_tls(
    tls: Arc<ClientTls>,
    addr: SocketAddr,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    Ok(TlsConnector::from(tls.config.clone())
        .connect(ServerName::try_from("app.pki.test")?.to_owned(), tcp)
        .await?)
}

// ------------------------------------------------------- 5. whole programs

/// Wall time of `scripts/run-all.sh` with the release binaries: a first
/// run (creates the root, enrolls) and a second (reuses).
pub fn run_all(repo: &Path, bin_dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let certs = tempfile::tempdir()?;
    let mut times = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        let status = Command::new("bash")
            .arg("scripts/run-all.sh")
            .current_dir(repo)
            .env("BIN", bin_dir)
            .env("CERTS", certs.path())
            .env("CA_LISTEN", format!("127.0.0.1:{}", pki_tests::free_port()))
            .env(
                "SERVER_LISTEN",
                format!("127.0.0.1:{}", pki_tests::free_port()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "run-all failed");
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(vec![
        Figure::at_most(
            "make run-all wall time, first run (built)",
            "s",
            times[0],
            1.0,
            None,
        ),
        Figure::at_most(
            "make run-all wall time, second run (reuses)",
            "s",
            times[1],
            1.0,
            None,
        ),
    ])
}

/// A clean release build of the workspace in a scratch target directory.
pub fn clean_build(repo: &Path) -> anyhow::Result<Figure> {
    let target: PathBuf =
        std::env::temp_dir().join(format!("pki-bench-build-{}", std::process::id()));
    let start = Instant::now();
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--workspace",
            "--bins",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&target);
    anyhow::ensure!(status.success(), "clean build failed");
    Ok(Figure::plain(
        "clean release build of the workspace",
        "s",
        secs,
    ))
}

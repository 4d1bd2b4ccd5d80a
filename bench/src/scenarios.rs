//! One function per figure, each measuring ours and its baseline in the
//! same run with the same client code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use pki_ca::policy::{verify_csr, IssuancePolicy};
use pki_client::{ClientConfig, ClientTls, Connection};
use pki_common::cert::Profile;
use pki_common::proto::handshake::{ClientSession, ClientTicket};
use pki_tests::{RunningServer, TestPki};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::baseline::{self, Behaviour};
use crate::report::Figure;
use crate::stats::Samples;

/// The number of cores, as the baselines scale by it.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs `workers` copies of `op` until `duration` has passed.
async fn drive<F, Fut>(workers: usize, duration: Duration, op: F) -> Samples
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let op = op.clone();
        tasks.spawn(async move {
            let mut s = Samples::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(w).await {
                    Ok(()) => s.record(t.elapsed()),
                    Err(_) => s.errors += 1,
                }
            }
            s
        });
    }
    gather(tasks, start).await
}

// ------------------------------------------------------------ 1. issuance

/// CA issuance over HTTPS with keep-alive, against the in-process cost of
/// one issuance on one core times the number of cores.
pub async fn issuance(duration: Duration, workers: usize) -> anyhow::Result<Vec<Figure>> {
    let pki = TestPki::start().await;
    // Prepared in advance: the load generator only sends it.
    let csr = pki_tests::csr_for("app.pki.test");
    let names = vec!["app.pki.test".to_string()];
    let (linted, unlinted) = one_core_issuance_rates(&pki, &csr, &names)?;
    let limit = linted * cores() as f64;
    // Enough tokens for the whole run at the limit, and then some.
    let count = ((limit * duration.as_secs_f64() * 1.5) as usize).clamp(1000, 200_000);
    let samples = issue_over_https(&pki, csr, &names, count, duration, workers).await?;
    if samples.errors > 0 {
        eprintln!("CA issuance: {} requests failed", samples.errors);
    }
    Ok(vec![
        Figure::higher(
            &format!("CA issuance throughput ({workers} enrollers, keep-alive, recorded before answering)"),
            "cert/s",
            samples.rate(),
            &format!("in-process issuance × {} cores", cores()),
            limit,
            0.5,
        ),
        Figure::plain("CA issuance p50 latency", "ms", samples.percentile_ms(50.0)),
        Figure::plain("CA issuance p99 latency", "ms", samples.percentile_ms(99.0)),
        Figure::compared(
            "in-process issuance with pre-issuance lint, one core",
            "cert/s",
            linted,
            "the same without linting",
            unlinted,
        ),
        Figure::plain(
            "pre-issuance lint cost per certificate (same run)",
            "µs",
            (1.0 / linted - 1.0 / unlinted) * 1e6,
        ),
    ])
}

/// The baseline: issuances per second on one core, in process, for two
/// seconds each (parse and verify the CSR, decide, sign, encode): with the
/// pre-issuance lint, as the CA issues, and without, to show what linting
/// costs per certificate.
fn one_core_issuance_rates(
    pki: &TestPki,
    csr: &[u8],
    names: &[String],
) -> anyhow::Result<(f64, f64)> {
    let policy = IssuancePolicy::default();
    let issuer = pki.ca.current_issuer()?;
    let linted = rate(|| {
        let v = verify_csr(csr)?;
        Ok(pki.ca.issue_unrecorded(&v, names, Profile::Server)?)
    })?;
    let unlinted = rate(|| {
        let v = verify_csr(csr)?;
        let now = pki_common::unix_now() as i64;
        let d = policy.decide(&v, names, Profile::Server, issuer.info.not_after, now)?;
        Ok(issuer.sign_unlinted(&d, &v.spki_der, None)?)
    })?;
    Ok((linted, unlinted))
}

/// How many times a second `issue` runs (and its certificate is encoded)
/// on one core, over two seconds.
fn rate(issue: impl Fn() -> anyhow::Result<pki_ca::authority::SignedCert>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let c = issue()?;
        std::hint::black_box(pki_common::files::cert_to_pem(&c.der));
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// End to end: `count` tokens minted at once, then `workers` keep-alive
/// connections each posting the same CSR with a fresh token for `duration`.
async fn issue_over_https(
    pki: &TestPki,
    csr: Vec<u8>,
    names: &[String],
    count: usize,
    duration: Duration,
    workers: usize,
) -> anyhow::Result<Samples> {
    let tokens: Vec<String> = pki
        .ca
        .mint_tokens(names, Profile::Server, Duration::from_secs(3600), count)?
        .into_iter()
        .map(|t| t.to_string())
        .collect();
    let tokens = Arc::new(Mutex::new(tokens));
    let mut senders = Vec::new();
    for _ in 0..workers {
        senders.push(Arc::new(tokio::sync::Mutex::new(
            keepalive(pki.ca_addr, &pki.root()).await?,
        )));
    }
    let host = pki.ca_addr.to_string();
    let csr = Bytes::from(csr);
    Ok(drive(workers, duration, move |w| {
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
    })
    .await)
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

/// A CA and an application server, with the client's trust prepared once.
pub struct Fixture {
    pub pki: TestPki,
    pub server: RunningServer,
    pub config: ClientConfig,
    pub tls: Arc<ClientTls>,
}

impl Fixture {
    pub async fn start() -> anyhow::Result<Self> {
        let pki = TestPki::start().await;
        let server = pki
            .start_server(|c| {
                c.listener.max_connections = 1_000_000;
                c.max_requests_per_session = u64::MAX;
            })
            .await;
        let config = pki.client_config(server.addr);
        let tls = Arc::new(ClientTls::prepare(&config).await?);
        Ok(Fixture {
            pki,
            server,
            config,
            tls,
        })
    }

    /// The exact TLS configuration our server presents, for the baselines.
    fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        self.server.shared.live.current().tls.clone()
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

// --------------------------------------------- 2. session establishment

/// One loop of connections, measured: its samples, and the CPU time this
/// whole process (the clients and the in-process server together) spent
/// on it.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    pub samples: Samples,
    pub cpu: Duration,
}

impl Measured {
    /// Runs [`drive`] and reads this process's CPU time around it.
    async fn drive<F, Fut>(workers: usize, duration: Duration, op: F) -> anyhow::Result<Self>
    where
        F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let before = cpu_time("self")?;
        let samples = drive(workers, duration, op).await;
        let cpu = cpu_time("self")?.saturating_sub(before);
        Ok(Measured { samples, cpu })
    }

    /// Adds `other`, measured over another interval.
    fn merge(&mut self, other: Measured) {
        let elapsed = self.samples.elapsed + other.samples.elapsed;
        self.samples.merge(other.samples);
        self.samples.elapsed = elapsed;
        self.cpu += other.cpu;
    }

    /// CPU milliseconds per completed operation.
    fn cpu_ms_per_op(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / self.samples.count().max(1) as f64
    }
}

/// The CPU time (user and system) process `pid` has used so far, from
/// `/proc/<pid>/stat` (`"self"`: this process, every thread included).
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: the fields that
    // follow it start after the last `)`, with field 3 (the state).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("/proc/{pid}/stat has no field {n}"))?
            .parse()?)
    };
    // utime and stime (fields 14 and 15), in clock ticks: USER_HZ, which
    // Linux fixes at 100 for user space.
    let ticks = field(14)? + field(15)?;
    Ok(Duration::from_millis(ticks * 10))
}

/// Session establishment two ways, with the same clients against the same
/// server: a full registration (TLS 1.3, steps 3 to 6) and resuming with a
/// ticket (TLS 1.3, steps 3R and 4R), each connection then closed.
pub struct Establishment {
    pub registration: Measured,
    pub resumption: Measured,
    workers: usize,
}

/// Measures [`Establishment`]: one ticket is obtained by registering once,
/// then every resuming client presents a copy of it (a ticket resumes any
/// number of times until it expires). The two loops alternate, each run
/// twice for half of `duration`, so a load that changes during the run
/// weighs on both alike.
pub async fn establishment(
    f: &Fixture,
    duration: Duration,
    workers: usize,
) -> anyhow::Result<Establishment> {
    let ticket = {
        let mut conn = Connection::connect_with(&f.tls, &f.config).await?;
        let session = conn.register().await?;
        conn.close().await;
        session
            .ticket()
            .cloned()
            .ok_or_else(|| anyhow!("step 6 granted no ticket"))?
    };
    let half = duration / 2;
    let mut registration = Measured::default();
    let mut resumption = Measured::default();
    for _ in 0..2 {
        let (tls, config) = (f.tls.clone(), f.config.clone());
        registration.merge(
            Measured::drive(workers, half, move |_| {
                let (tls, config) = (tls.clone(), config.clone());
                async move {
                    let mut conn = Connection::connect_with(&tls, &config).await?;
                    conn.register().await?;
                    conn.close().await;
                    Ok(())
                }
            })
            .await?,
        );
        let (tls, config, ticket) = (f.tls.clone(), f.config.clone(), ticket.clone());
        resumption.merge(
            Measured::drive(workers, half, move |_| {
                let (tls, config, ticket) = (tls.clone(), config.clone(), ticket.clone());
                async move {
                    let mut conn = Connection::connect_with(&tls, &config).await?;
                    conn.resume(&ticket).await?;
                    conn.close().await;
                    Ok(())
                }
            })
            .await?,
        );
    }
    for (what, m) in [("registration", &registration), ("resumption", &resumption)] {
        if m.samples.errors > 0 {
            eprintln!("session {what}: {} errors", m.samples.errors);
        }
    }
    Ok(Establishment {
        registration,
        resumption,
        workers,
    })
}

/// Resuming with a ticket beside a full registration, from
/// [`establishment`]: the rate, the latency and the CPU per connection.
pub fn resumption(e: &Establishment) -> Vec<Figure> {
    let (reg, res) = (&e.registration, &e.resumption);
    vec![
        Figure::compared(
            &format!(
                "session resumption with a ticket (TLS 1.3 + steps 3R–4R, {} clients)",
                e.workers
            ),
            "sessions/s",
            res.samples.rate(),
            "full registration (TLS 1.3 + steps 3–6), same clients",
            reg.samples.rate(),
        ),
        Figure::compared(
            "session resumption p50 latency",
            "ms",
            res.samples.percentile_ms(50.0),
            "full registration p50",
            reg.samples.percentile_ms(50.0),
        ),
        Figure::compared(
            "CPU per resumed connection (clients and server, one process)",
            "ms",
            res.cpu_ms_per_op(),
            "per registered connection",
            reg.cpu_ms_per_op(),
        ),
    ]
}

/// TLS 1.3 plus steps 3 to 6 (the registrations of [`establishment`]),
/// against bare TLS 1.3 handshakes to a plain tokio-rustls server and to
/// `openssl s_server`.
pub async fn sessions(
    f: &Fixture,
    e: &Establishment,
    duration: Duration,
) -> anyhow::Result<Vec<Figure>> {
    let (ours, workers) = (&e.registration.samples, e.workers);
    let plain = baseline::spawn(f.server_tls(), Behaviour::Close).await?;
    let tls = f.tls.clone();
    let bare = drive(workers, duration, move |_| {
        let tls = tls.clone();
        async move { bare_handshake(&tls, plain).await }
    })
    .await;
    if bare.errors > 0 {
        eprintln!("bare TLS baseline: {} handshakes failed", bare.errors);
    }

    let mut figures = vec![
        Figure::higher(
            &format!("session establishment (TLS 1.3 + steps 3–6, {workers} clients)"),
            "sessions/s",
            ours.rate(),
            "bare TLS 1.3, tokio-rustls",
            bare.rate(),
            0.7,
        ),
        Figure::compared(
            "session resumption vs bare TLS",
            "sessions/s",
            e.resumption.samples.rate(),
            "bare TLS 1.3, tokio-rustls",
            bare.rate(),
        ),
    ];
    match OpensslServer::start(f).await {
        Ok(openssl) => {
            let (tls, addr) = (f.tls.clone(), openssl.addr);
            let s = drive(workers, duration, move |_| {
                let tls = tls.clone();
                async move { bare_handshake(&tls, addr).await }
            })
            .await;
            if s.errors > 0 {
                eprintln!("openssl s_server baseline: {} handshakes failed", s.errors);
            }
            figures.push(Figure::compared(
                "session establishment vs openssl s_server",
                "sessions/s",
                ours.rate(),
                "bare TLS 1.3, openssl s_server",
                s.rate(),
            ));
        }
        Err(e) => eprintln!("skipping the openssl s_server baseline: {e}"),
    }
    Ok(figures)
}

/// `openssl s_server` presenting our server's certificate.
struct OpensslServer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl OpensslServer {
    async fn start(f: &Fixture) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = f
            .server
            .dir
            .as_ref()
            .ok_or_else(|| anyhow!("no server files"))?
            .path();
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
/// through a plain tokio-rustls echo server; then p99 at half the peak.
pub async fn requests(
    f: &Fixture,
    duration: Duration,
    sessions: usize,
) -> anyhow::Result<Vec<Figure>> {
    let body = vec![0x42u8; 32];
    let conns = establish(f, sessions).await?;
    let peak = drive(sessions, duration, {
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
    })
    .await;
    let half = paced(&conns, &body, peak.rate() / 2.0, duration).await;
    let frame_len = request_frame_len(&conns[0], &body).await?;
    drop(conns);
    let base = echo_baseline(f, sessions, frame_len, duration).await?;
    if peak.errors + half.errors + base.errors > 0 {
        eprintln!(
            "service requests: {} / {} / {} failed (peak / half / baseline)",
            peak.errors, half.errors, base.errors
        );
    }
    Ok(vec![
        Figure::higher(
            &format!("service requests (steps 7–8, {sessions} sessions, 32-byte body)"),
            "req/s",
            peak.rate(),
            &format!("plain tokio-rustls echo, {frame_len}-byte messages"),
            base.rate(),
            0.8,
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
    ])
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

/// The baseline: `sessions` TLS connections to a plain tokio-rustls echo
/// server with our server's TLS configuration, each sending
/// length-prefixed messages of `frame_len` bytes and reading the echo.
async fn echo_baseline(
    f: &Fixture,
    sessions: usize,
    frame_len: usize,
    duration: Duration,
) -> anyhow::Result<Samples> {
    let echo = baseline::spawn(f.server_tls(), Behaviour::Echo).await?;
    let mut streams = Vec::new();
    for _ in 0..sessions {
        let tcp = TcpStream::connect(echo).await?;
        tcp.set_nodelay(true)?;
        let s = TlsConnector::from(f.tls.config.clone())
            .connect(ServerName::try_from("app.pki.test")?.to_owned(), tcp)
            .await?;
        streams.push(Arc::new(tokio::sync::Mutex::new(s)));
    }
    let payload = vec![0x42u8; frame_len];
    Ok(drive(sessions, duration, move |w| {
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
    })
    .await)
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
    let (server, addr) = start_pki_server(&pki, dir.path(), bin_dir).await?;
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
    let (plain, baddr) = start_idle_server(dir.path()).await?;
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

/// This program as `idle-server`, presenting the certificate and key the
/// pki-server enrolled into `dir`; once it listens.
async fn start_idle_server(dir: &Path) -> anyhow::Result<(Reaped, SocketAddr)> {
    let listen = format!("127.0.0.1:{}", pki_tests::free_port());
    let plain = Reaped(
        Command::new(std::env::current_exe()?)
            .args(["idle-server", "--listen", &listen])
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
    Ok(Figure {
        name: "clean release build of the workspace".into(),
        unit: "s".into(),
        ours: secs,
        baseline_name: None,
        baseline: None,
        ratio: None,
        target: "—".into(),
        met: None,
    })
}

/// Merges the samples of every finished task; the elapsed time runs from
/// `start`, when the first task began.
async fn gather(mut tasks: tokio::task::JoinSet<Samples>, start: Instant) -> Samples {
    let mut all = Samples::default();
    while let Some(s) = tasks.join_next().await {
        if let Ok(s) = s {
            all.merge(s);
        }
    }
    all.elapsed = start.elapsed();
    all
}

//! Robustness: every limit, the fault cases, panic isolation and a bounded
//! load run. Timing is only ever a bound, never an assertion.

use std::sync::Arc;
use std::time::Duration;

use pki_ca::ledger::{IssuedRecord, Ledger, LedgerError, SqliteLedger};
use pki_ca::policy::IssuancePolicy;
use pki_ca::token::TokenGrant;
use pki_ca::{Ca, CaPaths};
use pki_client::{request_once, ClientError, Connection, SessionClient};
use pki_common::proto::{AlertCode, ProtoError};
use pki_server::service::Service;
use pki_server::AppServer;
use pki_tests::refusals::peer_alert;
use pki_tests::{app_token, bind_ca, bounded, offline_ca, AppFixture, RunningServer, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes; `true` if it did within `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_and_others_carry_on() {
    bounded(async {
        let AppFixture { pki, server } =
            AppFixture::start_with(|c| c.listener.handshake_timeout = Duration::from_millis(300))
                .await;
        // Connects and sends nothing at all.
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        // Meanwhile another client is served normally.
        request_once(&pki.client_config(server.addr), "memo", b"")
            .await
            .unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(10)).await);

        // Completes TLS, then says nothing: refused with a timeout alert.
        let mut conn = Connection::connect(&pki.client_config(server.addr))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let err = conn.register().await.err().unwrap();
        assert!(
            matches!(peer_alert(&err), Some(AlertCode::Timeout))
                || matches!(
                    err,
                    ClientError::Proto(ProtoError::Io(_)) | ClientError::Tls { .. }
                ),
            "{err}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_connection_times_out() {
    bounded(async {
        let AppFixture { pki, server } =
            AppFixture::start_with(|c| c.idle_timeout = Duration::from_millis(300)).await;
        let (mut conn, mut session) = pki.session(server.addr).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        // The server has sent its timeout alert and closed.
        let err = conn.request(&mut session, "memo", b"").await.unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::Timeout), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_a_configured_limit_are_refused() {
    bounded(async {
        let AppFixture { pki, server } = AppFixture::start_with(|c| c.max_frame = 512).await;
        let (mut conn, mut session) = pki.session(server.addr).await;
        conn.request(&mut session, "echo", &[7; 100]).await.unwrap();
        let err = conn
            .request(&mut session, "echo", &[7; 1000])
            .await
            .unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::FrameTooLarge), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_at_its_request_limit_is_ended_and_the_client_registers_again() {
    bounded(async {
        let AppFixture { pki, server } =
            AppFixture::start_with(|c| c.max_requests_per_session = 2).await;
        let config = pki.client_config(server.addr);
        let (mut conn, mut session) = pki.session(server.addr).await;
        conn.request(&mut session, "memo", b"").await.unwrap();
        conn.request(&mut session, "memo", b"").await.unwrap();
        let err = conn.request(&mut session, "memo", b"").await.unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::RequestLimit), "{err}");

        let mut client = SessionClient::new(config);
        for _ in 0..5 {
            let resp = client.request("memo", b"").await.unwrap();
            assert_eq!(resp.data, b"take cis3319 class this morning");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_connections_are_refused_not_queued() {
    bounded(async {
        let AppFixture { pki, server } =
            AppFixture::start_with(|c| c.listener.max_connections = 2).await;
        let config = pki.client_config(server.addr);
        let a = Connection::connect(&config).await.unwrap();
        let b = Connection::connect(&config).await.unwrap();
        // The third is closed at once: its TLS handshake fails.
        let err = Connection::connect(&config).await.err().unwrap();
        assert!(
            matches!(err, ClientError::Handshake { .. } | ClientError::Tls { .. }),
            "{err}"
        );
        a.close().await;
        b.close().await;
        // Once the others are gone, connections are accepted again.
        let mut ok = false;
        for _ in 0..100 {
            if request_once(&config, "memo", b"").await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "connections were not accepted again");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_the_client_resumes_its_session_with_its_ticket() {
    bounded(async {
        let pki = TestPki::start().await;
        let mut first = pki.start_server(|_| {}).await;
        let addr = first.addr;
        // Keep the server's files when the first instance goes away.
        let files = first.dir.take().unwrap();
        let dir = files.path().to_path_buf();
        let config = pki.client_config(addr);
        let mut client = SessionClient::new(config.clone());
        client.request("memo", b"").await.unwrap();
        let old_session = client.session().unwrap().session_id;
        client.disconnect().await;

        // Restart: a new server process over the same files and address.
        let mut server_config = pki.server_config(&dir, None);
        server_config.listener.listen = addr;
        drop(first);
        let mut restarted = None;
        for _ in 0..100 {
            match AppServer::start(server_config.clone()).await {
                Ok(s) => {
                    restarted = Some(RunningServer::spawn(s, None));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let _restarted = restarted.expect("the server did not restart on its address");

        // The restarted server remembers nothing, but the client's ticket
        // (sealed under the ticket key in the server's directory) resumes
        // the same session.
        let resp = client.request("memo", b"").await.unwrap();
        assert_eq!(client.session().unwrap().session_id, old_session);
        assert_eq!(resp.data, b"take cis3319 class this morning");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_session_on_a_restarted_server_gets_unknown_session() {
    bounded(async {
        let pki = TestPki::start().await;
        let a = pki.start_server(|_| {}).await;
        let (mut conn, mut session) = pki.session(a.addr).await;
        conn.request(&mut session, "memo", b"").await.unwrap();
        // A second server instance (as after a restart) never granted it.
        let b = pki.start_server(|_| {}).await;
        let mut other = Connection::connect(&pki.client_config(b.addr))
            .await
            .unwrap();
        let err = other.request(&mut session, "memo", b"").await.unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::UnknownSession), "{err}");
        assert!(
            err.to_string().contains("unknown session; register again"),
            "{err}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_connection_does_not_take_the_server_down() {
    bounded(async {
        let pki = TestPki::start().await;
        let identity = pki.enroll_identity(&["app.pki.test"]).await;
        let mut service = Service::default();
        service.add("boom", |_, _| panic!("a handler bug"));
        let dir = tempfile::tempdir().unwrap();
        let config = pki_server::ServerConfig {
            listener: pki_server::ListenOptions::on("127.0.0.1:0".parse().unwrap()),
            certs_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let server = AppServer::bind(config, identity, service).await.unwrap();
        let running = RunningServer::spawn(server, Some(dir));
        let client = pki.client_config(running.addr);
        assert!(request_once(&client, "boom", b"").await.is_err());
        for _ in 0..3 {
            let resp = request_once(&client, "memo", b"").await.unwrap();
            assert_eq!(resp.data, b"take cis3319 class this morning");
        }
    })
    .await
}

/// A ledger whose disk has gone read-only: reads work, writes fail.
struct ReadOnlyLedger(SqliteLedger);

impl Ledger for ReadOnlyLedger {
    fn add_token(&self, grant: &TokenGrant) -> Result<(), LedgerError> {
        self.0.add_token(grant)
    }
    fn token(&self, id: &str) -> Result<Option<TokenGrant>, LedgerError> {
        self.0.token(id)
    }
    fn record_issuance(&self, _: &IssuedRecord, _: Option<&str>) -> Result<(), LedgerError> {
        Err(LedgerError::Db(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some("attempt to write a readonly database".into()),
        )))
    }
    fn certificates(&self) -> Result<Vec<IssuedRecord>, LedgerError> {
        self.0.certificates()
    }
    fn certificate(&self, serial: &str) -> Result<Option<IssuedRecord>, LedgerError> {
        self.0.certificate(serial)
    }
    fn revoke(&self, serial: &str, r: pki_ca::ledger::Revocation) -> Result<(), LedgerError> {
        self.0.revoke(serial, r)
    }
    fn revision(&self) -> Result<i64, LedgerError> {
        self.0.revision()
    }
    fn next_crl_number(&self) -> Result<u64, LedgerError> {
        self.0.next_crl_number()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_cannot_record_refuses_to_issue() {
    bounded(async {
        let pki = TestPki::start().await;
        let paths = CaPaths::new(pki.dir());
        let sqlite = SqliteLedger::open(&paths.ledger()).unwrap();
        let ca = Arc::new(
            Ca::with_ledger(
                &paths,
                IssuancePolicy::default(),
                Arc::new(ReadOnlyLedger(sqlite)),
            )
            .unwrap(),
        );
        let token = app_token(&ca, Duration::from_secs(60));
        let before = pki.ca.ledger().certificates().unwrap().len();
        // Its own TLS certificate cannot be recorded either, so it does not start.
        let err = bind_ca(ca.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("readonly"), "{err}");
        // And a CSR is refused with ledger_unavailable, certificate withheld.
        let csr = pki_tests::csr_for("app.pki.test");
        let err = ca.sign(Some(&token), &csr).unwrap_err();
        assert_eq!(err.code(), "ledger_unavailable");
        assert_eq!(pki.ca.ledger().certificates().unwrap().len(), before);
        // The token was not consumed: once the ledger works, it still does.
        pki.ca.sign(Some(&token), &csr).unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_many_concurrent_full_flows_none_fail_and_memory_stays_bounded() {
    bounded(async {
        let AppFixture { pki, server } = AppFixture::start().await;
        let config = pki.client_config(server.addr);
        const CLIENTS: usize = 16;
        const ROUNDS: usize = 4;
        const FLOWS_PER_ROUND: usize = 10;
        let mut rss = Vec::new();
        for _ in 0..ROUNDS {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CLIENTS {
                let config = config.clone();
                tasks.spawn(async move {
                    for _ in 0..FLOWS_PER_ROUND {
                        let mut conn = Connection::connect(&config).await?;
                        let mut session = conn.register().await?;
                        for _ in 0..3 {
                            let r = conn.request(&mut session, "memo", b"").await?;
                            assert_eq!(r.data, b"take cis3319 class this morning");
                        }
                        conn.close().await;
                    }
                    Ok::<_, ClientError>(())
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
            rss.push(resident_kib());
        }
        // Memory after the last round is not far above memory after the
        // first: nothing accumulates per flow.
        let (first, last) = (rss[0], rss[rss.len() - 1]);
        assert!(
            last <= first + 16 * 1024,
            "RSS grew from {first} KiB to {last} KiB: {rss:?}"
        );
    })
    .await
}

/// The resident set size of this process, in KiB.
fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_on_a_raw_socket_does_not_block_the_ca() {
    bounded(async {
        let pki = TestPki::start().await;
        let mut silent = TcpStream::connect(pki.ca_addr).await.unwrap();
        silent.write_all(b"").await.unwrap();
        let resp = pki.ca_client().get("/health").await.unwrap();
        assert_eq!(resp.status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_killed_in_the_middle_of_issuing_loses_nothing_and_repeats_no_serial() {
    use std::process::{Command, Stdio};
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (paths, ca) = offline_ca(dir.path());
        let tokens: Vec<String> = (0..400)
            .map(|_| app_token(&ca, Duration::from_secs(600)))
            .collect();
        drop(ca);
        let port = pki_tests::free_port();
        let listen = format!("127.0.0.1:{port}");
        let spawn_ca = || {
            pki_tests::Reaped(
                Command::new(pki_tests::binary("pki-ca"))
                    .args([
                        "--dir",
                        dir.path().to_str().unwrap(),
                        "serve",
                        "--listen",
                        &listen,
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        };
        let mut ca = spawn_ca();
        pki_tests::wait_for_port(listen.parse().unwrap(), Duration::from_secs(20)).await;

        let root = pki_common::files::read_cert(&paths.root_cert()).unwrap();
        let client =
            pki_common::ca::client::CaClient::new(&format!("https://{listen}"), None, &root)
                .unwrap();
        let csr = pki_tests::csr_for("app.pki.test");
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut workers = tokio::task::JoinSet::new();
        for chunk in tokens.chunks(50) {
            let (client, csr, received, chunk) = (
                client.clone(),
                csr.clone(),
                received.clone(),
                chunk.to_vec(),
            );
            workers.spawn(async move {
                for token in chunk {
                    match client
                        .post("/v1/sign", Some(&token), "application/pkcs10", csr.clone())
                        .await
                    {
                        Ok(resp) if resp.status == 200 => {
                            received.lock().unwrap().push(resp.body.to_vec())
                        }
                        _ => return,
                    }
                }
            });
        }
        // Kill the CA with SIGKILL while the enrollers are in full flight.
        while received.lock().unwrap().len() < 40 {
            assert!(
                !workers.is_empty() && workers.len() == 8,
                "the enrollers stopped early"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ca.0.kill().unwrap();
        ca.0.wait().unwrap();
        while workers.join_next().await.is_some() {}
        let received = received.lock().unwrap().clone();
        assert!(
            received.len() >= 40 && received.len() < tokens.len(),
            "{}",
            received.len()
        );

        // Restart, then check the ledger against what callers received.
        let _restarted = spawn_ca();
        pki_tests::wait_for_port(listen.parse().unwrap(), Duration::from_secs(20)).await;
        let ledger = SqliteLedger::open(&paths.ledger()).unwrap();
        let records = ledger.certificates().unwrap();
        for pem in &received {
            use rustls::pki_types::pem::PemObject;
            let der = rustls::pki_types::CertificateDer::from_pem_slice(pem).unwrap();
            let serial = pki_common::cert::CertInfo::parse(&der).unwrap().serial_hex;
            let record = ledger
                .certificate(&serial)
                .unwrap()
                .expect("a certificate a caller received is missing from the ledger");
            assert_eq!(record.der, der.as_ref());
        }
        let serials: std::collections::HashSet<_> =
            records.iter().map(|r| r.serial_hex.clone()).collect();
        assert_eq!(serials.len(), records.len(), "a serial repeats");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_ca_and_the_server_down_gracefully_with_status_0() {
    use std::process::{Command, Stdio};
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().to_str().unwrap().to_string();
        let (paths, ca) = offline_ca(dir.path());
        let token = app_token(&ca, Duration::from_secs(600));
        drop(ca);
        let ca_listen = format!("127.0.0.1:{}", pki_tests::free_port());
        let server_listen = format!("127.0.0.1:{}", pki_tests::free_port());
        let spawn = |args: Vec<String>, bin: &str| {
            pki_tests::Reaped(
                Command::new(pki_tests::binary(bin))
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        };
        let mut ca = spawn(
            vec![
                "--dir".into(),
                certs.clone(),
                "serve".into(),
                "--listen".into(),
                ca_listen.clone(),
            ],
            "pki-ca",
        );
        let mut server = spawn(
            vec![
                "--dir".into(),
                certs.clone(),
                "--listen".into(),
                server_listen.clone(),
                "--ca-url".into(),
                format!("https://{ca_listen}"),
                "--token".into(),
                token,
            ],
            "pki-server",
        );
        pki_tests::wait_for_port(server_listen.parse().unwrap(), Duration::from_secs(20)).await;

        // A client in the middle of a session when the server is told to stop.
        let config = pki_client::ClientConfig {
            server: server_listen.clone(),
            ca: paths.root_cert(),
            crl: pki_client::CrlSource::Fetch {
                ca_url: format!("https://{ca_listen}"),
                ca_name: None,
            },
            ..Default::default()
        };
        let mut conn = Connection::connect(&config).await.unwrap();
        let mut session = conn.register().await.unwrap();
        conn.request(&mut session, "memo", b"").await.unwrap();

        let sigterm = |pid: u32| {
            assert!(Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success());
        };
        sigterm(server.0.id());
        let status = tokio::task::spawn_blocking(move || {
            let status = server.0.wait().unwrap();
            (status, server)
        })
        .await
        .unwrap()
        .0;
        assert!(status.success(), "pki-server exited with {status}");
        // The open connection was told, or closed, rather than left hanging.
        let err = conn.request(&mut session, "memo", b"").await.unwrap_err();
        assert!(
            matches!(peer_alert(&err), Some(AlertCode::ShuttingDown))
                || matches!(
                    err,
                    ClientError::Proto(ProtoError::Closed | ProtoError::Io(_))
                        | ClientError::Tls { .. }
                ),
            "{err}"
        );

        sigterm(ca.0.id());
        let status = tokio::task::spawn_blocking(move || ca.0.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "pki-ca exited with {status}");
        // The ledger was closed cleanly: it opens and holds the server's certificate.
        let ledger = SqliteLedger::open(&paths.ledger()).unwrap();
        assert!(ledger
            .certificates()
            .unwrap()
            .iter()
            .any(|r| r.names == vec!["app.pki.test".to_string()]));
    })
    .await
}

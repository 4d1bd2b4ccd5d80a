//! Attacks on the application server (issue 11, items 2, 4, 6, 7, 8, 14 and
//! 16b): each test performs the attack and asserts the specific refusal.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pki_ca::ledger::Revocation;
use pki_ca::policy::IssuancePolicy;
use pki_ca::{Ca, CaPaths};
use pki_client::{request_once, ClientConfig};
use pki_common::ca::enroll::{Enrolled, Retry};
use pki_common::cert::{CertInfo, Profile};
use pki_common::files;
use pki_common::proto::handshake::{ClientHello, ClientSession, ClientTicket};
use pki_common::proto::message::{Registration, Response, ServiceRequest};
use pki_common::proto::resume::ClientResuming;
use pki_common::proto::{AlertCode, Kind, ProtoError};
use pki_common::revocation::{verify_crl, Reason};
use pki_common::shutdown::{self, ShutdownTrigger};
use pki_server::identity::Enrollment;
use pki_server::service::Service;
use pki_server::{AppServer, ClientAuth, ServerConfig, ServerError};
use pki_tests::raw::{memo, now_clock};
use pki_tests::refusals::tls_alert;
use pki_tests::{bind_ca, bounded, free_port, offline_ca, RawClient, RunningServer, TestPki};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore};
use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

// ------------------------------------------------------------- helpers

/// Every log line this test binary writes. One global subscriber: a
/// thread-local one misses events whose callsites another test's thread
/// registered first (tracing caches each callsite's interest). Tests look
/// for lines only their own attack can produce.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> &'static Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            use tracing_subscriber::util::SubscriberInitExt;
            let logs = Logs::default();
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
                .finish()
                .try_init()
                .expect("no other global subscriber in this test binary");
            logs
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a log line contains `needle` (at most 20 s, then fails
    /// showing the logs).
    async fn wait_for(&self, needle: &str) {
        for _ in 0..1000 {
            if self.text().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no log line contains {needle:?}:\n{}", self.text());
    }
}

/// A second HTTPS listener over the same CA, that a test can stop: the CA
/// as one server sees it, unreachable on demand while the test's own
/// clients keep using the first listener.
async fn second_listener(pki: &TestPki) -> (String, ShutdownTrigger) {
    let server = bind_ca(pki.ca.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("https://{}", server.local_addr().unwrap());
    let (stop, shutdown) = shutdown::channel();
    tokio::spawn(server.run(shutdown));
    (url, stop)
}

/// Waits until the server's CRL lists `serial`.
async fn until_server_lists(server: &RunningServer, serial: &str) {
    while !server.shared.live.current().is_revoked(serial) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS client configuration trusting `pki`, presenting `identity` (its
/// chain: the leaf, then its intermediate), with rustls's default
/// resumption (an in-memory ticket store) left on.
fn tls_config(pki: &TestPki, identity: Option<&Enrolled>) -> rustls::ClientConfig {
    let verifier = pki_common::tls::server_verifier(&pki.root(), Vec::new()).unwrap();
    let identity = identity.map(|e| (e.chain(), e.key_der().unwrap()));
    pki_common::tls::client_config_with(verifier, identity).unwrap()
}

/// Completes TLS with `addr` from the local address `from`.
async fn connect(
    addr: SocketAddr,
    from: IpAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<RawClient> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(addr).await?;
    let stream = TlsConnector::from(config)
        .connect(ServerName::try_from("app.pki.test").unwrap(), tcp)
        .await?;
    let cert = stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    Ok(RawClient { stream, cert })
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// An honest registration as `client_id`.
fn registration_as(client_id: &str) -> Registration {
    Registration {
        client_id: client_id.into(),
        client_addr: "127.0.0.1:50000".into(),
        timestamp: pki_common::unix_now(),
    }
}

/// Steps 3 to 6 with `registration`; the server's refusal as an error.
async fn register(
    raw: &mut RawClient,
    registration: &Registration,
) -> Result<ClientSession, ProtoError> {
    let (hello, frame) = ClientHello::start("app.pki.test", raw.exporter(), now_clock())?;
    raw.send(&frame).await;
    let proof = raw.recv().await?;
    let mut registering = hello.on_proof(&proof, &raw.cert, now_clock())?;
    let frame = registering.register(registration)?;
    raw.send(&frame).await;
    let granted = raw.recv().await?;
    Ok(registering
        .on_granted(&granted, &registration.client_id, now_clock())?
        .0)
}

/// Steps 7 and 8 for `request`.
async fn ask(
    raw: &mut RawClient,
    session: &mut ClientSession,
    request: &ServiceRequest,
) -> Result<Response, ProtoError> {
    let frame = session.request(request)?;
    raw.send(&frame).await;
    session.on_response(&raw.recv().await?, now_clock())
}

fn named(name: &str) -> ServiceRequest {
    ServiceRequest {
        name: name.into(),
        ..memo()
    }
}

/// The code and message of a refusal received from the server.
fn alert<T>(result: Result<T, ProtoError>) -> (AlertCode, String) {
    match result {
        Err(ProtoError::PeerAlert { code, message }) => (code, message),
        Err(other) => panic!("expected an alert from the server, got {other}"),
        Ok(_) => panic!("expected an alert from the server, but it accepted"),
    }
}

/// A client configuration for `addr` presenting `identity` as `client_id`.
fn client_with(
    pki: &TestPki,
    addr: SocketAddr,
    identity: &Enrolled,
    client_id: &str,
) -> ClientConfig {
    ClientConfig {
        identity: Some(identity.clone()),
        client_id: client_id.into(),
        ..pki.client_config(addr)
    }
}

/// A server with an identity from `pki` that reaches the CA at `ca_url`,
/// refreshing its CRL every 50 ms.
async fn server_using(
    pki: &TestPki,
    ca_url: String,
    tweak: impl FnOnce(&mut ServerConfig),
) -> RunningServer {
    let identity = pki.enroll_identity(&["app.pki.test"]).await;
    let dir = pki.server_dir();
    let mut config = pki.server_config(dir.path(), None);
    config.enrollment.ca_url = ca_url;
    config.crl_refresh = Duration::from_millis(50);
    tweak(&mut config);
    let server = AppServer::bind(config, identity, Service::default())
        .await
        .unwrap();
    RunningServer::spawn(server, Some(dir))
}

// ------------------------------------------------- item 2: CRL rollback

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_never_rolls_its_crl_back() {
    let logs = Logs::capture();
    bounded(async {
        let pki = TestPki::start().await;
        let client = pki.enroll_client("client1.pki.test").await;
        // The CRL from before the revocation: what an attacker replays.
        let before = pki.ca.publish_crl().unwrap();
        let (ca_url, stop_ca) = second_listener(&pki).await;
        let server = server_using(&pki, ca_url, |c| c.client_auth = ClientAuth::Required).await;
        let config = client_with(&pki, server.addr, &client, "client1.pki.test");
        request_once(&config, "memo", b"").await.unwrap();

        pki.ca
            .revoke(&client.info.serial_hex, Reason::KeyCompromise)
            .unwrap();
        pki.ca.publish_crl().unwrap();
        until_server_lists(&server, &client.info.serial_hex).await;
        let err = request_once(&config, "memo", b"").await.unwrap_err();
        assert_eq!(
            tls_alert(&err),
            Some(AlertDescription::CertificateRevoked),
            "{err}"
        );

        // The CA becomes unreachable and the older CRL, which does not
        // list the client, is offered as ca.crl.pem.
        drop(stop_ca);
        let crl_file = server.certs_dir().join("ca.crl.pem");
        files::write_public(&crl_file, &before.pem()).unwrap();
        logs.wait_for(&format!("CRL #{} is older than CRL #", before.number))
            .await;
        let installed = crl_covering(&server.shared.live.current(), &client);
        assert!(installed.number > before.number);
        assert!(installed.revocation_of(&client.info.serial_hex).is_some());
        let err = request_once(&config, "memo", b"").await.unwrap_err();
        assert_eq!(
            tls_alert(&err),
            Some(AlertDescription::CertificateRevoked),
            "{err}"
        );

        // The same number with other content (the revocation left out) is
        // refused as well.
        let now = pki_common::unix_now() as i64;
        let forged = pki
            .ca
            .current_issuer()
            .unwrap()
            .sign_crl(installed.number, now, now + 3600, &[])
            .unwrap();
        let forged_pem = files::pem_encode("X509 CRL", forged.as_ref());
        files::write_public(&crl_file, &forged_pem).unwrap();
        logs.wait_for(&format!(
            "CRL #{0} differs from the CRL #{0} in use",
            installed.number
        ))
        .await;
        let current = server.shared.live.current();
        assert_eq!(crl_covering(&current, &client).der, installed.der);
        let err = request_once(&config, "memo", b"").await.unwrap_err();
        assert_eq!(
            tls_alert(&err),
            Some(AlertDescription::CertificateRevoked),
            "{err}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_the_server_takes_the_newer_of_the_cas_crl_and_the_file() {
    bounded(async {
        let pki = TestPki::start().await;
        let old = pki.ca.publish_crl().unwrap();
        let client = pki.enroll_client("client1.pki.test").await;
        pki.ca
            .revoke(&client.info.serial_hex, Reason::KeyCompromise)
            .unwrap();
        let new = pki.ca.publish_crl().unwrap();
        let identity = pki.enroll_identity(&["app.pki.test"]).await;

        // The CA is down and the file is old: the file's CRL is all there is.
        // ca.crl.pem is the CA's file (the current intermediate's CRL), read
        // where the server shares the CA's directory: the intermediate that
        // signed it is there too, in intermediates/, as is the root's CRL.
        let dir = pki.server_dir();
        share_ca_directory(&pki, dir.path());
        files::write_public(&dir.path().join("ca.crl.pem"), &new.pem()).unwrap();
        let mut config = pki.server_config(dir.path(), None);
        config.enrollment.ca_url = format!("https://127.0.0.1:{}", free_port());
        let server = AppServer::bind(config.clone(), identity, Service::default())
            .await
            .unwrap();
        assert_eq!(
            crl_covering(&server.shared().live.current(), &client).number,
            new.number
        );

        // The CA answers a newer CRL than the (old) file: the CA's wins.
        files::write_public(&dir.path().join("ca.crl.pem"), &old.pem()).unwrap();
        config.enrollment.ca_url = pki.ca_url();
        let identity = pki.enroll_identity(&["app.pki.test"]).await;
        let server = AppServer::bind(config, identity, Service::default())
            .await
            .unwrap();
        let crl = crl_covering(&server.shared().live.current(), &client);
        assert!(crl.number > old.number);
        assert!(crl.revocation_of(&client.info.serial_hex).is_some());
    })
    .await
}

#[test]
fn the_crl_succession_rule_refuses_rollbacks_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = offline_ca(dir.path());
    let issuer = ca.current_issuer().unwrap();
    let now = pki_common::unix_now() as i64;
    let signed = |number: u64, revoked: &[(String, Revocation)]| {
        let der = issuer.sign_crl(number, now, now + 3600, revoked).unwrap();
        verify_crl(der, &issuer.cert, now).unwrap()
    };
    let revoked = [(
        "01".to_string(),
        Revocation {
            reason: Reason::KeyCompromise,
            revoked_at: now,
        },
    )];
    let (five, six) = (signed(5, &revoked), signed(6, &revoked));
    use pki_common::revocation::{newest, CrlError, Succession};
    assert_eq!(six.succeeds(Some(&five)), Ok(Succession::Newer));
    assert_eq!(six.succeeds(Some(&six)), Ok(Succession::Same));
    assert_eq!(
        five.succeeds(Some(&six)),
        Err(CrlError::Rollback {
            offered: 5,
            current: 6
        })
    );
    assert_eq!(
        signed(6, &[]).succeeds(Some(&six)),
        Err(CrlError::Conflict { number: 6 })
    );
    assert_eq!(newest([five.clone(), six.clone()]).unwrap().number, 6);
    assert_eq!(newest([six, five]).unwrap().number, 6);
}

// --------------------------------------------- item 4: TLS resumption

/// rustls's ticket store, counting the tickets the server sends.
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    tickets: Mutex<usize>,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        *self.tickets.lock().unwrap() += 1;
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// A client certificate for `name` that expires `lifetime` from now, from
/// a second `Ca` over `pki`'s files with a short lifetime.
fn short_lived_client(pki: &TestPki, name: &str, lifetime: Duration) -> Enrolled {
    let policy = IssuancePolicy {
        lifetime,
        ..IssuancePolicy::default()
    };
    let short = Ca::open(&CaPaths::new(pki.dir()), policy).unwrap();
    let token = short
        .mint_token(
            &[name.to_string()],
            Profile::Client,
            Duration::from_secs(60),
        )
        .unwrap()
        .to_string();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let signed = short.sign(Some(&token), csr.as_bytes()).unwrap();
    Enrolled {
        key_pem: key.serialize_pem(),
        info: CertInfo::parse(&signed.der).unwrap(),
        intermediates: signed.chain,
        cert: signed.der,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_client_certificate_cannot_resume_a_tls_session() {
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki.start_server(|_| {}).await;
        let client = short_lived_client(&pki, "client1.pki.test", Duration::from_secs(2));
        let store = Arc::new(CountingStore {
            inner: ClientSessionMemoryCache::new(16),
            tickets: Mutex::new(0),
        });
        let mut tls = tls_config(&pki, Some(&client));
        tls.resumption = rustls::client::Resumption::store(store.clone());
        let tls = Arc::new(tls);

        // While the certificate is valid: a full handshake, authenticated.
        let mut raw = connect(server.addr, localhost(), tls.clone())
            .await
            .unwrap();
        let mut session = register(&mut raw, &registration_as("client1.pki.test"))
            .await
            .unwrap();
        let whoami = ask(&mut raw, &mut session, &named("whoami")).await.unwrap();
        let text = String::from_utf8(whoami.data).unwrap();
        assert!(text.contains("(authenticated by certificate)"), "{text}");
        // Reading the response read everything the server sent after the
        // handshake: it sent no ticket to resume with.
        assert_eq!(*store.tickets.lock().unwrap(), 0);
        drop(raw);

        // Past the certificate's expiry, the same client configuration
        // (resumption on) connects again: a full handshake, refused.
        let wait = client.info.not_after + 1 - pki_common::unix_now() as i64;
        tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;
        // The server refuses the certificate as soon as it has read it;
        // the client learns it at its next read (or already in connect).
        let err: std::io::Error = match connect(server.addr, localhost(), tls.clone()).await {
            Err(e) => e,
            Ok(mut raw) => {
                assert_eq!(
                    raw.stream.get_ref().1.handshake_kind(),
                    Some(rustls::HandshakeKind::Full)
                );
                match raw.recv().await {
                    Err(ProtoError::Io(e)) => e,
                    other => panic!("an expired certificate was accepted: {other:?}"),
                }
            }
        };
        let tls_err = pki_common::tls::tls_error_in(&err);
        assert!(
            matches!(
                tls_err,
                Some(rustls::Error::AlertReceived(
                    AlertDescription::CertificateExpired
                ))
            ),
            "{err:?}"
        );
        assert_eq!(*store.tickets.lock().unwrap(), 0);
    })
    .await
}

// ------------------------------------ item 6: anonymous session flooding

/// Step 3R on `raw` with `ticket`: the server's answer, or its refusal.
async fn resume(raw: &mut RawClient, ticket: &ClientTicket) -> Result<ClientSession, ProtoError> {
    let (resuming, frame) = ClientResuming::start(ticket, raw.exporter(), now_clock())?;
    raw.send(&frame).await;
    let answer = raw.recv().await?;
    resuming.on_resumed(&answer, now_clock())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_flood_leaves_the_server_nothing_to_fill() {
    bounded(async {
        // Registering without a certificate costs nothing. It used to fill
        // a session table (and was bounded there); now the server keeps no
        // session between connections, so a flood of registrations, all
        // from one address, takes nothing from anyone once its
        // connections close: the sessions live in the flooder's tickets.
        let pki = TestPki::start().await;
        let server = pki.start_server(|_| {}).await;
        let anonymous = Arc::new(tls_config(&pki, None));
        let mut tickets = Vec::new();
        for _ in 0..200 {
            let mut raw = connect(server.addr, localhost(), anonymous.clone())
                .await
                .unwrap();
            let session = register(&mut raw, &registration_as("flood")).await.unwrap();
            tickets.push(session.ticket().cloned().unwrap());
        }
        // An authenticated client is served as if nothing had happened.
        let client = pki.enroll_client("client1.pki.test").await;
        let config = client_with(&pki, server.addr, &client, "client1.pki.test");
        request_once(&config, "memo", b"").await.unwrap();
        // And each flooded session still resumes: it was never the
        // server's to drop.
        let mut raw = connect(server.addr, localhost(), anonymous).await.unwrap();
        let mut session = resume(&mut raw, &tickets[0]).await.unwrap();
        ask(&mut raw, &mut session, &memo()).await.unwrap();
    })
    .await
}

// ------------------------------ item 7: revocation ends open sessions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_client_certificate_ends_its_open_sessions() {
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki
            .start_server(|c| c.crl_refresh = Duration::from_millis(50))
            .await;
        let client = pki.enroll_client("client1.pki.test").await;
        let tls = Arc::new(tls_config(&pki, Some(&client)));
        let mut raw = connect(server.addr, localhost(), tls).await.unwrap();
        let mut session = register(&mut raw, &registration_as("client1.pki.test"))
            .await
            .unwrap();
        ask(&mut raw, &mut session, &memo()).await.unwrap();
        // An anonymous client's session stays.
        let other_tls = Arc::new(tls_config(&pki, None));
        let mut other = connect(server.addr, localhost(), other_tls.clone())
            .await
            .unwrap();
        let mut other_session = register(&mut other, &registration_as("client2"))
            .await
            .unwrap();
        let ticket = session.ticket().cloned().unwrap();

        let serial = client.info.serial_hex.clone();
        pki.ca.revoke(&serial, Reason::KeyCompromise).unwrap();
        pki.ca.publish_crl().unwrap();

        // The open connection is told at once, without waiting for a
        // request, and closed.
        let (code, message) = alert(
            raw.recv()
                .await
                .and_then(|f| f.require(Kind::Response).map(|_| ())),
        );
        assert_eq!(code, AlertCode::CertificateRevoked);
        assert!(message.contains(&serial), "{message}");

        // The session is dead on any other connection too: its ticket
        // names the revoked certificate.
        let mut elsewhere = connect(server.addr, localhost(), other_tls.clone())
            .await
            .unwrap();
        let (code, message) = alert(resume(&mut elsewhere, &ticket).await);
        assert_eq!(code, AlertCode::CertificateRevoked);
        assert!(message.contains(&serial), "{message}");
        let mut elsewhere = connect(server.addr, localhost(), other_tls).await.unwrap();
        let (code, _) = alert(ask(&mut elsewhere, &mut session, &memo()).await);
        assert_eq!(code, AlertCode::UnknownSession);
        ask(&mut other, &mut other_session, &memo()).await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_certificate_is_revoked_stops_presenting_it() {
    bounded(async {
        let pki = TestPki::start().await;
        // Its token was spent on enrolling: it cannot get a new certificate.
        let dir = pki.server_dir();
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let mut config = pki.server_config(dir.path(), Some(token));
        config.crl_refresh = Duration::from_millis(50);
        let server = AppServer::start(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let serial = server.shared().identity().info.serial_hex.clone();
        let (_stop, shutdown) = shutdown::channel();
        let running = tokio::spawn(server.run(shutdown));
        request_once(&pki.client_config(addr), "memo", b"").await.unwrap();

        pki.ca.revoke(&serial, Reason::KeyCompromise).unwrap();
        pki.ca.publish_crl().unwrap();
        let err = running.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, ServerError::OwnCertificateRevoked { serial: s, .. } if serial.starts_with(s.trim_end_matches('…'))),
            "{err}"
        );
        assert!(err.to_string().contains("pki-ca token --name app.pki.test"), "{err}");
        // Nothing answers on its address any more.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_token_re_enrolls_when_its_certificate_is_revoked() {
    bounded(async {
        let pki = TestPki::start().await;
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let server = server_using(&pki, pki.ca_url(), |c| c.enrollment.token = Some(token)).await;
        let old = server.shared.identity().info.serial_hex.clone();
        pki.ca.revoke(&old, Reason::KeyCompromise).unwrap();
        pki.ca.publish_crl().unwrap();
        while server.shared.identity().info.serial_hex == old {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // New connections get the new certificate; the client, which
        // checks the CRL, accepts it.
        let raw = RawClient::connect(&pki, server.addr).await;
        assert_ne!(CertInfo::parse(&raw.cert).unwrap().serial_hex, old);
        request_once(&pki.client_config(server.addr), "memo", b"")
            .await
            .unwrap();
    })
    .await
}

// ------------------------------------------------- item 8: log forging

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_that_is_not_an_address_is_refused() {
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki.start_server(|_| {}).await;
        let mut raw = RawClient::connect(&pki, server.addr).await;
        let forged = Registration {
            client_addr: "1.2.3.4:5\nFAKE LOG LINE".into(),
            ..registration_as("client1")
        };
        let (code, message) = alert(register(&mut raw, &forged).await);
        assert_eq!(code, AlertCode::Malformed);
        assert!(message.contains("invalid client address"), "{message}");
        assert!(
            message.contains(r#""1.2.3.4:5\nFAKE LOG LINE""#),
            "{message}"
        );
        let _ = &server;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_from_peers_are_escaped_in_the_logs() {
    let logs = Logs::capture();
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki.start_server(|_| {}).await;
        // A request name with a newline.
        let mut raw = RawClient::connect(&pki, server.addr).await;
        let mut session = register(&mut raw, &registration_as("client1"))
            .await
            .unwrap();
        let forged = named("memo\nFAKE LOG LINE request");
        ask(&mut raw, &mut session, &forged).await.unwrap();
        // A hello for a server name with a newline.
        let mut raw = RawClient::connect(&pki, server.addr).await;
        let (_, frame) =
            ClientHello::start("evil\nFAKE LOG LINE hello", raw.exporter(), now_clock()).unwrap();
        raw.send(&frame).await;
        assert_eq!(
            alert(
                raw.recv()
                    .await
                    .and_then(|f| f.require(Kind::ServerProof).map(|_| ()))
            )
            .0,
            AlertCode::WrongServer
        );
        // An alert from the client whose message has a newline: the server
        // logs the refusal it received.
        let mut raw = RawClient::connect(&pki, server.addr).await;
        let refusal = ProtoError::Signing("x\nFAKE LOG LINE alert".into());
        raw.send(&pki_common::proto::Frame::alert_for(&refusal).unwrap())
            .await;
        let _ = raw.recv().await;

        logs.wait_for("FAKE LOG LINE alert").await;
        let text = logs.text();
        assert!(text.contains(r#""memo\nFAKE LOG LINE request""#), "{text}");
        assert!(text.contains(r#"evil\nFAKE LOG LINE hello"#), "{text}");
        assert!(text.contains(r#"x\nFAKE LOG LINE alert"#), "{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("FAKE LOG LINE")),
            "a peer forged a log line:\n{text}"
        );
    })
    .await
}

// --------------------------------- item 14: start order, client certs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_client_certificates_may_start_before_the_ca() {
    bounded(async {
        let ca_dir = tempfile::tempdir().unwrap();
        let (paths, ca) = offline_ca(ca_dir.path());
        let ca = Arc::new(ca);
        let token = ca
            .mint_token(
                &["app.pki.test".into()],
                Profile::Server,
                Duration::from_secs(600),
            )
            .unwrap()
            .to_string();
        let port = free_port();
        let server_dir = tempfile::tempdir().unwrap();
        std::fs::copy(paths.root_cert(), server_dir.path().join("ca.pem")).unwrap();
        let config = ServerConfig {
            listener: pki_server::ListenOptions::on("127.0.0.1:0".parse().unwrap()),
            certs_dir: server_dir.path().to_path_buf(),
            client_auth: ClientAuth::Required,
            enrollment: Enrollment {
                ca_url: format!("https://127.0.0.1:{port}"),
                ca_name: None,
                token: Some(token),
                retry: Retry {
                    deadline: Duration::from_secs(20),
                    initial_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(200),
                },
            },
            ..ServerConfig::default()
        };
        // The server first, the CA a moment later.
        let server = tokio::spawn(AppServer::start(config));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ca_server = bind_ca(ca.clone(), format!("127.0.0.1:{port}").parse().unwrap())
            .await
            .unwrap();
        let (_stop, shutdown) = shutdown::channel();
        tokio::spawn(ca_server.run(shutdown));
        let server = server.await.unwrap().unwrap();
        let server = RunningServer::spawn(server, None);

        // It serves a client with a certificate.
        let pki_like = pki_common::ca::client::CaClient::new(
            &format!("https://127.0.0.1:{port}"),
            None,
            &ca.root().cert,
        )
        .unwrap();
        let client_token = ca
            .mint_token(
                &["client1.pki.test".into()],
                Profile::Client,
                Duration::from_secs(600),
            )
            .unwrap()
            .to_string();
        let client = pki_common::ca::enroll::enroll(
            &pki_like,
            &ca.root().cert,
            &["client1.pki.test".to_string()],
            &client_token,
            Profile::Client,
            Retry::default(),
        )
        .await
        .unwrap();
        let config = ClientConfig {
            server: server.addr.to_string(),
            ca: paths.root_cert(),
            crl: pki_client::CrlSource::Fetch {
                ca_url: format!("https://127.0.0.1:{port}"),
                ca_name: None,
            },
            identity: Some(client),
            client_id: "client1.pki.test".into(),
            ..ClientConfig::default()
        };
        let whoami = request_once(&config, "whoami", b"").await.unwrap();
        let text = String::from_utf8(whoami.data).unwrap();
        assert!(text.contains("(authenticated by certificate)"), "{text}");
    })
    .await
}

// ------------------------------------------- item 16b: client id case

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_are_normalised_to_lower_case() {
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki.start_server(|_| {}).await;
        let client = pki.enroll_client("client1.pki.test").await;
        let config = client_with(&pki, server.addr, &client, "Client1.PKI.Test");
        let whoami = request_once(&config, "whoami", b"").await.unwrap();
        let text = String::from_utf8(whoami.data).unwrap();
        assert!(
            text.contains("client id: client1.pki.test (authenticated by certificate)"),
            "{text}"
        );
        // Without a certificate too: one client, whatever the case.
        let mut raw = RawClient::connect(&pki, server.addr).await;
        let mut session = register(&mut raw, &registration_as("MixedCase.Example"))
            .await
            .unwrap();
        let whoami = ask(&mut raw, &mut session, &named("whoami")).await.unwrap();
        let text = String::from_utf8(whoami.data).unwrap();
        assert!(
            text.contains("client id: mixedcase.example (unauthenticated"),
            "{text}"
        );
    })
    .await
}

/// The CRL among those the server uses that covers `holder`'s
/// certificate: its issuing intermediate's (the CA's `publish_crl` and
/// `ca.crl.pem`), not the root's, which lists intermediates.
fn crl_covering(
    live: &pki_server::live::Live,
    holder: &Enrolled,
) -> pki_common::revocation::VerifiedCrl {
    let crls = live.crls.as_ref().expect("the server has CRLs");
    crls.covering(&holder.cert)
        .expect("the CRL of the certificate's issuer")
        .clone()
}

/// What a server sharing the CA's directory finds there besides
/// `ca.crl.pem`: the intermediates (certificates only) and the root's CRL.
fn share_ca_directory(pki: &TestPki, dir: &std::path::Path) {
    let ours = dir.join("intermediates");
    std::fs::create_dir_all(&ours).unwrap();
    for issuer in pki.ca.intermediates() {
        files::write_public(&ours.join(format!("{}.pem", issuer.id)), &issuer.pem()).unwrap();
    }
    std::fs::copy(pki.paths.root_crl(), dir.join("root.crl.pem")).unwrap();
}

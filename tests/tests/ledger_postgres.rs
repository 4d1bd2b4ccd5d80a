//! CA replicas on one PostgreSQL database (a real server, started by the
//! fixture in `tests/src/postgres.rs`): what two replicas may race on is
//! decided once, a revocation on one is on the other's next CRL, ACME
//! works whichever replica a request reaches, an outage is a 503 and
//! recovers without a restart, a replica killed with SIGKILL loses
//! nothing it answered, and `pki-ca ledger migrate` moves an SQLite
//! ledger over whole.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pki_ca::authority::init_root;
use pki_ca::ledger::{LedgerError, PgLedger, SqliteLedger};
use pki_ca::policy::IssuancePolicy;
use pki_ca::publish::PublicSource;
use pki_ca::serve::{CaServer, ServeOptions};
use pki_ca::{Ca, CaPaths};
use pki_common::ca::api;
use pki_common::ca::client::CaClient;
use pki_common::cert::Profile;
use pki_common::shutdown::{self, ShutdownTrigger};
use pki_tests::postgres::{self, PgServer};
use pki_tests::{binary, bounded, csr_for};

/// One CA replica: a `Ca` on the shared directory and database, serving.
struct Replica {
    ca: Arc<Ca>,
    addr: SocketAddr,
    _stop: ShutdownTrigger,
}

impl Replica {
    async fn start(paths: &CaPaths, url: &str, tweak: impl FnOnce(&mut ServeOptions)) -> Replica {
        let ca =
            Arc::new(Ca::open_with_url(paths, IssuancePolicy::default(), Some(url), None).unwrap());
        let mut opts = ServeOptions::on("127.0.0.1:0".parse().unwrap());
        tweak(&mut opts);
        let server = CaServer::bind(ca.clone(), opts).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, shutdown) = shutdown::channel();
        tokio::spawn(server.run(shutdown));
        Replica {
            ca,
            addr,
            _stop: stop,
        }
    }

    fn client(&self) -> CaClient {
        CaClient::new(
            &format!("https://{}", self.addr),
            None,
            &self.ca.root().cert,
        )
        .unwrap()
    }
}

/// A CA directory (root and intermediate) the replicas share.
fn ca_dir() -> (tempfile::TempDir, CaPaths) {
    let dir = tempfile::tempdir().unwrap();
    let paths = CaPaths::new(dir.path());
    init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
    (dir, paths)
}

fn token(ca: &Ca, name: &str) -> String {
    ca.mint_token(
        &[name.to_string()],
        Profile::Server,
        Duration::from_secs(900),
    )
    .unwrap()
    .to_string()
}

#[test]
fn a_schema_newer_than_this_ca_knows_is_refused_by_both_backends() {
    let pg = postgres::shared();
    let url = pg.database();
    let ledger = PgLedger::connect(&url, None).unwrap();
    drop(ledger);
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(db, "SELECT version FROM schema_version").unwrap(),
        "4"
    );
    pg.psql(db, "UPDATE schema_version SET version = 99")
        .unwrap();
    let refused = PgLedger::connect(&url, None).err().expect("refused");
    assert!(
        matches!(
            refused,
            LedgerError::SchemaTooNew {
                found: 99,
                known: 4
            }
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("newer than this pki-ca knows"),
        "{refused}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite");
    drop(SqliteLedger::open(&file).unwrap());
    rusqlite::Connection::open(&file)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let refused = SqliteLedger::open(&file).err().expect("refused");
    assert!(
        matches!(
            refused,
            LedgerError::SchemaTooNew {
                found: 99,
                known: 4
            }
        ),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_raced_across_two_replicas_issues_once_and_serials_stay_unique() {
    bounded(async {
        let url = postgres::shared().database();
        let (_dir, paths) = ca_dir();
        let a = Replica::start(&paths, &url, |_| {}).await;
        let b = Replica::start(&paths, &url, |_| {}).await;
        let shared = token(&a.ca, "app.pki.test");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let client = if i % 2 == 0 { a.client() } else { b.client() };
            let (t, csr) = (shared.clone(), csr_for("app.pki.test"));
            tasks.push(tokio::spawn(async move {
                client
                    .post(api::SIGN, Some(&t), "application/pkcs10", csr)
                    .await
                    .unwrap()
            }));
        }
        let mut issued = 0;
        for t in tasks {
            let r = t.await.unwrap();
            if r.status.is_success() {
                issued += 1;
            } else {
                assert_eq!(r.error_body().unwrap().error, "token_used");
            }
        }
        assert_eq!(issued, 1, "one token, one certificate, whichever replica");

        // Many tokens on both replicas at once: every serial recorded once.
        let mut tasks = Vec::new();
        for i in 0..30 {
            let replica = if i % 2 == 0 { &a } else { &b };
            let (client, t) = (replica.client(), token(&replica.ca, "app.pki.test"));
            tasks.push(tokio::spawn(async move {
                client
                    .post(
                        api::SIGN,
                        Some(&t),
                        "application/pkcs10",
                        csr_for("app.pki.test"),
                    )
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().status.is_success());
        }
        let records = b.ca.ledger().certificates().unwrap();
        let leaves = records.iter().filter(|r| r.token_id.is_some()).count();
        assert_eq!(leaves, 31);
        let mut serials: Vec<_> = records.iter().map(|r| r.serial_hex.clone()).collect();
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), records.len());
    })
    .await;
}

#[test]
fn crl_numbers_strictly_increase_across_replicas() {
    let url = postgres::shared().database();
    let ledgers: Vec<Arc<PgLedger>> = (0..2)
        .map(|_| Arc::new(PgLedger::connect(&url, None).unwrap()))
        .collect();
    let threads: Vec<_> = ledgers
        .iter()
        .map(|l| {
            let l = l.clone();
            std::thread::spawn(move || {
                (0..40)
                    .map(|_| pki_ca::ledger::Ledger::next_crl_number_of(&*l, "abc").unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let mine = t.join().unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "each replica's numbers increase: {mine:?}"
        );
        all.extend(mine);
    }
    all.sort();
    assert_eq!(
        all,
        (1..=80).collect::<Vec<u64>>(),
        "no number twice, none skipped"
    );
}

/// Whether the CRL `der` lists `serial` (hex), as openssl reads it.
fn crl_lists(der: &[u8], serial: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = pki_tests::csr::write_file(dir.path(), "c.crl", der);
    let out = pki_tests::openssl(&["crl", "-inform", "DER", "-in", &file, "-noout", "-text"]);
    String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .contains(serial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_is_on_the_other_replicas_next_crl() {
    bounded(async {
        let url = postgres::shared().database();
        let (_dir, paths) = ca_dir();
        let a = Replica::start(&paths, &url, |_| {}).await;
        let b = Replica::start(&paths, &url, |_| {}).await;
        let t = token(&a.ca, "app.pki.test");
        let cert = a.ca.sign(Some(&t), &csr_for("app.pki.test")).unwrap();
        let serial = cert.info.serial_hex.clone();
        b.ca.revoke(&serial, pki_common::revocation::Reason::KeyCompromise)
            .unwrap();
        // A's refresh loop polls the shared revision (1 s by default).
        for _ in 0..100 {
            if a.ca
                .crl_der(&cert.issuer_id)
                .is_some_and(|der| crl_lists(&der, &serial))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("replica A never listed {serial}, revoked on replica B");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_account_and_order_work_whichever_replica_a_request_reaches() {
    use pki_tests::acme::{csr_for as acme_csr, AcmeClient, Http01};
    use serde_json::json;
    bounded(async {
        let url = postgres::shared().database();
        let (_dir, paths) = ca_dir();
        let http = Http01::start().await;
        let acme = |o: &mut ServeOptions| {
            let mut config = pki_ca::acme::AcmeConfig {
                allow: vec!["pki.test".into()],
                http_port: http.port,
                ..Default::default()
            };
            config
                .resolve
                .insert("app.pki.test".into(), "127.0.0.1".parse().unwrap());
            o.acme = Some(config);
        };
        let a = Replica::start(&paths, &url, acme).await;
        let b = Replica::start(&paths, &url, acme).await;
        // The client knows the CA by replica A's URL; a load balancer
        // sends each request to either replica.
        let mut client = AcmeClient::for_ca(a.ca.root().cert.clone(), a.addr);
        assert_eq!(client.register().await.status, 201);
        client.via(b.addr);
        let order = client.new_order(&["app.pki.test"]).await;
        assert_eq!(
            order.status,
            201,
            "{}",
            String::from_utf8_lossy(&order.body)
        );
        let order_url = order.header("location").unwrap();
        let (authz_url, authz) = client.authorizations(&order.json()).await.remove(0);
        let ch = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "http-01")
            .unwrap()
            .clone();
        let token = ch["token"].as_str().unwrap();
        http.answer(token, &client.key_authorization(token));
        client.via(a.addr);
        client
            .post(ch["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        client.via(b.addr);
        assert_eq!(client.poll(&authz_url).await["status"], "valid");
        let order = client.post(&order_url, None).await.json();
        client.via(a.addr);
        let url_f = order["finalize"].as_str().unwrap().to_string();
        let r = client
            .post(&url_f, Some(&json!({"csr": acme_csr(&["app.pki.test"])})))
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        client.via(b.addr);
        let order = client.post(&order_url, None).await.json();
        assert_eq!(order["status"], "valid");
        let serial = order["certificate"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        assert!(b
            .ca
            .ledger()
            .certificate(&serial)
            .unwrap()
            .unwrap()
            .acme_order
            .is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_requests_get_503_and_the_ca_recovers_without_a_restart() {
    bounded(async {
        let pg = PgServer::start();
        let url = pg.database();
        let (_dir, paths) = ca_dir();
        let replica = Replica::start(&paths, &url, |_| {}).await;
        let t = token(&replica.ca, "app.pki.test");
        let t2 = token(&replica.ca, "app.pki.test");
        let before = replica.ca.ledger().certificates().unwrap().len();

        pg.stop();
        // A party enrolling now waits the outage out: a 503 is retried.
        let (client, root) = (replica.client(), replica.ca.root().cert.clone());
        let enrolling = tokio::spawn(async move {
            let retry = pki_common::ca::enroll::Retry {
                deadline: Duration::from_secs(40),
                ..Default::default()
            };
            let names = ["app.pki.test".to_string()];
            pki_common::ca::enroll::enroll(&client, &root, &names, &t2, Profile::Server, retry)
                .await
        });
        let r = replica
            .client()
            .post(
                api::SIGN,
                Some(&t),
                "application/pkcs10",
                csr_for("app.pki.test"),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 503);
        let body = r.error_body().unwrap();
        assert_eq!(body.error, "ledger_unavailable", "{}", body.detail);

        pg.run();
        // The same token still works: nothing was spent or recorded.
        let mut answer = None;
        for _ in 0..50 {
            let r = replica
                .client()
                .post(
                    api::SIGN,
                    Some(&t),
                    "application/pkcs10",
                    csr_for("app.pki.test"),
                )
                .await
                .unwrap();
            if r.status.as_u16() != 503 {
                answer = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let answer = answer.expect("the CA recovered without a restart");
        assert!(answer.status.is_success(), "{:?}", answer.error_body());
        let enrolled = enrolling
            .await
            .unwrap()
            .expect("enrolled once the ledger was back");
        assert_eq!(enrolled.info.names(), vec!["app.pki.test".to_string()]);
        assert_eq!(
            replica.ca.ledger().certificates().unwrap().len(),
            before + 2
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_503_with_retry_after_on_the_api_and_on_acme() {
    bounded(async {
        let pg = PgServer::start();
        let url = pg.database();
        let (_dir, paths) = ca_dir();
        let replica = Replica::start(&paths, &url, |_| {}).await;
        let t = token(&replica.ca, "app.pki.test");
        pg.stop();
        let client =
            pki_tests::acme::AcmeClient::for_ca(replica.ca.root().cert.clone(), replica.addr);
        let bearer = format!("Bearer {t}");
        let r = client
            .request_with(
                "POST",
                &client.url("/v1/sign"),
                Some(csr_for("app.pki.test")),
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        assert_eq!(r.json()["error"], "ledger_unavailable");
        // ACME cannot hand out a nonce it cannot store.
        let r = client
            .request("HEAD", &client.url("/acme/new-nonce"), None, "text/plain")
            .await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        assert!(r.header("replay-nonce").is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_sigkill_loses_nothing_it_answered() {
    bounded(async {
        let url = postgres::shared().database();
        let (dir, paths) = ca_dir();
        let port = pki_tests::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut ca = pki_tests::Reaped(
            Command::new(binary("pki-ca"))
                .args([
                    "--dir",
                    dir.path().to_str().unwrap(),
                    "--ledger",
                    &url,
                    "serve",
                    "--listen",
                    &listen,
                ])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        pki_tests::wait_for_port(listen.parse().unwrap(), Duration::from_secs(20)).await;
        let minting =
            Ca::open_with_url(&paths, IssuancePolicy::default(), Some(&url), None).unwrap();
        let client =
            CaClient::new(&format!("https://{listen}"), None, &minting.root().cert).unwrap();
        // Many issuances in flight; the replica is killed as soon as ten
        // have been answered, so others are cut off mid-way.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..120 {
            let (client, t, tx) = (client.clone(), token(&minting, "app.pki.test"), tx.clone());
            tokio::spawn(async move {
                let r = client
                    .post(
                        api::SIGN,
                        Some(&t),
                        "application/pkcs10",
                        csr_for("app.pki.test"),
                    )
                    .await;
                let _ = tx.send(r);
            });
        }
        drop(tx);
        let mut answered = Vec::new();
        let mut killed = false;
        while let Some(r) = rx.recv().await {
            if let Some(r) = r.ok().filter(|r| r.status.is_success()) {
                let der =
                    pki_common::files::pem_or_der::<rustls::pki_types::CertificateDer>(&r.body)
                        .unwrap();
                answered.push(pki_common::cert::CertInfo::parse(&der).unwrap().serial_hex);
            }
            if answered.len() >= 10 && !killed {
                ca.0.kill().unwrap(); // SIGKILL
                ca.0.wait().unwrap();
                killed = true;
            }
        }
        assert!(killed, "ten issuances were answered before the kill");
        let ledger = PgLedger::connect(&url, None).unwrap();
        for serial in &answered {
            assert!(
                pki_ca::ledger::Ledger::certificate(&ledger, serial)
                    .unwrap()
                    .is_some(),
                "certificate {serial} was answered but is not in the ledger"
            );
        }
        let recorded = pki_ca::ledger::Ledger::certificates(&ledger)
            .unwrap()
            .iter()
            .filter(|r| r.token_id.is_some())
            .count();
        eprintln!(
            "{} answered, {recorded} recorded, of 120 requests",
            answered.len()
        );
        assert!(recorded >= answered.len());
    })
    .await;
}

#[test]
fn ledger_migrate_moves_an_sqlite_ledger_whole_and_list_and_revoke_work_on_either_backend() {
    let (dir, paths) = ca_dir();
    let d = dir.path().to_str().unwrap();
    {
        let ca = Ca::open(&paths, IssuancePolicy::default()).unwrap();
        for _ in 0..3 {
            let t = token(&ca, "app.pki.test");
            ca.sign(Some(&t), &csr_for("app.pki.test")).unwrap();
        }
        let first = ca.ledger().certificates().unwrap()[0].serial_hex.clone();
        ca.revoke(&first, pki_common::revocation::Reason::Superseded)
            .unwrap();
        token(&ca, "unused.pki.test");
        pki_ca::acme::eab::mint(&ca, Duration::from_secs(600)).unwrap();
    }
    let pki_ca = |args: &[&str]| {
        Command::new(binary("pki-ca"))
            .arg("--dir")
            .arg(d)
            .args(args)
            .output()
            .unwrap()
    };
    let sqlite_list = pki_ca(&["list", "--json"]);
    assert!(sqlite_list.status.success());

    let url = postgres::shared().database();
    let out = pki_ca(&["ledger", "migrate", "--to", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tokens: 4 rows"), "{stdout}");
    assert!(stdout.contains("certificates: 3 rows"), "{stdout}");
    assert!(stdout.contains("acme_eab: 1 rows"), "{stdout}");
    assert!(stdout.contains("every table's count verified"), "{stdout}");

    let pg_list = pki_ca(&["--ledger", &url, "list", "--json"]);
    assert!(
        pg_list.status.success(),
        "{}",
        String::from_utf8_lossy(&pg_list.stderr)
    );
    assert_eq!(
        pg_list.stdout, sqlite_list.stdout,
        "the same certificates, statuses and all"
    );

    // Migrating again into a filled database is refused.
    let again = pki_ca(&["ledger", "migrate", "--to", &url]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("migrate into an empty database"));

    // revoke works against PostgreSQL, and leaves the SQLite file alone.
    let records: serde_json::Value = serde_json::from_slice(&pg_list.stdout).unwrap();
    let serial = records[1]["serial"].as_str().unwrap().to_string();
    let revoked = pki_ca(&[
        "--ledger",
        &url,
        "revoke",
        "--serial",
        &serial,
        "--reason",
        "keyCompromise",
    ]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let pg_after: serde_json::Value =
        serde_json::from_slice(&pki_ca(&["--ledger", &url, "list", "--json"]).stdout).unwrap();
    assert!(
        pg_after[1]["status"].as_str().unwrap().contains("revoked"),
        "{pg_after}"
    );
    let sqlite_after: serde_json::Value =
        serde_json::from_slice(&pki_ca(&["list", "--json"]).stdout).unwrap();
    assert_eq!(sqlite_after[1]["status"], "valid");
}

#[test]
fn tls_to_the_database_is_verified_against_ledger_ca() {
    // The database's certificate, from a CA of its own.
    let db_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "database CA");
    let db_ca = ca_params.self_signed(&db_ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &db_ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let pg = PgServer::start_tls(&leaf.pem(), &key.serialize_pem());
    let url = format!("{}?sslmode=require", pg.database());

    let (dir, _paths) = ca_dir();
    let d = dir.path().to_str().unwrap();
    let ca_file = pki_tests::csr::write_file(dir.path(), "db-ca.pem", db_ca.pem().as_bytes());
    let pki_ca = |args: &[&str]| {
        Command::new(binary("pki-ca"))
            .arg("--dir")
            .arg(d)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = pki_ca(&[
        "--ledger",
        &url,
        "--ledger-ca",
        &ca_file,
        "token",
        "--name",
        "app.pki.test",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Another CA's certificate is refused, and so is a plain connection.
    let other = pki_tests::csr::write_file(
        dir.path(),
        "other.pem",
        pki_ca(&["inspect"]).stdout.as_slice(),
    );
    let root = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    std::fs::write(&other, root).unwrap();
    let refused = pki_ca(&["--ledger", &url, "--ledger-ca", &other, "list"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    let plain = url.replace("?sslmode=require", "?sslmode=disable");
    let refused = pki_ca(&["--ledger", &plain, "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pg_hba.conf"));
}

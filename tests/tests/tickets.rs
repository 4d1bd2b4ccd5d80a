//! Session tickets (issue 16): a session granted by one application
//! server replica serves requests on another, and on the first after it
//! restarts, because the client carries it, sealed under the ticket key
//! the replicas share. Every refusal has its own alert, and a key
//! rotation keeps old tickets working only during the overlap.

use std::path::Path;
use std::time::Duration;

use pki_client::{ClientError, Connection};
use pki_common::cert::Profile;
use pki_common::proto::handshake::ClientTicket;
use pki_common::proto::message::ServiceRequest;
use pki_common::proto::{AlertCode, Kind, ProtoError};
use pki_common::revocation::Reason;
use pki_tests::{binary, bounded, RunningServer, TestPki};

fn peer_alert(err: &ClientError) -> Option<AlertCode> {
    match err {
        ClientError::Proto(ProtoError::PeerAlert { code, .. }) => Some(*code),
        _ => None,
    }
}

/// A replica of `app.pki.test` sharing the ticket key at `key`.
async fn replica(
    pki: &TestPki,
    key: &Path,
    tweak: impl FnOnce(&mut pki_server::ServerConfig),
) -> RunningServer {
    let key = key.to_path_buf();
    pki.start_server(move |c| {
        c.ticket_key_file = Some(key);
        tweak(c);
    })
    .await
}

/// Registers with the server at `addr` and makes one request; answers
/// the session's ticket.
async fn ticket_from(pki: &TestPki, addr: std::net::SocketAddr) -> ClientTicket {
    let (mut conn, mut session) = pki.session(addr).await;
    conn.request(&mut session, "memo", b"").await.unwrap();
    session.ticket().cloned().expect("step 6 carries a ticket")
}

/// Resumes `ticket` at `addr` and asks for a memo.
async fn resume_and_ask(
    pki: &TestPki,
    addr: std::net::SocketAddr,
    ticket: &ClientTicket,
) -> Result<Vec<u8>, ClientError> {
    let mut conn = Connection::connect(&pki.client_config(addr)).await?;
    let mut session = conn.resume(ticket).await?;
    Ok(conn.request(&mut session, "whoami", b"").await?.data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_granted_by_one_replica_serves_on_another_and_after_a_restart() {
    bounded(async {
        let pki = TestPki::start().await;
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("ticket.key");
        let a = replica(&pki, &key, |_| {}).await;
        let b = replica(&pki, &key, |_| {}).await;
        let ticket = ticket_from(&pki, a.addr).await;

        let whoami = resume_and_ask(&pki, b.addr, &ticket).await.unwrap();
        assert!(
            String::from_utf8_lossy(&whoami).contains("client1"),
            "{}",
            String::from_utf8_lossy(&whoami)
        );

        // A restarts (a new process over the same files): it remembers
        // nothing, and serves the session anyway.
        let addr = a.addr;
        let mut a = a;
        let dir = a.dir.take().unwrap();
        drop(a);
        let mut config = pki.server_config(dir.path(), None);
        config.listener.listen = addr;
        config.ticket_key_file = Some(key.clone());
        let mut restarted = None;
        for _ in 0..100 {
            match pki_server::AppServer::start(config.clone()).await {
                Ok(s) => {
                    restarted = Some(RunningServer::spawn(s, Some(dir)));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let _a = restarted.expect("A restarted on its address");
        resume_and_ask(&pki, addr, &ticket).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_7_frame_recorded_on_one_connection_is_refused_on_another_replica() {
    bounded(async {
        let pki = TestPki::start().await;
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("ticket.key");
        let a = replica(&pki, &key, |_| {}).await;
        let b = replica(&pki, &key, |_| {}).await;
        let ticket = ticket_from(&pki, a.addr).await;

        // Recorded: the step-7 frame of a resumed connection to A.
        let mut first = Connection::connect(&pki.client_config(a.addr))
            .await
            .unwrap();
        let mut session = first.resume(&ticket).await.unwrap();
        let recorded = session
            .request(&ServiceRequest {
                name: "memo".into(),
                body: vec![],
                timestamp: pki_common::unix_now(),
            })
            .unwrap();
        let answer = first.send_recorded(&recorded).await.unwrap();
        assert_eq!(answer.kind, Kind::Response);

        // Replayed on B after resuming the same ticket (with a fresh nonce
        // and a new TLS exporter): the keys differ.
        let mut second = Connection::connect(&pki.client_config(b.addr))
            .await
            .unwrap();
        second.resume(&ticket).await.unwrap();
        let refused = second.send_recorded(&recorded).await.unwrap();
        match refused.require(Kind::Response) {
            Err(ProtoError::PeerAlert { code, message }) => {
                assert_eq!(code, AlertCode::NotThisConnection, "{message}");
                assert!(
                    message.contains("sealed for another connection"),
                    "{message}"
                );
            }
            other => panic!("expected NotThisConnection, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tampered_and_foreign_tickets_each_get_their_own_alert() {
    bounded(async {
        let pki = TestPki::start().await;
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("ticket.key");
        let a = replica(&pki, &key, |_| {}).await;
        let ticket = ticket_from(&pki, a.addr).await;

        // Tampered: one bit of the sealed ticket.
        let mut tampered = ticket.clone();
        let last = tampered.ticket.len() - 1;
        tampered.ticket[last] ^= 1;
        let err = resume_and_ask(&pki, a.addr, &tampered).await.unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::BadTicket), "{err}");

        // Under a key this server does not hold.
        let stranger = pki.start_server(|_| {}).await;
        let err = resume_and_ask(&pki, stranger.addr, &ticket)
            .await
            .unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::UnknownTicketKey), "{err}");
        assert!(err.to_string().contains("does not hold"), "{err}");

        // Expired: a lifetime of zero ends the session at once.
        let short = replica(&pki, &key, |c| c.session_lifetime = Duration::ZERO).await;
        let (_conn, session) = pki.session(short.addr).await;
        let expired = session.ticket().cloned().unwrap();
        let err = resume_and_ask(&pki, a.addr, &expired).await.unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::TicketExpired), "{err}");

        // Presented for another server name: a replica of another service
        // with the same ticket key (a misconfiguration) refuses it.
        let dir = pki.server_dir();
        let token = pki.token(&["other.pki.test"], Profile::Server);
        let mut config = pki.server_config(dir.path(), Some(token));
        config.names = vec!["other.pki.test".into()];
        config.ticket_key_file = Some(key.clone());
        let other = RunningServer::spawn(
            pki_server::AppServer::start(config).await.unwrap(),
            Some(dir),
        );
        let mut aimed = ticket.clone();
        aimed.server_name = "other.pki.test".into();
        let mut client = pki.client_config(other.addr);
        client.name = "other.pki.test".into();
        let mut conn = Connection::connect(&client).await.unwrap();
        let err = conn.resume(&aimed).await.err().expect("refused");
        assert_eq!(
            peer_alert(&err),
            Some(AlertCode::TicketWrongServer),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("granted by server \"app.pki.test\""),
            "{err}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_whose_certificate_is_revoked_is_refused() {
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki
            .start_server(|c| c.crl_refresh = Duration::from_millis(50))
            .await;
        let client = pki.enroll_client("client1.pki.test").await;
        let mut config = pki.client_config(server.addr);
        config.client_id = "client1.pki.test".into();
        config.identity = Some(client.clone());
        let mut conn = Connection::connect(&config).await.unwrap();
        let session = conn.register().await.unwrap();
        let ticket = session.ticket().cloned().unwrap();
        conn.close().await;

        pki.ca
            .revoke(&client.info.serial_hex, Reason::KeyCompromise)
            .unwrap();
        pki.ca.publish_crl().unwrap();
        // The server's CRL refresh installs it within a few polls. The
        // ticket is presented on a connection without a certificate (the
        // revoked one would fail the TLS handshake first): the ticket's own
        // record of its certificate is what is refused.
        let anonymous = pki_client::ClientConfig {
            identity: None,
            ..config.clone()
        };
        let mut refused = None;
        for _ in 0..100 {
            let mut conn = Connection::connect(&anonymous).await.unwrap();
            match conn.resume(&ticket).await {
                Err(e) if peer_alert(&e) == Some(AlertCode::CertificateRevoked) => {
                    refused = Some(e);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let err = refused.expect("the revoked certificate's ticket is refused");
        assert!(err.to_string().contains(&client.info.serial_hex), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_old_tickets_during_the_overlap_and_refuses_them_after() {
    bounded(async {
        let pki = TestPki::start().await;
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("ticket.key");
        let a = replica(&pki, &key, |_| {}).await;
        let b = replica(&pki, &key, |_| {}).await;
        let old = ticket_from(&pki, a.addr).await;

        // Rotate with the command an operator runs, then tell both
        // replicas (SIGHUP does the same in a real process).
        let out = std::process::Command::new(binary("pki-server"))
            .args([
                "--ticket-key",
                key.to_str().unwrap(),
                "ticket-key",
                "rotate",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("still opens tickets"));
        for server in [&a, &b] {
            assert!(server.shared.tickets.reload().unwrap());
        }
        // The overlap: the old ticket resumes on both; a new one is sealed
        // under the new key.
        resume_and_ask(&pki, a.addr, &old).await.unwrap();
        resume_and_ask(&pki, b.addr, &old).await.unwrap();
        let new = ticket_from(&pki, b.addr).await;
        assert_ne!(
            new.ticket[..8],
            old.ticket[..8],
            "sealed under another key id"
        );

        // The previous key is dropped: the old ticket stops working, the
        // new one does not.
        let out = std::process::Command::new(binary("pki-server"))
            .args([
                "--ticket-key",
                key.to_str().unwrap(),
                "ticket-key",
                "retire",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        for server in [&a, &b] {
            assert!(server.shared.tickets.reload().unwrap());
        }
        let err = resume_and_ask(&pki, a.addr, &old).await.unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::UnknownTicketKey), "{err}");
        resume_and_ask(&pki, b.addr, &new).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_pki_client_requests_register_once() {
    bounded(async {
        let pki = TestPki::start().await;
        let server = pki.start_server(|_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let ticket = dir.path().join("client.ticket");
        let run = || {
            std::process::Command::new(binary("pki-client"))
                .args(["--server", &server.addr.to_string(), "--ca"])
                .arg(pki.root_path())
                .args([
                    "--ca-url",
                    &pki.ca_url(),
                    "--ticket",
                    ticket.to_str().unwrap(),
                    "--id",
                    "client1",
                    "--no-client-cert",
                ])
                .args(["request", "memo"])
                .output()
                .unwrap()
        };
        let first = run();
        let stderr = String::from_utf8_lossy(&first.stderr);
        assert!(first.status.success(), "{stderr}");
        assert!(stderr.contains("step 3: sent hello"), "{stderr}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&ticket).unwrap().permissions().mode() & 0o777,
            0o600
        );

        for _ in 0..2 {
            let again = run();
            let stderr = String::from_utf8_lossy(&again.stderr);
            assert!(again.status.success(), "{stderr}");
            assert_eq!(
                String::from_utf8_lossy(&again.stdout).trim(),
                "take cis3319 class this morning"
            );
            assert!(stderr.contains("step 3R: sent resume"), "{stderr}");
            assert!(
                !stderr.contains("step 3: sent hello"),
                "registered again: {stderr}"
            );
        }
    })
    .await;
}

//! Phases 2 and 3: the full flow in-process, and every refusal the issue
//! lists, each asserting its specific error on the side that detects it.
//!
//! Refusals detected by the server are provoked by a raw client that drives
//! the protocol's state machines by hand; those detected by the client by a
//! raw server that tampers with its own frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pki_ca::policy::{Decision, KeyKind};
use pki_client::{request_once, ClientError, Connection};
use pki_common::cert::Profile;
use pki_common::proto::handshake::{accept_hello, request_session_id, ClientHello, Clock};
use pki_common::proto::message::{Response, ServiceRequest, SessionGranted, Status};
use pki_common::proto::{
    read_frame, write_frame, AlertCode, Frame, Kind, ProtoError, EXPORTER_LABEL,
};
use pki_server::identity::Identity;
use pki_tests::raw::{memo, now_clock, registration, tamper, MAX};
use pki_tests::refusals::{invalid_certificate, peer_alert};
use pki_tests::{bounded, AppFixture, RawClient, RunningServer, TestPki};
use rcgen::PublicKeyData;
use rustls::CertificateError;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

// ------------------------------------------------------------ the flow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_in_process_memo_and_several_requests_on_one_connection() {
    bounded(async {
        let app = AppFixture::start().await;
        let config = app.client_config();

        let response = request_once(&config, "memo", b"").await.unwrap();
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.data, b"take cis3319 class this morning");

        let mut conn = Connection::connect(&config).await.unwrap();
        let mut session = conn.register().await.unwrap();
        let whoami = conn.request(&mut session, "whoami", b"").await.unwrap();
        let text = String::from_utf8(whoami.data).unwrap();
        assert!(
            text.contains("client id: client1 (unauthenticated"),
            "{text}"
        );
        let echo = conn.request(&mut session, "echo", b"hello").await.unwrap();
        assert_eq!((echo.status, echo.data), (Status::Ok, b"hello".to_vec()));
        let missing = conn.request(&mut session, "nothing", b"").await.unwrap();
        assert_eq!(missing.status, Status::NotFound);
        let whoami = conn.request(&mut session, "whoami", b"").await.unwrap();
        assert!(String::from_utf8(whoami.data)
            .unwrap()
            .contains("requests on this session: 4"));
        conn.close().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_its_connection() {
    bounded(async {
        let app = AppFixture::start().await;
        let (first, session) = app.raw_session().await;
        let ticket = session.ticket().cloned().expect("step 6 carries a ticket");
        drop(first);
        // On a new connection the client resumes with its ticket (steps 3R
        // and 4R); the server kept nothing.
        let mut second = app.raw_client().await;
        let (resuming, frame) = pki_common::proto::resume::ClientResuming::start(
            &ticket,
            second.exporter(),
            now_clock(),
        )
        .unwrap();
        second.send(&frame).await;
        let mut session = resuming
            .on_resumed(&second.recv().await.unwrap(), now_clock())
            .unwrap();
        let req = session.request(&memo()).unwrap();
        second.send(&req).await;
        let resp = session
            .on_response(&second.recv().await.unwrap(), now_clock())
            .unwrap();
        assert_eq!(resp.data, b"take cis3319 class this morning");
    })
    .await
}

// ------------------------------------------------ refusals by the client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused_as_unknown_issuer() {
    bounded(async {
        let pki = TestPki::start().await;
        let other = TestPki::start().await;
        let server = other.start_server(|_| {}).await;
        let err = pki.memo_refusal(server.addr).await;
        assert!(
            matches!(
                invalid_certificate(&err),
                Some(CertificateError::UnknownIssuer)
            ),
            "{err}"
        );
        assert!(err.to_string().contains("unknown issuer"), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_expected_name_is_refused_as_a_name_mismatch() {
    bounded(async {
        let app = AppFixture::start().await;
        let mut config = app.client_config();
        config.name = "other.pki.test".into();
        let err = request_once(&config, "memo", b"").await.unwrap_err();
        assert!(
            matches!(
                invalid_certificate(&err),
                Some(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err}"
        );
        assert!(err.to_string().contains("name mismatch"), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_is_refused() {
    bounded(async {
        let pki = TestPki::start().await;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let now = pki_common::unix_now() as i64;
        let decision = Decision {
            names: vec!["app.pki.test".into()],
            profile: Profile::Server,
            key: KeyKind::EcdsaP256,
            not_before: now - 7200,
            not_after: now - 3600,
        };
        let cert = pki_tests::hierarchy::root_signed(
            &pki.paths,
            &decision,
            &key.subject_public_key_info(),
        );
        let identity = Identity::from_parts(pki.root(), cert, &key.serialize_pem()).unwrap();
        let server = RunningServer::with_identity(identity, |_| {}).await;
        let err = pki.memo_refusal(server.addr).await;
        assert!(
            matches!(
                invalid_certificate(&err),
                Some(CertificateError::Expired | CertificateError::ExpiredContext { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("expired"), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step4_signature_by_a_key_other_than_the_certificates_is_refused() {
    bounded(async {
        let pki = TestPki::start().await;
        let mut identity = pki.enroll_identity(&["app.pki.test"]).await;
        let impostor = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(impostor.serialize_der().into());
        identity.signer = pki_common::tls::provider()
            .key_provider
            .load_private_key(der)
            .unwrap();
        let server = RunningServer::with_identity(identity, |_| {}).await;
        let err = pki.memo_refusal(server.addr).await;
        assert!(
            matches!(err, ClientError::Proto(ProtoError::BadSignature)),
            "{err}"
        );
    })
    .await
}

/// A server that runs the protocol honestly except for tampering with the
/// ciphertext of `step` (6 or 8). Serves one connection, presenting the
/// identity's chain (the leaf, then its intermediate) as the real server
/// does.
async fn tampering_server(identity: Identity, step: u8) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = pki_common::tls::server_config_with_client_auth(
        identity.chain(),
        identity.key.clone_key(),
        &identity.root,
        Vec::new(),
        pki_common::tls::ClientAuth::Optional,
    )
    .unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = TlsAcceptor::from(Arc::new(tls)).accept(tcp).await.unwrap();
        let mut exporter = [0u8; 32];
        s.get_ref()
            .1
            .export_keying_material(&mut exporter, EXPORTER_LABEL, None)
            .unwrap();
        let hello = read_frame(&mut s, MAX).await.unwrap();
        let names = vec!["app.pki.test".to_string()];
        let (mut reg, proof) = accept_hello(
            &hello,
            exporter,
            &names,
            identity.signer.as_ref(),
            now_clock(),
        )
        .unwrap();
        write_frame(&mut s, &proof).await.unwrap();
        let r = read_frame(&mut s, MAX).await.unwrap();
        let registration = reg.on_registration(&r, now_clock(), None).unwrap();
        let granted = SessionGranted {
            session_id: [7; 16],
            lifetime_secs: 60,
            client_id: registration.client_id,
            timestamp: pki_common::unix_now(),
            ticket: Vec::new(),
        };
        let (frame, mut keys) = reg.grant(&granted).unwrap();
        let frame = if step == 6 { tamper(&frame) } else { frame };
        write_frame(&mut s, &frame).await.unwrap();
        let Ok(req) = read_frame(&mut s, MAX).await else {
            return;
        };
        let (_, sealed) = request_session_id(&req).unwrap();
        keys.open_request(&sealed, now_clock()).unwrap();
        let resp = keys
            .seal_response(&Response {
                status: Status::Ok,
                data: b"x".to_vec(),
                timestamp: pki_common::unix_now(),
            })
            .unwrap();
        let resp = if step == 8 { tamper(&resp) } else { resp };
        write_frame(&mut s, &resp).await.unwrap();
        let _ = read_frame(&mut s, MAX).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_in_steps_6_and_8_is_refused_by_the_client() {
    bounded(async {
        let pki = TestPki::start().await;
        for (step, expected_step) in [(6, Kind::SessionGranted), (8, Kind::Response)] {
            let identity = pki.enroll_identity(&["app.pki.test"]).await;
            let addr = tampering_server(identity, step).await;
            let err = pki.memo_refusal(addr).await;
            assert!(
                matches!(&err, ClientError::Proto(ProtoError::DecryptFailed { step }) if *step == expected_step.step()),
                "step {step}: {err}"
            );
        }
    })
    .await
}

// ------------------------------------------------ refusals by the server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_in_step_5_is_refused_by_the_server() {
    bounded(async {
        let app = AppFixture::start().await;
        let mut c = app.raw_client().await;
        let (hello, _) = c.hello().await;
        let proof = c.recv().await.unwrap();
        let mut reg = hello.on_proof(&proof, &c.cert, now_clock()).unwrap();
        let f = reg.register(&registration()).unwrap();
        c.send(&tamper(&f)).await;
        c.expect_alert(AlertCode::DecryptFailed).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_in_step_7_is_refused_by_the_server() {
    bounded(async {
        let app = AppFixture::start().await;
        let (mut c, mut session) = app.raw_session().await;
        let req = session.request(&memo()).unwrap();
        c.send(&tamper(&req)).await;
        c.expect_alert(AlertCode::NotThisConnection).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_step7_frame_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let (mut c, mut session) = app.raw_session().await;
        let req = session.request(&memo()).unwrap();
        c.send(&req).await;
        session
            .on_response(&c.recv().await.unwrap(), now_clock())
            .unwrap();
        c.send(&req).await;
        c.expect_alert(AlertCode::Replayed).await;

        // On a fresh connection the session is unknown until resumed, and
        // after resuming the frame does not open (tickets.rs).
        let mut c2 = app.raw_client().await;
        c2.send(&req).await;
        c2.expect_alert(AlertCode::UnknownSession).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reordered_frame_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let (mut c, mut session) = app.raw_session().await;
        let _first = session.request(&memo()).unwrap();
        let second = session.request(&memo()).unwrap();
        c.send(&second).await;
        c.expect_alert(AlertCode::Reordered).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_timestamp_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let mut c = app.raw_client().await;
        let stale = Clock {
            now: pki_common::unix_now() - 3600,
            skew: 30,
        };
        let (_, frame) = ClientHello::start("app.pki.test", c.exporter(), stale).unwrap();
        c.send(&frame).await;
        c.expect_alert(AlertCode::StaleTimestamp).await;

        // A stale timestamp inside a sealed request as well.
        let (mut c, mut session) = app.raw_session().await;
        let old = ServiceRequest {
            timestamp: pki_common::unix_now() - 3600,
            ..memo()
        };
        c.send(&session.request(&old).unwrap()).await;
        c.expect_alert(AlertCode::StaleTimestamp).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_the_session_expired_is_refused() {
    bounded(async {
        // Lifetime zero: the session has expired by its first request.
        let AppFixture { pki, server } =
            AppFixture::start_with(|c| c.session_lifetime = Duration::ZERO).await;
        let (mut conn, mut session) = pki.session(server.addr).await;
        let err = conn.request(&mut session, "memo", b"").await.unwrap_err();
        assert_eq!(peer_alert(&err), Some(AlertCode::SessionExpired), "{err}");
        // Its ticket has expired too: it resumes nothing.
        let ticket = session.ticket().cloned().unwrap();
        let config = pki.client_config(server.addr);
        let mut again = pki_client::Connection::connect(&config).await.unwrap();
        let err = again.resume(&ticket).await.err().expect("refused");
        assert_eq!(peer_alert(&err), Some(AlertCode::TicketExpired), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let mut c = app.raw_client().await;
        // A header announcing 1 MiB; the server refuses before reading it.
        let mut header = Frame::new(Kind::Hello, vec![]).encode();
        header[4..8].copy_from_slice(&(1u32 << 20).to_be_bytes());
        c.send_bytes(&header).await;
        c.expect_alert(AlertCode::FrameTooLarge).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_instead_of_a_frame_are_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let mut c = app.raw_client().await;
        c.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        c.expect_alert(AlertCode::BadFrame).await;

        // A well-framed hello whose payload is garbage.
        let mut c = app.raw_client().await;
        c.send(&Frame::new(Kind::Hello, vec![0xff; 40])).await;
        c.expect_alert(AlertCode::Malformed).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_protocol_version_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let mut c = app.raw_client().await;
        let (_, frame) = ClientHello::start("app.pki.test", c.exporter(), now_clock()).unwrap();
        let mut bytes = frame.encode();
        bytes[2] = 2;
        c.send_bytes(&bytes).await;
        c.expect_alert(AlertCode::UnsupportedVersion).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_out_of_order_are_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        // A registration before any hello.
        let mut c = app.raw_client().await;
        c.send(&Frame::new(Kind::Registration, vec![0; 10])).await;
        c.expect_alert(AlertCode::UnexpectedMessage).await;

        // A second hello where the registration belongs.
        let mut c = app.raw_client().await;
        let (_, hello) = c.hello().await;
        c.recv().await.unwrap();
        c.send(&hello).await;
        c.expect_alert(AlertCode::UnexpectedMessage).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_and_a_wrong_server_identity_are_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        let other = app.pki.start_server(|_| {}).await;
        // A session registered with one server means nothing to another.
        let (_c, mut session) = app.raw_session().await;
        let mut c2 = RawClient::connect(&app.pki, other.addr).await;
        c2.send(&session.request(&memo()).unwrap()).await;
        c2.expect_alert(AlertCode::UnknownSession).await;

        // A hello for an identity this server does not have.
        let mut c3 = app.raw_client().await;
        let (_, frame) = ClientHello::start("db.pki.test", c3.exporter(), now_clock()).unwrap();
        c3.send(&frame).await;
        c3.expect_alert(AlertCode::WrongServer).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step4_proof_is_bound_to_its_tls_connection() {
    bounded(async {
        let app = AppFixture::start().await;
        // The proof from connection A does not verify for a hello whose
        // exporter value comes from connection B.
        let mut a = app.raw_client().await;
        let b = app.raw_client().await;
        let (hello_b, frame_b) =
            ClientHello::start("app.pki.test", b.exporter(), now_clock()).unwrap();
        a.send(&frame_b).await;
        let proof_a = a.recv().await.unwrap();
        let err = hello_b
            .on_proof(&proof_a, &a.cert, now_clock())
            .err()
            .unwrap();
        assert!(matches!(err, ProtoError::BadSignature), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_client_id_is_refused() {
    bounded(async {
        let app = AppFixture::start().await;
        for bad in ["", "client 1", "x\u{1b}[31m", &"a".repeat(65)] {
            let mut config = app.client_config();
            config.client_id = bad.to_string();
            let err = request_once(&config, "memo", b"").await.unwrap_err();
            assert!(
                matches!(&err, ClientError::Proto(ProtoError::PeerAlert { code: AlertCode::Malformed, message }) if message.contains("invalid client id")),
                "{bad:?}: {err}"
            );
        }
    })
    .await
}

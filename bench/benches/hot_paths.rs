//! Criterion micro-benchmarks of the hot paths: issuing a certificate,
//! a bare TLS 1.3 handshake in memory, the protocol's steps 3 to 6 without
//! TLS and, beside them, resuming with a ticket (steps 3R and 4R), sealing
//! and opening a request, and framing. `pki-bench` computes the session
//! ceiling from the TLS handshake and steps 3 to 6.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pki_ca::policy::{verify_csr, IssuancePolicy};
use pki_common::cert::Profile;
use pki_common::proto::handshake::{accept_hello, request_session_id, ClientHello, Clock};
use pki_common::proto::message::{Registration, ServiceRequest, SessionGranted};
use pki_common::proto::resume::{accept_resume, ClientResuming};
use pki_common::proto::ticket::{TicketContents, TicketKeys};
use pki_common::proto::{Frame, DEFAULT_MAX_FRAME};
use rustls::pki_types::PrivateKeyDer;

fn clock() -> Clock {
    Clock {
        now: pki_common::unix_now(),
        skew: 30,
    }
}

/// Issuance with and without the pre-issuance lint, in the same run: the
/// difference is what linting costs per certificate (a throwaway
/// signature, parsing it back, the lints, comparing the TBS, and
/// verifying the chain with webpki).
fn issuance(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let paths = pki_ca::CaPaths::new(dir.path());
    pki_ca::authority::init_root(&paths, std::time::Duration::from_secs(86400), false).unwrap();
    let ca = pki_ca::Ca::open(&paths, IssuancePolicy::default()).unwrap();
    let issuer = ca.current_issuer().unwrap();
    let csr = pki_tests::csr_for("app.pki.test");
    let names = vec!["app.pki.test".to_string()];
    let policy = IssuancePolicy::default();
    let mut group = c.benchmark_group("issuance");
    group.bench_function("verify CSR, decide, sign, encode (no lint)", |b| {
        b.iter(|| {
            let v = verify_csr(black_box(&csr)).unwrap();
            let d = policy
                .decide(
                    &v,
                    &names,
                    Profile::Server,
                    issuer.info.not_after,
                    pki_common::unix_now() as i64,
                )
                .unwrap();
            let cert = issuer.sign_unlinted(&d, &v.spki_der, None).unwrap();
            black_box(pki_common::files::cert_to_pem(&cert.der))
        })
    });
    group.bench_function("verify CSR, decide, lint, sign, check, encode", |b| {
        b.iter(|| {
            let v = verify_csr(black_box(&csr)).unwrap();
            let cert = ca.issue_unrecorded(&v, &names, Profile::Server).unwrap();
            black_box(pki_common::files::cert_to_pem(&cert.der))
        })
    });
    group.finish();
}

/// A bare TLS 1.3 handshake, both sides in memory (no sockets), with the
/// configurations the server and the baselines use: a P-256 certificate
/// from the CA's intermediate, presented with its chain, verified by the
/// client against the root. The server's session ticket is included.
fn tls_handshake(c: &mut Criterion) {
    use rustls::{ClientConnection, ServerConnection};
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = pki_tests::offline_ca(dir.path());
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["app.pki.test".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    let names = vec!["app.pki.test".to_string()];
    let signed = ca
        .issue_unrecorded(&verify_csr(&csr).unwrap(), &names, Profile::Server)
        .unwrap();
    let chain: Vec<_> = std::iter::once(signed.der.clone())
        .chain(signed.chain.iter().cloned())
        .collect();
    let root = ca.root().cert.clone();
    let server = std::sync::Arc::new(
        pki_common::tls::server_config_with_client_auth(
            chain,
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            &root,
            Vec::new(),
            pki_common::tls::ClientAuth::Optional,
        )
        .unwrap(),
    );
    let client = std::sync::Arc::new(pki_common::tls::client_config(&root).unwrap());
    let name = rustls::pki_types::ServerName::try_from("app.pki.test").unwrap();
    c.bench_function(pki_bench::TLS_HANDSHAKE_BENCH, |b| {
        b.iter(|| {
            let mut cl = ClientConnection::new(client.clone(), name.clone()).unwrap();
            let mut sv = ServerConnection::new(server.clone()).unwrap();
            let mut buf = Vec::new();
            loop {
                let mut moved = false;
                buf.clear();
                while cl.wants_write() {
                    cl.write_tls(&mut buf).unwrap();
                }
                if !buf.is_empty() {
                    moved = true;
                    let mut rest = &buf[..];
                    while !rest.is_empty() {
                        sv.read_tls(&mut rest).unwrap();
                        sv.process_new_packets().unwrap();
                    }
                }
                buf.clear();
                while sv.wants_write() {
                    sv.write_tls(&mut buf).unwrap();
                }
                if !buf.is_empty() {
                    moved = true;
                    let mut rest = &buf[..];
                    while !rest.is_empty() {
                        cl.read_tls(&mut rest).unwrap();
                        cl.process_new_packets().unwrap();
                    }
                }
                if !moved {
                    break;
                }
            }
            assert!(!cl.is_handshaking() && !sv.is_handshaking());
            black_box((cl, sv))
        })
    });
}

fn protocol(c: &mut Criterion) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.pki.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = pki_common::tls::provider()
        .key_provider
        .load_private_key(der)
        .unwrap();
    let names = vec!["app.pki.test".to_string()];
    let registration = Registration {
        client_id: "client1".into(),
        client_addr: "127.0.0.1:1".into(),
        timestamp: pki_common::unix_now(),
    };
    let tickets = TicketKeys::parse(&TicketKeys::generate(None)).unwrap();
    // Steps 3 to 6 as both sides run them, step 6 with its ticket sealed
    // under the ticket key as the server seals it.
    let register = || {
        let (hello, f3) = ClientHello::start("app.pki.test", [7; 32], clock()).unwrap();
        let (mut server, f4) =
            accept_hello(&f3, [7; 32], &names, signer.as_ref(), clock()).unwrap();
        let mut client = hello.on_proof(&f4, cert.der(), clock()).unwrap();
        let f5 = client.register(&registration).unwrap();
        let reg = server.on_registration(&f5, clock(), None).unwrap();
        let now = pki_common::unix_now();
        let contents = TicketContents {
            session_id: [1; 16],
            client_id: reg.client_id.clone(),
            client_serial: None,
            issuer_serials: Vec::new(),
            server_name: "app.pki.test".into(),
            expires_at: now + 3600,
            secret: *server.resumption_secret().unwrap(),
        };
        let granted = SessionGranted {
            session_id: [1; 16],
            lifetime_secs: 3600,
            client_id: reg.client_id,
            timestamp: now,
            ticket: tickets.seal(&contents).unwrap(),
        };
        let (f6, keys) = server.grant(&granted).unwrap();
        let (session, _) = client.on_granted(&f6, "client1", clock()).unwrap();
        (session, keys)
    };
    c.bench_function(pki_bench::STEPS_BENCH, |b| b.iter(|| black_box(register())));

    // Steps 3R and 4R with the ticket of one registration, resumed again
    // and again (as a ticket may be until it expires).
    let (session, _) = register();
    let ticket = session.ticket().cloned().unwrap();
    c.bench_function(
        "steps 3R-4R: resume with a ticket (both sides, no TLS)",
        |b| {
            b.iter(|| {
                let (resuming, f3) = ClientResuming::start(&ticket, [7; 32], clock()).unwrap();
                let (resumed, f4) = accept_resume(&f3, [7; 32], &tickets, &names, clock()).unwrap();
                black_box((resuming.on_resumed(&f4, clock()).unwrap(), resumed))
            })
        },
    );

    // One established session for steps 7 and 8.
    let (mut session, mut keys) = register();
    let request = ServiceRequest {
        name: "echo".into(),
        body: vec![0x42; 32],
        timestamp: pki_common::unix_now(),
    };
    c.bench_function(
        "step 7: seal, frame, parse and open a 32-byte request",
        |b| {
            b.iter(|| {
                let frame = session.request(&request).unwrap();
                let bytes = frame.encode();
                let frame = Frame::decode(&bytes, DEFAULT_MAX_FRAME).unwrap();
                let (_, sealed) = request_session_id(&frame).unwrap();
                black_box(keys.open_request(&sealed, clock()).unwrap())
            })
        },
    );
}

criterion_group!(benches, issuance, tls_handshake, protocol);
criterion_main!(benches);

//! Criterion micro-benchmarks of the hot paths: issuing a certificate,
//! the protocol's steps 3 to 6 without TLS and, beside them, resuming with
//! a ticket (steps 3R and 4R), sealing and opening a request, and framing.

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
    c.bench_function("steps 3-6 (both sides, no TLS)", |b| {
        b.iter(|| black_box(register()))
    });

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

criterion_group!(benches, issuance, protocol);
criterion_main!(benches);

//! Property tests of the wire: every message round-trips, and arbitrary
//! bytes fed to the frame decoder, the message parsers and the state
//! machines are refused with an error, never a panic. These run in `make
//! test`; `make fuzz` drives the same entry points with libFuzzer.

use std::sync::Arc;

use pki_common::proto::handshake::{accept_hello, request_session_id, ClientHello, Clock};
use pki_common::proto::message::{
    decode, encode, Alert, Hello, Registration, Response, Sealed, ServerProof, ServiceRequest,
    SessionGranted, SessionSealed, Status,
};
use pki_common::proto::{Frame, Kind, DEFAULT_MAX_FRAME};
use proptest::prelude::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Hello),
        Just(Kind::ServerProof),
        Just(Kind::Registration),
        Just(Kind::SessionGranted),
        Just(Kind::ServiceRequest),
        Just(Kind::Response),
        Just(Kind::Alert),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Ok),
        Just(Status::NotFound),
        Just(Status::BadRequest)
    ]
}

fn clock() -> Clock {
    Clock {
        now: pki_common::unix_now(),
        skew: 30,
    }
}

/// A signing key and a self-signed certificate for it, for the state
/// machines (their certificate checks are not under test here).
fn signer() -> (Arc<dyn rustls::sign::SigningKey>, CertificateDer<'static>) {
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
    (signer, cert.der().clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip(kind in kinds(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let frame = Frame::new(kind, payload);
        prop_assert_eq!(Frame::decode(&frame.encode(), DEFAULT_MAX_FRAME).unwrap(), frame);
    }

    #[test]
    fn the_frame_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096), max in 0usize..100_000) {
        let _ = Frame::decode(&bytes, max);
        if let Ok(h) = <[u8; 8]>::try_from(&bytes[..bytes.len().min(8)]) {
            let _ = Frame::parse_header(&h, max);
        }
    }

    #[test]
    fn message_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode::<Hello>(&bytes, "hello");
        let _ = decode::<ServerProof>(&bytes, "proof");
        let _ = decode::<Sealed>(&bytes, "sealed");
        let _ = decode::<SessionSealed>(&bytes, "session sealed");
        let _ = decode::<Registration>(&bytes, "registration");
        let _ = decode::<SessionGranted>(&bytes, "granted");
        let _ = decode::<ServiceRequest>(&bytes, "request");
        let _ = decode::<Response>(&bytes, "response");
        let _ = decode::<Alert>(&bytes, "alert");
        for kind in [Kind::Hello, Kind::ServerProof, Kind::Registration, Kind::SessionGranted, Kind::ServiceRequest, Kind::Response, Kind::Alert] {
            let frame = Frame::new(kind, bytes.clone());
            let _ = request_session_id(&frame);
            let _ = frame.require(Kind::Hello);
        }
    }

    #[test]
    fn every_message_round_trips(
        s in ".{0,64}", t in ".{0,64}", bytes in proptest::collection::vec(any::<u8>(), 0..256),
        a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), id in any::<[u8; 16]>(),
        n in any::<u64>(), m in any::<u64>(), scheme in any::<u16>(), st in status(),
    ) {
        let hello = Hello { expected_server: s.clone(), client_share: a, nonce: b, timestamp: n };
        prop_assert_eq!(decode::<Hello>(&encode(&hello).unwrap(), "x").unwrap(), hello);
        let proof = ServerProof { server_share: a, nonce: b, timestamp: n, scheme, signature: bytes.clone() };
        prop_assert_eq!(decode::<ServerProof>(&encode(&proof).unwrap(), "x").unwrap(), proof);
        let sealed = Sealed { seq: n, ciphertext: bytes.clone() };
        prop_assert_eq!(decode::<Sealed>(&encode(&sealed).unwrap(), "x").unwrap(), sealed);
        let ss = SessionSealed { session_id: id, seq: m, ciphertext: bytes.clone() };
        prop_assert_eq!(decode::<SessionSealed>(&encode(&ss).unwrap(), "x").unwrap(), ss);
        let reg = Registration { client_id: s.clone(), client_addr: t.clone(), timestamp: n };
        prop_assert_eq!(decode::<Registration>(&encode(&reg).unwrap(), "x").unwrap(), reg);
        let granted = SessionGranted { session_id: id, lifetime_secs: m, client_id: s.clone(), timestamp: n, ticket: s.as_bytes().to_vec() };
        prop_assert_eq!(decode::<SessionGranted>(&encode(&granted).unwrap(), "x").unwrap(), granted);
        let req = ServiceRequest { name: t.clone(), body: bytes.clone(), timestamp: m };
        prop_assert_eq!(decode::<ServiceRequest>(&encode(&req).unwrap(), "x").unwrap(), req);
        let resp = Response { status: st, data: bytes.clone(), timestamp: n };
        prop_assert_eq!(decode::<Response>(&encode(&resp).unwrap(), "x").unwrap(), resp);
        let alert = Alert { code: scheme, message: s };
        prop_assert_eq!(decode::<Alert>(&encode(&alert).unwrap(), "x").unwrap(), alert);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_state_machines_refuse_arbitrary_frames_without_panicking(
        kind in kinds(), payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (key, cert) = signer();
        let names = vec!["app.pki.test".to_string()];
        let frame = Frame::new(kind, payload);
        // Server side, step 3.
        let _ = accept_hello(&frame, [0; 32], &names, key.as_ref(), clock());
        // Client side, step 4.
        let (hello, _) = ClientHello::start("app.pki.test", [0; 32], clock()).unwrap();
        let _ = hello.on_proof(&frame, &cert, clock());
        // Later steps, after an honest exchange of steps 3 and 4.
        let (hello, hello_frame) = ClientHello::start("app.pki.test", [1; 32], clock()).unwrap();
        let (mut server, proof) = accept_hello(&hello_frame, [1; 32], &names, key.as_ref(), clock()).unwrap();
        let client = hello.on_proof(&proof, &cert, clock()).unwrap();
        let _ = server.on_registration(&frame, clock(), None);
        let _ = client.on_granted(&frame, "client1", clock());
    }
}

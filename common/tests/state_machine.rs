//! The protocol's rules that live in the state machines, driven by hand,
//! with no network: what a driver cannot forget to check because the state
//! machine checks it.

use std::sync::Arc;

use pki_common::cert::CertInfo;
use pki_common::proto::handshake::{accept_hello, ClientHello, Clock, ServerRegistering};
use pki_common::proto::message::Registration;
use pki_common::proto::ProtoError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn clock() -> Clock {
    Clock {
        now: pki_common::unix_now(),
        skew: 30,
    }
}

/// A self-signed certificate for `names`, and a signer with its key.
fn certified(names: &[&str]) -> (Arc<dyn rustls::sign::SigningKey>, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let cert = rcgen::CertificateParams::new(names)
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

/// Steps 3 to 5 as `client_id`: the server's state after step 4, and the
/// client's sealed registration.
fn register_as(client_id: &str) -> (ServerRegistering, pki_common::proto::Frame) {
    let (key, cert) = certified(&["app.pki.test"]);
    let names = vec!["app.pki.test".to_string()];
    let (hello, hello_frame) = ClientHello::start("app.pki.test", [9; 32], clock()).unwrap();
    let (server, proof) =
        accept_hello(&hello_frame, [9; 32], &names, key.as_ref(), clock()).unwrap();
    let mut client = hello.on_proof(&proof, &cert, clock()).unwrap();
    let frame = client
        .register(&Registration {
            client_id: client_id.into(),
            client_addr: "127.0.0.1:50000".into(),
            timestamp: pki_common::unix_now(),
        })
        .unwrap();
    (server, frame)
}

#[test]
fn a_client_id_other_than_the_certified_name_is_refused_in_step_5() {
    let (_, client_cert) = certified(&["client1.pki.test"]);
    let cert = CertInfo::parse(&client_cert).unwrap();
    let (mut server, frame) = register_as("admin.pki.test");
    let err = server
        .on_registration(&frame, clock(), Some(&cert))
        .unwrap_err();
    assert!(
        matches!(&err, ProtoError::ClientIdNotCertified { claimed, certified }
            if claimed == "admin.pki.test" && certified == "client1.pki.test"),
        "{err}"
    );
}

#[test]
fn the_certified_name_registers_in_any_case_and_anyone_without_a_certificate_may_claim_an_id() {
    let (_, client_cert) = certified(&["client1.pki.test"]);
    let cert = CertInfo::parse(&client_cert).unwrap();
    let (mut server, frame) = register_as("CLIENT1.pki.test");
    let registration = server
        .on_registration(&frame, clock(), Some(&cert))
        .unwrap();
    assert_eq!(
        registration.client_id.to_ascii_lowercase(),
        "client1.pki.test"
    );
    let (mut server, frame) = register_as("admin.pki.test");
    assert_eq!(
        server
            .on_registration(&frame, clock(), None)
            .unwrap()
            .client_id,
        "admin.pki.test"
    );
}

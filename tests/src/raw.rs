//! A client that speaks the protocol frame by frame, for the refusals the
//! server detects: the real client never sends a tampered, replayed or
//! out-of-order frame, so these tests drive the state machines by hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pki_common::proto::handshake::{ClientHello, ClientSession, Clock};
use pki_common::proto::message::{Registration, ServiceRequest};
use pki_common::proto::{
    read_frame, write_frame, AlertCode, Frame, Kind, ProtoError, EXPORTER_LABEL,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::TestPki;

/// The frame limit both sides use unless a test configures another.
pub const MAX: usize = pki_common::proto::DEFAULT_MAX_FRAME;

/// The current time with the default skew: the clock an honest party uses.
pub fn now_clock() -> Clock {
    Clock {
        now: pki_common::unix_now(),
        skew: 30,
    }
}

/// An honest registration for `client1`, stamped now.
pub fn registration() -> Registration {
    Registration {
        client_id: "client1".into(),
        client_addr: "127.0.0.1:1".into(),
        timestamp: pki_common::unix_now(),
    }
}

/// An honest request for the memo, stamped now.
pub fn memo() -> ServiceRequest {
    ServiceRequest {
        name: "memo".into(),
        body: vec![],
        timestamp: pki_common::unix_now(),
    }
}

/// Flips the last byte of a sealed frame: the last byte of the GCM tag.
pub fn tamper(frame: &Frame) -> Frame {
    let mut f = frame.clone();
    let last = f.payload.len() - 1;
    f.payload[last] ^= 0x01;
    f
}

/// A client that speaks the protocol frame by frame.
pub struct RawClient {
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
    /// The server's certificate, as step 4's proof is checked against it.
    pub cert: CertificateDer<'static>,
}

impl RawClient {
    /// Completes TLS with the server at `addr`, trusting `pki`'s root.
    pub async fn connect(pki: &TestPki, addr: SocketAddr) -> Self {
        let config = pki_common::tls::client_config(&pki.root()).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let stream = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("app.pki.test").unwrap(), tcp)
            .await
            .unwrap();
        let cert = stream.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned();
        RawClient { stream, cert }
    }

    /// This connection's TLS exporter value, which binds step 4's proof.
    pub fn exporter(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.stream
            .get_ref()
            .1
            .export_keying_material(&mut out, EXPORTER_LABEL, None)
            .unwrap();
        out
    }

    /// Writes one frame as given, tampered or not: the server must judge it.
    pub async fn send(&mut self, frame: &Frame) {
        write_frame(&mut self.stream, frame).await.unwrap();
    }

    /// Writes raw bytes, for what is not a well-formed frame at all.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Reads the server's next frame, bounded so a silent server fails the
    /// test instead of hanging it.
    pub async fn recv(&mut self) -> Result<Frame, ProtoError> {
        tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.stream, MAX))
            .await
            .expect("no answer from the server")
    }

    /// Reads the server's answer and asserts it is an alert with `code`,
    /// after which the server closes the connection.
    pub async fn expect_alert(&mut self, code: AlertCode) {
        let frame = self.recv().await.unwrap();
        match frame.require(Kind::Response) {
            Err(ProtoError::PeerAlert { code: got, message }) => {
                assert_eq!(got, code, "alert message: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected alert {code:?}, got {other:?}"),
        }
        assert!(matches!(
            self.recv().await,
            Err(ProtoError::Closed) | Err(ProtoError::Io(_))
        ));
    }

    /// Sends step 3 for `app.pki.test` with the current clock; returns the
    /// hello state and the frame sent.
    pub async fn hello(&mut self) -> (ClientHello, Frame) {
        let (hello, frame) =
            ClientHello::start("app.pki.test", self.exporter(), now_clock()).unwrap();
        self.send(&frame).await;
        (hello, frame)
    }

    /// Steps 3 to 6 with honest messages; `hello_clock` may be skewed.
    pub async fn register_with(&mut self, hello_clock: Clock) -> ClientSession {
        let (hello, frame) =
            ClientHello::start("app.pki.test", self.exporter(), hello_clock).unwrap();
        self.send(&frame).await;
        let proof = self.recv().await.unwrap();
        let mut reg = hello.on_proof(&proof, &self.cert, now_clock()).unwrap();
        let f = reg.register(&registration()).unwrap();
        self.send(&f).await;
        let granted = self.recv().await.unwrap();
        reg.on_granted(&granted, "client1", now_clock()).unwrap().0
    }

    /// Steps 3 to 6 with honest messages and the current clock.
    pub async fn register(&mut self) -> ClientSession {
        self.register_with(now_clock()).await
    }
}

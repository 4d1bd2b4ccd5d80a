//! A TLS 1.3 stream that carries protocol frames: what both the client and
//! the server drive steps 3 to 8 over.
//!
//! It owns what every protocol connection needs besides the state machine:
//! the frame size limit, a bound on every read and write (so a peer that
//! stops reading or writing cannot hold a connection forever), the TLS
//! exporter value that binds step 4 to this connection, and the peer's
//! certificate as TLS verified it.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proto::view::WireView;
use crate::proto::{read_frame, write_frame, Frame, ProtoError, EXPORTER_LABEL};

/// What this side knows about the TLS connection under the frames.
#[derive(Debug, Clone)]
pub struct TlsBinding {
    /// RFC 8446 §7.5 exporter value under [`EXPORTER_LABEL`].
    pub exporter: [u8; 32],
    /// The peer's end-entity certificate, verified by TLS, if it sent one.
    pub peer_cert: Option<CertificateDer<'static>>,
    /// The rest of the chain the peer sent (its intermediates), as TLS
    /// verified it against the root.
    pub peer_intermediates: Vec<CertificateDer<'static>>,
}

impl TlsBinding {
    /// Reads the exporter and the peer certificate off either side's
    /// rustls connection.
    pub fn of<D>(conn: &rustls::ConnectionCommon<D>) -> Result<Self, rustls::Error> {
        let mut exporter = [0u8; 32];
        conn.export_keying_material(&mut exporter, EXPORTER_LABEL, None)?;
        let chain = conn.peer_certificates().unwrap_or_default();
        let peer_cert = chain.first().map(|c| c.clone().into_owned());
        let peer_intermediates = chain
            .iter()
            .skip(1)
            .map(|c| c.clone().into_owned())
            .collect();
        Ok(TlsBinding {
            exporter,
            peer_cert,
            peer_intermediates,
        })
    }
}

/// Frames over a TLS stream, with limits.
pub struct FramedTls<S> {
    stream: S,
    binding: TlsBinding,
    max_frame: usize,
    /// Bound on each write: a peer that does not read cannot block us.
    write_timeout: Duration,
    /// `--wire`: shows each frame sent and received (never a key).
    wire: WireView,
}

/// The client's side of a protocol connection.
pub type ClientFramed = FramedTls<tokio_rustls::client::TlsStream<TcpStream>>;
/// The server's side of a protocol connection.
pub type ServerFramed = FramedTls<tokio_rustls::server::TlsStream<TcpStream>>;

/// A TLS stream of either side, which can say what binds frames to it.
pub trait TlsSide {
    fn binding(&self) -> Result<TlsBinding, rustls::Error>;
}

impl TlsSide for tokio_rustls::client::TlsStream<TcpStream> {
    fn binding(&self) -> Result<TlsBinding, rustls::Error> {
        TlsBinding::of(self.get_ref().1)
    }
}

impl TlsSide for tokio_rustls::server::TlsStream<TcpStream> {
    fn binding(&self) -> Result<TlsBinding, rustls::Error> {
        TlsBinding::of(self.get_ref().1)
    }
}

impl<S: TlsSide + AsyncRead + AsyncWrite + Unpin> FramedTls<S> {
    /// Frames over an established TLS stream of either side.
    pub fn open(
        stream: S,
        max_frame: usize,
        write_timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let binding = stream.binding()?;
        Ok(FramedTls::new(stream, binding, max_frame, write_timeout))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedTls<S> {
    pub fn new(stream: S, binding: TlsBinding, max_frame: usize, write_timeout: Duration) -> Self {
        FramedTls {
            stream,
            binding,
            max_frame,
            write_timeout,
            wire: WireView::default(),
        }
    }

    /// Shows every frame through `wire` (`--wire`), and the exporter now.
    pub fn with_wire(mut self, wire: WireView) -> Self {
        wire.exporter(&self.binding.exporter);
        self.wire = wire;
        self
    }

    /// The `--wire` view this connection shows its frames through.
    pub fn wire(&self) -> WireView {
        self.wire
    }

    /// This connection's exporter value, for step 4.
    pub fn exporter(&self) -> [u8; 32] {
        self.binding.exporter
    }

    /// The peer's certificate, as TLS verified it.
    pub fn peer_cert(&self) -> Option<&CertificateDer<'static>> {
        self.binding.peer_cert.as_ref()
    }

    /// The intermediates the peer sent after its certificate.
    pub fn peer_intermediates(&self) -> &[CertificateDer<'static>] {
        &self.binding.peer_intermediates
    }

    /// The stream underneath, for what only it knows (the rustls state).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Reads the next frame, waiting until `until` at the latest;
    /// `waiting_for` names what was expected when the wait runs out.
    pub async fn recv_until(
        &mut self,
        until: Instant,
        waiting_for: &'static str,
    ) -> Result<Frame, ProtoError> {
        let frame = tokio::time::timeout_at(until, read_frame(&mut self.stream, self.max_frame))
            .await
            .map_err(|_| ProtoError::Timeout(waiting_for))??;
        self.wire.frame(false, &frame);
        Ok(frame)
    }

    /// Writes a frame, bounded by the write timeout.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ProtoError> {
        tokio::time::timeout(self.write_timeout, write_frame(&mut self.stream, frame))
            .await
            .map_err(|_| ProtoError::Timeout("the peer to read"))??;
        self.wire.frame(true, frame);
        Ok(())
    }

    /// Sends the alert for `err`, if the peer should be told (best effort:
    /// the connection is closing anyway).
    pub async fn send_alert(&mut self, err: &ProtoError) {
        if let Some(alert) = Frame::alert_for(err) {
            let _ = self.send(&alert).await;
        }
    }

    /// Closes the TLS stream cleanly, bounded by the write timeout.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(self.write_timeout, self.stream.shutdown()).await;
    }
}

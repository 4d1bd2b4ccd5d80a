//! The plain servers the baselines run against: tokio-rustls with the same
//! certificate and the same TLS 1.3 configuration as our server, and
//! nothing of our protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What a plain server does with each connection after the handshake.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Behaviour {
    /// Close at once: measures bare handshakes.
    Close,
    /// Echo length-prefixed messages: the service-request baseline.
    Echo,
    /// Hold the connection idle until the client closes it.
    Idle,
}

/// Starts a plain tokio-rustls server on 127.0.0.1:0.
pub async fn spawn(config: Arc<ServerConfig>, behaviour: Behaviour) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, config, behaviour));
    Ok(addr)
}

/// Serves on `listener` until the process ends.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, behaviour: Behaviour) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            match behaviour {
                Behaviour::Close => {
                    let _ = tls.shutdown().await;
                }
                Behaviour::Idle => {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
                Behaviour::Echo => {
                    let mut len = [0u8; 4];
                    let mut buf = Vec::new();
                    while tls.read_exact(&mut len).await.is_ok() {
                        buf.resize(u32::from_be_bytes(len) as usize, 0);
                        if tls.read_exact(&mut buf).await.is_err() {
                            break;
                        }
                        let mut out = Vec::with_capacity(4 + buf.len());
                        out.extend_from_slice(&len);
                        out.extend_from_slice(&buf);
                        if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

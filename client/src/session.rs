//! Using a session: once ([`request_once`], what `pki-client request` runs)
//! or across many requests and connections ([`SessionClient`]).
//!
//! A session outlives its connection on the server, so a client that keeps
//! it skips steps 3 to 6 on later requests; the server may forget it at any
//! time, and [`SessionClient`] recovers from that by registering again.

use tracing::info;

use pki_common::proto::handshake::ClientSession;
use pki_common::proto::message::Response;
use pki_common::proto::{AlertCode, ProtoError};

use crate::{ClientConfig, ClientError, Connection};

/// The whole flow: connect, register, one request.
pub async fn request_once(
    config: &ClientConfig,
    name: &str,
    body: &[u8],
) -> Result<Response, ClientError> {
    let mut conn = Connection::connect(config).await?;
    let mut session = conn.register().await?;
    let response = conn.request(&mut session, name, body).await?;
    conn.close().await;
    Ok(response)
}

/// A client that keeps its session across requests and connections, and
/// registers again when the server no longer knows the session (it
/// restarted, the session expired or reached its request limit).
pub struct SessionClient {
    config: ClientConfig,
    conn: Option<Connection>,
    session: Option<ClientSession>,
}

impl SessionClient {
    pub fn new(config: ClientConfig) -> Self {
        SessionClient {
            config,
            conn: None,
            session: None,
        }
    }

    /// The current session, if registered.
    pub fn session(&self) -> Option<&ClientSession> {
        self.session.as_ref()
    }

    /// Closes the connection but keeps the session, to resume it on the
    /// next request over a new connection.
    pub async fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// Steps 7 and 8, connecting and registering (steps 3 to 6) as needed.
    pub async fn request(&mut self, name: &str, body: &[u8]) -> Result<Response, ClientError> {
        match self.try_request(name, body).await {
            Err(ClientError::Proto(ProtoError::PeerAlert {
                code:
                    AlertCode::UnknownSession | AlertCode::SessionExpired | AlertCode::RequestLimit,
                message,
            })) => {
                // The server's text, escaped: a peer cannot forge log lines.
                let message = pki_common::proto::log_safe(&message);
                info!("the server ended our session ({message}); registering again");
                // The server closes the connection after an alert.
                self.conn = None;
                self.session = None;
                self.try_request(name, body).await
            }
            other => other,
        }
    }

    /// One attempt with whatever connection and session are at hand. A
    /// failed request drops the connection (its stream may be mid-frame)
    /// but keeps the session, which the server may still know.
    async fn try_request(&mut self, name: &str, body: &[u8]) -> Result<Response, ClientError> {
        if self.conn.is_none() {
            self.conn = Some(Connection::connect(&self.config).await?);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or(ClientError::Proto(ProtoError::Closed))?;
        if self.session.is_none() {
            self.session = Some(conn.register().await?);
        }
        let session = self
            .session
            .as_mut()
            .ok_or(ClientError::Proto(ProtoError::Closed))?;
        let result = conn.request(session, name, body).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

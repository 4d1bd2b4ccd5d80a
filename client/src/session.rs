//! Using a session: once ([`request_once`], what `pki-client request`
//! runs) or across many requests and connections ([`SessionClient`]).
//!
//! The server keeps no session between connections: the client carries
//! it in the ticket of step 6, and resumes it on a new connection (steps
//! 3R and 4R) on any replica holding the ticket key. A refused ticket
//! (expired, under a retired key, …) means registering again.

use tracing::info;

use pki_common::proto::handshake::{ClientSession, ClientTicket};
use pki_common::proto::message::Response;
use pki_common::proto::{AlertCode, ProtoError};

use crate::{ClientConfig, ClientError, Connection};

/// Whether `err` is the server refusing the session or its ticket, after
/// which registering again is the answer (rather than a failure to report).
fn session_refused(err: &ClientError) -> bool {
    matches!(
        err,
        ClientError::Proto(ProtoError::PeerAlert {
            code: AlertCode::UnknownSession
                | AlertCode::SessionExpired
                | AlertCode::RequestLimit
                | AlertCode::TicketExpired
                | AlertCode::UnknownTicketKey
                | AlertCode::BadTicket
                | AlertCode::TicketWrongServer,
            ..
        })
    )
}

/// The whole flow: connect; resume the session of the saved ticket if
/// there is one (`config.ticket_file`), else register; one request.
pub async fn request_once(
    config: &ClientConfig,
    name: &str,
    body: &[u8],
) -> Result<Response, ClientError> {
    let saved = config
        .ticket_file
        .as_deref()
        .and_then(|p| crate::ticket::load(p, &config.name, &config.client_id));
    if let Some(ticket) = saved {
        match resume_and_request(config, &ticket, name, body).await {
            Err(e) if session_refused(&e) => {
                info!("the server refused our saved session ({e}); registering again");
                if let Some(path) = &config.ticket_file {
                    crate::ticket::forget(path);
                }
            }
            other => return other,
        }
    }
    let mut conn = Connection::connect(config).await?;
    let mut session = conn.register().await?;
    save_ticket(config, &session);
    let response = conn.request(&mut session, name, body).await?;
    conn.close().await;
    Ok(response)
}

async fn resume_and_request(
    config: &ClientConfig,
    ticket: &ClientTicket,
    name: &str,
    body: &[u8],
) -> Result<Response, ClientError> {
    let mut conn = Connection::connect(config).await?;
    let mut session = conn.resume(ticket).await?;
    let response = conn.request(&mut session, name, body).await?;
    conn.close().await;
    Ok(response)
}

/// Keeps the session's ticket in `config.ticket_file`, if there is one.
fn save_ticket(config: &ClientConfig, session: &ClientSession) {
    if let (Some(path), Some(ticket)) = (&config.ticket_file, session.ticket()) {
        match crate::ticket::save(path, &config.client_id, ticket) {
            Ok(()) => info!(
                "kept the session ticket in {} (mode 0600) until {}; later runs resume the session instead of registering",
                path.display(),
                pki_common::cert::rfc3339(ticket.expires_at as i64)
            ),
            Err(e) => tracing::warn!("cannot keep the session ticket: {e}"),
        }
    }
}

/// A client that keeps its session across requests and connections, and
/// registers again when the server no longer knows the session (it
/// restarted, the session expired or reached its request limit).
pub struct SessionClient {
    config: ClientConfig,
    conn: Option<Connection>,
    /// The session on the current connection.
    session: Option<ClientSession>,
    /// What resumes the session on the next connection.
    ticket: Option<ClientTicket>,
}

impl SessionClient {
    pub fn new(config: ClientConfig) -> Self {
        SessionClient {
            config,
            conn: None,
            session: None,
            ticket: None,
        }
    }

    /// The current session, if registered.
    pub fn session(&self) -> Option<&ClientSession> {
        self.session.as_ref()
    }

    /// Closes the connection but keeps the ticket, to resume the session
    /// on the next request over a new connection.
    pub async fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// Steps 7 and 8, connecting and registering (steps 3 to 6) or
    /// resuming (steps 3R and 4R) as needed.
    pub async fn request(&mut self, name: &str, body: &[u8]) -> Result<Response, ClientError> {
        match self.try_request(name, body).await {
            Err(e) if session_refused(&e) => {
                info!("the server ended our session ({e}); registering again");
                // The server closes the connection after an alert.
                self.conn = None;
                self.session = None;
                self.ticket = None;
                self.try_request(name, body).await
            }
            other => other,
        }
    }

    /// One attempt with whatever connection and session are at hand. A
    /// failed request drops the connection (its stream may be mid-frame);
    /// the ticket stays, to resume on the next connection.
    async fn try_request(&mut self, name: &str, body: &[u8]) -> Result<Response, ClientError> {
        if self.conn.is_none() {
            self.conn = Some(Connection::connect(&self.config).await?);
            // A session's keys belong to its connection.
            self.session = None;
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or(ClientError::Proto(ProtoError::Closed))?;
        if self.session.is_none() {
            let session = match &self.ticket {
                Some(ticket) => conn.resume(ticket).await?,
                None => conn.register().await?,
            };
            self.ticket = session.ticket().cloned();
            self.session = Some(session);
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

//! Resuming a session on a new connection (steps 3R and 4R), in place of
//! steps 3 to 6, on any server that holds the ticket key.
//!
//! The client sends the ticket from step 6 and a fresh nonce; the server
//! opens the ticket, answers its own fresh nonce, and both derive this
//! connection's request keys (`K_res_c2s`, `K_res_s2c`): HKDF-SHA256 of the
//! ticket's resumption secret, salted with THR, the hash of this TLS
//! connection's exporter and of both resume frames (so of both nonces).
//! The keys are this connection's alone, so a step-7 frame recorded on one
//! connection cannot open on another, whichever replica receives it; the
//! sequence numbers still guard within the connection.

use super::check_timestamp;
use super::error::ProtoError;
use super::frame::{Frame, Kind};
use super::handshake::{random, sha256, ClientSession, ClientTicket, Clock, ServerSessionKeys};
use super::message::{decode, encode, Resume, Resumed};
use super::seal::KeySchedule;
use super::ticket::{TicketContents, TicketKeys};

/// This connection's request keys for `session_id`, from the resumption
/// `secret` and the transcript THR.
fn resumed_keys(
    secret: &[u8; 32],
    thr: &[u8; 32],
    session_id: &[u8; 16],
) -> Result<(super::seal::DirectionKey, super::seal::DirectionKey), ProtoError> {
    KeySchedule::extract(secret, thr).direction_keys("resumed", thr, session_id)
}

/// The client after sending step 3R.
pub struct ClientResuming {
    ticket: ClientTicket,
    exporter: [u8; 32],
    resume_frame: Vec<u8>,
}

impl ClientResuming {
    /// Step 3R: the ticket and a fresh nonce, for `ticket.server_name`.
    pub fn start(
        ticket: &ClientTicket,
        exporter: [u8; 32],
        clock: Clock,
    ) -> Result<(Self, Frame), ProtoError> {
        let resume = Resume {
            expected_server: ticket.server_name.clone(),
            ticket: ticket.ticket.clone(),
            nonce: random(),
            timestamp: clock.now,
        };
        let frame = Frame::new(Kind::Resume, encode(&resume)?);
        Ok((
            ClientResuming {
                ticket: ticket.clone(),
                exporter,
                resume_frame: frame.encode(),
            },
            frame,
        ))
    }

    /// Step 4R: checks the answer names our session, and derives this
    /// connection's request keys.
    pub fn on_resumed(self, frame: &Frame, clock: Clock) -> Result<ClientSession, ProtoError> {
        let resumed: Resumed = decode(frame.require(Kind::Resumed)?, "resumed")?;
        check_timestamp("resumed", resumed.timestamp, clock.now, clock.skew)?;
        if resumed.session_id != self.ticket.session_id {
            return Err(ProtoError::UnknownSession);
        }
        let thr = sha256(&[&self.exporter, &self.resume_frame, &frame.encode()]);
        let (send, recv) = resumed_keys(&self.ticket.secret, &thr, &resumed.session_id)?;
        let session_id = resumed.session_id;
        Ok(ClientSession::new(session_id, send, recv, thr, Some(self.ticket)).resumed())
    }
}

/// A session resumed on this connection, server side: what the ticket
/// said, and this connection's keys.
pub struct ServerResumed {
    pub contents: TicketContents,
    pub keys: ServerSessionKeys,
}

/// Steps 3R and 4R, server side: checks the resume (the expected server
/// among `names`, the timestamp), opens the ticket under `keys` and checks
/// it (not expired, granted for one of `names`), and answers step 4R. The
/// caller checks the ticket's certificates against its CRL before sending
/// the answer.
pub fn accept_resume(
    frame: &Frame,
    exporter: [u8; 32],
    keys: &TicketKeys,
    names: &[String],
    clock: Clock,
) -> Result<(ServerResumed, Frame), ProtoError> {
    let resume: Resume = decode(frame.require(Kind::Resume)?, "resume")?;
    let ours = |name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    if !ours(&resume.expected_server) {
        return Err(ProtoError::WrongServer {
            expected: resume.expected_server,
            actual: names.join(", "),
        });
    }
    check_timestamp("resume", resume.timestamp, clock.now, clock.skew)?;
    let contents = keys.open(&resume.ticket)?;
    if contents.expires_at <= clock.now {
        return Err(ProtoError::TicketExpired {
            at: crate::cert::rfc3339(contents.expires_at as i64),
        });
    }
    if !ours(&contents.server_name) {
        return Err(ProtoError::TicketWrongServer {
            ticket_for: contents.server_name.clone(),
            actual: names.join(", "),
        });
    }
    let resumed = Resumed {
        session_id: contents.session_id,
        nonce: random(),
        timestamp: clock.now,
        expires_at: contents.expires_at,
    };
    let answer = Frame::new(Kind::Resumed, encode(&resumed)?);
    let thr = sha256(&[&exporter, &frame.encode(), &answer.encode()]);
    let (recv, send) = resumed_keys(&contents.secret, &thr, &contents.session_id)?;
    let keys = ServerSessionKeys {
        recv,
        send,
        th2: thr,
        transcript_name: "THR",
    };
    Ok((ServerResumed { contents, keys }, answer))
}

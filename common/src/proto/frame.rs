//! The wire unit.
//!
//! ```text
//! +-------+-------+---------+------+----------------+-----------------+
//! | 'P'   | 'A'   | version | kind | length (u32 BE)| payload ...     |
//! +-------+-------+---------+------+----------------+-----------------+
//!   magic (2)        1         1         4            length bytes
//! ```
//!
//! The header is checked before the payload is read: a peer that is not
//! speaking this protocol, speaks another version, or announces a frame
//! over the limit is refused without buffering its bytes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::ProtoError;

/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"PA";
/// Magic, version, kind and length.
pub const HEADER_LEN: usize = 8;
/// Default limit on a frame, header included.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

crate::wire::wire_enum! {
    /// The message kinds: one per step, plus the alert that carries a
    /// refusal. The name is the step as narration and errors call it.
    pub enum Kind: u8 {
        /// Step 3, C→S.
        Hello = 3 => "step 3 (hello)",
        /// Step 4, S→C.
        ServerProof = 4 => "step 4 (server proof)",
        /// Step 5, C→S, sealed.
        Registration = 5 => "step 5 (registration)",
        /// Step 6, S→C, sealed.
        SessionGranted = 6 => "step 6 (session granted)",
        /// Step 7, C→S, sealed under the session key.
        ServiceRequest = 7 => "step 7 (service request)",
        /// Step 8, S→C, sealed under the session key.
        Response = 8 => "step 8 (response)",
        /// Step 3R, C→S: resume a session with its ticket, on a new
        /// connection (in place of steps 3 to 6).
        Resume = 9 => "step 3R (resume)",
        /// Step 4R, S→C: the server's nonce; both sides then hold this
        /// connection's request keys.
        Resumed = 10 => "step 4R (resumed)",
        /// Either direction: a refusal, after which the sender closes.
        Alert = 0x7f => "alert",
    }
}

impl Kind {
    /// The step name used in narration and errors.
    pub fn step(self) -> &'static str {
        self.name()
    }
}

/// One frame: its kind and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: Kind, payload: Vec<u8>) -> Self {
        Frame { kind, payload }
    }

    /// The frame's bytes on the wire. Deterministic, so the transcript can
    /// be computed from the frame on both sides.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&Self::header(self.kind, self.payload.len()));
        out.extend_from_slice(&self.payload);
        out
    }

    fn header(kind: Kind, len: usize) -> [u8; HEADER_LEN] {
        let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        [
            MAGIC[0],
            MAGIC[1],
            VERSION,
            kind.code(),
            len[0],
            len[1],
            len[2],
            len[3],
        ]
    }

    /// Checks a header; answers the kind and the payload length.
    pub fn parse_header(h: &[u8; HEADER_LEN], max: usize) -> Result<(Kind, usize), ProtoError> {
        if h[0..2] != MAGIC {
            return Err(ProtoError::BadMagic([h[0], h[1]]));
        }
        if h[2] != VERSION {
            return Err(ProtoError::UnsupportedVersion { got: h[2] });
        }
        let kind = Kind::from_code(h[3]).ok_or(ProtoError::UnknownKind(h[3]))?;
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if len.saturating_add(HEADER_LEN) > max {
            return Err(ProtoError::FrameTooLarge {
                len: len.saturating_add(HEADER_LEN),
                max,
            });
        }
        Ok((kind, len))
    }

    /// Decodes one whole frame from `bytes`, which must hold exactly one.
    pub fn decode(bytes: &[u8], max: usize) -> Result<Frame, ProtoError> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(ProtoError::Malformed { what: "frame" })?;
        let (kind, len) = Self::parse_header(header, max)?;
        let payload = &bytes[HEADER_LEN..];
        if payload.len() != len {
            return Err(ProtoError::Malformed { what: "frame" });
        }
        Ok(Frame::new(kind, payload.to_vec()))
    }
}

/// Reads one frame. A clean end of stream before a header is
/// [`ProtoError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Frame, ProtoError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                ProtoError::Closed
            } else {
                ProtoError::Malformed { what: "frame" }
            });
        }
        filled += n;
    }
    let (kind, len) = Frame::parse_header(&header, max)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProtoError::Malformed { what: "frame" }
        } else {
            ProtoError::Io(e)
        }
    })?;
    Ok(Frame::new(kind, payload))
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), ProtoError> {
    writer.write_all(&frame.encode()).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let f = Frame::new(Kind::Hello, vec![1, 2, 3]);
        assert_eq!(Frame::decode(&f.encode(), DEFAULT_MAX_FRAME).unwrap(), f);
    }

    #[test]
    fn header_refusals() {
        let mut bytes = Frame::new(Kind::Hello, vec![0; 10]).encode();
        bytes[2] = 9;
        assert!(matches!(
            Frame::decode(&bytes, DEFAULT_MAX_FRAME),
            Err(ProtoError::UnsupportedVersion { got: 9 })
        ));
        assert!(matches!(
            Frame::decode(b"GET / HTTP/1.1\r\n", DEFAULT_MAX_FRAME),
            Err(ProtoError::BadMagic(_))
        ));
        let big = Frame::new(Kind::Hello, vec![0; 100]).encode();
        assert!(matches!(
            Frame::decode(&big, 64),
            Err(ProtoError::FrameTooLarge { len: 108, max: 64 })
        ));
        let mut unknown = Frame::new(Kind::Hello, vec![]).encode();
        unknown[3] = 42;
        assert!(matches!(
            Frame::decode(&unknown, DEFAULT_MAX_FRAME),
            Err(ProtoError::UnknownKind(42))
        ));
    }
}

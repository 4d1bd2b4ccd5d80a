//! The application protocol of phases 2 and 3: steps 3 to 8.
//!
//! `docs/protocol.md` is the specification; this module follows it in the
//! same order. It runs inside a TLS 1.3 connection whose server certificate
//! the client has already verified. TLS protects the channel and proves the
//! server's identity to the transport; this protocol adds a session key that
//! does not depend on the transport, bound to the server's certified key
//! (step 4), to the client's registration (steps 5 and 6) and to every
//! request (steps 7 and 8).
//!
//! # Layout
//! - [`frame`]: the wire unit: magic, version, kind, length, payload; and
//!   reading and writing whole frames over a stream with a size limit.
//! - [`message`]: one type per step, each defined once for both sides.
//! - [`seal`]: the key schedule (X25519, HKDF-SHA256) and AES-256-GCM
//!   sealing with per-direction sequence numbers.
//! - [`handshake`]: the two state machines, client and server. They do no
//!   I/O, so tests can tamper with any frame between the two sides.
//! - [`ticket`]: session tickets, sealed under the servers' ticket key.
//! - [`resume`]: steps 3R and 4R, resuming a session on a new connection.
//! - [`error`]: every refusal, and the alert code each one sends.

pub mod error;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod resume;
pub mod seal;
pub mod ticket;
pub mod view;

pub use error::{AlertCode, ProtoError};
pub use frame::{read_frame, write_frame, Frame, Kind, DEFAULT_MAX_FRAME, VERSION};

/// Label of the TLS exporter value that binds step 4 to one TLS connection
/// (RFC 8446 §7.5). A proof replayed on another connection does not verify.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-pki-auth-v1";

/// Default allowed clock difference between the two sides, in seconds.
pub const DEFAULT_SKEW_SECS: u64 = 30;

/// `text` as it may appear in a log line: control characters (newlines
/// above all), backslashes and the Unicode line separators and
/// direction overrides are escaped, everything else is kept. Every string
/// a peer supplies goes through this (or `{:?}`) before it is logged, so a
/// peer cannot forge log lines or hide text.
pub fn log_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let risky = |c: char| {
        c.is_control()
            || c == '\\'
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(risky) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if risky(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Checks that `timestamp` lies within `skew` seconds of `now`.
pub fn check_timestamp(
    what: &'static str,
    timestamp: u64,
    now: u64,
    skew: u64,
) -> Result<(), ProtoError> {
    let delta = timestamp as i128 - now as i128;
    if delta.unsigned_abs() > u128::from(skew) {
        return Err(ProtoError::StaleTimestamp {
            what,
            delta: delta.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            skew,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn log_safe_escapes_what_could_forge_or_hide_a_line() {
        assert_eq!(log_safe("client1.pki.test: ok"), "client1.pki.test: ok");
        assert_eq!(log_safe("a\nFAKE\r\tb"), "a\\nFAKE\\r\\tb");
        assert_eq!(log_safe("a\\nb"), "a\\\\nb");
        assert_eq!(log_safe("x\u{2028}y\u{202e}z"), "x\\u{2028}y\\u{202e}z");
        assert_eq!(log_safe("\u{1b}[31m"), "\\u{1b}[31m");
    }
}

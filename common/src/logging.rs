//! Narration. Every protocol step is logged at info level in words a learner
//! can follow; `RUST_LOG` adjusts the verbosity (default `info`).
//!
//! Two formats, one per reader: `text` (the default) for a person, one
//! line per event with a millisecond UTC timestamp, and `json` (`--log-format
//! json` or `PKI_LOG_FORMAT=json`) for a log pipeline, one JSON object per
//! line whose fields (the audit lines' `peer`, say) are keys of their own.
//!
//! Crates that log through the `log` facade rather than `tracing` (rustls
//! does) are bridged in (tracing-subscriber's `tracing-log` feature installs
//! the bridge when the subscriber is installed), so `RUST_LOG=rustls=debug`
//! shows what rustls says about a handshake.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The names `--log-format` takes.
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format {s:?}; use {}",
                Self::NAMES.join(" or ")
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Installs the global subscriber in the format `PKI_LOG_FORMAT` names
/// (text if unset or unknown). Programs with a `--log-format` flag call
/// [`init_with`] instead.
pub fn init() {
    let format = std::env::var("PKI_LOG_FORMAT")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or_default();
    init_with(format);
}

/// Installs the global subscriber. Logs go to stderr so that stdout stays
/// free for what scripts capture (a token, a response). Each event is
/// formatted whole and written with one write, so the lines of several
/// programs sharing a pipe (as in `make run-all`) never interleave mid-line.
pub fn init_with(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(UtcMillis);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// UTC timestamps to the millisecond (`2025-01-02T03:04:05.678Z`): enough to
/// order the events of three programs, short enough to read.
struct UtcMillis;

impl FormatTime for UtcMillis {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        write!(
            w,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond()
        )
    }
}

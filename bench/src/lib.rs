//! The benchmark harness.
//!
//! Every end-to-end figure is measured beside a baseline taken in the same
//! run, on the same machine, with the same client code, and reported as a
//! ratio. Ours and the baselines run in short alternating rounds, and the
//! servers under test run as separate processes, so that their CPU time
//! per operation can be read from `/proc`. Nothing here asserts a timing:
//! the harness reports, and the targets are read off the table.
//!
//! # Layout
//! - [`stats`]: latency samples, percentiles, rates, medians and ranges.
//! - [`rounds`]: the interleaved rounds, CPU time from `/proc`, scaling.
//! - [`scenarios`]: one function per figure (issuance, session
//!   establishment and resumption with a ticket, service requests, memory
//!   with sessions held open and with tickets only, whole programs), each
//!   with its baseline.
//! - [`baseline`]: the plain tokio-rustls servers the baselines run
//!   against (handshake-only, echo, idle), run as `pki-bench plain-server`.
//! - [`report`]: the tables, printed and written as Markdown and JSON.
//! - [`plot`]: the scaling plot (SVG).

pub mod baseline;
pub mod plot;
pub mod report;
pub mod rounds;
pub mod scenarios;
pub mod stats;

/// The criterion benchmark of a bare TLS 1.3 handshake, both sides in
/// memory (`benches/hot_paths.rs`), that the session ceiling is computed
/// from.
pub const TLS_HANDSHAKE_BENCH: &str = "TLS 1.3 handshake (both sides, in memory)";

/// The criterion benchmark of steps 3 to 6, both sides without TLS.
pub const STEPS_BENCH: &str = "steps 3-6 (both sides, no TLS)";

//! The benchmark harness.
//!
//! Every end-to-end figure is measured beside a baseline taken in the same
//! run, on the same machine, with the same client code, and reported as a
//! ratio. Nothing here asserts a timing: the harness reports, and the
//! targets are read off the table.
//!
//! # Layout
//! - [`stats`]: latency samples, percentiles and rates.
//! - [`scenarios`]: one function per figure (issuance, session
//!   establishment and resumption with a ticket, service requests, memory
//!   with sessions held open and with tickets only, whole programs), each
//!   with its baseline.
//! - [`baseline`]: the plain tokio-rustls servers the baselines run
//!   against (handshake-only, echo, idle).
//! - [`report`]: the table, printed and written as Markdown and JSON.

pub mod baseline;
pub mod report;
pub mod scenarios;
pub mod stats;

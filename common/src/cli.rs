//! How the three programs end on an error: one style for all of them.
//!
//! ```text
//! pki-ca: cannot start the CA listener: cannot listen on 127.0.0.1:8443: Address already in use (os error 98)
//! hint: another program is serving on 127.0.0.1:8443; stop it, or choose another address with --listen
//! ```
//!
//! An error travels up as a chain (a context, the error, its source, …)
//! whose texts often repeat one another: thiserror messages embed their
//! source (`"{path}: {source}"`), and the source is in the chain again.
//! anyhow's default report prints each link on its own line, so a user
//! read the same sentence up to three times, followed by a backtrace
//! whenever `RUST_BACKTRACE` happened to be set in the shell. Here the
//! chain is walked once, a link already contained in the one before it is
//! dropped, and what is left is one line.
//!
//! # The hint convention
//!
//! An error's text says what failed, why, and then, after `"; "`, what to
//! do: `"{path}: private key is accessible to group or others (mode 644);
//! run `chmod 600 {path}`"`. The reporter prints that last part on a line
//! of its own, starting with `hint: `. Only a `"; "` outside parentheses,
//! brackets and backquotes counts, so a cause quoted in parentheses keeps
//! its own punctuation. Logs print the same text on one line, as is.
//!
//! # Backtraces
//!
//! Only on request: `PKI_BACKTRACE=1`. `RUST_BACKTRACE` alone does not
//! print one, since many Rust users set it in their shell for other
//! programs; it still governs panics, which are bugs.

use std::process::ExitCode;

/// The environment variable that asks for a backtrace with an error.
pub const BACKTRACE_VAR: &str = "PKI_BACKTRACE";

/// Exit status of a program that failed (clap exits with 2 for usage
/// errors on its own).
pub const FAILURE: u8 = 1;

/// Call first in `main`: with `PKI_BACKTRACE=1`, errors capture their
/// backtrace (anyhow captures one only when told so by the environment).
pub fn init() {
    if backtrace_requested() {
        // Runs before any thread is started, so no other thread reads the
        // environment while it changes.
        std::env::set_var("RUST_LIB_BACKTRACE", "1");
    }
}

fn backtrace_requested() -> bool {
    std::env::var(BACKTRACE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The program's exit: `Ok(code)` as is; an error reported on stderr (see
/// [`render`]) and status 1.
pub fn finish<E: Into<anyhow::Error>>(program: &str, result: Result<ExitCode, E>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            let e: anyhow::Error = e.into();
            eprint!("{}", render(program, e.as_ref()));
            if backtrace_requested() {
                eprintln!("backtrace:\n{}", e.backtrace());
            }
            ExitCode::from(FAILURE)
        }
    }
}

/// `program: what failed: cause`, then each hint on a line of its own
/// (`hint: …`), every line ending in a newline.
pub fn render(program: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let (message, hints) = summarize(err);
    let mut out = format!("{program}: {message}\n");
    for hint in hints {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

/// The error chain as one message (links already contained in the link
/// before them dropped, the rest joined by `": "`) and the hints split
/// off its links.
pub fn summarize(err: &(dyn std::error::Error + 'static)) -> (String, Vec<String>) {
    let mut kept: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        let repeated = kept.last().is_some_and(|last| last.contains(text.trim()));
        if !repeated && !text.trim().is_empty() && !described_above(e, kept.is_empty()) {
            kept.push(text);
        }
        current = e.source();
    }
    let mut parts = Vec::new();
    let mut hints: Vec<String> = Vec::new();
    for text in &kept {
        let (what, hint) = split_hint(text);
        parts.push(what.to_string());
        if let Some(h) = hint.filter(|h| !hints.iter().any(|seen| seen == h)) {
            hints.push(h.to_string());
        }
    }
    (parts.join(": "), hints)
}

/// Whether `e` is a rustls error below another error: every error that
/// wraps one already says in words what it means
/// ([`crate::tls::describe_tls_error`]), while rustls's own text shows
/// Rust `Debug` forms (`DnsName("a.test")`).
fn described_above(e: &(dyn std::error::Error + 'static), top: bool) -> bool {
    !top && e.is::<rustls::Error>()
}

/// Splits `text` at its first `"; "` outside parentheses, brackets and
/// backquotes: what failed, and what to do about it.
pub fn split_hint(text: &str) -> (&str, Option<&str>) {
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            ';' if !quoted && depth == 0 && text[i + 1..].starts_with(' ') => {
                let hint = text[i + 2..].trim();
                return (text[..i].trim_end(), (!hint.is_empty()).then_some(hint));
            }
            _ => {}
        }
    }
    (text, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct FileErr {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("phase 1 failed: {0}")]
    struct Phase(#[source] FileErr);

    #[test]
    fn a_chain_that_repeats_itself_is_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::new(Phase(FileErr {
            path: "certs/ca.pem".into(),
            source: io,
        }))
        .context("pki-server cannot start");
        let text = render("pki-server", err.as_ref());
        assert_eq!(
            text,
            "pki-server: pki-server cannot start: phase 1 failed: certs/ca.pem: No such file\n"
        );
    }

    #[test]
    fn the_hint_goes_on_its_own_line() {
        let err = anyhow::anyhow!(
            "k.key: private key is accessible to group or others (mode 644); run `chmod 600 k.key`"
        )
        .context("cannot load the identity");
        assert_eq!(
            render("pki-client", err.as_ref()),
            "pki-client: cannot load the identity: k.key: private key is accessible to group or others (mode 644)\nhint: run `chmod 600 k.key`\n"
        );
    }

    #[test]
    fn a_semicolon_inside_parentheses_or_backquotes_is_no_hint() {
        assert_eq!(split_hint("a (b; c) d"), ("a (b; c) d", None));
        assert_eq!(split_hint("run `a; b`"), ("run `a; b`", None));
        assert_eq!(
            split_hint("failed (x; y); do z"),
            ("failed (x; y)", Some("do z"))
        );
    }
}

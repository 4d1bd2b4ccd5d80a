//! The names the CA itself answers to, reserved for it.
//!
//! A party that held a certificate for the CA's own name or address could
//! pose as the CA to anyone it can reach on that address, and collect
//! enrollment tokens. Two defences, either of which suffices alone:
//!
//! 1. the enrolling parties accept the CA's endpoint only with the
//!    CA-endpoint EKU, which no certificate issued to others carries
//!    (`pki_common::tls::verify::CaEndpointVerifier`);
//! 2. the names here are never issued to anyone but the CA: minting a
//!    token for one is refused, and so is issuing (enrolling or renewing)
//!    a certificate that names one, in case the token was minted before
//!    the name was reserved.
//!
//! The reserved names are the defaults of `pki-ca serve --name`
//! ([`DEFAULT_ENDPOINT_NAMES`]), always, plus every name a serving CA in
//! this directory has presented: `pki-ca serve` adds its `--name`s to the
//! file [`CaPaths::endpoint_names`](crate::CaPaths::endpoint_names), one per
//! line, which `pki-ca token` (another process, which does not know the
//! serve flags) reads. Names are only ever added, because clients may
//! still be configured with a name the CA answered to before; to release
//! one, stop the CA, delete its line and restart.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use pki_common::files::{self, FileError};

use crate::policy::normalize_name;
use crate::{Ca, CaError};

/// The names `pki-ca serve` presents unless told otherwise; reserved even
/// if a CA never served them, since they are what the documentation and
/// the other programs' defaults point at.
pub const DEFAULT_ENDPOINT_NAMES: &[&str] = &["ca.pki.test", "127.0.0.1"];

/// A name was refused because the CA itself answers to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is reserved: the CA itself answers to it (reserved names: {reserved}), and a \
     certificate for it would let its holder pose as the CA; use another name for this party"
)]
pub struct NameReserved {
    pub name: String,
    pub reserved: String,
}

/// The set of reserved names, normalised as the policy normalises names.
#[derive(Debug, Clone, Default)]
pub struct ReservedNames {
    names: BTreeSet<String>,
}

/// `name` in the form reserved names are compared in: lower case, no
/// trailing dot, and an IPv4-mapped IPv6 address as its IPv4 address.
fn canonical(name: &str) -> String {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_else(|| v6.to_string()),
        Ok(ip) => ip.to_string(),
        Err(_) => name,
    }
}

impl ReservedNames {
    /// The defaults plus the names recorded in `path` (absent: none).
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let mut reserved = ReservedNames::default();
        reserved.extend(DEFAULT_ENDPOINT_NAMES.iter().copied());
        match std::fs::read_to_string(path) {
            Ok(text) => reserved.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#')),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(FileError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        Ok(reserved)
    }

    fn extend<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        self.names.extend(names.map(canonical));
    }

    /// Every reserved name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.names.iter().cloned().collect()
    }

    /// Whether `name` is reserved, or is a wildcard covering a reserved
    /// DNS name.
    pub fn covers(&self, name: &str) -> bool {
        let name = canonical(name);
        if self.names.contains(&name) {
            return true;
        }
        let Some(suffix) = name.strip_prefix("*.") else {
            return false;
        };
        self.names.iter().any(|r| {
            r.split_once('.')
                .is_some_and(|(label, rest)| rest == suffix && !label.is_empty())
        })
    }

    /// Refuses `names` if any is reserved.
    pub fn check(&self, names: &[String]) -> Result<(), NameReserved> {
        match names.iter().find(|n| self.covers(n)) {
            Some(name) => Err(NameReserved {
                name: name.clone(),
                reserved: self.names().join(", "),
            }),
            None => Ok(()),
        }
    }
}

impl Ca {
    /// Reserves `names`, the names the CA's own TLS certificate is about to
    /// carry: adds them to the reserved set and to the file other `pki-ca`
    /// processes read. Called by the listener before it issues that
    /// certificate.
    pub fn reserve_endpoint_names(&self, names: &[String]) -> Result<(), CaError> {
        let names = names
            .iter()
            .map(|n| normalize_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let path = self.paths.endpoint_names();
        let mut reserved = self.reserved.write().unwrap_or_else(|p| p.into_inner());
        // Re-read the file: another CA process over this directory may have
        // added names since this one opened it.
        let mut merged = ReservedNames::load(&path)?;
        merged.names.extend(reserved.names.iter().cloned());
        merged.extend(names.iter().map(String::as_str));
        if merged.names != reserved.names || !path.exists() {
            let mut text = String::from(
                "# Names the CA answers to, reserved for it (see `pki-ca serve --name`).\n",
            );
            for name in &merged.names {
                text.push_str(name);
                text.push('\n');
            }
            files::write_public(&path, &text)?;
        }
        *reserved = merged;
        Ok(())
    }

    /// The names reserved for the CA's own endpoint.
    pub fn reserved_names(&self) -> Vec<String> {
        self.reserved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .names()
    }

    /// Refuses `names` if any is reserved for the CA: the check at token
    /// minting and again at issuance.
    pub(crate) fn refuse_reserved(&self, names: &[String]) -> Result<(), NameReserved> {
        self.reserved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .check(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved(extra: &[&str]) -> ReservedNames {
        let mut r = ReservedNames::default();
        r.extend(DEFAULT_ENDPOINT_NAMES.iter().chain(extra).copied());
        r
    }

    #[test]
    fn the_ca_names_in_any_spelling_are_reserved() {
        let r = reserved(&["ca.example.org"]);
        for name in [
            "ca.pki.test",
            "CA.PKI.test",
            "ca.pki.test.",
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "ca.example.org",
            "*.pki.test",
            "*.example.org",
        ] {
            assert!(r.covers(name), "{name} should be reserved");
        }
        for name in [
            "app.pki.test",
            "127.0.0.2",
            "::1",
            "*.app.pki.test",
            "pki.test",
        ] {
            assert!(!r.covers(name), "{name} should not be reserved");
        }
    }

    #[test]
    fn check_names_the_reserved_name() {
        let err = reserved(&[])
            .check(&["app.pki.test".into(), "127.0.0.1".into()])
            .unwrap_err();
        assert_eq!(err.name, "127.0.0.1");
        assert!(err.reserved.contains("ca.pki.test"));
    }

    #[test]
    fn load_reads_the_file_and_keeps_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names");
        assert_eq!(ReservedNames::load(&path).unwrap().names().len(), 2);
        std::fs::write(&path, "# comment\n\nCA.Example.org\n").unwrap();
        let r = ReservedNames::load(&path).unwrap();
        assert!(r.covers("ca.example.org") && r.covers("ca.pki.test"));
    }
}

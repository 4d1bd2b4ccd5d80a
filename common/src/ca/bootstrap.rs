//! The first contact with the CA: fetching its root, given only the root's
//! SHA-256 fingerprint, as `step ca bootstrap --fingerprint` does.
//!
//! # Why the fingerprint is the only trust input
//!
//! Every other request to the CA is verified against `ca.pem`. A new host
//! has no `ca.pem` yet, and copying a file between hosts is the step users
//! get wrong; a 64-digit fingerprint can be read off one screen and typed
//! or pasted on another. So the first request is made without trusting
//! anything, and its answer is used only if it proves itself:
//!
//! 1. `GET /v1/root` carries nothing secret (no token, no CSR, no key), so
//!    making it over a TLS connection that is not yet trusted discloses
//!    nothing to whoever answers.
//! 2. The root served is kept only if its SHA-256 equals the fingerprint
//!    the operator copied from the CA host (`pki-ca init` prints it). SHA-256
//!    is collision- and second-preimage-resistant, so a matching root is,
//!    byte for byte, the root the operator saw: as good as copying
//!    `ca.pem` by hand, and nothing less.
//! 3. The TLS certificate the endpoint presented in that same handshake
//!    must then verify against that root exactly as every later
//!    connection's will (chain, validity, the CA's name, serverAuth and the
//!    CA-endpoint EKU, see [`CaEndpointVerifier`]). The root is public, so
//!    anyone could relay it; only the CA itself holds a certificate and
//!    key that pass this check, so the URL given really is the CA's.
//!
//! On any failure nothing is written, and a mismatch names both
//! fingerprints. A `ca.pem` already present is never replaced: if it does
//! not match the fingerprint the refusal says so, since this host then
//! trusts another root than the operator expects.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tracing::info;

use super::api;
use super::client::CaClient;
use super::enroll::{retry_while_unreachable, EnrollError, Retry};
use crate::files::{self, FileError};
use crate::tls::verify::{not_ca_endpoint, CaEndpointVerifier};

/// A certificate's SHA-256 fingerprint: the hash of its DER encoding, as
/// `openssl x509 -noout -fingerprint -sha256` computes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate (DER).
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }
}

/// Printed as openssl prints it (`AB:CD:…`, upper case with colons), so a
/// user can compare it with `openssl x509 -fingerprint -sha256` by eye.
impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&hex.join(":"))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SHA256:{self}")
    }
}

/// Reads the forms users paste: `AB:CD:…` (openssl, `pki-ca init`),
/// plain hex (`sha256sum`-style), either case, with a `SHA256:` prefix or
/// openssl's whole `sha256 Fingerprint=…` line.
impl std::str::FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| BadFingerprint {
            given: given.to_string(),
            reason: reason.to_string(),
        };
        let mut text = given.trim();
        if let Some((_, after)) = text.split_once('=') {
            text = after;
        }
        if let Some(rest) = text
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256:"))
            .and_then(|_| text.get(7..))
        {
            text = rest;
        }
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        if digits.len() != 64 {
            return Err(bad(&format!(
                "it has {} hex digits, a SHA-256 fingerprint has 64",
                digits.len()
            )));
        }
        let bytes = hex::decode(&digits).map_err(|_| bad("it is not hexadecimal"))?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(Fingerprint(out))
    }
}

/// A fingerprint that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the root fingerprint {given:?}: {reason}; give it as `pki-ca init` printed it (AB:CD:…), or as `openssl x509 -in ca.pem -noout -fingerprint -sha256` prints it on the CA host")]
pub struct BadFingerprint {
    pub given: String,
    pub reason: String,
}

/// Why the root could not be fetched or kept.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the CA at {url} serves a root with SHA-256 fingerprint {served}, but the expected fingerprint (--root-fingerprint) is {expected}; nothing was written to {path}. Either the fingerprint was mistyped, or something other than your CA answers at {url}: compare with the fingerprint `pki-ca init` printed on the CA host, and check --ca-url")]
    Mismatch {
        url: String,
        served: Fingerprint,
        expected: Fingerprint,
        path: String,
    },
    #[error("{path} holds a root with SHA-256 fingerprint {found}, but the expected fingerprint (--root-fingerprint) is {expected}; this host already trusts another root, which was left as it is. Check the fingerprint, or remove {path} to fetch the root again")]
    ExistingMismatch {
        path: String,
        found: Fingerprint,
        expected: Fingerprint,
    },
    #[error("the CA at {url} answered GET {} with something other than a root certificate ({reason}); check --ca-url", api::ROOT)]
    BadAnswer { url: String, reason: String },
    #[error("the CA at {url} serves the root with the expected fingerprint, but its own TLS certificate does not verify against that root ({reason}); another process may be answering at {url}, so nothing was written: check --ca-url")]
    Endpoint { url: String, reason: String },
    #[error(transparent)]
    Ca(#[from] EnrollError),
    #[error(transparent)]
    File(#[from] FileError),
}

/// Makes sure `path` holds the root whose fingerprint is `expected`, and
/// answers it.
///
/// A root already at `path` is kept if it matches and refused if it does
/// not (it is never replaced). Without one, the root is fetched from the
/// CA at `ca_url` (whose TLS certificate must name `ca_name`, by default
/// the URL's host), checked (see the module doc) and written to `path`.
/// While the CA cannot be reached, this retries as enrollment does.
pub async fn ensure_root(
    path: &Path,
    ca_url: &str,
    ca_name: Option<&str>,
    expected: &Fingerprint,
    retry: Retry,
) -> Result<CertificateDer<'static>, BootstrapError> {
    if path.exists() {
        let root = files::read_cert(path)?;
        let found = Fingerprint::of(&root);
        if found != *expected {
            return Err(BootstrapError::ExistingMismatch {
                path: path.display().to_string(),
                found,
                expected: *expected,
            });
        }
        return Ok(root);
    }
    let root = fetch_root(ca_url, ca_name, expected, retry)
        .await
        .map_err(|e| match e {
            BootstrapError::Mismatch {
                url,
                served,
                expected,
                ..
            } => BootstrapError::Mismatch {
                url,
                served,
                expected,
                path: path.display().to_string(),
            },
            other => other,
        })?;
    files::write_public(path, &files::cert_to_pem(&root))?;
    info!(
        "fetched the CA root from {ca_url} (SHA-256 {expected}, as expected) and wrote {}",
        path.display()
    );
    Ok(root)
}

/// Fetches the root from the CA at `ca_url` and answers it only if its
/// fingerprint is `expected` and the endpoint's own TLS certificate
/// verifies against it. Writes nothing.
pub async fn fetch_root(
    ca_url: &str,
    ca_name: Option<&str>,
    expected: &Fingerprint,
    retry: Retry,
) -> Result<CertificateDer<'static>, BootstrapError> {
    let seen = Arc::new(FirstContact::default());
    let ca =
        CaClient::with_verifier(ca_url, ca_name, seen.clone(), None).map_err(EnrollError::from)?;
    let response =
        retry_while_unreachable(ca_url, "bootstrap", retry, || ca.get(api::ROOT)).await?;
    let bad = |reason: String| BootstrapError::BadAnswer {
        url: ca_url.to_string(),
        reason,
    };
    if !response.status.is_success() {
        return Err(bad(format!("HTTP {}", response.status)));
    }
    let root = CertificateDer::from_pem_slice(&response.body)
        .map_err(|e| bad(format!("no PEM certificate: {e}")))?;
    let served = Fingerprint::of(&root);
    if served != *expected {
        return Err(BootstrapError::Mismatch {
            url: ca_url.to_string(),
            served,
            expected: *expected,
            path: String::new(),
        });
    }
    seen.verify_against(&root)
        .map_err(|reason| BootstrapError::Endpoint {
            url: ca_url.to_string(),
            reason,
        })?;
    Ok(root)
}

/// What the endpoint presented in the handshake of the first contact.
#[derive(Debug)]
struct Presented {
    end_entity: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    server_name: ServerName<'static>,
}

/// The certificate check of the first contact, when there is no root yet
/// to check against: it records what the endpoint presented and lets the
/// handshake go on, so that [`fetch_root`] can check it against the root
/// once that root has matched the fingerprint ([`FirstContact::verify_against`]).
///
/// The handshake signature is still verified (by the one provider), so the
/// peer proves it holds the key of the certificate it presented. Nothing
/// read over this connection is trusted before both checks pass, and
/// nothing secret is sent over it (see the module doc).
#[derive(Debug, Default)]
struct FirstContact {
    presented: Mutex<Option<Presented>>,
}

impl FirstContact {
    /// Verifies the recorded chain as [`CaEndpointVerifier`] verifies the
    /// CA's endpoint on every later connection.
    fn verify_against(&self, root: &CertificateDer<'_>) -> Result<(), String> {
        let guard = self.presented.lock().unwrap_or_else(|p| p.into_inner());
        let presented = guard
            .as_ref()
            .ok_or_else(|| "no TLS certificate was presented".to_string())?;
        let verifier = CaEndpointVerifier::new(root).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(
                &presented.end_entity,
                &presented.intermediates,
                &presented.server_name,
                &[],
                UnixTime::now(),
            )
            .map_err(|e| match not_ca_endpoint(&e) {
                Some(impostor) => impostor.to_string(),
                None => crate::tls::describe_tls_error(&e),
            })?;
        Ok(())
    }
}

impl ServerCertVerifier for FirstContact {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Provisional: judged by `verify_against` before anything read
        // over this connection is used.
        *self.presented.lock().unwrap_or_else(|p| p.into_inner()) = Some(Presented {
            end_entity: end_entity.clone().into_owned(),
            intermediates: intermediates
                .iter()
                .map(|c| c.clone().into_owned())
                .collect(),
            server_name: server_name.to_owned(),
        });
        Ok(ServerCertVerified::assertion())
    }

    crate::tls::verify::provider_signatures!();
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    #[test]
    fn fingerprints_read_as_users_paste_them() {
        let fp = Fingerprint::of(b"root");
        let colons = fp.to_string();
        assert_eq!(colons.len(), 32 * 3 - 1);
        let plain = colons.replace(':', "");
        for form in [
            colons.clone(),
            colons.to_lowercase(),
            plain.clone(),
            plain.to_lowercase(),
            format!("SHA256:{colons}"),
            format!("sha256 Fingerprint={colons}"),
            format!("  {plain}\n"),
        ] {
            assert_eq!(form.parse::<Fingerprint>(), Ok(fp), "{form}");
        }
        let non_ascii = format!("sha2é{plain}");
        for bad in [
            "",
            "AB:CD",
            &plain[..62],
            &format!("{}zz", &plain[..62]),
            &non_ascii,
        ] {
            let err = bad.parse::<Fingerprint>().unwrap_err().to_string();
            assert!(err.contains("pki-ca init"), "{err}");
        }
    }
}

//! CSRs made the way an operator makes them (with `openssl req`), and their
//! issuance, for the tests of what the CA does with what it is sent.

use std::path::Path;

use pki_common::cert::Profile;
use rustls::pki_types::CertificateDer;

use crate::refusals::cert_of;
use crate::{openssl_ok, TestPki};

/// Writes `contents` to `dir/name` and returns the path as a string, ready
/// for an openssl command line.
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

/// Makes a CSR with `openssl req`; `key_args` choose the key, `extra` adds
/// arguments such as `-addext`. The key and CSR stay in `dir` as
/// `<tag>.key` and `<tag>.csr`.
pub fn openssl_csr(dir: &Path, tag: &str, key_args: &[&str], cn: &str, extra: &[&str]) -> Vec<u8> {
    let key = dir.join(format!("{tag}.key"));
    let csr = dir.join(format!("{tag}.csr"));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-new", "-nodes"];
    args.extend_from_slice(key_args);
    args.extend_from_slice(&[
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
        "-subj",
        &subj,
    ]);
    args.extend_from_slice(extra);
    openssl_ok(&args);
    std::fs::read(csr).unwrap()
}

/// The `openssl req` arguments for a fresh P-256 key, the usual choice.
pub fn p256() -> Vec<&'static str> {
    vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
}

/// Runs `openssl verify -x509_strict -purpose sslserver` on the PEM file
/// `pem` against the root file `root`, with the CA's intermediates (in
/// `intermediates/` next to the root) as untrusted certificates, and
/// returns its output: the independent check that an issued server
/// certificate is one a strict TLS client accepts. Fails the test if
/// openssl exits non-zero.
pub fn openssl_verify_server(root: &str, pem: &str) -> String {
    let dir = std::path::Path::new(root).with_file_name("intermediates");
    let bundle: String = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let untrusted = format!("{pem}.untrusted.pem");
    std::fs::write(&untrusted, bundle).unwrap();
    openssl_ok(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        root,
        "-untrusted",
        &untrusted,
        pem,
    ])
}

impl TestPki {
    /// Mints a token for `name` with `profile` and has the CA sign `csr`
    /// with it over HTTPS; fails the test unless a certificate comes back.
    pub async fn issue(
        &self,
        csr: Vec<u8>,
        name: &str,
        profile: Profile,
    ) -> CertificateDer<'static> {
        let token = self.token(&[name], profile);
        cert_of(&self.post_csr(Some(&token), csr).await)
    }

    /// An openssl-made P-256 CSR for `app.pki.test` (files tagged `tag` in
    /// the CA's directory), signed with a fresh server token: the common
    /// case of "the CA issues an ordinary certificate".
    pub async fn issue_app_csr(&self, tag: &str) -> CertificateDer<'static> {
        let csr = openssl_csr(self.dir(), tag, &p256(), "app.pki.test", &[]);
        self.issue(csr, "app.pki.test", Profile::Server).await
    }
}

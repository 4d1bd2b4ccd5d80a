//! PEM files on disk.
//!
//! Private keys are standard PKCS#8 PEM, which openssl reads, written with
//! mode 0600 and replaced atomically (write to a temporary file, then
//! rename) so that a crash never leaves half a key behind. A key file that
//! other users can read is refused rather than used.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Reads a PEM object (a CSR, a CRL) or, if the bytes do not start with a
/// PEM header, takes them as DER. Network bodies and files come in either
/// form; which one is decided here only.
pub fn pem_or_der<T>(bytes: &[u8]) -> Result<T, String>
where
    T: PemObject + From<Vec<u8>>,
{
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        T::from_pem_slice(bytes).map_err(|e| format!("bad PEM: {e}"))
    } else {
        Ok(T::from(bytes.to_vec()))
    }
}

/// Errors reading or writing PEM files, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no {what} found in the file (expected PEM)")]
    NoPem { path: PathBuf, what: &'static str },
    #[error(
        "{path}: private key is accessible to group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyTooOpen { path: PathBuf, mode: u32 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` atomically with the given mode.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            // The mode given at creation is filtered by the umask; set it
            // explicitly so a key is never left more open than asked.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Writes a private key (PEM text) with mode 0600.
pub fn write_private_key(path: &Path, pem: &str) -> Result<(), FileError> {
    write_atomic(path, pem.as_bytes(), 0o600)
}

/// Writes public material (certificates, CRLs) with mode 0644.
pub fn write_public(path: &Path, pem: &str) -> Result<(), FileError> {
    write_atomic(path, pem.as_bytes(), 0o644)
}

/// Reads a private key file as PEM text, refusing one that group or others
/// can read.
pub fn read_private_key_pem(path: &Path) -> Result<String, FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(io_err(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(FileError::KeyTooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    fs::read_to_string(path).map_err(io_err(path))
}

/// Reads a private key file into the DER form rustls takes.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    let pem = read_private_key_pem(path)?;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| FileError::NoPem {
        path: path.to_path_buf(),
        what: "private key",
    })
}

/// Reads every certificate in a PEM file, in order.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(FileError::NoPem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Reads the first certificate in a PEM file.
pub fn read_cert(path: &Path) -> Result<CertificateDer<'static>, FileError> {
    let mut certs = read_certs(path)?;
    Ok(certs.swap_remove(0))
}

/// PEM-encodes a certificate.
pub fn cert_to_pem(der: &CertificateDer<'_>) -> String {
    pem_encode("CERTIFICATE", der.as_ref())
}

/// PEM-encodes DER bytes under the given label, 64 columns as openssl does.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_open_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_private_key(
            &path,
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read_private_key_pem(&path).is_ok());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_key_pem(&path).unwrap_err();
        assert!(
            matches!(err, FileError::KeyTooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn pem_round_trips_through_the_pki_types_parser() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        let parsed = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(parsed.as_ref(), &der[..]);
    }
}

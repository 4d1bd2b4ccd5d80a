//! PEM files on disk.
//!
//! Private keys are standard PKCS#8 PEM, which openssl reads, written with
//! mode 0600 and replaced atomically (write to a temporary file, then
//! rename) so that a crash never leaves half a key behind, and a symlink
//! planted by another user is never followed. A key file that
//! other users can read is refused rather than used.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::NamedTempFile;

/// Reads a PEM object (a CSR, a CRL) or, if the bytes do not start with a
/// PEM header, takes them as DER. Network bodies and files come in either
/// form; which one is decided here only.
///
/// The error is a short sentence: the PEM parser's own error carries the
/// offending line as a byte array, which a user cannot read and which
/// would fill a log line with whatever a caller sent.
pub fn pem_or_der<T>(bytes: &[u8]) -> Result<T, String>
where
    T: PemObject + From<Vec<u8>>,
{
    use rustls::pki_types::pem::Error as E;
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        T::from_pem_slice(bytes).map_err(|e| {
            match e {
                E::NoItemsFound => {
                    "the PEM holds no object of the expected kind (check its BEGIN line)"
                }
                E::Base64Decode(_) => "the PEM's base64 body is damaged",
                // A missing line break between the header and the body
                // (`curl -d` strips them all) lands here.
                _ => "the PEM is malformed (line breaks stripped? `curl -d` does that)",
            }
            .to_string()
        })
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
    #[error(
        "{path}: token file is accessible to group or others (mode {mode:o}); an unspent token is as secret as a key: run `chmod 600 {path}`"
    )]
    TokenFileTooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: the token file is empty; put the token from `pki-ca token` in it")]
    EmptyToken { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` atomically with the given mode.
///
/// The temporary file is created by `tempfile` in the target's own
/// directory (so the rename stays on one file system) under a random name
/// with `O_CREAT | O_EXCL`: a file or symlink planted in advance at a
/// guessed name is never opened, let alone followed, so another local user
/// cannot redirect a key into a file of their choosing. The mode is set
/// before the first byte is written, the file is fsynced, renamed over the
/// target (a symlink at the target is replaced, not followed), and the
/// directory is fsynced so that the rename itself survives a crash. On any
/// error the temporary file is removed.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            dir
        }
        None => Path::new("."),
    };
    let mut tmp = new_temp_file(dir, path, mode).map_err(io_err(dir))?;
    tmp.write_all(contents).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    // On failure `persist` hands the file back; dropping it removes it.
    tmp.persist(path).map_err(|e| FileError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir).map_err(io_err(dir))
}

/// A new, empty temporary file next to `target`, already restricted to
/// `mode`: a key's bytes never sit in a file others could open.
fn new_temp_file(dir: &Path, target: &Path, mode: u32) -> std::io::Result<NamedTempFile> {
    let prefix = format!(
        ".{}.",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    let tmp = builder.tempfile_in(dir)?;
    #[cfg(unix)]
    {
        // The mode given at creation is filtered by the umask; set it
        // explicitly so a file is never left more open (or closed) than asked.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(tmp)
}

/// Makes a rename in `dir` durable (fsync of the directory itself).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes a private key (PEM text) with mode 0600.
pub fn write_private_key(path: &Path, pem: &str) -> Result<(), FileError> {
    write_atomic(path, pem.as_bytes(), 0o600)
}

/// Writes public material (certificates, CRLs) with mode 0644.
pub fn write_public(path: &Path, pem: &str) -> Result<(), FileError> {
    write_atomic(path, pem.as_bytes(), 0o644)
}

/// The permission bits of `path` if group or others have any access to
/// it; `None` if only the owner does (or on systems without modes).
fn open_to_others(path: &Path) -> Result<Option<u32>, FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(io_err(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Ok(Some(mode));
        }
    }
    Ok(None)
}

/// Reads a private key file as PEM text, refusing one that group or others
/// can read.
pub fn read_private_key_pem(path: &Path) -> Result<String, FileError> {
    if let Some(mode) = open_to_others(path)? {
        return Err(FileError::KeyTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    fs::read_to_string(path).map_err(io_err(path))
}

/// The warning both enrolling programs log when `--token` is given on the
/// command line; one wording, so scripts and tests can look for it.
pub const TOKEN_ON_COMMAND_LINE: &str = "--token on the command line can be read by every local user (ps, /proc/<pid>/cmdline); pass the token in the PKI_TOKEN environment variable or in a file with --token-file (mode 0600) instead";

/// Reads an enrollment token from a file (`--token-file`), the way to pass
/// one without putting it in the process table. Like a key file it must be
/// private to its owner; surrounding whitespace (the newline `pki-ca token
/// > file` leaves) is dropped.
pub fn read_token_file(path: &Path) -> Result<String, FileError> {
    if let Some(mode) = open_to_others(path)? {
        return Err(FileError::TokenFileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(FileError::EmptyToken {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
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

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";

    /// A victim file another user wants overwritten with our key.
    fn victim(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let victim = dir.join("victim.txt");
        fs::write(&victim, "victim's own content\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        victim
    }

    fn assert_private_regular_file(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::symlink_metadata(path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{} is not a regular file",
            path.display()
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(path).unwrap(), KEY);
    }

    /// The attack on the old code: it wrote to `<path minus extension>.tmp<pid>`
    /// with O_CREAT|O_TRUNC, following a symlink planted there, so the key
    /// went into the victim file (and the victim was truncated).
    #[test]
    fn a_symlink_planted_at_the_old_temporary_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = victim(dir.path());
        let path = dir.path().join("server.key");
        let old_tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();

        write_private_key(&path, KEY).unwrap();

        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "victim's own content\n"
        );
        assert_private_regular_file(&path);
        // The planted link is left alone, still pointing at the victim.
        assert_eq!(fs::read_link(&old_tmp).unwrap(), victim);
        // Nothing else is left behind: the key, the victim, the link.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    /// A symlink at the key's own path is replaced by the rename, never
    /// written through.
    #[test]
    fn a_symlink_at_the_target_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = victim(dir.path());
        let path = dir.path().join("client.key");
        std::os::unix::fs::symlink(&victim, &path).unwrap();

        write_private_key(&path, KEY).unwrap();

        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "victim's own content\n"
        );
        assert_private_regular_file(&path);
    }

    #[test]
    fn public_files_get_0644_whatever_the_umask_and_replace_old_content() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("ca.pem");
        write_public(&path, "old").unwrap();
        write_public(&path, "new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_names_the_directory_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The "directory" is a regular file: nothing can be created in it.
        let not_dir = dir.path().join("plain");
        fs::write(&not_dir, "x").unwrap();
        let err = write_private_key(&not_dir.join("k.key"), KEY).unwrap_err();
        assert!(err.to_string().contains("plain"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn token_files_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "abc.def\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "abc.def");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_token_file(&path).unwrap_err();
        assert!(
            matches!(err, FileError::TokenFileTooOpen { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");

        fs::write(&path, " \n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_token_file(&path).unwrap_err();
        assert!(matches!(err, FileError::EmptyToken { .. }), "{err}");
    }

    #[test]
    fn pem_round_trips_through_the_pki_types_parser() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        let parsed = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(parsed.as_ref(), &der[..]);
    }
}

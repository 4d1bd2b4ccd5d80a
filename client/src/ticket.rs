//! The session ticket `pki-client` keeps between runs (`--ticket`,
//! default `client.ticket` beside the root `--ca`, mode 0600), so repeated
//! `pki-client request` runs register once and resume after that, on
//! whichever server replica they reach.
//!
//! The file holds the ticket as the server sealed it (opaque here) and
//! the session's resumption secret, which the client derived itself in
//! step 5 and which never travels: whoever reads the file can resume the
//! session, hence its mode.

use std::path::Path;

use zeroize::Zeroizing;

use pki_common::proto::handshake::ClientTicket;

/// Where `pki-client` keeps its ticket by default: `client.ticket` beside
/// the root it trusts, as the CRL cache (`ca.crls.pem`) is, so clients of
/// different PKIs on one host never share one.
pub fn default_path(root: &Path) -> std::path::PathBuf {
    root.parent()
        .map(|d| d.join("client.ticket"))
        .unwrap_or_else(|| std::path::PathBuf::from("client.ticket"))
}

/// Reads the ticket at `path` if it is there, unexpired, and for this
/// server name and client id; anything else means registering anew.
pub fn load(path: &Path, server_name: &str, client_id: &str) -> Option<ClientTicket> {
    let text = Zeroizing::new(pki_common::files::read_private_key_pem(path).ok()?);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .map(str::to_string)
    };
    let secret = Zeroizing::new(hex::decode(field("secret")?).ok()?);
    let ticket = ClientTicket {
        server_name: field("server")?,
        session_id: hex::decode(field("session")?).ok()?.try_into().ok()?,
        expires_at: field("expires")?.parse().ok()?,
        ticket: hex::decode(field("ticket")?).ok()?,
        secret: Zeroizing::new(secret.as_slice().try_into().ok()?),
    };
    let usable = ticket.server_name.eq_ignore_ascii_case(server_name)
        && field("client")?.eq_ignore_ascii_case(client_id)
        && ticket.expires_at > pki_common::unix_now();
    usable.then_some(ticket)
}

/// Saves `ticket` for `client_id` at `path`, mode 0600.
pub fn save(
    path: &Path,
    client_id: &str,
    ticket: &ClientTicket,
) -> Result<(), pki_common::files::FileError> {
    let text = Zeroizing::new(format!(
        "# pki-client session ticket: resumes the session; as secret as a key\nserver {}\nclient {client_id}\nsession {}\nexpires {}\nticket {}\nsecret {}\n",
        ticket.server_name,
        hex::encode(ticket.session_id),
        ticket.expires_at,
        hex::encode(&ticket.ticket),
        hex::encode(ticket.secret.as_ref()),
    ));
    pki_common::files::write_private_key(path, &text)
}

/// Removes a ticket the server refused, so the next run registers.
pub fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

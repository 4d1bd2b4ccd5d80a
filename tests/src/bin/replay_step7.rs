//! `replay-step7`: a teaching tool that plays the attacker of the replay
//! exercise in `docs/tutorial.md`. It is not part of the system.
//!
//! It registers with the server as an honest client would (steps 3 to 6),
//! sends one `memo` request (step 7) and records that frame, byte for
//! byte; then it opens a *new* TLS connection, resumes the same session
//! there with its ticket (steps 3R and 4R), and sends the recorded frame
//! again, as an attacker who captured it (and the ticket) could (inside
//! TLS, which an attacker on the network could not even do: this is the
//! strongest replay, by someone who had the frame in the clear). The
//! server must refuse it: the second connection's request keys come from
//! its own TLS exporter and fresh nonces, so the frame does not open, and
//! the answer is alert 25 (`NotThisConnection`).
//!
//! Usage (after `make run-all`, with the CA and the server running):
//!
//! ```text
//! target/debug/replay-step7 --server 127.0.0.1:9443 --ca-url https://127.0.0.1:8443
//!     [--name app.pki.test] [--dir certs]
//! ```
//!
//! It prints the server's answer to the replay and exits 0 when the server
//! refused it with alert 7, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use pki_client::{ClientConfig, ClientTls, Connection, CrlSource};
use pki_common::ca::enroll::KeyFiles;
use pki_common::proto::handshake::ClientTicket;
use pki_common::proto::message::ServiceRequest;
use pki_common::proto::{AlertCode, Kind, ProtoError};

/// The flags, each `--flag value`, with the defaults of `make run-all`.
struct Args {
    server: String,
    name: String,
    ca_url: String,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        server: "127.0.0.1:9443".into(),
        name: "app.pki.test".into(),
        ca_url: "https://127.0.0.1:8443".into(),
        dir: PathBuf::from("certs"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => args.server = value,
            "--name" => args.name = value,
            "--ca-url" => args.ca_url = value,
            "--dir" => args.dir = PathBuf::from(value),
            other => return Err(format!("unknown flag {other}; see the usage in the source")),
        }
    }
    Ok(args)
}

/// A client configuration as `pki-client` would build it from the files
/// in `--dir`.
fn config(args: &Args) -> Result<ClientConfig, String> {
    let ca = args.dir.join("ca.pem");
    let root = pki_common::files::read_cert(&ca).map_err(|e| e.to_string())?;
    let files = KeyFiles {
        key: args.dir.join("client.key"),
        cert: args.dir.join("client.pem"),
    };
    let identity = pki_client::load_identity(&files, &root).map_err(|e| e.to_string())?;
    let client_id = identity
        .as_ref()
        .and_then(|i| i.info.dns_names.first().cloned())
        .unwrap_or_else(|| "client1".into());
    Ok(ClientConfig {
        server: args.server.clone(),
        name: args.name.clone(),
        ca,
        client_id,
        crl: CrlSource::Fetch {
            ca_url: args.ca_url.clone(),
            ca_name: None,
        },
        identity,
        ..ClientConfig::default()
    })
}

/// Connection 1: register and send one request, honestly; answers the
/// step-7 frame as it went on the wire (inside TLS).
async fn record(
    tls: &ClientTls,
    config: &ClientConfig,
) -> Result<(pki_common::proto::Frame, ClientTicket), String> {
    let mut conn = Connection::connect_with(tls, config)
        .await
        .map_err(|e| e.to_string())?;
    let mut session = conn.register().await.map_err(|e| e.to_string())?;
    let ticket = session
        .ticket()
        .cloned()
        .ok_or("the grant carried no ticket")?;
    let frame = session
        .request(&ServiceRequest {
            name: "memo".into(),
            body: Vec::new(),
            timestamp: pki_common::unix_now(),
        })
        .map_err(|e| e.to_string())?;
    let reply = conn
        .send_recorded(&frame)
        .await
        .map_err(|e| e.to_string())?;
    let clock = pki_common::proto::handshake::Clock {
        now: pki_common::unix_now(),
        skew: config.skew_secs,
    };
    let response = session
        .on_response(&reply, clock)
        .map_err(|e| e.to_string())?;
    println!(
        "connection 1: registered, sent step 7 ({} bytes recorded), answer: {:?}",
        frame.encode().len(),
        String::from_utf8_lossy(&response.data)
    );
    conn.close().await;
    Ok((frame, ticket))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    pki_common::logging::init();
    let outcome = async {
        let args = parse_args()?;
        let config = config(&args)?;
        let tls = ClientTls::prepare(&config)
            .await
            .map_err(|e| e.to_string())?;
        let (recorded, ticket) = record(&tls, &config).await?;
        let mut conn = Connection::connect_with(&tls, &config)
            .await
            .map_err(|e| e.to_string())?;
        conn.resume(&ticket).await.map_err(|e| e.to_string())?;
        println!("connection 2: resumed the same session with its ticket (fresh nonces, a new TLS exporter)");
        let reply = conn
            .send_recorded(&recorded)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(reply.require(Kind::Response).map(|_| ()))
    }
    .await;
    match outcome {
        Ok(Err(ProtoError::PeerAlert { code, message }))
            if code == AlertCode::NotThisConnection =>
        {
            println!("connection 2: the server refused the replayed step-7 frame: alert {} ({code:?}): {message}", code.code());
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("connection 2: refused, but not as a replay: {e}");
            ExitCode::FAILURE
        }
        Ok(Ok(())) => {
            println!("connection 2: the server ANSWERED the replayed frame; it must refuse it");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("replay-step7: {e}");
            ExitCode::FAILURE
        }
    }
}

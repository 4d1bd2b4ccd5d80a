//! The tutorial stays true, and `--wire` never shows a secret.
//!
//! - `docs/tutorial.md` marks the blocks it promises with
//!   `<!-- tutorial-test: KIND -->`: `daemons` (started in the background),
//!   `env` (run before every other block), `check` (must exit 0) and
//!   `exercise` (must fail); a `check` or `exercise` is followed by a
//!   `text` block, every line of which must appear in the output (`…`
//!   stands for anything). The test runs them against a fresh
//!   `scripts/run-all.sh`, in a directory laid out as the repository is
//!   (`certs/`, `certs-root/`, `target/debug/`), on ephemeral ports.
//! - `--wire` on both programs shows frames, the exporter, transcript hashes
//!   and key fingerprints, and no byte of any key: this test drives a
//!   registration by its own implementation of `docs/protocol.md` §6–8, so
//!   it knows the session's keys, checks that the fingerprints the server
//!   prints are those of these very keys, and greps every log for them and
//!   for the private keys in the files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use pki_common::proto::message::{
    decode, encode, Hello, Registration, Response, Sealed, ServerProof, ServiceRequest,
    SessionGranted, SessionSealed,
};
use pki_common::proto::seal::key_fingerprint;
use pki_common::proto::{read_frame, write_frame, Frame, Kind, EXPORTER_LABEL};
use pki_tests::observed::{text, Daemons};
use pki_tests::{binary, bounded, free_port, wait_for_port};

const MEMO: &str = "take cis3319 class this morning";

// ------------------------------------------------------------ the tutorial

/// One marked block of the tutorial.
#[derive(Debug)]
struct Block {
    kind: String,
    script: String,
    expect: Vec<String>,
    line: usize,
}

/// The fenced block starting after line `from`: its info string and body,
/// and the line after it.
fn fenced(lines: &[&str], from: usize) -> Option<(String, String, usize)> {
    let start = (from..lines.len()).find(|&i| lines[i].starts_with("```"))?;
    let info = lines[start].trim_start_matches('`').to_string();
    let end = (start + 1..lines.len()).find(|&i| lines[i].starts_with("```"))?;
    Some((info, lines[start + 1..end].join("\n"), end + 1))
}

/// Every marked block of `doc`, in order.
fn blocks(doc: &str) -> Vec<Block> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(kind) = line
            .strip_prefix("<!-- tutorial-test: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let (info, script, next) = fenced(&lines, i + 1).expect("a marker without a block");
        assert_eq!(info, "sh", "line {}: a marked block must be sh", i + 1);
        let expect = match kind {
            "check" | "exercise" => {
                let (info, body, _) = fenced(&lines, next).expect("no expected output");
                assert_eq!(info, "text", "line {}: expected output must be text", i + 1);
                body.lines().map(str::to_string).collect()
            }
            _ => Vec::new(),
        };
        out.push(Block {
            kind: kind.to_string(),
            script,
            expect,
            line: i + 1,
        });
    }
    out
}

/// Whether one line of `output` holds every fragment of `expected`
/// (split at `…`), in order.
fn shows(output: &str, expected: &str) -> bool {
    output.lines().any(|line| {
        let mut rest = line;
        expected.split('…').all(|part| match rest.find(part) {
            Some(at) => {
                rest = &rest[at + part.len()..];
                true
            }
            None => false,
        })
    })
}

/// The tutorial's directory: `certs/` and `certs-root/` from run-all, and
/// `target/debug` pointing at the built programs.
struct Lab {
    dir: tempfile::TempDir,
    ca: SocketAddr,
    app: SocketAddr,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        let bin = binary("pki-ca").parent().unwrap().to_path_buf();
        std::os::unix::fs::symlink(bin, dir.path().join("target/debug")).unwrap();
        let port = |_| SocketAddr::from(([127, 0, 0, 1], free_port()));
        let [ca, app] = [0; 2].map(port);
        Lab { dir, ca, app }
    }

    /// The tutorial's ports, replaced by this lab's.
    fn localize(&self, script: &str) -> String {
        script
            .replace("127.0.0.1:8443", &self.ca.to_string())
            .replace("127.0.0.1:9443", &self.app.to_string())
    }

    fn bash(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env_remove("PKI_CERTS_DIR")
            .env_remove("PKI_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }
}

/// `scripts/run-all.sh` in the lab, on other ports than the daemons'.
async fn run_all(lab: &Lab) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/run-all.sh");
    let mut cmd = lab.bash(&format!("exec bash {}", script.display()));
    cmd.env("BIN", "target/debug")
        .env("CERTS", "certs")
        .env("ROOT_DIR", "certs-root")
        .env("CA_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SERVER_LISTEN", format!("127.0.0.1:{}", free_port()));
    bounded(tokio::task::spawn_blocking(move || cmd.output().unwrap()))
        .await
        .unwrap()
}

/// Kills the daemons it holds when dropped, so a failing test leaves no
/// process behind.
struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts every `… &` line of the daemons blocks and waits for both ports.
async fn start_daemons(lab: &Lab, blocks: &[Block]) -> Background {
    let mut started = Background(Vec::new());
    for block in blocks.iter().filter(|b| b.kind == "daemons") {
        for line in block.script.lines().filter(|l| l.trim_end().ends_with('&')) {
            let command = lab.localize(line.trim_end().trim_end_matches('&'));
            let log = std::fs::File::create(lab.dir.path().join("daemons.log")).unwrap();
            let child = lab
                .bash(&format!("exec {command}"))
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap();
            started.0.push(child);
        }
    }
    wait_for_port(lab.ca, Duration::from_secs(30)).await;
    wait_for_port(lab.app, Duration::from_secs(30)).await;
    started
}

/// Runs one check or exercise block after the env blocks, and asserts what
/// the tutorial says of it.
async fn run_block(lab: &Lab, env: &str, block: &Block) {
    let script = lab.localize(&format!("{env}\n{}", block.script));
    let mut cmd = lab.bash(&script);
    let out = bounded(tokio::task::spawn_blocking(move || cmd.output().unwrap()))
        .await
        .unwrap();
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let context = format!(
        "docs/tutorial.md line {} ({}):\n{}\n--- output:\n{output}",
        block.line, block.kind, block.script
    );
    match block.kind.as_str() {
        "check" => assert!(out.status.success(), "must succeed: {context}"),
        _ => assert!(!out.status.success(), "must be refused: {context}"),
    }
    for expected in block.expect.iter().filter(|l| !l.trim().is_empty()) {
        let expected = lab.localize(expected);
        assert!(shows(&output, &expected), "missing {expected:?}: {context}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_tutorial_produces_what_it_says() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tutorial.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let blocks = blocks(&doc);
    let count = |kind: &str| blocks.iter().filter(|b| b.kind == kind).count();
    // Every exercise the tutorial promises is there, and marked.
    assert!(count("exercise") >= 9, "{blocks:#?}");
    assert!(count("check") >= 6, "{blocks:#?}");

    let lab = Lab::new();
    let out = run_all(&lab).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), MEMO);
    let _daemons = start_daemons(&lab, &blocks).await;
    let env: Vec<&str> = blocks
        .iter()
        .filter(|b| b.kind == "env")
        .map(|b| b.script.as_str())
        .collect();
    let env = env.join("\n");
    for block in blocks
        .iter()
        .filter(|b| b.kind == "check" || b.kind == "exercise")
    {
        run_block(&lab, &env, block).await;
    }
}

#[test]
fn the_marker_parser_finds_blocks_and_their_expected_output() {
    let doc = "x\n<!-- tutorial-test: exercise -->\n```sh\nfalse\n```\n\nsays\n\n```text\nrefused … here\n```\n";
    let found = blocks(doc);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].script, "false");
    assert_eq!(found[0].expect, vec!["refused … here".to_string()]);
    assert!(shows("a refused it here", "refused … here"));
    assert!(!shows("here refused", "refused … here"));
}

// ------------------------------------------------------------ --wire

/// The keys of one registration, derived by this test from
/// `docs/protocol.md` §7, independently of `pki_common::proto`.
struct KnownKeys {
    shared: Vec<u8>,
    prk: Vec<u8>,
    keys: Vec<(&'static str, [u8; 32])>,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn expand(prk: &[u8], label: &str, th: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::from_prk(prk)
        .unwrap()
        .expand(&[label.as_bytes(), th].concat(), &mut out)
        .unwrap();
    out
}

/// AES-256-GCM as `docs/protocol.md` §8 says: nonce = direction, zeros,
/// seq; associated data = "pki-auth v1", kind, direction, seq, context.
fn gcm(key: &[u8; 32], seal: bool, kind: u8, dir: u8, context: &[u8], data: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[0] = dir;
    let aad = [
        b"pki-auth v1".as_slice(),
        &[kind, dir],
        &0u64.to_be_bytes(),
        context,
    ]
    .concat();
    let cipher = Aes256Gcm::new(key.into());
    let payload = Payload {
        msg: data,
        aad: &aad,
    };
    let nonce = Nonce::from_slice(&nonce);
    match seal {
        true => cipher.encrypt(nonce, payload).unwrap(),
        false => cipher.decrypt(nonce, payload).unwrap(),
    }
}

/// Steps 3 to 8 with the server at `addr`, by hand: answers the keys.
async fn register_by_hand(
    addr: SocketAddr,
    root: rustls::pki_types::CertificateDer<'static>,
) -> KnownKeys {
    let config = pki_common::tls::client_config(&root).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("app.pki.test").unwrap(), tcp)
        .await
        .unwrap();
    let mut e = [0u8; 32];
    let conn = tls.get_ref().1;
    conn.export_keying_material(&mut e, EXPORTER_LABEL, None)
        .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let secret = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
    let mut client_share = [0u8; 32];
    client_share.copy_from_slice(secret.compute_public_key().unwrap().as_ref());
    let now = pki_common::unix_now();
    let hello = Hello {
        expected_server: "app.pki.test".into(),
        client_share,
        nonce: [7; 32],
        timestamp: now,
    };
    let f3 = Frame::new(Kind::Hello, encode(&hello).unwrap());
    write_frame(&mut tls, &f3).await.unwrap();
    let f4 = read_frame(&mut tls, 65536).await.unwrap();
    let proof: ServerProof = decode(&f4.payload, "proof").unwrap();
    let peer = UnparsedPublicKey::new(&X25519, proof.server_share);
    let shared = agreement::agree_ephemeral(secret, &peer, |s| s.to_vec()).unwrap();
    let th1 = sha256(&[&e, &f3.encode(), &f4.encode()]);
    let (prk, _) = Hkdf::<Sha256>::extract(Some(&th1), &shared);
    let reg_c2s = expand(&prk, "pki-auth v1 registration c2s", &th1);
    let reg_s2c = expand(&prk, "pki-auth v1 registration s2c", &th1);
    let registration = Registration {
        client_id: "client1".into(),
        client_addr: "127.0.0.1:1".into(),
        timestamp: now,
    };
    let ct = gcm(&reg_c2s, true, 5, 1, &th1, &encode(&registration).unwrap());
    let f5 = Frame::new(
        Kind::Registration,
        encode(&Sealed {
            seq: 0,
            ciphertext: ct,
        })
        .unwrap(),
    );
    write_frame(&mut tls, &f5).await.unwrap();
    let f6 = read_frame(&mut tls, 65536).await.unwrap();
    let sealed: Sealed = decode(&f6.payload, "grant").unwrap();
    let granted: SessionGranted = decode(
        &gcm(&reg_s2c, false, 6, 2, &th1, &sealed.ciphertext),
        "grant",
    )
    .unwrap();
    let th2 = sha256(&[&th1, &f5.encode(), &f6.encode()]);
    let ses_c2s = expand(&prk, "pki-auth v1 session c2s", &th2);
    let ses_s2c = expand(&prk, "pki-auth v1 session s2c", &th2);
    let request = ServiceRequest {
        name: "memo".into(),
        body: vec![],
        timestamp: now,
    };
    let ct = gcm(
        &ses_c2s,
        true,
        7,
        1,
        &granted.session_id,
        &encode(&request).unwrap(),
    );
    let sealed = SessionSealed {
        session_id: granted.session_id,
        seq: 0,
        ciphertext: ct,
    };
    write_frame(
        &mut tls,
        &Frame::new(Kind::ServiceRequest, encode(&sealed).unwrap()),
    )
    .await
    .unwrap();
    let f8 = read_frame(&mut tls, 65536).await.unwrap();
    let sealed: Sealed = decode(&f8.payload, "response").unwrap();
    let response: Response = decode(
        &gcm(
            &ses_s2c,
            false,
            8,
            2,
            &granted.session_id,
            &sealed.ciphertext,
        ),
        "response",
    )
    .unwrap();
    assert_eq!(
        response.data,
        MEMO.as_bytes(),
        "the hand-derived keys are the server's"
    );
    KnownKeys {
        shared,
        prk: prk.to_vec(),
        keys: vec![
            ("K_reg_c2s", reg_c2s),
            ("K_reg_s2c", reg_s2c),
            ("K_ses_c2s", ses_c2s),
            ("K_ses_s2c", ses_s2c),
        ],
    }
}

/// The secret bytes of a PKCS#8 private key file: the whole DER and, for
/// an EC key, its private scalar.
fn private_key_secrets(path: &Path) -> Vec<Vec<u8>> {
    let der = PrivateKeyDer::from_pem_file(path).unwrap();
    let der = der.secret_der().to_vec();
    let mut out = vec![der.clone()];
    // ECPrivateKey: version 1 (02 01 01), then the scalar (04 20 <32 bytes>).
    if let Some(at) = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
    {
        out.push(der[at + 5..at + 37].to_vec());
    }
    out
}

/// Every way a secret could be printed: hex (either case) of the whole and
/// of every 8-byte window, base64 of the whole.
fn printed_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ];
    forms.extend(secret.windows(8).map(hex::encode));
    forms
}

/// Enrolls client1.pki.test into the daemons' directory.
fn enroll_client(daemons: &Daemons) {
    let d = daemons.dir.path().to_str().unwrap();
    let token = Command::new(binary("pki-ca"))
        .args([
            "--dir",
            d,
            "token",
            "--name",
            "client1.pki.test",
            "--profile",
            "client",
        ])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", text(&token.stderr));
    let enrolled = Command::new(binary("pki-client"))
        .args([
            "--dir",
            d,
            "--ca-url",
            &daemons.ca_url(),
            "enroll",
            "--as",
            "client1.pki.test",
        ])
        .env("PKI_TOKEN", text(&token.stdout).trim())
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{}", text(&enrolled.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_shows_frames_hashes_and_fingerprints_but_never_a_key() {
    bounded(async {
        let mut daemons = Daemons::start(&[], &["--wire"], &[]).await;
        enroll_client(&daemons);
        let d = daemons.dir.path().to_path_buf();
        let client = Command::new(binary("pki-client"))
            .args([
                "--dir",
                d.to_str().unwrap(),
                "--server",
                &daemons.server_addr.to_string(),
            ])
            .args(["--ca-url", &daemons.ca_url(), "--wire", "request", "memo"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let client_log = text(&client.stderr);
        assert!(client.status.success(), "{client_log}");
        let known = register_by_hand(daemons.server_addr, daemons.root()).await;
        let (_, server_log) = daemons.stop();

        for (log, side) in [(&client_log, "client"), (&server_log, "server")] {
            for line in [
                "wire · TLS exporter E (label EXPORTER-pki-auth-v1",
                "wire · sent step ",
                "wire · received step ",
                "AES-256-GCM ciphertext and tag (",
                "wire · TH1 = ",
                "wire · TH2 = ",
                ": public key SHA-256 ",
            ] {
                assert!(
                    log.contains(line),
                    "the {side}'s --wire lacks {line:?}:\n{log}"
                );
            }
        }
        // The fingerprints the server printed are those of the keys this
        // test derived for its own registration: the lines are about the
        // real keys, and a key appears only so.
        for (name, key) in &known.keys {
            let shown = format!("{name} (fingerprint {})", hex::encode(key_fingerprint(key)));
            assert!(
                server_log.contains(&shown),
                "no {shown:?} in:\n{server_log}"
            );
        }
        let mut secrets: Vec<Vec<u8>> = known.keys.iter().map(|(_, k)| k.to_vec()).collect();
        secrets.extend([known.shared.clone(), known.prk.clone()]);
        let mut key_files = vec![d.join("server.key"), d.join("client.key")];
        key_files.extend(intermediate_keys(&d));
        assert!(key_files.len() >= 3, "{key_files:?}");
        for file in &key_files {
            secrets.extend(private_key_secrets(file));
            let pem = std::fs::read_to_string(file).unwrap();
            for body in pem
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
            {
                assert!(
                    !client_log.contains(body) && !server_log.contains(body),
                    "{file:?}"
                );
            }
        }
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            for form in printed_forms(secret) {
                assert!(
                    !client_log.contains(&form),
                    "the client printed secret bytes {form}"
                );
                assert!(
                    !server_log.contains(&form),
                    "the server printed secret bytes {form}"
                );
            }
        }
    })
    .await
}

/// The intermediates' private keys in the CA directory `dir`.
fn intermediate_keys(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("intermediates"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "key"))
                .collect()
        })
        .unwrap_or_default()
}

//! Attacks on how the programs are operated (issue #11, item 12): another
//! local user reading enrollment tokens from the process table, and token
//! files that other users can read.
//!
//! (Item 13, a symlink planted at `write_atomic`'s temporary path, is
//! attacked by the unit tests in `common/src/files.rs`.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pki_common::cert::Profile;
use pki_common::files::TOKEN_ON_COMMAND_LINE;
use pki_tests::{binary, bounded, free_port, wait_for_port, Reaped, TestPki};

/// How long a step of `run-all.sh` may take before the test gives up.
const STEP_BOUND: Duration = Duration::from_secs(30);

// ------------------------------------------------------------ the script

/// A `BIN` directory for `scripts/run-all.sh`: the real `pki-ca` and
/// `pki-server`, and a `pki-client` wrapper that records its own
/// `/proc/<pid>/cmdline` and the `PKI_TOKEN` it was given, then runs the
/// real client. Before a `request` it waits for the test's go-ahead (the
/// file `$ATTACK_GATE`, or the test's directory vanishing when a failed
/// test drops it), which holds the script at the point where the CA and
/// the enrolled server are both running, so the test can read the process
/// table at leisure instead of racing the script.
fn wrapped_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["pki-ca", "pki-server"] {
        std::os::unix::fs::symlink(binary(name), bin.join(name)).unwrap();
    }
    let wrapper = format!(
        r#"#!/usr/bin/env bash
log="$ATTACK_LOG/client.$$"
tr '\0' '\n' < /proc/$$/cmdline > "$log.cmdline"
printf '%s' "${{PKI_TOKEN:-}}" > "$log.token"
for arg in "$@"; do
  if [ "$arg" = request ]; then
    touch "$ATTACK_LOG/request-waiting"
    for _ in $(seq 600); do
      [ -e "$ATTACK_GATE" ] || [ ! -d "$ATTACK_LOG" ] && break
      sleep 0.05
    done
  fi
done
exec "{real}" "$@"
"#,
        real = binary("pki-client").display()
    );
    let path = bin.join("pki-client");
    std::fs::write(&path, wrapper).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Lets a held `run-all.sh` go on, also when the test fails half-way, so
/// the script stops its CA and server itself.
struct Gate(PathBuf);

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

/// A process of ours: its pid, arguments and environment.
struct Proc {
    pid: u32,
    cmdline: Vec<String>,
    environ: Vec<String>,
}

/// Every process whose command line this user can read (all of them, as
/// `ps` shows), with the environment where it is ours to read.
fn process_table() -> Vec<Proc> {
    let split = |bytes: Vec<u8>| -> Vec<String> {
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            Some(Proc {
                pid,
                cmdline: split(cmdline),
                environ: split(environ),
            })
        })
        .collect()
}

/// The running `pki-server` started by the script for `certs`, found by
/// the `PKI_CERTS_DIR` the script exports.
fn script_server(certs: &Path) -> Option<Proc> {
    let real = std::fs::canonicalize(binary("pki-server")).unwrap();
    let marker = format!("PKI_CERTS_DIR={}", certs.display());
    process_table().into_iter().find(|p| {
        std::fs::read_link(format!("/proc/{}/exe", p.pid))
            .ok()
            .as_ref()
            == Some(&real)
            && p.environ.contains(&marker)
    })
}

async fn wait_for_file(path: &Path) {
    let start = tokio::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < STEP_BOUND,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The attack: while `make run-all`'s flow runs, another local user lists
/// the process table (`ps -ef`, i.e. every `/proc/<pid>/cmdline`) and looks
/// for the enrollment tokens. The script used to pass `--token <t>` to
/// `pki-client enroll` and `pki-server`. Now no command line carries a
/// token or `--token`; the tokens travel in `PKI_TOKEN`, which the test
/// (as the same user) checks they really did, so the test is not vacuous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_keeps_the_tokens_out_of_the_process_table() {
    bounded(async {
        let work = tempfile::tempdir().unwrap();
        let (certs, log) = (work.path().join("certs"), work.path().join("log"));
        std::fs::create_dir(&log).unwrap();
        let gate = Gate(work.path().join("go"));
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let script = Command::new("bash")
            .arg("scripts/run-all.sh")
            .current_dir(repo)
            .env("BIN", wrapped_bin(work.path()))
            .env("CERTS", &certs)
            // The offline root, kept inside the temporary directory.
            .env("ROOT_DIR", certs.join("offline-root"))
            .env("CA_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("SERVER_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("ATTACK_LOG", &log)
            .env("ATTACK_GATE", &gate.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let script = tokio::task::spawn_blocking(move || script.wait_with_output());

        // Held: the client enrolled, the server enrolled and listens, and
        // the client's request waits for the gate.
        wait_for_file(&log.join("request-waiting")).await;
        let server = script_server(&certs).expect("the script's pki-server is running");
        let mut client_cmdlines = Vec::new();
        let mut tokens = Vec::new();
        for entry in std::fs::read_dir(&log).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("token") if !text.is_empty() => tokens.push(text),
                Some("cmdline") => client_cmdlines.push(text),
                _ => {}
            }
        }
        // What `ps` shows for the server, and showed for the client's
        // enroll and request while they ran: no `--token` anywhere.
        assert!(
            !server.cmdline.iter().any(|a| a.starts_with("--token")),
            "pki-server's command line carries a token: {:?}",
            server.cmdline
        );
        assert_eq!(client_cmdlines.len(), 2, "enroll and request");
        for cmdline in &client_cmdlines {
            assert!(
                !cmdline.lines().any(|a| a.starts_with("--token")),
                "pki-client's command line carries a token: {cmdline}"
            );
        }

        // The tokens did reach both programs, in their environment.
        let server_token = server
            .environ
            .iter()
            .find_map(|v| v.strip_prefix("PKI_TOKEN="))
            .expect("pki-server got its token in PKI_TOKEN");
        tokens.push(server_token.to_string());
        assert_eq!(
            tokens.len(),
            2,
            "pki-client enroll and pki-server each get a token in PKI_TOKEN: {tokens:?}"
        );
        assert!(
            tokens.iter().all(|t| t.starts_with("pkiet1.")),
            "{tokens:?}"
        );

        // Neither token is anywhere in the process table, nor was in the
        // client's command lines.
        for token in &tokens {
            for p in process_table() {
                assert!(
                    !p.cmdline.iter().any(|a| a.contains(token.as_str())),
                    "process {} shows a token in its command line: {:?}",
                    p.pid,
                    p.cmdline
                );
            }
            for cmdline in &client_cmdlines {
                assert!(!cmdline.contains(token.as_str()), "{cmdline}");
            }
        }

        drop(gate);
        let out = script.await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "take cis3319 class this morning\n"
        );
        // Tokens from the environment are not warned about.
        assert!(!stderr.contains(TOKEN_ON_COMMAND_LINE), "{stderr}");
    })
    .await
}

// ------------------------------------------------- the two binaries' flags

/// A directory for `pki-server --dir`, holding the CA root.
fn server_dir(pki: &TestPki) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(pki.root_path(), dir.path().join("ca.pem")).unwrap();
    dir
}

/// Writes `token` to a file with `mode`.
fn token_file(dir: &Path, token: &str, mode: u32) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// `pki-client … enroll <args>` against `pki`, writing into `dir`.
async fn client_enroll(
    pki: &TestPki,
    dir: &Path,
    args: &[&str],
    env: Option<(&str, &str)>,
) -> Output {
    let mut cmd = tokio::process::Command::new(binary("pki-client"));
    cmd.arg("--ca")
        .arg(pki.root_path())
        .args(["--ca-url", &pki.ca_url()])
        .arg("--cert")
        .arg(dir.join("client.pem"))
        .arg("--key")
        .arg(dir.join("client.key"))
        .args(["enroll", "--as", "client1.pki.test"])
        .args(args)
        .env_remove("PKI_TOKEN")
        .env_remove("PKI_TOKEN_FILE")
        .stdin(Stdio::null());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

/// `pki-server` with `args` over `dir`, run until it exits.
async fn server_until_exit(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(binary("pki-server"))
        .arg("--dir")
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .env_remove("PKI_TOKEN")
        .env_remove("PKI_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

/// The warning is one WARN line naming the leak and the two safe ways.
fn assert_warned(stderr: &str) {
    let lines: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains(TOKEN_ON_COMMAND_LINE))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("WARN"), "{stderr}");
    assert!(
        TOKEN_ON_COMMAND_LINE.contains("/proc/<pid>/cmdline")
            && TOKEN_ON_COMMAND_LINE.contains("PKI_TOKEN")
            && TOKEN_ON_COMMAND_LINE.contains("--token-file")
    );
}

/// `--token` typed on the command line still works (compatibility) but
/// both programs warn that every local user can read it; the same token in
/// `PKI_TOKEN` draws no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_on_the_command_line_is_warned_about() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();

        let token = pki.token(&["client1.pki.test"], Profile::Client);
        let out = client_enroll(&pki, dir.path(), &["--token", &token], None).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_warned(&stderr);

        let token = pki.token(&["client1.pki.test"], Profile::Client);
        let out = client_enroll(
            &pki,
            dir.path(),
            &["--force"],
            Some(("PKI_TOKEN", token.as_str())),
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains(TOKEN_ON_COMMAND_LINE), "{stderr}");

        // The server warns before anything else, even when it then cannot
        // start (here: no CA root in its directory).
        let empty = tempfile::tempdir().unwrap();
        let out = server_until_exit(empty.path(), &["--token", "pkiet1.x.y"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_warned(&stderr);
        let mut cmd = tokio::process::Command::new(binary("pki-server"));
        let out = cmd
            .arg("--dir")
            .arg(empty.path())
            .env("PKI_TOKEN", "pkiet1.x.y")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("no CA root"), "{stderr}");
        assert!(!stderr.contains(TOKEN_ON_COMMAND_LINE), "{stderr}");
    })
    .await
}

/// The attack: the token file is left readable by others (mode 0644), so
/// another local user can copy the token and redeem it first. Both
/// programs refuse the file with `TokenFileTooOpen`'s message (the mode and
/// the `chmod 600` to run) before they contact the CA, so the token is not
/// spent: once the file is made private, the very same token enrolls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_readable_by_others_is_refused_and_the_token_not_spent() {
    bounded(async {
        let pki = TestPki::start().await;

        let dir = tempfile::tempdir().unwrap();
        let token = pki.token(&["client1.pki.test"], Profile::Client);
        let file = token_file(dir.path(), &token, 0o644);
        let file_arg = file.to_str().unwrap();
        let out = client_enroll(&pki, dir.path(), &["--token-file", file_arg], None).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!(
                "{file_arg}: token file is accessible to group or others (mode 644)"
            )) && stderr.contains(&format!("chmod 600 {file_arg}")),
            "{stderr}"
        );
        assert!(!dir.path().join("client.pem").exists());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = client_enroll(&pki, dir.path(), &["--token-file", file_arg], None).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dir.path().join("client.pem").exists());

        let dir = server_dir(&pki);
        let token = pki.token(&["app.pki.test"], Profile::Server);
        let file = token_file(dir.path(), &token, 0o604);
        let file_arg = file.to_str().unwrap();
        let out = server_until_exit(
            dir.path(),
            &["--ca-url", &pki.ca_url(), "--token-file", file_arg],
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!(
                "{file_arg}: token file is accessible to group or others (mode 604)"
            )) && stderr.contains(&format!("chmod 600 {file_arg}")),
            "{stderr}"
        );
        assert!(!dir.path().join("server.pem").exists());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_server_enrolls_with_token_file(&pki, dir.path(), &file).await;
    })
    .await
}

/// `pki-server --token-file` with a private file enrolls and listens, and
/// does not warn.
async fn assert_server_enrolls_with_token_file(pki: &TestPki, dir: &Path, file: &Path) {
    let listen = format!("127.0.0.1:{}", free_port());
    let _server = Reaped(
        Command::new(binary("pki-server"))
            .arg("--dir")
            .arg(dir)
            .args(["--listen", &listen, "--ca-url", &pki.ca_url()])
            .arg("--token-file")
            .arg(file)
            .env_remove("PKI_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(listen.parse().unwrap(), STEP_BOUND).await;
    let cert = pki_common::files::read_cert(&dir.join("server.pem")).unwrap();
    let info = pki_common::cert::CertInfo::parse(&cert).unwrap();
    assert_eq!(info.dns_names, ["app.pki.test"]);
}

/// An empty token file is refused with its own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_token_file_is_refused() {
    bounded(async {
        let pki = TestPki::start().await;
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), "", 0o600);
        let out = client_enroll(
            &pki,
            dir.path(),
            &["--token-file", file.to_str().unwrap()],
            None,
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("the token file is empty"), "{stderr}");
    })
    .await
}

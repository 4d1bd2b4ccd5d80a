//! A throwaway PostgreSQL server for the tests: `initdb` and `postgres`
//! from Debian's `postgresql` package (which `make test` installs when it
//! is missing), run as the unprivileged `postgres` user when the tests run
//! as root (PostgreSQL refuses root), in a temporary directory, on a free
//! loopback port. No test needs a PostgreSQL that is already running.
//!
//! A watchdog shell process stops the server and removes its directory
//! when the test process exits, however it exits: the test harness never
//! runs destructors of statics, and a failing test must not leave a
//! server behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the PostgreSQL programs are: Debian keeps them in
/// /usr/lib/postgresql/<version>/bin, outside PATH.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").exists());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: `make test` installs it (apt-get install postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command that runs as the `postgres` user when we are root.
fn as_pg(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A running PostgreSQL server.
pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
    /// Extra server settings (`-c name=value`).
    settings: Vec<String>,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The server shared by the tests of this test binary (each test takes a
/// database of its own with [`PgServer::database`]).
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(PgServer::start)
}

impl PgServer {
    /// initdb, then start, then wait until it answers.
    pub fn start() -> PgServer {
        Self::start_with(&[], Vec::new())
    }

    /// A server that speaks TLS with this certificate chain and key (PEM),
    /// and refuses clients that do not (`hostssl` only).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> PgServer {
        let files = [
            ("server.crt", cert_pem.to_string()),
            ("server.key", key_pem.to_string()),
            (
                "pg_hba.conf",
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n".to_string(),
            ),
        ];
        Self::start_with(&files, vec!["ssl=on".into()])
    }

    /// [`PgServer::start`] with `files` written into the data directory
    /// (mode 0600, owned by the server's user) and extra `settings`.
    pub fn start_with(files: &[(&str, String)], settings: Vec<String>) -> PgServer {
        let bin = pg_bin();
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("pki-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if root {
            let out = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "chown: {out:?}");
        }
        let init = as_pg(&bin.join("initdb"), root)
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        for (name, contents) in files {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join("data").join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if root {
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&path)
                    .output()
                    .unwrap();
            }
        }
        let server = PgServer {
            port: crate::free_port(),
            dir,
            bin,
            root,
            settings,
        };
        server.watch();
        server.run();
        server
    }

    /// Starts the server process (again, after [`PgServer::stop`]), and
    /// waits until it accepts queries.
    // The server outlives this call on purpose: `stop` or the watchdog
    // ends it, and the test process's exit reaps it.
    #[allow(clippy::zombie_processes)]
    pub fn run(&self) {
        as_pg(&self.bin.join("postgres"), self.root)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&self.dir)
            // A test server: durability against power loss is not what is
            // tested (a killed CA is; PostgreSQL survives that with or
            // without fsync).
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("postgres starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.psql("postgres", "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        panic!("PostgreSQL did not start within 30 s:\n{log}");
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): clients see
    /// their connections fail, as at a crash.
    pub fn stop(&self) {
        let out = as_pg(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate", "-w"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server and removes its directory when this process
    /// exits.
    #[allow(clippy::zombie_processes)]
    fn watch(&self) {
        let script = r#"while kill -0 "$0" 2>/dev/null; do sleep 0.5; done
pid=$(head -1 "$1/data/postmaster.pid" 2>/dev/null)
[ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
sleep 1
rm -rf "$1""#;
        Command::new("sh")
            .args(["-c", script])
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
    }

    /// Runs one SQL command on `db` with psql.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let psql = if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A fresh, empty database; answers its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

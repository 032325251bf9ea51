//! Test harness: runs the real `airlock` binary against the machine's PostgreSQL
//! (127.0.0.1:5432, trust, database `test`) and drives it with real clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-agent-token-0123456789";
pub const OUTSIDER_TOKEN: &str = "test-outsider-token-0123456789";
pub const ALICE_TOKEN: &str = "test-alice-token-0123456789";
pub const BOB_TOKEN: &str = "test-bob-token-0123456789";
pub const DIRECT: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub struct Gateway {
    child: Child,
    pub port: u16,
    pub api_port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The base configuration: one agent allowed on `pg-local`, one identity that is not.
pub fn base_config(dir: &Path, port: u16, api_port: u16, upstream: &str, extra: &str) -> String {
    format!(
        r#"
[gateway]
data_dir = "{dir}"
api_listen = "127.0.0.1:{api_port}"

[listeners]
postgres = "127.0.0.1:{port}"

[[service_accounts]]
name = "agent"
groups = ["ai-agents"]
agent = true
token_env = "AIRLOCK_TEST_TOKEN"

[[service_accounts]]
name = "outsider"
groups = ["contractors"]
token_env = "AIRLOCK_TEST_OUTSIDER_TOKEN"

[[connections]]
name = "pg-local"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
user = "postgres"
sslmode = "disable"
tags = {{ env = "dev" }}
allow_groups = ["ai-agents"]

{upstream}

{extra}
"#,
        dir = dir.display()
    )
}

impl Gateway {
    pub fn start(extra: &str) -> Gateway {
        Self::start_with("", extra, None)
    }

    /// `upstream`: extra `[[connections]]`; `shell_prefix`: e.g. a `ulimit` to run under.
    pub fn start_with(upstream: &str, extra: &str, shell_prefix: Option<&str>) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let api_port = free_port();
        let config = dir.path().join("airlock.toml");
        std::fs::write(
            &config,
            base_config(&dir.path().join("data"), port, api_port, upstream, extra),
        )
        .expect("write config");
        let bin = env!("CARGO_BIN_EXE_airlock");
        let mut cmd = match shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!(
                    "{prefix}; exec \"{bin}\" serve --config \"{}\"",
                    config.display()
                ));
                c
            }
            None => {
                let mut c = Command::new(bin);
                c.arg("serve").arg("--config").arg(&config);
                c
            }
        };
        let mut child = cmd
            .env("AIRLOCK_TEST_TOKEN", TOKEN)
            .env("AIRLOCK_TEST_OUTSIDER_TOKEN", OUTSIDER_TOKEN)
            .env("AIRLOCK_TEST_ALICE_TOKEN", ALICE_TOKEN)
            .env("AIRLOCK_TEST_BOB_TOKEN", BOB_TOKEN)
            .env("AIRLOCK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn airlock");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let gw = Gateway {
            child,
            port,
            api_port,
            dir,
            config,
            stdout,
        };
        gw.wait_ready();
        gw
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("airlock did not start listening on {}", self.port);
    }

    pub fn conninfo(&self, user: &str, token: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={token} dbname={db} sslmode=disable",
            self.port
        )
    }

    pub fn agent(&self) -> String {
        self.conninfo("agent", TOKEN, "pg-local")
    }

    /// Runs psql through the gateway as the agent with `-v ON_ERROR_STOP=0`, feeding `script` on stdin.
    pub fn psql(&self, script: &str) -> Output {
        psql(&self.agent(), script)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .output()
            .expect("run airlock cli")
    }

    /// Runs a CLI command that talks to the API, as the account owning `token`.
    pub fn api_cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .arg("--api")
            .arg(format!("http://127.0.0.1:{}", self.api_port))
            .env("AIRLOCK_TOKEN", token)
            .output()
            .expect("run airlock cli")
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data").join("audit.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs, as in a crash or an OOM kill.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn psql(conninfo: &str, script: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-v", "ON_ERROR_STOP=0", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql is installed");
    // Fed from a thread: psql may stop reading (e.g. after a FATAL error) while we write.
    let mut stdin = child.stdin.take().unwrap();
    let script = script.to_owned();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(script.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A rule holding the agent's unbounded `DELETE`s for a review by group `dba`.
pub const REVIEW_AGENT_DELETES: &str = r#"
[[rules]]
name = "review-deletes"
agents = true
operations = ["delete"]
without_where = true
action = "review"
reviewers = ["dba"]
"#;

/// A direct connection to the machine's PostgreSQL, bypassing the gateway (for setup and checks).
pub fn direct(sql: &str) -> String {
    let o = Command::new("psql")
        .args([DIRECT, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql");
    assert!(o.status.success(), "direct `{sql}` failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A unique name for tables etc. so tests can run in parallel.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

//! Harness for the MySQL tests: runs the real `airlock` binary with a mysql listener in front of
//! the machine's MariaDB (127.0.0.1:3306, root without password, database `test`) and drives it
//! with the real `mysql` client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-agent-token-0123456789";
pub const OUTSIDER_TOKEN: &str = "test-outsider-token-0123456789";
pub const DEV_TOKEN: &str = "test-dev-token-0123456789";
pub const ALICE_TOKEN: &str = "test-alice-token-0123456789";

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

pub fn config(dir: &std::path::Path, port: u16, api_port: u16, extra: &str) -> String {
    format!(
        r#"
[gateway]
data_dir = "{dir}"
api_listen = "127.0.0.1:{api_port}"

[listeners]
mysql = "127.0.0.1:{port}"

[[service_accounts]]
name = "agent"
groups = ["ai-agents"]
agent = true
token_env = "AIRLOCK_TEST_TOKEN"

[[service_accounts]]
name = "dev"
groups = ["engineers"]
token_env = "AIRLOCK_TEST_DEV_TOKEN"

[[service_accounts]]
name = "outsider"
groups = ["contractors"]
token_env = "AIRLOCK_TEST_OUTSIDER_TOKEN"

[[connections]]
name = "my-local"
type = "mysql"
address = "127.0.0.1:3306"
database = "test"
user = "root"
sslmode = "disable"
tags = {{ env = "dev" }}
allow_groups = ["ai-agents", "engineers"]

{extra}
"#,
        dir = dir.display()
    )
}

impl Gateway {
    pub fn start(extra: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let api_port = free_port();
        let config_path = dir.path().join("airlock.toml");
        std::fs::write(
            &config_path,
            config(&dir.path().join("data"), port, api_port, extra),
        )
        .expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("AIRLOCK_TEST_TOKEN", TOKEN)
            .env("AIRLOCK_TEST_OUTSIDER_TOKEN", OUTSIDER_TOKEN)
            .env("AIRLOCK_TEST_DEV_TOKEN", DEV_TOKEN)
            .env("AIRLOCK_TEST_ALICE_TOKEN", ALICE_TOKEN)
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
            config: config_path,
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_ok() {
                return gw;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("airlock did not start listening on {}", gw.port);
    }

    /// The real `mysql` client through the gateway, feeding `script` on stdin (`--force`: keep
    /// going after errors, like psql's ON_ERROR_STOP=0).
    pub fn mysql_as(&self, user: &str, token: &str, db: &str, script: &str) -> Output {
        mysql(
            &[
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                &format!("-u{user}"),
                &format!("-p{token}"),
                &format!("-D{db}"),
                "--force",
                "--batch",
                "--skip-ssl",
            ],
            script,
        )
    }

    /// Like [`Self::mysql`] with extra client options.
    pub fn mysql_raw(&self, extra: &[&str], script: &str) -> Output {
        let port = format!("-P{}", self.port);
        let pass = format!("-p{TOKEN}");
        let mut args = vec![
            "-h127.0.0.1",
            port.as_str(),
            "-uagent",
            pass.as_str(),
            "-Dmy-local",
            "--force",
            "--batch",
            "--skip-ssl",
        ];
        args.extend_from_slice(extra);
        mysql(&args, script)
    }

    pub fn mysql(&self, script: &str) -> Output {
        self.mysql_as("agent", TOKEN, "my-local", script)
    }

    pub fn url(&self, user: &str, token: &str) -> String {
        format!("mysql://{user}:{token}@127.0.0.1:{}/my-local", self.port)
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data").join("audit.log")).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .output()
            .expect("run airlock cli")
    }

    pub fn api_cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .arg("--api")
            .arg(format!("http://127.0.0.1:{}", self.api_port))
            .env("AIRLOCK_TOKEN", token)
            .output()
            .expect("run airlock cli")
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

pub fn mysql(args: &[&str], script: &str) -> Output {
    let mut child = Command::new("mysql")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mysql client is installed");
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

/// Straight to MariaDB, bypassing the gateway (setup and checks).
pub fn direct(sql: &str) -> String {
    let o = mysql(
        &[
            "-h127.0.0.1",
            "-P3306",
            "-uroot",
            "-Dtest",
            "--batch",
            "--skip-column-names",
        ],
        sql,
    );
    assert!(o.status.success(), "direct `{sql}` failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

//! Test harness: runs the real `airlock` binary against the machine's PostgreSQL
//! (127.0.0.1:5432, trust, database `test`) or MariaDB (127.0.0.1:3306, root without password,
//! database `test`) and drives it with the real clients (`psql`, `mysql`).
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-agent-token-0123456789";
pub const OUTSIDER_TOKEN: &str = "test-outsider-token-0123456789";
pub const ALICE_TOKEN: &str = "test-alice-token-0123456789";
pub const BOB_TOKEN: &str = "test-bob-token-0123456789";
pub const DEV_TOKEN: &str = "test-dev-token-0123456789";
pub const DIRECT: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// A port nothing listens on, outside the kernel's ephemeral range (32768–60999 here), so an
/// outgoing connection's source port cannot take it between this check and the gateway's bind.
/// Each test process walks its own stretch of 10000–32767 (seeded by its pid, so parallel test
/// binaries start far apart) and never hands a port out twice. CI once failed when `bind(0)`
/// gave two processes, and once the API and data listeners of one gateway, the same port.
pub fn free_port() -> u16 {
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut cursor =
        next.unwrap_or_else(|| (std::process::id().wrapping_mul(2_654_435_761)) % SPAN);
    for _ in 0..SPAN {
        let port = (LOW + cursor) as u16;
        cursor = (cursor + 1) % SPAN;
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(50),
            )
            .is_err();
        if free {
            *next = Some(cursor);
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

pub struct Gateway {
    child: Child,
    pub port: u16,
    pub api_port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// `[gateway]`, one listener, and the identities every test config has: an agent and an
/// outsider (not allowed anywhere).
fn common_config(dir: &Path, listener: &str, port: u16, api_port: u16) -> String {
    format!(
        r#"
[gateway]
data_dir = "{dir}"
api_listen = "127.0.0.1:{api_port}"

[listeners]
{listener} = "127.0.0.1:{port}"

[[service_accounts]]
name = "agent"
groups = ["ai-agents"]
agent = true
token_env = "AIRLOCK_TEST_TOKEN"

[[service_accounts]]
name = "outsider"
groups = ["contractors"]
token_env = "AIRLOCK_TEST_OUTSIDER_TOKEN"
"#,
        dir = dir.display()
    )
}

/// The base configuration: one agent allowed on `pg-local`, one identity that is not.
pub fn base_config(dir: &Path, port: u16, api_port: u16, upstream: &str, extra: &str) -> String {
    format!(
        r#"{common}
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
        common = common_config(dir, "postgres", port, api_port)
    )
}

impl Gateway {
    pub fn start(extra: &str) -> Gateway {
        Self::start_with("", extra, None)
    }

    /// `upstream`: extra `[[connections]]`; `shell_prefix`: e.g. a `ulimit` to run under.
    pub fn start_with(upstream: &str, extra: &str, shell_prefix: Option<&str>) -> Gateway {
        Self::launch(
            |data, port, api_port| base_config(data, port, api_port, upstream, extra),
            shell_prefix,
        )
    }

    /// A gateway with a `mysql` listener in front of the machine's MariaDB ([`mysql_config`]).
    pub fn start_mysql(extra: &str) -> Gateway {
        Self::launch(
            |data, port, api_port| mysql_config(data, port, api_port, extra),
            None,
        )
    }

    /// Writes the config `config(data_dir, listener_port, api_port)` returns, starts `airlock
    /// serve` on it and waits until the listener accepts connections.
    pub fn launch(
        mut config: impl FnMut(&Path, u16, u16) -> String,
        shell_prefix: Option<&str>,
    ) -> Gateway {
        // A port can still be taken between `free_port` and the gateway's bind (another test
        // process): the gateway then exits at once, and it is started again on other ports.
        for _ in 0..4 {
            if let Some(gw) = Self::try_launch(&mut config, shell_prefix) {
                return gw;
            }
        }
        panic!("airlock exited before listening four times; see its stderr above");
    }

    fn try_launch(
        config: &mut impl FnMut(&Path, u16, u16) -> String,
        shell_prefix: Option<&str>,
    ) -> Option<Gateway> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let api_port = free_port();
        let config_text = config(&dir.path().join("data"), port, api_port);
        let config = dir.path().join("airlock.toml");
        std::fs::write(&config, config_text).expect("write config");
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
            .env("AIRLOCK_TEST_DEV_TOKEN", DEV_TOKEN)
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
        let mut gw = Gateway {
            child,
            port,
            api_port,
            dir,
            config,
            stdout,
        };
        gw.wait_ready().then_some(gw)
    }

    /// Waits (at most 30 s) until the gateway accepts connections; false when it exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("airlock exited before listening on {}: {status}", self.port);
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "airlock did not start listening on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// The real `mysql` client through the gateway, feeding `script` on stdin (`--force`: keep
    /// going after errors, like psql's ON_ERROR_STOP=0).
    pub fn mysql_as(&self, user: &str, token: &str, db: &str, script: &str) -> Output {
        self.mysql_with(user, token, db, &[], script)
    }

    /// `mysql` as the agent on `my-local` with extra client options.
    pub fn mysql_raw(&self, extra: &[&str], script: &str) -> Output {
        self.mysql_with("agent", TOKEN, "my-local", extra, script)
    }

    fn mysql_with(
        &self,
        user: &str,
        token: &str,
        db: &str,
        extra: &[&str],
        script: &str,
    ) -> Output {
        let port = format!("-P{}", self.port);
        let user = format!("-u{user}");
        let pass = format!("-p{token}");
        let db = format!("-D{db}");
        let mut args = vec![
            "-h127.0.0.1",
            &port,
            &user,
            &pass,
            &db,
            "--force",
            "--batch",
            "--skip-ssl",
        ];
        args.extend_from_slice(extra);
        mysql(&args, script)
    }

    /// `mysql` as the agent on `my-local`.
    pub fn mysql(&self, script: &str) -> Output {
        self.mysql_as("agent", TOKEN, "my-local", script)
    }

    /// A MySQL driver URL for `my-local` through the gateway.
    pub fn url(&self, user: &str, token: &str) -> String {
        format!("mysql://{user}:{token}@127.0.0.1:{}/my-local", self.port)
    }

    /// The id of the first pending review, as reviewer `alice` lists them (waits up to 20 s).
    pub fn pending_review(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let o = self.api_cli(ALICE_TOKEN, &["reviews", "list", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if let Some(id) = v
                .as_array()
                .and_then(|a| a.first())
                .and_then(|r| r["id"].as_str())
            {
                return id.to_owned();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no pending review appeared");
    }

    /// The bootstrap admin token `serve` prints once on its first start.
    pub fn admin_token(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.split("bootstrap admin token").nth(1).map(str::to_owned))
            {
                return t.rsplit(' ').next().unwrap().trim().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no bootstrap admin token printed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// Everything a finished child with piped stdout and stderr wrote: stdout, then stderr.
pub fn exited_output(child: &mut Child) -> String {
    use std::io::Read;
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).expect("child stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut out).expect("child stderr");
    }
    out
}

/// The command's stdout, trimmed, after asserting it succeeded.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "command failed: {}", text(o));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The MySQL configuration: agents and engineers may use `my-local` (the machine's MariaDB).
pub fn mysql_config(dir: &Path, port: u16, api_port: u16, extra: &str) -> String {
    format!(
        r#"{common}
[[service_accounts]]
name = "dev"
groups = ["engineers"]
token_env = "AIRLOCK_TEST_DEV_TOKEN"

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
        common = common_config(dir, "mysql", port, api_port)
    )
}

/// The real `mysql` client with `args`, feeding `script` on stdin.
pub fn mysql(args: &[&str], script: &str) -> Output {
    let mut child = Command::new("mysql")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mysql client is installed");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = script.to_owned();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(script.as_bytes());
    });
    let out = child.wait_with_output().expect("mysql");
    let _ = feeder.join();
    out
}

/// Straight to MariaDB, bypassing the gateway (setup and checks).
pub fn direct_mysql(sql: &str) -> String {
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

/// A raw PostgreSQL frontend over plain TCP, for what libpq cannot be made to send (a Parse,
/// Bind and Execute of one statement in one pipeline, odd startup parameters).
pub struct RawPg {
    pub sock: std::net::TcpStream,
}

impl RawPg {
    /// Starts up as `user` on `database` with `params`, answers the password request with
    /// `token`, and returns the client once the gateway said ReadyForQuery; `Err` holds what the
    /// gateway answered instead (e.g. a FATAL error).
    pub fn connect(
        port: u16,
        user: &str,
        token: &str,
        database: &str,
        params: &[(&str, &str)],
    ) -> Result<RawPg, String> {
        use std::io::Write;
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", database)]
            .iter()
            .chain(params)
        {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        sock.write_all(&msg).unwrap();
        let mut raw = RawPg { sock };
        let (tag, _) = raw.read_message().ok_or("no answer to the startup")?;
        if tag != b'R' {
            return Err(format!("expected a password request, got {}", tag as char));
        }
        let mut pw = token.as_bytes().to_vec();
        pw.push(0);
        raw.send(b'p', &pw);
        let answers = raw.until_ready();
        if answers.iter().any(|(t, _)| *t == b'Z') {
            Ok(raw)
        } else {
            Err(answers
                .iter()
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .collect())
        }
    }

    pub fn send(&mut self, tag: u8, body: &[u8]) {
        use std::io::Write;
        let mut msg = vec![tag];
        msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        msg.extend_from_slice(body);
        self.sock.write_all(&msg).unwrap();
    }

    /// Parse (unnamed) + Bind (unnamed, no parameters) + Execute, without a Sync.
    pub fn extended(&mut self, sql: &str) {
        let mut parse = vec![0u8];
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]);
        self.send(b'P', &parse);
        self.send(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]);
        self.send(b'E', &[0, 0, 0, 0, 0]);
    }

    pub fn read_message(&mut self) -> Option<(u8, Vec<u8>)> {
        use std::io::Read;
        let mut head = [0u8; 5];
        self.sock.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.sock.read_exact(&mut body).ok()?;
        Some((head[0], body))
    }

    /// Every message up to and including ReadyForQuery (or the end of the connection).
    pub fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((tag, body)) = self.read_message() {
            out.push((tag, body));
            if tag == b'Z' {
                break;
            }
        }
        out
    }
}

/// The audit events (parsed lines' `event`) of the gateway's log.
pub fn audit_events(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.audit_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["event"].clone())
        .collect()
}

/// A Bind body: unnamed portal and statement, text-format `params` (`None`: NULL), text results.
pub fn bind_text(params: &[Option<&str>]) -> Vec<u8> {
    let mut b = vec![0u8, 0u8];
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    b
}

impl RawPg {
    /// Parse (unnamed) + Bind with text `params` + Execute + Sync, then every answer.
    pub fn execute_with(&mut self, sql: &str, params: &[Option<&str>]) -> Vec<(u8, Vec<u8>)> {
        let mut parse = vec![0u8];
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]);
        self.send(b'P', &parse);
        self.send(b'B', &bind_text(params));
        self.send(b'E', &[0, 0, 0, 0, 0]);
        self.send(b'S', &[]);
        self.until_ready()
    }
}

/// Agents may not write (the rule also denies what the classifier cannot parse); nothing else
/// is ruled, so engineers may do anything.
pub const READ_ONLY_AGENTS: &str = r#"
[[rules]]
name = "agents-read-only"
agents = true
writes = true
action = "deny"
message = "AI agents are read-only here"
"#;

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs` seconds.
pub fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One PostgreSQL startup + password exchange from the loopback address `source` (e.g.
/// `127.0.1.7`), as `user` on `pg-local`: the server's error text, "OK", or "closed".
pub fn try_login(port: u16, source: &str, user: &str, token: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let mut s = socket
            .connect(format!("127.0.0.1:{port}").parse().unwrap())
            .await
            .unwrap();
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", "pg-local")] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        s.write_u32(body.len() as u32 + 4).await.unwrap();
        s.write_all(&body).await.unwrap();
        let mut sent = false;
        loop {
            let Ok(tag) = s.read_u8().await else {
                return "closed".into();
            };
            let len = s.read_u32().await.unwrap() as usize;
            let mut b = vec![0u8; len - 4];
            s.read_exact(&mut b).await.unwrap();
            match tag {
                b'R' if !sent && b[..4] == 3u32.to_be_bytes() => {
                    let mut m = vec![b'p'];
                    m.extend_from_slice(&(token.len() as u32 + 5).to_be_bytes());
                    m.extend_from_slice(token.as_bytes());
                    m.push(0);
                    s.write_all(&m).await.unwrap();
                    sent = true;
                }
                b'R' => return "OK".into(),
                b'E' => return String::from_utf8_lossy(&b).into_owned(),
                _ => {}
            }
        }
    })
}

/// A raw MySQL-protocol client (for packets the `mysql` client cannot send). Test files add
/// their own helpers in `impl RawMy` blocks.
pub struct RawMy {
    pub s: std::net::TcpStream,
    pub buf: bytes::BytesMut,
}

impl RawMy {
    /// Connected, with the gateway's greeting read.
    pub fn connect(gw: &Gateway) -> (RawMy, airlock_proto_mysql::handshake::Greeting) {
        let s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = RawMy {
            s,
            buf: bytes::BytesMut::new(),
        };
        let g =
            airlock_proto_mysql::handshake::Greeting::decode(&r.read().expect("greeting").payload)
                .unwrap();
        (r, g)
    }

    /// A logged-in session as the agent on `my-local` (mysql_clear_password on loopback).
    pub fn login(gw: &Gateway) -> RawMy {
        use airlock_proto_mysql::handshake::{Response, CLEAR};
        let (mut r, g) = RawMy::connect(gw);
        let resp = Response {
            capabilities: g.capabilities & !airlock_proto_mysql::codec::CLIENT_SSL,
            max_packet: 1 << 30,
            charset: 45,
            user: "agent".into(),
            auth: format!("{TOKEN}\0").into_bytes(),
            database: Some("my-local".into()),
            plugin: Some(CLEAR.into()),
            ssl_request: false,
        };
        r.send(1, &resp.encode());
        let ok = r.read().expect("login answer");
        assert_eq!(ok.payload.first(), Some(&0), "login failed: {ok:?}");
        r
    }

    pub fn send(&mut self, seq: u8, payload: &[u8]) {
        use std::io::Write;
        let mut out = bytes::BytesMut::new();
        let mut seq = seq;
        airlock_proto_mysql::codec::put_packet(&mut out, &mut seq, payload);
        self.s.write_all(&out).unwrap();
    }

    /// The next packet, or `None` once the gateway closed the connection.
    pub fn read(&mut self) -> Option<airlock_proto_mysql::codec::Packet> {
        use std::io::Read;
        loop {
            if let Ok(Some(p)) =
                airlock_proto_mysql::codec::split_packet(&mut self.buf, 1 << 30, None)
            {
                return Some(p);
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends `sql` as a COM_QUERY.
    pub fn send_query(&mut self, sql: &str) {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        self.send(0, &payload);
    }
}

/// Waits (at most 30 s) until something accepts connections on the loopback `port`.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "airlock did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `config` with `keys` (TOML lines) added to its `[gateway]` table.
pub fn with_gateway_keys(config: String, keys: &str) -> String {
    config.replacen("[gateway]\n", &format!("[gateway]\n{keys}\n"), 1)
}

/// A `[[connections]]` entry `pg-down` for the agent, pointing at a port nothing listens on.
pub fn down_connection(dead_port: u16) -> String {
    format!(
        r#"
[[connections]]
name = "pg-down"
type = "postgres"
address = "127.0.0.1:{dead_port}"
database = "test"
user = "postgres"
sslmode = "disable"
allow_groups = ["ai-agents"]
"#
    )
}

//! OIDC login end to end against a real, certified OpenID Provider (panva/oidc-provider on
//! Node.js, installed from the npm registry by this test): `airlock login` with code + PKCE
//! through a scripted browser, `airlock login --device`, group claims mapped to airlock
//! groups, the access token used as a psql password, `airlock logout` revoking it, and the
//! provider misbehaving (wrong audience, expired ID token, forged signature, wrong nonce,
//! a rotated signing key). The web console's login, review approval and logout run in a real
//! headless Chromium (Debian's `chromium`, driven by playwright-core).
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::*;

const CLIENT_SECRET: &str = "test-client-secret-0123456789";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// `npm ci` once (the lock file pins every package); concurrent tests wait on one lock.
fn install_provider() {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().unwrap();
    if *done {
        return;
    }
    let dir = provider_dir();
    let installed = ["oidc-provider", "playwright-core"].iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    });
    if !installed {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect("npm (Node.js) is needed for the OIDC tests");
        assert!(out.status.success(), "npm ci: {}", text(&out));
    }
    *done = true;
}

struct Provider {
    child: Child,
    port: u16,
}

impl Provider {
    fn start_on(port: u16) -> Provider {
        install_provider();
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .env("PORT", port.to_string())
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OIDC provider did not start");
        assert!(line.starts_with("listening"), "{line}");
        Provider { child, port }
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_mode(&self, mode: &str) {
        let body = ureq::get(format!("{}/test/mode?set={mode}", self.issuer()))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        assert_eq!(body.trim(), format!("mode={mode}"));
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oidc_config(issuer: &str) -> String {
    format!(
        r#"
[oidc]
issuer = "{issuer}"
client_id = "airlock"
client_secret_env = "AIRLOCK_TEST_OIDC_SECRET"
scopes = ["openid", "email", "groups"]
groups_claim = "groups"
username_claim = "email"
group_map = {{ "idp-dba" = "dba" }}
access_token_ttl = "1h"
"#
    )
}

/// A connection only IdP group `staff` may use, and one only the mapped `dba` group may use.
const HUMAN_CONNECTIONS: &str = r#"
[[connections]]
name = "pg-staff"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
user = "postgres"
sslmode = "disable"
allow_groups = ["staff"]

[[connections]]
name = "pg-dba"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
user = "postgres"
sslmode = "disable"
allow_groups = ["dba"]
"#;

fn start_gateway(provider: &Provider) -> Gateway {
    std::env::set_var("AIRLOCK_TEST_OIDC_SECRET", CLIENT_SECRET);
    Gateway::start_with(HUMAN_CONNECTIONS, &oidc_config(&provider.issuer()), None)
}

/// `airlock login` with `$BROWSER` set to the scripted browser, logging in as `user`.
fn login_cmd(gw: &Gateway, home: &Path, user: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.arg("login")
        .args(extra)
        .arg("--api")
        .arg(format!("http://127.0.0.1:{}", gw.api_port))
        .env("XDG_CONFIG_HOME", home)
        .env_remove("AIRLOCK_TOKEN")
        .env(
            "BROWSER",
            format!("node {}", provider_dir().join("browser.mjs").display()),
        )
        .env("OIDC_TEST_USER", user);
    cmd
}

fn code_login(gw: &Gateway, home: &Path, user: &str) -> Output {
    login_cmd(gw, home, user, &[]).output().unwrap()
}

fn stored_token(home: &Path) -> String {
    std::fs::read_to_string(home.join("airlock/token"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn code_flow_login_maps_groups_and_the_token_opens_sessions_until_logout() {
    let provider = Provider::start_on(free_port());
    let gw = start_gateway(&provider);
    let home = tempfile::tempdir().unwrap();

    let out = code_login(&gw, home.path(), "alice");
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("logged in as alice@example.test"), "{s}");
    // idp-dba mapped to dba; unmapped groups pass through.
    assert!(s.contains("dba") && s.contains("staff"), "{s}");

    let path = home.path().join("airlock/token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is private");
    }
    let token = stored_token(home.path());
    assert!(token.starts_with("alk_at_"), "{token}");

    // The access token is the password on both connections the groups allow …
    for conn in ["pg-staff", "pg-dba"] {
        let out = psql(
            &gw.conninfo("alice@example.test", &token, conn),
            "SELECT 'human-' || 'ok';",
        );
        assert!(text(&out).contains("human-ok"), "{conn}: {}", text(&out));
    }
    // … and on none other; nor for another user name.
    let out = psql(
        &gw.conninfo("alice@example.test", &token, "pg-local"),
        "SELECT 1;",
    );
    assert!(
        text(&out).contains("may not use connection"),
        "{}",
        text(&out)
    );
    let out = psql(
        &gw.conninfo("bob@example.test", &token, "pg-staff"),
        "SELECT 1;",
    );
    assert!(
        text(&out).contains("password authentication failed"),
        "{}",
        text(&out)
    );

    // Bob is only in `staff`: no dba connection for him.
    let bob_home = tempfile::tempdir().unwrap();
    let out = code_login(&gw, bob_home.path(), "bob");
    assert!(out.status.success(), "{}", text(&out));
    let bob = stored_token(bob_home.path());
    let out = psql(
        &gw.conninfo("bob@example.test", &bob, "pg-dba"),
        "SELECT 1;",
    );
    assert!(
        text(&out).contains("may not use connection"),
        "{}",
        text(&out)
    );

    let audit = gw.audit_log();
    assert!(
        audit.contains("\"credential\":\"oidc_access_token\""),
        "audited as an OIDC login"
    );
    assert!(!audit.contains(&token), "the token itself is never audited");

    // Logout revokes at the gateway and deletes the file; the token no longer opens sessions.
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["logout", "--api"])
        .arg(format!("http://127.0.0.1:{}", gw.api_port))
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    assert!(!path.exists());
    let out = psql(
        &gw.conninfo("alice@example.test", &token, "pg-staff"),
        "SELECT 1;",
    );
    assert!(
        text(&out).contains("password authentication failed"),
        "{}",
        text(&out)
    );
    // Bob's token is untouched by Alice's logout.
    let out = psql(
        &gw.conninfo("bob@example.test", &bob, "pg-staff"),
        "SELECT 'bob-' || 'ok';",
    );
    assert!(text(&out).contains("bob-ok"), "{}", text(&out));
}

#[test]
fn device_flow_login() {
    let provider = Provider::start_on(free_port());
    let gw = start_gateway(&provider);
    let home = tempfile::tempdir().unwrap();

    let mut child = login_cmd(&gw, home.path(), "alice", &["--device"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The CLI prints the URL that carries the user code; "another device" opens it.
    let mut lines = Vec::new();
    let complete = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no verification URL: {lines:?}"));
        lines.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("http") {
            if url.contains("user_code=") {
                break format!("http{url}");
            }
        }
    };
    let browser = Command::new("node")
        .arg(provider_dir().join("browser.mjs"))
        .arg(&complete)
        .env("OIDC_TEST_USER", "alice")
        .output()
        .unwrap();
    assert!(browser.status.success(), "{}", text(&browser));
    let status = wait_child(&mut child, Duration::from_secs(60));
    // The reader thread forwards the last lines after the CLI exits: read until the pipe closes.
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        rest.push(line);
    }
    assert!(status, "login --device failed: {lines:?} {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("logged in as alice@example.test")),
        "{rest:?}"
    );
    let token = stored_token(home.path());
    let out = psql(
        &gw.conninfo("alice@example.test", &token, "pg-dba"),
        "SELECT 'device-' || 'ok';",
    );
    assert!(text(&out).contains("device-ok"), "{}", text(&out));
}

fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_misbehaving_provider_gets_no_token_and_a_rotated_key_is_followed() {
    let port = free_port();
    let mut provider = Provider::start_on(port);
    let gw = start_gateway(&provider);

    for (mode, expect) in [
        ("aud", "audience"),
        ("expired", "expired"),
        ("forged", "signature"),
        ("nonce", "nonce"),
    ] {
        provider.set_mode(mode);
        let home = tempfile::tempdir().unwrap();
        let out = code_login(&gw, home.path(), "alice");
        let s = text(&out);
        assert!(!out.status.success(), "{mode}: a login succeeded: {s}");
        assert!(s.to_lowercase().contains(expect), "{mode}: {s}");
        assert!(
            !home.path().join("airlock/token").exists(),
            "{mode}: a token was stored"
        );
    }
    provider.set_mode("none");
    let audit = gw.audit_log();
    assert!(
        audit.matches("auth_failure").count() >= 4,
        "every refused login is audited"
    );

    // The same issuer restarted with a new signing key: the gateway follows the new `kid`.
    drop(provider);
    provider = Provider::start_on(port);
    let home = tempfile::tempdir().unwrap();
    let out = code_login(&gw, home.path(), "alice");
    assert!(out.status.success(), "after key rotation: {}", text(&out));
    let token = stored_token(home.path());
    let out = psql(
        &gw.conninfo("alice@example.test", &token, "pg-staff"),
        "SELECT 'rotated-' || 'ok';",
    );
    assert!(text(&out).contains("rotated-ok"), "{}", text(&out));
    drop(provider);
}

#[test]
fn forged_and_tampered_access_tokens_are_refused() {
    let provider = Provider::start_on(free_port());
    let gw = start_gateway(&provider);
    let home = tempfile::tempdir().unwrap();
    let out = code_login(&gw, home.path(), "bob");
    assert!(out.status.success(), "{}", text(&out));
    let token = stored_token(home.path());

    // Flip one character of the payload: the Ed25519 signature no longer matches.
    let mut bytes = token.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let out = psql(
        &gw.conninfo("bob@example.test", &tampered, "pg-staff"),
        "SELECT 1;",
    );
    assert!(
        text(&out).contains("password authentication failed"),
        "{}",
        text(&out)
    );

    // A token minted by another gateway (another data_dir, another key) is not accepted here.
    let other = start_gateway(&provider);
    let other_home = tempfile::tempdir().unwrap();
    let out = code_login(&other, other_home.path(), "bob");
    assert!(out.status.success(), "{}", text(&out));
    let foreign = stored_token(other_home.path());
    let out = psql(
        &gw.conninfo("bob@example.test", &foreign, "pg-staff"),
        "SELECT 1;",
    );
    assert!(
        text(&out).contains("password authentication failed"),
        "{}",
        text(&out)
    );
}

#[test]
fn login_against_a_gateway_without_oidc_says_so() {
    let gw = Gateway::start("");
    let home = tempfile::tempdir().unwrap();
    let out = code_login(&gw, home.path(), "alice");
    assert!(!out.status.success());
    assert!(text(&out).contains("no [oidc] section"), "{}", text(&out));
}

/// The web console in a real browser: OIDC login through the provider's pages, the pending
/// review of a held statement shown (its markup as text, not HTML), approved with a click (the
/// held statement then runs), logout.
#[test]
fn web_console_login_and_review_approval_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the web console test needs Chromium at {chromium} (Debian: apt-get install chromium; or set CHROMIUM)"
    );
    let provider = Provider::start_on(free_port());
    std::env::set_var("AIRLOCK_TEST_OIDC_SECRET", CLIENT_SECRET);
    let gw = Gateway::start_with(
        HUMAN_CONNECTIONS,
        &format!(
            "{}\n[reviews]\nhold = \"60s\"\n{REVIEW_AGENT_DELETES}",
            oidc_config(&provider.issuer())
        ),
        None,
    );
    let table = unique("console_review");
    direct(&format!(
        "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2);"
    ));

    // The agent's unbounded delete is held for review; psql waits for the decision.
    let held = std::thread::spawn({
        let conninfo = gw.agent();
        let sql = format!("DELETE FROM {table} /* <img src=x onerror=window.pwned=1> */;");
        move || psql(&conninfo, &sql)
    });

    let out = Command::new("node")
        .arg(provider_dir().join("console.mjs"))
        .arg(format!("http://127.0.0.1:{}/console/", gw.api_port))
        .env("CHROMIUM", &chromium)
        .env("OIDC_TEST_USER", "alice")
        .env("STATEMENT", &table)
        .output()
        .expect("node");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "console.mjs: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(report.trim()).expect("console.mjs JSON");
    assert!(
        seen["who"].as_str().unwrap().contains("alice@example.test"),
        "{seen}"
    );
    assert!(seen["who"].as_str().unwrap().contains("dba"), "{seen}");
    assert!(
        !seen["urlAfterLogin"].as_str().unwrap().contains("token"),
        "token left in the URL: {seen}"
    );
    assert_eq!(seen["tokenStored"], "alk_at_", "{seen}");
    // Statement text is rendered as text: the markup is visible and never ran.
    assert!(
        seen["statementCell"]
            .as_str()
            .unwrap()
            .contains("<img src=x onerror=window.pwned=1>"),
        "{seen}"
    );
    assert_eq!(seen["imgInRow"], 0, "{seen}");
    assert_eq!(seen["pwned"], false, "{seen}");
    assert_eq!(seen["approved"], true, "{seen}");
    assert!(seen["tokenAfterLogout"].is_null(), "{seen}");
    assert_eq!(seen["consoleErrors"].as_array().unwrap().len(), 0, "{seen}");

    // The approval released the held statement, which ran exactly once.
    let held = held.join().unwrap();
    assert!(held.status.success(), "{}", text(&held));
    assert!(
        String::from_utf8_lossy(&held.stdout).contains("DELETE 2"),
        "{}",
        text(&held)
    );
    let review = seen["review"].as_str().unwrap();
    let log = gw.audit_log();
    let approval = log
        .lines()
        .find(|l| l.contains(review) && l.contains("review_approved"))
        .unwrap_or_else(|| panic!("no approval of {review} in the audit log"));
    assert!(approval.contains("alice@example.test"), "{approval}");
    // Logging out revoked the console's access token at the gateway.
    assert!(
        log.contains(r#""login_step":"logout""#),
        "no logout in the audit log"
    );
    direct(&format!("DROP TABLE {table}"));
}

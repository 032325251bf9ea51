//! A MySQL session ends with its credential: a runtime token revoked mid-session closes the
//! open `mysql` client session at once — even in the middle of a long statement, which is then
//! killed upstream — with a native ERR (1927, 70100) naming the reason, and audit events.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn revoking_a_token_closes_the_open_mysql_session_and_kills_its_statement() {
    let gw = Gateway::start_mysql("");
    let admin = gw.admin_token();
    let token = ok(&gw.api_cli(
        &admin,
        &[
            "tokens",
            "create",
            "--service-account",
            "agent",
            "--ttl",
            "1h",
        ],
    ));
    let list = ok(&gw.api_cli(&admin, &["tokens", "list", "--all", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|t| t["hint"].as_str().unwrap().starts_with(&token[..10]))
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .expect("token listed");
    let marker = unique("cut_marker");
    let mut child = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", gw.port),
            "-uagent",
            &format!("-p{token}"),
            "-Dmy-local",
            "--batch",
            // No reconnect and no --force: the client ends on the cut, as a script would.
            "--skip-reconnect",
            "--skip-ssl",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"select 'before-revoke';\n").unwrap();
    let script = format!("select sleep(8), '{marker}';\nselect 'after-revoke';\n");
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let _ = stdin.write_all(script.as_bytes());
        std::thread::sleep(Duration::from_secs(20));
    });
    std::thread::sleep(Duration::from_millis(1500));
    let running = direct_mysql("select count(*) from information_schema.processlist where info like '%cut_marker%' and info not like '%processlist%'");
    assert_eq!(running, "1", "the long statement is not running upstream");
    let revoked_at = Instant::now();
    ok(&gw.api_cli(&admin, &["tokens", "revoke", &id]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the mysql client was not disconnected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(3),
        "the cut waited for the statement"
    );
    let out = exited_output(&mut child);
    assert!(out.contains("before-revoke"), "{out}");
    assert!(out.contains("ERROR 1927 (70100)"), "{out}");
    assert!(
        out.contains(&format!("the token {id} of `agent` was revoked")),
        "{out}"
    );
    assert!(!out.contains("after-revoke"), "{out}");
    // The statement was killed upstream, not left running for its 8 seconds.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let running = direct_mysql("select count(*) from information_schema.processlist where info like '%cut_marker%' and info not like '%processlist%'");
        if running == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the statement still runs upstream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let audit = gw.audit_log();
    assert!(
        audit.contains("\"session_cut\":\"token revoked\""),
        "{audit}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.audit_log().contains("\"reason\":\"token revoked\"") {
        assert!(Instant::now() < deadline, "no session_end with the reason");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new session with the revoked token is refused.
    let again = text(&gw.mysql_as("agent", &token, "my-local", "select 1;"));
    assert!(again.contains("ERROR 1045"), "{again}");
}

/// Outside review, round 12 (F1): a MySQL client that hung up mid-statement left the statement
/// running on the server (an exponential CTE chain then took MariaDB down), and the audit said
/// it completed. Now the gateway notices the hang-up while it awaits the answer, kills the
/// statement upstream, and records it as interrupted.
#[test]
fn a_mysql_client_that_hangs_up_mid_statement_leaves_no_running_query() {
    let gw = Gateway::start_mysql("");
    let marker = unique("hangup_my");
    let sql = format!("select sleep(30), '{marker}' as m");
    let mut child = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", gw.port),
            "-uagent",
            &format!("-p{TOKEN}"),
            "-Dmy-local",
            "--batch",
            "--skip-ssl",
            "-e",
            &sql,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = format!(
        "select count(*) from information_schema.processlist where info like '%{marker}%' and id <> connection_id()"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while direct_mysql(&running).trim() != "1" {
        assert!(
            Instant::now() < deadline,
            "the statement never started upstream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while direct_mysql(&running).trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "the statement still runs upstream after its client left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ev = wait_until("the statement's outcome", 10, || {
        audit_events(&gw)
            .into_iter()
            .find(|e| e["kind"] == "command_result" && e["command"]["error"].is_string())
    });
    assert_eq!(
        ev["command"]["error"], "interrupted: client disconnected",
        "{ev}"
    );
}

//! `airlock exec` (table / JSON / CSV, denials, a held statement approved while it waits) and
//! `airlock connect` (psql through a local port with no token) against the real gateway.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn rules() -> String {
    let common = r#"
[[users]]
name = "alice"
groups = ["dba"]
token_env = "AIRLOCK_TEST_ALICE_TOKEN"

[reviews]
hold = "30s"

[[rules]]
name = "no-drop"
operations = ["drop"]
action = "deny"
message = "no drops here"
"#;
    format!("{common}{REVIEW_AGENT_DELETES}")
}

fn exec(gw: &Gateway, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("exec")
        .args(args)
        .args(["--gateway", &format!("127.0.0.1:{}", gw.port)])
        .args(["--api", &format!("http://127.0.0.1:{}", gw.api_port)])
        .env("AIRLOCK_TOKEN", TOKEN)
        .output()
        .unwrap()
}

#[test]
fn exec_prints_tables_json_and_csv_and_native_denials() {
    let gw = Gateway::start(&rules());
    let sql = "SELECT 1 AS id, 'a,\"b\"' AS note UNION ALL SELECT 22, NULL ORDER BY 1";

    let table = exec(&gw, &["pg-local", sql]);
    assert!(table.status.success(), "{}", text(&table));
    assert_eq!(
        String::from_utf8_lossy(&table.stdout),
        " id | note\n----+-------\n 1  | a,\"b\"\n 22 |\n(2 rows)\n"
    );

    let json = exec(&gw, &["pg-local", sql, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"id": "1", "note": "a,\"b\""}, {"id": "22", "note": null}])
    );

    let csv = exec(&gw, &["pg-local", sql, "--format", "csv"]);
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        "id,note\r\n1,\"a,\"\"b\"\"\"\r\n22,\r\n"
    );

    // The identity comes from the API's whoami; the statement is audited under it.
    assert!(gw.audit_log().contains("\"identity\":\"agent\""));

    let denied = exec(&gw, &["pg-local", "DROP TABLE IF EXISTS nothing_here"]);
    assert_eq!(denied.status.code(), Some(1));
    let t = text(&denied);
    assert!(t.contains("42501") && t.contains("no drops here"), "{t}");

    let unknown = exec(&gw, &["pg-nope", "SELECT 1"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("pg-local"),
        "lists the known connections"
    );
}

#[test]
fn exec_shows_the_review_id_and_waits_for_approval() {
    let gw = Gateway::start(&rules());
    let table = unique("exec_review");
    direct(&format!(
        "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2)"
    ));
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["exec", "pg-local", &format!("DELETE FROM {table}")])
        .args([
            "--gateway",
            &format!("127.0.0.1:{}", gw.port),
            "--identity",
            "agent",
        ])
        .env("AIRLOCK_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Find the pending review and approve it as alice while exec waits.
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let list = gw.api_cli(ALICE_TOKEN, &["reviews", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap_or_default();
        if let Some(id) = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r["id"].as_str())
        {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no review appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        direct(&format!("SELECT count(*) FROM {table}")),
        "2",
        "held, not run"
    );
    let approved = gw.api_cli(ALICE_TOKEN, &["reviews", "approve", &id]);
    assert!(approved.status.success(), "{}", text(&approved));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&id), "exec shows the review id: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK 2"));
    assert_eq!(direct(&format!("SELECT count(*) FROM {table}")), "0");
    direct(&format!("DROP TABLE {table}"));
}

#[test]
fn connect_lets_psql_in_without_a_token() {
    let gw = Gateway::start("");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["connect", "pg-local", "--port", &port.to_string()])
        .args([
            "--gateway",
            &format!("127.0.0.1:{}", gw.port),
            "--identity",
            "agent",
        ])
        .env("AIRLOCK_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "connect did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    // No password anywhere; user and dbname given by psql are replaced.
    let conninfo = format!("host=127.0.0.1 port={port} dbname=whatever user=someone");
    let out = psql(
        &conninfo,
        "SELECT 'via-' || 'connect';\nSELECT current_setting('application_name');",
    );
    assert!(text(&out).contains("via-connect"), "{}", text(&out));
    assert!(
        text(&out).contains("psql"),
        "startup parameters pass through"
    );
    // With sslmode=prefer psql asks for TLS first; the local hop says no and carries on.
    let out = psql(&format!("{conninfo} sslmode=prefer"), "SELECT 'prefer-ok';");
    assert!(text(&out).contains("prefer-ok"), "{}", text(&out));
    assert!(gw.audit_log().contains("\"identity\":\"agent\""));
    let _ = child.kill();
    let _ = child.wait();
}

//! Session recording end to end: a psql session through the gateway is recorded by the relay,
//! and `airlock sessions replay` prints what psql printed — with masked values only.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::*;

fn session_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"]["kind"] == "session_start")
        .filter_map(|v| v["event"]["session_id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn replay_matches_what_psql_printed() {
    let table = unique("rec");
    direct(&format!(
        "create table {table} (id int, name text, note text);
         insert into {table} values (1, 'ada', 'mail ada@example.com'), (2, 'grace', null);"
    ));
    let gw = Gateway::start(
        r#"
[[masking]]
name = "pii"
detectors = ["email"]
strategy = "redact"
"#,
    );
    let script = format!(
        "select id, name, note from {table} order by id;\nselect count(*) as n from {table};\nselect 1/0;\n"
    );
    let o = gw.psql(&script);
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(printed.contains("[EMAIL]"), "{printed}");
    let ids = session_ids(&gw.audit_log());
    let id = ids.last().expect("a session").clone();
    // The recording is written at least every second and on session end.
    let mut replay = String::new();
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let r = gw.cli(&["sessions", "replay", &id, "--bare"]);
        replay = String::from_utf8_lossy(&r.stdout).to_string();
        if replay.contains("(1 row)") && replay.contains("division by zero") {
            break;
        }
    }
    // psql prints errors on stderr; the replay prints them inline.
    for line in printed.lines() {
        assert!(
            replay.contains(line),
            "replay lacks `{line}`\n--- psql printed:\n{printed}\n--- replay:\n{replay}"
        );
    }
    assert!(replay.contains("division by zero"), "{replay}");
    assert!(
        !replay.contains("ada@example.com"),
        "the recording holds masked values only"
    );
    direct(&format!("drop table {table}"));
}

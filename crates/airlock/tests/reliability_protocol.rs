//! Protocol fidelity and audit accuracy (issue 15, items 8–12): startup `options` judged as
//! the `SET`s they are, a clean TLS close after a cancel request, a configurable message limit,
//! an outcome for every command (errors at Parse/Bind, skipped pipeline steps, clients that hang
//! up mid-statement), and every part of a multi-statement command in the audit trail.
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

fn psql_with_options(gw: &Gateway, options: &str, script: &str) -> String {
    let out = Command::new("psql")
        .arg(gw.agent())
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", script])
        .env("PGOPTIONS", options)
        .output()
        .expect("psql is installed");
    text(&out)
}

/// Waits until an audit event satisfies `f` (results are written within ~200 ms).
fn wait_event(
    gw: &Gateway,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_until(what, 10, || audit_events(gw).into_iter().find(|e| f(e)))
}

fn result_of(gw: &Gateway, text: &str) -> serde_json::Value {
    let cmd = wait_event(gw, text, |e| {
        e["kind"] == "command" && e["command"]["text"] == text
    });
    let (session, seq) = (cmd["session_id"].clone(), cmd["command"]["seq"].clone());
    wait_event(gw, &format!("result of {text}"), |e| {
        e["kind"] == "command_result" && e["session_id"] == session && e["command"]["seq"] == seq
    })
}

#[test]
fn startup_options_are_judged_as_the_set_statements_they_are() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    // Allowed settings reach the server (they used to be dropped silently) and are audited.
    let out = psql_with_options(
        &gw,
        "-c statement_timeout=1234 --lock-timeout=2s -c application_name=opt\\ test",
        "show statement_timeout; show lock_timeout; show application_name",
    );
    assert_eq!(out.trim(), "1234ms\n2s\nopt test", "{out}");
    let ev = result_of(&gw, "SET statement_timeout TO '1234'");
    assert!(ev["command"]["error"].is_null(), "{ev}");

    // What a SET in the session may not do, a startup option may not do either.
    for (options, expect) in [
        ("-c default_transaction_read_only=off", "read-only"),
        (
            "-c standard_conforming_strings=off",
            "standard_conforming_strings",
        ),
        ("-c client_encoding=SJIS", "not supported through airlock"),
        ("-c search_path=evil,pg_catalog", "pg_catalog first"),
        ("-e", "only `-c name=value` settings"),
        ("-c statement_timeout", "has no value"),
    ] {
        let out = psql_with_options(&gw, options, "select 1");
        assert!(
            out.contains("FATAL") && out.contains(expect),
            "{options}: {out}"
        );
    }
    // The refused read-only switch is in the audit trail as a denied SET.
    wait_event(&gw, "denied startup setting", |e| {
        e["kind"] == "command"
            && e["command"]["text"] == "SET default_transaction_read_only TO 'off'"
            && e["command"]["decision"] == "deny"
    });
}

#[test]
fn a_cancel_request_over_tls_ends_with_a_clean_close() {
    let gw = Gateway::start("");
    // Python's ssl module tells a close_notify (recv returns b"") from a dropped connection
    // (SSLEOFError, what libpq 17 reports as "unexpected eof while reading").
    let script = format!(
        r#"
import socket, ssl, struct, sys
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall(struct.pack("!II", 8, 80877103))
assert s.recv(1) == b"S"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
t.sendall(struct.pack("!IIII", 16, 80877102, 1234, 5678))
try:
    print("clean" if t.recv(1) == b"" else "data")
except ssl.SSLEOFError as e:
    print("eof without close_notify:", e)
"#,
        port = gw.port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 is installed");
    assert_eq!(text(&out).trim(), "clean", "{}", text(&out));
}

#[test]
fn the_message_limit_is_a_config_key_and_the_error_names_it() {
    let gw = Gateway::launch(
        |data, port, api_port| {
            with_gateway_keys(
                base_config(data, port, api_port, "", ""),
                "max_message_bytes = 1048576",
            )
        },
        None,
    );
    let small = format!("select length('{}');", "x".repeat(500_000));
    let out = text(&gw.psql(&small));
    assert!(out.contains("500000"), "{out}");
    let big = format!("select length('{}');", "x".repeat(2_000_000));
    let out = text(&gw.psql(&big));
    assert!(
        out.contains("exceeds the gateway limit of 1048576 bytes")
            && out.contains("max_message_bytes"),
        "{out}"
    );
}

#[test]
fn every_command_gets_an_outcome_even_when_parse_or_an_earlier_step_fails() {
    let gw = Gateway::start("");
    let mut pg = RawPg::connect(gw.port, "agent", TOKEN, "pg-local", &[]).unwrap();
    // An unknown column fails at Parse: the Execute the client sent behind it was recorded
    // as a command and must get that error as its outcome.
    pg.extended("select no_such_column_xyz");
    pg.send(b'S', &[]);
    let answers = pg.until_ready();
    assert!(answers.iter().any(|(t, _)| *t == b'E'), "{answers:?}");
    let ev = result_of(&gw, "select no_such_column_xyz");
    assert_eq!(ev["command"]["error"], "42703", "{ev}");

    // Division by zero at Execute; the next statement of the pipeline is skipped by the server.
    pg.extended("select 1/0");
    pg.extended("select 'skipped after the error'");
    pg.send(b'S', &[]);
    pg.until_ready();
    assert_eq!(result_of(&gw, "select 1/0")["command"]["error"], "22012");
    let skipped = result_of(&gw, "select 'skipped after the error'");
    assert_eq!(
        skipped["command"]["error"], "not run: 22012 earlier in the pipeline",
        "{skipped}"
    );
    // The session is still usable.
    pg.extended("select 'still here'");
    pg.send(b'S', &[]);
    let answers = pg.until_ready();
    assert!(answers.iter().any(|(t, _)| *t == b'C'), "{answers:?}");
}

#[test]
fn a_client_that_hangs_up_mid_statement_leaves_an_outcome_and_no_running_query() {
    let gw = Gateway::start("");
    let marker = unique("hangup");
    let sql = format!("select pg_sleep(30) /* {marker} */");
    let mut psql = Command::new("psql")
        .arg(gw.agent())
        .args(["-X", "-c", &sql])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = format!(
        "select count(*) from pg_stat_activity where query like '%{marker}%' and pid <> pg_backend_pid()"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while direct(&running) != "1" {
        assert!(
            Instant::now() < deadline,
            "the statement never started upstream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    psql.kill().unwrap();
    let _ = psql.wait();
    let ev = result_of(&gw, &sql);
    let error = ev["command"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.starts_with("interrupted: "), "{ev}");
    // The gateway cancelled it: it does not run on for its 30 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while direct(&running) != "0" {
        assert!(
            Instant::now() < deadline,
            "the statement kept running upstream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_part_of_a_multi_statement_command_is_in_the_audit_trail() {
    let gw = Gateway::start("");
    let t = unique("multi");
    direct(&format!("create table {t} (id int primary key)"));
    let sql = format!("delete from {t} where id = 1; delete from {t} where id = 2; drop table {t}");
    let out = Command::new("psql")
        .arg(gw.agent())
        .args(["-X", "-c", &sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ev = wait_event(&gw, "multi-statement command", |e| {
        e["kind"] == "command" && e["command"]["text"] == sql.as_str()
    });
    assert_eq!(
        ev["command"]["operations"],
        serde_json::json!(["delete", "delete", "drop"]),
        "{ev}"
    );
    // SET CONSTRAINTS names a constraint, not a table read.
    let o = gw.psql("begin; set constraints \"fk_orders\" immediate; commit;");
    assert!(o.status.success(), "{}", text(&o));
    let ev = wait_event(&gw, "set constraints", |e| {
        e["kind"] == "command"
            && e["command"]["text"]
                .as_str()
                .is_some_and(|s| s.contains("set constraints"))
    });
    assert!(ev["command"]["reads"].is_null(), "{ev}");
}

#[test]
fn prepared_statement_parameters_are_in_the_audit_trail() {
    let gw = Gateway::start("");
    let mut pg = RawPg::connect(gw.port, "agent", TOKEN, "pg-local", &[]).unwrap();
    let sql = "select $1::text as a, $2::text as b, $3::text as c";
    let long = "y".repeat(3000);
    let answers = pg.execute_with(sql, &[Some("it's here"), None, Some(&long)]);
    assert!(answers.iter().any(|(t, _)| *t == b'C'), "{answers:?}");
    let ev = wait_event(&gw, "command with params", |e| {
        e["kind"] == "command" && e["command"]["text"] == sql
    });
    let params = &ev["command"]["params"];
    assert_eq!(params[0], "it's here", "{ev}");
    assert!(params[1].is_null(), "{ev}");
    let cut = params[2].as_str().unwrap_or_default();
    assert!(
        cut.starts_with(&"y".repeat(1024)) && cut.ends_with("… (3000 bytes)"),
        "{cut}"
    );
}

#[test]
fn repeated_executions_record_a_long_text_once_and_count_batched_rows() {
    let gw = Gateway::start("");
    let mut pg = RawPg::connect(gw.port, "agent", TOKEN, "pg-local", &[]).unwrap();
    let long = format!("select generate_series(1, 5) /* {} */", "x".repeat(4000));
    let mut parse = b"s1\0".to_vec();
    parse.extend_from_slice(long.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    pg.send(b'P', &parse);
    pg.send(b'S', &[]);
    pg.until_ready();
    for max_rows in [0u32, 2] {
        pg.send(b'B', b"\0s1\0\0\0\0\0\0\0");
        let mut exec = vec![0u8];
        exec.extend_from_slice(&max_rows.to_be_bytes());
        pg.send(b'E', &exec);
        pg.send(b'S', &[]);
        pg.until_ready();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (commands, results) = loop {
        let events = audit_events(&gw);
        let commands: Vec<_> = events
            .iter()
            .filter(|e| e["kind"] == "command")
            .cloned()
            .collect();
        let results: Vec<_> = events
            .iter()
            .filter(|e| e["kind"] == "command_result")
            .cloned()
            .collect();
        if results.len() >= 2 {
            break (commands, results);
        }
        assert!(Instant::now() < deadline, "{}", gw.audit_log());
        std::thread::sleep(Duration::from_millis(100));
    };
    // The first execution carries the whole text, the second 1 KiB and the digest.
    assert_eq!(commands[0]["command"]["text"], long.as_str());
    let second = commands[1]["command"]["text"].as_str().unwrap_or_default();
    assert!(second.len() < 1300 && second.contains("sha256"), "{second}");
    // An Execute that stopped at its row limit counts the rows it sent.
    assert_eq!(results[0]["command"]["rows"], 5, "{}", results[0]);
    assert_eq!(results[1]["command"]["rows"], 2, "{}", results[1]);
}

/// An Execute behind a Parse the gateway denied runs nothing the gateway judged (the server
/// skips it after the denial's error); its audit event says so instead of carrying an empty
/// statement text (reviews R4-9 and round 8).
#[test]
fn an_execute_of_an_unbound_portal_is_named_in_the_audit() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    let mut pg = RawPg::connect(gw.port, "agent", TOKEN, "pg-local", &[]).unwrap();
    pg.extended("delete from pg_am_missing_table_xyz");
    pg.send(b'S', &[]);
    let answers = pg.until_ready();
    assert!(answers.iter().any(|(t, _)| *t == b'E'), "{answers:?}");
    let events = audit_events(&gw);
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| e["command"]["text"].as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("not bound through airlock")),
        "{texts:?}"
    );
    assert!(
        !texts.contains(&""),
        "no event with an empty text: {texts:?}"
    );
}

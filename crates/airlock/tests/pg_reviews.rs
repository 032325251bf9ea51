//! Just-in-time reviews with real psql: a held statement approved from the CLI while psql
//! waits, one that times out and runs on re-run after approval, a denied one, self-approval
//! refused, an access grant that expires mid-session, and the webhooks that announce them.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// A tiny webhook receiver: records every request (headers + body) and answers 200.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            sink.lock()
                .unwrap()
                .push(format!("{head}\n{}", String::from_utf8_lossy(&body)));
            let mut s = stream;
            let _ = std::io::Write::write_all(
                &mut s,
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (port, seen)
}

fn config(hook_port: u16, hold: &str) -> String {
    format!(
        r#"
[[users]]
name = "alice"
groups = ["dba"]
token_env = "AIRLOCK_TEST_ALICE_TOKEN"

[[users]]
name = "bob"
groups = ["dba"]
token_env = "AIRLOCK_TEST_BOB_TOKEN"

[reviews]
hold = "{hold}"
access_reviewers = ["dba"]

[[notifications]]
name = "test-hook"
url = "http://127.0.0.1:{hook_port}/hook"
secret_env = "AIRLOCK_TEST_ALICE_TOKEN"

[[rules]]
name = "review-unbounded-writes"
agents = true
operations = ["update", "delete"]
without_where = true
action = "review"
reviewers = ["dba"]
timeout = "10m"
"#
    )
}

/// Waits until a pending review shows up in `airlock reviews list` and returns its id.
#[test]
fn held_delete_runs_once_after_approval_from_the_cli() {
    let (hook, seen) = receiver();
    let gw = Gateway::start(&config(hook, "30s"));
    let t = unique("review_t");
    direct(&format!(
        "create table {t} (id int); insert into {t} values (1), (2)"
    ));
    let psql_thread = std::thread::spawn({
        let conninfo = gw.agent();
        let t = t.clone();
        move || psql(&conninfo, &format!("delete from {t};\n"))
    });
    let id = gw.pending_review();
    // Still held: nothing deleted yet.
    assert_eq!(direct(&format!("select count(*) from {t}")), "2");
    // The agent cannot approve its own request (nor is it a reviewer).
    let o = gw.api_cli(TOKEN, &["reviews", "approve", &id]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = gw.api_cli(ALICE_TOKEN, &["reviews", "approve", &id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("approved"), "{}", text(&o));
    let out = psql_thread.join().unwrap();
    let s = text(&out);
    assert!(s.contains("needs a review") && s.contains(&id), "{s}");
    assert!(s.contains("DELETE 2"), "{s}");
    assert_eq!(direct(&format!("select count(*) from {t}")), "0");
    // The approval is used up: the same statement is held again.
    let o = gw.api_cli(ALICE_TOKEN, &["reviews", "show", &id]);
    assert!(text(&o).contains("\"executed\""), "{}", text(&o));
    // Webhooks announced the review, signed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && seen.lock().unwrap().len() < 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = seen.lock().unwrap().join("\n---\n");
    assert!(
        seen.contains("review_created") && seen.contains("review_approved"),
        "{seen}"
    );
    assert!(
        seen.to_ascii_lowercase()
            .contains("x-airlock-signature: sha256="),
        "{seen}"
    );
    let log = gw.audit_log();
    assert!(
        log.contains("\"review_step\":\"review_created\"")
            && log.contains("\"review_step\":\"review_approved\"")
    );
    direct(&format!("drop table {t}"));
}

#[test]
fn a_timed_out_hold_says_pending_and_a_rerun_after_approval_runs_once() {
    let (hook, _) = receiver();
    let gw = Gateway::start(&config(hook, "1s"));
    let t = unique("review_t");
    direct(&format!(
        "create table {t} (id int); insert into {t} values (1)"
    ));
    let stmt = format!("update {t} set id = id + 1;\n");
    let out = psql(&gw.agent(), &stmt);
    let s = text(&out);
    assert!(s.contains("pending approval, review id r-"), "{s}");
    assert_eq!(direct(&format!("select id from {t}")), "1");
    let id = gw.pending_review();
    let o = gw.api_cli(BOB_TOKEN, &["reviews", "approve", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&psql(&gw.agent(), &stmt));
    assert!(s.contains("UPDATE 1"), "{s}");
    assert_eq!(direct(&format!("select id from {t}")), "2");
    // Exactly once: the next identical statement needs a new review.
    let s = text(&psql(&gw.agent(), &stmt));
    assert!(s.contains("pending approval"), "{s}");
    assert_eq!(direct(&format!("select id from {t}")), "2");
    direct(&format!("drop table {t}"));
}

#[test]
fn a_denied_review_fails_the_statement_with_who_denied_it() {
    let (hook, _) = receiver();
    let gw = Gateway::start(&config(hook, "30s"));
    let t = unique("review_t");
    direct(&format!(
        "create table {t} (id int); insert into {t} values (1)"
    ));
    let psql_thread = std::thread::spawn({
        let conninfo = gw.agent();
        let t = t.clone();
        move || psql(&conninfo, &format!("delete from {t};\n"))
    });
    let id = gw.pending_review();
    let o = gw.api_cli(ALICE_TOKEN, &["reviews", "deny", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&psql_thread.join().unwrap());
    assert!(
        s.contains(&format!("review {id} was denied by alice")),
        "{s}"
    );
    assert_eq!(direct(&format!("select count(*) from {t}")), "1");
    direct(&format!("drop table {t}"));
}

#[test]
fn an_access_grant_lets_an_outsider_in_until_it_expires() {
    let (hook, _) = receiver();
    let gw = Gateway::start(&config(hook, "30s"));
    let outsider = gw.conninfo("outsider", OUTSIDER_TOKEN, "pg-local");
    assert!(text(&psql(&outsider, "select 1;\n")).contains("may not use connection"));
    let o = gw.api_cli(
        OUTSIDER_TOKEN,
        &[
            "request-access",
            "pg-local",
            "--for",
            "3s",
            "--reason",
            "incident 42",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = gw.pending_review();
    let o = gw.api_cli(ALICE_TOKEN, &["reviews", "approve", &id]);
    assert!(o.status.success(), "{}", text(&o));
    // Inside the grant: a session opens, and is cut when the grant ends.
    let started = Instant::now();
    let s = text(&psql(
        &outsider,
        "select 'granted' as g;\nselect pg_sleep(10);\n",
    ));
    assert!(s.contains("granted"), "{s}");
    assert!(
        s.contains("access grant for this connection expired"),
        "{s}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "session was not cut at expiry"
    );
    // After the grant: refused again.
    assert!(text(&psql(&outsider, "select 1;\n")).contains("may not use connection"));
}

#[test]
fn the_bootstrap_admin_token_is_printed_once_and_works_for_the_api() {
    let gw = Gateway::start("");
    let token = gw.admin_token();
    assert!(token.starts_with("alk_admin_"), "{token}");
    let o = gw.api_cli(&token, &["reviews", "list", "--state", "all"]);
    assert!(o.status.success(), "{}", text(&o));
    // Only the digest is on disk.
    let stored = std::fs::read_to_string(gw.dir.path().join("data/admin-token.sha256")).unwrap();
    assert!(!stored.contains(&token) && stored.len() == 64, "{stored}");
    // A wrong bearer token is refused.
    let o = gw.api_cli("alk_admin_wrong_wrong_wrong_wrong", &["reviews", "list"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not valid"), "{}", text(&o));
}

//! Runtime service-account tokens through the real gateway and real psql: created, listed,
//! rotated and revoked with the CLI (through the REST API, as the bootstrap admin), limited to
//! connections, and cut mid-session when revoked or expired — with a clear message and audit
//! events. Failed authentications are rate-limited per source and per identity.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const SECOND: &str = r#"
[[connections]]
name = "pg-second"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
user = "postgres"
sslmode = "disable"
allow_groups = ["ai-agents"]
"#;

fn create(gw: &Gateway, admin: &str, extra: &[&str]) -> String {
    let mut args = vec!["tokens", "create", "--service-account", "agent"];
    args.extend_from_slice(extra);
    let token = ok(&gw.api_cli(admin, &args));
    assert!(
        token.starts_with("alk_") && token.len() == 47,
        "token: {token}"
    );
    token
}

fn id_of(gw: &Gateway, admin: &str, token: &str) -> String {
    let list = ok(&gw.api_cli(admin, &["tokens", "list", "--all", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let hint = &token[..10];
    list.as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|t| t["hint"].as_str().unwrap().starts_with(hint))
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .expect("token listed")
}

#[test]
fn tokens_are_created_listed_rotated_revoked_and_limited_to_connections() {
    let gw = Gateway::start_with(SECOND, "", None);
    let admin = gw.admin_token();

    let token = create(&gw, &admin, &["--ttl", "30d"]);
    let out = psql(
        &gw.conninfo("agent", &token, "pg-local"),
        "SELECT 'runtime-' || 42;",
    );
    assert!(text(&out).contains("runtime-42"), "{}", text(&out));

    // Stored as a hash only, and never listed.
    let stored = std::fs::read_to_string(gw.dir.path().join("data/tokens.json")).unwrap();
    assert!(!stored.contains(&token) && !stored.contains(&token[4..]));
    let listed = ok(&gw.api_cli(&admin, &["tokens", "list"]));
    assert!(!listed.contains(&token));
    let id = id_of(&gw, &admin, &token);
    assert!(
        listed.contains(&id) && listed.contains("active"),
        "{listed}"
    );

    // Rotation: the new token works, the old one does not.
    let rotated = ok(&gw.api_cli(&admin, &["tokens", "rotate", &id]));
    assert!(rotated.starts_with("alk_") && rotated != token);
    let old = psql(&gw.conninfo("agent", &token, "pg-local"), "SELECT 1;");
    assert!(
        text(&old).contains("password authentication failed"),
        "{}",
        text(&old)
    );
    let new = psql(
        &gw.conninfo("agent", &rotated, "pg-local"),
        "SELECT 'rotated-ok';",
    );
    assert!(text(&new).contains("rotated-ok"), "{}", text(&new));

    // Revocation.
    let new_id = id_of(&gw, &admin, &rotated);
    ok(&gw.api_cli(&admin, &["tokens", "revoke", &new_id]));
    let gone = psql(&gw.conninfo("agent", &rotated, "pg-local"), "SELECT 1;");
    assert!(
        text(&gone).contains("password authentication failed"),
        "{}",
        text(&gone)
    );

    // A token limited to pg-second cannot open pg-local, though the account's groups could.
    let limited = create(&gw, &admin, &["--connection", "pg-second"]);
    let refused = psql(&gw.conninfo("agent", &limited, "pg-local"), "SELECT 1;");
    assert!(
        text(&refused).contains("may not use connection `pg-local`"),
        "{}",
        text(&refused)
    );
    let fine = psql(
        &gw.conninfo("agent", &limited, "pg-second"),
        "SELECT 'second-ok';",
    );
    assert!(text(&fine).contains("second-ok"), "{}", text(&fine));
    let unknown = gw.api_cli(
        &admin,
        &[
            "tokens",
            "create",
            "--service-account",
            "agent",
            "--connection",
            "nope",
        ],
    );
    assert!(!unknown.status.success() && text(&unknown).contains("unknown connection `nope`"));

    // A runtime account that is not in the config, with its own groups.
    let ci = ok(&gw.api_cli(
        &admin,
        &[
            "tokens",
            "create",
            "--service-account",
            "ci-bot",
            "--group",
            "ai-agents",
            "--ttl",
            "1h",
        ],
    ));
    let out = psql(
        &gw.conninfo("ci-bot", &ci, "pg-local"),
        "SELECT 'ci-bot-ok';",
    );
    assert!(text(&out).contains("ci-bot-ok"), "{}", text(&out));
    // …whose token is bound to its name.
    let out = psql(&gw.conninfo("agent", &ci, "pg-local"), "SELECT 1;");
    assert!(text(&out).contains("password authentication failed"));

    // Only admins manage tokens; the agent's own token is not enough.
    let denied = gw.api_cli(TOKEN, &["tokens", "create", "--service-account", "agent"]);
    assert!(!denied.status.success());
    assert!(text(&denied).contains("admin role"), "{}", text(&denied));

    let audit = gw.audit_log();
    for step in ["token_created", "token_rotated", "token_revoked"] {
        assert!(audit.contains(step), "audit log lacks {step}");
    }
    assert!(
        !audit.contains(&token) && !audit.contains(&rotated),
        "secrets in the audit log"
    );
    assert!(audit.contains("\"credential\":\"runtime_token\""));
}

/// psql reading `script` slowly: the first line now, the rest after `gap`.
fn slow_psql(conninfo: &str, first: &str, rest: &str) -> std::process::Child {
    let mut child = Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-v", "ON_ERROR_STOP=0", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first.as_bytes()).unwrap();
    let rest = rest.to_owned();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let _ = stdin.write_all(rest.as_bytes());
        // Keep stdin open so psql ends only because the gateway closed the session.
        std::thread::sleep(Duration::from_secs(20));
    });
    child
}

fn finish(mut child: std::process::Child, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("psql was not disconnected in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[test]
fn revoking_a_token_closes_the_open_psql_session() {
    let gw = Gateway::start("");
    let admin = gw.admin_token();
    let token = create(&gw, &admin, &["--ttl", "1h"]);
    let id = id_of(&gw, &admin, &token);
    let child = slow_psql(
        &gw.conninfo("agent", &token, "pg-local"),
        "SELECT 'before-revoke';\n",
        "SELECT pg_sleep(4);\nSELECT 'after-revoke';\n",
    );
    std::thread::sleep(Duration::from_millis(1200));
    let revoked_at = Instant::now();
    ok(&gw.api_cli(&admin, &["tokens", "revoke", &id]));
    let out = finish(child, Duration::from_secs(10));
    assert!(
        revoked_at.elapsed() < Duration::from_secs(3),
        "the cut waited for the query"
    );
    assert!(out.contains("before-revoke"), "{out}");
    assert!(
        out.contains(&format!("the token {id} of `agent` was revoked")),
        "{out}"
    );
    assert!(!out.contains("after-revoke"), "{out}");
    // The cut is audited before the client hears of it; the session_end follows.
    assert!(gw.audit_log().contains("\"session_cut\":\"token revoked\""));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.audit_log().contains("\"reason\":\"token revoked\"") {
        assert!(Instant::now() < deadline, "no session_end with the reason");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_expiring_token_closes_the_open_psql_session() {
    let gw = Gateway::start("");
    let admin = gw.admin_token();
    let token = create(&gw, &admin, &["--ttl", "3s"]);
    let started = Instant::now();
    let child = slow_psql(
        &gw.conninfo("agent", &token, "pg-local"),
        "SELECT 'before-expiry';\n",
        "SELECT pg_sleep(8);\nSELECT 'after-expiry';\n",
    );
    let out = finish(child, Duration::from_secs(12));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut at expiry, not after the query"
    );
    assert!(out.contains("before-expiry"), "{out}");
    assert!(
        out.contains("the token of `agent` expired; the session was closed"),
        "{out}"
    );
    assert!(!out.contains("after-expiry"), "{out}");
    let again = psql(&gw.conninfo("agent", &token, "pg-local"), "SELECT 1;");
    assert!(text(&again).contains("password authentication failed"));
    let audit = gw.audit_log();
    assert!(
        audit.contains("\"session_cut\":\"token expired\""),
        "{audit}"
    );
    assert!(
        audit.contains("expired"),
        "the refused retry is audited with its reason"
    );
}

#[test]
fn failed_authentications_are_limited_per_source_and_per_identity() {
    let gw = Gateway::start("");
    // Per identity: after 20 wrong guesses from 20 different addresses, further wrong guesses
    // against `agent` are limited for a minute; the right token still gets in.
    for i in 0..20 {
        let e = try_login(
            gw.port,
            &format!("127.0.1.{}", i + 1),
            "agent",
            "wrong-token-0123456789",
        );
        assert!(e.contains("password authentication failed"), "{e}");
    }
    let e = try_login(gw.port, "127.0.2.1", "agent", "wrong-token-0123456789");
    assert!(
        e.contains("too many failed authentications for identity `agent`"),
        "{e}"
    );
    assert_eq!(try_login(gw.port, "127.0.2.1", "agent", TOKEN), "OK");
    // Another identity from another address is unaffected.
    let e = try_login(gw.port, "127.0.2.2", "outsider", OUTSIDER_TOKEN);
    assert!(
        e.contains("may not use connection") && !e.contains("too many"),
        "{e}"
    );

    // Per source: after 10 failures from one address, its further failures are limited,
    // whoever it claims to be; a valid token from it still gets as far as the gate's next check.
    for i in 0..10 {
        try_login(
            gw.port,
            "127.0.3.1",
            &format!("nobody{i}"),
            "wrong-token-0123456789",
        );
    }
    let e = try_login(gw.port, "127.0.3.1", "nobody", "wrong-token-0123456789");
    assert!(
        e.contains("too many failed authentications from 127.0.3.1"),
        "{e}"
    );
    let e = try_login(gw.port, "127.0.3.1", "outsider", OUTSIDER_TOKEN);
    assert!(
        e.contains("may not use connection") && !e.contains("too many"),
        "{e}"
    );

    // Each address's first failure is audited individually (later ones of the same 10 s
    // window as one counted event, see reliability_auth.rs).
    let audit = gw.audit_log();
    assert!(audit.contains("\"limited\":\"identity\""), "{audit}");
    assert!(
        audit.matches("\"kind\":\"auth_failure\"").count() >= 21,
        "every address's first failure is audited"
    );
}

/// A TCP relay to the machine's PostgreSQL that holds each new connection for `delay` before
/// connecting it through: a slow upstream, so a gateway session stays mid-handshake that long.
fn slow_upstream(delay: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = std::net::TcpStream::connect("127.0.0.1:5432") else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                });
                let (mut c, mut s) = (client, server);
                let _ = std::io::copy(&mut s, &mut c);
                let _ = up.join();
            });
        }
    });
    port
}

#[test]
fn a_session_still_in_its_handshake_when_its_token_is_revoked_is_cut() {
    // Found by the round-3 outside review: sessions that were between authentication and the
    // start of their relay when `tokens revoke` ran were never cut.
    let slow = slow_upstream(Duration::from_millis(2000));
    let gw = Gateway::start_with(
        &format!(
            r#"
[[connections]]
name = "pg-slow"
type = "postgres"
address = "127.0.0.1:{slow}"
database = "test"
user = "postgres"
sslmode = "disable"
allow_groups = ["ai-agents"]
"#
        ),
        "",
        None,
    );
    let admin = gw.admin_token();
    let token = create(&gw, &admin, &["--ttl", "1h"]);
    let id = id_of(&gw, &admin, &token);
    let child = slow_psql(
        &gw.conninfo("agent", &token, "pg-slow"),
        "SELECT 'first';\n",
        "SELECT pg_sleep(3);\nSELECT 'after-revoke';\n",
    );
    // Authenticated and waiting for the slow upstream: revoke now.
    std::thread::sleep(Duration::from_millis(700));
    ok(&gw.api_cli(&admin, &["tokens", "revoke", &id]));
    let out = finish(child, Duration::from_secs(15));
    assert!(
        out.contains(&format!("the token {id} of `agent` was revoked")),
        "{out}"
    );
    assert!(!out.contains("after-revoke"), "{out}");
}

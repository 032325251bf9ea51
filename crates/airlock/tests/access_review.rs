//! The access-review report end to end: a history built through the real gateway with real
//! psql (an agent that reads, writes, is denied a DROP and gets a DELETE approved; an ETL job
//! that may write but only reads; a vendor let in by an access review; a human who writes; an
//! unused grant; a rule that never matches), then the report from the CLI and the API, and a
//! recertification whose revoke comes with the config diff.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{Read, Write};
use std::time::Duration;
use support::*;

/// The test adds a masking policy and asserts the report's masked counts.
const CHECK_MASKED_COUNTS: bool = true;

const ETL_TOKEN: &str = "test-etl-token-0123456789";

fn upstream() -> String {
    let conn = |name: &str, groups: &str| {
        format!(
            "[[connections]]\nname = \"{name}\"\ntype = \"postgres\"\naddress = \"127.0.0.1:5432\"\ndatabase = \"test\"\nuser = \"postgres\"\nsslmode = \"disable\"\ntags = {{ env = \"dev\" }}\nallow_groups = {groups}\n\n"
        )
    };
    conn("pg-reports", "[\"ai-agents\", \"analysts\"]") + &conn("pg-etl", "[\"etl\", \"dba\"]")
}

fn extra(token_file: &std::path::Path, table: &str) -> String {
    let mut s = format!(
        r#"
[[service_accounts]]
name = "etl"
groups = ["etl"]
token_file = "{}"

[[users]]
name = "alice"
groups = ["dba"]
token_env = "AIRLOCK_TEST_ALICE_TOKEN"

[[users]]
name = "bob"
groups = ["dba"]
token_env = "AIRLOCK_TEST_BOB_TOKEN"

[reviews]
hold = "30s"
access_reviewers = ["dba"]

[[rules]]
name = "agents-no-drop"
agents = true
operations = ["drop", "truncate"]
action = "deny"
message = "agents may not drop tables"

[[rules]]
name = "review-agent-deletes"
agents = true
operations = ["delete"]
action = "review"
reviewers = ["dba"]
timeout = "10m"

[[rules]]
name = "never-matches"
operations = ["grant"]
action = "deny"
"#,
        token_file.display()
    );
    if CHECK_MASKED_COUNTS {
        s.push_str(&format!(
            "\n[[masking]]\nname = \"pii\"\ncolumns = [\"{table}.email\"]\nstrategy = \"redact\"\n"
        ));
    }
    s
}

/// A plain HTTP/1.1 GET against the gateway API: (status, body).
fn http_get(port: u16, path: &str, token: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn report(gw: &Gateway, extra_args: &[&str]) -> String {
    let mut args = vec!["access-review", "--config", gw.config.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    let o = gw.cli(&args);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn access<'a>(r: &'a serde_json::Value, identity: &str, conn: &str) -> &'a serde_json::Value {
    r["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == identity)
        .unwrap_or_else(|| panic!("{identity} not in the report"))["access"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["connection"] == conn)
        .unwrap_or_else(|| panic!("{identity} on {conn} not in the report"))
}

fn finding(
    r: &serde_json::Value,
    kind: &str,
    identity: Option<&str>,
    conn: Option<&str>,
) -> serde_json::Value {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["kind"] == kind
                && f["identity"].as_str() == identity
                && f["connection"].as_str() == conn
        })
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no {kind} finding for {identity:?} on {conn:?}:\n{:#}",
                r["findings"]
            )
        })
}

#[test]
fn the_report_shows_what_each_identity_did_and_what_to_revoke() {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("etl.token");
    std::fs::write(&token_file, ETL_TOKEN).unwrap();
    let t = unique("review_report");
    let gw = Gateway::start_with(&upstream(), &extra(&token_file, &t), None);
    direct(&format!(
        "create table {t} (id int, email text); insert into {t} values (1, 'ann@example.com'), (2, 'bo@example.com')"
    ));

    // The agent reads, writes, and is denied a DROP.
    let s = text(&gw.psql(&format!(
        "select id, email from {t};\ninsert into {t} values (3, 'cy@example.com');\ndrop table {t};\n"
    )));
    assert!(s.contains("agents may not drop tables"), "{s}");
    // Its DELETE is held until alice approves it.
    let held = std::thread::spawn({
        let conninfo = gw.agent();
        let t = t.clone();
        move || psql(&conninfo, &format!("delete from {t} where id = 1;\n"))
    });
    let review = gw.pending_review();
    let o = gw.api_cli(ALICE_TOKEN, &["reviews", "approve", &review]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&held.join().unwrap()).contains("DELETE 1"));

    // The ETL job may write on pg-etl but only reads.
    let etl = gw.conninfo("etl", ETL_TOKEN, "pg-etl");
    for _ in 0..2 {
        let s = text(&psql(&etl, &format!("select count(*) from {t};\n")));
        assert!(s.contains("(1 row)"), "{s}");
    }
    // A human writes.
    let alice = gw.conninfo("alice", ALICE_TOKEN, "pg-etl");
    assert!(text(&psql(
        &alice,
        &format!("insert into {t} values (9, null);\n")
    ))
    .contains("INSERT 0 1"));

    // The outsider gets in through an access review bob approves.
    let o = gw.api_cli(
        OUTSIDER_TOKEN,
        &[
            "request-access",
            "pg-local",
            "--for",
            "1h",
            "--reason",
            "incident 42",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let grant = gw.pending_review();
    let o = gw.api_cli(BOB_TOKEN, &["reviews", "approve", &grant]);
    assert!(o.status.success(), "{}", text(&o));
    let outsider = gw.conninfo("outsider", OUTSIDER_TOKEN, "pg-local");
    assert!(text(&psql(&outsider, "select 'granted';\n")).contains("granted"));

    // Results are deferred audit events (written within 200 ms).
    std::thread::sleep(Duration::from_millis(600));

    let json: serde_json::Value =
        serde_json::from_str(&report(&gw, &["--format", "json"])).unwrap();
    let names: Vec<&str> = json["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "agent", "agents come first: {names:?}");

    let a = access(&json, "agent", "pg-local");
    assert_eq!(a["via"][0], "group ai-agents");
    assert_eq!(a["sessions"], 2);
    assert_eq!(a["operations"]["select"], 1);
    assert_eq!(a["operations"]["insert"], 1);
    assert_eq!(a["operations"]["delete"], 1);
    assert_eq!(a["objects_read"][&t], 1);
    assert_eq!(a["objects_written"][&t], 2);
    assert_eq!(
        a["rows_returned"],
        2 + 1 + 1,
        "2 rows selected, 1 inserted, 1 deleted"
    );
    assert_eq!(a["denied"][0]["rule"], "agents-no-drop");
    assert_eq!(a["denied"][0]["count"], 1);
    let approval = &a["approvals"][0];
    assert_eq!(approval["review_id"], review.as_str());
    assert_eq!(approval["approvers"][0], "alice");
    assert_eq!(
        approval["statement"],
        format!("delete from {t} where id = 1;")
    );
    assert!(
        approval["executed"]["session_id"].is_string(),
        "{approval:#}"
    );
    assert_eq!(a["write_access"], "allow", "agents may insert here");

    // Evidence points at real audit events: the denial's seq is the DROP's command event.
    let denial = finding(&json, "agent_denied", Some("agent"), Some("pg-local"));
    let seq = denial["evidence"][0]["audit_seq"].as_u64().unwrap();
    let log = gw.audit_log();
    let line = log
        .lines()
        .find(|l| l.starts_with(&format!("{{\"seq\":{seq},")))
        .unwrap();
    assert!(
        line.contains("drop table") && line.contains("\"deny\""),
        "{line}"
    );
    let sid = denial["evidence"][0]["session_id"].as_str().unwrap();
    let o = gw.cli(&["sessions", "show", sid]);
    assert!(text(&o).contains("drop table"), "{}", text(&o));

    finding(&json, "agent_reviewed", Some("agent"), Some("pg-local"));
    let unused = finding(&json, "unused_grant", Some("agent"), Some("pg-reports"));
    assert!(unused["recommendation"]
        .as_str()
        .unwrap()
        .contains("revoke"));
    assert_eq!(access(&json, "agent", "pg-reports")["sessions"], 0);
    finding(&json, "read_only_suffices", Some("etl"), Some("pg-etl"));
    let etl_access = access(&json, "etl", "pg-etl");
    assert_eq!(etl_access["sessions"], 2);
    assert_eq!(etl_access["write_commands"], 0);
    assert!(
        !json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "read_only_suffices" && f["identity"] == "alice"),
        "alice wrote, so write access is used"
    );
    let rule = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "rule_never_matched")
        .unwrap();
    assert_eq!(rule["rule"], "never-matches");

    let o = access(&json, "outsider", "pg-local");
    assert_eq!(o["standing"], false);
    assert_eq!(o["via"][0], format!("access review {grant}"));
    assert_eq!(o["access_grants"][0]["approvers"][0], "bob");
    assert_eq!(o["access_grants"][0]["duration_secs"], 3600);
    assert_eq!(o["access_grants"][0]["reason"], "incident 42");
    assert_eq!(o["sessions"], 1);
    let etl_identity = json["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "etl")
        .unwrap();
    assert!(
        etl_identity["token"]["age_days"].as_u64().is_some(),
        "a token file's age is known"
    );

    if CHECK_MASKED_COUNTS {
        let masked = &access(&json, "agent", "pg-local")["masked"];
        assert_eq!(masked["columns"][format!("{t}.email")], 2, "{masked:#}");
    }

    // Markdown, CSV, HTML and the agents-only filter.
    let md = report(&gw, &[]);
    assert!(
        md.starts_with("# Access review") && md.contains("| unused_grant |"),
        "{md}"
    );
    let csv = report(&gw, &["--format", "csv"]);
    assert_eq!(csv.lines().next(), Some(airlock_report::render::CSV_HEADER));
    assert!(
        csv.lines().any(|l| l.starts_with("access,agent,")
            && l.contains("pg-reports")
            && l.contains("unused_grant")),
        "{csv}"
    );
    assert!(report(&gw, &["--format", "html"]).contains("<table>"));
    let agents: serde_json::Value =
        serde_json::from_str(&report(&gw, &["--agents", "--format", "json"])).unwrap();
    assert_eq!(agents["identities"].as_array().unwrap().len(), 1);

    // The API: reviewers read it; the agent and the outsider may not.
    let (status, body) = http_get(
        gw.api_port,
        "/api/v1/access-review?identity=agent&format=md",
        ALICE_TOKEN,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("### agent (service account, AI agent)"),
        "{body}"
    );
    let (status, body) = http_get(gw.api_port, "/api/v1/access-review?since=1d", BOB_TOKEN);
    assert_eq!(status, 200, "{body}");
    let api_json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        access(&api_json, "agent", "pg-local")["denied"][0]["count"],
        1
    );
    for token in [TOKEN, OUTSIDER_TOKEN] {
        let (status, body) = http_get(gw.api_port, "/api/v1/access-review", token);
        assert_eq!(status, 403, "{body}");
    }
    let (status, _) = http_get(gw.api_port, "/api/v1/access-review?format=pdf", ALICE_TOKEN);
    assert_eq!(status, 400);

    // Recertification: a revoke of the unused grant prints the config change.
    let o = gw.api_cli(
        ALICE_TOKEN,
        &[
            "access-review",
            "recertify",
            "--identity",
            "agent",
            "--connection",
            "pg-reports",
            "--decision",
            "revoke",
            "--comment",
            "never used in 30 days",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("-allow_groups = [\"ai-agents\", \"analysts\"]"),
        "{out}"
    );
    assert!(out.contains("+allow_groups = [\"analysts\"]"), "{out}");
    let o = gw.api_cli(
        BOB_TOKEN,
        &[
            "access-review",
            "recertify",
            "--identity",
            "etl",
            "--connection",
            "pg-etl",
            "--decision",
            "keep",
            "--comment",
            "nightly export",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // Not one's own access, not by an agent, and never without a comment.
    let o = gw.api_cli(
        ALICE_TOKEN,
        &[
            "access-review",
            "recertify",
            "--identity",
            "alice",
            "--connection",
            "pg-etl",
            "--decision",
            "keep",
            "--comment",
            "mine",
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("own access"),
        "{}",
        text(&o)
    );
    let o = gw.api_cli(
        TOKEN,
        &[
            "access-review",
            "recertify",
            "--identity",
            "etl",
            "--connection",
            "pg-etl",
            "--decision",
            "revoke",
            "--comment",
            "x",
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("403"),
        "{}",
        text(&o)
    );
    let o = gw.api_cli(
        ALICE_TOKEN,
        &[
            "access-review",
            "recertify",
            "--identity",
            "etl",
            "--connection",
            "pg-etl",
            "--decision",
            "keep",
            "--comment",
            " ",
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    // Decisions are audit events and show in the next report.
    let log = gw.audit_log();
    assert_eq!(log.matches("\"recertification\":").count(), 2, "{log}");
    let o = gw.api_cli(ALICE_TOKEN, &["access-review", "decisions"]);
    assert!(text(&o).contains("never used in 30 days"), "{}", text(&o));
    let json: serde_json::Value =
        serde_json::from_str(&report(&gw, &["--format", "json"])).unwrap();
    let rc = &access(&json, "agent", "pg-reports")["recertification"];
    assert_eq!(rc["decision"], "revoke");
    assert_eq!(rc["reviewer"], "alice");
    assert!(rc["audit_seq"].as_u64().is_some());
    let o = gw.cli(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    direct(&format!("drop table {t}"));
}

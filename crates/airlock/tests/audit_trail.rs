//! `airlock sessions replay/list`, `airlock audit verify/export/search` on a data dir written
//! by the same libraries the gateway uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use airlock_record::{Recorder, RecordingConfig, Recordings, SessionMeta};
use airlock_store::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn airlock(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn command(seq: u64, text: &str, op: &str, table: &str, decision: &str) -> AuditEvent {
    AuditEvent {
        session_id: Some("s-1".into()),
        identity: Some("claude-agent".into()),
        connection: Some("pg-prod".into()),
        command: Some(CommandRecord {
            seq,
            text: Some(text.into()),
            operation: Some(op.into()),
            reads: vec![format!("public.{table}")],
            decision: Some(decision.into()),
            rule: (decision == "deny").then(|| "no-destructive-ddl".into()),
            ..Default::default()
        }),
        ..AuditEvent::new(EventKind::Command)
    }
}

/// A data dir as a gateway leaves it: log, checkpoints, key, one recording.
fn data_dir(dir: &Path) {
    let log = AuditLog::open(&dir.join("audit.log"), AuditOptions::default()).unwrap();
    let cp = spawn_checkpointer(
        log.clone(),
        CheckpointKey::load_or_create(dir).unwrap(),
        CheckpointOptions::default(),
    )
    .unwrap();
    let recordings = Recordings::start(RecordingConfig::new(dir.join("recordings"))).unwrap();
    let mut start = AuditEvent::new(EventKind::SessionStart);
    start.session_id = Some("s-1".into());
    start.identity = Some("claude-agent".into());
    start.connection = Some("pg-prod".into());
    log.append(&[start]).unwrap();
    let rec = Recorder::start(
        &recordings,
        SessionMeta {
            session_id: "s-1".into(),
            identity: Some("claude-agent".into()),
            connection: Some("pg-prod".into()),
            protocol: Some("postgres".into()),
            peer: None,
        },
    );
    let q = "select id, email from users";
    log.append(&[command(1, q, "select", "users", "allow")])
        .unwrap();
    rec.statement(1, q, "allow", None);
    rec.columns_aligned(1, &["id", "email"], &[true, false]);
    rec.row(1, &[Some(b"1"), Some(b"a***@example.com")]);
    rec.complete(1, "SELECT 1", Some(1), Duration::from_micros(300));
    let mut result = AuditEvent::new(EventKind::CommandResult);
    result.session_id = Some("s-1".into());
    result.command = Some(CommandRecord {
        seq: 1,
        rows: Some(1),
        masked: MaskedCounts {
            entities: BTreeMap::from([("email".into(), 1)]),
            columns: BTreeMap::new(),
        },
        ..Default::default()
    });
    log.append(&[result]).unwrap();
    let d = "drop table orders";
    log.append(&[command(2, d, "drop", "orders", "deny")])
        .unwrap();
    rec.statement(2, d, "deny", Some("no-destructive-ddl"));
    rec.error(2, "42501", "airlock: denied by rule no-destructive-ddl");
    rec.end("client closed the connection");
    recordings.flush();
    drop(cp); // final checkpoint
}

#[test]
fn replay_verify_export_and_search_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let d = dir.path().to_str().unwrap();

    let (code, out, err) = airlock(&["sessions", "replay", "s-1", "--data-dir", d, "--bare"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        " id |      email       \n\
         ----+------------------\n\
         \x20 1 | a***@example.com\n\
         (1 row)\n\
         \n\
         ERROR:  airlock: denied by rule no-destructive-ddl\n"
    );
    let (code, out, _) = airlock(&["sessions", "replay", "s-1", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(out.contains("=> drop table orders") && out.contains("Time: 0.300 ms"));
    let (code, out, _) = airlock(&["sessions", "replay", "s-1", "--data-dir", d, "--json"]);
    assert_eq!(code, 0);
    assert!(out
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    let (code, _, err) = airlock(&["sessions", "replay", "nope", "--data-dir", d]);
    assert_eq!(code, 1);
    assert!(err.contains("no recording"), "{err}");

    let (code, out, err) = airlock(&["audit", "verify", "--data-dir", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 signed checkpoints verified"), "{out}");

    let (code, out, _) = airlock(&["audit", "export", "--format", "ocsf", "--data-dir", d]);
    assert_eq!(code, 0);
    let classes: Vec<i64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["class_uid"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(&classes[..4], &[3002, 6005, 6005, 6005]);
    let (code, out, _) = airlock(&["audit", "export", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(out.lines().all(|l| l.starts_with("{\"seq\":")));

    let (code, out, _) = airlock(&["audit", "search", "--decision", "deny", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(
        out.contains("s-1#2") && out.contains("drop table orders"),
        "{out}"
    );
    let (code, out, _) = airlock(&[
        "sessions",
        "list",
        "--masked",
        "email",
        "--data-dir",
        d,
        "--json",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("\"s-1\""), "{out}");
    let (_, out, _) = airlock(&["sessions", "list", "--masked", "iban", "--data-dir", d]);
    assert!(out.contains("(no sessions)"), "{out}");

    // Tamper: edit one event.
    let log = dir.path().join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replace("\"deny\"", "\"allow\"")).unwrap();
    let (code, out, _) = airlock(&["audit", "verify", "--data-dir", d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at event 4"), "{out}");
}

/// The REST endpoints, against a running gateway on that data dir.
#[test]
fn rest_api_lists_shows_and_streams_recordings() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = \"{}\"\napi_listen = \"127.0.0.1:{api_port}\"\n[listeners]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(t) = line
            .split(": ")
            .last()
            .filter(|_| line.contains("bootstrap admin token"))
        {
            token = Some(t.trim().to_string());
        }
        if line.contains("REST API on") {
            break;
        }
    }
    let token = token.expect("admin token printed");
    let base = format!("http://127.0.0.1:{api_port}/api/v1");
    let get = |path: &str, auth: bool| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.get(format!("{base}{path}"));
        if auth {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let mut resp = req.call().unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    };
    let (status, _) = get("/sessions", false);
    assert_eq!(status, 401);
    let (status, body) = get("/sessions?decision=deny", true);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["id"], "s-1");
    let (_, body) = get("/sessions?masked=iban", true);
    assert_eq!(body, "[]");
    let (status, body) = get("/sessions/s-1", true);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["commands"][1]["decision"], "deny");
    let (status, body) = get("/sessions/s-1/recording", true);
    assert_eq!(status, 200);
    let frames: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames[0]["t"], "start");
    assert_eq!(frames.last().unwrap()["t"], "end");
    assert!(frames.iter().any(|f| f["t"] == "row"));
    let (status, _) = get("/sessions/nope/recording", true);
    assert_eq!(status, 404);
    let _ = child.kill();
    let _ = child.wait();
}

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_store::*;
use serde_json::json;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn command(session: &str, seq: u64, text: &str, decision: &str) -> AuditEvent {
    AuditEvent {
        ts_us: AuditEvent::now_us(),
        kind: EventKind::Command,
        session_id: Some(session.into()),
        identity: Some("claude-agent".into()),
        connection: Some("pg-prod".into()),
        command: Some(CommandRecord {
            seq,
            text: Some(text.into()),
            operation: Some("select".into()),
            reads: vec!["public.users".into()],
            decision: Some(decision.into()),
            rule: (decision == "deny").then(|| "agents-read-only".into()),
            ..Default::default()
        }),
        detail: None,
    }
}

fn result(session: &str, seq: u64, rows: u64) -> AuditEvent {
    AuditEvent {
        ts_us: AuditEvent::now_us(),
        kind: EventKind::CommandResult,
        session_id: Some(session.into()),
        command: Some(CommandRecord {
            seq,
            rows: Some(rows),
            duration_us: Some(42),
            ..Default::default()
        }),
        ..AuditEvent::new(EventKind::CommandResult)
    }
}

fn session_start(session: &str, identity: &str, connection: &str) -> AuditEvent {
    AuditEvent {
        session_id: Some(session.into()),
        identity: Some(identity.into()),
        connection: Some(connection.into()),
        detail: Some(json!({"peer": "10.0.0.7:51234", "tls": true})),
        ..AuditEvent::new(EventKind::SessionStart)
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn sample_log(path: &Path, n: u64) -> AuditLog {
    let log = AuditLog::open(path, AuditOptions::default()).unwrap();
    log.append(&[session_start("s1", "claude-agent", "pg-prod")])
        .unwrap();
    for i in 1..=n {
        log.append(&[command("s1", i, &format!("select {i}"), "allow")])
            .unwrap();
    }
    log
}

#[test]
fn round_trip_and_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let events = [
        session_start("s1", "alice", "pg-prod"),
        command("s1", 1, "select \"x\"\nfrom t -- ünïcode", "allow"),
        result("s1", 1, 3),
    ];
    {
        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        assert_eq!(log.last_seq(), 0);
        assert_eq!(log.append(&events[..1]).unwrap(), 1);
        assert_eq!(log.append(&events[1..]).unwrap(), 3);
        assert!(log.recovered().is_none());
    }
    let text = lines(&path);
    assert_eq!(text.len(), 3);
    for (i, line) in text.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], (i + 1) as u64);
        let back: AuditEvent = serde_json::from_value(v["event"].clone()).unwrap();
        assert_eq!(back, events[i]);
    }
    // Absent optional fields are omitted to keep lines small.
    assert!(!text[2].contains("\"text\""), "{}", text[2]);
    assert!(text[1].contains("\"kind\":\"command\""));
    assert!(text[0].contains(&format!("\"prev\":\"{GENESIS_PREV}\"")));

    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    assert_eq!(log.last_seq(), 3);
    assert_eq!(
        log.append(&[command("s1", 2, "select 2", "deny")]).unwrap(),
        4
    );
    drop(log);
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 4);
}

#[test]
fn concurrent_appends_form_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let session = format!("s{t}");
                for i in 1..=200 {
                    if i % 3 == 0 {
                        log.append_deferred(result(&session, i - 1, 1));
                    }
                    log.append(&[command(&session, i, "select 1", "allow")])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.flush().unwrap(), 8 * (200 + 66));
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 8 * (200 + 66));
    // Each session's commands appear in the order its thread appended them.
    for t in 0..8 {
        let session = format!("\"session_id\":\"s{t}\"");
        let seqs: Vec<u64> = lines(&path)
            .iter()
            .filter(|l| l.contains(&session) && l.contains("\"kind\":\"command\""))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["event"]["command"]["seq"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    }
}

#[test]
fn verify_log_detects_edit_delete_and_reorder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(sample_log(&path, 5));
    let original = lines(&path);
    assert!(verify_log(&path).unwrap().is_ok());

    let mut edited = original.clone();
    edited[3] = edited[3].replace("select 3", "select 4");
    write_lines(&path, &edited);
    let report = verify_log(&path).unwrap();
    let (seq, reason) = report.first_broken.unwrap();
    assert_eq!(seq, 4);
    assert!(reason.contains("edited"), "{reason}");
    assert_eq!(report.events, 3);

    let mut deleted = original.clone();
    deleted.remove(2);
    write_lines(&path, &deleted);
    let (seq, reason) = verify_log(&path).unwrap().first_broken.unwrap();
    assert_eq!(seq, 3);
    assert!(reason.contains("expected seq 3"), "{reason}");

    let mut reordered = original.clone();
    reordered.swap(4, 5);
    write_lines(&path, &reordered);
    assert_eq!(verify_log(&path).unwrap().first_broken.unwrap().0, 5);

    // Re-numbering after a deletion still breaks the prev link.
    let mut renumbered: Vec<String> = original.clone();
    renumbered.remove(2);
    renumbered[2] = renumbered[2].replacen("\"seq\":4", "\"seq\":3", 1);
    write_lines(&path, &renumbered);
    let (seq, reason) = verify_log(&path).unwrap().first_broken.unwrap();
    assert_eq!(seq, 3);
    assert!(reason.contains("prev"), "{reason}");

    let mut garbage = original.clone();
    garbage[1] = "not json".into();
    write_lines(&path, &garbage);
    assert_eq!(verify_log(&path).unwrap().first_broken.unwrap().0, 2);

    write_lines(&path, &original);
    assert!(verify_log(&path).unwrap().is_ok());
}

#[test]
fn partial_last_line_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(sample_log(&path, 3));
    let complete_len = fs::metadata(&path).unwrap().len();
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    let partial = b"{\"seq\":5,\"prev\":\"abc";
    f.write_all(partial).unwrap();
    drop(f);
    let partial_len = partial.len() as u64;
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.partial_tail_bytes, partial_len);

    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    assert_eq!(
        log.recovered(),
        Some(&Recovery {
            truncated_to: complete_len,
            dropped_bytes: partial_len
        })
    );
    assert_eq!(log.last_seq(), 4);
    assert_eq!(
        log.append(&[command("s1", 4, "select 4", "allow")])
            .unwrap(),
        5
    );
    drop(log);
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.events, report.partial_tail_bytes), (5, 0));
}

#[test]
fn file_without_any_newline_is_reset_and_empty_file_starts_at_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    fs::write(&path, b"").unwrap();
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    assert!(log.recovered().is_none());
    assert_eq!(log.last_seq(), 0);
    drop(log);

    fs::write(&path, b"{\"seq\":1,\"pr").unwrap();
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    assert_eq!(log.recovered().map(|r| r.truncated_to), Some(0));
    assert_eq!(log.append(&[session_start("s", "a", "c")]).unwrap(), 1);
    drop(log);
    assert!(verify_log(&path).unwrap().is_ok());
}

#[test]
fn tampered_complete_last_line_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(sample_log(&path, 2));
    let mut l = lines(&path);
    let last = l.len() - 1;
    l[last] = l[last].replace("select 2", "select 9");
    write_lines(&path, &l);
    match AuditLog::open(&path, AuditOptions::default()) {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("hash"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn unwritable_log_returns_err_without_panicking() {
    let path = Path::new("/dev/full");
    if !path.exists() {
        return;
    }
    let log = AuditLog::open(path, AuditOptions::default()).unwrap();
    for _ in 0..2 {
        match log.append(&[command("s1", 1, "select 1", "allow")]) {
            Err(StoreError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(28), "ENOSPC expected: {source}")
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
    assert_eq!(log.last_seq(), 0);
    // A deferred event that cannot be written stays queued and is retried, not lost.
    log.append_deferred(result("s1", 1, 1));
    assert!(log.flush().is_err());
    assert!(log.flush().is_err());
    assert!(log.poisoned().is_none());

    let fsync_log = AuditLog::open(
        path,
        AuditOptions {
            fsync: true,
            ..Default::default()
        },
    );
    if let Ok(log) = fsync_log {
        assert!(log
            .append(&[command("s1", 1, "select 1", "allow")])
            .is_err());
    }
}

#[test]
fn deferred_events_are_flushed_by_append_by_timer_and_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    log.append(&[command("s1", 1, "select 1", "allow")])
        .unwrap();
    log.append_deferred(result("s1", 1, 7));
    assert_eq!(
        log.append(&[command("s1", 2, "select 2", "allow")])
            .unwrap(),
        3
    );
    let l = lines(&path);
    assert!(
        l[1].contains("command_result"),
        "deferred event goes first: {}",
        l[1]
    );
    assert!(l[2].contains("select 2"));

    let started = Instant::now();
    log.append_deferred(result("s1", 2, 8));
    while lines(&path).len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "flusher did not run"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "flushed early: {:?}",
        started.elapsed()
    );

    log.append_deferred(result("s1", 3, 9));
    drop(log);
    let l = lines(&path);
    assert_eq!(l.len(), 5);
    assert!(l[4].contains("\"rows\":9"));
    assert!(verify_log(&path).unwrap().is_ok());
}

#[test]
fn fsync_mode_group_commits_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(
        &path,
        AuditOptions {
            fsync: true,
            ..Default::default()
        },
    )
    .unwrap();
    let per_thread = 50;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 1..=per_thread {
                    log.append(&[command(&format!("s{t}"), i, "select 1", "allow")])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.events, 8 * per_thread);
    assert!(
        stats.fsyncs >= 1 && stats.fsyncs <= stats.writes,
        "{stats:?}"
    );
    eprintln!("fsync mode: {stats:?}");
    drop(log);
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.events, 8 * per_thread);
}

fn indexed_fixture(dir: &Path) -> (std::path::PathBuf, Index) {
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    log.append(&[session_start("s1", "claude-agent", "pg-prod")])
        .unwrap();
    log.append(&[command("s1", 1, "select * from users", "allow")])
        .unwrap();
    log.append_deferred(result("s1", 1, 12));
    log.append(&[command("s1", 2, "delete from users", "deny")])
        .unwrap();
    log.append(&[session_start("s2", "alice", "pg-staging")])
        .unwrap();
    log.append(&[command("s2", 1, "select 1", "allow")])
        .unwrap();
    log.append(&[AuditEvent {
        session_id: Some("s1".into()),
        ..AuditEvent::new(EventKind::SessionEnd)
    }])
    .unwrap();
    log.append(&[AuditEvent::new(EventKind::GatewayStop)])
        .unwrap();
    drop(log);
    let index = Index::open(&dir.join("index.db"), &path).unwrap();
    (path, index)
}

#[test]
fn index_catch_up_is_idempotent_and_queries_join_results() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, index) = indexed_fixture(dir.path());
    assert_eq!(index.catch_up().unwrap(), 8);
    assert_eq!(index.catch_up().unwrap(), 0);
    // A second handle (another process, e.g. the CLI) sees the same state and adds nothing.
    let other = Index::open(&dir.path().join("index.db"), &log_path).unwrap();
    assert_eq!(other.catch_up().unwrap(), 0);
    assert_eq!(index.last_seq().unwrap(), 8);

    let all = index.sessions(SessionFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    let s1 = all.iter().find(|s| s.id == "s1").unwrap();
    assert_eq!((s1.statements, s1.denied), (2, 1));
    assert_eq!(s1.peer.as_deref(), Some("10.0.0.7:51234"));
    assert!(s1.ended_us.is_some());
    let s2 = all.iter().find(|s| s.id == "s2").unwrap();
    assert_eq!((s2.statements, s2.denied, s2.ended_us), (1, 0, None));

    let by_identity = index
        .sessions(SessionFilter {
            identity: Some("alice".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        by_identity
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["s2"]
    );
    let by_connection = index
        .sessions(SessionFilter {
            connection: Some("pg-prod".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_connection.len(), 1);
    let limited = index
        .sessions(SessionFilter {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].id, "s2", "newest first");
    let future = index
        .sessions(SessionFilter {
            since_us: Some(AuditEvent::now_us() + 60_000_000),
            ..Default::default()
        })
        .unwrap();
    assert!(future.is_empty());

    let detail = index.session("s1").unwrap().unwrap();
    assert_eq!(detail.commands.len(), 2);
    let c1 = &detail.commands[0];
    assert_eq!(c1.seq, 1);
    assert_eq!(c1.text.as_deref(), Some("select * from users"));
    assert_eq!(c1.reads, ["public.users"]);
    assert_eq!((c1.rows, c1.duration_us), (Some(12), Some(42)));
    let c2 = &detail.commands[1];
    assert_eq!(c2.decision.as_deref(), Some("deny"));
    assert_eq!(c2.rule.as_deref(), Some("agents-read-only"));
    assert_eq!(c2.rows, None);
    assert!(index.session("nope").unwrap().is_none());

    let report = index.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 8);
    assert_eq!(report.last_hash, verify_log(&log_path).unwrap().last_hash);
}

#[test]
fn catch_up_reads_only_complete_lines_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = sample_log(&path, 2);
    let index = Index::open(&dir.path().join("index.db"), &path).unwrap();
    assert_eq!(index.catch_up().unwrap(), 3);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":4,").unwrap();
    assert_eq!(index.catch_up().unwrap(), 0);
    drop(log);
    // Reopening repairs the partial line; the index then continues from its offset.
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    log.append(&[command("s1", 3, "select 3", "allow")])
        .unwrap();
    assert_eq!(index.catch_up().unwrap(), 1);
    assert_eq!(index.session("s1").unwrap().unwrap().session.statements, 3);
    assert!(index.verify().unwrap().is_ok());
}

#[test]
fn catch_up_stops_at_a_tampered_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(sample_log(&path, 4));
    let mut l = lines(&path);
    l[3] = l[3].replace("select 3", "select 7");
    write_lines(&path, &l);
    let index = Index::open(&dir.path().join("index.db"), &path).unwrap();
    match index.catch_up() {
        Err(StoreError::Chain { seq, .. }) => assert_eq!(seq, 4),
        other => panic!("expected a chain error, got {other:?}"),
    }
    assert_eq!(index.last_seq().unwrap(), 3);
    assert!(index.catch_up().is_err(), "must keep refusing");
    assert!(index.verify().unwrap().is_ok());
}

#[test]
fn index_verify_detects_edited_and_deleted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, index) = indexed_fixture(dir.path());
    index.catch_up().unwrap();
    drop(index);
    let db = dir.path().join("index.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let original: Vec<u8> = conn
        .query_row("SELECT hash FROM events WHERE seq = 4", [], |r| r.get(0))
        .unwrap();

    // The index's own record of the event edited.
    conn.execute("UPDATE events SET hash = zeroblob(32) WHERE seq = 4", [])
        .unwrap();
    let (seq, reason) = Index::open(&db, &log_path)
        .unwrap()
        .verify()
        .unwrap()
        .first_broken
        .unwrap();
    assert_eq!(seq, 4);
    assert!(reason.contains("edited"), "{reason}");
    conn.execute("UPDATE events SET hash = ?1 WHERE seq = 4", [&original])
        .unwrap();
    assert!(Index::open(&db, &log_path)
        .unwrap()
        .verify()
        .unwrap()
        .is_ok());

    // A position edited to point outside the log (or to ask for 2^62 bytes) is a break at that
    // seq, not an allocation of that size.
    conn.execute(
        "UPDATE events SET len = 4611686018427387904 WHERE seq = 4",
        [],
    )
    .unwrap();
    let (seq, reason) = Index::open(&db, &log_path)
        .unwrap()
        .verify()
        .unwrap()
        .first_broken
        .unwrap();
    assert_eq!(seq, 4);
    assert!(reason.contains("outside the log"), "{reason}");
    let shown = format!(
        "{:?}",
        Index::open(&db, &log_path).unwrap().session("s1").unwrap()
    );
    assert!(!shown.contains("delete from"), "{shown}");
    conn.execute("UPDATE events SET len = 'x' WHERE seq = 4", [])
        .unwrap();
    let (seq, _) = Index::open(&db, &log_path)
        .unwrap()
        .verify()
        .unwrap()
        .first_broken
        .unwrap();
    assert_eq!(seq, 4);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let line4 = text.lines().nth(3).unwrap().len();
    conn.execute("UPDATE events SET len = ?1 WHERE seq = 4", [line4 as i64])
        .unwrap();
    assert!(Index::open(&db, &log_path)
        .unwrap()
        .verify()
        .unwrap()
        .is_ok());

    // The log line the index points at edited after indexing (same length, so every
    // position stays valid): verify breaks there and reading never shows the edited text.
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(text.matches("delete from").count(), 1);
    std::fs::write(&log_path, text.replace("delete from", "select from")).unwrap();
    let edited = Index::open(&db, &log_path).unwrap();
    let (seq, reason) = edited.verify().unwrap().first_broken.unwrap();
    assert_eq!(seq, 4);
    assert!(reason.contains("edited"), "{reason}");
    let shown = format!("{:?}", edited.session("s1").unwrap().unwrap());
    assert!(!shown.contains("select from"), "{shown}");
    std::fs::write(&log_path, text).unwrap();
    assert!(Index::open(&db, &log_path)
        .unwrap()
        .verify()
        .unwrap()
        .is_ok());

    conn.execute("DELETE FROM events WHERE seq = 5", [])
        .unwrap();
    assert_eq!(
        Index::open(&db, &log_path)
            .unwrap()
            .verify()
            .unwrap()
            .first_broken
            .unwrap()
            .0,
        5
    );

    let conn2 = rusqlite::Connection::open(&db).unwrap();
    conn2
        .execute("DELETE FROM events WHERE seq >= 5", [])
        .unwrap();
    let report = Index::open(&db, &log_path).unwrap().verify().unwrap();
    let (seq, reason) = report.first_broken.unwrap();
    assert_eq!(seq, 5);
    assert!(reason.contains("deleted"), "{reason}");
}

#[test]
fn background_indexer_follows_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let db = dir.path().join("index.db");
    let indexer = spawn_indexer(&path, &db, Duration::from_millis(20)).unwrap();
    let log = sample_log(&path, 3);
    let reader = Index::open(&db, &path).unwrap();
    let started = Instant::now();
    while reader.last_seq().unwrap() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "indexer did not catch up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    log.append(&[command("s1", 4, "select 4", "allow")])
        .unwrap();
    indexer.shutdown();
    assert_eq!(
        reader.last_seq().unwrap(),
        5,
        "shutdown runs a final catch-up"
    );
    assert_eq!(reader.session("s1").unwrap().unwrap().commands.len(), 4);
}

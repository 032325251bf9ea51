//! A gateway killed with SIGKILL in the middle of a busy session loses nothing the invariants
//! promise: every statement that reached PostgreSQL has its audit `command` event, the hash
//! chain still verifies, the recording is readable up to (about) the kill, and a restarted
//! gateway continues the same chain.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The marker numbers of `INSERT INTO {table} VALUES (n)` statements found in `haystack`.
fn inserted_markers(haystack: &str, table: &str) -> BTreeSet<i64> {
    let needle = format!("INSERT INTO {table} VALUES (");
    haystack
        .match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = haystack.get(at + needle.len()..)?;
            rest.split(')').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn sigkill_mid_session_loses_no_audit_event_and_keeps_the_recording_readable() {
    let table = unique("crash");
    direct(&format!("create table {table} (n bigint primary key)"));
    let mut gw = Gateway::start("");

    // One psql session inserting as fast as the gateway lets it, one autocommit row per
    // statement, far more than can finish before the kill.
    let mut client = Command::new("psql")
        .arg(gw.agent())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    let mut stdin = client.stdin.take().unwrap();
    let feeder_table = table.clone();
    let feeder = std::thread::spawn(move || {
        for n in 0..200_000 {
            if writeln!(stdin, "INSERT INTO {feeder_table} VALUES ({n});").is_err() {
                break; // the gateway is gone
            }
        }
    });

    // Note how far the session got, let it run well past the recorder's 1 s flush interval,
    // then kill mid-stream.
    let count = || -> usize {
        direct(&format!("select count(*) from {table}"))
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < 300 {
        assert!(Instant::now() < deadline, "the session made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let committed_long_before_kill = count();
    std::thread::sleep(Duration::from_millis(1800));
    gw.kill9();
    let _ = client.wait();
    let _ = feeder.join();

    // Every row PostgreSQL committed came from a statement whose audit event was written first.
    let committed: BTreeSet<i64> = direct(&format!("select n from {table} order by n"))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(committed.len() >= 300, "{}", committed.len());
    let audit = gw.audit_log();
    let audited = inserted_markers(&audit, &table);
    let missing: Vec<_> = committed.difference(&audited).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} committed statements have no audit event, e.g. {missing:?}",
        committed.difference(&audited).count()
    );
    // Audited but not committed is allowed (in flight at the kill), but only a few.
    let in_flight = audited.difference(&committed).count();
    assert!(in_flight <= 2, "{in_flight} audited statements never ran");

    // The chain is intact: a kill cannot split one `write` of one event.
    let out = gw.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));

    // The recording of the killed session is readable, holds a prefix of what ran, and lost
    // at most about a second of statements.
    let session = audit
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"]["kind"] == "session_start")
        .find_map(|v| v["event"]["session_id"].as_str().map(str::to_owned))
        .expect("a session_start event");
    let out = gw.cli(&["sessions", "replay", &session, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let replay = String::from_utf8_lossy(&out.stdout).to_string();
    let recorded = inserted_markers(&replay, &table);
    assert!(!recorded.is_empty(), "nothing recorded: {}", text(&out));
    assert!(
        recorded.is_subset(&audited),
        "the recording holds statements the audit log does not"
    );
    let max_recorded = recorded.iter().max().copied().unwrap_or(0);
    let contiguous = (0..=max_recorded).all(|n| recorded.contains(&n));
    assert!(
        contiguous,
        "the recording has holes before its last statement"
    );
    // Statements committed 1.8 s before the kill are in the recording (it loses at most the
    // last flush interval, 1 s).
    assert!(
        recorded.len() >= committed_long_before_kill,
        "recorded {} statements, {committed_long_before_kill} had run 1.8 s before the kill",
        recorded.len()
    );

    // A restart on the same data_dir continues the chain; verify still passes.
    let config = gw.config.clone();
    let restarted = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("AIRLOCK_TEST_TOKEN", TOKEN)
        .env("AIRLOCK_TEST_OUTSIDER_TOKEN", OUTSIDER_TOKEN)
        .env("AIRLOCK_TEST_ALICE_TOKEN", ALICE_TOKEN)
        .env("AIRLOCK_TEST_BOB_TOKEN", BOB_TOKEN)
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("restart airlock");
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _restarted = KillOnDrop(restarted);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the restarted gateway does not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = gw.psql(&format!("SELECT count(*) AS after_restart FROM {table};"));
    assert!(text(&out).contains("after_restart"), "{}", text(&out));
    let before = audit.lines().count();
    let after = gw.audit_log();
    assert!(
        after.lines().count() > before,
        "the restarted gateway appends"
    );
    assert!(after.starts_with(&audit), "the old events are untouched");
    let out = gw.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    direct(&format!("drop table {table}"));
}

//! The audit trail in segments, end to end: the real gateway with a tiny `segment_max_bytes`
//! rotates and compresses while psql runs statements, and `airlock audit verify` (whole and
//! by range), `airlock sessions`, the access review, `airlock audit export` and a running
//! file exporter all still see every event, across plain and compressed segments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::{Duration, Instant};
use support::*;

const SESSIONS: usize = 3;
const STATEMENTS: usize = 30;

fn segment_files(gw: &Gateway) -> Vec<String> {
    let dir = gw.dir.path().join("data").join("audit.log.d");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn seqs_of(jsonl: &str) -> Vec<u64> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_tiny_segment_size_rotates_compresses_and_every_reader_sees_everything() {
    let export = tempfile::tempdir().unwrap();
    let export_file = export.path().join("siem.jsonl");
    let gw = Gateway::start(&format!(
        r#"
[audit]
segment_max_bytes = 4096
checkpoint_events = 40
checkpoint_interval = "1s"

[[exporters]]
name = "siem"
type = "file"
path = "{}"
"#,
        export_file.display()
    ));
    let probe = unique("segments_probe");
    for s in 0..SESSIONS {
        let script: String = (0..STATEMENTS)
            .map(|i| format!("select {i} as {probe}_{s};\n"))
            .collect();
        let o = gw.psql(&script);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains(&format!("{probe}_{s}")));
    }

    // Rotation happened many times, and closed segments get compressed in the background.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = segment_files(&gw);
        let zst = names.iter().filter(|n| n.ends_with(".log.zst")).count();
        if zst >= 10 && !names.iter().any(|n| n.ends_with(".log")) {
            break;
        }
        assert!(Instant::now() < deadline, "segments: {names:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Results are deferred events: let them, and a checkpoint after the range verified
    // below, reach the log.
    let checkpoints = gw.dir.path().join("data").join("audit.log.checkpoints");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = std::fs::read_to_string(&checkpoints)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_u64())
            .max()
            .unwrap_or(0);
        if last >= 120 {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint after seq 120");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(400));

    // The whole trail verifies across every segment, with the signed checkpoints.
    let o = gw.cli(&["audit", "verify"]);
    let out = text(&o);
    println!("{out}");
    assert!(o.status.success(), "{out}");
    assert!(out.contains("chain intact"), "{out}");
    let segments: usize = out
        .split(" events in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(segments > 10, "{out}");
    assert!(out.contains("signed checkpoints verified"), "{out}");

    // A range in the middle, without reading what comes before it.
    let o = gw.cli(&["audit", "verify", "--from", "100", "--to", "120"]);
    let out = text(&o);
    println!("{out}");
    assert!(o.status.success(), "{out}");
    assert!(out.contains("from seq 100 to seq 120"), "{out}");
    assert!(out.contains("covered by the signed checkpoint"), "{out}");

    // A time range: everything of the last hour.
    let o = gw.cli(&["audit", "verify", "--since", "1h"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("events from seq 1 to the head"), "{out}");

    // The index (caught up by the CLI) has every session and statement, texts included.
    let o = gw.cli(&["sessions", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let sessions: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), SESSIONS, "{sessions:?}");
    for s in sessions {
        let id = s["id"].as_str().unwrap();
        let o = gw.cli(&["sessions", "show", id, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let detail: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let commands = detail["commands"].as_array().unwrap();
        assert!(commands.len() >= STATEMENTS, "{detail:#}");
        let probes = commands
            .iter()
            .filter(|c| c["text"].as_str().is_some_and(|t| t.contains(&probe)))
            .count();
        assert_eq!(probes, STATEMENTS, "{detail:#}");
        assert!(
            commands
                .iter()
                .filter(|c| c["text"].as_str().is_some_and(|t| t.contains(&probe)))
                .all(|c| c["rows"] == 1),
            "every result joined to its command: {detail:#}"
        );
    }

    // The access review streams every segment.
    let o = gw.cli(&[
        "access-review",
        "--config",
        gw.config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let agent = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "agent")
        .unwrap();
    let access = agent["access"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["connection"] == "pg-local")
        .unwrap();
    assert_eq!(access["sessions"], SESSIONS);
    assert!(
        access["operations"]["select"].as_u64().unwrap() >= (SESSIONS * STATEMENTS) as u64,
        "{access:#}"
    );

    // `audit export` and the running exporter: every event once, in order, from seq 1.
    let o = gw.cli(&["audit", "export"]);
    assert!(o.status.success(), "{}", text(&o));
    let exported = seqs_of(&String::from_utf8(o.stdout).unwrap());
    let n = exported.len() as u64;
    assert!(n > (SESSIONS * STATEMENTS * 2) as u64);
    assert_eq!(exported, (1..=n).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shipped = seqs_of(&std::fs::read_to_string(&export_file).unwrap_or_default());
        if shipped.len() as u64 >= n {
            assert_eq!(shipped[..n as usize], exported[..]);
            break;
        }
        assert!(Instant::now() < deadline, "exported {}", shipped.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes the trail writes per simple statement (its `command` and `command_result` lines), and
/// what that becomes once its segment is compressed. Printed for docs/operations.md; the bounds
/// keep a regression (a field added to every event, compression off) from going unnoticed.
#[test]
fn bytes_per_statement() {
    let gw = Gateway::start("[audit]\nsegment_max_bytes = \"1MiB\"\n");
    const N: usize = 2000;
    let script: String = (0..N).map(|i| format!("select {i};\n")).collect();
    let o = gw.psql(&script);
    assert!(o.status.success(), "{}", text(&o));
    // The closed segment gets compressed in the background; results are deferred events.
    let deadline = Instant::now() + Duration::from_secs(20);
    let zst = loop {
        if let Some(z) = segment_files(&gw)
            .into_iter()
            .find(|n| n.ends_with(".log.zst"))
        {
            break z;
        }
        assert!(Instant::now() < deadline, "no compressed segment");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(600));
    let o = gw.cli(&["audit", "export"]);
    assert!(o.status.success(), "{}", text(&o));
    let lines = String::from_utf8(o.stdout).unwrap();
    let first: u64 = zst[..20].parse().unwrap();
    let last: u64 = zst[21..41].parse().unwrap();
    let (mut command, mut result, mut pairs, mut segment_raw) = (0usize, 0usize, 0usize, 0usize);
    let mut example = Vec::new();
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = v["seq"].as_u64().unwrap();
        if (first..=last).contains(&seq) {
            segment_raw += line.len() + 1;
        }
        match v["event"]["kind"].as_str() {
            Some("command") => {
                command += line.len() + 1;
                pairs += 1;
                if example.is_empty() {
                    example.push(line.to_owned());
                }
            }
            Some("command_result") => {
                result += line.len() + 1;
                if example.len() == 1 {
                    example.push(line.to_owned());
                }
            }
            _ => {}
        }
    }
    assert_eq!(pairs, N, "one command event per statement");
    let zst_bytes = std::fs::metadata(gw.dir.path().join("data/audit.log.d").join(&zst))
        .unwrap()
        .len() as f64;
    let per = (command + result) as f64 / N as f64;
    let ratio = zst_bytes / segment_raw as f64;
    for l in &example {
        println!("{l}");
    }
    println!(
        "bytes per statement: {per:.0} written (command {:.0} + command_result {:.0}); {:.0} once compressed (segment {segment_raw} -> {zst_bytes} bytes, {:.1}x)",
        command as f64 / N as f64,
        result as f64 / N as f64,
        per * ratio,
        1.0 / ratio
    );
    assert!(per < 800.0, "{per} bytes per statement");
    assert!(
        per * ratio < 160.0,
        "{} bytes per statement compressed",
        per * ratio
    );
}

/// `[audit] retention` on the real gateway: segments of a trail written two years ago are
/// removed at start, the removal is an `audit_retention` event, and `audit verify` and the
/// index accept the shortened trail; the segments written since stay.
#[test]
fn retention_removes_old_segments_and_the_rest_still_verifies() {
    use airlock_store::{AuditEvent, AuditLog, AuditOptions, EventKind, SegmentOptions};
    let mut old_segments = Vec::new();
    let gw = Gateway::launch(
        |data, port, api_port| {
            std::fs::create_dir_all(data).unwrap();
            let log = AuditLog::open(
                &data.join("audit.log"),
                AuditOptions {
                    fsync: false,
                    segments: SegmentOptions {
                        max_bytes: 4096,
                        max_age: None,
                        compress: false,
                    },
                },
            )
            .unwrap();
            for i in 0..60 {
                let mut ev = AuditEvent::new(EventKind::Other);
                ev.detail = Some(serde_json::json!({"old_event": i}));
                log.append(&[ev]).unwrap();
            }
            log.rotate().unwrap();
            log.compress_closed().unwrap();
            drop(log);
            let two_years_ago =
                std::time::SystemTime::now() - Duration::from_secs(2 * 365 * 86_400);
            for e in std::fs::read_dir(data.join("audit.log.d")).unwrap() {
                let p = e.unwrap().path();
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(two_years_ago)
                    .unwrap();
                old_segments.push(p);
            }
            base_config(
                data,
                port,
                api_port,
                "",
                "[audit]\nsegment_max_bytes = 4096\nretention = \"400d\"\n",
            )
        },
        None,
    );
    assert!(old_segments.len() >= 3);
    // Retention runs at start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while old_segments.iter().any(|p| p.exists()) {
        assert!(Instant::now() < deadline, "old segments not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = gw.psql("select 'after retention';\n");
    assert!(text(&o).contains("after retention"), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(600));
    let log = gw.audit_log();
    let event = log
        .lines()
        .find(|l| l.contains("\"audit_retention\""))
        .expect("the removal is audited");
    assert!(event.contains("\"first_seq\":1"), "{event}");
    let o = gw.cli(&["audit", "verify"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("retention: events before seq 61 were removed"),
        "{out}"
    );
    let o = gw.cli(&["sessions", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let sessions: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions:#}");
}

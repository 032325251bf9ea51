//! The Recorder API driven directly, as the PostgreSQL relay will drive it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use airlock_record::{
    find_recording, remove_older_than, Frame, Pace, Recorder, RecordingConfig, RecordingReader,
    Recordings, Renderer, ReplayOptions, SessionMeta,
};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn meta(id: &str) -> SessionMeta {
    SessionMeta {
        session_id: id.into(),
        identity: Some("claude-agent".into()),
        connection: Some("pg-prod".into()),
        protocol: Some("postgres".into()),
        peer: Some("127.0.0.1:50000".into()),
    }
}

fn render(path: &Path, bare: bool) -> String {
    let reader = RecordingReader::open(path).unwrap();
    let mut r = Renderer::new(
        Vec::new(),
        ReplayOptions {
            pace: Pace::Instant,
            bare,
        },
    );
    r.replay(reader, &mut std::io::empty()).unwrap();
    String::from_utf8(r.into_inner()).unwrap()
}

/// A session as the relay records it: a query with rows, a command, a denied statement and
/// a notice; replayed, it reads as psql printed it.
#[test]
fn a_session_replays_as_psql_printed_it() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = Recordings::start(RecordingConfig::new(dir.path())).unwrap();
    let rec = Recorder::start(&recordings, meta("s-1"));
    rec.statement(1, "select id, name from users order by id", "allow", None);
    rec.columns_aligned(1, &["id", "name"], &[true, false]);
    rec.row(1, &[Some(b"1"), Some(b"alice")]);
    rec.row(1, &[Some(b"22"), None]);
    rec.complete(1, "SELECT 2", Some(2), Duration::from_micros(412));
    rec.statement(2, "insert into t values (1)", "allow", None);
    rec.complete(2, "INSERT 0 1", None, Duration::from_micros(1500));
    rec.statement(3, "drop table users", "deny", Some("no-destructive-ddl"));
    rec.error(
        3,
        "42501",
        "airlock: denied by rule no-destructive-ddl: Destructive DDL is not allowed",
    );
    rec.notice("table \"x\" does not exist, skipping");
    rec.statement(4, "select 1 as \"?column?\"", "allow", None);
    rec.columns_aligned(4, &["?column?"], &[true]);
    rec.row(4, &[Some(b"1")]);
    rec.complete(4, "SELECT 1", Some(1), Duration::from_micros(90));
    let path = rec.path().to_path_buf();
    rec.end("client closed the connection");
    recordings.flush();

    assert!(path.starts_with(dir.path()));
    assert_eq!(
        find_recording(dir.path(), "s-1", None).as_deref(),
        Some(path.as_path())
    );
    let bare = render(&path, true);
    assert_eq!(
        bare,
        " id | name  \n\
         ----+-------\n\
         \x20 1 | alice\n\
         \x2022 | \n\
         (2 rows)\n\
         \n\
         INSERT 0 1\n\
         ERROR:  airlock: denied by rule no-destructive-ddl: Destructive DDL is not allowed\n\
         NOTICE:  table \"x\" does not exist, skipping\n\
         \x20?column? \n\
         ----------\n\
         \x20       1\n\
         (1 row)\n\
         \n"
    );
    let full = render(&path, false);
    assert!(full.contains("-- session s-1 by claude-agent on pg-prod"));
    assert!(full.contains("=> drop table users"));
    assert!(full.contains("deny (rule no-destructive-ddl)"));
    assert!(full.contains("Time: 0.412 ms"));
    assert!(full.contains("session ended at"));

    let frames: Vec<Frame> = RecordingReader::open(&path).unwrap().collect();
    assert!(matches!(frames.first(), Some(Frame::Start { session_id, .. }) if session_id == "s-1"));
    assert!(matches!(frames.last(), Some(Frame::End { .. })));
    // The file is zstd: the raw bytes do not contain the statement text.
    let raw = std::fs::read(&path).unwrap();
    assert_eq!(&raw[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
}

#[test]
fn caps_keep_the_true_row_count_and_say_when_they_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RecordingConfig::new(dir.path());
    cfg.max_rows = 3;
    cfg.max_bytes_per_statement = 1000;
    let recordings = Recordings::start(cfg).unwrap();
    let rec = recordings.start_session(meta("caps"));
    rec.statement(1, "select * from big", "allow", None);
    rec.columns(1, &["n"]);
    for i in 0..10 {
        rec.row(1, &[Some(i.to_string().as_bytes())]);
    }
    rec.complete(1, "SELECT 10", Some(10), Duration::from_millis(1));
    // Bytes cap: 400-byte values, so only two fit in 1000 bytes.
    rec.statement(2, "select blob from big", "allow", None);
    rec.columns(2, &["blob"]);
    let blob = vec![b'x'; 400];
    for _ in 0..5 {
        rec.row(2, &[Some(&blob)]);
    }
    rec.complete(2, "SELECT 5", None, Duration::from_millis(1));
    // Non-UTF-8 bytes are kept as \x hex.
    rec.statement(3, "select bytes", "allow", None);
    rec.columns(3, &["b"]);
    rec.row(3, &[Some(&[0xff, 0x00])]);
    rec.complete(3, "SELECT 1", Some(1), Duration::from_millis(1));
    let path = rec.path().to_path_buf();
    drop(rec);
    recordings.flush();

    let frames: Vec<Frame> = RecordingReader::open(&path).unwrap().collect();
    let completes: Vec<&Frame> = frames
        .iter()
        .filter(|f| matches!(f, Frame::Complete { .. }))
        .collect();
    assert!(matches!(
        completes[0],
        Frame::Complete {
            rows: 10,
            recorded: 3,
            truncated: true,
            ..
        }
    ));
    assert!(matches!(
        completes[1],
        Frame::Complete {
            rows: 5,
            recorded: 2,
            truncated: true,
            ..
        }
    ));
    assert!(matches!(
        completes[2],
        Frame::Complete {
            rows: 1,
            recorded: 1,
            truncated: false,
            ..
        }
    ));
    let rows1 = frames
        .iter()
        .filter(|f| matches!(f, Frame::Row { seq: 1, .. }))
        .count();
    assert_eq!(rows1, 3);
    assert!(frames
        .iter()
        .any(|f| matches!(f, Frame::Row { seq: 3, v } if v[0].as_deref() == Some("\\xff00"))));
    let text = render(&path, true);
    assert!(text.contains("-- recording truncated: 3 of 10 rows kept\n(10 rows)"));
    // Dropped without end(): the recorder ends itself.
    assert!(matches!(frames.last(), Some(Frame::End { reason, .. }) if reason == "closed"));
}

/// A recording cut anywhere reads up to its last complete chunk.
#[test]
fn a_truncated_file_reads_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RecordingConfig::new(dir.path());
    cfg.flush_interval = Duration::from_millis(20);
    let recordings = Recordings::start(cfg).unwrap();
    let rec = recordings.start_session(meta("cut"));
    for seq in 1..=50u64 {
        rec.statement(seq, &format!("select {seq}"), "allow", None);
        rec.complete(seq, "SELECT 1", Some(1), Duration::from_micros(10));
        if seq % 10 == 0 {
            recordings.flush();
        }
    }
    let path = rec.path().to_path_buf();
    drop(rec);
    recordings.flush();
    let full = std::fs::read(&path).unwrap();
    let complete: Vec<Frame> = RecordingReader::open(&path).unwrap().collect();
    assert_eq!(complete.len(), 1 + 100 + 1);
    let mut previous = 0;
    let mut detected = 0;
    for cut in (1..full.len()).step_by(7) {
        std::fs::write(&path, &full[..cut]).unwrap();
        let mut reader = RecordingReader::open(&path).unwrap();
        let frames: Vec<Frame> = reader.by_ref().collect();
        // A prefix of the complete recording, never anything else.
        assert_eq!(&complete[..frames.len()], &frames[..], "cut at {cut}");
        assert!(frames.len() >= previous);
        previous = frames.len();
        // A cut exactly between two chunks is a clean (shorter) file without an End frame.
        if reader.truncated().is_some() {
            detected += 1;
        }
    }
    assert!(detected > 0);
    assert!(
        previous > 80,
        "most of the recording survives a cut near the end"
    );
}

const CHILD_ENV: &str = "AIRLOCK_RECORD_TEST_CHILD";

/// The child half of `sigkill_mid_session_loses_at_most_the_last_second`: records forever.
#[test]
fn child_records_until_killed() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let recordings = Recordings::start(RecordingConfig::new(&dir)).unwrap();
    let rec = recordings.start_session(meta("killed"));
    println!("PATH {}", rec.path().display());
    std::io::stdout().flush().unwrap();
    for seq in 1u64.. {
        rec.statement(seq, &format!("select {seq}"), "allow", None);
        rec.columns(seq, &["n"]);
        rec.row(seq, &[Some(seq.to_string().as_bytes())]);
        rec.complete(seq, "SELECT 1", Some(1), Duration::from_micros(5));
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sigkill_mid_session_loses_at_most_the_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_records_until_killed", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stdout);
    let path = loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        if let Some(p) = line.trim().strip_prefix("PATH ") {
            break std::path::PathBuf::from(p);
        }
        assert!(!line.is_empty(), "child exited early");
    };
    std::thread::sleep(Duration::from_millis(2500));
    // SIGKILL: no destructor, no final flush.
    child.kill().unwrap();
    let killed_at = Instant::now();
    child.wait().unwrap();
    let _ = killed_at;

    let mut reader = RecordingReader::open(&path).unwrap();
    let frames: Vec<Frame> = reader.by_ref().collect();
    assert!(matches!(frames.first(), Some(Frame::Start { .. })));
    assert!(!frames.iter().any(|f| matches!(f, Frame::End { .. })));
    // Statements are contiguous from 1 and every complete statement is whole.
    let stmts: Vec<u64> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Statement { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert!(
        stmts.len() > 100,
        "only {} statements survived",
        stmts.len()
    );
    assert!(stmts.iter().enumerate().all(|(i, s)| *s == i as u64 + 1));
    // The last statement recorded happened at most ~1 s (+ scheduling slack) before the kill.
    let last_ts = frames.iter().rev().find_map(|f| f.ts_us()).unwrap();
    let start_ts = frames[0].ts_us().unwrap();
    let recorded_span_ms = (last_ts - start_ts) / 1000;
    assert!(
        recorded_span_ms >= 1000,
        "recording covers {recorded_span_ms} ms of a 2.5 s session"
    );
}

#[test]
fn a_full_queue_drops_and_says_so_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RecordingConfig::new(dir.path());
    cfg.queue_batches = 1;
    let recordings = Recordings::start(cfg).unwrap();
    let rec = recordings.start_session(meta("burst"));
    let started = Instant::now();
    for seq in 1..=20_000u64 {
        rec.statement(seq, "select 1", "allow", None);
        rec.complete(seq, "SELECT 1", Some(1), Duration::ZERO);
    }
    let took = started.elapsed();
    let dropped = rec.dropped();
    let path = rec.path().to_path_buf();
    rec.flush();
    drop(rec);
    recordings.flush();
    let frames: Vec<Frame> = RecordingReader::open(&path).unwrap().collect();
    let reported: u64 = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Dropped { frames, .. } => Some(*frames),
            _ => None,
        })
        .sum();
    let kept = frames
        .iter()
        .filter(|f| matches!(f, Frame::Statement { .. } | Frame::Complete { .. }))
        .count() as u64;
    // Every frame is either in the file or counted as dropped (the End frame may be lost
    // with a full queue too).
    assert!(kept + dropped >= 40_000, "kept {kept} dropped {dropped}");
    assert!(reported <= dropped);
    eprintln!("20000 statements in {took:?}: {kept} frames kept, {dropped} dropped");
}

#[test]
fn retention_removes_old_date_directories_only() {
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400_000_000i64;
    let now = 1_795_478_400_000_000i64; // 2026-11-24
    for (date, files) in [("2026-11-01", 2), ("2026-11-20", 1), ("2026-11-24", 1)] {
        let d = dir.path().join(date);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..files {
            std::fs::write(d.join(format!("s{i}.alrec.zst")), b"x").unwrap();
        }
    }
    std::fs::create_dir_all(dir.path().join("not-a-date")).unwrap();
    let report = remove_older_than(dir.path(), 7, now).unwrap();
    assert_eq!(report.days, vec!["2026-11-01".to_string()]);
    assert_eq!(report.files, 2);
    assert!(dir.path().join("2026-11-20").exists());
    assert!(dir.path().join("not-a-date").exists());
    let report = remove_older_than(dir.path(), 0, now + day).unwrap();
    assert_eq!(report.days.len(), 2);
}

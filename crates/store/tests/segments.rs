//! Segments of the audit trail: rotation by size and age, one chain across segments,
//! compressed closed segments read transparently (and tampering in them caught), crash
//! recovery on the active segment, retention that waits for exporters, range verification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_store::segments::{self, Reader, Start};
use airlock_store::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn command(session: &str, seq: u64) -> AuditEvent {
    AuditEvent {
        session_id: Some(session.into()),
        identity: Some("claude-agent".into()),
        connection: Some("pg-prod".into()),
        command: Some(CommandRecord {
            seq,
            text: Some(format!("select * from public.users where id = {seq}")),
            operation: Some("select".into()),
            reads: vec!["public.users".into()],
            decision: Some("allow".into()),
            ..Default::default()
        }),
        ..AuditEvent::new(EventKind::Command)
    }
}

fn result(session: &str, seq: u64) -> AuditEvent {
    AuditEvent {
        session_id: Some(session.into()),
        command: Some(CommandRecord {
            seq,
            rows: Some(seq),
            duration_us: Some(42),
            ..Default::default()
        }),
        ..AuditEvent::new(EventKind::CommandResult)
    }
}

fn opts(max_bytes: u64) -> AuditOptions {
    AuditOptions {
        fsync: false,
        segments: SegmentOptions {
            max_bytes,
            max_age: None,
            compress: false,
        },
    }
}

/// A session with `n` statements, each appended as its own command then result.
fn run_statements(log: &AuditLog, session: &str, n: u64) {
    let mut start = AuditEvent::new(EventKind::SessionStart);
    start.session_id = Some(session.into());
    start.identity = Some("claude-agent".into());
    start.connection = Some("pg-prod".into());
    log.append(&[start]).unwrap();
    for i in 1..=n {
        log.append(&[command(session, i)]).unwrap();
        log.append(&[result(session, i)]).unwrap();
    }
}

fn closed(log: &Path) -> Vec<segments::Segment> {
    segments::list_closed(log).unwrap()
}

/// Every line of the trail, in order, through the segment reader.
fn all_seqs(log: &Path, start: Start) -> Vec<u64> {
    let mut r = Reader::open(log, start).unwrap();
    let mut out = vec![];
    while let Some(line) = r.next_line().unwrap() {
        let v: serde_json::Value = serde_json::from_slice(line.bytes).unwrap();
        out.push(v["seq"].as_u64().unwrap());
    }
    out
}

#[test]
fn rotation_at_a_small_size_keeps_one_chain_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(2000)).unwrap();
    run_statements(&log, "s1", 60);
    let segs = closed(&path);
    assert!(segs.len() >= 10, "{} closed segments", segs.len());
    let mut next = 1;
    for s in &segs {
        assert_eq!(s.first_seq, next, "segments are contiguous");
        next = s.last_seq.unwrap() + 1;
        let len = fs::metadata(&s.path).unwrap().len();
        assert!(len <= 2000, "{} is {len} bytes", s.path.display());
        assert!(!s.compressed);
    }
    // The first event of each segment chains to the last of the previous one.
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 121);
    assert_eq!(report.segments, segs.len() + 1);
    assert_eq!(
        all_seqs(&path, Start::Beginning),
        (1..=121).collect::<Vec<_>>()
    );
    assert_eq!(
        all_seqs(&path, Start::Seq(57)),
        (57..=121).collect::<Vec<_>>()
    );

    // A restart continues the chain in the active segment.
    let head = log.head();
    drop(log);
    let log = AuditLog::open(&path, opts(2000)).unwrap();
    assert_eq!(log.head(), head);
    log.append(&[command("s1", 61)]).unwrap();
    assert!(verify_log(&path).unwrap().is_ok());

    // The index sees every statement, reading events back from closed segments.
    let index = Index::open(&dir.path().join("state.db"), &path).unwrap();
    assert_eq!(index.catch_up().unwrap(), 122);
    let s1 = index.session("s1").unwrap().unwrap();
    assert_eq!(s1.commands.len(), 61);
    assert_eq!(s1.commands[0].rows, Some(1));
    assert_eq!(
        s1.commands[59].text.as_deref(),
        Some("select * from public.users where id = 60")
    );
    assert!(index.verify().unwrap().is_ok());
}

#[test]
fn rotation_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut o = opts(0);
    o.segments.max_age = Some(Duration::from_millis(50));
    let log = AuditLog::open(&path, o).unwrap();
    log.append(&[command("s", 1)]).unwrap();
    log.append(&[command("s", 2)]).unwrap();
    assert!(closed(&path).is_empty());
    std::thread::sleep(Duration::from_millis(80));
    log.append(&[command("s", 3)]).unwrap();
    let segs = closed(&path);
    assert_eq!(segs.len(), 1);
    assert_eq!((segs[0].first_seq, segs[0].last_seq), (1, Some(2)));
    assert!(verify_log(&path).unwrap().is_ok());
}

#[test]
fn an_existing_single_file_trail_becomes_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // A deployment from before segments: one file, indexed and exported by offset.
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    run_statements(&log, "old", 5);
    drop(log);
    let db = dir.path().join("state.db");
    let index = Index::open(&db, &path).unwrap();
    assert_eq!(index.catch_up().unwrap(), 11);

    let log = AuditLog::open(&path, opts(1500)).unwrap();
    run_statements(&log, "new", 20);
    assert!(!closed(&path).is_empty());
    assert_eq!(closed(&path)[0].first_seq, 1);
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    // The old index position (an offset in the old single file) still resumes correctly.
    assert_eq!(index.catch_up().unwrap(), 41);
    assert_eq!(index.session("old").unwrap().unwrap().commands.len(), 5);
    assert_eq!(index.session("new").unwrap().unwrap().commands.len(), 20);
    assert!(index.verify().unwrap().is_ok());
}

#[test]
fn compressed_segments_are_read_transparently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(4000)).unwrap();
    run_statements(&log, "s1", 80);
    let plain_bytes: u64 = closed(&path)
        .iter()
        .map(|s| fs::metadata(&s.path).unwrap().len())
        .sum();
    let n = log.compress_closed().unwrap();
    assert!(n >= 5);
    let segs = closed(&path);
    assert!(segs.iter().all(|s| s.compressed), "{segs:?}");
    let zst_bytes: u64 = segs
        .iter()
        .map(|s| fs::metadata(&s.path).unwrap().len())
        .sum();
    assert!(zst_bytes < plain_bytes, "{zst_bytes} >= {plain_bytes}");
    // Only the compressed files remain.
    for e in fs::read_dir(segments::segments_dir(&path)).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".log.zst"), "{name}");
    }

    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 161);
    assert_eq!(
        all_seqs(&path, Start::Seq(100)),
        (100..=161).collect::<Vec<_>>()
    );
    // A resume point in a compressed segment (seq and end offset of its line).
    let mut r = Reader::open(&path, Start::Beginning).unwrap();
    let mut at = (0, 0);
    while let Some(line) = r.next_line().unwrap() {
        let seq = segs[1].first_seq + 3;
        let v: serde_json::Value = serde_json::from_slice(line.bytes).unwrap();
        if v["seq"].as_u64() == Some(seq) {
            at = (seq, line.offset + line.bytes.len() as u64 + 1);
            break;
        }
    }
    assert_eq!(
        all_seqs(
            &path,
            Start::After {
                seq: at.0,
                offset: at.1
            }
        ),
        (at.0 + 1..=161).collect::<Vec<_>>()
    );

    // An index built after compression reads events back from the frames.
    let index = Index::open(&dir.path().join("state.db"), &path).unwrap();
    assert_eq!(index.catch_up().unwrap(), 161);
    let s1 = index.session("s1").unwrap().unwrap();
    assert_eq!(s1.commands.len(), 80);
    assert_eq!(
        s1.commands[2].text.as_deref(),
        Some("select * from public.users where id = 3")
    );
    assert!(index.verify().unwrap().is_ok());
    let hits = index
        .search(&CommandFilter {
            object: Some("users".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.len(), 80);
    assert!(hits.iter().all(|h| h.text.is_some()));

    // Compressing again is a no-op; an interrupted run (both files present) is finished.
    assert_eq!(log.compress_closed().unwrap(), 0);
}

#[test]
fn the_index_follows_rotation_and_compression_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(3000)).unwrap();
    let index = Index::open(&dir.path().join("state.db"), &path).unwrap();
    let mut total = 0;
    for round in 0..6 {
        let s = format!("s{round}");
        run_statements(&log, &s, 7);
        if round % 2 == 1 {
            log.compress_closed().unwrap();
        }
        total += index.catch_up().unwrap();
    }
    assert_eq!(total as u64, log.last_seq());
    for round in 0..6 {
        let s = index.session(&format!("s{round}")).unwrap().unwrap();
        assert_eq!(s.commands.len(), 7);
        assert!(s
            .commands
            .iter()
            .all(|c| c.text.is_some() && c.rows.is_some()));
    }
    assert!(index.verify().unwrap().is_ok());
}

/// Writes `lines` as the plain segment `name` in `dir` and compresses it there.
fn recompress(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let plain = dir.join(name);
    fs::write(&plain, text).unwrap();
    segments::compress_segment(&plain, false).unwrap();
    let mut z = plain.into_os_string();
    z.push(".zst");
    z.into()
}

fn decompress(path: &Path) -> String {
    let mut out = String::new();
    let name = path.file_name().unwrap().to_str().unwrap();
    let first: u64 = name[..20].parse().unwrap();
    let last: u64 = name[21..41].parse().unwrap();
    let log = path.parent().unwrap().parent().unwrap().join("audit.log");
    let mut r = Reader::open(&log, Start::Seq(first)).unwrap();
    while let Some(line) = r.next_line().unwrap() {
        let v: serde_json::Value = serde_json::from_slice(line.bytes).unwrap();
        let seq = v["seq"].as_u64().unwrap();
        if seq > last {
            break;
        }
        out.push_str(std::str::from_utf8(line.bytes).unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn tampering_in_a_closed_compressed_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(3000)).unwrap();
    run_statements(&log, "s1", 40);
    log.compress_closed().unwrap();
    drop(log);
    let segs = closed(&path);
    let victim = segs[2].clone();
    let original = fs::read(&victim.path).unwrap();

    // 1. A flipped byte in the compressed data: the frame no longer decompresses.
    let mut bytes = original.clone();
    bytes[20] ^= 0x55;
    fs::write(&victim.path, &bytes).unwrap();
    let report = verify_log(&path).unwrap();
    let (seq, why) = report
        .first_broken
        .clone()
        .expect("tampering must be detected");
    assert_eq!(seq, victim.first_seq, "{why}");

    // 2. Decompressed, edited and recompressed with a valid seek table: the chain catches it.
    fs::write(&victim.path, &original).unwrap();
    let text = decompress(&victim.path);
    let edited = text.replacen("where id = ", "where id = 1 or id = ", 1);
    assert_ne!(text, edited);
    let name = victim
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".zst")
        .to_string();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    let rebuilt = recompress(&work, &name, &edited);
    fs::copy(&rebuilt, &victim.path).unwrap();
    let report = verify_log(&path).unwrap();
    let (seq, why) = report
        .first_broken
        .expect("an edited event must be detected");
    assert!(seq >= victim.first_seq && seq <= victim.last_seq.unwrap());
    assert!(why.contains("edited"), "{why}");
}

#[test]
fn crash_recovery_on_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(2500)).unwrap();
    run_statements(&log, "s1", 20);
    let head = log.head();
    drop(log);
    // A torn last line in the active segment (a crash mid-write).
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":999,\"prev\":\"ab").unwrap();
    drop(f);
    let log = AuditLog::open(&path, opts(2500)).unwrap();
    assert!(log.recovered().is_some());
    assert_eq!(log.head(), head);
    run_statements(&log, "s2", 10);
    assert!(verify_log(&path).unwrap().is_ok());
    drop(log);

    // A crash between closing a segment (rename) and creating the new active file.
    let log = AuditLog::open(&path, opts(2500)).unwrap();
    assert!(log.rotate().unwrap());
    let head = log.head();
    drop(log);
    fs::remove_file(&path).unwrap();
    let log = AuditLog::open(&path, opts(2500)).unwrap();
    assert_eq!(
        log.head(),
        head,
        "the chain resumes from the last closed segment"
    );
    log.append(&[command("s3", 1)]).unwrap();
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, head.0 + 1);

    // And from a compressed one.
    assert!(log.rotate().unwrap());
    log.compress_closed().unwrap();
    let head = log.head();
    drop(log);
    fs::remove_file(&path).unwrap();
    let log = AuditLog::open(&path, opts(2500)).unwrap();
    assert_eq!(log.head(), head);
    log.append(&[command("s3", 2)]).unwrap();
    assert!(verify_log(&path).unwrap().is_ok());
}

#[test]
fn retention_removes_old_segments_but_never_unacknowledged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(2500)).unwrap();
    run_statements(&log, "s1", 40);
    log.compress_closed().unwrap();
    let index = Index::open(&dir.path().join("state.db"), &path).unwrap();
    index.catch_up().unwrap();
    let segs = closed(&path);
    assert!(segs.len() >= 6);
    let later = SystemTime::now() + Duration::from_secs(10);

    // Not old enough: nothing.
    assert!(log
        .apply_retention(Duration::from_secs(3600), None, SystemTime::now())
        .unwrap()
        .is_none());
    // An exporter acknowledged up to the middle of the third segment: the first two go.
    let acked = segs[2].first_seq + 1;
    let r = log
        .apply_retention(Duration::from_secs(1), Some(acked), later)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.segments, r.first_seq, r.last_seq),
        (2, 1, segs[1].last_seq.unwrap())
    );
    assert_eq!(r.held_for_exporters, segs.len() - 2);
    let kept = closed(&path);
    assert_eq!(kept.len(), segs.len() - 2);
    assert_eq!(kept[0].first_seq, segs[2].first_seq);
    // The removal is an audit event naming the range and the hash the rest chains from.
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.first_seq, segs[2].first_seq);
    assert_eq!(report.retention_seq, Some(r.event_seq));
    // An exporter that acknowledged nothing holds everything.
    assert!(log
        .apply_retention(Duration::from_secs(1), Some(0), later)
        .unwrap()
        .is_none());
    // The index drops what it can no longer show, and still verifies.
    index.catch_up().unwrap();
    assert!(index.verify().unwrap().is_ok());
    let s1 = index.session("s1").unwrap().unwrap();
    assert!(s1.commands.iter().all(|c| c.seq >= 3));

    // No exporters: every old closed segment goes; never the active one.
    let r = log
        .apply_retention(Duration::from_secs(1), None, later)
        .unwrap()
        .unwrap();
    // (The retention event itself may have closed one more segment, too new to go.)
    assert!(r.segments >= kept.len());
    assert!(kept.iter().all(|s| !s.path.exists()));
    assert!(path.exists(), "the active segment stays");
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    // A fresh index built from what is left.
    let fresh = Index::open(&dir.path().join("fresh.db"), &path).unwrap();
    fresh.catch_up().unwrap();
    assert!(fresh.verify().unwrap().is_ok());
    index.catch_up().unwrap();
    assert!(index.verify().unwrap().is_ok());
}

#[test]
fn a_segment_deleted_outside_retention_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(2500)).unwrap();
    run_statements(&log, "s1", 30);
    let segs = closed(&path);
    fs::remove_file(&segs[0].path).unwrap();
    let report = verify_log(&path).unwrap();
    let (seq, why) = report
        .first_broken
        .expect("a removed first segment must show");
    assert_eq!(seq, segs[1].first_seq);
    assert!(why.contains("audit_retention"), "{why}");
    // A segment removed from the middle breaks the chain where it was.
    let dir2 = tempfile::tempdir().unwrap();
    let path2 = dir2.path().join("audit.log");
    let log2 = AuditLog::open(&path2, opts(2500)).unwrap();
    run_statements(&log2, "s1", 30);
    let segs2 = closed(&path2);
    fs::remove_file(&segs2[2].path).unwrap();
    let (seq, _) = verify_log(&path2).unwrap().first_broken.unwrap();
    assert_eq!(seq, segs2[2].first_seq);
}

#[test]
fn a_range_verifies_without_reading_the_trail_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(3000)).unwrap();
    let key = CheckpointKey::load_or_create(dir.path()).unwrap();
    let public = key.public_hex();
    run_statements(&log, "s1", 60);
    let cp = spawn_checkpointer(
        log.clone(),
        key,
        CheckpointOptions {
            every_events: 1_000_000,
            every: Duration::from_secs(3600),
        },
    )
    .unwrap();
    cp.shutdown(); // a final checkpoint at the head
                   // The checkpoint covers the head before its own chained event.
    let signed = log.last_seq() - 1;
    run_statements(&log, "s2", 10);
    log.compress_closed().unwrap();
    drop(log);
    let cps = checkpoints_path(&path);

    // Damage the first segment: the whole trail no longer verifies...
    let first = closed(&path)[0].clone();
    let mut bytes = fs::read(&first.path).unwrap();
    bytes[30] ^= 0x01;
    fs::write(&first.path, bytes).unwrap();
    assert!(!verify_with_checkpoints(&path, &cps, Some(&public))
        .unwrap()
        .is_ok());
    // ...but a later range does, proven by the checkpoint after it, without reading it.
    let r = verify_range(&path, &cps, Some(&public), 60, Some(80)).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.chain.first_seq, 60);
    assert_eq!(r.last_checkpoint.as_ref().unwrap().seq, signed);
    assert_eq!(r.uncovered, 0);
    assert!(r.chain.events <= signed - 60 + 2);
    // A range after the last checkpoint chains, but nothing signed vouches for it.
    let r = verify_range(&path, &cps, Some(&public), signed + 3, None).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(r.uncovered > 0);

    // An edit inside the range is found.
    let seg = closed(&path)
        .into_iter()
        .find(|s| s.first_seq <= 70 && s.last_seq.unwrap() >= 70)
        .unwrap();
    let text = decompress(&seg.path);
    let edited = text.replace("where id = 35", "where id = 36");
    assert_ne!(text, edited, "seq 70 is statement 35's command");
    let name = seg
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".zst")
        .to_string();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::copy(recompress(&work, &name, &edited), &seg.path).unwrap();
    let r = verify_range(&path, &cps, Some(&public), 60, Some(80)).unwrap();
    assert_eq!(r.first_problem.unwrap().0, 70);
}

/// With `fsync`, appenders waiting for the group commit are released across rotations (the
/// fsync thread moves to the new segment), from several threads at once.
#[test]
fn concurrent_appends_with_fsync_rotate_into_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut o = opts(3000);
    o.fsync = true;
    o.segments.compress = true;
    let log = AuditLog::open(&path, o).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let log = log.clone();
            s.spawn(move || {
                let session = format!("t{t}");
                for i in 1..=40 {
                    log.append(&[command(&session, i)]).unwrap();
                    log.append_deferred(result(&session, i));
                }
            });
        }
    });
    log.flush().unwrap();
    assert!(closed(&path).len() >= 10);
    // A mix of plain and compressed segments (the background thread may still be at it).
    let report = verify_log(&path).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 320);
    drop(log);
    // A restart picks up where compression stopped.
    let log = AuditLog::open(&path, o).unwrap();
    log.compress_closed().unwrap();
    assert!(closed(&path).iter().all(|s| s.compressed));
    assert_eq!(verify_log(&path).unwrap().events, 320);
}

#[test]
fn a_time_finds_its_first_event_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, opts(2000)).unwrap();
    for i in 1..=60i64 {
        let mut ev = command("s", i as u64);
        ev.ts_us = 1_000_000 * i;
        log.append(&[ev]).unwrap();
    }
    log.compress_closed().unwrap();
    assert!(closed(&path).len() >= 5);
    assert_eq!(segments::seq_at_or_after(&path, 0).unwrap(), Some(1));
    assert_eq!(
        segments::seq_at_or_after(&path, 1_000_000).unwrap(),
        Some(1)
    );
    assert_eq!(
        segments::seq_at_or_after(&path, 1_000_001).unwrap(),
        Some(2)
    );
    for seq in [13u64, 29, 44, 60] {
        assert_eq!(
            segments::seq_at_or_after(&path, 1_000_000 * seq as i64 - 5).unwrap(),
            Some(seq)
        );
    }
    assert_eq!(segments::seq_at_or_after(&path, 61_000_000).unwrap(), None);
}

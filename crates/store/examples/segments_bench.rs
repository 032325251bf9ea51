//! Verification cost of a large segmented trail, whole and by range:
//! `cargo run --release -p airlock-store --example segments_bench -- [STATEMENTS] [SEGMENT_MIB]`
//! (default 500,000 statements, 64 MiB segments).
//!
//! Writes STATEMENTS pgbench-like statements (a `command` and its `command_result` each, with
//! a signed checkpoint every 10,000 events as the gateway does), closes and compresses the
//! segments, then times: compression, `verify_with_checkpoints` over everything,
//! `verify_range` of 1,000 events in the middle, and an index catch-up from scratch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_store::*;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let statements: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let segment_mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(
        &path,
        AuditOptions {
            fsync: false,
            segments: SegmentOptions {
                max_bytes: segment_mib << 20,
                max_age: None,
                compress: false,
            },
        },
    )
    .unwrap();
    let key = CheckpointKey::load_or_create(dir.path()).unwrap();
    let public = key.public_hex();
    let cp = spawn_checkpointer(
        log.clone(),
        key,
        CheckpointOptions {
            every_events: 10_000,
            every: Duration::from_secs(3600),
        },
    )
    .unwrap();
    let t = Instant::now();
    let mut start = AuditEvent::new(EventKind::SessionStart);
    start.session_id = Some("0193f1c2-7a4e-7c31-9b1e-5d2f8a6c4e01".into());
    start.identity = Some("claude-agent".into());
    start.connection = Some("pg-prod".into());
    log.append(&[start.clone()]).unwrap();
    for i in 1..=statements {
        let mut c = AuditEvent::new(EventKind::Command);
        c.session_id = start.session_id.clone();
        c.identity = start.identity.clone();
        c.connection = start.connection.clone();
        c.command = Some(CommandRecord {
            seq: i,
            text: Some(format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                i * 7919 % 100_000
            )),
            operation: Some("select".into()),
            reads: vec!["public.pgbench_accounts".into()],
            decision: Some("allow".into()),
            ..Default::default()
        });
        let mut r = AuditEvent::new(EventKind::CommandResult);
        r.session_id = start.session_id.clone();
        r.identity = start.identity.clone();
        r.connection = start.connection.clone();
        r.command = Some(CommandRecord {
            seq: i,
            rows: Some(1),
            duration_us: Some(180 + i % 97),
            ..Default::default()
        });
        log.append(&[c]).unwrap();
        log.append_deferred(r);
    }
    log.flush().unwrap();
    cp.shutdown();
    log.rotate().unwrap();
    let events = log.last_seq();
    println!(
        "wrote {statements} statements ({events} events) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let plain: u64 = segments::list_closed(&path)
        .unwrap()
        .iter()
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .sum();
    let t = Instant::now();
    let n = log.compress_closed().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let zst: u64 = segments::list_closed(&path)
        .unwrap()
        .iter()
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .sum();
    println!(
        "compressed {n} segments: {} MB -> {} MB ({:.1}x) in {secs:.1} s ({:.0} MB/s); {:.0} bytes per statement written, {:.0} kept",
        plain / 1_000_000,
        zst / 1_000_000,
        plain as f64 / zst as f64,
        plain as f64 / 1e6 / secs,
        plain as f64 / statements as f64,
        zst as f64 / statements as f64
    );
    drop(log);
    let cps = checkpoints_path(&path);
    let t = Instant::now();
    let r = verify_with_checkpoints(&path, &cps, Some(&public)).unwrap();
    assert!(r.is_ok(), "{:?}", r.first_problem);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "verify (whole trail, compressed): {} events, {} checkpoints in {secs:.2} s ({:.0} MB/s of log)",
        r.chain.events,
        r.checkpoints_ok,
        plain as f64 / 1e6 / secs
    );
    let from = events / 2;
    let t = Instant::now();
    let r = verify_range(&path, &cps, Some(&public), from, Some(from + 1000)).unwrap();
    assert!(r.is_ok(), "{:?}", r.first_problem);
    println!(
        "verify --from {from} --to {}: {} events read in {:.1} ms, anchored by the checkpoint at seq {}",
        from + 1000,
        r.chain.events,
        t.elapsed().as_secs_f64() * 1000.0,
        r.last_checkpoint.map_or(0, |c| c.seq)
    );
    let t = Instant::now();
    let index = Index::open(&dir.path().join("state.db"), &path).unwrap();
    let n = index.catch_up().unwrap();
    println!(
        "index catch-up from scratch over compressed segments: {n} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

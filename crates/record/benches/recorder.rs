//! What recording costs the relay: `cargo bench -p airlock-record --bench recorder`.
//!
//! Measures the data-path side only (the calls the relay makes); the writer thread compresses
//! and writes on another core. The pgbench -S statement shape: one statement, one column,
//! one row, complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_record::{Recorder, RecordingConfig, Recordings, SessionMeta};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn recorder(dir: &std::path::Path, max_rows: u64) -> (Recordings, Recorder) {
    let mut cfg = RecordingConfig::new(dir);
    cfg.max_rows = max_rows;
    cfg.max_bytes_per_statement = u64::MAX;
    cfg.queue_batches = 1 << 16;
    let recordings = Recordings::start(cfg).unwrap();
    let rec = recordings.start_session(SessionMeta {
        session_id: "bench".into(),
        ..SessionMeta::default()
    });
    (recordings, rec)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (recordings, rec) = recorder(dir.path(), u64::MAX);
    let row: [Option<&[u8]>; 4] = [
        Some(b"123456"),
        Some(b"alice@example.com"),
        None,
        Some(b"2026-11-24 00:31:02.123+00"),
    ];
    let mut g = c.benchmark_group("recorder");
    g.bench_function("row (4 columns, recorded)", |b| {
        b.iter(|| rec.row(1, &row));
    });
    let mut seq = 1u64;
    g.bench_function(
        "pgbench -S statement (statement+columns+row+complete)",
        |b| {
            b.iter(|| {
                seq += 1;
                rec.statement(
                    seq,
                    "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
                    "allow",
                    None,
                );
                rec.columns_aligned(seq, &["abalance"], &[true]);
                rec.row(seq, &[Some(b"-2817")]);
                rec.complete(seq, "SELECT 1", Some(1), Duration::from_micros(40));
            });
        },
    );
    // As in a real session: the writer has caught up and sleeps between statements, so
    // the relay's handover can wake it (what the flood above does not show).
    g.bench_function("pgbench -S statement, paced 100 µs apart", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(Duration::from_micros(100));
                seq += 1;
                let t = std::time::Instant::now();
                rec.statement(
                    seq,
                    "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
                    "allow",
                    None,
                );
                rec.columns_aligned(seq, &["abalance"], &[true]);
                rec.row(seq, &[Some(b"-2817")]);
                rec.complete(seq, "SELECT 1", Some(1), Duration::from_micros(40));
                timed += t.elapsed();
            }
            timed
        });
    });
    drop(rec);
    recordings.flush();
    let (recordings2, capped) = recorder(dir.path(), 0);
    capped.statement(1, "select * from big", "allow", None);
    g.bench_function("row beyond the cap (counted only)", |b| {
        b.iter(|| capped.row(1, &row));
    });
    let (recordings3, term) = recorder(dir.path(), 0);
    // An 80-byte line of shell output: coalesced into the pending chunk (a frame per 32 KiB
    // or 20 ms).
    let line = [b'x'; 80];
    g.bench_function("terminal_output, 80 bytes", |b| {
        b.iter(|| term.terminal_output(&line));
    });
    let body = vec![b'{'; 4096];
    let mut seq = 0u64;
    g.bench_function("request + response, 4 KiB bodies", |b| {
        b.iter(|| {
            seq += 1;
            term.request(
                seq,
                &airlock_record::Request {
                    method: "GET",
                    target: "/api/v1/namespaces/prod/pods",
                    headers: &[("accept", "application/json")],
                    body: &body,
                    decision: "allow",
                    ..Default::default()
                },
            );
            term.response(
                seq,
                &airlock_record::Response {
                    status: "200",
                    body: &body,
                    elapsed: Duration::from_micros(900),
                    ..Default::default()
                },
            );
        });
    });
    g.finish();
    drop(term);
    recordings3.flush();
    drop(capped);
    recordings2.flush();
    let bytes = recordings
        .stats()
        .bytes_written
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "dropped frames: {}; compressed bytes written: {bytes}",
        recordings
            .stats()
            .frames_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

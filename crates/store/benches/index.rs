//! Cost of indexing the audit log: `cargo bench -p airlock-store --bench index -- --quick`.
//!
//! Builds a pgbench-like log once (8 interleaved sessions, each statement a `command` event
//! followed by its deferred `command_result`), then times [`Index::catch_up`] over all of it
//! into a fresh database. Prints µs per event and bytes of `state.db` per event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_store::{AuditEvent, AuditLog, AuditOptions, CommandRecord, EventKind, Index};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::time::{Duration, Instant};

const SESSIONS: u64 = 8;
const EVENTS: u64 = 50_000;

fn session_id(s: u64) -> String {
    format!("0193f1c2-7a4e-7c31-9b1e-5d2f8a6c4e{s:02}")
}

fn session_start(s: u64) -> AuditEvent {
    AuditEvent {
        session_id: Some(session_id(s)),
        identity: Some("claude-agent".into()),
        connection: Some("pg-prod".into()),
        detail: Some(serde_json::json!({"peer": format!("10.0.0.7:{}", 51000 + s), "tls": false})),
        ..AuditEvent::new(EventKind::SessionStart)
    }
}

fn command_event(s: u64, seq: u64, aid: u64) -> AuditEvent {
    AuditEvent {
        session_id: Some(session_id(s)),
        identity: Some("claude-agent".into()),
        connection: Some("pg-prod".into()),
        command: Some(CommandRecord {
            seq,
            text: Some(format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
            )),
            operation: Some("select".into()),
            reads: vec!["public.pgbench_accounts".into()],
            decision: Some("allow".into()),
            ..Default::default()
        }),
        ..AuditEvent::new(EventKind::Command)
    }
}

fn result_event(s: u64, seq: u64) -> AuditEvent {
    AuditEvent {
        session_id: Some(session_id(s)),
        command: Some(CommandRecord {
            seq,
            rows: Some(1),
            duration_us: Some(60 + seq % 50),
            ..Default::default()
        }),
        ..AuditEvent::new(EventKind::CommandResult)
    }
}

fn build_log(path: &Path) -> u64 {
    let log = AuditLog::open(path, AuditOptions::default()).unwrap();
    for s in 0..SESSIONS {
        log.append(&[session_start(s)]).unwrap();
    }
    let mut seq = 0;
    let mut aid = 0x9e37_79b9_u64;
    while log.last_seq() + 2 * SESSIONS <= EVENTS - SESSIONS {
        seq += 1;
        for s in 0..SESSIONS {
            aid = aid.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            log.append(&[command_event(s, seq, aid % 100_000 + 1)])
                .unwrap();
            // As in the gateway: the result rides along with the next append.
            log.append_deferred(result_event(s, seq));
        }
    }
    for s in 0..SESSIONS {
        log.append(&[AuditEvent {
            session_id: Some(session_id(s)),
            ..AuditEvent::new(EventKind::SessionEnd)
        }])
        .unwrap();
    }
    log.flush().unwrap()
}

/// CPU time of the calling thread (Linux: the first field of schedstat, in ns), so that the
/// figure does not depend on what else the machine is running.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn bench_index(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(
        std::env::var_os("AIRLOCK_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    let log_path = dir.path().join("audit.log");
    let events = build_log(&log_path);
    let log_bytes = file_len(&log_path);
    eprintln!(
        "log: {events} events, {log_bytes} bytes ({:.0} B/event)",
        log_bytes as f64 / events as f64
    );

    let mut run = 0u32;
    let mut db_bytes = 0;
    let mut group = c.benchmark_group("index_catch_up");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.bench_function("fresh_index", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut cpu = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let db = dir.path().join(format!("state-{run}.db"));
                let index = Index::open(&db, &log_path).unwrap();
                let start = Instant::now();
                let cpu_start = thread_cpu();
                let added = index.catch_up().unwrap();
                total += start.elapsed();
                if let (Some(end), Some(start)) = (thread_cpu(), cpu_start) {
                    cpu += end.saturating_sub(start);
                }
                assert_eq!(added as u64, events);
                // Closing the last connection checkpoints the WAL into the main file.
                drop(index);
                db_bytes = file_len(&db);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                }
            }
            eprintln!(
                "  {iters} run(s): {:.2} µs/event ({:.2} µs CPU), state.db {:.0} B/event",
                total.as_secs_f64() * 1e6 / (iters * events) as f64,
                cpu.as_secs_f64() * 1e6 / (iters * events) as f64,
                db_bytes as f64 / events as f64
            );
            total
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench_index
}
criterion_main!(benches);

//! Cost of recording one SQL statement: `cargo bench -p airlock-store --bench append`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_store::{AuditEvent, AuditLog, AuditOptions, CommandRecord, EventKind};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};

fn command_event(seq: u64) -> AuditEvent {
    AuditEvent {
        ts_us: AuditEvent::now_us(),
        kind: EventKind::Command,
        session_id: Some("0193f1c2-7a4e-7c31-9b1e-5d2f8a6c4e10".into()),
        identity: Some("claude-agent".into()),
        connection: Some("pg-prod".into()),
        command: Some(CommandRecord {
            seq,
            text: Some("SELECT abalance FROM pgbench_accounts WHERE aid = $1".into()),
            operation: Some("select".into()),
            reads: vec!["public.pgbench_accounts".into()],
            decision: Some("allow".into()),
            ..Default::default()
        }),
        detail: None,
    }
}

fn result_event(seq: u64) -> AuditEvent {
    AuditEvent {
        command: Some(CommandRecord {
            seq,
            rows: Some(1),
            duration_us: Some(85),
            ..Default::default()
        }),
        session_id: Some("0193f1c2-7a4e-7c31-9b1e-5d2f8a6c4e10".into()),
        ..AuditEvent::new(EventKind::CommandResult)
    }
}

fn bench_append(c: &mut Criterion) {
    let dir =
        tempfile::tempdir_in(std::env::var_os("AIRLOCK_BENCH_DIR").unwrap_or_else(|| ".".into()))
            .unwrap();
    let mut group = c.benchmark_group("audit_append_one_command");
    for fsync in [false, true] {
        let path = dir.path().join(format!("audit-fsync-{fsync}.log"));
        let log = AuditLog::open(
            &path,
            AuditOptions {
                fsync,
                ..Default::default()
            },
        )
        .unwrap();
        let mut seq = 0;
        group.bench_function(if fsync { "fsync_on" } else { "fsync_off" }, |b| {
            b.iter(|| {
                seq += 1;
                log.append(&[command_event(seq)]).unwrap()
            })
        });
        if !fsync {
            // The statement's full audit cost: its command event plus its deferred result.
            group.bench_function("fsync_off_with_deferred_result", |b| {
                b.iter(|| {
                    seq += 1;
                    log.append(&[command_event(seq)]).unwrap();
                    log.append_deferred(result_event(seq));
                })
            });
        }
        eprintln!("fsync={fsync}: {:?}", log.stats());
    }
    group.finish();

    // Group commit: 8 appenders share each fdatasync. Reported as time per append, i.e. the
    // inverse of aggregate throughput; per-caller latency is about 8x this.
    let mut group = c.benchmark_group("audit_append_fsync_8_threads");
    let path = dir.path().join("audit-fsync-concurrent.log");
    let log = AuditLog::open(
        &path,
        AuditOptions {
            fsync: true,
            ..Default::default()
        },
    )
    .unwrap();
    group.bench_function("per_append", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(8).max(1);
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..8 {
                    let log = log.clone();
                    s.spawn(move || {
                        for i in 0..per_thread {
                            log.append(&[command_event(i)]).unwrap();
                        }
                    });
                }
            });
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_thread * 8) as f64)
        })
    });
    group.finish();
    let stats = log.stats();
    eprintln!(
        "fsync 8 threads: {stats:?} ({:.1} appends per fdatasync)",
        stats.writes as f64 / stats.fsyncs.max(1) as f64
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bench_append
}
criterion_main!(benches);

//! Classification cost: a cache hit, a miss on a pgbench-like statement, a 350 KiB `IN` list
//! and a 20-join query.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_sql::{classify_pg, PgClassifier};
use criterion::{criterion_group, criterion_main, Criterion};

const PGBENCH: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;";

fn twenty_joins() -> String {
    let mut sql = String::from("SELECT t0.id");
    for i in 1..=20 {
        sql.push_str(&format!(", t{i}.v"));
    }
    sql.push_str(" FROM t0");
    for i in 1..=20 {
        sql.push_str(&format!(" JOIN t{i} ON t{i}.id = t{}.id", i - 1));
    }
    sql.push_str(" WHERE t0.id > 10 ORDER BY t0.id LIMIT 100");
    sql
}

fn bench(c: &mut Criterion) {
    let classifier = PgClassifier::new(10_000);
    classifier.classify(PGBENCH);
    // Different literal each time: normalization makes every call a hit.
    let counter = AtomicU64::new(0);
    c.bench_function("cached hit (pgbench -S, varying aid)", |b| {
        b.iter(|| {
            let aid = counter.fetch_add(1, Ordering::Relaxed);
            let sql = format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                aid % 100_000
            );
            black_box(classifier.classify(black_box(&sql)))
        })
    });
    c.bench_function("miss (pgbench -S, uncached parse)", |b| {
        b.iter(|| black_box(classify_pg(black_box(PGBENCH))))
    });
    let mut in_list = String::from("SELECT * FROM t WHERE id IN (");
    for id in 100_000..144_000 {
        in_list.push_str(&format!("{id}, "));
    }
    in_list.push_str("0)");
    c.bench_function("miss (350 KiB IN list)", |b| {
        b.iter(|| black_box(classify_pg(black_box(&in_list))))
    });
    let joins = twenty_joins();
    c.bench_function("miss (20-join query)", |b| {
        b.iter(|| black_box(classify_pg(black_box(&joins))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

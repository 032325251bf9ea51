#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

//! The classifier's time and memory on big statements are bounded (issue 14: a 390 KiB
//! `IN (...)` list took the gateway from 19 MB to 700 MB, a 4 MB one to 2.7 GB and 20 s).
//! This file is its own test binary with one test, so that the process's peak RSS (reset
//! through `/proc/self/clear_refs` before each measurement, Linux) sees only the classifier.
//! (The workspace forbids `unsafe`, so no counting allocator.)

use std::time::{Duration, Instant};

use airlock_core::{Classification, Operation};
use airlock_sql::{classify_pg, PgClassifier, MAX_CLASSIFIED_BYTES, MAX_CLASSIFIED_TOKENS};

fn in_list(bytes: usize) -> String {
    let mut sql = String::with_capacity(bytes + 16);
    sql.push_str("SELECT * FROM t WHERE id IN (");
    let mut id = 100_000u64;
    while sql.len() < bytes - 10 {
        if id > 100_000 {
            sql.push_str(", ");
        }
        sql.push_str(&id.to_string());
        id += 1;
    }
    sql.push(')');
    sql
}

fn rss_field(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Classifies `sql`: the result, the time, and how far the process's peak RSS rose above the
/// RSS before the call (`None` where /proc cannot tell).
fn measure(sql: &str) -> (Classification, Duration, Option<usize>) {
    // "5" resets the peak RSS (VmHWM) to the current RSS.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = rss_field("VmRSS:");
    let started = Instant::now();
    let classification = classify_pg(sql);
    let elapsed = started.elapsed();
    let growth = match (reset, before, rss_field("VmHWM:")) {
        (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before)),
        _ => None,
    };
    (classification, elapsed, growth)
}

fn mib(bytes: Option<usize>) -> String {
    bytes.map_or("unknown".into(), |b| format!("{} MiB", b >> 20))
}

/// `SELECT * FROM t WHERE id IN (100000, 100001, ...)` with `items` ids.
fn in_list_of(items: usize) -> String {
    let mut sql = String::from("SELECT * FROM t WHERE id IN (");
    for id in 100_000..100_000 + items {
        if id > 100_000 {
            sql.push_str(", ");
        }
        sql.push_str(&id.to_string());
    }
    sql.push(')');
    sql
}

#[test]
fn big_statements_are_classified_within_time_and_memory_bounds() {
    // 390 KiB, the size from the issue (700 MB and 4.2 s before the fix).
    let sql = in_list(390 * 1024);
    let (c, elapsed, growth) = measure(&sql);
    println!(
        "{} bytes: {elapsed:?}, peak RSS +{}",
        sql.len(),
        mib(growth)
    );
    assert!(!c.unparsed && !c.writes_data(), "{:?}", c.parse_error);
    assert!(growth.is_none_or(|g| g < 200 << 20), "+{}", mib(growth));

    // Just under the token limit (an IN list of ~100,000 ids, 0.8 MB): still classified.
    let sql = in_list_of(MAX_CLASSIFIED_TOKENS / 2 - 10);
    let (c, elapsed, growth) = measure(&sql);
    println!(
        "{} bytes: {elapsed:?}, peak RSS +{}",
        sql.len(),
        mib(growth)
    );
    assert!(!c.unparsed, "{:?}", c.parse_error);
    assert_eq!(c.statements.len(), 1);
    assert_eq!(c.statements[0].operation, Operation::Select);
    assert!(!c.writes_data() && !c.dynamic_sql());
    assert_eq!(c.statements[0].reads, vec!["t".to_string()]);
    // Generous bounds (debug build, loaded machine); docs/guardrails.md has the numbers.
    assert!(growth.is_none_or(|g| g < 600 << 20), "+{}", mib(growth));
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");

    // 4 MB (2.7 GB and 20 s before the fix): over the token limit, refused before the parser
    // sees it, at once and without memory. Fails closed.
    let sql = in_list(MAX_CLASSIFIED_BYTES - 100);
    assert!(sql.len() > 4_000_000);
    let (c, elapsed, growth) = measure(&sql);
    println!(
        "{} bytes: {elapsed:?}, peak RSS +{}",
        sql.len(),
        mib(growth)
    );
    assert!(c.unparsed);
    assert!(c.writes_data() && c.dynamic_sql());
    let error = c.parse_error.clone().unwrap();
    assert!(
        error.contains("tokens is over the classifier's limit"),
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(growth.is_none_or(|g| g < 16 << 20), "+{}", mib(growth));

    // Over the byte limit, even with few tokens (one big string literal).
    let sql = format!("SELECT '{}'", "x".repeat(MAX_CLASSIFIED_BYTES));
    let (c, elapsed, _) = measure(&sql);
    assert!(c.unparsed);
    let error = c.parse_error.clone().unwrap();
    assert!(
        error.contains("bytes is over the classifier's limit"),
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The cache does not keep refused text either.
    let classifier = PgClassifier::new(16);
    assert!(classifier.classify(&sql).unparsed);
    assert!(classifier.is_empty());

    // A big literal under the limits is one token: a 3 MB document still classifies.
    let sql = format!("SELECT length('{}')", "word, ".repeat(500_000));
    let (c, _, _) = measure(&sql);
    assert!(!c.unparsed && !c.writes_data(), "{:?}", c.parse_error);
}

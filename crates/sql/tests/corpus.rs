#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

//! Runs `tests/corpus/pg_adversarial.txt` through the classifier (uncached and cached) and fails
//! listing every case that was misclassified.

use airlock_core::{Classification, Operation};
use airlock_sql::{classify_pg, pg_leaves_read_only, PgClassifier};

const CORPUS: &str = include_str!("corpus/pg_adversarial.txt");
const READ_ONLY_TOGGLES: &str = include_str!("corpus/pg_read_only_toggles.txt");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Write,
    Drop,
    Truncate,
    Dynamic,
    Read,
}

fn cases() -> Vec<(usize, Expect, String)> {
    let mut cases = Vec::new();
    for (index, line) in CORPUS.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (expect, sql) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("line {}: no `|`", index + 1));
        let expect = match expect {
            "write" => Expect::Write,
            "drop" => Expect::Drop,
            "truncate" => Expect::Truncate,
            "dynamic" => Expect::Dynamic,
            "read" => Expect::Read,
            other => panic!("line {}: unknown expectation {other:?}", index + 1),
        };
        cases.push((index + 1, expect, sql.replace("{NL}", "\n")));
    }
    cases
}

fn has_operation(c: &Classification, op: Operation) -> bool {
    c.statements.iter().any(|s| s.operation == op)
}

fn satisfied(expect: Expect, c: &Classification) -> bool {
    match expect {
        // Unparsed text fails closed, which is what a write expectation asks for.
        Expect::Write => c.writes_data(),
        Expect::Drop => c.writes_data() && (has_operation(c, Operation::Drop) || c.unparsed),
        Expect::Truncate => {
            c.writes_data() && (has_operation(c, Operation::Truncate) || c.unparsed)
        }
        Expect::Dynamic => c.writes_data() && c.dynamic_sql(),
        Expect::Read => !c.unparsed && !c.writes_data() && !c.dynamic_sql(),
    }
}

#[test]
fn adversarial_corpus() {
    let cases = cases();
    let cached = PgClassifier::new(1024);
    let mut misses = Vec::new();
    let mut failed_closed = Vec::new();
    let (mut writes_total, mut writes_caught, mut reads_total, mut reads_passed) = (0, 0, 0, 0);
    for (line, expect, sql) in &cases {
        let uncached = classify_pg(sql);
        let from_cache = cached.classify(sql);
        if *from_cache != uncached {
            misses.push(format!("line {line}: cache disagrees for {sql:?}"));
        }
        let ok = satisfied(*expect, &uncached);
        if uncached.unparsed {
            failed_closed.push(format!("line {line}: {sql:?}"));
        }
        if *expect == Expect::Read {
            reads_total += 1;
            reads_passed += usize::from(ok);
        } else {
            writes_total += 1;
            writes_caught += usize::from(ok);
        }
        if !ok {
            misses.push(format!(
                "line {line}: expected {expect:?} for {sql:?}, got {:?}",
                uncached
            ));
        }
    }
    println!(
        "writes caught {writes_caught}/{writes_total}, reads passed {reads_passed}/{reads_total}"
    );
    println!(
        "{} cases caught only by failing closed (unparsed):\n{}",
        failed_closed.len(),
        failed_closed.join("\n")
    );
    assert!(writes_total >= 170, "corpus needs at least 170 write cases");
    assert!(reads_total >= 150, "corpus needs at least 150 read cases");
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

#[test]
fn a_second_pass_through_the_cache_still_agrees() {
    // Classify everything twice with literals changed, so hits on normalized keys are exercised.
    let cached = PgClassifier::new(4096);
    for (_, _, sql) in cases() {
        cached.classify(&sql);
    }
    for (line, _, sql) in cases() {
        let varied = sql.replace('1', "7").replace("'x'", "'other'");
        assert_eq!(
            *cached.classify(&varied),
            classify_pg(&varied),
            "line {line}: {varied:?}"
        );
    }
}

#[test]
fn read_only_toggles_corpus() {
    let mut misses = Vec::new();
    let (mut leaves, mut keeps) = (0, 0);
    for (index, line) in READ_ONLY_TOGGLES.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (expect, sql) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("line {}: no `|`", index + 1));
        let expected = match expect {
            "leaves" => {
                leaves += 1;
                true
            }
            "keeps" => {
                keeps += 1;
                false
            }
            other => panic!("line {}: unknown expectation {other:?}", index + 1),
        };
        if pg_leaves_read_only(sql) != expected {
            misses.push(format!("line {}: expected {expect} for {sql:?}", index + 1));
        }
    }
    assert!(
        leaves >= 30 && keeps >= 15,
        "{leaves} leaves, {keeps} keeps"
    );
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

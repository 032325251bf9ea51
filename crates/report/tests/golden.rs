//! The Markdown and CSV renderings of the fixed history, compared byte for byte with the files
//! in `tests/golden/`. After an intended change, regenerate them and read the diff:
//! `AIRLOCK_UPDATE_GOLDEN=1 cargo test -p airlock-report --test golden`.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use airlock_report::render::{render, Format};
use std::path::PathBuf;

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("AIRLOCK_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with AIRLOCK_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n expected: {:?}\n   actual: {:?}\nregenerate with AIRLOCK_UPDATE_GOLDEN=1 if the change is intended",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

fn report() -> airlock_report::Report {
    let config = common::config();
    let policy = common::compile_policy(&config);
    let mut opts = common::options(&config);
    opts.policy = Some(&policy);
    let h = common::history();
    airlock_report::build(opts, h.events.iter().map(|(s, e)| (*s, e)))
}

#[test]
fn markdown_matches_the_golden_file() {
    check("report.md", &render(&report(), Format::Markdown));
}

#[test]
fn csv_matches_the_golden_file() {
    check("report.csv", &render(&report(), Format::Csv));
}

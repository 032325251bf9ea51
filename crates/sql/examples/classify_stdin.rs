//! Classifies the PostgreSQL text read from stdin and prints the outcome and the time it took.
//! Used to measure the classifier's cost on big statements, e.g.
//! `/usr/bin/time -v cargo run --release -p airlock-sql --example classify_stdin < big.sql`.

use std::io::Read;
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let mut sql = String::new();
    std::io::stdin().read_to_string(&mut sql)?;
    let started = Instant::now();
    let classification = airlock_sql::classify_pg(&sql);
    let elapsed = started.elapsed();
    println!(
        "{} bytes: {} statement(s), unparsed {}, writes {}, dynamic {}, error {:?}, {:?}",
        sql.len(),
        classification.statements.len(),
        classification.unparsed,
        classification.writes_data(),
        classification.dynamic_sql(),
        classification.parse_error,
        elapsed
    );
    Ok(())
}

//! The adversarial corpora (PostgreSQL and MySQL) through the real path a statement takes: the
//! protocol's classifier and the compiled policy of a real config, with a "no writes" rule for
//! agents and a "no destructive DDL" rule. Every write must be denied (destructive DDL by the DDL
//! rule), every harmless read allowed. Prints both rates; they are quoted in docs/benchmarks.md
//! and docs/mysql.md.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_config::{load_str, StaticEnv};
use airlock_core::policy::{ConnectionRef, Request};
use airlock_core::{Action, Classification, Identity, IdentityKind};

const RULES: &str = r#"
[[rules]]
name = "no-destructive-ddl"
connections = { tags = { env = "prod" } }
operations = ["drop", "truncate"]
action = "deny"

[[rules]]
name = "agents-read-only"
agents = true
writes = true
action = "deny"
"#;

struct Outcome {
    writes: usize,
    writes_denied: usize,
    reads: usize,
    reads_allowed: usize,
    misses: Vec<String>,
}

/// Judges every `expect|sql` line of `corpus` for an agent on a `kind` connection.
fn run(kind: &str, address: &str, corpus: &str, classify: fn(&str) -> Classification) -> Outcome {
    let toml = format!(
        "[[connections]]\nname = \"prod\"\ntype = \"{kind}\"\naddress = \"{address}\"\n\
         tags = {{ env = \"prod\" }}\nallow_groups = [\"ai-agents\"]\n{RULES}"
    );
    let config = load_str(&toml, "corpus.toml", &StaticEnv::new()).unwrap();
    let policy = airlock_gate::compile_policy(&config);
    let conn = config.connection("prod").unwrap();
    let agent = Identity {
        name: "claude".into(),
        kind: IdentityKind::Service,
        groups: vec!["ai-agents".into()],
        agent: true,
    };
    let mut o = Outcome {
        writes: 0,
        writes_denied: 0,
        reads: 0,
        reads_allowed: 0,
        misses: Vec::new(),
    };
    for line in corpus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (expect, sql) = line.split_once('|').unwrap();
        let sql = sql.replace("{NL}", "\n");
        let classification = classify(&sql);
        let decision = policy.decide(&Request {
            identity: &agent,
            connection: ConnectionRef {
                name: &conn.name,
                tags: Some(&conn.tags),
            },
            classification: &classification,
            text: &sql,
            minute_of_day: 600,
            weekday: 2,
        });
        if expect == "read" {
            o.reads += 1;
            if decision.action == Action::Allow {
                o.reads_allowed += 1;
            } else {
                o.misses
                    .push(format!("read blocked by {:?}: {sql}", decision.rule));
            }
        } else {
            o.writes += 1;
            let ddl_ok = !matches!(expect, "drop" | "truncate")
                || decision.matched.iter().any(|r| r == "no-destructive-ddl");
            if decision.action == Action::Deny && ddl_ok {
                o.writes_denied += 1;
            } else {
                o.misses.push(format!(
                    "{expect} not stopped ({:?}, matched {:?}): {sql}",
                    decision.action, decision.matched
                ));
            }
        }
    }
    o
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name}: writes denied {}/{}, reads allowed {}/{}",
        o.writes_denied, o.writes, o.reads_allowed, o.reads
    );
    assert!(
        o.misses.is_empty(),
        "{} misses:\n{}",
        o.misses.len(),
        o.misses.join("\n")
    );
}

#[test]
fn every_write_is_denied_and_every_read_allowed() {
    let o = run(
        "postgres",
        "127.0.0.1:5432",
        include_str!("../../sql/tests/corpus/pg_adversarial.txt"),
        airlock_sql::classify_pg,
    );
    assert!(
        o.writes >= 150 && o.reads >= 150,
        "corpus too small: {} writes, {} reads",
        o.writes,
        o.reads
    );
    report("guardrail corpus", &o);
}

#[test]
fn every_mysql_write_is_denied_and_every_read_allowed() {
    let o = run(
        "mysql",
        "127.0.0.1:3306",
        include_str!("../../sql/tests/corpus/mysql_adversarial.txt"),
        airlock_sql::mysql::classify_mysql,
    );
    assert!(o.writes >= 100, "corpus too small: {} writes", o.writes);
    report("mysql guardrail corpus", &o);
}

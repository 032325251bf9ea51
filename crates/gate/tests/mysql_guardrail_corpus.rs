//! The MySQL adversarial corpus through the real path a statement takes: the MySQL classifier
//! and the compiled policy of a real config with a "no writes" rule for agents and a "no
//! destructive DDL" rule. Every write must be denied (destructive DDL by the DDL rule), every
//! harmless read allowed.

use airlock_config::{load_str, StaticEnv};
use airlock_core::policy::{ConnectionRef, Request};
use airlock_core::{Action, Identity, IdentityKind};

const CONFIG: &str = r#"
[[connections]]
name = "my-prod"
type = "mysql"
address = "127.0.0.1:3306"
tags = { env = "prod" }
allow_groups = ["ai-agents"]

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

#[test]
fn every_write_is_denied_and_every_read_allowed() {
    let config = load_str(CONFIG, "corpus.toml", &StaticEnv::new()).unwrap();
    let policy = airlock_gate::compile_policy(&config);
    let conn = config.connection("my-prod").unwrap();
    let agent = Identity {
        name: "claude".into(),
        kind: IdentityKind::Service,
        groups: vec!["ai-agents".into()],
        agent: true,
    };
    let corpus = include_str!("../../sql/tests/corpus/mysql_adversarial.txt");
    let (mut writes, mut writes_denied, mut reads, mut reads_allowed) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    for line in corpus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (expect, sql) = line.split_once('|').unwrap();
        let sql = sql.replace("{NL}", "\n");
        let classification = airlock_sql::mysql::classify_mysql(&sql);
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
        match expect {
            "read" => {
                reads += 1;
                if decision.action == Action::Allow {
                    reads_allowed += 1;
                } else {
                    misses.push(format!("read blocked by {:?}: {sql}", decision.rule));
                }
            }
            _ => {
                writes += 1;
                let ddl_ok = !matches!(expect, "drop" | "truncate")
                    || decision.matched.iter().any(|r| r == "no-destructive-ddl");
                if decision.action == Action::Deny && ddl_ok {
                    writes_denied += 1;
                } else {
                    misses.push(format!(
                        "{expect} not stopped ({:?}, matched {:?}): {sql}",
                        decision.action, decision.matched
                    ));
                }
            }
        }
    }
    println!("mysql guardrail corpus: writes denied {writes_denied}/{writes}, reads allowed {reads_allowed}/{reads}");
    assert!(writes >= 100, "corpus too small: {writes} writes");
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

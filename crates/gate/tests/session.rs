//! The gate in process: a config in, a session out, commands admitted, recorded and held for
//! review, with no socket and no adapter. Rules and the admission pipeline are tested here;
//! adapters only have to show they call it.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_config::{load_str, StaticEnv};
use airlock_core::{Action, ConnectionType, Identity, IdentityKind};
use airlock_gate::{Classifiers, Gate, GateError, SessionGate};
use airlock_store::{AuditLog, AuditOptions};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    gate: Arc<Gate>,
    dir: tempfile::TempDir,
}

const CONNECTIONS: &str = r#"
[[connections]]
name = "pg"
type = "postgres"
address = "127.0.0.1:1"
tags = { team = "core" }
allow_groups = ["ai-agents", "dba"]

[[connections]]
name = "pg-other"
type = "postgres"
address = "127.0.0.1:1"
tags = { team = "core" }
allow_groups = ["ai-agents"]

[[connections]]
name = "my"
type = "mysql"
address = "127.0.0.1:1"
allow_groups = ["ai-agents"]

[[connections]]
name = "box"
type = "ssh"
address = "127.0.0.1:1"
allow_groups = ["ai-agents"]
"#;

fn fixture(rules: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let toml = format!(
        "[gateway]\ndata_dir = \"{}\"\n\n[reviews]\nhold = \"5s\"\n{CONNECTIONS}\n{rules}",
        data.display()
    );
    let config = load_str(&toml, "test.toml", &StaticEnv::new()).unwrap();
    let audit = AuditLog::open(&config.audit.path, AuditOptions::default()).unwrap();
    let classifiers = Classifiers::new()
        .register(
            ConnectionType::Postgres,
            Arc::new(airlock_sql::PgClassifier::new(64)),
        )
        .register(
            ConnectionType::Mysql,
            Arc::new(airlock_sql::mysql::MySqlClassifier::new(64)),
        );
    let gate = Gate::new(config, audit, classifiers).unwrap();
    Fixture { gate, dir }
}

fn agent() -> Identity {
    Identity {
        name: "claude".into(),
        kind: IdentityKind::Service,
        groups: vec!["ai-agents".into()],
        agent: true,
    }
}

fn dba() -> Identity {
    Identity {
        name: "alice".into(),
        kind: IdentityKind::Human,
        groups: vec!["dba".into()],
        agent: false,
    }
}

impl Fixture {
    fn open(
        &self,
        who: Identity,
        connection: &str,
        kind: ConnectionType,
    ) -> Result<SessionGate, GateError> {
        self.gate.open_session(
            who,
            connection,
            kind,
            "127.0.0.1:5000".parse().unwrap(),
            false,
        )
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data").join("audit.log")).unwrap_or_default()
    }
}

async fn admit(session: &SessionGate, text: &str) -> (Action, bool) {
    let a = session
        .admit(
            text,
            |_| {},
            async || Ok::<(), Infallible>(()),
            async |_, _| {},
        )
        .await
        .unwrap();
    (a.judged.decision.action, a.reviewed)
}

const READ_ONLY_AGENTS: &str = r#"
[[rules]]
name = "agents-read-only"
agents = true
writes = true
action = "deny"
"#;

const REVIEW_DELETES: &str = r#"
[[rules]]
name = "review-deletes"
operations = ["delete"]
action = "review"
reviewers = ["dba"]
"#;

#[tokio::test]
async fn each_connection_type_is_judged_by_its_own_classifier() {
    let f = fixture(READ_ONLY_AGENTS);
    let pg = f.open(agent(), "pg", ConnectionType::Postgres).unwrap();
    let my = f.open(agent(), "my", ConnectionType::Mysql).unwrap();
    // `#` starts a comment in MySQL only: PostgreSQL sees an operator and fails closed.
    assert_eq!(
        admit(&my, "select 1 # ; delete from t").await.0,
        Action::Allow
    );
    assert_eq!(admit(&pg, "select 1; delete from t").await.0, Action::Deny);
    // Backticks quote identifiers in MySQL; PostgreSQL cannot parse them: unparsed, a write.
    assert_eq!(admit(&my, "select `a` from t").await.0, Action::Allow);
    assert_eq!(admit(&pg, "select `a` from t").await.0, Action::Deny);
}

#[tokio::test]
async fn a_connection_type_without_a_classifier_is_refused_not_judged() {
    let f = fixture("");
    match f.open(agent(), "box", ConnectionType::Ssh) {
        Err(GateError::NoClassifier { connection, kind }) => {
            assert_eq!((connection.as_str(), kind), ("box", "ssh"));
        }
        other => panic!(
            "expected NoClassifier, got {:?}",
            other.map(|s| s.id().to_owned())
        ),
    }
}

#[tokio::test]
async fn a_rule_for_one_named_connection_does_not_apply_to_another_with_its_tags() {
    let f = fixture(
        r#"
[policy]
default_action = "deny"

[[rules]]
name = "only-pg"
connections = { names = ["pg"], tags = { team = "core" } }
action = "allow"
"#,
    );
    let pg = f.open(agent(), "pg", ConnectionType::Postgres).unwrap();
    let other = f
        .open(agent(), "pg-other", ConnectionType::Postgres)
        .unwrap();
    assert_eq!(admit(&pg, "select 1").await.0, Action::Allow);
    assert_eq!(admit(&other, "select 1").await.0, Action::Deny);
}

#[tokio::test]
async fn the_adapters_guard_runs_before_a_review_is_opened() {
    let f = fixture(REVIEW_DELETES);
    let s = f.open(agent(), "pg", ConnectionType::Postgres).unwrap();
    let a = s
        .admit(
            "delete from t where id = 1",
            |j| j.force_deny("refused by the adapter"),
            async || Ok::<(), Infallible>(()),
            async |_, _| panic!("a refused command must not wait for a reviewer"),
        )
        .await
        .unwrap();
    assert_eq!(a.judged.decision.action, Action::Deny);
    assert!(!a.reviewed);
    assert!(
        f.gate.reviews().list(None).is_empty(),
        "no review was opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_command_runs_once_when_approved_while_it_waits() {
    let f = fixture(REVIEW_DELETES);
    let s = f.open(agent(), "pg", ConnectionType::Postgres).unwrap();
    let gate = f.gate.clone();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<String>();
    let approver = tokio::spawn(async move {
        let id = held_rx.await.unwrap();
        gate.approve_review(&id, &dba()).unwrap();
    });
    let mut flushed = false;
    let mut held_tx = Some(held_tx);
    let a = tokio::time::timeout(
        Duration::from_secs(10),
        s.admit(
            "delete from t where id = 1",
            |_| {},
            async || {
                flushed = true;
                Ok::<(), Infallible>(())
            },
            async |review, _| {
                if let Some(tx) = held_tx.take() {
                    let _ = tx.send(review.id.clone());
                }
            },
        ),
    )
    .await
    .expect("the approval ends the hold")
    .unwrap();
    approver.await.unwrap();
    assert!(flushed, "what came before was forwarded before holding");
    assert!(a.reviewed);
    assert_eq!(a.judged.decision.action, Action::Allow);
    assert!(a
        .judged
        .decision
        .message
        .unwrap_or_default()
        .contains("approved in review"));
    // The approval was spent: the same command again opens a new review, which times out
    // undecided here (hold 5s) and is refused.
    let again = s
        .admit(
            "delete from t where id = 1",
            |_| {},
            async || Ok::<(), Infallible>(()),
            async |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(again.judged.decision.action, Action::Deny);
    assert!(again
        .judged
        .decision
        .message
        .unwrap_or_default()
        .contains("pending approval"),);
}

#[tokio::test]
async fn a_command_is_recorded_before_it_is_forwarded() {
    let f = fixture(READ_ONLY_AGENTS);
    let s = f.open(agent(), "pg", ConnectionType::Postgres).unwrap();
    let a = s
        .admit(
            "update t set x = 1",
            |_| {},
            async || Ok::<(), Infallible>(()),
            async |_, _| {},
        )
        .await
        .unwrap();
    let seq = s.next_seq();
    s.record(&[(seq, "update t set x = 1", &a.judged)]).unwrap();
    let audit = f.audit();
    let line = audit
        .lines()
        .find(|l| l.contains("update t set x = 1"))
        .expect("the command event");
    let ev: serde_json::Value = serde_json::from_str(line).unwrap();
    let ev = &ev["event"];
    assert_eq!(ev["command"]["decision"], "deny", "{line}");
    assert_eq!(ev["command"]["rule"], "agents-read-only", "{line}");
    assert_eq!(ev["identity"], "claude", "{line}");
    // A startup-style admission cannot wait: a review rule refuses with the given reason.
    let f = fixture("[[rules]]\nname = \"r\"\naction = \"review\"\nreviewers = [\"dba\"]\n");
    let s = f.open(agent(), "pg", ConnectionType::Postgres).unwrap();
    let j = s.admit_now("set work_mem = '1MB'", |_| {}, "cannot wait here");
    assert_eq!(j.decision.action, Action::Deny);
    assert_eq!(j.decision.message.as_deref(), Some("cannot wait here"));
}

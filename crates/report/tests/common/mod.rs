//! A fixed, realistic history for the report tests and the golden files: two agents' worth of
//! behaviour, a read-only ETL job with write access, humans who approve, an exempt DBA reading
//! card numbers, a vendor let in by an access review, an unused grant, a dormant account with
//! an old token file, and a rule that never matches.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code, clippy::too_many_arguments)]

use airlock_config::{Config, StaticEnv};
use airlock_core::policy::{PolicySet, Rule};
use airlock_report::{Options, TokenInfo};
use airlock_store::{AuditEvent, CommandRecord, EventKind, MaskedCounts};
use serde_json::json;

pub const CONFIG: &str = r#"[gateway]
data_dir = "/var/lib/airlock"

[reviews]
access_reviewers = ["dba"]

[[service_accounts]]
name = "claude-agent"
groups = ["ai-agents"]
agent = true
token_env = "TOK_CLAUDE"

[[service_accounts]]
name = "ci-deploy"
groups = ["deployers"]
token_file = "/etc/airlock/ci-deploy.token"

[[service_accounts]]
name = "etl"
groups = ["etl"]
token_env = "TOK_ETL"

[[service_accounts]]
name = "vendor-bot"
groups = ["contractors"]
token_env = "TOK_VENDOR"

[[users]]
name = "alice"
groups = ["dba", "engineers"]
token_env = "TOK_ALICE"

[[users]]
name = "bob"
groups = ["dba"]
token_env = "TOK_BOB"

[[users]]
name = "carol"
groups = ["engineers"]
token_env = "TOK_CAROL"

[[connections]]
name = "pg-prod"
type = "postgres"
address = "10.0.0.5:5432"
tags = { env = "prod" }
allow_groups = ["ai-agents", "engineers", "etl"]

[[connections]]
name = "pg-analytics"
type = "postgres"
address = "10.0.0.6:5432"
tags = { env = "prod" }
allow_groups = ["ai-agents", "etl"]

[[connections]]
name = "pg-staging"
type = "postgres"
address = "10.0.1.5:5432"
tags = { env = "staging" }
allow_groups = ["deployers"]

[[rules]]
name = "no-destructive-ddl"
connections = { tags = { env = "prod" } }
operations = ["drop", "truncate"]
action = "deny"
message = "Destructive DDL is not allowed in production"

[[rules]]
name = "review-agent-writes"
agents = true
writes = true
action = "review"
reviewers = ["dba"]

[[rules]]
name = "no-grants"
operations = ["grant", "revoke"]
action = "deny"

[[masking]]
name = "customer-pii"
connections = { tags = { env = "prod" } }
columns = ["payments.card_number", "*.email"]
detectors = ["email"]
exempt_groups = ["dba"]
"#;

/// 2026-11-24 00:00:00 UTC.
pub const NOW_US: i64 = 1_795_478_400_000_000;
pub const DAY: i64 = 86_400_000_000;
pub const HOUR: i64 = 3_600_000_000;

pub fn config() -> Config {
    let env = StaticEnv::new()
        .with_var("TOK_CLAUDE", "token-claude-0123456789")
        .with_var("TOK_ETL", "token-etl-0123456789")
        .with_var("TOK_VENDOR", "token-vendor-0123456789")
        .with_var("TOK_ALICE", "token-alice-0123456789")
        .with_var("TOK_BOB", "token-bob-0123456789")
        .with_var("TOK_CAROL", "token-carol-0123456789")
        .with_file("/etc/airlock/ci-deploy.token", "token-ci-deploy-0123456789");
    airlock_config::load_str(CONFIG, "/etc/airlock/airlock.toml", &env).unwrap()
}

/// The rules as the gateway compiles them (a copy of `airlock_gate::compile_policy`, which
/// this crate does not depend on so that it builds without the gateway; the end-to-end test
/// in `crates/airlock` runs the real one).
pub fn compile_policy(config: &Config) -> PolicySet {
    let rules = config
        .rules
        .iter()
        .map(|r| Rule {
            name: r.name.clone(),
            identities: r.identities.clone(),
            groups: r.groups.clone(),
            agents: r.agents,
            connections: r.connections.clone(),
            operations: r.operations.clone(),
            writes: r.writes,
            objects: r.objects.clone(),
            without_where: r.without_where,
            pattern: r.pattern.clone(),
            hours: None,
            action: r.action,
            message: r.message.clone(),
            reviewers: r.reviewers.clone(),
            timeout_secs: r.timeout_secs,
            min_approvals: r.min_approvals,
        })
        .collect();
    PolicySet {
        rules,
        default_action: config.policy.default_action,
        default_write_action: config.policy.default_write_action,
        ..PolicySet::default()
    }
}

pub fn options(config: &Config) -> Options<'_> {
    let mut o = Options::new(config, NOW_US);
    o.tokens.insert(
        "ci-deploy".into(),
        TokenInfo {
            source: "file /etc/airlock/ci-deploy.token".into(),
            last_rotated_us: Some(NOW_US - 200 * DAY),
        },
    );
    o
}

pub struct History {
    pub events: Vec<(u64, AuditEvent)>,
}

impl History {
    fn push(&mut self, ev: AuditEvent) -> u64 {
        let seq = self.events.len() as u64 + 1;
        self.events.push((seq, ev));
        seq
    }

    fn ev(
        kind: EventKind,
        ts: i64,
        who: &str,
        conn: Option<&str>,
        session: Option<&str>,
    ) -> AuditEvent {
        AuditEvent {
            ts_us: ts,
            kind,
            session_id: session.map(str::to_owned),
            identity: Some(who.to_owned()),
            connection: conn.map(str::to_owned),
            command: None,
            detail: None,
        }
    }

    pub fn session(
        &mut self,
        ts: i64,
        who: &str,
        conn: &str,
        sid: &str,
        kind: &str,
        agent: bool,
        groups: &[&str],
        grant: Option<&str>,
    ) {
        let mut ev = Self::ev(EventKind::SessionStart, ts, who, Some(conn), Some(sid));
        ev.detail = Some(
            json!({"peer": "10.1.2.3:50000", "protocol": "postgres", "tls": true,
            "identity_kind": kind, "agent": agent, "groups": groups, "grant": grant}),
        );
        self.push(ev);
    }

    pub fn end(&mut self, ts: i64, who: &str, conn: &str, sid: &str) {
        let mut ev = Self::ev(EventKind::SessionEnd, ts, who, Some(conn), Some(sid));
        ev.detail = Some(json!({"reason": "client closed", "commands": 0}));
        self.push(ev);
    }

    pub fn command(
        &mut self,
        ts: i64,
        who: &str,
        conn: &str,
        sid: &str,
        seq: u64,
        text: &str,
        op: &str,
        reads: &[&str],
        writes: &[&str],
        decision: &str,
        rule: Option<&str>,
        message: Option<&str>,
    ) -> u64 {
        let mut ev = Self::ev(EventKind::Command, ts, who, Some(conn), Some(sid));
        ev.command = Some(CommandRecord {
            seq,
            text: Some(text.into()),
            operation: Some(op.into()),
            reads: reads.iter().map(|s| s.to_string()).collect(),
            writes: writes.iter().map(|s| s.to_string()).collect(),
            decision: Some(decision.into()),
            rule: rule.map(str::to_owned),
            message: message.map(str::to_owned),
            ..CommandRecord::default()
        });
        self.push(ev)
    }

    pub fn result(
        &mut self,
        ts: i64,
        who: &str,
        conn: &str,
        sid: &str,
        seq: u64,
        rows: u64,
        masked: &[(&str, u64)],
        columns: &[(&str, u64)],
    ) {
        let mut ev = Self::ev(EventKind::CommandResult, ts, who, Some(conn), Some(sid));
        ev.command = Some(CommandRecord {
            seq,
            rows: Some(rows),
            duration_us: Some(900),
            masked: MaskedCounts {
                entities: masked.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                columns: columns.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            },
            ..CommandRecord::default()
        });
        self.push(ev);
    }

    pub fn review(
        &mut self,
        ts: i64,
        step: &str,
        actor: &str,
        id: &str,
        kind: &str,
        requester: &str,
        conn: &str,
        statement: Option<&str>,
        state: &str,
        approvals: &[&str],
        denials: &[&str],
        grant_secs: Option<u64>,
        reason: Option<&str>,
    ) -> u64 {
        let mut ev = Self::ev(EventKind::Other, ts, actor, Some(conn), None);
        let votes = |v: &[&str]| {
            v.iter()
                .map(|r| json!({"reviewer": r, "at_us": ts}))
                .collect::<Vec<_>>()
        };
        ev.detail = Some(json!({"review_step": step, "review": {
            "id": id, "kind": kind, "requester": requester, "connection": conn,
            "statement": statement, "rule": statement.map(|_| "review-agent-writes"),
            "reviewers": ["dba"], "min_approvals": 1, "created_us": ts - 60_000_000,
            "expires_us": ts + 540_000_000, "approvals": votes(approvals), "denials": votes(denials),
            "state": state, "decided_us": if state == "pending" { None } else { Some(ts) },
            "executed_us": null, "grant_secs": grant_secs, "reason": reason,
        }}));
        self.push(ev)
    }

    pub fn auth_failure(&mut self, ts: i64, who: &str) {
        let mut ev = Self::ev(EventKind::AuthFailure, ts, who, None, None);
        ev.detail = Some(json!({"peer": "10.9.9.9:4000", "reason": "invalid token"}));
        self.push(ev);
    }
}

pub fn history() -> History {
    let mut h = History { events: Vec::new() };
    let day = |d: i64| NOW_US - d * DAY;

    // Long before the period: the deploy job's last run.
    let t = day(54);
    h.session(
        t,
        "ci-deploy",
        "pg-staging",
        "s-0001",
        "service",
        false,
        &["deployers"],
        None,
    );
    h.command(
        t + 1_000_000,
        "ci-deploy",
        "pg-staging",
        "s-0001",
        1,
        "select version()",
        "select",
        &[],
        &[],
        "allow",
        None,
        None,
    );
    h.end(t + 2_000_000, "ci-deploy", "pg-staging", "s-0001");

    // The agent's session on production: reads (masked), a denied DROP, an approved DELETE,
    // a denied UPDATE review.
    let t = day(4) + 9 * HOUR;
    h.session(
        t,
        "claude-agent",
        "pg-prod",
        "s-0101",
        "service",
        true,
        &["ai-agents"],
        None,
    );
    h.command(
        t + 1_000_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        1,
        "select id, email, total from orders where created > now() - interval '7 days'",
        "select",
        &["orders"],
        &[],
        "allow",
        None,
        None,
    );
    h.result(
        t + 1_100_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        1,
        20,
        &[("email", 20)],
        &[("orders.email", 20)],
    );
    h.command(
        t + 2_000_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        2,
        "select name, email from customers where id in (select customer_id from orders)",
        "select",
        &["customers", "orders"],
        &[],
        "allow",
        None,
        None,
    );
    h.result(
        t + 2_100_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        2,
        5,
        &[("email", 5)],
        &[("customers.email", 5)],
    );
    h.command(
        t + 3_000_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        3,
        "drop table orders",
        "drop",
        &[],
        &["orders"],
        "deny",
        Some("no-destructive-ddl"),
        Some("Destructive DDL is not allowed in production"),
    );
    h.review(
        t + 4_000_000,
        "review_created",
        "claude-agent",
        "r-0001",
        "command",
        "claude-agent",
        "pg-prod",
        Some("delete from orders where id = 7"),
        "pending",
        &[],
        &[],
        None,
        None,
    );
    h.review(
        t + 64_000_000,
        "review_approved",
        "alice",
        "r-0001",
        "command",
        "claude-agent",
        "pg-prod",
        Some("delete from orders where id = 7"),
        "approved",
        &["alice"],
        &[],
        None,
        None,
    );
    h.command(
        t + 65_000_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        4,
        "delete from orders where id = 7",
        "delete",
        &[],
        &["orders"],
        "allow",
        Some("review-agent-writes"),
        Some("approved in review r-0001 by alice"),
    );
    h.result(
        t + 65_100_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        4,
        1,
        &[],
        &[],
    );
    h.review(
        t + 70_000_000,
        "review_created",
        "claude-agent",
        "r-0002",
        "command",
        "claude-agent",
        "pg-prod",
        Some("update orders set status = 'refunded'"),
        "pending",
        &[],
        &[],
        None,
        None,
    );
    h.review(
        t + 90_000_000,
        "review_denied",
        "bob",
        "r-0002",
        "command",
        "claude-agent",
        "pg-prod",
        Some("update orders set status = 'refunded'"),
        "denied",
        &[],
        &["bob"],
        None,
        None,
    );
    h.command(
        t + 91_000_000,
        "claude-agent",
        "pg-prod",
        "s-0101",
        5,
        "update orders set status = 'refunded'",
        "update",
        &[],
        &["orders"],
        "deny",
        Some("review-agent-writes"),
        Some("airlock: review r-0002 was denied by bob; the statement was not run"),
    );
    h.end(t + 92_000_000, "claude-agent", "pg-prod", "s-0101");

    // The ETL job: may write, only reads.
    let t = day(2) + 2 * HOUR;
    h.auth_failure(t - 5_000_000, "etl");
    for (n, sid) in ["s-0201", "s-0202"].iter().enumerate() {
        let t = t + n as i64 * DAY;
        h.session(t, "etl", "pg-prod", sid, "service", false, &["etl"], None);
        h.command(
            t + 1_000_000,
            "etl",
            "pg-prod",
            sid,
            1,
            "select * from orders where updated > $1",
            "select",
            &["orders"],
            &[],
            "allow",
            None,
            None,
        );
        h.result(
            t + 3_000_000,
            "etl",
            "pg-prod",
            sid,
            1,
            1200,
            &[("email", 1200)],
            &[("orders.email", 1200)],
        );
        h.command(
            t + 4_000_000,
            "etl",
            "pg-prod",
            sid,
            2,
            "select id, country from customers",
            "select",
            &["customers"],
            &[],
            "allow",
            None,
            None,
        );
        h.result(t + 5_000_000, "etl", "pg-prod", sid, 2, 300, &[], &[]);
        h.end(t + 6_000_000, "etl", "pg-prod", sid);
    }

    // A DBA, exempt from masking, reads card numbers and fixes a row.
    let t = day(1) + 15 * HOUR;
    h.session(
        t,
        "alice",
        "pg-prod",
        "s-0301",
        "human",
        false,
        &["dba", "engineers"],
        None,
    );
    h.command(
        t + 1_000_000,
        "alice",
        "pg-prod",
        "s-0301",
        1,
        "select id, card_number from payments where id = 42",
        "select",
        &["payments"],
        &[],
        "allow",
        None,
        None,
    );
    h.result(t + 1_100_000, "alice", "pg-prod", "s-0301", 1, 1, &[], &[]);
    h.command(
        t + 2_000_000,
        "alice",
        "pg-prod",
        "s-0301",
        2,
        "update payments set status = 'void' where id = 42",
        "update",
        &["payments"],
        &["payments"],
        "allow",
        None,
        None,
    );
    h.result(t + 2_100_000, "alice", "pg-prod", "s-0301", 2, 1, &[], &[]);
    h.end(t + 3_000_000, "alice", "pg-prod", "s-0301");

    // A vendor's bot has no standing access: an access review lets it in for an hour.
    let t = day(1) + 10 * HOUR;
    h.push({
        let mut ev = History::ev(
            EventKind::Other,
            t,
            "vendor-bot",
            Some("pg-analytics"),
            None,
        );
        ev.detail = Some(json!({"refused": "connection not allowed", "peer": "10.7.7.7:1234"}));
        ev
    });
    h.review(
        t + 10_000_000,
        "review_created",
        "vendor-bot",
        "r-0003",
        "access",
        "vendor-bot",
        "pg-analytics",
        None,
        "pending",
        &[],
        &[],
        Some(3600),
        Some("monthly invoice export"),
    );
    h.review(
        t + 300_000_000,
        "review_approved",
        "alice",
        "r-0003",
        "access",
        "vendor-bot",
        "pg-analytics",
        None,
        "approved",
        &["alice"],
        &[],
        Some(3600),
        Some("monthly invoice export"),
    );
    h.session(
        t + 310_000_000,
        "vendor-bot",
        "pg-analytics",
        "s-0401",
        "service",
        false,
        &["contractors"],
        Some("r-0003"),
    );
    h.command(
        t + 311_000_000,
        "vendor-bot",
        "pg-analytics",
        "s-0401",
        1,
        "select * from invoices where month = '2026-10'",
        "select",
        &["invoices"],
        &[],
        "allow",
        None,
        None,
    );
    h.result(
        t + 312_000_000,
        "vendor-bot",
        "pg-analytics",
        "s-0401",
        1,
        431,
        &[],
        &[],
    );
    h.end(t + 320_000_000, "vendor-bot", "pg-analytics", "s-0401");
    h
}

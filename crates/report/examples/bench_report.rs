//! Times the access-review report over a synthetic audit log of N events (default 1,000,000):
//! `cargo run --release -p airlock-report --example bench_report -- [--events N] [--keep PATH]`.
//! The log is written with the real `AuditLog` (hash-chained lines, the gateway's format) by
//! 60 identities (12 of them agents) on 20 connections: sessions of 1 to 40 statements with
//! results, masked counts, denials and reviews. Only the report is timed.
// Example code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_config::StaticEnv;
use airlock_report::render::{render, Format};
use airlock_report::{Aggregator, Options};
use airlock_store::{AuditEvent, AuditLog, CommandRecord, EventKind, MaskedCounts};
use std::time::Instant;

const IDENTITIES: usize = 60;
const AGENTS: usize = 12;
const CONNECTIONS: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let events: u64 = arg("--events")
        .map(|n| n.parse().expect("--events N"))
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = arg("--keep")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("audit.log"));

    let mut toml = String::from("[gateway]\ndata_dir = \"/tmp/airlock-bench\"\n\n");
    let mut env = StaticEnv::new();
    for i in 0..IDENTITIES {
        toml.push_str(&format!(
            "[[service_accounts]]\nname = \"id-{i:02}\"\ngroups = [\"team-{}\"]\nagent = {}\ntoken_env = \"T{i}\"\n\n",
            i % 6,
            i < AGENTS
        ));
        env = env.with_var(format!("T{i}"), format!("bench-token-{i:04}-0123456789"));
    }
    for c in 0..CONNECTIONS {
        toml.push_str(&format!(
            "[[connections]]\nname = \"pg-{c:02}\"\ntype = \"postgres\"\naddress = \"127.0.0.1:5432\"\ntags = {{ env = \"{}\" }}\nallow_groups = [\"team-{}\", \"team-{}\"]\n\n",
            if c % 2 == 0 { "prod" } else { "dev" },
            c % 6,
            (c + 1) % 6
        ));
    }
    toml.push_str("[[rules]]\nname = \"no-drop\"\noperations = [\"drop\"]\naction = \"deny\"\n\n[[rules]]\nname = \"agents-review-writes\"\nagents = true\nwrites = true\naction = \"review\"\nreviewers = [\"dba\"]\n");
    let config = airlock_config::load_str(&toml, "bench.toml", &env).expect("bench config");

    let t0 = Instant::now();
    let log = AuditLog::open(&path, Default::default()).expect("open log");
    let start_us = 1_795_478_400_000_000 - 20 * 86_400_000_000i64;
    let mut written = 0u64;
    let mut batch = Vec::with_capacity(1024);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut session = 0u64;
    while written < events {
        session += 1;
        let who = format!("id-{:02}", next() % IDENTITIES as u64);
        let conn = format!("pg-{:02}", next() % CONNECTIONS as u64);
        let sid = format!("s-{session:011x}");
        let ts = start_us + (written as i64) * 1_200_000;
        let ev = |kind, ts| AuditEvent {
            ts_us: ts,
            kind,
            session_id: Some(sid.clone()),
            identity: Some(who.clone()),
            connection: Some(conn.clone()),
            command: None,
            detail: None,
        };
        let mut start = ev(EventKind::SessionStart, ts);
        start.detail = Some(
            serde_json::json!({"peer": "10.0.0.1:5000", "protocol": "postgres", "tls": true, "identity_kind": "service", "agent": false, "groups": ["team-0"], "grant": null}),
        );
        batch.push(start);
        let statements = 1 + next() % 40;
        for seq in 1..=statements {
            let r = next() % 100;
            let (text, op, reads, writes, decision, rule) = match r {
                0..70 => (
                    "select id, email, total from orders where customer_id = $1",
                    "select",
                    vec!["orders".to_string()],
                    vec![],
                    "allow",
                    None,
                ),
                70..85 => (
                    "select * from customers join addresses using (customer_id)",
                    "select",
                    vec!["customers".into(), "addresses".into()],
                    vec![],
                    "allow",
                    None,
                ),
                85..97 => (
                    "update orders set status = $1 where id = $2",
                    "update",
                    vec!["orders".into()],
                    vec!["orders".into()],
                    "allow",
                    None,
                ),
                _ => (
                    "drop table orders",
                    "drop",
                    vec![],
                    vec!["orders".into()],
                    "deny",
                    Some("no-drop".to_string()),
                ),
            };
            let mut cmd = ev(EventKind::Command, ts + seq as i64 * 1000);
            cmd.command = Some(CommandRecord {
                seq,
                text: Some(text.into()),
                operation: Some(op.into()),
                reads,
                writes,
                decision: Some(decision.into()),
                rule,
                ..CommandRecord::default()
            });
            batch.push(cmd);
            if decision == "allow" {
                let mut res = ev(EventKind::CommandResult, ts + seq as i64 * 1000 + 500);
                let rows = next() % 50;
                let mut masked = MaskedCounts::default();
                if op == "select" && rows > 0 {
                    masked.entities.insert("email".into(), rows);
                    masked.columns.insert("orders.email".into(), rows);
                }
                res.command = Some(CommandRecord {
                    seq,
                    rows: Some(rows),
                    duration_us: Some(300 + next() % 2000),
                    masked,
                    ..CommandRecord::default()
                });
                batch.push(res);
            }
        }
        let mut end = ev(EventKind::SessionEnd, ts + 100_000);
        end.detail = Some(serde_json::json!({"reason": "client closed", "commands": statements}));
        batch.push(end);
        written += batch.len() as u64;
        log.append(&batch).expect("append");
        batch.clear();
    }
    drop(log);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {written} events ({:.0} MiB) in {:.1} s",
        size as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );

    let policy = None;
    let now_us = 1_795_478_400_000_000;
    let mut best = f64::MAX;
    let mut rendered = 0;
    for round in 1..=3 {
        let t = Instant::now();
        let mut opts = Options::new(&config, now_us);
        opts.policy = policy;
        let mut agg = Aggregator::new(opts);
        airlock_report::read_log(&path, &mut agg).expect("read log");
        let report = agg.finish();
        let md = render(&report, Format::Markdown);
        let secs = t.elapsed().as_secs_f64();
        best = best.min(secs);
        rendered = md.len();
        println!(
            "round {round}: report over {} events in {secs:.2} s ({:.0} events/s, {} findings)",
            report.source.events,
            report.source.events as f64 / secs,
            report.findings.len()
        );
    }
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        })
        .unwrap_or_else(|| "?".into());
    println!("best: {best:.2} s; Markdown {rendered} bytes; peak RSS {hwm} kB");
}

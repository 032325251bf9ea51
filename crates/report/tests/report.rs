//! Figures and findings of the report over the fixed history (`common`), and the streaming
//! reader over a real log file.

mod common;

use airlock_report::{build, Filter, FindingKind, Report};
use airlock_store::{AuditEvent, EventKind};
use common::*;

fn report_with(f: impl FnOnce(&mut airlock_report::Options<'_>)) -> Report {
    let config = config();
    let policy = common::compile_policy(&config);
    let mut opts = options(&config);
    opts.policy = Some(&policy);
    f(&mut opts);
    let h = history();
    build(opts, h.events.iter().map(|(s, e)| (*s, e)))
}

fn report() -> Report {
    report_with(|_| {})
}

fn has(r: &Report, kind: FindingKind, identity: Option<&str>, connection: Option<&str>) -> bool {
    r.findings.iter().any(|f| {
        f.kind == kind && f.identity.as_deref() == identity && f.connection.as_deref() == connection
    })
}

#[test]
fn agents_come_first_and_every_configured_identity_is_listed() {
    let r = report();
    let names: Vec<&str> = r.identities.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "claude-agent",
            "ci-deploy",
            "etl",
            "vendor-bot",
            "alice",
            "bob",
            "carol"
        ]
    );
    let agent = &r.identities[0];
    assert!(agent.agent);
    assert_eq!(agent.groups[0].group, "ai-agents");
    assert_eq!(agent.groups[0].source, "config");
}

#[test]
fn the_agents_activity_is_counted_per_connection() {
    let r = report();
    let agent = &r.identities[0];
    let prod = agent
        .access
        .iter()
        .find(|a| a.connection == "pg-prod")
        .unwrap();
    assert_eq!(prod.via, ["group ai-agents"]);
    assert_eq!(prod.write_access, "review");
    assert_eq!(prod.sessions, 1);
    assert_eq!(
        prod.session_evidence[0].session_id.as_deref(),
        Some("s-0101")
    );
    assert_eq!(prod.commands, 3, "two selects and the approved delete ran");
    assert_eq!(prod.operations["select"], 2);
    assert_eq!(prod.operations["delete"], 1);
    assert_eq!(prod.objects_read["orders"], 2);
    assert_eq!(prod.objects_read["customers"], 1);
    assert_eq!(prod.objects_written["orders"], 1);
    assert_eq!(prod.rows_returned, 26);
    assert_eq!(prod.masked.entities["email"], 25);
    assert_eq!(prod.masked.columns["orders.email"], 20);
    assert_eq!(prod.masked.columns["customers.email"], 5);
    let rules: Vec<(&str, u64)> = prod
        .denied
        .iter()
        .map(|d| (d.rule.as_str(), d.count))
        .collect();
    assert_eq!(
        rules,
        [("no-destructive-ddl", 1), ("review-agent-writes", 1)]
    );
    assert_eq!(prod.approvals.len(), 1);
    let approval = &prod.approvals[0];
    assert_eq!(approval.review_id, "r-0001");
    assert_eq!(approval.approvers, ["alice"]);
    assert_eq!(
        approval.statement.as_deref(),
        Some("delete from orders where id = 7")
    );
    let ran = approval
        .executed
        .as_ref()
        .expect("the approved delete is linked to its command");
    assert_eq!(ran.session_id.as_deref(), Some("s-0101"));
    assert_eq!((prod.reviews_requested, prod.reviews_denied), (2, 1));
    // Standing grant never used.
    let analytics = agent
        .access
        .iter()
        .find(|a| a.connection == "pg-analytics")
        .unwrap();
    assert!(analytics.standing);
    assert_eq!(analytics.sessions, 0);
}

#[test]
fn findings_say_what_to_do_and_point_at_evidence() {
    let r = report();
    assert!(has(
        &r,
        FindingKind::UnusedGrant,
        Some("claude-agent"),
        Some("pg-analytics")
    ));
    assert!(has(
        &r,
        FindingKind::UnusedGrant,
        Some("etl"),
        Some("pg-analytics")
    ));
    assert!(has(
        &r,
        FindingKind::UnusedGrant,
        Some("carol"),
        Some("pg-prod")
    ));
    assert!(!has(
        &r,
        FindingKind::UnusedGrant,
        Some("claude-agent"),
        Some("pg-prod")
    ));
    assert!(has(
        &r,
        FindingKind::ReadOnlySuffices,
        Some("etl"),
        Some("pg-prod")
    ));
    assert!(
        !has(
            &r,
            FindingKind::ReadOnlySuffices,
            Some("alice"),
            Some("pg-prod")
        ),
        "alice wrote"
    );
    assert!(has(
        &r,
        FindingKind::InactiveIdentity,
        Some("ci-deploy"),
        None
    ));
    assert!(has(&r, FindingKind::InactiveIdentity, Some("carol"), None));
    assert!(
        !has(&r, FindingKind::InactiveIdentity, Some("bob"), None),
        "bob voted on a review"
    );
    assert!(has(&r, FindingKind::StaleToken, Some("ci-deploy"), None));
    assert!(has(
        &r,
        FindingKind::AgentDenied,
        Some("claude-agent"),
        Some("pg-prod")
    ));
    assert!(has(
        &r,
        FindingKind::AgentReviewed,
        Some("claude-agent"),
        Some("pg-prod")
    ));
    assert!(has(
        &r,
        FindingKind::UnmaskedExempt,
        Some("alice"),
        Some("pg-prod")
    ));
    let never: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::RuleNeverMatched)
        .filter_map(|f| f.rule.as_deref())
        .collect();
    assert_eq!(never, ["no-grants"]);
    let denied = r
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::AgentDenied)
        .unwrap();
    assert_eq!(denied.evidence_total, 2);
    assert!(denied
        .evidence
        .iter()
        .all(|e| e.session_id.as_deref() == Some("s-0101") && e.audit_seq.is_some()));
    let unmasked = r
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::UnmaskedExempt)
        .unwrap();
    assert!(
        unmasked.summary.contains("payments") && unmasked.summary.contains("dba"),
        "{}",
        unmasked.summary
    );
    assert_eq!(unmasked.evidence[0].session_id.as_deref(), Some("s-0301"));
    // High severity first.
    assert_eq!(r.findings[0].severity, airlock_report::Severity::High);
}

#[test]
fn an_access_review_grant_is_reported_with_its_approver_and_duration() {
    let r = report();
    let vendor = r
        .identities
        .iter()
        .find(|i| i.name == "vendor-bot")
        .unwrap();
    assert_eq!(vendor.access.len(), 1);
    let a = &vendor.access[0];
    assert_eq!(a.connection, "pg-analytics");
    assert!(!a.standing);
    assert_eq!(a.via, ["access review r-0003"]);
    assert_eq!(a.access_grants[0].approvers, ["alice"]);
    assert_eq!(a.access_grants[0].duration_secs, Some(3600));
    assert_eq!(a.refused_sessions, 1);
    assert_eq!(a.sessions, 1);
    assert!(!has(
        &r,
        FindingKind::UnusedGrant,
        Some("vendor-bot"),
        Some("pg-analytics")
    ));
    let alice = r.identities.iter().find(|i| i.name == "alice").unwrap();
    assert_eq!(alice.review_votes, 2);
    let etl = r.identities.iter().find(|i| i.name == "etl").unwrap();
    assert_eq!(etl.auth_failures, 1);
}

#[test]
fn the_period_and_the_filters_narrow_the_report() {
    // Only the last day: the agent's session (4 days ago) is outside; its grant is unused.
    let r = report_with(|o| o.since_us = NOW_US - DAY);
    assert!(has(
        &r,
        FindingKind::UnusedGrant,
        Some("claude-agent"),
        Some("pg-prod")
    ));
    let agent = &r.identities[0];
    assert_eq!(agent.sessions, 0);
    assert!(
        agent.last_activity_us.is_some(),
        "last activity looks before the period"
    );

    let r = report_with(|o| o.filter = Filter::Agents);
    let names: Vec<&str> = r.identities.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["claude-agent"]);
    assert!(r
        .findings
        .iter()
        .all(|f| f.identity.as_deref() == Some("claude-agent")));

    let r = report_with(|o| o.filter = Filter::Group("dba".into()));
    let names: Vec<&str> = r.identities.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);

    let r = report_with(|o| o.filter = Filter::Identity("etl".into()));
    assert_eq!(r.identities.len(), 1);
    assert_eq!(r.scope, "identity etl");
}

#[test]
fn without_a_policy_write_access_is_unknown_and_no_read_only_advice_is_given() {
    let config = config();
    let opts = options(&config);
    let h = history();
    let r = build(opts, h.events.iter().map(|(s, e)| (*s, e)));
    assert!(!has(
        &r,
        FindingKind::ReadOnlySuffices,
        Some("etl"),
        Some("pg-prod")
    ));
    assert!(r
        .identities
        .iter()
        .flat_map(|i| &i.access)
        .all(|a| a.write_access == "unknown"));
}

#[test]
fn a_recertification_shows_on_its_grant() {
    let config = config();
    let rc = airlock_report::recert::prepare(
        &config,
        Some(CONFIG),
        airlock_report::recert::Ask {
            identity: "claude-agent",
            connection: "pg-analytics",
            decision: airlock_report::Verdict::Revoke,
            comment: "never used",
            reviewer: "alice",
        },
        NOW_US - HOUR,
    )
    .unwrap();
    // The same diff is shown in docs/access-review.md.
    assert_eq!(
        rc.config_diff.as_deref().unwrap(),
        "--- a/airlock.toml\n+++ b/airlock.toml\n@@ -52,7 +52,7 @@\n type = \"postgres\"\n address = \"10.0.0.6:5432\"\n tags = { env = \"prod\" }\n-allow_groups = [\"ai-agents\", \"etl\"]\n+allow_groups = [\"etl\"]\n \n [[connections]]\n name = \"pg-staging\"\n"
    );
    let r = report_with(|o| o.recertifications = vec![rc.clone()]);
    let a = r.identities[0]
        .access
        .iter()
        .find(|a| a.connection == "pg-analytics")
        .unwrap();
    assert_eq!(a.recertification.as_ref(), Some(&rc));
}

#[test]
fn the_log_reader_streams_a_real_audit_log_and_counts_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = airlock_store::AuditLog::open(&path, Default::default()).unwrap();
    let h = history();
    let events: Vec<_> = h.events.iter().map(|(_, e)| e.clone()).collect();
    log.append(&events).unwrap();
    drop(log);
    let config = config();
    let from_file = airlock_report::generate(options(&config), &path).unwrap();
    let in_memory = build(options(&config), h.events.iter().map(|(s, e)| (*s, e)));
    assert_eq!(from_file, in_memory);
    assert_eq!(from_file.source.events, h.events.len() as u64);
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{{not an event").unwrap();
    let r = airlock_report::generate(options(&config), &path).unwrap();
    assert_eq!(r.source.unreadable_lines, 1);
    let missing = airlock_report::generate(options(&config), &dir.path().join("none.log")).unwrap();
    assert_eq!(missing.source.events, 0);
}

#[test]
fn a_segmented_and_compressed_log_reports_like_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = airlock_store::AuditLog::open(
        &path,
        airlock_store::AuditOptions {
            fsync: false,
            segments: airlock_store::SegmentOptions {
                max_bytes: 2048,
                max_age: None,
                compress: false,
            },
        },
    )
    .unwrap();
    let h = history();
    for (_, e) in &h.events {
        log.append(std::slice::from_ref(e)).unwrap();
    }
    assert!(log.compress_closed().unwrap() >= 3);
    drop(log);
    let config = config();
    let from_segments = airlock_report::generate(options(&config), &path).unwrap();
    let in_memory = build(options(&config), h.events.iter().map(|(s, e)| (*s, e)));
    assert_eq!(from_segments, in_memory);
}

/// A `command_result` may name only its session and statement (its command carries the
/// identity and connection): the report counts it the same.
#[test]
fn results_that_name_only_their_session_count_the_same() {
    let config = config();
    let h = history();
    let full = build(options(&config), h.events.iter().map(|(s, e)| (*s, e)));
    let slim: Vec<(u64, AuditEvent)> = h
        .events
        .iter()
        .map(|(s, e)| {
            let mut e = e.clone();
            if e.kind == EventKind::CommandResult {
                e.identity = None;
                e.connection = None;
            }
            (*s, e)
        })
        .collect();
    assert!(slim.iter().any(|(_, e)| e.kind == EventKind::CommandResult
        && e.command.as_ref().is_some_and(|c| c.rows.unwrap_or(0) > 0)));
    let from_slim = build(options(&config), slim.iter().map(|(s, e)| (*s, e)));
    assert_eq!(from_slim, full);
}

#[test]
fn renderings_escape_what_identities_and_statements_contain() {
    let mut r = report();
    r.identities[0].name = "evil|<script>,\"=1".into();
    let md = airlock_report::render::markdown(&r);
    assert!(
        md.contains("evil\\|<script>"),
        "pipes are escaped in Markdown tables"
    );
    let html = airlock_report::render::html(&r);
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    let csv = airlock_report::render::csv(&r);
    assert!(csv.contains("\"evil|<script>,\"\"=1\""), "{csv}");
    let json: serde_json::Value = serde_json::from_str(&airlock_report::render::render(
        &r,
        airlock_report::render::Format::Json,
    ))
    .unwrap();
    assert_eq!(json["identities"][0]["name"], "evil|<script>,\"=1");
}

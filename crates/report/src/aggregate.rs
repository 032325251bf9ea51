//! Streaming aggregation: one pass over the audit events, constant memory per identity ×
//! connection (evidence lists are capped), then the findings.

use crate::model::*;
use crate::Recertification;
use airlock_config::{Config, Connection, ServiceAccount};
use airlock_core::policy::{ConnectionRef, PolicySet, Request};
use airlock_core::review::{Review, ReviewKind};
use airlock_core::{Action, Classification, Identity, IdentityKind, Operation, Statement};
use airlock_store::{AuditEvent, EventKind, MaskedCounts};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Whose activity the report covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Filter {
    #[default]
    All,
    Identity(String),
    Group(String),
    Agents,
}

impl Filter {
    fn describe(&self) -> String {
        match self {
            Filter::All => "all identities".into(),
            Filter::Identity(i) => format!("identity {i}"),
            Filter::Group(g) => format!("group {g}"),
            Filter::Agents => "agents".into(),
        }
    }
}

/// What is known about an account's token besides its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenInfo {
    pub source: String,
    pub last_rotated_us: Option<i64>,
}

/// Everything the report needs besides the events.
pub struct Options<'a> {
    pub config: &'a Config,
    /// The compiled rules, to tell whether an identity may write on a connection. Without it
    /// write access is `unknown` and no read-only recommendation is made.
    pub policy: Option<&'a PolicySet>,
    pub since_us: i64,
    pub until_us: i64,
    pub now_us: i64,
    pub filter: Filter,
    /// An identity with no activity for this many days is reported (recommend disable).
    pub inactive_days: u64,
    /// A token older than this many days is reported (rotation policy).
    pub rotation_days: u64,
    pub tokens: BTreeMap<String, TokenInfo>,
    pub recertifications: Vec<Recertification>,
}

impl<'a> Options<'a> {
    /// The last 30 days up to `now_us`, everyone, 30 days of inactivity, 90-day token rotation.
    pub fn new(config: &'a Config, now_us: i64) -> Self {
        Options {
            config,
            policy: None,
            since_us: now_us.saturating_sub(30 * DAY_US),
            until_us: now_us,
            now_us,
            filter: Filter::All,
            inactive_days: 30,
            rotation_days: 90,
            tokens: BTreeMap::new(),
            recertifications: Vec::new(),
        }
    }
}

const DAY_US: i64 = 86_400 * 1_000_000;

/// Operations that change something even when the classifier named no written relation.
const WRITE_OPERATIONS: &[&str] = &[
    "insert", "update", "delete", "merge", "create", "alter", "drop", "truncate", "grant",
    "revoke", "call", "do", "lock", "unknown",
];

#[derive(Default)]
struct IdentityAcc {
    kind: Option<String>,
    agent: Option<bool>,
    session_groups: BTreeSet<String>,
    last_activity_us: Option<i64>,
    auth_failures: u64,
    review_votes: u64,
    conns: BTreeMap<String, ConnAcc>,
}

#[derive(Default)]
struct ConnAcc {
    sessions: u64,
    session_evidence: Vec<Evidence>,
    refused_sessions: u64,
    commands: u64,
    operations: BTreeMap<String, u64>,
    reads: BTreeMap<String, (u64, Evidence)>,
    writes: BTreeMap<String, u64>,
    write_commands: u64,
    rows: u64,
    failed: u64,
    masked: MaskedCounts,
    masked_evidence: Vec<Evidence>,
    denied: BTreeMap<String, Denial>,
    approvals: Vec<Approval>,
    approvals_total: u64,
    grants: Vec<AccessGrant>,
    grant_reviews: BTreeSet<String>,
    reviews_requested: u64,
    review_evidence: Vec<Evidence>,
    reviews_denied: u64,
    reviews_expired: u64,
    last_activity_us: Option<i64>,
}

fn push_capped<T>(list: &mut Vec<T>, item: T) {
    if list.len() < MAX_EVIDENCE {
        list.push(item);
    }
}

fn max_opt(slot: &mut Option<i64>, ts: i64) {
    if slot.is_none_or(|t| ts > t) {
        *slot = Some(ts);
    }
}

/// Feed it every audit event in log order with [`Aggregator::push`], then [`Aggregator::finish`].
pub struct Aggregator<'a> {
    opts: Options<'a>,
    ids: HashMap<String, IdentityAcc>,
    rules_used: HashMap<String, u64>,
    /// Approved command reviews by id → (requester, connection, index in its approvals).
    open_approvals: HashMap<String, (String, String, usize)>,
    /// First read of each object per identity × connection, filled while finishing.
    read_evidence: HashMap<(String, String, String), Evidence>,
    /// Identity and connection of each open session (removed at `session_end`), for
    /// `command_result` events that name only their session and statement.
    sessions: HashMap<String, (String, String)>,
    stats: SourceStats,
}

impl<'a> Aggregator<'a> {
    pub fn new(opts: Options<'a>) -> Self {
        Aggregator {
            opts,
            ids: HashMap::new(),
            rules_used: HashMap::new(),
            open_approvals: HashMap::new(),
            read_evidence: HashMap::new(),
            sessions: HashMap::new(),
            stats: SourceStats::default(),
        }
    }

    /// Keeps [`Self::sessions`] up to date; returns `ev` with the session's identity and
    /// connection filled in when it is a `command_result` that leaves them out (it refers to
    /// its command by session and statement number).
    fn with_session<'e>(&mut self, ev: &'e AuditEvent) -> std::borrow::Cow<'e, AuditEvent> {
        use std::borrow::Cow;
        let Some(sid) = ev.session_id.as_deref() else {
            return Cow::Borrowed(ev);
        };
        match ev.kind {
            EventKind::SessionStart | EventKind::Command => {
                if let (Some(i), Some(c)) = (ev.identity.as_deref(), ev.connection.as_deref()) {
                    if !self.sessions.contains_key(sid) {
                        self.sessions
                            .insert(sid.to_owned(), (i.to_owned(), c.to_owned()));
                    }
                }
                Cow::Borrowed(ev)
            }
            EventKind::SessionEnd => {
                self.sessions.remove(sid);
                Cow::Borrowed(ev)
            }
            EventKind::CommandResult if ev.identity.is_none() || ev.connection.is_none() => {
                match self.sessions.get(sid) {
                    Some((i, c)) => {
                        let mut filled = ev.clone();
                        filled.identity.get_or_insert_with(|| i.clone());
                        filled.connection.get_or_insert_with(|| c.clone());
                        Cow::Owned(filled)
                    }
                    None => Cow::Borrowed(ev),
                }
            }
            _ => Cow::Borrowed(ev),
        }
    }

    /// Counts a line of the log that could not be read as an event.
    pub fn unreadable(&mut self) {
        self.stats.unreadable_lines += 1;
    }

    // One short key allocation per event; measured in docs/benchmarks.md (the time is
    // dominated by parsing the JSON line).
    fn acc(&mut self, name: &str) -> &mut IdentityAcc {
        self.ids.entry(name.to_owned()).or_default()
    }

    fn conn(&mut self, identity: &str, connection: &str) -> &mut ConnAcc {
        self.acc(identity)
            .conns
            .entry(connection.to_owned())
            .or_default()
    }

    /// One event; `seq` is its position in the hash chain (the evidence reference).
    pub fn push(&mut self, seq: u64, ev: &AuditEvent) {
        let ev = self.with_session(ev);
        let ev: &AuditEvent = &ev;
        let ts = ev.ts_us;
        self.stats.events += 1;
        self.stats.last_seq = self.stats.last_seq.max(seq);
        if self.stats.first_event_us.is_none_or(|t| ts < t) {
            self.stats.first_event_us = Some(ts);
        }
        if ts >= self.opts.until_us {
            return;
        }
        let in_period = ts >= self.opts.since_us;
        if in_period {
            self.stats.events_in_period += 1;
        }
        if ev.kind == EventKind::AuthFailure && in_period {
            // The gateway audits one source's repeated failures as one event per window:
            // `detail.identities` counts them by claimed name.
            let names = ev.detail.as_ref().and_then(|d| d.get("identities"));
            if let Some(names) = names.and_then(|v| v.as_object()) {
                for (name, n) in names {
                    if self.opts.config.service_account(name).is_some() {
                        self.acc(name).auth_failures += n.as_u64().unwrap_or(0);
                    }
                }
                return;
            }
        }
        let Some(identity) = ev.identity.as_deref() else {
            return;
        };
        let session = ev.session_id.as_deref();
        match ev.kind {
            EventKind::SessionStart => {
                let Some(conn_name) = ev.connection.as_deref() else {
                    return;
                };
                let acc = self.acc(identity);
                max_opt(&mut acc.last_activity_us, ts);
                if let Some(d) = &ev.detail {
                    if let Some(k) = d.get("identity_kind").and_then(|v| v.as_str()) {
                        acc.kind = Some(k.to_owned());
                    }
                    if let Some(a) = d.get("agent").and_then(|v| v.as_bool()) {
                        acc.agent = Some(a);
                    }
                    if let Some(gs) = d.get("groups").and_then(|v| v.as_array()) {
                        for g in gs.iter().filter_map(|g| g.as_str()) {
                            if !acc.session_groups.contains(g) {
                                acc.session_groups.insert(g.to_owned());
                            }
                        }
                    }
                }
                let grant = ev
                    .detail
                    .as_ref()
                    .and_then(|d| d.get("grant"))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                let c = self.conn(identity, conn_name);
                max_opt(&mut c.last_activity_us, ts);
                if in_period {
                    c.sessions += 1;
                    push_capped(&mut c.session_evidence, Evidence::event(session, seq));
                    if let Some(g) = grant {
                        c.grant_reviews.insert(g);
                    }
                }
            }
            EventKind::Command => {
                let (Some(conn_name), Some(cmd)) = (ev.connection.as_deref(), &ev.command) else {
                    return;
                };
                max_opt(&mut self.acc(identity).last_activity_us, ts);
                if !in_period {
                    let c = self.conn(identity, conn_name);
                    max_opt(&mut c.last_activity_us, ts);
                    return;
                }
                if let Some(rule) = cmd.rule.as_deref() {
                    match self.rules_used.get_mut(rule) {
                        Some(n) => *n += 1,
                        None => {
                            self.rules_used.insert(rule.to_owned(), 1);
                        }
                    }
                }
                let approved_in = cmd
                    .message
                    .as_deref()
                    .and_then(|m| m.strip_prefix("approved in review "))
                    .and_then(|m| m.split_whitespace().next())
                    .map(str::to_owned);
                let evidence = Evidence::event(session, seq);
                let c = self.conn(identity, conn_name);
                max_opt(&mut c.last_activity_us, ts);
                if cmd.decision.as_deref() == Some("deny") {
                    let rule = cmd.rule.as_deref().unwrap_or("(default)");
                    if !c.denied.contains_key(rule) {
                        c.denied.insert(
                            rule.to_owned(),
                            Denial {
                                rule: rule.to_owned(),
                                count: 0,
                                message: cmd.message.clone(),
                                evidence: Vec::new(),
                            },
                        );
                    }
                    if let Some(d) = c.denied.get_mut(rule) {
                        d.count += 1;
                        push_capped(&mut d.evidence, evidence);
                    }
                    return;
                }
                c.commands += 1;
                let op = cmd.operation.as_deref().unwrap_or("unknown");
                // A multi-statement command counts every part's operation (`DELETE …; DROP
                // TABLE …` is a delete and a drop), once per distinct operation.
                let mut parts: Vec<&str> = cmd.operations.iter().map(String::as_str).collect();
                parts.dedup();
                if parts.is_empty() {
                    parts.push(op);
                }
                let mut counted: Vec<&str> = Vec::with_capacity(parts.len());
                for part in parts {
                    if !counted.contains(&part) {
                        bump(&mut c.operations, part);
                        counted.push(part);
                    }
                }
                for r in &cmd.reads {
                    match c.reads.get_mut(r.as_str()) {
                        Some((n, _)) => *n += 1,
                        None => {
                            c.reads.insert(r.clone(), (1, evidence.clone()));
                        }
                    }
                }
                for w in &cmd.writes {
                    bump(&mut c.writes, w);
                }
                if !cmd.writes.is_empty()
                    || WRITE_OPERATIONS.contains(&op)
                    || cmd
                        .operations
                        .iter()
                        .any(|o| WRITE_OPERATIONS.contains(&o.as_str()))
                {
                    c.write_commands += 1;
                }
                if let Some(id) = approved_in {
                    if let Some((who, conn, i)) = self.open_approvals.get(&id) {
                        let executed = evidence;
                        if let Some(a) = self
                            .ids
                            .get_mut(who)
                            .and_then(|acc| acc.conns.get_mut(conn))
                            .and_then(|c| c.approvals.get_mut(*i))
                        {
                            a.executed.get_or_insert(executed);
                        }
                    }
                }
            }
            EventKind::CommandResult => {
                let (Some(conn_name), Some(cmd)) = (ev.connection.as_deref(), &ev.command) else {
                    return;
                };
                if !in_period {
                    return;
                }
                let c = self.conn(identity, conn_name);
                c.rows += cmd.rows.unwrap_or(0);
                if cmd.error.is_some() {
                    c.failed += 1;
                }
                if !cmd.masked.is_empty() {
                    c.masked.add(&cmd.masked);
                    push_capped(&mut c.masked_evidence, Evidence::event(session, seq));
                }
            }
            EventKind::AuthFailure
                if in_period && self.opts.config.service_account(identity).is_some() =>
            {
                self.acc(identity).auth_failures += 1;
            }
            EventKind::Other => self.other(seq, identity, ev, in_period),
            _ => {}
        }
    }

    fn other(&mut self, seq: u64, actor: &str, ev: &AuditEvent, in_period: bool) {
        let Some(detail) = &ev.detail else { return };
        let ts = ev.ts_us;
        if detail.get("refused").is_some() {
            if let (true, Some(conn)) = (in_period, ev.connection.as_deref()) {
                self.conn(actor, conn).refused_sessions += 1;
            }
            return;
        }
        let Some(step) = detail.get("review_step").and_then(|v| v.as_str()) else {
            return;
        };
        let Some(review) = detail
            .get("review")
            .and_then(|r| serde_json::from_value::<Review>(r.clone()).ok())
        else {
            return;
        };
        let evidence = Evidence {
            audit_seq: Some(seq),
            review_id: Some(review.id.clone()),
            ..Evidence::default()
        };
        if matches!(step, "review_approved" | "review_vote" | "review_denied") {
            let acc = self.acc(actor);
            max_opt(&mut acc.last_activity_us, ts);
            if in_period {
                acc.review_votes += 1;
            }
        }
        if !in_period {
            return;
        }
        let c = self.conn(&review.requester, &review.connection);
        match step {
            "review_created" => {
                c.reviews_requested += 1;
                push_capped(&mut c.review_evidence, evidence);
            }
            "review_denied" => c.reviews_denied += 1,
            "review_expired" => c.reviews_expired += 1,
            "review_approved" => {
                let approvers: Vec<String> = review
                    .approvals
                    .iter()
                    .map(|v| v.reviewer.clone())
                    .collect();
                let approved_us = review.decided_us.unwrap_or(ts);
                match review.kind {
                    ReviewKind::Command => {
                        c.approvals_total += 1;
                        if c.approvals.len() < MAX_LISTED {
                            c.approvals.push(Approval {
                                review_id: review.id.clone(),
                                statement: review.statement.clone(),
                                rule: review.rule.clone(),
                                approvers,
                                approved_us,
                                evidence,
                                executed: None,
                            });
                            let i = c.approvals.len() - 1;
                            self.open_approvals.insert(
                                review.id.clone(),
                                (review.requester.clone(), review.connection.clone(), i),
                            );
                        }
                    }
                    ReviewKind::Access => {
                        c.grant_reviews.insert(review.id.clone());
                        if c.grants.len() < MAX_LISTED {
                            c.grants.push(AccessGrant {
                                review_id: review.id.clone(),
                                approvers,
                                approved_us,
                                duration_secs: review.grant_secs,
                                reason: review.reason.clone(),
                                evidence,
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }

    pub fn finish(self) -> Report {
        Finisher { agg: self }.run()
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Builds the report from any iterator of `(seq, event)`.
pub fn build<'e>(
    opts: Options<'_>,
    events: impl IntoIterator<Item = (u64, &'e AuditEvent)>,
) -> Report {
    let mut agg = Aggregator::new(opts);
    for (seq, ev) in events {
        agg.push(seq, ev);
    }
    agg.finish()
}

struct Finisher<'a> {
    agg: Aggregator<'a>,
}

/// An identity as the report sees it: from the config, else reconstructed from the log.
struct Subject {
    identity: Identity,
    groups: Vec<GroupMembership>,
    account: Option<ServiceAccount>,
}

impl Finisher<'_> {
    fn run(mut self) -> Report {
        let config = self.agg.opts.config;
        let filter = self.agg.opts.filter.clone();
        let mut subjects: Vec<Subject> = config
            .service_accounts
            .iter()
            .map(|sa| Subject {
                identity: sa.identity(),
                groups: sa
                    .groups
                    .iter()
                    .map(|g| GroupMembership {
                        group: g.clone(),
                        source: "config".into(),
                    })
                    .collect(),
                account: Some(sa.clone()),
            })
            .collect();
        let mut log_only: Vec<&String> = self
            .agg
            .ids
            .keys()
            .filter(|n| config.service_account(n).is_none())
            .collect();
        log_only.sort();
        for name in log_only {
            let Some(acc) = self.agg.ids.get(name) else {
                continue;
            };
            let bootstrap = name == "admin";
            let kind = match acc.kind.as_deref() {
                Some("human") => IdentityKind::Human,
                Some("service") => IdentityKind::Service,
                Some("workload") => IdentityKind::Workload,
                _ if bootstrap => IdentityKind::Human,
                _ => IdentityKind::Service,
            };
            let mut groups: Vec<GroupMembership> = acc
                .session_groups
                .iter()
                .map(|g| GroupMembership {
                    group: g.clone(),
                    source: "session".into(),
                })
                .collect();
            if bootstrap && groups.is_empty() {
                groups.push(GroupMembership {
                    group: "admins".into(),
                    source: "token".into(),
                });
            }
            subjects.push(Subject {
                identity: Identity {
                    name: name.clone(),
                    kind,
                    groups: groups.iter().map(|g| g.group.clone()).collect(),
                    agent: acc.agent.unwrap_or(false),
                },
                groups,
                account: None,
            });
        }
        // Groups recorded at session start that the config no longer gives.
        for s in subjects.iter_mut().filter(|s| s.account.is_some()) {
            if let Some(acc) = self.agg.ids.get(&s.identity.name) {
                for g in &acc.session_groups {
                    if !s.identity.groups.contains(g) {
                        s.groups.push(GroupMembership {
                            group: g.clone(),
                            source: "session".into(),
                        });
                    }
                }
            }
        }
        subjects.retain(|s| match &filter {
            Filter::All => true,
            Filter::Identity(n) => &s.identity.name == n,
            Filter::Group(g) => s.groups.iter().any(|m| &m.group == g),
            Filter::Agents => s.identity.agent,
        });
        subjects.sort_by(|a, b| {
            let rank = |s: &Subject| {
                (
                    !s.identity.agent,
                    match s.identity.kind {
                        IdentityKind::Service => 0,
                        IdentityKind::Workload => 1,
                        IdentityKind::Human => 2,
                    },
                )
            };
            rank(a)
                .cmp(&rank(b))
                .then_with(|| a.identity.name.cmp(&b.identity.name))
        });

        let mut findings = Vec::new();
        let mut identities = Vec::new();
        for s in &subjects {
            let r = self.identity_report(s, &mut findings);
            identities.push(r);
        }
        let mut rules = Vec::new();
        for rule in &config.rules {
            let used = self.agg.rules_used.get(&rule.name).copied().unwrap_or(0);
            rules.push(RuleUsage {
                name: rule.name.clone(),
                action: rule.action.as_str().to_owned(),
                line: rule.line,
                commands: used,
            });
            if used == 0 && filter == Filter::All {
                findings.push(Finding {
                    kind: FindingKind::RuleNeverMatched,
                    severity: FindingKind::RuleNeverMatched.severity(),
                    identity: None,
                    connection: None,
                    rule: Some(rule.name.clone()),
                    summary: format!(
                        "rule `{}` ({}) decided no command in the period",
                        rule.name,
                        rule.action.as_str()
                    ),
                    recommendation: "check its match keys (a typo matches nothing) or remove it"
                        .into(),
                    evidence: vec![Evidence::config(rule.line)],
                    evidence_total: 1,
                });
            }
        }
        findings.sort_by(|a, b| {
            (a.severity, a.kind, &a.identity, &a.connection, &a.rule).cmp(&(
                b.severity,
                b.kind,
                &b.identity,
                &b.connection,
                &b.rule,
            ))
        });
        let opts = &self.agg.opts;
        Report {
            generated_us: opts.now_us,
            since_us: opts.since_us,
            until_us: opts.until_us,
            scope: opts.filter.describe(),
            inactive_days: opts.inactive_days,
            rotation_days: opts.rotation_days,
            config_origin: config.origin.clone(),
            source: std::mem::take(&mut self.agg.stats),
            identities,
            findings,
            rules,
        }
    }

    fn identity_report(&mut self, s: &Subject, findings: &mut Vec<Finding>) -> IdentityReport {
        let config = self.agg.opts.config;
        let name = &s.identity.name;
        let mut acc = self.agg.ids.remove(name).unwrap_or_default();
        let finding = |kind: FindingKind,
                       connection: Option<&str>,
                       summary: String,
                       recommendation: &str,
                       evidence: Vec<Evidence>,
                       total: u64| Finding {
            kind,
            severity: kind.severity(),
            identity: Some(name.clone()),
            connection: connection.map(str::to_owned),
            rule: None,
            summary,
            recommendation: recommendation.to_owned(),
            evidence,
            evidence_total: total,
        };

        let mut access = Vec::new();
        let mut names: Vec<&Connection> = config.connections.iter().collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let mut seen = BTreeSet::new();
        for conn in names {
            let via = standing_via(&s.identity, s.account.as_ref(), conn);
            let activity = acc.conns.remove(&conn.name);
            if via.is_empty() && activity.is_none() {
                continue;
            }
            seen.insert(conn.name.clone());
            access.push(self.access_report(
                &s.identity,
                Some(conn),
                conn.name.clone(),
                via,
                activity.unwrap_or_default(),
            ));
        }
        // Activity on connections the config no longer has.
        for (conn_name, activity) in std::mem::take(&mut acc.conns) {
            if !seen.contains(&conn_name) {
                access.push(self.access_report(&s.identity, None, conn_name, Vec::new(), activity));
            }
        }

        let opts = &self.agg.opts;
        let token = match (&s.account, opts.tokens.get(name)) {
            (_, Some(t)) => TokenReport {
                source: t.source.clone(),
                last_rotated_us: t.last_rotated_us,
                age_days: t
                    .last_rotated_us
                    .map(|at| crate::time::days_between(at, opts.now_us)),
            },
            (Some(sa), None) => TokenReport {
                source: sa.token.source.to_string(),
                ..TokenReport::default()
            },
            (None, None) if name == "admin" => TokenReport {
                source: "bootstrap admin token (data_dir/admin-token.sha256)".into(),
                ..TokenReport::default()
            },
            (None, None) => TokenReport {
                source: "not in the current config".into(),
                ..TokenReport::default()
            },
        };

        // Findings about the identity as a whole.
        let account_line = s.account.as_ref().map(|a| a.line);
        if let Some(line) = account_line {
            let threshold = opts.now_us.saturating_sub(
                i64::try_from(opts.inactive_days).unwrap_or(i64::MAX / DAY_US) * DAY_US,
            );
            let since_known = acc.last_activity_us.or(self.agg.stats.first_event_us);
            if since_known.is_some_and(|t| t < threshold) {
                let summary = match acc.last_activity_us {
                    Some(t) => format!(
                        "no activity for {} days (last: {})",
                        crate::time::days_between(t, opts.now_us),
                        crate::time::fmt_time(t)
                    ),
                    None => format!(
                        "no activity since the audit log began ({}), over {} days",
                        self.agg
                            .stats
                            .first_event_us
                            .map(crate::time::fmt_date)
                            .unwrap_or_default(),
                        opts.inactive_days
                    ),
                };
                findings.push(finding(
                    FindingKind::InactiveIdentity,
                    None,
                    summary,
                    "disable the account (remove it from the config, or its token)",
                    vec![Evidence::config(line)],
                    1,
                ));
            }
            if let Some(age) = token.age_days.filter(|a| *a > opts.rotation_days) {
                findings.push(finding(
                    FindingKind::StaleToken,
                    None,
                    format!(
                        "token is {age} days old (rotation policy: {} days); from {}",
                        opts.rotation_days, token.source
                    ),
                    "rotate the token",
                    vec![Evidence::config(line)],
                    1,
                ));
            }
        }

        // Findings per connection.
        for a in &access {
            let conn = a.connection.as_str();
            if a.standing && a.sessions == 0 {
                let line = config.connection(conn).map(|c| c.line).unwrap_or(0);
                findings.push(finding(
                    FindingKind::UnusedGrant,
                    Some(conn),
                    format!(
                        "may use `{conn}` ({}) but opened no session in the period",
                        a.via.join(", ")
                    ),
                    "revoke the grant",
                    vec![Evidence::config(line)],
                    1,
                ));
            }
            if a.standing && a.write_access == "allow" && a.commands > 0 && a.write_commands == 0 {
                findings.push(finding(
                    FindingKind::ReadOnlySuffices,
                    Some(conn),
                    format!(
                        "may write on `{conn}` but ran only reads ({} commands)",
                        a.commands
                    ),
                    "make it read-only (a rule denying writes, or a read-only upstream user)",
                    a.session_evidence.clone(),
                    a.sessions,
                ));
            }
            if s.identity.agent {
                let denied: u64 = a.denied.iter().map(|d| d.count).sum();
                if denied > 0 {
                    let rules: Vec<String> = a
                        .denied
                        .iter()
                        .map(|d| format!("{} × {}", d.count, d.rule))
                        .collect();
                    let mut ev: Vec<Evidence> =
                        a.denied.iter().flat_map(|d| d.evidence.clone()).collect();
                    ev.truncate(MAX_EVIDENCE);
                    findings.push(finding(
                        FindingKind::AgentDenied,
                        Some(conn),
                        format!(
                            "agent had {denied} command(s) denied on `{conn}` ({})",
                            rules.join(", ")
                        ),
                        "check what the agent was asked to do; tighten its instructions or its grant",
                        ev,
                        denied,
                    ));
                }
                if a.reviews_requested > 0 {
                    findings.push(finding(
                        FindingKind::AgentReviewed,
                        Some(conn),
                        format!(
                            "agent needed {} human review(s) on `{conn}` ({} approved, {} denied, {} expired)",
                            a.reviews_requested,
                            a.approvals_total,
                            a.reviews_denied,
                            a.reviews_expired
                        ),
                        "confirm the approved statements were expected",
                        a.approvals
                            .iter()
                            .map(|p| p.evidence.clone())
                            .take(MAX_EVIDENCE)
                            .collect(),
                        a.reviews_requested,
                    ));
                }
            }
            if let Some(c) = config.connection(conn) {
                for (policy, group, object, ev) in
                    unmasked_reads(config, &s.identity, c, a, &self.agg.read_evidence)
                {
                    findings.push(finding(
                        FindingKind::UnmaskedExempt,
                        Some(conn),
                        format!(
                            "read `{object}` unmasked: exempt from masking policy `{policy}` through group `{group}`"
                        ),
                        "confirm the exemption is still needed, or remove the group from exempt_groups",
                        vec![ev],
                        1,
                    ));
                }
            }
        }

        IdentityReport {
            name: name.clone(),
            kind: s.identity.kind.as_str().to_owned(),
            agent: s.identity.agent,
            in_config: s.account.is_some(),
            groups: s.groups.clone(),
            token,
            last_activity_us: acc.last_activity_us,
            sessions: access.iter().map(|a| a.sessions).sum(),
            commands: access.iter().map(|a| a.commands).sum(),
            denied: access
                .iter()
                .flat_map(|a| a.denied.iter().map(|d| d.count))
                .sum(),
            auth_failures: acc.auth_failures,
            review_votes: acc.review_votes,
            access,
        }
    }

    fn access_report(
        &mut self,
        identity: &Identity,
        conn: Option<&Connection>,
        name: String,
        mut via: Vec<String>,
        c: ConnAcc,
    ) -> AccessReport {
        let opts = &self.agg.opts;
        let standing = !via.is_empty();
        for r in &c.grant_reviews {
            via.push(format!("access review {r}"));
        }
        if via.is_empty() {
            via.push(if conn.is_some() {
                "not allowed by the current config".into()
            } else {
                "connection not in the current config".into()
            });
        }
        let write_access = match (opts.policy, conn) {
            (Some(policy), Some(conn)) => write_access(policy, identity, conn, opts.now_us),
            _ => "unknown".to_owned(),
        };
        let recertification = opts
            .recertifications
            .iter()
            .filter(|r| r.identity == identity.name && r.connection == name)
            .max_by_key(|r| r.at_us)
            .cloned();
        let mut objects_read = BTreeMap::new();
        for (object, (n, ev)) in c.reads {
            self.agg
                .read_evidence
                .insert((identity.name.clone(), name.clone(), object.clone()), ev);
            objects_read.insert(object, n);
        }
        AccessReport {
            connection: name,
            via,
            standing,
            write_access,
            sessions: c.sessions,
            session_evidence: c.session_evidence,
            refused_sessions: c.refused_sessions,
            commands: c.commands,
            operations: c.operations,
            objects_read,
            objects_written: c.writes,
            write_commands: c.write_commands,
            rows_returned: c.rows,
            failed_commands: c.failed,
            masked: c.masked,
            masked_evidence: c.masked_evidence,
            denied: c.denied.into_values().collect(),
            approvals: c.approvals,
            approvals_total: c.approvals_total,
            access_grants: c.grants,
            reviews_requested: c.reviews_requested,
            reviews_denied: c.reviews_denied,
            reviews_expired: c.reviews_expired,
            last_activity_us: c.last_activity_us,
            recertification,
        }
    }
}

/// How the current config lets `identity` reach `conn` (empty: it does not).
pub(crate) fn standing_via(
    identity: &Identity,
    account: Option<&ServiceAccount>,
    conn: &Connection,
) -> Vec<String> {
    if account.is_some_and(|a| !a.limited_to(&conn.name)) {
        return Vec::new();
    }
    let mut via = Vec::new();
    if conn.allow_identities.contains(&identity.name) {
        via.push("allow_identities".to_owned());
    }
    for g in &conn.allow_groups {
        if identity.in_group(g) {
            via.push(format!("group {g}"));
        }
    }
    via
}

/// What the rules decide for a write by `identity` on `conn`: `allow` when any of a bounded
/// insert, update or delete would run, else `review` when one would go to review, else `deny`.
fn write_access(policy: &PolicySet, identity: &Identity, conn: &Connection, now_us: i64) -> String {
    let (minute_of_day, weekday) = airlock_core::policy::utc_clock(now_us.div_euclid(1_000_000));
    let mut best = Action::Deny;
    for operation in [Operation::Insert, Operation::Update, Operation::Delete] {
        let classification = Classification {
            statements: vec![Statement {
                operation,
                writes: vec!["airlock_write_probe".into()],
                has_where: true,
                writes_data: true,
                ..Statement::default()
            }],
            ..Classification::default()
        };
        let decision = policy.decide(&Request {
            identity,
            connection: ConnectionRef {
                name: &conn.name,
                tags: Some(&conn.tags),
            },
            classification: &classification,
            text: "",
            minute_of_day,
            weekday,
        });
        best = match (best, decision.action) {
            (_, Action::Allow) | (Action::Allow, _) => Action::Allow,
            (_, Action::Review) | (Action::Review, _) => Action::Review,
            _ => Action::Deny,
        };
    }
    best.as_str().to_owned()
}

/// Reads of tables a masking policy names by column, by an identity exempt from that policy
/// through one of its groups: `(policy, group, object, evidence)`.
fn unmasked_reads(
    config: &Config,
    identity: &Identity,
    conn: &Connection,
    access: &AccessReport,
    evidence: &HashMap<(String, String, String), Evidence>,
) -> Vec<(String, String, String, Evidence)> {
    let mut out = Vec::new();
    for p in &config.masking {
        if p.connections.as_ref().is_some_and(|m| !conn.selected_by(m)) {
            continue;
        }
        let applies = (p.identities.is_empty() && p.groups.is_empty())
            || p.identities.contains(&identity.name)
            || p.groups.iter().any(|g| identity.in_group(g));
        let Some(group) = p.exempt_groups.iter().find(|g| identity.in_group(g)) else {
            continue;
        };
        if !applies {
            continue;
        }
        for object in access.objects_read.keys() {
            if p.columns.iter().any(|c| column_table_matches(c, object)) {
                let ev = evidence
                    .get(&(identity.name.clone(), conn.name.clone(), object.clone()))
                    .cloned()
                    .unwrap_or_default();
                out.push((p.name.clone(), group.clone(), object.clone(), ev));
            }
        }
    }
    out
}

/// Whether a masking column pattern (`table.column`, `schema.table.column`) names the table of
/// `object` (`table` or `schema.table`). A `*` table matches any table and says nothing about
/// which one was read, so it is not evidence of a sensitive read.
fn column_table_matches(pattern: &str, object: &str) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    let table_parts = match parts.as_slice() {
        [table, _col] => vec![*table],
        [schema, table, _col] => vec![*schema, *table],
        _ => return false,
    };
    if table_parts.last() == Some(&"*") {
        return false;
    }
    let obj: Vec<&str> = object.split('.').collect();
    match (table_parts.as_slice(), obj.as_slice()) {
        ([t], [.., o]) => t == o,
        ([s, t], [os, ot]) => (*s == "*" || s == os) && t == ot,
        ([s, t], [ot]) => (*s == "*" || *s == "public") && t == ot,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::column_table_matches;

    #[test]
    fn masking_columns_name_tables() {
        assert!(column_table_matches("payments.card_number", "payments"));
        assert!(column_table_matches(
            "payments.card_number",
            "billing.payments"
        ));
        assert!(column_table_matches(
            "billing.payments.card_number",
            "billing.payments"
        ));
        assert!(column_table_matches(
            "public.payments.card_number",
            "payments"
        ));
        assert!(!column_table_matches(
            "billing.payments.card_number",
            "payments"
        ));
        assert!(!column_table_matches("*.email", "users"));
        assert!(!column_table_matches("payments.card_number", "orders"));
    }
}

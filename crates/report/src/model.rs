//! What the report says: plain data, serialized as-is for `--format json` and the API.

use airlock_store::MaskedCounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Lists of evidence and of approvals are capped at this many entries per item (with a total
/// alongside), so a report over millions of events stays readable and small.
pub const MAX_EVIDENCE: usize = 5;
pub const MAX_LISTED: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub generated_us: i64,
    pub since_us: i64,
    pub until_us: i64,
    /// `all identities`, `identity alice`, `group dba`, `agents`.
    pub scope: String,
    pub inactive_days: u64,
    pub rotation_days: u64,
    /// The config file the grants come from (for `file:line` evidence).
    pub config_origin: String,
    pub source: SourceStats,
    pub identities: Vec<IdentityReport>,
    pub findings: Vec<Finding>,
    /// Every configured rule and how many commands it decided in the period.
    pub rules: Vec<RuleUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// Audit events read (the whole log: last activity looks before the period too).
    pub events: u64,
    pub events_in_period: u64,
    /// Lines that did not parse as audit events (`airlock audit verify` says why).
    pub unreadable_lines: u64,
    pub first_event_us: Option<i64>,
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityReport {
    pub name: String,
    /// `human`, `service`, `workload`, or `unknown` (seen in the log only).
    pub kind: String,
    pub agent: bool,
    /// Defined in the current config (else only seen in the audit log).
    pub in_config: bool,
    pub groups: Vec<GroupMembership>,
    pub token: TokenReport,
    /// Latest session, command or review vote up to the end of the period (any time before it).
    pub last_activity_us: Option<i64>,
    pub sessions: u64,
    pub commands: u64,
    pub denied: u64,
    pub auth_failures: u64,
    /// Review votes this identity cast in the period (reviewers).
    pub review_votes: u64,
    pub access: Vec<AccessReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub group: String,
    /// `config` (`groups = [...]` of the account), `token` (the bootstrap admin token), or
    /// `session` (recorded at session start but not in the current config). OIDC `groups`
    /// claims will add `idp`.
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReport {
    /// Where the token comes from (`environment variable X`, `file /path`), never the value.
    pub source: String,
    /// When the token last changed, if it can be known (a token file's modification time).
    pub last_rotated_us: Option<i64>,
    pub age_days: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessReport {
    pub connection: String,
    /// How the identity reaches it: `group G`, `allow_identities`, `access review R`, or
    /// `not allowed by the current config` (history only).
    pub via: Vec<String>,
    /// Reachable through the current config (a standing grant, the subject of recertification).
    pub standing: bool,
    /// What the rules do with a write by this identity here: `allow`, `review`, `deny`, or
    /// `unknown` (no policy given).
    pub write_access: String,
    pub sessions: u64,
    pub session_evidence: Vec<Evidence>,
    /// Session attempts refused because the identity may not use the connection.
    pub refused_sessions: u64,
    /// Commands that ran (allowed, or approved in a review).
    pub commands: u64,
    pub operations: BTreeMap<String, u64>,
    pub objects_read: BTreeMap<String, u64>,
    pub objects_written: BTreeMap<String, u64>,
    /// Commands that wrote or may have written.
    pub write_commands: u64,
    pub rows_returned: u64,
    pub failed_commands: u64,
    pub masked: MaskedCounts,
    pub masked_evidence: Vec<Evidence>,
    pub denied: Vec<Denial>,
    pub approvals: Vec<Approval>,
    pub approvals_total: u64,
    pub access_grants: Vec<AccessGrant>,
    pub reviews_requested: u64,
    pub reviews_denied: u64,
    pub reviews_expired: u64,
    pub last_activity_us: Option<i64>,
    pub recertification: Option<crate::Recertification>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The deciding rule; `(default)` when the default action denied.
    pub rule: String,
    pub count: u64,
    /// The message of the first denial.
    pub message: Option<String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub review_id: String,
    pub statement: Option<String>,
    pub rule: Option<String>,
    pub approvers: Vec<String>,
    pub approved_us: i64,
    /// The review step in the audit log.
    pub evidence: Evidence,
    /// The command that ran on this approval, once seen.
    pub executed: Option<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    pub review_id: String,
    pub approvers: Vec<String>,
    pub approved_us: i64,
    pub duration_secs: Option<u64>,
    pub reason: Option<String>,
    pub evidence: Evidence,
}

/// Where a figure can be checked: a session (`airlock sessions show ID`), an audit event
/// (`seq` in the log), a review, or a line of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_line: Option<usize>,
}

impl Evidence {
    pub fn event(session_id: Option<&str>, audit_seq: u64) -> Self {
        Evidence {
            session_id: session_id.map(str::to_owned),
            audit_seq: Some(audit_seq),
            ..Evidence::default()
        }
    }

    pub fn config(line: usize) -> Self {
        Evidence {
            config_line: Some(line),
            ..Evidence::default()
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(s) = &self.session_id {
            parts.push(format!("session {s}"));
        }
        if let Some(r) = &self.review_id {
            parts.push(format!("review {r}"));
        }
        if let Some(n) = self.audit_seq {
            parts.push(format!("audit #{n}"));
        }
        if let Some(l) = self.config_line {
            parts.push(format!("config line {l}"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Sensitive data read without masking by a member of an exempt group.
    UnmaskedExempt,
    /// An agent had commands denied.
    AgentDenied,
    /// Write access granted, only reads used.
    ReadOnlySuffices,
    /// A standing grant never used in the period.
    UnusedGrant,
    /// No activity for `inactive_days`.
    InactiveIdentity,
    /// Token older than the rotation policy.
    StaleToken,
    /// An agent's commands needed a human review.
    AgentReviewed,
    /// A rule that decided no command in the period.
    RuleNeverMatched,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::UnusedGrant => "unused_grant",
            FindingKind::ReadOnlySuffices => "read_only_suffices",
            FindingKind::InactiveIdentity => "inactive_identity",
            FindingKind::StaleToken => "stale_token",
            FindingKind::AgentDenied => "agent_denied",
            FindingKind::AgentReviewed => "agent_reviewed",
            FindingKind::RuleNeverMatched => "rule_never_matched",
            FindingKind::UnmaskedExempt => "unmasked_exempt",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            FindingKind::UnmaskedExempt | FindingKind::AgentDenied => Severity::High,
            FindingKind::UnusedGrant
            | FindingKind::ReadOnlySuffices
            | FindingKind::InactiveIdentity
            | FindingKind::StaleToken => Severity::Medium,
            FindingKind::AgentReviewed | FindingKind::RuleNeverMatched => Severity::Low,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub summary: String,
    pub recommendation: String,
    pub evidence: Vec<Evidence>,
    /// How many pieces of evidence there are (only the first few are listed).
    pub evidence_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleUsage {
    pub name: String,
    pub action: String,
    pub line: usize,
    pub commands: u64,
}

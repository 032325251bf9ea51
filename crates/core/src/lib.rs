//! The airlock domain model: identities, commands and their classification, decisions.
//!
//! Everything here is pure data and pure functions: no I/O, no async, no clocks read
//! implicitly. Protocol adapters, the SQL classifier, the policy engine and the audit store
//! all speak these types, so one vocabulary is used everywhere (see SPEC.md).

use serde::{Deserialize, Serialize};
use std::fmt;

pub mod policy;
pub mod review;

/// Who acts through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub kind: IdentityKind,
    pub groups: Vec<String>,
    /// Declared AI agent (service accounts and workloads only).
    pub agent: bool,
}

impl Identity {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    Human,
    Service,
    Workload,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Human => "human",
            IdentityKind::Service => "service",
            IdentityKind::Workload => "workload",
        }
    }
}

/// Turns a command's text into what it does (its parts, verbs, resources, fail-closed flags),
/// for one connection type. The gate holds one per type (`airlock_gate::Classifiers`) and never
/// asks which protocol it is judging; an adapter for a new protocol registers its own.
pub trait Classifier: Send + Sync {
    fn classify(&self, text: &str) -> std::sync::Arc<Classification>;
}

/// The kind of target a connection points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    Postgres,
    Mysql,
    Ssh,
    Http,
    Kubernetes,
    Aws,
}

impl ConnectionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Postgres => "postgres",
            ConnectionType::Mysql => "mysql",
            ConnectionType::Ssh => "ssh",
            ConnectionType::Http => "http",
            ConnectionType::Kubernetes => "kubernetes",
            ConnectionType::Aws => "aws",
        }
    }
}

/// What a command does. The order of variants carries no meaning; use [`Operation::is_write`]
/// and [`Operation::danger`] for policy questions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    Create,
    Alter,
    Drop,
    Truncate,
    Grant,
    Revoke,
    Copy,
    Call,
    Do,
    Set,
    Show,
    Begin,
    Commit,
    Rollback,
    /// Explicit locks: `LOCK TABLE`, `SELECT … FOR UPDATE/SHARE`, MySQL `LOCK IN SHARE MODE`.
    /// A read that holds row or table locks blocks every writer for as long as its
    /// transaction stays open, so it counts as a write (a read-only rule denies it).
    Lock,
    Other,
    #[default]
    Unknown,
}

impl Operation {
    pub const ALL: [Operation; 22] = [
        Operation::Select,
        Operation::Insert,
        Operation::Update,
        Operation::Delete,
        Operation::Merge,
        Operation::Create,
        Operation::Alter,
        Operation::Drop,
        Operation::Truncate,
        Operation::Grant,
        Operation::Revoke,
        Operation::Copy,
        Operation::Call,
        Operation::Do,
        Operation::Set,
        Operation::Show,
        Operation::Begin,
        Operation::Commit,
        Operation::Rollback,
        Operation::Lock,
        Operation::Other,
        Operation::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Select => "select",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Merge => "merge",
            Operation::Create => "create",
            Operation::Alter => "alter",
            Operation::Drop => "drop",
            Operation::Truncate => "truncate",
            Operation::Grant => "grant",
            Operation::Revoke => "revoke",
            Operation::Copy => "copy",
            Operation::Call => "call",
            Operation::Do => "do",
            Operation::Set => "set",
            Operation::Show => "show",
            Operation::Begin => "begin",
            Operation::Commit => "commit",
            Operation::Rollback => "rollback",
            Operation::Lock => "lock",
            Operation::Other => "other",
            Operation::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.iter().copied().find(|op| op.as_str() == s)
    }

    /// Whether the operation by its nature changes data, schema or privileges.
    /// `call`, `do`, `other` and `unknown` are counted as writes: we cannot prove they are not
    /// (fail closed). `copy` is a write only when it copies *into* a table; the classifier records
    /// that on the statement (`Statement::writes_data`), so here it is conservatively a write.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Operation::Select
                | Operation::Show
                | Operation::Set
                | Operation::Begin
                | Operation::Commit
                | Operation::Rollback
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed statement (a command may hold several).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Statement {
    pub operation: Operation,
    /// Relations read, as `schema.name` when the statement qualifies them, else `name`; lower-cased
    /// unless quoted.
    pub reads: Vec<String>,
    /// Relations written (inserted into, updated, deleted from, created, altered, dropped, ...).
    pub writes: Vec<String>,
    /// For `update`/`delete`/`merge`: whether a WHERE (or join condition) bounds it.
    /// `true` for operations where the question does not apply.
    pub has_where: bool,
    /// The statement writes or may write (data-modifying CTEs, `SELECT ... INTO`, `COPY ... FROM`,
    /// `EXPLAIN ANALYZE <write>`, calls of functions not known to be read-only, ...).
    pub writes_data: bool,
    /// SQL hidden in strings: `DO`, `EXECUTE`, `PREPARE ... AS`-text, dynamic functions.
    pub dynamic_sql: bool,
    /// Functions called (lower-cased, schema-qualified when written so).
    pub functions: Vec<String>,
}

/// The classification of one command, produced by a real parser for its dialect.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Classification {
    /// One entry per statement. Empty for an empty command (`;`).
    pub statements: Vec<Statement>,
    /// More than one statement in one command.
    pub multi_statement: bool,
    /// The parser rejected the text; `statements` then holds one `unknown` statement.
    pub unparsed: bool,
    /// The parser's message when `unparsed`.
    pub parse_error: Option<String>,
}

impl Classification {
    /// Every relation the command names, read or written, as the classifier reports them
    /// (what masking's catalog checks ask the upstream about).
    pub fn relations(&self) -> Vec<String> {
        self.statements
            .iter()
            .flat_map(|s| s.reads.iter().chain(s.writes.iter()).cloned())
            .collect()
    }

    /// A command we could not parse: one `unknown` statement that may write and hides SQL.
    pub fn unparsed(error: impl Into<String>) -> Self {
        Classification {
            statements: vec![Statement {
                operation: Operation::Unknown,
                has_where: false,
                writes_data: true,
                dynamic_sql: true,
                ..Statement::default()
            }],
            multi_statement: false,
            unparsed: true,
            parse_error: Some(error.into()),
        }
    }

    pub fn dynamic_sql(&self) -> bool {
        self.statements.iter().any(|s| s.dynamic_sql)
    }

    pub fn writes_data(&self) -> bool {
        self.unparsed || self.statements.iter().any(|s| s.writes_data)
    }

    /// The operation that names the command in lists: the first statement that writes, else the
    /// first statement.
    pub fn primary_operation(&self) -> Operation {
        self.statements
            .iter()
            .find(|s| s.writes_data)
            .or_else(|| self.statements.first())
            .map(|s| s.operation)
            .unwrap_or(Operation::Other)
    }

    pub fn reads(&self) -> impl Iterator<Item = &str> {
        self.statements
            .iter()
            .flat_map(|s| s.reads.iter().map(String::as_str))
    }

    pub fn writes(&self) -> impl Iterator<Item = &str> {
        self.statements
            .iter()
            .flat_map(|s| s.writes.iter().map(String::as_str))
    }

    /// Risk flags as names, for logs and audit events.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.multi_statement {
            flags.push("multi_statement");
        }
        if self.dynamic_sql() {
            flags.push("dynamic_sql");
        }
        if self.unparsed {
            flags.push("unparsed");
        }
        flags
    }
}

/// What the gate decided for a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Review,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Review => "review",
            Action::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "allow" => Some(Action::Allow),
            "review" => Some(Action::Review),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
        }
        assert_eq!(Operation::parse("nope"), None);
    }

    #[test]
    fn unknown_dynamic_and_calls_count_as_writes() {
        for op in [
            Operation::Unknown,
            Operation::Do,
            Operation::Call,
            Operation::Other,
        ] {
            assert!(op.is_write(), "{op} must fail closed");
        }
        assert!(!Operation::Select.is_write());
    }

    #[test]
    fn unparsed_is_dangerous() {
        let c = Classification::unparsed("syntax error");
        assert!(c.writes_data());
        assert!(c.dynamic_sql());
        assert_eq!(c.flags(), vec!["dynamic_sql", "unparsed"]);
    }
}

/// How to protect the connection to a database upstream (`sslmode`, libpq's meanings: `require`
/// encrypts without verifying, `verify-ca` checks the chain, `verify-full` also the host name).
/// One type for the config, the gate's upstream spec and the TLS setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub fn parse(s: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

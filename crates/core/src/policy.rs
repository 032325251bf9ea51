//! The policy engine: rules in, decisions out. Pure: the caller supplies the clock.

use crate::{Action, Classification, Identity, Operation};
use serde::Serialize;
use std::collections::BTreeMap;

/// The connection a command targets, as the policy sees it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionRef<'a> {
    pub name: &'a str,
    pub tags: Option<&'a BTreeMap<String, String>>,
}

/// Everything a rule may match on.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub identity: &'a Identity,
    pub connection: ConnectionRef<'a>,
    pub classification: &'a Classification,
    /// The command text as the client sent it.
    pub text: &'a str,
    /// Minutes since midnight UTC and ISO weekday (1 = Monday), for `hours` windows.
    pub minute_of_day: u16,
    pub weekday: u8,
}

/// Which connections a rule or masking policy applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionMatch {
    pub names: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// A guardrail, compiled from a `[[rules]]` section.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub identities: Vec<String>,
    pub groups: Vec<String>,
    /// `Some(true)`: only agents; `Some(false)`: only non-agents.
    pub agents: Option<bool>,
    pub connections: Option<ConnectionMatch>,
    pub operations: Vec<Operation>,
    /// `Some(true)`: statements that write or may write.
    pub writes: Option<bool>,
    /// Globs over `schema.table` / `table`.
    pub objects: Vec<String>,
    pub without_where: bool,
    pub pattern: Option<regex_lite_placeholder::Pattern>,
    pub action: Action,
    pub message: Option<String>,
    pub reviewers: Vec<String>,
    pub timeout_secs: Option<u64>,
}

/// Placeholder module so the struct compiles before the engine lands.
pub mod regex_lite_placeholder {
    #[derive(Debug, Clone)]
    pub struct Pattern(pub String);
}

/// The outcome of judging one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// The rule that decided, if any (none: the default action applied).
    pub rule: Option<String>,
    pub message: Option<String>,
    pub reviewers: Vec<String>,
    pub timeout_secs: Option<u64>,
    /// Every rule that matched, for `airlock policy test`.
    pub matched: Vec<String>,
}

impl Decision {
    pub fn allow() -> Self {
        Decision {
            action: Action::Allow,
            rule: None,
            message: None,
            reviewers: Vec::new(),
            timeout_secs: None,
            matched: Vec::new(),
        }
    }
}

/// The rule set of one configuration.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub rules: Vec<Rule>,
}

impl PolicySet {
    pub fn decide(&self, _req: &Request<'_>) -> Decision {
        Decision::allow()
    }
}

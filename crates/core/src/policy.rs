//! The policy engine: rules in, decisions out. Pure: the caller supplies the clock.
//!
//! # The contract
//!
//! A [`PolicySet`] judges one command (a [`Request`]) and returns a [`Decision`].
//!
//! **Per statement.** Each statement of a command is judged on its own; the command gets the
//! strictest decision of its parts (`deny` > `review` > `allow`). A command with zero
//! statements (`;`) gets `default_action`: it does nothing.
//!
//! **Matching.** A rule matches a statement when *all* of its given matchers match; an empty
//! list, `None` or `false` (`without_where`) is no constraint, so a rule without matchers
//! matches every statement.
//!
//! | matcher | matches when |
//! | --- | --- |
//! | `identities` | the identity's name is listed |
//! | `groups` | the identity is in any listed group |
//! | `agents` | `Some(true)`: the identity is a declared agent; `Some(false)`: it is not |
//! | `connections` | the connection's name is in `names`, **or** every pair in `tags` equals the connection's tag (when both are given, either suffices) |
//! | `operations` | the statement's operation is listed |
//! | `writes` | `Some(true)`: the statement writes or may write (see below); `Some(false)`: it surely does not |
//! | `objects` | a glob (`*` any run of characters, dots included; `?` one character; case-insensitive) matches a relation read or written. A glob is also tried against every dot-suffix of the name: `payments` matches `archive.payments`, `audit.secrets` matches `db.audit.secrets`. |
//! | `without_where` | `update`/`delete`/`merge` without a WHERE (`has_where = false`) |
//! | `pattern` | the regex (case-insensitive unless it says `(?-i)`) finds a match in the command text with every whitespace run collapsed to one space and the ends trimmed |
//! | `hours` | the request's UTC time lies in the window, see [`TimeWindow`] |
//!
//! A statement "may write" when the classifier says it writes (`writes_data`), when its
//! operation is a write by nature ([`Operation::is_write`], except `copy`, whose direction the
//! classifier records in `writes_data`), or when it is *opaque* (below).
//!
//! **Fail closed.** A statement is *opaque* when the whole command was unparsed, when it hides
//! SQL in strings (`dynamic_sql`), or when its operation is `unknown`, `do` or `call` (a
//! procedure body is invisible to us). For an opaque statement the engine cannot know the
//! operation, the objects or whether a WHERE bounds it, so those matchers answer "maybe"
//! (unless they match outright, e.g. `operations = ["do"]` against a DO block). An unqualified
//! object against a schema-qualified glob (`secrets` vs `audit.*`) is also "maybe", since
//! `search_path`/`USE` decides where it resolves. A request clock out of range makes `hours`
//! "maybe". A "maybe" is resolved toward the stricter outcome:
//!
//! * `deny` and `review` rules **match** on "maybe" — unparsed text is judged as the most
//!   dangerous operation any rule concerns, a DO block is caught by `writes = true` and by
//!   every `objects` list;
//! * `allow` rules **do not match** on "maybe" — an allow rule cannot wave through something it
//!   cannot see, so an opaque statement falls through to the other rules and the defaults.
//!
//! **Precedence.** Among the rules that match, `deny` beats `review` beats `allow`. Among rules
//! with the same action the first in file order is the deciding rule: it supplies the name, the
//! message (or a generated one such as "denied by rule `no-destructive-ddl`") and the reviewer
//! groups. For a `review`, `min_approvals` is the largest and `timeout_secs` the smallest over
//! all matching review rules, so combining rules never lowers the bar; `min_approvals` is at
//! least 1 (a review needing no approval would be a silent allow). A review rule without
//! reviewers uses `default_reviewers`. `matched` lists every matching rule once, in file order.
//!
//! **Defaults.** A statement no rule matches gets `default_write_action` when it may write,
//! else `default_action`.
//!
//! Patterns are a complement, not the guardrail: comments or string tricks can split words
//! (`DROP/**/TABLE`). Guard with `operations`, `writes` and `objects`, which come from the parser.

use crate::{Action, Classification, Identity, Operation, Statement};
use regex::{Regex, RegexBuilder};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use thiserror::Error;

/// Minutes in a day; `TimeWindow` minutes lie in `0..MINUTES_PER_DAY`.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// Errors building policy parts from configuration values.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("invalid pattern: {0}")]
    Pattern(String),
    #[error("invalid time `{0}`: expected HH:MM between 00:00 and 24:00")]
    Time(String),
    #[error("invalid hours `{0}`: expected HH:MM-HH:MM, e.g. 22:00-06:00")]
    Hours(String),
    #[error(
        "invalid weekday `{0}`: expected 1..=7 (Monday = 1) or mon, tue, wed, thu, fri, sat, sun"
    )]
    Weekday(String),
}

/// Compiles a rule `pattern`. Case-insensitive by default because SQL keywords are; a pattern
/// can opt out with `(?-i)`.
pub fn compile_pattern(src: &str) -> Result<Regex, PolicyError> {
    RegexBuilder::new(src)
        .case_insensitive(true)
        // Config is admin input, but a pathological pattern must not eat the gateway's memory.
        .size_limit(1 << 20)
        .build()
        .map_err(|e| PolicyError::Pattern(e.to_string()))
}

/// The UTC minute of day and ISO weekday (1 = Monday) of a Unix time in seconds, for
/// [`Request::minute_of_day`] and [`Request::weekday`].
pub fn utc_clock(unix_secs: i64) -> (u16, u8) {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    // 1970-01-01 was a Thursday (ISO 4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    // Both values are range-bounded by the euclidean ops above.
    ((secs_of_day / 60) as u16, weekday as u8)
}

/// A daily time window in UTC, optionally limited to some weekdays.
///
/// `start == end` is the whole day. `start < end` is `[start, end)`. `start > end` wraps
/// midnight: `[start, 24:00)` on a listed weekday plus `[00:00, end)` on the day after it, so
/// "Friday 22:00-06:00" covers Saturday 03:00 but not Friday 03:00. `weekdays` empty means
/// every day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    start_minute: u16,
    end_minute: u16,
    weekdays: Vec<u8>,
}

impl TimeWindow {
    /// `start`/`end` in minutes since midnight (`0..1440`; `end` may be 1440 for 24:00),
    /// `weekdays` ISO numbers 1..=7.
    pub fn new(start_minute: u16, end_minute: u16, weekdays: Vec<u8>) -> Result<Self, PolicyError> {
        if start_minute >= MINUTES_PER_DAY {
            return Err(PolicyError::Time(format_minute(start_minute)));
        }
        if end_minute > MINUTES_PER_DAY {
            return Err(PolicyError::Time(format_minute(end_minute)));
        }
        if let Some(bad) = weekdays.iter().find(|d| !(1..=7).contains(*d)) {
            return Err(PolicyError::Weekday(bad.to_string()));
        }
        let end_minute = if end_minute == MINUTES_PER_DAY && start_minute == 0 {
            0
        } else {
            end_minute % MINUTES_PER_DAY
        };
        let mut weekdays = weekdays;
        weekdays.sort_unstable();
        weekdays.dedup();
        Ok(TimeWindow {
            start_minute,
            end_minute,
            weekdays,
        })
    }

    /// Parses `"HH:MM-HH:MM"`, e.g. `"09:00-18:00"` or `"22:00-06:00"`.
    pub fn parse(range: &str, weekdays: Vec<u8>) -> Result<Self, PolicyError> {
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| PolicyError::Hours(range.to_string()))?;
        TimeWindow::new(parse_hhmm(start.trim())?, parse_hhmm(end.trim())?, weekdays)
    }

    pub fn start_minute(&self) -> u16 {
        self.start_minute
    }

    pub fn end_minute(&self) -> u16 {
        self.end_minute
    }

    pub fn weekdays(&self) -> &[u8] {
        &self.weekdays
    }

    fn day_listed(&self, weekday: u8) -> bool {
        self.weekdays.is_empty() || self.weekdays.contains(&weekday)
    }

    /// Whether the UTC minute of day on the ISO weekday lies in the window. Out-of-range
    /// inputs are never inside.
    pub fn contains(&self, minute_of_day: u16, weekday: u8) -> bool {
        if minute_of_day >= MINUTES_PER_DAY || !(1..=7).contains(&weekday) {
            return false;
        }
        let (start, end) = (self.start_minute, self.end_minute);
        if start == end {
            return self.day_listed(weekday);
        }
        if start < end {
            return (start..end).contains(&minute_of_day) && self.day_listed(weekday);
        }
        let previous_day = if weekday == 1 { 7 } else { weekday - 1 };
        (minute_of_day >= start && self.day_listed(weekday))
            || (minute_of_day < end && self.day_listed(previous_day))
    }
}

fn format_minute(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn parse_hhmm(s: &str) -> Result<u16, PolicyError> {
    let bad = || PolicyError::Time(s.to_string());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Parses a weekday name (`mon`, `Monday`, ...) or ISO number (`1`..`7`).
pub fn parse_weekday(s: &str) -> Result<u8, PolicyError> {
    let lower = s.trim().to_ascii_lowercase();
    let day = match lower.as_str() {
        "1" | "mon" | "monday" => 1,
        "2" | "tue" | "tuesday" => 2,
        "3" | "wed" | "wednesday" => 3,
        "4" | "thu" | "thursday" => 4,
        "5" | "fri" | "friday" => 5,
        "6" | "sat" | "saturday" => 6,
        "7" | "sun" | "sunday" => 7,
        _ => return Err(PolicyError::Weekday(s.to_string())),
    };
    Ok(day)
}

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
    /// Minutes since midnight UTC and ISO weekday (1 = Monday), for `hours` windows; see
    /// [`utc_clock`].
    pub minute_of_day: u16,
    pub weekday: u8,
}

/// Which connections a rule or masking policy applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionMatch {
    pub names: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl ConnectionMatch {
    /// One of the listed names (when names are given) *and* every listed tag equal (when tags
    /// are given); an empty selector matches every connection. The one meaning rules, masking
    /// and the access review share (docs/configuration.md). It once was "name *or* tags" here
    /// only, so an allow rule meant for connection `a` tagged like `b` opened `b` too.
    pub fn matches(&self, conn: &ConnectionRef<'_>) -> bool {
        let name_ok = self.names.is_empty() || self.names.iter().any(|n| n == conn.name);
        let tags_ok = self.tags.is_empty()
            || conn.tags.is_some_and(|have| {
                self.tags
                    .iter()
                    .all(|(k, v)| have.get(k).is_some_and(|hv| hv == v))
            });
        name_ok && tags_ok
    }
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
    /// `Some(true)`: statements that write or may write; `Some(false)`: statements that surely
    /// do not.
    pub writes: Option<bool>,
    /// Globs over `schema.table` / `table`.
    pub objects: Vec<String>,
    pub without_where: bool,
    /// Build with [`compile_pattern`] so that matching is case-insensitive.
    pub pattern: Option<Regex>,
    pub hours: Option<TimeWindow>,
    pub action: Action,
    pub message: Option<String>,
    /// Reviewer groups; empty means the policy set's `default_reviewers`.
    pub reviewers: Vec<String>,
    pub timeout_secs: Option<u64>,
    pub min_approvals: u32,
}

impl Rule {
    /// A rule with no matchers (it matches everything) and `min_approvals = 1`.
    pub fn new(name: impl Into<String>, action: Action) -> Self {
        Rule {
            name: name.into(),
            identities: Vec::new(),
            groups: Vec::new(),
            agents: None,
            connections: None,
            operations: Vec::new(),
            writes: None,
            objects: Vec::new(),
            without_where: false,
            pattern: None,
            hours: None,
            action,
            message: None,
            reviewers: Vec::new(),
            timeout_secs: None,
            min_approvals: 1,
        }
    }

    /// Whether the rule's identity and connection matchers select this pair (the matchers that
    /// do not depend on the command).
    fn selects(&self, identity: &Identity, connection: &ConnectionRef<'_>) -> bool {
        (self.identities.is_empty() || self.identities.contains(&identity.name))
            && (self.groups.is_empty() || self.groups.iter().any(|g| identity.in_group(g)))
            && self.agents.is_none_or(|want| want == identity.agent)
            && self
                .connections
                .as_ref()
                .is_none_or(|c| c.matches(connection))
    }

    /// A deny rule whose only command matcher is `writes = true`: it refuses every statement
    /// that writes or may write, whatever its operation, objects or time.
    fn denies_every_write(&self) -> bool {
        self.action == Action::Deny
            && self.writes == Some(true)
            && self.operations.is_empty()
            && self.objects.is_empty()
            && !self.without_where
            && self.pattern.is_none()
            && self.hours.is_none()
    }

    /// How well the rule fits one statement, every matcher combined.
    fn fit(&self, req: &Request<'_>, part: &Part<'_>, text: &mut NormalizedText<'_>) -> Fit {
        let mut fit = Fit::Yes;
        // Cheap, certain matchers first so most rules are rejected early.
        if !self.identities.is_empty() && !self.identities.contains(&req.identity.name) {
            return Fit::No;
        }
        if !self.groups.is_empty() && !self.groups.iter().any(|g| req.identity.in_group(g)) {
            return Fit::No;
        }
        if self.agents.is_some_and(|want| want != req.identity.agent) {
            return Fit::No;
        }
        if let Some(conns) = &self.connections {
            if !conns.matches(&req.connection) {
                return Fit::No;
            }
        }
        if let Some(window) = &self.hours {
            fit = fit.and(hours_fit(window, req.minute_of_day, req.weekday));
        }
        if !self.operations.is_empty() {
            fit = fit.and(operations_fit(&self.operations, part));
        }
        if let Some(want) = self.writes {
            fit = fit.and(writes_fit(want, part));
        }
        if self.without_where {
            fit = fit.and(without_where_fit(part));
        }
        if fit == Fit::No {
            return Fit::No;
        }
        if !self.objects.is_empty() {
            fit = fit.and(objects_fit(&self.objects, part));
        }
        if fit == Fit::No {
            return Fit::No;
        }
        if let Some(re) = &self.pattern {
            if !re.is_match(text.get()) {
                return Fit::No;
            }
        }
        fit
    }

    fn generated_message(&self) -> String {
        match self.action {
            Action::Deny => format!("denied by rule `{}`", self.name),
            Action::Review => format!("held for review by rule `{}`", self.name),
            Action::Allow => format!("allowed by rule `{}`", self.name),
        }
    }
}

/// Three-valued match: "maybe" is what an opaque statement gives for what cannot be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    No,
    Maybe,
    Yes,
}

impl Fit {
    fn and(self, other: Fit) -> Fit {
        self.min(other)
    }

    fn from_bool(b: bool) -> Fit {
        if b {
            Fit::Yes
        } else {
            Fit::No
        }
    }
}

/// One statement as the matchers see it.
struct Part<'a> {
    statement: &'a Statement,
    opaque: bool,
    may_write: bool,
}

impl<'a> Part<'a> {
    fn new(statement: &'a Statement, unparsed: bool) -> Self {
        let op = statement.operation;
        let opaque = unparsed
            || statement.dynamic_sql
            || matches!(op, Operation::Unknown | Operation::Do | Operation::Call);
        // `copy` and `other` cover both reads and writes (COPY TO / FROM; SAVEPOINT vs VACUUM):
        // for them the classifier's `writes_data`, from the parse tree, is the answer.
        let may_write = opaque
            || statement.writes_data
            || (op.is_write() && !matches!(op, Operation::Copy | Operation::Other));
        Part {
            statement,
            opaque,
            may_write,
        }
    }
}

fn hours_fit(window: &TimeWindow, minute_of_day: u16, weekday: u8) -> Fit {
    if minute_of_day >= MINUTES_PER_DAY || !(1..=7).contains(&weekday) {
        // A broken clock must not switch a night-time deny off.
        return Fit::Maybe;
    }
    Fit::from_bool(window.contains(minute_of_day, weekday))
}

fn operations_fit(ops: &[Operation], part: &Part<'_>) -> Fit {
    if ops.contains(&part.statement.operation) {
        Fit::Yes
    } else if part.opaque {
        Fit::Maybe
    } else {
        Fit::No
    }
}

fn writes_fit(want: bool, part: &Part<'_>) -> Fit {
    match (want, part.opaque) {
        // "writes or may write" includes everything opaque, so this is certain.
        (true, _) => Fit::from_bool(part.may_write),
        (false, true) => Fit::Maybe,
        (false, false) => Fit::from_bool(!part.may_write),
    }
}

fn without_where_fit(part: &Part<'_>) -> Fit {
    let s = part.statement;
    if matches!(
        s.operation,
        Operation::Update | Operation::Delete | Operation::Merge
    ) && !s.has_where
    {
        Fit::Yes
    } else if part.opaque {
        Fit::Maybe
    } else {
        Fit::No
    }
}

fn objects_fit(globs: &[String], part: &Part<'_>) -> Fit {
    let s = part.statement;
    let mut best = if part.opaque { Fit::Maybe } else { Fit::No };
    for object in s.reads.iter().chain(s.writes.iter()) {
        for glob in globs {
            best = best.max(object_fit(glob, object));
            if best == Fit::Yes {
                return Fit::Yes;
            }
        }
    }
    best
}

fn object_fit(glob: &str, object: &str) -> Fit {
    let glob = glob.to_lowercase();
    let object = object.to_lowercase();
    // The whole name or any dot-suffix: `payments` names the table in any schema, and
    // `audit.secrets` also covers `mydb.audit.secrets`.
    let suffixes = std::iter::once(object.as_str()).chain(
        object
            .match_indices('.')
            .map(|(i, _)| object.get(i + 1..).unwrap_or("")),
    );
    for candidate in suffixes {
        if glob_match(&glob, candidate) {
            return Fit::Yes;
        }
    }
    // `secrets` may resolve to `audit.secrets` depending on search_path / USE.
    match glob.rsplit_once('.') {
        Some((_, table_glob)) if !object.contains('.') && glob_match(table_glob, &object) => {
            Fit::Maybe
        }
        _ => Fit::No,
    }
}

/// `*` matches any run of characters (dots included), `?` exactly one; everything else
/// literally. Linear-time two-pointer match with single backtrack point.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut gi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g.get(gi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// The command text with whitespace runs collapsed, computed only if some rule has a pattern.
struct NormalizedText<'a> {
    raw: &'a str,
    normalized: Option<Cow<'a, str>>,
}

impl<'a> NormalizedText<'a> {
    fn new(raw: &'a str) -> Self {
        NormalizedText {
            raw,
            normalized: None,
        }
    }

    fn get(&mut self) -> &str {
        let raw = self.raw;
        self.normalized
            .get_or_insert_with(|| Cow::Owned(normalize_whitespace(raw)))
    }
}

/// Collapses every whitespace run to one space and trims the ends.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The outcome of judging one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// The rule that decided, if any (none: the default action applied).
    pub rule: Option<String>,
    /// The deciding rule's message, else a generated one; `None` only for a default allow.
    pub message: Option<String>,
    /// Reviewer groups, for `review`.
    pub reviewers: Vec<String>,
    pub timeout_secs: Option<u64>,
    /// Approvals needed: at least 1 for `review`, 0 otherwise.
    pub min_approvals: u32,
    /// Every rule that matched, once each, in file order, for `airlock policy test`.
    pub matched: Vec<String>,
    /// The decision rests on fail-closed reasoning: the deciding rule matched, or the default
    /// for writes applied, only because part of the command could not be analysed.
    pub fail_closed: bool,
}

impl Decision {
    pub fn allow() -> Self {
        Decision {
            action: Action::Allow,
            rule: None,
            message: None,
            reviewers: Vec::new(),
            timeout_secs: None,
            min_approvals: 0,
            matched: Vec::new(),
            fail_closed: false,
        }
    }
}

/// The rule set of one configuration.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub rules: Vec<Rule>,
    /// For statements that surely do not write, when no rule matches.
    pub default_action: Action,
    /// For statements that write or may write (incl. opaque ones), when no rule matches.
    pub default_write_action: Action,
    /// Reviewer groups for default reviews and for review rules that name none.
    pub default_reviewers: Vec<String>,
    /// Timeout of default reviews.
    pub default_review_timeout_secs: Option<u64>,
}

impl Default for PolicySet {
    /// No rules, everything allowed: a pass-through. Configurations set the defaults.
    fn default() -> Self {
        PolicySet::new(Vec::new(), Action::Allow, Action::Allow)
    }
}

/// How one statement was judged.
struct PartVerdict {
    action: Action,
    by_default: bool,
    opaque: bool,
}

impl PolicySet {
    pub fn new(rules: Vec<Rule>, default_action: Action, default_write_action: Action) -> Self {
        PolicySet {
            rules,
            default_action,
            default_write_action,
            default_reviewers: Vec::new(),
            default_review_timeout_secs: None,
        }
    }

    /// Whether no statement that writes or may write can ever be allowed for this identity on
    /// this connection: a `writes = true` deny rule selects the pair, or writes default to deny
    /// and no allow/review rule that could match a write selects it. Such sessions are opened
    /// read-only upstream (defence in depth: a read-only role, or the database's read-only
    /// mode), so a write the classifier missed still fails at the database.
    pub fn denies_all_writes(&self, identity: &Identity, connection: &ConnectionRef<'_>) -> bool {
        let mut selected = self
            .rules
            .iter()
            .filter(|r| r.selects(identity, connection));
        if selected.clone().any(Rule::denies_every_write) {
            return true;
        }
        self.default_write_action == Action::Deny
            && !selected.any(|r| r.action != Action::Deny && r.writes != Some(false))
    }

    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let classification = req.classification;
        // An unparsed classification always carries its `unknown` statement; if a caller built
        // one without, judge the synthetic one rather than treating it as empty.
        let synthetic;
        let statements: &[Statement] =
            if classification.unparsed && classification.statements.is_empty() {
                synthetic = Classification::unparsed("").statements;
                &synthetic
            } else {
                &classification.statements
            };
        if statements.is_empty() {
            return self.default_decision(self.default_action, false);
        }

        let mut text = NormalizedText::new(req.text);
        // Per rule: strongest fit over all statements, when it matched at all.
        let mut rule_fit: Vec<Option<Fit>> = vec![None; self.rules.len()];
        let mut verdicts = Vec::with_capacity(statements.len());
        for statement in statements {
            let part = Part::new(statement, classification.unparsed);
            let mut strictest: Option<Action> = None;
            for (rule, best) in self.rules.iter().zip(rule_fit.iter_mut()) {
                let fit = rule.fit(req, &part, &mut text);
                let matched = match fit {
                    Fit::Yes => true,
                    Fit::Maybe => rule.action != Action::Allow,
                    Fit::No => false,
                };
                if matched {
                    *best = Some(best.map_or(fit, |b| b.max(fit)));
                    strictest = Some(strictest.map_or(rule.action, |a| a.max(rule.action)));
                }
            }
            let verdict = match strictest {
                Some(action) => PartVerdict {
                    action,
                    by_default: false,
                    opaque: part.opaque,
                },
                None => PartVerdict {
                    action: if part.may_write {
                        self.default_write_action
                    } else {
                        self.default_action
                    },
                    by_default: true,
                    opaque: part.opaque,
                },
            };
            verdicts.push(verdict);
        }

        let action = verdicts
            .iter()
            .map(|v| v.action)
            .max()
            .unwrap_or(self.default_action);
        let matched: Vec<&Rule> = self
            .rules
            .iter()
            .zip(&rule_fit)
            .filter(|(_, fit)| fit.is_some())
            .map(|(rule, _)| rule)
            .collect();
        let mut matched_names: Vec<String> = Vec::with_capacity(matched.len());
        for rule in &matched {
            if !matched_names.contains(&rule.name) {
                matched_names.push(rule.name.clone());
            }
        }
        let any_default_part = verdicts.iter().any(|v| v.by_default && v.action == action);

        let deciding = self
            .rules
            .iter()
            .zip(&rule_fit)
            .find(|(rule, fit)| fit.is_some() && rule.action == action);
        let mut decision = match deciding {
            Some((rule, fit)) => {
                let fail_closed = *fit == Some(Fit::Maybe);
                let message = match &rule.message {
                    Some(m) => m.clone(),
                    None if fail_closed => format!(
                        "{} (fail closed: part of the command could not be analysed)",
                        rule.generated_message()
                    ),
                    None => rule.generated_message(),
                };
                Decision {
                    action,
                    rule: Some(rule.name.clone()),
                    message: Some(message),
                    reviewers: if rule.reviewers.is_empty() {
                        self.default_reviewers.clone()
                    } else {
                        rule.reviewers.clone()
                    },
                    timeout_secs: None,
                    min_approvals: 0,
                    matched: Vec::new(),
                    fail_closed,
                }
            }
            None => {
                let fail_closed = action != Action::Allow
                    && verdicts
                        .iter()
                        .any(|v| v.by_default && v.action == action && v.opaque);
                self.default_decision(action, fail_closed)
            }
        };

        if action == Action::Review {
            let review_rules = matched.iter().filter(|r| r.action == Action::Review);
            decision.min_approvals = review_rules
                .clone()
                .map(|r| r.min_approvals)
                .max()
                .unwrap_or(1)
                .max(1);
            let default_timeout = if any_default_part {
                self.default_review_timeout_secs
            } else {
                None
            };
            decision.timeout_secs = review_rules
                .filter_map(|r| r.timeout_secs)
                .chain(default_timeout)
                .min();
        } else {
            decision.reviewers.clear();
        }
        decision.matched = matched_names;
        decision
    }

    fn default_decision(&self, action: Action, fail_closed: bool) -> Decision {
        let suffix = if fail_closed {
            " (fail closed: part of the command could not be analysed)"
        } else {
            ""
        };
        let message = match action {
            Action::Allow => None,
            Action::Deny => Some(format!(
                "denied: no rule allows this command and the default action is deny{suffix}"
            )),
            Action::Review => Some(format!(
                "held for review: no rule matched and the default action is review{suffix}"
            )),
        };
        let review = action == Action::Review;
        Decision {
            action,
            rule: None,
            message,
            reviewers: if review {
                self.default_reviewers.clone()
            } else {
                Vec::new()
            },
            timeout_secs: if review {
                self.default_review_timeout_secs
            } else {
                None
            },
            min_approvals: u32::from(review),
            matched: Vec::new(),
            fail_closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKind;

    fn identity(name: &str, groups: &[&str], agent: bool) -> Identity {
        Identity {
            name: name.to_string(),
            kind: if agent {
                IdentityKind::Service
            } else {
                IdentityKind::Human
            },
            groups: groups.iter().map(|g| g.to_string()).collect(),
            agent,
        }
    }

    /// A parsed statement as a careful classifier would report it.
    fn st(op: Operation) -> Statement {
        Statement {
            operation: op,
            has_where: true,
            writes_data: op.is_write() && op != Operation::Copy,
            ..Statement::default()
        }
    }

    fn reads(mut s: Statement, objects: &[&str]) -> Statement {
        s.reads = objects.iter().map(|o| o.to_string()).collect();
        s
    }

    fn writes(mut s: Statement, objects: &[&str]) -> Statement {
        s.writes = objects.iter().map(|o| o.to_string()).collect();
        s
    }

    fn unbounded(mut s: Statement) -> Statement {
        s.has_where = false;
        s
    }

    fn dynamic(mut s: Statement) -> Statement {
        s.dynamic_sql = true;
        s.writes_data = true;
        s
    }

    fn cmd(statements: Vec<Statement>) -> Classification {
        Classification {
            multi_statement: statements.len() > 1,
            statements,
            unparsed: false,
            parse_error: None,
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sessions_under_a_blanket_write_deny_are_read_only() {
        let agent = identity("claude", &["ai-agents"], true);
        let human = identity("ann", &["engineers"], false);
        let prod_tags = tags(&[("env", "prod")]);
        let prod = ConnectionRef {
            name: "pg-prod",
            tags: Some(&prod_tags),
        };
        let mut read_only = Rule::new("agents-read-only", Action::Deny);
        read_only.agents = Some(true);
        read_only.writes = Some(true);
        read_only.connections = Some(ConnectionMatch {
            names: Vec::new(),
            tags: prod_tags.clone(),
        });
        let set = PolicySet::new(vec![read_only.clone()], Action::Allow, Action::Allow);
        assert!(set.denies_all_writes(&agent, &prod));
        assert!(!set.denies_all_writes(&human, &prod));
        // A narrower deny (only at night, only some tables) leaves writes possible.
        let mut at_night = read_only.clone();
        at_night.hours = Some(TimeWindow::parse("22:00-06:00", Vec::new()).unwrap());
        let set = PolicySet::new(vec![at_night], Action::Allow, Action::Allow);
        assert!(!set.denies_all_writes(&agent, &prod));
        // Writes denied by default: read-only unless an allow or review rule could admit one.
        let set = PolicySet::new(Vec::new(), Action::Allow, Action::Deny);
        assert!(set.denies_all_writes(&human, &prod));
        let mut reviewed = Rule::new("review-writes", Action::Review);
        reviewed.operations = vec![Operation::Update];
        let set = PolicySet::new(vec![reviewed], Action::Allow, Action::Deny);
        assert!(!set.denies_all_writes(&human, &prod));
        let mut reads_only = Rule::new("reads", Action::Allow);
        reads_only.writes = Some(false);
        let set = PolicySet::new(vec![reads_only], Action::Allow, Action::Deny);
        assert!(set.denies_all_writes(&human, &prod));
    }

    /// The request context; tests change only what they are about.
    struct Ctx {
        identity: Identity,
        conn_name: &'static str,
        conn_tags: Option<BTreeMap<String, String>>,
        classification: Classification,
        text: &'static str,
        minute: u16,
        weekday: u8,
    }

    impl Default for Ctx {
        fn default() -> Self {
            Ctx {
                identity: identity("alice", &["engineers"], false),
                conn_name: "pg-prod",
                conn_tags: Some(tags(&[("env", "prod"), ("team", "payments")])),
                classification: cmd(vec![reads(st(Operation::Select), &["users"])]),
                text: "select * from users",
                minute: 12 * 60,
                weekday: 3,
            }
        }
    }

    impl Ctx {
        fn decide(&self, set: &PolicySet) -> Decision {
            let req = Request {
                identity: &self.identity,
                connection: ConnectionRef {
                    name: self.conn_name,
                    tags: self.conn_tags.as_ref(),
                },
                classification: &self.classification,
                text: self.text,
                minute_of_day: self.minute,
                weekday: self.weekday,
            };
            set.decide(&req)
        }

        fn with_cmd(statements: Vec<Statement>) -> Self {
            Ctx {
                classification: cmd(statements),
                ..Ctx::default()
            }
        }
    }

    /// Whether `rule` alone matches the context (defaults allow everything).
    fn matches(rule: Rule, ctx: &Ctx) -> bool {
        let name = rule.name.clone();
        let set = PolicySet::new(vec![rule], Action::Allow, Action::Allow);
        let d = ctx.decide(&set);
        let hit = d.matched == vec![name.clone()];
        assert!(hit || d.matched.is_empty(), "{:?}", d.matched);
        if hit {
            assert_eq!(d.rule.as_deref(), Some(name.as_str()));
        }
        hit
    }

    fn deny(name: &str) -> Rule {
        Rule::new(name, Action::Deny)
    }

    fn check(cases: Vec<(&str, Rule, Ctx, bool)>) {
        for (label, rule, ctx, want) in cases {
            assert_eq!(matches(rule, &ctx), want, "case `{label}`");
        }
    }

    #[test]
    fn rule_without_matchers_matches_everything() {
        check(vec![
            ("select", deny("all"), Ctx::default(), true),
            (
                "drop",
                deny("all"),
                Ctx::with_cmd(vec![st(Operation::Drop)]),
                true,
            ),
        ]);
    }

    #[test]
    fn identity_group_and_agent_matchers() {
        let bot = || Ctx {
            identity: identity("claude-agent", &["ai-agents"], true),
            ..Ctx::default()
        };
        let r = |f: fn(&mut Rule)| {
            let mut rule = deny("r");
            f(&mut rule);
            rule
        };
        check(vec![
            (
                "identity listed",
                r(|r| r.identities = strings(&["bob", "alice"])),
                Ctx::default(),
                true,
            ),
            (
                "identity not listed",
                r(|r| r.identities = strings(&["bob"])),
                Ctx::default(),
                false,
            ),
            (
                "identity name is exact",
                r(|r| r.identities = strings(&["Alice"])),
                Ctx::default(),
                false,
            ),
            (
                "group member",
                r(|r| r.groups = strings(&["dba", "engineers"])),
                Ctx::default(),
                true,
            ),
            (
                "not a member",
                r(|r| r.groups = strings(&["dba"])),
                Ctx::default(),
                false,
            ),
            (
                "agents=true, agent",
                r(|r| r.agents = Some(true)),
                bot(),
                true,
            ),
            (
                "agents=true, human",
                r(|r| r.agents = Some(true)),
                Ctx::default(),
                false,
            ),
            (
                "agents=false, human",
                r(|r| r.agents = Some(false)),
                Ctx::default(),
                true,
            ),
            (
                "agents=false, agent",
                r(|r| r.agents = Some(false)),
                bot(),
                false,
            ),
            (
                "all given matchers must hold",
                r(|r| {
                    r.groups = strings(&["ai-agents"]);
                    r.identities = strings(&["alice"]);
                }),
                bot(),
                false,
            ),
        ]);
    }

    #[test]
    fn connection_matcher_names_and_tags_both_apply() {
        let conn = |names: &[&str], t: &[(&str, &str)]| {
            let mut rule = deny("c");
            rule.connections = Some(ConnectionMatch {
                names: strings(names),
                tags: tags(t),
            });
            rule
        };
        let untagged = || Ctx {
            conn_tags: None,
            ..Ctx::default()
        };
        check(vec![
            ("empty match = any", conn(&[], &[]), Ctx::default(), true),
            ("name listed", conn(&["pg-prod"], &[]), Ctx::default(), true),
            (
                "name not listed",
                conn(&["pg-dev"], &[]),
                Ctx::default(),
                false,
            ),
            (
                "one tag equal",
                conn(&[], &[("env", "prod")]),
                Ctx::default(),
                true,
            ),
            (
                "all tags equal",
                conn(&[], &[("env", "prod"), ("team", "payments")]),
                Ctx::default(),
                true,
            ),
            (
                "one tag differs",
                conn(&[], &[("env", "prod"), ("team", "search")]),
                Ctx::default(),
                false,
            ),
            (
                "tag value differs",
                conn(&[], &[("env", "dev")]),
                Ctx::default(),
                false,
            ),
            (
                "tag missing",
                conn(&[], &[("region", "eu")]),
                Ctx::default(),
                false,
            ),
            (
                "connection has no tags",
                conn(&[], &[("env", "prod")]),
                untagged(),
                false,
            ),
            // Both given: the name must be listed *and* the tags equal (as in masking and the
            // access review; issue 16).
            (
                "both given, only the name matches",
                conn(&["pg-prod"], &[("env", "dev")]),
                Ctx::default(),
                false,
            ),
            (
                "both given, only the tags match",
                conn(&["pg-dev"], &[("env", "prod")]),
                Ctx::default(),
                false,
            ),
            (
                "both given, both match",
                conn(&["pg-prod"], &[("env", "prod")]),
                Ctx::default(),
                true,
            ),
            (
                "both given, neither",
                conn(&["pg-dev"], &[("env", "dev")]),
                Ctx::default(),
                false,
            ),
        ]);
    }

    fn ops(list: &[Operation]) -> Rule {
        let mut rule = deny("ops");
        rule.operations = list.to_vec();
        rule
    }

    #[test]
    fn operations_matcher() {
        use Operation::*;
        check(vec![
            (
                "listed",
                ops(&[Drop, Truncate]),
                Ctx::with_cmd(vec![st(Drop)]),
                true,
            ),
            (
                "not listed",
                ops(&[Drop, Truncate]),
                Ctx::with_cmd(vec![st(Delete)]),
                false,
            ),
            ("select vs drop", ops(&[Drop]), Ctx::default(), false),
            (
                "do listed outright",
                ops(&[Do]),
                Ctx::with_cmd(vec![dynamic(st(Do))]),
                true,
            ),
        ]);
    }

    #[test]
    fn operations_fail_closed_for_opaque_statements() {
        use Operation::*;
        let unparsed = || Ctx {
            classification: Classification::unparsed("syntax error at or near \"DRPO\""),
            text: "DRPO TABLE users",
            ..Ctx::default()
        };
        check(vec![
            ("unparsed vs drop", ops(&[Drop]), unparsed(), true),
            ("unparsed vs truncate", ops(&[Truncate]), unparsed(), true),
            (
                "unparsed vs select (deny)",
                ops(&[Select]),
                unparsed(),
                true,
            ),
            (
                "DO vs drop",
                ops(&[Drop]),
                Ctx::with_cmd(vec![dynamic(st(Do))]),
                true,
            ),
            (
                "unknown vs delete",
                ops(&[Delete]),
                Ctx::with_cmd(vec![st(Unknown)]),
                true,
            ),
            (
                "call vs update",
                ops(&[Update]),
                Ctx::with_cmd(vec![st(Call)]),
                true,
            ),
            (
                "select with EXECUTE inside vs drop",
                ops(&[Drop]),
                Ctx::with_cmd(vec![dynamic(st(Select))]),
                true,
            ),
            (
                "parsed select is not opaque",
                ops(&[Drop]),
                Ctx::with_cmd(vec![st(Select)]),
                false,
            ),
        ]);
        // The whole classification unparsed makes even a well-looking statement opaque.
        let mut c = cmd(vec![st(Select)]);
        c.unparsed = true;
        let ctx = Ctx {
            classification: c,
            ..Ctx::default()
        };
        assert!(matches(ops(&[Drop]), &ctx));
    }

    #[test]
    fn allow_rules_do_not_match_on_uncertainty() {
        use Operation::*;
        let mut allow_inserts = Rule::new("allow-inserts", Action::Allow);
        allow_inserts.operations = vec![Insert];
        let set = PolicySet::new(vec![allow_inserts], Action::Allow, Action::Review);

        let insert = Ctx::with_cmd(vec![writes(st(Insert), &["t"])]);
        let d = insert.decide(&set);
        assert_eq!(d.action, Action::Allow);
        assert_eq!(d.rule.as_deref(), Some("allow-inserts"));

        // A DO block might be an insert, but the allow rule cannot see that: default for writes.
        let d = Ctx::with_cmd(vec![dynamic(st(Do))]).decide(&set);
        assert_eq!(d.action, Action::Review);
        assert_eq!(d.rule, None);
        assert!(d.matched.is_empty());
        assert!(d.fail_closed);
        assert!(d.message.unwrap().contains("fail closed"));
    }

    fn writes_rule(want: bool) -> Rule {
        let mut rule = deny("w");
        rule.writes = Some(want);
        rule
    }

    #[test]
    fn writes_matcher_and_fail_closed() {
        use Operation::*;
        let mut cte_delete = reads(st(Select), &["t"]);
        cte_delete.writes_data = true;
        let mut copy_to = st(Copy);
        copy_to.writes_data = false;
        let mut copy_from = st(Copy);
        copy_from.writes_data = true;
        let mut plain_do = st(Do);
        plain_do.writes_data = false;
        check(vec![
            ("select", writes_rule(true), Ctx::default(), false),
            (
                "insert",
                writes_rule(true),
                Ctx::with_cmd(vec![st(Insert)]),
                true,
            ),
            (
                "drop",
                writes_rule(true),
                Ctx::with_cmd(vec![st(Drop)]),
                true,
            ),
            (
                "grant",
                writes_rule(true),
                Ctx::with_cmd(vec![st(Grant)]),
                true,
            ),
            (
                "select with writing CTE",
                writes_rule(true),
                Ctx::with_cmd(vec![cte_delete]),
                true,
            ),
            (
                "copy to stdout",
                writes_rule(true),
                Ctx::with_cmd(vec![copy_to.clone()]),
                false,
            ),
            (
                "copy from stdin",
                writes_rule(true),
                Ctx::with_cmd(vec![copy_from]),
                true,
            ),
            (
                "DO block",
                writes_rule(true),
                Ctx::with_cmd(vec![plain_do.clone()]),
                true,
            ),
            (
                "dynamic select",
                writes_rule(true),
                Ctx::with_cmd(vec![dynamic(st(Select))]),
                true,
            ),
            (
                "unparsed",
                writes_rule(true),
                Ctx {
                    classification: Classification::unparsed("x"),
                    ..Ctx::default()
                },
                true,
            ),
            (
                "set",
                writes_rule(true),
                Ctx::with_cmd(vec![st(Set)]),
                false,
            ),
            (
                "writes=false, select",
                writes_rule(false),
                Ctx::default(),
                true,
            ),
            (
                "writes=false, copy to",
                writes_rule(false),
                Ctx::with_cmd(vec![copy_to]),
                true,
            ),
            (
                "writes=false, update",
                writes_rule(false),
                Ctx::with_cmd(vec![st(Update)]),
                false,
            ),
            (
                "writes=false, DO (deny: maybe)",
                writes_rule(false),
                Ctx::with_cmd(vec![plain_do]),
                true,
            ),
        ]);
    }

    fn objects(globs: &[&str]) -> Rule {
        let mut rule = deny("o");
        rule.objects = strings(globs);
        rule
    }

    #[test]
    fn objects_matcher() {
        use Operation::*;
        let sel = |objs: &[&str]| Ctx::with_cmd(vec![reads(st(Select), objs)]);
        let ins = |objs: &[&str]| Ctx::with_cmd(vec![writes(st(Insert), objs)]);
        check(vec![
            ("exact", objects(&["payments"]), sel(&["payments"]), true),
            (
                "other table",
                objects(&["payments"]),
                sel(&["users"]),
                false,
            ),
            (
                "written object",
                objects(&["payments"]),
                ins(&["payments"]),
                true,
            ),
            (
                "case-insensitive",
                objects(&["Payments"]),
                sel(&["PAYMENTS"]),
                true,
            ),
            ("star", objects(&["pay*"]), sel(&["payouts"]), true),
            (
                "star does not match prefix",
                objects(&["*ments"]),
                sel(&["mentsx"]),
                false,
            ),
            ("question mark", objects(&["t?"]), sel(&["t1"]), true),
            (
                "question mark is one char",
                objects(&["t?"]),
                sel(&["t12"]),
                false,
            ),
            (
                "schema star",
                objects(&["audit.*"]),
                sel(&["audit.log"]),
                true,
            ),
            (
                "schema star other schema",
                objects(&["audit.*"]),
                sel(&["public.log"]),
                false,
            ),
            (
                "bare glob vs qualified",
                objects(&["payments"]),
                sel(&["archive.payments"]),
                true,
            ),
            (
                "qualified glob vs 3-part",
                objects(&["audit.secrets"]),
                sel(&["db.audit.secrets"]),
                true,
            ),
            (
                "unqualified vs qualified glob: search_path decides (deny: maybe)",
                objects(&["audit.secrets"]),
                sel(&["secrets"]),
                true,
            ),
            (
                "unqualified, table part differs",
                objects(&["audit.secrets"]),
                sel(&["users"]),
                false,
            ),
            (
                "no objects",
                objects(&["*"]),
                Ctx::with_cmd(vec![st(Select)]),
                false,
            ),
            (
                "any of several",
                objects(&["a", "users"]),
                sel(&["x", "users"]),
                true,
            ),
        ]);
    }

    #[test]
    fn objects_fail_closed_for_dynamic_statements() {
        use Operation::*;
        check(vec![
            (
                "dynamic with no known objects",
                objects(&["payments"]),
                Ctx::with_cmd(vec![dynamic(st(Do))]),
                true,
            ),
            (
                "dynamic, known objects differ",
                objects(&["payments"]),
                Ctx::with_cmd(vec![dynamic(reads(st(Select), &["users"]))]),
                true,
            ),
            (
                "unparsed",
                objects(&["payments"]),
                Ctx {
                    classification: Classification::unparsed("x"),
                    ..Ctx::default()
                },
                true,
            ),
        ]);
        let mut allow = Rule::new("allow-users", Action::Allow);
        allow.objects = strings(&["users"]);
        // Known objects match an allow rule outright even in a dynamic statement...
        assert!(matches(
            allow.clone(),
            &Ctx::with_cmd(vec![dynamic(reads(st(Select), &["users"]))])
        ));
        // ...but unknown ones cannot be allowed.
        assert!(!matches(
            allow.clone(),
            &Ctx::with_cmd(vec![dynamic(st(Do))])
        ));
        assert!(!matches(
            allow,
            &Ctx::with_cmd(vec![reads(st(Select), &["secrets"])])
        ));
    }

    fn no_where() -> Rule {
        let mut rule = deny("nw");
        rule.without_where = true;
        rule
    }

    #[test]
    fn without_where_matcher() {
        use Operation::*;
        check(vec![
            (
                "update without where",
                no_where(),
                Ctx::with_cmd(vec![unbounded(st(Update))]),
                true,
            ),
            (
                "delete without where",
                no_where(),
                Ctx::with_cmd(vec![unbounded(st(Delete))]),
                true,
            ),
            (
                "merge without condition",
                no_where(),
                Ctx::with_cmd(vec![unbounded(st(Merge))]),
                true,
            ),
            (
                "update with where",
                no_where(),
                Ctx::with_cmd(vec![st(Update)]),
                false,
            ),
            (
                "insert",
                no_where(),
                Ctx::with_cmd(vec![unbounded(st(Insert))]),
                false,
            ),
            (
                "select",
                no_where(),
                Ctx::with_cmd(vec![unbounded(st(Select))]),
                false,
            ),
            (
                "DO block",
                no_where(),
                Ctx::with_cmd(vec![dynamic(st(Do))]),
                true,
            ),
            (
                "unknown",
                no_where(),
                Ctx::with_cmd(vec![st(Unknown)]),
                true,
            ),
            (
                "unparsed",
                no_where(),
                Ctx {
                    classification: Classification::unparsed("x"),
                    ..Ctx::default()
                },
                true,
            ),
        ]);
    }

    fn pattern(re: &str) -> Rule {
        let mut rule = deny("p");
        rule.pattern = Some(compile_pattern(re).unwrap());
        rule
    }

    #[test]
    fn pattern_matcher() {
        let text = |t: &'static str| Ctx {
            text: t,
            ..Ctx::default()
        };
        check(vec![
            (
                "plain",
                pattern("pg_sleep"),
                text("select pg_sleep(10)"),
                true,
            ),
            ("absent", pattern("pg_sleep"), text("select 1"), false),
            (
                "case-insensitive",
                pattern("drop table"),
                text("DROP TABLE x"),
                true,
            ),
            (
                "opt out of case folding",
                pattern("(?-i)drop table"),
                text("DROP TABLE x"),
                false,
            ),
            (
                "whitespace normalized",
                pattern("drop table users"),
                text("drop\n\t  table   users"),
                true,
            ),
            (
                "ends trimmed",
                pattern("^select 1$"),
                text("  select 1\n"),
                true,
            ),
        ]);
        assert!(matches!(compile_pattern("("), Err(PolicyError::Pattern(_))));
    }

    #[test]
    fn hours_matcher_including_midnight_wrap() {
        let at = |minute: u16, weekday: u8| Ctx {
            minute,
            weekday,
            ..Ctx::default()
        };
        let hours = |range: &str, days: &[u8]| {
            let mut rule = deny("h");
            rule.hours = Some(TimeWindow::parse(range, days.to_vec()).unwrap());
            rule
        };
        check(vec![
            (
                "inside day window",
                hours("09:00-18:00", &[]),
                at(9 * 60, 3),
                true,
            ),
            (
                "end exclusive",
                hours("09:00-18:00", &[]),
                at(18 * 60, 3),
                false,
            ),
            (
                "before",
                hours("09:00-18:00", &[]),
                at(8 * 60 + 59, 3),
                false,
            ),
            (
                "wrap: late evening",
                hours("22:00-06:00", &[]),
                at(23 * 60, 3),
                true,
            ),
            (
                "wrap: early morning",
                hours("22:00-06:00", &[]),
                at(5 * 60 + 59, 3),
                true,
            ),
            ("wrap: midnight", hours("22:00-06:00", &[]), at(0, 3), true),
            (
                "wrap: midday",
                hours("22:00-06:00", &[]),
                at(12 * 60, 3),
                false,
            ),
            (
                "wrap: end exclusive",
                hours("22:00-06:00", &[]),
                at(6 * 60, 3),
                false,
            ),
            (
                "weekday listed",
                hours("09:00-18:00", &[1, 2, 3, 4, 5]),
                at(10 * 60, 5),
                true,
            ),
            (
                "weekend",
                hours("09:00-18:00", &[1, 2, 3, 4, 5]),
                at(10 * 60, 6),
                false,
            ),
            // Friday-night window continues into Saturday morning, not Friday morning.
            (
                "wrap carries into next day",
                hours("22:00-06:00", &[5]),
                at(3 * 60, 6),
                true,
            ),
            (
                "wrap not on same-day morning",
                hours("22:00-06:00", &[5]),
                at(3 * 60, 5),
                false,
            ),
            (
                "wrap Sunday night into Monday",
                hours("22:00-06:00", &[7]),
                at(60, 1),
                true,
            ),
            (
                "equal bounds = whole day",
                hours("00:00-24:00", &[6, 7]),
                at(23 * 60 + 59, 7),
                true,
            ),
            (
                "equal bounds, unlisted day",
                hours("08:00-08:00", &[6, 7]),
                at(60, 1),
                false,
            ),
            (
                "broken clock fails closed",
                hours("09:00-18:00", &[]),
                at(2000, 3),
                true,
            ),
            (
                "broken weekday fails closed",
                hours("09:00-18:00", &[1]),
                at(600, 0),
                true,
            ),
        ]);
    }

    #[test]
    fn time_window_parsing() {
        let w = TimeWindow::parse("22:30 - 06:15", vec![5, 1, 5]).unwrap();
        assert_eq!(
            (w.start_minute(), w.end_minute()),
            (22 * 60 + 30, 6 * 60 + 15)
        );
        assert_eq!(w.weekdays(), &[1, 5]);
        assert!(TimeWindow::parse("24:00-01:00", vec![]).is_err());
        assert!(TimeWindow::parse("09:60-10:00", vec![]).is_err());
        assert!(TimeWindow::parse("9-10", vec![]).is_err());
        assert!(TimeWindow::parse("09:00", vec![]).is_err());
        assert!(TimeWindow::parse("09:00-10:00", vec![8]).is_err());
        assert!(TimeWindow::parse("09:00-24:00", vec![])
            .unwrap()
            .contains(23 * 60 + 59, 1));
        assert_eq!(parse_weekday("Sat"), Ok(6));
        assert_eq!(parse_weekday("7"), Ok(7));
        assert!(parse_weekday("funday").is_err());
    }

    #[test]
    fn utc_clock_from_unix_time() {
        assert_eq!(utc_clock(0), (0, 4)); // 1970-01-01 00:00, Thursday
        assert_eq!(utc_clock(1_700_000_000), (22 * 60 + 13, 2)); // 2023-11-14 22:13, Tuesday
        assert_eq!(utc_clock(-60), (23 * 60 + 59, 3)); // 1969-12-31 23:59, Wednesday
    }

    #[test]
    fn glob_edge_cases() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("**", "abc"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("*.email", "users.email"));
        assert!(!glob_match("?", ""));
    }

    #[test]
    fn multi_statement_gets_strictest_part() {
        use Operation::*;
        let mut no_drop = deny("no-drop");
        no_drop.operations = vec![Drop];
        let mut review_updates = Rule::new("review-updates", Action::Review);
        review_updates.operations = vec![Update];
        review_updates.reviewers = strings(&["dba"]);
        let set = PolicySet::new(vec![review_updates, no_drop], Action::Allow, Action::Allow);

        let d = Ctx::with_cmd(vec![st(Select), st(Drop)]).decide(&set);
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.rule.as_deref(), Some("no-drop"));

        let d = Ctx::with_cmd(vec![st(Select), st(Update), st(Insert)]).decide(&set);
        assert_eq!(d.action, Action::Review);
        assert_eq!(d.reviewers, strings(&["dba"]));

        let d = Ctx::with_cmd(vec![st(Update), st(Drop)]).decide(&set);
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.matched, strings(&["review-updates", "no-drop"]));
        assert!(d.reviewers.is_empty());

        // An allow rule for one part cannot allow another part that the defaults deny.
        let mut allow_select = Rule::new("allow-select", Action::Allow);
        allow_select.operations = vec![Select];
        let set = PolicySet::new(vec![allow_select], Action::Deny, Action::Deny);
        let d = Ctx::with_cmd(vec![st(Select), st(Insert)]).decide(&set);
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.rule, None);
        assert_eq!(d.matched, strings(&["allow-select"]));
        let d = Ctx::with_cmd(vec![st(Select), st(Select)]).decide(&set);
        assert_eq!(d.action, Action::Allow);
    }

    #[test]
    fn precedence_deny_review_allow_and_file_order() {
        use Operation::*;
        let mut allow = Rule::new("allow-all", Action::Allow);
        allow.message = Some("fine".into());
        let mut review = Rule::new("review-writes", Action::Review);
        review.writes = Some(true);
        let mut deny_a = deny("deny-a");
        deny_a.operations = vec![Drop];
        deny_a.message = Some("no drops".into());
        let mut deny_b = deny("deny-b");
        deny_b.writes = Some(true);
        let set = PolicySet::new(
            vec![allow, review, deny_b.clone(), deny_a.clone()],
            Action::Allow,
            Action::Allow,
        );

        let d = Ctx::with_cmd(vec![st(Drop)]).decide(&set);
        assert_eq!(d.action, Action::Deny);
        assert_eq!(
            d.rule.as_deref(),
            Some("deny-b"),
            "first deny in file order"
        );
        assert_eq!(d.message.as_deref(), Some("denied by rule `deny-b`"));
        assert_eq!(
            d.matched,
            strings(&["allow-all", "review-writes", "deny-b", "deny-a"])
        );

        let set2 = PolicySet::new(vec![deny_a, deny_b], Action::Allow, Action::Allow);
        let d = Ctx::with_cmd(vec![st(Drop)]).decide(&set2);
        assert_eq!(d.rule.as_deref(), Some("deny-a"));
        assert_eq!(d.message.as_deref(), Some("no drops"));

        let d = Ctx::default().decide(&set);
        assert_eq!(d.action, Action::Allow);
        assert_eq!(d.rule.as_deref(), Some("allow-all"));
        assert_eq!(d.message.as_deref(), Some("fine"));
        assert_eq!(d.min_approvals, 0);
    }

    #[test]
    fn matched_names_are_deduplicated_in_file_order() {
        let set = PolicySet::new(
            vec![deny("x"), Rule::new("y", Action::Allow), deny("x")],
            Action::Allow,
            Action::Allow,
        );
        let d = Ctx::with_cmd(vec![st(Operation::Select), st(Operation::Select)]).decide(&set);
        assert_eq!(d.matched, strings(&["x", "y"]));
    }

    #[test]
    fn review_aggregates_approvals_and_timeouts() {
        use Operation::*;
        let mut a = Rule::new("review-a", Action::Review);
        a.operations = vec![Update];
        a.reviewers = strings(&["leads"]);
        a.timeout_secs = Some(600);
        a.min_approvals = 1;
        let mut b = Rule::new("review-b", Action::Review);
        b.operations = vec![Delete];
        b.timeout_secs = Some(300);
        b.min_approvals = 2;
        let mut set = PolicySet::new(vec![a, b], Action::Allow, Action::Allow);
        set.default_reviewers = strings(&["dba"]);

        let d = Ctx::with_cmd(vec![st(Update), st(Delete)]).decide(&set);
        assert_eq!(d.action, Action::Review);
        assert_eq!(d.rule.as_deref(), Some("review-a"));
        assert_eq!(d.reviewers, strings(&["leads"]));
        assert_eq!(d.min_approvals, 2);
        assert_eq!(d.timeout_secs, Some(300));
        assert_eq!(
            d.message.as_deref(),
            Some("held for review by rule `review-a`")
        );

        let d = Ctx::with_cmd(vec![st(Delete)]).decide(&set);
        assert_eq!(d.reviewers, strings(&["dba"]), "no reviewers: defaults");

        let mut zero = Rule::new("zero", Action::Review);
        zero.min_approvals = 0;
        let d = Ctx::default().decide(&PolicySet::new(vec![zero], Action::Allow, Action::Allow));
        assert_eq!(d.min_approvals, 1, "a review always needs an approval");
        assert_eq!(d.timeout_secs, None);
    }

    #[test]
    fn defaults_for_reads_writes_and_empty_commands() {
        use Operation::*;
        let mut set = PolicySet::new(Vec::new(), Action::Allow, Action::Review);
        set.default_reviewers = strings(&["dba"]);
        set.default_review_timeout_secs = Some(900);

        let d = Ctx::default().decide(&set);
        assert_eq!(d, Decision::allow());

        let d = Ctx::with_cmd(vec![st(Insert)]).decide(&set);
        assert_eq!(d.action, Action::Review);
        assert_eq!(d.rule, None);
        assert_eq!(d.reviewers, strings(&["dba"]));
        assert_eq!(d.timeout_secs, Some(900));
        assert_eq!(d.min_approvals, 1);
        assert!(!d.fail_closed);

        for c in [
            cmd(vec![dynamic(st(Select))]),
            Classification::unparsed("x"),
            cmd(vec![st(Call)]),
        ] {
            let ctx = Ctx {
                classification: c,
                ..Ctx::default()
            };
            let d = ctx.decide(&set);
            assert_eq!(d.action, Action::Review, "{:?}", ctx.classification);
            assert!(d.fail_closed);
        }

        // `;` does nothing: the read default, even when rules would match any statement.
        let mut strict = PolicySet::new(vec![deny("all")], Action::Allow, Action::Deny);
        strict.default_reviewers = strings(&["dba"]);
        let d = Ctx::with_cmd(Vec::new()).decide(&strict);
        assert_eq!(d.action, Action::Allow);
        assert!(d.matched.is_empty());

        // ...but an unparsed command without its statement is not "empty".
        let broken = Classification {
            statements: Vec::new(),
            multi_statement: false,
            unparsed: true,
            parse_error: None,
        };
        let d = Ctx {
            classification: broken,
            ..Ctx::default()
        }
        .decide(&PolicySet::new(Vec::new(), Action::Allow, Action::Deny));
        assert_eq!(d.action, Action::Deny);
        assert!(d.message.unwrap().contains("default action is deny"));
        assert!(PolicySet::default().rules.is_empty());
    }

    #[test]
    fn spec_example_rules() {
        use Operation::*;
        let prod = ConnectionMatch {
            names: Vec::new(),
            tags: tags(&[("env", "prod")]),
        };
        let mut agents_ro = deny("agents-read-only");
        agents_ro.agents = Some(true);
        agents_ro.connections = Some(prod.clone());
        agents_ro.writes = Some(true);
        agents_ro.message = Some("AI agents are read-only in production; ask for a review".into());
        let mut no_ddl = deny("no-destructive-ddl");
        no_ddl.connections = Some(prod);
        no_ddl.operations = vec![Drop, Truncate];
        let mut unbounded_writes = Rule::new("review-unbounded-writes", Action::Review);
        unbounded_writes.groups = strings(&["engineers"]);
        unbounded_writes.operations = vec![Update, Delete];
        unbounded_writes.without_where = true;
        unbounded_writes.reviewers = strings(&["dba"]);
        unbounded_writes.timeout_secs = Some(600);
        let set = PolicySet::new(
            vec![agents_ro, no_ddl, unbounded_writes],
            Action::Allow,
            Action::Allow,
        );
        let agent = identity("claude-agent", &["ai-agents"], true);

        let d = Ctx {
            identity: agent.clone(),
            classification: cmd(vec![dynamic(st(Do))]),
            text: "DO $$ BEGIN EXECUTE 'drop table users'; END $$",
            ..Ctx::default()
        }
        .decide(&set);
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.rule.as_deref(), Some("agents-read-only"));
        assert_eq!(
            d.matched,
            strings(&["agents-read-only", "no-destructive-ddl"])
        );
        assert!(!d.fail_closed, "writes=true matches a DO block outright");

        let d = Ctx {
            identity: agent.clone(),
            ..Ctx::default()
        }
        .decide(&set);
        assert_eq!(d.action, Action::Allow);

        let d = Ctx {
            identity: agent,
            conn_name: "pg-dev",
            conn_tags: Some(tags(&[("env", "dev")])),
            classification: cmd(vec![st(Insert)]),
            ..Ctx::default()
        }
        .decide(&set);
        assert_eq!(d.action, Action::Allow);

        let d = Ctx {
            classification: Classification::unparsed("syntax error"),
            text: "TRUNCATE users CASCADE CASCADE",
            ..Ctx::default()
        }
        .decide(&set);
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.rule.as_deref(), Some("no-destructive-ddl"));
        assert!(d.fail_closed);
        assert!(d.message.unwrap().contains("fail closed"));
        assert_eq!(
            d.matched,
            strings(&["no-destructive-ddl", "review-unbounded-writes"])
        );

        let d = Ctx::with_cmd(vec![unbounded(st(Delete))]).decide(&set);
        assert_eq!(d.action, Action::Review);
        assert_eq!(d.timeout_secs, Some(600));
        assert_eq!(d.reviewers, strings(&["dba"]));
        let d = Ctx::with_cmd(vec![st(Delete)]).decide(&set);
        assert_eq!(d.action, Action::Allow);
    }
}

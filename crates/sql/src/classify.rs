//! Statement classification on top of the real PostgreSQL grammar (libpg_query).

use airlock_core::{Classification, Operation, Statement};
use pg_query::protobuf::{self, TransactionStmtKind, VariableSetKind};
use pg_query::NodeEnum;

use crate::functions;
use crate::walk;

/// Settings whose change alters the privileges the session acts with.
const PRIVILEGE_SETTINGS: &[&str] = &["role", "session_authorization"];

/// Longest text the classifier parses. Bigger text is unparsed (fails closed: the most
/// dangerous class) before the parser sees it.
pub const MAX_CLASSIFIED_BYTES: usize = 4 * 1024 * 1024;

/// Most tokens (estimated, see [`estimate_tokens`]) the classifier parses. The parser's cost
/// grows with the number of tokens, not bytes: libpg_query, its protobuf output and the decoded
/// tree take about 350 bytes per token together (a 1 MiB `IN (1,1,1,...)` list, 524,000 items,
/// peaked at 355 MB and 2.4 s), so this bounds one statement to roughly 175 MB and a second.
/// An `IN` list of 100,000 ids still classifies. Lowered from 500,000 after the outside review
/// measured 1.8 GB for a 1.2 MB chain of `OR` terms in a masked session.
pub const MAX_CLASSIFIED_TOKENS: usize = 200_000;

/// An upper estimate of the number of lexical tokens in `sql`, in one pass without allocating:
/// runs of identifier characters and digits count one, every other non-blank character one,
/// quoted strings and identifiers, dollar-quoted strings and comments one each. Used only to
/// bound the parser's cost: an estimate that is off makes the bound looser or stricter, never
/// the classification wrong.
pub(crate) fn estimate_tokens(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut tokens = 0usize;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let rest = bytes.get(i..).unwrap_or_default();
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        tokens += 1;
        if rest.starts_with(b"--") {
            i += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            i += find(rest, b"*/").map_or(rest.len(), |end| end + 2);
        } else if b == b'\'' || b == b'"' {
            // Doubled quotes continue the token; a backslash escape (E'..') may end it early,
            // which only counts more tokens.
            let mut j = i + 1;
            loop {
                match bytes.get(j) {
                    None => break,
                    Some(&c) if c == b && bytes.get(j + 1) == Some(&b) => j += 2,
                    Some(&c) if c == b => {
                        j += 1;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            i = j;
        } else if b == b'$' {
            // $tag$ ... $tag$ (or a $1 parameter).
            let tag_end = rest
                .iter()
                .skip(1)
                .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                .map(|p| p + 1);
            match tag_end {
                Some(end) if rest.get(end) == Some(&b'$') => {
                    let tag = rest.get(..=end).unwrap_or_default();
                    let body = rest.get(end + 1..).unwrap_or_default();
                    i += end + 1 + find(body, tag).map_or(body.len(), |p| p + tag.len());
                }
                _ => i += 1 + rest.iter().skip(1).take_while(|&&c| word(c)).count(),
            }
        } else if word(b) {
            i += rest.iter().take_while(|&&c| word(c)).count();
        } else {
            i += 1;
        }
    }
    tokens
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `sql` is within the bounds the classifier parses ([`MAX_CLASSIFIED_BYTES`],
/// [`MAX_CLASSIFIED_TOKENS`]); the error says which bound it exceeds. Everything else that
/// parses client text with libpg_query (lineage, settings) should check it first: the parser's
/// memory grows with the text (2 GB for a dense 1 MiB `IN` list through a JSON copy of the tree).
pub fn check_parse_bounds(sql: &str) -> Result<(), String> {
    if sql.len() > MAX_CLASSIFIED_BYTES {
        return Err(format!(
            "statement text of {} bytes is over the classifier's limit of {MAX_CLASSIFIED_BYTES} bytes",
            sql.len()
        ));
    }
    let tokens = estimate_tokens(sql);
    if tokens > MAX_CLASSIFIED_TOKENS {
        return Err(format!(
            "statement text of about {tokens} tokens is over the classifier's limit of {MAX_CLASSIFIED_TOKENS} tokens"
        ));
    }
    Ok(())
}

/// Parses PostgreSQL text within the classifier's bounds.
pub(crate) fn parse(sql: &str) -> Result<pg_query::ParseResult, String> {
    check_parse_bounds(sql)?;
    // libpg_query is C behind an FFI boundary and `ParseResult::new` indexes into the tree; a
    // panic there must fail closed for this one command, not take the session down.
    match std::panic::catch_unwind(|| pg_query::parse(sql, 0)) {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("the SQL parser panicked".to_owned()),
    }
}

/// Classifies PostgreSQL text (one or more statements). Never fails: text the grammar rejects,
/// text over [`MAX_CLASSIFIED_BYTES`] or [`MAX_CLASSIFIED_TOKENS`], or anything the classifier cannot follow, becomes
/// [`Classification::unparsed`].
pub fn classify_pg(sql: &str) -> Classification {
    let result = match parse(sql) {
        Ok(result) => result,
        Err(error) => return Classification::unparsed(error),
    };
    let mut statements = Vec::with_capacity(result.protobuf.stmts.len());
    for raw in &result.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|stmt| stmt.node.as_ref()) else {
            return Classification::unparsed("empty statement node in parse tree");
        };
        match classify_statement(node) {
            Ok(statement) => statements.push(statement),
            Err(error) => return Classification::unparsed(error),
        }
    }
    Classification {
        multi_statement: statements.len() > 1,
        statements,
        unparsed: false,
        parse_error: None,
    }
}

pub(crate) fn classify_statement(node: &NodeEnum) -> Result<Statement, String> {
    let copy_from = matches!(node, NodeEnum::CopyStmt(s) if s.is_from);
    let scan = walk::scan(node, copy_from).map_err(|e| e.to_string())?;
    let kind = kind_of(node);

    if !kind.executed {
        // Plain EXPLAIN plans the inner statement without running it, so the inner statement's
        // writes do not happen: its targets are reported as reads. Function calls still count:
        // the planner evaluates functions marked IMMUTABLE while folding constants, and a
        // function's marking is not something we can verify.
        let mut reads = scan.reads();
        for written in scan.writes() {
            if !reads.contains(&written) {
                reads.push(written);
            }
        }
        return Ok(Statement {
            operation: Operation::Select,
            reads,
            writes: Vec::new(),
            has_where: true,
            writes_data: scan.unknown_function,
            dynamic_sql: scan.dynamic_function,
            functions: scan.functions(),
        });
    }

    let mut operation = kind.op;
    if operation == Operation::Select {
        // A SELECT that carries a data-modifying CTE is named after that modification, so
        // operation-based rules ("no DELETE without WHERE") see it; SELECT INTO is CREATE TABLE AS.
        if let Some((nested, _)) = scan.modifying.first() {
            operation = *nested;
        } else if scan.select_into {
            operation = Operation::Create;
        } else if scan.locking {
            // FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE anywhere (subquery, CTE): the rows
            // stay locked until the transaction ends and block every writer.
            operation = Operation::Lock;
        }
    }
    let mut writes = scan.writes();
    for extra in kind.extra_writes {
        if !writes.contains(&extra) {
            writes.push(extra);
        }
    }
    // SET CONSTRAINTS names constraints (parsed as RangeVars), not relations.
    let reads = if matches!(node, NodeEnum::ConstraintsSetStmt(_)) {
        Vec::new()
    } else {
        scan.reads()
    };
    Ok(Statement {
        operation,
        reads,
        writes,
        // Any UPDATE/DELETE anywhere in the statement (e.g. in a CTE) without WHERE makes the
        // whole statement unbounded. For other statements the question does not apply: true.
        has_where: scan.modifying.iter().all(|(_, bounded)| *bounded),
        writes_data: kind.writes
            || !scan.modifying.is_empty()
            || scan.select_into
            || scan.unknown_function
            || scan.execute
            || scan.locking,
        dynamic_sql: kind.dynamic || scan.dynamic_function || scan.execute,
        functions: scan.functions(),
    })
}

/// What the statement type alone says.
struct Kind {
    op: Operation,
    writes: bool,
    dynamic: bool,
    /// `false` only for plain EXPLAIN, which does not run its statement.
    executed: bool,
    /// Objects named outside `RangeVar`s (DROP, COMMENT ON).
    extra_writes: Vec<String>,
}

impl Kind {
    fn new(op: Operation, writes: bool) -> Kind {
        Kind {
            op,
            writes,
            dynamic: false,
            executed: true,
            extra_writes: Vec::new(),
        }
    }
    fn dynamic(mut self) -> Kind {
        self.dynamic = true;
        self
    }
}

fn kind_of(node: &NodeEnum) -> Kind {
    use NodeEnum as N;
    use Operation as Op;
    match node {
        N::SelectStmt(_) => Kind::new(Op::Select, false),
        N::InsertStmt(_) => Kind::new(Op::Insert, true),
        N::UpdateStmt(_) => Kind::new(Op::Update, true),
        N::DeleteStmt(_) => Kind::new(Op::Delete, true),
        N::MergeStmt(_) => Kind::new(Op::Merge, true),
        N::TruncateStmt(_) => Kind::new(Op::Truncate, true),
        N::CallStmt(_) => Kind::new(Op::Call, true),
        N::DoStmt(_) => Kind::new(Op::Do, true).dynamic(),
        // The prepared statement's text was given earlier (or over the extended protocol); here
        // we only see its name.
        N::ExecuteStmt(_) => Kind::new(Op::Other, true).dynamic(),
        N::PrepareStmt(s) => {
            let inner = s.query.as_ref().and_then(|q| q.node.as_ref());
            match inner {
                Some(inner) => kind_of(inner).dynamic(),
                None => Kind::new(Op::Unknown, true).dynamic(),
            }
        }
        N::DeclareCursorStmt(s) => match s.query.as_ref().and_then(|q| q.node.as_ref()) {
            Some(inner) => kind_of(inner),
            None => Kind::new(Op::Unknown, true),
        },
        N::ExplainStmt(s) => {
            let inner = s.query.as_ref().and_then(|q| q.node.as_ref());
            let mut kind = match inner {
                Some(inner) => kind_of(inner),
                None => Kind::new(Op::Unknown, true),
            };
            // Any ANALYZE option counts, whatever its argument: `EXPLAIN (ANALYZE off)` is
            // treated as executing. This keeps the classification independent of literal values
            // ('off' is a string literal), which the classifier cache relies on.
            kind.executed = s.options.iter().any(|option| {
                matches!(&option.node, Some(N::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze"))
            });
            kind
        }
        N::CopyStmt(s) => {
            // COPY ... TO a server file or PROGRAM writes files or runs commands on the server;
            // only COPY ... TO STDOUT is a pure read.
            Kind::new(
                Op::Copy,
                s.is_from || s.is_program || !s.filename.is_empty(),
            )
        }
        N::VariableSetStmt(s) => {
            let reset_all = s.kind == VariableSetKind::VarResetAll as i32;
            let privileges = PRIVILEGE_SETTINGS
                .iter()
                .any(|p| s.name.eq_ignore_ascii_case(p));
            // A search_path that puts another schema before pg_catalog lets every later
            // unqualified name (`lower`, `=`, `text`) resolve to a user object: nothing after it
            // can be trusted, so it is the most dangerous class. This depends on the SET's
            // literal values; the cache never shares a SET's entry between texts (cache.rs).
            if untrusted_search_path(s) {
                Kind::new(Op::Set, true).dynamic()
            } else {
                Kind::new(Op::Set, reset_all || privileges)
            }
        }
        N::VariableShowStmt(_) => Kind::new(Op::Show, false),
        N::LockStmt(_) => Kind::new(Op::Lock, true),
        N::TransactionStmt(s) => {
            use TransactionStmtKind as T;
            match T::try_from(s.kind) {
                Ok(T::TransStmtBegin | T::TransStmtStart) => Kind::new(Op::Begin, false),
                Ok(T::TransStmtCommit) => Kind::new(Op::Commit, false),
                Ok(T::TransStmtRollback) => Kind::new(Op::Rollback, false),
                // Two-phase commit: PREPARE TRANSACTION keeps locks and a transaction alive
                // beyond the session, and COMMIT/ROLLBACK PREPARED end any session's prepared
                // transaction by its name. All of them act outside this session.
                Ok(T::TransStmtPrepare) => Kind::new(Op::Other, true),
                Ok(T::TransStmtCommitPrepared) => Kind::new(Op::Commit, true),
                Ok(T::TransStmtRollbackPrepared) => Kind::new(Op::Rollback, true),
                Ok(T::TransStmtSavepoint | T::TransStmtRelease | T::TransStmtRollbackTo) => {
                    Kind::new(Op::Other, false)
                }
                Ok(T::Undefined) | Err(_) => Kind::new(Op::Unknown, true),
            }
        }
        N::GrantStmt(s) => Kind::new(if s.is_grant { Op::Grant } else { Op::Revoke }, true),
        N::GrantRoleStmt(s) => Kind::new(if s.is_grant { Op::Grant } else { Op::Revoke }, true),
        N::AlterDefaultPrivilegesStmt(s) => {
            let grant = s.action.as_ref().is_some_and(|a| a.is_grant);
            Kind::new(if grant { Op::Grant } else { Op::Revoke }, true)
        }
        N::DropStmt(s) => {
            let mut kind = Kind::new(Op::Drop, true);
            kind.extra_writes = s.objects.iter().filter_map(object_name).collect();
            kind
        }
        N::DropdbStmt(_)
        | N::DropRoleStmt(_)
        | N::DropTableSpaceStmt(_)
        | N::DropUserMappingStmt(_)
        | N::DropSubscriptionStmt(_)
        | N::DropOwnedStmt(_) => Kind::new(Op::Drop, true),
        N::CreateStmt(_)
        | N::CreateTableAsStmt(_)
        | N::ViewStmt(_)
        | N::IndexStmt(_)
        | N::CreateSchemaStmt(_)
        | N::CreateSeqStmt(_)
        | N::CreateFunctionStmt(_)
        | N::CreateTrigStmt(_)
        | N::CreateEventTrigStmt(_)
        | N::RuleStmt(_)
        | N::CreatePolicyStmt(_)
        | N::CreateRoleStmt(_)
        | N::CreatedbStmt(_)
        | N::CreateTableSpaceStmt(_)
        | N::CreateExtensionStmt(_)
        | N::CreateFdwStmt(_)
        | N::CreateForeignServerStmt(_)
        | N::CreateForeignTableStmt(_)
        | N::CreateUserMappingStmt(_)
        | N::ImportForeignSchemaStmt(_)
        | N::CreateAmStmt(_)
        | N::CreatePlangStmt(_)
        | N::DefineStmt(_)
        | N::CreateDomainStmt(_)
        | N::CreateOpClassStmt(_)
        | N::CreateOpFamilyStmt(_)
        | N::CreateStatsStmt(_)
        | N::CompositeTypeStmt(_)
        | N::CreateEnumStmt(_)
        | N::CreateRangeStmt(_)
        | N::CreateConversionStmt(_)
        | N::CreateCastStmt(_)
        | N::CreateTransformStmt(_)
        | N::CreatePublicationStmt(_)
        | N::CreateSubscriptionStmt(_) => Kind::new(Op::Create, true),
        N::AlterTableStmt(_)
        | N::AlterCollationStmt(_)
        | N::AlterDomainStmt(_)
        | N::AlterTableSpaceOptionsStmt(_)
        | N::AlterTableMoveAllStmt(_)
        | N::AlterExtensionStmt(_)
        | N::AlterExtensionContentsStmt(_)
        | N::AlterFdwStmt(_)
        | N::AlterForeignServerStmt(_)
        | N::AlterUserMappingStmt(_)
        | N::AlterPolicyStmt(_)
        | N::AlterEventTrigStmt(_)
        | N::AlterRoleStmt(_)
        | N::AlterRoleSetStmt(_)
        | N::AlterSeqStmt(_)
        | N::AlterOpFamilyStmt(_)
        | N::AlterStatsStmt(_)
        | N::AlterFunctionStmt(_)
        | N::RenameStmt(_)
        | N::AlterObjectDependsStmt(_)
        | N::AlterObjectSchemaStmt(_)
        | N::AlterOwnerStmt(_)
        | N::AlterOperatorStmt(_)
        | N::AlterTypeStmt(_)
        | N::AlterEnumStmt(_)
        | N::AlterDatabaseStmt(_)
        | N::AlterDatabaseRefreshCollStmt(_)
        | N::AlterDatabaseSetStmt(_)
        | N::AlterTsdictionaryStmt(_)
        | N::AlterTsconfigurationStmt(_)
        | N::AlterPublicationStmt(_)
        | N::AlterSubscriptionStmt(_)
        | N::ReassignOwnedStmt(_) => Kind::new(Op::Alter, true),
        N::CommentStmt(s) => {
            let mut kind = Kind::new(Op::Other, true);
            kind.extra_writes = s
                .object
                .as_deref()
                .and_then(object_name)
                .into_iter()
                .collect();
            kind
        }
        N::SecLabelStmt(s) => {
            let mut kind = Kind::new(Op::Other, true);
            kind.extra_writes = s
                .object
                .as_deref()
                .and_then(object_name)
                .into_iter()
                .collect();
            kind
        }
        // NOTIFY is counted as a write: other sessions act on the message (cache invalidation,
        // job queues), so it has effects outside this session just like a row change.
        N::NotifyStmt(_) => Kind::new(Op::Other, true),
        // Only affect this session, or read a cursor that was classified when declared.
        N::ListenStmt(_)
        | N::UnlistenStmt(_)
        | N::DiscardStmt(_)
        | N::DeallocateStmt(_)
        | N::FetchStmt(_)
        | N::ClosePortalStmt(_)
        | N::ConstraintsSetStmt(_) => Kind::new(Op::Other, false),
        // LOCK, VACUUM/ANALYZE, CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW, ALTER SYSTEM,
        // CHECKPOINT, LOAD, and anything not listed above: may change state, fail closed.
        _ => Kind::new(Op::Other, true),
    }
}

/// The values of a `SET name = a, b, ...` as PostgreSQL flattens them (string and number
/// constants); `None` when an argument is anything else.
pub(crate) fn set_values(s: &protobuf::VariableSetStmt) -> Option<Vec<String>> {
    use protobuf::a_const::Val;
    s.args
        .iter()
        .map(|arg| match arg.node.as_ref()? {
            NodeEnum::AConst(c) => match c.val.as_ref()? {
                Val::Sval(v) => Some(v.sval.clone()),
                Val::Ival(v) => Some(v.ival.to_string()),
                Val::Fval(v) => Some(v.fval.clone()),
                Val::Boolval(v) => Some(if v.boolval { "on" } else { "off" }.to_owned()),
                Val::Bsval(v) => Some(v.bsval.clone()),
            },
            _ => None,
        })
        .collect()
}

/// `SET search_path` / `SET SCHEMA` to a value that lists pg_catalog after another schema.
/// `SET search_path TO DEFAULT`, `RESET search_path` and `FROM CURRENT` return to (or keep) the
/// value the session started with, which the gateway checks at startup
/// ([`functions::search_path_trusts_builtins`]).
fn untrusted_search_path(s: &protobuf::VariableSetStmt) -> bool {
    if !s.name.eq_ignore_ascii_case("search_path") || s.kind != VariableSetKind::VarSetValue as i32
    {
        return false;
    }
    match set_values(s) {
        Some(values) => !functions::search_path_elements_trust_builtins(&values),
        None => true,
    }
}

/// The dotted name of an object in DROP/COMMENT ON (`List` of strings, a bare name, a type or a
/// function signature).
fn object_name(node: &protobuf::Node) -> Option<String> {
    let join = |parts: &[protobuf::Node]| -> String {
        parts
            .iter()
            .filter_map(|p| match &p.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    let name = match node.node.as_ref()? {
        NodeEnum::List(list) => join(&list.items),
        NodeEnum::String(s) => s.sval.clone(),
        NodeEnum::TypeName(t) => join(&t.names),
        NodeEnum::ObjectWithArgs(o) => join(&o.objname),
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("select 1"), 2);
        assert_eq!(
            estimate_tokens("SELECT * FROM t WHERE id IN (1, 22, 333)"),
            14
        );
        assert_eq!(estimate_tokens("select 'a, b, c' , \"x y\""), 4);
        assert_eq!(estimate_tokens("select 'it''s, here'"), 2);
        assert_eq!(estimate_tokens("select $$a, b, c$$, $q$ x $$ y $q$, $1"), 6);
        assert_eq!(estimate_tokens("select /* a, b */ 1 -- c, d\n, 2"), 6);
        // Unterminated constructs run to the end.
        assert_eq!(estimate_tokens("select 'a, b"), 2);
        assert_eq!(estimate_tokens("select /* a, b"), 2);
        assert_eq!(estimate_tokens("select $x$ a, b"), 2);
        let dense = format!("select {}", vec!["1"; 1000].join(","));
        assert_eq!(estimate_tokens(&dense), 1 + 1999);
    }
}

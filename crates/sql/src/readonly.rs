//! Which statements could take a session out of PostgreSQL's read-only mode.
//!
//! Defence in depth for sessions whose rules allow no writes: the gateway opens them with
//! `default_transaction_read_only = on`, so that a write the classifier did not see (a function
//! hidden in a view, an overloaded operator) still fails in the server. That only holds while
//! nothing switches the mode back; [`pg_leaves_read_only`] finds the statements that could, so
//! the gateway can refuse them.

use pg_query::protobuf::{self, TransactionStmtKind, VariableSetKind};
use pg_query::NodeEnum;

use crate::classify::{classify_statement, parse, set_values};
use crate::functions;

/// Settings whose change (or reset) could make later transactions read-write, or change the
/// role the session acts as (a role with more privileges than the read-only one).
const GUARDED_SETTINGS: &[&str] = &[
    "default_transaction_read_only",
    "transaction_read_only",
    "role",
    "session_authorization",
];

/// Whether `text` contains a statement that could switch the session or a transaction to
/// read-write, or reset settings: `SET default_transaction_read_only = off` (any value that is
/// not clearly on), `SET transaction_read_only`, `SET TRANSACTION READ WRITE`,
/// `SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE`, `BEGIN` / `START TRANSACTION READ
/// WRITE`, `RESET` / `SET ... TO DEFAULT` of those settings, `RESET ALL`, `DISCARD ALL`, role
/// changes, and anything that can run code which could call `set_config`: `DO`, dynamic SQL,
/// calls of functions not known to be read-only, user-defined operators and types. Text that
/// does not parse (or is too big to) fails closed: true.
pub fn pg_leaves_read_only(text: &str) -> bool {
    let Ok(result) = parse(text) else {
        return true;
    };
    result.protobuf.stmts.iter().any(|raw| {
        let Some(node) = raw.stmt.as_ref().and_then(|stmt| stmt.node.as_ref()) else {
            return true;
        };
        if statement_leaves_read_only(node) {
            return true;
        }
        // Code that runs: any function that is not a known read-only built-in could call
        // set_config('default_transaction_read_only', 'off', false).
        match classify_statement(node) {
            Ok(statement) => {
                statement.dynamic_sql
                    || statement
                        .functions
                        .iter()
                        .any(|name| !functions::is_read_only(name))
            }
            Err(_) => true,
        }
    })
}

fn statement_leaves_read_only(node: &NodeEnum) -> bool {
    match node {
        NodeEnum::VariableSetStmt(s) => set_leaves_read_only(s),
        NodeEnum::TransactionStmt(s) => {
            let starts = matches!(
                TransactionStmtKind::try_from(s.kind),
                Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart)
            );
            starts && !options_keep_read_only(&s.options)
        }
        // DISCARD ALL includes RESET ALL.
        NodeEnum::DiscardStmt(s) => s.target == protobuf::DiscardMode::DiscardAll as i32,
        // Settings stored for later sessions (ALTER ROLE/DATABASE ... SET, ALTER SYSTEM) or for
        // a function's calls.
        NodeEnum::AlterRoleSetStmt(s) => s.setstmt.as_ref().is_some_and(set_leaves_read_only),
        NodeEnum::AlterDatabaseSetStmt(s) => s.setstmt.as_ref().is_some_and(set_leaves_read_only),
        NodeEnum::AlterSystemStmt(s) => s.setstmt.as_ref().is_some_and(set_leaves_read_only),
        NodeEnum::CreateFunctionStmt(_) | NodeEnum::AlterFunctionStmt(_) | NodeEnum::DoStmt(_) => {
            true
        }
        _ => false,
    }
}

fn set_leaves_read_only(s: &protobuf::VariableSetStmt) -> bool {
    let kind = VariableSetKind::try_from(s.kind);
    match kind {
        Ok(VariableSetKind::VarResetAll) => true,
        // SET TRANSACTION ... / SET SESSION CHARACTERISTICS AS TRANSACTION ...
        Ok(VariableSetKind::VarSetMulti) => !options_keep_read_only(&s.args),
        Ok(VariableSetKind::VarSetValue) if guarded(&s.name) => {
            // Only a value PostgreSQL reads as "on" keeps the mode; role changes always count.
            let read_only_setting = s.name.eq_ignore_ascii_case("default_transaction_read_only")
                || s.name.eq_ignore_ascii_case("transaction_read_only");
            !read_only_setting
                || !matches!(set_values(s).as_deref(), Some([value]) if parses_as_true(value))
        }
        // DEFAULT, RESET, FROM CURRENT of a guarded setting; anything unknown.
        Ok(_) => guarded(&s.name),
        Err(_) => true,
    }
}

fn guarded(name: &str) -> bool {
    GUARDED_SETTINGS
        .iter()
        .any(|g| name.eq_ignore_ascii_case(g))
}

/// Whether transaction options (`DefElem`s of BEGIN / SET TRANSACTION) leave the read-only
/// mode alone: none of them is `transaction_read_only` with a value other than true.
fn options_keep_read_only(options: &[protobuf::Node]) -> bool {
    options.iter().all(|option| match option.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("transaction_read_only") => {
            // The grammar spells READ ONLY as the integer 1 (READ WRITE as 0).
            use protobuf::a_const::Val;
            let value = match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                Some(NodeEnum::AConst(c)) => c.val.as_ref(),
                _ => None,
            };
            matches!(
                value,
                Some(Val::Ival(protobuf::Integer { ival: 1 }))
                    | Some(Val::Boolval(protobuf::Boolean { boolval: true }))
            )
        }
        Some(NodeEnum::DefElem(_)) => true,
        _ => false,
    })
}

/// PostgreSQL's `parse_bool` for a true value: `true`, `yes`, `on`, `1` and unique prefixes of
/// `true`/`yes`, any case. Anything else (whitespace included) is not known to be true.
fn parses_as_true(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    if v.is_empty() {
        return false;
    }
    "true".starts_with(&v) || "yes".starts_with(&v) || v == "on" || v == "1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_toggles_are_found() {
        for sql in [
            "SET default_transaction_read_only = off",
            "SET default_transaction_read_only = false",
            "SET default_transaction_read_only = 0",
            "SET default_transaction_read_only = no",
            "SET default_transaction_read_only TO 'of'",
            "set DEFAULT_TRANSACTION_READ_ONLY = 'OFF'",
            "SET \"default_transaction_read_only\" = off",
            "SET SESSION default_transaction_read_only = off",
            "SET LOCAL default_transaction_read_only = f",
            "SET default_transaction_read_only = DEFAULT",
            "SET default_transaction_read_only TO 'maybe'",
            "SET default_transaction_read_only = on, off",
            "RESET default_transaction_read_only",
            "SET default_transaction_read_only FROM CURRENT",
            "SET transaction_read_only = off",
            "SET transaction_read_only TO DEFAULT",
            "RESET transaction_read_only",
            "RESET ALL",
            "DISCARD ALL",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
            "SET TRANSACTION READ WRITE",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED READ WRITE",
            "BEGIN READ WRITE",
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE",
            "START TRANSACTION READ WRITE",
            "START TRANSACTION READ ONLY, READ WRITE",
            "SET ROLE admin",
            "RESET ROLE",
            "SET SESSION AUTHORIZATION admin",
            "RESET SESSION AUTHORIZATION",
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "SELECT pg_catalog.set_config('transaction_read_only', 'off', true)",
            "SELECT set_config(current_setting('x'), 'off', false)",
            "SELECT 1; SET default_transaction_read_only = off",
            "DO $$BEGIN PERFORM set_config('default_transaction_read_only','off',false); END$$",
            "SELECT public.f()",
            "SELECT my_unknown_function()",
            "ALTER ROLE agent SET default_transaction_read_only = off",
            "ALTER DATABASE test SET default_transaction_read_only = off",
            "ALTER SYSTEM SET default_transaction_read_only = off",
            "ALTER SYSTEM RESET ALL",
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql SET default_transaction_read_only = off AS 'SELECT 1'",
            "EXECUTE p",
            "selec 1",
            "SET default_transaction_read_only = off; selec",
        ] {
            assert!(pg_leaves_read_only(sql), "{sql}");
        }
    }

    #[test]
    fn harmless_statements_keep_read_only() {
        for sql in [
            "SELECT 1",
            "SELECT lower(name) FROM t WHERE id = 1",
            "SET default_transaction_read_only = on",
            "SET default_transaction_read_only = true",
            "SET default_transaction_read_only TO 1",
            "SET default_transaction_read_only = 'yes'",
            "SET default_transaction_read_only = t",
            "SET transaction_read_only = on",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET TRANSACTION READ ONLY",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "BEGIN",
            "BEGIN READ ONLY",
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            "START TRANSACTION READ ONLY",
            "COMMIT",
            "ROLLBACK",
            "SET statement_timeout = 0",
            "RESET statement_timeout",
            "SET search_path = public",
            "SHOW default_transaction_read_only",
            "DISCARD PLANS",
            "",
        ] {
            assert!(!pg_leaves_read_only(sql), "{sql}");
        }
    }

    #[test]
    fn bool_parsing_matches_postgres() {
        for v in ["on", "ON", "true", "t", "tr", "TRUE", "yes", "y", "ye", "1"] {
            assert!(parses_as_true(v), "{v}");
        }
        for v in [
            "off", "of", "o", "false", "f", "no", "n", "0", "", "2", "onn", "tru e", " on",
        ] {
            assert!(!parses_as_true(v), "{v}");
        }
    }
}

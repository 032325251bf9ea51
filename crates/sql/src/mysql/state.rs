//! Statements that store a value they compute into server-side session state that a later
//! statement can read back: a channel around masking, which sees only the later read
//! (`SET @@session.timestamp = (SELECT …card…)` then `SELECT UNIX_TIMESTAMP()`;
//! `SELECT LAST_INSERT_ID(…card…)` then `SELECT LAST_INSERT_ID()`; a string variable such as
//! `default_master_connection` carries whole values, also into `SHOW VARIABLES` and
//! `information_schema.SESSION_VARIABLES`).
//!
//! In a session with masking the adapter refuses these ([`stores_computed_state`]): a system
//! variable (`SET [SESSION|GLOBAL|LOCAL] v`, `SET @@v`, `SET STATEMENT v = … FOR`) may only be
//! given a constant (a literal, a keyword such as `ON` or `DEFAULT`, or the `sql_mode` forms the
//! classifier already proves safe), and the functions in [`STATE_FUNCTIONS`] only literal
//! arguments. User variables (`@v`) are not refused: the masking treats every statement that
//! reads one as reading a masked value.

use super::classify::{bare_words, object_name, sql_mode_is_safe, top_level_word};
use super::lexer::{lex, unescape};
use sqlparser::ast::{self, visit_expressions, Expr};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// Functions that keep (part of) their argument in session state readable later:
/// `LAST_INSERT_ID(expr)` sets the value `LAST_INSERT_ID()`, `@@last_insert_id` and
/// `@@identity` return; `GET_LOCK(name, …)` names a lock that `IS_USED_LOCK` and the
/// `metadata_lock_info` table show; `SETVAL(seq, n)` stores `n` in a sequence.
pub const STATE_FUNCTIONS: &[&str] = &["last_insert_id", "get_lock", "setval"];

/// Why `sql` would store a computed value in session state, or `None`. Text that cannot be
/// read, and a `SET` or a call of a [`STATE_FUNCTIONS`] entry the parser cannot follow, fail
/// closed.
pub fn stores_computed_state(sql: &str) -> Option<String> {
    let Ok(lexed) = lex(sql) else {
        return Some("text airlock cannot read".into());
    };
    lexed.segments.iter().find_map(|s| segment(s, 0))
}

fn segment(text: &str, depth: usize) -> Option<String> {
    let words = bare_words(text);
    // Anywhere in the text, not only as a bare word: MariaDB runs `` `last_insert_id`(…) ``
    // as the built-in too. A mention inside a string or comment only costs a parse.
    let lower = text.to_ascii_lowercase();
    let named_function = STATE_FUNCTIONS.iter().any(|f| lower.contains(f));
    if words.first().is_some_and(|w| w == "SET") && words.get(1).is_some_and(|w| w == "STATEMENT") {
        if depth > 2 {
            return Some("SET STATEMENT nested too deeply".into());
        }
        let Some(for_at) = top_level_word(text, "FOR") else {
            return Some("a SET STATEMENT airlock cannot read".into());
        };
        let settings = text.get(..for_at).unwrap_or("").trim_start();
        // `SET STATEMENT a = 1, b = 2` → `SET a = 1, b = 2`.
        let after_set = settings.get(3..).unwrap_or("").trim_start();
        let assignments = after_set.get(9..).unwrap_or("");
        let inner = text.get(for_at + 3..).unwrap_or("");
        return parsed(&format!("SET {assignments}"), &words).or_else(|| segment(inner, depth + 1));
    }
    // `PREPARE s FROM '…'` / `EXECUTE IMMEDIATE '…'`: the literal is SQL, judged the same way;
    // text from a variable cannot be seen, so it is refused.
    let dynamic_from = match (
        words.first().map(String::as_str),
        words.get(1).map(String::as_str),
    ) {
        (Some("PREPARE"), _) => top_level_word(text, "FROM").map(|at| at + 4),
        (Some("EXECUTE"), Some("IMMEDIATE")) => top_level_word(text, "IMMEDIATE").map(|at| at + 9),
        _ => None,
    };
    if let Some(at) = dynamic_from {
        let rest = text.get(at..).unwrap_or("").trim();
        let inner = match rest.chars().next() {
            Some(q @ ('\'' | '"')) if rest.len() >= 2 && rest.ends_with(q) => {
                unescape(rest.get(1..rest.len() - 1).unwrap_or(""), q)
            }
            _ => {
                return Some(
                    "PREPARE or EXECUTE IMMEDIATE of text from a variable or expression (the statement it runs cannot be seen)"
                        .into(),
                )
            }
        };
        if depth > 2 {
            return Some("PREPARE nested too deeply".into());
        }
        return match lex(&inner) {
            Ok(lexed) => lexed.segments.iter().find_map(|s| segment(s, depth + 1)),
            Err(_) => Some("text airlock cannot read".into()),
        };
    }
    if words.first().is_some_and(|w| w == "SET") || named_function {
        return parsed(text, &words);
    }
    None
}

/// The parsed form of one statement that sets variables or names a state function.
fn parsed(text: &str, words: &[String]) -> Option<String> {
    let text = super::classify::replace_lock_in_share_mode(text).unwrap_or_else(|| text.to_owned());
    if super::check_parse_bounds(&text).is_err() {
        return Some("a statement too large to analyse".into());
    }
    let Ok(statements) = Parser::parse_sql(&MySqlDialect {}, &text) else {
        // sqlparser does not take `NAMES …` inside a list of assignments (sqlx sends `SET
        // sql_mode=…,time_zone='+00:00',NAMES utf8mb4 COLLATE …` on connect): each piece alone.
        if words.first().is_some_and(|w| w == "SET") {
            if let Some(pieces) = set_pieces(&text) {
                if pieces.len() > 1 {
                    return pieces.iter().find_map(|p| {
                        let piece_words = bare_words(p);
                        let names = piece_words.first().is_some_and(|w| {
                            matches!(w.as_str(), "NAMES" | "CHARSET" | "CHARACTER")
                        });
                        // `NAMES x [COLLATE y]`: names and strings only, nothing computed.
                        if names && !p.contains(['(', '@']) {
                            return None;
                        }
                        parsed(&format!("SET {p}"), &piece_words)
                    });
                }
            }
        }
        let what = words.first().map(String::as_str).unwrap_or("statement");
        return Some(format!(
            "a {what} statement airlock cannot parse (it may store a computed value in session state)"
        ));
    };
    for stmt in &statements {
        if let ast::Statement::Set(set) = stmt {
            if let Some(why) = set_values(set) {
                return Some(why);
            }
        }
        let mut found = None;
        let _ = visit_expressions(stmt, |e| {
            if let Expr::Function(f) = e {
                let name = object_name(&f.name);
                if STATE_FUNCTIONS.contains(&name.as_str()) && !literal_args(f) {
                    found = Some(format!(
                        "{}() with an argument that is not a literal stores a computed value in session state",
                        name.to_uppercase()
                    ));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The assignments of `SET a = 1, b = (…), NAMES x`, split at commas outside quotes and
/// parentheses; `None` when the text is not `SET …` or does not close its quotes.
fn set_pieces(text: &str) -> Option<Vec<String>> {
    let trimmed = text.trim_start();
    let head = trimmed.get(..3)?;
    if !head.eq_ignore_ascii_case("set") {
        return None;
    }
    let body = trimmed.get(3..)?;
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in body.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                cur.push(c);
            }
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.checked_sub(1)?;
                cur.push(c);
            }
            ',' if depth == 0 => pieces.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quote.is_some() || depth != 0 {
        return None;
    }
    pieces.push(cur);
    Some(pieces)
}

fn literal_args(f: &ast::Function) -> bool {
    match &f.args {
        ast::FunctionArguments::None => true,
        ast::FunctionArguments::List(list) => list.args.iter().all(|a| match a {
            // A bare word here is a column, not a keyword.
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                !matches!(e, Expr::Identifier(_)) && constant(e)
            }
            _ => false,
        }),
        ast::FunctionArguments::Subquery(_) => false,
    }
}

fn set_values(set: &ast::Set) -> Option<String> {
    use ast::Set;
    let check = |name: &ast::ObjectName, values: &[&Expr]| -> Option<String> {
        let n = object_name(name);
        if n.starts_with('@') && !n.starts_with("@@") {
            return None;
        }
        let bare = n
            .trim_start_matches('@')
            .trim_start_matches("session.")
            .trim_start_matches("local.")
            .trim_start_matches("global.");
        if bare == "sql_mode" && sql_mode_is_safe(values) {
            return None;
        }
        if values.iter().all(|v| constant(v)) {
            return None;
        }
        Some(format!(
            "setting the system variable `{bare}` to a computed value stores it in session state, where later statements read it past the masking; only constants are allowed"
        ))
    };
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => check(variable, &values.iter().collect::<Vec<_>>()),
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .find_map(|a| check(&a.name, &[&a.value])),
        Set::SetTimeZone { value, .. } => (!constant(value)).then(|| {
            "setting the time zone to a computed value stores it in session state; only constants are allowed".to_owned()
        }),
        Set::SetNames { .. } | Set::SetNamesDefault {} | Set::SetTransaction { .. } => None,
        _ => Some("a SET form airlock does not analyse".into()),
    }
}

/// A literal, a keyword-like bare word (`ON`, `SYSTEM`, `utf8mb4`, `DEFAULT`: in a `SET` value a
/// bare word is never a column, no table is in scope), a signed literal.
fn constant(e: &Expr) -> bool {
    match e {
        Expr::Value(_) => true,
        Expr::Identifier(i) => !i.value.starts_with('@'),
        Expr::UnaryOp { op, expr } => {
            matches!(op, ast::UnaryOperator::Minus | ast::UnaryOperator::Plus)
                && matches!(**expr, Expr::Value(_))
        }
        Expr::Nested(inner) => constant(inner),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_session_state() {
        for sql in [
            "set @@session.timestamp = (select substr(card,1,8)+0 from customers where id=1)",
            "set session default_master_connection = (select concat('x', card) from customers)",
            "set timestamp = 1 + id",
            "SET @@sql_select_limit = (select 5)",
            "set @a = 1, @@session.lc_time_names = (select email from customers)",
            "set time zone (select tz from t)",
            "set session time_zone = @v",
            "set statement timestamp = (select 1) for select now()",
            "set statement max_statement_time = 1 for select last_insert_id(card) from customers",
            "select last_insert_id(substr(card,9,8)+0) from customers where id=1",
            "select `last_insert_id`(card) from customers where id=2",
            "select `LAST_INSERT_ID` (conv(hex(substr(email,8,8)),16,10)) from customers",
            "set statement max_statement_time=5 for select `last_insert_id`(card) from customers",
            "select 1 from customers where id=1 and last_insert_id(substr(card,9,8)+0)",
            "do last_insert_id(5 + 1)",
            "select get_lock(email, 0) from customers",
            "/*! select last_insert_id(card) from customers */",
            "select 1; set @@timestamp = unix_timestamp() + 1",
            "set sql_mode = (select email from customers)",
            "set autocommit = 'unterminated",
            "set names utf8mb4, timestamp = (select 1)",
            "prepare s from 'set @@timestamp = (select 1)'",
            "PREPARE s FROM \"select last_insert_id(card) from customers\"",
            "prepare s from @q",
            "execute immediate 'set session default_master_connection = (select email from c)'",
            "execute immediate concat('select ', 1)",
            "SET time_zone='+00:00', NAMES utf8mb4, lc_time_names = @v",
        ] {
            assert!(stores_computed_state(sql).is_some(), "{sql}");
        }
        for sql in [
            "select 1",
            "select last_insert_id()",
            "select last_insert_id(5)",
            "set @a = (select card from customers)",
            "select @v := card from customers",
            "set names utf8mb4",
            "set names 'latin1' collate 'latin1_bin'",
            "set autocommit = 0",
            "set session autocommit = ON",
            "set @@session.time_zone = '+00:00'",
            "set time_zone = DEFAULT",
            "set sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')",
            "SET sql_mode = (SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT'))",
            "set session transaction read only",
            "set session transaction isolation level read committed",
            "set @@session.max_statement_time = -1",
            "set statement max_statement_time = 5 for select * from customers",
            "select 'last_insert_id(card)'",
            "prepare s from 'select card from customers where id = ?'",
            "execute immediate 'select 1'",
            "execute s using @a",
            // What drivers send on connect.
            "SET sql_mode=(SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION')),time_zone='+00:00',NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
            "SET @@SESSION.sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_TRANS_TABLES')",
            "SET character_set_results = NULL",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SET autocommit=1, sql_select_limit = DEFAULT",
        ] {
            assert_eq!(stores_computed_state(sql), None, "{sql}");
        }
    }
}

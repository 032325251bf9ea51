//! MySQL/MariaDB text → [`Classification`], with sqlparser's MySQL dialect after our own lexer.

use super::functions::is_read_only;
use super::lexer::{lex, unescape};
use super::session::{segment_may_change_sql_mode, sql_mode_is_supported};
use airlock_core::{Classification, Operation, Statement};
use sqlparser::ast::{self, visit_expressions, Expr, ObjectName, ObjectNamePart, SetExpr};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// `PREPARE s FROM '...'` nests: bound the recursion.
const MAX_DEPTH: usize = 4;
/// Character sets whose multi-byte characters never contain `'`, `"`, `\` or `` ` `` bytes:
/// with these the server lexes a statement exactly as we do. (GBK, Big5, SJIS, CP932 and
/// GB18030 can hide a backslash in the second byte of a character.)
pub(crate) const SAFE_CHARSETS: &[&str] = &[
    "utf8mb4", "utf8", "utf8mb3", "latin1", "ascii", "binary", "latin2", "latin5", "latin7",
    "default",
];

/// Classifies MySQL text. Never panics; what cannot be analysed is `unparsed` (fail closed).
pub fn classify_mysql(sql: &str) -> Classification {
    classify_depth(sql, 0)
}

fn classify_depth(sql: &str, depth: usize) -> Classification {
    if depth > MAX_DEPTH {
        return Classification::unparsed("PREPARE nested too deeply");
    }
    let lexed = match lex(sql) {
        Ok(l) => l,
        Err(e) => return Classification::unparsed(e.0),
    };
    let mut statements = Vec::with_capacity(lexed.segments.len());
    let last = lexed.segments.len().saturating_sub(1);
    for (i, segment) in lexed.segments.iter().enumerate() {
        match classify_segment(segment, depth) {
            Ok(s) => {
                // The server lexes each statement of a multi-statement only after running the
                // ones before it: after a `sql_mode` change we cannot vouch for (a `SET` that is
                // not provably safe, `EXECUTE`, `CALL`, ...) the rest would be split and quoted
                // by rules we do not know.
                let known_safe_set = s
                    .iter()
                    .all(|st| st.operation == Operation::Set && !st.dynamic_sql);
                if i < last && segment_may_change_sql_mode(segment) && !known_safe_set {
                    let mut c = Classification::unparsed(
                        "statements after a possible sql_mode change in the same command would be lexed by the server under rules airlock cannot know",
                    );
                    c.multi_statement = true;
                    return c;
                }
                statements.extend(s)
            }
            Err(e) => {
                let mut c = Classification::unparsed(e);
                c.multi_statement = lexed.segments.len() > 1;
                return c;
            }
        }
    }
    Classification {
        multi_statement: lexed.segments.len() > 1,
        statements,
        unparsed: false,
        parse_error: None,
    }
}

/// Words outside strings and quoted identifiers, upper-cased.
pub(crate) fn bare_words(segment: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in segment.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c == '\'' || c == '"' || c == '`' {
            quote = Some(c);
        }
        if c.is_alphanumeric() || c == '_' || c == '@' || c == '$' {
            cur.extend(c.to_uppercase());
        } else if !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn write_stmt(operation: Operation) -> Statement {
    Statement {
        operation,
        has_where: true,
        writes_data: true,
        ..Statement::default()
    }
}

fn read_stmt(operation: Operation) -> Statement {
    Statement {
        operation,
        has_where: true,
        ..Statement::default()
    }
}

fn opaque(operation: Operation) -> Statement {
    Statement {
        dynamic_sql: true,
        ..write_stmt(operation)
    }
}

fn classify_segment(segment: &str, depth: usize) -> Result<Vec<Statement>, String> {
    let mut out = classify_segment_inner(segment, depth)?;
    let words = bare_words(segment);
    if takes_row_locks(&words) || sets_serializable(segment, &words) {
        for s in &mut out {
            // Row locks (and SERIALIZABLE, which turns every later read into a locking one
            // while autocommit is off) block writers until the transaction ends. A statement
            // that writes keeps its own operation: it is a write either way.
            if !s.writes_data
                || matches!(
                    s.operation,
                    Operation::Select | Operation::Set | Operation::Show | Operation::Other
                )
            {
                s.operation = Operation::Lock;
                s.writes_data = true;
            }
        }
    }
    Ok(out)
}

/// `FOR UPDATE`, `FOR SHARE` or `LOCK IN SHARE MODE` anywhere in the statement (sub-queries, a
/// `SET` value, derived tables, CTEs, `DO`): the server takes row locks. Read from the words, so
/// statements classified by their keywords (`DO`, `SET STATEMENT`) are covered too; a false
/// positive (`EXPLAIN ... FOR UPDATE`) fails closed.
fn takes_row_locks(words: &[String]) -> bool {
    words.windows(2).any(|p| {
        matches!(p, [a, b] if a == "FOR" && (b == "UPDATE" || b == "SHARE"))
    }) || words.windows(4).any(
        |p| matches!(p, [a, b, c, d] if a == "LOCK" && b == "IN" && c == "SHARE" && d == "MODE"),
    )
}

/// Whether a `SET` (or `SET STATEMENT`) may make the isolation level SERIALIZABLE: the word
/// `SERIALIZABLE` (`SET [SESSION|GLOBAL] TRANSACTION ISOLATION LEVEL SERIALIZABLE`), or an
/// assignment of `tx_isolation`/`transaction_isolation` to anything but a literal naming one of
/// the other three levels (`'SERIALIZABLE'`, `3`, `DEFAULT`, a variable, a sub-query). Under
/// SERIALIZABLE InnoDB reads every row as `LOCK IN SHARE MODE` once autocommit is off, so a
/// plain `SELECT` then holds share locks that block writers until the transaction ends.
/// (`START TRANSACTION` cannot set the level.)
fn sets_serializable(segment: &str, words: &[String]) -> bool {
    if words.first().is_none_or(|w| w != "SET") {
        return false;
    }
    if words.iter().any(|w| w == "SERIALIZABLE") {
        return true;
    }
    if !segment.to_ascii_lowercase().contains("isolation") {
        return false;
    }
    // An assignment to the isolation variable: each `isolation = <value>` must be a safe
    // literal. Anything this scan cannot follow counts as SERIALIZABLE.
    let lower = segment.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("isolation") {
        let after = rest.get(at + "isolation".len()..).unwrap_or("");
        let after = after.trim_start_matches(['`', '\'', '"']).trim_start();
        let Some(value) = after.strip_prefix(":=").or_else(|| after.strip_prefix('=')) else {
            // `ISOLATION LEVEL <level>`: the level words were checked above.
            rest = after;
            continue;
        };
        let value = value.trim_start();
        let end = value
            .find(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .unwrap_or(value.len());
        let token = value.get(..end).unwrap_or("").trim_matches(['\'', '"']);
        if !matches!(
            token,
            "read-uncommitted" | "read-committed" | "repeatable-read" | "0" | "1" | "2"
        ) {
            return true;
        }
        rest = value.get(end..).unwrap_or("");
    }
    false
}

fn classify_segment_inner(segment: &str, depth: usize) -> Result<Vec<Statement>, String> {
    let words = bare_words(segment);
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    // Statements sqlparser does not know in their MySQL form are recognised by their leading
    // keywords; everything else goes to the parser.
    match w(0) {
        // HANDLER t OPEN | READ ... | CLOSE: reads one table through a cursor.
        "HANDLER" => {
            let table = segment
                .split_whitespace()
                .nth(1)
                .map(normalize_raw_name)
                .unwrap_or_default();
            let mut s = read_stmt(Operation::Select);
            if !table.is_empty() {
                s.reads.push(table);
            }
            return Ok(vec![s]);
        }
        // LOAD DATA [LOCAL] INFILE ... INTO TABLE t / LOAD XML ...
        "LOAD" => {
            let mut s = write_stmt(Operation::Copy);
            if let Some(t) = raw_word_after_table(segment) {
                s.writes.push(t);
            }
            return Ok(vec![s]);
        }
        "PREPARE" if w(2) == "FROM" => return Ok(classify_prepare(segment, depth)),
        "EXECUTE" => return Ok(vec![opaque(Operation::Other)]),
        "DEALLOCATE" => return Ok(vec![read_stmt(Operation::Other)]),
        "DROP" if w(1) == "PREPARE" => return Ok(vec![read_stmt(Operation::Other)]),
        "DO" => {
            // DO expr: evaluates expressions for their side effects.
            return Ok(vec![write_stmt(Operation::Other)]);
        }
        "XA" => return Ok(vec![opaque(Operation::Other)]),
        // START TRANSACTION [WITH CONSISTENT SNAPSHOT] [, READ ONLY | READ WRITE]: sqlparser
        // does not know the snapshot form. Only these words are accepted here.
        "START"
            if w(1) == "TRANSACTION"
                && words.iter().skip(2).all(|x| {
                    matches!(
                        x.as_str(),
                        "WITH" | "CONSISTENT" | "SNAPSHOT" | "READ" | "ONLY" | "WRITE"
                    )
                })
                && segment
                    .chars()
                    .all(|c| c.is_alphanumeric() || c.is_whitespace() || c == ',' || c == '_') =>
        {
            return Ok(vec![read_stmt(Operation::Begin)]);
        }
        // MariaDB's SET STATEMENT var = value [, ...] FOR <statement>.
        "SET" if w(1) == "STATEMENT" => return classify_set_statement(segment, depth),
        // HELP 'topic': reads the server's help tables.
        "HELP" => return Ok(vec![read_stmt(Operation::Show)]),
        // CHECK TABLE / CHECK VIEW / CHECKSUM TABLE: report on tables. `FOR UPGRADE` may
        // rewrite a table's metadata.
        "CHECK" | "CHECKSUM" if matches!(w(1), "TABLE" | "TABLES" | "VIEW") => {
            if words.iter().any(|x| x == "UPGRADE") {
                return Ok(vec![write_stmt(Operation::Other)]);
            }
            let mut s = read_stmt(Operation::Show);
            s.reads = table_list_after(segment, 2)?;
            return Ok(vec![s]);
        }
        // LOCK TABLE[S] ... / LOCK INSTANCE FOR BACKUP: explicit locks block every writer.
        "LOCK" => {
            let mut s = write_stmt(Operation::Lock);
            if matches!(w(1), "TABLE" | "TABLES") {
                s.reads = lock_tables_names(segment);
            }
            return Ok(vec![s]);
        }
        _ => {}
    }
    // `LOCK IN SHARE MODE` is MySQL's older spelling of `FOR SHARE`, which sqlparser knows.
    let rewritten;
    let segment = match replace_lock_in_share_mode(segment) {
        Some(r) => {
            rewritten = r;
            rewritten.as_str()
        }
        None => segment,
    };
    let table_form;
    let segment = match super::table_statement_as_select(segment) {
        Some(select) => {
            table_form = select;
            table_form.as_str()
        }
        None => segment,
    };
    super::check_parse_bounds(segment)?;
    let dialect = MySqlDialect {};
    let parsed = match Parser::parse_sql(&dialect, segment) {
        Ok(p) => p,
        Err(e) => {
            // SHOW has many forms sqlparser does not know; without parentheses a SHOW cannot
            // call a function, so it only reads metadata.
            if w(0) == "SHOW" && !segment.contains('(') {
                return Ok(vec![read_stmt(Operation::Show)]);
            }
            return Err(e.to_string());
        }
    };
    if parsed.len() != 1 {
        return Err(format!(
            "expected one statement, the parser found {}",
            parsed.len()
        ));
    }
    let mut out = Vec::with_capacity(1);
    for stmt in &parsed {
        let mut s = classify_statement(stmt);
        // `SELECT ... INTO OUTFILE/DUMPFILE` writes a server file, whatever sqlparser made of it.
        if words.iter().any(|x| x == "OUTFILE" || x == "DUMPFILE") {
            s.writes_data = true;
            if s.operation == Operation::Select {
                s.operation = Operation::Copy;
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// `PREPARE s FROM 'text'`: the text is classified and flagged dynamic; `FROM @var` cannot be
/// seen at all.
fn classify_prepare(segment: &str, depth: usize) -> Vec<Statement> {
    let lower = segment.to_ascii_lowercase();
    let Some(from) = find_word(&lower, "from") else {
        return vec![opaque(Operation::Other)];
    };
    let rest = segment.get(from + 4..).unwrap_or("").trim();
    let quote = rest.chars().next();
    let inner = match quote {
        Some(q @ ('\'' | '"')) if rest.len() >= 2 && rest.ends_with(q) => {
            unescape(rest.get(1..rest.len() - 1).unwrap_or(""), q)
        }
        _ => return vec![opaque(Operation::Other)],
    };
    let c = classify_depth(&inner, depth + 1);
    if c.unparsed || c.statements.is_empty() {
        return vec![opaque(Operation::Other)];
    }
    c.statements
        .into_iter()
        .map(|mut s| {
            s.dynamic_sql = true;
            s
        })
        .collect()
}

/// `SET STATEMENT a = 1 [, b = 2] FOR <statement>`: the inner statement decides; the settings
/// apply to it alone. A setting of `sql_mode` is opaque whatever its value (the inner statement
/// could run SQL the server lexes under it); other settings are judged like `SET`.
fn classify_set_statement(segment: &str, depth: usize) -> Result<Vec<Statement>, String> {
    if depth > MAX_DEPTH {
        return Err("SET STATEMENT nested too deeply".into());
    }
    let Some(for_at) = top_level_word(segment, "FOR") else {
        return Err("SET STATEMENT without FOR".into());
    };
    let settings = segment.get(..for_at).unwrap_or("");
    let inner = segment.get(for_at + 3..).unwrap_or("").trim();
    let set_text = settings
        .trim_start()
        .get(3..)
        .unwrap_or("")
        .trim_start()
        .get(9..)
        .unwrap_or("");
    if inner.is_empty() || set_text.trim().is_empty() {
        return Err("SET STATEMENT without settings or statement".into());
    }
    let mut out = classify_segment(inner, depth + 1)?;
    if settings.to_ascii_lowercase().contains("sql_mode") {
        for s in &mut out {
            s.dynamic_sql = true;
            s.writes_data = true;
        }
        return Ok(out);
    }
    let settings_sql = format!("SET {set_text}");
    super::check_parse_bounds(&settings_sql)?;
    let parsed = Parser::parse_sql(&MySqlDialect {}, &settings_sql).map_err(|e| e.to_string())?;
    let [ast::Statement::Set(set)] = parsed.as_slice() else {
        return Err("SET STATEMENT settings that are not assignments".into());
    };
    let (writes, hidden) = classify_set(set);
    for s in &mut out {
        s.writes_data |= writes;
        s.dynamic_sql |= hidden;
    }
    Ok(out)
}

/// Byte offset of the first occurrence of `word` (upper-case) outside strings, quoted
/// identifiers and parentheses.
pub(crate) fn top_level_word(segment: &str, word: &str) -> Option<usize> {
    let bytes = segment.as_bytes();
    let mut depth = 0usize;
    let mut i = 0usize;
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'@';
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\'' | b'"' | b'`' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    if c == b'\\' && b != b'`' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if c == b {
                        if bytes.get(i) == Some(&b) {
                            i += 1;
                            continue;
                        }
                        break;
                    }
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ if is_word(b) => {
                let start = i;
                while bytes.get(i).is_some_and(|&c| is_word(c)) {
                    i += 1;
                }
                let w = segment.get(start..i).unwrap_or("");
                if depth == 0 && w.eq_ignore_ascii_case(word) {
                    return Some(start);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// `LOCK IN SHARE MODE` (outside strings) → `FOR SHARE`, or `None` when the text has none.
pub(crate) fn replace_lock_in_share_mode(segment: &str) -> Option<String> {
    let words = bare_words(segment);
    let has = words.windows(4).any(
        |p| matches!(p, [a, b, c, d] if a == "LOCK" && b == "IN" && c == "SHARE" && d == "MODE"),
    );
    if !has {
        return None;
    }
    let mut out = segment.to_owned();
    // Every occurrence, at any depth (a locking subquery locks too).
    while let Some(at) = nested_word(&out, "LOCK") {
        let rest = out.get(at..).unwrap_or("");
        let tail: Vec<&str> = rest.split_whitespace().take(4).collect();
        let spelled = tail.len() == 4
            && tail
                .iter()
                .zip(["LOCK", "IN", "SHARE", "MODE"])
                .all(|(a, b)| a.trim_end_matches([')', ';', ',']).eq_ignore_ascii_case(b));
        if !spelled {
            return None;
        }
        let mode_at = rest.to_ascii_uppercase().find("MODE")?;
        let end = at + mode_at + 4;
        out = format!(
            "{} FOR SHARE {}",
            out.get(..at).unwrap_or(""),
            out.get(end..).unwrap_or("")
        );
    }
    Some(out)
}

/// Like [`top_level_word`] but at any parenthesis depth.
fn nested_word(segment: &str, word: &str) -> Option<usize> {
    // Blank out parentheses (same byte length) so the top-level scan sees every depth.
    let flat: String = segment
        .chars()
        .map(|c| if c == '(' || c == ')' { ' ' } else { c })
        .collect();
    top_level_word(&flat, word)
}

/// Table names of `CHECK TABLE a, db.b [options]` starting at bare word `skip`.
fn table_list_after(segment: &str, skip: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let rest: Vec<&str> = segment.split_whitespace().skip(skip).collect();
    let joined = rest.join(" ");
    for part in joined.split(',') {
        let Some(name) = part.split_whitespace().next() else {
            return Err("CHECK TABLE without a table".into());
        };
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '.' | '`'))
        {
            return Err(format!("unexpected table name `{name}`"));
        }
        out.push(normalize_raw_name(name));
    }
    Ok(out)
}

/// `LOCK TABLES a READ, b AS x WRITE`: the table names (fail-closed users only need them for
/// rule objects; the statement is a lock whatever they are).
fn lock_tables_names(segment: &str) -> Vec<String> {
    let rest: Vec<&str> = segment.split_whitespace().skip(2).collect();
    rest.join(" ")
        .split(',')
        .filter_map(|p| p.split_whitespace().next())
        .map(normalize_raw_name)
        .collect()
}

fn find_word(lower: &str, word: &str) -> Option<usize> {
    let bytes = lower.as_bytes();
    let mut start = 0;
    while let Some(pos) = lower.get(start..)?.find(word) {
        let at = start + pos;
        let before = at == 0 || !bytes.get(at - 1).is_some_and(u8::is_ascii_alphanumeric);
        let after = !bytes
            .get(at + word.len())
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if before && after {
            return Some(at);
        }
        start = at + word.len();
    }
    None
}

fn raw_word_after_table(segment: &str) -> Option<String> {
    let mut it = segment.split_whitespace();
    while let Some(w) = it.next() {
        if w.eq_ignore_ascii_case("table") {
            return it.next().map(normalize_raw_name);
        }
    }
    None
}

/// `` `db`.`t` `` or `db.t` as written in raw text → `db.t` (lower-cased).
fn normalize_raw_name(raw: &str) -> String {
    raw.trim_end_matches([';', ',', '('])
        .replace('`', "")
        .to_lowercase()
}

pub(crate) fn object_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_lowercase(),
            ObjectNamePart::Function(f) => f.to_string().to_lowercase(),
        })
        .collect();
    parts.join(".")
}

/// What a walk over every query of a statement finds.
#[derive(Default)]
struct QueryFacts {
    /// Relations named anywhere, including `TABLE t` bodies (which sqlparser keeps as strings,
    /// outside `visit_relations`).
    relations: BTreeSet<String>,
    /// Some query has a locking clause (`FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`).
    locks: bool,
}

impl ast::Visitor for QueryFacts {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.insert(object_name(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        self.locks |= !query.locks.is_empty();
        table_bodies(&query.body, &mut self.relations);
        ControlFlow::Continue(())
    }
}

/// `TABLE t` bodies of a set expression (set operations included; nested queries are visited
/// on their own).
fn table_bodies(body: &SetExpr, out: &mut BTreeSet<String>) {
    match body {
        SetExpr::Table(t) => {
            let name = match (&t.schema_name, &t.table_name) {
                (Some(s), Some(n)) => format!("{s}.{n}"),
                (None, Some(n)) => n.clone(),
                // `TABLE` with no name: nothing we can attribute; keep it visible.
                _ => "?".to_owned(),
            };
            out.insert(name.to_lowercase());
        }
        SetExpr::SetOperation { left, right, .. } => {
            table_bodies(left, out);
            table_bodies(right, out);
        }
        _ => {}
    }
}

fn query_facts(node: &impl ast::Visit) -> QueryFacts {
    let mut facts = QueryFacts::default();
    let _ = node.visit(&mut facts);
    facts
}

pub(crate) fn relations(node: &impl ast::Visit) -> BTreeSet<String> {
    query_facts(node).relations
}

/// The names a statement's `WITH` clauses define (lower-cased), anywhere in it.
pub(crate) fn cte_names(node: &impl ast::Visit) -> BTreeSet<String> {
    struct Ctes(BTreeSet<String>);
    impl ast::Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.0.insert(cte.alias.name.value.to_lowercase());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(BTreeSet::new());
    let _ = node.visit(&mut ctes);
    ctes.0
}

fn functions(node: &impl ast::Visit) -> Vec<String> {
    let mut out = BTreeSet::new();
    let _ = visit_expressions(node, |e| {
        if let Expr::Function(f) = e {
            out.insert(object_name(&f.name));
        }
        ControlFlow::<()>::Continue(())
    });
    out.into_iter().collect()
}

/// Whether the query selects `INTO` something other than user variables (`@v` is session
/// state, like `SET @v = ...`; `INTO OUTFILE/DUMPFILE` is caught by its keywords).
fn select_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.into.as_ref().is_some_and(|into| {
            into.table
                || into.temporary
                || into.unlogged
                || into.targets.is_empty()
                || !into.targets.iter().all(is_user_variable)
        }),
        SetExpr::Query(q) => select_into(&q.body),
        SetExpr::SetOperation { left, right, .. } => select_into(left) || select_into(right),
        _ => false,
    }
}

fn is_user_variable(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => {
            i.quote_style.is_none() && i.value.starts_with('@') && !i.value.starts_with("@@")
        }
        _ => false,
    }
}

fn classify_statement(stmt: &ast::Statement) -> Statement {
    use ast::Statement as S;
    let facts = query_facts(stmt);
    let all = facts.relations;
    let funcs = functions(stmt);
    let mut writes: BTreeSet<String> = BTreeSet::new();
    let mut has_where = true;
    let mut dynamic = false;
    let (operation, mut writes_data) = match stmt {
        S::Query(q) => {
            // `WITH ... DELETE/UPDATE/INSERT`: the query wraps a data-modifying statement.
            let mut nested = None;
            let _ = ast::visit_statements(&**q, |s| {
                if !matches!(s, S::Query(_)) && nested.is_none() {
                    nested = Some(s.clone());
                }
                ControlFlow::<()>::Continue(())
            });
            if let Some(inner) = nested {
                let mut s = classify_statement(&inner);
                s.reads = all
                    .difference(&s.writes.iter().cloned().collect())
                    .cloned()
                    .collect();
                s.writes_data = true;
                return s;
            }
            if select_into(&q.body) {
                (Operation::Create, true)
            } else if facts.locks {
                // Row locks held until the transaction ends block every writer.
                (Operation::Lock, true)
            } else {
                (Operation::Select, false)
            }
        }
        S::Insert(ins) => {
            if let ast::TableObject::TableName(n) = &ins.table {
                writes.insert(object_name(n));
            }
            (Operation::Insert, true)
        }
        S::Update(u) => {
            writes.extend(relations(&u.table));
            has_where = u.selection.is_some();
            (Operation::Update, true)
        }
        S::Delete(d) => {
            if d.tables.is_empty() {
                let from = match &d.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                for twj in from {
                    writes.extend(relations(&twj.relation));
                }
            } else {
                writes.extend(d.tables.iter().map(object_name));
            }
            has_where = d.selection.is_some();
            (Operation::Delete, true)
        }
        S::Merge(_) => (Operation::Merge, true),
        S::CreateTable(c) => {
            writes.insert(object_name(&c.name));
            (Operation::Create, true)
        }
        S::CreateView(c) => {
            writes.insert(object_name(&c.name));
            (Operation::Create, true)
        }
        S::CreateIndex(c) => {
            writes.insert(object_name(&c.table_name));
            (Operation::Create, true)
        }
        S::CreateVirtualTable { .. }
        | S::CreateRole(_)
        | S::CreateSecret { .. }
        | S::CreateServer(_)
        | S::CreatePolicy(_)
        | S::CreateConnector(_)
        | S::CreateSchema { .. }
        | S::CreateDatabase { .. }
        | S::CreateFunction(_)
        | S::CreateTrigger(_)
        | S::CreateProcedure { .. }
        | S::CreateMacro { .. }
        | S::CreateSequence { .. }
        | S::CreateDomain(_)
        | S::CreateType { .. }
        | S::CreateExtension(_) => (Operation::Create, true),
        S::AlterTable(a) => {
            writes.insert(object_name(&a.name));
            (Operation::Alter, true)
        }
        S::RenameTable(r) => {
            for t in r {
                writes.insert(object_name(&t.old_name));
                writes.insert(object_name(&t.new_name));
            }
            (Operation::Alter, true)
        }
        S::AlterSchema(_)
        | S::AlterIndex { .. }
        | S::AlterView { .. }
        | S::AlterFunction(_)
        | S::AlterType(_)
        | S::AlterRole { .. }
        | S::AlterPolicy(_)
        | S::AlterConnector { .. }
        | S::AlterSession { .. } => (Operation::Alter, true),
        S::Drop { names, .. } => {
            writes.extend(names.iter().map(object_name));
            (Operation::Drop, true)
        }
        S::DropFunction(_)
        | S::DropDomain(_)
        | S::DropProcedure { .. }
        | S::DropSecret { .. }
        | S::DropPolicy(_)
        | S::DropConnector { .. }
        | S::DropTrigger(_)
        | S::DropExtension(_) => (Operation::Drop, true),
        S::Truncate(t) => {
            writes.extend(t.table_names.iter().map(|n| object_name(&n.name)));
            (Operation::Truncate, true)
        }
        S::Grant(_) => (Operation::Grant, true),
        S::Revoke(_) => (Operation::Revoke, true),
        S::Set(set) => {
            let (write, hidden) = classify_set(set);
            dynamic = hidden;
            (Operation::Set, write)
        }
        S::ShowFunctions { .. }
        | S::ShowVariable { .. }
        | S::ShowStatus { .. }
        | S::ShowVariables { .. }
        | S::ShowCreate { .. }
        | S::ShowColumns { .. }
        | S::ShowCatalogs { .. }
        | S::ShowDatabases { .. }
        | S::ShowProcessList { .. }
        | S::ShowSchemas { .. }
        | S::ShowCharset(_)
        | S::ShowObjects(_)
        | S::ShowTables { .. }
        | S::ShowViews { .. }
        | S::ShowCollation { .. }
        | S::ExplainTable { .. } => (Operation::Show, false),
        S::Use(_) => (Operation::Set, false),
        S::StartTransaction { .. } => (Operation::Begin, false),
        S::Commit { .. } => (Operation::Commit, false),
        S::Rollback { .. } => (Operation::Rollback, false),
        S::Savepoint { .. } | S::ReleaseSavepoint { .. } | S::UnlockTables => {
            (Operation::Other, false)
        }
        S::Explain {
            analyze, statement, ..
        } => {
            if *analyze {
                // EXPLAIN ANALYZE runs the statement.
                return classify_statement(statement);
            }
            let inner = classify_statement(statement);
            let mut s = read_stmt(Operation::Select);
            s.reads = inner.reads.into_iter().chain(inner.writes).collect();
            s.functions = funcs.clone();
            s.writes_data = funcs.iter().any(|f| !is_read_only(f));
            return s;
        }
        S::Call(_) => {
            dynamic = true;
            (Operation::Call, true)
        }
        S::Prepare { statement, .. } => {
            let mut s = classify_statement(statement);
            s.dynamic_sql = true;
            return s;
        }
        S::Execute { .. } => {
            dynamic = true;
            (Operation::Other, true)
        }
        S::Deallocate { .. } => (Operation::Other, false),
        S::LoadData { table_name, .. } => {
            writes.insert(object_name(table_name));
            (Operation::Copy, true)
        }
        // KILL, LOCK TABLES, FLUSH, OPTIMIZE/ANALYZE TABLE, INSTALL, ... and every statement
        // not known to be harmless: may write.
        _ => (Operation::Other, true),
    };
    if funcs.iter().any(|f| !is_read_only(f)) {
        writes_data = true;
    }
    Statement {
        operation,
        reads: all.difference(&writes).cloned().collect(),
        writes: writes.into_iter().collect(),
        has_where,
        writes_data,
        dynamic_sql: dynamic,
        functions: funcs,
    }
}

/// `SET ...` → (writes, hides SQL). Session variables are harmless, except the ones that change
/// how the server lexes later statements (`sql_mode` with `NO_BACKSLASH_ESCAPES`/`ANSI_QUOTES`,
/// the client character set) — we could no longer classify what follows — and global scope,
/// which changes the server for everyone.
fn classify_set(set: &ast::Set) -> (bool, bool) {
    use ast::Set;
    match set {
        Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => assignment(scope.as_ref(), variable, values.iter()),
        Set::MultipleAssignments { assignments } => {
            let mut out = (false, false);
            for a in assignments {
                let (w, d) = assignment(a.scope.as_ref(), &a.name, std::iter::once(&a.value));
                out = (out.0 || w, out.1 || d);
            }
            out
        }
        Set::ParenthesizedAssignments { .. } => (true, true),
        Set::SetNames { charset_name, .. } => {
            let ok = SAFE_CHARSETS.contains(&charset_name.value.to_lowercase().as_str());
            (!ok, !ok)
        }
        Set::SetNamesDefault {} | Set::SetTransaction { .. } | Set::SetTimeZone { .. } => {
            (false, false)
        }
        // SET ROLE changes privileges; other forms are not MySQL's: fail closed.
        _ => (true, true),
    }
}

fn assignment<'a>(
    scope: Option<&ast::ContextModifier>,
    variable: &ObjectName,
    values: impl Iterator<Item = &'a Expr>,
) -> (bool, bool) {
    let name = object_name(variable);
    let global = matches!(scope, Some(ast::ContextModifier::Global))
        || name.starts_with("@@global.")
        || name.starts_with("@@persist");
    let bare = name
        .trim_start_matches('@')
        .trim_start_matches("session.")
        .trim_start_matches("local.")
        .trim_start_matches("global.");
    let values: Vec<&Expr> = values.collect();
    if name.starts_with('@') && !name.starts_with("@@") {
        // A user variable: session-local data. Its value may come from a subquery.
        let writes = values
            .iter()
            .any(|v| functions(*v).iter().any(|f| !is_read_only(f)));
        return (writes, false);
    }
    let hidden = match bare {
        "sql_mode" => !sql_mode_is_safe(&values),
        "character_set_client" | "character_set_connection" | "names" | "charset" => {
            !values.iter().all(|v| charset_value_is_safe(v))
        }
        _ => false,
    };
    let writes = global
        || hidden
        || values
            .iter()
            .any(|v| functions(*v).iter().any(|f| !is_read_only(f)));
    (writes, hidden)
}

/// A new `sql_mode` is accepted when it is built only from string literals, the session's
/// current `@@sql_mode` and `CONCAT`, and the flags it spells are all on
/// [`super::session::SAFE_SQL_MODES`] (an allow-list: `ORACLE`, `MSSQL`, `ANSI_QUOTES`, ... and
/// anything unknown are refused).
pub(crate) fn sql_mode_is_safe(values: &[&Expr]) -> bool {
    let mut literals = String::new();
    fn collect(e: &Expr, out: &mut String) -> bool {
        match e {
            Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                    out.push_str(s);
                    true
                }
                _ => false,
            },
            // `DEFAULT` is the global mode, which another session may have changed: not
            // provably supported. `@@global.sql_mode` likewise.
            Expr::Identifier(i) => {
                let n = i.value.to_lowercase();
                if n == "@@sql_mode" || n == "@@session.sql_mode" {
                    out.push(',');
                    true
                } else {
                    false
                }
            }
            Expr::CompoundIdentifier(parts) => {
                let n: Vec<String> = parts.iter().map(|p| p.value.to_lowercase()).collect();
                if n.join(".") == "@@session.sql_mode" {
                    out.push(',');
                    true
                } else {
                    false
                }
            }
            Expr::Nested(inner) => collect(inner, out),
            // `(SELECT CONCAT(@@sql_mode, ',X'))`, as sqlx sends on connect.
            Expr::Subquery(q) => match &*q.body {
                SetExpr::Select(s) if s.from.is_empty() && s.projection.len() == 1 => {
                    match s.projection.first() {
                        Some(ast::SelectItem::UnnamedExpr(e)) => collect(e, out),
                        _ => false,
                    }
                }
                _ => false,
            },
            Expr::Function(f) if object_name(&f.name) == "concat" => {
                let ast::FunctionArguments::List(list) = &f.args else {
                    return false;
                };
                list.args.iter().all(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => collect(e, out),
                    _ => false,
                })
            }
            _ => false,
        }
    }
    if !values.iter().all(|v| collect(v, &mut literals)) {
        return false;
    }
    // Every flag the pieces spell, joined in order with the current mode standing for a
    // separator (the current mode is itself supported: the adapter checks it), must be on the
    // allow-list: a piece that is not a whole supported flag could join the current mode's
    // last flag or another piece into one that is not.
    sql_mode_is_supported(&literals)
}

fn charset_value_is_safe(v: &Expr) -> bool {
    let name = match v {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            _ => return false,
        },
        Expr::Identifier(i) => i.value.clone(),
        _ => return false,
    };
    SAFE_CHARSETS.contains(&name.to_lowercase().as_str())
}

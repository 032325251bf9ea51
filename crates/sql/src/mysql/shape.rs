//! What a MySQL statement's result columns can derive from, for masking.
//!
//! MySQL describes every result column with `org_table`/`org_name` (the base table and column
//! behind an alias). That metadata is trustworthy only for a plain `SELECT` over base tables:
//! for derived tables MariaDB reports the alias (`org_table = t`) or even the base table with
//! the *alias* as the column (`org_table = customers, org_name = x` for a materialised
//! `(SELECT email AS x FROM customers) t`), views report the view, `UNION` reports the first
//! arm's name with no table. So statements are sorted into:
//!
//! - [`ResultKind::Clean`]: cannot return table data (SHOW, EXPLAIN, SET, transaction control);
//! - [`ResultKind::Simple`]: one `SELECT` whose `FROM` items are plain relations, no `WITH`, no
//!   set operation. Column metadata is trusted for direct columns of base tables, and each
//!   projection expression is traced to the columns it names ([`Item`]);
//! - [`ResultKind::Complex`]: anything else that may return rows (derived tables, CTEs,
//!   `UNION`, `RETURNING`, `HANDLER`): columns not named by a rule are of unknown lineage;
//! - [`ResultKind::Opaque`]: rows whose origin the text does not show (`CALL`, `EXECUTE`,
//!   unparsable text).
//!
//! The adapter combines this with the upstream's catalog (which relations are base tables,
//! views and what they read) to decide per column (fail closed).

use super::classify::{
    bare_words, object_name, relations, replace_lock_in_share_mode, top_level_word,
};
use super::functions::is_read_only;
use super::lexer::lex;
use sqlparser::ast::{self, visit_expressions, Expr, SelectItem, SetExpr, TableFactor};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResultKind {
    Clean,
    Simple,
    Complex,
    Opaque,
}

/// One projection item of a [`ResultKind::Simple`] statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `*` or `t.*`: expands to direct columns (described by the server's metadata).
    Wildcard,
    /// An expression and the columns it references: `(qualifier, column)`, lower-cased.
    /// `opaque`: it also contains something whose origin is not visible (a subquery, a user
    /// variable, a function not known to be built-in and pure).
    Expr {
        refs: Vec<(Option<String>, String)>,
        opaque: bool,
    },
}

/// A `FROM` relation of a simple statement: the name as written (`db.t` or `t`) and the name
/// its columns are qualified with (the alias, else the table name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromRelation {
    pub relation: String,
    pub qualifier: String,
}

#[derive(Debug, Clone)]
pub struct ResultShape {
    pub kind: ResultKind,
    /// Every relation the text names anywhere (tables, views, CTE names, in sub-queries too),
    /// lower-cased, `db.t` when qualified.
    pub relations: BTreeSet<String>,
    /// The names its `WITH` clauses define (lower-cased): among `relations`, one of these that
    /// the catalog does not have is the CTE, not a relation created since (round-15 review,
    /// F2). One the catalog has may be either, and is judged as the relation.
    pub ctes: BTreeSet<String>,
    /// For [`ResultKind::Simple`]: the projection in order.
    pub items: Vec<Item>,
    /// For [`ResultKind::Simple`]: the `FROM` relations.
    pub from: Vec<FromRelation>,
    /// The text reads or sets user variables (`@v`), which carry values between statements:
    /// their origin is not visible in this text.
    pub variables: bool,
    /// The user variables it names, lower-cased without the `@` (MySQL compares them
    /// case-insensitively). `""` stands for a quoted name (`` @`a b` ``, `@'x'`) not read here:
    /// it may be any variable.
    pub variable_names: BTreeSet<String>,
    /// The text runs SQL it does not show (`PREPARE`, `EXECUTE`, `EXECUTE IMMEDIATE`, `CALL`):
    /// a syntax error may then quote that SQL rather than this text.
    pub dynamic: bool,
    /// Some statement is `SHOW WARNINGS` or `SHOW ERRORS`: its `Message` column holds texts
    /// of earlier statements' conditions, which may echo values.
    pub diagnostics: bool,
}

impl ResultShape {
    fn of(kind: ResultKind) -> ResultShape {
        ResultShape {
            kind,
            relations: BTreeSet::new(),
            ctes: BTreeSet::new(),
            items: Vec::new(),
            from: Vec::new(),
            variables: false,
            variable_names: BTreeSet::new(),
            dynamic: false,
            diagnostics: false,
        }
    }
}

/// The shape of `sql` (one or more statements; several make it at least `Complex`).
pub fn result_shape(sql: &str) -> ResultShape {
    let Ok(lexed) = lex(sql) else {
        return ResultShape::of(ResultKind::Opaque);
    };
    let mut shapes: Vec<ResultShape> = lexed.segments.iter().map(|s| segment(s)).collect();
    if shapes.len() == 1 {
        if let Some(s) = shapes.pop() {
            return s;
        }
    }
    let mut out = ResultShape::of(ResultKind::Clean);
    for s in shapes {
        let kind = if s.kind == ResultKind::Simple {
            ResultKind::Complex
        } else {
            s.kind
        };
        out.kind = out.kind.max(kind);
        out.relations.extend(s.relations);
        out.variables |= s.variables;
        out.variable_names.extend(s.variable_names);
        out.diagnostics |= s.diagnostics;
        out.dynamic |= s.dynamic;
    }
    out
}

fn segment(text: &str) -> ResultShape {
    let words = bare_words(text);
    let mut s = segment_words(text, &words);
    s.variable_names = words
        .iter()
        .filter(|w| w.starts_with('@') && !w.starts_with("@@"))
        .map(|w| w.trim_start_matches('@').to_lowercase())
        .collect();
    s.variables = !s.variable_names.is_empty();
    if s.variable_names.contains("") {
        // A quoted variable name (`` @`c` ``, `@'c'`): sqlparser does not keep the `@`, so the
        // item would look like a column named `c`. Which variable it is, and which result
        // column it feeds, is not known: every column is unknown (round-13 review, F1).
        s.kind = ResultKind::Opaque;
    }
    s.dynamic = words
        .iter()
        .any(|w| matches!(w.as_str(), "PREPARE" | "EXECUTE" | "IMMEDIATE" | "CALL"));
    s.diagnostics = words.first().is_some_and(|w| w == "SHOW")
        && words.iter().any(|w| w == "WARNINGS" || w == "ERRORS");
    s
}

fn segment_words(text: &str, words: &[String]) -> ResultShape {
    let w0 = words.first().map(String::as_str).unwrap_or("");
    match w0 {
        "HANDLER" => {
            let mut s = ResultShape::of(ResultKind::Complex);
            if let Some(t) = text.split_whitespace().nth(1) {
                s.relations.insert(t.replace('`', "").to_lowercase());
            }
            return s;
        }
        "EXECUTE" | "CALL" | "XA" => return ResultShape::of(ResultKind::Opaque),
        "PREPARE" | "DEALLOCATE" | "DO" | "LOAD" | "HELP" | "LOCK" | "UNLOCK" => {
            return ResultShape::of(ResultKind::Clean)
        }
        // CHECK/CHECKSUM TABLE answer with table names, status text and checksums.
        "CHECK" | "CHECKSUM" => return ResultShape::of(ResultKind::Clean),
        "START" if words.get(1).is_some_and(|w| w == "TRANSACTION") => {
            return ResultShape::of(ResultKind::Clean)
        }
        // SET STATEMENT ... FOR <statement>: the inner statement answers.
        "SET" if words.get(1).is_some_and(|w| w == "STATEMENT") => {
            return match top_level_word(text, "FOR") {
                Some(at) => {
                    let inner = text.get(at + 3..).unwrap_or("").trim();
                    let inner_words = bare_words(inner);
                    // One level only: nesting is bounded by refusing it.
                    if inner_words.first().is_some_and(|w| w == "SET")
                        && inner_words.get(1).is_some_and(|w| w == "STATEMENT")
                    {
                        return ResultShape::of(ResultKind::Opaque);
                    }
                    segment_words(inner, &inner_words)
                }
                None => ResultShape::of(ResultKind::Opaque),
            };
        }
        _ => {}
    }
    let rewritten = replace_lock_in_share_mode(text);
    let text = rewritten.as_deref().unwrap_or(text);
    let table_form = super::table_statement_as_select(text);
    let text = table_form.as_deref().unwrap_or(text);
    if super::check_parse_bounds(text).is_err() {
        return ResultShape::of(ResultKind::Opaque);
    }
    let parsed = match Parser::parse_sql(&MySqlDialect {}, text) {
        Ok(p) => p,
        Err(_) if w0 == "SHOW" && !text.contains('(') => return ResultShape::of(ResultKind::Clean),
        Err(_) => return ResultShape::of(ResultKind::Opaque),
    };
    let [stmt] = parsed.as_slice() else {
        return ResultShape::of(ResultKind::Opaque);
    };
    use ast::Statement as S;
    let kind = match stmt {
        S::Query(q) => {
            let mut s = ResultShape::of(ResultKind::Complex);
            s.relations = relations(stmt);
            s.ctes = crate::mysql::classify::cte_names(stmt);
            if let Some((items, from)) = simple(q) {
                s.kind = ResultKind::Simple;
                s.items = items;
                s.from = from;
            }
            return s;
        }
        S::Call(_) | S::Execute { .. } => ResultKind::Opaque,
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
        | S::ExplainTable { .. }
        | S::Explain { .. }
        | S::Set(_)
        | S::Use(_)
        | S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. }
        | S::Prepare { .. }
        | S::Deallocate { .. } => ResultKind::Clean,
        // INSERT/DELETE ... RETURNING, and whatever else may answer with rows.
        _ => ResultKind::Complex,
    };
    let mut s = ResultShape::of(kind);
    s.relations = relations(stmt);
    s.ctes = crate::mysql::classify::cte_names(stmt);
    s
}

type Simple = (Vec<Item>, Vec<FromRelation>);

fn simple(q: &ast::Query) -> Option<Simple> {
    if q.with.is_some() {
        return None;
    }
    let SetExpr::Select(sel) = &*q.body else {
        return None;
    };
    let mut from = Vec::new();
    for twj in &sel.from {
        plain(&twj.relation, &mut from)?;
        for j in &twj.joins {
            plain(&j.relation, &mut from)?;
        }
    }
    let mut items = Vec::with_capacity(sel.projection.len());
    for p in &sel.projection {
        items.push(match p {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Item::Wildcard,
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => expr_item(e),
            // Several output columns from one item: positions are no longer one per item.
            _ => return None,
        });
    }
    Some((items, from))
}

fn plain(f: &TableFactor, out: &mut Vec<FromRelation>) -> Option<()> {
    match f {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none() => {
            let relation = object_name(name);
            let qualifier = match alias {
                Some(a) => a.name.value.to_lowercase(),
                None => relation.rsplit('.').next().unwrap_or(&relation).to_owned(),
            };
            out.push(FromRelation {
                relation,
                qualifier,
            });
            Some(())
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => {
            plain(&table_with_joins.relation, out)?;
            for j in &table_with_joins.joins {
                plain(&j.relation, out)?;
            }
            Some(())
        }
        _ => None,
    }
}

fn expr_item(e: &Expr) -> Item {
    let mut refs = Vec::new();
    let mut opaque = false;
    let _ = visit_expressions(e, |x| {
        match x {
            Expr::Identifier(i) => {
                if i.value.starts_with('@') {
                    // A user variable may hold any value read earlier.
                    opaque |= !i.value.starts_with("@@");
                } else {
                    refs.push((None, i.value.to_lowercase()));
                }
            }
            Expr::CompoundIdentifier(parts) => {
                let names: Vec<String> = parts.iter().map(|p| p.value.to_lowercase()).collect();
                match names.as_slice() {
                    [first, ..] if first.starts_with("@@") => {}
                    [first, ..] if first.starts_with('@') => opaque = true,
                    [col] => refs.push((None, col.clone())),
                    [.., table, col] => refs.push((Some(table.clone()), col.clone())),
                    [] => {}
                }
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => opaque = true,
            Expr::Function(f) if !is_read_only(&object_name(&f.name)) => opaque = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    Item::Expr { refs, opaque }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let k = |s: &str| result_shape(s).kind;
        assert_eq!(k("select email from customers c"), ResultKind::Simple);
        assert_eq!(
            k("select * from a join b on a.id = b.id"),
            ResultKind::Simple
        );
        assert_eq!(
            k("select x from (select email x from c) t"),
            ResultKind::Complex
        );
        assert_eq!(
            k("with q as (select 1) select * from q"),
            ResultKind::Complex
        );
        assert_eq!(
            k("select a from t union select b from u"),
            ResultKind::Complex
        );
        assert_eq!(k("select 1; select 2"), ResultKind::Complex);
        assert_eq!(k("call p()"), ResultKind::Opaque);
        assert_eq!(k("execute s"), ResultKind::Opaque);
        assert_eq!(k("show tables"), ResultKind::Clean);
        assert_eq!(k("select from where"), ResultKind::Opaque);
        assert_eq!(k("/*! select email from c */"), ResultKind::Simple);
        assert_eq!(k("delete from c returning email"), ResultKind::Complex);
    }

    #[test]
    fn items() {
        let s =
            result_shape("select count(*), upper(c.email), @x, (select 1), f(id), * from cust c");
        assert_eq!(s.from[0].qualifier, "c");
        assert_eq!(
            s.items[0],
            Item::Expr {
                refs: vec![],
                opaque: false
            }
        );
        assert_eq!(
            s.items[1],
            Item::Expr {
                refs: vec![(Some("c".into()), "email".into())],
                opaque: false
            }
        );
        assert!(matches!(s.items[2], Item::Expr { opaque: true, .. }));
        assert!(matches!(s.items[3], Item::Expr { opaque: true, .. }));
        assert!(matches!(s.items[4], Item::Expr { opaque: true, .. }));
        assert_eq!(s.items[5], Item::Wildcard);
        assert!(result_shape("select (select email from c)")
            .relations
            .contains("c"));
        assert!(result_shape("select @v").variables);
        assert!(!result_shape("select @@version, 'a@b'").variables);
        let names = result_shape("set @A = 1; select @b, @`c d`, @@x").variable_names;
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["", "a", "b"]);
        // Round 13: a quoted variable name cannot be told from a column: every column unknown.
        for sql in ["select @`c`, @`e`", "select @'c'", "select @\"c\" as x"] {
            assert_eq!(result_shape(sql).kind, ResultKind::Opaque, "{sql}");
        }
        assert_ne!(result_shape("select @c").kind, ResultKind::Opaque);
    }
}

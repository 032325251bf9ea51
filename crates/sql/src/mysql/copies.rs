//! What a MySQL statement stores into tables, for masking: a session under column masking must
//! not copy masked values into a table (a `CREATE TEMPORARY TABLE … AS SELECT` even shadows a
//! clean base table of the same name), where masking could no longer follow them. PostgreSQL
//! does the same through lineage (`lineage::StatementLineage::Unmaskable`).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, Assignment, Expr, OnInsert, SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

/// The sources of the values a statement writes into tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CopySources {
    /// Column names (the last part, lower-cased) read by the written expressions.
    pub columns: BTreeSet<String>,
    /// Queries whose rows or values are written (`INSERT … SELECT`, `CREATE TABLE … AS
    /// SELECT`, a sub-query in a `SET`), as SQL text.
    pub queries: Vec<String>,
    /// User variables (lower-cased, without `@`) read by the written expressions.
    pub variables: BTreeSet<String>,
    /// The statement could not be read: treat everything as a source.
    pub opaque: bool,
}

/// The sources of what `sql` writes into tables; `None` when it writes no values taken from
/// data (a plain `SELECT`, a `DELETE`, DDL without a query).
pub fn copy_sources(sql: &str) -> Option<CopySources> {
    let statements = match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(s) => s,
        Err(_) => {
            return Some(CopySources {
                opaque: true,
                ..CopySources::default()
            })
        }
    };
    let mut out = CopySources::default();
    let mut writes = false;
    for statement in &statements {
        match statement {
            Statement::Insert(insert) => {
                writes = true;
                if let Some(source) = &insert.source {
                    match source.body.as_ref() {
                        SetExpr::Values(values) => {
                            for row in &values.rows {
                                for e in &row.content {
                                    expression(e, &mut out);
                                }
                            }
                        }
                        _ => out.queries.push(source.to_string()),
                    }
                }
                assignments(&insert.assignments, &mut out);
                if let Some(OnInsert::DuplicateKeyUpdate(a)) = &insert.on {
                    assignments(a, &mut out);
                }
            }
            Statement::Update(update) => {
                writes = true;
                assignments(&update.assignments, &mut out);
            }
            Statement::CreateTable(create) => {
                if let Some(query) = &create.query {
                    writes = true;
                    out.queries.push(query.to_string());
                }
            }
            _ => {}
        }
    }
    writes.then_some(out)
}

fn assignments(list: &[Assignment], out: &mut CopySources) {
    for a in list {
        expression(&a.value, out);
    }
}

fn expression(e: &Expr, out: &mut CopySources) {
    let _ = visit_expressions(e, |e| {
        match e {
            Expr::Identifier(i) => name(&i.value, out),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    name(&last.value, out);
                }
            }
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => out.queries.push(q.to_string()),
            Expr::InSubquery { subquery, .. } => out.queries.push(subquery.to_string()),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

fn name(value: &str, out: &mut CopySources) {
    match value.strip_prefix('@') {
        Some(var) => {
            out.variables.insert(var.trim_matches('`').to_lowercase());
        }
        None => {
            out.columns.insert(value.to_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(sql: &str) -> CopySources {
        copy_sources(sql).unwrap_or_default()
    }

    #[test]
    fn written_values_are_traced_to_columns_queries_and_variables() {
        assert_eq!(copy_sources("select secret from t"), None);
        assert_eq!(copy_sources("delete from t where secret = 'x'"), None);
        assert!(
            sources("create temporary table x as select secret from t").queries[0]
                .contains("secret")
        );
        assert!(!sources("insert into x select id from t").queries.is_empty());
        let u = sources("update t set name = upper(t.secret), n = 1 where secret = 'x'");
        assert_eq!(u.columns, BTreeSet::from(["secret".to_owned()]));
        let v = sources("insert into t (a) values (@v), (concat(@`w`, 'x'))");
        assert!(v.variables.contains("v"), "{v:?}");
        let s = sources("update t set a = (select secret from s limit 1)");
        assert_eq!(s.queries.len(), 1);
        let d = sources("insert into t (a) values (1) on duplicate key update a = secret");
        assert!(d.columns.contains("secret"));
        assert!(sources("insert into t values (").opaque);
    }
}

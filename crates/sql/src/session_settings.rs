//! Which session settings a PostgreSQL statement changes, read from the parse tree.
//!
//! Some settings change how the server reads every later statement (`client_encoding`) or what
//! the session may do (`default_transaction_read_only`), so an adapter must know every way a
//! statement can set them: `SET`, `SET LOCAL`, `SET NAMES`, `RESET`, `RESET ALL`,
//! `SET … TO DEFAULT`, and a `set_config(name, value, is_local)` call anywhere in the tree. A
//! value that is not a literal (a `set_config` argument computed at run time) is
//! [`SettingValue::Unknown`]; a setting name that is not a literal is the wildcard `*`.
//!
//! `pg_query`'s node iterator does not descend into every node type, so a caller that must not
//! miss a `set_config` call compares [`SettingChange::via_set_config`] entries with the
//! classifier's function list (which walks every field) and fails closed when they disagree.

use pg_query::protobuf::{a_const, VariableSetKind};
use pg_query::NodeRef;

/// What a statement sets a setting to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    /// A literal value, as text (`'SJIS'`, `on`, `rt, pg_catalog`).
    Literal(String),
    /// Back to the session default (`RESET`, `TO DEFAULT`).
    Default,
    /// Computed at run time: nobody can tell before it runs.
    Unknown,
}

/// One setting change. `name` is lower-case; `*` stands for "any setting" (`RESET ALL`, a
/// `set_config` whose name is computed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    pub name: String,
    pub value: SettingValue,
    /// From a `set_config(…)` call rather than a `SET`/`RESET` statement.
    pub via_set_config: bool,
}

impl SettingChange {
    /// Whether this change may concern `setting` (lower-case).
    pub fn concerns(&self, setting: &str) -> bool {
        self.name == "*" || self.name == setting
    }
}

/// Every setting change in `sql`. `Err` when the text does not parse (the caller fails closed).
pub fn pg_setting_changes(sql: &str) -> Result<Vec<SettingChange>, String> {
    crate::check_parse_bounds(sql)?;
    let parsed = std::panic::catch_unwind(|| pg_query::parse(sql, 0))
        .map_err(|_| "the SQL parser panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (node, _, _, _) in parsed.protobuf.nodes() {
        match node {
            NodeRef::VariableSetStmt(s) => variable_set(s, &mut out),
            NodeRef::FuncCall(f) => {
                let name: Vec<&str> = f
                    .funcname
                    .iter()
                    .filter_map(|n| match &n.node {
                        Some(pg_query::NodeEnum::String(s)) => Some(s.sval.as_str()),
                        _ => None,
                    })
                    .collect();
                let is_set_config = match name.as_slice() {
                    [n] | ["pg_catalog", n] => n.eq_ignore_ascii_case("set_config"),
                    _ => false,
                };
                if is_set_config {
                    let setting = f.args.first().and_then(string_const);
                    let value = f.args.get(1).and_then(string_const);
                    out.push(SettingChange {
                        name: setting.map_or_else(|| "*".to_owned(), |s| s.to_ascii_lowercase()),
                        value: value.map_or(SettingValue::Unknown, SettingValue::Literal),
                        via_set_config: true,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn variable_set(s: &pg_query::protobuf::VariableSetStmt, out: &mut Vec<SettingChange>) {
    let kind = VariableSetKind::try_from(s.kind).unwrap_or(VariableSetKind::Undefined);
    let name = s.name.to_ascii_lowercase();
    // `SET NAMES 'x'` is `client_encoding`.
    let name = if name == "client_encoding" || name == "names" {
        "client_encoding".to_owned()
    } else {
        name
    };
    let value = match kind {
        VariableSetKind::VarSetValue => {
            let parts: Vec<String> = s.args.iter().filter_map(arg_text).collect();
            if parts.len() == s.args.len() {
                SettingValue::Literal(parts.join(", "))
            } else {
                SettingValue::Unknown
            }
        }
        VariableSetKind::VarSetDefault | VariableSetKind::VarReset => SettingValue::Default,
        VariableSetKind::VarResetAll => {
            out.push(SettingChange {
                name: "*".to_owned(),
                value: SettingValue::Default,
                via_set_config: false,
            });
            return;
        }
        // SET TRANSACTION / SESSION CHARACTERISTICS (VarSetMulti), SET … FROM CURRENT.
        _ => SettingValue::Unknown,
    };
    out.push(SettingChange {
        name,
        value,
        via_set_config: false,
    });
}

/// A SET argument as text: a string, a number, or a bare word (`SET x = on`).
fn arg_text(node: &pg_query::protobuf::Node) -> Option<String> {
    match node.node.as_ref()? {
        pg_query::NodeEnum::AConst(c) => match c.val.as_ref()? {
            a_const::Val::Sval(s) => Some(s.sval.clone()),
            a_const::Val::Ival(i) => Some(i.ival.to_string()),
            a_const::Val::Fval(f) => Some(f.fval.clone()),
            a_const::Val::Boolval(b) => Some(b.boolval.to_string()),
            a_const::Val::Bsval(b) => Some(b.bsval.clone()),
        },
        pg_query::NodeEnum::String(s) => Some(s.sval.clone()),
        _ => None,
    }
}

/// A `set_config` argument that is a string literal (possibly cast, `'x'::text`).
fn string_const(node: &pg_query::protobuf::Node) -> Option<String> {
    match node.node.as_ref()? {
        pg_query::NodeEnum::AConst(c) => match c.val.as_ref()? {
            a_const::Val::Sval(s) => Some(s.sval.clone()),
            _ => None,
        },
        pg_query::NodeEnum::TypeCast(t) => t.arg.as_deref().and_then(string_const),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn changes(sql: &str) -> Vec<(String, SettingValue)> {
        pg_setting_changes(sql)
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect()
    }

    fn lit(s: &str) -> SettingValue {
        SettingValue::Literal(s.to_owned())
    }

    #[test]
    fn every_way_to_set_client_encoding() {
        let ce = "client_encoding".to_owned();
        assert_eq!(
            changes("SET client_encoding = 'SJIS'"),
            vec![(ce.clone(), lit("SJIS"))]
        );
        assert_eq!(
            changes("SET LOCAL client_encoding TO sjis"),
            vec![(ce.clone(), lit("sjis"))]
        );
        assert_eq!(changes("set names 'gbk'"), vec![(ce.clone(), lit("gbk"))]);
        assert_eq!(
            changes("RESET client_encoding"),
            vec![(ce.clone(), SettingValue::Default)]
        );
        assert_eq!(
            changes("SET client_encoding TO DEFAULT"),
            vec![(ce.clone(), SettingValue::Default)]
        );
        assert_eq!(
            changes("RESET ALL"),
            vec![("*".into(), SettingValue::Default)]
        );
        assert_eq!(
            changes("SELECT pg_catalog.set_config('client_encoding', 'BIG5', false)"),
            vec![(ce.clone(), lit("BIG5"))]
        );
        assert_eq!(
            changes("SELECT 1 WHERE set_config('client_encoding', x, false) IS NULL"),
            vec![(ce, SettingValue::Unknown)]
        );
        assert_eq!(
            changes("SELECT set_config(lower('CLIENT_ENCODING'), 'sjis', false)"),
            vec![("*".into(), lit("sjis"))]
        );
        assert_eq!(changes("SELECT rt.set_config('a', 'b', false)"), vec![]);
    }

    #[test]
    fn list_values_and_other_settings() {
        assert_eq!(
            changes("SET search_path = rt, pg_catalog"),
            vec![("search_path".into(), lit("rt, pg_catalog"))]
        );
        assert_eq!(
            changes("SET default_transaction_read_only = off"),
            vec![("default_transaction_read_only".into(), lit("off"))]
        );
        assert!(pg_setting_changes("SET (").is_err());
    }
}
